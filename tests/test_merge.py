"""`entitykit merge`: ids, provenance, image paths, sampling, determinism, splits, duplicates, errors."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

import entitykit.cli.merge_pack  # noqa: F401  (registers merge/pack until cli/__init__ imports it)
from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic
from entitykit.dataset import EntityDataset
from entitykit.errors import EntityKitError
from entitykit.merge import MergeError, _apportion, infer_split, merge_datasets
from entitykit.synth import write_synthetic_panoptic

runner = CliRunner()


def make_source(root: Path, name: str, n: int, seed: int, split: str = "train") -> Path:
    """A small entity dataset ``root/<name>_<split>.json`` with JPEGs in ``root/<name>/images``."""
    j = write_synthetic_panoptic(root / name, n, height=24, width=32, segments=5, seed=seed, crowd_fraction=0.2)
    ds = convert_coco_panoptic(j, image_root=root / name / "images", source=name, crowd="keep")
    out = root / f"{name}_{split}.json"
    ds.save(out)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    return {
        "coco": make_source(root / "data", "coco", 10, seed=1),
        "ade": make_source(root / "data" / "sub", "ade", 30, seed=2),
        "root": root,
    }


def _copy_tree(sources, tmp_path) -> dict:
    """A private copy of the sources (for tests that damage files)."""
    shutil.copytree(sources["root"], tmp_path / "c")
    rel = lambda p: tmp_path / "c" / Path(p).relative_to(sources["root"])  # noqa: E731
    return {"coco": rel(sources["coco"]), "ade": rel(sources["ade"])}


def test_ids_provenance_paths_and_pycocotools(sources, tmp_path):
    ins = [EntityDataset.load(sources["coco"]), EntityDataset.load(sources["ade"])]
    ds = merge_datasets([sources["coco"], sources["ade"]])
    out = tmp_path / "out" / "merged.json"
    ds.save(out)

    assert [img["id"] for img in ds.images] == list(range(1, 41))
    assert [a["id"] for a in ds.annotations] == list(range(1, len(ds.annotations) + 1))
    assert len(ds.annotations) == sum(len(d.annotations) for d in ins)
    assert Counter(img["source"] for img in ds.images) == {"coco": 10, "ade": 30}
    assert all(a["source"] == ds.image_by_id[a["image_id"]]["source"] for a in ds.annotations)
    # one image root (the deepest common folder), file names below it, the same files found
    assert ds.image_root == (sources["root"] / "data").resolve()
    assert ds.images[0]["file_name"] == "coco/images/synth_000000.jpg"
    assert ds.images[10]["file_name"] == "sub/ade/images/synth_000000.jpg"
    loaded = EntityDataset.load(out)
    by_src = {(d.images[0]["source"]): d for d in ins}
    groups = loaded.annotations_by_image()
    for img in loaded.images:
        src = by_src[img["source"]]
        orig = src.image_by_id[img["source_image_id"]]
        assert loaded.image_path(img).read_bytes() == src.image_path(orig).read_bytes()
        strip = lambda a: {k: v for k, v in a.items() if k not in ("id", "image_id")}  # noqa: E731
        assert [strip(a) for a in groups[img["id"]]] == [strip(a) for a in src.annotations_by_image()[orig["id"]]]
        drop = ("id", "file_name", "source_image_id")
        assert {k: v for k, v in img.items() if k not in drop} == {k: v for k, v in orig.items() if k not in drop}
    assert check_dataset(out).ok
    info = json.loads(out.read_text())["info"]
    assert info["split"] == "train"
    assert (out.parent / info["image_root"]).resolve() == (sources["root"] / "data").resolve()
    assert info["merge"]["duplicates"]["groups"] == 0

    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 40 and len(coco.getAnnIds()) == len(ds.annotations)
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[12]))[0]
    np.testing.assert_array_equal(coco.annToMask(ann), mask_utils.decode(
        {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}))


def test_weights_and_total_give_exact_proportions(sources):
    ds = merge_datasets([sources["coco"], sources["ade"]], weights={"coco": 3, "ade": 1}, total=40, seed=5)
    assert Counter(img["source"] for img in ds.images) == {"coco": 30, "ade": 10}
    coco = [img for img in ds.images if img["source"] == "coco"]
    assert all(img["copies"] == 3 for img in coco)  # 30 from 10 images: each exactly 3 times
    assert Counter(img["source_image_id"] for img in coco) == {i: 3 for i in range(1, 11)}
    assert sorted(img["copy"] for img in coco if img["source_image_id"] == 4) == [1, 2, 3]
    ade = [img for img in ds.images if img["source"] == "ade"]
    assert len({img["source_image_id"] for img in ade}) == 10 and not any("copy" in img for img in ade)
    assert len({img["id"] for img in ds.images}) == 40
    rep = {r["name"]: r for r in ds.info["merge"]["inputs"]}
    assert rep["coco"]["images_out"] == 30 and rep["coco"]["max_copies"] == 3 and rep["ade"]["unique_images_out"] == 10
    assert len({a["id"] for a in ds.annotations}) == len(ds.annotations)


def test_fractional_replacement_and_total_without_weights(sources):
    ds = merge_datasets([sources["coco"]], weights=[1], total=25)
    c = Counter(img["source_image_id"] for img in ds.images)
    assert sum(c.values()) == 25 and set(c.values()) == {2, 3} and len(c) == 10
    assert all(img["copies"] == c[img["source_image_id"]] for img in ds.images)
    # total without weights: proportional to the input sizes (10 : 30)
    ds = merge_datasets([sources["coco"], sources["ade"]], total=8)
    assert Counter(img["source"] for img in ds.images) == {"coco": 2, "ade": 6}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.integers(0, 1000), min_size=1, max_size=6).filter(lambda w: sum(w) > 0))
def test_apportion_is_exact_and_fair(total, weights):
    ws = [Fraction(w) for w in weights]
    q = _apportion(total, ws)
    assert sum(q) == total
    for qi, wi in zip(q, ws):
        exact = total * wi / sum(ws)
        assert math.floor(exact) <= qi <= math.ceil(exact)


def test_deterministic_under_a_seed(sources, tmp_path):
    def run(seed, name):
        merge_datasets([sources["coco"], sources["ade"]], weights=[1, 1], total=17, seed=seed).save(tmp_path / name)
        return (tmp_path / name).read_bytes()

    assert run(3, "a.json") == run(3, "b.json")
    assert run(3, "a.json") != run(4, "c.json")
    # the draw of one input does not depend on the others
    alone = merge_datasets([sources["ade"]], weights=[1], total=7, seed=3)
    both = merge_datasets([sources["coco"], sources["ade"]], weights=[2, 7], total=9, seed=3)
    assert [i["source_image_id"] for i in alone.images] == [i["source_image_id"] for i in both.images if i["source"] == "ade"]


def test_splits_are_never_mixed(sources, tmp_path):
    val = make_source(tmp_path, "adeval", 3, seed=9, split="val")
    with pytest.raises(MergeError, match="different splits"):
        merge_datasets([sources["coco"], val])
    with pytest.raises(MergeError, match="is a val set"):
        merge_datasets([sources["coco"], val], split="train")
    # no split word anywhere: must be declared
    shutil.copy(sources["coco"], tmp_path / "mystery.json")
    d = EntityDataset.load(tmp_path / "mystery.json")
    d.image_root = sources["coco"].parent / "coco" / "images"
    d.save(tmp_path / "mystery.json")
    with pytest.raises(MergeError, match="cannot tell its split"):
        merge_datasets([tmp_path / "mystery.json"])
    assert merge_datasets([tmp_path / "mystery.json"], split="train").info["split"] == "train"
    # info.split wins over names
    d.info["split"] = "val"
    assert infer_split(d, "x_train.json") == ("val", "info.split")
    assert infer_split(EntityDataset([], [], image_root=Path("ADEChallengeData2016/images/validation")))[0] == "val"
    assert infer_split(EntityDataset([], []), "panoptic_train2017.json")[0] == "train"
    assert infer_split(EntityDataset([], []), "interval.json")[0] is None


def test_holdout_overlap_refused_or_dropped(sources, tmp_path):
    # a val set whose 2nd image has the same bytes as coco's image 4
    val = make_source(tmp_path, "v", 3, seed=9, split="val")
    shutil.copy(sources["coco"].parent / "coco" / "images" / "synth_000003.jpg", tmp_path / "v" / "images" / "synth_000001.jpg")
    with pytest.raises(MergeError) as e:
        merge_datasets([sources["coco"], sources["ade"]], holdout=[val])
    assert e.value.path == str(sources["coco"]) and e.value.item == "image 4 (synth_000003.jpg)"
    assert "holdout set" in e.value.problem and str(val) in e.value.problem
    ds = merge_datasets([sources["coco"], sources["ade"]], holdout=[val], drop_holdout_overlap=True, weights=[1, 1], total=40)
    assert 4 not in {i["source_image_id"] for i in ds.images if i["source"] == "coco"}
    assert Counter(i["source"] for i in ds.images) == {"coco": 20, "ade": 20}
    h = ds.info["merge"]["holdout"]
    assert h["overlap"] == 1 and h["dropped"] and h["listed"][0]["holdout_image_id"] == 2


def test_duplicates_reported_and_deduped(sources):
    ds = merge_datasets([sources["coco"], sources["coco"]], names=["a", "b"])
    d = ds.info["merge"]["duplicates"]
    assert d["groups"] == 10 and d["extra_images"] == 10 and not d["dropped"] and len(ds.images) == 20
    assert d["listed"][0]["images"] == [{"input": "a", "image_id": 1, "file_name": "synth_000000.jpg"},
                                        {"input": "b", "image_id": 1, "file_name": "synth_000000.jpg"}]
    assert len({i["id"] for i in ds.images}) == 20
    ds = merge_datasets([sources["coco"], sources["coco"]], names=["a", "b"], dedupe=True)
    assert len(ds.images) == 10 and ds.info["merge"]["inputs"][1]["images_out"] == 0


def test_bad_inputs_name_file_and_item(sources, tmp_path):
    c = _copy_tree(sources, tmp_path)
    (c["coco"].parent / "coco" / "images" / "synth_000002.jpg").unlink()
    with pytest.raises(MergeError) as e:
        merge_datasets([c["coco"], c["ade"]])
    assert e.value.path == str(c["coco"]) and e.value.item == "image 3" and "image file not found" in e.value.problem

    broken = json.loads(c["ade"].read_text())
    broken["annotations"][5]["image_id"] = 999
    broken["images"][2]["id"] = broken["images"][1]["id"]
    (tmp_path / "broken_train.json").write_text(json.dumps(broken))
    with pytest.raises(MergeError) as e:
        merge_datasets([c["ade"].with_name("ade_train.json"), tmp_path / "broken_train.json"], names=["x", "y"], hash_images=False)
    texts = [(p.path, p.item, p.problem) for p in e.value.problems]
    assert (str(tmp_path / "broken_train.json"), "image 2", "duplicate image id") in texts  # the rule of entitykit check
    assert any(item.startswith("annotation 6 (image 999)") and "unknown image" in prob for _, item, prob in texts)

    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EntityKitError, match="not valid JSON") as e2:
        merge_datasets([tmp_path / "bad.json"])
    assert e2.value.path == str(tmp_path / "bad.json")
    with pytest.raises(MergeError, match="give distinct names"):
        merge_datasets([sources["coco"], sources["coco"]])
    with pytest.raises(MergeError, match="weight for unknown input"):
        merge_datasets([sources["coco"]], weights={"coco": 1, "nope": 2})
    with pytest.raises(MergeError, match="finite number"):
        merge_datasets([sources["coco"]], weights=[-1])
    with pytest.raises(EntityKitError, match="total must be a positive integer"):
        merge_datasets([sources["coco"]], total=0)


def test_cli_merge(sources, tmp_path):
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["merge", str(sources["coco"]), str(sources["ade"]), "-o", str(out),
                            "-w", "coco=1", "-w", "ade=1", "-n", "12", "--seed", "1"])  # not -q: the table
    assert r.exit_code == 0, r.output
    assert "ade" in r.output and "12" in r.output
    assert len(COCO(str(out)).getImgIds()) == 12
    # bad input: exit 1, a message naming the file, nothing written
    bad = tmp_path / "n.json"
    r = runner.invoke(app, ["merge", str(sources["coco"]), str(tmp_path / "missing_train.json"), "-o", str(bad), "-q"])
    assert r.exit_code == 1 and "missing_train.json" in r.output and "not found" in r.output
    assert not bad.exists() and not list(tmp_path.glob(".n.json*"))
    r = runner.invoke(app, ["merge", str(sources["coco"]), "-o", str(bad), "-w", "coco", "-q"])
    assert r.exit_code == 1 and "NAME=VALUE" in r.output


def test_merge_of_merges_keeps_the_original_provenance(sources, tmp_path):
    first = merge_datasets([sources["coco"]], weights=[1], total=20)  # every image twice
    first.save(tmp_path / "out" / "first.json")
    again = merge_datasets([tmp_path / "out" / "first.json", sources["ade"]], names=["mix", "ade"])
    mix = [img for img in again.images if img["source"] == "coco"]
    assert len(mix) == 20 and Counter(i["source_image_id"] for i in mix) == {i: 2 for i in range(1, 11)}
    assert all("copy" not in i for i in again.images)  # copies are re-counted per merge; none repeated here
    assert again.info["merge"]["duplicates"]["groups"] == 10  # the earlier copies share their bytes
    for img in mix:
        assert again.image_path(img).is_file()
    assert [r["name"] for r in again.info["merge"]["inputs"]] == ["mix", "ade"]
