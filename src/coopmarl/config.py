"""Typed configs and `key=value` overrides (Hydra-style: `lr=3e-4 env.k=-50 total_steps=5000`).

Everything is resolved and validated here, before any environment is stepped or anything compiled:
unknown names, unknown keys (also a key of another algorithm that this one would ignore), renamed keys,
wrong types, out-of-range or non-finite values and algorithm/env mismatches raise `ConfigError` with the
valid choices named.

Each algorithm's config class has exactly the keys it reads (`coopmarl.algos.fields`); a choice that defines
the algorithm (`loss`, `mixer`, …) is fixed by its class: giving it its own value is a no-op, another value
an error that names the algorithm with that value. `describe_config` lists a class's keys with their types,
defaults and the source of each default (for `coopmarl list algos NAME`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from typing import Any

from coopmarl.algos.base import Algorithm, get_algo, list_algos
from coopmarl.algos.fields import fixed_choices
from coopmarl.envs.registry import bind_params, coerce, env_entry, make
from coopmarl.errors import ConfigError, ParamError, UnknownNameError, did_you_mean
from coopmarl.runner import RunConfig


@dataclass(frozen=True)
class Resolved:
    algo: Algorithm
    env_name: str
    env_params: dict
    env: Any
    config: Any  # the algorithm's config dataclass
    run: RunConfig

    def as_dict(self) -> dict:
        return {
            "algo": self.algo.name,
            "env": {"name": self.env_name, **{k: _plain(v) for k, v in dict(self.env.spec.params).items()}},
            "algo_config": {k: _plain(v) for k, v in dataclasses.asdict(self.config).items()},
            "run": dataclasses.asdict(self.run),
        }


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. lr=0.1 or env.k=-50)")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("+")
        if key in out:
            raise ConfigError(f"override {key!r} given twice")
        out[key] = value.strip()
    return out


def config_fields(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


# Settings renamed when every algorithm got its own config class (one name per setting across families). The
# old name is refused with one clear error; `upgrade_algo_config` translates an older run's config.yaml.
RENAMED_KEYS = {
    "grad_clip": "max_grad_norm",
    "hidden": "hidden_sizes",
    "critic_hidden": "critic_hidden_sizes",
    "lr_decay": "lr_decay_steps",
}
# keys added with a default that changed what the code did before: an older run's config.yaml, which lacks
# them, keeps the behaviour it ran with (and its checkpoint's shapes) — `upgrade_algo_config`
ADDED_KEYS_OLD_BEHAVIOUR = {
    "central_layers": 2,  # WQMIX / ReMIX central Q* depth (now 3, WQMIX's)
    "cw_greedy_value": "online",  # CW-QMIX's Q̂*(s, û) (now the target network's, WQMIX's)
    "remix_policy": "epsilon_greedy",  # ReMIX's π in the mixer-gradient term (now Thm 1's Boltzmann)
    "weight_mapping": "minmax",  # ReMIX's scores -> weights (now "rank")
}


def _same_value(given, fixed) -> bool:
    try:
        return coerce(given, type(fixed), "") == fixed
    except ParamError:
        return False


def _drop_fixed(cls, values: dict[str, Any], what: str) -> dict[str, Any]:
    """`values` without the choices `cls` fixes (ClassVars) given their own value; another value is an error
    naming the algorithms that have it."""
    fixed = fixed_choices(cls)
    out = {}
    for k, v in values.items():
        if k not in fixed:
            out[k] = v
            continue
        if _same_value(v, fixed[k]):
            continue
        by_value: dict[Any, list[str]] = {}
        for a in list_algos():
            if k in fixed_choices(a.config_cls):
                by_value.setdefault(fixed_choices(a.config_cls)[k], []).append(a.name)
        match = next((names for value, names in by_value.items() if _same_value(v, value)), None)
        if match:
            hint = f"for {k}={v} use {' or '.join(match)}"
        elif _owners(k):
            hint = _owners(k).strip(" ()")
        else:
            hint = f"algorithms by {k}: " + "; ".join(f"{value} -> {', '.join(names)}" for value, names in by_value.items())
        raise ConfigError(f"{k!r} is fixed by {what} ({k}={fixed[k]!r}), not a key; {hint}")
    return out


def _refuse_renamed(keys, fields):
    for k in keys:
        if k in RENAMED_KEYS and k not in fields:
            new = RENAMED_KEYS[k]
            example = " (a tuple of layer widths, e.g. hidden_sizes=64 or hidden_sizes=100,100)" \
                if new.endswith("hidden_sizes") else ""
            raise ConfigError(f"{k!r} is now called {new!r}{example}")


def _owners(key: str) -> str:
    """' (a key of ow-qmix, cw-qmix)' when other algorithms have `key`, else ''."""
    names = [a.name for a in list_algos() if key in config_fields(a.config_cls)]
    return f" ({key!r} is a key of {', '.join(names)})" if names else ""


def build_config(cls, values: dict[str, Any], what: str):
    """Instantiate dataclass `cls` with `values` coerced to the declared field types."""
    fields = config_fields(cls)
    _refuse_renamed(values, fields)
    values = _drop_fixed(cls, values, what)
    kwargs = {}
    for k, v in values.items():
        if k not in fields:
            raise ConfigError(f"unknown key {k!r} for {what}.{did_you_mean(k, fields)} Valid keys: {', '.join(fields)}")
        try:
            kwargs[k] = coerce(v, fields[k], f"{what} key {k!r}")
        except ParamError as e:
            raise ConfigError(str(e)) from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {what}: {e}") from None


def check_compatible(algo: Algorithm, env_name: str, tags: tuple[str, ...], spec=None):
    if "tabular" in algo.requires and "tabular" not in tags:
        raise ConfigError(
            f"algorithm {algo.name!r} needs a tabular game (it uses the game's model), but {env_name!r} is not one. "
            "Tabular games: " + ", ".join(e.name for e in _tabular_envs())
        )
    if spec is not None and spec.action_kind not in algo.requires:
        raise ConfigError(
            f"algorithm {algo.name!r} handles {'/'.join(r for r in algo.requires if r != 'tabular')} actions, "
            f"but {env_name!r} has {spec.action_kind} actions"
        )


def _tabular_envs():
    from coopmarl.envs.registry import list_envs

    return [e for e in list_envs() if "tabular" in e.tags]


def _variants(cls) -> dict[str, dict]:
    return cls.variants() if hasattr(cls, "variants") else {}  # (a third-party config class may not have it)


def _with_variant(algo: Algorithm, values: dict) -> dict:
    """`values` with `variant=NAME` replaced by the keys that variant sets (`AlgoConfig.variants`); the keys
    given beside it win."""
    if "variant" not in values:
        return values
    values = dict(values)
    name = str(values.pop("variant")).strip()
    options = _variants(algo.config_cls)
    if not options:
        having = [a.name for a in list_algos() if _variants(a.config_cls)]
        raise ConfigError(f"algorithm {algo.name!r} has no variants (variant=NAME is a setting of "
                          f"{', '.join(having) or 'no algorithm'})")
    if name not in options:
        raise ConfigError(f"unknown variant {name!r} for algorithm {algo.name!r}.{did_you_mean(name, options)} "
                          f"Variants: {', '.join(options)}")
    return {**options[name], **values}


def resolve(algo_name: str, env_name: str, overrides: list[str] | dict | None = None,
            n_seeds: int | None = None, seed: int | None = None) -> Resolved:
    """Resolve and validate everything a run needs. Builds the env (cheap) but compiles nothing."""
    try:
        algo = get_algo(algo_name)
        entry = env_entry(env_name)
    except UnknownNameError as e:
        raise ConfigError(str(e)) from None
    values = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    env_values = {k[4:]: v for k, v in values.items() if k.startswith("env.")}
    rest = {k.removeprefix("algo."): v for k, v in values.items() if not k.startswith("env.")}
    run_fields = config_fields(RunConfig)
    algo_fields = config_fields(algo.config_cls)
    _refuse_renamed(rest, algo_fields)
    rest = _drop_fixed(algo.config_cls, _with_variant(algo, rest), f"algorithm {algo.name!r}")
    unknown = [k for k in rest if k not in run_fields and k not in algo_fields]
    if unknown:
        valid = list(algo_fields) + list(run_fields)
        raise ConfigError(
            f"unknown key {unknown[0]!r} for algorithm {algo.name!r}{_owners(unknown[0])}."
            f"{did_you_mean(unknown[0], valid)} "
            f"Algorithm keys: {', '.join(algo_fields)}. Run keys: {', '.join(run_fields)}. "
            f"Environment keys go under env. (env.<param>): {', '.join(p.name for p in entry.params) or '(none)'}"
        )
    run_values = {k: v for k, v in rest.items() if k in run_fields}
    if n_seeds is not None:
        run_values["n_seeds"] = n_seeds
    if seed is not None:
        run_values["seed"] = seed
    if "total_steps" not in run_values and algo.default_total_steps:
        run_values["total_steps"] = algo.default_total_steps
    run = build_config(RunConfig, run_values, "run settings")
    config = build_config(algo.config_cls, {k: v for k, v in rest.items() if k in algo_fields}, f"algorithm {algo.name!r}")
    check_compatible(algo, env_name, entry.tags)
    try:
        env_params = bind_params(env_name, entry.params, env_values)
        env = make(env_name, **env_params)
    except (ParamError, ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None
    check_compatible(algo, env_name, entry.tags, env.spec)
    try:
        if hasattr(config, "check_env"):  # (AlgoConfig's; a third-party config class may not have it)
            config.check_env(env.spec)
    except ValueError as e:
        raise ConfigError(f"algorithm {algo.name!r} on {env_name!r}: {e}") from None
    return Resolved(algo, env_name, env_params, env, config, run)


# ---- older runs' config.yaml ----------------------------------------------------------------------------


def upgrade_algo_config(algo_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """An older run's saved `algo_config` in today's keys: renamed keys get their new name (an int width
    becomes as many widths as the new default has: `hidden: 64` -> `hidden_sizes: [64]` for value-based
    agents, `[64, 64]` for the continuous learners' two layers); a choice its class now fixes is dropped
    when it has that value; keys that are no longer the algorithm's are dropped — a family used to
    share one config class, so its runs stored keys their algorithm never read; and a negative
    `max_grad_norm`, which used to mean no clipping, becomes 0, which means that now; a key added later with
    a behaviour-changing default, when missing, gets the value that keeps the old behaviour
    (`ADDED_KEYS_OLD_BEHAVIOUR`)."""
    try:
        cls = get_algo(algo_name).config_cls
    except UnknownNameError:
        return dict(values)
    fields = config_fields(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    fixed = fixed_choices(cls)
    out = {}
    for k, v in values.items():
        new = RENAMED_KEYS.get(k)
        if k not in fields and new in fields:
            if isinstance(v, int) and isinstance(defaults[new], tuple):
                v = [v] * len(defaults[new])
            out[new] = v
        elif k in fields or (k in fixed and not _same_value(v, fixed[k])):
            out[k] = v  # (a fixed choice with another value: `resolve` says which algorithm has it)
    if isinstance(out.get("max_grad_norm"), (int, float)) and out["max_grad_norm"] < 0:
        out["max_grad_norm"] = 0.0
    for k, v in ADDED_KEYS_OLD_BEHAVIOUR.items():
        if k in fields and k not in values:
            out[k] = v
    return out


# ---- describing a config (`coopmarl list algos NAME`) ---------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """One key of an algorithm's config."""

    name: str
    type: str  # e.g. "float", "tuple[int, ...]", "'relu' | 'tanh'"
    default: Any
    source: str  # where the default comes from: the field's trailing comment in the class that sets it
    defined_in: str  # that class's name


def type_name(typ) -> str:
    """A readable type: 'float', 'tuple[int, ...]', "'gru' | 'mlp'", "int | 'game' | None"."""
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        return " | ".join(repr(c) for c in typing.get_args(typ))
    if origin is typing.Union or type(typ).__name__ == "UnionType":
        return " | ".join(type_name(a) for a in typing.get_args(typ))
    if typ is type(None):
        return "None"
    if origin is not None:
        return str(typ).replace("typing.", "")
    return getattr(typ, "__name__", str(typ))


@functools.cache
def _class_comments(cls) -> dict[str, str]:
    """{name: comment} for the annotated names of `cls`'s own body: the name's trailing comment, else the
    block of comment lines right above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments, standalone = {}, set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            comments[row] = tok.string.lstrip("#").strip()
            if not tok.line[:tok.start[1]].strip():
                standalone.add(row)
    body = ast.parse(source).body[0]
    out = {}
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        trailing = [comments[r] for r in range(node.lineno, node.end_lineno + 1) if r in comments and r not in standalone]
        above, row = [], node.lineno - 1
        while row in standalone:
            above.insert(0, comments[row])
            row -= 1
        out[node.target.id] = " ".join(trailing) or " ".join(above)
    return out


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    match = re.match(r"(.+?[.:])(\s|$)", text)
    return match.group(1) if match else text


def describe_config(cls) -> list[KeyInfo]:
    """Every key of config class `cls`: its type, default and the source of the default — the trailing comment
    of the field in the class (of `cls`'s MRO) that sets that default, else that class's docstring's first
    sentence."""
    out = []
    for f in dataclasses.fields(cls):
        owner = next(c for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {}))
        source = _class_comments(owner).get(f.name) or _first_sentence(owner.__doc__)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(KeyInfo(f.name, type_name(config_fields(cls)[f.name]), default, source, owner.__name__))
    return out
