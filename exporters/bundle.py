"""Write a bundle: files staged in a folder beside the destination, swapped into place on commit.

An interrupted export leaves no half bundle: the destination changes only when ``commit`` succeeds, and then in one
step (an atomic exchange of the two folders where the system has one; otherwise the old bundle is renamed aside, the
new one renamed in, and a run killed between the two is repaired by the next run). Staging and old folders carry the
writing process's id (``.NAME.staging-PID-*``, ``.NAME.old-PID-*``); a later run removes those whose process is gone.
Everything is fsync'd before the swap. A directory that is not a bundle (no manifest.json) is never replaced, nor a
bundle holding files its manifest does not list (a user's own notes or results would go with it).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.archive import (
    enclosing_bundle,
    pack_bundle,
    refuse_output_inside,
    remove_path,
    stale_leftovers,
    unique_sibling,
)
from edgecart.runtime.bundle import Bundle, fsync_dir, sha256_file
from edgecart.runtime.errors import BundleError
from edgecart.runtime.manifest import (
    MANIFEST_NAME,
    Artifact,
    FileEntry,
    Golden,
    Manifest,
    Preprocessing,
    TensorSpec,
    check_relative_path,
)

from .base import toolchain_versions


def _refuse_non_bundle(out: Path) -> None:
    if out.is_symlink():
        raise BundleError(f"{out} is a link; pass the real folder to replace, or another --out")
    if not out.is_dir():
        raise BundleError(f"{out} exists and is not a directory; choose another --out")
    m = out / MANIFEST_NAME
    if not m.is_file() or m.is_symlink():
        raise BundleError(f"refusing to replace {out}: it is not an edgecart bundle (no manifest.json), and "
                          "replacing it would delete it; remove it yourself or choose another --out")
    extra = unlisted_files(out)
    if extra:
        shown = some_paths(extra)
        raise BundleError(f"refusing to replace {out}: it holds {len(extra)} file(s) its manifest does not list "
                          f"({shown}), which replacing the bundle would delete; move them out of the bundle folder "
                          "first, or choose another --out")


def some_paths(paths: list[str], n: int = 5) -> str:
    """The first ``n`` of ``paths`` for a message, and how many more there are."""
    return ", ".join(paths[:n]) + (f" and {len(paths) - n} more" if len(paths) > n else "")


def unlisted_files(bundle: Path) -> list[str]:
    """The plain files (and links) in the bundle folder ``bundle`` that its manifest does not list, sorted: what a
    user put there themselves. Empty when the manifest cannot be read (a broken bundle is replaced as a whole)."""
    from edgecart.runtime.bundle import read_manifest

    try:
        listed = {e.path for e in read_manifest(bundle).files} | {MANIFEST_NAME}
    except BundleError:
        return []
    found = []
    for dirpath, dirs, names in os.walk(bundle, followlinks=False):
        for n in names + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            rel = Path(dirpath, n).relative_to(bundle).as_posix()
            if rel not in listed:
                found.append(rel)
    return sorted(found)


def recover_leftovers(out: Path) -> list[Path]:
    """Clean up after killed runs that wrote ``out``: remove their staging and old folders; when ``out`` itself is
    missing and a killed run had moved the previous bundle aside, put it back. Returns what was removed/restored."""
    done = []
    for kind, p in sorted(stale_leftovers(out.parent, out.name), key=lambda kp: kp[0] != "old"):
        if kind == "old" and not out.exists() and not out.is_symlink() and (p / MANIFEST_NAME).is_file():
            os.replace(p, out)  # the swap was cut between its two renames: the old bundle is the valid one
            fsync_dir(out.parent)
        else:
            remove_path(p)
        done.append(p)
    return done


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE). False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, names in os.walk(root, topdown=False):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


class BundleWriter:
    """Collects files and artifacts in a staging folder, then commits them atomically as ``out``."""

    def __init__(self, out: str | os.PathLike[str], *, name: str, version: str, task: str,
                 inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                 preprocessing: Preprocessing | None = None, overwrite: bool = False,
                 backend_preference: dict[str, Any] | None = None) -> None:
        self.out = Path(out).absolute()
        inside = enclosing_bundle(self.out.parent)
        if inside is not None:  # a bundle in another's folder would be an unlisted file there: it breaks that bundle
            refuse_output_inside(self.out, inside, kind="folder")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BundleError(f"{self.out.parent}: cannot make the folder ({exc.strerror or exc}); choose another "
                              "output folder") from None
        recover_leftovers(self.out)
        if self.out.exists() or self.out.is_symlink():
            if not overwrite:
                raise BundleError(f"{self.out} already exists; choose another output folder or allow "
                                  "replacing it (--overwrite on the command line, overwrite=True in Python)")
            _refuse_non_bundle(self.out)
        self.overwrite = overwrite
        self.staging = unique_sibling(self.out, "staging")
        try:
            os.mkdir(self.staging, 0o777)  # the process's umask applies: a bundle is as shared as the user's files
        except OSError as exc:
            raise BundleError(f"{self.out.parent}: the folder is not writable ({exc.strerror or exc}); the bundle is "
                              "staged beside its destination, so write it elsewhere (--out on a writable disk) or make "
                              "that folder writable") from None
        self._files: dict[str, FileEntry] = {}
        self._artifacts: dict[str, Artifact] = {}
        self._golden: Golden | None = None
        self.meta: dict[str, Any] = dict(name=name, version=version, task=task, inputs=tuple(inputs),
                                         outputs=tuple(outputs), preprocessing=preprocessing,
                                         backend_preference=backend_preference)
        self.catalog: dict[str, Any] | None = None
        self.quality: dict[str, Any] = {}
        self._done = False

    # --- files ------------------------------------------------------------------------------------------------

    def file_path(self, rel: str) -> Path:
        """Where a file at ``rel`` lives in the staging folder (parents created)."""
        p = self.staging / check_relative_path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_file(self, rel: str, role: str, data: bytes | np.ndarray | None = None) -> FileEntry:
        """Record a file; write ``data`` first when given (arrays as .npy, never pickled)."""
        p = self.file_path(rel)
        if isinstance(data, np.ndarray):
            if data.dtype == object:
                raise BundleError(f"{rel}: object arrays cannot go into a bundle")
            buf = io.BytesIO()
            np.save(buf, data, allow_pickle=False)
            p.write_bytes(buf.getvalue())
        elif data is not None:
            p.write_bytes(data)
        if not p.is_file():
            raise BundleError(f"{rel}: was not written to the staging folder")
        entry = FileEntry(rel, sha256_file(p), p.stat().st_size, role)
        self._files[rel] = entry
        return entry

    def add_artifact(self, artifact: Artifact) -> None:
        for rel in (artifact.path, *artifact.side_files):
            if rel not in self._files:
                raise BundleError(f"artifact {artifact.name!r}: add {rel!r} with add_file first")
        self._artifacts[artifact.name] = artifact

    def update_artifact(self, name: str, **changes: Any) -> Artifact:
        import dataclasses

        art = dataclasses.replace(self._artifacts[name], **changes)
        self._artifacts[name] = art
        return art

    def remove_artifact(self, name: str) -> None:
        art = self._artifacts.pop(name)
        for rel in (art.path, *art.side_files):
            self._files.pop(rel, None)
            (self.staging / rel).unlink(missing_ok=True)

    @property
    def artifacts(self) -> list[Artifact]:
        return list(self._artifacts.values())

    def set_golden(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Golden:
        """Store reference inputs and outputs (leading axis = sample), one .npy per tensor."""
        gi = {n: self.add_file(f"golden/input.{n}.npy", "golden", np.ascontiguousarray(a)).path
              for n, a in inputs.items()}
        go = {n: self.add_file(f"golden/output.{n}.npy", "golden", np.ascontiguousarray(a)).path
              for n, a in outputs.items()}
        self._golden = Golden(gi, go)
        return self._golden

    # --- manifest ---------------------------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        return Manifest(
            created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            toolchain=toolchain_versions(), artifacts=tuple(self._artifacts.values()),
            files=tuple(sorted(self._files.values(), key=lambda f: f.path)), golden=self._golden,
            catalog=self.catalog, quality=self.quality, **self.meta,
        )

    def stage(self) -> Bundle:
        """Write the manifest into the staging folder and return it as a (verified) Bundle for checks."""
        from edgecart.runtime.bundle import verify

        self._write_manifest()
        return Bundle(self.staging.resolve(), verify(self.staging))

    def _write_manifest(self) -> Manifest:
        m = self.manifest()
        (self.staging / MANIFEST_NAME).write_text(m.to_json(), encoding="utf-8")
        return m

    def commit(self, archive: bool = False) -> Path:
        """Write the manifest, verify the staged bundle, and rename it into place (replacing an old one)."""
        from edgecart.runtime.bundle import verify

        self._write_manifest()
        for extra in self._unlisted():
            (self.staging / extra).unlink()
        verify(self.staging)
        _fsync_tree(self.staging)
        if self.out.exists() or self.out.is_symlink():
            if not self.overwrite:
                raise BundleError(f"{self.out} appeared while exporting; choose another output folder or allow "
                                  "replacing it (--overwrite, overwrite=True in Python)")
            _refuse_non_bundle(self.out)
            if _exchange(self.staging, self.out):  # one step: out is the new bundle, staging holds the old one
                fsync_dir(self.out.parent)
                shutil.rmtree(self.staging, ignore_errors=True)
            else:
                old = unique_sibling(self.out, "old")
                os.replace(self.out, old)
                os.replace(self.staging, self.out)  # a kill between these two: the next run restores ``old``
                fsync_dir(self.out.parent)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.staging, self.out)
            fsync_dir(self.out.parent)
        self._done = True
        if archive:
            pack(self.out)
        return self.out

    def manifest_on_disk(self) -> Manifest:
        """The manifest as committed (after ``commit``)."""
        from edgecart.runtime.bundle import read_manifest

        return read_manifest(self.out)

    def _unlisted(self) -> list[str]:
        listed = set(self._files) | {MANIFEST_NAME}
        return [p.relative_to(self.staging).as_posix() for p in self.staging.rglob("*")
                if p.is_file() and p.relative_to(self.staging).as_posix() not in listed]

    def abort(self) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)
            self._done = True

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()


def pack(bundle_dir: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, **kwargs: Any) -> Path:
    """Verify the bundle and write ``<bundle>.tar.gz`` (or ``dest``): deterministic, listed files only.

    Keyword arguments go to :func:`edgecart.runtime.archive.pack_bundle` (``formats``, ``private_key``, ...).
    """
    return pack_bundle(bundle_dir, dest, **kwargs).path
