"""Segment Anything masks (SA-1B JSONs, or the automatic mask generator's COCO-RLE output) → entities.

SAM's masks overlap (a part and its whole both survive), so a declared rule decides who owns each
contested pixel: ``score`` (highest ``predicted_iou`` — or another score key — wins), ``small-wins``
or ``large-wins``. The rule and what it changed are recorded in the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dataset import EntityDataset
from ..errors import DatasetError
from ..fileio import read_json
from ._common import (
    OVERLAP_RULES,
    ImageRecord,
    RleImageJob,
    Segment,
    assemble,
    collect,
    convert_rle_image,
    run_ordered,
)
from .entityseg import normalise_segmentation

SAM_RULES = tuple(r for r in OVERLAP_RULES if r != "error")


def _load_one(path: Path, image_ext: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = read_json(path, "SAM mask JSON")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list) and isinstance(data.get("image"), dict):
        return data["image"], data["annotations"]  # SA-1B
    if isinstance(data, list):  # automatic mask generator, output_mode coco_rle / uncompressed_rle
        first = next((a for a in data if isinstance(a, dict) and isinstance(a.get("segmentation"), dict)), None)
        if first is None:
            raise DatasetError("no masks with an RLE segmentation", path)
        h, w = first["segmentation"]["size"]
        return {"file_name": path.stem + image_ext, "height": h, "width": w}, data
    raise DatasetError("neither an SA-1B image JSON ({image, annotations}) nor a list of mask records", path)


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
    if rule not in SAM_RULES:
        raise DatasetError(f"unknown overlap rule {rule!r}; choose one of {SAM_RULES}")
    inputs = Path(inputs)
    files = sorted(inputs.glob("*.json")) if inputs.is_dir() else [inputs]
    if not files:
        raise DatasetError("no *.json files found", inputs)
    jobs, problems = [], []
    for n, path in enumerate(files):
        try:
            image, anns = _load_one(path, image_ext)
            h, w = int(image["height"]), int(image["width"])
        except DatasetError as e:
            if not keep_going:
                raise
            problems.append(e)
            continue
        except (KeyError, TypeError, ValueError) as e:
            err = DatasetError(f"image block lacks height/width: {e}", path)
            if not keep_going:
                raise err from None
            problems.append(err)
            continue
        masks, segs, labels, scores = [], [], [], []
        for j, ann in enumerate(anns):
            label = f"mask {ann.get('id', j)!r}" if isinstance(ann, dict) else f"mask [{j}]"
            try:
                rle = normalise_segmentation(ann["segmentation"], h, w)
                score = float(ann.get(score_key, 0.0)) if rule == "score" else 0.0
                if rule == "score" and score_key not in ann:
                    raise KeyError(f"no '{score_key}'")
            except (KeyError, TypeError, ValueError) as e:
                err = DatasetError(f"{label}: {e}", path)
                if not keep_going:
                    raise err from None
                problems.append(err)
                continue
            if int(ann.get("area", min_area)) < min_area:
                continue
            extra = {k: ann[k] for k in ("predicted_iou", "stability_score") if k in ann}
            if "id" in ann:
                extra["source_id"] = ann["id"]
            masks.append(rle)
            segs.append(Segment(0, None, None, extra))
            labels.append(label)
            scores.append(score)
        image_id = image.get("image_id", image.get("id", path.stem))
        record = ImageRecord(image_id if image_id is not None else n + 1, image.get("file_name", path.stem + image_ext), h, w)
        jobs.append(RleImageJob(record, masks, segs, labels, rule, "keep", str(path), scores if rule == "score" else None))
    results = collect(run_ordered(convert_rle_image, jobs, workers), len(jobs), "convert SAM masks",
                      keep_going=keep_going, progress=progress)
    return assemble(
        results, source=source, description=f"entities from SAM masks {inputs}",
        conversion={"from": "sam", "inputs": str(inputs), "overlap_rule": rule,
                    "score_key": score_key if rule == "score" else None, "min_area": min_area},
        images_in=len(files), plan_problems=problems, image_root=image_root,
    )
