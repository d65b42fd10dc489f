"""Findings of a new-user trial of the converters (sharded and one-file): each test fails on the
code before its fix.

1. a missing image folder or image file stops the run (``--keep-going`` records it);
2. an output inside the SAM input folder is refused up front;
3. ``--resume`` redoes shards whose record lists problems;
4. settings of a run that finished no shard bind nothing;
5. ``check`` on a folder with parts of two splits names the stale part files;
6. EntitySeg's overlap error lists only the rules EntitySeg accepts;
8. Python API edge cases, SIGTERM (then --resume), the 100,000-masks error, options ignored with shards, Dask.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _shards_helpers import entitykit, touch_images
from entitykit.convert import (
    convert_cityscapes,
    convert_cityscapes_sharded,
    convert_coco_panoptic,
    convert_coco_panoptic_sharded,
    convert_entityseg,
    convert_entityseg_sharded,
    convert_sam,
    convert_sam_sharded,
    merge_parts,
)
from entitykit.errors import DatasetError, EntityKitError
from entitykit.shards import MANIFEST, PROGRESS_DIR, folder_problem, read_manifest
from test_convert_sources import _entityseg
from test_shards_convert import write_sam_inputs
from test_shards_converters import N_IMAGES, _cityscapes_n, _coco


def _coco_images(root: Path) -> Path:
    """The COCO-panoptic fixture's images (img_0.jpg …) in ``root/images``."""
    return touch_images(root / "images", [f"img_{i}.jpg" for i in range(N_IMAGES)], (12, 16))


# ------------------------------------------------------------------ 1. missing image folder / file
@pytest.mark.parametrize("sharded", [False, True])
def test_image_folder_that_is_not_a_folder_is_refused_up_front(tmp_path, sharded):
    pan = _coco(tmp_path / "c")
    (tmp_path / "afile.txt").write_text("x")
    for images, why in ((tmp_path / "nodir", "image folder not found"), (tmp_path / "afile.txt", "not a folder")):
        with pytest.raises(EntityKitError, match=why):
            if sharded:
                convert_coco_panoptic_sharded(pan, tmp_path / "out", image_root=images, shard_images=3)
            else:
                convert_coco_panoptic(pan, image_root=images)
        assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("sharded", [False, True])
def test_missing_image_file_stops_the_run_unless_keep_going(tmp_path, sharded):
    pan = _coco(tmp_path / "c")
    images = _coco_images(tmp_path)
    (images / "img_4.jpg").unlink()

    def run(out, **kw):
        if sharded:
            r = convert_coco_panoptic_sharded(pan, out, image_root=images, shard_images=3, **kw)
            return r.images, [p.problem for p in r.first_problems]
        ds = convert_coco_panoptic(pan, image_root=images, **kw)
        return len(ds.images), [p["problem"] for p in ds.info["conversion"]["problems"]]

    with pytest.raises(DatasetError, match=r"img_4\.jpg: image 5: image file not found"):
        run(tmp_path / "strict")
    n, problems = run(tmp_path / "kept", keep_going=True)
    assert n == N_IMAGES - 1 and problems == ["image file not found"]


