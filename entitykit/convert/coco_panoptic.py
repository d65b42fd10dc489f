"""COCO panoptic (JSON + RGB-encoded PNGs) → entity dataset.

Every non-crowd segment, thing or stuff, becomes one entity (disconnected parts stay one entity);
void stays void. Works for any dataset in COCO panoptic format: COCO, ADE20K panoptic, Cityscapes
panoptic (string image ids), Mapillary.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from panopticapi.utils import rgb2id
from PIL import Image

from ..dataset import EntityDataset, new_info
from ..errors import DatasetError
from ..fileio import read_json
from ..masks import encode_id_map, rle_bbox
from ..progress import progress_bar

CROWD_MODES = ("void", "keep")


@dataclass
class _Segment:
    id: int
    iscrowd: int
    category_id: Any


@dataclass
class _Job:
    index: int
    image_id: Any
    png: Path
    height: int
    width: int
    segments: list[_Segment]
    crowd: str


@dataclass
class _Result:
    index: int
    annotations: list[dict[str, Any]]  # without id / image_id
    problems: list[DatasetError]
    image_ok: bool
    crowd_segments: int
    void_pixels: int
    pixels: int


def convert_coco_panoptic(
    panoptic_json: str | Path,
    png_dir: str | Path | None = None,
    *,
    image_root: str | Path | None = None,
    crowd: str = "void",
    source: str | None = None,
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> EntityDataset:
    """Convert a COCO-panoptic dataset to entities, in memory.

    ``png_dir`` defaults to the folder named like the JSON (``panoptic_val2017.json`` →
    ``panoptic_val2017/``). ``crowd="void"`` drops crowd segments (the paper's authors did);
    ``"keep"`` keeps them as ``iscrowd=1`` so scoring ignores them. With ``keep_going`` a problem
    is recorded in ``info["conversion"]["problems"]`` instead of raised: a bad image is skipped, a
    bad segment is dropped (its pixels become void).
    """
    if crowd not in CROWD_MODES:
        raise DatasetError(f"unknown crowd mode {crowd!r}; choose one of {CROWD_MODES}")
    panoptic_json = Path(panoptic_json)
    png_dir = Path(png_dir) if png_dir is not None else panoptic_json.with_suffix("")
    source = source or panoptic_json.stem
    data = read_json(panoptic_json, "COCO panoptic JSON")
    jobs, categories, problems = _plan(data, panoptic_json, png_dir, crowd, keep_going)

    results: list[_Result] = []
    with progress_bar(len(jobs), f"convert {panoptic_json.name}", enabled=progress) as advance:
        for res in _run(jobs, workers):
            if res.problems and not keep_going:
                raise res.problems[0]
            problems.extend(res.problems)
            results.append(res)
            advance()

    src_images = data["images"]
    string_ids = any(not isinstance(img.get("id"), int) or isinstance(img.get("id"), bool) for img in src_images)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    stats = {"things": 0, "stuff": 0, "unknown_kind": 0, "crowd_segments": 0, "void_pixels": 0, "pixels": 0}
    for res in results:
        if not res.image_ok:
            continue
        src = src_images[res.index]
        image_id = len(images) + 1 if string_ids else src["id"]
        image = {"id": image_id, "file_name": src["file_name"], "height": src["height"], "width": src["width"]}
        image["source"] = source
        if string_ids:
            image["source_id"] = src["id"]
        images.append(image)
        for ann in res.annotations:
            ann = {"id": len(annotations) + 1, "image_id": image_id, **ann, "source": source}
            cat = categories.get(ann.pop("_category_id"))
            if cat is not None:
                ann["isthing"] = int(bool(cat.get("isthing")))
                ann["source_category"] = cat.get("name")
                stats["things" if ann["isthing"] else "stuff"] += 1 - ann["iscrowd"]
            else:
                stats["unknown_kind"] += 1 - ann["iscrowd"]
            annotations.append(ann)
        stats["crowd_segments"] += res.crowd_segments
        stats["void_pixels"] += res.void_pixels
        stats["pixels"] += res.pixels

    conversion = {
        "from": "coco-panoptic",
        "panoptic_json": str(panoptic_json),
        "png_dir": str(png_dir),
        "crowd": crowd,
        "images_in": len(src_images),
        "images": len(images),
        "entities": sum(1 for a in annotations if not a["iscrowd"]),
        "crowd_kept": sum(1 for a in annotations if a["iscrowd"]),
        "things": stats["things"],
        "stuff": stats["stuff"],
        "unknown_kind": stats["unknown_kind"],
        "crowd_segments": stats["crowd_segments"],
        "void_fraction": stats["void_pixels"] / stats["pixels"] if stats["pixels"] else 0.0,
        "skipped_images": len(src_images) - len(images),
        "problems": [{"path": p.path, "item": p.item, "problem": p.problem} for p in problems],
    }
    info = new_info(f"entities from COCO panoptic {panoptic_json.name}", conversion=conversion)
    return EntityDataset(images=images, annotations=annotations, info=info, image_root=Path(image_root) if image_root else None)


# --------------------------------------------------------------------------------------------- plan
def _plan(
    data: Any, json_path: Path, png_dir: Path, crowd: str, keep_going: bool
) -> tuple[list[_Job], dict[Any, dict[str, Any]], list[DatasetError]]:
    """Check the JSON's structure and cross-references; one job per convertible image."""
    where = str(json_path)
    if not isinstance(data, dict):
        raise DatasetError("top level must be a JSON object", where)
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"missing or non-list '{key}'", where)
    problems: list[DatasetError] = []

    def problem(item: str, text: str) -> None:
        err = DatasetError(text, where, item)
        if not keep_going:
            raise err
        problems.append(err)

    categories: dict[Any, dict[str, Any]] = {}
    for cat in data.get("categories") or []:
        if isinstance(cat, dict) and "id" in cat:
            categories[cat["id"]] = cat

    image_index: dict[Any, int] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or any(k not in img for k in IMAGE_FIELDS):
            raise DatasetError(f"images[{i}] lacks one of {IMAGE_FIELDS}", where, f"images[{i}]")
        if img["id"] in image_index:
            raise DatasetError("duplicate image id", where, f"image {img['id']!r}")
        image_index[img["id"]] = i

    ann_for: dict[int, dict[str, Any]] = {}
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("segments_info"), list):
            raise DatasetError("lacks image_id or a segments_info list", where, f"annotations[{j}]")
        i = image_index.get(ann["image_id"])
        if i is None:
            problem(f"annotations[{j}] (image_id {ann['image_id']!r})", "annotation for an unknown image")
            continue
        if i in ann_for:
            problem(f"image {ann['image_id']!r}", "two panoptic annotations for the same image")
            continue
        ann_for[i] = ann

    jobs: list[_Job] = []
    for i, img in enumerate(data["images"]):
        ann = ann_for.get(i)
        item = f"image {img['id']!r} ({img['file_name']})"
        if ann is None:
            problem(item, "image has no panoptic annotation")
            continue
        segments: list[_Segment] = []
        seen: set[int] = set()
        bad = False
        for s in ann["segments_info"]:
            sid = s.get("id") if isinstance(s, dict) else None
            if not isinstance(sid, int) or sid <= 0:
                problem(item, f"segment with invalid id {sid!r} (must be a positive integer)")
                bad = True
                break
            if sid in seen:
                problem(f"{item} segment {sid}", "duplicate segment id")
                bad = True
                break
            seen.add(sid)
            segments.append(_Segment(sid, int(bool(s.get("iscrowd", 0))), s.get("category_id")))
        if bad:
            continue
        png_name = ann.get("file_name") or Path(img["file_name"]).with_suffix(".png").name
        jobs.append(_Job(i, img["id"], png_dir / png_name, int(img["height"]), int(img["width"]), segments, crowd))
    return jobs, categories, problems


