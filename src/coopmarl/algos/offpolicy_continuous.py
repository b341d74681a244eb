"""What the continuous-action off-policy learners share (IDDPG, MADDPG, DDPG-OM, ROMMEO-AC, PR2-AC, MASQL):
their config's field groups and a few helpers. Replay, targets and the optimiser are the off-policy core's
(`algos/offpolicy.py`); each algorithm's file holds its networks and its loss.

Field groups (frozen dataclass mixins; an algorithm's config combines the ones it reads):
- `ContinuousOffPolicyConfig`  collection, replay, Adam, soft targets, the networks' widths;
- `NoiseExplorationConfig`     Gaussian exploration noise for deterministic actors (DDPG family, PR2-AC);
- `AnnealedEntropyConfig`      the annealed entropy weight α_t of the soft learners (ROMMEO-AC, PR2-AC, MASQL);
- `RecentBatchFields`          the most recent transitions an opponent model / prior is fitted on
                               (DDPG-OM, ROMMEO-AC), kept in the core's second, recent-windows buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos.base import Transition
from coopmarl.algos.fields import AlgoConfig
from coopmarl.nets.continuous import from_unit


@dataclass(frozen=True)
class ContinuousOffPolicyConfig(AlgoConfig):
    """The keys every continuous-action off-policy learner reads. Defaults: the ROMMEO authors' code
    (REFERENCE.md): 2 hidden layers of 100, batch 512, Adam lr 1e-2, γ 0.95, soft target τ 0.01 every step,
    one gradient step per env step."""

    # collection: each iteration steps `n_envs` envs for `rollout_length` steps, then takes
    # `updates_per_iteration` gradient steps (defaults: one gradient step per env step, as the authors)
    n_envs: int = 1  # one env, as the authors' code
    rollout_length: int = 1  # stored window length; 1 = single transitions (the authors' code)
    buffer_size: int = 100_000  # windows; the authors keep 1e6 — the same for runs ≤ 1e5 steps, less memory
    batch_size: int = 512  # REFERENCE.md (the authors' code)
    learning_starts: int = 10  # windows collected before learning (the authors' code trains from env step 10)
    updates_per_iteration: int = 1  # one gradient step per env step (the authors' code)
    lr: float = 1e-2  # Adam, every network (REFERENCE.md, the authors' code)
    gamma: float = 0.95  # REFERENCE.md (the authors' code)
    target_tau: float = 0.01  # θ̄ ← τθ + (1 − τ)θ̄ after every gradient step (the authors' code)
    max_grad_norm: float = 0.0  # global-norm gradient clip; 0 = none (the authors clip nothing)
    hidden_sizes: tuple[int, ...] = (100, 100)  # ReLU layers of every network (the authors' code: 2 x 100)
    truncation_bootstrap: bool = True  # bootstrap at a time limit (terminated steps never bootstrap)
    standardise_rewards: bool = False  # the core's running reward standardisation (off: the authors')

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "n_envs", "rollout_length", "batch_size", "buffer_size", "updates_per_iteration")
        fields.layer_widths(self)
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed buffer_size ({self.buffer_size})")
        if self.n_envs > self.buffer_size:
            raise ValueError(f"n_envs ({self.n_envs}) cannot exceed buffer_size ({self.buffer_size}): each iteration "
                             "adds n_envs windows to the replay buffer")
        fields.in_range(self, "learning_starts", 0, self.buffer_size, " (buffer_size)")
        fields.in_unit_interval(self, "target_tau", open_low=True)
        fields.in_unit_interval(self, "gamma")
        fields.positive(self, "lr")
        fields.at_least(self, 0.0, "max_grad_norm")  # 0 = no clipping

    @property
    def recent_buffer(self):
        """(size, batch) of the core's recent-windows buffer, or None (see `offpolicy`)."""
        return None


@dataclass(frozen=True)
class RecentBatchFields(ContinuousOffPolicyConfig):
    """An opponent model (DDPG-OM) or prior (ROMMEO-AC) is fitted on "the most recent batch" of transitions
    (REFERENCE.md), drawn from the core's buffer of the most recent windows."""

    recent_size: int = 0  # windows fitted on; 0 = batch_size (REFERENCE.md: "the most recent batch")

    def __post_init__(self):
        super().__post_init__()
        fields.in_range(self, "recent_size", 0, self.buffer_size, " (buffer_size; 0 = batch_size)")
        if 0 < self.recent_size < self.n_envs:
            raise ValueError(f"recent_size ({self.recent_size}) must be 0 (= batch_size) or >= n_envs ({self.n_envs}): "
                             "each iteration adds n_envs windows to the buffer of the most recent ones")
        if self.recent_size == 0 and self.batch_size < self.n_envs:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= n_envs ({self.n_envs}) when recent_size is 0: "
                             "the buffer of the most recent windows then holds batch_size windows, and each "
                             "iteration adds n_envs")

    @property
    def recent_buffer(self):
        """(size, batch) of the core's recent-windows buffer: the last `recent_size` windows, all of them."""
        size = self.recent_size or self.batch_size
        return size, size


