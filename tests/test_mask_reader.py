"""One mask reader and validator (``entitykit.masks.read_mask``) for every command that reads masks.

References: pycocotools' own encoder (``mask.encode`` / ``frPyObjects``) and hand-built runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import extra as _  # noqa: F401
from hypothesis.extra import numpy as hnp
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.errors import EntityKitError
from entitykit.masks import encode_mask, read_mask, runs_problem

runner = CliRunner()
CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.bool_, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)))
def test_every_encoding_of_a_mask_reads_to_pycocotools_rle(m):
    h, w = m.shape
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    compressed = {"size": [h, w], "counts": ref["counts"].decode("ascii")}
    flat = m.ravel(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1]])))) if flat.size else []
    runs = np.diff(np.concatenate(([0], change))).tolist()
    uncompressed = {"size": [h, w], "counts": [int(r) for r in runs if True]}
    if sum(uncompressed["counts"]) != h * w:  # the final sentinel run is not part of the mask
        uncompressed["counts"] = uncompressed["counts"][:-1] if uncompressed["counts"] else []
    assert sum(uncompressed["counts"]) == h * w
    int_grid = m.astype(int).tolist()
    for seg in (compressed, uncompressed, m.tolist(), int_grid, m):
        if seg is int_grid and (h < 2 or w < 3):
            continue  # tiny 0/1 integer grids are ambiguous with polygons; booleans and RLEs are not
        got = read_mask(seg, h, w)
        assert got["size"] == [h, w]
        assert mask_utils.decode(got).tolist() == m.astype(np.uint8).tolist()


def test_polygons_and_sam_boolean_grid():
    poly = [[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]]
    ref = mask_utils.merge(mask_utils.frPyObjects(poly, 10, 12))
    assert read_mask(poly, 10, 12)["counts"] == ref["counts"]
    grid = [[False, True, True], [False, False, True]]  # SAM binary_mask output saved as JSON
    assert mask_utils.decode(read_mask(grid, 2, 3)).tolist() == [[0, 1, 1], [0, 0, 1]]


BAD = {
    "short runs": ({"size": [30, 40], "counts": [100, 305]}, "do not cover height × width"),
    "long runs": ({"size": [3, 4], "counts": [5, 10]}, "do not cover height × width"),
    "truncated string": ({"size": [30, 40], "counts": encode_mask(np.eye(30, 40, dtype=bool))["counts"][:-1]},
                         "truncated|do not cover"),
    "bytes literal": ({"size": [3, 4], "counts": "b'34'"}, "Python bytes literal"),
    "bad alphabet": ({"size": [3, 4], "counts": "zz~"}, "alphabet"),
    "116 TiB": ({"size": [3, 4], "counts": "ooooooooooo0"}, "longer than any image allows"),
    "negative run": ({"size": [3, 4], "counts": [13, -1]}, "negative"),
    "bool runs": ({"size": [3, 4], "counts": [True, 11]}, "whole numbers"),
    "size mismatch": ({"size": [4, 3], "counts": [12]}, r"RLE size \[4, 3\] differs"),
    "size zero": ({"size": [0, 4], "counts": []}, "positive whole numbers"),
    "size strings": ({"size": ["3", "4"], "counts": [12]}, "positive whole numbers"),
    "no counts": ({"size": [3, 4]}, "needs 'size' and 'counts'"),
    "counts dict": ({"size": [3, 4], "counts": {"a": 1}}, "must be a string"),
    "polygon too short": ([[1.0, 2.0, 3.0, 4.0]], "≥ 3 points"),
    "polygon nan": ([[1.0, 2.0, 3.0, float("nan"), 5.0, 6.0]], "finite"),
    "grid shape": ([[True, False], [False, True]], "binary mask is 2×2"),
    "grid values": ([[True, 2, 0], [0, 1, 1], [0, 0, 0]], "only 0/1"),
    "number": (5, "neither an RLE"),
    "empty list": ([], "neither an RLE"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_masks_are_named_before_decoding(case):
    seg, needle = BAD[case]
    with pytest.raises(EntityKitError, match=needle) as e:
        read_mask(seg, 3 if case not in ("short runs", "truncated string") else 30,
                  4 if case not in ("short runs", "truncated string") else 40, path="f.json", item="mask 2")
    assert e.value.path == "f.json" and e.value.item == "mask 2"


def test_runs_problem_never_allocates_for_huge_runs():
    # 12 characters that would decode to a 2^55-pixel run: refused from the token length alone
    assert "longer" in runs_problem("ooooooooooo0", 3, 4)
    assert runs_problem(encode_mask(np.ones((3, 4), bool))["counts"], 3, 4) is None


def _sam_file(root: Path, segs: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    anns = [{"id": k + 1, "segmentation": s, "area": 10, "predicted_iou": 0.9 - 0.1 * k} for k, s in enumerate(segs)]
    (root / "x.json").write_text(json.dumps({"image": {"image_id": 1, "file_name": "x.jpg", "height": 30, "width": 40},
                                             "annotations": anns}))
    return root


@pytest.mark.parametrize("command", ["convert-sam", "convert-entityseg", "check", "eval"])
def test_every_mask_reader_refuses_short_runs(tmp_path, command):
    """The handed sam-rle-short-runs kind, through every command that reads masks."""
    good = encode_mask(np.pad(np.ones((5, 5), bool), ((2, 23), (3, 32))))
    short = {"size": [30, 40], "counts": "k9=a00000"}  # 405 of 1,200 pixels
    out = tmp_path / "out.json"
    if command == "convert-sam":
        src = _sam_file(tmp_path / "sa1b", [good, short])
        args = ["convert", "sam", str(src), "--rule", "score", "-o", str(out), "-q"]
    else:
        ds = {"images": [{"id": 1, "file_name": "x.jpg", "height": 30, "width": 40}],
              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": good, "area": 25,
                               "bbox": [3, 2, 5, 5], "iscrowd": 0},
                              {"id": 2, "image_id": 1, "category_id": 1, "segmentation": short, "area": 325,
                               "bbox": [0, 0, 1, 1], "iscrowd": 0}],
              "categories": [{"id": 1, "name": "entity"}]}
        (tmp_path / "ds.json").write_text(json.dumps(ds))
        args = {"convert-entityseg": ["convert", "entityseg", str(tmp_path / "ds.json"), "-o", str(out), "-q"],
                "check": ["check", str(tmp_path / "ds.json"), "-q"],
                "eval": ["eval", str(tmp_path / "ds.json"), str(tmp_path / "ds.json")]}[command]
        if command == "eval":  # as predictions: a COCO results list with the short mask
            (tmp_path / "r.json").write_text(json.dumps([{"image_id": 1, "segmentation": short, "score": 0.5,
                                                          "category_id": 1}]))
            ds["annotations"] = ds["annotations"][:1]
            (tmp_path / "gt.json").write_text(json.dumps(ds))
            args = ["eval", str(tmp_path / "gt.json"), str(tmp_path / "r.json")]
    res = runner.invoke(app, args)
    text = res.output
    assert res.exit_code == 1, text
    assert "Traceback" not in text and "not cover" in text
    assert not out.exists()


def test_handed_sam_case(tmp_path):
    case = CASES / "sam-rle-short-runs"
    if not case.is_dir():
        pytest.skip(f"{case} not present")
    shutil.copytree(case, tmp_path / "c")
    res = runner.invoke(app, ["convert", "sam", str(tmp_path / "c" / "sa1b"), "--rule", "score",
                              "-o", str(tmp_path / "out.json"), "-q"])
    assert res.exit_code == 1 and "x.json" in res.output and "mask 2" in res.output and "not cover" in res.output
    assert not (tmp_path / "out.json").exists()
    # --keep-going records it and goes on: the good mask survives, the bad one is listed
    res = runner.invoke(app, ["convert", "sam", str(tmp_path / "c" / "sa1b"), "--rule", "score",
                              "-o", str(tmp_path / "out.json"), "-q", "--keep-going"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "out.json").read_text())
    assert [a["source_id"] for a in out["annotations"]] == [1]
    assert any("mask 2" in p["item"] and "not cover" in p["problem"] for p in out["info"]["conversion"]["problems"])
