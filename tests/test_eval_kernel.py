"""The scorer's compiled kernel (entitykit/evaluation/_ckernel.c) at its boundary and in its two
optional rules, each against an independent reference:

- the RLE codec (``decode_counts`` / ``masks.rle_counts``) against pycocotools' own encoder;
- malformed counts and wrong buffers: a clean ValueError / TypeError / named EntityKitError, never
  a crash;
- boundary mode (``bands``): min(mask IoU, band IoU) for non-crowd GT, the mask crowd IoU for crowd
  GT, against pycocotools' COCOeval with boundary-iou-api's ``computeBoundaryIoU`` rule plugged in;
- given detection areas (``d_area_given``): against pycocotools' ``loadRes`` on results carrying
  ``bbox`` (the box's w*h decides an unmatched detection's S/M/L range);
- intersections and overlap flags of one image (``image_intersections``): against pycocotools'
  ``merge(..., intersect=True)`` / ``iou`` on random partitions and overlapping masks.

The kernel is driven through ``ape.evaluate_all`` / ``ape.accumulate`` / ``ape.summarize`` on
EvalInputs built here from COCO dicts (independent of the readers).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from entitykit.errors import DatasetError, PredictionError
from entitykit.evaluation import _kernel as K
from entitykit.evaluation import ape
from entitykit.evaluation.synthetic import synth_coco
from entitykit.masks import rle_counts, runs_problem
from _eval_helpers import pycoco

# ---------------------------------------------------------------------------------------------
# helpers


def _offsets(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = np.fromiter(map(len, strings), np.int64, len(strings))
    off = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
    return np.frombuffer(b"".join(strings), np.uint8).copy(), off[:-1].copy(), off[1:].copy()


def _counts(seg: dict) -> bytes:
    c = seg["counts"]
    return c.encode("ascii") if isinstance(c, str) else c


def _inputs(gt: dict, results: list) -> tuple[ape.EvalInputs, np.ndarray, np.ndarray]:
    """EvalInputs by hand (images sorted by id, GT in file order per image, predictions grouped by
    image in input order), plus the GT and prediction input indices in kernel order."""
    images = sorted(gt["images"], key=lambda im: im["id"])
    idx = {im["id"]: k for k, im in enumerate(images)}
    anns = gt["annotations"]
    g_img = np.array([idx[a["image_id"]] for a in anns], np.int64)
    g_order = np.argsort(g_img, kind="stable")
    d_img = np.array([idx[r["image_id"]] for r in results], np.int64)
    d_order = np.argsort(d_img, kind="stable")
    g_buf, g_s, g_e = _offsets([_counts(anns[k]["segmentation"]) for k in g_order])
    d_buf, d_s, d_e = _offsets([_counts(results[k]["segmentation"]) for k in d_order])
    inp = ape.EvalInputs(
        img_ids=[im["id"] for im in images],
        heights=np.array([im["height"] for im in images], np.int64),
        widths=np.array([im["width"] for im in images], np.int64),
        sources=[None] * len(images),
        g_buf=g_buf, g_s=g_s, g_e=g_e, g_img=g_img[g_order],
        g_area=np.array([anns[k]["area"] for k in g_order], np.float64),
        g_crowd=np.array([anns[k].get("iscrowd", 0) for k in g_order], np.uint8),
        g_ids=[anns[k]["id"] for k in g_order],
        d_buf=d_buf, d_s=d_s, d_e=d_e, d_img=d_img[d_order],
        d_score=np.array([results[k]["score"] for k in d_order], np.float64),
        labels=ape.IndexLabels("result"), d_pos=d_order,
    )
    return inp, g_order, d_order


def _entitykit(inp, **kw):
    per = ape.evaluate_all(inp, **kw)
    acc = ape.accumulate(inp, per)
    return acc, ape.summarize(acc)


def _assert_same(acc, stats, e: COCOeval) -> None:
    for k in ("precision", "recall", "scores"):
        assert np.array_equal(getattr(acc, k), e.eval[k]), k
    assert np.array_equal(stats, np.array(e.stats)), (stats, e.stats)


def _reference(gt: dict, results: list, cls=COCOeval) -> COCOeval:
    return pycoco(gt, results, agnostic=True, cls=cls)


def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def _decode(seg: dict) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": _counts(seg)})


def _band(mask: np.ndarray, d: int) -> np.ndarray:
    """Hand-made band: the mask's pixels within d (chessboard) of a pixel outside it or the image
    border. A subset of the mask, so bands of disjoint masks are disjoint."""
    mask = mask.astype(bool)
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if y0 >= d and x0 >= d and y1 + d <= mask.shape[0] and x1 + d <= mask.shape[1]:
        m = mask[y0 - d:y1 + d, x0 - d:x1 + d]  # real neighbours where the image has them
    else:
        m = np.pad(mask, d, constant_values=False)[y0:y1 + 2 * d, x0:x1 + 2 * d]
    h, w = y1 - y0, x1 - x0
    rows = np.ones((h, w + 2 * d), bool)
    for dy in range(2 * d + 1):  # separable erosion by a (2d+1) square
        rows &= m[dy:dy + h]
    inner = np.ones((h, w), bool)
    for dx in range(2 * d + 1):
        inner &= rows[:, dx:dx + w]
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1] & ~inner
    return out


class BoundaryReference(COCOeval):
    """pycocotools' COCOeval with boundary-iou-api's ``COCOeval.computeBoundaryIoU`` (its combination
    rule restated: maskUtils.iou on masks and on bands, min of the two for non-crowd GT)."""

    def computeIoU(self, imgId, catId):  # noqa: N802 (pycocotools' name)
        p = self.params
        gt = [g for c in p.catIds for g in self._gts[imgId, c]]
        dt = [d for c in p.catIds for d in self._dts[imgId, c]]
        if len(gt) == 0 and len(dt) == 0:
            return []
        inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in inds][: p.maxDets[-1]]
        iscrowd = [int(o["iscrowd"]) for o in gt]
        mask_ious = np.array(mask_utils.iou([d["segmentation"] for d in dt], [g["segmentation"] for g in gt],
                                            iscrowd))
        boundary_ious = np.array(mask_utils.iou([d["boundary"] for d in dt], [g["boundary"] for g in gt], iscrowd))
        iscrowd = np.array(iscrowd)
        ious = mask_ious
        if len(gt) and len(dt):
            ious[:, iscrowd == 0] = np.minimum(mask_ious[:, iscrowd == 0], boundary_ious[:, iscrowd == 0])
        else:
            ious = np.minimum(mask_ious, boundary_ious)
        return ious


def _with_bands(gt: dict, results: list, d: int) -> None:
    for a in gt["annotations"] + results:
        a["boundary"] = _rle(_band(_decode(a["segmentation"]), d))


def _band_buffers(gt, results, g_order, d_order) -> tuple:
    g = _offsets([_counts(gt["annotations"][k]["boundary"]) for k in g_order])
    d = _offsets([_counts(results[k]["boundary"]) for k in d_order])
    return (*g, *d)


# ---------------------------------------------------------------------------------------------
# the RLE codec


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_decode_counts_round_trip_against_pycocotools(h, w, seed, density):
    m = (np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    ref = mask_utils.encode(np.asfortranarray(m))
    runs = K.decode_counts(ref["counts"])
    assert runs.dtype == np.int64 and runs.flags.writeable
    # pycocotools re-encodes the runs to the very same string, and they rebuild the pixels
    again = mask_utils.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
    assert again["counts"] == ref["counts"]
    flat = np.repeat(np.arange(runs.size) % 2, runs).astype(np.uint8)
    assert np.array_equal(flat, mask_utils.decode(ref).ravel(order="F"))
    assert np.array_equal(rle_counts(ref["counts"].decode("ascii")), runs)  # masks' entry point, str counts


def test_decode_runs_of_many_strings_against_pycocotools():
    rng = np.random.default_rng(4)
    masks = [(rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < rng.random()).astype(np.uint8)
             for _ in range(200)]
    strings = [mask_utils.encode(np.asfortranarray(m))["counts"] for m in masks]
    buf, s, e = _offsets(strings)
    rs, re, which = K.decode_runs(buf, s, e)
    for k, m in enumerate(masks):
        flat = np.zeros(m.size, np.uint8)
        for a, b in zip(rs[which == k], re[which == k]):
            assert b > a
            flat[a:b] = 1
        assert np.array_equal(flat, m.ravel(order="F")), k
    with pytest.raises(ValueError, match="string 1"):
        K.decode_runs(*_offsets([strings[0], b"1O"]))  # a negative run
    with pytest.raises(ValueError, match="outside"):
        K.decode_runs(buf, s, e + 1)


def test_decode_counts_large_runs_and_negative_values():
    m = np.zeros((3000, 2000), np.uint8)
    m[10:2990, 1:1999] = 1
    ref = mask_utils.encode(np.asfortranarray(m))
    runs = K.decode_counts(ref["counts"])
    assert runs[:2].tolist() == [3000 + 10, 2980] and runs.sum() == m.size
    # a corrupt but well-formed string decodes to what it says; runs_problem judges it
    assert K.decode_counts(b"1O").tolist() == [1, -1]
    assert runs_problem("1O", 1, 1) == "RLE counts have a negative run: corrupt"
    assert K.decode_counts(b"").size == 0


@pytest.mark.parametrize("bad", [b"\x00", b"0p", b"1/", b"P", b"00P", b"P" * 13 + b"1", "é".encode()])
def test_decode_counts_refuses_malformed_strings(bad):
    with pytest.raises(ValueError, match="malformed RLE counts"):
        K.decode_counts(bad)


def test_decode_counts_wrong_type():
    with pytest.raises(TypeError):
        K.decode_counts("01")  # str: masks.rle_counts encodes it first
    with pytest.raises(ValueError):
        rle_counts("é1")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=40))
def test_any_bytes_decode_or_raise_value_error(raw):
    try:
        runs = K.decode_counts(raw)
    except ValueError:
        return
    assert runs.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# malformed input at the kernel boundary


@pytest.fixture(scope="module")
def small():
    gt, results = synth_coco(4, seed=3, n_gt=6, n_pred=10)
    return gt, results


@functools.lru_cache(1)
def _tiny():
    return synth_coco(2, seed=1, n_gt=4, n_pred=6)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.binary(min_size=0, max_size=30), st.integers(0, 1), st.integers(0, 10**6))
def test_corrupt_counts_give_the_named_error(raw, side, pick):
    inp, _, _ = _inputs(*_tiny())
    strings = [inp.g_buf[s:e].tobytes() for s, e in zip(inp.g_s, inp.g_e)] if side == 0 else \
        [inp.d_buf[s:e].tobytes() for s, e in zip(inp.d_s, inp.d_e)]
    k = pick % len(strings)
    strings[k] = raw
    buf, s, e = _offsets(strings)
    if side == 0:
        inp.g_buf, inp.g_s, inp.g_e = buf, s, e
    else:
        inp.d_buf, inp.d_s, inp.d_e = buf, s, e
    i = int((inp.g_img if side == 0 else inp.d_img)[k])
    why = runs_problem(raw, int(inp.heights[i]), int(inp.widths[i]))
    try:
        ape.evaluate_all(inp)
    except (DatasetError, PredictionError) as err:
        assert isinstance(err, DatasetError if side == 0 else PredictionError)
        assert why is None or why in str(err) or "malformed RLE counts" in str(err)
        return
    # accepted only if the string is valid runs of the image (runs_problem also refuses numbers padded
    # past 7 characters, which pycocotools' decoder and the kernel read)
    assert why is None or "longer than any image allows" in why


def _encode(counts: list[int]) -> bytes:
    """pycocotools' rleToString, restated (it also writes negative numbers, which its API refuses)."""
    out = bytearray()
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append((c | 0x20 if more else c) + 48)
    return bytes(out)


