"""coopmarl's envs in other libraries (`coopmarl.adapters`): PettingZoo, Gymnasium (vector) and JaxMARL."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.adapters import to_gymnasium, to_jaxmarl, to_pettingzoo
from coopmarl.envs.core import AutoReset, team_reward

pytest.importorskip("pettingzoo", reason="the pettingzoo extra is part of the test extra")
gymnasium = pytest.importorskip("gymnasium", reason="gymnasium comes with pettingzoo")
pytest.importorskip("jaxmarl", reason="the jaxmarl extra is part of the test extra")

from gymnasium import spaces  # noqa: E402
from gymnasium.vector import AutoresetMode, VectorEnv  # noqa: E402
from jaxmarl.environments.multi_agent_env import MultiAgentEnv  # noqa: E402
from jaxmarl.wrappers.baselines import LogWrapper  # noqa: E402
from pettingzoo import ParallelEnv  # noqa: E402
from pettingzoo.test import parallel_api_test  # noqa: E402


def _split(key):
    key, k = jax.random.split(key)
    return key, k


# ---- PettingZoo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lbf:8x8-2p-2f-coop", "predator-prey:p-2", "mpe:spread", "climbing"])
def test_pettingzoos_parallel_api_test_passes_without_warnings(name):
    par = to_pettingzoo(coopmarl.make(name), seed=0)
    assert isinstance(par, ParallelEnv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(par, num_cycles=200)
    assert not [str(w.message) for w in caught]


def test_pettingzoo_matches_the_env_step_for_step_and_masks_equal_avail_actions():
    env = coopmarl.make("lbf:8x8-2p-2f-coop", time_limit=12)
    par = to_pettingzoo(env, seed=3, render_mode="rgb_array")
    agents = ["agent_0", "agent_1"]
    assert par.possible_agents == agents and par.agents == []
    assert par.observation_space("agent_1") == spaces.Box(-np.inf, np.inf, (12,), np.float32)
    assert par.action_space("agent_0") == spaces.Discrete(6) and par.state_space.shape == (13,)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    rng = np.random.default_rng(0)

    obs, infos = par.reset()
    key, k = _split(jax.random.PRNGKey(3))
    state, ts = reset(k)
    assert par.agents == agents
    frame = par.render()  # an RGB frame of the current state
    assert par.metadata["render_modes"] == ["rgb_array"] and frame.dtype == np.uint8 and frame.shape[2] == 3
    np.testing.assert_array_equal(frame, env.render(state))
    saw_a_closed_action = False
    for t in range(12):
        for i, a in enumerate(agents):
            np.testing.assert_array_equal(obs[a], ts.obs[i])
            assert obs[a].dtype == np.float32 and par.observation_space(a).contains(obs[a])
            mask = infos[a]["action_mask"]
            assert mask.dtype == np.int8
            np.testing.assert_array_equal(mask, np.asarray(ts.avail_actions[i], np.int8))
            saw_a_closed_action |= not mask.all()
        np.testing.assert_array_equal(par.state(), ts.global_state)
        actions = {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in agents}
        obs, rewards, terms, truncs, infos = par.step(actions)
        key, k = _split(key)
        state, ts = step(k, state, jnp.array([actions[a] for a in agents], jnp.int32))
        assert rewards == {a: float(ts.reward[i]) for i, a in enumerate(agents)}
        assert terms == dict.fromkeys(agents, bool(ts.terminated))
        assert truncs == dict.fromkeys(agents, bool(ts.truncated))
        assert par.agents == ([] if ts.done else agents)
        if ts.done:
            break
    assert t == 11 and truncs == dict.fromkeys(agents, True), "the time limit ends the episode after 12 steps"
    assert saw_a_closed_action, "LBF closes moves into walls/food: the masks compared were not all-true"
    for i, a in enumerate(agents):  # the last observations come back with the ending step
        np.testing.assert_array_equal(obs[a], ts.obs[i])
    np.testing.assert_array_equal(par.render(), env.render(state))
    with pytest.raises(RuntimeError, match="reset"):
        par.step(actions)

    first, _ = par.reset(seed=3)  # re-seeding repeats the first episode
    _, ts0 = reset(jax.random.split(jax.random.PRNGKey(3))[1])
    np.testing.assert_array_equal(first["agent_0"], ts0.obs[0])


def test_pettingzoo_render_modes():
    quiet = to_pettingzoo(coopmarl.make("climbing"))
    quiet.reset()
    with pytest.warns(UserWarning, match="render_mode"):
        assert quiet.render() is None
    with pytest.raises(ValueError, match="cannot be rendered"):
        to_pettingzoo(coopmarl.make("climbing"), render_mode="rgb_array")
    with pytest.raises(ValueError, match="render_mode must be one of"):
        to_pettingzoo(coopmarl.make("climbing"), render_mode="human")


def test_pettingzoo_continuous_actions_are_boxes_clipped_into_bounds():
    env = coopmarl.make("differential")  # actions in [-10, 10], one-step episodes
    spec = env.spec
    par = to_pettingzoo(env, seed=5)
    assert par.action_space("agent_0") == spaces.Box(spec.low, spec.high, (spec.action_dim,), np.float32)
    _, infos = par.reset()
    assert infos == {"agent_0": {}, "agent_1": {}}  # no action masks for continuous actions
    _, rewards, terms, truncs, _ = par.step({"agent_0": np.array([25.0]), "agent_1": np.array([-3.0])})
    key, _ = _split(jax.random.PRNGKey(5))
    state, _ = env.reset(jax.random.split(jax.random.PRNGKey(5))[1])
    _, ts = env.step(_split(key)[1], state, jnp.array([[10.0], [-3.0]]))  # 25 clipped to high = 10
    assert rewards["agent_0"] == pytest.approx(float(ts.reward[0]))
    assert par.agents == [] and (terms["agent_0"] or truncs["agent_0"])


def test_pettingzoo_refuses_bad_actions_with_clear_errors():
    par = to_pettingzoo(coopmarl.make("climbing"))
    with pytest.raises(RuntimeError, match="reset"):
        par.step({"agent_0": 0, "agent_1": 0})
    par.reset()
    with pytest.raises(ValueError, match=r"missing \['agent_1'\]"):
        par.step({"agent_0": 0})
    with pytest.raises(ValueError, match=r"not in Discrete\(3\)"):
        par.step({"agent_0": 0, "agent_1": 3})
    with pytest.raises(ValueError, match=r"unknown \['agent_7'\]"):
        par.step({"agent_0": 0, "agent_1": 1, "agent_7": 0})


# ---- Gymnasium (vector) ----------------------------------------------------------------------------------


def test_gymnasium_vector_env_steps_vmapped_copies_with_same_step_autoreset():
    env = coopmarl.make("mpe:spread", max_steps=5)
    spec, n_envs = env.spec, 3
    vec = to_gymnasium(env, num_envs=n_envs, seed=7)
    assert isinstance(vec, VectorEnv) and vec.num_envs == n_envs
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert vec.single_observation_space == spaces.Box(-np.inf, np.inf, (3, 18), np.float32)
    assert vec.single_action_space == spaces.MultiDiscrete([5, 5, 5])
    assert vec.observation_space.shape == (n_envs, 3, 18) and vec.action_space.shape == (n_envs, 3)
    vec.action_space.seed(0)

    # the reference: each copy stepped alone, with the keys the adapter documents (AutoReset's split per step)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    split_each = jax.jit(lambda keys: tuple(jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)))
    key, k = _split(jax.random.PRNGKey(7))
    states, tss = zip(*(reset(kk) for kk in jax.random.split(k, n_envs)))
    states, tss = list(states), list(tss)

    obs, infos = vec.reset()
    returns = np.zeros(n_envs)
    for t in range(11):
        assert obs.shape == (n_envs, 3, 18) and obs.dtype == np.float32 and vec.observation_space.contains(obs)
        np.testing.assert_allclose(obs, np.stack([ts.obs for ts in tss]), atol=1e-5)
        np.testing.assert_array_equal(infos["action_mask"], np.stack([ts.avail_actions for ts in tss]))
        assert infos["global_state"].shape == (n_envs, spec.state_dim)
        actions = vec.action_space.sample()
        obs, reward, terminated, truncated, infos = vec.step(actions)
        assert reward.shape == terminated.shape == truncated.shape == (n_envs,)
        assert reward.dtype == np.float32 and terminated.dtype == truncated.dtype == np.bool_

        key, k = _split(key)
        ended = t % 5 == 4  # every copy's time limit ends it after 5 steps; MPE never terminates
        assert not terminated.any() and list(truncated) == [ended] * n_envs
        step_keys, reset_keys = split_each(jax.random.split(k, n_envs))
        for i in range(n_envs):
            states[i], ts = step(step_keys[i], states[i], jnp.asarray(actions[i], jnp.int32))
            team = float(team_reward(spec, ts.reward))
            assert reward[i] == pytest.approx(team, abs=1e-5)
            returns[i] += team
            if ts.done:  # the step returns the new episode's first observation, the last one in infos
                assert infos["_final_obs"][i] and infos["_final_info"][i]
                np.testing.assert_allclose(infos["final_obs"][i], ts.obs, atol=1e-5)
                np.testing.assert_allclose(infos["final_info"]["global_state"][i], ts.global_state, atol=1e-5)
                assert infos["final_info"]["episode_length"][i] == 5
                assert infos["final_info"]["episode_return"][i] == pytest.approx(returns[i], abs=1e-4)
                returns[i] = 0.0
                states[i], ts = reset(reset_keys[i])
            tss[i] = ts
        if not ended:
            assert "final_obs" not in infos

    first, _ = vec.reset(seed=7)  # re-seeding repeats the first episodes
    np.testing.assert_array_equal(first, vec.reset(seed=7)[0])


def test_gymnasium_refuses_bad_actions_and_arguments():
    vec = to_gymnasium(coopmarl.make("climbing"), num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros((2, 2), int))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        vec.step(np.zeros(2, int))
    with pytest.raises(ValueError, match=r"ints in \[0, 3\)"):
        vec.step(np.array([[0, 3], [1, 1]]))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_envs must be an int >= 1"):
            to_gymnasium(coopmarl.make("climbing"), num_envs=bad)


# ---- JaxMARL ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, params", [("lbf:8x8-2p-2f-coop", {"time_limit": 10}),
                                          ("mpe:spread", {"max_steps": 10})])
def test_jaxmarls_log_wrapper_runs_a_jitted_masked_rollout_that_matches_the_env(name, params):
    env = coopmarl.make(name, **params)
    spec, steps = env.spec, 50
    adapted = to_jaxmarl(env)
    assert isinstance(adapted, MultiAgentEnv) and adapted.num_agents == spec.n_agents
    assert adapted.agents == [f"agent_{i}" for i in range(spec.n_agents)]
    assert adapted.observation_space("agent_0").shape == (spec.obs_dim,)
    assert adapted.action_space("agent_1").n == spec.n_actions
    wrapped = LogWrapper(adapted)

    def masked_random(key, avail):  # avail: bool [N, n_actions]
        return jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf), axis=-1)

    @jax.jit
    def rollout(key):
        key, k = _split(key)
        obs, state = wrapped.reset(k)

        def body(state, key):
            k_act, k_env = jax.random.split(key)
            avail = wrapped.get_avail_actions(state.env_state)
            avail = jnp.stack([avail[a] for a in wrapped.agents])
            actions = masked_random(k_act, avail)
            obs, state, reward, dones, info = wrapped.step(k_env, state, dict(zip(wrapped.agents, actions)))
            ok = avail[jnp.arange(spec.n_agents), actions].all()
            return state, (jnp.stack([reward[a] for a in wrapped.agents]), dones["__all__"],
                           info["returned_episode_returns"], info["returned_episode"], ok)

        _, out = jax.lax.scan(body, state, jax.random.split(key, steps))
        return out

    rewards, done_all, episode_returns, returned, respected = jax.device_get(rollout(jax.random.PRNGKey(11)))
    assert respected.all(), "the rollout's actions were not all available"

    # the reference: the coopmarl env itself, with JaxMARL's key use (step_env gets key, reset gets k_reset)
    reset, step, act = jax.jit(env.reset), jax.jit(env.step), jax.jit(masked_random)
    key, k = _split(jax.random.PRNGKey(11))
    state, ts = reset(k)
    running = np.zeros(spec.n_agents)
    ends = []
    k_act, k_env = jnp.moveaxis(jax.vmap(jax.random.split)(jax.random.split(key, steps)), 1, 0)
    k_step, k_reset = jnp.moveaxis(jax.vmap(jax.random.split)(k_env), 1, 0)
    for t in range(steps):
        state, ts = step(k_step[t], state, act(k_act[t], ts.avail_actions))
        np.testing.assert_allclose(rewards[t], ts.reward, atol=1e-5)
        assert bool(done_all[t]) == bool(ts.done) and returned[t].all() == bool(ts.done)
        running += np.asarray(ts.reward)
        if ts.done:
            ends.append(t)
            np.testing.assert_allclose(episode_returns[t], running, atol=1e-4)
            running[:] = 0.0
            state, ts = reset(k_reset[t])
    assert np.isfinite(episode_returns).all() and len(ends) >= 4
    if name == "mpe:spread":  # only the time limit ends MPE episodes; their (dense) returns are not zero
        assert ends == [9, 19, 29, 39, 49] and (episode_returns[ends] != 0).all()


def test_jaxmarl_infos_are_per_agent_and_split_terminated_from_truncated():
    adapted = to_jaxmarl(coopmarl.make("climbing", horizon=2))
    obs, state = adapted.reset(jax.random.PRNGKey(0))
    assert set(obs) == {"agent_0", "agent_1"} and adapted.world_state(state).shape == (1,)
    actions = {"agent_0": jnp.int32(0), "agent_1": jnp.int32(0)}  # (A, A): 11, the optimum
    _, state, rewards, dones, infos = adapted.step_env(jax.random.PRNGKey(1), state, actions)
    assert float(rewards["agent_0"]) == 11.0 and not bool(dones["__all__"]) and int(state.step) == 1
    assert all(v.shape[0] == 2 for v in jax.tree.leaves(infos))  # one entry per agent
    _, state, _, dones, infos = adapted.step_env(jax.random.PRNGKey(2), state, actions)
    assert bool(dones["__all__"]) and bool(dones["agent_1"]) and bool(state.done)
    assert bool(infos["terminated"].any()) != bool(infos["truncated"].any())


# ---- bad input and the package root ----------------------------------------------------------------------


@pytest.mark.parametrize("adapter", [to_pettingzoo, to_gymnasium, to_jaxmarl])
def test_adapters_refuse_what_is_not_a_jax_coopmarl_env(adapter):
    name = adapter.__name__
    with pytest.raises(TypeError, match=rf"{name} needs a coopmarl environment object.*coopmarl.make\('climbing'\)"):
        adapter("climbing")
    with pytest.raises(TypeError, match=rf"{name} needs a coopmarl environment .*EnvSpec.*got dict"):
        adapter({"spec": None})
    with pytest.raises(ValueError, match="not AutoReset"):
        adapter(AutoReset(coopmarl.make("climbing")))
    pytest.importorskip("mpe2")
    with pytest.raises(ValueError, match="host env"):
        adapter(coopmarl.make("pettingzoo:mpe2.simple_spread_v3"))


def test_seeds_must_be_ints_and_the_package_root_exports_the_adapters():
    with pytest.raises(TypeError, match="seed must be an int"):
        to_pettingzoo(coopmarl.make("climbing"), seed="0")
    with pytest.raises(TypeError, match="seed must be an int"):
        to_gymnasium(coopmarl.make("climbing"), seed=1.5)
    assert coopmarl.to_pettingzoo is to_pettingzoo and coopmarl.to_gymnasium is to_gymnasium
    assert coopmarl.to_jaxmarl is to_jaxmarl and {"to_pettingzoo", "to_jaxmarl"} <= set(dir(coopmarl))
