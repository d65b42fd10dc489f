"""The one image reader: every command that reads an image agrees on its pixels and its size.

References are independent of the reader: PIL's own ``ImageOps.exif_transpose``, values written by
the test itself, and the handed case ``../shared/cases/exif-rotated-photo`` (skipped when absent).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.data import JsonSource
from entitykit.dataset import EntityDataset
from entitykit.errors import EntityKitError
from entitykit.images import read_header, read_image, size_problem
from entitykit.limits import set_max_pixels
from entitykit.masks import encode_id_map, rle_bbox
from entitykit.pack import PackSource, pack_dataset, verify_pack

runner = CliRunner()
CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


def _rotated_jpeg(path: Path, w: int = 64, h: int = 48, orientation: int = 6) -> np.ndarray:
    """A w×h stored bitmap with an EXIF orientation tag; returns the stored pixels."""
    rng = np.random.default_rng(0)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (200, 30, 30)
    arr[:, w // 2 :] = (30, 30, 200)
    arr[: h // 4] = rng.integers(0, 255, (h // 4, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes(), quality=100)
    with Image.open(path) as back:
        return np.asarray(back.convert("RGB"))


def test_exif_orientation_applied_everywhere_and_ignored_on_request(tmp_path):
    stored = _rotated_jpeg(tmp_path / "r.jpg")
    with Image.open(tmp_path / "r.jpg") as im:
        displayed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))  # PIL's own rule: the reference
    assert displayed.shape == (64, 48, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "r.jpg"), displayed)
    np.testing.assert_array_equal(read_image(tmp_path / "r.jpg", exif=False), stored)
    np.testing.assert_array_equal(read_image((tmp_path / "r.jpg").read_bytes()), displayed)  # packed bytes too
    h = read_header(tmp_path / "r.jpg")
    assert (h.height, h.width, h.stored_height, h.stored_width, h.orientation) == (64, 48, 48, 64, 6)
    assert size_problem(h, 64, 48) is None
    text = size_problem(h, 48, 64)  # declared = stored size: the EXIF tag is named
    assert "EXIF orientation 6" in text and "rotated 90° clockwise" in text and "--ignore-exif" in text
    assert size_problem(read_header(tmp_path / "r.jpg", exif=False), 48, 64) is None


@pytest.mark.parametrize("mode", ["I;16", "P", "P+transparency", "CMYK", "LA", "RGBA", "L", "I", "F"])
def test_every_mode_becomes_rgb_with_known_values(tmp_path, mode):
    """Values are chosen so the expected RGB is known without the reader (no reference to PIL's convert)."""
    p = tmp_path / "x.tif" if mode in ("CMYK", "F", "I") else tmp_path / "x.png"
    if mode == "I;16":
        raw = np.array([[0, 257 * 10, 65535]], np.uint16)
        Image.fromarray(raw).save(p)
        expect = np.array([[0, 10, 255]])[..., None].repeat(3, 2)
    elif mode == "I":
        Image.fromarray(np.array([[0, 257 * 20, 65535]], np.int32), "I").save(p)
        expect = np.array([[0, 20, 255]])[..., None].repeat(3, 2)
    elif mode == "F":
        Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F").save(p)
        expect = np.array([[0, 128, 255]])[..., None].repeat(3, 2)  # [0, 1] scaled by 255, rounded half up
    elif mode.startswith("P"):
        im = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
        im.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
        if mode == "P+transparency":
            im.info["transparency"] = 1
            im.save(p, transparency=1)
        else:
            im.save(p)
        expect = np.array([[[10, 20, 30], [40, 50, 60], [70, 80, 90]]])
    elif mode == "CMYK":
        Image.fromarray(np.array([[[0, 0, 0, 0], [255, 0, 0, 0]]], np.uint8), "CMYK").save(p)
        expect = np.array([[[255, 255, 255], [0, 255, 255]]])
    elif mode == "LA":
        Image.fromarray(np.array([[[7, 0], [200, 255]]], np.uint8), "LA").save(p)
        expect = np.array([[7, 200]])[..., None].repeat(3, 2)  # alpha dropped, stored grey kept
    elif mode == "RGBA":
        Image.fromarray(np.array([[[1, 2, 3, 0], [4, 5, 6, 255]]], np.uint8), "RGBA").save(p)
        expect = np.array([[[1, 2, 3], [4, 5, 6]]])
    else:  # L
        Image.fromarray(np.array([[3, 250]], np.uint8), "L").save(p)
        expect = np.array([[3, 250]])[..., None].repeat(3, 2)
    got = read_image(p)
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3 and got.flags.writeable
    np.testing.assert_array_equal(got, expect)


def test_pixel_limit_refuses_before_decoding(tmp_path):
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "big.png", compress_level=9)
    try:
        set_max_pixels(100_000)
        with pytest.raises(EntityKitError, match=r"big.png: image 3: 400×300 = 120,000 pixels is over the limit"):
            read_image(tmp_path / "big.png", item="image 3")
        with pytest.raises(EntityKitError, match="over the limit"):
            read_header(tmp_path / "big.png")
        set_max_pixels(0)  # no limit
        assert read_image(tmp_path / "big.png").shape == (300, 400, 3)
    finally:
        set_max_pixels(None)


@pytest.mark.parametrize("content, needle", [(b"", "cannot read image"), (b"hello", "cannot read image"),
                                             ("truncated", "cannot")])
def test_unreadable_files_name_the_file(tmp_path, content, needle):
    p = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
        p.write_bytes(p.read_bytes()[:200])
    else:
        p.write_bytes(content)
    with pytest.raises(EntityKitError, match=needle) as e:
        read_image(p, item="image 9")
    assert e.value.path == str(p) and e.value.item == "image 9"
    with pytest.raises(EntityKitError, match="image file not found"):
        read_image(tmp_path / "missing.png")


