"""ONNX export of the whole inference graph: normalised padded image → id map, scores, boxes.

The export is for one image of a fixed size (the size given at export time); NMS becomes ONNX
NonMaxSuppression, the dynamic mask head MatMul, so detection count stays dynamic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import EntityKitError
from .entity_model import EntityModel


class _InferenceGraph(nn.Module):
    def __init__(self, model: EntityModel, image_size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.image_size = image_size

    def forward(self, image: torch.Tensor):
        pred = self.model(image, image_sizes=[self.image_size])[0]
        return pred["id_map"], pred["scores"], pred["boxes"]


def export_onnx(model: EntityModel, path: str | Path, height: int, width: int, opset: int = 17,
                example: torch.Tensor | None = None) -> Path:
    """Trace eval-mode inference for a (height, width) image (already normalised, padded to ×32).

    Inputs: ``image`` 1×3×H×W float. Outputs: ``id_map`` H×W int32, ``scores`` N, ``boxes`` N×4.
    The post-processing has no data-dependent Python branches, so the graph does not depend on the
    traced image (`example`, zeros by default) or on how many entities it happened to contain.
    """
    d = model.cfg.size_divisibility
    if height % d or width % d:
        raise EntityKitError(f"export size must be a multiple of {d}", item=f"{height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    graph = _InferenceGraph(model, (height, width))
    dummy = torch.zeros(1, 3, height, width) if example is None else example.reshape(1, 3, height, width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-derived Python ints are expected
            torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["id_map", "scores", "boxes"],
                              dynamic_axes={"scores": {0: "n"}, "boxes": {0: "n"}})
    finally:
        model.train(was_training)
    return path
