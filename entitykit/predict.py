"""Run an entity model on image files and write what the scorer and people read.

``predict(checkpoint, ["photos/"], "out/")`` writes, atomically (a temporary sibling folder renamed
into place, so an interrupted run leaves no half-written output)::

    out/predictions.json        the entitykit prediction format (``entitykit eval GT out/``)
    out/coco_results.json       the same entities as COCO RLE results (no bbox: mask area is used)
    out/id_maps/<name>.png      per image the paper's P, 16-bit (0 = no entity, k = entity k)
    out/overlays/<name>.png     distinct colours + boundaries over the photo
    out/cutouts/<name>/<k>.png  optional: each entity as an RGBA image cropped to its box

``<name>`` is the image's path relative to its input folder without its last suffix; names that
would collide (``a.jpg`` and ``a.png``, or case-only differences) keep their suffix instead.

Images are decoded with their EXIF orientation applied and converted to RGB. The model sees the
image resized by its test rule (short side ``min_size_test``, long side at most ``max_size``);
the id map is resized back to full resolution with nearest neighbour, so memory grows with the
pixel count, never with pixels × entities. Weights come from a local checkpoint file only.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .errors import EntityKitError
from .fileio import atomic_path, write_json
from .masks import encode_id_map, rle_bbox, write_id_map_png

PREDICTIONS_FORMAT = "entitykit-predictions"  # == evaluation.predictions.ENTITYKIT_FORMAT
PREDICTIONS_FORMAT_VERSION = 1
PREDICTIONS_JSON = "predictions.json"
COCO_RESULTS_JSON = "coco_results.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")
_GLOB_CHARS = set("*?[")


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class ImageInput:
    """One image to predict: where it is, the name recorded for it and its image id."""

    path: Path
    name: str  # posix path relative to its input (or the dataset's file_name)
    image_id: Any
    height: int | None = None  # expected size (from a dataset), checked after decoding
    width: int | None = None


def _is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _inside(p: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        p.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _scan_folder(folder: Path, exclude: Path | None) -> list[tuple[Path, str]]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            p = Path(root) / f
            if _is_image_file(p) and not _inside(p, exclude):
                found.append((p, p.relative_to(folder).as_posix()))
    return found


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def collect_inputs(inputs: Iterable[str | Path], *, exclude: str | Path | None = None) -> list[ImageInput]:
    """Files, folders (searched recursively for image files) and glob patterns → sorted images, ids 1..N.

    Names are relative to the folder or the glob's fixed prefix (a file given directly is named by
    its file name); the order is by name, then path, so ids do not depend on the argument order.
    A file reached twice is listed once. Files under ``exclude`` (the output folder) are skipped.
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[Path, str]] = []
    for raw in inputs:
        s = str(raw)
        p = Path(s)
        if p.is_dir():
            items = _scan_folder(p, excl)
            if not items:
                raise EntityKitError(f"folder has no image files ({', '.join(IMAGE_EXTENSIONS)})", p)
            found.extend(items)
        elif p.is_file():
            found.append((p, p.name))
        elif _GLOB_CHARS & set(s):
            base = _glob_base(s)
            items = [(Path(m), Path(m).relative_to(base).as_posix()) for m in glob.glob(s, recursive=True)
                     if _is_image_file(Path(m)) and not _inside(Path(m), excl)]
            if not items:
                raise EntityKitError("pattern matches no image files", s)
            found.extend(items)
        else:
            raise EntityKitError("no such file or folder", p)
    seen: set[str] = set()
    unique = []
    for path, name in sorted(found, key=lambda t: (t[1], str(t[0]))):
        key = str(path.resolve())
        if key not in seen:
            seen.add(key)
            unique.append((path, name))
    if not unique:
        raise EntityKitError("no input images: give image files, folders or glob patterns (or a dataset)")
    return [ImageInput(path, name, i + 1) for i, (path, name) in enumerate(unique)]


def dataset_inputs(dataset: Any, image_root: str | Path | None = None) -> list[ImageInput]:
    """The images of an entity dataset (path or EntityDataset), with its ids and sizes, in file order."""
    from .dataset import EntityDataset

    ds = dataset if isinstance(dataset, EntityDataset) else EntityDataset.load(dataset)
    root = Path(image_root) if image_root is not None else ds.image_root
    if root is None:
        raise EntityKitError("the dataset records no image folder; give it (--images)", ds.path)
    out = []
    for k, img in enumerate(ds.images):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise EntityKitError("image entry needs 'id' and 'file_name'", ds.path, f"images[{k}]")
        out.append(ImageInput(root / img["file_name"], Path(img["file_name"]).as_posix(), img["id"],
                              img.get("height"), img.get("width")))
    if not out:
        raise EntityKitError("the dataset has no images", ds.path)
    return out


def _safe_name(name: str) -> str:
    """A relative posix path that stays inside the output folder."""
    parts = [p for p in Path(name.replace("\\", "/")).parts if p not in ("/", "", ".")]
    parts = ["__" if p == ".." else p.replace(":", "_") for p in parts]
    return "/".join(parts) or "image"


