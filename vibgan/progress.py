"""Progress lines for the long phases that have no progress bar (calibration, evaluation, the report,
registration): what the phase is doing, how far it is, and an estimate of what is left.

A phase calls ``update(done, what)`` as it goes; a line is printed for the first update, then at most every
``every`` seconds, and once at the end, so an unattended log gets a line every few seconds and never a
flood. Lines go to stderr, newline-terminated (they read the same in a terminal and in a log file)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: the callback long functions take: ``progress(done, total, what)``; done and total in the phase's own units
Callback = Callable[[float, float, str], None]


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class Progress:
    """One phase's progress lines: ``Progress("calibration", total=39)``, then ``update(done, what)``."""

    def __init__(self, phase: str, total: float, *, every: float = 3.0, enabled: bool = True,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.phase, self.total, self.every, self.enabled = phase, float(total), float(every), enabled
        self.stream, self.clock = stream, clock
        self.t0 = clock()
        self.last: float | None = None
        self.lines = 0
        self.done = 0.0

    def eta(self) -> float | None:
        """Seconds left at the mean rate so far; None before anything is done."""
        if self.done <= 0 or self.total <= 0:
            return None
        return (self.clock() - self.t0) * max(0.0, self.total - self.done) / self.done

    def line(self, what: str = "") -> str:
        elapsed = self.clock() - self.t0
        head = f"{self.phase}: {what}" if what else f"{self.phase}:"
        pct = f"{100 * min(self.done / self.total, 1):.0f} %" if self.total > 0 else ""
        eta = self.eta()
        left = "done" if self.done >= self.total else (f"about {format_seconds(eta)} left" if eta is not None
                                                       else "estimating the time left")
        return f"{head} [{pct}, {format_seconds(elapsed)} so far, {left}]"

    def update(self, done: float, what: str = "", *, force: bool = False) -> None:
        self.done = float(done)
        now = self.clock()
        if not self.enabled:
            return
        if force or self.last is None or now - self.last >= self.every or self.done >= self.total:
            print(self.line(what), file=self.stream or sys.stderr, flush=True)
            self.last = now
            self.lines += 1

    def __call__(self, done: float, total: float, what: str = "") -> None:
        """The ``Callback`` form: ``total`` may be refined as the phase learns its size."""
        self.total = float(total)
        self.update(done, what)


def callback(progress: Callback | None) -> Callback:
    """``progress`` itself, or a callback that does nothing."""
    return progress if progress is not None else (lambda done, total, what="": None)
