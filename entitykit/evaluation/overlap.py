"""Overlapping predictions: find and name them (default: an error), or resolve them by score.

Only images the kernel flagged are touched here, so this slow path (pycocotools decode) costs
nothing on entity-style predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ..masks import encode_id_map, mask_utils  # pycocotools.mask, imported on first use

OVERLAP_MODES = ("error", "resolve", "allow")


def _c(counts: bytes, h: int, w: int) -> dict:
    return {"size": [h, w], "counts": counts}


@dataclass
class OverlapDetail:
    image_id: object
    first: str
    second: str
    pixels: int  # pixels shared by that pair
    pairs: int  # overlapping pairs in the image
    image_pixels: int  # pixels of the image covered by more than one prediction


def describe_overlap(inp, im: int) -> OverlapDetail:
    """The first overlapping pair (in file order) of image index ``im`` and the size of the problem."""
    h, w = int(inp.heights[im]), int(inp.widths[im])
    sel = np.flatnonzero(inp.d_img == im)
    sel = sel[np.argsort(inp.d_pos[sel], kind="stable")]  # file order
    rles = [_c(inp.d_counts(k), h, w) for k in sel.tolist()]
    iou = mask_utils.iou(rles, rles, [0] * len(rles))
    first = None
    pairs = 0
    for a in range(len(rles)):
        for b in range(a + 1, len(rles)):
            if iou[a, b] > 0:
                pairs += 1
                if first is None:
                    inter = int(mask_utils.area(mask_utils.merge([rles[a], rles[b]], intersect=True)))
                    first = (a, b, inter)
    cover = np.zeros((h, w), np.int32)
    for s in range(0, len(rles), 64):
        cover += mask_utils.decode(rles[s : s + 64]).sum(axis=2, dtype=np.int32)
    a, b, inter = first if first else (0, 0, 0)
    return OverlapDetail(inp.img_ids[im], inp.d_label(sel[a]), inp.d_label(sel[b]), inter, pairs,
                         int(np.count_nonzero(cover > 1)))


@dataclass
class ResolveReport:
    images: int = 0
    predictions_changed: int = 0
    predictions_emptied: int = 0
    pixels_reassigned: int = 0


def resolve_overlaps(inp, images: np.ndarray) -> ResolveReport:
    """Highest score owns each contested pixel (ties: the earlier prediction in the file).

    Rewrites the RLE of the predictions in ``images``; predictions left with no pixel are
    removed from ``inp`` (they no longer exist in the resolved id map). A prediction whose mask
    changed gets its final mask's area for the S/M/L ranges (``inp.d_area_given`` set to NaN:
    its box no longer describes it)."""
    rep = ResolveReport()
    keep = np.ones(inp.n_dt, bool)
    given = getattr(inp, "d_area_given", None)
    if given is not None:
        given = inp.d_area_given = given.copy()
    new_counts: list = []  # (prediction, counts) to append to the buffer
    for im in images.tolist():
        rep.images += 1
        h, w = int(inp.heights[im]), int(inp.widths[im])
        sel = np.flatnonzero(inp.d_img == im)
        # pycocotools' ranking: stable sort on -score over file order; paint the lowest first
        sel = sel[np.argsort(inp.d_pos[sel], kind="stable")]
        sel = sel[np.argsort(-inp.d_score[sel], kind="mergesort")]
        id_map = np.zeros((h, w), np.int32)
        areas = np.zeros(len(sel), np.int64)
        for j in range(len(sel) - 1, -1, -1):
            m = mask_utils.decode(_c(inp.d_counts(sel[j]), h, w)).astype(bool)
            areas[j] = int(m.sum())
            id_map[m] = j + 1
        ids, rles, new_areas = encode_id_map(id_map)
        new = dict(zip(ids.tolist(), zip(rles, new_areas.tolist())))
        for j, k in enumerate(sel.tolist()):
            got = new.get(j + 1)
            if got is None:
                keep[k] = False
                rep.predictions_emptied += 1
                rep.predictions_changed += 1
                rep.pixels_reassigned += int(areas[j])
                continue
            rle, area = got
            if area != areas[j]:
                rep.predictions_changed += 1
                rep.pixels_reassigned += int(areas[j] - area)
                if given is not None:
                    given[k] = np.nan
            new_counts.append((k, rle["counts"]))
    if new_counts:
        extra = "".join(c for _, c in new_counts).encode("ascii")
        base = inp.d_buf.shape[0]
        lens = np.array([len(c) for _, c in new_counts], np.int64)
        ends = base + np.cumsum(lens)
        ks = np.array([k for k, _ in new_counts], np.int64)
        inp.d_buf = np.concatenate([inp.d_buf, np.frombuffer(extra, np.uint8)])
        inp.d_s = inp.d_s.copy()
        inp.d_e = inp.d_e.copy()
        inp.d_s[ks] = ends - lens
        inp.d_e[ks] = ends
    if not keep.all():
        idx = np.flatnonzero(keep)
        inp.d_s = inp.d_s[idx]
        inp.d_e = inp.d_e[idx]
        inp.d_img = inp.d_img[idx]
        inp.d_score = inp.d_score[idx]
        inp.d_pos = inp.d_pos[idx]
        if given is not None:
            inp.d_area_given = given[idx]
    return rep
