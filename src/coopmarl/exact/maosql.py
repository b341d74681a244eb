"""MAOSVI and MAOSQL — the tabular algorithms of Multi-Agent Optimistic Soft Q-Learning (MAOSQL paper,
Alg. 1 and Alg. 2). Both iterate on the game's model (they are planners: `uses_env=False`).

Notation (paper §3): N agents, joint Q̃(s, a) over joint actions, per-agent optimistic
    Q̂^n(s, a^n) = (1/β) log E_{a^{-n} ~ ζ^{-n}} exp(β Q̃(s, a))          (optimism_beta = β)
    V̂^n(s)      = (1/α) log Σ_{a^n} exp(α Q̂^n(s, a^n))                    (entropy_alpha = α)
    π̂^n(a^n|s)  = exp(α (Q̂^n(s, a^n) − V̂^n(s)))                          (decentralised softmax)
    Q̃(s, a)    ← r(s, a) + γ E_{s'} [ (1/N) Σ_n V̂^n(s') ]

MAOSVI fixes ζ (a positive product policy: uniform or random). MAOSQL uses the ε-decentralised
softmax ζ̂_t = ε/|A| + (1−ε) π̂_t (a mixture over joint actions, so ζ̂^{-n} is ε-uniform over the
others' joint actions plus (1−ε) times the product of their softmax policies). Theorem 3: MAOSQL
converges when β > 2(N−1)α/(1−γ); every run reports whether that holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from coopmarl.algos import fields
from coopmarl.algos.base import Algorithm, register_algo
from coopmarl.algos.fields import AlgoConfig


def _others_log_weights(log_zeta: jax.Array, n: int) -> jax.Array:
    """log ζ^{-n}(a^{-n}|s) of a product ζ, broadcast over joint actions [S, A, ..., A] (agent n's axis = 1)."""
    n_agents = log_zeta.shape[0]
    total = 0.0
    for m in range(n_agents):
        if m == n:
            continue
        shape = [log_zeta.shape[1]] + [1] * n_agents
        shape[1 + m] = log_zeta.shape[2]
        total = total + log_zeta[m].reshape(shape)
    return total


def optimistic_q(q_joint: jax.Array, log_zeta: jax.Array, beta: float) -> jax.Array:
    """Q̂^n(s, a^n) = (1/β) log E_{a^{-n}~ζ^{-n}} e^{β Q̃(s,a)} for a product ζ (MAOSQL Alg. 1, line 3).

    q_joint: [S, A, ..., A]; log_zeta: [N, S, A]. Returns [N, S, A].
    """
    n_agents = log_zeta.shape[0]
    out = []
    for n in range(n_agents):
        axes = tuple(1 + m for m in range(n_agents) if m != n)
        out.append(logsumexp(beta * q_joint + _others_log_weights(log_zeta, n), axis=axes) / beta)
    return jnp.stack(out)


def optimistic_q_eps_softmax(q_joint: jax.Array, log_pi: jax.Array, beta: float, epsilon: float) -> jax.Array:
    """Q̂^n under the ε-decentralised-softmax ζ̂ = ε/|A| + (1−ε) π̂ (MAOSQL Alg. 2, line 7):
    E_{ζ̂^{-n}} e^{βQ̃} = ε · mean_{a^{-n}} e^{βQ̃} + (1−ε) · E_{π̂^{-n}} e^{βQ̃}."""
    n_agents, n_actions = log_pi.shape[0], log_pi.shape[2]
    log_uniform = jnp.full_like(log_pi, -jnp.log(n_actions))
    q_uniform = optimistic_q(q_joint, log_uniform, beta)
    q_pi = optimistic_q(q_joint, log_pi, beta)
    if n_agents == 1:  # no others: ζ^{-n} is a point mass
        return q_pi
    return jnp.logaddexp(jnp.log(epsilon) + beta * q_uniform, jnp.log1p(-epsilon) + beta * q_pi) / beta


def soft_value(q_hat: jax.Array, alpha: float) -> jax.Array:
    """V̂^n(s) = (1/α) log Σ_{a^n} e^{α Q̂^n(s, a^n)}: [N, S, A] -> [N, S]."""
    return logsumexp(alpha * q_hat, axis=-1) / alpha


def softmax_policy(q_hat: jax.Array, alpha: float) -> jax.Array:
    """π̂^n(a^n|s) = exp(α (Q̂^n − V̂^n))."""
    return jax.nn.softmax(alpha * q_hat, axis=-1)


def joint_backup(game, v_tilde: jax.Array, gamma: float) -> jax.Array:
    """Q̃(s, a) = r(s, a) + γ E_{s'}[Ṽ(s')], shaped [S, A, ..., A]."""
    from coopmarl.exact.solve import backup

    return backup(game, v_tilde, gamma).reshape((game.n_states,) + game.action_shape)


def theorem3_condition(n_agents: int, alpha: float, beta: float, gamma: float) -> bool:
    """MAOSQL Theorem 3: β > 2(N−1)α/(1−γ)."""
    return bool(beta > 2 * (n_agents - 1) * alpha / (1 - gamma))


# ---- configs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MAOSConfig(AlgoConfig):
    """What both planners read. MAOSQL §4 / REFERENCE.md: matrix & tensor games α = 50, β = 10; γ as EPyMARL."""

    entropy_alpha: float = 50.0  # α: MAOSQL §4 (matrix & tensor games; REFERENCE.md)
    optimism_beta: float = 10.0  # β: MAOSQL §4 (matrix & tensor games; REFERENCE.md)
    gamma: float = 0.99  # as EPyMARL, MAOSQL's code base (REFERENCE.md)
    init: Literal["random", "zeros"] = "random"  # "random": Q_0 ~ U[0, 1/(1-γ)] (Alg. 1-2 "Initialize"); "zeros"

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "gamma", open_low=True, open_high=True)
        fields.positive(self, "entropy_alpha", "optimism_beta")


