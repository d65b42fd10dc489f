"""`entitykit eval GT PRED`: APe (pycocotools-exact), PQ, per source and per image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ._app import QUIET, app, console, err_console, escape, is_stdout, print_json, user_errors


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


class Iou(str, Enum):
    mask = "mask"
    boundary = "boundary"
    both = "both"


class AreaRule(str, Enum):
    auto = "auto"
    mask = "mask"


def _boundary_png(path: Path) -> Path:
    """Where the boundary PR curves go when both are drawn: ``curves.png`` → ``curves.boundary.png``."""
    return path.with_name(f"{path.stem}.boundary{path.suffix or '.png'}")


@app.command("eval")
@user_errors
def eval_command(
    gt: Path = typer.Argument(..., help="Ground truth: entity dataset JSON, a sharded dataset's folder (scored shard by "
                                               "shard), or COCO panoptic JSON (+ PNG folder)."),
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
    iou: Iou = typer.Option(Iou.mask, "--iou", help="Matching IoU: mask (APe), boundary (Boundary APe: "
                            "min(mask IoU, boundary IoU), boundary-iou-api's definition), or both (two evaluations "
                            "of the same inputs)."),
    dilation_ratio: float = typer.Option(0.02, "--dilation-ratio", help="Boundary band width as a fraction of the "
                                         "image diagonal (boundary-iou-api's default 0.02)."),
    area_rule: AreaRule = typer.Option(AreaRule.auto, "--area-rule", help="Area that puts a prediction in the "
                                       "S/M/L ranges: auto (pycocotools' loadRes: bbox width × height when the "
                                       "first result has a bbox, else the mask's pixels) or mask (always the "
                                       "mask's pixels)."),
    crowd: Crowd = typer.Option(Crowd.void, help="COCO panoptic GT: crowd segments become void, or are kept "
                                "as ignored iscrowd regions."),
    gt_png_dir: Optional[Path] = typer.Option(None, help="PNG folder of panoptic GT (default: named like the JSON)."),
    pred_png_dir: Optional[Path] = typer.Option(None, help="PNG folder of panoptic predictions."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every number, per-image results and "
                                            "the options used as JSON to this file (- = stdout; the "
                                            "tables then go to stderr)."),
    pr_curve: Optional[Path] = typer.Option(None, "--pr-curve", help="Write PR curves (area all) as a PNG "
                                            "(with --iou both, the boundary curves beside it as NAME.boundary.png)."),
    worst: int = typer.Option(5, help="Show the N worst images (F1 at IoU 0.5); 0 to hide."),
    workers: int = typer.Option(0, help="Threads (0 = all cores)."),
    no_pq: bool = typer.Option(False, "--no-pq", help="Skip PQ/SQ/RQ."),
    quiet: bool = QUIET,
) -> None:
    """Score entity predictions: APe (COCO mask AP, class-agnostic, no overlap allowed) and PQ; Boundary APe
    with --iou boundary or both."""
    import os
    import sys

    if "numpy" not in sys.modules:  # scoring does no linear algebra: OpenBLAS need not start a thread per core
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (~0.1 CPU-s of start-up on 2 cores; see CHANGELOG)
    from ..errors import EntityKitError
    from ..evaluation import evaluate  # imports no numpy: evaluate reads the files while it imports it
    from ..evaluation.boundary import DEFAULT_DILATION_RATIO
    from ..fileio import check_output

    if workers < 0:
        raise EntityKitError(f"--workers must be 0 (all cores) or a positive number, got {workers}")
    if worst < 0:
        raise EntityKitError(f"--worst must be 0 (hide) or a positive number, got {worst}")
    json_stdout = is_stdout(json_out)
    inputs = [gt, pred, gt_png_dir, pred_png_dir, pred / "predictions.json" if pred.is_dir() else None]
    curves = [] if pr_curve is None else [pr_curve, _boundary_png(pr_curve)] if iou is Iou.both else [pr_curve]
    files = [o for o in (None if json_stdout else json_out, *curves) if o is not None]
    for out in files:  # before any work: never over an input, a folder or under a file
        check_output(out, inputs=[*inputs, *(o for o in files if o is not out)])
    if pr_curve is not None:  # then what the plot needs: a PNG name
        from ..plotting import png_name_problem  # noqa: PLC0415  (plotting imports matplotlib only when drawing)

        why = png_name_problem(pr_curve)
        if why:
            raise EntityKitError(why, pr_curve)
    kinds = ("mask", "boundary") if iou is Iou.both else iou.value
    if iou is Iou.mask and dilation_ratio != DEFAULT_DILATION_RATIO and not quiet:
        err_console.print("[yellow]warning:[/] --dilation-ratio applies to Boundary APe (--iou boundary or both); "
                          "ignored with --iou mask", highlight=False)
    r = evaluate(gt, pred, gt_png_dir=gt_png_dir, pred_png_dir=pred_png_dir, pred_format=pred_format.value,
                 overlap=overlap.value, max_dets=max_dets, crowd=crowd.value, workers=workers, pq=not no_pq,
                 iou=kinds, dilation_ratio=dilation_ratio, area_rule=area_rule.value, progress=not quiet)
    from ..evaluation.report import print_report, result_to_json, write_pr_curves, write_result_json

    say = err_console if json_stdout else console  # stdout holds nothing but the JSON when it is the JSON's
    if not quiet:
        print_report(r, say, worst=worst)
    if json_stdout:
        print_json(result_to_json(r), indent=None)  # compact, as the file
    elif json_out:
        write_result_json(r, json_out)
        if not quiet:
            say.print(f"wrote {escape(str(json_out))}", highlight=False, soft_wrap=True)
    for res, out in zip(r if isinstance(r, tuple) else (r,), curves):
        write_pr_curves(res, out)
        if not quiet:
            say.print(f"wrote {escape(str(out))}", highlight=False, soft_wrap=True)
