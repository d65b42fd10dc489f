"""Unit tests of entitykit.model: shapes, target assignment, losses, kernel bank, inference, I/O."""

from __future__ import annotations

import math
import urllib.error

import pytest
import torch
import torch.nn.functional as F

from entitykit.errors import EntityKitError
from entitykit.model import EntityModel, ModelConfig, baseline, get_config, load_checkpoint, prepare_images, save_checkpoint
from entitykit.model.config import PATH_CODES, PRESETS
from entitykit.model.dynamic_mask_head import DynamicMaskHead, mask_bank_losses, overlap_suppression_loss
from entitykit.model.fcos_head import assign_targets, centers_of_mass, fcos_losses, masks_to_edge_boxes
from entitykit.model.inference import paint_masks, paste_and_merge
from entitykit.model.layers import aligned_bilinear, dice_loss, grid_locations


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return EntityModel(get_config("tiny"))


def _square_target(h, w, boxes):
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = True
    return {"masks": masks}


# ---------------------------------------------------------------------------------------- config
def test_presets_and_param_count():
    assert {"r50_1x", "r101_3x", "swin_t_1x", "tiny"} <= set(PRESETS)
    cfg = get_config("r50_1x")
    assert cfg.num_dynamic_params == 169
    assert sorted(cfg.path_weights.values()) == [0.25, 0.25, 0.25, 1.0, 1.0, 1.0, 1.0]
    assert cfg.cluster_weight == 0.5 and not cfg.baseline and baseline(cfg).baseline
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(EntityKitError):
        get_config("nope")
    with pytest.raises(EntityKitError):
        ModelConfig.from_dict({"bogus": 1})
    with pytest.raises(EntityKitError):
        ModelConfig(backbone="vgg16")


# ---------------------------------------------------------------------------------------- shapes
def test_output_shapes_per_level(tiny_model):
    x = torch.zeros(2, 3, 128, 96)
    cls, reg, ctr, kernel_feats, mask_feats, locations = tiny_model._features(x)
    params = tiny_model.controller(tiny_model.head(list(tiny_model.backbone(x).values()))[3])
    expected = [(16, 12), (8, 6), (4, 3), (2, 2), (1, 1)]
    for lvl, (h, w) in enumerate(expected):
        assert cls[lvl].shape == (2, 1, h, w)
        assert reg[lvl].shape == (2, 4, h, w)
        assert ctr[lvl].shape == (2, 1, h, w)
        assert params[lvl].shape == (2, 169, h, w)
        assert kernel_feats[lvl].shape == (2, 64, h, w)
        assert locations[lvl].shape == (h * w, 2)
    assert mask_feats.shape == (2, 8, 16, 12)
    assert (reg[0] >= 0).all()


@pytest.mark.parametrize("backbone", ["swin_t", "convnext_tiny", "resnet34"])
def test_other_backbones_give_p3_to_p7(backbone):
    from entitykit.model.backbone import build_backbone

    cfg = get_config("tiny", backbone=backbone, backbone_norm="frozen_bn")
    feats = build_backbone(cfg)(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]


def test_p6_from_c5_for_resnets_and_from_p5_for_transformers():
    from entitykit.model.backbone import build_backbone

    assert build_backbone(get_config("tiny")).fpn.extra_blocks.p6.in_channels == 512  # C5 of ResNet-18
    assert build_backbone(get_config("tiny", backbone="swin_t")).fpn.extra_blocks.p6.in_channels == 64


def test_prepare_images_pads_to_32():
    cfg = get_config("tiny")
    batch, sizes = prepare_images([torch.zeros(3, 50, 70, dtype=torch.uint8), torch.zeros(3, 64, 33)], cfg)
    assert batch.shape == (2, 3, 64, 96) and sizes == [(50, 70), (64, 33)]
    with pytest.raises(EntityKitError):
        prepare_images([torch.zeros(50, 70)], cfg)


