"""APe scoring: pycocotools-exact COCO mask AP for entities, with non-overlap enforced.

    from entitykit.evaluation import evaluate
    r = evaluate("val_entities.json", "predictions/")
    r.stats        # the 12 COCO numbers (APe, APe50, APe75, APe_s/m/l, AR1, AR10, AR100, AR_s/m/l)
    r.pq           # class-agnostic PQ / SQ / RQ

Importing this package imports no numpy: ``evaluate`` starts reading its input files before it
imports the rest of the scorer (``_ahead``); the other names are imported on first use.
"""

from typing import Any

from .api import EvalResult, evaluate

__all__ = ["evaluate", "EvalResult", "STAT_NAMES", "OVERLAP_MODES", "ENTITYKIT_FORMAT", "FORMATS"]

_LAZY = {"STAT_NAMES": "ape", "OVERLAP_MODES": "overlap", "ENTITYKIT_FORMAT": "predictions", "FORMATS": "predictions"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module  # noqa: PLC0415

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
