"""Command-line interface: each command parses options, calls one library function, prints.

Start-up is cheap: every command module imports the library inside its command functions, so
importing this package (``entitykit --help``, ``--version``, every data command) never imports
PyTorch (tests/test_cli_conventions.py checks it).
"""

from __future__ import annotations

from ._app import app

# Importing a command module registers its commands on ``app``.
from . import data, demo, evaluate, export, merge_pack, predict_edit, shards, train, view  # noqa: E402,F401


def main() -> None:
    app()
