"""Segment Anything masks (SA-1B JSONs, or the automatic mask generator's COCO-RLE output) → entities.

SAM's masks overlap (a part and its whole both survive), so a declared rule decides who owns each
contested pixel: ``score`` (highest ``predicted_iou`` — or another score key — wins), ``small-wins``
or ``large-wins``. The rule and what it changed are recorded in the output.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..dataset import EntityDataset
from ..errors import DatasetError, EntityKitError
from ..fileio import read_json
from ..limits import check_pixels
from ..masks import read_mask
from ._common import (
    OVERLAP_RULES,
    ImageRecord,
    ImageResult,
    RleImageJob,
    Segment,
    assemble,
    check_image_folder,
    collect,
    convert_rle_image,
    run_ordered,
)
from ._sharded import ShardRun, checks_options, convert_to_shards, output_folder

SAM_RULES = tuple(r for r in OVERLAP_RULES if r != "error")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _load_one(path: Path, image_ext: str) -> tuple[dict[str, Any], list[Any]]:
    """(image block, mask records) of one SA-1B image JSON or automatic-mask-generator list."""
    data = read_json(path, "SAM mask JSON")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list) and isinstance(data.get("image"), dict):
        image = data["image"]
        h, w = image.get("height"), image.get("width")
        if not (_positive_int(h) and _positive_int(w)):
            raise DatasetError(f"image block needs positive whole-number height and width, got {h!r}×{w!r}", path, "image")
        return image, data["annotations"]  # SA-1B
    if isinstance(data, list):  # automatic mask generator, output_mode coco_rle / uncompressed_rle / binary_mask
        first = next((a for a in data if isinstance(a, dict) and "segmentation" in a), None)
        if first is None:
            raise DatasetError("a list, but no record has a 'segmentation' (SAM automatic-mask-generator output "
                               "has one per mask)", path)
        seg = first["segmentation"]
        if isinstance(seg, dict):
            size = seg.get("size")
            if not (isinstance(size, list) and len(size) == 2 and all(map(_positive_int, size))):
                raise DatasetError(f"first mask's RLE size must be [height, width], got {size!r}", path, "mask [0]")
            h, w = size
        elif isinstance(seg, list) and seg and isinstance(seg[0], list):  # binary_mask output saved as JSON
            h, w = len(seg), len(seg[0])
        else:
            raise DatasetError("first mask's segmentation is neither an RLE nor a binary grid: SAM's automatic "
                               "mask generator writes one of those", path, "mask [0]")
        return {"file_name": path.stem + image_ext, "height": h, "width": w}, data
    raise DatasetError("neither an SA-1B image JSON ({image, annotations}) nor a list of mask records", path)


def _check_options(rule: str, min_area: Any) -> None:
    if rule not in SAM_RULES:
        raise DatasetError(f"unknown overlap rule {rule!r}; choose one of {', '.join(SAM_RULES)}")
    if not isinstance(min_area, int) or isinstance(min_area, bool) or min_area < 0:
        raise DatasetError(f"min_area must be a whole number ≥ 0, got {min_area!r}")


def _score(ann: dict[str, Any], key: str) -> float:
    if key not in ann:
        raise ValueError(f"no '{key}' (needed by --rule score)")
    v = ann[key]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"'{key}' must be a finite number, got {v!r}")
    return float(v)


INPUT_GLOB = "*.json"  # the files of an input folder that are converted


def sam_inputs(inputs: Path) -> list[Path]:
    """The input files in conversion order: ``inputs`` itself, or a folder's ``*.json`` sorted by name."""
    files = sorted(inputs.glob(INPUT_GLOB)) if inputs.is_dir() else [inputs]
    if not files:
        raise DatasetError(f"no {INPUT_GLOB} files found", inputs)
    return files


