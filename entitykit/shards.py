"""Sharded entity datasets: a folder of shards plus a small manifest (the format for SA-1B scale).

A sharded dataset is a folder holding ``manifest.json``::

    {"format": "entitykit-shards", "version": 1,
     "shards": [{"file": "shard-00000.json", "kind": "json", "images": 1000, "entities": 98765,
                 "bytes": 51234567, "sha256": "…", ...}, ...],
     "images": 11000000, "entities": 1100000000, "split": null,
     "provenance": {...}, "settings": {...}}

Each ``"json"`` shard is an ordinary entity dataset file (``docs/entity-format.md``: what
:meth:`entitykit.dataset.EntityDataset.open` opens); ``"pack"`` shards are HDF5 packs made by
:mod:`entitykit.pack`. Across the whole dataset image ids, annotation ids and file names are
unique. A shard entry's counts: ``images`` = entries of ``images[]``, ``entities`` = non-crowd
annotations, optional ``annotations`` = every entry of ``annotations[]`` (crowd included; equal to
``entities`` when absent), optional ``image_ids`` / ``annotation_ids`` = ``[min, max]`` of the
shard's ids — disjoint ranges prove global id uniqueness without an index that grows with the
number of masks.

Readers stream: :func:`iter_shard_datasets` opens one shard at a time (memory bounded by one
shard). Writers (:mod:`entitykit.convert`'s sharded conversions) write shards atomically and the
manifest last; the specification and the cluster recipe are ``docs/sharding.md``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import DatasetError, EntityKitError

MANIFEST = "manifest.json"
FORMAT_NAME = "entitykit-shards"
FORMAT_VERSION = 1
KINDS = ("json", "pack")
SHARD_KEYS = ("file", "kind", "images", "entities", "bytes", "sha256")
PROGRESS_DIR = ".progress"  # a sharded conversion's completion records and settings
PART_RE = re.compile(r"^part-(\d+)-of-(\d+)\.json$")  # one machine's part manifest (convert … --shard K/N)


@dataclass
class ShardEntry:
    """One shard of a manifest. ``file``: a path relative to the manifest's folder (POSIX, no
    ``..``); ``bytes``/``sha256``: the file's size and SHA-256 hex digest; ``annotations``: every
    annotation entry (None: same as ``entities``); ``image_ids``/``annotation_ids``: [min, max]
    or None (an empty shard, or not recorded); ``extra``: any other keys, kept as they are."""

    file: str
    kind: str
    images: int
    entities: int
    bytes: int
    sha256: str
    annotations: int | None = None
    image_ids: list[int] | None = None
    annotation_ids: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in SHARD_KEYS}
        for k in ("annotations", "image_ids", "annotation_ids"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d.update(self.extra)
        return d


@dataclass
class Manifest:
    """A validated manifest. ``root``: the folder its shard paths are relative to."""

    root: Path
    shards: list[ShardEntry]
    images: int
    entities: int
    split: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / MANIFEST

    def shard_path(self, entry: ShardEntry) -> Path:
        return self.root / entry.file

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready manifest (key order fixed: the same manifest gives the same bytes)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "shards": [s.as_dict() for s in self.shards],
            "images": self.images,
            "entities": self.entities,
            "split": self.split,
            "provenance": self.provenance,
            "settings": self.settings,
            **self.extra,
        }


def manifest_path(path: str | Path) -> Path:
    """The manifest file of ``path`` (a sharded dataset's folder or its manifest file itself)."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def is_sharded(path: str | Path) -> bool:
    """True for a folder holding ``manifest.json``, or for a file named ``manifest.json`` (cheap:
    nothing is read)."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.name == MANIFEST and path.is_file()


def folder_problem(path: str | Path) -> str:
    """Why the folder ``path`` (without ``manifest.json``) is not a dataset yet, and what to run:
    the one-line text of the error every reader raises for it.

    Part manifests (``part-K-of-N.json``) present → which parts, and ``entitykit shards merge``
    (parts of several N → the N values and which part files to remove first);
    a conversion's records (``.progress/``) → how many shards are finished of how many, and
    ``--resume``; anything else → that it holds no ``manifest.json``. Reads only file names and
    the small settings file."""
    folder = Path(path)
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError as e:
        return f"cannot list the folder: {e.strerror or e}"
    return _conversion_text(folder, names) or (
        f"a folder without {MANIFEST}: not an entity dataset (give an entity JSON file or a sharded dataset's folder)")


def _conversion_text(folder: Path, names: list[str]) -> str | None:
    """:func:`folder_problem`'s text for a folder a sharded conversion left without a manifest
    (``names``: its entries): part manifests, or ``.progress/`` records; None for any other folder."""
    parts: dict[int, set[int]] = {}
    for name in names:
        if m := PART_RE.match(name):
            parts.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if len(parts) > 1:  # parts of two splits (--shard K/3, then K/2 …): merge refuses the mix
        complete = [n for n in sorted(parts) if len(parts[n]) == n]
        listed = "; ".join(f"N={n}: {', '.join(f'part-{k}-of-{n}.json' for k in sorted(parts[n]))}"
                           for n in sorted(parts))
        if len(complete) == 1:
            n = complete[0]
            stale = [f"part-{k}-of-{m}.json" for m in sorted(parts) if m != n for k in sorted(parts[m])]
            return (f"part manifests of different splits here ({listed}), not merged (no {MANIFEST}): all {n} parts "
                    f"of --shard K/{n} are here; remove the stale {', '.join(stale)}, then run entitykit shards "
                    f"merge {folder} -o {folder}")
        return (f"part manifests of different splits here ({listed}), not merged (no {MANIFEST}): one conversion "
                f"has one N; remove the part files of the split you abandoned, finish the other (convert … --shard "
                f"K/N --resume), then run entitykit shards merge {folder} -o {folder}")
    if parts:
        n = max(parts, key=lambda k: len(parts[k]))
        have = sorted(parts[n])
        if len(have) == n:
            return (f"all {n} parts of a sharded conversion here, not merged (no {MANIFEST}): run "
                    f"entitykit shards merge {folder} -o {folder}")
        return (f"part{'s' if len(have) > 1 else ''} {', '.join(map(str, have))} of {n} here, not merged (no "
                f"{MANIFEST}): once all {n} are finished (convert … --shard K/{n} --resume), run entitykit shards "
                f"merge FOLDERS-OF-THE-{n}-PARTS -o {folder}")
    progress = folder / PROGRESS_DIR
    if progress.is_dir():
        done = len(list(progress.glob("shard-*.json")))
        total = None
        command = "the same convert command"
        settings = sorted(progress.glob("settings*.json"))
        try:
            data = json.loads(settings[0].read_text("utf-8")) if settings else {}
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict):
            if _whole(data.get("input_files")) and _whole(data.get("shard_images"), 1):
                total = -(-data["input_files"] // data["shard_images"])
            if isinstance(data.get("converter"), str) and isinstance(data.get("inputs"), str):
                command = f"entitykit convert {data['converter']} {data['inputs']} … -o {folder}"
        if total is not None and done >= total:  # every shard finished, the manifest not (yet, or lost)
            return (f"a conversion with all {total} shards finished but no {MANIFEST} (interrupted before writing "
                    f"it, or it was removed): run {command} --resume (with its first options) to write it")
        count = f"{done} of {total} shards" if total is not None else f"{done} shards finished"
        return f"unfinished conversion ({count}; no {MANIFEST}): run {command} --resume (with its first options)"
    return None


def conversion_folder_problem(path: str | Path) -> str | None:
    """:func:`folder_problem`'s text when ``path`` is a folder that a sharded conversion left
    without a manifest (part manifests, or ``.progress/`` records), else None: for readers that
    word other folders their own way (eval's ground truth)."""
    folder = Path(path)
    try:
        if not folder.is_dir() or (folder / MANIFEST).is_file():
            return None
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return None
    return _conversion_text(folder, names)


def _whole(v: Any, minimum: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def safe_relative(name: Any) -> str | None:
    """Why ``name`` is not a shard path inside the manifest's folder, or None (the path rule:
    relative, POSIX separators, no ``..``, no empty or hidden-root parts)."""
    if not isinstance(name, str) or not name or "\0" in name:
        return f"must be a non-empty file name, got {name!r}"
    if "\\" in name:
        return f"{name!r}: use / as the separator"
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("~") or (len(name) > 1 and name[1] == ":"):
        return f"{name!r} is absolute; shard paths are relative to the manifest's folder"
    if any(part in ("..", "") for part in name.split("/")) or name.endswith("/"):
        return f"{name!r} escapes the manifest's folder (no '..' or empty parts)"
    if p.name == MANIFEST:
        return f"{name!r} is the manifest itself"
    return None


def _entry(k: int, raw: Any, where: str, root: Path, *, check_files: bool) -> ShardEntry:
    item = f"shards[{k}]"
    if not isinstance(raw, dict):
        raise DatasetError(f"must be an object with keys {', '.join(SHARD_KEYS)}, got {type(raw).__name__}", where, item)
    missing = [key for key in SHARD_KEYS if key not in raw]
    if missing:
        raise DatasetError(f"missing keys: {', '.join(missing)}", where, item)
    why = safe_relative(raw["file"])
    if why:
        raise DatasetError(why, where, item)
    item = f"shards[{k}] ({raw['file']})"
    if raw["kind"] not in KINDS:
        raise DatasetError(f"unknown kind {raw['kind']!r}; choose one of {', '.join(KINDS)}", where, item)
    for key in ("images", "entities", "bytes"):
        if not _whole(raw[key]):
            raise DatasetError(f"{key} must be a whole number ≥ 0, got {raw[key]!r}", where, item)
    if "annotations" in raw and not (_whole(raw["annotations"]) and raw["annotations"] >= raw["entities"]):
        raise DatasetError(f"annotations must be a whole number ≥ entities ({raw['entities']}), got "
                           f"{raw['annotations']!r}", where, item)
    digest = raw["sha256"]
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise DatasetError(f"sha256 must be 64 lowercase hex digits, got {digest!r}", where, item)
    ranges: dict[str, list[int] | None] = {}
    for key in ("image_ids", "annotation_ids"):
        r = raw.get(key)
        if r is not None and not (isinstance(r, list) and len(r) == 2 and all(_whole(v, 1) for v in r) and r[0] <= r[1]):
            raise DatasetError(f"{key} must be [min, max] whole numbers ≥ 1, got {r!r}", where, item)
        ranges[key] = r
    if check_files:
        target = root / raw["file"]
        resolved_root = root.resolve()
        try:
            inside = resolved_root in target.resolve().parents
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            raise DatasetError("escapes the manifest's folder (through a symbolic link)", where, item)
        try:
            size = target.stat().st_size
        except FileNotFoundError:
            raise DatasetError("shard file is missing", where, item) from None
        except OSError as e:
            raise DatasetError(f"cannot read the shard file: {e.strerror or e}", where, item) from None
        if not target.is_file():
            raise DatasetError("is not a file", where, item)
        if size != raw["bytes"]:
            raise DatasetError(f"shard file has {size:,} bytes, the manifest says {raw['bytes']:,} (changed or "
                               "truncated since it was written)", where, item)
    extra = {key: v for key, v in raw.items()
             if key not in SHARD_KEYS and key not in ("annotations", "image_ids", "annotation_ids")}
    return ShardEntry(raw["file"], raw["kind"], raw["images"], raw["entities"], raw["bytes"], digest,
                      raw.get("annotations"), ranges["image_ids"], ranges["annotation_ids"], extra)


def manifest_from_dict(data: Any, root: str | Path, *, where: str | None = None, check_files: bool = True) -> Manifest:
    """Validate a parsed manifest (see the module docstring) whose shard paths are relative to ``root``.

    ``check_files``: also require each shard file to exist inside ``root`` with the recorded size
    (the SHA-256 is checked when a shard is opened, :func:`verify_shard`). Raises
    :class:`DatasetError` naming the file, the item and the problem: unknown format or version, a
    missing key, a shard path escaping the folder, a missing or resized shard file, a count that
    differs from the sum of the shards', a file listed twice, overlapping id ranges."""
    root = Path(root)
    where = where or str(root / MANIFEST)
    if not isinstance(data, dict):
        raise DatasetError(f"a shards manifest must be a JSON object, got {type(data).__name__}", where)
    if data.get("format") != FORMAT_NAME:
        raise DatasetError(f"format is {data.get('format')!r}, expected {FORMAT_NAME!r} (not a sharded dataset "
                           "manifest)", where, "format")
    if data.get("version") != FORMAT_VERSION:
        raise DatasetError(f"version {data.get('version')!r} is not supported (this entitykit reads version "
                           f"{FORMAT_VERSION}; a newer entitykit wrote it?)", where, "version")
    if not isinstance(data.get("shards"), list):
        raise DatasetError("missing or non-list 'shards'", where, "shards")
    for key in ("images", "entities"):
        if not _whole(data.get(key)):
            raise DatasetError(f"{key} must be a whole number ≥ 0, got {data.get(key)!r}", where, key)
    split = data.get("split")
    if split is not None and (not isinstance(split, str) or not split):
        raise DatasetError(f"split must be a non-empty string or null, got {split!r}", where, "split")
    for key in ("provenance", "settings"):
        if not isinstance(data.get(key, {}), dict):
            raise DatasetError(f"{key} must be an object, got {type(data[key]).__name__}", where, key)
    seen: dict[str, int] = {}
    for k, raw in enumerate(data["shards"]):
        key = raw.get("file") if isinstance(raw, dict) else None
        if isinstance(key, str) and key.lower() in seen:
            raise DatasetError(f"lists the file {key!r} again (also shards[{seen[key.lower()]}]; compared "
                               "case-insensitively)", where, f"shards[{k}]")
        if isinstance(key, str):
            seen[key.lower()] = k
    shards = [_entry(k, raw, where, root, check_files=check_files) for k, raw in enumerate(data["shards"])]
    for key in ("images", "entities"):
        total = sum(getattr(s, key) for s in shards)
        if total != data[key]:
            raise DatasetError(f"says {data[key]:,} {key} but its shards hold {total:,}", where, key)
    for key in ("image_ids", "annotation_ids"):
        spans = sorted((getattr(s, key)[0], getattr(s, key)[1], s.file) for s in shards if getattr(s, key))
        for (lo1, hi1, f1), (lo2, hi2, f2) in zip(spans, spans[1:]):
            if lo2 <= hi1:
                raise DatasetError(f"{key} ranges of {f1} [{lo1}, {hi1}] and {f2} [{lo2}, {hi2}] overlap (ids must "
                                   "be unique across shards)", where, key)
    extra = {k: v for k, v in data.items()
             if k not in ("format", "version", "shards", "images", "entities", "split", "provenance", "settings")}
    return Manifest(root, shards, data["images"], data["entities"], split, dict(data.get("provenance") or {}),
                    dict(data.get("settings") or {}), extra)


def read_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Read and validate the manifest of a sharded dataset (``path``: its folder or its manifest).
    Raises :class:`DatasetError` (one line: file, item, problem) — see :func:`manifest_from_dict`."""
    from .fileio import read_json  # noqa: PLC0415

    mpath = manifest_path(path)
    try:
        data = read_json(mpath, "shards manifest")
    except DatasetError:
        raise
    except EntityKitError as e:
        raise DatasetError(e.problem, e.path, e.item) from None
    return manifest_from_dict(data, mpath.parent, where=str(mpath), check_files=check_files)


def write_manifest(folder: str | Path, manifest: Manifest | dict[str, Any], *, name: str = MANIFEST) -> Path:
    """Write ``manifest`` (validated first, shard files included) as ``folder/name`` atomically
    (:func:`entitykit.fileio.atomic_path`), indented, keys in a fixed order: the same manifest gives
    the same bytes. Returns the path written. Raises :class:`DatasetError` for an invalid manifest."""
    from .fileio import atomic_path  # noqa: PLC0415

    folder = Path(folder)
    data = manifest.as_dict() if isinstance(manifest, Manifest) else manifest
    manifest_from_dict(data, folder, where=str(folder / name))
    path = folder / name
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(manifest_text(data))
    return path


SHARD_SUFFIXES = (".json", ".h5")  # the files a shard can be (KINDS: an entity JSON or a pack's HDF5 shard)


def unlisted_files(manifest: Manifest) -> list[str]:
    """Shard-like files (``.json``/``.h5``) in the folders that hold ``manifest``'s shards which the
    manifest does not list: left by an earlier run, copied in by hand, or a shard whose entry was
    lost. Readers ignore them (a dataset is what its manifest lists), so they are a warning for
    ``check``, not a problem. The manifest itself, part manifests (``part-K-of-N.json``), ``.progress/``
    and temporary files (names starting with ``.``) are not listed. Returns paths relative to the
    manifest's folder, sorted."""
    listed = {s.file for s in manifest.shards}
    folders = {(manifest.root / s.file).parent for s in manifest.shards} | {manifest.root}
    found = []
    for folder in folders:
        try:
            children = list(folder.iterdir())
        except OSError:
            continue
        for f in children:
            if (f.suffix.lower() not in SHARD_SUFFIXES or f.name.startswith(".") or f.name == MANIFEST
                    or PART_RE.match(f.name) or not f.is_file()):
                continue
            rel = f.relative_to(manifest.root).as_posix()
            if rel not in listed:
                found.append(rel)
    return sorted(found)


def manifest_text(data: dict[str, Any]) -> str:
    """The manifest as written: one key per line, one shard entry per line (compact, diffable)."""
    def dumps(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))

    lines = []
    for key, value in data.items():
        if key == "shards":
            body = ",\n".join(f"  {dumps(s)}" for s in value)
            lines.append(f' "shards": [\n{body}\n ]' if value else ' "shards": []')
        else:
            lines.append(f" {dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (:func:`entitykit.merge.file_digest`, the one owner)."""
    from .merge import file_digest  # noqa: PLC0415

    return file_digest(Path(path))


def verify_shard(manifest: Manifest, entry: ShardEntry) -> None:
    """Raise :class:`DatasetError` when the shard file's size or SHA-256 differs from the manifest's."""
    path = manifest.shard_path(entry)
    item = f"shard {entry.file}"
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DatasetError(f"cannot read the shard file: {e.strerror or e}", str(manifest.path), item) from None
    if size != entry.bytes:
        raise DatasetError(f"shard file has {size:,} bytes, the manifest says {entry.bytes:,}", str(manifest.path), item)
    if file_sha256(path) != entry.sha256:
        raise DatasetError("shard file's SHA-256 differs from the manifest's (changed or corrupt since it was "
                           "written)", str(manifest.path), item)


def shard_counts(ds: Any) -> dict[str, Any]:
    """The counts a manifest records for one opened JSON shard (an :class:`EntityDataset`):
    images, entities (non-crowd), annotations, image_ids and annotation_ids ([min, max] or None)."""
    return counts_of([img["id"] for img in ds.images], [a["id"] for a in ds.annotations],
                     [a.get("iscrowd") for a in ds.annotations])


def counts_of(image_ids: Sequence[Any], annotation_ids: Sequence[Any], iscrowd: Sequence[Any]) -> dict[str, Any]:
    """:func:`shard_counts` of a shard given as its image ids, annotation ids and iscrowd flags
    (any truthy flag is a crowd region, not an entity)."""
    img_ids, ann_ids = list(image_ids), list(annotation_ids)
    return {
        "images": len(img_ids),
        "entities": sum(1 for c in iscrowd if not c),
        "annotations": len(ann_ids),
        "image_ids": [min(img_ids), max(img_ids)] if img_ids else None,
        "annotation_ids": [min(ann_ids), max(ann_ids)] if ann_ids else None,
    }


def open_shard(manifest: Manifest, entry: ShardEntry, *, validate: str | None = "schema", verify: bool = True,
               image_root: str | Path | None = None) -> Any:
    """One JSON shard as an :class:`~entitykit.dataset.EntityDataset`, opened (and validated at level
    ``validate``) by :meth:`EntityDataset.open`, the one owner of the format's rules; ``verify``
    checks size and SHA-256 first (:func:`verify_shard`), and the counts and id ranges found must
    be the manifest's. Raises :class:`DatasetError` (or ``ProblemsError``) naming the shard."""
    from .dataset import EntityDataset  # noqa: PLC0415

    where = str(manifest.path)
    item = f"shard {entry.file}"
    if entry.kind != "json":
        raise DatasetError(f"a {entry.kind!r} shard cannot be opened as an entity JSON (read packs with "
                           "entitykit.pack)", where, item)
    if verify:
        verify_shard(manifest, entry)
    ds = EntityDataset.open(manifest.shard_path(entry), image_root=image_root, validate=validate)
    found = shard_counts(ds)
    want = {"images": entry.images, "entities": entry.entities,
            "annotations": entry.annotations if entry.annotations is not None else found["annotations"],
            "image_ids": entry.image_ids if entry.image_ids is not None else found["image_ids"],
            "annotation_ids": entry.annotation_ids if entry.annotation_ids is not None else found["annotation_ids"]}
    for key, v in want.items():
        if found[key] != v:
            raise DatasetError(f"{key}: the manifest says {v!r}, the shard holds {found[key]!r}", where, item)
    return ds


def iter_shard_datasets(path: str | Path, *, validate: str | None = "schema", verify: bool = True,
                        image_root: str | Path | None = None, unique: bool = True) -> Iterator[Any]:
    """Each JSON shard of a sharded dataset as an :class:`~entitykit.dataset.EntityDataset`, one at a
    time in manifest order (memory: one shard plus, with ``unique``, the set of image ids and file
    names seen so far — it grows with the number of images, never with masks).

    ``path``: the dataset's folder or its manifest. Each shard is checked as :func:`open_shard`
    does; with ``unique`` an image id or file name (case-insensitive) already seen in an earlier
    shard is refused (annotation ids: by the manifest's disjoint id ranges, when recorded). Raises
    :class:`DatasetError` naming the manifest or the shard."""
    manifest = read_manifest(path)
    ids: set[Any] = set()
    names: set[str] = set()
    for entry in manifest.shards:
        ds = open_shard(manifest, entry, validate=validate, verify=verify, image_root=image_root)
        if unique:
            for img in ds.images:
                item = f"shard {entry.file}: image {img['id']!r}"
                if img["id"] in ids:
                    raise DatasetError("image id also used in an earlier shard", str(manifest.path), item)
                key = str(img["file_name"]).lower()
                if key in names and not img.get("copies"):
                    raise DatasetError(f"file_name {img['file_name']!r} also used in an earlier shard", str(manifest.path), item)
                ids.add(img["id"])
                names.add(key)
        yield ds


def manifest_for(root: str | Path, shards: list[ShardEntry], *, split: str | None = None,
                 provenance: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                 **extra: Any) -> Manifest:
    """A manifest of ``shards`` (totals summed from them), not yet validated or written."""
    return Manifest(Path(root), list(shards), sum(s.images for s in shards), sum(s.entities for s in shards),
                    split, dict(provenance or {}), dict(settings or {}), dict(extra))


def entry_for_file(root: str | Path, file: str, counts: dict[str, Any], *, kind: str = "json",
                   **extra: Any) -> ShardEntry:
    """The manifest entry of a shard file already written at ``root/file``: its size and SHA-256
    read from disk, ``counts`` as :func:`shard_counts` gives them."""
    path = Path(root) / file
    return ShardEntry(file, kind, counts["images"], counts["entities"], os.path.getsize(path), file_sha256(path),
                      counts.get("annotations"), counts.get("image_ids"), counts.get("annotation_ids"), dict(extra))


def entry_from_dict(raw: dict[str, Any], *, where: str = "<record>", root: str | Path = ".",
                    check_files: bool = False) -> ShardEntry:
    """Parse one shard entry (as a manifest lists it, or a completion record); raises DatasetError."""
    return _entry(0, raw, where, Path(root), check_files=check_files)


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "KINDS", "MANIFEST", "Manifest", "ShardEntry", "entry_for_file",
    "entry_from_dict", "file_sha256", "is_sharded", "iter_shard_datasets", "manifest_for", "manifest_from_dict",
    "manifest_path", "open_shard", "read_manifest", "safe_relative", "shard_counts", "verify_shard",
    "write_manifest",
]