# --------------------------------------------------------------------------------------------------
# The same rule in every command: check, pack (write + verify + training source), JSON training source


def _exif_dataset(root: Path, declared: str) -> Path:
    """One rotated photo; the JSON declares its ``stored`` (64×48) or ``displayed`` (48×64) size."""
    (root / "images").mkdir(parents=True)
    _rotated_jpeg(root / "images" / "phone.jpg")
    h, w = (48, 64) if declared == "stored" else (64, 48)
    m = np.zeros((h, w), np.int64)
    m[:, : w // 2] = 1
    ids, rles, areas = encode_id_map(m)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rles[0], "area": int(areas[0]),
             "bbox": rle_bbox(rles)[0].tolist(), "iscrowd": 0}]
    EntityDataset([{"id": 1, "file_name": "phone.jpg", "height": h, "width": w}], anns,
                  image_root=root / "images").save(root / "ds.json")
    return root / "ds.json"


def test_stored_size_dataset_is_reported_by_check_refused_by_pack_and_train(tmp_path):
    ds = _exif_dataset(tmp_path, "stored")
    report = check_dataset(ds)
    assert not report.ok
    text = str(report.problems[0])
    assert "image 1" in text and "phone.jpg" in text and "EXIF orientation 6" in text
    res = runner.invoke(app, ["check", str(ds), "-q"])
    assert res.exit_code == 1 and "EXIF orientation 6" in res.output
    with pytest.raises(EntityKitError, match="EXIF orientation 6"):
        pack_dataset(ds, tmp_path / "p")
    assert not (tmp_path / "p").exists()
    with pytest.raises(EntityKitError, match="EXIF orientation 6"):
        JsonSource(ds).load(0)
    # the explicit option reads stored pixels, everywhere alike
    assert check_dataset(ds, exif=False).ok
    assert runner.invoke(app, ["check", str(ds), "-q", "--ignore-exif"]).exit_code == 0
    rgb, id_map, _ = JsonSource(ds, exif=False).load(0)
    assert rgb.shape == (48, 64, 3) and id_map.shape == (48, 64)
    pack_dataset(ds, tmp_path / "p", exif=False)
    assert verify_pack(tmp_path / "p", ds) == []
    rgb_pack, id_pack, _ = PackSource(tmp_path / "p").load(0)
    np.testing.assert_array_equal(rgb_pack, rgb)  # pack records the rule; both sources agree
    np.testing.assert_array_equal(id_pack, id_map)


def test_displayed_size_dataset_is_accepted_by_every_reader(tmp_path):
    ds = _exif_dataset(tmp_path, "displayed")
    assert check_dataset(ds).ok
    rgb, id_map, _ = JsonSource(ds).load(0)
    assert rgb.shape == (64, 48, 3) and id_map.shape == (64, 48)
    pack_dataset(ds, tmp_path / "p")
    np.testing.assert_array_equal(PackSource(tmp_path / "p").load(0)[0], rgb)


def test_sixteen_bit_training_image_reads_as_predict_reads_it(tmp_path):
    """A 16-bit training image used to be read as 99.6 % white by the training source."""
    (tmp_path / "images").mkdir()
    ramp = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 50).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "images" / "x.png")
    m = np.ones((30, 40), np.int64)
    ids, rles, areas = encode_id_map(m)
    EntityDataset([{"id": 1, "file_name": "x.png", "height": 30, "width": 40}],
                  [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rles[0], "area": 1200,
                    "bbox": [0, 0, 40, 30], "iscrowd": 0}], image_root=tmp_path / "images").save(tmp_path / "d.json")
    rgb, _, _ = JsonSource(tmp_path / "d.json").load(0)
    expect = ((ramp.astype(np.int64) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(rgb[:, :, 0], expect)
    assert (rgb == 255).mean() < 0.01
    pack_dataset(tmp_path / "d.json", tmp_path / "p")
    np.testing.assert_array_equal(PackSource(tmp_path / "p").load(0)[0], rgb)


def test_handed_exif_case(tmp_path):
    case = CASES / "exif-rotated-photo"
    if not case.is_dir():
        pytest.skip(f"{case} not present")
    shutil.copytree(case, tmp_path / "c")
    ds = tmp_path / "c" / "ds.json"
    res = runner.invoke(app, ["check", str(ds), "-q"])
    assert res.exit_code == 1 and "phone.jpg" in res.output and "EXIF orientation 6" in res.output
    res = runner.invoke(app, ["pack", str(ds), "-o", str(tmp_path / "c" / "ds.h5"), "--verify", "-q"])
    assert res.exit_code == 1 and "EXIF orientation 6" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "c" / "ds.h5").exists()
    assert runner.invoke(app, ["check", str(ds), "-q", "--ignore-exif"]).exit_code == 0
    res = runner.invoke(app, ["pack", str(ds), "-o", str(tmp_path / "c" / "ds.h5"), "--verify", "-q", "--ignore-exif"])
    assert res.exit_code == 0, res.output
    assert json.loads(json.dumps(PackSource(tmp_path / "c" / "ds.h5").pack.manifest))["exif"] == "ignored"


@pytest.mark.usefixtures("one_torch_thread")
def test_train_refuses_the_stored_size_dataset_and_leaves_no_run_folder(tmp_path):
    ds = _exif_dataset(tmp_path, "stored")
    args = ["train", "--train", str(ds), "--preset", "tiny", "--max-iter", "1", "--batch-size", "1", "-q"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "run")])
    assert res.exit_code == 1 and "EXIF orientation 6" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing behind
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "run"), "--ignore-exif"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["exif"] is False
