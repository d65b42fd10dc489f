"""Time and peak memory of one `Predictor` call: masks pasted at full size vs model size + nearest.

    python benchmarks/bench_predict_paste.py [--preset r50_1x] [--sizes 480x640 2000x2000 4000x6000]

Random weights with the score threshold at 0, so every image carries the full 100 detections
into the paste. Each (size, mode) runs in a fresh subprocess so peak RSS is its own; "before"
is the RSS once the model and the image exist. No weights are downloaded.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _one(preset: str, h: int, w: int, paste_pixels: int, threads: int) -> dict:
    import numpy as np
    import torch

    from entitykit.model import EntityModel, get_config
    from entitykit.predict import Predictor

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    predictor = Predictor(EntityModel(get_config(preset, score_thresh=0.0)), paste_pixels=paste_pixels)
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    predictor(image[:64, :64])  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    out = predictor(image)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "before_mib": before, "entities": int(len(out.scores)), "model_size": list(out.model_size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="r50_1x")
    ap.add_argument("--sizes", nargs="+", default=["480x640", "2000x2000", "4000x6000"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        h, w, paste = (int(v) for v in args.child.split(","))
        print(json.dumps(_one(args.preset, h, w, paste, args.threads)))
        return
    print(f"{args.preset}, 100 detections, {args.threads} threads; one fresh process per row")
    print("| image | paste | model input | s | peak RSS MiB | RSS before the call |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for paste, label in ((4_000_000, "full size (≤ 4 MP)"), (0, "model size + nearest")):
            if paste and h * w > paste:
                label = "model size + nearest (above 4 MP)"
            proc = subprocess.run([sys.executable, __file__, f"--preset={args.preset}", f"--threads={args.threads}",
                                   f"--child={h},{w},{paste}"], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"| {h}×{w} | {label} | {r['model_size'][0]}×{r['model_size'][1]} | {r['seconds']:.2f} | "
                  f"{r['peak_mib']:.0f} | {r['before_mib']:.0f} |")
            if paste and h * w > paste:
                break  # both modes are the same path above the limit


if __name__ == "__main__":
    main()
