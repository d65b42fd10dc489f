"""Mask-training proposal sampling in groups of the authors' images per GPU (spec section 6).

The authors train on 8 GPUs × 2 images: each GPU draws at most 120 × 2 positives uniformly over
its own 2 images (then at most 500), its mask losses are means over its own proposals, and DDP
averages over GPUs. ``ModelConfig.proposal_group_images`` (2) makes one process (or any DDP split
into multiples of 2 images) sample and combine exactly so.
"""

from __future__ import annotations

import pytest
import torch

from entitykit.errors import EntityKitError
from entitykit.model import EntityModel, ModelConfig, get_config
from entitykit.model.config import PATH_CODES
from entitykit.model.dynamic_mask_head import group_mean, mask_bank_losses, overlap_suppression_loss

MASK_KEYS = [f"loss_mask_bank_{c}" for c in PATH_CODES] + ["loss_mask_cluster"]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return EntityModel(get_config("tiny"))


def _sampler(**overrides):
    """A tiny model whose config carries the overrides (only ``cfg`` matters for sampling)."""
    torch.manual_seed(0)
    return EntityModel(get_config("tiny", **overrides))


def _positives(per_image: list[int], locations: int = 1000, seed: int = 0) -> torch.Tensor:
    """B×L boolean positives with per_image[i] True locations at random places in image i."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.zeros(len(per_image), locations, dtype=torch.bool)
    for i, n in enumerate(per_image):
        pos[i, torch.randperm(locations, generator=g)[:n]] = True
    return pos


def _check_picks(pos, im_inds, loc_inds, groups, size):
    assert pos[im_inds, loc_inds].all(), "a sampled proposal is not a positive location"
    pairs = set(zip(im_inds.tolist(), loc_inds.tolist()))
    assert len(pairs) == im_inds.numel(), "a location was drawn twice"
    assert torch.equal(groups, im_inds // size), "a proposal's group is not its image's group"


# ------------------------------------------------------------------------------------- sampling
def test_one_process_batch_16_samples_8_groups_of_240():
    model = _sampler()
    assert model.cfg.proposal_group_images == 2 and model.cfg.max_proposals_per_image == 120
    pos = _positives([400] * 16)
    torch.manual_seed(1)
    im_inds, loc_inds, groups, num_groups = model._sample_proposals(pos)
    assert num_groups == 8
    assert im_inds.numel() == 1920  # 8 authors' GPUs × 240, not 500 for the whole batch
    _check_picks(pos, im_inds, loc_inds, groups, 2)
    assert torch.bincount(groups, minlength=8).tolist() == [240] * 8
    # each group draws over its two images jointly (not 120 per image): both images appear,
    # and the per-image counts are not all exactly 120
    per_image = torch.bincount(im_inds, minlength=16)
    assert (per_image > 0).all()
    assert per_image.tolist() != [120] * 16


def test_group_with_few_positives_keeps_all_of_them():
    model = _sampler()
    per_image = [400] * 16
    per_image[6], per_image[7] = 30, 20  # group 3 (images 6, 7): 50 positives ≤ 240
    per_image[9] = 0  # group 4: 400 positives, all in image 8
    pos = _positives(per_image)
    torch.manual_seed(2)
    im_inds, loc_inds, groups, num_groups = model._sample_proposals(pos)
    _check_picks(pos, im_inds, loc_inds, groups, 2)
    counts = torch.bincount(groups, minlength=num_groups).tolist()
    assert counts == [240, 240, 240, 50, 240, 240, 240, 240]
    kept = {(i, l) for i, l in zip(im_inds.tolist(), loc_inds.tolist()) if i in (6, 7)}
    assert kept == {(i, l) for i in (6, 7) for l in pos[i].nonzero()[:, 0].tolist()}
    assert (im_inds[groups == 4] == 8).all()


def test_second_cap_500_per_group():
    # groups of 8 images (as 2 GPUs × 8 images): 120 × 8 = 960 drawn, then 500 kept, per group
    model = _sampler(proposal_group_images=8)
    pos = _positives([400] * 16)
    torch.manual_seed(3)
    im_inds, loc_inds, groups, num_groups = model._sample_proposals(pos)
    assert num_groups == 2 and im_inds.numel() == 1000
    _check_picks(pos, im_inds, loc_inds, groups, 8)
    assert torch.bincount(groups).tolist() == [500, 500]
    # a group size of the whole batch is the former rule: 120 × 16 = 1920, then 500 in all
    whole = _sampler(proposal_group_images=16)
    assert whole._sample_proposals(pos)[0].numel() == 500


def test_batch_of_3_with_groups_of_2_has_a_last_group_of_one_image():
    model = _sampler()
    pos = _positives([400, 400, 400])
    torch.manual_seed(4)
    im_inds, loc_inds, groups, num_groups = model._sample_proposals(pos)
    assert num_groups == 2
    _check_picks(pos, im_inds, loc_inds, groups, 2)
    assert torch.bincount(groups).tolist() == [240, 120]  # the 1-image group is capped at 120 × 1
    assert set(im_inds[groups == 1].tolist()) == {2}
    assert set(im_inds[groups == 0].tolist()) == {0, 1}


def test_rule_does_not_depend_on_the_split_over_processes():
    """Processes of 2 or 4 images (DDP hands out consecutive slices of the global batch) draw what
    the one process draws for the same groups, given the same random stream."""
    model = _sampler()
    pos = _positives([300, 100, 500, 250, 0, 0, 260, 10, 120, 120, 121, 120, 400, 400, 1, 900])
    torch.manual_seed(5)
    one = model._sample_proposals(pos)
    for per in (2, 4, 8):
        torch.manual_seed(5)
        parts = [model._sample_proposals(pos[s: s + per]) for s in range(0, 16, per)]
        im = torch.cat([p[0] + s for p, s in zip(parts, range(0, 16, per))])
        loc = torch.cat([p[1] for p in parts])
        assert torch.equal(im, one[0]) and torch.equal(loc, one[1]), per
        assert sum(p[3] for p in parts) == one[3] == 8


def test_sampling_is_seeded_by_torch():
    model = _sampler()
    pos = _positives([400] * 4)
    draws = []
    for seed in (6, 6, 7):
        torch.manual_seed(seed)
        draws.append(model._sample_proposals(pos)[1])
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def test_config_field():
    assert ModelConfig().proposal_group_images == 2
    with pytest.raises(EntityKitError) as e:
        ModelConfig(proposal_group_images=0)
    assert e.value.item == "proposal_group_images"
    # configs written before the field existed (checkpoints) get the authors' 2
    data = ModelConfig().to_dict()
    del data["proposal_group_images"]
    assert ModelConfig.from_dict(data).proposal_group_images == 2


# ------------------------------------------------------------------------------- loss combination
def test_group_mean_is_the_mean_of_per_group_means():
    v = torch.tensor([1.0, 1.0, 1.0, 3.0])
    assert group_mean(v, torch.tensor([0, 0, 0, 1]), 2).item() == pytest.approx(2.0)  # not 1.5
    assert group_mean(v, torch.tensor([0, 0, 1, 1]), 2).item() == pytest.approx(1.5)
    # a group without proposals counts 0, as a GPU without proposals does under DDP
    assert group_mean(v, torch.tensor([0, 0, 0, 0]), 2).item() == pytest.approx(0.75)
    assert group_mean(v, None).item() == pytest.approx(1.5)
    assert group_mean(v, torch.tensor([0, 0, 0, 0]), 1).item() == pytest.approx(1.5)


def test_bank_and_suppression_losses_combine_per_group():
    torch.manual_seed(0)
    gt = torch.zeros(4, 8, 8, dtype=torch.bool)
    gt[0, :, :4] = True
    gt[1, :, 4:] = True
    gt[2, :4] = True
    gt[3, 4:] = True
    gt_image = torch.tensor([0, 0, 1, 1])
    annotated = torch.ones(2, 8, 8, dtype=torch.bool)
    logits = torch.randn(7, 1, 4, 4)
    inds = torch.tensor([0, 1, 1, 1, 2, 3, 3])
    groups = gt_image[inds]  # one image per group here
    w = {c: 1.0 for c in PATH_CODES}
    both = mask_bank_losses({"111": logits}, gt[inds], w, groups, 2)["loss_mask_bank_111"]
    sep = [mask_bank_losses({"111": logits[groups == g]}, gt[inds][groups == g], w)["loss_mask_bank_111"]
           for g in (0, 1)]
    assert both.item() == pytest.approx((sep[0].item() + sep[1].item()) / 2, abs=1e-6)
    pooled = mask_bank_losses({"111": logits}, gt[inds], w)["loss_mask_bank_111"]
    assert abs(pooled.item() - both.item()) > 1e-4  # the test can tell the two apart
    both = overlap_suppression_loss(logits, inds, gt_image, gt, annotated, gt_image, 2)
    sep = [overlap_suppression_loss(logits[groups == g], inds[groups == g], gt_image, gt, annotated)
           for g in (0, 1)]
    assert both.item() == pytest.approx((sep[0].item() + sep[1].item()) / 2, abs=1e-6)
    # unequal participants per group (image 0: GTs 0, 1; image 1: GT 3 only) tell the two means apart
    inds3 = torch.tensor([0, 1, 3, 3])
    by_group = overlap_suppression_loss(logits[:4], inds3, gt_image, gt, annotated, gt_image, 2)
    pooled = overlap_suppression_loss(logits[:4], inds3, gt_image, gt, annotated)
    assert abs(by_group.item() - pooled.item()) > 1e-4
    one_group = overlap_suppression_loss(logits[:4], inds3, gt_image, gt, annotated, torch.zeros(4, dtype=torch.long), 1)
    assert one_group.item() == pooled.item()


def _images_and_targets(n: int):
    """n 64×64 images with different entity layouts (so groups differ in proposals and losses)."""
    g = torch.Generator().manual_seed(0)
    layouts = [[(4, 4, 30, 30), (34, 8, 60, 60)], [(10, 10, 50, 40)], [(0, 0, 64, 20), (0, 20, 20, 64), (20, 20, 64, 64)],
               [(8, 8, 24, 24)]]
    images, targets = [], []
    for i in range(n):
        images.append(torch.rand(3, 64, 64, generator=g) * 255)
        boxes = layouts[i % len(layouts)]
        masks = torch.zeros(len(boxes), 64, 64, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            masks[k, y1:y2, x1:x2] = True
        targets.append({"masks": masks})
    return torch.stack(images), targets


def _mask_losses(model, x, targets):
    out = model(x, targets)
    return {k: out[k].item() for k in MASK_KEYS}


@pytest.mark.parametrize("n, splits", [(4, [(0, 2), (2, 4)]), (3, [(0, 2), (2, 3)])])
def test_model_mask_losses_are_the_mean_over_groups(n, splits):
    """One process with n images = the mean of the per-group losses, as DDP with one group per
    process would give (few positives at 64×64, so no random draws; BatchNorm in eval so features
    do not depend on the batch). A batch of 3 has groups {0, 1} and {2}, weighted equally."""
    torch.manual_seed(0)
    model = EntityModel(get_config("tiny")).train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    x, targets = _images_and_targets(n)
    x = (x - torch.tensor(model.cfg.pixel_mean).view(3, 1, 1)) / torch.tensor(model.cfg.pixel_std).view(3, 1, 1)
    with torch.no_grad():
        whole = _mask_losses(model, x, targets)
        parts = [_mask_losses(model, x[a:b], targets[a:b]) for a, b in splits]
    for k in MASK_KEYS:
        assert whole[k] == pytest.approx(sum(p[k] for p in parts) / len(parts), rel=1e-5, abs=1e-6), k
    # the former rule (one group for the whole batch) gives another number: the test can fail
    model.cfg = model.cfg.replace(proposal_group_images=n)
    with torch.no_grad():
        one_group = _mask_losses(model, x, targets)
    assert any(abs(one_group[k] - whole[k]) > 1e-4 for k in MASK_KEYS)
