"""Open and verify a bundle: every listed file present with the recorded size and sha256, nothing else there.

Files are opened without following links (every folder on the way too), must be plain, single-linked files, and are
hashed from the same open file. :meth:`Bundle.read_verified` reads a file once, checks those bytes against the
manifest and returns them, so what an engine gets is exactly what was checked.

Without a signature, verification proves the files are the ones the manifest lists — it catches accidental
corruption, not deliberate tampering (the manifest's hashes can be rewritten too). Give a ``public_key`` to refuse
bundles that are unsigned or not signed by that key (see :mod:`edgecart.runtime.signing`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

from .errors import (
    BundleError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    UnlistedFileError,
    UnsafePathError,
)
from .manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, FileEntry, Manifest, check_relative_path

T = TypeVar("T")

__all__ = ["MAX_MANIFEST_BYTES", "Bundle", "open_bundle", "read_manifest", "sha256_file", "verify", "write_manifest"]

_CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FD = os.open in os.supports_dir_fd and bool(_NOFOLLOW)

INTEGRITY_NOTE = ("a sha256 check catches accidental corruption, not deliberate edits: sign bundles and load them with "
                  "a public key to detect tampering")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def open_listed(root: str | os.PathLike[str], rel: str) -> Iterator[BinaryIO]:
    """Open ``root/rel`` for reading without following a link at any step; it must be a plain single-linked file.

    Raises MissingFileError when absent, UnsafePathError for links, folders, devices, fifos and hard links.
    """
    check_relative_path(rel)
    parts = rel.split("/")
    if _DIR_FD:
        fds: list[int] = []
        try:
            fd = os.open(root, os.O_RDONLY | _DIRECTORY)
            fds.append(fd)
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if last:  # look before opening: opening a device or fifo can itself have effects
                    try:
                        _check_plain(rel, os.stat(part, dir_fd=fd, follow_symlinks=False))
                    except FileNotFoundError:
                        raise MissingFileError(f"{rel}: listed in the manifest but missing; the bundle is "
                                               "incomplete — copy it again or re-export it") from None
                flags = os.O_RDONLY | _NOFOLLOW | (_NONBLOCK if last else _DIRECTORY)
                try:
                    fd = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    raise MissingFileError(f"{rel}: listed in the manifest but missing; the bundle is incomplete — "
                                           "copy it again or re-export it") from None
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        kind = "a link" if exc.errno != errno.ENOTDIR else "not a folder"
                        raise UnsafePathError(f"{rel}: {'/'.join(parts[:i + 1])} is {kind}; bundles hold plain files "
                                              "and folders only — re-export the bundle") from None
                    raise BundleError(f"{rel}: cannot open it ({exc.strerror}); check the bundle's permissions") \
                        from None
                fds.append(fd)
            st = os.fstat(fd)
            _check_plain(rel, st)
            f = os.fdopen(os.dup(fd), "rb")
        finally:
            for d in fds:
                os.close(d)
        with f:
            yield f
        return
    # platforms without dir_fd/O_NOFOLLOW: check each step with lstat (not race-free, but refuses links)
    p = Path(root)
    for part in parts:
        p = p / part
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            raise MissingFileError(f"{rel}: listed in the manifest but missing; the bundle is incomplete") from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{rel}: {p} is a link; bundles hold plain files only — re-export the bundle")
    _check_plain(rel, st)
    with open(p, "rb") as f:
        yield f


def _check_plain(rel: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{rel}: is a link; bundles hold plain files only — re-export the bundle")
    if stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{rel}: is a folder, the manifest lists a file; re-export the bundle")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{rel}: is not a plain file (device, fifo or socket); bundles hold plain files only")
    if st.st_nlink > 1:
        raise UnsafePathError(f"{rel}: is hard-linked ({st.st_nlink} names); a linked file can change behind the "
                              "bundle's back — copy the bundle (cp -r, not cp -l) and open the copy")


def _hash_stream(f: BinaryIO, entry: FileEntry, keep: bool) -> bytes | None:
    h = hashlib.sha256()
    size = 0
    parts: list[bytes] = []
    while chunk := f.read(_CHUNK):
        size += len(chunk)
        if size > entry.bytes:
            raise IntegrityError(f"{entry.path}: larger than the {entry.bytes} bytes the manifest records; the file "
                                 "was replaced or appended to — copy the bundle again or re-export it "
                                 f"({INTEGRITY_NOTE})")
        h.update(chunk)
        if keep:
            parts.append(chunk)
    if size != entry.bytes:
        raise IntegrityError(f"{entry.path}: {size} bytes, the manifest says {entry.bytes}; the file is truncated "
                             f"or was replaced — copy the bundle again or re-export it")
    digest = h.hexdigest()
    if digest != entry.sha256:
        raise IntegrityError(f"{entry.path}: sha256 {digest[:12]}… differs from the manifest's {entry.sha256[:12]}…; "
                             f"the file is corrupt — copy the bundle again or re-export it ({INTEGRITY_NOTE})")
    return b"".join(parts) if keep else None


def check_file(root: str | os.PathLike[str], entry: FileEntry, keep: bool = False) -> bytes | None:
    """Open ``entry`` safely, check its size and sha256 from that one open file; return the bytes when ``keep``."""
    with open_listed(root, entry.path) as f:
        st = os.fstat(f.fileno())
        if st.st_size != entry.bytes:
            raise IntegrityError(f"{entry.path}: {st.st_size} bytes, the manifest says {entry.bytes}; the file is "
                                 "truncated or was replaced — copy the bundle again or re-export it")
        return _hash_stream(f, entry, keep)


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

    def read_verified(self, rel: str) -> bytes:
        """Read a listed file once, check those bytes' size and sha256 against the manifest, and return them."""
        data = check_file(self.root, self.manifest.file(check_relative_path(rel)), keep=True)
        return data if data is not None else b""

    def read_bytes(self, rel: str) -> bytes:
        return self.read_verified(rel)

    def load_npy(self, rel: str) -> np.ndarray:
        import io

        try:
            return np.load(io.BytesIO(self.read_verified(rel)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BundleError(f"{rel}: not a readable .npy array ({exc}); re-export the bundle") from None

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({str(self.root)!r}, name={m.name!r}, version={m.version!r}, task={m.task!r})"


def read_catalog_entry(bundle: Any, key: str, build: Callable[[Any], T]) -> T | None:
    """``build(manifest.catalog[key])`` for an optional catalog entry, or None when the bundle carries none; an entry
    that ``build`` cannot read (KeyError, TypeError, ValueError) is a :class:`BundleError` that names it."""
    entry = (bundle.manifest.catalog or {}).get(key)
    if entry is None:
        return None
    try:
        return build(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle {bundle.manifest.name!r}: catalog.{key} is malformed ({exc}); re-export the "
                          "bundle") from None


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Parse ``root/manifest.json`` (a plain file, not a link) without checking the other files."""
    if not Path(root).is_dir():
        raise BundleError(f"{root}: not a bundle directory (or .tar.gz); pass the folder an export wrote")
    try:
        with open_listed(root, MANIFEST_NAME) as f:
            if os.fstat(f.fileno()).st_size > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{root}/{MANIFEST_NAME}: larger than {MAX_MANIFEST_BYTES} bytes; refusing to "
                                    "parse it")
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except MissingFileError:
        raise ManifestError(f"{root}: no manifest.json; this is not a bundle, or it was truncated — re-export it") \
            from None
    except UnsafePathError as exc:
        raise ManifestError(f"{root}: manifest.json is not a plain file ({exc})") from None
    return Manifest.from_json(data)


def write_manifest(root: str | os.PathLike[str], manifest: Manifest) -> None:
    """Replace ``root/manifest.json`` atomically (write a temporary file, fsync, rename, fsync the folder)."""
    root = Path(root)
    tmp = root / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    data = manifest.to_json().encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, root / MANIFEST_NAME)
    fsync_dir(root)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder so a rename or new entry in it survives a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def verify(root: str | os.PathLike[str], strict: bool = True, public_key: Any = None) -> Manifest:
    """Check every file the manifest lists (inside the bundle, plain, size, sha256).

    With ``strict`` anything the manifest does not list is refused too (files, links, symlinked folders, devices).
    With ``public_key`` (a PEM path, PEM bytes or key object) the manifest must carry a valid signature by that key.
    Returns the manifest.
    """
    root = Path(root).resolve()
    manifest = read_manifest(root)
    if public_key is not None:
        from .signing import verify_manifest_signature

        verify_manifest_signature(manifest, public_key)
    for entry in manifest.files:
        check_file(root, entry)
    if strict:
        check_nothing_else(root, manifest)
    return manifest


def check_nothing_else(root: Path, manifest: Manifest) -> None:
    """Refuse any entry under ``root`` the manifest does not list (folders that only hold listed files are fine)."""
    listed = {e.path for e in manifest.files} | {MANIFEST_NAME}

    def unreadable(exc: OSError) -> None:
        raise BundleError(f"{exc.filename}: cannot list this folder of the bundle ({exc.strerror}); check permissions")

    for dirpath, dirs, names in os.walk(root, followlinks=False, onerror=unreadable):
        for n in sorted(dirs + names):
            p = Path(dirpath, n)
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(f"{rel}: a link in the bundle, which holds plain files only; remove it")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePathError(f"{rel}: not a plain file (device, fifo or socket); remove it")
            if rel not in listed:
                raise UnlistedFileError(f"{rel}: in the bundle but not in its manifest; remove it, or open with "
                                        "strict=False (--lenient) if you added it on purpose")


def open_bundle(path: str | os.PathLike[str], strict: bool = True, *, public_key: Any = None,
                limits: Any = None) -> Bundle:
    """Verify and open a bundle directory or a ``.tar.gz`` of one.

    ``public_key``: refuse the bundle unless it is signed by this Ed25519 key (PEM path, PEM bytes or key object).
    ``limits``: caps for archives (:class:`edgecart.runtime.archive.ArchiveLimits`).
    """
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{p}: no such bundle; pass the directory (or .tar.gz) an export wrote")
    if p.is_file():
        from .archive import open_archive

        return open_archive(p, strict=strict, public_key=public_key, limits=limits)
    manifest = verify(p, strict=strict, public_key=public_key)
    return Bundle(p.resolve(), manifest)
