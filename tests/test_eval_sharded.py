"""``evaluate`` / ``entitykit eval`` on a sharded ground truth: scored shard by shard, joined into
exactly what one file gives (every number, the precision / recall / scores arrays, per image, per
source, PQ, overlaps), including shards whose image ids interleave (pycocotools breaks score ties
by image order, so the join must restore the sorted-id order), boundary IoU, ``--overlap
resolve`` and the bbox area rule; bad predictions are refused before any shard is scored; memory
holds one shard's masks at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from entitykit.dataset import EntityDataset
from entitykit.errors import PredictionError
from entitykit.evaluation import evaluate
from entitykit.shards import entry_for_file, manifest_for, shard_counts, write_manifest
from entitykit.synth import write_synthetic_panoptic


def shard(ds: EntityDataset, folder: Path, groups: list[list[int]]) -> Path:
    """``ds`` cut into JSON shards holding the images at the positions ``groups`` (in that order);
    id ranges are not recorded (interleaving ranges may not be: the readers check uniqueness)."""
    folder.mkdir(parents=True)
    by_image = ds.annotations_by_image()
    entries = []
    for k, pos in enumerate(groups):
        imgs = [ds.images[i] for i in pos]
        part = EntityDataset(images=imgs, annotations=[a for im in imgs for a in by_image[im["id"]]], info={})
        part.save(folder / f"part-{k}.json")
        counts = dict(shard_counts(part), image_ids=None, annotation_ids=None)
        entries.append(entry_for_file(folder, f"part-{k}.json", counts))
    write_manifest(folder, manifest_for(folder, entries))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 images from two sources whose ids are shuffled, so that shards interleave in id order;
    predictions: most GT masks (some eroded, so IoUs vary), scores with many ties across images,
    and a bbox on each result (the pycocotools area rule applies)."""
    root = tmp_path_factory.mktemp("evsh")
    j = write_synthetic_panoptic(root / "d", 12, height=48, width=64, segments=9, seed=3, crowd_fraction=0.2)
    from entitykit.convert import convert_coco_panoptic

    ds = convert_coco_panoptic(j, image_root=root / "d" / "images", crowd="keep")
    rng = np.random.default_rng(7)
    new_ids = rng.permutation(np.arange(100, 100 + 12 * 7, 7)).tolist()
    remap = {im["id"]: new_ids[k] for k, im in enumerate(ds.images)}
    for k, im in enumerate(ds.images):
        im["id"] = remap[im["id"]]
        im["source"] = "coco" if k % 3 else "ade20k"
    for a in ds.annotations:
        a["image_id"] = remap[a["image_id"]]
    ds.save(root / "whole.json")
    res = []
    for a in ds.annotations:
        if a.get("iscrowd") or rng.random() < 0.25:
            continue
        m = mask_utils.decode(a["segmentation"])
        if rng.random() < 0.4:  # shrink: a lower IoU
            ys, xs = np.nonzero(m)
            m[ys[: len(ys) // 3], xs[: len(xs) // 3]] = 0
        r = mask_utils.encode(np.asfortranarray(m))
        r["counts"] = r["counts"].decode()
        res.append({"image_id": a["image_id"], "segmentation": r, "score": round(float(rng.random()), 1),
                    "bbox": [float(v) for v in mask_utils.toBbox(r)]})
    (root / "res.json").write_text(json.dumps(res))
    groups = [[0, 5, 9, 2], [11, 1, 7], [3, 10, 4, 6, 8]]
    return root / "whole.json", shard(ds, root / "shards", groups), root / "res.json"


def same(a, b) -> None:
    assert np.array_equal(a.stats, b.stats, equal_nan=True)
    for name in ("precision", "recall", "scores"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.per_image == b.per_image
    assert a.by_source == b.by_source and a.pq == b.pq and a.counts == b.counts
    assert a.overlap == b.overlap and a.area_rule_applied == b.area_rule_applied


def test_interleaved_shards_score_as_one_file(data):
    whole, folder, res = data
    one = evaluate(whole, res)
    assert 0 < one.stats[0] < 1 and one.area_rule_applied == "bbox" and len(one.by_source) == 2
    ids = [r["image_id"] for r in one.per_image]
    assert ids == sorted(ids)
    scores = np.array([r["score"] for r in json.loads(res.read_text())])
    assert len(np.unique(scores)) < len(scores) // 3  # ties: their order is decided by image order
    same(evaluate(folder, res), one)
    same(evaluate(folder / "manifest.json", res, area_rule="mask"), evaluate(whole, res, area_rule="mask"))


def test_boundary_and_mask_together(data):
    whole, folder, res = data
    for a, b in zip(evaluate(folder, res, iou=("mask", "boundary")), evaluate(whole, res, iou=("mask", "boundary"))):
        same(a, b)
        assert a.iou == b.iou


def test_overlap_resolve_and_refusal(data, tmp_path):
    whole, folder, res = data
    items = json.loads(res.read_text())
    extra = []
    for r in items[::5]:  # a copy of some masks under another score: overlaps in several shards
        extra.append(dict(r, score=round(r["score"] / 2, 2)))
    (tmp_path / "over.json").write_text(json.dumps(items + extra))
    one = evaluate(whole, tmp_path / "over.json", overlap="resolve")
    assert one.overlap["images_with_overlap"] > 1 and one.overlap["predictions_removed"] == len(extra)
    same(evaluate(folder, tmp_path / "over.json", overlap="resolve"), one)
    with pytest.raises(PredictionError, match="predictions overlap") as e:
        evaluate(folder, tmp_path / "over.json")
    assert "of this shard" in str(e.value) or "more image" not in str(e.value)


def test_bad_predictions_refused_before_scoring(data, tmp_path):
    whole, folder, res = data
    items = json.loads(res.read_text())
    bad = items[:3] + [dict(items[3], image_id=999_999)] + items[4:]
    (tmp_path / "unknown.json").write_text(json.dumps(bad))
    for gt in (whole, folder):
        with pytest.raises(PredictionError, match=r"unknown image id 999999") as e:
            evaluate(gt, tmp_path / "unknown.json")
        assert e.value.item == "result [3]"
    bad = items[:2] + [dict(items[2], score=-1.0)] + items[3:]
    (tmp_path / "neg.json").write_text(json.dumps(bad))
    with pytest.raises(PredictionError, match="not a finite number") as e:
        evaluate(folder, tmp_path / "neg.json")
    assert e.value.item == "result [2]"


def test_a_shard_changed_between_the_passes_is_named(data, tmp_path, monkeypatch):
    """The second pass reads each shard again: a shard whose bytes changed since the first pass
    (and since its manifest was written) is refused, naming it."""
    import shutil

    from entitykit.errors import DatasetError
    from entitykit.evaluation import predictions as P

    whole, folder, res = data
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    real = P.gt_parts

    def changing(g):
        (copy / "part-1.json").write_text((copy / "part-1.json").read_text() + "\n")  # same JSON, other bytes
        yield from real(g)

    monkeypatch.setattr(P, "gt_parts", changing)
    with pytest.raises(DatasetError, match="the manifest says") as e:
        evaluate(copy, res)
    assert "part-1.json" in str(e.value)


# ----------------------------------------------------------------------------- memory


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc peak-RSS reset")
def test_memory_holds_one_shard_of_masks(tmp_path):
    """Scoring 8 shards vs 2 shards of the same size (no predictions: the GT is what is measured):
    the peak grows by the per-entity numbers only, far less than the data; scoring the same 8
    shards held in memory as one dataset costs several times more."""
    from tests.test_shards_readers import peak_above_base, write_stripes

    per_shard = 600  # 12,000 masks per shard
    two, eight = write_stripes(tmp_path / "two", 2, per_shard), write_stripes(tmp_path / "eight", 8, per_shard)
    (tmp_path / "none.json").write_text("[]")
    p2, p8 = (peak_above_base(f, "eval", tmp_path / "none.json") for f in (two, eight))
    whole = peak_above_base(eight, "eval-whole", tmp_path / "none.json")
    print(f"eval peak RSS above base: 2 shards {p2} KiB, 8 shards {p8} KiB; 8 shards held whole {whole} KiB")
    assert whole > 3 * p2  # the measure sees the data
    n_extra = 6 * per_shard * 20
    assert p8 - p2 <= n_extra * 200 / 1024 + 1024, (p2, p8)  # at most ~200 bytes per extra entity


def test_pack_and_empty_shards(data, tmp_path):
    """A manifest may list HDF5 packs (``kind: pack``) and a shard with no image: scored as one file."""
    from entitykit.pack import pack_dataset

    whole, folder, res = data
    ds = EntityDataset.load(whole)
    by_image = ds.annotations_by_image()
    out = tmp_path / "mixed"
    out.mkdir()
    entries = []
    for k, pos in enumerate([[0, 5, 9, 2], [], [11, 1, 7, 3, 10, 4, 6, 8]]):
        imgs = [ds.images[i] for i in pos]
        part = EntityDataset(images=imgs, annotations=[a for im in imgs for a in by_image[im["id"]]], info={},
                             image_root=ds.image_root)
        counts = dict(shard_counts(part), image_ids=None, annotation_ids=None)
        if k == 0:
            pack_dataset(part, out / "part-0.h5")
            entries.append(entry_for_file(out, "part-0.h5", counts, kind="pack"))
        else:
            part.save(out / f"part-{k}.json")
            entries.append(entry_for_file(out, f"part-{k}.json", counts))
    write_manifest(out, manifest_for(out, entries))
    same(evaluate(out, res), evaluate(whole, res))


def test_progress_names_the_shard_passes(data, monkeypatch, capfd):
    """A long sharded evaluation shows its two passes on stderr (reading and checking the shards, then
    scoring them); here every phase is shown at once (no 2-s delay)."""
    from entitykit.evaluation import api

    whole, folder, res = data
    monkeypatch.setattr(api._Steps, "delay", 0.0)
    evaluate(folder, res, progress=True)
    err = capfd.readouterr().err
    assert "reading 3 shards" in err and "scoring 3 shards" in err, err


def test_png_folders_for_formats_without_pngs_are_said_to_be_ignored(data, tmp_path):
    whole, folder, res = data
    for gt in (whole, folder):
        w = evaluate(gt, res, gt_png_dir=tmp_path, pred_png_dir=tmp_path).warnings
        assert any(x.startswith("--gt-png-dir is ignored") for x in w), w
        assert any(x.startswith("--pred-png-dir is ignored") and "COCO results" in x for x in w), w
    assert not any("png-dir" in x for x in evaluate(whole, res).warnings)
