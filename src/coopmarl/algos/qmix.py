"""Value decomposition on one off-policy core: IQL, VDN, QMIX, OW-QMIX, CW-QMIX, QPLEX and ReMIX.

Each algorithm's config class fixes two choices (ClassVars, not keys) and has exactly the keys they read
(field groups: the off-policy core's keys + `DoubleQFields`, `HypernetFields`/`QMIXMixerFields`,
`WQMIXFields` or `ReMIXFields`):
- `mixer`: "none" (IQL: every agent learns Q^n from the team reward), "vdn", "qmix", "qplex".
- `weighting`: "none"; "ow"/"cw" = Weighted QMIX (Rashid et al. 2020): an unrestricted central Q* is
  learnt beside Q_tot, both regress on y = r + γ·Q̄*(s′, argmax Q_tot), and Q_tot's squared error is
  weighted 1 for "good" transitions, `weight` otherwise; "remix" = ReMIX (ReMIX Thm 1, eq. 7): the
  weight is the regret-minimising projection weight built from four terms (see `remix_weights`).

The central Q* (WQMIX, ReMIX) = its own agent networks + a feed-forward mixer of the state and those
agents' utilities of the taken actions (WQMIX's `ff` central mixer: `central_layers` 3, embed 256); its loss
is unweighted and weights never carry gradient. CW-QMIX values Q_tot's greedy joint action with the target
central network (WQMIX `max_q_learner.py`; `cw_greedy_value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, over_rows, register_algo, taken
from coopmarl.algos.fields import AlgoConfig
from coopmarl.nets.mixers import CentralMixer, QMixer, QPLEXMixer, VDNMixer


Mixer = Literal["none", "vdn", "qmix", "qplex"]
Weighting = Literal["none", "ow", "cw", "remix"]


@dataclass(frozen=True)
class ValueDecompositionConfig(op.OffPolicyConfig):
    """The base of this file's algorithms: the off-policy core's keys; `mixer` and `weighting` are fixed by
    each algorithm's class (ClassVars, not keys). Defaults = EPyMARL's QMIX (MAOSQL's setting; REFERENCE.md)."""

    mixer: ClassVar[Mixer]  # Q_tot's form; fixed by each class below
    weighting: ClassVar[Weighting]  # the weighting of Q_tot's loss; fixed by each class below
    # what one replay item is (`offpolicy.step_mask`). "windows": each iteration continues every env where it
    # stopped and its `rollout_length` steps are one item, replayed from the agents' stored carry (fast: any
    # length, no idle steps; ours, and EPyMARL's when episodes run to their limit). "episodes": pymarl / pymarl2's
    # episode buffer (`episode_runner.py`, `parallel_runner.py`) — every iteration starts each env afresh (reset,
    # memory zero) and runs the env's horizon, so an item is one whole episode replayed from a zero recurrent
    # state; the steps after an episode that ended early (its env has begun the next one) are masked out of the
    # loss, as pymarl2's padding is. With n_envs 8 and one update per iteration this is pymarl2's cadence: a
    # gradient step per 8 episodes, the target copied every `target_update_episodes` episodes
    replay: Literal["windows", "episodes"] = "windows"

    def check_env(self, spec):
        super().check_env(spec)
        if self.replay != "episodes":
            return
        if spec.horizon <= 0:
            raise ValueError(f"replay=episodes replays whole episodes, but {spec.name!r} has no episode limit "
                             "(horizon); use replay=windows with a rollout_length")
        if self.rollout_length not in (0, spec.horizon):
            raise ValueError(f"replay=episodes replays whole episodes: rollout_length must be 0 (the env's horizon, "
                             f"{spec.horizon}), got {self.rollout_length}")


# ---- field groups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoubleQFields(AlgoConfig):
    """The bootstrap action of the unweighted learners (the weighted ones always take argmax Q_tot(s′, ·))."""

    double_q: bool = True  # next action from the online agents, valued by the target (EPyMARL)


@dataclass(frozen=True)
class HypernetFields(AlgoConfig):
    """The width of the state-conditioned hypernetworks (QMIX's mixer, QPLEX's weights and attention)."""

    hypernet_embed: int = 64  # EPyMARL / pymarl2 `hypernet_embed`

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "hypernet_embed")


