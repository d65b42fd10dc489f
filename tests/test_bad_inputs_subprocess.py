"""Bad inputs where a crash, a hang or a kill matters, run as real processes.

``python -m entitykit …`` with a timeout (a hang fails the test) and an address-space limit (an
input that makes entitykit try to allocate terabytes fails as "not enough memory" instead of
taking the machine down — and the test then fails, because the message must name the input's
problem, not the memory). Covered: a read-only output location and a full file system (tmpfs
mounts; skipped cleanly where ``mount`` is not permitted), an output path that is a folder, PNG
bombs, RLE counts that would decode to terabytes, an RLE whose runs do not cover the image (it
used to hang ``convert entityseg``), and ``kill -9`` in the middle of a write followed by a re-run.

Every case asserts: the exit code, no traceback, no "internal error", a last line naming the
file (and the item), nothing under the output's final name, no ``.NAME.PID.*.tmp`` left beside it.
The processes are independent: they run three at a time (each pays ~4 s of imports).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from _bad_inputs_world import World, build_world, last_line, png_bomb, snapshot, tiny_checkpoint, tmp_leftovers

MEMORY_LIMIT = 6 * 2**30  # address space per process: torch's import maps ~3.5 GB, decoding a bomb needs far more
TIMEOUT = 180  # seconds; a process still running then is a hang


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def entitykit(args: list, *, timeout: float = TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENTITYKIT_DEBUG": "", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "COLUMNS": "200"}
    env.pop("ENTITYKIT_MAX_PIXELS", None)
    return subprocess.run([sys.executable, "-m", "entitykit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env, preexec_fn=_limit_memory)


# -------------------------------------------------------------------------------------- mounts
def _mount(args: list[str], where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if os.name != "posix" or shutil.which("mount") is None:
        pytest.skip("no mount command")
    r = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root and a permitting container")


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


# -------------------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    w: World
    syn_json: Path  # COCO panoptic, 80 images 80×96, ~25 segments each (its outputs are > 64 KiB)
    syn_images: Path
    syn_ents: Path  # that dataset as entities (image_root recorded)
    bomb: Path  # a 20000×20000 1-bit PNG of zeros (a few hundred KB)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    from entitykit.convert import convert_coco_panoptic
    from entitykit.synth import write_synthetic_panoptic

    root = tmp_path_factory.mktemp("sub")
    w = build_world(root / "world")
    w.ents_data["info"]["image_root"] = str(w.img)
    w.ckpt = tiny_checkpoint(w.root / "ckpt" / "tiny.safetensors")
    syn_json = write_synthetic_panoptic(root / "syn", 80, height=80, width=96, segments=25, seed=1)
    ds = convert_coco_panoptic(syn_json, image_root=syn_json.parent / "images", source="syn")
    ds.info["split"] = "train"
    ds.save(root / "syn_ents.json")
    return Inputs(w, syn_json, syn_json.parent / "images", root / "syn_ents.json", png_bomb(root / "bomb.png"))


# -------------------------------------------------------------------------------------- cases
@dataclass
class Spec:
    argv: list
    code: int = 1
    names: list = field(default_factory=list)  # the last line must hold each (a tuple: any one of them)
    item: str | None = None  # regex the last line must match
    outputs: list[Path] = field(default_factory=list)
    not_in_line: tuple[str, ...] = ("memory",)  # words that mean the input was not refused for its own problem
    timeout: float = TIMEOUT


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Inputs, Path, list], Spec]  # (inputs, case folder, finalizers) → what to run


def _writers(i: Inputs, out: Path) -> dict[str, tuple[list, Path]]:
    """The commands that write something, each with its output path under ``out``."""
    w = i.w
    return {
        "convert": (["convert", "coco-panoptic", i.syn_json, "--images", i.syn_images, "-o", out / "c.json", "-q",
                     "-j", "1"], out / "c.json"),
        "convert-id-maps": (["convert", "coco-panoptic", i.syn_json, "-o", out.parent / "c.json", "--id-maps",
                             out / "ids", "-q", "-j", "1"], out / "ids"),
        "idmaps": (["idmaps", i.syn_ents, "-o", out / "ids", "-q"], out / "ids"),
        "merge": (["merge", i.syn_ents, "-o", out / "m.json", "--split", "train", "-q"], out / "m.json"),
        "pack": (["pack", i.syn_ents, "-o", out / "pk", "-q"], out / "pk"),
        "pack-h5": (["pack", i.syn_ents, "-o", out / "pk.h5", "-q"], out / "pk.h5"),
        "predict": (["predict", i.syn_images, "-c", w.ckpt, "-o", out / "pred", "-q", "--threads", "1"], out / "pred"),
        "eval-json": (["eval", w.ents, w.preds, "--json", out / "r.json", "--workers", "1"], out / "r.json"),
        "synth": (["synth", out / "syn", "--images", "20", "--height", "64", "--width", "64"], out / "syn"),
    }


def _mounted(kind: str, command: str) -> Case:
    opts = {"read-only": ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"], "full": ["-t", "tmpfs", "-o", "size=64k", "tmpfs"]}[kind]

    def build(i: Inputs, tmp: Path, finalizers: list) -> Spec:
        mnt = tmp / "mnt"
        _mount(opts, mnt)
        finalizers.append(lambda: _umount(mnt))
        argv, out = _writers(i, mnt)[command]
        words = "read-only" if kind == "read-only" else "no space left"
        return Spec(argv, 1, [str(out), words], None, [out])
    return Case(f"{kind}-{command}", build)


def _is_a_folder(command: str) -> Case:
    def build(i: Inputs, tmp: Path, finalizers: list) -> Spec:
        argv, out = _writers(i, tmp / "out")[command]
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("user data")
        return Spec(argv, 1, [str(out)], None, [out])
    return Case(f"output-is-a-folder-{command}", build)


def _bomb_case(command: str, max_pixels: int | None) -> Case:
    def build(i: Inputs, tmp: Path, finalizers: list) -> Spec:
        w = i.w
        pre = ["--max-pixels", str(max_pixels)] if max_pixels is not None else []
        if command == "convert-panoptic":
            pngs = tmp / "pngs"
            shutil.copytree(w.png_dir, pngs)
            (pngs / "p2.png").unlink()
            shutil.copy(i.bomb, pngs / "p2.png")
            out = tmp / "c.json"
            return Spec([*pre, "convert", "coco-panoptic", w.panoptic, pngs, "-o", out, "-q", "-j", "1"], 1,
                        [str(pngs / "p2.png"), "over the limit"], r"image 2\b", [out])
        img = tmp / "img"
        shutil.copytree(w.img, img)
        (img / "2.jpg").unlink()
        shutil.copy(i.bomb, img / "2.jpg")
        data = json.loads(json.dumps(w.ents_data))
        data["info"]["image_root"] = str(img)
        ds = tmp / "ents.json"
        ds.write_text(json.dumps(data))
        argv = {"check": [*pre, "check", ds, "-q"], "pack": [*pre, "pack", ds, "-o", tmp / "pk", "-q"],
                "predict": [*pre, "predict", "--dataset", ds, "-c", w.ckpt, "-o", tmp / "pred", "-q"]}[command]
        return Spec(argv, 1, [str(img / "2.jpg"), "over the limit"], r"image 2\b",
                    [tmp / "pk", tmp / "pred"])
    return Case(f"png-bomb-{command}{'' if max_pixels is None else '-max-pixels'}", build)


GIANT = "o" * 11 + "1"  # one number of 12 characters: a run of ~2^60 pixels


def _terabyte_case(command: str) -> Case:
    """RLE counts that a decoder trusting them would turn into terabytes, for a 6×8 image."""
    def build(i: Inputs, tmp: Path, finalizers: list) -> Spec:
        w = i.w
        out = tmp / "out"
        if command == "convert-entityseg":
            data = json.loads(json.dumps(w.es_data))
            data["annotations"][3]["segmentation"]["counts"] = GIANT
            bad = tmp / "es.json"
            bad.write_text(json.dumps(data))
            return Spec(["convert", "entityseg", bad, "-o", out / "c.json", "--id-maps", out / "ids", "-q", "-j", "1"],
                        1, [str(bad), "RLE"], r"annotation 4\b", [out / "c.json", out / "ids"])
        if command == "convert-sam":
            data = json.loads(json.dumps(w.sa1b_data))
            data["annotations"][1]["segmentation"]["counts"] = GIANT
            bad = tmp / "sa.json"
            bad.write_text(json.dumps(data))
            return Spec(["convert", "sam", bad, "--rule", "score", "-o", out / "c.json", "-q", "-j", "1"], 1,
                        [str(bad), "RLE"], r"mask 2\b", [out / "c.json"])
        if command == "eval":
            data = json.loads(json.dumps(w.results_data))
            data[1]["segmentation"]["counts"] = GIANT
            bad = tmp / "results.json"
            bad.write_text(json.dumps(data))
            return Spec(["eval", w.ents, bad, "--json", out / "r.json", "--workers", "1"], 1, [str(bad)], None,
                        [out / "r.json"])
        if command == "idmaps-declared-huge":  # the runs add up, to 10^12 pixels: refused by the pixel limit
            data = json.loads(json.dumps(w.ents_data))
            data["images"][1].update(height=10**6, width=10**6)
            data["annotations"][3]["segmentation"] = {"size": [10**6, 10**6], "counts": "ooooooW5"}
            bad = tmp / "ents.json"
            bad.write_text(json.dumps(data))
            return Spec(["idmaps", bad, "-o", out / "ids", "-q"], 1, [str(bad), "limit"], r"image 2\b", [out / "ids"])
        data = json.loads(json.dumps(w.ents_data))
        data["annotations"][3]["segmentation"]["counts"] = GIANT
        bad = tmp / "ents.json"
        bad.write_text(json.dumps(data))
        argv = {"idmaps": ["idmaps", bad, "-o", out / "ids", "-q"], "pack": ["pack", bad, "-o", out / "pk", "-q"],
                "check": ["check", bad, "-q"]}[command]
        return Spec(argv, 1, [str(bad), "RLE"], r"annotation 4\b", [out / "ids", out / "pk"])
    return Case(f"terabyte-rle-{command}", build)


def _uncovering_case(command: str) -> Case:
    """Runs [0, 1] for a 48-pixel image: `convert entityseg` used to loop forever on these."""
    def build(i: Inputs, tmp: Path, finalizers: list) -> Spec:
        w = i.w
        out = tmp / "out"
        if command == "convert-entityseg":
            data = json.loads(json.dumps(w.es_data))
            for a in data["annotations"]:
                a["segmentation"]["counts"] = "01"
            bad = tmp / "es.json"
            bad.write_text(json.dumps(data))
            return Spec(["convert", "entityseg", bad, "-o", out / "c.json", "-q", "-j", "1"], 1, [str(bad), "cover"],
                        r"annotation 1\b", [out / "c.json"], timeout=60)
        data = json.loads(json.dumps(w.sa1b_data))
        for a in data["annotations"]:
            a["segmentation"]["counts"] = "01"
        bad = tmp / "sa.json"
        bad.write_text(json.dumps(data))
        return Spec(["convert", "sam", bad, "--rule", "small-wins", "-o", out / "c.json", "-q", "-j", "2"], 1,
                    [str(bad), "cover"], r"mask 1\b", [out / "c.json"], timeout=60)
    return Case(f"uncovering-rle-{command}", build)


CASES = [
    *(_mounted("read-only", c) for c in ("convert", "pack", "predict", "eval-json", "synth")),
    *(_mounted("full", c) for c in ("convert", "convert-id-maps", "idmaps", "merge", "pack", "pack-h5", "predict")),
    *(_is_a_folder(c) for c in ("convert", "eval-json")),
    _bomb_case("convert-panoptic", None), _bomb_case("convert-panoptic", 1_000_000), _bomb_case("check", 1_000_000),
    _bomb_case("pack", None), _bomb_case("predict", 1_000_000),
    *(_terabyte_case(c) for c in ("convert-entityseg", "convert-sam", "idmaps", "pack", "check", "eval",
                                  "idmaps-declared-huge")),
    _uncovering_case("convert-entityseg"), _uncovering_case("convert-sam"),
]


@dataclass
class Outcome:
    spec: Spec | None = None
    result: subprocess.CompletedProcess | None = None
    before: dict = field(default_factory=dict)
    skipped: str | None = None
    error: BaseException | None = None
    seconds: float = 0.0


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, three processes at a time; mounts are undone when the module is done."""
    finalizers: list = []
    root = tmp_path_factory.mktemp("cases")

    def one(case: Case) -> Outcome:
        o = Outcome()
        tmp = root / case.id
        tmp.mkdir()
        try:
            o.spec = case.build(inputs, tmp, finalizers)
            o.before = {p: snapshot(p) for p in o.spec.outputs}
            t = time.perf_counter()
            o.result = entitykit(o.spec.argv, timeout=o.spec.timeout)
            o.seconds = time.perf_counter() - t
        except pytest.skip.Exception as e:
            o.skipped = str(e)
        except BaseException as e:  # noqa: BLE001  (reported by the case's test, e.g. a timeout = a hang)
            o.error = e
        return o

    try:
        with ThreadPoolExecutor(3) as pool:
            done = dict(zip((c.id for c in CASES), pool.map(one, CASES)))
        yield done
    finally:
        for f in reversed(finalizers):
            f()


