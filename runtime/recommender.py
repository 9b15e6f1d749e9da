"""On-device next-item recommendations from a ``recommendations`` bundle. numpy only (no torch).

The shop's own item ids go in; they are mapped through the bundle's item table (``catalog/items.npy``: model index
``i`` is ``items[i - 1]``, 0 is padding), unknown ids are ignored and reported, the last ``max_len`` known items are
left-padded into the model's ``history`` input. The model returns the user vector, which the bundle's int8 item table
(``catalog.item_embeddings``: rows and per-row scales) turns into one score per item; the top-k come back as shop ids
(seen items excluded by default, removed items never); a bundle that carries an item-to-item table blends it in
(:mod:`edgecart.runtime.item_to_item`), and one that carries a buy-again prior adds it and, by default, keeps the
seen items (:mod:`edgecart.runtime.buy_again`). An empty or all-unknown history falls back to the bundle's
popularity ranking. Ids are matched as given: ints, integral strings (``"42"`` is 42) and other strings; an id that
cannot be one (a list, a bool) is an :class:`InputSpecError`, an id the bundle does not know is reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._open import open_task_bundle
from .bundle import Bundle
from .buy_again import BuyAgain, read_buy_again
from .errors import BundleError, InputSpecError
from .item_to_item import ItemToItem, read_item_to_item
from .manifest import SequencePreprocessing
from .search import _matvec, one_blas_thread
from .session import Session, load
from .topk import top_k

#: ``manifest.catalog.scoring``: the model outputs a user vector, scored against the bundle's int8 item table
USER_VECTOR = "user_vector"
#: older bundles: the model outputs one score per item index itself (the item table lives inside the model file)
MODEL_SCORES = "model_scores"


@dataclass(frozen=True)
class Recommendation:
    """The top items for one history. ``source`` is ``"model"`` or ``"popularity"`` (cold-start fallback)."""

    items: tuple[Any, ...]
    scores: tuple[float, ...]
    source: str
    unknown: tuple[Any, ...] = ()
    used: int = 0  # known history items that reached the model (after truncation to max_len)
    artifact: str | None = None
    metadata: tuple[dict[str, Any], ...] = ()  # each item's record from the bundle's item metadata ({} without one)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ItemTable:
    """A recommendations bundle's items: shop ids of indices ``1..len(ids)`` (0 is padding), the int8 rows with
    per-row scales that score them (``score = user_vector · q[i] * scale[i]``), popularity (cold starts), and which
    items may be recommended. ``model_items``: the items the table held at export (rows added later are ordinary
    rows: the model takes the history as table rows, so it reads new items too)."""

    ids: np.ndarray  # [m]
    q: np.ndarray | None  # int8 [m + 1, dim]
    scales: np.ndarray | None  # float32 [m + 1]
    popularity: np.ndarray  # float64 [m + 1]
    available: np.ndarray  # bool [m + 1]; False at padding and at removed items
    model_items: int

    def __post_init__(self) -> None:
        m = len(self.ids)
        if self.ids.ndim != 1 or self.popularity.shape != (m + 1,) or self.available.shape != (m + 1,):
            raise BundleError(f"item table: {m} ids, popularity {self.popularity.shape}, available "
                              f"{self.available.shape} disagree; re-export the bundle")
        if self.q is not None and (self.q.ndim != 2 or self.q.shape[0] != m + 1 or self.q.dtype != np.int8
                                   or self.scales is None or self.scales.shape != (m + 1,)):
            raise BundleError(f"item table: int8 rows {self.q.shape} / scales "
                              f"{None if self.scales is None else self.scales.shape} do not match {m} items (+1 "
                              "padding); re-export the bundle")
        if not 1 <= self.model_items <= m:
            raise BundleError(f"item table: the model knows {self.model_items} items but the table has {m}")

    @property
    def dim(self) -> int:
        return 0 if self.q is None else int(self.q.shape[1])

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Scores [U, m + 1] of user vectors [U, dim] (or [dim]) against every row (padding included)."""
        if self.q is None:
            raise BundleError("this bundle's item table has no embeddings to score with; re-export the bundle")
        v = np.asarray(vectors, np.float32)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise InputSpecError(f"user vectors of shape {v.shape} do not match the item table's dimension {self.dim}")
        rows = self._float_rows()
        if v.shape[0] == 1:  # one query: a single-threaded matrix-vector product (no BLAS threads vs the engine's)
            return _matvec(rows, v[0])[None].astype(np.float32, copy=False)
        with one_blas_thread():
            return (v @ rows.T).astype(np.float32, copy=False)

    def embed(self, indices: np.ndarray) -> np.ndarray:
        """The (dequantised) rows of ``indices`` (any shape; index 0, padding, is a zero row) as float32."""
        return self._float_rows()[np.asarray(indices, np.int64)]

    def _float_rows(self) -> np.ndarray:
        # dequantised once per table (m x dim floats), not per query
        cached = self.__dict__.get("_rows")
        if cached is None:
            cached = self.q.astype(np.float32) * self.scales[:, None]  # type: ignore[union-attr,index]
            cached[0] = 0.0  # padding
            object.__setattr__(self, "_rows", cached)
        return cached