def output_names(names: Sequence[str]) -> list[str]:
    """Collision-free output stems: the name without its last suffix (``a.b.c.jpg`` → ``a.b.c``).

    Names whose stems would collide (compared case-insensitively, for macOS and Windows) keep
    their full name (``a.jpg``, ``a.png``); anything still taken gets ``~2``, ``~3``, … The
    result depends only on the list, in order.
    """
    safe = [_safe_name(n) for n in names]
    stems = []
    for s in safe:
        head, _, last = s.rpartition("/")
        stem = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
        stems.append(f"{head}/{stem}" if head else stem)
    counts = Counter(s.lower() for s in stems)
    used: set[str] = set()
    out = []
    for s, stem in zip(safe, stems):
        cand = stem if counts[stem.lower()] == 1 else s
        name, k = cand, 2
        while name.lower() in used:
            name = f"{cand}~{k}"
            k += 1
        used.add(name.lower())
        out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# Images


def load_image(path: str | Path) -> np.ndarray:
    """An image file → H×W×3 uint8 RGB, EXIF orientation applied; errors name the file.

    Grayscale, palette, CMYK and 16-bit images are converted; an alpha channel is dropped (the
    colour under transparent pixels is kept as stored).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.getexif().get(0x0112, 1) != 1:  # orientation tag: transposes only when needed (no copy)
                im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                top = arr.max() if arr.size else 0
                if top > 255:
                    arr = arr * (255.0 / (65535.0 if top <= 65535 else top))
                g = np.clip(np.round(arr), 0, 255).astype(np.uint8)
                return np.repeat(g[:, :, None], 3, axis=2)
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.array(im, dtype=np.uint8)  # one writable copy
    except FileNotFoundError:
        raise EntityKitError("image file not found", path) from None
    except Image.DecompressionBombError as e:
        raise EntityKitError(f"image too large for PIL's decompression-bomb guard: {e}", path) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise EntityKitError(f"cannot read image: {e}", path) from None


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


# ---------------------------------------------------------------------------------------------
# Model


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
    ``EntityModel``; a model given with ``device="auto"`` stays where it is.
    """

    def __init__(self, checkpoint_or_model: Any, *, device: str = "auto", min_score: float = 0.0,
                 max_size: int | None = None, min_size: int | None = None, paste_pixels: int = FULL_PASTE_PIXELS):
        import torch

        from .model import load_checkpoint

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
        self.max_size = int(max_size) if max_size else int(cfg.max_size_test)
        self.min_size = int(min_size) if min_size else int(cfg.min_size_test)
        if self.max_size < 32 or self.min_size < 1:
            raise EntityKitError(f"max_size must be at least 32 (got {self.max_size})")
        self.paste_pixels = int(paste_pixels)

    def settings(self) -> dict:
        import torch

        out = {"min_score": self.min_score, "min_size": self.min_size, "max_size": self.max_size,
               "paste_pixels": self.paste_pixels, "device": self.device.type}
        if self.device.type == "cpu":  # scores can differ in the last bit between thread counts
            out["threads"] = torch.get_num_threads()
        return out

    def model_record(self) -> dict:
        rec: dict[str, Any] = {"backbone": self.cfg.backbone}
        if self.checkpoint is not None:
            rec["checkpoint"] = self.checkpoint.name
            rec["sha256"] = _sha256(self.checkpoint)
        return rec

    def __call__(self, image: np.ndarray) -> PredictedImage:
        import torch

        from .model import prepare_images

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
            with torch.inference_mode():
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


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class PredictRun:
    """What ``predict`` wrote: records as in predictions.json, plus timings (not written to disk)."""

    out_dir: Path
    images: list[dict]
    problems: list[dict]
    settings: dict
    seconds: float = 0.0  # wall time of the whole run
    model_seconds: float = 0.0  # of which: resize + model + pasting back

    @property
    def predictions_json(self) -> Path:
        return self.out_dir / PREDICTIONS_JSON

    @property
    def coco_results_json(self) -> Path:
        return self.out_dir / COCO_RESULTS_JSON

    @property
    def entities(self) -> int:
        return sum(len(r["segments"]) for r in self.images)