@dataclass(frozen=True)
class QMIXMixerFields(HypernetFields):
    """QMIX's monotonic hypernetwork mixer."""

    mixing_embed: int = 32  # QMIX mixing width (EPyMARL / pymarl2 `mixing_embed_dim`)

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "mixing_embed")


@dataclass(frozen=True)
class CentralQFields(AlgoConfig):
    """The unrestricted central Q* of WQMIX and ReMIX (its own agents + a feed-forward mixer)."""

    central_embed: int = 256  # WQMIX's unrestricted Q* mixer width (REFERENCE.md)
    central_layers: int = 3  # its ReLU layers of width central_embed (WQMIX `QMixerCentralFF`: 3; REFERENCE.md)

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "central_embed", "central_layers")


@dataclass(frozen=True)
class WQMIXFields(CentralQFields):
    """Weighted QMIX (Rashid et al. 2020): weight 1 for "good" transitions, `weight` otherwise."""

    weight: float = 0.1  # WQMIX α for "bad" transitions (0.1 predator-prey, 0.5 SMAC; REFERENCE.md)

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "weight")


@dataclass(frozen=True)
class CWFields(WQMIXFields):
    """CW-QMIX: which central network values the greedy joint action û in the "good" test y > Q̂*(s, û)."""

    # WQMIX's max_q_learner.py values û with the *target* central agents and mixer (`target_central_mixer`);
    # "online" = the current central Q* (this library's behaviour before 2026-12)
    cw_greedy_value: Literal["target", "online"] = "target"


