"""Exporters: every format round-trips through its runtime backend within the recorded tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgecart.exporters import EXPORTERS, ParityTolerance, export
from edgecart.runtime import ParityError, UnknownNameError, load, open_bundle

from ..conftest import BACKEND_OF, FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_fp32_artifact_matches_eager_model(tiny_bundle, tiny_model, tiny_inputs, fmt):
    session = load(tiny_bundle, BACKEND_OF[fmt], precision="fp32")
    assert session.artifact.format == fmt
    parity = session.artifact.parity
    assert parity is not None and parity.within_tolerance() and parity.samples == 4
    for x in tiny_inputs[4:]:  # inputs the export never saw
        want = tiny_model(torch.from_numpy(x)).detach().numpy()
        got = session.run(x)["embedding"]
        assert got.shape == (1, 16) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)  # stated tolerance: 1e-5 absolute on unit vectors


@pytest.mark.parametrize("fmt", FORMATS)
def test_int8_artifact_close_to_float(tiny_bundle, tiny_model, tiny_inputs, fmt):
    session = load(tiny_bundle, BACKEND_OF[fmt], precision="int8")
    assert session.artifact.precision == "int8" and session.artifact.quantization["recipe"]
    for x in tiny_inputs:
        want = tiny_model(torch.from_numpy(x)).detach().numpy().ravel()
        got = session.run(x)["embedding"].ravel()
        assert float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)) > 0.98


def test_three_formats_agree_on_the_same_inputs(tiny_bundle, tiny_inputs):
    outs = {fmt: load(tiny_bundle, BACKEND_OF[fmt], precision="fp32").run(tiny_inputs[5])["embedding"]
            for fmt in FORMATS}
    tol = max(a.parity.max_abs_tolerance for a in open_bundle(tiny_bundle).manifest.artifacts
              if a.precision == "fp32")
    for fmt in FORMATS[1:]:
        assert np.max(np.abs(outs[fmt] - outs[FORMATS[0]])) <= tol


def test_tflite_int8_has_int8_input_tensors_and_runtime_converts(tiny_bundle):
    from ai_edge_litert.interpreter import Interpreter

    session = load(tiny_bundle, "litert", precision="int8")
    it = Interpreter(model_path=str(session.bundle.path(session.artifact.path)))
    detail = it.get_input_details()[0]
    assert detail["dtype"] == np.int8 and detail["quantization"][0] > 0
    out = session.run(np.zeros((1, 1, 28, 28), np.float32))["embedding"]  # callers pass floats
    assert out.dtype == np.float32


def test_manifest_records_files_parity_and_toolchain(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    assert {a.format for a in m.artifacts} == set(FORMATS)
    assert {a.precision for a in m.artifacts} == {"fp32", "int8"}
    assert all(a.parity is not None for a in m.artifacts)
    assert m.toolchain["torch"].startswith("2.13") and "executorch" in m.toolchain
    onnx_art = next(a for a in m.artifacts if a.format == "onnx" and a.precision == "fp32")
    assert onnx_art.side_files == ()  # weights embedded
    assert not any(p.name.endswith(".data") for p in (tiny_bundle / "models").iterdir())
    pte = next(a for a in m.artifacts if a.format == "executorch")
    assert pte.delegate == "xnnpack"


def test_unknown_format_lists_known(tmp_path, tiny_model):
    with pytest.raises(UnknownNameError, match="executorch, onnx, tflite"):
        export(tiny_model, (torch.zeros(1, 1, 28, 28),), formats=("coreml",), out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert "onnx" in EXPORTERS and EXPORTERS.names()


def test_parity_failure_leaves_no_bundle(tmp_path, tiny_model):
    strict = ParityTolerance(fp32_max_abs=1e-30, fp32_min_cosine=1.0)
    with pytest.raises(ParityError, match="parity outside tolerance"):
        export(tiny_model, (torch.randn(1, 1, 28, 28),), formats=("executorch",), out=tmp_path / "b",
               tolerance=strict)
    assert list(tmp_path.iterdir()) == []  # no bundle, no staging folder


def test_existing_destination_is_refused_unless_overwrite(tmp_path, tiny_model):
    out = tmp_path / "b"
    export(tiny_model, (torch.randn(1, 1, 28, 28),), formats=("onnx",), out=out)
    from edgecart.runtime import BundleError

    with pytest.raises(BundleError, match="already exists"):
        export(tiny_model, (torch.randn(1, 1, 28, 28),), formats=("onnx",), out=out)
    m = export(tiny_model, (torch.randn(1, 1, 28, 28),), formats=("onnx",), out=out, overwrite=True, archive=True)
    assert json.loads((out / "manifest.json").read_text())["created_at"] == m.created_at
    assert (tmp_path / "b.tar.gz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "b.tar.gz"]
    assert load(tmp_path / "b.tar.gz").run(np.zeros((1, 1, 28, 28), np.float32))["embedding"].shape == (1, 16)
