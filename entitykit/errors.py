"""The errors a user can cause, and the one function that turns any failure into one line.

Every library function raises :class:`EntityKitError` (or a subclass) for bad input, naming the
file, the item and the problem. Failures that come from outside the library — the operating
system (a full disk, a read-only folder), PIL, memory, JSON nested too deeply — are turned into
the same one line by :func:`describe_failure`, which the command-line boundary calls.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
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


class ProblemsError(DatasetError):
    """Several problems found at once (file, item, text each): raised after a full pass, so one run
    tells the user everything that is wrong. Its own text is the first problem plus a count."""

    def __init__(self, problems: Sequence[EntityKitError]):
        if not problems:
            raise ValueError("ProblemsError needs at least one problem")
        self.problems = list(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        text = first.problem + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
        super().__init__(text, first.path, first.item)


def raise_problems(problems: Sequence[EntityKitError]) -> None:
    """Raise the single problem itself, or a :class:`ProblemsError` for several; nothing if empty."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ProblemsError(problems)


_OS_WORDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTEMPTY: "folder is not empty",
}


def describe_failure(exc: BaseException) -> str | None:
    """One line for a failure a user can cause, or None for a genuine bug.

    Covers :class:`EntityKitError`, operating-system errors (the file is named), PIL's
    decoding errors, memory exhaustion and input nested too deeply for the parser.
    """
    if isinstance(exc, EntityKitError):
        return str(exc)
    if isinstance(exc, OSError):
        words = _OS_WORDS.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
        path = exc.filename if exc.filename is not None else None
        if exc.filename2 is not None:
            return f"{path} → {exc.filename2}: {words}"
        return f"{path}: {words}" if path is not None else f"{words} ({exc})"
    if isinstance(exc, MemoryError):
        return ("not enough memory for this input (" + (str(exc) or "allocation failed") + "); "
                "an image or mask larger than declared limits? see --max-pixels")
    text = str(exc)
    for words in ("No space left on device", "Read-only file system", "Disk quota exceeded"):
        if words in text:  # a library's own exception around an OS error (safetensors, h5py): the OS's words
            return f"cannot write: {words.lower()} ({type(exc).__name__}: {' '.join(text.split())[:300]})"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to parse (a JSON file with thousands of nested brackets?)"
    try:
        from PIL import Image  # noqa: PLC0415

        if isinstance(exc, Image.DecompressionBombError):
            return f"image refused as a decompression bomb: {exc}"
    except ImportError:  # pragma: no cover
        pass
    return None
