"""``evaluate(gt, pred)``: APe (pycocotools-exact), class-agnostic PQ, per image and per source."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatasetError, EntityKitError, PredictionError
from . import _ahead
from .boundary import DEFAULT_DILATION_RATIO, check_ratio

if TYPE_CHECKING:  # annotations only: numpy is imported when scoring starts (below)
    import numpy as np

# This module imports no numpy at its top (nor the modules that use it): ``evaluate`` first starts
# reading both files in the background (``_ahead``), then imports the rest of the scorer (~0.1 s of
# numpy and friends on the 2-core machine) while they are read and scanned.

IOU_KINDS = ("mask", "boundary")


def _pq(tp: int, fp: int, fn: int, iou: float) -> dict:
    """panopticapi's per-category formulas (one category: the average is that category). With no
    ground truth and no prediction (tp + fp + fn = 0) PQ, SQ and RQ are undefined: None (JSON null,
    printed "—"), where panopticapi skips the category and its average divides by zero."""
    if tp + fp + fn == 0:
        return {"PQ": None, "SQ": None, "RQ": None, "tp": 0, "fp": 0, "fn": 0}
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
    # which area decided the predictions' S/M/L ranges: "bbox" (pycocotools' loadRes: the first
    # result has a bbox) or "mask" (pixel counts); ``area_rule`` in evaluate()
    area_rule_applied: str = "mask"
    # which IoU matched predictions to ground truth: "mask" (APe) or "boundary" (Boundary APe,
    # min(mask IoU, boundary IoU)); dilation_ratio: the band width's ratio (boundary only)
    iou: str = "mask"
    dilation_ratio: float | None = None

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
    area_rule: str = "auto",
    iou: str | tuple = "mask",
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
    progress: bool = False,
) -> EvalResult | tuple:
    """Score predictions against an entity dataset (or COCO panoptic ground truth).

    gt: path to an entity dataset JSON or a COCO panoptic JSON (PNG folder: ``gt_png_dir`` or the
        folder named like the JSON), a parsed dict, an ``EntityDataset``, or a sharded dataset's
        folder (or its manifest.json): scored shard by shard, one shard's masks in memory, with
        exactly the one-file result (docs/sharding.md, "Scoring against a sharded ground truth").
    pred: entitykit predictions (folder or its predictions.json), a COCO results JSON (path or
        list of dicts; or a COCO dict whose annotations carry a score, scored as that list), or COCO
        panoptic predictions (JSON; PNG folder as for gt). What a file is is decided from its
        content (``formats.sniff``); anything else is refused with what it looks like.
    overlap: "error" (default: overlapping predictions are refused — APe's definition),
        "resolve" (highest score owns each contested pixel), "allow" (overlap-tolerant APm).
    max_dets: detections per image kept (by score) before matching; COCO's 100 by default.
        Every number uses it (AR@1 and AR@10 keep their names).
    workers: threads for the per-image kernel (0 = one per CPU core; the C kernel releases the GIL).
    area_rule: the area that puts an unmatched prediction in the small / medium / large range.
        "auto" (default): pycocotools' ``COCO.loadRes`` rule (pycocotools/coco.py): when the first
        result of a COCO results file has a non-empty ``bbox``, every result's area is
        ``bbox[2] * bbox[3]``, else the mask's pixel count. "mask": always the mask's pixel count.
        entitykit prediction folders and panoptic predictions carry no boxes (mask areas under
        either rule), and masks changed by ``overlap="resolve"`` use their final mask's area. A
        result without a bbox when the first has one uses its mask area (pycocotools raises
        KeyError there), with a warning. The rule that applied: ``EvalResult.area_rule_applied``.
    iou: "mask" (APe: mask IoU, pycocotools' ``iouType="segm"``), "boundary" (Boundary APe:
        boundary-iou-api's ``iouType="boundary"``, IoU = min(mask IoU, boundary IoU) for non-crowd
        GT and the crowd mask IoU for crowd GT, Cheng et al., CVPR 2021; bands from
        ``entitykit.evaluation.boundary``), or a tuple of both: one evaluation each, sharing the
        loaded inputs, returned as a tuple of EvalResult in that order. Matching, the non-overlap
        rule, area ranges and max-dets are the same for both; PQ is reported with mask IoU only.
    dilation_ratio: boundary band width as a fraction of the image diagonal (boundary-iou-api's
        default 0.02); must be a finite number > 0.
    progress: show the phases (reading, scoring, boundary bands) on stderr
        (``entitykit.progress``); off by default for library calls.

    Raises EntityKitError (an unknown option), DatasetError / PredictionError (bad input, naming the
    file and item).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of small objects are created (and imported), and none form cycles
    try:
        ahead = (_ahead.start(gt, "gt"), _ahead.start(pred, "pred"))  # before the imports below (see _ahead)
        from . import ape  # noqa: PLC0415
        from .overlap import OVERLAP_MODES  # noqa: PLC0415

        if area_rule not in ape.AREA_RULES:
            raise EntityKitError(f"unknown area rule {area_rule!r}; choose one of {ape.AREA_RULES}")
        if overlap not in OVERLAP_MODES:
            raise EntityKitError(f"unknown overlap mode {overlap!r}; choose one of {OVERLAP_MODES}")
        if not isinstance(max_dets, int) or max_dets < 1:
            raise EntityKitError(f"--max-dets must be a positive integer, got {max_dets!r}")
        ious = _iou_kinds(iou)
        if "boundary" in ious:
            try:
                dilation_ratio = check_ratio(dilation_ratio)
            except ValueError as e:
                raise EntityKitError(f"--dilation-ratio: {e}") from None
        t0 = time.perf_counter()
        timings: dict = {}
        results = _evaluate(gt, pred, gt_png_dir, pred_png_dir, pred_format, overlap, max_dets, crowd, workers, pq,
                            by_source, t0, timings, area_rule=area_rule, ious=ious, dilation_ratio=dilation_ratio,
                            progress=progress, ahead=ahead)
        return results[0] if isinstance(iou, str) else tuple(results)
    finally:
        if gc_was_enabled:
            gc.enable()


def _evaluate(gt, pred, gt_png_dir, pred_png_dir, pred_format, overlap, max_dets, crowd, workers, pq, by_source,
              t0, timings, area_rule="auto", ious=("mask",), dilation_ratio=DEFAULT_DILATION_RATIO,
              progress=False, ahead=(None, None)) -> list:
    from . import ape  # noqa: PLC0415
    from .predictions import load_gt, load_predictions  # noqa: PLC0415

    steps = _Steps(progress)
    steps.start(3, "reading")
    pred_kind = _sniff_ahead(pred, ahead[1])

    def shard_read(n: int, k: int) -> None:  # a sharded ground truth's first pass, shard k of n
        if k == 0:
            steps.start(n, f"reading {n:,} shards")
        steps.advance(1)

    g = load_gt(gt, gt_png_dir=gt_png_dir, crowd=crowd, ahead=ahead[0], advance=shard_read)
    if g.shards is not None:
        steps.start(2, "reading predictions")
    steps.advance(1)
    p = load_predictions(pred_kind(), g.images, fmt=pred_format, pred_png_dir=pred_png_dir)
    steps.advance(1)
    timings["load"] = time.perf_counter() - t0
    warnings = list(g.warnings) + list(p.warnings)
    if gt_png_dir is not None and g.fmt != "coco-panoptic":
        warnings.append("--gt-png-dir is ignored: it is the PNG folder of COCO panoptic ground truth, and this "
                        "ground truth is an entity dataset (its masks are RLE)")
    if pred_png_dir is not None and p.fmt != "panoptic":
        these = ("entitykit predictions (their id maps are named in predictions.json)" if p.fmt == "entitykit"
                 else "COCO results (RLE)")
        warnings.append(f"--pred-png-dir is ignored: it is the PNG folder of COCO panoptic predictions, and these "
                        f"are {these}")
    area_applied, n_without_box = ape.apply_area_rule(p.items, area_rule, p.path)
    if n_without_box:
        warnings.append(f"{n_without_box} result(s) have no bbox though the first has one: their S/M/L area is "
                        "the mask's (pycocotools' loadRes fails on such a file)")
    scorer = _PartScorer(ious, overlap, max_dets, workers, dilation_ratio, timings, p.path)
    t1 = time.perf_counter()
    if g.shards is None:  # one file: one part, scored with progress per phase
        inp = ape.prepare(g.images, g.annotations, p.items, gt_path=g.path, pred_path=p.path)
        timings["prepare"] = time.perf_counter() - t1
        steps.advance(1)
        inp, pers = scorer.score(inp, g.path, steps)
    else:  # a sharded dataset: shard by shard (memory: one shard's masks), joined for the curves
        steps.advance(1)
        inp, pers = _score_shards(g, p, scorer, steps)
    if inp.n_dt == 0:
        warnings.append("the predictions hold no entity: every AP and AR is 0" if len(inp.g_s) else
                        "no ground-truth entity and no prediction: every AP, AR and PQ is undefined (n/a)")
    if scorer.gt_overlap:
        warnings.append(f"ground truth overlaps in {scorer.gt_overlap} image(s): scored pairwise (no partition fast "
                        "path); PQ is not defined there")
    band_note = []  # the boundary result's own
    if scorer.bands_are_masks:
        band_note.append(f"every boundary band is its whole mask (dilation ratio {dilation_ratio:g}: the band is as "
                        "wide as every mask is thick): Boundary APe equals APe here; a smaller --dilation-ratio "
                        "makes it a boundary measure")
    if area_rule == "mask" and area_applied == "mask" and not _has_boxes(p.items):
        warnings.append("--area-rule mask changes nothing here: the predictions carry no bbox (their S/M/L areas "
                        "are their masks' under either rule)")
    overlap_info = scorer.overlap_info

    results = []
    for kind, per_k in zip(ious, pers):
        results.append(_result(kind, dilation_ratio, inp, per_k, g, p, overlap, overlap_info, max_dets, crowd,
                               workers, pq and kind == "mask", by_source,
                               list(warnings) + (band_note if kind == "boundary" else []), t0, dict(timings),
                               area_rule, area_applied))
    steps.stop()
    return results


class _PartScorer:
    """The kernel passes of one part of an evaluation (the whole input, or one shard): mask IoU,
    the overlap rule (refuse, resolve and score again, or allow), then boundary bands and boundary
    IoU. Sums what it reports over the parts (overlap counts, GT-overlap images, timings)."""

    def __init__(self, ious, overlap, max_dets, workers, dilation_ratio, timings, pred_path):
        self.ious, self.overlap, self.max_dets, self.workers = ious, overlap, max_dets, workers
        self.dilation_ratio, self.timings, self.pred_path = dilation_ratio, timings, pred_path
        self.overlap_info: dict = {"mode": overlap, "images_with_overlap": 0}
        if overlap == "resolve":
            self.overlap_info.update(predictions_changed=0, predictions_removed=0, pixels_reassigned=0)
        self.gt_overlap = 0
        self.bands_are_masks: bool | None = None  # every band its whole mask, in every part (None: no band made)

    def _time(self, key: str, t1: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t1

    def score(self, inp, gt_path, steps, scope: str = "") -> tuple:
        """``(inp, [PerImage per IoU kind])`` of one part (``inp`` after ``--overlap resolve``).
        ``scope``: how the part is named when its overlaps are refused ("" for the whole input)."""
        import numpy as np  # noqa: PLC0415

        from . import ape  # noqa: PLC0415
        from .overlap import describe_overlap, resolve_overlaps  # noqa: PLC0415

        n_img = len(inp.img_ids)
        steps.start(n_img, "scoring (mask IoU)")
        t1 = time.perf_counter()
        allow = self.overlap == "allow"
        kernel = dict(max_dets=self.max_dets, workers=self.workers)
        per = _naming_files(gt_path, self.pred_path, ape.evaluate_all, inp, allow_overlap=allow, **kernel)
        flagged = np.flatnonzero(per.img_flags & 1)
        self.overlap_info["images_with_overlap"] += int(flagged.size)
        if flagged.size and self.overlap == "error":
            d = describe_overlap(inp, int(flagged[0]))
            more = f"; {flagged.size - 1} more image(s){scope} have overlaps" if flagged.size > 1 else ""
            raise PredictionError(
                f"predictions overlap: {d.first} and {d.second} share {d.pixels} pixels "
                f"({d.pairs} overlapping pair(s), {d.image_pixels} contested pixels in this image{more}). "
                "APe allows no overlap: fix the predictions, or choose --overlap resolve (highest score owns "
                "the pixel) or --overlap allow (overlap-tolerant APm)",
                self.pred_path, f"image {d.image_id!r}")
        if flagged.size and self.overlap == "resolve":
            rep = resolve_overlaps(inp, flagged)
            info = self.overlap_info
            info["predictions_changed"] += rep.predictions_changed
            info["predictions_removed"] += rep.predictions_emptied
            info["pixels_reassigned"] += rep.pixels_reassigned
            per = _naming_files(gt_path, self.pred_path, ape.evaluate_all, inp, allow_overlap=False, **kernel)
        self.gt_overlap += int(np.count_nonzero(per.img_flags & 2))
        self._time("evaluate", t1)
        steps.advance(n_img)
        pers = []
        for kind in self.ious:
            if kind == "mask":
                pers.append(per)
                continue
            # the bands of the final masks (after --overlap resolve), then the same matcher
            from .boundary import boundary_bands, every_band_is_its_mask  # noqa: PLC0415

            t1 = time.perf_counter()
            steps.start(2 * n_img, f"boundary bands (dilation ratio {self.dilation_ratio:g})")
            bands = boundary_bands(inp, self.dilation_ratio, advance=steps.advance, workers=self.workers)
            if len(inp.g_s) + inp.n_dt:  # a part without masks says nothing either way
                self.bands_are_masks = self.bands_are_masks is not False and every_band_is_its_mask(inp, bands)
            self._time("bands", t1)
            t1 = time.perf_counter()
            steps.start(n_img, "scoring (boundary IoU)")
            pers.append(_naming_files(gt_path, self.pred_path, ape.evaluate_all, inp, allow_overlap=allow,
                                      bands=bands, **kernel))
            steps.advance(n_img)
            self._time("evaluate_boundary", t1)
        return inp, pers


def _has_boxes(items) -> bool:
    """Whether the first prediction carries a bbox (pycocotools' loadRes looks at the first only)."""
    from .ape import BOX_NONE, BOX_EMPTY  # noqa: PLC0415

    st = items.box_state
    return st is not None and len(st) > 0 and int(st[0]) not in (BOX_NONE, BOX_EMPTY)


def _score_shards(g, p, scorer: _PartScorer, steps) -> tuple:
    """A sharded ground truth scored shard by shard (``predictions.gt_parts``: one shard's entities
    in memory at a time, with that shard's predictions), then joined (``ape.join_parts``) into the
    inputs and per-image results one file would give: every number and curve is the same.

    Memory: one shard's GT masks and their predictions' kernel work, plus per entity a few numbers
    (areas, matches: ~90 bytes per prediction) and per image its id and size; the predictions are
    read whole (one file). The predictions are checked against every shard's images before the
    first shard is scored (unknown image ids, scores)."""
    import numpy as np  # noqa: PLC0415

    from . import ape  # noqa: PLC0415
    from .predictions import gt_parts  # noqa: PLC0415

    items = p.items
    all_ids = [im["id"] for im in g.images]
    try:
        sorted_ids = sorted(all_ids)
    except TypeError:
        raise DatasetError("image ids mix types (numbers and strings)", g.path) from None
    pos = ape.pred_image_index(items, sorted_ids, p.path)
    ape.check_scores(items, p.path)
    shard_of = np.empty(len(sorted_ids), np.int64)
    at = {i: k for k, i in enumerate(sorted_ids)}
    for k, im in enumerate(g.images):
        shard_of[at[im["id"]]] = g.image_shard[k]
    pred_shard = shard_of[pos] if len(pos) else np.zeros(0, np.int64)
    order = np.argsort(pred_shard, kind="stable")
    bounds = np.searchsorted(pred_shard[order], np.arange(len(g.shard_files) + 1))
    quiet = _Steps(False)
    steps.start(len(all_ids), f"scoring {len(g.shard_files)} shards")
    parts = []
    t1 = time.perf_counter()
    for k, (images, anns, shard_path) in enumerate(gt_parts(g)):
        idx = order[bounds[k]:bounds[k + 1]]
        sub = ape.pred_subset(items, idx)
        inp = ape.prepare(images, anns, sub, gt_path=shard_path, pred_path=p.path)
        del images, anns
        inp, pers = scorer.score(inp, shard_path, quiet, scope=" of this shard")
        parts.append((_kept(inp), pers, idx))
        steps.advance(len(inp.img_ids))
    joined, pers = ape.join_parts(parts, items.labels)
    scorer.timings["shards"] = time.perf_counter() - t1
    return joined, pers


def _kept(inp):
    """What ``ape.join_parts`` keeps of a scored part: its inputs without their RLE buffers."""
    import dataclasses  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from .ape import no_offsets  # noqa: PLC0415

    empty = np.zeros(0, np.uint8)
    ng, nd = len(inp.g_s), inp.n_dt
    return dataclasses.replace(inp, g_buf=empty, d_buf=empty, labels=None, g_ids=np.asarray(inp.g_ids, np.int64),
                               g_s=no_offsets(ng), g_e=no_offsets(ng), d_s=no_offsets(nd), d_e=no_offsets(nd))


def _sniff_ahead(pred, ahead=None):
    """A callable giving what ``load_predictions`` reads: for a path, the file read and scanned
    (``formats.sniff``; with ``ahead``, its bytes and scan from ``_ahead``) in a second thread while
    the ground truth is read (file reads and both compiled scanners release the GIL). Measured on
    the 5,000-image set, GT + results read: 0.46 s → 0.25 s on the 2-core machine with a core free
    (load ~1.5); with both cores busy with other work (load ~2.5) it cost ~0.05 s instead. A read
    error surfaces when the result is asked for, after the ground truth's own errors, as before."""
    if not isinstance(pred, (str, os.PathLike)):
        return lambda: pred
    from . import formats  # noqa: PLC0415

    return _background(lambda: formats.sniff(pred, role="pred", ahead=ahead))


def _iou_kinds(iou) -> tuple:
    """``iou`` ("mask", "boundary", or a tuple / list of them) as a tuple without repeats."""
    kinds = (iou,) if isinstance(iou, str) else tuple(iou) if isinstance(iou, (tuple, list)) else None
    if not kinds or any(k not in IOU_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise EntityKitError(f"iou must be one of {IOU_KINDS} or a tuple of them without repeats, got {iou!r}")
    return kinds


class _Steps:
    """The phases of one evaluation as progress on stderr (``entitykit.progress``); nothing when
    disabled. A phase shows only once it has run ``delay`` seconds (a quick one prints nothing)."""

    delay = 2.0

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._stack = None
        self._bar = None
        self._total, self._label, self._done, self._t = 0, "", 0, 0.0

    def start(self, total: int, label: str) -> None:
        self.stop()
        self._total, self._label, self._done, self._t = int(total), label, 0, time.monotonic()

    def advance(self, n: int = 1) -> None:
        if not self.enabled:
            return
        self._done += n
        if self._bar is not None:
            self._bar(n)
        elif self._total > 0 and time.monotonic() - self._t >= self.delay:
            from ..progress import progress_bar  # noqa: PLC0415

            self._stack = contextlib.ExitStack()
            self._bar = self._stack.enter_context(progress_bar(self._total, self._label))
            self._bar(self._done)

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._bar = None


def _result(kind, dilation_ratio, inp, per, g, p, overlap, overlap_info, max_dets, crowd, workers, pq, by_source,
            warnings, t0, timings, area_rule, area_applied) -> EvalResult:
    """Curves, the 12 numbers, per source and per image from one kernel pass (``kind``: its IoU)."""
    import numpy as np  # noqa: PLC0415

    from . import ape  # noqa: PLC0415

    t1 = time.perf_counter()
    # the whole set, and each source of a merged dataset (the paper's cross-dataset table)
    src_names = sorted({s for s in inp.sources if s is not None}, key=lambda s: (type(s).__name__, str(s))) if by_source else []  # a file may mix int and str sources
    src_labels = np.array([s if s is not None else "" for s in inp.sources], dtype=object)
    masks = [None] + ([src_labels == s for s in src_names] if len(src_names) > 1 else [])
    n_workers = workers if workers and workers > 0 else (os.cpu_count() or 1)

    def curves() -> list:
        if min(len(masks), n_workers) > 1:  # the accumulate kernel releases the GIL
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

            with ThreadPoolExecutor(min(len(masks), n_workers)) as ex:
                return list(ex.map(lambda m: ape.accumulate(inp, per, m), masks))
        return [ape.accumulate(inp, per, m) for m in masks]

    # The curves are made in a second thread while this one makes the per-image table (measured on
    # the 5,000-image set, same process, 6 interleaved runs: everything after the kernel 0.125 ->
    # 0.111 s min, 0.159 -> 0.137 s median).
    curves_result = _background(curves) if n_workers > 1 else (lambda accs=curves(): accs)

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
    if kind != "mask":  # the kernel's PQ counts are mask-IoU ones
        for row in pi:
            row.pop("pq", None)

    # ---- PQ
    pq_all = None
    pq_ok = ~np.isnan(per.pq_iou)
    if pq and pq_ok.all():
        pq_all = _pq(int(per.pq_tp.sum()), int(per.pq_fp.sum()), int(per.pq_fn.sum()), float(per.pq_iou.sum()))
    elif pq:
        warnings.append("PQ not computed: it needs non-overlapping predictions and ground truth")

    accs = curves_result()
    acc = accs[0]
    stats = ape.summarize(acc)
    timings["accumulate"] = time.perf_counter() - t1

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
               "area_rule": area_rule,
               "area_source": {"gt": "annotation 'area'",
                               "pred": "bbox width × height (pycocotools' loadRes; resolved masks: pixel count)"
                               if area_applied == "bbox" else "mask pixel count"},
               "tie_break": "stable sort on -score over file order (pycocotools)",
               **_iou_options(kind, dilation_ratio, inp)}
    counts = {"images": n_img, "gt_entities": int((inp.g_crowd == 0).sum()), "gt_crowd": int(inp.g_crowd.sum()),
              "predictions": inp.n_dt, "predictions_scored": int(kept.sum())}
    return EvalResult(stats, ape.stat_names(max_dets), acc.precision, acc.recall, acc.scores, options, counts,
                      pq_all, srcs, pi, overlap_info, warnings, timings, area_applied, kind,
                      dilation_ratio if kind == "boundary" else None)


def _background(fn):
    """``fn()`` started in a thread; returns a callable that waits for it and gives its result (or
    raises its exception, in the caller's thread)."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001  (re-raised by the caller)
            out["error"] = e

    t = threading.Thread(target=run, name="entitykit-background", daemon=True)
    t.start()

    def result():
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    return result


def _iou_options(kind: str, dilation_ratio: float, inp) -> dict:
    if kind == "mask":
        return {"iou": "mask", "iou_definition": "mask IoU (pycocotools iouType='segm')"}
    from .boundary import dilation_for  # noqa: PLC0415

    px = sorted({dilation_for(h, w, dilation_ratio) for h, w in zip(inp.heights.tolist(), inp.widths.tolist())})
    return {"iou": "boundary", "dilation_ratio": dilation_ratio,
            "dilation_px": {"min": px[0], "max": px[-1]} if px else None,
            "iou_definition": "min(mask IoU, boundary IoU); crowd GT: mask IoU (boundary-iou-api iouType='boundary')",
            "band": "mask minus its erosion by int(round(dilation_ratio * image diagonal)) px, at least 1 "
                    "(boundary-iou-api mask_to_boundary)"}


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


def _per_image(inp, per, kept, g_per_img, d_per_img) -> list:
    """One row per image (area all, max_dets). Columns computed with numpy, then zipped into dicts:
    measured 0.032 s → 0.016 s for 5,000 images (the per-image loop it replaces). The floats are those of the scalar formulas (f1:
    one int64 → float64 division, correctly rounded like Python's int / int on counts this small;
    PQ: ``_pq``'s expression, same operations in the same order)."""
    import numpy as np  # noqa: PLC0415

    n_img = len(inp.img_ids)
    out = {}
    for t_idx, name in ((0, "50"), (5, "75")):
        m = per.match[:, 0, t_idx].astype(bool) & kept
        ig = per.ign[:, 0, t_idx].astype(bool)
        tp = np.bincount(inp.d_img[m & ~ig], minlength=n_img)
        fp = np.bincount(inp.d_img[~m & ~ig & kept], minlength=n_img)
        out[name] = (tp, fp)
    tp50, fp50 = out["50"]
    tp75, fp75 = out["75"]
    ng = g_per_img.astype(np.int64)
    fn50, fn75 = ng - tp50, ng - tp75
    denom = 2 * tp50 + fp50 + fn50
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, (2 * tp50).astype(np.float64) / denom.astype(np.float64), 1.0)
    rows = [{"image_id": i, "source": s, "n_gt": a, "n_pred": b, "tp_50": c, "fp_50": d, "fn_50": e,
             "tp_75": f, "fp_75": g, "fn_75": h, "f1_50": k}
            for i, s, a, b, c, d, e, f, g, h, k in zip(
                inp.img_ids, inp.sources, ng.tolist(), d_per_img.tolist(), tp50.tolist(), fp50.tolist(),
                fn50.tolist(), tp75.tolist(), fp75.tolist(), fn75.tolist(), f1.tolist())]
    has_pq = ~np.isnan(per.pq_iou)
    if has_pq.any():
        tp, fp, fn = per.pq_tp.astype(np.float64), per.pq_fp, per.pq_fn
        den = tp + 0.5 * fp + 0.5 * fn  # _pq's expression
        with np.errstate(divide="ignore", invalid="ignore"):
            pq = np.where(den != 0, per.pq_iou / den, 0.0)
        pq = np.where((ng > 0) | (d_per_img > 0), pq, 1.0)
        for k, v in zip(np.flatnonzero(has_pq).tolist(), pq[has_pq].tolist()):
            rows[k]["pq"] = v
    return rows