@dataclass(frozen=True)
class ReMIXFields(CentralQFields):
    """ReMIX (paper 001): the terms of Thm 1, each switchable for the ablation (Fig. 5), and the on-policy
    buffer of the most recent windows that estimates d^π/μ."""

    remix_bellman_error: bool = True  # (B*Q*_{k-1} − Q_k): ReMIX Thm 1
    remix_underestimation: bool = True  # exp(Q*_{k-1} − Q_k): ReMIX Thm 1
    remix_mixer_gradient: bool = True  # Σ_j (1 − π^j) / f′_{s,Q^j} − 1: ReMIX Thm 1
    remix_on_policy: bool = True  # d^π/μ, via extra samples from a buffer of the most recent windows: ReMIX Alg. 1
    remix_gradient: Literal["lemma1", "autodiff"] = "lemma1"  # remix_mixer_gradient: f′ from ReMIX Lemma 1 or jax.grad
    # remix_mixer_gradient: π^j in Σ_j (1 − π^j)/f′ − 1. Thm 1 is derived for the Boltzmann policy of the agents'
    # utilities, π^a = e^{Q^a}/Σ e^{Q^a′} (ReMIX §4.1; App. C, Lemma 4); "epsilon_greedy" = the behaviour policy's
    # probability of the taken action (ours before 2026-12), which is ≈ 1 − ε for greedy actions, so the term
    # goes negative (clipped to weight w_min) on all-greedy transitions late in training
    remix_policy: Literal["boltzmann", "epsilon_greedy"] = "boltzmann"
    # remix_policy="boltzmann": its temperature T, π^a ∝ e^{Q^a/T} over available actions. 1 = Thm 1's form (no
    # temperature in the paper); a raw-reward env's Q gaps of a few units already make π near-greedy there
    remix_temperature: float = 1.0
    # how the scores E of Thm 1 become weights in [w_min, 1] (the paper maps them "to a given range" but gives no
    # mapping; §4.3). "rank": by the score's rank in the batch, w = w_min + (1 − w_min)·(share of the batch's
    # scores strictly below it) — spread evenly over the range, zero scores (overestimates) at w_min, only the
    # order of E used. Our default: E carries exp(Q*_{k−1} − Q_k), so it is heavy-tailed and "minmax" (linear
    # between the batch's min and max) is set by the batch's largest score — measured on predator-prey it left ~81%
    # of weights below 0.2, close to a constant w_min. "minmax": that linear map (ours before 2026-12). "mean":
    # w = clip(E / mean_batch(E), w_min, 1) — Thm 1's 1/Z* read literally as E_μ[w] = 1 (eq. 3), then clipped.
    weight_mapping: Literal["rank", "minmax", "mean"] = "rank"
    weight_min: float = 0.1  # weights mapped to [w_min, 1] (ReMIX Table 2; Fig. 4 tries 0.1, 0.5, 0.8)
    recent_buffer_size: int = 64  # remix_on_policy: windows in the on-policy buffer (REFERENCE.md: "small"; ours; 0 = none)
    recent_batch_size: int = 32  # remix_on_policy: windows sampled from it per gradient step (ReMIX gives none; ours)

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "weight_min")
        fields.positive(self, "remix_temperature")
        fields.at_least(self, 0, "recent_buffer_size", "recent_batch_size")
        if (self.recent_buffer_size > 0) != (self.recent_batch_size > 0):
            raise ValueError("set both recent_buffer_size and recent_batch_size, or neither")
        if self.recent_batch_size > self.recent_buffer_size:
            raise ValueError(f"recent_batch_size ({self.recent_batch_size}) cannot exceed recent_buffer_size "
                             f"({self.recent_buffer_size})")
        if 0 < self.recent_buffer_size < self.n_envs:
            raise ValueError(f"recent_buffer_size ({self.recent_buffer_size}) must be 0 (none) or >= n_envs "
                             f"({self.n_envs}): each iteration adds n_envs windows to the on-policy buffer")

    @property
    def recent_buffer(self):
        """(size, batch) of the on-policy buffer ReMIX samples from, or None (see `offpolicy`)."""
        if not self.remix_on_policy or self.recent_buffer_size <= 0:
            return None
        return self.recent_buffer_size, self.recent_batch_size


# ---- the registered algorithms ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IQLConfig(DoubleQFields, ValueDecompositionConfig):
    """Independent Q-learning: each agent's Q^n regresses on the team reward. Defaults: EPyMARL."""

    mixer: ClassVar[Mixer] = "none"
    weighting: ClassVar[Weighting] = "none"


@dataclass(frozen=True)
class VDNConfig(DoubleQFields, ValueDecompositionConfig):
    """VDN: Q_tot = Σ Q^n. Defaults: EPyMARL."""

    mixer: ClassVar[Mixer] = "vdn"
    weighting: ClassVar[Weighting] = "none"


@dataclass(frozen=True)
class QMIXConfig(QMIXMixerFields, DoubleQFields, ValueDecompositionConfig):
    """QMIX: monotonic hypernetwork mixer. Defaults: EPyMARL."""

    mixer: ClassVar[Mixer] = "qmix"
    weighting: ClassVar[Weighting] = "none"


@dataclass(frozen=True)
class QPLEXConfig(HypernetFields, DoubleQFields, ValueDecompositionConfig):
    """QPLEX: duplex dueling mixer with attention over state and joint action. Defaults: EPyMARL."""

    mixer: ClassVar[Mixer] = "qplex"
    weighting: ClassVar[Weighting] = "none"


@dataclass(frozen=True)
class OWQMIXConfig(WQMIXFields, QMIXMixerFields, ValueDecompositionConfig):
    """Optimistically-weighted QMIX (WQMIX) with an unrestricted central Q*. Defaults: WQMIX / pymarl2."""

    mixer: ClassVar[Mixer] = "qmix"
    weighting: ClassVar[Weighting] = "ow"


