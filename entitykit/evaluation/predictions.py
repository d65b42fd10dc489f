"""Readers for ground truth and the three prediction formats the scorer accepts.

Every prediction reader yields one representation, :class:`~.ape.PredColumns` (image id, score,
RLE size and counts buffer, optional bbox), in the order the file lists the predictions (that
order breaks score ties, as in pycocotools), with a label per prediction for error messages.

Prediction formats (see docs/prediction-format.md):

- ``entitykit``: a folder with ``predictions.json`` ({"format": "entitykit-predictions", ...})
  and one id-map PNG per image: the paper's P (0 = no entity) and S (a score per id).
- ``coco``: a COCO results JSON list ``[{image_id, segmentation (RLE), score, ...}]``, or a
  COCO-instances-shaped dict ``{images, annotations: [that list], categories}`` (scored exactly as
  its annotations list); ``category_id`` is ignored (class-agnostic). A ``bbox`` on the first
  result makes box areas decide the S/M/L ranges, as pycocotools' loadRes does
  (``ape.apply_area_rule``; ``area_rule="mask"`` uses mask areas).
- ``panoptic``: COCO panoptic predictions (JSON + PNG folder); ``segments_info[].score`` is used
  when present. Rule when scores are missing: when NO segment of the file has a score, every
  segment scores 1.0, so the ranking is the file order (images by id, segments in
  ``segments_info`` order; pycocotools' stable sort); a file where only some segments have a
  score is refused.

What a file is is decided from its content by ``formats.sniff`` (the one owner of that question);
a file that is none of these gets ``formats.diagnose``'s one line: what it looks like, what is
accepted and the command that converts it, where one exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, PredictionError, describe_failure
from ..masks import encode_id_map, read_id_map_png
from ..prediction_format import PREDICTIONS_FORMAT as ENTITYKIT_FORMAT
from ..prediction_format import PREDICTIONS_FORMAT_VERSION
from . import formats
FORMATS = ("auto", "entitykit", "coco", "panoptic")
MISSING_SCORE = 1.0


@dataclass
class LoadedPredictions:
    items: Any  # ape.PredColumns
    labels: Any  # message label per item
    fmt: str
    path: str | None
    warnings: list = field(default_factory=list)


@dataclass
class LoadedGT:
    images: list
    annotations: list
    fmt: str
    path: str | None
    warnings: list = field(default_factory=list)
    # a sharded dataset: its manifest path (annotations come shard by shard from ``gt_parts``), each
    # image's shard (position in ``shard_files``, aligned with ``images``) and the shard files
    shards: str | None = None
    image_shard: list = field(default_factory=list)
    shard_files: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Ground truth


def _default_png_dir(json_path: Path) -> Path:
    return json_path.with_suffix("")


def _read_png(png: Path, item: str, err) -> np.ndarray:
    """An id-map / panoptic PNG; any failure is one line naming the PNG and the image it belongs to."""
    try:
        return read_id_map_png(png)
    except Exception as e:  # noqa: BLE001  (a user-caused failure gets the item; a bug propagates)
        text = describe_failure(e)
        if text is None:
            raise
        problem = getattr(e, "problem", None) or text
        raise err(problem, getattr(e, "path", None) or png, getattr(e, "item", None) or item) from None


def _inside(root: Path, name: str) -> Path | None:
    """root / name when it stays inside root (no absolute path, no way out with '..'), else None."""
    if Path(name).is_absolute():
        return None
    path = root / name
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return path


def panoptic_entities(
    data: dict, png_dir: Path, json_path: Path | None, *, crowd: str = "void", what: str = "ground truth",
    err=DatasetError,
) -> tuple[list, list]:
    """Per segment one entity (thing or stuff); crowd segments become void or stay as iscrowd=1.

    Returns (images, annotations) of an entity dataset in memory; used for panoptic prediction
    files and as a fallback reader for panoptic ground truth."""
    images = data.get("images") or []
    by_id = {im["id"]: im for im in images}
    by_id.update({im["source_id"]: im for im in images if "source_id" in im})
    out_anns = []
    aid = 0
    for k, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict) or not isinstance(ann.get("segments_info"), list):
            raise err("not a panoptic annotation (an object with image_id, file_name and a segments_info list)",
                      json_path, f"annotations[{k}]")
        iid = ann.get("image_id")
        if isinstance(iid, (bool, list, dict, float)) or iid not in by_id:
            raise err(f"unknown image id {iid!r}", json_path, f"annotations[{k}]")
        im = by_id[iid]
        segs = ann["segments_info"]
        seg_ids = []
        for j, s in enumerate(segs):
            # the converter's rule (convert/coco_panoptic.py): 0 is "no segment" in a panoptic PNG
            sid = s.get("id") if isinstance(s, dict) else None
            if not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0:
                raise err(f"segment with invalid id {sid!r} (must be a positive integer; 0 is 'no segment' in a "
                          "panoptic PNG)", json_path, f"image {iid!r}, segments_info[{j}]")
            seg_ids.append(sid)
        if len(set(seg_ids)) != len(seg_ids):
            dup = next(s for i, s in enumerate(seg_ids) if s in seg_ids[:i])
            raise err(f"duplicate segment id {dup}", json_path, f"image {iid!r}")
        name = ann.get("file_name")
        if not isinstance(name, str) or not name:
            name = Path(str(im.get("file_name", iid))).with_suffix(".png").name  # the converter's fallback
        png = _inside(png_dir, name)
        if png is None:
            raise err(f"file_name {name!r} leaves the PNG folder {png_dir}", json_path, f"annotations[{k}] (image {iid!r})")
        if not png.exists():  # the JSON entry names a missing file: name both
            raise err(f"panoptic PNG {png} not found (file_name {name!r})", json_path,
                      f"annotations[{k}] (image {iid!r})")
        id_map = _read_png(png, f"image {iid!r}", err)
        if id_map.shape != (im["height"], im["width"]):
            raise err(f"PNG is {id_map.shape[1]}×{id_map.shape[0]} but image {iid!r} is {im['width']}×{im['height']}",
                      png, f"image {iid!r}")
        ids, rles, areas = encode_id_map(id_map)
        rle_of = dict(zip(ids.tolist(), rles))
        area_of = dict(zip(ids.tolist(), areas.tolist()))
        unknown = sorted(set(rle_of) - set(seg_ids))
        if unknown:
            raise err(f"segment id {unknown[0]} is in the PNG {png} but has no segments_info entry", json_path,
                      f"annotations[{k}] (image {iid!r})")
        for s in segs:
            rle = rle_of.get(s["id"])
            if rle is None:
                continue  # listed but not painted: no pixels, no entity
            if s.get("iscrowd") and crowd == "void":
                continue
            aid += 1
            a = {"id": aid, "image_id": im["id"], "category_id": 1, "segmentation": rle,
                 "area": int(area_of[s["id"]]), "iscrowd": 1 if s.get("iscrowd") else 0,
                 "_segment_id": s["id"]}
            if "score" in s:
                a["score"] = s["score"]
            out_anns.append(a)
    return images, out_anns


# what the scorer reads of a GT entry (pycocotools' segm evaluation needs no file_name, bbox or category)
GT_IMAGE_KEYS = ("id", "height", "width")
GT_ANNOTATION_KEYS = ("id", "image_id", "segmentation", "area")


def _check_gt_entries(data: dict, path: Path | None) -> None:
    """Every image and annotation entry against the dataset layer's per-entry rules (``entitykit.dataset``:
    the words of ``entitykit check``), with the keys the scorer reads; all problems (up to 50) at once."""
    from ..dataset import annotation_entry_problem, image_entry_problem  # noqa: PLC0415
    from ..errors import raise_problems  # noqa: PLC0415

    problems: list[DatasetError] = []
    for i, img in enumerate(data["images"]):
        why = image_entry_problem(img, required=GT_IMAGE_KEYS)
        if why:
            problems.append(DatasetError(why, path, f"images[{i}]"))
    for j, ann in enumerate(data["annotations"]):
        why = annotation_entry_problem(ann, integer_ids=False, required=GT_ANNOTATION_KEYS)
        if why:
            problems.append(DatasetError(why, path, f"annotations[{j}]"))
        if len(problems) >= 50:
            break
    raise_problems(problems)


def _check_gt_images(images: list[tuple[Any, int, int]], path: Path | None) -> None:
    """The global image rules before any prediction is read (so a GT fault is never blamed on the
    predictions): unique ids, and the pixel limit (``entitykit.limits``)."""
    from ..limits import check_pixels, max_pixels  # noqa: PLC0415

    seen: set = set()
    limit = max_pixels() if images else 0  # read once; check_pixels words the refusal
    for iid, h, w in images:
        if iid in seen:
            raise DatasetError(f"duplicate image id {iid!r}", path, f"image {iid!r}")
        seen.add(iid)
        if limit and h * w > limit:
            check_pixels(h, w, path, f"image {iid!r}")


def _check_gt_rles(images: list[tuple[Any, int, int]], anns: list[tuple[Any, Any, Any]], path: Path | None) -> None:
    """Each GT RLE's size is its image's and its counts are ASCII (before predictions are read, so
    the GT is named; the runs themselves are checked by the kernel as it decodes)."""
    sizes = {iid: [h, w] for iid, h, w in images}
    for aid, iid, seg in anns:
        size = getattr(seg, "size", None) if not isinstance(seg, dict) else seg.get("size")
        counts = getattr(seg, "counts", None) if not isinstance(seg, dict) else seg.get("counts")
        want = sizes.get(iid)
        if size is None or want is None:
            continue  # polygons (no size) or an unknown image: prepare names those
        if list(size) != want:
            raise DatasetError(f"RLE size {list(size)} differs from the image's [height, width] {want}", path,
                               f"annotation id {aid!r} (image {iid!r})")
        if isinstance(counts, str) and not counts.isascii():
            raise DatasetError("RLE counts contain non-ASCII characters: corrupt or not COCO RLE", path,
                               f"annotation id {aid!r} (image {iid!r})")


def _check_gt_rle_columns(images: list[tuple[Any, int, int]], cols: Any, path: Path | None) -> None:
    """:func:`_check_gt_rles`' size rule on the compiled reader's columns (vectorised; the scanner's
    image ids are integers, so only images with integer ids can match)."""
    known = [(i, h, w) for i, h, w in images if type(i) is int]
    if not len(cols) or not known:
        return
    ref = np.array(known, np.int64).reshape(-1, 3)
    ref = ref[np.argsort(ref[:, 0], kind="stable")]
    pos = np.minimum(np.searchsorted(ref[:, 0], cols.image_id), len(ref) - 1)
    want = ref[pos, 1:]
    same = ref[pos, 0] == cols.image_id
    bad = np.flatnonzero(same & ((cols.size[:, 0] != want[:, 0]) | (cols.size[:, 1] != want[:, 1])))
    if bad.size:
        k = int(bad[0])
        raise DatasetError(f"RLE size {cols.size[k].tolist()} differs from the image's [height, width] "
                           f"{want[k].tolist()}", path,
                           f"annotation id {int(cols.id[k])} (image {int(cols.image_id[k])!r})")


def load_gt(gt: Any, *, gt_png_dir: str | Path | None = None, crowd: str = "void", ahead: Any = None,
            advance: Any = None, shard_of: str | None = None) -> LoadedGT:
    """An entity dataset (path, dict or object with .images/.annotations), a sharded entity dataset
    (its folder or manifest.json; ``entitykit.shards``) or COCO panoptic JSON. ``ahead``: the file
    read in the background (``_ahead.start(gt, "gt")``), or None. ``advance(n_shards, k)``: called
    as a sharded dataset's shards are read (for progress). ``shard_of``: ``gt`` is a shard of the
    sharded dataset at that path, so it must be an entity dataset JSON (refused otherwise, naming
    it and the manifest).

    A sharded dataset is opened through the dataset layer as every command opens it (each shard's
    schema and RLE sizes, its counts against the manifest, the rules across shards: ids, file names)
    one shard at a time; what is kept is an index of its images (``LoadedGT.shards``), and the
    entities are read again, shard by shard, by :func:`gt_parts` when scored. A folder without a manifest is
    refused with what it is when it is an unfinished or unmerged conversion
    (``shards.conversion_folder_problem``); any other folder as formats.refuse words it."""
    if hasattr(gt, "images") and hasattr(gt, "annotations"):
        where = getattr(gt, "path", None)
        return LoadedGT(list(gt.images), list(gt.annotations), "entity", str(where) if where else None)
    if isinstance(gt, (str, Path)):
        from ..shards import conversion_folder_problem, is_sharded  # noqa: PLC0415

        if is_sharded(gt):
            return _sharded_gt_index(gt, advance)
        why = conversion_folder_problem(gt)
        if why:  # a sharded conversion's folder, unfinished or not merged: what to run
            raise DatasetError(why, gt)
    kind = formats.sniff(gt, role="gt", ahead=ahead)  # a path: read once (the fast reader first), never parsed twice
    path, data = kind.path, kind.data
    if shard_of is not None and kind.kind != formats.ENTITY:
        raise DatasetError(f"a shard of {shard_of} must be an entity dataset JSON (docs/sharding.md); this one is "
                           f"{kind.description}", path)
    if kind.kind == formats.ENTITY:
        if hasattr(data, "images"):  # the compiled reader: annotations as typed columns, images as checked dicts
            images = [(im["id"], im["height"], im["width"]) for im in data.images]
            _check_gt_images(images, path)
            _check_gt_rle_columns(images, data.annotations, path)
            return LoadedGT(data.images, data.annotations, "entity", str(path) if path else None)
        _check_gt_entries(data, path)  # what the typed reader declined: the dataset layer's entry rules
        images = [(im["id"], im["height"], im["width"]) for im in data["images"]]
        _check_gt_images(images, path)
        _check_gt_rles(images, [(a["id"], a["image_id"], a["segmentation"]) for a in data["annotations"]], path)
        return LoadedGT(data["images"], data["annotations"], "entity", str(path) if path else None)
    if kind.kind != formats.PANOPTIC:
        raise formats.refuse(kind, "gt")
    png_dir = Path(gt_png_dir) if gt_png_dir else (_default_png_dir(path) if path else None)
    if png_dir is None or not png_dir.is_dir():
        looked = f"looked for {png_dir}" if png_dir else "an in-memory dict has none by default"
        raise DatasetError(
            f"COCO panoptic ground truth needs its PNG folder ({looked}); give it with --gt-png-dir DIR, "
            f"or convert it once: entitykit convert coco-panoptic {path or 'FILE'} PNG_DIR "
            "-o entities.json", path)
    if path is None:  # an in-memory dict (with gt_png_dir)
        images, anns = panoptic_entities(data, png_dir, path, crowd=crowd)
        return LoadedGT(images, anns, "coco-panoptic", None)
    from ..convert.coco_panoptic import convert_coco_panoptic  # noqa: PLC0415  (the converter's rules)

    ds = convert_coco_panoptic(path, png_dir, crowd=crowd)
    return LoadedGT(list(ds.images), list(ds.annotations), "coco-panoptic", str(path))


_IMAGE_KEYS = ("id", "height", "width", "source", "source_id")


def _read_shard(manifest: Any, entry: Any) -> LoadedGT:
    """One shard of a sharded ground truth, as its file alone would be read as ground truth (a
    JSON shard: :func:`load_gt`'s reader and checks, and it must be an entity dataset; a pack:
    ``dataset.load_shard``), after its size and SHA-256 (``shards.verify_shard``); its counts and
    id ranges must be the manifest's."""
    from ..dataset import load_shard, shard_count_problem  # noqa: PLC0415
    from ..shards import counts_of, verify_shard  # noqa: PLC0415

    if entry.kind == "json":
        verify_shard(manifest, entry)
        g = load_gt(str(manifest.shard_path(entry)), shard_of=str(manifest.path.parent))
    else:
        ds = load_shard(manifest, entry)
        g = LoadedGT(list(ds.images), list(ds.annotations), "entity", str(ds.path))
    why = shard_count_problem(entry, counts_of([im["id"] for im in g.images], *_annotation_ids(g)))
    if why:
        raise DatasetError(why, manifest.path, f"shard {entry.file}")
    return g