@pytest.mark.parametrize("runs, problem", [
    (lambda n: [n + 5, -5], "negative run"),  # covers the image only thanks to the negative run
    (lambda n: [n - 7, 3, 2], "do not cover"),
    (lambda n: [n - 2**33, 2**33], "negative run"),  # a 34-bit run: the other count goes negative
])
@pytest.mark.parametrize("side", [0, 1])
def test_corrupt_runs_are_refused_with_runs_problem_words(runs, problem, side):
    inp, _, _ = _inputs(*_tiny())
    n = int(inp.heights[0] * inp.widths[0])
    bad = _encode(runs(n))
    assert K.decode_counts(bad).tolist() == runs(n)
    if side == 0:
        strings = [bad] + [inp.g_buf[s:e].tobytes() for s, e in zip(inp.g_s[1:], inp.g_e[1:])]
        inp.g_buf, inp.g_s, inp.g_e = _offsets(strings)
    else:
        strings = [bad] + [inp.d_buf[s:e].tobytes() for s, e in zip(inp.d_s[1:], inp.d_e[1:])]
        inp.d_buf, inp.d_s, inp.d_e = _offsets(strings)
    with pytest.raises(DatasetError if side == 0 else PredictionError, match=problem):
        ape.evaluate_all(inp)


def _args(inp):
    """The arguments ape.evaluate_all hands the kernel, for direct calls."""
    n_img, ng, nd = len(inp.img_ids), len(inp.g_s), len(inp.d_s)
    g_start = np.concatenate(([0], np.cumsum(np.bincount(inp.g_img, minlength=n_img)))).astype(np.int64)
    d_start = np.concatenate(([0], np.cumsum(np.bincount(inp.d_img, minlength=n_img)))).astype(np.int64)
    A, T = len(ape.AREA_RNG), len(ape.IOU_THRS)
    return [inp.g_buf, inp.g_s, inp.g_e, g_start, inp.d_buf, inp.d_s, inp.d_e, d_start, inp.heights, inp.widths,
            inp.g_area, inp.g_crowd, inp.d_score, ape.AREA_RNG, ape.IOU_THRS, 100, False,
            np.zeros(ng, np.int64), np.zeros(nd, np.int64), np.zeros(nd), None, np.zeros(ng, np.int8),
            np.zeros(nd, np.int8), np.zeros(n_img, np.int8), np.zeros(nd, np.int64), np.zeros(nd, np.int64),
            np.zeros((nd, A, T), np.uint8), np.zeros((nd, A, T), np.uint8), np.zeros(n_img, np.int64),
            np.zeros(n_img, np.int64), np.zeros(n_img, np.int64), np.zeros(n_img), np.zeros(ng), None]


