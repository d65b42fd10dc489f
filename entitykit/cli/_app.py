"""The Typer application and the one place user errors become a message and a non-zero exit."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import ProblemsError, describe_failure
from ..limits import DEFAULT_MAX_PIXELS, ENV_MAX_PIXELS, set_max_pixels

app = typer.Typer(
    name="entitykit",
    help="Entity segmentation toolkit: convert, merge, train, predict and score categoryless entities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: …]" must not be read as markup
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


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
            if isinstance(e, ProblemsError):
                for p in e.problems[:50]:
                    err_console.print(f"[red]✗[/] {escape(_one_line(str(p)))}", highlight=False, soft_wrap=True)
                if len(e.problems) > 50:
                    err_console.print(f"[red]… {len(e.problems) - 50} more[/]", highlight=False)
            err_console.print(f"[bold red]error:[/] {escape(_one_line(text))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def worker_count(n: int, option: str = "--workers") -> int:
    """A worker option's value: 0 = all cores, a positive number as given, a negative one refused."""
    if n < 0:
        from ..errors import EntityKitError  # noqa: PLC0415

        raise EntityKitError(f"{option} must be ≥ 0 (0 = all cores), got {n}")
    return n if n > 0 else (os.cpu_count() or 1)


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.callback()
def _global_options(
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", metavar="N",
        help=f"Refuse images and masks of more than N pixels before decoding them (0 = no limit) "
             f"[default: ${ENV_MAX_PIXELS} or {DEFAULT_MAX_PIXELS:,}]."),
) -> None:
    """Entity segmentation toolkit: convert, merge, train, predict and score categoryless entities."""
    if max_pixels is not None:
        if max_pixels < 0:
            err_console.print("[bold red]error:[/] --max-pixels must be ≥ 0 (0 = no limit)", highlight=False)
            raise typer.Exit(1)
        set_max_pixels(max_pixels)
