"""Import the authors' released Entity checkpoints (detectron2 ``.pth``) as entitykit checkpoints.

The authors (dvlab-research/Entity) released trained models as detectron2 checkpoints: a
``torch.save``d dict whose ``"model"`` entry is the state dict (facts in
``docs/authors-checkpoints.md`` of the project's shared notes; their code was not used).
:func:`import_authors_checkpoint` reads one, finds its architecture from its keys and shapes,
renames every tensor onto :class:`~entitykit.model.EntityModel`'s modules and writes a
self-describing ``.safetensors`` that ``predict``, ``edit``, ``export-onnx``, ``eval`` (on its
predictions) and ``train --init`` use unchanged.

What the architecture needs to compute the same function is an option of the model, not a special
case here: ``stride_in_1x1`` (MSRA caffe-style ResNet), ``deformable_stages`` (DCNv2 in res3–res5),
``swin_window``, ``mask_rescore``. Only three value changes are made, each exact:

- **BGR → RGB**: their input is BGR 0–255 minus mean (103.530, 116.280, 123.675), std 1. entitykit
  feeds RGB, so the first conv's input channels are reversed and the mean is stored in RGB order
  (123.675, 116.280, 103.530) with std (1, 1, 1): the same numbers reach the same weights.
- **Controller coordinates**: their CoordConv channels follow the 256 features as (y, x);
  entitykit's are (x, y), so input channels 256 and 257 of the controller's first conv swap.
- **Level scales**: their five ``scales.{l}.scale`` one-element parameters stack into one vector.

The relative-coordinate scales (``mask_head.sizes_of_interest``) become ``mask_soi``. Their unused
tensors are accepted and dropped: the res2 FPN convs (``fpn_lateral2``/``fpn_output2``; the heads
read P3–P7 only) and, for Swin, the stride-4 output norm ``norm0`` and the fixed
``relative_position_index`` tables (checked equal to the ones entitykit builds).

**Safe loading**: a ``torch.save`` file is read with ``torch.load(weights_only=True)``, which
unpickles only tensors and plain containers and refuses any other object; numpy arrays and scalars
(older detectron2 files) are allowed through ``torch.serialization.safe_globals`` for numpy's
rebuild functions only. A plain pickle (detectron2's model-zoo ``.pkl`` of numpy arrays) is read by
a restricted unpickler that can build dicts and numpy arrays and refuses every other import before
it runs. No code in the file is executed; a file that needs anything else is refused with a message
naming what it asked for.

Supported: the ResNet models (R-50 / R-101, 1x / 3x / baseline), R-101-DCNv2, Swin-T and Swin-L
(window 7 or 12). SegFormer (MiT) models are refused by name: entitykit has no MiT trunk.
Swin: theirs shifts windows even where a feature map fits in one window, torchvision's (entitykit's)
does not, so outputs differ only for images with a side of at most 32·w px (224 at window 7, 384 at 12).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import EntityKitError
from .config import ModelConfig

# detectron2 defaults the authors' configs never override (docs/authors-checkpoints.md)
BGR_MEAN = (103.530, 116.280, 123.675)
RESNET_DEPTHS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}
SWIN_VARIANTS = {(96, (2, 2, 6, 2)): "swin_t", (96, (2, 2, 18, 2)): "swin_s", (128, (2, 2, 18, 2)): "swin_b",
                 (192, (2, 2, 18, 2)): "swin_l"}


@dataclass
class ImportReport:
    """What :func:`import_authors_checkpoint` did: the architecture it found, the file it wrote,
    the source's SHA-256, and the authors' tensors it dropped on purpose (with the reason)."""

    architecture: str
    config: ModelConfig
    output: Path
    source_sha256: str
    tensors: int
    dropped: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- reading
def read_detectron2_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a detectron2 checkpoint (``{"model": state, ...}`` or a bare state dict).

    Read without running pickled code: ``torch.load(weights_only=True)``, with numpy's array
    rebuild functions allowed (detectron2 model-zoo files hold numpy arrays). A ``module.`` prefix
    (a DistributedDataParallel save) is removed; numpy arrays become tensors.

    Raises:
        EntityKitError: the file is missing, unreadable, needs unpickling of other objects, or
            holds no state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise EntityKitError("checkpoint file not found", path=path)
    import numpy as np

    allowed = [np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar]  # noqa: SLF001
    allowed += [type(np.dtype(t)) for t in ("float32", "float64", "float16", "int64", "int32", "uint8", "bool")]
    try:
        if _plain_pickle(path):  # detectron2's model-zoo .pkl (numpy arrays, often a Python 2 pickle)
            with open(path, "rb") as f:
                obj = _RestrictedUnpickler(f, encoding="latin1").load()
        else:
            with warnings.catch_warnings(), torch.serialization.safe_globals(allowed):
                warnings.simplefilter("ignore")  # torch's advice to turn the safety off is not ours to repeat
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle errors, zip errors, refused globals
        raise EntityKitError(_load_problem(path, exc), path=path) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise EntityKitError("holds no state dict (expected a dict with a 'model' entry of tensors)", path=path)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if isinstance(value, (np.ndarray, np.generic)):
            value = torch.from_numpy(np.array(value, order="C", copy=True))  # 0-d stays 0-d
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise EntityKitError(f"entry {key!r} is a {type(value).__name__}, not a tensor", path=path)
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


class _RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that can build numpy arrays and dicts and nothing else (the Python docs'
    "restricting globals" recipe): any other import in the file is refused before it runs."""

    ALLOWED = {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # how protocol-2 pickles of Python 3 store bytes (str → bytes only)

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"weights_only: GLOBAL {module}.{name}")


