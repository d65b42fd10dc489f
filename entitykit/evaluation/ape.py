"""The APe engine: pycocotools' evaluate → accumulate → summarize, class-agnostic and exact.

``prepare`` turns ground truth (dicts, or the compiled reader's columns) and predictions (one
representation for every reader: :class:`PredColumns`) into flat arrays; ``evaluate_all`` runs
the compiled per-image kernel (decode, partition check, intersections, greedy matching, PQ
counts); ``accumulate`` (compiled curves) and ``summarize`` (numpy) re-state pycocotools'
``COCOeval.accumulate`` / ``summarize`` with the same float operations, so every number — the
12 summary values and the full precision / recall / scores arrays — is bit-identical to
``COCOeval(iouType="segm")`` with one category (or ``useCats=0``). The one deliberate
difference is documented in ``summarize`` (max-dets in the first number).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import DatasetError, EntityKitError, PredictionError

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNG = np.array([[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], np.float64)
AREA_LBL = ("all", "small", "medium", "large")

STAT_NAMES = (
    "APe", "APe50", "APe75", "APe_s", "APe_m", "APe_l",
    "AR1", "AR10", "AR{max}", "AR_s", "AR_m", "AR_l",
)


def max_dets_for(max_dets: int) -> tuple[int, int, int]:
    """COCO's (1, 10, 100) with the last entry replaced; the small ones never exceed it."""
    if max_dets < 1:
        raise ValueError("max_dets must be at least 1")
    return (min(1, max_dets), min(10, max_dets), int(max_dets))


def stat_names(max_dets: int = 100) -> list[str]:
    md = max_dets_for(max_dets)
    names = list(STAT_NAMES)
    names[6] = f"AR{md[0]}"
    names[7] = f"AR{md[1]}"
    names[8] = f"AR{md[2]}"
    return names


# ---------------------------------------------------------------------------------------------
# Flat inputs


@dataclass
class EvalInputs:
    """Ground truth and predictions as flat arrays, grouped by image (images sorted by id)."""

    img_ids: list
    heights: np.ndarray
    widths: np.ndarray
    sources: list
    g_buf: np.ndarray  # uint8: the GT RLE counts strings
    g_s: np.ndarray  # start / end of each GT's string in g_buf (GT grouped by image, file order within)
    g_e: np.ndarray
    g_img: np.ndarray  # image index per GT
    g_area: np.ndarray  # JSON area (float64), used for the area ranges
    g_crowd: np.ndarray  # uint8
    g_ids: list
    d_buf: np.ndarray
    d_s: np.ndarray
    d_e: np.ndarray
    d_img: np.ndarray
    d_score: np.ndarray
    labels: Any  # how a prediction is named in messages, by its position in the input
    d_pos: np.ndarray = field(default=None)  # index of each prediction in its input order
    # float64 per prediction: the area that decides its S/M/L range when unmatched (pycocotools'
    # loadRes: bbox w*h); NaN = the mask's pixel count. None = every area from the masks. See area_rule.
    d_area_given: np.ndarray | None = None

    def d_label(self, k: int) -> str:
        return self.labels[int(self.d_pos[k])]

    def d_counts(self, k: int) -> bytes:
        return self.d_buf[self.d_s[k] : self.d_e[k]].tobytes()

    @property
    def n_dt(self) -> int:
        return int(self.d_s.shape[0])


def _buffer(strings: list, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One uint8 buffer of str counts; (buf, start, end) with start/end permuted by ``order``.
    A non-ASCII character becomes '?' (one byte, so offsets hold) and fails decoding later."""
    off = _offsets(strings)
    buf = np.frombuffer("".join(strings).encode("ascii", "replace"), np.uint8)
    s, e = off[:-1], off[1:]
    if order is not None:
        s, e = s[order], e[order]
    return buf, s, e


class IndexLabels:
    """Labels "<prefix> [k]" made on demand (no list of a million strings)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __getitem__(self, k: int) -> str:
        return f"{self.prefix} [{k}]"


def _counts_str(seg: Any, h: int, w: int) -> str:
    """A COCO segmentation as compressed-RLE str counts. A str is passed through (the kernel checks its
    runs as it decodes); every other encoding (bytes, uncompressed counts, polygons, binary grids) is
    read and validated by the one mask reader, ``entitykit.masks.read_mask``."""
    if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        return seg["counts"]
    from ..masks import read_mask  # noqa: PLC0415

    return read_mask(seg, h, w)["counts"].decode("ascii")


def _group(img_index: np.ndarray, n_img: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order grouping items by image, and the image start offsets."""
    order = np.argsort(img_index, kind="stable")
    starts = np.zeros(n_img + 1, np.int64)
    np.cumsum(np.bincount(img_index, minlength=n_img), out=starts[1:])
    return order, starts


def _first_dup(values: list):
    seen: set = set()
    return next(v for v in values if v in seen or seen.add(v))


def _columns(items: Sequence, keys: tuple, err, path, labels) -> dict:
    """Columns of a list of dicts; a non-dict item or a missing key is named."""
    if not len(items):
        return {k: [] for k in keys}
    try:
        return {k: [x[k] for x in items] for k in keys}
    except (KeyError, TypeError):
        for i, x in enumerate(items):
            if not isinstance(x, dict):
                raise err("not a JSON object", path, labels(i)) from None
            for k in keys:
                if k not in x:
                    raise err(f"missing '{k}'", path, labels(i)) from None
        raise


def _size_counts(cols: dict, n: int) -> tuple[np.ndarray | None, list | None]:
    """(sizes (n, 2), counts) when every segmentation is an RLE dict with str counts, else (None, None)."""
    segs = cols["segmentation"]
    try:
        sizes = [x["size"] for x in segs]
        counts = [x["counts"] for x in segs]
    except (KeyError, TypeError):
        return None, None
    if set(map(type, counts)) - {str}:
        return None, None
    try:
        arr = np.fromiter(itertools.chain.from_iterable(sizes), np.int64, 2 * n).reshape(n, 2)
    except (TypeError, ValueError):
        return None, None
    return arr, counts


# ---------------------------------------------------------------------------------------------
# Predictions: one representation for every reader


AREA_RULES = ("auto", "mask")
BOX_NONE, BOX_EMPTY, BOX_OK, BOX_BAD = 0, 1, 2, 3  # PredColumns.box_state


@dataclass
class PredColumns:
    """Predictions as columns, in input order: what every reader yields (COCO results read by the
    compiled scanner or by ``json``, an entitykit predictions folder, COCO panoptic).

    ``image_id``: the dataset's image id per prediction (int64 array, or a list when ids are
    strings); ``score`` float64; ``size`` (n, 2) int64 [height, width] of each RLE; ``buf`` uint8
    holding the compressed-RLE counts strings, prediction k's at ``buf[start[k]:end[k]]`` (int64;
    the compiled reader leaves them in the file's own buffer);
    ``labels[k]`` names prediction k in messages. ``box_state`` (uint8, BOX_*; None when no box was
    read) and ``box_wh`` ((n, 2) float64 bbox width, height) feed :func:`apply_area_rule`, which
    sets ``area_given`` (float64, NaN = the mask's area; None = every area from the masks)."""

    image_id: Any
    score: np.ndarray
    size: np.ndarray
    buf: np.ndarray
    start: np.ndarray
    end: np.ndarray
    labels: Any
    box_state: np.ndarray | None = None
    box_wh: np.ndarray | None = None
    area_given: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.score.shape[0])


def _box(b: Any) -> tuple[int, float, float]:
    if isinstance(b, (list, tuple)):
        if not b:
            return BOX_EMPTY, 0.0, 0.0
        if len(b) == 4 and all(isinstance(v, _NUMBER_TYPES) and not isinstance(v, (bool, np.bool_)) for v in b):
            return BOX_OK, float(b[2]), float(b[3])
    return BOX_BAD, 0.0, 0.0


def pred_columns(items: Sequence, labels: Any, path: Any, images: dict) -> PredColumns:
    """Predictions given as dicts ``[{image_id, segmentation: RLE, score, bbox?}]`` (file order) →
    :class:`PredColumns`. ``images``: image id (and alias, e.g. a converted dataset's
    ``source_id``) → the dataset's image dict (id, height, width).

    Checks, each failure a PredictionError naming the item: a JSON object with the three keys;
    ``image_id`` an integer or a string, known to the ground truth; ``score`` a number (bools and
    strings refused: numpy would turn "0.9" and True into numbers); ``segmentation`` a COCO RLE
    ``{size, counts}`` (str counts pass through and the kernel checks their runs; every other
    encoding is read and validated by ``entitykit.masks.read_mask``)."""
    n = len(items)
    cols = _columns(items, ("image_id", "segmentation", "score"), PredictionError, path, labels.__getitem__)
    _check_types(cols["image_id"], _ID_TYPES, "image_id {!r} is not an integer or a string", path, labels)
    _check_types(cols["score"], _NUMBER_TYPES, "score {!r} is not a number", path, labels)
    ims = list(map(images.get, cols["image_id"]))
    if any(im is None for im in ims):
        k = next(k for k, im in enumerate(ims) if im is None)
        raise PredictionError(f"unknown image id {cols['image_id'][k]!r} (not in the ground truth)", path, labels[k])
    image_id = [im["id"] for im in ims]
    if all(type(i) is int for i in image_id):
        image_id = np.fromiter(image_id, np.int64, n)
    score = np.asarray(cols["score"], np.float64) if n else np.zeros(0)
    sizes, counts = _size_counts(cols, n)
    if sizes is None:
        sizes, counts = np.zeros((n, 2), np.int64), []
        for k, (seg, im) in enumerate(zip(cols["segmentation"], ims)):
            h, w = int(im["height"]), int(im["width"])
            if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
                what = "polygons" if isinstance(seg, list) else f"a JSON {type(seg).__name__}"
                raise PredictionError(f"segmentation must be a COCO RLE {{size, counts}} (pycocotools' results "
                                      f"format), got {what}", path, labels[k])
            if not isinstance(seg["size"], (list, tuple)) or list(seg["size"]) != [h, w]:
                raise PredictionError(f"RLE size {seg['size']} differs from the image size [{h}, {w}]", path,
                                      f"{labels[k]} (image {im['id']!r})")
            try:
                counts.append(_counts_str(seg, h, w))
            except EntityKitError as e:
                raise PredictionError(e.problem, path, labels[k]) from None
            sizes[k] = (h, w)
    buf = np.frombuffer("".join(counts).encode("ascii", "replace"), np.uint8)  # non-ASCII: '?', fails decoding
    off = _offsets(counts)
    cols_out = PredColumns(image_id, score, sizes, buf, off[:-1], off[1:], labels)
    if n and isinstance(items[0], dict) and "bbox" in items[0]:  # pycocotools looks at the first result only
        state, w, h = zip(*(_box(x.get("bbox", None)) if "bbox" in x else (BOX_NONE, 0.0, 0.0) for x in items))
        cols_out.box_state = np.array(state, np.uint8)
        cols_out.box_wh = np.stack([np.array(w, np.float64), np.array(h, np.float64)], axis=1)
    return cols_out


def apply_area_rule(cols: PredColumns, rule: str, path: Any = None) -> tuple[str, int]:
    """Which area decides an unmatched prediction's S/M/L range; sets ``cols.area_given``.

    ``rule="auto"`` is pycocotools' ``COCO.loadRes`` (PythonAPI/pycocotools/coco.py): when the
    FIRST result has a non-empty ``bbox``, every result's ``area`` is ``bbox[2] * bbox[3]`` (float64
    product of width and height), else the mask's pixel count (``maskUtils.area``). ``"mask"``:
    always the mask's pixel count. Only COCO results files carry boxes; the other readers leave
    ``box_state`` None, so their areas are the final masks' under either rule.

    A later result without a bbox (or with ``[]``) when the first has one: pycocotools' loadRes
    raises KeyError there, so no reference number exists; entitykit uses that result's mask area
    (NaN in ``area_given``) and returns how many such results there were, for a warning — a bbox is
    optional in the results format, so refusing would make a file that scores under "mask"
    unscoreable under the default.

    Returns ``(applied, n_without_box)``: applied is "bbox" or "mask".

    Raises:
        EntityKitError: an unknown rule.
        PredictionError: under the bbox rule, a bbox that is not four numbers (pycocotools would
            fail on it), or whose width or height is NaN, infinite or negative (pycocotools would
            take the product as the area), naming the result.
    """
    if rule not in AREA_RULES:
        raise EntityKitError(f"unknown area rule {rule!r}; choose one of {AREA_RULES}")
    st = cols.box_state
    cols.area_given = None
    if rule == "mask" or st is None or not len(st) or st[0] in (BOX_NONE, BOX_EMPTY):
        return "mask", 0
    bad = np.flatnonzero(st == BOX_BAD)
    if bad.size:
        raise PredictionError("bbox is not [x, y, width, height] (four numbers); the first result has a bbox, so "
                              "its width × height is each result's area, as in pycocotools' loadRes (area_rule "
                              "'mask' ignores boxes)", path, cols.labels[int(bad[0])])
    wh = cols.box_wh
    wrong = np.flatnonzero((st == BOX_OK) & ~(np.isfinite(wh) & (wh >= 0)).all(axis=1))
    if wrong.size:  # pycocotools would take NaN, ±inf or a negative product as the area
        k = int(wrong[0])
        raise PredictionError(f"bbox width and height must be finite and ≥ 0, got {wh[k, 0]:g} × {wh[k, 1]:g}; "
                              "the first result has a bbox, so its width × height is each result's area, as in "
                              "pycocotools' loadRes (area_rule 'mask' ignores boxes)", path, cols.labels[k])
    area = wh[:, 0] * wh[:, 1]
    missing = st != BOX_OK
    area[missing] = np.nan
    cols.area_given = area
    return "bbox", int(np.count_nonzero(missing))


def prepare(
    images: Sequence[dict],
    annotations: Sequence,
    predictions: PredColumns,
    *,
    gt_path: str | None = None,
    pred_path: str | None = None,
) -> EvalInputs:
    """Validate and flatten. ``predictions``: a :class:`PredColumns` (image ids already the
    dataset's); ``annotations``: dicts, or the compiled reader's columns.

    Raises DatasetError / PredictionError naming the file and item (duplicate or unknown ids,
    RLE sizes that are not their image's, scores that are not finite numbers >= 0)."""
    icols = _columns(images, ("id", "height", "width"), DatasetError, gt_path, lambda i: f"images[{i}]")
    ids = icols["id"]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"duplicate image id {_first_dup(ids)!r}", gt_path)
    try:
        order_i = sorted(range(len(ids)), key=ids.__getitem__)
    except TypeError:
        raise DatasetError("image ids mix types (numbers and strings)", gt_path) from None
    img_ids = [ids[k] for k in order_i]
    idx = {i: k for k, i in enumerate(img_ids)}
    heights = np.array([icols["height"][k] for k in order_i], np.int64)
    widths = np.array([icols["width"][k] for k in order_i], np.int64)
    sources = [images[k].get("source") for k in order_i]
    n_img = len(img_ids)

    # ---- ground truth
    ng = len(annotations)
    if hasattr(annotations, "buf"):  # _scan.AnnotationColumns: read by the compiled reader
        g_buf, g_s, g_e, g_img, g_area, g_crowd, gids = _gt_columns(annotations, img_ids, heights, widths, n_img,
                                                                    gt_path)
    else:
        acols = _columns(annotations, ("id", "image_id", "segmentation", "area"), DatasetError, gt_path,
                         lambda i: f"annotations[{i}]")
        gids = acols["id"]
        if set(map(type, gids)) - {int} or (ng and min(gids) < 1):
            k = next(k for k, g in enumerate(gids) if type(g) is not int or g < 1)
            raise DatasetError(
                f"annotation id {gids[k]!r} is not an integer >= 1 (pycocotools treats a match to id 0 as no match)",
                gt_path, f"annotations[{k}]")
        if len(set(gids)) != ng:
            raise DatasetError(f"duplicate annotation id {_first_dup(gids)}", gt_path)
        g_img = _image_index(acols["image_id"], img_ids)
        if g_img is None:
            k = next(k for k, i in enumerate(acols["image_id"]) if i not in idx)
            raise DatasetError(f"annotation refers to unknown image id {acols['image_id'][k]!r}", gt_path,
                               f"annotation id {gids[k]}") from None
        g_order, _ = _group(g_img, n_img)
        go = g_order.tolist()
        g_img = g_img[g_order]
        gids = [gids[k] for k in go]
        sizes, counts = _size_counts(acols, ng)
        if sizes is not None:
            sizes = sizes[g_order]
            wrong = np.flatnonzero((sizes[:, 0] != heights[g_img]) | (sizes[:, 1] != widths[g_img]))
            if wrong.size:
                k = int(wrong[0])
                raise DatasetError(f"RLE size {sizes[k].tolist()} differs from the image size "
                                   f"[{int(heights[g_img[k]])}, {int(widths[g_img[k]])}]", gt_path,
                                   f"annotation id {gids[k]} (image {img_ids[g_img[k]]!r})")
            g_buf, g_s, g_e = _buffer(counts, g_order)
        else:
            g_counts = []
            for k, im in zip(go, g_img.tolist()):
                seg = acols["segmentation"][k]
                h, w = int(heights[im]), int(widths[im])
                if isinstance(seg, dict) and list(seg.get("size") or []) != [h, w]:
                    raise DatasetError(f"RLE size {seg.get('size')} differs from the image size [{h}, {w}]", gt_path,
                                       f"annotation id {acols['id'][k]} "
                                       f"(image {img_ids[im]!r})")
                try:
                    g_counts.append(_counts_str(seg, h, w))
                except EntityKitError as e:
                    raise DatasetError(e.problem, gt_path, f"annotation id {acols['id'][k]}") from None
            g_buf, g_s, g_e = _buffer(g_counts)
        try:
            g_area = np.array(acols["area"], np.float64)[g_order]
        except (TypeError, ValueError):
            k = next(k for k, a in enumerate(acols["area"]) if not isinstance(a, (int, float)))
            raise DatasetError("annotation area is not a number", gt_path, f"annotation id {acols['id'][k]}") from None
        crowd = [a.get("iscrowd") for a in annotations]
        g_crowd = np.array([1 if c else 0 for c in crowd], np.uint8)[g_order] if ng else np.zeros(0, np.uint8)

    # ---- predictions (one representation: PredColumns)
    p = predictions
    labels = p.labels
    d_img = pred_image_index(p, img_ids, pred_path)
    check_scores(p, pred_path)
    d_order, _ = _group(d_img, n_img)
    d_img = d_img[d_order]
    sizes = p.size[d_order]
    wrong = np.flatnonzero((sizes[:, 0] != heights[d_img]) | (sizes[:, 1] != widths[d_img]))
    if wrong.size:
        k = int(wrong[0])
        raise PredictionError(
            f"RLE size {sizes[k].tolist()} differs from the image size "
            f"[{int(heights[d_img[k]])}, {int(widths[d_img[k]])}]",
            pred_path, f"{labels[int(d_order[k])]} (image {img_ids[d_img[k]]!r})")
    area_given = p.area_given[d_order] if p.area_given is not None else None
    return EvalInputs(img_ids, heights, widths, sources, g_buf, g_s, g_e, g_img, g_area, g_crowd,
                      gids, p.buf, p.start[d_order], p.end[d_order], d_img, p.score[d_order], labels, d_order,
                      area_given)