# ----------------------------------------------------------------------------- target assignment
def _levels(h, w, cfg):
    locs, strides, lo, hi = [], [], [], []
    bounds = (-1.0,) + cfg.sizes_of_interest + (1e8,)
    for lvl, s in enumerate(cfg.strides):
        loc = grid_locations(-(-h // s), -(-w // s), s)
        locs.append(loc)
        strides.append(torch.full((len(loc),), float(s)))
        lo.append(torch.full((len(loc),), bounds[lvl]))
        hi.append(torch.full((len(loc),), bounds[lvl + 1]))
    return torch.cat(locs), torch.cat(strides), torch.cat(lo), torch.cat(hi)


def test_center_sampling_uses_center_of_mass_and_radius():
    cfg = get_config("r50_1x")
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 0:32, 0:32] = True
    locs, strides, lo, hi = _levels(64, 64, cfg)
    gt, ltrb = assign_targets(locs, strides, lo, hi, masks_to_edge_boxes(masks), centers_of_mass(masks), 1.5)
    pos = locs[gt == 0]
    # centre of mass 15.5; region 15.5 ± 12 → x, y in {4, 12, 20} on P3 only (28 > 27.5 is outside)
    assert sorted(map(tuple, pos.tolist())) == [(x, y) for x in (4.0, 12.0, 20.0) for y in (4.0, 12.0, 20.0)]
    assert (strides[gt == 0] == 8).all()
    assert ltrb[gt == 0][0].tolist() == [4.0, 4.0, 28.0, 28.0]

    # an L-shaped mask: the region follows the centre of mass, not the box centre
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 0:48, 0:8] = True
    masks[0, 40:48, 0:48] = True
    com = centers_of_mass(masks)[0]
    assert com[0] < 16 and com[1] > 28  # box centre would be (24, 24)
    gt, _ = assign_targets(locs, strides, lo, hi, masks_to_edge_boxes(masks), centers_of_mass(masks), 1.5)
    pos = locs[gt == 0]
    assert len(pos) and ((pos - com).abs() < 12).all()


def test_size_ranges_pick_levels_with_inclusive_bounds():
    cfg = get_config("r50_1x")
    masks = torch.zeros(1, 256, 256, dtype=torch.bool)
    masks[0, 0:200, 0:200] = True
    locs, strides, lo, hi = _levels(256, 256, cfg)
    gt, _ = assign_targets(locs, strides, lo, hi, masks_to_edge_boxes(masks), centers_of_mass(masks), 1.5)
    assert not (gt[strides == 8] >= 0).any()  # max(ltrb) > 64 everywhere near the centre
    assert int((gt[strides == 16] == 0).sum()) == 9  # x, y in {88, 104, 120}: max ltrb 112..120
    p5 = {tuple(p) for p in locs[(strides == 32) & (gt == 0)].tolist()}
    assert (144.0, 144.0) in p5 and (112.0, 112.0) not in p5  # 144 >= 128 but 112 < 128

    # bounds are inclusive: max(ltrb) == 64 is accepted by both P3 [-1, 64] and P4 [64, 128]
    loc = torch.tensor([[64.0, 10.0], [64.0, 10.0]])
    box = torch.tensor([[0.0, 0.0, 80.0, 20.0]])
    gt, _ = assign_targets(loc, torch.tensor([8.0, 16.0]), torch.tensor([-1.0, 64.0]), torch.tensor([64.0, 128.0]),
                           box, torch.tensor([[64.0, 10.0]]), radius=100.0)
    assert gt.tolist() == [0, 0]
    box = torch.tensor([[0.0, 0.0, 80.0, 20.0]]) + torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    gt, _ = assign_targets(torch.tensor([[65.0, 10.0]]), torch.tensor([8.0]), torch.tensor([-1.0]),
                           torch.tensor([64.0]), box, torch.tensor([[65.0, 10.0]]), radius=100.0)
    assert gt.tolist() == [-1]  # max(ltrb) = 65 > 64


def test_ambiguity_smallest_area_then_lowest_index():
    loc = torch.tensor([[10.0, 10.0]])
    one = lambda b, c: assign_targets(loc, torch.tensor([8.0]), torch.tensor([-1.0]), torch.tensor([64.0]),  # noqa: E731
                                      torch.tensor(b), torch.tensor(c), radius=100.0)[0].item()
    big, small = [0.0, 0.0, 40.0, 40.0], [5.0, 5.0, 20.0, 20.0]
    assert one([big, small], [[10.0, 10.0]] * 2) == 1
    assert one([small, big], [[10.0, 10.0]] * 2) == 0
    twin = [2.0, 2.0, 17.0, 17.0]  # same area as `small`
    assert one([big, twin, small], [[10.0, 10.0]] * 3) == 1
    assert one([big, small, twin], [[10.0, 10.0]] * 3) == 1
    gt, _ = assign_targets(loc, torch.tensor([8.0]), torch.tensor([-1.0]), torch.tensor([64.0]),
                           torch.zeros(0, 4), torch.zeros(0, 2), 1.5)
    assert gt.tolist() == [-1]


