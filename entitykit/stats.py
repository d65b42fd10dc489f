"""`entitykit info`: what is in an entity dataset, in the terms APe is reported in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import EntityDataset

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
    """Counts, entities-per-image percentiles, S/M/L buckets, coverage and per-source totals."""
    ds = EntityDataset.open(dataset)
    groups = ds.annotations_by_image()
    per_image = np.array([sum(1 for a in groups[img["id"]] if not a.get("iscrowd")) for img in ds.images], np.int64)
    entity_anns = [a for a in ds.annotations if not a.get("iscrowd")]
    areas = np.array([a["area"] for a in entity_anns], np.float64)
    pixels = sum(int(img["height"]) * int(img["width"]) for img in ds.images)
    sources: dict[str, dict[str, int]] = {}
    for img in ds.images:
        s = sources.setdefault(str(img.get("source", "?")), {"images": 0, "entities": 0})
        s["images"] += 1
    for a in entity_anns:
        src = a.get("source") or ds.image_by_id.get(a["image_id"], {}).get("source", "?")
        sources.setdefault(str(src), {"images": 0, "entities": 0})["entities"] += 1
    kinds = Counter(a.get("isthing") for a in entity_anns)
    hs = [int(img["height"]) for img in ds.images] or [0]
    ws = [int(img["width"]) for img in ds.images] or [0]
    pct = np.percentile(per_image, PERCENTILES) if per_image.size else np.zeros(len(PERCENTILES))
    epi = {f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)}
    epi["mean"] = float(per_image.mean()) if per_image.size else 0.0
    return DatasetStats(
        path=str(ds.path) if ds.path else "<dataset>",
        images=len(ds.images),
        entities=len(entity_anns),
        crowd=len(ds.annotations) - len(entity_anns),
        things=kinds.get(1, 0),
        stuff=kinds.get(0, 0),
        entities_per_image=epi,
        area_buckets={
            "small": int((areas < SMALL_MAX).sum()),
            "medium": int(((areas >= SMALL_MAX) & (areas < MEDIUM_MAX)).sum()),
            "large": int((areas >= MEDIUM_MAX).sum()),
        },
        coverage=float(areas.sum() / pixels) if pixels else 0.0,
        image_sizes={"min_height": min(hs), "max_height": max(hs), "min_width": min(ws), "max_width": max(ws)},
        sources=sources,
        empty_images=int((per_image == 0).sum()),
        max_entities_image=ds.images[int(per_image.argmax())]["id"] if per_image.size else None,
    )
