"""Evaluation through the runtime: exported artifacts embed queries (and, for symmetric search, the catalog) exactly
as a device would, the catalog is scanned by the runtime's own search, and single-image latency is timed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgecart.runtime.preprocess import normalise, to_model_uint8
from edgecart.runtime.search import Catalog, ImageSearch
from edgecart.runtime.session import Session
from tqdm.auto import tqdm

from .metrics import Retrieval, rank, retrieval_from_ranks


def session_embed(session: Session, inputs: np.ndarray, desc: str | None = None) -> np.ndarray:
    """(N, D) embeddings of preprocessed inputs (N, C, H, W) run one by one (batch 1, as exported)."""
    name = session.outputs[0].name
    rows = []
    it = range(len(inputs))
    if desc:
        it = tqdm(it, desc=desc, unit="img", leave=False, disable=None, mininterval=1.0)
    for i in it:
        rows.append(session.run(inputs[i:i + 1])[name].reshape(-1))
    return np.stack(rows).astype(np.float32)


@dataclass(frozen=True)
class ArtifactEval:
    """One artifact run through the runtime: asymmetric (vs the bundle catalog) and, optionally, symmetric quality."""

    artifact: str
    format: str
    precision: str
    backend: str
    bytes: int
    catalog: Retrieval
    symmetric: Retrieval | None
    top10: np.ndarray


def evaluate_search(search: ImageSearch, images: np.ndarray, labels: np.ndarray, *, gallery_images: np.ndarray | None
                    = None, desc: str = "eval") -> ArtifactEval:
    """Query ``search`` with raw uint8 pictures (its full path: preprocess, embed, scan the bundle catalog).

    With ``gallery_images`` the catalog is also re-embedded with the same artifact for student-to-student search.
    """
    cat = search.catalog
    q = np.stack([search.embed(img) for img in tqdm(images, desc=desc, unit="img", leave=False, disable=None,
                                                       mininterval=1.0)])
    top, on_catalog = _search_catalog(cat, q, labels)
    sym = None
    if gallery_images is not None:
        pre = search.preprocessing
        inputs = normalise(to_model_uint8(gallery_images, pre), pre)
        g = session_embed(search.session, inputs, desc=f"{desc} catalog")
        idx = rank(q, g, k=10)
        sym = retrieval_from_ranks(cat.categories[idx], labels, cat.categories)
    m = search.bundle.manifest
    art = search.session.artifact
    size = m.artifact_bytes(art)
    return ArtifactEval(art.name, art.format, art.precision, search.session.backend.name, size, on_catalog, sym, top)


def gate_evaluator(query_inputs: np.ndarray, query_labels: np.ndarray, catalog: Catalog):
    """An ``evaluate(session) -> {metric: value}`` for the int8 quality gate: queries against the bundle catalog."""

    def evaluate(session: Session) -> dict[str, float]:
        r = _search_catalog(catalog, session_embed(session, query_inputs), query_labels)[1]
        return {"recall@1": r.recall_at_1, "recall@10": r.recall_at_10, "map@10": r.map_at_10}

    return evaluate


def _search_catalog(catalog: Catalog, queries: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Retrieval]:
    """The top-10 catalog rows per query embedding and the retrieval quality they give."""
    top = catalog.top_k(queries, 10)[0]
    return top, retrieval_from_ranks(catalog.categories[top], labels, catalog.categories)


def top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of ids two (Q, 10) result lists have in common."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def same_top10(tops: list[np.ndarray], ordered: bool = False) -> float:
    """Share of queries for which every result list in ``tops`` (each (Q, 10)) holds the same ids."""
    if len(tops) < 2:
        return 1.0
    base = tops[0] if ordered else np.sort(tops[0], axis=1)
    same = np.ones(len(base), bool)
    for t in tops[1:]:
        same &= ((t if ordered else np.sort(t, axis=1)) == base).all(axis=1)
    return float(same.mean())


@dataclass(frozen=True)
class Latency:
    """Single-image latency of one artifact on one backend, in milliseconds."""

    artifact: str
    backend: str
    threads: int
    p50_ms: float
    p90_ms: float
    runs: int


def latency(session: Session, x: np.ndarray, runs: int, warmup: int = 10) -> Latency:
    """Time ``session.run(x)`` (batch 1) ``runs`` times after ``warmup`` runs; median and 90th percentile."""
    from edgecart.benchmarks.remote_runner import measure

    measure(lambda _i: session.run(x), warmup, 0.0)
    times = np.asarray(measure(lambda _i: session.run(x), runs, 0.0))
    return Latency(session.artifact.name, session.backend.name, session.threads or 0,
                   float(np.median(times) * 1e3), float(np.percentile(times, 90) * 1e3), runs)
