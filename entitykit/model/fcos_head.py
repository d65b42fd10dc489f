"""The FCOS entity head (entityness, centerness, ltrb), its target assignment and its losses.

One class ("entity"): things and stuff are assigned alike. Regression is in units of the level
stride; each level has its own learnable scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation, generalized_box_iou_loss, sigmoid_focal_loss

from .config import ModelConfig

INF = 1e8


def _tower(cfg: ModelConfig) -> nn.Sequential:
    c = cfg.fpn_channels
    return nn.Sequential(*[
        Conv2dNormActivation(c, c, 3, norm_layer=lambda ch: nn.GroupNorm(cfg.head_groups, ch), bias=True)
        for _ in range(cfg.head_convs)
    ])


class FCOSHead(nn.Module):
    """Shared over P3..P7. Returns per-level lists; the bbox-tower output also feeds the controller."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.fpn_channels
        self.cls_tower = _tower(cfg)
        self.bbox_tower = _tower(cfg)
        self.cls_logits = nn.Conv2d(c, 1, 3, padding=1)
        self.bbox_pred = nn.Conv2d(c, 4, 3, padding=1, bias=False)
        self.ctrness = nn.Conv2d(c, 1, 3, padding=1, bias=False)
        self.scales = nn.Parameter(torch.ones(len(cfg.strides)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - cfg.prior_prob) / cfg.prior_prob))

    def forward(self, feats: list[torch.Tensor]):
        cls, reg, ctr, towers = [], [], [], []
        for level, x in enumerate(feats):
            t = self.bbox_tower(x)
            cls.append(self.cls_logits(self.cls_tower(x)))
            reg.append(F.relu(self.scales[level] * self.bbox_pred(t)))
            ctr.append(self.ctrness(t))
            towers.append(t)
        return cls, reg, ctr, towers


def masks_to_edge_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes in pixel-edge convention (x2 = last column + 1), so a 1-px entity has width 1.

    Fix of spec 10.7: the authors' inclusive-max boxes are one pixel short and drop 1-px entities.
    """
    m = masks.bool()
    cols, rows = m.any(1), m.any(2)
    w, h = m.shape[2], m.shape[1]
    x1 = cols.float().argmax(1)
    x2 = w - cols.flip(1).float().argmax(1)
    y1 = rows.float().argmax(1)
    y2 = h - rows.flip(1).float().argmax(1)
    return torch.stack((x1, y1, x2, y2), 1).float()


def centers_of_mass(masks: torch.Tensor) -> torch.Tensor:
    """G×2 (x, y) mean pixel index of each mask (the spec's sampling centre, not the box centre)."""
    m = masks.float()
    area = m.sum((1, 2)).clamp(min=1)
    ys = torch.arange(m.shape[1], dtype=m.dtype, device=m.device)
    xs = torch.arange(m.shape[2], dtype=m.dtype, device=m.device)
    cx = (m.sum(1) * xs).sum(1) / area
    cy = (m.sum(2) * ys).sum(1) / area
    return torch.stack((cx, cy), 1)


def assign_targets(locations: torch.Tensor, strides: torch.Tensor, size_lo: torch.Tensor,
                   size_hi: torch.Tensor, boxes: torch.Tensor, centers: torch.Tensor,
                   radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Match every location (all levels) to at most one GT of one image.

    A location is a candidate for a GT when it lies strictly inside the centre region
    (centre of mass ± radius·stride, clipped to the box) and max(ltrb) lies in its level's
    size range (both bounds inclusive). Among candidates the smallest box area wins; equal areas go
    to the lower GT index. Returns (gt index per location, -1 = background; ltrb in pixels).
    """
    n = locations.shape[0]
    if boxes.shape[0] == 0:
        return torch.full((n,), -1, dtype=torch.long, device=locations.device), locations.new_zeros(n, 4)
    x, y = locations[:, 0:1], locations[:, 1:2]
    ltrb = torch.stack((x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y), 2)  # L×G×4
    r = radius * strides[:, None]
    cx, cy = centers[:, 0], centers[:, 1]
    rx1 = torch.maximum(cx - r, boxes[:, 0])
    ry1 = torch.maximum(cy - r, boxes[:, 1])
    rx2 = torch.minimum(cx + r, boxes[:, 2])
    ry2 = torch.minimum(cy + r, boxes[:, 3])
    in_center = torch.stack((x - rx1, y - ry1, rx2 - x, ry2 - y), 2).amin(2) > 0
    reach = ltrb.amax(2)
    in_range = (reach >= size_lo[:, None]) & (reach <= size_hi[:, None])
    candidate = in_center & in_range
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.sort(area, stable=True).indices  # smallest first, ties by index
    cand_sorted = candidate[:, order]
    first = cand_sorted.to(torch.uint8).argmax(1)  # argmax returns the first maximal index
    gt = torch.where(cand_sorted.any(1), order[first], torch.full_like(first, -1))
    ltrb_sel = ltrb[torch.arange(n, device=ltrb.device), gt.clamp(min=0)]
    return gt, ltrb_sel


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    return torch.sqrt((lr.amin(1) / lr.amax(1).clamp(min=1e-12)) * (tb.amin(1) / tb.amax(1).clamp(min=1e-12)))


def _reduced(x: torch.Tensor) -> torch.Tensor:
    """Average over data-parallel workers (the authors' all_reduce / world_size)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        x = x.clone()
        torch.distributed.all_reduce(x)
        x = x / torch.distributed.get_world_size()
    return x


def fcos_losses(cls_logits: torch.Tensor, box_reg: torch.Tensor, ctr_logits: torch.Tensor,
                pos: torch.Tensor, ltrb_targets: torch.Tensor, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Focal / GIoU / centerness losses, normalised as in the spec (section 2).

    Inputs are flattened over images and locations; ltrb targets and predictions in stride units.
    GIoU uses torchvision's loss (eps-smoothed) instead of the authors' +1-smoothed IoU term.
    """
    num_pos = _reduced(pos.sum().float()).clamp(min=1.0)
    loss_cls = sigmoid_focal_loss(cls_logits, pos.to(cls_logits.dtype), alpha=cfg.focal_alpha,
                                  gamma=cfg.focal_gamma, reduction="sum") / num_pos
    if not bool(pos.any()):
        zero = box_reg.sum() * 0 + ctr_logits.sum() * 0
        return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": zero, "loss_fcos_ctr": zero}
    tgt = ltrb_targets[pos]
    pred = box_reg[pos]
    ctr_t = centerness_target(tgt)
    as_box = lambda d: torch.stack((-d[:, 0], -d[:, 1], d[:, 2], d[:, 3]), 1)  # noqa: E731
    giou = generalized_box_iou_loss(as_box(pred), as_box(tgt), reduction="none")
    loss_loc = (giou * ctr_t).sum() / _reduced(ctr_t.sum()).clamp(min=1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(ctr_logits[pos], ctr_t, reduction="sum") / num_pos
    return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}