def test_edge_boxes_keep_one_pixel_entities():
    m = torch.zeros(2, 10, 10, dtype=torch.bool)
    m[0, 3, 4] = True
    m[1, 2:5, 6:10] = True
    assert masks_to_edge_boxes(m).tolist() == [[4.0, 3.0, 5.0, 4.0], [6.0, 2.0, 10.0, 5.0]]


# ----------------------------------------------------------------------------------------- losses
def test_dice_value():
    probs = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert dice_loss(probs, target).item() == pytest.approx(1 - 2 / (2 + 1 + 1e-5), abs=1e-6)
    assert dice_loss(target, target).item() == pytest.approx(0.0, abs=1e-5)


def test_focal_giou_centerness_values():
    cfg = get_config("r50_1x")
    cls = torch.zeros(1, 2)  # p = 0.5 at a positive and at a negative location
    pos = torch.tensor([[True, False]])
    reg = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    tgt = torch.tensor([[[2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]]])
    out = fcos_losses(cls, reg, torch.zeros(1, 2), pos, tgt, cfg)
    pos_focal = 0.25 * 0.5**2 * math.log(2)
    neg_focal = 0.75 * 0.5**2 * math.log(2)
    assert out["loss_fcos_cls"].item() == pytest.approx(pos_focal + neg_focal, rel=1e-5)
    # boxes [-1,-1,1,1] in [-2,-2,2,2]: IoU 1/4, enclosing = target → GIoU 0.25, centerness target 1
    assert out["loss_fcos_loc"].item() == pytest.approx(0.75, rel=1e-5)
    assert out["loss_fcos_ctr"].item() == pytest.approx(math.log(2), rel=1e-5)
    same = fcos_losses(cls, tgt, torch.zeros(1, 2), pos, tgt, cfg)
    assert same["loss_fcos_loc"].item() == pytest.approx(0.0, abs=1e-6)
    none = fcos_losses(cls, reg, torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool), tgt, cfg)
    assert none["loss_fcos_loc"].item() == 0.0 and none["loss_fcos_cls"].item() == pytest.approx(2 * neg_focal, rel=1e-5)


def test_aligned_bilinear_keeps_constant_and_shape():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y = aligned_bilinear(x, 4)
    assert y.shape == (1, 1, 8, 12)
    # the sample at stride-4 offset 2 (= location 4*i + 2) reproduces the input exactly
    assert torch.allclose(y[0, 0, 2::4, 2::4], x[0, 0])


# ------------------------------------------------------------------------- kernel bank + suppression
def test_seven_paths_differ_and_all_get_gradients():
    torch.manual_seed(0)
    cfg = get_config("tiny")
    head = DynamicMaskHead(cfg)
    for conv in head.static:  # break the near-zero init so the paths are clearly different
        torch.nn.init.normal_(conv.weight, std=0.3)
    x = torch.randn(3, 10, 8, 8)
    params = (torch.randn(3, 169) * 0.5).requires_grad_()
    logits = head(x, params, PATH_CODES)
    assert set(logits) == set(PATH_CODES)
    for a in PATH_CODES:
        for b in PATH_CODES:
            if a < b:
                assert not torch.allclose(logits[a], logits[b]), (a, b)
    gt = torch.rand(3, 16, 16) > 0.5
    losses = mask_bank_losses(logits, gt, cfg.path_weights)
    assert set(losses) == {f"loss_mask_bank_{c}" for c in PATH_CODES}
    for code in PATH_CODES:  # each path alone reaches the parameters it uses
        head.zero_grad()
        params.grad = None
        losses[f"loss_mask_bank_{code}"].backward(retain_graph=True)
        for layer, ch in enumerate(code):
            if ch == "1":
                assert params.grad is not None and params.grad.abs().sum() > 0
            else:
                assert head.static[layer].weight.grad.abs().sum() > 0, (code, layer)


