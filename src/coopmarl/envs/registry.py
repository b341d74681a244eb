"""One registry: environment name -> constructor, with typed, validated parameters.

    @register_env("climbing", "Claus & Boutilier climbing game (iterated)")
    def climbing(horizon: int = 1, discount: float = 0.95) -> TabularGame: ...

Prefix families (`tabular:PATH`, `lbf:…`, `smax:…`, `pettingzoo:…`) register a prefix handler that
receives the text after the colon. A module under `coopmarl.envs` registers by being there, a third-party
one through the `coopmarl.envs` entry point group (`coopmarl.plugins`).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

from coopmarl.errors import ParamError, UnknownNameError, did_you_mean  # noqa: F401  (re-exported)
from coopmarl.plugins import discover
from coopmarl.ranges import unrepresentable


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any


@dataclass(frozen=True)
class EnvEntry:
    name: str
    description: str
    constructor: Callable[..., Any]
    params: tuple[Param, ...]
    tags: tuple[str, ...] = ()
    prefix: bool = False  # a family "name:ARG" whose constructor takes the ARG string first
    # how its reward [N] becomes the team's (EnvSpec.reward_scalarisation), as `coopmarl list envs` shows it:
    # one of core.REWARD_SCALARISATIONS, optionally followed by a note on parameters that change it
    reward_scalarisation: str = "shared"


_ENVS: dict[str, EnvEntry] = {}


def params_of(fn) -> tuple[Param, ...]:
    out = []
    hints = inspect.get_annotations(fn, eval_str=True)
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(Param(p.name, hints.get(p.name, type(p.default)), p.default))
    return tuple(out)


def register_env(name: str, description: str, tags: tuple[str, ...] = (), prefix: bool = False,
                 reward_scalarisation: str = "shared"):
    """Register `fn` as environment `name`. `reward_scalarisation` declares, for listings, how the env's
    reward [N] becomes the team's: "shared" (default), "sum" or "mean", optionally followed by a note
    where a parameter changes it, e.g. "shared (common_reward=false: sum)"; the built env's
    `spec.reward_scalarisation` is the one the library uses."""
    from coopmarl.envs.core import REWARD_SCALARISATIONS

    if reward_scalarisation.split(" ", 1)[0] not in REWARD_SCALARISATIONS:
        raise ValueError(f"environment {name!r}: reward_scalarisation must start with one of "
                         f"{', '.join(REWARD_SCALARISATIONS)}, got {reward_scalarisation!r}")

    def deco(fn):
        if name in _ENVS:
            raise ValueError(f"environment {name!r} registered twice")
        params = params_of(fn)
        if prefix:
            params = params[1:]  # the first argument is the text after "name:"
        _ENVS[name] = EnvEntry(name, description, fn, params, tuple(tags), prefix, reward_scalarisation)
        return fn

    return deco


def coerce(value: Any, typ: Any, what: str) -> Any:
    """Convert `value` (possibly a CLI string) to `typ`, or raise ParamError naming `what`."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Literal:  # a fixed set of choices, e.g. Literal["gru", "mlp"]
        for choice in args:
            if value == choice or (isinstance(value, str) and value == str(choice)):
                return choice
        raise ParamError(f"{what} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin is not None and type(None) in args:  # Optional[X] / X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        for inner in (a for a in args if a is not type(None)):
            try:
                return coerce(value, inner, what)
            except ParamError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ParamError(f"{what} must be of type {names}, got {value!r}")
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str):
                f = float(value)
                if not f.is_integer():
                    raise ValueError
                return int(f)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if origin is tuple or typ is tuple:
            if isinstance(value, str):
                parts = [v for v in value.strip("()[] ").split(",") if v.strip()]
                value = parts
            elem = args[0] if args else float
            return tuple(coerce(v, elem, what) for v in value)
    except (TypeError, ValueError):
        tname = getattr(typ, "__name__", str(typ))
        raise ParamError(f"{what} must be of type {tname}, got {value!r}") from None
    return value


def bind_params(entry_name: str, params: tuple[Param, ...], given: dict[str, Any], kind: str = "environment") -> dict:
    """`given` coerced to the parameters' types; a number compiled code cannot hold (nan, inf, beyond float32 or
    int32, also inside a tuple) is refused here, for every parameter of every env (`coopmarl.ranges`)."""
    valid = {p.name: p for p in params}
    out = {}
    for k, v in given.items():
        if k not in valid:
            choices = ", ".join(valid) or "(none)"
            raise ParamError(
                f"unknown parameter {k!r} for {kind} {entry_name!r}.{did_you_mean(k, valid)} Valid parameters: {choices}"
            )
        what = f"{kind} {entry_name!r} parameter {k!r}"
        out[k] = coerce(v, valid[k].type, what)
        for number in out[k] if isinstance(out[k], tuple) else (out[k],):
            error = unrepresentable(k, number, what)
            if error:
                raise ParamError(error)
    return out


def _lookup(name: str) -> tuple[EnvEntry, str | None]:
    discover("envs")
    if name in _ENVS and not _ENVS[name].prefix:
        return _ENVS[name], None
    if ":" in name:
        head, arg = name.split(":", 1)
        if head in _ENVS and _ENVS[head].prefix:
            return _ENVS[head], arg
    if name in _ENVS and _ENVS[name].prefix:
        raise ParamError(f"environment family {name!r} needs an argument: {name}:ARG")
    choices = ", ".join(sorted(n + (":…" if e.prefix else "") for n, e in _ENVS.items()))
    raise UnknownNameError(f"unknown environment {name!r}.{did_you_mean(name, _ENVS)} Valid environments: {choices}")


def env_entry(name: str) -> EnvEntry:
    return _lookup(name)[0]


def make(name: str, **params):
    """Build a registered environment, e.g. `make("penalty", k=-50)` or `make("tabular:game.npz")`."""
    entry, arg = _lookup(name)
    kwargs = bind_params(name, entry.params, params)
    if entry.prefix:
        if not arg:
            raise ParamError(f"environment family {entry.name!r} needs an argument: {entry.name}:ARG")
        return entry.constructor(arg, **kwargs)
    return entry.constructor(**kwargs)


def list_envs() -> list[EnvEntry]:
    discover("envs")
    return [_ENVS[k] for k in sorted(_ENVS)]
