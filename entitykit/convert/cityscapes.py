"""Cityscapes native gtFine → entity dataset, without cityscapesscripts.

``*_gtFine_instanceIds.png`` (16/32-bit): value < 1000 = a label id; value ≥ 1000 = label·1000 +
instance. Only the 19 evaluated classes count (everything else is void). As cityscapesscripts'
panoptic conversion does: each evaluated stuff class is one entity; each thing instance is one
entity; thing pixels without an instance id (groups such as "cars" far away) are crowd — void by
default, or kept as ``iscrowd=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    collect,
    run_ordered,
)

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
    check_crowd_mode(crowd)
    root = Path(root)
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
    results = collect(run_ordered(_convert_one, jobs, workers), len(jobs), f"convert Cityscapes {split}",
                      keep_going=keep_going, progress=progress)
    return assemble(
        results,
        source=source,
        description=f"entities from Cityscapes gtFine/{split}",
        conversion={"from": "cityscapes", "root": str(root), "split": split, "crowd": crowd,
                    "rule": "19 evaluated classes; stuff class = one entity, thing instance = one entity, "
                            "thing pixels without instance id = crowd"},
        images_in=len(jobs),
        image_root=root / "leftImg8bit", keep_going=keep_going,
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
