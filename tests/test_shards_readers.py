"""Sharded datasets (``entitykit.shards``) on the reading side: check, info, merge, pack, predict
``--dataset`` and train read a folder of shards, shard by shard, and give the same answers as on the
same data as one file; a broken shard is one line naming the shard and the item; memory is bounded
by one shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import entitykit.cli.merge_pack  # noqa: F401  (registers merge/pack)
from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic
from entitykit.data import Augment, ConcatSource, TrainingSet, batch_keys, open_source
from entitykit.dataset import EntityDataset
from entitykit.merge import merge_datasets
from entitykit.pack import EntityPack, pack_dataset, verify_pack
from entitykit.shards import entry_for_file, manifest_for, shard_counts, write_manifest
from entitykit.stats import dataset_stats
from entitykit.synth import write_synthetic_panoptic

runner = CliRunner()
SIZES = (4, 4, 3)  # images per shard of the 11-image fixture


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """11 small images (crowd regions kept) as ONE entity JSON, JPEGs on disk."""
    root = tmp_path_factory.mktemp("sh")
    j = write_synthetic_panoptic(root / "d", 11, height=30, width=41, segments=8, seed=5, crowd_fraction=0.3)
    ds = convert_coco_panoptic(j, image_root=root / "d" / "images", crowd="keep")
    ds.info["split"] = "train"
    ds.save(root / "whole.json")
    return root / "whole.json"


def write_sharded(ds: EntityDataset, folder: Path, sizes, *, ranges: bool = True, split: str | None = "train") -> Path:
    """``ds`` cut into JSON shards of ``sizes`` images (annotations with their images) + a manifest,
    written by hand with entitykit.shards' own entry/manifest builders. ``ranges``: record the
    shards' id ranges (False: the readers must prove uniqueness themselves)."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = ds.annotations_by_image()
    entries, start = [], 0
    for k, n in enumerate(sizes):
        imgs = ds.images[start:start + n]
        start += n
        part = EntityDataset(images=imgs, annotations=[a for img in imgs for a in groups[img["id"]]],
                             info=dict(ds.info), image_root=ds.image_root)
        name = f"shard-{k:05d}.json"
        part.save(folder / name)
        counts = shard_counts(part) if ranges else dict(shard_counts(part), image_ids=None, annotation_ids=None)
        entries.append(entry_for_file(folder, name, counts))
    write_manifest(folder, manifest_for(folder, entries, split=split))
    return folder


def rewrite_shard(folder: Path, k: int, edit) -> None:
    """Change shard k (``edit(data) -> data`` on its parsed JSON, or raw text) and re-record it in the
    manifest, so that only the reader's own rules can find what is wrong."""
    man = json.loads((folder / "manifest.json").read_text())
    name = man["shards"][k]["file"]
    path = folder / name
    new = edit(json.loads(path.read_text()))
    path.write_text(new if isinstance(new, str) else json.dumps(new))
    entry = entry_for_file(folder, name, {"images": man["shards"][k]["images"], "entities": man["shards"][k]["entities"]})
    man["shards"][k] = entry.as_dict()
    write_manifest(folder, man)


@pytest.fixture
def sharded(whole, tmp_path) -> Path:
    return write_sharded(EntityDataset.load(whole), tmp_path / "sh", SIZES)


def _problems(report):
    return [(p.item, p.problem) for p in report.problems]


# ----------------------------------------------------------------------------- check and info
def test_check_finds_the_same_problems_naming_the_shard(whole, tmp_path):
    ds = EntityDataset.load(whole)
    ds.annotations[3]["area"] += 1  # image 1 (shard 0)
    last = ds.annotations_by_image()[ds.images[9]["id"]][0]  # image of shard 2
    last["bbox"] = [0, 0, 1, 1]
    ds.save(tmp_path / "bad.json")
    folder = write_sharded(ds, tmp_path / "sh", SIZES)
    one, many = check_dataset(tmp_path / "bad.json"), check_dataset(folder)
    assert len(one.problems) == 2 and _problems(one) == _problems(many)
    assert [Path(p.path).name for p in many.problems] == ["shard-00000.json", "shard-00002.json"]
    assert (many.images, many.annotations) == (one.images, one.annotations) == (11, len(ds.annotations))
    assert check_dataset(write_sharded(EntityDataset.load(whole), tmp_path / "ok", SIZES)).ok


