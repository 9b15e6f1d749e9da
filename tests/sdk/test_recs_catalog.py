"""``edgecart catalog add|remove|update`` on a recommendations bundle keeps what the item table does not change: the
backend order ``edgecart prefer`` measured for the models (``backend_preference``). An untrained tiny SASRec, ONNX
only, 12 items."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
from edgecart.runtime import open_bundle


@pytest.fixture(scope="module")
def preferred(tmp_path_factory):
    """(a bundle whose manifest prefers onnxruntime then litert on this platform, its item ids)."""
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST
    from edgecart.runtime.preference import record_preference

    from ..tiny_recs import cycle_data

    data, split, pop = cycle_data()
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(data.num_items, max_len=8, dim=8, heads=1, layers=1, dropout=0.0))
    cfg = dataclasses.replace(FAST, max_len=8, formats=("onnx",), int8=False, gate_users=10)
    tmp = tmp_path_factory.mktemp("rcat")
    path, _, _ = write_bundle(model, data, split, cfg, tmp / "b", popularity=pop, quality={}, name="cycle")
    p2, m2 = record_preference(path, ["onnxruntime", "litert"], out=tmp / "p2",
                               measured={"p50_ms": {"onnxruntime": 0.1, "litert": 0.2}, "how": "test"})
    assert m2.backend_preference
    return p2, data.item_ids.tolist()


def _catalog(argv) -> int:
    from edgecart.cli import catalog_cmd

    parser = argparse.ArgumentParser()
    catalog_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def _same_preference(new, old) -> None:
    from edgecart.runtime.preference import preferred_order

    m = open_bundle(new).manifest
    assert m.backend_preference == open_bundle(old).manifest.backend_preference
    assert preferred_order(m)[:2] == ("onnxruntime", "litert")


def test_the_audit_repro_catalog_remove_after_prefer(preferred, tmp_path):
    p2, ids = preferred
    assert _catalog(["catalog", "remove", p2, "--ids", str(ids[0]), "--out", tmp_path / "p3"]) == 0
    _same_preference(tmp_path / "p3", p2)


@pytest.mark.parametrize("action, text", [
    ("update", "item_id,name\n{a},Item A\n"),
    ("add", "item_id,like,name\n9001,{a},New\n"),
])
def test_catalog_update_and_add_keep_the_backend_preference(preferred, tmp_path, action, text):
    p2, ids = preferred
    f = tmp_path / "items.csv"
    f.write_text(text.format(a=ids[1]))
    assert _catalog(["catalog", action, p2, "--items", f, "--out", tmp_path / "p3"]) == 0
    _same_preference(tmp_path / "p3", p2)


def test_update_item_table_keeps_the_backend_preference(preferred, tmp_path):
    from edgecart.recs.catalog import update_item_table
    from edgecart.runtime.recommender import read_item_table

    p2, ids = preferred
    dim = read_item_table(open_bundle(p2)).q.shape[1]
    new = update_item_table(p2, tmp_path / "p3", add={9002: np.full(dim, 0.1, np.float32)}, remove=[ids[2]])
    _same_preference(new, p2)
    # in place (no new folder): replaced atomically, still preferring the measured order
    _catalog(["catalog", "remove", new, "--ids", str(ids[3])])
    _same_preference(new, p2)
