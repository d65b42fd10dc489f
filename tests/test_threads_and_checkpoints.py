"""CPU threads (entitykit.threads' rule, train/predict/demo use it), keep-last checkpoints, file modes."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from entitykit import threads as threads_mod
from entitykit.convert import convert_coco_panoptic
from entitykit.errors import EntityKitError
from entitykit.runs import RunFolder, checkpoint_name
from entitykit.synth import write_synthetic_panoptic
from entitykit.threads import choose_threads, physical_cores, set_threads, use_threads
from entitykit.train import TrainConfig, load_train_config, resume_config, train


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A pretend machine: ``machine(cpus, siblings=1)`` sets the affinity mask and the topology
    (``siblings`` logical CPUs per physical core); no OMP_NUM_THREADS and no torchrun variables."""
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def make(cpus: int, siblings: int = 1) -> None:
        root = tmp_path / f"cpu{cpus}x{siblings}"
        for cpu in range(cpus):
            core = cpu // siblings
            topo = root / f"cpu{cpu}" / "topology"
            topo.mkdir(parents=True)
            first = core * siblings
            topo.joinpath("thread_siblings_list").write_text(f"{first}-{first + siblings - 1}\n" if siblings > 1
                                                             else f"{cpu}\n")
        monkeypatch.setattr(threads_mod, "_SYS_CPU", root)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))

    return make


# ------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("cpus, siblings, processes, expected", [
    (1, 1, 1, 1),
    (2, 1, 1, 1),     # the measured case: 1 thread on a 2-core machine
    (3, 1, 1, 2),
    (4, 1, 1, 3),     # all but one core
    (16, 1, 1, 15),
    (8, 2, 1, 3),     # 8 logical CPUs, 4 physical cores: hyperthread siblings count once
    (16, 1, 2, 7),    # torchrun, 2 processes on 16 cores: 8 each, all but one
    (4, 1, 4, 1),     # one core per process: never 0, never oversubscribed
    (2, 1, 3, 1),     # more processes than cores: 1 each
])
def test_auto_rule_from_available_cores_and_processes(machine, monkeypatch, cpus, siblings, processes, expected):
    machine(cpus, siblings)
    if processes > 1:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    assert physical_cores() == cpus // siblings
    assert choose_threads(0) == expected
    assert choose_threads() == expected
    assert choose_threads(0, cores=cpus // siblings, processes=processes) == expected
    # the load does not enter the rule: the thread count changes the weights (see entitykit.threads)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0), raising=False)
    assert choose_threads(0) == expected


def test_explicit_counts_and_environment_win(machine, monkeypatch):
    machine(16)
    assert choose_threads(5) == 5 and choose_threads(64) == 64  # an explicit count is the user's
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(0) == 3 and choose_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a count: ignored
    assert choose_threads(0) == 15
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("WORLD_SIZE", "4")  # processes started by hand, no LOCAL_WORLD_SIZE
    assert choose_threads(0) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's per-machine count wins over the world size
    assert choose_threads(0) == 7


@pytest.mark.parametrize("bad, words", [(-1, "must be ≥ 0"), (1.5, "expected an integer"), (True, "expected an integer"),
                                        ("2", "expected an integer")])
def test_bad_thread_requests(bad, words):
    with pytest.raises(EntityKitError, match=words) as e:
        choose_threads(bad)
    assert e.value.item == "threads"


def test_use_threads_puts_the_count_back():
    before = torch.get_num_threads()
    with use_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with use_threads(None) as n:
        assert n == before
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("override, key, words", [
    ("threads=-1", "threads", "must be ≥ 0, got -1"),
    ("threads=1.5", "threads", "expected an integer, got 1.5"),
    ("threads=true", "threads", "expected an integer, got True"),
    ("keep_last=-2", "keep_last", "must be ≥ 0, got -2"),
    ('keep_last="all"', "keep_last", "expected an integer, got 'all'"),
])
def test_threads_and_keep_last_options_are_checked(override, key, words):
    with pytest.raises(EntityKitError, match="^--set: ") as e:
        load_train_config(None, [override])
    assert e.value.item == key and words in e.value.problem, str(e.value)
    with pytest.raises(EntityKitError, match=f"{key}: must be ≥ 0"):
        TrainConfig(**{key: -1})


def test_toml_keys(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('train = ["a.json"]\nthreads = 2\nkeep_last = 0\n')
    cfg = load_train_config(f)
    assert cfg.threads == 2 and cfg.keep_last == 0
    assert (TrainConfig().threads, TrainConfig().keep_last) == (0, 3)
    f.write_text('train = ["a.json"]\nkeep_lats = 2\n')
    with pytest.raises(EntityKitError, match="did you mean 'keep_last'"):
        load_train_config(f)


# ------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    p = write_synthetic_panoptic(root / "data", 4, height=64, width=80, segments=6, seed=1)
    convert_coco_panoptic(p, image_root=root / "data" / "images").save(root / "train.json")
    return root / "train.json"


def _cfg(data, out, **kw):
    base = dict(train=[str(data)], output=str(out), max_iter=5, batch_size=2, checkpoint_period=1, log_period=1,
                min_sizes=[64], max_size=96, seed=3, keep_last=2)
    base.update(kw)
    return TrainConfig(**base)


def _periodic(run_dir) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def _files(n: int) -> list[str]:
    name = checkpoint_name(n)
    return [f"{name}.safetensors", f"{name}.state.json", f"{name}.state.safetensors"]


def test_keep_last_and_exact_resume(tiny_data, tmp_path):
    """keep_last=2, a checkpoint every iteration: 2 periodic checkpoints + model_final remain, and a
    run interrupted after iteration 3 and resumed gives the uninterrupted run's weights exactly."""
    full = train(_cfg(tiny_data, tmp_path / "full"), progress=False)
    assert _periodic(tmp_path / "full") == sorted(["last_checkpoint", *_files(4), *_files(5)])
    assert (tmp_path / "full" / "model_final.safetensors").is_file()
    assert RunFolder(tmp_path / "full").checkpoints() == ["model_0000004", "model_0000005"]
    record = json.loads((tmp_path / "full" / "config.json").read_text())
    assert record["train"]["keep_last"] == 2 and record["threads"] == choose_threads(0)

    part = train(_cfg(tiny_data, tmp_path / "part"), progress=False, stop_after=3)
    assert part.final_checkpoint.name == "model_0000003.safetensors"
    assert RunFolder(tmp_path / "part").checkpoints() == ["model_0000002", "model_0000003"]
    # resumed with another thread count and keep_last (another machine, less disk): both may change
    cfg = resume_config(tmp_path / "part", {"keep_last": 1, "threads": choose_threads(0)})
    assert cfg.keep_last == 1
    resumed = train(cfg, progress=False, resume=True)
    assert resumed.iterations == 5
    assert RunFolder(tmp_path / "part").checkpoints() == ["model_0000005"]
    a, b = load_file(str(full.final_checkpoint)), load_file(str(resumed.final_checkpoint))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)

    everything = train(_cfg(tiny_data, tmp_path / "all", keep_last=0, max_iter=3), progress=False)
    assert everything.iterations == 3
    assert RunFolder(tmp_path / "all").checkpoints() == ["model_0000001", "model_0000002", "model_0000003"]


def test_prune_never_deletes_what_resume_needs(tmp_path):
    run = RunFolder(tmp_path / "run")
    d = run.checkpoint_dir
    d.mkdir(parents=True)
    for n in range(1, 6):
        for name in _files(n):
            (d / name).write_text("x")
    (d / f"{checkpoint_name(1)}.state.json").unlink()  # an incomplete older checkpoint (a kill mid-prune)
    (d / "last_checkpoint").write_text(checkpoint_name(3) + "\n")  # 4 and 5: newer than the pointer
    assert run.prune_checkpoints(0) == []  # 0 keeps all
    assert run.prune_checkpoints(1) == [checkpoint_name(1), checkpoint_name(2)]
    assert run.checkpoints() == [checkpoint_name(n) for n in (3, 4, 5)]
    assert sorted(p.name for p in d.iterdir()) == sorted(["last_checkpoint", *_files(3), *_files(4), *_files(5)])
    # names sort by iteration past 7 digits (model_10000000 comes after model_9999999)
    for n in (9_999_999, 10_000_000):
        for name in _files(n):
            (d / name).write_text("x")
    (d / "last_checkpoint").write_text(checkpoint_name(10_000_000) + "\n")
    assert run.checkpoints() == [checkpoint_name(n) for n in (3, 4, 5, 9_999_999, 10_000_000)]
    assert run.prune_checkpoints(1) == [checkpoint_name(n) for n in (3, 4, 5, 9_999_999)]
    assert run.checkpoints() == [checkpoint_name(10_000_000)]


def test_every_file_of_a_run_follows_the_umask(tiny_data, tmp_path):
    old = os.umask(0o022)
    try:
        train(_cfg(tiny_data, tmp_path / "run", max_iter=2), progress=False)
    finally:
        os.umask(old)
    seen = []
    for root, dirs, files in os.walk(tmp_path / "run"):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o755, name
        for name in files:
            seen.append(name)
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o644, name
    assert {"model_final.safetensors", "model_0000002.safetensors", "model_0000002.state.safetensors",
            "config.json", "metrics.jsonl", "last_checkpoint"} <= set(seen)
    old = os.umask(0o077)  # a private umask is honoured too
    try:
        train(_cfg(tiny_data, tmp_path / "private", max_iter=1), progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "private" / "model_final.safetensors").st_mode) == 0o600


