"""The shared fp32 -> int8 -> gate -> record loop (``export_formats_gated``) as each task's bundle writer uses it:
with a gate no metric can miss (max_drop 1.0), a healthy model ships its int8 artifact, while the same model made
int8-hostile by construction ships none (its attempts fail the parity check and are recorded)."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402


class _Shifted(nn.Module):
    """``linear(x + c)`` with the bias lowered by ``W @ c``: the same function in float, but ``c`` puts one input
    channel near ``shift``, so a per-tensor int8 activation (scale ~ shift / 255) rounds every other channel away."""

    def __init__(self, linear: nn.Linear, shift: float = 1e3) -> None:
        super().__init__()
        c = torch.zeros(linear.in_features)
        c[0] = shift
        self.register_buffer("shift", c)
        self.linear = nn.Linear(linear.in_features, linear.out_features)
        with torch.no_grad():
            self.linear.weight.copy_(linear.weight)
            self.linear.bias.copy_(linear.bias - linear.weight @ c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + self.shift)


def _check(path, broken: bool, fmt: str = "onnx") -> None:
    from edgecart.runtime import open_bundle

    m = open_bundle(path).manifest
    assert m.artifacts[0].precision == "fp32" and m.artifacts[0].quality  # scored and recorded through the runtime
    if broken:
        assert [a.precision for a in m.artifacts] == ["fp32"], "the broken int8 artifact must not ship"
        attempts = m.quality["int8_rejected"][fmt]["attempts"]
        assert attempts and not any(a["passed"] for a in attempts)
        assert all(a["reason"].startswith("parity") for a in attempts)
    else:
        assert [a.precision for a in m.artifacts] == ["fp32", "int8"] and fmt not in m.quality.get("int8_rejected", {})
        assert m.artifacts[1].quantization["gate"]["chosen"] and m.artifacts[1].quality


def test_poisoned_linear_is_the_same_function_in_float():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    assert torch.allclose(_Shifted(lin)(x), lin(x), atol=1e-3)


@pytest.mark.parametrize("broken", [False, True])
def test_text_bundle_gates_int8(tmp_path, broken):
    pytest.importorskip("tokenizers")
    from ..tiny_text import student_and_tokenizer, write_tiny_text_bundle

    model, small = student_and_tokenizer()
    if broken:
        model.layers[0].ffn_out = _Shifted(model.layers[0].ffn_out)
    out = write_tiny_text_bundle(tmp_path / "text", model, small, "poisoned-text", {}, int8=True,
                                 calibration_samples=8, gate_metric="recall@10", gate_max_drop=1.0)
    path, rows = out["path"], out["rows"]
    _check(path, broken)
    assert [r.precision for r in rows] == (["fp32"] if broken else ["fp32", "int8"])


@pytest.mark.parametrize("broken", [False, True])
def test_recommendations_bundle_gates_int8(tmp_path, broken):
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST

    from ..tiny_recs import cycle_data

    n_items = 12
    data, split, pop = cycle_data(n_items, 40, 10)
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items, max_len=8, dim=8, heads=1, layers=1, dropout=0.0)).eval()
    if broken:
        model.blocks[0].ff2 = _Shifted(model.blocks[0].ff2)
    cfg = dataclasses.replace(FAST, max_len=8, formats=("onnx",), int8=True, gate_users=16, calibration_samples=4,
                              gate_max_drop=1.0)
    path, rows, _ = write_bundle(model, data, split, cfg, tmp_path / "recs", popularity=pop, quality={},
                                 name="poisoned-recs")
    _check(path, broken)
    assert [r.precision for r in rows] == (["fp32"] if broken else ["fp32", "int8"])


def _image_search_bundle(out, broken: bool, *, raise_bar: float = 0.0, max_drop: float = 1.0):
    """The image-search writer on the tiny CNN (made int8-hostile when ``broken``); its int8 gate measures against
    the float model's query metrics plus ``raise_bar``."""
    from edgecart.runtime.search import Catalog
    from edgecart.vision.config import ExportConfig
    from edgecart.vision.evaluate import _search_catalog
    from edgecart.vision.export import export_search_bundle
    from edgecart.vision.train import embed

    from ..conftest import _tiny_model
    from ..reliability.test_bundle_schema import PRE, _gallery

    model = _tiny_model(seed=3)
    if broken:
        model.head = _Shifted(model.head)
    gallery = _gallery()
    emb = embed(model, gallery.images, PRE, desc="")
    queries, labels = gallery.images[::2], gallery.labels[::2]
    cat = Catalog(gallery.ids, gallery.labels, gallery.classes, emb, None, "cosine", "student", "fp32")
    r = _search_catalog(cat, embed(model, queries, PRE, desc=""), labels)[1]
    reference = {"recall@1": r.recall_at_1 + raise_bar, "recall@10": r.recall_at_10 + raise_bar,
                 "map@10": r.map_at_10 + raise_bar}
    return export_search_bundle(out, model, name="poisoned-search", version="0.0.1", pre=PRE, gallery=gallery,
                                catalog_emb=emb, catalog_by="student", catalog_model={"model": "tiny"},
                                golden_images=gallery.images[:2],
                                cfg=ExportConfig(formats=("onnx",), golden=2, calibration=8, gate_max_drop=max_drop),
                                quality={}, int8=True, calibration_images=gallery.images[:8], query_images=queries,
                                query_labels=labels, reference=reference)


@pytest.mark.parametrize("broken", [False, True])
def test_image_search_bundle_gates_int8(tmp_path, broken):
    path, gates = _image_search_bundle(tmp_path / "search", broken)
    _check(path, broken)
    assert gates["onnx"]["attempts"] and ("chosen" in gates["onnx"]) is not broken


def test_the_metric_gate_refuses_an_int8_that_passes_parity_but_misses_the_bar(tmp_path):
    """A healthy int8 (parity passes) measured against a float model 0.5 better on every metric, with 0.01 allowed:
    the metric gate, not parity, must refuse it — and record why."""
    from edgecart.runtime import open_bundle

    path, gates = _image_search_bundle(tmp_path / "search", False, raise_bar=0.5, max_drop=0.01)
    m = open_bundle(path).manifest
    assert [a.precision for a in m.artifacts] == ["fp32"]
    attempts = m.quality["int8_rejected"]["onnx"]["attempts"]
    assert attempts and "chosen" not in gates["onnx"]
    measured = [a for a in attempts if "drop" in a]  # (a recipe the format cannot apply is recorded unmeasured)
    assert measured and not any(a["passed"] for a in attempts)
    assert all(a["reason"].startswith("lost ") and a["drop"] > 0.45 for a in measured)
