"""Write a ``text_search`` bundle: the student in every format (fp32, and int8 behind the quality gate evaluated
through the runtime on validation messages), its tokenizer.json, the routing heads, the catalog of texts with int8
embeddings, golden data, and the quality of every artifact on the test messages measured through the runtime."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.exporters import BundleWriter, QATData, QualityGate, golden_from_model
from edgecart.exporters.gate import evaluate_artifact, export_formats_gated
from edgecart.models.text import TextEncoder
from edgecart.runtime.manifest import Artifact, TextPreprocessing
from edgecart.runtime.search import quantize_rows

from .config import TextConfig
from .evaluate import session_evaluator

TOKENIZER = "tokenizer.json"
TEXTS = "catalog/texts.json"
EMBEDDINGS = "catalog/embeddings.int8.npy"
SCALES = "catalog/scales.f32.npy"
SNIPPET = 300


@dataclass(frozen=True)
class CatalogTexts:
    ids: Sequence[str]
    texts: Sequence[str]
    labels: Sequence[str]
    sources: Sequence[str]
    embeddings: np.ndarray  # (N, D) float, L2-normalised
    embedded_by: str


@dataclass(frozen=True)
class EvalSet:
    """Tokenized messages with their labels (``{"department": ..., "class": ...}``)."""

    ids: np.ndarray
    mask: np.ndarray
    labels: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ArtifactRow:
    artifact: str
    format: str
    precision: str
    backend: str
    bytes: int
    test: dict[str, float]
    cosine: float | None
    recipe: str | None = None
    per_query: dict[str, np.ndarray] | None = None


def _pair(ids: np.ndarray, mask: np.ndarray, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(ids[i:i + 1].astype(np.int64)), torch.tensor(mask[i:i + 1].astype(np.int64))


def write_text_bundle(out: Path, model: TextEncoder, tokenizer_json: str, cfg: TextConfig, *, name: str,
                      catalog: CatalogTexts, heads: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]],
                      gallery_labels: np.ndarray, gallery_rows: int, valid: EvalSet, test: EvalSet,
                      quality: dict[str, Any], version: str = "0.1.0",
                      progress: Callable[[str], None] | None = None,
                      train: EvalSet | None = None) -> tuple[Path, list[ArtifactRow]]:
    """Export ``model`` into a bundle at ``out``. Retrieval metrics use the first ``gallery_rows`` catalog rows (the
    past messages, labelled by ``gallery_labels`` class indices). ``train``: training messages; given them, a format
    whose int8 recipes all miss the gate falls back to QAT fine-tuned on (up to 512 of) them, its step picked on
    validation messages outside the calibration set."""
    from edgecart.runtime.backends import backend_for_format

    say = progress or (lambda _m: None)
    model = model.eval()
    io = model.io_spec
    pre = TextPreprocessing(TOKENIZER, cfg.max_len)
    g = min(cfg.golden_samples, len(test.ids))
    samples = [_pair(test.ids, test.mask, i) for i in range(g)]
    golden = golden_from_model(model, samples, io)
    rng = np.random.default_rng(0)
    cal_rows = rng.choice(len(valid.ids), size=min(cfg.calibration_samples, len(valid.ids)), replace=False)
    calibration = [_pair(valid.ids, valid.mask, int(i)) for i in cal_rows]
    q, scales = quantize_rows(catalog.embeddings)
    gq, gs = q[:gallery_rows], scales[:gallery_rows]
    head_wb = {h: (w, b) for h, (w, b, _labels) in heads.items()}
    n = min(cfg.gate_queries, len(valid.ids))
    gate_eval = session_evaluator(valid.ids[:n], valid.mask[:n], {k: v[:n] for k, v in valid.labels.items()}, gq,
                                  gallery_labels, gs, head_wb)
    gate = QualityGate(cfg.gate_metric, cfg.gate_max_drop)
    with BundleWriter(out, name=name, version=version, task="text_search", inputs=io.inputs, outputs=io.outputs,
                      preprocessing=pre, overwrite=True) as w:
        w.set_golden(*golden)
        w.add_file(TOKENIZER, "metadata", tokenizer_json.encode("utf-8"))
        items = {"ids": list(catalog.ids), "texts": [t[:SNIPPET] for t in catalog.texts],
                 "labels": list(catalog.labels), "sources": list(catalog.sources)}
        w.add_file(TEXTS, "catalog", json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        w.add_file(EMBEDDINGS, "catalog", q)
        w.add_file(SCALES, "catalog", scales)
        routing = {}
        for h, (wt, b, labels) in heads.items():
            wp, bp = f"catalog/route.{h}.weights.npy", f"catalog/route.{h}.bias.npy"
            w.add_file(wp, "catalog", np.ascontiguousarray(wt, np.float32))
            w.add_file(bp, "catalog", np.ascontiguousarray(b, np.float32))
            routing[h] = {"weights": wp, "bias": bp, "labels": list(labels),
                          "rule": "probabilities = softmax(embedding @ weights + bias)"}
        w.catalog = {
            "kind": "text_embeddings", "items_file": TEXTS, "items": len(catalog.ids), "dim": int(q.shape[1]),
            "metric": "cosine", "normalized": True, "embedded_by": catalog.embedded_by,
            "embeddings": {"int8": {"path": EMBEDDINGS, "dtype": "int8", "scale": "per-vector", "scale_path": SCALES,
                                    "note": "row ~= int8 row * scale; symmetric, max|row| -> 127"}},
            "default": "int8", "routing": routing, "sources": sorted(set(catalog.sources)),
            "texts_note": f"texts are cut to {SNIPPET} characters for display",
            "search": "exact: score every row, keep the top k (ties to the lower index)",
        }
        rows: list[ArtifactRow] = []

        def record(art: Artifact, valid: dict[str, float]) -> Artifact:
            return _record(w, art, valid, test, gq, gallery_labels, gs, head_wb, rows,
                           backend_for_format(art.format).name)

        qat_data = None
        held = [i for i in range(len(valid.ids)) if i not in set(int(c) for c in cal_rows)][:64]
        if train is not None and len(train.ids) >= 2 and held:
            rows_t = rng.choice(len(train.ids), size=min(512, len(train.ids)), replace=False)
            qat_data = QATData([_pair(train.ids, train.mask, int(i)) for i in rows_t],
                               [_pair(valid.ids, valid.mask, i) for i in held],
                               source="training messages; step picked on validation messages outside calibration")
        export_formats_gated(w, model, samples[0], cfg.formats, golden=golden, evaluate=gate_eval, int8=cfg.int8,
                             gate=gate, calibration=calibration, record=record, qat_data=qat_data, progress=say)
        w.quality = {**quality, "gate": {"metric": gate.metric, "max_drop": gate.max_drop,
                                         "evaluated_on": f"first {n} validation messages, through the runtime"},
                     "int8_rejected": w.quality.get("int8_rejected", {}),
                     "artifacts_test": {r.artifact: r.test for r in rows}}
        path = w.commit()
    return path, rows


def _record(w: BundleWriter, art: Artifact, valid: dict[str, float], test: EvalSet, gallery: np.ndarray,
            gallery_labels: np.ndarray, scales: np.ndarray, heads: Mapping[str, tuple[np.ndarray, np.ndarray]],
            rows: list[ArtifactRow], backend: str) -> Artifact:
    keep: list[dict[str, np.ndarray]] = []
    ev = session_evaluator(test.ids, test.mask, test.labels, gallery, gallery_labels, scales, heads, keep)
    metrics = evaluate_artifact(w, art, ev)
    # flat, as the manifest schema wants: "valid_gate.<metric>" (the gate's validation figures), "test.<metric>"
    art = w.update_artifact(art.name, quality={**{f"valid_gate.{k}": v for k, v in valid.items()},
                                               **{f"test.{k}": v for k, v in metrics.items()}})
    size = w.manifest().artifact_bytes(art)
    recipe = (art.quantization or {}).get("recipe")
    rows.append(ArtifactRow(art.name, art.format, art.precision, backend, size, metrics,
                            art.parity.cosine if art.parity else None, recipe, keep[0] if keep else None))
    return art
