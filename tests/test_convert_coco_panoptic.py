"""`convert coco-panoptic`: real COCO sample, encoding rules, large id counts, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

from conftest import shared_sample, write_panoptic
from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic
from entitykit.dataset import EntityDataset
from entitykit.errors import DatasetError

runner = CliRunner()


def _rle(ann):
    return {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}


# ------------------------------------------------------------------------------------ real COCO sample
@pytest.fixture(scope="module")
def coco_sample(tmp_path_factory):
    root = shared_sample("coco_panoptic_sample")
    out = tmp_path_factory.mktemp("coco") / "entities.json"
    result = runner.invoke(app, [
        "convert", "coco-panoptic", str(root / "panoptic_examples.json"), str(root / "panoptic_examples"),
        "-o", str(out), "--images", str(root / "input_images"), "-q"])
    assert result.exit_code == 0, result.output
    return root, out


def test_real_sample_entities_are_the_non_crowd_segments(coco_sample):
    root, out = coco_sample
    src = json.loads((root / "panoptic_examples.json").read_text())
    ds = EntityDataset.load(out)
    groups = ds.annotations_by_image()
    for ann in src["annotations"]:
        png = rgb2id(np.array(Image.open(root / "panoptic_examples" / ann["file_name"])))
        non_crowd = [s for s in ann["segments_info"] if not s["iscrowd"]]
        ents = groups[ann["image_id"]]
        assert len(ents) == len(non_crowd)
        for seg, ent in zip(non_crowd, ents):
            mask = png == seg["id"]
            rle = _rle(ent)
            assert ent["area"] == int(mask.sum()) == int(mask_utils.area(rle))
            assert ent["bbox"] == mask_utils.toBbox(rle).tolist()
            np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
            assert ent["category_id"] == 1 and ent["iscrowd"] == 0 and ent["id"] >= 1
        # crowd pixels became void
        for seg in ann["segments_info"]:
            if seg["iscrowd"]:
                assert not ds.id_map(ann["image_id"])[png == seg["id"]].any()
        # masks are disjoint
        stack = mask_utils.decode([_rle(e) for e in ents])
        assert stack.sum(axis=2).max() == 1


def test_real_sample_passes_check_and_loads_in_pycocotools(coco_sample):
    root, out = coco_sample
    result = runner.invoke(app, ["check", str(out)])  # not -q: that leaves only errors
    assert result.exit_code == 0, result.output
    assert "image files checked" in result.output
    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 2
    assert len(coco.getAnnIds()) == 47  # 18 + 32 segments, 3 of them crowd
    assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "entity", "supercategory": "entity"}]
    # COCO's own annToMask agrees with the stored area
    ann = coco.loadAnns(coco.getAnnIds())[5]
    assert int(coco.annToMask(ann).sum()) == ann["area"]


def test_real_sample_crowd_keep(tmp_path):
    root = shared_sample("coco_panoptic_sample")
    ds = convert_coco_panoptic(root / "panoptic_examples.json", root / "panoptic_examples", crowd="keep")
    crowd = [a for a in ds.annotations if a["iscrowd"]]
    assert len(crowd) == 3 and len(ds.annotations) == 50
    assert ds.info["conversion"]["crowd_kept"] == 3
    assert check_dataset(ds).ok


def test_recorded_image_root_is_relative_and_overridable(coco_sample, tmp_path):
    root, out = coco_sample
    info = json.loads(out.read_text())["info"]
    assert not Path(info["image_root"]).is_absolute()
    assert EntityDataset.load(out).image_root.resolve() == (root / "input_images").resolve()
    assert EntityDataset.load(out, image_root=tmp_path).image_root == tmp_path


# ------------------------------------------------------------------------------------ encoding rules
def test_disconnected_segment_is_one_entity_void_stays_void_and_stuff_counts(tmp_path):
    m = np.zeros((6, 8), np.int64)
    m[:, :2] = 7  # stuff, left
    m[:, 6:] = 7  # stuff, right: same segment, disconnected
    m[2:4, 3:5] = 300  # thing (id > 255)
    json_path = write_panoptic(tmp_path, [m], [[
        {"id": 7, "category_id": 2, "iscrowd": 0}, {"id": 300, "category_id": 1, "iscrowd": 0}]])
    ds = convert_coco_panoptic(json_path)
    assert [a["area"] for a in ds.annotations] == [24, 4]
    assert [a["isthing"] for a in ds.annotations] == [0, 1]
    assert [a["source_category"] for a in ds.annotations] == ["stuff", "thing"]
    assert ds.info["conversion"]["void_fraction"] == pytest.approx(20 / 48)
    assert (ds.id_map(1) == 0).sum() == 20


def test_string_image_ids_cityscapes_style(tmp_path):
    m = np.array([[1, 1, 2], [1, 2, 2]])
    ids = ["frankfurt_000000_000294", "lindau_000000_000019"]
    ds = convert_coco_panoptic(write_panoptic(tmp_path, [m, m + 10], image_ids=ids))
    assert [img["id"] for img in ds.images] == [1, 2]
    assert [img["source_id"] for img in ds.images] == ids
    assert check_dataset(ds).ok


def test_workers_give_identical_output(tmp_path):
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 9, (20, 30)) for _ in range(12)]
    json_path = write_panoptic(tmp_path, maps)
    one = convert_coco_panoptic(json_path, workers=1)
    two = convert_coco_panoptic(json_path, workers=2)
    assert one.to_coco() == two.to_coco()


@pytest.mark.parametrize("n_segments", [300, 70_000])
def test_more_than_255_and_65535_segments_in_one_image(tmp_path, n_segments):
    side = int(np.ceil(np.sqrt(n_segments)))
    m = np.zeros(side * side, np.int64)
    m[:n_segments] = np.arange(1, n_segments + 1) * 97 % (2**24 - 1) + 1  # spread over all 3 RGB bytes
    m = m.reshape(side, side)
    json_path = write_panoptic(tmp_path, [m])
    ds = convert_coco_panoptic(json_path)
    assert len(ds.annotations) == n_segments
    assert all(a["area"] == 1 for a in ds.annotations)
    id_map = ds.id_map(1)
    assert id_map.max() == n_segments and (id_map > 0).sum() == n_segments
    assert check_dataset(ds).ok
    fmt = "png16" if n_segments < 65536 else "rgb"
    ds.export_id_maps(tmp_path / "ids", fmt)
    from entitykit.masks import read_id_map_png
    np.testing.assert_array_equal(read_id_map_png(tmp_path / "ids" / "img_0.png"), id_map)
    if n_segments > 65535:
        with pytest.raises(DatasetError.__mro__[1], match="16-bit"):
            ds.export_id_maps(tmp_path / "ids16", "png16")
        assert not (tmp_path / "ids16").exists()


# ------------------------------------------------------------------------------------ bad input
def _two_images(tmp_path):
    a = np.array([[1, 1, 2], [1, 2, 2]])
    b = np.array([[3, 0, 4], [3, 4, 4]])
    return write_panoptic(tmp_path, [a, b])


def _edit(json_path, fn):
    data = json.loads(json_path.read_text())
    fn(data)
    json_path.write_text(json.dumps(data))


def _run_convert(json_path, out, *extra):
    return runner.invoke(app, ["convert", "coco-panoptic", str(json_path), "-o", str(out), "-q", *extra])


def _assert_fails(tmp_path, json_path, *needles):
    out = tmp_path / "out" / "ents.json"
    result = _run_convert(json_path, out)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, (needle, text)
    assert not out.exists()
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True
    return result


def test_missing_png(tmp_path):
    j = _two_images(tmp_path)
    (tmp_path / "panoptic" / "img_1.png").unlink()
    _assert_fails(tmp_path, j, "img_1.png", "image 2", "panoptic PNG not found")


def test_png_size_differs_from_json(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["images"][0].update(width=4))
    _assert_fails(tmp_path, j, "img_0.png", "image 1", "3×2", "4×2")


def test_segment_in_json_but_not_in_png(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["annotations"][1]["segments_info"].append({"id": 99, "category_id": 1, "iscrowd": 0}))
    _assert_fails(tmp_path, j, "img_1.png", "image 2", "segment 99 is in the JSON but not in the PNG")


def test_png_id_without_json_entry(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["annotations"][0]["segments_info"].pop())
    _assert_fails(tmp_path, j, "img_0.png", "image 1", "PNG id 2", "no segments_info entry")


def test_duplicate_image_ids(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["images"][1].update(id=1))
    _assert_fails(tmp_path, j, "panoptic.json", "image 1", "duplicate image id")


def test_duplicate_segment_ids(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["annotations"][0]["segments_info"].append(dict(d["annotations"][0]["segments_info"][0])))
    _assert_fails(tmp_path, j, "panoptic.json", "image 1", "segment 1", "duplicate segment id")


def test_unreadable_json(tmp_path):
    j = _two_images(tmp_path)
    j.write_text('{"images": [')
    _assert_fails(tmp_path, j, "panoptic.json", "not valid JSON")


def test_annotation_for_unknown_image(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["annotations"].append({"image_id": 42, "file_name": "x.png", "segments_info": []}))
    _assert_fails(tmp_path, j, "panoptic.json", "image_id 42", "annotation for an unknown image")


def test_keep_going_reports_and_converts_the_rest(tmp_path):
    j = _two_images(tmp_path)
    _edit(j, lambda d: d["annotations"][1]["segments_info"].append({"id": 99, "category_id": 1, "iscrowd": 0}))
    (tmp_path / "panoptic" / "img_0.png").unlink()
    out = tmp_path / "ents.json"
    result = runner.invoke(app, ["convert", "coco-panoptic", str(j), "-o", str(out), "--keep-going"])  # not -q: warnings
    assert result.exit_code == 0, result.output
    assert "skipped:" in result.stderr and "skipped:" not in result.stdout  # warnings on stderr
    ds = EntityDataset.load(out)
    assert [img["id"] for img in ds.images] == [2]
    problems = ds.info["conversion"]["problems"]
    assert len(problems) == 2
    assert any("not found" in p["problem"] for p in problems)
    assert any("segment 99" in p["problem"] for p in problems)
    assert len(ds.annotations) == 2  # image 2's two real segments survive


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    j = _two_images(tmp_path)
    out = tmp_path / "out" / "ents.json"
    import entitykit.fileio as fileio

    def boom(*a, **k):
        raise KeyboardInterrupt

    class _Interrupted:  # the temporary file is open and half written when the interrupt comes
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            boom()

    real_open = open
    def interrupted_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return _Interrupted(f) if "w" in mode else f

    monkeypatch.setattr(fileio, "open", interrupted_open, raising=False)
    with pytest.raises(KeyboardInterrupt):
        convert_coco_panoptic(j).save(out)
    assert list((tmp_path / "out").iterdir()) == []