def pred_image_index(p: PredColumns, img_ids: list, pred_path: Any = None) -> np.ndarray:
    """Each prediction's position in ``img_ids`` (the dataset's image ids, sorted): int64 (n,).
    Raises PredictionError naming the first prediction (input order) whose image id is unknown."""
    d_img = _image_index(p.image_id, img_ids)
    if d_img is None:
        known = set(img_ids)
        ids_l = list(p.image_id.tolist() if isinstance(p.image_id, np.ndarray) else p.image_id)
        k = next(k for k, i in enumerate(ids_l) if i not in known)
        raise PredictionError(f"unknown image id {ids_l[k]!r} (not in the ground truth)", pred_path,
                              p.labels[k]) from None
    return d_img


def check_scores(p: PredColumns, pred_path: Any = None) -> None:
    """Every score a finite number >= 0; else PredictionError naming the first one (input order)."""
    badk = np.flatnonzero(~np.isfinite(p.score) | (p.score < 0))
    if badk.size:
        k = int(badk[0])
        raise PredictionError(f"score {float(p.score[k])!r} is not a finite number >= 0", pred_path, p.labels[k])


class SubsetLabels:
    """The labels of a subset of predictions: ``labels[k]`` of the subset is ``base[index[k]]``."""

    def __init__(self, base: Any, index: np.ndarray):
        self.base, self.index = base, index

    def __getitem__(self, k: int) -> str:
        return self.base[int(self.index[k])]


