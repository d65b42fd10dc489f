"""EntityModel: backbone + FPN, FCOS entity head, controller, mask branch and dynamic mask head.

``model(images, targets)`` returns the loss dict in train mode; ``model(images)`` returns one
prediction dict per image in eval mode (``id_map``, ``scores``, ``boxes``, ``det_scores``, and
``masks`` unless ``with_masks=False``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import EntityKitError
from .backbone import build_backbone
from .config import PATH_CODES, ModelConfig
from .controller import Controller, MaskBranch
from .dynamic_mask_head import DynamicMaskHead, mask_bank_losses, overlap_suppression_loss
from .fcos_head import FCOSHead, assign_targets, centers_of_mass, fcos_losses, masks_to_edge_boxes
from .inference import mask_probs, paste_and_merge, select_detections
from .layers import grid_locations


def prepare_images(images: list[torch.Tensor], cfg: ModelConfig) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """RGB 3×H×W images (uint8 or float in 0..255) → normalised batch zero-padded to ×32, and sizes.

    Padding happens after normalisation, so the pad value is the mean colour, as in the authors' code.
    """
    if not images:
        raise EntityKitError("no images given")
    sizes = []
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[0] != 3:
            raise EntityKitError(f"expected a 3×H×W RGB tensor, got shape {tuple(im.shape)}", item=f"image {i}")
        sizes.append((int(im.shape[1]), int(im.shape[2])))
    d = cfg.size_divisibility
    ph = -(-max(h for h, _ in sizes) // d) * d
    pw = -(-max(w for _, w in sizes) // d) * d
    mean = torch.tensor(cfg.pixel_mean, device=images[0].device).view(3, 1, 1)
    std = torch.tensor(cfg.pixel_std, device=images[0].device).view(3, 1, 1)
    batch = torch.zeros(len(images), 3, ph, pw, device=images[0].device)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1], : im.shape[2]] = (im.float() - mean) / std
    return batch, sizes


def _flat(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×(H·W)×C."""
    return x.flatten(2).transpose(1, 2)


class EntityModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        self.head = FCOSHead(cfg)
        self.controller = Controller(cfg)
        self.mask_branch = MaskBranch(cfg)
        self.mask_head = DynamicMaskHead(cfg)
        # training paths: every weighted path, plus 111 which the suppression loss needs
        self.train_codes = tuple(c for c in PATH_CODES if c == "111" or cfg.path_weights.get(c, 0.0) > 0)

    # ----------------------------------------------------------------------------------------- #
    def _features(self, images: torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise EntityKitError(f"images must be B×3×H×W, got {tuple(images.shape)}")
        d = self.cfg.size_divisibility
        if images.shape[2] % d or images.shape[3] % d:
            raise EntityKitError(f"image size {tuple(images.shape[2:])} is not padded to a multiple of {d}; "
                                 "use entitykit.model.prepare_images")
        feats = list(self.backbone(images).values())
        cls, reg, ctr, towers = self.head(feats)
        kernel_feats = self.controller.features(towers)  # the output conv runs later, where needed
        mask_feats = self.mask_branch(feats[0], feats[1], feats[2])
        locations = [grid_locations(c.shape[2], c.shape[3], s, images.device) for c, s in zip(cls, self.cfg.strides)]
        return cls, reg, ctr, kernel_feats, mask_feats, locations

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None,
                image_sizes: list[tuple[int, int]] | None = None,
                output_sizes: list[tuple[int, int]] | None = None, with_masks: bool = True):
        cls, reg, ctr, kernel_feats, mask_feats, locations = self._features(images)
        if self.training:
            if targets is None or len(targets) != images.shape[0]:
                raise EntityKitError("training needs one target dict per image")
            params = [self.controller.out_conv(f) for f in kernel_feats]
            return self._losses(images, targets, cls, reg, ctr, params, mask_feats, locations)
        b = images.shape[0]
        image_sizes = image_sizes or [tuple(images.shape[2:])] * b
        output_sizes = output_sizes or image_sizes
        cls, ctr = [c.flatten(1) for c in cls], [c.flatten(1) for c in ctr]
        reg = [_flat(r) for r in reg]
        preds = []
        for i in range(b):
            _, scores, idx, locs, levels = select_detections(
                [c[i] for c in cls], [r[i] for r in reg], [c[i] for c in ctr], locations, tuple(image_sizes[i]),
                self.cfg)
            p = self.controller.params_at([f[i] for f in kernel_feats], levels, idx)
            probs = mask_probs(self.mask_head, mask_feats[i: i + 1], p, locs, levels)
            preds.append(paste_and_merge(probs, scores, tuple(image_sizes[i]), tuple(output_sizes[i]), self.cfg,
                                         with_masks))
        return preds

    # ----------------------------------------------------------------------------------------- #
    def _prepare_targets(self, targets: list[dict], padded: tuple[int, int], device):
        """Pad masks to the batch size; boxes and centres come from the masks themselves."""
        ph, pw = padded
        gts = []
        for i, t in enumerate(targets):
            if "masks" not in t:
                raise EntityKitError("target has no 'masks'", item=f"target {i}")
            m = torch.as_tensor(t["masks"], device=device).bool()
            if m.ndim != 3 or m.shape[1] > ph or m.shape[2] > pw:
                raise EntityKitError(f"masks must be N×H×W within the padded image {padded}, got "
                                     f"{tuple(m.shape)}", item=f"target {i}")
            m = m[m.flatten(1).any(1)]  # empty masks (e.g. lost in resizing) cannot be learned
            full = torch.zeros((m.shape[0], ph, pw), dtype=torch.bool, device=device)
            full[:, : m.shape[1], : m.shape[2]] = m
            annotated = torch.zeros((ph, pw), dtype=torch.bool, device=device)
            annotated[: m.shape[1], : m.shape[2]] = True
            if t.get("ignore") is not None:
                ign = torch.as_tensor(t["ignore"], device=device).bool()
                annotated[: ign.shape[0], : ign.shape[1]] &= ~ign
            annotated &= full.any(0)  # unannotated = covered by no entity (void, crowd, padding)
            gts.append({"masks_s4": full[:, 2::4, 2::4], "boxes": masks_to_edge_boxes(full),
                        "centers": centers_of_mass(full), "annotated_s4": annotated[2::4, 2::4]})
        return gts

    def _losses(self, images, targets, cls, reg, ctr, params, mask_feats, locations):
        cfg = self.cfg
        device = images.device
        gts = self._prepare_targets(targets, tuple(images.shape[2:]), device)
        locs = torch.cat(locations)
        counts = [loc.shape[0] for loc in locations]
        levels = torch.cat([torch.full((n,), l, dtype=torch.long, device=device) for l, n in enumerate(counts)])
        strides = torch.tensor(cfg.strides, dtype=torch.float32, device=device)[levels]
        bounds = torch.tensor((-1.0,) + tuple(cfg.sizes_of_interest) + (1e8,), device=device)
        lo, hi = bounds[levels], bounds[levels + 1]

        gt_ind, ltrb, offset = [], [], 0
        for g in gts:
            ind, d = assign_targets(locs, strides, lo, hi, g["boxes"], g["centers"], cfg.center_radius)
            gt_ind.append(torch.where(ind >= 0, ind + offset, ind))
            ltrb.append(d / strides[:, None])
            offset += g["boxes"].shape[0]
        gt_ind = torch.stack(gt_ind)  # B×L, global GT index or -1
        pos = gt_ind >= 0
        cls_f = torch.cat([c.flatten(1) for c in cls], 1)
        ctr_f = torch.cat([c.flatten(1) for c in ctr], 1)
        reg_f = torch.cat([_flat(r) for r in reg], 1)
        losses = fcos_losses(cls_f, reg_f, ctr_f, pos, torch.stack(ltrb), cfg)

        # sample proposals for mask training, in groups of images, each as one authors' GPU (torch RNG: seeding works)
        im_inds, loc_inds, groups, num_groups = self._sample_proposals(pos)
        params_f = torch.cat([_flat(q) for q in params], 1)
        if im_inds.numel() == 0:
            zero = params_f.sum() * 0 + mask_feats.sum() * 0 + sum(p.sum() for p in self.mask_head.parameters()) * 0
            for code in self.train_codes:
                if cfg.path_weights.get(code, 0.0) > 0:
                    losses[f"loss_mask_bank_{code}"] = zero
            if cfg.cluster_weight > 0:
                losses["loss_mask_cluster"] = zero
            return losses

        inst_gt = gt_ind[im_inds, loc_inds]
        x = self.mask_head.head_inputs(mask_feats, im_inds, locs[loc_inds], levels[loc_inds])
        logits = self.mask_head(x, params_f[im_inds, loc_inds], self.train_codes)
        gt_masks_s4 = torch.cat([g["masks_s4"] for g in gts])
        losses.update(mask_bank_losses(logits, gt_masks_s4[inst_gt], cfg.path_weights, groups, num_groups))
        if cfg.cluster_weight > 0:
            gt_image = torch.cat([torch.full((g["boxes"].shape[0],), i, dtype=torch.long, device=device)
                                  for i, g in enumerate(gts)])
            annotated = torch.stack([g["annotated_s4"] for g in gts])
            losses["loss_mask_cluster"] = cfg.cluster_weight * overlap_suppression_loss(
                logits["111"], inst_gt, gt_image, gt_masks_s4, annotated,
                gt_image // cfg.proposal_group_images, num_groups)
        return losses

    def _sample_proposals(self, pos: torch.Tensor):
        """The positive locations that train the mask head: ``pos`` (B×L, this process's batch) →
        (image index, location index, group index of each proposal, number of groups).

        The batch is cut into groups of ``cfg.proposal_group_images`` consecutive images (the
        authors' images per GPU, 2; the last group is smaller when B is not a multiple), and each
        group is sampled exactly as one of the authors' GPUs: if it has more positives than
        ``max_proposals_per_image`` × (its images), that many are drawn uniformly at random over
        the whole group (not per image), then at most ``max_proposals`` of those are kept, again
        uniformly. A group's proposals come only from its own images, and the rule does not depend
        on how the global batch is split over processes as long as each process holds a multiple
        of the group size (DDP hands each process consecutive images of the global batch). Draws
        use torch's global RNG, group after group, so a seeded run repeats itself; with one group
        the draws are those of the former whole-batch rule (``proposal_group_images`` ≥ the batch
        restores that rule). The mask losses are then combined as the authors' DDP combines its
        per-GPU means: the mean over groups of each group's mean (``dynamic_mask_head.group_mean``;
        every group weighs the same, the last smaller one included, and a group without proposals
        counts 0), which DDP's gradient average extends across processes.
        """
        cfg = self.cfg
        b = pos.shape[0]
        size = cfg.proposal_group_images
        num_groups = -(-b // size)
        im_inds, loc_inds = pos.nonzero(as_tuple=True)  # sorted by image: each group is one slice
        per_image = pos.sum(1).tolist()
        keep, start = [], 0
        for g in range(num_groups):
            first, last = g * size, min(b, (g + 1) * size)
            n = int(sum(per_image[first:last]))
            sel = torch.arange(start, start + n, device=pos.device)
            start += n
            cap = cfg.max_proposals_per_image * (last - first)
            if n > cap:
                sel = sel[torch.randperm(n, device=pos.device)[:cap]]
            if sel.numel() > cfg.max_proposals:
                sel = sel[torch.randperm(sel.numel(), device=pos.device)[: cfg.max_proposals]]
            keep.append(sel)
        keep = torch.cat(keep)
        im_inds, loc_inds = im_inds[keep], loc_inds[keep]
        return im_inds, loc_inds, im_inds // size, num_groups
