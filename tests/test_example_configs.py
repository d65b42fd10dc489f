"""Every example TOML goes through the project's own loader (no data, no network), and the Table 4
configs carry the paper's sample budget (supplement section 9: 118,287 images × 12 epochs)."""

from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from entitykit.errors import EntityKitError
from entitykit.model import get_config
from entitykit.train import load_train_config

EXAMPLES = Path(__file__).parents[1] / "examples"
CONFIGS = sorted((EXAMPLES / "configs").glob("*.toml"))
BUDGET = 118_287 * 12  # 1,419,444 samples: every Table 4 row
# the lr steps as fractions of training that the paper states per training set
TABLE4 = {
    "coco": ("coco_train.json", (Fraction(8, 12), Fraction(11, 12))),  # main text: after 8 and 11 of 12 epochs
    "ade20k": ("ade20k_train.json", (Fraction(48, 71), Fraction(66, 71))),  # supplement: 48th, 66th of 71
    "cityscapes": ("cityscapes_train.json", (Fraction(318, 478), Fraction(436, 478))),  # 318th, 436th of 478
    "co_a": ("co_a_train.json", (Fraction(8, 12), Fraction(11, 12))),  # mixes: "similar settings" (COCO's)
    "co_a_ci": ("co_a_ci_train.json", (Fraction(8, 12), Fraction(11, 12))),
}


def _solver(path: Path):
    """The options a run would use: the file's, else its model preset's (as entitykit.train.train)."""
    cfg = load_train_config(path)
    mcfg = get_config(cfg.preset, **cfg.model)  # preset exists, every model key known, ranges valid
    max_iter = cfg.max_iter if cfg.max_iter is not None else mcfg.max_iter
    steps = list(cfg.lr_steps if cfg.lr_steps is not None else mcfg.lr_steps)
    batch = cfg.batch_size if cfg.batch_size is not None else mcfg.ims_per_batch
    return cfg, max_iter, steps, batch


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_example_config_loads(path):
    cfg, max_iter, steps, batch = _solver(path)
    assert cfg.train, "no training data named"
    assert all(0 < s < max_iter for s in steps), (steps, max_iter)
    assert batch >= 1


@pytest.mark.parametrize("row", sorted(TABLE4))
def test_table4_configs_have_the_paper_budget_and_step_fractions(row):
    path = EXAMPLES / "configs" / f"table4_r50_{row}.toml"
    cfg, max_iter, steps, batch = _solver(path)
    assert batch == 16
    assert BUDGET <= max_iter * batch < BUDGET + batch  # 88,716 × 16 = 1,419,456 ≈ 1,419,444
    fractions = TABLE4[row][1]
    assert len(steps) == len(fractions)
    for s, f in zip(steps, fractions):
        assert abs(s - max_iter * f) <= Fraction(1, 2), (s, float(max_iter * f))
    assert cfg.preset == "r50_1x"
    assert [Path(t).name for t in cfg.train] == [TABLE4[row][0]]


def test_merge_script_writes_what_the_configs_read_and_keeps_every_image():
    script = (EXAMPLES / "merge_table4.sh").read_text()
    for name, _ in TABLE4.values():
        assert f'-o "$out/{name}"' in script, name
    merges = re.findall(r"^entitykit merge .*?(?<!\\)$", script, flags=re.M | re.S)
    assert len(merges) == 2
    for cmd in merges:  # proportional shares: no weights, no fixed total
        assert " -w " not in cmd and " -n " not in cmd and "--total" not in cmd and "--weight" not in cmd, cmd
        assert "--holdout" in cmd or "${holdout[@]}" in cmd


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_merge_script_parses():
    r = subprocess.run(["bash", "-n", str(EXAMPLES / "merge_table4.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_loader_catches_a_misspelt_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((EXAMPLES / "configs" / "table4_r50_coco.toml").read_text().replace("lr_steps =", "lr_step ="))
    with pytest.raises(EntityKitError, match="lr_step"):
        load_train_config(bad)
    bad.write_text((EXAMPLES / "configs" / "table4_r50_coco.toml").read_text().replace("pretrained =", "pretrain ="))
    with pytest.raises(EntityKitError, match="pretrain"):
        load_train_config(bad)
