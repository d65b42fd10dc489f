"""Sharded SAM conversion at growing sizes: throughput and peak memory must stay flat.

    nice python benchmarks/bench_shards.py --sizes 2000 8000 20000 --workers 2
    nice python benchmarks/bench_shards.py --sizes --full-size 12   # only the SA-1B projection
    nice python benchmarks/bench_shards.py --sizes --sample DIR     # project from real SA-1B JSONs

Synthetic SA-1B-style inputs: one JSON per image with ``--masks`` overlapping elliptical masks
(COCO RLE, predicted_iou, stability_score, bbox, point_coords, crop_box as SA-1B has them) at
640×480; ``--templates`` distinct images are made and every input file is one of them with its own
ids (the conversion caches nothing, so each file costs what a distinct one would). Each size is
converted by ``convert_sam_sharded`` (what ``entitykit convert sam --shard-images S`` runs) in a fresh
process; its peak RSS (the main process: one shard's results; and the largest worker) and CPU time
(main + workers: insensitive to other load on a shared machine) come from ``getrusage``.

The projection for all of SA-1B (11 M images, 1.1 B masks, ~1500×2250) converts a few full-size
images on one core and scales the per-image time and output bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

SA1B_IMAGES = 11_000_000
SA1B_MASKS = 1_100_000_000


def template(rng: np.random.Generator, height: int, width: int, masks: int) -> list[dict]:
    """``masks`` SA-1B-style mask records: ellipses of every size, overlapping (parts and wholes)."""
    anns = []
    scale = min(height, width)
    for _ in range(masks):
        ry = float(np.exp(rng.uniform(np.log(0.01), np.log(0.3)))) * scale  # log-uniform: many small, few large
        rx = ry * rng.uniform(0.5, 2.0)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        y0, y1 = int(max(0, cy - ry)), int(min(height, cy + ry + 1))
        x0, x1 = int(max(0, cx - rx)), int(min(width, cx + rx + 1))
        m = np.zeros((height, width), np.uint8, order="F")
        yy, xx = np.ogrid[y0:y1, x0:x1]
        m[y0:y1, x0:x1] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if not m.any():
            m[min(int(cy), height - 1), min(int(cx), width - 1)] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode()
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        anns.append({"bbox": [x, y, w, h], "area": int(m.sum()), "segmentation": rle,
                     "predicted_iou": round(float(rng.uniform(0.8, 1.0)), 6),
                     "point_coords": [[round(cx, 3), round(cy, 3)]],
                     "crop_box": [0.0, 0.0, float(width), float(height)],
                     "stability_score": round(float(rng.uniform(0.9, 1.0)), 6)})
    return anns


def make_inputs(folder: Path, n: int, *, height: int, width: int, masks: int, templates: int, seed: int = 0) -> int:
    """Write ``n`` image JSONs into ``folder``; returns their total bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tpl = [template(rng, height, width, masks) for _ in range(min(templates, n))]
    total = 0
    for i in range(n):
        anns = [{**a, "id": i * 1000 + k} for k, a in enumerate(tpl[i % len(tpl)])]
        text = json.dumps({"image": {"image_id": i, "width": width, "height": height, "file_name": f"sa_{i}.jpg"},
                           "annotations": anns})
        (folder / f"sa_{i:08d}.json").write_text(text)
        total += len(text)
    return total


