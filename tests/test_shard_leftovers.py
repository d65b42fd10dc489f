"""Leftovers of #14's new-user trial of the sharded data features, one section per finding:

1. an interrupted sharded merge removes its temporary folder; a killed one's is removed by the next
   run, even when its PID now names a live process (``fileio.atomic_path``'s ``.owner`` lock);
2. ``check`` of a sharded dataset with an unreadable shard never prints partial counts as totals;
3. a conversion with ``--keep-going`` that skipped every image fails and writes nothing (one file
   and ``--shard-images``);
4. an empty path (``--images ''``) is refused by every command, where the command line is read;
5. converters read each image file's header: a file that is not an image or not the size the
   source declares is a problem naming the file (no pixel decoded).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import entitykit.cli.data  # (registers convert/check)
import entitykit.cli.merge_pack  # noqa: F401  (registers merge)
from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.convert import convert_coco_panoptic, convert_coco_panoptic_sharded
from entitykit.convert._common import check_image_folder
from entitykit.errors import DatasetError, EntityKitError
from entitykit.fileio import OWNER_FILE
from entitykit.merge import merge_to_shards
from entitykit.shards import MANIFEST
from entitykit.synth import write_synthetic_panoptic

runner = CliRunner()
H, W = 24, 32  # the synthetic images' size


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entitykit", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def panoptic(tmp_path_factory):
    """A COCO panoptic source of 6 images (24×32 JPEGs in images/) and its one-file conversion."""
    root = tmp_path_factory.mktemp("pan")
    j = write_synthetic_panoptic(root / "src", 6, height=H, width=W, segments=4, seed=3)
    return j


def _copy_source(j: Path, tmp_path: Path) -> Path:
    shutil.copytree(j.parent, tmp_path / "src")
    return tmp_path / "src" / j.name


@pytest.fixture(scope="module")
def sharded(panoptic, tmp_path_factory):
    """The source converted to a sharded dataset of 3 shards of 2 images."""
    out = tmp_path_factory.mktemp("sh") / "ds"
    convert_coco_panoptic_sharded(panoptic, out, shard_images=2, image_root=panoptic.parent / "images")
    return out


# ------------------------------------------------------------------------ 1. merge's temporary folder
def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def test_an_interrupted_sharded_merge_leaves_no_temporary(sharded, tmp_path, monkeypatch):
    from entitykit import fileio

    real, calls = fileio.write_json, []

    def interrupted(path, obj, **kw):  # Ctrl-C while the second output shard is written
        calls.append(path)
        if len(calls) == 2:
            assert _temporaries(tmp_path) != []  # the run's temporary folder exists now
            raise KeyboardInterrupt
        return real(path, obj, **kw)

    monkeypatch.setattr(fileio, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        merge_to_shards([sharded], tmp_path / "out", shard_images=2, split="train")
    assert len(calls) == 2
    assert not (tmp_path / "out").exists() and _temporaries(tmp_path) == []


KILLED_MERGE = """
import sys, time
import entitykit.fileio as fileio
from entitykit.merge import merge_to_shards
real, ready = fileio.write_json, sys.argv[3]
def blocked(path, obj, **kw):  # the second output shard never gets written: the run waits here to be killed
    if path.name == "shard-00001.json":
        open(ready, "w").close()
        time.sleep(600)
    return real(path, obj, **kw)