def _annotation_ids(g: LoadedGT) -> tuple[list, list]:
    """(annotation ids, iscrowd flags) of a ground truth's annotations (dicts or the compiled reader's columns)."""
    anns = g.annotations
    if hasattr(anns, "buf"):
        return anns.id.tolist(), anns.iscrowd.tolist()
    return [a["id"] for a in anns], [a.get("iscrowd") for a in anns]


def _sharded_gt_index(gt: str | Path, advance: Any = None) -> LoadedGT:
    """Pass one over a sharded ground truth: each shard read as its file alone would be read as
    ground truth (:func:`_read_shard`, so a sharded dataset is accepted or refused as the same data
    in one file), one in memory at a time, plus the two rules across shards that one file's reader
    applies inside it: image ids and annotation ids unique (the annotation ids are kept as one int64
    array, 8 bytes per entity, sorted once at the end: scoring keeps more per entity anyway). Kept:
    each image's id, size, source and source id, and its shard. ``advance(n, k)``: after shard k of n."""
    from ..shards import read_manifest  # noqa: PLC0415

    manifest = read_manifest(gt)
    images: list = []
    image_shard: list = []
    seen: dict = {}
    ann_ids: list = []  # per shard, its annotation ids (int64), or None when some id is not an integer
    paths: list = []
    for k, entry in enumerate(manifest.shards):
        g = _read_shard(manifest, entry)
        paths.append(g.path)
        for im in g.images:
            if seen.setdefault(im["id"], k) != k:
                raise DatasetError(f"duplicate image id (also in {paths[seen[im['id']]]})", g.path,
                                   f"image {im['id']!r}")
        ids = _annotation_ids(g)[0]
        ann_ids.append(np.array(ids, np.int64) if all(type(i) is int for i in ids) else None)
        images.extend({key: im[key] for key in _IMAGE_KEYS if key in im} for im in g.images)
        image_shard.extend([k] * len(g.images))
        del g, ids
        if advance is not None:
            advance(len(manifest.shards), k)
    if not manifest.shards:
        raise DatasetError("a sharded dataset without shards", gt)
    if all(a is not None for a in ann_ids):  # else pass two refuses the shard's non-integer id (ape.prepare)
        _unique_across_shards(ann_ids, paths)
    return LoadedGT(images, [], "entity-shards", str(gt), shards=str(gt), image_shard=image_shard,
                    shard_files=[entry.file for entry in manifest.shards])


