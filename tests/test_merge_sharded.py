"""`merge` into a sharded dataset (``entitykit.merge.merge_to_shards``, ``entitykit merge --shard-images``):
the same images, annotations, ids and order as the in-memory merge, for sharded and single-file
inputs; written atomically; memory bounded by one shard."""

from __future__ import annotations

import json
import shutil
import tracemalloc

import pytest
from test_merge import make_source
from test_shards_readers import write_sharded, write_stripes
from typer.testing import CliRunner

import entitykit.cli.merge_pack  # noqa: F401  (registers merge/pack)
import entitykit.merge as merge_module
from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.dataset import EntityDataset
from entitykit.errors import DatasetError, EntityKitError
from entitykit.merge import merge_datasets, merge_to_shards
from entitykit.shards import read_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """coco (10 images) and ade (30 images) as entity JSONs and as sharded folders (shards of 4+6
    and 10+10+10 images), a val set whose 2nd image has coco image 4's bytes (one JSON and sharded)."""
    root = tmp_path_factory.mktemp("ms")
    coco = make_source(root / "data", "coco", 10, seed=1)
    ade = make_source(root / "data" / "sub", "ade", 30, seed=2)
    val = make_source(root / "data", "v", 3, seed=9, split="val")
    images = root / "data"
    shutil.copy(images / "coco" / "images" / "synth_000003.jpg", images / "v" / "images" / "synth_000001.jpg")
    return {
        "coco": coco, "ade": ade, "val": val,
        "coco_sh": write_sharded(EntityDataset.load(coco), root / "sh" / "coco", (4, 6)),
        "ade_sh": write_sharded(EntityDataset.load(ade), root / "sh" / "ade", (10, 10, 10)),
        "val_sh": write_sharded(EntityDataset.load(val), root / "sh" / "val", (1, 2), split="val"),
        "root": root,
    }


CASES = {
    # name: (inputs, options, output shard size)
    "files, every image once": (["coco", "ade"], {}, 16),
    "shards, weights and total (copies)": (["coco_sh", "ade_sh"],
                                           {"weights": {"coco": 3, "ade": 1}, "total": 50, "seed": 4}, 7),
    "shards and a file, dedupe": (["coco_sh", "coco", "ade_sh"],
                                  {"names": ["a", "b", "c"], "dedupe": True, "total": 45}, 9),
    "holdout overlap dropped": (["coco_sh", "ade"], {"holdout": ["val_sh", "val"], "drop_holdout_overlap": True,
                                                     "weights": [1, 1], "total": 40}, 40),
    "one shard holds all": (["coco_sh"], {"hash_images": False}, 1000),
}


@pytest.mark.parametrize("case", CASES)
def test_sharded_output_equals_the_in_memory_merge(data, tmp_path, case):
    keys, options, size = CASES[case]
    inputs = [data[k] for k in keys]
    options = {k: [data[h] for h in v] if k == "holdout" else v for k, v in options.items()}
    one = merge_datasets(inputs, **options)
    res = merge_to_shards(inputs, tmp_path / "out", shard_images=size, **options)

    back = EntityDataset.load(tmp_path / "out")  # every shard, in manifest order
    assert back.images == one.images and back.annotations == one.annotations
    assert back.image_root.resolve() == one.image_root.resolve() == res.image_root.resolve()
    assert res.report == one.info["merge"] == read_manifest(tmp_path / "out").extra["merge"]
    n = len(one.images)
    assert [s.images for s in res.manifest.shards] == [min(size, n - a) for a in range(0, n, size)]
    assert res.manifest.images == n and res.manifest.split == one.info["split"] == back.info["split"]
    assert check_dataset(tmp_path / "out").ok  # ids and file names unique across shards, image files found
    if "total" in options:
        assert n == options["total"]
    if case.startswith("shards, weights"):
        assert max(img.get("copies", 1) for img in one.images) > 1
    if "dedupe" in options:
        assert one.info["merge"]["duplicates"]["groups"] == 10 and res.report["inputs"][1]["images_out"] == 0
    if "drop_holdout_overlap" in options:
        assert one.info["merge"]["holdout"]["overlap"] == 1


