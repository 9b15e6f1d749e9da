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


def free_cores(requested: int | None = None) -> int:
    """Threads to use now: ``requested`` if given, else ``EDGECART_THREADS``, else the usable cores minus the
    1-minute load average of the other processes (rounded), at least 1."""
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
        load = os.getloadavg()[0]
    except OSError:
        return cores
    # this process's own running threads count in the load average too; the caller is usually one of them
    busy = max(0.0, load - 1.0)
    return max(1, min(cores, cores - int(busy + 0.5)))


def set_torch_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads from :func:`free_cores` (and one inter-op thread); returns the number used."""
    import torch

    n = free_cores(requested)
    torch.set_num_threads(n)
    return n


__all__ = ["free_cores", "set_torch_threads", "usable_cores"]