def test_kernel_checks_its_buffers(small):
    inp, _, _ = _inputs(*small)
    n_img = len(inp.img_ids)
    K.evaluate_images(0, n_img, *_args(inp))  # the well-formed call runs

    def call(pos, value, exc, match, lo=0, hi=n_img):
        a = _args(inp)
        a[pos] = value
        with pytest.raises(exc, match=match):
            K.evaluate_images(lo, hi, *a)

    call(1, inp.g_s.astype(np.int32), TypeError, "g_s")  # item type
    call(9, np.asfortranarray(np.stack([inp.widths, inp.widths]))[0], TypeError, "img_w")  # strided
    call(0, "abc", TypeError, "g_buf")  # no buffer
    call(12, inp.d_score[:-1], ValueError, "d_score")  # length
    call(17, np.zeros(len(inp.g_s), np.int64)[:-1], ValueError, "g_parea")
    g_e = inp.g_e.copy()
    g_e[-1] = len(inp.g_buf) + 5
    call(2, g_e, ValueError, "outside")  # a string past the end of its buffer
    starts = _args(inp)[3].copy()
    starts[1] = 10**9
    call(3, starts, ValueError, "g_img")
    call(14, ape.IOU_THRS - 0.2, ValueError, "iou_thrs")
    call(20, np.zeros(3), ValueError, "d_area_given")
    call(33, (inp.g_buf,), TypeError, "bands")
    a = _args(inp)
    with pytest.raises(ValueError, match="image range"):
        K.evaluate_images(0, n_img + 1, *a)
    ro = np.zeros(len(inp.g_s), np.int64)
    ro.flags.writeable = False
    call(17, ro, TypeError, "writable")


