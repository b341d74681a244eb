"""Which keys can be vmapped: hyperparameters swept inside one compiled program, like seeds.

A key can be vmapped when it enters the computation only as a *value*: the compiled init, chunk and
evaluation then take it as an input (a traced array, one per batch element; `runner.train(..., hparams=…)`),
and K values cost one compilation. A key that decides shapes or which code runs cannot be — its value has to
be known while the program is being built:

- run settings (`total_steps`, `n_seeds`, …) and env keys (`env.*`: the env is built in Python) never;
- integer keys (sizes, counts, schedule lengths), switches (bool), choices (Literal / str), tuples (layer
  widths) and keys that may be None are refused by their type;
- a float key is vmappable when tracing the run's init, one chunk and its evaluation with that key as a
  tracer (`jax.eval_shape`: nothing is computed) succeeds. Where it fails, the algorithm uses the value in
  Python (an `if`, a shape, `float(…)`), and the error names the line: e.g. the off-policy core's
  `max_grad_norm` (`if config.max_grad_norm == 0:` picks the optimiser) or DPO's `sqrt_kl_coef_init`
  (a coefficient started at 0 switches its term off).

`check_vmappable` raises one `ConfigError` saying why a key is refused and listing the keys that can be
vmapped for that algorithm on that env (`vmappable_keys`).
"""

from __future__ import annotations

import os
import traceback
import typing
from typing import Iterable

from coopmarl.errors import ConfigError

__all__ = ["check_vmappable", "vmappable_keys", "refusal", "split_vmap", "VMAP_PREFIX"]

VMAP_PREFIX = "vmap:"  # `lr=vmap:1e-4,3e-4,1e-3` on the command line

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_NOT_ALGO_CODE = ("hparams.py", "runner.py", "evaluation.py", os.path.join("algos", "fields.py"))
_CACHE: dict = {}


