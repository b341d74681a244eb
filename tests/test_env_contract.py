"""The environment contract (DESIGN.md, "Environment contract"), checked for EVERY registered env.

The suite is parametrised over `coopmarl.list_envs()`, so an environment registered later is tested
automatically with its default parameters. Two tables below say how to build an env when the
defaults do not suit a test:

- `SMALL_PARAMS`: keyword arguments that make an env small enough for a fast test;
- `PREFIX_ARGS`: the text after "name:" for prefix families (`tabular:PATH`, ...). A new prefix family
  without an entry here fails `test_env_builds` with a message saying where to add one.

Envs tagged "host" (non-JAX bridges, run from a Python loop) are only checked for their spec and
for one reset/step through the host API (`ts = env.reset(seed)`, `ts = env.step(actions)`), not jitted.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.envs.core import AutoReset, EnvSpec, TimeStep

# name -> constructor parameters that keep the env small (default: none, i.e. the env's defaults)
SMALL_PARAMS: dict[str, dict] = {
    "random-stochastic-game": dict(n_states=5, n_agents=2, n_actions=3),
    **{name: dict(grid_size=6, n_agents=3, n_stags=2, time_limit=40)
       for name in ("predator-prey", "predator-prey:p0", "predator-prey:p-0.5", "predator-prey:p-1.5",
                    "predator-prey:p-2")},
    "mabrax": dict(episode_length=20),
}

# prefix family -> function(tiny_npz_path) -> the argument after "name:"
PREFIX_ARGS = {
    "tabular": lambda tiny_npz: tiny_npz,
    "smax": lambda tiny_npz: "3m",
    "mabrax": lambda tiny_npz: "hopper_3x1",  # one task (Brax compiles slowly); tests/test_mabrax_bridge.py has all
    "pettingzoo": lambda tiny_npz: "mpe2.simple_spread_v3",
}

N_VMAP = 8
MIN_STEPS = 30
MAX_STEPS = 500

ENTRIES = {e.name: e for e in coopmarl.list_envs()}


def _is_host(entry) -> bool:
    return "host" in entry.tags


def _make_name(entry, tiny_npz) -> str:
    if not entry.prefix:
        return entry.name
    if entry.name not in PREFIX_ARGS:
        pytest.fail(
            f"prefix env family {entry.name!r} has no test argument: add one to PREFIX_ARGS in "
            f"tests/test_env_contract.py so the env contract suite can build it"
        )
    return f"{entry.name}:{PREFIX_ARGS[entry.name](tiny_npz)}"


def _sample_actions(key, spec: EnvSpec, avail):
    """Uniform random actions among the available ones (discrete) or in [low, high] (continuous)."""
    if spec.discrete:
        logits = jnp.where(avail, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    return jax.random.uniform(key, (spec.n_agents, spec.action_dim), jnp.float32, spec.low, spec.high)


class _Recording:
    """Wraps an env so that the raw (pre-auto-reset) obs of every step is kept in `info`."""

    def __init__(self, env):
        self.env = env
        self.spec = env.spec

    def reset(self, key):
        state, ts = self.env.reset(key)
        return state, ts._replace(info={**ts.info, "_raw_obs": ts.obs, "_raw_state": ts.global_state})

    def step(self, key, state, actions):
        state, ts = self.env.step(key, state, actions)
        return state, ts._replace(info={**ts.info, "_raw_obs": ts.obs, "_raw_state": ts.global_state})


def _autoreset_rollout(env, key, n_steps):
    """n_steps of random play in the AutoReset-wrapped env. Returns (first_ts, (decision_ts, actions, next_ts))."""
    wrapped = AutoReset(_Recording(env))
    k_reset, k_run = jax.random.split(key)
    state, ts = wrapped.reset(k_reset)

    def body(carry, k):
        state, ts = carry
        k_act, k_env = jax.random.split(k)
        actions = _sample_actions(k_act, env.spec, ts.avail_actions)
        state, next_ts = wrapped.step(k_env, state, actions)
        return (state, next_ts), (ts, actions, next_ts)

    _, seq = jax.lax.scan(body, (state, ts), jax.random.split(k_run, n_steps))
    return ts, seq


def _one_step(env, key):
    """reset, then one step with random available actions: (ts after reset, ts after the step)."""
    k_reset, k_act, k_step = jax.random.split(key, 3)
    state, ts0 = env.reset(k_reset)
    actions = _sample_actions(k_act, env.spec, ts0.avail_actions)
    _, ts1 = env.step(k_step, state, actions)
    return ts0, ts1


def _one_step_host(env, key):
    """The same through the host API (numpy, no explicit state): the env is seeded from the key."""
    k_reset, k_act = jax.random.split(key)
    ts0 = env.reset(int(jax.random.randint(k_reset, (), 0, 2**31 - 1)))
    actions = np.asarray(_sample_actions(k_act, env.spec, jnp.asarray(ts0.avail_actions)))
    return ts0, env.step(actions)


class _Case(SimpleNamespace):
    """One env and its jitted programs; each is compiled once and shared by the tests of this env."""

    def one_step(self, key):
        if "_one_step" not in self.__dict__:
            self._one_step = partial(_one_step_host, self.env) if _is_host(self.entry) else jax.jit(
                partial(_one_step, self.env))
        return self._one_step(key)

    def one_step_vmapped(self, keys):
        if "_one_step_v" not in self.__dict__:
            self._one_step_v = jax.jit(jax.vmap(partial(_one_step, self.env)))
        return self._one_step_v(keys)

    def rollout(self, key):
        if "_rollout" not in self.__dict__:
            self._rollout = jax.jit(partial(_autoreset_rollout, self.env, n_steps=self.n_steps))
        return self._rollout(key)


_BUILT: dict[str, _Case] = {}


def _build(entry_name: str, tiny_npz: str) -> _Case:
    """One registered env and its compiled programs, built once per test session."""
    if entry_name not in _BUILT:
        entry = ENTRIES[entry_name]
        name = _make_name(entry, tiny_npz)
        params = SMALL_PARAMS.get(entry.name, {})
        try:
            env = coopmarl.make(name, **params)
        except ImportError as e:  # an optional extra (jaxmarl, pettingzoo, ...) is not installed
            pytest.skip(f"{entry.name}: optional dependency missing ({e})")
        n_steps = min(MAX_STEPS, max(MIN_STEPS, 2 * env.spec.horizon + 3))
        _BUILT[entry_name] = _Case(entry=entry, name=name, params=params, env=env, spec=env.spec, n_steps=n_steps)
    return _BUILT[entry_name]


@pytest.fixture(scope="module", params=sorted(ENTRIES))
def case(request, tiny_npz):
    """Every registered env, host (PettingZoo) envs included."""
    return _build(request.param, tiny_npz)


@pytest.fixture(scope="module", params=sorted(n for n, e in ENTRIES.items() if not _is_host(e)))
def jax_case(request, tiny_npz):
    """Every registered JAX env (jittable, vmappable): all but the host envs."""
    return _build(request.param, tiny_npz)


def _assert_timestep(ts: TimeStep, spec: EnvSpec, batch=()):
    n = spec.n_agents
    assert isinstance(ts, TimeStep)
    assert ts.obs.shape == batch + (n, spec.obs_dim) and ts.obs.dtype == jnp.float32, (ts.obs.shape, ts.obs.dtype)
    assert ts.global_state.shape == batch + (spec.state_dim,) and ts.global_state.dtype == jnp.float32, (
        ts.global_state.shape, ts.global_state.dtype)
    n_avail = spec.n_actions if spec.discrete else 1
    assert ts.avail_actions.shape == batch + (n, n_avail) and ts.avail_actions.dtype == jnp.bool_, (
        ts.avail_actions.shape, ts.avail_actions.dtype)
    assert ts.reward.shape == batch + (n,) and ts.reward.dtype == jnp.float32, (ts.reward.shape, ts.reward.dtype)
    for flag in (ts.terminated, ts.truncated):
        assert flag.shape == batch and flag.dtype == jnp.bool_, (flag.shape, flag.dtype)
    assert isinstance(ts.info, dict)
    for leaf in jax.tree.leaves((ts.obs, ts.global_state, ts.reward)):
        assert np.all(np.isfinite(np.asarray(leaf)))


def _structure(info):
    """Tree structure plus each leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(info)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


