"""The environment contract: static `EnvSpec`, per-step `TimeStep`, and the one `AutoReset` wrapper.

Every environment is a pure, jittable pair of functions over an explicit state, with agents stacked
on the leading axis of every per-agent array (no per-agent dicts):

    state, ts = env.reset(key)
    state, ts = env.step(key, state, actions)      # actions: int32 [N] or float32 [N, action_dim]

`ts.terminated` means the episode really ended (bootstrap from zero); `ts.truncated` means a time
limit cut it (bootstrap from the next state's value).

`ts.reward [N]` is per agent; `spec.reward_scalarisation` declares how it becomes the team's scalar
reward, and `team_reward(spec, reward)` computes it: every logged team return (training episodes in
`AutoReset`, evaluation rollouts, the host runner) is the sum over an episode of `team_reward`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from coopmarl.envs.fast_random import split_key

# how the per-agent rewards [N] of a step become the team's scalar reward (EnvSpec.reward_scalarisation)
REWARD_SCALARISATIONS = {
    "shared": "every agent receives the same team reward (the cooperative contract): reward[0]",
    "sum": "per-agent rewards; the team's is their sum (EPyMARL's reward_scalarisation='sum', e.g. LBF)",
    "mean": "per-agent rewards; the team's is their mean (EPyMARL's reward_scalarisation='mean')",
}

# the dtypes an EnvSpec may declare for storing obs / global_state (their values must fit exactly); "bool": every
# value is 0 or 1, stored as one bit (replay packs eight to a byte)
STORAGE_DTYPES = ("float32", "float16", "int8", "uint8", "int16", "bool")


def integer_dtype(low: int, high: int) -> str:
    """The smallest STORAGE_DTYPES entry holding every integer in [low, high] exactly (float32 beyond int16)."""
    for name, (lo, hi) in (("int8", (-128, 127)), ("int16", (-32768, 32767))):
        if lo <= low and high <= hi:
            return name
    return "float32"


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment; everything here is a Python value, never traced."""

    name: str
    n_agents: int
    obs_dim: int
    state_dim: int
    action_kind: str  # "discrete" | "continuous"
    n_actions: int = 0  # discrete
    action_dim: int = 0  # continuous
    low: float = -1.0  # continuous bounds
    high: float = 1.0
    horizon: int = 0  # episode time limit (0 = none)
    params: tuple[tuple[str, Any], ...] = field(default=())  # the resolved constructor parameters
    # how reward [N] becomes the team's scalar reward: "shared" | "sum" | "mean" (REWARD_SCALARISATIONS)
    reward_scalarisation: str = "shared"
    # the smallest dtype that holds every value of obs / global_state exactly (both are float32 in a TimeStep):
    # replay stores them in it (a grid env's integer features as int8 take a quarter of float32's memory, 0/1
    # features as bits a thirty-second);
    # `check_env` verifies the declaration on a rollout (STORAGE_DTYPES)
    obs_dtype: str = "float32"
    state_dtype: str = "float32"

    def __post_init__(self):
        for what in ("obs_dtype", "state_dtype"):
            if getattr(self, what) not in STORAGE_DTYPES:
                raise ValueError(f"{what} must be one of {', '.join(map(repr, STORAGE_DTYPES))}, "
                                 f"got {getattr(self, what)!r}")
        if self.reward_scalarisation not in REWARD_SCALARISATIONS:
            raise ValueError(f"reward_scalarisation must be one of {', '.join(map(repr, REWARD_SCALARISATIONS))}, "
                             f"got {self.reward_scalarisation!r}")
        if self.action_kind not in ("discrete", "continuous"):
            raise ValueError(f"action_kind must be 'discrete' or 'continuous', got {self.action_kind!r}")
        if self.action_kind == "discrete" and self.n_actions < 1:
            raise ValueError("a discrete EnvSpec needs n_actions >= 1")
        if self.action_kind == "continuous" and self.action_dim < 1:
            raise ValueError("a continuous EnvSpec needs action_dim >= 1")

    @property
    def discrete(self) -> bool:
        return self.action_kind == "discrete"


class TimeStep(NamedTuple):
    obs: jax.Array  # float32 [N, obs_dim]
    global_state: jax.Array  # float32 [state_dim]
    avail_actions: jax.Array  # bool [N, n_actions] (all true for continuous envs: shape [N, 1])
    reward: jax.Array  # float32 [N]; the team reward repeated ("shared" envs) or per agent (see team_reward)
    terminated: jax.Array  # bool []
    truncated: jax.Array  # bool []
    info: dict  # env-specific extras (fixed pytree structure across steps)

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