def predict(
    checkpoint_or_model: Any,
    inputs: Iterable[str | Path] | None,
    out_dir: str | Path,
    *,
    min_score: float = 0.0,
    device: str = "auto",
    overlays: bool = True,
    cutouts: bool = False,
    dataset: Any = None,
    image_root: str | Path | None = None,
    max_size: int | None = None,
    paste_pixels: int = FULL_PASTE_PIXELS,
    keep_going: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    on_problem: Callable[[dict], None] | None = None,
) -> PredictRun:
    """Predict entities for image files (or an entity dataset's images) and write ``out_dir``.

    inputs: files, folders, glob patterns; ids 1..N in sorted name order. With ``dataset`` (an
    entity dataset path or EntityDataset) its images and ids are used instead, so
    ``entitykit eval DATASET out_dir`` scores the run; ``image_root`` overrides its image folder.
    min_score: entities scoring lower are dropped (their pixels become 0). The scorer wants
    every entity (AP integrates over scores), so the default keeps all the model outputs.
    max_size: cap on the long side the model sees [default: the model's ``max_size_test``].
    paste_pixels: images up to this size get their masks pasted at full resolution; larger ones
    get the model-size id map enlarged by nearest neighbour (bounded memory).
    keep_going: an unreadable image is recorded in ``problems`` and skipped instead of failing.
    overwrite: replace a non-empty ``out_dir`` (only once the new run is complete).
    """
    from .progress import progress_bar
    from .visualize import cutout_crops, overlay

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    if dataset is not None:
        if inputs:
            raise EntityKitError("give input images or a dataset, not both")
        items = dataset_inputs(dataset, image_root)
    else:
        items = collect_inputs(inputs or [], exclude=out_dir)
    names = output_names([it.name for it in items])
    predictor = Predictor(checkpoint_or_model, device=device, min_score=min_score, max_size=max_size,
                          paste_pixels=paste_pixels)
    if out_dir.exists() and not out_dir.is_dir():
        raise EntityKitError("output path exists and is not a folder", out_dir)
    if not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):
        raise EntityKitError("output folder exists and is not empty (pass --overwrite to replace it)", out_dir)

    records: list[dict] = []
    problems: list[dict] = []
    results: list[dict] = []
    model_seconds = 0.0
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        tmp.mkdir()
        with progress_bar(len(items), "predict", enabled=progress) as advance:
            for item, name in zip(items, names):
                try:
                    image = load_image(item.path)
                    if item.height is not None and item.width is not None and image.shape[:2] != (item.height, item.width):
                        raise EntityKitError(
                            f"image is {image.shape[1]}×{image.shape[0]} (after EXIF orientation) but the dataset "
                            f"says {item.width}×{item.height}", item.path)
                except EntityKitError as e:
                    if not keep_going:
                        raise
                    prob = {"path": str(item.path), "image_id": item.image_id, "problem": e.problem}
                    problems.append(prob)
                    if on_problem:
                        on_problem(prob)
                    advance()
                    continue
                t0 = time.perf_counter()
                pred = predictor(image)
                model_seconds += time.perf_counter() - t0
                rec = _write_image(tmp, item, name, image, pred, overlays, cutouts, results, overlay, cutout_crops)
                records.append(rec)
                advance()
        settings = predictor.settings()
        doc = {  # docs/prediction-format.md; everything the scorer does not read sits under "info"
            "format": PREDICTIONS_FORMAT,
            "version": PREDICTIONS_FORMAT_VERSION,
            "info": {
                "tool": _tool(),
                "model": predictor.model_record(),
                "settings": settings,
                "id_maps": "16-bit PNG; value k is entity k (segments[].id), 0 is no entity",
                "problems": problems,
            },
            "images": records,
        }
        write_json(tmp / PREDICTIONS_JSON, doc, indent=1)
        write_json(tmp / COCO_RESULTS_JSON, results)
    return PredictRun(out_dir, records, problems, settings, time.perf_counter() - t_start, model_seconds)


def _tool() -> str:
    from . import __version__

    return f"entitykit {__version__}"


def _write_image(tmp: Path, item: ImageInput, name: str, image: np.ndarray, pred: PredictedImage,
                 overlays: bool, cutouts: bool, results: list, overlay, cutout_crops) -> dict:
    h, w = pred.id_map.shape
    id_png = f"id_maps/{name}.png"
    (tmp / id_png).parent.mkdir(parents=True, exist_ok=True)
    write_id_map_png(tmp / id_png, pred.id_map, "png16")
    ids, rles, areas = encode_id_map(pred.id_map)
    boxes = rle_bbox(rles)
    segments = []
    for k, (eid, rle, area, box) in enumerate(zip(ids.tolist(), rles, areas.tolist(), boxes.tolist())):
        score = float(pred.scores[eid - 1])
        segments.append({"id": eid, "score": score, "area": int(area), "bbox": [int(v) for v in box]})
        results.append({"image_id": item.image_id, "category_id": 1, "segmentation": rle, "score": score})
    rec: dict[str, Any] = {"image_id": item.image_id, "file_name": id_png, "image": item.name,
                           "source": str(item.path), "height": h, "width": w, "model_size": list(pred.model_size), "segments": segments}
    if overlays:
        ov = f"overlays/{name}.png"
        (tmp / ov).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay(image, pred.id_map)).save(tmp / ov, compress_level=1)  # photos: speed over size
        rec["overlay"] = ov
    if cutouts:
        folder = f"cutouts/{name}"
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        width = max(3, len(str(len(segments))))
        for seg, crop in zip(segments, cutout_crops(image, pred.id_map, [s["bbox"] for s in segments],
                                                    [s["id"] for s in segments])):
            rel = f"{folder}/{seg['id']:0{width}d}.png"
            Image.fromarray(crop, "RGBA").save(tmp / rel)
            seg["cutout"] = rel
    return rec
