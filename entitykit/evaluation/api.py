"""``evaluate(gt, pred)``: APe (pycocotools-exact), class-agnostic PQ, per image and per source."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, EntityKitError, PredictionError
from . import ape
from .overlap import OVERLAP_MODES, describe_overlap, resolve_overlaps
from .predictions import load_gt, load_predictions


def _pq(tp: int, fp: int, fn: int, iou: float) -> dict:
    """panopticapi's per-category formulas (one category: the average is that category)."""
    if tp + fp + fn == 0:
        return {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0, "tp": 0, "fp": 0, "fn": 0}
    return {"PQ": iou / (tp + 0.5 * fp + 0.5 * fn), "SQ": iou / tp if tp else 0.0,
            "RQ": tp / (tp + 0.5 * fp + 0.5 * fn), "tp": int(tp), "fp": int(fp), "fn": int(fn)}


@dataclass
class EvalResult:
    """Everything ``entitykit eval`` reports. ``stats`` are pycocotools' 12 numbers, in order."""

    stats: np.ndarray
    stat_names: list
    precision: np.ndarray  # (T=10, R=101, 1, A=4, M=3): pycocotools' eval["precision"]
    recall: np.ndarray  # (T, 1, A, M)
    scores: np.ndarray
    options: dict
    counts: dict
    pq: dict | None
    by_source: dict
    per_image: list
    overlap: dict
    warnings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def summary(self) -> dict:
        return dict(zip(self.stat_names, map(float, self.stats)))

    @property
    def ape(self) -> float:
        return float(self.stats[0])

    def worst_images(self, n: int = 10, key: str = "f1_50") -> list:
        rows = [r for r in self.per_image if r["n_gt"] or r["n_pred"]]
        return sorted(rows, key=lambda r: (r[key], -r["n_gt"]))[:n]

    def to_json(self, *, per_image: bool = True, curves: bool = True) -> dict:
        from .report import result_to_json

        return result_to_json(self, per_image=per_image, curves=curves)


def evaluate(
    gt: Any,
    pred: Any,
    *,
    gt_png_dir: str | Path | None = None,
    pred_png_dir: str | Path | None = None,
    pred_format: str = "auto",
    overlap: str = "error",
    max_dets: int = 100,
    crowd: str = "void",
    workers: int = 0,
    pq: bool = True,
    by_source: bool = True,
) -> EvalResult:
    """Score predictions against an entity dataset (or COCO panoptic ground truth).

    gt: path to an entity dataset JSON or a COCO panoptic JSON (PNG folder: ``gt_png_dir`` or the
        folder named like the JSON), a parsed dict, or an ``EntityDataset``.
    pred: entitykit predictions (folder or its predictions.json), a COCO results JSON (path or
        list of dicts; or a COCO dict whose annotations carry a score, scored as that list), or COCO
        panoptic predictions (JSON; PNG folder as for gt). What a file is is decided from its
        content (``formats.sniff``); anything else is refused with what it looks like.
    overlap: "error" (default: overlapping predictions are refused — APe's definition),
        "resolve" (highest score owns each contested pixel), "allow" (overlap-tolerant APm).
    max_dets: detections per image kept (by score) before matching; COCO's 100 by default.
        Every number uses it (AR@1 and AR@10 keep their names).
    workers: threads for the per-image kernel (0 = numba's default, all cores).
    """
    if overlap not in OVERLAP_MODES:
        raise EntityKitError(f"unknown overlap mode {overlap!r}; choose one of {OVERLAP_MODES}")
    if not isinstance(max_dets, int) or max_dets < 1:
        raise EntityKitError(f"--max-dets must be a positive integer, got {max_dets!r}")
    t0 = time.perf_counter()
    timings: dict = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of small objects are created and none form cycles
    try:
        return _evaluate(gt, pred, gt_png_dir, pred_png_dir, pred_format, overlap, max_dets, crowd, workers, pq,
                         by_source, t0, timings)
    finally:
        if gc_was_enabled:
            gc.enable()


