"""Model configuration: one flat dataclass plus named presets.

Every default is the paper's R-50 1x setting (numbers from docs/model-spec.md). The config travels
inside each checkpoint, so a weights file always says how to rebuild its model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..errors import EntityKitError
from ..options import check_range, check_value, field_types, suggest, unknown_key_error

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
TRANSFORMERS = ("swin_t", "swin_s", "swin_b", "swin_l", "convnext_tiny", "convnext_small", "convnext_base")
BACKBONES = RESNETS + TRANSFORMERS
PATH_CODES = ("111", "110", "101", "100", "011", "010", "001")


def _paper_path_weights() -> dict[str, float]:
    # first layer dynamic -> 1.0, static -> 0.25 (four and three, spec section 4)
    return {c: (1.0 if c[0] == "1" else 0.25) for c in PATH_CODES}


@dataclass
class ModelConfig:
    # --- backbone + FPN ---
    backbone: str = "resnet50"
    # Initial trunk weights: a torchvision weights name ("ResNet50_Weights.IMAGENET1K_V1"), a local
    # .pth/.safetensors file, or "none" (random initialisation, on purpose). None = not said: models
    # build with random weights, but `train` refuses to start (see `pretrained_problem`).
    pretrained: str | None = None
    trainable_layers: int = 3  # ResNet: FREEZE_AT 2 == stem + layer1 frozen
    backbone_norm: str = "frozen_bn"  # "frozen_bn" | "bn" (ResNets only; trunks from scratch need "bn")
    # caffe-style (MSRA) ResNet: a downsampling block strides in its first 1×1 conv, not in the 3×3
    # (detectron2's STRIDE_IN_1X1, the authors' R-50.pkl / R-101.pkl trunks). Same shapes, other features.
    stride_in_1x1: bool = False
    # ResNet stages (2 = res2 … 5 = res5) whose 3×3 convs are modulated deformable convs (DCNv2,
    # torchvision.ops.deform_conv2d); the authors' R-101-DCNv2 model uses (3, 4, 5).
    deformable_stages: tuple[int, ...] = ()
    swin_window: int = 7  # Swin attention window (the authors' Swin-L comes with 7 and with 12)
    fpn_channels: int = 256
    # RGB in 0..255; torchvision ImageNet statistics because the weights are torchvision's
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    # --- FCOS head ---
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    head_convs: int = 4
    head_groups: int = 32  # GroupNorm groups in the head and controller
    prior_prob: float = 0.01
    sizes_of_interest: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)  # level bounds, P3..P7
    center_radius: float = 1.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # --- controller + mask branch + dynamic head ---
    controller_convs: int = 3
    mask_branch_channels: int = 128
    mask_branch_convs: int = 4
    mask_channels: int = 8  # C_mask
    dynamic_channels: int = 8
    mask_soi: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0, 1024.0)  # relative-coordinate scale per level
    # --- global kernel bank + overlap suppression ---
    path_weights: dict[str, float] = field(default_factory=_paper_path_weights)
    cluster_weight: float = 0.5
    max_proposals_per_image: int = 120
    max_proposals: int = 500
    # images per proposal-sampling group = the authors' images per GPU (2: batch 16 on 8 GPUs); each group of
    # that many consecutive images is capped at max_proposals_per_image × its images, then at
    # max_proposals, and the mask losses are the mean over groups of per-group means (as DDP averages
    # the authors' per-GPU losses), whatever the number of processes (spec section 6)
    proposal_group_images: int = 2
    # --- inference ---
    score_thresh: float = 0.05
    pre_nms_topk: int = 1000
    nms_thresh: float = 0.6
    detections_per_image: int = 100
    mask_thresh: float = 0.5
    mask_rescore: bool = False
    # --- solver (read by the trainer, not by the model) ---
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 1e-4
    ims_per_batch: int = 16
    max_iter: int = 90_000
    lr_steps: tuple[int, ...] = (60_000, 80_000)
    warmup_iters: int = 1500
    min_size_train: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    max_size_train: int = 1333
    min_size_test: int = 800
    max_size_test: int = 1333

    def __post_init__(self) -> None:
        # every field typed as annotated (lists from JSON/TOML become tuples), then the rules
        for name, hint in field_types(ModelConfig).items():
            setattr(self, name, check_value(getattr(self, name), hint, name))
        self.validate()

    def validate(self) -> None:
        """Types are checked on construction; this checks ranges and the rules between fields.
        Each error is one :class:`EntityKitError` whose item is the field's name."""
        for name, (low, high, low_open, high_open) in _RANGES.items():
            check_range(getattr(self, name), name, low=low, high=high, low_open=low_open, high_open=high_open)
        for code, w in self.path_weights.items():
            check_range(w, f"path_weights.{code}", low=0)
        if self.optimizer not in ("sgd", "adamw"):
            raise EntityKitError(f"unknown optimizer {self.optimizer!r}; choose sgd or adamw", item="optimizer")
        if list(self.lr_steps) != sorted(set(self.lr_steps)):
            raise EntityKitError(f"must be increasing iterations, got {list(self.lr_steps)}", item="lr_steps")
        if self.backbone not in BACKBONES:
            raise EntityKitError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}",
                                 item="backbone")
        if self.pretrained is not None and not self.pretrained.strip():
            raise EntityKitError('give a torchvision weights name, a local file, or "none"', item="pretrained")
        if self.backbone not in RESNETS and (self.stride_in_1x1 or self.deformable_stages):
            raise EntityKitError(f"stride_in_1x1 and deformable_stages apply to ResNets, not {self.backbone}",
                                 item="deformable_stages" if self.deformable_stages else "stride_in_1x1")
        if not set(self.deformable_stages) <= {2, 3, 4, 5}:
            raise EntityKitError(f"deformable_stages are ResNet stages 2..5, got {list(self.deformable_stages)}",
                                 item="deformable_stages")
        if self.backbone_norm not in ("frozen_bn", "bn"):
            raise EntityKitError("backbone_norm must be 'frozen_bn' or 'bn'", item="backbone_norm")
        if len(self.strides) != 5 or len(self.mask_soi) != 5 or len(self.sizes_of_interest) != 4:
            raise EntityKitError("strides and mask_soi need 5 values (P3..P7), sizes_of_interest 4 bounds",
                                 item="strides")
        bad = set(self.path_weights) - set(PATH_CODES)
        if bad:
            raise EntityKitError(f"unknown kernel-bank path codes {sorted(bad)}; valid: {PATH_CODES}",
                                 item="path_weights")
        if self.fpn_channels % self.head_groups:
            raise EntityKitError(f"fpn_channels must be divisible by head_groups ({self.head_groups})",
                                 item="fpn_channels")

    @property
    def num_dynamic_params(self) -> int:
        """169 for the paper's head: (C_mask+2)*c + c + c*c + c + c + 1."""
        c, m = self.dynamic_channels, self.mask_channels
        return (m + 2) * c + c * c + c + c + c + 1

    @property
    def baseline(self) -> bool:
        return self.cluster_weight == 0 and all(w == 0 for c, w in self.path_weights.items() if c != "111")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A config from JSON-like data (lists for tuples): unknown keys and wrong types refused."""
        if not isinstance(data, dict):
            raise EntityKitError(f"model config must be a table, got {type(data).__name__}", item="config")
        return cls(**cls.check_overrides(data, prefix=""))

    @classmethod
    def check_overrides(cls, data: dict, path: str | None = None, prefix: str = "model.") -> dict:
        """Field overrides (``{"fpn_channels": 32}``) typed as the fields are; an unknown key is
        refused with the closest field name ("did you mean"). Errors name ``path`` and
        ``prefix + key``. Ranges and the rules between fields are checked when the config is built."""
        types_ = field_types(cls)
        out = {}
        for key, value in data.items():
            if key not in types_:
                close = suggest(str(key), types_)
                raise unknown_key_error(str(key), types_, "model option", path, f"{prefix}{key}",
                                        hint=f"{prefix}{close}" if close else None)
            out[key] = check_value(value, types_[key], f"{prefix}{key}", path)
        return out

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# field: (lowest, highest, lowest excluded, highest excluded); every number of a tuple field is checked
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "trainable_layers": (0, 5, False, False),
    "fpn_channels": (1, None, False, False),
    "swin_window": (1, None, False, False),
    "pixel_std": (0, None, True, False),
    "size_divisibility": (1, None, False, False),
    "strides": (1, None, False, False),
    "head_convs": (0, None, False, False),
    "head_groups": (1, None, False, False),
    "prior_prob": (0, 1, True, True),
    "sizes_of_interest": (0, None, True, False),
    "center_radius": (0, None, True, False),
    "focal_alpha": (0, 1, False, False),
    "focal_gamma": (0, None, False, False),
    "controller_convs": (0, None, False, False),
    "mask_branch_channels": (1, None, False, False),
    "mask_branch_convs": (0, None, False, False),
    "mask_channels": (1, None, False, False),
    "dynamic_channels": (1, None, False, False),
    "mask_soi": (0, None, True, False),
    "cluster_weight": (0, None, False, False),
    "max_proposals_per_image": (1, None, False, False),
    "max_proposals": (1, None, False, False),
    "proposal_group_images": (1, None, False, False),
    "score_thresh": (0, 1, False, False),
    "pre_nms_topk": (1, None, False, False),
    "nms_thresh": (0, 1, False, False),
    "detections_per_image": (1, None, False, False),
    "mask_thresh": (0, 1, False, False),
    "lr": (0, None, True, False),
    "weight_decay": (0, None, False, False),
    "ims_per_batch": (1, None, False, False),
    "max_iter": (1, None, False, False),
    "lr_steps": (0, None, False, False),
    "warmup_iters": (0, None, False, False),
    "min_size_train": (1, None, False, False),
    "max_size_train": (1, None, False, False),
    "min_size_test": (1, None, False, False),
    "max_size_test": (1, None, False, False),
}


def baseline(cfg: ModelConfig) -> ModelConfig:
    """The paper's ablation baseline: kernel bank and overlap suppression off (only path 111 trains)."""
    return cfg.replace(path_weights={c: (1.0 if c == "111" else 0.0) for c in PATH_CODES}, cluster_weight=0.0)


