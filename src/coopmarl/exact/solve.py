"""Exact solutions of tabular games: the optimal joint value and policy, the value of any product
(decentralised) policy, regret, and how much probability a policy puts on optimal joint actions.

Values are those of the game's objective: the expected discounted sum of rewards over the
episode, `sum_{t < H} discount^t r_t` with H = `game.horizon`; pass `horizon=None` for the
infinite-horizon discounted objective (value iteration to convergence). A policy is a product of
per-agent stationary policies given as an array `[N, S, A]` of probabilities.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.envs.tabular import TabularGame


class Solution(NamedTuple):
    q: jax.Array  # [S, J] optimal joint action values at the first stage (or stationary)
    v: jax.Array  # [S] optimal values at the first stage
    optimal_return: jax.Array  # [] expected optimal value from the initial distribution
    greedy_joint: jax.Array  # [S] an optimal joint action (flat index) per state at the first stage
    q_stages: jax.Array  # [H, S, J] optimal joint action values per stage (H = 1 when infinite)


class Evaluation(NamedTuple):
    q: jax.Array  # [S, J] joint action values of the policy at the first stage
    v: jax.Array  # [S]
    expected_return: jax.Array  # []


def backup(game: TabularGame, v_next: jax.Array, discount: float) -> jax.Array:
    """q(s, a) = r(s, a) + discount * sum_s' P(s'|s, a) v_next(s')."""
    return game.reward_flat + discount * jnp.einsum("sjt,t->sj", game.transition_flat, v_next)


def joint_policy(policies: jax.Array) -> jax.Array:
    """Product of per-agent policies [N, S, A] -> joint policy [S, A**N] in flat joint order."""
    joint = policies[0]
    for n in range(1, policies.shape[0]):
        joint = (joint[:, :, None] * policies[n][:, None, :]).reshape(joint.shape[0], -1)
    return joint


def _discount(game, discount):
    return game.discount if discount is None else discount


@partial(jax.jit, static_argnames=("horizon", "discount", "tol", "max_iters"))
def _solve(game, horizon, discount, tol=1e-6, max_iters=100_000):
    if horizon is not None:
        def stage(v_next, _):
            q = backup(game, v_next, discount)
            return q.max(-1), q

        v, q_rev = jax.lax.scan(stage, jnp.zeros(game.n_states), None, length=horizon)
        q_stages = q_rev[::-1]
    else:
        def cond(c):
            v, v_old, i = c
            return (jnp.max(jnp.abs(v - v_old)) > tol) & (i < max_iters)

        def body(c):
            v, _, i = c
            return backup(game, v, discount).max(-1), v, i + 1

        v0 = jnp.zeros(game.n_states)
        v, _, _ = jax.lax.while_loop(cond, body, (backup(game, v0, discount).max(-1), v0, 1))
        q_stages = backup(game, v, discount)[None]
    q = q_stages[0]
    v = q.max(-1)
    return Solution(q, v, game.initial @ v, jnp.argmax(q, -1).astype(jnp.int32), q_stages)


def solve(game: TabularGame, horizon: int | None | str = "game", discount: float | None = None) -> Solution:
    """Optimal joint values by backward induction (finite horizon) or value iteration (`horizon=None`)."""
    discount = _discount(game, discount)
    horizon = game.horizon if horizon == "game" else horizon
    if horizon is None and discount >= 1.0:
        raise ValueError("the infinite-horizon objective needs discount < 1")
    return _solve(game, horizon, float(discount))


def _neumann_solve(m: jax.Array, r: jax.Array, discount: float, tol: float = 1e-9) -> jax.Array:
    """v = (I − M)⁻¹ r = Σ_t Mᵗ r for M = γ·P (P row-stochastic, γ < 1), by doubling: after k steps
    v = Σ_{t < 2^k} Mᵗ r, and the rest is ≤ γ^(2^k)/(1 − γ) of |r|. Only matmuls: a LAPACK solve
    (jnp.linalg.solve) runs jaxlib's batched CPU kernel under vmap, which can deadlock on its thread
    pool (as the batched QR did; see nets/init.py)."""
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"the infinite-horizon objective needs a discount in [0, 1), got {discount}")
    steps = int(np.ceil(np.log2(max(np.log(tol * (1.0 - discount)) / np.log(discount), 1.0)))) + 1
    for _ in range(steps):
        r = r + m @ r
        m = m @ m
    return r


@partial(jax.jit, static_argnames=("horizon", "discount"))
def _evaluate(game, policies, horizon, discount):
    pi = joint_policy(policies)  # [S, J]
    if horizon is not None:  # backward induction; only the current stage's Q is kept
        def stage(carry, _):
            q = backup(game, carry[0], discount)
            return (jnp.sum(pi * q, -1), q), None

        init = (jnp.zeros(game.n_states), jnp.zeros_like(game.reward_flat))
        (_, q), _ = jax.lax.scan(stage, init, None, length=horizon)
    else:  # solve (I - discount P_pi) v = r_pi
        p_pi = jnp.einsum("sj,sjt->st", pi, game.transition_flat)
        r_pi = jnp.sum(pi * game.reward_flat, -1)
        v = _neumann_solve(discount * p_pi, r_pi, discount)
        q = backup(game, v, discount)
    v = jnp.sum(pi * q, -1)
    return Evaluation(q, v, game.initial @ v)


def evaluate(game: TabularGame, policies: jax.Array, horizon: int | None | str = "game",
             discount: float | None = None) -> Evaluation:
    """Exact value of the product policy `policies` [N, S, A] (rows are probability vectors)."""
    policies = jnp.asarray(policies, jnp.float32)
    expected = (game.n_agents, game.n_states, game.n_actions)
    if policies.shape != expected:
        raise ValueError(f"policies must have shape [N, S, A] = {expected}, got {policies.shape}")
    horizon = game.horizon if horizon == "game" else horizon
    return _evaluate(game, policies, horizon, float(_discount(game, discount)))


def regret(game: TabularGame, policies: jax.Array, **kw) -> jax.Array:
    """Optimal expected return minus the expected return of `policies`."""
    return solve(game, **kw).optimal_return - evaluate(game, policies, **kw).expected_return


def optimal_joint_mask(game: TabularGame, rtol: float = 1e-5, **kw) -> jax.Array:
    """[S, J] bool: joint actions whose first-stage optimal value is within tolerance of the best."""
    q = solve(game, **kw).q
    best = q.max(-1, keepdims=True)
    return q >= best - rtol * jnp.maximum(1.0, jnp.abs(best))


@partial(jax.jit, static_argnames=("horizon",))
def state_visitation(game: TabularGame, policies: jax.Array, horizon: int) -> jax.Array:
    """Average over the H steps of an episode of the state distribution under `policies`: [S]."""
    p_pi = jnp.einsum("sj,sjt->st", joint_policy(policies), game.transition_flat)

    def step(d, _):
        return d @ p_pi, d

    _, ds = jax.lax.scan(step, game.initial, None, length=horizon)
    return ds.mean(0)


def p_optimal(game: TabularGame, policies: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Probability that the joint policy picks an optimal joint action, averaged over the states it
    visits in an episode (for one-state games: simply the probability of the optimal joint action)."""
    mask = optimal_joint_mask(game) if mask is None else mask
    per_state = jnp.sum(joint_policy(jnp.asarray(policies, jnp.float32)) * mask, -1)
    return state_visitation(game, policies, game.horizon) @ per_state


def uniform_policy(game: TabularGame) -> jax.Array:
    return jnp.full((game.n_agents, game.n_states, game.n_actions), 1.0 / game.n_actions)
