"""Exporters take typed recipes; failures are typed and leave nothing in staging; the gate catches only toolchain
failures; a plain module with example inputs exports with nothing more."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgecart.exporters import (
    EXPORTERS,
    BundleWriter,
    QualityGate,
    StaticInt8,
    ToolchainError,
    UnsupportedRecipeError,
    export,
    export_artifact,
    export_int8_gated,
    is_toolchain_error,
)
from edgecart.runtime import UnknownNameError, load, open_bundle
from torch import nn


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if float(x.sum()) > 0 else x  # a Python branch on data: torch.export refuses it


def _writer(tmp_path, model):
    io = model.io_spec
    return BundleWriter(tmp_path / "b", name="m", version="0.1.0", task="generic", inputs=io.inputs,
                        outputs=io.outputs)


def _staged_files(w):
    return sorted(p.relative_to(w.staging).as_posix() for p in w.staging.rglob("*") if p.is_file())


def test_exporter_bug_after_writing_propagates_and_leaves_no_file(tmp_path, tiny_model, monkeypatch):
    exporter = EXPORTERS["onnx"]

    def buggy(request, path):
        path.write_bytes(b"half a model")
        (path.parent / "side.bin").write_bytes(b"x")
        return {}["no such key"]  # an edgecart bug, not a toolchain failure

    monkeypatch.setattr(exporter, "write", buggy)
    with _writer(tmp_path, tiny_model) as w:
        before = _staged_files(w)
        with pytest.raises(KeyError):
            export_artifact(w, tiny_model, (torch.zeros(1, 1, 28, 28),), "onnx")
        assert _staged_files(w) == before and not w.artifacts
        calib = [(torch.zeros(1, 1, 28, 28),)]
        with pytest.raises(KeyError):  # the gate does not swallow bugs as "recipe not applicable"
            export_int8_gated(w, tiny_model, calib[0], "onnx", calibration=calib, golden=({}, {}),
                              evaluate=lambda s: {"m": 1.0}, reference={"m": 1.0}, gate=QualityGate("m"))
        assert _staged_files(w) == before


def test_toolchain_failure_is_typed_recorded_by_the_gate_and_cleaned(tmp_path, tiny_model):
    model = DataDependent()
    x = torch.ones(1, 1, 28, 28)
    with _writer(tmp_path, tiny_model) as w:
        with pytest.raises(ToolchainError, match="executorch fp32") as info:
            export_artifact(w, model, (x,), "executorch")
        assert is_toolchain_error(info.value.__cause__)
        assert _staged_files(w) == []
        calib = [(x,)]
        art = export_int8_gated(w, model, (x,), "executorch", calibration=calib, golden=({}, {}),
                                evaluate=lambda s: {"m": 1.0}, reference={"m": 1.0}, gate=QualityGate("m"),
                                recipes=["static-int8-per-channel"])
        assert art is None
        attempt = w.quality["int8_rejected"]["executorch"]["attempts"][0]
        assert attempt["passed"] is False and "toolchain" in attempt["reason"]
        assert _staged_files(w) == []


def test_recipe_names_are_checked_and_unsupported_recipes_refused(tmp_path, tiny_model):
    calib = [(torch.zeros(1, 1, 28, 28),)]
    with _writer(tmp_path, tiny_model) as w:
        with pytest.raises(UnknownNameError, match="static-int8-per-tensor"):
            export_artifact(w, tiny_model, calib[0], "onnx", precision="int8", recipe="static-int8-per-tenser",
                            calibration=calib)
        with pytest.raises(UnsupportedRecipeError, match="qat-int8-per-channel.*supports: static-int8"):
            export_artifact(w, tiny_model, calib[0], "onnx", precision="int8", recipe="qat-int8-per-channel",
                            calibration=calib)
        assert _staged_files(w) == []


def test_typed_recipe_is_recorded_in_the_manifest(tmp_path, tiny_model):
    calib = [(torch.randn(1, 1, 28, 28),) for _ in range(4)]
    with _writer(tmp_path, tiny_model) as w:
        art = export_artifact(w, tiny_model, calib[0], "onnx", precision="int8",
                              recipe=StaticInt8(calibration="minmax", exclude=("head",)), calibration=calib)
        w.commit()
    q = open_bundle(tmp_path / "b").manifest.artifacts[0].quantization
    assert art.path.endswith(".static-int8-per-channel-minmax-float1.onnx")
    assert q["config"] == {"kind": "static_int8", "per_channel": True, "calibration": "minmax", "exclude": ["head"],
                           "ops": [], "activations": "auto"}
    assert q["float_nodes"] and all("linear" in n.lower() or "gemm" in n.lower() for n in q["float_nodes"])


def test_plain_module_exports_with_inferred_io_spec(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    x = torch.randn(2, 6)
    m = export(model, (x,), formats=("onnx",), out=tmp_path / "plain")
    assert [s.name for s in m.inputs] == ["input_0"] and m.inputs[0].shape == (2, 6)
    assert [s.name for s in m.outputs] == ["output_0"] and m.outputs[0].shape == (2, 3)
    got = load(tmp_path / "plain", "onnxruntime").run(x.numpy())["output_0"]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)
