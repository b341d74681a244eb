"""`coopmarl.exact` against brute force: plain-numpy backward induction / value iteration / policy
evaluation written here loop by loop, enumeration of deterministic policies, and Monte-Carlo rollouts
of the env itself."""

from __future__ import annotations

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl import exact
from coopmarl.envs.tabular import TabularGame


# ---- brute force in numpy (float64, explicit loops over joint actions) -------------------------------------


def random_game(seed, n_states, n_agents, n_actions, horizon, discount) -> TabularGame:
    rng = np.random.default_rng(seed)
    shape = (n_states,) + (n_actions,) * n_agents
    reward = rng.uniform(-1.0, 1.0, size=shape)
    transition = rng.dirichlet(np.ones(n_states), size=shape)
    initial = rng.dirichlet(np.ones(n_states))
    return TabularGame.create(reward, transition, initial, horizon=horizon, discount=discount)


def model(game):
    """(R [S, J], P [S, J, S], initial [S], joint actions [J, N]) in float64, joint order built here."""
    S, N, A = game.n_states, game.n_agents, game.n_actions
    R_full = np.asarray(game.reward, np.float64)
    P_full = np.asarray(game.transition, np.float64)
    joints = list(itertools.product(range(A), repeat=N))  # agent 1 most significant
    R = np.array([[R_full[(s,) + a] for a in joints] for s in range(S)])
    P = np.array([[P_full[(s,) + a] for a in joints] for s in range(S)])
    return R, P, np.asarray(game.initial, np.float64), np.array(joints)


def brute_backward_induction(R, P, horizon, discount):
    """q_stages [H, S, J]: stage 0 is the first step of the episode."""
    S, J = R.shape
    v = np.zeros(S)
    stages = []
    for _ in range(horizon):
        q = np.empty((S, J))
        for s in range(S):
            for j in range(J):
                q[s, j] = R[s, j] + discount * sum(P[s, j, t] * v[t] for t in range(S))
        v = q.max(1)
        stages.append(q)
    return np.array(stages[::-1])


def brute_value_iteration(R, P, discount, tol=1e-13):
    v = np.zeros(R.shape[0])
    while True:
        q = R + discount * P @ v
        v_new = q.max(1)
        if np.abs(v_new - v).max() < tol:
            return q, v_new
        v = v_new


def brute_joint_policy(policies, joints):
    """[N, S, A] -> [S, J]: product of the agents' probabilities of their parts of each joint action."""
    N, S, _ = policies.shape
    return np.array([[np.prod([policies[n, s, a[n]] for n in range(N)]) for a in joints] for s in range(S)])


def brute_evaluate(R, P, pi, horizon, discount):
    """(q [S, J] at the first stage, v [S]) of the joint policy pi [S, J]."""
    if horizon is None:
        P_pi = np.einsum("sj,sjt->st", pi, P)
        r_pi = (pi * R).sum(1)
        v = np.linalg.solve(np.eye(len(r_pi)) - discount * P_pi, r_pi)
        q = R + discount * P @ v
        return q, (pi * q).sum(1)
    v = np.zeros(R.shape[0])
    for _ in range(horizon):
        q = R + discount * P @ v
        v = (pi * q).sum(1)
    return q, v


def random_policies(rng, game):
    return rng.dirichlet(np.ones(game.n_actions), size=(game.n_agents, game.n_states)).astype(np.float32)


def one_hot_policies(game, joint_per_state):
    """Decode a joint action per state [S] into deterministic per-agent policies [N, S, A]."""
    joints = np.asarray(game.joint_actions())
    pol = np.zeros((game.n_agents, game.n_states, game.n_actions), np.float32)
    for s, j in enumerate(np.asarray(joint_per_state)):
        for n in range(game.n_agents):
            pol[n, s, joints[j, n]] = 1.0
    return pol


FINITE_CASES = [  # (seed, S, N, A, horizon, discount)
    (0, 1, 2, 3, 4, 0.9),
    (1, 3, 2, 2, 5, 0.95),
    (2, 4, 3, 2, 3, 1.0),
    (3, 2, 1, 4, 6, 0.8),
    (4, 5, 2, 3, 10, 0.99),
]
INFINITE_CASES = [  # (seed, S, N, A, discount)
    (5, 3, 2, 2, 0.9),
    (6, 4, 2, 3, 0.8),
    (7, 2, 3, 2, 0.95),
]


