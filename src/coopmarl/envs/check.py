"""Check an environment against coopmarl's env contract (DESIGN.md, "Environment contract") and report
check by check, as Gymnasium's `check_env` does:

    from coopmarl import check_env
    report = check_env("lbf:10x10-3p-3f")                   # a registered name (**params: env parameters)
    report = check_env("my_package.my_env:make_env")        # module:function -> function(**params) is the env
    report = check_env(my_env)                              # an env object
    report.ok, report.failed, print(report)                 # results: [(check, passed, detail), ...]

`coopmarl check-env NAME|module:function [env.key=value …]` prints the same report as a table and exits 1
when a check fails. The checks, in order (a check whose prerequisite failed is skipped):

- `api`: `spec` is an `EnvSpec` with consistent fields; `reset` and `step` are callable.
- `reset`, `step`: one reset and one step (random available actions) give a `TimeStep` whose fields
  have the spec's shapes and dtypes: obs float32 [N, obs_dim], global_state float32 [state_dim],
  avail_actions bool [N, n_actions] ([N, 1] for continuous actions), reward float32 [N], terminated and
  truncated bool scalars, info a dict.
- `info structure`: `info`'s tree (keys, shapes, dtypes) is the same after reset and after a step, also
  under `AutoReset` (a compiled rollout carries it).
- `jit`: reset and step compile under `jax.jit` and give the eager result's shapes and dtypes.
- `vmap`: reset and step under `jax.vmap` over keys give, for each key, the single-key result.
- `rollout`: `steps` steps of random available actions under `AutoReset`, compiled (`lax.scan`); the
  checks below read it.
- `shapes & dtypes`: every step's `TimeStep`, as for `step`.
- `action masks`: at least one available action per agent at every step (bool masks).
- `finite`: no NaN or inf in obs, global_state or reward.
- `storage dtypes`: obs and global_state hold only values `spec.obs_dtype` / `spec.state_dtype` represent
  exactly (replay stores them in those dtypes).
- `team reward`: with `spec.reward_scalarisation == "shared"`, every agent's reward is the same at every
  step (else the logged team return, `team_reward(spec, reward)` = reward[0], would be agent 0's alone:
  declare "sum" or "mean").
- `time limit`: `spec.horizon > 0` (rollout evaluation needs one); no episode runs past it; an episode
  cut at the horizon reports `truncated` (a time limit is truncation, not termination).
- `auto-reset`: `AutoReset`'s statistics (episode_done, episode_length, episode_return = the sum of
  `team_reward`), `final_obs` / `final_state` / `final_avail_actions` = the finished episode's last ones,
  and the observation after an episode end is a start observation.
- `determinism`: the same key gives an identical trajectory, from two separately compiled rollouts (an
  env drawing randomness outside `jax.random`, or keeping Python state, fails here).
- `render`: where the env has `render(state)`, it gives a non-blank uint8 [H, W, 3] frame (H, W >= 16).

A *host* env (`env.host`: numpy, driven from a Python loop, e.g. `pettingzoo:…`) is checked through its
host API (`reset(seed)`, `step(actions)`): spec, shapes and dtypes, masks, finite values, team reward,
time limit and determinism under a seed; jit, vmap and auto-reset do not apply to it.

The helpers (`sample_actions`, `autoreset_rollout`, `timestep_problems`, …) are public: the env contract
test suite (tests/test_env_contract.py) applies the same checks to every registered env.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.envs.core import AutoReset, EnvSpec, TimeStep, team_reward
from coopmarl.errors import ConfigError, CoopmarlError, UnknownNameError, did_you_mean

__all__ = ["CheckResult", "EnvCheckReport", "check_env", "load_env", "sample_actions", "autoreset_rollout",
           "Recording", "default_steps", "spec_problems", "timestep_problems", "mask_problems",
           "nonfinite_problems", "team_reward_problems", "info_structure_problems", "time_limit_problems",
           "autoreset_problems", "trajectory_differences", "render_problems"]

MIN_STEPS = 30
AUTORESET_INFO_KEYS = ("final_obs", "final_state", "final_avail_actions", "episode_return", "episode_length",
                       "episode_done")
_MODULE_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


# ---- the report ------------------------------------------------------------------------------------------


class CheckResult(NamedTuple):
    check: str
    passed: bool | None  # None: not applicable, or skipped because a check it needs failed
    detail: str


@dataclass
class EnvCheckReport:
    """The results of `check_env`, in order; `ok` when none failed (skipped ones do not count)."""

    env: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed is not False for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.passed is False]

    def __getitem__(self, check: str) -> CheckResult:
        for r in self.results:
            if r.check == check:
                return r
        raise KeyError(f"no check named {check!r}; checks: {', '.join(r.check for r in self.results)}")

    def summary(self) -> str:
        n_pass = sum(r.passed is True for r in self.results)
        n_skip = sum(r.passed is None for r in self.results)
        skipped = f", {n_skip} skipped" if n_skip else ""
        if self.ok:
            return f"{self.env}: all {n_pass} checks passed{skipped}"
        names = ", ".join(r.check for r in self.failed)
        return f"{self.env}: {len(self.failed)} check(s) failed ({names}); {n_pass} passed{skipped}"

    def __str__(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "skip"}
        width = max((len(r.check) for r in self.results), default=0)
        lines = [f"{mark[r.passed]}  {r.check:<{width}}  {r.detail}" for r in self.results]
        return "\n".join(lines + [self.summary()])


# ---- building the env --------------------------------------------------------------------------------------


def load_env(target: str, **params):
    """The env a name stands for: a registered environment (`coopmarl.make(target, **params)`), or
    `module:function`, which imports `module` (found on sys.path or in the working directory, as
    uvicorn's `module:app`) and calls `function(**params)`. An unknown name, a module that does not
    import or a missing function is a `ConfigError` / `UnknownNameError`."""
    from coopmarl.envs.registry import list_envs, make

    try:
        return make(target, **params)
    except UnknownNameError:
        head = target.split(":", 1)[0]
        families = {e.name.split(":", 1)[0] for e in list_envs()}
        if not _MODULE_FUNCTION.match(target) or head in families:
            raise
    except ValueError as e:  # a constructor's own validation of its parameters
        if isinstance(e, CoopmarlError):
            raise
        raise ConfigError(f"environment {target!r}: {e}") from None
    module_name, function_name = target.split(":")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # a console script does not have the working directory on sys.path
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise UnknownNameError(f"{target!r} is neither a registered environment nor an importable "
                                   f"module:function (no module named {e.name!r}); `coopmarl list envs` lists "
                                   "the environments") from None
        raise ConfigError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise ConfigError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    function = getattr(module, function_name, None)
    if not callable(function):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ConfigError(f"module {module_name!r} has no function {function_name!r}."
                          f"{did_you_mean(function_name, names)}")
    return function(**_function_params(target, function, params))


def _function_params(target: str, function, params: dict) -> dict:
    """`params` (e.g. strings from the command line) coerced to `function`'s annotated parameter types, as
    a registered env's are; names the function does not take are refused unless it takes **kwargs."""
    import inspect

    from coopmarl.envs.registry import bind_params, params_of

    if not params:
        return {}
    try:
        declared = params_of(function)
        var_kw = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())
    except (TypeError, ValueError, NameError):  # no signature, or annotations that do not evaluate
        return dict(params)
    names = {p.name for p in declared}
    out = bind_params(target, declared, {k: v for k, v in params.items() if k in names or not var_kw})
    out.update({k: v for k, v in params.items() if k not in names and var_kw})
    return out