def _check(spec: Spec, r: subprocess.CompletedProcess, before: dict) -> None:
    out = r.stdout + r.stderr
    where = f"\n$ entitykit {' '.join(map(str, spec.argv))}\nexit {r.returncode}\n{out[-3000:]}"
    assert r.returncode == spec.code, where
    assert "Traceback" not in out, where
    assert "internal error" not in out, where
    line = last_line(r.stderr) or last_line(r.stdout)
    if spec.code == 1:
        for name in spec.names:
            options = name if isinstance(name, tuple) else (name,)
            assert any(n in line for n in options), f"last line does not name {' or '.join(options)}: {line!r}{where}"
        if spec.item:
            assert re.search(spec.item, line), f"last line does not name the item /{spec.item}/: {line!r}{where}"
        for word in spec.not_in_line:
            assert word not in line, f"refused for {word!r}, not for its own problem: {line!r}{where}"
    for p in spec.outputs:
        if spec.code == 1:
            assert snapshot(p) == before[p], f"{p} {'changed' if before[p] is not None else 'was written'}{where}"
        assert not tmp_leftovers(p.parent), f"temporary folders left beside {p}: {tmp_leftovers(p.parent)}{where}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_process(case: Case, outcomes: dict[str, Outcome]) -> None:
    o = outcomes[case.id]
    if o.skipped:
        pytest.skip(o.skipped)
    if isinstance(o.error, subprocess.TimeoutExpired):
        pytest.fail(f"hang: still running after {o.error.timeout} s: entitykit {' '.join(map(str, o.spec.argv))}")
    if o.error is not None:
        raise o.error
    _check(o.spec, o.result, o.before)


