"""``entitykit eval`` on one ground-truth JSON vs the same ground truth as a sharded dataset.

Cuts GT into ``--shards`` JSON shards (images in a seeded random order, so shards interleave in
image-id order), then runs ``entitykit eval GT RESULTS`` for both in fresh processes, interleaved,
``--repeat`` rounds, and prints wall time, peak RSS (the child's ru_maxrss) and whether the 12
numbers are identical. Example, on bench_eval.py's cached 5,000-image set::

    python benchmarks/bench_eval_sharded.py /tmp/h6/bench/coco-5000-s0-1src/gt.json \\
        /tmp/h6/bench/coco-5000-s0-1src/results.json --shards 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def write_shards(gt: Path, folder: Path, n: int, seed: int) -> Path:
    from entitykit.dataset import EntityDataset
    from entitykit.shards import entry_for_file, manifest_for, shard_counts, write_manifest

    ds = EntityDataset.load(gt)
    by_image = ds.annotations_by_image()
    order = list(range(len(ds.images)))
    random.Random(seed).shuffle(order)
    folder.mkdir(parents=True)
    entries = []
    for k in range(n):
        imgs = [ds.images[i] for i in order[k::n]]
        part = EntityDataset(images=imgs, annotations=[a for im in imgs for a in by_image[im["id"]]],
                             info=dict(ds.info))
        name = f"shard-{k:05d}.json"
        part.save(folder / name)
        # interleaved id ranges cannot be recorded (the manifest's ranges must be disjoint)
        entries.append(entry_for_file(folder, name, dict(shard_counts(part), image_ids=None, annotation_ids=None)))
    write_manifest(folder, manifest_for(folder, entries))
    return folder


def run(gt: Path, results: Path, out: Path) -> tuple[float, int, list]:
    """(wall s, peak RSS KiB, the 12 numbers) of one ``entitykit eval`` in a fresh process (timed
    and measured by a parent of its own, so that ru_maxrss is that run's alone)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "entitykit", "eval", str(gt), str(results),
                        "-q", "--json", str(out)], check=True, capture_output=True, text=True)
    wall, peak = p.stdout.split()
    return float(wall), int(peak), json.loads(out.read_text())["stats"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gt", type=Path)
    ap.add_argument("results", type=Path)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-eval-shards-") as tmp:
        folder = write_shards(a.gt, Path(tmp) / "shards", a.shards, a.seed)
        print(f"ground truth: {a.gt} ({a.gt.stat().st_size / 1e6:.0f} MB) and {a.shards} shards; results "
              f"{a.results} ({a.results.stat().st_size / 1e6:.0f} MB); load {os.getloadavg()[0]:.2f}")
        rows: dict = {"one file": [], f"{a.shards} shards": []}
        stats = {}
        for _ in range(a.repeat):  # interleaved rounds
            for name, gt in (("one file", a.gt), (f"{a.shards} shards", folder)):
                wall, peak, st = run(gt, a.results, Path(tmp) / "out.json")
                rows[name].append((wall, peak))
                stats[name] = st
        print("| ground truth | wall s (median [min–max]) | peak RSS MB (median) | same 12 numbers |")
        print("|---|---|---|---|")
        for name, vals in rows.items():
            walls = [w for w, _ in vals]
            peaks = [p / 1024 for _, p in vals]
            same = "reference" if name == "one file" else ("identical" if stats[name] == stats["one file"] else "DIFFERENT")
            print(f"| {name} | {statistics.median(walls):.2f} [{min(walls):.2f}–{max(walls):.2f}] | "
                  f"{statistics.median(peaks):.0f} | {same} |")


if __name__ == "__main__":
    main()
