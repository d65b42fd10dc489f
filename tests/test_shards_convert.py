"""Sharded conversion (issue 14): streaming SAM → shards, resume after a kill, --shard K/N + merge,
and the manifest's validation (entitykit.shards).

References: the unsharded converter (``convert_sam``, tested against hand-made masks in
test_convert_sources.py) for every image's entities; hand-computed ids (image = input position + 1,
annotation = position × 100,000 + k); byte comparison between runs for determinism.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from _shards_helpers import dataset_files, entitykit, kill_when_blocked, touch_images
from entitykit.convert import convert_sam, convert_sam_sharded, merge_parts
from entitykit.dataset import EntityDataset
from entitykit.errors import DatasetError, EntityKitError
from entitykit.shards import MANIFEST, is_sharded, iter_shard_datasets, read_manifest, write_manifest

H, W = 40, 56


def write_sam_inputs(folder: Path, n: int, *, masks: int = 7, seed: int = 0) -> Path:
    """``n`` SA-1B-style image JSONs of overlapping rectangles (a fixed seed: the same bytes every run)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        anns = []
        for k in range(masks):
            m = np.zeros((H, W), np.uint8, order="F")
            y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
            m[y:y + rng.integers(3, H // 2), x:x + rng.integers(3, W // 2)] = 1
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": 900 + 10 * i + k, "segmentation": rle, "area": int(m.sum()),
                         "predicted_iou": round(float(rng.random()), 4), "stability_score": 0.9})
        data = {"image": {"image_id": 7000 + i, "file_name": f"sa_{7000 + i}.jpg", "height": H, "width": W},
                "annotations": anns}
        (folder / f"sa_{i:03d}.json").write_text(json.dumps(data))
    return folder


@pytest.fixture(scope="module")
def sam_in(tmp_path_factory) -> Path:
    return write_sam_inputs(tmp_path_factory.mktemp("sam") / "in", 11)


@pytest.fixture(scope="module")
def whole(sam_in, tmp_path_factory) -> Path:
    """The unsplit, one-worker run every other run must equal byte for byte."""
    out = tmp_path_factory.mktemp("whole") / "out"
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3)
    return out


# ------------------------------------------------------------------------------- content and ids
def test_shards_hold_what_the_unsharded_converter_makes_with_positional_ids(sam_in, whole):
    ref = convert_sam(sam_in, rule="score")
    m = read_manifest(whole)
    assert [s.file for s in m.shards] == [f"shard-0000{i}.json" for i in range(4)]
    assert [s.images for s in m.shards] == [3, 3, 3, 2] and m.images == 11  # boundaries: 3 input files each
    got_images, got_anns = [], []
    for ds in iter_shard_datasets(whole, validate="full"):
        got_images += ds.images
        got_anns += ds.annotations
    assert m.entities == len(got_anns) == len(ref.annotations)
    ref_groups = ref.annotations_by_image()
    got_groups: dict[int, list] = {}
    for a in got_anns:
        got_groups.setdefault(a["image_id"], []).append(a)
    for pos, (img, ref_img) in enumerate(zip(got_images, ref.images)):
        assert img["id"] == pos + 1 and img["source_id"] == 7000 + pos == ref_img["id"]
        assert img["file_name"] == ref_img["file_name"]
        anns, want = got_groups[img["id"]], ref_groups[ref_img["id"]]
        assert [a["id"] for a in anns] == [pos * 100_000 + k for k in range(1, len(want) + 1)]
        strip = lambda a: {k: v for k, v in a.items() if k not in ("id", "image_id")}  # noqa: E731
        assert [strip(a) for a in anns] == [strip(a) for a in want]
    ranges = [s.annotation_ids for s in m.shards]
    assert ranges[0][0] == 1 and ranges[1][0] == 300_001  # shard 1 starts at input position 3


