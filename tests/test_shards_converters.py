"""Sharded conversion (issue 14) of COCO panoptic, ADE20K, Cityscapes and EntitySeg: each reuses the
converter-neutral runner that `convert sam --shard-images` uses (test_shards_convert.py).

References: each converter's single-file conversion of the same data (tested against hand-made
fixtures in test_convert_*.py) — read back as a whole, the shards hold the same images and
entities; the documented differences are annotation ids (input position × 100,000 + k) and, for a
source JSON with integer image ids, the order of the images (ascending id). Byte comparison between
runs (N = 1 vs N = 3 parts merged, one vs two workers, killed and resumed) for determinism.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _shards_helpers import dataset_files, entitykit, kill_when_blocked
from conftest import shared_sample, write_panoptic
from entitykit.check import check_dataset
from entitykit.convert import (
    convert_ade20k,
    convert_ade20k_sharded,
    convert_cityscapes,
    convert_cityscapes_sharded,
    convert_coco_panoptic,
    convert_coco_panoptic_sharded,
    convert_entityseg,
    convert_entityseg_sharded,
    merge_parts,
)
from entitykit.errors import DatasetError, EntityKitError
from entitykit.shards import MANIFEST, iter_shard_datasets, read_manifest
from test_convert_sources import _ade_challenge, _cityscapes, _entityseg

STRIDE = 100_000
N_IMAGES = 7  # shards of 3: [3, 3, 1]


# ------------------------------------------------------------------------ multi-image fixtures
# Cityscapes, ADE20K: image i is test_convert_sources.py's single-image fixture rolled by i columns
# (every encoding rule of the fixture still present, each image different); EntitySeg: copies of its
# fixture's image under other ids; COCO panoptic: seeded random rectangles (conftest.write_panoptic).
def _coco(root: Path, n: int = N_IMAGES, *, image_ids: list | None = None) -> Path:
    rng = np.random.default_rng(3)
    maps = []
    for _ in range(n):
        m = np.zeros((12, 16), np.int64)
        for sid in range(1, 6):
            y, x = rng.integers(0, 10), rng.integers(0, 13)
            m[y:y + rng.integers(2, 6), x:x + rng.integers(2, 8)] = sid * 1000 + 7  # ids > 255: RGB encoded
        maps.append(m)
    segments = [[{"id": int(s), "category_id": 1 + int(s) % 2, "iscrowd": int(s == 3007)}
                 for s in np.unique(m) if s] for m in maps]
    return write_panoptic(root, maps, segments, image_ids=image_ids)


def _roll_png(path: Path, dst: Path, shift: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    img = Image.open(path)
    Image.fromarray(np.roll(np.array(img), shift, axis=1)).save(dst)


def _cityscapes_n(root: Path, n: int = N_IMAGES) -> Path:
    one = _cityscapes(root / "one")
    src = one / "gtFine" / "val" / "aachen"
    stem = "aachen_000000_000019"
    for i in range(n):
        city = ("aachen", "bremen")[i % 2]
        new = f"{city}_{i:06d}_000019"
        for kind in ("instanceIds", "labelIds"):
            _roll_png(src / f"{stem}_gtFine_{kind}.png", root / "gtFine" / "val" / city / f"{new}_gtFine_{kind}.png", i)
        img = root / "leftImg8bit" / "val" / city
        img.mkdir(parents=True, exist_ok=True)
        shutil.copy(one / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png", img / f"{new}_leftImg8bit.png")
    shutil.rmtree(one)
    return root


def _ade_n(root: Path, n: int = N_IMAGES) -> Path:
    one = _ade_challenge(root / "one")
    for i in range(n):
        name = f"ADE_val_{i + 1:08d}"
        for sub, ext in (("annotations/validation", "png"), ("annotations_instance/validation", "png")):
            _roll_png(one / sub / f"ADE_val_00000001.{ext}", root / sub / f"{name}.png", i)
        (root / "images/validation").mkdir(parents=True, exist_ok=True)
        shutil.copy(one / "images/validation/ADE_val_00000001.jpg", root / f"images/validation/{name}.jpg")
    shutil.rmtree(one)
    return root


def _entityseg_n(root: Path, n: int = N_IMAGES) -> Path:
    """``n`` copies of the fixture's image, listed in an order that is not their ids' (sorted by id when sharded)."""
    root.mkdir(parents=True, exist_ok=True)
    data = json.loads(_entityseg(root).read_text())
    img, anns = data["images"][0], data["annotations"]
    data["images"], data["annotations"] = [], []
    for i in (3, 0, 6, 1, 5, 2, 4)[:n]:
        data["images"].append({**img, "id": 100 + i, "file_name": f"sub/x{i}.jpg"})
        data["annotations"] += [{**a, "id": 1000 + 10 * i + k, "image_id": 100 + i} for k, a in enumerate(anns)]
    path = root / "entityseg_train.json"
    path.write_text(json.dumps(data))
    return path


# Each converter: (build inputs, single-file conversion, sharded conversion), the inputs given positionally.
CONVERTERS = {
    "coco-panoptic": (_coco, lambda p: convert_coco_panoptic(p, crowd="keep"),
                      lambda p, out, **kw: convert_coco_panoptic_sharded(p, out, crowd="keep", **kw)),
    "cityscapes": (_cityscapes_n, lambda p: convert_cityscapes(p, crowd="keep"),
                   lambda p, out, **kw: convert_cityscapes_sharded(p, out, crowd="keep", **kw)),
    "ade20k": (_ade_n, convert_ade20k, convert_ade20k_sharded),
    "entityseg": (_entityseg_n, convert_entityseg, convert_entityseg_sharded),
}


@pytest.fixture(scope="module", params=list(CONVERTERS))
def converter(request, tmp_path_factory):
    """(name, inputs, single-file dataset, sharded run, sharded convert function) for one converter."""
    build, single, sharded = CONVERTERS[request.param]
    inputs = build(tmp_path_factory.mktemp(request.param) / "in")
    out = tmp_path_factory.mktemp(request.param) / "whole"
    run = sharded(inputs, out, shard_images=3)
    return request.param, inputs, single(inputs), run, sharded


def _read_back(folder: Path) -> tuple[list[dict], list[dict]]:
    images, anns = [], []
    for ds in iter_shard_datasets(folder, validate="full"):
        images += ds.images
        anns += ds.annotations
    return images, anns


# ------------------------------------------------------------------------ content and ids
def test_sharded_equals_the_single_file_conversion_but_annotation_ids(converter):
    """Read back as a whole, the shards hold the single-file conversion's images (ids included)
    and its entities, field for field; annotation ids are position × 100,000 + k."""
    name, _, ref, run, _ = converter
    m = read_manifest(run.output)
    assert [s.images for s in m.shards] == [3, 3, 1] and m.images == N_IMAGES == len(ref.images)
    images, anns = _read_back(run.output)
    want_images = sorted(ref.images, key=lambda i: i["id"]) if name == "entityseg" else ref.images
    assert images == want_images  # COCO's fixture lists its ids in order; EntitySeg's does not
    if name in ("coco-panoptic", "entityseg"):  # the source's integer ids kept
        assert "source_id" not in images[0] and [i["id"] for i in images] == sorted(i["id"] for i in ref.images)
    else:  # position + 1, the file's stem kept as source_id: the single-file conversion's too
        assert [i["id"] for i in images] == list(range(1, N_IMAGES + 1))
        assert [i["source_id"] for i in images] == [i["source_id"] for i in ref.images]
    by_image = ref.annotations_by_image()
    strip = lambda a: {k: v for k, v in a.items() if k != "id"}  # noqa: E731
    got: dict = {}
    for a in anns:
        got.setdefault(a["image_id"], []).append(a)
    assert len(anns) == len(ref.annotations) > N_IMAGES
    for pos, img in enumerate(images):
        want = by_image.get(img["id"], [])
        assert [strip(a) for a in got.get(img["id"], [])] == [strip(a) for a in want]
        assert [a["id"] for a in got.get(img["id"], [])] == [pos * STRIDE + k for k in range(1, len(want) + 1)]
    conv = next(iter_shard_datasets(run.output)).info["conversion"]
    assert {k: conv[k] for k in ("crowd", "overlap_rule") if k in conv} == \
        {k: ref.info["conversion"][k] for k in ("crowd", "overlap_rule") if k in ref.info["conversion"]}
    assert run.images == N_IMAGES and run.entities == sum(1 for a in ref.annotations if not a["iscrowd"])
    assert check_dataset(run.output, check_images=False).ok


def test_three_parts_and_two_workers_give_the_same_bytes(converter, tmp_path):
    name, inputs, _, run, sharded = converter
    out = tmp_path / "parts"
    for k in (1, 2, 3):
        sharded(inputs, out, shard_images=3, part=f"{k}/3", workers=2 if k == 2 else 1)
    merge_parts([out], out)
    assert dataset_files(out) == dataset_files(run.output)
    sharded(inputs, tmp_path / "j2", shard_images=3, workers=2)
    assert dataset_files(tmp_path / "j2") == dataset_files(run.output)


def test_cityscapes_panoptic_style_string_ids_are_positions(tmp_path):
    """String image ids (Cityscapes panoptic in COCO form): ids by position, the source's kept as
    source_id — what the single-file conversion does too."""
    path = _coco(tmp_path / "in", 4, image_ids=[f"frankfurt_{i}" for i in (3, 1, 2, 0)])
    ref = convert_coco_panoptic(path)
    run = convert_coco_panoptic_sharded(path, tmp_path / "out", shard_images=3)
    images, _ = _read_back(run.output)
    assert images == ref.images and [i["source_id"] for i in images] == ["frankfurt_3", "frankfurt_1", "frankfurt_2",
                                                                         "frankfurt_0"]


# ------------------------------------------------------------------------ CLI: K/N + merge, kill + resume
def test_cli_three_parts_merged_equal_one_run_byte_for_byte(tmp_path):
    path = _coco(tmp_path / "in")
    whole = tmp_path / "whole"
    r = entitykit("convert", "coco-panoptic", path, "-o", whole, "--shard-images", "3", "-q")
    assert r.returncode == 0, r.stderr
    out, elsewhere = tmp_path / "out", tmp_path / "machine3"
    for k, folder in ((1, out), (2, out), (3, elsewhere)):  # machine 3 has no shared disk
        r = entitykit("convert", "coco-panoptic", path, "-o", folder, "--shard-images", "3", "--shard", f"{k}/3",
                      "-j", "2" if k == 2 else "1")
        assert r.returncode == 0, r.stderr
        assert "entitykit shards merge" in r.stdout
    assert not (out / MANIFEST).exists()
    r = entitykit("shards", "merge", out, elsewhere, "-o", out)
    assert r.returncode == 0, r.stderr
    assert dataset_files(out) == dataset_files(whole)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO to stop the run inside a shard")
def test_cli_killed_run_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL `convert coco-panoptic --shard-images 3` while shard 1 is half converted (its second
    PNG is a FIFO nobody writes: the run blocks there), then --resume: shard 0 is kept (same
    inode), shards 1 and 2 converted, and the bytes are those of a run never interrupted."""
    path = _coco(tmp_path / "in")
    blocker = tmp_path / "in" / "panoptic" / "img_4.png"  # position 4: shard 1 holds positions 3, 4, 5
    real = blocker.read_bytes()
    blocker.unlink()
    os.mkfifo(blocker)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "entitykit", "convert", "coco-panoptic", str(path), "-o", str(out),
            "--shard-images", "3", "-j", "1", "-q"]
    kill_when_blocked(argv, out, "shard-00000.json")
    assert not (out / MANIFEST).exists() and not (out / "shard-00001.json").exists()
    blocker.unlink()
    blocker.write_bytes(real)
    kept = (out / "shard-00000.json").stat().st_ino
    r = entitykit(*argv[3:])  # without --resume: refused, one line
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "partly finished" in r.stderr, r.stderr
    r = entitykit(*argv[3:], "--resume")
    assert r.returncode == 0, r.stderr
    clean = tmp_path / "clean"
    convert_coco_panoptic_sharded(path, clean, shard_images=3)
    assert dataset_files(out) == dataset_files(clean)
    assert (out / "shard-00000.json").stat().st_ino == kept  # skipped, not rewritten
    r = entitykit(*argv[3:])
    assert r.returncode == 1 and "holds a finished conversion" in r.stderr


