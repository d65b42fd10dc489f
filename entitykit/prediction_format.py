"""The prediction format: what ``predict`` writes, what training's validation scores, what ``eval`` reads.

Specified in ``docs/prediction-format.md``. An image's entities are an id map (the paper's P,
value k = entity k, 0 = none) plus one score per id (S). This module turns one image's
(id map, scores) into both record kinds entitykit writes, so every writer agrees:

- a ``segments`` list for ``predictions.json``: ``{id, score, area, bbox}`` per entity present;
- COCO results records ``{image_id, category_id: 1, segmentation: RLE, score}`` (pycocotools'
  ``loadRes`` format), for ``coco_results.json`` and for scoring in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .masks import encode_id_map, rle_bbox

PREDICTIONS_FORMAT = "entitykit-predictions"
PREDICTIONS_FORMAT_VERSION = 1
PREDICTIONS_JSON = "predictions.json"
COCO_RESULTS_JSON = "coco_results.json"
ID_MAP_DOC = "16-bit PNG; value k is entity k (segments[].id), 0 is no entity"


def entity_records(image_id: Any, id_map: np.ndarray, scores: np.ndarray) -> tuple[list[dict], list[dict]]:
    """(segments, coco_results) of one image.

    id_map: H×W integer array, 0 = no entity, k ≥ 1 = entity k; scores: float array, ``scores[k-1]``
    is entity k's score. Ids absent from the map get no record (an entity without pixels cannot
    be scored). Areas are pixel counts, boxes ``[x, y, w, h]`` tight integer boxes (pycocotools).
    """
    ids, rles, areas = encode_id_map(id_map)
    boxes = rle_bbox(rles)
    segments, results = [], []
    for eid, rle, area, box in zip(ids.tolist(), rles, areas.tolist(), boxes.tolist()):
        score = float(scores[eid - 1])
        segments.append({"id": eid, "score": score, "area": int(area), "bbox": [int(v) for v in box]})
        results.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "score": score})
    return segments, results
