"""Dataset-mix commands: merge (several entity datasets → one) and pack (→ HDF5 shards)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

import typer

from ..errors import EntityKitError
from ._app import QUIET, Table, app, console, err_console, escape, shard_images_count, user_errors, worker_count

Split = Literal["train", "val", "test"]  # = entitykit.merge.SPLITS (tests/test_cli_conventions.py checks)
DEFAULT_SHARD_IMAGES = 5000  # = entitykit.pack.DEFAULT_SHARD_IMAGES (checked likewise; pack imports h5py)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise EntityKitError(f"{what} must look like NAME=VALUE, got {v!r}")
        if name in out:
            raise EntityKitError(f"{what} given twice for {name!r}")
        out[name] = rest
    return out


@app.command()
@user_errors
def merge(
    inputs: list[Path] = typer.Argument(..., help="Entity dataset JSONs (or sharded datasets' folders) to merge (all of one split)."),
    output: Path = typer.Option(..., "--output", "-o", help="Merged entity dataset JSON to write (atomically); a sharded dataset folder with --shard-images."),
    names: Optional[str] = typer.Option(None, "--names", help="Comma-separated input names (default: each input's source, else its file stem)."),
    weight: list[str] = typer.Option([], "--weight", "-w", help="NAME=W, repeated: relative share of the output per input (give every input one)."),
    total: Optional[int] = typer.Option(None, "--total", "-n", help="Number of output images (default: all input images, each once — the paper's Table 4 setting)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling."),
    split: Optional[Split] = typer.Option(None, "--split", help="The split of every input (required when it cannot be inferred)."),
    holdout: list[Path] = typer.Option([], "--holdout", help="Validation dataset whose images must not be in the output (repeatable)."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Drop later copies of an image whose file bytes equal an earlier one."),
    drop_holdout_overlap: bool = typer.Option(False, "--drop-holdout-overlap", help="Drop images also in a --holdout set instead of refusing."),
    no_hash: bool = typer.Option(False, "--no-content-check", help="Do not read image files (no duplicate or holdout detection)."),
    images: list[str] = typer.Option([], "--images", help="NAME=DIR, repeated: image folder of an input (overrides its info.image_root)."),
    workers: int = typer.Option(4, "--workers", "-j", help="Threads hashing image files (0 = all cores)."),
    shard_images: int = typer.Option(0, "--shard-images", help="Write a sharded dataset folder (-o) of N output images per JSON shard, streaming (memory: one input shard); 0 = one JSON file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --shard-images: replace an existing non-empty output folder (a JSON output is replaced as always)."),
    quiet: bool = QUIET,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every group of duplicate images (not only the first 5)."),
) -> None:
    """Merge entity datasets: ids re-based, provenance kept, duplicates reported, weighted sampling to a fixed total.

    With --shard-images N the output is a sharded dataset folder (docs/sharding.md) holding the
    same images and annotations, written input shard by input shard."""
    from ..fileio import check_output
    from ..merge import merge_datasets, merge_to_shards

    shard_images_count(shard_images)
    weights = {k: _float(k, v) for k, v in _pairs(weight, "--weight").items()} or None
    n_workers = worker_count(workers)
    check_output(output, kind="folder" if shard_images else "file", inputs=[*inputs, *holdout],
                 overwrite=overwrite or not shard_images)
    options = {
        "names": [n.strip() for n in names.split(",")] if names else None,
        "image_roots": _pairs(images, "--images") or None,
        "weights": weights,
        "total": total,
        "seed": seed,
        "split": split,
        "holdout": holdout,
        "dedupe": dedupe,
        "drop_holdout_overlap": drop_holdout_overlap,
        "hash_images": not no_hash,
        "workers": n_workers,
        "progress": not quiet,
    }
    if shard_images:
        res = merge_to_shards(inputs, output, shard_images=shard_images, overwrite=overwrite, **options)
        rep, image_root, shards = res.report, res.image_root, f"{len(res.manifest.shards):,} shards, "
        report_key = "manifest.json's merge"
    else:
        ds = merge_datasets(inputs, **options)
        ds.save(output)
        rep, image_root, shards = ds.info["merge"], ds.image_root, ""
        report_key = "info.merge"
    if quiet:
        return
    t = Table(title=f"merged → {escape(str(output))} ({shards}split {rep['split']}, seed {rep['seed']})")
    # weights and sampling columns only when they say something (the default mix takes every image once)
    weighted = any(r["weight"] is not None for r in rep["inputs"])
    sampled = any(r["max_copies"] != 1 or r["unique_images_out"] != r["images_out"] for r in rep["inputs"])
    cols = ["input", "split", "images", *(["weight"] if weighted else []), "images\nout",
            *(["unique", "max\ncopies"] if sampled else []), "annotations\nout"]
    for col in cols:
        left = col in ("input", "split")
        t.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=not left)  # numbers never break

    def row(r: dict) -> list[str]:
        cells = {"input": escape(r["name"]), "split": r["split"], "images": f"{r['images']:,}",
                 "weight": "" if r["weight"] is None else f"{r['weight']:g}", "images\nout": f"{r['images_out']:,}",
                 "unique": f"{r['unique_images_out']:,}", "max\ncopies": str(r["max_copies"]),
                 "annotations\nout": f"{r['annotations_out']:,}"}
        return [cells[c] for c in cols]

    for r in rep["inputs"]:
        t.add_row(*row(r))
    total = {"input": "[bold]total", "images": f"{sum(r['images'] for r in rep['inputs']):,}",
             "images\nout": f"[bold]{rep['images']:,}", "annotations\nout": f"[bold]{rep['annotations']:,}"}
    t.add_row(*(total.get(c, "") for c in cols))
    console.print(t)
    d = rep["duplicates"]
    if d["groups"]:
        verb = "dropped" if d["dropped"] else "kept (use --dedupe to drop)"
        err_console.print(f"[yellow]duplicates:[/] {d['groups']:,} image(s) with identical file bytes, "
                          f"{d['extra_images']:,} extra cop(ies) {verb}; listed in {report_key}.duplicates", highlight=False)
        listed = d["listed"] if verbose else d["listed"][:5]
        for g in listed:
            err_console.print("  " + " = ".join(f"{x['input']}:{x['image_id']} ({x['file_name']})" for x in g["images"]),
                              highlight=False, markup=False, soft_wrap=True)
        if len(d["listed"]) > len(listed):
            err_console.print(f"  … {len(d['listed']) - len(listed)} more (--verbose lists them)", highlight=False)
    h = rep["holdout"]
    if h["overlap"]:
        err_console.print(f"[yellow]holdout overlap:[/] {h['overlap']:,} image(s) also in a holdout set were dropped", highlight=False)
    elif h["datasets"]:
        n_held = sum(x["images"] for x in h["datasets"])
        console.print(f"holdout: no image shared with the {n_held:,} image(s) of {len(h['datasets'])} holdout set(s)", highlight=False)
    if rep["content_hash"] is None:
        err_console.print("[yellow]image contents not checked (--no-content-check)[/]")
    console.print(f"image root: {escape(str(image_root))}", highlight=False, soft_wrap=True)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """'4GiB', '500MB', '1.5G', '1000' → bytes."""
    t = text.strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not math.isfinite(value) or value < 0:
        raise EntityKitError(f"--shard-size {text!r}: expected a size such as 4GiB, 500MB or 0")
    return int(value * _UNITS[unit])


def _float(name: str, v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise EntityKitError(f"--weight {name}={v}: not a number") from None
    if not math.isfinite(f) or f < 0:
        raise EntityKitError(f"--weight {name}={v}: must be a finite number ≥ 0")
    return f


@app.command()
@user_errors
def pack(
    dataset: Path = typer.Argument(..., help="Entity dataset JSON, or a sharded dataset's folder (packed shard by shard)."),
    output: Path = typer.Option(..., "--output", "-o", help="Pack folder to write (atomically), or a single .h5 file (one shard)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder (default: the one recorded in the file)."),
    shard_images: Optional[int] = typer.Option(None, "--shard-images", help=f"Images per HDF5 shard (0 = no limit; default {DEFAULT_SHARD_IMAGES:,} in a folder)."),
    shard_size: str = typer.Option("0", "--shard-size", help="Most image bytes per shard, e.g. 4GiB or 500MB (0 = no limit)."),
    level: int = typer.Option(6, "--level", help="zlib level (0-9) of the id maps."),
    workers: int = typer.Option(1, "--workers", "-j", help="Processes encoding id maps (0 = all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing pack."),
    ignore_exif: bool = typer.Option(False, "--ignore-exif", help="Training reads the images' stored pixels, ignoring EXIF orientation (recorded in the pack)."),
    verify: bool = typer.Option(False, "--verify", help="Re-read the pack and compare every image and id map with the dataset."),
    quiet: bool = QUIET,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="With --verify: list every difference (not only the first 50)."),
) -> None:
    """Entity dataset → HDF5 shards (original image bytes + compressed id maps + entity table) for fast training I/O."""
    from ..fileio import check_output
    from ..pack import pack_dataset, verify_pack

    n_workers = worker_count(workers)
    shard_bytes = parse_size(shard_size)
    check_output(output, kind="file" if output.suffix.lower() in (".h5", ".hdf5") else "folder", inputs=[dataset, images])
    man = pack_dataset(dataset, output, image_root=images, shard_images=shard_images,
                       shard_bytes=shard_bytes, level=level, workers=n_workers, overwrite=overwrite,
                       exif=not ignore_exif, progress=not quiet)
    size = sum(p.stat().st_size for p in Path(output).iterdir()) if Path(output).is_dir() else Path(output).stat().st_size
    if not quiet:
        console.print(f"packed {man['images']:,} images, {man['annotations']:,} annotations into {len(man['shards'])} "
                      f"shard(s), {size / 2**20:,.1f} MiB → {escape(str(output))}", highlight=False, soft_wrap=True)
    if verify:
        problems = verify_pack(output, dataset, image_root=images, progress=not quiet)
        shown = problems if verbose else problems[:50]
        for p in shown:
            err_console.print(f"[red]✗[/] {escape(str(p))}", highlight=False, soft_wrap=True)
        if len(problems) > len(shown):
            err_console.print(f"[red]… {len(problems) - len(shown)} more[/] (--verbose lists them all)", highlight=False)
        if problems:
            err_console.print(f"[bold red]error:[/] {escape(str(output))}: {len(problems):,} difference(s) from "
                              f"{escape(str(dataset))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        if not quiet:
            console.print("[green]verified[/]: image bytes, id maps and entity tables identical")
