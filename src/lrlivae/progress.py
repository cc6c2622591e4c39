"""Progress bars that stay readable in logs.

On a terminal this is tqdm. When stderr is not a terminal (a DVC stage writing to a log, CI), a tqdm bar
becomes one long line of carriage returns; there `progress` prints one plain line every `every_percent`
percent instead (and one at the end), with the rate and the latest postfix.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO

from tqdm.auto import tqdm


class LineProgress:
    """The subset of tqdm's interface the project uses, writing whole lines."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, every_percent: float = 5.0, stream: TextIO | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start = initial
        self.every = max(every_percent, 0.1) / 100.0
        self.stream = stream if stream is not None else sys.stderr
        self.postfix = ""
        self._t0 = time.monotonic()
        self._next = self._threshold(initial)
        self._closed = False
        self._shown = None  # the count of the last line printed

    def _threshold(self, n: int) -> float:
        if not self.total:
            return float("inf")
        step = max(1.0, self.total * self.every)
        return (int(n / step) + 1) * step

    def _line(self) -> str:
        dt = max(time.monotonic() - self._t0, 1e-9)
        rate = (self.n - self._start) / dt
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            body = f"{100.0 * self.n / self.total:3.0f}% {self.n}/{self.total}"
        else:
            body = f"{self.n}"
        tail = f" | {self.postfix}" if self.postfix else ""
        return f"{head}{body} [{dt:.0f} s, {rate:.3g} {self.unit}/s]{tail}"

    def _emit(self) -> None:
        self._shown = self.n
        print(self._line(), file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self._next:
            self._emit()
            self._next = self._threshold(self.n)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def write(self, s: str) -> None:
        print(s, file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._shown != self.n:
            self._emit()  # the final count, unless the last line showed it

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False, every_percent: float = 5.0, **tqdm_kwargs):
    """tqdm on a terminal, LineProgress elsewhere; `disable` gives a bar that prints nothing."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                    **tqdm_kwargs)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, every_percent=every_percent)