# ---- solve -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, S, N, A, H, g", FINITE_CASES)
def test_solve_finite_horizon_matches_backward_induction(seed, S, N, A, H, g):
    game = random_game(seed, S, N, A, H, g)
    R, P, init, _ = model(game)
    q_stages = brute_backward_induction(R, P, H, g)
    sol = exact.solve(game)
    assert sol.q_stages.shape == (H, S, A**N)
    np.testing.assert_allclose(sol.q_stages, q_stages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sol.q, q_stages[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sol.v, q_stages[0].max(1), rtol=1e-5, atol=1e-5)
    assert float(sol.optimal_return) == pytest.approx(init @ q_stages[0].max(1), rel=1e-5, abs=1e-5)
    # the greedy joint action attains the maximum
    np.testing.assert_allclose(q_stages[0][np.arange(S), np.asarray(sol.greedy_joint)], q_stages[0].max(1),
                               rtol=1e-5, atol=1e-5)


def test_solve_horizon_and_discount_overrides():
    game = random_game(11, 3, 2, 2, horizon=4, discount=0.9)
    R, P, init, _ = model(game)
    sol = exact.solve(game, horizon=7, discount=0.5)
    np.testing.assert_allclose(sol.q_stages, brute_backward_induction(R, P, 7, 0.5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed, S, N, A, g", INFINITE_CASES)
def test_solve_discounted_infinite_horizon(seed, S, N, A, g):
    game = random_game(seed, S, N, A, 1, g)
    R, P, init, _ = model(game)
    q, v = brute_value_iteration(R, P, g)
    sol = exact.solve(game, horizon=None)
    # value iteration stops at |v - v_old| < 1e-6 in float32: error <= 1e-6 * g / (1 - g) plus rounding
    tol = 1e-6 * g / (1 - g) + 1e-4
    np.testing.assert_allclose(sol.q, q, atol=tol)
    np.testing.assert_allclose(sol.v, v, atol=tol)
    assert float(sol.optimal_return) == pytest.approx(init @ v, abs=tol)
    assert sol.q_stages.shape == (1, S, A**N)
    # brute force over every deterministic stationary joint policy: the best one's value is the optimum
    best = -np.inf
    for choice in itertools.product(range(A**N), repeat=S):
        pi = np.eye(A**N)[list(choice)]
        best = max(best, init @ brute_evaluate(R, P, pi, None, g)[1])
    assert float(sol.optimal_return) == pytest.approx(best, abs=tol)


def test_solve_rejects_undiscounted_infinite_horizon():
    game = random_game(0, 2, 2, 2, 3, 1.0)
    with pytest.raises(ValueError, match="discount < 1"):
        exact.solve(game, horizon=None)


# ---- evaluate ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, S, N, A, H, g", FINITE_CASES)
def test_evaluate_finite_horizon_matches_numpy(seed, S, N, A, H, g):
    game = random_game(seed, S, N, A, H, g)
    R, P, init, joints = model(game)
    pol = random_policies(np.random.default_rng(100 + seed), game)
    pi = brute_joint_policy(pol.astype(np.float64), joints)
    np.testing.assert_allclose(exact.joint_policy(jnp.asarray(pol)), pi, rtol=1e-5, atol=1e-6)
    q, v = brute_evaluate(R, P, pi, H, g)
    ev = exact.evaluate(game, pol)
    np.testing.assert_allclose(ev.q, q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ev.v, v, rtol=1e-5, atol=1e-5)
    assert float(ev.expected_return) == pytest.approx(init @ v, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed, S, N, A, g", INFINITE_CASES)
def test_evaluate_discounted_infinite_horizon(seed, S, N, A, g):
    game = random_game(seed, S, N, A, 1, g)
    R, P, init, joints = model(game)
    pol = random_policies(np.random.default_rng(200 + seed), game)
    q, v = brute_evaluate(R, P, brute_joint_policy(pol.astype(np.float64), joints), None, g)
    ev = exact.evaluate(game, pol, horizon=None)
    np.testing.assert_allclose(ev.v, v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ev.q, q, rtol=1e-4, atol=1e-4)
    assert float(ev.expected_return) == pytest.approx(init @ v, rel=1e-4, abs=1e-4)


def test_evaluate_rejects_wrong_policy_shape():
    game = random_game(0, 2, 2, 3, 3, 0.9)
    with pytest.raises(ValueError, match=r"\[N, S, A\] = \(2, 2, 3\)"):
        exact.evaluate(game, np.full((2, 3, 2), 0.5))


def test_evaluate_matches_monte_carlo_rollouts():
    """Roll the env itself out with the product policy (each agent samples from its own row)."""
    game = random_game(21, 3, 2, 2, horizon=5, discount=0.9)
    pol = jnp.asarray(random_policies(np.random.default_rng(21), game))
    n_episodes = 20_000

    def episode(key):
        k_reset, k_run = jax.random.split(key)
        state, ts = game.reset(k_reset)

        def step(carry, k):
            state, ts, ret, disc = carry
            k_act, k_env = jax.random.split(k)
            s = jnp.argmax(ts.obs, -1)  # each agent's own one-hot observation
            probs = pol[jnp.arange(game.n_agents), s]  # [N, A]
            actions = jax.random.categorical(k_act, jnp.log(probs), axis=-1).astype(jnp.int32)
            state, ts = game.step(k_env, state, actions)
            return (state, ts, ret + disc * ts.reward[0], disc * game.discount), ts.truncated

        (_, _, ret, _), truncated = jax.lax.scan(step, (state, ts, 0.0, 1.0), jax.random.split(k_run, game.horizon))
        return ret, truncated

    returns, truncated = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), n_episodes))
    returns = np.asarray(returns, np.float64)
    assert np.asarray(truncated)[:, -1].all() and not np.asarray(truncated)[:, :-1].any()
    mean, se = returns.mean(), returns.std() / np.sqrt(n_episodes)
    expected = float(exact.evaluate(game, pol).expected_return)
    assert abs(mean - expected) < 4 * se + 1e-3, (mean, expected, se)


def test_state_visitation_matches_numpy():
    game = random_game(31, 4, 2, 2, horizon=6, discount=0.9)
    R, P, init, joints = model(game)
    pol = random_policies(np.random.default_rng(31), game)
    P_pi = np.einsum("sj,sjt->st", brute_joint_policy(pol.astype(np.float64), joints), P)
    d, ds = init, []
    for _ in range(game.horizon):
        ds.append(d)
        d = d @ P_pi
    np.testing.assert_allclose(exact.state_visitation(game, pol, game.horizon), np.mean(ds, 0), atol=1e-5)


# ---- regret / p_optimal ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, S, N, A, H, g", FINITE_CASES)
def test_regret_non_negative(seed, S, N, A, H, g):
    game = random_game(seed, S, N, A, H, g)
    rng = np.random.default_rng(300 + seed)
    scale = max(1.0, float(exact.solve(game).optimal_return))
    for _ in range(10):
        pol = random_policies(rng, game)
        assert float(exact.regret(game, pol)) >= -1e-5 * scale
        # deterministic random policies too
        det = one_hot_policies(game, rng.integers(0, A**N, size=S))
        assert float(exact.regret(game, det)) >= -1e-5 * scale


@pytest.mark.parametrize("seed, S, N, A, g", INFINITE_CASES)
def test_regret_zero_for_optimal_stationary_policy_infinite_horizon(seed, S, N, A, g):
    """Discounted infinite horizon: a deterministic stationary optimal joint policy exists, and a
    deterministic joint policy is always a product of per-agent deterministic policies."""
    game = random_game(seed, S, N, A, 1, g)
    pol = one_hot_policies(game, exact.solve(game, horizon=None).greedy_joint)
    assert float(exact.regret(game, pol, horizon=None)) == pytest.approx(0.0, abs=1e-3)
    assert float(exact.regret(game, exact.uniform_policy(game), horizon=None)) > 1e-3


def test_regret_zero_for_optimal_policy_one_step():
    game = random_game(41, 4, 3, 2, horizon=1, discount=0.9)
    pol = one_hot_policies(game, exact.solve(game).greedy_joint)
    assert float(exact.regret(game, pol)) == pytest.approx(0.0, abs=1e-5)
    assert float(exact.p_optimal(game, pol)) == pytest.approx(1.0, abs=1e-6)


def test_regret_and_p_optimal_on_climbing():
    game = coopmarl.make("climbing")
    opt = np.zeros((2, 1, 3), np.float32)
    opt[:, 0, 0] = 1.0  # both play A
    assert float(exact.regret(game, opt)) == pytest.approx(0.0, abs=1e-6)
    assert float(exact.p_optimal(game, opt)) == pytest.approx(1.0)
    # both play C (the safe equilibrium): 5 -> regret 6, never optimal
    safe = np.zeros((2, 1, 3), np.float32)
    safe[:, 0, 2] = 1.0
    assert float(exact.regret(game, safe)) == pytest.approx(6.0, abs=1e-5)
    assert float(exact.p_optimal(game, safe)) == pytest.approx(0.0)
    # uniform: mean payoff = (11 - 30 + 0 - 30 + 7 + 6 + 0 + 0 + 5) / 9 = -31/9
    uni = exact.uniform_policy(game)
    assert float(exact.regret(game, uni)) == pytest.approx(11.0 + 31.0 / 9.0, abs=1e-5)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("climbing", 1 / 9),  # one optimal joint action of 9
        ("penalty", 2 / 9),  # (0,0) and (2,2)
        ("ro-matrix", 1 / 9),
        ("tensor", 6 / 27),  # exactly two of three agents on the target: 3 * 2 of 27
        ("dpo-2x2-1", 1 / 4),
    ],
)
def test_p_optimal_uniform_policy_one_state(name, expected):
    game = coopmarl.make(name)
    assert float(exact.p_optimal(game, exact.uniform_policy(game))) == pytest.approx(expected, rel=1e-5)


