"""What every converter shares: id map → annotations, an ordered worker pool, and assembly.

A converter reads its format into one integer id map per image plus a description of each id
(crowd? thing? which source class?); everything after that is the same for all formats.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..dataset import EntityDataset, is_id, new_info
from ..errors import DatasetError, EntityKitError
from ..masks import encode_id_map, rle_bbox
from ..progress import progress_bar

CROWD_MODES = ("void", "keep")
ANN_ID_STRIDE = 100_000  # sharded conversions: annotation id = input position × this + k (k < this)


@dataclass
class Segment:
    """One id of an id map: what the source says about it."""

    iscrowd: int = 0
    isthing: int | None = None
    source_category: Any = None
    extra: dict[str, Any] | None = None  # more provenance fields copied onto the annotation


@dataclass
class ImageRecord:
    """The image entry a converter produces (its id may be a string; assembly renumbers those)."""

    id: Any
    file_name: str
    height: int
    width: int


@dataclass
class ImageResult:
    image: ImageRecord
    annotations: list[dict[str, Any]] = field(default_factory=list)  # without id / image_id / source
    problems: list[DatasetError] = field(default_factory=list)
    ok: bool = True
    crowd_segments: int = 0
    void_pixels: int = 0
    overlap: dict[str, int] | None = None  # for converters that resolve overlapping masks
    where: str | None = None  # the input file it came from (named when its file_name is refused)

    @classmethod
    def failed(cls, image: ImageRecord, problem: DatasetError) -> ImageResult:
        return cls(image, problems=[problem], ok=False)


@dataclass
class IdMapEntities:
    annotations: list[dict[str, Any]]  # in the order of ``segments``
    crowd_segments: int
    void_pixels: int
    unknown: dict[int, int]  # id in the map but not in ``segments`` → its pixel count (made void)
    missing: list[int]  # id in ``segments`` but absent from the map


def annotations_from_id_map(id_map: np.ndarray, segments: dict[int, Segment], crowd: str) -> IdMapEntities:
    """Entities of an id map, one per described id, in the order of ``segments``.

    Ids of the map missing from ``segments`` become void and are reported; crowd segments become
    void unless ``crowd="keep"``.
    """
    ids, rles, areas = encode_id_map(id_map)
    index = {sid: k for k, sid in enumerate(ids.tolist())}
    keep, missing, crowd_segments = [], [], 0
    for sid, seg in segments.items():
        k = index.get(sid)
        if k is None:
            missing.append(sid)
            continue
        if seg.iscrowd:
            crowd_segments += 1
            if crowd == "void":
                continue
        keep.append((k, seg))
    unknown = {sid: int(areas[k]) for sid, k in index.items() if sid not in segments}
    boxes = rle_bbox([rles[k] for k, _ in keep])
    anns, kept = [], 0
    for (k, seg), box in zip(keep, boxes.tolist()):
        area = int(areas[k])
        kept += area
        ann = {
            "category_id": 1,
            "segmentation": rles[k],
            "area": area,
            "bbox": [int(v) for v in box],
            "iscrowd": int(seg.iscrowd),
        }
        if seg.isthing is not None:
            ann["isthing"] = int(seg.isthing)
        if seg.source_category is not None:
            ann["source_category"] = seg.source_category
        if seg.extra:
            ann.update(seg.extra)
        anns.append(ann)
    return IdMapEntities(anns, crowd_segments, id_map.size - kept, unknown, missing)


class _Owners(dict):
    """``check.Rules.file_names``, remembering the last lookup (the earlier owner of a refused name)."""

    last: Any = None

    def get(self, key: Any, default: Any = None) -> Any:
        self.last = super().get(key, default)
        return self.last


class FileNames:
    """The images of one conversion so far, so that a second image with the same file name is
    refused when converting, by the very rule ``entitykit check`` applies
    (:meth:`entitykit.check.Rules.image`: file names unique, compared case-insensitively; image
    ids unique), naming both input files. Memory: a few entries per image, never per mask."""

    def __init__(self, where_of: Callable[[Any], str | None] | None = None) -> None:
        """``where_of(image id)`` → its input file, when the caller can say (a sharded conversion:
        id = input position + 1); else each image's ``where`` is kept."""
        from ..check import Rules  # noqa: PLC0415  (check imports the dataset layer, not converters)

        self._found: list[str] = []
        self._rules = Rules(lambda item, text: self._found.append(text))
        self._rules.file_names = _Owners()
        self._where_of = where_of
        self._where: dict[Any, str | None] = {}  # image id → its input file (without where_of)

    def add(self, image: dict[str, Any], where: str | None) -> DatasetError | None:
        """Record ``image`` ({id, file_name, height, width}) from the input file ``where``; the
        problem (naming both inputs) when check would refuse it beside the earlier ones, else None."""
        self._found.clear()
        self._rules.begin_part("")  # only the global index (ids, file names) is kept
        id_twice = image["id"] in self._rules.image_part
        self._rules.image(0, {k: image[k] for k in ("id", "file_name", "height", "width")})
        if not self._found:
            if self._where_of is None:
                self._where[image["id"]] = where
            return None
        other = image["id"] if id_twice else (self._rules.file_names.last or (None,))[0]
        first = self._where_of(other) if self._where_of is not None else self._where.get(other)
        text = self._found[0] + (f"; image {other!r} came from {first}" if first else "")
        return DatasetError(text + " (rename one, or convert them separately)", where, f"image {image['id']!r}")