IMAGE_FIELDS = ("id", "file_name", "height", "width")


# --------------------------------------------------------------------------------------------- run
def _run(jobs: list[_Job], workers: int):
    """Yield results in job order (deterministic), in this process or a pool of workers."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_convert_one, jobs)
        return
    chunksize = max(1, min(16, len(jobs) // (workers * 8)))
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(_convert_one, jobs, chunksize=chunksize)


def _convert_one(job: _Job) -> _Result:
    """Decode one PNG and split it into per-segment RLEs, checking it against its segments_info."""
    item = f"image {job.image_id!r}"
    pixels = job.height * job.width
    try:
        with Image.open(job.png) as im:
            mode, size = im.mode, im.size
            rgb = np.asarray(im.convert("RGB") if mode not in ("RGB",) else im)
    except FileNotFoundError:
        return _Result(job.index, [], [DatasetError("panoptic PNG not found", job.png, item)], False, 0, 0, 0)
    except OSError as e:
        return _Result(job.index, [], [DatasetError(f"cannot read panoptic PNG: {e}", job.png, item)], False, 0, 0, 0)
    if mode not in ("RGB", "RGBA"):
        err = DatasetError(f"panoptic PNG has mode {mode}, expected RGB (id = R + 256·G + 256²·B)", job.png, item)
        return _Result(job.index, [], [err], False, 0, 0, 0)
    if size != (job.width, job.height):
        err = DatasetError(
            f"PNG is {size[0]}×{size[1]} but the JSON says {job.width}×{job.height} (width×height)", job.png, item
        )
        return _Result(job.index, [], [err], False, 0, 0, 0)

    ids, rles, areas = encode_id_map(rgb2id(rgb))
    by_id = {int(i): k for k, i in enumerate(ids.tolist())}
    problems: list[DatasetError] = []
    listed = {s.id for s in job.segments}
    for sid in ids.tolist():
        if sid not in listed:
            problems.append(
                DatasetError(f"PNG id {sid} ({areas[by_id[sid]]} px) has no segments_info entry", job.png, item)
            )
    keep: list[tuple[_Segment, int]] = []
    crowd_segments = 0
    for seg in job.segments:
        k = by_id.get(seg.id)
        if k is None:
            problems.append(DatasetError(f"segment {seg.id} is in the JSON but not in the PNG (area 0)", job.png, item))
            continue
        if seg.iscrowd:
            crowd_segments += 1
            if job.crowd == "void":
                continue
        keep.append((seg, k))
    boxes = rle_bbox([rles[k] for _, k in keep])
    annotations = []
    kept_pixels = 0
    for (seg, k), box in zip(keep, boxes.tolist()):
        area = int(areas[k])
        kept_pixels += area
        annotations.append(
            {
                "category_id": 1,
                "segmentation": rles[k],
                "area": area,
                "bbox": [int(v) for v in box],
                "iscrowd": seg.iscrowd,
                "_category_id": seg.category_id,
            }
        )
    return _Result(job.index, annotations, problems, True, crowd_segments, pixels - kept_pixels, pixels)