def test_p_optimal_mixed_policy_and_multi_state():
    game = coopmarl.make("penalty")
    pol = np.array([[[0.5, 0.3, 0.2]], [[0.6, 0.2, 0.2]]], np.float32)
    assert float(exact.p_optimal(game, pol)) == pytest.approx(0.5 * 0.6 + 0.2 * 0.2, rel=1e-5)
    # several states: the probability of an optimal joint action, averaged over the episode's state visits
    game = random_game(51, 3, 2, 2, horizon=4, discount=0.9)
    R, P, init, joints = model(game)
    pol = random_policies(np.random.default_rng(51), game)
    pi = brute_joint_policy(pol.astype(np.float64), joints)
    q0 = brute_backward_induction(R, P, game.horizon, game.discount)[0]
    mask = np.isclose(q0, q0.max(1, keepdims=True), rtol=1e-5, atol=1e-6)
    P_pi = np.einsum("sj,sjt->st", pi, P)
    d, visits = init, []
    for _ in range(game.horizon):
        visits.append(d)
        d = d @ P_pi
    expected = np.mean(visits, 0) @ (pi * mask).sum(1)
    assert float(exact.p_optimal(game, pol)) == pytest.approx(expected, rel=1e-4)
    assert 0.0 <= expected <= 1.0


