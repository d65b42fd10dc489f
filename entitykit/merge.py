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

Nothing is written here: the caller saves the returned dataset (atomically).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import EntityDataset, is_sharded, new_info
from .errors import DatasetError, ProblemsError

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
    index: int
    name: str
    ds: EntityDataset
    where: str  # the path (or "<name>") used in messages
    split: str | None = None
    split_from: str = ""
    hashes: list[str] = field(default_factory=list)
    keep: list[int] = field(default_factory=list)  # image indices surviving dedupe / holdout
    weight: Fraction | None = None
    quota: int = 0
    counts: np.ndarray | None = None  # copies per kept image
    source: Any = None  # the input as given: a sharded dataset is validated shard by shard from it


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


def _as_dataset(x: str | Path | EntityDataset, image_root: str | Path | None = None,
                *, problems: list[DatasetError] | None = None) -> tuple[EntityDataset | None, str]:
    """Open an input with the dataset layer's schema rules; problems are collected, not raised."""
    where = (str(x.path) if x.path is not None else "<dataset>") if isinstance(x, EntityDataset) else str(x)
    try:
        ds = EntityDataset.open(x, image_root=image_root, validate="full")  # check's rules, masks included
    except ProblemsError as e:
        if problems is None:
            raise
        problems.extend(e.problems)
        return None, where
    except DatasetError as e:
        if problems is None:
            raise
        problems.append(e)
        return None, where
    if ds.image_root is None:
        err = DatasetError("no image folder recorded; pass the input's image folder (--images NAME=DIR)", where,
                           "info.image_root")
        if problems is None:
            raise err
        problems.append(err)
    return ds, where


