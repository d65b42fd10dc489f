"""Seeded synthetic entity data for tests and the benchmark (not used by the scorer itself).

Each image gets a ground-truth partition (about a third each small / medium / large entities,
some void) and a non-overlapping prediction id map: jittered copies of most GT entities plus
extra blobs, with scores quantised to 4 decimals so that ties occur. Everything is COCO RLE with
str counts, ready for JSON.
"""

from __future__ import annotations

import numpy as np

from ..masks import encode_id_map, rle_bbox

SIZES = ((480, 640), (640, 480), (427, 640), (640, 427), (375, 500), (500, 375), (480, 640), (424, 640))


def _paint(id_map: np.ndarray, rng: np.random.Generator, value: int, area: float, cy=None, cx=None, shape=None):
    h, w = id_map.shape
    aspect = float(np.exp(rng.normal(0, 0.4)))
    if shape is None:
        shape = "ellipse" if rng.random() < 0.7 else "rect"
    if shape == "ellipse":
        ry = np.sqrt(area / np.pi * aspect)
        rx = np.sqrt(area / np.pi / aspect)
    else:
        ry = np.sqrt(area * aspect) / 2
        rx = np.sqrt(area / aspect) / 2
    if cy is None:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 2)
    x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 2)
    if y0 >= y1 or x0 >= x1:
        return (cy, cx, area, shape)
    yy = (np.arange(y0, y1)[:, None] - cy) / max(ry, 0.5)
    xx = (np.arange(x0, x1)[None, :] - cx) / max(rx, 0.5)
    if shape == "ellipse":
        m = yy * yy + xx * xx <= 1.0
    else:
        m = (np.abs(yy) <= 1.0) & (np.abs(xx) <= 1.0)
    id_map[y0:y1, x0:x1][m] = value
    return (cy, cx, area, shape)


def synth_image(rng: np.random.Generator, n_gt: float = 25, n_pred: float = 63, size=None):
    """One image: (h, w, gt_map, pred_map, scores by pred id)."""
    h, w = size if size is not None else SIZES[rng.integers(len(SIZES))]
    gt = np.zeros((h, w), np.int32)
    k = max(1, int(rng.poisson(n_gt)))
    kinds = np.sort(rng.choice(3, k, p=[0.38, 0.32, 0.30]))  # 0 large, 1 medium, 2 small: large painted first
    specs = []
    for i, kind in enumerate(kinds):
        if kind == 0:
            hi = min(h * w * 0.35, 260**2)
            area = rng.uniform(min(96**2 * 1.3, 0.8 * hi), hi)
        elif kind == 1:
            area = rng.uniform(32**2 * 1.4, 96**2 * 0.9)
        else:
            area = rng.uniform(40, 32**2 * 0.9)
        specs.append(_paint(gt, rng, i + 1, area))
    pred = np.zeros((h, w), np.int32)
    copies = [sp for sp in specs if rng.random() < 0.85]
    extra = max(0, int(rng.normal(n_pred - len(copies) + 48, 26)))
    nid = 0
    for _ in range(extra):  # false positives first, so the copies of GT entities stay mostly whole
        nid += 1
        _paint(pred, rng, nid, rng.uniform(30, 48**2) if rng.random() < 0.85 else rng.uniform(48**2, 120**2))
    for cy, cx, area, shape in copies:
        nid += 1
        r = np.sqrt(area)
        _paint(pred, rng, nid, area * rng.uniform(0.8, 1.2), cy + rng.normal(0, 0.06 * r), cx + rng.normal(0, 0.06 * r),
               shape)
    scores = np.round(np.concatenate(([0.0], rng.uniform(0.0, 0.7, extra), rng.uniform(0.3, 1.0, len(copies)))), 4)
    return h, w, gt, pred, scores


def synth_coco(n_images: int, seed: int = 0, n_gt: float = 25, n_pred: float = 63, crowd_frac: float = 0.005,
               shuffle_preds: bool = True, sources: tuple = ("coco", "ade20k", "cityscapes")):
    """(gt_dataset_dict, results_list): a COCO instances GT (one category) and a COCO results list.

    Images cycle through ``sources`` (the ``source`` of a merged entity dataset)."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    aid = 0
    for i in range(n_images):
        img_id = i + 1
        h, w, gt, pred, scores = synth_image(rng, n_gt, n_pred)
        images.append({"id": img_id, "file_name": f"{img_id:06d}.jpg", "height": h, "width": w,
                       "source": sources[i % len(sources)]})
        ids, rles, areas = encode_id_map(gt)
        boxes = rle_bbox(rles)
        for rle, area, box in zip(rles, areas.tolist(), boxes.tolist()):
            aid += 1
            anns.append({"id": aid, "image_id": img_id, "category_id": 1, "segmentation": rle, "area": area,
                         "bbox": box, "iscrowd": int(rng.random() < crowd_frac)})
        pids, prles, _ = encode_id_map(pred)
        res = [{"image_id": img_id, "category_id": 1, "segmentation": r, "score": float(scores[p])}
               for p, r in zip(pids.tolist(), prles)]
        if shuffle_preds:
            res = [res[j] for j in rng.permutation(len(res))]
        results.extend(res)
    gt_dict = {"info": {"description": f"entitykit synthetic seed={seed}"}, "images": images, "annotations": anns,
               "categories": [{"id": 1, "name": "entity"}]}
    return gt_dict, results
