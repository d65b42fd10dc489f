"""`entitykit eval`: --iou mask|boundary|both, --dilation-ratio, --area-rule, progress on stderr
(quiet under -q), JSON on stdout, PR curves for both, and tables that keep names whole in 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.errors import EntityKitError
from entitykit.evaluation import api, evaluate
from entitykit.evaluation.report import write_pr_curves
from entitykit.evaluation.synthetic import synth_coco

runner = CliRunner()
LONG = ("coco_panoptic_val2017", "ade20k_full_validation", "cityscapes_fine_val")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evalcli")
    gt, res = synth_coco(9, seed=4, n_gt=8, n_pred=14, sources=LONG)
    for im in gt["images"]:  # long image ids too
        im["id"] += 7_000_000_000
    for a in gt["annotations"]:
        a["image_id"] += 7_000_000_000
    for x in res:
        x["image_id"] += 7_000_000_000
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "res.json").write_text(json.dumps(res))
    boxed = [dict(x, bbox=[0.0, 0.0, 10.0, 10.0]) for x in res]  # 100 px boxes: every prediction "small"
    (root / "boxed.json").write_text(json.dumps(boxed))
    return {"root": root, "gt": root / "gt.json", "res": root / "res.json", "boxed": root / "boxed.json",
            "gt_dict": gt, "res_list": res}


def _entitykit(args: list, *, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entitykit", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_json_stdout_holds_both_evaluations(files):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "both", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # nothing but the JSON on stdout
    assert doc["iou"] == "mask" and doc["dilation_ratio"] is None and doc["options"]["iou"] == "mask"
    b = doc["boundary"]
    assert b["iou"] == "boundary" and b["dilation_ratio"] == 0.02 and b["options"]["dilation_ratio"] == 0.02
    # 0.02 × diagonals 625–800 px; 375×500 gives 12.5 → 12 (round half to even, as the reference)
    assert b["options"]["dilation_px"] == {"min": 12, "max": 16}
    assert "format" not in b and b["pq"] is None and doc["pq"] is not None
    rm, rb = evaluate(files["gt_dict"], files["res_list"], iou=("mask", "boundary"))
    assert doc["stats"] == [float(v) for v in rm.stats]
    assert b["stats"] == [float(v) for v in rb.stats]
    assert b["stats"][0] < doc["stats"][0]  # synthetic jitter costs more at the boundary
    assert set(b["by_source"]) == set(LONG) and len(b["precision"]) == 10


def test_boundary_ratio_is_used_and_recorded(files):
    out = files["root"] / "b.json"
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "boundary", "--dilation-ratio",
                            "0.005", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # -q: no tables
    doc = json.loads(out.read_text())
    assert doc["iou"] == "boundary" and doc["dilation_ratio"] == 0.005
    want = evaluate(files["gt_dict"], files["res_list"], iou="boundary", dilation_ratio=0.005)
    assert doc["stats"] == [float(v) for v in want.stats]


@pytest.mark.parametrize("ratio", ["0", "-1", "nan"])
def test_bad_dilation_ratio_is_one_line(files, ratio):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "boundary",
                            "--dilation-ratio", ratio])
    assert r.exit_code == 1
    assert "dilation" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_iou_and_area_rule_are_choices(files):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "bbox"])
    assert r.exit_code == 2 and "mask" in r.stderr and "boundary" in r.stderr and "both" in r.stderr
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--area-rule", "box"])
    assert r.exit_code == 2 and "auto" in r.stderr


def test_area_rule_is_printed_and_recorded(files):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["boxed"]), "--json", "-"])
    doc = json.loads(r.stdout)
    assert doc["area_rule_applied"] == "bbox" and doc["options"]["area_rule"] == "auto"
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["boxed"]), "--area-rule", "mask", "--json", "-"])
    doc2 = json.loads(r.stdout)
    assert doc2["area_rule_applied"] == "mask" and doc2["options"]["area_rule"] == "mask"
    assert doc["stats"][0] == doc2["stats"][0] and doc["stats"][3:6] != doc2["stats"][3:6]  # only S/M/L move
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["boxed"])])
    assert "prediction S/M/L area: bbox width × height, as pycocotools (--area-rule auto)" in r.stdout


def test_progress_goes_to_stderr_and_q_silences_it(files, monkeypatch):
    monkeypatch.setattr(api._Steps, "delay", 0.0)  # every phase counts as long
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "both", "--json", "-"])
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)
    for phase in ("reading", "scoring (mask IoU)", "boundary bands", "scoring (boundary IoU)"):
        assert phase in r.stderr, r.stderr
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "both", "-q"])
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""


def test_quick_phases_print_nothing(files):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--json", "-"])
    assert r.exit_code == 0 and "scoring" not in r.stderr  # under the 2-s delay: no line


def test_pr_curves_for_both(files, tmp_path):
    out = tmp_path / "pr.png"
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "both", "--pr-curve", str(out)])
    assert r.exit_code == 0, r.output
    from PIL import Image

    for p in (out, tmp_path / "pr.boundary.png"):
        assert Image.open(p).size == (720, 540)
    assert "pr.boundary.png" in r.stdout


def test_names_stay_whole_in_80_columns(files):
    r = _entitykit(["eval", files["gt"], files["res"], "--iou", "both", "--worst", "9"], env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not [line for line in lines if len(line) > 80], "\n".join(lines)
    for name in LONG:  # in the by-source and worst-image tables of both evaluations, never cut
        assert sum(name in line for line in lines) >= 4, name
    assert "…" not in r.stdout
    assert sum(str(7_000_000_000 + k) in r.stdout for k in range(1, 10)) == 9


def test_library_result_says_which_iou(files):
    r = evaluate(files["gt_dict"], files["res_list"], iou="boundary", dilation_ratio=0.01)
    assert (r.iou, r.dilation_ratio) == ("boundary", 0.01)
    assert r.to_json()["iou"] == "boundary"
    m = evaluate(files["gt_dict"], files["res_list"])
    assert (m.iou, m.dilation_ratio) == ("mask", None)
    assert np.all(r.stats[:3] <= m.stats[:3])


def test_sources_of_mixed_types_and_markup_are_printed_as_given(tmp_path):
    # a GT file whose image sources mix ints and strings (and one that looks like rich markup) used to
    # crash sorting the per-source table, then printing it
    gt, res = synth_coco(6, seed=0, n_gt=6, n_pred=10)
    for i, im in enumerate(gt["images"]):
        im["source"] = 3 if i % 2 else "[bold]coco"
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    r = runner.invoke(app, ["eval", str(tmp_path / "gt.json"), str(tmp_path / "res.json")])
    assert r.exit_code == 0, r.output
    rows = [line.split()[0] for line in r.stdout.splitlines() if "│" in line]
    assert "3" in rows and "[bold]coco" in rows, r.stdout
    assert list(evaluate(tmp_path / "gt.json", tmp_path / "res.json").by_source) == [3, "[bold]coco"]


def test_a_truncated_results_file_says_where_it_ends(files, tmp_path):
    text = files["res"].read_text()
    cut = text.index('"counts": "') + 20  # inside an RLE string
    (tmp_path / "cut.json").write_text(text[:cut])
    r = runner.invoke(app, ["eval", str(files["gt"]), str(tmp_path / "cut.json")])
    assert r.exit_code == 1, r.output
    assert "not valid JSON (Unterminated string starting at line 1, column" in r.output, r.output
    assert " at at " not in r.output


@pytest.mark.parametrize("name", ["curves.jpg", "curves"])
def test_pr_curve_names_must_be_png(files, tmp_path, name):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--pr-curve", str(tmp_path / name)])
    assert r.exit_code == 1 and "plots are PNG images: give a .png file name" in r.output, r.output
    assert list(tmp_path.iterdir()) == [] and "APe50" not in r.output  # refused before scoring: nothing written
    with pytest.raises(EntityKitError, match="give a .png file name"):  # the library's own check
        api_result = evaluate(files["gt"], files["res"])
        write_pr_curves(api_result, tmp_path / name)


def test_dilation_ratio_with_mask_iou_is_named_as_ignored_and_empty_predictions_warn(files, tmp_path):
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--dilation-ratio", "0.05"])
    assert r.exit_code == 0 and "--dilation-ratio applies to Boundary APe" in r.output, r.output
    r = runner.invoke(app, ["eval", str(files["gt"]), str(files["res"]), "--iou", "boundary", "--dilation-ratio", "0.05"])
    assert r.exit_code == 0 and "--dilation-ratio applies" not in r.output, r.output
    (tmp_path / "empty.json").write_text("[]")
    res = evaluate(files["gt"], tmp_path / "empty.json")
    assert res.warnings == ["the predictions hold no entity: every AP and AR is 0"] and max(res.stats) == 0
