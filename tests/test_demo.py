"""The demo pipeline end to end (few iterations: the full demo's APe is measured in the README)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.demo import run_demo
from entitykit.errors import EntityKitError


def test_demo_runs_every_stage(tmp_path):
    r = run_demo(tmp_path / "d", train_images=4, val_images=2, iterations=3)
    assert r.checkpoint.is_file() and r.checkpoint.name == "model_final.safetensors"
    assert (r.predictions / "predictions.json").is_file() and (r.predictions / "coco_results.json").is_file()
    assert len(list((r.predictions / "overlays").glob("*.png"))) == 2
    assert set(r.summary) >= {"APe", "APe50", "APe75", "AR100"} and 0.0 <= r.summary["APe"] <= 1.0
    assert json.loads(r.val_json.read_text())["info"]["split"] == "val"
    with pytest.raises(EntityKitError, match="--overwrite"):
        run_demo(tmp_path / "d", iterations=0)


def test_demo_data_only_cli(tmp_path):
    result = CliRunner().invoke(app, ["demo", "-o", str(tmp_path / "d"), "--iterations", "0", "--train-images", "3",
                                      "--val-images", "1"])
    assert result.exit_code == 0, result.output
    assert "1. data" in result.output and (tmp_path / "d" / "train.json").is_file()