def pretrained_problem(cfg: ModelConfig) -> str | None:
    """Why ``cfg`` must not start a training run from fresh weights, or None.

    A model whose ``pretrained`` is not said (None) would train a randomly initialised trunk — with
    frozen BN holding identity statistics and a frozen random stem, a 90k-iteration run wasted
    without a warning. Training needs the choice made: a local weights file, a torchvision weights
    name, or ``"none"`` for random initialisation on purpose.
    """
    if cfg.pretrained is not None:
        return None
    return ("the trunk's initial weights are not set: give a local file (model.pretrained = "
            '"resnet50.pth"), a torchvision weights name (e.g. "ResNet50_Weights.IMAGENET1K_V1"), '
            'or model.pretrained = "none" to train from random weights on purpose')


# The paper's presets start from ImageNet weights (the authors': MSRA caffe R-50.pkl / R-101.pkl,
# ImageNet Swin). These use torchvision's, which fit the default RGB / stride-in-3×3 ResNet; without
# internet, download the file once and set model.pretrained to its path.
def _r50_1x() -> ModelConfig:
    return ModelConfig(pretrained="ResNet50_Weights.IMAGENET1K_V1")


def _r101_3x() -> ModelConfig:
    return ModelConfig(backbone="resnet101", pretrained="ResNet101_Weights.IMAGENET1K_V1", max_iter=270_000,
                       lr_steps=(180_000, 250_000))


