"""The partition walk of the compiled kernel (``_ckernel.c``: GT runs and the gaps between them cut
the pixel line into pieces; each prediction run is located by a bucket index and walked piece by
piece) against a pixel count, on the layouts where such a walk goes wrong: GT runs that touch one
another (no gap between them), a gap at the start or the end of the image, a GT covering every
pixel, one-pixel pieces, many pieces in one bucket, prediction runs that cross many pieces or lie
inside one, runs that end exactly on a piece boundary, and images of one row or one column.
Deterministic (fixed seeds); intersections and overlap flags are exact integers."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from entitykit.evaluation import _kernel as K


def _strings(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    enc = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"] for m in masks]
    buf = np.frombuffer(b"".join(enc), np.uint8) if enc else np.zeros(0, np.uint8)
    ends = np.cumsum([len(s) for s in enc], dtype=np.int64)
    return buf, ends - np.array([len(s) for s in enc], np.int64), ends


def _check(gts: list[np.ndarray], dts: list[np.ndarray]) -> np.ndarray:
    h, w = (gts or dts)[0].shape
    inter, flags = K.image_intersections(*_strings(gts), *_strings(dts), h, w)
    ref = np.array([[int(np.count_nonzero(g & d)) for d in dts] for g in gts], np.int64).reshape(len(gts), len(dts))
    assert np.array_equal(inter, ref)
    dt_over = bool(dts) and bool((np.sum(dts, axis=0) > 1).any())
    assert flags == (K.DT_OVERLAP if dt_over else 0)
    return inter


def _labels_to_masks(lab: np.ndarray, k: int) -> list[np.ndarray]:
    return [lab == j for j in range(1, k + 1)]


def test_gt_runs_touching_and_covering_every_pixel():
    """A partition of every pixel into column stripes and row bands: GT runs meet end to start
    (no gap piece between them), the first piece starts at pixel 0 and the last ends at h * w."""
    h, w = 9, 7
    lab = np.zeros((h, w), np.int64)
    lab[:4] = 1
    lab[4:] = 2
    lab[:, 3] = 3  # one column of its own: its run touches runs of masks 1 and 2 on both sides
    lab[8, :] = 4  # the last row: one-pixel runs at every column's end
    gts = _labels_to_masks(lab, 4)
    dts = [np.ones((h, w), bool), np.zeros((h, w), bool)]  # one prediction over every piece, one empty
    inter = _check(gts, dts)
    assert inter[:, 0].tolist() == [int(m.sum()) for m in gts]


def test_gaps_at_both_ends_and_one_pixel_pieces():
    """GT that leaves the first and last pixels void, with one-pixel GT runs separated by one-pixel
    gaps; predictions that start or end exactly on a piece boundary, or lie inside one piece."""
    h, w = 1, 40
    lab = np.zeros((h, w), np.int64)
    lab[0, 3:30:2] = 1  # one-pixel runs at 3, 5, ..., 29, one-pixel gaps between
    lab[0, 31:37] = 2
    gts = _labels_to_masks(lab, 2)
    spans = [(0, 3), (3, 4), (4, 5), (2, 31), (31, 37), (32, 35), (37, 40), (0, 40)]
    dts = []
    for lo, hi in spans:
        m = np.zeros((h, w), bool)
        m[0, lo:hi] = True
        dts.append(m)
    _check(gts, dts[:5])  # disjoint predictions
    _check(gts, dts)  # and overlapping ones (allowed here: intersections still exact)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (37, 53), (64, 64)])
def test_random_partitions_with_long_and_short_prediction_runs(seed, shape):
    """Random GT partitions (void cells, fine noise: many short pieces, often several per bucket)
    against predictions of every run length: a one-pixel run, runs crossing many pieces, a
    prediction covering the image."""
    rng = np.random.default_rng(seed)
    h, w = shape
    k = int(rng.integers(1, 10))
    lab = rng.integers(0, k + 1, (h, w))
    lab[rng.random((h, w)) < 0.5] = 0 if seed % 2 else lab[0, 0]
    gts = _labels_to_masks(lab, k)
    dlab = np.zeros((h, w), np.int64)
    n_d = int(rng.integers(1, 8))
    flat = dlab.reshape(-1, order="F")  # column-major, as the RLE runs
    cuts = np.sort(rng.choice(np.arange(1, h * w), size=min(2 * n_d, h * w - 1), replace=False))
    for j, (lo, hi) in enumerate(zip(cuts[0::2], cuts[1::2])):
        flat[lo:hi] = j + 1
    dlab = flat.reshape((h, w), order="F")
    dts = _labels_to_masks(dlab, n_d)
    dot = np.zeros(h * w, bool)
    dot[int(rng.integers(0, h * w))] = True
    dot = dot.reshape((h, w), order="F")
    _check(gts, dts)
    _check(gts, dts + [dot])  # may overlap one of them: the flag follows the pixels
    _check(gts, [np.ones((h, w), bool)])
    # predictions from a coarse label grid: runs of a few pixels that end inside the next piece
    for cell in (1, 2, 3):
        coarse = rng.integers(0, 6, (h // cell + 1, w // cell + 1))
        plab = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:h, :w]
        _check(gts, _labels_to_masks(plab, 5))
