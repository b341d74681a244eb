"""DOP (stochastic, discrete actions): the decomposed critic, the DOP-TB and on-policy targets, the policy gradient,
the critic's own step size, a monotonic game solved, LBF trained, bad values refused."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from coopmarl.algos import dop
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Transition
from coopmarl.config import ConfigError, resolve
from coopmarl.envs.tabular import TabularGame
from coopmarl.runner import RunConfig, train

N, S = 3, 5


# ---- (1) the decomposed critic -------------------------------------------------------------------------------------


@pytest.mark.parametrize("decomposition", ["affine", "convex"])
def test_the_decomposed_critic_is_affine_in_each_local_q_with_non_negative_weights(decomposition):
    mixer = dop.DecomposedMixer(N, 4, decomposition)
    for seed in range(3):
        params = mixer.init(jax.random.PRNGKey(seed), jnp.zeros(S))
        states = 3.0 * jax.random.normal(jax.random.PRNGKey(10 + seed), (8, S))
        k, b = mixer.apply(params, states)
        assert k.shape == (8, N) and b.shape == (8,) and np.all(np.asarray(k) >= 0)
        # k and b by hand from the hypernetworks (the authors' QMixer.k() and .b(): one linear layer each)
        p = {name: {w: np.asarray(v, np.float64) for w, v in layer.items()} for name, layer in params["params"].items()}
        s = np.asarray(states, np.float64)
        dense = lambda name, x: x @ p[name]["kernel"] + p[name]["bias"]  # noqa: E731
        w1, w2 = np.abs(dense("Dense_0", s)).reshape(8, N, 4), np.abs(dense("Dense_1", s))
        k_hand = np.einsum("bnm,bm->bn", w1, w2)
        if decomposition == "affine":
            b_hand = np.sum(dense("Dense_2", s) * w2, -1) + dense("Dense_4", np.maximum(dense("Dense_3", s), 0))[:, 0]
        else:  # normalised weights, no b(s)
            k_hand, b_hand = k_hand / k_hand.sum(-1, keepdims=True), np.zeros(8)
            np.testing.assert_allclose(np.sum(k, -1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(k, k_hand, rtol=1e-4)
        np.testing.assert_allclose(b, b_hand, rtol=1e-4, atol=1e-4)
        # Q_tot at constructed local values = Σ_i k_i Q^i + b, and affine in each Q^i
        qs = jax.random.normal(jax.random.PRNGKey(20 + seed), (8, N)) * 4
        q_tot = dop.mix(k, b, qs)
        np.testing.assert_allclose(q_tot, np.sum(k_hand * np.asarray(qs), -1) + b_hand, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(dop.mix(k, b, jnp.zeros((8, N))), b_hand, rtol=1e-4, atol=1e-4)
        for i in range(N):
            for step in (-2.5, 1.0, 7.0):
                moved = dop.mix(k, b, qs.at[:, i].add(step))
                np.testing.assert_allclose(moved - q_tot, step * k_hand[:, i], rtol=1e-3, atol=1e-3)
        grad = jax.vmap(jax.grad(lambda q, kk, bb: dop.mix(kk, bb, q)))(qs, k, b)
        np.testing.assert_allclose(grad, k, rtol=1e-6)


# ---- (2) the targets -----------------------------------------------------------------------------------------------


def _tree_backup_by_hand(q, e, r, term, done, c, gamma, lam, steps):
    """y_t = Q_t + Σ_{j<steps} (γλ)^j Π_{l=1..j} c_{t+l} δ_{t+j}, stopping after an episode end or the window's end."""
    t_len = len(q)
    delta = [r[t] + gamma * (1 - term[t]) * e[t] - q[t] for t in range(t_len)]
    y = []
    for t in range(t_len):
        total, coef = delta[t], 1.0
        for j in range(1, steps):
            if t + j >= t_len or done[t + j - 1]:
                break
            coef *= gamma * lam * c[t + j]
            total += coef * delta[t + j]
        y.append(q[t] + total)
    return np.array(y)


@pytest.mark.parametrize("done_at", [None, 0, 1])
@pytest.mark.parametrize("steps", [5, 2])
def test_tree_backup_target_matches_a_hand_computation(done_at, steps):
    gamma, lam = 0.9, 0.8
    q = np.array([1.0, -0.5, 2.0])  # Q̄_tot(τ_t, a_t)
    e = np.array([0.7, 1.5, -1.0])  # E_π Q̄_tot(τ_{t+1}, ·)
    r = np.array([0.3, 1.0, -2.0])
    c = np.array([0.25, 0.6, 0.4])  # π(a_t | τ_t), joint
    term = np.zeros(3)
    done = np.zeros(3, bool)
    if done_at is not None:
        term[done_at], done[done_at] = 1.0, True
    got = dop.tree_backup_targets(*map(jnp.asarray, (q, e, r, term, done, c)), gamma, lam, steps)
    np.testing.assert_allclose(got, _tree_backup_by_hand(q, e, r, term, done, c, gamma, lam, steps), rtol=1e-6)
    # the 3-step window written out: y_0 = Q_0 + δ_0 + γλ c_1 δ_1 + (γλ)² c_1 c_2 δ_2
    if done_at is None and steps == 5:
        d = r + gamma * e - q
        y0 = q[0] + d[0] + gamma * lam * c[1] * d[1] + (gamma * lam) ** 2 * c[1] * c[2] * d[2]
        assert float(got[0]) == pytest.approx(y0, rel=1e-6)
        assert float(got[2]) == pytest.approx(r[2] + gamma * e[2], rel=1e-6)
    if done_at == 0:  # a terminal first step: the target is its reward alone
        assert float(got[0]) == pytest.approx(r[0], rel=1e-6)