def run_one(inputs: Path, out: Path, shard_images: int, workers: int) -> dict:
    """Convert in THIS process (called in a fresh one) and report time and peak RSS."""
    from entitykit.convert import convert_sam_sharded

    t = time.perf_counter()
    run = convert_sam_sharded(inputs, out, rule="score", shard_images=shard_images, workers=workers)
    seconds = time.perf_counter() - t
    size = sum(s.bytes for s in run.shards)
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime  # the pool's workers are reaped: counted
    return {"images": run.images, "entities": run.entities, "seconds": seconds, "out_bytes": size, "cpu_seconds": cpu,
            "load": os.getloadavg()[0],
            "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def fresh(inputs: Path, out: Path, shard_images: int, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--_one", str(inputs), str(out), str(shard_images), str(workers)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 8000, 20000])
    ap.add_argument("--shard-images", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--masks", type=int, default=100)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--templates", type=int, default=64)
    ap.add_argument("--full-size", type=int, default=8, help="full-size (1500×2250) images for the SA-1B projection (0: skip)")
    ap.add_argument("--sample", type=Path, default=None,
                    help="a folder of real SA-1B image JSONs to project from instead of synthetic full-size ones")
    ap.add_argument("--cores", type=int, default=256, help="cores assumed by the projection")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: the system's)")
    ap.add_argument("--_one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        inputs, out, s, w = args._one
        print(json.dumps(run_one(Path(inputs), Path(out), int(s), int(w))))
        return

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        rows = []
        if args.sizes:
            biggest = max(args.sizes)
            t = time.perf_counter()
            in_bytes = make_inputs(tmp / "all", biggest, height=args.height, width=args.width, masks=args.masks,
                                   templates=args.templates)
            print(f"made {biggest:,} synthetic {args.width}×{args.height} SAM JSONs, {args.masks} masks each "
                  f"({in_bytes / biggest / 1e3:.0f} kB/image) in {time.perf_counter() - t:.0f} s", flush=True)
            names = sorted(p.name for p in (tmp / "all").iterdir())
            for n in args.sizes:
                folder = tmp / f"in{n}"
                folder.mkdir()
                for name in names[:n]:
                    os.symlink(tmp / "all" / name, folder / name)
                r = fresh(folder, tmp / f"out{n}", args.shard_images, args.workers)
                rows.append((n, r))
                print(f"  {n:>7,} images: {r['images'] / r['seconds']:6.1f} images/s, {1e3 * r['cpu_seconds'] / n:.0f} "
                      f"CPU ms/image, main {r['rss_main_mb']:.0f} MB, worker {r['rss_worker_mb']:.0f} MB, "
                      f"load {r['load']:.1f}", flush=True)
                shutil.rmtree(tmp / f"out{n}")
                shutil.rmtree(folder)
            shutil.rmtree(tmp / "all")
            print(f"\nsharded SAM conversion, {args.width}×{args.height}, {args.masks} masks/image, "
                  f"--shard-images {args.shard_images}, {args.workers} workers (each size in a fresh process)")
            print("| images | entities | seconds | images/s | CPU ms/image | peak RSS main (MB) | peak RSS worker (MB) "
                  "| output MB | load avg |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for n, r in rows:
                print(f"| {n:,} | {r['entities']:,} | {r['seconds']:.0f} | {r['images'] / r['seconds']:.1f} | "
                      f"{1e3 * r['cpu_seconds'] / n:.0f} | {r['rss_main_mb']:.0f} | {r['rss_worker_mb']:.0f} | "
                      f"{r['out_bytes'] / 1e6:.0f} | {r['load']:.1f} |")
            if len(rows) > 1:
                lo, hi = rows[0][1], rows[-1][1]
                print(f"largest / smallest: throughput {hi['images'] / hi['seconds'] / (lo['images'] / lo['seconds']):.2f}×, "
                      f"CPU per image {hi['cpu_seconds'] / hi['images'] / (lo['cpu_seconds'] / lo['images']):.2f}×, "
                      f"peak RSS main {hi['rss_main_mb'] / lo['rss_main_mb']:.2f}×")
        if args.full_size or args.sample:
            if args.sample:
                sample, n = args.sample, len(list(args.sample.glob("*.json")))
            else:
                sample, n = tmp / "full", args.full_size
                make_inputs(sample, n, height=1500, width=2250, masks=args.masks, templates=n, seed=1)
            r = fresh(sample, tmp / "out_full", max(1, n), 1)
            per_image = r["cpu_seconds"] / n  # one worker: CPU time ≈ wall time on an idle core
            per_image_bytes = r["out_bytes"] / n
            core_hours = per_image * SA1B_IMAGES / 3600
            what = f"{n} real images from {args.sample}" if args.sample else f"{n} × 2250×1500, {args.masks} masks"
            print(f"\nfull size ({what}, 1 core): {per_image:.2f} CPU s/image "
                  f"({r['seconds'] / n:.2f} s wall), "
                  f"{per_image_bytes / 1e3:.0f} kB output/image, peak RSS {r['rss_main_mb']:.0f} MB")
            print(f"SA-1B projection ({SA1B_IMAGES / 1e6:.0f} M images, {SA1B_MASKS / 1e9:.1f} B masks): "
                  f"{core_hours:,.0f} core-hours = {core_hours / args.cores:,.1f} h on {args.cores} cores; "
                  f"output {per_image_bytes * SA1B_IMAGES / 1e12:.2f} TB")


if __name__ == "__main__":
    main()
