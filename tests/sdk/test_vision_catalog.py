"""``edgecart catalog add|remove|update`` on an image-search bundle (audit fixes): a bundle with an IVF index gets an
index over its new catalog (same settings, fewer lists when the catalog got small), or none and a note when it
cannot be rebuilt; the manifest's ``backend_preference`` (``edgecart prefer``) is carried over. A tiny CNN exported
to ONNX only, 30 products."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
from edgecart.runtime import ImagePreprocessing, ManifestError, open_bundle
from edgecart.runtime.search import ImageSearch

from ..conftest import _tiny_model

PRE = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
N = 30


def _pictures(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three visibly different families of 28x28 pictures: bright top half, bright left half, noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    images[labels == 0, :14] += 150
    images[labels == 1, :, :14] += 150
    return images, labels.astype(np.int64)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """(bundle without index, gallery, catalog embeddings)."""
    from edgecart.data.fashion_mnist import ImageSet
    from edgecart.vision.config import ExportConfig
    from edgecart.vision.export import export_search_bundle
    from edgecart.vision.train import embed

    model = _tiny_model(seed=3)
    images, labels = _pictures(N, 7)
    gallery = ImageSet(images, labels, ("top", "left", "noise"), tuple(f"item-{i}" for i in range(N)))
    emb = embed(model, gallery.images, PRE)
    out = tmp_path_factory.mktemp("vcat") / "plain"
    path, _ = export_search_bundle(out, model, name="tiny-search", version="0.0.1", pre=PRE, gallery=gallery,
                                   catalog_emb=emb, catalog_by="student", catalog_model={"model": "tiny"},
                                   golden_images=gallery.images[:2],
                                   cfg=ExportConfig(formats=("onnx",), golden=2, latency_runs=2), quality={})
    return path, gallery, emb


def _indexed(plain, out, index):
    from edgecart.benchmarks.catalogs import with_catalog

    path, gallery, emb = plain
    return with_catalog(path, out, emb, ids=gallery.ids, categories=gallery.labels, category_names=gallery.classes,
                        fp32=True, index=index)


@pytest.fixture(scope="module")
def indexed(plain, tmp_path_factory):
    """The same products with an IVF index of 4 lists (nprobe chosen for the default target recall)."""
    return _indexed(plain, tmp_path_factory.mktemp("vcat") / "indexed", {"lists": 4})


def _cli(argv) -> int:
    from edgecart.cli import catalog_cmd, search_cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    catalog_cmd.add_parser(sub)
    search_cmd.add_parser(sub)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def _index_files_listed(path) -> dict:
    m = json.loads((path / "manifest.json").read_text())
    entry = m["catalog"]["index"]
    roles = {f["path"]: f["role"] for f in m["files"]}
    for k in ("centroids_path", "order_path", "offsets_path"):
        assert roles[entry[k]] == "catalog"
    return entry


def _agrees_with_the_exact_scan(path, queries) -> None:
    everything = ImageSearch(path, "onnxruntime", nprobe=open_bundle(path).manifest.catalog["index"]["lists"])
    exact = ImageSearch(path, "onnxruntime", index="exact")
    assert everything.approximate and not exact.approximate
    for q in queries:
        assert everything.search_embedding(q).ids == exact.search_embedding(q).ids


# 1. the IVF index ---------------------------------------------------------------------------------------------------

def test_remove_then_search_through_the_cli_works_on_an_indexed_bundle(plain, indexed, tmp_path, capsys):
    """The audit's repro: catalog remove on a bundle with an index, then search."""
    from PIL import Image

    _, gallery, emb = plain
    old = _index_files_listed(indexed)
    assert _cli(["catalog", "remove", indexed, "--ids", "item-1,item-2", "--out", tmp_path / "v2"]) == 0
    capsys.readouterr()
    entry = _index_files_listed(tmp_path / "v2")
    assert entry["items"] == N - 2 and entry["lists"] == old["lists"] == 4
    assert entry["target_recall"] == old["target_recall"] and entry["built_from"] == old["built_from"]
    assert 0 <= entry["recall_at_10"] <= 1 and 1 <= entry["nprobe"] <= entry["lists"]
    png = tmp_path / "q.png"
    Image.fromarray(gallery.images[5]).save(png)
    assert _cli(["search", png, "--bundle", tmp_path / "v2", "--k", "3", "--backend", "onnxruntime"]) == 0
    s = ImageSearch(tmp_path / "v2", "onnxruntime", catalog_precision="fp32")
    assert s.approximate and s.search(gallery.images[5], k=3).ids[0] == "item-5"
    _agrees_with_the_exact_scan(tmp_path / "v2", emb[::3])