def default_steps(spec) -> int:
    """Rollout length: two episodes at the time limit and a few steps more (at least MIN_STEPS)."""
    return max(MIN_STEPS, 2 * int(getattr(spec, "horizon", 0) or 0) + 3)


# ---- rollouts ------------------------------------------------------------------------------------------------


def sample_actions(key, spec: EnvSpec, avail):
    """Uniform random actions among the available ones (discrete) or in [low, high] (continuous)."""
    if spec.discrete:
        logits = jnp.where(avail, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    return jax.random.uniform(key, (spec.n_agents, spec.action_dim), jnp.float32, spec.low, spec.high)


class Recording:
    """Wraps an env so that every step's raw (pre-auto-reset) obs, global state and mask are kept in
    `info["_raw_obs"]`, `["_raw_state"]`, `["_raw_avail"]`. An env's `reset_state`/`observation` (AutoReset's
    cheaper path) are passed through, so AutoReset takes the path it takes in the runner."""

    def __init__(self, env):
        self.env = env
        self.spec = env.spec
        if callable(getattr(env, "reset_state", None)) and callable(getattr(env, "observation", None)):
            self.reset_state = env.reset_state
            self.observation = env.observation

    @staticmethod
    def _record(ts):
        return ts._replace(info={**ts.info, "_raw_obs": ts.obs, "_raw_state": ts.global_state,
                                 "_raw_avail": ts.avail_actions})

    def reset(self, key):
        state, ts = self.env.reset(key)
        return state, self._record(ts)

    def step(self, key, state, actions):
        state, ts = self.env.step(key, state, actions)
        return state, self._record(ts)


def autoreset_rollout(env, key, n_steps: int):
    """`n_steps` of random play in the AutoReset-wrapped (Recording) env:
    (first ts, (decision ts [T], actions [T], next ts [T]))."""
    wrapped = AutoReset(Recording(env))
    k_reset, k_run = jax.random.split(key)
    state, ts = wrapped.reset(k_reset)

    def body(carry, k):
        state, ts = carry
        k_act, k_env = jax.random.split(k)
        actions = sample_actions(k_act, env.spec, ts.avail_actions)
        state, next_ts = wrapped.step(k_env, state, actions)
        return (state, next_ts), (ts, actions, next_ts)

    _, seq = jax.lax.scan(body, (state, ts), jax.random.split(k_run, n_steps))
    return ts, seq


def one_step(env, key):
    """reset, then one step with random available actions: (state, ts after reset, state, ts after the step)."""
    k_reset, k_act, k_step = jax.random.split(key, 3)
    state0, ts0 = env.reset(k_reset)
    actions = sample_actions(k_act, env.spec, ts0.avail_actions)
    state1, ts1 = env.step(k_step, state0, actions)
    return state0, ts0, state1, ts1


# ---- problems: each returns a list of messages, empty when the check holds ---------------------------------


def _dtype(x):
    return np.asarray(x).dtype if not hasattr(x, "dtype") else np.dtype(x.dtype)


def spec_problems(env) -> list[str]:
    spec = getattr(env, "spec", None)
    if not isinstance(spec, EnvSpec):
        return [f"env.spec must be a coopmarl EnvSpec, got {type(spec).__name__}"]
    out = []
    for what in ("reset", "step"):
        if not callable(getattr(env, what, None)):
            out.append(f"env has no callable {what}()")
    for what in ("n_agents", "obs_dim", "state_dim"):
        v = getattr(spec, what)
        if not isinstance(v, (int, np.integer)) or v < 1:
            out.append(f"spec.{what} must be an int >= 1, got {v!r}")
    if not isinstance(spec.horizon, (int, np.integer)) or spec.horizon < 0:
        out.append(f"spec.horizon must be an int >= 0, got {spec.horizon!r}")
    if not spec.discrete and not spec.low < spec.high:
        out.append(f"continuous actions need spec.low < spec.high, got [{spec.low}, {spec.high}]")
    try:
        hash(spec)
    except TypeError as e:
        out.append(f"spec is not hashable ({e}): a spec must be usable as a jit static argument")
    return out


def timestep_problems(ts, spec: EnvSpec, batch: tuple = ()) -> list[str]:
    """Shapes and dtypes of a TimeStep (with leading `batch` axes) against the spec."""
    if not isinstance(ts, TimeStep):
        return [f"expected a coopmarl TimeStep, got {type(ts).__name__}"]
    n = spec.n_agents
    n_avail = spec.n_actions if spec.discrete else 1
    expected = {
        "obs": (batch + (n, spec.obs_dim), np.float32),
        "global_state": (batch + (spec.state_dim,), np.float32),
        "avail_actions": (batch + (n, n_avail), np.bool_),
        "reward": (batch + (n,), np.float32),
        "terminated": (batch, np.bool_),
        "truncated": (batch, np.bool_),
    }
    out = []
    for name, (shape, dtype) in expected.items():
        x = getattr(ts, name)
        got_shape, got_dtype = tuple(np.shape(x)), _dtype(x)
        if got_shape != shape or got_dtype != dtype:
            out.append(f"{name}: expected {np.dtype(dtype).name} {list(shape)}, got {got_dtype.name} {list(got_shape)}")
    if not isinstance(ts.info, dict):
        out.append(f"info must be a dict, got {type(ts.info).__name__}")
    return out


def _describe_timestep(spec: EnvSpec) -> str:
    n_avail = spec.n_actions if spec.discrete else 1
    return (f"obs [{spec.n_agents}, {spec.obs_dim}], global_state [{spec.state_dim}], "
            f"avail_actions [{spec.n_agents}, {n_avail}], reward [{spec.n_agents}]")


def mask_problems(avail) -> list[str]:
    """At least one available action per agent everywhere (avail [..., N, A], bool)."""
    avail = np.asarray(avail)
    if avail.dtype != np.bool_:
        return [f"avail_actions must be bool, got {avail.dtype.name}"]
    none = ~avail.any(-1)
    if none.any():
        where = np.argwhere(none)[0].tolist()
        return [f"{int(none.sum())} agent-step(s) with no available action (first at index {where})"]
    return []


def nonfinite_problems(ts) -> list[str]:
    out = []
    for name in ("obs", "global_state", "reward"):
        x = np.asarray(getattr(ts, name))
        if np.issubdtype(x.dtype, np.number) and not np.isfinite(x).all():
            bad = ~np.isfinite(x)
            out.append(f"{name} has {int(bad.sum())} non-finite value(s) (first {x[bad][0]} at index "
                       f"{np.argwhere(bad)[0].tolist()})")
    return out


def storage_dtype_problems(spec: EnvSpec, *timesteps) -> list[str]:
    """obs and global_state hold only values their declared storage dtypes (`spec.obs_dtype`, `spec.state_dtype`)
    represent exactly: replay stores them so, and a value that does not fit would be silently changed."""
    out = []
    for name, declared in (("obs", spec.obs_dtype), ("global_state", spec.state_dtype)):
        if declared == "float32":
            continue
        x = np.concatenate([np.asarray(getattr(ts, name), np.float32).reshape(-1) for ts in timesteps])
        with np.errstate(invalid="ignore", over="ignore"):
            back = x.astype(declared).astype(np.float32)
        bad = back != x
        if bad.any():
            what = "0 or 1" if declared == "bool" else declared
            out.append(f"{name} has {int(bad.sum())} value(s) that {declared} (spec.{name.replace('global_', '')}"
                       f"_dtype: {what}) does not hold exactly, e.g. {float(x[bad][0])}: declare a wider dtype or "
                       "'float32'")
    return out


def team_reward_problems(spec: EnvSpec, reward) -> list[str]:
    """A "shared" env must give every agent the same reward at every step (reward [..., N])."""
    reward = np.asarray(reward)
    if spec.reward_scalarisation != "shared" or reward.shape[-1] < 2:
        return []
    first = reward[..., :1]
    differ = ~np.all((reward == first) | (np.isnan(reward) & np.isnan(first)), axis=-1)  # NaN: the `finite` check
    if differ.any():
        i = np.argwhere(differ)[0]
        row = reward[tuple(i)]
        return [f"agents' rewards differ ({row.tolist()} at step {i.tolist()}) but spec.reward_scalarisation is "
                "'shared', so the team return would be agent 0's alone: declare 'sum' or 'mean' in the EnvSpec, "
                "or give every agent the team reward"]
    return []


def _structure(info):
    leaves, treedef = jax.tree.flatten(info)
    return treedef, [(tuple(jnp.shape(x)), jnp.result_type(x)) for x in leaves]


def _action_struct(spec: EnvSpec):
    if spec.discrete:
        return jax.ShapeDtypeStruct((spec.n_agents,), jnp.int32)
    return jax.ShapeDtypeStruct((spec.n_agents, spec.action_dim), jnp.float32)


def info_structure_problems(env) -> list[str]:
    """`info` keeps one tree structure (keys, shapes, dtypes) across reset and steps, also under AutoReset
    (shapes only: abstract evaluation, nothing is compiled)."""
    key, actions = jax.random.PRNGKey(0), _action_struct(env.spec)
    out = []
    state, ts = jax.eval_shape(env.reset, key)
    ref = _structure(ts.info)
    for i in range(2):
        state, ts = jax.eval_shape(env.step, key, state, actions)
        if _structure(ts.info) != ref:
            out.append(f"info after step {i + 1} differs from info after reset: {_structure(ts.info)[0]} vs {ref[0]}")
            break
    wrapped = AutoReset(env)
    state, ts = jax.eval_shape(wrapped.reset, key)
    ref = _structure(ts.info)
    _, ts = jax.eval_shape(wrapped.step, key, state, actions)
    if _structure(ts.info) != ref:
        out.append("under AutoReset, info after a step differs from info after reset")
    missing = [k for k in AUTORESET_INFO_KEYS if k not in ts.info]
    if missing:
        out.append(f"AutoReset's info lacks {missing}")
    return out


def time_limit_problems(spec: EnvSpec, terminated, truncated, n_steps: int, tabular: bool = False) -> list[str]:
    """Episodes (of an auto-reset rollout) end at the latest at the horizon, which is reported as truncation."""
    horizon = spec.horizon
    if horizon <= 0:
        return ["spec.horizon is 0 (no time limit): coopmarl's rollout evaluation needs one"]
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    start = 0
    for t in np.flatnonzero(terminated | truncated):
        length = t + 1 - start
        if length > horizon:
            return [f"an episode lasted {length} steps; the horizon is {horizon}"]
        if length == horizon and not truncated[t]:
            return [f"an episode reached the time limit {horizon} without truncated=True (a time limit is "
                    "truncation, not termination)"]
        if truncated[t] and length != horizon:
            return [f"truncated after {length} steps, before the time limit {horizon}"]
        start = t + 1
    if n_steps - start >= horizon:
        return [f"an episode ran past the horizon {horizon} without ending"]
    if tabular and terminated.any():
        return ["a tabular game terminated: only its time limit ends an episode"]
    return []


def autoreset_problems(env, first, seq, start_obs=None) -> list[str]:
    """AutoReset's contract on a Recording rollout (`autoreset_rollout`'s output): episode statistics,
    final_* fields, and observations after an episode end (compared with `start_obs` [K, N, obs_dim], a
    sample of `env.reset` observations; default: 32 resets)."""
    spec = env.spec
    ts, _, next_ts = seq
    info = jax.device_get(next_ts.info)
    missing = [k for k in AUTORESET_INFO_KEYS if k not in info]
    if missing:
        return [f"AutoReset's info lacks {missing}"]
    done = np.asarray(next_ts.terminated) | np.asarray(next_ts.truncated)
    out = []
    if not (info["episode_done"] == done).all():
        out.append("info['episode_done'] differs from terminated | truncated")
    team = np.asarray(team_reward(spec, np.asarray(next_ts.reward, np.float64)))
    start = 0
    for t in np.flatnonzero(done):
        if info["episode_length"][t] != t + 1 - start:
            out.append(f"episode_length {info['episode_length'][t]} at step {t}, expected {t + 1 - start}")
            break
        expected = team[start:t + 1].sum()
        if not np.isclose(info["episode_return"][t], expected, rtol=1e-5, atol=1e-4, equal_nan=True):
            out.append(f"episode_return {info['episode_return'][t]} at step {t}, expected {expected} (the sum of "
                       f"team_reward, scalarisation {spec.reward_scalarisation!r})")
            break
        start = t + 1
    for final, raw in (("final_obs", "_raw_obs"), ("final_state", "_raw_state"), ("final_avail_actions", "_raw_avail")):
        if not np.array_equal(info[final], info[raw]):
            out.append(f"info[{final!r}] is not the finished step's own value")
    not_done = ~done
    if not np.array_equal(np.asarray(next_ts.obs)[not_done], info["_raw_obs"][not_done]):
        out.append("the obs returned while an episode continues is not the env's own obs")
    if not np.array_equal(np.asarray(next_ts.avail_actions)[not_done], info["_raw_avail"][not_done]):
        out.append("the avail_actions returned while an episode continues are not the env's own")
    if not np.array_equal(np.asarray(ts.obs)[1:], np.asarray(next_ts.obs)[:-1]):
        out.append("the next decision is not taken on the returned obs")
    if done.any():
        if start_obs is None:
            start_obs = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(11), 32))[1].obs
        reset_obs = np.asarray(start_obs)
        distinct = np.unique(reset_obs.reshape(len(reset_obs), -1), axis=0)
        post_reset = np.asarray(next_ts.obs)[done].reshape(int(done.sum()), -1)
        if len(distinct) <= 16:  # a few possible starts: the obs after an episode end is one of them
            if not all((np.abs(distinct - o).max(-1) == 0).any() for o in post_reset):
                out.append("the obs after an episode end is not a start obs of env.reset")
    if int(np.asarray(first.info["episode_length"])) != 0 or float(np.asarray(first.info["episode_return"])) != 0.0:
        out.append("the first TimeStep's episode statistics are not zero")
    return out


