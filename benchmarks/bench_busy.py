"""The demo's training (and prediction) on a quiet machine and beside one competing busy process,
with PyTorch's default thread count and with entitykit's rule (``entitykit.threads``).

What is timed is exactly what ``entitykit demo`` trains (``entitykit.demo.demo_train_config``: the
``tiny`` preset, batch 4, 48 synthetic 128×160 images), with fewer iterations, then ``predict`` on
the 8 held-out images (median of 3 calls). The competitor is another PyTorch job: a
``torch.matmul`` loop with PyTorch's default threads (``--competitor matmul``, one thread per
core), or one pure-Python spinning thread (``--competitor spin``). Rows run one after another;
each training row runs in a fresh process, stopped after ``--limit`` seconds (shown as ``> N``:
PyTorch's default beside a competitor can take 10–20× its quiet time). The load average before
each row is printed, because other work on a shared machine shows in it.

    python benchmarks/bench_busy.py [--iterations 60] [--competitor matmul|spin] [--limit 600] [--no-predict]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# each loop ends when its parent (this script) is gone, however the benchmark was stopped
COMPETITORS = {
    "matmul": "import os, torch\nparent = os.getppid()\na = torch.rand(512, 512)\nwhile os.getppid() == parent:\n    a @ a\n",
    "spin": "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n",
}


def start_competitor(kind: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # torch's default
    proc = subprocess.Popen([sys.executable, "-c", COMPETITORS[kind]], env=env)
    time.sleep(3)  # imported and spinning
    if proc.poll() is not None:
        raise SystemExit(f"the competing process exited with {proc.returncode}")
    return proc


def train_row(train_json: str, output: str, iterations: int, threads: int) -> None:
    """One timed training run (in its own process): prints {"seconds": s}."""
    from entitykit.demo import demo_train_config
    from entitykit.train import train

    t = time.perf_counter()
    train(demo_train_config(train_json, output, iterations, threads=threads), progress=False)
    print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--competitor", choices=tuple(COMPETITORS), default="matmul")
    ap.add_argument("--limit", type=float, default=600.0, help="seconds after which a training row is stopped")
    ap.add_argument("--no-predict", action="store_true", help="time training only")
    ap.add_argument("--train-row", nargs=4, metavar=("JSON", "OUT", "ITERATIONS", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train_row:
        train_json, out, iterations, threads = args.train_row
        train_row(train_json, out, int(iterations), int(threads))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still stops its competitor

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
    modes = {f"PyTorch's default ({default} threads)": default, f"entitykit rule, threads=0 ({auto})": 0}
    times: dict[tuple[str, str, str], float | None] = {}
    tasks = ["train"] + ([] if args.no_predict else ["predict"])
    competitor = None
    try:
        demo = run_demo(root / "demo", iterations=0)  # the demo's data: 48 + 8 synthetic 128×160 images
        checkpoint = train(demo_train_config(demo.train_json, root / "model", 20, threads=auto),
                           progress=False).final_checkpoint  # for the predict rows
        n = 0

        def row(task: str, mode: str, condition: str) -> None:
            nonlocal n
            n += 1
            load = os.getloadavg()[0]
            if task == "train":
                cmd = [sys.executable, __file__, "--train-row", str(demo.train_json), str(root / f"run{n}"),
                       str(args.iterations), str(modes[mode])]
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit)
                except subprocess.TimeoutExpired:
                    s = None
                else:
                    if done.returncode:
                        raise SystemExit(f"training row failed:\n{done.stderr[-3000:]}")
                    s = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
            else:  # a second or two: the median of 3
                runs = []
                for k in range(3):
                    t = time.perf_counter()
                    with use_threads(modes[mode]):
                        predict(checkpoint, [], root / f"pred{n}_{k}", dataset=demo.val_json, overwrite=True)
                    runs.append(time.perf_counter() - t)
                s = sorted(runs)[1]
            times[task, mode, condition] = s
            shown = f"{s:7.1f} s" if s is not None else f"> {args.limit:.0f} s (stopped)"
            print(f"  {task:7s} {condition:5s} {mode:34s} {shown}   (1-min load before: {load:.2f})", flush=True)

        for task in tasks:
            for mode in modes:
                row(task, mode, "quiet")
        competitor = start_competitor(args.competitor)
        for task in tasks:
            for mode in reversed(modes):  # the rule first: the default may take many times longer
                row(task, mode, "busy")
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{args.iterations} training iterations of the demo; predict = the 8 held-out images (median of 3); "
          f"busy = one competing process ({args.competitor})\n")
    print("| task | threads | quiet s | busy s | busy / quiet |")
    print("|---|---|---|---|---|")
    for task in tasks:
        for mode in modes:
            q, b = times[task, mode, "quiet"], times[task, mode, "busy"]
            if q is None:
                print(f"| {task} | {mode} | > {args.limit:.0f} | | |")
            elif b is None:
                print(f"| {task} | {mode} | {q:.1f} | > {args.limit:.0f} | > {args.limit / q:.1f}× |")
            else:
                print(f"| {task} | {mode} | {q:.1f} | {b:.1f} | {b / q:.2f}× |")


if __name__ == "__main__":
    main()
