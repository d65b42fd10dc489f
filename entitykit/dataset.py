"""The entity dataset format: one COCO-instances JSON with a single category and disjoint masks.

Any COCO tool reads it unchanged (pycocotools, detectron2's ``register_coco_instances``). The
specification is ``docs/entity-format.md``; this module reads, writes, validates and iterates it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError, raise_problems
from .fileio import atomic_path, read_json, write_json
from .masks import ID_MAP_FORMATS, decode_to_id_map, write_id_map_png
from .naming import ID_MAPS_JSON, PREVIEWS, output_names, preview_name

FORMAT_NAME = "entitykit-entities"
FORMAT_VERSION = 1
ENTITY_CATEGORY = {"id": 1, "name": "entity", "supercategory": "entity"}

IMAGE_KEYS = ("id", "file_name", "height", "width")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")


def _whole(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_id(v: Any, *, integer: bool = True) -> bool:
    """An image or annotation id: a whole number (not a bool); strings too unless ``integer``."""
    return _whole(v) or (not integer and isinstance(v, str) and bool(v))


def image_entry_problem(img: Any, *, integer_id: bool = False, required: tuple[str, ...] = IMAGE_KEYS) -> str | None:
    """What is wrong with one ``images[]`` entry's keys and types, or None (the per-image schema rule).

    ``required``: the keys that must be present (the scorer needs no ``file_name``); a key that is
    present is type-checked either way."""
    if not isinstance(img, dict):
        return f"must be an object with keys {', '.join(required)}, got {type(img).__name__}"
    missing = [k for k in required if k not in img]
    if missing:
        return f"missing keys: {', '.join(missing)}"
    if not is_id(img["id"], integer=integer_id):
        return f"image id must be {'an integer' if integer_id else 'an integer or a string'}, got {img['id']!r}"
    if "file_name" in img and (not isinstance(img["file_name"], str) or not img["file_name"] or "\0" in img["file_name"]):
        return f"file_name must be a non-empty string, got {img['file_name']!r}"
    h, w = img["height"], img["width"]
    if not (_whole(h) and _whole(w) and h > 0 and w > 0):
        return f"height/width must be positive integers, got {h!r}×{w!r}"
    return None


def annotation_entry_problem(ann: Any, *, integer_ids: bool = True,
                             required: tuple[str, ...] = ANNOTATION_KEYS) -> str | None:
    """What is wrong with one ``annotations[]`` entry's keys and value types, or None.

    ``required`` as for :func:`image_entry_problem` (the scorer needs no ``bbox``); ``integer_ids``:
    False lets ``image_id`` be a string too (COCO tools accept string image ids)."""
    if not isinstance(ann, dict):
        return f"must be an object with keys {', '.join(required)}, got {type(ann).__name__}"
    missing = [k for k in required if k not in ann]
    if missing:
        return f"missing keys: {', '.join(missing)}"
    if not is_id(ann["id"]):
        return f"annotation id must be an integer, got {ann['id']!r}"
    if not is_id(ann["image_id"], integer=integer_ids):
        return f"image_id must be {'an integer' if integer_ids else 'an integer or a string'}, got {ann['image_id']!r}"
    if "area" in ann and not _finite(ann["area"]):
        return f"area must be a finite number, got {ann['area']!r}"
    if "bbox" in ann:
        bbox = ann["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
            return f"bbox must be [x, y, width, height] as 4 finite numbers, got {bbox!r}"
    if "iscrowd" in ann and (ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], bool)):
        return f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}"
    return None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v))


class _Enough(Exception):
    pass


@dataclass
class EntityDataset:
    """Images and their entity annotations, plus where the image files live."""

    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    image_root: Path | None = None
    path: Path | None = None
    categories: list[dict[str, Any]] = field(default_factory=lambda: [dict(ENTITY_CATEGORY)])

    # ----------------------------------------------------------------------------- reading
    @classmethod
    def load(cls, path: str | Path, image_root: str | Path | None = None) -> EntityDataset:
        """Read an entity JSON without validating its entries (``open`` validates).
        ``image_root`` overrides the image folder recorded in the file. A sharded dataset (folder)
        is read whole, every shard (:meth:`concat`); :meth:`parts` streams it."""
        if is_sharded(path):
            return cls.concat(load_parts(path, image_root), path=path)
        path = Path(path)
        if path.is_dir():  # no manifest.json: say what the folder is (an unfinished or unmerged conversion?)
            from .shards import folder_problem  # noqa: PLC0415  (shards imports this module)

            raise DatasetError(folder_problem(path), path)
        data = read_json(path, "entity dataset")
        return cls.from_coco(data, path=path, image_root=image_root)

    @classmethod
    def open(
        cls,
        source: EntityDataset | str | Path,
        *,
        image_root: str | Path | None = None,
        validate: str | None = "schema",
        need_image_root: bool = False,
    ) -> EntityDataset:
        """The one way every command gets a dataset: read (a path) or take (an object), override
        the image folder, validate, and return a NEW object (a dataset passed in is never changed).

        ``validate``: None, ``"schema"`` (entries' keys and types, ids unique, annotations of
        known images, RLE sizes: cheap, no mask decoding) or ``"full"`` (every rule of
        ``entitykit check`` except the image files). ``need_image_root``: refuse a dataset
        that records no image folder. Raises :class:`ProblemsError` listing up to 50 problems
        (file, item, text each), :class:`DatasetError` for unreadable JSON.

        A sharded dataset (``entitykit.shards``: a folder with ``manifest.json``) is validated
        shard by shard by :meth:`parts` (each problem names its shard) and returned whole
        (:meth:`concat`); commands that can stream use :meth:`parts` instead.
        """
        if not isinstance(source, EntityDataset) and is_sharded(source):
            return cls.concat(cls.parts(source, image_root=image_root, validate=validate,
                                        need_image_root=need_image_root), path=source)
        if isinstance(source, EntityDataset):
            ds = dataclasses.replace(source)
            ds.__dict__.pop("image_by_id", None)
            if image_root is not None:
                ds.image_root = Path(image_root)
        else:
            ds = cls.load(source, image_root=image_root)
        _checked(ds, validate, need_image_root)
        return ds

    @classmethod
    def parts(
        cls,
        source: EntityDataset | str | Path,
        *,
        image_root: str | Path | None = None,
        validate: str | None = "schema",
        need_image_root: bool = False,
    ) -> Iterator[EntityDataset]:
        """:meth:`open`, streaming: a sharded dataset (a folder with a shard manifest,
        ``entitykit.shards``) as one validated ``EntityDataset`` per shard, in manifest order,
        each with ``path`` = its shard file; any other source as one part (``open``'s result).

        Memory: one shard at a time (a part is dropped before the next is read, as long as the
        caller does not keep it), plus the global index of the rules that span shards (image ids,
        file names, one annotation-id range per shard: ``entitykit.check.Rules``), which grows with
        the number of images, never with masks. Raises as :meth:`open`, for the first shard with
        problems, naming the shard file; shards before it have been yielded already (so a caller
        that writes must write atomically, as every command does).
        """
        if isinstance(source, EntityDataset) or not is_sharded(source):
            yield cls.open(source, image_root=image_root, validate=validate, need_image_root=need_image_root)
            return
        rules = None
        if validate is not None:
            from .check import Rules  # noqa: PLC0415  (check imports this module)

            rules = Rules(lambda item, text: None, earlier_ann_ids=part_annotation_ids)
        from .shards import read_manifest  # noqa: PLC0415  (shards imports this module)

        manifest = read_manifest(source)
        for entry in manifest.shards:
            ds = load_shard(manifest, entry, image_root)
            _checked(ds, validate, need_image_root, rules)
            if validate is not None and (why := shard_count_problem(entry, ds)):
                raise DatasetError(why, manifest.path, f"shard {entry.file}")
            yield ds
            del ds  # the next shard is read only once this one is released

    @classmethod
    def concat(cls, parts: Iterator[EntityDataset], *, path: str | Path | None = None) -> EntityDataset:
        """One in-memory dataset of a sharded dataset's parts (for callers that want one object:
        ``EntityDataset.open`` / ``load`` of a folder, ``entitykit view``). Images and annotations in part order, ``info`` of the first part,
        ``path`` the folder. Raises :class:`DatasetError` when the parts record different image
        folders."""
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        first: EntityDataset | None = None
        for ds in parts:
            if first is None:
                first = ds
            elif ds.image_root != first.image_root:
                raise DatasetError(f"its image folder {ds.image_root} differs from {first.path}'s {first.image_root}; "
                                   "one dataset has one image folder", ds.path, "info.image_root")
            images.extend(ds.images)
            annotations.extend(ds.annotations)
        if first is None:
            raise DatasetError("a sharded dataset without shards", path)
        info = dict(first.info)
        return cls(images=images, annotations=annotations, info=info, image_root=first.image_root,
                   path=Path(path) if path is not None else first.path, categories=first.categories)

    def with_image_root(self, image_root: str | Path | None) -> EntityDataset:
        """A copy of this dataset whose images live in ``image_root`` (this one is unchanged)."""
        ds = dataclasses.replace(self, image_root=Path(image_root) if image_root is not None else None)
        ds.__dict__.pop("image_by_id", None)
        return ds

    @classmethod
    def from_coco(
        cls, data: Any, *, path: str | Path | None = None, image_root: str | Path | None = None
    ) -> EntityDataset:
        """Wrap an already-parsed COCO-style dict, checking its top-level structure."""
        where = str(path) if path is not None else "<dataset>"
        if not isinstance(data, dict):
            raise DatasetError("top level must be a JSON object with images/annotations", where)
        for key in ("images", "annotations"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"missing or non-list '{key}'", where)
        info = dict(data.get("info") or {})
        root: Path | None = None
        if image_root is not None:
            root = Path(image_root)
        elif info.get("image_root"):
            root = Path(info["image_root"])
            if not root.is_absolute() and path is not None:
                root = Path(path).parent / root
        categories = data.get("categories")
        return cls(
            images=data["images"],
            annotations=data["annotations"],
            info=info,
            image_root=root,
            path=Path(path) if path is not None else None,
            categories=categories if isinstance(categories, list) else [],
        )

    @cached_property
    def image_by_id(self) -> dict[Any, dict[str, Any]]:
        return {img["id"]: img for img in self.images}

    def annotations_by_image(self) -> dict[Any, list[dict[str, Any]]]:
        """Annotations grouped per image id, in file order; every image has an entry."""
        groups: dict[Any, list[dict[str, Any]]] = {img["id"]: [] for img in self.images}
        for ann in self.annotations:
            groups.setdefault(ann["image_id"], []).append(ann)
        return groups

    def iter_images(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(image, its annotations) for every image, in file order."""
        groups = self.annotations_by_image()
        for img in self.images:
            yield img, groups[img["id"]]

    def image_path(self, image: dict[str, Any]) -> Path | None:
        """Where the image file is expected, or None when no image root is known."""
        if self.image_root is None:
            return None
        return self.image_root / image["file_name"]

    def id_map(self, image_id: Any, *, include_crowd: bool = False) -> np.ndarray:
        """The paper's P for one image: value k = the k-th (non-crowd) annotation in file order."""
        img = self.image_by_id[image_id]
        anns = [a for a in self.annotations_by_image().get(image_id, []) if include_crowd or not a.get("iscrowd")]
        return self.paint(img, anns)

    def paint(self, img: dict[str, Any], anns: list[dict[str, Any]]) -> np.ndarray:
        """``anns``' masks painted into one H×W int32 id map (value k = ``anns[k-1]``, 0 = none).

        Raises :class:`DatasetError` naming the annotation when its mask is not an RLE of the
        image's size whose runs cover it (checked before anything is allocated), naming the image
        when it is over the pixel limit or when its masks overlap (an entity dataset's masks are
        disjoint: painting them would silently give the overlap to one of them).
        """
        from .limits import check_pixels  # noqa: PLC0415
        from .masks import runs_problem  # noqa: PLC0415

        where = str(self.path) if self.path is not None else "<dataset>"
        h, w = img["height"], img["width"]
        check_pixels(h, w, where, f"image {img['id']!r}")
        for a in anns:
            seg = a.get("segmentation") if isinstance(a, dict) else None
            item = f"annotation {a.get('id')!r} (image {img['id']!r})" if isinstance(a, dict) else f"image {img['id']!r}"
            if not (isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes, list))):
                raise DatasetError("segmentation must be a COCO RLE {size, counts}", where, item)
            if not isinstance(seg.get("size"), (list, tuple)) or list(seg["size"]) != [h, w]:
                raise DatasetError(f"RLE size {seg.get('size')!r} differs from the image's [height, width] [{h}, {w}]",
                                   where, item)
            why = runs_problem(seg["counts"], h, w)
            if why:
                raise DatasetError(why, where, item)
        id_map, overlap = decode_to_id_map([a["segmentation"] for a in anns], range(1, len(anns) + 1), h, w)
        if overlap:
            raise DatasetError(f"masks overlap on {overlap} pixel(s); an entity dataset has disjoint masks "
                               "(entitykit check names the annotations)", where, f"image {img['id']!r}")
        return id_map

    # ----------------------------------------------------------------------------- writing
    def to_coco(self, *, relative_to: Path | None = None) -> dict[str, Any]:
        """The JSON-ready dict. The image root is stored relative to ``relative_to`` if possible."""
        info = dict(self.info)
        info.setdefault("format", FORMAT_NAME)
        info.setdefault("format_version", FORMAT_VERSION)
        if self.image_root is not None:
            root = Path(self.image_root)
            if relative_to is not None:
                try:
                    root = Path(os.path.relpath(root.resolve(), relative_to.resolve()))
                except ValueError:  # different drives on Windows
                    root = root.resolve()
            info["image_root"] = root.as_posix()
        return {
            "info": info,
            "images": self.images,
            "annotations": self.annotations,
            "categories": [dict(ENTITY_CATEGORY)],
        }

    def save(self, path: str | Path, *, indent: int | None = None) -> None:
        """Write atomically: an interrupted save leaves any previous file untouched."""
        path = Path(path)
        write_json(path, self.to_coco(relative_to=path.parent), indent=indent)
        self.path = path

    def export_id_maps(
        self, out_dir: str | Path, fmt: str = "png16", *, overwrite: bool = False, progress: bool = False,
        previews: bool = True,
    ) -> int:
        """Write one id-map PNG per image (P format) plus ``id_maps.json`` linking values to annotation ids:
        :func:`export_id_maps` of this dataset. Returns the number of id maps written."""
        return export_id_maps(self, out_dir, fmt, overwrite=overwrite, progress=progress, previews=previews)


