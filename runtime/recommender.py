"""On-device next-item recommendations from a ``recommendations`` bundle. numpy only (no torch).

The shop's own item ids go in; they are mapped through the bundle's item table (``catalog/items.npy``: model index
``i`` is ``items[i - 1]``, 0 is padding), unknown ids are ignored and reported, the last ``max_len`` known items are
left-padded into the model's ``history`` input, and the top-k of its ``scores`` come back as shop ids. An empty or
all-unknown history falls back to the bundle's popularity ranking.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle, open_bundle
from .errors import BundleError, InputSpecError
from .manifest import SequencePreprocessing
from .search import top_k
from .session import Session, load


@dataclass(frozen=True)
class Recommendation:
    """The top items for one history. ``source`` is ``"model"`` or ``"popularity"`` (cold-start fallback)."""

    items: tuple[Any, ...]
    scores: tuple[float, ...]
    source: str
    unknown: tuple[Any, ...] = ()
    used: int = 0  # known history items that reached the model (after truncation to max_len)
    artifact: str | None = None

    def __len__(self) -> int:
        return len(self.items)


class Recommender:
    """``Recommender(bundle).recommend(history, k=10, exclude_seen=True)``.

    ``bundle_or_path``: a verified :class:`Bundle`, a bundle directory or its ``.tar.gz``. ``backend``, ``artifact``,
    ``precision`` and ``threads`` are passed to :func:`edgecart.runtime.load` (by default the int8 artifact when the
    bundle kept one, on the first installed engine).
    """

    def __init__(self, bundle_or_path: Bundle | str | os.PathLike[str], backend: str = "auto",
                 threads: int | None = None, *, artifact: str | None = None, precision: str | None = None) -> None:
        bundle = bundle_or_path if isinstance(bundle_or_path, Bundle) else open_bundle(bundle_or_path)
        m = bundle.manifest
        if m.task != "recommendations":
            raise BundleError(f"bundle {m.name!r} is a {m.task!r} bundle; Recommender needs a 'recommendations' one")
        if not isinstance(m.preprocessing, SequencePreprocessing):
            raise BundleError(f"bundle {m.name!r} has no sequence preprocessing; re-export it")
        cat = m.catalog or {}
        for key in ("items", "popularity"):
            if not isinstance(cat.get(key), str):
                raise BundleError(f"bundle {m.name!r}: catalog.{key} is missing; re-export the bundle")
        self.bundle = bundle
        self.max_len = m.preprocessing.max_len
        self.padding = m.preprocessing.padding
        self.pad_index = m.preprocessing.pad_index
        self.items = bundle.load_npy(cat["items"])
        self.popularity = bundle.load_npy(cat["popularity"]).astype(np.float64)
        n = len(self.items)
        if self.items.ndim != 1 or self.popularity.shape != (n + 1,):
            raise BundleError(f"bundle {m.name!r}: item table {self.items.shape} and popularity "
                              f"{self.popularity.shape} disagree; re-export the bundle")
        if m.outputs[0].shape[-1] != n + 1:
            raise BundleError(f"bundle {m.name!r}: the model scores {m.outputs[0].shape[-1]} indices but the item "
                              f"table holds {n} items (+1 padding); re-export the bundle")
        self._index: dict[Any, int] = {_key(v): i + 1 for i, v in enumerate(self.items.tolist())}
        self.session: Session = load(bundle, backend, artifact=artifact, precision=precision, threads=threads)
        self._input = m.inputs[0]
        self._output = m.outputs[0].name
        self._embeddings: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def num_items(self) -> int:
        return int(len(self.items))

    def index_of(self, item_id: Any) -> int | None:
        """The model index of a shop item id, or None when the bundle does not know it."""
        try:
            return self._index.get(_key(item_id))
        except TypeError:  # unhashable (a list, a dict ...): not an item id
            raise InputSpecError(f"item id {item_id!r} is a {type(item_id).__name__}; ids are numbers or strings") \
                from None

    def recommend(self, history: Iterable[Any], k: int = 10, exclude_seen: bool = True) -> Recommendation:
        """The ``k`` items most likely next after ``history`` (shop ids, oldest first)."""
        _check_k(k)
        if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
            raise InputSpecError(f"history must be a sequence of item ids, not {type(history).__name__}")
        known, unknown = [], []
        for item in history:
            idx = self.index_of(item)
            (unknown.append(item) if idx is None else known.append(idx))
        if not known:
            scores = self.popularity.copy()
            source, used, artifact = "popularity", 0, None
        else:
            x = self._pad(known)
            scores = self.session.run(x)[self._output][0].astype(np.float64)
            source, used, artifact = "model", min(len(known), self.max_len), self.session.artifact.name
        scores[self.pad_index] = -np.inf
        if exclude_seen and known:
            scores[np.asarray(known, np.int64)] = -np.inf
        top = _top_k(scores, int(k))
        return Recommendation(tuple(self.items[i - 1].item() for i in top), tuple(float(scores[i]) for i in top),
                              source, tuple(unknown), used, artifact)

    def similar(self, item_id: Any, k: int = 10) -> Recommendation:
        """Items whose (int8) embeddings are closest to ``item_id``'s by cosine — "similar items" on the device."""
        _check_k(k)
        q, scale = self._item_embeddings()
        idx = self.index_of(item_id)
        if idx is None:
            return Recommendation((), (), "item-embeddings", (item_id,), 0, None)
        v = q[idx].astype(np.float32) * scale[idx]
        sims = (q.astype(np.float32) @ v) * scale
        norms = np.linalg.norm(q.astype(np.float32), axis=1) * scale * float(np.linalg.norm(v))
        sims = np.where(norms > 0, sims / np.maximum(norms, 1e-12), -np.inf).astype(np.float64)
        sims[[self.pad_index, idx]] = -np.inf
        top = _top_k(sims, int(k))
        return Recommendation(tuple(self.items[i - 1].item() for i in top), tuple(float(sims[i]) for i in top),
                              "item-embeddings", (), 1, None)

    def _item_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        if self._embeddings is None:
            emb = (self.bundle.manifest.catalog or {}).get("item_embeddings")
            if not isinstance(emb, Mapping) or "path" not in emb or "scale" not in emb:
                raise BundleError(f"bundle {self.bundle.manifest.name!r} carries no item embeddings; re-export it")
            q, scale = self.bundle.load_npy(emb["path"]), self.bundle.load_npy(emb["scale"]).astype(np.float32)
            if q.shape[0] != self.num_items + 1 or scale.shape != (q.shape[0],):
                raise BundleError("item embeddings do not match the item table; re-export the bundle")
            self._embeddings = (q, scale)
        return self._embeddings

    def _pad(self, known: list[int]) -> np.ndarray:
        recent = np.asarray(known[-self.max_len:], np.int64)
        x = np.full(self._input.shape, self.pad_index, np.int64)
        if self.padding == "left":
            x[0, self.max_len - recent.size:] = recent
        else:
            x[0, :recent.size] = recent
        return x

    def __repr__(self) -> str:
        return (f"Recommender({self.bundle.manifest.name!r}, items={self.num_items}, max_len={self.max_len}, "
                f"artifact={self.session.artifact.name!r}, backend={self.session.backend.name!r})")


def _check_k(k: Any) -> None:
    """k is a positive integer (InputSpecError, a ValueError, otherwise)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputSpecError(f"k must be a positive integer, got {k!r}")


def _key(item: Any) -> Any:
    """Normalise an id for lookup: numpy scalars become Python ones; integral strings and ints compare equal."""
    if isinstance(item, np.generic):
        item = item.item()
    if isinstance(item, str):
        s = item.strip()
        if s.lstrip("-").isdigit():
            try:
                return int(s)
            except ValueError:  # digits int() does not take ("²") or more than Python converts
                return s
        return s
    if isinstance(item, float) and item.is_integer():
        return int(item)
    return item


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first; ties go to the lower index."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return finite
    return finite[top_k(scores[finite][None], k)[0][0]]
