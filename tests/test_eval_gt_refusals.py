"""eval opens a ground truth as every other command does: a sharded dataset that check / info /
pack refuse is refused by eval with the same line; a folder without a manifest is named for what it
is (an unfinished conversion); a folder of `entitykit idmaps` output given as predictions is not
sent to its id_maps.json."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.mark.parametrize("edit", ["count", "file_name"])
def test_a_sharded_gt_others_refuse_is_refused_by_eval_with_their_line(whole, tmp_path, edit):  # noqa: F811
    ds = EntityDataset.load(whole)
    res = _results(ds, tmp_path / "res.json")
    if edit == "file_name":  # two shards hold an image of the same file name
        ds.images[9]["file_name"] = ds.images[0]["file_name"]
    folder = write_sharded(ds, tmp_path / "sh", SIZES)
    if edit == "count":  # the manifest says shard 1 holds one entity fewer than it does
        _recount(folder, 1, entities=json.loads((folder / "manifest.json").read_text())["shards"][1]["entities"] - 1)
    problems = check_dataset(folder, check_images=False).problems
    assert problems, "the edit must make a dataset check refuses"
    with pytest.raises(DatasetError) as e:
        evaluate(folder, res)
    assert str(e.value).split(" (and ")[0] == str(problems[0]).split(" (and ")[0]
    r = runner.invoke(app, ["eval", str(folder), str(res), "-q"])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1].startswith(f"error: {problems[0]}".split(" (and ")[0])


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
