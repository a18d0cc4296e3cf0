"""How far a long step (tokenizing, reading, encoding) has got: a bar on a terminal, a few lines otherwise.

A step calls its `Progress` with `(done, total)`: once with 0 when it starts, then as it goes,
and with `done == total` when it ends. A step that ends within `delay` seconds shows nothing.
Past that, a terminal gets a tqdm bar on standard error with the counts and the rate, and
when standard output is not a terminal (a log file, CI) each tenth done is a line through
`echo`, so a step never writes more than ten lines there. A process that rnnbench started (a `--jobs` worker)
never draws a bar: several would overwrite each other on one terminal.

This module never decides what is slow; the steps report, and it only shows.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any, Callable, Optional

# How long a step runs before it shows its progress: a step shorter than this is not worth a bar.
DELAY_SECONDS = 3.0


class Progress:
    """Reports one step's progress; `verb` says what was done ("tokenized"), `unit` what was counted ("texts")."""

    def __init__(
        self,
        echo: Callable[[str], None],
        verb: str,
        unit: str = "texts",
        delay: float = DELAY_SECONDS,
        terminal: Optional[bool] = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.echo = echo
        self.verb = verb
        self.unit = unit
        self.delay = delay
        self.terminal = _draws_bars() if terminal is None else terminal
        self.clock = clock
        self.started: Optional[float] = None
        self.tenths_reported = 0
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        if self.terminal:
            self._draw(done, total)
        else:
            self._write(done, total, now - self.started)

    def _draw(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            # tqdm keeps the bar hidden for `delay` seconds, and for good if the step ends sooner.
            self.bar = tqdm(
                total=total,
                desc=self.verb,
                unit=f" {self.unit}",
                delay=self.delay,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()

    def _write(self, done: int, total: int, elapsed: float) -> None:
        tenths = done * 10 // total if total else 10
        if tenths <= self.tenths_reported or elapsed < self.delay:
            return
        self.tenths_reported = tenths
        rate = f", {done / elapsed:,.0f} {self.unit}/s" if elapsed > 0 else ""
        self.echo(f"{self.verb} {done:,} of {total:,} {self.unit} ({elapsed:.1f} s{rate})")


def silent(done: int, total: int) -> None:
    """A step's progress when nobody is told of it."""


def _draws_bars() -> bool:
    # Lines go where `echo` writes (standard output) and the bar to standard error: a bar only
    # when both are a terminal, so that a log file always gets the lines.
    return sys.stdout.isatty() and sys.stderr.isatty() and multiprocessing.parent_process() is None