@pytest.mark.parametrize("sharded", [False, True])
def test_cityscapes_missing_left_image_stops_the_run(tmp_path, sharded):
    root = _cityscapes_n(tmp_path / "cs")
    gone = next((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    gone.unlink()
    with pytest.raises(DatasetError, match="image file not found"):
        if sharded:
            convert_cityscapes_sharded(root, tmp_path / "out", shard_images=3)
        else:
            convert_cityscapes(root)
    ds = convert_cityscapes(root, keep_going=True)
    assert len(ds.images) == N_IMAGES - 1


def test_entityseg_and_sam_check_their_images_too(tmp_path):
    es = _entityseg(tmp_path)
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DatasetError, match=r"sub/x\.jpg: image 7: image file not found"):
        convert_entityseg(es, image_root=tmp_path / "imgs")
    touch_images(tmp_path / "imgs", ["sub/x.jpg"], (6, 8))
    assert len(convert_entityseg(es, image_root=tmp_path / "imgs").images) == 1
    sam = write_sam_inputs(tmp_path / "sam", 2)
    with pytest.raises(DatasetError, match="image file not found"):
        convert_sam_sharded(sam, tmp_path / "out", rule="score", shard_images=1, image_root=tmp_path / "imgs")


def test_cli_images_not_a_folder_one_line_exit_1(tmp_path):
    (tmp_path / "afile.txt").write_text("x")
    sam = write_sam_inputs(tmp_path / "sam", 2)
    for extra in ([], ["--shard-images", "7"]):
        r = entitykit("convert", "sam", sam, "--rule", "score", "-o", tmp_path / "o", "--images",
                      tmp_path / "afile.txt", "-q", *extra)
        assert r.returncode == 1 and "not a folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 2. output inside the SAM input folder
def test_output_inside_sam_input_folder_refused(tmp_path):
    sam = write_sam_inputs(tmp_path / "json", 2)
    r = entitykit("convert", "sam", sam, "--rule", "score", "-o", sam / "out.json", "-q")
    assert r.returncode == 1 and "inside the SAM input folder" in r.stderr, r.stderr
    assert not (sam / "out.json").exists()
    with pytest.raises(EntityKitError, match="inside the SAM input folder"):
        convert_sam_sharded(sam, sam / "shards", rule="score", shard_images=1)
    assert not (sam / "shards").exists()
    r = entitykit("convert", "sam", sam, "--rule", "score", "-o", tmp_path / "fine.json", "-q")  # outside: fine
    assert r.returncode == 0, r.stderr
    assert len(convert_sam(sam, rule="score").images) == 2  # the folder still lists only its inputs


# ------------------------------------------------------------------ 3. resume redoes shards with problems
def test_resume_redoes_shards_whose_record_lists_problems(tmp_path):
    pan = _coco(tmp_path / "c")
    png = tmp_path / "c" / "panoptic" / "img_4.png"
    png.rename(tmp_path / "away.png")
    out = tmp_path / "out"
    run = convert_coco_panoptic_sharded(pan, out, shard_images=3, keep_going=True)
    assert run.images == N_IMAGES - 1 and run.problems == 1
    (tmp_path / "away.png").rename(png)  # fixed
    run = convert_coco_panoptic_sharded(pan, out, shard_images=3, resume=True)
    assert run.images == N_IMAGES and run.problems == 0 and (run.converted, run.skipped) == (1, 2)
    assert read_manifest(out).images == N_IMAGES


# ------------------------------------------------------------------ 4. a failed first run binds nothing
def test_failed_first_run_does_not_bind_its_settings(tmp_path):
    pan = _coco(tmp_path / "c")
    out = tmp_path / "out"
    with pytest.raises(EntityKitError):
        convert_coco_panoptic_sharded(pan, out, tmp_path / "wrong_pngs", shard_images=3)  # every PNG missing
    assert not any((out / PROGRESS_DIR).glob("shard-*.json"))
    run = convert_coco_panoptic_sharded(pan, out, shard_images=3)  # the corrected command
    assert run.images == N_IMAGES and read_manifest(out).settings["png_dir"].endswith("/c/panoptic")
    with pytest.raises(EntityKitError, match="other settings"):  # once a shard is finished, settings bind
        convert_coco_panoptic_sharded(pan, out, shard_images=3, crowd="keep", resume=True)


def test_entityseg_overlap_error_then_other_rule_starts_over(tmp_path):
    es = _entityseg(tmp_path, overlap=True)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="overlap"):
        convert_entityseg_sharded(es, out, shard_images=1)
    run = convert_entityseg_sharded(es, out, shard_images=1, overlap="small-wins")
    assert run.images == 1


# ------------------------------------------------------------------ 5. stale part of another split
def test_folder_problem_names_mixed_splits_and_stale_part(tmp_path):
    sam = write_sam_inputs(tmp_path / "in", 6)
    out = tmp_path / "NN"
    convert_sam_sharded(sam, out, rule="score", shard_images=1, part="1/3")
    convert_sam_sharded(sam, out, rule="score", shard_images=1, part="1/2", resume=True)
    convert_sam_sharded(sam, out, rule="score", shard_images=1, part="2/2", resume=True)
    text = folder_problem(out)
    assert "N=2" in text and "N=3" in text and "remove the stale part-1-of-3.json" in text, text
    (out / "part-1-of-3.json").unlink()  # as told
    merge_parts([out], out)
    assert (out / MANIFEST).is_file()


def test_folder_problem_mixed_splits_none_complete(tmp_path):
    for name in ("part-1-of-3.json", "part-1-of-2.json"):
        (tmp_path / name).write_text("{}")
    text = folder_problem(tmp_path)
    assert "different splits" in text and "part-1-of-3.json" in text and "part-1-of-2.json" in text, text