def test_malformed_band_is_a_bug_not_a_crash(small):
    gt, results = copy.deepcopy(small[0]), copy.deepcopy(small[1])
    _with_bands(gt, results, 2)
    inp, go, do = _inputs(gt, results)
    bands = list(_band_buffers(gt, results, go, do))
    bands[0] = bands[0].copy()
    bands[0][0] = 0x7F
    with pytest.raises(RuntimeError, match="boundary band"):
        ape.evaluate_all(inp, bands=tuple(bands))


# ---------------------------------------------------------------------------------------------
# boundary mode: min(mask IoU, band IoU)


@pytest.mark.parametrize("dilation", [1, 3])
def test_band_min_rule_matches_boundary_iou_api(dilation):
    gt, results = synth_coco(12, seed=7, n_gt=10, n_pred=16, crowd_frac=0.08)
    assert any(a["iscrowd"] for a in gt["annotations"])  # crowd GT keep the mask crowd IoU
    _with_bands(gt, results, dilation)
    inp, go, do = _inputs(gt, results)
    acc, stats = _entitykit(inp, bands=_band_buffers(gt, results, go, do))
    _assert_same(acc, stats, _reference(gt, results, BoundaryReference))
    mask_acc, mask_stats = _entitykit(inp)
    assert not np.array_equal(stats, mask_stats)  # the case does exercise the band rule
    _assert_same(mask_acc, mask_stats, _reference(gt, results))


