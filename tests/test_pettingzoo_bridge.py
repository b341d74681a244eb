"""The PettingZoo host bridge (`pettingzoo:MODULE`) and the runner's host path (`host_runner.train_host`)."""

import builtins
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.algos.base import Algorithm, get_algo
from coopmarl.config import build_config, resolve
from coopmarl.envs.registry import ParamError, env_entry
from coopmarl.runner import RunConfig, train

pytest.importorskip("pettingzoo", reason="the pettingzoo extra is part of the test extra")
simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3", reason="mpe2 is part of the test extra")

SPREAD = "pettingzoo:mpe2.simple_spread_v3"


# ---- the bridge ---------------------------------------------------------------------------------------


def test_make_gives_a_host_env_with_the_right_spec():
    env = coopmarl.make(SPREAD)
    spec = env.spec
    assert env.host is True and "host" in env_entry(SPREAD).tags
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions, spec.horizon) == (3, 18, 54, 5, 25)
    assert spec.discrete and spec.name == SPREAD
    env = coopmarl.make(SPREAD, kwargs={"N": 2, "continuous_actions": True, "max_cycles": 7})
    assert (env.spec.n_agents, env.spec.action_kind, env.spec.action_dim, env.spec.horizon) == (2, "continuous", 5, 7)
    assert (env.spec.low, env.spec.high) == (0.0, 1.0)


@pytest.mark.parametrize("kwargs", [{}, {"N": 2, "continuous_actions": True, "local_ratio": 0.8}])
def test_an_episode_matches_mpe2_step_for_step(kwargs):
    env = coopmarl.make(SPREAD, kwargs=kwargs)
    ref = simple_spread_v3.parallel_env(**kwargs)
    spec, agents = env.spec, ref.possible_agents
    rng = np.random.default_rng(0)
    for seed in (3, None):  # a seeded episode, then one continuing the env's own random stream
        ts = env.reset(seed)
        ref_obs, _ = ref.reset(seed=seed)
        for t in range(spec.horizon):
            np.testing.assert_array_equal(ts.obs, np.stack([ref_obs[a] for a in agents]))
            np.testing.assert_array_equal(ts.global_state, ref.state())
            assert ts.avail_actions.shape == (spec.n_agents, spec.n_actions if spec.discrete else 1)
            assert ts.avail_actions.all()  # MPE has no action masks
            if spec.discrete:
                actions = rng.integers(0, spec.n_actions, spec.n_agents)
                ref_actions = {a: int(actions[i]) for i, a in enumerate(agents)}
            else:
                actions = rng.uniform(0.0, 1.0, (spec.n_agents, spec.action_dim)).astype(np.float32)
                ref_actions = {a: actions[i] for i, a in enumerate(agents)}
            ts = env.step(actions)
            ref_obs, ref_rew, ref_term, ref_trunc, _ = ref.step(ref_actions)
            rewards = np.array([ref_rew[a] for a in agents], np.float32)
            np.testing.assert_array_equal(ts.info["agent_rewards"], rewards)
            np.testing.assert_allclose(ts.reward, np.full(spec.n_agents, rewards.mean()), rtol=1e-6)  # team = mean
            assert bool(ts.terminated) == all(ref_term.values())
            assert bool(ts.truncated) == all(ref_trunc.values())
            if t < spec.horizon - 1:
                assert not (ts.terminated or ts.truncated)
        # the time limit (max_cycles) is truncation, not termination; the final obs is returned
        assert bool(ts.truncated) and not bool(ts.terminated)
        np.testing.assert_array_equal(ts.obs, np.stack([ref_obs[a] for a in agents]))


def test_timestep_dtypes_and_shapes():
    env = coopmarl.make(SPREAD)
    env.reset(1)
    ts = env.step(np.zeros(3, np.int32))
    assert ts.obs.dtype == np.float32 and ts.global_state.dtype == np.float32 and ts.reward.dtype == np.float32
    assert ts.avail_actions.dtype == bool and ts.terminated.shape == () and ts.truncated.shape == ()
    assert ts.terminated.dtype == bool and ts.truncated.dtype == bool


