"""The entity format's reader/writer, id-map export, and `info` statistics on hand-computed data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from typer.testing import CliRunner

from conftest import write_panoptic
from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic
from entitykit.dataset import FORMAT_NAME, FORMAT_VERSION, EntityDataset
from entitykit.errors import DatasetError, EntityKitError
from entitykit.masks import read_id_map_png
from entitykit.stats import dataset_stats

runner = CliRunner()


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 5)))
def test_convert_save_load_id_map_round_trip(tmp_path_factory, m):
    root = tmp_path_factory.mktemp("rt")
    ds = convert_coco_panoptic(write_panoptic(root, [m]))
    ds.save(root / "e.json")
    back = EntityDataset.load(root / "e.json")
    assert back.to_coco() == ds.to_coco()
    # P: value k = k-th entity in file order; same partition as the source
    p = back.id_map(1)
    ids = sorted(set(np.unique(m).tolist()) - {0})
    expected = np.zeros_like(m)
    for k, i in enumerate(ids, start=1):
        expected[m == i] = k
    np.testing.assert_array_equal(p, expected)


def test_file_layout(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (2, 1)).save(tmp_path / "imgs" / "img_0.jpg")  # converters read each image's header (its size)
    ds = convert_coco_panoptic(write_panoptic(tmp_path, [np.array([[1, 2]])]), image_root=tmp_path / "imgs")
    ds.save(tmp_path / "sub" / "e.json")
    data = json.loads((tmp_path / "sub" / "e.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "entity", "supercategory": "entity"}]
    assert data["info"]["format"] == FORMAT_NAME and data["info"]["format_version"] == FORMAT_VERSION
    assert data["info"]["image_root"] == "../imgs"
    assert data["images"][0] == {"id": 1, "file_name": "img_0.jpg", "height": 1, "width": 2, "source": "panoptic"}
    ann = data["annotations"][0]
    assert set(ann) >= {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "source"}
    assert isinstance(ann["segmentation"]["counts"], str)


def test_same_input_same_bytes(tmp_path):
    j = write_panoptic(tmp_path, [np.array([[1, 2], [3, 3]])])
    convert_coco_panoptic(j).save(tmp_path / "a.json")
    convert_coco_panoptic(j, workers=2).save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_export_id_maps_keeps_dots_in_names_and_refuses_to_clobber(tmp_path):
    j = write_panoptic(tmp_path, [np.array([[1, 2], [0, 2]])])
    data = json.loads(j.read_text())
    data["images"][0]["file_name"] = "sub/a.b.c.jpg"
    j.write_text(json.dumps(data))
    ds = convert_coco_panoptic(j)
    out = tmp_path / "ids"
    ds.export_id_maps(out)
    np.testing.assert_array_equal(read_id_map_png(out / "sub" / "a.b.c.png"), [[1, 2], [0, 2]])
    index = json.loads((out / "id_maps.json").read_text())
    assert index["images"][0]["annotation_ids"] == [1, 2]
    with pytest.raises(EntityKitError, match="not empty"):
        ds.export_id_maps(out)
    ds.export_id_maps(out, overwrite=True)


def test_load_rejects_non_coco(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"images": {}}))
    with pytest.raises(DatasetError, match="images"):
        EntityDataset.load(p)
    with pytest.raises(EntityKitError, match="not found"):
        EntityDataset.load(tmp_path / "missing.json")


def test_stats_hand_computed(tmp_path):
    a = np.zeros((100, 100), np.int64)
    a[:10, :10] = 1  # 100 px: small
    a[20:60, 20:60] = 2  # 1600 px: medium
    b = np.zeros((100, 100), np.int64)
    b[:, :] = 3  # 10000 px: large
    b[0, 0] = 4  # 1 px: small, crowd
    segs = [
        [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0}],
        [{"id": 3, "category_id": 2, "iscrowd": 0}, {"id": 4, "category_id": 1, "iscrowd": 1}],
    ]
    ds = convert_coco_panoptic(write_panoptic(tmp_path, [a, b], segs), crowd="keep")
    st_ = dataset_stats(ds)
    assert (st_.images, st_.entities, st_.crowd, st_.things, st_.stuff) == (2, 3, 1, 1, 2)
    assert st_.area_buckets == {"small": 1, "medium": 1, "large": 1}
    assert st_.entities_per_image["p50"] == 1.5 and st_.entities_per_image["p100"] == 2
    assert st_.coverage == pytest.approx((100 + 1600 + 9999) / 20000)
    assert st_.sources == {"panoptic": {"images": 2, "entities": 3}}
    ds.save(tmp_path / "e.json")
    result = runner.invoke(app, ["info", str(tmp_path / "e.json"), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["area_buckets"] == {"small": 1, "medium": 1, "large": 1}
    result = runner.invoke(app, ["info", str(tmp_path / "e.json")])
    assert result.exit_code == 0 and "S / M / L" in result.output


def test_python_m_entitykit_runs():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "entitykit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout
