"""Boundary APe: bands (hand-computed; the C run-length kernel against two dense references, a
literal transcription of boundary-iou-api's ``mask_to_boundary`` and a chessboard distance
transform, on random masks) and the 12 numbers / curves against vernier's strict mode
(boundary-iou-api parity), on hand-made cases and a 300-image random set; class-agnostic,
non-overlapping."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy.ndimage import binary_erosion, distance_transform_cdt

from entitykit.errors import EntityKitError
from entitykit.evaluation import evaluate
from entitykit.evaluation import _cband, boundary
from entitykit.evaluation.boundary import band_counts, dilation_for, mask_to_boundary
from entitykit.evaluation.synthetic import synth_coco

from _eval_helpers import build


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def reference_band(mask: np.ndarray, ratio: float) -> np.ndarray:
    """boundary-iou-api's mask_to_boundary, transcribed step by step (cv2.erode → binary_erosion,
    whose iterations are the reference's 3×3 erosions; outside the padded array never erodes, as
    cv2's default border for erosion)."""
    h, w = mask.shape
    dilation = int(round(ratio * np.sqrt(h**2 + w**2)))
    if dilation < 1:
        dilation = 1
    return reference_band_px(mask, dilation)


def reference_band_px(mask: np.ndarray, dilation: int) -> np.ndarray:
    """The reference's band for a band width given in pixels (dense: padded, eroded, subtracted)."""
    h, w = mask.shape
    new_mask = np.pad(mask.astype(bool), 1, constant_values=False)
    eroded = binary_erosion(new_mask, np.ones((3, 3), bool), iterations=dilation, border_value=1)
    return mask.astype(np.uint8) - eroded[1 : h + 1, 1 : w + 1].astype(np.uint8)


def chessboard_band(mask: np.ndarray, dilation: int) -> np.ndarray:
    """A second, independent dense form: mask pixels whose chessboard distance to the nearest pixel
    outside the mask or outside the image (a frame of 0) is at most ``dilation``."""
    h, w = mask.shape
    dist = distance_transform_cdt(np.pad(mask.astype(bool), 1), metric="chessboard")[1 : h + 1, 1 : w + 1]
    return (mask.astype(bool) & (dist <= dilation)).astype(np.uint8)


