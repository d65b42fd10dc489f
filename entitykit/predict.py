"""Run an entity model on image files and write what the scorer and people read.

``predict(checkpoint, ["photos/"], "out/")`` writes, atomically (a temporary sibling folder renamed
into place, so an interrupted run leaves no half-written output)::

    out/predictions.json        the entitykit prediction format (``entitykit eval GT out/``)
    out/coco_results.json       the same entities as COCO RLE results (no bbox: mask area is used)
    out/id_maps/<name>.png      per image the paper's P, 16-bit (0 = no entity, k = entity k)
    out/previews/<name>.png     the id map in colours (8-bit RGB), for people: 16-bit PNGs look black
    out/overlays/<name>.png     the photo tinted per entity, boundaries, entity ids (and scores)
    out/cutouts/<name>/<k>.png  optional: each entity as an RGBA image cropped to its box

``<name>`` is the image's path relative to its input folder (or its dataset ``file_name``) without
its last suffix; names that would collide (``a.jpg`` and ``a.png``, or case-only differences) keep
their suffix instead; ``predictions.json`` maps each image to its files.

Images are read by ``entitykit.images.read_image`` (EXIF orientation applied unless ``exif=False``,
any mode to RGB, the pixel limit checked first); the model runs through
``entitykit.model.Predictor``. Output names follow ``entitykit.naming.output_names``: always inside
``out``, never colliding. Weights come from a local checkpoint file only.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import EntityKitError
from .fileio import atomic_path, check_output, write_json
from .images import read_image
from .masks import write_id_map_png
from .model.predictor import (  # noqa: F401  (re-exported: the run's public names)
    FULL_PASTE_PIXELS, PredictedImage, Predictor, finish_id_map, model_size, resize_nearest)
from .naming import output_names
from .prediction_format import (
    COCO_RESULTS_JSON, ID_MAP_DOC, PREDICTIONS_FORMAT, PREDICTIONS_FORMAT_VERSION, PREDICTIONS_JSON, entity_records)
from .visualize import DEFAULT_ALPHA

load_image = read_image  # the name this module has always exported
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
        # hidden folders, and earlier entitykit outputs (a folder holding predictions.json) are not inputs
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (Path(root) / d / PREDICTIONS_JSON).is_file())
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
    """The images of an entity dataset (path or EntityDataset), with its ids and sizes, in file order.

    The dataset is opened by ``EntityDataset.parts`` (schema rules; the caller's object unchanged):
    a sharded dataset shard by shard, in manifest order, one shard's masks in memory at a time."""
    from .dataset import EntityDataset

    items: list[ImageInput] = []
    for ds in EntityDataset.parts(dataset, image_root=image_root, need_image_root=True):
        items.extend(ImageInput(ds.image_path(img), Path(img["file_name"]).as_posix(), img["id"], img["height"],
                                img["width"]) for img in ds.images)
        del ds
    if not items:
        raise EntityKitError("the dataset has no images", dataset if not isinstance(dataset, EntityDataset) else dataset.path)
    return items


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
    previews: bool = True,
    overlay_alpha: float = DEFAULT_ALPHA,
    overlay_labels: bool = True,
    dataset: Any = None,
    image_root: str | Path | None = None,
    max_size: int | None = None,
    paste_pixels: int = FULL_PASTE_PIXELS,
    keep_going: bool = False,
    overwrite: bool = False,
    exif: bool = True,
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
    exif: apply EXIF orientation (default); False reads stored pixels (datasets annotated that way).
    previews: write ``previews/<name>.png`` (each id map in colours; the same colours as its overlay).
    overlay_alpha: fill opacity of the overlays, 0 (photo only) … 1 (solid colour).
    overlay_labels: write each entity's id and score on the overlay, inside the entity.
    """
    from .progress import progress_bar
    from .visualize import cutout_crops

    if not 0.0 <= overlay_alpha <= 1.0:
        raise EntityKitError(f"overlay opacity must be between 0 and 1, got {overlay_alpha}")
    pictures = {"overlays": overlays, "previews": previews, "alpha": overlay_alpha, "labels": overlay_labels}
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    if dataset is not None:
        if inputs:
            raise EntityKitError("give input images or a dataset, not both")
        items = dataset_inputs(dataset, image_root)
    else:
        # before the search, which skips files under the output folder: an input folder that is the
        # output (or below it) must be named as such, not reported as empty
        check_output(out_dir, kind="folder", inputs=[str(p) for p in inputs or [] if Path(str(p)).exists()],
                     overwrite=True)
        items = collect_inputs(inputs or [], exclude=out_dir)
    names = output_names([it.name for it in items])
    # the output folder is replaced as a whole: it must not be (or hold) a folder of the input images
    check_output(out_dir, kind="folder", inputs=sorted({str(it.path.parent) for it in items}), overwrite=overwrite)
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
                    expect = (item.height, item.width) if item.height is not None and item.width is not None else None
                    image = read_image(item.path, exif=exif, item=f"image {item.image_id!r}", expect=expect)
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
                rec = _write_image(tmp, item, name, image, pred, pictures, cutouts, results, cutout_crops)
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
                "id_maps": ID_MAP_DOC,
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
                 pictures: dict, cutouts: bool, results: list, cutout_crops) -> dict:
    h, w = pred.id_map.shape
    id_png = f"id_maps/{name}.png"
    (tmp / id_png).parent.mkdir(parents=True, exist_ok=True)
    write_id_map_png(tmp / id_png, pred.id_map, "png16")
    segments, records = entity_records(item.image_id, pred.id_map, pred.scores)
    results.extend(records)
    rec: dict[str, Any] = {"image_id": item.image_id, "file_name": id_png, "image": item.name,
                           "source": str(item.path), "height": h, "width": w, "model_size": list(pred.model_size), "segments": segments}
    if pictures["previews"] or pictures["overlays"]:
        from .naming import preview_name  # noqa: PLC0415
        from .visualize import entity_colors, overlay, write_preview_png  # noqa: PLC0415

        colors = entity_colors(pred.id_map)  # one colour per entity, the same in both pictures
        if pictures["previews"]:
            pv = preview_name(name)  # the id map's own name, in a sibling folder: unique as the id maps are
            (tmp / pv).parent.mkdir(parents=True, exist_ok=True)
            write_preview_png(tmp / pv, pred.id_map, colors=colors)
            rec["preview"] = pv
        if pictures["overlays"]:
            ov = f"overlays/{name}.png"
            (tmp / ov).parent.mkdir(parents=True, exist_ok=True)
            picture = overlay(image, pred.id_map, alpha=pictures["alpha"], labels=pictures["labels"],
                              scores=pred.scores, colors=colors)
            Image.fromarray(picture).save(tmp / ov, compress_level=1)  # photos: speed over size
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
