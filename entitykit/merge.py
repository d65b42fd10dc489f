"""`entitykit merge`: several entity datasets → one training (or validation) mix.

What a merge guarantees (specified in ``docs/merge-and-pack.md``):

- image and annotation ids are re-based to 1..N in output order, so they never collide; every
  image keeps ``source`` and the id it had in its input (``source_image_id``), every annotation
  keeps ``source``;
- images of all inputs live under one image root, the deepest folder that contains every input's
  image root; ``file_name`` becomes the path below it (``coco/train2017/x.jpg``), so
  pycocotools, detectron2's ``register_coco_instances(name, {}, json, image_root)`` and
  ``EntityDataset.image_path`` all find the files without a special reader;
- a fixed ``total`` is split over the inputs by ``weights`` (largest remainder); an input asked
  for more images than it has repeats every image ⌊q/n⌋ times and draws the rest without
  replacement, with a seed; repeated images get distinct ids and ``copy``/``copies``;
- duplicates by content (SHA-256 of the image file's bytes) are found and reported, and dropped
  with ``dedupe``;
- train and val are never mixed: every input has a split (``info.split``, or inferred from its
  names, or declared with ``split``) and they must agree; an image whose content is also in a
  ``holdout`` dataset (the validation sets) is refused, or dropped with ``drop_holdout_overlap``.

Two ways to run the same merge, with one plan (:func:`_plan`: every rule above) and one
emitter (:func:`_emit`: output images and annotations in order, ids re-based):
:func:`merge_datasets` returns the merge as one in-memory dataset (the caller saves it,
atomically); :func:`merge_to_shards` streams it into a sharded dataset (``entitykit.shards``),
reading one input shard at a time, memory bounded by one shard plus an index that grows with the
number of images, never with masks.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .dataset import EntityDataset, load_parts, new_info
from .errors import DatasetError, ProblemsError

if TYPE_CHECKING:
    from .shards import Manifest

SPLITS = ("train", "val", "test")
_SPLIT_PATTERNS = {
    "train": re.compile(r"(?<![a-z])(train|training)(?![a-z])"),
    "val": re.compile(r"(?<![a-z])(val|validation|minival|valid)(?![a-z])"),
    "test": re.compile(r"(?<![a-z])(test|testing|test-dev|testdev)(?![a-z])"),
}
# the split words converters record (ADE20K "training"/"validation") → the merge's names
_SPLIT_WORDS = {"training": "train", "validation": "val", "testing": "test"}
HASH_NAME = "sha256"
MAX_LISTED = 1000  # duplicate groups / overlaps listed in info.merge (counts are always complete)


MergeError = ProblemsError  # the name this module used to define; the class lives in entitykit.errors


@dataclass
class _Input:
    """One input (or holdout set) as the plan sees it: an index that grows with its images, never
    with its masks. ``ds`` is a light copy of the input: its images as ``{"id", "file_name"}``
    only, no annotations, the first part's ``info``, the image folder and path."""

    index: int
    where: str  # the path (or "<dataset>") used in messages
    source: Any  # the input as given (a path or a dataset): pass 2 reads it again, part by part
    name: str = ""
    ds: EntityDataset | None = None
    parts: list[EntityDataset] | None = None  # the validated parts, kept by the in-memory merge (else re-read)
    part_sizes: list[tuple[int, int]] = field(default_factory=list)  # (images, annotations) per part
    part_roots: list[tuple[Path | None, Path | None]] = field(default_factory=list)  # (part file, its image folder)
    sources: set[Any] = field(default_factory=set)  # distinct images' "source" values (at most 2 kept)
    annotations: int = 0
    split: str | None = None
    split_from: str = ""
    hashes: list[str] = field(default_factory=list)
    keep: list[int] = field(default_factory=list)  # image indices surviving dedupe / holdout
    weight: Fraction | None = None
    quota: int = 0
    counts: np.ndarray | None = None  # copies per kept image
    images_out: int = 0  # counted by _emit
    annotations_out: int = 0


