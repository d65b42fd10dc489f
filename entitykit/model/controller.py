"""The controller (kernel head) and the mask branch: the two inputs of the dynamic mask head.

The controller is PanopticFCN-style (CoordConv + 3 GN convs + output conv), as in the authors'
code, not CondInst's single conv. It predicts the 169 dynamic parameters at every location.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .config import ModelConfig
from .layers import aligned_bilinear


def coord_maps(x: torch.Tensor) -> torch.Tensor:
    """B×2×H×W maps of x then y, each linspace(-1, 1) (CoordConv)."""
    b, _, h, w = x.shape
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    return torch.cat((xs, ys), 1)


class Controller(nn.Module):
    """Shared over levels; evaluated everywhere, only positives / detections are read out."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.fpn_channels
        gn = lambda ch: nn.GroupNorm(cfg.head_groups, ch)  # noqa: E731
        self.convs = nn.Sequential(*[
            Conv2dNormActivation(c + 2 if i == 0 else c, c, 3, norm_layer=gn, bias=False)
            for i in range(cfg.controller_convs)
        ])
        self.out_conv = nn.Conv2d(c, cfg.num_dynamic_params, 3, padding=1)
        nn.init.normal_(self.out_conv.weight, std=0.01)
        nn.init.zeros_(self.out_conv.bias)

    def features(self, towers: list[torch.Tensor]) -> list[torch.Tensor]:
        """The GN conv stack per level (its statistics need whole maps, so it runs everywhere)."""
        return [self.convs(torch.cat((t, coord_maps(t)), 1)) for t in towers]

    def forward(self, towers: list[torch.Tensor]) -> list[torch.Tensor]:
        """Parameters at every location of every level (training reads the positives)."""
        return [self.out_conv(f) for f in self.features(towers)]

    def params_at(self, feats: list[torch.Tensor], levels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """K×P parameters at K chosen locations of one image: the output conv as a patch matmul.

        feats: per-level C×H×W maps from `features`; levels/idx: level and flat index per location.
        At inference only ≤100 detections need parameters, so this skips the 169-channel 3×3 conv
        over all ~5k locations (the same numbers, a fraction of the work).
        """
        weight = self.out_conv.weight.flatten(1)  # P×(C·3·3), C-major then ky, kx
        outs, order = [], []
        for level, f in enumerate(feats):
            sel = (levels == level).nonzero().squeeze(1)
            i = idx[sel]
            w = f.shape[-1]
            y, x = i // w, i % w
            padded = F.pad(f, (1, 1, 1, 1))  # the conv's zero padding
            patches = torch.stack([padded[:, y + dy, x + dx] for dy in range(3) for dx in range(3)], 2)
            outs.append(patches.permute(1, 0, 2).reshape(i.shape[0], weight.shape[1]) @ weight.t() + self.out_conv.bias)
            order.append(sel)
        out, order = torch.cat(outs), torch.cat(order)
        return torch.zeros_like(out).scatter(0, order[:, None].expand_as(out), out)


def _kaiming_a1(m: nn.Module) -> None:
    for conv in m.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


class MaskBranch(nn.Module):
    """P3-P5 refined, fused at stride 8, then a small tower down to C_mask (=8) channels."""

    out_stride = 8

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, m = cfg.fpn_channels, cfg.mask_branch_channels
        self.refine = nn.ModuleList(
            Conv2dNormActivation(c, m, 3, norm_layer=nn.BatchNorm2d, bias=False) for _ in range(3))
        self.tower = nn.Sequential(*[
            Conv2dNormActivation(m, m, 3, norm_layer=nn.BatchNorm2d, bias=False)
            for _ in range(cfg.mask_branch_convs)
        ])
        _kaiming_a1(self.refine)
        _kaiming_a1(self.tower)
        self.out_conv = nn.Conv2d(m, cfg.mask_channels, 1)  # PyTorch default init, as the authors

    def forward(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> torch.Tensor:
        x = self.refine[0](p3)
        h, w = x.shape[-2:]
        for i, (p, f) in enumerate(((p4, 2), (p5, 4)), start=1):
            y = aligned_bilinear(self.refine[i](p), f)
            x = x + y[:, :, :h, :w]
        return self.out_conv(self.tower(x))