@dataclass(frozen=True)
class CWQMIXConfig(CWFields, QMIXMixerFields, ValueDecompositionConfig):
    """Centrally-weighted QMIX (WQMIX) with an unrestricted central Q*. Defaults: WQMIX / pymarl2."""

    mixer: ClassVar[Mixer] = "qmix"
    weighting: ClassVar[Weighting] = "cw"


@dataclass(frozen=True)
class ReMIXConfig(ReMIXFields, QMIXMixerFields, ValueDecompositionConfig):
    """ReMIX: QMIX with regret-minimising projection weights (Thm 1, eq. 7). Defaults: ReMIX Table 2 (batch 128,
    replay 10k, TD(λ) 0.6, lr 1e-3, ε over 100k, w_min 0.1)."""

    mixer: ClassVar[Mixer] = "qmix"
    weighting: ClassVar[Weighting] = "remix"
    batch_size: int = 128  # ReMIX Table 2
    buffer_size: int = 10_000  # ReMIX Table 2
    td_lambda: float = 0.6  # ReMIX Table 2
    lr: float = 1e-3  # ReMIX Table 2
    epsilon_start: float = 0.995  # ReMIX Table 2 (ε 0.995 → 0.05; REFERENCE.md)
    epsilon_anneal_steps: int = 100_000  # ReMIX Table 2


def make_mixer(config, n_agents: int):
    """Q_tot's mixer for `config.mixer` (None for independent learners), from the keys that mixer has."""
    if config.mixer == "none":
        return None
    if config.mixer == "vdn":
        return VDNMixer()
    if config.mixer == "qplex":
        return QPLEXMixer(n_agents, config.hypernet_embed)
    return QMixer(n_agents, config.mixing_embed, config.hypernet_embed)


def _nets(spec, config):
    agents = op.make_agents(spec, config)
    central = CentralMixer(config.central_embed, config.central_layers) if config.weighting != "none" else None
    return agents, make_mixer(config, spec.n_agents), central


def _mix(mixer, params, qs, state, actions, n_actions, vs):
    """Q_tot for every [..., N] slice (vmapped over the leading axes)."""
    onehot = jax.nn.one_hot(actions, n_actions)
    return over_rows(lambda q, s, a, v: mixer.apply(params, q, s, a, v), qs, state, onehot, vs, lead=qs.ndim - 1)


def init(key, spec, config, model=None):
    agents, mixer, central = _nets(spec, config)
    k_agents, k_mixer, k_central_agents, k_central = jax.random.split(key, 4)
    n, a = spec.n_agents, spec.n_actions
    qs, s, u = jnp.zeros(n), jnp.zeros(spec.state_dim), jnp.zeros((n, a))
    params = {"agents": agents.init(k_agents)}
    if mixer is not None:
        params["mixer"] = mixer.init(k_mixer, qs, s, u, qs)
    if central is not None:
        params["central_agents"] = agents.init(k_central_agents)
        params["central"] = central.init(k_central, qs, s)
    return op.init_state(params, spec, config, agents.initial_carry())


def initial_carry(spec, config):
    return op.make_agents(spec, config).initial_carry()


def act(state, obs, avail_actions, key, *, carry, explore, config):
    agents = op.agents_for(*obs.shape, avail_actions.shape[-1], config)
    carry, q = agents.apply(state.params["agents"], carry, obs)
    if not explore:
        actions = op.masked_argmax(q, avail_actions)
    else:
        actions = op.epsilon_greedy(key, q, avail_actions, op.epsilon(config, state.env_steps))
    return actions, agents.with_action(carry, actions)


