"""Building the viewer folder: gather images, ground truth and predictions, score, render, write.

See the package docstring (``entitykit.view``) for the layout and why it is a static folder.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from ..errors import EntityKitError, PredictionError
from ..fileio import atomic_path, check_output, read_json
from ..images import read_image
from ..naming import output_names
from ..prediction_format import PREDICTIONS_JSON

INDEX_HTML = "index.html"
THUMB_SIDE = 320  # thumbnails' longest side (shown at about half that: sharp on high-density screens)
# photos stored losslessly keep their exact pixels in the page (PNG); others are re-encoded as JPEG
LOSSLESS_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".gif"}
JPEG_QUALITY = 92
SCORE_KEYS = ("APe", "APe50", "APe75")


@dataclass
class ViewerItem:
    """One image of the viewer: where its pixels come from and what is drawn over them."""

    image_id: Any
    name: str  # the dataset's file_name, or the name predict recorded ('image')
    path: Path  # the image file
    position: int  # its place in the input file (the gallery's "file order")
    record: dict | None = None  # the dataset's image entry (None: predictions only)
    annotations: list | None = None  # its ground-truth annotations (None: no dataset)
    prediction: dict | None = None  # its predictions.json record (None: no predictions, or none for it)
    scores: dict = field(default_factory=dict)  # APe, APe50, APe75 and the scorer's per-image row


# ---------------------------------------------------------------------------------------------
# Inputs


def _is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def open_predictions(predictions: str | Path) -> tuple[Path, Path, dict]:
    """(folder, predictions.json, parsed document) of an ``entitykit predict`` output.

    ``predictions``: the folder or its predictions.json. The structure the viewer needs is checked
    here with one line naming the file and the record; the scorer checks the rest when ground
    truth is given."""
    p = Path(predictions)
    js = p / PREDICTIONS_JSON if p.is_dir() else p
    if p.is_dir() and not js.is_file():
        raise PredictionError(f"no {PREDICTIONS_JSON} in this folder: give an `entitykit predict` output folder "
                              "(id maps + predictions.json)", p)
    from ..evaluation.predictions import predictions_records

    doc = read_json(js, "predictions file")
    recs = predictions_records(doc, js)
    seen: set = set()
    for k, rec in enumerate(recs):
        if not isinstance(rec, dict):
            raise PredictionError("not an object {image_id, file_name, segments}", js, f"images[{k}]")
        iid = rec.get("image_id")
        if not (_is_whole(iid) or isinstance(iid, str)):
            raise PredictionError(f"image_id {iid!r} is not an integer or a string", js, f"images[{k}]")
        where = f"images[{k}] (image {iid!r})"
        if iid in seen:
            raise PredictionError(f"image id {iid!r} listed twice", js, where)
        seen.add(iid)
        if not isinstance(rec.get("file_name"), str) or not rec["file_name"]:
            raise PredictionError(f"file_name {rec.get('file_name')!r} must name the id-map PNG", js, where)
        segs = rec.get("segments")
        if not isinstance(segs, list):
            raise PredictionError("'segments' must be a list of {id, score}", js, where)
        ids: set = set()
        for s in segs:
            sid = s.get("id") if isinstance(s, dict) else None
            if not _is_whole(sid) or sid < 1:
                raise PredictionError(f"segment id {sid!r} is not an integer >= 1", js, where)
            if sid in ids:
                raise PredictionError(f"duplicate segment id {sid}", js, where)
            ids.add(sid)
            score = s.get("score")
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score) or score < 0:
                raise PredictionError(f"segment id {sid}: score {score!r} is not a finite number >= 0", js, where)
    return js.parent, js, doc


def _prediction_image(rec: dict, js: Path, images: Path | None, item: str) -> tuple[Path, str]:
    """Where the photo of a prediction record is, without a dataset: ``images``/``image``, or the
    ``source`` path ``entitykit predict`` recorded."""
    name = rec.get("image")
    if images is not None:
        if not isinstance(name, str) or not name:
            raise PredictionError("the record names no image file ('image'), so --images cannot locate it; give the "
                                  "dataset (--dataset) instead", js, item)
        return images / name, name
    src = rec.get("source")
    if isinstance(src, str) and src and Path(src).is_file():
        return Path(src), name if isinstance(name, str) and name else Path(src).name
    if isinstance(src, str) and src:
        raise PredictionError(f"image file {src} (recorded in 'source') not found: give --images DIR (the folder "
                              "the 'image' names are relative to) or --dataset", js, item)
    raise PredictionError("the record says nothing about its image file ('image'/'source'): give --dataset", js, item)


def _read_pred_map(folder: Path, js: Path, rec: dict, shape: tuple[int, int], item: str) -> np.ndarray:
    """A record's id map, checked as the scorer checks it (inside the folder, the image's size,
    every id listed)."""
    from ..masks import read_id_map_png

    name = rec["file_name"]
    png = folder / name
    try:
        png.resolve().relative_to(folder.resolve())
        inside = not Path(name).is_absolute()
    except ValueError:
        inside = False
    if not inside:
        raise PredictionError(f"file_name {name!r} leaves the predictions folder (id maps are named relative to "
                              "it)", js, item)
    if not png.is_file():
        raise PredictionError(f"id-map PNG {png} not found (file_name {name!r})", js, item)
    try:
        id_map = read_id_map_png(png)
    except EntityKitError as e:
        raise PredictionError(e.problem, e.path or png, e.item or item) from None
    if id_map.shape != shape:
        raise PredictionError(f"id map is {id_map.shape[1]}×{id_map.shape[0]} but the image is {shape[1]}×{shape[0]}",
                              png, item)
    listed = {s["id"] for s in rec["segments"]}
    present = np.unique(id_map)
    unknown = [int(v) for v in present if v and int(v) not in listed]
    if unknown:
        raise PredictionError(f"id {unknown[0]} is in the id map {png} but has no segments entry (no score)", js, item)
    return id_map


# ---------------------------------------------------------------------------------------------
# Scoring (the project's scorer; nothing re-implemented here)


def per_image_ape(dataset: Any, predictions: str | Path, *, max_dets: int = 100) -> tuple[dict, dict]:
    """Per-image APe with ``entitykit.evaluation.evaluate``: ({image_id: scores}, overall summary).

    Each image gets its own ``source``, so the scorer's per-source accumulation is pycocotools'
    AP on that image alone. ``scores`` holds "APe", "APe50", "APe75" (None where the image has no
    ground-truth entity: AP is undefined there) and the scorer's per-image row (n_gt, n_pred,
    tp_50, fp_50, fn_50, f1_50, pq, …). ``dataset``: an EntityDataset (or anything with
    ``images``, ``annotations``); ``predictions``: a file or folder ``evaluate`` reads.
    """
    from ..evaluation import evaluate

    keys = [f"{k:09d}" for k in range(len(dataset.images))]
    images = [dict(im, source=key) for im, key in zip(dataset.images, keys)]
    gt = SimpleNamespace(images=images, annotations=dataset.annotations, path=getattr(dataset, "path", None))
    result = evaluate(gt, predictions, max_dets=max_dets)
    rows = {row["image_id"]: row for row in result.per_image}
    out: dict = {}
    for im, key in zip(dataset.images, keys):
        stats = result.by_source[key]["stats"] if len(keys) > 1 else result.summary
        row = dict(rows.get(im["id"], {}))
        row["source"] = im.get("source")
        for name in SCORE_KEYS:
            v = float(stats[name])
            row[name] = v if v >= 0 else None  # pycocotools' -1: no ground truth in this image
        out[im["id"]] = row
    summary = {k: (float(v) if v >= 0 else None) for k, v in result.summary.items()}
    if result.pq is not None:
        summary["PQ"] = None if result.pq["PQ"] is None else float(result.pq["PQ"])  # None: no GT, no prediction
    return out, summary


def _worst_first(item: ViewerItem) -> tuple:
    s = item.scores
    ape = s.get("APe")
    if ape is None:  # no ground truth: AP is undefined; after the scored images, most predictions first
        return (1, -s.get("n_pred", 0), 0.0, item.position)
    return (0, ape, s.get("f1_50", 1.0), -s.get("n_gt", 0), item.position)


# ---------------------------------------------------------------------------------------------
# Rendering one image


def _data_uri(pixels: np.ndarray, fmt: str) -> str:
    buf = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(pixels).save(buf, "PNG", compress_level=6)
    else:
        Image.fromarray(pixels).save(buf, "JPEG", quality=JPEG_QUALITY)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _runs(id_map: np.ndarray) -> dict:
    """The id map as row-major runs: values ``v`` repeated ``n`` times (compact; decoded in the page)."""
    flat = id_map.ravel()
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    return {"v": flat[starts].astype(np.int64).tolist(), "n": lengths.astype(np.int64).tolist()}


def _best_matches(a: np.ndarray, b: np.ndarray) -> tuple[dict, dict]:
    """For every value of ``a`` its best-IoU value of ``b`` and the IoU, and the reverse (0 = none)."""
    nb = int(b.max()) + 1
    codes = a.astype(np.int64).ravel() * nb + b.ravel()
    u, inter = np.unique(codes, return_counts=True)
    ia, ib = u // nb, u % nb
    keep = (ia > 0) & (ib > 0)
    ia, ib, inter = ia[keep], ib[keep], inter[keep]
    area_a = np.bincount(a.ravel())
    area_b = np.bincount(b.ravel())
    iou = inter / (area_a[ia] + area_b[ib] - inter)
    best_a: dict = {}
    best_b: dict = {}
    for x, y, v in zip(ia.tolist(), ib.tolist(), iou.tolist()):
        if v > best_a.get(x, (0, -1.0))[1]:
            best_a[x] = (y, v)
        if v > best_b.get(y, (0, -1.0))[1]:
            best_b[y] = (x, v)
    return best_a, best_b


def _hex(rgb: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def _thumb(pixels: np.ndarray, path: Path) -> None:
    im = Image.fromarray(pixels)
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=85)


def _render(item: ViewerItem, index: int, ds: Any, pred_folder: Path | None, js: Path | None, exif: bool,
            with_pred: bool) -> tuple[dict, dict]:
    """(payload of data/<name>.js, summary for the gallery) of one image."""
    from ..visualize import entity_colors, overlay

    where = f"image {item.image_id!r}"
    expect = (item.record["height"], item.record["width"]) if item.record is not None else None
    if expect is None and item.prediction is not None:
        h, w = item.prediction.get("height"), item.prediction.get("width")
        expect = (h, w) if _is_whole(h) and _is_whole(w) else None
    image = read_image(item.path, exif=exif, item=where, expect=expect)
    shape = image.shape[:2]
    fmt = "PNG" if item.path.suffix.lower() in LOSSLESS_SUFFIXES else "JPEG"
    payload: dict = {"index": index, "name": item.name, "width": int(shape[1]), "height": int(shape[0]),
                     "photo": _data_uri(image, fmt)}
    gt_map = pred_map = None
    colors: dict = {}  # side → entity id → RGB (entitykit.visualize: touching entities differ)
    labelled: dict = {}  # side → the id map whose ids the pictures show
    scores: dict = {}
    gt_ents: list = []
    pred_ents: list = []
    if item.annotations is not None:
        gt_map = ds.paint(item.record, item.annotations)  # value k = k-th annotation; crowd regions too (marked)
        # pictures are labelled with annotation ids, the ids the page shows on hover
        gt_ids = np.array([0] + [ann["id"] for ann in item.annotations], np.int64)[gt_map]
        colors["gt"] = entity_colors(gt_ids)
        labelled["gt"] = gt_ids
        for k, ann in enumerate(item.annotations, 1):
            gt_ents.append({"v": k, "id": ann.get("id"), "area": ann.get("area"), "bbox": ann.get("bbox"),
                            "source": ann.get("source"), "category": ann.get("source_category"),
                            "thing": ann.get("isthing"), "crowd": bool(ann.get("iscrowd")),
                            "color": _hex(colors["gt"].get(ann["id"], (255, 255, 255)))})
    if with_pred:
        if item.prediction is not None:
            pred_map = _read_pred_map(pred_folder, js, item.prediction, shape, where)
        else:
            pred_map = np.zeros(shape, np.int32)
        area = np.bincount(pred_map.ravel())
        colors["pred"] = entity_colors(pred_map)
        labelled["pred"] = pred_map
        for seg in (item.prediction or {}).get("segments", []):
            sid = seg["id"]
            if sid < area.size and area[sid]:
                pred_ents.append({"v": sid, "id": sid, "score": float(seg["score"]), "area": int(area[sid]),
                                  "color": _hex(colors["pred"][sid])})
                scores[sid] = float(seg["score"])
    if gt_map is not None and pred_map is not None:
        crowd = np.array([False] + [e["crowd"] for e in gt_ents])
        gt_for_match = np.where(crowd[gt_map], 0, gt_map) if crowd.any() else gt_map
        best_gt, best_pred = _best_matches(gt_for_match, pred_map)
        for e in gt_ents:
            if e["v"] in best_gt:
                e["best"] = [best_gt[e["v"]][0], round(best_gt[e["v"]][1], 4)]  # prediction id, IoU
        ann_id = {e["v"]: e["id"] for e in gt_ents}
        for e in pred_ents:
            if e["v"] in best_pred:
                e["best"] = [ann_id[best_pred[e["v"]][0]], round(best_pred[e["v"]][1], 4)]  # annotation id, IoU
    thumbs = {}
    for side, id_map, ents in (("gt", gt_map, gt_ents), ("pred", pred_map, pred_ents)):
        if id_map is None:
            continue
        ids = labelled[side]
        ov = overlay(image, ids, colors=colors[side], scores=scores if side == "pred" else None)
        thumbs[side] = overlay(image, ids, colors=colors[side], labels=False)  # labels are unreadable when small
        payload[side] = {"overlay": _data_uri(ov, fmt), "runs": _runs(id_map), "entities": ents}
    if with_pred and item.prediction is None:
        payload["pred"]["note"] = "no prediction record for this image"
    summary = {"n_gt": sum(1 for e in gt_ents if not e["crowd"]) if gt_map is not None else None,
               "n_pred": len(pred_ents) if pred_map is not None else None, "w": int(shape[1]), "h": int(shape[0])}
    return payload, {"thumbs": thumbs, **summary}


def _script_json(obj: Any) -> str:
    """JSON safe to place inside a <script> element (no "</script>", no line separators)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# ---------------------------------------------------------------------------------------------
