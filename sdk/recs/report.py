"""The recommendations build's plot: quality against size (models) and against latency and file size (artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def mean_ci(values: np.ndarray | None, samples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of per-user values."""
    if values is None or len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    v = np.asarray(values, np.float64)
    idx = np.random.default_rng(seed).integers(0, v.size, size=(samples, v.size))
    m = v[idx].mean(axis=1)
    return float(v.mean()), float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def plot_summary(summary: Any, dest: Path) -> Path:
    """One row of two panels per data set: test NDCG@10 (95% CI) of every model against its parameters
    (baselines as lines), and every exported artifact's NDCG@10 against its p50 latency (marker area ~ bytes)."""
    from edgecart.plots import pyplot

    plt = pyplot()

    results = summary.results
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4.2 * len(results)), squeeze=False)
    for row, r in zip(axes, results, strict=True):
        ax = row[0]
        for i, m in enumerate(r.models):
            mean, lo, hi = mean_ci(m.user_ndcg)
            if m.params is None:
                ax.axhline(mean, ls="--", color=f"C{i}", label=f"{m.model} {mean:.4f}")
            else:
                ax.errorbar([m.params], [mean], yerr=[[mean - lo], [hi - mean]], marker="o", capsize=4,
                            color=f"C{i}", label=f"{m.model} {mean:.4f}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("test NDCG@10 (95% CI)")
        ax.set_title(f"{r.dataset}: models")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax = row[1]
        arts = [a for a in r.artifacts if a.p50_ms is not None]
        if arts:
            sizes = np.array([a.bytes for a in arts], np.float64)
            area = 30 + 300 * sizes / sizes.max()
            for a, s in zip(arts, area, strict=True):
                ax.scatter([a.p50_ms], [a.ndcg], s=s, alpha=0.6, label=f"{a.artifact} ({a.bytes / 1e3:.0f} kB)")
            ax.set_xlabel("p50 ms per recommend() (runtime, 1 thread)")
            ax.set_ylabel("test NDCG@10 (through the runtime)")
            ax.legend(fontsize=7)
        ax.set_title(f"{r.dataset}: exported artifacts")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=100)
    plt.close(fig)
    return dest
