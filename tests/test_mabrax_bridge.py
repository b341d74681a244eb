"""The MABrax bridge (`mabrax:TASK`) presents JaxMARL's multi-agent Brax robots exactly, as stacked arrays.

Brax programs compile slowly (tens of seconds each on a laptop CPU), so the default suite checks one
task (hopper_3x1, the smallest robot); the other tasks run with `-m slow`.
"""

import builtins

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.envs.bridges.jaxmarl import quiet_brax
from coopmarl.envs.registry import ParamError

pytest.importorskip("jaxmarl", reason="the jaxmarl extra is part of the test extra")
pytest.importorskip("brax", reason="the jaxmarl extra brings brax (MABrax)")

# task -> (n_agents, obs_dim, state_dim, action_dim) under Brax 0.14
SHAPES = {
    "ant_4x2": (4, 18, 27, 2),
    "halfcheetah_6x1": (6, 9, 17, 1),
    "hopper_3x1": (3, 9, 11, 1),
    "walker2d_2x3": (2, 10, 17, 3),
    "humanoid_9|8": (2, 155, 244, 9),
}
SLOW = ("ant_4x2", "halfcheetah_6x1", "walker2d_2x3", "humanoid_9|8")
TASKS = ["hopper_3x1"] + [pytest.param(t, marks=pytest.mark.slow) for t in SLOW]


def _reference(task, **kwargs):
    """JaxMARL's own env for `task` (its defaults: Brax auto-reset on, no homogenisation)."""
    import jaxmarl

    with quiet_brax():
        return jaxmarl.make(task, **kwargs)


@pytest.mark.parametrize("task", TASKS)
def test_spec_shapes(task):
    env = coopmarl.make(f"mabrax:{task}")
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.action_dim) == SHAPES[task]
    assert not spec.discrete and (spec.low, spec.high) == (-1.0, 1.0) and spec.horizon == 1000


@pytest.mark.parametrize("task", TASKS)
def test_steps_match_jaxmarl_step_for_step(task):
    env = coopmarl.make(f"mabrax:{task}")
    ref = _reference(task)
    agents, spec = ref.agents, env.spec
    assert env.agents == agents
    key = jax.random.PRNGKey(0)
    state, ts = env.reset(key)
    ref_obs, ref_state = ref.reset(key)
    step, ref_step = jax.jit(env.step), jax.jit(ref.step_env)

    def check_obs(ts, ref_obs, ref_state):
        np.testing.assert_array_equal(ts.global_state, ref_state.obs)
        for i, a in enumerate(agents):
            kept, dropped = env.kept_obs[i], env.dropped_obs[i]
            np.testing.assert_array_equal(ts.obs[i, : len(kept)], ref_obs[a][kept])
            np.testing.assert_array_equal(ts.obs[i, len(kept):], 0.0)  # padding
            # the columns we drop are JaxMARL's reads past the end of Brax's obs: copies of its last entry
            np.testing.assert_array_equal(ref_obs[a][dropped], ref_state.obs[-1])

    check_obs(ts, ref_obs, ref_state)
    for t in range(40):
        key, k_act, k_step = jax.random.split(key, 3)
        actions = jax.random.uniform(k_act, (spec.n_agents, spec.action_dim), jnp.float32, -1.0, 1.0)
        state, ts = step(k_step, state, actions)
        ref_actions = {a: actions[i, : ref.action_spaces[a].shape[0]] for i, a in enumerate(agents)}
        ref_obs, ref_state, ref_rew, ref_done, _ = ref_step(k_step, ref_state, ref_actions)
        ref_state = jax.tree.map(lambda x: x.astype(x.dtype), ref_state)  # strong types: no second compile
        np.testing.assert_array_equal(ts.reward, np.stack([ref_rew[a] for a in agents]))
        np.testing.assert_array_equal(ts.reward, np.full(spec.n_agents, ref_rew["__all__"]))
        assert bool(ts.terminated | ts.truncated) == bool(ref_done["__all__"])
        if ref_done["__all__"]:  # JaxMARL's env has reset itself already: its obs are a new episode's
            break
        check_obs(ts, ref_obs, ref_state)
    assert t >= 5, f"the robot fell after {t + 1} steps: too few compared"


def test_dropped_columns_are_the_documented_ones():
    # JaxMARL 0.2.0's obs mappings index past Brax 0.14's observation only for these tasks
    assert [len(d) for d in coopmarl.make("mabrax:hopper_3x1").dropped_obs] == [0, 0, 0]


@pytest.mark.slow
def test_dropped_columns_of_halfcheetah_and_humanoid():
    assert sum(len(d) for d in coopmarl.make("mabrax:halfcheetah_6x1").dropped_obs) == 1
    assert sum(len(d) for d in coopmarl.make("mabrax:humanoid_9|8").dropped_obs) == 144


def test_time_limit_is_truncation_and_falling_is_termination():
    env = coopmarl.make("mabrax:hopper_3x1", episode_length=10)
    assert env.spec.horizon == 10
    step = jax.jit(env.step)
    # zero torques: the hopper stands, and the time limit cuts the episode after 10 steps
    state, ts = env.reset(jax.random.PRNGKey(0))
    for t in range(10):
        assert not bool(ts.truncated | ts.terminated)
        state, ts = step(jax.random.PRNGKey(t), state, jnp.zeros((3, 1)))
    assert bool(ts.truncated) and not bool(ts.terminated)
    # full negative torques: it falls over (Brax's unhealthy state) before the time limit
    state, ts = env.reset(jax.random.PRNGKey(0))
    for t in range(10):
        state, ts = step(jax.random.PRNGKey(t), state, -jnp.ones((3, 1)))
        if bool(ts.terminated | ts.truncated):
            break
    assert bool(ts.terminated) and not bool(ts.truncated) and t < 9


@pytest.mark.slow
def test_humanoid_ignores_the_padding_action_entry():
    """humanoid_9|8's agent 1 has 8 joints: the 9th entry of its action row does nothing."""
    env = coopmarl.make("mabrax:humanoid_9|8")
    state, _ = env.reset(jax.random.PRNGKey(1))
    a = jnp.full((2, 9), 0.3)
    step = jax.jit(env.step)
    _, ts_a = step(jax.random.PRNGKey(2), state, a)
    _, ts_b = step(jax.random.PRNGKey(2), state, a.at[1, 8].set(-0.9))
    np.testing.assert_array_equal(ts_a.global_state, ts_b.global_state)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ParamError, match=r"unknown MABrax task 'hoper_3x1'. Did you mean 'hopper_3x1'\? "
                                         r"Valid tasks: .*walker2d_2x3"):
        coopmarl.make("mabrax:hoper_3x1")


def test_missing_brax_gives_an_install_hint(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith(("brax", "jaxmarl.environments.mabrax")):
            raise ImportError("No module named 'brax'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'coopmarl\[jaxmarl\]'"):
        coopmarl.make("mabrax:hopper_3x1")
