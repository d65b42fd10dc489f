"""The compiled per-image work of the scorer: a thin layer over the C extension ``_ckernel``
(``_ckernel.c``, built at install by ``setup.py``; no numba, nothing compiled at run time).

``evaluate_images`` handles a range of images (threads share the images; the C code releases the
GIL): decode the COCO RLE strings of its ground truth and predictions (pycocotools' string codec,
re-implemented), check that each side is a partition, measure every non-zero intersection, and
run pycocotools' greedy matcher for every area range and IoU threshold.

Intersections: when the ground truth of an image is non-overlapping (the entity case), its runs
are sorted once by start and, with the gaps between them, cut the image's pixel line into pieces;
each prediction's runs (ascending, as decoded) are walked over those pieces, whether the
predictions overlap one another or not (no pairwise IoU, no sort of the predictions' runs; their
overlap test is a bitmap of the image); ground truth that overlaps (or an image of more than
2**31 - 2 pixels): each pair of masks is merged on its own, exactly like pycocotools' ``rleIou``.
``image_intersections`` exposes that measurement for one image. Either way IoU = intersection /
union as float64 of two integers, the same division pycocotools' C code does, so the values are
bit-identical.

Boundary mode (``bands``): the IoU used for matching is min(mask IoU, band IoU) for non-crowd
GT and the mask crowd IoU for crowd GT — boundary-iou-api's ``COCOeval.computeBoundaryIoU``.

``accumulate_curves`` is pycocotools' ``COCOeval.accumulate`` for every max-dets cut at once, and
``decode_counts`` / ``decode_runs`` the package's one decoder of COCO compressed counts.
"""

from __future__ import annotations

import numpy as np

from . import _ckernel

# image flags
DT_OVERLAP = _ckernel.DT_OVERLAP  # 1: predictions overlap
GT_OVERLAP = _ckernel.GT_OVERLAP  # 2: ground truth overlaps
BAD_RLE = _ckernel.BAD_RLE  # 4: some RLE string is malformed or does not cover the image
BAD_BAND = _ckernel.BAD_BAND  # 8: some boundary band is

# per-annotation status
RLE_OK = _ckernel.RLE_OK
RLE_MALFORMED = _ckernel.RLE_MALFORMED
RLE_WRONG_TOTAL = _ckernel.RLE_WRONG_TOTAL
RLE_BAD_BAND = _ckernel.RLE_BAD_BAND

evaluate_images = _ckernel.evaluate_images
"""evaluate_images(im_lo, im_hi, g_buf, g_s, g_e, g_img, d_buf, d_s, d_e, d_img, img_h, img_w,
g_area, g_crowd, d_score, area_rng, iou_thrs, max_det, allow_overlap, g_parea, d_parea, d_area,
d_area_given, g_status, d_status, img_flags, d_sorted, d_rank, match, ign, pq_tp, pq_fp, pq_fn,
pq_iou, best_iou_gt, bands) -> None

Images im_lo..im_hi-1. Inputs (C-contiguous): g_buf / d_buf uint8 counts strings, g_s / g_e /
d_s / d_e int64 string offsets per annotation (grouped by image), g_img / d_img int64 image
starts (n_img + 1), img_h / img_w int64, g_area float64 (JSON area: the GT's area range),
g_crowd 1-byte, d_score float64, area_rng float64 (A, 2), iou_thrs float64 (T,) all >= 0.5,
d_area_given None or float64 per prediction (NaN: the mask's area), bands None or
(gb_buf, gb_s, gb_e, db_buf, db_s, db_e) laid out like the masks. Outputs: g_parea / d_parea int64
pixels, d_area float64 (the area deciding an unmatched prediction's range), g_status / d_status
int8 (RLE_*), img_flags int8 (DT_OVERLAP | GT_OVERLAP | BAD_RLE | BAD_BAND), d_sorted / d_rank
int64, match / ign uint8 (n_dt, A, T), pq_tp / pq_fp / pq_fn int64, pq_iou float64 (NaN where
a side overlaps), best_iou_gt float64. TypeError / ValueError for a buffer of the wrong item
type or length, MemoryError when scratch memory runs out."""