@dataclass
class _Plan:
    """Everything decided before the first output image is made (see :func:`_plan`)."""

    items: list[_Input]
    holdouts: list[_Input]
    split: str | None
    seed: int
    total: int | None
    weighted: bool
    hash_images: bool
    dedupe: bool
    drop_holdout_overlap: bool
    groups: dict[str, list[tuple[int, int]]]  # duplicate groups: hash → (input index, image index), first first
    overlaps: list[dict[str, Any]]
    common: Path  # the output's image root
    prefixes: list[str]  # per input: its image root below ``common``

    @property
    def description(self) -> str:
        return f"entitykit merge of {' + '.join(it.name for it in self.items)}"

    @property
    def images_out(self) -> int:
        return sum(int(it.counts.sum()) for it in self.items)


@dataclass
class ShardedMerge:
    """What :func:`merge_to_shards` wrote. ``manifest``: the output's manifest as read back
    (``entitykit.shards.Manifest``); ``image_root``: the folder every output ``file_name`` is
    below (absolute); ``report``: what :func:`merge_datasets` records as ``info.merge`` (also the
    manifest's ``merge`` key)."""

    manifest: Manifest
    image_root: Path
    report: dict[str, Any]


# ------------------------------------------------------------------------------------------ helpers
def infer_split(ds: EntityDataset, path: str | Path | None = None) -> tuple[str | None, str]:
    """The split an entity dataset belongs to, and where that was read from.

    ``info.split`` wins, then the split a converter recorded (``info.conversion.split``, e.g.
    ``convert cityscapes --split val``; ADE20K's "training"/"validation" read as train/val); otherwise the words train/val/test (training, validation, minival …) in
    the JSON's file name, the converted source's JSON name and the image folder's last two parts.
    Returns ``(None, reason)`` when nothing or conflicting words are found.
    """
    conv = ds.info.get("conversion")
    for key, declared in (("info.split", ds.info.get("split")),
                          ("info.conversion.split", conv.get("split") if isinstance(conv, dict) else None)):
        if declared is None:
            continue
        declared = _SPLIT_WORDS.get(declared, declared) if isinstance(declared, str) else declared
        if declared not in SPLITS:
            return None, f"{key} is {declared!r}, not one of {', '.join(SPLITS)}"
        return declared, key
    names: list[str] = []
    if path is not None:
        names.append(Path(path).stem)
    elif ds.path is not None:
        names.append(ds.path.stem)
    conv = ds.info.get("conversion")
    if isinstance(conv, dict) and isinstance(conv.get("panoptic_json"), str):
        names.append(Path(conv["panoptic_json"]).stem)
    if ds.image_root is not None:
        names.extend(Path(ds.image_root).parts[-2:])
    found = {s for s in SPLITS for n in names if _SPLIT_PATTERNS[s].search(n.lower())}
    if len(found) == 1:
        return found.pop(), f"inferred from the names {', '.join(repr(n) for n in names)}"
    if not found:
        return None, "no train/val/test in its info.split, file names or image folder"
    return None, f"conflicting splits {sorted(found)} in the names {', '.join(repr(n) for n in names)}"


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes (the content key for duplicates)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _hash_images(ds: EntityDataset, where: str, workers: int, advance, problems: list[DatasetError]) -> list[str]:
    paths = [ds.image_path(img) for img in ds.images]

    def one(p: Path) -> str | Exception:
        try:
            return file_digest(p)
        except OSError as e:
            return e

    out: list[str] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for img, p, h in zip(ds.images, paths, pool.map(one, paths)):
            if isinstance(h, Exception):
                reason = ("image file not found" if isinstance(h, FileNotFoundError) else
                          "is a folder, not an image file" if isinstance(h, IsADirectoryError) else
                          f"cannot read image file: {h.strerror or h}")
                problems.append(DatasetError(f"{reason} ({p})", where, f"image {img.get('id')!r}"))
                out.append("")
            else:
                out.append(h)
            advance()
    return out