def remix_weights(q_tot, target, q_star_prev, pi_taken, mixer_grad, config, valid=None):
    """ReMIX Thm 1 (eq. 4) as Alg. 1 uses it, per transition:

        E = (B*Q*_{k−1} − Q_k) · exp(Q*_{k−1} − Q_k) · (Σ_j (1 − π^j) / f′_{s,Q^j} − 1)   if Q_k ≤ B*Q*_{k−1}
        E = 0 (the ε of Thm 1)                                                        if Q_k >  B*Q*_{k−1}

    then mapped to [w_min, 1] over the batch (`map_weights`, by `weight_mapping`), the paper's stand-in for the
    unknown 1/Z*. Disabled terms count as 1; the overestimate condition always applies. Weights are constants
    (no gradient). `pi_taken` [..., N] = each agent's probability of its taken action under `remix_policy`
    (`remix_policy_probs`); `mixer_grad` [..., N] = f′. Negative products (possible when Σ (1 − π)/f′ < 1) are
    clipped to 0: weights are non-negative. `valid` [...] (or None: all): the transitions that count — the
    mapping sees only those (`offpolicy.step_mask`).
    """
    under = q_tot <= target
    e = jnp.ones_like(q_tot)
    if config.remix_bellman_error:
        e = e * (target - q_tot)
    if config.remix_underestimation:
        e = e * jnp.exp(jnp.clip(q_star_prev - q_tot, -20.0, 20.0))
    if config.remix_mixer_gradient:
        e = e * (jnp.sum((1.0 - pi_taken) / jnp.maximum(mixer_grad, 1e-6), -1) - 1.0)
    e = jnp.where(under, jnp.maximum(e, 0.0), 0.0)
    return jax.lax.stop_gradient(map_weights(e, config, valid))


def map_weights(scores, config, valid=None):
    """Non-negative scores [...] -> weights in [w_min, 1] over the whole batch, by `config.weight_mapping`:
    "rank" (w_min + (1 − w_min) · share of the other scores strictly below; ties share the lowest rank),
    "minmax" (linear from the batch's min to its max) or "mean" (scores / their batch mean, clipped).
    `valid` (1 / 0 per score, or None: all): the batch is the valid scores only (the others' weights are unused)."""
    w_min = config.weight_min
    ok = jnp.ones(scores.shape, bool) if valid is None else valid > 0
    n = jnp.maximum(jnp.sum(ok), 1)
    if config.weight_mapping == "rank":  # an invalid score sorts last (+inf), never below a valid one
        flat = jnp.where(ok, scores, jnp.inf).reshape(-1)
        below = jnp.searchsorted(jnp.sort(flat), flat, side="left").reshape(scores.shape)
        share = below.astype(jnp.float32) / jnp.maximum(n - 1, 1)
    elif config.weight_mapping == "minmax":
        lo, hi = jnp.min(jnp.where(ok, scores, jnp.inf)), jnp.max(jnp.where(ok, scores, -jnp.inf))
        share = (scores - lo) / jnp.maximum(hi - lo, 1e-8)
    else:  # "mean"
        return jnp.where(ok, jnp.clip(scores / jnp.maximum(jnp.sum(scores * ok) / n, 1e-8), w_min, 1.0), w_min)
    return jnp.where(ok, w_min + (1.0 - w_min) * share, w_min)


def remix_policy_probs(q, avail, config, env_steps):
    """π^n(·) [..., N, A] of ReMIX's mixer-gradient term (`remix_policy`): Thm 1's Boltzmann policy of the agents'
    utilities over their available actions, or the ε-greedy behaviour policy. No gradient."""
    q = jax.lax.stop_gradient(q)
    if config.remix_policy == "boltzmann":
        return jax.nn.softmax(jnp.where(avail, q / config.remix_temperature, -jnp.inf), axis=-1)
    return op.epsilon_greedy_probs(q, avail, op.epsilon(config, env_steps))



