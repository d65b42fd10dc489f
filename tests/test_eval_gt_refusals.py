"""eval's ground truth: a sharded dataset is accepted or refused as the same data in one file (each
shard read as its file alone, ids unique across shards; a shard whose counts are not the manifest's
is refused with check's line); a folder without a manifest is named for what it is (an unfinished
conversion); a folder of `entitykit idmaps` output given as predictions is not sent to its
id_maps.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.dataset import EntityDataset
from entitykit.errors import DatasetError
from entitykit.evaluation import evaluate
from entitykit.shards import entry_for_file, write_manifest
from tests.test_shards_readers import SIZES, whole, write_sharded  # noqa: F401  (the 11-image fixture)

runner = CliRunner()


def _results(ds: EntityDataset, path: Path) -> Path:
    path.write_text(json.dumps([{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": 0.5}
                                for a in ds.annotations if not a.get("iscrowd")]))
    return path


def _recount(folder: Path, k: int, **counts) -> None:
    """Shard k's manifest entry re-recorded (size and SHA-256 right) with other counts."""
    man = json.loads((folder / "manifest.json").read_text())
    entry = man["shards"][k]
    man["shards"][k] = entry_for_file(folder, entry["file"], {"images": entry["images"], "entities": entry["entities"],
                                                              **counts}).as_dict()
    for key in counts:
        man[key] = sum(s[key] for s in man["shards"])
    write_manifest(folder, man)


def test_a_shard_whose_counts_are_not_the_manifest_s_is_refused_with_check_s_line(whole, tmp_path):  # noqa: F811
    ds = EntityDataset.load(whole)
    res = _results(ds, tmp_path / "res.json")
    folder = write_sharded(ds, tmp_path / "sh", SIZES)
    # the manifest says shard 1 holds one entity fewer than it does
    _recount(folder, 1, entities=json.loads((folder / "manifest.json").read_text())["shards"][1]["entities"] - 1)
    problems = check_dataset(folder, check_images=False).problems
    assert problems, "the edit must make a dataset check refuses"
    with pytest.raises(DatasetError) as e:
        evaluate(folder, res)
    assert str(e.value).split(" (and ")[0] == str(problems[0]).split(" (and ")[0]
    r = runner.invoke(app, ["eval", str(folder), str(res), "-q"])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1].startswith(f"error: {problems[0]}".split(" (and ")[0])


@pytest.mark.parametrize("edit", ["file_name", "string_ids", "annotation_ids"])
def test_a_sharded_gt_is_accepted_or_refused_as_the_same_data_in_one_file(whole, tmp_path, edit):  # noqa: F811
    """eval reads each shard as its file alone would be read as ground truth, plus the rules one
    file's reader applies across it (image and annotation ids unique): a duplicate file name or
    string image ids are scored (as in one file), duplicate annotation ids across shards refused
    (as in one file), whatever the manifest records."""
    ds = EntityDataset.load(whole)
    if edit == "file_name":  # images of two shards share a file name: not eval's concern, as in one file
        ds.images[9]["file_name"] = ds.images[0]["file_name"]
    if edit == "string_ids":
        ids = {im["id"]: f"img{im['id']:03d}" for im in ds.images}
        for im in ds.images:
            im["id"] = ids[im["id"]]
        for a in ds.annotations:
            a["image_id"] = ids[a["image_id"]]
    if edit == "annotation_ids":  # an annotation of shard 2 has the id of one of shard 0
        last = [a for a in ds.annotations if a["image_id"] == ds.images[-1]["id"]][0]
        last["id"] = ds.annotations[0]["id"]
    res = _results(ds, tmp_path / "res.json")
    ds.save(tmp_path / "one.json")
    folder = write_sharded(ds, tmp_path / "sh", SIZES, ranges=False)
    if edit == "annotation_ids":
        for gt in (tmp_path / "one.json", folder):
            with pytest.raises(DatasetError, match="duplicate annotation id"):
                evaluate(gt, res)
        return
    one, sharded = evaluate(tmp_path / "one.json", res), evaluate(folder, res)
    assert np.array_equal(one.stats, sharded.stats) and one.per_image == sharded.per_image


def test_a_shard_that_is_not_an_entity_dataset_is_refused(whole, tmp_path):  # noqa: F811
    from entitykit.synth import write_synthetic_panoptic

    ds = EntityDataset.load(whole)
    folder = write_sharded(ds, tmp_path / "sh", SIZES)
    j = write_synthetic_panoptic(tmp_path / "pan", 2, height=20, width=30, segments=3, seed=1)
    man = json.loads((folder / "manifest.json").read_text())
    name = man["shards"][1]["file"]
    (folder / name).write_bytes(j.read_bytes())  # a COCO panoptic JSON in a shard's place
    entry = entry_for_file(folder, name, {"images": man["shards"][1]["images"], "entities": man["shards"][1]["entities"]})
    man["shards"][1] = entry.as_dict()
    write_manifest(folder, man)
    with pytest.raises(DatasetError, match="must be an entity dataset JSON") as e:
        evaluate(folder, _results(ds, tmp_path / "res.json"))
    assert name in str(e.value) and "COCO panoptic" in str(e.value)


