"""Archives: decompression bombs and caps (checked from the headers before anything is written), malformed archives,
archives that disagree with their manifest; and packing: byte-identical archives, slim archives whose manifest stays
valid (and signed when a key is given)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import tempfile
import time
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from edgecart.runtime import (
    ArchiveLimitError,
    BundleError,
    EdgecartError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    SignatureError,
    UnlistedFileError,
    UnsafePathError,
    open_bundle,
)
from edgecart.runtime.archive import ArchiveLimits, pack_bundle

MiB = 1 << 20


@pytest.fixture()
def watched(tmp_path, monkeypatch):
    w = tmp_path / "watched"
    w.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(w))
    return w


@pytest.fixture(scope="module")
def packed(tiny_bundle, tmp_path_factory):
    return pack_bundle(tiny_bundle, tmp_path_factory.mktemp("packed") / "tiny.tar.gz")


def _gz(raw: bytes, level: int = 6) -> bytes:
    return gzip.compress(raw, compresslevel=level, mtime=0)


def _header(name: str, size: int, type_: bytes = tarfile.REGTYPE) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size, ti.type = size, type_
    return ti.tobuf(format=tarfile.GNU_FORMAT)


def _zeros_member(name: str, size: int) -> bytes:
    return _header(name, size) + b"\0" * (size + (-size) % 512)


BOMB_MAKERS = {
    "declares-1TiB-no-data": lambda: (_gz(_header("tiny/models/x.onnx", 2**40)), None),
    "declares-1TiB-pax-size": lambda: (_gz(_pax_size_header("tiny/models/x.onnx", 2**40)), None),
    "64MiB-of-zeros": lambda: (_gz(_zeros_member("tiny/models/x.onnx", 64 * MiB), 1),
                               ArchiveLimits(max_file_bytes=8 * MiB)),
    "total-over-cap": lambda: (_gz(b"".join(_zeros_member(f"tiny/f{i}.bin", 4 * MiB) for i in range(4)), 1),
                               ArchiveLimits(max_total_bytes=10 * MiB)),
    "3000-members": lambda: (_gz(b"".join(_header(f"tiny/e{i}", 0) for i in range(3000))),
                             ArchiveLimits(max_members=1000)),
    "1GiB-pax-record": lambda: (_gz(_header("././@PaxHeader", 2**30, tarfile.XHDTYPE)), None),
    "1GiB-long-name-record": lambda: (_gz(_header("././@LongLink", 2**30, tarfile.GNUTYPE_LONGNAME)), None),
}


def _pax_size_header(name: str, size: int) -> bytes:
    """A pax extended header carrying the size (tarfile writes one for sizes beyond ustar's 8 GiB)."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    raw = ti.tobuf(format=tarfile.PAX_FORMAT)
    assert b"size=" in raw
    return raw


BOMBS = tuple(BOMB_MAKERS)


@pytest.mark.parametrize("case", BOMBS)
def test_decompression_bomb_is_refused_before_writing(tmp_path, watched, case):
    data, limits = BOMB_MAKERS[case]()
    assert len(data) < 2 * MiB  # small on disk...
    p = tmp_path / "bomb.tar.gz"
    p.write_bytes(data)
    t = time.perf_counter()
    with pytest.raises(EdgecartError) as exc:
        open_bundle(p, limits=limits)
    assert isinstance(exc.value, ArchiveLimitError), repr(exc.value)
    assert time.perf_counter() - t < 30
    assert list(watched.iterdir()) == []  # nothing written


MALFORMED = {
    "empty-file": b"",
    "not-an-archive": b"hello, I am not a tarball" * 10,
    "random-gzip": _gz(os.urandom(4096)),
    "gzip-of-nothing": _gz(b""),
    "truncated-gzip": None,  # filled from the real archive
    "garbage-after-end": None,
    "flipped-gzip-byte": None,
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_archive_is_a_typed_error(packed, tmp_path, watched, case):
    real = packed.path.read_bytes()
    data = MALFORMED[case]
    if case == "truncated-gzip":
        data = real[: len(real) // 2]
    elif case == "garbage-after-end":
        data = real + os.urandom(1000)
    elif case == "flipped-gzip-byte":
        b = bytearray(real)
        b[len(b) // 2] ^= 0xFF
        data = bytes(b)
    p = tmp_path / "bad.tar.gz"
    p.write_bytes(data)
    try:
        b = open_bundle(p)
    except EdgecartError as exc:
        assert isinstance(exc, BundleError)
        assert list(watched.iterdir()) == []
    else:  # gzip ignores trailing garbage after the last member; what was read must be the verified bundle
        assert case == "garbage-after-end" and b.manifest.name == "tiny"


def _rebuild(packed_path: Path, out: Path, edit) -> Path:
    with tarfile.open(packed_path) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    members = edit(members)
    with tarfile.open(out, "w:gz") as tar:
        for m, data in members:
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return out


def _add(name, data):
    def edit(members):
        ti = tarfile.TarInfo(name)
        return [*members, (ti, data)]
    return edit


def _drop(suffix):
    return lambda members: [(m, d) for m, d in members if not m.name.endswith(suffix)]


def _grow(suffix):
    return lambda members: [(m, d + b"\0" if m.name.endswith(suffix) else d) for m, d in members]


def _second_manifest(members):
    m = next(d for t, d in members if t.name.endswith("manifest.json"))
    return [*members, (tarfile.TarInfo("other/manifest.json"), m)]


DISAGREE = {
    "unlisted-member": (_add("tiny/models/extra.bin", b"x"), UnlistedFileError),
    "member-outside-top-folder": (_add("elsewhere.txt", b"x"), UnlistedFileError),
    "listed-file-missing": (_drop("tiny.fp32.onnx"), MissingFileError),
    "manifest-missing": (_drop("manifest.json"), ManifestError),
    "size-differs": (_grow("tiny.int8.tflite"), IntegrityError),
    "two-manifests": (_second_manifest, ManifestError),
}


@pytest.mark.parametrize("case", DISAGREE)
def test_archive_that_disagrees_with_its_manifest_is_refused_before_writing(packed, tmp_path, watched, case):
    edit, err = DISAGREE[case]
    p = _rebuild(packed.path, tmp_path / "edited.tar.gz", edit)
    with pytest.raises(err):
        open_bundle(p)
    assert list(watched.iterdir()) == []
    if case in ("unlisted-member", "member-outside-top-folder"):
        b = open_bundle(p, strict=False)  # lenient: skipped, never written
        assert not any(x.name in ("extra.bin", "elsewhere.txt") for x in b.root.rglob("*"))


def test_archive_limits_validate():
    with pytest.raises(ValueError):
        ArchiveLimits(max_members=0)
    with pytest.raises(ValueError):
        ArchiveLimits(max_total_bytes=True)


# --- packing ----------------------------------------------------------------------------------------------------------

def test_pack_is_byte_identical(tiny_bundle, tmp_path):
    import shutil

    a = pack_bundle(tiny_bundle, tmp_path / "a.tar.gz")
    copy = tmp_path / "elsewhere" / tiny_bundle.name
    shutil.copytree(tiny_bundle, copy)
    for p in copy.rglob("*"):  # other times and modes must not leak into the archive
        os.utime(p, (1_000_000_000, 1_000_000_000))
        if p.is_file():
            os.chmod(p, 0o600)
    b = pack_bundle(copy, tmp_path / "b.tar.gz")
    assert a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    raw = a.path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header: no time
    with tarfile.open(a.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "tiny/manifest.json" and names[1:] == sorted(names[1:])
    assert {(m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, "", "", 0o644)}
    assert len({m.mtime for m in members}) == 1


def test_pack_leaves_no_partial_file_and_cleans_dead_ones(tiny_bundle, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".tiny.tar.gz.partial-{pid}-dead"
    stale.write_bytes(b"half an archive")
    res = pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tar.gz"]
    assert open_bundle(res.path).manifest.name == "tiny"


@pytest.fixture(scope="module")
def schema():
    return json.loads(resources.files("edgecart.runtime").joinpath("manifest.schema.json").read_text())


@pytest.mark.parametrize("formats", [["onnx"], ["tflite"], ["executorch"], ["onnx", "tflite"]],
                         ids=lambda f: "+".join(f))
def test_slim_pack_keeps_a_valid_manifest(tiny_bundle, tmp_path, schema, formats):
    res = pack_bundle(tiny_bundle, tmp_path / "slim.tar.gz", formats=formats)
    b = open_bundle(res.path)  # strict: every listed file present, nothing else
    m = b.manifest
    assert {a.format for a in m.artifacts} == set(formats) and len(m.artifacts) == 2 * len(formats)
    suffixes = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch"}
    for f in m.files:
        fmt = suffixes.get(Path(f.path).suffix)
        assert fmt is None or fmt in formats
    jsonschema.validate(json.loads((b.root / "manifest.json").read_text()), schema)
    assert res.bytes < (tiny_bundle / "models").stat().st_size + sum(p.stat().st_size for p in tiny_bundle.rglob("*"))
    again = pack_bundle(tiny_bundle, tmp_path / "slim2.tar.gz", formats=formats)
    assert again.sha256 == res.sha256


def test_slim_pack_of_a_signed_bundle_is_resigned_or_unsigned_with_a_note(tiny_bundle, tmp_path, keys):
    import shutil

    from edgecart.runtime.signing import sign_bundle

    priv, pub = keys
    signed = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, signed)
    sign_bundle(signed, priv)
    full = pack_bundle(signed, tmp_path / "full.tar.gz", public_key=pub)
    assert open_bundle(full.path, public_key=pub).manifest.signature is not None
    unsigned = pack_bundle(signed, tmp_path / "slim.tar.gz", formats=["onnx"])
    assert unsigned.manifest.signature is None and "unsigned" in unsigned.notes[0]
    with pytest.raises(SignatureError, match="not signed"):
        open_bundle(unsigned.path, public_key=pub)
    resigned = pack_bundle(signed, tmp_path / "slim-signed.tar.gz", formats=["onnx"], private_key=priv)
    assert open_bundle(resigned.path, public_key=pub).manifest.signature is not None
    with pytest.raises(SignatureError):
        pack_bundle(tiny_bundle, tmp_path / "x.tar.gz", public_key=pub)  # an unsigned source is refused


@pytest.mark.parametrize("formats,err", [(["coreml"], "coreml"), (["onnx", "bogus"], "bogus")])
def test_slim_pack_with_unknown_format_lists_the_known_ones(tiny_bundle, tmp_path, formats, err):
    from edgecart.runtime import UnknownNameError

    with pytest.raises(UnknownNameError, match=f"{err}.*executorch, onnx, tflite"):
        pack_bundle(tiny_bundle, tmp_path / "x.tar.gz", formats=formats)
    assert not (tmp_path / "x.tar.gz").exists()


def test_pack_refuses_a_broken_bundle(bundle_copy, tmp_path):
    (bundle_copy / "models/tiny.int8.pte").write_bytes(b"broken")
    with pytest.raises(IntegrityError):
        pack_bundle(bundle_copy, tmp_path / "x.tar.gz")
    assert list(tmp_path.glob("*.tar.gz")) == [] and not list(tmp_path.glob(".x.tar.gz*"))


def test_unsafe_member_type_message_names_the_member(tmp_path):
    p = tmp_path / "link.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        ti = tarfile.TarInfo("tiny/models")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(ti)
    with pytest.raises(UnsafePathError, match="tiny/models.*symbolic link"):
        open_bundle(p)


def test_pack_names_its_top_folder_from_the_resolved_bundle_path(bundle_copy, tmp_path, monkeypatch):
    # 'edgecart pack .' from inside the bundle, or 'pack ..' from one of its folders: member names must still be
    # '<bundle>/...' (never '/...' or '../...'), and the default archive lands beside the bundle, not inside it.
    monkeypatch.chdir(bundle_copy / "models")
    r = pack_bundle(Path(".."))
    assert r.path == (bundle_copy.parent / f"{bundle_copy.name}.tar.gz")
    with tarfile.open(r.path) as tar:
        names = tar.getnames()
    assert names and all(n.startswith(f"{bundle_copy.name}/") for n in names), names
    monkeypatch.chdir(bundle_copy)
    assert pack_bundle(Path("."), tmp_path / "dot.tar.gz").path == tmp_path / "dot.tar.gz"
    open_bundle(bundle_copy)  # still whole: nothing was written into it


@pytest.mark.parametrize("where", ["manifest.json", "inside.tar.gz", "models/x.tar.gz", "an-existing-folder"])
def test_pack_refuses_a_destination_inside_the_bundle_or_a_folder(bundle_copy, tmp_path, where):
    from edgecart.runtime import OutputPathError

    dest = tmp_path / "an-existing-folder" if where == "an-existing-folder" else bundle_copy / where
    if where == "an-existing-folder":
        dest.mkdir()
    before = sorted(p.relative_to(bundle_copy) for p in bundle_copy.rglob("*"))
    with pytest.raises(OutputPathError, match="inside the bundle|is a folder"):
        pack_bundle(bundle_copy, dest)
    assert sorted(p.relative_to(bundle_copy) for p in bundle_copy.rglob("*")) == before
    open_bundle(bundle_copy)