def _plain_pickle(path: Path) -> bool:
    """A plain pickle stream, not torch.save's zip archive nor its legacy format (whose first pickled
    object is the 10-byte magic number: opcode LONG1 with length 10 right after the protocol)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" and head[2:4] != b"\x8a\x0a"


def _load_problem(path: Path, exc: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a file, without torch's advice to
    disable the check."""
    text = " ".join(str(exc).split())
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if "weights_only" in text and refused:
        return (f"refused: the file asks to import {refused.group(1)} while loading, which could run code; a "
                "detectron2 checkpoint holds only tensors and plain containers")
    if "weights_only" in text:
        return "refused: the file needs objects other than tensors and plain containers to load"
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if head[:2] == b"PK":
        return f"truncated or corrupt PyTorch checkpoint (its zip archive cannot be read: {type(exc).__name__})"
    if head[:1] != b"\x80":
        return "not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
    return f"truncated or corrupt PyTorch checkpoint ({type(exc).__name__})"


# ---------------------------------------------------------------------------------- architecture
def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def authors_config(state: dict[str, torch.Tensor], *, mask_rescore: bool | None = None) -> tuple[str, ModelConfig]:
    """(architecture name, the :class:`ModelConfig` that computes their model) from the keys and
    shapes of an authors' state dict.

    ``mask_rescore`` defaults to the authors' README: off for the ResNets, on for the transformer
    models (whose published "with mask rescore" APe is the higher one).

    Raises:
        EntityKitError: not an Entity checkpoint, or an architecture entitykit does not support
            (SegFormer MiT; ResNet or Swin depths other than the released ones).
    """
    keys = list(state)
    if any(k.startswith("backbone.bottom_up.patch_embed1.") or k.startswith("backbone.bottom_up.block1.")
           for k in keys):
        raise EntityKitError("architecture not supported: SegFormer MiT (mit_b0…b5) backbone; entitykit has "
                             "no MiT trunk (supported: R-50, R-101, R-101-DCNv2, Swin-T, Swin-L)")
    if not any(k.startswith("controller.kernel_head.") for k in keys) or \
            not any(k.startswith("backbone.bottom_up.") for k in keys):
        raise EntityKitError("not an Entity checkpoint of the authors' code (no backbone.bottom_up.* and "
                             "controller.kernel_head.* tensors)")
    soi = state.get("mask_head.sizes_of_interest")
    common = {"pixel_std": (1.0, 1.0, 1.0), "pixel_mean": tuple(reversed(BGR_MEAN))}
    if soi is not None:
        if soi.numel() != 5:
            raise EntityKitError(f"mask_head.sizes_of_interest has {soi.numel()} values, expected 5")
        common["mask_soi"] = tuple(float(v) for v in soi.flatten())
    if any(k.startswith("backbone.bottom_up.stem.") for k in keys):
        depths = tuple(_count(state, rf"backbone\.bottom_up\.res{s}\.(\d+)\.") for s in (2, 3, 4, 5))
        if depths not in RESNET_DEPTHS:
            raise EntityKitError(f"architecture not supported: a ResNet with {depths} blocks per stage "
                                 "(supported: R-50 (3, 4, 6, 3) and R-101 (3, 4, 23, 3))")
        name = RESNET_DEPTHS[depths]
        dcn = tuple(s for s in (2, 3, 4, 5) if any(k.startswith(f"backbone.bottom_up.res{s}.") and
                                                    ".conv2_offset." in k for k in keys))
        arch = ("R-50" if name == "resnet50" else "R-101") + ("-DCNv2" if dcn else "")
        cfg = ModelConfig(backbone=name, stride_in_1x1=True, deformable_stages=dcn,
                          mask_rescore=bool(mask_rescore), **common)
        return arch, cfg
    if any(k.startswith("backbone.bottom_up.patch_embed.") for k in keys):
        proj = state.get("backbone.bottom_up.patch_embed.proj.weight")
        if proj is None or proj.ndim != 4:
            raise EntityKitError("Swin checkpoint without backbone.bottom_up.patch_embed.proj.weight")
        depths = tuple(_count(state, rf"backbone\.bottom_up\.layers\.{i}\.blocks\.(\d+)\.") for i in range(4))
        name = SWIN_VARIANTS.get((int(proj.shape[0]), depths))
        if name is None:
            raise EntityKitError(f"architecture not supported: Swin with embed dim {proj.shape[0]} and depths "
                                 f"{depths} (supported: Swin-T, Swin-S, Swin-B, Swin-L)")
        table = state.get("backbone.bottom_up.layers.0.blocks.0.attn.relative_position_bias_table")
        side = round(float(table.shape[0]) ** 0.5) if table is not None else 13
        if table is None or side * side != table.shape[0] or side % 2 == 0:
            raise EntityKitError("Swin checkpoint: relative_position_bias_table is missing or not (2w−1)² rows")
        window = (side + 1) // 2
        arch = {"swin_t": "Swin-T", "swin_s": "Swin-S", "swin_b": "Swin-B", "swin_l": "Swin-L"}[name]
        cfg = ModelConfig(backbone=name, swin_window=window, trainable_layers=5, optimizer="adamw", lr=1e-4,
                          weight_decay=0.05, mask_rescore=True if mask_rescore is None else mask_rescore,
                          **common)
        return f"{arch} (window {window})", cfg
    raise EntityKitError("architecture not recognised: no ResNet stem or Swin patch embedding under "
                         "backbone.bottom_up")


