"""Training data: entity datasets → (image, target) samples with the paper's augmentations.

Every random choice of a sample is drawn from a generator seeded by ``(seed, epoch, index)``, and the
order of samples by ``(seed, epoch)``; so iteration *i* of a run always sees the same batch, in one
process or in several, and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from .dataset import EntityDataset
from .errors import DatasetError, EntityKitError
from .images import read_image


class SampleSource(Protocol):
    """Where samples come from: an entity JSON (images on disk) or an HDF5 pack."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RGB uint8 H×W×3, id map int32 H×W with 1..N, crowd flags bool N)."""


class JsonSource:
    """Images from disk, masks from the entity JSON's RLEs.

    The dataset is opened by ``EntityDataset.open`` (image folder override, the caller's object never
    changed) with ``validate="full"`` by default: every rule of ``entitykit check`` but the image
    files, as ``merge`` applies them — RLE runs that cover height × width, area/bbox, disjoint masks —
    so a dataset that check, merge, pack and idmaps refuse is refused before training starts. Cost:
    one pass over the RLEs (pycocotools, no pixel decoding), measured 3.5 ms per image against 1.1 ms
    for the schema alone (300 synthetic 480×640 images, 33 entities each, one CPU core), against some
    200 ms per image for one training step of the tiny preset on CPU. Images are read by ``entitykit.images.read_image`` with the
    dataset's declared size, so a sample is refused exactly when ``entitykit check`` reports it.
    """

    def __init__(self, dataset: EntityDataset | str | Path, image_root: str | Path | None = None, *,
                 exif: bool = True, validate: str | None = "full"):
        self.dataset = EntityDataset.open(dataset, image_root=image_root, need_image_root=True, validate=validate)
        self.exif = exif
        self.groups = self.dataset.annotations_by_image()
        self.name = str(self.dataset.path or "<dataset>")

    def __len__(self) -> int:
        return len(self.dataset.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img = self.dataset.images[index]
        item = f"image {img['id']!r}"
        path = self.dataset.image_path(img)
        try:
            rgb = read_image(path, exif=self.exif, item=item, expect=(img["height"], img["width"]))
        except EntityKitError as e:  # named as check and pack name it: the dataset, the image, its file
            raise DatasetError(f"{path}: {e.problem}", self.name, item) from None
        anns = self.groups[img["id"]]
        id_map = self.dataset.paint(img, anns)
        crowd = np.array([bool(a.get("iscrowd")) for a in anns], bool)
        return rgb, id_map, crowd


def open_source(path: str | Path, image_root: str | Path | None = None, *, exif: bool = True) -> SampleSource:
    """One training dataset as a sample source, by what ``path`` is:

    - an HDF5 pack (a ``.h5`` file or a folder with ``pack.json``): :class:`~entitykit.pack.PackSource`
      (a pack records its own EXIF rule);
    - a sharded dataset (a folder with ``manifest.json``, ``entitykit.shards``): its shards in
      manifest order, as one :class:`ConcatSource` — JSON shards read lazily, one in memory per
      process at a time (:class:`JsonShardSource`), pack shards as packs. Every shard is validated
      now, one at a time, with every rule of ``entitykit check`` but the image files (masks
      included) and the rules across shards (``EntityDataset.parts(validate="full")``);
    - a glob pattern (``packs/*.h5``) matching no path literally: the sorted matches, each opened
      as above, as one :class:`ConcatSource`;
    - otherwise an entity JSON: :class:`JsonSource` (validated in full, masks included).

    A set of shards is ONE source whose index i is the i-th image of the concatenation: sample i,
    and so every batch (``batch_keys``), is the same as from the same images as one file or pack.
    Raises :class:`DatasetError` naming the file (no match, not found, invalid).
    """
    path = Path(path)
    if not path.exists() and any(c in str(path) for c in "*?["):
        import glob  # noqa: PLC0415

        matches = sorted(glob.glob(str(path)))
        if not matches:
            raise DatasetError("no file or folder matches this pattern", path)
        return ConcatSource([open_source(m, image_root, exif=exif) for m in matches], name=str(path))
    from .dataset import is_sharded  # noqa: PLC0415

    if is_sharded(path):
        return _sharded_source(path, image_root, exif=exif)
    if path.is_dir() or path.suffix in (".h5", ".hdf5"):
        from .pack import PackSource  # noqa: PLC0415  (h5py only when packs are used)

        return PackSource(path)
    return JsonSource(path, image_root, exif=exif)


class ConcatSource:
    """Sources one after the other: index i is the i-th image of the concatenation."""

    def __init__(self, sources: list[SampleSource], *, name: str = "<sources>"):
        self.sources, self.name = list(sources), name
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        s = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[s].load(index - int(self.offsets[s]))


class JsonShardSource:
    """One JSON shard of a sharded dataset, read when first sampled. The shards of one dataset share
    a one-slot cache (``slot``): a process holds one shard's JSON at a time, so memory is bounded by
    the largest shard; sampling in random order re-reads a shard each time the order crosses into
    another one (pack the dataset, ``entitykit pack``, for fast random access)."""

    def __init__(self, manifest: Any, entry: Any, n: int, image_root: str | Path | None, exif: bool,
                 slot: dict[str, Any]):
        self.manifest, self.entry, self.n = manifest, entry, n
        self.image_root, self.exif, self.slot = image_root, exif, slot
        self.name = str(manifest.shard_path(entry))

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import os  # noqa: PLC0415

        key = (self.name, os.getpid())
        if self.slot.get("key") != key:
            from .dataset import load_shard  # noqa: PLC0415

            self.slot.clear()  # the previous shard is released before the next is read
            ds = load_shard(self.manifest, self.entry, self.image_root)
            self.slot["source"] = JsonSource(ds, exif=self.exif, validate=None)  # validated when opened
            self.slot["key"] = key
        return self.slot["source"].load(index)



class _Slot(dict):
    """The shared one-shard cache: pickled empty, and still shared (pickle keeps shared references)."""

    def __reduce__(self):
        return (_Slot, ())


def _sharded_source(path: Path, image_root: str | Path | None, *, exif: bool) -> ConcatSource:
    from .dataset import EntityDataset  # noqa: PLC0415
    from .shards import read_manifest  # noqa: PLC0415

    manifest = read_manifest(path)
    sizes = []
    for entry, ds in zip(manifest.shards, EntityDataset.parts(path, image_root=image_root, validate="full")):
        if entry.kind == "json" and ds.image_root is None:
            raise DatasetError("the shard records no image folder (info.image_root); give it (--images DIR)",
                               ds.path, "info.image_root")
        sizes.append(len(ds.images))
        del ds
    slot = _Slot()
    sources: list[SampleSource] = []
    for entry, n in zip(manifest.shards, sizes):
        if entry.kind == "json":
            sources.append(JsonShardSource(manifest, entry, n, image_root, exif, slot))
        else:
            from .pack import PackSource  # noqa: PLC0415

            sources.append(PackSource(manifest.shard_path(entry)))
    return ConcatSource(sources, name=str(path))


@dataclass
class Augment:
    """The paper's augmentation (short side from a list, long side capped, horizontal flip) or LSJ."""

    min_sizes: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    max_size: int = 1333
    flip: bool = True
    lsj: tuple[float, float] | None = None  # large-scale jitter: scale range of a max_size square

    def __call__(self, rgb: np.ndarray, id_map: np.ndarray, rng: np.random.Generator):
        h, w = id_map.shape
        if self.lsj is None:
            short = int(rng.choice(self.min_sizes))
            scale = min(short / min(h, w), self.max_size / max(h, w))
        else:
            scale = float(rng.uniform(*self.lsj)) * self.max_size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
        id_map = np.asarray(Image.fromarray(id_map.astype(np.int32)).resize((nw, nh), Image.NEAREST))
        if self.lsj is not None and max(nh, nw) > self.max_size:  # random crop back to the square
            y0 = int(rng.integers(0, max(1, nh - self.max_size + 1)))
            x0 = int(rng.integers(0, max(1, nw - self.max_size + 1)))
            rgb = rgb[y0 : y0 + self.max_size, x0 : x0 + self.max_size]
            id_map = id_map[y0 : y0 + self.max_size, x0 : x0 + self.max_size]
        if self.flip and rng.random() < 0.5:
            rgb, id_map = rgb[:, ::-1], id_map[:, ::-1]
        return np.ascontiguousarray(rgb), np.ascontiguousarray(id_map)


def to_sample(rgb: np.ndarray, id_map: np.ndarray, crowd: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
    """Arrays → (3×H×W uint8 tensor, target with per-entity masks and crowd pixels to ignore)."""
    n = crowd.size
    ids = torch.from_numpy(np.array(id_map, np.int64))
    masks = ids[None] == torch.arange(1, n + 1).view(-1, 1, 1)
    keep = torch.from_numpy(~crowd) & masks.flatten(1).any(1)
    ignore = masks[torch.from_numpy(crowd)].any(0) if crowd.any() else torch.zeros_like(ids, dtype=torch.bool)
    image = torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1).contiguous()
    return image, {"masks": masks[keep], "ignore": ignore}


class TrainingSet(torch.utils.data.Dataset):
    """Weighted mix of sources; ``sample(index, epoch)`` is deterministic for a seed."""

    def __init__(self, sources: list[SampleSource], augment: Augment, *, seed: int = 0):
        if not sources or not any(len(s) for s in sources):
            raise DatasetError("no training images")
        self.sources, self.augment, self.seed = sources, augment, seed
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One augmented sample. Raises :class:`EntityKitError` for bad input (a damaged pack shard, an
        unreadable image); inside a ``DataLoader`` worker the error is returned as a
        :class:`WorkerFailure` instead, which :func:`collate` passes on and :func:`raise_failure`
        raises in the main process as the same one-line error (PyTorch would re-raise it as a new
        exception built from the worker's traceback text)."""
        try:
            return self._sample(key)
        except EntityKitError as e:
            if torch.utils.data.get_worker_info() is None:
                raise
            return WorkerFailure(e)

    def _sample(self, key: tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        index, epoch = key
        s = int(np.searchsorted(self.offsets, index, side="right") - 1)
        rgb, id_map, crowd = self.sources[s].load(index - int(self.offsets[s]))
        rng = np.random.default_rng([self.seed, epoch, index])
        rgb, id_map = self.augment(rgb, id_map, rng)
        return to_sample(rgb, id_map, crowd)


def batch_keys(iteration: int, batch_size: int, n: int, seed: int, weights: list[float] | None = None,
               sizes: list[int] | None = None) -> list[tuple[int, int]]:
    """The (index, epoch) pairs of one global batch: epochs are seeded permutations of the data.

    With ``weights`` (one per source, sizes given), each epoch draws ``n`` indices with those source
    proportions instead (sources sampled uniformly inside, with replacement when oversampled).
    """
    keys = []
    start = iteration * batch_size
    for pos in range(start, start + batch_size):
        epoch, k = divmod(pos, n)
        keys.append((int(_epoch_order(seed, epoch, n, weights, tuple(sizes) if sizes else None)[k]), epoch))
    return keys


_ORDER_CACHE: dict[tuple, np.ndarray] = {}


def _epoch_order(seed: int, epoch: int, n: int, weights, sizes) -> np.ndarray:
    key = (seed, epoch, n, tuple(weights) if weights else None, sizes)
    order = _ORDER_CACHE.get(key)
    if order is None:
        rng = np.random.default_rng([seed, epoch, 7919])
        if weights is None:
            order = rng.permutation(n)
        else:
            w = np.asarray(weights, np.float64)
            p = w / w.sum()
            offsets = np.cumsum([0] + list(sizes))
            src = rng.choice(len(sizes), size=n, p=p)
            order = np.array([offsets[s] + rng.integers(0, sizes[s]) for s in src], np.int64)
        if len(_ORDER_CACHE) > 8:
            _ORDER_CACHE.clear()
        _ORDER_CACHE[key] = order
    return order


class WorkerFailure:
    """An :class:`EntityKitError` met in a ``DataLoader`` worker, carried to the main process as data
    (its class, problem, path and item; picklable)."""

    def __init__(self, error: EntityKitError):
        kind = type(error) if type(error) in (EntityKitError, DatasetError) else DatasetError
        self.kind, self.problem, self.path, self.item = kind, error.problem, error.path, error.item

    def error(self) -> EntityKitError:
        return self.kind(self.problem, self.path, self.item)


def raise_failure(batch: Any) -> None:
    """Raise the error of a batch that :func:`collate` returned as a :class:`WorkerFailure`."""
    if isinstance(batch, WorkerFailure):
        raise batch.error()


def collate(batch):
    """A list of samples → (images, targets); the first :class:`WorkerFailure` instead, if any."""
    for sample in batch:
        if isinstance(sample, WorkerFailure):
            return sample
    images, targets = zip(*batch)
    return list(images), list(targets)
