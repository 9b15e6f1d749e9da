"""Bundle archives: open a ``.tar.gz`` safely, and pack a bundle into a byte-identical, optionally slim one.

Opening reads every member header first, under caps (:class:`ArchiveLimits`: members, bytes per file, bytes in
total — the decompressed stream itself is capped too, so a decompression bomb stops at the cap). It then reads the
manifest member, checks the signature when a public key is given, and matches the members against the manifest:
only plain files and folders, only names the manifest lists (an unlisted file is refused in strict mode and never
written otherwise), each with the size the manifest records. Only then is anything written, into a fresh temporary
folder, each file hashed while it is written and stopped at its recorded size.

Packing writes the manifest first, then the listed files in sorted order, with fixed owners, modes and times and a
gzip header without a time or name, so the same bundle always gives the same bytes.
"""

from __future__ import annotations

import bz2
import datetime as _dt
import gzip
import hashlib
import io
import lzma
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .bundle import Bundle, fsync_dir, open_bundle, open_listed
from .errors import (
    ArchiveLimitError,
    ArtifactNotFoundError,
    BundleError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    OutputPathError,
    UnknownNameError,
    UnlistedFileError,
    UnsafePathError,
)
from .manifest import FORMATS, MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, check_relative_path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps checked against the tar headers before anything is written (and enforced while writing)."""

    max_members: int = 10_000
    max_file_bytes: int = 4 * 2**30
    max_total_bytes: int = 8 * 2**30

    def __post_init__(self) -> None:
        for name in ("max_members", "max_file_bytes", "max_total_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"ArchiveLimits.{name} must be a positive integer, got {v!r}")


DEFAULT_LIMITS = ArchiveLimits()


class _Capped:
    """A read/seek/tell view of a (decompressed) stream that refuses to go past ``limit`` bytes."""

    max_read = 64 * 2**20  # one read: a header block, a pax/long-name record, a data chunk, the manifest

    def __init__(self, raw: Any, limit: int, what: str) -> None:
        self.raw, self.limit, self.what = raw, limit, what

    def _refuse(self) -> ArchiveLimitError:
        return ArchiveLimitError(f"{self.what}: decompresses to more than {self.limit} bytes of headers and data; "
                                 "refusing it (a decompression bomb, or pass larger ArchiveLimits)")

    def read(self, n: int = -1) -> bytes:
        pos = self.raw.tell()
        if n is None or n < 0:
            n = self.limit - pos + 1
        if pos + n > self.limit:
            raise self._refuse()
        if n > self.max_read:
            raise ArchiveLimitError(f"{self.what}: a header or record of {n} bytes; refusing it (corrupt or hostile)")
        return self.raw.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0 and offset > self.limit:
            raise self._refuse()
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _decompressor(f: BinaryIO) -> Any:
    magic = f.read(6)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(f, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(f, "rb")
    return f


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError, UnicodeError)


def _member_rel(archive: Path, m: tarfile.TarInfo) -> str:
    name = m.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if m.isdir() else name
    try:
        return check_relative_path(name)
    except UnsafePathError:
        raise UnsafePathError(f"{archive}: member {m.name[:120]!r} is not a plain relative path inside the bundle "
                              "(absolute, '..', or odd characters); refusing the archive") from None


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "a symbolic link"
    if m.islnk():
        return "a hard link"
    if m.ischr() or m.isblk():
        return "a device"
    if m.isfifo():
        return "a fifo"
    if m.issparse():
        return "a sparse file"
    return f"of tar type {m.type!r}"


def _scan(archive: Path, tar: tarfile.TarFile, limits: ArchiveLimits) -> list[tuple[str, tarfile.TarInfo]]:
    """Every member's header, checked against the caps and for type/name, before any data is read."""
    found: list[tuple[str, tarfile.TarInfo]] = []
    seen: set[str] = set()
    total = 0
    for m in tar:
        if len(found) >= limits.max_members:
            raise ArchiveLimitError(f"{archive}: more than {limits.max_members} members; refusing it")
        if m.name in (".", "./"):
            continue
        rel = _member_rel(archive, m)
        if m.isdir():
            continue
        if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise UnsafePathError(f"{archive}: member {rel!r} is {_kind(m)}; a bundle archive holds plain files "
                                  "and folders only")
        if rel in seen:
            raise UnsafePathError(f"{archive}: member {rel!r} appears twice; an archive must be unambiguous")
        seen.add(rel)
        if m.size > limits.max_file_bytes:
            raise ArchiveLimitError(f"{archive}: member {rel!r} declares {m.size} bytes, more than the "
                                    f"{limits.max_file_bytes} allowed per file; refusing it before writing anything")
        total += m.size
        if total > limits.max_total_bytes:
            raise ArchiveLimitError(f"{archive}: members declare more than {limits.max_total_bytes} bytes in total; "
                                    "refusing it before writing anything")
        found.append((rel, m))
    return found