J = TypeVar("J")


def run_ordered(fn: Callable[[J], ImageResult], jobs: list[J], workers: int) -> Iterator[ImageResult]:
    """Results in job order (so output is identical for any worker count); a pool when workers > 1."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    with ordered_pool(workers) as run:
        yield from run(fn, jobs)


@contextlib.contextmanager
def ordered_pool(workers: int) -> Iterator[Callable[[Callable[[J], ImageResult], list[J]], Iterator[ImageResult]]]:
    """A ``run(fn, jobs)`` that yields ``fn(job)`` in job order, on one process pool kept for the
    whole block (``workers`` > 1) or in this process. A sharded conversion calls it once per shard:
    at most one shard's results are ever waiting (memory bounded by one shard)."""
    if workers <= 1:
        yield lambda fn, jobs: map(fn, jobs)
        return
    with multiprocessing.get_context().Pool(workers, initializer=_ignore_sigint) as pool:
        def run(fn: Callable[[J], ImageResult], jobs: list[J]) -> Iterator[ImageResult]:
            if len(jobs) <= 1:
                return map(fn, jobs)
            return pool.imap(fn, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8))))

        yield run


def _ignore_sigint() -> None:
    """Pool workers ignore Ctrl-C: the parent alone handles it (one line, exit 130; leaving the
    pool's block terminates the workers), so no worker prints a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_image_folder(image_root: str | Path | None) -> None:
    """Refuse, before any work, an image folder (``image_root``) that is not a folder: one line
    (:class:`EntityKitError`). None (no image folder recorded) passes; an empty string is refused
    (``Path("")`` would be the current folder)."""
    if image_root is None:
        return
    if isinstance(image_root, str) and image_root == "":
        raise EntityKitError(f"image folder is an empty path ({image_root!r}): give a folder ('.' for the current one)")
    root = Path(image_root)
    if not root.exists():
        raise EntityKitError("image folder not found", root)
    if not root.is_dir():
        raise EntityKitError("image folder is not a folder (give the folder that holds the images)", root)


def with_image_file(res: ImageResult, image_root: str | Path | None) -> ImageResult:
    """``res``, failed with a problem naming its image file when that file under ``image_root`` is
    missing, a folder, not a readable image, or not the size the converter expects: the one rule
    every converter applies to each converted image, as its result arrives (so a bad image file
    stops the run unless ``keep_going``, which records it and skips the image).

    The file is read as :func:`entitykit.images.read_header` reads it (the words ``entitykit
    check`` reports: "image file not found", "is a folder, not an image file", "cannot read
    image: …", the pixel limit): its header only, no pixel decoded. Its size must be the
    record's ``height`` × ``width`` (when both are > 0) as displayed (EXIF orientation applied)
    or as stored: which of the two the masks were drawn on is the readers' choice (``check`` /
    ``train --ignore-exif``), and ``check`` names the orientation when it is the stored one. A
    mismatch says "image is W×H, the source says w×h". Cost over the former existence check (one
    ``stat``), CPU per image, 1000 images: +35 µs (PNG, 24×32 or 480×640), +50-70 µs (JPEG)."""
    if image_root is None or not res.ok:
        return res
    from ..images import read_header, size_problem  # noqa: PLC0415

    rec = res.image
    path = Path(image_root) / rec.file_name
    try:
        header = read_header(path, exif=True, name=path)
    except EntityKitError as e:
        why = e.problem
    else:
        sizes = ((header.height, header.width), (header.stored_height, header.stored_width))
        why = None
        if rec.height > 0 and rec.width > 0 and (rec.height, rec.width) not in sizes:
            why = (f"{size_problem(header, rec.height, rec.width, declared_by='the source')} "
                   "(a resized copy of the image, or another image?)")
    if why is None:
        return res
    return ImageResult(rec, problems=[*res.problems, DatasetError(why, path, f"image {rec.id!r}")],
                       ok=False, where=res.where)


def collect(
    results: Iterable[ImageResult], total: int, label: str, *, keep_going: bool, progress: bool,
    image_root: str | Path | None = None,
) -> list[ImageResult]:
    """Drain results with a progress bar, each image file checked under ``image_root``
    (:func:`with_image_file`); the first problem is raised unless ``keep_going``."""
    out = []
    with progress_bar(total, label, enabled=progress) as advance:
        for res in results:
            res = with_image_file(res, image_root)
            if res.problems and not keep_going:
                raise res.problems[0]
            out.append(res)
            advance()
    return out


def refuse_all_skipped(images_in: int, images: int, problems: Sequence[EntityKitError], n_problems: int,
                       where: str | Path | None) -> None:
    """The rule of a conversion that kept no image: inputs were given (``images_in`` > 0) and every
    one was skipped (``--keep-going``: each problem recorded) — a wrong image folder, a source
    made for other files — so there is nothing to write. Raises :class:`DatasetError` naming the
    input (``where``): "every image was skipped (N problems; first: …)". The one owner for the
    one-file (:func:`assemble`) and the sharded (``_sharded.convert_to_shards``) conversions."""
    if not images_in or images:
        return
    first = f"; first: {problems[0]}" if problems else ""
    raise DatasetError(f"every image was skipped ({n_problems:,} problem{'' if n_problems == 1 else 's'}{first}); "
                       "check the image folder and the source, then convert again", where)


def conversion_input(conversion: dict[str, Any]) -> str | None:
    """The input a converter's ``info.conversion`` record names (its JSON, folder or root), for messages."""
    for key in ("panoptic_json", "annotation_json", "inputs", "root", "semantic_dir"):
        if conversion.get(key):
            return str(conversion[key])
    return None