def test_on_policy_targets_are_sarsa_lambda_returns_along_the_window():
    gamma, lam = 0.9, 0.8
    q = np.array([[1.0, -0.5, 2.0, 0.5]])  # Q̄_tot(τ_t, a_t)
    e = np.array([[0.7, 1.5, -1.0, 3.0]])  # E_π Q̄_tot(τ_{t+1}, ·)
    r = np.array([[0.3, 1.0, -2.0, 0.5]])
    done = np.array([[False, True, False, False]])  # a time limit after step 1 (bootstrapped)
    v = np.asarray(dop.on_policy_next_values(jnp.asarray(q), jnp.asarray(e), jnp.asarray(done)))
    np.testing.assert_allclose(v, [[-0.5, 1.5, 0.5, 3.0]])  # next taken action's value; E_π at ends
    g = np.asarray(op.lambda_returns(jnp.asarray(r[0]), jnp.zeros(4, bool), jnp.asarray(done[0]), jnp.asarray(v[0]),
                                     gamma, lam))
    g3 = r[0, 3] + gamma * 3.0
    g2 = r[0, 2] + gamma * ((1 - lam) * 0.5 + lam * g3)
    g1 = r[0, 1] + gamma * 1.5
    g0 = r[0, 0] + gamma * ((1 - lam) * -0.5 + lam * g1)
    np.testing.assert_allclose(g, [g0, g1, g2, g3], rtol=1e-6)


# ---- (3) the policy gradient ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_policy_gradient_wrt_logits_is_k_times_advantage_times_grad_log_pi(eps):
    logits = jnp.array([[[0.2, -1.0, 0.5], [1.0, 0.3, -0.4]], [[-0.3, 0.8, 0.1], [0.0, 0.0, 2.0]]])  # [T=2, N=2, A=3]
    avail = jnp.array([[[True, True, True], [True, False, True]], [[True, True, False], [True, True, True]]])
    q = jnp.array([[[1.0, 2.0, -1.0], [0.5, 9.0, 3.0]], [[2.0, -1.0, 7.0], [0.0, 1.0, 4.0]]])
    k = jnp.array([[0.5, 2.0], [1.5, 0.25]])
    actions = jnp.array([[2, 0], [1, 2]])

    def loss(z, q, k):
        return dop.policy_gradient_loss(dop.log_policy(z, avail, eps), q, k, actions)

    grads = jax.grad(loss, argnums=(0, 1, 2))(logits, q, k)
    expected = np.zeros((2, 2, 3))
    for t in range(2):
        for i in range(2):
            m = np.asarray(avail[t, i])
            p = np.where(m, np.exp(np.asarray(logits[t, i])), 0.0)
            p = p / p.sum()
            pi = np.where(m, (1 - eps) * p + eps / m.sum(), 0.0)  # the ε-floored policy
            np.testing.assert_allclose(np.exp(dop.log_policy(logits[t, i], avail[t, i], eps)) * m, pi, rtol=1e-5)
            a = int(actions[t, i])
            advantage = float(q[t, i, a]) - float(np.sum(pi * np.asarray(q[t, i])))
            grad_log_pi = (1 - eps) * p[a] * (np.eye(3)[a] - p) / pi[a] * m
            expected[t, i] = -float(k[t, i]) * advantage * grad_log_pi / 4  # mean over T x N = 4 terms
    np.testing.assert_allclose(grads[0], expected, rtol=1e-5, atol=1e-7)
    assert not np.any(grads[1]) and not np.any(grads[2])  # Q^i and k_i are constants


# ---- the critic's step size ----------------------------------------------------------------------------------------


