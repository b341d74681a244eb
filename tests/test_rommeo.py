"""ROMMEO-Q / ROMMEO-Q-EMP (ROMMEO paper §3.1, App. A Alg. 1) against direct numpy computations, and
the paper's headline: ROMMEO-Q reaches the global optimum (A, A) of the iterated climbing game."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.algos.base import Transition, get_algo
from coopmarl.exact import rommeo as R
from coopmarl.runner import RunConfig, train


def _logsumexp(x, axis=None):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _np_formulas(q_s, p, alpha):
    """Direct eqs. (9)-(11): pi [A, O], rho [O], V []; q_s [A, O] = Q^i(s, a^i, a^{-i}), p [O] = P(a^{-i}|s)."""
    pi = np.exp(q_s / alpha) / np.exp(q_s / alpha).sum(0, keepdims=True)
    unnorm = p * np.exp(q_s / alpha).sum(0) ** alpha
    return pi, unnorm / unnorm.sum(), np.log(unnorm.sum())


Q_S = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]) / 4.0  # [a^i, a^{-i}]
PRIOR = np.array([0.2, 0.5, 0.3])


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_pi_rho_value_and_marginal_match_numpy(alpha):
    pi, rho, v = _np_formulas(Q_S, PRIOR, alpha)
    q, lp = jnp.asarray(Q_S), jnp.log(jnp.asarray(PRIOR))
    np.testing.assert_allclose(np.exp(R.log_pi(q, alpha)), pi, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.exp(R.log_rho(q, lp, alpha)), rho, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(R.soft_value(q, lp, alpha), v, rtol=1e-5)
    np.testing.assert_allclose(R.marginal(q, lp, alpha), pi @ rho, rtol=1e-5, atol=1e-7)
    # ROMMEO-Q-EMP: rho = P
    np.testing.assert_allclose(np.exp(R.log_rho(q, lp, alpha, empirical=True)), PRIOR, rtol=1e-6)
    np.testing.assert_allclose(R.marginal(q, lp, alpha, empirical=True), pi @ PRIOR, rtol=1e-5, atol=1e-7)


def test_formulas_are_stable_for_large_q_and_zero_prior():
    q = jnp.asarray(Q_S + 500.0)  # exp(Q) overflows float32; the log-space code must not
    lp = jnp.log(jnp.asarray([0.0, 0.6, 0.4]))
    rho = np.exp(R.log_rho(q, lp, 1.0))
    assert np.all(np.isfinite(rho)) and rho[0] == 0.0
    _, rho_np, _ = _np_formulas(Q_S, np.array([0.0, 0.6, 0.4]), 1.0)  # rho is invariant to a constant shift
    np.testing.assert_allclose(rho, rho_np, rtol=1e-4, atol=1e-6)
    assert np.isfinite(R.one_sample_value(jax.random.PRNGKey(0), q, lp, 1.0))


def test_one_sample_value_is_exact_when_alpha_is_one():
    """With alpha = 1 every importance sample of Alg. 1 equals V of eq. (9): log sum P sum e^Q."""
    rng = np.random.default_rng(1)
    sample = jax.jit(jax.vmap(lambda k, q, lp: R.one_sample_value(k, q, lp, 1.0), in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    for _ in range(3):
        q_s = rng.normal(scale=3.0, size=(3, 9))
        p = rng.dirichlet(np.ones(9))
        exact = _logsumexp(np.log(p) + _logsumexp(q_s, axis=0))
        samples = sample(keys, jnp.asarray(q_s, jnp.float32), jnp.log(jnp.asarray(p, jnp.float32)))
        np.testing.assert_allclose(samples, exact, rtol=1e-5)
    # for alpha != 1 Alg. 1's estimator is not the soft value of eq. (9): document that it differs
    q_s, lp = jnp.asarray(Q_S), jnp.log(jnp.asarray(PRIOR))
    v_half = jax.vmap(lambda k: R.one_sample_value(k, q_s, lp, 0.5))(keys)
    assert not np.allclose(v_half, R.soft_value(q_s, lp, 0.5), rtol=1e-3)


def test_others_index_and_prior_match_enumeration():
    n, a = 3, 3
    joint = np.array(list(itertools.product(range(a), repeat=n)))  # flat joint order, agent 1 most significant
    for i in range(n):
        expect = np.ravel_multi_index(np.delete(joint, i, axis=1).T, (a,) * (n - 1))
        np.testing.assert_array_equal(R.others_index(jnp.asarray(joint), i, a), expect)
    # prior: frequency of a^{-i} among the window's visits to s; uniform for an unvisited state
    rng = np.random.default_rng(2)
    states = rng.integers(0, 2, size=(20, n)).astype(np.int32)
    states[-5:] = -1  # empty slots
    actions = rng.integers(0, a, size=(20, n)).astype(np.int32)
    for i in range(n):
        for s in (0, 1):
            hits = states[:, i] == s
            others = np.ravel_multi_index(np.delete(actions[hits], i, axis=1).T, (a,) * (n - 1))
            expect = np.bincount(others, minlength=a ** (n - 1)) / hits.sum()
            got = np.exp(R.log_prior(jnp.asarray(states), jnp.asarray(actions), i, s, a, a ** (n - 1)))
            np.testing.assert_allclose(got, expect, rtol=1e-6)
        uniform = np.exp(R.log_prior(jnp.asarray(states), jnp.asarray(actions), i, 7, a, a ** (n - 1)))
        np.testing.assert_allclose(uniform, np.full(a ** (n - 1), 1.0 / a ** (n - 1)), rtol=1e-6)


def test_update_is_the_soft_bellman_step_on_the_newest_transition():
    """alpha = 1 makes V̄ exact, so one update is deterministic: Q(s,a) += lr (r + γ V(s') - Q(s,a))."""
    game = coopmarl.make("climbing")
    config = R.ROMMEOQConfig(prior_window=4)
    state = R.rommeo_init(jax.random.PRNGKey(3), game.spec, config)
    one_hot = jnp.ones((2, 1))
    tr = Transition(obs=one_hot, global_state=jnp.ones(1), avail_actions=jnp.ones((2, 3), bool),
                    actions=jnp.array([0, 2]), reward=jnp.array([0.0, 0.0]), terminated=jnp.bool_(False),
                    truncated=jnp.bool_(True), next_obs=one_hot, next_global_state=jnp.ones(1),
                    next_avail_actions=jnp.ones((2, 3), bool))
    batch = jax.tree.map(lambda x: x[None, None], tr)
    update = jax.jit(lambda st, b: R.rommeo_update(st, b, jax.random.PRNGKey(4), config=config))
    new, metrics = update(state, batch)
    q = np.asarray(state.q)
    for i, (own, other) in enumerate([(0, 2), (2, 0)]):
        p = np.eye(3)[other]  # the window holds this one transition
        v = _logsumexp(np.log(p + 1e-30) + _logsumexp(q[i, 0], axis=0))
        expect = q[i, 0].copy()
        expect[own, other] += 1.0 * (config.gamma * v - q[i, 0, own, other])  # lr_0 = 1
        np.testing.assert_allclose(new.q[i, 0], expect, rtol=1e-5)
    assert float(metrics["lr"]) == 1.0 and int(new.step) == 1
    # terminated: y = r
    new_t, _ = update(state, jax.tree.map(lambda x: x[None, None], tr._replace(terminated=jnp.bool_(True))))
    assert np.allclose(new_t.q[0, 0, 0, 2], 0.0) and np.allclose(new_t.q[1, 0, 2, 0], 0.0)


def test_act_is_decentralised_and_samples_the_marginal():
    game = coopmarl.make("three-state")
    config = R.ROMMEOQConfig()
    state = R.rommeo_init(jax.random.PRNGKey(5), game.spec, config)
    obs_a = jnp.stack([jax.nn.one_hot(0, 3), jax.nn.one_hot(1, 3)])
    obs_b = jnp.stack([jax.nn.one_hot(0, 3), jax.nn.one_hot(2, 3)])
    avail = jnp.ones((2, 3), bool)
    keys = jax.random.split(jax.random.PRNGKey(6), 4000)
    act = jax.jit(jax.vmap(lambda o, k: R.rommeo_act(state, o, avail, k, explore=False, config=config),
                           in_axes=(None, 0)))
    acts_a, acts_b = act(obs_a, keys), act(obs_b, keys)
    np.testing.assert_array_equal(acts_a[:, 0], acts_b[:, 0])  # agent 1's action ignores agent 2's obs
    policy = jax.jit(R.rommeo_policy, static_argnums=1)(state, config)
    freq = np.bincount(np.asarray(acts_a[:, 1]), minlength=3) / len(keys)
    np.testing.assert_allclose(freq, policy[1, 1], atol=0.03)
    np.testing.assert_allclose(policy.sum(-1), 1.0, rtol=1e-5)


def test_registered_variants():
    assert get_algo("rommeo-q").default_config().opponent_model == "rommeo"
    assert get_algo("rommeo-q-emp").default_config().opponent_model == "empirical"
    with pytest.raises(TypeError, match="opponent_model"):  # fixed by the algorithm (a ClassVar), not a key
        R.ROMMEOQConfig(opponent_model="empirical")


@pytest.fixture(scope="module")
def climbing_run():
    algo = get_algo("rommeo-q")
    return train(algo, coopmarl.make("climbing"), algo.default_config(),
                 RunConfig(total_steps=5_000, n_seeds=40, log_points=5), progress=False)


def test_rommeo_q_reaches_the_global_optimum_of_climbing(climbing_run):
    """ROMMEO Fig. 1b: most seeds put > 0.5 probability on (A, A) (measured: ~93% of 100 seeds at 5k steps)."""
    p = climbing_run.metrics["p_optimal"][-1]
    assert np.mean(p > 0.5) >= 0.75, p
    assert np.all(np.isfinite(climbing_run.metrics["td_error"]))


def test_same_seed_same_result(climbing_run):
    algo = get_algo("rommeo-q")
    again = train(algo, coopmarl.make("climbing"), algo.default_config(),
                  RunConfig(total_steps=5_000, n_seeds=40, log_points=5), progress=False)
    jax.tree.map(np.testing.assert_array_equal, again.train_state, climbing_run.train_state)
    for k, v in climbing_run.metrics.items():
        np.testing.assert_array_equal(again.metrics[k], v)