def trajectory_differences(a, b) -> list[str]:
    """Where two pytrees (e.g. two rollouts from the same key) differ."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    if tree_a != tree_b:
        return ["the two trajectories have different structures"]
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(a)[0]]
    out = []
    for path, x, y in zip(paths, leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        equal_nan = np.issubdtype(x.dtype, np.inexact)
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=equal_nan):
            out.append(f"{path} differs")
    return out


def render_problems(env, state) -> list[str]:
    frame = np.asarray(env.render(state))
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        return [f"render(state) must give uint8 [H, W, 3], got {frame.dtype.name} {list(frame.shape)}"]
    if min(frame.shape[:2]) < 16:
        return [f"the frame is {frame.shape[0]}x{frame.shape[1]}: at least 16x16 expected"]
    if frame.std() == 0:
        return ["the frame is blank (one colour)"]
    return []


# ---- check_env -----------------------------------------------------------------------------------------------


class _Checks:
    """Runs named checks in order, turning each one's problems (or exception) into a CheckResult."""

    def __init__(self, name: str):
        self.report = EnvCheckReport(name)
        self.failed: set[str] = set()

    def run(self, name: str, fn: Callable[[], Any], ok_detail: str | Callable[[], str] = "",
            needs: tuple[str, ...] = ()) -> bool:
        blocked = [n for n in needs if n in self.failed]
        if blocked:
            self.skip(name, f"needs {', '.join(blocked)}", failed=True)
            return False
        try:
            problems = fn()
        except Exception as e:  # the env raised: that is the check's finding
            problems = [_exception_line(e)]
        if problems is None:  # not applicable (fn said so through skip)
            return True
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            self.report.results.append(CheckResult(name, False, problems[0] + more))
            self.failed.add(name)
            return False
        detail = ok_detail() if callable(ok_detail) else ok_detail
        self.report.results.append(CheckResult(name, True, detail))
        return True

    def skip(self, name: str, detail: str, failed: bool = False):
        self.report.results.append(CheckResult(name, None, detail))
        if failed:
            self.failed.add(name)