def _unique_across_shards(ann_ids: list, paths: list) -> None:
    """Refuse an annotation id found in two shards (``ann_ids``: int64 per shard), naming both, in
    the words of ``entitykit check``; a duplicate inside one shard is that shard's reader's."""
    ids = np.concatenate(ann_ids) if ann_ids else np.zeros(0, np.int64)
    shard = np.repeat(np.arange(len(ann_ids)), [len(a) for a in ann_ids])
    order = np.argsort(ids, kind="stable")
    ids, shard = ids[order], shard[order]
    dup = np.flatnonzero((ids[1:] == ids[:-1]) & (shard[1:] != shard[:-1]))
    if dup.size:
        k = int(dup[0])
        raise DatasetError(f"duplicate annotation id (also in {paths[int(shard[k])]})", paths[int(shard[k + 1])],
                           f"annotation {int(ids[k])!r}")


def gt_parts(g: LoadedGT) -> Any:
    """Pass two over a sharded ground truth (``LoadedGT.shards``): ``(images, annotations, shard
    file)`` per shard, in manifest order, one in memory at a time, read and checked again as in
    pass one (a shard changed since is refused, naming it: its size or SHA-256 is no longer the
    manifest's)."""
    from ..shards import read_manifest  # noqa: PLC0415

    manifest = read_manifest(g.shards)
    if [entry.file for entry in manifest.shards] != g.shard_files:
        raise DatasetError("the manifest changed while the dataset was scored; run again", manifest.path)
    for entry in manifest.shards:
        part = _read_shard(manifest, entry)
        yield part.images, part.annotations, part.path
        del part


