"""quantize() in torch for each PT2E recipe kind, and QAT / dynamic int8 through the exporters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgecart.compress import QAT, DynamicInt8, StaticInt8, quantize
from edgecart.compress.quantization import _outputs, _sqnr
from edgecart.config import ConfigError
from edgecart.exporters import BundleWriter, export_artifact, golden_from_model
from edgecart.runtime import load

from ..conftest import _tiny_model


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    calib = [(torch.randn(1, 1, 28, 28, generator=g),) for _ in range(8)]
    val = [(torch.randn(1, 1, 28, 28, generator=g),) for _ in range(6)]
    return _tiny_model(), calib, val


@pytest.mark.parametrize("recipe", [StaticInt8(), StaticInt8(per_channel=False, calibration="minmax"),
                                    QAT(steps=6, lr=1e-4)], ids=lambda r: r.name)
def test_quantize_simulates_the_recipe_close_to_float(data, recipe):
    model, calib, val = data
    before = [p.detach().clone() for p in model.parameters()]
    q = quantize(model, recipe, calib[0], calib)
    sqnr, cos = _sqnr(_outputs(model, val), _outputs(q, val))
    assert cos > 0.99 and 15 < sqnr < 200  # int8 noise: close, not identical
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # QAT trains a copy


def test_quantize_refuses_recipes_only_onnx_runtime_applies(data):
    model, calib, _ = data
    with pytest.raises(ConfigError, match=r"applied by the onnx exporter only\b"):
        quantize(model, StaticInt8(calibration="percentile"), calib[0], calib)


def test_quantize_names_every_exporter_that_applies_weight_only_int8(data):
    from edgecart.compress import WeightOnlyInt8

    model, calib, _ = data
    with pytest.raises(ConfigError, match=r"applied by the onnx and tflite exporters\b"):
        quantize(model, WeightOnlyInt8(), calib[0], calib)


@pytest.mark.parametrize("fmt,recipe", [("executorch", QAT(steps=4, lr=1e-4)), ("onnx", DynamicInt8())],
                         ids=["executorch-qat", "onnx-dynamic"])
def test_qat_and_dynamic_recipes_export_and_run(tmp_path, data, fmt, recipe):
    model, calib, val = data
    io = model.io_spec
    golden = golden_from_model(model, val[:2], io)
    with BundleWriter(tmp_path / "b", name="t", version="0.1.0", task="generic", inputs=io.inputs,
                      outputs=io.outputs) as w:
        w.set_golden(*golden)
        art = export_artifact(w, model, calib[0], fmt, precision="int8", recipe=recipe, calibration=calib,
                              golden=golden)
        w.commit()
    assert art.quantization["recipe"] == recipe.name and art.parity.within_tolerance()
    backend = {"executorch": "executorch", "onnx": "onnxruntime"}[fmt]
    got = load(tmp_path / "b", backend, precision="int8").run(val[4][0].numpy())["embedding"].ravel()
    want = model(val[4][0]).detach().numpy().ravel()
    assert float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)) > 0.98


def test_the_int8_rescue_finds_the_layers_of_a_pt2_model(tmp_path):
    """A torch.export'ed (.pt2) model has no nn.Conv/nn.Linear objects: its layers are found through the graph, so
    the diagnosis ranks them and the rescue keeps the worst in float by that name."""
    from edgecart.compress import diagnose_int8, rescue_plan
    from edgecart.compress.quantization import quantizable_layers
    from edgecart.compress.user_model import load_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 4)).eval()
    calib = [(torch.randn(1, 3, 6, 6),) for _ in range(4)]
    torch.export.save(torch.export.export(model, calib[0]), str(tmp_path / "m.pt2"))
    pt2, _ = load_model(str(tmp_path / "m.pt2"))
    assert quantizable_layers(pt2) == quantizable_layers(model) == ["0", "3"]
    diag = diagnose_int8(pt2, calib[0], calib)
    assert sorted(d.layer for d in diag) == ["0", "3"]
    plans, _ = rescue_plan(pt2, calib[0], calib, StaticInt8(), keep_float=1, qat=None, diagnosis=diag)
    assert [p.exclude for p in plans] == [(diag[0].layer,)]
    q = quantize(pt2, plans[0], calib[0], calib)
    assert q(*calib[0]).shape == (1, 4)
