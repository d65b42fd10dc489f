"""Cityscapes, ADE20K (both forms), EntitySeg and SAM converters on hand-made fixtures covering each
encoding rule, plus the real ADE20K samples; every output must pass `check`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from conftest import shared_sample
from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.convert import convert_ade20k, convert_cityscapes, convert_entityseg, convert_sam
from entitykit.convert.ade20k import INSTANCE_TO_SEMANTIC
from entitykit.errors import DatasetError
from entitykit.masks import encode_mask

runner = CliRunner()


def _areas_by(ds, key="source_category"):
    out = {}
    for a in ds.annotations:
        out.setdefault(a.get(key), []).append(a["area"])
    return {k: sorted(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ Cityscapes
def _cityscapes(root: Path, *, bad_label=False):
    ids = np.zeros((8, 10), np.int64)
    ids[:, :] = 7  # road
    ids[0, :3] = 23  # sky, left …
    ids[0, 7:] = 23  # … and right: one entity
    ids[3:5, 1:3] = 26001  # car instance 1
    ids[3:5, 5:7] = 26002  # car instance 2
    ids[6, 0:4] = 26  # car group without instance id → crowd
    ids[7, 0] = 24000  # person, instance index 0
    ids[7, 9] = 4  # 'static': not evaluated → void
    ids[6, 9] = 29001  # caravan instance: not evaluated → void
    ids[5, 9] = 0  # unlabeled → void
    city = root / "gtFine" / "val" / "aachen"
    city.mkdir(parents=True)
    stem = "aachen_000000_000019"
    Image.fromarray(ids.astype(np.uint16)).save(city / f"{stem}_gtFine_instanceIds.png")
    labels = np.where(ids >= 1000, ids // 1000, ids)
    if bad_label:
        labels[0, 0] = 8
    Image.fromarray(labels.astype(np.uint8)).save(city / f"{stem}_gtFine_labelIds.png")
    img = root / "leftImg8bit" / "val" / "aachen"
    img.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(img / f"{stem}_leftImg8bit.png")
    return root


def test_cityscapes_rules(tmp_path):
    ds = convert_cityscapes(_cityscapes(tmp_path))
    assert _areas_by(ds) == {"road": [80 - 6 - 8 - 4 - 1 - 3], "sky": [6], "car": [4, 4], "person": [1]}
    assert ds.images[0]["source_id"] == "aachen_000000_000019"
    assert ds.images[0]["file_name"] == "val/aachen/aachen_000000_000019_leftImg8bit.png"
    conv = ds.info["conversion"]
    assert conv["crowd_segments"] == 1 and conv["things"] == 3 and conv["stuff"] == 2
    assert conv["void_fraction"] == pytest.approx((4 + 3) / 80)  # crowd group (4) + static, caravan, unlabeled
    assert check_dataset(ds).ok  # image files found under leftImg8bit/


def test_cityscapes_crowd_keep_and_labelids_crosscheck(tmp_path):
    ds = convert_cityscapes(_cityscapes(tmp_path / "a"), crowd="keep")
    crowd = [a for a in ds.annotations if a["iscrowd"]]
    assert [(a["source_category"], a["area"]) for a in crowd] == [("car", 4)]
    with pytest.raises(DatasetError, match="labelIds disagree with instanceIds at 1 pixels"):
        convert_cityscapes(_cityscapes(tmp_path / "b", bad_label=True))


def test_cityscapes_cli_missing_folder(tmp_path):
    result = runner.invoke(app, ["convert", "cityscapes", str(tmp_path), "-o", str(tmp_path / "o.json"), "-q"])
    assert result.exit_code == 1 and "gtFine/val not found" in result.output
    assert not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------------------------------ ADE20K
def _ade_challenge(root: Path, *, instances=True, bad_class=False):
    sem = np.ones((6, 8), np.uint8)  # wall (stuff)
    sem[0, :2] = 3  # sky …
    sem[5, 6:] = 3  # … disconnected
    sem[2:4, 0:2] = 13  # person (thing)
    sem[2:4, 4:8] = 20  # chairs (thing)
    sem[5, 0] = 0  # void
    inst = np.zeros((6, 8, 3), np.uint8)
    person_cls = INSTANCE_TO_SEMANTIC.index(13) + 1
    chair_cls = INSTANCE_TO_SEMANTIC.index(20) + 1
    inst[2:4, 0:2] = (person_cls, 1, 0)
    inst[1, 0] = (person_cls, 1, 0)  # instance pixel over wall: instances overwrite
    inst[2:4, 4:6] = (chair_cls, 2, 0)  # chair 2; columns 6-7 of the chair region stay uncovered → void
    if bad_class:
        inst[2, 4] = (chair_cls + 1, 2, 0)
    for sub in ("annotations/validation", "images/validation") + (("annotations_instance/validation",) if instances else ()):
        (root / sub).mkdir(parents=True)
    Image.fromarray(sem).save(root / "annotations/validation/ADE_val_00000001.png")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images/validation/ADE_val_00000001.jpg")
    if instances:
        Image.fromarray(inst).save(root / "annotations_instance/validation/ADE_val_00000001.png")
    return root


def test_ade20k_challenge_rules(tmp_path):
    ds = convert_ade20k(_ade_challenge(tmp_path))
    # wall 48 − sky 4 − person 4 − chairs 8 − void 1 − overwritten 1 = 30
    assert _areas_by(ds) == {1: [30], 3: [4], 13: [5], 20: [4]}
    assert [a["isthing"] for a in ds.annotations] == [0, 0, 1, 1]
    assert ds.info["conversion"]["void_fraction"] == pytest.approx((1 + 4) / 48)
    assert check_dataset(ds).ok


def test_ade20k_challenge_needs_instances_or_semantic_only(tmp_path):
    root = _ade_challenge(tmp_path, instances=False)
    with pytest.raises(DatasetError, match="--semantic-only"):
        convert_ade20k(root)
    ds = convert_ade20k(root, semantic_only=True)
    assert _areas_by(ds) == {1: [31], 3: [4], 13: [4], 20: [8]}
    assert ds.info["conversion"]["semantic_only"] is True


def test_ade20k_instance_with_two_classes_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="instance 2 has instance-class value"):
        convert_ade20k(_ade_challenge(tmp_path, bad_class=True))


def test_ade20k_real_sample_semantic_only():
    root = shared_sample("ade20k_sceneparsing_sample")
    ds = convert_ade20k(root, semantic_dir=root / "annotations", image_dir=root / "images", semantic_only=True)
    assert check_dataset(ds).ok  # image files checked too
    for img in ds.images:
        sem = np.array(Image.open(root / "annotations" / f"{img['source_id']}.png"))
        classes = [c for c in np.unique(sem).tolist() if c]
        anns = [a for a in ds.annotations if a["image_id"] == img["id"]]
        assert len(anns) == len(classes)
        assert sum(a["area"] for a in anns) == int((sem > 0).sum())
    assert ds.annotations[0]["source_category"] == "wall"


def _full_seg(cls: np.ndarray, inst: np.ndarray) -> np.ndarray:
    return np.stack([cls // 256 * 10, cls % 256, inst], -1).astype(np.uint8)


def test_ade20k_full_form_rules(tmp_path):
    cls = np.full((4, 5), 2855)
    cls[0] = 312
    cls[3, 4] = 0  # void
    inst = np.zeros((4, 5), np.int64)
    inst[1:3, :2] = 15
    inst[1:3, 2:] = 30
    inst[3, :4] = 15  # same B as above but contiguous? no — same (class, B) pair → same entity
    inst[0] = 30  # class 312 with B 30: a different entity than (2855, 30)
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(_full_seg(cls, inst)).save(tmp_path / "a" / "b" / "ADE_x.y_seg.png")
    Image.new("RGB", (5, 4)).save(tmp_path / "a" / "b" / "ADE_x.y.jpg")  # the image beside its _seg.png (its size checked)
    ds = convert_ade20k(tmp_path / "a", form="full")
    assert _areas_by(ds) == {312: [5], 2855: [6, 8]}
    assert ds.images[0]["file_name"] == "b/ADE_x.y.jpg"
    assert check_dataset(ds, check_images=False).ok


def test_ade20k_full_real_sample(tmp_path):
    root = shared_sample("ade20k_sceneparsing_sample")
    (tmp_path / "full").mkdir()
    shutil.copy(root / "convertFromADE" / "ADE_train_00000970_raw.png", tmp_path / "full" / "ADE_train_00000970_seg.png")
    seg = Image.open(tmp_path / "full" / "ADE_train_00000970_seg.png")
    Image.new("RGB", seg.size).save(tmp_path / "full" / "ADE_train_00000970.jpg")  # beside its _seg.png (its size checked)
    ds = convert_ade20k(tmp_path / "full", form="full")
    rgb = np.array(Image.open(tmp_path / "full" / "ADE_train_00000970_seg.png")).astype(int)
    cls = rgb[..., 0] // 10 * 256 + rgb[..., 1]
    pairs = {(c, b) for c, b in zip(cls.ravel().tolist(), rgb[..., 2].ravel().tolist()) if c}
    assert len(ds.annotations) == len(pairs) == 17
    assert sum(a["area"] for a in ds.annotations) == int((cls > 0).sum())
    assert check_dataset(ds, check_images=False).ok


# ------------------------------------------------------------------------------------------ EntitySeg
def _entityseg(tmp_path, *, overlap=False, lowres=False):
    h, w = 6, 8
    a = np.zeros((h, w), bool)
    a[:3] = True
    b = np.zeros((h, w), bool)
    b[3:, :4] = True
    c = np.zeros((h, w), bool)
    c[2 if overlap else 3:, 5:] = True
    rle_a = encode_mask(a)
    unc = {"size": [h, w], "counts": [int(v) for v in np.diff(np.flatnonzero(np.diff(np.r_[-1, b.ravel(order="F").astype(int), -1])))]}
    poly = [[5.0, 3.0 if not overlap else 2.0, 8.0, 3.0 if not overlap else 2.0, 8.0, 6.0, 5.0, 6.0]]
    anns = [
        {"id": 10, "image_id": 7, "segmentation": rle_a, "category_id": 1, "category_id_ori": 3, "iscrowd": 0},
        {"id": 11, "image_id": 7, "segmentation": unc, "category_id": 1, "category_id_ori": 5},
        {"id": 12, "image_id": 7, "segmentation": encode_mask(c) if not lowres else dict(encode_mask(np.ones((3, 4), bool))),
         "category_id": 1, "category_id_ori": 3},
    ]
    del poly
    data = {"images": [{"id": 7, "file_name": "sub/x.jpg", "height": h, "width": w}], "annotations": anns,
            "categories": [{"id": 3, "name": "sky", "type": "stuff"}, {"id": 5, "name": "dog", "type": "thing"}]}
    path = tmp_path / "entityseg_train.json"
    path.write_text(json.dumps(data))
    return path


def test_entityseg_normalises_and_keeps_provenance(tmp_path):
    ds = convert_entityseg(_entityseg(tmp_path))
    assert [a["area"] for a in ds.annotations] == [24, 12, 9]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in ds.annotations)
    assert [(a["category_id_ori"], a["source_category"], a["isthing"], a["source_id"]) for a in ds.annotations] == [
        (3, "sky", 0, 10), (5, "dog", 1, 11), (3, "sky", 0, 12)]
    assert ds.images[0]["id"] == 7
    assert check_dataset(ds).ok


def test_entityseg_overlap_needs_a_rule(tmp_path):
    path = _entityseg(tmp_path, overlap=True)
    with pytest.raises(DatasetError, match="annotation 10 and annotation 12 overlap by 3 px"):
        convert_entityseg(path)
    ds = convert_entityseg(path, overlap="small-wins")
    assert [a["area"] for a in ds.annotations] == [21, 12, 12]
    assert ds.info["conversion"]["overlap_rule"] == "small-wins"
    assert ds.info["conversion"]["overlap_resolution"] == {"changed_masks": 1, "dropped_masks": 0, "contested_pixels": 3}
    ds = convert_entityseg(path, overlap="large-wins")
    assert [a["area"] for a in ds.annotations] == [24, 12, 9]
    assert check_dataset(ds).ok


def test_entityseg_rle_size_mismatch_names_the_annotation(tmp_path):
    result = runner.invoke(app, ["convert", "entityseg", str(_entityseg(tmp_path, lowres=True)), "-o", str(tmp_path / "o.json"), "-q"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "annotation 12 (image 7): RLE size [3, 4] differs from the image's [height, width] [6, 8]" in text
    assert not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------------------------------ SAM
def _sam(tmp_path):
    whole = np.zeros((6, 8), bool)
    whole[1:5, 1:7] = True
    part = np.zeros((6, 8), bool)
    part[1:3, 1:4] = True
    other = np.zeros((6, 8), bool)
    other[5, :] = True
    anns = [
        {"id": 1, "segmentation": encode_mask(whole), "area": 24, "predicted_iou": 0.9, "stability_score": 0.80},
        {"id": 2, "segmentation": encode_mask(part), "area": 6, "predicted_iou": 0.7, "stability_score": 0.95},
        {"id": 3, "segmentation": encode_mask(other), "area": 8, "predicted_iou": 0.8, "stability_score": 0.90},
    ]
    (tmp_path / "sa").mkdir()
    (tmp_path / "sa" / "sa_1.json").write_text(json.dumps(
        {"image": {"image_id": 1, "file_name": "sa_1.jpg", "height": 6, "width": 8}, "annotations": anns}))
    (tmp_path / "sa" / "sa_2.json").write_text(json.dumps(anns))  # AMG coco_rle list form
    return tmp_path / "sa"


@pytest.mark.parametrize("rule,areas,changed", [
    ("score", [24, 8], 1),  # whole (0.9) beats part (0.7): part dropped
    ("small-wins", [18, 6, 8], 1),
    ("large-wins", [24, 8], 1),
])
def test_sam_rules(tmp_path, rule, areas, changed):
    ds = convert_sam(_sam(tmp_path), rule=rule)
    per_image = [[a["area"] for a in ds.annotations if a["image_id"] == img["id"]] for img in ds.images]
    assert per_image == [areas, areas]
    res = ds.info["conversion"]["overlap_resolution"]
    assert res["changed_masks"] == 2 * changed and res["contested_pixels"] == 2 * 6
    assert ds.info["conversion"]["overlap_rule"] == rule
    assert [img["file_name"] for img in ds.images] == ["sa_1.jpg", "sa_2.jpg"]
    assert check_dataset(ds).ok


def test_sam_score_key_and_cli(tmp_path):
    ds = convert_sam(_sam(tmp_path), rule="score", score_key="stability_score")
    assert [a["area"] for a in ds.annotations if a["image_id"] == 1] == [18, 6, 8]  # part (0.95) wins
    result = runner.invoke(app, ["convert", "sam", str(tmp_path / "sa"), "--rule", "score", "--score-key", "nope",
                                 "-o", str(tmp_path / "o.json"), "-q"])
    assert result.exit_code == 1 and "no 'nope'" in result.output and "sa_1.json" in result.output
    result = runner.invoke(app, ["convert", "sam", str(tmp_path / "sa"), "--rule", "small-wins", "-o", str(tmp_path / "o.json")])
    assert result.exit_code == 0 and "small-wins" in result.output
    # decoded masks of the output are disjoint and cover what the inputs covered
    data = json.loads((tmp_path / "o.json").read_text())
    rles = [{"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()} for a in data["annotations"] if a["image_id"] == 1]
    assert mask_utils.decode(rles).sum(2).max() == 1
