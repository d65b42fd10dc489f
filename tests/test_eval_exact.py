"""APe == pycocotools COCOeval(iouType="segm"), one category: hand cases, property tests, val-scale."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitykit.evaluation import evaluate
from entitykit.evaluation.synthetic import synth_coco

from _eval_helpers import assert_same, build


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_perfect_is_one():
    a, b = box(40, 40, 0, 20, 0, 40), box(40, 40, 20, 40, 0, 40)
    gt, res = build([[a, b]], [(0, a, 0.9), (0, b, 0.8)])
    r, _ = assert_same(gt, res, overlap="error")
    assert r.stats[:3] == pytest.approx([1.0, 1.0, 1.0], abs=1e-15)
    assert r.pq["PQ"] == 1.0


def test_one_prediction_at_iou_0_6_scores_0_3():
    g = box(10, 10, 0, 10, 0, 6)  # 60 px
    p = box(10, 10, 0, 10, 0, 10)  # 100 px: IoU = 60/100 = 0.6 == linspace's 0.6
    gt, res = build([[g]], [(0, p, 0.5)])
    r, _ = assert_same(gt, res, overlap="error")
    assert r.stats[0] == pytest.approx(0.3, abs=1e-15)


def test_tied_scores_file_order_decides():
    # two GT, two predictions with the same score: one good, one bad. Order changes AP.
    g1, g2 = box(20, 20, 0, 10, 0, 20), box(20, 20, 10, 20, 0, 20)
    good, bad = g1.copy(), box(20, 20, 10, 20, 0, 3)
    gt, res1 = build([[g1, g2]], [(0, good, 0.5), (0, bad, 0.5)])
    _, res2 = build([[g1, g2]], [(0, bad, 0.5), (0, good, 0.5)])
    r1, _ = assert_same(gt, res1, overlap="error")
    r2, _ = assert_same(gt, res2, overlap="error")
    assert r1.stats[0] != r2.stats[0]


def test_iou_exactly_half_two_candidates_later_gt_wins():
    left, right = box(10, 20, 0, 10, 0, 10), box(10, 20, 0, 10, 10, 20)
    whole = left | right  # IoU 0.5 with each
    gt, res = build([[left, right]], [(0, whole, 0.9)])
    assert_same(gt, res, overlap="error")
    # make the two GT differ in area range so the choice shows in APs / APm
    gt, res = build([[left, right]], [(0, whole, 0.9)], areas=[[1024, 5000]])
    assert_same(gt, res, overlap="error")


def test_area_exactly_1024_is_small_and_medium():
    g = box(64, 64, 0, 32, 0, 32)  # 1024 px
    gt, res = build([[g]], [(0, g, 0.7)])
    r, _ = assert_same(gt, res, overlap="error")
    assert r.stats[3] == pytest.approx(1.0) and r.stats[4] == pytest.approx(1.0)  # APs and APm
    assert r.stats[5] == -1.0  # no large GT


def test_crowd_gt_ignored_and_matched_many_times():
    crowd = box(30, 30, 0, 30, 0, 15)
    g = box(30, 30, 0, 30, 15, 30)
    p1, p2 = box(30, 30, 0, 10, 0, 15), box(30, 30, 10, 30, 0, 15)  # both inside the crowd region
    p3 = g.copy()
    gt, res = build([[crowd, g]], [(0, p1, 0.9), (0, p2, 0.8), (0, p3, 0.3)], crowd=[[1, 0]])
    r, _ = assert_same(gt, res, overlap="error")
    assert r.stats[0] == pytest.approx(1.0, abs=1e-15)  # matched-to-crowd detections are ignored, not false positives


def test_max_dets_changes_every_number_and_matches_pycocotools():
    rng = np.random.default_rng(3)
    stripes = [box(30, 28, 0, 30, 2 * k, 2 * k + 2) for k in range(14)]
    gt, res = build([stripes], [(0, m, float(rng.random())) for m in stripes])
    r100, _ = assert_same(gt, res, max_dets=100, overlap="error")
    r5, _ = assert_same(gt, res, max_dets=5, overlap="error")
    assert r100.stats[0] == pytest.approx(1.0)
    assert r5.stats[0] < 0.5 and r5.stats[8] == pytest.approx(5 / 14)
    assert r5.stat_names[8] == "AR5"
    assert any("more ground-truth entities than max-dets=5" in w for w in r5.warnings)


def test_empty_predictions_and_images_without_gt():
    a = box(10, 10, 0, 5, 0, 10)
    gt, res = build([[a], []], [(1, a, 0.5)], sizes=[(10, 10), (10, 10)])
    assert_same(gt, res, overlap="error")
    gt, _ = build([[a]], [])
    r = evaluate(gt, [])
    assert r.stats[0] == 0.0


def test_pq_is_undefined_without_ground_truth_and_predictions():
    """panopticapi skips a category with tp + fp + fn = 0 (its average then divides by zero): PQ,
    SQ and RQ are None (printed "n/a", as AP without ground truth), not 0."""
    from entitykit.evaluation.report import print_report

    a = box(10, 10, 0, 5, 0, 10)
    gt, _ = build([[]], [], sizes=[(10, 10)])
    r = evaluate(gt, [])
    assert r.pq is not None and (r.pq["PQ"], r.pq["SQ"], r.pq["RQ"]) == (None, None, None)
    from rich.console import Console

    con = Console(record=True, width=120)
    print_report(r, con)
    text = con.export_text()
    row = [ln for ln in text.splitlines() if "PQ" in ln][0].replace("│", " ").split()
    assert row[:2] == ["PQ", "n/a"] and row[-3:] == ["n/a", "/", "n/a"], text
    # a prediction where the ground truth has no entity is over VOID, not a false positive (panopticapi):
    # still undefined; a missed entity (a false negative) makes PQ 0, defined
    r = evaluate(gt, [{"image_id": 1, "category_id": 1, "segmentation": build([[a]], [])[0]["annotations"][0]["segmentation"],
                       "score": 0.9}])
    assert r.pq["PQ"] is None and r.pq["fp"] == 0
    gt, _ = build([[a]], [])
    r = evaluate(gt, [])
    assert r.pq["PQ"] == 0.0 and r.pq["fn"] == 1


# ---------------------------------------------------------------------------------------------
# property tests: random partitions (fast path) and random overlapping masks (general path)


@st.composite
def cases(draw, overlapping: bool):
    n_img = draw(st.integers(1, 3))
    gts, preds, crowds, areas, sizes = [], [], [], [], []
    for i in range(n_img):
        h, w = draw(st.sampled_from([(6, 7), (12, 9), (40, 33), (50, 45)]))
        sizes.append((h, w))
        seed = draw(st.integers(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        k = draw(st.integers(0, 8))
        blocks = max(1, (h * w) // draw(st.sampled_from([4, 30, 200])))
        coarse = rng.integers(0, k + 1, size=(int(np.ceil(h / 3)), int(np.ceil(w / 3))))
        gmap = np.kron(coarse, np.ones((3, 3), int))[:h, :w] if blocks else coarse
        masks = [gmap == v for v in range(1, k + 1) if (gmap == v).any()]
        if overlapping and masks and draw(st.booleans()):
            masks.append(rng.random((h, w)) < 0.3)  # an overlapping GT mask
        gts.append(masks)
        crowds.append([int(rng.random() < 0.15) for _ in masks])
        areas.append([draw(st.sampled_from([None, None, 1024, 1023, 1025, 9216, 9217, 50])) for _ in masks])
        n_p = draw(st.integers(0, 12))
        score_pool = draw(st.sampled_from([[0.5], [0.1, 0.5, 0.9], None]))
        if overlapping:
            pm = [rng.random((h, w)) < rng.uniform(0.05, 0.6) for _ in range(n_p)]
            pm += [m.copy() for m in masks[:2]]
        else:
            c2 = rng.integers(0, n_p + 1, size=(int(np.ceil(h / 2)), int(np.ceil(w / 2))))
            pmap = np.kron(c2, np.ones((2, 2), int))[:h, :w]
            if draw(st.booleans()):
                pmap = np.where(rng.random((h, w)) < 0.8, gmap, pmap)  # predictions close to the GT
            pm = [pmap == v for v in np.unique(pmap) if v != 0]
        for m in pm:
            s = rng.random() if score_pool is None else score_pool[rng.integers(len(score_pool))]
            preds.append((i, m, s))
    order = draw(st.permutations(range(len(preds))))
    preds = [preds[j] for j in order]
    max_dets = draw(st.sampled_from([100, 100, 3, 1, 10]))
    return gts, preds, crowds, areas, sizes, max_dets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(overlapping=False))
def test_property_partitions(case):
    gts, preds, crowds, areas, sizes, max_dets = case
    gt, res = build(gts, preds, crowd=crowds, areas=areas, sizes=sizes)
    assert_same(gt, res, max_dets=max_dets, overlap="error")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(overlapping=True))
def test_property_overlapping_allow(case):
    gts, preds, crowds, areas, sizes, max_dets = case
    gt, res = build(gts, preds, crowd=crowds, areas=areas, sizes=sizes)
    assert_same(gt, res, max_dets=max_dets, overlap="allow")


def test_val_scale_synthetic_equals_pycocotools():
    gt, res = synth_coco(150, seed=11, crowd_frac=0.02)
    r, e = assert_same(gt, res, overlap="error")
    assert r.counts["predictions"] == len(res)
    r10, _ = assert_same(gt, res, max_dets=20, overlap="error")
