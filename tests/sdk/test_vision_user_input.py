"""User-input checks of the image-search build and catalog updates (audit fixes): encodings, output folders,
pictures that are not read, category counts, id lists, oversized pictures, config types. No training."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from edgecart.data.image_folder import ImageFolderError, load_image_catalog, load_image_folder
from edgecart.runtime import ImagePreprocessing

PRE = ImagePreprocessing((8, 8), "rgb", mean=(0.5,) * 3, std=(0.5,) * 3)


def _png(path, shade=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((9, 9, 3), shade, np.uint8)).save(path)
    return path


def _folder(root, cats=("red", "blue"), n=3):
    for c in cats:
        for i in range(n):
            _png(root / c / f"{i}.png", 40 * i)
    return root


# 1. encodings -------------------------------------------------------------------------------------------------

def test_a_latin1_catalog_csv_is_a_typed_error_with_the_iconv_fix(tmp_path):
    from edgecart.vision.catalog import ids_from

    _png(tmp_path / "a.png")
    p = tmp_path / "cat.csv"
    p.write_bytes("image,id,category,name\na.png,1,caf\xe9,cr\xe8me\n".encode("latin1"))
    with pytest.raises(ImageFolderError, match=r"not UTF-8.*iconv -f latin1 -t utf-8"):
        load_image_catalog(p, PRE)
    with pytest.raises(ImageFolderError, match=r"cat\.csv.*iconv -f latin1 -t utf-8"):
        ids_from(catalog=p)


# 2, 3. output folders -----------------------------------------------------------------------------------------

def test_bad_out_and_cache_are_refused_before_the_pictures_are_read(tmp_path):
    from edgecart.outputs import BuildOutputError
    from edgecart.vision.build import check_build_paths

    images = _folder(tmp_path / "imgs")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(BuildOutputError, match="a file, not a folder"):
        check_build_paths(f, None, images=images)
    with pytest.raises(BuildOutputError, match="a file, not a folder"):
        check_build_paths(f / "sub", None, images=images)
    with pytest.raises(BuildOutputError, match="--cache"):
        check_build_paths(tmp_path / "o", f, images=images)
    assert not (tmp_path / "o").exists()  # nothing left behind


def test_out_or_cache_inside_the_images_folder_is_refused(tmp_path):
    from edgecart.outputs import BuildOutputError
    from edgecart.vision.build import check_build_paths

    images = _folder(tmp_path / "imgs")
    with pytest.raises(BuildOutputError, match="inside the --images folder"):
        check_build_paths(images / "result", None, images=images)
    with pytest.raises(BuildOutputError, match="inside the --images folder"):
        check_build_paths(tmp_path / "o", images / "red" / "cache", images=images)
    assert not (images / "result").exists() and not (tmp_path / "o").exists()
    made = check_build_paths(tmp_path / "o", tmp_path / "o" / "cache", images=images)
    assert (tmp_path / "o" / "cache").is_dir() and made


def test_build_image_search_checks_the_out_folder_first(tmp_path):
    from edgecart.outputs import BuildOutputError
    from edgecart.vision.build import build_image_search

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(BuildOutputError):  # not ImageFolderError: the output is checked before the input is read
        build_image_search(f, images=tmp_path / "missing")


def test_bundle_writer_in_a_folder_it_cannot_write_is_a_typed_error(tmp_path, monkeypatch):
    import os

    from edgecart.exporters import bundle as bw
    from edgecart.runtime.errors import BundleError

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bw.os, "mkdir", deny)
    with pytest.raises(BundleError, match="not writable"):
        bw.BundleWriter(tmp_path / "b", name="x", version="1", task="image_search", inputs=(), outputs=())
    monkeypatch.setattr(bw.os, "mkdir", os.mkdir)


# 4, 10. pictures that are not read are listed -------------------------------------------------------------------

def test_pictures_that_are_not_read_are_listed_with_a_reason(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "red" / "x.gif").write_bytes(b"GIF89a")
    (root / "red" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    _folder(tmp_path / "elsewhere", cats=("more",), n=1)
    (root / "blue" / "linked").symlink_to(tmp_path / "elsewhere" / "more")
    _png(root / "top.png")
    (root / ".hidden.png").write_bytes(b"x")
    ds = load_image_folder(root, PRE)
    assert len(ds) == 6
    why = dict(ds.skipped)
    assert set(why) == {"red/x.gif", "red/gone.png", "blue/linked", "top.png"}
    assert "JPEG, PNG, WebP or BMP" in why["red/x.gif"] and "broken link" in why["red/gone.png"]
    assert "linked folder" in why["blue/linked"] and "category sub-folder" in why["top.png"]


def test_webp_and_bmp_pictures_are_read_like_png(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "imgs", n=2)
    for i, suffix in enumerate((".webp", ".bmp", ".WEBP")):
        lossless = {"lossless": True} if "webp" in suffix.lower() else {}
        Image.fromarray(np.full((9, 9, 3), 200, np.uint8)).save(root / "red" / f"more{i}{suffix}", **lossless)
    ds = load_image_folder(root, PRE)
    assert len(ds) == 7 and not ds.skipped
    assert {"red/more0.webp", "red/more1.bmp", "red/more2.WEBP"} <= set(ds.ids)


def test_nothing_readable_gives_the_first_reasons(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.png").write_bytes(b"not a png")
    with pytest.raises(ImageFolderError, match="none of the 2 pictures could be read.*not a readable image"):
        load_image_folder(tmp_path, PRE)


# 5. a CSV category without a readable picture --------------------------------------------------------------------

def test_a_csv_category_whose_pictures_are_all_unreadable_is_refused(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    p = tmp_path / "c.csv"
    p.write_text("image,id,category\na.png,1,red\nb.png,2,blue\nbad.png,3,ghost\n")
    with pytest.raises(ImageFolderError, match="no readable picture in ghost"):
        load_image_catalog(p, PRE)


# 6. one category ------------------------------------------------------------------------------------------------

def test_a_single_category_build_is_refused(tmp_path):
    from edgecart.vision.build import user_data
    from edgecart.vision.config import tiny_config

    root = _folder(tmp_path / "imgs", cats=("one",), n=4)
    with pytest.raises(ImageFolderError, match="at least 2 categories"):
        user_data(tiny_config(), images=root)


# 7. remove id lists -----------------------------------------------------------------------------------------------

def test_remove_refuses_an_empty_or_repeated_id_list():
    from edgecart.vision.catalog import CatalogUpdateError, removal_ids

    with pytest.raises(CatalogUpdateError, match="no ids"):
        removal_ids(ids=[])
    with pytest.raises(CatalogUpdateError, match="more than once.*red/0.png"):
        removal_ids(ids=["red/0.png", "red/0.png"])
    assert removal_ids(ids=["a", "b"]) == ["a", "b"]


def test_the_cli_refuses_an_id_list_of_commas(tmp_path, capsys):
    from edgecart.cli.catalog_cmd import parse_ids
    from edgecart.vision.catalog import CatalogUpdateError

    with pytest.raises(CatalogUpdateError, match="no ids"):
        parse_ids(", ,")
    assert parse_ids(None) is None and parse_ids("a, b") == ["a", "b"]


# 8. oversized pictures ----------------------------------------------------------------------------------------------

def _png_header(w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_an_oversized_picture_is_refused_from_its_header_without_a_warning():
    from edgecart.runtime.preprocess import ImageInputError, decode_bytes

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ImageInputError, match="larger than .* pixels.*downscale"):
            decode_bytes(_png_header(10_000, 9_000), "big.png")
    assert not [w for w in seen if "DecompressionBomb" in w.category.__name__]


# 9. config value types -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, match", [
    ({"export": {"formats": "onnx"}}, r"export\.formats.*list of strings.*'onnx'"),
    ({"teacher": {"epochs": "two"}}, r"teacher\.epochs.*integer.*'two'"),
    ({"teacher": {"lr": "fast"}}, r"teacher\.lr.*number"),
    ({"student": {"baseline": 1}}, r"student\.baseline.*true or false"),
    ({"data": {"limit_per_class": 2.5}}, r"data\.limit_per_class.*integer"),
    ({"threads": "2"}, r"threads.*integer"),
    ({"name": 3}, r"name.*string"),
])
def test_config_values_of_the_wrong_type_name_the_field_and_type(doc, match):
    from edgecart.vision.config import BuildConfig, BuildConfigError

    with pytest.raises(BuildConfigError, match=match):
        BuildConfig.from_dict(doc)


def test_config_types_accept_what_toml_gives():
    from edgecart.vision.config import BuildConfig

    cfg = BuildConfig.from_dict({"teacher": {"lr": 1, "epochs": 2}, "export": {"formats": ["onnx"]},
                                 "data": {"limit_per_class": 3}, "threads": 1})
    assert cfg.teacher.lr == 1 and cfg.export.formats == ("onnx",)
