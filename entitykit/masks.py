"""Masks, id maps and COCO RLE.

An *id map* is the paper's P: an integer array (H, W), 0 = no entity, k > 0 = entity k. RLE
compression, area and boxes come from pycocotools' C code; only the step pycocotools lacks —
splitting one id map into per-id run lists in a single pass — is written here in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image
from pycocotools import mask as mask_utils

from .errors import EntityKitError

RLE = dict  # {"size": [h, w], "counts": str}


def encode_mask(mask: np.ndarray) -> RLE:
    """One binary mask → COCO RLE with str counts (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _as_c_rles(rles: Sequence[RLE]) -> list[dict]:
    """pycocotools' C functions want bytes counts; JSON gives str (or uncompressed lists)."""
    out = []
    for r in rles:
        counts = r["counts"]
        if isinstance(counts, str):
            out.append({"size": list(r["size"]), "counts": counts.encode("ascii")})
        elif isinstance(counts, list):
            h, w = r["size"]
            out.append(mask_utils.frPyObjects(r, h, w))
        else:
            out.append(r)
    return out


def rle_counts(counts: str | bytes) -> np.ndarray:
    """Uncompressed run lengths of a compressed COCO RLE string, vectorized.

    Written by hand because pycocotools exposes the runs only by decoding to pixels. The string
    is pycocotools' LEB128-like code: 5 payload bits per char (offset 48), bit 0x20 = more chars
    follow, bit 0x10 of the last char = sign; from the fourth run on, a value is a delta to the
    run two places earlier.
    """
    b = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else counts, np.uint8)
    if b.size == 0:
        return np.zeros(0, np.int64)
    c = b.astype(np.int64) - 48
    last = (c & 0x20) == 0
    token = np.concatenate(([0], np.cumsum(last)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    k = np.arange(c.size) - starts[token]
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    ends = np.flatnonzero(last)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * (k[ends[neg]] + 1))
    out = x.copy()
    out[3::2] = np.cumsum(x[1::2])[1:] if x.size > 3 else out[3::2]
    out[4::2] = x[2] + np.cumsum(x[4::2]) if x.size > 4 else out[4::2]
    return out


def rle_area(rles: Sequence[RLE]) -> np.ndarray:
    return mask_utils.area(_as_c_rles(rles)).astype(np.int64) if len(rles) else np.zeros(0, np.int64)


def rle_bbox(rles: Sequence[RLE]) -> np.ndarray:
    return mask_utils.toBbox(_as_c_rles(rles)) if len(rles) else np.zeros((0, 4))


def overlapping_pairs(rles: Sequence[RLE]) -> list[tuple[int, int, int]]:
    """(i, j, shared pixels) for every pair of masks that overlap; box-pruned, RLE-domain (pycocotools).

    Meant for naming culprits once an overlap is known, not as a hot path: it is O(masks²).
    """
    c_rles = _as_c_rles(rles)
    boxes = mask_utils.toBbox(c_rles) if c_rles else np.zeros((0, 4))
    pairs = []
    for i in range(len(c_rles)):
        for j in range(i + 1, len(c_rles)):
            bi, bj = boxes[i], boxes[j]
            if bi[0] >= bj[0] + bj[2] or bj[0] >= bi[0] + bi[2] or bi[1] >= bj[1] + bj[3] or bj[1] >= bi[1] + bi[3]:
                continue
            n = int(mask_utils.area(mask_utils.merge([c_rles[i], c_rles[j]], intersect=True)))
            if n:
                pairs.append((i, j, n))
    return pairs


def encode_id_map(id_map: np.ndarray) -> tuple[np.ndarray, list[RLE], np.ndarray]:
    """Split an id map into one RLE per non-zero id, in one pass over the pixels.

    Returns ``(ids, rles, areas)`` with ids ascending. Equivalent to ``encode_mask(id_map == k)``
    for every k (byte-identical counts) but O(pixels + runs) instead of O(pixels × ids).
    """
    if id_map.ndim != 2:
        raise ValueError(f"id map must be 2-D, got shape {id_map.shape}")
    h, w = id_map.shape
    flat = id_map.ravel(order="F")  # COCO RLE is column-major
    n = flat.size
    if n == 0:
        return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [n]))
    values = flat[starts]
    keep = values != 0
    starts, ends, values = starts[keep], ends[keep], values[keep]
    if values.size == 0:
        return np.zeros(0, np.int64), [], np.zeros(0, np.int64)
    order = np.argsort(values, kind="stable")  # runs grouped by id, in pixel order within an id
    starts, ends, values = starts[order], ends[order], values[order]
    first = np.concatenate(([True], values[1:] != values[:-1]))
    group_start = np.flatnonzero(first)
    group_end = np.concatenate((group_start[1:], [values.size]))
    prev_end = np.concatenate(([0], ends[:-1]))
    prev_end[first] = 0
    gaps = starts - prev_end  # zeros before each run of ones
    lengths = ends - starts
    inter = np.empty(2 * values.size, np.int64)
    inter[0::2] = gaps
    inter[1::2] = lengths
    ids = values[group_start].astype(np.int64)
    areas = np.add.reduceat(lengths, group_start).astype(np.int64)
    tails = n - ends[group_end - 1]
    uncompressed = []
    for gs, ge, tail in zip(group_start.tolist(), group_end.tolist(), tails.tolist()):
        counts = inter[2 * gs : 2 * ge].tolist()
        if tail:
            counts.append(tail)
        uncompressed.append({"size": [h, w], "counts": counts})
    rles = mask_utils.frPyObjects(uncompressed, h, w)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return ids, rles, areas