@dataclass(frozen=True)
class NoiseExplorationConfig(ContinuousOffPolicyConfig):
    """Deterministic actors explore with Gaussian noise on [−1, 1]: σ = noise_levels[k] from env step
    noise_boundaries[k−1] on (the authors' DDPG-family schedule, REFERENCE.md)."""

    noise_levels: tuple[float, ...] = (0.5, 0.1, 0.05, 0.01)  # σ 0.5 → 0.1 → 0.05 → 0.01 (REFERENCE.md)
    noise_boundaries: tuple[int, ...] = (1000, 2000, 3000)  # env steps of the changes (REFERENCE.md)

    def __post_init__(self):
        super().__post_init__()
        if len(self.noise_levels) != len(self.noise_boundaries) + 1:
            raise ValueError(f"noise_levels needs exactly one more entry than noise_boundaries, got "
                             f"{len(self.noise_levels)} levels and {len(self.noise_boundaries)} boundaries")
        if min(self.noise_levels) < 0:
            raise ValueError(f"noise_levels must be finite numbers >= 0, got {self.noise_levels}")
        if min(self.noise_boundaries, default=0) < 0 or list(self.noise_boundaries) != sorted(self.noise_boundaries):
            raise ValueError(f"noise_boundaries must be increasing integers >= 0 (env steps), got {self.noise_boundaries}")


@dataclass(frozen=True)
class AnnealedEntropyConfig(ContinuousOffPolicyConfig):
    """Soft learners' entropy weight α_t = alpha_final + alpha_initial · exp(−alpha_decay · max(t − alpha_delay, 0))
    in env steps t: 0.1 + 500·exp(−0.1·max(t − 10, 0)) (the ROMMEO authors' code, which gives the same
    schedule to ROMMEO-AC, PR2-AC and MASQL; REFERENCE.md)."""

    alpha_final: float = 0.1  # REFERENCE.md (the ROMMEO authors' code)
    alpha_initial: float = 500.0  # REFERENCE.md (the ROMMEO authors' code)
    alpha_decay: float = 0.1  # REFERENCE.md (the ROMMEO authors' code)
    alpha_delay: int = 10  # REFERENCE.md (the ROMMEO authors' code)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "alpha_final")
        fields.at_least(self, 0.0, "alpha_initial", "alpha_decay")
        fields.at_least(self, 0, "alpha_delay")


# ---- shared helpers -------------------------------------------------------------------------------------


def noise_level(config: NoiseExplorationConfig, env_steps) -> jax.Array:
    """σ_t: the piecewise-constant exploration schedule (REFERENCE.md)."""
    k = jnp.searchsorted(jnp.asarray(config.noise_boundaries), env_steps, side="right")
    return jnp.asarray(config.noise_levels, jnp.float32)[k]


def noisy_action(spec, config: NoiseExplorationConfig, env_steps, y, key, explore: bool) -> jax.Array:
    """A deterministic actor's output y on [−1, 1] to env units; exploring: y + σ_t·ε clipped to the box."""
    if explore:
        y = jnp.clip(y + noise_level(config, env_steps) * jax.random.normal(key, y.shape), -1.0, 1.0)
    return from_unit(y, spec.low, spec.high)


def entropy_weight(config: AnnealedEntropyConfig, env_steps) -> jax.Array:
    """α_t of `AnnealedEntropyConfig` at env step t."""
    t = jnp.maximum(jnp.asarray(env_steps, jnp.float32) - config.alpha_delay, 0.0)
    return config.alpha_final + config.alpha_initial * jnp.exp(-config.alpha_decay * t)


def split_batch(batch: Transition, config) -> tuple[Transition, Transition | None]:
    """The core's sampled windows [B (+ B_recent), T, ...] -> (main, recent) transitions, each flattened to
    [B·T, ...]. The recent part is present when the config fits something on the recent windows."""
    def flat(b):
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), b._replace(agent_carry=()))

    main = jax.tree.map(lambda x: x[:config.batch_size], batch._replace(agent_carry=()))
    if config.recent_buffer is None:
        return flat(main), None
    recent = jax.tree.map(lambda x: x[config.batch_size:], batch._replace(agent_carry=()))
    return flat(main), flat(recent)


def td_target(batch: Transition, next_value, config) -> jax.Array:
    """y = r_i + γ (1 − term) V_i(s′) per agent [B, N]; `term` is the env's termination (and, with
    truncation_bootstrap=False, its time limit too)."""
    term = batch.terminated if config.truncation_bootstrap else jnp.logical_or(batch.terminated, batch.truncated)
    return batch.reward + config.gamma * (1.0 - term.astype(jnp.float32))[:, None] * next_value


def check_spec(spec, name: str, min_agents: int = 1):
    if spec.discrete:
        raise ValueError(f"{name} needs continuous actions; {spec.name!r} has discrete actions")
    if spec.n_agents < min_agents:
        raise ValueError(f"{name} needs at least {min_agents} agents; {spec.name!r} has {spec.n_agents}")
