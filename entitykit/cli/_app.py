"""The Typer application, its conventions, and the one place user errors become a message and a
non-zero exit.

Conventions every command follows (tests/test_cli_conventions.py checks them):

* results (tables, "wrote …" lines, JSON) go to stdout through ``console``; progress, warnings,
  logs and errors go to stderr through ``err_console`` — ``entitykit check x.json --json > o.json``
  is valid JSON;
* ``-q/--quiet`` leaves only errors and the results explicitly asked for (``--json``);
  ``-v/--verbose`` says more where there is more to say (every problem instead of the first few);
* an option with a fixed set of values lists them in ``--help`` and refuses anything else;
* importing the command modules is cheap: they import the library inside the command functions,
  so ``entitykit --help``, ``--version`` and the data commands never import PyTorch.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar, get_args

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from ..errors import ProblemsError, describe_failure
from ..limits import DEFAULT_MAX_PIXELS, ENV_MAX_PIXELS, set_max_pixels


class _LazyConsole:
    """A rich ``Console`` made on first use (every attribute is the Console's). Importing rich takes
    ~30-50 ms, and ``entitykit eval … -q --json -`` never prints through a console. Measured with
    the command modules' own rich imports also moved into their functions (a copy of the package):
    ``import entitykit.cli`` 0.066 s → 0.041 s (median of 4), rich no longer imported by that command."""

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


console: Any = _LazyConsole()  # results: stdout
err_console: Any = _LazyConsole(stderr=True)  # progress, warnings, logs, errors: stderr


def escape(text: str) -> str:
    """rich's markup escape, imported on first use (see _LazyConsole)."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)


def Table(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 (stands in for the class)
    """A ``rich.table.Table``, rich imported on first use (see _LazyConsole)."""
    from rich.table import Table as RichTable  # noqa: PLC0415

    return RichTable(*args, **kwargs)


F = TypeVar("F", bound=Callable[..., Any])

QUIET_HELP = "Print only errors (and results asked for, such as --json): no progress, no tables."
QUIET = typer.Option(False, "--quiet", "-q", help=QUIET_HELP)


# ---------------------------------------------------------------------------------------------
# readable help: PATH, INTEGER, [a|b], DATASET, INPUTS... (not <list[Path]>, <int range>, {dataset})

_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN", Path: "PATH"}


def _choices(param: Any) -> str | None:
    desc = getattr(param, "type_descriptor", None)
    if desc is None:  # typer 0.27 (vendored click): the choices sit on the parameter's type
        choices = getattr(getattr(param, "type", None), "choices", None)
        return None if choices is None else "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    if not desc.is_choice:
        return None
    return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices) + "]"


def _click_type_label(param: Any) -> str:
    """typer 0.27's parameter types by click's names: "integer range" -> INTEGER, "path" -> PATH."""
    def label(t: Any) -> str:
        word = ((getattr(t, "name", "") or "value").strip("<>").split() or ["value"])[0].upper()
        return _CLICK_WORDS.get(word, word)

    t = getattr(param, "type", None)
    parts = getattr(t, "types", None)  # a tuple type
    return " ".join(map(label, parts)) if parts else label(t)


_CLICK_WORDS = {"INT": "INTEGER", "STR": "TEXT", "BOOL": "BOOLEAN"}


def _type_label(param: Any) -> str | None:
    """A click-style metavar for a parameter of a Typer with its own type layer (`type_descriptor`;
    None: leave Typer's own)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return _choices(param) or _click_type_label(param)
    choices = _choices(param)
    if choices:
        return choices
    ann = desc.annotation
    if desc.is_list:
        args = get_args(ann)
        ann = args[0] if args else str
    if desc.is_tuple:
        return " ".join(_TYPE_NAMES.get(a, "VALUE") for a in get_args(ann))
    if desc.is_path:
        return "PATH"
    return _TYPE_NAMES.get(ann, "VALUE")


def _is_path(param: Any) -> bool:
    """Whether a parameter takes paths (``Path``, ``Optional[Path]``, ``list[Path]``)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:
        return bool(desc.is_path)
    return type(getattr(param, "type", None)).__name__ in ("TyperPath", "Path")


def refuse_empty_path(param: Any, value: Any) -> None:
    """The one rule on path parameters, applied as the command line is read (every command's options
    and arguments: :func:`_readable`): an empty string is refused with one line, exit 1 — ``Path("")``
    is the current folder, so ``--images "$UNSET_VARIABLE"`` would otherwise silently mean ``.``."""
    if not _is_path(param):
        return
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, str) and v == "" for v in values):
        opts = getattr(param, "opts", None) or []
        name = max(opts, key=len) if param.param_type_name == "option" and opts else (param.name or "PATH").upper()
        err_console.print(f"[bold red]error:[/] {escape(name)}: an empty path ('') names no file or folder; give one "
                          "('.' for the current folder)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


class _ReadableOption(TyperOption):
    def process_value(self, ctx: Any, value: Any) -> Any:
        refuse_empty_path(self, value)
        return super().process_value(ctx, value)

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        return _type_label(self) or super().display_type_rich(ctx)

    def make_metavar(self, ctx: Any = None) -> str:
        # typer 0.27 (its vendored click) builds plain help from this: [a|b], INTEGER, not <int range>
        if self.metavar is not None:
            return self.metavar
        return (_type_label(self) or super().make_metavar(ctx)) + ("..." if self.nargs != 1 else "")


class _ReadableArgument(TyperArgument):
    def process_value(self, ctx: Any, value: Any) -> Any:
        refuse_empty_path(self, value)
        return super().process_value(ctx, value)

    def _label(self) -> str:
        return self.metavar or (self.name or "ARG").upper()

    def _rich_display_name(self) -> str:
        return self._label() + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self._label() if self.required else f"[{self._label()}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return _choices(self)

    def get_error_hint(self, ctx: Any = None) -> str:
        return f"'{self._label()}'"

    def make_metavar(self, ctx: Any = None, *, usage: bool = False) -> str:
        # typer 0.27 (its vendored click) builds usage and help from this: DATASET, not {dataset}
        return self._usage_display_name() if usage else self._rich_display_name()


def _readable(command: Any) -> None:
    """Give every parameter of ``command`` (and of its subcommands) click-style metavars and the
    rule on paths (:func:`refuse_empty_path`). Typer builds its parameters itself; the subclasses
    above change only how they are displayed and that rule."""
    for p in getattr(command, "params", ()):
        if type(p) is TyperOption:
            p.__class__ = _ReadableOption
        elif type(p) is TyperArgument:
            p.__class__ = _ReadableArgument
    for sub in getattr(command, "commands", {}).values():
        _readable(sub)


class EntityGroup(TyperGroup):
    """Typer's group with readable metavars on every command below it."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _readable(self)
        return super().main(*args, **kwargs)


class _EntityTyper(typer.Typer):
    """Typer, building only the command being run. Typer turns every registered command into a
    click command (reading each signature, evaluating its string annotations) before it looks at
    the command line; when the first argument names a command, only that one is built (the root's
    options live in its callback, kept). Measured (``entitykit eval`` on 300 images, 2 cores):
    building all 20 commands took ~0.05 s of the ~0.5 s run, one command ~0.005 s. Anything else
    (``--help``, a group, an unknown name, completion) builds them all, so help and errors are
    unchanged; tests calling ``typer.main.get_command(app)`` always get the whole group."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = kwargs.get("args", args[0] if args else None)
        first = (sys.argv[1:] if argv is None else list(argv))[:1]
        only = [c for c in self.registered_commands if first and _command_name(c) == first[0]]
        if len(only) != 1:
            return super().__call__(*args, **kwargs)
        saved = self.registered_commands, self.registered_groups
        self.registered_commands, self.registered_groups = only, []
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.registered_commands, self.registered_groups = saved


def _command_name(info: Any) -> str | None:
    """The name a registered command answers to (Typer's own rule when none was given)."""
    if info.name:
        return info.name
    callback = getattr(info, "callback", None)
    return callback.__name__.lower().replace("_", "-") if callback else None


app = _EntityTyper(
    name="entitykit",
    help="Entity segmentation toolkit: convert, merge, train, predict and score categoryless entities.",
    no_args_is_help=True,
    cls=EntityGroup,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: …]" must not be read as markup
)