def _swin_t_1x() -> ModelConfig:
    # P6/P7 from P5, nothing frozen, AdamW as the authors' config intends (spec 10.2)
    return ModelConfig(backbone="swin_t", pretrained="Swin_T_Weights.IMAGENET1K_V1", trainable_layers=5,
                       optimizer="adamw", lr=1e-4, weight_decay=0.05, mask_rescore=True)


def _tiny() -> ModelConfig:
    """Same architecture, narrow widths: for tests, CPU demos and overfitting checks."""
    return ModelConfig(backbone="resnet18", pretrained="none", backbone_norm="bn", trainable_layers=5, fpn_channels=64,
                       head_groups=8, mask_branch_channels=32, optimizer="adamw", lr=1e-3,
                       weight_decay=1e-4, ims_per_batch=4, max_iter=300, lr_steps=(), warmup_iters=0,
                       min_size_train=(128,), max_size_train=256, min_size_test=128, max_size_test=256)


PRESETS = {
    "r50_1x": _r50_1x,
    "r101_3x": _r101_3x,
    "swin_t_1x": _swin_t_1x,
    "tiny": _tiny,
    "r50_1x_baseline": lambda: baseline(_r50_1x()),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """A preset by name, with optional field overrides."""
    if name not in PRESETS:
        raise EntityKitError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}", item=name)
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
