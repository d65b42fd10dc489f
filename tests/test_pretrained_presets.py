"""Presets that assume ImageNet weights cannot silently train a random trunk."""

from __future__ import annotations

import urllib.error

import pytest
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic
from entitykit.errors import EntityKitError
from entitykit.model import get_config
from entitykit.model.config import PRESETS, pretrained_problem
from entitykit.synth import write_synthetic_panoptic
from entitykit.train import TrainConfig, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    p = write_synthetic_panoptic(root / "data", 2, height=64, width=64, segments=4, seed=2)
    convert_coco_panoptic(p, image_root=root / "data" / "images").save(root / "train.json")
    return root / "train.json"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No internet and an empty torch cache, whatever the machine running the tests has."""
    from torchvision.models._api import WeightsEnum

    def refuse(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(WeightsEnum, "get_state_dict", refuse)


def test_paper_presets_say_which_weights_they_assume():
    for name in ("r50_1x", "r50_1x_baseline", "r101_3x", "swin_t_1x"):
        cfg = get_config(name)
        assert cfg.pretrained and cfg.pretrained.endswith("IMAGENET1K_V1"), name
        assert pretrained_problem(cfg) is None
    assert get_config("tiny").pretrained == "none"
    assert all(pretrained_problem(PRESETS[n]()) is None for n in PRESETS)
    assert "model.pretrained" in pretrained_problem(get_config("r50_1x", pretrained=None))


def test_r50_1x_offline_is_one_line_before_any_iteration(data, tmp_path, offline):
    res = CliRunner().invoke(app, ["train", "--train", str(data), "--preset", "r50_1x", "-o", str(tmp_path / "run"),
                                   "--max-iter", "1"])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "model.pretrained" in lines[0] and "ResNet50_Weights.IMAGENET1K_V1" in lines[0]
    assert "local file" in lines[0] and '"none"' in lines[0]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_unset_pretrained_is_refused_and_none_trains_from_scratch(data, tmp_path, offline, one_torch_thread):
    small = {"fpn_channels": 32, "head_groups": 8, "mask_branch_channels": 16, "backbone": "resnet18"}
    base = dict(train=[str(data)], preset="r50_1x", max_iter=1, batch_size=1, min_sizes=[64], max_size=64,
                checkpoint_period=1, log_period=1)
    with pytest.raises(EntityKitError, match="model.pretrained.*not set"):
        train(TrainConfig(output=str(tmp_path / "a"), model={**small, "pretrained": None}, **base), progress=False)
    assert not (tmp_path / "a").exists()
    run = train(TrainConfig(output=str(tmp_path / "b"), model={**small, "pretrained": "none"}, **base),
                progress=False)
    assert run.iterations == 1 and run.final_checkpoint.is_file()
