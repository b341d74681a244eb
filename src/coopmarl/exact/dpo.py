"""DPO's exact iteration (Su & Lu, "Fully Decentralized Policy Optimization", eq. 18) on a tabular game.

Every iteration evaluates the current product policy pi_t exactly and then, independently for every
agent i and state s, sets

    pi_{t+1}^i(.|s) = argmax_{pi^i}  (1/N) sum_a pi^i(a) A^i_t(s, a)
                                     - M_hat * sqrt(KL(pi_t^i(.|s) || pi^i))  -  C * KL(pi_t^i(.|s) || pi^i)

with the decentralised advantage A^i_t(s, a_i) = E_{a_-i ~ pi_t^-i}[A_t(s, a_i, a_-i)] (eq. 7) and
M_hat = sqrt((N - 1)/N * 2 r_max / (1 - gamma)) as eq. (12) prints it (r_max = max |r| of the game).
Theorem 3.4: the objective of the maximiser is >= 0 (pi_t itself scores 0), so the joint surrogate
(12) is >= 0 in every state, Lemma 3.1 gives V^{pi_{t+1}} >= V^{pi_t}, and J(pi_t) rises monotonically.

**Horizon.** The theorem is about the discounted *infinite-horizon* objective (stationary policies,
stationary Q). Our games have a finite horizon H; by default (`horizon="game"`, the same convention
as `coopmarl.exact.evaluate` and the runner's exact evaluation) we use the *first-stage* joint Q of
the H-step objective and replace 1/(1 - gamma) in M_hat by sum_{t<H} gamma^t (the range of a
first-stage Q). That is exact for one-step matrix games (H = 1: Q = r) but not covered by the theorem
for H > 1: the performance-difference identity of an H-step problem involves the advantages of every
stage, not only the first, so J may (rarely) decrease there. `horizon=None` iterates on the
infinite-horizon discounted objective (needs discount < 1), where the guarantee holds.

**M_hat, and why the iteration mostly stands still.** The proof of Theorem 3.3 (eqs. 13-16, with
M_tilde = 2 r_max/(1 - gamma)) yields sqrt((N-1)/N) * M_tilde, which differs from the printed
sqrt((N-1)/N * M_tilde) (not even in the same units as the advantage); `m_hat_form` picks one, the
printed one by default. With the *derived* constant no step is ever taken for N >= 2: by Pinsker,
g.(pi - p) <= range(g) * TV <= (2 r_max H_eff / N) * sqrt(KL/2) < sqrt((N-1)/N) 2 r_max H_eff sqrt(KL)
for every pi != p, so the objective is < 0 off p and pi_{t+1} = pi_t (the theorem holds trivially).
With the printed constant a step needs sqrt(r_max H_eff / (N(N-1))) > 1 and large advantages; on
DPO's four 2x2 games it does not move from the uniform policy at all. `m_hat=<float>` overrides the
constant (e.g. 0: a pure KL-proximal step) to study the iteration's behaviour; the guarantee is then
only empirical (it held in every case we ran).

**The per-state argmax.** For a fixed KL level k the maximiser of the linear term g.pi (g = A^i/N)
subject to sum pi = 1, KL(p || pi) = k satisfies the Lagrange conditions g_a - lam + mu p_a/pi_a = 0,
i.e. pi_a = mu p_a / (lam - g_a) with lam > max g: pi_a ∝ p_a / (c - g_a), c > max g. The full
objective's stationarity conditions have the same form (mu = M_hat/(2 sqrt k) + C), and a maximiser
cannot put zero mass where p > 0 (KL would be infinite), so the maximiser is p itself (KL = 0) or a
point of this 1-D curve. We write c = g_bar + d/sigma with g_bar = E_p g, d = max g - g_bar and
sigma in (0, 1) (sigma -> 0: pi -> p; sigma -> 1: pi -> the greedy action), search a dense grid of
logit(sigma), refine twice around the best point, and keep p (objective exactly 0) as a candidate.
On the curve, with z_a = sigma (g_a - g_bar)/d (so E_p z = 0) and W = E_p[1/(1-z)]:

    pi_a = p_a / ((1 - z_a) W),   g.(pi - p) = (d/sigma)(W - 1)/W,
    KL(p || pi) = log W + E_p log(1 - z) = log1p(E_p[z^2/(1-z)]) - E_p[-log(1-z) - z],

all second-order accurate in float32 (no cancellation of first-order terms as pi -> p), so a
candidate is not accepted on rounding noise. Actions with p_a = 0 keep probability 0 (the curve
preserves the support; initial policies are strictly positive).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.algos import fields
from coopmarl.algos.base import Algorithm, register_algo, sample_actions, state_index
from coopmarl.algos.fields import AlgoConfig
from coopmarl.envs.tabular import TabularGame
from coopmarl.exact.solve import evaluate

_LETTERS = "abcdefghijklmnopqrtuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # no "s": that is the state axis


@dataclass(frozen=True)
class DPOExactConfig(AlgoConfig):
    """DPO's exact iteration (eq. 18); `C` from DPO App. C, the rest are choices of this implementation
    (see the module docstring)."""

    C: float = 10.0  # DPO App. C: "We choose C = 10 in all the experiments"
    init: Literal["uniform", "random"] = "uniform"  # π_0: uniform, or Dirichlet(init_concentration) per agent and state
    init_concentration: float = 1.0  # init="random": the Dirichlet's concentration (a flat Dirichlet)
    horizon: int | Literal["game"] | None = "game"  # "game": the game's H (first-stage Q); None: infinite discounted
    discount: float | None = None  # None: the game's discount
    m_hat: float | None = None  # override M_hat (then Theorem 3.4's guarantee no longer applies); None: eq. (12)
    # "paper": sqrt((N-1)/N * 2 r_max * H_eff) as eq. (12) prints it. "derived": sqrt((N-1)/N) * 2 r_max * H_eff,
    # the constant the proof of Theorem 3.3 (eqs. 13-16, M_tilde = 2 r_max/(1-gamma)) actually yields.
    m_hat_form: Literal["paper", "derived"] = "paper"  # m_hat=None: "paper" = DPO eq. (12) as printed; see above
    n_grid: int = 401  # grid points on logit(sigma) in [grid_lo, grid_hi] (ours: the per-state argmax's search)
    grid_lo: float = -20.0  # the search grid's lower end (ours)
    grid_hi: float = 30.0  # the search grid's upper end (ours)
    n_refine: int = 33  # points per refinement round (around the best point, +- one grid step; ours)
    refine_rounds: int = 2  # refinement rounds (ours)

    def __post_init__(self):
        super().__post_init__()
        h = self.horizon
        positive_int = isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1
        if h != "game" and h is not None and not positive_int:
            raise ValueError(f"horizon must be 'game', None or an integer >= 1, got {self.horizon!r}")
        fields.at_least(self, 0.0, "C")
        if self.m_hat is not None:
            fields.at_least(self, 0.0, "m_hat")
        fields.positive(self, "init_concentration")
        if self.discount is not None:
            fields.in_unit_interval(self, "discount")
        fields.at_least(self, 3, "n_grid", "n_refine")
        fields.at_least(self, 0, "refine_rounds")
        if not self.grid_lo < self.grid_hi:
            raise ValueError(f"grid_hi must be a finite number > grid_lo ({self.grid_lo}), got {self.grid_hi}")


class DPOExactState(NamedTuple):
    policies: jax.Array  # [N, S, A] per-agent policies pi_t
    iteration: jax.Array  # [] int32
    J: jax.Array  # [] expected return of pi_t (on the objective set by config.horizon / discount)
    q: jax.Array  # [S, A**N] joint Q^{pi_t} at the first stage (cached: one evaluation per update)


class IterateResult(NamedTuple):
    J: jax.Array  # [T + 1] J(pi_0), ..., J(pi_T)
    policies: jax.Array  # [T + 1, N, S, A]
    improvement: jax.Array  # [T] J(pi_{t+1}) - J(pi_t)
    surrogate: jax.Array  # [T] mean over states of the sum over agents of the maximised objective
    kl: jax.Array  # [T] mean over agents and states of KL(pi_t^i || pi_{t+1}^i)


# ---- constants ---------------------------------------------------------------------------------------


def _resolve(game: TabularGame, config: DPOExactConfig):
    horizon = game.horizon if config.horizon == "game" else config.horizon
    discount = float(game.discount if config.discount is None else config.discount)
    if horizon is None and discount >= 1.0:
        raise ValueError("dpo-exact: the infinite-horizon objective (horizon=None) needs discount < 1")
    return horizon, discount


def effective_horizon(horizon: int | None, discount: float) -> float:
    """sum_{t<H} gamma^t (H finite) or 1/(1 - gamma) (H = None): the factor r_max is multiplied by."""
    if horizon is None:
        return 1.0 / (1.0 - discount)
    if discount == 1.0:
        return float(horizon)
    return (1.0 - discount**horizon) / (1.0 - discount)


def m_hat_value(n_agents: int, r_max, h_eff: float, form: str = "paper"):
    """M_hat of eq. (12): sqrt((N-1)/N * 2 r_max H_eff) ("paper") or sqrt((N-1)/N) * 2 r_max H_eff ("derived")."""
    frac = (n_agents - 1) / n_agents
    if form == "paper":
        return jnp.sqrt(frac * 2.0 * r_max * h_eff)
    return np.sqrt(frac) * 2.0 * r_max * h_eff


def _m_hat(game: TabularGame, config: DPOExactConfig, horizon, discount):
    if config.m_hat is not None:
        return jnp.float32(config.m_hat)
    r_max = jnp.max(jnp.abs(game.reward_flat))  # traced: the game is an argument of jitted code
    return jnp.asarray(m_hat_value(game.n_agents, r_max, effective_horizon(horizon, discount), config.m_hat_form),
                       jnp.float32)


# ---- decentralised advantage (eq. 7) -----------------------------------------------------------------


def agent_advantages(q: jax.Array, policies: jax.Array) -> jax.Array:
    """A^i(s, a_i) = E_{a_-i ~ pi^-i}[Q(s, a_i, a_-i)] - V(s), for all agents: [N, S, A].

    `q` is the joint Q [S, A**N] (flat, agent 1 most significant), `policies` [N, S, A].
    """
    n_agents, n_states, n_actions = policies.shape
    if n_agents > len(_LETTERS):
        raise ValueError(f"agent_advantages supports at most {len(_LETTERS)} agents")
    qr = q.reshape((n_states,) + (n_actions,) * n_agents)
    axes = _LETTERS[:n_agents]
    q_i = []
    for i in range(n_agents):  # static loop over agents (trace time); states are vectorised
        others = [n for n in range(n_agents) if n != i]
        spec = ",".join(["s" + axes] + ["s" + axes[n] for n in others]) + "->s" + axes[i]
        q_i.append(jnp.einsum(spec, qr, *[policies[n] for n in others]))
    q_i = jnp.stack(q_i)  # [N, S, A]
    v = jnp.sum(policies * q_i, -1, keepdims=True)  # = V^pi(s) for every agent
    return q_i - v


# ---- the per-state argmax of eq. (17)/(18) -----------------------------------------------------------


def _chi(z, one_minus_z):
    """-log(1 - z) - z >= 0, accurate for small |z| (series) and large (direct)."""
    series = z * z * (0.5 + z * (1 / 3 + z * (0.25 + z * (0.2 + z * (1 / 6 + z * (1 / 7 + z * 0.125))))))
    direct = -jnp.log(one_minus_z) - z
    return jnp.where(jnp.abs(z) < 0.1, series, direct)


def _curve(t, p, h, one_minus_h, d, m_hat, C):
    """The curve point at logit(sigma) = t: (pi [A], objective, KL, gain)."""
    sigma, eta = jax.nn.sigmoid(t), jax.nn.sigmoid(-t)
    z = sigma * h
    omz = jnp.where(sigma <= 0.5, 1.0 - sigma * h, one_minus_h + eta * h)  # 1 - z, accurate at both ends
    e = jnp.sum(p * z)  # = 0 up to rounding
    w1 = jnp.sum(p * z * z / omz)  # E_p[z^2 / (1 - z)] >= 0
    w = 1.0 + e + w1  # = E_p[1 / (1 - z)]
    kl = jnp.maximum(jnp.log1p(e + w1) - jnp.sum(p * _chi(z, omz)) - e, 0.0)
    gain = (d / sigma) * ((e + w1) / w - e)  # = g.(pi - p) = g.pi - g.p
    obj = gain - m_hat * jnp.sqrt(kl) - C * kl
    pi = p / omz
    return pi / jnp.sum(pi), obj, kl, gain  # normalised by the direct sum: no drift over iterations


def solve_state(p: jax.Array, g: jax.Array, m_hat, C, *, n_grid: int = 401, grid_lo: float = -20.0,
                grid_hi: float = 30.0, n_refine: int = 33, refine_rounds: int = 2):
    """argmax_pi  g.(pi - p) - m_hat sqrt(KL(p || pi)) - C KL(p || pi)  over the simplex (p [A], g [A]).

    Returns (pi [A], objective, KL). g.(pi - p) = g.pi when E_p g = 0 (an advantage), as in eq. (17).
    The objective is >= 0: p itself (objective 0) is a candidate.
    """
    support = p > 0
    g_bar = jnp.sum(jnp.where(support, p * g, 0.0))
    m = jnp.max(jnp.where(support, g, -jnp.inf))
    d = m - g_bar
    ok = d > 0
    d_safe = jnp.where(ok, d, 1.0)
    h = jnp.where(support, (g - g_bar) / d_safe, 0.0)  # <= 1 on the support
    one_minus_h = jnp.where(support, (m - g) / d_safe, 1.0)
    curve = jax.vmap(lambda t: _curve(t, p, h, one_minus_h, d_safe, m_hat, C))

    ts = jnp.linspace(grid_lo, grid_hi, n_grid)
    step = (grid_hi - grid_lo) / (n_grid - 1)
    _, obj, _, _ = curve(ts)
    t_best = ts[jnp.argmax(obj)]
    for _ in range(refine_rounds):
        ts = t_best + jnp.linspace(-step, step, n_refine)
        _, obj, _, _ = curve(ts)
        t_best = ts[jnp.argmax(obj)]
        step = 2.0 * step / (n_refine - 1)
    pi, obj, kl, _ = _curve(t_best, p, h, one_minus_h, d_safe, m_hat, C)
    take = ok & (obj > 0) & jnp.all(jnp.isfinite(pi))
    return jnp.where(take, pi, p), jnp.where(take, obj, 0.0), jnp.where(take, kl, 0.0)


def dpo_step(policies: jax.Array, q: jax.Array, m_hat, config: DPOExactConfig):
    """One eq.-(18) update of every agent in every state, from the joint Q of pi_t.

    Returns (new policies [N, S, A], objective [N, S], KL [N, S])."""
    n_agents = policies.shape[0]
    g = agent_advantages(q, policies) / n_agents  # (1/N) A^i
    solve = partial(solve_state, m_hat=m_hat, C=config.C, n_grid=config.n_grid, grid_lo=config.grid_lo,
                    grid_hi=config.grid_hi, n_refine=config.n_refine, refine_rounds=config.refine_rounds)
    return jax.vmap(jax.vmap(solve))(policies, g)  # over agents, then states


# ---- the algorithm --------------------------------------------------------------------------------------


def _initial_policies(key, n_agents, n_states, n_actions, config: DPOExactConfig):
    if config.init == "uniform":
        return jnp.full((n_agents, n_states, n_actions), 1.0 / n_actions, jnp.float32)
    alpha = jnp.full((n_actions,), config.init_concentration, jnp.float32)
    pol = jax.random.dirichlet(key, alpha, shape=(n_agents, n_states))
    pol = jnp.maximum(pol, 1e-6)  # strictly positive: the iteration preserves the support
    return pol / pol.sum(-1, keepdims=True)


def _evaluate(game, policies, horizon, discount):
    ev = evaluate(game, policies, horizon=horizon, discount=discount)
    return ev.q, ev.expected_return


def dpo_init(key, spec, config: DPOExactConfig, model: TabularGame) -> DPOExactState:
    if model is None:
        raise ValueError("dpo-exact is a planner: it needs the tabular game model")
    horizon, discount = _resolve(model, config)
    policies = _initial_policies(key, model.n_agents, model.n_states, model.n_actions, config)
    q, J = _evaluate(model, policies, horizon, discount)
    return DPOExactState(policies, jnp.int32(0), J, q)


def dpo_update(state: DPOExactState, model: TabularGame, key, *, config: DPOExactConfig):
    horizon, discount = _resolve(model, config)
    m_hat = _m_hat(model, config, horizon, discount)
    new_policies, obj, kl = dpo_step(state.policies, state.q, m_hat, config)
    q, J = _evaluate(model, new_policies, horizon, discount)
    metrics = {
        "J": state.J,
        "improvement": J - state.J,
        "surrogate": jnp.mean(jnp.sum(obj, 0)),  # eq. (12)'s RHS: sum over agents, mean over states
        "kl": jnp.mean(kl),
    }
    return DPOExactState(new_policies, state.iteration + 1, J, q), metrics


def dpo_act(state: DPOExactState, obs, avail, key, *, explore: bool, config: DPOExactConfig):
    s = state_index(obs)  # [N]
    probs = state.policies[jnp.arange(obs.shape[0]), s]
    probs = jnp.where(avail, probs, 0.0)
    return sample_actions(key, probs / probs.sum(-1, keepdims=True))


def dpo_policy(state: DPOExactState, config: DPOExactConfig | None = None) -> jax.Array:
    return state.policies


def dpo_summary(config: DPOExactConfig, env) -> dict:
    horizon, discount = _resolve(env, config)
    h_eff = effective_horizon(horizon, discount)
    m_hat = float(_m_hat(env, config, horizon, discount))
    return {
        "m_hat": m_hat,
        "C": float(config.C),
        "m_hat_form": "override" if config.m_hat is not None else config.m_hat_form,
        "r_max": env.r_max,
        "effective_horizon": h_eff,
        "objective_horizon": "infinite" if horizon is None else int(horizon),
        "discount": discount,
    }


@partial(jax.jit, static_argnames=("n_iters", "config"))
def _iterate(game, n_iters: int, config: DPOExactConfig, key):
    state = dpo_init(key, game.spec, config, game)

    def body(state, k):
        new_state, metrics = dpo_update(state, game, k, config=config)
        return new_state, (new_state.policies, new_state.J, metrics)

    _, (pols, Js, metrics) = jax.lax.scan(body, state, jax.random.split(key, n_iters))
    return IterateResult(
        J=jnp.concatenate([state.J[None], Js]),
        policies=jnp.concatenate([state.policies[None], pols]),
        improvement=metrics["improvement"],
        surrogate=metrics["surrogate"],
        kl=metrics["kl"],
    )


def iterate(game: TabularGame, n_iters: int, config: DPOExactConfig = DPOExactConfig(), key=None) -> IterateResult:
    """Run `n_iters` exact DPO iterations (eq. 18) from the initial policy; no runner needed.

    For a 2x2 matrix game, p_t = result.policies[:, 0, 0, 0] and q_t = result.policies[:, 1, 0, 0]
    (DPO Fig. 11)."""
    if key is None:
        key = jax.random.PRNGKey(0)
    _resolve(game, config)
    return _iterate(game, int(n_iters), config, key)


DPO_EXACT = register_algo(Algorithm(
    name="dpo-exact",
    description="DPO's exact iteration (eq. 18) on the tabular model: monotone J(pi_t) (Theorem 3.4)",
    config_cls=DPOExactConfig,
    init=dpo_init, act=dpo_act, update=dpo_update, policy=dpo_policy,
    requires=("discrete", "tabular"), uses_env=False,
    paper="DPO (Su & Lu) eq. (18), Theorem 3.4, App. C (C = 10)",
    summary=dpo_summary, default_total_steps=200,
))
