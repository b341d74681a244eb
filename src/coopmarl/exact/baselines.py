"""Tabular baselines of the ROMMEO paper's iterated-matrix-game study (Fig. 1):

- IQL       independent Q-learning: each agent learns Q^n(s, a^n), epsilon-greedy.
- JAL       joint-action learners (Claus & Boutilier 1998): Q^n(s, joint a) + empirical beliefs
            about the other agents' actions, epsilon-greedy on the expected value.
- FMQ       frequency maximum Q (Kapetanakis & Kudenko 2002): Boltzmann on Q + c·freq(maxR)·maxR.
- WoLF-PHC  win-or-learn-fast policy hill climbing (Bowling & Veloso 2001, 2002).

Every learner here is sample-based: the runner feeds it one transition per update (the newest).
Agent n acts on `obs[n]` (state index = argmax of the one-hot obs) and its own tables only; all
tables carry the agents on the leading axis. Schedules count updates (= env steps) in `state.step`.

Where ROMMEO's §5.1 comparison is concerned, the authors' tabular code (the `maci` package:
`BaseQAgent`, `JALAgent`, `FMQAgent`) fixes γ = 0.95, the learning rate α_t = 10000 / (10000 + t),
ε = 0.1 and Q initialised uniform[0, 1); those are the defaults below unless the method's own
paper fixes a value (then that paper is cited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.algos import fields
from coopmarl.algos.base import (Algorithm, epsilon_mix, greedy_probs, last_transition,
                                 register_algo, sample_actions, state_index)
from coopmarl.algos.fields import AlgoConfig


# ---- config field groups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularLearnerConfig(AlgoConfig):
    """What every sample-based tabular learner reads. It learns from one transition per update (the newest),
    so an iteration is one step of one env: `rollout_length` and `n_envs` are fixed at 1 (not keys)."""

    rollout_length: ClassVar[int] = 1
    n_envs: ClassVar[int] = 1
    gamma: float = 0.95  # ROMMEO authors' code, γ for the tabular learners

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "gamma")


@dataclass(frozen=True)
class UniformInitFields(AlgoConfig):
    """Tables initialised uniform[0, q_init): breaks argmax ties at random (the ROMMEO authors' code)."""

    q_init: float = 1.0  # Q ~ uniform[0, q_init) (ROMMEO authors' code)

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 0.0, "q_init")


@dataclass(frozen=True)
class DecayingRateFields(AlgoConfig):
    """The learning rate α_t = d / (d + t) (the ROMMEO authors' `step_decay`)."""

    lr_decay_steps: float = 10_000.0  # d in α_t = d / (d + t) (ROMMEO authors' `step_decay`)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "lr_decay_steps")


@dataclass(frozen=True)
class EpsilonFields(AlgoConfig):
    """Exploration: a uniformly random action with probability ε."""

    epsilon: float = 0.1  # ROMMEO authors' code (`BaseQAgent`), ε = 0.1

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "epsilon")


@dataclass(frozen=True)
class BoltzmannFields(AlgoConfig):
    """Boltzmann exploration with Kapetanakis & Kudenko's schedule T(t) = exp(-temp_decay · t) · max_temp + 1."""

    max_temp: float = 499.0  # Kapetanakis & Kudenko 2002
    temp_decay: float = 0.006  # s in Kapetanakis & Kudenko 2002

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 0.0, "max_temp", "temp_decay")


# ---- IQL -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularIQLConfig(EpsilonFields, UniformInitFields, DecayingRateFields, TabularLearnerConfig):
    """Independent Q-learners with the same schedule and initialisation as the other tabular baselines
    (the ROMMEO authors' code): Q ~ U[0, q_init), lr_t = d / (d + t), epsilon-greedy with ε_t = ε · d/(d + t)."""


class IQLState(NamedTuple):
    q: jax.Array  # [N, S, A]
    step: jax.Array


def iql_init(key, spec, config: TabularIQLConfig, model=None) -> IQLState:
    return IQLState(_init_table(key, (spec.n_agents, spec.obs_dim, spec.n_actions), config.q_init), jnp.int32(0))


def _iql_epsilon(config, step):
    return config.epsilon * hyperbolic_decay(config.lr_decay_steps, step)


