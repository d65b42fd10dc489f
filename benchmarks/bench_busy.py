"""The demo's training (and prediction) on a quiet machine and beside one competing busy process,
with PyTorch's default thread count and with entitykit's rule (``entitykit.threads``).

What is timed is exactly what ``entitykit demo`` trains (``entitykit.demo.demo_train_config``: the
``tiny`` preset, batch 4, 48 synthetic 128×160 images), with fewer iterations, then ``predict`` on
the 8 held-out images (median of 3 calls). The competitor is another PyTorch job: a ``torch.matmul`` loop with
PyTorch's default threads (``--competitor matmul``, one thread per core), or one pure-Python
spinning thread (``--competitor spin``). Everything runs in one process, one row after another;
the load average before each row is printed, because other work on a shared machine shows in it.

    python benchmarks/bench_busy.py [--iterations 60] [--competitor matmul|spin] [--no-predict]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPETITORS = {
    "matmul": "import torch\na = torch.rand(512, 512)\nwhile True:\n    a @ a\n",
    "spin": "while True:\n    pass\n",
}


def start_competitor(kind: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # torch's default
    proc = subprocess.Popen([sys.executable, "-c", COMPETITORS[kind]], env=env)
    time.sleep(3)  # imported and spinning
    if proc.poll() is not None:
        raise SystemExit(f"the competing process exited with {proc.returncode}")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--competitor", choices=tuple(COMPETITORS), default="matmul")
    ap.add_argument("--no-predict", action="store_true", help="time training only")
    args = ap.parse_args()

    import torch

    default = torch.get_num_threads()  # before anything sets it: PyTorch's own choice
    from entitykit.demo import demo_train_config, run_demo
    from entitykit.predict import predict
    from entitykit.threads import available_cpus, choose_threads, physical_cores, use_threads
    from entitykit.train import train

    auto = choose_threads(0)
    print(f"{len(available_cpus())} CPUs available ({physical_cores()} physical cores); torch {torch.__version__}; "
          f"PyTorch's default {default} thread(s), entitykit's rule {auto}")
    root = Path(tempfile.mkdtemp(prefix="bench_busy."))
    try:
        demo = run_demo(root / "demo", iterations=0)  # the demo's data: 48 + 8 synthetic 128×160 images
        train(demo_train_config(demo.train_json, root / "warmup", 2, threads=auto), progress=False)  # one-time costs
        modes = {f"PyTorch's default ({default} threads)": default, f"entitykit rule, threads=0 ({auto})": 0}
        times: dict[tuple[str, str, str], float] = {}
        checkpoint = None
        n = 0

        def row(task: str, mode: str, condition: str) -> None:
            nonlocal checkpoint, n
            load = os.getloadavg()[0]
            n += 1
            t = time.perf_counter()
            if task == "train":
                run = train(demo_train_config(demo.train_json, root / f"run{n}", args.iterations,
                                              threads=modes[mode]), progress=False)
                checkpoint = checkpoint or run.final_checkpoint
                s = time.perf_counter() - t
            else:  # a second or two: the median of 3
                runs = []
                for k in range(3):
                    t = time.perf_counter()
                    with use_threads(modes[mode]):
                        predict(checkpoint, [], root / f"pred{n}_{k}", dataset=demo.val_json, overwrite=True)
                    runs.append(time.perf_counter() - t)
                s = sorted(runs)[1]
            times[task, mode, condition] = s
            print(f"  {task:7s} {condition:5s} {mode:34s} {s:7.1f} s   (1-min load before: {load:.2f})", flush=True)

        tasks = ["train"] + ([] if args.no_predict else ["predict"])
        for task in tasks:
            for mode in modes:
                row(task, mode, "quiet")
        competitor = start_competitor(args.competitor)
        try:
            for task in tasks:
                for mode in reversed(modes):  # the rule first: the default may take many times longer
                    row(task, mode, "busy")
        finally:
            competitor.kill()
            competitor.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{args.iterations} training iterations of the demo; predict = the 8 held-out images (median of 3); busy = one "
          f"competing process ({args.competitor})\n")
    print("| task | threads | quiet s | busy s | busy / quiet |")
    print("|---|---|---|---|---|")
    for task in tasks:
        for mode in modes:
            q, b = times[task, mode, "quiet"], times[task, mode, "busy"]
            print(f"| {task} | {mode} | {q:.1f} | {b:.1f} | {b / q:.2f}× |")


if __name__ == "__main__":
    main()
