"""The model-level predictor: an H×W×3 uint8 array in, a full-resolution id map and scores out.

Like segment-anything's ``SamPredictor``, this layer knows the model and its resize rule, not
files: ``entitykit.predict`` finds and writes files around it, and the training loop's
validation calls it directly. The model sees the image resized by its test rule (short side
``min_size_test``, long side at most ``max_size``); mask probabilities are pasted back at full
resolution up to ``paste_pixels`` (as the authors do), larger images get the model-size id map
enlarged by nearest neighbour, so memory grows with the pixel count, never with pixels × entities.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import EntityKitError


def model_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The test-time resize rule: short side → ``min_size``, long side ≤ ``max_size`` (aspect kept)."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_nearest(id_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an id map (pixel centres aligned); values are never mixed."""
    h, w = id_map.shape
    if (h, w) == (height, width):
        return id_map
    rows = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.int64), w - 1)
    return id_map[rows][:, cols]


def resolve_device(device: str = "auto"):
    """'auto' → cuda when available, else cpu; anything else is handed to torch (cpu, cuda:1, mps)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise EntityKitError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EntityKitError(f"device {device!r} asked for but CUDA is not available (use --device cpu or auto)")
    return dev


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class PredictedImage:
    """One image's entities at full resolution: ids 1..K in descending score order."""

    id_map: np.ndarray  # H×W int32
    scores: np.ndarray  # K float
    model_size: tuple[int, int]  # (h, w) the model saw


# Images up to this many pixels get their masks pasted at full resolution (bilinear probabilities,
# as the authors do); larger ones at model resolution, enlarged by nearest neighbour. At 4 MP and
# 100 detections the paste needs about 0.2 GB.
FULL_PASTE_PIXELS = 4_000_000


class Predictor:
    """A loaded model plus the resize rule; call it on an H×W×3 uint8 image.

    ``checkpoint_or_model`` is a local safetensors checkpoint (``save_checkpoint``) or an
    ``EntityModel``; a model given with ``device="auto"`` stays where it is. ``threads``: PyTorch's
    CPU threads during each call (0: :func:`entitykit.threads.choose_threads`' rule; put back after
    the call); None leaves the process's setting (``entitykit.threads.set_threads``) alone.
    """

    def __init__(self, checkpoint_or_model: Any, *, device: str = "auto", min_score: float = 0.0,
                 max_size: int | None = None, min_size: int | None = None, paste_pixels: int = FULL_PASTE_PIXELS,
                 threads: int | None = None):
        import torch

        from ..threads import check_threads
        from .checkpoint import load_checkpoint

        self.threads = None if threads is None else check_threads(threads)

        self.checkpoint: Path | None = None
        if isinstance(checkpoint_or_model, (str, Path)):
            s = str(checkpoint_or_model)
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", s):  # a URL (Path collapses '//' to '/')
                raise EntityKitError("checkpoints are read from local files only; download it first", s)
            self.checkpoint = Path(s)
            self.device = resolve_device(device)
            self.model = load_checkpoint(self.checkpoint, map_location=self.device)
        elif isinstance(checkpoint_or_model, torch.nn.Module) and hasattr(checkpoint_or_model, "cfg"):
            self.model = checkpoint_or_model
            if device == "auto":
                first = next(self.model.parameters(), None)
                self.device = first.device if first is not None else torch.device("cpu")
            else:
                self.device = resolve_device(device)
                self.model.to(self.device)
        else:
            raise EntityKitError(f"expected a checkpoint path or an EntityModel, got {type(checkpoint_or_model).__name__}")
        cfg = self.model.cfg
        self.cfg = cfg
        self.min_score = float(min_score)
        if not 0.0 <= self.min_score <= 1.0:
            raise EntityKitError(f"min_score must be in [0, 1], got {min_score}")
        self.max_size = int(max_size) if max_size is not None else int(cfg.max_size_test)
        self.min_size = int(min_size) if min_size is not None else int(cfg.min_size_test)
        if self.max_size < 32:
            raise EntityKitError(f"max_size must be at least 32 pixels, got {self.max_size}")
        if self.min_size < 1:
            raise EntityKitError(f"min_size must be at least 1 pixel, got {self.min_size}")
        if int(paste_pixels) < 0:
            raise EntityKitError(f"paste_pixels must be ≥ 0, got {paste_pixels}")
        self.paste_pixels = int(paste_pixels)

    def settings(self) -> dict:
        import torch

        out = {"min_score": self.min_score, "min_size": self.min_size, "max_size": self.max_size,
               "paste_pixels": self.paste_pixels, "device": self.device.type}
        if self.device.type == "cpu":  # scores can differ in the last bit between thread counts
            from ..threads import choose_threads

            out["threads"] = torch.get_num_threads() if self.threads is None else choose_threads(self.threads)
        return out

    def model_record(self) -> dict:
        rec: dict[str, Any] = {"backbone": self.cfg.backbone}
        if self.checkpoint is not None:
            rec["checkpoint"] = self.checkpoint.name
            rec["sha256"] = _sha256(self.checkpoint)
        return rec

    def __call__(self, image: np.ndarray) -> PredictedImage:
        import torch

        from ..threads import use_threads
        from .entity_model import prepare_images

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EntityKitError(f"expected an H×W×3 uint8 image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        mh, mw = model_size(h, w, self.min_size, self.max_size)
        small = image if (mh, mw) == (h, w) else np.asarray(
            Image.fromarray(image).resize((mw, mh), Image.BILINEAR, reducing_gap=None))
        tensor = torch.from_numpy(np.array(small, dtype=np.uint8, copy=True)).permute(2, 0, 1).to(self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), use_threads(self.threads if self.device.type == "cpu" else None):
                batch, sizes = prepare_images([tensor], self.cfg)
                # as the authors: mask probabilities are pasted at the original size; above
                # paste_pixels the model-size map is enlarged by nearest neighbour instead (bounded memory)
                full = h * w <= max(self.paste_pixels, mh * mw)
                out = self.model(batch, image_sizes=sizes, output_sizes=[(h, w)] if full else sizes,
                                 with_masks=False)[0]
        finally:
            self.model.train(was_training)
        id_small = out["id_map"].to("cpu").numpy().astype(np.int32)
        scores = out["scores"].to("cpu").float().numpy()
        return PredictedImage(*finish_id_map(id_small, scores, h, w, self.min_score), (mh, mw))


def finish_id_map(id_small: np.ndarray, scores: np.ndarray, height: int, width: int, min_score: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Drop entities under ``min_score``, resize to full size (nearest), drop entities that vanished,
    renumber 1..K keeping the descending score order. Dropped entities' pixels become 0."""
    n = scores.shape[0]
    keep = scores >= min_score
    lut = np.zeros(n + 1, np.int32)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    scores = scores[keep]
    id_map = resize_nearest(lut[id_small], height, width)
    if height >= id_small.shape[0] and width >= id_small.shape[1]:
        # enlarging keeps every source pixel, so an entity can only vanish when the map shrinks
        present = np.bincount(lut[id_small].ravel(), minlength=scores.shape[0] + 1)[1:] > 0
    else:
        present = np.bincount(id_map.ravel(), minlength=scores.shape[0] + 1)[1:] > 0
    if not present.all():
        lut = np.zeros(scores.shape[0] + 1, np.int32)
        lut[1:][present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
        id_map = lut[id_map]
        scores = scores[present]
    return np.ascontiguousarray(id_map, dtype=np.int32), scores.astype(np.float32)
