"""Checkpoints: one safetensors file with the model config embedded in its metadata.

Fix of the authors' setup, where weights and config travel separately: a file alone rebuilds its model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import EntityKitError
from ..fileio import atomic_path
from .config import ModelConfig
from .entity_model import EntityModel

FORMAT = "entitykit-model"
FORMAT_VERSION = "1"


def save_checkpoint(model: EntityModel, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write weights (buffers included) and config; `extra` adds string metadata (e.g. iteration).

    Written through ``entitykit.fileio.atomic_path``, as every output: an interrupted save leaves no
    partial file, and the file gets the mode the umask gives (0644 under umask 022), not the 0600
    that safetensors' ``save_file`` creates. Errors: EntityKitError naming ``path`` when it cannot be
    written (full disk, read-only folder, a folder in the way).
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.cfg.to_json()}
    meta.update({str(k): str(v) for k, v in (extra or {}).items()})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_checkpoint_config(path: str | Path) -> tuple[ModelConfig, dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise EntityKitError("checkpoint file not found", path=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - not a safetensors file
        hint = ("; an authors' detectron2 checkpoint? import it first: entitykit import-weights "
                f"{path.name} -o model.safetensors") if path.suffix in (".pth", ".pkl", ".pt") else ""
        raise EntityKitError(f"not a safetensors checkpoint: {exc}{hint}", path=path) from exc
    if meta.get("format") != FORMAT or "config" not in meta:
        raise EntityKitError("safetensors file has no entitykit model config in its metadata", path=path)
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except EntityKitError as exc:
        raise EntityKitError(exc.problem, path=path, item="config") from exc
    return cfg, meta


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    **overrides) -> EntityModel:
    """Rebuild the model from the embedded config (overrides e.g. score_thresh) and load its weights.

    Backbone weights are never fetched here: the checkpoint already holds them, so a ``pretrained``
    override is ignored (a run config that names ImageNet weights can still start from a checkpoint).
    """
    cfg, _ = read_checkpoint_config(path)
    overrides = {k: v for k, v in overrides.items() if k != "pretrained"}
    cfg = cfg.replace(pretrained=None, **overrides)
    model = EntityModel(cfg)
    from safetensors.torch import load_file

    state = load_file(str(path), device=str(map_location))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        if overrides:
            changed = ", ".join(f"model.{k}" for k in sorted(overrides))
            raise EntityKitError(f"the model options {changed} change the architecture this checkpoint was "
                                 "saved with; its weights no longer fit (leave them out to start from it)",
                                 path=path) from None
        raise EntityKitError(f"weights do not match the embedded config: {exc}", path=path) from exc
    return model.to(map_location).eval()