@pytest.mark.parametrize("command", [["cityscapes"], ["ade20k"], ["entityseg"], ["coco-panoptic"]])
def test_cli_sharded_options_of_every_converter(tmp_path, command):
    """--shard / --resume need --shard-images; --id-maps is refused with it (one line, nothing written)."""
    build = CONVERTERS[command[0]][0]
    inputs = build(tmp_path / "in", 2)
    r = entitykit("convert", *command, inputs, "-o", tmp_path / "x", "--shard", "1/2")
    assert r.returncode == 1 and "--shard needs --shard-images" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = entitykit("convert", *command, inputs, "-o", tmp_path / "x", "--shard-images", "1",
                  "--id-maps", tmp_path / "ids")
    assert r.returncode == 1 and "entitykit idmaps OUTPUT" in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "ids").exists()
    extra = ["--crowd", "keep"] if command[0] in ("cityscapes", "coco-panoptic") else []
    r = entitykit("convert", *command, inputs, "-o", tmp_path / "o", "--shard-images", "1", "--shard", "2/2", *extra)
    assert r.returncode == 0, r.stderr
    assert "part 2/2" in r.stdout and (tmp_path / "o" / "part-2-of-2.json").is_file()


# ------------------------------------------------------------------------ settings, problems, real samples
def test_resume_refuses_other_settings(tmp_path):
    path = _entityseg_n(tmp_path / "in")
    out = tmp_path / "out"
    convert_entityseg_sharded(path, out, shard_images=3, part="1/2")
    with pytest.raises(EntityKitError, match=r"other settings \(crowd: 'keep' there, 'void' now\)"):
        convert_entityseg_sharded(path, out, shard_images=3, part="2/2", crowd="void", resume=True)
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "sub/renamed.jpg"
    path.write_text(json.dumps(data))  # the JSON changed size
    with pytest.raises(EntityKitError, match="other input files"):
        convert_entityseg_sharded(path, out, shard_images=3, part="1/2", resume=True)


