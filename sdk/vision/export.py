"""Search bundles: the embedding model in every format (fp32, and int8 behind a quality gate), the catalog, golden
inputs, preprocessing and quality — everything a device needs to search the catalog with a photo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.data.image_folder import ImageSet
from edgecart.exporters import BundleWriter, QATData, QualityGate
from edgecart.exporters.export import golden_from_model
from edgecart.exporters.gate import export_formats_gated
from edgecart.exporters.test_vectors import write_test_vectors
from edgecart.runtime.manifest import ImagePreprocessing
from edgecart.runtime.preprocess import normalise, to_model_uint8
from edgecart.runtime.search import Catalog, quantize_rows, read_catalog
from edgecart.runtime.session import Session
from torch import nn

from .config import ExportConfig
from .evaluate import gate_evaluator

Progress = Callable[[str], None]
Evaluate = Callable[[Session], dict[str, float]]


def catalog_items(gallery: ImageSet) -> dict[str, Any]:
    """The catalog's items file: ids, category indices and (when the pictures carry any) one metadata dict each."""
    items: dict[str, Any] = {"ids": list(gallery.ids), "categories": [int(c) for c in gallery.category_labels]}
    if gallery.metadata is not None and any(gallery.metadata):
        items["metadata"] = [dict(m) for m in gallery.metadata]
    return items


def write_catalog(writer: BundleWriter, gallery: ImageSet, emb: np.ndarray, *, embedded_by: str,
                  model: dict[str, Any], fp32: bool = True) -> dict[str, Any]:
    """Add the catalog files (item ids, categories and metadata, int8 rows with per-vector scales, optional fp32
    rows) and set ``writer.catalog`` to describe them."""
    return write_catalog_items(writer, catalog_items(gallery), list(gallery.category_names), emb,
                               embedded_by=embedded_by, model=model, fp32=fp32)


