"""Every CLI command on a matrix of bad inputs, in-process.

The promise under test: for anything a user can cause, one line naming the file, the item and the
problem; exit code 1; no traceback; no "internal error"; nothing half-written (no output under
its final name, no ``.NAME.PID.*.tmp`` folder beside it); no command overwrites its own input.
Usage errors that Click rejects itself exit 2 with its usage message. Inputs that are unusual but
valid (16-bit, palette, CMYK, LA images; absolute or ``../`` file names; binary-grid masks) must
work: exit 0 and a complete output.

The cases are generated: a few dozen mutations of small valid inputs (built once per module by
``_bad_inputs_world.build_world``), each applied to every command that reads that kind of input.
"""

from __future__ import annotations

import copy
import faulthandler
import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _bad_inputs_world import (
    BROKEN_IMAGE_KINDS, VALID_IMAGE_KINDS, World, build_world, image_variant, last_line, png_bomb, snapshot,
    tiny_checkpoint, tmp_leftovers)
from entitykit.cli import app
from entitykit.limits import set_max_pixels

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

DELETE = object()  # a mutation value: remove the key


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = build_world(tmp_path_factory.mktemp("world"))
    w.ents_data["info"]["image_root"] = str(w.img)  # mutated copies live elsewhere
    w.ckpt = tiny_checkpoint(w.root / "ckpt" / "tiny.safetensors")
    png_bomb(w.root / "bomb.png", 20000)
    return w


@pytest.fixture(scope="module", autouse=True)
def _build_cli_once():
    """Typer rebuilds the Click command tree on every invoke (16 ms): build it once for this module."""
    import functools

    import typer.testing

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", functools.lru_cache(maxsize=None)(typer.testing._get_command))
        yield


@pytest.fixture(scope="module")
def _hang_log(tmp_path_factory):
    with open(tmp_path_factory.getbasetemp() / "bad_inputs_hang.txt", "w") as f:
        yield f


@pytest.fixture(autouse=True)
def _no_hang(_hang_log, request):
    """A case still running after 120 s is a hang: end the whole run (a hang in C code, e.g. a decoder
    looping on corrupt runs, cannot be interrupted from Python), its stacks in bad_inputs_hang.txt
    under pytest's base temp folder (the output is captured)."""
    _hang_log.write(f"running {request.node.nodeid}\n")
    _hang_log.flush()
    faulthandler.dump_traceback_later(120, exit=True, file=_hang_log)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _reset_limits():
    yield
    set_max_pixels(None)  # `--max-pixels` sets a process-wide limit: do not leak it into the next case


# ------------------------------------------------------------------------------------------- cases
@dataclass
class Run:
    """What one case runs and what it expects."""

    argv: list[str]
    code: int = 1
    names: list = field(default_factory=list)  # substrings the last line must hold (a tuple: any one of them)
    item: str | None = None  # regex the last line must match (the item at fault)
    outputs: list[Path] = field(default_factory=list)  # must be absent (or unchanged) on failure, present on success
    protect: list[Path] = field(default_factory=list)  # inputs that must be unchanged afterwards


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[World, Path], Run]


