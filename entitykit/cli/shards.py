"""Sharded-dataset commands: merge the part manifests of a conversion split over machines."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import QUIET, app, console, escape, sub_app, user_errors

shards_app = sub_app("Sharded datasets (a folder of shards + manifest.json; docs/sharding.md).")
app.add_typer(shards_app, name="shards")


@shards_app.command("merge")
@user_errors
def merge_cmd(
    parts: list[Path] = typer.Argument(..., help="part-K-of-N.json files written by convert … --shard K/N, or folders holding them."),
    output: Path = typer.Option(..., "--output", "-o", help="Dataset folder to write manifest.json in (shards from other folders are copied there)."),
    quiet: bool = QUIET,
) -> None:
    """Join the N part manifests of one sharded conversion into one manifest.json (the same bytes as one machine's run)."""
    from ..convert import merge_parts

    m = merge_parts(parts, output)
    if not quiet:
        console.print(f"wrote {escape(str(m.path))}: {len(m.shards):,} shards, {m.images:,} images, "
                      f"{m.entities:,} entities", highlight=False, soft_wrap=True)