def pred_subset(p: PredColumns, index: np.ndarray) -> PredColumns:
    """The predictions at ``index`` (int64, ascending: input order is kept) as a PredColumns that
    shares ``p``'s counts buffer; labels and ``area_given`` follow (``apply_area_rule`` is applied
    to the whole input first: pycocotools' rule looks at the first result of the file)."""
    ids = p.image_id[index] if isinstance(p.image_id, np.ndarray) else [p.image_id[k] for k in index.tolist()]
    sub = PredColumns(ids, p.score[index], p.size[index], p.buf, p.start[index], p.end[index],
                      SubsetLabels(p.labels, index))
    if p.area_given is not None:
        sub.area_given = p.area_given[index]
    return sub


def no_offsets(n: int) -> np.ndarray:
    """``n`` zero offsets that take no memory (a read-only view): RLE offsets of inputs whose
    buffers were dropped (see :func:`join_parts`)."""
    return np.broadcast_to(np.zeros(1, np.int64), (n,))


def join_parts(parts: Sequence[tuple[EvalInputs, Sequence[PerImage], np.ndarray]], labels: Any
               ) -> tuple[EvalInputs, list[PerImage]]:
    """Parts of one evaluation, scored separately (a sharded dataset, shard by shard), as the one
    ``(EvalInputs, [PerImage per IoU kind])`` that scoring them together would give, for
    :func:`accumulate` and the per-image tables: images in sorted-id order, GT and predictions
    grouped by image, ``d_sorted`` in pycocotools' concatenation order (images by id, each by score),
    so the stable sort on score breaks ties exactly as for one file (bit-identical curves).

    ``parts``: (inputs, per-image results for each IoU kind, the part's prediction positions in
    the whole input) each. The joined inputs hold no RLE (empty buffers, zero offsets): they are
    for accumulating and reporting, not for the kernel. ``labels``: the whole input's labels.
    Raises DatasetError when image ids mix types (as :func:`prepare` does)."""
    cat = np.concatenate
    img_ids = [i for inp, _, _ in parts for i in inp.img_ids]
    try:
        img_order = np.array(sorted(range(len(img_ids)), key=img_ids.__getitem__), np.int64)
    except TypeError:
        raise DatasetError("image ids mix types (numbers and strings)") from None
    new_of_old = np.empty(len(img_ids), np.int64)
    new_of_old[img_order] = np.arange(len(img_ids))
    img_off = np.cumsum([0] + [len(inp.img_ids) for inp, _, _ in parts])
    g_img = new_of_old[cat([inp.g_img + o for (inp, _, _), o in zip(parts, img_off)] or [np.zeros(0, np.int64)])]
    d_img = new_of_old[cat([inp.d_img + o for (inp, _, _), o in zip(parts, img_off)] or [np.zeros(0, np.int64)])]
    g_perm = np.argsort(g_img, kind="stable")  # GT grouped by image (each part's order within an image)
    d_perm = np.argsort(d_img, kind="stable")
    d_new_of_old = np.empty(len(d_perm), np.int64)
    d_new_of_old[d_perm] = np.arange(len(d_perm))
    ng, nd = len(g_perm), len(d_perm)

    def gt_col(get):
        return cat([get(x) for x in parts])[g_perm] if parts else np.zeros(0)

    def det_col(get):
        return cat([get(x) for x in parts])[d_perm] if parts else np.zeros(0)

    sources_all = [s for inp, _, _ in parts for s in inp.sources]
    given = None
    if any(inp.d_area_given is not None for inp, _, _ in parts):
        given = det_col(lambda x: x[0].d_area_given if x[0].d_area_given is not None
                        else np.full(x[0].n_dt, np.nan))
    joined = EvalInputs(
        [img_ids[k] for k in img_order.tolist()],
        cat([inp.heights for inp, _, _ in parts])[img_order], cat([inp.widths for inp, _, _ in parts])[img_order],
        [sources_all[k] for k in img_order.tolist()],
        np.zeros(0, np.uint8), no_offsets(ng), no_offsets(ng), g_img[g_perm],
        gt_col(lambda x: x[0].g_area).astype(np.float64), gt_col(lambda x: x[0].g_crowd).astype(np.uint8),
        gt_col(lambda x: np.asarray(x[0].g_ids, np.int64)),  # ids are integers >= 1 (prepare checks)
        np.zeros(0, np.uint8), no_offsets(nd), no_offsets(nd), d_img[d_perm],
        det_col(lambda x: x[0].d_score).astype(np.float64), labels,
        det_col(lambda x: x[2][x[0].d_pos]).astype(np.int64), given)
    n_img = len(img_ids)
    g_start = np.zeros(n_img + 1, np.int64)
    np.cumsum(np.bincount(joined.g_img, minlength=n_img), out=g_start[1:])
    d_start = np.zeros(n_img + 1, np.int64)
    np.cumsum(np.bincount(joined.d_img, minlength=n_img), out=d_start[1:])
    d_off = np.cumsum([0] + [inp.n_dt for inp, _, _ in parts])
    pers = []
    for k in range(len(parts[0][1]) if parts else 0):
        def img_col(name, k=k):
            return cat([getattr(x[1][k], name) for x in parts])[img_order]

        # pycocotools' concatenation order: images by id, then each image's predictions by score
        d_sorted = d_new_of_old[cat([x[1][k].d_sorted + o for x, o in zip(parts, d_off)])]
        d_sorted = d_sorted[np.argsort(joined.d_img[d_sorted], kind="stable")]
        pers.append(PerImage(
            parts[0][1][k].max_dets, gt_col(lambda x, k=k: x[1][k].g_parea), det_col(lambda x, k=k: x[1][k].d_area),
            img_col("img_flags"), d_sorted, det_col(lambda x, k=k: x[1][k].d_rank),
            det_col(lambda x, k=k: x[1][k].match), det_col(lambda x, k=k: x[1][k].ign), img_col("pq_tp"),
            img_col("pq_fp"), img_col("pq_fn"), img_col("pq_iou"), gt_col(lambda x, k=k: x[1][k].best_iou_gt),
            g_start, d_start, det_col(lambda x, k=k: x[1][k].d_parea)))
    return joined, pers