def _evaluate(gt, pred, gt_png_dir, pred_png_dir, pred_format, overlap, max_dets, crowd, workers, pq, by_source,
              t0, timings) -> EvalResult:
    g = load_gt(gt, gt_png_dir=gt_png_dir, crowd=crowd)
    p = load_predictions(pred, g.images, fmt=pred_format, pred_png_dir=pred_png_dir)
    timings["load"] = time.perf_counter() - t0
    warnings = list(g.warnings) + list(p.warnings)
    # converted datasets renumber string image ids and keep the original as source_id
    alias = {}
    for im in g.images:
        src = im.get("source_id") if isinstance(im, dict) else getattr(im, "source_id", None)
        if src is not None:
            alias[src] = im["id"] if isinstance(im, dict) else im.id
    items = p.items
    if alias and isinstance(items, list):
        ids = {im["id"] if isinstance(im, dict) else im.id for im in g.images}
        items = [_realias(it, ids, alias) for it in items]
    t1 = time.perf_counter()
    inp = ape.prepare(g.images, g.annotations, items, gt_path=g.path, pred_path=p.path, pred_labels=p.labels)
    timings["prepare"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    allow = overlap == "allow"
    per = _naming_files(g.path, p.path, ape.evaluate_all, inp, max_dets=max_dets, allow_overlap=allow,
                        workers=workers)
    flagged = np.flatnonzero(per.img_flags & 1)
    overlap_info: dict = {"mode": overlap, "images_with_overlap": int(flagged.size)}
    if flagged.size and overlap == "error":
        d = describe_overlap(inp, int(flagged[0]))
        more = f"; {flagged.size - 1} more image(s) have overlaps" if flagged.size > 1 else ""
        raise PredictionError(
            f"predictions overlap: {d.first} and {d.second} share {d.pixels} pixels "
            f"({d.pairs} overlapping pair(s), {d.image_pixels} contested pixels in this image{more}). "
            "APe allows no overlap: fix the predictions, or choose --overlap resolve (highest score owns "
            "the pixel) or --overlap allow (overlap-tolerant APm)",
            p.path, f"image {d.image_id!r}")
    if flagged.size and overlap == "resolve":
        rep = resolve_overlaps(inp, flagged)
        overlap_info.update(predictions_changed=rep.predictions_changed,
                            predictions_removed=rep.predictions_emptied, pixels_reassigned=rep.pixels_reassigned)
        per = _naming_files(g.path, p.path, ape.evaluate_all, inp, max_dets=max_dets, allow_overlap=False,
                            workers=workers)
    elif overlap == "resolve":
        overlap_info.update(predictions_changed=0, predictions_removed=0, pixels_reassigned=0)
    gt_overlap = int(np.count_nonzero(per.img_flags & 2))
    if gt_overlap:
        warnings.append(f"ground truth overlaps in {gt_overlap} image(s): scored pairwise (no partition fast path); "
                        "PQ is not defined there")
    timings["evaluate"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    # the whole set, and each source of a merged dataset (the paper's cross-dataset table)
    src_names = sorted({s for s in inp.sources if s is not None}) if by_source else []
    src_labels = np.array([s if s is not None else "" for s in inp.sources], dtype=object)
    masks = [None] + ([src_labels == s for s in src_names] if len(src_names) > 1 else [])
    n_threads = min(len(masks), workers if workers and workers > 0 else (os.cpu_count() or 1))
    if n_threads > 1:  # the accumulate kernel releases the GIL
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_threads) as ex:
            accs = list(ex.map(lambda m: ape.accumulate(inp, per, m), masks))
    else:
        accs = [ape.accumulate(inp, per, m) for m in masks]
    acc = accs[0]
    stats = ape.summarize(acc)
    timings["accumulate"] = time.perf_counter() - t1

    n_img = len(inp.img_ids)
    g_per_img = np.bincount(inp.g_img[inp.g_crowd == 0], minlength=n_img)
    over = np.flatnonzero(g_per_img > max_dets)
    if over.size:
        warnings.append(f"{over.size} image(s) have more ground-truth entities than max-dets={max_dets} "
                        f"(up to {int(g_per_img.max())}): their recall is capped; raise --max-dets")
    d_per_img = np.bincount(inp.d_img, minlength=n_img)

    # ---- per image (area all, max_dets)
    kept = per.d_rank < max_dets
    pi = _per_image(inp, per, kept, g_per_img, d_per_img)

    # ---- PQ
    pq_all = None
    pq_ok = ~np.isnan(per.pq_iou)
    if pq and pq_ok.all():
        pq_all = _pq(int(per.pq_tp.sum()), int(per.pq_fp.sum()), int(per.pq_fn.sum()), float(per.pq_iou.sum()))
    elif pq:
        warnings.append("PQ not computed: it needs non-overlapping predictions and ground truth")

    # ---- by source
    srcs: dict = {}
    for s, mask, a in zip(src_names, masks[1:], accs[1:]):
        entry = {"images": int(mask.sum()), "entities": int(g_per_img[mask].sum()),
                 "stats": dict(zip(ape.stat_names(max_dets), map(float, ape.summarize(a))))}
        if pq_all is not None:
            entry["pq"] = _pq(int(per.pq_tp[mask].sum()), int(per.pq_fp[mask].sum()),
                              int(per.pq_fn[mask].sum()), float(per.pq_iou[mask].sum()))
        srcs[s] = entry
    timings["total"] = time.perf_counter() - t0

    options = {"overlap": overlap, "max_dets": max_dets, "max_dets_list": list(per.max_dets), "crowd": crowd,
               "pred_format": p.fmt, "gt_format": g.fmt, "gt": g.path, "pred": p.path,
               "iou_thresholds": ape.IOU_THRS.tolist(), "area_ranges": dict(zip(ape.AREA_LBL, ape.AREA_RNG.tolist())),
               "area_source": {"gt": "annotation 'area'", "pred": "mask pixel count (a bbox is ignored)"},
               "tie_break": "stable sort on -score over file order (pycocotools)"}
    counts = {"images": n_img, "gt_entities": int((inp.g_crowd == 0).sum()), "gt_crowd": int(inp.g_crowd.sum()),
              "predictions": inp.n_dt, "predictions_scored": int(kept.sum())}
    return EvalResult(stats, ape.stat_names(max_dets), acc.precision, acc.recall, acc.scores, options, counts,
                      pq_all, srcs, pi, overlap_info, warnings, timings)


def _naming_files(gt_path, pred_path, fn, *args, **kwargs):
    """``fn(...)``, its errors given the file they are about (the kernel knows items, not files)."""
    try:
        return fn(*args, **kwargs)
    except PredictionError as e:
        if e.path is None and pred_path:
            raise PredictionError(e.problem, pred_path, e.item) from None
        raise
    except DatasetError as e:
        if e.path is None and gt_path:
            raise DatasetError(e.problem, gt_path, e.item) from None
        raise


def _realias(it, ids: set, alias: dict):
    """A prediction naming an image by its original (e.g. Cityscapes string) id → the dataset's id."""
    if not isinstance(it, dict):  # a typed record of fastjson
        it = {"image_id": it.image_id, "score": it.score,
              "segmentation": {"size": list(it.segmentation.size), "counts": it.segmentation.counts}}
    iid = it.get("image_id")
    if iid not in ids and iid in alias:
        return dict(it, image_id=alias[iid])
    return it


def _per_image(inp, per, kept, g_per_img, d_per_img) -> list:
    n_img = len(inp.img_ids)
    out = {}
    for t_idx, name in ((0, "50"), (5, "75")):
        m = per.match[:, 0, t_idx].astype(bool) & kept
        ig = per.ign[:, 0, t_idx].astype(bool)
        tp = np.bincount(inp.d_img[m & ~ig], minlength=n_img)
        fp = np.bincount(inp.d_img[~m & ~ig & kept], minlength=n_img)
        out[name] = (tp, fp)
    rows = []
    tp50, fp50 = out["50"]
    tp75, fp75 = out["75"]
    for i in range(n_img):
        ng, nd = int(g_per_img[i]), int(d_per_img[i])
        fn50 = ng - int(tp50[i])
        denom = 2 * int(tp50[i]) + int(fp50[i]) + fn50
        row = {"image_id": inp.img_ids[i], "source": inp.sources[i], "n_gt": ng, "n_pred": nd,
               "tp_50": int(tp50[i]), "fp_50": int(fp50[i]), "fn_50": fn50,
               "tp_75": int(tp75[i]), "fp_75": int(fp75[i]), "fn_75": ng - int(tp75[i]),
               "f1_50": (2 * int(tp50[i]) / denom) if denom else 1.0}
        if not np.isnan(per.pq_iou[i]):
            q = _pq(int(per.pq_tp[i]), int(per.pq_fp[i]), int(per.pq_fn[i]), float(per.pq_iou[i]))
            row["pq"] = q["PQ"] if ng or nd else 1.0
        rows.append(row)
    return rows
