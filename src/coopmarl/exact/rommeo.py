"""ROMMEO-Q (Tian et al., IJCAI 2019, "Regularized Opponent Model with Maximum Entropy Objective"),
the sample-based tabular learner of §3.1 / Appendix A Algorithm 1, and its ablation ROMMEO-Q-EMP.

Agent i keeps a soft Q-table over the joint action, Q^i(s, a^i, a^{-i}), and an empirical prior
P^i(a^{-i}|s) of what the others did in s. From them (ROMMEO eqs. 10, 11)

    pi^i(a^i | s, a^{-i}) = softmax_{a^i}(Q^i / alpha)                           conditional policy
    rho^i(a^{-i} | s)     ∝ P^i(a^{-i}|s) (sum_{a^i} exp(Q^i / alpha))^alpha      opponent model

and it acts with the marginal sum_{a^{-i}} pi^i(a^i|s,a^{-i}) rho^i(a^{-i}|s) (epsilon-mixed while
exploring). ROMMEO-Q-EMP replaces rho^i by the empirical frequency P^i itself.

Layout: the table is stored agent-centrically, q[i, s, a^i, o] with o the flat index of the
*others'* joint action (agents in increasing order, the first one most significant, as in
`TabularGame.joint_index` with agent i removed). With N = 1 there is one "other" joint action.

The prior is the frequency over the last `prior_window` transitions (a ring buffer of observed states
and joint actions in the train state); agent i reads the states from its own observation, so act and
the prior are decentralised (in a fully observed tabular game every agent sees the same history).
The runner feeds one transition per update (the newest), as the authors' tabular code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos.base import (Algorithm, epsilon_mix, last_transition, register_algo, sample_actions,
                                 state_index)
from coopmarl.exact.baselines import DecayingRateFields, EpsilonFields, TabularLearnerConfig, hyperbolic_decay

OpponentModel = Literal["rommeo", "empirical"]


@dataclass(frozen=True)
class ROMMEOQConfig(EpsilonFields, DecayingRateFields, TabularLearnerConfig):
    """ROMMEO-Q (ROMMEO §3.1, App. A Alg. 1); defaults: the authors' code (REFERENCE.md). `opponent_model`
    is fixed by the algorithm: "rommeo" = ρ from eq. (11); "empirical" = ρ = P (ROMMEO-Q-EMP)."""

    opponent_model: ClassVar[OpponentModel] = "rommeo"
    entropy_alpha: float = 1.0  # alpha, the entropy weight; the paper's objective is alpha = 1 (§3.1)
    prior_window: int = 50  # P = opponents' empirical frequency over the last 50 transitions, authors' code

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "entropy_alpha")
        fields.at_least(self, 1, "prior_window")


@dataclass(frozen=True)
class ROMMEOQEmpConfig(ROMMEOQConfig):
    """ROMMEO-Q-EMP (ROMMEO Fig. 1 ablation): ROMMEO-Q with ρ replaced by the empirical frequency P."""

    opponent_model: ClassVar[OpponentModel] = "empirical"


class ROMMEOQState(NamedTuple):
    q: jax.Array  # [N, S, A, A**(N-1)]  Q^i(s, a^i, a^{-i})
    buf_states: jax.Array  # [W, N] int32, state index each agent observed (-1 = empty slot)
    buf_actions: jax.Array  # [W, N] int32, the joint action taken
    step: jax.Array  # [] int32, number of updates so far


# ---- the pieces, for one agent (vmapped over agents) ----------------------------------------------


def others_index(actions: jax.Array, i, n_actions: int) -> jax.Array:
    """Flat index of the other agents' joint action a^{-i} from a joint action [..., N]."""
    n = actions.shape[-1]
    j = jnp.arange(n)
    power = (n - 1 - j) - (j < i)  # digit position of agent j among the others
    weights = jnp.where(j == i, 0, n_actions ** jnp.maximum(power, 0))
    return jnp.sum(actions.astype(jnp.int32) * weights, axis=-1)


