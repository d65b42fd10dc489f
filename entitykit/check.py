"""The rules of the entity format, in one place: every command that opens a dataset applies them.

``entitykit check`` runs all of them and lists every problem; :meth:`EntityDataset.open` runs the
cheap ones (``level="schema"``) or all (``"full"``) and raises :class:`ProblemsError` listing
them, so merge, pack, train, predict, idmaps and info agree on what a valid dataset is.

The rules are split so that a dataset can be validated shard by shard:

- per image (:meth:`Rules.image`): its entry's keys and types, the pixel limit;
- per annotation (:meth:`Rules.annotation`): keys and types, its RLE's size is its image's, the
  counts are a compressed string;
- per image's masks (:meth:`Rules.masks`, ``full``): runs cover height × width, no empty mask,
  ``area`` and ``bbox`` equal the mask's, no two entities overlap (pycocotools' RLE domain, no
  decoding to pixels);
- per image file (:meth:`Rules.image_file`, with ``check_images``): the file exists, is an
  image, and its size as read (EXIF orientation applied, ``entitykit.images``) is the declared one;
- global: image ids, annotation ids and file names unique, annotations name a known image, the
  single entity category. These keep an index that grows with the number of images and
  annotations' ids, never with mask data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from .dataset import ANNOTATION_KEYS, EntityDataset, annotation_entry_problem, image_entry_problem
from .errors import DatasetError, EntityKitError
from .images import read_header, size_problem
from .limits import max_pixels
from .masks import overlapping_pairs, runs_problem
from .progress import progress_bar

LEVELS = ("schema", "full")


@dataclass
class CheckReport:
    """What `check` found: problems (file, item, text) and what it looked at.

    ``images`` / ``annotations``: counted in what was read. For a sharded dataset or a pack,
    ``shards`` is its number of shards and ``shards_counted`` how many of them the counts cover:
    a shard that could not be read (named in ``unread_shards``) or was not reached (the check
    stopped after ``max_problems``) leaves them incomplete (``counts_complete`` False; as a dict,
    ``images`` and ``annotations`` are then None: never partial counts that read as totals)."""

    path: str
    images: int = 0
    annotations: int = 0
    problems: list[DatasetError] = field(default_factory=list)
    checked_image_files: bool = False
    warnings: list[str] = field(default_factory=list)  # not wrong, but worth a look (e.g. unlisted shard files)
    shards: int = 0  # a sharded dataset's or pack's shards (0: one file)
    shards_counted: int = 0  # the shards whose images and annotations are in the counts
    unread_shards: list[str] = field(default_factory=list)  # shard files that could not be read

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def counts_complete(self) -> bool:
        """Whether ``images`` and ``annotations`` are the dataset's totals (every shard read)."""
        return self.shards_counted == self.shards and not self.unread_shards

    def counts_text(self) -> str:
        """The counts as one phrase: "N images, M annotations", or, when incomplete, which shards they
        cover and why the others are missing."""
        counts = f"{self.images:,} images, {self.annotations:,} annotations"
        if self.counts_complete:
            return counts
        why = []
        if self.unread_shards:
            names = ", ".join(self.unread_shards[:3]) + (f" … ({len(self.unread_shards) - 3} more)"
                                                         if len(self.unread_shards) > 3 else "")
            why.append(f"{names} could not be read")
        not_reached = self.shards - self.shards_counted - len(self.unread_shards)
        if not_reached > 0:
            why.append(f"{not_reached:,} not reached: the check stopped early")
        return (f"counts incomplete: {counts} in {self.shards_counted:,} of {self.shards:,} shards "
                f"({'; '.join(why)})")

    def as_dict(self) -> dict[str, Any]:
        complete = self.counts_complete
        return {
            "path": self.path,
            "ok": self.ok,
            "images": self.images if complete else None,
            "annotations": self.annotations if complete else None,
            "counts_complete": complete,
            "unread_shards": list(self.unread_shards),
            "checked_image_files": self.checked_image_files,
            "warnings": list(self.warnings),
            "problems": [{"path": p.path, "item": p.item, "problem": p.problem} for p in self.problems],
        }