def test_kwargs_from_the_command_line_are_converted():
    env = coopmarl.make(SPREAD, kwargs="N=2,max_cycles=10,local_ratio=0.25")
    assert env.kwargs == {"N": 2, "max_cycles": 10, "local_ratio": 0.25}
    assert env.spec.n_agents == 2 and env.spec.horizon == 10
    assert coopmarl.make(SPREAD, kwargs="{N: 2, max_cycles: 10}").spec.horizon == 10
    # the spec's params rebuild the same env
    assert coopmarl.make(SPREAD, **dict(env.spec.params)).spec == env.spec


def test_a_bad_module_name_is_a_clear_error():
    with pytest.raises(ParamError, match=r"cannot import PettingZoo module 'mpe2.simple_sprd_v3'.*"
                                         r"Did you mean 'mpe2.simple_spread_v3'\?"):
        coopmarl.make("pettingzoo:mpe2.simple_sprd_v3")
    with pytest.raises(ParamError, match=r"module 'mpe2' has no parallel_env\(\)"):
        coopmarl.make("pettingzoo:mpe2")
    with pytest.raises(ParamError, match="is not a Python module name"):
        coopmarl.make("pettingzoo:mpe2/simple_spread_v3")
    with pytest.raises(ImportError, match="no package named 'not_a_package_xyz' is installed"):
        coopmarl.make("pettingzoo:not_a_package_xyz.env_v0")


def test_an_unknown_kwarg_is_a_clear_error():
    with pytest.raises(ParamError, match=r"unknown parameter 'n' for PettingZoo env 'mpe2.simple_spread_v3'. "
                                         r"Did you mean 'N'\? Its parameters: N, local_ratio, max_cycles"):
        coopmarl.make(SPREAD, kwargs={"n": 2})
    with pytest.raises(ParamError, match="parameter 'N' must be of type int, got 'two'"):
        coopmarl.make(SPREAD, kwargs="N=two")
    with pytest.raises(ParamError, match="is not name=value"):
        coopmarl.make(SPREAD, kwargs="N")