def test_manifest_counts_and_digests_are_the_files(whole):
    import hashlib

    m = read_manifest(whole)
    for s in m.shards:
        data = (whole / s.file).read_bytes()
        assert s.bytes == len(data) and s.sha256 == hashlib.sha256(data).hexdigest()
        ds = json.loads(data)
        assert s.images == len(ds["images"]) and s.entities == sum(1 for a in ds["annotations"] if not a["iscrowd"])
    assert is_sharded(whole) and is_sharded(whole / MANIFEST) and not is_sharded(whole / "shard-00000.json")


# ------------------------------------------------------------------------------- K/N and workers
def test_three_parts_merged_equal_one_run_byte_for_byte(sam_in, whole, tmp_path):
    out = tmp_path / "out"
    elsewhere = tmp_path / "machine3"
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3, part="1/3")
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3, part="2/3", workers=2)
    convert_sam_sharded(sam_in, elsewhere, rule="score", shard_images=3, part="3/3")  # no shared disk
    assert not (out / MANIFEST).exists()
    r = entitykit("shards", "merge", out / "part-1-of-3.json", out / "part-2-of-3.json", elsewhere, "-o", out)
    assert r.returncode == 0, r.stderr
    assert dataset_files(out) == dataset_files(whole)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("shard-")) == \
        sorted(p.name for p in whole.iterdir() if p.name.startswith("shard-"))


def test_workers_do_not_change_the_bytes(sam_in, whole, tmp_path):
    convert_sam_sharded(sam_in, tmp_path / "j2", rule="score", shard_images=3, workers=2)
    assert dataset_files(tmp_path / "j2") == dataset_files(whole)


def test_merge_refuses_missing_or_mismatched_parts(sam_in, tmp_path):
    out = tmp_path / "out"
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3, part="1/3")
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3, part="3/3")
    with pytest.raises(EntityKitError, match="parts 2/3 missing"):
        merge_parts([out], out)
    other = tmp_path / "other"
    convert_sam_sharded(sam_in, other, rule="small-wins", shard_images=3, part="2/3")
    with pytest.raises(DatasetError, match="other settings.*overlap_rule"):
        merge_parts([out, other], out)
    assert not (out / MANIFEST).exists()
    r = entitykit("shards", "merge", out, "-o", out)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "parts 2/3 missing" in r.stderr


# ------------------------------------------------------------------------------- kill and resume
def test_killed_run_resumes_to_the_same_bytes(sam_in, tmp_path):
    """SIGKILL a CLI run while shard 2 is half converted (its second input is a FIFO nobody writes:
    the run blocks there, deterministically), damage a finished shard, leave a torn temporary, then
    --resume: finished shards are kept (same inode), the damaged and unfinished ones redone."""
    inputs = tmp_path / "in"
    shutil.copytree(sam_in, inputs)
    blocker = inputs / "sa_007.json"  # position 7: shard 2 holds positions 6, 7, 8
    real = blocker.read_bytes()
    blocker.unlink()
    os.mkfifo(blocker)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "entitykit", "convert", "sam", str(inputs), "--rule", "score", "-o", str(out),
            "--shard-images", "3", "-j", "1", "-q"]
    pid = kill_when_blocked(argv, out, "shard-00001.json")  # killed while blocked inside shard 2
    assert not (out / MANIFEST).exists() and not (out / "shard-00002.json").exists()
    blocker.unlink()
    blocker.write_bytes(real)
    # the run fingerprinted the inputs (names, sizes) while sa_007.json was a 0-byte FIFO: record the real file's
    from entitykit.convert._sharded import listing_digest
    settings = json.loads((out / ".progress" / "settings.json").read_text())
    settings["input_listing_sha256"] = listing_digest(sorted(inputs.glob("*.json")))
    (out / ".progress" / "settings.json").write_text(json.dumps(settings))

    kept = (out / "shard-00000.json").stat().st_ino
    with open(out / "shard-00001.json", "ab") as f:  # damaged after its record was written
        f.write(b" ")
    torn = out / f".shard-00002.json.{pid}.x.tmp"  # what atomic_path leaves when killed mid-write
    torn.mkdir()
    (torn / "out").write_text('{"images": [')

    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # without --resume: refused
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "partly finished" in r.stderr and "--resume" in r.stderr

    r = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    clean = tmp_path / "clean"  # the same inputs (their path is recorded) converted in one go
    convert_sam_sharded(inputs, clean, rule="score", shard_images=3)
    assert dataset_files(out) == dataset_files(clean)
    assert (out / "shard-00000.json").stat().st_ino == kept  # skipped, not rewritten
    assert not torn.exists() and not list(out.glob(".*.tmp"))

    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "holds a finished conversion" in r.stderr


