"""Formula tests of entitykit.model: every expected value is hand-computed (arithmetic in the
comments) or comes from an independent numpy / plain-Python reference written here from
docs/model-spec.md (the code under test is never used to make an expected value).

Inputs are deliberately non-degenerate: enclosing boxes larger than both boxes, asymmetric
centerness, fractional Dice inputs, several images with uneven proposals per GT, random scores
where order matters. Each test was checked to fail under a one-line wrong formula (mutation testing).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from entitykit.model import EntityModel, get_config, prepare_images
from entitykit.model import entity_model as em
from entitykit.model.config import PATH_CODES
from entitykit.model.controller import Controller, MaskBranch, coord_maps
from entitykit.model.dynamic_mask_head import (DynamicMaskHead, mask_bank_losses, overlap_suppression_loss,
                                               relative_coords, split_params)
from entitykit.model.fcos_head import (FCOSHead, assign_targets, centers_of_mass, centerness_target,
                                       fcos_losses, masks_to_edge_boxes)
from entitykit.model.inference import mask_probs, paste_and_merge, select_detections
from entitykit.model.layers import aligned_bilinear, dice_loss, grid_locations

# one torch thread (conftest): tiny tensors, and OpenMP threads waiting on each other on a busy CPU cost seconds
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# paper / spec section 4: first layer dynamic -> 1.0, first layer static -> 0.25
PAPER_WEIGHTS = {"111": 1.0, "110": 1.0, "101": 1.0, "100": 1.0, "011": 0.25, "010": 0.25, "001": 0.25}


# ============================================================================ independent references
def ref_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def ref_interp_align_corners(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """1-D linear interpolation with align_corners=True: output k samples source k·(n_in−1)/(n_out−1)."""
    n_in = a.shape[axis]
    src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    fr = src - i0
    shape = [1] * a.ndim
    shape[axis] = n_out
    return np.take(a, i0, axis) * (1 - fr).reshape(shape) + np.take(a, i1, axis) * fr.reshape(shape)


def ref_aligned_bilinear(x: np.ndarray, f: int) -> np.ndarray:
    """Spec section 3 / plan item 5, step by step: replicate-pad 1 px right/bottom, bilinear
    align_corners=True to (f·h+1, f·w+1), replicate-pad f//2 left/top, crop to (f·h, f·w)."""
    x = np.asarray(x, dtype=np.float64)
    if f == 1:
        return x.copy()
    h, w = x.shape[-2:]
    lead = [(0, 0)] * (x.ndim - 2)
    y = np.pad(x, lead + [(0, 1), (0, 1)], mode="edge")
    y = ref_interp_align_corners(y, x.ndim - 2, f * h + 1)
    y = ref_interp_align_corners(y, x.ndim - 1, f * w + 1)
    y = np.pad(y, lead + [(f // 2, 0), (f // 2, 0)], mode="edge")
    return y[..., : f * h, : f * w]


def ref_dice(x: np.ndarray, t: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Spec section 5: per mask 1 − 2Σxt / (Σx² + Σt² + 1e-5)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    t = np.asarray(t, dtype=np.float64).reshape(len(t), -1)
    return 1.0 - 2.0 * (x * t).sum(1) / ((x * x).sum(1) + (t * t).sum(1) + eps)


def ref_grid(h: int, w: int, stride: int) -> np.ndarray:
    """(h·w)×2 locations (stride·j + stride//2, stride·i + stride//2), row-major."""
    return np.array([(stride * j + stride // 2, stride * i + stride // 2) for i in range(h) for j in range(w)],
                    dtype=np.float64)


def ref_conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """N×C×H×W 3×3 convolution with zero padding 1 (cross-correlation, as nn.Conv2d)."""
    n, c, h, w = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    out = np.zeros((n, weight.shape[0], h, w)) + bias[None, :, None, None]
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("oc,nchw->nohw", weight[:, :, ky, kx], xp[:, :, ky: ky + h, kx: kx + w])
    return out


def ref_split(params: np.ndarray):
    """Spec section 3: [w1(80) | w2(64) | w3(8) | b1(8) | b2(8) | b3(1)], weights out×in row-major."""
    n = params.shape[0]
    return [(params[:, 0:80].reshape(n, 8, 10), params[:, 152:160]),
            (params[:, 80:144].reshape(n, 8, 8), params[:, 160:168]),
            (params[:, 144:152].reshape(n, 1, 8), params[:, 168:169])]


def ref_dynamic_paths(x: np.ndarray, params: np.ndarray, static: list, code: str) -> np.ndarray:
    """One kernel-bank path: per layer '1' = the instance's 1×1 kernel, '0' = the static 3×3 conv;
    ReLU after layers 1 and 2, none after layer 3 (spec sections 3 and 4)."""
    wbs = ref_split(params)
    y = x
    for layer, ch in enumerate(code):
        if ch == "1":
            w, b = wbs[layer]
            y = np.einsum("noc,nchw->nohw", w, y) + b[:, :, None, None]
        else:
            y = ref_conv3x3(y, *static[layer])
        if layer < 2:
            y = np.maximum(y, 0)
    return y


def ref_assign(locs, strides, lo, hi, boxes, centers, radius):
    """Spec section 2 target assignment, one location and one GT at a time."""
    gts, ltrbs = [], []
    for (x, y), s, a, b in zip(locs, strides, lo, hi):
        best, best_area, best_ltrb = -1, None, (0.0, 0.0, 0.0, 0.0)
        for g, (x1, y1, x2, y2) in enumerate(boxes):
            cx, cy = centers[g]
            rx1, ry1 = max(cx - radius * s, x1), max(cy - radius * s, y1)  # region clipped to the box
            rx2, ry2 = min(cx + radius * s, x2), min(cy + radius * s, y2)
            if min(x - rx1, y - ry1, rx2 - x, ry2 - y) <= 0:  # strictly inside
                continue
            ltrb = (x - x1, y - y1, x2 - x, y2 - y)
            if not (a <= max(ltrb) <= b):  # both bounds inclusive
                continue
            area = (x2 - x1) * (y2 - y1)
            if best_area is None or area < best_area:  # strict: equal areas keep the lower index
                best, best_area, best_ltrb = g, area, ltrb
        gts.append(best)
        ltrbs.append(best_ltrb)
    return gts, ltrbs


def ref_edge_boxes(masks: np.ndarray) -> np.ndarray:
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return np.array(out, dtype=np.float64)


def ref_centers(masks: np.ndarray) -> np.ndarray:
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append((xs.mean(), ys.mean()))
    return np.array(out, dtype=np.float64)


# ==================================================================================== FCOS losses
def _fcos_inputs():
    """2 images × 3 locations; positives: image 0 loc 0 (A) and image 1 loc 1 (B)."""
    ln3 = math.log(3.0)
    cls = torch.tensor([[ln3, 0.0, -ln3], [0.0, ln3, -2.0]])
    pos = torch.tensor([[True, False, False], [False, True, False]])
    # targets / predictions in stride units (l, t, r, b); negatives get junk that must not count
    tgt = torch.tensor([[[1.0, 2.0, 3.0, 2.0], [5.0, 1.0, 1.0, 7.0], [2.0, 2.0, 2.0, 9.0]],
                        [[3.0, 3.0, 1.0, 1.0], [2.0, 1.0, 2.0, 4.0], [1.0, 6.0, 2.0, 2.0]]])
    reg = torch.tensor([[[2.0, 1.0, 1.0, 3.0], [0.5, 4.0, 2.0, 1.0], [9.0, 1.0, 1.0, 1.0]],
                        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 3.0, 2.0], [4.0, 4.0, 0.5, 0.5]]])
    ctr = torch.tensor([[0.3, 5.0, -5.0], [2.0, -0.7, 1.0]])
    return cls, reg, ctr, pos, tgt


def test_centerness_target_asymmetric_with_sqrt():
    ltrb = torch.tensor([[1.0, 2.0, 4.0, 6.0],    # l/r = 1/4, t/b = 2/6 -> sqrt(1/12) = 0.288675
                         [5.0, 3.0, 2.0, 3.0],    # l/r -> 2/5, t/b = 1 -> sqrt(0.4) = 0.632456
                         [1.0, 2.0, 3.0, 2.0]])   # 1/3 · 1 -> sqrt(1/3) = 0.577350
    got = centerness_target(ltrb)
    assert got.tolist() == pytest.approx([math.sqrt(1 / 12), math.sqrt(0.4), math.sqrt(1 / 3)], rel=1e-6)


def test_focal_loss_normalised_by_num_pos():
    cfg = get_config("r50_1x")
    out = fcos_losses(*_fcos_inputs(), cfg)
    # fvcore focal: alpha_t·(1−p_t)^2·(−ln p_t), alpha_t = 0.25 (pos) / 0.75 (neg)
    pos_l3 = 0.25 * 0.25 ** 2 * -math.log(0.75)   # pos, logit ln3: p = 0.75 -> 0.0044950
    neg_0 = 0.75 * 0.5 ** 2 * math.log(2.0)       # neg, logit 0: p_t = 0.5 -> 0.1299661
    neg_ml3 = 0.75 * 0.25 ** 2 * -math.log(0.75)  # neg, logit −ln3: p = 0.25, p_t = 0.75 -> 0.0134851
    p2 = 1 / (1 + math.exp(2.0))                  # neg, logit −2: p = 0.119203
    neg_m2 = 0.75 * p2 ** 2 * -math.log(1 - p2)   # -> 0.0013483
    total = pos_l3 + neg_0 + neg_ml3 + neg_0 + pos_l3 + neg_m2
    assert out["loss_fcos_cls"].item() == pytest.approx(total / 2, rel=1e-5)  # 2 positives over both images


def test_giou_loss_with_larger_enclosing_box_weighted_by_centerness():
    cfg = get_config("r50_1x")
    out = fcos_losses(*_fcos_inputs(), cfg)
    # A: target ltrb (1,2,3,2) -> box (−1,−2,3,2) 4×4 = 16; pred (2,1,1,3) -> (−2,−1,1,3) 3×4 = 12
    #    I = [−1,1]×[−1,2] = 2·3 = 6; U = 16+12−6 = 22; C = [−2,3]×[−2,3] = 25 (> 16, > 12)
    #    GIoU = 6/22 − (25−22)/25 = 3/11 − 3/25 = 42/275 -> loss 233/275 = 0.847273
    #    (IoU only: 8/11 = 0.7273; the authors' +1 smoothing 7/23 − 3/25: loss 469/575 = 0.8157)
    # B: target (2,1,2,4) -> (−2,−1,2,4) 4×5 = 20; pred (1,1,3,2) -> (−1,−1,3,2) 4×3 = 12
    #    I = [−1,2]×[−1,2] = 9; U = 20+12−9 = 23; C = [−2,3]×[−1,4] = 25
    #    GIoU = 9/23 − 2/25 = 179/575 -> loss 396/575 = 0.688696
    # torchvision's eps (1e-7) smoothing: iou = I/(U+eps), penalty (C−U)/(C+eps): negligible here
    loss_a, loss_b = 233 / 275, 396 / 575
    ctr_a, ctr_b = math.sqrt(1 / 3), math.sqrt(1.0 * 1 / 4)  # (1/3)·(2/2); (2/2)·(1/4)
    expected = (ctr_a * loss_a + ctr_b * loss_b) / (ctr_a + ctr_b)  # Σ ctr·(1−GIoU) / Σ ctr = 0.773677
    assert expected == pytest.approx(0.773677, abs=1e-6)
    assert out["loss_fcos_loc"].item() == pytest.approx(expected, rel=1e-6)


def test_centerness_bce_normalised_by_num_pos():
    cfg = get_config("r50_1x")
    out = fcos_losses(*_fcos_inputs(), cfg)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    # BCE-with-logits(x, t) = softplus(x) − x·t
    bce_a = softplus(0.3) - 0.3 * math.sqrt(1 / 3)    # 0.854355 − 0.173205 = 0.681150
    bce_b = softplus(-0.7) + 0.7 * 0.5                # 0.403186 + 0.35 = 0.753186
    assert out["loss_fcos_ctr"].item() == pytest.approx((bce_a + bce_b) / 2, rel=1e-6)  # / num_pos = 2


# ============================================================================== target assignment
def test_assign_center_region_is_clipped_strict_and_around_the_center_of_mass():
    # one level, stride 8: x in 4,12,...,36; y in 4,12,20
    locs = torch.tensor(ref_grid(3, 5, 8), dtype=torch.float32)
    n = len(locs)
    s, lo, hi = torch.full((n,), 8.0), torch.full((n,), -1.0), torch.full((n,), 64.0)
    box = torch.tensor([[0.0, 0.0, 40.0, 18.0]])
    com = torch.tensor([[16.0, 11.0]])  # not the box centre (20, 9)
    gt, ltrb = assign_targets(locs, s, lo, hi, box, com, 1.5)
    # region x: 16 ± 12 = (4, 28), strictly inside -> x in {12, 20} (4 and 28 lie on the border)
    # region y: 11 ± 12 = (−1, 23) clipped to the box -> (0, 18) -> y in {4, 12} (20 is outside the box)
    got = {tuple(p): tuple(d) for p, d, g in zip(locs.tolist(), ltrb.tolist(), gt.tolist()) if g == 0}
    assert got == {(12.0, 4.0): (12.0, 4.0, 28.0, 14.0), (20.0, 4.0): (20.0, 4.0, 20.0, 14.0),
                   (12.0, 12.0): (12.0, 12.0, 28.0, 6.0), (20.0, 12.0): (20.0, 12.0, 20.0, 6.0)}
    assert set(gt.tolist()) == {-1, 0}


def test_assign_size_ranges_are_inclusive_on_both_bounds():
    loc = torch.tensor([[100.0, 40.0], [100.0, 40.0], [100.0, 40.0], [99.0, 40.0]])
    strides = torch.tensor([16.0, 32.0, 8.0, 16.0])
    lo = torch.tensor([64.0, 128.0, -1.0, 64.0])
    hi = torch.tensor([128.0, 256.0, 64.0, 128.0])
    box = torch.tensor([[36.0, 0.0, 228.0, 80.0]])
    gt, ltrb = assign_targets(loc, strides, lo, hi, box, torch.tensor([[100.0, 40.0]]), 1.5)
    # (100, 40): ltrb (64, 40, 128, 40), max 128: P4 [64,128] yes (upper bound), P5 [128,256] yes (lower
    # bound), P3 [−1,64] no; (99, 40): ltrb (63, 40, 129, 40), max 129 > 128: no
    assert gt.tolist() == [0, 0, -1, -1]
    assert ltrb[0].tolist() == [64.0, 40.0, 128.0, 40.0] and ltrb[1].tolist() == [64.0, 40.0, 128.0, 40.0]


def test_assign_smallest_box_area_wins_then_lowest_index():
    loc = torch.tensor([[20.0, 20.0], [33.0, 20.0], [5.0, 5.0], [50.0, 50.0]])
    n = len(loc)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0],    # area 1600
                          [10.0, 10.0, 30.0, 34.0],  # area 20·24 = 480
                          [12.0, 8.0, 36.0, 28.0],   # area 24·20 = 480 (tie with GT 1)
                          [0.0, 44.0, 4.0, 48.0]])   # area 16, contains none of the locations
    centers = torch.tensor([[20.0, 20.0], [20.0, 22.0], [24.0, 18.0], [2.0, 46.0]])
    gt, ltrb = assign_targets(loc, torch.full((n,), 8.0), torch.full((n,), -1.0), torch.full((n,), 64.0),
                              boxes, centers, 100.0)
    # (20,20): in GT 0, 1, 2 -> min area 480, tie 1 vs 2 -> 1; (33,20): x > 30 so not GT 1 -> GT 2 (480 < 1600)
    # (5,5): only GT 0; (50,50): none
    assert gt.tolist() == [1, 2, 0, -1]
    assert ltrb[0].tolist() == [10.0, 10.0, 10.0, 14.0] and ltrb[1].tolist() == [21.0, 12.0, 3.0, 8.0]
    assert ltrb[2].tolist() == [5.0, 5.0, 35.0, 35.0]


def test_assign_matches_reference_on_random_boxes_and_levels():
    rng = np.random.default_rng(5)
    size, bounds, strides = 160, (-1.0, 64.0, 128.0, 256.0, 512.0, 1e8), (8, 16, 32, 64, 128)
    locs, st, lo, hi = [], [], [], []
    for lvl, s in enumerate(strides):
        g = ref_grid(-(-size // s), -(-size // s), s)
        locs.append(g)
        st += [s] * len(g)
        lo += [bounds[lvl]] * len(g)
        hi += [bounds[lvl + 1]] * len(g)
    locs = np.concatenate(locs)
    boxes, centers = [], []
    for _ in range(9):  # integer boxes and centres: region borders and max(ltrb) hit the grid exactly
        x1, y1 = rng.integers(0, 100, 2)
        w, h = rng.integers(8, 150, 2)
        x2, y2 = min(x1 + w, size), min(y1 + h, size)
        boxes.append((float(x1), float(y1), float(x2), float(y2)))
        centers.append((float(rng.integers(x1, x2)), float(rng.integers(y1, y2))))
    boxes.append(boxes[2][:2] + (boxes[2][0] + (boxes[2][3] - boxes[2][1]), boxes[2][1] + (boxes[2][2] - boxes[2][0])))
    centers.append(centers[2])  # a transposed twin of GT 2: same area, higher index
    exp_gt, exp_ltrb = ref_assign(locs, st, lo, hi, boxes, centers, 1.5)
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    gt, ltrb = assign_targets(t(locs), t(st), t(lo), t(hi), t(boxes), t(centers), 1.5)
    assert gt.tolist() == exp_gt
    assert len(set(exp_gt)) >= 5 and sum(g >= 0 for g in exp_gt) >= 20  # a non-trivial assignment
    assert len({s for s, g in zip(st, exp_gt) if g >= 0}) >= 2  # positives on several levels
    pos = np.array(exp_gt) >= 0
    assert np.allclose(ltrb.numpy()[pos], np.array(exp_ltrb)[pos])


def test_centers_of_mass_are_mean_pixel_indices():
    m = torch.zeros(1, 5, 6, dtype=torch.bool)
    for y, x in [(0, 1), (0, 2), (3, 2), (4, 5)]:
        m[0, y, x] = True
    # cx = (1+2+2+5)/4 = 2.5, cy = (0+0+3+4)/4 = 1.75 (the box centre would be (3.5, 2.5))
    assert centers_of_mass(m).tolist() == [[2.5, 1.75]]
    assert masks_to_edge_boxes(m).tolist() == [[1.0, 0.0, 6.0, 5.0]]


def test_training_targets_reach_the_losses_in_stride_units(monkeypatch):
    """Integration of _losses: all-level assignment, ltrb / stride, global GT index, stride-4 targets
    subsampled [2::4, 2::4], annotated = any GT and not ignored — against the references above."""
    torch.manual_seed(0)
    cfg = get_config("tiny")
    model = EntityModel(cfg).train()
    H = W = 128
    masks0 = np.zeros((3, H, W), dtype=bool)
    masks0[0, 4:40, 6:50] = True
    masks0[0, 4:12, 50:60] = True       # a notch: centre of mass off the box centre
    masks0[1, 44:124, 10:118] = True    # big: max(ltrb) > 64 near its centre -> P4
    masks0[2, 10:30, 70:100] = True
    masks1 = np.zeros((2, 96, 112), dtype=bool)  # smaller than the padded batch
    masks1[0, 0:50, 0:60] = True
    masks1[1, 50:90, 20:112] = True
    ignore1 = np.zeros((96, 112), dtype=bool)
    ignore1[0:10, 0:30] = True  # e.g. crowd on top of GT 0
    targets = [{"masks": torch.tensor(masks0)}, {"masks": torch.tensor(masks1), "ignore": torch.tensor(ignore1)}]

    seen = {}
    real_fcos, real_bank, real_sup = em.fcos_losses, em.mask_bank_losses, em.overlap_suppression_loss

    def spy_fcos(*args, **kwargs):  # (cls, reg, ctr, pos, ltrb targets, cfg)
        seen["maps"] = [a.detach().clone() for a in args[:3]]
        seen["pos"], seen["ltrb"] = args[3].clone(), args[4].clone()
        return real_fcos(*args, **kwargs)

    def spy_bank(*args, **kwargs):  # (logits, gt masks of the proposals, path weights, ...)
        seen["bank_masks"] = args[1].clone()
        return real_bank(*args, **kwargs)

    def spy_sup(*args, **kwargs):  # (logits111, proposal GT index, GT image, GT masks, annotated, ...)
        seen.update(inst_gt=args[1].clone(), gt_image=args[2].clone(), sup_masks=args[3].clone(),
                    annotated=args[4].clone())
        return real_sup(*args, **kwargs)

    monkeypatch.setattr(em, "fcos_losses", spy_fcos)
    monkeypatch.setattr(em, "mask_bank_losses", spy_bank)
    monkeypatch.setattr(em, "overlap_suppression_loss", spy_sup)
    images = torch.randn(2, 3, H, W)
    model(images, targets)
    with torch.no_grad():
        cls_m, reg_m, ctr_m = model._features(images)[:3]  # train-mode BN: the same batch statistics
    # flattened as level after level, row-major locations, the 4 ltrb channels last
    def flat(maps, c):
        return np.concatenate([m.numpy().reshape(2, c, -1).transpose(0, 2, 1) for m in maps], 1)

    assert np.allclose(seen["maps"][0].numpy(), flat(cls_m, 1)[..., 0], atol=1e-5)
    assert np.allclose(seen["maps"][1].numpy(), flat(reg_m, 4), atol=1e-5)
    assert np.allclose(seen["maps"][2].numpy(), flat(ctr_m, 1)[..., 0], atol=1e-5)

    bounds, strides = (-1.0, 64.0, 128.0, 256.0, 512.0, 1e8), (8, 16, 32, 64, 128)
    locs, st, lo, hi = [], [], [], []
    for lvl, s in enumerate(strides):
        g = ref_grid(-(-H // s), -(-W // s), s)
        locs.append(g)
        st += [s] * len(g)
        lo += [bounds[lvl]] * len(g)
        hi += [bounds[lvl + 1]] * len(g)
    locs = np.concatenate(locs)
    assert seen["pos"].shape == (2, len(locs))
    exp_pos, exp_ltrb, exp_inst, offset = [], [], [], 0
    for m in (masks0, masks1):
        gts, ltrbs = ref_assign(locs, st, lo, hi, ref_edge_boxes(m), ref_centers(m), 1.5)
        exp_pos.append([g >= 0 for g in gts])
        exp_ltrb.append(np.array(ltrbs) / np.array(st)[:, None])  # stride units
        exp_inst += [g + offset for g in gts if g >= 0]
        offset += len(m)
    exp_pos = np.array(exp_pos)
    assert seen["pos"].numpy().tolist() == exp_pos.tolist()
    assert exp_pos[:, 64 * 4:].any()  # positives above P3 (P4 starts after 16·16 = 256 locations)
    assert np.allclose(seen["ltrb"].numpy()[exp_pos], np.stack(exp_ltrb)[exp_pos], atol=1e-5)
    # fewer positives than 120 per image: every positive is a proposal, in (image, location) order
    assert seen["inst_gt"].tolist() == exp_inst
    assert seen["gt_image"].tolist() == [0, 0, 0, 1, 1]
    pad1 = np.zeros((2, H, W), dtype=bool)
    pad1[:, :96, :112] = masks1
    s4 = np.concatenate((masks0, pad1))[:, 2::4, 2::4]
    assert seen["sup_masks"].numpy().tolist() == s4.tolist()
    assert seen["bank_masks"].numpy().tolist() == s4[exp_inst].tolist()
    ann1 = pad1.any(0)
    ann1[:96, :112] &= ~ignore1
    ann = np.stack((masks0.any(0), ann1))[:, 2::4, 2::4]
    assert seen["annotated"].numpy().tolist() == ann.tolist()


# =========================================================================================== Dice
def test_dice_loss_fractional_squared_denominators():
    probs = torch.tensor([[[0.2, 0.7], [0.9, 0.4]], [[0.5, 0.1], [0.3, 0.8]]], dtype=torch.float64)
    target = torch.tensor([[[0, 1], [1, 0]], [[1, 1], [0, 0]]], dtype=torch.float64)
    got = dice_loss(probs, target)
    # mask 0: Σxt = 0.7+0.9 = 1.6; Σx² = .04+.49+.81+.16 = 1.5; Σt² = 2 -> 1 − 3.2/3.50001 = 0.0857167
    #         (unsquared Σx = 2.2 would give 1 − 3.2/4.2 = 0.238)
    # mask 1: Σxt = 0.6; Σx² = .25+.01+.09+.64 = 0.99; Σt² = 2 -> 1 − 1.2/2.99001 = 0.598663
    assert got.tolist() == pytest.approx([1 - 3.2 / 3.50001, 1 - 1.2 / 2.99001], abs=1e-9)


def test_dice_loss_eps_is_1e_5_on_small_masks():
    probs = torch.tensor([[0.002, 0.001]], dtype=torch.float64)
    target = torch.tensor([[0.003, 0.001]], dtype=torch.float64)
    # Σxt = 7e-6; Σx² = 5e-6; Σt² = 1e-5; + eps 1e-5 -> 1 − 1.4e-5/2.5e-5 = 0.44 (no eps: 0.0667)
    assert dice_loss(probs, target).item() == pytest.approx(0.44, abs=1e-9)


# ============================================================================ aligned_bilinear
def test_aligned_bilinear_hand_values():
    # f=2 on [0, 4]: pad -> [0,4,4]; align_corners to 5 samples at 0,.5,1,1.5,2 -> [0,2,4,4,4];
    # pad 1 left -> [0,0,2,4,4,4]; crop 4 -> [0,0,2,4]
    x = torch.tensor([[[[0.0, 4.0]]]])
    assert aligned_bilinear(x, 2)[0, 0].tolist() == [[0.0, 0.0, 2.0, 4.0]] * 2
    # f=4 on [0, 8]: 9 samples at k/4 -> [0,2,4,6,8,8,8,8,8]; pad 2 left, crop 8 -> [0,0,0,2,4,6,8,8]
    x = torch.tensor([[[[0.0, 8.0]]]])
    assert aligned_bilinear(x, 4)[0, 0].tolist() == [[0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0, 8.0]] * 4


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_aligned_bilinear_matches_reference(factor):
    torch.manual_seed(factor)
    x = torch.randn(2, 3, 3, 5)
    assert np.allclose(aligned_bilinear(x, factor).numpy(), ref_aligned_bilinear(x.numpy(), factor), atol=1e-5)


# =============================================================== grid, relative coordinates, params
def test_grid_locations_formula():
    assert grid_locations(2, 3, 16).tolist() == [[8.0, 8.0], [24.0, 8.0], [40.0, 8.0],
                                                 [8.0, 24.0], [24.0, 24.0], [40.0, 24.0]]


def test_relative_coords_sign_and_scale():
    inst = torch.tensor([[100.0, 36.0], [4.0, 12.0]])
    soi = torch.tensor([128.0, 512.0])
    rel = relative_coords(inst, soi, 2, 3, 8)  # grid x 4,12,20; y 4,12
    assert rel.shape == (2, 2, 6)
    # instance 0: rel_x = (100 − x)/128 -> 96/128, 88/128, 80/128; rel_y = (36 − y)/128 -> 32/128, 24/128
    assert rel[0, 0].tolist() == pytest.approx([0.75, 0.6875, 0.625] * 2)
    assert rel[0, 1].tolist() == pytest.approx([0.25] * 3 + [0.1875] * 3)
    # instance 1 (at a grid point): rel_x = (4 − x)/512 -> 0, −8/512, −16/512; rel_y (12 − y)/512
    assert rel[1, 0].tolist() == pytest.approx([0.0, -0.015625, -0.03125] * 2)
    assert rel[1, 1].tolist() == pytest.approx([0.015625] * 3 + [0.0] * 3)


def test_head_inputs_channel_order_and_soi_per_level():
    torch.manual_seed(0)
    head = DynamicMaskHead(get_config("tiny"))
    feats = torch.randn(2, 8, 2, 3)
    locs = torch.tensor([[100.0, 36.0], [20.0, 4.0]])
    levels = torch.tensor([1, 4])  # soi 128 and 1024
    x = head.head_inputs(feats, torch.tensor([1, 0]), locs, levels)
    assert x.shape == (2, 10, 2, 3)
    assert x[0, 0].flatten().tolist() == pytest.approx([0.75, 0.6875, 0.625] * 2)      # rel_x first
    assert x[0, 1].flatten().tolist() == pytest.approx([0.25] * 3 + [0.1875] * 3)      # then rel_y
    # instance 1: (20 − x)/1024 -> 16/1024, 8/1024, 0; (4 − y)/1024 -> 0, −8/1024
    assert x[1, 0].flatten().tolist() == pytest.approx([0.015625, 0.0078125, 0.0] * 2)
    assert x[1, 1].flatten().tolist() == pytest.approx([0.0] * 3 + [-0.0078125] * 3)
    assert torch.equal(x[0, 2:], feats[1]) and torch.equal(x[1, 2:], feats[0])  # then the image's features


def test_split_params_layout():
    params = torch.arange(169.0)[None].repeat(2, 1) + torch.tensor([[0.0], [1000.0]])
    (w1, b1), (w2, b2), (w3, b3) = split_params(params, 10, 8)
    assert (w1.shape, w2.shape, w3.shape, b1.shape, b2.shape, b3.shape) == \
        ((2, 8, 10), (2, 8, 8), (2, 1, 8), (2, 8, 1), (2, 8, 1), (2, 1, 1))
    assert w1[0, 2, 7].item() == 27            # 2·10 + 7
    assert w1[1, 7, 9].item() == 1079          # 1000 + 79
    assert w2[1, 3, 5].item() == 1109          # 1000 + 80 + 3·8 + 5
    assert w3[0, 0, 6].item() == 150           # 144 + 6
    assert b1[1, 4, 0].item() == 1156          # 1000 + 152 + 4
    assert b2[0, 7, 0].item() == 167           # 160 + 7
    assert b3[1, 0, 0].item() == 1168          # 1000 + 168


def test_dynamic_head_paths_match_reference():
    torch.manual_seed(2)
    head = DynamicMaskHead(get_config("tiny"))
    for conv in head.static:  # beyond the near-zero init, so every path is clearly different
        torch.nn.init.normal_(conv.weight, std=0.3)
        torch.nn.init.normal_(conv.bias, std=0.3)
    x = torch.randn(3, 10, 4, 5)
    params = torch.randn(3, 169) * 0.5
    out = head(x, params, PATH_CODES)
    static = [(c.weight.detach().double().numpy(), c.bias.detach().double().numpy()) for c in head.static]
    for code in PATH_CODES:
        ref = ref_dynamic_paths(x.double().numpy(), params.double().numpy(), static, code)
        assert np.allclose(out[code].detach().numpy(), ref, atol=1e-4), code


def test_mask_probs_end_to_end_reference():
    torch.manual_seed(4)
    head = DynamicMaskHead(get_config("tiny"))
    feats = torch.randn(1, 8, 3, 4)
    params = torch.randn(2, 169) * 0.5
    locs = torch.tensor([[20.0, 12.0], [100.0, 60.0]])
    levels = torch.tensor([0, 2])  # soi 64, 256
    got = mask_probs(head, feats, params, locs, levels)
    grid = ref_grid(3, 4, 8)
    soi = np.array([64.0, 256.0])
    rel = (locs.numpy()[:, None, :] - grid[None]) / soi[:, None, None]  # (L − loc) / soi
    rel = rel.transpose(0, 2, 1).reshape(2, 2, 3, 4)
    x = np.concatenate((rel, np.repeat(feats.double().numpy(), 2, 0)), 1)
    logits = ref_dynamic_paths(x, params.double().numpy(), [], "111")
    ref = ref_sigmoid(ref_aligned_bilinear(logits, 2))[:, 0]
    assert got.shape == (2, 6, 8) and np.allclose(got.detach().numpy(), ref, atol=1e-5)


# ========================================================================== controller, branch, head
def test_coord_maps_x_then_y_linspace():
    c = coord_maps(torch.zeros(2, 4, 3, 5))
    assert c.shape == (2, 2, 3, 5)
    assert c[1, 0].tolist() == [[-1.0, -0.5, 0.0, 0.5, 1.0]] * 3         # x: linspace(−1, 1, W=5)
    assert c[1, 1].tolist() == [[-1.0] * 5, [0.0] * 5, [1.0] * 5]        # y: linspace(−1, 1, H=3)


def test_controller_input_is_tower_features_then_x_then_y():
    torch.manual_seed(0)
    ctrl = Controller(get_config("tiny"))  # 64 tower channels
    seen = []
    hook = ctrl.convs[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    towers = [torch.randn(2, 64, 3, 5), torch.randn(2, 64, 2, 2)]
    with torch.no_grad():
        params = ctrl(towers)
    hook.remove()
    assert [p.shape for p in params] == [(2, 169, 3, 5), (2, 169, 2, 2)]
    inp = seen[0]
    assert inp.shape == (2, 66, 3, 5) and torch.equal(inp[:, :64], towers[0])
    assert inp[1, 64].tolist() == [[-1.0, -0.5, 0.0, 0.5, 1.0]] * 3     # channel 64: x
    assert inp[1, 65].tolist() == [[-1.0] * 5, [0.0] * 5, [1.0] * 5]    # channel 65: y
    assert seen[1][0, 64].tolist() == [[-1.0, 1.0]] * 2 and seen[1][0, 65].tolist() == [[-1.0] * 2, [1.0] * 2]


def test_mask_branch_fuses_p4_x2_and_p5_x4_aligned():
    torch.manual_seed(0)
    branch = MaskBranch(get_config("tiny")).eval()
    p3, p4, p5 = torch.randn(1, 64, 8, 6), torch.randn(1, 64, 4, 3), torch.randn(1, 64, 2, 2)
    with torch.no_grad():
        got = branch(p3, p4, p5)
        r = [branch.refine[i](p).double().numpy() for i, p in enumerate((p3, p4, p5))]
        fused = r[0] + ref_aligned_bilinear(r[1], 2) + ref_aligned_bilinear(r[2], 4)[:, :, :8, :6]
        ref = branch.out_conv(branch.tower(torch.tensor(fused, dtype=torch.float32)))
    assert got.shape == (1, 8, 8, 6) and torch.allclose(got, ref, atol=1e-4)


def test_fcos_head_prior_scale_relu_and_towers():
    torch.manual_seed(0)
    cfg = get_config("tiny")
    head = FCOSHead(cfg)
    assert head.cls_logits.bias.item() == pytest.approx(-math.log(0.99 / 0.01), rel=1e-6)  # −4.59512
    with torch.no_grad():
        head.scales.copy_(torch.tensor([1.0, -1.0, 2.0, 0.5, 3.0]))
        for conv in (head.bbox_pred, head.ctrness, head.cls_logits):
            torch.nn.init.normal_(conv.weight, std=0.1)
    feats = [torch.randn(1, 64, s, s) for s in (4, 2, 2, 1, 1)]
    with torch.no_grad():
        cls, reg, ctr, towers = head(feats)
        for lvl, f in enumerate(feats):
            t = head.bbox_tower(f)
            scale = [1.0, -1.0, 2.0, 0.5, 3.0][lvl]
            assert torch.allclose(reg[lvl], torch.clamp(scale * head.bbox_pred(t), min=0), atol=1e-6)
            assert torch.allclose(ctr[lvl], head.ctrness(t), atol=1e-6)  # centerness on the bbox tower
            assert torch.allclose(cls[lvl], head.cls_logits(head.cls_tower(f)), atol=1e-6)
            assert torch.allclose(towers[lvl], t)  # the controller reads the bbox tower
    assert (reg[1] == 0).float().mean() > 0.2  # the negative scale really was clamped somewhere


def test_prepare_images_normalises_then_pads_with_zero():
    cfg = get_config("r50_1x")
    im = torch.zeros(3, 2, 3, dtype=torch.uint8)
    im[0, 0, 0], im[1, 1, 2], im[2, 0, 1] = 255, 10, 200
    batch, sizes = prepare_images([im], cfg)
    assert batch.shape == (1, 3, 32, 32) and sizes == [(2, 3)]
    assert batch[0, 0, 0, 0].item() == pytest.approx((255 - 123.675) / 58.395, rel=1e-6)   # 2.248908
    assert batch[0, 1, 1, 2].item() == pytest.approx((10 - 116.28) / 57.12, rel=1e-6)      # −1.860644
    assert batch[0, 2, 0, 1].item() == pytest.approx((200 - 103.53) / 57.375, rel=1e-6)    # 1.681394
    assert batch[0, 0, 1, 1].item() == pytest.approx(-123.675 / 58.395, rel=1e-6)
    assert batch[0, :, 2:, :].abs().sum() == 0 and batch[0, :, :, 3:].abs().sum() == 0


# ==================================================================== kernel bank path weights
def test_paper_path_weights_per_code():
    assert dict(get_config("r50_1x").path_weights) == PAPER_WEIGHTS


def _bank_inputs(seed=3):
    g = torch.Generator().manual_seed(seed)
    logits = {c: torch.randn(3, 1, 3, 4, generator=g) * 2 for c in PATH_CODES}
    gt = torch.rand(3, 6, 8, generator=g) > 0.5
    return logits, gt


def _ref_bank(logits, gt, code):
    return ref_dice(ref_sigmoid(ref_aligned_bilinear(logits[code].numpy(), 2))[:, 0], gt.numpy()).mean()


def test_mask_bank_losses_weight_per_code():
    logits, gt = _bank_inputs()
    got = {k: v.item() for k, v in mask_bank_losses(logits, gt, PAPER_WEIGHTS).items()}
    expected = {f"loss_mask_bank_{c}": PAPER_WEIGHTS[c] * _ref_bank(logits, gt, c) for c in PATH_CODES}
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), k
    # distinct weights per code, some zero or missing: each loss carries its own code's weight
    weights = {"111": 1.0, "110": 0.5, "101": 0.0, "100": 2.0, "011": 0.3, "001": 0.1}  # "010" missing
    got = {k: v.item() for k, v in mask_bank_losses(logits, gt, weights).items()}
    expected = {f"loss_mask_bank_{c}": w * _ref_bank(logits, gt, c) for c, w in weights.items() if w > 0}
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), k


# ========================================================================= overlap suppression
def ref_suppression(logits, gt_inds, gt_image, gt_masks, annotated):
    """Spec section 5: mean of path-111 logits per GT with proposals, ×2 aligned upsampling, softmax
    over the image's participating GTs per pixel, unannotated pixels set to 0, Dice, mean over GTs."""
    uniq = sorted(set(gt_inds))
    mean = {g: np.mean([logits[i, 0] for i in range(len(gt_inds)) if gt_inds[i] == g], axis=0) for g in uniq}
    up = {g: ref_aligned_bilinear(mean[g], 2) for g in uniq}
    dices = []
    for g in uniq:
        same = [h for h in uniq if gt_image[h] == gt_image[g]]
        den = sum(np.exp(up[h]) for h in same)
        p = np.exp(up[g]) / den * annotated[gt_image[g]]
        dices.append(ref_dice(p[None], gt_masks[g][None])[0])
    return float(np.mean(dices))


def test_overlap_suppression_matches_reference_on_two_images():
    torch.manual_seed(11)
    # image 0: GTs 0, 1, 2 (GT 2 has no proposal: out of the softmax, its pixels still annotated)
    # image 1: GTs 3, 4; void pixels (id 0) in both images
    ids0 = np.array([[1, 1, 1, 2, 2, 2, 3, 3]] * 3 + [[1, 1, 0, 0, 2, 2, 3, 3]] * 3)
    ids1 = np.array([[4, 4, 4, 4, 5, 5, 0, 0]] * 2 + [[4, 4, 5, 5, 5, 5, 5, 0]] * 4)
    gt_masks = np.concatenate([np.stack([ids0 == k for k in (1, 2, 3)]), np.stack([ids1 == k for k in (4, 5)])])
    annotated = np.stack((ids0 > 0, ids1 > 0))
    gt_image = [0, 0, 0, 1, 1]
    gt_inds = [3, 0, 1, 0, 4, 3, 0]  # uneven: GT 0 ×3, GT 1 ×1, GT 3 ×2, GT 4 ×1
    logits = torch.randn(7, 1, 3, 4) * 2
    got = overlap_suppression_loss(logits, torch.tensor(gt_inds), torch.tensor(gt_image),
                                   torch.tensor(gt_masks), torch.tensor(annotated))
    expected = ref_suppression(logits.double().numpy(), gt_inds, gt_image, gt_masks, annotated)
    assert got.item() == pytest.approx(expected, rel=1e-5)


# ====================================================================== detection selection
def ref_select(cls, reg, ctr, locs, strides, image_size, thresh, topk, nms_th, max_det):
    """Spec section 8 steps 2-5 (+ clipping to the image and dropping empty boxes, step 7)."""
    boxes, scores, idx, levels = [], [], [], []
    for level, s in enumerate(strides):
        p = ref_sigmoid(cls[level])
        cand = np.nonzero(p > thresh)[0]                       # threshold on p alone
        prod = p[cand] * ref_sigmoid(ctr[level][cand])         # then multiply by sigmoid(ctr)
        for j in np.argsort(-prod, kind="stable")[: min(len(cand), topk)]:
            i = cand[j]
            (x, y), (l, t, r, b) = locs[level][i], reg[level][i] * s
            boxes.append((x - l, y - t, x + r, y + b))
            scores.append(math.sqrt(prod[j]))                  # score = sqrt(p·ctr)
            idx.append(i)
            levels.append(level)
    boxes, scores = np.array(boxes).reshape(-1, 4), np.array(scores)
    keep = nms(torch.tensor(boxes), torch.tensor(scores), nms_th).numpy()[:max_det]
    h, w = image_size
    out = []
    for k in keep:
        x1, y1, x2, y2 = boxes[k]
        bx = (min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h))
        if bx[2] > bx[0] and bx[3] > bx[1]:
            out.append((bx, scores[k], idx[k], locs[levels[k]][idx[k]], levels[k]))
    return out


def _check_selection(got, ref):
    boxes, scores, idx, locs, levels = got
    assert len(ref) == len(scores)
    assert idx.tolist() == [r[2] for r in ref] and levels.tolist() == [r[4] for r in ref]
    assert np.allclose(scores.numpy(), [r[1] for r in ref], atol=1e-6)
    assert np.allclose(boxes.numpy(), np.array([r[0] for r in ref]).reshape(-1, 4), atol=1e-3)
    assert np.allclose(locs.numpy(), np.array([r[3] for r in ref]).reshape(-1, 2))


@pytest.mark.parametrize("topk,max_det", [(1000, 100), (6, 10)])
def test_select_detections_matches_reference(topk, max_det):
    cfg = get_config("r50_1x", pre_nms_topk=topk, detections_per_image=max_det)
    g = torch.Generator().manual_seed(17)
    h, w = 96, 80
    cls, reg, ctr, locs = [], [], [], []
    for s in cfg.strides:
        gh, gw = -(-h // s), -(-w // s)
        n = gh * gw
        cls.append(torch.rand(n, generator=g) * 4 - 4.5)   # p in (0.011, 0.38): many near the 0.05 threshold
        ctr.append(torch.rand(n, generator=g) * 6 - 4)      # sigmoid(ctr) in (0.018, 0.88)
        reg.append(torch.rand(n, 4, generator=g) * 1.5 + 0.05)
        locs.append(torch.tensor(ref_grid(gh, gw, s), dtype=torch.float32))
    got = select_detections(cls, reg, ctr, locs, (h, w), cfg)
    ref = ref_select([c.double().numpy() for c in cls], [r.double().numpy() for r in reg],
                     [c.double().numpy() for c in ctr], [lc.double().numpy() for lc in locs], cfg.strides,
                     (h, w), 0.05, topk, 0.6, max_det)
    _check_selection(got, ref)
    assert len(ref) >= 8 and len(set(r[4] for r in ref)) >= 2
    assert (got[1][:-1] >= got[1][1:]).all()  # scores descending


def test_select_detections_keeps_top_1000_per_level_before_nms():
    """P3 of a 256×256 image has 1024 candidates: the 1000 best share one big box (NMS keeps one),
    the 24 worst are small disjoint boxes that only survive if the per-level cut is not made."""
    cfg = get_config("r50_1x")
    h = w = 256
    cls, reg, ctr, locs = [], [], [], []
    for lvl, s in enumerate(cfg.strides):
        gh, gw = h // s, w // s
        n = gh * gw
        loc = torch.tensor(ref_grid(gh, gw, s), dtype=torch.float32)
        if lvl == 0:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
            c = torch.empty(n)
            c[order] = torch.linspace(2.0, -2.0, n)        # p in (0.12, 0.88), all candidates, distinct
            r = torch.full((n, 4), 0.25)                    # 4×4 px boxes, disjoint on the 8-px grid
            big = order[:1000]
            r[big] = (torch.stack((loc[big, 0], loc[big, 1], w - loc[big, 0], h - loc[big, 1]), 1) / s)
        else:
            c, r = torch.full((n,), -6.0), torch.ones(n, 4)  # p = 0.0025: no candidates
        cls.append(c)
        ctr.append(torch.zeros(n))
        reg.append(r)
        locs.append(loc)
    got = select_detections(cls, reg, ctr, locs, (h, w), cfg)
    ref = ref_select([c.double().numpy() for c in cls], [r.double().numpy() for r in reg],
                     [c.double().numpy() for c in ctr], [lc.double().numpy() for lc in locs], cfg.strides,
                     (h, w), 0.05, 1000, 0.6, 100)
    assert len(ref) == 1 and ref[0][2] == int(order[0])  # the best one, the whole image
    _check_selection(got, ref)


def test_inference_feeds_per_location_maps_locations_and_params(monkeypatch):
    """EntityModel.forward (eval): one image's flattened maps and stride-s locations reach
    select_detections, and each detection's 169 parameters are the controller output at its level/index."""
    torch.manual_seed(0)
    cfg = get_config("tiny", score_thresh=0.0, detections_per_image=20, nms_thresh=1.0)  # NMS keeps all
    model = EntityModel(cfg).eval()
    with torch.no_grad():  # boxes of a few strides (not the near-empty boxes of the init), scores spread
        torch.nn.init.normal_(model.head.bbox_pred.weight, std=0.5)
        torch.nn.init.normal_(model.head.cls_logits.weight, std=0.5)
    images = torch.randn(2, 3, 64, 96)
    seen = {}
    real_sel, real_mp = em.select_detections, em.mask_probs

    def spy_sel(*args, **kwargs):  # (cls, reg, ctr, locations, image size, cfg)
        out = real_sel(*args, **kwargs)
        seen.setdefault("sel", []).append((args[:4], out))
        return out

    def spy_mp(*args, **kwargs):  # (head, mask feats, params, locations, levels)
        seen.setdefault("mp", []).append(args[1:])
        return real_mp(*args, **kwargs)

    monkeypatch.setattr(em, "select_detections", spy_sel)
    monkeypatch.setattr(em, "mask_probs", spy_mp)
    with torch.no_grad():
        model(images)
        cls_m, reg_m, ctr_m, kernel_feats, mask_feats, _ = model._features(images)
        params_m = [model.controller.out_conv(f) for f in kernel_feats]
    for b in range(2):
        (cls, reg, ctr, locs), (_, _, idx, det_locs, levels) = seen["sel"][b]
        for lvl, s in enumerate(cfg.strides):
            h, w = cls_m[lvl].shape[-2:]
            assert np.array_equal(locs[lvl].numpy(), ref_grid(h, w, s))
            assert np.allclose(cls[lvl].numpy(), cls_m[lvl][b, 0].numpy().reshape(-1), atol=1e-6)
            assert np.allclose(ctr[lvl].numpy(), ctr_m[lvl][b, 0].numpy().reshape(-1), atol=1e-6)
            assert np.allclose(reg[lvl].numpy(), reg_m[lvl][b].numpy().reshape(4, -1).T, atol=1e-6)
        feats, params, mp_locs, mp_levels = seen["mp"][b]
        assert torch.equal(feats, mask_feats[b: b + 1]) and len(idx) >= 10 and len(set(levels.tolist())) >= 2
        assert torch.equal(mp_locs, det_locs) and torch.equal(mp_levels, levels)
        for k, (lvl, i) in enumerate(zip(levels.tolist(), idx.tolist())):
            w = params_m[lvl].shape[-1]
            assert torch.allclose(params[k], params_m[lvl][b, :, i // w, i % w], atol=1e-5), (b, k)


# ============================================================================= paste and merge
def test_paste_and_merge_hand_case_priority_drop_and_rescore():
    cfg = get_config("tiny")
    # 4×4 stride-4 probabilities for a 16×16 image, constant along x; per row (s4) values:
    probs = torch.zeros(4, 4, 4)
    probs[0] = torch.tensor([0.8, 0.8, 0.8, 0.1])[:, None]  # score 0.9
    probs[1] = torch.tensor([0.8, 0.8, 0.8, 0.3])[:, None]  # score 0.8
    probs[2] = torch.tensor([0.9, 0.9, 0.0, 0.0])[:, None]  # score 0.7
    probs[3] = torch.tensor([0.0, 0.0, 0.2, 0.9])[:, None]  # score 0.6
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # pasted row y samples s4 row position max(y−2, 0)/4 (clamped to 3):
    #   det 0: y ≤ 10 -> 0.8; y=11 (2.25) -> .8·.75+.1·.25 = 0.625; y=12 (2.5) -> 0.45  => rows 0..11
    #   det 1: y ≤ 10 -> 0.8; y=11 -> 0.675; y=12 -> .8·.5+.3·.5 = 0.55; y=13 (2.75) -> 0.425 => rows 0..12
    #   det 2: y ≤ 6 -> 0.9; y=7 (1.25) -> 0.675; y=8 (1.5) -> 0.45 => rows 0..7: all under det 0 -> dropped
    #   det 3: y=11 -> .2·.75+.9·.25 = 0.375; y=12 -> 0.55; y=13 -> 0.725; y ≥ 14 -> 0.9 => rows 12..15
    # priority by detection score: rows 0..11 -> det 0, row 12 -> det 1 (1 row: kept, fix 10.15),
    # rows 13..15 -> det 3; det 2 is empty and removed, so the ids are 1, 2, 3
    out = paste_and_merge(probs, scores, (16, 16), (16, 16), cfg)
    expected = torch.zeros(16, 16, dtype=torch.int32)
    expected[:12], expected[12], expected[13:] = 1, 2, 3
    assert torch.equal(out["id_map"], expected)
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8, 0.6])
    assert out["boxes"].tolist() == [[0.0, 0.0, 16.0, 12.0], [0.0, 12.0, 16.0, 13.0], [0.0, 13.0, 16.0, 16.0]]
    assert torch.equal(out["masks"], torch.stack([expected == k for k in (1, 2, 3)]))

    # rescore: score × mean of the detection's own pasted probability over its final region
    #   det 0: (11·0.8 + 0.625)/12 = 0.785417 -> 0.9·0.785417 = 0.706875
    #   det 1: row 12 only: 0.55 -> 0.8·0.55 = 0.44 (over its whole mask it would be 0.8·(12·.8+.55)/13)
    #   det 3: (0.725+0.9+0.9)/3 = 0.841667 -> 0.6·0.841667 = 0.505
    # entitykit re-sorts after rescoring (documented fix 10.15): det 0, det 3, det 1
    out = paste_and_merge(probs, scores, (16, 16), (16, 16), cfg.replace(mask_rescore=True))
    assert out["scores"].tolist() == pytest.approx([0.706875, 0.505, 0.44], abs=1e-5)
    assert out["det_scores"].tolist() == pytest.approx([0.9, 0.6, 0.8])
    expected[13:], expected[12] = 2, 3
    assert torch.equal(out["id_map"], expected)


@pytest.mark.parametrize("output_size,rescore", [((44, 52), False), ((44, 52), True), ((61, 37), True)])
def test_paste_and_merge_matches_reference(output_size, rescore):
    cfg = get_config("tiny", mask_rescore=rescore)
    g = torch.Generator().manual_seed(5)
    probs = F.avg_pool2d(torch.rand(7, 11, 13, generator=g)[None], 3, 1, 1)[0]
    probs = torch.sigmoid((probs - 0.5) * 12)  # sharpen: real regions and boundaries
    probs[4] = probs[1] * 0.97  # inside detection 1 wherever above 0.5: empty after the merge
    probs[6] = probs[6] * 0.4   # nowhere above 0.5: empty
    scores = torch.rand(7, generator=g).sort(descending=True).values
    image_size = (44, 52)
    # reference: aligned ×4, crop, bilinear (align_corners False) resize, > 0.5, paint in score order
    pasted = ref_aligned_bilinear(probs.double().numpy(), 4)[:, : image_size[0], : image_size[1]]
    if output_size != image_size:
        pasted = F.interpolate(torch.tensor(pasted)[None], size=output_size, mode="bilinear",
                               align_corners=False)[0].numpy()
    assert np.abs(pasted - 0.5).min() > 2e-6  # no pixel decided by float32 rounding (~1e-7)
    owner = np.full(output_size, -1)
    for k in range(len(scores)):  # highest score first; a pixel keeps its first covering detection
        owner[(pasted[k] > 0.5) & (owner < 0)] = k
    rows = []
    for k in range(len(scores)):
        region = owner == k
        if region.any():
            final = scores[k].item() * (pasted[k][region].mean() if rescore else 1.0)
            rows.append((final, scores[k].item(), region))
    rows.sort(key=lambda r: -r[0])  # entitykit re-sorts after rescoring (documented fix 10.15)
    out = paste_and_merge(probs, scores, image_size, output_size, cfg)
    assert len(rows) >= 4 and len(rows) < len(scores)  # some detection fully covered and dropped
    assert out["scores"].tolist() == pytest.approx([r[0] for r in rows], abs=1e-5)
    assert out["det_scores"].tolist() == pytest.approx([r[1] for r in rows])
    expected = np.zeros(output_size, dtype=np.int32)
    for i, r in enumerate(rows):
        expected[r[2]] = i + 1
    assert out["id_map"].numpy().tolist() == expected.tolist()
    boxes = []
    for r in rows:
        ys, xs = np.nonzero(r[2])
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])  # edge convention
    assert out["boxes"].tolist() == boxes
