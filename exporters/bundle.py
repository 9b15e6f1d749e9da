"""Write a bundle: files staged in a temporary folder beside the destination, renamed into place on commit.

An interrupted export leaves no half bundle: the destination appears only when ``commit`` succeeds.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.bundle import Bundle, sha256_file
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


class BundleWriter:
    """Collects files and artifacts in a staging folder, then commits them atomically as ``out``."""

    def __init__(self, out: str | os.PathLike[str], *, name: str, version: str, task: str,
                 inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                 preprocessing: Preprocessing | None = None, overwrite: bool = False) -> None:
        self.out = Path(out).absolute()
        if self.out.exists() and not overwrite:
            raise BundleError(f"{self.out} already exists; choose another --out or pass overwrite=True")
        if self.out.exists() and not self.out.is_dir():
            raise BundleError(f"{self.out} exists and is not a directory; choose another --out")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=self.out.parent))
        self._files: dict[str, FileEntry] = {}
        self._artifacts: dict[str, Artifact] = {}
        self._golden: Golden | None = None
        self.meta: dict[str, Any] = dict(name=name, version=version, task=task, inputs=tuple(inputs),
                                         outputs=tuple(outputs), preprocessing=preprocessing)
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.staging, 0o777 & ~umask)  # mkdtemp made it private; a bundle is meant to be shared
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.staging, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
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


def pack(bundle_dir: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<bundle>.tar.gz`` (or ``dest``) holding the bundle folder, plain files only."""
    src = Path(bundle_dir)
    dest = Path(dest) if dest else src.with_name(src.name + ".tar.gz")
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=f"{src.name}/{p.relative_to(src).as_posix()}", recursive=False)
    os.replace(tmp, dest)
    return dest
