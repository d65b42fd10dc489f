"""Converters: source datasets → the entity format (see docs/entity-format.md)."""

from .coco_panoptic import convert_coco_panoptic

__all__ = ["convert_coco_panoptic"]
