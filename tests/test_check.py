"""`entitykit check` finds each kind of broken entity dataset and names the item."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.dataset import EntityDataset
from entitykit.masks import encode_id_map, encode_mask

runner = CliRunner()


@pytest.fixture
def good(tmp_path):
    """Two 6×8 images with three and two entities, image files present."""
    (tmp_path / "img").mkdir()
    maps = [np.zeros((6, 8), np.int64), np.zeros((6, 8), np.int64)]
    maps[0][:3] = 1
    maps[0][3:, :4] = 2
    maps[0][4:, 5:] = 3
    maps[1][1:5, 1:7] = 5
    maps[1][0, 0] = 9
    images, anns = [], []
    for i, m in enumerate(maps, start=1):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 6, "width": 8})
        ids, rles, areas = encode_id_map(m)
        from entitykit.masks import rle_bbox
        for rle, area, box in zip(rles, areas.tolist(), rle_bbox(rles).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle,
                         "area": area, "bbox": box, "iscrowd": 0})
    ds = EntityDataset(images=images, annotations=anns, image_root=tmp_path / "img")
    path = tmp_path / "ents.json"
    ds.save(path)
    return path


def _broken(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    out = path.with_name("broken.json")
    out.write_text(json.dumps(data))
    return out


def _problems(path):
    report = check_dataset(path)
    return [str(p) for p in report.problems]


def test_good_dataset_passes(good):
    report = check_dataset(good)
    assert report.ok and report.checked_image_files and report.annotations == 5


def _overlap(d):
    m = np.zeros((6, 8), bool)
    m[2:4, 2:4] = True  # 2 px over entity 1 (rows 0-2), 2 px over entity 2 (rows 3-5, cols 0-3)
    rle = encode_mask(m)
    d["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "segmentation": rle, "area": 4,
                             "bbox": [2, 2, 2, 2], "iscrowd": 0})


CASES = {
    "overlap": (_overlap, ["image 1", "entities overlap (4 px", "annotations 1 and 99: 2 px", "annotations 2 and 99: 2 px"]),
    "area": (lambda d: d["annotations"][0].update(area=5), ["annotation 1", "area 5 ≠ mask pixel count 24"]),
    "bbox": (lambda d: d["annotations"][0].update(bbox=[0, 0, 8, 2]), ["annotation 1", "bbox [0, 0, 8, 2] ≠ tight mask box [0, 0, 8, 3]"]),
    "rle size": (lambda d: d["annotations"][1]["segmentation"].update(size=[12, 16]), ["annotation 2", "RLE size [12, 16] differs", "[6, 8]"]),
    "rle counts": (lambda d: d["annotations"][1].update(segmentation=dict(encode_mask(np.ones((5, 8), bool)), size=[6, 8])),
                   ["annotation 2", "RLE counts do not cover"]),
    "dup ann id": (lambda d: d["annotations"][1].update(id=1), ["annotation 1", "duplicate annotation id"]),
    "ann id 0": (lambda d: d["annotations"][0].update(id=0), ["annotation 0", "≥ 1"]),
    "dup image id": (lambda d: d["images"][1].update(id=1), ["image 1", "duplicate image id"]),
    "unknown image": (lambda d: d["annotations"][0].update(image_id=7), ["image 7", "unknown image"]),
    "category": (lambda d: d["annotations"][0].update(category_id=3), ["annotation 1", "category_id is 3"]),
    "categories": (lambda d: d.update(categories=[{"id": 1, "name": "entity"}, {"id": 2, "name": "x"}]), ["has 2 categories"]),
    "missing key": (lambda d: d["annotations"][0].pop("bbox"), ["annotations[0]", "missing keys: bbox"]),
    "list counts": (lambda d: d["annotations"][0]["segmentation"].update(counts=[0, 48]), ["compressed string"]),
    "image file": (lambda d: d["images"][1].update(file_name="nope.jpg"), ["image 2", "image file not found"]),
    "image size": (lambda d: d["images"][0].update(width=9), ["image 1", "RLE size [6, 8] differs"]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_problem_is_found_and_named(good, case):
    fn, needles = CASES[case]
    problems = _problems(_broken(good, fn))
    text = "\n".join(problems)
    assert problems, case
    for needle in needles:
        assert needle in text, (needle, text)
    assert all(p.startswith(str(good.with_name("broken.json"))) for p in problems)


def test_check_cli_exit_codes(good):
    assert runner.invoke(app, ["check", str(good), "-q"]).exit_code == 0
    bad = _broken(good, CASES["overlap"][0])
    result = runner.invoke(app, ["check", str(bad), "-q"])
    assert result.exit_code == 1
    assert "entities overlap" in result.output
    result = runner.invoke(app, ["check", str(bad), "-q", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


def test_check_malformed_json_is_a_clear_error(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2")
    result = runner.invoke(app, ["check", str(p)])
    assert result.exit_code == 1 and "not valid JSON" in result.output and "x.json" in result.output
