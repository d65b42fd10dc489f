"""`entitykit train`: options into a TrainConfig (or the run folder's own, with --resume), run, print
where everything went."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Literal, Optional

import typer

from ..runs import DEFAULT_OUTPUT  # torch-free: entitykit.train (torch) is imported when the command runs
from ._app import QUIET_HELP, app, console, user_errors

# entitykit.model.config.PRESETS' names, written here so that `--help` does not import PyTorch
# (tests/test_cli_conventions.py checks they are equal).
Preset = Literal["tiny", "r50_1x", "r101_3x", "swin_t_1x", "r50_1x_baseline"]


@app.command("train")
@user_errors
def train_cmd(
    config: Optional[Path] = typer.Argument(None, help="TOML (or YAML) run configuration; see examples/configs/."),
    train_sets: List[Path] = typer.Option([], "--train", help="Training entity dataset (JSON, HDF5 pack, sharded dataset folder, or a quoted glob of packs such as 'packs/*.h5', read as one dataset); repeatable."),
    weights: List[float] = typer.Option([], "--weight", help="Sampling weight per --train set, in order."),
    val: Optional[Path] = typer.Option(None, "--val", help="Entity dataset scored with APe during and after training."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help=f"Run folder [default: {DEFAULT_OUTPUT}]."),
    preset: Optional[Preset] = typer.Option(None, help="Model preset [default: the configuration file's, else tiny]."),
    max_iter: Optional[int] = typer.Option(None, help="Iterations [default: the preset's]."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size, split across processes."),
    lr: Optional[float] = typer.Option(None, help="Base learning rate [default: the preset's]."),
    init: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights (and model config)."),
    overrides: List[str] = typer.Option([], "--set", help="Any option as key=value, dotted for the model (model.fpn_channels=64)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint, exactly; "
                                "its config.json holds the options (give none, or only the same ones; --max-iter may be raised)."),
    stop_after: Optional[int] = typer.Option(None, help="Stop this process after N iterations (resume later)."),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Periodic checkpoints to keep, the newest "
                                            "(the one --resume needs is always kept); 0 keeps all [default: 3]."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per process; 0 = automatic: "
                                          "OMP_NUM_THREADS if set, else all but one of the cores available to each "
                                          "process, 1 on a 2-core machine [default: 0]."),
    ignore_exif: bool = typer.Option(False, "--ignore-exif", help="Read images' stored pixels, ignoring EXIF orientation "
                                     "(datasets annotated on the un-rotated bitmap); = --set exif=false."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Train the entity model (one process, or under torchrun --nproc_per_node N for DDP)."""
    from ..train import TrainConfig, read_options, resume_config, train

    flags: dict[str, Any] = {}
    if train_sets:
        flags["train"] = [str(p) for p in train_sets]
    if weights:
        flags["train_weights"] = list(weights)
    for key, value in (("val", val), ("output", output), ("init", init)):
        if value is not None:
            flags[key] = str(value)
    for key, value in (("preset", preset), ("max_iter", max_iter), ("batch_size", batch_size), ("lr", lr),
                       ("keep_last", keep_last), ("threads", threads)):
        if value is not None:
            flags[key] = value
    if ignore_exif:
        flags["exif"] = False
    given = read_options(config, overrides, flags)
    if resume:
        cfg = resume_config(given.get("output", DEFAULT_OUTPUT), given)
    else:
        cfg = TrainConfig.from_dict(given)
    result = train(cfg, resume=resume, progress=not quiet, stop_after=stop_after)
    if quiet:
        return
    console.print(f"trained {result.iterations} iterations → {result.output}")
    if result.final_checkpoint:
        console.print(f"checkpoint: {result.final_checkpoint}")
    if result.ape is not None:
        console.print(f"validation APe: {result.ape:.4f}")
