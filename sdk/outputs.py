"""Output folders of the builds, checked before any work: a file in the way, a folder that cannot be written, or a
``bundle`` folder that is not an edgecart bundle is refused up front (not after minutes of training), with the
folders the check made removed again when the build stops before it starts. Shared by ``edgecart build
recommendations``, ``image-search`` and ``text``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgecart.runtime.errors import EdgecartError


class BuildOutputError(EdgecartError, OSError):
    """``--out`` (or ``--cache``) cannot take the build's files: a file stands there, the folder cannot be written, or
    its ``bundle`` folder is not an edgecart bundle that may be replaced."""


def check_out(out: Path, cache: Path | None, bundle: str = "bundle") -> list[Path]:
    """Refuse, before anything is read or trained, an ``out`` (or ``cache``) the build could not write: a file
    standing there (or above it), a folder that cannot be written (read-only mount, no permission), or an
    ``out/<bundle>`` that is not an edgecart bundle (the build replaces a bundle there, and would delete anything
    else). Makes the folders and probes each with a temporary file; returns the folders it made (outermost first),
    for :func:`remove_made` should the build stop before it starts."""
    made: list[Path] = []
    for folder, flag in ((out, "--out"), (cache, "--cache")):
        if folder is not None:
            try:
                made += writable_folder(folder, flag)
            except BuildOutputError:
                remove_made(made)
                raise
    b = out / bundle
    if b.is_symlink() or (b.exists() and not (b.is_dir() and (b / "manifest.json").is_file())):
        remove_made(made)
        raise BuildOutputError(f"--out {out}: {b} is not an edgecart bundle (no manifest.json), and the build would "
                               "replace it, deleting it; move it away or choose another --out")
    from edgecart.exporters.bundle import some_paths, unlisted_files  # here: bench's --out check needs no exporter

    extra = unlisted_files(b) if b.is_dir() else []
    if extra:
        remove_made(made)
        shown = some_paths(extra)
        raise BuildOutputError(f"--out {out}: the bundle {b} holds {len(extra)} file(s) its manifest does not list "
                               f"({shown}), which the build's new bundle would delete; move them out of {b} first, "
                               "or choose another --out")
    return made


def writable_folder(folder: Path, flag: str) -> list[Path]:
    """Make ``folder`` (and missing parents) and probe it with a temporary file; a file in the way or a folder that
    cannot be written is a :class:`BuildOutputError` naming ``flag``. Returns the folders made, outermost first."""
    missing = []
    p = folder
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        what = "a broken link" if p.is_symlink() and not p.exists() else "a file, not a folder"
        raise BuildOutputError(f"{flag} {folder}: {p} is {what}; choose another {flag}")
    made: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
        fd, probe = tempfile.mkstemp(prefix=".edgecart-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        remove_made(made)
        raise BuildOutputError(f"{flag} {folder}: cannot write into it ({exc.strerror or exc}); choose another "
                               f"{flag} on a writable disk, or make it writable") from None
    return made


def remove_made(made: list[Path]) -> None:
    """Remove the folders :func:`check_out` made, innermost first, where they are still empty."""
    for d in reversed(made):
        try:
            d.rmdir()
        except OSError:
            pass


__all__ = ["BuildOutputError", "check_out", "remove_made", "writable_folder"]
