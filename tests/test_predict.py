"""`entitykit predict`: real skimage photos through an untrained tiny model, plus a stub model with
known output for the exact geometry (resize back, min score, renumbering, scorer round trip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

skdata = pytest.importorskip("skimage.data")

import entitykit.cli.predict_edit  # noqa: E402,F401  (registers the commands)
from entitykit.cli._app import app  # noqa: E402
from entitykit.dataset import EntityDataset  # noqa: E402
from entitykit.errors import EntityKitError  # noqa: E402
from entitykit.evaluation.predictions import load_predictions  # noqa: E402
from entitykit.masks import encode_mask, read_id_map_png  # noqa: E402
from entitykit.model import EntityModel, get_config, save_checkpoint  # noqa: E402
from entitykit.predict import (  # noqa: E402
    COCO_RESULTS_JSON, PREDICTIONS_JSON, collect_inputs, finish_id_map, load_image, model_size, output_names,
    predict, resize_nearest)

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model (fixed seed); class bias 0 so that it outputs some entities."""
    torch.manual_seed(0)
    model = EntityModel(get_config("tiny"))
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(0.0)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """skimage's real photos, with awkward names: dots, a subfolder, a grayscale and an RGBA file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub.dir").mkdir()
    Image.fromarray(skdata.astronaut()).save(root / "astronaut.jpg", quality=92)
    Image.fromarray(skdata.chelsea()).save(root / "sub.dir" / "cat.v1.2.png")
    Image.fromarray(skdata.camera()[::2, ::2]).save(root / "camera.gray.png")  # grayscale, 256×256
    rgba = np.dstack([skdata.coffee(), np.full(skdata.coffee().shape[:2], 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "coffee.png")
    return root


class StubModel(torch.nn.Module):
    """Stands in for EntityModel: paints fixed boxes (fractions of the model input) with fixed scores."""

    def __init__(self, boxes, scores, cfg=None):
        super().__init__()
        self.cfg = cfg or get_config("tiny")
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.boxes, self.scores = boxes, scores
        self.seen: list[tuple[int, int]] = []
        self.pasted: list[tuple[int, int]] = []

    def forward(self, batch, image_sizes=None, output_sizes=None, with_masks=True):
        out = []
        for (h, w), (oh, ow) in zip(image_sizes, output_sizes):
            self.seen.append((h, w))
            self.pasted.append((oh, ow))
            id_map = torch.zeros((oh, ow), dtype=torch.int32)
            for k, (y0, y1, x0, x1) in enumerate(self.boxes, 1):
                sub = id_map[round(y0 * oh): round(y1 * oh), round(x0 * ow): round(x1 * ow)]
                sub[sub == 0] = k
            out.append({"id_map": id_map, "scores": torch.tensor(self.scores, dtype=torch.float32)})
        return out


# ---------------------------------------------------------------------------------------------- helpers


def test_output_names_never_collide():
    names = ["a.jpg", "a.png", "A.JPG", "x.y.z.jpg", "sub/a.jpg", "sub.dir/b.tar.gz", "../up.jpg", "/abs/c.jpg",
             "noext", "noext.png", ".hidden"]
    out = output_names(names)
    assert len({o.lower() for o in out}) == len(out)
    assert out[3] == "x.y.z" and out[4] == "sub/a" and out[5] == "sub.dir/b.tar"
    assert out[0:3] == ["a.jpg", "a.png", "A.JPG~2"]  # stems collide → full names, then a counter
    assert out[6] == "__/up" and out[7] == "abs/c"  # stays inside the output folder
    assert out[8] != out[9] and out[10] == ".hidden"
    assert output_names(names) == out  # deterministic


def test_collect_inputs_sorted_ids_globs_and_output_excluded(photos, tmp_path):
    items = collect_inputs([photos])
    assert [i.name for i in items] == ["astronaut.jpg", "camera.gray.png", "coffee.png", "sub.dir/cat.v1.2.png"]
    assert [i.image_id for i in items] == [1, 2, 3, 4]
    # argument order does not matter, a file reached twice counts once, globs are relative to their base
    again = collect_inputs([str(photos / "sub.dir" / "*.png"), photos / "coffee.png", str(photos / "*.jpg"),
                            photos / "coffee.png"])
    assert [i.name for i in again] == ["astronaut.jpg", "cat.v1.2.png", "coffee.png"]
    (photos / "out").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photos / "out" / "old_overlay.png")
    try:
        assert "out/old_overlay.png" not in [i.name for i in collect_inputs([photos], exclude=photos / "out")]
    finally:
        (photos / "out" / "old_overlay.png").unlink()
        (photos / "out").rmdir()
    with pytest.raises(EntityKitError, match="no such file"):
        collect_inputs([tmp_path / "missing.jpg"])
    with pytest.raises(EntityKitError, match="matches no image"):
        collect_inputs([str(tmp_path / "*.jpg")])


def test_resize_rules_and_finish_id_map():
    assert model_size(512, 512, 128, 256) == (128, 128)
    assert model_size(300, 451, 128, 256) == (128, 192)
    assert model_size(100, 4000, 128, 256) == (6, 256)  # the long side cap wins
    small = np.array([[1, 2], [3, 0]], np.int32)
    big = resize_nearest(small, 4, 6)
    assert big.shape == (4, 6) and (big[:2, :3] == 1).all() and (big[2:, 3:] == 0).all()
    # min_score drops entity 2 (pixels → 0); survivors renumbered 1..K in score order
    id_map, scores = finish_id_map(small, np.array([0.9, 0.1, 0.5], np.float32), 4, 6, min_score=0.3)
    assert set(np.unique(id_map)) == {0, 1, 2} and (id_map[2:, :3] == 2).all() and (id_map[:2, 3:] == 0).all()
    assert scores.tolist() == pytest.approx([0.9, 0.5])
    # an entity that vanishes when shrinking is dropped, not left as a scored id without pixels
    tiny = np.zeros((8, 8), np.int32)
    tiny[:, :4], tiny[0, 7] = 1, 2
    id_map, scores = finish_id_map(tiny, np.array([0.8, 0.7], np.float32), 2, 2)
    assert id_map.max() == 1 and scores.shape == (1,)


def test_load_image_exif_gray_rgba_and_errors(tmp_path):
    a = skdata.astronaut()[:100, :60]
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rot.jpg").shape == (60, 100, 3)
    Image.fromarray(skdata.camera()[:10, :20]).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (10, 20, 3)
    Image.fromarray((skdata.camera()[:10, :20].astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    g16 = load_image(tmp_path / "g16.png")
    assert np.abs(g16[:, :, 0].astype(int) - skdata.camera()[:10, :20]).max() <= 1
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EntityKitError, match="bad.jpg.*cannot read image"):
        load_image(tmp_path / "bad.jpg")


# ---------------------------------------------------------------------------------------------- real model


def test_predict_skimage_photos(checkpoint, photos, tmp_path):
    out = tmp_path / "pred"
    run = predict(checkpoint, [photos], out, cutouts=True)  # the tiny preset's own test size (long side ≤ 256)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for name in ("astronaut", "camera.gray", "coffee", "sub.dir/cat.v1.2"):
        assert f"id_maps/{name}.png" in files and f"overlays/{name}.png" in files
    doc = json.loads((out / PREDICTIONS_JSON).read_text())
    assert doc["format"] == "entitykit-predictions" and doc["version"] == 1
    assert doc["info"]["settings"]["device"] == "cpu" and doc["info"]["settings"]["threads"] == 1
    assert [r["image_id"] for r in doc["images"]] == [1, 2, 3, 4]
    results = json.loads((out / COCO_RESULTS_JSON).read_text())
    assert all(set(r) == {"image_id", "category_id", "segmentation", "score"} for r in results)
    assert len(results) == run.entities == sum(len(r["segments"]) for r in doc["images"]) > 0
    for rec in doc["images"]:
        img = load_image(photos / rec["image"])
        id_map = read_id_map_png(out / rec["file_name"])
        assert id_map.shape == img.shape[:2] == (rec["height"], rec["width"])
        assert max(rec["model_size"]) <= 256 and min(rec["model_size"]) <= 128
        ids = [s["id"] for s in rec["segments"]]
        assert ids == list(range(1, len(ids) + 1))
        assert set(np.unique(id_map)) - {0} == set(ids)
        scores = [s["score"] for s in rec["segments"]]
        assert scores == sorted(scores, reverse=True)
        mine = [r for r in results if r["image_id"] == rec["image_id"]]
        masks = mask_utils.decode([dict(r["segmentation"], counts=r["segmentation"]["counts"].encode()) for r in mine])
        assert masks.sum(2).max() <= 1  # non-overlapping
        for k, r in enumerate(mine, 1):
            assert (masks[:, :, k - 1] == (id_map == k)).all() and r["score"] == scores[k - 1]
        ov = np.asarray(Image.open(out / rec["overlay"]))
        assert ov.shape == img.shape
        seg = rec["segments"][0]
        cut = np.asarray(Image.open(out / seg["cutout"]))
        x, y, w, h = seg["bbox"]
        assert cut.shape == (h, w, 4) and ((cut[:, :, 3] == 255) == (id_map[y:y + h, x:x + w] == 1)).all()
    # the scorer's loader reads both files
    gt_images = [{"id": r["image_id"], "height": r["height"], "width": r["width"]} for r in doc["images"]]
    folder = load_predictions(out, gt_images)
    coco = load_predictions(out / COCO_RESULTS_JSON, gt_images)
    assert folder.fmt == "entitykit" and coco.fmt == "coco" and len(folder.items) == len(coco.items) == len(results)
    # deterministic: a second run writes the same bytes
    predict(checkpoint, [photos / "astronaut.jpg"], tmp_path / "again", cutouts=True)
    for f in ("id_maps/astronaut.png", "overlays/astronaut.png", "cutouts/astronaut/001.png"):
        assert (out / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_cli_predict_keep_going_and_atomic(checkpoint, photos, tmp_path):
    bad_dir = tmp_path / "in"
    bad_dir.mkdir()
    Image.fromarray(skdata.rocket()[::4, ::4]).save(bad_dir / "rocket.jpg")
    (bad_dir / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    res = runner.invoke(app, ["predict", str(bad_dir), "-c", str(checkpoint), "-o", str(out), "-q", "--max-size", "128"])
    assert res.exit_code == 1 and "broken.jpg" in res.output and "cannot read image" in res.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]  # nothing half-written
    res = runner.invoke(app, ["predict", str(bad_dir), "-c", str(checkpoint), "-o", str(out), "-q", "--max-size", "128",
                              "--keep-going", "--no-overlays"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / PREDICTIONS_JSON).read_text())
    assert [r["image"] for r in doc["images"]] == ["rocket.jpg"] and doc["images"][0]["image_id"] == 2
    problem = doc["info"]["problems"][0]
    assert problem["image_id"] == 1 and "broken.jpg" in problem["path"] and "cannot read image" in problem["problem"]
    assert not (out / "overlays").exists()
    res = runner.invoke(app, ["predict", str(bad_dir / "rocket.jpg"), "-c", str(checkpoint), "-o", str(out), "-q"])
    assert res.exit_code == 1 and "not empty" in res.output  # never clobbers without --overwrite
    res = runner.invoke(app, ["predict", str(bad_dir / "rocket.jpg"), "-c", "https://example.com/m.safetensors",
                              "-o", str(tmp_path / "o2"), "-q"])
    assert res.exit_code == 1 and "local files only" in res.output


# ---------------------------------------------------------------------------------------------- stub model


def test_large_image_min_score_and_scorer_round_trip(photos, tmp_path):
    """Known boxes through the whole pipeline: the scorer must give APe = 1 on its own ground truth."""
    from entitykit.evaluation import evaluate

    h, w = 1024, 1536  # larger than the model input: resized to ≤ 256 and pasted back
    img = np.asarray(Image.fromarray(skdata.coffee()).resize((w, h)))
    Image.fromarray(img).save(tmp_path / "coffee.big.jpg")
    stub = StubModel([(0.25, 0.75, 0.25, 0.5), (0.0, 0.125, 0.75, 1.0), (0.0, 1.0, 0.0, 1.0)], [0.9, 0.6, 0.2])
    truth = np.zeros((h, w), np.uint8)
    truth[256:768, 384:768] = 1
    # image ids of the entity format are integers (docs/entity-format.md; EntityDataset.open checks it)
    ds = EntityDataset(images=[{"id": 7, "file_name": "coffee.big.jpg", "height": h, "width": w}],
                       annotations=[{"id": 1, "image_id": 7, "category_id": 1, "segmentation": encode_mask(truth),
                                     "area": int(truth.sum()), "bbox": [384, 256, 384, 512], "iscrowd": 0}],
                       image_root=tmp_path)
    ds.save(tmp_path / "gt.json")
    out = tmp_path / "pred"
    run = predict(stub, None, out, dataset=tmp_path / "gt.json", min_score=0.5, max_size=256, overlays=False,
                  paste_pixels=0)  # above the paste limit: the model-size map is enlarged
    assert stub.seen == [(128, 192)]  # the model never saw the full-size image (short side → 128)
    assert stub.pasted == [(128, 192)]
    rec = run.images[0]
    assert rec["image_id"] == 7 and rec["model_size"] == [128, 192]
    id_map = read_id_map_png(out / rec["file_name"])
    assert id_map.shape == (h, w)
    assert (id_map[256:768, 384:768] == 1).mean() > 0.99  # entity 1 pasted back at full resolution
    assert [s["id"] for s in rec["segments"]] == [1, 2]  # the 0.2 entity is gone: its pixels are 0
    assert (id_map[:120, -370:] == 2).all() and set(np.unique(id_map)) == {0, 1, 2}
    assert (id_map[800:, :] == 0).all()
    for pred in (out, out / COCO_RESULTS_JSON):
        r = evaluate(tmp_path / "gt.json", pred)
        assert r.summary["APe50"] == pytest.approx(1.0) and r.summary["APe"] > 0.9
    # within the paste limit (the default, 4 MP) the masks are pasted at the original size
    stub.pasted.clear()
    run = predict(stub, None, tmp_path / "pred_full", dataset=tmp_path / "gt.json", min_score=0.5, max_size=256,
                  overlays=False)
    assert stub.pasted == [(h, w)] and run.settings["paste_pixels"] == 4_000_000
    assert evaluate(tmp_path / "gt.json", tmp_path / "pred_full").summary["APe"] > 0.9
    # a dataset image whose size differs from the file is refused with its name
    ds.images[0]["height"] = h + 1
    ds.annotations = []  # (its masks would differ from the declared size too: a schema error of its own)
    ds.save(tmp_path / "gt_bad.json")
    with pytest.raises(EntityKitError, match="coffee.big.jpg.*dataset says"):
        predict(stub, None, tmp_path / "p2", dataset=tmp_path / "gt_bad.json")


def test_interrupted_run_leaves_nothing(photos, tmp_path):
    class Interrupted(StubModel):
        def forward(self, batch, image_sizes=None, output_sizes=None, with_masks=True):
            if self.seen:
                raise KeyboardInterrupt
            return super().forward(batch, image_sizes, output_sizes)

    out = tmp_path / "pred"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    with pytest.raises(KeyboardInterrupt):
        predict(Interrupted([(0, 1, 0, 1)], [0.9]), [photos], out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["pred"] and (out / "old.txt").exists()  # old run intact
    predict(StubModel([(0, 1, 0, 1)], [0.9]), [photos], out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / PREDICTIONS_JSON).exists()


def test_collect_inputs_skips_earlier_prediction_folders(tmp_path):
    """`predict photos -o photos/preds2` after `-o photos/preds` must not predict the first run's PNGs."""
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "preds" / "overlays").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "preds" / "overlays" / "a.png")
    assert [i.name for i in collect_inputs([tmp_path])] == ["a.jpg", "preds/overlays/a.png"]
    (tmp_path / "preds" / PREDICTIONS_JSON).write_text("{}")
    assert [i.name for i in collect_inputs([tmp_path])] == ["a.jpg"]