def assemble(
    results: list[ImageResult],
    *,
    source: str,
    description: str,
    conversion: dict[str, Any],
    images_in: int,
    plan_problems: list[DatasetError] = (),  # type: ignore[assignment]
    image_root: str | Path | None = None,
    positions: range | None = None,
    source_image_ids: bool = False,
    extra_info: dict[str, Any] | None = None,
    file_names: FileNames | None = None,
    keep_going: bool = False,
) -> EntityDataset:
    """Number images and annotations, attach provenance, and record the conversion summary.

    Ids, by default: the source's image ids when every one is an integer (else 1, 2, … in order,
    the source's kept as ``source_id``); annotations 1, 2, … in order. With ``positions`` (the
    position of each result's input among ALL inputs of a sharded conversion, ``results[i]`` ↔
    ``positions[i]``), ids depend only on that position, never on how the inputs were split:
    image id = position + 1 (the source's id kept as ``source_id``), annotation id =
    position × :data:`ANN_ID_STRIDE` + k for its k-th annotation (k = 1, 2, …); with
    ``source_image_ids`` too, the image id is the source's own (an integer, unique: the caller
    checked) and no ``source_id`` is added. Raises :class:`DatasetError` for an image with
    ≥ ``ANN_ID_STRIDE`` annotations in that mode.

    Every image passes :class:`FileNames` (``file_names``: the whole conversion's, for a
    sharded one; else a new one): an image whose file name (or id) another image already has
    raises :class:`DatasetError` naming both input files, or with ``keep_going`` is skipped
    with that problem recorded.

    A whole conversion (no ``positions``: not one shard of a sharded one) that kept none of its
    ``images_in`` images raises :class:`DatasetError` (:func:`refuse_all_skipped`) instead of
    returning an empty dataset.
    """
    if file_names is None:
        file_names = FileNames()
    if positions is not None and len(positions) != len(results):
        raise ValueError(f"{len(positions)} positions for {len(results)} results")
    if source_image_ids and positions is None:
        raise ValueError("source_image_ids needs positions")
    string_ids = (positions is not None and not source_image_ids) or any(
        not isinstance(r.image.id, int) or isinstance(r.image.id, bool) for r in results)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    problems = list(plan_problems)
    things = stuff = unknown_kind = crowd_segments = void = pixels = 0
    overlap: dict[str, int] = {}
    for i, res in enumerate(results):
        problems.extend(res.problems)
        for k, v in (res.overlap or {}).items():
            overlap[k] = overlap.get(k, 0) + v
        if not res.ok:
            continue
        rec = res.image
        if positions is not None:
            image_id = rec.id if source_image_ids else positions[i] + 1
            if len(res.annotations) >= ANN_ID_STRIDE:
                raise DatasetError(f"{len(res.annotations):,} entities: a sharded conversion numbers at most "
                                   f"{ANN_ID_STRIDE - 1:,} per image", res.where or rec.file_name,
                                   f"image {rec.id!r} ({rec.file_name})")
        else:
            image_id = len(images) + 1 if string_ids else rec.id
        image = {"id": image_id, "file_name": rec.file_name, "height": rec.height, "width": rec.width, "source": source}
        refused = file_names.add(image, res.where)
        if refused is not None:
            if not keep_going:
                raise refused
            problems.append(refused)
            continue
        if string_ids:
            image["source_id"] = rec.id
        images.append(image)
        for k, ann in enumerate(res.annotations, 1):
            ann_id = positions[i] * ANN_ID_STRIDE + k if positions is not None else len(annotations) + 1
            annotations.append({"id": ann_id, "image_id": image_id, **ann, "source": source})
            if ann["iscrowd"]:
                continue
            kind = ann.get("isthing")
            if kind is None:
                unknown_kind += 1
            elif kind:
                things += 1
            else:
                stuff += 1
        crowd_segments += res.crowd_segments
        void += res.void_pixels
        pixels += rec.height * rec.width
    if positions is None:  # a whole conversion; a sharded one applies the rule to the whole run
        refuse_all_skipped(images_in, len(images), problems, len(problems), conversion_input(conversion))
    summary = {
        **conversion,
        "images_in": images_in,
        "images": len(images),
        "entities": sum(1 for a in annotations if not a["iscrowd"]),
        "crowd_kept": sum(1 for a in annotations if a["iscrowd"]),
        "things": things,
        "stuff": stuff,
        "unknown_kind": unknown_kind,
        "crowd_segments": crowd_segments,
        "void_fraction": void / pixels if pixels else 0.0,
        "skipped_images": images_in - len(images),
        "problems": [{"path": p.path, "item": p.item, "problem": p.problem} for p in problems],
    }
    if overlap:
        summary["overlap_resolution"] = overlap
    return EntityDataset(
        images=images,
        annotations=annotations,
        info=new_info(description, conversion=summary, **(extra_info or {})),
        image_root=Path(image_root) if image_root is not None else None,
    )