def test_train_sets_and_puts_back_threads(tiny_data, tmp_path, monkeypatch):
    seen = []
    import entitykit.train as train_mod

    real = train_mod._loop

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_loop", spy)
    before = torch.get_num_threads()
    want = 2 if before != 2 else 3
    train(_cfg(tiny_data, tmp_path / "run", max_iter=1, threads=want), progress=False)
    assert seen == [want] and torch.get_num_threads() == before
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == want


def test_predictor_threads(monkeypatch):
    from entitykit.model import EntityModel, get_config
    from entitykit.model.predictor import Predictor

    model = EntityModel(get_config("tiny", min_size_test=64, max_size_test=96))
    seen = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    image = np.zeros((64, 80, 3), np.uint8)
    before = torch.get_num_threads()
    want = 2 if before != 2 else 3
    p = Predictor(model, device="cpu", threads=want)
    p(image)
    assert seen == [want] and torch.get_num_threads() == before and p.settings()["threads"] == want
    Predictor(model, device="cpu")(image)  # None: the process's setting
    assert seen[-1] == before
    assert Predictor(model, device="cpu", threads=0).settings()["threads"] == choose_threads(0)
    with pytest.raises(EntityKitError, match="threads: must be ≥ 0"):
        Predictor(model, device="cpu", threads=-1)


def test_cli_threads_and_keep_last(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from entitykit.cli import app

    run = tmp_path / "run"
    common = ["--batch-size", "2", "--set", "checkpoint_period=1", "--set", "min_sizes=[64]", "--set", "max_size=96",
              "-q"]
    result = CliRunner().invoke(app, ["train", "--train", str(tiny_data), "-o", str(run), "--max-iter", "2",
                                      "--threads", "1", "--keep-last", "1", *common])
    assert result.exit_code == 0, result.output
    assert RunFolder(run).checkpoints() == ["model_0000002"]
    record = json.loads((run / "config.json").read_text())
    assert record["threads"] == 1 and record["train"]["threads"] == 1 and record["train"]["keep_last"] == 1
    # resumed on "another machine": threads and keep_last may be given anew
    result = CliRunner().invoke(app, ["train", "-o", str(run), "--resume", "--max-iter", "3", "--threads", "2",
                                      "--keep-last", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert RunFolder(run).checkpoints() == ["model_0000002", "model_0000003"]
    assert json.loads((run / "config.json").read_text())["threads"] == 2


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_save_checkpoint_called_directly_follows_the_umask(tmp_path, mask, mode):
    """The library function, not only the run folder around it: safetensors creates 0600 files."""
    from entitykit.model import EntityModel, get_config, load_checkpoint, save_checkpoint

    model = EntityModel(get_config("tiny"))
    target = tmp_path / "sub" / "m.safetensors"
    old = os.umask(mask)
    try:
        assert save_checkpoint(model, target, extra={"iteration": 7}) == target
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    assert [p.name for p in target.parent.iterdir()] == ["m.safetensors"]  # no temporary left beside it
    again = load_checkpoint(target)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
