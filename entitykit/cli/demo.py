"""`entitykit demo` and `entitykit synth`: everything runs offline on generated data."""

from __future__ import annotations

from pathlib import Path

import typer

from ..demo import run_demo
from ..synth import write_synthetic_panoptic
from ._app import app, console, user_errors


@app.command()
@user_errors
def demo(
    output: Path = typer.Option(Path("entitykit-demo"), "--output", "-o", help="Folder for everything the demo writes."),
    images: int = typer.Option(24, help="Synthetic images to generate."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Conversion worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing demo folder."),
) -> None:
    """Run the whole job on built-in synthetic data: synth → convert → check → info → id maps. No downloads."""
    r = run_demo(output, images=images, seed=seed, workers=workers, overwrite=overwrite, progress=True)
    conv = r.dataset.info["conversion"]
    console.print(f"[bold]1. synthesized[/] {images} COCO-panoptic images → {r.out_dir / 'synthetic'}")
    console.print(f"[bold]2. converted[/] {conv['entities']:,} entities ({conv['things']} things, {conv['stuff']} stuff; "
                  f"{conv['crowd_segments']} crowd → void) → {r.entities_json}")
    console.print(f"[bold]3. checked[/] [green]OK[/]: non-overlapping, areas and boxes consistent, image files present")
    e = r.stats.entities_per_image
    b = r.stats.area_buckets
    console.print(f"[bold]4. statistics[/] {e['mean']:.1f} entities/image (median {e['p50']:.0f}, max {e['p100']:.0f}); "
                  f"S/M/L = {b['small']}/{b['medium']}/{b['large']}; {r.stats.coverage:.1%} of pixels covered")
    console.print(f"[bold]5. id maps[/] (16-bit PNG, the paper's P) → {r.id_maps}")
    console.print(f"next: [cyan]entitykit info {r.entities_json}[/] · [cyan]entitykit check {r.entities_json}[/]")


@app.command()
@user_errors
def synth(
    output: Path = typer.Argument(..., help="Folder to write (<name>.json, <name>/*.png, images/*.jpg)."),
    images: int = typer.Option(100, help="Number of images."),
    height: int = typer.Option(480),
    width: int = typer.Option(640),
    segments: int = typer.Option(30, help="Segments per image (about)."),
    seed: int = typer.Option(0),
    no_images: bool = typer.Option(False, "--no-images", help="Only the panoptic PNGs and JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Generate a synthetic dataset in COCO panoptic format (stuff incl. disconnected regions, things, void)."""
    path = write_synthetic_panoptic(output, images, height=height, width=width, segments=segments, seed=seed,
                                    images=not no_images, overwrite=overwrite, progress=True)
    console.print(f"wrote {images} images → {path}")
