"""Streaming, resumable, K/N-splittable conversion into a sharded dataset (:mod:`entitykit.shards`).

A conversion's inputs (its units, one image each, in a fixed order: files sorted by name, or the
images of one source JSON sorted by id) are cut into shards of ``shard_images`` consecutive
inputs: shard ``i`` holds inputs ``[i·S, (i+1)·S)``. The cut depends only on the inputs and ``S``,
never on how many machines or workers run it, and ids are the source's image ids or a function of
each input's position (:func:`entitykit.convert._common.assemble` with ``positions``), so every
shard's bytes are fixed. This module owns all of it (spans, names, settings and resume checks,
records, manifests, merging); a converter only says how to convert one input
(:func:`convert_to_shards`' ``work``).

One run converts the shards of its part (``K/N``: the K-th of N contiguous runs of shards; all
of them without a part), one shard at a time (memory: one shard's results), and for each:

1. writes ``shard-NNNNN.json`` atomically (temporary file, then rename);
2. writes its completion record ``.progress/shard-NNNNN.json`` (the manifest entry: bytes, SHA-256).

Every file is written by one run only (the settings too: ``.progress/settings[.part-K-of-N].json``),
so N machines can share one output folder.

A restarted run (``resume``) skips every shard whose record matches the file on disk (size and
SHA-256) and lists no problems, and redoes the others (a shard with problems recorded under
``keep_going`` is redone: its inputs may have been fixed since); without ``resume`` an output
holding any of this part's work is refused. Settings bind once a shard is finished: a folder
holding only the settings of runs that finished none is started over. At the end an unsplit run
writes ``manifest.json``; a part writes ``part-K-of-N.json``, and :func:`merge_parts` joins the N
parts into ``manifest.json`` — the same bytes as an unsplit run's.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError, EntityKitError
from ..fileio import _remove_stale_temporaries as remove_stale_temporaries
from ..fileio import atomic_path, check_output, read_json, write_json
from ..shards import (
    MANIFEST,
    PART_RE,
    PROGRESS_DIR,
    Manifest,
    ShardEntry,
    entry_for_file,
    entry_from_dict,
    file_sha256,
    manifest_for,
    read_manifest,
    shard_counts,
    write_manifest,
)
from ._common import (
    ANN_ID_STRIDE, FileNames, ImageResult, assemble, check_image_folder, ordered_pool, refuse_all_skipped,
    with_image_file,
)

SETTINGS_FILE = "settings.json"
IDS_POSITION = f"image id = input position + 1; annotation id = position × {ANN_ID_STRIDE} + k"
IDS_SOURCE = f"image id = the source's; annotation id = input position × {ANN_ID_STRIDE} + k"
PROBLEMS_KEPT = 1000  # problems a run keeps in memory to report (every one is in its shard's info)


def parse_part(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"K/N"`` (1 ≤ K ≤ N, as GNU split's ``-n K/N``) → (K, N); None stays None. Raises EntityKitError."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        if not (len(text) == 2 and all(_whole(v) for v in text) and 1 <= text[0] <= text[1]):
            raise EntityKitError(f"part must be (K, N), whole numbers with 1 ≤ K ≤ N, got {text!r}")
        return int(text[0]), int(text[1])
    if not isinstance(text, str):
        raise EntityKitError(f"part must be 'K/N' or (K, N) with 1 ≤ K ≤ N, got {text!r}")
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise EntityKitError(f"part must be K/N with 1 ≤ K ≤ N (machine K of N), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_spans(n_inputs: int, shard_images: int) -> list[range]:
    """The input positions of each shard: ``[range(0, S), range(S, 2S), …]`` (the last may be shorter)."""
    if not isinstance(shard_images, int) or isinstance(shard_images, bool) or shard_images < 1:
        raise EntityKitError(f"shard_images must be a whole number ≥ 1, got {shard_images!r}")
    return [range(a, min(a + shard_images, n_inputs)) for a in range(0, n_inputs, shard_images)]


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def output_folder(output: Any) -> Path:
    """``output`` (a path or string) as a Path; refuses anything else with one line (not a raw TypeError)."""
    if not isinstance(output, (str, os.PathLike)) or not str(output):
        raise EntityKitError(f"output must be a folder path, got {output!r}")
    return Path(output)


def check_workers(workers: Any) -> int:
    """``workers`` of the library's sharded functions: a whole number ≥ 1 (the CLI's 0 = all cores is
    resolved before). Raises :class:`EntityKitError`."""
    if not _whole(workers) or workers < 1:
        raise EntityKitError(f"workers must be a whole number ≥ 1, got {workers!r}")
    return workers


def part_shards(n_shards: int, part: tuple[int, int] | None) -> range:
    """The shards part K of N converts: ``[⌊(K−1)·M/N⌋, ⌊K·M/N⌋)`` of M shards (all without a part)."""
    if part is None:
        return range(n_shards)
    k, n = part
    return range((k - 1) * n_shards // n, k * n_shards // n)


def shard_name(i: int, n_shards: int) -> str:
    """``shard-00007.json`` (at least 5 digits; more when there are more shards, so names sort)."""
    return f"shard-{i:0{max(5, len(str(max(n_shards - 1, 0))))}d}.json"


def part_name(part: tuple[int, int]) -> str:
    return f"part-{part[0]}-of-{part[1]}.json"


def listing_digest(files: Sequence[str | Path]) -> str:
    """SHA-256 of the inputs' names and sizes in bytes, one ``name<TAB>size`` line each: the
    settings record which inputs were cut, so that a resumed run (or another part) over other
    files — renamed, added, removed, or rewritten to another size — is refused. Modification
    times are left out on purpose: a copy of the same files (cp, untar, another machine's
    mirror) gets new ones, and must still resume. Raises :class:`EntityKitError` for an
    unreadable input."""
    h = hashlib.sha256()
    for f in map(Path, files):
        try:
            size = f.stat().st_size
        except OSError as e:
            raise EntityKitError(f"cannot read: {e.strerror}", f) from None
        h.update(f.name.encode("utf-8", "surrogateescape") + b"\t" + str(size).encode() + b"\n")
    return h.hexdigest()


@dataclass
class ShardRun:
    """What one sharded run did. ``written``: the manifest (unsplit) or part manifest it wrote."""

    output: Path
    written: Path
    part: tuple[int, int] | None
    shards: list[ShardEntry]
    converted: int = 0  # shards converted by this run
    skipped: int = 0  # shards found finished (resume) and kept
    total_shards: int = 0
    images: int = 0
    entities: int = 0
    images_in: int = 0
    problems: int = 0
    first_problems: list[DatasetError] = field(default_factory=list)


def _diff(old: Any, new: Any, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            d = _diff(old.get(k), new.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if old == new else f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"


def settings_file(part: tuple[int, int] | None) -> str:
    """Where a run records its settings: one file per part (machines sharing a folder never write
    the same file), ``settings.json`` for an unsplit run."""
    return SETTINGS_FILE if part is None else f"settings.{part_name(part)}"


def _recorded_settings(out: Path) -> dict[str, Any] | None:
    progress = out / PROGRESS_DIR
    found = sorted(progress.glob("settings*.json")) if progress.is_dir() else []
    if found:
        data = read_json(found[0], "conversion settings")
        return data if isinstance(data, dict) else {"unreadable": str(found[0])}
    if (out / MANIFEST).is_file():
        return read_manifest(out, check_files=False).settings
    return None


_OURS = re.compile(r"^(shard-\d+\.json|part-\d+-of-\d+\.json|manifest\.json|\..*\.tmp)$")


def _only_ours(out: Path) -> bool:
    """Whether the folder holds only what sharded conversions write (another machine has just
    started: no settings recorded yet)."""
    return all(p.name == PROGRESS_DIR or _OURS.match(p.name) for p in out.iterdir())


def _record_path(out: Path, name: str) -> Path:
    return out / PROGRESS_DIR / name


def finished_entry(out: Path, name: str) -> ShardEntry | None:
    """The shard's completion record when it matches the shard file (size and SHA-256), else None:
    a missing, unreadable or stale record — or a changed shard — means the shard is redone."""
    rec = _record_path(out, name)
    shard = out / name
    if not rec.is_file() or not shard.is_file():
        return None
    try:
        entry = entry_from_dict(read_json(rec, "shard record"), where=str(rec))
    except EntityKitError:
        return None
    if entry.file != name or shard.stat().st_size != entry.bytes or file_sha256(shard) != entry.sha256:
        return None
    return entry


_FINISHED = re.compile(r"^(shard-\d+\.json|part-\d+-of-\d+\.json|manifest\.json)$")


def _nothing_finished(out: Path) -> bool:
    """Whether the folder holds no shard, record, part manifest or manifest: only settings (and
    temporaries) of runs that failed or were stopped before their first shard — nothing that binds."""
    progress = out / PROGRESS_DIR
    if progress.is_dir() and any(_FINISHED.match(p.name) for p in progress.iterdir()):
        return False
    return not any(_FINISHED.match(p.name) for p in out.iterdir())


def _check_output(out: Path, settings: dict[str, Any], names: list[str], part: tuple[int, int] | None,
                  resume: bool, inputs: Sequence[str | Path]) -> bool:
    """Refuse, before any work, an output that is not this conversion's or that holds this part's
    work without ``resume`` (one line each). Returns True when the folder holds only the settings
    of runs that finished no shard, with other settings than these: they bind nothing, and the
    caller starts over (removes them)."""
    check_output(out, kind="folder", inputs=inputs)
    if not out.is_dir() or not any(out.iterdir()):
        return False
    recorded = _recorded_settings(out)
    if recorded is None and _only_ours(out):
        recorded = settings
    if recorded is None:
        raise EntityKitError("folder exists, is not empty and holds no sharded conversion: choose another output", out)
    diff = _diff(recorded, settings)
    if diff and _nothing_finished(out):
        return True
    if diff and diff.startswith("input_listing_sha256:"):
        raise EntityKitError("holds a sharded conversion of other input files (their names or sizes differ from "
                             "those it started with); choose another output", out)
    if diff:
        raise EntityKitError(f"holds a sharded conversion made with other settings ({diff}); choose another "
                             "output (or repeat the first command's options)", out)
    if resume:
        return False
    final = out / (MANIFEST if part is None else part_name(part))
    if final.is_file():
        raise EntityKitError(f"holds a finished conversion ({final.name}); pass --resume to check it and continue "
                             "(nothing left to do), or choose another output", out)
    started = [n for n in names if (out / n).exists() or _record_path(out, n).exists()]
    if started:
        raise EntityKitError(f"holds a partly finished conversion ({len(started)} of {len(names)} shards of this "
                             f"run written or begun, no {final.name} yet); pass --resume to continue it, or choose "
                             "another output", out)
    return False


def convert_to_shards(
    output: str | Path,
    units: Sequence[Any],
    work: Callable[[tuple[int, Any]], ImageResult],
    *,
    settings: dict[str, Any],
    source: str,
    description: str,
    conversion: dict[str, Any],
    shard_images: int,
    part: str | tuple[int, int] | None = None,
    resume: bool = False,
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
    image_root: str | Path | None = None,
    split: str | None = None,
    inputs: Sequence[str | Path] = (),
    label: str = "convert",
    unit_name: Callable[[Any], str] = str,
    image_ids: Sequence[int] | None = None,
    listing: Sequence[str | Path] | None = None,
    plan_problems: Sequence[DatasetError] = (),
) -> ShardRun:
    """Convert ``units`` (one image each, in their fixed order) into shards under ``output``.

    ``work((position, unit))`` → the input's :class:`ImageResult` (a picklable module-level
    function or ``functools.partial`` when ``workers`` > 1; ``unit`` is sent to the worker, so
    keep it small: a path, or one image's job). ``unit_name(unit)``: the input file a message
    names (default ``str``). ``settings``: everything that decides the output's bytes (converter
    options; ``shard_images`` and the inputs' listing are added here); a resumed run or another
    part must give the same. ``listing``: the files whose names and sizes fingerprint the inputs
    (:func:`listing_digest`; default ``units``, which must then be paths).

    Ids: ``image_ids`` None → image id = position + 1 (the source's kept as ``source_id``);
    else the source's integer image id of each unit, strictly increasing in unit order (so
    shards' id ranges are disjoint). Annotation id = position × ``ANN_ID_STRIDE`` + k either way.
    ``plan_problems``: problems found while listing the units that belong to no unit (with
    ``keep_going``), recorded in shard 0's ``info.conversion.problems``. Memory: one shard's
    results. Raises :class:`EntityKitError` for a refused output (see :func:`_check_output`) and
    the first problem of an input unless ``keep_going`` (finished shards stay: resume continues);
    with ``keep_going``, :class:`DatasetError` when every image of the run was skipped (no
    manifest; the run's shards are removed: nothing looks finished, nothing binds a later run).
    """
    out = output_folder(output)
    part = parse_part(part)
    check_workers(workers)
    check_image_folder(image_root)
    spans = shard_spans(len(units), shard_images)
    if not spans:
        raise DatasetError("no inputs to convert", str(inputs[0]) if inputs else None)
    if image_ids is not None:
        if len(image_ids) != len(units):
            raise ValueError(f"{len(image_ids)} image ids for {len(units)} units")
        bad = next((k for k, v in enumerate(image_ids) if not isinstance(v, int) or isinstance(v, bool)
                    or (k and v <= image_ids[k - 1])), None)
        if bad is not None:
            raise ValueError(f"image_ids must be strictly increasing integers (position {bad}: {image_ids[bad]!r})")
    settings = {**settings, "shard_images": shard_images, "input_files": len(units),
                "input_listing_sha256": listing_digest(units if listing is None else listing),
                "ids": IDS_POSITION if image_ids is None else IDS_SOURCE}
    if image_root is not None:
        settings["image_root"] = _relative_root(image_root, out)
    mine = part_shards(len(spans), part)
    names = [shard_name(i, len(spans)) for i in mine]
    start_over = _check_output(out, settings, names, part, resume, inputs)
    out.mkdir(parents=True, exist_ok=True)
    if start_over:  # settings of runs that finished no shard: nothing binds
        for stale in (out / PROGRESS_DIR).glob("settings*.json"):
            stale.unlink(missing_ok=True)
    mine_file = out / PROGRESS_DIR / settings_file(part)
    if not mine_file.is_file():
        write_json(mine_file, settings, indent=1)
    run = ShardRun(out, out, part, [], total_shards=len(spans))
    from ..progress import progress_bar  # noqa: PLC0415

    def position(image_id: int) -> int:
        return image_id - 1 if image_ids is None else bisect.bisect_left(image_ids, image_id)

    def where_of(image_id: Any) -> str:
        return unit_name(units[position(image_id)])

    total = sum(len(spans[i]) for i in mine)
    file_names = FileNames(where_of)  # this run's images: a file name twice is refused
    with ordered_pool(workers) as pool, progress_bar(total, label, enabled=progress) as advance:
        for i, name in zip(mine, names):
            span = spans[i]
            entry = finished_entry(out, name) if resume else None
            if entry is not None and entry.extra.get("problems"):
                entry = None  # recorded problems (--keep-going): redone, in case the inputs were fixed since
            if entry is not None:
                for done in (out / name, _record_path(out, name)):  # a dead run's temporaries of a kept shard
                    remove_stale_temporaries(done)
                _index_shard(file_names, out / name, lambda image: where_of(image["id"]))
                run.skipped += 1
                advance(len(span))
            else:
                entry = _convert_shard(out, name, i, spans, units, work, pool, advance, run,
                                       source=source, description=description, conversion=conversion,
                                       image_root=image_root, keep_going=keep_going, file_names=file_names,
                                       source_ids=image_ids is not None,
                                       plan_problems=list(plan_problems) if i == 0 else [])
                run.converted += 1
            run.shards.append(entry)
    return _finish_run(run, settings, split, source, description, part, spans, inputs[0] if inputs else None)


def by_source_id(jobs: Sequence[Any]) -> tuple[list[Any], list[int] | None]:
    """The units of a conversion of one source JSON (COCO panoptic, EntitySeg) and their image ids
    for :func:`convert_to_shards`: when every image id is an integer (unique: the converters check),
    the jobs sorted by it and the source's ids kept (each shard's id range is then disjoint from
    the others'); else (string ids, e.g. Cityscapes panoptic) the JSON's order and ids by position
    (the source's kept as ``source_id``, as the single-file conversion does). ``jobs``: objects
    with ``.image.id``."""
    ids = [job.image.id for job in jobs]
    if ids and all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
        order = sorted(range(len(jobs)), key=ids.__getitem__)
        return [jobs[k] for k in order], [ids[k] for k in order]
    return list(jobs), None


def unit_job(unit: tuple[int, Any], fn: Callable[[Any], ImageResult]) -> ImageResult:
    """``work`` for converters whose units are already their per-image jobs: ``fn(job)``, the
    position unused (``functools.partial(unit_job, fn=...)``, picklable for worker processes)."""
    return fn(unit[1])


def _convert_shard(out: Path, name: str, i: int, spans: list[range], units: Sequence[Any],
                   work: Callable[[tuple[int, Any]], ImageResult], pool: Callable, advance: Callable[..., None],
                   run: ShardRun, *, source: str, description: str, conversion: dict[str, Any],
                   image_root: str | Path | None, keep_going: bool, file_names: FileNames, source_ids: bool,
                   plan_problems: list[DatasetError]) -> ShardEntry:
    """Convert shard ``i``, write it atomically, then its completion record; returns its entry."""
    span = spans[i]
    results: list[ImageResult] = []
    for res in pool(work, [(p, units[p]) for p in span]):
        res = with_image_file(res, image_root)
        if res.problems and not keep_going:
            raise res.problems[0]
        results.append(res)
        advance()
    ds = assemble(results, source=source, description=description, conversion=conversion, images_in=len(span),
                  image_root=image_root, positions=span, source_image_ids=source_ids, file_names=file_names,
                  keep_going=keep_going, plan_problems=plan_problems,
                  extra_info={"shard": {"index": i, "shards": len(spans), "inputs": [span.start, span.stop]}})
    del results
    problems = ds.info["conversion"]["problems"]
    # the image folder as given when absolute (parts copied between folders keep it), else relative to the shard
    absolute = image_root is not None and Path(image_root).is_absolute()
    write_json(out / name, ds.to_coco(relative_to=None if absolute else out))
    entry = entry_for_file(out, name, shard_counts(ds), inputs=[span.start, span.stop], problems=len(problems))
    write_json(_record_path(out, name), entry.as_dict())
    for p in problems[: max(0, PROBLEMS_KEPT - len(run.first_problems))]:
        run.first_problems.append(DatasetError(p["problem"], p["path"], p["item"]))
    return entry


def _index_shard(file_names: FileNames, shard: Path, where: Callable[[dict[str, Any]], str]) -> None:
    """Add a written shard's images to ``file_names`` (its ``images`` only are kept; ``where``:
    how to name an image's origin). Raises the first :class:`DatasetError` it finds."""
    images = read_json(shard, "shard").get("images", [])
    for image in images:
        refused = file_names.add(image, where(image))
        if refused is not None:
            raise refused


def _finish_run(run: ShardRun, settings: dict[str, Any], split: str | None, source: str, description: str,
                part: tuple[int, int] | None, spans: list[range], where: str | Path | None = None) -> ShardRun:
    """The run's counts, then its manifest (or part manifest); a run that kept none of its images
    raises instead (:func:`refuse_all_skipped`, naming the input ``where``)."""
    from .. import __version__  # noqa: PLC0415

    mine = part_shards(len(spans), part)
    run.images = sum(s.images for s in run.shards)
    run.entities = sum(s.entities for s in run.shards)
    run.images_in = sum(len(spans[i]) for i in mine)
    run.problems = sum(int(s.extra.get("problems", 0)) for s in run.shards)
    try:
        refuse_all_skipped(run.images_in, run.images, run.first_problems, run.problems, where)
    except DatasetError:  # every image of this run skipped: nothing of it stays (it binds no later run)
        _withdraw(run, settings_file(part))
        raise
    provenance = {"tool": f"entitykit {__version__}", "source": source, "description": description}
    if part is None:
        run.written = write_manifest(run.output, manifest_for(run.output, run.shards, split=split,
                                                              provenance=provenance, settings=settings))
    else:
        info = {"k": part[0], "n": part[1], "shards": [mine.start, mine.stop], "total_shards": len(spans)}
        run.written = write_manifest(run.output, manifest_for(run.output, run.shards, split=split,
                                                              provenance=provenance, settings=settings, part=info),
                                     name=part_name(part))
    return run


def _withdraw(run: ShardRun, settings_name: str) -> None:
    """Remove what ``run`` wrote (its shards, their records; its settings and the folders when
    nothing else is left), so that a run with no image to show leaves nothing that looks finished."""
    out = run.output
    for s in run.shards:
        (out / s.file).unlink(missing_ok=True)
        _record_path(out, s.file).unlink(missing_ok=True)
    if _nothing_finished(out):
        (out / PROGRESS_DIR / settings_name).unlink(missing_ok=True)
        for folder in (out / PROGRESS_DIR, out):
            try:
                folder.rmdir()  # only when empty: another part's files (or the user's) stay
            except OSError:
                break


def _relative_root(image_root: str | Path, out: Path) -> str:
    """The image folder as the shards record it: as given when absolute, else relative to the
    output folder (as :meth:`EntityDataset.to_coco` writes it), POSIX."""
    root = Path(image_root)
    if root.is_absolute():
        return root.as_posix()
    try:
        return Path(os.path.relpath(root.resolve(), out.resolve())).as_posix()
    except ValueError:
        return root.resolve().as_posix()


def _part_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if PART_RE.match(q.name))
            if not found:
                raise EntityKitError("holds no part-K-of-N.json (written by convert … --shard K/N)", p)
            files.extend(found)
        else:
            files.append(p)
    return files


def merge_parts(parts: Sequence[str | Path], output: str | Path, *, progress: bool = False) -> Manifest:
    """Join the part manifests of one conversion (``--shard 1/N`` … ``N/N``) into ``output/manifest.json``.

    ``parts``: part-K-of-N.json files, or folders holding them. All N parts must be there once,
    made with the same settings; shards in another folder than ``output`` are copied there
    (atomically, their SHA-256 checked). The manifest written is byte-identical to an unsplit
    run's. Raises :class:`EntityKitError` / :class:`DatasetError` (one line) otherwise."""
    out = output_folder(output)
    if isinstance(parts, (str, os.PathLike)):
        parts = [parts]  # one folder or file, not its characters
    files = _part_files(parts)
    if not files:
        raise EntityKitError("no part manifests given")
    manifests: list[Manifest] = []
    for f in files:
        m = read_manifest(f)
        info = m.extra.get("part")
        if not (isinstance(info, dict) and all(isinstance(info.get(k), int) for k in ("k", "n", "total_shards"))
                and isinstance(info.get("shards"), list) and len(info["shards"]) == 2):
            raise DatasetError("not a part manifest (no 'part': {k, n, shards, total_shards}); written by convert … "
                               "--shard K/N", f, "part")
        manifests.append(m)
    first = manifests[0]
    file_of = {id(m): f for f, m in zip(files, manifests)}  # errors name the part file (m.path: its manifest.json)
    n = first.extra["part"]["n"]
    by_k: dict[int, Manifest] = {}
    for f, m in zip(files, manifests):
        info = m.extra["part"]
        if info["n"] != n or info["total_shards"] != first.extra["part"]["total_shards"]:
            raise DatasetError(f"part {info['k']}/{info['n']} of {info['total_shards']} shards does not belong with "
                               f"part {first.extra['part']['k']}/{n} ({files[0]})", f, "part")
        diff = _diff(first.settings, m.settings)
        if diff:
            raise DatasetError(f"made with other settings than {files[0]} ({diff})", f, "settings")
        if info["k"] in by_k:
            also = file_of[id(by_k[info["k"]])]
            twice = "this file given twice" if also.resolve() == f.resolve() else f"also {also}"
            raise DatasetError(f"part {info['k']}/{n} given twice ({twice})", f, "part")
        by_k[info["k"]] = m
    missing = [k for k in range(1, n + 1) if k not in by_k]
    if missing:
        raise EntityKitError(f"parts {', '.join(f'{k}/{n}' for k in missing)} missing (their runs unfinished or "
                             "not given)", files[0].parent)
    total = first.extra["part"]["total_shards"]
    for k in range(1, n + 1):
        want = part_shards(total, (k, n))
        m = by_k[k]
        if m.extra["part"]["shards"] != [want.start, want.stop] or len(m.shards) != len(want):
            raise DatasetError(f"lists {len(m.shards)} shards; part {k}/{n} of {total} has {len(want)}", file_of[id(m)], "part")
        for i, s in zip(want, m.shards):
            if s.file != shard_name(i, total):
                raise DatasetError(f"shard {i} is {s.file!r}, expected {shard_name(i, total)!r}", file_of[id(m)], "shards")
    root = first.settings.get("image_root")
    check_output(out, kind="folder", inputs=())
    if out.is_dir() and any(out.iterdir()):
        recorded = _recorded_settings(out)
        if recorded is None and not _only_ours(out):
            raise EntityKitError("folder exists, is not empty and holds no sharded conversion: choose another output", out)
        diff = _diff(recorded, first.settings) if recorded is not None else None
        if diff:
            raise EntityKitError(f"holds a sharded conversion made with other settings ({diff})", out)
    copied = []
    for k in range(1, n + 1):  # every check before anything is written
        m = by_k[k]
        if m.root.resolve() == out.resolve():
            continue
        copied.append(m)
        if isinstance(root, str) and not Path(root).is_absolute() and (m.root / root).resolve() != (out / root).resolve():
            raise DatasetError(f"its shards record the image folder {root!r} relative to their folder, which means "
                               f"another folder from {out}; convert with an absolute --images, or merge into "
                               f"{m.root}", file_of[id(m)], "settings.image_root")
    # to name an image's shard: the first image id each shard can hold (position + 1, or the source's
    # ids, increasing from shard to shard), and its file
    source_ids = first.settings.get("ids") == IDS_SOURCE
    starts: list[int] = []
    shard_files: list[Path] = []

    def named(path: Path, image_id: Any) -> str:
        return f"{path} (image {image_id!r})" if source_ids else f"{path} (input #{image_id})"

    file_names = FileNames(lambda image_id: named(shard_files[bisect.bisect_right(starts, image_id - 1) - 1],
                                                  image_id))  # the parts were each checked alone: now together
    for k in range(1, n + 1):
        m = by_k[k]
        for s in m.shards:
            path = m.shard_path(s)
            if source_ids:
                starts.append(s.image_ids[0] - 1 if s.image_ids else (starts[-1] if starts else 0))
            else:
                starts.append(s.extra["inputs"][0] if isinstance(s.extra.get("inputs"), list) else 0)
            shard_files.append(path)
            _index_shard(file_names, path, lambda image, path=path: named(path, image["id"]))
    out.mkdir(parents=True, exist_ok=True)
    shards: list[ShardEntry] = []
    for k in range(1, n + 1):
        m = by_k[k]
        for s in m.shards:
            if m in copied:
                _copy_shard(m, s, out, file_of[id(m)])
            shards.append(s)
    final = manifest_for(out, shards, split=first.split, provenance=first.provenance, settings=first.settings)
    write_manifest(out, final)
    return read_manifest(out)


def _copy_shard(m: Manifest, s: ShardEntry, out: Path, part_file: Path) -> None:
    """Copy one shard into ``out`` atomically; an identical file already there is kept."""
    src, dst = m.shard_path(s), out / s.file
    if dst.is_file() and dst.stat().st_size == s.bytes and file_sha256(dst) == s.sha256:
        return
    if dst.exists() and not dst.is_file():
        raise EntityKitError("is not a file; cannot copy a shard onto it", dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        if file_sha256(tmp) != s.sha256:
            raise DatasetError("shard file's SHA-256 differs from its part manifest's (changed since it was "
                               "written)", part_file, f"shard {s.file}")



OPTION_CHECKS: dict[Callable[..., Any], Callable[[dict[str, Any]], None]] = {}


def checks_options(
    check: Callable[[dict[str, Any]], None],
) -> Callable[[Callable[..., ShardRun]], Callable[..., ShardRun]]:
    """Decorator of a sharded converter: ``check(arguments)`` (its bound arguments, defaults
    applied) raises :class:`EntityKitError` for a bad option — the checks the converter itself
    makes first, so that :func:`convert_on_dask` can make them before submitting any task."""
    def register(fn: Callable[..., ShardRun]) -> Callable[..., ShardRun]:
        OPTION_CHECKS[fn] = check
        return fn

    return register


def check_options(convert: Callable[..., ShardRun], inputs: Any, output: Any, parts: int,
                  options: dict[str, Any]) -> None:
    """The option checks of ``convert(inputs, output, part=(k, parts), resume=True, **options)``,
    made here (before any task runs): unknown or missing arguments, ``output``, ``shard_images``,
    ``workers``, the image folder, and the converter's own (:func:`checks_options`). One line
    (:class:`EntityKitError`) each."""
    import inspect  # noqa: PLC0415
    from functools import partial  # noqa: PLC0415

    name = getattr(getattr(convert, "func", convert), "__name__", repr(convert))
    try:
        bound = inspect.signature(convert).bind(inputs, output, part=(1, parts), resume=True, **options)
    except TypeError as e:
        raise EntityKitError(f"{name}: {e}") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    if isinstance(convert, partial):
        args = {**convert.keywords, **args}
    output_folder(output)
    if "shard_images" in args:
        shard_spans(0, args["shard_images"])
    if "workers" in args:
        check_workers(args["workers"])
    check_image_folder(args.get("image_root"))
    check = OPTION_CHECKS.get(getattr(convert, "func", convert))
    if check is not None:
        check(args)


def convert_on_dask(client: Any, convert: Callable[..., ShardRun], inputs: str | Path, output: str | Path, parts: int,
                    *, retries: int = 2, **options: Any) -> Manifest:
    """Run a sharded conversion as ``parts`` tasks on a Dask cluster, then merge (docs/sharding.md).

    ``client``: a ``dask.distributed.Client`` (LocalCluster, dask-jobqueue's SLURMCluster, …) whose
    workers see ``inputs`` and ``output`` at the same paths (a shared file system). ``convert``: a
    sharded converter such as :func:`entitykit.convert.convert_sam_sharded`, called as
    ``convert(inputs, output, part=(k, parts), resume=True, **options)`` for k = 1 … parts — each
    task resumable, so a task Dask retries after its worker died (``retries``) continues where it
    stopped. Options are checked here first (:func:`check_options`: one line, no task submitted).
    Returns the merged manifest; raises the first task's error (the finished shards stay: run it
    again to continue)."""
    from functools import partial  # noqa: PLC0415

    if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
        raise EntityKitError(f"parts must be a whole number ≥ 1, got {parts!r}")
    check_options(convert, inputs, output, parts, options)  # a bad option: one line now, not in every task
    task = partial(convert, inputs, output, resume=True, **options)
    futures = [client.submit(task, part=(k, parts), key=f"entitykit-part-{k}-of-{parts}-{Path(output).name}",
                             pure=False, retries=retries) for k in range(1, parts + 1)]
    client.gather(futures)
    return merge_parts([output], output)
