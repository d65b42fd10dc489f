"""Start-up time of the command line: `entitykit --help`, `--version` and `entitykit check` on a tiny
dataset, each the median wall time of N fresh processes.

    python benchmarks/bench_startup.py                      # this checkout
    python benchmarks/bench_startup.py --baseline /tmp/old  # … beside another source tree, e.g.
                                                            # mkdir /tmp/old && git archive HEAD entitykit | tar -x -C /tmp/old

Every process is `python -m entitykit …` with stdout and stderr piped (as in a script or CI);
with --baseline the two trees alternate, so both see the same machine load. The goal is
`entitykit --help` under 1 s on a quiet 2-core machine: no command imports PyTorch until it
needs a model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tiny_dataset(folder: Path) -> Path:
    from entitykit.convert import convert_coco_panoptic
    from entitykit.synth import write_synthetic_panoptic

    pan = write_synthetic_panoptic(folder / "synth", 4, height=64, width=80, segments=8, seed=0)
    out = folder / "tiny.json"
    convert_coco_panoptic(pan, image_root=folder / "synth" / "images").save(out)
    return out


def _env(source: Path | None) -> dict:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def wall(args: list[str], source: Path | None, cwd: Path) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "entitykit", *args], capture_output=True, text=True, env=_env(source),
                       cwd=cwd)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"entitykit {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return dt


def imported_from(source: Path | None, cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-c", "import entitykit, os; print(os.path.dirname(entitykit.__file__))"],
                       capture_output=True, text=True, env=_env(source), cwd=cwd, check=True)
    return r.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per command (median reported)")
    ap.add_argument("--baseline", type=Path, help="another entitykit source tree to time beside this one")
    a = ap.parse_args()
    trees: dict[str, Path | None] = {"this checkout": None}
    if a.baseline is not None:
        trees["baseline"] = a.baseline.resolve()
    with tempfile.TemporaryDirectory() as tmp:  # also the processes' working folder: no checkout on sys.path[0]
        tmp = Path(tmp)
        for name, src in trees.items():
            print(f"{name}: entitykit from {imported_from(src, tmp)}")
        data = tiny_dataset(tmp)
        commands = {"entitykit --help": ["--help"], "entitykit --version": ["--version"],
                    "entitykit check tiny.json": ["check", str(data), "-q"]}
        for args in commands.values():  # warm the file cache and the bytecode of both trees
            for src in trees.values():
                if args == ["--version"] and src is not None:
                    continue
                wall(args, src, tmp)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(a.repeat):
            for label, args in commands.items():
                for name, src in trees.items():
                    if args == ["--version"] and src is not None:
                        continue  # older trees may not have --version
                    times.setdefault((label, name), []).append(wall(args, src, tmp))
    print(f"\nmedian wall time of {a.repeat} fresh processes (min–max), {os.cpu_count()} CPUs\n")
    head = "| command | " + " | ".join(trees) + (" | × faster |" if len(trees) > 1 else " |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for label in commands:
        cells, meds = [], []
        for name in trees:
            ts = times.get((label, name))
            if ts is None:
                cells.append("—")
                continue
            med = statistics.median(ts)
            meds.append(med)
            cells.append(f"{med:.2f} s ({min(ts):.2f}–{max(ts):.2f})")
        ratio = f" | {meds[1] / meds[0]:.1f}×" if len(trees) > 1 and len(meds) == 2 else (" | —" if len(trees) > 1 else "")
        print(f"| `{label}` | " + " | ".join(cells) + ratio + " |")


if __name__ == "__main__":
    main()
