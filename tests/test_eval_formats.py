"""Prediction formats, panoptic ground truth, PQ against panopticapi, by-source, the CLI."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from panopticapi.utils import id2rgb
from typer.testing import CliRunner

from entitykit.errors import PredictionError
from entitykit.evaluation import evaluate
from entitykit.evaluation.synthetic import synth_image
from entitykit.masks import encode_id_map, write_id_map_png

from _eval_helpers import pycoco

PQ_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_panoptic_pq_testdata"
needs_pq_data = pytest.mark.skipif(not PQ_DATA.is_dir(), reason=f"sample data {PQ_DATA} not present")


def _scene(n=4, seed=0):
    """GT dict, id maps, per-image scores (by id): small synthetic partitions."""
    rng = np.random.default_rng(seed)
    images, anns, maps = [], [], []
    aid = 0
    for i in range(n):
        h, w, gt, pred, scores = synth_image(rng, 8, 14, size=(60 + 4 * i, 80))
        images.append({"id": i + 1, "file_name": f"{i + 1}.jpg", "height": h, "width": w,
                       "source": ("a", "b")[i % 2]})
        ids, rles, areas = encode_id_map(gt)
        for r, a in zip(rles, areas.tolist()):
            aid += 1
            anns.append({"id": aid, "image_id": i + 1, "category_id": 1, "segmentation": r, "area": a,
                         "iscrowd": 0})
        maps.append((pred, scores))
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "entity"}]}, maps


def _coco_results(maps):
    res = []
    for i, (pred, scores) in enumerate(maps):
        ids, rles, _ = encode_id_map(pred)
        res += [{"image_id": i + 1, "category_id": 1, "segmentation": r, "score": float(scores[k])} for k, r in zip(ids.tolist(), rles)]
    return res


def _write_entitykit(folder: Path, maps, fmt="png16"):
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, (pred, scores) in enumerate(maps):
        name = f"{i + 1:04d}.png"
        write_id_map_png(folder / name, pred, fmt=fmt)
        ids = [int(k) for k in np.unique(pred) if k]
        recs.append({"image_id": i + 1, "file_name": name, "segments": [{"id": k, "score": float(scores[k])} for k in ids]})
    (folder / "predictions.json").write_text(json.dumps({"format": "entitykit-predictions", "version": 1,
                                                         "images": recs}))


@pytest.mark.parametrize("fmt", ["png16", "rgb"])
def test_entitykit_format_equals_coco_results(tmp_path, fmt):
    gt, maps = _scene()
    _write_entitykit(tmp_path / "pred", maps, fmt)
    r1 = evaluate(gt, tmp_path / "pred")
    r2 = evaluate(gt, _coco_results(maps))
    assert r1.options["pred_format"] == "entitykit"
    assert np.array_equal(r1.precision, r2.precision) and np.array_equal(r1.stats, r2.stats)
    assert r1.pq == r2.pq
    e = pycoco(gt, _coco_results(maps))
    assert np.array_equal(r1.precision, e.eval["precision"])
    # the JSON file path works too
    r3 = evaluate(gt, tmp_path / "pred" / "predictions.json")
    assert np.array_equal(r3.stats, r1.stats)


def test_entitykit_format_errors(tmp_path):
    gt, maps = _scene(2)
    _write_entitykit(tmp_path / "p", maps)
    doc = json.loads((tmp_path / "p" / "predictions.json").read_text())
    bad = copy.deepcopy(doc)
    bad["images"][0]["segments"] = bad["images"][0]["segments"][1:]
    (tmp_path / "p" / "predictions.json").write_text(json.dumps(bad))
    with pytest.raises(PredictionError, match=r"predictions.json: images\[0\] \(image 1\): id \d+ is in the id map "
                                              r".*0001.png but has no segments entry"):
        evaluate(gt, tmp_path / "p")
    bad = copy.deepcopy(doc)
    bad["images"][0]["segments"].append(dict(bad["images"][0]["segments"][0]))
    (tmp_path / "p" / "predictions.json").write_text(json.dumps(bad))
    with pytest.raises(PredictionError, match="duplicate segment id"):
        evaluate(gt, tmp_path / "p")
    bad = copy.deepcopy(doc)
    bad["images"][0]["image_id"] = 99
    (tmp_path / "p" / "predictions.json").write_text(json.dumps(bad))
    with pytest.raises(PredictionError, match="unknown image id 99"):
        evaluate(gt, tmp_path / "p")
    bad = copy.deepcopy(doc)
    bad["images"][0]["segments"][0]["score"] = float("nan")
    (tmp_path / "p" / "predictions.json").write_text(json.dumps(bad))
    with pytest.raises(PredictionError, match="not a finite number"):
        evaluate(gt, tmp_path / "p")
    write_id_map_png(tmp_path / "p" / "0001.png", np.zeros((5, 5), np.int32))
    (tmp_path / "p" / "predictions.json").write_text(json.dumps(doc))
    with pytest.raises(PredictionError, match="id map is 5×5"):
        evaluate(gt, tmp_path / "p")


def _write_panoptic(folder: Path, maps, scores=True):
    folder.mkdir(parents=True, exist_ok=True)
    anns = []
    for i, (pred, sc) in enumerate(maps):
        name = f"{i + 1:04d}.png"
        Image.fromarray(id2rgb(pred.astype(np.int64)).astype(np.uint8)).save(folder / name)
        segs = []
        for k in (int(k) for k in np.unique(pred) if k):
            s = {"id": k, "category_id": 7, "iscrowd": 0}
            if scores:
                s["score"] = float(sc[k])
            segs.append(s)
        anns.append({"image_id": i + 1, "file_name": name, "segments_info": segs})
    doc = {"images": [], "annotations": anns, "categories": [{"id": 7, "name": "x", "isthing": 1}]}
    path = folder.with_suffix(".json")
    path.write_text(json.dumps(doc))
    return path


def test_panoptic_predictions_with_and_without_scores(tmp_path):
    gt, maps = _scene()
    p = _write_panoptic(tmp_path / "pan", maps, scores=True)
    r = evaluate(gt, p)
    assert r.options["pred_format"] == "panoptic"
    assert np.array_equal(r.stats, evaluate(gt, _coco_results(maps)).stats)
    p2 = _write_panoptic(tmp_path / "pan2", maps, scores=False)
    r2 = evaluate(gt, p2)
    assert any("no scores" in w for w in r2.warnings)
    flat = [dict(x, score=1.0) for x in _coco_results(maps)]
    assert np.array_equal(r2.precision, pycoco(gt, flat).eval["precision"])
    doc = json.loads(p.read_text())
    del doc["annotations"][0]["segments_info"][0]["score"]
    p.write_text(json.dumps(doc))
    with pytest.raises(PredictionError, match="give every segment a score or none"):
        evaluate(gt, p)


def _class_agnostic(src: Path, dst: Path) -> Path:
    """One category; segments with id 0 dropped (coco_pred.json's "team" lists one: 0 is "no
    segment" in a panoptic PNG, an error for eval and convert alike — see test_eval_sniff.py)."""
    d = json.loads(src.read_text())
    for a in d["annotations"]:
        a["segments_info"] = [s for s in a["segments_info"] if s["id"] != 0]
        for s in a["segments_info"]:
            s["category_id"] = 1
    d["categories"] = [{"id": 1, "name": "entity", "isthing": 1}]
    dst.write_text(json.dumps(d))
    return dst


@needs_pq_data
def test_pq_matches_panopticapi(tmp_path):
    from panopticapi.evaluation import pq_compute_single_core

    gt_json = _class_agnostic(PQ_DATA / "coco_gt.json", tmp_path / "coco_gt.json")
    pr_json = _class_agnostic(PQ_DATA / "coco_pred.json", tmp_path / "coco_pred.json")
    gt_d, pr_d = json.loads(gt_json.read_text()), json.loads(pr_json.read_text())
    pairs = list(zip(gt_d["annotations"], pr_d["annotations"]))
    cats = {1: {"id": 1, "name": "entity", "isthing": 1}}
    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, copy.deepcopy(pairs), str(PQ_DATA / "coco_gt"), str(PQ_DATA / "coco_pred"), cats)
    ref, _ = stat.pq_average(cats, isthing=None)
    r = evaluate(gt_json, pr_json, gt_png_dir=PQ_DATA / "coco_gt", pred_png_dir=PQ_DATA / "coco_pred", crowd="keep")
    assert r.pq is not None and r.pq["tp"] > 0
    assert abs(r.pq["PQ"] - ref["pq"]) <= 1e-12
    assert abs(r.pq["SQ"] - ref["sq"]) <= 1e-12
    assert abs(r.pq["RQ"] - ref["rq"]) <= 1e-12
    c = stat.pq_per_cat[1]
    assert (r.pq["tp"], r.pq["fp"], r.pq["fn"]) == (c.tp, c.fp, c.fn)


