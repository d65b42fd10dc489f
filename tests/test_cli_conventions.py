"""What users see and type: the conventions every command follows.

Results on stdout, progress and logs on stderr; ``-q`` leaves only errors and the results asked
for; ``--json -`` (eval) and ``--json`` (check, info) print parseable JSON on a pipe; fixed-choice
options list their choices and refuse anything else; readable metavars; ``--version``; shell
completion; ``edit`` does not overwrite without ``--overwrite``; tables fit 80 columns; ``info``
prints the JSON's median; and start-up never imports PyTorch for help or for data commands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.dataset import EntityDataset
from entitykit.masks import encode_id_map, rle_bbox, write_id_map_png

runner = CliRunner()
HEAVY = ("torch", "torchvision", "matplotlib")


# ---------------------------------------------------------------------------------------------
# fixtures: a tiny dataset (synth → convert), predictions for it, a photo with an id map


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from entitykit.convert import convert_coco_panoptic
    from entitykit.synth import write_synthetic_panoptic

    root = tmp_path_factory.mktemp("tiny")
    pan = write_synthetic_panoptic(root / "s", 3, height=48, width=64, segments=5, seed=0)
    ds = convert_coco_panoptic(pan, image_root=root / "s" / "images")
    ds.save(root / "train.json")
    ds2 = convert_coco_panoptic(write_synthetic_panoptic(root / "s2", 2, height=48, width=64, segments=5, seed=1),
                                image_root=root / "s2" / "images")
    ds2.save(root / "train2.json")
    preds = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": 0.9} for a in ds.annotations]
    (root / "preds.json").write_text(json.dumps(preds))
    photo = np.zeros((24, 32, 3), np.uint8)
    photo[:, :, 1] = 120
    Image.fromarray(photo).save(root / "photo.png")
    ids = np.zeros((24, 32), np.int32)
    ids[4:20, 8:24] = 3
    write_id_map_png(root / "photo_ids.png", ids)
    return {"root": root, "pan": pan, "ents": root / "train.json", "ents2": root / "train2.json",
            "preds": root / "preds.json", "photo": root / "photo.png", "photo_ids": root / "photo_ids.png"}


def _entitykit(args: list, *, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """A real `python -m entitykit` process, stdout and stderr piped (neither is a terminal)."""
    return subprocess.run([sys.executable, "-m", "entitykit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------------------------------------
# the command tree


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(cmd, path: tuple[str, ...], ctx) -> None:
        paths.append(path)
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                walk(sub, (*path, name), typer.Context(sub, info_name=name, parent=ctx))

    walk(root, (), typer.Context(root, info_name="entitykit"))
    return paths


def _tree() -> dict[tuple[str, ...], object]:
    root = typer.main.get_command(app)
    out = {}
    for path in _command_paths():
        cmd, ctx = root, typer.Context(root, info_name="entitykit")
        for name in path:
            cmd = cmd.get_command(ctx, name)
            ctx = typer.Context(cmd, info_name=name, parent=ctx)
        out[path] = cmd
    return out


COMMAND_PATHS = _command_paths()
TYPE_NAMES = re.compile(r"<(?:int|float|str|bool|path|Path|list|List|tuple|Tuple|dict|datetime|uuid|bytes|text)\b[^>]*>|"
                        r"\b(?:list|List|Optional|Tuple|tuple)\[|\bint range\b|\bNoneType\b|\bPosixPath\b")


def test_the_tree_holds_every_command():
    names = {p[0] for p in COMMAND_PATHS if p}
    assert {"convert", "check", "info", "idmaps", "merge", "pack", "train", "predict", "edit", "eval", "export-onnx",
            "import-weights", "synth", "demo"} <= names
    assert {("convert", s) for s in ("coco-panoptic", "cityscapes", "ade20k", "entityseg", "sam")} <= set(COMMAND_PATHS)


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=[" ".join(p) or "entitykit" for p in COMMAND_PATHS])
def test_help_exits_0_without_type_names(path):
    r = runner.invoke(app, [*path, "--help"])
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert text.startswith("Usage: "), text
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage  # DATASET, [PNG_DIR], INPUTS... — not {dataset}
    found = TYPE_NAMES.findall(text)
    assert not found, f"Python type names in `entitykit {' '.join(path)} --help`: {found}\n{text}"


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"entitykit {version('entitykit')}"
    from entitykit import __version__

    assert __version__ == version("entitykit")


def test_shell_completion_is_offered():
    r = runner.invoke(app, ["--help"])
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    # the installed script, in a fresh process: in-process, Typer's completion depends on earlier tests' state
    script = Path(sys.executable).with_name("entitykit")
    if not script.exists():
        pytest.skip("the entitykit console script is not installed beside this Python")
    r = subprocess.run([str(script), "--show-completion", "bash"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "_ENTITYKIT_COMPLETE" in r.stdout, r.stderr


# ---------------------------------------------------------------------------------------------
# fixed choices


def _choices_of(p) -> list | None:
    """The fixed values of a parameter: typer >= 0.28 keeps them on ``type_descriptor``, typer 0.27
    (its vendored click) on the parameter's type."""
    desc = getattr(p, "type_descriptor", None)
    if desc is not None:
        return list(desc.choices) if desc.is_choice else None
    choices = getattr(getattr(p, "type", None), "choices", None)
    return None if choices is None else list(choices)