def _split_root(archive: Path, members: list[tuple[str, tarfile.TarInfo]]) -> tuple[str, tarfile.TarInfo]:
    manifests = [(rel, m) for rel, m in members
                 if rel == MANIFEST_NAME or (rel.count("/") == 1 and rel.endswith("/" + MANIFEST_NAME))]
    if not manifests:
        raise ManifestError(f"{archive}: no manifest.json at the top (or in one top folder); not a bundle archive")
    if len(manifests) > 1:
        raise ManifestError(f"{archive}: several manifest.json files ({[r for r, _ in manifests]}); ambiguous")
    rel, m = manifests[0]
    return rel[: -len(MANIFEST_NAME)], m


def open_archive(path: str | os.PathLike[str], strict: bool = True, *, public_key: Any = None,
                 limits: ArchiveLimits | None = None) -> Bundle:
    """Verify and extract a bundle archive into a private temporary folder (removed with the Bundle)."""
    archive = Path(path)
    limits = limits or DEFAULT_LIMITS
    cap = limits.max_total_bytes + limits.max_members * 1536 + (1 << 20)
    try:
        f = open(archive, "rb")
    except OSError as exc:
        raise BundleError(f"{archive}: cannot open it ({exc.strerror})") from None
    tmp: str | None = None
    try:
        with f:
            try:
                stream = _Capped(_decompressor(f), cap, str(archive))
                tar = tarfile.open(fileobj=stream, mode="r:")  # type: ignore[call-overload]
                members = _scan(archive, tar, limits)
                prefix, mm = _split_root(archive, members)
                if mm.size > MAX_MANIFEST_BYTES:
                    raise ManifestError(f"{archive}: manifest.json is larger than {MAX_MANIFEST_BYTES} bytes")
                manifest_bytes = _read_member(tar, mm)
            except (ArchiveLimitError, BundleError):
                raise
            except _READ_ERRORS as exc:
                raise BundleError(f"{archive}: not a readable bundle archive ({type(exc).__name__}: {exc}); "
                                  "download it again") from None
            manifest = Manifest.from_json(manifest_bytes)
            if public_key is not None:
                from .signing import verify_manifest_signature

                verify_manifest_signature(manifest, public_key)
            plan = _plan(archive, members, prefix, manifest, strict)
            tmp = tempfile.mkdtemp(prefix="edgecart-bundle-")
            root = Path(tmp)
            _write_new(root / MANIFEST_NAME, manifest_bytes)
            try:
                for rel, m in plan:
                    _extract(tar, m, root, rel, manifest)
            except (ArchiveLimitError, BundleError):
                raise
            except _READ_ERRORS as exc:
                raise BundleError(f"{archive}: not a readable bundle archive ({type(exc).__name__}: {exc}); "
                                  "download it again") from None
        return Bundle(root.resolve(), manifest, _tmp=tmp)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    fo = tar.extractfile(m)
    if fo is None:
        raise BundleError(f"member {m.name!r} cannot be read")
    return fo.read(m.size + 1)