# ---------------------------------------------------------------------------------------- names
_BN = ("weight", "bias", "running_mean", "running_var")


def _resnet_name(key: str) -> str | None:
    m = re.fullmatch(r"backbone\.bottom_up\.stem\.conv1\.(weight|norm\.\w+)", key)
    if m:
        part = m.group(1)
        return "backbone.body.conv1.weight" if part == "weight" else f"backbone.body.bn1.{part[5:]}"
    m = re.fullmatch(r"backbone\.bottom_up\.res(\d)\.(\d+)\.(conv[123]|shortcut|conv2_offset)\.(.+)", key)
    if not m:
        return None
    stage, block, conv, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    if not 2 <= stage <= 5:
        return None
    base = f"backbone.body.layer{stage - 1}.{block}"
    if conv == "conv2_offset":
        return f"{base}.conv2.offset.{rest}"
    if conv == "shortcut":
        return f"{base}.downsample.0.weight" if rest == "weight" else f"{base}.downsample.1.{rest[5:]}"
    k = conv[-1]
    if rest == "weight":
        return f"{base}.conv{k}.weight"
    return f"{base}.bn{k}.{rest[5:]}" if rest.startswith("norm.") else None


_SWIN_BLOCK = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "norm2": "norm2",
               "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}


def _swin_name(key: str) -> str | None:
    m = re.fullmatch(r"backbone\.bottom_up\.patch_embed\.(proj|norm)\.(weight|bias)", key)
    if m:
        return f"backbone.body.features.0.{0 if m.group(1) == 'proj' else 2}.{m.group(2)}"
    m = re.fullmatch(r"backbone\.bottom_up\.layers\.(\d)\.blocks\.(\d+)\.(.+)\.(weight|bias)", key)
    if m and m.group(3) in _SWIN_BLOCK:
        return f"backbone.body.features.{2 * int(m.group(1)) + 1}.{m.group(2)}.{_SWIN_BLOCK[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"backbone\.bottom_up\.layers\.(\d)\.blocks\.(\d+)\.attn\.(relative_position_\w+)", key)
    if m:
        return f"backbone.body.features.{2 * int(m.group(1)) + 1}.{m.group(2)}.attn.{m.group(3)}"
    m = re.fullmatch(r"backbone\.bottom_up\.layers\.(\d)\.downsample\.(reduction|norm)\.(weight|bias)", key)
    if m:
        return f"backbone.body.features.{2 * int(m.group(1)) + 2}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"backbone\.bottom_up\.norm([123])\.(weight|bias)", key)
    if m:
        return f"backbone.body.norms.{int(m.group(1)) - 1}.{m.group(2)}"
    return None