# ----------------------------------------------------------------------------------- kill -9
def test_kill_during_write_then_rerun(inputs: Inputs, tmp_path: Path) -> None:
    """`convert … --id-maps` killed (SIGKILL) while its id-map folder is being written leaves only a
    temporary sibling; the re-run removes it, and writes complete outputs under the final names."""
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "entitykit", "convert", "coco-panoptic", inputs.syn_json, "--images",
            inputs.syn_images, "-o", out / "c.json", "--id-maps", out / "ids", "-q", "-j", "1"]
    proc = subprocess.Popen(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_limit_memory)
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            seen = tmp_leftovers(out)
            if seen:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and not seen:
            proc.kill()
        proc.communicate(timeout=60)
    assert seen, f"the write finished (exit {proc.returncode}) before a temporary folder was seen: nothing was tested"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "ids").exists() and not (out / "c.json").exists(), "a killed run left an output under its final name"
    assert tmp_leftovers(out), "the killed run's temporary folder should still be there (it could not clean up)"

    r = entitykit(argv[3:])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not tmp_leftovers(out), f"stale temporary folders survived the re-run: {tmp_leftovers(out)}"
    assert sorted(p.name for p in out.iterdir()) == ["c.json", "ids"]
    data = json.loads((out / "c.json").read_text())
    index = json.loads((out / "ids" / "id_maps.json").read_text())
    pngs = sorted((out / "ids").rglob("*.png"))
    previews = sorted((out / "ids" / "previews").glob("*.png"))
    assert len(data["images"]) == len(index["images"]) == len(pngs) - len(previews) == len(previews) == 80
    assert all((out / "ids" / rec["file_name"]).is_file() for rec in index["images"])
    check = entitykit(["check", out / "c.json", "--no-image-files", "-q"])
    assert check.returncode == 0, check.stdout + check.stderr
