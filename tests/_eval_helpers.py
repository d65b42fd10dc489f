"""Shared helpers for the scorer tests: build COCO dicts from masks, run pycocotools, compare."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from entitykit.evaluation import evaluate


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def build(gt_masks, preds, *, crowd=None, areas=None, sizes=None):
    """gt_masks: per image a list of masks; preds: list of (image index, mask, score)."""
    images, anns, results = [], [], []
    aid = 0
    for i, masks in enumerate(gt_masks):
        h, w = sizes[i] if sizes else (masks[0].shape if masks else (8, 8))
        images.append({"id": i + 1, "file_name": f"{i + 1}.jpg", "height": int(h), "width": int(w)})
        for j, m in enumerate(masks):
            aid += 1
            a = int(m.sum()) if areas is None or areas[i][j] is None else areas[i][j]
            anns.append({"id": aid, "image_id": i + 1, "category_id": 1, "segmentation": rle(m), "area": a,
                         "iscrowd": int(bool(crowd and crowd[i][j]))})
    for i, m, s in preds:
        results.append({"image_id": i + 1, "category_id": 1, "segmentation": rle(m), "score": float(s)})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "entity"}]}
    return gt, results


def pycoco(gt: dict, results: list, max_dets=(1, 10, 100), *, agnostic: bool = False, cls=COCOeval):
    """pycocotools' COCOeval (``cls``: a subclass, e.g. a boundary reference) run to summarize on
    copies of ``gt`` / ``results``; ``agnostic``: useCats = 0 (class-agnostic, as APe)."""
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
        d = c.loadRes(copy.deepcopy(results)) if results else COCO()
        if not results:
            d.dataset = {"images": copy.deepcopy(gt["images"]), "annotations": [], "categories": gt["categories"]}
            d.createIndex()
        e = cls(c, d, "segm")
        e.params.maxDets = list(max_dets)
        if agnostic:
            e.params.useCats = 0
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def assert_same(gt: dict, results: list, *, max_dets: int = 100, overlap: str = "allow", **kw):
    """entitykit == pycocotools on the 12 numbers and the full precision/recall/scores arrays."""
    r = evaluate(copy.deepcopy(gt), copy.deepcopy(results), overlap=overlap, max_dets=max_dets, **kw)
    md = (min(1, max_dets), min(10, max_dets), max_dets)
    e = pycoco(gt, results, md)
    for k in ("precision", "recall", "scores"):
        a, b = getattr(r, k), e.eval[k]
        assert a.shape == b.shape, k
        assert np.array_equal(a, b), (k, np.abs(a - b).max())
    stats = np.array(e.stats)
    if max_dets != 100:  # pycocotools hard-codes 100 for stats[0]; ours follows max_dets
        mind = [i for i, d in enumerate(md) if d == md[2]]  # pycocotools' own selection rule
        s = e.eval["precision"][:, :, :, [0], mind]
        stats[0] = np.mean(s[s > -1]) if (s > -1).any() else -1
    assert np.abs(r.stats - stats).max() <= 1e-12, (r.stats, stats)
    assert np.array_equal(r.stats, stats)
    return r, e
