#!/usr/bin/env bash
# Recipe: score a panoptic model's output as an entity model (the paper's Table 2a), under APe.
#
#   bash examples/score_panoptic_model.sh [GT_JSON PRED_JSON]
#
# Defaults to panopticapi's PQ test data in ../shared/data/coco_panoptic_pq_testdata (GT and
# predictions in COCO panoptic format, PNG folders named like the JSONs). Panoptic predictions
# carry no scores: when none is present every segment scores 1.0 and file order ranks them (stated
# in the output's warnings); predictions of detectron2/Mask2Former exports with a `score` per
# segment are ranked by it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sample="$here/../../shared/data/coco_panoptic_pq_testdata"
gt="${1:-$sample/coco_gt.json}"
pred="${2:-$sample/coco_pred.json}"
entitykit eval "$gt" "$pred" --json panoptic_as_entities.json --pr-curve panoptic_as_entities_pr.png
echo "every number, per image and per source: panoptic_as_entities.json; PR curves: panoptic_as_entities_pr.png"