def export_id_maps(
    source: EntityDataset | str | Path, out_dir: str | Path, fmt: str = "png16", *,
    image_root: str | Path | None = None, overwrite: bool = False, progress: bool = False, previews: bool = True,
) -> int:
    """Write one id-map PNG per image of ``source`` (a dataset, an entity JSON or a sharded
    dataset's folder) (P format) plus ``id_maps.json`` linking values to annotation ids.

    PNG names follow the image's ``file_name`` by ``entitykit.naming.output_names``: always
    inside ``out_dir``, never two images on one file; ``id_maps.json`` maps each image id to
    its PNG. ``previews``: also write each id map in colours, 8-bit RGB, at
    ``entitykit.naming.preview_name`` (``previews/<name>.png``, listed as the entry's
    ``preview``), drawn by ``entitykit.visualize.preview`` as ``predict``'s previews (a 16-bit id
    map looks black in image viewers); the folder ``previews`` is reserved for them whether or
    not they are written, so id-map names do not depend on the flag. The folder is written
    atomically. Returns the number of id maps written.

    A sharded dataset streams: it is opened shard by shard twice (:meth:`EntityDataset.parts`,
    validated, for every file name — ``output_names`` needs them all to keep names apart; then
    :func:`load_parts` for the masks), so memory holds one shard plus the names. Raises
    :class:`DatasetError` / ``ProblemsError`` as :meth:`EntityDataset.open`, or naming the image
    whose masks cannot be painted; nothing is left in ``out_dir`` then.
    """
    if fmt not in ID_MAP_FORMATS:
        raise DatasetError(f"unknown id-map format {fmt!r}; choose one of {', '.join(ID_MAP_FORMATS)}", out_dir)
    from .progress import progress_bar  # noqa: PLC0415

    sharded = not isinstance(source, EntityDataset) and is_sharded(source)
    file_names: list[str] = []
    kept: EntityDataset | None = None  # a dataset that is not sharded is read once
    for ds in EntityDataset.parts(source, image_root=image_root):
        file_names.extend(img["file_name"] for img in ds.images)
        kept = None if sharded else ds
    names = output_names(file_names, reserved=[PREVIEWS])
    n = len(file_names)
    del file_names
    index: dict[str, Any] = {"format": fmt, "value_k": "k-th non-crowd annotation of the image", "images": []}
    if previews:
        from .visualize import write_preview_png  # noqa: PLC0415
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        tmp.mkdir()
        with progress_bar(n, "id maps", enabled=progress) as advance:
            k = 0
            for ds in load_parts(source, image_root) if kept is None else [kept]:
                groups = ds.annotations_by_image()
                for img in ds.images:
                    if k >= n:  # more images than in the first pass
                        raise DatasetError(f"the dataset changed while it was written ({n:,} images, then more); "
                                           "run again", source if not isinstance(source, EntityDataset) else out_dir)
                    name = names[k]
                    k += 1
                    anns = [a for a in groups[img["id"]] if not a.get("iscrowd")]
                    id_map = ds.paint(img, anns)
                    rel = f"{name}.png"
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    write_id_map_png(tmp / rel, id_map, fmt)
                    entry = {"image_id": img["id"], "image": img["file_name"], "file_name": rel,
                             "annotation_ids": [a["id"] for a in anns]}
                    if previews:
                        entry["preview"] = preview_name(name)
                        (tmp / entry["preview"]).parent.mkdir(parents=True, exist_ok=True)
                        write_preview_png(tmp / entry["preview"], id_map)
                    index["images"].append(entry)
                    advance()
                del ds, groups
            if k != n:  # a shard changed between the two passes (its SHA-256 is checked each time)
                raise DatasetError(f"the dataset changed while it was written ({n:,} images, then {k:,}); run again",
                                   source if not isinstance(source, EntityDataset) else out_dir)
            write_json(tmp / ID_MAPS_JSON, index)
    return n