def iql_act(state: IQLState, obs, avail, key, *, explore: bool, config: TabularIQLConfig):
    s = state_index(obs)  # [N]
    q = state.q[jnp.arange(obs.shape[0]), s]  # [N, A]
    probs = greedy_probs(jnp.where(avail, q, -jnp.inf))
    if explore:
        probs = epsilon_mix(probs, _iql_epsilon(config, state.step))
    return sample_actions(key, probs)


def iql_update(state: IQLState, data, key, *, config: TabularIQLConfig):
    tr = last_transition(data)
    agents = jnp.arange(tr.actions.shape[0])
    s, s_next = state_index(tr.obs), state_index(tr.next_obs)
    q_sa = state.q[agents, s, tr.actions]
    bootstrap = jnp.where(tr.terminated, 0.0, state.q[agents, s_next].max(-1))
    td = tr.reward + config.gamma * bootstrap - q_sa
    lr = hyperbolic_decay(config.lr_decay_steps, state.step)
    q = state.q.at[agents, s, tr.actions].add(lr * td)
    return IQLState(q, state.step + 1), {"td_error": jnp.mean(jnp.abs(td)), "epsilon": _iql_epsilon(config, state.step)}


def iql_policy(state: IQLState, config):
    return greedy_probs(state.q)


IQL = register_algo(Algorithm(
    name="tabular-iql", description="independent tabular Q-learning, epsilon-greedy", config_cls=TabularIQLConfig,
    init=iql_init, act=iql_act, update=iql_update, policy=iql_policy, requires=("discrete", "tabular"),
    paper="ROMMEO Fig. 1 baseline (Claus & Boutilier 1998 independent learner)",
))


# ---- shared pieces ---------------------------------------------------------------------------------


def hyperbolic_decay(decay_steps: float, t: jax.Array) -> jax.Array:
    """decay_steps / (decay_steps + t): the ROMMEO authors' `step_decay` (1 at t = 0)."""
    return decay_steps / (decay_steps + jnp.asarray(t, jnp.float32))


def _init_table(key, shape, q_init: float) -> jax.Array:
    """Q ~ uniform[0, q_init) (the ROMMEO authors' code: breaks argmax ties at random, so no learner
    is pulled toward action 0 by first-index tie-breaking); zeros when q_init == 0."""
    if q_init == 0.0:
        return jnp.zeros(shape)
    return q_init * jax.random.uniform(key, shape)


def _rows(table: jax.Array, s: jax.Array) -> jax.Array:
    """Agent n's row table[n, s[n]] for every agent: [N, S, ...] x [N] -> [N, ...]."""
    return table[jnp.arange(table.shape[0]), s]


def _masked_greedy(values, avail):
    return greedy_probs(jnp.where(avail, values, -jnp.inf))


def boltzmann_temperature(config, step) -> jax.Array:
    """Kapetanakis & Kudenko 2002: T(t) = exp(-s · t) · max_temp + 1."""
    return jnp.exp(-config.temp_decay * jnp.asarray(step, jnp.float32)) * config.max_temp + 1.0


def _boltzmann_sample(key, values, avail, temperature):
    """One action per agent from softmax(values / T) over the available actions; values [N, A]."""
    logits = jnp.where(avail, values / temperature, -jnp.inf)
    keys = jax.random.split(key, values.shape[0])
    return jax.vmap(jax.random.categorical)(keys, logits).astype(jnp.int32)


def _joint_action_table(n_agents: int, n_actions: int) -> np.ndarray:
    """All joint actions [J, N] in the flat order of `TabularGame` (agent 0 most significant)."""
    grids = np.meshgrid(*[np.arange(n_actions)] * n_agents, indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=-1).astype(np.int32)


def _joint_index(actions: jax.Array, n_actions: int) -> jax.Array:
    n = actions.shape[-1]
    weights = n_actions ** jnp.arange(n - 1, -1, -1)
    return jnp.sum(actions.astype(jnp.int32) * weights, axis=-1)


