"""Limits on what a file may make entitykit allocate, checked before any memory is allocated.

One limit covers images and masks alike: the pixel count of an image (declared in a JSON, or read
from an image header) may not exceed :func:`max_pixels`. The default, 100 million pixels, holds
a 10,000×10,000 photo (every COCO, ADE20K, Cityscapes, EntitySeg and SA-1B image is far below:
EntitySeg's largest are about 4,000×6,000 = 24 MP), while an 8-bit id map of that size already
costs 0.4 GB per array. Raise it with ``entitykit --max-pixels N …``, the environment variable
``ENTITYKIT_MAX_PIXELS`` or :func:`set_max_pixels` (0 = no limit).
"""

from __future__ import annotations

import os

from .errors import EntityKitError

DEFAULT_MAX_PIXELS = 100_000_000
ENV_MAX_PIXELS = "ENTITYKIT_MAX_PIXELS"
_max_pixels: int | None = None


def max_pixels() -> int:
    """The pixel limit in force (0 = none): set_max_pixels, else $ENTITYKIT_MAX_PIXELS, else the default."""
    if _max_pixels is not None:
        return _max_pixels
    raw = os.environ.get(ENV_MAX_PIXELS)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise EntityKitError(f"${ENV_MAX_PIXELS} must be a whole number of pixels, got {raw!r}") from None
    if value < 0:
        raise EntityKitError(f"${ENV_MAX_PIXELS} must be ≥ 0 (0 = no limit), got {value}")
    return value


def set_max_pixels(value: int | None) -> None:
    """Set the limit for this process (None: back to the environment / default; 0: no limit)."""
    global _max_pixels
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise EntityKitError(f"max pixels must be a whole number ≥ 0 (0 = no limit), got {value!r}")
    _max_pixels = value


def check_pixels(height: int, width: int, path: object = None, item: str | None = None) -> None:
    """Refuse an image or mask of ``height``×``width`` over the limit, naming the file and item."""
    limit = max_pixels()
    if limit and height * width > limit:
        raise EntityKitError(
            f"{width}×{height} = {height * width:,} pixels is over the limit of {limit:,} "
            f"(raise it with entitykit --max-pixels N or ${ENV_MAX_PIXELS})", path, item)