def _set(data: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        data = data[k]
    if value is DELETE:
        del data[path[-1]]
    else:
        data[path[-1]] = value


@dataclass(frozen=True)
class Mut:
    """A mutation of a parsed JSON (``edits``: (key path, value) pairs, or ``fn``) or of its bytes (``raw``)."""

    name: str
    level: str
    item: str | None = None
    edits: tuple = ()
    fn: Callable[[Any], Any] | None = None
    raw: Callable[[bytes], bytes | None] | None = None  # None result: the file is missing
    pre: tuple[str, ...] = ()  # global options before the command (e.g. --max-pixels)
    codes: tuple = ()  # (target, code) overrides of the level's expectation

    def apply(self, template: Any, text: bytes) -> bytes | None:
        if self.raw is not None:
            return self.raw(text)
        data = copy.deepcopy(template)
        for path, value in self.edits:
            _set(data, path, value)
        if self.fn is not None:
            self.fn(data)  # changes data in place
        return json.dumps(data).encode()


def _nested(n: int) -> bytes:
    return b"[" * n


FILE_MUTS = [
    Mut("truncated", "file", raw=lambda b: b[: len(b) // 2]),
    Mut("zero-bytes", "file", raw=lambda b: b""),
    Mut("whitespace", "file", raw=lambda b: b"  \n\t\n"),
    Mut("not-json", "file", raw=lambda b: b"hello, world\n"),
    Mut("scalar", "file", raw=lambda b: b"42"),
    Mut("null", "file", raw=lambda b: b"null"),
    Mut("string", "file", raw=lambda b: b'"images"'),
    Mut("nested-100k", "file", raw=lambda b: _nested(100_000)),
    Mut("bad-utf8", "file", raw=lambda b: b"\xff\xfe" + b),
    Mut("missing-file", "file", raw=lambda b: None),
    Mut("nan-literal-top", "file", raw=lambda b: b"NaN"),
    Mut("huge-int", "file", raw=lambda b: b'{"images": [{"id": ' + b"9" * 5000 + b"}], \"annotations\": []}"),
]
OBJECT_FILE_MUTS = [  # where a JSON object is expected
    Mut("empty-list", "file", raw=lambda b: b"[]"),
    Mut("list-of-lists", "file", raw=lambda b: b"[[1, 2], [3]]"),
    Mut("empty-object", "file", raw=lambda b: b"{}"),
    Mut("images-not-list", "file", raw=lambda b: b'{"images": {"id": 1}, "annotations": []}'),
    Mut("annotations-null", "file", raw=lambda b: b'{"images": [], "annotations": null}'),
]

BAD_NUMBERS = [("string", "6"), ("bool", True), ("float", 6.5), ("nan", math.nan), ("negative", -6), ("zero", 0),
               ("huge", 10**12), ("inf", math.inf), ("list", [6]), ("null", None)]


def _image_field_muts(index: int, item: str) -> list[Mut]:
    """Wrong types for every field of images[index] (its id is index + 1)."""
    out = [Mut(f"image-id-{n}", "schema", rf"({item}|image_id {index + 1}\b|image {index + 1}\b)",
               edits=((("images", index, "id"), v),))
           for n, v in [("string", "x"), ("bool", True), ("float", 2.5), ("list", [2]), ("null", None),
                        ("dict", {"a": 1})]]
    out.append(Mut("image-id-missing", "schema", item, edits=((("images", index, "id"), DELETE),)))
    for key in ("height", "width"):
        out += [Mut(f"image-{key}-{n}", "schema", item, edits=((("images", index, key), v),)) for n, v in BAD_NUMBERS]
        out.append(Mut(f"image-{key}-missing", "schema", item, edits=((("images", index, key), DELETE),)))
    out += [Mut(f"image-file_name-{n}", "schema", item, edits=((("images", index, "file_name"), v),))
            for n, v in [("null", None), ("number", 5), ("empty", ""), ("list", ["a.jpg"]), ("nul-char", "a\0b.jpg")]]
    out.append(Mut("image-file_name-missing", "schema", item, edits=((("images", index, "file_name"), DELETE),)))
    out.append(Mut("image-entry-string", "schema", rf"images\[{index}\]", edits=((("images", index), "img.jpg"),)))
    out.append(Mut("image-entry-null", "schema", rf"images\[{index}\]", edits=((("images", index), None),)))
    return out


# --- entity datasets ------------------------------------------------------------------------------
IMG2 = r"(image 2\b|images\[1\])"
ANN4 = r"(annotation (id )?4\b|annotations\[3\])"


def _rle4(counts: Any = DELETE, size: Any = DELETE) -> tuple:
    edits = []
    if counts is not DELETE:
        edits.append((("annotations", 3, "segmentation", "counts"), counts))
    if size is not DELETE:
        edits.append((("annotations", 3, "segmentation", "size"), size))
    return tuple(edits)


def _counts_edit(fn: Callable[[str], Any]) -> Callable[[dict], None]:
    def f(d: dict) -> None:
        seg = d["annotations"][3]["segmentation"]
        seg["counts"] = fn(seg["counts"])
    return f


RLE_COUNTS = [  # (name, new compressed counts from the old); each input kind applies them to its masks
    ("rle-truncated", lambda c: c[:-1]),
    ("rle-overlong", lambda c: c + "0000"),
    ("rle-extra-runs", lambda c: c + "Q1"),
    ("rle-bad-chars", lambda c: c[:1] + "~ " + c[1:]),
    ("rle-bytes-literal", lambda c: f"b'{c}'"),
    ("rle-giant-run", lambda c: "o" * 11 + "1"),  # one 12-character number: a run of ~2^60 pixels
    ("rle-giant-run-unended", lambda c: "oooooooooooo"),  # 12 characters that never end their number
    ("rle-huge-run-7", lambda c: "oooooo?"),  # 7 characters, the longest accepted: a 2^33-pixel run
    ("rle-negative-run", lambda c: "ooooooO"),  # the same with the sign bit set
    ("rle-empty", lambda c: ""),
    ("rle-non-ascii", lambda c: "éQ1"),  # 'é' read as '?' would give valid runs [15, 33]
    ("rle-uncovering", lambda c: "01"),  # runs [0, 1] of a 48-pixel image: the old converter hang
]
RLE_MUTS = [(n, _counts_edit(f)) for n, f in RLE_COUNTS]
RLE_TYPE_MUTS = [  # type errors of the RLE: refused by every command's schema rules
    Mut("rle-size-mismatch", "schema", ANN4, edits=_rle4(size=[12, 16])),
    Mut("rle-size-zero", "schema", ANN4, edits=_rle4(size=[0, 8])),
    Mut("rle-size-negative", "schema", ANN4, edits=_rle4(size=[-6, 8])),
    Mut("rle-size-string", "schema", ANN4, edits=_rle4(size="6x8")),
    Mut("rle-size-missing", "schema", ANN4, edits=((("annotations", 3, "segmentation", "size"), DELETE),)),
    Mut("rle-counts-null", "schema", ANN4, edits=_rle4(counts=None)),
    Mut("rle-counts-number", "schema", ANN4, edits=_rle4(counts=5)),
    Mut("rle-counts-list", "schema", ANN4, edits=_rle4(counts=[0, 24, 24])),  # valid runs, but not compressed
    Mut("rle-counts-list-bad-sum", "schema", ANN4, edits=_rle4(counts=[0, 5])),
]

ENTITY_ANN_MUTS = [
    *(Mut(f"ann-area-{n}", "schema", ANN4, edits=((("annotations", 3, "area"), v),))
      for n, v in [("string", "24"), ("nan", math.nan), ("bool", True), ("null", None), ("list", [24])]),
    *(Mut(f"ann-bbox-{n}", "schema", ANN4, edits=((("annotations", 3, "bbox"), v),))
      for n, v in [("nan", [math.nan, 0, 1, 1]), ("string", "x"), ("short", [1, 2]), ("strings", ["a", "b", "c", "d"]),
                   ("null", None)]),
    *(Mut(f"ann-iscrowd-{n}", "schema", ANN4, edits=((("annotations", 3, "iscrowd"), v),))
      for n, v in [("bool", True), ("two", 2), ("string", "0"), ("null", None)]),
    *(Mut(f"ann-image_id-{n}", "schema", ANN4, edits=((("annotations", 3, "image_id"), v),))
      for n, v in [("list", [2]), ("string", "2"), ("unknown", 99), ("null", None), ("float", 2.0)]),
    *(Mut(f"ann-id-{n}", "schema", r"(annotation|annotations\[3\])", edits=((("annotations", 3, "id"), v),))
      for n, v in [("zero", 0), ("negative", -1), ("string", "a"), ("float", 4.5), ("duplicate", 1), ("bool", True),
                   ("list", [4])]),
    *(Mut(f"ann-category_id-{n}", "schema", ANN4, edits=((("annotations", 3, "category_id"), v),))
      for n, v in [("two", 2), ("string", "1"), ("null", None)]),
    *(Mut(f"ann-segmentation-{n}", "schema", ANN4, edits=((("annotations", 3, "segmentation"), v),))
      for n, v in [("null", None), ("empty-list", []), ("string", "abc"), ("polygon", [[0, 0, 4, 0, 4, 4]]),
                   ("missing", DELETE), ("grid", [[True] * 8] * 6)]),
    Mut("ann-entry-string", "schema", r"annotations\[3\]", edits=((("annotations", 3), "x"),)),
    Mut("ann-area-wrong", "meta", ANN4, edits=((("annotations", 3, "area"), 5),)),
    Mut("ann-bbox-wrong", "meta", ANN4, edits=((("annotations", 3, "bbox"), [0, 0, 1, 1]),)),
    Mut("ann-overlap", "overlap", r"image 1\b",
        fn=lambda d: d["annotations"].__setitem__(1, {**d["annotations"][1], "segmentation": d["annotations"][0]["segmentation"], "area": d["annotations"][0]["area"], "bbox": d["annotations"][0]["bbox"]})),
]


def _ent_rle_muts() -> list[Mut]:
    # non-ASCII counts are refused by the schema rules (every command), broken runs by the mask rules
    return [Mut(n, "schema" if n == "rle-non-ascii" else "runs", ANN4, fn=f) for n, f in RLE_MUTS]


ENTITY_VALID_MUTS = [
    Mut("file_name-absolute", "valid", fn=lambda d: d["images"][1].update(file_name=str(Path(d["info"]["image_root"]) / "2.jpg"))),
    Mut("file_name-dotdot", "valid", fn=lambda d: d["images"][1].update(file_name="../img/2.jpg")),
    Mut("file_name-dotdot-deep", "valid", fn=lambda d: d["images"][1].update(
        file_name="../../" + Path(d["info"]["image_root"]).parent.name + "/img/2.jpg")),
    Mut("file_name-same-stem", "valid", fn=lambda d: d["images"][0].update(file_name="2.png")),  # 2.jpg and 2.png
    Mut("extra-keys", "valid", fn=lambda d: d["images"][0].update(extra={"x": [1, None]}) or d["annotations"][0].update(note="hi")),
    Mut("no-annotations", "valid", edits=((("annotations",), []),)),
]

ENTITY_SCHEMA_MUTS = [
    *_image_field_muts(1, IMG2),
    Mut("image-id-duplicate", "schema", r"image 1\b", edits=((("images", 1, "id"), 1),)),
    Mut("image-file_name-duplicate", "schema", IMG2, edits=((("images", 1, "file_name"), "1.jpg"),)),
    Mut("image-size-vs-rle", "schema", ANN4, edits=((("images", 1, "height"), 7),)),
    Mut("image-declared-8000-limit", "schema", r"(image 2\b|annotation 4\b)", pre=("--max-pixels", "1000000"),
        edits=((("images", 1, "height"), 8000), (("images", 1, "width"), 8000))),
    Mut("categories-two", "schema", "categories", edits=((("categories",), [{"id": 1}, {"id": 2}]),)),
    Mut("categories-string", "schema", "categories", edits=((("categories",), "entity"),)),
    *ENTITY_ANN_MUTS,
    *RLE_TYPE_MUTS,
]

ENTITY_IMAGEFILE_MUTS = [
    Mut("file_name-missing-abs", "imagefile", IMG2, edits=((("images", 1, "file_name"), "/nonexistent/dir/2.jpg"),),
        codes=(("merge", 1), ("holdout", 1))),
    Mut("file_name-long", "imagefile", IMG2, edits=((("images", 1, "file_name"), "x" * 300 + ".jpg"),),
        codes=(("merge", 1), ("holdout", 1), ("idmaps", 0))),
    Mut("file_name-control-chars", "imagefile", IMG2, edits=((("images", 1, "file_name"), "a\nb\\c:d?.jpg"),),
        codes=(("merge", 1), ("holdout", 1), ("idmaps", 0))),
]

# What each level means per target: (targets that must fail, targets that must pass); others: not run.
ENTITY_TARGETS = ("check", "info", "idmaps", "merge", "holdout", "pack", "pack-h5", "predict", "eval", "train", "train-val")
LEVELS = {
    "file": (set(ENTITY_TARGETS), set()),
    "schema": (set(ENTITY_TARGETS) - {"train-val"}, set()),
    # merge opens its inputs with check's full rules (a merged mix must not carry a broken mask onward)
    "runs": ({"check", "idmaps", "pack", "pack-h5", "eval", "merge"}, {"info"}),
    "meta": ({"check", "merge"}, {"info", "idmaps", "pack"}),
    "overlap": ({"check", "idmaps", "pack", "merge"}, {"info"}),
    "imagefile": ({"check", "pack", "predict"}, set()),
    "imagefile-ok": (set(), {"check", "pack", "predict", "merge"}),
    "valid": (set(), {"check", "info", "idmaps", "merge", "pack", "predict", "eval"}),
}


def _entity_argv(target: str, w: World, bad: Path, out: Path) -> tuple[list[str], list[Path]]:
    if target == "check":
        return ["check", str(bad), "-q"], []
    if target == "info":
        return ["info", str(bad)], []
    if target == "idmaps":
        return ["idmaps", str(bad), "-o", str(out / "ids"), "-q"], [out / "ids"]
    if target == "merge":
        return ["merge", str(bad), str(w.ents2), "-o", str(out / "m.json"), "--split", "train", "-q"], [out / "m.json"]
    if target == "holdout":
        return ["merge", str(w.ents2), "--holdout", str(bad), "-o", str(out / "m.json"), "--split", "train", "-q"], [out / "m.json"]
    if target == "pack":
        return ["pack", str(bad), "-o", str(out / "pk"), "-q"], [out / "pk"]
    if target == "pack-h5":
        return ["pack", str(bad), "-o", str(out / "pk.h5"), "-q"], [out / "pk.h5"]
    if target == "predict":
        return ["predict", "--dataset", str(bad), "-c", str(w.ckpt), "-o", str(out / "pred"), "-q", "--no-overlays",
                "--threads", "1"], [out / "pred"]
    if target == "eval":
        return ["eval", str(bad), str(w.preds), "--json", str(out / "r.json"), "--workers", "1"], [out / "r.json"]
    if target == "train":
        return ["train", "--train", str(bad), "--preset", "tiny", "--max-iter", "1", "-o", str(out / "run"), "-q"], [out / "run"]
    if target == "train-val":
        return ["train", "--train", str(w.ents), "--val", str(bad), "--preset", "tiny", "--max-iter", "1", "-o",
                str(out / "run"), "-q"], [out / "run"]
    raise ValueError(target)


def _write_bad(path: Path, data: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        path.write_bytes(data)


def _entity_case(target: str, mut: Mut, code: int) -> Case:
    def build(w: World, tmp: Path) -> Run:
        bad = tmp / "in" / "bad.json"
        _write_bad(bad, mut.apply(w.ents_data, json.dumps(w.ents_data).encode()))
        argv, outputs = _entity_argv(target, w, bad, tmp / "out")
        names = [(str(bad), str(w.img), "/nonexistent/") if mut.level == "imagefile" else str(bad)] if code == 1 else []
        return Run([*mut.pre, *argv], code, names, mut.item if code == 1 else None, outputs)
    return Case(f"{target}-entity-{mut.name}", build)


def _entity_image_case(target: str, kind: str, code: int, pre: tuple = ()) -> Case:
    """Image 2's file replaced by a broken or unusual one."""
    def build(w: World, tmp: Path) -> Run:
        img = tmp / "in" / "img"
        shutil.copytree(w.img, img)
        if kind == "bomb":
            (img / "2.jpg").unlink()
            shutil.copy(w.root / "bomb.png", img / "2.jpg")
        elif kind == "bomb-2000":
            (img / "2.jpg").unlink()
            Image.new("L", (2000, 2000)).save(img / "2.jpg", format="PNG")
        else:
            image_variant(img / "2.jpg", kind)
        data = copy.deepcopy(w.ents_data)
        data["info"]["image_root"] = str(img)
        bad = tmp / "in" / "bad.json"
        bad.write_text(json.dumps(data))
        argv, outputs = _entity_argv(target, w, bad, tmp / "out")
        names = [(str(img / "2.jpg"), str(bad))] if code == 1 else []
        return Run([*pre, *argv], code, names, IMG2 if code == 1 else None, outputs, protect=[img])
    return Case(f"{target}-imagefile-{kind}{'-maxpix' if pre else ''}", build)


# Every mutation runs on `check` (the owner of the format's rules); every other command that reads an
# entity dataset gets the CORE ones: one of each kind of wrong value per field (it shares the rules
# through EntityDataset.open, so the rest of the sweep would test the same code again). The narrow
# targets (a second way into the same reader) get the file-level core only.
CORE = {
    "truncated", "zero-bytes", "not-json", "scalar", "nested-100k", "bad-utf8", "missing-file", "empty-list",
    "images-not-list", "huge-int",
    "image-id-list", "image-id-string", "image-id-missing", "image-height-nan", "image-height-negative",
    "image-height-huge", "image-height-string", "image-width-bool", "image-width-inf", "image-file_name-null",
    "image-file_name-nul-char", "image-entry-null", "image-id-duplicate", "image-file_name-duplicate",
    "image-size-vs-rle", "image-declared-8000-limit",
    "ann-area-nan", "ann-area-string", "ann-bbox-nan", "ann-bbox-short", "ann-iscrowd-bool", "ann-image_id-list",
    "ann-image_id-unknown", "ann-id-zero", "ann-id-duplicate", "ann-id-string", "ann-category_id-two",
    "ann-segmentation-polygon", "ann-segmentation-null", "ann-entry-string",
    "rle-size-mismatch", "rle-size-zero", "rle-counts-list", "rle-counts-null", "categories-two",
    "rle-truncated", "rle-giant-run", "rle-bad-chars", "rle-non-ascii", "rle-uncovering", "rle-bytes-literal",
    "ann-area-wrong", "ann-bbox-wrong", "ann-overlap",
    "file_name-absolute", "file_name-dotdot", "file_name-dotdot-deep", "file_name-same-stem", "no-annotations",
    "file_name-missing-abs", "file_name-long", "file_name-control-chars",
}
NARROW = {"holdout", "pack-h5", "train-val"}
PREDICT_VALID = {"file_name-dotdot-deep", "file_name-same-stem"}  # a model run each: the naming cases only


# Keys the scorer does not read (file_name, bbox, category_id: it is class-agnostic) and GT mask encodings
# pycocotools scores (polygons, uncompressed counts, iscrowd true = 1): `eval` scores such a GT as
# pycocotools would, exit 0.
EVAL_SCORES_ANYWAY = {"image-file_name-null", "image-file_name-nul-char", "image-file_name-duplicate",
                      "ann-bbox-short", "ann-category_id-two", "ann-segmentation-polygon", "rle-counts-list",
                      "ann-iscrowd-bool"}


def entity_cases() -> list[Case]:
    muts = [*FILE_MUTS, *OBJECT_FILE_MUTS, *ENTITY_SCHEMA_MUTS, *_ent_rle_muts(), *ENTITY_VALID_MUTS,
            *ENTITY_IMAGEFILE_MUTS]
    cases = []
    for mut in muts:
        fail, ok = LEVELS[mut.level]
        over = dict(mut.codes)
        for target in ENTITY_TARGETS:
            if target != "check" and mut.name not in CORE:
                continue
            if target in NARROW and not (mut.level == "file" or mut.name in ("rle-uncovering", "image-id-list",
                                                                             "ann-bbox-nan")):
                continue
            if target == "predict" and mut.level == "valid" and mut.name not in PREDICT_VALID:
                continue
            if target == "eval" and mut.name == "image-id-string":
                continue  # eval's GT may have string image ids (COCO tools accept them): not a GT fault there
            if target == "eval" and mut.name in EVAL_SCORES_ANYWAY:
                code = 0
            elif target in over:
                code = over[target]
            elif target in fail:
                code = 1
            elif target in ok:
                code = 0
            else:
                continue
            if target.startswith("train") and code == 0:
                continue  # a training run takes tens of seconds: only failures before it starts
            cases.append(_entity_case(target, mut, code))
    # a validation set with a schema error: refused before training, naming the file
    cases.append(_entity_case("train-val", next(m for m in ENTITY_SCHEMA_MUTS if m.name == "image-height-string"), 1))
    for kind in BROKEN_IMAGE_KINDS:
        for target in ("check", "pack", "predict", "merge"):
            code = 1 if target != "merge" or kind in ("missing", "folder") else 0
            cases.append(_entity_image_case(target, kind, code))
    for target in ("check", "pack", "predict"):
        cases.append(_entity_image_case(target, "bomb-2000", 1, ("--max-pixels", "1000000")))
    for kind in VALID_IMAGE_KINDS:
        for target in ("check", "pack", "predict"):
            if target == "predict" and kind not in ("gray16", "cmyk", "palette-transparency", "la"):
                continue  # a model run each
            cases.append(_entity_image_case(target, kind, 0))
    return cases


# --- COCO panoptic ---------------------------------------------------------------------------------
PAN_IMG2 = r"(image 2\b|images\[1\])"
PAN_ANN = r"(image 2\b|annotations\[1\])"
PANOPTIC_MUTS = [
    *_image_field_muts(1, PAN_IMG2),
    Mut("image-id-duplicate", "schema", r"image 1\b", edits=((("images", 1, "id"), 1),)),
    *(Mut(f"ann-image_id-{n}", "schema", r"(image|annotations\[1\])", edits=((("annotations", 1, "image_id"), v),))
      for n, v in [("list", [2]), ("unknown", 99), ("null", None), ("dict", {"a": 1})]),
    Mut("ann-image_id-missing", "schema", r"annotations\[1\]", edits=((("annotations", 1, "image_id"), DELETE),)),
    *(Mut(f"segments_info-{n}", "schema", PAN_ANN, edits=((("annotations", 1, "segments_info"), v),))
      for n, v in [("null", None), ("dict", {}), ("string", "x"), ("numbers", [5])]),
    *(Mut(f"segment-id-{n}", "schema", PAN_IMG2, edits=((("annotations", 1, "segments_info", 0, "id"), v),))
      for n, v in [("string", "5007"), ("zero", 0), ("negative", -3), ("float", 5007.0), ("list", [5007]),
                   ("bool", True), ("unknown", 123)]),
    Mut("segment-id-duplicate", "schema", PAN_IMG2,
        fn=lambda d: d["annotations"][1]["segments_info"].append(dict(d["annotations"][1]["segments_info"][0]))),
    Mut("segment-missing", "schema", PAN_IMG2, edits=((("annotations", 1, "segments_info"), []),)),
    *(Mut(f"segment-category_id-{n}", "schema", PAN_IMG2,
          edits=((("annotations", 1, "segments_info", 0, "category_id"), v),))
      for n, v in [("list", [1]), ("dict", {"a": 1})]),
    Mut("ann-file_name-number", "schema", PAN_ANN, edits=((("annotations", 1, "file_name"), 5),)),
    Mut("ann-file_name-list", "schema", PAN_ANN, edits=((("annotations", 1, "file_name"), ["p2.png"]),)),
    Mut("ann-file_name-missing-png", "schema", PAN_IMG2, edits=((("annotations", 1, "file_name"), "nope.png"),)),
    Mut("ann-file_name-dotdot", "schema", PAN_IMG2, edits=((("annotations", 1, "file_name"), "../ents.json"),)),
    Mut("ann-entry-string", "schema", r"annotations\[1\]", edits=((("annotations", 1), "x"),)),
    Mut("categories-number", "schema", "categor", edits=((("categories",), 5),)),
    Mut("categories-list-id", "schema", "categor", edits=((("categories", 0, "id"), [1]),)),
    Mut("categories-strings", "schema", "categor", edits=((("categories",), ["thing", "stuff"]),)),
    Mut("image-declared-8000-limit", "schema", PAN_IMG2, pre=("--max-pixels", "1000000"),
        edits=((("images", 1, "height"), 8000), (("images", 1, "width"), 8000))),
    Mut("string-image-ids", "valid", fn=lambda d: [im.update(id=f"s{im['id']}") for im in d["images"]] and
        [a.update(image_id=f"s{a['image_id']}") for a in d["annotations"]]),
    Mut("segment-iscrowd", "valid", edits=((("annotations", 1, "segments_info", 0, "iscrowd"), 1),)),
    Mut("no-categories", "valid", edits=((("categories",), DELETE),)),
]


def _panoptic_argv(target: str, w: World, bad: Path, png_dir: Path, out: Path) -> tuple[list[str], list[Path]]:
    if target == "convert":
        return ["convert", "coco-panoptic", str(bad), str(png_dir), "-o", str(out / "c.json"), "--id-maps",
                str(out / "ids"), "-q", "-j", "1"], [out / "c.json", out / "ids"]
    if target == "eval":
        return ["eval", str(bad), str(w.results), "--gt-png-dir", str(png_dir), "--json", str(out / "r.json"),
                "--workers", "1"], [out / "r.json"]
    raise ValueError(target)


def _panoptic_case(target: str, mut: Mut) -> Case:
    code = 0 if mut.level == "valid" else 1

    def build(w: World, tmp: Path) -> Run:
        bad = tmp / "in" / "panoptic.json"
        _write_bad(bad, mut.apply(w.pan_data, w.panoptic.read_bytes()))
        argv, outputs = _panoptic_argv(target, w, bad, w.png_dir, tmp / "out")
        # a segment missing from the JSON or the PNG: either file may be the one named
        return Run([*mut.pre, *argv], code, [(str(bad), str(w.png_dir))] if code else [], mut.item if code else None,
                   outputs)
    return Case(f"{target}-panoptic-{mut.name}", build)


PNG_KINDS = {  # image 2's panoptic PNG → expected exit code
    **{k: 1 for k in ("missing", "zero-bytes", "corrupt-png", "text", "folder", "bomb", "wrong-size", "gray16",
                      "palette", "gray", "la", "int32")},
    "rgba": 0,
}


def _png_case(target: str, kind: str, code: int, pre: tuple = ()) -> Case:
    def build(w: World, tmp: Path) -> Run:
        pngs = tmp / "in" / "pngs"
        shutil.copytree(w.png_dir, pngs)
        target_png = pngs / "p2.png"
        if kind == "bomb":
            target_png.unlink()
            shutil.copy(w.root / "bomb.png", target_png)
        elif kind == "bomb-2000":
            target_png.unlink()
            Image.new("RGB", (2000, 2000)).save(target_png)
        elif kind == "unknown-id":
            arr = np.array(Image.open(target_png))
            arr[0, 0] = (9, 9, 9)
            Image.fromarray(arr).save(target_png)
        elif kind == "rgba":
            Image.open(target_png).convert("RGBA").save(target_png)
        else:
            image_variant(target_png, kind)
        argv, outputs = _panoptic_argv(target, w, w.panoptic, pngs, tmp / "out")
        names = [str(target_png)] if code else []
        return Run([*pre, *argv], code, names, PAN_IMG2 if code else None, outputs, protect=[pngs])
    return Case(f"{target}-panoptic-png-{kind}{'-maxpix' if pre else ''}", build)


def panoptic_cases() -> list[Case]:
    cases = []
    for target in ("convert", "eval"):  # eval reads panoptic GT through the converter: the core there
        cases += [_panoptic_case(target, m) for m in [*FILE_MUTS, *OBJECT_FILE_MUTS, *PANOPTIC_MUTS]
                  if target == "convert" or m.name in CORE or m.level == "valid" or m.name.startswith(("segment", "ann-"))]
        cases += [_png_case(target, kind, code) for kind, code in {**PNG_KINDS, "unknown-id": 1}.items()]
        cases.append(_png_case(target, "bomb-2000", 1, ("--max-pixels", "1000000")))
    return cases


# --- EntitySeg (COCO RLE, converted) ---------------------------------------------------------------
def _grid(d: dict) -> None:
    m = np.zeros((6, 8), bool)
    m[1:5, 1:7] = True
    d["annotations"][3]["segmentation"] = m.tolist()


ES_MUTS = [
    *_image_field_muts(1, IMG2),
    Mut("image-id-duplicate", "schema", r"image 1\b", edits=((("images", 1, "id"), 1),)),
    Mut("image-declared-8000-limit", "schema", IMG2, pre=("--max-pixels", "1000000"),
        edits=((("images", 1, "height"), 8000), (("images", 1, "width"), 8000))),
    *(Mut(f"ann-image_id-{n}", "schema", r"(annotation 4\b|annotations\[3\])", edits=((("annotations", 3, "image_id"), v),))
      for n, v in [("list", [2]), ("unknown", 99), ("null", None), ("dict", {"a": 1})]),
    *(Mut(f"ann-id-{n}", "schema", r"annotation", edits=((("annotations", 3, "id"), v),))
      for n, v in [("list", [4]), ("dict", {"a": 1}), ("duplicate", 1)]),
    *(Mut(f"ann-category_id-{n}", "schema", ANN4, edits=((("annotations", 3, "category_id"), v),))
      for n, v in [("list", [3]), ("dict", {"a": 3})]),
    *(Mut(f"ann-segmentation-{n}", "schema", ANN4, edits=((("annotations", 3, "segmentation"), v),))
      for n, v in [("null", None), ("empty-list", []), ("string", "abc"), ("missing", DELETE),
                   ("polygon-nan", [[0, 0, math.nan, 0, 4, 4]]), ("grid-wrong-size", [[True] * 3] * 2),
                   ("grid-values", [[0] * 8] * 5 + [[2] + [0] * 7]), ("grid-ragged", [[0, 1, 1]] * 6)]),
    Mut("ann-entry-string", "schema", r"annotations\[3\]", edits=((("annotations", 3), "x"),)),
    *(m for m in RLE_TYPE_MUTS if m.name not in ("rle-counts-list",)),
    *(Mut(n, "schema", ANN4, fn=f) for n, f in RLE_MUTS),
    Mut("overlap", "schema", r"image 1\b",
        fn=lambda d: d["annotations"][1].update(segmentation=d["annotations"][0]["segmentation"])),
    Mut("categories-number", "schema", "categor", edits=((("categories",), 5),)),
    Mut("categories-list-id", "schema", "categor", edits=((("categories", 0, "id"), [3]),)),
    Mut("rle-counts-list", "valid", edits=_rle4(counts=[9, 4, 2, 4, 2, 4, 2, 4, 17])),
    Mut("ann-segmentation-grid", "valid", fn=_grid),
    Mut("ann-segmentation-polygon", "valid", edits=((("annotations", 3, "segmentation"), [[1, 1, 6, 1, 6, 4, 1, 4]]),)),
    Mut("ann-iscrowd", "valid", edits=((("annotations", 3, "iscrowd"), 1),)),
    Mut("ann-bbox-nan", "valid", edits=((("annotations", 3, "bbox"), [math.nan] * 4),)),
    Mut("string-image-ids", "valid", fn=lambda d: [im.update(id=f"s{im['id']}") for im in d["images"]] and
        [a.update(image_id=f"s{a['image_id']}") for a in d["annotations"]]),
]


def _es_case(mut: Mut) -> Case:
    code = 0 if mut.level == "valid" else 1

    def build(w: World, tmp: Path) -> Run:
        bad = tmp / "in" / "es.json"
        _write_bad(bad, mut.apply(w.es_data, w.entityseg.read_bytes()))
        out = tmp / "out"
        argv = ["convert", "entityseg", str(bad), "-o", str(out / "c.json"), "--id-maps", str(out / "ids"), "-q", "-j", "1"]
        return Run([*mut.pre, *argv], code, [str(bad)] if code else [], mut.item if code else None,
                   [out / "c.json", out / "ids"])
    return Case(f"convert-entityseg-{mut.name}", build)


# --- SAM ---------------------------------------------------------------------------------------------
MASK1 = r"mask (2|\[1\])"


def _sam_counts(fn):
    def f(d):
        anns = d["annotations"] if isinstance(d, dict) else d
        anns[1]["segmentation"]["counts"] = fn(anns[1]["segmentation"]["counts"])
    return f


def _sam_set(key_path: tuple, value: Any):
    def f(d):
        anns = d["annotations"] if isinstance(d, dict) else d
        _set(anns[1], key_path, value)
    return f


def _sam_grid(d):
    anns = d["annotations"] if isinstance(d, dict) else d
    anns[1]["segmentation"] = np.array(Image.new("1", (8, 6), 1)).tolist()


SAM_ANN_MUTS = [
    *(Mut(n, "schema", MASK1, fn=_sam_counts(f)) for n, f in RLE_COUNTS),
    Mut("mask-size-mismatch", "schema", MASK1, fn=_sam_set(("segmentation", "size"), [12, 16])),
    Mut("mask-size-zero", "schema", MASK1, fn=_sam_set(("segmentation", "size"), [0, 8])),
    Mut("mask-counts-list-bad-sum", "schema", MASK1, fn=_sam_set(("segmentation", "counts"), [1, 2])),
    Mut("mask-counts-null", "schema", MASK1, fn=_sam_set(("segmentation", "counts"), None)),
    Mut("mask-segmentation-null", "schema", MASK1, fn=_sam_set(("segmentation",), None)),
    Mut("mask-area-string", "schema", MASK1, fn=_sam_set(("area",), "big")),
    Mut("mask-score-nan", "schema", MASK1, fn=_sam_set(("predicted_iou",), math.nan)),
    Mut("mask-score-missing", "schema", MASK1, fn=_sam_set(("predicted_iou",), DELETE)),
    Mut("mask-score-string", "schema", MASK1, fn=_sam_set(("predicted_iou",), "0.5")),
    Mut("mask-grid", "valid", fn=_sam_grid),
    Mut("mask-counts-uncompressed", "valid", fn=_sam_set(("segmentation", "counts"), [8, 40])),
]
SA1B_MUTS = [
    *(Mut(f"image-{k}-{n}", "schema", "image", edits=((("image", k), v),))
      for k in ("height", "width") for n, v in BAD_NUMBERS if n != "huge"),
    Mut("image-huge", "schema", "image", edits=((("image", "height"), 10**6), (("image", "width"), 10**6))),
    Mut("image-block-list", "schema", None, edits=((("image",), [1]),)),
    Mut("annotations-dict", "schema", None, edits=((("annotations",), {"a": 1}),)),
    Mut("mask-entry-string", "schema", r"mask \[1\]", fn=lambda d: d["annotations"].__setitem__(1, "x")),
    Mut("image-id-list", "valid", edits=((("image", "image_id"), [7]),)),
    Mut("image-file_name-number", "valid", edits=((("image", "file_name"), 5),)),
    Mut("mask-id-list", "valid", edits=((("annotations", 1, "id"), [2]),)),
]
AMG_MUTS = [
    Mut("first-size-zero", "schema", r"mask \[0\]", fn=lambda d: d[0]["segmentation"].update(size=[0, 8])),
    Mut("first-segmentation-string", "schema", r"mask \[0\]", fn=lambda d: d[0].update(segmentation="x")),
    Mut("no-segmentation", "schema", None, fn=lambda d: [a.pop("segmentation") for a in d] and None),
    Mut("entry-number", "schema", r"mask \[1\]", fn=lambda d: d.__setitem__(1, 5)),
]


def _sam_case(kind: str, mut: Mut) -> Case:
    code = 0 if mut.level == "valid" else 1

    def build(w: World, tmp: Path) -> Run:
        src, template = (w.sa1b, w.sa1b_data) if kind == "sa1b" else (w.amg, w.amg_data)
        bad = tmp / "in" / f"bad_{kind}.json"
        _write_bad(bad, mut.apply(template, src.read_bytes()))
        out = tmp / "out"
        argv = ["convert", "sam", str(bad), "--rule", "score", "-o", str(out / "s.json"), "--id-maps", str(out / "ids"),
                "-q", "-j", "1"]
        return Run([*mut.pre, *argv], code, [str(bad)] if code else [], mut.item if code else None,
                   [out / "s.json", out / "ids"])
    return Case(f"convert-sam-{kind}-{mut.name}", build)


def sam_cases() -> list[Case]:
    cases = [_sam_case("sa1b", m) for m in [*FILE_MUTS, *OBJECT_FILE_MUTS, *SA1B_MUTS, *SAM_ANN_MUTS]]
    cases += [_sam_case("amg", m) for m in [*FILE_MUTS, *AMG_MUTS, *SAM_ANN_MUTS]]
    return cases


# --- predictions for eval ------------------------------------------------------------------------------
RES1 = r"(\[1\]|result 1\b|record 1\b|image 1\b|entry 1\b)"
RESULT_MUTS = [
    *(Mut(f"score-{n}", "schema", RES1, edits=(((1, "score"), v),))
      for n, v in [("string", "0.9"), ("nan", math.nan), ("negative", -1), ("null", None), ("missing", DELETE),
                   ("bool", True)]),
    *(Mut(f"image_id-{n}", "schema", RES1, edits=(((1, "image_id"), v),))
      for n, v in [("list", [1]), ("unknown", 99), ("null", None), ("string", "1")]),
    *(Mut(n, "schema", RES1, fn=(lambda f: lambda d: d[1]["segmentation"].update(counts=f(d[1]["segmentation"]["counts"])))(f))
      for n, f in RLE_COUNTS),
    Mut("rle-size-mismatch", "schema", RES1, edits=(((1, "segmentation", "size"), [12, 16]),)),
    Mut("rle-size-zero", "schema", RES1, edits=(((1, "segmentation", "size"), [0, 8]),)),
    Mut("segmentation-null", "schema", RES1, edits=(((1, "segmentation"), None),)),
    Mut("entry-number", "schema", RES1, edits=(((1,), 5),)),
    Mut("empty-list", "valid", fn=lambda d: d.clear()),
]
PREDS_MUTS = [
    Mut("format-wrong", "schema", None, edits=((("format",), "nope"),)),
    Mut("version-2", "schema", None, edits=((("version",), 2),)),
    Mut("images-dict", "schema", None, edits=((("images",), {}),)),
    *(Mut(f"score-{n}", "schema", r"image 1\b", edits=((("images", 0, "segments", 0, "score"), v),))
      for n, v in [("nan", math.nan), ("negative", -1), ("string", "x"), ("missing", DELETE)]),
    *(Mut(f"image_id-{n}", "schema", r"(image|images\[0\])", edits=((("images", 0, "image_id"), v),))
      for n, v in [("list", [1]), ("unknown", 99), ("null", None)]),
    Mut("segment-id-zero", "schema", r"image 1\b", edits=((("images", 0, "segments", 0, "id"), 0),)),
    Mut("segment-missing", "schema", r"image 1\b", fn=lambda d: d["images"][0]["segments"].pop()),
    Mut("file_name-missing-png", "schema", r"image 1\b", edits=((("images", 0, "file_name"), "id_maps/nope.png"),)),
    Mut("file_name-dotdot", "schema", r"image 1\b", edits=((("images", 0, "file_name"), "../ents.json"),)),
    Mut("file_name-null", "schema", r"(image 1\b|images\[0\])", edits=((("images", 0, "file_name"), None),)),
]
IDMAP_PNG_KINDS = {"missing": 1, "zero-bytes": 1, "corrupt-png": 1, "text": 1, "gray": 1, "wrong-size": 1,
                   "folder": 1, "bomb": 1}


def _results_case(mut: Mut) -> Case:
    code = 0 if mut.level == "valid" else 1

    def build(w: World, tmp: Path) -> Run:
        bad = tmp / "in" / "results.json"
        _write_bad(bad, mut.apply(w.results_data, w.results.read_bytes()))
        out = tmp / "out"
        return Run([*mut.pre, "eval", str(w.ents), str(bad), "--json", str(out / "r.json"), "--workers", "1"], code,
                   [str(bad)] if code else [], mut.item if code else None, [out / "r.json"])
    return Case(f"eval-results-{mut.name}", build)


def _preds_case(mut: Mut | None, png_kind: str | None = None, code: int = 1) -> Case:
    def build(w: World, tmp: Path) -> Run:
        folder = tmp / "in" / "preds"
        shutil.copytree(w.preds, folder)
        bad = folder / "predictions.json"
        names = [str(folder)]  # predictions.json or one of its PNGs
        if mut is not None:
            data = mut.apply(w.preds_data, bad.read_bytes())
            bad.unlink()
            _write_bad(bad, data)
        if png_kind is not None:
            png = folder / "id_maps" / "1.png"
            if png_kind == "bomb":
                png.unlink()
                shutil.copy(w.root / "bomb.png", png)
            else:
                image_variant(png, png_kind)
            names = [str(png)]
        out = tmp / "out"
        item = (mut.item if mut is not None else None) if code else None  # a PNG's own path names it
        return Run([*(mut.pre if mut else ()), "eval", str(w.ents), str(folder), "--json", str(out / "r.json"),
                    "--workers", "1"], code, names if code else [], item, [out / "r.json"], protect=[folder])
    return Case(f"eval-preds-{mut.name if mut else 'png-' + png_kind}", build)


def eval_pred_cases() -> list[Case]:
    cases = [_results_case(m) for m in [*FILE_MUTS, *RESULT_MUTS]]
    cases += [_preds_case(m) for m in [*FILE_MUTS, *OBJECT_FILE_MUTS, *PREDS_MUTS]]
    cases += [_preds_case(None, kind, code) for kind, code in IDMAP_PNG_KINDS.items()]
    return cases


# --- photos, id maps and checkpoints (predict, edit, export-onnx) ------------------------------------
def _photo_case(command: str, kind: str, code: int) -> Case:
    def build(w: World, tmp: Path) -> Run:
        photo = tmp / "in" / "photos" / "p.jpg"
        if kind == "bomb":
            photo.parent.mkdir(parents=True)
            shutil.copy(w.root / "bomb.png", photo)
        else:
            image_variant(photo, kind, 48, 64)
        out = tmp / "out"
        if command == "predict":
            argv, outputs = ["predict", str(photo), "-c", str(w.ckpt), "-o", str(out / "pred"), "-q", "--threads", "1"], [out / "pred"]
        elif command == "predict-folder":
            argv, outputs = ["predict", str(photo.parent), "-c", str(w.ckpt), "-o", str(out / "pred"), "-q",
                             "--threads", "1"], [out / "pred"]
        elif command == "edit":
            argv, outputs = ["edit", str(photo), "--id-map", str(w.photo_idmap), "--point", "15", "15", "--op", "cutout",
                             "-o", str(out / "e.png")], [out / "e.png"]
        elif command == "edit-ckpt":
            argv, outputs = ["edit", str(photo), "-c", str(w.ckpt), "--point", "5", "5", "--op", "bokeh",
                             "-o", str(out / "e.png"), "--threads", "1"], [out / "e.png"]
        elif command == "export-onnx":
            argv, outputs = ["export-onnx", str(w.ckpt), "-o", str(out / "m.onnx"), "--size", "32", "32",
                             "--check-image", str(photo)], [out / "m.onnx"]
        else:
            raise ValueError(command)
        if command == "predict-folder" and kind in ("missing", "folder", "text"):
            code_ = 1
        else:
            code_ = code
        named = (str(photo.parent) if command == "predict-folder" and kind in ("missing", "folder") else
                 (str(photo), str(w.photo_idmap)) if command == "edit" else str(photo))
        return Run(argv, code_, [named] if code_ else [], None, outputs, protect=[photo.parent])
    return Case(f"{command}-photo-{kind}", build)


def _idmap_case(kind: str, code: int) -> Case:
    def build(w: World, tmp: Path) -> Run:
        idm = tmp / "in" / "idmap.png"
        if kind == "rgb":
            idm.parent.mkdir(parents=True)
            from entitykit.masks import read_id_map_png, write_id_map_png
            write_id_map_png(idm, read_id_map_png(w.photo_idmap), "rgb")
        elif kind == "bomb":
            idm.parent.mkdir(parents=True)
            shutil.copy(w.root / "bomb.png", idm)
        else:
            image_variant(idm, kind, 48, 64)
        out = tmp / "out"
        return Run(["edit", str(w.photo), "--id-map", str(idm), "--point", "15", "15", "--op", "recolor", "-o",
                    str(out / "e.png")], code, [str(idm)] if code else [], None, [out / "e.png"])
    return Case(f"edit-idmap-{kind}", build)


CKPT_KINDS = {
    "missing": lambda p, w: None,
    "zero-bytes": lambda p, w: p.write_bytes(b""),
    "text": lambda p, w: p.write_text("not a checkpoint"),
    "truncated": lambda p, w: p.write_bytes(w.ckpt.read_bytes()[:5000]),
    "header-only": lambda p, w: p.write_bytes(w.ckpt.read_bytes()[: 8 + int.from_bytes(w.ckpt.read_bytes()[:8], "little")]),
    "huge-header-len": lambda p, w: p.write_bytes((2**62).to_bytes(8, "little") + b"{}"),
    "folder": lambda p, w: p.mkdir(),
    "json": lambda p, w: p.write_text('{"a": 1}'),
    "no-config": lambda p, w: _safetensors_without_config(p),
    "bad-config": lambda p, w: _safetensors_bad_config(p),
}


def _safetensors_without_config(p: Path) -> None:
    import torch
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(p))


def _safetensors_bad_config(p: Path) -> None:
    import torch
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(p), metadata={"format": "entitykit-model", "format_version": "1",
                                                         "config": '{"backbone": 5, "fpn_channels": "x"}'})


def _ckpt_case(command: str, kind: str) -> Case:
    def build(w: World, tmp: Path) -> Run:
        ck = tmp / "in" / "model.safetensors"
        ck.parent.mkdir(parents=True)
        CKPT_KINDS[kind](ck, w)
        out = tmp / "out"
        if command == "predict":
            argv, outputs = ["predict", str(w.photo), "-c", str(ck), "-o", str(out / "pred"), "-q"], [out / "pred"]
        elif command == "edit":
            argv, outputs = ["edit", str(w.photo), "-c", str(ck), "--point", "5", "5", "--op", "bokeh", "-o",
                             str(out / "e.png")], [out / "e.png"]
        elif command == "export-onnx":
            argv, outputs = ["export-onnx", str(ck), "-o", str(out / "m.onnx"), "--size", "32", "32"], [out / "m.onnx"]
        elif command == "train-init":
            argv, outputs = ["train", "--train", str(w.ents), "--init", str(ck), "--max-iter", "1", "-o", str(out / "run"),
                             "-q"], [out / "run"]
        else:
            raise ValueError(command)
        return Run(argv, 1, [str(ck)], None, outputs)
    return Case(f"{command}-checkpoint-{kind}", build)


def model_input_cases() -> list[Case]:
    cases = []
    for kind in BROKEN_IMAGE_KINDS:
        if kind in ("wrong-size", "exif-rotated"):
            continue  # a photo of any size is fine
        for command in ("predict", "predict-folder", "edit", "export-onnx"):
            if command == "predict-folder" and kind in ("corrupt-png", "corrupt-jpeg", "zero-bytes", "bomb"):
                pass
            cases.append(_photo_case(command, kind, 1))
    for kind in ("wrong-size", "exif-rotated"):
        cases.append(_photo_case("edit", kind, 1))  # the id map no longer fits the photo
    for kind in VALID_IMAGE_KINDS:
        for command in ("predict", "edit"):
            cases.append(_photo_case(command, kind, 0))
    cases.append(_photo_case("edit-ckpt", "cmyk", 0))
    for kind, code in {"missing": 1, "zero-bytes": 1, "corrupt-png": 1, "text": 1, "gray": 1, "wrong-size": 1,
                       "folder": 1, "bomb": 1, "palette": 1, "gray16": 0, "rgb": 0}.items():
        cases.append(_idmap_case(kind, code))
    for kind in CKPT_KINDS:
        for command in ("predict", "edit", "export-onnx", "train-init"):
            cases.append(_ckpt_case(command, kind))
    return cases


# --- numeric options, usage errors ----------------------------------------------------------------------
def _opt_case(name: str, argv_fn: Callable[[World, Path], list[str]], code: int, outputs: Callable[[Path], list[Path]],
              names: Callable[[World, Path], list[str]] = lambda w, o: [], item: str | None = None) -> Case:
    def build(w: World, tmp: Path) -> Run:
        out = tmp / "out"
        return Run(argv_fn(w, out), code, names(w, out), item, outputs(out))
    return Case(f"option-{name}", build)


def _pk(extra):
    return lambda w, o: ["pack", str(w.ents), "-o", str(o / "pk"), "-q", *extra]


def _pred(extra):
    return lambda w, o: ["predict", str(w.photo), "-c", str(w.ckpt), "-o", str(o / "pred"), "-q", *extra]


def _edit(extra, op="bokeh", point=("15", "15")):
    return lambda w, o: ["edit", str(w.photo), "--id-map", str(w.photo_idmap), "--point", *point, "--op", op,
                         "-o", str(o / "e.png"), *extra]


def _edit_ck(extra):
    return lambda w, o: ["edit", str(w.photo), "-c", str(w.ckpt), "--point", "5", "5", "--op", "bokeh", "-o",
                         str(o / "e.png"), *extra]


def _synth(extra):
    return lambda w, o: ["synth", str(o / "syn"), "--images", "1", "--height", "16", "--width", "16", *extra]


def _train(extra):
    return lambda w, o: ["train", "--train", str(w.ents), "--preset", "tiny", "--max-iter", "1", "-o", str(o / "run"),
                         "-q", *extra]


def _merge(extra):
    return lambda w, o: ["merge", str(w.ents), str(w.ents2), "-o", str(o / "m.json"), "--split", "train", "-q", *extra]


def _conv(extra):
    return lambda w, o: ["convert", "entityseg", str(w.entityseg), "-o", str(o / "c.json"), "-q", *extra]


def _sam(extra):
    return lambda w, o: ["convert", "sam", str(w.sa1b), "--rule", "score", "-o", str(o / "c.json"), "-q", *extra]


def _eval(extra):
    return lambda w, o: ["eval", str(w.ents), str(w.preds), "--json", str(o / "r.json"), *extra]


def _demo(extra):
    return lambda w, o: ["demo", "-o", str(o / "demo"), *extra]


def _onnx(extra):
    return lambda w, o: ["export-onnx", str(w.ckpt), "-o", str(o / "m.onnx"), *extra]


OPTION_CASES = [
    # (name, argv, code, outputs, item regex)
    ("train-max-iter-negative", _train(["--max-iter", "-5"]), 1, "run", "max_iter"),
    ("train-max-iter-zero", _train(["--max-iter", "0"]), 1, "run", "max_iter"),
    ("train-batch-size-zero", _train(["--batch-size", "0"]), 1, "run", "batch_size"),
    ("train-batch-size-negative", _train(["--batch-size", "-2"]), 1, "run", "batch_size"),
    ("train-lr-nan", _train(["--lr", "nan"]), 1, "run", "lr"),
    ("train-lr-negative", _train(["--lr", "-1"]), 1, "run", "lr"),
    ("train-lr-inf", _train(["--lr", "inf"]), 1, "run", "lr"),
    ("train-weight-nan", _train(["--weight", "nan"]), 1, "run", "weight"),
    ("train-set-unknown", _train(["--set", "nope=1"]), 1, "run", "nope"),
    ("train-set-model-nan", _train(["--set", "model.fpn_channels=nan"]), 1, "run", "fpn_channels"),
    ("train-stop-after-zero", _train(["--stop-after", "0"]), 1, "run", "stop_after"),
    ("train-max-iter-text", _train(["--max-iter", "abc"]), 2, "run", None),
    ("synth-images-negative", _synth(["--images", "-1"]), 1, "syn", "images"),
    ("synth-images-zero", _synth(["--images", "0"]), 1, "syn", "images"),
    ("synth-height-zero", _synth(["--height", "0"]), 1, "syn", "height"),
    ("synth-width-negative", _synth(["--width", "-4"]), 1, "syn", "width"),
    ("synth-segments-negative", _synth(["--segments", "-1"]), 1, "syn", "segments"),
    ("synth-huge", _synth(["--height", "100000", "--width", "100000"]), 1, "syn", None),
    ("synth-seed-negative", _synth(["--seed", "-1"]), 1, "syn", "seed"),
    ("edit-point-nan", _edit(["--blur", "3"], point=("nan", "nan")), 1, "e.png", "point"),
    ("edit-point-inf", _edit([], point=("inf", "1")), 1, "e.png", "point"),
    ("edit-point-outside", _edit([], point=("1000", "5")), 1, "e.png", "point"),
    ("edit-blur-huge", _edit(["--blur", "1e9"]), 1, "e.png", "blur"),
    ("edit-blur-negative", _edit(["--blur", "-1"]), 1, "e.png", "blur"),
    ("edit-blur-nan", _edit(["--blur", "nan"]), 1, "e.png", "blur"),
    ("edit-feather-negative", _edit(["--feather", "-3"]), 1, "e.png", "feather"),
    ("edit-feather-nan", _edit(["--feather", "nan"]), 1, "e.png", "feather"),
    ("edit-hue-nan", _edit(["--hue", "nan"], op="recolor"), 1, "e.png", "hue"),
    ("edit-hue-inf", _edit(["--hue", "inf"], op="recolor"), 1, "e.png", "hue"),
    ("edit-op-unknown", _edit([], op="sharpen"), 2, "e.png", None),  # a fixed choice: a usage error listing them
    ("edit-max-size-zero", _edit_ck(["--max-size", "0"]), 1, "e.png", "max.size"),
    ("edit-min-score-two", _edit_ck(["--min-score", "2"]), 1, "e.png", "min.score"),
    ("edit-min-score-nan", _edit_ck(["--min-score", "nan"]), 1, "e.png", "min.score"),
    ("edit-threads-negative", _edit_ck(["--threads", "-1"]), 1, "e.png", "threads"),
    ("edit-point-text", _edit([], point=("a", "b")), 2, "e.png", None),
    ("predict-min-score-two", _pred(["--min-score", "2"]), 1, "pred", "min.score"),
    ("predict-min-score-nan", _pred(["--min-score", "nan"]), 1, "pred", "min.score"),
    ("predict-max-size-zero", _pred(["--max-size", "0"]), 1, "pred", "max.size"),
    ("predict-max-size-negative", _pred(["--max-size", "-5"]), 1, "pred", "max.size"),
    ("predict-paste-pixels-negative", _pred(["--paste-pixels", "-1"]), 1, "pred", "paste.pixels"),
    ("predict-threads-negative", _pred(["--threads", "-1"]), 1, "pred", "threads"),
    ("predict-device-unknown", _pred(["--device", "tpu"]), 1, "pred", "device"),
    ("predict-no-inputs", lambda w, o: ["predict", "-c", str(w.ckpt), "-o", str(o / "pred"), "-q"], 1, "pred", None),
    ("predict-inputs-and-dataset", lambda w, o: ["predict", str(w.photo), "--dataset", str(w.ents), "-c", str(w.ckpt),
                                                 "-o", str(o / "pred"), "-q"], 1, "pred", None),
    ("predict-glob-nothing", lambda w, o: ["predict", str(w.root / "*.nothing"), "-c", str(w.ckpt), "-o",
                                           str(o / "pred"), "-q"], 1, "pred", None),
    ("pack-shard-images-negative", _pk(["--shard-images", "-1"]), 1, "pk", "shard"),
    ("pack-level-twelve", _pk(["--level", "12"]), 1, "pk", "level"),
    ("pack-level-negative", _pk(["--level", "-1"]), 1, "pk", "level"),
    ("pack-workers-negative", _pk(["--workers", "-3"]), 1, "pk", "workers"),
    ("pack-shard-size-negative", _pk(["--shard-size", "-5"]), 1, "pk", "shard.size"),
    ("pack-shard-size-text", _pk(["--shard-size", "lots"]), 1, "pk", "shard.size"),
    ("pack-shard-size-nan", _pk(["--shard-size", "nan"]), 1, "pk", "shard.size"),
    ("pack-shard-size-inf", _pk(["--shard-size", "inf"]), 1, "pk", "shard.size"),
    ("pack-h5-with-shards", lambda w, o: ["pack", str(w.ents), "-o", str(o / "pk.h5"), "--shard-images", "1", "-q"],
     1, "pk.h5", None),
    ("merge-total-zero", _merge(["--total", "0"]), 1, "m.json", "total"),
    ("merge-total-negative", _merge(["--total", "-1"]), 1, "m.json", "total"),
    ("merge-seed-negative", _merge(["--seed", "-1"]), 1, "m.json", "seed"),
    ("merge-workers-negative", _merge(["--workers", "-3"]), 1, "m.json", "workers"),
    ("merge-weight-nan", _merge(["-w", "toy=nan", "--names", "toy,b"]), 1, "m.json", "weight"),
    ("merge-weight-negative", _merge(["-w", "toy=-1", "-w", "b=1", "--names", "toy,b"]), 1, "m.json", "weight"),
    ("merge-weight-inf", _merge(["-w", "toy=inf", "-w", "b=1", "--names", "toy,b"]), 1, "m.json", "weight"),
    ("merge-weight-malformed", _merge(["-w", "toy"]), 1, "m.json", "weight"),
    ("merge-names-count", _merge(["--names", "a"]), 1, "m.json", "names"),
    ("merge-split-unknown", lambda w, o: ["merge", str(w.ents), "-o", str(o / "m.json"), "--split", "dev", "-q"], 2,
     "m.json", None),
    ("merge-images-unknown-name", _merge(["--images", "zzz=/tmp"]), 1, "m.json", "zzz"),
    ("convert-workers-negative", _conv(["--workers", "-3"]), 1, "c.json", "workers"),
    ("convert-overlap-unknown", _conv(["--overlap", "biggest"]), 2, "c.json", None),
    ("convert-crowd-unknown", _conv(["--crowd", "drop"]), 2, "c.json", None),
    ("convert-id-map-format", lambda w, o: ["convert", "entityseg", str(w.entityseg), "-o", str(o / "c.json"),
                                            "--id-maps", str(o / "ids"), "--id-map-format", "png8", "-q"],
     2, "c.json", None),
    ("convert-sam-min-area-negative", _sam(["--min-area", "-1"]), 1, "c.json", "min.area"),
    ("convert-sam-rule-unknown", lambda w, o: ["convert", "sam", str(w.sa1b), "--rule", "big", "-o",
                                               str(o / "c.json"), "-q"], 2, "c.json", None),
    ("convert-sam-workers-negative", _sam(["--workers", "-3"]), 1, "c.json", "workers"),
    ("idmaps-format-unknown", lambda w, o: ["idmaps", str(w.ents), "-o", str(o / "ids"), "--format", "png8", "-q"],
     2, "ids", None),
    ("eval-max-dets-zero", _eval(["--max-dets", "0"]), 2, "r.json", None),
    ("eval-workers-negative", _eval(["--workers", "-3"]), 1, "r.json", "workers"),
    ("eval-worst-negative", _eval(["--worst", "-1"]), 1, "r.json", "worst"),
    ("eval-overlap-unknown", _eval(["--overlap", "maybe"]), 2, "r.json", None),
    ("export-size-zero", _onnx(["--size", "0", "32"]), 1, "m.onnx", "size"),
    ("export-size-negative", _onnx(["--size", "-32", "32"]), 1, "m.onnx", "size"),
    ("export-size-huge", _onnx(["--size", "100000", "100000"]), 1, "m.onnx", None),
    ("export-opset-low", _onnx(["--size", "32", "32", "--opset", "5"]), 1, "m.onnx", "opset"),
    ("export-opset-high", _onnx(["--size", "32", "32", "--opset", "999"]), 1, "m.onnx", "opset"),
    ("demo-iterations-negative", _demo(["--iterations", "-1"]), 1, "demo", "iterations"),
    ("demo-train-images-zero", _demo(["--iterations", "0", "--train-images", "0"]), 1, "demo", "train.images"),
    ("demo-val-images-negative", _demo(["--iterations", "0", "--val-images", "-2"]), 1, "demo", "val.images"),
    ("demo-seed-negative", _demo(["--iterations", "0", "--seed", "-1"]), 1, "demo", "seed"),
    ("max-pixels-negative", lambda w, o: ["--max-pixels", "-1", "check", str(w.ents)], 1, "x", "max.pixels"),
    ("max-pixels-text", lambda w, o: ["--max-pixels", "lots", "check", str(w.ents)], 2, "x", None),
    ("unknown-option", lambda w, o: ["check", str(w.ents), "--frobnicate"], 2, "x", None),
]


def option_cases() -> list[Case]:
    return [_opt_case(name, argv, code, (lambda o, n=out: [o / n]), item=item)
            for name, argv, code, out, item in OPTION_CASES]


# --- output paths ----------------------------------------------------------------------------------------
def _out_case(name: str, setup: Callable[[World, Path], tuple[list[str], Path, list[Path]]], code: int = 1) -> Case:
    """``setup`` → (argv, the output path that must be named and left as it was, inputs to protect)."""
    def build(w: World, tmp: Path) -> Run:
        argv, out, protect = setup(w, tmp)
        return Run(argv, code, [str(out)] if code else [], None, [out], protect=protect)
    return Case(f"output-{name}", build)


def _mk_folder(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    (p / "keep.txt").write_text("user data")
    return p


def _mk_file(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("user data")
    return p


def _copy_ents(w: World, tmp: Path) -> Path:
    """A copy of ents.json (image_root absolute) that a case may be tempted to overwrite."""
    p = tmp / "in" / "ents.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(w.ents_data))
    return p


FILE_WRITERS: dict[str, Callable[[World, Path, Path], list[str]]] = {  # commands writing one file at `out`
    "convert-panoptic": lambda w, t, o: ["convert", "coco-panoptic", str(w.panoptic), str(w.png_dir), "-o", str(o), "-q", "-j", "1"],
    "convert-entityseg": lambda w, t, o: ["convert", "entityseg", str(w.entityseg), "-o", str(o), "-q", "-j", "1"],
    "convert-sam": lambda w, t, o: ["convert", "sam", str(w.sa1b), "--rule", "score", "-o", str(o), "-q", "-j", "1"],
    "merge": lambda w, t, o: ["merge", str(w.ents), str(w.ents2), "-o", str(o), "--split", "train", "-q"],
    "pack-h5": lambda w, t, o: ["pack", str(w.ents), "-o", str(o), "-q"],
    "edit": lambda w, t, o: ["edit", str(w.photo), "--id-map", str(w.photo_idmap), "--point", "15", "15", "--op",
                             "cutout", "-o", str(o)],
    "export-onnx": lambda w, t, o: ["export-onnx", str(w.ckpt), "-o", str(o), "--size", "32", "32"],
    "eval-json": lambda w, t, o: ["eval", str(w.ents), str(w.preds), "--json", str(o)],
    "eval-pr-curve": lambda w, t, o: ["eval", str(w.ents), str(w.preds), "--pr-curve", str(o)],
}
FOLDER_WRITERS: dict[str, Callable[[World, Path, Path], list[str]]] = {  # commands writing a folder at `out`
    "idmaps": lambda w, t, o: ["idmaps", str(w.ents), "-o", str(o), "-q"],
    "pack": lambda w, t, o: ["pack", str(w.ents), "-o", str(o), "-q"],
    "predict": lambda w, t, o: ["predict", str(w.photo), "-c", str(w.ckpt), "-o", str(o), "-q"],
    "synth": lambda w, t, o: ["synth", str(o), "--images", "1", "--height", "16", "--width", "16"],
    "convert-id-maps": lambda w, t, o: ["convert", "entityseg", str(w.entityseg), "-o", str(t / "out" / "c.json"),
                                        "--id-maps", str(o), "-q", "-j", "1"],
    "demo": lambda w, t, o: ["demo", "-o", str(o), "--iterations", "0", "--train-images", "1", "--val-images", "1"],
    "train": lambda w, t, o: ["train", "--train", str(w.ents), "--preset", "tiny", "--max-iter", "1", "-o", str(o), "-q"],
}


def output_cases() -> list[Case]:
    cases = []
    for name, fn in FILE_WRITERS.items():
        suffix = {"edit": ".png", "export-onnx": ".onnx", "pack-h5": ".h5", "eval-pr-curve": ".png"}.get(name, ".json")
        cases.append(_out_case(f"{name}-is-a-folder", lambda w, t, fn=fn, s=suffix: (
            fn(w, t, _mk_folder(t / "out" / f"o{s}")), t / "out" / f"o{s}", [])))
        cases.append(_out_case(f"{name}-parent-is-a-file", lambda w, t, fn=fn, s=suffix: (
            fn(w, t, _mk_file(t / "out" / "f") / f"o{s}"), t / "out" / "f" / f"o{s}", [t / "out" / "f"])))
    for name, fn in FOLDER_WRITERS.items():
        cases.append(_out_case(f"{name}-is-a-file", lambda w, t, fn=fn: (
            fn(w, t, _mk_file(t / "out" / "o")), t / "out" / "o", [])))
        cases.append(_out_case(f"{name}-parent-is-a-file", lambda w, t, fn=fn: (
            fn(w, t, _mk_file(t / "out" / "f") / "o"), t / "out" / "f" / "o", [t / "out" / "f"])))
        cases.append(_out_case(f"{name}-not-empty", lambda w, t, fn=fn: (
            fn(w, t, _mk_folder(t / "out" / "o")), t / "out" / "o", [])))

    for name, fn in {**FILE_WRITERS, **FOLDER_WRITERS}.items():  # the OS refuses the name (ENAMETOOLONG)
        cases.append(_out_case(f"{name}-name-too-long", lambda w, t, fn=fn: (
            fn(w, t, t / "out" / ("x" * 300)), t / "out" / ("x" * 300), [])))

    # an output that is one of the inputs (or holds them)
    def own(name, fn):
        cases.append(_out_case(f"own-input-{name}", fn))

    own("merge-first", lambda w, t: (lambda a: (["merge", str(a), str(w.ents2), "-o", str(a), "--split", "train", "-q"],
                                                a, [a]))(_copy_ents(w, t)))
    own("merge-holdout", lambda w, t: (lambda a: (["merge", str(w.ents2), "--holdout", str(a), "-o", str(a), "--split",
                                                   "train", "-q"], a, [a]))(_copy_ents(w, t)))
    own("merge-relative-spelling", lambda w, t: (lambda a: (["merge", str(a), str(w.ents2), "-o",
                                                             str(a.parent / "." / ".." / a.parent.name / a.name),
                                                             "--split", "train", "-q"], a, [a]))(_copy_ents(w, t)))

    def conv_own(w, t):
        src = t / "in" / "es.json"
        src.parent.mkdir(parents=True)
        shutil.copy(w.entityseg, src)
        return ["convert", "entityseg", str(src), "-o", str(src), "-q"], src, [src]
    own("convert-entityseg", conv_own)

    def pan_own(w, t):
        src = t / "in" / "panoptic.json"
        src.parent.mkdir(parents=True)
        shutil.copy(w.panoptic, src)
        return ["convert", "coco-panoptic", str(src), str(w.png_dir), "-o", str(src), "-q"], src, [src]
    own("convert-panoptic", pan_own)

    def pan_png_own(w, t):
        pngs = t / "in" / "pngs"
        shutil.copytree(w.png_dir, pngs)
        return (["convert", "coco-panoptic", str(w.panoptic), str(pngs), "-o", str(t / "out" / "c.json"), "--id-maps",
                 str(pngs), "-q"], pngs, [pngs])
    own("convert-id-maps-into-png-dir", pan_png_own)

    def sam_own(w, t):
        d = t / "in" / "sam"
        shutil.copytree(w.sa1b.parent, d)
        return ["convert", "sam", str(d), "--rule", "score", "-o", str(d), "-q"], d, [d]
    own("convert-sam-folder", sam_own)

    def idmaps_own(w, t):
        a = _copy_ents(w, t)
        return ["idmaps", str(a), "-o", str(a.parent), "-q"], a.parent, [a]
    own("idmaps-folder-of-input", idmaps_own)

    def pack_own(w, t):
        a = _copy_ents(w, t)
        return ["pack", str(a), "-o", str(a.parent), "-q", "--overwrite"], a.parent, [a]
    own("pack-folder-of-input", pack_own)

    def pack_images_own(w, t):
        img = t / "in" / "img"
        shutil.copytree(w.img, img)
        data = copy.deepcopy(w.ents_data)
        data["info"]["image_root"] = str(img)
        a = t / "in" / "ents.json"
        a.write_text(json.dumps(data))
        return ["pack", str(a), "-o", str(img), "-q", "--overwrite"], img, [img, a]
    own("pack-over-image-folder", pack_images_own)

    def pack_h5_own(w, t):
        a = _copy_ents(w, t)
        return ["pack", str(a), "-o", str(a), "-q", "--overwrite"], a, [a]
    own("pack-h5-is-input", pack_h5_own)

    def predict_own(w, t):
        photos = t / "in" / "photos"
        shutil.copytree(w.photo.parent, photos)
        return (["predict", str(photos), "-c", str(w.ckpt), "-o", str(photos), "-q", "--overwrite"], photos, [photos])
    own("predict-over-photo-folder", predict_own)

    def predict_parent_own(w, t):
        photos = t / "in" / "photos"
        shutil.copytree(w.photo.parent, photos)
        return (["predict", str(photos / "photo.jpg"), "-c", str(w.ckpt), "-o", str(photos), "-q", "--overwrite"],
                photos, [photos])
    own("predict-over-folder-of-photo", predict_parent_own)

    def predict_ds_own(w, t):
        img = t / "in" / "img"
        shutil.copytree(w.img, img)
        data = copy.deepcopy(w.ents_data)
        data["info"]["image_root"] = str(img)
        a = t / "in" / "ents.json"
        a.write_text(json.dumps(data))
        return (["predict", "--dataset", str(a), "-c", str(w.ckpt), "-o", str(img), "-q", "--overwrite"], img, [img, a])
    own("predict-over-dataset-images", predict_ds_own)

    def predict_ckpt_own(w, t):
        ck = t / "in" / "m.safetensors"
        ck.parent.mkdir(parents=True)
        shutil.copy(w.ckpt, ck)
        return (["predict", str(w.photo), "-c", str(ck), "-o", str(ck.parent), "-q", "--overwrite"], ck.parent, [ck])
    own("predict-over-checkpoint-folder", predict_ckpt_own)

    def edit_own(w, t):
        p = t / "in" / "photo.png"
        p.parent.mkdir(parents=True)
        Image.open(w.photo).save(p)
        return (["edit", str(p), "--id-map", str(w.photo_idmap), "--point", "15", "15", "--op", "bokeh", "-o", str(p)],
                p, [p])
    own("edit-over-photo", edit_own)

    def edit_idmap_own(w, t):
        p = t / "in" / "idmap.png"
        p.parent.mkdir(parents=True)
        shutil.copy(w.photo_idmap, p)
        return (["edit", str(w.photo), "--id-map", str(p), "--point", "15", "15", "--op", "bokeh", "-o", str(p)], p, [p])
    own("edit-over-idmap", edit_idmap_own)

    def export_own(w, t):
        ck = t / "in" / "m.safetensors"
        ck.parent.mkdir(parents=True)
        shutil.copy(w.ckpt, ck)
        return ["export-onnx", str(ck), "-o", str(ck), "--size", "32", "32"], ck, [ck]
    own("export-onnx-over-checkpoint", export_own)

    def eval_own(w, t):
        a = _copy_ents(w, t)
        return ["eval", str(a), str(w.preds), "--json", str(a)], a, [a]
    own("eval-json-over-gt", eval_own)

    def eval_pred_own(w, t):
        p = t / "in" / "results.json"
        p.parent.mkdir(parents=True)
        shutil.copy(w.results, p)
        return ["eval", str(w.ents), str(p), "--json", str(p)], p, [p]
    own("eval-json-over-predictions", eval_pred_own)

    def synth_own(w, t):
        d = t / "in" / "data"
        _mk_folder(d)
        return ["synth", str(d), "--images", "1", "--height", "16", "--width", "16", "--overwrite"], d, []
    own("synth-overwrite-replaces-a-folder", synth_own)
    return cases


OWN_OK = {"output-own-input-synth-overwrite-replaces-a-folder": 0}  # --overwrite given: replacing is what was asked


# ------------------------------------------------------------------------------------------ the matrix
def all_cases() -> list[Case]:
    cases = [*entity_cases(), *panoptic_cases(), *(_es_case(m) for m in [*FILE_MUTS, *OBJECT_FILE_MUTS, *ES_MUTS]),
             *sam_cases(), *eval_pred_cases(), *model_input_cases(), *option_cases(), *output_cases()]
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, dup
    return cases


# Known failures in code this suite may not change (entitykit/evaluation, entitykit/train.py): case id →
# what it does instead. Skipped with the reason so the suite stays green; reported to their owners.
# `eval`'s typed GT reader accepts some entries the dataset layer's rules refuse (the GT is scored), and
# blames some GT problems on the predictions' files. Remove an entry once its case passes.
KNOWN_OPEN: dict[str, str] = {
}

CASES = all_cases()


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``folder`` with its size and modification time (a change shows)."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.rglob("*"):
        st = p.stat()
        out[str(p.relative_to(folder))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def _listed_files_inside(folder: Path) -> list[str]:
    """Problems with the files an index (id_maps.json, predictions.json) lists: each must exist below ``folder``."""
    problems = []
    for index, keys in (("id_maps.json", ("file_name",)), ("predictions.json", ("file_name", "overlay"))):
        if not (folder / index).is_file():
            continue
        for rec in json.loads((folder / index).read_text())["images"]:
            for key in keys:
                if key not in rec:
                    continue
                target = (folder / rec[key]).resolve()
                if not target.is_relative_to(folder.resolve()) or not target.is_file():
                    problems.append(f"{index}: {rec[key]!r} is not a file inside {folder}")
    return problems


def run_case(case: Case, w: World, tmp: Path) -> tuple[Run, Any]:
    spec = case.build(w, tmp)
    if case.id in OWN_OK:
        spec.code, spec.names = OWN_OK[case.id], []
    (tmp / "out").mkdir(exist_ok=True)
    before = {p: snapshot(p) for p in spec.outputs}
    protected = {p: snapshot(p) for p in spec.protect}
    world_before = _listing(w.root)
    result = runner.invoke(app, [str(a) for a in spec.argv], catch_exceptions=True)
    return spec, (result, before, protected, world_before)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: World, tmp_path: Path) -> None:
    if case.id in KNOWN_OPEN:
        pytest.skip(f"known open (code not owned here): {KNOWN_OPEN[case.id]}")
    spec, (result, before, protected, world_before) = run_case(case, world, tmp_path)
    out = result.output
    err = result.stderr
    where = f"\n$ entitykit {' '.join(spec.argv)}\n{out}"
    assert isinstance(result.exception, (SystemExit, type(None))), f"uncaught {result.exception!r}{where}"
    assert "Traceback" not in out, where
    assert "internal error" not in out, where
    assert result.exit_code == spec.code, f"exit {result.exit_code}, expected {spec.code}{where}"
    if spec.code == 2:
        assert "Usage:" in out or "Error" in out, where
    if spec.code == 1:
        line = last_line(err) or last_line(out)
        for name in spec.names:
            options = name if isinstance(name, tuple) else (name,)
            assert any(n in line for n in options), f"last line does not name {' or '.join(options)}: {line!r}{where}"
        if spec.item:
            assert re.search(spec.item, line), f"last line does not name the item /{spec.item}/: {line!r}{where}"
    for p in spec.outputs:
        if spec.code == 0:
            assert p.exists(), f"{p} not written{where}"
            assert not _listed_files_inside(p), f"{_listed_files_inside(p)}{where}"
        else:
            assert snapshot(p) == before[p], f"{p} {'changed' if before[p] is not None else 'was written'}{where}"
        assert not tmp_leftovers(p.parent), f"temporary folders left beside {p}: {tmp_leftovers(p.parent)}{where}"
    for p, snap in protected.items():
        assert snapshot(p) == snap, f"input {p} was changed{where}"
    assert _listing(world.root) == world_before, f"the shared inputs changed{where}"
    declared = [p for p in [*spec.outputs, *spec.protect] if p.is_relative_to(tmp_path / "out")]
    stray = {s for s in _listing(tmp_path / "out")
             if not any((tmp_path / "out" / s) == p or p in (tmp_path / "out" / s).parents for p in declared)}
    assert not stray, f"files written outside the declared outputs: {sorted(stray)}{where}"


def test_matrix_is_large_and_covers_every_command() -> None:
    commands = {"convert", "check", "info", "idmaps", "merge", "pack", "train", "predict", "edit", "eval",
                "export-onnx", "synth", "demo"}
    covered = {c.id.split("-")[0] for c in CASES} | {c.id.split("-")[1] for c in CASES if c.id.startswith(("option-", "output-"))}
    covered |= {"export-onnx" for c in CASES if "export-onnx" in c.id}
    assert commands <= covered, commands - covered
    assert len(CASES) >= 400
