"""The compiled COCO-results reader (_cscan.c) gives json's values exactly, or gives up (→ json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entitykit.evaluation import _scan, evaluate
from entitykit.evaluation.synthetic import synth_coco


def _as_json_columns(text: str):
    items = json.loads(text)
    return (np.array([x["image_id"] for x in items], np.int64), np.array([x["score"] for x in items], np.float64),
            np.array([x["segmentation"]["size"] for x in items], np.int64).reshape(-1, 2),
            "".join(x["segmentation"]["counts"] for x in items).encode())


def _check_same(text: str):
    cols = _scan.coco_results(text.encode())
    assert cols is not None, text[:200]
    ids, scores, sizes, counts = _as_json_columns(text)
    assert np.array_equal(cols.image_id, ids)
    assert np.array_equal(cols.score.view(np.int64), scores.view(np.int64))  # bit-identical floats
    assert np.array_equal(cols.size, sizes)
    assert _counts(cols) == counts


def _counts(cols) -> bytes:
    """Every counts string, concatenated (the reader leaves them in the file's buffer, in place)."""
    return b"".join(cols.buf[s:e].tobytes() for s, e in zip(cols.start.tolist(), cols.end.tolist()))


@pytest.fixture(scope="module")
def results():
    _, res = synth_coco(12, seed=4)
    return res


def test_compact_pretty_and_reordered(results):
    _check_same(json.dumps(results))
    _check_same(json.dumps(results, indent=2))
    _check_same(json.dumps(results, separators=(",", ":")))
    reordered = [{"score": r["score"], "extra": {"a": [1, 2.5e-3, None, True, False, "x\\\"y\u00e9\\n"], "b": {}},
                  "segmentation": {"counts": r["segmentation"]["counts"], "size": r["segmentation"]["size"]},
                  "bbox": [1.0, 2, 3e2, -4], "image_id": r["image_id"], "category_id": 1} for r in results]
    _check_same(json.dumps(reordered))
    _check_same(json.dumps(reordered, ensure_ascii=False))
    _check_same("[]")
    _check_same(" [ ] ")


def test_escapes_in_counts(results):
    withbs = [r for r in results if "\\" in r["segmentation"]["counts"]]
    assert withbs, "synthetic data should contain an RLE with a backslash"
    _check_same(json.dumps(withbs))
    # "\/" is a legal JSON escape for "/"
    r = dict(results[0], segmentation={"size": [4, 4], "counts": "0/"})
    txt = json.dumps([r]).replace('"0/"', '"0\\/"')
    _check_same(txt)


@pytest.mark.parametrize("text", [
    '[{"image_id": "a", "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}]',  # string id
    '[{"image_id": 1.0, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}]',  # float id
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": [0, 1]}, "score": 1}]',  # list counts
    '[{"image_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]], "score": 1}]',  # polygon
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}}]',  # no score
    '[{"image_id": 1, "image_id": 2, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}]',
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "score": NaN}]',
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1},]',  # trailing comma
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}] x',
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1, "bbox": [1,,2]}]',
    '[{"image_id": 01, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}]',
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "0\\n1"}, "score": 1}]',
    '[{"image_\\u0069d": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}]',
    '{"image_id": 1}',
    '[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "score": 1}',
])
def test_gives_up_on_anything_else(text):
    assert _scan.coco_results(text.encode()) is None


def test_file_path_uses_it_and_matches_in_memory(tmp_path):
    gt, res = synth_coco(20, seed=8)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res, indent=1))
    assert _scan.coco_results((tmp_path / "res.json").read_bytes()) is not None
    a = evaluate(tmp_path / "gt.json", tmp_path / "res.json")
    b = evaluate(gt, res)
    assert np.array_equal(a.precision, b.precision) and np.array_equal(a.stats, b.stats) and a.pq == b.pq
    # an unknown image id read through the compiled reader is still named
    res[3]["image_id"] = 999
    (tmp_path / "res.json").write_text(json.dumps(res))
    from entitykit.errors import PredictionError

    with pytest.raises(PredictionError, match=r"unknown image id 999.*|result \[3\]"):
        evaluate(tmp_path / "gt.json", tmp_path / "res.json")


