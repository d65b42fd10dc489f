"""`entitykit demo` and `entitykit synth`: everything runs offline on generated data."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import QUIET, Table, app, console, err_console, escape, user_errors


@app.command()
@user_errors
def demo(
    output: Path = typer.Option(Path("entitykit-demo"), "--output", "-o", help="Folder for everything the demo writes."),
    iterations: int = typer.Option(900, help="Training iterations of the tiny model (0: data stages only)."),
    train_images: int = typer.Option(48, help="Synthetic training images."),
    val_images: int = typer.Option(8, help="Held-out synthetic images that are scored."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files and numbers)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing demo folder."),
    quiet: bool = QUIET,
) -> None:
    """The whole job on built-in synthetic data, no downloads: synth → convert → check → train → predict → eval."""
    from ..demo import run_demo

    def log(msg: str) -> None:  # what each stage did: a log, so stderr (the APe table is the result)
        if not quiet:
            err_console.print(msg, highlight=False, soft_wrap=True)

    r = run_demo(output, train_images=train_images, val_images=val_images, iterations=iterations, seed=seed,
                 overwrite=overwrite, progress=not quiet, log=log)
    if r.summary is None or quiet:
        return
    names = ("APe", "APe50", "APe75", "APe_s", "APe_m", "APe_l", "AR100")
    t = Table(title=f"APe on {val_images} held-out synthetic images")
    for name in names:
        t.add_column(name, justify="right", no_wrap=True)
    t.add_row(*(f"{r.summary[k]:.3f}" for k in names))
    console.print(t)
    total = sum(r.seconds.values())
    console.print(f"{total:.0f} s in all ({', '.join(f'{k} {v:.0f} s' for k, v in r.seconds.items())}). "
                  f"Overlays: {escape(str(r.predictions / 'overlays'))}", highlight=False, soft_wrap=True)
    console.print(f"next: [cyan]entitykit eval {escape(str(r.val_json))} {escape(str(r.predictions))}[/] · "
                  f"[cyan]entitykit predict photo.jpg -c {escape(str(r.checkpoint))} -o out[/]", highlight=False,
                  soft_wrap=True)


@app.command()
@user_errors
def synth(
    output: Path = typer.Argument(..., help="Folder to write (<name>.json, <name>/*.png, images/*.jpg)."),
    images: int = typer.Option(100, help="Number of images."),
    height: int = typer.Option(480, help="Image height in pixels."),
    width: int = typer.Option(640, help="Image width in pixels."),
    segments: int = typer.Option(30, help="Segments per image (about)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    no_images: bool = typer.Option(False, "--no-images", help="Only the panoptic PNGs and JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    quiet: bool = QUIET,
) -> None:
    """Generate a synthetic dataset in COCO panoptic format (stuff incl. disconnected regions, things, void)."""
    from ..synth import write_synthetic_panoptic

    path = write_synthetic_panoptic(output, images, height=height, width=width, segments=segments, seed=seed,
                                    images=not no_images, overwrite=overwrite, progress=not quiet)
    if not quiet:
        console.print(f"wrote {images} images → {escape(str(path))}", highlight=False, soft_wrap=True)
