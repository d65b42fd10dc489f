"""Seeded synthetic entity data for tests and the benchmark (not used by the scorer itself).

Each image gets a ground-truth partition (about a third each small / medium / large entities,
some void) and a non-overlapping prediction id map: jittered copies of most GT entities plus
extra blobs, with scores quantised to 4 decimals so that ties occur. Everything is COCO RLE with
str counts, ready for JSON.

High-resolution sets (:func:`synth_coco_hires`, EntitySeg-size images: 3,000×2,000 px, ~100
entities each) are painted on a grid ``coarse`` times smaller and enlarged by pixel repetition
before encoding: the RLE is that of a full-size image (one run per column crossing, as a real mask
of that size has), the boundaries are ``coarse``-pixel steps, and generation costs about what a
COCO-size image does (painting 350 ellipses at full size took ~1.5 s per image, enlarging ~0.05 s).
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


def _enlarge(id_map: np.ndarray, k: int) -> np.ndarray:
    """Each pixel a k×k block (nearest-neighbour enlargement by an integer factor)."""
    return id_map if k == 1 else np.repeat(np.repeat(id_map, k, axis=0), k, axis=1)


def synth_coco(n_images: int, seed: int = 0, n_gt: float = 25, n_pred: float = 63, crowd_frac: float = 0.005,
               shuffle_preds: bool = True, sources: tuple = ("coco", "ade20k", "cityscapes"),
               size: tuple[int, int] | None = None, coarse: int = 1):
    """(gt_dataset_dict, results_list): a COCO instances GT (one category) and a COCO results list.

    Images cycle through ``sources`` (the ``source`` of a merged entity dataset).
    size: (height, width) of every image (default: COCO-like sizes drawn per image, :data:`SIZES`).
    coarse: paint on a grid this many times smaller (size // coarse) and enlarge each pixel to a
    coarse×coarse block (see the module docstring); 1 paints at full size. With the defaults the
    data are those of earlier versions (same seed, same files)."""
    if coarse < 1 or (size is not None and (size[0] % coarse or size[1] % coarse)):
        raise ValueError(f"coarse must be ≥ 1 and divide the image size {size}, got {coarse}")
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    aid = 0
    for i in range(n_images):
        img_id = i + 1
        h, w, gt, pred, scores = synth_image(rng, n_gt, n_pred,
                                             None if size is None else (size[0] // coarse, size[1] // coarse))
        h, w, gt, pred = h * coarse, w * coarse, _enlarge(gt, coarse), _enlarge(pred, coarse)
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


HIRES_SIZE = (2000, 3000)  # height, width: EntitySeg's images are mostly 2,000+ px wide


def synth_coco_hires(n_images: int, seed: int = 0, size: tuple[int, int] = HIRES_SIZE, n_gt: float = 100,
                     n_pred: float = 250, coarse: int = 4, **kw):
    """A high-resolution :func:`synth_coco` set: ``size`` (height, width) images, 2,000×3,000 by
    default, painted at ``size // coarse`` and enlarged (module docstring). Of the ``n_gt`` GT and
    ``n_pred`` predicted entities painted per image about 90 and 100 stay visible (later entities
    cover earlier ones; most extra predictions end under copies of GT entities), about 70 % of the GT
    in COCO's "large" range. Generation: about 0.35 s per image on one core."""
    return synth_coco(n_images, seed=seed, n_gt=n_gt, n_pred=n_pred, size=size, coarse=coarse, **kw)