def split_vmap(items: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Command-line overrides with the vmapped ones taken out: `["lr=vmap:1e-4,3e-4", "gamma=0.9"]` ->
    `(["gamma=0.9"], {"lr": ["1e-4", "3e-4"]})` — the arguments of `training.train_vmapped` (values stay strings:
    `config.resolve` coerces and checks them like any override's)."""
    rest, vmap = [], {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().startswith(VMAP_PREFIX):
            rest.append(item)
            continue
        key = key.strip().lstrip("+")
        if key in vmap:
            raise ConfigError(f"vmap {key!r} given twice")
        values = [v.strip() for v in value.strip()[len(VMAP_PREFIX):].split(",")]
        if not any(values) or not all(values):
            raise ConfigError(f"{item!r}: give the values after vmap:, separated by commas (e.g. {key}=vmap:0.1,0.2)")
        vmap[key] = values
    return rest, vmap


def _type_reason(name: str, typ) -> str | None:
    """Why a key of declared type `typ` cannot be vmapped, or None for a float (to be traced)."""
    if typ is float:
        return None
    origin = typing.get_origin(typ)
    if typ is bool:
        return f"`{name}` is a switch (bool): it selects which code is compiled"
    if typ is int:
        return (f"`{name}` is an integer: integer keys set sizes, counts and schedule lengths, which are fixed "
                "when the program is compiled")
    if origin is tuple or typ is tuple:
        return f"`{name}` is a tuple (e.g. layer widths): it sets array and network shapes"
    if origin is typing.Literal or typ is str:
        return f"`{name}` is a choice ({typing.get_args(typ) or 'str'}): it selects which code is compiled"
    if origin is typing.Union or type(typ).__name__ == "UnionType":
        return f"`{name}` may be None or a choice ({typ}): its kind selects which code is compiled"
    return f"`{name}` is not a float ({typ}): only float keys can be vmapped"


def _location(error: BaseException) -> str:
    """The innermost line of coopmarl's algorithm, network or env code in `error`'s traceback."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename).startswith(_PACKAGE + os.sep)
              and not os.path.abspath(f.filename).endswith(_NOT_ALGO_CODE)]
    if not frames:
        return ""
    f = frames[-1]
    where = os.path.relpath(os.path.abspath(f.filename), _PACKAGE)
    return f"{where}:{f.lineno} (`{(f.line or '').strip()}`)"


def _trace_error(resolved, names: list[str]) -> BaseException | None:
    """Trace `resolved`'s init, one chunk and its evaluation with `names` as traced values (one batch element;
    nothing is computed); the exception it raises, or None when it traces."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from coopmarl.envs.tabular import TabularGame
    from coopmarl.evaluation import make_evaluator
    from coopmarl.results import iteration_size, plan_chunks
    from coopmarl.runner import element_fns

    algo, env, config, run = resolved.algo, resolved.env, resolved.config, resolved.run
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    _, iters = plan_chunks(run.total_steps, run.log_points, rollout_length * n_envs)
    hp = {n: np.zeros(1, np.float32) for n in names}
    init_fn, chunk_fn = element_fns(algo, env, config, iters, hp)
    evaluate = make_evaluator(algo, env, config, run.eval_episodes, hparams=True)
    model = env if isinstance(env, TabularGame) else None

    def program(hp):
        keys = jax.random.PRNGKey(0)[None]
        carry = jax.vmap(init_fn, in_axes=(None, 0, 0))(model, keys, hp)
        carry, metrics, _ = jax.vmap(chunk_fn, in_axes=(None, 0, 0))(model, carry, hp)
        return metrics, evaluate(model, carry[0], keys, hp)

    try:
        jax.eval_shape(program, {n: jax.ShapeDtypeStruct((1,), jnp.float32) for n in names})
    except Exception as e:  # noqa: BLE001 - whatever tracing refuses (an `if`, a shape, float(), hashing)
        return e
    return None


def _trace_reason(name: str, algo_name: str, error: BaseException) -> str:
    import jax

    where = _location(error)
    at = f": {where}" if where else ""
    if isinstance(error, (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError)):
        return f"`{name}` is used in Python control flow in {algo_name}{at}"
    if isinstance(error, (jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError)):
        return f"`{name}` is used as a Python number, a shape or an index in {algo_name}{at}"
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"`{name}` cannot be traced in {algo_name} ({type(error).__name__}: {first}){at}"


def _passing(resolved, names: list[str]) -> list[str]:
    """The keys of `names` that trace, found by halving (a set traces when each of its keys does)."""
    if not names or _trace_error(resolved, names) is None:
        return list(names)
    if len(names) == 1:
        return []
    mid = len(names) // 2
    return _passing(resolved, names[:mid]) + _passing(resolved, names[mid:])


def _cache_key(resolved):
    import yaml

    return yaml.safe_dump(resolved.as_dict(), sort_keys=True)


def vmappable_keys(resolved) -> list[str]:
    """The keys of `resolved`'s algorithm (`config.Resolved`) that can be vmapped on its env, in declaration
    order: its float keys that trace (see the module docstring). Cached per resolved config."""
    from coopmarl.algos.fields import field_types

    if getattr(resolved.env, "host", False):
        return []
    key = ("keys", _cache_key(resolved))
    if key not in _CACHE:
        floats = [n for n, t in field_types(type(resolved.config)).items() if _type_reason(n, t) is None]
        _CACHE[key] = _passing(resolved, floats)
    return list(_CACHE[key])


def refusal(resolved, key: str) -> str | None:
    """Why `key` cannot be vmapped for `resolved` (`config.Resolved`), or None when it can (tracing checks
    float keys; see the module docstring)."""
    from coopmarl.algos.fields import field_types, fixed_choices
    from coopmarl.config import config_fields
    from coopmarl.results import RunConfig

    algo = resolved.algo
    if getattr(resolved.env, "host", False):
        return f"{resolved.env_name!r} is a host env: vmapped hyperparameters need a JAX env"
    if key.startswith("env."):
        return (f"`{key}` is an environment key: the env is built in Python before compiling "
                "(only the algorithm's keys can be vmapped)")
    key = key.removeprefix("algo.")
    if key in config_fields(RunConfig):
        why = " (seeds are vmapped with --seeds)" if key in ("seed", "n_seeds") else ""
        return f"`{key}` is a run setting, not an algorithm key: it shapes the whole run{why}"
    fixed = fixed_choices(algo.config_cls)
    if key in fixed:
        return f"`{key}` is fixed by {algo.name} ({key}={fixed[key]!r}), not a key"
    types = field_types(algo.config_cls)
    if key not in types:
        return f"`{key}` is not a key of {algo.name}"
    reason = _type_reason(key, types[key])
    if reason is not None:
        return reason
    cached = ("keys", _cache_key(resolved))
    if cached in _CACHE:
        return None if key in _CACHE[cached] else _trace_reason(key, algo.name, _trace_error(resolved, [key]))
    error = _trace_error(resolved, [key])
    return None if error is None else _trace_reason(key, algo.name, error)


def check_vmappable(algo: str, env: str, overrides: list[str] | dict | None, keys: Iterable[str], *,
                    resolved=None) -> None:
    """Raise `ConfigError` unless every key of `keys` can be vmapped for `algo` on `env` with `overrides`
    (`key=value` strings or a dict): the message says why each refused key is refused and lists the keys
    that can be. Compiles nothing (traces only)."""
    from coopmarl.config import resolve

    if resolved is None:
        resolved = resolve(algo, env, overrides)
    keys = list(keys)
    if not keys:
        raise ConfigError("vmap needs at least one key (e.g. lr=vmap:1e-4,3e-4,1e-3)")
    reasons = [r for r in (refusal(resolved, k) for k in keys) if r is not None]
    if not reasons:
        names = [k.removeprefix("algo.") for k in keys]
        error = _trace_error(resolved, names) if len(names) > 1 else None  # each traced alone; now together
        if error is None:
            return
        reasons = [_trace_reason(", ".join(names), resolved.algo.name, error)]
    valid = vmappable_keys(resolved)
    listed = ", ".join(valid) if valid else "(none)"
    raise ConfigError(f"cannot vmap: {'; '.join(reasons)}. Keys that can be vmapped for {resolved.algo.name} on "
                      f"{resolved.env_name}: {listed}")
