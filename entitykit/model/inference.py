"""Post-processing: FCOS detections → path-111 masks → one non-overlapping entity id map.

Written without data-dependent Python control flow so the same code traces to ONNX. Differences
from the authors' post-processing (spec section 10) are marked "fix".
"""

from __future__ import annotations

import torch
from torchvision.ops import nms

from .config import ModelConfig
from .dynamic_mask_head import DynamicMaskHead
from .fcos_head import masks_to_edge_boxes
from .layers import aligned_bilinear


def select_detections(cls: list[torch.Tensor], reg: list[torch.Tensor], ctr: list[torch.Tensor],
                      locations: list[torch.Tensor], image_size: tuple[int, int], cfg: ModelConfig):
    """Per level: p > thresh, top-k by p·ctr; score sqrt(p·ctr); class-agnostic NMS; top-N; non-empty boxes.

    Inputs are one image's flattened per-level maps (HW, HW×4, HW, HW×2).
    Returns boxes, scores (descending), flat index within the level, location and level of the kept detections.
    """
    all_boxes, all_scores, all_idx, all_locs, all_levels = [], [], [], [], []
    for level, stride in enumerate(cfg.strides):
        p = cls[level].sigmoid()
        prod = p * ctr[level].sigmoid()
        masked = torch.where(p > cfg.score_thresh, prod, torch.full_like(prod, -1.0))
        k = min(cfg.pre_nms_topk, masked.shape[0])  # static: top-k of the candidates == top-k here
        top, idx = masked.topk(k)
        keep = top > 0
        idx, top = idx[keep], top[keep]
        loc = locations[level][idx]
        d = reg[level][idx] * stride
        all_boxes.append(torch.cat((loc - d[:, :2], loc + d[:, 2:]), 1))
        all_scores.append(top.sqrt())
        all_idx.append(idx)
        all_locs.append(loc)
        all_levels.append(torch.full_like(idx, level))
    boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
    keep = nms(boxes, scores, cfg.nms_thresh)[: cfg.detections_per_image]  # sorted by score
    boxes = boxes[keep]
    # as the authors: boxes clipped to the image, detections with an empty box dropped
    h, w = image_size
    boxes = torch.stack((boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                         boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)), 1)
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep = keep[nonempty]
    return (boxes[nonempty], scores[keep], torch.cat(all_idx)[keep], torch.cat(all_locs)[keep],
            torch.cat(all_levels)[keep])


