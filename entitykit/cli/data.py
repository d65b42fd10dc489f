"""Dataset commands: convert, info, check, idmaps."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal, Optional

import typer

from ._app import (
    QUIET, Table, _one_line, app, console, err_console, escape, print_json, shard_images_count,
    sub_app, user_errors, worker_count,
)

convert_app = sub_app("Convert a source dataset to the entity format.")
app.add_typer(convert_app, name="convert")

# The fixed choices, written here so that `--help` need not import the library; each equals the
# library's own tuple (tests/test_cli_conventions.py checks): masks.ID_MAP_FORMATS,
# convert._common.CROWD_MODES, convert._common.OVERLAP_RULES, convert.sam.SAM_RULES.
IdMapFormat = Literal["png16", "rgb"]
CrowdMode = Literal["void", "keep"]
EntitySegOverlap = Literal["error", "small-wins", "large-wins"]
SamRule = Literal["score", "small-wins", "large-wins"]
CityscapesSplit = Literal["train", "val", "test"]
Ade20kSplit = Literal["training", "validation", "train", "val"]
Ade20kForm = Literal["challenge", "full"]

ID_MAP_FORMAT_HELP = "Id-map PNG format: 16-bit grayscale, or panoptic RGB for > 65,535 ids."
PROBLEMS_SHOWN = 20  # conversion problems listed without --verbose


def _workers(n: int) -> int:
    return worker_count(n)


OUTPUT = typer.Option(..., "--output", "-o", help="Entity dataset JSON to write (a folder with --shard-images).")
WORKERS = typer.Option(0, "--workers", "-j", help="Worker processes (0 = all cores).")
KEEP_GOING = typer.Option(False, "--keep-going", help="Record problems and go on: skip bad images, drop bad segments.")
ID_MAPS = typer.Option(None, "--id-maps", help="Also write per-image id-map PNGs (the paper's P) to this folder.")
ID_MAP_FORMAT = typer.Option("png16", help=ID_MAP_FORMAT_HELP)
NO_PREVIEWS = typer.Option(False, "--no-previews", help="Skip the coloured previews of the id maps (previews/<name>.png; a 16-bit id map looks black in viewers).")
VERBOSE = typer.Option(False, "--verbose", "-v", help=f"List every recorded problem (not only the first {PROBLEMS_SHOWN}).")
IGNORE_EXIF = typer.Option(False, "--ignore-exif", help="Read images' stored pixels, ignoring their EXIF orientation (for datasets annotated on the un-rotated bitmap).")
SHARD_IMAGES = typer.Option(0, "--shard-images", help="Write a sharded dataset folder (-o) of shards of N input images (files) each, streaming (memory: one shard); 0 = one JSON file.")
SHARD = typer.Option(None, "--shard", help="K/N: convert only the K-th of N parts (one machine of N; 1 ≤ K ≤ N), then join the parts with entitykit shards merge.")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted sharded conversion: keep finished shards (SHA-256 checked), redo the rest.")
CROWD = typer.Option("void", help="Crowd regions: void (dropped, as the paper's authors did) or keep (iscrowd=1, ignored by scoring).")


@convert_app.command("coco-panoptic")
@user_errors
def convert_coco_panoptic_cmd(
    panoptic_json: Path = typer.Argument(..., help="COCO panoptic JSON (panoptic_{split}.json)."),
    png_dir: Optional[Path] = typer.Argument(None, help="Folder of panoptic PNGs [default: the JSON's name without .json]."),
    output: Path = OUTPUT,
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the images (recorded in the output)."),
    crowd: CrowdMode = CROWD,
    source: Optional[str] = typer.Option(None, help="Name recorded as every item's source [default: the JSON's stem]."),
    workers: int = WORKERS,
    keep_going: bool = KEEP_GOING,
    id_maps: Optional[Path] = ID_MAPS,
    id_map_format: IdMapFormat = ID_MAP_FORMAT,
    no_previews: bool = NO_PREVIEWS,
    shard_images: int = SHARD_IMAGES,
    shard: Optional[str] = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """COCO panoptic (also ADE20K / Cityscapes panoptic) → entities: every non-crowd segment is one entity.

    With --shard-images N the output is a sharded dataset folder (docs/sharding.md): streaming,
    resumable (--resume), and split over machines with --shard K/N."""
    from ..convert import convert_coco_panoptic, convert_coco_panoptic_sharded

    if _sharded_options(shard_images, shard, resume, id_maps, id_map_format, no_previews):
        return _print_shard_run(convert_coco_panoptic_sharded(
            panoptic_json, output, png_dir, shard_images=shard_images, part=shard, resume=resume, image_root=images,
            crowd=crowd, source=source, workers=_workers(workers), keep_going=keep_going, progress=not quiet),
            verbose, quiet)
    _outputs(output, id_maps, panoptic_json, png_dir, images)
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
    _finish(ds, output, id_maps, id_map_format, quiet, verbose, previews=not no_previews)


def _outputs(output: Path, id_maps: Optional[Path], *inputs: Optional[Path]) -> None:
    """Refuse bad output paths before converting (hours of work must not end in 'is a folder')."""
    from ..fileio import check_output

    check_output(output, inputs=inputs)
    if id_maps is not None:
        check_output(id_maps, kind="folder", inputs=[*inputs, output])


def _finish(ds, output: Path, id_maps: Optional[Path], id_map_format: str, quiet: bool, verbose: bool, *,
            previews: bool = True) -> None:
    """Write the id maps (and their previews, if asked) and the JSON; a failure of the second removes the first."""
    if id_maps is not None:
        existed = id_maps.exists()
        ds.export_id_maps(id_maps, id_map_format, progress=not quiet, previews=previews)
        try:
            ds.save(output)
        except BaseException:
            if not existed:
                shutil.rmtree(id_maps, ignore_errors=True)
            raise
    else:
        ds.save(output)
    if not quiet:
        _print_conversion(ds.info["conversion"], output, verbose)


@convert_app.command("cityscapes")
@user_errors
def convert_cityscapes_cmd(
    root: Path = typer.Argument(..., help="Cityscapes root holding gtFine/ and leftImg8bit/."),
    split: CityscapesSplit = typer.Option("val", help="The gtFine/ and leftImg8bit/ subfolder."),
    output: Path = OUTPUT,
    crowd: CrowdMode = CROWD,
    source: str = typer.Option("cityscapes", help="Name recorded as every item's source."),
    workers: int = WORKERS,
    keep_going: bool = KEEP_GOING,
    id_maps: Optional[Path] = ID_MAPS,
    id_map_format: IdMapFormat = ID_MAP_FORMAT,
    no_previews: bool = NO_PREVIEWS,
    shard_images: int = SHARD_IMAGES,
    shard: Optional[str] = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Cityscapes gtFine (instanceIds) → entities: 19 evaluated classes, thing pixels without instance = crowd.

    With --shard-images N the output is a sharded dataset folder (docs/sharding.md): streaming,
    resumable (--resume), and split over machines with --shard K/N."""
    from ..convert import convert_cityscapes, convert_cityscapes_sharded

    if _sharded_options(shard_images, shard, resume, id_maps, id_map_format, no_previews):
        return _print_shard_run(convert_cityscapes_sharded(
            root, output, split=split, shard_images=shard_images, part=shard, resume=resume, crowd=crowd,
            source=source, workers=_workers(workers), keep_going=keep_going, progress=not quiet), verbose, quiet)
    _outputs(output, id_maps, root)
    ds = convert_cityscapes(root, split, crowd=crowd, source=source, workers=_workers(workers), keep_going=keep_going,
                            progress=not quiet)
    _finish(ds, output, id_maps, id_map_format, quiet, verbose, previews=not no_previews)