def label_size(path: Path, item: str) -> tuple[int, int, DatasetError | None]:
    """(height, width, None) of a label PNG from its header, or (0, 0, the problem) — planning never
    stops on one bad file: the problem becomes that image's failure (``--keep-going`` skips it)."""
    from ..images import read_header  # noqa: PLC0415

    try:
        header = read_header(path, exif=False, item=item)
    except EntityKitError as e:
        return 0, 0, DatasetError(e.problem, e.path, e.item)
    return header.height, header.width, None


def category_index(categories: Any, where: str) -> dict[Any, dict[str, Any]]:
    """``categories`` (optional) as id → entry; refuses anything but a list of objects with integer or
    string ids (provenance is read from them, so a malformed list must not be silently ignored)."""
    if categories is None:
        return {}
    if not isinstance(categories, list):
        raise DatasetError(f"'categories' must be a list of objects, got {type(categories).__name__}", where,
                           "categories")
    out: dict[Any, dict[str, Any]] = {}
    for k, c in enumerate(categories):
        if not isinstance(c, dict) or not is_id(c.get("id"), integer=False):
            got = c.get("id") if isinstance(c, dict) else c
            raise DatasetError(f"must be an object with an integer or string 'id', got {got!r}", where,
                               f"categories[{k}]")
        out[c["id"]] = c
    return out


def check_crowd_mode(crowd: str) -> None:
    if crowd not in CROWD_MODES:
        raise DatasetError(f"unknown crowd mode {crowd!r}; choose one of {', '.join(CROWD_MODES)}")


def problem_sink(where: str, keep_going: bool) -> tuple[list[DatasetError], Callable[[str, str], None]]:
    """A list of recorded problems and a function that raises (strict) or records (keep going)."""
    problems: list[DatasetError] = []

    def problem(item: str, text: str) -> None:
        err = DatasetError(text, where, item)
        if not keep_going:
            raise err
        problems.append(err)

    return problems, problem


