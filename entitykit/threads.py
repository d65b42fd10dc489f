"""How many CPU threads PyTorch uses: one rule for training, prediction and the demo.

``threads = N`` (``--threads N``) uses N threads per process. ``0``, the default, is the rule
:func:`choose_threads` implements:

1. ``OMP_NUM_THREADS``, when set to a positive integer, wins (it is the user's explicit choice;
   ``torchrun --nproc_per_node N`` sets it to 1 for each process unless it is already set);
2. otherwise the physical cores this process may run on (``os.sched_getaffinity``: a ``taskset``
   or container CPU mask counts, not the machine's total) are shared among the training
   processes of this machine (``LOCAL_WORLD_SIZE``, set by torchrun), and each process takes
   **all but one core of its share, at least 1**: 1 thread on a 1- or 2-core machine, 3 on 4
   cores, 7 per process for 2 processes on 16 cores. Processes on one machine never oversubscribe
   its cores.

Why, measured on a 2-core VM with ``python benchmarks/bench_busy.py --iterations 60 --competitor
spin|matmul`` (60 iterations of the demo's training; tables in ``benchmarks/RESULTS.md``): PyTorch's
default is one thread per core, and each parallel region ends when its slowest thread does. When
another process holds one of the cores, every region waits for the thread that shares it:

============================  =======  ===================  ====================
demo training, 60 iterations  quiet    beside 1 spinning    beside a 2-thread
                                       Python process       ``torch.matmul`` loop
============================  =======  ===================  ====================
PyTorch's default, 2 threads  23–25 s  66–217 s (2.8–9×)    345–400 s (14–19×)
1 thread (this rule)          32–33 s  32–39 s (0.97–1.03×) 55–82 s (1.3–2.6×)
============================  =======  ===================  ====================

``predict`` on the demo's 8 held-out images: 0.6 s / 0.7 s quiet, 30.5 s / 1.4 s beside the
matmul loop. So one thread costs about 1.4× on a quiet 2-core machine and saves 2–20× on a busy
one. Leaving one core free keeps one competing process from stalling every parallel region.

Why the rule does not look at the current load (``os.getloadavg``): the number of threads changes
the floating-point summation order, so the weights after 4 training iterations of the ``tiny``
model differ (max |Δ| 0.0095 between 1 and 2 threads, while two runs with the same thread count
are bit-identical). A rule that followed the load would make ``same seed ⇒ same weights`` and
exact ``--resume`` depend on what else ran at that moment; this one depends only on the machine.

Beyond 2 cores the rule is reasoning, not measurement (no larger machine was available): one
free core absorbs one single-threaded competitor; a competitor that itself uses every core slows
any multi-threaded run, and ``--threads 1`` is then the remedy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import EntityKitError

_SYS_CPU = Path("/sys/devices/system/cpu")


def available_cpus() -> set[int]:
    """The logical CPUs this process may run on (its affinity mask), or ``range(os.cpu_count())``."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        cpus = set(range(os.cpu_count() or 1))
    return set(cpus) or {0}


def physical_cores(cpus: set[int] | None = None) -> int:
    """Physical cores among ``cpus`` (default: :func:`available_cpus`): hyperthread siblings count
    once, as PyTorch's default does. Where the topology cannot be read, every logical CPU counts."""
    cpus = available_cpus() if cpus is None else cpus
    cores: set[str] = set()
    for cpu in cpus:
        try:
            siblings = (_SYS_CPU / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add(siblings)
    return max(1, len(cores))


def local_processes() -> int:
    """Processes training together on this machine: torchrun's ``LOCAL_WORLD_SIZE`` (else
    ``WORLD_SIZE``: several processes started by hand are taken to share one machine), else 1."""
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def check_threads(value: object, item: str = "threads") -> int:
    """``value`` as a thread request (an integer ≥ 0); anything else is one :class:`EntityKitError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntityKitError(f"expected an integer (0 = automatic), got {value!r}", item=item)
    if value < 0:
        raise EntityKitError(f"must be ≥ 0 (0 = automatic), got {value}", item=item)
    return value


def choose_threads(requested: int = 0, *, cores: int | None = None, processes: int | None = None) -> int:
    """The CPU threads one process uses: ``requested`` when > 0, else the rule of this module's
    docstring. ``cores`` (physical cores available) and ``processes`` (processes on this machine)
    default to what the machine and torchrun's environment say."""
    requested = check_threads(requested)
    if requested:
        return requested
    env = _env_threads()
    if env is not None:
        return env
    cores = physical_cores() if cores is None else max(1, int(cores))
    processes = local_processes() if processes is None else max(1, int(processes))
    share = max(1, cores // processes)
    return max(1, share - 1)


def set_threads(requested: int = 0) -> int:
    """Set PyTorch's intra-op threads for this process by :func:`choose_threads`; returns the count.
    For command-line entry points (``--threads N``); library calls use :func:`use_threads`."""
    import torch  # noqa: PLC0415

    n = choose_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def use_threads(requested: int | None = 0) -> Iterator[int]:
    """PyTorch's intra-op threads set by :func:`choose_threads` for the block, and put back after it
    (a library call leaves the process as it found it). ``None`` leaves the setting alone. Yields
    the count in force."""
    import torch  # noqa: PLC0415

    before = torch.get_num_threads()
    if requested is None:
        yield before
        return
    n = choose_threads(requested)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