def _plan(archive: Path, members: list[tuple[str, tarfile.TarInfo]], prefix: str, manifest: Manifest,
          strict: bool) -> list[tuple[str, tarfile.TarInfo]]:
    """Which members to extract, and where: listed files only, with the recorded sizes. Nothing written yet."""
    listed = {e.path: e for e in manifest.files}
    plan: list[tuple[str, tarfile.TarInfo]] = []
    for name, m in members:
        rel = name[len(prefix):] if name.startswith(prefix) else None
        if rel == MANIFEST_NAME:
            continue
        entry = listed.get(rel) if rel is not None else None
        if entry is None:
            if strict:
                raise UnlistedFileError(f"{archive}: member {name!r} is not in the bundle's manifest; refusing the "
                                        "archive (open with strict=False / --lenient to skip such members)")
            continue
        if m.size != entry.bytes:
            raise IntegrityError(f"{archive}: {rel} holds {m.size} bytes, the manifest says {entry.bytes}; the "
                                 "archive is corrupt — download it again")
        plan.append((entry.path, m))
    missing = sorted(set(listed) - {rel for rel, _ in plan})
    if missing:
        raise MissingFileError(f"{archive}: {missing[0]} is listed in the manifest but not in the archive"
                               f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; the archive is "
                               "incomplete — download it again")
    return plan


def _write_new(dst: Path, data: bytes) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, root: Path, rel: str, manifest: Manifest) -> None:
    entry = manifest.file(rel)
    dst = root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = tar.extractfile(m)
    if src is None:
        raise BundleError(f"member {m.name!r} cannot be read")
    h = hashlib.sha256()
    written = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > entry.bytes:
                raise IntegrityError(f"{rel}: the archive holds more than the {entry.bytes} bytes the manifest "
                                     "records; refusing it")
            h.update(chunk)
            out.write(chunk)
    if written != entry.bytes:
        raise IntegrityError(f"{rel}: the archive holds {written} bytes, the manifest says {entry.bytes}; the archive "
                             "is truncated — download it again")
    if h.hexdigest() != entry.sha256:
        raise IntegrityError(f"{rel}: sha256 {h.hexdigest()[:12]}… differs from the manifest's {entry.sha256[:12]}…; "
                             "the archive is corrupt — download it again (a sha256 check catches corruption, not "
                             "deliberate edits: check signed bundles with a public key)")


# --- packing --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_bundle` wrote: the archive, its manifest, and notes for the user (e.g. a dropped signature)."""

    path: Path
    manifest: Manifest
    bytes: int
    sha256: str
    notes: tuple[str, ...] = ()


def slim_manifest(manifest: Manifest, formats: Sequence[str]) -> Manifest:
    """``manifest`` with only the artifacts of ``formats`` and the files they (and nothing else) need; unsigned."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UnknownNameError(f"format {unknown[0] if unknown else ''!r} is not known; known formats: "
                               f"{', '.join(FORMATS)}")
    keep = tuple(a for a in manifest.artifacts if a.format in formats)
    if not keep:
        have = sorted({a.format for a in manifest.artifacts})
        raise ArtifactNotFoundError(f"bundle {manifest.name!r} has no artifact in {list(formats)}; it has {have}")
    kept = {p for a in keep for p in (a.path, *a.side_files)}
    dropped = {p for a in manifest.artifacts if a not in keep for p in (a.path, *a.side_files)} - kept
    files = tuple(f for f in manifest.files if f.path not in dropped)
    return manifest.replace(artifacts=keep, files=files, signature=None)


def _mtime(manifest: Manifest) -> int:
    try:
        t = _dt.datetime.fromisoformat(manifest.created_at)
    except ValueError:
        return 0
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return max(0, int(t.timestamp()))


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        self.n += len(b)
        return b


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>staging|old|partial)-(?P<pid>\d+)(?:-[A-Za-z0-9_-]+)?$")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def stale_leftovers(parent: Path, name: str) -> list[tuple[str, Path]]:
    """(kind, path) of ``.NAME.staging-PID-*`` / ``.NAME.old-PID-*`` / ``.NAME.partial-PID-*`` entries in ``parent``
    whose process is gone (a killed export or pack)."""
    found = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for e in entries:
        m = _LEFTOVER.match(e.name)
        if m and m["name"] == name and not pid_alive(int(m["pid"])):
            found.append((m["kind"], Path(e.path)))
    return found


def remove_path(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    else:
        shutil.rmtree(p, ignore_errors=True)


def refuse_output_inside(dest: Path, bundle_root: Path | None, *, kind: str) -> None:
    """Raise :class:`OutputPathError` when ``dest`` lies inside ``bundle_root`` (writing there would change or break
    the bundle being read), or when ``dest`` exists as the other kind (``"file"`` or ``"folder"``)."""
    where = dest.resolve()
    if bundle_root is not None:
        root = bundle_root.resolve()
        if where == root or root in where.parents:
            raise OutputPathError(f"{dest}: inside the bundle {root} it is made from; writing there would change or "
                                  "break that bundle: choose a path outside it")
    if kind == "file" and where.is_dir():
        raise OutputPathError(f"{dest} is a folder; give the file's own path (e.g. {dest / 'bundle.tar.gz'})")
    if kind == "folder" and where.exists() and not where.is_dir():
        raise OutputPathError(f"{dest} is a file, not a folder; give a folder path")


def enclosing_bundle(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that holds a bundle manifest (None when there is none)."""
    p = path.absolute()
    for folder in (p, *p.parents):
        if (folder / MANIFEST_NAME).is_file():
            return folder
    return None


def unique_sibling(dest: Path, kind: str) -> Path:
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def pack_bundle(bundle: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *,
                formats: Sequence[str] | None = None, private_key: Any = None, public_key: Any = None) -> PackResult:
    """Verify ``bundle`` and write it as a deterministic ``.tar.gz`` (one top folder named after the bundle folder).

    ``formats``: keep only those formats' artifacts (a slim archive whose manifest lists just what it holds).
    ``private_key``: sign the packed manifest. Without one, a slim archive drops the (then invalid) signature.
    ``public_key``: refuse to pack a bundle that is not signed by this key.
    """
    src = Path(bundle).resolve()  # '.' or '..' name no folder: the archive's top folder comes from the real one
    b = open_bundle(src, strict=True, public_key=public_key)
    manifest, notes = b.manifest, []
    top = src.name if src.is_dir() else manifest.name
    if formats:
        slim = slim_manifest(manifest, list(formats))
        if manifest.signature is not None and private_key is None:
            notes.append("the slim manifest differs from the signed one, so the archive is unsigned; pass a private "
                         "key (--key) to sign it")
        manifest = slim
    if private_key is not None:
        from .signing import sign_manifest

        manifest = sign_manifest(manifest, private_key)
    if dest is None:
        suffix = f".{'-'.join(sorted(set(formats)))}" if formats else ""
        dest = src.with_name(f"{top}{suffix}.tar.gz") if src.is_dir() else src.with_name(f"{top}{suffix}.packed.tar.gz")
    dest = Path(dest).absolute()
    refuse_output_inside(dest, src if src.is_dir() else None, kind="file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for _kind_name, p in stale_leftovers(dest.parent, dest.name):
        remove_path(p)
    tmp = unique_sibling(dest, "partial")
    mtime = _mtime(manifest)
    try:
        with open(tmp, "xb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                with tarfile.open(fileobj=gz, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                    data = manifest.to_json().encode("utf-8")
                    tar.addfile(_info(f"{top}/{MANIFEST_NAME}", len(data), mtime), io.BytesIO(data))
                    for entry in sorted(manifest.files, key=lambda e: e.path):
                        with open_listed(b.root, entry.path) as f:
                            reader = _HashingReader(f)
                            tar.addfile(_info(f"{top}/{entry.path}", entry.bytes, mtime), reader)  # type: ignore
                            if reader.n != entry.bytes or reader.h.hexdigest() != entry.sha256:
                                raise IntegrityError(f"{entry.path}: changed while it was being packed; pack again")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return PackResult(dest, manifest, dest.stat().st_size, h.hexdigest(), tuple(notes))


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, mtime, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti
