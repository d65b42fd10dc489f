"""`entitykit train`: the paper's recipe (SGD, linear warmup, multistep) or AdamW, on one process or
``torchrun --nproc_per_node N`` (DDP, no source edits), with exact resume after an interruption.

This module owns the training configuration (:class:`TrainConfig`, typed: :func:`check_options`,
:meth:`TrainConfig.from_dict`, :func:`load_train_config`, :func:`resume_config`) and the loop
(:func:`train`). The run folder — ``config.json``, checkpoints and their safe resume state, the
metrics log, and the rules for starting and resuming — is :mod:`entitykit.runs`.

Options come from a TOML (or YAML) file, ``key=value`` overrides (``model.KEY`` for the model
config) and the command line. Every key and value is checked before anything is written: an
unknown key is refused with the closest known one ("did you mean"), a value of the wrong type
(``max_iter = 1.5``, ``lr = "abc"``, ``model.fpn_channels = "x"``), a number out of range
(``max_iter = -5``, ``lr = nan``, ``log_period = 0``) or an unknown choice (``preset``,
``optimizer``, ``device``) is one :class:`EntityKitError` line naming the file (or ``--set``) and
the key.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Augment, TrainingSet, batch_keys, collate, open_source, raise_failure
from .errors import EntityKitError
from .fileio import atomic_path
from .model.config import PRESETS, ModelConfig
from .options import check_range, check_value, field_types, suggest, unknown_key_error
from .runs import DEFAULT_OUTPUT, RESUME_MAY_CHANGE, RUN_FORMAT_VERSION, RunFolder
from .threads import use_threads

TRAIN_FORMAT_VERSION = RUN_FORMAT_VERSION  # config.json's format_version (the name this module has exported)


@dataclass
class TrainConfig:
    """Everything a run needs. Solver fields left at None take the model preset's values.

    Fields are typed and range-checked on construction (and by :meth:`validate`): a wrong value
    is an :class:`EntityKitError` naming the field.
    """

    train: list[str] = field(default_factory=list)  # entity JSONs or HDF5 packs
    train_weights: list[float] | None = None  # sampling weight per training set
    val: str | None = None  # entity JSON scored with APe every eval_period
    output: str = DEFAULT_OUTPUT
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    init: str | None = None  # start from this checkpoint's weights
    max_iter: int | None = None
    batch_size: int | None = None  # global batch, split across processes
    optimizer: str | None = None  # "sgd" | "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup_iters: int | None = None
    warmup_factor: float = 0.001
    lr_steps: list[int] | None = None
    gamma: float = 0.1
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    min_sizes: list[int] | None = None
    max_size: int | None = None
    flip: bool = True
    lsj: list[float] | None = None  # e.g. [0.1, 2.0]: large-scale jitter instead of the list of sizes
    amp: bool = True  # mixed precision, on CUDA only
    eval_period: int = 0  # 0 = only at the end (when val is given)
    checkpoint_period: int = 0  # 0 = only at the end
    keep_last: int = 3  # periodic checkpoints kept (the newest; the one --resume needs always); 0 = all
    log_period: int = 10
    seed: int = 0
    deterministic: bool = True  # deterministic kernels: same seed ⇒ same weights, exact resume
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    workers: int = 0  # data-loading processes per training process
    threads: int = 0  # CPU threads per process; 0 = entitykit.threads' rule (all but one core, 1 on ≤ 2 cores)
    sync_bn: bool = True  # multi-GPU DDP: BatchNorm layers (the mask branch) become SyncBatchNorm
    exif: bool = True  # apply images' EXIF orientation (entitykit.images); false: stored pixels

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check (and normalise: ints to floats, lists copied) every field, then the rules between
        fields. Runs on construction; :func:`train` runs it again in case fields were assigned."""
        checked = check_options({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        for key, value in checked.items():
            setattr(self, key, value)
        if self.train_weights is not None and len(self.train_weights) != len(self.train):
            raise EntityKitError(f"{len(self.train_weights)} weights for {len(self.train)} training datasets",
                                 item="train_weights")

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | Path | None = None) -> TrainConfig:
        """A config from parsed options (a TOML table, JSON, or :func:`read_options`' result).
        Errors name ``path`` (the file the options came from) and the key."""
        checked = check_options(data, path)
        try:
            return cls(**checked)
        except EntityKitError as e:
            if e.path is None and path is not None:
                raise EntityKitError(e.problem, path, e.item) from None
            raise


# ------------------------------------------------------------------------------------- typed options
# field: (lowest, highest, lowest excluded, highest excluded); each number of a list field is checked
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "train_weights": (0, None, False, False),
    "max_iter": (1, None, False, False),
    "batch_size": (1, None, False, False),
    "lr": (0, None, True, False),
    "weight_decay": (0, None, False, False),
    "momentum": (0, 1, False, True),
    "warmup_iters": (0, None, False, False),
    "warmup_factor": (0, 1, False, False),
    "lr_steps": (0, None, False, False),
    "gamma": (0, None, True, False),
    "clip_grad": (0, None, False, False),
    "min_sizes": (1, None, False, False),
    "max_size": (1, None, False, False),
    "lsj": (0, None, True, False),
    "eval_period": (0, None, False, False),
    "checkpoint_period": (0, None, False, False),
    "keep_last": (0, None, False, False),
    "log_period": (1, None, False, False),
    "seed": (0, 2**32 - 1, False, False),  # NumPy's seed range
    "workers": (0, None, False, False),
    "threads": (0, None, False, False),
}
_CHOICES: dict[str, tuple[str, ...]] = {"preset": tuple(PRESETS), "optimizer": ("sgd", "adamw")}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_NOT_EMPTY = ("train", "val", "output", "init")  # paths: an empty string is a mistake