# ---- the full-size DPO random stochastic game ---------------------------------------------------------------


def test_full_size_dpo_game_solves():
    """DPO §5.1: 100 states, 6 agents, 5 actions (15,625 joint actions, 156M transition entries).
    Building takes ~10 s and solving ~3 s on 2 CPU cores, so this stays in the default run."""
    t0 = time.perf_counter()
    game = coopmarl.make("random-stochastic-game")
    assert (game.n_states, game.n_agents, game.n_actions, game.horizon) == (100, 6, 5, 100)
    assert game.transition_flat.shape == (100, 5**6, 100)
    sol = exact.solve(game)
    opt = float(sol.optimal_return)
    uni = float(exact.evaluate(game, exact.uniform_policy(game)).expected_return)
    elapsed = time.perf_counter() - t0
    assert np.isfinite(opt) and np.all(np.isfinite(np.asarray(sol.v)))
    # rewards lie in [-5, 5]: the optimum picks the best of 15,625 uniform draws in every state (~5)
    g = game.discount
    bound = 5.0 * (game.horizon if g == 1.0 else (1 - g**game.horizon) / (1 - g))
    assert 0.9 * bound < opt <= bound + 1e-3
    assert abs(uni) < 0.05 * bound  # the uniform policy's mean reward is ~0
    # the first-stage q is one Bellman backup of the second stage's values
    v1 = np.asarray(sol.q_stages[1]).max(1)
    q0 = np.asarray(game.reward_flat[:, :50]) + game.discount * np.asarray(game.transition_flat[:, :50]) @ v1
    np.testing.assert_allclose(np.asarray(sol.q)[:, :50], q0, rtol=1e-4, atol=1e-3)
    print(f"built and solved the full-size DPO game in {elapsed:.1f} s")
