"""The JSON Schema is the contract: every kind of bundle edgecart writes validates against it — tested on real bundles
written by each task's own export code (tiny models, one format plus the int8 gate, to stay fast) — and the parser
reads each back losslessly, signed and slim variants included."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import jsonschema
import numpy as np
import pytest
from edgecart.runtime import Manifest, open_bundle
from edgecart.runtime.manifest import ImagePreprocessing

from ..conftest import _tiny_model

PRE = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))


@pytest.fixture(scope="module")
def schema():
    s = json.loads(resources.files("edgecart.runtime").joinpath("manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def _gallery(n: int = 24):
    from edgecart.data.fashion_mnist import ImageSet

    rng = np.random.default_rng(7)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    images[labels == 0, :14] += 150
    images[labels == 1, :, :14] += 150
    return ImageSet(images, labels.astype(np.int64), ("top", "left", "noise"), tuple(f"item-{i}" for i in range(n)))


def _image_search_bundle(out):
    """The vision task's own writer: catalog, golden data, fp32 ONNX, and the int8 gate (kept or rejected)."""
    from edgecart.runtime.search import Catalog
    from edgecart.vision.config import ExportConfig
    from edgecart.vision.evaluate import _search_catalog
    from edgecart.vision.export import export_search_bundle
    from edgecart.vision.train import embed

    model = _tiny_model(seed=3)
    gallery = _gallery()
    emb = embed(model, gallery.images, PRE, desc="")
    queries = gallery.images[::2]
    labels = gallery.labels[::2]
    cat = Catalog(gallery.ids, gallery.labels, gallery.classes, emb, None, "cosine", "student", "fp32")
    r = _search_catalog(cat, embed(model, queries, PRE, desc=""), labels)[1]
    reference = {"recall@1": r.recall_at_1, "recall@10": r.recall_at_10, "map@10": r.map_at_10}
    path, _ = export_search_bundle(out, model, name="tiny-search", version="0.0.1", pre=PRE, gallery=gallery,
                                   catalog_emb=emb, catalog_by="student", catalog_model={"model": "tiny"},
                                   golden_images=gallery.images[:2],
                                   cfg=ExportConfig(formats=("onnx",), golden=2, calibration=8), quality={},
                                   int8=True, calibration_images=gallery.images[:8], query_images=queries,
                                   query_labels=labels, reference=reference)
    return path


def _recommendations_bundle(out):
    """The recommendations task's own writer: item table, popularity, item embeddings, fp32 ONNX, int8 gate."""
    import torch
    from edgecart.data.sequences import SequenceData, leave_last_out
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.baselines import Popularity
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST

    n_items = 12
    rng = np.random.default_rng(0)
    seqs = tuple((np.arange(s, s + 10) % n_items + 1).astype(np.int64) for s in rng.integers(0, n_items, 40))
    data = SequenceData("cycle", np.arange(1001, 1001 + n_items, dtype=np.int64), np.arange(40), seqs)
    split = leave_last_out(data)
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items, max_len=8, dim=8, heads=1, layers=1, dropout=0.0)).eval()
    cfg = dataclasses.replace(FAST, max_len=8, formats=("onnx",), int8=True, gate_users=16, calibration_samples=4)
    pop = Popularity(split.train, n_items).counts
    path, _, _ = write_bundle(model, data, split, cfg, out, popularity=pop, quality={"note": "schema test"},
                              name="cycle")
    return path


@pytest.fixture(scope="module")
def task_bundles(tiny_bundle, tmp_path_factory):
    """One real bundle per task edgecart writes today (text_search joins when its writer lands)."""
    root = tmp_path_factory.mktemp("schema-bundles")
    return {
        "generic": tiny_bundle,
        "image_search": _image_search_bundle(root / "search"),
        "recommendations": _recommendations_bundle(root / "recs"),
    }


TASKS = ("generic", "image_search", "recommendations")


@pytest.mark.parametrize("task", TASKS)
def test_every_task_bundle_validates_and_round_trips(task_bundles, schema, task):
    path = task_bundles[task]
    data = json.loads((path / "manifest.json").read_text())
    jsonschema.validate(data, schema)
    m = open_bundle(path).manifest
    assert m.task == task
    assert Manifest.from_json(m.to_json()) == m
    assert Manifest.from_json(m.to_json()).to_dict() == data


@pytest.mark.parametrize("task", TASKS)
def test_signed_and_slim_manifests_validate(task_bundles, schema, task, tmp_path):
    from edgecart.runtime.archive import slim_manifest
    from edgecart.runtime.signing import generate_keypair, sign_manifest, verify_manifest_signature

    priv, pub = generate_keypair(tmp_path / "keys")
    m = open_bundle(task_bundles[task]).manifest
    signed = sign_manifest(m, priv)
    jsonschema.validate(json.loads(signed.to_json()), schema)
    verify_manifest_signature(Manifest.from_json(signed.to_json()), pub)
    slim = slim_manifest(m, ["onnx"])
    jsonschema.validate(slim.to_dict(), schema)
    assert {a.format for a in slim.artifacts} == {"onnx"}


def test_int8_gate_records_are_in_the_contract(task_bundles):
    """The int8 gate ran in both task writers: each format's int8 is either kept (with its gate record) or rejected
    (with the reason) — both shapes validated above."""
    for task in ("image_search", "recommendations"):
        m = open_bundle(task_bundles[task]).manifest
        kept = {a.format for a in m.artifacts if a.precision == "int8"}
        rejected = set(m.quality.get("int8_rejected", {}))
        assert kept | rejected == {"onnx"}, task
        for a in m.artifacts:
            if a.precision == "int8":
                assert a.quantization["gate"]["chosen"]


@pytest.mark.parametrize("task", ["image_search", "recommendations"])
def test_task_sections_are_required_by_schema_and_parser(task_bundles, schema, task):
    from edgecart.runtime import ManifestError

    data = json.loads((task_bundles[task] / "manifest.json").read_text())
    bad = {**data, "catalog": None}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(ManifestError, match="catalog"):
        Manifest.from_dict(bad)
    path_key = "items_file" if task == "image_search" else "popularity"
    bad = {**data, "catalog": {**data["catalog"], path_key: "catalog/not-listed.npy"}}
    with pytest.raises(ManifestError, match=f"catalog.{path_key}.*not-listed"):
        Manifest.from_dict(bad)