def _shared_name(key: str) -> str | None:
    """Names outside the trunk (FPN, FCOS head, controller, mask branch, kernel bank)."""
    m = re.fullmatch(r"backbone\.fpn_(lateral|output)([345])\.(weight|bias)", key)
    if m:
        kind = "inner_blocks" if m.group(1) == "lateral" else "layer_blocks"
        return f"backbone.fpn.{kind}.{int(m.group(2)) - 3}.0.{m.group(3)}"
    m = re.fullmatch(r"backbone\.top_block\.(p6|p7)\.(weight|bias)", key)
    if m:
        return f"backbone.fpn.extra_blocks.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"det_head\.fcos_head\.(cls|bbox)_tower\.(\d+)\.(weight|bias)", key)
    if m:
        i = int(m.group(2))
        if i % 3 == 2:
            return None  # ReLU slots hold no tensors
        return f"head.{m.group(1)}_tower.{i // 3}.{i % 3}.{m.group(3)}"
    m = re.fullmatch(r"det_head\.fcos_head\.(cls_logits|bbox_pred|ctrness)\.(weight|bias)", key)
    if m:
        return f"head.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"controller\.kernel_head\.kernel_head_head_(\d)\.(weight|norm\.weight|norm\.bias)", key)
    if m:
        part = m.group(2)
        return f"controller.convs.{int(m.group(1)) - 1}." + ("0.weight" if part == "weight" else f"1.{part[5:]}")
    m = re.fullmatch(r"controller\.out_conv\.(weight|bias)", key)
    if m:
        return key
    m = re.fullmatch(r"mask_branch\.(refine\.[012]|tower\.[0-3])\.([01])\.(\w+)", key)
    if m:
        return key
    m = re.fullmatch(r"mask_branch\.tower\.4\.(weight|bias)", key)
    if m:
        return f"mask_branch.out_conv.{m.group(1)}"
    m = re.fullmatch(r"mask_head\.stable\.(?:(0|1)\.0|(2))\.(weight|bias)", key)
    if m:
        return f"mask_head.static.{m.group(1) or m.group(2)}.{m.group(3)}"
    return None


_DROPPED = (
    (r"backbone\.fpn_(lateral|output)2\.(weight|bias)", "res2 FPN conv: P2 is computed by their FPN but read by no head"),
    (r"backbone\.bottom_up\.norm0\.(weight|bias)", "Swin stride-4 output norm: feeds only the unused P2"),
    (r"mask_head\.sizes_of_interest", "relative-coordinate scales: stored as the config's mask_soi"),
    (r"det_head\.fcos_head\.scales\.[0-4]\.scale", "stacked into head.scales"),
    (r"pixel_(mean|std)", "input normalisation: stored in the config (RGB order)"),
)


def authors_state_to_entitykit(state: dict[str, torch.Tensor], cfg: ModelConfig) -> tuple[dict[str, torch.Tensor],
                                                                                        dict[str, str]]:
    """Rename (and make the three exact value changes to) an authors' state dict for ``cfg``.

    Returns (entitykit state dict, {dropped key: reason}). Raises :class:`EntityKitError` listing
    every key it does not know (keys of another architecture or a corrupted file).
    """
    swin = cfg.backbone.startswith("swin")
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked") and key.startswith("backbone.bottom_up."):
            dropped[key] = "BN step counter"
            continue
        name = _shared_name(key) or (_swin_name(key) if swin else _resnet_name(key))
        if name is None:
            reason = next((why for rx, why in _DROPPED if re.fullmatch(rx, key)), None)
            if reason is None:
                unknown.append(key)
            else:
                dropped[key] = reason
            continue
        if name.endswith("relative_position_index"):
            value = value.flatten()  # the original Swin keeps it (w², w²); torchvision flattens it
        out[name] = value
    if unknown:
        raise UnknownTensors(unknown)
    scales = [state.get(f"det_head.fcos_head.scales.{level}.scale") for level in range(5)]
    if all(s is not None for s in scales):
        out["head.scales"] = torch.cat([s.reshape(-1) for s in scales])
    stem = "backbone.body.features.0.0.weight" if swin else "backbone.body.conv1.weight"
    if stem in out and out[stem].ndim == 4 and out[stem].shape[1] == 3:
        out[stem] = out[stem].flip(1)  # BGR → RGB input channels
    first = "controller.convs.0.0.weight"
    if first in out and out[first].ndim == 4 and out[first].shape[1] >= 2:
        w = out[first].clone()
        w[:, -2], w[:, -1] = out[first][:, -1], out[first][:, -2]  # their (y, x) → entitykit's (x, y)
        out[first] = w
    return out, dropped


