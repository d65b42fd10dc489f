"""Command-line interface: each command parses options, calls one library function, prints."""

from __future__ import annotations

from ._app import app

# Importing a command module registers its commands on ``app``.
from . import data, demo, evaluate, export, merge_pack, predict_edit, train  # noqa: E402,F401


def main() -> None:
    app()
