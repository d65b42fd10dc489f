"""What kind of file is this? The one place ``eval`` decides, from content, what it was handed.

:func:`sniff` looks at a path (file or folder) or an in-memory object and returns a
:class:`FileKind`: the kind's name, the parsed data when it was parsed (so nothing is read
twice), the path, and a human description of what it looks like (top-level type, keys seen,
first record's keys). :func:`diagnose` turns a kind that cannot be used in a role ("pred" or
"gt") into one line saying what the file is, which formats are accepted and, where one exists,
the command that makes it usable.

The compiled reader (``_scan``, C) stays first on the common paths: a predictions file that
starts with ``[`` is read as COCO results columns, a ground-truth file that starts with ``{`` as
an entity dataset (annotations as columns). Only when it gives up is the file parsed by ``json``
(once) and classified.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError, EntityKitError, PredictionError
from ..fileio import read_json
from ..naming import ID_MAPS_JSON
from ..prediction_format import COCO_RESULTS_JSON, PREDICTIONS_FORMAT, PREDICTIONS_JSON
from . import _ahead, _scan

# kinds eval can use
COCO_RESULTS = "coco-results"  # [{image_id, segmentation, score, ...}]
COCO_RESULTS_DICT = "coco-results-dict"  # {images, annotations: [{image_id, segmentation, score}], categories}
ENTITYKIT = "entitykit-predictions"  # predictions.json {"format": "entitykit-predictions"} (+ id maps)
PANOPTIC = "coco-panoptic"  # {images, annotations: [{image_id, file_name, segments_info}]} (+ PNG folder)
ENTITY = "entity-dataset"  # {images, annotations: [{segmentation, ...}] without scores}, one entity category
# kinds eval cannot use, each with its own diagnosis
COCO_INSTANCES = "coco-instances"  # like ENTITY, but categories other than the single entity category
SAM_AMG = "sam-amg"  # SAM automatic mask generator: [{segmentation, predicted_iou, ...}] without image_id
SA1B = "sa1b"  # SA-1B per-image JSON: {image: {...}, annotations: [...]}
ID_MAP_INDEX = "id-map-index"  # id_maps.json written by `entitykit idmaps` / --id-maps
PACK = "entitykit-pack"  # pack.json / .h5 shards of `entitykit pack`
EMPTY = "empty"
NOT_JSON = "not-json"
IMAGE = "image"  # PNG / JPEG
BINARY = "binary"  # HDF5, archives, other non-text
SCALAR = "json-scalar"
FOLDER = "folder"  # a folder without predictions.json
SHARD_MANIFEST = "shard-manifest"  # a sharded dataset's manifest named otherwise than manifest.json
FOLDER_JSON = "folder-predictions-json"  # a folder whose predictions.json is not the entitykit format
MISSING = "missing"
UNKNOWN = "unknown"  # a JSON list / object of no known shape

PRED_KINDS = {COCO_RESULTS: "coco", COCO_RESULTS_DICT: "coco", ENTITYKIT: "entitykit", PANOPTIC: "panoptic"}
GT_KINDS = {ENTITY: "entity", PANOPTIC: "coco-panoptic"}

SAM_KEYS = ("predicted_iou", "stability_score", "point_coords", "crop_box")

PRED_ACCEPTED = (
    "eval reads predictions as: an entitykit predictions folder (predictions.json + id-map PNGs, written by "
    "'entitykit predict'), a COCO results JSON list [{image_id, segmentation: RLE, score}] (or a COCO dict whose "
    "annotations carry a score), or COCO panoptic JSON + its PNG folder (docs/prediction-format.md)")
GT_ACCEPTED = (
    "eval reads ground truth as: an entity dataset JSON (made by 'entitykit convert ...'; one category, "
    "disjoint masks, no scores) or COCO panoptic JSON + its PNG folder")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", IMAGE, "a PNG image"),
    (b"\xff\xd8\xff", IMAGE, "a JPEG image"),
    (b"\x89HDF\r\n\x1a\n", BINARY, "an HDF5 file (an entitykit pack shard?)"),
    (b"\x1f\x8b", BINARY, "a gzip-compressed file (decompress it first: gunzip)"),
    (b"PK\x03\x04", BINARY, "a zip archive (extract it first)"),
)
_WS = re.compile(rb"[ \t\r\n]*")


@dataclass
class FileKind:
    """What a file (or object) is: ``kind`` (one of the names above), ``data`` when it was
    parsed (the JSON, or the compiled reader's columns), ``path`` (for a predictions folder:
    its predictions.json), ``description`` (what it looks like, for messages)."""

    kind: str
    path: Path | None = None
    data: Any = None
    description: str = ""
    detail: dict = field(default_factory=dict)

    @property
    def fmt(self) -> str | None:
        """The prediction-format name ``load_predictions`` uses, or None."""
        return PRED_KINDS.get(self.kind)


# ---------------------------------------------------------------------------------------------
# sniff


def sniff(src: Any, *, role: str = "pred", ahead: _ahead.ReadAhead | None = None) -> FileKind:
    """Decide from content what ``src`` is (a path to a file or folder, a parsed dict / list, or
    an object with ``.images`` / ``.annotations``; a FileKind is returned as it is). ``role``
    ("pred" or "gt") picks which fast reader is tried first; the kind does not depend on it.
    ``ahead``: the file read (and scanned) in the background (``_ahead.start``), used when it is
    this file in this role, else the file is read here. Raises only for unreadable files."""
    if isinstance(src, FileKind):  # sniffed before (api._sniff_ahead)
        return src
    if isinstance(src, (list, dict)):
        return classify(src, None)
    if hasattr(src, "images") and hasattr(src, "annotations"):
        where = getattr(src, "path", None)
        return FileKind(ENTITY, Path(where) if where else None, src, "an entity dataset object")
    if hasattr(src, "buf") and hasattr(src, "score"):  # ape.PredColumns
        return FileKind(COCO_RESULTS, None, src, f"COCO results ({len(src)} predictions)")
    p = Path(src)
    if p.is_dir():
        return _sniff_folder(p, role)
    if not p.exists():
        return FileKind(MISSING, p, None, "not found")
    return _sniff_file(p, role, ahead)


def _sniff_folder(p: Path, role: str) -> FileKind:
    j = p / PREDICTIONS_JSON
    if role == "pred" and j.exists():
        # a folder is the entitykit format (its id maps are read through predictions.json)
        k = _sniff_file(j, role)
        if k.kind == ENTITYKIT:
            return k
        return FileKind(FOLDER_JSON, j, None, k.description, {"inner": k.kind})
    names = sorted(x.name for x in p.iterdir()) if _readable_dir(p) else []
    pngs = [n for n in names if n.lower().endswith(".png")]
    jsons = [n for n in names if n.lower().endswith(".json")]
    if "pack.json" in names or any(n.endswith(".h5") for n in names):
        return FileKind(PACK, p, None, f"an entitykit pack folder ({_count(len(names), 'file')})",
                        {"pngs": pngs, "jsons": jsons})
    parts = []
    if pngs:
        parts.append(f"{_count(len(pngs), 'PNG file')} (e.g. {pngs[0]})")
    if jsons:
        parts.append(f"{_count(len(jsons), 'JSON file')} ({', '.join(jsons[:3])}{', …' if len(jsons) > 3 else ''})")
    other = len(names) - len(pngs) - len(jsons)
    if other or not parts:
        parts.append(_count(other, "other entry" if parts else "entry", "other entries" if parts else "entries"))
    from ..shards import MANIFEST, PROGRESS_DIR  # noqa: PLC0415

    dataset_folder = (p / MANIFEST).is_file() or (p / PROGRESS_DIR).is_dir()  # a sharded dataset or conversion
    where = j if role == "pred" and not dataset_folder else p  # the file an entitykit predictions folder lacks
    return FileKind(FOLDER, where, None, f"a folder holding {' and '.join(parts)}",
                    {"pngs": pngs, "jsons": jsons, "folder": p, "contents": " and ".join(parts)})


def _readable_dir(p: Path) -> bool:
    try:
        next(iter(p.iterdir()), None)
        return True
    except OSError:
        return False


def _sniff_file(p: Path, role: str, ahead: _ahead.ReadAhead | None = None) -> FileKind:
    pre = ahead.take(p, role) if ahead is not None else None  # (bytes, compiled scan), or read here
    if pre is None:
        with open(p, "rb") as f:  # OSError: the CLI boundary names the file
            head = f.read(32)
    else:
        head = bytes(pre[0][:32])
    for magic, kind, what in _MAGIC:
        if head.startswith(magic):
            desc = what
            if magic.startswith(b"\x89PNG") and len(head) >= 24 and head[12:16] == b"IHDR":
                desc += f" ({int.from_bytes(head[16:20], 'big')}×{int.from_bytes(head[20:24], 'big')})"
            return FileKind(kind, p, None, desc, {"png": magic.startswith(b"\x89PNG")})
    if pre is None:
        try:
            raw = _read(p)
        except OSError:
            raise EntityKitError("cannot read the file", p) from None
        scanned = _ahead.NOT_SCANNED  # the compiled reader runs below, if one applies
    else:
        raw, scanned = pre
    start = _WS.match(raw).end()
    if start == len(raw):
        return FileKind(EMPTY, p, None, "an empty file (0 bytes)" if not raw else
                        f"an empty file ({_count(len(raw), 'blank character')}, no JSON)")
    first = raw[start:start + 1]
    if first == b"[" and role == "pred":
        fast = _scan.coco_results(raw, scanned)  # compiled reader: columns, no object per prediction
        if fast is not None:
            return FileKind(COCO_RESULTS, p, fast, f"a COCO results list ({_count(len(fast), 'prediction')})")
    if first == b"{" and role == "gt":
        fast = _scan.entity_file(raw, scanned)
        if fast is not None:
            cats = getattr(fast, "categories", None)
            kind = ENTITY if _entity_categories(cats) else COCO_INSTANCES
            desc = (f"a COCO instances JSON ({_count(len(fast.images), 'image')}, "
                    f"{_count(len(fast.annotations), 'annotation')}{_categories_text(cats)})")
            return FileKind(kind, p, fast, desc)
    try:
        data = json.loads(raw)  # the one parse on the success path
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit integer, ...
        try:  # fileio owns the wording of JSON errors: ask it (the error path only)
            data = read_json(p, "predictions JSON" if role == "pred" else "ground-truth JSON")
        except EntityKitError as e:
            return FileKind(NOT_JSON, p, None, f"{e.problem}; it starts with {_head(raw)}")
        except RecursionError:
            return FileKind(NOT_JSON, p, None, f"JSON nested too deeply to parse; it starts with {_head(raw)}")
        except ValueError as e:
            return FileKind(NOT_JSON, p, None, f"not valid JSON ({' '.join(str(e).split())[:200]}); it starts "
                                               f"with {_head(raw)}")
    return classify(data, p)


_read = _ahead.read_bytes  # the file's bytes in a bytearray (the compiled reader works in it, in place)


def _head(raw: bytes, n: int = 24) -> str:
    try:
        text = raw[:n].decode("utf-8")
    except UnicodeDecodeError:
        return repr(bytes(raw[:n])) + ("…" if len(raw) > n else "")
    return repr(text + ("…" if len(raw) > n else ""))


# ---------------------------------------------------------------------------------------------
# classify parsed JSON


def classify(data: Any, path: Path | None) -> FileKind:
    """The kind of parsed JSON (or an equivalent in-memory object)."""
    if isinstance(data, list):
        return _classify_list(data, path)
    if isinstance(data, dict):
        return _classify_dict(data, path)
    return FileKind(SCALAR, path, data, f"a JSON {_json_type(data)} ({_short(data)}), not a list or an object")


def _classify_list(data: list, path: Path | None) -> FileKind:
    n = len(data)
    if not n:
        return FileKind(COCO_RESULTS, path, data, "an empty JSON list (no predictions)")
    first = data[0]
    if not isinstance(first, dict):
        return FileKind(UNKNOWN, path, data, f"a JSON list of {_count(n, 'item')}; the first is a JSON "
                                             f"{_json_type(first)} ({_short(first)}), not an object")
    desc = f"a JSON list of {_count(n, 'object')}; first object's keys: {_keys(first)}"
    if "image_id" not in first and "segmentation" in first and any(k in first for k in SAM_KEYS):
        return FileKind(SAM_AMG, path, data, desc)
    if "segments_info" in first:
        return FileKind(UNKNOWN, path, data, desc, {"panoptic_annotations": True})
    if any(k in first for k in ("image_id", "segmentation", "score")):
        return FileKind(COCO_RESULTS, path, data, desc)  # item-level problems: ape.prepare names the item
    return FileKind(UNKNOWN, path, data, desc)


def _classify_dict(data: dict, path: Path | None) -> FileKind:
    desc = f"a JSON object with keys {_keys(data)}" if data else "an empty JSON object"
    fmt = data.get("format")
    if fmt == PREDICTIONS_FORMAT:
        n = len(data["images"]) if isinstance(data.get("images"), list) else 0
        return FileKind(ENTITYKIT, path, data, f"an entitykit predictions file ({_count(n, 'image')})")
    if fmt == "entitykit-pack":
        return FileKind(PACK, path, data, "an entitykit pack manifest (pack.json)")
    if fmt == "entitykit-shards":
        return FileKind(SHARD_MANIFEST, path, data, "a sharded dataset's manifest")
    if "value_k" in data and isinstance(data.get("images"), list):
        return FileKind(ID_MAP_INDEX, path, data, f"an id-map index ({desc})")
    images, anns = data.get("images"), data.get("annotations")
    if isinstance(data.get("image"), dict) and isinstance(anns, list) and "images" not in data:
        im = data["image"]
        first = f"; first mask's keys: {_keys(anns[0])}" if anns and isinstance(anns[0], dict) else ""
        return FileKind(SA1B, path, data, f"{desc} (image {im.get('image_id', im.get('id'))!r}, "
                                          f"{_count(len(anns), 'mask')}{first})")
    scored = isinstance(anns, list) and any(isinstance(a, dict) and "score" in a for a in anns)
    if not (isinstance(images, list) and isinstance(anns, list)) and not scored:
        if fmt is not None:
            desc += f" (format {_short(fmt)})"
        return FileKind(UNKNOWN, path, data, desc)
    head = f"{desc} ({_count(len(images), 'image') + ', ' if isinstance(images, list) else ''}" \
           f"{_count(len(anns), 'annotation')}"
    first = anns[0] if anns else None
    if isinstance(first, dict):
        head += f"; first annotation's keys: {_keys(first)}"
    cats = data.get("categories")
    head += _categories_text(cats) + ")"
    if isinstance(first, dict) and "segments_info" in first:
        return FileKind(PANOPTIC, path, data, head.replace("a JSON object", "a COCO panoptic JSON", 1))
    if scored:
        return FileKind(COCO_RESULTS_DICT, path, data, head)
    if anns and not isinstance(first, dict):
        return FileKind(UNKNOWN, path, data, head)
    kind = ENTITY if _entity_categories(cats) else COCO_INSTANCES
    return FileKind(kind, path, data, head)


def _entity_categories(cats: Any) -> bool:
    """No categories, or exactly the single entity category (id 1)."""
    if not cats:
        return True
    return isinstance(cats, list) and len(cats) == 1 and isinstance(cats[0], dict) and cats[0].get("id") == 1


def _categories_text(cats: Any) -> str:
    if not isinstance(cats, list) or not cats:
        return ""
    names = [str(c.get("name", c.get("id"))) if isinstance(c, dict) else _short(c) for c in cats[:4]]
    return f"; {_count(len(cats), 'category', 'categories')}: {', '.join(names)}{', …' if len(cats) > 4 else ''}"


def _keys(d: dict, limit: int = 12) -> str:
    ks = [str(k) for k in list(d)[: limit + 1]]
    return ", ".join(ks[:limit]) + (", …" if len(ks) > limit else "") if ks else "(none)"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(v: Any, n: int = 40) -> str:
    s = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


# ---------------------------------------------------------------------------------------------
# diagnose


def diagnose(kind: FileKind, role: str) -> str:
    """One line: what the file is, why it cannot be used as ``role`` ("pred" / "gt"), what is
    accepted and, where one exists, the command that makes it usable."""
    k, desc = kind.kind, kind.description
    f = str(kind.path) if kind.path is not None else "FILE"
    accepted = PRED_ACCEPTED if role == "pred" else GT_ACCEPTED
    other = "GT" if role == "pred" else "PRED"
    if k == MISSING:
        return f"{'predictions' if role == 'pred' else 'ground truth'} not found"
    if role == "pred":
        if k == ENTITY:
            return (f"this is an entity dataset (ground truth: no scores); pass it as GT, or give predictions — "
                    f"it is {desc}. {accepted}")
        if k == COCO_INSTANCES:
            return (f"this is a COCO instances dataset (ground truth: no scores), not predictions — it is {desc}. "
                    f"To use it as GT, convert it first: entitykit convert entityseg {f} --overlap small-wins "
                    f"-o entities.json, then entitykit eval entities.json PRED. {accepted}")
        if k == SAM_AMG:
            return (f"this is SAM automatic-mask-generator output ({desc}): its masks have no image_id and no "
                    f"score, so they cannot be matched to ground-truth images. To make them an entity dataset "
                    f"(usable as GT): entitykit convert sam {f} --rule score -o entities.json (the image id is "
                    f"the file name's stem). To score SAM as predictions, write a COCO results list instead: "
                    f"each record needs the image_id of its image in the GT and a score (e.g. predicted_iou); "
                    f"SAM's masks overlap, so run eval with --overlap resolve (or allow)")
        if k == SA1B:
            return (f"this is an SA-1B annotation file ({desc}): SAM masks of one image, not predictions "
                    f"eval can match to the GT. To make it an entity dataset (usable as GT): entitykit convert "
                    f"sam {f} --rule score -o entities.json (a folder of them works too), then entitykit eval "
                    f"entities.json PRED. To score SAM masks as predictions, write a COCO results list: each "
                    f"record needs the GT's image_id and a score (e.g. predicted_iou), and --overlap resolve")
    else:
        if k in (COCO_RESULTS, COCO_RESULTS_DICT, ENTITYKIT):
            return (f"these are predictions, not ground truth (they carry scores) — it is {desc}; pass them as "
                    f"PRED and an entity dataset as GT. {accepted}")
        if k == COCO_INSTANCES:
            return (f"this is a COCO instances dataset with categories, not an entity dataset (one category, "
                    f"disjoint masks) — it is {desc}. Convert it first: entitykit convert entityseg {f} "
                    f"--overlap small-wins -o entities.json (COCO instances overlap: small-wins or large-wins "
                    f"decides who owns a shared pixel), then entitykit eval entities.json PRED")
        if k in (SAM_AMG, SA1B):
            what = "SAM automatic-mask-generator output" if k == SAM_AMG else "an SA-1B annotation file"
            return (f"this is {what} ({desc}), not an entity dataset; convert it first: entitykit convert sam "
                    f"{f} --rule score -o entities.json, then entitykit eval entities.json PRED (predictions "
                    f"must name the converted dataset's image ids)")
    if k == ID_MAP_INDEX:
        return (f"this is an id-map index written by 'entitykit idmaps' / --id-maps ({desc}): ground-truth id "
                f"maps, not {'predictions' if role == 'pred' else 'a dataset'}; pass the entity dataset JSON "
                f"it was made from{' as GT' if role == 'pred' else ''}. {accepted}")
    if k == SHARD_MANIFEST:
        from ..shards import MANIFEST, PART_RE  # noqa: PLC0415

        name = kind.path.name if kind.path is not None else ""
        if PART_RE.match(name):
            what = (f"a part manifest of a sharded conversion ({name}): join the parts first, entitykit shards "
                    f"merge {kind.path.parent} -o {kind.path.parent}, then pass that folder")
        else:
            what = f"{desc} under another name than {MANIFEST}: pass the sharded dataset's folder"
        return f"this is {what}{' as GT (it holds no scores)' if role == 'pred' else ''}. {accepted}"
    if k == PACK:
        return (f"this is {desc}: eval reads the entity dataset JSON the pack was made from"
                f"{', as GT' if role == 'pred' else ''}. {accepted}")
    if k == EMPTY:
        tip = "; predictions for no image at all are written as []" if role == "pred" else ""
        return f"this is {desc}{tip}. {accepted}"
    if k == IMAGE:
        if role == "pred" and kind.detail.get("png"):
            return (f"this is {desc}, not a predictions file: id-map PNGs are read through the predictions.json "
                    f"that lists them with a score per id — pass the folder holding both ('entitykit predict' "
                    f"writes it); COCO panoptic PNGs go with their JSON (pass the JSON, and --pred-png-dir for "
                    f"the PNG folder). {accepted}")
        return f"this is {desc}, not a {'predictions file' if role == 'pred' else 'dataset'}. {accepted}"
    if k == BINARY:
        return f"this is {desc}, not JSON. {accepted}"
    if k == NOT_JSON:
        return f"{desc}. {accepted}"
    if k == SCALAR:
        return f"cannot tell the format: {desc}. {accepted}"
    if k == FOLDER:
        if role == "gt":
            return (f"this is {desc}, without manifest.json; ground truth is a JSON file or a sharded dataset's "
                    f"folder. {accepted}")
        folder = kind.detail.get("folder") or kind.path
        from ..shards import conversion_folder_problem, is_sharded  # noqa: PLC0415

        if folder is not None and is_sharded(folder):  # not a folder of predictions: an entity dataset
            return (f"this is a sharded entity dataset (manifest.json: ground truth, no scores); pass it as GT, or "
                    f"give predictions. {accepted}")
        if folder is not None and (why := conversion_folder_problem(folder)):
            return f"this is a sharded conversion's folder, not predictions ({why}). {accepted}"
        tips = []
        jsons = kind.detail.get("jsons") or []
        others = [j for j in jsons if j != ID_MAPS_JSON]
        if COCO_RESULTS_JSON in jsons:
            tips.append(f"to score the COCO results in it, pass {folder / COCO_RESULTS_JSON}")
        elif others:
            tips.append(f"to score a JSON file in it, pass that file (e.g. {folder / others[0]}"
                        + (f" --pred-png-dir {folder}" if kind.detail.get("pngs") else "") + ")")
        if ID_MAPS_JSON in jsons:  # written by `entitykit idmaps`: a dataset's own id maps, nothing to score
            tips.append(f"{ID_MAPS_JSON} is the index 'entitykit idmaps' writes (a dataset's id maps, no scores): "
                        "it is ground truth drawn as PNGs, not predictions")
        elif kind.detail.get("pngs"):
            tips.append("id-map PNGs need a predictions.json listing image_id and a score per id "
                        "('entitykit predict' writes both)")
        tip = ("; " + "; ".join(tips)) if tips else ""
        return (f"not found: the folder holds {kind.detail.get('contents')} but no {PREDICTIONS_JSON}{tip}. "
                f"{accepted}")
    if k == FOLDER_JSON:
        inner = kind.detail.get("inner")
        tip = (f"; to score it as {'COCO results' if PRED_KINDS.get(inner) == 'coco' else 'a file of its own'}, "
               f"pass the file itself: entitykit eval GT {kind.path}") if inner in PRED_KINDS else ""
        return (f"a predictions folder's {PREDICTIONS_JSON} must be an entitykit predictions file "
                f"{{\"format\": \"{PREDICTIONS_FORMAT}\", \"images\": [...]}}; this one is {desc}{tip}. {accepted}")
    if k == UNKNOWN and kind.detail.get("panoptic_annotations"):
        return (f"cannot tell the format: {desc} — like the 'annotations' of a COCO panoptic JSON; pass the whole "
                f"panoptic JSON ({{images, annotations, categories}}) with its PNG folder. {accepted}")
    if k in PRED_KINDS or k in GT_KINDS:  # a usable kind in the other role
        return f"this is {desc}; pass it as {other}. {accepted}"
    return f"cannot tell the format: {desc}. {accepted}"


def refuse(kind: FileKind, role: str) -> EntityKitError:
    """The error to raise for ``kind`` in ``role``: one line naming the file."""
    err = PredictionError if role == "pred" else DatasetError
    return err(diagnose(kind, role), kind.path)
