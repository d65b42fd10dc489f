"""Typed JSON decoding for the two big inputs (COCO results, entity datasets), when msgspec is
installed: it decodes straight into small records and skips unknown keys, ~2.5× faster than
``json`` on COCO-val-scale files. Anything that does not fit the expected shape (polygons, a
missing key, a wrong type, NaN) returns None, and the caller falls back to ``json`` and its own
item-by-item validation, so error messages are the same either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, Union

try:
    import msgspec
except ImportError:  # pragma: no cover - optional accelerator
    msgspec = None

if msgspec is not None:

    class RLE(msgspec.Struct, gc=False):
        size: list[int]
        counts: Union[str, list[int]]

    class Result(msgspec.Struct, gc=False):
        image_id: Union[int, str]
        segmentation: RLE
        score: float

    # constraints are checked by msgspec's C decoder at no extra pass; a file that breaks one falls
    # back to the json path, where the dataset layer's entry rules name the item (predictions.load_gt)
    _Positive = Annotated[int, msgspec.Meta(gt=0)]

    class Image(msgspec.Struct, gc=False):
        id: Union[int, str]
        height: _Positive
        width: _Positive
        source: Optional[str] = None
        source_id: Union[int, str, None] = None  # original id of a renumbered image (converters)

    class Annotation(msgspec.Struct, gc=False):
        id: int
        image_id: Union[int, str]
        segmentation: RLE
        area: float
        iscrowd: Annotated[int, msgspec.Meta(ge=0, le=1)] = 0

    class EntityFile(msgspec.Struct):
        images: list[Image]
        annotations: list[Annotation]
        categories: Optional[list] = None  # formats.sniff tells an entity dataset from COCO instances by it

    class EntityFileRaw(msgspec.Struct):
        images: list[Image]
        annotations: msgspec.Raw  # left as JSON text for the compiled reader
        categories: Optional[list] = None

    _results = msgspec.json.Decoder(list[Result])
    _entities = msgspec.json.Decoder(EntityFile)
    _entities_raw = msgspec.json.Decoder(EntityFileRaw)


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None  # the json fallback reports the problem


def coco_results(raw: bytes):
    """list of Result records, or None."""
    if msgspec is None or raw is None:
        return None
    try:
        return _results.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


_USE_SCAN = True


def entity_file(raw: bytes):
    """An object with .images (records) and .annotations (records, or the compiled reader's
    columns), or None."""
    if msgspec is None or raw is None:
        return None
    try:
        head = _entities_raw.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    from . import _scan

    cols = _scan.annotations(head.annotations) if _USE_SCAN else None
    if cols is not None:
        return _Entities(head.images, cols, head.categories)
    try:
        return _entities.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


class _Entities:
    def __init__(self, images, annotations, categories=None):
        self.images = images
        self.annotations = annotations
        self.categories = categories
