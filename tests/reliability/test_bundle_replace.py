"""Replacing a bundle: a folder that is not a bundle is never deleted; the swap is one step; files and folders are
fsync'd; the process umask is left alone; a writer or packer killed at random moments leaves the old bundle or the new
one, never a half one, and the next run cleans up (or, where a swap was cut, restores) what the killed one left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from edgecart.exporters.bundle import BundleWriter, recover_leftovers
from edgecart.runtime import BundleError, TensorSpec, open_bundle, verify

IO = dict(inputs=(TensorSpec("x", "float32", (1, 4)),), outputs=(TensorSpec("y", "float32", (1, 2)),))


def _write(out: Path, round_: int = 0, overwrite: bool = True) -> Path:
    with BundleWriter(out, name="r", version=f"0.{round_}", task="generic", overwrite=overwrite, **IO) as w:
        w.add_file("catalog/a.npy", "catalog", np.full((64, 64), round_, np.float32))
        w.add_file("metadata/b.bin", "metadata", bytes([round_ % 256]) * 1000)
        w.quality = {"round": round_}
        return w.commit()


def _dead_pid() -> int:
    r = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(r.stdout)


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


NOT_BUNDLES = {
    "folder-of-user-files": lambda p: (p.mkdir(), (p / "thesis.tex").write_text("years of work")),
    "empty-folder": lambda p: p.mkdir(),
    "manifest-is-a-folder": lambda p: (p.mkdir(), (p / "manifest.json").mkdir()),
    "a-file": lambda p: p.write_text("not a folder"),
    "a-link-to-a-bundle": None,
}


@pytest.mark.parametrize("case", NOT_BUNDLES)
def test_overwrite_refuses_what_is_not_a_bundle(tmp_path, case):
    out = tmp_path / "out"
    if case == "a-link-to-a-bundle":
        _write(tmp_path / "real")
        os.symlink(tmp_path / "real", out)
    else:
        NOT_BUNDLES[case](out)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(BundleError, match="not an edgecart bundle|not a directory|is a link"):
        _write(out)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing deleted, no staging left


def test_folder_that_stops_being_a_bundle_before_commit_is_kept(tmp_path):
    out = _write(tmp_path / "out")
    w = BundleWriter(out, name="r", version="1", task="generic", overwrite=True, **IO)
    (out / "manifest.json").unlink()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an edgecart bundle"):
        with w:
            w.commit()
    assert (out / "notes.txt").read_text() == "mine" and _siblings(out) == []


def test_replace_swaps_in_one_step_and_fsyncs_without_touching_the_umask(tmp_path, monkeypatch):
    out = _write(tmp_path / "out", 1)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))

    def no_umask(*_a):
        raise AssertionError("os.umask changes the whole process's umask; compute permissions another way")

    monkeypatch.setattr(os, "umask", no_umask)
    _write(out, 2)
    assert open_bundle(out).manifest.version == "0.2" and _siblings(out) == []
    assert len(synced) >= 3 + 3  # three files, three folders at least (catalog, metadata, the bundle, its parent)
    monkeypatch.undo()
    probe = tmp_path / "probe"
    probe.mkdir()  # the mode a new folder gets under this process's umask
    assert (out.stat().st_mode & 0o777) == (probe.stat().st_mode & 0o777)


def test_leftovers_of_dead_runs_are_cleaned_and_a_cut_swap_is_restored(tmp_path):
    out = tmp_path / "out"
    old = _write(tmp_path / "src-old", 1)
    new = _write(tmp_path / "src-new", 2)
    dead, alive = _dead_pid(), os.getppid()
    os.replace(old, tmp_path / f".out.old-{dead}-aaaa")  # killed between the two renames: no out at all
    os.replace(new, tmp_path / f".out.staging-{dead}-bbbb")
    (tmp_path / f".out.staging-{alive}-cccc").mkdir()  # another live writer's: must stay
    done = recover_leftovers(out)
    assert len(done) == 2
    assert open_bundle(out).manifest.version == "0.1"  # the old bundle is back
    assert _siblings(out) == [f".out.staging-{alive}-cccc"]


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from edgecart.exporters.bundle import BundleWriter
    from edgecart.runtime.archive import pack_bundle
    from edgecart.runtime import TensorSpec
    out, mode = Path(sys.argv[1]), sys.argv[2]
    io = dict(inputs=(TensorSpec("x", "float32", (1, 4)),), outputs=(TensorSpec("y", "float32", (1, 2)),))
    print("ready", flush=True)
    for i in range(100000):
        if mode == "export":
            with BundleWriter(out, name="r", version=f"0.{i}", task="generic", overwrite=True, **io) as w:
                w.add_file("catalog/a.npy", "catalog", np.full((256, 256), i, np.float32))
                w.add_file("metadata/b.bin", "metadata", bytes([i % 256]) * 50000)
                w.commit()
        else:
            pack_bundle(out, out.with_name("r.tar.gz"))
""")

KILLS = [pytest.param(mode, i, id=f"{mode}-kill-{i}") for mode in ("export", "pack") for i in range(4)]


@pytest.mark.parametrize("mode,seed", KILLS)
def test_killed_at_a_random_moment_leaves_old_or_new_and_the_next_run_cleans_up(tmp_path, mode, seed):
    out = _write(tmp_path / "r", 0)
    if mode == "pack":
        from edgecart.runtime.archive import pack_bundle

        pack_bundle(out, tmp_path / "r.tar.gz")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(out), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.Random(seed).uniform(0.05, 0.6))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    if mode == "export":
        m = verify(out)  # the old bundle or a new one, whole
        assert m.name == "r"
        _write(out, 99)  # the next run
        assert open_bundle(out).manifest.version == "0.99"
        assert _siblings(out) == []
    else:
        assert open_bundle(tmp_path / "r.tar.gz").manifest.name == "r"
        from edgecart.runtime.archive import pack_bundle

        pack_bundle(out, tmp_path / "r.tar.gz")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "r.tar.gz"]


def test_a_bundle_holding_files_its_manifest_does_not_list_is_not_replaced(tmp_path):
    out = _write(tmp_path / "out", 1)
    (out / "my-notes.txt").write_text("release notes")
    (out / "catalog" / "extra.csv").write_text("mine")
    with pytest.raises(BundleError, match="does not list") as exc:
        _write(out, 2)
    assert "my-notes.txt" in str(exc.value) and "catalog/extra.csv" in str(exc.value)
    assert (out / "my-notes.txt").read_text() == "release notes" and _siblings(out) == []
    assert open_bundle(out, strict=False).manifest.version == "0.1"
    (out / "my-notes.txt").unlink()
    (out / "catalog" / "extra.csv").unlink()
    assert open_bundle(_write(out, 2)).manifest.version == "0.2"  # once moved away, the bundle is replaced


def test_files_added_to_the_old_bundle_during_an_export_are_kept(tmp_path):
    out = _write(tmp_path / "out", 1)
    w = BundleWriter(out, name="r", version="2", task="generic", overwrite=True, **IO)
    (out / "bench.json").write_text("{}")
    with pytest.raises(BundleError, match="bench.json"):
        with w:
            w.commit()
    assert (out / "bench.json").read_text() == "{}" and _siblings(out) == []
