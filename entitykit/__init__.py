"""entitykit: convert, merge, train, predict and score categoryless entity segmentation."""

from __future__ import annotations

__version__ = "0.1.0"

from .dataset import EntityDataset  # noqa: E402
from .errors import DatasetError, EntityKitError, PredictionError  # noqa: E402

__all__ = ["EntityDataset", "EntityKitError", "DatasetError", "PredictionError", "__version__"]
