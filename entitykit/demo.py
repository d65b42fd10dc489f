"""`entitykit demo`: the whole job on an embedded default, with nothing to download.

Today: synthesize a COCO-panoptic dataset → convert it to entities → check it → statistics → id
maps. Each stage is the same library call a user makes on real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .check import CheckReport, check_dataset
from .convert import convert_coco_panoptic
from .dataset import EntityDataset
from .errors import EntityKitError
from .stats import DatasetStats, dataset_stats
from .synth import write_synthetic_panoptic


@dataclass
class DemoResult:
    out_dir: Path
    entities_json: Path
    id_maps: Path
    dataset: EntityDataset
    check: CheckReport
    stats: DatasetStats


def run_demo(
    out_dir: str | Path = "entitykit-demo",
    *,
    images: int = 24,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> DemoResult:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise EntityKitError("demo folder exists and is not empty (use --overwrite)", out_dir)
    panoptic_json = write_synthetic_panoptic(
        out_dir / "synthetic", images, height=240, width=320, segments=20, seed=seed, overwrite=True, progress=progress
    )
    ds = convert_coco_panoptic(
        panoptic_json, image_root=out_dir / "synthetic" / "images", source="synthetic", workers=workers, progress=progress
    )
    entities_json = out_dir / "entities.json"
    ds.save(entities_json)
    report = check_dataset(entities_json, progress=progress)
    if not report.ok:  # would be a bug in entitykit itself
        raise EntityKitError(f"demo dataset failed its check: {report.problems[0]}", entities_json)
    id_maps = out_dir / "id_maps"
    ds.export_id_maps(id_maps, overwrite=True, progress=progress)
    return DemoResult(out_dir, entities_json, id_maps, ds, report, dataset_stats(ds))
