"""Masks, id maps and COCO RLE.

An *id map* is the paper's P: an integer array (H, W), 0 = no entity, k > 0 = entity k. RLE
compression, area and boxes come from pycocotools' C code; only the step pycocotools lacks —
splitting one id map into per-id run lists in a single pass — is written here in numpy.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EntityKitError


class _OnFirstUse:
    """A module imported on first attribute access: the scorer's start-up (``entitykit eval`` on a few
    hundred images takes well under a second) does not pay for Pillow, pycocotools or panopticapi
    unless a function here needs them."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        setattr(self, attr, getattr(module, attr))
        return getattr(module, attr)


mask_utils = _OnFirstUse("pycocotools.mask")
Image = _OnFirstUse("PIL.Image")
_panoptic = _OnFirstUse("panopticapi.utils")


def id2rgb(id_map: np.ndarray) -> np.ndarray:
    return _panoptic.id2rgb(id_map)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    return _panoptic.rgb2id(rgb)

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
    """Uncompressed run lengths (int64, one per count) of a compressed COCO RLE string.

    Decoded by the package's one codec, the scorer's C kernel (``entitykit.evaluation._kernel.
    decode_counts``: pycocotools' ``rleFrString`` — 5 payload bits per char (offset 48), bit 0x20 =
    more chars follow, bit 0x10 of the last char = sign; from the fourth run on, a value is a delta
    to the run two places earlier). Values come back as decoded (``runs_problem`` judges them).
    Raises ValueError when the string is malformed (non-ASCII, a character outside '0'..'o', a
    number cut off at the end or longer than 13 characters).
    """
    from .evaluation._kernel import decode_counts  # noqa: PLC0415

    return decode_counts(counts.encode("ascii") if isinstance(counts, str) else counts)


_MAX_TOKEN_CHARS = 7  # 35 bits: any run of an image under the pixel limit fits; more chars = corrupt


def runs_problem(counts: str | bytes | list, height: int, width: int) -> str | None:
    """None when ``counts`` (compressed string/bytes or uncompressed list) are valid runs of an
    ``height``×``width`` mask; else what is wrong. Never allocates more than the counts' own size."""
    n = height * width
    if isinstance(counts, (str, bytes)):
        if isinstance(counts, str) and not counts.isascii():
            return "RLE counts contain non-ASCII characters: corrupt or not COCO RLE"
        raw = counts.encode("ascii") if isinstance(counts, str) else counts
        b = np.frombuffer(raw, np.uint8)
        if b.size and (b.min() < 48 or b.max() > 111):
            return "RLE counts contain characters outside pycocotools' alphabet ('0'..'o'): corrupt or not COCO RLE"
        if b.size and (b[-1] - 48) & 0x20:
            return "RLE counts end in the middle of a number: truncated"
        last = ((b.astype(np.int64) - 48) & 0x20) == 0
        ends = np.flatnonzero(last)
        lengths = np.diff(np.concatenate(([-1], ends)))
        if lengths.size and lengths.max() > _MAX_TOKEN_CHARS:
            return "RLE counts hold a number longer than any image allows: corrupt"
        runs = rle_counts(raw)
    else:
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
            return "uncompressed RLE counts must be whole numbers"
        runs = np.asarray(counts, np.int64) if counts else np.zeros(0, np.int64)
    if runs.size and runs.min() < 0:
        return "RLE counts have a negative run: corrupt"
    total = int(runs.sum())
    if total != n:
        return f"RLE counts do not cover height × width: they add up to {total:,} pixels, not {height}×{width} = {n:,}"
    return None


def _is_binary_grid(seg: Any) -> bool:
    """A list of rows of 0/1/booleans (SAM's ``binary_mask`` output saved as JSON)."""
    if not (isinstance(seg, list) and seg and isinstance(seg[0], list) and seg[0]):
        return False
    first = seg[0]
    if any(isinstance(v, bool) for v in first):
        return True
    return len(first) > 2 and all(isinstance(v, int) and v in (0, 1) for v in first) and len(seg) > 1 and all(
        isinstance(r, list) and len(r) == len(first) for r in seg)


def _is_image_shaped_grid(seg: Any, height: int | None, width: int | None) -> bool:
    """Exactly ``height`` rows of ``width`` whole numbers: a grid (whose values are then checked), never
    polygons — a grid with one stray value must be refused, not read as ``height`` polygons."""
    return (height is not None and isinstance(seg, list) and len(seg) == height and height > 1
            and all(isinstance(r, list) and len(r) == width for r in seg)
            and all(isinstance(v, (int, np.integer)) for r in seg for v in r))