# ---- spec --------------------------------------------------------------------------------------------


def test_env_builds(case):
    assert isinstance(case.spec, EnvSpec)
    assert hasattr(case.env, "reset") and hasattr(case.env, "step")


def test_spec_fields_consistent(case):
    spec = case.spec
    assert spec.name.startswith(case.entry.name), (spec.name, case.entry.name)
    assert spec.n_agents >= 1 and spec.obs_dim >= 1 and spec.state_dim >= 1
    assert spec.action_kind in ("discrete", "continuous")
    if spec.discrete:
        assert spec.n_actions >= 1
    else:
        assert spec.action_dim >= 1 and spec.low < spec.high
    assert isinstance(spec.horizon, int) and spec.horizon >= 0
    hash(spec)  # static: usable as a jit static argument
    # params: (name, value) pairs naming constructor parameters, enough to rebuild the same env
    assert all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in spec.params)
    valid = {p.name for p in case.entry.params}
    rebuild = {k: v for k, v in spec.params if k in valid}
    assert coopmarl.make(case.name, **rebuild).spec == spec
    if "tabular" in case.entry.tags:
        shape = (spec.state_dim,) + (spec.n_actions,) * spec.n_agents
        assert case.env.reward.shape == shape
        assert case.env.transition.shape == shape + (spec.state_dim,)
        assert case.env.initial.shape == (spec.state_dim,)