def mask_probs(head: DynamicMaskHead, mask_feats: torch.Tensor, params: torch.Tensor,
               locations: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """N×(H/4)×(W/4) probabilities from path 111 (the bank's static kernels are training-only)."""
    im_inds = torch.zeros_like(levels)
    x = head.head_inputs(mask_feats, im_inds, locations, levels)
    logits = head(x, params, ("111",))["111"]
    return aligned_bilinear(logits, 2).sigmoid()[:, 0]


def _aligned_matrix(n_in: int, factor: int, n_out: int, device) -> torch.Tensor:
    """n_out×n_in matrix of aligned_bilinear(·, factor) along one axis, first n_out rows."""
    j = torch.arange(n_out, device=device, dtype=torch.float32)
    pos = ((j - factor // 2) / factor).clamp(0, n_in - 1)
    return _linear_matrix(pos, n_in)


def _resize_matrix(n_in: int, n_out: int, device) -> torch.Tensor:
    """n_out×n_in matrix of bilinear resizing with align_corners=False (PyTorch's source index rule)."""
    j = torch.arange(n_out, device=device, dtype=torch.float32)
    pos = ((j + 0.5) * (n_in / n_out) - 0.5).clamp(min=0).clamp(max=n_in - 1)
    return _linear_matrix(pos, n_in)


def _linear_matrix(pos: torch.Tensor, n_in: int) -> torch.Tensor:
    i0 = pos.floor()
    frac = pos - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    cols = torch.arange(n_in, device=pos.device)
    return ((cols == i0[:, None]) * (1 - frac)[:, None] + (cols == i1[:, None]) * frac[:, None]).float()


def _row_bands(m: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a banded n_out×n_in interpolation matrix into blocks of `block` output rows.

    Returns the K input rows each block reads (nb×K, K = the widest band) and the block weights
    (nb×block×K), so the product becomes nb small matmuls instead of one mostly-zero dense one.
    """
    # plain ints: traced shape arithmetic would round -x // b towards zero in the ONNX graph
    n_out, n_in = (int(s) for s in m.shape)
    nb = -(-n_out // block)
    mp = torch.cat((m, m.new_zeros(nb * block - n_out, n_in))).reshape(nb, block, n_in)
    used = mp.abs().sum(1) > 0  # nb×n_in
    cols = torch.arange(n_in, device=m.device)
    lo = torch.where(used, cols, torch.full_like(cols, n_in)).amin(1)
    hi = torch.where(used, cols, torch.full_like(cols, -1)).amax(1)
    width = int((hi - lo + 1).clamp(min=1).max())  # a size, not data: fixed by the image size
    start = lo.clamp(max=n_in - width).clamp(min=0)
    rows = start[:, None] + torch.arange(width, device=m.device)
    return rows, torch.gather(mp, 2, rows[:, None, :].expand(nb, block, width))


def paint_masks(probs_s4: torch.Tensor, image_size: tuple[int, int], output_size: tuple[int, int],
                thresh: float, block: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste stride-4 probabilities to the output size and give each pixel to the first mask above `thresh`.

    probs_s4: N×h4×w4 in priority order. Returns (winner, prob): H×W long, 0 = no mask, k = the
    k-th mask; and the winner's pasted probability there (0 where none).

    The paste has the values of the authors' three steps (aligned_bilinear ×4, crop to the unpadded
    image, bilinear resize to the output size): each is a separable linear map, so their per-axis
    matrices compose. Both matrices are banded, so each is applied `block` outputs at a time reading
    only the few inputs that block needs. The rows go last, one block of output rows at a time, and
    each block is painted at once: no N×H×W tensor is made (the largest is the column pass,
    N×h4×W) and the painting works in cache. Hand-written: no library op pastes, thresholds and
    paints in one pass.
    """
    h4, w4 = probs_s4.shape[-2:]
    (h, w), (oh, ow) = image_size, tuple(output_size)
    dev = probs_s4.device
    my = _aligned_matrix(h4, 4, h, dev)
    mx = _aligned_matrix(w4, 4, w, dev)
    if (h, w) != (oh, ow):
        my = _resize_matrix(h, oh, dev) @ my
        mx = _resize_matrix(w, ow, dev) @ mx
    n = probs_s4.shape[0]
    # plane 0 is an all-zero mask with priority 0: it makes the max below defined when n = 0
    planes = torch.cat((probs_s4.new_zeros((1, h4, w4)), probs_s4))
    xs, x_weights = _row_bands(mx, block)  # columns are banded the same way: apply them transposed
    t = planes.transpose(1, 2)[:, xs.flatten()].reshape(n + 1, xs.shape[0], xs.shape[1], h4)
    cols = torch.matmul(x_weights, t).flatten(1, 2).transpose(1, 2).contiguous()  # (N+1)×h4×W (+ pad)
    priority = torch.cat((torch.zeros(1, device=dev), n - torch.arange(n, device=dev))).to(torch.int32)[:, None, None]
    rows, weights = _row_bands(my, block)
    winners, probs = [], []
    for b in range(rows.shape[0]):
        p = torch.matmul(weights[b], cols[:, rows[b]])  # (N+1)×block×W
        # priorities n..1 in score order: the per-pixel max is the highest-scoring covering mask
        # (a max over planes is several times faster than an argmax, a product than a where)
        top = ((p > thresh).to(torch.int32) * priority).amax(0).long()
        win = torch.where(top > 0, n + 1 - top, torch.zeros_like(top))
        winners.append(win)
        probs.append(p.gather(0, win[None])[0])
    return torch.cat(winners)[:oh, :ow], torch.cat(probs)[:oh, :ow]


def paste_and_merge(probs_s4: torch.Tensor, scores: torch.Tensor, image_size: tuple[int, int],
                    output_size: tuple[int, int], cfg: ModelConfig, with_masks: bool = True) -> dict[str, torch.Tensor]:
    """Masks to the original size, then each pixel goes to the highest-scoring detection covering it.

    probs_s4 and scores must be in descending detection-score order. Uncovered pixels stay 0.
    Nothing N×H×W is made: painting works in row blocks, per-entity sums are scatter-adds over the
    H×W id map, and full-size masks are made for the kept entities only, and only `with_masks`
    (otherwise boxes come from the id map directly: K×H×W booleans are large on big outputs).
    """
    # exact shortcut: pasting only forms convex combinations, so a mask whose stride-4 maximum is not
    # above the threshold ends up empty anyway; skip it before the full-size work
    alive = probs_s4.flatten(1).amax(1) > cfg.mask_thresh
    probs_s4, scores = probs_s4[alive], scores[alive]
    n = probs_s4.shape[0]
    dev = probs_s4.device
    id_map, own = paint_masks(probs_s4, image_size, output_size, cfg.mask_thresh)  # 0 = nothing, k = k-th
    flat = id_map.flatten()
    area = torch.zeros(n + 1, device=dev).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))[1:]
    # fix (spec 10.15 / 10.7): only empty regions are dropped; 1-px-wide entities are kept
    keep = area > 0
    final = scores
    if cfg.mask_rescore:  # mean probability of the detection's own pasted mask over its region
        total = torch.zeros(n + 1, device=dev).scatter_add_(0, flat, own.flatten())[1:]
        final = scores * total / area.clamp(min=1)
    # fix (spec 10.15): re-sort after rescoring so entity k always has scores[k-1], descending
    ranked = torch.where(keep, final, torch.full_like(final, -1.0))
    order = ranked.topk(n).indices  # sorted; TopK exports where sort(stable=True) does not
    rank = torch.zeros_like(order).scatter(0, order, torch.arange(n, device=dev))
    lut = torch.cat((id_map.new_zeros(1), torch.where(keep, rank + 1, torch.zeros_like(rank))))
    id_map = lut[id_map]
    kept = keep[order]  # kept entities come first in `order`, so they are ids 1..k
    ids = torch.arange(1, n + 1, device=dev)[kept]
    out = {"id_map": id_map.to(torch.int32), "scores": final[order][kept], "det_scores": scores[order][kept]}
    if with_masks:
        out["masks"] = id_map[None] == ids[:, None, None]
        out["boxes"] = masks_to_edge_boxes(out["masks"])
    else:
        out["boxes"] = id_map_boxes(id_map, ids.numel())
    return out


def id_map_boxes(id_map: torch.Tensor, k: int) -> torch.Tensor:
    """K×4 edge-convention boxes (as masks_to_edge_boxes) of ids 1..k, from per-row / per-column presence."""
    h, w = id_map.shape
    ids = torch.arange(1, k + 1, device=id_map.device)
    big = torch.full((k + 1,), max(h, w), dtype=torch.long, device=id_map.device)
    # each id's first/last row and column: scatter the row (column) index of every pixel
    ys = torch.arange(h, device=id_map.device)[:, None].expand(h, w).flatten()
    xs = torch.arange(w, device=id_map.device)[None, :].expand(h, w).flatten()
    flat = id_map.flatten().long()
    y1 = big.scatter_reduce(0, flat, ys, "amin")[ids]
    x1 = big.scatter_reduce(0, flat, xs, "amin")[ids]
    y2 = torch.zeros_like(big).scatter_reduce(0, flat, ys, "amax")[ids] + 1
    x2 = torch.zeros_like(big).scatter_reduce(0, flat, xs, "amax")[ids] + 1
    return torch.stack((x1, y1, x2, y2), 1).float()
