"""The entity dataset format: one COCO-instances JSON with a single category and disjoint masks.

Any COCO tool reads it unchanged (pycocotools, detectron2's ``register_coco_instances``). The
specification is ``docs/entity-format.md``; this module reads, writes, validates and iterates it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .fileio import atomic_path, read_json, write_json
from .masks import ID_MAP_FORMATS, decode_to_id_map, write_id_map_png

FORMAT_NAME = "entitykit-entities"
FORMAT_VERSION = 1
ENTITY_CATEGORY = {"id": 1, "name": "entity", "supercategory": "entity"}

IMAGE_KEYS = ("id", "file_name", "height", "width")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")


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
        """Read an entity JSON. ``image_root`` overrides the image folder recorded in the file."""
        path = Path(path)
        data = read_json(path, "entity dataset")
        return cls.from_coco(data, path=path, image_root=image_root)

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
        id_map, _ = decode_to_id_map(
            [a["segmentation"] for a in anns], range(1, len(anns) + 1), img["height"], img["width"]
        )
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
        self, out_dir: str | Path, fmt: str = "png16", *, overwrite: bool = False, progress: bool = False
    ) -> int:
        """Write one id-map PNG per image (P format) plus ``id_maps.json`` linking values to annotation ids.

        The PNG path mirrors the image's ``file_name`` with a ``.png`` suffix. The folder is
        written atomically. Returns the number of PNGs written.
        """
        if fmt not in ID_MAP_FORMATS:
            raise DatasetError(f"unknown id-map format {fmt!r}; choose one of {ID_MAP_FORMATS}", out_dir)
        from .progress import progress_bar

        groups = self.annotations_by_image()
        index: dict[str, Any] = {"format": fmt, "value_k": "k-th non-crowd annotation of the image", "images": []}
        with atomic_path(out_dir, overwrite=overwrite) as tmp:
            tmp.mkdir()
            with progress_bar(len(self.images), "id maps", enabled=progress) as advance:
                for img in self.images:
                    anns = [a for a in groups[img["id"]] if not a.get("iscrowd")]
                    id_map, _ = decode_to_id_map(
                        [a["segmentation"] for a in anns], range(1, len(anns) + 1), img["height"], img["width"]
                    )
                    rel = Path(img["file_name"]).with_suffix(".png")
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    write_id_map_png(tmp / rel, id_map, fmt)
                    index["images"].append(
                        {"image_id": img["id"], "file_name": rel.as_posix(), "annotation_ids": [a["id"] for a in anns]}
                    )
                    advance()
            write_json(tmp / "id_maps.json", index)
        return len(self.images)


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