# ---- JAL -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JALConfig(BoltzmannFields, EpsilonFields, UniformInitFields, DecayingRateFields, TabularLearnerConfig):
    """Joint-action learner (Claus & Boutilier 1998).

    exploration="epsilon" (default): epsilon-greedy on EV with ε_t = ε · d / (d + t), as the ROMMEO
    authors' `JALAgent` — the JAL that ROMMEO Fig. 1 compares against. exploration="boltzmann":
    Boltzmann on EV (the exploration Claus & Boutilier use) with Kapetanakis & Kudenko's schedule
    T(t) = exp(-temp_decay · t) · max_temp + 1 (`max_temp`, `temp_decay`). Beliefs are C&B's empirical
    frequencies over the whole history (the authors' code uses the last 50 transitions instead)."""

    exploration: Literal["epsilon", "boltzmann"] = "epsilon"  # ROMMEO authors' `JALAgent`; see the docstring
    epsilon: float = 0.1  # exploration="epsilon": ε_t = ε · d / (d + t) (ROMMEO authors' `JALAgent`)


class JALState(NamedTuple):
    q: jax.Array  # [N, S, J] agent n's value of joint action j in state s (J = A**N, flat joint order)
    counts: jax.Array  # [N, N, S, A] counts[n, m, s, a]: times agent n saw agent m play a in s
    step: jax.Array


def jal_init(key, spec, config: JALConfig, model=None) -> JALState:
    n, s, a = spec.n_agents, spec.obs_dim, spec.n_actions
    q = _init_table(key, (n, s, a**n), config.q_init)
    return JALState(q, jnp.zeros((n, n, s, a)), jnp.int32(0))


def jal_beliefs(counts: jax.Array) -> jax.Array:
    """Empirical action frequencies (uniform before any observation), same shape as `counts`."""
    total = counts.sum(-1, keepdims=True)
    return jnp.where(total > 0, counts / jnp.maximum(total, 1.0), 1.0 / counts.shape[-1])


def _jal_ev_rows(q_rows: jax.Array, belief_rows: jax.Array) -> jax.Array:
    """EV^n(a) = Σ_{a^-n} Q^n(a^n, a^-n) Π_{m≠n} f^n_m(a^m) for each agent n at its own state.

    q_rows [N, J]: agent n's joint-action values; belief_rows [N, N, A]: agent n's belief about m.
    Returns [N, A]."""
    n_agents, n_actions = belief_rows.shape[0], belief_rows.shape[-1]
    ja = jnp.asarray(_joint_action_table(n_agents, n_actions))  # [J, N]
    # f[n, m, j] = belief_rows[n, m, ja[j, m]]
    f = jnp.take_along_axis(belief_rows, jnp.broadcast_to(ja.T, (n_agents,) + ja.T.shape), axis=-1)
    f = jnp.where(jnp.eye(n_agents, dtype=bool)[:, :, None], 1.0, f)  # own action is not averaged
    weights = jnp.prod(f, axis=1)  # [N, J]
    own = jax.nn.one_hot(ja, n_actions, dtype=q_rows.dtype)  # [J, N, A]
    return jnp.einsum("nj,nj,jna->na", q_rows, weights, own)


def jal_expected_values(state: JALState) -> jax.Array:
    """EV^n(s, a^n) for every agent and state: [N, S, A]."""
    beliefs = jal_beliefs(state.counts)  # [N, N, S, A]
    ev = jax.vmap(_jal_ev_rows, in_axes=(1, 2), out_axes=1)(state.q, beliefs)
    return ev


def _jal_epsilon(config: JALConfig, step):
    return config.epsilon * hyperbolic_decay(config.lr_decay_steps, step)


def _jal_ev_at(state: JALState, s: jax.Array) -> jax.Array:
    """[N, A]: agent n's expected values at its own state s[n]."""
    beliefs = jal_beliefs(state.counts)  # [N, N, S, A]
    n = s.shape[0]
    belief_rows = beliefs[jnp.arange(n)[:, None], jnp.arange(n)[None, :], s[:, None]]  # [N, N, A]
    return _jal_ev_rows(_rows(state.q, s), belief_rows)


