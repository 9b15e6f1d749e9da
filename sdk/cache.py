"""A cache for trained models and their outputs, keyed by a hash of what made them.

Layout under ``<root>/<namespace>/``: ``<name>-<key>.pt`` (a state dict, read back with ``weights_only=True``) or
``<name>-<key>.npz`` (plain arrays, no pickle), each with a ``.json`` beside it holding the config and timings.
Writes are atomic (temporary file, then rename), so an interrupted run leaves no half entry; a damaged entry reads
as a miss and is rebuilt.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


class Cache:
    """Entries under ``root/namespace``; ``root=None`` disables caching (every load misses, saves do nothing)."""

    def __init__(self, root: str | os.PathLike[str] | None, namespace: str) -> None:
        self.dir = Path(root) / namespace if root is not None else None

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    def path(self, name: str, key: str, suffix: str) -> Path:
        if self.dir is None:
            raise RuntimeError("the cache is disabled (root=None)")
        return self.dir / f"{name}-{key}{suffix}"

    def load_state(self, name: str, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(state dict, info) of a cached model, or None."""
        if not self.enabled:
            return None
        p, meta = self.path(name, key, ".pt"), self.path(name, key, ".json")
        if not (p.is_file() and meta.is_file()):
            return None
        import torch

        try:
            return torch.load(p, map_location="cpu", weights_only=True), json.loads(meta.read_text())
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError):
            return None

    def save_state(self, name: str, key: str, state: dict[str, Any], info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        import torch

        write_atomic(self.path(name, key, ".pt"), lambda f: torch.save(state, f))
        self._save_info(name, key, info)

    def load_arrays(self, name: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(arrays, info) of a cached entry, or None."""
        if not self.enabled:
            return None
        p, meta = self.path(name, key, ".npz"), self.path(name, key, ".json")
        if not (p.is_file() and meta.is_file()):
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, json.loads(meta.read_text())
        except (OSError, ValueError, EOFError):
            return None

    def save_arrays(self, name: str, key: str, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        write_atomic(self.path(name, key, ".npz"), lambda f: np.savez(f, **arrays))
        self._save_info(name, key, info)

    def _save_info(self, name: str, key: str, info: dict[str, Any]) -> None:
        write_atomic(self.path(name, key, ".json"), lambda f: f.write(json.dumps(info, indent=2).encode()))



def write_atomic(dest: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``dest`` through ``write(file)`` into a temporary file beside it, then rename: never a half file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["Cache", "write_atomic"]
