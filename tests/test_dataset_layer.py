"""One dataset layer: every command opens datasets with ``EntityDataset.open`` and check's rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.data import JsonSource
from entitykit.dataset import EntityDataset
from entitykit.errors import DatasetError, ProblemsError
from entitykit.masks import encode_id_map, rle_bbox
from entitykit.merge import infer_split, merge_datasets
from entitykit.pack import pack_dataset, verify_pack
from entitykit.predict import dataset_inputs
from entitykit.stats import dataset_stats

runner = CliRunner()


@pytest.fixture
def ds_path(tmp_path) -> Path:
    (tmp_path / "imgs").mkdir()
    images, anns = [], []
    for i in (1, 2):
        m = np.zeros((6, 8), np.int64)
        m[:3] = 1
        m[3:, : 2 + i] = 2
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": 6, "width": 8})
        ids, rles, areas = encode_id_map(m)
        for rle, a, b in zip(rles, areas.tolist(), rle_bbox(rles).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle, "area": a,
                         "bbox": b, "iscrowd": 0})
    EntityDataset(images, anns, info={"split": "train"}, image_root=tmp_path / "imgs").save(tmp_path / "train.json")
    return tmp_path / "train.json"


def test_open_never_changes_the_callers_object(ds_path, tmp_path):
    ds = EntityDataset.load(ds_path)
    before = (ds.image_root, copy.deepcopy(ds.images), copy.deepcopy(ds.annotations))
    other = tmp_path / "elsewhere"
    (tmp_path / "elsewhere").mkdir()
    for p in (tmp_path / "imgs").iterdir():
        (other / p.name).write_bytes(p.read_bytes())
    opened = EntityDataset.open(ds, image_root=other)
    assert opened is not ds and opened.image_root == other
    # every command that takes a dataset object and an image folder leaves the object alone
    check_dataset(ds, image_root=other)
    JsonSource(ds, image_root=other).load(0)
    pack_dataset(ds, tmp_path / "p", image_root=other)
    assert verify_pack(tmp_path / "p", ds, image_root=other) == []
    dataset_inputs(ds, image_root=other)
    merge_datasets([ds], image_roots={ds.images[0].get("source", "train"): other}, hash_images=False)
    assert (ds.image_root, ds.images, ds.annotations) == before


def test_every_command_applies_the_same_rules(ds_path, tmp_path):
    """A schema problem is refused by every command that opens the dataset, with check's own words."""
    data = json.loads(ds_path.read_text())
    data["images"][1]["height"] = "6"  # a string height
    bad = tmp_path / "bad_train.json"
    bad.write_text(json.dumps(data))
    expected = "height/width must be positive integers, got '6'×8"
    assert expected in str(check_dataset(bad).problems[0])
    calls = {
        "open": lambda: EntityDataset.open(bad),
        "stats": lambda: dataset_stats(bad),
        "json source": lambda: JsonSource(bad),
        "pack": lambda: pack_dataset(bad, tmp_path / "p"),
        "predict inputs": lambda: dataset_inputs(bad),
        "merge": lambda: merge_datasets([bad], hash_images=False),
    }
    for name, call in calls.items():
        with pytest.raises(DatasetError) as e:
            call()
        assert expected in str(e.value) and str(bad) in str(e.value), name
    for args in (["info", str(bad)], ["idmaps", str(bad), "-o", str(tmp_path / "ids")],
                 ["pack", str(bad), "-o", str(tmp_path / "p2")], ["check", str(bad), "-q"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and expected in " ".join(res.output.split()), args
        assert "Traceback" not in res.output
    assert not (tmp_path / "ids").exists() and not (tmp_path / "p2").exists()


def test_problems_are_listed_together(ds_path, tmp_path):
    data = json.loads(ds_path.read_text())
    data["images"][0]["id"] = True
    data["annotations"][0]["image_id"] = [1]
    data["annotations"][1]["area"] = float("nan")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ProblemsError) as e:
        EntityDataset.open(bad)
    texts = [str(p) for p in e.value.problems]
    assert any("images[0]" in t and "image id must be an integer, got True" in t for t in texts)
    assert any("annotations[0]" in t and "image_id must be an integer, got [1]" in t for t in texts)
    assert any("annotations[1]" in t and "area must be a finite number" in t for t in texts)


def test_merge_reads_the_split_a_converter_recorded(ds_path, tmp_path):
    data = json.loads(ds_path.read_text())
    del data["info"]["split"]
    data["info"]["conversion"] = {"from": "cityscapes", "split": "val"}
    p = tmp_path / "cs.json"  # no split word in the name
    p.write_text(json.dumps(data))
    ds = EntityDataset.load(p)
    assert infer_split(ds) == ("val", "info.conversion.split")
    data["info"]["conversion"]["split"] = "training"  # ADE20K's word
    p.write_text(json.dumps(data))
    assert infer_split(EntityDataset.load(p))[0] == "train"
    merged = merge_datasets([p], hash_images=False)
    assert merged.info["split"] == "train"


def test_file_names_unique_except_merge_copies(ds_path, tmp_path):
    data = json.loads(ds_path.read_text())
    data["images"][1]["file_name"] = "1.PNG"
    bad = tmp_path / "dup.json"
    bad.write_text(json.dumps(data))
    assert any("file_name '1.PNG' is also image 1" in str(p) for p in check_dataset(bad).problems)
    merged = merge_datasets([ds_path], total=5, hash_images=False)  # repeated copies share their file
    merged.save(tmp_path / "m.json")
    assert check_dataset(tmp_path / "m.json").ok