def test_an_unfinished_conversion_as_gt_is_named(whole, tmp_path):  # noqa: F811
    folder = tmp_path / "unfinished"
    (folder / ".progress").mkdir(parents=True)
    (folder / ".progress" / "shard-00000.json").write_text("{}")
    res = _results(EntityDataset.load(whole), tmp_path / "res.json")
    with pytest.raises(DatasetError, match="unfinished conversion"):
        evaluate(folder, res)
    r = runner.invoke(app, ["eval", str(folder), str(res)])
    assert r.exit_code == 1 and "unfinished conversion" in r.stderr and "--resume" in r.stderr


def test_idmaps_output_as_predictions_is_not_sent_to_its_index(whole, tmp_path):  # noqa: F811
    out = tmp_path / "ids"
    r = runner.invoke(app, ["idmaps", str(whole), "-o", str(out), "-q"])
    assert r.exit_code == 0 and (out / "id_maps.json").is_file(), r.output
    r = runner.invoke(app, ["eval", str(whole), str(out)])
    assert r.exit_code == 1
    assert "entitykit idmaps" in r.stderr and "pass that file" not in r.stderr, r.stderr


def test_a_sharded_dataset_or_conversion_folder_as_predictions_is_named(whole, tmp_path):  # noqa: F811
    """Not sent to its manifest.json or a shard (no scores there): said what the folder is."""
    folder = write_sharded(EntityDataset.load(whole), tmp_path / "sh", SIZES)
    r = runner.invoke(app, ["eval", str(whole), str(folder)])
    assert r.exit_code == 1 and "sharded entity dataset" in r.stderr and "pass that file" not in r.stderr, r.stderr
    unfinished = tmp_path / "unf"
    (unfinished / ".progress").mkdir(parents=True)
    r = runner.invoke(app, ["eval", str(whole), str(unfinished)])
    assert r.exit_code == 1 and "unfinished conversion" in r.stderr, r.stderr


def test_no_gt_and_no_prediction_is_undefined_not_zero(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}],
                                                  "annotations": [], "categories": []}))
    (tmp_path / "res.json").write_text("[]")
    r = evaluate(tmp_path / "gt.json", tmp_path / "res.json")
    assert any("undefined" in w for w in r.warnings) and not any("is 0" in w for w in r.warnings), r.warnings


def test_what_is_given_instead_of_a_sharded_dataset_is_named(whole, tmp_path):  # noqa: F811
    """A part manifest, a renamed manifest, a folder of shards without its manifest, an empty
    folder, a sharded dataset given as predictions, binary bytes: each named for what it is."""
    from entitykit.errors import PredictionError

    ds = EntityDataset.load(whole)
    res = _results(ds, tmp_path / "res.json")
    folder = write_sharded(ds, tmp_path / "sh", SIZES)
    (folder / "part-1-of-2.json").write_text((folder / "manifest.json").read_text())
    (folder / "copy.json").write_text((folder / "manifest.json").read_text())
    loose = tmp_path / "loose"
    loose.mkdir()
    for f in folder.glob("shard-*.json"):
        (loose / f.name).write_bytes(f.read_bytes())
    (tmp_path / "empty").mkdir()
    (tmp_path / "bin.json").write_bytes(bytes([1, 0xB8, 0xFF]) * 20)  # not UTF-8
    cases = [
        (folder / "part-1-of-2.json", "a part manifest of a sharded conversion (part-1-of-2.json): join the parts "
                                      "first, entitykit shards merge"),
        (folder / "copy.json", "a sharded dataset's manifest under another name than manifest.json: pass the "
                               "sharded dataset's folder"),
        (loose, "without manifest.json; ground truth is a JSON file or a sharded dataset's folder"),
        (tmp_path / "empty", "a folder holding 0 entries"),
        (tmp_path / "bin.json", "it starts with b'\\x01\\xb8\\xff"),
    ]
    for gt, words in cases:
        with pytest.raises(DatasetError) as e:
            evaluate(gt, res)
        assert words in str(e.value), (gt, str(e.value))
        assert "bytearray" not in str(e.value)
    with pytest.raises(PredictionError) as e:  # a sharded dataset as predictions: the folder is named
        evaluate(whole, folder)
    assert str(e.value).startswith(f"{folder}:") and "predictions.json" not in str(e.value).split(":")[0]
