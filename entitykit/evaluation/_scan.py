"""The compiled reader (``_cscan.c``) of the scorer's two big JSON inputs, as columns.

``[{"image_id": <int>, "segmentation": {"size": [h, w], "counts": "<str>"}, "score": <number>,
"bbox": [x, y, w, h]?, ...}, ...]`` (a COCO results list) and an entity dataset's
``"annotations"`` array are read straight into arrays: no Python object per item. The RLE
counts strings stay where they are: the scanner gives each one's (start, end) in the file's own
buffer (a bytearray; escaped ones — ``\\\\`` for a backslash — are unescaped in place once the
caller keeps the result), so no second copy of the file is made. Other keys are checked for JSON
syntax and skipped. Anything else — string image ids, list counts, polygons, a missing or
duplicated key, NaN, an escape other than ``\\\\`` or ``\\/`` in counts, invalid UTF-8, any syntax
error — makes it give up (None, the buffer untouched) and the caller reads the file with
``json``, which also words the errors.
Numbers are converted from their exact JSON text by ``PyOS_string_to_double`` (correctly
rounded, like ``float()``), so the values are json's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import _cscan
from ._ahead import NOT_SCANNED
from .ape import IndexLabels, PredColumns


@dataclass
class AnnotationColumns:
    """The annotations of an entity dataset as columns (file order)."""

    id: np.ndarray  # int64
    image_id: np.ndarray  # int64
    area: np.ndarray  # float64
    iscrowd: np.ndarray  # uint8
    size: np.ndarray  # (n, 2) int64
    buf: np.ndarray  # uint8: the file; annotation k's counts at buf[start[k]:end[k]]
    start: np.ndarray  # int64
    end: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.id.shape[0])


def _writable(raw) -> bytearray:
    return raw if isinstance(raw, bytearray) else bytearray(raw)


def coco_results(raw, scanned=NOT_SCANNED) -> PredColumns | None:
    """A COCO results list (a bytearray, used in place; other bytes-like objects are copied) →
    :class:`~.ape.PredColumns` (labels "result [k]", each bbox's state and (w, h) kept for the area
    rule), or None (give up; ``raw`` untouched). ``scanned``: ``_cscan.results(raw)`` when it was
    run already (``_ahead``; ``raw`` then a bytearray)."""
    if raw is None:
        return None
    buf = _writable(raw)
    out = _cscan.results(buf) if scanned is NOT_SCANNED else scanned
    if out is None:
        return None
    n, img, hw, se, esc, score, box, wh = out
    _cscan.unescape(buf, esc)
    se = np.frombuffer(se, np.int64).reshape(n, 2)
    return PredColumns(np.frombuffer(img, np.int64), np.frombuffer(score, np.float64),
                       np.frombuffer(hw, np.int64).reshape(n, 2), np.frombuffer(buf, np.uint8), se[:, 0], se[:, 1],
                       IndexLabels("result"), np.frombuffer(box, np.uint8), np.frombuffer(wh, np.float64).reshape(n, 2))


def annotations(raw) -> AnnotationColumns | None:
    """An annotations array (bytearray used in place, as :func:`coco_results`) →
    :class:`AnnotationColumns`, or None (give up)."""
    buf = _writable(raw)
    out = _cscan.annotations(buf)
    return None if out is None else _annotation_columns(buf, out)


def _annotation_columns(buf: bytearray, out: tuple) -> AnnotationColumns:
    n, aid, img, hw, se, esc, area, crowd = out
    _cscan.unescape(buf, esc)
    se = np.frombuffer(se, np.int64).reshape(n, 2)
    return AnnotationColumns(np.frombuffer(aid, np.int64), np.frombuffer(img, np.int64),
                             np.frombuffer(area, np.float64), np.frombuffer(crowd, np.uint8),
                             np.frombuffer(hw, np.int64).reshape(n, 2), np.frombuffer(buf, np.uint8),
                             se[:, 0], se[:, 1])


@dataclass
class EntityFile:
    """An entity dataset read by :func:`entity_file`: ``images`` (dicts, parsed by json),
    ``annotations`` (:class:`AnnotationColumns`), ``categories`` (parsed, or None)."""

    images: list
    annotations: AnnotationColumns
    categories: list | None = None


def entity_file(raw, scanned=NOT_SCANNED) -> EntityFile | None:
    """``{"images": [...], "annotations": [...], "categories": ...?, ...}`` with the annotations
    read by the compiled scanner and the (small) images / categories members by json; None when
    the scanner gives up (the caller parses the whole file with json: ``raw`` is then untouched).
    ``raw``: a bytearray, used in place (other bytes-like objects are copied); ``scanned``:
    ``_cscan.entity(raw)`` when it was run already (``_ahead``; ``raw`` then a bytearray)."""
    if raw is None:
        return None
    raw = _writable(raw)
    out = _cscan.entity(raw) if scanned is NOT_SCANNED else scanned
    if out is None:
        return None
    spans = {k.decode("ascii"): (s, e) for k, s, e in out[0]}
    if "images" not in spans or len(spans) != len(out[0]):  # a duplicated key: json keeps the last one
        return None
    try:
        s, e = spans["images"]
        images = json.loads(raw[s:e])
        cats = None
        if "categories" in spans:
            s, e = spans["categories"]
            cats = json.loads(raw[s:e])
    except (ValueError, RecursionError):
        return None
    if not isinstance(images, list) or not all(map(_plain_image, images)):
        return None
    return EntityFile(images, _annotation_columns(raw, out[1]), cats)


def _plain_image(im) -> bool:
    """The common image entry (id an int or a str, positive int height / width, source a str, source_id an
    int or a str); anything else goes to json's path, where the dataset layer's entry rules name it."""
    if not isinstance(im, dict):
        return False
    i, h, w = im.get("id"), im.get("height"), im.get("width")
    s, si = im.get("source"), im.get("source_id")
    return (type(i) in (int, str) and type(h) is int and type(w) is int and h > 0 and w > 0
            and (s is None or type(s) is str) and (si is None or type(si) in (int, str)))
