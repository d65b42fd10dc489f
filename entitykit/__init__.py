"""entitykit: convert, merge, train, predict and score categoryless entity segmentation."""

from __future__ import annotations

from typing import Any

from .errors import DatasetError, EntityKitError, PredictionError  # noqa: E402


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("entitykit")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"


__all__ = ["EntityDataset", "EntityKitError", "DatasetError", "PredictionError", "__version__"]


def __getattr__(name: str) -> Any:
    # __version__ is looked up on first use: importlib.metadata costs ~25 ms of every command's start-up.
    if name == "__version__":
        v = _version()
        globals()["__version__"] = v
        return v
    # EntityDataset is imported on first use: `import entitykit.cli` (every command's start-up)
    # need not pay for numpy, Pillow and pycocotools before it knows what it will do.
    if name == "EntityDataset":
        from .dataset import EntityDataset  # noqa: PLC0415

        return EntityDataset
    raise AttributeError(f"module 'entitykit' has no attribute {name!r}")