def _choice_params() -> list[tuple[tuple[str, ...], object, object]]:
    out = []
    for path, cmd in _tree().items():
        for p in getattr(cmd, "params", ()):
            if _choices_of(p) is not None and p.param_type_name == "option":
                out.append((path, cmd, p))
    return out


CHOICE_PARAMS = _choice_params()
EXPECTED_CHOICES = {
    (("convert", "coco-panoptic"), "--crowd"), (("convert", "cityscapes"), "--crowd"),
    (("convert", "entityseg"), "--crowd"), (("convert", "entityseg"), "--overlap"),
    (("convert", "sam"), "--rule"), (("convert", "ade20k"), "--form"), (("convert", "ade20k"), "--split"),
    (("convert", "cityscapes"), "--split"), (("convert", "coco-panoptic"), "--id-map-format"),
    (("convert", "sam"), "--id-map-format"), (("idmaps",), "--format"), (("edit",), "--op"), (("merge",), "--split"),
    (("eval",), "--format"), (("eval",), "--overlap"), (("eval",), "--crowd"), (("train",), "--preset"),
}


def test_every_fixed_set_option_is_a_choice():
    have = {(path, o) for path, _cmd, p in CHOICE_PARAMS for o in p.opts}
    assert EXPECTED_CHOICES <= have, EXPECTED_CHOICES - have


def _placeholder(p) -> list[str]:
    choices = _choices_of(p)
    if choices:
        return [str(getattr(choices[0], "value", choices[0]))]
    if p.nargs > 1:
        return ["1"] * p.nargs
    if (getattr(p.type, "name", "") or "").split(" ")[0] in ("int", "integer", "float"):
        return ["1"]
    return ["x"]


@pytest.mark.parametrize("path,cmd,param", CHOICE_PARAMS,
                         ids=[f"{' '.join(p)} {q.opts[-1]}" for p, _c, q in CHOICE_PARAMS])
def test_a_wrong_choice_is_refused_with_the_list(path, cmd, param):
    argv = [*path]
    for p in cmd.params:  # required arguments and options get a valid placeholder; the option under test a wrong value
        if p is param or not p.required:
            continue
        argv += ([p.opts[0]] if p.param_type_name == "option" else []) + _placeholder(p)
    argv += [param.opts[0], "bogus"]
    r = runner.invoke(app, argv)
    choices = [str(getattr(c, "value", c)) for c in _choices_of(param)]
    assert r.exit_code == 2, r.output
    assert "bogus" in r.output and all(f"'{c}'" in r.output for c in choices), r.output
    help_text = runner.invoke(app, [*path, "--help"]).stdout
    assert "[" + "|".join(choices) + "]" in help_text  # and --help lists them


