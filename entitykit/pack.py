"""`entitykit pack`: an entity dataset → HDF5 shards for training I/O, and the reader.

A pack is a folder::

    pack.json                     manifest: format, version, shards, the dataset's info
    shard-00000-of-00003.h5       images i ∈ [first_index, first_index + images)
    ...

or a single ``.h5`` file (one shard holding every image; its ``pack_json`` is the manifest).
``pack.json`` records each shard's size (``bytes``, checked whenever the pack is opened: a stat)
and SHA-256 (``sha256``, checked on demand by :func:`pack_integrity`, ``entitykit check PACK``: a
full read, ~350 MB/s here, too slow to pay at every training start on a large pack).

Each shard is self-describing (its ``pack_json`` dataset repeats the manifest plus the shard's
place) and holds, per image, in file order of the entity JSON:

- ``images/bytes`` + ``images/span``: the image file's original bytes (JPEG/PNG), unchanged, at
  ``bytes[start:end]``; entries that use the same file (a merge's repeated copies) share one
  copy; ``images/sha256`` is the digest of those bytes;
- ``idmaps/bytes`` + ``idmaps/span`` + ``idmaps/runs``: the id map, value k = the k-th
  annotation of the image in file order, crowd included (0 = void), as row-major runs (values,
  lengths) deflated with zlib — smaller and faster to decode than gzip/lzf-filtered arrays, PNG,
  or COCO RLE (measured: ``benchmarks/bench_pack.py --codecs``);
- ``entities/*``: per annotation id, iscrowd, area and bbox (``entities/offsets`` per image),
  enough to rebuild training targets without JSON;
- ``images/meta`` and ``entities/meta``: the image dict and its annotation dicts (without the
  mask) as JSON, so that :meth:`EntityPack.to_dataset` rebuilds the entity JSON exactly.

Every dataset is contiguous and written with ``track_times=False``: the same input gives
byte-identical shards. The reader reads blobs with ``os.pread`` at the dataset's file offset
(plain HDF5 stays readable by any HDF5 tool) and reopens files after a fork, so it works inside
PyTorch ``DataLoader`` workers.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .dataset import ENTITY_CATEGORY, EntityDataset
from .errors import DatasetError, EntityKitError, raise_problems
from .fileio import atomic_path, check_output, write_json
from .images import read_image
from .merge import file_digest
from .masks import decode_to_id_map, encode_id_map, encode_mask, runs_problem

PACK_FORMAT = "entitykit-pack"
PACK_VERSION = 1
MANIFEST = "pack.json"
IDMAP_CODEC = "rowruns-deflate-v1"
IDMAP_CODEC_DOC = (
    "row-major runs of the id map: values (value_dtype), then lengths (uint32 little-endian), "
    "concatenated and zlib-deflated; 'runs' holds the number of runs per image"
)
IDMAP_VALUE_DOC = "k = the k-th annotation of the image in file order (crowd included); 0 = void"
DEFAULT_SHARD_IMAGES = 5000
_STR = h5py.string_dtype("utf-8")


# ------------------------------------------------------------------------------------------- codec
def encode_idmap_runs(id_map: np.ndarray, value_dtype: np.dtype, level: int = 6) -> tuple[bytes, int]:
    """Row-major run-length encoding of an id map, deflated. Returns ``(blob, n_runs)``."""
    flat = np.ascontiguousarray(id_map).ravel()
    if flat.size == 0:
        return zlib.compress(b"", level), 0
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    raw = flat[starts].astype(value_dtype).tobytes() + lengths.astype("<u4").tobytes()
    return zlib.compress(raw, level), int(starts.size)


def decode_idmap_runs(blob: bytes, n_runs: int, height: int, width: int, value_dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`encode_idmap_runs`: an (H, W) array of ``value_dtype``."""
    raw = zlib.decompress(blob)
    vd = np.dtype(value_dtype)
    values = np.frombuffer(raw, vd, n_runs)
    lengths = np.frombuffer(raw, "<u4", n_runs, offset=n_runs * vd.itemsize)
    return np.repeat(values, lengths).reshape(height, width)


# ------------------------------------------------------------------------------------------ writer
def _encode_job(job: tuple[list[dict], int, int, str, int]) -> tuple[bytes, int, int]:
    """Worker: paint the RLEs into an id map and encode it. Returns (blob, runs, overlap pixels)."""
    rles, h, w, value_dtype, level = job
    id_map, overlap = decode_to_id_map(rles, range(1, len(rles) + 1), h, w)  # runs checked before the pool
    blob, runs = encode_idmap_runs(id_map, np.dtype(value_dtype), level)
    return blob, runs, overlap