class UnknownTensors(EntityKitError):
    """Tensors of the checkpoint that the rename does not know (listed in the authors' names)."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        super().__init__(f"unknown {len(keys)}: {_listing(keys)}")


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


_TO_AUTHORS = (  # entitykit name → the authors' name (the inverse of the renames above)
    (r"backbone\.body\.conv1\.weight", r"backbone.bottom_up.stem.conv1.weight"),
    (r"backbone\.body\.bn1\.(\w+)", r"backbone.bottom_up.stem.conv1.norm.\1"),
    (r"backbone\.body\.layer(\d)\.(\d+)\.conv2\.offset\.(\w+)", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.conv2_offset.{m[3]}"),
    (r"backbone\.body\.layer(\d)\.(\d+)\.conv(\d)\.weight", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (r"backbone\.body\.layer(\d)\.(\d+)\.bn(\d)\.(\w+)", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
    (r"backbone\.body\.layer(\d)\.(\d+)\.downsample\.0\.weight", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (r"backbone\.body\.layer(\d)\.(\d+)\.downsample\.1\.(\w+)", lambda m: f"backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
    (r"backbone\.body\.features\.0\.0\.(\w+)", r"backbone.bottom_up.patch_embed.proj.\1"),
    (r"backbone\.body\.features\.0\.2\.(\w+)", r"backbone.bottom_up.patch_embed.norm.\1"),
    (r"backbone\.body\.features\.(\d)\.(\d+)\.(\w+(?:\.\w+)?)\.(weight|bias)",
     lambda m: f"backbone.bottom_up.layers.{(int(m[1]) - 1) // 2}.blocks.{m[2]}."
               f"{ {v: k for k, v in _SWIN_BLOCK.items()}.get(m[3], m[3])}.{m[4]}"),
    (r"backbone\.body\.features\.(\d)\.(\d+)\.attn\.(relative_position_\w+)",
     lambda m: f"backbone.bottom_up.layers.{(int(m[1]) - 1) // 2}.blocks.{m[2]}.attn.{m[3]}"),
    (r"backbone\.body\.features\.(\d)\.(reduction|norm)\.(\w+)",
     lambda m: f"backbone.bottom_up.layers.{(int(m[1]) - 2) // 2}.downsample.{m[2]}.{m[3]}"),
    (r"backbone\.body\.norms\.(\d)\.(\w+)", lambda m: f"backbone.bottom_up.norm{int(m[1]) + 1}.{m[2]}"),
    (r"backbone\.fpn\.inner_blocks\.(\d)\.0\.(\w+)", lambda m: f"backbone.fpn_lateral{int(m[1]) + 3}.{m[2]}"),
    (r"backbone\.fpn\.layer_blocks\.(\d)\.0\.(\w+)", lambda m: f"backbone.fpn_output{int(m[1]) + 3}.{m[2]}"),
    (r"backbone\.fpn\.extra_blocks\.(p6|p7)\.(\w+)", r"backbone.top_block.\1.\2"),
    (r"head\.(cls|bbox)_tower\.(\d)\.([01])\.(\w+)", lambda m: f"det_head.fcos_head.{m[1]}_tower.{3 * int(m[2]) + int(m[3])}.{m[4]}"),
    (r"head\.scales", "det_head.fcos_head.scales.{0..4}.scale"),
    (r"head\.(\w+)\.(\w+)", r"det_head.fcos_head.\1.\2"),
    (r"controller\.convs\.(\d)\.0\.weight", lambda m: f"controller.kernel_head.kernel_head_head_{int(m[1]) + 1}.weight"),
    (r"controller\.convs\.(\d)\.1\.(\w+)", lambda m: f"controller.kernel_head.kernel_head_head_{int(m[1]) + 1}.norm.{m[2]}"),
    (r"mask_branch\.out_conv\.(\w+)", r"mask_branch.tower.4.\1"),
    (r"mask_head\.static\.([01])\.(\w+)", r"mask_head.stable.\1.0.\2"),
    (r"mask_head\.static\.2\.(\w+)", r"mask_head.stable.2.\1"),
)


def authors_name(key: str) -> str:
    """The authors' name of an entitykit state-dict key (the key itself where both agree)."""
    for pattern, repl in _TO_AUTHORS:
        m = re.fullmatch(pattern, key)
        if m:
            return repl(m) if callable(repl) else m.expand(repl) if "\\" in repl else repl
    return key


