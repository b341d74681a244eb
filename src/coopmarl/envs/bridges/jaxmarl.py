"""JaxMARL's environments under coopmarl's contract: SMAX (`smax:MAP`) and MABrax (`mabrax:TASK`).

MABrax (multi-agent Brax robots, continuous control) is described in `MABrax`'s docstring; the rest
of this docstring is about SMAX.

SMAX is JaxMARL's JAX re-implementation of the StarCraft Multi-Agent Challenge; the heuristic-enemy
variant is the stand-in for the SMAC maps the ReMIX and DPO papers use (real SMAC needs the
StarCraft II binary, which cannot be installed here). The adapter turns JaxMARL's per-agent dicts
into stacked arrays: `obs [N, obs_dim]` (the allies in `env.agents` order), `global_state` = SMAX's
`world_state`, `avail_actions` from `get_avail_actions`, `reward [N]`. It steps with `step_env`
(JaxMARL's `step` auto-resets internally; ours is the one AutoReset wrapper) and splits JaxMARL's
single `done` into `terminated` (one side eliminated) and `truncated` (the time limit).
`info["battle_won"]` is true when every enemy is dead and an ally lives. JaxMARL checks its time
limit before counting the step, so an episode lasts at most `max_steps + 1` steps; `spec.horizon`
says so.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.envs.registry import ParamError, did_you_mean, register_env
from coopmarl.ranges import INT32_MAX

INSTALL_HINT = "the SMAX bridge needs JaxMARL: pip install 'coopmarl[jaxmarl]' (or pip install jaxmarl)"

# SMAC maps the papers use; SMAX has heuristic-enemy versions of all of them.
PAPER_MAPS = ("2s3z", "3s5z", "8m", "27m_vs_30m", "3s_vs_5z", "6h_vs_8z", "5m_vs_6m", "10m_vs_11m", "3m")


def _import_jaxmarl():
    try:
        import jaxmarl
        from jaxmarl.environments.smax import map_name_to_scenario
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return jaxmarl, map_name_to_scenario


class SMAX:
    """A `HeuristicEnemySMAX` scenario with stacked arrays (see the module docstring)."""

    # evaluation reports the fraction of episodes won (`coopmarl.evaluation`: {metric: info key at the end})
    eval_metrics = {"win_rate": "battle_won"}

    def __init__(self, map_name: str, max_steps: int = 100, **smax_kwargs):
        jaxmarl, map_name_to_scenario = _import_jaxmarl()
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

        if map_name not in MAP_NAME_TO_SCENARIO:
            raise ParamError(f"unknown SMAX map {map_name!r}. Valid maps: {', '.join(sorted(MAP_NAME_TO_SCENARIO))}")
        if not 1 <= max_steps < INT32_MAX:  # the horizon, max_steps + 1, is an int32
            raise ParamError(f"SMAX max_steps must be an integer in [1, {INT32_MAX - 1}], got {max_steps}")
        self.env = jaxmarl.make("HeuristicEnemySMAX", scenario=map_name_to_scenario(map_name), max_steps=max_steps,
                                **smax_kwargs)
        self.inner = self.env._env
        self.agents = list(self.env.agents)
        obs, state = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0))
        self.spec = EnvSpec(
            name=f"smax:{map_name}", n_agents=len(self.agents), obs_dim=int(obs[self.agents[0]].shape[0]),
            state_dim=int(obs["world_state"].shape[0]), action_kind="discrete",
            n_actions=int(self.env.action_spaces[self.agents[0]].n), horizon=int(max_steps) + 1,
            params=(("map_name", map_name), ("max_steps", int(max_steps))),
        )

    def _timestep(self, obs, state, reward, terminated, truncated) -> TimeStep:
        avail = self.env.get_avail_actions(state)
        inner = state.state
        won = jnp.all(~inner.unit_alive[self.inner.num_allies:]) & jnp.any(inner.unit_alive[: self.inner.num_allies])
        return TimeStep(
            obs=jnp.stack([obs[a] for a in self.agents]).astype(jnp.float32),
            global_state=obs["world_state"].astype(jnp.float32),
            avail_actions=jnp.stack([avail[a] for a in self.agents]).astype(bool),
            reward=reward.astype(jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.asarray(truncated, bool),
            info={"battle_won": won},
        )

    def reset(self, key):
        obs, state = self.env.reset(key)
        zeros = jnp.zeros(len(self.agents), jnp.float32)
        return state, self._timestep(obs, state, zeros, False, False)

    def step(self, key, state, actions):
        action_dict = {a: actions[i] for i, a in enumerate(self.agents)}
        obs, state, rewards, dones, _ = self.env.step_env(key, state, action_dict)
        state = jax.tree.map(lambda x: x.astype(x.dtype), state)  # Brax's step leaves some leaves weakly typed
        inner = state.state
        n = self.inner.num_allies
        eliminated = jnp.all(~inner.unit_alive[:n]) | jnp.all(~inner.unit_alive[n:])
        done = dones["__all__"]
        reward = jnp.stack([rewards[a] for a in self.agents])
        return state, self._timestep(obs, state, reward, done & eliminated, done & ~eliminated)


@register_env(
    "smax",
    "JaxMARL SMAX with heuristic enemies, the SMAC stand-in (smax:MAP, e.g. smax:2s3z, smax:3s5z, smax:8m, "
    "smax:27m_vs_30m, smax:3s_vs_5z, smax:6h_vs_8z, smax:5m_vs_6m); needs the jaxmarl extra",
    ("bridge",), prefix=True,
)
def smax(map_name: str, max_steps: int = 100) -> SMAX:
    return SMAX(map_name, max_steps=max_steps)


# ---- MABrax ------------------------------------------------------------------------------------------

MABRAX_INSTALL_HINT = ("the MABrax bridge needs JaxMARL and Brax: pip install 'coopmarl[jaxmarl]' "
                       "(or pip install jaxmarl brax)")

# JaxMARL 0.2.0's multi-agent partitions of the Brax robots (ROBOT_AGENTSxJOINTS; humanoid: 9 and 8 joints).
MABRAX_TASKS = ("ant_4x2", "halfcheetah_6x1", "hopper_3x1", "walker2d_2x3", "humanoid_9|8")


def _import_mabrax():
    try:
        from jaxmarl.environments.mabrax import MABraxEnv  # imports brax (JaxMARL's optional `mabrax` extra)
    except ImportError as e:
        raise ImportError(f"{MABRAX_INSTALL_HINT} ({e})") from None
    return MABraxEnv


@contextlib.contextmanager
def quiet_brax():
    """Build Brax envs without their noise: JaxMARL and Brax warn that they no longer maintain them, and
    MuJoCo's model compiler warns about Brax's XML into MUJOCO_LOG.TXT in the working directory."""
    import mujoco

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: warnings.warn(f"MuJoCo: {msg}", UserWarning))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


class MABrax:
    """A JaxMARL MABrax task (a Brax robot whose joints are split among agents) with stacked arrays.

    - `obs [N, obs_dim]`: each agent's own slice of the Brax observation (JaxMARL's agent obs mapping,
      in `env.agents` order), zero-padded at the end to the largest agent's size where they differ
      (halfcheetah_6x1, hopper_3x1, humanoid_9|8). No agent id is added. JaxMARL 0.2.0's mappings
      were written for older Brax observations and index past the end of Brax 0.14's in two tasks
      (halfcheetah_6x1: one index, humanoid_9|8: 144 of them); JAX clamps such reads to the last
      entry, so those columns are copies of it. We drop them (`dropped_obs` lists them per agent);
      every column we keep equals JaxMARL's. (humanoid_9|8's mapping fits a 376-entry observation,
      Brax 0.14's humanoid has 244, so its agents' slices are not the body parts the mapping meant.)
    - `global_state`: the full Brax observation.
    - actions `float32 [N, action_dim]` in [-1, 1], `action_dim` = the largest agent's number of joints;
      agent n drives its own joints with the first k_n entries of its row, and the rest of the row is
      ignored (humanoid_9|8: agent 1 has 8 joints, so its 9th entry does nothing).
    - `reward [N]`: Brax's single reward, repeated.
    - Brax's EpisodeWrapper cuts an episode after `episode_length` steps: `truncated` is true exactly at
      that step; `terminated` is true when the robot fell over (Brax's `done` without the time limit's
      `truncation` flag). Both can be true on the last step. `spec.horizon = episode_length`.
    The wrapped JaxMARL env is built with `auto_reset=False` (coopmarl's AutoReset is the one wrapper)
    and no homogenisation (the padding above is ours).
    """

    def __init__(self, task: str, episode_length: int = 1000, backend: str = "positional"):
        MABraxEnv = _import_mabrax()
        if task not in MABRAX_TASKS:
            raise ParamError(f"unknown MABrax task {task!r}.{did_you_mean(task, MABRAX_TASKS)} "
                             f"Valid tasks: {', '.join(MABRAX_TASKS)}")
        if episode_length < 1:
            raise ParamError(f"MABrax episode_length must be >= 1, got {episode_length}")
        with quiet_brax():
            self.env = MABraxEnv(task, episode_length=episode_length, auto_reset=False, backend=backend)
        self.agents = list(self.env.agents)
        size = int(self.env.env.observation_size)
        mapping = {a: np.asarray(self.env.agent_obs_mapping[a]) for a in self.agents}
        # positions (within JaxMARL's agent obs) that read inside Brax's observation, and those that do not
        self.kept_obs = tuple(np.flatnonzero(mapping[a] < size) for a in self.agents)
        self.dropped_obs = tuple(np.flatnonzero(mapping[a] >= size) for a in self.agents)
        obs_sizes = [len(k) for k in self.kept_obs]
        act_sizes = [int(self.env.action_spaces[a].shape[0]) for a in self.agents]
        self.obs_sizes, self.act_sizes = tuple(obs_sizes), tuple(act_sizes)
        space = self.env.action_spaces[self.agents[0]]
        self.spec = EnvSpec(
            name=f"mabrax:{task}", n_agents=len(self.agents), obs_dim=max(obs_sizes),
            state_dim=int(self.env.env.observation_size), action_kind="continuous", action_dim=max(act_sizes),
            low=float(jnp.min(space.low)), high=float(jnp.max(space.high)), horizon=int(episode_length),
            params=(("task", task), ("episode_length", int(episode_length)), ("backend", backend)),
        )

    def _obs(self, obs) -> jax.Array:
        d = self.spec.obs_dim
        rows = [obs[a][keep] for a, keep in zip(self.agents, self.kept_obs)]
        return jnp.stack([jnp.pad(r, (0, d - r.shape[0])) for r in rows]).astype(jnp.float32)

    def reset(self, key):
        obs, state = self.env.reset(key)
        ts = TimeStep(
            obs=self._obs(obs), global_state=state.obs.astype(jnp.float32),
            avail_actions=jnp.ones((self.spec.n_agents, 1), bool),
            reward=jnp.zeros(self.spec.n_agents, jnp.float32),
            terminated=jnp.bool_(False), truncated=jnp.bool_(False), info={},
        )
        return state, ts

    def step(self, key, state, actions):
        actions = jnp.asarray(actions, jnp.float32)
        action_dict = {a: actions[i, : self.act_sizes[i]] for i, a in enumerate(self.agents)}
        obs, state, rewards, dones, _ = self.env.step_env(key, state, action_dict)
        state = jax.tree.map(lambda x: x.astype(x.dtype), state)  # Brax's step leaves some leaves weakly typed
        done = dones["__all__"]
        time_limit = state.info["steps"] >= self.env.episode_length
        cut = state.info["truncation"].astype(bool)  # the time limit ended an episode the robot survived
        ts = TimeStep(
            obs=self._obs(obs), global_state=state.obs.astype(jnp.float32),
            avail_actions=jnp.ones((self.spec.n_agents, 1), bool),
            reward=jnp.stack([rewards[a] for a in self.agents]).astype(jnp.float32),
            terminated=done & ~cut, truncated=done & time_limit, info={},
        )
        return state, ts


@register_env(
    "mabrax",
    "JaxMARL multi-agent Brax robots, continuous joint control (mabrax:TASK, TASK one of ant_4x2, "
    "halfcheetah_6x1, hopper_3x1, walker2d_2x3, humanoid_9|8); needs the jaxmarl extra (jaxmarl, brax)",
    ("bridge",), prefix=True,
)
def mabrax(task: str, episode_length: int = 1000,
           backend: Literal["positional", "generalized", "spring", "mjx"] = "positional") -> MABrax:
    return MABrax(task, episode_length=episode_length, backend=backend)
