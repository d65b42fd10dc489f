"""`entitykit info`: what is in an entity dataset, in the terms APe is reported in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import EntityDataset, is_sharded

# COCO's area buckets (pixels). For statistics a mask belongs to one bucket: [0, 32²), [32², 96²),
# [96², ∞). (COCOeval's ranges are inclusive at both ends; the scorer handles that.)
SMALL_MAX = 32**2
MEDIUM_MAX = 96**2
PERCENTILES = (0, 5, 25, 50, 75, 95, 100)


@dataclass
class DatasetStats:
    path: str
    images: int
    entities: int
    crowd: int
    things: int
    stuff: int
    entities_per_image: dict[str, float]
    area_buckets: dict[str, int]
    coverage: float
    image_sizes: dict[str, int]
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    empty_images: int = 0
    max_entities_image: Any = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dataset_stats(dataset: EntityDataset | str | Path) -> DatasetStats:
    """Counts, entities-per-image percentiles, S/M/L buckets, coverage and per-source totals.

    Streams a sharded dataset shard by shard (``EntityDataset.parts``: one shard in memory, the
    format's rules across shards): what is kept grows with the number of images (entities per
    image, for the percentiles), never with masks; bucket counts and the covered area are summed
    per shard (areas are pixel counts, whole numbers: the sum is exact in any order).
    Percentiles: ``numpy.percentile``'s default (linear) method over the images.
    A pack (``entitykit pack``) is read whole: its dataset rebuilt by ``EntityPack.to_dataset``.
    """
    from .pack import is_pack  # noqa: PLC0415

    if not isinstance(dataset, EntityDataset) and is_pack(dataset):
        from .pack import EntityPack  # noqa: PLC0415

        with EntityPack(dataset) as pk:  # the packed dataset, rebuilt (masks re-encoded from the id maps)
            ds = pk.to_dataset()
        ds.path = Path(dataset)
        dataset = ds
    ds_path = None
    per_image_parts: list[np.ndarray] = []
    n_images = n_annotations = n_entities = 0
    buckets = {"small": 0, "medium": 0, "large": 0}
    area_sum = 0.0
    pixels = 0
    sources: dict[str, dict[str, int]] = {}
    kinds: Counter = Counter()
    hmin = wmin = None
    hmax = wmax = 0
    best_id, best_n = None, -1
    for ds in EntityDataset.parts(dataset):
        if ds_path is None:  # a sharded dataset is named by its folder, a shard's problems by the shard
            ds_path = str(dataset) if is_sharded(dataset) else (str(ds.path) if ds.path else "<dataset>")
        groups = ds.annotations_by_image()
        per_image = np.array([sum(1 for a in groups[img["id"]] if not a.get("iscrowd")) for img in ds.images], np.int64)
        per_image_parts.append(per_image)
        if per_image.size and int(per_image.max()) > best_n:  # the first image with the most entities
            k = int(per_image.argmax())
            best_id, best_n = ds.images[k]["id"], int(per_image[k])
        entity_anns = [a for a in ds.annotations if not a.get("iscrowd")]
        areas = np.array([a["area"] for a in entity_anns], np.float64)
        buckets["small"] += int((areas < SMALL_MAX).sum())
        buckets["medium"] += int(((areas >= SMALL_MAX) & (areas < MEDIUM_MAX)).sum())
        buckets["large"] += int((areas >= MEDIUM_MAX).sum())
        area_sum += float(areas.sum())
        pixels += sum(int(img["height"]) * int(img["width"]) for img in ds.images)
        for img in ds.images:
            src = sources.setdefault(str(img.get("source", "?")), {"images": 0, "entities": 0})
            src["images"] += 1
        image_by_id = ds.image_by_id
        for a in entity_anns:
            src = a.get("source") or image_by_id.get(a["image_id"], {}).get("source", "?")
            sources.setdefault(str(src), {"images": 0, "entities": 0})["entities"] += 1
        kinds.update(a.get("isthing") for a in entity_anns)
        for img in ds.images:
            h, w = int(img["height"]), int(img["width"])
            hmin = h if hmin is None else min(hmin, h)
            wmin = w if wmin is None else min(wmin, w)
            hmax, wmax = max(hmax, h), max(wmax, w)
        n_images += len(ds.images)
        n_annotations += len(ds.annotations)
        n_entities += len(entity_anns)
        del ds, groups, entity_anns, areas, image_by_id
    per_image = np.concatenate(per_image_parts) if per_image_parts else np.zeros(0, np.int64)
    pct = np.percentile(per_image, PERCENTILES) if per_image.size else np.zeros(len(PERCENTILES))
    epi = {f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)}
    epi["mean"] = float(per_image.mean()) if per_image.size else 0.0
    return DatasetStats(
        path=ds_path or "<dataset>",
        images=n_images,
        entities=n_entities,
        crowd=n_annotations - n_entities,
        things=kinds.get(1, 0),
        stuff=kinds.get(0, 0),
        entities_per_image=epi,
        area_buckets=buckets,
        coverage=float(area_sum / pixels) if pixels else 0.0,
        image_sizes={"min_height": hmin or 0, "max_height": hmax, "min_width": wmin or 0, "max_width": wmax},
        sources=sources,
        empty_images=int((per_image == 0).sum()),
        max_entities_image=best_id,
    )