def read_item_table(bundle: Bundle) -> ItemTable:
    """The item table a recommendations bundle's manifest describes (``manifest.catalog``)."""
    m = bundle.manifest
    cat = m.catalog or {}
    for key in ("items", "popularity"):
        if not isinstance(cat.get(key), str):
            raise BundleError(f"bundle {m.name!r}: catalog.{key} is missing; re-export the bundle")
    ids = bundle.load_npy(cat["items"])
    popularity = bundle.load_npy(cat["popularity"]).astype(np.float64)
    q = scales = None
    emb = cat.get("item_embeddings")
    if isinstance(emb, Mapping) and isinstance(emb.get("path"), str) and isinstance(emb.get("scale"), str):
        q, scales = bundle.load_npy(emb["path"]), bundle.load_npy(emb["scale"]).astype(np.float32)
    if isinstance(cat.get("available"), str):
        available = bundle.load_npy(cat["available"]).astype(bool)
    else:
        available = np.ones(len(ids) + 1, bool)
    available = available.copy()
    if available.size:
        available[0] = False
    model_items = int(cat.get("model_items", len(ids)))
    return ItemTable(ids, q, scales, popularity, available, model_items)


class Recommender:
    """``Recommender(bundle).recommend(history, k=10)``.

    ``bundle_or_path``: a verified :class:`Bundle`, a bundle directory or its ``.tar.gz``. ``backend``, ``artifact``,
    ``precision`` and ``threads`` are passed to :func:`edgecart.runtime.load` (by default the int8 artifact when the
    bundle kept one, on the first installed engine). The model turns the history into a user vector; the bundle's
    int8 item table scores every item with it (older bundles whose model outputs item scores still work).
    """

    def __init__(self, bundle_or_path: Bundle | str | os.PathLike[str], backend: str = "auto",
                 threads: int | None = None, *, artifact: str | None = None, precision: str | None = None,
                 public_key: Any = None) -> None:
        bundle = open_task_bundle(bundle_or_path, "recommendations", SequencePreprocessing, "Recommender", public_key)
        m = bundle.manifest
        cat = m.catalog or {}
        self.bundle = bundle
        self.max_len = m.preprocessing.max_len
        self.padding = m.preprocessing.padding
        self.pad_index = m.preprocessing.pad_index
        self.table = read_item_table(bundle)
        self.item_to_item: ItemToItem | None = read_item_to_item(bundle)
        self.buy_again: BuyAgain | None = read_buy_again(bundle)
        self.scoring = str(cat.get("scoring", MODEL_SCORES))
        width = m.outputs[0].shape[-1]
        if self.scoring == USER_VECTOR:
            if width != self.table.dim:
                raise BundleError(f"bundle {m.name!r}: the model's user vector has {width} values but the item "
                                  f"table {self.table.dim}; re-export the bundle")
        elif self.scoring == MODEL_SCORES:
            if width != len(self.table.ids) + 1:
                raise BundleError(f"bundle {m.name!r}: the model scores {width} indices but the item table holds "
                                  f"{len(self.table.ids)} items (+1 padding); re-export the bundle")
        else:
            raise BundleError(f"bundle {m.name!r}: catalog.scoring {self.scoring!r} is not one of "
                              f"{(USER_VECTOR, MODEL_SCORES)}; upgrade edgecart or re-export the bundle")
        self._index = item_index(self.table.ids.tolist())
        self._metadata = read_item_metadata(bundle)
        self.session: Session = load(bundle, backend, artifact=artifact, precision=precision, threads=threads)
        self._input = m.inputs[0]
        self._output = m.outputs[0].name
        # the model takes the history's item-table rows (float) or its indices (older bundles)
        self._embeds = self._input.dtype == "float32"
        if self._embeds and (self.scoring != USER_VECTOR or self._input.shape[-1] != self.table.dim):
            raise BundleError(f"bundle {m.name!r}: input {self._input.name!r} {self._input.shape} does not take rows "
                              f"of the {self.table.dim}-d item table; re-export the bundle")

    @property
    def items(self) -> np.ndarray:
        return self.table.ids

    @property
    def popularity(self) -> np.ndarray:
        return self.table.popularity

    @property
    def num_items(self) -> int:
        return int(len(self.table.ids))

    def index_of(self, item_id: Any) -> int | None:
        """The item-table index of a shop item id, or None when the bundle does not know it."""
        try:
            return lookup(self._index, item_id)
        except TypeError:  # unhashable (a list, a dict ...): not an item id
            raise InputSpecError(f"item id {item_id!r} is a {type(item_id).__name__} and cannot be an item id; ids are "
                                 "numbers or strings") from None

    def recommend(self, history: Iterable[Any], k: int = 10, exclude_seen: bool | None = None) -> Recommendation:
        """The ``k`` items most likely next after ``history`` (shop ids, oldest first: pass the whole purchase
        history when the bundle ships a buy-again prior, which counts all of it). ``exclude_seen``: leave out the
        history's items; by default yes, unless the bundle ships a buy-again prior (then re-buys are the point)."""
        _check_k(k)
        exclude_seen = self._exclude_default(exclude_seen)
        known, unknown = self._split(history)
        model_known = known if self._embeds else [i for i in known if i <= self.table.model_items]
        if not model_known:
            scores = self._masked(self.table.popularity.copy(), known, exclude_seen)
            source, used, artifact = "popularity", 0, None
        else:
            out = self.session.run(self._model_input(model_known))[self._output]
            scores = self.output_scores(out, known, exclude_seen)
            source, used, artifact = "model", min(len(model_known), self.max_len), self.session.artifact.name
        top = _top_k(scores, int(k))
        items = tuple(self.table.ids[i - 1].item() for i in top)
        return Recommendation(items, tuple(float(scores[i]) for i in top), source, tuple(unknown), used, artifact,
                              self._records(items))

    def _records(self, items: Sequence[Any]) -> tuple[dict[str, Any], ...]:
        if self._metadata is None:
            return ()
        return tuple(dict(self._metadata.get(i, {})) for i in items)

    def output_scores(self, output: np.ndarray, known: list[int], exclude_seen: bool | None = None) -> np.ndarray:
        """The ranking scores [num_items + 1] (float64) of one model output ([1, width]: the user vector, or item
        scores in older bundles) for a history of known item indices: scored against the item table, blended with
        the bundle's item-to-item table when it carries one (:mod:`edgecart.runtime.item_to_item`), then with its
        buy-again prior (:mod:`edgecart.runtime.buy_again`), then removed items, padding and (with
        ``exclude_seen``, as in :meth:`recommend`) the history's items at -inf. ``recommend`` ranks by these; a
        runner that executes the model elsewhere (e.g. under emulation) passes its output here to rank the same."""
        raw = self.table.scores(output[0])[0] if self.scoring == USER_VECTOR else output[0]
        scores = np.asarray(raw, np.float64).copy()
        scores = rerank(scores[None], [np.asarray(known, np.int64)], self.item_to_item, self.buy_again)[0]
        return self._masked(scores, known, self._exclude_default(exclude_seen))

    def _exclude_default(self, exclude_seen: bool | None) -> bool:
        return self.buy_again is None if exclude_seen is None else bool(exclude_seen)

    def _masked(self, scores: np.ndarray, known: list[int], exclude_seen: bool) -> np.ndarray:
        scores[~self.table.available] = -np.inf  # padding and removed items
        if exclude_seen and known:
            scores[np.asarray(known, np.int64)] = -np.inf
        return scores

    def similar(self, item_id: Any, k: int = 10) -> Recommendation:
        """Items whose (int8) embeddings are closest to ``item_id``'s by cosine — "similar items" on the device."""
        _check_k(k)
        t = self.table
        if t.q is None:
            raise BundleError(f"bundle {self.bundle.manifest.name!r} carries no item embeddings; re-export it")
        idx = self.index_of(item_id)
        if idx is None:
            return Recommendation((), (), "item-embeddings", (item_id,), 0, None)
        rows = t._float_rows()
        v = rows[idx]
        norms = np.linalg.norm(rows, axis=1) * float(np.linalg.norm(v))
        sims = np.where(norms > 0, (rows @ v) / np.maximum(norms, 1e-12), -np.inf).astype(np.float64)
        sims[~t.available] = -np.inf
        sims[idx] = -np.inf
        top = _top_k(sims, int(k))
        items = tuple(t.ids[i - 1].item() for i in top)
        return Recommendation(items, tuple(float(sims[i]) for i in top), "item-embeddings", (), 1, None,
                              self._records(items))

    def _split(self, history: Iterable[Any]) -> tuple[list[int], list[Any]]:
        if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
            raise InputSpecError(f"history must be a sequence of item ids, not {type(history).__name__} (wrap a "
                                 "single id in a list)")
        items = list(history)
        known, unknown = [], []
        for item in items:
            idx = self.index_of(item)
            (unknown.append(item) if idx is None else known.append(idx))
        return known, unknown

    def _pad_indices(self, known: list[int]) -> np.ndarray:
        """int64 [1, max_len]: the last ``max_len`` indices, padded as the manifest says."""
        recent = np.asarray(known[-self.max_len:], np.int64)
        x = np.full((1, self.max_len), self.pad_index, np.int64)
        if self.padding == "left":
            x[0, self.max_len - recent.size:] = recent
        else:
            x[0, :recent.size] = recent
        return x

    def _model_input(self, known: list[int]) -> np.ndarray:
        """The model's input for the known indices of a history: their item-table rows (float32 [1, max_len, dim],
        zero rows as padding), or for older bundles the padded indices themselves."""
        x = self._pad_indices(known)
        return self.table.embed(x) if self._embeds else x

    _pad = _model_input  # the name benchmarks and the ARM runner use

    def __repr__(self) -> str:
        return (f"Recommender({self.bundle.manifest.name!r}, items={self.num_items}, max_len={self.max_len}, "
                f"artifact={self.session.artifact.name!r}, backend={self.session.backend.name!r})")


