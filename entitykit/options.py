"""Typed options: values read from TOML, JSON or the command line, checked against a dataclass's fields.

One converter for every configuration dataclass (``TrainConfig``, ``ModelConfig``): a key that is
not a field is refused with a "did you mean" suggestion (difflib), a value whose type is not the
field's annotation is refused, and both errors are one :class:`EntityKitError` line naming the
file (when the value came from one) and the key. Accepted conversions, and nothing else:

- an integer where a float is expected (``lr = 1`` is 1.0); floats must be finite (no NaN, no inf);
- booleans are never numbers (``max_iter = true`` is refused) and numbers never booleans;
- a list where a tuple is expected (JSON and TOML have no tuples), a tuple where a list is;
- ``X | None`` accepts ``None`` (JSON ``null``; TOML cannot write it, so there it means "leave out").
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Union

from .errors import EntityKitError

_NONE = type(None)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The evaluated annotation of each dataclass field, by name (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def suggest(key: str, names: typing.Iterable[str]) -> str | None:
    """The closest known name to a mistyped ``key``, or None when nothing is close."""
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_error(key: str, names: typing.Iterable[str], what: str, path: str | Path | None = None,
                      item: str | None = None, hint: str | None = None) -> EntityKitError:
    """``unknown <what> 'key'; did you mean 'x'?`` (or the list of known names when nothing is close)."""
    names = sorted(names)
    close = hint or suggest(key, names)
    tail = f"did you mean {close!r}?" if close else f"known: {', '.join(names)}"
    return EntityKitError(f"unknown {what} {key!r}; {tail}", path, item or key)


def describe_value(value: Any) -> str:
    """``1.5 (a float)`` — how a refused value is shown."""
    kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
            tuple: "a list", dict: "a table", _NONE: "nothing"}.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "…"
    return f"{text} ({kind})"


def describe_type(hint: Any) -> str:
    """Words for an annotation: ``an integer``, ``a list of numbers``, ``a string or nothing``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not _NONE]
        return " or ".join(parts) + (" or nothing" if _NONE in args else "")
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {_plural(args[0] if args else Any)}"
    if origin is dict:
        return f"a table of {_plural(args[1] if len(args) > 1 else Any)}"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, "values")


def check_value(value: Any, hint: Any, key: str, path: str | Path | None = None) -> Any:
    """``value`` converted to ``hint`` by the rules of the module docstring, or an EntityKitError
    (``path``: ``key``: ``expected …, got …``)."""

    def bad(what: str | None = None) -> EntityKitError:
        return EntityKitError(what or f"expected {describe_type(hint)}, got {describe_value(value)}", path, key)

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if _NONE in args:
                return None
            raise bad()
        options = [a for a in args if a is not _NONE]
        if len(options) == 1:  # X | None: X's own message (it names the list element at fault)
            return check_value(value, options[0], key, path)
        for option in options:
            try:
                return check_value(value, option, key, path)
            except EntityKitError:
                pass
        raise bad()
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            f = float(value)
            if not math.isfinite(f):
                raise bad(f"expected a finite number, got {value!r}")
            return f
        raise bad()
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise bad(f"expected {describe_type(hint)}, got {len(value)} value(s): {describe_value(value)}")
            items = [check_value(v, a, f"{key}[{i}]", path) for i, (v, a) in enumerate(zip(value, args))]
        else:
            elem = args[0] if args else Any
            items = [check_value(v, elem, f"{key}[{i}]", path) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        kt, vt = args if len(args) == 2 else (Any, Any)
        out = {}
        for k, v in value.items():
            out[check_value(k, kt, f"{key} key", path)] = check_value(v, vt, f"{key}.{k}", path)
        return out
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise bad()  # pragma: no cover  (an annotation this module does not know)


def check_range(value: Any, key: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, path: str | Path | None = None) -> None:
    """Refuse a number (or each number of a list) outside [low, high] (``*_open``: bound excluded)."""
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_range(v, f"{key}[{i}]", low=low, high=high, low_open=low_open, high_open=high_open, path=path)
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise EntityKitError(f"must be {range_words(low, high, low_open, high_open)}, got {value!r}", path, key)


def range_words(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low:g}"
    return f"{'<' if high_open else '≤'} {high:g}"
