"""`entitykit pack`: exact round trip, shards, determinism, self-description, fork safety, errors."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

import entitykit.cli.merge_pack  # noqa: F401  (registers merge/pack until cli/__init__ imports it)
from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic
from entitykit.dataset import EntityDataset
from entitykit.errors import EntityKitError
from entitykit.masks import decode_to_id_map, encode_id_map, rle_bbox
from entitykit.pack import (
    PACK_FORMAT,
    PACK_VERSION,
    EntityPack,
    decode_idmap_runs,
    encode_idmap_runs,
    pack_dataset,
    verify_pack,
)
from entitykit.synth import write_synthetic_panoptic

runner = CliRunner()


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """11 small images with crowd regions kept (iscrowd=1), JPEGs on disk."""
    root = tmp_path_factory.mktemp("pk")
    j = write_synthetic_panoptic(root / "d", 11, height=30, width=41, segments=8, seed=3, crowd_fraction=0.3)
    ds = convert_coco_panoptic(j, image_root=root / "d" / "images", crowd="keep")
    assert any(a["iscrowd"] for a in ds.annotations)
    ds.save(root / "e.json")
    return root / "e.json"


def _full_map(img, anns):
    m, _ = decode_to_id_map([a["segmentation"] for a in anns], range(1, len(anns) + 1), img["height"], img["width"])
    return m


def test_round_trip_exact_across_shards(src, tmp_path):
    man = pack_dataset(src, tmp_path / "p", shard_images=4)
    assert [s["images"] for s in man["shards"]] == [4, 4, 3]
    ds = EntityDataset.load(src)
    with EntityPack(tmp_path / "p") as pk:
        assert len(pk) == 11
        for i, (img, anns) in enumerate(ds.iter_images()):
            s = pk[i]
            assert s.image_id == img["id"]
            assert s.image_bytes == ds.image_path(img).read_bytes() == pk.image_bytes(i)
            assert s.id_map.dtype == np.int32
            np.testing.assert_array_equal(s.id_map, _full_map(img, anns))
            np.testing.assert_array_equal(s.entity_id_map(), ds.id_map(img["id"]))  # the paper's P, crowd → 0
            assert s.entity_ids.tolist() == [a["id"] for a in anns]
            assert s.iscrowd.tolist() == [a["iscrowd"] for a in anns]
            assert s.area.tolist() == [a["area"] for a in anns]
            np.testing.assert_array_equal(s.bbox, np.array([a["bbox"] for a in anns]).reshape(-1, 4))
            assert s.image_array().shape == (img["height"], img["width"], 3)
            assert pk.image_info(i) == img
        assert pk[-1].image_id == ds.images[-1]["id"]
        with pytest.raises(IndexError):
            pk[11]
        back = pk.to_dataset()
        assert back.images == ds.images and back.annotations == ds.annotations
        assert pk.info["conversion"] == ds.info["conversion"]
    assert verify_pack(tmp_path / "p", src) == []


def test_single_shard_file_is_self_describing(src, tmp_path):
    pack_dataset(src, tmp_path / "p", shard_images=5)
    shard = tmp_path / "p" / "shard-00001-of-00003.h5"
    with h5py.File(shard, "r") as f:
        assert f.attrs["format"] == PACK_FORMAT and f.attrs["format_version"] == PACK_VERSION
        assert f.attrs["shard"] == 1 and f.attrs["num_shards"] == 3 and f.attrs["first_index"] == 5
        m = json.loads(f["pack_json"][()])
        assert m["idmap_codec"] == "rowruns-deflate-v1" and m["dataset"]["info"]["format"] == "entitykit-entities"
    ds = EntityDataset.load(src)
    with EntityPack(shard) as pk:
        assert len(pk) == 5
        for i in range(5):
            img = ds.images[5 + i]
            assert pk[i].image_id == img["id"] and pk.image_bytes(i) == ds.image_path(img).read_bytes()


def test_deterministic_bytes_whatever_the_workers(src, tmp_path):
    pack_dataset(src, tmp_path / "a", shard_images=6)
    pack_dataset(src, tmp_path / "b", shard_images=6, workers=2)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["pack.json", "shard-00000-of-00002.h5", "shard-00001-of-00002.h5"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(0, 9), st.integers(0, 9)), elements=st.integers(0, 70000)))
def test_idmap_codec_round_trip(m):
    dt = np.dtype("<u4") if m.size and m.max() > 0xFFFF else np.dtype("<u2")
    blob, runs = encode_idmap_runs(m, dt)
    np.testing.assert_array_equal(decode_idmap_runs(blob, runs, *m.shape, dt), m)


def test_more_than_65535_entities_use_32_bit_values(tmp_path):
    h, w = 257, 256  # 65,792 one-pixel entities
    m = np.arange(1, h * w + 1, dtype=np.int64).reshape(h, w)
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "img" / "x.png")  # pack reads its header
    ids, rles, areas = encode_id_map(m)
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": r, "area": int(a), "bbox": b, "iscrowd": 0}
            for k, (r, a, b) in enumerate(zip(rles, areas.tolist(), rle_bbox(rles).tolist()))]
    ds = EntityDataset([{"id": 1, "file_name": "x.png", "height": h, "width": w}], anns, image_root=tmp_path / "img")
    man = pack_dataset(ds, tmp_path / "p")
    assert man["idmap_value_dtype"] == "<u4"
    with EntityPack(tmp_path / "p") as pk:
        np.testing.assert_array_equal(pk.id_map(0), m)


def _read_in_child(args):
    pk, i = args
    s = pk[i]
    return s.image_id, s.image_bytes, s.id_map.sum()


def test_fork_and_pickle_safe(src, tmp_path):
    pack_dataset(src, tmp_path / "p", shard_images=4)
    pk = EntityPack(tmp_path / "p")
    parent = [(s.image_id, s.image_bytes, s.id_map.sum()) for s in (pk[i] for i in range(11))]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_read_in_child, [(pk, i) for i in range(11)]) == parent
    clone = pickle.loads(pickle.dumps(pk))
    assert [(clone[i].image_id, clone[i].image_bytes, clone[i].id_map.sum()) for i in range(11)] == parent
    pk.close()


def test_bad_input_names_item_and_writes_nothing(src, tmp_path):
    shutil.copytree(src.parent, tmp_path / "c")
    c = tmp_path / "c" / "e.json"
    (tmp_path / "c" / "d" / "images" / "synth_000004.jpg").unlink()
    with pytest.raises(EntityKitError) as e:
        pack_dataset(c, tmp_path / "out")
    assert e.value.path == str(c) and e.value.item == "image 5" and "image file not found" in e.value.problem
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))

    data = json.loads(src.read_text())
    first = [a for a in data["annotations"] if a["image_id"] == 2]
    first[1]["segmentation"] = first[0]["segmentation"]  # two masks on the same pixels
    (src.parent / "overlap.json").write_text(json.dumps(data))
    with pytest.raises(EntityKitError) as e:
        pack_dataset(src.parent / "overlap.json", tmp_path / "out", shard_images=1)
    assert e.value.item == "image 2" and "overlap" in e.value.problem
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))

    # an existing pack is never replaced without overwrite, and stays intact on failure
    pack_dataset(src, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    with pytest.raises(EntityKitError, match="not empty"):
        pack_dataset(src, tmp_path / "out")
    with pytest.raises(EntityKitError):
        pack_dataset(src.parent / "overlap.json", tmp_path / "out", overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_reader_refuses_other_versions(src, tmp_path):
    pack_dataset(src, tmp_path / "p")
    man = json.loads((tmp_path / "p" / "pack.json").read_text())
    man["format_version"] = 99
    (tmp_path / "p" / "pack.json").write_text(json.dumps(man))
    with pytest.raises(EntityKitError, match="version 99"):
        EntityPack(tmp_path / "p")
    with pytest.raises(EntityKitError, match="pack not found"):
        EntityPack(tmp_path / "nope")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(EntityKitError, match="not an entitykit-pack shard"):
        EntityPack(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(EntityKitError, match="cannot open as HDF5"):
        EntityPack(tmp_path / "text.h5")


def test_cli_pack_verify(src, tmp_path):
    r = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "p"), "--shard-images", "3", "--verify"])
    assert r.exit_code == 0, r.output
    assert "packed 11 images" in r.output and "4 shard(s)" in r.output and "verified" in r.output
    r = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 1 and "not empty" in r.output


def test_json_and_pack_give_the_same_training_samples(src, tmp_path):
    from entitykit.data import JsonSource, open_source
    from entitykit.pack import PackSource

    pack_dataset(src, tmp_path / "p", shard_images=4)
    pk, js = open_source(tmp_path / "p"), open_source(src)
    assert isinstance(pk, PackSource) and isinstance(js, JsonSource) and len(pk) == len(js) == 11
    for i in range(11):
        for a, b in zip(pk.load(i), js.load(i)):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    assert isinstance(open_source(tmp_path / "p" / "shard-00000-of-00003.h5"), PackSource)


def test_repeated_copies_are_stored_once_per_shard(src, tmp_path):
    from entitykit.merge import merge_datasets

    mix = merge_datasets([src], weights=[1], total=33, split="train")  # every image 3 times
    mix.save(tmp_path / "mix.json")
    man = pack_dataset(tmp_path / "mix.json", tmp_path / "p", shard_images=0)
    one = pack_dataset(src, tmp_path / "q", shard_images=0)
    assert man["shards"][0]["stored_images"] == 11 and man["shards"][0]["image_bytes"] == one["shards"][0]["image_bytes"]
    name = "shard-00000-of-00001.h5"
    with h5py.File(tmp_path / "p" / name, "r") as f, h5py.File(tmp_path / "q" / name, "r") as g:
        assert f["images/bytes"].shape == g["images/bytes"].shape and f["idmaps/bytes"].shape == g["idmaps/bytes"].shape
        spans = f["images/span"][()]
        assert spans.shape == (33, 2) and (spans[0] == spans[1]).all() and (spans[1] == spans[2]).all()  # copies 1..3
        first = EntityDataset.load(tmp_path / "mix.json")
        digest = hashlib.sha256(first.image_path(first.images[0]).read_bytes()).digest()
        assert f["images/sha256"][0].tobytes() == f["images/sha256"][2].tobytes() == digest
    assert verify_pack(tmp_path / "p", tmp_path / "mix.json") == []
    with EntityPack(tmp_path / "p") as pk:
        assert pk.to_dataset().annotations == EntityDataset.load(tmp_path / "mix.json").annotations


def test_shard_bytes_limit(src, tmp_path):
    sizes = [p.stat().st_size for p in sorted((src.parent / "d" / "images").iterdir())]
    limit = sum(sizes[:3])  # three images fit, the fourth would not
    man = pack_dataset(src, tmp_path / "p", shard_images=0, shard_bytes=limit)
    assert all(s["image_bytes"] <= limit for s in man["shards"]) and man["shards"][0]["images"] == 3
    assert sum(s["images"] for s in man["shards"]) == 11
    man = pack_dataset(src, tmp_path / "q", shard_images=0, shard_bytes=1)  # one image per shard at least
    assert [s["images"] for s in man["shards"]] == [1] * 11
    assert verify_pack(tmp_path / "q", src) == []
    r = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "r"), "--shard-size", "2 KiB", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "s"), "--shard-size", "lots", "-q"])
    assert r.exit_code == 1 and "expected a size" in r.output


def test_single_h5_file_form_and_training_source(src, tmp_path):
    from entitykit.pack import PackSource

    man = pack_dataset(src, tmp_path / "mix.h5")
    assert (tmp_path / "mix.h5").is_file() and man["shards"] == [
        {"file": "mix.h5", "first_index": 0, "images": 11, "stored_images": 11, "image_bytes": man["shards"][0]["image_bytes"]}]
    assert verify_pack(tmp_path / "mix.h5", src) == []
    with pytest.raises(EntityKitError, match="file exists"):
        pack_dataset(src, tmp_path / "mix.h5")
    with pytest.raises(EntityKitError, match="one shard"):
        pack_dataset(src, tmp_path / "other.h5", shard_images=3)
    assert not (tmp_path / "other.h5").exists()

    ds = EntityDataset.load(src)
    source = PackSource(tmp_path / "mix.h5")
    assert len(source) == 11
    from entitykit.data import JsonSource

    for i, (img, anns) in enumerate(ds.iter_images()):
        rgb, id_map, crowd = source.load(i)
        assert rgb.dtype == np.uint8 and rgb.shape == (img["height"], img["width"], 3)
        np.testing.assert_array_equal(id_map, _full_map(img, anns))
        assert crowd.tolist() == [bool(a["iscrowd"]) for a in anns]
        for x, y in zip((rgb, id_map, crowd), JsonSource(ds).load(i)):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype


# ------------------------------------------------------------------ damaged packs: one line naming the shard
def _damage_idmap(shard: Path, j: int) -> None:
    """Overwrite image j's deflated id map in place (the HDF5 structure stays intact)."""
    with h5py.File(shard, "r") as f:
        base = f["idmaps/bytes"].id.get_offset()
        a, b = f["idmaps/span"][j].tolist()
    with open(shard, "r+b") as fh:
        fh.seek(base + a)
        fh.write(bytes(255 - x for x in range(b - a)))