def test_info_gives_the_same_numbers(whole, sharded):
    one, many = dataset_stats(whole).as_dict(), dataset_stats(sharded).as_dict()
    assert one.pop("path") == str(whole) and many.pop("path") == str(sharded)
    assert one == many
    assert dataset_stats(sharded / "manifest.json").as_dict()["entities_per_image"] == one["entities_per_image"]
    # independent reference for a few of them: the masks' own counts
    ds = EntityDataset.load(whole)
    ent = [a for a in ds.annotations if not a["iscrowd"]]
    assert many["entities"] == len(ent) and many["crowd"] == len(ds.annotations) - len(ent)
    assert many["coverage"] == pytest.approx(sum(a["area"] for a in ent) / sum(i["height"] * i["width"] for i in ds.images))
    r = runner.invoke(app, ["info", str(sharded), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["entities_per_image"] == one["entities_per_image"]


# ----------------------------------------------------------------------------- broken shards
def _dup_image_id(data):
    data["images"][0]["id"] = 1  # image id 1 is shard 0's
    for a in data["annotations"]:
        if a["image_id"] == 5:
            a["image_id"] = 1
    return data


def _dup_annotation_id(data):
    data["annotations"][0]["id"] = 1  # annotation id 1 is shard 0's
    return data


@pytest.mark.parametrize("case, words, item", [
    ("missing", "shard file is missing", "shard-00001.json"),
    ("bad json", "shard-00001.json", "not valid JSON"),
    ("duplicate image id", "shard-00001.json: image 1: duplicate image id (also in", "shard-00000.json"),
    ("duplicate annotation id", "shard-00001.json: annotation 1: duplicate annotation id (also in", "shard-00000.json"),
    ("annotation of another shard", "annotation for an image of another shard", "shard-00001.json"),
])
@pytest.mark.parametrize("command", ["check", "info", "pack", "merge"])
def test_broken_shard_is_one_line_naming_shard_and_item(whole, tmp_path, case, words, item, command):
    folder = write_sharded(EntityDataset.load(whole), tmp_path / "sh", SIZES, ranges=False)
    if case == "missing":
        (folder / "shard-00001.json").unlink()
    elif case == "bad json":
        rewrite_shard(folder, 1, lambda d: json.dumps(d)[:-20])
    elif case == "duplicate image id":
        rewrite_shard(folder, 1, _dup_image_id)
    elif case == "duplicate annotation id":
        rewrite_shard(folder, 1, _dup_annotation_id)
    else:
        rewrite_shard(folder, 1, lambda d: dict(d, annotations=[dict(a, image_id=1) if k == 0 else a
                                                                 for k, a in enumerate(d["annotations"])]))
    args = {"check": ["check", str(folder), "--quiet"], "info": ["info", str(folder)],
            "pack": ["pack", str(folder), "-o", str(tmp_path / "p"), "--quiet"],
            "merge": ["merge", str(folder), "-o", str(tmp_path / "m.json"), "--quiet", "--no-content-check"]}[command]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and words in last and item in last, last
    assert "Traceback" not in r.output
    assert not (tmp_path / "p").exists() and not (tmp_path / "m.json").exists()


def test_annotation_ids_are_unique_across_shards_without_recorded_ranges(whole, tmp_path):
    """Each shard leaves only its id range; a range that meets an earlier one re-reads that shard."""
    ds = EntityDataset.load(whole)
    ids = [a["id"] for a in ds.annotations]
    # interleave the ids of shards 0 and 1 (ranges meet, ids distinct): no problem may be reported
    g = ds.annotations_by_image()
    first = [a for img in ds.images[:4] for a in g[img["id"]]]
    second = [a for img in ds.images[4:8] for a in g[img["id"]]]
    pool = sorted(a["id"] for a in first + second)
    for a, new in zip(first + second, pool[0::2] + pool[1::2]):
        a["id"] = new
    assert len({a["id"] for a in ds.annotations}) == len(ids)
    ok = write_sharded(ds, tmp_path / "ok", SIZES, ranges=False)
    assert check_dataset(ok).ok
    rewrite_shard(ok, 2, _dup_annotation_id)
    rep = check_dataset(ok)
    assert _problems(rep) == [("annotation 1", f"duplicate annotation id (also in {ok / 'shard-00000.json'})")]
    assert Path(rep.problems[0].path).name == "shard-00002.json"


# ----------------------------------------------------------------------------- merge, pack, predict
def test_merge_of_a_sharded_input_equals_the_one_file_merge(whole, sharded):
    one = merge_datasets([whole], names=["s"], hash_images=True)
    many = merge_datasets([sharded], names=["s"], hash_images=True)
    assert many.images == one.images and many.annotations == one.annotations
    assert many.info["merge"]["split"] == "train"  # the manifest's split
    assert many.image_root == one.image_root


def test_pack_of_a_sharded_dataset_has_the_same_content(whole, sharded, tmp_path):
    a = pack_dataset(whole, tmp_path / "a", shard_images=4)
    b = pack_dataset(sharded, tmp_path / "b", shard_images=4)
    assert [s["images"] for s in a["shards"]] == [s["images"] for s in b["shards"]] == [4, 4, 3]
    assert verify_pack(tmp_path / "b", sharded) == [] and verify_pack(tmp_path / "b", whole) == []
    with EntityPack(tmp_path / "a") as pa, EntityPack(tmp_path / "b") as pb:
        assert len(pa) == len(pb) == 11
        for i in range(11):
            x, y = pa[i], pb[i]
            assert x.image_bytes == y.image_bytes and np.array_equal(x.id_map, y.id_map)
            assert x.entity_ids.tolist() == y.entity_ids.tolist() and np.array_equal(x.bbox, y.bbox)
            assert pa.annotations(i) == pb.annotations(i) and pa.image_info(i) == pb.image_info(i)
    # pack shards never straddle two input shards: 5 + 6 images, 4 per pack shard
    c = pack_dataset(write_sharded(EntityDataset.load(whole), tmp_path / "s56", (5, 6)), tmp_path / "c", shard_images=4)
    assert [(s["first_index"], s["images"]) for s in c["shards"]] == [(0, 4), (4, 1), (5, 4), (9, 2)]
    assert verify_pack(tmp_path / "c", whole) == []


def test_predict_dataset_from_shards_equals_one_file(whole, sharded, tmp_path, one_torch_thread):
    from entitykit.model import EntityModel, get_config
    from entitykit.predict import predict

    torch.manual_seed(0)
    model = EntityModel(get_config("tiny")).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(0.0)
    one = predict(model, None, tmp_path / "one", dataset=whole, overlays=False, previews=False)
    many = predict(model, None, tmp_path / "many", dataset=sharded, overlays=False, previews=False)
    def real(records):  # the same image file, reached through the shard's relative image folder
        return [dict(r, source=os.path.realpath(r["source"])) for r in records]

    assert real(one.images) == real(many.images) and len(one.images) == 11
    assert (tmp_path / "one" / "coco_results.json").read_bytes() == (tmp_path / "many" / "coco_results.json").read_bytes()


# ----------------------------------------------------------------------------- training from shards
def _batches(source, iterations=6, batch=4, seed=3):
    ts = TrainingSet([source], Augment(min_sizes=(24, 32), max_size=48), seed=seed)
    out = []
    for it in range(iterations):
        for key in batch_keys(it, batch, len(ts), seed):
            image, target = ts[key]
            out.append((key, image, target["masks"], target["ignore"]))
    return out


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        ka == kb and torch.equal(ia, ib) and torch.equal(ma, mb) and torch.equal(ga, gb)
        for (ka, ia, ma, ga), (kb, ib, mb, gb) in zip(a, b))


def test_batches_from_a_set_of_packs_equal_those_of_one_pack(whole, sharded, tmp_path):
    pack_dataset(whole, tmp_path / "one.h5")
    (tmp_path / "set").mkdir()
    for k in range(len(SIZES)):  # one pack per shard: set/part-0.h5 …
        pack_dataset(sharded / f"shard-{k:05d}.json", tmp_path / "set" / f"part-{k}.h5")
    one = open_source(tmp_path / "one.h5")
    many = open_source(str(tmp_path / "set" / "part-*.h5"))
    assert isinstance(many, ConcatSource) and len(many) == len(one) == 11
    reference = _batches(one)
    assert _same(reference, _batches(many))
    assert _same(reference, _batches(open_source(sharded)))  # the JSON shards themselves
    assert _same(reference, _batches(open_source(whole)))


def test_pack_reader_keeps_no_per_entity_table_in_memory(whole, tmp_path):
    pack_dataset(whole, tmp_path / "p", shard_images=4)
    with EntityPack(tmp_path / "p") as pk:
        ids = [pk[i].entity_ids.tolist() for i in range(len(pk))]
        for s in pk._shards:
            assert not {"ent_id", "ent_crowd", "ent_area", "ent_bbox"} & set(vars(s))
    ds = EntityDataset.load(whole)
    assert ids == [[a["id"] for a in anns] for _, anns in ds.iter_images()]


def test_pack_reader_keeps_few_shard_files_open(whole, tmp_path, monkeypatch):
    import entitykit.pack as pack_module

    pack_dataset(whole, tmp_path / "p", shard_images=2)  # 6 shards
    monkeypatch.setattr(pack_module, "MAX_OPEN_SHARDS", 2)
    ds = EntityDataset.load(whole)
    with EntityPack(tmp_path / "p") as pk:
        for i in [0, 10, 3, 7, 1, 9, 5]:  # crossing shards in random order
            assert pk[i].image_id == ds.images[i]["id"]
            assert sum(s.file is not None for s in pk._shards) <= 2


def test_train_cli_reads_a_glob_of_packs(whole, tmp_path, one_torch_thread):
    (tmp_path / "set").mkdir()
    pack_dataset(whole, tmp_path / "set" / "a.h5")
    import entitykit.cli.train  # noqa: F401

    r = runner.invoke(app, ["train", "--train", str(tmp_path / "set" / "*.h5"), "--preset", "tiny", "--max-iter", "1",
                            "--batch-size", "1", "-o", str(tmp_path / "run"), "--quiet",
                            "--set", "min_sizes=[32]", "--set", "max_size=48"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "--train", str(tmp_path / "none" / "*.h5"), "--preset", "tiny", "--max-iter", "1",
                            "-o", str(tmp_path / "run2"), "--quiet"])
    assert r.exit_code == 1 and "no file or folder matches" in r.stderr


# ----------------------------------------------------------------------------- memory
def write_stripes(folder: Path, n_shards: int, per_shard: int) -> Path:
    """A sharded dataset of ``n_shards`` equal shards, ``per_shard`` 40×60 images of 20 disjoint
    stripe masks each (no image files: check runs with check_images=False)."""
    from pycocotools import mask as mask_utils

    h, w, k = 40, 60, 20
    segs = []
    for j in range(k):
        m = np.zeros((h, w), np.uint8, order="F")
        m[2 * j:2 * j + 2] = 1
        r = mask_utils.encode(m)
        r["counts"] = r["counts"].decode()
        segs.append((r, int(mask_utils.area(r)), [float(v) for v in mask_utils.toBbox(r)]))
    folder.mkdir()
    entries, img_id, ann_id = [], 1, 1
    for s in range(n_shards):
        images, anns = [], []
        for _ in range(per_shard):
            images.append({"id": img_id, "file_name": f"{img_id}.jpg", "height": h, "width": w})
            for r, area, bbox in segs:
                anns.append({"id": ann_id, "image_id": img_id, "category_id": 1, "segmentation": r, "area": area,
                             "bbox": bbox, "iscrowd": 0})
                ann_id += 1
            img_id += 1
        part = EntityDataset(images=images, annotations=anns, info={})
        part.save(folder / f"s{s}.json")
        entries.append(entry_for_file(folder, f"s{s}.json", shard_counts(part)))
    write_manifest(folder, manifest_for(folder, entries))
    return folder


_MEMORY_SCRIPT = textwrap.dedent('''
    import gc, json, sys
    from entitykit.check import check_dataset
    from entitykit.dataset import EntityDataset
    from entitykit.stats import dataset_stats

    def status(key):  # kB, from the kernel's own accounting of this process
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    folder, command = sys.argv[1], sys.argv[2]
    if command.startswith("eval"):  # the scorer's imports before the base is taken
        from entitykit.evaluation import evaluate
        import entitykit.evaluation.ape, entitykit.evaluation.predictions
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    base = status("VmRSS")
    if command == "check":
        assert check_dataset(folder, check_images=False).ok
    elif command == "info":
        dataset_stats(folder)
    elif command == "idmaps":  # output folder: sys.argv[3]
        from entitykit.dataset import export_id_maps
        export_id_maps(folder, sys.argv[3], previews=False)
    elif command == "eval":  # predictions: sys.argv[3]
        evaluate(folder, sys.argv[3], workers=1)
    elif command == "eval-whole":  # every shard at once, scored as one dataset, for contrast
        evaluate(EntityDataset.load(folder), sys.argv[3], workers=1)
    else:  # every shard at once, for contrast
        EntityDataset.load(folder)
    print(json.dumps({"base_kib": base, "peak_kib": status("VmHWM")}))
''')


def peak_above_base(folder: Path, command: str, *args: str) -> int:
    """KiB of peak RSS that ``command`` (check, info, load; eval and eval-whole, with a predictions
    file in ``args``) adds to a fresh process that has imported entitykit."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(folder), command, *map(str, args)],
                         capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    return m["peak_kib"] - m["base_kib"]


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    root = tmp_path_factory.mktemp("mem")
    per_shard = 600  # 12,000 masks per shard
    return write_stripes(root / "two", 2, per_shard), write_stripes(root / "eight", 8, per_shard)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc peak-RSS reset")
@pytest.mark.parametrize("command", ["check", "info", "idmaps"])
def test_memory_is_bounded_by_one_shard(stripes, command, tmp_path):
    """Peak memory that check / info / idmaps add on 8 shards vs 2 shards of the same size: within
    1.3× (+1 MiB of allocator noise); loading all 8 at once, for contrast, costs several times more."""
    out = [tmp_path / "out2", tmp_path / "out8"] if command == "idmaps" else [None, None]
    two, eight = (peak_above_base(f, command, *([o] if o else [])) for f, o in zip(stripes, out))
    whole = peak_above_base(stripes[1], "load")
    print(f"{command}: peak RSS above base, 2 shards {two} KiB, 8 shards {eight} KiB; all 8 loaded: {whole} KiB")
    assert whole > 3 * two  # the measure sees the data: holding everything grows with it
    assert eight <= 1.3 * two + 1024, (two, eight)


# ----------------------------------------------------------------------------- idmaps


def test_idmaps_of_a_sharded_dataset_are_the_one_file_s(whole, sharded, tmp_path):
    """Shard by shard, the same files byte for byte (names kept apart across shards: two images
    of one file stem in different shards get different PNGs, as in one file)."""
    ds = EntityDataset.load(whole)
    ds.images[9]["file_name"] = str(Path(ds.images[0]["file_name"]).with_suffix(".png"))  # same stem, shard 0 vs 2
    one = tmp_path / "one.json"
    ds.save(one)
    folder = write_sharded(ds, tmp_path / "sh2", SIZES)
    for src, out in ((one, tmp_path / "a"), (folder, tmp_path / "b")):
        r = runner.invoke(app, ["idmaps", str(src), "-o", str(out), "-q"])
        assert r.exit_code == 0, r.output
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert len([f for f in files if f.parent == Path(".") and f.suffix == ".png"]) == 11
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


# ----------------------------------------------------------------------------- eval: sharded ground truth


def test_eval_scores_a_sharded_ground_truth_as_the_one_file(whole, sharded, tmp_path):
    from entitykit.evaluation import evaluate

    ds = EntityDataset.load(whole)
    rng = np.random.default_rng(0)
    res = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": float(rng.random())}
           for a in ds.annotations if not a.get("iscrowd") and rng.random() < 0.7]  # some missed: APe < 1
    (tmp_path / "res.json").write_text(json.dumps(res))
    one = evaluate(whole, tmp_path / "res.json")
    assert 0 < one.stats[0] < 1
    for gt in (sharded, sharded / "manifest.json"):
        r = evaluate(gt, tmp_path / "res.json")
        assert np.array_equal(r.stats, one.stats) and np.array_equal(r.precision, one.precision)
    cli = runner.invoke(app, ["eval", str(sharded), str(tmp_path / "res.json"), "--json", "-", "-q"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["stats"] == [float(x) for x in one.stats]
