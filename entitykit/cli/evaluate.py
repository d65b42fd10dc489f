"""`entitykit eval GT PRED`: APe (pycocotools-exact), PQ, per source and per image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ._app import QUIET, app, console, err_console, is_stdout, print_json, user_errors


class Overlap(str, Enum):
    error = "error"
    resolve = "resolve"
    allow = "allow"


class PredFormat(str, Enum):
    auto = "auto"
    entitykit = "entitykit"
    coco = "coco"
    panoptic = "panoptic"


class Crowd(str, Enum):
    void = "void"
    keep = "keep"


@app.command("eval")
@user_errors
def eval_command(
    gt: Path = typer.Argument(..., help="Ground truth: entity dataset JSON, or COCO panoptic JSON (+ PNG folder)."),
    pred: Path = typer.Argument(..., help="Predictions: entitykit folder (predictions.json + id maps), "
                                          "COCO results JSON (a list of {image_id, segmentation: RLE, score}, or "
                                          "a COCO dict whose annotations carry a score), or COCO panoptic JSON "
                                          "(+ PNG folder). Anything else is named, with the command that "
                                          "converts it where one exists."),
    pred_format: PredFormat = typer.Option(PredFormat.auto, "--format", help="Prediction format (default: "
                                           "recognised from the content)."),
    overlap: Overlap = typer.Option(Overlap.error, help="Overlapping predictions: error (APe), resolve "
                                    "(highest score owns the pixel), allow (overlap-tolerant APm)."),
    max_dets: int = typer.Option(100, "--max-dets", min=1, help="Predictions kept per image, by score."),
    crowd: Crowd = typer.Option(Crowd.void, help="COCO panoptic GT: crowd segments become void, or are kept "
                                "as ignored iscrowd regions."),
    gt_png_dir: Optional[Path] = typer.Option(None, help="PNG folder of panoptic GT (default: named like the JSON)."),
    pred_png_dir: Optional[Path] = typer.Option(None, help="PNG folder of panoptic predictions."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every number, per-image results and "
                                            "the options used as JSON to this file (- = stdout; the "
                                            "tables then go to stderr)."),
    pr_curve: Optional[Path] = typer.Option(None, "--pr-curve", help="Write PR curves (area all) as a PNG."),
    worst: int = typer.Option(5, help="Show the N worst images (F1 at IoU 0.5); 0 to hide."),
    workers: int = typer.Option(0, help="Threads (0 = all cores)."),
    no_pq: bool = typer.Option(False, "--no-pq", help="Skip PQ/SQ/RQ."),
    quiet: bool = QUIET,
) -> None:
    """Score entity predictions: APe (COCO mask AP, class-agnostic, no overlap allowed) and PQ."""
    from ..errors import EntityKitError
    from ..evaluation import evaluate
    from ..evaluation.report import print_report, result_to_json, write_pr_curves, write_result_json
    from ..fileio import check_output

    if workers < 0:
        raise EntityKitError(f"--workers must be 0 (all cores) or a positive number, got {workers}")
    if worst < 0:
        raise EntityKitError(f"--worst must be 0 (hide) or a positive number, got {worst}")
    json_stdout = is_stdout(json_out)
    inputs = [gt, pred, gt_png_dir, pred_png_dir, pred / "predictions.json" if pred.is_dir() else None]
    files = [o for o in (None if json_stdout else json_out, pr_curve) if o is not None]
    for out in files:  # before any work: never over an input, a folder or under a file
        check_output(out, inputs=[*inputs, *(o for o in files if o is not out)])
    r = evaluate(gt, pred, gt_png_dir=gt_png_dir, pred_png_dir=pred_png_dir, pred_format=pred_format.value,
                 overlap=overlap.value, max_dets=max_dets, crowd=crowd.value, workers=workers, pq=not no_pq)
    say = err_console if json_stdout else console  # stdout holds nothing but the JSON when it is the JSON's
    if not quiet:
        print_report(r, say, worst=worst)
    if json_stdout:
        print_json(result_to_json(r), indent=None)  # compact, as the file
    elif json_out:
        write_result_json(r, json_out)
        if not quiet:
            say.print(f"wrote {escape(str(json_out))}", highlight=False, soft_wrap=True)
    if pr_curve:
        write_pr_curves(r, pr_curve)
        if not quiet:
            say.print(f"wrote {escape(str(pr_curve))}", highlight=False, soft_wrap=True)