class _Full(Exception):
    pass


class Rules:
    """The format's rules, applied item by item; ``problem(item, text)`` receives each violation."""

    def __init__(self, problem: Callable[[str, str], None], *,
                 earlier_ann_ids: Callable[[str], set[Any]] | None = None):
        self.problem = problem
        self.images: dict[Any, dict[str, Any]] = {}  # this part's (shard's) images: its annotations' targets
        self.image_part: dict[Any, str] = {}  # every image id of the dataset → the part (shard) holding it
        self.file_names: dict[str, tuple[Any, bool]] = {}  # lower-cased file_name → (image id, is a copy)
        self.ann_ids: set[Any] = set()  # this part's annotation ids
        self.ann_ranges: list[tuple[int, int, str]] = []  # earlier parts' annotation ids: (min, max, part)
        self.earlier_ann_ids = earlier_ann_ids  # re-reads an earlier part's ids when ranges overlap
        self.part = ""
        self.refused: set[Any] = set()  # images already reported: their annotations are not "unknown"

    def begin_part(self, part: str) -> None:
        """Start the next part (shard) of a dataset: the global index keeps image ids, file names and
        each earlier part's annotation-id range; the per-part tables start empty."""
        self.part = part
        self.images = {}

    def end_part(self) -> None:
        """Close the current part: its annotation ids must not be those of an earlier part.

        Exact, with memory that grows with the number of parts, not of masks: each part leaves
        only its (min, max) id range; when a range meets an earlier one, that earlier part's ids
        are re-read (``earlier_ann_ids``) and compared on the shared range only."""
        ids = [i for i in self.ann_ids if _whole_id(i)]
        self.ann_ids = set()
        if not ids:
            return
        lo, hi = min(ids), max(ids)
        for plo, phi, part in self.ann_ranges:
            if plo > hi or phi < lo or self.earlier_ann_ids is None:
                continue
            a, b = max(lo, plo), min(hi, phi)
            mine = {i for i in ids if a <= i <= b}
            shared = sorted(mine & {i for i in self.earlier_ann_ids(part) if a <= i <= b})
            for i in shared[:5]:
                self.problem(f"annotation {i!r}", f"duplicate annotation id (also in {part})")
            if len(shared) > 5:
                self.problem(f"annotations of {Path(part).name}",
                             f"{len(shared) - 5} more annotation ids also in {part}")
        self.ann_ranges.append((lo, hi, self.part))

    def categories(self, categories: list[Any]) -> None:
        if not any(isinstance(c, dict) and c.get("id") == 1 for c in categories):
            self.problem("categories", "must contain the single entity category {id: 1}")
        if len(categories) > 1:
            self.problem("categories", f"has {len(categories)} categories; an entity dataset has exactly one (id 1)")

    def image(self, i: int, img: Any) -> bool:
        """Schema, limit and uniqueness of one image entry; True when its annotations can be checked."""
        why = image_entry_problem(img, integer_id=True)
        if why:
            self.problem(f"images[{i}]", why)
            return False
        item = f"image {img['id']!r}"
        limit = max_pixels()
        if limit and img["height"] * img["width"] > limit:
            self.problem(item, f"{img['width']}×{img['height']} pixels is over the limit of {limit:,} "
                               "(raise it with entitykit --max-pixels N, before the command)")
            self.refused.add(img["id"])
            return False
        if img["id"] in self.image_part:
            other_part = self.image_part[img["id"]]
            self.problem(item, "duplicate image id" + (f" (also in {other_part})" if other_part != self.part else ""))
            return False
        key = img["file_name"].lower()
        other = self.file_names.get(key)
        if other is None:
            self.file_names[key] = (img["id"], bool(img.get("copies")))
        elif not (img.get("copies") and other[1]):  # a merge's repeated copies share their file
            self.problem(item, f"file_name {img['file_name']!r} is also image {other[0]!r}'s "
                               "(compared case-insensitively)")
        self.images[img["id"]] = img
        self.image_part[img["id"]] = self.part
        return True

    def annotation(self, j: int, ann: Any) -> dict[str, Any] | None:
        """Schema and ids of one annotation; returns its image when its mask can be checked."""
        why = annotation_entry_problem(ann)
        if why:
            self.problem(f"annotations[{j}]", why)
            return None
        item = f"annotation {ann['id']!r} (image {ann['image_id']!r})"
        if ann["id"] < 1:
            self.problem(item, "annotation id must be an integer ≥ 1 (pycocotools treats id 0 as unmatched)")
        elif ann["id"] in self.ann_ids:
            self.problem(item, "duplicate annotation id")
        self.ann_ids.add(ann["id"])
        if ann["category_id"] != 1 or isinstance(ann["category_id"], bool):
            self.problem(item, f"category_id is {ann['category_id']!r}; entities use category 1")
        img = self.images.get(ann["image_id"])
        if img is None:
            if ann["image_id"] in self.image_part:  # a shard holds its own images' annotations
                self.problem(item, f"annotation for an image of another shard ({self.image_part[ann['image_id']]})")
            elif ann["image_id"] not in self.refused:
                self.problem(item, "annotation for an unknown image")
            return None
        seg = ann["segmentation"]
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            self.problem(item, "segmentation must be a COCO RLE {size, counts}")
            return None
        if not isinstance(seg["counts"], str):
            self.problem(item, "RLE counts must be a compressed string (uncompressed lists: convert with entitykit)")
            return None
        if not seg["counts"].isascii():
            self.problem(item, "RLE counts contain non-ASCII characters: corrupt or not COCO RLE")
            return None
        if not isinstance(seg["size"], list) or list(seg["size"]) != [img["height"], img["width"]]:
            self.problem(item, f"RLE size {seg['size']!r} differs from the image's [height, width] "
                               f"[{img['height']}, {img['width']}]")
            return None
        return img

    def masks(self, img: dict[str, Any], anns: list[dict[str, Any]]) -> None:
        """Runs, emptiness, area, bbox and overlap of one image's entities (RLE domain)."""
        good = []
        for a in anns:
            item = f"annotation {a['id']!r} (image {img['id']!r})"
            why = runs_problem(a["segmentation"]["counts"], img["height"], img["width"])
            if why:
                self.problem(item, why)
            else:
                good.append(a)
        if not good:
            return
        rles = [{"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode("ascii")} for a in good]
        areas = mask_utils.area(rles)
        boxes = mask_utils.toBbox(rles)
        for a, area, box in zip(good, areas.tolist(), boxes.tolist()):
            item = f"annotation {a['id']!r} (image {img['id']!r})"
            if area == 0:
                self.problem(item, "empty mask (0 pixels)")
            if a["area"] != area:
                self.problem(item, f"area {a['area']!r} ≠ mask pixel count {area}")
            if not _bbox_equal(a["bbox"], box):
                self.problem(item, f"bbox {a['bbox']!r} ≠ tight mask box {[int(v) for v in box]}")
        if len(rles) < 2 or len(good) < len(anns):
            return
        union = int(mask_utils.area(mask_utils.merge(rles, intersect=False)))
        total = int(areas.sum())
        if union != total:
            pairs = overlapping_pairs(rles)
            detail = "; ".join(f"annotations {good[i]['id']} and {good[j]['id']}: {n} px" for i, j, n in pairs[:5])
            self.problem(f"image {img['id']!r}", f"entities overlap ({total - union} px counted twice): {detail}")

    def image_file(self, ds: EntityDataset, img: dict[str, Any], *, exif: bool = True) -> None:
        """The file exists, is an image, and its size as read is the declared one (the reader's rule)."""
        path = ds.image_path(img)
        item = f"image {img['id']!r}"
        if path is None:
            return
        try:
            header = read_header(path, exif=exif, item=item)
        except EntityKitError as e:
            self.problem(item, f"{e.problem} ({path})" if e.problem != "image file not found" else
                         f"image file not found: {path}")
            return
        why = size_problem(header, img["height"], img["width"], exif=exif)
        if why:
            self.problem(item, f"{path}: {why}")


def _whole_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bbox_equal(bbox: Any, box: list[float]) -> bool:
    if not (isinstance(bbox, list) and len(bbox) == 4):
        return False
    try:
        return all(abs(float(u) - v) <= 1e-6 for u, v in zip(bbox, box))
    except (TypeError, ValueError):
        return False


def validate(ds: EntityDataset, problem: Callable[[str, str], None], *, level: str = "full",
             check_images: bool = False, exif: bool = True, progress: bool = False,
             rules: Rules | None = None) -> None:
    """Apply the rules to a whole in-memory dataset (see the module docstring for what each level does).

    ``rules``: the :class:`Rules` of a sharded dataset's earlier shards (its global index: image
    ids, file names, annotation-id ranges), so that ``ds``, one shard, is checked as a part of the
    whole; by default ``ds`` is the whole dataset. The caller ends the last part (``rules.end_part()``)."""
    if level not in LEVELS:
        raise EntityKitError(f"unknown validation level {level!r}; choose one of {LEVELS}")
    whole = rules is None
    if rules is None:
        rules = Rules(problem)
    rules.begin_part(str(ds.path) if ds.path is not None else "<dataset>")
    rules.categories(ds.categories)
    for i, img in enumerate(ds.images):
        rules.image(i, img)
    per_image: dict[Any, list[dict[str, Any]]] = {k: [] for k in rules.images}
    for j, ann in enumerate(ds.annotations):
        img = rules.annotation(j, ann)
        if img is not None:
            per_image[img["id"]].append(ann)
    if level == "full":
        with progress_bar(len(per_image), "check masks", enabled=progress) as advance:
            for image_id, anns in per_image.items():
                if anns:
                    rules.masks(rules.images[image_id], anns)
                advance()
    if check_images and ds.image_root is not None:
        with progress_bar(len(rules.images), "check image files", enabled=progress) as advance:
            for img in rules.images.values():
                rules.image_file(ds, img, exif=exif)
                advance()
    if whole:
        rules.end_part()


def check_dataset(
    dataset: EntityDataset | str | Path,
    *,
    image_root: str | Path | None = None,
    check_images: bool = True,
    exif: bool = True,
    max_problems: int = 1000,
    progress: bool = False,
) -> CheckReport:
    """Every rule of the format on a dataset: schema, ids, RLE sizes and runs, area/bbox, non-overlap,
    and (``check_images``) each image file as ``train`` and ``pack`` will read it (``exif``: apply
    the EXIF orientation, the default, or read stored pixels). Collects all problems (up to
    ``max_problems``) instead of stopping at the first. Raises only when the file cannot be read
    as JSON at all (or, for a sharded dataset, when its manifest is invalid).

    A pack (``entitykit pack``: a folder with ``pack.json`` or one ``.h5`` shard) is checked for
    integrity (:func:`entitykit.pack.pack_integrity`: shard sizes and SHA-256, structure, every
    image and id map read).

    A sharded dataset (``entitykit.shards``) is checked shard by shard, one in memory at a time:
    each problem names its shard file; a shard that cannot be read (missing, changed since the
    manifest was written, not JSON) is one problem and the check goes on with the next; the
    rules that span shards (unique image ids, file names and annotation ids; annotations of the
    shard's own images) use the global index of :class:`Rules`; each shard's counts must be its
    manifest entry's."""
    from .dataset import is_sharded, load_shard, part_annotation_ids, shard_count_problem  # noqa: PLC0415
    from .pack import is_pack  # noqa: PLC0415

    if not isinstance(dataset, EntityDataset) and is_pack(dataset):
        from .pack import EntityPack, pack_integrity  # noqa: PLC0415

        # a pack's masks are disjoint id maps and were checked by `pack` with these rules; what can
        # go wrong since is the files: each shard's size and SHA-256, its structure, every image read
        report = CheckReport(path=str(dataset), checked_image_files=True)
        try:
            pk = EntityPack(dataset)
        except DatasetError as e:
            report.problems.append(e)
            return report
        with pk:
            report.images = len(pk)
            report.problems = pack_integrity(pk, progress=progress)[:max_problems]
            report.annotations = sum(int(s.ent_off[-1]) for s in pk._shards if s.loaded)
            report.shards = len(pk._shards)
            report.shards_counted = sum(1 for s in pk._shards if s.loaded)
            named = {p.path for p in report.problems}  # a shard not loaded and named by a problem: unreadable
            report.unread_shards = [s.path.name for s in pk._shards if not s.loaded and str(s.path) in named]
        return report
    if isinstance(dataset, EntityDataset) or not is_sharded(dataset):
        ds = EntityDataset.open(dataset, image_root=image_root, validate=None)
        where = str(ds.path) if ds.path is not None else "<dataset>"
        report = CheckReport(path=where, images=len(ds.images), annotations=len(ds.annotations))
        parts = [(where, lambda: ds, None)]
        manifest = None
    else:
        from .shards import read_manifest, unlisted_files  # noqa: PLC0415

        manifest = read_manifest(dataset)
        report = CheckReport(path=str(dataset), shards=len(manifest.shards))
        stray = unlisted_files(manifest)
        if stray:
            shown = ", ".join(stray[:5]) + (f" … ({len(stray) - 5} more)" if len(stray) > 5 else "")
            report.warnings.append(f"{manifest.path}: {len(stray)} shard-like file(s) in the dataset's folder that "
                                   f"the manifest does not list (ignored by every reader): {shown}")
        parts = [(str(manifest.shard_path(e)), lambda e=e: load_shard(manifest, e, image_root), e)
                 for e in manifest.shards]
    current = {"where": report.path}

    def problem(item: str, text: str) -> None:
        report.problems.append(DatasetError(text, current["where"], item))
        if len(report.problems) >= max_problems:
            raise _Full

    rules = Rules(problem, earlier_ann_ids=part_annotation_ids)
    try:
        with progress_bar(len(parts), "check shards", enabled=progress and manifest is not None) as advance:
            for where, load, entry in parts:
                current["where"] = where
                try:
                    part = load()
                except DatasetError as e:  # an unreadable shard: one problem, then the next shard
                    if manifest is None:
                        raise
                    report.unread_shards.append(entry.file)  # the counts lack its images and annotations
                    problem(e.item or "", e.problem) if e.path == where else report.problems.append(e)
                    advance()
                    continue
                if manifest is not None:
                    report.images += len(part.images)
                    report.annotations += len(part.annotations)
                    report.shards_counted += 1
                before = len(report.problems)
                validate(part, problem, level="full", check_images=check_images, exif=exif,
                         progress=progress and manifest is None, rules=rules)
                rules.end_part()
                report.checked_image_files |= check_images and part.image_root is not None
                if entry is not None and len(report.problems) == before:
                    why = shard_count_problem(entry, part)
                    if why:
                        report.problems.append(DatasetError(why, str(manifest.path), f"shard {entry.file}"))
                del part
                advance()
    except _Full:
        report.problems.append(DatasetError(f"stopped after {max_problems} problems", current["where"]))
    return report


__all__ = ["ANNOTATION_KEYS", "CheckReport", "LEVELS", "Rules", "check_dataset", "validate"]
