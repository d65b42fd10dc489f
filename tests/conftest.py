"""Shared fixtures: tiny hand-made COCO-panoptic datasets and the real samples in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from panopticapi.utils import id2rgb
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_sample(name: str) -> Path:
    """A folder of ../shared/data, or a clean skip when the samples are not beside this checkout."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"sample data {path} not present")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on a shared, busy CPU, OpenMP threads waiting on each other cost seconds per image."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_panoptic(root: Path, id_maps: list[np.ndarray], segments: list[list[dict]] | None = None,
                   *, image_ids: list | None = None, categories: list[dict] | None = None) -> Path:
    """Write a COCO-panoptic dataset from id maps; segments default to one non-crowd per PNG id."""
    png_dir = root / "panoptic"
    png_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, m in enumerate(id_maps):
        image_id = image_ids[i] if image_ids else i + 1
        stem = f"img_{i}"
        Image.fromarray(id2rgb(m.astype(np.int64))).save(png_dir / f"{stem}.png")
        if segments is None:
            segs = [{"id": int(s), "category_id": 1, "iscrowd": 0} for s in np.unique(m) if s != 0]
        else:
            segs = segments[i]
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": m.shape[0], "width": m.shape[1]})
        annotations.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segs})
    path = root / "panoptic.json"
    cats = categories if categories is not None else [
        {"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path