def _exception_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 300:
        first = first[:297] + "..."
    return f"raised {type(e).__name__}: {first}"


def check_env(env, *, steps: int | None = None, seed: int = 0, **params) -> EnvCheckReport:
    """Check `env` (an env object, a registered name or `module:function`; `params` build it) against the
    env contract; see the module docstring for the checks. Never raises for a broken env (its failures
    are in the report); an unknown name is a `ConfigError`/`UnknownNameError`."""
    if isinstance(env, str):
        name = env
        try:
            env = load_env(name, **params)
        except (CoopmarlError, ImportError, FileNotFoundError):  # a bad name or parameter, a missing extra
            raise
        except Exception as e:  # the user's constructor raised
            checks = _Checks(name)
            checks.report.results.append(CheckResult("api", False, "building the env " + _exception_line(e)))
            return checks.report
    elif params:
        raise TypeError("check_env: params build an env from a name; got an env object and params")
    spec = getattr(env, "spec", None)
    label = getattr(spec, "name", None) or type(env).__name__
    checks = _Checks(label)
    if not checks.run("api", lambda: spec_problems(env),
                      lambda: f"{spec.n_agents} agents, {spec.action_kind} actions, horizon {spec.horizon}, "
                              f"team reward {spec.reward_scalarisation!r}"):
        return checks.report
    n_steps = default_steps(spec) if steps is None else int(steps)
    if n_steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if getattr(env, "host", False):
        _check_host(checks, env, n_steps, seed)
    else:
        _check_jax(checks, env, n_steps, seed)
    return checks.report


