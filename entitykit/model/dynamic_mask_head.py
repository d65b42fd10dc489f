"""Dynamic mask head, global kernel bank and overlap-suppression loss.

Each entity gets a tiny 3-layer 1×1 network (169 parameters from the controller) run on the mask
features plus relative coordinates. The kernel bank adds one learned static 3×3 alternative per
layer; training mixes dynamic/static layers into 7 paths (shared intermediates), inference runs
only the all-dynamic path 111. Dynamic layers are batched matmuls so the graph exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PATH_CODES, ModelConfig
from .layers import aligned_bilinear, dice_loss, grid_locations


def split_params(params: torch.Tensor, in_ch: int, ch: int):
    """N×169 → [(weight N×out×in, bias N×out×1)] × 3, layout [w1|w2|w3|b1|b2|b3], weights out×in."""
    n = params.shape[0]
    shapes = [(ch, in_ch), (ch, ch), (1, ch)]
    sizes = [o * i for o, i in shapes] + [o for o, _ in shapes]
    parts = torch.split(params, sizes, dim=1)
    return [(parts[k].reshape(n, o, i), parts[3 + k].reshape(n, o, 1)) for k, (o, i) in enumerate(shapes)]


def relative_coords(inst_locations: torch.Tensor, inst_soi: torch.Tensor, h: int, w: int,
                    stride: int) -> torch.Tensor:
    """N×2×(h·w): (instance location - mask-feature location) / size-of-interest of its level."""
    locs = grid_locations(h, w, stride, inst_locations.device)  # P×2
    rel = (inst_locations[:, None, :] - locs[None]) / inst_soi[:, None, None]
    return rel.permute(0, 2, 1)


class DynamicMaskHead(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m, c = cfg.mask_channels, cfg.dynamic_channels
        self.in_ch, self.ch = m + 2, c
        self.stride = 8
        self.register_buffer("soi", torch.tensor(cfg.mask_soi, dtype=torch.float32), persistent=False)
        # the global kernel bank: one static alternative per layer (3×3, as in the authors' code)
        self.static = nn.ModuleList([nn.Conv2d(m + 2, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1),
                                     nn.Conv2d(c, 1, 3, padding=1)])
        for conv in self.static:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def head_inputs(self, mask_feats: torch.Tensor, im_inds: torch.Tensor, locations: torch.Tensor,
                    levels: torch.Tensor) -> torch.Tensor:
        """N×(2+C_mask)×h×w: [rel_x, rel_y, mask features of the instance's image]."""
        _, _, h, w = mask_feats.shape
        rel = relative_coords(locations, self.soi[levels], h, w, self.stride).reshape(locations.shape[0], 2, h, w)
        return torch.cat((rel.to(mask_feats.dtype), mask_feats[im_inds]), 1)

    @staticmethod
    def _dynamic(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor], relu: bool) -> torch.Tensor:
        weight, bias = wb  # N×out×in, N×out×1: a per-instance 1×1 conv (exports as one Einsum)
        y = torch.einsum("noc,nchw->nohw", weight, x) + bias[..., None]
        return F.relu(y) if relu else y

    def _static(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        y = self.static[layer](x)
        return F.relu(y) if layer < 2 else y

    def forward(self, x: torch.Tensor, params: torch.Tensor,
                codes: tuple[str, ...] = ("111",)) -> dict[str, torch.Tensor]:
        """Logits N×1×h×w (stride 8) for each requested path code ('1' = dynamic layer, first char = layer 1).

        Intermediates are shared: layer-1 maps are computed once per kind, layer-2 maps once per prefix.
        """
        wbs = split_params(params, self.in_ch, self.ch)
        cache: dict[str, torch.Tensor] = {"": x}

        def run(prefix: str) -> torch.Tensor:
            if prefix not in cache:
                layer = len(prefix) - 1
                inp = run(prefix[:-1])
                cache[prefix] = (self._dynamic(inp, wbs[layer], relu=layer < 2) if prefix[-1] == "1"
                                 else self._static(inp, layer))
            return cache[prefix]

        return {code: run(code) for code in codes}


def group_mean(values: torch.Tensor, groups: torch.Tensor | None = None, num_groups: int = 1) -> torch.Tensor:
    """Mean over ``num_groups`` groups of each group's mean of ``values`` (N), ``groups`` (N, ints in
    0..num_groups-1) saying which group each value belongs to.

    This is how the authors' DDP combines a per-GPU mean loss: every GPU (group) weighs the same
    whatever its number of proposals, and a group without any value contributes 0 but still
    counts (a GPU without proposals has a zero loss, and DDP divides the summed gradients by the
    number of GPUs). With one group (or ``groups`` None) it is ``values.mean()``.
    """
    if groups is None or num_groups == 1:
        return values.mean()
    onehot = (groups[None, :] == torch.arange(num_groups, device=values.device)[:, None]).to(values.dtype)
    sums = (onehot * values[None, :]).sum(1)  # no index_add: deterministic on every device
    counts = onehot.sum(1).clamp(min=1)
    return (sums / counts).mean()


def mask_bank_losses(logits: dict[str, torch.Tensor], gt_masks_s4: torch.Tensor,
                     path_weights: dict[str, float], groups: torch.Tensor | None = None,
                     num_groups: int = 1) -> dict[str, torch.Tensor]:
    """Per path: mean Dice over proposals of sigmoid(×2-upsampled logits) vs the stride-4 GT mask.

    With ``groups`` (the sampling group of each proposal, see ``ModelConfig.proposal_group_images``)
    the mean is taken per group and then over the ``num_groups`` groups (:func:`group_mean`), as
    the authors' per-GPU means averaged by DDP.
    """
    out = {}
    for code in PATH_CODES:
        w = path_weights.get(code, 0.0)
        if code in logits and w > 0:
            probs = aligned_bilinear(logits[code], 2).sigmoid()[:, 0]
            out[f"loss_mask_bank_{code}"] = group_mean(dice_loss(probs, gt_masks_s4), groups, num_groups) * w
    return out


def overlap_suppression_loss(logits111: torch.Tensor, gt_inds: torch.Tensor, gt_image: torch.Tensor,
                             gt_masks_s4: torch.Tensor, annotated_s4: torch.Tensor,
                             gt_group: torch.Tensor | None = None, num_groups: int = 1) -> torch.Tensor:
    """Entities of one image compete for each pixel (spec section 5).

    logits111: N×1×h×w path-111 logits of the sampled proposals; gt_inds: their global GT index;
    gt_image: image index of every GT; gt_masks_s4: G×H4×W4 targets; annotated_s4: B×H4×W4, False
    on unannotated pixels (void, crowd, padding), which are zeroed after the softmax and so ignored.
    Returns the mean Dice over participating GTs (GTs with at least one proposal); with
    ``gt_group`` (the sampling group of every GT) the mean over each group's participating GTs,
    then over the ``num_groups`` groups (:func:`group_mean`: a group without participants counts 0).
    """
    uniq, inverse = torch.unique(gt_inds, return_inverse=True)
    g = uniq.numel()
    sums = logits111.new_zeros((g,) + logits111.shape[1:]).index_add_(0, inverse, logits111)
    counts = torch.bincount(inverse, minlength=g).to(logits111.dtype).view(g, 1, 1, 1)
    mean_logits = aligned_bilinear(sums / counts, 2)[:, 0]  # mean of logits, not of kernels
    images = gt_image[uniq]
    probs = torch.empty_like(mean_logits)
    for b in torch.unique(images).tolist():
        sel = images == b
        probs[sel] = torch.softmax(mean_logits[sel], dim=0) * annotated_s4[b].to(probs.dtype)
    dice = dice_loss(probs, gt_masks_s4[uniq])
    return group_mean(dice, None if gt_group is None else gt_group[uniq], num_groups)