def _runs(rle: RLE) -> np.ndarray:
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, np.int64)
    return rle_counts(counts)


def decode_to_id_map(
    rles: Sequence[RLE], values: Sequence[int], height: int, width: int
) -> tuple[np.ndarray, int]:
    """Paint RLE masks into one id map (value ``values[i]`` for mask i), working on runs, not pixels.

    Returns ``(id_map, overlap_pixels)`` where overlap_pixels counts every extra claim on a pixel
    (a pixel in three masks counts 2); later masks win there, as when painting in order. Cost is
    O(pixels + runs), independent of the number of masks.
    """
    n = height * width
    values = np.asarray(values, np.int64)
    starts_l, ends_l, vals_l = [], [], []
    for rle, v in zip(rles, values.tolist()):
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"RLE size {list(rle['size'])} differs from the map's [{height}, {width}]")
        bounds = np.cumsum(_runs(rle))
        k = bounds.size // 2  # runs alternate 0s, 1s, 0s, …: ones are [bounds[2i], bounds[2i+1])
        starts_l.append(bounds[0 : 2 * k : 2])
        ends_l.append(bounds[1 : 2 * k : 2])
        vals_l.append(np.full(k, v, np.int64))
    if not starts_l:
        return np.zeros((height, width), np.int32), 0
    starts, ends, vals = np.concatenate(starts_l), np.concatenate(ends_l), np.concatenate(vals_l)
    coverage = np.cumsum(np.bincount(starts, minlength=n + 1) - np.bincount(ends, minlength=n + 1))[:n]
    overlap = int(np.maximum(coverage - 1, 0).sum())
    if overlap == 0:
        delta = np.bincount(starts, weights=vals, minlength=n + 1) - np.bincount(ends, weights=vals, minlength=n + 1)
        flat = np.cumsum(delta)[:n].astype(np.int32)
    else:  # rare: paint run by run so that later masks win
        flat = np.zeros(n, np.int32)
        for s0, e0, v in zip(starts.tolist(), ends.tolist(), vals.tolist()):
            flat[s0:e0] = v
    return flat.reshape((width, height)).T.copy(), overlap


# ---------------------------------------------------------------------------------------------
# Id-map PNG files (the paper's P as an image). Never uint8: more than 255 entities are common.

ID_MAP_FORMATS = ("png16", "rgb")


def write_id_map_png(path: str | Path, id_map: np.ndarray, fmt: str = "png16") -> None:
    """Save an id map as a 16-bit grayscale PNG (ids ≤ 65,535) or a panoptic RGB PNG (any id < 2²⁴)."""
    id_map = np.asarray(id_map)
    top = int(id_map.max()) if id_map.size else 0
    if int(id_map.min() if id_map.size else 0) < 0:
        raise EntityKitError("id map has negative ids", path)
    if fmt == "png16":
        if top > 0xFFFF:
            raise EntityKitError(f"id {top} does not fit a 16-bit PNG; use the 'rgb' id-map format", path)
        Image.fromarray(id_map.astype(np.uint16)).save(path)
    elif fmt == "rgb":
        if top >= 256**3:
            raise EntityKitError(f"id {top} does not fit a panoptic RGB PNG (< 2^24)", path)
        Image.fromarray(id2rgb(id_map.astype(np.int64)).astype(np.uint8)).save(path)
    else:
        raise EntityKitError(f"unknown id-map format {fmt!r}; choose one of {ID_MAP_FORMATS}", path)


def read_id_map_png(path: str | Path) -> np.ndarray:
    """Read an id-map PNG written by :func:`write_id_map_png` (or any panoptic RGB PNG) as int32.

    16-bit and 32-bit grayscale are read as is; RGB is decoded with panopticapi's ``rgb2id``.
    8-bit grayscale is refused: it cannot hold more than 255 entities and usually means a
    truncated export.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im)
    except FileNotFoundError:
        raise EntityKitError("id-map PNG not found", path) from None
    except OSError as e:
        raise EntityKitError(f"cannot read id-map PNG: {e}", path) from None
    if mode in ("RGB", "RGBA"):
        return rgb2id(arr[:, :, :3]).astype(np.int32)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return arr.astype(np.int32)
    raise EntityKitError(
        f"id-map PNG has mode {mode}; expected 16-bit grayscale or RGB (8-bit maps wrap above 255 ids)",
        path,
    )
