"""Dataset commands: convert, info, check, idmaps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..check import check_dataset
from ..convert import convert_coco_panoptic
from ..dataset import EntityDataset
from ..masks import ID_MAP_FORMATS
from ..stats import dataset_stats
from ._app import app, console, err_console, user_errors

convert_app = typer.Typer(help="Convert a source dataset to the entity format.", no_args_is_help=True)
app.add_typer(convert_app, name="convert")

ID_MAP_FORMAT_HELP = f"Id-map PNG format: {' or '.join(ID_MAP_FORMATS)} (16-bit grayscale, or panoptic RGB for > 65,535 ids)."


def _workers(n: int) -> int:
    return n if n > 0 else (os.cpu_count() or 1)


@convert_app.command("coco-panoptic")
@user_errors
def convert_coco_panoptic_cmd(
    panoptic_json: Path = typer.Argument(..., help="COCO panoptic JSON (panoptic_{split}.json)."),
    png_dir: Optional[Path] = typer.Argument(None, help="Folder of panoptic PNGs [default: the JSON's name without .json]."),
    output: Path = typer.Option(..., "--output", "-o", help="Entity dataset JSON to write."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the images (recorded in the output)."),
    crowd: str = typer.Option("void", help="Crowd segments: 'void' (dropped, as the paper's authors did) or 'keep' (iscrowd=1, ignored by scoring)."),
    source: Optional[str] = typer.Option(None, help="Name recorded as every item's source [default: the JSON's stem]."),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (0 = all cores)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Record problems and go on: skip bad images, drop bad segments."),
    id_maps: Optional[Path] = typer.Option(None, "--id-maps", help="Also write per-image id-map PNGs (the paper's P) to this folder."),
    id_map_format: str = typer.Option("png16", help=ID_MAP_FORMAT_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """COCO panoptic (also ADE20K / Cityscapes panoptic) → entities: every non-crowd segment is one entity."""
    ds = convert_coco_panoptic(
        panoptic_json,
        png_dir,
        image_root=images,
        crowd=crowd,
        source=source,
        workers=_workers(workers),
        keep_going=keep_going,
        progress=not quiet,
    )
    if id_maps is not None:
        ds.export_id_maps(id_maps, id_map_format, progress=not quiet)
    ds.save(output)
    _print_conversion(ds.info["conversion"], output)


def _print_conversion(conv: dict, output: Path) -> None:
    table = Table(title=f"converted → {output}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("images", f"{conv['images']:,} of {conv['images_in']:,}"),
        ("entities", f"{conv['entities']:,}"),
        ("things / stuff", f"{conv['things']:,} / {conv['stuff']:,}" + (f" (+{conv['unknown_kind']:,} unknown)" if conv["unknown_kind"] else "")),
        ("crowd segments", f"{conv['crowd_segments']:,} → {'void' if conv['crowd'] == 'void' else 'iscrowd=1'}"),
        ("void fraction", f"{conv['void_fraction']:.2%}"),
        ("skipped images", f"{conv['skipped_images']:,}"),
        ("problems", f"{len(conv['problems']):,}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    for p in conv["problems"][:20]:
        err_console.print(f"[yellow]skipped:[/] {p['path']}: {p['item']}: {p['problem']}", highlight=False)
    if len(conv["problems"]) > 20:
        err_console.print(f"[yellow]… {len(conv['problems']) - 20} more problems listed in the output's info.conversion.problems[/]")


@app.command()
@user_errors
def info(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Statistics of an entity dataset: entities per image, S/M/L areas, sources."""
    st = dataset_stats(dataset)
    if as_json:
        console.print_json(json.dumps(st.as_dict()))
        return
    t = Table(title=str(dataset), show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("images", f"{st.images:,}" + (f" ({st.empty_images:,} without entities)" if st.empty_images else ""))
    t.add_row("entities", f"{st.entities:,}" + (f" (+{st.crowd:,} crowd)" if st.crowd else ""))
    if st.things or st.stuff:
        t.add_row("things / stuff", f"{st.things:,} / {st.stuff:,}")
    e = st.entities_per_image
    t.add_row("entities per image", f"mean {e['mean']:.1f} · min {e['p0']:.0f} · p5 {e['p5']:.0f} · p25 {e['p25']:.0f} · "
              f"median {e['p50']:.0f} · p75 {e['p75']:.0f} · p95 {e['p95']:.0f} · max {e['p100']:.0f}")
    n = max(st.entities, 1)
    b = st.area_buckets
    t.add_row("area S / M / L", f"{b['small']:,} ({b['small'] / n:.0%}) / {b['medium']:,} ({b['medium'] / n:.0%}) / {b['large']:,} ({b['large'] / n:.0%})")
    t.add_row("pixels covered", f"{st.coverage:.1%}")
    s = st.image_sizes
    t.add_row("image sizes (h × w)", f"{s['min_height']}–{s['max_height']} × {s['min_width']}–{s['max_width']}")
    console.print(t)
    if st.sources:
        src = Table(title="sources")
        src.add_column("source")
        src.add_column("images", justify="right")
        src.add_column("entities", justify="right")
        for name, c in sorted(st.sources.items()):
            src.add_row(name, f"{c['images']:,}", f"{c['entities']:,}")
        console.print(src)


@app.command()
@user_errors
def check(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder [default: the one recorded in the file]."),
    no_image_files: bool = typer.Option(False, "--no-image-files", help="Do not look for the image files."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Validate an entity dataset: schema, ids, RLE sizes, area/bbox, non-overlap, image files. Exit 1 on any problem."""
    report = check_dataset(dataset, image_root=images, check_images=not no_image_files, progress=not quiet)
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
    else:
        for p in report.problems[:50]:
            err_console.print(f"[red]✗[/] {p}", highlight=False, soft_wrap=True)
        if len(report.problems) > 50:
            err_console.print(f"[red]… {len(report.problems) - 50} more[/]")
        files = "image files checked" if report.checked_image_files else "image files not checked (no image folder)"
        status = "[green]OK[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        console.print(f"{status}: {report.images:,} images, {report.annotations:,} annotations; {files}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def idmaps(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (replaced atomically)."),
    fmt: str = typer.Option("png16", "--format", help=ID_MAP_FORMAT_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write per-image id-map PNGs (the paper's P) and id_maps.json linking values to annotation ids."""
    n = EntityDataset.load(dataset).export_id_maps(output, fmt, progress=not quiet)
    console.print(f"wrote {n:,} id maps to {output}")
