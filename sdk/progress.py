"""Progress for long stages that shows on a terminal *and* in a log: a tqdm bar on a TTY, otherwise a plain line
every few seconds with the count, the rate and the time left.

``for x in progress_iter(items, desc="teacher fine-tune", unit="step"): ...`` — ``set_postfix`` works on both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


class LineProgress:
    """A minimal tqdm stand-in that prints ``desc: n/total unit (rate/s, ETA) postfix`` every ``every`` seconds."""

    def __init__(self, iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
                 every: float = 5.0, stream: TextIO | None = None) -> None:
        self._it = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.every = desc, unit, every
        self.stream = stream or sys.stderr
        self.n = 0
        self._post = ""
        self._t0 = self._last = time.perf_counter()

    def set_postfix(self, **kv: Any) -> None:
        self._post = " ".join(f"{k}={v}" for k, v in kv.items())

    def _line(self, final: bool = False) -> str:
        dt = max(time.perf_counter() - self._t0, 1e-9)
        rate = self.n / dt
        tot = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0 and not final:
            eta = f", ~{(self.total - self.n) / rate:.0f} s left"
        done = " done in" if final else ""
        return f"{self.desc}: {self.n}{tot} {self.unit}{done} {dt:.0f} s ({rate:.2f} {self.unit}/s{eta}) {self._post}"

    def __iter__(self) -> Iterator[T]:
        for x in self._it:
            yield x
            self.n += 1
            now = time.perf_counter()
            if now - self._last >= self.every:
                self._last = now
                print(self._line().rstrip(), file=self.stream, flush=True)
        if self.n and time.perf_counter() - self._t0 >= self.every:
            print(self._line(final=True).rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        pass


def progress_iter(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
                  leave: bool = False, every: float = 5.0) -> Any:
    """A tqdm bar when stderr is a terminal, else a :class:`LineProgress` printing a line every ``every`` s."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, every=every)


__all__ = ["LineProgress", "progress_iter"]
