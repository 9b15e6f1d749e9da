"""A corrupt, truncated, edited or incomplete bundle is refused before anything runs, with the right error."""

from __future__ import annotations

import json
import os
import tarfile
import tempfile

import numpy as np
import pytest
from edgecart.runtime import (
    BundleError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    UnlistedFileError,
    UnsafePathError,
    load,
    open_bundle,
    verify,
)


def _model_file(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    return bundle / next(a["path"] for a in m["artifacts"] if a["format"] == "onnx")


def test_intact_bundle_verifies(bundle_copy):
    m = verify(bundle_copy)
    assert len(m.files) >= 8


def test_truncated_model_is_refused(bundle_copy):
    f = _model_file(bundle_copy)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="truncated"):
        load(bundle_copy, "onnxruntime")


def test_byte_flip_is_refused(bundle_copy):
    f = _model_file(bundle_copy)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load(bundle_copy, "onnxruntime")


def test_swapped_model_with_rewritten_size_is_refused(bundle_copy):
    """A different model dropped in and the manifest's byte count edited to match (the hash still differs)."""
    mpath = bundle_copy / "manifest.json"
    m = json.loads(mpath.read_text())
    art = next(a for a in m["artifacts"] if a["format"] == "onnx" and a["precision"] == "fp32")
    other = next(a for a in m["artifacts"] if a["format"] == "onnx" and a["precision"] == "int8")
    (bundle_copy / art["path"]).write_bytes((bundle_copy / other["path"]).read_bytes())
    for f in m["files"]:
        if f["path"] == art["path"]:
            f["bytes"] = (bundle_copy / art["path"]).stat().st_size
    mpath.write_text(json.dumps(m))
    with pytest.raises(IntegrityError):
        open_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / m["golden"]["inputs"]["image"]).unlink()
    with pytest.raises(MissingFileError, match="missing"):
        open_bundle(bundle_copy)


def test_unlisted_file_is_refused_unless_lenient(bundle_copy):
    (bundle_copy / "models" / "extra.bin").write_bytes(b"x")
    with pytest.raises(UnlistedFileError, match="extra.bin"):
        open_bundle(bundle_copy)
    assert open_bundle(bundle_copy, strict=False).manifest.name == "tiny"


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "models/../../x", "models\\x.onnx"])
def test_paths_escaping_the_bundle_are_refused(bundle_copy, bad):
    mpath = bundle_copy / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"][0]["path"] = bad
    mpath.write_text(json.dumps(m))
    with pytest.raises(UnsafePathError):
        open_bundle(bundle_copy)


def test_symlinked_file_is_refused(bundle_copy, tmp_path):
    f = _model_file(bundle_copy)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(f.read_bytes())
    f.unlink()
    os.symlink(outside, f)
    with pytest.raises(UnsafePathError, match="link"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ('{"schema_version": "9.9"}', "not supported"),
    ("[]", "JSON object"),
])
def test_bad_manifest_is_refused(bundle_copy, text, match):
    (bundle_copy / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=match):
        open_bundle(bundle_copy)


def test_truncated_manifest_is_refused(bundle_copy):
    mpath = bundle_copy / "manifest.json"
    mpath.write_bytes(mpath.read_bytes()[:200])
    with pytest.raises(ManifestError):
        open_bundle(bundle_copy)


def test_unknown_manifest_key_is_refused(bundle_copy):
    mpath = bundle_copy / "manifest.json"
    m = json.loads(mpath.read_text())
    m["artifacts"][0]["run_this"] = "rm -rf /"
    mpath.write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="unknown keys"):
        open_bundle(bundle_copy)


def test_no_manifest_is_refused(bundle_copy):
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        open_bundle(bundle_copy)
    with pytest.raises(BundleError, match="no such bundle"):
        open_bundle(bundle_copy / "nope")


def test_archive_round_trip_and_corrupt_archive(tiny_bundle, tmp_path):
    from edgecart.exporters import pack

    archive = pack(tiny_bundle, tmp_path / "tiny.tar.gz")
    session = load(archive, "onnxruntime", precision="fp32")
    assert session.run(np.zeros((1, 1, 28, 28), np.float32))["embedding"].shape == (1, 16)
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError):
        open_bundle(tmp_path / "cut.tar.gz")


def test_archive_with_escaping_member_is_refused(tmp_path, monkeypatch):
    """Look where the extraction WOULD write: archives are extracted under tempfile.gettempdir(), pointed here at a
    folder of this test, so '../escaped.txt' from the extraction folder would land in watched/escaped.txt."""
    watched = tmp_path / "watched"
    watched.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(watched))
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escaped.txt")
        tar.add(payload, arcname="manifest.json")
    with pytest.raises(UnsafePathError, match="escaped.txt"):
        open_bundle(evil)
    assert not (watched / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert list(watched.iterdir()) == []
