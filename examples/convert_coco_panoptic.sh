#!/usr/bin/env bash
# Recipe: COCO panoptic → entity dataset, checked, with statistics and the paper's id maps.
#
#   bash examples/convert_coco_panoptic.sh [PANOPTIC_JSON PNG_DIR IMAGE_DIR OUT_DIR]
#
# Defaults to the two real COCO val2017 images in ../shared/data/coco_panoptic_sample. For the full
# COCO val set pass annotations/panoptic_val2017.json annotations/panoptic_val2017 val2017 out.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sample="$here/../../shared/data/coco_panoptic_sample"
json="${1:-$sample/panoptic_examples.json}"
pngs="${2:-$sample/panoptic_examples}"
images="${3:-$sample/input_images}"
out="${4:-coco_entities_example}"

entitykit convert coco-panoptic "$json" "$pngs" --images "$images" -o "$out/entities.json" \
    --crowd void --workers 0 --id-maps "$out/id_maps"
entitykit check "$out/entities.json"
entitykit info "$out/entities.json"
python - "$out/entities.json" <<'PY'
import sys
from pycocotools.coco import COCO
coco = COCO(sys.argv[1])  # the entity format is plain COCO: any COCO tool reads it
print(f"pycocotools sees {len(coco.getImgIds())} images, {len(coco.getAnnIds())} entities")
PY