def check_options(data: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Some or all training options, typed and range-checked one by one; returns them normalised.

    ``data`` is ``{field: value}`` with ``model`` a table of :class:`ModelConfig` fields (checked
    against that class's fields and types). Unknown keys are refused with a suggestion; an
    unknown top-level key that is a model field suggests ``model.KEY``. Rules between fields
    (``train_weights`` vs ``train``) are :meth:`TrainConfig.validate`'s.
    """
    if not isinstance(data, dict):
        raise EntityKitError(f"options must be a table of key = value, got {type(data).__name__}", path)
    types_ = field_types(TrainConfig)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in types_:
            hint = f"model.{key}" if key in field_types(ModelConfig) else None
            raise unknown_key_error(str(key), types_, "training option", path, str(key), hint=hint)
        if key == "model":
            if not isinstance(value, dict):
                raise EntityKitError("expected a table of model options ([model] in a file, model.KEY=VALUE with "
                                     "--set)", path, key)
            out[key] = ModelConfig.check_overrides(value, str(path) if path is not None else None)
            continue
        value = check_value(value, types_[key], key, path)
        _check_field(key, value, path)
        out[key] = value
    return out


def _check_field(key: str, value: Any, path: str | Path | None) -> None:
    if value is None:
        return
    if key in _RANGES:
        low, high, low_open, high_open = _RANGES[key]
        check_range(value, key, low=low, high=high, low_open=low_open, high_open=high_open, path=path)
    if key in _CHOICES and value not in _CHOICES[key]:
        close = suggest(value, _CHOICES[key])
        raise EntityKitError(f"unknown {key} {value!r}; " + (f"did you mean {close!r}?" if close else
                             f"choose one of {', '.join(_CHOICES[key])}"), path, key)
    if key == "device" and not _DEVICE.fullmatch(value):
        raise EntityKitError(f"unknown device {value!r}; choose auto, cpu, cuda, cuda:N or mps", path, key)
    if key in _NOT_EMPTY and any(not str(v).strip() for v in (value if isinstance(value, list) else [value])):
        raise EntityKitError("empty path", path, key)
    if key == "lr_steps" and value != sorted(set(value)):
        raise EntityKitError(f"must be increasing iterations, got {value}", path, key)
    if key == "min_sizes" and not value:
        raise EntityKitError("give at least one short side (or leave min_sizes out for the preset's)", path, key)
    if key == "lsj" and (len(value) != 2 or value[0] > value[1]):
        raise EntityKitError(f"must be [lowest, highest] scale, got {value}", path, key)
    if key == "train_weights" and value and sum(value) <= 0:
        raise EntityKitError(f"at least one weight must be > 0, got {value}", path, key)


def _merge(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """``more`` over ``base``; the model tables are merged key by key."""
    out = dict(base)
    for key, value in more.items():
        out[key] = {**out.get("model", {}), **value} if key == "model" else value
    return out


def parse_override(item: str) -> dict[str, Any]:
    """``key=value`` → ``{key: value}`` (``model.KEY=value`` → ``{"model": {KEY: value}}``); the value
    is read as TOML (``[5, 8]``, ``true``, ``"text"``), a bare word as a string. Not checked."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise EntityKitError(f"{item!r} is not key=value", "--set")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    parts = key.split(".")
    if len(parts) == 1:
        return {key: value}
    if parts[0] == "model" and len(parts) == 2 and parts[1]:
        return {"model": {parts[1]: value}}
    if parts[0] == "model":
        raise EntityKitError("model options are one level deep: model.KEY=VALUE", "--set", key)
    raise EntityKitError(f"only model options take a dot (model.KEY=VALUE); {parts[0]!r} is not a table", "--set", key)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML (or YAML, with PyYAML installed) run configuration, checked (:func:`check_options`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EntityKitError(f"cannot read config: {e}", path) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml  # noqa: PLC0415
            except ImportError:
                raise EntityKitError("YAML configs need PyYAML (pip install pyyaml); TOML works without it", path) from None
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise EntityKitError(f"cannot parse config: {' '.join(str(e).split())}", path) from None
    if not isinstance(data, dict):
        raise EntityKitError("config must be a table of options", path)
    return check_options(data, path)


def read_options(path: str | Path | None = None, overrides: list[str] = (),
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options given for a run, checked one by one, later sources winning: the file at
    ``path``, then ``options`` (typed values, e.g. from command-line flags), then ``key=value``
    ``overrides``. Only the keys given appear (so a resumed run can compare them with its own)."""
    data = read_config_file(path) if path is not None else {}
    if options:
        data = _merge(data, check_options(options))
    for item in overrides:
        data = _merge(data, check_options(parse_override(item), "--set"))
    return data


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TOML (or YAML, if PyYAML is installed) file, then ``key=value`` overrides (``model.lr_steps=[5,8]``)."""
    return TrainConfig.from_dict(read_options(path, overrides))


def resume_config(output: str | Path, given: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration of the run in ``output``, read from its ``config.json``, for ``train(...,
    resume=True)``. ``given`` options must match the run's (``RunFolder.check_resume_options``);
    a larger ``max_iter`` continues training longer."""
    run = RunFolder(output)
    stored, cfg = _stored_config(run)
    given = dict(given or {})
    run.check_resume_options(stored, given)
    changes: dict[str, Any] = {"output": str(output)}
    for key in ("max_iter", *RESUME_MAY_CHANGE):  # what a resumed run may be given anew
        if given.get(key) is not None:
            changes[key] = given[key]
    return dataclasses.replace(cfg, **changes)


def _stored_config(run: RunFolder) -> tuple[dict[str, Any], TrainConfig]:
    """The run's config.json record (its ``train`` table completed with every field) and its config."""
    stored = run.read_config()
    cfg = TrainConfig.from_dict(stored["train"], run.config_path)
    return {**stored, "train": dataclasses.asdict(cfg)}, cfg


# ----------------------------------------------------------------------------------------- helpers
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist  # noqa: PLC0415

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(cfg: TrainConfig, dist: _Dist) -> torch.device:
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EntityKitError(f"device {cfg.device!r} requested but no CUDA GPU is available", item="device")
        if kind == "cuda":
            return torch.device("cuda", dist.local_rank)
        dev = torch.device(kind)
        if dev.index >= torch.cuda.device_count():
            raise EntityKitError(f"device {kind!r}: this machine has {torch.cuda.device_count()} GPU(s)", item="device")
        return dev
    if kind == "mps" and not torch.backends.mps.is_available():
        raise EntityKitError("device 'mps' requested but MPS is not available", item="device")
    return torch.device(kind)


def _maybe_sync_bn(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """Under DDP, BatchNorm statistics over the global batch as the spec asks, where PyTorch can:
    its SyncBatchNorm runs on GPUs only, so CPU (gloo) runs keep per-process statistics."""
    if cfg.sync_bn and device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _lr_factor(it: int, warmup: int, warmup_factor: float, steps: list[int], gamma: float) -> float:
    f = gamma ** sum(it >= s for s in steps)
    if it < warmup:
        alpha = it / warmup
        f *= warmup_factor * (1 - alpha) + alpha
    return f


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on normalization layers (detectron2's WEIGHT_DECAY_NORM = 0)."""
    norm_types = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.SyncBatchNorm)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, norm_types) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainResult:
    output: Path
    iterations: int
    final_checkpoint: Path | None
    metrics: list[dict[str, Any]]
    ape: float | None = None


class _IterationBatches(torch.utils.data.Sampler):
    """Yields, per iteration, this process's share of the global batch as (index, epoch) keys."""

    def __init__(self, start: int, stop: int, batch: int, n: int, seed: int, dist: _Dist, weights, sizes):
        self.start, self.stop, self.batch, self.n, self.seed = start, stop, batch, n, seed
        self.dist, self.weights, self.sizes = dist, weights, sizes

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        per = self.batch // self.dist.world
        for it in range(self.start, self.stop):
            keys = batch_keys(it, self.batch, self.n, self.seed, self.weights, self.sizes)
            yield keys[self.dist.rank * per : (self.dist.rank + 1) * per]


# ----------------------------------------------------------------------------------------- training
def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) training in the run folder ``cfg.output`` (:mod:`entitykit.runs`).

    Every input is checked before anything is written: the config, the datasets (opened), the
    model config, the device, and the folder (a fresh run refuses one that holds a run). With
    ``resume`` the folder's ``config.json`` must agree with ``cfg`` (``max_iter`` may be raised;
    :func:`resume_config` builds such a ``cfg`` from the folder alone) and training continues
    from the last checkpoint, or from iteration 0 when the run stopped before its first.
    ``stop_after`` ends this process after that many iterations, as an interruption would
    (checkpoints written so far stay; ``resume=True`` continues).

    PyTorch's CPU threads are ``cfg.threads`` (0: :func:`entitykit.threads.choose_threads`' rule)
    for the run, and put back as they were when it returns; ``config.json`` records the count."""
    cfg.validate()
    with use_threads(cfg.threads) as threads:
        return _train(cfg, resume, progress, stop_after, threads)


def _train(cfg: TrainConfig, resume: bool, progress: bool, stop_after: int | None, threads: int) -> TrainResult:
    from .model import EntityModel, get_config  # noqa: PLC0415
    from .model.config import pretrained_problem  # noqa: PLC0415
    from .model.checkpoint import load_checkpoint, read_checkpoint_config  # noqa: PLC0415

    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise EntityKitError(f"must be an integer ≥ 1, got {stop_after!r}", item="stop_after")
    if not cfg.train:
        raise EntityKitError("no training data: give at least one entity dataset (train = [...])")
    run = RunFolder(cfg.output)
    kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist = _init_distributed(kind)
    device = _device(cfg, dist)

    # --- the folder: a fresh one, or the run to continue (its checkpoint read, not yet applied)
    stored: dict[str, Any] | None = None
    resume_from: str | None = None
    state: dict[str, Any] | None = None
    if resume:
        stored, _ = _stored_config(run)
        run.check_resume_options(stored, dataclasses.asdict(cfg), whole=True)
        resume_from = run.last_checkpoint()
        if resume_from is not None:
            weights_path, state = run.load_checkpoint(resume_from)
    else:
        run.check_unused()

    # --- model config and the solver it implies
    try:
        if resume_from is not None:  # the model in force; its weights come from the checkpoint
            mcfg = ModelConfig.from_dict(stored["model"])
        elif cfg.init is not None:
            mcfg, _ = read_checkpoint_config(cfg.init)
            mcfg = mcfg.replace(**cfg.model) if cfg.model else mcfg
        else:
            mcfg = get_config(cfg.preset, **cfg.model)
            why = pretrained_problem(mcfg)
            if why:
                raise EntityKitError(why, item="pretrained")
    except EntityKitError as e:
        where = e.path or (str(run.config_path) if resume_from is not None else None)
        item = f"model.{e.item}" if e.item and not e.item.startswith("model.") and e.item != cfg.preset else e.item
        raise EntityKitError(e.problem, where, item) from None
    solver = {
        "optimizer": cfg.optimizer or mcfg.optimizer,
        "lr": cfg.lr if cfg.lr is not None else mcfg.lr,
        "weight_decay": cfg.weight_decay if cfg.weight_decay is not None else mcfg.weight_decay,
        "max_iter": cfg.max_iter if cfg.max_iter is not None else mcfg.max_iter,
        "batch_size": cfg.batch_size if cfg.batch_size is not None else mcfg.ims_per_batch,
        "warmup_iters": cfg.warmup_iters if cfg.warmup_iters is not None else mcfg.warmup_iters,
        "lr_steps": list(cfg.lr_steps if cfg.lr_steps is not None else mcfg.lr_steps),
        "min_sizes": list(cfg.min_sizes or mcfg.min_size_train),
        "max_size": cfg.max_size or mcfg.max_size_train,
    }
    if solver["batch_size"] % dist.world:
        raise EntityKitError(f"batch_size {solver['batch_size']} is not divisible by the {dist.world} processes",
                             item="batch_size")
    per_process = solver["batch_size"] // dist.world
    if dist.world > 1 and dist.main and per_process % mcfg.proposal_group_images:
        print(f"note: {per_process} image(s) per process is not a multiple of model.proposal_group_images "
              f"({mcfg.proposal_group_images}): mask proposals are sampled per group within each process, so "
              "this run samples differently from one with another number of processes", file=sys.stderr)

    # --- data: every dataset opened now, so a missing or malformed file stops before anything is written
    sources = [open_source(p, exif=cfg.exif) for p in cfg.train]
    augment = Augment(tuple(solver["min_sizes"]), solver["max_size"], cfg.flip, tuple(cfg.lsj) if cfg.lsj else None)
    dataset = TrainingSet(sources, augment, seed=cfg.seed)
    sizes = [len(s) for s in sources]
    val = _open_val(cfg.val) if cfg.val else None

    # Some CPU kernels (scatter/index accumulation) are otherwise not bit-reproducible run to run.
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    torch.manual_seed(cfg.seed)  # same initial weights on every process
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    if resume_from is not None:
        model = EntityModel(mcfg.replace(pretrained=None))
    else:
        try:
            model = load_checkpoint(cfg.init, **cfg.model) if cfg.init else EntityModel(mcfg)
        except EntityKitError as e:  # e.g. torchvision weights that cannot be fetched offline
            item = f"model.{e.item}" if e.item and not e.item.startswith("model.") else e.item
            raise EntityKitError(e.problem, e.path, item) from None
    model.to(device)
    if resume_from is not None:
        _load_weights(model, weights_path, device)
    ddp_model = model
    if dist.world > 1:
        model = _maybe_sync_bn(model, cfg, device)
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    if solver["optimizer"] == "sgd":
        opt = torch.optim.SGD(_param_groups(model, solver["weight_decay"]), lr=solver["lr"], momentum=cfg.momentum)
    else:
        opt = torch.optim.AdamW(_param_groups(model, solver["weight_decay"]), lr=solver["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: _lr_factor(it, solver["warmup_iters"], cfg.warmup_factor, solver["lr_steps"], cfg.gamma))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = 0
    if state is not None:
        start = _apply_state(state, opt, sched, scaler, run.checkpoint_dir / f"{resume_from}.state.json")

    # --- from here on the run folder is written
    if dist.world > 1:
        torch.distributed.barrier()  # every process has checked the folder before the first writes it
    metrics: list[dict[str, Any]] = []
    fresh = not resume  # check_unused passed: the folder is new or empty
    existed = run.path.exists()
    if dist.main:
        run.write_config({"train": dataclasses.asdict(cfg), "solver": solver, "model": mcfg.to_dict(),
                          "world_size": dist.world, "threads": threads})
        if resume:
            metrics = run.restart_metrics(start)

    max_iter = solver["max_iter"]
    stop = max_iter if stop_after is None else min(max_iter, start + stop_after)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=_IterationBatches(start, stop, solver["batch_size"], len(dataset), cfg.seed, dist,
                                                 cfg.train_weights, sizes),
        num_workers=cfg.workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(cfg.seed))  # own generator: the global RNG stays the model's
    ckpt_period = cfg.checkpoint_period or max_iter
    eval_period = cfg.eval_period or max_iter

    from .progress import train_progress  # noqa: PLC0415

    t0 = time.perf_counter()
    it = start
    last_ckpt = None
    ape = None
    try:
        with train_progress(stop - start, start, max_iter, enabled=progress and dist.main) as bar:
            it, last_ckpt, ape = _loop(loader, model, ddp_model, opt, sched, scaler, run, cfg, dist, device, use_amp,
                                       val, metrics, bar, start, stop, max_iter, ckpt_period, eval_period, t0)
    except Exception:
        # bad input met by the first iterations (an image the dataset declares with another size, …):
        # a run folder this call made and that holds no checkpoint yet is not left behind
        if fresh and dist.main and last_ckpt is None and not run.checkpoints():
            if existed:
                for entry in run.path.iterdir():
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            else:
                shutil.rmtree(run.path, ignore_errors=True)
        raise
    final = None
    if dist.main:
        if it == max_iter:
            final = run.final_path
            from .model.checkpoint import save_checkpoint  # noqa: PLC0415

            with atomic_path(final) as tmp:
                save_checkpoint(model, tmp, extra={"iteration": it})
        _plot(run.curves_path, metrics)
    return TrainResult(run.path, it, final or last_ckpt, metrics, (ape or {}).get("APe"))


def _loop(loader, model, ddp_model, opt, sched, scaler, run: RunFolder, cfg: TrainConfig, dist: _Dist, device,
          use_amp: bool, val, metrics: list, bar, start: int, stop: int, max_iter: int, ckpt_period: int,
          eval_period: int, t0: float):
    """The training iterations ``start`` → ``stop``; returns (last iteration, last checkpoint, last APe)."""
    from .model import prepare_images  # noqa: PLC0415

    it = start
    last_ckpt = None
    ape = None
    for batch in loader:
        raise_failure(batch)  # a worker's EntityKitError, raised here as the same one line
        images, targets = batch
        model.train()
        batch, image_sizes = prepare_images([im.to(device) for im in images], model.cfg)
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            losses = ddp_model(batch, targets, image_sizes=image_sizes)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise EntityKitError(f"loss became {total.item()} at iteration {it} ({ {k: float(v) for k, v in losses.items()} }); "
                                 "lower the learning rate or enable clip_grad")
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if cfg.clip_grad > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(opt)
        scaler.update()
        sched.step()
        it += 1
        record = {"iter": it, "lr": opt.param_groups[0]["lr"], "loss": float(total.detach()),
                  **{k: float(v.detach()) for k, v in losses.items()}}
        if dist.world > 1:
            record = _average(record, dist)
        bar(record)
        if dist.main and (it % cfg.log_period == 0 or it == stop):
            record["time"] = round(time.perf_counter() - t0, 3)
            metrics.append(record)
            run.append_metrics(record)
        if val is not None and (it % eval_period == 0 or it == max_iter):
            result = _evaluate(model, val, device, dist, cfg.exif)
            if dist.main:
                ape = result
                rec = {"iter": it, **{f"val/{k}": v for k, v in result.items()}}
                metrics.append(rec)
                run.append_metrics(rec)
        if it % ckpt_period == 0 or it == max_iter:
            if dist.main:
                last_ckpt = run.save_checkpoint(it, model, _train_state(it, opt, sched, scaler))
                run.prune_checkpoints(cfg.keep_last)
            if dist.world > 1:
                torch.distributed.barrier()
    return it, last_ckpt, ape


def _average(record: dict[str, Any], dist: _Dist) -> dict[str, Any]:
    keys = [k for k in record if k not in ("iter", "lr")]
    t = torch.tensor([record[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    t /= dist.world
    return {**record, **dict(zip(keys, t.tolist()))}


def _train_state(it: int, opt, sched, scaler) -> dict[str, Any]:
    """What exact resume needs besides the weights (saved by ``RunFolder.save_checkpoint``)."""
    return {"iteration": it, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(), "rng": _rng_state()}


def _apply_state(state: dict[str, Any], opt, sched, scaler, where: Path) -> int:
    """Restore :func:`_train_state`'s parts; returns the iteration to continue from."""
    try:
        it = state["iteration"]
        if isinstance(it, bool) or not isinstance(it, int) or it < 0:
            raise ValueError(f"iteration {it!r}")
        lambdas = state["scheduler"].get("lr_lambdas")
        if lambdas is not None and any(x is not None for x in lambdas):
            raise ValueError("the scheduler's lr_lambdas are code, not state")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        raise EntityKitError(f"resume state does not fit this run ({type(e).__name__}: {e})", where) from None
    return it


def _load_weights(model, path: Path, device) -> None:
    from safetensors.torch import load_file  # noqa: PLC0415

    try:
        model.load_state_dict(load_file(str(path), device=str(device)))
    except Exception as e:  # noqa: BLE001  (safetensors' errors, or weights of another model)
        raise EntityKitError(f"cannot load the checkpoint's weights: {' '.join(str(e).split())[:300]}", path) from None


def _open_val(path: str):
    """The validation dataset, opened before training starts (a bad file stops the run before it is written)."""
    from .dataset import EntityDataset  # noqa: PLC0415

    # every rule of check but the image files, as for --train: scored after training steps, so refused up front
    return EntityDataset.open(path, need_image_root=True, validate="full")


@torch.no_grad()
def _evaluate(model, val, device, dist: _Dist, exif: bool = True) -> dict[str, float]:
    """APe of the current weights on an entity dataset (rank 0 scores; other ranks wait)."""
    from .evaluation import evaluate  # noqa: PLC0415

    result: dict[str, float] = {}
    if dist.main:
        r = evaluate(val.path, predict_results(model, val, exif=exif), pq=False, by_source=False)
        result = {k: float(v) for k, v in r.summary.items()}
    if dist.world > 1:
        torch.distributed.barrier()
    return result


@torch.no_grad()
def predict_results(model, dataset, *, exif: bool = True) -> list[dict[str, Any]]:
    """COCO-results records (RLE + score per entity) of a model on every image of an entity dataset
    (a path or an ``EntityDataset``): the model-level :class:`~entitykit.model.predictor.Predictor`
    and :func:`~entitykit.prediction_format.entity_records`, exactly what ``predict`` writes."""
    from .dataset import EntityDataset  # noqa: PLC0415
    from .images import read_image  # noqa: PLC0415
    from .model.predictor import Predictor  # noqa: PLC0415
    from .prediction_format import entity_records  # noqa: PLC0415

    ds = dataset if isinstance(dataset, EntityDataset) else EntityDataset.load(dataset)
    predictor = Predictor(model)
    results: list[dict[str, Any]] = []
    for img in ds.images:
        path = ds.image_path(img)
        item = f"image {img['id']!r}"
        if path is None:
            raise EntityKitError("the dataset records no image folder (info.image_root)", ds.path, item)
        image = read_image(path, exif=exif, item=item, expect=(img["height"], img["width"]))
        pred = predictor(image)
        results.extend(entity_records(img["id"], pred.id_map, pred.scores)[1])
    return results


def _plot(png: Path, metrics: list[dict[str, Any]]) -> None:
    from .plotting import line_chart  # noqa: PLC0415

    train_rows = [m for m in metrics if "loss" in m]
    val_rows = [m for m in metrics if "val/APe" in m]
    if not train_rows:
        return
    loss_keys = [k for k in train_rows[0] if k.startswith("loss")]
    panels = [{"title": "training losses", "xlabel": "iteration", "log_y": True,
               "series": {k: ([m["iter"] for m in train_rows], [m.get(k) for m in train_rows]) for k in loss_keys}}]
    if val_rows:
        panels.append({"title": "validation APe", "xlabel": "iteration",
                       "series": {k: ([m["iter"] for m in val_rows], [m[f"val/{k}"] for m in val_rows])
                                  for k in ("APe", "APe50", "APe75")}})
    with atomic_path(png) as tmp:
        line_chart(panels, tmp)
