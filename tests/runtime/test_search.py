"""On-device search: preprocessing as the manifest says, exact top-k over int8/fp32 catalogs, typed input errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from edgecart.runtime import BundleError, ImagePreprocessing, InputSpecError
from edgecart.runtime.preprocess import ImageInputError, preprocess, resize_batch, resize_matrix, to_model_uint8
from edgecart.runtime.search import ImageSearch, quantize_rows, read_catalog, top_k

from ..conftest import BACKEND_OF, FORMATS, _tiny_model

PRE = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))


def _gallery(n: int = 30):
    from edgecart.data.fashion_mnist import ImageSet

    rng = np.random.default_rng(7)
    labels = np.arange(n) % 3
    # three visibly different families of pictures: bright top half, bright left half, noise
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    images[labels == 0, :14] += 150
    images[labels == 1, :, :14] += 150
    return ImageSet(images, labels.astype(np.int64), ("top", "left", "noise"), tuple(f"item-{i}" for i in range(n)))


@pytest.fixture(scope="module")
def search_bundle(tmp_path_factory):
    """A search bundle of the tiny CNN in every format, its catalog embedded by the same model."""
    from edgecart.vision.config import ExportConfig
    from edgecart.vision.export import export_search_bundle
    from edgecart.vision.train import embed

    tiny_model = _tiny_model(seed=3)
    gallery = _gallery()
    emb = embed(tiny_model, gallery.images, PRE)
    out = tmp_path_factory.mktemp("search") / "tiny-search"
    path, _ = export_search_bundle(out, tiny_model, name="tiny-search", version="0.0.1", pre=PRE, gallery=gallery,
                                   catalog_emb=emb, catalog_by="student", catalog_model={"model": "tiny"},
                                   golden_images=gallery.images[:2], cfg=ExportConfig(golden=2), quality={})
    return path, gallery, emb


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_catalog_picture_finds_itself_first(search_bundle, fmt):
    path, gallery, _ = search_bundle
    s = ImageSearch(path, BACKEND_OF[fmt], catalog_precision="fp32")
    assert s.session.artifact.format == fmt
    for i in (0, 4, 17):
        r = s.search(gallery.images[i], k=5)
        assert r.ids[0] == f"item-{i}" and abs(float(r.scores[0]) - 1.0) < 1e-4
        assert len(r) == 5 and list(r.scores) == sorted(r.scores, reverse=True)
        assert r.categories[0] == gallery.classes[gallery.labels[i]]
        assert r.metadata[0] == {"id": f"item-{i}", "category": r.categories[0],
                                 "category_index": int(gallery.labels[i]), "score": float(r.scores[0])}


def test_path_pil_and_array_inputs_agree(search_bundle, tmp_path):
    from PIL import Image

    path, gallery, _ = search_bundle
    s = ImageSearch(path, "onnxruntime")
    img = gallery.images[5]
    png = tmp_path / "q.png"
    Image.fromarray(img).save(png)
    rgb = np.repeat(img[..., None], 3, axis=-1)
    results = [s.search(x, k=10) for x in (img, img[..., None], str(png), png, Image.open(png), rgb)]
    for r in results[1:]:
        assert r.ids == results[0].ids
        np.testing.assert_allclose(r.scores, results[0].scores, atol=1e-6)
    # a bigger colour photo is resized and converted the same way whatever form it comes in
    big = np.random.default_rng(0).integers(0, 256, (70, 50, 3), dtype=np.uint8)
    jpg = tmp_path / "big.png"
    Image.fromarray(big).save(jpg)
    assert s.search(big).ids == s.search(jpg).ids == s.search(Image.fromarray(big)).ids


def test_int8_catalog_ranks_like_fp32(search_bundle):
    path, _, emb = search_bundle
    s8 = ImageSearch(path, "onnxruntime", catalog_precision="int8")
    s32 = ImageSearch(path, "onnxruntime", catalog_precision="fp32")
    assert s8.catalog.embeddings.dtype == np.int8 and s8.catalog.scales.shape == (len(emb),)
    q = emb[:10]
    np.testing.assert_allclose(s8.catalog.scores(q), s32.catalog.scores(q), atol=0.02)  # 1/127 per coordinate
    # int8 may reorder only near-ties: what it picks scores (in fp32) within the quantisation error of the best 10
    exact = s32.catalog.scores(q)
    tenth = np.sort(exact, axis=1)[:, -10]
    picked = np.take_along_axis(exact, s8.catalog.top_k(q, 10)[0], axis=1)
    assert (picked.min(axis=1) >= tenth - 0.04).all()


def test_top_k_is_exact_with_ties_to_the_lower_index():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((50, 200)).astype(np.float32)
    scores[:, 10:20] = 5.0  # a block of ties at the top
    idx, vals = top_k(scores, 12)
    want = np.stack([np.lexsort((np.arange(200), -row))[:12] for row in scores])
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(vals, np.take_along_axis(scores, want, 1))
    tie_cut = np.zeros((1, 30), np.float32)  # 30 equal scores, k=5: the first five indices
    assert top_k(tie_cut, 5)[0].tolist() == [[0, 1, 2, 3, 4]]
    assert top_k(scores[:1, :3], 10)[0].shape == (1, 3)  # k larger than the catalog


def test_quantize_rows_round_trip():
    e = np.random.default_rng(1).standard_normal((20, 16)).astype(np.float32)
    q, s = quantize_rows(e)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    np.testing.assert_allclose(q * s[:, None], e, atol=float(s.max()) / 2 + 1e-7)


def test_bad_inputs_raise_typed_errors(search_bundle, tmp_path):
    path, gallery, _ = search_bundle
    s = ImageSearch(path, "onnxruntime")
    cases = [
        (gallery.images[0].astype(np.float32), "uint8"),
        (np.zeros((28, 28, 4), np.uint8), "RGBA"),
        (np.zeros((2, 28, 28, 3), np.uint8), "HxW"),
        (np.zeros((0, 5), np.uint8), "no pixels"),
        (tmp_path / "missing.png", "no such image"),
        ([1, 2, 3], "file path, a PIL image or a uint8 array"),
    ]
    (tmp_path / "fake.jpg").write_bytes(b"no jpeg here")
    cases.append((tmp_path / "fake.jpg", "not a readable image"))
    for bad, msg in cases:
        with pytest.raises(ImageInputError, match=msg):
            s.search(bad)
    for k in (0, -3):
        with pytest.raises(InputSpecError, match="k must be"):
            s.search(gallery.images[0], k=k)
    with pytest.raises(InputSpecError, match="integer"):
        s.search(gallery.images[0], k=2.5)
    with pytest.raises(BundleError, match="no 'fp16' embeddings"):
        ImageSearch(path, "onnxruntime", catalog_precision="fp16")


def test_bundle_without_catalog_or_of_other_task_is_refused(tiny_bundle):
    from edgecart.runtime import open_bundle

    with pytest.raises(BundleError, match="not image_search"):
        ImageSearch(tiny_bundle)
    with pytest.raises(BundleError, match="no image catalog"):
        read_catalog(open_bundle(tiny_bundle))


def test_a_search_bundle_given_to_the_recommender_names_imagesearch(search_bundle):
    from edgecart.runtime import Recommender

    with pytest.raises(BundleError, match=r"is a 'image_search' bundle, not recommendations: Recommender reads only "
                                          r"'recommendations' bundles; open it with edgecart.runtime.ImageSearch$"):
        Recommender(search_bundle[0], "onnxruntime")


def test_manifest_describes_the_catalog(search_bundle):
    path, gallery, _ = search_bundle
    m = json.loads((path / "manifest.json").read_text())
    c = m["catalog"]
    assert m["task"] == "image_search" and m["preprocessing"]["size"] == [28, 28]
    assert c["items"] == len(gallery) and c["dim"] == 16 and c["metric"] == "cosine" and c["embedded_by"] == "student"
    assert c["embeddings"]["int8"]["scale"] == "per-vector" and c["default"] == "int8"
    roles = {f["path"]: f["role"] for f in m["files"]}
    assert roles[c["items_file"]] == roles[c["embeddings"]["int8"]["path"]] == "catalog"
    assert {g for g in roles if roles[g] == "golden"}


def test_resize_matches_pil_bilinear():
    """The runtime's resize is PIL's BILINEAR (triangle filter, antialiased when shrinking) on float pictures."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for shape, size in (((28, 28), (64, 64)), ((97, 61), (28, 28)), ((30, 40), (30, 17))):
        a = rng.uniform(0, 255, shape).astype(np.float32)
        ours = resize_batch(a[None], size)[0]
        pil = np.asarray(Image.fromarray(a, mode="F").resize(size[::-1], Image.Resampling.BILINEAR))
        np.testing.assert_allclose(ours, pil, atol=1e-3)
    m = resize_matrix(10, 4)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
    same = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    assert to_model_uint8(same, PRE) is same  # nothing to do at the model's size


