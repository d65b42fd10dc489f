"""`entitykit predict` (images → id maps, scores, COCO results, overlays) and `entitykit edit`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional, Tuple

import typer

from ._app import QUIET, app, console, err_console, escape, user_errors

# Written here so that `--help` does not import the model (PyTorch); each equals the library's
# value (tests/test_cli_conventions.py checks): entitykit.edit.OPS, entitykit.predict.FULL_PASTE_PIXELS.
EditOp = Literal["cutout", "bokeh", "recolor"]
FULL_PASTE_PIXELS = 4_000_000
OVERLAY_ALPHA = 0.35  # visualize.DEFAULT_ALPHA, written out so that --help stays light

SAVE_FORMATS = {".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG",
                ".bmp": "BMP"}
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
THREADS = typer.Option(0, "--threads", help="CPU threads for the model (0 = automatic: OMP_NUM_THREADS if set, else all but one of the available cores, 1 on a 2-core machine).")


def _set_threads(n: int) -> None:
    from ..threads import set_threads

    set_threads(n)  # 0 = entitykit.threads' rule; n < 0 → EntityKitError naming "threads"


@app.command()
@user_errors
def predict(
    inputs: Optional[List[str]] = typer.Argument(None, help="Image files, folders (searched recursively) or glob patterns."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Local model checkpoint (.safetensors); never downloaded."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (replaced atomically)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Entity dataset JSON (or a sharded dataset's folder): predict its images with its ids, so `entitykit eval` scores the run."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder for --dataset (default: the one recorded in the file)."),
    min_score: float = typer.Option(0.0, "--min-score", help="Drop entities scoring lower (keep 0 for scoring: AP wants every entity)."),
    max_size: Optional[int] = typer.Option(None, "--max-size", help="Longest side the model sees (default: the checkpoint's max_size_test); id maps are pasted back at full resolution."),
    paste_pixels: int = typer.Option(FULL_PASTE_PIXELS, "--paste-pixels", help="Images up to this many pixels get masks pasted at full resolution (as the authors); larger ones get the model-size map enlarged (bounded memory)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, …"),
    no_overlays: bool = typer.Option(False, "--no-overlays", help="Skip the overlay PNGs."),
    overlay_alpha: float = typer.Option(OVERLAY_ALPHA, "--overlay-alpha", min=0.0, max=1.0, help="Fill opacity of the overlay tint: 0 shows only the photo and entity edges, 1 paints entities solid."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Write each entity's id and score on the overlay, inside the entity (the id of predictions.json and of `edit --point`)."),
    no_previews: bool = typer.Option(False, "--no-previews", help="Skip the coloured previews of the 16-bit id maps (previews/<name>.png)."),
    cutouts: bool = typer.Option(False, "--cutouts", help="Also write each entity as an RGBA PNG cropped to its box."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Skip unreadable images (listed under info.problems in predictions.json) instead of stopping."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder once the new one is complete."),
    ignore_exif: bool = typer.Option(False, "--ignore-exif", help="Read the images' stored pixels, ignoring their EXIF orientation."),
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Segment entities in images: per image a 16-bit id map + scores (the scorer's format), a COCO RLE
    results JSON, overlays and optional cutouts."""
    from ..fileio import check_output
    from ..predict import predict as run_predict

    _set_threads(threads)
    check_output(output, kind="folder", inputs=[checkpoint, dataset])

    def problem(p: dict) -> None:
        if not quiet:
            err_console.print(f"[yellow]skipped:[/] {escape(p['path'])}: {escape(p['problem'])}", highlight=False,
                              soft_wrap=True)

    run = run_predict(checkpoint, inputs, output, min_score=min_score, device=device, overlays=not no_overlays,
                      cutouts=cutouts, dataset=dataset, image_root=images, max_size=max_size,
                      paste_pixels=paste_pixels, keep_going=keep_going, exif=not ignore_exif,
                      overwrite=overwrite, progress=not quiet, on_problem=problem, previews=not no_previews,
                      overlay_alpha=overlay_alpha, overlay_labels=labels)
    if quiet:
        return
    n = len(run.images)
    per = run.model_seconds / n if n else 0.0
    console.print(f"{n:,} images, {run.entities:,} entities on {run.settings['device']} "
                  f"({per:.2f} s/image in the model, {run.seconds:.1f} s in all) → {escape(str(output))}",
                  highlight=False, soft_wrap=True)
    if run.problems:
        err_console.print(f"[yellow]{len(run.problems)} image(s) skipped[/] (listed under info.problems in "
                          f"{escape(str(run.predictions_json))})", highlight=False)
    gt = escape(str(dataset)) if dataset is not None else "GT.json"
    console.print(f"score with: [cyan]entitykit eval {gt} {escape(str(output))}[/]", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def edit(
    image: Path = typer.Argument(..., help="Photo to edit (EXIF orientation is applied)."),
    point: Tuple[float, float] = typer.Option(..., "--point", metavar="X Y", help="A pixel of the entity to edit (x = column, y = row)."),
    op: EditOp = typer.Option(..., "--op", help="cutout (RGBA, transparent elsewhere), bokeh (blur the rest) or recolor (hue shift)."),
    output: Path = typer.Option(..., "--output", "-o", help="Image to write (.png; cutouts need PNG, WebP or TIFF)."),
    id_map: Optional[Path] = typer.Option(None, "--id-map", help="Id-map PNG of the image (from `entitykit predict`)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Predict the id map with this local checkpoint instead."),
    hue: float = typer.Option(0.3, "--hue", help="recolor: hue rotation in turns (0.5 = opposite colour)."),
    blur: float = typer.Option(12.0, "--blur", help="bokeh: blur disk radius in pixels."),
    feather: Optional[float] = typer.Option(None, "--feather", help="bokeh: soft edge width in pixels, outside the entity (default: blur/4)."),
    crop: bool = typer.Option(False, "--crop", help="cutout: crop to the entity's box."),
    max_size: Optional[int] = typer.Option(None, "--max-size", help="With --checkpoint: longest side the model sees."),
    min_score: float = typer.Option(0.0, "--min-score", help="With --checkpoint: drop entities scoring lower."),
    device: str = typer.Option("auto", "--device", help="With --checkpoint: auto, cpu, cuda, …"),
    threads: int = THREADS,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file (never an input)."),
    quiet: bool = QUIET,
) -> None:
    """Edit one entity picked by a point: cut it out, blur everything else (bokeh), or shift its hue."""
    from PIL import Image

    from ..edit import edit_image
    from ..errors import EntityKitError
    from ..fileio import atomic_path, check_output
    from ..images import read_image
    from ..masks import read_id_map_png

    if (id_map is None) == (checkpoint is None):
        raise EntityKitError("give exactly one of --id-map and --checkpoint")
    fmt = SAVE_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise EntityKitError(f"unknown output type {output.suffix!r}; use one of {', '.join(SAVE_FORMATS)}", output)
    if op == "cutout" and fmt not in ALPHA_FORMATS:
        raise EntityKitError("a cutout has transparency; write .png, .webp or .tif", output)
    check_output(output, inputs=[image, id_map, checkpoint], overwrite=overwrite)
    img = read_image(image)
    if id_map is not None:
        ids = read_id_map_png(id_map)
        if ids.shape != img.shape[:2]:
            raise EntityKitError(f"id map is {ids.shape[1]}×{ids.shape[0]} but the image is "
                                 f"{img.shape[1]}×{img.shape[0]} (EXIF orientation applied)", id_map)
    else:
        from ..model.predictor import Predictor  # PyTorch: only when the id map is predicted

        _set_threads(threads)
        ids = Predictor(checkpoint, device=device, min_score=min_score, max_size=max_size)(img).id_map
    result, k = edit_image(img, ids, point, op, hue=hue, blur=blur, feather=feather, crop=crop)
    with atomic_path(output) as tmp:
        Image.fromarray(result).save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    if quiet:
        return
    n = int((ids == k).sum())
    console.print(f"{op}: entity {k} ({n:,} px, {n / ids.size:.1%} of the image) → {escape(str(output))}",
                  highlight=False, soft_wrap=True)