def loss_fn(params, target_params, batch, key, config, env_steps):
    spec_n, n_actions = batch.obs.shape[-2], batch.avail_actions.shape[-1]
    agents = op.agents_for(spec_n, batch.obs.shape[-1], n_actions, config)
    mixer = make_mixer(config, spec_n)
    (q, q_next), (_, tq_next) = op.unroll_batches(agents, (params["agents"], target_params["agents"]), batch)
    q_taken = taken(q, batch.actions)  # [B, T, N]
    avail, next_avail = batch.avail_actions, batch.next_avail_actions
    mask = op.step_mask(batch, config)  # [B, T]: the steps that count (None: all; `replay`)
    mean = lambda x: op.masked_mean(x, mask)  # noqa: E731
    metrics = {}

    if config.weighting == "none":
        # next actions: online greedy (double Q) or target greedy
        next_actions = op.masked_argmax(jax.lax.stop_gradient(q_next) if config.double_q else tq_next, next_avail)
        next_values = taken(tq_next, next_actions)  # [B, T, N]
        if mixer is None:  # IQL: each agent regresses on the team reward
            target = op.batch_lambda_returns(batch, next_values, config)
            loss = mean((q_taken - jax.lax.stop_gradient(target)) ** 2)
            return loss, {"q_taken": mean(q_taken)}
        q_tot = _mix(mixer, params["mixer"], q_taken, batch.global_state, batch.actions, n_actions,
                     op.masked_max(q, avail))
        next_tot = _mix(mixer, target_params["mixer"], next_values, batch.next_global_state, next_actions,
                        n_actions, op.masked_max(tq_next, next_avail))
        target = op.batch_lambda_returns(batch, next_tot, config)
        loss = mean((q_tot - jax.lax.stop_gradient(target)) ** 2)
        return loss, {"q_tot": mean(q_tot), "target": mean(target)}

    # ---- weighted: WQMIX / ReMIX, with the unrestricted central Q* ----
    central = CentralMixer(config.central_embed, config.central_layers)
    (cq, cq_next), (tcq, tcq_next) = op.unroll_batches(
        agents, (params["central_agents"], target_params["central_agents"]), batch)
    q_tot = _mix(mixer, params["mixer"], q_taken, batch.global_state, batch.actions, n_actions, None)
    q_star = _mix(central, params["central"], taken(cq, batch.actions), batch.global_state, batch.actions,
                  n_actions, None)
    greedy_next = op.masked_argmax(jax.lax.stop_gradient(q_next), next_avail)  # argmax Q_tot(s′, ·) (IGM)
    next_star = _mix(central, target_params["central"], taken(tcq_next, greedy_next), batch.next_global_state,
                     greedy_next, n_actions, None)
    target = jax.lax.stop_gradient(op.batch_lambda_returns(batch, next_star, config))
    central_loss = mean((q_star - target) ** 2)  # unweighted

    if config.weighting == "ow":  # optimistic: full weight where Q_tot underestimates
        w = jnp.where(q_tot < target, 1.0, config.weight)
    elif config.weighting == "cw":  # centrally weighted: full weight on Q_tot's argmax û, or where y > Q̂*(s, û)
        greedy = op.masked_argmax(jax.lax.stop_gradient(q), avail)
        w = cw_weights(batch.actions, greedy, target, _cw_greedy_value(agents, central, params, target_params,
                                                                       batch, greedy, cq, config, tcq), config)
    else:  # remix
        q_star_prev = _mix(central, target_params["central"], taken(tcq, batch.actions), batch.global_state,
                           batch.actions, n_actions, None)
        pi_taken = taken(remix_policy_probs(q, avail, config, env_steps), batch.actions)
        grad = (mixer_gradient(mixer, params["mixer"], q_taken, batch.global_state, config.remix_gradient)
                if config.remix_mixer_gradient else None)
        w = remix_weights(q_tot, target, q_star_prev, pi_taken, grad, config, mask)
        hist = jnp.histogram(w, bins=10, range=(config.weight_min, 1.0),
                             weights=None if mask is None else mask)[0] / (w.size if mask is None else
                                                                          jnp.maximum(jnp.sum(mask), 1.0))
        metrics.update({f"weight_hist_{i}": hist[i] for i in range(10)})
    w = jax.lax.stop_gradient(w)
    qmix_loss = mean(w * (q_tot - target) ** 2)  # ReMIX eq. (7) / WQMIX
    metrics.update(q_tot=mean(q_tot), q_star=mean(q_star), weight_mean=mean(w),
                   central_loss=central_loss, qmix_loss=qmix_loss)
    return qmix_loss + central_loss, metrics