fileio.write_json = blocked
merge_to_shards([sys.argv[1]], sys.argv[2], shard_images=2, split="train")
"""


def _killed_merge(sharded: Path, out: Path) -> Path:
    """Run a sharded merge into ``out`` in another process and SIGKILL it while it writes its second
    shard; returns the temporary folder it left (the wait is on the run's own marker file)."""
    ready = out.parent / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MERGE, str(sharded), str(out), str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the merge never reached its second shard"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    left = [out.parent / n for n in _temporaries(out.parent)]
    assert len(left) == 1 and f".{proc.pid}." in left[0].name
    assert not out.exists()
    return left[0]


@pytest.mark.parametrize("pid_now", ["this process", "another live process"])
def test_a_killed_merges_temporary_is_removed_by_the_next_run_whatever_its_pid_names(sharded, tmp_path, pid_now):
    # a killed run's PID can name a live process later (PID reuse; a container restarted with the same
    # PIDs, where the next run even has that very PID): the .owner lock, freed by the kill, tells
    left = _killed_merge(sharded, tmp_path / "out")
    pid = os.getpid() if pid_now == "this process" else os.getppid()
    stale = left.with_name(".out." + str(pid) + "." + left.name.split(".", 3)[3])
    left.rename(stale)
    res = merge_to_shards([sharded], tmp_path / "out", shard_images=2, split="train")
    assert res.manifest.images == 6
    assert _temporaries(tmp_path) == []  # the stale one is gone


def test_a_live_writers_temporary_is_kept(sharded, tmp_path):
    import fcntl

    # a temporary whose writer holds its .owner lock is kept, whatever its PID says (here: a dead one)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    busy = tmp_path / f".out.{int(dead.stdout)}.abcd1234.tmp"
    busy.mkdir()
    fd = os.open(busy / OWNER_FILE, os.O_WRONLY | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        merge_to_shards([sharded], tmp_path / "out", shard_images=2, split="train")
        assert busy.exists()
    finally:
        os.close(fd)
    merge_to_shards([sharded], tmp_path / "out", shard_images=3, overwrite=True, split="train")  # the lock freed: removed
    assert _temporaries(tmp_path) == []


# -------------------------------------------------------------------- 2. check: no partial counts as totals
def _damage(folder: Path, name: str) -> None:
    """Change bytes of a shard in place (same size: only its SHA-256 tells)."""
    data = bytearray((folder / name).read_bytes())
    data[20:30] = b"X" * 10
    (folder / name).write_bytes(bytes(data))


def test_check_with_an_unreadable_shard_says_the_counts_are_incomplete(sharded, tmp_path):
    folder = tmp_path / "ds"
    shutil.copytree(sharded, folder)
    _damage(folder, "shard-00001.json")
    report = check_dataset(folder)
    assert not report.ok and not report.counts_complete
    assert report.unread_shards == ["shard-00001.json"] and (report.shards, report.shards_counted) == (3, 2)
    d = report.as_dict()
    assert d["images"] is None and d["annotations"] is None and d["unread_shards"] == ["shard-00001.json"]

    r = runner.invoke(app, ["check", str(folder)])
    assert r.exit_code == 1
    status = [line for line in r.stdout.splitlines() if "problem(s)" in line]
    assert len(status) == 1 and "counts incomplete" in status[0] and "2 of 3 shards" in status[0]
    assert "shard-00001.json could not be read" in status[0], status
    j = json.loads(runner.invoke(app, ["check", str(folder), "--json"]).stdout)
    assert j["counts_complete"] is False and j["images"] is None

    whole = check_dataset(sharded)  # every shard read: the totals, as before
    assert whole.ok and whole.counts_complete and whole.images == 6 and whole.as_dict()["images"] == 6
    assert "6 images" in runner.invoke(app, ["check", str(sharded)]).stdout


def test_check_that_stopped_early_says_so(sharded, tmp_path):
    folder = tmp_path / "ds"
    shutil.copytree(sharded, folder)
    report = check_dataset(folder, image_root=tmp_path / "no-images", max_problems=1)  # stops in shard 0
    assert not report.counts_complete and report.unread_shards == [] and report.shards_counted == 1
    assert "not reached" in report.counts_text() and "1 of 3 shards" in report.counts_text()


# ------------------------------------------------------------- 3. every image skipped under --keep-going
def test_every_image_skipped_fails_and_writes_nothing_one_file(panoptic, tmp_path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"every image was skipped \(6 problems; first: .*image file not found"):
        convert_coco_panoptic(panoptic, image_root=empty, keep_going=True)
    out = tmp_path / "o.json"
    r = _run("convert", "coco-panoptic", panoptic, "--images", empty, "-o", out, "--keep-going", "-q")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(panoptic) in r.stderr and "every image was skipped" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and _temporaries(tmp_path) == []


def test_every_image_skipped_fails_and_writes_nothing_sharded(panoptic, tmp_path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"every image was skipped \(6 problems; first: "):
        convert_coco_panoptic_sharded(panoptic, out, shard_images=2, image_root=empty, keep_going=True)
    assert not out.exists()  # nothing left that looks finished (or binds a later run's settings)
    r = _run("convert", "coco-panoptic", panoptic, "--images", empty, "-o", out, "--keep-going", "--shard-images",
             "2", "-q")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(panoptic) in r.stderr and "every image was skipped" in r.stderr
    assert not out.exists()
    # the next run, with the right image folder, is not bound by the failed one
    run = convert_coco_panoptic_sharded(panoptic, out, shard_images=2, image_root=panoptic.parent / "images",
                                        keep_going=True)
    assert run.images == 6 and (out / MANIFEST).is_file()


def test_some_images_skipped_still_converts(panoptic, tmp_path):
    src = _copy_source(panoptic, tmp_path)
    (src.parent / "images" / "synth_000002.jpg").unlink()
    ds = convert_coco_panoptic(src, image_root=src.parent / "images", keep_going=True)
    assert len(ds.images) == 5 and ds.info["conversion"]["skipped_images"] == 1


# --------------------------------------------------------------------------- 4. an empty path is refused
def _is_path_param(p) -> bool:
    return type(getattr(p, "type", None)).__name__ in ("TyperPath", "Path") or bool(
        getattr(getattr(p, "type_descriptor", None), "is_path", False))


def _path_params() -> list[tuple[tuple[str, ...], object, object]]:
    from test_cli_conventions import _tree

    return [(path, cmd, p) for path, cmd in _tree().items() for p in getattr(cmd, "params", ()) if _is_path_param(p)]


PATH_PARAMS = _path_params()


def test_path_parameters_are_found():
    found = {(path, o) for path, _c, p in PATH_PARAMS for o in p.opts}
    assert {(("convert", "coco-panoptic"), "--images"), (("check",), "--images"), (("check",), "dataset"),
            (("merge",), "--output"), (("merge",), "inputs")} <= found


@pytest.mark.parametrize("path,cmd,param", PATH_PARAMS, ids=[f"{' '.join(p)} {q.opts[-1]}" for p, _c, q in PATH_PARAMS])
def test_every_path_parameter_refuses_an_empty_path(path, cmd, param, tmp_path):
    from test_cli_conventions import _placeholder

    argv = [*path]
    for p in cmd.params:  # in order (arguments are positional): '' for the one under test, required ones filled
        if p is param:
            value = [""]
        elif p.required:
            value = [str(tmp_path / "x")] if _is_path_param(p) else _placeholder(p)
        else:
            continue
        argv += ([p.opts[0]] if p.param_type_name == "option" else []) + value
    r = runner.invoke(app, argv)
    assert r.exit_code == 1, (argv, r.output)
    assert "empty path" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert os.listdir(tmp_path) == []  # nothing written


def test_empty_images_is_refused_in_a_fresh_process(panoptic, tmp_path):
    r = _run("convert", "coco-panoptic", panoptic, "--images", "", "-o", tmp_path / "o.json")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: --images: an empty path ('') names no file or folder; give one ('.' for the current folder)"]
    assert not (tmp_path / "o.json").exists()


def test_library_image_folder_refuses_an_empty_string():
    with pytest.raises(EntityKitError, match="empty path"):
        check_image_folder("")
    check_image_folder(None)


# ------------------------------------------------------------- 5. converters read each image's header
def test_a_wrong_sized_or_unreadable_image_is_a_problem_naming_the_file(panoptic, tmp_path):
    src = _copy_source(panoptic, tmp_path)
    images = src.parent / "images"
    Image.new("RGB", (W * 2, H * 2)).save(images / "synth_000001.jpg")  # a copy of another size
    (images / "synth_000003.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=rf"synth_000001.jpg: image 2: image is {2 * W}×{2 * H}, the source says "
                                           rf"{W}×{H}"):
        convert_coco_panoptic(src, image_root=images)
    ds = convert_coco_panoptic(src, image_root=images, keep_going=True)
    assert [img["file_name"] for img in ds.images] == [f"synth_00000{i}.jpg" for i in (0, 2, 4, 5)]
    problems = {Path(p["path"]).name: p["problem"] for p in ds.info["conversion"]["problems"]}
    assert problems["synth_000001.jpg"].startswith(f"image is {2 * W}×{2 * H}, the source says {W}×{H}")
    assert problems["synth_000003.jpg"].startswith("cannot read image")
    # the sharded conversion applies the same rule
    run = convert_coco_panoptic_sharded(src, tmp_path / "sh", shard_images=4, image_root=images, keep_going=True)
    assert run.images == 4 and run.problems == 2
    r = _run("convert", "coco-panoptic", src, "--images", images, "-o", tmp_path / "o.json")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "synth_000001.jpg" in r.stderr


def test_an_exif_rotated_photo_of_the_stored_size_converts(panoptic, tmp_path):
    # which size the masks were drawn on (displayed or stored) is the readers' choice (check names it)
    src = _copy_source(panoptic, tmp_path)
    images = src.parent / "images"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: displayed 24 wide, 32 high
    Image.new("RGB", (W, H)).save(images / "synth_000001.jpg", exif=exif)
    ds = convert_coco_panoptic(src, image_root=images)
    assert len(ds.images) == 6


def test_reading_a_png_header_decodes_no_pixel(tmp_path, monkeypatch):
    from PIL import ImageFile

    from entitykit.convert._common import ImageRecord, ImageResult, with_image_file
    from entitykit.images import read_header

    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")

    decoded, load = [], ImageFile.ImageFile.load

    def counted(self, *a, **kw):  # (raising here would be swallowed by the EXIF reader's guard)
        decoded.append(self)
        return load(self, *a, **kw)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    header = read_header(tmp_path / "a.png")
    assert (header.height, header.width) == (H, W)
    res = with_image_file(ImageResult(ImageRecord(1, "a.png", H, W)), tmp_path)
    assert res.ok and not res.problems
    assert decoded == []