def check_sam_output(inputs: str | Path, output: str | Path, *, kind: str = "file") -> None:
    """Refuse, before any work, an output inside the input folder ``inputs`` that would break the
    next conversion of that folder: a file (``kind="file"``) that :func:`sam_inputs` would list
    (``*.json`` directly in it), or any folder (``kind="folder"``: a sharded output, id maps) inside
    it — its listing, and so ``resume``, would no longer be the same. One line
    (:class:`EntityKitError`) naming the output; an input that is one file passes."""
    folder = Path(inputs)
    if not folder.is_dir():
        return
    folder, target = folder.resolve(), Path(output).resolve()
    if kind == "folder" and folder in target.parents:
        raise EntityKitError(f"is inside the SAM input folder {inputs}; choose an output folder outside it", output)
    if kind == "file" and target.parent == folder and fnmatchcase(target.name, INPUT_GLOB):
        raise EntityKitError(f"is inside the SAM input folder {inputs}, whose {INPUT_GLOB} files are the inputs: the "
                             "next conversion of that folder would read it as one; choose an output outside it", output)


@dataclass(frozen=True)
class SamOptions:
    """The per-file conversion settings (picklable: sent to worker processes)."""

    rule: str
    score_key: str = "predicted_iou"
    min_area: int = 0
    image_ext: str = ".jpg"


def plan_sam_file(path: Path, n: int, opts: SamOptions, *, keep_going: bool) -> tuple[RleImageJob | None, list[EntityKitError]]:
    """Read one SAM JSON into a job (its masks checked and filtered by ``min_area``), or None when
    the file itself is unusable. ``n``: the file's position (the image id when the file gives none).
    Problems raise unless ``keep_going``; then they are returned (a bad mask is dropped)."""
    rule, score_key, min_area, image_ext = opts.rule, opts.score_key, opts.min_area, opts.image_ext
    problems: list[EntityKitError] = []
    try:
        image, anns = _load_one(path, image_ext)
        h, w = int(image["height"]), int(image["width"])
        check_pixels(h, w, path, "image")
    except EntityKitError as e:
        if not keep_going:
            raise
        return None, [e]
    masks, segs, labels, scores = [], [], [], []
    for j, ann in enumerate(anns):
        label = f"mask {ann['id']!r}" if isinstance(ann, dict) and "id" in ann else f"mask [{j}]"
        try:
            if not isinstance(ann, dict) or "segmentation" not in ann:
                raise EntityKitError("mask record must be an object with a 'segmentation'", path, label)
            rle = read_mask(ann["segmentation"], h, w, path=path, item=label)
            area = ann.get("area", min_area)
            if not isinstance(area, (int, float)) or isinstance(area, bool) or not math.isfinite(area):
                raise EntityKitError(f"'area' must be a number, got {area!r}", path, label)
            score = _score(ann, score_key) if rule == "score" else 0.0
        except ValueError as e:
            err = DatasetError(str(e), path, label)
            if not keep_going:
                raise err from None
            problems.append(err)
            continue
        except EntityKitError as e:
            if not keep_going:
                raise
            problems.append(e)
            continue
        if area < min_area:
            continue
        extra = {k: ann[k] for k in ("predicted_iou", "stability_score") if k in ann}
        if "id" in ann:
            extra["source_id"] = ann["id"]
        masks.append(rle)
        segs.append(Segment(0, None, None, extra))
        labels.append(label)
        scores.append(score)
    image_id = image.get("image_id", image.get("id", path.stem))
    if isinstance(image_id, (list, dict, bool, float)):
        image_id = path.stem
    file_name = image.get("file_name", path.stem + image_ext)
    if not isinstance(file_name, str) or not file_name:
        file_name = path.stem + image_ext
    record = ImageRecord(image_id if image_id is not None else n + 1, file_name, h, w)
    job = RleImageJob(record, masks, segs, labels, rule, "keep", str(path), scores if rule == "score" else None)
    return job, problems


def convert_sam_file(unit: tuple[int, str], opts: SamOptions) -> ImageResult:
    """One input file → its ImageResult, problems recorded (the unit of sharded conversion: a
    module-level function so that worker processes and cluster tasks can run it).
    ``unit``: (position among all inputs, path)."""
    n, name = unit
    path = Path(name)
    try:
        job, problems = plan_sam_file(path, n, opts, keep_going=True)
    except EntityKitError as e:  # not raised with keep_going; kept as a guard
        job, problems = None, [e]
    if job is None:
        return ImageResult(ImageRecord(n + 1, path.stem, 0, 0), problems=list(problems), ok=False)
    res = convert_rle_image(job)
    res.problems = [*problems, *res.problems]
    return res