def test_band_min_rule_with_overlapping_masks():
    """--overlap allow: predictions (and their bands) overlap one another: walked over GT that is a
    partition, measured pairwise where the GT overlaps too."""
    rng = np.random.default_rng(11)
    images, anns, results = [], [], []
    for i in range(6):
        h, w = 30, 40
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": h, "width": w})
        for _ in range(5):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            m = np.zeros((h, w), np.uint8)
            m[y:y + rng.integers(4, 16), x:x + rng.integers(4, 20)] = 1
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "segmentation": _rle(m),
                         "area": float(m.sum()), "iscrowd": int(rng.random() < 0.15)})
            for _ in range(2):
                dy, dx = rng.integers(-2, 3, 2)
                results.append({"image_id": i + 1, "category_id": 1, "score": float(rng.random()),
                                "segmentation": _rle(np.roll(m, (dy, dx), (0, 1)))})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "entity"}]}
    _with_bands(gt, results, 2)
    inp, go, do = _inputs(gt, results)
    per = ape.evaluate_all(inp, allow_overlap=True, bands=_band_buffers(gt, results, go, do))
    assert (per.img_flags & K.DT_OVERLAP).all() and (per.img_flags & K.GT_OVERLAP).any()
    acc = ape.accumulate(inp, per)
    _assert_same(acc, ape.summarize(acc), _reference(gt, results, BoundaryReference))


# ---------------------------------------------------------------------------------------------
# given detection areas: pycocotools' loadRes takes them from bbox


def test_given_areas_follow_loadres_bbox_rule():
    gt, results = synth_coco(30, seed=5, n_gt=12, n_pred=20)
    for r in results:  # detectron2-style: the mask's box
        r["bbox"] = mask_utils.toBbox({"size": r["segmentation"]["size"],
                                       "counts": _counts(r["segmentation"])}).tolist()
    results[0]["bbox"] = [0.0, 0.0, 2.5, 1.5]  # a box smaller than its mask: area 3.75
    e = _reference(gt, results)  # loadRes: area = bbox w * h
    inp, _, do = _inputs(gt, results)
    inp.d_area_given = np.array([results[k]["bbox"][2] * results[k]["bbox"][3] for k in do], np.float64)
    acc, stats = _entitykit(inp)
    _assert_same(acc, stats, e)
    per = ape.evaluate_all(inp)
    assert np.array_equal(per.d_area, inp.d_area_given)
    # NaN = the mask's area; all NaN is the mask-area rule, which differs on S/M/L here
    inp.d_area_given = np.full(len(do), np.nan)
    nan_acc, nan_stats = _entitykit(inp)
    inp.d_area_given = None
    mask_acc, mask_stats = _entitykit(inp)
    assert np.array_equal(nan_stats, mask_stats) and np.array_equal(nan_acc.precision, mask_acc.precision)
    assert np.array_equal(mask_stats[:3], stats[:3]) and not np.array_equal(mask_stats[3:6], stats[3:6])
    no_box = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    _assert_same(mask_acc, mask_stats, _reference(gt, no_box))


def test_given_area_mixes_with_mask_area():
    gt, results = synth_coco(10, seed=9, n_gt=10, n_pred=14)
    inp, _, do = _inputs(gt, results)
    per = ape.evaluate_all(inp)
    rng = np.random.default_rng(0)
    given_area = np.where(rng.random(len(do)) < 0.5, np.nan, rng.uniform(0, 100**2, len(do)))
    inp.d_area_given = given_area
    per2 = ape.evaluate_all(inp)
    assert np.array_equal(per2.d_area, np.where(np.isnan(given_area), per.d_parea, given_area))
    assert np.array_equal(per2.d_parea, per.d_parea) and np.array_equal(per2.match, per.match)