def test_spec_is_deterministic(case):
    again = coopmarl.make(case.name, **case.params)
    assert again.spec == case.spec


# ---- reset / step --------------------------------------------------------------------------------------


def test_reset_and_step_shapes_and_dtypes(case):
    spec = case.spec
    ts0, ts1 = case.one_step(jax.random.PRNGKey(0))  # jitted (except host envs)
    _assert_timestep(ts0, spec)
    assert not bool(ts0.terminated) and not bool(ts0.truncated)
    assert ts0.avail_actions.any(-1).all(), "every agent needs at least one available action"
    _assert_timestep(ts1, spec)
    # the team reward is repeated for every agent (all envs here are cooperative)
    np.testing.assert_array_equal(ts1.reward, np.full(spec.n_agents, ts1.reward[0]))


def test_vmap_over_keys(jax_case):
    case = jax_case
    keys = jax.random.split(jax.random.PRNGKey(3), N_VMAP)
    ts0, ts1 = case.one_step_vmapped(keys)
    _assert_timestep(ts0, case.spec, (N_VMAP,))
    _assert_timestep(ts1, case.spec, (N_VMAP,))
    # the vmapped result for one key is the single-key result
    for i in (0, N_VMAP - 1):
        s0, s1 = case.one_step(keys[i])
        for x, y in zip(jax.tree.leaves((s0, s1)), jax.tree.leaves((ts0, ts1))):
            np.testing.assert_allclose(np.asarray(y[i]), np.asarray(x), rtol=1e-5, atol=1e-5)


def test_info_structure_constant(jax_case):
    case = jax_case
    env, spec = case.env, case.spec
    key = jax.random.PRNGKey(4)
    actions = jax.ShapeDtypeStruct((spec.n_agents,) if spec.discrete else (spec.n_agents, spec.action_dim),
                                   jnp.int32 if spec.discrete else jnp.float32)
    # shapes only (abstract evaluation: no compilation)
    state, ts = jax.eval_shape(env.reset, key)
    ref = _structure(ts.info)
    for i in range(2):
        state, ts = jax.eval_shape(env.step, key, state, actions)
        assert _structure(ts.info) == ref, f"info changed structure at step {i}"
    wrapped = AutoReset(env)
    state, ts = jax.eval_shape(wrapped.reset, key)
    ref = _structure(ts.info)
    _, ts = jax.eval_shape(wrapped.step, key, state, actions)
    assert _structure(ts.info) == ref
    for k in ("final_obs", "final_state", "episode_return", "episode_length", "episode_done"):
        assert k in ts.info


# ---- trajectories ----------------------------------------------------------------------------------------


def test_determinism_under_fixed_key(jax_case):
    case = jax_case
    key = jax.random.PRNGKey(42)
    out_a = jax.device_get(case.rollout(key))
    out_b = jax.device_get(case.rollout(key))
    for x, y in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_b)):
        np.testing.assert_array_equal(x, y)
    # a different key gives a different action sequence (the env really uses its key)
    out_c = jax.device_get(case.rollout(jax.random.PRNGKey(43)))
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_c)))


def test_actions_respect_avail_actions(jax_case):
    case = jax_case
    _, (ts, actions, next_ts) = case.rollout(jax.random.PRNGKey(7))
    avail = np.asarray(ts.avail_actions)
    assert avail.any(-1).all(), "every agent needs at least one available action at every step"
    assert np.asarray(next_ts.avail_actions).any(-1).all()
    if case.spec.discrete:
        actions = np.asarray(actions)
        assert actions.dtype == np.int32 and actions.shape == (case.n_steps, case.spec.n_agents)
        assert ((actions >= 0) & (actions < case.spec.n_actions)).all()
        chosen = np.take_along_axis(avail, actions[..., None], -1)[..., 0]
        assert chosen.all(), "a sampled action was not available"