class _Jitted:
    """The env with `reset` and `step` under `jax.jit` (one compile each), where they compile; a function
    that does not is run eagerly instead and its error kept for the `jit` check."""

    def __init__(self, env):
        self.env, self.spec, self.jit_errors = env, env.spec, {}
        self._fns = {"reset": jax.jit(env.reset), "step": jax.jit(env.step)}

    def _call(self, what, *args):
        if what not in self.jit_errors:
            try:
                return self._fns[what](*args)
            except Exception as e:  # not jittable? Eagerly, the env's own error (if any) is the finding
                self.jit_errors[what] = e
        return getattr(self.env, what)(*args)

    def reset(self, key):
        return self._call("reset", key)

    def step(self, key, state, actions):
        return self._call("step", key, state, actions)


def _check_jax(checks: _Checks, env, n_steps: int, seed: int):
    spec = env.spec
    key = jax.random.PRNGKey(seed)
    jitted = _Jitted(env)
    k_reset, k_act, k_step = jax.random.split(key, 3)  # as one_step splits its key
    data = {}

    def reset():
        data["reset"] = jitted.reset(k_reset)
        return timestep_problems(data["reset"][1], spec)

    def step():
        state0, ts0 = data["reset"]
        actions = sample_actions(k_act, spec, ts0.avail_actions)
        data["step"] = jitted.step(k_step, state0, actions)
        return timestep_problems(data["step"][1], spec)

    shapes = _describe_timestep(spec)
    checks.run("reset", reset, shapes)
    checks.run("step", step, "one step with random available actions", needs=("reset",))
    checks.run("info structure", lambda: info_structure_problems(env), "the same tree after reset and steps",
               needs=("reset", "step"))
    checks.run("jit", lambda: [f"{what}: {_exception_line(e)}" for what, e in jitted.jit_errors.items()],
               "reset and step compile under jax.jit", needs=("step",))

    n_keys = 32  # also a sample of start observations for the auto-reset check

    def vmap():
        keys = jax.random.split(jax.random.PRNGKey(seed + 1), n_keys)
        _, b0, _, b1 = jax.device_get(jax.jit(jax.vmap(partial(one_step, env)))(keys))
        data["start_obs"] = np.asarray(b0.obs)
        problems = timestep_problems(b0, spec, (n_keys,)) + timestep_problems(b1, spec, (n_keys,))
        for i in (0, n_keys - 1):
            _, s0, _, s1 = one_step(jitted, keys[i])
            for x, y in zip(jax.tree.leaves((s0, s1)), jax.tree.leaves((b0, b1))):
                if not np.allclose(np.asarray(y[i]), np.asarray(x), rtol=1e-5, atol=1e-5, equal_nan=True):
                    return problems + [f"the vmapped result for key {i} differs from the single-key result"]
        return problems

    checks.run("vmap", vmap, "a batch of keys gives each key's own result", needs=("jit",))

    def rollout():
        data["first"], data["seq"] = jax.device_get(jax.jit(partial(autoreset_rollout, env, n_steps=n_steps))(key))
        return []

    needs = ("step", "info structure", "jit")
    if not checks.run("rollout", rollout, f"{n_steps} compiled AutoReset steps (lax.scan), random actions",
                      needs=needs):
        for name in ("shapes & dtypes", "action masks", "finite", "storage dtypes", "team reward", "time limit",
                     "auto-reset", "determinism"):
            checks.skip(name, "needs the rollout", failed=True)
    else:
        first, (_, _, next_ts) = data["first"], data["seq"]
        checks.run("shapes & dtypes", lambda: timestep_problems(next_ts, spec, (n_steps,)),
                   f"every step: {shapes}")
        checks.run("action masks", lambda: mask_problems(np.concatenate([np.asarray(first.avail_actions)[None],
                                                                         np.asarray(next_ts.avail_actions)])),
                   "bool, at least one available action per agent at every step")
        checks.run("finite", lambda: nonfinite_problems(first) + nonfinite_problems(next_ts),
                   "no NaN or inf in obs, global_state, reward")
        checks.run("storage dtypes", lambda: storage_dtype_problems(spec, first, next_ts),
                   f"obs fit {spec.obs_dtype}, global_state fits {spec.state_dtype} exactly (replay stores them so)")
        checks.run("team reward", lambda: team_reward_problems(spec, next_ts.reward),
                   lambda: _team_reward_detail(spec))
        n_done = int(np.sum(np.asarray(next_ts.terminated) | np.asarray(next_ts.truncated)))
        checks.run("time limit", lambda: time_limit_problems(spec, next_ts.terminated, next_ts.truncated, n_steps),
                   f"{n_done} episode(s) ended within horizon {spec.horizon}; the time limit is truncation")
        if n_done == 0:
            checks.skip("auto-reset", f"no episode ended in {n_steps} steps (use more steps than the horizon)")
        else:
            checks.run("auto-reset", lambda: autoreset_problems(env, first, data["seq"], data.get("start_obs")),
                       "episode statistics, final_obs/final_state/final_avail_actions, reset after an end")

        def determinism():
            again = jax.device_get(jax.jit(partial(autoreset_rollout, env, n_steps=n_steps))(key))
            return [f"same key, different trajectory: {d}" for d in
                    trajectory_differences((data["first"], data["seq"]), again)]

        checks.run("determinism", determinism, "the same key gives an identical trajectory (compiled twice)")

    def render():
        if not callable(getattr(env, "render", None)):
            checks.skip("render", "no render(state) (optional: grid and particle envs draw themselves)")
            return None
        return render_problems(env, data["step"][0])

    checks.run("render", render, "uint8 [H, W, 3] frame", needs=("step",))