def _cw_greedy_value(agents, central, params, target_params, batch, greedy, cq, config, tcq=None):
    """Q̂*(s, û) [B, T] of CW-QMIX's test: the target central agents and mixer (WQMIX max_q_learner.py:
    `target_central_mixer(central_target_max_agent_qvals)`), or the online ones (`cw_greedy_value`). `tcq`: the
    target central agents' values when the caller has them (else they are unrolled here)."""
    n_actions = batch.avail_actions.shape[-1]
    if config.cw_greedy_value == "target":
        cq = tcq if tcq is not None else op.unroll_batch(agents, target_params["central_agents"], batch)[0]
        central_params = target_params["central"]
    else:
        central_params = params["central"]
    return _mix(central, central_params, taken(cq, greedy), batch.global_state, greedy, n_actions, None)


def cw_weights(actions, greedy, target, q_star_greedy, config):
    """CW-QMIX (WQMIX eq. 6 / max_q_learner.py): 1 where the joint action is Q_tot's argmax û or y > Q̂*(s, û),
    `weight` otherwise. actions, greedy [..., N]; target, q_star_greedy [...]."""
    is_greedy = jnp.all(actions == greedy, -1)
    return jnp.where(is_greedy | (target > q_star_greedy), 1.0, config.weight)


def mixer_gradient(mixer, params, agent_qs, state, how: str = "lemma1"):
    """f′_{s,Q^a} = ∂Q_tot/∂Q^a for every transition [..., N]: ReMIX Lemma 1 or automatic differentiation."""
    if how == "lemma1":
        f = lambda q, s: mixer.apply(params, q, s, method="gradient")  # noqa: E731
    else:
        f = jax.grad(lambda q, s: mixer.apply(params, q, s))
    return jax.lax.stop_gradient(over_rows(f, agent_qs, state, lead=agent_qs.ndim - 1))


update = op.make_update(loss_fn)


def _summary(config, env):
    return {"mixer": config.mixer, "weighting": config.weighting}


_ALGOS = (
    ("iql", IQLConfig, "Independent Q-learning: each agent's Q^n regresses on the team reward", "EPyMARL"),
    ("vdn", VDNConfig, "VDN: Q_tot = Σ Q^n", "EPyMARL"),
    ("qmix", QMIXConfig, "QMIX: monotonic hypernetwork mixer", "EPyMARL"),
    ("ow-qmix", OWQMIXConfig, "Optimistically-weighted QMIX (WQMIX) with an unrestricted central Q*", "WQMIX / pymarl2"),
    ("cw-qmix", CWQMIXConfig, "Centrally-weighted QMIX (WQMIX) with an unrestricted central Q*", "WQMIX / pymarl2"),
    ("qplex", QPLEXConfig, "QPLEX: duplex dueling mixer with attention over state and joint action", "EPyMARL"),
    ("remix", ReMIXConfig, "ReMIX: QMIX with regret-minimising projection weights (Thm 1, eq. 7)",
     "ReMIX Table 2 (batch 128, replay 10k, TD(λ) 0.6, lr 1e-3, ε over 100k, w_min 0.1)"),
)
for _name, _cls, _description, _paper in _ALGOS:
    register_algo(Algorithm(
        name=_name, description=_description, config_cls=_cls, init=init, act=act, update=update,
        warmup_iterations=op.warmup_iterations,
        requires=("discrete",), paper=_paper, summary=_summary, initial_carry=initial_carry,
        default_total_steps=200_000,
    ))
