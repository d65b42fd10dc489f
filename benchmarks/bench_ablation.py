"""The paper's Table 2b on synthetic data: baseline / + kernel bank / + overlap suppression / both.

    python benchmarks/bench_ablation.py --iterations 900 --seeds 0 1 2

Same data, same seed and schedule for every row (the `tiny` preset on CPU); only the two switches
differ. Prints APe / APe50 / APe75 / AR100 on held-out synthetic images and the training time.
Small synthetic data and short schedules make differences of a point or two noise: read the table
with the spread over seeds (--seeds 0 1 2) before drawing conclusions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from entitykit.convert import convert_coco_panoptic
from entitykit.evaluation import evaluate
from entitykit.model import baseline, get_config, load_checkpoint
from entitykit.synth import write_synthetic_panoptic
from entitykit.train import TrainConfig, predict_results, train

_FULL, _BASE = get_config("tiny"), baseline(get_config("tiny"))
VARIANTS = {  # the two switches of Table 2b: the kernel bank's extra paths, and the suppression loss
    "baseline": {"path_weights": _BASE.path_weights, "cluster_weight": 0.0},
    "+ kernel bank": {"path_weights": _FULL.path_weights, "cluster_weight": 0.0},
    "+ overlap suppression": {"path_weights": _BASE.path_weights, "cluster_weight": _FULL.cluster_weight},
    "both (paper)": {"path_weights": _FULL.path_weights, "cluster_weight": _FULL.cluster_weight},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=900)
    ap.add_argument("--train-images", type=int, default=48)
    ap.add_argument("--val-images", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    h, w = 128, 160
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {}
        for split, n, s in (("train", args.train_images, 100), ("val", args.val_images, 101)):
            pan = write_synthetic_panoptic(tmp / split, n, height=h, width=w, segments=8, seed=s)
            paths[split] = tmp / f"{split}.json"
            convert_coco_panoptic(pan, image_root=pan.parent / "images").save(paths[split])
        rows = {}
        for name, switches in VARIANTS.items():
            for seed in args.seeds:
                t = time.perf_counter()
                run = train(TrainConfig(train=[str(paths["train"])], output=str(tmp / f"run-{len(rows)}-{seed}"),
                                        preset="tiny", max_iter=args.iterations, batch_size=4, lr=2e-3, warmup_iters=20,
                                        lr_steps=[int(args.iterations * 0.8)], min_sizes=[h], max_size=w, seed=seed,
                                        model={**switches, "min_size_test": h, "max_size_test": w}, log_period=50),
                            progress=False)
                seconds = time.perf_counter() - t
                model = load_checkpoint(run.final_checkpoint)
                r = evaluate(paths["val"], predict_results(model, paths["val"]), pq=False, by_source=False)
                rows.setdefault(name, []).append((r.summary, seconds))
                print(f"{name} seed {seed}: APe {r.summary['APe']:.3f} ({seconds:.0f} s)", flush=True)
    print(f"\n{args.iterations} iterations, tiny preset, {args.train_images} train / {args.val_images} held-out "
          f"synthetic {h}×{w} images, seeds {args.seeds} (mean, and min–max when several)")
    print("| variant | APe | APe50 | APe75 | AR100 | train s |")
    print("|---|---|---|---|---|---|")
    for name, results in rows.items():
        cell = []
        for key in ("APe", "APe50", "APe75", "AR100"):
            vals = [s[key] for s, _ in results]
            spread = f" ({min(vals):.3f}–{max(vals):.3f})" if len(vals) > 1 else ""
            cell.append(f"{statistics.mean(vals):.3f}{spread}")
        print(f"| {name} | {' | '.join(cell)} | {statistics.mean(t for _, t in results):.0f} |")


if __name__ == "__main__":
    main()
