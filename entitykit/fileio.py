"""Atomic writes and JSON helpers: an interrupted run never leaves a half-written output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import EntityKitError


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories alike: the caller writes whatever it wants at the yielded path.
    Temporary siblings left by a killed run (``.NAME.PID.*.tmp`` of a process that is gone) are
    removed first.
    An existing directory at ``path`` is replaced only after the new one is complete, and only
    with ``overwrite`` (or when it is empty): a mistyped folder name must not delete a user's data.
    """
    path = Path(path)
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise EntityKitError("folder exists and is not empty (pass overwrite / --overwrite to replace it)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
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


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporary siblings of ``path`` left by a killed run (their process is gone)."""
    prefix = f".{path.name}."
    try:
        siblings = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for p in siblings:
        pid_text = p.name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # that process is alive: maybe writing right now
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(p, ignore_errors=True)


def check_output(
    path: str | Path,
    *,
    kind: str = "file",
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = True,
) -> Path:
    """The rules for an output path, checked before any work: the one owner every writer calls.

    ``kind``: "file" or "folder". Refused with one line naming the path: a folder where a file
    is to be written (and the reverse), a parent that is a file, an output that is one of the
    ``inputs`` (or contains one: no command overwrites its own input), and — without
    ``overwrite`` — an existing file or non-empty folder. Returns the path.
    """
    path = Path(path)
    if str(path) in ("", "-") and kind == "file":
        raise EntityKitError("give a file name (standard output is not supported here)", path)
    if kind == "file" and path.is_dir():
        raise EntityKitError("is a folder; give a file name for the output", path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise EntityKitError("exists and is not a folder; give a folder for the output", path)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise EntityKitError(f"cannot create it: {parent} is a file, not a folder", path)
            break
    target = path.resolve()
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp).resolve()
        if src == target or (kind == "folder" and target in src.parents):
            raise EntityKitError(f"would overwrite its own input {inp}; choose another output", path)
    if not overwrite:
        if kind == "file" and path.exists():
            raise EntityKitError("file exists (pass --overwrite to replace it)", path)
        if kind == "folder" and path.is_dir() and any(path.iterdir()):
            raise EntityKitError("folder exists and is not empty (pass --overwrite to replace it)", path)
    return path


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