def _gt_columns(cols, img_ids, heights, widths, n_img, gt_path):
    """The ground-truth part of ``prepare`` for annotations read as columns."""
    ng = len(cols)
    gids = cols.id
    if ng and gids.min() < 1:
        k = int(np.argmin(gids))
        raise DatasetError(
            f"annotation id {int(gids[k])} is not an integer >= 1 (pycocotools treats a match to id 0 as no match)",
            gt_path, f"annotations[{k}]")
    if np.unique(gids).size != ng:
        raise DatasetError(f"duplicate annotation id {_first_dup(gids.tolist())}", gt_path)
    g_img = _image_index(cols.image_id, img_ids)
    if g_img is None:
        known = set(img_ids)
        k = next(k for k, i in enumerate(cols.image_id.tolist()) if i not in known)
        raise DatasetError(f"annotation refers to unknown image id {int(cols.image_id[k])!r}", gt_path,
                           f"annotation id {int(gids[k])}")
    g_order, _ = _group(g_img, n_img)
    g_img = g_img[g_order]
    gids = gids[g_order]
    sizes = cols.size[g_order]
    wrong = np.flatnonzero((sizes[:, 0] != heights[g_img]) | (sizes[:, 1] != widths[g_img]))
    if wrong.size:
        k = int(wrong[0])
        raise DatasetError(f"RLE size {sizes[k].tolist()} differs from the image size "
                           f"[{int(heights[g_img[k]])}, {int(widths[g_img[k]])}]", gt_path,
                           f"annotation id {int(gids[k])} (image {img_ids[g_img[k]]!r})")
    return (cols.buf, cols.start[g_order], cols.end[g_order], g_img, cols.area[g_order],
            cols.iscrowd[g_order], gids)


