"""Typed configs and `key=value` overrides (Hydra-style: `lr=3e-4 env.k=-50 total_steps=5000`).

Everything is resolved and validated here, before any environment is stepped or anything compiled:
unknown names, unknown keys, wrong types and algorithm/env mismatches raise `ConfigError` with the
valid choices named.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from coopmarl.algos.base import Algorithm, get_algo
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


def build_config(cls, values: dict[str, Any], what: str):
    """Instantiate dataclass `cls` with `values` coerced to the declared field types."""
    fields = config_fields(cls)
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
    unknown = [k for k in rest if k not in run_fields and k not in algo_fields]
    if unknown:
        valid = list(algo_fields) + list(run_fields)
        raise ConfigError(
            f"unknown key {unknown[0]!r} for algorithm {algo.name!r}.{did_you_mean(unknown[0], valid)} "
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
    run = build_config(RunConfig, run_values, "the run")
    if run.n_seeds < 1 or run.total_steps < 1 or run.log_points < 1:
        raise ConfigError("n_seeds, total_steps and log_points must be >= 1")
    config = build_config(algo.config_cls, {k: v for k, v in rest.items() if k in algo_fields}, f"algorithm {algo.name!r}")
    check_compatible(algo, env_name, entry.tags)
    try:
        env_params = bind_params(env_name, entry.params, env_values)
        env = make(env_name, **env_params)
    except (ParamError, ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None
    check_compatible(algo, env_name, entry.tags, env.spec)
    return Resolved(algo, env_name, env_params, env, config, run)