def log_prior(buf_states, buf_actions, i, s, n_actions: int, n_other: int) -> jax.Array:
    """log P^i(a^{-i}|s) [O]: frequency of the others' joint action in s over the window
    (Alg. 1, "Update the prior"); uniform when the window holds no visit to s."""
    hit = (buf_states[:, i] == s).astype(jnp.float32)  # [W]; empty slots hold state -1
    counts = jnp.zeros(n_other).at[others_index(buf_actions, i, n_actions)].add(hit)
    total = counts.sum()
    return jnp.where(total > 0, jnp.log(counts) - jnp.log(jnp.maximum(total, 1.0)), -jnp.log(float(n_other)))


def log_pi(q_s, alpha) -> jax.Array:
    """log pi^i(a^i | s, a^{-i}) [A, O] — ROMMEO eq. (10)."""
    return jax.nn.log_softmax(q_s / alpha, axis=0)


def log_rho(q_s, log_p, alpha, empirical: bool = False) -> jax.Array:
    """log rho^i(a^{-i} | s) [O] — ROMMEO eq. (11); the EMP ablation (empirical=True) uses rho = P."""
    if empirical:
        return log_p
    return jax.nn.log_softmax(log_p + alpha * jax.nn.logsumexp(q_s / alpha, axis=0))


def soft_value(q_s, log_p, alpha) -> jax.Array:
    """V(s) = log sum_{a^{-i}} P (sum_{a^i} exp(Q/alpha))^alpha — ROMMEO eq. (9)."""
    return jax.nn.logsumexp(log_p + alpha * jax.nn.logsumexp(q_s / alpha, axis=0))


def marginal(q_s, log_p, alpha, empirical: bool = False) -> jax.Array:
    """pi^i(a^i|s) = sum_{a^{-i}} pi^i(a^i|s,a^{-i}) rho^i(a^{-i}|s) [A] (Alg. 1, "Compute the marginal")."""
    return jnp.exp(jax.nn.logsumexp(log_pi(q_s, alpha) + log_rho(q_s, log_p, alpha, empirical), axis=1))


def one_sample_value(key, q_s, log_p, alpha, empirical: bool = False):
    """V̄^i(s') from one importance sample (Alg. 1, K = 1): â^{-i} ~ rho, a^i ~ pi(.|s', â^{-i}),
        V̄ = log[(P^{1/alpha}(â) exp(Q(s',a^i,â)/alpha))^alpha / (pi(a^i|s',â) rho(â|s'))]
          = log P(â) + Q(s',a^i,â) - log pi(a^i|s',â) - log rho(â|s').
    With alpha = 1 and rho from eq. (11) this equals the soft value of eq. (9) for every sample; for
    alpha != 1 it does not (eq. (15)'s "- alpha log pi" form would), so keep alpha = 1 as the paper does."""
    k_o, k_a = jax.random.split(key)
    lr_ = log_rho(q_s, log_p, alpha, empirical)
    o = jax.random.categorical(k_o, lr_)
    lp = log_pi(q_s, alpha)[:, o]
    a = jax.random.categorical(k_a, lp)
    return log_p[o] + q_s[a, o] - lp[a] - lr_[o]


# ---- the algorithm --------------------------------------------------------------------------------


def rommeo_init(key, spec, config: ROMMEOQConfig, model=None) -> ROMMEOQState:
    n, s, a = spec.n_agents, spec.obs_dim, spec.n_actions
    q = jax.random.uniform(key, (n, s, a, a ** (n - 1)))  # Q ~ U[0, 1), authors' code
    empty = jnp.full((config.prior_window, n), -1, jnp.int32)
    return ROMMEOQState(q, empty, jnp.zeros_like(empty), jnp.int32(0))