@dataclass(frozen=True)
class MAOSQLConfig(MAOSConfig):
    """MAOSQL (Alg. 2): ζ is the ε-decentralised softmax."""

    zeta_epsilon: float = 0.05  # ε of ζ̂ = ε/|A| + (1−ε) π̂: MAOSQL §4 (matrix & tensor games; REFERENCE.md)

    def __post_init__(self):
        super().__post_init__()
        fields.in_unit_interval(self, "zeta_epsilon", open_low=True)


@dataclass(frozen=True)
class MAOSVIConfig(MAOSConfig):
    """MAOSVI (Alg. 1): ζ is fixed."""

    zeta: Literal["uniform", "random"] = "uniform"  # the fixed ζ: uniform, or a positive random product policy per seed


def _init_table(key, shape, config):
    if config.init == "zeros":
        return jnp.zeros(shape)
    return jax.random.uniform(key, shape, maxval=1.0 / (1.0 - config.gamma))


# ---- MAOSVI (Alg. 1) -------------------------------------------------------------------------------


class MAOSVIState(NamedTuple):
    q_tilde: jax.Array  # [S, A, ..., A]
    log_zeta: jax.Array  # [N, S, A] fixed ζ
    iteration: jax.Array


def maosvi_init(key, spec, config: MAOSVIConfig, model) -> MAOSVIState:
    k_q, k_z = jax.random.split(key)
    q = _init_table(k_q, (model.n_states,) + model.action_shape, config)
    shape = (spec.n_agents, model.n_states, spec.n_actions)
    if config.zeta == "uniform":
        log_zeta = jnp.full(shape, -jnp.log(spec.n_actions))
    else:
        log_zeta = jax.nn.log_softmax(jax.random.normal(k_z, shape), axis=-1)
    return MAOSVIState(q, log_zeta, jnp.int32(0))


