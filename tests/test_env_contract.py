"""The environment contract (DESIGN.md, "Environment contract"), checked for EVERY registered env.

The suite is parametrised over `coopmarl.list_envs()`, so an environment registered later is tested
automatically with its default parameters. Two tables below say how to build an env when the
defaults do not suit a test:

- `SMALL_PARAMS`: keyword arguments that make an env small enough for a fast test;
- `PREFIX_ARGS`: the text after "name:" for prefix families (`tabular:PATH`, ...). A new prefix family
  without an entry here fails `test_env_builds` with a message saying where to add one.

Envs tagged "host" (non-JAX bridges, run from a Python loop) are only checked for their spec and
for one reset/step through the host API (`ts = env.reset(seed)`, `ts = env.step(actions)`), not jitted.

The checks themselves are `coopmarl.envs.check`'s (what `coopmarl check-env` runs on a user's env); this
suite applies them to every registered env, sharing each env's compiled programs between tests.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.envs import check
from coopmarl.envs.core import EnvSpec

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


def _one_step(env, key):
    """reset, then one step with random available actions: (ts after reset, ts after the step)."""
    _, ts0, _, ts1 = check.one_step(env, key)
    return ts0, ts1


def _one_step_host(env, key):
    """The same through the host API (numpy, no explicit state): the env is seeded from the key."""
    k_reset, k_act = jax.random.split(key)
    ts0 = env.reset(int(jax.random.randint(k_reset, (), 0, 2**31 - 1)))
    actions = np.asarray(check.sample_actions(k_act, env.spec, jnp.asarray(ts0.avail_actions)))
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
            self._rollout = jax.jit(partial(check.autoreset_rollout, self.env, n_steps=self.n_steps))
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


def _assert_timestep(ts, spec: EnvSpec, batch=()):
    """Shapes and dtypes against the spec, and finite obs, global_state and reward."""
    problems = check.timestep_problems(ts, spec, batch) + check.nonfinite_problems(ts)
    assert not problems, problems


# ---- spec --------------------------------------------------------------------------------------------


def test_env_builds(case):
    assert isinstance(case.spec, EnvSpec)
    assert hasattr(case.env, "reset") and hasattr(case.env, "step")


def test_spec_fields_consistent(case):
    spec = case.spec
    assert spec.name.startswith(case.entry.name), (spec.name, case.entry.name)
    assert not check.spec_problems(case.env), check.spec_problems(case.env)
    assert isinstance(spec.horizon, int)
    # the team reward's scalarisation the registry lists (`coopmarl list envs`) is the built env's (defaults)
    assert case.entry.reward_scalarisation.split(" ", 1)[0] == spec.reward_scalarisation, (
        case.entry.reward_scalarisation, spec.reward_scalarisation)
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
    assert not check.mask_problems(ts0.avail_actions), "every agent needs at least one available action"
    _assert_timestep(ts1, spec)
    # a "shared" env repeats the team reward for every agent (every env here is, with its defaults)
    assert spec.reward_scalarisation == "shared"
    assert not check.team_reward_problems(spec, ts1.reward), check.team_reward_problems(spec, ts1.reward)


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
    # shapes only (abstract evaluation: no compilation), also under AutoReset, whose final_* keys are there
    problems = check.info_structure_problems(jax_case.env)
    assert not problems, problems


# ---- trajectories ----------------------------------------------------------------------------------------


def test_determinism_under_fixed_key(jax_case):
    case = jax_case
    key = jax.random.PRNGKey(42)
    out_a = jax.device_get(case.rollout(key))
    out_b = jax.device_get(case.rollout(key))
    assert not check.trajectory_differences(out_a, out_b)
    # a different key gives a different action sequence (the env really uses its key)
    out_c = jax.device_get(case.rollout(jax.random.PRNGKey(43)))
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_c)))


def test_actions_respect_avail_actions(jax_case):
    case = jax_case
    _, (ts, actions, next_ts) = case.rollout(jax.random.PRNGKey(7))
    avail = np.asarray(ts.avail_actions)
    assert not check.mask_problems(avail), "every agent needs at least one available action at every step"
    assert not check.mask_problems(next_ts.avail_actions)
    if case.spec.discrete:
        actions = np.asarray(actions)
        assert actions.dtype == np.int32 and actions.shape == (case.n_steps, case.spec.n_agents)
        assert ((actions >= 0) & (actions < case.spec.n_actions)).all()
        chosen = np.take_along_axis(avail, actions[..., None], -1)[..., 0]
        assert chosen.all(), "a sampled action was not available"


def test_episode_ends_by_horizon(jax_case):
    case = jax_case
    assert case.spec.horizon > 0, "every env has a time limit (EnvSpec.horizon)"
    for seed in (8, 9):
        _, (_, _, next_ts) = case.rollout(jax.random.PRNGKey(seed))  # auto-resetting: several episodes
        # (terminated may be true as well when the last step also ends the task; tabular games have no
        # terminal states: only the time limit ends them)
        problems = check.time_limit_problems(case.spec, next_ts.terminated, next_ts.truncated, case.n_steps,
                                             tabular="tabular" in case.entry.tags)
        assert not problems, problems


def test_autoreset(jax_case):
    case = jax_case
    spec = case.spec
    first, seq = jax.device_get(case.rollout(jax.random.PRNGKey(9)))
    next_ts = seq[2]
    done = np.asarray(next_ts.terminated | next_ts.truncated)
    if spec.horizon > 0:
        assert done.any(), f"no episode ended in {case.n_steps} steps with horizon {spec.horizon}"
    # episode_done/length/return (the sum of team_reward), final_obs/final_state/final_avail_actions = the
    # finished step's own, the obs after an episode end = a start obs, zeroed statistics at first
    problems = check.autoreset_problems(case.env, first, seq)
    assert not problems, problems
    _assert_timestep(first, spec)


def test_render_gives_an_rgb_frame(case):
    """Grid and particle envs draw themselves (DESIGN.md): render(state) -> uint8 [H, W, 3].
    Only tabular games (nothing to draw) and bridges to other packages may lack a renderer."""
    if not callable(getattr(case.env, "render", None)):
        assert {"tabular", "host", "bridge"} & set(case.entry.tags), f"{case.name} has no render()"
        return
    state, ts = case.env.reset(jax.random.PRNGKey(0))
    actions = check.sample_actions(jax.random.PRNGKey(1), case.spec, ts.avail_actions)
    state, _ = case.env.step(jax.random.PRNGKey(2), state, actions)
    problems = check.render_problems(case.env, state)  # uint8 [H >= 16, W >= 16, 3], not blank
    assert not problems, problems
