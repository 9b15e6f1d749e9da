"""A cache for the fine-tuned teacher and its embeddings, keyed by a hash of the configuration that made them.

Layout: ``<cache>/vision/teacher-<key>.pt`` (a state dict, read back with ``weights_only=True``),
``<cache>/vision/embeddings-<key>.npz`` (plain arrays, no pickle) and a ``.json`` beside each with the config and
timings. Writes are atomic (temporary file, then rename), so an interrupted run leaves no half entry.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class VisionCache:
    """Teacher weights and embeddings under ``root/vision``; ``root=None`` disables caching."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.dir = Path(root) / "vision" if root is not None else None

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        if self.dir is None:
            raise RuntimeError("the cache is disabled (root=None)")
        return self.dir / f"{kind}-{key}{suffix}"

    def load_teacher(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(state dict, info) of a cached teacher, or None."""
        if not self.enabled:
            return None
        p, meta = self._path("teacher", key, ".pt"), self._path("teacher", key, ".json")
        if not (p.is_file() and meta.is_file()):
            return None
        import torch

        try:
            return torch.load(p, map_location="cpu", weights_only=True), json.loads(meta.read_text())
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError):
            return None  # a damaged entry is rebuilt

    def save_teacher(self, key: str, state: dict[str, Any], info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        import torch

        self._atomic(self._path("teacher", key, ".pt"), lambda f: torch.save(state, f))
        self._atomic(self._path("teacher", key, ".json"), lambda f: f.write(json.dumps(info, indent=2).encode()))

    def load_embeddings(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        if not self.enabled:
            return None
        p, meta = self._path("embeddings", key, ".npz"), self._path("embeddings", key, ".json")
        if not (p.is_file() and meta.is_file()):
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, json.loads(meta.read_text())
        except (OSError, ValueError, EOFError):
            return None

    def save_embeddings(self, key: str, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._atomic(self._path("embeddings", key, ".npz"), lambda f: np.savez(f, **arrays))
        self._atomic(self._path("embeddings", key, ".json"), lambda f: f.write(json.dumps(info, indent=2).encode()))

    def _atomic(self, dest: Path, write: Any) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
