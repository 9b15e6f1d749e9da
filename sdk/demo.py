"""The smoke path: export a tiny CNN to every format, verify the bundle, run it on every local backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SmokeRow:
    artifact: str
    backend: str
    bytes: int
    max_abs_diff: float
    cosine: float
    ms_per_run: float


def smoke(out: Path, progress: Callable[[str], None] = print) -> list[SmokeRow]:
    """Export, verify and run a tiny CNN (fixed-seed weights) as ``out/smoke``; returns one row per artifact."""
    import numpy as np
    import torch
    from edgecart.exporters import export
    from edgecart.models.tiny import TinyCNN
    from edgecart.runtime import ImagePreprocessing, available_backends, load, open_bundle
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.golden import check_golden

    torch.manual_seed(0)
    model = TinyCNN().eval()
    samples = [(torch.randn(1, 1, 28, 28),) for _ in range(4)]
    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    dest = Path(out) / "smoke"
    progress(f"smoke: exporting a {sum(p.numel() for p in model.parameters())}-parameter CNN to {dest}")
    export(model, samples[0], out=dest, preprocessing=pre, name="smoke", golden_inputs=samples, overwrite=True,
           progress=progress)
    bundle = open_bundle(dest)
    progress(f"smoke: verified {len(bundle.manifest.files)} files (sha256 + size)")
    rows = []
    here = set(available_backends())
    x = np.zeros((1, 1, 28, 28), np.float32)
    for art in bundle.manifest.artifacts:
        be = backend_for_format(art.format)
        if be.name not in here:
            progress(f"smoke: {art.name}: {be.name} not installed, skipped")
            continue
        session = load(bundle, be.name, artifact=art.name)
        agree = check_golden(session)
        t0 = time.perf_counter()
        for _ in range(50):
            session.run(x)
        ms = (time.perf_counter() - t0) / 50 * 1e3
        rows.append(SmokeRow(art.name, be.name, bundle.manifest.file(art.path).bytes, agree.max_abs_diff,
                             agree.cosine, ms))
    return rows