# ---------------------------------------------------------------------------------------------
# Predictions


def _images_by_id(gt_images: list) -> dict:
    """Image id → the GT image dict; a converted dataset's original id (``source_id``: converters
    renumber e.g. Cityscapes' string ids) names the same image, unless it is another image's id."""
    images = {im["source_id"]: im for im in gt_images if im.get("source_id") is not None}
    images.update({im["id"]: im for im in gt_images})
    return images


def _dataset_ids(cols: Any, images: dict) -> Any:
    """The scanner's int64 image ids, with int ``source_id`` aliases turned into the dataset's ids."""
    alias = {k: im["id"] for k, im in images.items() if type(k) is int and k != im["id"]}
    if alias and len(cols):
        ids = [alias.get(i, i) for i in cols.image_id.tolist()]
        cols.image_id = np.array(ids, np.int64) if all(type(i) is int for i in ids) else ids
    return cols


def detect_format(pred: Any) -> tuple[str, Any, Path | None]:
    """(format, parsed JSON, the compiled reader's columns or None, JSON path). What the file is is
    decided by ``formats.sniff``; a file that is no prediction format gets its diagnosis."""
    kind = formats.sniff(pred, role="pred")
    if kind.fmt is None:
        raise formats.refuse(kind, "pred")
    data = kind.data
    if kind.kind == formats.COCO_RESULTS_DICT:
        data = data["annotations"]  # scored exactly as the same list
    return kind.fmt, data, kind.path


