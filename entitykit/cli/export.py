"""`entitykit export-onnx`: a checkpoint → an ONNX graph for one image size."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import typer

from ._app import QUIET, app, console, err_console, escape, user_errors


@app.command("export-onnx")
@user_errors
def export_onnx_cmd(
    checkpoint: Path = typer.Argument(..., help="Local model checkpoint (.safetensors)."),
    output: Path = typer.Option(..., "--output", "-o", help="ONNX file to write (atomically)."),
    size: Tuple[int, int] = typer.Option(..., "--size", metavar="HEIGHT WIDTH", help="Size of the images the graph takes, in pixels (any size; one graph per size)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    check: bool = typer.Option(False, "--check", help="Run the graph with onnxruntime beside PyTorch on a synthetic image and report agreement."),
    check_image: Optional[Path] = typer.Option(None, "--check-image", help="Check on this photo instead (resized to --size)."),
    quiet: bool = QUIET,
) -> None:
    """Export inference (normalisation, padding, detection, masks, non-overlap) as one ONNX graph:
    input `image` 1×3×H×W uint8 RGB; outputs `id_map` H×W int32, `scores`, `boxes`."""
    from ..fileio import check_output
    from ..images import read_image
    from ..model.export import check_export_options, export_checkpoint

    check_output(output, inputs=[checkpoint, check_image])
    check_export_options(size[0], size[1], opset)
    image = read_image(check_image) if check_image is not None else None
    path, result = export_checkpoint(checkpoint, output, size[0], size[1], opset=opset, check=check,
                                     check_image=image)
    if not quiet:
        console.print(f"wrote {escape(str(path))} ({path.stat().st_size / 2**20:.1f} MiB) for {size[0]}×{size[1]} images",
                      highlight=False, soft_wrap=True)
    if result is not None:
        if not quiet:
            console.print(f"onnxruntime vs PyTorch: id map agrees on {result.pixel_agreement:.4%} of pixels; "
                          f"{result.entities_onnx} vs {result.entities_torch} entities; largest score difference "
                          f"{result.max_score_diff:.2e}", highlight=False)
        if result.pixel_agreement < 0.999 or result.entities_onnx != result.entities_torch:
            err_console.print(f"[bold red]error:[/] the exported graph disagrees with PyTorch beyond float rounding "
                              f"(id map agrees on {result.pixel_agreement:.4%} of pixels; {result.entities_onnx} vs "
                              f"{result.entities_torch} entities; please report it with the checkpoint's preset and "
                              "this size)", highlight=False, soft_wrap=True)
            raise typer.Exit(1)


@app.command("import-weights")
@user_errors
def import_weights_cmd(
    source: Path = typer.Argument(..., help="The authors' released checkpoint (detectron2 .pth from their model zoo)."),
    output: Path = typer.Option(..., "--output", "-o", help="entitykit checkpoint to write (.safetensors, atomically)."),
    mask_rescore: Optional[bool] = typer.Option(
        None, "--mask-rescore/--no-mask-rescore",
        help="Multiply each score by its mask's mean probability (default: as the authors' README: on for Swin, "
             "off for ResNets)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = QUIET,
) -> None:
    """Import one of the authors' trained models (R-50, R-101, R-101-DCNv2, Swin-T, Swin-L) as an entitykit
    checkpoint for predict, edit, export-onnx and train --init. Read without running pickled code."""
    from ..model.authors import import_authors_checkpoint

    report = import_authors_checkpoint(source, output, mask_rescore=mask_rescore, overwrite=overwrite)
    if quiet:
        return
    console.print(f"{escape(report.architecture)}: {report.tensors} tensors → {escape(str(report.output))} "
                  f"(mask rescore {'on' if report.config.mask_rescore else 'off'}; {len(report.dropped)} unused "
                  f"tensors dropped; source sha256 {report.source_sha256[:12]}…)", highlight=False, soft_wrap=True)
