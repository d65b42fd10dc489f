"""Backbone + FPN giving P3-P7 (strides 8..128), built from torchvision parts.

P6/P7 placement follows the authors' configs: ResNets take P6 from C5, the transformer trunks
(Swin, ConvNeXt) from P5. C2 is not fed to the FPN: P2 is unused by the model and dropping it does
not change P3-P7.
"""

from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from ..errors import EntityKitError
from .config import RESNETS, ModelConfig

_FETCH_TIMEOUT_S = 60.0
_HEAD_KEYS = ("fc.", "head.", "classifier.", "norm.")  # classification-only parts we do not use


def _read_state_dict(spec: str, backbone: str) -> dict[str, torch.Tensor]:
    """A local file wins; otherwise a torchvision weights name, fetched (or read from torch's cache)."""
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
            raise EntityKitError(f"cannot read backbone weights: {exc}", path=path) from exc
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        return state
    try:
        if "." in spec:
            weights = torchvision.models.get_weight(spec)
        else:
            weights = torchvision.models.get_model_weights(backbone)[spec]
    except (KeyError, ValueError, AttributeError) as exc:
        raise EntityKitError(
            f"pretrained={spec!r} is neither an existing file nor a torchvision weights name "
            f"(e.g. {'DEFAULT'!r} or the full enum name for {backbone})", item="pretrained") from exc
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_FETCH_TIMEOUT_S)  # a network that drops packets must not hang the run
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch.hub's "Downloading: …" line (on stdout)
            return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, SSL errors, hash mismatch, ...
        url = getattr(weights, "url", "?")
        raise EntityKitError(
            f"could not fetch torchvision weights {spec} ({type(exc).__name__}: {exc}); without internet, "
            f"download {url} on another machine and set pretrained to the local file "
            '(or pretrained = "none" to start from random weights on purpose)',
            item="pretrained") from exc
    finally:
        socket.setdefaulttimeout(previous)


def load_trunk_weights(trunk: nn.Module, spec: str, backbone: str) -> None:
    state = _read_state_dict(spec, backbone)
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_KEYS)}
    if any(k.startswith("backbone.bottom_up.") for k in state):
        raise EntityKitError(f"{spec} is a whole detectron2 model (the authors'?), not trunk weights: import it "
                             "with `entitykit import-weights` and start from it with `--init`", item="pretrained")
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: weights of another architecture
        raise EntityKitError(f"weights do not fit {backbone}: {exc}", item="pretrained") from exc
    missing = [k for k in missing if not k.startswith(_HEAD_KEYS) and "num_batches_tracked" not in k]
    if missing or unexpected:
        raise EntityKitError(f"weights do not fit {backbone}: missing {missing[:5]}, unexpected "
                             f"{list(unexpected)[:5]}", item="pretrained")


