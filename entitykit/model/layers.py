"""Small shared pieces with no torchvision equivalent."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def aligned_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample N×C×h×w by an integer factor keeping pixel centres aligned with the strided grid.

    Plain bilinear (align_corners False) shifts a stride-s map by (s-1)/2 pixels relative to the
    location convention ``stride*i + stride//2``; this variant (CondInst's) does not.
    """
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(factor * h + 1, factor * w + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (factor // 2, 0, factor // 2, 0), mode="replicate")
    return x[:, :, : factor * h, : factor * w]


def grid_locations(h: int, w: int, stride: int, device=None) -> torch.Tensor:
    """(h*w)×2 pixel coordinates (x, y) of a stride-s feature map, row-major."""
    xs = torch.arange(w, device=device, dtype=torch.float32) * stride + stride // 2
    ys = torch.arange(h, device=device, dtype=torch.float32) * stride + stride // 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)


def dice_loss(probs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-mask soft Dice with squared denominators: 1 - 2Σxt / (Σx² + Σt² + eps). Shape N×… → N."""
    x = probs.flatten(1)
    t = targets.flatten(1).to(x.dtype)
    return 1.0 - 2.0 * (x * t).sum(1) / ((x * x).sum(1) + (t * t).sum(1) + eps)