def test_cli_choices_equal_the_librarys():
    # the CLI writes these out so that --help need not import the library (or PyTorch)
    from typing import get_args

    from entitykit import edit, masks, merge, pack, predict
    from entitykit.cli import data, merge_pack, predict_edit
    from entitykit.convert import _common, ade20k, sam

    assert get_args(data.IdMapFormat) == masks.ID_MAP_FORMATS
    assert set(get_args(data.CrowdMode)) == set(_common.CROWD_MODES)
    assert set(get_args(data.EntitySegOverlap)) == set(_common.OVERLAP_RULES) - {"score"}
    assert get_args(data.SamRule) == sam.SAM_RULES
    assert set(get_args(data.Ade20kSplit)) == set(ade20k.SPLITS)
    assert get_args(merge_pack.Split) == merge.SPLITS
    assert merge_pack.DEFAULT_SHARD_IMAGES == pack.DEFAULT_SHARD_IMAGES
    assert get_args(predict_edit.EditOp) == edit.OPS
    assert predict_edit.FULL_PASTE_PIXELS == predict.FULL_PASTE_PIXELS
    from entitykit import visualize

    assert predict_edit.OVERLAY_ALPHA == visualize.DEFAULT_ALPHA
    from entitykit.cli import train
    from entitykit.model.config import PRESETS

    assert set(get_args(train.Preset)) == set(PRESETS)


# ---------------------------------------------------------------------------------------------
# stdout is for results


