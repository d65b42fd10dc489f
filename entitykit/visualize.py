"""Pictures of id maps: colour overlays with entity boundaries, and per-entity RGBA cutouts.

All functions take an H×W×3 uint8 RGB image and an H×W integer id map (0 = no entity) and work
in integer arithmetic on whole arrays, so the cost is a few bytes per pixel whatever the number
of entities.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Sequence

import numpy as np

_GOLDEN = 0.6180339887498949


def palette(n: int) -> np.ndarray:
    """(n+1)×3 uint8 colours; row k is entity k's colour, row 0 (no entity) black.

    Hues step by the golden ratio so neighbouring ids differ strongly; saturation and value
    alternate so that ids whose hues come close again still differ. Same n, same colours.
    """
    out = np.zeros((n + 1, 3), np.uint8)
    for k in range(1, n + 1):
        h = (k * _GOLDEN) % 1.0
        s = (0.95, 0.6, 0.8)[k % 3]
        v = (1.0, 0.8)[(k // 3) % 2]
        out[k] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def boundaries(id_map: np.ndarray, thickness: int = 1) -> np.ndarray:
    """H×W bool: pixels whose right or lower neighbour has another id (entity–entity and entity–void
    edges), grown to ``thickness`` pixels."""
    edge = np.zeros(id_map.shape, bool)
    dx = id_map[:, 1:] != id_map[:, :-1]
    dy = id_map[1:, :] != id_map[:-1, :]
    edge[:, :-1] |= dx
    edge[:, 1:] |= dx
    edge[:-1, :] |= dy
    edge[1:, :] |= dy
    for _ in range(max(0, thickness - 1)):
        grown = edge.copy()
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        edge = grown
    return edge


def overlay(image: np.ndarray, id_map: np.ndarray, *, alpha: float = 0.5, boundary_color=(255, 255, 255),
            thickness: int | None = None) -> np.ndarray:
    """The image with every entity tinted in its own colour and its boundary drawn.

    Pixels of no entity keep their colour. ``thickness`` defaults to 1 px per 500 px of the
    short side (at least 1).
    """
    if image.shape[:2] != id_map.shape:
        raise ValueError(f"image {image.shape[:2]} and id map {id_map.shape} differ in size")
    n = int(id_map.max()) if id_map.size else 0
    colors = palette(n).astype(np.uint16)
    a = int(round(alpha * 256))
    out = image.copy()
    step = max(1, (1 << 20) // max(1, id_map.shape[1]))  # about a million pixels at a time
    for y in range(0, id_map.shape[0], step):
        ids = id_map[y : y + step]
        tinted = (image[y : y + step].astype(np.uint16) * (256 - a) + colors[ids] * a) >> 8
        on = ids > 0
        out[y : y + step][on] = tinted[on].astype(np.uint8)
    if thickness is None:
        thickness = max(1, min(id_map.shape) // 500)
    out[boundaries(id_map, thickness)] = boundary_color
    return out


def cutout_crops(image: np.ndarray, id_map: np.ndarray, boxes: Sequence[Sequence[int]],
                 ids: Sequence[int]) -> Iterator[np.ndarray]:
    """For each entity id and its [x, y, w, h] box: an h×w×4 RGBA crop, alpha 255 on the entity, 0 elsewhere."""
    for (x, y, w, h), k in zip(boxes, ids):
        x, y, w, h = int(x), int(y), int(w), int(h)
        crop = np.empty((h, w, 4), np.uint8)
        crop[:, :, :3] = image[y : y + h, x : x + w]
        np.multiply(id_map[y : y + h, x : x + w] == k, 255, out=crop[:, :, 3], casting="unsafe")
        yield crop