def load_authors_state(model: torch.nn.Module, state: dict[str, torch.Tensor], unknown: list[str] = ()) -> None:
    """Load a renamed state dict into ``model``, refusing unknown (given), missing, extra or
    mis-shaped tensors with one message that lists every kind by the authors' names
    (:func:`authors_name`)."""
    target = model.state_dict()
    missing = [authors_name(k) for k in target if k not in state and not k.endswith("num_batches_tracked")]
    extra = [authors_name(k) for k in state if k not in target]
    shapes = [f"{authors_name(k)} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
              for k in state if k in target and state[k].shape != target[k].shape]
    problems = [f"unknown {len(unknown)}: {_listing(list(unknown))}"] if unknown else []
    if missing:
        problems.append(f"missing {len(missing)}: {_listing(missing)}")
    if extra:
        problems.append(f"extra {len(extra)}: {_listing(extra)}")
    if shapes:
        problems.append(f"mis-shaped {len(shapes)} (checkpoint vs model): {_listing(shapes)}")
    if problems:
        raise EntityKitError("tensors do not fit the architecture: " + "; ".join(problems))
    for key, value in state.items():
        if "relative_position_index" in key and not torch.equal(value.to(target[key].dtype), target[key]):
            raise EntityKitError(f"{authors_name(key)}: the window's relative position index differs from Swin's")
    full = dict(target)
    full.update({k: v.to(target[k].dtype) for k, v in state.items()})
    model.load_state_dict(full, strict=True)


# ---------------------------------------------------------------------------------------- import
def import_authors_checkpoint(source: str | Path, output: str | Path, *, mask_rescore: bool | None = None,
                              overwrite: bool = False) -> ImportReport:
    """Convert an authors' detectron2 checkpoint into an entitykit ``.safetensors`` checkpoint.

    Args:
        source: their ``.pth`` (e.g. ``R_50_1x.pth`` from their model zoo).
        output: the ``.safetensors`` file to write (atomically; refused if it exists unless
            ``overwrite``).
        mask_rescore: override the authors' choice (off for ResNets, on for Swin).

    The output's metadata records the architecture, the source file name and its SHA-256.

    Raises:
        EntityKitError: unreadable file, unsupported architecture (named), or unknown / missing /
            mis-shaped tensors (listed).
    """
    from ..fileio import atomic_path, check_output
    from .checkpoint import save_checkpoint
    from .entity_model import EntityModel

    source, output = Path(source), Path(output)
    check_output(output, inputs=[source], overwrite=overwrite)
    state = read_detectron2_checkpoint(source)
    try:
        arch, cfg = authors_config(state, mask_rescore=mask_rescore)
        try:
            renamed, dropped = authors_state_to_entitykit(state, cfg)
            unknown: list[str] = []
        except UnknownTensors as exc:  # the other problems too, in one message
            known = {k: v for k, v in state.items() if k not in exc.keys}
            renamed, dropped = authors_state_to_entitykit(known, cfg)
            unknown = exc.keys
        model = EntityModel(cfg)
        try:
            load_authors_state(model, renamed, unknown)
        except EntityKitError as exc:
            raise EntityKitError(f"{arch}: {exc.problem}") from None
    except EntityKitError as exc:
        raise EntityKitError(exc.problem, path=source, item=exc.item) from None
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    with atomic_path(output) as tmp:
        save_checkpoint(model, tmp, extra={"imported_from": "authors-detectron2", "architecture": arch,
                                           "source_file": source.name, "source_sha256": digest.hexdigest()})
    return ImportReport(arch, cfg, output, digest.hexdigest(), len(renamed), dropped)