# ---------------------------------------------------------------------------------------------
# intersections: the partition walk, the pairwise path and the overlap flags


def _partition(rng, h: int, w: int, k: int, void: float) -> list[np.ndarray]:
    """k disjoint masks: a coarse random label grid (0 = void, about ``void`` of the cells), cut
    finer by random pixel relabelling so that masks break into many short runs; empty masks kept."""
    cell = int(rng.integers(1, 6))
    coarse = rng.integers(1, k + 1, (h // cell + 1, w // cell + 1))
    coarse[rng.random(coarse.shape) < void] = 0
    lab = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:h, :w]
    flip = rng.random((h, w)) < rng.choice([0.0, 0.05, 0.3])
    lab[flip] = rng.integers(0, k + 1, int(flip.sum()))
    return [(lab == j).astype(np.uint8) for j in range(1, k + 1)]


def _blobs(rng, h: int, w: int, n: int) -> list[np.ndarray]:
    """n random rectangles (overlapping one another where they fall so), some empty."""
    out = []
    for _ in range(n):
        m = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y:y + rng.integers(0, h + 1), x:x + rng.integers(0, w + 1)] = 1
        out.append(m)
    return out


def _strings(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _offsets([mask_utils.encode(np.asfortranarray(m))["counts"] for m in masks])


@settings(max_examples=120, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 40), w=st.integers(1, 40),
       gt_kind=st.sampled_from(["partition", "overlapping"]),
       dt_kind=st.sampled_from(["partition", "overlapping", "none"]))
def test_intersections_against_pycocotools(seed, h, w, gt_kind, dt_kind):
    """Every (GT, prediction) intersection of one image against pycocotools'
    ``area(merge([g, d], intersect=True))``, and the overlap flags against a pixel count of the
    decoded masks: partition GT (the walk, with predictions that do or do not overlap one another)
    and overlapping GT (the pairwise path)."""
    rng = np.random.default_rng(seed)
    gts = _partition(rng, h, w, int(rng.integers(1, 9)), float(rng.choice([0.0, 0.3])))
    if gt_kind == "overlapping":
        gts += _blobs(rng, h, w, int(rng.integers(1, 4)))
    dts = {"partition": lambda: _partition(rng, h, w, int(rng.integers(1, 12)), float(rng.choice([0.0, 0.5]))),
           "overlapping": lambda: _partition(rng, h, w, 4, 0.2) + _blobs(rng, h, w, int(rng.integers(1, 8))),
           "none": lambda: []}[dt_kind]()
    inter, flags = K.image_intersections(*_strings(gts), *_strings(dts), h, w)
    g_rle = [mask_utils.encode(np.asfortranarray(m)) for m in gts]
    d_rle = [mask_utils.encode(np.asfortranarray(m)) for m in dts]
    ref = np.array([[int(mask_utils.area(mask_utils.merge([g, d], intersect=True))) for d in d_rle] for g in g_rle],
                   np.int64).reshape(len(gts), len(dts))
    assert np.array_equal(inter, ref)
    gt_over = bool((np.sum(gts, axis=0) > 1).any())
    dt_over = bool(dts) and bool((np.sum(dts, axis=0) > 1).any())
    assert flags == (K.GT_OVERLAP if gt_over else 0) | (K.DT_OVERLAP if dt_over else 0)
    if dts and len(gts) and not gt_over:  # the IoU the matcher takes: intersection / union, as rleIou
        iou = mask_utils.iou(d_rle, g_rle, [0] * len(g_rle)).T
        area_g = np.array([m.sum() for m in gts], np.int64)[:, None]
        area_d = np.array([m.sum() for m in dts], np.int64)[None, :]
        union = area_g + area_d - inter
        ours = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
        assert np.array_equal(ours, iou)