def test_damaged_shard_is_a_dataset_error_naming_shard_and_image(src, tmp_path):
    from entitykit.errors import DatasetError

    pack_dataset(src, tmp_path / "p", shard_images=4)
    shard = tmp_path / "p" / "shard-00001-of-00003.h5"
    with h5py.File(shard, "r") as f:
        image_id = int(f["images/id"][1])
    _damage_idmap(shard, 1)
    pk = EntityPack(tmp_path / "p")  # the structure is intact: opens
    for read in (lambda: pk[5], lambda: pk.id_map(5), lambda: pk.annotations(5)):
        with pytest.raises(DatasetError) as e:
            read()
        assert e.value.path == str(shard) and e.value.item == f"image {image_id} (index 5)"
        assert "cannot read this pack shard" in e.value.problem
    pk[4], pk[6]  # the other images of the shard still read
    # damaged HDF5 structure (2 kB flipped at the start, as a bad disk would): refused when the pack is opened
    data = bytearray(shard.read_bytes())
    data[:2048] = bytes(255 - x for x in data[:2048])
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as e:
        EntityPack(tmp_path / "p")
    assert e.value.path == str(shard) and e.value.problem.startswith(("cannot open as HDF5", "cannot read this pack shard"))


def test_pack_json_records_shard_sizes_and_digests(src, tmp_path):
    from entitykit.errors import DatasetError
    from entitykit.pack import pack_integrity

    man = pack_dataset(src, tmp_path / "p", shard_images=4)
    assert json.loads((tmp_path / "p" / "pack.json").read_text())["shards"] == man["shards"]
    for entry in man["shards"]:
        data = (tmp_path / "p" / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert pack_integrity(tmp_path / "p") == []
    shard = tmp_path / "p" / "shard-00002-of-00003.h5"
    _damage_idmap(shard, 0)  # same size: only the digest (or reading the image) finds it
    problems = pack_integrity(tmp_path / "p")
    assert [(p.path, "SHA-256 differs" in p.problem) for p in problems] == [(str(shard), True)]
    shutil.copyfile(shard, tmp_path / "keep.h5")
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated: the size check, at open
    with pytest.raises(DatasetError, match="truncated or changed since packing"):
        EntityPack(tmp_path / "p")


def test_check_and_info_read_packs(src, tmp_path):
    pack_dataset(src, tmp_path / "p", shard_images=4)
    r = runner.invoke(app, ["check", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    r2 = runner.invoke(app, ["info", str(src), "--json"])
    got, want = json.loads(r.output), json.loads(r2.output)
    got.pop("path", None), want.pop("path", None)
    assert got == want  # the same statistics as the dataset it was made from
    _damage_idmap(tmp_path / "p" / "shard-00001-of-00003.h5", 2)
    r = runner.invoke(app, ["check", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 1 and "shard-00001-of-00003.h5" in r.output and "SHA-256 differs" in r.output
