"""`entitykit edit`: cutout / bokeh / recolor checked numerically on a hand-made id map and on skimage photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

skdata = pytest.importorskip("skimage.data")

import entitykit.cli.predict_edit  # noqa: E402,F401  (registers the commands)
from entitykit.cli._app import app  # noqa: E402
from entitykit.edit import (  # noqa: E402
    bokeh, convolve, cutout, disk_kernel, edit_image, entity_at, hsv_to_rgb, recolor, rgb_to_hsv)
from entitykit.errors import EntityKitError  # noqa: E402
from entitykit.masks import read_id_map_png, write_id_map_png  # noqa: E402
from entitykit.model import EntityModel, get_config, save_checkpoint  # noqa: E402

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """A 48×64 colourful gradient image and an id map: 1 = disk, 2 = right band, 3 = bottom-left box, 0 = void."""
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([xx * 4, yy * 5, 255 - xx * 3], 2).clip(0, 255).astype(np.uint8)
    ids = np.zeros((48, 64), np.int32)
    ids[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 1
    ids[:, 50:] = 2
    ids[36:, :16] = 3
    return img, ids


def circular_diff(a, b):
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1.0 - d)


def test_entity_at_and_clear_errors():
    _, ids = hand_made()
    assert entity_at(ids, 20, 20) == 1 and entity_at(ids, 60.7, 5.2) == 2 and entity_at(ids, 2, 40) == 3
    with pytest.raises(EntityKitError, match=r"point \(40, 5\) is on no entity.*nearest is entity 2 at \(50, 5\), 10.0 px"):
        entity_at(ids, 40, 5)
    with pytest.raises(EntityKitError, match="outside the 64×48 image"):
        entity_at(ids, 64, 0)
    with pytest.raises(EntityKitError, match="no entities"):
        entity_at(np.zeros((4, 4), np.int32), 1, 1)


def test_cutout_alpha_is_the_mask():
    img, ids = hand_made()
    mask = ids == 1
    rgba = cutout(img, mask)
    assert rgba.shape == (48, 64, 4) and (rgba[:, :, :3] == img).all()
    assert ((rgba[:, :, 3] == 255) == mask).all() and set(np.unique(rgba[:, :, 3])) == {0, 255}
    crop = cutout(img, mask, crop=True)
    assert crop.shape == (19, 19, 4) and (crop[:, :, 3] > 0).sum() == mask.sum()


def test_bokeh_keeps_the_entity_and_blurs_the_rest():
    img, ids = hand_made()
    rng = np.random.default_rng(0)
    img = (img.astype(int) + rng.integers(-40, 40, img.shape)).clip(0, 255).astype(np.uint8)  # texture to blur
    mask = ids == 1
    out = bokeh(img, mask, blur=6)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[mask] == img[mask]).all()  # the entity, bit for bit
    changed = (out != img).any(2)
    assert changed[~mask].mean() > 0.95
    # blurring removes texture: neighbour differences fall far from the entity
    far = ~mask & (np.abs(np.mgrid[0:48, 0:64][1] - 20) > 20)
    assert np.abs(np.diff(out.astype(int), axis=1))[far[:, 1:]].mean() < 0.5 * np.abs(
        np.diff(img.astype(int), axis=1))[far[:, 1:]].mean()
    # no halo: a red entity on a flat grey background leaves the background grey
    grey = np.full((40, 40, 3), 128, np.uint8)
    m = np.zeros((40, 40), bool)
    m[15:25, 15:25] = True
    grey[m] = (255, 0, 0)
    b = bokeh(grey, m, blur=8, feather=0)
    assert (b[~m] == 128).all() and (b[m] == (255, 0, 0)).all()
    # the feather lets the sharp photo through just outside the edge, fading over `feather` px
    hard = bokeh(img, mask, blur=6, feather=0).astype(int)
    soft = bokeh(img, mask, blur=6, feather=4).astype(int)
    assert (soft[mask] == img[mask]).all()
    edge = (ids != 1) & (np.hypot(*(np.mgrid[0:48, 0:64] - np.array([20, 20])[:, None, None])) < 11)
    assert np.abs(soft - img)[edge].mean() < 0.7 * np.abs(hard - img)[edge].mean()
    assert (soft[:, 40:] == hard[:, 40:]).all()  # far from the entity: the plain blur
    assert disk_kernel(3).shape == (7, 7) and disk_kernel(3).sum() == pytest.approx(1.0)
    ones = np.ones((10, 13), np.float32)
    assert np.allclose(convolve(ones, disk_kernel(4)), 1.0, atol=1e-5)  # mirrored edges keep flat images flat
    assert (bokeh(img, mask, blur=0) == img).all()


def test_recolor_changes_only_the_entity_hue():
    img, ids = hand_made()
    mask = ids == 3
    out = recolor(img, mask, hue=0.3)
    assert (out[~mask] == img[~mask]).all()
    before = rgb_to_hsv(img[mask].astype(float) / 255)
    after = rgb_to_hsv(out[mask].astype(float) / 255)
    sat = (before[:, 1] * before[:, 2]) > 0.2  # hue is well defined (chroma > 0.2)
    assert sat.sum() > 50
    assert circular_diff(after[sat, 0], (before[sat, 0] + 0.3) % 1).max() < 0.01
    assert np.abs(after[:, 2] - before[:, 2]).max() <= 1 / 255 + 1e-9  # value kept
    assert np.abs(after[sat, 1] - before[sat, 1]).max() < 0.02  # saturation kept
    grey = np.full((4, 4, 3), 90, np.uint8)
    assert (recolor(grey, np.ones((4, 4), bool), hue=0.5) == grey).all()  # grey has no hue
    rgb = np.random.default_rng(1).random((500, 3))
    assert np.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb)


def test_edits_on_a_skimage_photo():
    """The cat of skimage's chelsea photo (an ellipse drawn by hand) edited three ways."""
    img = skdata.chelsea()  # 300×451
    yy, xx = np.mgrid[0:300, 0:451]
    ids = np.where(((yy - 160) / 110.0) ** 2 + ((xx - 230) / 140.0) ** 2 < 1, 1, 2).astype(np.int32)
    mask = ids == 1
    cut, k = edit_image(img, ids, (230, 160), "cutout", crop=True)
    assert k == 1 and cut.shape == (219, 279, 4) and (cut[:, :, 3] == 255).sum() == mask.sum()
    bok, k = edit_image(img, ids, (230, 160), "bokeh", blur=10)
    assert (bok[mask] == img[mask]).all() and (bok[~mask] != img[~mask]).any(1).mean() > 0.8
    rec, _ = edit_image(img, ids, (230, 160), "recolor", hue=0.5)
    assert (rec[~mask] == img[~mask]).all() and (rec[mask] != img[mask]).any(1).mean() > 0.5
    with pytest.raises(EntityKitError, match="id map is 4×4"):
        edit_image(img, np.ones((4, 4), np.int32), (1, 1), "cutout")
    with pytest.raises(EntityKitError, match="unknown edit"):
        edit_image(img, ids, (1, 1), "sharpen")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = EntityModel(get_config("tiny"))
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(0.0)  # untrained, but outputs entities
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def test_cli_edit_with_id_map_and_with_checkpoint(checkpoint, tmp_path):
    img = skdata.astronaut()[::2, ::2]  # 256×256
    Image.fromarray(img).save(tmp_path / "astro.png")
    ids = np.zeros((256, 256), np.int32)
    ids[60:200, 80:180] = 7
    write_id_map_png(tmp_path / "ids.png", ids)
    args = ["edit", str(tmp_path / "astro.png"), "--id-map", str(tmp_path / "ids.png"), "--point", "100", "100"]
    res = runner.invoke(app, args + ["--op", "cutout", "-o", str(tmp_path / "cut.png")])
    assert res.exit_code == 0, res.output
    cut = np.asarray(Image.open(tmp_path / "cut.png"))
    assert cut.shape == (256, 256, 4) and ((cut[:, :, 3] == 255) == (ids == 7)).all()
    res = runner.invoke(app, args + ["--op", "bokeh", "--blur", "5", "-o", str(tmp_path / "bokeh.png")])
    assert res.exit_code == 0 and "entity 7" in res.output
    bok = np.asarray(Image.open(tmp_path / "bokeh.png"))
    assert (bok[ids == 7] == img[ids == 7]).all()
    res = runner.invoke(app, args + ["--op", "recolor", "--hue", "0.25", "-o", str(tmp_path / "rec.png")])
    assert res.exit_code == 0
    assert (np.asarray(Image.open(tmp_path / "rec.png"))[ids == 0] == img[ids == 0]).all()
    # clear errors
    res = runner.invoke(app, ["edit", str(tmp_path / "astro.png"), "--id-map", str(tmp_path / "ids.png"),
                              "--point", "5", "5", "--op", "cutout", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "on no entity" in res.output and "nearest is entity 7" in res.output
    assert not (tmp_path / "x.png").exists()
    res = runner.invoke(app, args + ["--op", "cutout", "-o", str(tmp_path / "x.jpg")])
    assert res.exit_code == 1 and "transparency" in res.output
    res = runner.invoke(app, args + ["--op", "bokeh", "-o", str(tmp_path / "astro.png")])
    assert res.exit_code == 1 and "would overwrite its own input" in res.output
    res = runner.invoke(app, args + ["--op", "blur", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "--op" in res.output and all(op in res.output for op in ("cutout", "bokeh", "recolor"))
    # --checkpoint predicts the id map first (untrained model: whatever entity lies under the point)
    res = runner.invoke(app, ["edit", str(tmp_path / "astro.png"), "--checkpoint", str(checkpoint), "--max-size", "96",
                              "--point", "128", "128", "--op", "cutout", "-o", str(tmp_path / "ck.png")])
    assert res.exit_code == 0, res.output
    ck = np.asarray(Image.open(tmp_path / "ck.png"))
    assert ck.shape == (256, 256, 4) and ck[128, 128, 3] == 255 and set(np.unique(ck[:, :, 3])) <= {0, 255}
    res = runner.invoke(app, ["predict", str(tmp_path / "astro.png"), "-c", str(checkpoint), "--max-size", "96", "-q",
                              "-o", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    same = read_id_map_png(tmp_path / "pred" / "id_maps" / "astro.png")
    assert ((ck[:, :, 3] == 255) == (same == same[128, 128])).all()  # edit and predict agree