def test_dynamic_head_equals_grouped_conv_reference():
    torch.manual_seed(1)
    head = DynamicMaskHead(get_config("tiny"))
    x = torch.randn(2, 10, 5, 6)
    params = torch.randn(2, 169)
    out = head(x, params)["111"]
    w1, w2, w3 = params[:, :80].reshape(2, 8, 10), params[:, 80:144].reshape(2, 8, 8), params[:, 144:152].reshape(2, 1, 8)
    b1, b2, b3 = params[:, 152:160], params[:, 160:168], params[:, 168:]
    y = x.reshape(1, 20, 5, 6)
    y = torch.relu(torch.nn.functional.conv2d(y, w1.reshape(16, 10, 1, 1), b1.reshape(-1), groups=2))
    y = torch.relu(torch.nn.functional.conv2d(y, w2.reshape(16, 8, 1, 1), b2.reshape(-1), groups=2))
    y = torch.nn.functional.conv2d(y, w3.reshape(2, 8, 1, 1), b3.reshape(-1), groups=2)
    assert torch.allclose(out, y.reshape(2, 1, 5, 6), atol=1e-5)


def test_suppression_loss_ignores_unannotated_pixels():
    torch.manual_seed(0)
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, :, :3] = True
    gt[1, :, 3:6] = True  # columns 6, 7: unannotated
    annotated = gt.any(0)[None]
    logits = torch.randn(4, 1, 4, 4)
    inds = torch.tensor([0, 0, 1, 1])
    base = overlap_suppression_loss(logits, inds, torch.zeros(2, dtype=torch.long), gt, annotated)
    changed = logits.clone()
    changed[:, :, :, 3] += torch.randn(4, 1, 4) * 5  # stride-8 column 3 only feeds stride-4 columns 6, 7
    same = overlap_suppression_loss(changed, inds, torch.zeros(2, dtype=torch.long), gt, annotated)
    assert same.item() == pytest.approx(base.item(), abs=1e-6)
    changed[:2, :, :, 0] += 5  # entity 0 only (a shift of all entities cancels in the softmax)
    assert overlap_suppression_loss(changed, inds, torch.zeros(2, dtype=torch.long), gt, annotated).item() != \
        pytest.approx(base.item(), abs=1e-6)
    # a single entity in an image: softmax is 1 on its annotated pixels, no gradient
    lg = logits[:1].clone().requires_grad_()
    overlap_suppression_loss(lg, inds[:1], torch.zeros(2, dtype=torch.long), gt, annotated).backward()
    assert lg.grad.abs().sum() == 0


def test_training_losses_and_baseline_switch(tiny_model):
    cfg = get_config("tiny")
    x = torch.zeros(2, 3, 64, 64)
    targets = [_square_target(64, 64, [(4, 4, 30, 30), (34, 8, 60, 60)]), _square_target(64, 64, [(10, 10, 50, 40)])]
    targets[0]["ignore"] = torch.zeros(64, 64, dtype=torch.bool)
    tiny_model.train()
    losses = tiny_model(x, targets)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask_cluster"} | \
        {f"loss_mask_bank_{c}" for c in PATH_CODES}
    sum(losses.values()).backward()
    assert tiny_model.controller.out_conv.weight.grad.abs().sum() > 0
    assert all(c.weight.grad is not None for c in tiny_model.mask_head.static)
    tiny_model.zero_grad()

    torch.manual_seed(0)
    base = EntityModel(baseline(cfg)).train()
    assert set(base(x, targets)) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask_bank_111"}
    # no entities at all: losses still defined (zero mask losses)
    empty = tiny_model(x, [{"masks": torch.zeros(0, 64, 64)}, {"masks": torch.zeros(0, 64, 64)}])
    assert empty["loss_mask_bank_111"].item() == 0.0
    with pytest.raises(EntityKitError):
        tiny_model(x, None)
    with pytest.raises(EntityKitError):
        tiny_model(torch.zeros(1, 3, 60, 64), [targets[1]])


