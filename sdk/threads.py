"""How many threads long work should use: the cores that are actually free, not every core the machine has.

Torch's intra-op threads spin and wait on each other: when another process holds one of two cores, a 2-thread
training step runs ~10x slower than a 1-thread one (measured, see ``shared/TOOLCHAIN.md``). So long stages ask
:func:`free_cores` (the cores this process may use, less the load other processes put on them) and set torch's thread
count from it, instead of ``os.cpu_count()``. ``EDGECART_THREADS`` overrides the guess.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is no /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    v = [float(x) for x in parts[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0.0)  # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def busy_cores(window: float = 0.4) -> float | None:
    """How many cores other processes keep busy right now: /proc/stat sampled over ``window`` seconds, less this
    process's own CPU time. None where /proc/stat is not readable. (The 1-minute load average lags by a minute: a
    job that starts while another just began would still see an idle machine.)"""
    import time

    a = _cpu_times()
    if a is None:
        return None
    own0, t0 = time.process_time(), time.perf_counter()
    time.sleep(window)
    b = _cpu_times()
    own1, t1 = time.process_time(), time.perf_counter()
    if b is None or b[1] <= a[1]:
        return None
    ncpu = os.cpu_count() or 1
    busy = (b[0] - a[0]) / (b[1] - a[1]) * ncpu  # cores busy, all processes
    own = (own1 - own0) / max(t1 - t0, 1e-9)
    return max(0.0, busy - own)


def free_cores(requested: int | None = None) -> int:
    """Threads to use now: ``requested`` if given, else ``EDGECART_THREADS``, else the usable cores minus those
    other processes keep busy (the larger of a short /proc/stat sample and the 1-minute load average, rounded),
    at least 1."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return int(requested)
    env = os.environ.get("EDGECART_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"EDGECART_THREADS={env!r} is not a whole number of threads") from None
        if n < 1:
            raise ValueError(f"EDGECART_THREADS must be >= 1, got {n}")
        return n
    cores = usable_cores()
    try:
        # this process's own running thread counts in the load average too; the caller is usually one of them
        busy = max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:
        busy = 0.0
    now = busy_cores()
    if now is not None:
        busy = max(busy, now)
    return max(1, min(cores, cores - int(busy + 0.5)))


def set_torch_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads from :func:`free_cores` (and one inter-op thread); returns the number used."""
    import torch

    n = free_cores(requested)
    torch.set_num_threads(n)
    return n


__all__ = ["busy_cores", "free_cores", "set_torch_threads", "usable_cores"]
