"""One output-naming rule for every writer: inside the output folder, never colliding, indexed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.dataset import EntityDataset
from entitykit.masks import encode_id_map, read_id_map_png, rle_bbox
from entitykit.naming import PREVIEWS, inside, output_names, preview_name, safe_relative

runner = CliRunner()
CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"

HOSTILE = ["/srv/labels/export/photo.png", "../label/12.jpg", "a.jpg", "a.png", "A.JPG", "sub/../../x.jpg",
           "C:\\data\\y.jpg", "b.png/c.jpg", "b.jpg", "tab\tname.jpg", "e" * 300 + ".jpg", "", ".", "..", "x/./y.jpg",
           "nul\x00byte.jpg", "q?.jpg", "q_.jpg"]


def _check_names(names: list[str], out: list[str], suffix: str = ".png") -> None:
    assert len(out) == len(names)
    keys = [o.lower() for o in out]
    assert len(set(keys)) == len(keys), "two inputs share an output name"
    folders = {"/".join(k.split("/")[:i]) for k in keys for i in range(1, k.count("/") + 1)}
    for o in out:
        parts = o.split("/")
        assert o and not o.startswith("/") and ".." not in parts and "" not in parts and "." not in parts
        assert all(len(p.encode()) <= 255 - len(suffix) - 4 for p in parts)
        assert not any(ord(c) < 32 for c in o) and ":" not in o and "\\" not in o
        assert (o + suffix).lower() not in folders  # a file never sits where another name needs a folder


def test_hostile_names_stay_inside_and_never_collide(tmp_path):
    out = output_names(HOSTILE)
    _check_names(HOSTILE, out)
    assert out[:5] == ["srv/labels/export/photo", "__/label/12", "a.jpg", "a.png", "A.JPG~2"]
    for o in out:  # and the filesystem agrees
        inside(tmp_path, o + ".png")
    assert safe_relative("/abs/x.jpg") == "abs/x.jpg" and safe_relative("") == "image"
    with pytest.raises(Exception, match="leave the output folder"):
        inside(tmp_path, "../x.png")


def test_reserved_folder_is_left_to_the_writer():
    names = ["previews/a.jpg", "a.jpg", "Previews/b.jpg", "previews_/a.jpg", "previews.jpg", "sub/previews/c.jpg"]
    out = output_names(names, reserved=[PREVIEWS])
    _check_names(names, out)
    assert out == ["previews_/a.jpg", "a", "Previews_/b", "previews_/a.jpg~2", "previews", "sub/previews/c"]
    assert not any(o.lower().startswith(PREVIEWS + "/") for o in out)
    assert preview_name("sub/x") == "previews/sub/x.png"
    assert output_names(names) == ["previews/a", "a", "Previews/b", "previews_/a", "previews", "sub/previews/c"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list("aAb./\\:_-~ ") + ["..", "x.png", "é"]), max_size=8).map("".join),
                max_size=12))
def test_names_property(names):
    out = output_names(names)
    _check_names(names, out)
    assert output_names(names) == out  # deterministic
    kept = output_names([f"{PREVIEWS}/{n}" if i % 2 else n for i, n in enumerate(names)], reserved=[PREVIEWS])
    _check_names(names, kept)
    assert not any(k.lower().startswith(PREVIEWS + "/") for k in kept)  # the writer's folder stays its own


def _dataset_with_names(root: Path, names: list[str]) -> Path:
    images, anns = [], []
    for i, name in enumerate(names, start=1):
        m = np.zeros((4, 5), np.int64)
        m[: i % 4 + 1, :2] = 1
        ids, rles, areas = encode_id_map(m)
        images.append({"id": i, "file_name": name, "height": 4, "width": 5})
        anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": rles[0], "area": int(areas[0]),
                     "bbox": rle_bbox(rles)[0].tolist(), "iscrowd": 0})
    EntityDataset(images, anns).save(root / "ds.json")
    return root / "ds.json"


def _assert_index_matches_files(out: Path, n: int) -> None:
    """id_maps.json lists every id-map PNG; the coloured previews (previews/, listed as ``preview``) are
    checked apart: one per id map, at the naming rule's place."""
    index = json.loads((out / "id_maps.json").read_text())
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if p.relative_to(out).parts[0] != PREVIEWS)
    assert sorted(e["file_name"] for e in index["images"]) == pngs and len(pngs) == n
    previews = sorted(p.relative_to(out).as_posix() for p in (out / PREVIEWS).rglob("*.png"))
    assert sorted(e["preview"] for e in index["images"]) == previews and len(previews) == n
    for e in index["images"]:
        assert (read_id_map_png(out / e["file_name"]) > 0).sum() > 0
        assert e["preview"] == preview_name(e["file_name"].removesuffix(".png"))


@pytest.mark.parametrize("command", [["idmaps"], ["convert-id-maps"]])
def test_every_id_map_writer_stays_inside(tmp_path, command):
    """idmaps and convert --id-maps share the naming rule; nothing lands outside the folder."""
    names = ["/tmp/should-not-be-written-%d/p.jpg" % os.getpid(), "../escape/12.jpg", "a.jpg", "a.png", "ok.jpg",
             "previews/a.jpg", "Previews/ok.jpg"]  # id maps never land where the previews of a.jpg, ok.jpg go
    ds = _dataset_with_names(tmp_path, names)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    if command == ["idmaps"]:
        res = runner.invoke(app, ["idmaps", str(ds), "-o", str(out), "-q"])
    else:  # the EntitySeg converter accepts the same file as input
        res = runner.invoke(app, ["convert", "entityseg", str(ds), "-o", str(work / "e.json"), "--id-maps", str(out), "-q"])
    assert res.exit_code == 0, res.output
    _assert_index_matches_files(out, len(names))
    assert not Path(f"/tmp/should-not-be-written-{os.getpid()}").exists()
    outside = [p for p in tmp_path.rglob("*.png") if out not in p.parents]
    assert outside == []


def test_handed_output_name_escape_case(tmp_path):
    case = CASES / "output-name-escape"
    if not case.is_dir():
        pytest.skip(f"{case} not present")
    if Path("/srv/labels").exists():
        pytest.skip("/srv/labels exists here: the case would write into it if broken")
    shutil.copytree(case, tmp_path / "c")
    res = runner.invoke(app, ["idmaps", str(tmp_path / "c" / "ds.json"), "-o", str(tmp_path / "c" / "out"), "-q"])
    try:
        assert res.exit_code == 0
        _assert_index_matches_files(tmp_path / "c" / "out", 3)
        assert not Path("/srv/labels").exists()
        assert [p for p in (tmp_path / "c").rglob("*.png") if (tmp_path / "c" / "out") not in p.parents] == []
    finally:
        shutil.rmtree("/srv/labels", ignore_errors=True)