# ------------------------------------------------------------------------------------- inference
def test_params_at_detections_equal_the_full_output_conv(tiny_model):
    tiny_model.eval()
    with torch.no_grad():
        _, _, _, kernel_feats, _, _ = tiny_model._features(torch.rand(2, 3, 96, 64))
        full = [tiny_model.controller.out_conv(f) for f in kernel_feats]
        levels = torch.tensor([0, 2, 0, 1, 4, 3, 0])
        idx = torch.tensor([0, 5, 95, 23, 0, 1, 50])  # corners and interior of each level
        got = tiny_model.controller.params_at([f[1] for f in kernel_feats], levels, idx)
    for k, (lvl, i) in enumerate(zip(levels.tolist(), idx.tolist())):
        assert torch.allclose(got[k], full[lvl][1].flatten(1)[:, i], atol=1e-5), (lvl, i)


@pytest.mark.parametrize("image_size,output_size,block", [
    ((61, 47), (61, 47), 32),     # same size; blocks straddle the edge
    ((64, 64), (150, 97), 16),    # upscaled output
    ((64, 60), (23, 31), 8),      # downscaled output: wider bands
])
def test_paint_masks_equals_paste_then_first_above_threshold(image_size, output_size, block):
    """Reference: the authors' three steps with plain torch ops, then a per-pixel loop over masks in order."""
    g = torch.Generator().manual_seed(7)
    h4, w4 = -(-image_size[0] // 4), -(-image_size[1] // 4)
    probs = F.avg_pool2d(torch.rand(9, h4, w4, generator=g)[None], 3, 1, 1)[0]  # smooth: real boundaries
    full = aligned_bilinear(probs[None], 4)[0, :, : image_size[0], : image_size[1]]
    ref = F.interpolate(full[None], size=output_size, mode="bilinear", align_corners=False)[0]
    winner, prob = paint_masks(probs, image_size, output_size, 0.5, block=block)
    assert winner.shape == prob.shape == output_size
    expected = torch.zeros(output_size, dtype=torch.long)
    for k in range(probs.shape[0] - 1, -1, -1):  # lower k paints last, so it wins
        expected[ref[k] > 0.5] = k + 1
    # values agree to float rounding; a pixel may only differ where a probability is within it of 0.5
    near = ((ref - 0.5).abs() < 1e-5).any(0)
    assert torch.equal(winner[~near], expected[~near]) and 0 < (winner > 0).sum() < winner.numel()
    own = ref.gather(0, (expected - 1).clamp(min=0)[None])[0] * (expected > 0)
    assert torch.allclose(prob[~near], own[~near], atol=1e-5)


def test_paste_and_merge_priority_and_rescore():
    cfg = get_config("tiny")
    probs = torch.zeros(3, 4, 4)
    probs[0, 0:2, 0:3] = 0.9  # high score
    probs[1, 1:4, 1:4] = 0.6  # overlaps the first
    probs[2, 0, 3] = 0.2  # below the mask threshold: dropped (empty)
    out = paste_and_merge(probs, torch.tensor([0.9, 0.8, 0.7]), (16, 16), (16, 16), cfg)
    ids = out["id_map"]
    assert ids.dtype == torch.int32 and ids.shape == (16, 16)
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert int(ids.max()) == 2 and ids[6, 6] == 1  # overlap goes to the higher score
    assert (out["masks"].sum(0) <= 1).all()
    assert torch.equal(out["masks"][1], ids == 2)
    # rescoring multiplies by the mean probability and re-sorts: 0.8*0.6 > 0.5*0.9 → entity order flips
    out = paste_and_merge(probs, torch.tensor([0.5, 0.8, 0.7]), (16, 16), (16, 16), cfg.replace(mask_rescore=True))
    assert out["scores"][0] > out["scores"][1]
    assert out["det_scores"].tolist() == pytest.approx([0.8, 0.5])
    # nothing detected
    empty = paste_and_merge(torch.zeros(0, 4, 4), torch.zeros(0), (16, 16), (20, 24), cfg)
    assert empty["id_map"].shape == (20, 24) and empty["scores"].numel() == 0 and empty["boxes"].shape == (0, 4)


def test_paste_and_merge_without_masks_gives_the_same_map_and_boxes():
    cfg = get_config("tiny", mask_rescore=True)
    g = torch.Generator().manual_seed(3)
    probs = F.avg_pool2d(torch.rand(12, 20, 24, generator=g)[None], 5, 1, 2)[0]
    probs = (probs - probs.mean()) * 8 + 0.5  # sharpen around the 0.5 threshold
    scores = torch.rand(12, generator=g).sort(descending=True).values
    for out_size in ((80, 96), (200, 131)):
        full = paste_and_merge(probs.clamp(0, 1), scores, (80, 96), out_size, cfg)
        lean = paste_and_merge(probs.clamp(0, 1), scores, (80, 96), out_size, cfg, with_masks=False)
        assert "masks" not in lean and full["masks"].shape[0] >= 3
        assert torch.equal(full["id_map"], lean["id_map"]) and torch.equal(full["scores"], lean["scores"])
        assert torch.equal(full["boxes"], lean["boxes"])


def test_inference_non_overlapping_sorted_and_deterministic():
    cfg = get_config("tiny", score_thresh=0.0, detections_per_image=30)
    images = [torch.randint(0, 256, (3, 100, 90), dtype=torch.uint8), torch.randint(0, 256, (3, 64, 128), dtype=torch.uint8)]
    x, sizes = prepare_images(images, cfg)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = EntityModel(cfg).eval()
        with torch.no_grad():
            outs.append(model(x, image_sizes=sizes, output_sizes=[(200, 180), (64, 128)]))
    for pred, size in zip(outs[0], [(200, 180), (64, 128)]):
        ids, scores = pred["id_map"], pred["scores"]
        assert ids.shape == size and ids.dtype == torch.int32
        n = scores.numel()
        assert n > 0 and int(ids.max()) == n and int(ids.min()) >= 0
        assert set(ids.unique().tolist()) - {0} == set(range(1, n + 1))  # every entity non-empty
        assert (scores[:-1] >= scores[1:]).all()
        assert pred["boxes"].shape == (n, 4)
    for a, b in zip(*outs):
        assert torch.equal(a["id_map"], b["id_map"]) and torch.equal(a["scores"], b["scores"])


def test_training_step_is_deterministic():
    x = torch.rand(1, 3, 64, 64) * 2
    target = [_square_target(64, 64, [(4, 4, 30, 30), (34, 8, 60, 60)])]
    results = []
    for _ in range(2):
        torch.manual_seed(7)
        model = EntityModel(get_config("tiny")).train()
        losses = model(x, target)
        sum(losses.values()).backward()
        results.append(({k: v.item() for k, v in losses.items()}, model.controller.out_conv.weight.grad.clone()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


# ----------------------------------------------------------------------------------- checkpoints
def test_checkpoint_roundtrip(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", extra={"iteration": 5})
    from entitykit.model.checkpoint import read_checkpoint_config

    cfg, meta = read_checkpoint_config(path)
    assert cfg == tiny_model.cfg and meta["iteration"] == "5"
    loaded = load_checkpoint(path, score_thresh=0.0)
    tiny_model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = tiny_model._features(x)[3][0]
        b = loaded._features(x)[3][0]
    assert torch.equal(a, b) and loaded.cfg.score_thresh == 0.0
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(EntityKitError):
        load_checkpoint(tmp_path / "bad.safetensors")
    with pytest.raises(EntityKitError):
        load_checkpoint(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------ pretrained weights
def test_pretrained_from_local_file(tmp_path):
    import torchvision

    torch.manual_seed(3)
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = EntityModel(get_config("tiny", pretrained=str(tmp_path / "r18.pth")))
    assert torch.equal(model.backbone.body.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(EntityKitError):
        EntityModel(get_config("tiny", pretrained=str(tmp_path / "wrong.pth")))


def test_pretrained_fetch_failure_is_a_clear_error(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(EntityKitError, match="local file"):
        EntityModel(get_config("tiny", pretrained="ResNet18_Weights.IMAGENET1K_V1"))
    with pytest.raises(EntityKitError, match="local file"):
        EntityModel(get_config("tiny", pretrained="DEFAULT"))
    with pytest.raises(EntityKitError, match="neither"):
        EntityModel(get_config("tiny", pretrained="/no/such/file.pth"))


# ------------------------------------------------------------------------------------------ export
