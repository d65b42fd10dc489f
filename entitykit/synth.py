"""Synthetic COCO-panoptic datasets, so the whole pipeline runs offline and tests need no downloads.

Each image is a partition: a few stuff regions (some made of disconnected parts) under things of
several shapes and sizes; every region gets a colour and a texture (stripes, checkerboard,
gradient or flat), so a model must learn regions, not just colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image

from .errors import EntityKitError
from .fileio import atomic_path, check_output, write_json
from .limits import check_pixels
from .progress import progress_bar

STUFF_CATEGORIES = [{"id": 1, "name": "stuff-a", "isthing": 0}, {"id": 2, "name": "stuff-b", "isthing": 0}]
THING_CATEGORIES = [
    {"id": 3, "name": "ellipse", "isthing": 1},
    {"id": 4, "name": "rectangle", "isthing": 1},
    {"id": 5, "name": "triangle", "isthing": 1},
]


def synthetic_panoptic_image(
    rng: np.random.Generator, height: int, width: int, n_segments: int, *, crowd_fraction: float = 0.0
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One panoptic id map (int64, 0 = void) and its segments_info, ~``n_segments`` segments."""
    n_stuff = max(1, min(6, n_segments // 5))
    n_things = max(0, n_segments - n_stuff)
    # Stuff: nearest-seed partition; two seeds share a segment id → disconnected stuff.
    seeds = rng.uniform((0, 0), (height, width), size=(n_stuff * 2, 2))
    yy, xx = np.mgrid[0:height, 0:width]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    nearest = d.argmin(-1)
    seg_of_seed = rng.permutation(np.arange(n_stuff * 2) % n_stuff)
    ids = rng.choice(np.arange(1, 256**3 - 1), size=n_stuff + n_things, replace=False)
    panoptic = ids[seg_of_seed[nearest]].astype(np.int64)
    segments = [{"id": int(ids[k]), "category_id": int(rng.integers(1, 3)), "iscrowd": 0} for k in range(n_stuff)]
    for t in range(n_things):
        sid = int(ids[n_stuff + t])
        # Sizes spread across COCO's small / medium / large buckets.
        r = float(np.exp(rng.uniform(np.log(3), np.log(max(4.0, min(height, width) / 3)))))
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        kind = int(rng.integers(3, 6))
        if kind == 3:
            ry, rx = r, r * rng.uniform(0.5, 1.5)
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        elif kind == 4:
            m = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r * rng.uniform(0.4, 1.6))
        else:
            m = (yy - cy <= r) & (yy - cy >= -r) & (np.abs(xx - cx) <= (yy - cy + r) / 2)
        if not m.any():
            continue
        panoptic[m] = sid
        crowd = int(rng.random() < crowd_fraction)
        segments.append({"id": sid, "category_id": kind, "iscrowd": crowd})
    # A little void, as real annotations have.
    void = rng.random() < 0.5
    if void:
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        panoptic[y0 : y0 + max(1, height // 20), x0 : x0 + max(1, width // 20)] = 0
    present = set(np.unique(panoptic).tolist())
    segments = [s for s in segments if s["id"] in present]
    for s in segments:
        m = panoptic == s["id"]
        ys, xs = np.nonzero(m)
        s["area"] = int(m.sum())
        s["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    return panoptic, segments


def render_image(rng: np.random.Generator, panoptic: np.ndarray) -> np.ndarray:
    """An RGB picture of the partition: per segment a colour and a texture (flat, stripes at some
    angle and period, checkerboard, or a gradient), sensor noise, and slightly darker boundaries."""
    ids, inv = np.unique(panoptic, return_inverse=True)
    inv = inv.reshape(panoptic.shape)
    n = ids.size
    h, w = panoptic.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.integers(30, 226, size=(n, 3)).astype(np.float32)
    second = np.clip(base + rng.normal(0, 60, size=(n, 3)), 0, 255).astype(np.float32)
    kind = rng.integers(0, 4, size=n)  # 0 flat, 1 stripes, 2 checker, 3 gradient
    angle = rng.uniform(0, np.pi, size=n).astype(np.float32)
    period = rng.uniform(4, 16, size=n).astype(np.float32)
    a, p, k = angle[inv], period[inv], kind[inv]
    u = xx * np.cos(a) + yy * np.sin(a)
    v = -xx * np.sin(a) + yy * np.cos(a)
    stripes = (np.sin(2 * np.pi * u / p) > 0).astype(np.float32)
    checker = ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
    gradient = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    t = np.select([k == 1, k == 2, k == 3], [stripes, checker, gradient], default=0.0)[..., None]
    img = base[inv] * (1 - t) + second[inv] * t
    img += rng.normal(0, 8, size=img.shape).astype(np.float32)
    edge = np.zeros(panoptic.shape, bool)
    edge[1:] |= panoptic[1:] != panoptic[:-1]
    edge[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
    img[edge] *= 0.7
    return np.clip(img, 0, 255).astype(np.uint8)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_synth_options(n_images: int, *, height: int, width: int, segments: int, seed: int,
                        crowd_fraction: float = 0.0) -> None:
    """Refuse option values a synthetic dataset cannot be made with (one line naming the option)."""
    for name, value, low in (("images", n_images, 1), ("height", height, 1), ("width", width, 1),
                             ("segments", segments, 1), ("seed", seed, 0)):
        if not _whole(value) or value < low:
            raise EntityKitError(f"--{name} must be a whole number ≥ {low}, got {value!r}")
    if not (isinstance(crowd_fraction, (int, float)) and 0.0 <= crowd_fraction <= 1.0):
        raise EntityKitError(f"crowd_fraction must be in [0, 1], got {crowd_fraction!r}")
    check_pixels(height, width, item="--height × --width")


def write_synthetic_panoptic(
    out_dir: str | Path,
    n_images: int,
    *,
    height: int = 480,
    width: int = 640,
    segments: int = 30,
    seed: int = 0,
    images: bool = True,
    crowd_fraction: float = 0.02,
    name: str = "panoptic_synth",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``<out>/<name>.json``, ``<out>/<name>/*.png`` and (optionally) ``<out>/images/*.jpg``.

    Deterministic for a seed. Returns the JSON path. The folder is written atomically.
    """
    check_synth_options(n_images, height=height, width=width, segments=segments, seed=seed,
                        crowd_fraction=crowd_fraction)
    out_dir = check_output(out_dir, kind="folder", overwrite=overwrite)
    rng = np.random.default_rng(seed)
    with atomic_path(out_dir, overwrite=overwrite) as tmp, progress_bar(n_images, "synth", enabled=progress) as advance:
        (tmp / name).mkdir(parents=True)
        if images:
            (tmp / "images").mkdir()
        coco_images, annotations = [], []
        for i in range(n_images):
            stem = f"synth_{i:06d}"
            panoptic, segs = synthetic_panoptic_image(rng, height, width, segments, crowd_fraction=crowd_fraction)
            Image.fromarray(id2rgb(panoptic)).save(tmp / name / f"{stem}.png")
            if images:
                Image.fromarray(render_image(rng, panoptic)).save(tmp / "images" / f"{stem}.jpg", quality=92)
            coco_images.append({"id": i + 1, "file_name": f"{stem}.jpg", "height": height, "width": width})
            annotations.append({"image_id": i + 1, "file_name": f"{stem}.png", "segments_info": segs})
            advance()
        write_json(
            tmp / f"{name}.json",
            {
                "info": {"description": f"entitykit synthetic panoptic data, seed {seed}"},
                "images": coco_images,
                "annotations": annotations,
                "categories": STUFF_CATEGORIES + THING_CATEGORIES,
            },
        )
    return out_dir / f"{name}.json"
