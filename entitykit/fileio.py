"""Atomic writes and JSON helpers: an interrupted run never leaves a half-written output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import EntityKitError


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories alike: the caller writes whatever it wants at the yielded path.
    An existing directory at ``path`` is replaced only after the new one is complete, and only
    with ``overwrite`` (or when it is empty): a mistyped folder name must not delete a user's data.
    """
    path = Path(path)
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise EntityKitError("folder exists and is not empty (pass overwrite / --overwrite to replace it)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / "out"
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written for {path}")
        if path.is_dir() and target.is_dir():
            old = tmp / "old"
            os.replace(path, old)
            os.replace(target, path)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    """Write JSON atomically (compact by default: entity datasets are large)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, separators=None if indent else (",", ":"))


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Read JSON, turning I/O and syntax errors into an EntityKitError naming the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EntityKitError(f"{what} not found", path) from None
    except json.JSONDecodeError as e:
        raise EntityKitError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise EntityKitError(f"cannot read {what}: {e}", path) from None
