"""`entitykit view`: a static viewer folder (open index.html in a browser) for a dataset and/or a prediction run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, console, escape, user_errors


@app.command("view")
@user_errors
def view_cmd(
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Entity dataset JSON (ground truth)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="`entitykit predict` output folder (id maps + predictions.json)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder (default: the dataset's image_root; without a dataset, the paths predict recorded)."),
    output: Path = typer.Option(Path("entitykit-view"), "--output", "-o", help="Folder to write (static: open its index.html from disk; replaced atomically)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder once the new one is complete."),
    open_page: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    max_images: Optional[int] = typer.Option(None, "--max-images", metavar="N", help="Show only the first N images of the gallery (the N worst by APe when both inputs are given)."),
    ignore_exif: bool = typer.Option(False, "--ignore-exif", help="Read the images' stored pixels, ignoring their EXIF orientation."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Look at ground truth and predictions side by side in the browser: a gallery (worst per-image APe first),
    overlays, entity id / score / area / source on hover, and cutout / bokeh / recolor of a clicked entity."""
    from ..view import build_viewer

    def scored(overall: dict) -> None:
        if not quiet:
            ape = overall.get("APe")
            console.print(f"scored: APe {'—' if ape is None else f'{ape:.3f}'} over the whole set", highlight=False)

    index = build_viewer(dataset, predictions, output, images, max_images=max_images, overwrite=overwrite,
                         exif=not ignore_exif, progress=not quiet, on_scored=scored)
    if not quiet:
        console.print(f"wrote {escape(str(output))}/ → open {escape(str(index))} in a browser (works from disk)",
                      highlight=False, soft_wrap=True)
    if open_page:
        import webbrowser

        webbrowser.open(index.resolve().as_uri())