def write_catalog_items(writer: BundleWriter, items: dict[str, Any], categories: list[str], emb: np.ndarray, *,
                        embedded_by: str, model: dict[str, Any], fp32: bool = True,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`write_catalog` from an items dict (``{"ids", "categories"[, "metadata"]}``) and category names."""
    writer.add_file("catalog/items.json", "catalog", json.dumps(items, separators=(",", ":")).encode())
    q, scales = quantize_rows(emb)
    writer.add_file("catalog/embeddings.int8.npy", "catalog", q)
    writer.add_file("catalog/scales.f32.npy", "catalog", scales)
    variants: dict[str, Any] = {"int8": {"path": "catalog/embeddings.int8.npy", "dtype": "int8", "scale": "per-vector",
                                         "scale_path": "catalog/scales.f32.npy",
                                         "note": "row ~= int8 row * scale; symmetric, max|row| -> 127"}}
    if fp32:
        writer.add_file("catalog/embeddings.fp32.npy", "catalog", np.ascontiguousarray(emb, np.float32))
        variants["fp32"] = {"path": "catalog/embeddings.fp32.npy", "dtype": "float32"}
    writer.catalog = {
        "kind": "image_embeddings", "items": len(items["ids"]), "dim": int(emb.shape[1]), "metric": "cosine",
        "normalized": True, "embedded_by": embedded_by, "model": model, "items_file": "catalog/items.json",
        "categories": list(categories), "embeddings": variants, "default": "int8",
        "search": "exact: score every row, keep the top k (ties to the lower index)", **(extra or {}),
    }
    return writer.catalog


def worst_of_gate(evaluate: Evaluate, reference: dict[str, float], metrics: tuple[str, ...], max_drop: float
                  ) -> tuple[Evaluate, dict[str, float], QualityGate]:
    """A single-metric :class:`QualityGate` over several metrics: the gated value is the worst change
    ``min(m - reference[m])`` (0 for the float model), so an artifact passes only if every metric holds."""
    missing = [m for m in metrics if m not in reference]
    if missing:
        raise ValueError(f"reference metrics {sorted(reference)} lack the gate metrics {missing}")
    name = "worst change of " + ", ".join(metrics)

    def gate_eval(session: Session) -> dict[str, float]:
        got = evaluate(session)
        return {**got, name: min(got[m] - reference[m] for m in metrics)}

    return gate_eval, {**reference, name: 0.0}, QualityGate(name, max_drop)


def plain_inputs(images: np.ndarray, pre: ImagePreprocessing) -> torch.Tensor:
    """Model inputs with plain (row-major) strides: exporters read the memory layout of the example inputs, and
    a (1, 1, H, W) channels-last tensor would otherwise be taken for NHWC."""
    return torch.from_numpy(np.ascontiguousarray(normalise(to_model_uint8(images, pre), pre)))


def _golden(model: nn.Module, images: np.ndarray, pre: ImagePreprocessing) -> tuple[dict, dict]:
    samples = [(plain_inputs(images[i:i + 1], pre),) for i in range(len(images))]
    return golden_from_model(model.eval(), samples, model.io_spec)


def export_search_bundle(out: Path, model: nn.Module, *, name: str, version: str, pre: ImagePreprocessing,
                         gallery: ImageSet, catalog_emb: np.ndarray, catalog_by: str, catalog_model: dict[str, Any],
                         golden_images: np.ndarray, cfg: ExportConfig, quality: dict[str, Any],
                         int8: bool = False, calibration_images: np.ndarray | None = None,
                         query_images: np.ndarray | None = None, query_labels: np.ndarray | None = None,
                         reference: dict[str, float] | None = None, evaluate: Evaluate | None = None,
                         progress: Progress | None = None,
                         qat_train_images: np.ndarray | None = None) -> tuple[Path, dict[str, Any]]:
    """Write one search bundle at ``out``: ``model`` in ``cfg.formats`` (fp32; int8 gated when ``int8``), the catalog,
    golden data. Each fp32 artifact is scored on the queries through the runtime when queries are given.

    ``evaluate`` (session -> metrics) replaces the default scoring (``query_images`` against the bundle's own catalog,
    hit = same category), e.g. to score validation queries against a separate evaluation catalog. The int8 gate
    keeps a recipe only when none of ``cfg.gate_metrics`` drops by more than ``cfg.gate_max_drop``.

    Returns the committed path and the gate's record per format (recipe chosen or why none passed). A format whose
    int8 recipes all miss the gate falls back to QAT: fine-tuned on ``qat_train_images`` (training pictures; default
    the calibration images), its step picked on the query images (validation).
    """
    model = model.eval().to(memory_format=torch.contiguous_format)
    io = model.io_spec
    example = (plain_inputs(golden_images[:1], pre),)
    with BundleWriter(out, name=name, version=version, task="image_search", inputs=io.inputs, outputs=io.outputs,
                      preprocessing=pre, overwrite=True) as w:
        write_catalog(w, gallery, catalog_emb, embedded_by=catalog_by, model=catalog_model, fp32=cfg.catalog_fp32)
        golden = _golden(model, golden_images, pre)
        w.set_golden(*golden)
        write_test_vectors(w, model, pre, golden_images)  # raw JPEG/PNG + expected input/embedding (arm)
        if evaluate is None and query_images is not None and query_labels is not None:
            catalog: Catalog = read_catalog(w.stage())
            q_inputs = normalise(to_model_uint8(query_images, pre), pre)
            evaluate = gate_evaluator(q_inputs, query_labels, catalog)
        gate_eval = gate_ref = gate = None
        calib: list[tuple[torch.Tensor]] = []
        if int8:
            if evaluate is None or reference is None or calibration_images is None:
                raise ValueError("int8 export needs queries, labels, reference metrics and calibration images")
            calib = [(plain_inputs(calibration_images[i:i + 1], pre),)
                     for i in range(len(calibration_images))]
            gate_eval, gate_ref, gate = worst_of_gate(evaluate, reference, cfg.gate_metrics, cfg.gate_max_drop)
        qat_data = None
        train = qat_train_images if qat_train_images is not None else calibration_images
        if int8 and query_images is not None and len(query_images) and train is not None and len(train) >= 2:
            qat_data = QATData([(plain_inputs(train[i:i + 1], pre),) for i in range(len(train))],
                               [(plain_inputs(query_images[i:i + 1], pre),) for i in range(len(query_images))],
                               source="training pictures" if qat_train_images is not None else
                               "the calibration pictures (training split); step picked on the validation queries")
        done = export_formats_gated(w, model, example, cfg.formats, golden=golden, evaluate=evaluate, int8=int8,
                                    gate=gate, calibration=calib, gate_evaluate=gate_eval, reference=gate_ref,
                                    record=lambda art, metrics: w.update_artifact(art.name, quality=metrics),
                                    fp32_first=True, qat_data=qat_data, progress=progress)
        gates = {fmt: d.gate for fmt, d in done.items() if int8}
        w.quality.update(quality)
        path = w.commit()
    return path, gates
