"""`entitykit export-onnx`: checkpoint → ONNX for one size, checked with onnxruntime; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.model import EntityModel, get_config, save_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    # untrained weights with every location a candidate: many detections, real masks to compare
    save_checkpoint(EntityModel(get_config("tiny", score_thresh=0.0, detections_per_image=20)), path)
    return path


def test_export_and_check(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    r = runner.invoke(app, ["export-onnx", str(checkpoint), "-o", str(out), "--size", "72", "90", "--check"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "agrees on" in r.output and "72×90" in r.output
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((50, 40, 3)) * 255).astype(np.uint8)).save(photo)
    r = runner.invoke(app, ["export-onnx", str(checkpoint), "-o", str(out), "--size", "64", "64",
                            "--check-image", str(photo)])
    assert r.exit_code == 0, r.output
    assert "agrees on" in r.output


def test_bad_input_names_the_file_and_writes_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    missing = tmp_path / "nope.safetensors"
    r = runner.invoke(app, ["export-onnx", str(missing), "-o", str(out), "--size", "64", "64"])
    assert r.exit_code == 1 and "nope.safetensors" in r.output
    not_a_ckpt = tmp_path / "bad.safetensors"
    not_a_ckpt.write_bytes(b"not a checkpoint")
    r = runner.invoke(app, ["export-onnx", str(not_a_ckpt), "-o", str(out), "--size", "64", "64"])
    assert r.exit_code == 1 and "bad.safetensors" in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == [not_a_ckpt]
