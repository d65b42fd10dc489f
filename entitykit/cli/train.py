"""`entitykit train`: parse options into a TrainConfig, run, print where everything went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..train import load_train_config, train
from ._app import app, console, user_errors


@app.command("train")
@user_errors
def train_cmd(
    config: Optional[Path] = typer.Argument(None, help="TOML (or YAML) run configuration; see examples/configs/."),
    train_sets: List[Path] = typer.Option([], "--train", help="Training entity dataset (JSON or HDF5 pack); repeatable."),
    weights: List[float] = typer.Option([], "--weight", help="Sampling weight per --train set, in order."),
    val: Optional[Path] = typer.Option(None, "--val", help="Entity dataset scored with APe during and after training."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder [default: runs/entitykit]."),
    preset: Optional[str] = typer.Option(None, help="Model preset: tiny, r50_1x, r101_3x, swin_t_1x, r50_1x_baseline."),
    max_iter: Optional[int] = typer.Option(None, help="Iterations [default: the preset's]."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size, split across processes."),
    lr: Optional[float] = typer.Option(None, help="Base learning rate [default: the preset's]."),
    init: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights (and model config)."),
    overrides: List[str] = typer.Option([], "--set", help="Any option as key=value, dotted for the model (model.fpn_channels=64)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint, exactly."),
    stop_after: Optional[int] = typer.Option(None, help="Stop this process after N iterations (resume later)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train the entity model (one process, or under torchrun --nproc_per_node N for DDP)."""
    sets: list[str] = []
    if train_sets:
        sets.append(f"train={json.dumps([str(p) for p in train_sets])}")
    if weights:
        sets.append(f"train_weights={json.dumps(weights)}")
    for key, value in (("val", val), ("output", output), ("preset", preset), ("init", init)):
        if value is not None:
            sets.append(f"{key}={json.dumps(str(value))}")
    for key, value in (("max_iter", max_iter), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            sets.append(f"{key}={value}")
    cfg = load_train_config(config, [*sets, *overrides])
    result = train(cfg, resume=resume, progress=not quiet, stop_after=stop_after)
    console.print(f"trained {result.iterations} iterations → {result.output}")
    if result.final_checkpoint:
        console.print(f"checkpoint: {result.final_checkpoint}")
    if result.ape is not None:
        console.print(f"validation APe: {result.ape:.4f}")
