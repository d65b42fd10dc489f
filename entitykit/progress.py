"""A rich progress bar that costs nothing when disabled (library calls default to quiet)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n=1)``; draws a bar with count, elapsed time and ETA when enabled."""
    if not enabled:
        yield lambda n=1: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def train_progress(total: int, start: int, max_iter: int, *, enabled: bool = True):
    """A training bar: iteration of max_iter, loss, learning rate, elapsed and ETA."""
    if not enabled:
        yield lambda record: None
        return
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
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=max_iter, completed=start, loss="-", lr="-")

        def update(record: dict) -> None:
            progress.update(task, completed=record["iter"], loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")

        yield update