# The one call


def build_viewer(
    dataset: Any = None,
    predictions: str | Path | None = None,
    out: str | Path = "entitykit-view",
    images: str | Path | None = None,
    *,
    max_images: int | None = None,
    overwrite: bool = False,
    exif: bool = True,
    progress: bool = False,
    on_scored: Callable[[dict], None] | None = None,
) -> Path:
    """Write a static viewer folder for a dataset, a prediction run, or both; returns its index.html.

    dataset: an entity dataset (path or EntityDataset; opened by ``EntityDataset.open``).
    predictions: an ``entitykit predict`` output folder (or its predictions.json).
    images: the image folder (overrides the dataset's ``image_root``; without a dataset, the folder
        the records' ``image`` names are relative to — default: the ``source`` paths predict recorded).
    max_images: show only the first N images of the gallery's order (the N worst when both
        inputs are given: per-image APe is computed for every image first).
    overwrite: replace a non-empty ``out`` (only once the new folder is complete).
    exif: apply EXIF orientation (default), as predict and the dataset tools do.
    on_scored: called with the overall scores (APe, APe50, …) once predictions are scored.
    Bad input is an :class:`EntityKitError` naming the file and the item; nothing is written then.
    """
    from ..dataset import EntityDataset
    from ..progress import progress_bar

    if dataset is None and predictions is None:
        raise EntityKitError("give a dataset, a prediction folder, or both")
    if max_images is not None and (not _is_whole(max_images) or max_images < 1):
        raise EntityKitError(f"--max-images must be a positive integer, got {max_images!r}")
    out = Path(out)
    inputs = [p for p in (dataset, predictions, images) if isinstance(p, (str, Path))]
    check_output(out, kind="folder", inputs=inputs, overwrite=overwrite)
    image_root = Path(images) if images is not None else None

    ds = None
    items: list[ViewerItem] = []
    if dataset is not None:
        ds = EntityDataset.open(dataset, image_root=image_root, need_image_root=True)
        if not ds.images:
            raise EntityKitError("the dataset has no images", ds.path)
        groups = ds.annotations_by_image()
        items = [ViewerItem(im["id"], str(im["file_name"]), ds.image_path(im), k, im, groups[im["id"]])
                 for k, im in enumerate(ds.images)]
    pred_folder = js = None
    doc: dict = {}
    if predictions is not None:
        pred_folder, js, doc = open_predictions(predictions)
        if ds is not None:
            by_id = {it.image_id: it for it in items}
            for k, rec in enumerate(doc["images"]):
                it = by_id.get(rec["image_id"])
                if it is None:
                    raise PredictionError(f"unknown image id {rec['image_id']!r} (not in the dataset "
                                          f"{ds.path or 'given'})", js, f"images[{k}]")
                it.prediction = rec
        else:
            if not doc["images"]:
                raise PredictionError("the run has no images", js)
            for k, rec in enumerate(doc["images"]):
                path, name = _prediction_image(rec, js, image_root, f"images[{k}] (image {rec['image_id']!r})")
                items.append(ViewerItem(rec["image_id"], name, path, k, prediction=rec))

    overall = None
    if ds is not None and pred_folder is not None:
        scores, overall = per_image_ape(ds, js)
        for it in items:
            it.scores = scores[it.image_id]
        items.sort(key=_worst_first)
        if on_scored is not None:
            on_scored(overall)
    total = len(items)
    if max_images is not None:
        items = items[:max_images]

    data_names = output_names([it.name for it in items], suffix=".js")
    thumb_names = output_names([it.name for it in items], suffix=".jpg")
    mode = "both" if ds is not None and pred_folder is not None else ("gt" if ds is not None else "pred")
    entries = []
    from .page import render_page

    with atomic_path(out, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir(parents=True)
        with progress_bar(len(items), "view", enabled=progress) as advance:
            for i, (it, dname, tname) in enumerate(zip(items, data_names, thumb_names)):
                payload, summary = _render(it, i, ds, pred_folder, js, exif, with_pred=pred_folder is not None)
                data_rel = f"data/{dname}.js"
                (tmp / data_rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / data_rel).write_text(f"ekData({_script_json(payload)});\n", encoding="utf-8")
                thumbs = {}
                for side, ov in summary["thumbs"].items():
                    rel = f"thumbs/{side}/{tname}.jpg"
                    _thumb(ov, tmp / rel)
                    thumbs[side] = rel
                s = it.scores
                entries.append({
                    "i": i, "image_id": it.image_id, "name": it.name, "pos": it.position, "data": data_rel,
                    "thumbs": thumbs, "w": summary["w"], "h": summary["h"],
                    "n_gt": summary["n_gt"], "n_pred": summary["n_pred"],
                    "source": (it.record or {}).get("source"),
                    **{k: s.get(k) for k in (*SCORE_KEYS, "f1_50", "tp_50", "fp_50", "fn_50", "pq") if s},
                })
                advance()
        model = doc.get("info", {}).get("model") if isinstance(doc.get("info"), dict) else None
        index = {
            "mode": mode,
            "dataset": str(ds.path) if ds is not None and ds.path is not None else None,
            "predictions": str(pred_folder) if pred_folder is not None else None,
            "model": model if isinstance(model, (dict, str)) else None,
            "total": total,
            "overall": overall,
            "items": entries,
        }
        title = " · ".join(Path(p).name for p in (index["dataset"], index["predictions"]) if p) or "entitykit view"
        (tmp / INDEX_HTML).write_text(render_page(_script_json(index), title), encoding="utf-8")
    return out / INDEX_HTML