def _checked(ds: EntityDataset, validate: str | None, need_image_root: bool, rules: Any = None) -> None:
    """The dataset layer's rules on one dataset (or one shard, with the sharded dataset's ``rules``:
    ``entitykit.check.Rules``); raises :class:`ProblemsError` with up to 50 problems."""
    where = str(ds.path) if ds.path is not None else "<dataset>"
    if need_image_root and ds.image_root is None:
        raise DatasetError("the dataset records no image folder (info.image_root); give it (--images DIR)",
                           where, "info.image_root")
    if validate is None:
        return
    from .check import validate as apply_rules  # noqa: PLC0415  (check imports this module)

    problems: list[DatasetError] = []

    def problem(item: str, text: str) -> None:
        problems.append(DatasetError(text, where, item))
        if len(problems) >= 50:
            raise _Enough

    if rules is not None:
        rules.problem = problem
    try:
        apply_rules(ds, problem, level=validate, rules=rules)
        if rules is not None:
            rules.end_part()  # this shard's annotation ids against the earlier shards'
    except _Enough:
        problems.append(DatasetError("stopped after 50 problems (entitykit check lists them all)", where))
    if problems:
        raise_problems(problems)


def is_sharded(path: Any) -> bool:
    """Whether ``path`` is a sharded dataset: a folder with a shard manifest, or that manifest
    (``entitykit.shards.is_sharded``; nothing is read)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    from .shards import is_sharded as _is_sharded  # noqa: PLC0415  (shards imports this module)

    return _is_sharded(path)


def load_parts(path: str | Path, image_root: str | Path | None = None) -> Iterator[EntityDataset]:
    """The shards of a sharded dataset as unvalidated datasets (:func:`load_shard` each), in
    manifest order, one in memory at a time; a plain entity JSON as one part. Raises
    :class:`DatasetError` naming the manifest (``entitykit.shards.read_manifest``) or the shard."""
    if not is_sharded(path):
        yield EntityDataset.load(path, image_root=image_root)
        return
    from .shards import read_manifest  # noqa: PLC0415  (shards imports this module)

    manifest = read_manifest(path)
    for entry in manifest.shards:
        ds = load_shard(manifest, entry, image_root)
        yield ds
        del ds


def load_shard(manifest: Any, entry: Any, image_root: str | Path | None = None) -> EntityDataset:
    """One shard of a manifest (``entitykit.shards.Manifest``, ``ShardEntry``), unvalidated, with
    ``path`` = the shard file. Kind ``json``: its size and SHA-256 first
    (``entitykit.shards.verify_shard``), then :meth:`EntityDataset.load`. Kind ``pack``: an HDF5
    pack, read back by ``EntityPack.to_dataset`` (no image folder: its images are inside). The
    manifest's ``split``, when given, is set as the shard's ``info.split``.
    Raises :class:`DatasetError` naming the manifest and shard, or the shard file."""
    from .shards import verify_shard  # noqa: PLC0415

    shard = Path(manifest.shard_path(entry))
    if entry.kind == "json":
        verify_shard(manifest, entry)
        ds = EntityDataset.load(shard, image_root=image_root)
    else:
        from .pack import EntityPack  # noqa: PLC0415  (h5py only when packs are used)

        with EntityPack(shard) as pk:
            ds = pk.to_dataset()
        ds.path = shard
        ds.image_root = Path(image_root) if image_root is not None else None
    if manifest.split is not None:  # the manifest's split is every shard's (merge's train/val rule reads it)
        ds.info["split"] = manifest.split
    return ds


def shard_count_problem(entry: Any, ds: EntityDataset | dict[str, Any]) -> str | None:
    """How a validated shard's counts and id ranges differ from its manifest entry's, or None
    (the manifest's numbers, ``entitykit.shards.shard_counts``, are what readers trust). ``ds``:
    the shard, or its counts already made (``entitykit.shards.counts_of``)."""
    from .shards import shard_counts  # noqa: PLC0415

    found = ds if isinstance(ds, dict) else shard_counts(ds)
    for key in ("images", "entities", "annotations", "image_ids", "annotation_ids"):
        want = getattr(entry, key)
        if want is not None and found[key] != want:
            return f"{key}: the manifest says {want!r}, the shard holds {found[key]!r}"
    return None


def part_annotation_ids(part: str | Path) -> set[Any]:
    """The annotation ids of one shard file (re-read when shards' id ranges overlap)."""
    part = Path(part)
    if part.suffix.lower() in (".h5", ".hdf5"):
        from .pack import EntityPack  # noqa: PLC0415

        with EntityPack(part) as pk:
            return {a["id"] for i in range(len(pk)) for a in pk.annotations(i)}
    return {a.get("id") for a in EntityDataset.load(part).annotations if isinstance(a, dict)}


def new_info(description: str, **extra: Any) -> dict[str, Any]:
    """The ``info`` block of a freshly made dataset: format, version and how it was made.

    No timestamp: the same inputs give a byte-identical file.
    """
    from . import __version__

    info: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "description": description,
        "tool": f"entitykit {__version__}",
    }
    info.update(extra)
    return info


