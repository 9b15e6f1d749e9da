"""Statistics on known samples: percentiles, bootstrap intervals, summaries, ratios."""

from __future__ import annotations

import numpy as np
import pytest
from edgecart.benchmarks.stats import (
    BootstrapConfig,
    bootstrap_ci,
    interleaved_times,
    p50_ms,
    percentile,
    ratio_ci,
    reliable_percentiles,
    summarize,
)


def test_percentiles_of_known_samples():
    x = np.arange(1, 101, dtype=float)  # 1..100
    assert percentile(x, 50) == pytest.approx(50.5)
    assert percentile(x, 90) == pytest.approx(90.1)
    assert percentile(x, 99) == pytest.approx(99.01)
    assert percentile(x, 99.9) == pytest.approx(99.901)
    assert percentile([7.0], 99.9) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_bootstrap_ci_is_seeded_brackets_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.lognormal(0.0, 0.3, 200)
    big = rng.lognormal(0.0, 0.3, 5000)
    cfg = BootstrapConfig(resamples=500, seed=3)
    lo, hi = bootstrap_ci(small, 50, cfg)
    assert lo <= percentile(small, 50) <= hi
    assert (lo, hi) == bootstrap_ci(small, 50, cfg)  # fixed seed: reproducible
    assert (lo, hi) != bootstrap_ci(small, 50, BootstrapConfig(resamples=500, seed=4))
    blo, bhi = bootstrap_ci(big, 50, cfg)
    assert bhi - blo < hi - lo
    # the true median of lognormal(0, 0.3) is 1.0: a 95% interval from 5000 samples holds it
    assert blo < 1.0 < bhi
    assert bootstrap_ci([2.0], 50, cfg) == (2.0, 2.0)


def test_bootstrap_config_is_validated():
    with pytest.raises(ValueError):
        BootstrapConfig(resamples=10)
    with pytest.raises(ValueError):
        BootstrapConfig(confidence=1.0)


def test_summarize_converts_seconds_to_ms_and_flags_thin_tails():
    samples_s = [0.001, 0.002, 0.003, 0.004] * 25  # 100 samples, 1..4 ms
    s = summarize(samples_s, BootstrapConfig(resamples=200))
    assert s.n == 100
    assert s.mean_ms == pytest.approx(2.5)
    assert s.min_ms == pytest.approx(1.0) and s.max_ms == pytest.approx(4.0)
    assert s.percentiles_ms["p50"] == pytest.approx(2.5)
    assert s.percentiles_ms["p99"] == pytest.approx(4.0)
    assert s.throughput_per_s == pytest.approx(400.0)  # 100 calls in 0.25 s of busy time
    assert set(s.ci_ms) == {"p50", "p90", "p99", "p99.9"}
    assert all(lo <= hi for lo, hi in s.ci_ms.values())
    assert s.reliable == ["p50", "p90"]  # 100 samples: only 1 beyond p99, 0.1 beyond p99.9
    assert reliable_percentiles(10_000) == ["p50", "p90", "p99", "p99.9"]
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([0.001, float("nan")])


def test_ratio_ci_of_a_known_ratio():
    rng = np.random.default_rng(0)
    a = rng.normal(2.0, 0.05, 400)
    b = rng.normal(1.0, 0.025, 400)
    r, lo, hi = ratio_ci(a, b, 50, BootstrapConfig(resamples=300))
    assert r == pytest.approx(2.0, rel=0.02)
    assert lo < r < hi and hi - lo < 0.1
    same, lo, hi = ratio_ci(b, b, 50, BootstrapConfig(resamples=300))
    assert same == 1.0 and lo <= 1.0 <= hi


def _drifting_rounds(seed: int, rounds: int = 12, calls: int = 60) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Interleaved rounds of two runtimes whose true p50 ratio is 1.25: each round has its own slow-down for each
    side (another process waking, a clock change: what interleaving in blocks meets) plus small per-call noise."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for _ in range(rounds):
        a.append(1.25 * rng.lognormal(0.0, 0.15) * (1 + 0.01 * rng.standard_normal(calls)))
        b.append(1.00 * rng.lognormal(0.0, 0.15) * (1 + 0.01 * rng.standard_normal(calls)))
    return a, b


def test_block_bootstrap_over_rounds_covers_round_to_round_drift():
    from edgecart.benchmarks.stats import block_ratio_ci

    cfg = BootstrapConfig(resamples=300, seed=1)
    block_hits = call_hits = 0
    widths = []
    for seed in range(20):
        a, b = _drifting_rounds(seed)
        r, lo, hi = block_ratio_ci(a, b, 50.0, cfg)
        r2, lo2, hi2 = ratio_ci(np.concatenate(a), np.concatenate(b), 50.0, cfg)
        assert r == pytest.approx(r2) and lo <= r <= hi
        block_hits += lo <= 1.25 <= hi
        call_hits += lo2 <= 1.25 <= hi2
        widths.append((hi - lo) / (hi2 - lo2))
    # calls inside a round are not independent: resampling calls gives intervals that miss the true ratio most of
    # the time; resampling rounds gives intervals several times wider that hold it about as often as promised
    assert block_hits >= 16 and call_hits <= 10
    assert np.median(widths) > 3


def test_block_bootstrap_edge_cases():
    from edgecart.benchmarks.stats import block_ratio_ci

    r, lo, hi = block_ratio_ci([[2.0, 2.0]], [[1.0, 1.0]])
    assert r == 2.0 and np.isnan(lo) and np.isnan(hi)  # one round: nothing to resample, no interval claimed
    with pytest.raises(ValueError, match="no rounds"):
        block_ratio_ci([[]], [[1.0]])
    with pytest.raises(ValueError):
        block_ratio_ci([[1.0]], [[1.0], [2.0]])  # rounds must pair up
    assert block_ratio_ci([[1.0], [], [3.0]], [[1.0], [5.0], [1.0]])[0] == pytest.approx(2.0)  # empty round skipped


def test_interleaved_times_rotates_the_order_each_round_and_warms_each_function_once():
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in ("a", "b", "c")}
    times = interleaved_times(fns, reps=3, budget_s=60.0)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for ts in times.values() for t in ts)


def test_interleaved_times_stops_on_its_budget_after_five_rounds():
    times = interleaved_times({"a": lambda: None}, reps=1000, budget_s=0.0)
    assert len(times["a"]) == 5


def test_p50_ms_is_the_median_in_milliseconds():
    assert p50_ms([0.001, 0.003, 0.002]) == pytest.approx(2.0)
