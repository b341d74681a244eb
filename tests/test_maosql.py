"""MAOSVI / MAOSQL (MAOSQL paper, Alg. 1-2, Thm. 3) against direct computations and exact optima."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl import exact
from coopmarl.algos.base import get_algo
from coopmarl.exact import maosql as M
from coopmarl.runner import RunConfig, train


def _brute_optimistic(q, zeta_joint_others, beta):
    """(1/β) log Σ_{a^{-n}} ζ^{-n}(a^{-n}) e^{β q(a)} by explicit enumeration, for every agent and action."""
    n_agents, n_actions = q.ndim, q.shape[0]
    out = np.zeros((n_agents, n_actions))
    for n in range(n_agents):
        for a_n in range(n_actions):
            total = 0.0
            for others in itertools.product(range(n_actions), repeat=n_agents - 1):
                a = list(others)
                a.insert(n, a_n)
                total += zeta_joint_others(n, others) * np.exp(beta * q[tuple(a)])
            out[n, a_n] = np.log(total) / beta
    return out


def test_optimistic_q_matches_enumeration_for_product_zeta():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 3, 3))
    zeta = rng.dirichlet(np.ones(3), size=3)  # [N, A]
    beta = 2.5

    def weight(n, others):
        agents = [m for m in range(3) if m != n]
        return np.prod([zeta[m, a] for m, a in zip(agents, others)])

    got = M.optimistic_q(jnp.asarray(q)[None], jnp.log(jnp.asarray(zeta))[:, None, :], beta)[:, 0]
    np.testing.assert_allclose(got, _brute_optimistic(q, weight, beta), rtol=1e-5, atol=1e-5)


def test_eps_softmax_zeta_is_the_papers_mixture_over_joint_actions():
    """ζ̂ = ε/|A| + (1-ε) π̂ over *joint* actions; ζ̂^{-n} marginalises agent n out (MAOSQL §3.2)."""
    rng = np.random.default_rng(1)
    n_agents, n_actions, eps, beta = 3, 2, 0.3, 1.7
    q = rng.normal(size=(n_actions,) * n_agents)
    pi = rng.dirichlet(np.ones(n_actions), size=n_agents)
    joint = np.einsum("i,j,k->ijk", *pi)
    zeta = eps / joint.size + (1 - eps) * joint

    def weight(n, others):
        idx = list(others)
        idx.insert(n, slice(None))
        return zeta[tuple(idx)].sum()

    got = M.optimistic_q_eps_softmax(jnp.asarray(q)[None], jnp.log(jnp.asarray(pi))[:, None, :], beta, eps)[:, 0]
    np.testing.assert_allclose(got, _brute_optimistic(q, weight, beta), rtol=1e-5, atol=1e-5)


def _train(name, game, steps=600, seeds=4, **cfg):
    algo = get_algo(name)
    return train(algo, coopmarl.make(game), algo.config_cls(**cfg), RunConfig(total_steps=steps, n_seeds=seeds,
                                                                                log_points=6), progress=False)


def test_maosvi_greedy_joint_action_is_the_optimum_on_ro_matrix():
    """MAOSQL §2.3.2: optimism escapes relative overgeneralisation; (3,3) is the optimum of Table 2."""
    result = _train("maosvi", "ro-matrix", entropy_alpha=50.0, optimism_beta=10.0)
    np.testing.assert_array_equal(result.metrics["greedy_optimal"][-1], 1.0)
    np.testing.assert_allclose(result.metrics["greedy_regret"][-1], 0.0, atol=1e-4)
    state = jax.tree.map(lambda x: x[0], result.train_state)
    q_hat = M.maosvi_q_hat(state, get_algo("maosvi").config_cls())
    assert list(np.asarray(q_hat[:, 0].argmax(-1))) == [2, 2]  # both agents pick action 3


def test_maosql_converges_when_theorem3_holds():
    """Theorem 3: with β > 2(N-1)α/(1-γ) the iteration is a contraction; |ΔQ̂| must vanish."""
    for game in ("ro-matrix", "three-state", "tensor"):
        result = _train("maosql", game, steps=1500, entropy_alpha=1.0, optimism_beta=500.0)
        assert result.static["theorem3_condition"]
        assert np.all(result.metrics["q_change"][-1] < 1e-4), game
        # The fixed point is the same from every random Q_0 (uniqueness).
        finals = np.asarray(result.train_state.q_hat)
        np.testing.assert_allclose(finals, np.broadcast_to(finals[0], finals.shape), atol=1e-3)


def test_theorem3_flag():
    assert M.theorem3_condition(2, alpha=1.0, beta=201.0, gamma=0.99)
    assert not M.theorem3_condition(2, alpha=50.0, beta=10.0, gamma=0.99)
    assert M.theorem3_condition(1, alpha=50.0, beta=1e-3, gamma=0.99)  # one agent: always


def test_large_alpha_beta_approach_the_optimum():
    """Theorem 2: ‖Q̃* − Q̃*_(α,β,ζ)‖ = O(1/α + log(1/z)/β); MAOSVI's value → optimum on three-state."""
    game = coopmarl.make("three-state")
    result = _train("maosvi", "three-state", steps=2000, seeds=2, entropy_alpha=200.0, optimism_beta=200.0)
    assert np.all(result.metrics["regret"][-1] < 0.05 * float(exact.solve(game).optimal_return))


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="zeta must be one of uniform, random"):
        M.MAOSVIConfig(zeta="gaussian")
    with pytest.raises(ValueError, match="gamma"):
        M.MAOSQLConfig(gamma=1.0)
