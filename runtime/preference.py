"""Which backend ``backend="auto"`` tries first, per platform.

A bundle may record, in the manifest's optional ``backend_preference``, the backends measured fastest on each
platform (``platform.machine()``, normalised: ``x86_64``, ``aarch64``), for the artifact ``auto`` would open on each
backend (its best precision: int8, then fp16, then fp32)::

    "backend_preference": {"x86_64": ["litert", "onnxruntime", "executorch"],
                           "measured": {"x86_64": {"p50_ms": {"litert": 0.21, ...}, "how": "...", "at": "..."}}}

``auto`` follows the list for the current platform when the bundle has one; backends the list leaves out come after
it in the default order. Without a list for the platform, the **default order** is :data:`DEFAULT_ORDER`
(LiteRT, ONNX Runtime, ExecuTorch: the engines that need only numpy first, the fastest measured first); on each, the
int8 artifact (it passed the quality gate) before fp32.
``edgecart prefer BUNDLE`` measures and records it as a new bundle version (``record_preference`` here writes it).
"""

from __future__ import annotations

import os
import platform as _platform
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends import AUTO_ORDER, BACKENDS
from .errors import ManifestError
from .manifest import MANIFEST_NAME, Manifest

DEFAULT_ORDER: tuple[str, ...] = tuple(AUTO_ORDER)
MEASURED = "measured"
_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64", "armv8": "aarch64",
            "armv8l": "aarch64"}


def platform_key(machine: str | None = None) -> str:
    """``platform.machine()`` (or ``machine``) normalised: AMD64/x64 -> x86_64, arm64 -> aarch64."""
    m = (machine if machine is not None else _platform.machine()).strip().lower()
    return _ALIASES.get(m, m)


_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")


def _check_platform(plat: Any) -> None:
    if plat == MEASURED or not isinstance(plat, str) or not _PLATFORM.fullmatch(plat):
        raise ManifestError(f"backend_preference: platform {plat!r} is not a machine name; name the device's "
                            "platform.machine(), e.g. x86_64 or aarch64 (--platform)")


def preferred_order(manifest: Manifest, machine: str | None = None) -> tuple[str, ...]:
    """The backend names ``auto`` tries, in order, for this platform (or ``machine``)."""
    pref = getattr(manifest, "backend_preference", None)
    order = pref.get(platform_key(machine)) if isinstance(pref, Mapping) else None
    if not isinstance(order, list):
        return DEFAULT_ORDER
    named = [n for n in order if isinstance(n, str) and n in BACKENDS]
    return tuple(dict.fromkeys([*named, *DEFAULT_ORDER]))


def check_preference(pref: Mapping[str, Any]) -> None:
    """Raise ManifestError unless ``pref`` maps platform names to lists of known backend names (+ ``measured``)."""
    if not isinstance(pref, Mapping):
        raise ManifestError("backend_preference must be an object: platform -> [backend, ...]")
    for plat, order in pref.items():
        if plat == MEASURED:
            if not isinstance(order, Mapping):
                raise ManifestError("backend_preference.measured must be an object: platform -> how it was measured")
            continue
        _check_platform(plat)
        if not isinstance(order, list) or not order or len(set(order)) != len(order):
            raise ManifestError(f"backend_preference.{plat} must be a non-empty list of distinct backend names")
        unknown = [n for n in order if n not in BACKENDS]
        if unknown:
            raise ManifestError(f"backend_preference.{plat}: unknown backends {unknown}; known: {list(BACKENDS)}")


def bump_version(version: str) -> str:
    """0.1.0 -> 0.1.1; a version whose last part is not a number gets ``.1`` appended."""
    head, _, last = version.rpartition(".")
    if last.isdigit():
        return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
    return f"{version}.1"


def with_preference(manifest: Manifest, order: Sequence[str], *, machine: str | None = None,
                    measured: Mapping[str, Any] | None = None, version: str | None = None) -> Manifest:
    """A copy of ``manifest`` that prefers ``order`` on ``machine`` (default: this platform), as a new version.
    A signature no longer covers the changed manifest and is dropped (sign the new version again)."""
    plat = platform_key(machine)
    _check_platform(plat)
    pref = dict(manifest.backend_preference or {})
    pref[plat] = list(order)
    if measured is not None:
        pref[MEASURED] = {**dict(pref.get(MEASURED) or {}), plat: dict(measured)}
    check_preference(pref)
    return manifest.replace(backend_preference=pref, version=version or bump_version(manifest.version),
                            signature=None)


def record_preference(bundle: str | os.PathLike[str], order: Sequence[str], *, machine: str | None = None,
                      measured: Mapping[str, Any] | None = None, out: str | os.PathLike[str] | None = None,
                      version: str | None = None) -> tuple[Path, Manifest]:
    """Write the bundle with ``order`` recorded for ``machine`` as a new version: into ``out`` (a new folder) or in
    place (atomically: a verified copy replaces the folder). Returns the path and the new manifest."""
    from .bundle import open_bundle, verify

    src = Path(bundle)
    old = open_bundle(src)  # verified before anything is written
    new = with_preference(old.manifest, order, machine=machine, measured=measured, version=version)
    dest = Path(out) if out is not None else src
    if out is not None:
        from .archive import refuse_output_inside

        refuse_output_inside(dest, src, kind="folder")
    if out is not None and dest.exists():
        raise ManifestError(f"{dest} already exists; choose another --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pref-", dir=dest.parent))
    try:
        for f in old.manifest.files:
            p = staging / f.path
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(old.path(f.path), p)
        (staging / MANIFEST_NAME).write_text(new.to_json(), encoding="utf-8")
        verify(staging)  # every hash checked again against the rewritten manifest
        os.chmod(staging, 0o755)
        if dest.exists():
            trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, trash)
            os.replace(staging, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest, new


__all__ = ["DEFAULT_ORDER", "bump_version", "check_preference", "platform_key", "preferred_order",
           "record_preference", "with_preference"]