def load_predictions(pred: Any, gt_images: list, *, fmt: str = "auto", pred_png_dir: str | Path | None = None
                     ) -> LoadedPredictions:
    if fmt not in FORMATS:
        raise PredictionError(f"unknown prediction format {fmt!r}; choose one of {FORMATS}")
    kind = formats.sniff(pred, role="pred")
    found = kind.fmt
    if found is None:
        raise formats.refuse(kind, "pred")
    data, path = kind.data, kind.path
    if fmt != "auto" and fmt != found:
        raise PredictionError(f"--format {fmt} given, but the file is {kind.description} ({found!r} predictions)",
                              path)
    spath = str(path) if path else None
    from .ape import IndexLabels, pred_columns

    images = _images_by_id(gt_images)
    if kind.kind == formats.COCO_RESULTS_DICT:  # scored exactly as its annotations list would be
        cols = pred_columns(data["annotations"], IndexLabels("annotations"), path, images)
        return LoadedPredictions(cols, cols.labels, "coco", spath)
    if found == "coco":
        if isinstance(data, list):  # parsed by json, or given in memory
            cols = pred_columns(data, IndexLabels("result"), path, images)
        else:  # the compiled reader's columns (or PredColumns given in memory)
            cols = _dataset_ids(data, images)
        return LoadedPredictions(cols, cols.labels, "coco", spath)
    if found == "entitykit":
        if path is None:
            raise PredictionError("entitykit predictions are read from their folder (the id maps live there); "
                                  "pass the folder or its predictions.json, not a parsed dict")
        return _load_entitykit(data, path, images)
    png_dir = Path(pred_png_dir) if pred_png_dir else (_default_png_dir(path) if path else None)
    if png_dir is None or not png_dir.is_dir():
        segs = [s for a in data["annotations"] if isinstance(a, dict) for s in a.get("segments_info") or []]
        gt_tip = ""
        if not any(isinstance(s, dict) and "score" in s for s in segs):
            gt_tip = (f"; no segment has a score: if this is panoptic ground truth, pass it as GT, or convert it "
                      f"once: entitykit convert coco-panoptic {path or 'FILE'} PNG_DIR -o entities.json")
        looked = f"looked for {png_dir}, not found" if png_dir else "an in-memory dict has none by default"
        raise PredictionError(
            f"{kind.description} needs its PNG folder ({looked}); give it with --pred-png-dir DIR{gt_tip}", path)
    # image metadata: the prediction file's own images if present, else the ground truth's
    anns = data.get("annotations") or []
    for k, a in enumerate(anns):
        if not isinstance(a, dict) or not isinstance(a.get("segments_info"), list):
            raise PredictionError("not a panoptic annotation (an object with image_id, file_name and a "
                                  "segments_info list)", path, f"annotations[{k}]")
        if isinstance(a.get("image_id"), (bool, list, dict, float)) or a.get("image_id") not in images:
            raise PredictionError(f"unknown image id {a.get('image_id')!r} (not in the ground truth)", path,
                                  f"annotations[{k}]")
    with_score = sum(1 for a in anns for s in a["segments_info"] if isinstance(s, dict) and "score" in s)
    total = sum(len(a.get("segments_info") or []) for a in anns)
    warnings = []
    if 0 < with_score < total:
        raise PredictionError(
            f"{with_score} of {total} segments have a score; give every segment a score or none "
            "(without scores every segment scores 1.0 and the file order ranks them)", path)
    if total and not with_score:
        warnings.append("panoptic predictions have no scores: every segment scores 1.0, ranked by file order "
                        "(images by id, segments_info order)")
    _, ents = panoptic_entities({"images": list({id(v): v for v in images.values()}.values()), "annotations": anns},
                                png_dir, path,
                                crowd="keep", what="predictions", err=PredictionError)
    items, labels = [], []
    for e in ents:
        s = e.get("score", MISSING_SCORE)
        items.append({"image_id": e["image_id"], "segmentation": e["segmentation"], "score": s})
        labels.append(f"segment {e['_segment_id']} of image {e['image_id']!r}")
    from .ape import pred_columns

    return LoadedPredictions(pred_columns(items, labels, path, images), labels, "panoptic", spath, warnings)