def test_the_same_merge_gives_the_same_bytes(data, tmp_path):
    args = ([data["coco_sh"], data["ade"]],)
    options = {"weights": [2, 1], "total": 33, "seed": 7}
    a = merge_to_shards(*args, tmp_path / "a", shard_images=5, **options)
    b = merge_to_shards(*args, tmp_path / "b", shard_images=5, **options)
    files = ["manifest.json", *(s.file for s in a.manifest.shards)]
    assert [s.file for s in b.manifest.shards] == files[1:]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_an_input_changed_between_the_passes_is_refused_and_nothing_is_written(data, tmp_path, monkeypatch):
    src = tmp_path / "coco_train.json"
    shutil.copy(data["coco"], src)
    d = EntityDataset.load(src)
    d.image_root = data["coco"].parent / "coco" / "images"
    d.save(src)
    hash_images = merge_module._hash_images

    def hash_then_change(ds, where, *a):  # pass 1 is done with the file: drop its last image behind its back
        out = hash_images(ds, where, *a)
        if where == str(src):
            changed = json.loads(src.read_text())
            last = changed["images"].pop()["id"]
            changed["annotations"] = [x for x in changed["annotations"] if x["image_id"] != last]
            src.write_text(json.dumps(changed))
        return out

    monkeypatch.setattr(merge_module, "_hash_images", hash_then_change)
    with pytest.raises(DatasetError, match="changed while it was being merged") as e:
        merge_to_shards([src, data["ade"]], tmp_path / "out", shard_images=4)
    assert e.value.path == str(src)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_refused_outputs(data, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(EntityKitError, match="not empty"):
        merge_to_shards([data["coco"]], tmp_path / "full")
    assert (tmp_path / "full" / "x.txt").read_text() == "mine"
    with pytest.raises(EntityKitError, match="must be a whole number ≥ 1"):
        merge_to_shards([data["coco"]], tmp_path / "o", shard_images=0)
    images = data["coco"].parent / "coco"  # holds the input's image folder: --overwrite would delete it
    with pytest.raises(EntityKitError, match="would overwrite its own input"):
        merge_to_shards([data["coco"]], images, overwrite=True)
    assert (images / "images" / "synth_000000.jpg").is_file()
    merge_to_shards([data["coco"]], tmp_path / "full", overwrite=True)
    assert not (tmp_path / "full" / "x.txt").exists() and len(EntityDataset.load(tmp_path / "full").images) == 10


# ----------------------------------------------------------------------------- CLI
def test_cli_merge_to_shards(data, tmp_path):
    common = [str(data["coco_sh"]), str(data["ade"]), "-w", "coco=1", "-w", "ade=2", "-n", "20", "--seed", "3"]
    r = runner.invoke(app, ["merge", *common, "-o", str(tmp_path / "m.json"), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["merge", *common, "-o", str(tmp_path / "out"), "--shard-images", "6"])  # not -q: the table
    assert r.exit_code == 0, r.output
    assert "(4 shards, split train, seed 3)" in " ".join(r.output.split()) and "ade" in r.output
    one, many = EntityDataset.load(tmp_path / "m.json"), EntityDataset.load(tmp_path / "out")
    assert many.images == one.images and many.annotations == one.annotations
    assert [s.images for s in read_manifest(tmp_path / "out").shards] == [6, 6, 6, 2]
    # an existing output folder: refused in one line, kept; replaced with --overwrite
    before = (tmp_path / "out" / "manifest.json").read_bytes()
    r = runner.invoke(app, ["merge", *common, "-o", str(tmp_path / "out"), "--shard-images", "5", "-q"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    refused = f"error: {tmp_path / 'out'}: folder exists and is not empty (pass --overwrite to replace it)"
    assert r.stderr.strip().splitlines() == [refused]
    assert (tmp_path / "out" / "manifest.json").read_bytes() == before
    r = runner.invoke(app, ["merge", *common, "-o", str(tmp_path / "out"), "--shard-images", "5", "-q", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert [s.images for s in read_manifest(tmp_path / "out").shards] == [5, 5, 5, 5]


@pytest.mark.parametrize("case", ["negative shard size", "missing input", "broken shard", "output is a file"])
def test_cli_bad_input_is_one_line_and_nothing_is_written(data, tmp_path, case):
    inputs = [str(data["coco_sh"]), str(data["ade"])]
    out = tmp_path / "out"
    extra = ["--shard-images", "5"]
    if case == "negative shard size":
        extra = ["--shard-images", "-1"]
        words = "--shard-images must be ≥ 1"
    elif case == "missing input":
        inputs[1] = str(tmp_path / "nope_train.json")
        words = "nope_train.json: entity dataset not found"
    elif case == "broken shard":
        shutil.copytree(data["coco_sh"], tmp_path / "c")
        (tmp_path / "c" / "shard-00001.json").unlink()
        inputs[0] = str(tmp_path / "c")
        words = "shards[1] (shard-00001.json): shard file is missing"
    else:
        out.write_text("a file")
        words = "exists and is not a folder"
    r = runner.invoke(app, ["merge", *inputs, "-o", str(out), "-q", *extra])
    assert r.exit_code == 1, r.output
    last = r.stderr.strip().splitlines()[-1]  # (a list of problems comes first: here the same one)
    assert last.startswith("error:") and words in last, r.stderr
    assert "Traceback" not in r.output
    assert (out.read_text() == "a file") if case == "output is a file" else not out.exists()
    assert not list(tmp_path.glob(".out*"))


# ----------------------------------------------------------------------------- memory
def _peak(call) -> int:
    """Peak bytes that Python (and numpy) allocate during ``call()`` (tracemalloc: no allocator noise)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmem")
    per_shard = 120  # 2,400 masks per shard
    return root, per_shard, write_stripes(root / "two", 2, per_shard), write_stripes(root / "eight", 8, per_shard)


def test_streaming_merge_memory_is_bounded_by_one_shard(stripes):
    """Peak memory of the streaming merge of 8 shards vs 2 shards of the same size: within 1.3×,
    and what the 6 extra shards add is under 1 KiB per image (the per-image index; their 20 masks
    per image alone take several KiB in memory); the in-memory merge of the 8 shards, for
    contrast, holds them all."""
    root, per_shard, two, eight = stripes
    opts = {"names": ["s"], "image_roots": {"s": root}, "split": "train", "hash_images": False}
    p2 = _peak(lambda: merge_to_shards([two], root / "o2", shard_images=per_shard, **opts))
    p8 = _peak(lambda: merge_to_shards([eight], root / "o8", shard_images=per_shard, **opts))
    whole = _peak(lambda: merge_datasets([eight], **opts))
    print(f"merge peak (tracemalloc): streaming 2 shards {p2 / 2**20:.2f} MiB, 8 shards {p8 / 2**20:.2f} MiB; "
          f"in memory, 8 shards: {whole / 2**20:.2f} MiB")
    assert whole > 2.5 * p2  # the measure sees the data: holding every shard grows with them
    assert p8 <= 1.3 * p2, (p2, p8)
    assert p8 - p2 <= 1024 * 6 * per_shard, (p2, p8)
    written = read_manifest(root / "o8")
    assert (written.images, written.entities) == (8 * per_shard, 8 * per_shard * 20)
    shutil.rmtree(root / "o2")
    shutil.rmtree(root / "o8")