def test_missing_pettingzoo_gives_an_install_hint(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pettingzoo"):
            raise ImportError("No module named 'pettingzoo'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'coopmarl\[pettingzoo\]'"):
        coopmarl.make(SPREAD)


def test_config_resolution_passes_env_kwargs_through():
    resolved = resolve("iql", SPREAD, ["env.kwargs=N=2,max_cycles=10", "n_envs=2"])
    assert resolved.env.spec.n_agents == 2 and resolved.env.spec.horizon == 10
    assert resolved.as_dict()["env"] == {"name": SPREAD, "kwargs": [["N", 2], ["max_cycles", 10]]}


# ---- the runner's host path ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeConfig:
    rollout_length: int = 10  # does not divide the horizon (25): episodes cross iterations
    n_envs: int = 3


def _probe_init(key, spec, config, model=None):
    return {"updates": jnp.int32(0)}


def _probe_act(train_state, obs, avail, key, *, carry, explore, config):
    """Uniform random available actions (explore) or action 0 (greedy); the carry counts the
    steps since the episode started."""
    logits = jnp.where(avail, 0.0, -jnp.inf)
    actions = jax.random.categorical(key, logits, axis=-1).astype(jnp.int32) if explore else jnp.zeros(
        obs.shape[0], jnp.int32)
    return actions, carry + 1


def _probe_update(train_state, data, key, *, config):
    """Checks the Transition batch the runner collected; each metric is 1.0 when the check holds."""
    done = data.done
    steps = data.agent_carry[..., 0, 0]  # [T, E] steps since the episode started, before acting
    cont = ~done[:-1]
    restart = jnp.where(done[:-1], steps[1:] == 0, steps[1:] == steps[:-1] + 1)
    same_next = jnp.all(data.next_obs[:-1] == data.obs[1:], axis=(-1, -2)) | done[:-1]
    # within an episode the next mask is the next decision's (at an end: the final step's, tests/test_team_return.py)
    same_avail = jnp.all((data.next_avail_actions[:-1] == data.avail_actions[1:]) | done[:-1, :, None, None])
    metrics = {
        "carry_restarts": jnp.all(restart).astype(jnp.float32),
        "next_obs_ok": jnp.all(same_next | ~cont).astype(jnp.float32),
        "next_avail_ok": same_avail.astype(jnp.float32),
        # at an episode end next_obs is the final obs, not the new episode's first (MPE starts at random)
        "final_obs_kept": jnp.all(jnp.where(done[:-1], jnp.any(data.next_obs[:-1] != data.obs[1:], axis=(-1, -2)),
                                            True)).astype(jnp.float32),
        # MPE's state() is the agents' observations concatenated
        "next_state_ok": jnp.all(data.next_global_state == data.next_obs.reshape(data.next_obs.shape[:2] + (-1,))
                                 ).astype(jnp.float32),
        "last_step_is_25th": jnp.all(jnp.where(done, steps == 24, True)).astype(jnp.float32),
        "truncated_not_terminated": jnp.all(done == data.truncated).astype(jnp.float32)
        * (1.0 - jnp.any(data.terminated)),
        "team_reward": jnp.all(data.reward == data.reward[..., :1]).astype(jnp.float32),
        "shapes_ok": jnp.float32(data.obs.shape == (10, 3, 3, 18) and data.actions.shape == (10, 3, 3)
                                 and data.actions.dtype == jnp.int32 and data.global_state.shape == (10, 3, 54)),
    }
    return {"updates": train_state["updates"] + 1}, metrics


PROBE = Algorithm(
    name="probe", description="random policy that checks the collected batches", config_cls=ProbeConfig,
    init=_probe_init, act=_probe_act, update=_probe_update,
    initial_carry=lambda spec, config: jnp.zeros((spec.n_agents, 1), jnp.int32),
)


def test_host_batches_are_collected_like_the_compiled_runner():
    env = coopmarl.make(SPREAD)
    run = RunConfig(total_steps=300, log_points=3, eval_episodes=4, n_seeds=2)
    result = train(PROBE, env, ProbeConfig(), run, progress=False)
    assert list(result.steps) == [120, 240, 360]  # 300 steps = 10 iterations of 30, in 3 chunks of 4 (rounded up)
    for name in ("carry_restarts", "next_obs_ok", "next_avail_ok", "final_obs_kept", "next_state_ok",
                 "last_step_is_25th", "truncated_not_terminated", "team_reward", "shapes_ok"):
        np.testing.assert_array_equal(result.metrics[name], 1.0, err_msg=name)
    assert result.metrics["train_return"].shape == (3, 2) and np.isfinite(result.metrics["train_return"]).all()
    assert np.isfinite(result.metrics["eval_return"]).all()
    np.testing.assert_array_equal(result.train_state["updates"], [12, 12])


def test_train_host_runs_iql_end_to_end():
    """A real learner (IQL, recurrent GRU agents) through `runner.train`'s host dispatch; seeds are
    independent and reproducible: seed 1 alone gives the same curves as seed 1 next to seed 0."""
    env = coopmarl.make(SPREAD)
    algo = get_algo("iql")
    config = build_config(algo.config_cls, dict(n_envs=2, buffer_size=50, batch_size=4, hidden_sizes=(16,)), "iql")
    chunks = []
    result = train(algo, env, config, RunConfig(total_steps=300, log_points=3, eval_episodes=3, n_seeds=2),
                   on_chunk=lambda c, step, m: chunks.append((c, step, m)), progress=False)
    assert result.steps.shape == (3,) and result.steps[-1] >= 300
    assert result.seeds == [0, 1] and [c for c, _, _ in chunks] == [0, 1, 2]
    for name in ("train_return", "eval_return", "loss"):
        assert result.metrics[name].shape == (3, 2), name
        assert np.isfinite(result.metrics[name]).all(), name
    assert jax.tree.leaves(result.train_state)[0].shape[0] == 2
    again = train(algo, coopmarl.make(SPREAD), config, RunConfig(total_steps=300, log_points=3, eval_episodes=3,
                                                                 seed=1), progress=False)
    for name in ("train_return", "eval_return", "loss"):
        np.testing.assert_allclose(again.metrics[name][:, 0], result.metrics[name][:, 1], rtol=1e-5, err_msg=name)
