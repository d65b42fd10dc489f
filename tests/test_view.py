"""`entitykit view`: the static viewer folder, its per-image APe (the project's scorer), and the page
itself driven in headless Chromium (gallery, hover, click, edit previews equal to entitykit.edit, download).

The browser test skips when chromium / chromedriver / selenium are not installed
(`apt-get install chromium chromium-driver`, `pip install selenium`). Set ENTITYKIT_VIEW_SCREENSHOT=path
to keep a screenshot of the page with an entity selected.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import entitykit.cli.view  # noqa: F401  (registers the command)
from entitykit.cli._app import app
from entitykit.edit import bokeh, cutout, recolor
from entitykit.errors import EntityKitError
from entitykit.evaluation import evaluate
from entitykit.masks import encode_id_map, rle_bbox, write_id_map_png
from entitykit.synth import render_image, synthetic_panoptic_image
from entitykit.view import build_viewer

runner = CliRunner()
H, W = 120, 160


def _index(html_path: Path) -> dict:
    text = html_path.read_text(encoding="utf-8")
    start = text.index("window.EK_INDEX = ") + len("window.EK_INDEX = ")
    return json.loads(text[start : text.index(";</script>", start)])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    """4 synthetic photos with entity ground truth, and a prediction run in the documented format:
    image 1 predicted exactly, 2 shifted, 3 shifted with two entities merged, 4 without a record."""
    root = tmp_path_factory.mktemp("view_world")
    (root / "images").mkdir()
    (root / "preds" / "id_maps").mkdir(parents=True)
    rng = np.random.default_rng(3)
    images, anns, recs = [], [], []
    photos, gt_maps, pred_maps, ann_ids, scores = [], [], [], [], []
    aid = 1
    for i in range(4):
        pan, _ = synthetic_panoptic_image(rng, H, W, 10)
        photo = render_image(rng, pan)
        Image.fromarray(photo).save(root / "images" / f"photo_{i}.png")
        values = np.unique(pan[pan > 0])
        gt = np.where(pan > 0, np.searchsorted(values, pan) + 1, 0).astype(np.int32)
        ids, rles, areas = encode_id_map(gt)
        images.append({"id": 100 + i, "file_name": f"photo_{i}.png", "height": H, "width": W, "source": "synth"})
        ids_here = []
        for k, rle, area, box in zip(ids.tolist(), rles, areas.tolist(), rle_bbox(rles).tolist()):
            anns.append({"id": aid, "image_id": 100 + i, "category_id": 1, "segmentation": rle, "area": int(area),
                         "bbox": [int(v) for v in box], "iscrowd": 0, "source": "synth", "isthing": int(k > 2),
                         "source_category": "shape" if k > 2 else "ground"})
            ids_here.append(aid)
            aid += 1
        pred = gt.copy()
        if i >= 1:
            pred = np.roll(pred, 6 * i, axis=1)
        if i >= 2:
            pred[pred == 2] = 1
        sc = {int(p): round(float(rng.uniform(0.3, 1.0)), 3) for p in np.unique(pred) if p}
        if i < 3:
            write_id_map_png(root / "preds" / "id_maps" / f"photo_{i}.png", pred)
            recs.append({"image_id": 100 + i, "file_name": f"id_maps/photo_{i}.png", "image": f"photo_{i}.png",
                         "source": str(root / "images" / f"photo_{i}.png"), "height": H, "width": W,
                         "segments": [{"id": p, "score": s} for p, s in sc.items()]})
        photos.append(photo)
        gt_maps.append(gt)
        pred_maps.append(pred if i < 3 else np.zeros_like(pred))
        ann_ids.append(ids_here)
        scores.append(sc if i < 3 else {})
    ds = root / "entities.json"
    ds.write_text(json.dumps({"info": {"format": "entitykit-entities", "format_version": 1, "image_root": "images"},
                              "images": images, "annotations": anns,
                              "categories": [{"id": 1, "name": "entity", "supercategory": "entity"}]}))
    (root / "preds" / "predictions.json").write_text(json.dumps(
        {"format": "entitykit-predictions", "version": 1, "info": {"model": {"checkpoint": "tiny.safetensors"}},
         "images": recs}))
    return SimpleNamespace(root=root, dataset=ds, preds=root / "preds", images=root / "images", photos=photos,
                           gt_maps=gt_maps, pred_maps=pred_maps, ann_ids=ann_ids, scores=scores,
                           image_ids=[100, 101, 102, 103])


@pytest.fixture(scope="module")
def viewer(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("viewer") / "view"
    return build_viewer(world.dataset, world.preds, out)


# ---------------------------------------------------------------------------------------------
# The folder and its numbers


def test_folder_layout_and_worst_first(world, viewer):
    folder = viewer.parent
    assert viewer.name == "index.html" and viewer.is_file()
    idx = _index(viewer)
    assert idx["mode"] == "both" and idx["total"] == 4 and len(idx["items"]) == 4
    apes = [it["APe"] for it in idx["items"]]
    assert apes == sorted(apes) and apes[0] == 0.0 and apes[-1] == 1.0  # worst first; the exact image last
    assert idx["items"][0]["image_id"] == 103 and idx["items"][0]["n_pred"] == 0  # no record: every entity missed
    for it in idx["items"]:
        assert (folder / it["data"]).is_file()
        for side in ("gt", "pred"):
            assert Image.open(folder / it["thumbs"][side]).size[0] <= 320
    # no network, no external file: nothing but the folder's own relative paths and data: URIs
    html = viewer.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    payload = (folder / idx["items"][-1]["data"]).read_text(encoding="utf-8")
    assert payload.startswith("ekData(") and '"photo":"data:image/png;base64,' in payload


def test_per_image_ape_is_the_scorers(world, viewer):
    """Each image's APe equals `evaluate` on that image alone; the header's APe equals `entitykit eval`."""
    idx = _index(viewer)
    full = evaluate(world.dataset, world.preds)
    assert idx["overall"]["APe"] == pytest.approx(full.ape, abs=1e-12)
    data = json.loads(world.dataset.read_text())
    by_id = {it["image_id"]: it for it in idx["items"]}
    for i, iid in enumerate(world.image_ids[:3]):
        gt = dict(data, images=[im for im in data["images"] if im["id"] == iid],
                  annotations=[a for a in data["annotations"] if a["image_id"] == iid])
        ids, rles, _ = encode_id_map(world.pred_maps[i])
        results = [{"image_id": iid, "category_id": 1, "segmentation": r, "score": world.scores[i][k]}
                   for k, r in zip(ids.tolist(), rles)]
        one = evaluate(gt, results)
        assert by_id[iid]["APe"] == pytest.approx(one.ape, abs=1e-12)
        assert by_id[iid]["APe50"] == pytest.approx(float(one.stats[1]), abs=1e-12)


def test_max_images_keeps_the_worst_and_single_inputs(world, tmp_path):
    idx = _index(build_viewer(world.dataset, world.preds, tmp_path / "v2", max_images=2))
    assert idx["total"] == 4 and [it["image_id"] for it in idx["items"]] == [103, 102]
    gt_only = _index(build_viewer(world.dataset, None, tmp_path / "gt"))
    assert gt_only["mode"] == "gt" and [it["image_id"] for it in gt_only["items"]] == world.image_ids
    assert "APe" not in gt_only["items"][0] and gt_only["items"][0]["n_pred"] is None
    # predictions only: the images from --images + the recorded names, or from the recorded paths
    for images in (world.images, None):
        out = tmp_path / f"pred_{images is None}"
        pred_only = _index(build_viewer(None, world.preds, out, images))
        assert pred_only["mode"] == "pred" and [it["image_id"] for it in pred_only["items"]] == [100, 101, 102]
        assert pred_only["items"][1]["n_pred"] == len(world.scores[1])


def test_cli_view_and_one_line_errors(world, tmp_path):
    out = tmp_path / "v"
    r = runner.invoke(app, ["view", "--dataset", str(world.dataset), "--predictions", str(world.preds), "-o", str(out),
                            "--max-images", "3"])
    assert r.exit_code == 0, r.output
    assert "APe" in r.output and "index.html" in r.output and (out / "index.html").is_file()
    r = runner.invoke(app, ["view", "--dataset", str(world.dataset), "-o", str(out), "-q"])
    assert r.exit_code == 1 and "not empty" in r.output and "--overwrite" in r.output
    r = runner.invoke(app, ["view", "--dataset", str(world.dataset), "-o", str(out), "-q", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == ""
    r = runner.invoke(app, ["view", "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "give a dataset" in r.output
    r = runner.invoke(app, ["view", "--predictions", str(world.images), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "no predictions.json" in r.output and str(world.images) in r.output
    bad = tmp_path / "bad"
    shutil.copytree(world.preds, bad)
    doc = json.loads((bad / "predictions.json").read_text())
    doc["images"][1]["segments"] = doc["images"][1]["segments"][1:]  # an id of the map without a score
    (bad / "predictions.json").write_text(json.dumps(doc))
    r = runner.invoke(app, ["view", "--predictions", str(bad), "--images", str(world.images),
                            "-o", str(tmp_path / "y")])
    assert r.exit_code == 1 and "has no segments entry" in r.output and "image 101" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "y").exists()  # nothing half-written
    r = runner.invoke(app, ["view", "--dataset", str(world.dataset), "-o", str(tmp_path / "z"), "--max-images", "0"])
    assert r.exit_code == 1 and "--max-images" in r.output
    with pytest.raises(EntityKitError, match="inside|input"):
        build_viewer(world.dataset, None, world.root)  # never over its own inputs


# ---------------------------------------------------------------------------------------------
# In a real browser


def _browser_or_skip(download_dir: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run", "--window-size=1400,1400"):
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ek-chromium-')}")
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    d = webdriver.Chrome(options=opts, service=Service(driver))
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return d


def _severe(d) -> list:
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]


def _png(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def _interior_pixel(gt: np.ndarray, pred: np.ndarray, r: int = 5) -> tuple[int, int]:
    """A pixel deep inside one entity on both sides (robust to rounding of mouse coordinates)."""
    for y in range(r, gt.shape[0] - r):
        for x in range(r, gt.shape[1] - r):
            g, p = gt[y - r : y + r + 1, x - r : x + r + 1], pred[y - r : y + r + 1, x - r : x + r + 1]
            if gt[y, x] and pred[y, x] and (g == gt[y, x]).all() and (p == pred[y, x]).all():
                return x, y
    raise AssertionError("no interior pixel")


def test_page_in_headless_chromium(world, viewer, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    d = _browser_or_skip(downloads)
    wait = WebDriverWait(d, 20)
    try:
        d.get(viewer.resolve().as_uri())
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        cards = d.find_elements(By.CSS_SELECTOR, "#gallery .card")
        names = [c.find_element(By.CSS_SELECTOR, ".name").text for c in cards]
        assert names == ["photo_3.png", "photo_2.png", "photo_1.png", "photo_0.png"]  # every image, worst first
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth > 0)"))
        assert "APe 0.000" in cards[0].text and "APe 1.000" in cards[-1].text
        assert _severe(d) == []

        i = 1  # photo_1: shifted predictions, so GT and prediction ids differ under the cursor
        cards[names.index("photo_1.png")].click()
        wait.until(lambda d: d.execute_script("return document.getElementById('panels').dataset.ready") is not None
                   and d.find_element(By.ID, "canvas-pred").is_displayed())
        gt, pred = world.gt_maps[i], world.pred_maps[i]
        x, y = _interior_pixel(gt, pred)
        canvas = d.find_element(By.ID, "canvas-gt")
        rw, rh = d.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", canvas)
        ox, oy = round((x + 0.5) * rw / W - rw / 2), round((y + 0.5) * rh / H - rh / 2)
        ActionChains(d).move_to_element_with_offset(canvas, ox, oy).perform()
        tip = d.find_element(By.ID, "tooltip")
        wait.until(lambda d: tip.is_displayed())
        ann_id = world.ann_ids[i][gt[y, x] - 1]
        pid = int(pred[y, x])
        text = tip.text
        assert f"GT entity #{ann_id}" in text and f"area {int((gt == gt[y, x]).sum()):,} px" in text
        assert "source synth" in text and f"prediction #{pid}" in text
        assert f"score {world.scores[i][pid]:.3f}" in text

        ActionChains(d).click().perform()  # select the GT entity under the cursor: the edit preview appears
        dl = d.find_element(By.ID, "download")
        wait.until(lambda d: d.find_element(By.ID, "editor").is_displayed() and dl.get_attribute("data-ready") == "1")
        assert f"GT entity #{ann_id}" in d.find_element(By.ID, "sel-info").text
        photo, mask = world.photos[i], gt == gt[y, x]

        def preview() -> np.ndarray:
            return _png(d.execute_script("return document.getElementById('preview').toDataURL('image/png')"))

        got = preview()  # cutout: alpha is the mask, colours are the photo's where visible
        want = cutout(photo, mask)
        assert got.shape == want.shape and (got[..., 3] == want[..., 3]).all()
        assert (got[mask][:, :3] == want[mask][:, :3]).all()
        # the page's defaults (hue 0.3 turn, blur 12 px) against entitykit.edit's
        for op, expected, tol in (("recolor", recolor(photo, mask, hue=0.3), 1),
                                  ("bokeh", bokeh(photo, mask, blur=12), 1)):
            d.find_element(By.CSS_SELECTOR, f'.ops button[data-op="{op}"]').click()
            wait.until(lambda d: dl.get_attribute("data-ready") == "1")
            got = preview()[..., :3].astype(int)
            assert got.shape == expected.shape
            diff = np.abs(got - expected.astype(int))
            assert diff.max() <= tol, (op, diff.max())
            assert (got[mask] == photo[mask]).all() if op == "bokeh" else (got[~mask] == photo[~mask]).all()

        # the download is the preview as a PNG file
        href = dl.get_attribute("href")
        assert (_png(href)[..., :3] == preview()[..., :3]).all()
        name = dl.get_attribute("download")
        assert name.endswith(".png") and "bokeh" in name
        shot = os.environ.get("ENTITYKIT_VIEW_SCREENSHOT")
        ActionChains(d).move_to_element_with_offset(canvas, ox, oy).perform()
        d.save_screenshot(str(tmp_path / "view.png"))
        if shot:
            shutil.copyfile(tmp_path / "view.png", shot)
        dl.click()
        deadline = time.time() + 15
        while time.time() < deadline and not (downloads / name).is_file():
            time.sleep(0.1)
        assert (downloads / name).is_file(), list(downloads.iterdir())
        assert Image.open(downloads / name).size == (W, H)

        # the image without a prediction record: both panels, and a note saying so
        d.execute_script("location.hash = '#image=0'")
        wait.until(lambda d: d.execute_script("return document.getElementById('panels').dataset.ready") == "0")
        assert "no prediction record" in d.find_element(By.CSS_SELECTOR, '.panel[data-side="pred"]').text
        assert _severe(d) == []
    finally:
        d.quit()