def sub_app(help: str) -> typer.Typer:
    """A command group (``entitykit convert …``) with the same conventions as the root."""
    return typer.Typer(help=help, no_args_is_help=True, cls=EntityGroup, rich_markup_mode=None)


# ---------------------------------------------------------------------------------------------
# the error boundary and small helpers


def user_errors(fn: F) -> F:
    """The error boundary of every command: a failure the user can cause (``describe_failure``)
    becomes one red line on stderr and exit 1; Ctrl-C exits 130 with one line. Anything else is a
    bug in entitykit: one line asking for a report, exit 2, and the traceback only when
    ``ENTITYKIT_DEBUG=1``. Nothing is half-written either way: every writer renames into place."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/] (nothing was left half-written)", highlight=False)
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001  (the boundary: every exception becomes one line)
            text = describe_failure(e)
            if text is None:
                if os.environ.get("ENTITYKIT_DEBUG"):
                    raise
                err_console.print(
                    f"[bold red]internal error:[/] {escape(type(e).__name__)}: {escape(_one_line(str(e)))} — a bug in "
                    "entitykit, please report it (ENTITYKIT_DEBUG=1 shows the traceback)", highlight=False,
                    soft_wrap=True)
                raise typer.Exit(2) from None
            if isinstance(e, ProblemsError) and len(e.problems) > 1:  # one problem: only its error line
                for p in e.problems[:50]:
                    err_console.print(f"[red]✗[/] {escape(_one_line(str(p)))}", highlight=False, soft_wrap=True)
                if len(e.problems) > 50:
                    err_console.print(f"[red]… {len(e.problems) - 50} more[/]", highlight=False)
            err_console.print(f"[bold red]error:[/] {escape(_one_line(text))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def shard_images_count(n: int) -> int:
    """``--shard-images``' value (convert, merge): 0 = one JSON file, N ≥ 1 = a sharded folder of N images
    per shard; a negative number refused."""
    if n < 0:
        from ..errors import EntityKitError  # noqa: PLC0415

        raise EntityKitError(f"--shard-images must be ≥ 1 (0 = one JSON file), got {n}")
    return n


def worker_count(n: int, option: str = "--workers") -> int:
    """A worker option's value: 0 = all cores, a positive number as given, a negative one refused."""
    if n < 0:
        from ..errors import EntityKitError  # noqa: PLC0415

        raise EntityKitError(f"{option} must be ≥ 0 (0 = all cores), got {n}")
    return n if n > 0 else (os.cpu_count() or 1)


def is_stdout(path: Optional[Path]) -> bool:
    """``-`` as an output path: standard output."""
    return path is not None and str(path) == "-"


def print_json(data: Any, *, indent: int | None = 2) -> None:
    """A JSON result on stdout, as plain text (no colours, no wrapping: always parseable)."""
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def package_version() -> str:
    from .. import __version__  # noqa: PLC0415

    return __version__


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"entitykit {package_version()}\n")
        raise typer.Exit()


@app.callback()
def _global_options(
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", metavar="N",
        help=f"Refuse images and masks of more than N pixels before decoding them (0 = no limit) "
             f"[default: ${ENV_MAX_PIXELS} or {DEFAULT_MAX_PIXELS:,}]."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                 help="Print the version and exit."),
) -> None:
    """Entity segmentation toolkit: convert, merge, train, predict and score categoryless entities."""
    if max_pixels is not None:
        if max_pixels < 0:
            err_console.print("[bold red]error:[/] --max-pixels must be ≥ 0 (0 = no limit)", highlight=False)
            raise typer.Exit(1)
        set_max_pixels(max_pixels)
