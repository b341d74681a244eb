"""The root of every algorithm config, and the checks the configs' `__post_init__`s share.

An algorithm's config is a frozen dataclass assembled from small field groups — a family's base plus
mixins such as PPO's clip fields or ReMIX's weight fields — that all derive from `AlgoConfig`. Each group
checks its own fields in `__post_init__` after calling `super().__post_init__()`, so a config built from
several groups runs every group's checks exactly once. `AlgoConfig` itself refuses what no algorithm
accepts: a number compiled code cannot hold (nan, inf, beyond float32 or int32; `coopmarl.ranges`) and a
value outside a `Literal`'s choices.

A choice that *defines* an algorithm (PPO's `loss`, QMIX's `mixer`, DDPG's `critic_inputs`) is a
`typing.ClassVar` of the algorithm's class, not a key: the code reads it as `config.loss` like any key,
but no override can change it (`coopmarl list algos NAME` shows it as fixed).

Every key's default carries a trailing comment citing its source; `coopmarl list algos NAME` prints it.
A check raises `ValueError` naming the key first, then the range and the value given ("lr must be a finite
number > 0, got -1.0"); `coopmarl.config.resolve` turns it into a `ConfigError`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from coopmarl.ranges import number, range_error, unrepresentable


@functools.cache
def field_types(cls) -> dict[str, Any]:
    """{key: declared type} of a config class's fields (its keys), in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def fixed_choices(cls) -> dict[str, Any]:
    """{name: value} of the `ClassVar`s a config class fixes (e.g. {'loss': 'clip'}): not keys."""
    hints = typing.get_type_hints(cls)
    return {name: getattr(cls, name) for name, typ in hints.items()
            if typing.get_origin(typ) is typing.ClassVar and hasattr(cls, name)}


def literal_choices(typ) -> tuple:
    """The choices of a `Literal[...]` type (also inside `X | Literal[...] | None`); () if none."""
    members = typing.get_args(typ) if _is_union(typ) else (typ,)
    return tuple(c for m in members if typing.get_origin(m) is Literal for c in typing.get_args(m))


def _is_union(typ) -> bool:
    return typing.get_origin(typ) in (typing.Union, types.UnionType)


def _matches_other_member(value, typ) -> bool:
    """True if `value` fits a non-Literal member of a union type (then its Literal part does not apply)."""
    if not _is_union(typ):
        return False
    for m in typing.get_args(typ):
        if m is type(None) and value is None:
            return True
        if m is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if m is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
    return False


def check_value(name: str, value, typ) -> None:
    """The checks every key gets: numbers compiled code can hold (finite, within float32 / int32; also inside
    tuples), a Literal's value among its choices."""
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        error = unrepresentable(name, v)
        if error:
            raise ValueError(error if v is value else f"{error} (in {value!r})")
    choices = literal_choices(typ)
    if choices and value not in choices and not _matches_other_member(value, typ):
        others = [getattr(m, "__name__", str(m)).replace("NoneType", "None") for m in typing.get_args(typ)
                  if typing.get_origin(m) is not Literal] if _is_union(typ) else []
        also = f", or of type {' or '.join(others)}" if others else ""
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}{also}; got {value!r}")


@dataclass(frozen=True)
class AlgoConfig:
    """The root of every algorithm config: no keys of its own; refuses numbers compiled code cannot hold
    (nan, inf, beyond float32 / int32) and out-of-choice values."""

    def __post_init__(self):
        for name, typ in field_types(type(self)).items():
            check_value(name, getattr(self, name), typ)

    def check_env(self, spec) -> None:
        """Refuse (ValueError) settings this env cannot run with — checked against its spec before anything is
        compiled (`config.resolve`). None by default."""

    @classmethod
    def variants(cls) -> dict[str, dict]:
        """{name: the keys it sets} of the algorithm's named variants: `variant=NAME` among its settings sets
        those keys (the other settings given win), when `config.resolve` reads them. {} (none) by default."""
        return {}


# ---- range checks: "<key> must be <an integer | a finite number> <range>, got <value>" (coopmarl.ranges) ----


def _range_error(config, name: str, requirement: str, why: str = "") -> ValueError:
    integer = field_types(type(config))[name] is int
    return ValueError(range_error(name, getattr(config, name), requirement, why, integer=integer))


def at_least(config, minimum, *names: str) -> None:
    for name in names:
        if getattr(config, name) < minimum:
            raise _range_error(config, name, f">= {number(minimum)}")


def positive(config, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise _range_error(config, name, "> 0")


def in_unit_interval(config, *names: str, open_low: bool = False, open_high: bool = False) -> None:
    """Each key in [0, 1] ((0, …] / […, 1) when open at that end)."""
    for name in names:
        value = getattr(config, name)
        low_ok = value > 0.0 if open_low else value >= 0.0
        high_ok = value < 1.0 if open_high else value <= 1.0
        if not (low_ok and high_ok):
            interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
            raise _range_error(config, name, f"in {interval}")


def in_range(config, name: str, low, high, why: str = "") -> None:
    """The key in [low, high]; `why` (e.g. " (0 = batch_size)") explains the range."""
    if not low <= getattr(config, name) <= high:
        raise _range_error(config, name, f"in [{number(low)}, {number(high)}]", why)


def above(config, name: str, low, why: str = "") -> None:
    """The key > low (a strict lower bound other than 0)."""
    if not getattr(config, name) > low:
        raise _range_error(config, name, f"> {number(low)}", why)


def layer_widths(config, name: str = "hidden_sizes", exactly: int | None = None, why: str = "") -> None:
    """A tuple of positive layer widths (optionally exactly `exactly` of them)."""
    widths = getattr(config, name)
    if not widths or min(widths) < 1:
        raise ValueError(f"{name} must be one or more positive layer widths, got {widths}")
    if exactly is not None and len(widths) != exactly:
        raise ValueError(f"{name} must hold exactly {exactly} width{'s' if exactly != 1 else ''}{why}, got {widths}")


# ---- traced values (vmapped hyperparameters) -------------------------------------------------------------


def with_values(config, values: dict[str, Any]):
    """`config` with some keys holding other values — also traced arrays, which a vmapped run's compiled
    program gives each batch element (`runner.train(..., hparams=…)`) — *without* `__post_init__`'s checks,
    which cannot judge a tracer. Only for values that were checked as ordinary configs first (each vmapped
    value resolves through `coopmarl.config.resolve` before anything is compiled). No values: `config` itself."""
    if not values:
        return config
    unknown = sorted(set(values) - set(field_types(type(config))))
    if unknown:
        raise KeyError(f"{type(config).__name__} has no key(s) {', '.join(unknown)}")
    out = copy.copy(config)  # a frozen dataclass: copied without __init__ (so without __post_init__)
    for name, value in values.items():
        object.__setattr__(out, name, value)
    return out