def test_preprocess_normalises_and_lays_out():
    img = np.full((28, 28), 255, np.uint8)
    x = preprocess(img, PRE)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32 and np.allclose(x, 1.0)
    assert x.strides == (28 * 28 * 4, 28 * 28 * 4, 28 * 4, 4)  # plain strides, also on size-1 axes
    rgb = ImagePreprocessing((8, 8), "rgb", layout="NHWC")
    y = preprocess(np.zeros((8, 8, 3), np.uint8), rgb)
    assert y.shape == (1, 8, 8, 3) and np.allclose(y, -1.0)
    gray = preprocess(np.dstack([np.full((28, 28), v, np.uint8) for v in (200, 100, 50)]), PRE)
    assert np.allclose(gray, round(0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 127.5 - 1)  # ITU-R 601-2 luma


def test_search_module_imports_no_torch():
    probe = ("import sys; import edgecart.runtime.search, edgecart.runtime.preprocess; "
             "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PIL') or m.startswith('edgecart.vision')];"
             " print(bad)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # PIL too is imported only when a file or PIL image comes in


# --- scoring paths, item metadata, the approximate index ------------------------------------------------------------

def _catalog(emb: np.ndarray, scoring: str = "auto", **kw):
    from edgecart.runtime.search import Catalog

    q, s = quantize_rows(emb)
    n = len(emb)
    return Catalog(tuple(map(str, range(n))), np.zeros(n, np.int64), ("a",), q, s, "cosine", "student", "int8",
                   scoring=scoring, **kw), q, s


@pytest.mark.parametrize("scoring", ["float32", "int8", "auto"])
def test_int8_scoring_equals_the_float_reference(scoring):
    rng = np.random.default_rng(4)
    emb = rng.standard_normal((700, 24)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cat, q8, s = _catalog(emb, scoring)
    assert cat.scoring_path == ("int8 rows" if scoring == "int8" else "int8->float32 copy")
    queries = rng.standard_normal((5, 24)).astype(np.float32)
    ref = (queries.astype(np.float64) @ q8.astype(np.float64).T) * s.astype(np.float64)  # what int8 rows mean
    np.testing.assert_allclose(cat.scores(queries), ref, rtol=1e-5, atol=1e-5)  # batch (BLAS, one thread)
    np.testing.assert_allclose(cat.scores(queries[0]), ref[:1], rtol=1e-5, atol=1e-5)  # one query, no BLAS
    np.testing.assert_allclose(cat.scores(queries), queries @ emb.T, atol=0.02 * np.abs(queries).sum(1).max() / 10)
    idx, vals = cat.search_one(queries[2], 7)
    np.testing.assert_array_equal(idx, np.lexsort((np.arange(700), -ref[2]))[:7])
    rows = np.array([9, 3, 600])
    np.testing.assert_allclose(cat.score_one(queries[1], rows), ref[1, rows], rtol=1e-5, atol=1e-5)


def test_big_int8_catalogs_are_not_copied_to_float(monkeypatch):
    import edgecart.runtime.search as search

    monkeypatch.setattr(search, "FLOAT_COPY_LIMIT_BYTES", 1000)
    emb = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    big, q8, _ = _catalog(emb)
    assert big.scoring_path == "int8 rows" and big.scoring_bytes == q8.nbytes
    small, _, _ = _catalog(emb[:20])
    assert small.scoring_path == "int8->float32 copy" and small.scoring_bytes == 20 * 8 * 4
    with pytest.raises(InputSpecError, match="scoring"):
        _catalog(emb, "fp16")


def _rebundle(src, out, emb, **kw):
    from edgecart.benchmarks.catalogs import with_catalog

    return with_catalog(src, out, emb, **kw)


def test_item_metadata_round_trips_into_hits(search_bundle, tmp_path, capsys):
    from edgecart.benchmarks.catalogs import random_catalog

    path, gallery, _ = search_bundle
    emb = random_catalog(len(gallery), 16, seed=2)  # well apart: each row finds itself first
    meta = [{"name": f"product {i}", "price": 1.5 * i, "tags": ["x"] if i % 2 else []} for i in range(len(emb))]
    meta[3] = None  # an item without metadata
    meta[4]["score"] = "not the score"  # reserved keys are the search's own
    out = _rebundle(path, tmp_path / "meta", emb, ids=gallery.ids, categories=gallery.labels,
                    category_names=gallery.classes, metadata=meta)
    s = ImageSearch(out, "onnxruntime")
    for i in (0, 3, 4, 7):
        hit = s.search_embedding(emb[i], k=3).metadata[0]
        assert hit["id"] == gallery.ids[i] and hit["category"] == gallery.classes[gallery.labels[i]]
        assert isinstance(hit["score"], float) and abs(hit["score"] - 1.0) < 0.02
        extra = {k: v for k, v in hit.items() if k not in ("id", "category", "category_index", "score")}
        assert extra == ({} if meta[i] is None else {k: v for k, v in meta[i].items() if k != "score"})
    # the CLI shows each hit's metadata, and can be told to scan exactly
    import argparse

    from edgecart.cli import search_cmd
    from PIL import Image

    png = tmp_path / "q.png"
    Image.fromarray(gallery.images[0]).save(png)
    parser = argparse.ArgumentParser()
    search_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["search", str(png), "--bundle", str(out), "--k", "3", "--backend", "onnxruntime",
                              "--index", "exact"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "exact search" in printed and "name=product" in printed and "price=" in printed
    # a metadata list that does not match the items is a typed manifest error
    bad = _rebundle(path, tmp_path / "bad-meta", emb, metadata=meta[:-1])
    from edgecart.runtime import ManifestError

    with pytest.raises(ManifestError, match="metadata"):
        ImageSearch(bad, "onnxruntime")


def test_ivf_index_recall_on_a_clustered_toy_catalog(search_bundle, tmp_path):
    """Bound: recall@10 >= 0.9 against the exact scan on 3,000 clustered rows with the default lists/nprobe.

    (Clustered like real embeddings; measured here ~0.97-1.0. Uniform random rows have no structure to exploit.)"""
    from edgecart.benchmarks.catalogs import random_catalog
    from edgecart.runtime import open_bundle
    from edgecart.runtime.index import measure_recall

    path, _, _ = search_bundle
    emb = random_catalog(3000, 16, clusters=60, seed=1)
    out = _rebundle(path, tmp_path / "ivf", emb, index={"seed": 0})
    m = json.loads((out / "manifest.json").read_text())
    entry = m["catalog"]["index"]
    roles = {f["path"]: f["role"] for f in m["files"]}
    assert all(roles[entry[k]] == "catalog" for k in ("centroids_path", "order_path", "offsets_path"))
    assert entry["kind"] == "ivf" and entry["lists"] == 110 and entry["recall_at_10"] >= 0.9
    approx = ImageSearch(out, "onnxruntime")
    exact = ImageSearch(out, "onnxruntime", index="exact")
    assert approx.approximate and not exact.approximate
    queries = random_catalog(200, 16, clusters=60, seed=1)  # the same centres: rows like the catalog's
    hits = [len(set(approx.search_embedding(q).ids) & set(exact.search_embedding(q).ids)) / 10 for q in queries]
    assert np.mean(hits) >= 0.9
    # probing every list is exact, ties included
    everything = ImageSearch(out, "onnxruntime", nprobe=entry["lists"])
    for q in queries[:20]:
        assert everything.search_embedding(q).ids == exact.search_embedding(q).ids
    cat = read_catalog(open_bundle(out))
    rows = cat.embeddings.astype(np.float32) * cat.scales[:, None]
    assert measure_recall(cat.index, rows, queries, 10) >= 0.9
    assert measure_recall(cat.index, rows, queries, 10, nprobe=1) < measure_recall(cat.index, rows, queries, 10)


def test_index_options_are_checked(search_bundle, tmp_path):
    path, _, emb = search_bundle
    with pytest.raises(BundleError, match="no approximate index"):
        ImageSearch(path, "onnxruntime", index="ivf")
    for bad in ({"index": "hnsw"}, {"nprobe": 0}):
        with pytest.raises(InputSpecError):
            ImageSearch(path, "onnxruntime", **bad)


def test_without_threadpoolctl_one_query_avoids_blas(monkeypatch):
    import edgecart.runtime.search as search

    emb = np.random.default_rng(5).standard_normal((300, 12)).astype(np.float32)
    cat, _, _ = _catalog(emb)
    q = emb[7]
    with_blas = cat.score_one(q)
    monkeypatch.setattr(search, "_blas_libs", [])  # as if threadpoolctl were not installed
    with search.one_blas_thread() as limited:
        assert limited is False
    np.testing.assert_allclose(cat.score_one(q), with_blas, rtol=1e-5, atol=1e-6)
    assert cat.search_one(q, 1)[0].tolist() == [7]


def test_catalog_items_swapped_after_opening_are_refused(search_bundle, tmp_path):
    # The bundle is verified when opened; every file read later is checked again as it is read, the catalog's
    # ids and metadata as well as its embeddings, so a swap in between is refused rather than served.
    import shutil

    from edgecart.runtime import IntegrityError, open_bundle

    path, _, _ = search_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    b = open_bundle(copy)
    items = copy / b.manifest.catalog["items_file"]
    doc = json.loads(items.read_text(encoding="utf-8"))
    doc["ids"][0] = "ATTACKER"
    items.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(IntegrityError):
        ImageSearch(b, "onnxruntime")


def test_a_key_is_checked_by_imagesearch_and_search(search_bundle, tmp_path, capsys):
    from edgecart.cli import main
    from edgecart.runtime import SignatureError

    path, gallery, _ = search_bundle
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    pub = tmp_path / "k" / "edgecart-signing.pub"
    with pytest.raises(SignatureError, match="not signed"):
        ImageSearch(path, "onnxruntime", public_key=pub)
    from PIL import Image

    Image.fromarray(gallery.images[0]).save(tmp_path / "q.png")
    capsys.readouterr()
    assert main(["search", str(tmp_path / "q.png"), "--bundle", str(path), "--public-key", str(pub)]) == 2
    assert "not signed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # --k below 1 is a usage error (exit 2), not a failed check (1)
        main(["search", str(tmp_path / "q.png"), "--bundle", str(path), "--k", "0"])
    assert usage.value.code == 2


def test_search_says_when_the_catalog_holds_fewer_than_k(search_bundle, tmp_path, capsys):
    from edgecart.cli import main
    from PIL import Image

    path, gallery, _ = search_bundle
    Image.fromarray(gallery.images[0]).save(tmp_path / "q.png")
    n = len(ImageSearch(path, "onnxruntime").catalog)
    assert main(["search", str(tmp_path / "q.png"), "--bundle", str(path), "--k", str(n + 5), "--json",
                 "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)["results"]) == n and f"--k {n + 5}" in out.err and f"{n} items" in out.err
