"""Atomic writes and JSON helpers: an interrupted run never leaves a half-written output."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import EntityKitError


_ACTIVE: list[Path] = []  # temporary folders of the atomic writes in progress (nested writes go inside them)
_ACTIVE_LOCK = threading.Lock()  # a temporary is made and listed in one step (threads of one process)
if hasattr(os, "register_at_fork"):  # a forked child starts with a free lock (another thread may hold it now)
    os.register_at_fork(after_in_child=lambda: globals().update(_ACTIVE_LOCK=threading.Lock()))
OWNER_FILE = ".owner"  # in each temporary folder, locked (flock) by the writing process while it lives


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories alike: the caller writes whatever it wants at the yielded path.
    Temporary siblings left by a killed run (``.NAME.PID.*.tmp`` of a process that is gone) are
    removed first: each holds a file (``.owner``) its writer keeps locked while it lives, so a
    leftover is recognised even when its PID now belongs to another process (PID reuse, a
    container's restarted PIDs, this very process); a leftover without one (older versions, a
    file system without locks) is judged by its PID. An interrupted or failed block (Ctrl-C
    included) removes its temporary before the exception goes on.
    An existing directory at ``path`` is replaced only after the new one is complete, and only
    with ``overwrite`` (or when it is empty): a mistyped folder name must not delete a user's data.
    A failure to write (a full disk, a read-only folder) is an :class:`EntityKitError` naming
    ``path`` — the output the user asked for, not the temporary file it happened in.
    What lands at ``path`` has the modes the umask gives any new file or folder (0644 / 0755
    under umask 022), whatever wrote it (safetensors writes 0600).
    """
    path = Path(path)
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise EntityKitError("folder exists and is not empty: choose another output, remove it, or pass --overwrite where the command has it", path)
    why = parent_problem(path)
    if why:
        raise EntityKitError(why, path)
    nested = any(t == path or t in path.parents for t in _ACTIVE)  # the outer write names its own output
    tmp: Path | None = None
    owner: int | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        with _ACTIVE_LOCK:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
            _ACTIVE.append(tmp)
        owner = _hold(tmp)
        target = tmp / "out"
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written for {path}")
        if path.is_dir() and not target.is_dir():
            raise EntityKitError("is a folder; give a file name for the output", path)
        if path.exists() and not path.is_dir() and target.is_dir():
            raise EntityKitError("exists and is not a folder; give a folder for the output", path)
        _umask_modes(target)
        if path.is_dir() and target.is_dir():
            old = tmp / "old"
            os.replace(path, old)
            os.replace(target, path)
        else:
            os.replace(target, path)
    except OSError as e:
        if nested or not _about_output(e, path, tmp):
            raise
        raise EntityKitError(f"cannot write it: {_os_words(e)}", path) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            with _ACTIVE_LOCK:
                _ACTIVE.remove(tmp)
        if owner is not None:
            os.close(owner)  # the lock goes with it (and with the process, however it ends)


def _hold(tmp: Path) -> int | None:
    """Create ``tmp/.owner`` and lock it (``flock``) for as long as this process keeps the returned
    descriptor open: the lock ends with the process however it ends (even SIGKILL). None where
    locks are not available (the PID in the folder's name is then the only sign of life)."""
    try:
        import fcntl  # noqa: PLC0415  (POSIX only)
    except ImportError:  # pragma: no cover
        return None
    fd: int | None = None
    try:  # locked before it gets its name: a checker never finds it unlocked while its writer lives
        fd = os.open(tmp / f"{OWNER_FILE}.new", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp / f"{OWNER_FILE}.new", tmp / OWNER_FILE)
        return fd
    except OSError:
        if fd is not None:
            os.close(fd)
        return None


