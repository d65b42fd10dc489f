"""The paper's entity segmentation framework in compact PyTorch (numbers: docs/model-spec.md).

Parts, one module each: ``config`` (dataclass + presets), ``backbone`` (torchvision trunk + FPN,
P3-P7), ``fcos_head`` (head, target assignment, losses), ``controller`` (kernel head + mask branch),
``dynamic_mask_head`` (dynamic head, kernel bank, overlap suppression), ``inference``
(post-processing → id map), ``entity_model`` (the module), ``checkpoint`` (safetensors + config),
``export`` (ONNX), ``predictor`` (array in, id map and scores out).

Where this differs from the authors' code (spec section 10), on purpose:

- 10.3 no hard-coded ``.cuda()``: everything follows the input's device (CPU and GPU).
- 10.7 boxes are derived from the masks in pixel-edge convention (x2 = last column + 1): widths
  are exact and 1-px-wide entities keep a non-empty box, so they are trained, not filtered out.
- 10.15 post-processing: only empty final regions are dropped (1-row/column entities are kept);
  after optional rescoring the entities are re-sorted, so entity k always has ``scores[k-1]`` and
  scores descend; outputs are built without in-place writes into the masks; tight boxes use the
  same +1 edge convention.
- 10.16 proposal sampling uses torch's RNG (seedable, device-aware) instead of Python's ``random``;
  the "no GT" check of centre sampling looks at the GT count, not at GT 0's centre.
- 10.10 GT masks are not one-hot encoded in int64: boolean N×H×W masks are padded and subsampled.
- 10.2 the transformer preset names AdamW and the trainer is expected to honour it.
- 10.5 the id map is int32 (no uint8 wrap above 255 entities; 0 = nothing instead of 255).
- Checkpoints embed their config (one self-describing safetensors file); the model exports to ONNX.

Deviations kept small and stated: torchvision ImageNet weights and RGB ImageNet normalisation
instead of MSRA caffe BGR weights; torchvision's GIoU loss (eps-smoothed) instead of the +1-smoothed
IoU term; ResNets use stride-in-3×3 (torchvision) instead of stride-in-1×1.
"""

from .checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from .config import PRESETS, ModelConfig, baseline, get_config
from .entity_model import EntityModel, prepare_images
from .export import export_onnx
from .predictor import Predictor

__all__ = ["PRESETS", "EntityModel", "ModelConfig", "baseline", "export_onnx", "get_config",
           "Predictor", "load_checkpoint", "prepare_images", "read_checkpoint_config", "save_checkpoint"]