@needs_pq_data
def test_panoptic_gt_default_png_folder_and_crowd_void(tmp_path):
    shutil.copytree(PQ_DATA / "coco_gt", tmp_path / "coco_gt")
    gt_json = _class_agnostic(PQ_DATA / "coco_gt.json", tmp_path / "coco_gt.json")
    pr_json = _class_agnostic(PQ_DATA / "coco_pred.json", tmp_path / "coco_pred.json")
    r = evaluate(gt_json, pr_json, pred_png_dir=PQ_DATA / "coco_pred")
    assert r.options["gt_format"] == "coco-panoptic" and r.counts["gt_crowd"] == 0
    assert 0 <= r.stats[0] <= 1


def test_by_source_equals_scoring_each_source_alone():
    gt, maps = _scene(6)
    res = _coco_results(maps)
    r = evaluate(gt, res)
    assert set(r.by_source) == {"a", "b"}
    for src in ("a", "b"):
        ids = {im["id"] for im in gt["images"] if im["source"] == src}
        g2 = dict(gt, images=[im for im in gt["images"] if im["id"] in ids],
                  annotations=[a for a in gt["annotations"] if a["image_id"] in ids])
        r2 = evaluate(g2, [x for x in res if x["image_id"] in ids], by_source=False)
        assert list(r.by_source[src]["stats"].values()) == list(r2.stats)
        assert r.by_source[src]["pq"] == r2.pq


