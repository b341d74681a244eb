"""Tabular baselines of the ROMMEO paper's iterated-matrix-game study (Fig. 1):

- IQL       independent Q-learning: each agent learns Q^n(s, a^n), epsilon-greedy.

Every learner here is sample-based: the runner feeds it one transition per update (the newest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from coopmarl.algos.base import (Algorithm, epsilon_mix, greedy_probs, last_transition, linear_schedule,
                                 register_algo, sample_actions, state_index)


# ---- IQL -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IQLConfig:
    lr: float = 0.1
    gamma: float = 0.95  # ROMMEO authors' code, γ for the tabular learners
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 1_000
    rollout_length: int = 1
    n_envs: int = 1


class IQLState(NamedTuple):
    q: jax.Array  # [N, S, A]
    step: jax.Array


def iql_init(key, spec, config: IQLConfig, model=None) -> IQLState:
    return IQLState(jnp.zeros((spec.n_agents, spec.obs_dim, spec.n_actions)), jnp.int32(0))


def _iql_epsilon(config, step):
    return linear_schedule(config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps, step)


def iql_act(state: IQLState, obs, avail, key, *, explore: bool, config: IQLConfig):
    s = state_index(obs)  # [N]
    q = state.q[jnp.arange(obs.shape[0]), s]  # [N, A]
    probs = greedy_probs(jnp.where(avail, q, -jnp.inf))
    if explore:
        probs = epsilon_mix(probs, _iql_epsilon(config, state.step))
    return sample_actions(key, probs)


def iql_update(state: IQLState, data, key, *, config: IQLConfig):
    tr = last_transition(data)
    agents = jnp.arange(tr.actions.shape[0])
    s, s_next = state_index(tr.obs), state_index(tr.next_obs)
    q_sa = state.q[agents, s, tr.actions]
    bootstrap = jnp.where(tr.terminated, 0.0, state.q[agents, s_next].max(-1))
    td = tr.reward + config.gamma * bootstrap - q_sa
    q = state.q.at[agents, s, tr.actions].add(config.lr * td)
    return IQLState(q, state.step + 1), {"td_error": jnp.mean(jnp.abs(td)), "epsilon": _iql_epsilon(config, state.step)}


def iql_policy(state: IQLState):
    return greedy_probs(state.q)


IQL = register_algo(Algorithm(
    name="iql", description="independent tabular Q-learning, epsilon-greedy", config_cls=IQLConfig,
    init=iql_init, act=iql_act, update=iql_update, policy=iql_policy, requires=("discrete", "tabular"),
    paper="ROMMEO Fig. 1 baseline (Claus & Boutilier 1998 independent learner)",
))