def _default_name(ds: EntityDataset, where: str, index: int) -> str:
    sources = {img.get("source") for img in ds.images if isinstance(img, dict)}
    if len(sources) == 1 and isinstance(next(iter(sources)), str):
        return next(iter(sources))
    if ds.path is not None:
        return ds.path.stem
    return f"input{index}"


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
    shard by shard, each problem naming its shard, then held whole like any input: the merge
    is built in memory) or loaded datasets. ``names``: one per input [default: the
    input's single ``source``, else its file stem]; they key ``weights`` (a mapping) and
    ``image_roots`` (overrides of an input's image folder). ``weights``: relative shares of the
    output per input (a sequence aligned with ``inputs``, or a name → weight mapping covering
    every input). ``total``: number of output images [default: the inputs' image count].
    Without weights and total every image appears once. ``split``: the split of the output,
    required when an input's split cannot be inferred. ``holdout``: datasets (the validation
    sets) whose images must not appear in the output. ``hash_images=False`` skips reading image
    files (no duplicate or holdout detection; recorded in ``info.merge``).

    Raises :class:`MergeError` listing every problem (file, item) before anything is returned.
    """
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
    problems: list[DatasetError] = []

    items: list[_Input] = []
    for i, x in enumerate(inputs):
        ds, where = (x, str(x.path) if x.path is not None else "<dataset>") if isinstance(x, EntityDataset) \
            else (EntityDataset.load(x), str(x))  # opened with the rules below, once names and folders are known
        items.append(_Input(index=i, name="", ds=ds, where=where, source=x))
    if names is not None:
        if len(names) != len(items):
            raise DatasetError(f"{len(names)} names for {len(items)} inputs")
        for it, n in zip(items, names):
            it.name = str(n)
    else:
        for it in items:
            it.name = _default_name(it.ds, it.where, it.index)
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
    for it in items:  # the dataset layer: schema rules, image folder override, a new object per input
        if is_sharded(it.source):  # validated shard by shard from its folder; the copy read above is dropped first
            it.ds = None
        ds, _ = _as_dataset(it.source if it.ds is None else it.ds, roots.get(it.name), problems=problems)
        if ds is not None:
            it.ds = ds
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
    holdouts: list[tuple[EntityDataset, str]] = []
    for h in holdout:
        hds, hwhere = _as_dataset(h, problems=problems)
        if hds is not None:
            holdouts.append((hds, hwhere))
    if problems:
        raise MergeError(problems)
    from .progress import progress_bar

    if hash_images:
        n_files = sum(len(it.ds.images) for it in items) + sum(len(h.images) for h, _ in holdouts)
        with progress_bar(n_files, "hash images", enabled=progress) as advance:
            for it in items:
                it.hashes = _hash_images(it.ds, it.where, workers, advance, problems)
            holdout_hashes = [_hash_images(h, w, workers, advance, problems) for h, w in holdouts]
        if problems:
            raise MergeError(problems)
    else:
        holdout_hashes = []

    # duplicates within the inputs (first occurrence = earlier input, earlier in file)
    first_seen: dict[str, tuple[int, int]] = {}
    groups: dict[str, list[tuple[int, int]]] = {}
    for it in items:
        for k, h in enumerate(it.hashes):
            if h in first_seen:
                groups.setdefault(h, [first_seen[h]]).append((it.index, k))
            else:
                first_seen[h] = (it.index, k)
    dropped_dupes = {loc for locs in groups.values() for loc in locs[1:]} if dedupe else set()

    # overlap with the holdout (validation) sets
    held: dict[str, tuple[int, int]] = {}
    for hi, hh in enumerate(holdout_hashes):
        for k, h in enumerate(hh):
            held.setdefault(h, (hi, k))
    overlaps: list[dict[str, Any]] = []
    overlap_problems: list[DatasetError] = []
    for it in items:
        for k, h in enumerate(it.hashes):
            if h in held and (it.index, k) not in dropped_dupes:
                hi, hk = held[h]
                himg = holdouts[hi][0].images[hk]
                img = it.ds.images[k]
                overlaps.append({"input": it.name, "image_id": img["id"], "file_name": img["file_name"],
                                 "holdout": holdouts[hi][1], "holdout_image_id": himg.get("id"), HASH_NAME: h})
                overlap_problems.append(DatasetError(
                    f"same image content as image {himg.get('id')!r} ({himg.get('file_name')}) of the holdout set "
                    f"{holdouts[hi][1]}: train and val are never mixed (drop it with --drop-holdout-overlap)",
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
    roots = [Path(os.path.abspath(it.ds.image_root)) for it in items]
    common = Path(os.path.commonpath([str(r) for r in roots]))
    prefixes = [Path(os.path.relpath(r, common)).as_posix() for r in roots]

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    report_inputs: list[dict[str, Any]] = []
    for it, prefix in zip(items, prefixes):
        groups_by_image = it.ds.annotations_by_image()
        n_img = n_ann = 0
        for k, c in zip(it.keep, it.counts.tolist()):
            if not c:
                continue
            src = it.ds.images[k]
            anns = groups_by_image[src["id"]]
            if os.path.isabs(src["file_name"]):  # already absolute: express it below the common root
                file_name = Path(os.path.relpath(src["file_name"], common)).as_posix()
            else:
                file_name = src["file_name"] if prefix == "." else f"{prefix}/{src['file_name']}"
            for copy in range(1, c + 1):
                img = {key: v for key, v in src.items() if key not in ("copy", "copies")}
                img["id"] = len(images) + 1
                img["file_name"] = file_name
                img.setdefault("source", it.name)
                img.setdefault("source_image_id", src["id"])
                if c > 1:
                    img["copy"], img["copies"] = copy, c
                images.append(img)
                for a in anns:
                    ann = dict(a)
                    ann["id"] = len(annotations) + 1
                    ann["image_id"] = img["id"]
                    ann.setdefault("source", img["source"])
                    annotations.append(ann)
                n_img += 1
                n_ann += len(anns)
        report_inputs.append({
            "name": it.name,
            "path": it.where,
            "split": it.split,
            "split_from": it.split_from,
            "file_name_prefix": prefix,
            "images": len(it.ds.images),
            "annotations": len(it.ds.annotations),
            "images_available": len(it.keep),
            "weight": float(it.weight) if it.weight is not None else None,
            "images_out": n_img,
            "annotations_out": n_ann,
            "unique_images_out": int(np.count_nonzero(it.counts)),
            "max_copies": int(it.counts.max()) if it.counts.size else 0,
        })

    by_index = {it.index: it for it in items}
    dup_list = [
        {HASH_NAME: h, "images": [{"input": by_index[i].name, "image_id": by_index[i].ds.images[k]["id"],
                                    "file_name": by_index[i].ds.images[k]["file_name"]} for i, k in locs]}
        for h, locs in list(groups.items())[:MAX_LISTED]
    ]
    merge_report = {
        "split": split,
        "seed": seed,
        "total": total,
        "weights": "relative shares of the output" if weights is not None else None,
        "sampling": "per input: every image ⌊quota/n⌋ times, the rest drawn without replacement (seeded)",
        "content_hash": HASH_NAME if hash_images else None,
        "inputs": report_inputs,
        "duplicates": {
            "groups": len(groups),
            "extra_images": sum(len(v) - 1 for v in groups.values()),
            "dropped": bool(dedupe),
            "listed": dup_list,
        },
        "holdout": {
            "datasets": [{"path": w, "images": len(h.images)} for h, w in holdouts],
            "overlap": len(overlaps),
            "dropped": bool(overlaps) and drop_holdout_overlap,
            "listed": overlaps[:MAX_LISTED],
        },
        "images": len(images),
        "annotations": len(annotations),
    }
    names_txt = " + ".join(it.name for it in items)
    info = new_info(f"entitykit merge of {names_txt}", split=split, merge=merge_report)
    return EntityDataset(images=images, annotations=annotations, info=info, image_root=common)