def _apportion(total: int, weights: Sequence[Fraction]) -> list[int]:
    """Largest-remainder split of ``total`` by ``weights`` (ties: earlier input first)."""
    w = sum(weights)
    exact = [total * wi / w for wi in weights]
    quotas = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _copies(n: int, quota: int, seed: int, name: str) -> np.ndarray:
    """Copies of each of n images so that they sum to quota: ⌊q/n⌋ each + a seeded draw of the rest."""
    counts = np.full(n, quota // n if n else 0, np.int64)
    rest = quota - int(counts.sum())
    if rest:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        counts[rng.choice(n, rest, replace=False)] += 1
    return counts


def _index_input(x: str | Path | EntityDataset, index: int, *, keep_parts: bool,
                 problems: list[DatasetError]) -> _Input | None:
    """Pass 1 over one input: open it part by part (a sharded dataset shard by shard) with the
    dataset layer's rules at check's level (``EntityDataset.parts``, ``validate="full"``: masks
    included, image files not), keeping only the light index of :class:`_Input`. Problems are
    collected (None is returned); an unreadable file raises as ``EntityDataset.load`` does."""
    where = (str(x.path) if x.path is not None else "<dataset>") if isinstance(x, EntityDataset) else str(x)
    it = _Input(index=index, where=where, source=x, parts=[] if keep_parts else None)
    light: list[dict[str, Any]] = []
    info: dict[str, Any] | None = None
    try:
        for part in EntityDataset.parts(x, validate="full"):
            if info is None:
                info = dict(part.info)
            light.extend({"id": img["id"], "file_name": img["file_name"]} for img in part.images)
            for img in part.images:
                if len(it.sources) > 1:
                    break
                it.sources.add(img.get("source"))
            it.part_sizes.append((len(part.images), len(part.annotations)))
            it.part_roots.append((part.path, part.image_root))
            it.annotations += len(part.annotations)
            if it.parts is not None:
                it.parts.append(part)
            del part  # the next shard is read once this one is released
    except ProblemsError as e:
        problems.extend(e.problems)
        return None
    except DatasetError as e:
        problems.append(e)
        return None
    it.ds = EntityDataset(images=light, annotations=[], info=info or {},
                          path=x.path if isinstance(x, EntityDataset) else Path(x))
    return it


def _set_image_root(it: _Input, override: str | Path | None, problems: list[DatasetError]) -> None:
    """The input's image folder: ``override``, else the one its parts record — which must be one
    folder (``EntityDataset.concat``'s rule, applied to the parts' folders alone)."""
    if override is not None:
        it.ds.image_root = Path(override)
        return
    try:
        stubs = (EntityDataset([], [], image_root=root, path=path) for path, root in it.part_roots)
        it.ds.image_root = EntityDataset.concat(stubs, path=it.ds.path).image_root
    except DatasetError as e:
        problems.append(e)
        return
    if it.ds.image_root is None:
        problems.append(DatasetError("no image folder recorded; pass the input's image folder (--images NAME=DIR)",
                                     it.where, "info.image_root"))


def _default_name(it: _Input) -> str:
    if len(it.sources) == 1 and isinstance(next(iter(it.sources)), str):
        return next(iter(it.sources))
    if it.ds.path is not None:
        return it.ds.path.stem
    return f"input{it.index}"


# --------------------------------------------------------------------------------------------- main
def merge_datasets(
    inputs: Sequence[str | Path | EntityDataset],
    *,
    names: Sequence[str] | None = None,
    image_roots: Mapping[str, str | Path] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    total: int | None = None,
    seed: int = 0,
    split: str | None = None,
    holdout: Sequence[str | Path | EntityDataset] = (),
    dedupe: bool = False,
    drop_holdout_overlap: bool = False,
    hash_images: bool = True,
    workers: int = 4,
    progress: bool = False,
) -> EntityDataset:
    """Merge entity datasets into one, in memory; see the module docstring for the rules.

    ``inputs``: entity JSON paths, sharded datasets' folders (``entitykit.shards``: validated
    shard by shard, each problem naming its shard, then held whole: the merge is built in memory;
    :func:`merge_to_shards` streams instead) or loaded datasets. ``names``: one per input [default: the
    input's single ``source``, else its file stem]; they key ``weights`` (a mapping) and
    ``image_roots`` (overrides of an input's image folder). ``weights``: relative shares of the
    output per input (a sequence aligned with ``inputs``, or a name → weight mapping covering
    every input). ``total``: number of output images [default: the inputs' image count].
    Without weights and total every image appears once. ``split``: the split of the output,
    required when an input's split cannot be inferred. ``holdout``: datasets (the validation
    sets) whose images must not appear in the output. ``hash_images=False`` skips reading image
    files (no duplicate or holdout detection; recorded in ``info.merge``). ``workers``: threads
    hashing image files; ``progress``: show a progress bar.

    Returns a new dataset (the inputs are not changed): images and annotations in output order,
    ``info.merge`` the report, ``image_root`` the inputs' deepest common folder (absolute).
    Raises :class:`MergeError` listing every problem (file, item) before anything is returned.
    """
    plan = _plan(inputs, names=names, image_roots=image_roots, weights=weights, total=total, seed=seed, split=split,
                 holdout=holdout, dedupe=dedupe, drop_holdout_overlap=drop_holdout_overlap, hash_images=hash_images,
                 workers=workers, progress=progress, keep_parts=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for img, anns in _emit(plan):
        images.append(img)
        annotations.extend(anns)
    info = new_info(plan.description, split=plan.split, merge=_report(plan))
    return EntityDataset(images=images, annotations=annotations, info=info, image_root=plan.common)


DEFAULT_SHARD_IMAGES = 1000  # output images per shard of merge_to_shards


def merge_to_shards(
    inputs: Sequence[str | Path | EntityDataset],
    output: str | Path,
    *,
    shard_images: int = DEFAULT_SHARD_IMAGES,
    overwrite: bool = False,
    **options: Any,
) -> ShardedMerge:
    """:func:`merge_datasets`, streamed into a sharded dataset (``docs/sharding.md``) at the
    folder ``output``: the same images and annotations, ids and order, in JSON shards of
    ``shard_images`` output images (the last may be shorter; an empty merge is one empty shard),
    plus ``manifest.json`` whose ``merge`` key is the report (``info.merge`` of the in-memory
    merge). ``options``: every keyword of :func:`merge_datasets` (names, image_roots, weights,
    total, seed, split, holdout, dedupe, drop_holdout_overlap, hash_images, workers, progress).

    Two passes over the inputs, one input shard (or one single-file input) in memory at a time:
    pass 1 validates and builds the plan (per image: id, file name, content hash, copies — it grows
    with the number of images, never with masks); pass 2 reads each input again and writes the
    output shards, holding only the current output shard's images and annotations. The folder is
    written atomically (a temporary sibling, shards then the manifest, renamed into place at the
    end): an interrupted merge (Ctrl-C included) leaves no output and removes its temporary folder;
    one left by a killed run is removed by the next run (``fileio.atomic_path``). An existing
    non-empty ``output`` is refused unless ``overwrite``; so is an output that is, or holds, an
    input or an input's image folder.

    Raises :class:`MergeError` as :func:`merge_datasets` does (before anything is written),
    :class:`EntityKitError` for a refused output or ``shard_images`` < 1, :class:`DatasetError`
    naming the input when it changed between the two passes.
    """
    from . import __version__
    from .convert._sharded import shard_name, shard_spans  # the owner of shard file names and spans
    from .fileio import atomic_path, check_output, write_json
    from .progress import progress_bar
    from .shards import entry_for_file, manifest_for, read_manifest, shard_counts, write_manifest

    output = Path(output)
    shard_spans(0, shard_images)  # refuses shard_images < 1
    given = [*inputs, *options.get("holdout", ())]
    paths = [x.path if isinstance(x, EntityDataset) else x for x in given]
    check_output(output, kind="folder", inputs=paths, overwrite=overwrite)  # the cheap rules first
    plan = _plan(inputs, **options, keep_parts=False)
    # the folder is replaced as a whole: it must not be (or hold) an input's image folder either
    roots = [it.ds.image_root for it in (*plan.items, *plan.holdouts)]
    check_output(output, kind="folder", inputs=[*paths, *roots], overwrite=overwrite)
    spans = shard_spans(plan.images_out, shard_images) or [range(0)]
    names = [shard_name(k, len(spans)) for k in range(len(spans))]
    entries = []
    with atomic_path(output, overwrite=overwrite) as tmp, \
            progress_bar(plan.images_out, f"merge → {output.name}", enabled=bool(options.get("progress"))) as advance:
        tmp.mkdir()
        out = _emit(plan)
        for k, (span, name) in enumerate(zip(spans, names)):
            images: list[dict[str, Any]] = []
            annotations: list[dict[str, Any]] = []
            for _ in span:
                img, anns = next(out)
                images.append(img)
                annotations.extend(anns)
                advance()
            info = new_info(plan.description, split=plan.split, shard={"index": k, "shards": len(spans)})
            shard = EntityDataset(images=images, annotations=annotations, info=info, image_root=plan.common)
            write_json(tmp / name, shard.to_coco(relative_to=output))  # the image folder relative to the final folder
            entries.append(entry_for_file(tmp, name, shard_counts(shard)))
            del shard, images, annotations
        if next(out, None) is not None:  # runs _emit to its end: its last checks
            raise AssertionError("merge plan and output disagree on the number of images")
        report = _report(plan)
        provenance = {"tool": f"entitykit {__version__}", "source": "merge", "description": plan.description}
        write_manifest(tmp, manifest_for(tmp, entries, split=plan.split, provenance=provenance,
                                         settings={"shard_images": shard_images}, merge=report))
    return ShardedMerge(read_manifest(output), plan.common, report)


def _plan(
    inputs: Sequence[str | Path | EntityDataset],
    *,
    names: Sequence[str] | None = None,
    image_roots: Mapping[str, str | Path] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    total: int | None = None,
    seed: int = 0,
    split: str | None = None,
    holdout: Sequence[str | Path | EntityDataset] = (),
    dedupe: bool = False,
    drop_holdout_overlap: bool = False,
    hash_images: bool = True,
    workers: int = 4,
    progress: bool = False,
    keep_parts: bool = False,
) -> _Plan:
    """Pass 1 of a merge, the one owner of its rules: open and validate every input and holdout
    set part by part, name them, check weights and splits, hash the image files, find duplicates
    and holdout overlaps, draw the copies of each image, and place the images under one root.
    ``keep_parts``: keep the validated parts for pass 2 (the in-memory merge); otherwise only the
    index of :class:`_Input` is kept and pass 2 reads the inputs again. Raises :class:`MergeError`
    listing every problem (or :class:`DatasetError` for a bad argument)."""
    if not inputs:
        raise DatasetError("nothing to merge: give at least one entity dataset")
    if split is not None and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"seed must be a whole number ≥ 0, got {seed!r}")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 1):
        raise DatasetError(f"total must be a positive integer, got {total!r}")
    if (holdout or drop_holdout_overlap or dedupe) and not hash_images:
        raise DatasetError("dedupe and holdout checks compare image contents: they need hash_images")
    if names is not None and len(names) != len(inputs):
        raise DatasetError(f"{len(names)} names for {len(inputs)} inputs")
    problems: list[DatasetError] = []

    # the dataset layer's rules, one part at a time: only the index of each input is kept
    opened = [_index_input(x, i, keep_parts=keep_parts, problems=problems) for i, x in enumerate(inputs)]
    if problems:
        raise MergeError(problems)
    items: list[_Input] = opened  # type: ignore[assignment]  (no None without a problem)
    for it in items:
        it.name = str(names[it.index]) if names is not None else _default_name(it)
    seen_names: dict[str, str] = {}
    for it in items:
        if not it.name or "/" in it.name or "=" in it.name:
            problems.append(DatasetError(f"bad input name {it.name!r} (non-empty, no '/' or '=')", it.where))
        if it.name in seen_names:
            problems.append(DatasetError(
                f"input name {it.name!r} is also the name of {seen_names[it.name]}; give distinct names (--names)", it.where))
        seen_names.setdefault(it.name, it.where)
    roots = dict(image_roots or {})
    for key in roots:
        if not any(it.name == key for it in items):
            problems.append(DatasetError(f"image folder given for unknown input name {key!r} (names: {', '.join(seen_names)})"))
    if problems:
        raise MergeError(problems)
    for it in items:
        _set_image_root(it, roots.get(it.name), problems)
    if problems:
        raise MergeError(problems)

    # weights
    if weights is not None:
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(seen_names))
            missing = [it.name for it in items if it.name not in weights]
            if unknown:
                problems.append(DatasetError(f"weight for unknown input name(s) {unknown} (names: {', '.join(seen_names)})"))
            if missing:
                problems.append(DatasetError(f"no weight for input(s) {missing}: give every input a weight"))
            values = [weights.get(it.name, 0) for it in items]
        else:
            values = list(weights)
            if len(values) != len(items):
                problems.append(DatasetError(f"{len(values)} weights for {len(items)} inputs"))
                values = [0] * len(items)
        for it, v in zip(items, values):
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = float("nan")
            if not math.isfinite(f) or f < 0:
                problems.append(DatasetError(f"weight must be a finite number ≥ 0, got {v!r}", it.where))
            else:
                it.weight = Fraction(f)
        if not problems and sum(it.weight for it in items) == 0:
            problems.append(DatasetError("all weights are 0"))
    if problems:
        raise MergeError(problems)

    # structure and splits
    for it in items:
        s, why = infer_split(it.ds, it.ds.path)
        it.split, it.split_from = s, why
    known = {it.split for it in items if it.split}
    if split is not None:
        for it in items:
            if it.split is not None and it.split != split:
                problems.append(DatasetError(
                    f"is a {it.split} set ({it.split_from}) but the merge is for split {split!r}: train and val are never mixed",
                    it.where))
            elif it.split is None:
                it.split, it.split_from = split, f"declared by split={split!r} ({it.split_from})"
    elif len(known) > 1:
        listing = ", ".join(f"{it.where} = {it.split}" for it in items if it.split)
        problems.append(DatasetError(f"inputs belong to different splits ({listing}): train and val are never mixed"))
    else:
        for it in items:
            if it.split is None:
                problems.append(DatasetError(
                    f"cannot tell its split: {it.split_from}; pass split (--split train|val) or set info.split", it.where))
        split = known.pop() if known else None
    if problems:
        raise MergeError(problems)

    # contents
    holdouts: list[_Input] = []
    for hi, h in enumerate(holdout):
        hit = _index_input(h, hi, keep_parts=False, problems=problems)
        if hit is not None:
            _set_image_root(hit, None, problems)
            holdouts.append(hit)
    if problems:
        raise MergeError(problems)
    from .progress import progress_bar

    if hash_images:
        n_files = sum(len(it.ds.images) for it in (*items, *holdouts))
        with progress_bar(n_files, "hash images", enabled=progress) as advance:
            for it in (*items, *holdouts):
                it.hashes = _hash_images(it.ds, it.where, workers, advance, problems)
        if problems:
            raise MergeError(problems)

    # duplicates within the inputs (first occurrence = earlier input, earlier in file)
    first_seen: dict[str, tuple[int, int]] = {}
    groups: dict[str, list[tuple[int, int]]] = {}
    for it in items:
        for k, h in enumerate(it.hashes):
            if h in first_seen:
                groups.setdefault(h, [first_seen[h]]).append((it.index, k))
            else:
                first_seen[h] = (it.index, k)
    del first_seen
    dropped_dupes = {loc for locs in groups.values() for loc in locs[1:]} if dedupe else set()

    # overlap with the holdout (validation) sets
    held: dict[str, tuple[int, int]] = {}
    for hi, hit in enumerate(holdouts):
        for k, h in enumerate(hit.hashes):
            held.setdefault(h, (hi, k))
    overlaps: list[dict[str, Any]] = []
    overlap_problems: list[DatasetError] = []
    for it in items:
        for k, h in enumerate(it.hashes):
            if h in held and (it.index, k) not in dropped_dupes:
                hi, hk = held[h]
                himg = holdouts[hi].ds.images[hk]
                img = it.ds.images[k]
                overlaps.append({"input": it.name, "image_id": img["id"], "file_name": img["file_name"],
                                 "holdout": holdouts[hi].where, "holdout_image_id": himg.get("id"), HASH_NAME: h})
                overlap_problems.append(DatasetError(
                    f"same image content as image {himg.get('id')!r} ({himg.get('file_name')}) of the holdout set "
                    f"{holdouts[hi].where}: train and val are never mixed (drop it with --drop-holdout-overlap)",
                    it.where, f"image {img['id']!r} ({img['file_name']})"))
    if overlap_problems and not drop_holdout_overlap:
        raise MergeError(overlap_problems)
    dropped_overlap = {(it.index, k) for it in items for k, h in enumerate(it.hashes) if h in held}

    for it in items:
        it.keep = [k for k in range(len(it.ds.images))
                   if (it.index, k) not in dropped_dupes and (it.index, k) not in dropped_overlap]

    # sampling
    sizes = [len(it.keep) for it in items]
    if weights is None and total is None:
        for it, n in zip(items, sizes):
            it.quota = n
    else:
        if total is None:
            total = sum(sizes)
        shares = [it.weight for it in items] if weights is not None else [Fraction(n) for n in sizes]
        if sum(shares) == 0:
            raise DatasetError("no images to sample from")
        for it, q in zip(items, _apportion(total, shares)):
            it.quota = q
    for it, n in zip(items, sizes):
        if it.quota and not n:
            problems.append(DatasetError(f"asked for {it.quota} images but no image is left to sample from", it.where))
        it.counts = _copies(n, it.quota, seed, it.name) if n else np.zeros(0, np.int64)
    if problems:
        raise MergeError(problems)

    # one image root for all inputs
    abs_roots = [Path(os.path.abspath(it.ds.image_root)) for it in items]
    common = Path(os.path.commonpath([str(r) for r in abs_roots]))
    prefixes = [Path(os.path.relpath(r, common)).as_posix() for r in abs_roots]
    return _Plan(items=items, holdouts=holdouts, split=split, seed=seed, total=total, weighted=weights is not None,
                 hash_images=hash_images, dedupe=dedupe, drop_holdout_overlap=drop_holdout_overlap, groups=groups,
                 overlaps=overlaps, common=common, prefixes=prefixes)


