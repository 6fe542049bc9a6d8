"""Options checked once, named by their flag: numbers, and frozen specs that declare their own flags.

Each spec field declares its flag, help and check with :func:`option`; the command line is generated
from the spec, so a range is written once and an error names the flag the user typed. Every number is
checked for finiteness: ``nan`` passes any ``<`` comparison unnoticed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Sequence

from .errors import RelinkError


def show(value: Any) -> str:
    """A value as a user typed it (``2.0``, not ``np.float64(2.0)``)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value) if isinstance(value, (int, str)) else repr(value)


@dataclass(frozen=True)
class Range:
    """What a number must be: ``kind`` (int or float), finite, within optional bounds."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {show(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {show(self.high)}")
        return what + (" " + " and ".join(parts) if parts else "")

    def check(self, value: Any) -> Any:
        """``value`` as ``kind`` when it qualifies; ``ValueError`` (with :meth:`describe`) otherwise."""
        if isinstance(value, bool):
            raise ValueError(self.describe())
        if isinstance(value, str):
            try:
                value = int(value) if self.kind is int else float(value)
            except ValueError:
                raise ValueError(self.describe()) from None
        if self.kind is int:
            if not isinstance(value, Integral):
                if isinstance(value, Real) and math.isfinite(value) and float(value).is_integer():
                    value = int(value)
                else:
                    raise ValueError(self.describe())
            value = int(value)
        else:
            if not isinstance(value, Real) or not math.isfinite(float(value)):
                raise ValueError(self.describe())
            value = float(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ValueError(self.describe())
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ValueError(self.describe())
        return value


def number(flag: str, value: Any, kind: type = float, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> Any:
    """``value`` checked against the range; a :class:`RelinkError` naming ``flag`` otherwise."""
    rng = Range(kind, low, high, low_open, high_open)
    try:
        return rng.check(value)
    except ValueError:
        raise RelinkError(f"{flag} must be {rng.describe()}, got {show(value)}") from None


def argtype(kind: type = float, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], Any]:
    """An argparse ``type=``: argparse then reports ``argument --flag: must be ..., got 'nan'``."""
    rng = Range(kind, low, high, low_open, high_open)

    def parse(text: str) -> Any:
        try:
            return rng.check(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rng.describe()}, got {text!r}") from None

    parse.__name__ = rng.describe()  # argparse names the type in some messages
    return parse


# ----------------------------------------------------------------- specs


def option(default: Any = dataclasses.MISSING, *, flag: str, help: str = "", check: Range | None = None,
           parse: Callable[[Any], Any] | None = None, cli: bool = True, **argparse_kwargs: Any) -> Any:
    """A spec field that knows its flag, help text and check.

    ``parse`` turns a string or Python value into the field's type; ``check`` is the range each value
    (or tuple item) must meet; ``cli=False`` keeps the field off the command line.
    """
    meta = {"flag": flag, "help": help, "check": check, "parse": parse, "cli": cli, "argparse": argparse_kwargs}
    if isinstance(default, (list, dict, set)):
        raise TypeError("spec defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata={"relink": meta})


def _meta(f: dataclasses.Field) -> dict[str, Any] | None:
    return f.metadata.get("relink")


def check_spec(spec: Any) -> None:
    """Parse and check every declared field of a frozen spec in place (call from ``__post_init__``)."""
    for f in dataclasses.fields(spec):
        meta = _meta(f)
        if meta is None:
            continue
        value = getattr(spec, f.name)
        if value is None:
            continue
        if meta["parse"] is not None:
            try:
                value = meta["parse"](value)
            except (ValueError, TypeError) as exc:
                raise RelinkError(f"{meta['flag']}: {exc}") from None
        rng = meta["check"]
        if rng is not None:
            items = value if isinstance(value, tuple) else (value,)
            checked = []
            for v in items:
                try:
                    checked.append(v if isinstance(v, str) else rng.check(v))
                except ValueError:
                    raise RelinkError(f"{meta['flag']} must be {rng.describe()}, got {show(v)}") from None
            value = tuple(checked) if isinstance(value, tuple) else checked[0]
        object.__setattr__(spec, f.name, value)


class Spec:
    """Base of the frozen option specs (``@dataclass(frozen=True)`` subclasses whose fields are :func:`option`).

    ``TEXT_FIELDS`` are recorded as text (pool sizes mix integers with ``"full"``).
    """

    TEXT_FIELDS: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        """The settings as plain JSON values (tuples as lists)."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name in self.TEXT_FIELDS:
                v = list(map(str, v))
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def but(self, **changes: Any):
        """A copy with ``changes`` (checked like any spec)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def add_spec_arguments(parser: argparse.ArgumentParser, spec_cls: type, skip: Sequence[str] = ()) -> None:
    """Add one command-line option per declared field of ``spec_cls`` (its default shown in --help)."""
    for f in dataclasses.fields(spec_cls):
        meta = _meta(f)
        if meta is None or not meta["cli"] or f.name in skip:
            continue
        kwargs = dict(meta["argparse"])
        default = f.default
        if isinstance(default, bool) and "action" not in kwargs:
            kwargs["action"] = "store_false" if default else "store_true"
        elif "type" not in kwargs and "choices" not in kwargs and meta["check"] is not None and meta["parse"] is None:
            rng = meta["check"]
            kwargs["type"] = argtype(rng.kind, rng.low, rng.high, rng.low_open, rng.high_open)
        if not isinstance(default, bool) and "metavar" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = "LIST" if isinstance(default, tuple) else meta["flag"].lstrip("-").upper().replace("-", "_")
        help_text = meta["help"]
        if default is not None and not isinstance(default, bool) and "%(default)" not in help_text:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else show(default)
            help_text = f"{help_text} (default: {shown})" if help_text else f"default: {shown}"
        parser.add_argument(meta["flag"], dest=f.name, default=argparse.SUPPRESS, help=help_text, **kwargs)


def spec_args(spec_cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``spec_cls`` given on the command line (the others keep their defaults)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(spec_cls) if hasattr(args, f.name)}


def spec_from_args(spec_cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The spec from parsed arguments (fields not given keep their defaults) and ``extra``."""
    return spec_cls(**{**spec_args(spec_cls, args), **extra})