# ------------------------------------------------------------------ 6. EntitySeg's overlap message
def test_entityseg_overlap_message_lists_only_its_rules(tmp_path):
    with pytest.raises(DatasetError, match="overlap") as e:
        convert_entityseg(_entityseg(tmp_path, overlap=True))
    assert "(small-wins, large-wins)" in str(e.value) and "score" not in str(e.value), e.value


# ------------------------------------------------------------------ 8. API edge cases, …
@pytest.mark.parametrize("kw, words", [
    (dict(part=(1.0, 2)), "part must be"), (dict(part=5), "part must be"), (dict(output=None), "output must be"),
    (dict(workers=-3), "workers must be"), (dict(shard_images=0), "shard_images must be"),
])
def test_sharded_api_refuses_bad_arguments_with_one_line(tmp_path, kw, words):
    sam = write_sam_inputs(tmp_path / "in", 2)
    args = {"output": tmp_path / "o", "rule": "score", "shard_images": 1, **kw}
    with pytest.raises(EntityKitError, match=words) as e:
        convert_sam_sharded(sam, args.pop("output"), **args)
    assert "--" not in str(e.value)  # the library names its parameters, not CLI flags


def test_merge_parts_takes_one_path_as_one_path(tmp_path):
    with pytest.raises(EntityKitError) as e:
        merge_parts(str(tmp_path / "nodes"), tmp_path / "m")
    assert "nodes" in str(e.value) and "'n'" not in str(e.value)


def test_too_many_masks_names_the_input_file(tmp_path, monkeypatch):
    import entitykit.convert._common as common  # noqa: PLC0415

    monkeypatch.setattr(common, "ANN_ID_STRIDE", 3)  # the limit (100,000) made small: 7 masks > 2
    sam = write_sam_inputs(tmp_path / "many", 1)
    with pytest.raises(DatasetError, match="a sharded conversion numbers at most") as e:
        convert_sam_sharded(sam, tmp_path / "o", rule="score", shard_images=1)
    assert e.value.path == str(sam / "sa_000.json"), e.value


@pytest.mark.parametrize("flag", [["--no-previews"], ["--id-map-format", "rgb"]])
def test_id_map_options_refused_with_shards(tmp_path, flag):
    sam = write_sam_inputs(tmp_path / "in", 1)
    r = entitykit("convert", "sam", sam, "--rule", "score", "-o", tmp_path / "o", "--shard-images", "1", "-q", *flag)
    assert r.returncode == 1 and flag[0] in r.stderr and "entitykit idmaps" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_dask_options_checked_before_any_task(tmp_path):
    from entitykit.convert import convert_on_dask  # noqa: PLC0415

    class Client:  # submits nothing: a task submitted is a test failure
        def submit(self, *a, **k):
            raise AssertionError("a task was submitted")

    sam = write_sam_inputs(tmp_path / "in", 1)
    for options, words in ((dict(rule="bigger"), "unknown overlap rule 'bigger'"), (dict(), "rule"),
                           (dict(rule="score", colour=1), "colour"), (dict(rule="score", workers=0), "workers")):
        with pytest.raises(EntityKitError, match=words):
            convert_on_dask(Client(), convert_sam_sharded, sam, tmp_path / "o", 2, **options)
    es = _entityseg(tmp_path)
    with pytest.raises(EntityKitError, match="not available for EntitySeg"):
        convert_on_dask(Client(), convert_entityseg_sharded, es, tmp_path / "o", 2, overlap="score")


def test_sigterm_during_sharded_conversion_ends_it_and_resume_finishes(tmp_path):
    """SIGTERM to the whole process group (as Slurm preempts a job) ends the run at once (the
    default action: no handler, so no worker pool can be left waiting on a lock), and ``--resume``
    then finishes it to the bytes of an uninterrupted run."""
    import os  # noqa: PLC0415
    import time  # noqa: PLC0415

    inputs = write_sam_inputs(tmp_path / "in", 400, masks=20)
    out = tmp_path / "o"
    argv = [sys.executable, "-m", "entitykit", "convert", "sam", str(inputs), "--rule", "score", "-o", str(out), "-j",
            "2", "-q", "--shard-images", "8"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None and not list(out.glob("shard-*.json")):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGTERM)
    p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the conversion finished before SIGTERM (machine too fast)")
    assert p.returncode == -signal.SIGTERM
    assert not (out / "manifest.json").exists()
    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    whole = subprocess.run([*argv[:-6], str(tmp_path / "whole"), *argv[-5:]], capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert (out / "manifest.json").read_bytes() == (tmp_path / "whole" / "manifest.json").read_bytes()