def predictions_records(data: object, path: Path) -> list:
    """The ``images`` records of an entitykit predictions.json, after its header rules (format,
    version, a list of images): the one check every reader of the format calls.

    Raises:
        PredictionError: naming ``path`` and what is wrong.
    """
    if not isinstance(data, dict) or data.get("format") != ENTITYKIT_FORMAT:
        raise PredictionError(f"not an entitykit predictions file (its 'format' must be {ENTITYKIT_FORMAT!r}; "
                              "docs/prediction-format.md)", path)
    version = data.get("version", PREDICTIONS_FORMAT_VERSION)
    if version != PREDICTIONS_FORMAT_VERSION or isinstance(version, bool):
        raise PredictionError(f"version {version!r} is not supported (this entitykit reads version "
                              f"{PREDICTIONS_FORMAT_VERSION})", path, "version")
    recs = data.get("images")
    if not isinstance(recs, list):
        raise PredictionError("'images' must be a list", path)
    return recs


def _load_entitykit(data: dict, path: Path, images: dict) -> LoadedPredictions:
    recs = predictions_records(data, path)
    root = path.parent
    items, labels, warnings = [], [], []
    seen_images: set = set()
    dropped = 0
    for k, rec in enumerate(recs):
        if not isinstance(rec, dict):
            raise PredictionError("not an object {image_id, file_name, segments}", path, f"images[{k}]")
        iid = rec.get("image_id")
        where = f"images[{k}] (image {iid!r})"
        if isinstance(iid, (bool, float, list, dict)) or iid is None:
            raise PredictionError(f"image_id {iid!r} is not an integer or a string", path, f"images[{k}]")
        if iid not in images:
            raise PredictionError(f"unknown image id {iid!r} (not in the ground truth)", path, f"images[{k}]")
        if iid in seen_images:
            raise PredictionError(f"image id {iid!r} listed twice", path, where)
        seen_images.add(iid)
        segs = rec.get("segments")
        if not isinstance(segs, list):
            raise PredictionError("'segments' must be a list of {id, score}", path, where)
        ids = []
        scores = {}
        for s in segs:
            sid = s.get("id") if isinstance(s, dict) else None
            if not isinstance(sid, int) or isinstance(sid, bool) or sid < 1:
                raise PredictionError(f"segment id {sid!r} is not an integer >= 1", path, where)
            if sid in scores:
                raise PredictionError(f"duplicate segment id {sid}", path, where)
            if "score" not in s:
                raise PredictionError(f"segment id {sid} has no 'score'", path, where)
            scores[sid] = s["score"]  # its type and value: ape.prepare, the one check for every format
            ids.append(sid)
        im = images[iid]
        name = rec.get("file_name")
        if not isinstance(name, str) or not name:
            raise PredictionError(f"file_name {name!r} must name the id-map PNG", path, where)
        png = _inside(root, name)
        if png is None:
            raise PredictionError(f"file_name {name!r} leaves the predictions folder (id maps are named relative "
                                  "to it)", path, where)
        if not png.exists():  # the JSON entry names a missing file: name both
            raise PredictionError(f"id-map PNG {png} not found (file_name {name!r})", path, where)
        id_map = _read_png(png, f"image {iid!r}", PredictionError)
        if id_map.shape != (im["height"], im["width"]):
            raise PredictionError(
                f"id map is {id_map.shape[1]}×{id_map.shape[0]} but image {iid!r} is {im['width']}×{im['height']}", png,
                f"image {iid!r}")
        pids, rles, _ = encode_id_map(id_map)
        rle_of = dict(zip(pids.tolist(), rles))
        unknown = sorted(set(rle_of) - set(scores))
        if unknown:
            raise PredictionError(f"id {unknown[0]} is in the id map {png} but has no segments entry (no score)",
                                  path, where)
        for sid in ids:
            if sid not in rle_of:
                dropped += 1
                continue
            items.append({"image_id": im["id"], "segmentation": rle_of[sid], "score": scores[sid]})
            labels.append(f"id {sid} of image {iid!r}")
    if dropped:
        warnings.append(f"{dropped} listed prediction ids have no pixels in their id map and were skipped")
    from .ape import pred_columns

    return LoadedPredictions(pred_columns(items, labels, path, images), labels, "entitykit", str(path), warnings)
