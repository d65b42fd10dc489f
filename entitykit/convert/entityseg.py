"""EntitySeg (High-Quality Entity Segmentation) → the entity format.

EntitySeg is already entity-style COCO RLE; this validates it, normalises RLE counts to compressed
strings, checks each RLE's size against its image (the low-res `*_lr.json` and high-res copies
must not be mixed), keeps the class as provenance (`category_id_ori`, `source_category`,
`isthing` from the category's `type`), and resolves overlap by a declared rule.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ..dataset import EntityDataset, image_entry_problem, is_id
from ..errors import DatasetError, EntityKitError
from ..fileio import read_json
from ..limits import check_pixels
from ..masks import read_mask
from ._common import (
    OVERLAP_RULES,
    ImageRecord,
    RleImageJob,
    Segment,
    assemble,
    category_index,
    check_crowd_mode,
    check_image_folder,
    collect,
    convert_rle_image,
    problem_sink,
    run_ordered,
)
from ._sharded import ShardRun, by_source_id, checks_options, convert_to_shards, unit_job


ENTITYSEG_RULES = tuple(r for r in OVERLAP_RULES if r != "score")  # EntitySeg has no scores


def _check_options(overlap: str, crowd: str) -> None:
    check_crowd_mode(crowd)
    if overlap not in ENTITYSEG_RULES:
        raise DatasetError(f"overlap rule {overlap!r} not available for EntitySeg (no scores); use "
                           f"{', '.join(ENTITYSEG_RULES)}")


def convert_entityseg(
    annotation_json: str | Path,
    *,
    image_root: str | Path | None = None,
    overlap: str = "error",
    crowd: str = "keep",
    source: str = "entityseg",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> EntityDataset:
    """``overlap``: 'error' (default: EntitySeg should not overlap), 'small-wins' or 'large-wins'."""
    _check_options(overlap, crowd)
    check_image_folder(image_root)
    path = Path(annotation_json)
    jobs, problems = _plan(path, overlap, crowd, keep_going)
    results = collect(run_ordered(convert_rle_image, jobs, workers), len(jobs), f"convert {path.name}",
                      keep_going=keep_going, progress=progress, image_root=image_root)
    return assemble(
        results, source=source, description=f"entities from EntitySeg {path.name}",
        conversion={"from": "entityseg", "annotation_json": str(path), "overlap_rule": overlap, "crowd": crowd},
        images_in=len(jobs), plan_problems=problems, image_root=image_root, keep_going=keep_going,
    )


@checks_options(lambda a: _check_options(a["overlap"], a["crowd"]))
def convert_entityseg_sharded(
    annotation_json: str | Path,
    output: str | Path,
    *,
    shard_images: int = 1000,
    part: str | tuple[int, int] | None = None,
    resume: bool = False,
    image_root: str | Path | None = None,
    overlap: str = "error",
    crowd: str = "keep",
    source: str = "entityseg",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> ShardRun:
    """EntitySeg → a sharded entity dataset in the folder ``output`` (docs/sharding.md), each image
    converted as :func:`convert_entityseg` does; ``shard_images``, ``part`` (``"K/N"``) and
    ``resume`` as :func:`entitykit.convert.convert_sam_sharded`.

    The inputs are the JSON's images, sorted by image id when every id is an integer (the ids are
    kept), else in the JSON's order (image id = position + 1, the source's kept as ``source_id``).
    Annotation id = position × 100,000 + k; each source annotation id stays its entity's
    ``source_id`` (source ids need not grow with the images, and a shard's ids must be one range
    disjoint from the others'). Problems that belong to no image (``keep_going``) are recorded in
    shard 0. Raises :class:`EntityKitError` (one line) as the single-file conversion does, and for
    a refused output."""
    _check_options(overlap, crowd)
    check_image_folder(image_root)
    path = Path(annotation_json).resolve()  # recorded resolved: a resumed run names the same file
    jobs, problems = _plan(path, overlap, crowd, keep_going)
    units, image_ids = by_source_id(jobs)
    conversion = {"from": "entityseg", "annotation_json": path.as_posix(), "overlap_rule": overlap, "crowd": crowd}
    return convert_to_shards(
        output, units, partial(unit_job, fn=convert_rle_image),
        settings={"converter": "entityseg", "inputs": path.as_posix(), "overlap_rule": overlap, "crowd": crowd,
                  "source": source},
        source=source, description=f"entities from EntitySeg {path.name}", conversion=conversion,
        shard_images=shard_images, part=part, resume=resume, workers=workers, keep_going=keep_going,
        progress=progress, image_root=image_root, inputs=[path, image_root], label=f"convert {path.name}",
        unit_name=lambda job: f"{job.where} (image {job.image.id!r})", image_ids=image_ids, listing=[path],
        plan_problems=problems,
    )


def _plan(path: Path, overlap: str, crowd: str, keep_going: bool) -> tuple[list[RleImageJob], list[DatasetError]]:
    """Read and check the JSON: one job per image (JSON order) and the problems found (with
    ``keep_going``: a bad annotation is dropped; else the first raises :class:`DatasetError`)."""
    data = read_json(path, "EntitySeg JSON")
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DatasetError("expected a COCO JSON object with 'images' and 'annotations' lists", where)
    problems, problem = problem_sink(where, keep_going)
    cats = category_index(data.get("categories"), where)
    images: dict[Any, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        why = image_entry_problem(img)
        if why:
            raise DatasetError(why, where, f"images[{i}]")
        if img["id"] in images:
            raise DatasetError("duplicate image id", where, f"image {img['id']!r}")
        check_pixels(img["height"], img["width"], where, f"image {img['id']!r}")
        images[img["id"]] = img
    per_image: dict[Any, list[tuple[dict[str, Any], Segment, str]]] = {k: [] for k in images}
    seen_ids: set[Any] = set()
    for j, ann in enumerate(data["annotations"]):
        label = f"annotation {ann.get('id', f'[{j}]')!r}" if isinstance(ann, dict) else f"annotations[{j}]"
        if not isinstance(ann, dict) or "segmentation" not in ann or "image_id" not in ann:
            problem(label, "lacks segmentation or image_id")
            continue
        bad = next(((k, ann[k]) for k in ("id", "image_id", "category_id", "category_id_ori")
                    if k in ann and ann[k] is not None and not is_id(ann[k], integer=False)), None)
        if bad is not None:
            problem(label if bad[0] != "id" else f"annotations[{j}]",
                    f"{bad[0]} must be an integer or a string, got {bad[1]!r}")
            continue
        if "id" in ann and ann["id"] in seen_ids:
            problem(label, "duplicate annotation id")
            continue
        seen_ids.add(ann.get("id"))
        img = images.get(ann["image_id"])
        if img is None:
            problem(f"{label} (image_id {ann['image_id']!r})", "annotation for an unknown image")
            continue
        try:
            rle = read_mask(ann["segmentation"], img["height"], img["width"], path=where,
                            item=f"{label} (image {img['id']!r})")
        except EntityKitError as e:
            problem(e.item or label, e.problem)
            continue
        cat_ori = ann.get("category_id_ori", ann.get("category_id"))
        cat = cats.get(cat_ori) or {}
        kind = cat.get("type")
        extra = {"category_id_ori": cat_ori} if cat_ori is not None else {}
        if "id" in ann:
            extra["source_id"] = ann["id"]
        seg = Segment(int(bool(ann.get("iscrowd", 0))), {"thing": 1, "stuff": 0}.get(kind), cat.get("name"), extra)
        per_image[img["id"]].append((rle, seg, label))
    jobs = []
    for img_id, img in images.items():
        entries = per_image[img_id]
        record = ImageRecord(img_id, img["file_name"], int(img["height"]), int(img["width"]))
        jobs.append(RleImageJob(record, [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries],
                                overlap, crowd, where,
                                resolving_rules=tuple(r for r in ENTITYSEG_RULES if r != "error")))
    return jobs, problems
