"""Helpers shared by the sharded-conversion tests (test_shards_convert.py: SAM;
test_shards_converters.py: COCO panoptic, ADE20K, Cityscapes, EntitySeg)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from entitykit.shards import MANIFEST, PROGRESS_DIR, read_manifest


def dataset_files(folder: Path) -> dict[str, bytes]:
    """The files that make the dataset: manifest.json and every shard it lists."""
    names = [MANIFEST] + [s.file for s in read_manifest(folder).shards]
    return {n: (folder / n).read_bytes() for n in names}


def touch_images(folder: Path, names, size: tuple[int, int]) -> Path:
    """Black images of ``size`` (height, width) named ``names`` under ``folder`` (a converter reads each
    image's header: its size must be the source's)."""
    from PIL import Image

    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size[1], size[0])).save(folder / name)
    return folder


def entitykit(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process (its exit status and one-line errors as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "entitykit", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


def kill_when_blocked(argv: list[str], out: Path, finished: str) -> int:
    """Start ``argv`` (a sharded conversion whose next shard blocks on a FIFO input nobody writes),
    wait until its completion record ``.progress/<finished>`` exists, give it a moment to reach the
    FIFO, then SIGKILL it. Returns its pid (the name its temporaries carry). The wait is a
    condition on the run's own files, not a timing: a slow machine only waits longer (60 s at most)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / PROGRESS_DIR / finished).exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, f"the run never finished {finished}"
            time.sleep(0.02)
        time.sleep(0.3)  # now blocked on the FIFO, inside the next shard
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid
