"""`entitykit check`: every rule of the entity format, verified on any dataset.

Collects all problems instead of stopping at the first, so one run tells a user everything that
is wrong with a file. Mask checks run in pycocotools' RLE domain (no decoding to pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .dataset import ANNOTATION_KEYS, IMAGE_KEYS, EntityDataset
from .errors import DatasetError
from .masks import overlapping_pairs, rle_counts
from .progress import progress_bar


@dataclass
class CheckReport:
    """What `check` found: problems (file, item, text) and what it looked at."""

    path: str
    images: int = 0
    annotations: int = 0
    problems: list[DatasetError] = field(default_factory=list)
    checked_image_files: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "images": self.images,
            "annotations": self.annotations,
            "checked_image_files": self.checked_image_files,
            "problems": [{"path": p.path, "item": p.item, "problem": p.problem} for p in self.problems],
        }


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_dataset(
    dataset: EntityDataset | str | Path,
    *,
    image_root: str | Path | None = None,
    check_images: bool = True,
    max_problems: int = 1000,
    progress: bool = False,
) -> CheckReport:
    """Validate schema, ids, RLE sizes, area/bbox consistency, non-overlap and image files."""
    ds = dataset if isinstance(dataset, EntityDataset) else EntityDataset.load(dataset, image_root=image_root)
    if image_root is not None:
        ds.image_root = Path(image_root)
    where = str(ds.path) if ds.path is not None else "<dataset>"
    report = CheckReport(path=where, images=len(ds.images), annotations=len(ds.annotations))

    class _Full(Exception):
        pass

    def problem(item: str, text: str) -> None:
        report.problems.append(DatasetError(text, where, item))
        if len(report.problems) >= max_problems:
            raise _Full

    try:
        _check_all(ds, problem, report, check_images, progress)
    except _Full:
        report.problems.append(DatasetError(f"stopped after {max_problems} problems", where))
    return report


def _check_all(ds: EntityDataset, problem, report: CheckReport, check_images: bool, progress: bool) -> None:
    if not any(isinstance(c, dict) and c.get("id") == 1 for c in ds.categories):
        problem("categories", "must contain the single entity category {id: 1}")
    if len(ds.categories) > 1:
        problem("categories", f"has {len(ds.categories)} categories; an entity dataset has exactly one (id 1)")

    images: dict[Any, dict[str, Any]] = {}
    for i, img in enumerate(ds.images):
        item = f"images[{i}]"
        if not isinstance(img, dict) or any(k not in img for k in IMAGE_KEYS):
            problem(item, f"must have keys {', '.join(IMAGE_KEYS)}")
            continue
        item = f"image {img['id']!r}"
        if not _is_int(img["id"]):
            problem(item, "image id must be an integer")
        if not (_is_int(img["height"]) and _is_int(img["width"]) and img["height"] > 0 and img["width"] > 0):
            problem(item, f"height/width must be positive integers, got {img['height']!r}×{img['width']!r}")
            continue
        if img["id"] in images:
            problem(item, "duplicate image id")
            continue
        images[img["id"]] = img

    ann_ids: set[Any] = set()
    per_image: dict[Any, list[dict[str, Any]]] = {k: [] for k in images}
    for j, ann in enumerate(ds.annotations):
        item = f"annotations[{j}]"
        if not isinstance(ann, dict) or any(k not in ann for k in ANNOTATION_KEYS):
            missing = [k for k in ANNOTATION_KEYS if not isinstance(ann, dict) or k not in ann]
            problem(item, f"missing keys: {', '.join(missing)}")
            continue
        item = f"annotation {ann['id']!r} (image {ann['image_id']!r})"
        if not _is_int(ann["id"]) or ann["id"] < 1:
            problem(item, "annotation id must be an integer ≥ 1 (pycocotools treats id 0 as unmatched)")
        elif ann["id"] in ann_ids:
            problem(item, "duplicate annotation id")
        ann_ids.add(ann["id"])
        if ann["category_id"] != 1:
            problem(item, f"category_id is {ann['category_id']!r}; entities use category 1")
        if ann["iscrowd"] not in (0, 1):
            problem(item, f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
        img = images.get(ann["image_id"])
        if img is None:
            problem(item, "annotation for an unknown image")
            continue
        seg = ann["segmentation"]
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            problem(item, "segmentation must be a COCO RLE {size, counts}")
            continue
        if not isinstance(seg["counts"], str):
            problem(item, "RLE counts must be a compressed string (uncompressed lists: convert with entitykit)")
            continue
        if list(seg["size"]) != [img["height"], img["width"]]:
            problem(
                item,
                f"RLE size {list(seg['size'])} differs from the image's [height, width] "
                f"[{img['height']}, {img['width']}]",
            )
            continue
        per_image[ann["image_id"]].append(ann)

    with progress_bar(len(per_image), "check masks", enabled=progress) as advance:
        for image_id, anns in per_image.items():
            _check_masks(images[image_id], anns, problem)
            advance()

    if check_images and ds.image_root is not None:
        report.checked_image_files = True
        for img in images.values():
            _check_image_file(ds, img, problem)


def _check_masks(img: dict[str, Any], anns: list[dict[str, Any]], problem) -> None:
    if not anns:
        return
    try:
        rles = [{"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode("ascii")} for a in anns]
        areas = mask_utils.area(rles)
        boxes = mask_utils.toBbox(rles)
    except Exception as e:  # pycocotools raises plain exceptions on corrupt counts
        problem(f"image {img['id']!r}", f"undecodable RLE: {e}")
        return
    bad_rle = False
    for a, r, area, box in zip(anns, rles, areas.tolist(), boxes.tolist()):
        item = f"annotation {a['id']!r} (image {img['id']!r})"
        if int(rle_counts(a["segmentation"]["counts"]).sum()) != img["height"] * img["width"]:
            problem(item, "RLE counts do not cover height × width pixels")
            bad_rle = True
            continue
        if area == 0:
            problem(item, "empty mask (0 pixels)")
        if a["area"] != area:
            problem(item, f"area {a['area']!r} ≠ mask pixel count {area}")
        if not (isinstance(a["bbox"], list) and len(a["bbox"]) == 4) or any(
            abs(float(u) - v) > 1e-6 for u, v in zip(a["bbox"], box)
        ):
            problem(item, f"bbox {a['bbox']!r} ≠ tight mask box {[int(v) for v in box]}")
    if bad_rle or len(rles) < 2:
        return
    union = int(mask_utils.area(mask_utils.merge(rles, intersect=False)))
    total = int(areas.sum())
    if union != total:
        pairs = overlapping_pairs(rles)
        detail = "; ".join(f"annotations {anns[i]['id']} and {anns[j]['id']}: {n} px" for i, j, n in pairs[:5])
        problem(f"image {img['id']!r}", f"entities overlap ({total - union} px counted twice): {detail}")


def _check_image_file(ds: EntityDataset, img: dict[str, Any], problem) -> None:
    path = ds.image_path(img)
    item = f"image {img['id']!r}"
    if path is None:
        return
    if not path.is_file():
        problem(item, f"image file not found: {path}")
        return
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
    except OSError as e:
        problem(item, f"cannot read image file {path}: {e}")
        return
    if (h, w) != (img["height"], img["width"]):
        problem(item, f"image file {path} is {w}×{h}, the JSON says {img['width']}×{img['height']}")