def _ann_json_columns(anns):
    return (np.array([a["id"] for a in anns], np.int64), np.array([a["image_id"] for a in anns], np.int64),
            np.array([a["area"] for a in anns], np.float64),
            np.array([1 if a.get("iscrowd") else 0 for a in anns], np.uint8),
            "".join(a["segmentation"]["counts"] for a in anns).encode())


def test_entity_annotations_reader():
    gt, _ = synth_coco(10, seed=5, crowd_frac=0.2)
    anns = gt["annotations"]
    variants = [anns, [dict(a, iscrowd=bool(a["iscrowd"]), area=float(a["area"]) + 0.5, source="x\\\\y",
                            isthing=None, extra={"k": [1, {"z": "w"}]}) for a in anns],
                [{k: a[k] for k in reversed(list(a))} for a in anns],
                [{k: v for k, v in a.items() if k != "iscrowd"} for a in anns]]
    for v in variants:
        for dump in (json.dumps(v), json.dumps(v, indent=2)):
            cols = _scan.annotations(dump.encode())
            assert cols is not None
            ids, img, area, crowd, counts = _ann_json_columns(json.loads(dump))
            assert np.array_equal(cols.id, ids) and np.array_equal(cols.image_id, img)
            assert np.array_equal(cols.area.view(np.int64), area.view(np.int64))
            assert np.array_equal(cols.iscrowd, crowd) and _counts(cols) == counts


@pytest.mark.parametrize("ann", [
    '{"id": 1, "image_id": "a", "segmentation": {"size": [1, 1], "counts": "01"}, "area": 1}',
    '{"id": 1, "image_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]], "area": 1}',
    '{"id": 1, "image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}}',
    '{"id": 1.5, "image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "area": 1}',
    '{"id": 1, "image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}, "area": 1, "iscrowd": null}',
])
def test_entity_annotations_reader_gives_up(ann):
    assert _scan.annotations(f"[{ann}]".encode()) is None


def test_entity_file_paths_agree(tmp_path):
    gt, res = synth_coco(15, seed=6, crowd_frac=0.1)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    a = evaluate(tmp_path / "gt.json", res)
    b = evaluate(gt, res)
    assert np.array_equal(a.precision, b.precision) and a.pq == b.pq and a.counts == b.counts
    gt["annotations"][4]["id"] = gt["annotations"][2]["id"]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    from entitykit.errors import DatasetError

    with pytest.raises(DatasetError, match="duplicate annotation id"):
        evaluate(tmp_path / "gt.json", res)
    gt["annotations"][4]["id"] = 0
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(DatasetError, match="not an integer >= 1"):
        evaluate(tmp_path / "gt.json", res)
    gt["annotations"][4]["id"] = 10**6
    gt["annotations"][4]["image_id"] = 777
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(DatasetError, match="unknown image id 777"):
        evaluate(tmp_path / "gt.json", res)
    gt["annotations"][4]["image_id"] = 1
    gt["annotations"][4]["segmentation"]["size"] = [3, 3]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(DatasetError, match=r"RLE size \[3, 3\] differs"):
        evaluate(tmp_path / "gt.json", res)


def test_declined_entity_file_is_read_intact_by_json(tmp_path):
    """The scanner unescapes RLE strings in the file's own buffer only once the reader keeps its
    result: a file it declines after scanning (here: an image whose source_id is a float) reaches
    json with its backslashes intact."""
    gt, res = synth_coco(6, seed=9)
    assert any("\\" in a["segmentation"]["counts"] for a in gt["annotations"])
    gt["images"][0]["source_id"] = 1.5
    raw = bytearray(json.dumps(gt).encode())
    before = bytes(raw)
    assert _scan.entity_file(raw) is None and bytes(raw) == before
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    a = evaluate(tmp_path / "gt.json", res)
    b = evaluate(gt, res)
    assert np.array_equal(a.precision, b.precision) and a.counts == b.counts
