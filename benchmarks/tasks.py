"""Task-level figures, worker side: what an app calls, end to end, beside the model alone, in one process.

``search``: a uint8 picture (the model's size and colour, seeded noise) -> top-10 through
:class:`edgecart.runtime.ImageSearch`; levels ``task`` (``ImageSearch.search``, all of it), ``preprocess``
(uint8 -> model input), ``model`` (``Session.run`` on that input), ``scoring`` (catalog scores + top-10 + hits).
``recommend``: a shopper's history (the last ``max_len`` of a seeded walk over the bundle's items) -> top-10 through
:class:`edgecart.runtime.Recommender`; levels ``task`` (``Recommender.recommend``) and ``model`` (``Session.run`` on
the bundle's golden input).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .remote_runner import import_engine

TASK_LEVELS = ("task", "preprocess", "model", "scoring")
K = 10


class TaskTarget:
    """A loaded ImageSearch or Recommender plus a callable per level (same interface as ``worker.Target``)."""

    def __init__(self, task: str, bundle: str, backend: str, artifact: str | None, precision: str | None,
                 threads: int | None, options: dict[str, str] | None = None, check_finite: bool = True) -> None:
        from edgecart.runtime import open_bundle

        t0 = time.perf_counter()
        import_engine(backend)
        self.import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = open_bundle(Path(bundle))
        self.verify_s = time.perf_counter() - t0
        self.task = task
        t0 = time.perf_counter()
        if task == "search":
            self._search(b, backend, artifact, precision, threads)
        elif task == "recommend":
            self._recommend(b, backend, artifact, precision, threads)
        else:
            raise ValueError(f"task {task!r} is not one of ('search', 'recommend')")
        self.load_s = time.perf_counter() - t0
        if options or not check_finite:
            raise ValueError("task-level jobs run sessions as apps load them (no backend options, finite check on)")

    def _search(self, b: Any, backend: str, artifact: str | None, precision: str | None,
                threads: int | None) -> None:
        from edgecart.runtime import ImageSearch
        from edgecart.runtime.preprocess import preprocess

        s = ImageSearch(b, backend, threads, artifact=artifact, precision=precision)
        self.app, self.session = s, s.session
        pre = s.preprocessing
        h, w = pre.size
        shape = (h, w) if pre.color == "grayscale" else (h, w, 3)
        picture = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        x = preprocess(picture, pre)
        emb = s.embed_input(x)
        self.inputs = f"uint8 picture {'x'.join(map(str, shape))} (seeded noise), top-{K} of {len(s.catalog)} items"
        self.extra = {"catalog_items": len(s.catalog), "catalog_precision": s.catalog.precision,
                      "scoring_path": s.catalog.scoring_path, "scoring_mb": round(s.catalog.scoring_bytes / 2**20, 2),
                      "approximate": s.approximate}
        self.levels: dict[str, Callable[[int], Any]] = {
            "task": lambda i: s.search(picture, K),
            "preprocess": lambda i: preprocess(picture, pre),
            "model": lambda i: s.session.run(x),
            "scoring": lambda i: s.search_embedding(emb, K),
        }

    def _recommend(self, b: Any, backend: str, artifact: str | None, precision: str | None,
                   threads: int | None) -> None:
        from edgecart.runtime import Recommender

        r = Recommender(b, backend, threads, artifact=artifact, precision=precision)
        self.app, self.session = r, r.session
        m = b.manifest
        items = b.load_npy(m.catalog["items"])
        n = int(getattr(m.preprocessing, "max_len", 0) or 20)
        rng = np.random.default_rng(0)
        history = [x.item() if isinstance(x, np.generic) else x for x in items[rng.integers(0, len(items), n)]]
        if m.golden is None:
            from edgecart.runtime.errors import BundleError

            raise BundleError(f"bundle {m.name!r} carries no golden inputs; the model level needs them")
        feed = {k: b.load_npy(p)[0] for k, p in m.golden.inputs.items()}
        self.inputs = f"history of {n} known items (seeded), top-{K} of {len(items)} items, exclude_seen"
        self.extra = {"catalog_items": int(len(items))}
        self.levels = {"task": lambda i: r.recommend(history, K),
                       "model": lambda i: r.session.run(feed)}

    def describe(self) -> dict[str, Any]:
        s = self.session
        a, m = s.artifact, s.manifest
        return {"bundle": {"name": m.name, "version": m.version, "task": m.task}, "artifact": a.name,
                "format": a.format, "precision": a.precision, "delegate": a.delegate, "backend": s.backend.name,
                "file_bytes": m.artifact_bytes(a), "quality": dict(a.quality), "parity": None, "inputs": self.inputs,
                "levels": [lvl for lvl in TASK_LEVELS if lvl in self.levels], "providers": None, "task": self.task,
                **self.extra}


__all__ = ["K", "TASK_LEVELS", "TaskTarget"]