def convert_sam(
    inputs: str | Path,
    *,
    rule: str,
    score_key: str = "predicted_iou",
    min_area: int = 0,
    image_root: str | Path | None = None,
    image_ext: str = ".jpg",
    source: str = "sam",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> EntityDataset:
    """``inputs``: one JSON or a folder of per-image JSONs. ``rule``: score, small-wins or large-wins."""
    _check_options(rule, min_area)
    check_image_folder(image_root)
    inputs = Path(inputs)
    files = sam_inputs(inputs)
    opts = SamOptions(rule, score_key, min_area, image_ext)
    jobs, problems = [], []
    for n, path in enumerate(files):
        job, found = plan_sam_file(path, n, opts, keep_going=keep_going)
        problems.extend(found)
        if job is not None:
            jobs.append(job)
    results = collect(run_ordered(convert_rle_image, jobs, workers), len(jobs), "convert SAM masks",
                      keep_going=keep_going, progress=progress, image_root=image_root)
    return assemble(
        results, source=source, description=f"entities from SAM masks {inputs}",
        conversion={"from": "sam", "inputs": str(inputs), "overlap_rule": rule,
                    "score_key": score_key if rule == "score" else None, "min_area": min_area},
        images_in=len(files), plan_problems=problems, image_root=image_root, keep_going=keep_going,
    )


@checks_options(lambda a: _check_options(a["rule"], a["min_area"]))
def convert_sam_sharded(
    inputs: str | Path,
    output: str | Path,
    *,
    rule: str,
    shard_images: int = 1000,
    part: str | tuple[int, int] | None = None,
    resume: bool = False,
    score_key: str = "predicted_iou",
    min_area: int = 0,
    image_root: str | Path | None = None,
    image_ext: str = ".jpg",
    source: str = "sam",
    workers: int = 1,
    keep_going: bool = False,
    progress: bool = False,
) -> ShardRun:
    """SAM masks → a sharded entity dataset in the folder ``output`` (:mod:`entitykit.shards`),
    streaming: memory bounded by one shard of ``shard_images`` input files.

    The inputs (a folder's ``*.json``, sorted by name) are cut into shards of ``shard_images``
    files; ``part`` ``"K/N"`` converts only the K-th of N contiguous runs of shards and writes
    ``part-K-of-N.json`` (join them with :func:`entitykit.convert._sharded.merge_parts`), else
    ``manifest.json`` is written. Each image is converted exactly as :func:`convert_sam` does;
    ids: image id = position of its file among the inputs + 1 (the file's own id kept as
    ``source_id``), annotation id = position × 100,000 + k. ``resume`` continues an interrupted
    run (finished shards verified by SHA-256 and kept); without it an output holding this run's
    work is refused. The bytes written depend neither on ``part`` nor on ``workers``.
    Raises :class:`EntityKitError` (one line) for bad options, a refused output or, unless
    ``keep_going``, the first bad input (the shards finished so far stay, for ``resume``)."""
    _check_options(rule, min_area)
    check_image_folder(image_root)
    check_sam_output(inputs, output_folder(output), kind="folder")
    inputs = Path(inputs).resolve()  # recorded resolved: a resumed run names the same folder however spelled
    files = sam_inputs(inputs)
    opts = SamOptions(rule, score_key, min_area, image_ext)
    conversion = {"from": "sam", "inputs": inputs.as_posix(), "overlap_rule": rule,
                  "score_key": score_key if rule == "score" else None, "min_area": min_area}
    return convert_to_shards(
        output, [str(f) for f in files], partial(convert_sam_file, opts=opts),
        settings={"converter": "sam", **{k: v for k, v in conversion.items() if k != "from"}, "image_ext": image_ext,
                  "source": source},
        source=source, description=f"entities from SAM masks {inputs}", conversion=conversion,
        shard_images=shard_images, part=part, resume=resume, workers=workers, keep_going=keep_going,
        progress=progress, image_root=image_root, inputs=[inputs, image_root], label="convert SAM masks",
    )