def test_episode_ends_by_horizon(jax_case):
    case = jax_case
    horizon = case.spec.horizon
    assert horizon > 0, "every env has a time limit (EnvSpec.horizon)"
    for seed in (8, 9):
        _, (_, _, next_ts) = case.rollout(jax.random.PRNGKey(seed))  # auto-resetting: several episodes
        terminated, truncated = np.asarray(next_ts.terminated), np.asarray(next_ts.truncated)
        start = 0
        for t in np.flatnonzero(terminated | truncated):
            length = t + 1 - start
            assert length <= horizon, f"an episode lasted {length} steps; horizon is {horizon}"
            if length == horizon:  # (terminated may be true as well when the last step also ends the task)
                assert truncated[t], "the time limit must be reported as truncation (truncated=True)"
            if truncated[t]:
                assert length == horizon, f"truncated after {length} steps, before the time limit {horizon}"
            start = t + 1
        assert case.n_steps - start < horizon, f"an episode ran past the horizon {horizon} without ending"
        if "tabular" in case.entry.tags:  # tabular games have no terminal states: only the time limit ends them
            assert not terminated.any()


def test_autoreset(jax_case):
    case = jax_case
    spec = case.spec
    first, (ts, actions, next_ts) = case.rollout(jax.random.PRNGKey(9))
    info = jax.device_get(next_ts.info)
    done = np.asarray(next_ts.terminated | next_ts.truncated)
    assert (info["episode_done"] == done).all()
    if spec.horizon > 0:
        assert done.any(), f"no episode ended in {case.n_steps} steps with horizon {spec.horizon}"

    # episode statistics: length = steps since the last reset, return = sum of the team reward
    reward = np.asarray(next_ts.reward[:, 0], np.float64)
    start = 0
    for t in np.flatnonzero(done):
        assert info["episode_length"][t] == t + 1 - start
        np.testing.assert_allclose(info["episode_return"][t], reward[start:t + 1].sum(), rtol=1e-5, atol=1e-4)
        start = t + 1

    # final_obs is the pre-reset observation; the obs returned is the new episode's first one
    np.testing.assert_array_equal(info["final_obs"], info["_raw_obs"])
    np.testing.assert_array_equal(info["final_state"], info["_raw_state"])
    not_done = ~done
    np.testing.assert_array_equal(np.asarray(next_ts.obs)[not_done], info["_raw_obs"][not_done])
    # the next decision is taken on the returned obs
    np.testing.assert_array_equal(np.asarray(ts.obs)[1:], np.asarray(next_ts.obs)[:-1])

    reset_keys = jax.random.split(jax.random.PRNGKey(11), 32)
    reset_obs = np.asarray(jax.vmap(case.env.reset)(reset_keys)[1].obs)
    distinct = np.unique(reset_obs.reshape(len(reset_obs), -1), axis=0)
    post_reset = np.asarray(next_ts.obs)[done]
    if len(distinct) == 1:  # deterministic start: after done, obs equals a fresh reset's obs
        for o in post_reset:
            np.testing.assert_array_equal(o, reset_obs[0])
    elif len(distinct) <= 16:  # a few possible starts: the obs after done is one of them
        for o in post_reset:
            assert (np.abs(distinct - o.reshape(-1)).max(-1) == 0).any(), "obs after a reset is not a start obs"
    # the very first obs of the wrapped env is a reset obs with zeroed statistics
    _assert_timestep(first, spec)
    assert int(first.info["episode_length"]) == 0 and float(first.info["episode_return"]) == 0.0


def test_render_gives_an_rgb_frame(case):
    """Grid and particle envs draw themselves (DESIGN.md): render(state) -> uint8 [H, W, 3].
    Only tabular games (nothing to draw) and bridges to other packages may lack a renderer."""
    if not callable(getattr(case.env, "render", None)):
        assert {"tabular", "host", "bridge"} & set(case.entry.tags), f"{case.name} has no render()"
        return
    state, ts = case.env.reset(jax.random.PRNGKey(0))
    actions = _sample_actions(jax.random.PRNGKey(1), case.spec, ts.avail_actions)
    state, _ = case.env.step(jax.random.PRNGKey(2), state, actions)
    frame = np.asarray(case.env.render(state))
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and min(frame.shape[:2]) >= 16
    assert frame.std() > 0  # not a blank image