def team_reward(spec: EnvSpec, reward):
    """The team's scalar reward(s) from per-agent rewards `reward [..., N]` (a JAX or numpy array), as
    `spec.reward_scalarisation` declares: "shared" -> reward[..., 0], "sum" -> the sum over agents,
    "mean" -> the mean. The one place a team return is computed from an env's rewards."""
    how = spec.reward_scalarisation
    if how == "shared":
        return reward[..., 0]
    if how == "sum":
        return reward.sum(axis=-1)
    if how == "mean":
        return reward.mean(axis=-1)
    raise ValueError(f"unknown reward_scalarisation {how!r}")


@runtime_checkable
class Env(Protocol):
    spec: EnvSpec

    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]: ...

    def step(self, key: jax.Array, state: Any, actions: jax.Array) -> tuple[Any, TimeStep]: ...


class AutoResetState(NamedTuple):
    env_state: Any
    episode_return: jax.Array  # float32 [], team return (sum of team_reward) of the running episode
    episode_length: jax.Array  # int32 []


class AutoReset:
    """Resets an env when an episode ends, and reports finished episodes' return and length.

    After a step that ends an episode, the returned `ts` carries that step's `reward`, `terminated`
    and `truncated`, but the *first* observation of the new episode (`obs`, `global_state`,
    `avail_actions`); the last observation of the finished episode is in `ts.info["final_obs"]`,
    its global state in `["final_state"]` and its action mask in `["final_avail_actions"]` (needed to
    bootstrap after a truncation). `ts.info["episode_return"]` (the sum of `team_reward` over the
    episode) / `["episode_length"]` hold the finished episode's statistics where
    `ts.info["episode_done"]` is true.

    An env whose chain runs on after an episode ends (the DPO authors' never-reset game,
    `TabularGame(reset="never")`) puts `info["keep_running"] = True` in its steps: the episode's
    statistics are reported and restarted, but the env's state is not reset.

    Under `vmap` a reset is computed at every step and selected where an episode ended. An env can
    make that cheaper with two optional methods: `reset_state(key) -> state` (the state `reset(key)`
    starts in) and `observation(state) -> (obs, global_state, avail_actions)` (the fields `reset` and
    `step` put in their TimeStep for that state). Given both, the wrapper selects the state first and
    observes it once, instead of observing the reset state too and selecting the observations: the
    same TimeStep, with one observation less per step (two less when `final_obs` is not used).
    """

    def __init__(self, env: Env):
        self.env = env
        self.spec = env.spec
        self._observe_once = callable(getattr(env, "reset_state", None)) and callable(
            getattr(env, "observation", None))

    def reset(self, key):
        env_state, ts = self.env.reset(key)
        ts = ts._replace(info=self._info(ts, ts, jnp.float32(0.0), jnp.int32(0), jnp.bool_(False)))
        return AutoResetState(env_state, jnp.float32(0.0), jnp.int32(0)), ts

    def step(self, key, state: AutoResetState, actions):
        key_step, key_reset = split_key(key)
        env_state, ts = self.env.step(key_step, state.env_state, actions)
        ep_return = state.episode_return + team_reward(self.spec, ts.reward)
        ep_length = state.episode_length + 1
        done = ts.done
        if "keep_running" in ts.info:  # (see the docstring) the episode ends, the env's state goes on
            reset_done = jnp.logical_and(done, jnp.logical_not(ts.info["keep_running"]))
        else:
            reset_done = done
        if self._observe_once:
            reset_state = self.env.reset_state(key_reset)
            env_state = jax.tree.map(lambda r, s: jnp.where(reset_done, r, s), reset_state, env_state)
            obs, global_state, avail_actions = self.env.observation(env_state)
            new_ts = ts._replace(obs=obs, global_state=global_state, avail_actions=avail_actions)
        else:
            reset_state, reset_ts = self.env.reset(key_reset)
            env_state = jax.tree.map(lambda r, s: jnp.where(reset_done, r, s), reset_state, env_state)
            new_ts = ts._replace(
                obs=jnp.where(reset_done, reset_ts.obs, ts.obs),
                global_state=jnp.where(reset_done, reset_ts.global_state, ts.global_state),
                avail_actions=jnp.where(reset_done, reset_ts.avail_actions, ts.avail_actions),
            )
        new_ts = new_ts._replace(info=self._info(ts, new_ts, ep_return, ep_length, done))
        new_state = AutoResetState(
            env_state,
            jnp.where(done, 0.0, ep_return).astype(jnp.float32),
            jnp.where(done, 0, ep_length).astype(jnp.int32),
        )
        return new_state, new_ts

    @staticmethod
    def _info(ts, new_ts, ep_return, ep_length, done):
        info = dict(ts.info)
        info.update(
            final_obs=ts.obs,
            final_state=ts.global_state,
            final_avail_actions=ts.avail_actions,
            episode_return=ep_return.astype(jnp.float32),
            episode_length=ep_length.astype(jnp.int32),
            episode_done=jnp.asarray(done, bool),
        )
        return info


def discrete_avail_all(n_agents: int, n_actions: int) -> jax.Array:
    return jnp.ones((n_agents, n_actions), dtype=bool)
