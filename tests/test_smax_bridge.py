"""The SMAX bridge (`smax:MAP`) presents JaxMARL's HeuristicEnemySMAX exactly, as stacked arrays."""

import builtins

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.envs.registry import ParamError

jaxmarl = pytest.importorskip("jaxmarl", reason="the jaxmarl extra is part of the test extra")


def test_paper_maps_build_with_the_right_team_sizes():
    for name, allies in [("2s3z", 5), ("3s5z", 8), ("8m", 8), ("5m_vs_6m", 5), ("3s_vs_5z", 3), ("6h_vs_8z", 6)]:
        spec = coopmarl.make(f"smax:{name}").spec
        assert spec.n_agents == allies and spec.discrete and spec.horizon == 101, name


def test_steps_match_jaxmarl_step_for_step():
    env = coopmarl.make("smax:2s3z")
    ref = env.env  # the JaxMARL env it wraps
    key = jax.random.PRNGKey(0)
    state, ts = env.reset(key)
    ref_obs, ref_state = ref.reset(key)
    step, ref_step = jax.jit(env.step), jax.jit(ref.step_env)
    for t in range(60):
        key, k_act, k_step = jax.random.split(key, 3)
        actions = jax.random.categorical(k_act, jnp.where(ts.avail_actions, 0.0, -jnp.inf)).astype(jnp.int32)
        state, ts = step(k_step, state, actions)
        ref_obs, ref_state, ref_rew, ref_done, _ = ref_step(k_step, ref_state, {a: actions[i] for i, a in enumerate(ref.agents)})
        np.testing.assert_array_equal(ts.obs, np.stack([ref_obs[a] for a in ref.agents]))
        np.testing.assert_array_equal(ts.global_state, ref_obs["world_state"])
        np.testing.assert_array_equal(ts.reward, np.stack([ref_rew[a] for a in ref.agents]))
        avail = ref.get_avail_actions(ref_state)
        np.testing.assert_array_equal(ts.avail_actions, np.stack([avail[a] for a in ref.agents]))
        assert bool(ts.terminated | ts.truncated) == bool(ref_done["__all__"])
        if ref_done["__all__"]:
            break


def test_time_limit_is_truncation_not_termination():
    """JaxMARL checks `step >= max_steps` before counting the step: max_steps + 1 steps in all."""
    env = coopmarl.make("smax:3m", max_steps=4)
    assert env.spec.horizon == 5
    state, ts = env.reset(jax.random.PRNGKey(3))
    stop = jnp.full((3,), 4, jnp.int32)  # action 4 = stop (no move, no attack): nobody dies
    for t in range(5):
        assert not bool(ts.truncated | ts.terminated)
        state, ts = env.step(jax.random.PRNGKey(t), state, stop)
    assert bool(ts.truncated) and not bool(ts.terminated)


def test_unknown_map_lists_the_valid_ones():
    with pytest.raises(ParamError, match="unknown SMAX map '2s3zz'. Valid maps: .*2s3z"):
        coopmarl.make("smax:2s3zz")


def test_missing_jaxmarl_gives_an_install_hint(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("jaxmarl"):
            raise ImportError("No module named 'jaxmarl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'coopmarl\[jaxmarl\]'"):
        coopmarl.make("smax:3m")
