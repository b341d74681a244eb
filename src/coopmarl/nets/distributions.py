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

from coopmarl.envs.fast_random import categorical

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
        # a one-hot product rather than a gather: elementwise, so XLA fuses it (a gather is a separate,
        # slow kernel on the CPU); the same value — the other entries add exact zeros
        one_hot = actions.astype(jnp.int32)[..., None] == jnp.arange(self.logits.shape[-1])
        return jnp.sum(jnp.where(one_hot, self.log_probs(), 0.0), axis=-1)

    def entropy(self) -> jax.Array:
        p, logp = self.probs(), self.log_probs()
        return -jnp.sum(p * logp, axis=-1)  # masked entries: 0 * (-1e9) = 0

    def kl(self, other: "Categorical") -> jax.Array:
        """KL(self ‖ other) = Σ_a p(a) (log p(a) − log q(a)); actions with p(a) = 0 add nothing."""
        p = self.probs()
        return jnp.sum(jnp.where(p > 0.0, p * (self.log_probs() - other.log_probs()), 0.0), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return categorical(key, self.logits, axis=-1).astype(jnp.int32)

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


def _log_one_minus_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 − tanh(u)²) = 2·(log 2 − u − softplus(−2u)), exact and stable for large |u|."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


class TanhGaussian(NamedTuple):
    """A squashed Gaussian on the box [low, high]^D (SAC's policy; ROMMEO-AC's π, ρ and prior P).

    u ~ N(mean, exp(log_std)²) per dimension and a = mid + half·tanh(u), mid = (high + low)/2,
    half = (high − low)/2. By the change of variables its density on the box is

        log p(a) = Σ_d [log N(u_d; mean_d, σ_d) − log half − log(1 − tanh(u_d)²)],   u = atanh((a − mid)/half),

    summed over the action dimensions. `sample_and_log_prob` reparameterises (a is a differentiable
    function of mean, log_std and the noise) and evaluates the log-density at the pre-tanh u it drew,
    which is exact even where tanh saturates; `log_prob(a)` inverts tanh on actions given from outside
    (clipped to ±(1 − 1e-6) of the half-width so atanh stays finite).
    """

    mean: jax.Array  # [..., D], pre-tanh
    log_std: jax.Array  # [..., D]
    low: float = -1.0
    high: float = 1.0

    @property
    def _mid_half(self):
        return 0.5 * (self.high + self.low), 0.5 * (self.high - self.low)

    def _log_prob_u(self, u: jax.Array) -> jax.Array:
        _, half = self._mid_half
        gauss = DiagGaussian(self.mean, self.log_std).log_prob(u)
        return gauss - jnp.sum(jnp.log(half) + _log_one_minus_tanh_sq(u), axis=-1)

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        mid, half = self._mid_half
        u = DiagGaussian(self.mean, self.log_std).sample(key)
        return mid + half * jnp.tanh(u), self._log_prob_u(u)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_and_log_prob(key)[0]

    def log_prob(self, actions: jax.Array) -> jax.Array:
        mid, half = self._mid_half
        y = jnp.clip((actions - mid) / half, -1.0 + 1e-6, 1.0 - 1e-6)
        return self._log_prob_u(jnp.arctanh(y))

    def mode(self) -> jax.Array:
        """tanh of the Gaussian's mean (the executed 'mean action'; not the exact mode of the density)."""
        mid, half = self._mid_half
        return mid + half * jnp.tanh(self.mean)
