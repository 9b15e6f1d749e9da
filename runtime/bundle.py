"""Open and verify a bundle: every listed file present with the recorded size and sha256, nothing else there."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import weakref
from pathlib import Path

import numpy as np

from .errors import (
    BundleError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    UnlistedFileError,
    UnsafePathError,
)
from .manifest import MANIFEST_NAME, Manifest, check_relative_path

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Bundle:
    """A verified bundle directory. Only files the manifest lists can be opened through it."""

    def __init__(self, root: Path, manifest: Manifest, _tmp: str | None = None) -> None:
        self.root = root
        self.manifest = manifest
        if _tmp is not None:  # extracted from a .tar.gz: removed with this object
            self._cleanup = weakref.finalize(self, shutil.rmtree, _tmp, True)

    def path(self, rel: str) -> Path:
        """Absolute path of a listed file."""
        self.manifest.file(check_relative_path(rel))
        return self.root / rel

    def read_bytes(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def load_npy(self, rel: str) -> np.ndarray:
        try:
            return np.load(self.path(rel), allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise BundleError(f"{rel}: not a readable .npy array ({exc}); re-export the bundle") from None

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({str(self.root)!r}, name={m.name!r}, version={m.version!r}, task={m.task!r})"


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Parse ``root/manifest.json`` without checking the files."""
    mpath = Path(root) / MANIFEST_NAME
    if not Path(root).is_dir():
        raise BundleError(f"{root}: not a bundle directory (or .tar.gz); pass the folder an export wrote")
    if not mpath.is_file() or mpath.is_symlink():
        raise ManifestError(f"{root}: no manifest.json; this is not a bundle, or it was truncated — re-export it")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{mpath}: larger than {MAX_MANIFEST_BYTES} bytes; refusing to parse it")
    return Manifest.from_json(mpath.read_bytes())


def verify(root: str | os.PathLike[str], strict: bool = True) -> Manifest:
    """Check every file the manifest lists (inside the bundle, regular, size, sha256).

    With ``strict`` a file the manifest does not list is refused too. Returns the manifest.
    """
    root = Path(root).resolve()
    manifest = read_manifest(root)
    for entry in manifest.files:
        p = root / entry.path
        if p.is_symlink() or (p.exists() and not p.resolve().is_relative_to(root)):
            raise UnsafePathError(f"{entry.path}: is a link; bundles hold plain files only — re-export the bundle")
        if not p.is_file():
            raise MissingFileError(f"{entry.path}: listed in the manifest but missing; the bundle is incomplete — "
                                   "copy it again or re-export it")
        size = p.stat().st_size
        if size != entry.bytes:
            raise IntegrityError(f"{entry.path}: {size} bytes, the manifest says {entry.bytes}; the file is truncated "
                                 "or was replaced — copy the bundle again or re-export it")
        digest = sha256_file(p)
        if digest != entry.sha256:
            raise IntegrityError(f"{entry.path}: sha256 {digest[:12]}… differs from the manifest's "
                                 f"{entry.sha256[:12]}…; the file is corrupt or was tampered with — re-export it")
    if strict:
        listed = {e.path for e in manifest.files} | {MANIFEST_NAME}
        for dirpath, _dirs, names in os.walk(root):
            for n in names:
                rel = Path(dirpath, n).relative_to(root).as_posix()
                if rel not in listed:
                    raise UnlistedFileError(f"{rel}: in the bundle but not in its manifest; remove it, or open with "
                                            "strict=False if you added it on purpose")
    return manifest


def open_bundle(path: str | os.PathLike[str], strict: bool = True) -> Bundle:
    """Verify and open a bundle directory or a ``.tar.gz`` of one."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{p}: no such bundle; pass the directory (or .tar.gz) an export wrote")
    if p.is_file():
        return _open_archive(p, strict)
    manifest = verify(p, strict=strict)
    return Bundle(p.resolve(), manifest)


def _open_archive(p: Path, strict: bool) -> Bundle:
    tmp = tempfile.mkdtemp(prefix="edgecart-bundle-")
    try:
        try:
            with tarfile.open(p, "r:*") as tar:
                members = tar.getmembers()
                for m in members:
                    if not (m.isfile() or m.isdir()):
                        raise UnsafePathError(f"{p}: member {m.name!r} is not a plain file or folder")
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"{p}: not a readable bundle archive ({exc}); download it again") from None
        entries = os.listdir(tmp)
        root = Path(tmp)
        if MANIFEST_NAME not in entries and len(entries) == 1 and (root / entries[0]).is_dir():
            root = root / entries[0]
        manifest = verify(root, strict=strict)
        return Bundle(root.resolve(), manifest, _tmp=tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
