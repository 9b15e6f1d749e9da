"""The per-step report measures latency through the benchmark harness: every artifact in its own worker, in
interleaved rounds, with the samples of each round kept for block-bootstrap ratio intervals."""

from __future__ import annotations

import math

import torch
from edgecart.compress import StructuredPruning, prune
from edgecart.compress.report import harness_p50, p50_ratio
from edgecart.exporters import export

from ..conftest import _tiny_model


def test_harness_p50_times_every_artifact_interleaved_and_gives_ratio_intervals(tmp_path):
    model = _tiny_model()
    x = torch.randn(1, 1, 28, 28)
    export(model, (x,), formats=("onnx",), out=tmp_path / "full")
    export(prune(model, StructuredPruning(ratio=0.5), (x,)), (x,), formats=("onnx",), out=tmp_path / "small")
    runs = [(str(tmp_path / "full"), "model.fp32.onnx"), (str(tmp_path / "small"), "model.fp32.onnx")]
    got = harness_p50(runs, rounds=6, per_round=3)
    assert set(got) == set(runs)
    for entry in got.values():
        assert entry["backend"] == "onnxruntime" and entry["p50_ms"] > 0 and entry["n"] == 18
        assert len(entry["rounds_ms"]) == 6 and all(len(r) == 3 for r in entry["rounds_ms"])
    r = p50_ratio(got[runs[0]], got[runs[1]])
    lo, hi = r["ci95"]
    assert r["ratio"] > 0 and not math.isnan(lo) and lo <= r["ratio"] <= hi


def test_harness_p50_refuses_a_tampered_bundle_before_timing_anything(tmp_path):
    import pytest
    from edgecart.runtime.errors import IntegrityError

    model = _tiny_model()
    x = torch.randn(1, 1, 28, 28)
    export(model, (x,), formats=("onnx",), out=tmp_path / "b")
    (tmp_path / "b/models/model.fp32.onnx").write_bytes(b"not a model")
    with pytest.raises(IntegrityError):
        harness_p50([(str(tmp_path / "b"), "model.fp32.onnx")], rounds=2, per_round=1)
