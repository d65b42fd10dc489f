"""Detection areas from boxes (pycocotools' loadRes), and the compiled JSON reader under fuzzing.

Reference: pycocotools ``COCO.loadRes`` + ``COCOeval(iouType="segm")`` with ``useCats=0``. When the
first result has a non-empty ``bbox``, loadRes sets every result's area to bbox[2] * bbox[3] and that
area decides the S/M/L ignore of unmatched detections; ``area_rule="mask"`` must equal pycocotools
run on the same results with the boxes removed (mask areas).
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitykit.errors import EntityKitError, PredictionError
from entitykit.evaluation import _scan, evaluate
from entitykit.evaluation.synthetic import synth_coco
from _eval_helpers import pycoco

SMALL, LARGE = 32**2, 96**2


def _bucket(a: float) -> int:
    return 0 if a < SMALL else (1 if a <= LARGE else 2)


def pycoco_stats(gt: dict, results: list) -> tuple[np.ndarray, dict]:
    e = pycoco(gt, results, agnostic=True)
    return np.array(e.stats), e.eval


@pytest.fixture(scope="module")
def boxed():
    """A synthetic set whose results carry boxes with areas unlike their masks' (a third of them
    in another S/M/L bucket than the mask)."""
    gt, res = synth_coco(24, seed=11)
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    moved = 0
    for r in res:
        seg = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        area = float(mask_utils.area(seg))
        x, y, w, h = mask_utils.toBbox(seg).tolist()
        k = rng.integers(3)
        if k == 0:  # a loose box: bigger than the mask, often a bucket up
            w, h = w * 1.7 + 3, h * 1.4 + 2.5
        elif k == 1:  # a box in another bucket on purpose
            side = [20.0, 60.0, 130.0][(_bucket(area) + 1 + rng.integers(2)) % 3]
            w, h = side, side * rng.uniform(0.8, 1.25)
        r["bbox"] = [x, y, w, h]
        moved += _bucket(w * h) != _bucket(area)
    assert moved > len(res) // 4  # the test is about bucket changes
    return gt, res


def _check(gt, res, where, rule, ref_results):
    r = evaluate(copy.deepcopy(gt), where, area_rule=rule, overlap="allow")
    ref, ev = pycoco_stats(gt, ref_results)
    assert np.array_equal(r.stats, ref), (rule, r.stats, ref)
    assert np.array_equal(r.precision, ev["precision"]) and np.array_equal(r.recall, ev["recall"])
    return r


@pytest.mark.parametrize("source", ["memory", "file"])
def test_box_areas_match_pycocotools(boxed, source, tmp_path):
    gt, res = boxed
    where = copy.deepcopy(res)
    if source == "file":  # the compiled reader
        where = tmp_path / "res.json"
        where.write_text(json.dumps(res))
        assert _scan.coco_results(where.read_bytes()).box_state is not None
    r = _check(gt, res, where, "auto", res)
    assert r.area_rule_applied == "bbox" and r.options["area_rule"] == "auto"
    # the mask rule equals pycocotools on the same results without boxes
    plain = [{k: v for k, v in x.items() if k != "bbox"} for x in res]
    m = _check(gt, res, where, "mask", plain)
    assert m.area_rule_applied == "mask"
    assert not np.array_equal(r.stats[3:6], m.stats[3:6])  # the rule shows in APe_s/m/l
    assert np.array_equal(r.stats[:3], m.stats[:3])  # and not in APe / APe50 / APe75


def test_first_result_decides(boxed):
    gt, res = boxed
    res = copy.deepcopy(res)
    del res[0]["bbox"]  # pycocotools: the first result has no bbox -> every area from the masks
    r = _check(gt, res, copy.deepcopy(res), "auto", res)
    assert r.area_rule_applied == "mask"
    res[0]["bbox"] = []  # an empty box counts as none (loadRes: "not anns[0]['bbox'] == []")
    r = _check(gt, res, copy.deepcopy(res), "auto", res)
    assert r.area_rule_applied == "mask"


def test_missing_box_later_uses_mask_area_and_warns(boxed):
    gt, res = boxed
    res = copy.deepcopy(res)
    del res[5]["bbox"]
    r = evaluate(copy.deepcopy(gt), copy.deepcopy(res), overlap="allow")
    assert r.area_rule_applied == "bbox"
    assert any("1 result(s) have no bbox" in w for w in r.warnings), r.warnings
    # the reference: that one result's area is its mask's (pycocotools itself raises KeyError)
    from pycocotools import mask as mask_utils

    seg = dict(res[5]["segmentation"], counts=res[5]["segmentation"]["counts"].encode())
    a = float(mask_utils.area(seg))
    res[5]["bbox"] = [0.0, 0.0, a, 1.0]
    ref, _ = pycoco_stats(gt, res)
    assert np.array_equal(r.stats, ref)


def test_bad_box_and_bad_rule_are_named(boxed, tmp_path):
    gt, res = boxed
    res = copy.deepcopy(res)
    res[2]["bbox"] = [1, 2, "3", 4]
    f = tmp_path / "res.json"
    f.write_text(json.dumps(res))
    with pytest.raises(PredictionError, match=r"result \[2\]: bbox is not \[x, y, width, height\]"):
        evaluate(copy.deepcopy(gt), f)
    evaluate(copy.deepcopy(gt), f, area_rule="mask", overlap="allow")  # boxes ignored
    with pytest.raises(EntityKitError, match="unknown area rule"):
        evaluate(copy.deepcopy(gt), f, area_rule="box")


@pytest.mark.parametrize("w, h, shown", [(float("nan"), 40, "nan × 40"), (float("inf"), 3, "inf × 3"),
                                         (-30, 40, "-30 × 40"), (5, -0.5, "5 × -0.5")])
@pytest.mark.parametrize("source", ["memory", "file"])
def test_box_sizes_that_are_no_area_are_named(boxed, tmp_path, w, h, shown, source):
    # pycocotools would take the product (NaN, inf, negative) as the area and score on
    gt, res = boxed
    res = copy.deepcopy(res)
    res[3]["bbox"] = [1, 2, w, h]
    f = tmp_path / "res.json"
    f.write_text(json.dumps(res))  # json writes NaN / Infinity, which Python's reader and ours accept
    with pytest.raises(PredictionError, match=rf"result \[3\]: bbox width and height must be finite and ≥ 0, got {re.escape(shown)}"):
        evaluate(copy.deepcopy(gt), res if source == "memory" else f)
    evaluate(copy.deepcopy(gt), f, area_rule="mask", overlap="allow")  # boxes ignored


def test_resolved_masks_use_their_final_area():
    """--overlap resolve: a changed mask's area is its final pixel count, not its box's."""
    from _eval_helpers import rle

    h = w = 200

    def m(y0, y1, x0, x1):
        x = np.zeros((h, w), bool)
        x[y0:y1, x0:x1] = True
        return x

    g = m(0, 100, 0, 100)  # large GT, found by p1
    p1, p2, p3 = g.copy(), m(150, 170, 150, 170), m(150, 160, 150, 170)  # p3 (higher score) takes half of p2
    gt = {"images": [{"id": 1, "height": h, "width": w}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle(g), "area": 10000,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "entity"}]}
    res = [{"image_id": 1, "category_id": 1, "segmentation": rle(p1), "score": 0.5, "bbox": [0, 0, 100, 100]},
           {"image_id": 1, "category_id": 1, "segmentation": rle(p2), "score": 0.9,
            "bbox": [150, 150, 120, 100]},  # its box: large
           {"image_id": 1, "category_id": 1, "segmentation": rle(p3), "score": 0.95, "bbox": [150, 150, 20, 10]}]
    r = evaluate(gt, copy.deepcopy(res), overlap="resolve")
    assert r.area_rule_applied == "bbox" and r.overlap["predictions_changed"] == 1
    # reference: pycocotools on the resolved masks, the changed one's area its final pixel count (200: small)
    final = copy.deepcopy(res)
    final[1].update(segmentation=rle(m(160, 170, 150, 170)), bbox=[150, 160, 200, 1])
    ref, _ = pycoco_stats(gt, final)
    assert np.array_equal(r.stats, ref), (r.stats, ref)
    # with the box's area (12,000 px: large) the unmatched detection would lower APe_l
    final[1]["bbox"] = [150, 150, 120, 100]
    wrong, _ = pycoco_stats(gt, final)
    assert wrong[5] < ref[5]


# ---------------------------------------------------------------------------------------------
# the compiled reader: random truncations and mutations give None (json's path) or json's values


def _json_columns(raw: bytes):
    items = json.loads(raw)
    if not isinstance(items, list):
        return None
    try:
        ids = [x["image_id"] for x in items]
        scores = [x["score"] for x in items]
        segs = [x["segmentation"] for x in items]
        sizes = [s["size"] for s in segs]
        counts = [s["counts"] for s in segs]
    except (KeyError, TypeError):
        return None
    return ids, scores, sizes, counts, [x.get("bbox") for x in items]


def _agree(raw: bytes) -> None:
    cols = _scan.coco_results(raw)
    if cols is None:
        return  # the caller reads the file with json, which words any error
    ref = _json_columns(raw)  # the scanner accepted it: json must too, with the same values
    assert ref is not None
    ids, scores, sizes, counts, boxes = ref
    assert cols.image_id.tolist() == ids and all(type(i) is int for i in ids)
    assert np.array_equal(cols.score.view(np.int64), np.array(scores, np.float64).view(np.int64))
    assert cols.size.tolist() == sizes
    assert [cols.buf[cols.start[k]:cols.end[k]].tobytes().decode() for k in range(len(ids))] == counts
    for k, b in enumerate(boxes):
        if b is None:
            assert cols.box_state[k] == 0
        elif b == []:
            assert cols.box_state[k] == 1
        else:
            assert cols.box_state[k] == 2 and cols.box_wh[k].tolist() == [float(b[2]), float(b[3])]


def _gt_agree(raw: bytes) -> None:
    got = _scan.entity_file(raw)
    if got is None:
        return
    ref = json.loads(raw)
    anns = ref["annotations"]
    assert got.images == ref["images"] and got.categories == ref.get("categories")
    assert got.annotations.id.tolist() == [a["id"] for a in anns]
    assert got.annotations.image_id.tolist() == [a["image_id"] for a in anns]
    assert got.annotations.area.tolist() == [float(a["area"]) for a in anns]
    assert got.annotations.iscrowd.tolist() == [1 if a.get("iscrowd") else 0 for a in anns]


@pytest.fixture(scope="module")
def sample():
    gt, res = synth_coco(2, seed=2, n_gt=3, n_pred=4)
    for k, r in enumerate(res):
        if k % 3:
            r["bbox"] = [1, 2.5, 3e1, 4] if k % 3 == 1 else []
        r["extra"] = {"a": [1, -2.5e-3, None, True, False, "x\\\"y\u00e9"], "b": {}}
    return (json.dumps(res, ensure_ascii=False).encode(), json.dumps(gt, ensure_ascii=False).encode())


def test_unmutated_samples_are_read(sample):
    res, gt = sample
    assert _scan.coco_results(res) is not None and _scan.entity_file(gt) is not None
    _agree(res)
    _gt_agree(gt)


_FUZZ = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@_FUZZ
@given(data=st.data())
def test_fuzz_results_reader(sample, data):
    raw = bytearray(sample[0])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        k = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "truncate":
            raw = raw[:k]
        elif op == "flip" and raw:
            raw[k] = data.draw(st.sampled_from(list(b'"\\{}[],:0-.eE \x00\x7f\xff\xc3\xed/ntfu')))
        elif op == "insert":
            raw[k:k] = data.draw(st.binary(min_size=1, max_size=3))
        elif raw:
            del raw[k:k + data.draw(st.integers(1, 8))]
    try:
        _agree(bytes(raw))
    except (ValueError, RecursionError):  # json refused what the scanner refused too? then no agreement needed
        assert _scan.coco_results(bytes(raw)) is None


@_FUZZ
@given(data=st.data())
def test_fuzz_entity_reader(sample, data):
    raw = bytearray(sample[1])
    for _ in range(data.draw(st.integers(1, 3))):
        k = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if data.draw(st.booleans()):
            raw = raw[:k] if data.draw(st.booleans()) else raw[:k] + raw[k + 1:]
        elif raw:
            raw[k] = data.draw(st.sampled_from(list(b'"\\{}[],:0-. \x00\xff\xc3tfn')))
    try:
        _gt_agree(bytes(raw))
    except (ValueError, RecursionError):
        assert _scan.entity_file(bytes(raw)) is None
