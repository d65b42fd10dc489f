"""A longer CPU training run (about 20 min on 2 cores): held-out APe as training goes on.

    python benchmarks/bench_training_curve.py [--iterations 6000] [--eval-period 500] [--output runs/training-curve]

The `tiny` preset on synthetic 128×160 images (the demo's data, more of it), AdamW with a warm-up
and one learning-rate step at 80%, scored on held-out images every --eval-period iterations by the
training loop itself (`TrainConfig.val`). Prints one row per evaluation: iteration, wall time, mean
training loss since the previous row, APe / APe50 / APe75 / AR100. The run folder keeps
metrics.jsonl, curves.png and the final checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from entitykit.convert import convert_coco_panoptic
from entitykit.synth import write_synthetic_panoptic
from entitykit.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=6000)
    ap.add_argument("--eval-period", type=int, default=500)
    ap.add_argument("--train-images", type=int, default=96)
    ap.add_argument("--val-images", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default="runs/training-curve")
    args = ap.parse_args()
    out = Path(args.output)
    if out.exists():
        raise SystemExit(f"{out} exists: choose another --output")
    h, w = 128, 160
    paths = {}
    for split, n, s in (("train", args.train_images, 200), ("val", args.val_images, 201)):
        pan = write_synthetic_panoptic(out / "data" / split, n, height=h, width=w, segments=8, seed=s)
        paths[split] = out / "data" / f"{split}.json"
        convert_coco_panoptic(pan, image_root=pan.parent / "images").save(paths[split])
    t = time.perf_counter()
    run = train(TrainConfig(train=[str(paths["train"])], val=str(paths["val"]), output=str(out / "run"),
                            preset="tiny", max_iter=args.iterations, batch_size=4, lr=2e-3, warmup_iters=20,
                            lr_steps=[int(args.iterations * 0.8)], min_sizes=[h], max_size=w, seed=args.seed,
                            eval_period=args.eval_period, log_period=10,
                            model={"min_size_test": h, "max_size_test": w}))
    total = time.perf_counter() - t

    logs = [m for m in run.metrics if "loss" in m]
    evals = [m for m in run.metrics if "val/APe" in m]
    print(f"\n{args.iterations} iterations, tiny preset, batch 4, {args.train_images} train / {args.val_images} "
          f"held-out synthetic {h}×{w} images, seed {args.seed}: {total / 60:.1f} min in all")
    print("| iteration | minutes | mean loss since previous row | APe | APe50 | APe75 | AR100 |")
    print("|---|---|---|---|---|---|---|")
    prev = 0
    for e in evals:
        window = [m["loss"] for m in logs if prev < m["iter"] <= e["iter"]]
        minutes = next((m["time"] for m in logs if m["iter"] == e["iter"]), float("nan")) / 60
        print(f"| {e['iter']} | {minutes:.1f} | {statistics.mean(window):.3f} | {e['val/APe']:.3f} | "
              f"{e['val/APe50']:.3f} | {e['val/APe75']:.3f} | {e['val/AR100']:.3f} |")
        prev = e["iter"]
    print(f"curves: {run.output / 'curves.png'}; log: {run.output / 'metrics.jsonl'}")


if __name__ == "__main__":
    main()