_ID_TYPES = (int, str, np.integer)
_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _check_types(values: Sequence, allowed: tuple, text: str, path, labels) -> None:
    """Every value an instance of ``allowed`` and none a bool (a bool is an int to Python, not to
    JSON); else the first offender, named. One pass over the distinct types in the common case."""
    kinds = set(map(type, values))
    if kinds <= {int, float, str} and all(issubclass(t, allowed) for t in kinds):
        return
    ok = {t: issubclass(t, allowed) and not issubclass(t, (bool, np.bool_)) for t in kinds}
    if all(ok.values()):
        return
    k = next(k for k, v in enumerate(values) if not ok[type(v)])
    raise PredictionError(text.format(values[k]), path, labels[k])


def _image_index(ids: list, img_ids: list) -> np.ndarray | None:
    """Position of each id in the sorted image ids, or None if some id is unknown."""
    n = len(ids)
    if isinstance(ids, np.ndarray):
        if not (img_ids and all(type(i) is int for i in (img_ids[0], img_ids[-1]))):
            ids = ids.tolist()
    if img_ids and all(type(i) is int for i in (img_ids[0], img_ids[-1])) and (
            isinstance(ids, np.ndarray) or set(map(type, ids)) <= {int}):
        arr = ids if isinstance(ids, np.ndarray) else np.fromiter(ids, np.int64, n)
        ref = np.array(img_ids, np.int64)
        pos = np.minimum(np.searchsorted(ref, arr), len(ref) - 1)
        return pos if np.array_equal(ref[pos], arr) else None
    idx = {i: k for k, i in enumerate(img_ids)}
    try:
        return np.fromiter(map(idx.__getitem__, ids), np.int64, n)
    except (KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# evaluate (per image, compiled)


@dataclass
class PerImage:
    """Raw per-image output of the kernel (arrays aligned with EvalInputs)."""

    max_dets: tuple
    g_parea: np.ndarray  # int64 pixels per GT
    d_area: np.ndarray  # float64 per prediction: the area deciding its S/M/L range when unmatched
    img_flags: np.ndarray
    d_sorted: np.ndarray
    d_rank: np.ndarray
    match: np.ndarray  # (n_dt, A, T) uint8
    ign: np.ndarray
    pq_tp: np.ndarray
    pq_fp: np.ndarray
    pq_fn: np.ndarray
    pq_iou: np.ndarray
    best_iou_gt: np.ndarray
    g_img_start: np.ndarray
    d_img_start: np.ndarray
    d_parea: np.ndarray = field(default=None)  # int64 pixels per prediction (what the IoU uses)


def _offsets(strings: list, start: int = 0) -> np.ndarray:
    off = np.zeros(len(strings) + 1, np.int64)
    off[0] = start
    np.cumsum(np.fromiter(map(len, strings), np.int64, len(strings)), out=off[1:])
    off[1:] += start
    return off


# Images go to the threads in chunks of n_img / (threads * _CHUNKS_PER_THREAD), first come first
# served. Measured on the 5,000-image set, 2 threads on a shared 2-core machine (median of 4): 8
# chunks per thread 1.63 s, 32: 1.54 s (a thread slowed by other load no longer holds a big last chunk).
_CHUNKS_PER_THREAD = 32


def evaluate_all(inp: EvalInputs, *, max_dets: int = 100, allow_overlap: bool = False, workers: int = 0,
                 bands: tuple | None = None) -> PerImage:
    """Run the compiled per-image kernel (``_kernel.evaluate_images``) over every image.

    ``bands``: None (mask APe), or boundary mode: ``(gb_buf, gb_s, gb_e, db_buf, db_s, db_e)``, one
    band RLE (COCO compressed counts, uint8 buffer + int64 start / end) per GT and per prediction in
    the order of ``inp.g_s`` / ``inp.d_s``; matching then uses min(mask IoU, band IoU) for non-crowd
    GT and the mask crowd IoU for crowd GT (boundary-iou-api's ``computeBoundaryIoU``); area ranges,
    PQ and ``best_iou_gt`` stay mask-based. ``inp.d_area_given`` (float64 per prediction in
    ``inp.d_s`` order, NaN = the mask's area; absent or None = all masks) is the area that decides an
    unmatched prediction's S/M/L range, as pycocotools' ``loadRes`` takes it from ``bbox``.
    Raises DatasetError / PredictionError naming the first malformed RLE (message from
    ``entitykit.masks.runs_problem``); RuntimeError for a malformed band (a bug)."""
    from . import _kernel as K

    md = max_dets_for(max_dets)
    n_img = len(inp.img_ids)
    g_start = np.zeros(n_img + 1, np.int64)
    np.cumsum(np.bincount(inp.g_img, minlength=n_img), out=g_start[1:])
    d_start = np.zeros(n_img + 1, np.int64)
    np.cumsum(np.bincount(inp.d_img, minlength=n_img), out=d_start[1:])
    ng, nd = len(inp.g_s), len(inp.d_s)
    A, T = len(AREA_RNG), len(IOU_THRS)
    out = PerImage(
        md, np.zeros(ng, np.int64), np.zeros(nd, np.float64), np.zeros(n_img, np.int8),
        np.zeros(nd, np.int64), np.zeros(nd, np.int64), np.zeros((nd, A, T), np.uint8),
        np.zeros((nd, A, T), np.uint8), np.zeros(n_img, np.int64), np.zeros(n_img, np.int64),
        np.zeros(n_img, np.int64), np.zeros(n_img, np.float64), np.zeros(ng, np.float64), g_start, d_start,
        np.zeros(nd, np.int64),
    )
    g_status = np.zeros(ng, np.int8)
    d_status = np.zeros(nd, np.int8)
    i64, f64, u8 = np.int64, np.float64, np.uint8
    c = np.ascontiguousarray
    given = getattr(inp, "d_area_given", None)
    if given is not None:
        given = c(given, f64)
    if bands is not None:
        bands = tuple(c(b, t) for b, t in zip(bands, (u8, i64, i64, u8, i64, i64)))
    args = (
        c(inp.g_buf, u8), c(inp.g_s, i64), c(inp.g_e, i64), g_start, c(inp.d_buf, u8), c(inp.d_s, i64),
        c(inp.d_e, i64), d_start, c(inp.heights, i64), c(inp.widths, i64), c(inp.g_area, f64),
        c(inp.g_crowd, u8), c(inp.d_score, f64), AREA_RNG, IOU_THRS, md[-1], bool(allow_overlap),
        out.g_parea, out.d_parea, out.d_area, given, g_status, d_status, out.img_flags, out.d_sorted,
        out.d_rank, out.match, out.ign, out.pq_tp, out.pq_fp, out.pq_fn, out.pq_iou, out.best_iou_gt, bands,
    )
    n_threads = workers if workers and workers > 0 else (os.cpu_count() or 1)
    n_threads = max(1, min(n_threads, n_img // 64 or 1))
    if n_threads == 1:
        K.evaluate_images(0, n_img, *args)
    else:
        # the kernel releases the GIL; images go out in chunks, first come first served
        step = max(16, n_img // (n_threads * _CHUNKS_PER_THREAD))
        _in_threads(lambda lo: K.evaluate_images(lo, min(lo + step, n_img), *args), range(0, n_img, step), n_threads)
    # The kernel checks every RLE's runs as it decodes (the rule of ``entitykit.masks.runs_problem``, at no
    # extra pass); the message of a flagged one comes from that owner.
    bad_g = np.flatnonzero((g_status != K.RLE_OK) & (g_status != K.RLE_BAD_BAND))
    if bad_g.size:
        k = int(bad_g[0])
        i = int(inp.g_img[k])
        why = _runs_message(inp.g_buf[inp.g_s[k] : inp.g_e[k]].tobytes(), int(inp.heights[i]), int(inp.widths[i]))
        raise DatasetError(why, None, f"annotation id {inp.g_ids[k]} (image {inp.img_ids[i]!r})")
    bad_d = np.flatnonzero((d_status != K.RLE_OK) & (d_status != K.RLE_BAD_BAND))
    if bad_d.size:
        k = int(bad_d[0])
        i = int(inp.d_img[k])
        why = _runs_message(inp.d_counts(k), int(inp.heights[i]), int(inp.widths[i]))
        raise PredictionError(why, None, f"{inp.d_label(k)} (image {inp.img_ids[i]!r})")
    if (out.img_flags & K.BAD_BAND).any():
        k = int(np.flatnonzero(out.img_flags & K.BAD_BAND)[0])
        raise RuntimeError(f"image {inp.img_ids[k]!r}: a boundary band is not a valid RLE of the image "
                           "(a bug: bands are made by entitykit.evaluation.boundary from checked masks)")
    return out


def _in_threads(fn, items, n_threads: int) -> None:
    """``fn(item)`` for every item on ``n_threads`` threads, first come first served; the first
    exception is raised here once every thread has stopped (no item is started after it). Plain
    ``threading``: importing ``concurrent.futures`` (with ``logging``) costs ~33 M instructions,
    ~3 % of ``entitykit eval`` on 300 images."""
    import threading  # noqa: PLC0415

    todo = iter(items)
    lock = threading.Lock()
    errors: list = []

    def work() -> None:
        while True:
            with lock:
                item = next(todo, _DONE) if not errors else _DONE
            if item is _DONE:
                return
            try:
                fn(item)
            except BaseException as e:  # noqa: BLE001  (raised in the caller's thread)
                with lock:
                    errors.append(e)

    threads = [threading.Thread(target=work, name=f"entitykit-kernel-{k}", daemon=True) for k in range(n_threads)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # Ctrl-C while waiting: no further item starts
        with lock:
            errors.append(None)
        raise
    if errors:
        raise errors[0]


_DONE = object()


def _runs_message(counts: bytes, height: int, width: int) -> str:
    from ..masks import runs_problem  # noqa: PLC0415

    return runs_problem(counts, height, width) or "malformed RLE counts"


# ---------------------------------------------------------------------------------------------
# accumulate / summarize (numpy, pycocotools' arithmetic)


@dataclass
class Accumulated:
    precision: np.ndarray  # (T, R, 1, A, M), -1 where undefined
    recall: np.ndarray  # (T, 1, A, M)
    scores: np.ndarray  # (T, R, 1, A, M)
    max_dets: tuple
    n_gt: np.ndarray  # (A,) non-ignored GT per area range


def accumulate(inp: EvalInputs, per: PerImage, img_mask: np.ndarray | None = None) -> Accumulated:
    """pycocotools' accumulate over the images selected by ``img_mask`` (all by default)."""
    from . import _kernel as K

    md = per.max_dets
    T, R, A, M = len(IOU_THRS), len(REC_THRS), len(AREA_RNG), len(md)
    precision = -np.ones((T, R, 1, A, M))
    recall = -np.ones((T, 1, A, M))
    scores = -np.ones((T, R, 1, A, M))
    n_img = len(inp.img_ids)
    if img_mask is None:
        img_mask = np.ones(n_img, bool)
    sel_g = img_mask[inp.g_img]
    # detections in concatenation order: images in sorted-id order, each in score order
    order = per.d_sorted
    sel_d = img_mask[inp.d_img[order]]
    order = order[sel_d]
    rank = per.d_rank[order]
    d_scores_all = inp.d_score[order]
    ga = inp.g_area[sel_g]
    gcrowd = inp.g_crowd[sel_g] != 0
    n_gt = np.zeros(A, np.int64)
    # images taking part (pycocotools skips images with neither GT nor detections)
    has_any = (np.bincount(inp.g_img[sel_g], minlength=n_img) + np.bincount(inp.d_img[order], minlength=n_img)) > 0
    if not has_any.any():
        return Accumulated(precision, recall, scores, md, n_gt)
    for a in range(A):
        gt_ig = gcrowd | (ga < AREA_RNG[a, 0]) | (ga > AREA_RNG[a, 1])
        n_gt[a] = np.count_nonzero(gt_ig == 0)
    # pycocotools sorts each cut's detections (rank < max_det) stably on -score; those orders are
    # restrictions of the one stable order of all detections, so one sort serves every cut (the
    # kernel keeps a detection in cut m when its rank < md[m]). Measured on the 5,000-image set
    # (same process, CPU time, min of 5-7): accumulate 0.24 s (a sort and a pass per cut) -> 0.08 s.
    keep = rank < max(md)
    idx, dt_scores, rank = order[keep], d_scores_all[keep], rank[keep]
    inds = np.argsort(-dt_scores, kind="mergesort")
    # precision / recall / scores are C-contiguous (T, R, 1, A, M) / (T, 1, A, M): the kernel writes
    # them in place where n_gt[a] > 0 (pycocotools leaves -1 where there is no ground truth)
    K.accumulate_curves(idx[inds], dt_scores[inds], rank[inds], np.array(md, np.int64), per.match, per.ign, n_gt,
                        REC_THRS, precision, recall, scores)
    return Accumulated(precision, recall, scores, md, n_gt)


def summarize(acc: Accumulated) -> np.ndarray:
    """The 12 COCO numbers, computed with pycocotools' own expressions.

    The one deliberate difference: the first number uses max_dets[2] instead of a hard-coded
    100, so a non-default ``max_dets`` changes every number (identical at the default)."""
    md = acc.max_dets

    def one(ap: int, iou_thr=None, area="all", max_det=md[2]):
        aind = [i for i, lbl in enumerate(AREA_LBL) if lbl == area]
        mind = [i for i, d in enumerate(md) if d == max_det]
        if ap == 1:
            s = acc.precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == IOU_THRS)[0]]
            s = s[:, :, :, aind, mind]
        else:
            s = acc.recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == IOU_THRS)[0]]
            s = s[:, :, aind, mind]
        if len(s[s > -1]) == 0:
            return -1.0
        return float(np.mean(s[s > -1]))

    return np.array([
        one(1), one(1, 0.5), one(1, 0.75), one(1, area="small"), one(1, area="medium"), one(1, area="large"),
        one(0, max_det=md[0]), one(0, max_det=md[1]), one(0, max_det=md[2]),
        one(0, area="small"), one(0, area="medium"), one(0, area="large"),
    ])
