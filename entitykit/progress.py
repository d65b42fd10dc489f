"""Progress for long work, on stderr (stdout is for results), costing nothing when disabled
(library calls default to quiet).

With a terminal on stderr: a rich bar, redrawn in place. Without one (a log file, CI, a pipe):
one plain line every :data:`LINE_INTERVAL_S` seconds or every :data:`LINE_STEP` of the work,
whichever comes first (at most one a second), and a last line with the total time — never nothing for an hour, never a
bar's control codes in a log.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

LINE_INTERVAL_S = 10.0  # without a terminal: a line at least this often …
LINE_STEP = 0.10  # … and at every 10 % of the work …
LINE_GAP_S = 1.0  # … but not more than one a second (a job of a few seconds logs its last line only)


def _stderr_console():
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True)


def _duration(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress:
    """Progress as plain lines: ``label: 450/1,000 (45%), 12 s elapsed, eta 15 s``."""

    def __init__(self, label: str, total: int, *, done: int = 0, unit: str = "",
                 interval: float = LINE_INTERVAL_S, step: float = LINE_STEP, gap: float = LINE_GAP_S,
                 clock: Callable[[], float] = time.monotonic, stream=None):
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.start_done = self.done = done
        self.interval, self.step, self.gap, self.clock = interval, step, gap, clock
        self.stream = stream
        self.t0 = self.last_t = clock()
        self.last_mark = self._mark()
        self.extra = ""
        self.finished = False

    def _mark(self) -> int:
        return int(self.done / self.total / self.step + 1e-9) if self.total else 0

    def update(self, done: int, extra: str = "") -> None:
        self.done, self.extra = done, extra
        now = self.clock()
        mark = self._mark()
        if self.total and self.done >= self.total:
            self.finish()
        elif (mark > self.last_mark and now - self.last_t >= self.gap) or now - self.last_t >= self.interval:
            self.last_mark, self.last_t = mark, now
            self._write(self._line(now))

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        now = self.clock()
        self._write(f"{self._head()}{self._tail()} in {_duration(now - self.t0)}")

    def _head(self) -> str:
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.label}: {self.unit}{self.done:,}/{self.total:,}{pct}"

    def _tail(self) -> str:
        return f", {self.extra}" if self.extra else ""

    def _line(self, now: float) -> str:
        elapsed = now - self.t0
        line = f"{self._head()}{self._tail()}, {_duration(elapsed)} elapsed"
        moved = self.done - self.start_done
        if moved > 0 and self.total:
            line += f", eta {_duration(elapsed / moved * (self.total - self.done))}"
        return line

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n=1)``: a bar with count, elapsed time and ETA on a terminal, lines otherwise."""
    if not enabled:
        yield lambda n=1: None
        return
    console = _stderr_console()
    if not console.is_terminal:
        line = LineProgress(description, total)
        yield line.advance
        line.finish()
        return
    from rich.progress import (  # noqa: PLC0415
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def train_progress(total: int, start: int, max_iter: int, *, enabled: bool = True):
    """A training bar: iteration of max_iter, loss, learning rate, elapsed and ETA (lines without a
    terminal). ``total`` (the iterations this process will run) is kept for callers; the bar counts
    from ``start`` to ``max_iter``."""
    if not enabled:
        yield lambda record: None
        return
    console = _stderr_console()
    if not console.is_terminal:
        line = LineProgress("train", max_iter, done=start, unit="it ")

        def log(record: dict) -> None:
            line.update(record["iter"], f"loss {record['loss']:.3f}, lr {record['lr']:.2e}")

        yield log
        line.finish()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: PLC0415

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("it {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("lr {task.fields[lr]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=max_iter, completed=start, loss="-", lr="-")

        def update(record: dict) -> None:
            progress.update(task, completed=record["iter"], loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")

        yield update