def test_intersections_many_runs_in_one_bucket():
    """GT with 1-pixel runs packed in one column beside one large mask: the kernel locates a
    prediction run by a bucket of GT run starts, then steps over the many runs of that bucket
    that end before it."""
    h, w = 40, 40
    big, odd, even = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    big[:, 1:] = 1
    odd[1::2, 0] = 1
    even[0::2, 0] = 1
    dts = [np.zeros((h, w), np.uint8) for _ in range(3)]
    dts[0][20:26, 0] = 1
    dts[1][30:, :3] = 1
    dts[2][:5, 0] = 1
    gts = [big, odd, even]
    inter, flags = K.image_intersections(*_strings(gts), *_strings(dts), h, w)
    ref = [[int((g & d).sum()) for d in dts] for g in gts]  # hand-checkable: e.g. odd & dts[0] = 3 pixels
    assert flags == 0 and inter.tolist() == ref and ref[1][0] == 3


@pytest.mark.parametrize("a,b", [((70, 72), (10, 71)), ((10, 71), (70, 72)), ((130, 131), (10, 200)),
                                 ((63, 64), (64, 65)), ((63, 65), (64, 65)), ((0, 64), (64, 128)),
                                 ((0, 65), (64, 128)), ((127, 128), (0, 200)), ((5, 6), (6, 200))])
def test_prediction_overlap_flag_at_word_edges(a, b):
    """Two predictions, one run each, on a 1 x 200 image (positions = columns): DT_OVERLAP iff the
    runs share a pixel, wherever it lies among the 64-pixel words of the kernel's bitmap."""
    dts = []
    for lo, hi in (a, b):
        m = np.zeros((1, 200), np.uint8)
        m[0, lo:hi] = 1
        dts.append(m)
    gts = [np.ones((1, 200), np.uint8)]
    inter, flags = K.image_intersections(*_strings(gts), *_strings(dts), 1, 200)
    assert flags == (K.DT_OVERLAP if max(a[0], b[0]) < min(a[1], b[1]) else 0)
    assert inter.tolist() == [[a[1] - a[0], b[1] - b[0]]]


def test_intersections_flag_bad_strings():
    m = np.ones((4, 5), np.uint8)
    good = _strings([m])
    _, flags = K.image_intersections(*good, *good, 4, 6)  # strings of a 4 x 5 mask, image 4 x 6
    assert flags == K.BAD_RLE
    inter, flags = K.image_intersections(*good, *good, 4, 5)
    assert flags == 0 and inter.tolist() == [[20]]


# ---------------------------------------------------------------------------------------------
# long runs


def test_runs_longer_than_65535_pixels_against_pycocotools():
    """Whole-column masks on a 480 x 400 image give single runs of up to ~150,000 pixels (a run
    longer than a narrow length field, covering thousands of 64-pixel words of the kernel's
    prediction-overlap bitmap)."""
    h, w = 480, 400
    gt_cols = [(0, 250), (250, 330), (330, 400)]  # column spans: runs of 120,000 / 38,400 / 33,600 px
    dt_cols = [(0, 200), (200, 310), (310, 395)]
    ann, res = [], []
    for k, (a, b) in enumerate(gt_cols):
        m = np.zeros((h, w), np.uint8)
        m[:, a:b] = 1
        ann.append({"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": _rle(m),
                    "area": float(m.sum()), "bbox": [a, 0, b - a, h], "iscrowd": 0})
    for k, (a, b) in enumerate(dt_cols):
        m = np.zeros((h, w), np.uint8)
        m[:, a:b] = 1
        res.append({"image_id": 1, "category_id": 1, "segmentation": _rle(m), "score": 0.9 - 0.1 * k})
    gt = {"images": [{"id": 1, "height": h, "width": w}], "annotations": ann,
          "categories": [{"id": 1, "name": "entity"}]}
    inp, g_order, _ = _inputs(gt, res)
    per = ape.evaluate_all(inp)
    assert per.img_flags[0] == 0  # the partition walk, not the pairwise path
    ref = mask_utils.iou([a["segmentation"] for a in ann], [r["segmentation"] for r in res], [0] * len(res))
    assert np.array_equal(per.best_iou_gt, ref.max(axis=1)[g_order])  # ref: GT x predictions
    acc, stats = _entitykit(inp)
    _assert_same(acc, stats, _reference(gt, res))


# ---------------------------------------------------------------------------------------------
# the JSON reader's numbers (_cscan.c: Clinger's fast path, else PyOS_string_to_double)


