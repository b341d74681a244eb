"""The two action distributions of the policy-gradient family, written out (no distrax, see DESIGN.md).

- `Categorical`: discrete actions, with an availability mask. Unavailable actions get the logit
  `MASKED_LOGIT` (finite, so no `inf - inf` in log-probabilities or gradients): their probability
  is exactly 0 in float32, they are never sampled nor chosen greedily, and they add 0 to entropy and KL.
- `DiagGaussian`: continuous actions; mean from the network, log-std a separate (state-independent)
  parameter. Everything is summed over the action dimensions. Samples are *not* clipped here: the
  log-probability belongs to the unclipped sample, and clipping to [low, high] is the env's business
  (see `coopmarl.algos.ppo.act`).

Both are NamedTuples (pytrees), so they can be returned from jitted functions and vmapped.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

MASKED_LOGIT = -1e9  # exp(-1e9 - logsumexp) == 0 in float32
_LOG_2PI = math.log(2.0 * math.pi)


class Categorical(NamedTuple):
    logits: jax.Array  # [..., A], unavailable actions already at MASKED_LOGIT

    @classmethod
    def masked(cls, logits: jax.Array, avail: jax.Array | None = None) -> "Categorical":
        if avail is None:
            return cls(logits)
        return cls(jnp.where(avail, logits, MASKED_LOGIT))

    def log_probs(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    def probs(self) -> jax.Array:
        return jax.nn.softmax(self.logits, axis=-1)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """log π(a) for int actions [...]."""
        idx = actions.astype(jnp.int32)[..., None]
        return jnp.take_along_axis(self.log_probs(), idx, axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        p, logp = self.probs(), self.log_probs()
        return -jnp.sum(p * logp, axis=-1)  # masked entries: 0 * (-1e9) = 0

    def kl(self, other: "Categorical") -> jax.Array:
        """KL(self ‖ other) = Σ_a p(a) (log p(a) − log q(a)); actions with p(a) = 0 add nothing."""
        p = self.probs()
        return jnp.sum(jnp.where(p > 0.0, p * (self.log_probs() - other.log_probs()), 0.0), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)


class DiagGaussian(NamedTuple):
    mean: jax.Array  # [..., D]
    log_std: jax.Array  # [..., D] (broadcast from a [D] parameter)

    def log_prob(self, actions: jax.Array) -> jax.Array:
        z = (actions - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * jnp.square(z) - self.log_std - 0.5 * _LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        return jnp.sum(self.log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)

    def kl(self, other: "DiagGaussian") -> jax.Array:
        """KL(self ‖ other) in closed form, summed over dimensions:
        Σ_d [log σ_q − log σ_p + (σ_p² + (μ_p − μ_q)²) / (2 σ_q²) − 1/2]."""
        var_ratio = jnp.exp(2.0 * (self.log_std - other.log_std))
        mean_term = jnp.square((self.mean - other.mean) * jnp.exp(-other.log_std))
        return jnp.sum(other.log_std - self.log_std + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        noise = jax.random.normal(key, jnp.shape(self.mean), dtype=jnp.float32)
        return self.mean + jnp.exp(self.log_std) * noise

    def mode(self) -> jax.Array:
        return self.mean


def safe_sqrt(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """√x for x > eps, else 0 — with a finite gradient everywhere (0 where x <= eps).

    Plain `jnp.sqrt` has an infinite derivative at 0, and KL(π_old ‖ π) is exactly 0 at the first
    gradient step of every update, so `0 · inf = nan` would poison DPO's √KL term (eq. 20). The
    double `where` keeps the untaken branch's gradient out of the result."""
    positive = x > eps
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