def test_cli_eval(tmp_path):
    import entitykit.cli.evaluate  # noqa: F401  (registers the command)
    from entitykit.cli._app import app

    gt, maps = _scene(3)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(_coco_results(maps)))
    runner = CliRunner()
    out = runner.invoke(app, ["eval", str(tmp_path / "gt.json"), str(tmp_path / "res.json"), "--json",
                              str(tmp_path / "o.json"), "--pr-curve", str(tmp_path / "pr.png"), "--max-dets", "50"])
    assert out.exit_code == 0, out.output
    assert "APe" in out.output and "PQ" in out.output
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["options"]["max_dets"] == 50 and doc["options"]["overlap"] == "error"
    assert len(doc["stats"]) == 12 and len(doc["per_image"]) == 3
    assert np.array(doc["precision"]).shape == (10, 101, 4, 3)
    assert Image.open(tmp_path / "pr.png").size == (720, 540)
    # an overlap is a red one-line error and exit code 1
    res = _coco_results(maps)
    res.append(dict(res[0], score=0.01))
    (tmp_path / "res.json").write_text(json.dumps(res))
    out = runner.invoke(app, ["eval", str(tmp_path / "gt.json"), str(tmp_path / "res.json")])
    assert out.exit_code == 1 and "overlap" in out.output