def _contiguous(group: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    return group.create_dataset(name, data=data, track_times=False)


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def pack_dataset(
    dataset: EntityDataset | str | Path,
    output: str | Path,
    *,
    image_root: str | Path | None = None,
    shard_images: int | None = None,
    shard_bytes: int = 0,
    level: int = 6,
    workers: int = 1,
    overwrite: bool = False,
    exif: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``dataset`` as a pack at ``output`` (atomically); returns the manifest.

    ``output`` is a folder (``pack.json`` + shards), or, when it ends in ``.h5``/``.hdf5``, one
    self-describing shard file holding everything. In a folder a new shard starts after
    ``shard_images`` images (default 5,000) or before its image bytes would exceed
    ``shard_bytes`` (0 = no limit; both 0 = one shard). An image file used by several entries
    (a merge's repeated copies) is stored once per shard, and so is an id map with identical
    masks. ``level``: zlib level of the id maps. ``exif``: whether training applies the images'
    EXIF orientation (recorded in the manifest; the default, as everywhere). Opens the dataset with
    ``EntityDataset.open`` and refuses (naming the file and item, writing nothing) an image file that
    is missing, unreadable or not of its declared size as read (``entitykit.images``), a mask whose
    runs do not cover its image, or overlapping masks.
    """
    from .dataset import is_sharded  # noqa: PLC0415

    sharded = is_sharded(dataset)
    output = Path(output)
    single = output.suffix.lower() in (".h5", ".hdf5")
    if single and sharded:
        raise EntityKitError("a sharded dataset packs into a folder (pack shards follow its shards); "
                             "a .h5 output is one shard", output)
    if single:
        if shard_images or shard_bytes:
            raise EntityKitError("a .h5 output is one shard: drop the shard limits, or write to a folder for several shards",
                                 output)
        if output.exists() and not overwrite:
            raise EntityKitError("file exists (pass --overwrite to replace it)", output)
        shard_images = 0
    elif shard_images is None:
        shard_images = DEFAULT_SHARD_IMAGES
    if shard_images < 0 or shard_bytes < 0:
        raise EntityKitError(f"shard limits must be ≥ 0, got shard_images={shard_images}, shard_bytes={shard_bytes}")
    if not 0 <= level <= 9:
        raise EntityKitError(f"zlib level must be 0..9, got {level}")

    check_output(output, kind="file" if single else "folder",  # the cheap rules first
                 inputs=[dataset.path if isinstance(dataset, EntityDataset) else dataset])
    # Pass 1, one part (a sharded dataset's shard, or the whole dataset) in memory at a time: every
    # image file is read as training will read it (entitykit.images) and every mask's runs are
    # checked before anything is written; the pack shards are planned inside each part, so they
    # never straddle two input shards. What is kept grows with the images, never with the masks.
    from .check import Rules  # noqa: PLC0415  (the format's rules; check imports this module's neighbours)

    problems: list[EntityKitError] = []
    plans: list[tuple[list[tuple[str, int]], list[tuple[int, int, int, int]]]] = []  # per part: files, pack shards
    folders: set[str] = set()
    max_anns = n = n_anns = 0
    info: dict[str, Any] | None = None
    kept: EntityDataset | None = None  # a dataset that is not sharded is read once
    for ds in EntityDataset.parts(dataset, image_root=image_root, need_image_root=True):
        where = str(ds.path) if ds.path is not None else "<dataset>"
        if info is None:
            info = dict(ds.info)
        rules = Rules(lambda item, text, where=where: problems.append(DatasetError(text, where, item)))
        groups = ds.annotations_by_image()
        files: list[tuple[str, int]] = []  # (real path, size) per image
        for img in ds.images:
            anns = groups[img["id"]]
            before = len(problems)
            rules.image_file(ds, img, exif=exif)
            path = ds.image_path(img)
            folders.add(str(path.parent))
            if len(problems) == before:
                files.append((os.path.realpath(path), path.stat().st_size))
            for a in anns:
                why = runs_problem(a["segmentation"]["counts"], img["height"], img["width"])
                if why:
                    problems.append(DatasetError(why, where, f"annotation {a['id']!r} (image {img['id']!r})"))
            max_anns = max(max_anns, len(anns))
            if len(problems) >= 50:
                break
        raise_problems(problems)
        if len(groups) != len(ds.images):
            extra = sorted(set(groups) - {img["id"] for img in ds.images}, key=repr)[:5]
            raise DatasetError(f"annotations for unknown image ids {extra}", where)
        plans.append((files, _plan_shards(files, shard_images, shard_bytes)))
        n += len(ds.images)
        n_anns += len(ds.annotations)
        if not sharded:
            kept = ds
        del ds, groups
    where = str(dataset) if sharded else (str(kept.path) if kept is not None and kept.path is not None else "<dataset>")
    # a pack replaces its output as a whole: it must not be (or hold) the dataset or its image folders
    check_output(output, kind="file" if single else "folder",
                 inputs=[dataset if sharded else kept.path, *sorted(folders)])
    value_dtype = np.dtype("<u2") if max_anns <= 0xFFFF else np.dtype("<u4")

    info = dict(info or {})
    info.pop("image_root", None)
    base = {
        "format": PACK_FORMAT,
        "format_version": PACK_VERSION,
        "images": n,
        "annotations": n_anns,
        "idmap_codec": IDMAP_CODEC,
        "idmap_codec_doc": IDMAP_CODEC_DOC,
        "idmap_value": IDMAP_VALUE_DOC,
        "idmap_value_dtype": value_dtype.str,
        "zlib_level": level,
        "exif": "applied" if exif else "ignored",
        "dataset": {"path": where, "info": info, "categories": [dict(ENTITY_CATEGORY)]},
    }
    shards: list[tuple[int, int, int, int]] = []  # (first, end, stored images, stored bytes), global indices
    offset = 0
    for files, plan in plans:
        shards.extend((a + offset, b + offset, u, nb) for a, b, u, nb in plan)
        offset += len(files)
    shard_names = [output.name] if single else [f"shard-{k:05d}-of-{len(shards):05d}.h5" for k in range(len(shards))]
    base["shards"] = [{"file": name, "first_index": a, "images": b - a, "stored_images": u, "image_bytes": nb}
                      for name, (a, b, u, nb) in zip(shard_names, shards)]

    from .progress import progress_bar

    pool = None
    if workers > 1 and n > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)
    try:
        with atomic_path(output, overwrite=overwrite) as tmp, \
                progress_bar(2 * n, f"pack {output.name} (id maps, then images)", enabled=progress) as advance:
            # Pass 2: each part again (a sharded dataset is re-read shard by shard), its pack shards written
            parts = [kept] if kept is not None else EntityDataset.parts(dataset, image_root=image_root, validate=None)
            if not single:
                tmp.mkdir()
            k = offset = 0
            for ds, (files, plan) in zip(parts, plans):
                part_where = str(ds.path) if ds.path is not None else "<dataset>"
                items = list(ds.iter_images())
                if len(items) != len(files):
                    raise DatasetError("shard changed while packing", part_where)
                for a, b, _, _ in plan:
                    target = tmp if single else tmp / shard_names[k]
                    _write_shard(target, items[a:b], files[a:b], ds, part_where, base, k, a + offset, value_dtype,
                                 level, pool, advance)
                    k += 1
                offset += len(items)
                del ds, items
            if not single:
                for entry in base["shards"]:  # after the shard is written: its own pack_json cannot hold them
                    entry["bytes"] = (tmp / entry["file"]).stat().st_size
                    entry["sha256"] = file_digest(tmp / entry["file"])
                write_json(tmp / MANIFEST, base, indent=1)
    finally:
        if pool is not None:
            pool.terminate()
    return base


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_pack(path: Any) -> bool:
    """Whether ``path`` is a pack: a folder holding ``pack.json``, or a file that starts with the HDF5
    signature (a pack shard; only its first 8 bytes are read)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def _plan_shards(files: list[tuple[str, int]], max_images: int, max_bytes: int) -> list[tuple[int, int, int, int]]:
    """Cut the image list into shards: (first, end, stored images, stored bytes) each."""
    shards: list[tuple[int, int, int, int]] = []
    start, seen, nbytes = 0, set(), 0
    for i, (key, size) in enumerate(files):
        add = 0 if key in seen else size
        count = i - start
        if count and ((max_images and count >= max_images) or (max_bytes and nbytes + add > max_bytes)):
            shards.append((start, i, len(seen), nbytes))
            start, seen, nbytes, add = i, set(), 0, size
        seen.add(key)
        nbytes += add
    shards.append((start, len(files), len(seen), nbytes))
    return shards


def _spans(sizes: list[int], first_of: list[int]) -> np.ndarray:
    """[start, end) of each entry in a blob where entry i reuses entry first_of[i]'s bytes."""
    spans = np.zeros((len(sizes), 2), np.int64)
    pos = 0
    for i, (size, j) in enumerate(zip(sizes, first_of)):
        if j == i:
            spans[i] = (pos, pos + size)
            pos += size
        else:
            spans[i] = spans[j]
    return spans


@contextlib.contextmanager
def _h5_file(path: Path):
    """A new HDF5 file, closed cleanly even when a write fails (a full disk).

    HDF5 cannot close a file whose metadata it failed to write: its objects stay half-closed and
    the process segfaults when Python frees them. So a failed write first truncates the file (its
    blocks are freed: the space HDF5 lacked), then closes it; the file is discarded anyway (it is
    inside the atomic writer's temporary folder). The final flush happens while the file is open,
    so a full disk at that point takes the same path."""
    # as h5py.File(path, "w", libver="earliest", track_order=False), without the 64 KiB data-sieve
    # buffer: with it, the close after a failed write wants to flush more than truncation freed
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_sieve_buf_size(0)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    f = h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl))
    ok = False
    try:
        yield f
        f.flush()
        ok = True
    finally:
        if not ok:
            try:
                os.truncate(path, 0)
            except OSError:
                pass
            try:
                f.close()
            except Exception:  # noqa: BLE001  (the original error is the one to report)
                pass
    f.close()


@contextlib.contextmanager
def _h5_write_errors(path: Path):
    """HDF5 reports a failed write (a full disk) as a RuntimeError or an errno-less OSError whose text
    holds "errno = N": give it back as the OSError it is, so the atomic writer names the output."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        m = re.search(r"errno = (\d+)", str(e))
        if m is None:
            raise
        code = int(m.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None


def _write_shard(path: Path, items, files, ds: EntityDataset, where: str, base: dict, shard: int, first: int,
                 value_dtype: np.dtype, level: int, pool, advance) -> None:
    m = len(items)
    # entries sharing an image file / identical masks are stored once (a merge's repeated copies)
    first_img: dict[str, int] = {}
    img_first = [first_img.setdefault(key, i) for i, (key, _) in enumerate(files)]
    first_map: dict[tuple, int] = {}
    map_first = [first_map.setdefault((img["height"], img["width"], tuple(a["segmentation"]["counts"] for a in anns)), i)
                 for i, (img, anns) in enumerate(items)]
    todo = [i for i in range(m) if map_first[i] == i]
    jobs = [([a["segmentation"] for a in items[i][1]], items[i][0]["height"], items[i][0]["width"], value_dtype.str, level)
            for i in todo]
    encoded = pool.imap(_encode_job, jobs, chunksize=8) if pool is not None else map(_encode_job, jobs)
    blobs: dict[int, bytes] = {}
    runs = np.zeros(m, np.int64)
    for i, (blob, r, overlap) in zip(todo, encoded):
        if overlap:
            raise DatasetError(f"masks overlap on {overlap} pixel(s); an entity dataset has disjoint masks (run entitykit check)",
                               where, f"image {items[i][0]['id']!r}")
        blobs[i] = blob
        runs[i] = r
        advance()
    runs = runs[map_first]
    advance(m - len(todo))
    map_spans = _spans([len(blobs.get(i, b"")) for i in range(m)], map_first)
    img_spans = _spans([size for _, size in files], img_first)
    ent_off = np.concatenate(([0], np.cumsum([len(anns) for _, anns in items], dtype=np.int64))).astype(np.int64)
    all_anns = [a for _, anns in items for a in anns]
    manifest = dict(base, shard=shard, first_index=first, shard_images=m)
    with _h5_write_errors(path), _h5_file(path) as f:
        f.attrs["format"] = PACK_FORMAT
        f.attrs["format_version"] = PACK_VERSION
        f.attrs["shard"] = shard
        f.attrs["num_shards"] = len(base["shards"])
        f.attrs["first_index"] = first
        f.create_dataset("pack_json", data=_json_dumps(manifest), dtype=_STR, track_times=False)
        g = f.create_group("images", track_order=False)
        total = int(img_spans[:, 1].max()) if m else 0
        dset = g.create_dataset("bytes", shape=(total,), dtype=np.uint8, track_times=False)
        digests = np.zeros((m, 32), np.uint8)
        for i, (img, _) in enumerate(items):
            if img_first[i] == i:
                p = ds.image_path(img)
                data = p.read_bytes()
                a, b = img_spans[i]
                if len(data) != b - a:
                    raise DatasetError("image file changed while packing", str(p), f"image {img['id']!r}")
                if data:
                    dset[a:b] = np.frombuffer(data, np.uint8)
                digests[i] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
            else:
                digests[i] = digests[img_first[i]]
            advance()
        _contiguous(g, "span", img_spans)
        _contiguous(g, "sha256", digests)
        _contiguous(g, "id", np.array([img["id"] for img, _ in items], np.int64))
        _contiguous(g, "height", np.array([img["height"] for img, _ in items], np.int32))
        _contiguous(g, "width", np.array([img["width"] for img, _ in items], np.int32))
        g.create_dataset("meta", data=np.array([_json_dumps(img) for img, _ in items], dtype=object),
                         dtype=_STR, track_times=False)
        g = f.create_group("idmaps", track_order=False)
        _contiguous(g, "bytes", np.frombuffer(b"".join(blobs[i] for i in todo), np.uint8))
        _contiguous(g, "span", map_spans)
        _contiguous(g, "runs", runs)
        g = f.create_group("entities", track_order=False)
        _contiguous(g, "offsets", ent_off)
        _contiguous(g, "id", np.array([a["id"] for a in all_anns], np.int64))
        _contiguous(g, "iscrowd", np.array([int(a.get("iscrowd", 0)) for a in all_anns], np.uint8))
        _contiguous(g, "area", np.array([a.get("area", 0) for a in all_anns], np.int64))
        _contiguous(g, "bbox", np.array([a.get("bbox", [0, 0, 0, 0]) for a in all_anns], np.float64).reshape(-1, 4))
        meta = [_json_dumps([{k: v for k, v in a.items() if k != "segmentation"} for a in anns]) for _, anns in items]
        g.create_dataset("meta", data=np.array(meta, dtype=object), dtype=_STR, track_times=False)


# ------------------------------------------------------------------------------------------ reader
@dataclass
class PackSample:
    """One image of a pack: what a training loader needs, with no JSON or RLE work."""

    index: int
    image_id: int
    image_bytes: bytes
    id_map: np.ndarray  # int32 (H, W): k = k-th annotation of the image (crowd included), 0 = void
    entity_ids: np.ndarray  # int64 (K,) annotation ids, value k ↔ entity_ids[k-1]
    iscrowd: np.ndarray  # uint8 (K,)
    area: np.ndarray  # int64 (K,)
    bbox: np.ndarray  # float64 (K, 4) [x, y, w, h]

    def image_array(self, *, exif: bool = True) -> np.ndarray:
        """Decode the image bytes to H×W×3 uint8 RGB with the one image reader (``entitykit.images``)."""
        return read_image(self.image_bytes, exif=exif, name=f"packed image {self.image_id!r}")

    def entity_id_map(self) -> np.ndarray:
        """The paper's P: value k = the k-th non-crowd entity, crowd pixels → 0.

        Equal to ``EntityDataset.id_map(image_id)`` and to the ``idmaps`` export.
        """
        lut = np.zeros(self.entity_ids.size + 1, np.int32)
        keep = np.flatnonzero(self.iscrowd == 0)
        lut[keep + 1] = np.arange(1, keep.size + 1, dtype=np.int32)
        return lut[self.id_map]


_ENTITY_COLUMNS = {"id": 1, "iscrowd": 1, "area": 1, "bbox": 4}  # entities/* columns: values per entity
MAX_OPEN_SHARDS = 64  # per process: the least recently used shard's file is closed beyond this


class _Shard:
    def __init__(self, path: Path):
        self.path = path
        self.file: h5py.File | None = None
        self.fd: int | None = None
        self.pid: int | None = None
        self.loaded = False

    def item(self, j: int | None, index: int | None = None) -> str | None:
        """How a problem names an image of this shard: its id (once the shard is read) and pack index."""
        image_id = int(self.ids[j]) if j is not None and self.loaded and 0 <= j < len(self.ids) else None
        if image_id is None:
            return f"index {index}" if index is not None else None
        return f"image {image_id!r}" + (f" (index {index})" if index is not None else "")

    @contextlib.contextmanager
    def reading(self, item: str | None = None):
        """The one place where a failure to read this shard becomes a :class:`DatasetError` naming
        the shard file and ``item``: h5py reports a damaged file as OSError, KeyError, ValueError or
        RuntimeError (``bad local heap signature``, ``wrong B-tree signature``, …), zlib a damaged
        id map as ``zlib.error``, numpy a wrong-sized one as ValueError."""
        try:
            yield
        except EntityKitError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, zlib.error) as e:
            words = " ".join(str(e).split())[:200] or type(e).__name__
            raise DatasetError(f"cannot read this pack shard, damaged or not written by entitykit pack ({words}); "
                               "make the pack again (entitykit pack)", self.path, item) from None

    def open(self, item: str | None = None) -> h5py.File:
        with self.reading(item):
            return self._open()

    def _open(self) -> h5py.File:
        if self.file is None or self.pid != os.getpid():
            # after a fork the parent's handles must not be used: open our own
            try:
                f = h5py.File(self.path, "r", locking=False)  # read-only: no lock (NFS, read-only mounts)
            except OSError as e:
                words = " ".join(str(e).split())[:200]
                raise DatasetError(f"cannot open as HDF5 ({words}): damaged, or not a pack shard; "
                                   "make the pack again (entitykit pack)", self.path) from None
            try:
                if not self.loaded:
                    self._load(f)
                self.img_base = f["images/bytes"].id.get_offset()
                self.map_base = f["idmaps/bytes"].id.get_offset()
                self.ent_base = {k: f[f"entities/{k}"].id.get_offset() for k in _ENTITY_COLUMNS}
            except BaseException:
                f.close()
                raise
            self.file, self.fd, self.pid = f, os.open(self.path, os.O_RDONLY), os.getpid()
        return self.file

    def _load(self, f: h5py.File) -> None:
        if f.attrs.get("format") != PACK_FORMAT:
            raise DatasetError(f"not an {PACK_FORMAT} shard (format {f.attrs.get('format')!r})", self.path)
        version = int(f.attrs.get("format_version", -1))
        if version != PACK_VERSION:
            raise DatasetError(f"pack format version {version}; this entitykit reads version {PACK_VERSION}", self.path)
        self.manifest = json.loads(f["pack_json"][()])
        self.value_dtype = np.dtype(self.manifest["idmap_value_dtype"])
        self.img_span = f["images/span"][()]
        self.map_span = f["idmaps/span"][()]
        self.runs = f["idmaps/runs"][()]
        self.ids = f["images/id"][()]
        self.heights = f["images/height"][()]
        self.widths = f["images/width"][()]
        self.ent_off = f["entities/offsets"][()]
        # per-entity columns are read per image (entities): a process keeps per-image arrays only
        self.ent_dtype = {k: f[f"entities/{k}"].dtype for k in _ENTITY_COLUMNS}
        self.loaded = True

    def entities(self, a: int, b: int) -> dict[str, np.ndarray]:
        """Rows [a, b) of the entity table: id (K,), iscrowd (K,), area (K,), bbox (K, 4)."""
        out = {}
        for k, width in _ENTITY_COLUMNS.items():
            dtype = self.ent_dtype[k]
            size = dtype.itemsize * width
            base = self.ent_base[k]
            data = os.pread(self.fd, (b - a) * size, base + a * size) if base is not None and b > a else None
            if data is not None and len(data) == (b - a) * size:
                arr = np.frombuffer(data, dtype).copy()
            else:  # no rows, or no file offset (empty column): h5py reads it
                arr = self.file[f"entities/{k}"][a:b]
            out[k] = arr.reshape(-1, width) if width > 1 else arr
        return out

    def read(self, base: int | None, dset: str, a: int, b: int) -> bytes:
        if b == a:
            return b""
        if base is not None:
            data = os.pread(self.fd, b - a, base + a)
            if len(data) == b - a:
                return data
        return self.file[dset][a:b].tobytes()

    def close(self) -> None:
        if self.file is not None and self.pid == os.getpid():
            self.file.close()
            os.close(self.fd)
        self.file = self.fd = None


class EntityPack:
    """Random access to a pack (folder with ``pack.json``, or one shard ``.h5``) by image index.

    ``pack[i]`` → :class:`PackSample`. Safe to create before forking ``DataLoader`` workers:
    each process opens its own file handles on first use.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            man_path = self.path / MANIFEST
            if not man_path.is_file():
                raise DatasetError(f"not a pack folder: no {MANIFEST}", self.path)
            from .fileio import read_json

            self.manifest = read_json(man_path, "pack manifest")
            if self.manifest.get("format") != PACK_FORMAT:
                raise DatasetError(f"not an {PACK_FORMAT} manifest", man_path)
            if self.manifest.get("format_version") != PACK_VERSION:
                raise DatasetError(f"pack format version {self.manifest.get('format_version')!r}; "
                                   f"this entitykit reads version {PACK_VERSION}", man_path)
            self._shards = [_Shard(self.path / s["file"]) for s in self.manifest["shards"]]
            self._first = [s["first_index"] for s in self.manifest["shards"]]
            self._len = self.manifest["images"]
            for s, entry in zip(self._shards, self.manifest["shards"]):
                if not s.path.is_file():
                    raise DatasetError("shard file missing", s.path)
                size = s.path.stat().st_size
                if isinstance(entry.get("bytes"), int) and size != entry["bytes"]:  # cheap: a truncated copy
                    raise DatasetError(f"shard is {size:,} bytes, pack.json records {entry['bytes']:,}: truncated or "
                                       "changed since packing; copy it again or make the pack again", s.path)
            # every shard's HDF5 structure and per-image tables are read now (a few small reads per
            # shard, kept for the run): a damaged shard stops the run before training starts, not
            # when the sampler first reaches it. Image bytes and id maps are read (and checked) per sample.
            for s in self._shards:
                s.open()
                s.close()
        elif self.path.is_file():
            shard = _Shard(self.path)
            shard.open()
            m = shard.manifest
            self.manifest = dict(m, shards=[m["shards"][m["shard"]]])
            self._shards, self._first, self._len = [shard], [m["first_index"]], m["shard_images"]
        else:
            raise DatasetError("pack not found", self.path)
        self._offset0 = self._first[0]

    # ---- metadata
    @property
    def info(self) -> dict[str, Any]:
        """The packed dataset's ``info`` (minus image_root: the images are inside)."""
        return self.manifest["dataset"]["info"]

    def __len__(self) -> int:
        return self._len

    def _locate(self, index: int) -> tuple[_Shard, int]:
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for a pack of {self._len} images")
        index = index % self._len + self._offset0
        k = bisect.bisect_right(self._first, index) - 1
        s = self._shards[k]
        s.open(f"index {index}")
        self._touch(k)
        return s, index - self._first[k]

    def _read(self, index: int, fn):
        """``fn(shard, j)`` for the image at ``index``, failures named by :meth:`_Shard.reading`."""
        s, j = self._locate(index)
        with s.reading(s.item(j, index)):
            return fn(s, j)

    def shard_path(self, index: int) -> Path:
        """The shard file that holds the image at ``index``."""
        return self._locate(index)[0].path

    def _touch(self, k: int) -> None:
        """Keep at most MAX_OPEN_SHARDS files open in this process (a pack of thousands of shards
        read in random order would otherwise hold every file and its handles)."""
        order = self.__dict__.setdefault("_open", {})
        order.pop(k, None)
        order[k] = None
        while len(order) > MAX_OPEN_SHARDS:
            old = next(iter(order))
            del order[old]
            self._shards[old].close()

    # ---- per image
    def image_bytes(self, index: int) -> bytes:
        return self._read(index, lambda s, j: s.read(s.img_base, "images/bytes", *s.img_span[j].tolist()))

    def id_map(self, index: int) -> np.ndarray:
        """int32 (H, W), value k = k-th annotation of the image (crowd included)."""
        return self._read(index, self._id_map)

    def _id_map(self, s: _Shard, j: int) -> np.ndarray:
        blob = s.read(s.map_base, "idmaps/bytes", *s.map_span[j].tolist())
        m = decode_idmap_runs(blob, int(s.runs[j]), int(s.heights[j]), int(s.widths[j]), s.value_dtype)
        return m.astype(np.int32)

    def __getitem__(self, index: int) -> PackSample:
        """The image at ``index``; raises :class:`DatasetError` naming the shard file and the image
        when the shard cannot be read (damaged), IndexError out of range."""
        return self._read(index, lambda s, j: self._sample(s, j, index))

    def _sample(self, s: _Shard, j: int, index: int) -> PackSample:
        ent = s.entities(int(s.ent_off[j]), int(s.ent_off[j + 1]))
        return PackSample(
            index=index,
            image_id=int(s.ids[j]),
            image_bytes=s.read(s.img_base, "images/bytes", *s.img_span[j].tolist()),
            id_map=self._id_map(s, j),
            entity_ids=ent["id"],
            iscrowd=ent["iscrowd"],
            area=ent["area"],
            bbox=ent["bbox"],
        )

    def image_info(self, index: int) -> dict[str, Any]:
        """The image's dict as in the entity JSON."""
        return self._read(index, lambda s, j: json.loads(s.file["images/meta"][j]))

    def annotations(self, index: int) -> list[dict[str, Any]]:
        """The image's annotation dicts as in the entity JSON, masks re-encoded from the id map."""
        return self._read(index, self._annotations)

    def _annotations(self, s: _Shard, j: int) -> list[dict[str, Any]]:
        anns = json.loads(s.file["entities/meta"][j])
        ids, rles, _ = encode_id_map(self._id_map(s, j))
        by_value = dict(zip(ids.tolist(), rles))
        h, w = int(s.heights[j]), int(s.widths[j])
        for k, a in enumerate(anns, start=1):
            a["segmentation"] = by_value[k] if k in by_value else encode_mask(np.zeros((h, w), np.uint8))
        return anns

    def to_dataset(self) -> EntityDataset:
        """Rebuild the packed entity dataset (masks re-encoded; equal to the source for valid input)."""
        images, annotations = [], []
        for i in range(len(self)):
            images.append(self.image_info(i))
            annotations.extend(self.annotations(i))
        return EntityDataset(images=images, annotations=annotations, info=dict(self.info))

    # ---- lifecycle
    def close(self) -> None:
        for s in self._shards:
            s.close()

    def __enter__(self) -> EntityPack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # picklable for spawn-started DataLoader workers
        state = dict(self.__dict__)
        state["_shards"] = [_Shard(s.path) for s in self._shards]
        state.pop("_open", None)
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def pack_integrity(pack: str | Path | EntityPack, *, progress: bool = False) -> list[DatasetError]:
    """Each shard of a pack folder against ``pack.json``: size and SHA-256 (recorded by :func:`pack_dataset`;
    a pack made before they were recorded is read in full instead, so its damage shows as a read
    error). Then every image of the pack is read (its HDF5 structure, id map and image header). Returns
    the problems found, each naming the shard file (empty = intact). Cost: one full read of the pack."""
    from .images import read_header, size_problem  # noqa: PLC0415
    from .progress import progress_bar  # noqa: PLC0415

    try:
        pk = pack if isinstance(pack, EntityPack) else EntityPack(pack)
    except DatasetError as e:
        return [e]
    problems: list[DatasetError] = []
    damaged: set[Path] = set()
    for s, entry in zip(pk._shards, pk.manifest["shards"]):
        digest = entry.get("sha256") if pk.path.is_dir() else None
        if isinstance(digest, str) and file_digest(s.path) != digest:
            problems.append(DatasetError(f"SHA-256 differs from pack.json's {digest[:12]}…: damaged or changed "
                                         "since packing; make the pack again", s.path))
            damaged.add(s.path)
    with progress_bar(len(pk), "check pack", enabled=progress) as advance:
        for i in range(len(pk)):
            path = pk.shard_path(i)
            if path in damaged:
                advance()
                continue
            try:
                smp = pk[i]
                header = read_header(smp.image_bytes, exif=pk.manifest.get("exif", "applied") != "ignored",
                                     item=f"image {smp.image_id!r}")
                why = size_problem(header, *smp.id_map.shape, exif=pk.manifest.get("exif", "applied") != "ignored")
                if why:
                    problems.append(DatasetError(why, path, f"image {smp.image_id!r} (index {i})"))
            except EntityKitError as e:
                problems.append(DatasetError(e.problem, path, e.item))
                damaged.add(path)  # one problem per damaged shard
            advance()
            if len(problems) >= 50:
                break
    return problems


def verify_pack(pack: str | Path | EntityPack, dataset: EntityDataset | str | Path, *,
                image_root: str | Path | None = None, progress: bool = False) -> list[DatasetError]:
    """Compare a pack with its source dataset: image bytes, id maps and entity table identical.

    Returns the differences found (empty = the pack round-trips exactly).
    """
    from .progress import progress_bar

    pk = pack if isinstance(pack, EntityPack) else EntityPack(pack)
    where = str(pk.path)
    problems: list[DatasetError] = []
    i = 0
    with progress_bar(len(pk), "verify", enabled=progress) as advance:
        # one part (shard) of the dataset in memory at a time
        for ds in EntityDataset.parts(dataset, image_root=image_root, need_image_root=True):
            if i + len(ds.images) > len(pk):
                return [DatasetError(f"pack has {len(pk)} images, the dataset more", where)]
            for img, anns in ds.iter_images():
                s = pk[i]
                item = f"image {img['id']!r} (index {i})"
                expected = ds.paint(img, anns)
                if s.image_id != img["id"]:
                    problems.append(DatasetError(f"image id {s.image_id} in the pack", where, item))
                if s.image_bytes != ds.image_path(img).read_bytes():
                    problems.append(DatasetError("image bytes differ from the file", where, item))
                if s.id_map.shape != expected.shape or not np.array_equal(s.id_map, expected):
                    problems.append(DatasetError("id map differs from the dataset's masks", where, item))
                if s.entity_ids.tolist() != [a["id"] for a in anns] or s.iscrowd.tolist() != [int(a.get("iscrowd", 0)) for a in anns]:
                    problems.append(DatasetError("entity table differs from the annotations", where, item))
                i += 1
                advance()
            del ds
    if i != len(pk):
        return [DatasetError(f"pack has {len(pk)} images, the dataset {i}", where)]
    return problems


class PackSource:
    """A pack as a training sample source (``entitykit.data.SampleSource``).

    ``load(i)`` → (RGB uint8 H×W×3, id map int32 H×W with 1..N = the image's annotations in file
    order, crowd flags bool N) — decoded by the same reader as ``entitykit.data.JsonSource``
    (``entitykit.images.read_image``, EXIF as recorded by ``pack``), so both forms of a dataset give
    the same samples.
    """

    def __init__(self, path: str | Path):
        self.pack = EntityPack(path)
        self.name = str(path)
        self.exif = self.pack.manifest.get("exif", "applied") != "ignored"

    def __len__(self) -> int:
        return len(self.pack)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.pack[index]
        item = f"image {s.image_id!r} (index {index})"
        h, w = s.id_map.shape
        rgb = read_image(s.image_bytes, exif=self.exif, name=str(self.pack.shard_path(index)), item=item, expect=(h, w))
        return rgb, s.id_map, s.iscrowd.astype(bool)