@convert_app.command("ade20k")
@user_errors
def convert_ade20k_cmd(
    root: Path = typer.Argument(..., help="ADEChallengeData2016 folder (challenge form) or the ADE20K index tree (full form)."),
    split: Ade20kSplit = typer.Option("validation", help="Split of the challenge form (train = training, val = validation)."),
    form: Ade20kForm = typer.Option("challenge", "--form", help="challenge (semantic + instance PNGs) or full (*_seg.png)."),
    semantic_dir: Optional[Path] = typer.Option(None, help="Override annotations/<split>."),
    instance_dir: Optional[Path] = typer.Option(None, help="Override annotations_instance/<split>."),
    image_dir: Optional[Path] = typer.Option(None, help="Override images/<split>."),
    semantic_only: bool = typer.Option(False, "--semantic-only", help="No instance PNGs: one entity per class region."),
    output: Path = OUTPUT,
    source: str = typer.Option("ade20k", help="Name recorded as every item's source."),
    workers: int = WORKERS,
    keep_going: bool = KEEP_GOING,
    id_maps: Optional[Path] = ID_MAPS,
    id_map_format: IdMapFormat = ID_MAP_FORMAT,
    no_previews: bool = NO_PREVIEWS,
    shard_images: int = SHARD_IMAGES,
    shard: Optional[str] = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """ADE20K → entities: stuff classes from the semantic map, instances overwrite (or the full _seg.png form).

    With --shard-images N the output is a sharded dataset folder (docs/sharding.md): streaming,
    resumable (--resume), and split over machines with --shard K/N."""
    from ..convert import convert_ade20k, convert_ade20k_sharded

    if _sharded_options(shard_images, shard, resume, id_maps, id_map_format, no_previews):
        return _print_shard_run(convert_ade20k_sharded(
            root, output, split=split, form=form, shard_images=shard_images, part=shard, resume=resume,
            semantic_dir=semantic_dir, instance_dir=instance_dir, image_dir=image_dir, semantic_only=semantic_only,
            source=source, workers=_workers(workers), keep_going=keep_going, progress=not quiet), verbose, quiet)
    _outputs(output, id_maps, root)
    ds = convert_ade20k(root, split, form=form, semantic_dir=semantic_dir, instance_dir=instance_dir,
                        image_dir=image_dir, semantic_only=semantic_only, source=source, workers=_workers(workers),
                        keep_going=keep_going, progress=not quiet)
    _finish(ds, output, id_maps, id_map_format, quiet, verbose, previews=not no_previews)


@convert_app.command("entityseg")
@user_errors
def convert_entityseg_cmd(
    annotation_json: Path = typer.Argument(..., help="EntitySeg COCO-RLE JSON (match the images: *_lr.json ↔ images_lr/)."),
    output: Path = OUTPUT,
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the images (recorded in the output)."),
    overlap: EntitySegOverlap = typer.Option("error", help="Overlapping masks: refuse them, or the smaller or the larger mask owns the pixel."),
    crowd: CrowdMode = typer.Option("keep", help="iscrowd annotations: keep (iscrowd=1) or void."),
    source: str = typer.Option("entityseg", help="Name recorded as every item's source."),
    workers: int = WORKERS,
    keep_going: bool = KEEP_GOING,
    id_maps: Optional[Path] = ID_MAPS,
    id_map_format: IdMapFormat = ID_MAP_FORMAT,
    no_previews: bool = NO_PREVIEWS,
    shard_images: int = SHARD_IMAGES,
    shard: Optional[str] = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """EntitySeg → entities: validated, counts normalised, RLE size checked against each image, class kept as provenance.

    With --shard-images N the output is a sharded dataset folder (docs/sharding.md): streaming,
    resumable (--resume), and split over machines with --shard K/N."""
    from ..convert import convert_entityseg, convert_entityseg_sharded

    if _sharded_options(shard_images, shard, resume, id_maps, id_map_format, no_previews):
        return _print_shard_run(convert_entityseg_sharded(
            annotation_json, output, shard_images=shard_images, part=shard, resume=resume, image_root=images,
            overlap=overlap, crowd=crowd, source=source, workers=_workers(workers), keep_going=keep_going,
            progress=not quiet), verbose, quiet)
    _outputs(output, id_maps, annotation_json, images)
    ds = convert_entityseg(annotation_json, image_root=images, overlap=overlap, crowd=crowd, source=source,
                           workers=_workers(workers), keep_going=keep_going, progress=not quiet)
    _finish(ds, output, id_maps, id_map_format, quiet, verbose, previews=not no_previews)


@convert_app.command("sam")
@user_errors
def convert_sam_cmd(
    inputs: Path = typer.Argument(..., help="An SA-1B image JSON, an AMG coco_rle JSON, or a folder of them."),
    rule: SamRule = typer.Option(..., "--rule", help="Who owns a pixel two masks claim: the higher score, the smaller or the larger mask."),
    output: Path = typer.Option(..., "--output", "-o", help="Entity dataset JSON to write (a folder with --shard-images)."),
    score_key: str = typer.Option("predicted_iou", help="Score used by --rule score (or stability_score)."),
    min_area: int = typer.Option(0, help="Drop masks smaller than this many pixels before resolving."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the images (recorded in the output)."),
    image_ext: str = typer.Option(".jpg", help="Image suffix for AMG JSONs, which carry no file name."),
    source: str = typer.Option("sam", help="Name recorded as every item's source."),
    workers: int = WORKERS,
    keep_going: bool = KEEP_GOING,
    id_maps: Optional[Path] = ID_MAPS,
    id_map_format: IdMapFormat = ID_MAP_FORMAT,
    no_previews: bool = NO_PREVIEWS,
    shard_images: int = SHARD_IMAGES,
    shard: Optional[str] = SHARD,
    resume: bool = RESUME,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Segment Anything masks → entities, overlaps resolved by the declared --rule (recorded in the output).

    With --shard-images N the output is a sharded dataset folder (docs/sharding.md): streaming,
    resumable (--resume), and split over machines with --shard K/N."""
    from ..convert import convert_sam, convert_sam_sharded
    from ..convert.sam import check_sam_output

    if _sharded_options(shard_images, shard, resume, id_maps, id_map_format, no_previews):
        return _print_shard_run(convert_sam_sharded(
            inputs, output, rule=rule, shard_images=shard_images, part=shard, resume=resume, score_key=score_key,
            min_area=min_area, image_root=images, image_ext=image_ext, source=source, workers=_workers(workers),
            keep_going=keep_going, progress=not quiet), verbose, quiet)
    _outputs(output, id_maps, inputs, images)
    check_sam_output(inputs, output)
    if id_maps is not None:
        check_sam_output(inputs, id_maps, kind="folder")
    ds = convert_sam(inputs, rule=rule, score_key=score_key, min_area=min_area, image_root=images, image_ext=image_ext,
                     source=source, workers=_workers(workers), keep_going=keep_going, progress=not quiet)
    _finish(ds, output, id_maps, id_map_format, quiet, verbose, previews=not no_previews)


def _sharded_options(shard_images: int, shard: Optional[str], resume: bool, id_maps: Optional[Path],
                     id_map_format: str = "png16", no_previews: bool = False) -> bool:
    """Whether the sharded options ask for a sharded output; refuses them without --shard-images,
    and the id-map options (--id-maps, --id-map-format, --no-previews) with it: none is silently ignored."""
    from ..errors import EntityKitError

    if not shard_images_count(shard_images):
        if shard is not None or resume:
            raise EntityKitError(f"{'--shard' if shard is not None else '--resume'} needs --shard-images N "
                                 "(a sharded output folder)")
        return False
    if id_maps is not None:
        raise EntityKitError("--id-maps is not available with --shard-images: once the conversion is finished, "
                             f"write them for the whole sharded folder with entitykit idmaps OUTPUT -o {id_maps}")
    ignored = [f for f, given in (("--id-map-format", id_map_format != "png16"), ("--no-previews", no_previews))
               if given]
    if ignored:
        raise EntityKitError(f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} for --id-maps, which "
                             "is not available with --shard-images: once the conversion is finished, write the id "
                             "maps for the whole sharded folder with entitykit idmaps OUTPUT -o FOLDER (its --format, "
                             "--no-previews)")
    return True


def _print_shard_run(run, verbose: bool, quiet: bool = False) -> None:
    """What a sharded conversion did (nothing with ``quiet``)."""
    if quiet:
        return
    part = f" (part {run.part[0]}/{run.part[1]})" if run.part else ""
    # the part before the path: a long path folds at the table's width (80 columns), the part stays whole
    table = Table(title=f"converted{part} → {escape(str(run.output))}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", overflow="fold")
    table.add_row("shards", f"{len(run.shards):,} of {run.total_shards:,}: {run.converted:,} converted, "
                            f"{run.skipped:,} already finished")
    table.add_row("images", f"{run.images:,} of {run.images_in:,}")
    table.add_row("entities", f"{run.entities:,}")
    table.add_row("problems", f"{run.problems:,}")
    table.add_row("wrote", escape(str(run.written)))
    console.print(table)
    shown = run.first_problems if verbose else run.first_problems[:PROBLEMS_SHOWN]
    for p in shown:
        err_console.print(f"[yellow]skipped:[/] {escape(str(p))}", highlight=False, soft_wrap=True)
    if run.problems > len(shown):
        err_console.print(f"[yellow]… {run.problems - len(shown)} more problems listed in the shards' "
                          "info.conversion.problems[/]", highlight=False)
    if run.part and not run.shards:
        err_console.print(f"[yellow]part {run.part[0]}/{run.part[1]} has no shards to convert: the conversion has "
                          f"{run.total_shards:,} shard{'' if run.total_shards == 1 else 's'}, fewer than {run.part[1]:,} parts (wrote an empty part; "
                          f"--shard K/{min(run.part[1], run.total_shards)} would give each part work)[/]",
                          highlight=False, soft_wrap=True)
    if run.part:
        console.print(f"when all {run.part[1]} parts are done: entitykit shards merge "
                      f"{escape(str(run.output))} -o {escape(str(run.output))}", highlight=False, soft_wrap=True)


def _print_conversion(conv: dict, output: Path, verbose: bool) -> None:
    table = Table(title=f"converted → {escape(str(output))}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", overflow="fold")
    rows = [
        ("images", f"{conv['images']:,} of {conv['images_in']:,}"),
        ("entities", f"{conv['entities']:,}"),
        ("things / stuff", f"{conv['things']:,} / {conv['stuff']:,}" + (f" (+{conv['unknown_kind']:,} unknown)" if conv["unknown_kind"] else "")),
        ("crowd segments", f"{conv['crowd_segments']:,} → {'iscrowd=1' if conv.get('crowd') == 'keep' else 'void'}"),
        ("void fraction", f"{conv['void_fraction']:.2%}"),
        ("skipped images", f"{conv['skipped_images']:,}"),
        *([("overlap rule", f"{conv['overlap_rule']}: {conv['overlap_resolution']['changed_masks']:,} masks changed, "
            f"{conv['overlap_resolution']['dropped_masks']:,} dropped, {conv['overlap_resolution']['contested_pixels']:,} px contested")]
          if conv.get("overlap_resolution") else []),
        ("problems", f"{len(conv['problems']):,}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    shown = conv["problems"] if verbose else conv["problems"][:PROBLEMS_SHOWN]
    for p in shown:
        err_console.print(f"[yellow]skipped:[/] {escape(str(p['path']))}: {escape(str(p['item']))}: {escape(p['problem'])}",
                          highlight=False, soft_wrap=True)
    if len(conv["problems"]) > len(shown):
        err_console.print(f"[yellow]… {len(conv['problems']) - len(shown)} more problems listed in the output's "
                          "info.conversion.problems (--verbose lists them all)[/]", highlight=False)


def _num(v: float) -> str:
    """A statistic as its JSON value reads: 24 → "24", 23.5 → "23.5", 7.333… → "7.33" (never rounded to a
    different whole number)."""
    v = float(v)
    if v.is_integer():
        return f"{int(v):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


@app.command()
@user_errors
def info(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON, a sharded dataset's folder (read shard by shard), or a pack (entitykit pack)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON (on stdout)."),
    quiet: bool = QUIET,
) -> None:
    """Statistics of an entity dataset: entities per image, S/M/L areas, sources."""
    from ..stats import dataset_stats

    st = dataset_stats(dataset)
    if as_json:
        print_json(st.as_dict())
        return
    if quiet:
        return
    t = Table(title=escape(str(dataset)), show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(justify="right")
    t.add_row("images", f"{st.images:,}" + (f" ({st.empty_images:,} without entities)" if st.empty_images else ""))
    t.add_row("entities", f"{st.entities:,}" + (f" (+{st.crowd:,} crowd)" if st.crowd else ""))
    if st.things or st.stuff:
        t.add_row("things / stuff", f"{st.things:,} / {st.stuff:,}")
    e = st.entities_per_image
    t.add_row("entities per image", f"mean {_num(e['mean'])} · median {_num(e['p50'])} · min {_num(e['p0'])} · max {_num(e['p100'])}")
    t.add_row("  percentiles 5/25/75/95", " / ".join(_num(e[k]) for k in ("p5", "p25", "p75", "p95")))
    n = max(st.entities, 1)
    b = st.area_buckets
    t.add_row("area S / M / L", f"{b['small']:,} ({b['small'] / n:.0%}) / {b['medium']:,} ({b['medium'] / n:.0%}) / {b['large']:,} ({b['large'] / n:.0%})")
    t.add_row("pixels covered", f"{st.coverage:.1%}")
    s = st.image_sizes
    t.add_row("image sizes (h × w)", f"{s['min_height']}–{s['max_height']} × {s['min_width']}–{s['max_width']}")
    console.print(t)
    if st.sources:
        src = Table(title="sources")
        src.add_column("source", overflow="fold")
        src.add_column("images", justify="right", no_wrap=True)
        src.add_column("entities", justify="right", no_wrap=True)
        for name, c in sorted(st.sources.items()):
            src.add_row(escape(name), f"{c['images']:,}", f"{c['entities']:,}")
        console.print(src)


CHECK_PROBLEMS_SHOWN = 50


@app.command()
@user_errors
def check(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON, a sharded dataset's folder (read shard by shard), "
                                    "or a pack (entitykit pack: its shards' sizes, SHA-256 and every image read)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder [default: the one recorded in the file]."),
    no_image_files: bool = typer.Option(False, "--no-image-files", help="Do not look for the image files."),
    ignore_exif: bool = IGNORE_EXIF,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (on stdout)."),
    quiet: bool = QUIET,
    verbose: bool = typer.Option(False, "--verbose", "-v", help=f"List every problem (not only the first {CHECK_PROBLEMS_SHOWN})."),
) -> None:
    """Validate an entity dataset: schema, ids, RLE sizes, area/bbox, non-overlap, image files. Exit 1 on any problem."""
    from ..check import check_dataset

    report = check_dataset(dataset, image_root=images, check_images=not no_image_files, exif=not ignore_exif,
                           progress=not quiet)
    if as_json:
        print_json(report.as_dict())
    else:
        # the list when there is more than one problem (one problem: its error line below says it all);
        # -q keeps only the error line, unless -v asks for the list
        listed = len(report.problems) > 1 and (verbose or not quiet)
        shown = report.problems if verbose else report.problems[:CHECK_PROBLEMS_SHOWN]
        for p in shown if listed else ():
            err_console.print(f"[red]✗[/] {escape(_one_line(str(p)))}", highlight=False, soft_wrap=True)
        if listed and len(report.problems) > len(shown):
            err_console.print(f"[red]… {len(report.problems) - len(shown)} more[/] (--verbose lists them all)", highlight=False)
        for w in () if quiet else report.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(_one_line(w))}", highlight=False, soft_wrap=True)
        if not quiet:
            files = "image files checked" if report.checked_image_files else "image files not checked (no image folder)"
            status = "[green]OK[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
            # never partial counts that read as totals: a shard not read is named (CheckReport.counts_text)
            console.print(f"{status}: {escape(report.counts_text())}; {files}", highlight=False, soft_wrap=True)
    if not report.ok:
        # the last line, as every command's: the first problem (file, item, text) and how many more
        more = len(report.problems) - 1
        first = str(report.problems[0]) + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
        err_console.print(f"[bold red]error:[/] {escape(_one_line(first))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
@user_errors
def idmaps(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON, or a sharded dataset's folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (replaced atomically)."),
    fmt: IdMapFormat = typer.Option("png16", "--format", help=ID_MAP_FORMAT_HELP),
    no_previews: bool = NO_PREVIEWS,
    quiet: bool = QUIET,
) -> None:
    """Write per-image id-map PNGs (the paper's P), a coloured preview of each (previews/), and
    id_maps.json linking values to annotation ids."""
    from ..dataset import export_id_maps
    from ..fileio import check_output

    check_output(output, kind="folder", inputs=[dataset])
    n = export_id_maps(dataset, output, fmt, progress=not quiet, previews=not no_previews)
    if not quiet:
        console.print(f"wrote {n:,} id maps to {escape(str(output))}", highlight=False, soft_wrap=True)