def _random_batch(seed, spec, n_windows, t_len):
    rng = np.random.default_rng(seed)
    n, a = spec.n_agents, spec.n_actions
    obs = rng.normal(size=(n_windows, t_len, n, spec.obs_dim)).astype(np.float32)
    state = rng.normal(size=(n_windows, t_len, spec.state_dim)).astype(np.float32)
    avail = np.ones((n_windows, t_len, n, a), bool)
    truncated = np.zeros((n_windows, t_len), bool)
    truncated[:, -1] = True
    return jax.tree.map(jnp.asarray, Transition(
        obs=obs, global_state=state, avail_actions=avail, actions=rng.integers(0, a, (n_windows, t_len, n)),
        reward=np.repeat(rng.normal(size=(n_windows, t_len, 1)), n, -1).astype(np.float32),
        terminated=np.zeros((n_windows, t_len), bool), truncated=truncated, next_obs=np.roll(obs, -1, 1),
        next_global_state=np.roll(state, -1, 1), next_avail_actions=avail,
        agent_carry=np.zeros((n_windows,) + dop.initial_carry(spec, _CONFIG).shape, np.float32)))


_CONFIG = dop.DOPConfig(n_envs=1, batch_size=3, buffer_size=4, recent_buffer_size=2, recent_batch_size=2,
                        lr=1e-2, critic_lr=1e-3, max_grad_norm=0.0, agent="mlp")


def test_critic_lr_is_the_step_size_of_the_critic_and_lr_the_actors():
    """One Adam step (first step: each parameter moves by its step size times sign(gradient)) moves the critic's and
    mixer's parameters as used by `critic_lr`, the actors' by `lr`."""
    config = _CONFIG
    spec = TabularGame.matrix(np.eye(3), horizon=3).spec
    params = jax.jit(dop.init_params, static_argnums=(1, 2))(jax.random.PRNGKey(0), spec, config)
    batch = _random_batch(1, spec, config.batch_size + config.recent_batch_size, 3)
    grads = jax.jit(jax.grad(lambda p: dop.loss_fn(p, p, batch, None, config, jnp.int32(0))[0]))(params)
    opt = op.optimizer(config)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    before, after = params["critic"], new["critic"]
    for moved, g, rate in ((jax.tree.map(jnp.subtract, after, before), grads["critic"], config.critic_lr),
                           (jax.tree.map(jnp.subtract, new["actor"], params["actor"]), grads["actor"], config.lr)):
        moved, g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(moved)]), \
            np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
        big = np.abs(g) > 1e-4  # Adam's ε (1e-8) is negligible there
        assert big.sum() > 10
        np.testing.assert_allclose(moved[big], -rate * np.sign(g[big]), rtol=2e-3)


# ---- (4) a monotonic game, (5) LBF ---------------------------------------------------------------------------------


def test_dop_solves_a_monotonic_game():
    # an additive 2-agent game, Q_tot = Σ k_i Q^i + b represents it exactly; optimum (2, 0) = 3 per step, 15 per
    # episode. Measured with these settings (GRU agents, the other keys the defaults): seeds 0-15 all at 15 after
    # 4,000 steps (15 of 16 after 3,000); the test runs seeds 0-3
    payoff = np.add.outer(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, -1.0]))
    game = TabularGame.matrix(payoff, horizon=5)
    r = resolve("dop", "ro-matrix", {"epsilon_anneal_steps": "1500", "batch_size": "16"})
    result = train(r.algo, game, r.config, RunConfig(total_steps=4000, n_seeds=4, log_points=2, eval_episodes=2),
                   progress=False)
    np.testing.assert_allclose(result.final()["eval_return"], 15.0)


def test_dop_trains_on_lbf():
    r = resolve("dop", "lbf:5x5-2p-1f-coop", ["n_envs=2", "rollout_length=10", "batch_size=4", "buffer_size=8",
                                              "recent_buffer_size=4", "recent_batch_size=2"])
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=200, n_seeds=1, log_points=2, eval_episodes=2),
                   progress=False)
    final = result.final()
    for name in ("loss", "critic_loss", "tree_backup_loss", "on_policy_loss", "actor_loss"):
        assert np.isfinite(final[name]).all(), name
    assert final["learning"].min() == 1.0


# ---- (6) bad values ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("tree_backup_lambda", 1.5, "tree_backup_lambda must be a finite number in \\[0, 1\\]"),
    ("tree_backup_weight", -0.1, "tree_backup_weight must be a finite number in \\[0, 1\\]"),
    ("tree_backup_steps", 0, "tree_backup_steps must be an integer >= 1"),
    ("critic_lr", 0.0, "critic_lr must be a finite number > 0"),
    ("mixing_embed", 0, "mixing_embed must be an integer >= 1"),
    ("recent_batch_size", 0, "recent_batch_size must be an integer >= 1"),
    ("recent_batch_size", 64, "recent_batch_size \\(64\\) cannot exceed recent_buffer_size"),
    ("n_envs", 40, "recent_buffer_size \\(32\\) must be >= n_envs \\(40\\)"),
    ("critic_hidden_sizes", (), "critic_hidden_sizes must be one or more positive layer widths"),
    ("decomposition", "monotonic", "decomposition must be one of affine, convex"),
])
def test_bad_values_raise_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(dop.DOPConfig(), **{key: value})
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    if text:
        with pytest.raises(ConfigError, match=key):
            resolve("dop", "ro-matrix", {key: text})