class FrozenBN(FrozenBatchNorm2d):
    """torchvision's FrozenBatchNorm2d (same buffers), computed as one fused inference-mode batch_norm.

    torchvision's version spends two elementwise passes per layer; this one is ~15 % faster on a
    CPU ResNet-50 and still passes gradients to its input.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _freeze(modules: list[nn.Module], trainable: int) -> None:
    """Freeze the first len(modules) - trainable stages (FREEZE_AT semantics)."""
    if not 0 <= trainable <= len(modules):
        raise EntityKitError(f"trainable_layers must be in 0..{len(modules)}", item="trainable_layers")
    for stage in modules[: len(modules) - trainable]:
        for p in stage.parameters():
            p.requires_grad_(False)


class ModulatedDeformConv(nn.Module):
    """A 3×3 modulated deformable convolution (DCNv2; Zhu et al., CVPR 2019) in place of a plain conv.

    ``offset`` (a 3×3 conv with bias, zero-initialised so that a fresh layer is the plain conv) gives
    27 channels per location: 18 offsets, laid out (dy, dx) per kernel tap as
    :func:`torchvision.ops.deform_conv2d` reads them, then 9 modulation logits (sigmoid). ``weight``
    is C_out×C_in×3×3 with no bias (a norm follows), as the conv it replaces.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = conv.weight
        k = conv.kernel_size[0] * conv.kernel_size[1]
        self.offset = nn.Conv2d(conv.in_channels, 3 * k, conv.kernel_size, stride=conv.stride,
                                padding=conv.padding, dilation=conv.dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.offset(x)
        k = out.shape[1] // 3
        return torchvision.ops.deform_conv2d(x, out[:, : 2 * k], self.weight, stride=self.stride,
                                             padding=self.padding, dilation=self.dilation,
                                             mask=out[:, 2 * k:].sigmoid())


def _resnet_trunk(cfg: ModelConfig) -> nn.Module:
    """torchvision's ResNet, with the two options the authors' MSRA trunks need: the stride of a
    downsampling block in its 1×1 conv (``stride_in_1x1``) and DCNv2 convs (``deformable_stages``)."""
    norm = FrozenBN if cfg.backbone_norm == "frozen_bn" else nn.BatchNorm2d
    trunk = torchvision.models.get_model(cfg.backbone, weights=None, norm_layer=norm)
    stages = [trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]  # res2..res5
    if cfg.stride_in_1x1:
        if not hasattr(stages[0][0], "conv3"):
            raise EntityKitError(f"stride_in_1x1 needs a bottleneck ResNet (50/101), not {cfg.backbone}",
                                 item="stride_in_1x1")
        for stage in stages:
            stride = stage[0].conv2.stride
            stage[0].conv1.stride, stage[0].conv2.stride = stride, (1, 1)
    for res in cfg.deformable_stages:
        for block in stages[res - 2]:
            block.conv2 = ModulatedDeformConv(block.conv2)
    if cfg.pretrained and cfg.pretrained != "none":
        load_trunk_weights(trunk, cfg.pretrained, cfg.backbone)
    return trunk


def _resnet_fpn(cfg: ModelConfig) -> nn.Module:
    trunk = _resnet_trunk(cfg)
    stem = nn.ModuleList([trunk.conv1, trunk.bn1])
    _freeze([stem, trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4], cfg.trainable_layers)
    c5 = trunk.fc.in_features  # 512 (ResNet-18/34) or 2048 (ResNet-50/101)
    in_channels = [c5 // 4, c5 // 2, c5]
    return BackboneWithFPN(trunk, {"layer2": "c3", "layer3": "c4", "layer4": "c5"}, in_channels,
                           cfg.fpn_channels, extra_blocks=LastLevelP6P7(c5, cfg.fpn_channels))


# Swin (Liu et al., ICCV 2021, Table 1): embed dim C, blocks per stage, heads per stage, stochastic
# depth (torchvision's for T/S/B; the authors' 0.2 for L, which torchvision does not ship)
SWINS = {"swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2), "swin_s": (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
         "swin_b": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5), "swin_l": (192, (2, 2, 18, 2), (6, 12, 24, 48), 0.2)}


def _swin(name: str, window: int) -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    dim, depths, heads, drop = SWINS[name]
    return SwinTransformer(patch_size=[4, 4], embed_dim=dim, depths=list(depths), num_heads=list(heads),
                           window_size=[window, window], stochastic_depth_prob=drop)


class TransformerTrunk(nn.Module):
    """Strides 8/16/32 of a torchvision Swin or ConvNeXt, as NCHW maps (Swin gets a LayerNorm each)."""

    def __init__(self, name: str, pretrained: str | None, window: int = 7):
        super().__init__()
        model = _swin(name, window) if name in SWINS else torchvision.models.get_model(name, weights=None)
        if pretrained and pretrained != "none":
            load_trunk_weights(model, pretrained, name)
        self.features = model.features  # [stem, stage1, down, stage2, down, stage3, down, stage4]
        self.channels_last = name.startswith("swin")
        base = SWINS[name][0] if name in SWINS else (128 if name.endswith("_base") else 96)  # C, 2C, 4C, 8C
        dims = [2 * base, 4 * base, 8 * base]
        self.out_channels = dims
        self.norms = nn.ModuleList(nn.LayerNorm(d) if self.channels_last else nn.Identity() for d in dims)

    def stages(self) -> list[nn.Module]:
        f = self.features
        return [f[0], f[1], nn.ModuleList([f[2], f[3]]), nn.ModuleList([f[4], f[5]]), nn.ModuleList([f[6], f[7]])]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out = OrderedDict()
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (3, 5, 7):
                y = self.norms[(i - 3) // 2](x)
                out[f"c{(i + 3) // 2}"] = y.permute(0, 3, 1, 2).contiguous() if self.channels_last else y
        return out


class TransformerFPN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.body = TransformerTrunk(cfg.backbone, cfg.pretrained, cfg.swin_window)
        _freeze(self.body.stages(), cfg.trainable_layers)
        self.fpn = FeaturePyramidNetwork(self.body.out_channels, cfg.fpn_channels,
                                         extra_blocks=LastLevelP6P7(cfg.fpn_channels, cfg.fpn_channels))
        self.out_channels = cfg.fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """A module mapping images to an OrderedDict of the five maps P3..P7 (in that order)."""
    return _resnet_fpn(cfg) if cfg.backbone in RESNETS else TransformerFPN(cfg)