def _team_reward_detail(spec: EnvSpec) -> str:
    if spec.reward_scalarisation == "shared":
        return "'shared': every agent gets the team reward"
    return f"{spec.reward_scalarisation!r} of the per-agent rewards"


# ---- host envs -------------------------------------------------------------------------------------------------


def _host_rollout(env, seed: int, n_steps: int):
    """`n_steps` host steps with random available actions (numpy, from `seed`), resetting after an episode
    end as the host runner does: (first ts, [(ts, actions, next ts)])."""
    rng = np.random.default_rng(seed)
    spec = env.spec
    first = ts = env.reset(seed)
    steps = []
    for _ in range(n_steps):
        avail = np.asarray(ts.avail_actions, bool)
        if spec.discrete:
            actions = np.array([rng.choice(np.flatnonzero(a)) if a.any() else 0 for a in avail], np.int32)
        else:
            actions = rng.uniform(spec.low, spec.high, (spec.n_agents, spec.action_dim)).astype(np.float32)
        nts = env.step(actions)
        steps.append((ts, actions, nts))
        ts = env.reset(None) if bool(nts.terminated) or bool(nts.truncated) else nts
    return first, steps


def _stack(tss) -> TimeStep:
    return TimeStep(*(np.stack([np.asarray(getattr(t, f)) for t in tss]) for f in TimeStep._fields[:-1]),
                    info={})


