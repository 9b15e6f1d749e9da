"""Path traversal, in manifests and in archives: ``../x``, absolute paths, ``a/../../x``, symlinks, hard links,
devices and fifos. A sentinel file outside must stay untouched, and nothing may appear where an extraction WOULD
write: archives are extracted under ``tempfile.gettempdir()``, which these tests point at a folder they watch."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

import pytest
from edgecart.runtime import BundleError, EdgecartError, UnsafePathError, open_bundle

BAD_PATHS = {
    "parent": "../outside/sentinel.bin",
    "absolute": "/etc/passwd",
    "inner-parent": "models/../../outside/sentinel.bin",
    "dot-segment": "models/./tiny.fp32.onnx",
    "double-slash": "models//tiny.fp32.onnx",
    "backslash": "models\\..\\..\\outside\\sentinel.bin",
    "drive": "C:/Windows/system.ini",
    "nul": "models/tiny.fp32.onnx\x00.txt",
    "trailing-slash": "models/",
    "dot": ".",
}


def _field_setters():
    def files(m, p):
        m["files"][0]["path"] = p

    def artifact(m, p):
        m["artifacts"][0]["path"] = p

    def side_file(m, p):
        m["artifacts"][0]["side_files"] = [p]

    def golden(m, p):
        m["golden"]["inputs"]["image"] = p

    def catalog(m, p):
        m["catalog"] = {"kind": "image_embeddings", "items_file": p}

    return {"files": files, "artifact": artifact, "side_file": side_file, "golden": golden, "catalog": catalog}


FIELDS = _field_setters()


@pytest.fixture()
def sentinel(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    s = outside / "sentinel.bin"
    s.write_bytes(b"sentinel: must not be read as a bundle file, changed or removed")
    return s


@pytest.mark.parametrize("bad", BAD_PATHS)
@pytest.mark.parametrize("field", FIELDS)
def test_manifest_path_outside_the_bundle_is_refused(tiny_bundle, tmp_path, sentinel, field, bad):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = sentinel.stat()
    mpath = bundle / "manifest.json"
    m = json.loads(mpath.read_text())
    FIELDS[field](m, BAD_PATHS[bad])
    if field == "files":  # the sentinel's own hash and size, so only the path check stands in the way
        m["files"][0]["sha256"] = hashlib.sha256(sentinel.read_bytes()).hexdigest()
        m["files"][0]["bytes"] = sentinel.stat().st_size
    mpath.write_text(json.dumps(m))
    with pytest.raises(UnsafePathError):
        open_bundle(bundle)
    after = sentinel.stat()
    assert sentinel.read_bytes().startswith(b"sentinel") and after.st_mtime_ns == before.st_mtime_ns


# --- archives -------------------------------------------------------------------------------------------------------

def _member(name: str, data: bytes = b"", **kw) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
        return ti, data
    return ti, None


def _archive(path: Path, bundle: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]], first: bool = True) -> Path:
    """The real tiny bundle as tiny/..., with ``extra`` members before (or after) its files."""
    real = [_member(f"tiny/{p.relative_to(bundle).as_posix()}", p.read_bytes())
            for p in sorted(bundle.rglob("*")) if p.is_file()]
    members = extra + real if first else real + extra
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture()
def watched(tmp_path, monkeypatch):
    """Extraction goes under watched/; '../x' from an extraction folder lands in watched/x."""
    w = tmp_path / "watched"
    w.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(w))
    return w


def _archive_cases(tmp_path: Path, sentinel: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    payload = b"escaped!"
    return {
        "parent": [_member("../escaped.txt", payload)],
        "grandparent": [_member("../../escaped.txt", payload)],
        "inner-parent": [_member("tiny/a/../../../escaped.txt", payload)],
        "absolute": [_member(str(tmp_path / "abs-escaped.txt"), payload)],
        "dot-dot-prefix": [_member("./../escaped.txt", payload)],
        "symlink-to-outside": [_member("tiny/link", type=tarfile.SYMTYPE, linkname=str(sentinel))],
        "symlink-folder-then-file": [_member("tiny/models", type=tarfile.SYMTYPE, linkname=str(sentinel.parent)),
                                     _member("tiny/models/escaped.txt", payload)],
        "hardlink-to-sentinel": [_member("tiny/hard", type=tarfile.LNKTYPE, linkname=str(sentinel)),
                                 _member("tiny/hard", payload)],
        "hardlink-relative": [_member("tiny/hard", type=tarfile.LNKTYPE, linkname="../outside/sentinel.bin")],
        "char-device": [_member("tiny/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)],
        "block-device": [_member("tiny/blk", type=tarfile.BLKTYPE, devmajor=7, devminor=0)],
        "fifo": [_member("tiny/fifo", type=tarfile.FIFOTYPE)],
        "duplicate-model": [_member("tiny/models/tiny.fp32.onnx", b"evil twin")],
    }


CASE_NAMES = ("parent", "grandparent", "inner-parent", "absolute", "dot-dot-prefix", "symlink-to-outside",
              "symlink-folder-then-file", "hardlink-to-sentinel", "hardlink-relative", "char-device", "block-device",
              "fifo", "duplicate-model")


@pytest.mark.parametrize("first", [True, False], ids=["evil-first", "evil-last"])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_archive_member_escaping_or_special_is_refused(tiny_bundle, tmp_path, sentinel, watched, case, first):
    cases = _archive_cases(tmp_path, sentinel)
    assert set(cases) == set(CASE_NAMES)
    before = sentinel.read_bytes()
    archive = _archive(tmp_path / "evil.tar.gz", tiny_bundle, cases[case], first)
    for strict in (True, False):
        with pytest.raises(EdgecartError) as exc:
            open_bundle(archive, strict=strict)
        assert isinstance(exc.value, BundleError)
    # where the extraction would have written: beside and above its folder, the absolute target, the sentinel
    for target in (watched / "escaped.txt", tmp_path / "escaped.txt", tmp_path / "abs-escaped.txt",
                   sentinel.parent / "escaped.txt"):
        assert not target.exists(), target
    assert sentinel.read_bytes() == before
    assert list(watched.iterdir()) == []  # the refused extraction left nothing behind


def test_the_watch_sees_an_extraction(tiny_bundle, tmp_path, watched):
    """Control: a good archive is extracted under the watched folder (so the checks above look where it writes)."""
    archive = _archive(tmp_path / "good.tar.gz", tiny_bundle, [])
    b = open_bundle(archive)
    assert b.root.parent == watched.resolve()
    del b
    import gc

    gc.collect()
    assert list(watched.iterdir()) == []
