"""COCO panoptic (JSON + RGB-encoded PNGs) → entity dataset.

Every non-crowd segment, thing or stuff, becomes one entity (disconnected parts stay one entity);
void stays void. Works for any dataset in COCO panoptic format: COCO, ADE20K panoptic, Cityscapes
panoptic (string image ids), Mapillary.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from panopticapi.utils import rgb2id

from ..dataset import EntityDataset, image_entry_problem, is_id
from ..errors import DatasetError, EntityKitError
from ..images import read_label_png
from ..fileio import read_json
from ..limits import check_pixels
from ._common import (
    ImageRecord,
    ImageResult,
    Segment,
    annotations_from_id_map,
    assemble,
    category_index,
    check_crowd_mode,
    check_image_folder,
    collect,
    problem_sink,
    run_ordered,
)
from ._sharded import ShardRun, by_source_id, checks_options, convert_to_shards, unit_job

IMAGE_FIELDS = ("id", "file_name", "height", "width")


@dataclass
class _Job:
    image: ImageRecord
    png: Path
    segments: dict[int, Segment]
    crowd: str
    error: DatasetError | None = None  # found while planning: the image is skipped with it


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
    check_crowd_mode(crowd)
    check_image_folder(image_root)
    panoptic_json = Path(panoptic_json)
    png_dir = Path(png_dir) if png_dir is not None else panoptic_json.with_suffix("")
    data = read_json(panoptic_json, "COCO panoptic JSON")
    planned, plan_problems = _plan(data, panoptic_json, png_dir, crowd, keep_going)
    plan_problems += [job.error for job in planned if job.error is not None]
    jobs = [job for job in planned if job.error is None]
    results = collect(run_ordered(_convert_one, jobs, workers), len(jobs), f"convert {panoptic_json.name}",
                      keep_going=keep_going, progress=progress, image_root=image_root)
    return assemble(
        results,
        source=source or panoptic_json.stem,
        description=f"entities from COCO panoptic {panoptic_json.name}",
        conversion={"from": "coco-panoptic", "panoptic_json": str(panoptic_json), "png_dir": str(png_dir), "crowd": crowd},
        images_in=len(data["images"]),
        plan_problems=plan_problems,
        image_root=image_root, keep_going=keep_going,
    )


@checks_options(lambda a: check_crowd_mode(a["crowd"]))
def convert_coco_panoptic_sharded(
    panoptic_json: str | Path,
    output: str | Path,
    png_dir: str | Path | None = None,
    *,
    shard_images: int = 1000,
    part: str | tuple[int, int] | None = None,
    resume: bool = False,
    image_root: str | Path | None = None,
    crowd: str = "void",
    source: str | None = None,
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> ShardRun:
    """COCO panoptic → a sharded entity dataset in the folder ``output`` (docs/sharding.md), each
    image converted as :func:`convert_coco_panoptic` does; ``shard_images``, ``part`` (``"K/N"``)
    and ``resume`` as :func:`entitykit.convert.convert_sam_sharded`.

    The inputs are the JSON's images, sorted by image id when every id is an integer (the ids are
    kept), else in the JSON's order (image id = position + 1, the source's kept as ``source_id``:
    the single-file rule for string ids). Annotation id = position × 100,000 + k (a segment id of
    COCO panoptic is unique within its image only). Memory: the JSON's plan plus one shard's
    results. Problems that belong to no image (``keep_going``) are recorded in shard 0. Raises
    :class:`EntityKitError` (one line) as the single-file conversion does, and for a refused output."""
    check_crowd_mode(crowd)
    check_image_folder(image_root)
    panoptic_json = Path(panoptic_json).resolve()  # recorded resolved: a resumed run names the same file
    png_dir = Path(png_dir).resolve() if png_dir is not None else panoptic_json.with_suffix("")
    data = read_json(panoptic_json, "COCO panoptic JSON")
    planned, plan_problems = _plan(data, panoptic_json, png_dir, crowd, keep_going)
    del data
    units, image_ids = by_source_id(planned)
    source = source or panoptic_json.stem
    conversion = {"from": "coco-panoptic", "panoptic_json": panoptic_json.as_posix(), "png_dir": png_dir.as_posix(),
                  "crowd": crowd}
    return convert_to_shards(
        output, units, partial(unit_job, fn=_convert_one),
        settings={"converter": "coco-panoptic", "inputs": panoptic_json.as_posix(), "png_dir": png_dir.as_posix(),
                  "crowd": crowd, "source": source},
        source=source, description=f"entities from COCO panoptic {panoptic_json.name}", conversion=conversion,
        shard_images=shard_images, part=part, resume=resume, workers=workers, keep_going=keep_going,
        progress=progress, image_root=image_root, inputs=[panoptic_json, png_dir, image_root],
        label=f"convert {panoptic_json.name}", unit_name=lambda job: str(job.png), image_ids=image_ids,
        listing=[panoptic_json], plan_problems=plan_problems,
    )


def _plan(data: Any, json_path: Path, png_dir: Path, crowd: str, keep_going: bool) -> tuple[list[_Job], list[DatasetError]]:
    """Check the JSON's structure and cross-references: one job per image in JSON order (an image
    that cannot be converted carries its problem as ``error``), and the problems that belong to
    no image (with ``keep_going``; else the first problem raises :class:`DatasetError`)."""
    where = str(json_path)
    if not isinstance(data, dict):
        raise DatasetError("top level must be a JSON object", where)
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"missing or non-list '{key}'", where)
    problems, problem = problem_sink(where, keep_going)
    categories = category_index(data.get("categories"), where)

    image_index: dict[Any, int] = {}
    for i, img in enumerate(data["images"]):
        why = image_entry_problem(img)  # the dataset layer's rule (string ids allowed: Cityscapes)
        if why:
            raise DatasetError(why, where, f"images[{i}]")
        if img["id"] in image_index:
            raise DatasetError("duplicate image id", where, f"image {img['id']!r}")
        check_pixels(img["height"], img["width"], where, f"image {img['id']!r}")
        image_index[img["id"]] = i

    ann_for: dict[int, dict[str, Any]] = {}
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("segments_info"), list):
            raise DatasetError("lacks image_id or a segments_info list", where, f"annotations[{j}]")
        if not is_id(ann["image_id"], integer=False):
            raise DatasetError(f"image_id must be an integer or a string, got {ann['image_id']!r}", where,
                               f"annotations[{j}]")
        if ann.get("file_name") is not None and (not isinstance(ann["file_name"], str) or not ann["file_name"]):
            raise DatasetError(f"file_name of the panoptic PNG must be a non-empty string, got {ann['file_name']!r}",
                               where, f"annotations[{j}] (image_id {ann['image_id']!r})")
        i = image_index.get(ann["image_id"])
        if i is None:
            problem(f"annotations[{j}] (image_id {ann['image_id']!r})", "annotation for an unknown image")
        elif i in ann_for:
            problem(f"image {ann['image_id']!r}", "two panoptic annotations for the same image")
        else:
            ann_for[i] = ann

    def image_problem(item: str, text: str) -> DatasetError:
        problem(item, text)  # raises unless keep_going
        return problems.pop()

    jobs: list[_Job] = []
    for i, img in enumerate(data["images"]):
        ann = ann_for.get(i)
        item = f"image {img['id']!r} ({img['file_name']})"
        record = ImageRecord(img["id"], img["file_name"], int(img["height"]), int(img["width"]))
        png_name = (ann or {}).get("file_name") or Path(img["file_name"]).with_suffix(".png").name
        job = _Job(record, png_dir / png_name, {}, crowd)
        jobs.append(job)
        if ann is None:
            job.error = image_problem(item, "image has no panoptic annotation")
            continue
        for s in ann["segments_info"]:
            sid = s.get("id") if isinstance(s, dict) else None
            if not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0:
                job.error = image_problem(item, f"segment with invalid id {sid!r} (must be a positive integer)")
                break
            if sid in job.segments:
                job.error = image_problem(f"{item} segment {sid}", "duplicate segment id")
                break
            cid = s.get("category_id")
            if cid is not None and not is_id(cid, integer=False):
                job.error = image_problem(f"{item} segment {sid}",
                                          f"category_id must be an integer or a string, got {cid!r}")
                break
            cat = categories.get(cid)
            job.segments[sid] = Segment(
                iscrowd=int(bool(s.get("iscrowd", 0))),
                isthing=int(bool(cat.get("isthing"))) if cat is not None and "isthing" in cat else None,
                source_category=cat.get("name") if cat is not None else None,
            )
    return jobs, problems


def _convert_one(job: _Job) -> ImageResult:
    """Decode one PNG and split it into entities, checking it against its segments_info."""
    rec = job.image
    if job.error is not None:
        return ImageResult.failed(rec, job.error)
    item = f"image {rec.id!r}"
    try:
        arr, mode = read_label_png(job.png, what="panoptic PNG", item=item)
    except EntityKitError as e:
        return ImageResult.failed(rec, DatasetError(e.problem, e.path, e.item))
    size = (arr.shape[1], arr.shape[0])
    rgb = arr[:, :, :3] if arr.ndim == 3 else arr
    if mode not in ("RGB", "RGBA"):
        return ImageResult.failed(
            rec, DatasetError(f"panoptic PNG has mode {mode}, expected RGB (id = R + 256·G + 256²·B)", job.png, item)
        )
    if size != (rec.width, rec.height):
        return ImageResult.failed(
            rec,
            DatasetError(f"PNG is {size[0]}×{size[1]} but the JSON says {rec.width}×{rec.height} (width×height)", job.png, item),
        )
    ents = annotations_from_id_map(rgb2id(rgb), job.segments, job.crowd)
    problems = [
        DatasetError(f"PNG id {sid} ({n} px) has no segments_info entry", job.png, item) for sid, n in ents.unknown.items()
    ]
    problems += [
        DatasetError(f"segment {sid} is in the JSON but not in the PNG (area 0)", job.png, item) for sid in ents.missing
    ]
    return ImageResult(rec, ents.annotations, problems, True, ents.crowd_segments, ents.void_pixels, where=str(job.png))
