"""Converters: source datasets → the entity format (see docs/entity-format.md)."""

from ._common import OVERLAP_RULES, resolve_overlaps
from .ade20k import convert_ade20k, convert_ade20k_sharded
from .cityscapes import convert_cityscapes, convert_cityscapes_sharded
from .coco_panoptic import convert_coco_panoptic, convert_coco_panoptic_sharded
from .entityseg import convert_entityseg, convert_entityseg_sharded
from ._sharded import convert_on_dask, merge_parts
from .sam import convert_sam, convert_sam_sharded

__all__ = [
    "OVERLAP_RULES",
    "convert_ade20k",
    "convert_ade20k_sharded",
    "convert_cityscapes",
    "convert_cityscapes_sharded",
    "convert_coco_panoptic",
    "convert_coco_panoptic_sharded",
    "convert_entityseg",
    "convert_entityseg_sharded",
    "convert_on_dask",
    "convert_sam",
    "convert_sam_sharded",
    "merge_parts",
    "resolve_overlaps",
]