def one_of(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    """A spec ``parse`` for a field that takes one of ``allowed``."""
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"choose one of {', '.join(allowed)}, got {show(value)!r}")
        return value

    return parse


def some_of(allowed: tuple[str, ...], what: str = "value", both: bool = False) -> Callable[[Any], tuple[str, ...]]:
    """A spec ``parse`` for a field that takes one or more of ``allowed`` (a list or ``"a,b"``), each a
    ``what``; with ``both``, the word ``both`` means all of them. Order kept, repeats dropped."""
    def parse(value: Any) -> tuple[str, ...]:
        items = split_list(value)
        if both and items == ("both",):
            return tuple(allowed)
        if not items:
            raise ValueError(f"give at least one of {', '.join(allowed)}")
        for v in items:
            if v not in allowed:
                raise ValueError(f"unknown {what} {show(v)!r}; choose from {', '.join(allowed)}")
        return tuple(dict.fromkeys(items))

    return parse


def split_list(text: Any) -> tuple:
    """``"10, 100,full"`` -> ``("10", "100", "full")``; a tuple or list passes through as a tuple."""
    if isinstance(text, str):
        return tuple(t.strip() for t in text.split(",") if t.strip())
    if isinstance(text, (list, tuple)):
        return tuple(text)
    return (text,)


def items_of(value: Any) -> list:
    """The items of repeated flags and/or comma lists (``["1000,10000", "100"]``), or of a Python value."""
    items: list = []
    for v in value if isinstance(value, (list, tuple)) else (value,):
        items.extend(split_list(v) if isinstance(v, str) else (v,))
    return items


@dataclass(frozen=True)
class Listed:
    """A spec ``parse`` for a list field: the items (:func:`items_of`), each through ``convert`` (which
    raises ValueError), first occurrence kept; empty is an error naming ``what`` unless it is None."""

    convert: Callable[[Any], Any]
    what: str | None = None
    sort: bool = False

    def __call__(self, value: Any) -> tuple:
        out = tuple(dict.fromkeys(self.convert(v) for v in items_of(value)))
        if not out and self.what is not None:
            raise ValueError(f"give at least one {self.what}")
        return tuple(sorted(out)) if self.sort else out


def integer(what: str) -> Callable[[Any], int]:
    """A :class:`Listed` item: an integer (``"1e4"`` is 10000)."""
    def convert(v: Any) -> int:
        try:
            f = float(v)
            if not f.is_integer():
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{what} {str(v)!r} is not an integer") from None
        return int(f)

    return convert


def real(what: str) -> Callable[[Any], float]:
    """A :class:`Listed` item: a number (its range is the field's check)."""
    def convert(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{what} {str(v)!r} is not a number") from None

    return convert


def int_list(value: Any, what: str = "value") -> tuple[int, ...]:
    """Integers from repeated flags and/or comma lists, first occurrence kept (:func:`integer`)."""
    return Listed(integer(what), what)(value)
