"""ONNX export of the whole inference graph: an RGB image → id map, scores, boxes.

The graph is built for one image size (the size given at export time): normalisation and the
padding to ×32 happen inside it, so a runtime feeds the image's RGB pixels as they are. NMS
becomes ONNX NonMaxSuppression and the dynamic mask head MatMul, so the number of detections and
entities stays dynamic. Another image size needs another export (or a resize to this one): the
mask paste is built from per-size interpolation matrices and a per-size number of row blocks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import EntityKitError
from .entity_model import EntityModel


class _InferenceGraph(nn.Module):
    def __init__(self, model: EntityModel, image_size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.image_size = image_size
        cfg = model.cfg
        self.register_buffer("mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        d = cfg.size_divisibility
        h, w = image_size
        self.pad = (0, -(-w // d) * d - w, 0, -(-h // d) * d - h)

    def forward(self, image: torch.Tensor):
        # as prepare_images: normalise, then zero-pad (so the padding is the mean colour)
        x = nn.functional.pad((image.float() - self.mean) / self.std, self.pad)
        pred = self.model(x, image_sizes=[self.image_size])[0]
        return pred["id_map"], pred["scores"], pred["boxes"]


# The graph uses einsum (opset ≥ 12); the TorchScript exporter (dynamo=False) goes up to its own maximum.
MIN_OPSET = 12


def max_opset() -> int:
    from torch.onnx import _constants  # noqa: PLC0415

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))


def check_export_options(height: int, width: int, opset: int) -> None:
    """Refuse an export size or opset the graph cannot be built for, before any work (one line each)."""
    from ..limits import check_pixels  # noqa: PLC0415

    if height < 1 or width < 1:
        raise EntityKitError(f"--size must be two positive whole numbers (HEIGHT WIDTH), got {height} {width}")
    check_pixels(height, width, item="--size")
    if not MIN_OPSET <= opset <= max_opset():
        raise EntityKitError(f"--opset must be in {MIN_OPSET}..{max_opset()} (the graph needs einsum; "
                             f"torch's exporter goes up to {max_opset()}), got {opset}")


DEFORM_OPSET = 19  # ONNX DeformConv (DCNv2 models)


def _register_deform_conv() -> None:
    """torchvision's ``deform_conv2d`` as ONNX ``DeformConv`` (opset 19; same offset layout: (dy, dx)
    per kernel tap, then the modulation mask). torchvision registers no exporter for it."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper  # noqa: PLC0415

    @symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
    def deform_conv(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                    offset_groups, use_mask):
        inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
        return g.op("DeformConv", *inputs, dilations_i=[dil_h, dil_w], group_i=groups,
                    offset_group_i=offset_groups, pads_i=[pad_h, pad_w, pad_h, pad_w], strides_i=[stride_h, stride_w])

    register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv, DEFORM_OPSET)


def export_onnx(model: EntityModel, path: str | Path, height: int, width: int, opset: int = 17,
                example: torch.Tensor | None = None) -> Path:
    """Trace eval-mode inference for a (height, width) RGB image; any size, no padding needed.

    Input ``image``: 1×3×H×W uint8 RGB. Outputs: ``id_map`` H×W int32 (0 = nothing, k = entity k),
    ``scores`` N descending, ``boxes`` N×4 (x1, y1, x2, y2, pixel edges). The post-processing has no
    data-dependent Python branches, so the graph does not depend on the traced image (`example`,
    mid-grey by default) or on how many entities it happened to contain. Written atomically.
    """
    from ..fileio import atomic_path  # noqa: PLC0415

    check_export_options(height, width, opset)
    if model.cfg.deformable_stages:
        if opset < DEFORM_OPSET:
            raise EntityKitError(f"this model's deformable convs (DCNv2) need ONNX DeformConv: --opset "
                                 f"{DEFORM_OPSET} or later, got {opset}")
        _register_deform_conv()
    device = next(model.parameters()).device
    graph = _InferenceGraph(model, (height, width)).to(device)
    dummy = (torch.full((1, 3, height, width), 128, dtype=torch.uint8) if example is None
             else example.reshape(1, 3, height, width).to(torch.uint8)).to(device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("onnx") is None:  # torch's exporter says so only in its own exception type
        raise EntityKitError("ONNX export needs the 'onnx' package: pip install 'entitykit[export]'")
    model.eval()
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-derived Python ints are expected
            torch.onnx.export(graph, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["id_map", "scores", "boxes"],
                              dynamic_axes={"scores": {0: "n"}, "boxes": {0: "n"}})
    except ModuleNotFoundError as e:
        raise EntityKitError(f"ONNX export needs the '{e.name}' package: pip install 'entitykit[export]'") from None
    finally:
        model.train(was_training)
    return path


@dataclass
class OnnxCheck:
    """How an exported graph's output compares with PyTorch's on one image."""

    pixel_agreement: float  # fraction of id-map pixels equal
    entities_torch: int
    entities_onnx: int
    max_score_diff: float  # over the entities both have (inf when the counts differ)


def check_onnx(model: EntityModel, path: str | Path, image: torch.Tensor) -> OnnxCheck:
    """Run the exported graph with onnxruntime on `image` (3×H×W uint8) beside the PyTorch model."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ModuleNotFoundError:
        raise EntityKitError("checking an export needs onnxruntime: pip install onnxruntime") from None
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        ref = _InferenceGraph(model, tuple(image.shape[1:])).to(device)(image[None].to(device))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        id_map, scores, _ = session.run(None, {"image": image[None].cpu().numpy()})
    except Exception as e:  # onnxruntime raises its own exception types (e.g. a size mismatch)
        size = tuple(image.shape[1:])
        raise EntityKitError(f"onnxruntime could not run the graph on a {size} image: {e}", path) from None
    ref_map, ref_scores = ref[0].cpu().numpy(), ref[1].cpu().numpy()
    same_n = len(scores) == len(ref_scores)
    diff = float(abs(scores - ref_scores).max()) if same_n and len(scores) else (0.0 if same_n else float("inf"))
    return OnnxCheck(float((id_map == ref_map).mean()), len(ref_scores), len(scores), diff)


def export_checkpoint(checkpoint: str | Path, path: str | Path, height: int, width: int, *, opset: int = 17,
                      check: bool = False, check_image: Any = None) -> tuple[Path, OnnxCheck | None]:
    """`entitykit export-onnx`: a local checkpoint → ONNX graph for (height, width), optionally checked.

    The check runs onnxruntime beside PyTorch on `check_image` (H×W×3 uint8, resized to the export
    size) or, without one, on a synthetic textured picture of that size.
    """
    import numpy as np  # noqa: PLC0415

    from .checkpoint import load_checkpoint  # noqa: PLC0415

    check_export_options(height, width, opset)
    model = load_checkpoint(checkpoint).eval()
    out = export_onnx(model, path, height, width, opset=opset)
    if not (check or check_image is not None):
        return out, None
    if check_image is None:
        from ..synth import render_image, synthetic_panoptic_image  # noqa: PLC0415

        rng = np.random.default_rng(0)
        check_image = render_image(rng, synthetic_panoptic_image(rng, height, width, 12)[0])
    elif check_image.shape[:2] != (height, width):
        from PIL import Image  # noqa: PLC0415

        check_image = np.asarray(Image.fromarray(check_image).resize((width, height), Image.BILINEAR))
    image = torch.from_numpy(np.array(check_image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return out, check_onnx(model, out, image)
