"""`entitykit train`: the paper's recipe (SGD, linear warmup, multistep) or AdamW, on one process or
``torchrun --nproc_per_node N`` (DDP, no source edits), with exact resume after an interruption.

A run folder holds ``config.json`` (the resolved configuration), ``metrics.jsonl``, ``curves.png``,
``checkpoints/model_XXXXXXX.safetensors`` (weights + model config, self-describing) with a matching
``.state.pt`` (optimizer, scheduler, grad-scaler and RNG state), ``last_checkpoint`` and
``model_final.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Augment, TrainingSet, batch_keys, collate, open_source
from .errors import EntityKitError
from .fileio import atomic_path, write_json

TRAIN_FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    """Everything a run needs. Solver fields left at None take the model preset's values."""

    train: list[str] = field(default_factory=list)  # entity JSONs or HDF5 packs
    train_weights: list[float] | None = None  # sampling weight per training set
    val: str | None = None  # entity JSON scored with APe every eval_period
    output: str = "runs/entitykit"
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
    log_period: int = 10
    seed: int = 0
    deterministic: bool = True  # deterministic kernels: same seed ⇒ same weights, exact resume
    device: str = "auto"
    workers: int = 0  # data-loading processes per training process
    sync_bn: bool = True  # multi-GPU DDP: BatchNorm layers (the mask branch) become SyncBatchNorm

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise EntityKitError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        return cls(**data)


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TOML (or YAML, if PyYAML is installed) file, then ``key=value`` overrides (``model.lr_steps=[5,8]``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
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
            raise EntityKitError(f"cannot parse config: {e}", path) from None
        if not isinstance(data, dict):
            raise EntityKitError("config must be a table of options", path)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise EntityKitError(f"override {item!r} is not key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: a string
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise EntityKitError(f"override {item!r}: {p} is not a table")
        node[leaf] = value
    return TrainConfig.from_dict(data)


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
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise EntityKitError("device 'cuda' requested but no CUDA GPU is available")
        return torch.device("cuda", dist.local_rank)
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
    """Run (or resume) training. ``stop_after`` ends this process after that many iterations, as an
    interruption would (checkpoints written so far stay; ``resume=True`` continues)."""
    from .model import EntityModel, get_config, prepare_images  # noqa: PLC0415
    from .model.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint  # noqa: PLC0415

    if not cfg.train:
        raise EntityKitError("no training data: give at least one entity dataset (train = [...])")
    if cfg.train_weights is not None and len(cfg.train_weights) != len(cfg.train):
        raise EntityKitError(f"train_weights has {len(cfg.train_weights)} values for {len(cfg.train)} datasets")
    kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist = _init_distributed(kind)
    device = _device(cfg, dist)
    out = Path(cfg.output)

    # --- model and the solver it implies
    if cfg.init is not None:
        mcfg, _ = read_checkpoint_config(cfg.init)
        mcfg = mcfg.replace(**cfg.model) if cfg.model else mcfg
    else:
        mcfg = get_config(cfg.preset, **cfg.model)
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
        raise EntityKitError(f"batch_size {solver['batch_size']} is not divisible by the {dist.world} processes")
    if solver["optimizer"] not in ("sgd", "adamw"):
        raise EntityKitError(f"unknown optimizer {solver['optimizer']!r}; choose sgd or adamw")

    # Some CPU kernels (scatter/index accumulation) are otherwise not bit-reproducible run to run.
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    torch.manual_seed(cfg.seed)  # same initial weights on every process
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = load_checkpoint(cfg.init, **cfg.model) if cfg.init else EntityModel(mcfg)
    model.to(device)
    ddp_model = model
    if dist.world > 1:
        model = _maybe_sync_bn(model, cfg, device)
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    # --- data
    sources = [open_source(p) for p in cfg.train]
    augment = Augment(tuple(solver["min_sizes"]), solver["max_size"], cfg.flip, tuple(cfg.lsj) if cfg.lsj else None)
    dataset = TrainingSet(sources, augment, seed=cfg.seed)
    sizes = [len(s) for s in sources]

    if solver["optimizer"] == "sgd":
        opt = torch.optim.SGD(_param_groups(model, solver["weight_decay"]), lr=solver["lr"], momentum=cfg.momentum)
    else:
        opt = torch.optim.AdamW(_param_groups(model, solver["weight_decay"]), lr=solver["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: _lr_factor(it, solver["warmup_iters"], cfg.warmup_factor, solver["lr_steps"], cfg.gamma))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    ckpt_dir = out / "checkpoints"
    start = 0
    metrics: list[dict[str, Any]] = []
    if resume:
        start = _resume(ckpt_dir, model, opt, sched, scaler, device)
        metrics = _read_metrics(out / "metrics.jsonl", start)
    elif dist.main and out.exists() and (ckpt_dir / "last_checkpoint").exists():
        raise EntityKitError("run folder already has checkpoints; pass --resume to continue or choose a new --output", out)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"format_version": TRAIN_FORMAT_VERSION, "train": dataclasses.asdict(cfg),
                                         "solver": solver, "model": mcfg.to_dict(), "world_size": dist.world}, indent=2)

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
    with train_progress(stop - start, start, max_iter, enabled=progress and dist.main) as bar:
        for images, targets in loader:
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
                _append_jsonl(out / "metrics.jsonl", record)
            if cfg.val and (it % eval_period == 0 or it == max_iter):
                result = _evaluate(model, cfg.val, device, dist)
                if dist.main:
                    ape = result
                    rec = {"iter": it, **{f"val/{k}": v for k, v in result.items()}}
                    metrics.append(rec)
                    _append_jsonl(out / "metrics.jsonl", rec)
            if it % ckpt_period == 0 or it == max_iter:
                if dist.main:
                    last_ckpt = _save(ckpt_dir, it, model, opt, sched, scaler, save_checkpoint)
                if dist.world > 1:
                    torch.distributed.barrier()
    final = None
    if dist.main:
        if it == max_iter:
            final = out / "model_final.safetensors"
            with atomic_path(final) as tmp:
                save_checkpoint(model, tmp, extra={"iteration": it})
        _plot(out, metrics)
    return TrainResult(out, it, final or last_ckpt, metrics, (ape or {}).get("APe"))


def _average(record: dict[str, Any], dist: _Dist) -> dict[str, Any]:
    keys = [k for k in record if k not in ("iter", "lr")]
    t = torch.tensor([record[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    t /= dist.world
    return {**record, **dict(zip(keys, t.tolist()))}


def _save(ckpt_dir: Path, it: int, model, opt, sched, scaler, save_checkpoint) -> Path:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"model_{it:07d}"
    weights = ckpt_dir / f"{name}.safetensors"
    with atomic_path(weights) as tmp:
        save_checkpoint(model, tmp, extra={"iteration": it})
    state = {"iteration": it, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": scaler.state_dict(), "rng": _rng_state()}
    with atomic_path(ckpt_dir / f"{name}.state.pt") as tmp:
        torch.save(state, tmp)
    with atomic_path(ckpt_dir / "last_checkpoint") as tmp:
        tmp.write_text(name + "\n")
    return weights


def _resume(ckpt_dir: Path, model, opt, sched, scaler, device) -> int:
    from safetensors.torch import load_file  # noqa: PLC0415

    pointer = ckpt_dir / "last_checkpoint"
    if not pointer.is_file():
        raise EntityKitError("nothing to resume: no checkpoints/last_checkpoint", ckpt_dir)
    name = pointer.read_text().strip()
    weights, state_path = ckpt_dir / f"{name}.safetensors", ckpt_dir / f"{name}.state.pt"
    if not weights.is_file() or not state_path.is_file():
        raise EntityKitError(f"checkpoint {name} is incomplete (weights or .state.pt missing)", ckpt_dir)
    model.load_state_dict(load_file(str(weights), device=str(device)))
    state = torch.load(state_path, map_location=device, weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return int(state["iteration"])


def _read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    """Keep the log consistent after a resume: drop records past the checkpoint we restart from."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["iter"] <= upto]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


@torch.no_grad()
def _evaluate(model, val_path: str, device, dist: _Dist) -> dict[str, float]:
    """APe of the current weights on an entity dataset (rank 0 scores; other ranks wait)."""
    from .evaluation import evaluate  # noqa: PLC0415

    result: dict[str, float] = {}
    if dist.main:
        r = evaluate(val_path, predict_results(model, val_path), pq=False, by_source=False)
        result = {k: float(v) for k, v in r.summary.items()}
    if dist.world > 1:
        torch.distributed.barrier()
    return result


@torch.no_grad()
def predict_results(model, dataset_path: str | Path) -> list[dict[str, Any]]:
    """COCO-results records (RLE + score per entity) of a model on every image of an entity dataset."""
    from .dataset import EntityDataset  # noqa: PLC0415
    from .masks import encode_id_map  # noqa: PLC0415
    from .predict import Predictor, load_image  # noqa: PLC0415

    ds = EntityDataset.load(dataset_path)
    predictor = Predictor(model)
    was_training = model.training
    results: list[dict[str, Any]] = []
    for img in ds.images:
        pred = predictor(load_image(ds.image_path(img)))
        ids, rles, _ = encode_id_map(pred.id_map)
        for k, rle in zip(ids.tolist(), rles):
            results.append({"image_id": img["id"], "category_id": 1, "segmentation": rle, "score": float(pred.scores[k - 1])})
    model.train(was_training)
    return results


def _plot(out: Path, metrics: list[dict[str, Any]]) -> None:
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
    with atomic_path(out / "curves.png") as tmp:
        line_chart(panels, tmp)