def maosvi_q_hat(state: MAOSVIState, config) -> jax.Array:
    return optimistic_q(state.q_tilde, state.log_zeta, config.optimism_beta)


def maosvi_update(state: MAOSVIState, game, key, *, config: MAOSVIConfig):
    q_hat = maosvi_q_hat(state, config)  # Alg. 1 line 3
    v_tilde = soft_value(q_hat, config.entropy_alpha).mean(0)  # lines 4-5
    q_new = joint_backup(game, v_tilde, config.gamma)  # line 6
    delta = jnp.max(jnp.abs(q_new - state.q_tilde))
    return MAOSVIState(q_new, state.log_zeta, state.iteration + 1), {"q_change": delta}


# ---- MAOSQL (Alg. 2) -------------------------------------------------------------------------------


class MAOSQLState(NamedTuple):
    q_hat: jax.Array  # [N, S, A]
    iteration: jax.Array


def maosql_init(key, spec, config: MAOSQLConfig, model) -> MAOSQLState:
    return MAOSQLState(_init_table(key, (spec.n_agents, model.n_states, spec.n_actions), config), jnp.int32(0))


def maosql_update(state: MAOSQLState, game, key, *, config: MAOSQLConfig):
    alpha, beta = config.entropy_alpha, config.optimism_beta
    v_hat = soft_value(state.q_hat, alpha)  # Alg. 2 line 3
    log_pi = jax.nn.log_softmax(alpha * state.q_hat, axis=-1)  # line 4
    q_tilde = joint_backup(game, v_hat.mean(0), config.gamma)  # line 6
    q_hat = optimistic_q_eps_softmax(q_tilde, log_pi, beta, config.zeta_epsilon)  # lines 5, 7
    delta = jnp.max(jnp.abs(q_hat - state.q_hat))
    return MAOSQLState(q_hat, state.iteration + 1), {"q_change": delta}


# ---- registration ----------------------------------------------------------------------------------


def _summary(config, env) -> dict:
    n = env.spec.n_agents
    return {
        "theorem3_condition": theorem3_condition(n, config.entropy_alpha, config.optimism_beta, config.gamma),
        "theorem3_beta_threshold": round(2 * (n - 1) * config.entropy_alpha / (1 - config.gamma), 6),
    }


def _act_from_q_hat(q_hat_fn):
    def act(state, obs, avail, key, *, explore, config):
        from coopmarl.algos.base import greedy_probs, sample_actions, state_index

        q_hat = q_hat_fn(state, config)  # [N, S, A]
        q = q_hat[jnp.arange(obs.shape[0]), state_index(obs)]
        probs = softmax_policy(q, config.entropy_alpha) if explore else greedy_probs(q)
        return sample_actions(key, probs)

    return act


MAOSVI = register_algo(Algorithm(
    name="maosvi",
    description="MAOSQL Alg. 1: multi-agent optimistic soft value iteration with a fixed ζ (uniform/random)",
    config_cls=MAOSVIConfig, init=maosvi_init, act=_act_from_q_hat(maosvi_q_hat), update=maosvi_update,
    policy=lambda state, config: softmax_policy(maosvi_q_hat(state, config), config.entropy_alpha),
    requires=("discrete", "tabular"), uses_env=False, paper="MAOSQL Alg. 1", summary=_summary,
))

MAOSQL = register_algo(Algorithm(
    name="maosql",
    description="MAOSQL Alg. 2: optimistic soft Q-iteration with the ε-decentralised-softmax ζ",
    config_cls=MAOSQLConfig, init=maosql_init, act=_act_from_q_hat(lambda s, c: s.q_hat), update=maosql_update,
    policy=lambda state, config: softmax_policy(state.q_hat, config.entropy_alpha),
    requires=("discrete", "tabular"), uses_env=False, paper="MAOSQL Alg. 2, Thm. 3", summary=_summary,
))
