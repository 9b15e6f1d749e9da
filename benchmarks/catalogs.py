"""Search bundles with generated catalogs, for measuring search at a chosen catalog size (10k, 100k, 1M items).

:func:`with_catalog` writes a copy of a bundle (its models, golden data and quality kept) as an ``image_search``
bundle over the given catalog embeddings, in the layout the image-search pipeline writes (int8 rows with per-vector
scales, items file with optional per-item ``metadata``, optional fp32 rows, optional IVF index).
:func:`random_catalog` makes unit-norm rows — uniform on the sphere, or clustered like real product embeddings.

Writing uses :class:`edgecart.exporters.BundleWriter` (imported when called; no torch needed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def random_catalog(n: int, dim: int = 128, *, clusters: int | None = None, spread: float = 0.35,
                   seed: int = 0) -> np.ndarray:
    """(n, dim) float32 unit rows: uniform on the sphere, or (``clusters``) around that many random centres with
    per-coordinate noise ``spread / sqrt(dim)`` — products of one kind resemble each other, as embeddings do."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    centres = None
    if clusters:
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    block = 65536
    for a in range(0, n, block):
        b = min(n, a + block)
        x = rng.standard_normal((b - a, dim)).astype(np.float32)
        if centres is not None:
            x = centres[rng.integers(0, len(centres), b - a)] + x * (spread / np.sqrt(dim))
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def with_catalog(src: str | os.PathLike[str], out: str | os.PathLike[str], embeddings: np.ndarray, *,
                 ids: Sequence[str] | None = None, categories: Sequence[int] | None = None,
                 category_names: Sequence[str] | None = None, metadata: Sequence[dict[str, Any] | None] | None = None,
                 preprocessing: Any = None, fp32: bool = False, index: bool | dict[str, Any] = False,
                 name: str | None = None) -> Path:
    """Copy the bundle at ``src`` to ``out`` as an image-search bundle over ``embeddings`` (N, D float32 rows).

    ``index``: True (or build options for :func:`edgecart.runtime.index.build_ivf`) adds an IVF index.
    ``preprocessing``: an ``ImagePreprocessing`` when the source bundle has none.
    """
    from edgecart.exporters import BundleWriter
    from edgecart.runtime import open_bundle
    from edgecart.runtime.index import add_index
    from edgecart.runtime.search import quantize_rows

    b = open_bundle(src)
    m = b.manifest
    emb = np.ascontiguousarray(embeddings, np.float32)
    n = len(emb)
    ids = [str(i) for i in (ids if ids is not None else (f"item-{i}" for i in range(n)))]
    categories = [int(c) for c in (categories if categories is not None else np.zeros(n, np.int64))]
    names = list(category_names) if category_names is not None else [str(c) for c in sorted(set(categories))]
    pre = preprocessing or m.preprocessing
    golden_files = set() if m.golden is None else {*m.golden.inputs.values(), *m.golden.outputs.values()}
    with BundleWriter(out, name=name or m.name, version=m.version, task="image_search", inputs=m.inputs,
                      outputs=m.outputs, preprocessing=pre, overwrite=True) as w:
        for f in m.files:
            if f.path.startswith("catalog/") or f.path in golden_files:
                continue
            w.add_file(f.path, f.role, b.path(f.path).read_bytes())
        for art in m.artifacts:
            w.add_artifact(art)
        if m.golden is not None:
            w.set_golden({k: b.load_npy(p) for k, p in m.golden.inputs.items()},
                         {k: b.load_npy(p) for k, p in m.golden.outputs.items()})
        w.quality = dict(m.quality or {})
        items: dict[str, Any] = {"ids": ids, "categories": categories}
        if metadata is not None:
            items["metadata"] = [None if x is None else dict(x) for x in metadata]
        w.add_file("catalog/items.json", "catalog", json.dumps(items, separators=(",", ":")).encode())
        q, scales = quantize_rows(emb)
        w.add_file("catalog/embeddings.int8.npy", "catalog", q)
        w.add_file("catalog/scales.f32.npy", "catalog", scales)
        variants: dict[str, Any] = {"int8": {"path": "catalog/embeddings.int8.npy", "dtype": "int8",
                                             "scale": "per-vector", "scale_path": "catalog/scales.f32.npy"}}
        if fp32:
            w.add_file("catalog/embeddings.fp32.npy", "catalog", emb)
            variants["fp32"] = {"path": "catalog/embeddings.fp32.npy", "dtype": "float32"}
        w.catalog = {"kind": "image_embeddings", "items": n, "dim": int(emb.shape[1]), "metric": "cosine",
                     "normalized": True, "embedded_by": "generated", "model": {"generated": True},
                     "items_file": "catalog/items.json", "categories": names, "embeddings": variants,
                     "default": "int8", "search": "exact: score every row, keep the top k (ties to the lower index)"}
        if index:
            add_index(w, q, scales, **(index if isinstance(index, dict) else {}))
        return w.commit()


__all__ = ["random_catalog", "with_catalog"]
