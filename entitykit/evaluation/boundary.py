"""Boundary bands for Boundary IoU (Cheng et al., CVPR 2021), from COCO RLE, in bounded memory.

The band of a mask is boundary-iou-api's ``mask_to_boundary`` (boundary_iou/utils/boundary_utils.py,
bowenc0221/boundary-iou-api)::

    dilation = int(round(dilation_ratio * sqrt(h**2 + w**2)))   # h, w: the image's size
    dilation = max(dilation, 1)
    padded   = mask with a 1-pixel frame of 0
    eroded   = cv2.erode(padded, ones((3, 3)), iterations=dilation)[1:h+1, 1:w+1]
    band     = mask - eroded

Iterating a 3×3 erosion ``dilation`` times inside a zero frame keeps exactly the pixels whose whole
(2·dilation + 1)-square lies in the mask and inside the image. That square is separable, so the
bands are made on the masks' runs, never on pixels, by the C extension ``_cband`` (``_cband.c``,
built at install): per column, each run shrinks by ``dilation`` at both ends (vertical erosion,
image top and bottom = background); a pixel survives if its row survives in all 2·dilation + 1
columns around it (a sliding-window intersection of run lists, three list intersections per
column whatever the width); band = mask runs minus surviving runs, written straight to COCO
compressed counts (pycocotools' ``rleToString``). Cost O(runs + columns) per mask; no pixel array
per mask, pair or image. The runs are read with ``_kernel.decode_runs`` (the package's one RLE
decoder) a bounded chunk of masks at a time; threads share the chunks (the C code releases the GIL).

The bands are pixel-identical to the reference (tests/test_boundary.py checks them against a
dense transcription of it on random masks, and Boundary AP against vernier's strict mode).

Scoring (boundary-iou-api's ``COCOeval.computeBoundaryIoU``): IoU = min(mask IoU, band IoU) for
a non-crowd ground truth; the plain crowd mask IoU (intersection over the detection's area) for a
crowd one. ``entitykit.evaluation.ape.evaluate_all(..., bands=...)`` applies it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from . import _cband

if TYPE_CHECKING:  # annotations only (numpy is imported in the functions, see below)
    import numpy as np

# numpy and the RLE decoder (``_kernel``) are imported in the functions that use them: ``evaluate``
# imports this module for DEFAULT_DILATION_RATIO / check_ratio before it imports numpy (``_ahead``).

DEFAULT_DILATION_RATIO = 0.02  # boundary-iou-api's default and the paper's (2 % of the image diagonal)


def dilation_for(height: int, width: int, ratio: float = DEFAULT_DILATION_RATIO) -> int:
    """Band width in pixels: ``int(round(ratio * sqrt(h² + w²)))``, at least 1.

    The reference's expression verbatim, with numpy's float64 sqrt and Python's round (ties to
    even: a diagonal giving 2.5 px makes a 2-px band, 3.5 px a 4-px band)."""
    import numpy as np  # noqa: PLC0415

    d = int(round(ratio * np.sqrt(height**2 + width**2)))
    return d if d >= 1 else 1


def check_ratio(ratio: float) -> float:
    """``ratio`` as a float, or ValueError: it must be a finite number > 0."""
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"dilation ratio must be a number, got {ratio!r}") from None
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"dilation ratio must be a finite number > 0, got {ratio!r}")
    return r


def band_counts(counts: bytes | str, height: int, width: int, dilation: int) -> str:
    """The band of one COCO RLE mask (compressed counts, str or bytes) of a ``height`` × ``width``
    image, ``dilation`` ≥ 1 px, as compressed counts (str). ValueError for a malformed string."""
    import numpy as np  # noqa: PLC0415

    from ._kernel import decode_runs  # noqa: PLC0415

    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    rs, re, rk = decode_runs(np.frombuffer(raw, np.uint8), np.zeros(1, np.int64), np.full(1, len(raw), np.int64))
    one = np.ones(1, np.int64)
    c, _ = _cband.bands(rs, re, rk, one * int(height), one * int(width), one * int(dilation))
    return c.decode("ascii")


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = DEFAULT_DILATION_RATIO) -> np.ndarray:
    """Dense convenience form of the reference's function: (H, W) 0/1 array → (H, W) uint8 band."""
    import numpy as np  # noqa: PLC0415

    from ._kernel import decode_runs  # noqa: PLC0415

    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    idx = np.flatnonzero(np.diff(np.concatenate(([0], m.ravel(order="F").astype(np.int8), [0])))).astype(np.int64)
    one = np.ones(1, np.int64)
    c, _ = _cband.bands(idx[0::2].copy(), idx[1::2].copy(), np.zeros(idx.size // 2, np.int64), one * h, one * w,
                        one * dilation_for(h, w, dilation_ratio))
    bs, be, _ = decode_runs(np.frombuffer(c, np.uint8), np.zeros(1, np.int64), np.full(1, len(c), np.int64))
    flat = np.zeros(h * w + 1, np.int8)
    flat[bs] = 1
    flat[be] -= 1
    return np.cumsum(flat[:-1], dtype=np.int8).view(np.uint8).reshape((w, h)).T.copy()


CHUNK_BYTES = 1 << 18  # RLE string bytes per call: bounds the decoded runs held at once (~8 bytes per byte)


def _side(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, img: np.ndarray, heights: np.ndarray,
          widths: np.ndarray, dilations: np.ndarray, advance: Callable[[int], None] | None, workers: int):
    """Bands of the masks of one side (GT or predictions), laid out like the inputs."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from ._kernel import decode_runs  # noqa: PLC0415

    m = len(starts)
    if m == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(img, kind="stable")  # masks of an image together (they already are)
    s_o, e_o, img_o = starts[order], ends[order], img[order]
    cum = np.cumsum(e_o - s_o)
    cuts = np.unique(np.concatenate(([0], np.searchsorted(cum, np.arange(CHUNK_BYTES, int(cum[-1]), CHUNK_BYTES)) + 1,
                                     [m])))
    last = np.ones(m, bool)  # the last mask of its image: the image is done after it
    last[:-1] = img_o[1:] != img_o[:-1]
    done = np.concatenate(([0], np.cumsum(last)))

    def one(k: int):
        lo, hi = int(cuts[k]), int(cuts[k + 1])
        rs, re, rk = decode_runs(buf, s_o[lo:hi], e_o[lo:hi])
        im = img_o[lo:hi]
        return _cband.bands(rs, re, rk, heights[im], widths[im], dilations[im])

    parts, lens = [], []
    chunks = range(len(cuts) - 1)
    with ThreadPoolExecutor(workers) if workers > 1 and len(chunks) > 1 else nullcontext() as pool:
        for k, (c, ln) in enumerate(pool.map(one, chunks) if pool is not None else map(one, chunks)):
            parts.append(c)
            lens.append(np.frombuffer(ln, np.int64))
            if advance is not None:
                advance(int(done[cuts[k + 1]] - done[cuts[k]]))
    out = np.frombuffer(b"".join(parts), np.uint8)
    off = np.zeros(m + 1, np.int64)
    np.cumsum(np.concatenate(lens), out=off[1:])
    bs, be = np.empty(m, np.int64), np.empty(m, np.int64)
    bs[order], be[order] = off[:-1], off[1:]
    return out, bs, be


def boundary_bands(inp, dilation_ratio: float = DEFAULT_DILATION_RATIO, *,
                   advance: Callable[[int], None] | None = None, workers: int = 0) -> tuple:
    """Bands of every ground truth and prediction of ``inp`` (an ``ape.EvalInputs``).

    Returns ``(gb_buf, gb_s, gb_e, db_buf, db_s, db_e)``: uint8 buffers of compressed COCO RLE
    counts and int64 start / end offsets, GT in the order of ``inp.g_s`` and predictions in the
    order of ``inp.d_s`` (the layout of ``EvalInputs``). ``advance(n)`` is called as images are
    done, once per image side with masks in all (for progress). ``workers``: threads over chunks of
    masks (0 = one per CPU core, as ``ape.evaluate_all``). Raises ValueError for a ratio that is
    not a finite number > 0 or a malformed RLE string. Memory: the inputs and outputs plus, per
    thread, one chunk of decoded runs (``CHUNK_BYTES`` of strings, or one mask if larger) and the
    kernel's scratch (O(runs) of one mask)."""
    import numpy as np  # noqa: PLC0415

    ratio = check_ratio(dilation_ratio)
    dil = np.array([dilation_for(int(h), int(w), ratio) for h, w in zip(inp.heights.tolist(), inp.widths.tolist())],
                   np.int64)
    nw = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
    h, w = np.ascontiguousarray(inp.heights, np.int64), np.ascontiguousarray(inp.widths, np.int64)
    g = _side(inp.g_buf, inp.g_s, inp.g_e, inp.g_img, h, w, dil, advance, nw)
    d = _side(inp.d_buf, inp.d_s, inp.d_e, inp.d_img, h, w, dil, advance, nw)
    return (*g, *d)


def every_band_is_its_mask(inp, bands: tuple) -> bool:
    """Whether every mask of ``inp`` (an ``ape.EvalInputs``, GT and predictions) is its own band
    (``bands`` as :func:`boundary_bands` returns them): the dilation reaches every mask's middle,
    so boundary IoU is mask IoU and Boundary APe equals APe. False for no mask. Compares the
    compressed counts (the band of a mask is written in the same canonical COCO encoding); stops at
    the first mask that differs."""
    import numpy as np  # noqa: PLC0415

    gb, gs, ge, db, ds, de = bands
    if not len(gs) + len(ds):
        return False
    for buf, s, e, bbuf, bs, be in ((inp.g_buf, inp.g_s, inp.g_e, gb, gs, ge), (inp.d_buf, inp.d_s, inp.d_e, db, ds, de)):
        if not np.array_equal(np.asarray(e) - s, be - bs):
            return False
        for a, b, c, d in zip(s.tolist(), e.tolist(), bs.tolist(), be.tolist()):
            if buf[a:b].tobytes() != bbuf[c:d].tobytes():
                return False
    return True
