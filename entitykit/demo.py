"""`entitykit demo`: the whole job on an embedded default, with nothing to download.

synthesize COCO-panoptic data (train + held-out) → convert to entities → check → train the `tiny`
model → predict the held-out images (id maps, scores, overlays) → score them with APe. Each stage
is the same library call a user makes on real data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .check import check_dataset
from .convert import convert_coco_panoptic
from .errors import EntityKitError
from .stats import DatasetStats, dataset_stats
from .synth import write_synthetic_panoptic


@dataclass
class DemoResult:
    out_dir: Path
    train_json: Path
    val_json: Path
    stats: DatasetStats
    checkpoint: Path | None = None
    predictions: Path | None = None
    summary: dict | None = None  # the 12 APe numbers on the held-out images
    seconds: dict | None = None


def run_demo(
    out_dir: str | Path = "entitykit-demo",
    *,
    train_images: int = 48,
    val_images: int = 8,
    iterations: int = 900,
    height: int = 128,
    width: int = 160,
    segments: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    threads: int = 0,
    log=lambda msg: None,
) -> DemoResult:
    """Run every stage; ``iterations=0`` stops after the data stages (no model). Options are checked
    before anything is written; a demo that stops leaves no half-made folder behind (a new one is removed).
    ``threads``: PyTorch's CPU threads for training and prediction (0: :mod:`entitykit.threads`' rule,
    1 on a 2-core machine, so a busy machine does not make the demo many times slower)."""
    from .fileio import check_output  # noqa: PLC0415
    from .synth import check_synth_options  # noqa: PLC0415
    from .threads import check_threads  # noqa: PLC0415

    check_threads(threads)

    for name, value, low in (("iterations", iterations, 0), ("train-images", train_images, 1),
                             ("val-images", val_images, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise EntityKitError(f"--{name} must be a whole number ≥ {low}, got {value!r}")
    check_synth_options(train_images, height=height, width=width, segments=segments, seed=seed)
    out_dir = Path(out_dir)
    check_output(out_dir, kind="folder", overwrite=overwrite)
    fresh = not out_dir.exists() or not any(out_dir.iterdir())
    if overwrite and (out_dir / "run").is_dir():  # --overwrite replaces the demo folder, its earlier run too
        shutil.rmtree(out_dir / "run")
    try:
        return _run(out_dir, train_images, val_images, iterations, height, width, segments, seed, progress, threads,
                    log)
    except BaseException:
        if fresh:  # a demo that stops (an error, Ctrl-C, a full disk) leaves no half-made folder behind
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def demo_train_config(train_json: str | Path, output: str | Path, iterations: int = 900, *, height: int = 128,
                      width: int = 160, seed: int = 0, threads: int = 0):
    """The demo's training run (the ``tiny`` preset, batch 4, AdamW 2e-3, a step at 80 %) as a
    :class:`~entitykit.train.TrainConfig`; ``benchmarks/bench_busy.py`` times exactly this."""
    from .train import TrainConfig  # noqa: PLC0415

    return TrainConfig(train=[str(train_json)], output=str(output), preset="tiny", max_iter=iterations, batch_size=4,
                       lr=2e-3, warmup_iters=min(20, iterations // 4), lr_steps=[int(iterations * 0.8)],
                       min_sizes=[height], max_size=width, model={"min_size_test": height, "max_size_test": width},
                       log_period=10, seed=seed, threads=threads)


def _run(out_dir: Path, train_images: int, val_images: int, iterations: int, height: int, width: int, segments: int,
         seed: int, progress: bool, threads: int, log) -> DemoResult:
    import time

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    paths = {}
    for split, n, s in (("train", train_images, seed), ("val", val_images, seed + 1)):
        pan = write_synthetic_panoptic(out_dir / "synthetic" / split, n, height=height, width=width, segments=segments,
                                       seed=s, overwrite=True)
        ds = convert_coco_panoptic(pan, image_root=pan.parent / "images", source=f"synthetic-{split}")
        ds.info["split"] = split
        paths[split] = out_dir / f"{split}.json"
        ds.save(paths[split])
        report = check_dataset(paths[split])
        if not report.ok:  # would be a bug in entitykit itself
            raise EntityKitError(f"demo dataset failed its check: {report.problems[0]}", paths[split])
    stats = dataset_stats(paths["train"])
    seconds["data"] = time.perf_counter() - t
    log(f"[bold]1. data[/] {train_images} + {val_images} synthetic COCO-panoptic images → entities "
        f"({stats.entities} training entities, {stats.entities_per_image['mean']:.1f} per image), checked")
    result = DemoResult(out_dir, paths["train"], paths["val"], stats, seconds=seconds)
    if iterations <= 0:
        return result

    from .evaluation import evaluate
    from .predict import predict
    from .threads import use_threads
    from .train import train

    t = time.perf_counter()
    run = train(demo_train_config(paths["train"], out_dir / "run", iterations, height=height, width=width, seed=seed,
                                  threads=threads), progress=progress)
    seconds["train"] = time.perf_counter() - t
    result.checkpoint = run.final_checkpoint
    log(f"[bold]2. trained[/] the tiny model for {iterations} iterations in {seconds['train']:.0f} s → {run.final_checkpoint}")

    t = time.perf_counter()
    with use_threads(threads):
        pred = predict(run.final_checkpoint, [], out_dir / "predictions", dataset=paths["val"], overwrite=True,
                       progress=progress)
    seconds["predict"] = time.perf_counter() - t
    result.predictions = pred.out_dir
    log(f"[bold]3. predicted[/] {len(pred.images)} held-out images: id maps, scores and overlays → {pred.out_dir}")

    t = time.perf_counter()
    r = evaluate(paths["val"], pred.out_dir)
    seconds["eval"] = time.perf_counter() - t
    result.summary = r.summary
    return result
