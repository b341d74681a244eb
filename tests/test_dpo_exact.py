"""DPO's exact iteration (eq. 18): monotone J on the App. C games, the 1-D curve argmax, the
decentralised advantage (eq. 7), M_hat (eq. 12) and determinism."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl import exact
from coopmarl.envs.games import DPO_2X2
from coopmarl.envs.tabular import TabularGame
from coopmarl.exact.dpo import (DPOExactConfig, _m_hat, _resolve, agent_advantages, dpo_summary, effective_horizon,
                                iterate, solve_state)


def _j64(payoff, policies):
    """J of a 2x2 matrix game in float64 from the (float32) policy trajectory [T, 2, 1, 2]."""
    pol = np.asarray(policies, np.float64)
    pol = pol / pol.sum(-1, keepdims=True)
    return np.einsum("ti,ij,tj->t", pol[:, 0, 0], np.asarray(payoff, np.float64), pol[:, 1, 0])


def _objective64(p, g, pi, m_hat, C):
    p, g, pi = (np.asarray(x, np.float64) for x in (p, g, pi))
    pi = pi / pi.sum(-1, keepdims=True)  # a float32 row sums to 1 only up to rounding
    kl = np.sum(p * (np.log(p) - np.log(pi)), -1)
    kl = np.maximum(kl, 0.0)
    return np.sum(g * (pi - p), -1) - m_hat * np.sqrt(kl) - C * kl


# ---- monotone J on the four App. C games ------------------------------------------------------------

CONFIGS = [  # (init, M_hat override or None for eq. (12)'s value)
    ("uniform", None),  # Theorem 3.4 applies
    ("random", None),
    ("uniform", 0.0),  # no sqrt-KL penalty (outside the theorem): the iteration moves in every game
    ("random", 0.5),
]
SEEDS = jnp.arange(6)


def _matrix_game(index):
    """The dpo-2x2-<index> game under one shared name, so all four share one compilation."""
    a, b, c, d = DPO_2X2[index]
    reference = coopmarl.make(f"dpo-2x2-{index}")
    game = TabularGame.matrix([[a, b], [c, d]], horizon=reference.horizon, discount=reference.discount)
    np.testing.assert_array_equal(np.asarray(game.reward_flat), np.asarray(reference.reward_flat))
    return game, np.array([[a, b], [c, d]], np.float64)


@pytest.mark.parametrize("index", sorted(DPO_2X2))
def test_monotone_on_2x2_games(index):
    game, payoff = _matrix_game(index)
    moved = 0
    for init, m_hat in CONFIGS:
        cfg = DPOExactConfig(init=init, m_hat=m_hat)
        runs = jax.vmap(lambda s: iterate(game, 100, cfg, jax.random.PRNGKey(s)))(SEEDS)
        for r in range(len(SEEDS)):
            res = jax.tree.map(lambda x: x[r], runs)
            J32 = np.asarray(res.J)
            J64 = _j64(payoff, res.policies)
            assert J32.shape == (101,) and res.policies.shape == (101, 2, 1, 2)
            # the exact values of the iterates are non-decreasing ...
            assert np.diff(J64).min() >= -1e-6, (init, m_hat, r, np.diff(J64).min())
            # ... and the library's float32 J agrees with them up to a few ulp of J
            np.testing.assert_allclose(J32, J64, atol=4e-6 * np.abs(payoff).max())
            assert np.diff(J32).min() >= -1e-6 * max(1.0, np.abs(J32).max())
            assert np.all(np.asarray(res.surrogate) >= 0.0)
            np.testing.assert_allclose(np.asarray(res.policies).sum(-1), 1.0, atol=1e-5)
            moved += int(J64[-1] > J64[0] + 1e-3)
    assert moved >= len(SEEDS)  # not vacuous: at least the M_hat = 0 runs move


def test_derived_m_hat_never_moves():
    """With M_hat = sqrt((N-1)/N) 2 r_max H (the constant the proof of Thm 3.3 yields), Pinsker gives
    g.(pi - p) <= range(A^i)/N * sqrt(KL/2) < M_hat sqrt(KL) for every pi != p: no step is ever taken."""
    game = coopmarl.make("random-stochastic-game", n_states=4, n_agents=3, n_actions=3, discount=0.9)
    res = iterate(game, 5, DPOExactConfig(init="random", m_hat_form="derived"), jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(res.policies[-1]), np.asarray(res.policies[0]))
    assert float(jnp.max(res.kl)) == 0.0


def test_infinite_horizon_random_game_monotone():
    game = coopmarl.make("random-stochastic-game", n_states=6, n_agents=2, n_actions=3, discount=0.9)
    res = iterate(game, 40, DPOExactConfig(horizon=None, m_hat=0.2, init="random"), jax.random.PRNGKey(0))
    J = np.asarray(res.J)
    assert J[-1] > J[0] + 1.0
    assert np.diff(J).min() >= -1e-5 * max(1.0, np.abs(J).max())
    ev = exact.evaluate(game, res.policies[-1], horizon=None)
    np.testing.assert_allclose(float(ev.expected_return), J[-1], rtol=1e-5)


# ---- the per-state argmax -----------------------------------------------------------------------------


def test_curve_search_beats_brute_force_on_two_actions():
    rng = np.random.default_rng(0)
    n = 64
    p0 = rng.integers(10, 1015, n) / 1024.0  # exact in float32, and p0 + p1 == 1 exactly
    p = np.stack([p0, 1 - p0], -1)
    scale = 10.0 ** rng.uniform(-2, 1.5, n)
    g = rng.normal(size=(n, 2)) * scale[:, None]
    g = g - np.sum(p * g, -1, keepdims=True)  # an advantage: E_p g = 0
    m_hat = rng.choice([0.0, 0.05, 0.3, 1.0], n) * scale
    C = rng.choice([0.0, 1.0, 10.0], n)
    pi, obj, kl = jax.jit(jax.vmap(solve_state))(jnp.asarray(p, jnp.float32), jnp.asarray(g, jnp.float32),
                                        jnp.asarray(m_hat, jnp.float32), jnp.asarray(C, jnp.float32))
    pi, obj = np.asarray(pi), np.asarray(obj)
    ours = _objective64(p, g, pi, m_hat, C)
    x = np.linspace(1e-7, 1 - 1e-7, 100_001)
    grid = np.stack([x, 1 - x], -1)  # [K, 2]
    for k in range(n):
        brute = _objective64(p[k][None], g[k][None], grid, m_hat[k], C[k]).max()
        best = max(brute, 0.0)  # p itself scores 0 and is always a candidate
        assert ours[k] >= best - 1e-5 * scale[k], (k, ours[k], brute)
        assert ours[k] >= -1e-6 * scale[k]
        assert abs(obj[k] - ours[k]) <= 1e-4 * scale[k] + 1e-4 * abs(ours[k])  # the stable formulas are right


def test_curve_search_on_more_actions_beats_random_candidates():
    rng = np.random.default_rng(1)
    n, A = 32, 4
    p = (rng.multinomial(1024 - A, rng.dirichlet(np.ones(A)), n) + 1) / 1024.0  # exact in float32
    g = rng.normal(size=(n, A))
    g = g - np.sum(p * g, -1, keepdims=True)
    m_hat, C = 0.2, 1.0
    pi, obj, _ = jax.jit(jax.vmap(lambda pp, gg: solve_state(pp, gg, m_hat, C)))(jnp.asarray(p, jnp.float32),
                                                                      jnp.asarray(g, jnp.float32))
    ours = _objective64(p, g, np.asarray(pi), m_hat, C)
    for k in range(n):
        # candidates: mixtures of p with random points of the simplex, at many step sizes
        cand = rng.dirichlet(np.ones(A) * 0.5, 20_000)
        lam = 10.0 ** rng.uniform(-4, 0, (20_000, 1))
        cand = (1 - lam) * p[k] + lam * cand
        assert ours[k] >= _objective64(p[k][None], g[k][None], cand, m_hat, C).max() - 1e-5


def test_solve_state_keeps_p_when_nothing_to_gain():
    p = jnp.array([0.2, 0.3, 0.5])
    solve = jax.jit(solve_state)
    pi, obj, kl = solve(p, jnp.zeros(3), 1.0, 10.0)
    np.testing.assert_array_equal(np.asarray(pi), np.asarray(p))
    assert float(obj) == 0.0 and float(kl) == 0.0
    # a large M_hat blocks every step: the objective stays exactly 0 and pi = p
    pi, obj, _ = solve(p, jnp.array([1.0, -0.5, 0.1]) - 0.07, 100.0, 10.0)
    np.testing.assert_array_equal(np.asarray(pi), np.asarray(p))
    assert float(obj) == 0.0


# ---- the decentralised advantage (eq. 7) ------------------------------------------------------------


def _numpy_agent_advantages(q_joint, policies):
    N, S, A = policies.shape
    q = q_joint.reshape((S,) + (A,) * N)
    out = np.zeros((N, S, A))
    for s in range(S):
        joint = np.ones((A,) * N)
        for n in range(N):
            shape = [1] * N
            shape[n] = A
            joint = joint * policies[n, s].reshape(shape)
        v = np.sum(joint * q[s])
        for i in range(N):
            for ai in range(A):
                total = 0.0
                for a in itertools.product(range(A), repeat=N):
                    if a[i] != ai:
                        continue
                    w = np.prod([policies[n, s, a[n]] for n in range(N) if n != i])
                    total += w * q[s][a]
                out[i, s, ai] = total - v
    return out


@pytest.mark.parametrize("n_agents", [2, 3])
def test_agent_advantages_match_numpy(tiny_npz, n_agents):
    if n_agents == 2:
        game = coopmarl.make(f"tabular:{tiny_npz}")
    else:
        game = coopmarl.make("random-stochastic-game", n_states=3, n_agents=3, n_actions=2, discount=0.9)
    rng = np.random.default_rng(n_agents)
    policies = rng.dirichlet(np.ones(game.n_actions), (game.n_agents, game.n_states)).astype(np.float32)
    q = np.asarray(exact.evaluate(game, policies).q, np.float64)
    ours = np.asarray(agent_advantages(jnp.asarray(q, jnp.float32), jnp.asarray(policies)))
    ref = _numpy_agent_advantages(q, policies.astype(np.float64))
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # E_{pi^i}[A^i] = 0
    np.testing.assert_allclose(np.sum(policies * ours, -1), 0.0, atol=1e-5)


# ---- M_hat (eq. 12) ------------------------------------------------------------------------------------


def test_m_hat_values():
    game = coopmarl.make("dpo-2x2-4")  # N = 2, r_max = 20, H = 1
    s = dpo_summary(DPOExactConfig(), game)
    assert s["C"] == 10.0 and s["effective_horizon"] == 1.0
    np.testing.assert_allclose(s["m_hat"], np.sqrt(0.5 * 2 * 20 * 1), rtol=1e-6)  # sqrt(20)
    s = dpo_summary(DPOExactConfig(m_hat_form="derived"), game)
    np.testing.assert_allclose(s["m_hat"], np.sqrt(0.5) * 2 * 20, rtol=1e-6)
    assert dpo_summary(DPOExactConfig(m_hat=0.25, C=3.0), game)["m_hat"] == 0.25

    # 3 agents, r_max = 2, horizon 3, discount 0.5: H_eff = 1 + 0.5 + 0.25 = 1.75
    payoff = np.zeros((2, 2, 2))
    payoff[0, 0, 0], payoff[1, 1, 1] = -2.0, 1.0
    game3 = TabularGame.matrix(payoff, horizon=3, discount=0.5)
    s = dpo_summary(DPOExactConfig(), game3)
    assert s["effective_horizon"] == pytest.approx(1.75)
    np.testing.assert_allclose(s["m_hat"], np.sqrt(2 / 3 * 2 * 2 * 1.75), rtol=1e-6)
    # infinite horizon: 1 / (1 - gamma)
    s = dpo_summary(DPOExactConfig(horizon=None), game3)
    np.testing.assert_allclose(s["m_hat"], np.sqrt(2 / 3 * 2 * 2 * 2.0), rtol=1e-6)
    assert effective_horizon(None, 0.9) == pytest.approx(10.0)
    assert effective_horizon(4, 1.0) == 4.0
    # the value the (jitted) update uses is the same: the game's r_max is read from the traced arrays
    value = jax.jit(lambda g: _m_hat(g, DPOExactConfig(), *_resolve(g, DPOExactConfig())))(game3)
    np.testing.assert_allclose(float(value), np.sqrt(2 / 3 * 2 * 2 * 1.75), rtol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError):
        DPOExactConfig(init="dirichlet")
    with pytest.raises(ValueError):
        DPOExactConfig(m_hat_form="nope")
    with pytest.raises(ValueError):
        DPOExactConfig(horizon=0)
    with pytest.raises(ValueError):
        DPOExactConfig(C=-1.0)
    game = TabularGame.matrix(np.eye(2), discount=1.0)
    with pytest.raises(ValueError, match="discount < 1"):
        iterate(game, 2, DPOExactConfig(horizon=None))


# ---- determinism, seeds, the runner ---------------------------------------------------------------------


def test_determinism_and_seeds():
    game = coopmarl.make("dpo-2x2-3")
    cfg = DPOExactConfig(init="random", m_hat=0.5)
    a = iterate(game, 30, cfg, jax.random.PRNGKey(7))
    b = iterate(game, 30, cfg, jax.random.PRNGKey(7))
    c = iterate(game, 30, cfg, jax.random.PRNGKey(8))
    np.testing.assert_array_equal(np.asarray(a.policies), np.asarray(b.policies))
    np.testing.assert_array_equal(np.asarray(a.J), np.asarray(b.J))
    assert not np.allclose(np.asarray(a.policies[0]), np.asarray(c.policies[0]))
    u1 = iterate(game, 30, DPOExactConfig(m_hat=0.5), jax.random.PRNGKey(1))
    u2 = iterate(game, 30, DPOExactConfig(m_hat=0.5), jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(u1.policies), np.asarray(u2.policies))  # uniform: key-free
    np.testing.assert_allclose(np.asarray(u1.policies[0]), 0.5)


def test_runner_planner():
    from coopmarl.algos.base import get_algo
    from coopmarl.runner import RunConfig, train

    algo = get_algo("dpo-exact")
    assert not algo.uses_env and set(algo.requires) == {"discrete", "tabular"}
    game = coopmarl.make("dpo-2x2-4")
    cfg = DPOExactConfig(m_hat=0.5)
    res = train(algo, game, cfg, RunConfig(total_steps=20, log_points=2, n_seeds=2), progress=False)
    for k in ("J", "improvement", "surrogate", "kl", "eval_return"):
        assert k in res.metrics and res.metrics[k].shape == (2, 2)
    ref = iterate(game, 20, cfg)
    np.testing.assert_allclose(res.metrics["eval_return"][-1], float(ref.J[-1]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(algo.policy(res.train_state, cfg))[0], np.asarray(ref.policies[-1]),
                               atol=1e-6)
    assert res.static["m_hat"] == 0.5 and res.static["C"] == 10.0
