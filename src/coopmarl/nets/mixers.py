"""Mixing networks: Q_tot = f_s(Q^1, ..., Q^N) for value decomposition, and WQMIX's unrestricted Q*.

Every mixer is called per time step: `mixer.apply(params, agent_qs [N], state [S], ...) -> scalar`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.nets.dense import Dense


class VDNMixer(nn.Module):
    """Q_tot = Σ_n Q^n (Sunehag et al. 2018)."""

    @nn.compact
    def __call__(self, agent_qs, state, actions_onehot=None, agent_vs=None):
        return jnp.sum(agent_qs)


class QMixer(nn.Module):
    """QMIX (Rashid et al. 2018): a two-layer network whose non-negative weights are produced by
    hypernetworks of the state, so ∂Q_tot/∂Q^n ≥ 0 (ReMIX eq. 1).

        hidden = elu(Qᵀ W1(s) + b1(s)),   Q_tot = hiddenᵀ W2(s) + V(s)
    """

    n_agents: int
    embed: int = 32  # mixing embed (EPyMARL / pymarl2)
    hypernet_embed: int = 64

    def setup(self):
        self.hyper_w1 = nn.Sequential([Dense(self.hypernet_embed), nn.relu, Dense(self.n_agents * self.embed)])
        self.hyper_w2 = nn.Sequential([Dense(self.hypernet_embed), nn.relu, Dense(self.embed)])
        self.hyper_b1 = Dense(self.embed)
        self.value = nn.Sequential([Dense(self.embed), nn.relu, Dense(1)])

    def weights(self, state):
        """(W1 [N, m], b1 [m], W2 [m], b2) of the mixing network at this state; W1, W2 ≥ 0."""
        w1 = jnp.abs(self.hyper_w1(state)).reshape(self.n_agents, self.embed)
        return w1, self.hyper_b1(state), jnp.abs(self.hyper_w2(state)), self.value(state)[0]

    def __call__(self, agent_qs, state, actions_onehot=None, agent_vs=None):
        w1, b1, w2, b2 = self.weights(state)
        return jax.nn.elu(agent_qs @ w1 + b1) @ w2 + b2

    def gradient(self, agent_qs, state):
        """ReMIX Lemma 1: ∂Q_tot/∂Q^a = h′(Qᵀ W1 + b1) · Σ_j w¹_aj w²_j, with h = ELU, for every a -> [N]."""
        w1, b1, w2, _ = self.weights(state)
        z = agent_qs @ w1 + b1
        elu_prime = jnp.where(z > 0, 1.0, jnp.exp(z))
        return w1 @ (elu_prime * w2)


class QPLEXMixer(nn.Module):
    """QPLEX (Wang et al. 2021) duplex dueling: with V^n = max_a Q^n and A^n = Q^n − V^n,
    per-agent transformation Q^n ← w_n(s)·Q^n + b_n(s) (w_n > 0), then

        Q_tot = Σ_n V^n + Σ_n λ_n(s, u) A^n,   λ_n = Σ_k |key_k(s)|_n · σ(agent_k(s))_n · σ(action_k(s, u))_n > 0

    (multi-head attention over the state and the joint action). λ > 0 keeps IGM: the greedy joint
    action is the agents' greedy actions.
    """

    n_agents: int
    hypernet_embed: int = 64
    n_heads: int = 4

    @nn.compact
    def __call__(self, agent_qs, state, actions_onehot, agent_vs):
        n = self.n_agents
        w = jnp.abs(nn.Sequential([Dense(self.hypernet_embed), nn.relu, Dense(n)])(state)) + 1e-10
        b = nn.Sequential([Dense(self.hypernet_embed), nn.relu, Dense(n)])(state)
        v = w * agent_vs + b
        adv = w * (agent_qs - agent_vs)
        joint = jnp.concatenate([state, actions_onehot.reshape(-1)])
        lam = jnp.zeros(n)
        for _ in range(self.n_heads):
            key = jnp.abs(nn.Sequential([Dense(self.hypernet_embed), nn.relu, Dense(1)])(state)) + 1e-10
            agents = jax.nn.sigmoid(Dense(n)(state))
            action = jax.nn.sigmoid(Dense(n)(joint))
            lam = lam + key * agents * action
        return jnp.sum(v) + jnp.sum(lam * adv)


class CentralMixer(nn.Module):
    """WQMIX's unrestricted Q*(s, u): a feed-forward network of the state and the (central) agents'
    utilities of the taken actions — no monotonicity constraint (Rashid et al. 2020, embed 256): `layers`
    ReLU layers of width `embed`, then a linear output plus a state value V(s) (WQMIX's `QMixerCentralFF`,
    `qmix_central_no_hyper.py`: 3 layers)."""

    embed: int = 256
    layers: int = 3

    @nn.compact
    def __call__(self, agent_qs, state, actions_onehot=None, agent_vs=None):
        h = jnp.concatenate([agent_qs, state])
        for _ in range(self.layers):
            h = nn.relu(Dense(self.embed)(h))
        return Dense(1)(h)[0] + nn.Sequential([Dense(self.embed), nn.relu, Dense(1)])(state)[0]
