"""Every file of a real three-format bundle truncated, flipped, deleted; extra files, links, fifos, devices and hard
links added or swapped in. Each case must be refused with a typed error (never a wrong success, never an untyped one),
and nothing outside the bundle may change."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from edgecart.runtime import (
    BundleError,
    EdgecartError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    UnlistedFileError,
    UnsafePathError,
    open_bundle,
)

#: The tiny bundle's files (tests/conftest.py); test_file_list_is_complete keeps this in step with the bundle.
FILES = (
    "golden/input.image.npy", "golden/output.embedding.npy", "manifest.json",
    "models/tiny.fp32.onnx", "models/tiny.fp32.pte", "models/tiny.fp32.tflite",
    "models/tiny.int8.onnx", "models/tiny.int8.pte", "models/tiny.int8.tflite",
)
CUTS = {"0": lambda n: 0, "1": lambda n: 1, "half": lambda n: n // 2, "n-1": lambda n: n - 1}
FLIPS = {"first": lambda n: 0, "middle": lambda n: n // 2, "last": lambda n: n - 1}


def test_file_list_is_complete(tiny_bundle):
    found = sorted(p.relative_to(tiny_bundle).as_posix() for p in tiny_bundle.rglob("*") if p.is_file())
    assert tuple(found) == FILES


def _expect_refused(bundle: Path, types: tuple[type, ...] = (BundleError,)) -> BaseException:
    with pytest.raises(EdgecartError) as exc:
        open_bundle(bundle)
    assert isinstance(exc.value, types), f"{type(exc.value).__name__}: {exc.value}"
    assert str(exc.value)
    return exc.value


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("rel", FILES)
def test_truncated_file_is_refused(bundle_copy, rel, cut):
    f = bundle_copy / rel
    data = f.read_bytes()
    f.write_bytes(data[: CUTS[cut](len(data))])
    if rel == "manifest.json" and cut == "n-1":
        # only the final newline goes: the same manifest, rightly accepted (and signatures cover the parsed form)
        assert data.endswith(b"\n")
        assert open_bundle(bundle_copy).manifest.name == "tiny"
        return
    _expect_refused(bundle_copy, (ManifestError,) if rel == "manifest.json" else (IntegrityError,))


@pytest.mark.parametrize("where", FLIPS)
@pytest.mark.parametrize("rel", FILES)
def test_flipped_byte_is_refused(bundle_copy, rel, where):
    f = bundle_copy / rel
    data = bytearray(f.read_bytes())
    data[FLIPS[where](len(data))] ^= 0xFF
    f.write_bytes(bytes(data))
    err = _expect_refused(bundle_copy, (ManifestError,) if rel == "manifest.json" else (IntegrityError,))
    if rel != "manifest.json":
        assert "corrupt" in str(err) and "not deliberate edits" in str(err)


@pytest.mark.parametrize("rel", FILES)
def test_deleted_file_is_refused(bundle_copy, rel):
    (bundle_copy / rel).unlink()
    err = _expect_refused(bundle_copy, (ManifestError,) if rel == "manifest.json" else (MissingFileError,))
    assert (rel in str(err)) or rel == "manifest.json"


EXTRAS = {
    "root-file": "extra.bin",
    "models-file": "models/extra.onnx",
    "hidden-file": ".hidden",
    "backup-copy": "golden/input.image.npy.bak",
    "new-folder-file": "new/deep/file.txt",
}


@pytest.mark.parametrize("case", EXTRAS)
def test_extra_file_is_refused_unless_lenient(bundle_copy, case):
    p = bundle_copy / EXTRAS[case]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    err = _expect_refused(bundle_copy, (UnlistedFileError,))
    assert EXTRAS[case] in str(err)
    assert open_bundle(bundle_copy, strict=False).manifest.name == "tiny"


def test_empty_folder_is_harmless(bundle_copy):
    (bundle_copy / "empty").mkdir()
    assert open_bundle(bundle_copy).manifest.name == "tiny"


def _sentinel(tmp_path: Path) -> tuple[Path, bytes]:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    s = outside / "sentinel.bin"
    s.write_bytes(b"do not touch")
    return s, s.read_bytes()


def _model(bundle: Path) -> Path:
    return bundle / "models/tiny.fp32.onnx"


def _swap_link_to_outside_copy(bundle, tmp_path):
    f = _model(bundle)
    copy = tmp_path / "outside" / "copy.onnx"
    copy.write_bytes(f.read_bytes())
    f.unlink()
    os.symlink(copy, f)


def _swap_link_to_inside(bundle, tmp_path):
    f = _model(bundle)
    (bundle / "golden/same.bytes").write_bytes(f.read_bytes())
    f.unlink()
    os.symlink("../golden/same.bytes", f)


def _swap_folder_link(bundle, tmp_path):
    moved = tmp_path / "outside" / "models"
    shutil.move(str(bundle / "models"), moved)
    os.symlink(moved, bundle / "models")


def _swap_hardlink(bundle, tmp_path):
    os.link(_model(bundle), tmp_path / "outside" / "hardlink.onnx")


def _swap_fifo(bundle, tmp_path):
    f = _model(bundle)
    f.unlink()
    os.mkfifo(f)


def _swap_folder(bundle, tmp_path):
    f = _model(bundle)
    f.unlink()
    f.mkdir()


def _swap_device(bundle, tmp_path):
    f = _model(bundle)
    f.unlink()
    try:
        os.mknod(f, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("creating a device node needs privileges here")


SWAPS = {
    "symlink-to-outside-copy": _swap_link_to_outside_copy,
    "symlink-inside-bundle": _swap_link_to_inside,
    "symlinked-models-folder": _swap_folder_link,
    "hard-linked-model": _swap_hardlink,
    "fifo-for-model": _swap_fifo,
    "folder-for-model": _swap_folder,
    "char-device-for-model": _swap_device,
}


@pytest.mark.parametrize("case", SWAPS)
def test_listed_file_swapped_for_link_or_special_is_refused(bundle_copy, tmp_path, case):
    sentinel, before = _sentinel(tmp_path)
    SWAPS[case](bundle_copy, tmp_path)
    for strict in (True, False):
        with pytest.raises(EdgecartError) as exc:
            open_bundle(bundle_copy, strict=strict)
        assert isinstance(exc.value, (UnsafePathError, UnlistedFileError)), repr(exc.value)
    assert sentinel.read_bytes() == before


def _extra_symlinked_folder_outside(bundle, tmp_path):
    os.symlink(tmp_path / "outside", bundle / "linked")


def _extra_symlinked_folder_inside(bundle, tmp_path):
    os.symlink("models", bundle / "alias")


def _extra_symlink_file(bundle, tmp_path):
    os.symlink(tmp_path / "outside" / "sentinel.bin", bundle / "models" / "extra.onnx")


def _extra_dangling_symlink(bundle, tmp_path):
    os.symlink("/nonexistent/edgecart", bundle / "dangling")


def _extra_fifo(bundle, tmp_path):
    os.mkfifo(bundle / "pipe")


SPECIAL_EXTRAS = {
    "unlisted-symlinked-folder-outside": _extra_symlinked_folder_outside,
    "unlisted-symlinked-folder-inside": _extra_symlinked_folder_inside,
    "unlisted-symlink-file": _extra_symlink_file,
    "unlisted-dangling-symlink": _extra_dangling_symlink,
    "unlisted-fifo": _extra_fifo,
}


@pytest.mark.parametrize("case", SPECIAL_EXTRAS)
def test_unlisted_link_or_special_file_is_refused_in_strict_mode(bundle_copy, tmp_path, case):
    sentinel, before = _sentinel(tmp_path)
    SPECIAL_EXTRAS[case](bundle_copy, tmp_path)
    _expect_refused(bundle_copy, (UnsafePathError,))
    assert open_bundle(bundle_copy, strict=False).manifest.name == "tiny"  # never opened, so lenient may ignore it
    assert sentinel.read_bytes() == before


def test_file_hashed_is_the_file_read(bundle_copy):
    """read_verified hands out exactly the bytes it checked (one read), and refuses a file changed after opening."""
    b = open_bundle(bundle_copy)
    rel = "models/tiny.fp32.onnx"
    assert b.read_verified(rel) == (bundle_copy / rel).read_bytes()
    data = bytearray((bundle_copy / rel).read_bytes())
    data[100] ^= 1
    (bundle_copy / rel).write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        b.read_verified(rel)
    with pytest.raises(ManifestError, match="not listed"):
        b.read_verified("models/unlisted.onnx")


def test_manifest_is_json_the_bundle_lists(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert sorted(f["path"] for f in m["files"]) == [f for f in FILES if f != "manifest.json"]
