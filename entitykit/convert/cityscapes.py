"""Cityscapes native gtFine → entity dataset, without cityscapesscripts.

``*_gtFine_instanceIds.png`` (16/32-bit): value < 1000 = a label id; value ≥ 1000 = label·1000 +
instance. Only the 19 evaluated classes count (everything else is void). As cityscapesscripts'
panoptic conversion does: each evaluated stuff class is one entity; each thing instance is one
entity; thing pixels without an instance id (groups such as "cars" far away) are crowd — void by
default, or kept as ``iscrowd=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..dataset import EntityDataset
from ..errors import DatasetError, EntityKitError
from ..images import read_label_png
from ._common import (
    label_size,
    ImageRecord,
    ImageResult,
    Segment,
    annotations_from_id_map,
    assemble,
    check_crowd_mode,
    check_image_folder,
    collect,
    run_ordered,
)
from ._sharded import ShardRun, checks_options, convert_to_shards, unit_job

# label id → name, for the 19 classes Cityscapes evaluates (cityscapesscripts' labels.py facts).
STUFF = {7: "road", 8: "sidewalk", 11: "building", 12: "wall", 13: "fence", 17: "pole", 19: "traffic light",
         20: "traffic sign", 21: "vegetation", 22: "terrain", 23: "sky"}
THINGS = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus", 31: "train", 32: "motorcycle", 33: "bicycle"}
SUFFIX = "_gtFine_instanceIds.png"


@dataclass
class _Job:
    image: ImageRecord
    instance_ids: Path
    label_ids: Path
    crowd: str
    error: DatasetError | None = None  # the label PNG's header could not be read


def _plan(root: Path, split: str, crowd: str) -> list[_Job]:
    """One job per ``*_gtFine_instanceIds.png`` of ``<root>/gtFine/<split>/<city>/``, sorted by path."""
    check_crowd_mode(crowd)
    gt_dir = root / "gtFine" / split
    if not gt_dir.is_dir():
        raise DatasetError(f"gtFine/{split} not found (expected <root>/gtFine/<split>/<city>/*{SUFFIX})", gt_dir)
    jobs = []
    for path in sorted(gt_dir.glob(f"*/*{SUFFIX}")):
        stem = path.name[: -len(SUFFIX)]  # <city>_<seq>_<frame>
        city = path.parent.name
        h, w, error = label_size(path, f"image {stem!r}")
        record = ImageRecord(stem, f"{split}/{city}/{stem}_leftImg8bit.png", h, w)
        jobs.append(_Job(record, path, path.with_name(f"{stem}_gtFine_labelIds.png"), crowd, error))
    if not jobs:
        raise DatasetError(f"no *{SUFFIX} files found", gt_dir)
    return jobs


def _conversion(root: Path, split: str, crowd: str) -> dict:
    return {"from": "cityscapes", "root": str(root), "split": split, "crowd": crowd,
            "rule": "19 evaluated classes; stuff class = one entity, thing instance = one entity, "
                    "thing pixels without instance id = crowd"}


def convert_cityscapes(
    root: str | Path,
    split: str = "val",
    *,
    crowd: str = "void",
    source: str = "cityscapes",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> EntityDataset:
    """Convert ``<root>/gtFine/<split>/<city>/*`` with images in ``<root>/leftImg8bit/<split>/<city>/``.

    ``labelIds`` PNGs, where present, are cross-checked against the label part of ``instanceIds``.
    """
    root = Path(root)
    jobs = _plan(root, split, crowd)
    check_image_folder(root / "leftImg8bit")
    results = collect(run_ordered(_convert_one, jobs, workers), len(jobs), f"convert Cityscapes {split}",
                      keep_going=keep_going, progress=progress, image_root=root / "leftImg8bit")
    return assemble(
        results,
        source=source,
        description=f"entities from Cityscapes gtFine/{split}",
        conversion=_conversion(root, split, crowd),
        images_in=len(jobs),
        image_root=root / "leftImg8bit", keep_going=keep_going,
    )


@checks_options(lambda a: check_crowd_mode(a["crowd"]))
def convert_cityscapes_sharded(
    root: str | Path,
    output: str | Path,
    *,
    split: str = "val",
    shard_images: int = 1000,
    part: str | tuple[int, int] | None = None,
    resume: bool = False,
    crowd: str = "void",
    source: str = "cityscapes",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> ShardRun:
    """Cityscapes gtFine → a sharded entity dataset in the folder ``output`` (docs/sharding.md),
    each image converted as :func:`convert_cityscapes` does; ``shard_images``, ``part``
    (``"K/N"``) and ``resume`` as :func:`entitykit.convert.convert_sam_sharded`.

    The inputs are the ``instanceIds`` PNGs sorted by path (as the single-file conversion orders
    them); image id = position + 1 (the ``<city>_<seq>_<frame>`` stem kept as ``source_id``: the
    single-file conversion's ids too, when no image is skipped), annotation id = position ×
    100,000 + k. Raises :class:`EntityKitError` (one line) as the single-file conversion does, and
    for a refused output."""
    root = Path(root).resolve()  # recorded resolved: a resumed run names the same folder
    jobs = _plan(root, split, crowd)
    conversion = {**_conversion(root, split, crowd), "root": root.as_posix()}
    return convert_to_shards(
        output, jobs, partial(unit_job, fn=_convert_one),
        settings={"converter": "cityscapes", "inputs": root.as_posix(), "split": split, "crowd": crowd,
                  "source": source},
        source=source, description=f"entities from Cityscapes gtFine/{split}", conversion=conversion,
        shard_images=shard_images, part=part, resume=resume, workers=workers, keep_going=keep_going,
        progress=progress, image_root=root / "leftImg8bit", inputs=[root], label=f"convert Cityscapes {split}",
        unit_name=lambda job: str(job.instance_ids), listing=[job.instance_ids for job in jobs],
    )


def _convert_one(job: _Job) -> ImageResult:
    rec = job.image
    if job.error is not None:
        return ImageResult.failed(rec, job.error)
    item = f"image {rec.id!r}"
    try:
        ids = read_label_png(job.instance_ids, what="instanceIds PNG", item=item)[0].astype(np.int64)
    except EntityKitError as e:
        return ImageResult.failed(rec, DatasetError(e.problem, e.path, e.item))
    if ids.ndim != 2:
        return ImageResult.failed(rec, DatasetError("instanceIds PNG must be single-channel 16/32-bit", job.instance_ids, item))
    label = np.where(ids >= 1000, ids // 1000, ids)
    if job.label_ids.is_file():
        try:
            label_ids = read_label_png(job.label_ids, what="labelIds PNG", item=item)[0].astype(np.int64)
        except EntityKitError as e:
            return ImageResult.failed(rec, DatasetError(e.problem, e.path, e.item))
        if label_ids.shape != label.shape or not np.array_equal(label_ids, label):
            n = int((label_ids != label).sum()) if label_ids.shape == label.shape else "all"
            return ImageResult.failed(
                rec, DatasetError(f"labelIds disagree with instanceIds at {n} pixels", job.label_ids, item)
            )
    segments: dict[int, Segment] = {}
    present = np.unique(ids).tolist()
    for v in present:
        lab = v // 1000 if v >= 1000 else v
        if lab in STUFF and v < 1000:
            segments[v] = Segment(0, 0, STUFF[lab])
        elif lab in THINGS:
            segments[v] = Segment(int(v < 1000), 1, THINGS[lab])  # no instance id → crowd
    # Everything else (unlabeled, ego vehicle, non-evaluated classes) stays out of segments → void.
    id_map = np.where(np.isin(ids, list(segments)), ids, 0)
    ents = annotations_from_id_map(id_map, segments, job.crowd)
    return ImageResult(rec, ents.annotations, [], True, ents.crowd_segments, ents.void_pixels)
