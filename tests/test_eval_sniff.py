"""What `eval` was handed: recognised from content (formats.sniff), scored, or diagnosed in one line.

Every refused kind goes through the CLI: exit 1, no traceback, one line naming the file, saying
what it looks like and, where one exists, the command that makes it usable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from panopticapi.utils import id2rgb
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.errors import PredictionError
from entitykit.evaluation import evaluate, formats
from entitykit.evaluation.predictions import ENTITYKIT_FORMAT, detect_format
from entitykit.masks import write_id_map_png
from entitykit.prediction_format import PREDICTIONS_FORMAT

from _eval_helpers import pycoco, rle

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


# ---------------------------------------------------------------------------------------------
# small scenes


def _masks():
    """Two disjoint GT masks of a 40×50 image (as in shared/cases/results-as-dict)."""
    a = np.zeros((40, 50), bool)
    a[2:20, 3:30] = True
    b = np.zeros((40, 50), bool)
    b[22:38, 5:45] = True
    return a, b


def _gt() -> dict:
    a, b = _masks()
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": rle(m), "area": int(m.sum()),
             "iscrowd": 0} for k, m in enumerate((a, b))]
    return {"info": {"format": "entitykit-entities", "format_version": 1},
            "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}],
            "annotations": anns, "categories": [{"id": 1, "name": "entity", "supercategory": "entity"}]}


def _results() -> list:
    a, b = _masks()
    return [{"image_id": 1, "category_id": 1, "segmentation": rle(a), "score": 0.9},
            {"image_id": 1, "category_id": 1, "segmentation": rle(b), "score": 0.5}]


def _results_dict() -> dict:
    """The same predictions as a COCO-instances-shaped dict (what some exporters write)."""
    anns = [dict(r, id=k + 1) for k, r in enumerate(_results())]
    return {"images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}], "annotations": anns,
            "categories": [{"id": 1, "name": "entity", "supercategory": "entity"}]}


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _pycoco_agnostic(gt: dict, results: list) -> np.ndarray:
    return pycoco(gt, results, agnostic=True).stats


def _cli(*args):
    r = CliRunner().invoke(app, ["eval", *map(str, args)])
    out = r.output + (getattr(r, "stderr", "") if getattr(r, "stderr", "") not in r.output else "")
    return r, out


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error:")]
    assert len(errs) == 1, out
    return errs[0]


# ---------------------------------------------------------------------------------------------
# the handed case: predictions saved as a COCO-instances-shaped dict


def _check_results_as_dict(gt_path: Path, pred_path: Path, out_dir: Path):
    r = evaluate(gt_path, pred_path)
    assert r.ape == 1.0 and r.options["pred_format"] == "coco"
    gt = json.loads(gt_path.read_text())
    as_list = json.loads(pred_path.read_text())["annotations"]
    ref = _pycoco_agnostic(gt, as_list)
    assert ref[0] == 1.0
    assert np.array_equal(r.stats, ref)
    assert np.array_equal(r.precision, evaluate(gt_path, as_list).precision)
    report = out_dir / "report.json"
    res, out = _cli(gt_path, pred_path, "--no-pq", "--json", report)
    assert res.exit_code == 0, out
    assert "Traceback" not in out
    doc = json.loads(report.read_text())
    assert doc["stats"][0] == 1.0 and doc["options"]["pred_format"] == "coco"


def test_results_as_dict_handed_case(tmp_path):
    if not (CASES / "results-as-dict").is_dir():
        pytest.skip(f"{CASES / 'results-as-dict'} not present")
    _check_results_as_dict(CASES / "results-as-dict" / "gt.json", CASES / "results-as-dict" / "predictions.json",
                           tmp_path)


def test_results_as_dict_built_here(tmp_path):
    gt = _write(tmp_path / "gt.json", _gt())
    pred = _write(tmp_path / "predictions.json", _results_dict())
    _check_results_as_dict(gt, pred, tmp_path)
    assert formats.sniff(pred).kind == formats.COCO_RESULTS_DICT
    # scored exactly as the list: a wrong item is named in the dict's terms
    d = _results_dict()
    d["annotations"][1]["score"] = "0.5"
    with pytest.raises(PredictionError, match=r"annotations \[1\]: score '0.5' is not a number"):
        evaluate(gt, _write(tmp_path / "bad.json", d))


def test_results_dict_in_memory_and_polygons_refused_as_in_a_list(tmp_path):
    gt = _gt()
    assert evaluate(gt, _results_dict()).ape == 1.0
    d = _results_dict()
    d["annotations"][0]["segmentation"] = [[3, 2, 30, 2, 30, 20, 3, 20]]
    with pytest.raises(PredictionError, match=r"annotations \[0\]: segmentation must be a COCO RLE .*polygons"):
        evaluate(gt, d)


# ---------------------------------------------------------------------------------------------
# the fast paths stay the first (and only) readers of the common files


def test_fast_readers_are_used_for_the_common_files(tmp_path):
    res = _write(tmp_path / "res.json", _results())
    k = formats.sniff(res, role="pred")
    assert k.kind == formats.COCO_RESULTS and hasattr(k.data, "buf")  # _scan's columns, no dict per item
    gt = _write(tmp_path / "gt.json", _gt())
    k = formats.sniff(gt, role="gt")
    assert k.kind == formats.ENTITY and not isinstance(k.data, dict)  # the compiled reader's columns
    assert detect_format(res)[0] == "coco"


def test_entitykit_format_name_has_one_owner():
    assert ENTITYKIT_FORMAT is PREDICTIONS_FORMAT


# ---------------------------------------------------------------------------------------------
# each kind through the CLI


def _png(path: Path) -> Path:
    tmp = path.with_name(path.stem + "_tmp.png")
    write_id_map_png(tmp, np.ones((40, 50), np.int32))
    return tmp.rename(path)


def _text(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _sam_amg() -> list:
    a, b = _masks()
    return [{"segmentation": rle(m), "area": int(m.sum()), "bbox": [0, 0, 1, 1], "predicted_iou": 0.9,
             "point_coords": [[1.0, 2.0]], "stability_score": 0.95, "crop_box": [0, 0, 50, 40]} for m in (a, b)]


def _sa1b() -> dict:
    a, b = _masks()
    return {"image": {"image_id": 7, "width": 50, "height": 40, "file_name": "sa_7.jpg"},
            "annotations": [{"id": k, "segmentation": rle(m), "area": int(m.sum()), "predicted_iou": 0.9,
                             "stability_score": 0.9} for k, m in enumerate((a, b))]}


def _panoptic_no_pngs(tmp_path: Path) -> Path:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}],
           "annotations": [{"image_id": 1, "file_name": "a.png",
                            "segments_info": [{"id": 1, "category_id": 1, "iscrowd": 0}]}],
           "categories": [{"id": 1, "name": "thing", "isthing": 1}]}
    return _write(tmp_path / "panoptic_val.json", doc)


def _coco_instances() -> dict:
    d = _gt()
    del d["info"]
    d["categories"] = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}]
    d["annotations"][1]["category_id"] = 2
    return d


def _folder_with_pngs(tmp_path: Path) -> Path:
    f = tmp_path / "preds"
    f.mkdir()
    _png(f / "0001.png")
    _png(f / "0002.png")
    return f


REFUSED_PRED = {
    # name: (make the prediction file, what the message must say)
    "entity dataset": (lambda t: _write(t / "ds.json", _gt()),
                       ["this is an entity dataset (ground truth: no scores); pass it as GT, or give predictions",
                        "1 image, 2 annotations"]),
    "coco instances gt": (lambda t: _write(t / "instances.json", _coco_instances()),
                          ["COCO instances dataset", "2 categories: person, bicycle",
                           "entitykit convert entityseg"]),
    "sam amg": (lambda t: _write(t / "sam.json", _sam_amg()),
                ["SAM automatic-mask-generator output", "a JSON list of 2 objects",
                 "segmentation, area, bbox, predicted_iou, point_coords, stability_score, crop_box",
                 "entitykit convert sam", "--rule score -o entities.json", "image_id of its image in the GT"]),
    "sa-1b": (lambda t: _write(t / "sa_7.json", _sa1b()),
              ["SA-1B annotation file", "keys image, annotations", "2 masks",
               "entitykit convert sam", "--rule score -o entities.json", "entitykit eval entities.json"]),
    "panoptic without pngs": (_panoptic_no_pngs,
                              ["COCO panoptic JSON", "needs its PNG folder", "--pred-png-dir",
                               "pass it as GT", "entitykit convert coco-panoptic"]),
    "empty file": (lambda t: _text(t / "empty.json", b""),
                   ["empty file (0 bytes)", "written as []"]),
    "blank file": (lambda t: _text(t / "blank.json", b"  \n"), ["empty file"]),
    "not json": (lambda t: _text(t / "res.txt", "image_id,score\n1,0.9\n"),
                 ["not valid JSON", "it starts with 'image_id,score"]),
    "json scalar": (lambda t: _text(t / "n.json", "42"),
                    ["cannot tell the format", "a JSON number (42)"]),
    "json string": (lambda t: _text(t / "s.json", '"preds"'), ["a JSON string"]),
    "list of numbers": (lambda t: _text(t / "l.json", "[1, 2]"),
                        ["a JSON list of 2 items", "not an object"]),
    "unknown object": (lambda t: _write(t / "o.json", {"model": "x", "preds": []}),
                       ["cannot tell the format", "keys model, preds"]),
    "png": (lambda t: _png(t / "0001.png"), ["PNG image (50×40)", "predictions.json", "pass the folder"]),
    "png named .json": (lambda t: _png(t / "x.json"), ["PNG image"]),
    "folder without predictions.json": (_folder_with_pngs,
                                        ["predictions.json: not found: the folder holds 2 PNG files (e.g. "
                                         "0001.png) but no predictions.json",
                                         "predictions.json listing image_id and a score per id"]),
    "folder whose predictions.json is a results list": (
        lambda t: (t / "f").mkdir() or _write(t / "f" / "predictions.json", _results()).parent,
        ["predictions.json must be an entitykit predictions file", "a COCO results list (2 predictions)",
         "pass the file itself"]),
    "panoptic annotations list": (lambda t: _write(t / "a.json", [{"image_id": 1, "segments_info": []}]),
                                  ["segments_info", "whole panoptic JSON"]),
}


@pytest.mark.parametrize("name", list(REFUSED_PRED))
def test_refused_predictions_are_named_and_explained(tmp_path, name):
    make, says = REFUSED_PRED[name]
    gt = _write(tmp_path / "gt.json", _gt())
    (tmp_path / "p").mkdir()
    pred = make(tmp_path / "p")
    res, out = _cli(gt, pred)
    assert res.exit_code == 1, out
    assert "Traceback" not in out and "internal error" not in out
    line = _one_error_line(out)
    assert str(pred) in line
    for s in says:
        assert s in line, (s, line)
    if name not in ("sam amg", "sa-1b", "panoptic without pngs"):  # those say what to write instead
        assert "eval reads predictions as" in line  # what is accepted


REFUSED_GT = {
    "coco results list": (lambda t: _write(t / "res.json", _results()), ["predictions", "pass them as PRED"]),
    "coco results dict": (lambda t: _write(t / "resd.json", _results_dict()), ["pass them as PRED"]),
    "coco instances": (lambda t: _write(t / "instances.json", _coco_instances()),
                       ["COCO instances dataset", "person, bicycle", "entitykit convert entityseg",
                        "--overlap small-wins -o entities.json"]),
    "sam amg": (lambda t: _write(t / "sam.json", _sam_amg()), ["entitykit convert sam", "--rule score"]),
    "sa-1b": (lambda t: _write(t / "sa.json", _sa1b()), ["SA-1B", "entitykit convert sam"]),
    "panoptic without pngs": (_panoptic_no_pngs, ["needs its PNG folder", "--gt-png-dir",
                                                  "entitykit convert coco-panoptic"]),
    "empty": (lambda t: _text(t / "e.json", b""), ["empty file"]),
    "png": (lambda t: _png(t / "g.png"), ["PNG image"]),
    "folder": (_folder_with_pngs, ["a folder holding 2 PNG files", "ground truth is a JSON file"]),
}


@pytest.mark.parametrize("name", list(REFUSED_GT))
def test_refused_ground_truth_is_named_and_explained(tmp_path, name):
    make, says = REFUSED_GT[name]
    pred = _write(tmp_path / "res_ok.json", _results())
    (tmp_path / "g").mkdir()
    gt = make(tmp_path / "g")
    res, out = _cli(gt, pred)
    assert res.exit_code == 1, out
    assert "Traceback" not in out and "internal error" not in out
    line = _one_error_line(out)
    assert str(gt) in line
    for s in says:
        assert s in line, (s, line)


def test_accepted_kinds_through_the_cli(tmp_path):
    gt = _write(tmp_path / "gt.json", _gt())
    for pred in (_write(tmp_path / "res.json", _results()), _write(tmp_path / "resd.json", _results_dict())):
        res, out = _cli(gt, pred, "--no-pq")
        assert res.exit_code == 0, out
    # an entitykit predictions folder
    f = tmp_path / "ek"
    f.mkdir()
    a, b = _masks()
    write_id_map_png(f / "1.png", a.astype(np.int32) + 2 * b.astype(np.int32))
    _write(f / "predictions.json", {"format": PREDICTIONS_FORMAT, "version": 1, "images": [
        {"image_id": 1, "file_name": "1.png", "segments": [{"id": 1, "score": 0.9}, {"id": 2, "score": 0.5}]}]})
    res, out = _cli(gt, f)
    assert res.exit_code == 0, out
    assert formats.sniff(f).kind == formats.ENTITYKIT


def test_missing_prediction_file(tmp_path):
    gt = _write(tmp_path / "gt.json", _gt())
    res, out = _cli(gt, tmp_path / "nope.json")
    assert res.exit_code == 1 and "not found" in _one_error_line(out) and "Traceback" not in out


# ---------------------------------------------------------------------------------------------
# typed fields: one check for every format (ape.prepare)


BAD_FIELDS = {
    "string score": ("score", "0.5", "score '0.5' is not a number"),
    "bool score": ("score", True, "score True is not a number"),
    "nan score": ("score", float("nan"), "score nan is not a finite number >= 0"),
    "inf score": ("score", float("inf"), "score inf is not a finite number >= 0"),
    "negative score": ("score", -1, "score -1.0 is not a finite number >= 0"),  # read as a float
    "null score": ("score", None, "score None is not a number"),
    "list image_id": ("image_id", [1], "image_id [1] is not an integer or a string"),
    "bool image_id": ("image_id", True, "image_id True is not an integer or a string"),
    "float image_id": ("image_id", 1.0, "image_id 1.0 is not an integer or a string"),
    "score missing": ("score", ..., "missing 'score'"),
}


@pytest.mark.parametrize("name", list(BAD_FIELDS))
def test_bad_field_types_in_a_results_file(tmp_path, name):
    key, value, says = BAD_FIELDS[name]
    res = _results()
    if value is ...:
        del res[1][key]
    else:
        res[1][key] = value
    gt = _write(tmp_path / "gt.json", _gt())
    pred = _write(tmp_path / "res.json", res)  # json writes NaN / Infinity, which Python's reader accepts
    r, out = _cli(gt, pred)
    assert r.exit_code == 1, out
    assert "Traceback" not in out
    line = _one_error_line(out)
    assert f"{pred}: result [1]: {says}" in line, line
    # in memory: the same check
    with pytest.raises(PredictionError, match=r"result \[1\]|prediction \[1\]"):
        evaluate(_gt(), res)


@pytest.mark.parametrize("value,says", [("0.9", "score '0.9' is not a number"), (False, "score False is not a number")])
def test_bad_score_types_in_entitykit_and_panoptic_predictions(tmp_path, value, says):
    gt = _write(tmp_path / "gt.json", _gt())
    a, b = _masks()
    id_map = a.astype(np.int32) + 2 * b.astype(np.int32)
    f = tmp_path / "ek"
    f.mkdir()
    write_id_map_png(f / "1.png", id_map)
    _write(f / "predictions.json", {"format": PREDICTIONS_FORMAT, "version": 1, "images": [
        {"image_id": 1, "file_name": "1.png", "segments": [{"id": 1, "score": 0.9}, {"id": 2, "score": value}]}]})
    r, out = _cli(gt, f)
    assert r.exit_code == 1 and "Traceback" not in out
    assert "id 2 of image 1 (image 1)" not in out  # the label is not doubled
    assert says in _one_error_line(out) and "id 2 of image 1" in out
    # panoptic
    pan = tmp_path / "pan"
    pan.mkdir()
    Image.fromarray(id2rgb(id_map.astype(np.int64)).astype(np.uint8)).save(pan / "a.png")
    doc = {"images": [], "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": [
        {"id": 1, "category_id": 1, "score": 0.9}, {"id": 2, "category_id": 1, "score": value}]}],
        "categories": [{"id": 1, "name": "x", "isthing": 1}]}
    r, out = _cli(gt, _write(tmp_path / "pan.json", doc))
    assert r.exit_code == 1 and "Traceback" not in out
    assert says in _one_error_line(out) and "segment 2 of image 1" in out
    del doc["annotations"][0]["segments_info"][1]["score"]
    del doc["annotations"][0]["segments_info"][0]["score"]
    doc["annotations"][0]["segments_info"][0]["score"] = 0.9
    # a missing score in an entitykit file is named too
    _write(f / "predictions.json", {"format": PREDICTIONS_FORMAT, "version": 1, "images": [
        {"image_id": 1, "file_name": "1.png", "segments": [{"id": 1, "score": 0.9}, {"id": 2}]}]})
    r, out = _cli(gt, f)
    assert r.exit_code == 1 and "segment id 2 has no 'score'" in _one_error_line(out)


def _ek_folder(tmp_path: Path, version=1, **rec) -> Path:
    a, b = _masks()
    f = tmp_path / "ek"
    (f / "id_maps").mkdir(parents=True, exist_ok=True)
    write_id_map_png(f / "id_maps" / "1.png", a.astype(np.int32) + 2 * b.astype(np.int32))
    image = {"image_id": 1, "file_name": "id_maps/1.png",
             "segments": [{"id": 1, "score": 0.9}, {"id": 2, "score": 0.5}], **rec}
    _write(f / "predictions.json", {"format": PREDICTIONS_FORMAT, "version": version, "images": [image]})
    return f


@pytest.mark.parametrize("change,says", [
    ({"file_name": "../gt.json"}, "images[0] (image 1): file_name '../gt.json' leaves the predictions folder"),
    ({"file_name": "/etc/passwd"}, "images[0] (image 1): file_name '/etc/passwd' leaves the predictions folder"),
    ({"file_name": "id_maps/nope.png"}, "images[0] (image 1): id-map PNG "),
    ({"file_name": None}, "images[0] (image 1): file_name None must name the id-map PNG"),
    ({"segments": [{"id": 1, "score": 0.9}]}, "images[0] (image 1): id 2 is in the id map "),
    ({"version": 2}, "version: version 2 is not supported"),
])
def test_entitykit_entries_name_predictions_json_and_image(tmp_path, change, says):
    gt = _write(tmp_path / "gt.json", _gt())
    assert _cli(gt, _ek_folder(tmp_path))[0].exit_code == 0
    f = _ek_folder(tmp_path, **change)
    r, out = _cli(gt, f)
    assert r.exit_code == 1 and "Traceback" not in out
    line = _one_error_line(out)
    assert f"{f / 'predictions.json'}: {says}" in line, line


def test_broken_rle_in_a_results_file_names_the_file(tmp_path):
    gt = _write(tmp_path / "gt.json", _gt())
    res = _results()
    res[1]["segmentation"]["counts"] = "k9=a00000"  # runs that do not cover 40 × 50
    pred = _write(tmp_path / "res.json", res)
    r, out = _cli(gt, pred)
    assert r.exit_code == 1
    assert f"{pred}: result [1] (image 1): RLE counts" in _one_error_line(out)


# ---------------------------------------------------------------------------------------------
# panoptic segment id 0: the converter's rule, applied by eval too


def test_panoptic_prediction_segment_id_zero_is_an_error(tmp_path):
    gt = _write(tmp_path / "gt.json", _gt())
    a, b = _masks()
    id_map = a.astype(np.int64) + 2 * b.astype(np.int64)
    pan = tmp_path / "pan"
    pan.mkdir()
    Image.fromarray(id2rgb(id_map).astype(np.uint8)).save(pan / "a.png")
    segs = [{"id": 1, "category_id": 1, "score": 0.9}, {"id": 2, "category_id": 1, "score": 0.5}]
    doc = {"images": [], "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segs}],
           "categories": [{"id": 1, "name": "x", "isthing": 1}]}
    pred = _write(tmp_path / "pan.json", doc)
    r, out = _cli(gt, pred, "--no-pq")
    assert r.exit_code == 0, out  # the same file without the id 0 segment scores
    doc["annotations"][0]["segments_info"].insert(1, {"id": 0, "category_id": 1, "score": 0.7})
    _write(pred, doc)
    r, out = _cli(gt, pred)
    assert r.exit_code == 1 and "Traceback" not in out
    line = _one_error_line(out)
    assert f"{pred}: image 1, segments_info[1]: segment with invalid id 0" in line, line


@pytest.mark.skipif(not (CASES.parent / "data" / "coco_panoptic_pq_testdata").is_dir(), reason="sample data absent")
def test_reference_panoptic_file_with_segment_id_zero_is_refused():
    data = CASES.parent / "data" / "coco_panoptic_pq_testdata"
    with pytest.raises(PredictionError, match=r"image 3, segments_info\[\d+\]: segment with invalid id 0"):
        evaluate(data / "coco_gt.json", data / "coco_pred.json", gt_png_dir=data / "coco_gt",
                 pred_png_dir=data / "coco_pred")


# ---------------------------------------------------------------------------------------------
# sniff / diagnose directly


@pytest.mark.parametrize("obj,kind", [
    ([], formats.COCO_RESULTS),
    (_results(), formats.COCO_RESULTS),
    (_results_dict(), formats.COCO_RESULTS_DICT),
    (_gt(), formats.ENTITY),
    ({"images": [], "annotations": []}, formats.ENTITY),
    (_coco_instances(), formats.COCO_INSTANCES),
    (_sam_amg(), formats.SAM_AMG),
    (_sa1b(), formats.SA1B),
    ({"format": PREDICTIONS_FORMAT, "images": []}, formats.ENTITYKIT),
    ({"images": [], "annotations": [{"image_id": 1, "segments_info": []}]}, formats.PANOPTIC),
    ({"format": "png16", "value_k": "…", "images": []}, formats.ID_MAP_INDEX),
    (3.5, formats.SCALAR),
    (None, formats.SCALAR),
])
def test_classify(obj, kind):
    k = formats.classify(obj, None)
    assert k.kind == kind
    assert k.description
    if kind not in formats.PRED_KINDS:
        msg = formats.diagnose(k, "pred")
        assert "\n" not in msg and msg


def test_gt_entity_file_with_other_categories_is_recognised_on_the_fast_path(tmp_path):
    p = _write(tmp_path / "inst.json", _coco_instances())
    k = formats.sniff(p, role="gt")
    assert k.kind == formats.COCO_INSTANCES and not isinstance(k.data, dict)  # read by the compiled reader, once


# ---------------------------------------------------------------------------------------------
# the CLI's own checks, before any work


def test_cli_outputs_and_options_checked_first(tmp_path):
    gt = _write(tmp_path / "gt.json", _gt())
    pred = _write(tmp_path / "res.json", _results())
    before = gt.read_bytes()
    for args, says in ((["--json", gt], "would overwrite its own input"),
                       (["--pr-curve", pred], "would overwrite its own input"),
                       (["--workers", "-2"], "--workers must be 0"),
                       (["--worst", "-1"], "--worst must be 0")):
        r, out = _cli(gt, pred, *args)
        assert r.exit_code == 1 and "Traceback" not in out
        assert says in _one_error_line(out), out
    assert gt.read_bytes() == before
