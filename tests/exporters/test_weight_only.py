"""int8 weight-only (int8 weights, float activations) where the backend runs it correctly: LiteRT's dynamic-range
quantization and ONNX Runtime's dynamic quantization, each checked for parity against the float model; ExecuTorch
refuses it with a typed error that says what to use instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgecart.exporters import (
    RECIPES,
    BundleWriter,
    UnsupportedRecipeError,
    WeightOnlyInt8,
    export_artifact,
    golden_from_model,
)
from edgecart.exporters.recipes import recipe_from_dict, recipe_to_dict
from edgecart.runtime import load, open_bundle
from torch import nn


class Mlp(nn.Module):
    """A model whose weights dominate (linear layers), the case weight-only int8 is for."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _bundle(tmp_path, fmt):
    from edgecart.exporters import infer_io_spec

    model = Mlp().eval()
    x = torch.randn(1, 64)
    io = infer_io_spec(model, (x,))
    w = BundleWriter(tmp_path / fmt, name="mlp", version="0.1.0", task="generic", inputs=io.inputs,
                     outputs=io.outputs)
    golden = golden_from_model(model, [(torch.randn(1, 64),) for _ in range(4)], io)
    return model, x, w, golden


def test_weight_only_is_a_named_recipe_that_round_trips():
    r = RECIPES["weight-only-int8"]
    assert r == WeightOnlyInt8() and recipe_from_dict(recipe_to_dict(r)) == r


@pytest.mark.parametrize("fmt,backend", [("tflite", "litert"), ("onnx", "onnxruntime")])
def test_weight_only_int8_matches_float_and_shrinks_the_file(tmp_path, fmt, backend):
    model, x, w, golden = _bundle(tmp_path, fmt)
    with w:
        w.set_golden(*golden)
        fp32 = export_artifact(w, model, (x,), fmt, golden=golden)
        art = export_artifact(w, model, (x,), fmt, precision="int8", recipe="weight-only-int8", golden=golden)
        assert art.quantization["recipe"] == "weight-only-int8" and art.parity.cosine > 0.999
        w.commit()
    b = open_bundle(tmp_path / fmt)
    size = {a.precision: (tmp_path / fmt / a.path).stat().st_size for a in b.manifest.artifacts}
    assert fp32.precision == "fp32" and size["int8"] < 0.4 * size["fp32"]  # int8 weights: ~a quarter of the file
    spec = next(a for a in b.manifest.artifacts if a.precision == "int8")
    s = load(tmp_path / fmt, backend, artifact=spec.name)
    xs = torch.randn(8, 1, 64)
    got = np.concatenate([next(iter(s.run(xi.numpy()).values())) for xi in xs])
    want = model(xs[:, 0]).detach().numpy()
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert np.dtype(s.engine.input_dtypes[0]) == np.float32 and cos.min() > 0.999  # float I/O, float-quality outputs


def test_executorch_refuses_weight_only_with_a_typed_error_that_names_the_alternatives(tmp_path):
    model, x, w, golden = _bundle(tmp_path, "executorch")
    with w, pytest.raises(UnsupportedRecipeError, match="cosine 0.85.*dynamic-int8"):
        export_artifact(w, model, (x,), "executorch", precision="int8", recipe=WeightOnlyInt8(), golden=golden)


def test_tflite_gate_falls_back_to_weight_only_when_static_ranges_do_not_fit(tmp_path):
    """LiteRT has no QAT fallback; when static int8 clips (calibrated on inputs 100x smaller than the ones it is
    judged on), the gate's last default LiteRT recipe quantizes only the weights (ranges of activations found at run
    time) and still ships an int8 file, with the failed attempts recorded."""
    from edgecart.compress import agreement_evaluator
    from edgecart.exporters import QualityGate, export_int8_gated, infer_io_spec

    model = Mlp().eval()
    g = torch.Generator().manual_seed(1)
    calib = [(0.01 * torch.randn(1, 64, generator=g),) for _ in range(8)]
    val = [(torch.randn(1, 64, generator=g),) for _ in range(8)]
    io = infer_io_spec(model, val[0])
    golden = golden_from_model(model, val[:2], io)
    evaluate, reference = agreement_evaluator(model, val)
    with BundleWriter(tmp_path / "b", name="mlp", version="0.1.0", task="generic", inputs=io.inputs,
                      outputs=io.outputs) as w:
        w.set_golden(*golden)
        art = export_int8_gated(w, model, val[0], "tflite", calibration=calib, golden=golden, evaluate=evaluate,
                                reference=reference, gate=QualityGate("cosine", 0.01))
        assert art is not None and art.quantization["recipe"] == "weight-only-int8"
        attempts = art.quantization["gate"]["attempts"]
        assert [(a["recipe"], a["passed"]) for a in attempts] == [
            ("static-int8-per-channel", False), ("static-int8-per-tensor", False), ("weight-only-int8", True)]


@pytest.mark.parametrize("recipe", ["weight-only-int8", "dynamic-int8-per-channel", "static-int8-per-channel"])
def test_onnx_int8_weights_use_seven_bits_so_u8s8_kernels_cannot_saturate(tmp_path, recipe):
    """On x86 without VNNI, ONNX Runtime's uint8 x int8 kernels add pairs of products in int16, which saturates when
    weights use the full int8 range (2 * 255 * 127 > 32767) and cost this test's model cosine 0.97 on such a CPU.
    The exporter quantizes weights to 7 bits (|w| <= 64), whatever the machine that exports or runs the file, in
    each of its ONNX int8 recipes (weight-only, dynamic, static)."""
    import onnx
    from onnx import numpy_helper

    model, x, w, golden = _bundle(tmp_path, "onnx")
    calib = [(torch.randn(1, 64, generator=torch.Generator().manual_seed(i)),) for i in range(8)]
    with w:
        w.set_golden(*golden)
        art = export_artifact(w, model, (x,), "onnx", precision="int8", recipe=recipe, calibration=calib,
                              golden=golden)
        w.commit()
    assert art.quantization["recipe"] == recipe and "7-bit" in art.quantization["weights"]
    m = onnx.load(str(tmp_path / "onnx" / art.path))
    int8 = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    weights = [a for a in int8 if a.ndim == 2]  # the three linear layers' matrices (the rest: zero points)
    assert len(weights) == 3 and max(int(np.abs(a.astype(np.int32)).max()) for a in weights) <= 64
