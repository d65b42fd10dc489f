"""ADE20K → entity dataset, from its two native forms (no panoptic conversion step needed).

- ``challenge``: ADEChallengeData2016 — semantic PNGs (0 = void, 1–150) plus the instance PNGs of
  the 2017 instance challenge (R = instance-class 1–100, G = instance id). Rule, as Mask2Former's
  ADE20K panoptic preparation: each *stuff* class present is one entity (disconnected parts
  included); each instance is one entity and overwrites what lies under it; pixels of a thing
  class not covered by an instance become void.
- ``full``: the full ADE20K index release, ``<name>_seg.png`` next to ``<name>.jpg``: class =
  R/10·256 + G, instance = distinct values of B; each (class ≠ 0, B) pair is one entity.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..dataset import EntityDataset
from ..errors import DatasetError, EntityKitError
from ..images import read_label_png
from ._common import (ImageRecord, ImageResult, Segment, annotations_from_id_map, assemble, check_image_folder, collect,
                      label_size, run_ordered)
from ._sharded import ShardRun, checks_options, convert_to_shards, unit_job

# ADE20K instance challenge class k (1-based) → SceneParse150 class id (1-based): the released
# mapping table (CSAILVision `ade20k_instance_catid_mapping.txt`). The 100 values are the thing classes.
INSTANCE_TO_SEMANTIC = (
    8, 9, 11, 13, 15, 16, 19, 20, 21, 23, 24, 25, 28, 31, 32, 33, 34, 36, 37, 38,
    39, 40, 42, 43, 44, 45, 46, 48, 50, 51, 54, 56, 57, 58, 59, 63, 65, 66, 67, 68,
    70, 71, 72, 73, 74, 75, 76, 77, 79, 81, 82, 83, 84, 86, 87, 88, 89, 90, 91, 93,
    94, 96, 98, 99, 103, 104, 105, 108, 109, 111, 112, 113, 116, 117, 119, 120, 121, 122, 124, 125,
    126, 127, 128, 130, 131, 133, 134, 135, 136, 137, 138, 139, 140, 143, 144, 145, 147, 148, 149, 150,
)  # fmt: skip
THING_CLASSES = frozenset(INSTANCE_TO_SEMANTIC)
SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
_INSTANCE_BASE = 256  # id-map ids: 1–150 stuff classes, 256 + G instances


@dataclass
class _ChallengeJob:
    image: ImageRecord
    semantic: Path
    instance: Path | None
    names: dict[int, str]
    error: DatasetError | None = None  # the label PNG's header could not be read


@dataclass
class _FullJob:
    image: ImageRecord
    seg: Path
    error: DatasetError | None = None


def read_class_names(path: Path) -> dict[int, str]:
    """objectInfo150.csv / .txt (Idx, ..., Name) → {1: 'wall', ...}; first name of each synonym list."""
    names: dict[int, str] = {}
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                names[int(row["Idx"])] = row["Name"].split(";")[0].strip()
    else:
        for line in path.read_text().splitlines()[1:]:
            parts = line.split("\t")
            if parts and parts[0].strip().isdigit():
                names[int(parts[0])] = parts[-1].split(",")[0].strip()
    return names


def _plan(root: str | Path, split: str, form: str, semantic_dir, instance_dir, image_dir, semantic_only: bool):
    """(jobs, image folder, conversion record, label PNGs) of either form: one job per image, files sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("ADE20K folder not found", root)
    if form == "challenge":
        dirs = _challenge_dirs(root, split, semantic_dir, instance_dir, image_dir)
        jobs, image_root, conv = _plan_challenge(root, *dirs, semantic_only)
        return jobs, image_root, conv, _convert_challenge, [job.semantic for job in jobs]
    if form == "full":
        jobs, image_root, conv = _plan_full(root)
        return jobs, image_root, conv, _convert_full, [job.seg for job in jobs]
    raise DatasetError(f"unknown ADE20K form {form!r}; choose 'challenge' or 'full'", root)


