"""A catalog's IVF index files are files of the bundle: a manifest whose ``catalog.index`` names a file its ``files``
list leaves out is refused when it is read (``edgecart verify``), not at search time."""

from __future__ import annotations

import hashlib

import pytest
from edgecart.runtime import ImagePreprocessing, Manifest, ManifestError, TensorSpec, UnsafePathError
from edgecart.runtime.index import INDEX_DIR
from edgecart.runtime.manifest import FileEntry

PRE = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
INDEX_FILES = {"centroids_path": f"{INDEX_DIR}/centroids.f32.npy", "order_path": f"{INDEX_DIR}/order.i32.npy",
               "offsets_path": f"{INDEX_DIR}/offsets.i64.npy"}


def _entry(path: str) -> FileEntry:
    return FileEntry(path, hashlib.sha256(path.encode()).hexdigest(), 1, "catalog")


def _manifest(listed: list[str], index: dict | None) -> Manifest:
    catalog = {"kind": "image_embeddings", "items_file": "catalog/items.json", "items": 3, "dim": 16,
               "embeddings": {"int8": {"path": "catalog/embeddings.int8.npy", "dtype": "int8", "scale": "per-vector",
                                       "scale_path": "catalog/scales.f32.npy"}}}
    if index is not None:
        catalog["index"] = index
    return Manifest(name="t", version="1.0.0", task="image_search", created_at="2024-01-01T00:00:00+00:00",
                    toolchain={}, inputs=(TensorSpec("image", "float32", (1, 1, 28, 28), "NCHW"),),
                    outputs=(TensorSpec("embedding", "float32", (1, 16)),), artifacts=(),
                    files=tuple(_entry(p) for p in sorted(listed)), preprocessing=PRE, catalog=catalog)


BASE = ["catalog/items.json", "catalog/embeddings.int8.npy", "catalog/scales.f32.npy"]


def test_a_listed_index_is_accepted():
    m = _manifest(BASE + list(INDEX_FILES.values()), {"kind": "ivf", "lists": 2, "nprobe": 1, **INDEX_FILES})
    assert m.catalog["index"]["kind"] == "ivf"
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize("key", sorted(INDEX_FILES))
def test_an_index_file_the_files_list_leaves_out_is_refused(key):
    listed = BASE + [p for k, p in INDEX_FILES.items() if k != key]
    with pytest.raises(ManifestError, match=rf"catalog\.index\.{key}: refers to '{INDEX_FILES[key]}'"):
        _manifest(listed, {"kind": "ivf", "lists": 2, "nprobe": 1, **INDEX_FILES})


def test_an_index_path_must_be_a_safe_path_string():
    with pytest.raises(ManifestError, match=r"catalog\.index\.order_path: expected a file path string"):
        _manifest(BASE + list(INDEX_FILES.values()), {"kind": "ivf", **INDEX_FILES, "order_path": 7})
    with pytest.raises(UnsafePathError, match=r"\.\./x\.npy"):  # as any other path of the catalog
        _manifest(BASE + list(INDEX_FILES.values()), {"kind": "ivf", **INDEX_FILES, "order_path": "../x.npy"})


def test_a_catalog_index_that_is_not_an_object_is_not_a_file_reference():
    """A recommendations catalog's ``index`` is a sentence about item numbering, not an approximate index."""
    m = _manifest(BASE, None)
    m = m.replace(task="generic", catalog={"kind": "item_table", "index": "model index i is the shop item items[i-1]"})
    assert m.catalog["index"].startswith("model index")