def read_mask(seg: Any, height: int | None, width: int | None, *, path: object = None,
              item: str | None = None) -> dict:
    """Any COCO-style segmentation → a validated RLE ``{"size": [h, w], "counts": bytes}``.

    The one reader and validator of masks for every converter, merge, pack, check and eval.
    Recognised explicitly: compressed RLE (``counts`` a string), uncompressed RLE (``counts`` a list
    of run lengths), polygons (a list of flat ``[x1, y1, x2, y2, …]`` lists, ≥ 3 points each) and
    H×W binary grids (nested lists of 0/1 or booleans, or a 2-D numpy array). ``height``/``width``:
    the image's size (None: take it from the RLE). Checked before any decoding: the RLE's size is
    the image's, the pixel limit (``entitykit.limits``), and that the runs cover exactly
    height × width pixels. Raises :class:`EntityKitError` naming ``path`` and ``item``.
    """
    from .limits import check_pixels  # noqa: PLC0415

    def bad(text: str) -> EntityKitError:
        return EntityKitError(text, path, item)

    if isinstance(seg, np.ndarray) or _is_binary_grid(seg) or _is_image_shaped_grid(seg, height, width):
        arr = np.asarray(seg)
        if arr.ndim != 2 or arr.dtype == object:
            raise bad("binary mask grid must be H rows of W values")
        if not (arr.dtype == bool or np.isin(arr, (0, 1)).all()):
            raise bad("binary mask grid must hold only 0/1 or true/false")
        if height is not None and arr.shape != (height, width):
            raise bad(f"binary mask is {arr.shape[1]}×{arr.shape[0]}, the image {width}×{height}")
        check_pixels(*arr.shape, path, item)
        rle = mask_utils.encode(np.asfortranarray(arr, dtype=np.uint8))
        return {"size": [int(arr.shape[0]), int(arr.shape[1])], "counts": rle["counts"]}
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise bad(f"RLE needs 'size' and 'counts' (keys: {', '.join(map(str, seg)) or 'none'})")
        size = seg["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)):
            raise bad(f"RLE size must be [height, width] of positive whole numbers, got {size!r}")
        h, w = int(size[0]), int(size[1])
        if height is not None and [h, w] != [height, width]:
            raise bad(f"RLE size [{h}, {w}] differs from the image's [height, width] [{height}, {width}] "
                      "(a mask made for another resolution of the image, e.g. a low-res copy?)")
        check_pixels(h, w, path, item)
        counts = seg["counts"]
        if isinstance(counts, str) and len(counts) >= 3 and counts[:2] in ("b'", 'b"') and counts[-1] == counts[1]:
            raise bad("RLE counts were saved as a Python bytes literal \"b'...'\" (str(bytes) instead of "
                      "bytes.decode()): re-export them with counts.decode('ascii')")
        if not isinstance(counts, (str, bytes, list)):
            raise bad(f"RLE counts must be a string (compressed) or a list of runs, got {type(counts).__name__}")
        why = runs_problem(counts, h, w)
        if why:
            raise bad(why)
        if isinstance(counts, list):
            return {"size": [h, w], "counts": mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"]}
        return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}
    if isinstance(seg, list) and seg and all(isinstance(p, list) for p in seg):
        if height is None:
            raise bad("polygons need the image's height and width")
        for k, poly in enumerate(seg):
            if len(poly) < 6 or len(poly) % 2 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in poly):
                raise bad(f"polygon {k} must be ≥ 3 points as finite numbers [x1, y1, x2, y2, …]")
        check_pixels(height, width, path, item)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return {"size": [height, width], "counts": rle["counts"]}
    kind = type(seg).__name__ if not isinstance(seg, list) else ("an empty list" if not seg else "a list of non-lists")
    raise bad(f"segmentation is neither an RLE {{size, counts}}, polygons nor a binary grid (got {kind})")


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
        if (bounds[-1] if bounds.size else 0) != n or (bounds.size > 1 and (np.diff(bounds) < 0).any()):
            raise ValueError(f"RLE runs do not cover height × width = {n} pixels")  # never allocate for corrupt runs
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
    from .limits import check_pixels  # noqa: PLC0415

    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            check_pixels(im.size[1], im.size[0], path)  # before decoding: a PNG bomb never allocates
            arr = np.array(im)
    except FileNotFoundError:
        raise EntityKitError("id-map PNG not found", path) from None
    except IsADirectoryError:
        raise EntityKitError("id-map PNG is a folder, not a file", path) from None
    except Image.UnidentifiedImageError:
        raise EntityKitError("id-map PNG is not an image (empty or corrupt file)", path) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise EntityKitError(f"cannot read id-map PNG: {e}", path) from None
    if mode in ("RGB", "RGBA"):
        return rgb2id(arr[:, :, :3]).astype(np.int32)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return arr.astype(np.int32)
    raise EntityKitError(
        f"id-map PNG has mode {mode}; expected 16-bit grayscale or RGB (8-bit maps wrap above 255 ids)",
        path,
    )
