"""Command-line interface: each command parses options, calls one library function, prints.

Start-up is cheap: every command module imports the library inside its command functions, so
importing this package (``entitykit --help``, ``--version``, every data command) never imports
PyTorch (tests/test_cli_conventions.py checks it). ``entitykit NAME …`` imports only the module
that registers NAME (``COMMAND_MODULES``); ``entitykit.cli.app`` (and ``--help``, a root option
first, an unknown name) has every command. Measured: the eight other command modules cost ~0.012 s
of ``entitykit eval`` on 300 images (~0.3 s in all).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

# the command modules, in the order their commands are listed by --help
MODULES = ("data", "demo", "evaluate", "export", "merge_pack", "predict_edit", "shards", "train", "view")
# each command or command group → the module that registers it (tests/test_cli_conventions.py checks
# this against what each module registers, so a new command cannot be left out)
COMMAND_MODULES = {
    "info": "data", "check": "data", "idmaps": "data", "convert": "data",
    "demo": "demo", "synth": "demo",
    "eval": "evaluate",
    "export-onnx": "export", "import-weights": "export",
    "merge": "merge_pack", "pack": "merge_pack",
    "predict": "predict_edit", "edit": "predict_edit",
    "shards": "shards",
    "train": "train",
    "view": "view",
}


def load_commands(name: str | None = None) -> Any:
    """The Typer app with the command ``name`` registered (None or an unknown name: every command,
    listed in ``MODULES`` order whatever was imported first)."""
    from ._app import app  # noqa: PLC0415

    if name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{COMMAND_MODULES[name]}")
        return app
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    rank = {f"{__name__}.{m}": k for k, m in enumerate(MODULES)}
    app.registered_commands.sort(key=lambda c: rank.get(c.callback.__module__, len(rank)))  # stable
    app.registered_groups.sort(key=lambda g: rank.get(f"{__name__}.{COMMAND_MODULES.get(g.name, '')}", len(rank)))
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # `from entitykit.cli import app`: every command
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    load_commands(sys.argv[1] if len(sys.argv) > 1 else None)()
