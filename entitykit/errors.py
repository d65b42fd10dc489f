"""One exception type for every user-facing failure, so the CLI can print it and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class EntityKitError(Exception):
    """A problem with the user's input: names the file, the item and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None, item: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.item = item
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.path, self.item) if p)
        return f"{where}: {self.problem}" if where else self.problem


class DatasetError(EntityKitError):
    """An entity dataset (or a source dataset being converted) is malformed."""


class PredictionError(EntityKitError):
    """Predictions handed to the scorer are malformed or inconsistent with the ground truth."""