def rerank(scores: np.ndarray, histories: Sequence[np.ndarray], item_to_item: ItemToItem | None = None,
           buy_again: BuyAgain | None = None) -> np.ndarray:
    """Model scores [U, columns] through a bundle's optional second scorers, in the runtime's order: the
    item-to-item blend, then the buy-again prior (either may be None). The build measures its artifacts through
    this same function, so what it reports is what :meth:`Recommender.recommend` ranks by."""
    if item_to_item is not None:
        scores = item_to_item.blend_scores(scores, histories)
    if buy_again is not None:
        scores = buy_again.blend_scores(scores, histories)
    return scores


def _check_k(k: Any) -> None:
    """k is a positive integer (InputSpecError, a ValueError, otherwise)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputSpecError(f"k must be a positive integer, got {k!r}")


def item_index(ids: Sequence[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
    """Lookup tables of item-table indices (1-based): each id as written (strings stripped), and a loose key where
    it is unambiguous (``"7"``, ``7`` and ``7.0`` as one; an id whose loose key two items share is found only as
    written, so ``"00007"`` and ``"7"`` stay two items)."""
    exact = {_exact(v): i + 1 for i, v in enumerate(ids)}
    loose: dict[Any, list[int]] = {}
    for k, i in exact.items():
        loose.setdefault(_key(k), []).append(i)
    return exact, {k: found[0] for k, found in loose.items() if len(found) == 1}


def lookup(index: tuple[dict[Any, int], dict[Any, int]], item: Any) -> int | None:
    """The index of ``item`` in :func:`item_index`'s tables: as written first, else by its loose key (None: unknown).
    An unhashable item raises TypeError."""
    exact, loose = index
    found = exact.get(_exact(item))
    return found if found is not None else loose.get(_key(item))


def read_item_metadata(bundle: Bundle) -> dict[Any, dict[str, Any]] | None:
    """id -> record of the bundle's item metadata (``catalog.metadata``: ids and records, read and checked), or None
    when the bundle carries none."""
    name = (bundle.manifest.catalog or {}).get("metadata")
    if not isinstance(name, str):
        return None
    import json

    try:
        doc = json.loads(bundle.read_verified(name).decode("utf-8"))
        return {i: dict(r) for i, r in zip(doc["ids"], doc["records"], strict=True)}
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"bundle {bundle.manifest.name!r}: item metadata {name} is malformed ({exc}); rebuild it or "
                          "update it with 'edgecart catalog update --items'") from None


def _exact(item: Any) -> Any:
    if isinstance(item, np.generic):
        item = item.item()
    return item.strip() if isinstance(item, str) else _key(item)


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
    if isinstance(item, bool):
        return ("bool", item)  # True is not item 1: a flag is never an id, it is reported as unknown
    if isinstance(item, (list, dict, set, bytearray)):
        raise TypeError(type(item).__name__)
    return item


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first; ties go to the lower index."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return finite
    return finite[top_k(scores[finite][None], k)[0][0]]
