"""Latency statistics: percentiles with percentile-bootstrap confidence intervals (numpy, fixed seed).

One run's intervals (:func:`bootstrap_ci`, :func:`ratio_ci`) resample single calls; comparisons interleaved in rounds
use :func:`block_ratio_ci`, which resamples whole rounds, because calls within a round share its conditions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Percentiles every result reports, keyed by the name used in JSON and tables.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 4_000_000  # resampled indices held in memory at once


@dataclass(frozen=True)
class BootstrapConfig:
    """How confidence intervals are computed: ``resamples`` draws, two-sided ``confidence``, RNG ``seed``."""

    resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 100:
            raise ValueError(f"bootstrap resamples must be >= 100 for a usable interval, got {self.resamples}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must lie in [0.5, 1), got {self.confidence}")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies, all in milliseconds; ``ci`` maps a percentile name to ``[low, high]``.

    ``reliable`` lists the percentiles estimated from enough samples (at least 10 samples beyond the percentile:
    p99.9 needs >= 10,000 calls); the others are reported but flagged.
    """

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    percentiles_ms: dict[str, float]
    ci_ms: dict[str, list[float]]
    confidence: float
    throughput_per_s: float
    reliable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LatencyStats:
        return LatencyStats(**d)


DEFAULT_BOOTSTRAP = BootstrapConfig()


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    return float(np.percentile(x, q))


def bootstrap_ci(samples: Sequence[float] | np.ndarray, q: float, config: BootstrapConfig = DEFAULT_BOOTSTRAP
                 ) -> tuple[float, float]:
    """Percentile-bootstrap interval for the ``q``-th percentile: resample with replacement ``config.resamples``
    times, take the percentile of each resample, report the central ``config.confidence`` range."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(config.seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // x.size)
    stats = []
    left = config.resamples
    while left > 0:
        k = min(per_chunk, left)
        idx = rng.integers(0, x.size, size=(k, x.size))
        stats.append(np.percentile(x[idx], q, axis=1))
        left -= k
    est = np.concatenate(stats)
    alpha = (1.0 - config.confidence) / 2.0
    lo, hi = np.quantile(est, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def ratio_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, q: float = 50.0,
             config: BootstrapConfig = DEFAULT_BOOTSTRAP) -> tuple[float, float, float]:
    """``percentile(a) / percentile(b)`` with a bootstrap interval (independent resamples of a and b)."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("no samples")
    rng = np.random.default_rng(config.seed)
    ra = np.empty(config.resamples)
    rb = np.empty(config.resamples)
    for out, x in ((ra, xa), (rb, xb)):
        per_chunk = max(1, _CHUNK_ELEMENTS // x.size)
        done = 0
        while done < config.resamples:
            k = min(per_chunk, config.resamples - done)
            out[done:done + k] = np.percentile(x[rng.integers(0, x.size, size=(k, x.size))], q, axis=1)
            done += k
    est = ra / rb
    alpha = (1.0 - config.confidence) / 2.0
    lo, hi = np.quantile(est, [alpha, 1.0 - alpha])
    return float(np.percentile(xa, q) / np.percentile(xb, q)), float(lo), float(hi)


def block_ratio_ci(a_rounds: Sequence[Sequence[float]], b_rounds: Sequence[Sequence[float]], q: float = 50.0,
                   config: BootstrapConfig = DEFAULT_BOOTSTRAP) -> tuple[float, float, float]:
    """``percentile(a) / percentile(b)`` for an interleaved comparison, with a **block bootstrap over rounds**.

    ``a_rounds[r]`` and ``b_rounds[r]`` are the samples of round ``r`` (measured back to back, so they share that
    round's conditions: other load on the machine, clock, cache state). Calls inside a round are not independent —
    a slow round is slow for all its calls — so resampling single calls (:func:`ratio_ci`) gives intervals narrower
    than the run-to-run spread. Here whole rounds are resampled with replacement, the same rounds for ``a`` and
    ``b`` (paired), and the interval is the central ``config.confidence`` range of the resampled ratios. With fewer
    than 2 usable rounds there is nothing to resample and the interval is NaN.
    """
    pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(a_rounds, b_rounds, strict=True)]
    pairs = [(x, y) for x, y in pairs if x.size and y.size]
    if not pairs:
        raise ValueError("no rounds with samples on both sides")
    xa = np.concatenate([x for x, _ in pairs])
    xb = np.concatenate([y for _, y in pairs])
    ratio = float(np.percentile(xa, q) / np.percentile(xb, q))
    if len(pairs) < 2:
        return ratio, float("nan"), float("nan")
    rng = np.random.default_rng(config.seed)
    est = np.empty(config.resamples)
    for i in range(config.resamples):
        pick = rng.integers(0, len(pairs), size=len(pairs))
        est[i] = (np.percentile(np.concatenate([pairs[j][0] for j in pick]), q)
                  / np.percentile(np.concatenate([pairs[j][1] for j in pick]), q))
    alpha = (1.0 - config.confidence) / 2.0
    lo, hi = np.quantile(est, [alpha, 1.0 - alpha])
    return ratio, float(lo), float(hi)


def reliable_percentiles(n: int) -> list[str]:
    """Percentiles with at least 10 samples in the tail beyond them."""
    return [name for name, q in PERCENTILES.items() if n * (100.0 - q) / 100.0 >= 10.0 - 1e-9]


def summarize(samples_s: Sequence[float] | np.ndarray, config: BootstrapConfig = DEFAULT_BOOTSTRAP) -> LatencyStats:
    """Summarise per-call latencies given in **seconds**; the result is in milliseconds.

    Throughput is calls per second of busy time (``n / sum(samples)``), i.e. one stream, back to back.
    """
    x = np.asarray(samples_s, dtype=np.float64) * 1e3
    if x.size == 0:
        raise ValueError("no latency samples to summarise")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("latency samples must be finite and non-negative")
    pct = {name: float(np.percentile(x, q)) for name, q in PERCENTILES.items()}
    ci = {name: list(bootstrap_ci(x, q, config)) for name, q in PERCENTILES.items()}
    total_s = float(x.sum()) / 1e3
    return LatencyStats(
        n=int(x.size), mean_ms=float(x.mean()), std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min_ms=float(x.min()), max_ms=float(x.max()), percentiles_ms=pct, ci_ms=ci, confidence=config.confidence,
        throughput_per_s=float(x.size / max(total_s, 1e-12)),
        reliable=reliable_percentiles(int(x.size)),
    )


__all__ = ["DEFAULT_BOOTSTRAP", "PERCENTILES", "BootstrapConfig", "LatencyStats", "block_ratio_ci", "bootstrap_ci",
           "percentile", "ratio_ci",
           "reliable_percentiles", "summarize"]


def interleaved_times(fns: dict[str, Callable[[], Any]], reps: int, budget_s: float) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in rounds (each function once per round, the order rotated each
    round, so slow spells of a busy machine fall on all of them); one warm-up call each first; stops after ``reps``
    rounds, or after ``budget_s`` once 5 rounds are done."""
    names = list(fns)
    for f in fns.values():
        f()
    out: dict[str, list[float]] = {n: [] for n in names}
    t_end = time.perf_counter() + budget_s
    for r in range(reps):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[n]()
            out[n].append(time.perf_counter() - t0)
        if time.perf_counter() > t_end and r >= 4:
            break
    return out


def p50_ms(seconds: Sequence[float]) -> float:
    """The median of per-call times given in seconds, in milliseconds."""
    return float(np.median(seconds)) * 1e3