def convert_ade20k(
    root: str | Path,
    split: str = "validation",
    *,
    form: str = "challenge",
    semantic_dir: str | Path | None = None,
    instance_dir: str | Path | None = None,
    image_dir: str | Path | None = None,
    semantic_only: bool = False,
    source: str = "ade20k",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> EntityDataset:
    """Convert ADE20K in its ``challenge`` (ADEChallengeData2016) or ``full`` (index release) form.

    challenge: ``root`` holds ``images/<split>``, ``annotations/<split>`` and
    ``annotations_instance/<split>`` (split: training / validation). Without instance PNGs the
    conversion refuses unless ``semantic_only`` — then every class region, thing classes too, is
    one entity (instances of one class merge; recorded in the output). ``semantic_dir``,
    ``instance_dir`` and ``image_dir`` override the three folders.
    full: ``root`` is searched recursively for ``*_seg.png``.
    """
    jobs, image_root, conv, fn, _ = _plan(root, split, form, semantic_dir, instance_dir, image_dir, semantic_only)
    check_image_folder(image_root)
    results = collect(run_ordered(fn, jobs, workers), len(jobs), f"convert ADE20K {form}", keep_going=keep_going,
                      progress=progress, image_root=image_root)
    return assemble(
        results, source=source, description=f"entities from ADE20K ({form}) {root}", conversion=conv,
        images_in=len(jobs), image_root=image_root, keep_going=keep_going,
    )


def _check_form(form: str, split: str) -> None:
    """The options :func:`_plan` refuses, checked without reading anything (one line each)."""
    if form not in ("challenge", "full"):
        raise DatasetError(f"unknown ADE20K form {form!r}; choose 'challenge' or 'full'")
    if form == "challenge" and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose training or validation")


@checks_options(lambda a: _check_form(a["form"], a["split"]))
def convert_ade20k_sharded(
    root: str | Path,
    output: str | Path,
    *,
    split: str = "validation",
    form: str = "challenge",
    shard_images: int = 1000,
    part: str | tuple[int, int] | None = None,
    resume: bool = False,
    semantic_dir: str | Path | None = None,
    instance_dir: str | Path | None = None,
    image_dir: str | Path | None = None,
    semantic_only: bool = False,
    source: str = "ade20k",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> ShardRun:
    """ADE20K → a sharded entity dataset in the folder ``output`` (docs/sharding.md), each image
    converted as :func:`convert_ade20k` does; ``shard_images``, ``part`` (``"K/N"``) and ``resume``
    as :func:`entitykit.convert.convert_sam_sharded`.

    The inputs are the label PNGs sorted by path (as the single-file conversion orders them);
    image id = position + 1 (the file's stem or path kept as ``source_id``: the single-file
    conversion's ids too, when no image is skipped), annotation id = position × 100,000 + k.
    Raises :class:`EntityKitError` (one line) as the single-file conversion does, and for a
    refused output."""
    root = Path(root).resolve()  # recorded resolved: a resumed run names the same folder
    resolved = [Path(d).resolve() if d is not None else None for d in (semantic_dir, instance_dir, image_dir)]
    jobs, image_root, conv, fn, files = _plan(root, split, form, *resolved, semantic_only)
    conv = {k: (Path(v).as_posix() if k in ("semantic_dir", "root") else v) for k, v in conv.items()}
    settings = {"converter": "ade20k", "inputs": root.as_posix(), "form": form, "source": source,
                **({"split": SPLITS.get(split, split), "semantic_only": semantic_only,
                    "semantic_dir": Path(conv["semantic_dir"]).as_posix(),
                    "instance_dir": None if semantic_only else jobs[0].instance.parent.as_posix()}
                   if form == "challenge" else {})}
    return convert_to_shards(
        output, jobs, partial(unit_job, fn=fn), settings=settings, source=source,
        description=f"entities from ADE20K ({form}) {root}", conversion=conv, shard_images=shard_images, part=part,
        resume=resume, workers=workers, keep_going=keep_going, progress=progress, image_root=image_root,
        inputs=[root, *[d for d in resolved if d is not None]], label=f"convert ADE20K {form}",
        unit_name=lambda job: str(getattr(job, "semantic", None) or job.seg), listing=files,
    )


def _challenge_dirs(root: Path, split: str, semantic_dir, instance_dir, image_dir) -> tuple[Path, Path, Path]:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose training or validation", root)
    split = SPLITS[split]
    return (
        Path(semantic_dir) if semantic_dir else root / "annotations" / split,
        Path(instance_dir) if instance_dir else root / "annotations_instance" / split,
        Path(image_dir) if image_dir else root / "images" / split,
    )


def _plan_challenge(root: Path, sem_dir: Path, inst_dir: Path, img_dir: Path, semantic_only: bool):
    if not sem_dir.is_dir():
        raise DatasetError("semantic annotation folder not found", sem_dir)
    if not inst_dir.is_dir() and not semantic_only:
        raise DatasetError(
            "instance PNGs (annotations_instance/, from the ADE20K instance challenge) not found; without them "
            "instances of one class cannot be separated — pass --semantic-only to accept one entity per class region",
            inst_dir,
        )
    names: dict[int, str] = {}
    for candidate in (root / "objectInfo150.csv", root / "objectInfo150.txt"):
        if candidate.is_file():
            names = read_class_names(candidate)
            break
    jobs = []
    for png in sorted(sem_dir.glob("*.png")):
        h, w, error = label_size(png, f"image {png.stem!r}")
        record = ImageRecord(png.stem, f"{png.stem}.jpg", h, w)
        jobs.append(_ChallengeJob(record, png, None if semantic_only else inst_dir / png.name, names, error))
    if not jobs:
        raise DatasetError("no semantic PNGs found", sem_dir)
    conv = {"from": "ade20k-challenge", "semantic_dir": str(sem_dir), "semantic_only": semantic_only,
            "rule": "stuff classes from the semantic map, instances overwrite, uncovered thing pixels void"
            if not semantic_only else "one entity per semantic class region (instances not separated)"}
    return jobs, img_dir, conv


def _read_png(path: Path, rec: ImageRecord, what: str) -> np.ndarray | DatasetError:
    item = f"image {rec.id!r}"
    try:
        arr = read_label_png(path, what=what, item=item)[0]
    except EntityKitError as e:
        return DatasetError(e.problem, e.path, e.item)
    if arr.shape[:2] != (rec.height, rec.width):
        return DatasetError(f"{what} is {arr.shape[1]}×{arr.shape[0]}, expected {rec.width}×{rec.height}", path, item)
    return arr


def _convert_challenge(job: _ChallengeJob) -> ImageResult:
    rec = job.image
    if job.error is not None:
        return ImageResult.failed(rec, job.error)
    sem = _read_png(job.semantic, rec, "semantic PNG")
    if isinstance(sem, DatasetError):
        return ImageResult.failed(rec, sem)
    if sem.ndim != 2:
        return ImageResult.failed(rec, DatasetError("semantic PNG must be single-channel (class 0–150)", job.semantic, f"image {rec.id!r}"))
    sem = sem.astype(np.int64)
    segments: dict[int, Segment] = {}
    present = np.unique(sem)
    if present[-1] > 150:
        return ImageResult.failed(
            rec, DatasetError(f"semantic PNG has class {present[-1]}; ADE20K classes are 0–150", job.semantic, f"image {rec.id!r}")
        )
    if job.instance is None:
        id_map = sem
        for c in present[present > 0].tolist():
            segments[c] = Segment(0, int(c in THING_CLASSES), job.names.get(c, c))
        ents = annotations_from_id_map(id_map, segments, "void")
        return ImageResult(rec, ents.annotations, [], True, 0, ents.void_pixels)

    inst = _read_png(job.instance, rec, "instance PNG")
    if isinstance(inst, DatasetError):
        return ImageResult.failed(rec, inst)
    if inst.ndim != 3:
        return ImageResult.failed(rec, DatasetError("instance PNG must be RGB (R = class, G = instance)", job.instance, f"image {rec.id!r}"))
    is_stuff = np.zeros(256, bool)
    stuff_classes = [c for c in present.tolist() if 0 < c <= 150 and c not in THING_CLASSES]
    is_stuff[stuff_classes] = True
    id_map = np.where(is_stuff[sem], sem, 0)
    for c in stuff_classes:
        segments[c] = Segment(0, 0, job.names.get(c, c))
    cls, gid = inst[..., 0].astype(np.int64), inst[..., 1].astype(np.int64)
    on = gid > 0
    id_map[on] = _INSTANCE_BASE + gid[on]
    problems = []
    pairs = np.unique(np.stack([gid[on], cls[on]], 1), axis=0) if on.any() else np.zeros((0, 2), np.int64)
    for g in np.unique(pairs[:, 0]).tolist():
        classes = pairs[pairs[:, 0] == g, 1].tolist()
        if len(classes) != 1 or not 1 <= classes[0] <= len(INSTANCE_TO_SEMANTIC):
            problems.append(DatasetError(f"instance {g} has instance-class value(s) {classes}; expected one of 1–100",
                                         job.instance, f"image {rec.id!r}"))
            continue  # left out of segments → its pixels become void
        sem_class = INSTANCE_TO_SEMANTIC[classes[0] - 1]
        segments[_INSTANCE_BASE + g] = Segment(0, 1, job.names.get(sem_class, sem_class))
    ents = annotations_from_id_map(id_map, segments, "void")
    return ImageResult(rec, ents.annotations, problems, True, 0, ents.void_pixels)


def _plan_full(root: Path):
    jobs = []
    for seg in sorted(root.rglob("*_seg.png")):
        stem = seg.name[: -len("_seg.png")]
        h, w, error = label_size(seg, f"image {stem!r}")
        rel = (seg.parent / f"{stem}.jpg").relative_to(root).as_posix()
        jobs.append(_FullJob(ImageRecord(rel, rel, h, w), seg, error))
    if not jobs:
        raise DatasetError("no *_seg.png files found (full ADE20K index format)", root)
    conv = {"from": "ade20k-full", "root": str(root), "rule": "class = R/10*256 + G; one entity per (class, B) pair; class 0 void"}
    return jobs, root, conv


def _convert_full(job: _FullJob) -> ImageResult:
    rec = job.image
    if job.error is not None:
        return ImageResult.failed(rec, job.error)
    rgb = _read_png(job.seg, rec, "_seg.png")
    if isinstance(rgb, DatasetError):
        return ImageResult.failed(rec, rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return ImageResult.failed(rec, DatasetError("_seg.png must be RGB", job.seg, f"image {rec.id!r}"))
    rgb = rgb.astype(np.int64)
    cls = rgb[..., 0] // 10 * 256 + rgb[..., 1]
    key = np.where(cls > 0, cls * 256 + rgb[..., 2] + 1, 0)  # unique per (class, instance)
    segments = {int(k): Segment(0, None, int(k - 1) // 256) for k in np.unique(key).tolist() if k}
    ents = annotations_from_id_map(key, segments, "void")
    return ImageResult(rec, ents.annotations, [], True, 0, ents.void_pixels)