OVERLAP_RULES = ("score", "small-wins", "large-wins", "error")


class OverlapError(ValueError):
    """Masks overlap under the rule "error" (and only that: corrupt runs are another ValueError)."""


@dataclass
class Resolved:
    """Overlapping masks turned into a partition by a declared rule."""

    id_map: np.ndarray  # value i + 1 = mask i (input order); 0 = none
    changed_masks: int  # masks that lost at least one pixel
    dropped_masks: int  # masks that lost every pixel
    changed_pixels: int  # pixels claimed by more than one mask


def resolve_overlaps(
    rles: list[dict[str, Any]], height: int, width: int, rule: str, scores: list[float] | None = None
) -> Resolved:
    """Paint masks so the winner of every contested pixel follows ``rule``.

    ``score``: the highest score owns the pixel; ``small-wins`` / ``large-wins``: by mask area.
    Ties keep input order (the earlier mask wins). ``error`` raises ValueError on any overlap.
    """
    from ..masks import decode_to_id_map, rle_area

    n = len(rles)
    if n == 0:
        return Resolved(np.zeros((height, width), np.int32), 0, 0, 0)
    areas = rle_area(rles)
    if rule == "score":
        if scores is None:
            raise ValueError("rule 'score' needs scores")
        key = np.asarray(scores, np.float64)
    elif rule in ("small-wins", "error"):
        key = -areas.astype(np.float64)
    elif rule == "large-wins":
        key = areas.astype(np.float64)
    else:
        raise ValueError(f"unknown overlap rule {rule!r}; choose one of {OVERLAP_RULES}")
    # Paint from loser to winner: ascending key, and among equals the later input first.
    order = np.lexsort((-np.arange(n), key))
    id_map, overlap = decode_to_id_map([rles[i] for i in order], order + 1, height, width)
    if overlap and rule == "error":
        raise OverlapError(f"masks overlap ({overlap} px claimed twice)")
    if not overlap:
        return Resolved(id_map, 0, 0, 0)
    final = np.bincount(id_map.ravel(), minlength=n + 1)[1:]
    lost = final < areas
    return Resolved(id_map, int(lost.sum()), int((final == 0).sum()), int(overlap))


@dataclass
class RleImageJob:
    """One image whose entities arrive as (possibly overlapping) RLE masks: EntitySeg, SAM."""

    image: ImageRecord
    masks: list[dict[str, Any]]
    segments: list[Segment]
    labels: list[str]  # how to name mask i in a message, e.g. "annotation 17"
    rule: str
    crowd: str
    where: str
    scores: list[float] | None = None
    resolving_rules: tuple[str, ...] = ()  # the rules the caller accepts that resolve overlap (named when rule = error)


def convert_rle_image(job: RleImageJob) -> ImageResult:
    """Check sizes, resolve overlaps by the job's rule, and re-encode the partition as entities."""
    from ..masks import overlapping_pairs

    rec = job.image
    item = f"image {rec.id!r}"
    for mask, label in zip(job.masks, job.labels):
        size = list(mask.get("size", []))
        if size != [rec.height, rec.width]:
            return ImageResult.failed(rec, DatasetError(
                f"{label}: RLE size {size} ≠ the image's [height, width] [{rec.height}, {rec.width}] "
                "(annotations made for another resolution of the image, e.g. a low-res copy?)", job.where, item))
    try:
        res = resolve_overlaps(job.masks, rec.height, rec.width, job.rule, job.scores)
    except OverlapError:  # the masks are valid (read_mask checked their runs): name the first pair
        i, j, n = overlapping_pairs(job.masks)[0]
        return ImageResult.failed(rec, DatasetError(
            f"{job.labels[i]} and {job.labels[j]} overlap by {n} px; choose an overlap rule "
            f"({', '.join(job.resolving_rules or [r for r in OVERLAP_RULES if r != 'error'])})", job.where, item))
    except ValueError as e:  # runs that do not fit the image: never hand them to pycocotools (it can loop)
        return ImageResult.failed(rec, DatasetError(f"cannot paint its masks: {e}", job.where, item))
    ents = annotations_from_id_map(res.id_map, {i + 1: seg for i, seg in enumerate(job.segments)}, job.crowd)
    result = ImageResult(rec, ents.annotations, [], True, ents.crowd_segments, ents.void_pixels, where=job.where)
    result.overlap = {"changed_masks": res.changed_masks, "dropped_masks": len(ents.missing),
                      "contested_pixels": res.changed_pixels}
    return result
