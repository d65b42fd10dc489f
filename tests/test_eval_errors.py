"""Clear errors for bad input, and the three overlap modes."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from entitykit.errors import DatasetError, EntityKitError, PredictionError
from entitykit.evaluation import evaluate

from _eval_helpers import assert_same, build, pycoco


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def simple():
    a, b = box(20, 20, 0, 10, 0, 20), box(20, 20, 10, 20, 0, 20)
    return build([[a, b]], [(0, a, 0.9), (0, b, 0.4)])


def test_unknown_image_id(simple):
    gt, res = simple
    res[1]["image_id"] = 77
    with pytest.raises(PredictionError, match="unknown image id 77"):
        evaluate(gt, res)


def test_rle_size_differs_from_image(simple):
    gt, res = simple
    res[0]["segmentation"]["size"] = [10, 40]
    with pytest.raises(PredictionError, match=r"RLE size \[10, 40\] differs from the image size \[20, 20\]"):
        evaluate(gt, res)
    gt2 = copy.deepcopy(gt)
    gt2["annotations"][0]["segmentation"]["size"] = [20, 21]
    with pytest.raises(DatasetError, match="annotation id 1"):
        evaluate(gt2, simple[1])


@pytest.mark.parametrize("score", [float("nan"), -0.1, float("inf"), "high", None])
def test_bad_scores(simple, score):
    gt, res = simple
    res[1]["score"] = score
    with pytest.raises(PredictionError, match=r"prediction \[1\]|result \[1\]"):
        evaluate(gt, res)


def test_nan_score_in_a_json_file(simple, tmp_path):
    gt, res = simple
    res[0]["score"] = float("nan")
    p = tmp_path / "res.json"
    p.write_text(json.dumps(res))  # json writes NaN, which Python's reader accepts
    with pytest.raises(PredictionError, match=r"result \[0\].*not a finite number"):
        evaluate(gt, p)


def test_duplicate_ids(simple):
    gt, res = simple
    gt2 = copy.deepcopy(gt)
    gt2["annotations"][1]["id"] = gt2["annotations"][0]["id"]
    with pytest.raises(DatasetError, match="duplicate annotation id 1"):
        evaluate(gt2, res)
    gt3 = copy.deepcopy(gt)
    gt3["images"].append(dict(gt3["images"][0]))
    with pytest.raises(DatasetError, match="duplicate image id 1"):
        evaluate(gt3, res)


def test_gt_id_zero_refused(simple):
    gt, res = simple
    gt["annotations"][0]["id"] = 0
    with pytest.raises(DatasetError, match="not an integer >= 1"):
        evaluate(gt, res)


def test_malformed_json_and_missing_file(simple, tmp_path):
    gt, res = simple
    p = tmp_path / "res.json"
    p.write_text('[{"image_id": 1, ')
    with pytest.raises(EntityKitError, match="not valid JSON"):
        evaluate(gt, p)
    with pytest.raises(EntityKitError, match="not found"):
        evaluate(gt, tmp_path / "nope.json")
    g = tmp_path / "gt.json"
    g.write_text("{oops")
    with pytest.raises(EntityKitError, match="not valid JSON"):
        evaluate(g, res)


def test_malformed_rle_counts(simple):
    gt, res = simple
    bad = copy.deepcopy(res)
    bad[0]["segmentation"]["counts"] = "\x7f\x7f"
    with pytest.raises(PredictionError, match="outside pycocotools' alphabet"):  # entitykit.masks' words
        evaluate(gt, bad)
    short = copy.deepcopy(res)
    short[0]["segmentation"]["counts"] = "02"  # 0 zeros, 2 ones: does not cover 20x20
    with pytest.raises(PredictionError, match="do not cover height × width"):
        evaluate(gt, short)


def test_overlap_is_an_error_naming_image_predictions_and_pixels():
    a = box(20, 20, 0, 10, 0, 20)
    whole = box(20, 20, 0, 20, 0, 20)
    gt, res = build([[a]], [(0, a, 0.9), (0, whole, 0.5)])
    with pytest.raises(PredictionError) as e:
        evaluate(gt, res)
    msg = str(e.value)
    assert "image 1" in msg and "result [0]" in msg and "result [1]" in msg
    assert "share 200 pixels" in msg and "--overlap resolve" in msg


def test_overlap_resolve_highest_score_owns_the_pixel():
    # the whole-image mask plus its two halves (scorer-notes trap 1)
    left, right = box(20, 20, 0, 20, 0, 10), box(20, 20, 0, 20, 10, 20)
    whole = left | right
    gt, res = build([[left, right]], [(0, whole, 0.9), (0, left, 0.8), (0, right, 0.7)])
    r_allow, _ = assert_same(gt, res, overlap="allow")
    assert r_allow.overlap == {"mode": "allow", "images_with_overlap": 1}
    r = evaluate(gt, res, overlap="resolve")
    assert r.overlap["predictions_changed"] == 2 and r.overlap["predictions_removed"] == 2
    assert r.overlap["pixels_reassigned"] == 400
    # same as pycocotools on the resolved predictions (only the whole mask survives)
    _, res2 = build([[left, right]], [(0, whole, 0.9)])
    e = pycoco(gt, res2)
    assert np.array_equal(r.precision, e.eval["precision"])
    assert r.stats[0] < r_allow.stats[0]
    assert r.options["overlap"] == "resolve"


def test_overlap_resolve_partial():
    a, b = box(20, 20, 0, 12, 0, 20), box(20, 20, 8, 20, 0, 20)
    gt, res = build([[box(20, 20, 0, 10, 0, 20), box(20, 20, 10, 20, 0, 20)]], [(0, a, 0.3), (0, b, 0.6)])
    r = evaluate(gt, res, overlap="resolve")
    assert r.overlap["predictions_changed"] == 1 and r.overlap["pixels_reassigned"] == 80
    _, res2 = build([[]], [(0, box(20, 20, 0, 8, 0, 20), 0.3), (0, b, 0.6)])
    gt2 = gt
    e = pycoco(gt2, res2)
    assert np.array_equal(r.precision, e.eval["precision"])


def test_bad_option_values(simple):
    gt, res = simple
    with pytest.raises(EntityKitError, match="overlap mode"):
        evaluate(gt, res, overlap="maybe")
    with pytest.raises(EntityKitError, match="max-dets"):
        evaluate(gt, res, max_dets=0)
