#!/usr/bin/env bash
# Recipe: the paper's Table 4 training mixes (COCO, ADE20K, Cityscapes; CO+A; CO+A+CI), each
# pre-sampled to 141,944 images, never mixing train and val.
#
#   bash examples/merge_table4.sh DATA_ROOT OUT_DIR
#
# DATA_ROOT holds coco/ (annotations/panoptic_{train,val}2017.json + PNG folders, train2017/, val2017/),
# ADEChallengeData2016/ (images/, annotations/, annotations_instance/) and cityscapes/ (gtFine/, leftImg8bit/).
set -euo pipefail
data="${1:?DATA_ROOT}"
out="${2:-table4}"
mkdir -p "$out"

# 1. every source → entities (train and val separately)
entitykit convert coco-panoptic "$data/coco/annotations/panoptic_train2017.json" --images "$data/coco/train2017" \
    --source coco -o "$out/coco_train.json" -j 0
entitykit convert coco-panoptic "$data/coco/annotations/panoptic_val2017.json" --images "$data/coco/val2017" \
    --source coco -o "$out/coco_val.json" -j 0
entitykit convert ade20k "$data/ADEChallengeData2016" --split training -o "$out/ade20k_train.json" -j 0
entitykit convert ade20k "$data/ADEChallengeData2016" --split validation -o "$out/ade20k_val.json" -j 0
entitykit convert cityscapes "$data/cityscapes" --split train -o "$out/cityscapes_train.json" -j 0
entitykit convert cityscapes "$data/cityscapes" --split val -o "$out/cityscapes_val.json" -j 0
for f in "$out"/*.json; do entitykit check "$f" -q; done

# 2. the mixes: equal shares, a fixed total of 141,944 images, one seed; validation images held out
holdout=(--holdout "$out/coco_val.json" --holdout "$out/ade20k_val.json" --holdout "$out/cityscapes_val.json")
entitykit merge "$out/coco_train.json" "$out/ade20k_train.json" -o "$out/co_a_train.json" \
    --names coco,ade20k -w coco=1 -w ade20k=1 -n 141944 --seed 0 "${holdout[@]}"
entitykit merge "$out/coco_train.json" "$out/ade20k_train.json" "$out/cityscapes_train.json" -o "$out/co_a_ci_train.json" \
    --names coco,ade20k,cityscapes -w coco=1 -w ade20k=1 -w cityscapes=1 -n 141944 --seed 0 "${holdout[@]}"
entitykit info "$out/co_a_ci_train.json"

# 3. pack for training I/O, then train and score on each validation set (the table's columns)
entitykit pack "$out/co_a_ci_train.json" -o "$out/co_a_ci_train_pack" --verify
echo "train: torchrun --nproc_per_node 8 -m entitykit train examples/configs/r50_1x_coco.toml --train $out/co_a_ci_train_pack -o runs/co_a_ci"
echo "score: entitykit predict --dataset $out/ade20k_val.json -c runs/co_a_ci/model_final.safetensors -o preds_ade && entitykit eval $out/ade20k_val.json preds_ade"
