"""Reading ahead: the scorer's two input files read, and scanned by the compiled reader, in
background threads from the first lines of ``evaluate`` on, while the main thread imports the rest
of the scorer (numpy and the modules that use it, ~0.1 s on the 2-core machine) and reads the
other file. This module imports only the standard library and ``_cscan`` (the reader releases the
GIL while it scans; a file read does too), so nothing here waits for numpy.

:func:`start` gives a :class:`ReadAhead` for a path to a regular file (None for anything else: a
folder, a missing file, an object in memory); ``formats.sniff(..., ahead=...)`` then takes its bytes
and scan instead of reading the file again. A read that failed (the file vanished, unreadable, out
of memory) gives nothing to take: ``formats`` reads the file itself and words the error as before,
so the errors and their order do not depend on reading ahead.

Measured on ``benchmarks/bench_eval.py``'s sets, ``evaluate`` in a fresh process, reading ahead on
and off interleaved, on the 2-core machine with other work running (load ~1.9): 300 images 0.305 →
0.288 s (median of 12), 5,000 images no difference beyond the noise (1.23 / 1.26 s, median of 8:
both cores were busy with the reads and other work; with a core idle during the imports, the
overlap is bounded by those ~0.1 s).
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

from . import _cscan

NOT_SCANNED = object()  # ``scan``: no compiled reader applies to this file in this role
_WS = re.compile(rb"[ \t\r\n]*")
_HEAD = 4096  # bytes looked at before a file is read ahead: only what a compiled reader scans is


def read_bytes(path: str | os.PathLike) -> bytearray:
    """The file's bytes in a bytearray (the compiled reader leaves the RLE strings in it, in place).
    The bytearray is allocated without zeroing (``_cscan.buffer``: ``bytearray(n)`` zeroes it holding
    the GIL, stalling the thread that imports meanwhile) and filled by one read; a shorter read is
    cut to what was read. OSError as ``open`` / ``read`` raise it."""
    with open(path, "rb") as f:
        raw = _cscan.buffer(os.fstat(f.fileno()).st_size)
        got = f.readinto(raw)
        if got < len(raw):
            del raw[got:]
        raw += f.read()
    return raw


def scan(raw: bytearray, role: str):
    """The compiled reader's raw output for the file ``raw`` in ``role``: a predictions file that
    starts with ``[`` is scanned as a COCO results list (``_cscan.results``), a ground-truth file
    that starts with ``{`` as an entity dataset (``_cscan.entity``); None when the reader gave up;
    NOT_SCANNED when neither applies. ``raw`` is not changed (escapes are undone by ``_scan`` once
    the result is kept)."""
    reader = _reader(raw, role)
    return NOT_SCANNED if reader is None else reader(raw)


def _reader(raw: bytes | bytearray, role: str):
    """The compiled reader for a file that starts like ``raw`` in ``role``, or None."""
    start = _WS.match(raw).end()
    first = raw[start:start + 1]
    if first == b"[" and role == "pred":
        return _cscan.results
    if first == b"{" and role == "gt":
        return _cscan.entity
    return None


class ReadAhead:
    """One file read (:func:`read_bytes`) and scanned (:func:`scan`) in a daemon thread."""

    def __init__(self, path: str, role: str):
        self.path = path
        self.role = role
        self._out: tuple | None = None
        self._thread = threading.Thread(target=self._run, name=f"entitykit-read-{role}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with open(self.path, "rb") as f:
                head = f.read(_HEAD)
            if _reader(head, self.role) is None:  # not read ahead (a PNG, an HDF5 pack, …): formats reads it
                return
            raw = read_bytes(self.path)
            self._out = (raw, scan(raw, self.role))
        except BaseException:  # noqa: BLE001  (any failure: the reader reads the file itself and words it)
            self._out = None

    def take(self, path: str | os.PathLike, role: str) -> tuple | None:
        """``(bytes, scan)`` of ``path`` read for ``role``, once (waits for the thread); None when this
        read is of another file or role, failed, or was taken before."""
        if role != self.role or Path(path) != Path(self.path):
            return None
        self._thread.join()
        out, self._out = self._out, None
        return out


def start(src: object, role: str) -> ReadAhead | None:
    """Start reading ``src`` ahead when it is a path (str or os.PathLike) to a regular file; else None.
    The thread reads the whole file only when its first 4 KB show what a compiled reader scans in
    ``role`` (``[`` for predictions, ``{`` for ground truth after blanks): a PNG, an HDF5 pack or a
    predictions.json is left to ``formats``, which reads only what it needs."""
    if not isinstance(src, (str, os.PathLike)):
        return None
    try:
        if not stat.S_ISREG(os.stat(src).st_mode):
            return None
        return ReadAhead(os.fspath(src), role)
    except (OSError, ValueError, RuntimeError):  # no such file, a NUL in the name, no thread to be had
        return None