def encode(m: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode("ascii")


def random_mask(rng, h: int, w: int) -> np.ndarray:
    """Noise, boxes (often touching borders), blobs with holes, frames, full and empty masks."""
    kind = int(rng.integers(7))
    if kind == 0:
        return (rng.random((h, w)) < rng.random()).astype(np.uint8)
    if kind == 1:  # a box; half the time against one or more image borders
        y0, x0 = (0, 0) if rng.random() < 0.5 else (int(rng.integers(0, h)), int(rng.integers(0, w)))
        y1 = h if rng.random() < 0.5 else y0 + int(rng.integers(1, h + 1))
        x1 = w if rng.random() < 0.5 else x0 + int(rng.integers(1, w + 1))
        return box(h, w, y0, y1, x0, x1)
    if kind == 2:  # a smooth blob with holes (thresholded smoothed noise)
        from scipy.ndimage import uniform_filter

        f = uniform_filter(rng.random((h, w)), size=int(rng.integers(1, 6)), mode="wrap")
        return (f > np.quantile(f, rng.uniform(0.1, 0.9))).astype(np.uint8)
    if kind == 3:  # a frame along all four borders (touches every border, hole in the middle)
        m = np.ones((h, w), np.uint8)
        t = int(rng.integers(1, 4))
        m[t : h - t, t : w - t] = 0
        return m
    if kind == 4:
        return np.ones((h, w), np.uint8)
    if kind == 5:  # isolated pixels and 1-pixel-wide lines
        m = np.zeros((h, w), np.uint8)
        m[int(rng.integers(h)), :] = 1
        m[:, int(rng.integers(w))] = 1
        m[rng.integers(0, h, 3), rng.integers(0, w, 3)] = 1
        return m
    return np.zeros((h, w), np.uint8)


# ---------------------------------------------------------------------------------------------
# bands, hand-computed


def test_band_of_a_square_is_its_ring():
    m = box(10, 10, 2, 8, 2, 8)  # 6×6; diagonal 14.14
    assert dilation_for(10, 10, 0.1) == 1  # 1.41 → 1
    b = mask_to_boundary(m, 0.1)
    assert b.sum() == 36 - 16 and b[3:7, 3:7].sum() == 0 and b[2].sum() == 6
    assert dilation_for(10, 10, 0.15) == 2  # 2.12 → 2: the 2×2 centre stays out
    assert mask_to_boundary(m, 0.15).sum() == 36 - 4
    assert dilation_for(10, 10, 0.2) == 3  # 2.83 → 3: nothing survives three erosions
    assert mask_to_boundary(m, 0.2).sum() == 36


def test_mask_touching_the_image_border_has_a_band_along_it():
    m = box(10, 10, 0, 4, 0, 10)  # the top four rows, full width
    b = mask_to_boundary(m, 0.1)  # dilation 1
    # rows 0 (the frame above) and 3 (background below) whole; rows 1-2 only at columns 0 and 9
    expect = np.zeros((10, 10), np.uint8)
    expect[[0, 3], :] = 1
    expect[1:3, [0, 9]] = 1
    assert np.array_equal(b, expect)
    full = np.ones((5, 5), np.uint8)
    assert mask_to_boundary(full, 0.1).sum() == 16  # the whole image: its outer ring


def test_one_pixel_mask_is_its_own_band():
    for ratio in (0.001, 0.02, 0.5):
        m = np.zeros((7, 9), np.uint8)
        m[3, 4] = 1
        assert np.array_equal(mask_to_boundary(m, ratio), m)
    assert dilation_for(7, 9, 0.001) == 1  # 0.011 → 0 → at least 1


def test_dilation_rounds_half_to_even_like_the_reference():
    # 6×8: diagonal exactly 10; 0.25 × 10 = 2.5 → 2 (Python's round), 0.75 × 10 = 7.5 → 8
    assert dilation_for(6, 8, 0.25) == 2
    assert dilation_for(6, 8, 0.75) == 8
    full = np.ones((6, 8), np.uint8)
    # with dilation 2, rows 2-3 × columns 2-5 (distance 3 to the frame) are interior: 48 - 8
    assert mask_to_boundary(full, 0.25).sum() == 40
    assert np.array_equal(mask_to_boundary(full, 0.25), reference_band(full, 0.25))


def test_bands_equal_the_reference_transcription_and_its_rle():
    rng = np.random.default_rng(7)
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        kind = rng.integers(3)
        if kind == 0:
            m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        elif kind == 1:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m = box(h, w, y0, y0 + int(rng.integers(1, h + 1)), x0, x0 + int(rng.integers(1, w + 1)))
        else:
            m = np.zeros((h, w), np.uint8)
        ratio = float(rng.choice([0.02, 0.05, 0.1, 0.25, 0.5]))
        ref = reference_band(m, ratio)
        assert np.array_equal(mask_to_boundary(m, ratio), ref), (h, w, ratio)
        rle = mask_utils.encode(np.asfortranarray(m))
        got = band_counts(rle["counts"], h, w, dilation_for(h, w, ratio))
        assert got == mask_utils.encode(np.asfortranarray(ref))["counts"].decode("ascii")


def test_run_length_bands_equal_the_dense_references_on_random_masks():
    # the C kernel (via band_counts) against both dense forms, with the band width given in pixels:
    # 1-pixel-wide and 1-pixel-high images, masks on every border, d from 1 to past the mask's size
    rng = np.random.default_rng(12)
    shapes = [(1, 1), (1, 17), (17, 1), (2, 2), (3, 40), (40, 3)]
    for t in range(600):
        h, w = shapes[t] if t < len(shapes) else (int(v) for v in rng.integers(1, 36, 2))
        m = random_mask(rng, h, w)
        d = int(rng.choice([1, 1, 2, 3, int(rng.integers(1, 12)), max(h, w), max(h, w) + 5]))
        ref = reference_band_px(m, d)
        assert np.array_equal(ref, chessboard_band(m, d)), (h, w, d)  # the two references agree
        assert band_counts(encode(m), h, w, d) == encode(ref), (t, h, w, d)


def test_many_masks_in_one_call_equal_one_at_a_time():
    # one call of the kernel over masks of different images, sizes and widths (its scratch memory is
    # reused from mask to mask) gives each mask's dense-reference band
    rng = np.random.default_rng(5)
    masks, hs, ws, ds, rs, re, rk = [], [], [], [], [], [], []
    for k in range(300):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        m = random_mask(rng, h, w)
        d = int(rng.integers(1, 10))
        idx = np.flatnonzero(np.diff(np.concatenate(([0], m.ravel(order="F").astype(np.int8), [0]))))
        rs.append(idx[0::2])
        re.append(idx[1::2])
        rk.append(np.full(idx.size // 2, k))
        masks.append(m)
        hs.append(h)
        ws.append(w)
        ds.append(d)
    cat = [np.concatenate(v).astype(np.int64) for v in (rs, re, rk)]
    buf, lens = _cband.bands(*cat, *(np.array(v, np.int64) for v in (hs, ws, ds)))
    off = np.concatenate(([0], np.cumsum(np.frombuffer(lens, np.int64))))
    assert off[-1] == len(buf)
    for k, m in enumerate(masks):
        assert buf[off[k] : off[k + 1]].decode("ascii") == encode(reference_band_px(m, ds[k])), k


def test_touching_runs_are_one_run():
    # a string with an empty gap between two runs (not pycocotools' output, but valid) bands like one
    # run: the full 5×5 image, split inside its middle column, has the outer ring as its band
    one, a = np.ones(1, np.int64), lambda *v: np.array(v, np.int64)  # noqa: E731
    joined, _ = _cband.bands(a(0), a(25), a(0), one * 5, one * 5, one)
    split, _ = _cband.bands(a(0, 12), a(12, 25), a(0, 0), one * 5, one * 5, one)
    assert joined == split == encode(reference_band_px(np.ones((5, 5)), 1)).encode()
    assert mask_utils.decode({"size": [5, 5], "counts": split}).sum() == 16


def test_bad_kernel_input_is_refused():
    one, z, a = np.ones(1, np.int64), np.zeros(1, np.int64), lambda *v: np.array(v, np.int64)  # noqa: E731
    with pytest.raises(ValueError, match="ascending"):
        _cband.bands(a(5, 1), a(7, 3), a(0, 0), one * 4, one * 4, one)
    with pytest.raises(ValueError, match="d < 1"):
        _cband.bands(z, one, z, one * 4, one * 4, z)
    with pytest.raises(ValueError, match="non-decreasing"):
        _cband.bands(z, one, one, one * 4, one * 4, one)
    with pytest.raises(TypeError, match="int64"):
        _cband.bands(z.astype(np.int32), one, z, one * 4, one * 4, one)


@pytest.mark.parametrize("workers", [1, 2])
def test_boundary_bands_of_a_dataset_equal_the_dense_reference(monkeypatch, workers):
    from entitykit.evaluation import ape

    monkeypatch.setattr(boundary, "CHUNK_BYTES", 300)  # many chunks, shared by the threads
    gt, res = synth_coco(5, seed=9, n_gt=10, n_pred=20, size=(90, 120))
    ims = {im["id"]: im for im in gt["images"]}
    inp = ape.prepare(gt["images"], gt["annotations"], ape.pred_columns(res, ape.IndexLabels("p"), None, ims))
    done = []
    gb, gs, ge, db, ds, de = boundary.boundary_bands(inp, 0.03, advance=done.append, workers=workers)
    assert sum(done) == 2 * len(inp.img_ids)  # every image side has masks here
    for buf, s, e, img, bb, bs, be in ((inp.g_buf, inp.g_s, inp.g_e, inp.g_img, gb, gs, ge),
                                       (inp.d_buf, inp.d_s, inp.d_e, inp.d_img, db, ds, de)):
        assert len(bs) == len(s)
        for k in range(len(s)):
            h, w = int(inp.heights[img[k]]), int(inp.widths[img[k]])
            m = mask_utils.decode({"size": [h, w], "counts": buf[s[k] : e[k]].tobytes()})
            assert bb[bs[k] : be[k]].tobytes().decode("ascii") == encode(reference_band(m, 0.03)), k


# ---------------------------------------------------------------------------------------------
# Boundary APe against vernier strict (boundary-iou-api's numbers)


def vernier_boundary(gt: dict, results: list, ratio: float = 0.02, use_cats: int = 1):
    vernier = pytest.importorskip("vernier")
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        for a in c.dataset["annotations"]:  # vernier wants a GT bbox; COCOeval(segm/boundary) never reads it
            seg = dict(a["segmentation"], counts=a["segmentation"]["counts"].encode("ascii"))
            a.setdefault("bbox", [float(v) for v in mask_utils.toBbox(seg)])
        c.createIndex()
        d = c.loadRes(copy.deepcopy(results))
        for a in d.dataset["annotations"]:  # loadRes leaves numpy values; vernier reads JSON types
            a["bbox"] = [float(v) for v in a["bbox"]]
            a["area"] = float(a["area"])
        e = vernier.COCOeval(c, d, "boundary", dilation_ratio=ratio, parity_mode="strict")
        e.params.useCats = use_cats
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def assert_same_boundary(gt, results, ratio=0.02, **kw):
    pytest.importorskip("vernier")
    r = evaluate(copy.deepcopy(gt), copy.deepcopy(results), iou="boundary", dilation_ratio=ratio, **kw)
    assert r.iou == "boundary" and r.dilation_ratio == ratio and r.options["iou"] == "boundary"
    e = vernier_boundary(gt, results, ratio)
    for k in ("precision", "recall", "scores"):
        a, b = getattr(r, k), np.asarray(e.eval[k])
        assert a.shape == b.shape, k
        assert np.abs(a - b).max() <= 1e-12, (k, np.abs(a - b).max())
    assert np.abs(r.stats - np.asarray(e.stats)).max() <= 1e-12, (r.stats, e.stats)
    return r, e


def test_hand_cases_match_vernier_strict():
    h, w = 60, 80  # diagonal 100: dilation 2 at the default ratio
    a, b = box(h, w, 0, 30, 0, 80), box(h, w, 30, 60, 0, 80)
    shifted = box(h, w, 0, 33, 0, 80)  # mask IoU 0.909, boundary IoU much lower
    small = box(h, w, 40, 44, 10, 14)
    gt, res = build([[a, b]], [(0, shifted, 0.9), (0, small, 0.8)])
    r, _ = assert_same_boundary(gt, res)
    assert r.stats[0] < evaluate(copy.deepcopy(gt), copy.deepcopy(res)).stats[0]  # boundary is stricter
    # identical masks: 1.0 whatever the band
    gt, res = build([[a, b]], [(0, a, 0.9), (0, b, 0.8)])
    r, _ = assert_same_boundary(gt, res, ratio=0.1)
    assert r.stats[0] == 1.0
    # the half-to-even dilation (6×8, ratio 0.25 → 2 px), and masks along the image border
    left, right = box(6, 8, 0, 6, 0, 3), box(6, 8, 0, 6, 3, 8)
    gt, res = build([[left, right]], [(0, box(6, 8, 0, 6, 0, 4), 0.7), (0, box(6, 8, 0, 6, 4, 8), 0.6)])
    assert_same_boundary(gt, res, ratio=0.25)


def test_crowd_gt_uses_the_mask_crowd_iou():
    h, w = 40, 40
    crowd, g = box(h, w, 0, 40, 0, 20), box(h, w, 0, 40, 20, 40)
    p1, p2, p3 = box(h, w, 0, 20, 0, 20), box(h, w, 20, 40, 0, 20), box(h, w, 0, 40, 21, 40)
    gt, res = build([[crowd, g]], [(0, p1, 0.9), (0, p2, 0.8), (0, p3, 0.3)], crowd=[[1, 0]])
    assert_same_boundary(gt, res)


def test_overlapping_masks_take_the_crop_path_and_match_vernier():
    # overlapping predictions (--overlap allow) and overlapping ground truth: bands mask by mask
    h, w = 50, 70
    g1, g2 = box(h, w, 0, 30, 0, 40), box(h, w, 20, 50, 30, 70)  # the GT overlap too
    p1, p2, p3 = box(h, w, 0, 31, 0, 42), box(h, w, 18, 50, 28, 70), box(h, w, 10, 40, 10, 60)
    gt, res = build([[g1, g2]], [(0, p1, 0.9), (0, p2, 0.8), (0, p3, 0.7)])
    r, _ = assert_same_boundary(gt, res, overlap="allow")
    assert r.overlap["images_with_overlap"] == 1


def test_resolved_overlaps_are_banded_after_resolution():
    h, w = 40, 60
    a, b = box(h, w, 0, 40, 0, 30), box(h, w, 0, 40, 30, 60)
    hi, lo = box(h, w, 0, 40, 0, 34), box(h, w, 0, 40, 26, 60)  # 8 contested columns: hi (0.9) keeps them
    gt, res = build([[a, b]], [(0, hi, 0.9), (0, lo, 0.6)])
    _, resolved = build([[a, b]], [(0, hi, 0.9), (0, lo & (1 - hi), 0.6)])
    r = evaluate(copy.deepcopy(gt), copy.deepcopy(res), overlap="resolve", iou="boundary")
    e = vernier_boundary(gt, resolved)
    assert r.overlap["predictions_changed"] == 1
    assert np.array_equal(r.precision, np.asarray(e.eval["precision"])) and np.array_equal(r.stats, e.stats)


def test_class_agnostic_is_one_category_or_use_cats_off():
    pytest.importorskip("vernier")
    gt, res = synth_coco(6, seed=5, n_gt=8, n_pred=15)
    one = vernier_boundary(gt, res)
    gt2 = copy.deepcopy(gt)  # several categories, scored without them (useCats=0)
    gt2["categories"] = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    for k, ann in enumerate(gt2["annotations"]):
        ann["category_id"] = 1 + k % 2
    res2 = [dict(x, category_id=1 + k % 2) for k, x in enumerate(res)]
    off = vernier_boundary(gt2, res2, use_cats=0)
    assert np.array_equal(np.asarray(one.stats), np.asarray(off.stats))
    r = evaluate(gt, res, iou="boundary")  # an entity dataset has one category (several are refused)
    assert np.abs(r.stats - np.asarray(off.stats)).max() <= 1e-12


def test_300_random_images_match_vernier_strict():
    gt, res = synth_coco(300, seed=11, n_gt=12, n_pred=30, size=(240, 320))  # small images: the test stays quick
    r, _ = assert_same_boundary(gt, res)
    assert 0 < r.stats[0] < 1


def test_mask_and_boundary_at_once_share_the_inputs():
    gt, res = synth_coco(8, seed=3, n_gt=8, n_pred=15)
    rm, rb = evaluate(copy.deepcopy(gt), copy.deepcopy(res), iou=("mask", "boundary"))
    assert (rm.iou, rb.iou) == ("mask", "boundary")
    assert np.array_equal(rm.stats, evaluate(copy.deepcopy(gt), copy.deepcopy(res)).stats)
    assert np.array_equal(rb.stats, evaluate(copy.deepcopy(gt), copy.deepcopy(res), iou="boundary").stats)
    assert rm.pq is not None and rb.pq is None  # PQ is a mask-IoU number
    assert "bands" in rb.timings


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "x"])
def test_bad_dilation_ratio_is_refused(bad):
    gt, res = build([[box(8, 8, 0, 4, 0, 8)]], [(0, box(8, 8, 0, 4, 0, 8), 0.5)])
    with pytest.raises(EntityKitError, match="dilation"):
        evaluate(gt, res, iou="boundary", dilation_ratio=bad)


@pytest.mark.parametrize("bad", ["bbox", ("mask", "mask"), (), None])
def test_bad_iou_is_refused(bad):
    gt, res = build([[box(8, 8, 0, 4, 0, 8)]], [(0, box(8, 8, 0, 4, 0, 8), 0.5)])
    with pytest.raises(EntityKitError, match="iou"):
        evaluate(gt, res, iou=bad)


def test_a_band_as_wide_as_every_mask_is_warned(tmp_path):
    """2-px stripes on a 20×30 image (a 1-px band: the whole stripe) make Boundary APe equal APe:
    said in a warning; thicker masks (or another ratio) have a real boundary and no warning."""
    h, w = 20, 30
    stripes = [box(h, w, 2 * k, 2 * k + 2, 0, w) for k in range(4)]
    gt, res = build([stripes], [(0, stripes[k], 0.9 - 0.1 * k) for k in range(3)])
    assert boundary.dilation_for(h, w) == 1
    b, m = evaluate(gt, res, iou=("boundary", "mask"))
    assert np.array_equal(b.stats, m.stats)
    assert any("every boundary band is its whole mask" in x for x in b.warnings)
    assert not any("every boundary band" in x for x in m.warnings)
    thick = [box(h, w, 0, 8, 0, w), box(h, w, 8, 20, 0, w)]
    gt, res = build([thick], [(0, thick[0], 0.9), (0, box(h, w, 8, 19, 0, w), 0.8)])
    assert not any("every boundary band" in x for x in evaluate(gt, res, iou="boundary").warnings)
    gt, res = build([stripes + [thick[1]]], [(0, stripes[0], 0.9)])  # one GT mask has a middle
    assert not any("every boundary band" in x for x in evaluate(gt, res, iou="boundary").warnings)


def test_area_rule_mask_without_boxes_is_said_to_change_nothing():
    m = box(16, 16, 0, 8, 0, 16)
    gt, res = build([[m]], [(0, m, 0.9)])
    assert any("--area-rule mask changes nothing" in x for x in evaluate(gt, res, area_rule="mask").warnings)
    assert not any("--area-rule" in x for x in evaluate(gt, res).warnings)
    boxed = [dict(r, bbox=[0.0, 0.0, 16.0, 8.0]) for r in res]
    assert not any("--area-rule" in x for x in evaluate(gt, boxed, area_rule="mask").warnings)