accumulate_curves = _ckernel.accumulate_curves
"""accumulate_curves(idx_sorted, scores_sorted, rank_sorted, max_dets, match, ign, npig, rec_thrs,
precision, recall, scores) -> None

pycocotools' accumulate for every max-dets cut, area range and IoU threshold, in one pass.
``idx_sorted`` (int64): the detections in pycocotools' global order (stable sort on -score over
the concatenation order); ``scores_sorted`` (float64) their scores; ``rank_sorted`` (int64) their
score rank within their image; ``max_dets`` int64 (M,): a detection takes part in cut m when its
rank < max_dets[m] (each cut's own stable sort is the restriction of the global one); match / ign
uint8 (n_dt, A, T); npig int64 (A,); rec_thrs ascending, rec_thrs[0] <= 1 / npig; writes
precision (T, R, A, M), recall (T, A, M), scores (T, R, A, M) (float64, C order: pycocotools'
arrays without the category axis) for every area range with npig[a] > 0, leaving the others.

Same floats as pycocotools: precision tp / (fp + tp + eps) and recall tp / npig on float64
counts. Exact shortcuts: (1) a recall threshold x > 0 is first reached at a true positive (recall
only grows there); (2) the interpolated precision (running max from the right) only needs the
values at true positives, because between two true positives precision can only fall, so per
threshold the pass keeps the max over the true positives that reach it first (a suffix max at the
end). Max and comparisons do no arithmetic, so the results are bit-identical. ValueError for
inconsistent shapes or thresholds, MemoryError when scratch memory runs out."""


def image_intersections(g_buf: np.ndarray, g_s: np.ndarray, g_e: np.ndarray, d_buf: np.ndarray, d_s: np.ndarray,
                        d_e: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
    """The intersections (pixels) of every GT mask with every prediction of one image, measured as
    ``evaluate_images`` does: (G, D) int64 and the image's flags (``DT_OVERLAP | GT_OVERLAP``, or
    ``BAD_RLE`` when some string is malformed or does not cover height x width pixels; the table is
    then undefined). Strings: COCO compressed counts ``g_buf[g_s[k]:g_e[k]]`` (uint8 buffers, int64
    offsets), likewise the predictions. TypeError / ValueError for wrong buffers or sizes."""
    c = np.ascontiguousarray
    raw, flags = _ckernel.image_intersections(c(g_buf, np.uint8), c(g_s, np.int64), c(g_e, np.int64),
                                              c(d_buf, np.uint8), c(d_s, np.int64), c(d_e, np.int64),
                                              int(height), int(width))
    return np.frombuffer(raw, np.int64).reshape(len(g_s), len(d_s)), int(flags)


def decode_counts(counts: bytes | bytearray | memoryview) -> np.ndarray:
    """Run lengths (int64, writable, one per count) of a COCO compressed RLE counts string.

    pycocotools' ``rleFrString``: 5 payload bits per character (offset 48), bit 0x20 = more
    characters follow, bit 0x10 of the last character = sign; from the fourth count on, a value
    is a delta to the count two places earlier. Values come back as decoded (a corrupt string
    can give negative runs; callers judge). Raises ValueError when the string is malformed (a
    character outside '0'..'o', a number cut off at the end, a number over 13 characters)."""
    return np.frombuffer(_ckernel.decode_counts(counts), np.int64)


def decode_runs(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of ones of many COCO compressed counts strings at once (string k = ``buf[starts[k]:ends[k]]``,
    ``buf`` uint8, ``starts`` / ``ends`` int64): (run starts, run ends, mask index), int64 arrays,
    positions column-major within each mask, empty runs dropped, masks in the order given. Same
    codec as ``decode_counts``; raises ValueError for a malformed string or a count outside
    0..2**32-1 (what pycocotools' 32-bit counts hold), TypeError / ValueError for wrong buffers."""
    c = np.ascontiguousarray
    rs, re, rl = _ckernel.decode_runs(c(buf, np.uint8), c(starts, np.int64), c(ends, np.int64))
    return np.frombuffer(rs, np.int64), np.frombuffer(re, np.int64), np.frombuffer(rl, np.int64)