def test_problems_of_no_image_go_to_shard_zero_and_bad_images_keep_the_others_ids(tmp_path):
    path = _coco(tmp_path / "in")
    data = json.loads(path.read_text())
    data["annotations"].append({"image_id": 999, "file_name": "nope.png", "segments_info": []})
    (path.parent / "panoptic" / "img_4.png").unlink()
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="annotation for an unknown image"):
        convert_coco_panoptic_sharded(path, tmp_path / "strict", shard_images=3)
    assert not (tmp_path / "strict").exists()  # refused while planning: nothing written
    run = convert_coco_panoptic_sharded(path, tmp_path / "out", shard_images=3, keep_going=True)
    ref = convert_coco_panoptic(path, keep_going=True)
    assert run.problems == len(ref.info["conversion"]["problems"]) == 2
    m = read_manifest(run.output)
    assert [s.extra["problems"] for s in m.shards] == [1, 1, 0]
    assert m.shards[1].image_ids == [4, 6]  # image 5 (position 4) is missing; the others keep their ids
    images, _ = _read_back(run.output)
    assert images == ref.images


def test_real_coco_sample_sharded_equals_single_file(tmp_path):
    root = shared_sample("coco_panoptic_sample")
    args = (root / "panoptic_examples.json", root / "panoptic_examples")
    ref = convert_coco_panoptic(*args, image_root=root / "input_images")
    run = convert_coco_panoptic_sharded(args[0], tmp_path / "out", args[1], shard_images=1,
                                        image_root=root / "input_images")
    images, anns = _read_back(run.output)
    assert images == sorted(ref.images, key=lambda i: i["id"])
    strip = lambda a: {k: v for k, v in a.items() if k != "id"}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, anns))) == sorted(map(json.dumps, map(strip, ref.annotations)))
    assert check_dataset(run.output).ok  # image files found through the recorded folder


def test_real_ade20k_sample_sharded_equals_single_file(tmp_path):
    root = shared_sample("ade20k_sceneparsing_sample")
    kw = {"semantic_dir": root / "annotations", "image_dir": root / "images", "semantic_only": True}
    ref = convert_ade20k(root, **kw)
    run = convert_ade20k_sharded(root, tmp_path / "out", shard_images=2, **kw)
    images, anns = _read_back(run.output)
    assert images == ref.images
    strip = lambda a: {k: v for k, v in a.items() if k != "id"}  # noqa: E731
    assert [strip(a) for a in anns] == [strip(a) for a in ref.annotations]
    assert check_dataset(run.output).ok