def test_check_json_on_a_pipe_is_pure_json_and_progress_goes_to_stderr(tiny):
    r = _entitykit(["check", tiny["ents"], "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True  # nothing but the JSON on stdout
    assert "check masks" in r.stderr  # the progress lines, on stderr


def test_the_terminal_bar_goes_to_stderr_too(tiny):
    r = _entitykit(["check", tiny["ents"], "--json"], env={"FORCE_COLOR": "1"})  # rich: a terminal, draw the bar
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    assert "\x1b[" in r.stderr and "check masks" in r.stderr and "3/3" in r.stderr


def test_info_json_on_a_pipe_parses(tiny):
    r = _entitykit(["info", tiny["ents"], "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["images"] == 3


def test_eval_json_dash_on_a_pipe_parses_and_tables_go_to_stderr(tiny):
    r = _entitykit(["eval", tiny["ents"], tiny["preds"], "--json", "-", "--workers", "1"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "entitykit-eval" and doc["stats"][0] == pytest.approx(1.0)
    assert "APe" in r.stderr  # the human report still shows, on stderr
    assert not (Path.cwd() / "-").exists()


def test_progress_lines_without_a_terminal_go_to_stderr(tiny, tmp_path):
    r = runner.invoke(app, ["convert", "coco-panoptic", str(tiny["pan"]), "-o", str(tmp_path / "c.json"), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert re.search(r"convert \S+: 3/3 \(100%\) in ", r.stderr), r.stderr
    assert "100%" not in r.stdout and "converted" in r.stdout


def test_line_progress_every_step_or_interval():
    from entitykit.progress import LineProgress

    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    class Stream(list):
        def write(self, s):
            self.append(s)

        def flush(self):
            pass

    clock, stream = Clock(), Stream()
    p = LineProgress("work", 100, clock=clock, stream=stream)
    for _ in range(9):  # 9 %: no 10 % mark, under 10 s: nothing
        clock.t += 1.0
        p.advance()
    assert stream == []
    clock.t += 1.0
    p.advance()  # 10 %
    assert stream == ["work: 10/100 (10%), 10 s elapsed, eta 1:30\n"]
    clock.t += 10.0
    p.advance()  # 11 %, 10 s later
    assert len(stream) == 2 and stream[1].startswith("work: 11/100 (11%)")
    clock.t += 0.1
    p.advance(9)  # 20 %, but a tenth of a second later: wait for the next
    assert len(stream) == 2
    p.advance(80)  # done
    assert stream[-1] == "work: 100/100 (100%) in 20 s\n"
    p.finish()
    assert len(stream) == 3


# ---------------------------------------------------------------------------------------------
# -q


QUIET_RUNS = ("synth", "convert", "check", "info", "idmaps", "merge", "pack", "eval", "edit", "demo", "train")


def _quiet_runs(tiny, out: Path) -> dict[str, list]:
    return {
        "synth": ["synth", out / "s", "--images", "2", "--height", "32", "--width", "40"],
        "convert": ["convert", "coco-panoptic", tiny["pan"], "-o", out / "c.json", "-j", "1", "--id-maps", out / "cid"],
        "check": ["check", tiny["ents"]],
        "info": ["info", tiny["ents"]],
        "idmaps": ["idmaps", tiny["ents"], "-o", out / "ids"],
        "merge": ["merge", tiny["ents"], tiny["ents2"], "-o", out / "m.json", "--names", "a,b", "--split", "train"],
        "pack": ["pack", tiny["ents"], "-o", out / "pk", "--verify"],
        "eval": ["eval", tiny["ents"], tiny["preds"], "--workers", "1", "--json", out / "r.json"],
        "edit": ["edit", tiny["photo"], "--id-map", tiny["photo_ids"], "--point", "10", "10", "--op", "cutout",
                 "-o", out / "e.png"],
        "demo": ["demo", "-o", out / "demo", "--iterations", "0", "--train-images", "2", "--val-images", "1"],
        "train": ["train", "--train", tiny["ents"], "-o", out / "run", "--preset", "tiny", "--max-iter", "1",
                  "--batch-size", "2", "--threads", "1", "--set", "min_sizes=[48]", "--set", "max_size=64"],
    }


@pytest.mark.parametrize("name", QUIET_RUNS)
def test_quiet_leaves_stdout_empty(name, tiny, tmp_path):
    import shutil

    argv = _quiet_runs(tiny, tmp_path)[name]
    assert set(_quiet_runs(tiny, tmp_path)) == set(QUIET_RUNS)
    loud = runner.invoke(app, [str(a) for a in argv])
    assert loud.exit_code == 0, loud.output
    assert loud.stdout.strip() or loud.stderr.strip(), f"{name} says nothing without -q"
    for p in tmp_path.iterdir():  # again, from scratch
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    quiet = runner.invoke(app, [str(a) for a in argv] + ["-q"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "", quiet.stdout
    assert quiet.stderr == "", quiet.stderr  # no progress either


@pytest.mark.parametrize("argv", [["check", "{ents}", "--json", "-q"], ["info", "{ents}", "--json", "-q"],
                                  ["eval", "{ents}", "{preds}", "--json", "-", "-q", "--workers", "1"]])
def test_quiet_keeps_the_json_asked_for(argv, tiny):
    r = runner.invoke(app, [a.format(**tiny) for a in argv])
    assert r.exit_code == 0, r.output
    assert isinstance(json.loads(r.stdout), dict) and r.stderr == ""


def test_quiet_keeps_errors(tiny, tmp_path):
    bad = json.loads(Path(tiny["ents"]).read_text())
    bad["annotations"][0]["area"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = runner.invoke(app, ["check", str(tmp_path / "bad.json"), "-q"])
    assert r.exit_code == 1 and r.stdout == "" and "error:" in r.stderr and "area" in r.stderr


def test_verbose_lists_every_problem(tiny, tmp_path):
    from entitykit.convert import convert_coco_panoptic
    from entitykit.synth import write_synthetic_panoptic

    ds = convert_coco_panoptic(write_synthetic_panoptic(tmp_path / "s", 3, height=64, width=80, segments=30, seed=2))
    for a in ds.annotations:
        a["area"] += 1
    ds.save(tmp_path / "bad.json")
    n = len(ds.annotations)
    assert n > 55
    r = runner.invoke(app, ["check", str(tmp_path / "bad.json"), "--no-image-files"])
    assert r.exit_code == 1 and r.stderr.count("✗") == 50 and f"{n - 50} more" in r.stderr
    r = runner.invoke(app, ["check", str(tmp_path / "bad.json"), "--no-image-files", "-v"])
    assert r.exit_code == 1 and r.stderr.count("✗") == n


# ---------------------------------------------------------------------------------------------
# edit's output, info's median, 80 columns


def test_edit_refuses_to_overwrite_without_overwrite(tiny, tmp_path):
    argv = ["edit", str(tiny["photo"]), "--id-map", str(tiny["photo_ids"]), "--point", "10", "10", "--op", "recolor",
            "-o", str(tmp_path / "e.png")]
    assert runner.invoke(app, argv).exit_code == 0
    before = (tmp_path / "e.png").read_bytes()
    r = runner.invoke(app, [*argv[:-4], "--op", "bokeh", "-o", str(tmp_path / "e.png")])
    assert r.exit_code == 1 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert (tmp_path / "e.png").read_bytes() == before
    r = runner.invoke(app, [*argv[:-4], "--op", "bokeh", "-o", str(tmp_path / "e.png"), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e.png").read_bytes() != before


def _counted_dataset(path: Path, counts: list[int], source: str = "d") -> Path:
    """One 16×16 image per count, with that many one-pixel-row entities."""
    images, anns = [], []
    for i, k in enumerate(counts, start=1):
        m = np.zeros((16, 32), np.int64)
        for e in range(k):
            m[e % 16, (e // 16) * 2:(e // 16) * 2 + 2] = e + 1
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 16, "width": 32, "source": source})
        _ids, rles, areas = encode_id_map(m)
        for rle, area, box in zip(rles, areas.tolist(), rle_bbox(rles).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle, "area": area,
                         "bbox": box, "iscrowd": 0, "source": source})
    EntityDataset(images=images, annotations=anns, image_root=path.parent).save(path)
    return path


def test_info_prints_the_jsons_median(tmp_path):
    path = _counted_dataset(tmp_path / "d.json", [23, 24])
    st = json.loads(runner.invoke(app, ["info", str(path), "--json"]).stdout)
    assert st["entities_per_image"]["p50"] == 23.5
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0 and "median 23.5" in r.stdout


def test_tables_fit_80_columns(tiny, tmp_path):
    long = "a_rather_long_dataset_name_without_any_spaces_in_it_at_all_2017"
    a = _counted_dataset(tmp_path / f"{long}_train.json", [3, 4], source=long)
    b = _counted_dataset(tmp_path / "other_train.json", [2], source="other_source_with_a_long_name_too")
    runs = [
        ["info", a],
        ["merge", a, b, "-o", tmp_path / "m.json", "--split", "train", "--no-content-check", "-w",
         f"{long}=1", "-w", "other_source_with_a_long_name_too=2", "-n", "5"],
        ["convert", "coco-panoptic", tiny["pan"], "-o", tmp_path / f"{long}.json", "-j", "1"],
        ["eval", tiny["ents"], tiny["preds"], "--workers", "1"],
    ]
    for argv in runs:
        r = _entitykit(argv, env={"COLUMNS": "80"})
        assert r.returncode == 0, r.stderr
        wide = [line for line in r.stdout.splitlines() if len(line) > 80]
        assert not wide, f"entitykit {' '.join(map(str, argv))}:\n" + "\n".join(wide)


# ---------------------------------------------------------------------------------------------
# start-up: no PyTorch for help, version or data commands

RUNNER = r"""
import json, sys
import entitykit.cli
report = []
for args in json.loads(sys.argv[1]):
    try:
        code = entitykit.cli.app(args, standalone_mode=False)
    except SystemExit as e:
        code = e.code
    except Exception as e:  # a usage error: reported, the import check still counts
        code = repr(e)
    report.append({"args": args, "code": code, "heavy": [m for m in %r if m in sys.modules]})
sys.stdout.write("\nREPORT " + json.dumps(report) + "\n")
""" % (HEAVY,)


def _run_in_one_process(commands: list[list[str]]) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.rsplit("REPORT ", 1)[1])


def test_help_and_version_do_not_import_torch():
    helps = [["--help"], ["--version"]] + [[*p, "--help"] for p in COMMAND_PATHS if p]
    for rec in _run_in_one_process(helps):
        assert rec["code"] in (0, None), rec
        assert rec["heavy"] == [], f"`entitykit {' '.join(rec['args'])}` imported {rec['heavy']}"


def test_data_commands_do_not_import_torch(tiny, tmp_path):
    o = tmp_path
    commands = [
        ["synth", o / "s", "--images", "2", "--height", "32", "--width", "40", "-q"],
        ["convert", "coco-panoptic", tiny["pan"], "-o", o / "c.json", "-j", "1", "-q"],
        ["check", tiny["ents"], "-q"],
        ["info", tiny["ents"]],
        ["info", tiny["ents"], "--json"],
        ["idmaps", tiny["ents"], "-o", o / "ids", "-q"],
        ["merge", tiny["ents"], tiny["ents2"], "-o", o / "m.json", "--names", "a,b", "--split", "train", "-q"],
        ["pack", tiny["ents"], "-o", o / "pk", "-q", "--verify"],
        ["eval", tiny["ents"], tiny["preds"], "--workers", "1", "--json", o / "r.json", "-q"],
        ["edit", tiny["photo"], "--id-map", tiny["photo_ids"], "--point", "10", "10", "--op", "cutout", "-o",
         o / "e.png", "-q"],
    ]
    report = _run_in_one_process([[str(a) for a in c] for c in commands])
    for rec in report:
        assert rec["code"] in (0, None), rec
        assert rec["heavy"] == [], f"`entitykit {' '.join(rec['args'])}` imported {rec['heavy']}"
    assert (o / "pk").is_dir() and (o / "r.json").is_file() and (o / "e.png").is_file()


def test_one_problem_is_one_line(tiny, tmp_path):
    """A command refusing a list of problems (ProblemsError) prints the list only when there is more
    than one: a single problem is exactly one line, the error line."""
    ents = str(tiny["ents"])
    r = runner.invoke(app, ["merge", ents, ents, "-o", str(tmp_path / "m.json"), "--no-content-check", "--split", "train"])
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:") and "also the name of" in lines[0], lines
    assert not (tmp_path / "m.json").exists()


def test_check_prints_one_problem_once(tiny, tmp_path):
    """check's ✗ list is for several problems; one problem is its error line only, and -q keeps only
    the error line whatever the count."""
    data = json.loads(Path(tiny["ents"]).read_text())
    data["annotations"][0]["area"] += 1
    (tmp_path / "one.json").write_text(json.dumps(data))
    data["annotations"][1]["area"] += 1
    (tmp_path / "two.json").write_text(json.dumps(data))
    r = runner.invoke(app, ["check", str(tmp_path / "one.json"), "--no-image-files"])
    err = [x for x in r.stderr.splitlines() if "%)" not in x]  # not the progress bar's last line
    assert r.exit_code == 1 and len(err) == 1 and err[0].startswith("error:") and "area" in err[0], err
    assert "1 problem(s)" in r.stdout
    r = runner.invoke(app, ["check", str(tmp_path / "two.json"), "--no-image-files"])
    err = [x for x in r.stderr.splitlines() if "%)" not in x]  # not the progress bar's last line
    assert r.exit_code == 1 and [x[0] for x in err] == ["✗", "✗", "e"] and "(and 1 more problem)" in err[-1], err
    r = runner.invoke(app, ["check", str(tmp_path / "two.json"), "--no-image-files", "-q"])
    assert r.exit_code == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr


def test_command_modules_map_every_command_to_its_module():
    """`entitykit NAME …` imports only COMMAND_MODULES[NAME]: the map must name, for every command
    and group, the module that registers it (each module imported alone, in a fresh interpreter),
    and the full app (entitykit.cli.app) must hold exactly the mapped names."""
    import typer.main

    from entitykit.cli import COMMAND_MODULES, MODULES
    from entitykit.cli._app import _command_name

    probe = ("import sys, entitykit.cli as c, importlib; from entitykit.cli._app import app, _command_name; "
             "importlib.import_module('entitykit.cli.' + sys.argv[1]); "
             "print(' '.join([_command_name(x) for x in app.registered_commands] + [g.name for g in app.registered_groups]))")
    for module in MODULES:
        out = subprocess.run([sys.executable, "-c", probe, module], capture_output=True, text=True, check=True).stdout
        registered = set(out.split())
        assert registered == {n for n, m in COMMAND_MODULES.items() if m == module}, (module, registered)
    full = typer.main.get_command(app)
    assert set(full.commands) == set(COMMAND_MODULES)
    assert list(full.commands)[:3] == ["info", "check", "idmaps"]  # --help's order: MODULES order
    assert all(_command_name(c) for c in app.registered_commands)