def jal_act(state: JALState, obs, avail, key, *, explore: bool, config: JALConfig):
    s = state_index(obs)  # [N]
    ev = _jal_ev_at(state, s)
    if explore and config.exploration == "boltzmann":
        return _boltzmann_sample(key, ev, avail, boltzmann_temperature(config, state.step))
    probs = _masked_greedy(ev, avail)
    if explore:
        probs = epsilon_mix(probs, _jal_epsilon(config, state.step))
    return sample_actions(key, probs)


def jal_update(state: JALState, data, key, *, config: JALConfig):
    tr = last_transition(data)
    n, n_actions = tr.actions.shape[0], state.counts.shape[-1]
    agents = jnp.arange(n)
    s, s_next = state_index(tr.obs), state_index(tr.next_obs)
    # every agent observes the joint action: agent n counts agent m's action in the state n is in
    counts = state.counts.at[agents[:, None], agents[None, :], s[:, None], tr.actions[None, :]].add(1.0)
    state = state._replace(counts=counts)
    j = _joint_index(tr.actions, n_actions)
    q_sa = state.q[agents, s, j]
    bootstrap = jnp.where(tr.terminated, 0.0, _jal_ev_at(state, s_next).max(-1))
    td = tr.reward + config.gamma * bootstrap - q_sa
    lr = hyperbolic_decay(config.lr_decay_steps, state.step)
    q = state.q.at[agents, s, j].add(lr * td)
    metrics = {"td_error": jnp.mean(jnp.abs(td)), "lr": lr}
    if config.exploration == "boltzmann":
        metrics["temperature"] = boltzmann_temperature(config, state.step)
    else:
        metrics["epsilon"] = _jal_epsilon(config, state.step)
    return JALState(q, counts, state.step + 1), metrics


def jal_policy(state: JALState, config: JALConfig):
    return greedy_probs(jal_expected_values(state))


JAL = register_algo(Algorithm(
    name="jal", description="joint-action learners: Q over joint actions + empirical beliefs, epsilon-greedy on EV",
    config_cls=JALConfig, init=jal_init, act=jal_act, update=jal_update, policy=jal_policy,
    requires=("discrete", "tabular"),
    paper="Claus & Boutilier 1998; ROMMEO Fig. 1 baseline",
))


# ---- FMQ -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FMQConfig(BoltzmannFields, UniformInitFields, TabularLearnerConfig):
    """Frequency maximum Q (Kapetanakis & Kudenko 2002): each agent acts Boltzmann on
    EV(s, a) = Q(s, a) + c · freq(maxR(s, a)) · maxR(s, a) with T(t) = exp(-temp_decay · t) · max_temp + 1,
    and is evaluated greedy on EV. Q is learnt by Q-learning with γ (the original is stateless, γ-free);
    in multi-state games maxR is the largest *immediate* reward seen after (s, a), not a return."""

    c: float = 10.0  # heuristic weight; "FMQc10" in ROMMEO Fig. 1, c = 10 in Kapetanakis & Kudenko 2002
    lr: float = 0.9  # Kapetanakis & Kudenko 2002 (λ = 0.9; also the ROMMEO authors' FMQAgent at episode end)

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "lr", open_low=True)
        fields.at_least(self, 0.0, "c")


class FMQState(NamedTuple):
    q: jax.Array  # [N, S, A]
    max_r: jax.Array  # [N, S, A] the largest immediate reward seen after (s, a^n)
    count: jax.Array  # [N, S, A] times a^n was played in s
    count_max: jax.Array  # [N, S, A] times max_r was received after (s, a^n)
    step: jax.Array


def fmq_init(key, spec, config: FMQConfig, model=None) -> FMQState:
    shape = (spec.n_agents, spec.obs_dim, spec.n_actions)
    z = jnp.zeros(shape)
    return FMQState(_init_table(key, shape, config.q_init), z, z, z, jnp.int32(0))


def fmq_values(state: FMQState, config: FMQConfig) -> jax.Array:
    """EV(s, a) = Q(s, a) + c · (count_max / count) · maxR(s, a); the heuristic is 0 before a^n is tried."""
    freq = jnp.where(state.count > 0, state.count_max / jnp.maximum(state.count, 1.0), 0.0)
    return state.q + config.c * freq * state.max_r


