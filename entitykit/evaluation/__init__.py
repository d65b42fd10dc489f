"""APe scoring: pycocotools-exact COCO mask AP for entities, with non-overlap enforced.

    from entitykit.evaluation import evaluate
    r = evaluate("val_entities.json", "predictions/")
    r.stats        # the 12 COCO numbers (APe, APe50, APe75, APe_s/m/l, AR1, AR10, AR100, AR_s/m/l)
    r.pq           # class-agnostic PQ / SQ / RQ
"""

from .api import EvalResult, evaluate
from .ape import STAT_NAMES
from .overlap import OVERLAP_MODES
from .predictions import ENTITYKIT_FORMAT, FORMATS

__all__ = ["evaluate", "EvalResult", "STAT_NAMES", "OVERLAP_MODES", "ENTITYKIT_FORMAT", "FORMATS"]