def test_add_and_update_rebuild_the_index_over_the_new_rows(indexed, tmp_path):
    from edgecart.vision.catalog import update_catalog
    from PIL import Image

    images, labels = _pictures(6, 11)
    names = ("top", "left", "noise")
    folder = tmp_path / "new"
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        (folder / names[lab]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / names[lab] / f"new-{i}.png")
    r = update_catalog(indexed, "add", images=folder, out=tmp_path / "v2", backend="onnxruntime")
    assert r.items == N + 6 and not r.notes
    entry = _index_files_listed(tmp_path / "v2")
    assert entry["items"] == N + 6 and entry["lists"] == 4
    s = ImageSearch(tmp_path / "v2", "onnxruntime", catalog_precision="fp32")
    assert s.approximate and len(r.added) == 6
    for i, img in enumerate(images):
        assert s.search(img, k=1).ids == (f"{names[labels[i]]}/new-{i}.png",)
    _agrees_with_the_exact_scan(tmp_path / "v2", s.catalog.embeddings[::4].astype(np.float32))
    # update re-embeds rows: the index is rebuilt over them too
    (tmp_path / "upd" / names[labels[0]]).mkdir(parents=True)
    Image.fromarray(images[0][::-1].copy()).save(tmp_path / "upd" / names[labels[0]] / "new-0.png")
    r = update_catalog(tmp_path / "v2", "update", images=tmp_path / "upd", out=tmp_path / "v3",
                       backend="onnxruntime")
    assert r.updated == ("top/new-0.png",)
    assert _index_files_listed(tmp_path / "v3")["items"] == N + 6
    s = ImageSearch(tmp_path / "v3", "onnxruntime", catalog_precision="fp32")
    assert s.search(images[0][::-1].copy(), k=1).ids == r.updated


@pytest.mark.parametrize("index, left, lists", [
    ({"lists": 8}, 4, 4),  # fixed lists: no more than the rows left
    (True, 25, 10),  # default lists (about 2 sqrt(N)): follow the catalog's size
])
def test_the_number_of_lists_shrinks_with_the_catalog(plain, tmp_path, index, left, lists):
    from edgecart.runtime.index import default_lists
    from edgecart.vision.catalog import update_catalog

    src = _indexed(plain, tmp_path / "src", index)
    before = open_bundle(src).manifest.catalog["index"]["lists"]
    assert before == (8 if index is not True else default_lists(N))
    gone = [f"item-{i}" for i in range(N - left)]
    update_catalog(src, "remove", ids=gone, out=tmp_path / "v2")
    entry = _index_files_listed(tmp_path / "v2")
    assert entry["items"] == left and entry["lists"] == lists
    s = ImageSearch(tmp_path / "v2", "onnxruntime")
    assert s.approximate and len(s.search_embedding(plain[2][-1], k=10)) == min(10, left)
    _agrees_with_the_exact_scan(tmp_path / "v2", plain[2][N - left:])


def test_an_index_that_cannot_be_rebuilt_is_dropped_and_the_command_says_so(indexed, tmp_path, capsys):
    from edgecart.vision.catalog import update_catalog

    copy = tmp_path / "b"
    shutil.copytree(indexed, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["catalog"]["index"] = {"kind": "hnsw", "m": 16}  # a kind this edgecart cannot build
    for f in m["files"]:
        if f["path"].startswith("catalog/index/"):
            (copy / f["path"]).unlink()
    m["files"] = [f for f in m["files"] if not f["path"].startswith("catalog/index/")]
    (copy / "manifest.json").write_text(json.dumps(m))
    open_bundle(copy)
    assert _cli(["catalog", "remove", copy, "--ids", "item-3", "--out", tmp_path / "v2"]) == 0
    out = capsys.readouterr()
    assert "index" in out.err and "hnsw" in out.err and "dropped" in out.err
    new = open_bundle(tmp_path / "v2").manifest
    assert "index" not in new.catalog and not any(f.path.startswith("catalog/index/") for f in new.files)
    assert not ImageSearch(tmp_path / "v2", "onnxruntime").approximate
    notes = update_catalog(copy, "remove", ids=["item-4"], out=tmp_path / "v3", progress=lambda s: None).notes
    assert len(notes) == 1 and "hnsw" in notes[0]


def test_verify_refuses_an_index_file_the_manifest_does_not_list(indexed, tmp_path):
    from edgecart.runtime import verify

    copy = tmp_path / "b"
    shutil.copytree(indexed, copy)
    m = json.loads((copy / "manifest.json").read_text())
    gone = m["catalog"]["index"]["centroids_path"]
    m["files"] = [f for f in m["files"] if f["path"] != gone]
    (copy / gone).unlink()
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=r"catalog\.index\.centroids_path: refers to 'catalog/index/centroids"):
        verify(copy)


# 2. backend_preference ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["remove", "add"])
def test_catalog_updates_keep_the_backend_preference(indexed, tmp_path, action):
    from edgecart.runtime.preference import platform_key, preferred_order, record_preference
    from edgecart.vision.catalog import update_catalog
    from PIL import Image

    p2, m2 = record_preference(indexed, ["onnxruntime", "litert"], out=tmp_path / "p2",
                               measured={"p50_ms": {"onnxruntime": 0.1, "litert": 0.2}, "how": "test"})
    assert m2.backend_preference[platform_key()] == ["onnxruntime", "litert"]
    if action == "remove":
        update_catalog(p2, "remove", ids=["item-0"], out=tmp_path / "p3")
    else:
        (tmp_path / "new" / "noise").mkdir(parents=True)
        Image.fromarray(_pictures(3, 5)[0][2]).save(tmp_path / "new" / "noise" / "x.png")
        update_catalog(p2, "add", images=tmp_path / "new", out=tmp_path / "p3", backend="onnxruntime")
    m3 = open_bundle(tmp_path / "p3").manifest
    assert m3.backend_preference == m2.backend_preference
    assert preferred_order(m3)[:2] == ("onnxruntime", "litert")