def fmq_act(state: FMQState, obs, avail, key, *, explore: bool, config: FMQConfig):
    s = state_index(obs)
    ev = _rows(fmq_values(state, config), s)  # [N, A]
    if explore:
        return _boltzmann_sample(key, ev, avail, boltzmann_temperature(config, state.step))
    return sample_actions(key, _masked_greedy(ev, avail))


def fmq_update(state: FMQState, data, key, *, config: FMQConfig):
    """Q-learning on Q (bootstrapping from max_a Q(s', a)), plus the maxR bookkeeping. In multi-state
    games maxR and its frequency are kept for the *immediate* reward r(s, a) (the original is stateless)."""
    tr = last_transition(data)
    agents = jnp.arange(tr.actions.shape[0])
    s, s_next, a, r = state_index(tr.obs), state_index(tr.next_obs), tr.actions, tr.reward
    idx = (agents, s, a)
    count = state.count[idx]
    max_r, count_max = state.max_r[idx], state.count_max[idx]
    new_max = (count == 0) | (r > max_r)
    same_max = jnp.logical_not(new_max) & (r == max_r)
    max_r = jnp.where(new_max, r, max_r)
    count_max = jnp.where(new_max, 1.0, count_max + same_max)
    q_sa = state.q[idx]
    bootstrap = jnp.where(tr.terminated, 0.0, state.q[agents, s_next].max(-1))
    td = r + config.gamma * bootstrap - q_sa
    new = FMQState(
        q=state.q.at[idx].add(config.lr * td),
        max_r=state.max_r.at[idx].set(max_r),
        count=state.count.at[idx].add(1.0),
        count_max=state.count_max.at[idx].set(count_max),
        step=state.step + 1,
    )
    return new, {"td_error": jnp.mean(jnp.abs(td)), "temperature": boltzmann_temperature(config, state.step)}


def fmq_policy(state: FMQState, config: FMQConfig):
    """Greedy on the FMQ heuristic value EV."""
    return greedy_probs(fmq_values(state, config))


FMQ = register_algo(Algorithm(
    name="fmq", description="frequency maximum Q: Boltzmann on Q + c·freq(maxR)·maxR, c = 10",
    config_cls=FMQConfig, init=fmq_init, act=fmq_act, update=fmq_update, policy=fmq_policy,
    requires=("discrete", "tabular"),
    paper="Kapetanakis & Kudenko 2002; ROMMEO Fig. 1 baseline (FMQc10)",
))


# ---- WoLF-PHC --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WoLFPHCConfig(EpsilonFields, UniformInitFields, DecayingRateFields, TabularLearnerConfig):
    """WoLF policy hill climbing (Bowling & Veloso 2002, Table 1). The policy steps δ_w < δ_l decay with
    the learning rate's schedule d / (d + t); exploration is a constant epsilon on top of π.

    δ_w = 0.01, δ_l = 0.04 (δ_l = 4 δ_w), both multiplied by α_t, are `WoLFAgent(delta1=0.01,
    delta2=0.04)` of A. Bai's tabular multi-agent code, the code base the ROMMEO authors' tabular
    learners (`maci`, whose code has no WoLF agent of its own) are built on. Bowling & Veloso only
    require δ_l > δ_w (their experiments decay both as 1 / (c + t))."""

    delta_win: float = 0.01  # δ_w,t = δ_w · α_t (A. Bai's WoLFAgent)
    delta_lose: float = 0.04  # δ_l,t = δ_l · α_t (A. Bai's WoLFAgent)
    epsilon: float = 0.1  # constant, on top of π (ROMMEO authors' BaseQAgent default)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "delta_win")
        if not self.delta_win < self.delta_lose:
            raise ValueError(f"WoLF needs delta_win < delta_lose (learn faster when losing), got delta_win="
                             f"{self.delta_win}, delta_lose={self.delta_lose}")


class WoLFPHCState(NamedTuple):
    q: jax.Array  # [N, S, A]
    pi: jax.Array  # [N, S, A] current policy
    pi_avg: jax.Array  # [N, S, A] average policy π̄
    visits: jax.Array  # [N, S] C(s)
    step: jax.Array