def test_json_files_fast_reader_equals_in_memory(tmp_path):
    gt, maps = _scene(3)
    res = _coco_results(maps)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    r_file = evaluate(tmp_path / "gt.json", tmp_path / "res.json")
    r_mem = evaluate(gt, res)
    assert np.array_equal(r_file.precision, r_mem.precision) and r_file.pq == r_mem.pq
    assert r_file.by_source == r_mem.by_source
    # polygons / list counts are not for the fast reader: same numbers through json
    from pycocotools import mask as mask_utils

    h, w = gt["images"][0]["height"], gt["images"][0]["width"]
    res2 = copy.deepcopy(res)
    m = mask_utils.decode({"size": [h, w], "counts": res2[0]["segmentation"]["counts"].encode()})
    flat = m.ravel(order="F").astype(np.int8)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    counts = np.diff(bounds).tolist()
    res2[0]["segmentation"] = {"size": [h, w], "counts": ([0] + counts) if flat[0] else counts}  # uncompressed RLE
    (tmp_path / "res2.json").write_text(json.dumps(res2))
    r_list = evaluate(tmp_path / "gt.json", tmp_path / "res2.json")
    assert np.array_equal(r_list.precision, r_mem.precision)


def test_empty_prediction_file(tmp_path):
    gt, _ = _scene(2)
    (tmp_path / "res.json").write_text("[]")
    r = evaluate(gt, tmp_path / "res.json")
    assert r.stats[0] == 0.0 and r.counts["predictions"] == 0


@needs_pq_data
def test_string_image_ids_of_converted_panoptic_gt(tmp_path):
    from entitykit.masks import read_id_map_png

    gt_d = json.loads(_class_agnostic(PQ_DATA / "coco_gt.json", tmp_path / "x.json").read_text())
    pr_d = json.loads(_class_agnostic(PQ_DATA / "coco_pred.json", tmp_path / "y.json").read_text())
    names = {im["id"]: f"city_{im['id']:06d}" for im in gt_d["images"]}
    for d in (gt_d, pr_d):
        for im in d["images"]:
            im["id"] = names[im["id"]]
        for a in d["annotations"]:
            a["image_id"] = names[a["image_id"]]
    (tmp_path / "gt.json").write_text(json.dumps(gt_d))
    (tmp_path / "pred.json").write_text(json.dumps(pr_d))
    res = []
    for a in pr_d["annotations"]:
        ids, rles, _ = encode_id_map(read_id_map_png(PQ_DATA / "coco_pred" / a["file_name"]))
        res += [{"image_id": a["image_id"], "segmentation": r, "score": 1.0} for r in rles]
    (tmp_path / "res.json").write_text(json.dumps(res))
    r1 = evaluate(tmp_path / "gt.json", tmp_path / "pred.json", gt_png_dir=PQ_DATA / "coco_gt",
                  pred_png_dir=PQ_DATA / "coco_pred", crowd="keep")
    r2 = evaluate(tmp_path / "gt.json", tmp_path / "res.json", gt_png_dir=PQ_DATA / "coco_gt", crowd="keep")
    assert r1.counts["predictions"] == r2.counts["predictions"] == len(res)
    assert r1.pq == r2.pq and r1.pq["tp"] > 0


def test_saved_dataset_with_source_ids_accepts_original_ids(tmp_path):
    gt, maps = _scene(3)
    names = {im["id"]: f"frankfurt_{im['id']:06d}" for im in gt["images"]}
    for im in gt["images"]:
        im["source_id"] = names[im["id"]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    res = _coco_results(maps)
    renamed = [dict(r, image_id=names[r["image_id"]]) for r in res]
    (tmp_path / "res.json").write_text(json.dumps(renamed))
    a = evaluate(tmp_path / "gt.json", tmp_path / "res.json")
    b = evaluate(gt, res)
    assert np.array_equal(a.precision, b.precision) and a.pq == b.pq
