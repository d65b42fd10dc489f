"""Readers for ground truth and the three prediction formats the scorer accepts.

Everything is turned into COCO-results-like dicts ``{image_id, segmentation: RLE, score}`` in the
order the file lists them (that order breaks score ties, as in pycocotools), plus a label per
prediction for error messages.

Prediction formats (see docs/prediction-format.md):

- ``entitykit``: a folder with ``predictions.json`` ({"format": "entitykit-predictions", ...})
  and one id-map PNG per image: the paper's P (0 = no entity) and S (a score per id).
- ``coco``: a COCO results JSON list ``[{image_id, segmentation (RLE), score, ...}]``;
  ``category_id`` and ``bbox`` are ignored (class-agnostic, mask area for the size buckets).
- ``panoptic``: COCO panoptic predictions (JSON + PNG folder); ``segments_info[].score`` is used
  when present. Rule when scores are missing: when NO segment of the file has a score, every
  segment scores 1.0, so the ranking is the file order (images by id, segments in
  ``segments_info`` order; pycocotools' stable sort); a file where only some segments have a
  score is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, PredictionError
from ..fileio import read_json
from ..masks import encode_id_map, read_id_map_png
from . import fastjson

ENTITYKIT_FORMAT = "entitykit-predictions"
FORMATS = ("auto", "entitykit", "coco", "panoptic")
MISSING_SCORE = 1.0


@dataclass
class LoadedPredictions:
    items: list  # [{image_id, segmentation, score}]
    labels: list  # message label per item
    fmt: str
    path: str | None
    warnings: list = field(default_factory=list)


@dataclass
class LoadedGT:
    images: list
    annotations: list
    fmt: str
    path: str | None
    warnings: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Ground truth


def _is_panoptic(d: Any) -> bool:
    return isinstance(d, dict) and bool(d.get("annotations")) and "segments_info" in d["annotations"][0]


def _default_png_dir(json_path: Path) -> Path:
    return json_path.with_suffix("")


def panoptic_entities(
    data: dict, png_dir: Path, json_path: Path | None, *, crowd: str = "void", what: str = "ground truth",
    err=DatasetError,
) -> tuple[list, list]:
    """Per segment one entity (thing or stuff); crowd segments become void or stay as iscrowd=1.

    Returns (images, annotations) of an entity dataset in memory; used for panoptic prediction
    files and as a fallback reader for panoptic ground truth."""
    images = data.get("images") or []
    by_id = {im["id"]: im for im in images}
    by_id.update({im["source_id"]: im for im in images if "source_id" in im})
    out_anns = []
    aid = 0
    for k, ann in enumerate(data.get("annotations") or []):
        iid = ann.get("image_id")
        if iid not in by_id:
            raise err(f"unknown image id {iid!r}", json_path, f"annotations[{k}]")
        im = by_id[iid]
        png = png_dir / ann.get("file_name", "")
        id_map = read_id_map_png(png)
        if id_map.shape != (im["height"], im["width"]):
            raise err(f"PNG is {id_map.shape[1]}×{id_map.shape[0]} but image {iid!r} is {im['width']}×{im['height']}",
                      png)
        segs = ann.get("segments_info") or []
        seg_ids = [s["id"] for s in segs]
        if len(set(seg_ids)) != len(seg_ids):
            dup = next(s for i, s in enumerate(seg_ids) if s in seg_ids[:i])
            raise err(f"duplicate segment id {dup}", json_path, f"image {iid!r}")
        ids, rles, areas = encode_id_map(id_map)
        rle_of = dict(zip(ids.tolist(), rles))
        unknown = sorted(set(ids.tolist()) - set(seg_ids))
        if unknown:
            raise err(f"PNG has segment id {unknown[0]} with no segments_info entry", png, f"image {iid!r}")
        for s in segs:
            rle = rle_of.get(s["id"])
            if rle is None:
                continue  # listed but not painted: no pixels, no entity
            if s.get("iscrowd") and crowd == "void":
                continue
            aid += 1
            a = {"id": aid, "image_id": im["id"], "category_id": 1, "segmentation": rle,
                 "area": int(areas[ids.tolist().index(s["id"])]), "iscrowd": 1 if s.get("iscrowd") else 0,
                 "_segment_id": s["id"]}
            if "score" in s:
                a["score"] = s["score"]
            out_anns.append(a)
    return images, out_anns


def load_gt(gt: Any, *, gt_png_dir: str | Path | None = None, crowd: str = "void") -> LoadedGT:
    """An entity dataset (path, dict or object with .images/.annotations) or COCO panoptic JSON."""
    if hasattr(gt, "images") and hasattr(gt, "annotations"):
        where = getattr(gt, "path", None)
        return LoadedGT(list(gt.images), list(gt.annotations), "entity", str(where) if where else None)
    if isinstance(gt, dict):
        data, path = gt, None
    else:
        path = Path(gt)
        fast = fastjson.entity_file(fastjson.read_bytes(path)) if path.is_file() else None
        if fast is not None:
            return LoadedGT(fast.images, fast.annotations, "entity", str(path))
        data = read_json(path, "ground-truth JSON")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DatasetError("not an entity dataset or COCO panoptic JSON (needs 'images' and 'annotations')", path)
    if _is_panoptic(data):
        png_dir = Path(gt_png_dir) if gt_png_dir else (_default_png_dir(path) if path else None)
        if png_dir is None or not png_dir.is_dir():
            raise DatasetError(f"COCO panoptic ground truth needs its PNG folder (looked for {png_dir})", path)
        try:
            from ..convert.coco_panoptic import convert_coco_panoptic  # the converter's rules
        except ImportError:
            images, anns = panoptic_entities(data, png_dir, path, crowd=crowd)
            return LoadedGT(images, anns, "coco-panoptic", str(path) if path else None)
        ds = convert_coco_panoptic(path, png_dir, crowd=crowd)
        return LoadedGT(list(ds.images), list(ds.annotations), "coco-panoptic", str(path) if path else None)
    if path is not None:
        try:
            from ..dataset import EntityDataset
        except ImportError:
            EntityDataset = None  # noqa: N806
        if EntityDataset is not None:
            ds = EntityDataset.load(path)
            return LoadedGT(list(ds.images), list(ds.annotations), "entity", str(path))
    return LoadedGT(data["images"], data["annotations"], "entity", str(path) if path else None)


# ---------------------------------------------------------------------------------------------
# Predictions


def _image_dicts(images: list) -> list:
    if images and not isinstance(images[0], dict):
        out = []
        for im in images:
            d = {"id": im.id, "height": im.height, "width": im.width}
            if getattr(im, "source_id", None) is not None:
                d["source_id"] = im.source_id
            out.append(d)
        return out
    return images


def detect_format(pred: Any) -> tuple[str, Any, Path | None]:
    """(format, parsed JSON or None, JSON path)."""
    if isinstance(pred, list):
        return "coco", pred, None
    p = Path(pred)
    if p.is_file() and p.suffix != ".png":
        from . import _scan  # numba: imported on first use only

        raw = fastjson.read_bytes(p)
        fast = _scan.coco_results(raw)  # compiled reader: arrays, no object per prediction
        if fast is None:
            fast = fastjson.coco_results(raw)  # typed records
        if fast is not None:
            return "coco", fast, p
    if p.is_dir():
        j = p / "predictions.json"
        if j.exists():
            return "entitykit", read_json(j, "predictions JSON"), j
        raise PredictionError("folder has no predictions.json (entitykit prediction format)", p)
    data = read_json(p, "predictions JSON")
    if isinstance(data, list):
        return "coco", data, p
    if isinstance(data, dict) and data.get("format") == ENTITYKIT_FORMAT:
        return "entitykit", data, p
    if _is_panoptic(data) or (isinstance(data, dict) and "annotations" in data and "images" in data):
        return "panoptic", data, p
    raise PredictionError(
        "cannot tell the prediction format: expected a COCO results list, an entitykit predictions.json "
        f"(format: {ENTITYKIT_FORMAT!r}) or COCO panoptic JSON", p)


def load_predictions(pred: Any, gt_images: list, *, fmt: str = "auto", pred_png_dir: str | Path | None = None
                     ) -> LoadedPredictions:
    if fmt not in FORMATS:
        raise PredictionError(f"unknown prediction format {fmt!r}; choose one of {FORMATS}")
    found, data, path = detect_format(pred)
    if fmt != "auto" and fmt != found:
        raise PredictionError(f"file looks like {found!r} predictions, not {fmt!r}", path)
    spath = str(path) if path else None
    if found == "coco":
        items = data
        if hasattr(items, "buf"):  # _scan.ResultColumns
            from .ape import IndexLabels

            return LoadedPredictions(items, IndexLabels("result"), "coco", spath)
        if items and not isinstance(items[0], dict) and not hasattr(items[0], "__struct_fields__"):
            raise PredictionError("COCO results must be a list of objects", path)
        from .ape import IndexLabels

        return LoadedPredictions(items, IndexLabels("result"), "coco", spath)
    images = {im["id"]: im for im in _image_dicts(gt_images)}
    # converted datasets renumber string image ids (Cityscapes) and keep the original as source_id
    images.update({im["source_id"]: im for im in list(images.values()) if "source_id" in im})
    if found == "entitykit":
        return _load_entitykit(data, path, images)
    png_dir = Path(pred_png_dir) if pred_png_dir else _default_png_dir(path)
    if not png_dir.is_dir():
        raise PredictionError(f"COCO panoptic predictions need their PNG folder (looked for {png_dir})", path)
    # image metadata: the prediction file's own images if present, else the ground truth's
    anns = data.get("annotations") or []
    for k, a in enumerate(anns):
        if a.get("image_id") not in images:
            raise PredictionError(f"unknown image id {a.get('image_id')!r} (not in the ground truth)", path,
                                  f"annotations[{k}]")
    with_score = sum(1 for a in anns for s in a.get("segments_info") or [] if "score" in s)
    total = sum(len(a.get("segments_info") or []) for a in anns)
    warnings = []
    if 0 < with_score < total:
        raise PredictionError(
            f"{with_score} of {total} segments have a score; give every segment a score or none "
            "(without scores every segment scores 1.0 and the file order ranks them)", path)
    if total and not with_score:
        warnings.append("panoptic predictions have no scores: every segment scores 1.0, ranked by file order "
                        "(images by id, segments_info order)")
    _, ents = panoptic_entities({"images": list({id(v): v for v in images.values()}.values()), "annotations": anns},
                                png_dir, path,
                                crowd="keep", what="predictions", err=PredictionError)
    items, labels = [], []
    for e in ents:
        s = e.get("score", MISSING_SCORE)
        items.append({"image_id": e["image_id"], "segmentation": e["segmentation"], "score": s})
        labels.append(f"segment {e['_segment_id']} of image {e['image_id']!r}")
    return LoadedPredictions(items, labels, "panoptic", spath, warnings)


def _load_entitykit(data: dict, path: Path, images: dict) -> LoadedPredictions:
    if not isinstance(data, dict) or data.get("format") != ENTITYKIT_FORMAT:
        raise PredictionError(f"not an entitykit predictions file (format must be {ENTITYKIT_FORMAT!r})", path)
    root = path.parent
    recs = data.get("images")
    if not isinstance(recs, list):
        raise PredictionError("'images' must be a list", path)
    items, labels, warnings = [], [], []
    seen_images: set = set()
    dropped = 0
    for k, rec in enumerate(recs):
        iid = rec.get("image_id")
        where = f"images[{k}] (image {iid!r})"
        if iid not in images:
            raise PredictionError(f"unknown image id {iid!r} (not in the ground truth)", path, f"images[{k}]")
        if iid in seen_images:
            raise PredictionError(f"image id {iid!r} listed twice", path, where)
        seen_images.add(iid)
        segs = rec.get("segments")
        if not isinstance(segs, list):
            raise PredictionError("'segments' must be a list of {id, score}", path, where)
        ids = []
        scores = {}
        for s in segs:
            sid = s.get("id") if isinstance(s, dict) else None
            if not isinstance(sid, int) or isinstance(sid, bool) or sid < 1:
                raise PredictionError(f"segment id {sid!r} is not an integer >= 1", path, where)
            if sid in scores:
                raise PredictionError(f"duplicate segment id {sid}", path, where)
            scores[sid] = s.get("score")
            ids.append(sid)
        im = images[iid]
        png = root / rec.get("file_name", "")
        id_map = read_id_map_png(png)
        if id_map.shape != (im["height"], im["width"]):
            raise PredictionError(
                f"id map is {id_map.shape[1]}×{id_map.shape[0]} but image {iid!r} is {im['width']}×{im['height']}", png)
        pids, rles, _ = encode_id_map(id_map)
        rle_of = dict(zip(pids.tolist(), rles))
        unknown = sorted(set(rle_of) - set(scores))
        if unknown:
            raise PredictionError(f"id {unknown[0]} is in the id map but has no score", png, f"image {iid!r}")
        for sid in ids:
            if sid not in rle_of:
                dropped += 1
                continue
            items.append({"image_id": im["id"], "segmentation": rle_of[sid], "score": scores[sid]})
            labels.append(f"id {sid} of image {iid!r}")
    if dropped:
        warnings.append(f"{dropped} listed prediction ids have no pixels in their id map and were skipped")
    return LoadedPredictions(items, labels, "entitykit", str(path), warnings)
