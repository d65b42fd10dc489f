"""Run folders: what a training run writes, and the rules for starting, stopping and resuming one.

Layout (``entitykit.train`` is the only writer)::

    runs/x/
      config.json                        the run's configuration (below)
      metrics.jsonl                      one JSON object per line: training records {"iter", "lr", "loss",
                                         "loss_*", "time"} and validation records {"iter", "val/APe", …}
      curves.png                         losses and validation APe
      checkpoints/
        model_0000200.safetensors        weights + model config (``entitykit.model.checkpoint``)
        model_0000200.state.safetensors  resume state, its tensors: optimizer moments, RNG states (uint8)
        model_0000200.state.json         resume state, the rest: iteration, scheduler, grad scaler,
                                         Python and NumPy RNG states; tensors referenced by name
        last_checkpoint                  the name of the newest complete checkpoint ("model_0000200")
      model_final.safetensors            the weights after the last iteration

``config.json``: ``{"format": "entitykit-run", "format_version": 1, "train": {every TrainConfig
field}, "solver": {the solver values in force, preset defaults resolved}, "model": {every
ModelConfig field}, "world_size": N, "threads": CPU threads per process in force}``.

Periodic checkpoints kept: the ``keep_last`` newest (``TrainConfig.keep_last``, default 3; 0 keeps
all), and always the one ``last_checkpoint`` names (what ``--resume`` needs). Older ones —
weights and both state files — are deleted once a newer checkpoint is complete
(:meth:`RunFolder.prune_checkpoints`); ``model_final.safetensors`` is never touched.

Resume state holds no pickle, so a planted file cannot run code: tensors go to safetensors, and
the JSON encodes tuples as ``{"$tuple": [...]}``, dicts with non-string keys as ``{"$items":
[[k, v], ...]}``, tensors as ``{"$tensor": name}``, NumPy arrays as ``{"$ndarray": [...], "dtype":
...}`` and non-finite floats as ``{"$float": "nan"}``. A checkpoint of an older entitykit
(``.state.pt``, a pickle) is refused, never unpickled.

Rules (each refusal is one :class:`EntityKitError` line naming the file):

- the run folder and its ``config.json`` are written only once the caller has checked every input
  (:meth:`RunFolder.write_config`); nothing is created by a start that fails;
- a fresh run refuses a folder that already holds a run (``config.json``, ``metrics.jsonl`` or
  ``checkpoints/``), suggesting ``--resume`` or a new ``-o``, and a folder holding anything else;
  an absent or empty folder is fine;
- a resumed run reads ``config.json``; options given again must equal the stored ones
  (:meth:`RunFolder.check_resume_options`), except ``max_iter``, which may be raised, and
  ``threads`` and ``keep_last``, which may change (the machine, the disk);
- a resumed run restarts from the checkpoint named by ``last_checkpoint``, or from iteration 0
  when the run stopped before its first one; ``metrics.jsonl`` is cut to the iterations up to
  there (:meth:`RunFolder.restart_metrics`), so the log reads as if never interrupted.

Every file is written to a temporary path and renamed (``entitykit.fileio``); ``last_checkpoint``
is written after the files it names, so a kill at any moment leaves the previous checkpoint in force.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from .errors import EntityKitError
from .fileio import atomic_path, read_json, write_json

DEFAULT_OUTPUT = "runs/entitykit"  # the run folder when none is named
RUN_FORMAT = "entitykit-run"
RUN_FORMAT_VERSION = 1
STATE_FORMAT = "entitykit-train-state"
STATE_FORMAT_VERSION = 1

CONFIG_JSON = "config.json"
METRICS_JSONL = "metrics.jsonl"
CURVES_PNG = "curves.png"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last_checkpoint"
FINAL_WEIGHTS = "model_final.safetensors"

# options that may differ on resume: max_iter may be raised to train longer; threads and keep_last may
# change (another machine, less disk); output is the folder itself
RESUME_MAY_RAISE = ("max_iter",)
RESUME_MAY_CHANGE = ("threads", "keep_last")
_NOT_COMPARED = ("output", *RESUME_MAY_CHANGE)

_NAME = re.compile(r"model_\d{7,}")
_OLD_STATE_TEXT = ("this run was written by an older entitykit; resume state in .state.pt is a pickle and is "
                   "not loaded for safety (start a new run, or --init from the .safetensors weights)")
# NumPy dtypes a resume state may hold (NumPy's RNG state is uint32)
_NDARRAY_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int32", "int64", "float32", "float64")


def _iteration(name: str) -> int:
    """200 for ``model_0000200`` (names sort by iteration, also past 7 digits)."""
    return int(name[len("model_"):])


def checkpoint_name(iteration: int) -> str:
    """``model_0000200`` for iteration 200."""
    return f"model_{iteration:07d}"


class RunFolder:
    """One run folder (see the module docstring for its files and rules)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / CONFIG_JSON)
    metrics_path = property(lambda self: self.path / METRICS_JSONL)
    curves_path = property(lambda self: self.path / CURVES_PNG)
    checkpoint_dir = property(lambda self: self.path / CHECKPOINTS)
    final_path = property(lambda self: self.path / FINAL_WEIGHTS)

    # ------------------------------------------------------------------------------ starting
    def run_files(self) -> list[str]:
        """The files present that mark this folder as holding a run."""
        return [n for n in (CONFIG_JSON, METRICS_JSONL, CHECKPOINTS) if (self.path / n).exists()]

    def check_unused(self) -> None:
        """Refuse to start a fresh run here unless the folder is absent or empty: one that holds a
        run (suggesting ``--resume``), one that holds anything else (a mistyped ``-o`` must not
        mix a run into a user's files), or a file."""
        if self.path.exists() and not self.path.is_dir():
            raise EntityKitError("is a file, not a run folder; choose another -o", self.path)
        found = self.run_files()
        if found:
            raise EntityKitError(f"run folder already holds a run ({', '.join(found)}); continue it with --resume "
                                 "or choose a new -o", self.path)
        if self.path.is_dir():
            other = sorted(p.name for p in self.path.iterdir())
            if other:
                shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
                raise EntityKitError(f"folder is not empty ({shown}) and holds no run; choose a new or empty -o",
                                     self.path)

    def write_config(self, record: dict[str, Any]) -> None:
        """Create the folder and write ``config.json`` (``train``, ``solver``, ``model``, ``world_size``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, **record}, indent=2)

    # ------------------------------------------------------------------------------ resuming
    def read_config(self) -> dict[str, Any]:
        """``config.json`` as written by :meth:`write_config`, its structure checked (not its values:
        the caller types them). Raises when the folder holds no run to resume."""
        if not self.config_path.is_file():
            if self.path.is_dir() and self.run_files():
                raise EntityKitError("cannot resume: the run folder has no config.json", self.path)
            raise EntityKitError("nothing to resume here: no config.json (start the run without --resume)", self.path)
        data = read_json(self.config_path, "run config")
        if not isinstance(data, dict):
            raise EntityKitError("run config must be a JSON object", self.config_path)
        version = data.get("format_version")
        if data.get("format", RUN_FORMAT) != RUN_FORMAT or not isinstance(version, int):
            raise EntityKitError("not an entitykit run config (format / format_version)", self.config_path)
        if version > RUN_FORMAT_VERSION:
            raise EntityKitError(f"run config format_version {version} is newer than this entitykit reads "
                                 f"({RUN_FORMAT_VERSION}); upgrade entitykit", self.config_path)
        for key in ("train", "solver", "model"):
            if not isinstance(data.get(key), dict):
                raise EntityKitError(f"run config has no {key!r} table", self.config_path, key)
        return data

    def check_resume_options(self, stored: dict[str, Any], given: dict[str, Any], *, whole: bool = False) -> None:
        """Refuse options given for a resumed run that differ from the run's own.

        ``stored``: :meth:`read_config`'s record, its ``train`` table completed with every field.
        ``given``: some training options (``whole=False``, what a user typed: ``model`` is a table
        of some model fields) or a whole configuration (``whole=True``: its ``model`` table must
        equal the stored overrides). A value matches when it equals the stored one, or the value
        in force when the stored one was left to the preset (``lr`` unset, preset 0.01: ``lr =
        0.01`` matches); a model field given alone matches the model config in force. ``max_iter``
        may be raised. The first difference is one error naming ``config.json``, the key and both values.
        """
        train, solver, model = stored["train"], stored["solver"], stored["model"]
        for key, value in given.items():
            if key in _NOT_COMPARED:
                continue
            if key == "model":
                overrides = train.get("model") or {}
                value = value or {}
                if whole:
                    for mk in sorted(set(overrides) | set(value)):
                        if mk not in value or mk not in overrides or not _same(overrides[mk], value[mk]):
                            self._conflict(f"model.{mk}", overrides.get(mk, "(not set)"), value.get(mk, "(not set)"))
                    continue
                for mk, mv in value.items():
                    have = model.get(mk, overrides.get(mk))
                    if not _same(have, mv):
                        self._conflict(f"model.{mk}", have, mv)
                continue
            have = train.get(key)
            if _same(have, value) or (have is None and key in solver and _same(solver[key], value)):
                continue
            if key in RESUME_MAY_RAISE and value is not None:
                in_force = solver.get(key, have)
                if isinstance(in_force, int) and value >= in_force:
                    continue
                raise EntityKitError(f"--resume can raise {key} to train longer, not lower it: the run has "
                                     f"{in_force}, given {value}", self.config_path, key)
            self._conflict(key, have if have is not None or key not in solver else solver[key], value)

    def _conflict(self, key: str, have: Any, given: Any) -> None:
        raise EntityKitError(f"given {given!r}, but the run was started with {have!r}; with --resume give only the "
                             "options the run has (max_iter may be raised), or start a new run with another -o",
                             self.config_path, key)

    # ------------------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[str]:
        """Names of the complete checkpoints (weights + both state files), oldest first."""
        d = self.checkpoint_dir
        if not d.is_dir():
            return []
        names = [p.name[: -len(".safetensors")] for p in d.glob("model_*.safetensors")
                 if not p.name.endswith(".state.safetensors")]
        return sorted((n for n in names if _NAME.fullmatch(n) and (d / f"{n}.state.json").is_file()
                       and (d / f"{n}.state.safetensors").is_file()), key=_iteration)

    def last_checkpoint(self) -> str | None:
        """The name ``last_checkpoint`` points to, or None when no checkpoint was completed yet."""
        pointer = self.checkpoint_dir / LAST_CHECKPOINT
        if not pointer.is_file():
            return None
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise EntityKitError(f"cannot read the checkpoint pointer: {e}", pointer) from None
        if not _NAME.fullmatch(name):
            raise EntityKitError(f"checkpoint pointer names {name[:80]!r}, not a checkpoint (model_NNNNNNN)", pointer)
        return name

    def save_checkpoint(self, iteration: int, model: Any, state: dict[str, Any]) -> Path:
        """Weights (``.safetensors``, model config embedded), the resume state (``.state.safetensors``
        + ``.state.json``), then the pointer. Returns the weights' path."""
        from .model.checkpoint import save_checkpoint  # noqa: PLC0415

        d = self.checkpoint_dir
        d.mkdir(parents=True, exist_ok=True)
        name = checkpoint_name(iteration)
        weights = d / f"{name}.safetensors"
        with atomic_path(weights) as tmp:
            save_checkpoint(model, tmp, extra={"iteration": iteration})
        save_state(d / name, state)
        with atomic_path(d / LAST_CHECKPOINT) as tmp:
            tmp.write_text(name + "\n", encoding="utf-8")
        return weights

    def prune_checkpoints(self, keep_last: int) -> list[str]:
        """Delete periodic checkpoints older than the ``keep_last`` newest complete ones (0: keep
        all), never the one ``last_checkpoint`` names nor anything newer than it; each deleted
        checkpoint's weights go last, so a kill midway leaves at worst an incomplete older
        checkpoint, which :meth:`checkpoints` ignores. Returns the names deleted."""
        if not keep_last:
            return []
        pointer = self.last_checkpoint()
        if pointer is None:
            return []
        d = self.checkpoint_dir
        kept = set(self.checkpoints()[-keep_last:]) | {pointer}
        names = {p.name.split(".", 1)[0] for p in d.glob("model_*")}
        old = sorted((n for n in names if _NAME.fullmatch(n) and n not in kept and _iteration(n) < _iteration(pointer)),
                     key=_iteration)
        for name in old:
            for suffix in (".state.json", ".state.safetensors", ".safetensors"):
                (d / f"{name}{suffix}").unlink(missing_ok=True)
        return old

    def load_checkpoint(self, name: str) -> tuple[Path, dict[str, Any]]:
        """(weights path, resume state) of checkpoint ``name``; refuses a pickled ``.state.pt``."""
        d = self.checkpoint_dir
        weights = d / f"{name}.safetensors"
        if not (d / f"{name}.state.json").is_file() and (d / f"{name}.state.pt").exists():
            raise EntityKitError(_OLD_STATE_TEXT, d / f"{name}.state.pt")
        missing = [p.name for p in (weights, d / f"{name}.state.json", d / f"{name}.state.safetensors")
                   if not p.is_file()]
        if missing:
            raise EntityKitError(f"checkpoint {name} is incomplete: {', '.join(missing)} missing", d)
        return weights, load_state(d / name)

    # ------------------------------------------------------------------------------ metrics
    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; a half-written last line (a kill mid-write) is dropped."""
        path = self.metrics_path
        if not path.is_file():
            return []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise EntityKitError(f"cannot read the metrics log: {e}", path) from None
        rows = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines):
                    break
                raise EntityKitError(f"line {n} is not JSON", path) from None
            if not isinstance(row, dict) or not isinstance(row.get("iter"), int):
                raise EntityKitError(f"line {n} is not a metrics record with an integer 'iter'", path)
            rows.append(row)
        return rows

    def restart_metrics(self, upto: int) -> list[dict[str, Any]]:
        """Cut ``metrics.jsonl`` to the records of iterations ≤ ``upto`` (the point a run resumes
        from); returns them. Nothing to cut: nothing written."""
        if not self.metrics_path.exists():
            return []
        rows = [r for r in self.read_metrics() if r["iter"] <= upto]
        with atomic_path(self.metrics_path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return rows

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add one record as one line (one write; a kill leaves at most a partial last line, which
        :meth:`read_metrics` drops)."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------- resume state
def save_state(stem: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts / lists / tuples of tensors, arrays and scalars) as
    ``<stem>.state.safetensors`` (the tensors) and ``<stem>.state.json`` (the rest), atomically."""
    from safetensors.torch import save_file  # noqa: PLC0415

    stem = Path(stem)
    tensors: dict[str, Any] = {}
    encoded = _encode(state, "state", tensors)
    with atomic_path(stem.with_name(stem.name + ".state.safetensors")) as tmp:
        save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT, "format_version": str(STATE_FORMAT_VERSION)})
    write_json(stem.with_name(stem.name + ".state.json"),
               {"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION, "state": encoded})


def load_state(stem: str | Path) -> dict[str, Any]:
    """Read what :func:`save_state` wrote (tensors on the CPU). JSON and safetensors only: no code
    runs while reading. Raises :class:`EntityKitError` naming the file for anything malformed."""
    from safetensors.torch import load_file  # noqa: PLC0415

    stem = Path(stem)
    json_path = stem.with_name(stem.name + ".state.json")
    tensor_path = stem.with_name(stem.name + ".state.safetensors")
    data = read_json(json_path, "resume state")
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or "state" not in data:
        raise EntityKitError("not an entitykit resume state (format)", json_path)
    if not isinstance(data.get("format_version"), int) or data["format_version"] > STATE_FORMAT_VERSION:
        raise EntityKitError(f"resume state format_version {data.get('format_version')!r} is not one this "
                             f"entitykit reads ({STATE_FORMAT_VERSION})", json_path)
    try:
        tensors = load_file(str(tensor_path), device="cpu")
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types for a bad file)
        raise EntityKitError(f"not a readable safetensors file: {e}", tensor_path) from None
    state = _decode(data["state"], tensors, json_path)
    if not isinstance(state, dict):
        raise EntityKitError("resume state must be a table", json_path)
    return state


def _encode(obj: Any, where: str, tensors: dict[str, Any]) -> Any:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if isinstance(obj, torch.Tensor):
        tensors[where] = obj.detach().to("cpu").contiguous().clone()
        return {"$tensor": where}
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in _NDARRAY_DTYPES:
            raise TypeError(f"resume state: cannot store a NumPy {obj.dtype} array at {where}")
        return {"$ndarray": obj.tolist(), "dtype": obj.dtype.name}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), where, tensors)
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, f"{where}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{where}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, f"{where}.{k}", tensors) for k, v in obj.items()}
        return {"$items": [[_encode(k, f"{where}.key{i}", tensors), _encode(v, f"{where}.{k}", tensors)]
                           for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"resume state: cannot store a {type(obj).__name__} at {where}")  # a bug, not user input


def _decode(obj: Any, tensors: dict[str, Any], path: Path) -> Any:
    import numpy as np  # noqa: PLC0415

    if obj is None or isinstance(obj, (bool, str, int, float)):
        return obj
    if isinstance(obj, list):
        return [_decode(v, tensors, path) for v in obj]
    if not isinstance(obj, dict):  # pragma: no cover  (json yields nothing else)
        raise EntityKitError(f"unexpected {type(obj).__name__} in the resume state", path)
    tags = [k for k in obj if k.startswith("$")]
    if not tags:
        return {k: _decode(v, tensors, path) for k, v in obj.items()}
    tag = tags[0]
    value = obj[tag]
    if tag == "$tensor" and isinstance(value, str):
        if value not in tensors:
            raise EntityKitError(f"resume state refers to tensor {value!r}, absent from the .state.safetensors", path)
        return tensors[value]
    if tag == "$tuple" and isinstance(value, list):
        return tuple(_decode(v, tensors, path) for v in value)
    if tag == "$items" and isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        try:
            return {_decode(k, tensors, path): _decode(v, tensors, path) for k, v in value}
        except TypeError:  # a key that cannot be one (a list, a tensor)
            raise EntityKitError("malformed resume state: a table key is not a number or a string", path) from None
    if tag == "$float" and value in ("nan", "inf", "-inf"):
        return float(value)
    if tag == "$ndarray" and isinstance(value, list) and obj.get("dtype") in _NDARRAY_DTYPES:
        try:
            return np.array(value, dtype=obj["dtype"])
        except (TypeError, ValueError, OverflowError) as e:
            raise EntityKitError(f"malformed array in the resume state: {e}", path) from None
    raise EntityKitError(f"malformed resume state entry {tag!r}", path)


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples are lists), for comparing a config with its stored form."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)