def _owner_gone(tmp: Path) -> bool | None:
    """Whether the process that made the temporary ``tmp`` is gone (its ``.owner`` lock is free: True)
    or alive (False); None when ``tmp`` has no lockable ``.owner`` (older versions, no locks)."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    try:
        fd = os.open(tmp / OWNER_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)
    return True


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _umask_modes(target: Path) -> None:
    """Give ``target`` (and, for a folder, everything in it) the permission bits a freshly created
    file (0o666) or folder (0o777) gets under the umask; execute bits a file has are kept.
    Writers that create private files (safetensors: 0600) would otherwise leave them unreadable to
    the group and others, unlike every other output."""
    mask = _umask()

    def fix(p: str, st_mode: int, is_dir: bool) -> None:
        perms = st_mode & 0o777
        want = (0o777 if is_dir else (perms & 0o111) | 0o666) & ~mask
        if perms != want:
            try:
                os.chmod(p, (st_mode & 0o7000) | want)  # setgid folders etc. keep their special bits
            except OSError:  # a file system without Unix modes (some network / FUSE mounts): keep the output
                pass

    st = os.lstat(target)
    if stat.S_ISLNK(st.st_mode):
        return
    fix(str(target), st.st_mode, stat.S_ISDIR(st.st_mode))
    if not stat.S_ISDIR(st.st_mode):
        return
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                fix(p, st.st_mode, stat.S_ISDIR(st.st_mode))


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}  # only writing causes these


def _about_output(e: OSError, path: Path, tmp: Path | None) -> bool:
    """Whether an OSError raised while writing ``path`` is about the output, not an input read meanwhile
    (an unreadable image while packing keeps its own message, naming the image)."""
    if e.errno in _WRITE_ERRNOS or e.filename is None:
        return True
    names = [os.path.abspath(str(n)) for n in (e.filename, e.filename2) if n is not None]
    mine = [os.path.abspath(p) for p in (path, tmp, path.parent if tmp is None else None) if p is not None]
    return any(n == m or n.startswith(m.rstrip("/") + "/") for n in names for m in mine)


def _os_words(e: OSError) -> str:
    from .errors import _OS_WORDS  # noqa: PLC0415

    words = _OS_WORDS.get(e.errno or -1) or e.strerror or str(e) or type(e).__name__
    return " ".join(str(words).split())


def parent_problem(path: str | Path) -> str | None:
    """Why the folders above ``path`` cannot hold it (the nearest existing one is a file), or None."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else f"cannot create it: {parent} is a file, not a folder"
        if parent.is_symlink():  # a dangling link: mkdir would fail on it
            return f"cannot create it: {parent} is a broken symbolic link"
    return None


def _unwritable(path: Path) -> str | None:
    """Why nothing can be created next to ``path`` (its nearest existing folder is read-only), or None."""
    folder = next((p for p in Path(path).absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir() or os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    return f"cannot write there: {folder} is {'on a read-only file system' if read_only else 'not writable (permission denied)'}"


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
        with _ACTIVE_LOCK:
            if p in _ACTIVE:
                continue  # this process is writing it
            gone = _owner_gone(p)
            if gone is False:
                continue  # its writer is alive (a lock is not held by a dead process)
            if gone is None and pid != os.getpid():  # no lock to ask: the PID (ours, not listed: a dead namesake)
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
    why = parent_problem(path) or _unwritable(path)
    if why:
        raise EntityKitError(why, path)
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
    """Write JSON atomically (compact by default: entity datasets are large).

    Compact output is encoded in one piece by ``json.dumps``: only that one-shot form uses the
    standard library's C encoder (``json.dump`` streams through the pure-Python one, ~10x slower);
    the text costs memory about the size of the file, well under the objects it encodes."""
    text = json.dumps(obj, indent=indent, separators=None if indent else (",", ":"))
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Read JSON, turning I/O and syntax errors into an EntityKitError naming the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EntityKitError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise EntityKitError(f"{what} is a folder, not a file", path) from None
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")  # json's "Unterminated string starting at" names the place itself
        raise EntityKitError(f"not valid JSON ({msg} at line {e.lineno}, column {e.colno})", path) from None
    except RecursionError:
        raise EntityKitError("JSON nested too deeply to parse (thousands of nested brackets): corrupt or not "
                             f"a {what}", path) from None
    except UnicodeDecodeError as e:
        raise EntityKitError(f"cannot read {what}: not UTF-8 text ({e.reason} at byte {e.start})", path) from None
    except ValueError as e:  # e.g. an integer literal longer than Python's 4,300-digit limit
        raise EntityKitError(f"not valid JSON ({' '.join(str(e).split())[:200]})", path) from None
    except OSError as e:
        raise EntityKitError(f"cannot read {what}: {e.strerror or e}", path) from None
