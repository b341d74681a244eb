"""Returns are the team's: every logged return (AutoReset's training episodes, rollout evaluation, the host
runner) sums `team_reward(spec, reward)`, the env's declared scalarisation of its per-agent rewards — e.g.
LBF with `common_reward=False` sums the agents' rewards (EPyMARL) instead of taking agent 0's. And at an
episode's end the mask to bootstrap with is the final step's (`final_avail_actions`; the host runner's
`next_avail_actions`), not the next episode's first."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.algos.base import Algorithm
from coopmarl.envs.check import Recording
from coopmarl.envs.core import AutoReset, EnvSpec, TimeStep, team_reward
from coopmarl.errors import Diverged

LBF = "lbf:10x10-3p-3f"
LOAD = 5


def test_team_reward_follows_the_declared_scalarisation():
    reward = jnp.array([[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]])
    make = partial(EnvSpec, name="t", n_agents=3, obs_dim=1, state_dim=1, action_kind="discrete", n_actions=2)
    np.testing.assert_allclose(team_reward(make(), reward), [1.0, 0.0])  # "shared": the default
    np.testing.assert_allclose(team_reward(make(reward_scalarisation="sum"), reward), [7.0, 3.0])
    np.testing.assert_allclose(team_reward(make(reward_scalarisation="mean"), np.asarray(reward)), [7 / 3, 1.0])
    with pytest.raises(ValueError, match="reward_scalarisation must be one of 'shared', 'sum', 'mean'"):
        make(reward_scalarisation="max")


def test_every_env_family_declares_its_scalarisation():
    assert coopmarl.make(LBF).spec.reward_scalarisation == "shared"  # every agent gets the sum already
    assert coopmarl.make(LBF, common_reward=False).spec.reward_scalarisation == "sum"
    assert coopmarl.make("foraging", common_reward="false").spec.reward_scalarisation == "sum"
    for name in ("climbing", "differential", "mpe:spread", "predator-prey"):
        assert coopmarl.make(name).spec.reward_scalarisation == "shared", name
    entries = {e.name: e.reward_scalarisation for e in coopmarl.list_envs()}
    assert entries[LBF] == "shared (common_reward=false: sum)" and entries["smax"] == "shared"


def _loader(key, spec, avail):
    """Random available actions, but LOAD whenever it is available (so that food gets collected)."""
    k = jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf), axis=-1).astype(jnp.int32)
    return jnp.where(avail[:, LOAD], LOAD, k)


def test_autoreset_episode_return_is_the_sum_of_the_agents_rewards():
    env = coopmarl.make(LBF, common_reward=False)
    wrapped = AutoReset(Recording(env))

    @jax.jit
    def rollout(key):
        state, ts = wrapped.reset(key)

        def body(c, k):
            state, ts = c
            k_act, k_env = jax.random.split(k)
            state, nts = wrapped.step(k_env, state, _loader(k_act, env.spec, ts.avail_actions))
            return (state, nts), nts

        return jax.lax.scan(body, (state, ts), jax.random.split(key, 400))[1]

    ts = jax.device_get(rollout(jax.random.PRNGKey(0)))
    done = ts.terminated | ts.truncated
    per_agent = ts.info["agent_reward"]  # lbforaging's per-agent rewards [T, N]
    np.testing.assert_array_equal(ts.reward, per_agent)
    start, agent0_differs = 0, False
    for t in np.flatnonzero(done):
        episode = per_agent[start:t + 1]
        np.testing.assert_allclose(ts.info["episode_return"][t], episode.sum(), rtol=1e-6)
        agent0_differs |= not np.isclose(episode[:, 0].sum(), episode.sum())
        start = t + 1
    assert done.sum() >= 7 and agent0_differs  # (agent 0's return, the old log, differs from the team's)
    # the final mask is the finished step's own, not the new episode's first
    np.testing.assert_array_equal(ts.info["final_avail_actions"], ts.info["_raw_avail"])
    assert (ts.info["final_avail_actions"][done] != ts.avail_actions[done]).any()


# ---- a training run: train_return and eval_return are team returns ---------------------------------------


@dataclass(frozen=True)
class LoaderConfig:
    rollout_length: int = 10
    n_envs: int = 4


LOADER = Algorithm(
    name="loader", description="random available actions, LOAD when available; learns nothing",
    config_cls=LoaderConfig, init=lambda key, spec, config, model=None: {"n": jnp.int32(0)},
    act=lambda state, obs, avail, key, *, explore, config: _loader(key, None, avail),
    update=lambda state, data, key, *, config: ({"n": state["n"] + 1}, {"team_reward_seen": jnp.sum(data.reward)}),
)


def test_training_returns_on_lbf_with_individual_rewards_are_team_returns():
    """The same actions (the loader ignores rewards) on LBF with per-agent rewards and with the common reward
    (every agent gets the sum of the agents' rewards): the team returns logged must be the same."""
    run = coopmarl.RunConfig(total_steps=800, log_points=2, eval_episodes=8, n_seeds=2)
    results = {common: coopmarl.train(LOADER, coopmarl.make(LBF, common_reward=common), LoaderConfig(), run,
                                      progress=False) for common in (True, False)}
    for name in ("train_return", "eval_return"):
        summed, common = results[False].metrics[name], results[True].metrics[name]
        np.testing.assert_allclose(summed, common, rtol=1e-5, err_msg=name)
        assert np.isfinite(summed).all() and (summed > 0).any(), (name, summed)


# ---- the host runner ----------------------------------------------------------------------------------------


class Countdown:
    """A host env: 2 agents, 3 actions, 4 steps per episode; agent i gets reward i + 1 every step (the team's
    is their sum, 3, so an episode returns 12 while agent 0's is 4); after t steps only action t % 3 is
    available, so an episode's final mask (action 1) differs from the next episode's first (action 0)."""

    host = True

    def __init__(self):
        self.spec = EnvSpec(name="countdown", n_agents=2, obs_dim=1, state_dim=1, action_kind="discrete",
                            n_actions=3, horizon=4, reward_scalarisation="sum")
        self.t = 0

    def clone(self):
        return Countdown()

    def _ts(self, reward, done):
        avail = np.zeros((2, 3), bool)
        avail[:, self.t % 3] = True
        return TimeStep(obs=np.full((2, 1), self.t, np.float32), global_state=np.array([self.t], np.float32),
                        avail_actions=avail, reward=np.asarray(reward, np.float32), terminated=np.asarray(False),
                        truncated=np.asarray(done), info={})

    def reset(self, seed=None):
        self.t = 0
        return self._ts([0.0, 0.0], False)

    def step(self, actions):
        assert (np.asarray(actions) == self.t % 3).all(), "an unavailable action was taken"
        self.t += 1
        return self._ts([1.0, 2.0], self.t >= 4)


@dataclass(frozen=True)
class MaskProbeConfig:
    rollout_length: int = 3  # does not divide the horizon (4): episodes cross iterations
    n_envs: int = 2


def _mask_probe_update(state, data, key, *, config):
    done = data.done  # [T, E]
    final_mask = jnp.zeros(3, bool).at[1].set(True)
    at_end = jnp.all(data.next_avail_actions == final_mask, axis=(-1, -2))  # [T, E]
    continues = jnp.all(data.next_avail_actions[:-1] == data.avail_actions[1:], axis=(-1, -2))
    return state, {
        "final_mask_at_end": jnp.all(jnp.where(done, at_end, True)).astype(jnp.float32),
        "next_mask_within": jnp.all(jnp.where(done[:-1], True, continues)).astype(jnp.float32),
        "episode_ends": jnp.sum(done).astype(jnp.float32),
    }


MASK_PROBE = Algorithm(
    name="mask-probe", description="takes the available action; checks next_avail_actions",
    config_cls=MaskProbeConfig, init=lambda key, spec, config, model=None: {},
    act=lambda state, obs, avail, key, *, explore, config: jnp.argmax(avail, -1).astype(jnp.int32),
    update=_mask_probe_update,
)


def test_host_runner_logs_team_returns_and_bootstraps_with_the_final_mask():
    run = coopmarl.RunConfig(total_steps=48, log_points=2, eval_episodes=2, n_seeds=1)
    result = coopmarl.train(MASK_PROBE, Countdown(), MaskProbeConfig(), run, progress=False)
    np.testing.assert_array_equal(result.metrics["train_return"], 12.0)  # the sum, not agent 0's 4
    np.testing.assert_array_equal(result.metrics["eval_return"], 12.0)
    np.testing.assert_array_equal(result.metrics["final_mask_at_end"], 1.0)
    np.testing.assert_array_equal(result.metrics["next_mask_within"], 1.0)
    assert result.metrics["episode_ends"].min() > 0


class JaxCountdown:
    """`Countdown` as a JAX env, for the compiled runner."""

    def __init__(self):
        self.spec = Countdown().spec

    def _ts(self, t, reward, done):
        avail = jnp.broadcast_to(jnp.arange(3) == t % 3, (2, 3))
        return TimeStep(obs=jnp.full((2, 1), t, jnp.float32), global_state=jnp.full((1,), t, jnp.float32),
                        avail_actions=avail, reward=jnp.asarray(reward, jnp.float32), terminated=jnp.asarray(False),
                        truncated=jnp.asarray(done), info={})

    def reset(self, key):
        return jnp.int32(0), self._ts(0, [0.0, 0.0], False)

    def step(self, key, t, actions):
        t = t + 1
        return t, self._ts(t, [1.0, 2.0], t >= 4)


def _team_reward_probe(state, data, key, *, config):
    state, metrics = _mask_probe_update(state, data, key, config=config)
    return state, {**metrics, "team_reward_seen": jnp.mean(data.team_reward)}


def test_compiled_runner_bootstraps_with_the_final_mask_and_gives_the_team_reward():
    """At a time limit the transition's next_avail_actions is the final state's mask (action 1), not the next
    episode's first (action 0); the batch's team_reward is the env's scalarisation (the sum, 3)."""
    probe = dataclasses.replace(MASK_PROBE, update=_team_reward_probe)
    run = coopmarl.RunConfig(total_steps=48, log_points=2, eval_episodes=2, n_seeds=2)
    result = coopmarl.train(probe, JaxCountdown(), MaskProbeConfig(), run, progress=False)
    for name, value in [("final_mask_at_end", 1.0), ("next_mask_within", 1.0), ("team_reward_seen", 3.0),
                        ("train_return", 12.0), ("eval_return", 12.0)]:
        np.testing.assert_array_equal(result.metrics[name], value, err_msg=name)
    assert result.metrics["episode_ends"].min() > 0


def test_host_runner_stops_a_diverging_run_with_its_last_finite_state():
    """The host runner applies the compiled runner's rule: a non-finite update metric stops the run."""
    def update(state, data, key, *, config):
        n = state["n"] + 1
        return {"n": n}, {"loss": jnp.where(n >= 3, jnp.nan, 1.0)}

    probe = dataclasses.replace(MASK_PROBE, init=lambda key, spec, config, model=None: {"n": jnp.int32(0)},
                                update=update)
    run = coopmarl.RunConfig(total_steps=48, log_points=4, eval_episodes=1, n_seeds=1)  # 4 chunks of 2 updates
    with pytest.raises(Diverged, match="diverged at step 24: loss is nan for seed 0") as stop:
        coopmarl.train(probe, Countdown(), MaskProbeConfig(), run, progress=False)
    result = stop.value.result
    assert result.state_step == 12 and int(result.train_state["n"][0]) == 2 and list(result.steps) == [12, 24]