def _per_agent(state: ROMMEOQState, config: ROMMEOQConfig, fn, s, *args):
    """vmap over agents i of `fn(Q^i(s_i, ., .), log P^i(.|s_i), alpha, empirical, *args_i)`."""
    n, _, a, o = state.q.shape
    alpha, empirical = config.entropy_alpha, config.opponent_model == "empirical"

    def one(i, s_i, *rest):
        lp = log_prior(state.buf_states, state.buf_actions, i, s_i, a, o)
        return fn(state.q[i, s_i], lp, alpha, empirical, *rest)

    return jax.vmap(one)(jnp.arange(n), s, *args)


def rommeo_act(state: ROMMEOQState, obs, avail, key, *, explore: bool, config: ROMMEOQConfig):
    s = state_index(obs)  # [N]: agent i uses only obs[i]
    probs = _per_agent(state, config, marginal, s)
    if explore:
        probs = epsilon_mix(probs, config.epsilon)
    probs = probs * avail
    return sample_actions(key, probs / probs.sum(-1, keepdims=True))


def rommeo_update(state: ROMMEOQState, data, key, *, config: ROMMEOQConfig):
    tr = last_transition(data)
    n, _, a_n, _ = state.q.shape
    s, s_next, actions = state_index(tr.obs), state_index(tr.next_obs), tr.actions.astype(jnp.int32)
    # Alg. 1: save the experience, then update the prior from the window (it includes this transition)
    slot = state.step % config.prior_window
    state = state._replace(buf_states=state.buf_states.at[slot].set(s),
                           buf_actions=state.buf_actions.at[slot].set(actions))
    v_bar = _per_agent(state, config, lambda q_s, lp, al, emp, k: one_sample_value(k, q_s, lp, al, emp),
                       s_next, jax.random.split(key, n))
    # y = r (terminal s') or r + gamma V̄(s') — ROMMEO eqs. (12)-(14), Alg. 1
    y = tr.reward + config.gamma * jnp.where(tr.terminated, 0.0, v_bar)
    agents = jnp.arange(n)
    o = jax.vmap(lambda i: others_index(actions, i, a_n))(agents)
    td = y - state.q[agents, s, actions, o]
    lr = hyperbolic_decay(config.lr_decay_steps, state.step)
    q = state.q.at[agents, s, actions, o].add(lr * td)
    metrics = {"td_error": jnp.mean(jnp.abs(td)), "lr": lr, "v_bar": jnp.mean(v_bar)}
    return state._replace(q=q, step=state.step + 1), metrics


def rommeo_policy(state: ROMMEOQState, config: ROMMEOQConfig):
    """The marginal policy per agent and state [N, S, A] (no epsilon): ROMMEO's evaluation policy."""
    n, n_states, _, _ = state.q.shape
    per_state = jax.vmap(lambda s: _per_agent(state, config, marginal, jnp.full((n,), s)))
    return jnp.swapaxes(per_state(jnp.arange(n_states)), 0, 1)


# 5,000 steps: ~93% of 100 climbing-game seeds reach (A, A) (p_optimal > 0.5); 10,000 steps: all of them.
_COMMON = dict(init=rommeo_init, act=rommeo_act, update=rommeo_update, policy=rommeo_policy,
               requires=("discrete", "tabular"), default_total_steps=5_000)

ROMMEO_Q = register_algo(Algorithm(
    name="rommeo-q", config_cls=ROMMEOQConfig, paper="ROMMEO (Tian et al. 2019) §3.1, App. A Alg. 1; Fig. 1",
    description="ROMMEO-Q: tabular soft joint-action Q-learning with a regularised opponent model rho (eq. 11)",
    **_COMMON,
))

ROMMEO_Q_EMP = register_algo(Algorithm(
    name="rommeo-q-emp", config_cls=ROMMEOQEmpConfig, paper="ROMMEO (Tian et al. 2019) Fig. 1 ablation",
    description="ROMMEO-Q-EMP: ROMMEO-Q with the opponent model replaced by the empirical frequency P",
    **_COMMON,
))
