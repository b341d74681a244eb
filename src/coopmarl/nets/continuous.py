"""Small pieces shared by the continuous-action off-policy learners (DDPG family, ROMMEO-AC).

- Actions live on the env's box [low, high]^D; networks see them rescaled to [−1, 1]^D (`to_unit`),
  as in the ROMMEO authors' code, whose policies act in [−1, 1] and whose env multiplies by 10.
- Every agent has its own networks (no parameter sharing, as in the authors' code): `per_agent` stacks
  one copy per agent and applies copy n to agent n's input (`nets.policy.AgentNets`).
- `MLP`: ReLU hidden layers with Glorot-uniform weights (TF1's default, which the authors' code used) and an
  output layer scaled by `out_scale` (0.01 for policies: every policy starts at the box's centre).
- `GaussianMLP` outputs the (pre-tanh) mean and a state-dependent log-std, clipped to [−20, 2] (SAC).
- `opponents(x)`: for every agent i, the other agents' entries concatenated: [..., N, D] -> [..., N, (N−1)·D].
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from coopmarl.nets.dense import Dense
from coopmarl.nets.policy import AgentNets

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def to_unit(actions, low, high):
    """[low, high] -> [−1, 1]."""
    return (actions - 0.5 * (high + low)) / (0.5 * (high - low))


def from_unit(y, low, high):
    """[−1, 1] -> [low, high]."""
    return 0.5 * (high + low) + 0.5 * (high - low) * y


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    out_dim: int
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_sizes:
            x = nn.relu(Dense(width, kernel_init=nn.initializers.glorot_uniform())(x))
        init = nn.initializers.variance_scaling(self.out_scale ** 2, "fan_avg", "uniform")
        return Dense(self.out_dim, kernel_init=init)(x)


class GaussianMLP(nn.Module):
    """x -> (mean [out_dim], log_std [out_dim]); a near-zero output layer (gain 0.01) starts every policy
    at mean ≈ 0 (the box's centre after tanh) and std ≈ 1 before the squashing."""

    hidden_sizes: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x):
        out = MLP(self.hidden_sizes, 2 * self.out_dim, out_scale=0.01)(x)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class ValueMLP(nn.Module):
    """x -> a scalar (a critic)."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, x):
        return MLP(self.hidden_sizes, 1)(x)[..., 0]


def per_agent(module: nn.Module, n_agents: int) -> AgentNets:
    """`module` with one parameter copy per agent: init(key, in_dim); apply(params, x [..., N, in_dim])."""
    return AgentNets(module, n_agents, shared=False)


def others_index(n_agents: int) -> np.ndarray:
    """[N, N−1]: row i lists the agents j ≠ i in increasing order."""
    return np.array([[j for j in range(n_agents) if j != i] for i in range(n_agents)], dtype=np.int32).reshape(
        n_agents, n_agents - 1)


def opponents(x, n_agents: int):
    """x [..., N, D] -> [..., N, (N−1)·D]: agent i's row holds the other agents' rows, concatenated."""
    gathered = jnp.take(x, others_index(n_agents), axis=-2)  # [..., N, N−1, D]
    return gathered.reshape(gathered.shape[:-2] + (-1,))
