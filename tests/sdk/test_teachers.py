"""The demo's shipped teachers: checked before use, copied without overwriting, and in step with the demo's keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from edgecart.cli import main
from edgecart.teachers import MANIFEST, ShippedTeachersError, demo_teacher_entries, seed_cache, shipped_dir, verify


def _shipped(root: Path, files: dict[str, bytes]) -> Path:
    listed = {}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        listed[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (root / MANIFEST).write_text(json.dumps({"files": listed}))
    return root


FILES = {"vision/teacher-abc.pt": b"weights", "vision/teacher-abc.json": b"{}", "recs/ml-teacher-1.pt": b"w2",
         "recs/ml-teacher-1.json": b"{}"}


def test_verify_accepts_the_manifest_as_written(tmp_path):
    assert set(verify(_shipped(tmp_path, FILES))["files"]) == set(FILES)


@pytest.mark.parametrize("damage", ["changed", "missing", "unlisted", "outside"])
def test_verify_refuses_a_damaged_shipped_folder(tmp_path, damage):
    root = _shipped(tmp_path / "t", FILES)
    if damage == "changed":
        (root / "vision/teacher-abc.pt").write_bytes(b"weightz")  # same size, other bytes
    elif damage == "missing":
        (root / "recs/ml-teacher-1.pt").unlink()
    elif damage == "unlisted":
        (root / "vision/teacher-zzz.pt").write_bytes(b"x")
    else:
        doc = json.loads((root / MANIFEST).read_text())
        doc["files"]["../evil.pt"] = {"bytes": 1, "sha256": "0"}
        (root / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ShippedTeachersError, match="--train-teachers"):
        verify(root)


def test_seed_cache_copies_what_is_missing_and_keeps_what_is_there(tmp_path):
    root = _shipped(tmp_path / "t", FILES)
    cache = tmp_path / "cache"
    (cache / "vision").mkdir(parents=True)
    (cache / "vision/teacher-abc.pt").write_bytes(b"trained here")
    copied = seed_cache(cache, root, namespaces=("vision",))
    assert copied == ["vision/teacher-abc.json"]
    assert (cache / "vision/teacher-abc.pt").read_bytes() == b"trained here"
    assert not (cache / "recs").exists()
    assert sorted(seed_cache(cache, root)) == ["recs/ml-teacher-1.json", "recs/ml-teacher-1.pt"]
    assert seed_cache(cache, root) == []


def test_a_tampered_shipped_folder_stops_the_demo_before_anything_runs(tmp_path, monkeypatch, capsys):
    root = _shipped(tmp_path / "t", FILES)
    (root / "recs/ml-teacher-1.pt").write_bytes(b"w3")
    monkeypatch.setenv("EDGECART_TEACHERS", str(root))

    def must_not_run(*_a, **_k):
        raise AssertionError("the recommendations build ran on tampered teachers")

    monkeypatch.setattr("edgecart.recs.pipeline.run_demo", must_not_run)
    out = tmp_path / "out"
    assert main(["demo", "--task", "recommendations", "--out", str(out)]) == 2
    assert "does not match its SHA-256" in capsys.readouterr().err
    assert not out.exists()


def test_the_shipped_teachers_are_intact_and_are_the_ones_the_demo_asks_for():
    """A change to a teacher's configuration, data or cache key must come with re-shipped teachers
    (scripts/ship_teachers.py); otherwise the demo would silently train them again and miss its time budget."""
    root = shipped_dir()
    assert root is not None, "data/teachers/MANIFEST.json is missing from the repository"
    shipped = {rel.rsplit(".", 1)[0] for rel in verify(root)["files"]}
    wanted = {e for entries in demo_teacher_entries().values() for e in entries}
    assert wanted - shipped == set(), "the demo asks for teachers that are not shipped"
    assert shipped - wanted == set(), "stale shipped teachers the demo no longer asks for"
