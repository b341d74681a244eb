"""JaxMARL's SMAX (`HeuristicEnemySMAX`) under coopmarl's contract: `smax:MAP`.

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

import jax
import jax.numpy as jnp

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.envs.registry import ParamError, register_env

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

    def __init__(self, map_name: str, max_steps: int = 100, **smax_kwargs):
        jaxmarl, map_name_to_scenario = _import_jaxmarl()
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

        if map_name not in MAP_NAME_TO_SCENARIO:
            raise ParamError(f"unknown SMAX map {map_name!r}. Valid maps: {', '.join(sorted(MAP_NAME_TO_SCENARIO))}")
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
