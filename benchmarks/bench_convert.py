"""Conversion speed vs the floor: decoding the same panoptic PNGs and nothing else.

    python benchmarks/bench_convert.py --images 400

Prints images/s for decode-only (PIL + panopticapi rgb2id), conversion on one core (in memory, and
with the JSON written), and conversion with 2 workers, with the ratios, in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from panopticapi.utils import rgb2id
from PIL import Image

from entitykit.convert import convert_coco_panoptic
from entitykit.synth import write_synthetic_panoptic


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="*", default=[2])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        json_path = write_synthetic_panoptic(Path(tmp) / "data", args.images, segments=args.segments, images=False)
        print(f"made {args.images} synthetic 640×480 panoptic PNGs (~{args.segments} segments) in {time.perf_counter() - t:.1f}s")
        pngs = sorted((Path(tmp) / "data" / "panoptic_synth").glob("*.png"))

        def decode_only():
            for p in pngs:
                with Image.open(p) as im:
                    rgb2id(np.asarray(im))

        n = len(pngs)
        rows = [("decode only (PIL + rgb2id), 1 core", best_of(args.repeats, decode_only))]
        rows.append(("convert, 1 core, in memory", best_of(args.repeats, lambda: convert_coco_panoptic(json_path))))
        out = Path(tmp) / "out.json"
        rows.append(("convert + write JSON, 1 core", best_of(args.repeats, lambda: convert_coco_panoptic(json_path).save(out))))
        for w in args.workers:
            rows.append((f"convert + write JSON, {w} workers",
                         best_of(args.repeats, lambda: convert_coco_panoptic(json_path, workers=w).save(out))))
        floor = rows[0][1]
        entities = len(convert_coco_panoptic(json_path).annotations)
        print(f"{n} images, {entities} entities, best of {args.repeats}")
        print(f"{'':40s} {'seconds':>8s} {'images/s':>9s} {'× decode':>9s}")
        for name, s in rows:
            print(f"{name:40s} {s:8.2f} {n / s:9.1f} {s / floor:9.2f}")
        one = rows[2][1]
        for (name, s), w in zip(rows[3:], args.workers):
            print(f"speed-up with {w} workers vs 1 core: {one / s:.2f}× (ideal {w}×)")


if __name__ == "__main__":
    main()