def _reread(it: _Input) -> Iterator[EntityDataset]:
    """Pass 2's parts of an input: the kept ones, the dataset object itself, or the file(s) read
    again one part at a time (a sharded dataset's shards are SHA-256-checked against its manifest)."""
    if it.parts is not None:
        yield from it.parts
    elif isinstance(it.source, EntityDataset):
        yield it.source
    else:
        yield from load_parts(it.source)


def _emit(plan: _Plan) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Pass 2 of a merge, the one owner of its output: each output image with its annotations, in
    output order (inputs in order, images in file order, each copy in turn), ids re-based to
    1..N, provenance added and ``file_name`` placed below ``plan.common``. Reads one input part at
    a time; counts ``images_out`` / ``annotations_out`` per input. Raises :class:`DatasetError`
    naming the input when a part differs from what pass 1 read."""
    n_img = n_ann = 0
    for it, prefix in zip(plan.items, plan.prefixes):
        copies = np.zeros(len(it.ds.images), np.int64)  # copies per image of the input (0: not used)
        copies[it.keep] = it.counts
        start = n_parts = 0
        for part in _reread(it):
            where = str(part.path) if part.path is not None else it.where
            n_images, n_annotations = it.part_sizes[n_parts] if n_parts < len(it.part_sizes) else (-1, -1)
            first_read = it.ds.images[start:start + n_images]
            if (len(part.images) != n_images or len(part.annotations) != n_annotations
                    or any(img["id"] != ref["id"] for img, ref in zip(part.images, first_read))):
                raise DatasetError("changed while it was being merged (its images or annotations differ from the "
                                   "first reading); run the merge again", where)
            groups_by_image = part.annotations_by_image()
            for src, c in zip(part.images, copies[start:start + n_images].tolist()):
                if not c:
                    continue
                anns = groups_by_image[src["id"]]
                if os.path.isabs(src["file_name"]):  # already absolute: express it below the common root
                    file_name = Path(os.path.relpath(src["file_name"], plan.common)).as_posix()
                else:
                    file_name = src["file_name"] if prefix == "." else f"{prefix}/{src['file_name']}"
                for copy in range(1, c + 1):
                    img = {key: v for key, v in src.items() if key not in ("copy", "copies")}
                    n_img += 1
                    img["id"] = n_img
                    img["file_name"] = file_name
                    img.setdefault("source", it.name)
                    img.setdefault("source_image_id", src["id"])
                    if c > 1:
                        img["copy"], img["copies"] = copy, c
                    out_anns = []
                    for a in anns:
                        ann = dict(a)
                        n_ann += 1
                        ann["id"] = n_ann
                        ann["image_id"] = img["id"]
                        ann.setdefault("source", img["source"])
                        out_anns.append(ann)
                    it.images_out += 1
                    it.annotations_out += len(anns)
                    yield img, out_anns
            start += n_images
            n_parts += 1
            del part, groups_by_image
        if n_parts != len(it.part_sizes):
            raise DatasetError(f"changed while it was being merged ({n_parts} parts, {len(it.part_sizes)} at first); "
                               "run the merge again", it.where)


def _report(plan: _Plan) -> dict[str, Any]:
    """The merge's report (``info.merge``), once :func:`_emit` has run to its end."""
    report_inputs = [{
        "name": it.name,
        "path": it.where,
        "split": it.split,
        "split_from": it.split_from,
        "file_name_prefix": prefix,
        "images": len(it.ds.images),
        "annotations": it.annotations,
        "images_available": len(it.keep),
        "weight": float(it.weight) if it.weight is not None else None,
        "images_out": it.images_out,
        "annotations_out": it.annotations_out,
        "unique_images_out": int(np.count_nonzero(it.counts)),
        "max_copies": int(it.counts.max()) if it.counts.size else 0,
    } for it, prefix in zip(plan.items, plan.prefixes)]
    by_index = {it.index: it for it in plan.items}
    dup_list = [
        {HASH_NAME: h, "images": [{"input": by_index[i].name, "image_id": by_index[i].ds.images[k]["id"],
                                    "file_name": by_index[i].ds.images[k]["file_name"]} for i, k in locs]}
        for h, locs in list(plan.groups.items())[:MAX_LISTED]
    ]
    return {
        "split": plan.split,
        "seed": plan.seed,
        "total": plan.total,
        "weights": "relative shares of the output" if plan.weighted else None,
        "sampling": "per input: every image ⌊quota/n⌋ times, the rest drawn without replacement (seeded)",
        "content_hash": HASH_NAME if plan.hash_images else None,
        "inputs": report_inputs,
        "duplicates": {
            "groups": len(plan.groups),
            "extra_images": sum(len(v) - 1 for v in plan.groups.values()),
            "dropped": bool(plan.dedupe),
            "listed": dup_list,
        },
        "holdout": {
            "datasets": [{"path": h.where, "images": len(h.ds.images)} for h in plan.holdouts],
            "overlap": len(plan.overlaps),
            "dropped": bool(plan.overlaps) and plan.drop_holdout_overlap,
            "listed": plan.overlaps[:MAX_LISTED],
        },
        "images": sum(it.images_out for it in plan.items),
        "annotations": sum(it.annotations_out for it in plan.items),
    }