def wolf_init(key, spec, config: WoLFPHCConfig, model=None) -> WoLFPHCState:
    shape = (spec.n_agents, spec.obs_dim, spec.n_actions)
    uniform = jnp.full(shape, 1.0 / spec.n_actions)
    return WoLFPHCState(_init_table(key, shape, config.q_init), uniform, uniform,
                        jnp.zeros(shape[:2]), jnp.int32(0))


def wolf_policy_step(q: jax.Array, pi: jax.Array, pi_avg: jax.Array, visits: jax.Array,
                     delta_win: jax.Array, delta_lose: jax.Array):
    """One WoLF-PHC policy step on rows [..., A] (Q already updated): C += 1; π̄ += (π - π̄) / C;
    δ = δ_w if Σ π Q > Σ π̄ Q else δ_l; move min(π(a), δ / (|A| - 1)) from every non-greedy action
    to argmax Q. Returns (π, π̄, C, winning)."""
    n_actions = q.shape[-1]
    visits = visits + 1.0
    gap = pi - pi_avg
    pi_avg = pi_avg + gap / visits[..., None]
    # Σ π Q - Σ π̄ Q = Σ (π - π̄_old)(1 - 1/C) Q: exactly 0 on a first visit (π̄ = π), which is not winning
    winning = jnp.sum(gap * (1.0 - 1.0 / visits[..., None]) * q, -1) > 0.0
    delta = jnp.where(winning, delta_win, delta_lose)
    greedy = jax.nn.one_hot(jnp.argmax(q, -1), n_actions, dtype=pi.dtype)
    taken = jnp.where(greedy > 0, 0.0, jnp.minimum(pi, delta[..., None] / max(n_actions - 1, 1)))
    pi = pi - taken + greedy * taken.sum(-1, keepdims=True)
    return pi, pi_avg, visits, winning


def _wolf_rates(config: WoLFPHCConfig, step):
    decay = hyperbolic_decay(config.lr_decay_steps, step)
    return decay, config.delta_win * decay, config.delta_lose * decay


def wolf_act(state: WoLFPHCState, obs, avail, key, *, explore: bool, config: WoLFPHCConfig):
    s = state_index(obs)
    probs = _rows(state.pi, s)
    if explore:
        probs = epsilon_mix(probs, config.epsilon)
    probs = jnp.where(avail, probs, 0.0)
    probs = probs / jnp.maximum(probs.sum(-1, keepdims=True), 1e-12)
    return sample_actions(key, probs)


def wolf_update(state: WoLFPHCState, data, key, *, config: WoLFPHCConfig):
    tr = last_transition(data)
    agents = jnp.arange(tr.actions.shape[0])
    s, s_next = state_index(tr.obs), state_index(tr.next_obs)
    lr, delta_win, delta_lose = _wolf_rates(config, state.step)
    q_sa = state.q[agents, s, tr.actions]
    bootstrap = jnp.where(tr.terminated, 0.0, state.q[agents, s_next].max(-1))
    td = tr.reward + config.gamma * bootstrap - q_sa
    q = state.q.at[agents, s, tr.actions].add(lr * td)
    pi, pi_avg, visits, winning = wolf_policy_step(
        q[agents, s], state.pi[agents, s], state.pi_avg[agents, s], state.visits[agents, s], delta_win, delta_lose)
    new = WoLFPHCState(q, state.pi.at[agents, s].set(pi), state.pi_avg.at[agents, s].set(pi_avg),
                       state.visits.at[agents, s].set(visits), state.step + 1)
    metrics = {"td_error": jnp.mean(jnp.abs(td)), "winning": jnp.mean(winning.astype(jnp.float32)),
               "delta_win": delta_win, "lr": lr}
    return new, metrics


def wolf_policy(state: WoLFPHCState, config: WoLFPHCConfig):
    return state.pi


WOLF_PHC = register_algo(Algorithm(
    name="wolf-phc", description="WoLF policy hill climbing: Q-learning + PHC with δ_w < δ_l, epsilon on π",
    config_cls=WoLFPHCConfig, init=wolf_init, act=wolf_act, update=wolf_update, policy=wolf_policy,
    requires=("discrete", "tabular"),
    paper="Bowling & Veloso 2001/2002; ROMMEO Fig. 1 baseline",
))