def _number_texts(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    x = rng.random(400)
    big = rng.integers(0, 2**62, 50)
    texts = [repr(float(v)) for v in x]  # up to 17 significant digits: past 2**53, the fallback
    texts += [f"{v:.4f}" for v in x[:100]] + [f"{v:.{k}f}" for v, k in zip(x[:100], rng.integers(0, 25, 100))]
    texts += [f"{v}.{int(f * 1e6):06d}" for v, f in zip(big, x[:50])]  # 19+ digits
    texts += [str(2**53), str(2**53 + 1), f"{2**53}.0", "9007199254740993.0", "0.1", "0.30000000000000004",
              "-0.0", "-0", "0", "1e-7", "2.5E+3", "123.456e2", "0." + "0" * 21 + "1", "0." + "0" * 22 + "1",
              "1" * 19, "1" * 20, "377.0", "-45.5", "0.000000000000000000001", "1.7976931348623157e308"]
    return texts


@pytest.mark.parametrize("seed", [0, 1])
def test_reader_numbers_are_jsons_doubles(seed):
    """Scores and bbox sizes from the compiled reader are bit-identical to json's float() of the
    same text (the fast path's exactness conditions: at most 2**53, at most 22 fraction digits)."""
    from entitykit.evaluation import _scan  # noqa: PLC0415

    texts = _number_texts(seed)
    items = ",".join(f'{{"image_id": 1, "segmentation": {{"size": [1, 1], "counts": "01"}}, "score": {t}, '
                     f'"bbox": [0, 0, {t}, 1]}}' for t in texts)
    cols = _scan.coco_results(f"[{items}]".encode())
    assert cols is not None
    want = np.array([float(t) for t in texts], np.float64)
    assert np.array_equal(cols.score.view(np.int64), want.view(np.int64))
    assert np.array_equal(cols.box_wh[:, 0].view(np.int64), want.view(np.int64))


# ---------------------------------------------------------------------------------------------
# per-image rows (api._per_image): hand-computed


def test_per_image_rows_hand_computed():
    """Image 1 (10 x 10): GT columns 0-4 and 5-9; predictions: GT 1 exactly (IoU 1), columns 5-7
    (IoU 0.6 with GT 2), columns 8-9 (IoU 0.4: a false positive, no void). At IoU 0.5: TP 2, FP 1,
    FN 0, F1 4/5; at 0.75: TP 1, FP 2, FN 1. PQ: (1 + 0.6) / (2 + 0.5 * 1) = 0.64. Image 2: nothing
    (F1 and PQ 1 by convention). Image 3: one GT, no prediction (F1 0, PQ 0 / (0.5) = 0)."""
    from _eval_helpers import build  # noqa: PLC0415

    from entitykit.evaluation import evaluate

    def cols(a, b):
        m = np.zeros((10, 10), bool)
        m[:, a:b] = True
        return m

    gt, res = build([[cols(0, 5), cols(5, 10)], [], [cols(0, 10)]],
                    [(0, cols(0, 5), 0.9), (0, cols(5, 8), 0.8), (0, cols(8, 10), 0.7)],
                    sizes=[(10, 10)] * 3)
    rows = evaluate(gt, res).per_image
    assert rows == [
        {"image_id": 1, "source": None, "n_gt": 2, "n_pred": 3, "tp_50": 2, "fp_50": 1, "fn_50": 0,
         "tp_75": 1, "fp_75": 2, "fn_75": 1, "f1_50": 4 / 5, "pq": (1.0 + 0.6) / (2 + 0.5 * 1)},
        {"image_id": 2, "source": None, "n_gt": 0, "n_pred": 0, "tp_50": 0, "fp_50": 0, "fn_50": 0,
         "tp_75": 0, "fp_75": 0, "fn_75": 0, "f1_50": 1.0, "pq": 1.0},
        {"image_id": 3, "source": None, "n_gt": 1, "n_pred": 0, "tp_50": 0, "fp_50": 0, "fn_50": 1,
         "tp_75": 0, "fp_75": 0, "fn_75": 1, "f1_50": 0.0, "pq": 0.0},
    ]
    assert [list(r) for r in rows] == [list(rows[0])] * 2 + [list(rows[0])]  # key order (the JSON's)
