"""Rebuilding a catalog's IVF index after the catalog changed (``edgecart catalog add|remove|update``): the settings
the old ``catalog.index`` entry records are kept, the number of lists follows the new catalog's size. numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from edgecart.benchmarks.catalogs import random_catalog
from edgecart.runtime import ManifestError
from edgecart.runtime.index import INDEX_DIR, add_index, default_lists, read_index, rebuild_index


class _Writer:
    def __init__(self) -> None:
        self.catalog: dict[str, Any] | None = {"kind": "image_embeddings"}
        self.files: dict[str, np.ndarray] = {}

    def add_file(self, rel: str, role: str, data: Any = None) -> None:
        assert role == "catalog" and rel.startswith(INDEX_DIR + "/")
        self.files[rel] = np.asarray(data)


def _old(n: int, **build: Any) -> dict[str, Any]:
    return add_index(_Writer(), random_catalog(n, 16, clusters=8, seed=1), **build)


def _rebuild(entry: dict[str, Any], n: int, **kw: Any) -> tuple[dict[str, Any], _Writer]:
    w = _Writer()
    rows = random_catalog(n, 16, clusters=8, seed=2)
    new = rebuild_index(w, entry, rows, **kw)
    assert w.catalog["index"] == new and new["items"] == n and new["kind"] == "ivf"
    index = read_index(lambda p: w.files[p], new, n, 16)  # the files describe the new rows
    assert index.lists == new["lists"] and sorted(index.order.tolist()) == list(range(n))
    return new, w


def test_default_lists_follow_the_catalog_size():
    old = _old(400)
    assert old["lists"] == default_lists(400) == 40
    assert _rebuild(old, 100)[0]["lists"] == default_lists(100) == 20
    assert _rebuild(old, 900)[0]["lists"] == default_lists(900) == 60


def test_chosen_lists_are_kept_but_never_more_than_the_rows():
    old = _old(300, lists=8)
    assert _rebuild(old, 200)[0]["lists"] == 8
    assert _rebuild(old, 5)[0]["lists"] == 5
    assert _rebuild(old, 1)[0]["lists"] == 1


def test_target_recall_recall_queries_and_built_from_are_kept():
    old = _old(300, lists=8, target_recall=0.8, recall_queries=40)
    new, _ = _rebuild(old, 250)
    assert new["target_recall"] == 0.8 and new["recall_queries"] == 40 and new["built_from"] == "float32"
    assert new["recall_at_10"] >= 0.8 or new["nprobe"] == new["lists"]  # nprobe chosen again for the target
    # an old index whose queries were every row (a small catalog) gets the default number on a bigger one
    small = _old(30, lists=4)
    assert small["recall_queries"] == 30
    assert _rebuild(small, 600)[0]["recall_queries"] == 500
    # int8 rows with scales
    q = np.clip(np.rint(random_catalog(60, 16, seed=3) * 127), -127, 127).astype(np.int8)
    w = _Writer()
    assert rebuild_index(w, old, q, np.full(60, 1 / 127, np.float32))["built_from"] == "int8"


def test_an_nprobe_chosen_by_hand_is_kept():
    """add_index stops choosing at the target recall or at every list: an old recall below the target with fewer
    lists probed was an nprobe given by hand."""
    old = {**_old(300, lists=8), "nprobe": 2, "recall_at_10": 0.5, "target_recall": 0.95}
    new, _ = _rebuild(old, 200)
    assert new["nprobe"] == 2 and new["lists"] == 8
    assert _rebuild({**old, "lists": 3}, 2)[0]["nprobe"] == 2  # capped to the lists left
    assert _rebuild({**old, "nprobe": 5}, 3)[0]["nprobe"] == 3


@pytest.mark.parametrize("entry, match", [
    ({"kind": "hnsw", "m": 16}, "kind 'hnsw'"),
    ("ivf", "must be an object"),
    ({"kind": "ivf", "lists": "many", "items": 10}, "malformed"),
    ({"kind": "ivf"}, "malformed"),
    ({"kind": "ivf", "lists": 2, "items": 10, "target_recall": 2}, "target_recall"),
])
def test_an_entry_that_cannot_be_rebuilt_is_a_manifest_error(entry, match):
    w = _Writer()
    with pytest.raises(ManifestError, match=match):
        rebuild_index(w, entry, random_catalog(10, 16, seed=0))
    assert not w.files and "index" not in w.catalog