def _check_host(checks: _Checks, env, n_steps: int, seed: int):
    spec = env.spec
    data = {}

    def rollout():
        data["first"], data["steps"] = _host_rollout(env, seed, n_steps)
        return []

    for name in ("jit", "vmap", "auto-reset"):
        checks.skip(name, "host env (numpy, driven from a Python loop): not jittable")
    if not checks.run("rollout", rollout, f"{n_steps} host steps (reset(seed), step(actions)), random actions"):
        return
    first, steps = data["first"], data["steps"]
    nexts = [s[2] for s in steps]
    shapes = _describe_timestep(spec)

    def each_step():
        for t, ts in enumerate([first] + nexts):
            problems = timestep_problems(ts, spec)
            if problems:
                return [f"step {t}: {p}" for p in problems]
        return []

    if not checks.run("shapes & dtypes", each_step, f"every step: {shapes}"):
        return
    stacked = _stack([first] + nexts)
    checks.run("info structure", lambda: [] if len({tuple(sorted(t.info)) for t in nexts}) <= 1
               else ["info's keys change between steps"], "the same keys at every step")
    checks.run("action masks", lambda: mask_problems(stacked.avail_actions),
               "bool, at least one available action per agent at every step")
    checks.run("finite", lambda: nonfinite_problems(stacked), "no NaN or inf in obs, global_state, reward")
    checks.run("storage dtypes", lambda: storage_dtype_problems(spec, stacked),
               f"obs fit {spec.obs_dtype}, global_state fits {spec.state_dtype} exactly (replay stores them so)")
    checks.run("team reward", lambda: team_reward_problems(spec, stacked.reward[1:]), lambda: _team_reward_detail(spec))
    term = stacked.terminated[1:]
    trunc = stacked.truncated[1:]
    if spec.horizon > 0:
        checks.run("time limit", lambda: time_limit_problems(spec, term, trunc, n_steps),
                   f"{int(np.sum(term | trunc))} episode(s) ended within horizon {spec.horizon}")
    else:
        checks.skip("time limit", "no declared horizon (host envs may have none; evaluation caps episodes)")

    def determinism():
        other = env.clone() if callable(getattr(env, "clone", None)) else copy.deepcopy(env)
        first2, steps2 = _host_rollout(other, seed, n_steps)
        a = (stacked, np.stack([s[1] for s in steps]))
        b = (_stack([first2] + [s[2] for s in steps2]), np.stack([s[1] for s in steps2]))
        return [f"same seed, different trajectory: {d}" for d in trajectory_differences(a, b)]

    checks.run("determinism", determinism, "the same seed gives an identical trajectory (on a copy of the env)")
    checks.skip("render", "host env: not checked")