def test_resume_refuses_other_settings_and_foreign_folders(sam_in, whole, tmp_path):
    with pytest.raises(EntityKitError, match=r"other settings \(shard_images: 3 there, 4 now\)"):
        convert_sam_sharded(sam_in, whole, rule="score", shard_images=4, resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(EntityKitError, match="holds no sharded conversion"):
        convert_sam_sharded(sam_in, foreign, rule="score", shard_images=3, resume=True)
    r = entitykit("convert", "sam", sam_in, "--rule", "score", "-o", tmp_path / "x", "--shard", "1/2")
    assert r.returncode == 1 and "--shard needs --shard-images" in r.stderr


def test_keep_going_records_a_bad_input_in_its_shard(sam_in, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(sam_in, inputs)
    (inputs / "sa_004.json").write_text("{not json")
    with pytest.raises(EntityKitError, match="sa_004.json: not valid JSON"):
        convert_sam_sharded(inputs, tmp_path / "strict", rule="score", shard_images=3)
    assert (tmp_path / "strict" / "shard-00000.json").exists()  # finished before the bad input: kept
    run = convert_sam_sharded(inputs, tmp_path / "out", rule="score", shard_images=3, keep_going=True)
    assert run.images == 10 and run.problems == 1
    m = read_manifest(tmp_path / "out")
    assert m.shards[1].images == 2 and m.shards[1].extra["problems"] == 1
    assert m.shards[1].image_ids == [4, 6]  # position 4 (id 5) is missing; the others keep their ids


# ------------------------------------------------------------------------------- manifest validation
def _mutated(whole: Path, tmp_path: Path, mutate) -> Path:
    folder = tmp_path / "ds"
    shutil.copytree(whole, folder)
    data = json.loads((folder / MANIFEST).read_text())
    mutate(data, folder)
    (folder / MANIFEST).write_text(json.dumps(data))
    return folder


BAD_MANIFESTS = [
    ("format", lambda d, f: d.update(format="entitykit-entities"), "format: format is 'entitykit-entities'"),
    ("version", lambda d, f: d.update(version=2), "version: version 2 is not supported"),
    ("missing", lambda d, f: (f / "shard-00002.json").unlink(), "shards[2] (shard-00002.json): shard file is missing"),
    ("escape", lambda d, f: d["shards"][0].update(file="../out/shard-00000.json"), "shards[0]: '../out/shard-00000.json' escapes"),
    ("absolute", lambda d, f: d["shards"][0].update(file=str(f / "shard-00000.json")), "is absolute"),
    ("count", lambda d, f: d.update(images=12), "images: says 12 images but its shards hold 11"),
    ("bytes", lambda d, f: d["shards"][1].update(bytes=5), "shards[1] (shard-00001.json): shard file has"),
    ("twice", lambda d, f: d["shards"][1].update(file="SHARD-00000.json"), "lists the file 'SHARD-00000.json' again"),
    ("ids", lambda d, f: d["shards"][1].update(annotation_ids=[5, 300_008]), "annotation_ids ranges of shard-00000.json"),
    ("kind", lambda d, f: d["shards"][0].update(kind="parquet"), "unknown kind 'parquet'"),
    ("sha", lambda d, f: d["shards"][0].update(sha256="zz"), "sha256 must be 64 lowercase hex digits"),
]


@pytest.mark.parametrize("name,mutate,words", BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_bad_manifest_is_one_line_naming_file_item_problem(whole, tmp_path, name, mutate, words):
    folder = _mutated(whole, tmp_path, mutate)
    with pytest.raises(DatasetError) as e:
        read_manifest(folder)
    text = str(e.value)
    assert text.startswith(str(folder / MANIFEST) + ": ") and words in text and "\n" not in text


def test_changed_shard_is_caught_when_opened(whole, tmp_path):
    folder = tmp_path / "ds"
    shutil.copytree(whole, folder)
    p = folder / "shard-00001.json"
    data = p.read_bytes().replace(b'"predicted_iou":0.', b'"predicted_iou":1.', 1)  # same size, other bytes
    p.write_bytes(data)
    read_manifest(folder)  # sizes agree: only the digest tells
    with pytest.raises(DatasetError, match="shard shard-00001.json: shard file's SHA-256 differs"):
        list(iter_shard_datasets(folder))


def test_write_manifest_validates_and_refuses_a_bad_one(whole, tmp_path):
    folder = tmp_path / "ds"
    shutil.copytree(whole, folder)
    before = (folder / MANIFEST).read_bytes()
    m = read_manifest(folder)
    m.images += 1
    with pytest.raises(DatasetError, match="says 12 images"):
        write_manifest(folder, m)
    assert (folder / MANIFEST).read_bytes() == before
    m.images -= 1
    write_manifest(folder, m)
    assert (folder / MANIFEST).read_bytes() == before  # the same manifest, the same bytes


def test_image_folder_recorded_so_that_shards_find_it(sam_in, tmp_path, monkeypatch):
    images = touch_images(tmp_path / "images", [f"sa_{7000 + i}.jpg" for i in range(11)], (H, W))
    monkeypatch.chdir(tmp_path)
    convert_sam_sharded(sam_in, "rel/out", rule="score", shard_images=4, image_root="images", part="1/2")
    convert_sam_sharded(sam_in, "rel/out", rule="score", shard_images=4, image_root="images", part="2/2")
    merge_parts(["rel/out"], "rel/out")
    ds = next(iter_shard_datasets("rel/out"))
    assert ds.info["image_root"] == "../../images" and ds.image_root.resolve() == images.resolve()
    # parts in another folder: a relative image folder would point elsewhere there → refused
    convert_sam_sharded(sam_in, "a/b/p", rule="score", shard_images=4, image_root="images", part="1/1")
    with pytest.raises(DatasetError, match="relative to their folder"):
        merge_parts(["a/b/p"], "c")
    assert not Path("c").exists()  # refused before anything was written
    convert_sam_sharded(sam_in, "a/b/q", rule="score", shard_images=4, image_root=images, part="1/1")
    merge_parts(["a/b/q"], "c")
    ds = next(iter_shard_datasets("c"))
    assert ds.info["image_root"] == images.as_posix()


def test_file_names_unique_across_shards(whole, tmp_path):
    from entitykit.shards import entry_for_file, shard_counts

    folder = tmp_path / "ds"
    shutil.copytree(whole, folder)
    p = folder / "shard-00002.json"
    data = json.loads(p.read_text())
    data["images"][1]["file_name"] = "SA_7001.jpg"  # shard 0's second image, in other case
    p.write_text(json.dumps(data))
    m = read_manifest(folder, check_files=False)
    m.shards[2] = entry_for_file(folder, "shard-00002.json", shard_counts(EntityDataset.open(p)),
                                 **m.shards[2].extra)
    write_manifest(folder, m)
    with pytest.raises(DatasetError, match=r"shard shard-00002.json: image 8: file_name 'SA_7001.jpg' also used in an "
                                           "earlier shard"):
        list(iter_shard_datasets(folder))


# ----------------------------------------------------------------- review fixes (H11)
def _rename_image(path: Path, file_name: str) -> None:
    data = json.loads(path.read_text())
    data["image"]["file_name"] = file_name
    path.write_text(json.dumps(data))


def test_same_file_name_twice_refused_by_checks_rule(sam_in, tmp_path):
    """Two inputs naming the same image file (differing in case only: check's rule compares
    case-insensitively) are refused in single-file, sharded and K/N + merge modes, naming both inputs."""
    inputs = tmp_path / "in"
    shutil.copytree(sam_in, inputs)
    _rename_image(inputs / "sa_001.json", "SA_7008.JPG")  # sa_008.json holds sa_7008.jpg
    for convert in (lambda: convert_sam(inputs, rule="score"),
                    lambda: convert_sam_sharded(inputs, tmp_path / "sh", rule="score", shard_images=3)):
        with pytest.raises(DatasetError) as e:
            convert()
        text = str(e.value)
        assert "sa_008.json" in text and "sa_001.json" in text and "'sa_7008.jpg'" in text, text
    ds = convert_sam(inputs, rule="score", keep_going=True)  # the second one skipped, with its problem
    assert [i["file_name"] for i in ds.images].count("SA_7008.JPG") == 1
    assert "sa_7008.jpg" not in [i["file_name"] for i in ds.images]
    # each part alone is fine (the names are in different parts); the merge sees both
    for k in (1, 2):
        convert_sam_sharded(inputs, tmp_path / f"p{k}", rule="score", shard_images=3, part=(k, 2))
    with pytest.raises(DatasetError, match="is also image 2's") as e:
        merge_parts([tmp_path / "p1", tmp_path / "p2"], tmp_path / "joined")
    assert "p2" in str(e.value) and "shard-00002.json (input #9)" in str(e.value) and "shard-00000.json (input #2)" in str(e.value), str(e.value)
    assert not (tmp_path / "joined").exists()


def test_resume_compares_resolved_inputs_and_their_sizes(sam_in, tmp_path, monkeypatch):
    """The same folder spelled relative then absolute resumes; another folder with the same relative
    spelling and file names, or the same names with other sizes, is refused."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(sam_in, a / "in")
    shutil.copytree(sam_in, b / "in")
    first = b / "in" / "sa_000.json"
    data = json.loads(first.read_text())
    data["annotations"] = data["annotations"][:2]
    first.write_text(json.dumps(data))
    out = tmp_path / "out"
    monkeypatch.chdir(a)
    convert_sam_sharded("in", out, rule="score", shard_images=3, part=(1, 2))
    convert_sam_sharded(a / "in", out, rule="score", shard_images=3, part=(1, 2), resume=True)
    monkeypatch.chdir(b)
    with pytest.raises(EntityKitError, match="other settings .inputs: "):
        convert_sam_sharded("in", out, rule="score", shard_images=3, part=(1, 2), resume=True)
    shutil.rmtree(a / "in")
    shutil.copytree(b / "in", a / "in")  # same path, same names, one size differs
    monkeypatch.chdir(a)
    with pytest.raises(EntityKitError, match="other input files"):
        convert_sam_sharded("in", out, rule="score", shard_images=3, part=(1, 2), resume=True)


_SLOW_POOL = """
import sys, time
from entitykit.convert._common import run_ordered

def slow(x):
    time.sleep(0.1)
    return x

if __name__ == "__main__":
    try:
        for r in run_ordered(slow, list(range(400)), 2):
            if r == 3:
                print("working", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
"""


def _interrupt(argv: list[str], started, tmp_path: Path) -> tuple[int, str]:
    """Run ``argv`` in its own process group, SIGINT the whole group (as a terminal's Ctrl-C does)
    once ``started(process)`` says its pool is working; (exit status, stderr)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None and not started(p):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    return p.returncode, err


def test_ctrl_c_with_workers_one_line(tmp_path):
    """Ctrl-C during 2-worker conversions: one line, exit 130, no worker traceback — the pool that
    every converter's single-file mode uses (run_ordered), and a sharded conversion's CLI."""
    script = tmp_path / "slow_pool.py"
    script.write_text(_SLOW_POOL)
    rc, err = _interrupt([sys.executable, str(script)], lambda p: p.stdout.readline().strip() == "working", tmp_path)
    assert rc == 130 and err.strip() == "interrupted", err
    inputs = write_sam_inputs(tmp_path / "in", 400, masks=20)
    out = tmp_path / "o"
    rc, err = _interrupt([sys.executable, "-m", "entitykit", "convert", "sam", str(inputs), "--rule", "score",
                          "-o", str(out), "-j", "2", "-q", "--shard-images", "8"],
                         lambda p: bool(list(out.glob("shard-*.json"))), tmp_path)
    if rc == 0:
        pytest.skip("the conversion finished before the interrupt (machine too fast)")
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "ForkPoolWorker" not in err, err
    assert err.strip().count("\n") == 0 and "interrupted" in err, err


def test_unfinished_or_unmerged_folder_says_what_to_run(sam_in, tmp_path):
    """A conversion folder without manifest.json: readers name the unfinished shards or the
    parts present and the command to run (not "is a folder, not a file")."""
    for k in (1, 3):
        convert_sam_sharded(sam_in, tmp_path / "parts", rule="score", shard_images=3, part=(k, 3))
    with pytest.raises(DatasetError, match=r"parts 1, 3 of 3 here, not merged .*entitykit shards merge"):
        EntityDataset.open(tmp_path / "parts")
    convert_sam_sharded(sam_in, tmp_path / "parts", rule="score", shard_images=3, part=(2, 3))
    with pytest.raises(DatasetError, match=r"all 3 parts .* run entitykit shards merge"):
        EntityDataset.open(tmp_path / "parts")
    out = tmp_path / "run"  # 11 inputs / 3 = 4 shards; the last one's record and the manifest gone
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3)
    (out / MANIFEST).unlink()
    (out / ".progress" / "shard-00003.json").unlink()
    r = entitykit("check", out)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "unfinished conversion (3 of 4 shards" in r.stderr and "--resume" in r.stderr, r.stderr
    assert "entitykit convert sam " + sam_in.resolve().as_posix() in r.stderr, r.stderr
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="folder without manifest.json"):
        EntityDataset.load(tmp_path / "plain")


def test_merge_errors_name_the_part_file(sam_in, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch_images(tmp_path / "imgs", [f"sa_{7000 + i}.jpg" for i in range(11)], (H, W))
    for k in (1, 2):
        convert_sam_sharded(sam_in, tmp_path / f"p{k}", rule="score", shard_images=3, part=(k, 2), image_root="imgs")
    p1 = tmp_path / "p1" / "part-1-of-2.json"
    with pytest.raises(DatasetError, match=r"part 1/2 given twice \(this file given twice\)") as e:
        merge_parts([tmp_path / "p1", tmp_path / "p1", tmp_path / "p2"], tmp_path / "j")
    assert str(e.value).startswith(str(p1)) and "manifest.json" not in str(e.value)
    with pytest.raises(DatasetError, match="settings.image_root") as e:
        merge_parts([tmp_path / "p1", tmp_path / "p2"], tmp_path / "deep" / "j")
    assert str(e.value).startswith(str(p1)) and "manifest.json" not in str(e.value)


def test_id_maps_with_shards_points_to_idmaps_on_the_folder(sam_in, tmp_path):
    r = entitykit("convert", "sam", sam_in, "--rule", "score", "-o", tmp_path / "o", "--shard-images", "4",
                  "--id-maps", tmp_path / "ids")
    assert r.returncode == 1 and "entitykit idmaps OUTPUT -o" in r.stderr and "per shard" not in r.stderr, r.stderr


def test_resume_removes_dead_runs_temporaries_of_kept_shards(sam_in, tmp_path):
    out = tmp_path / "out"
    convert_sam_sharded(sam_in, out, rule="score", shard_images=3, part=(1, 2))
    (out / "part-1-of-2.json").unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that is gone
    torn = [out / f".shard-00000.json.{pid}.x.tmp", out / ".progress" / f".shard-00001.json.{pid}.y.tmp"]
    for t in torn:
        t.mkdir()
        (t / "out").write_text("{")
    run = convert_sam_sharded(sam_in, out, rule="score", shard_images=3, part=(1, 2), resume=True)
    assert run.skipped == 2 and run.converted == 0
    assert not any(t.exists() for t in torn)


def test_part_without_shards_says_so(sam_in, tmp_path):
    r = entitykit("convert", "sam", sam_in, "--rule", "score", "-o", tmp_path / "o", "--shard-images", "3",
                  "--shard", "1/9")
    assert r.returncode == 0 and "part 1/9 has no shards to convert" in r.stderr and "--shard K/4" in r.stderr, r.stderr
