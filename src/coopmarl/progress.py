"""Training progress for the runners: on a terminal a live bar (steps done, steps/s, elapsed, remaining,
the latest evaluation); elsewhere (a log file, CI, a pipe) readable plain lines, one per update at most
every `min_interval` seconds, plus the last.

    with Progress(total_steps, "qmix on lbf:…") as bar:
        bar.update(steps_done_this_chunk, "eval_return 0.512")
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    def __init__(self, total: int, title: str, enabled: bool = True, stream: TextIO | None = None,
                 min_interval: float = 10.0, done: int = 0):
        self.total, self.title, self.enabled = int(total), title, enabled
        self.stream = stream if stream is not None else sys.stdout
        self.min_interval = min_interval
        self.done = self.start = int(done)  # a resumed run starts part-way
        self._bar = self._task = None
        self._start = self._last_line = 0.0

    def __enter__(self):
        self._start = time.monotonic()
        self._last_line = -float("inf")
        if self.enabled and self.stream.isatty():
            self._bar = _rich_bar(self.title, self.stream)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def update(self, advance: int, status: str = ""):
        """`advance` more env steps (or iterations) are done; `status` is a short note (e.g. the latest return)."""
        self.done += int(advance)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, description=status)
            return
        now = time.monotonic()
        if now - self._last_line < self.min_interval and self.done < self.total:
            return
        self._last_line = now
        self.stream.write(self.line(now - self._start, status) + "\n")
        self.stream.flush()

    def line(self, elapsed: float, status: str = "") -> str:
        """The plain progress line after `elapsed` seconds."""
        rate = (self.done - self.start) / elapsed if elapsed > 0 else float("nan")
        remaining = (self.total - self.done) / rate if rate and rate == rate and rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        left = _clock(remaining) if remaining == remaining else "?"
        text = (f"{self.title}: {self.done:,}/{self.total:,} steps ({pct:.0f}%), {rate:,.0f} steps/s, "
                f"elapsed {_clock(elapsed)}, remaining {left}")
        return text + (f", {status}" if status else "")


def _rich_bar(title: str, stream: TextIO):
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} steps/s" if speed else "- steps/s")

    return Progress(TextColumn(f"[bold]{escape(title)}[/bold]"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.description}"),
                    console=Console(file=stream), transient=False)
