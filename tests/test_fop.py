"""FOP (Zhang et al., ICML 2021): the IGO factorisation, λ > 0, the policy and critic losses by hand, and short runs."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coopmarl.algos import fop
from coopmarl.algos.base import Transition
from coopmarl.config import ConfigError, resolve
from coopmarl.envs.tabular import TabularGame
from coopmarl.runner import RunConfig, train


def _joint_table(q, v, lam, v_state, gradient="factorised"):
    """Q_tot over every joint action of N agents with A actions each: [A] * N (agent 0's action first)."""
    n, a = q.shape
    table = np.zeros((a,) * n)
    for joint in itertools.product(range(a), repeat=n):
        taken = jnp.array([q[i, joint[i]] for i in range(n)])
        table[joint] = fop.factorised_q_tot(taken, v, lam, v_state, gradient)
    return table


@pytest.mark.parametrize("n_agents, n_actions", [(2, 3), (3, 2)])
def test_igo_the_product_of_agent_policies_is_the_joint_boltzmann_policy(n_agents, n_actions):
    rng = np.random.default_rng(n_agents)
    q = jnp.asarray(rng.normal(size=(n_agents, n_actions)) * 2.0, jnp.float32)  # Q^i(τ^i, ·)
    alpha = 0.7
    alpha_i = jnp.asarray(rng.uniform(0.2, 2.0, size=n_agents), jnp.float32)  # per-agent temperatures
    lam = alpha / alpha_i  # the theorem's λ^i = α/α^i
    avail = jnp.ones((n_agents, n_actions), bool)
    v = fop.soft_value(q, avail, alpha_i)  # V^i = α^i log Σ exp(Q^i/α^i)
    np.testing.assert_allclose(v, alpha_i * np.log(np.exp(np.asarray(q) / alpha_i[:, None]).sum(-1)), rtol=1e-5)
    pi = np.exp(np.asarray(fop.agent_log_policy(q, avail, alpha_i)))  # π^i ∝ exp((Q^i − V^i)/α^i)
    np.testing.assert_allclose(pi.sum(-1), 1.0, rtol=1e-5)
    v_state = 0.3
    for gradient in ("factorised", "additive"):  # the authors' form has the same value
        q_tot = _joint_table(q, v, lam, v_state, gradient)
        joint = np.exp(q_tot / alpha) / np.exp(q_tot / alpha).sum()  # exp((Q_tot − V_tot)/α), normalised
        product = pi[0]
        for i in range(1, n_agents):
            product = np.multiply.outer(product, pi[i])
        np.testing.assert_allclose(joint, product, rtol=1e-4, atol=1e-7)
        # V_tot = Σ V^i + V(s) is Q_tot's soft value: the factorised Q_tot is normalised as it stands
        np.testing.assert_allclose(alpha * np.log(np.exp(q_tot / alpha).sum()), float(jnp.sum(v)) + v_state, rtol=1e-5)
    # the test has teeth: with λ^i ≠ α/α^i the agents' product is not the joint Boltzmann policy
    wrong = _joint_table(q, v, jnp.ones(n_agents), v_state)
    assert not np.allclose(np.exp(wrong / alpha) / np.exp(wrong / alpha).sum(), product, atol=1e-3)


def test_mixing_gradient_reaches_agents_through_lambda_or_one():
    q_taken, v, lam = jnp.array([1.0, -0.5]), jnp.array([1.5, 0.2]), jnp.array([0.3, 2.0])
    grad = jax.grad(lambda q: fop.factorised_q_tot(q, v, lam, 0.0, "factorised"))(q_taken)
    np.testing.assert_allclose(grad, lam)  # ∂Q_tot/∂Q^i = λ^i (the factorisation as written)
    grad = jax.grad(lambda q: fop.factorised_q_tot(q, v, lam, 0.0, "additive"))(q_taken)
    np.testing.assert_allclose(grad, 1.0)  # the authors' mixers/fop.py: Σ (λ − 1) sg(Q − V) + Σ Q + V(s)
    grad_v = jax.grad(lambda x: fop.factorised_q_tot(q_taken, x, lam, 0.0, "factorised"))(v)
    np.testing.assert_allclose(grad_v, 1.0 - lam)


N, A, S = 3, 4, 5  # the mixer tests' agents, actions and state width
MIXER = fop.FOPMixer(N, heads=4, embed=8)
mixer_init, mixer_apply = jax.jit(MIXER.init), jax.jit(MIXER.apply)  # compiled once for both tests


def _mixer_params(seed):
    return mixer_init(jax.random.PRNGKey(seed), jnp.zeros(S), jnp.zeros((N, A)))


def test_lambda_is_positive_for_random_params_and_inputs():
    for seed in range(4):
        params = _mixer_params(seed)
        k_state, k_act = jax.random.split(jax.random.PRNGKey(100 + seed))
        states = 3.0 * jax.random.normal(k_state, (64, S))
        onehot = jax.nn.one_hot(jax.random.randint(k_act, (64, N), 0, A), A)
        lam, value = mixer_apply(params, states, onehot)
        assert lam.shape == (64, N) and value.shape == (64,)
        assert np.all(np.asarray(lam) > 0.0)
        # λ depends on the joint action (the attention's action head), V(s) does not
        other = jax.nn.one_hot((jnp.argmax(onehot, -1) + 1) % A, A)
        lam_other, value_other = mixer_apply(params, states, other)
        assert not np.allclose(lam_other, lam)
        np.testing.assert_array_equal(value_other, value)


def test_lambda_temperatures_make_every_transition_igo_consistent():
    """agent_temperature="lambda": α^i = α/λ^i(s, a), so Q_tot − V_tot = α Σ_i log π^i_{α^i}(a^i) on the mixer's λ."""
    alpha = 0.4
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    state, q = jax.random.normal(keys[0], (64, S)), 2.0 * jax.random.normal(keys[1], (64, N, A))
    actions = jax.random.randint(keys[2], (64, N), 0, A)
    avail = jnp.ones((64, N, A), bool)
    lam, v_state = mixer_apply(_mixer_params(1), state, jax.nn.one_hot(actions, A))
    config = fop.FOPConfig(agent_temperature="lambda")
    temps = fop.agent_temperatures(alpha, lam, config)
    np.testing.assert_allclose(temps, alpha / lam, rtol=1e-6)
    v = fop.soft_value(q, avail, temps)
    taken = jnp.take_along_axis(q, actions[..., None], -1)[..., 0]
    q_tot = fop.factorised_q_tot(taken, v, lam, v_state)
    log_pi = jnp.take_along_axis(fop.agent_log_policy(q, avail, temps), actions[..., None], -1)[..., 0]
    np.testing.assert_allclose(q_tot - (v.sum(-1) + v_state), alpha * log_pi.sum(-1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fop.agent_temperatures(alpha, lam, fop.FOPConfig()), alpha)  # "shared": α^i = α


def test_policy_loss_gradient_matches_a_hand_computation():
    logits = jnp.array([[[0.2, -1.0, 0.5], [1.0, 0.3, -0.4]]])  # [batch 1, N 2, A 3]
    avail = jnp.array([[[True, True, True], [True, False, True]]])
    q = jnp.array([[[1.0, 0.5, -0.2], [0.3, 9.0, 0.8]]])  # agent 1's unavailable action has a large (ignored) Q
    alpha = jnp.array([[0.4, 1.5]])  # per-agent temperatures α^i
    loss = lambda z: jnp.mean(fop.policy_terms(z, avail, q, alpha))  # noqa: E731
    grad = np.asarray(jax.grad(loss)(logits))[0]
    value = float(loss(logits))
    expected_grad, expected_value = np.zeros((2, 3)), 0.0
    for i in range(2):
        ok = np.asarray(avail[0, i])
        z = np.where(ok, np.asarray(logits[0, i], np.float64), -np.inf)
        pi = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        g = np.where(ok, float(alpha[0, i]) * np.log(np.where(ok, pi, 1.0)) - np.asarray(q[0, i]), 0.0)
        mean_g = float((pi * g).sum())
        expected_value += mean_g / 2  # the mean over the 2 agents
        # ∂/∂z_k Σ_a π_a (α log π_a − Q_a) = π_k (g_k − E_π[g])  (the α Σ_a ∂π_a term is 0)
        expected_grad[i] = np.where(ok, pi * (g - mean_g), 0.0) / 2
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def _window(reward, terminated, truncated, n_agents=2):
    t = len(reward)
    z = lambda *shape: jnp.zeros((1, t) + shape)  # noqa: E731
    return Transition(
        obs=z(n_agents, 1), global_state=z(1), avail_actions=jnp.ones((1, t, n_agents, 2), bool),
        actions=jnp.zeros((1, t, n_agents), jnp.int32), reward=jnp.repeat(jnp.asarray(reward)[None, :, None], n_agents, -1),
        terminated=jnp.asarray(terminated)[None], truncated=jnp.asarray(truncated)[None], next_obs=z(n_agents, 1),
        next_global_state=z(1), next_avail_actions=jnp.ones((1, t, n_agents, 2), bool),
        team_reward=jnp.asarray(reward)[None],
    )


@pytest.mark.parametrize("lam", [0.0, 0.6])
@pytest.mark.parametrize("form", ["soft_td", "authors"])
def test_soft_td_target_matches_a_hand_computation(lam, form):
    gamma, alpha = 0.9, 0.3
    r = np.array([1.0, 0.0, 2.0, -1.0, 0.5])
    term = np.array([0, 1, 0, 0, 0], bool)  # an episode ends by termination after step 1
    trunc = np.array([0, 0, 0, 1, 0], bool)  # and by a time limit after step 3
    next_q = np.array([0.3, 0.7, -0.2, 0.4, 1.1])  # Q̄_tot(τ′, a′)
    next_log_pi = np.log(np.array([[0.5, 0.9], [0.2, 0.6], [0.7, 0.7], [0.1, 0.3], [0.8, 0.4]]))  # log π^i(a′^i|τ′^i)
    config = fop.FOPConfig(gamma=gamma, td_lambda=lam, entropy_target=form)
    got = fop.soft_td_targets(_window(r, term, trunc), jnp.asarray(next_q)[None], jnp.asarray(next_log_pi)[None],
                              alpha, config)[0]
    # paper: the next soft value V′ = Q̄_tot(τ′, a′) − α Σ_i log π^i(a′^i); authors: Q̄_tot alone, entropy added after
    v = next_q - alpha * next_log_pi.sum(-1) if form == "soft_td" else next_q
    expected = np.zeros(5)
    for t in reversed(range(5)):
        boot = v[t] if (term[t] or trunc[t] or t == 4) else (1 - lam) * v[t] + lam * expected[t + 1]
        expected[t] = r[t] + gamma * (1 - term[t]) * boot
    if form == "authors":
        expected = expected - alpha * next_log_pi.mean(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    if lam == 0.0 and form == "soft_td":  # y = r + γ(1 − term)(Q̄_tot(τ′, a′) − α log π(a′|τ′))
        np.testing.assert_allclose(got, r + gamma * (1 - term) * (next_q - alpha * next_log_pi.sum(-1)), rtol=1e-5)


def test_fop_solves_a_monotonic_game():
    # an additive 2-agent game (Q^1 + Q^2 represents it); optimum (2, 0) = 3 per step, 15 over 5 steps. γ = 0.5 keeps
    # the time-limit-bootstrapped values small (≈ 6), and 4 updates per iteration learn them in 2k steps
    payoff = np.add.outer(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, -1.0]))
    game = TabularGame.matrix(payoff, horizon=5)
    r = resolve("fop", "ro-matrix", {"agent": "mlp", "batch_size": "16", "gamma": "0.5", "updates_per_iteration": "4",
                                     "target_update_episodes": "40"})
    result = train(r.algo, game, r.config, RunConfig(total_steps=2000, n_seeds=2, log_points=2, eval_episodes=2),
                   progress=False)
    np.testing.assert_allclose(result.final()["eval_return"], 15.0)


@pytest.mark.slow  # FOP trains in the default run on the matrix game above (tests/test_actor_critics.py: every env family)
def test_fop_trains_on_lbf():
    # the default recurrent actors, with one critic (the matrix-game run above trains the default two) to keep it quick
    r = resolve("fop", "lbf:5x5-2p-1f-coop", ["n_envs=2", "rollout_length=10", "batch_size=4", "buffer_size=8",
                                              "double_critic=False"])
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=200, n_seeds=1, log_points=2, eval_episodes=2),
                   progress=False)
    final = result.final()
    for name in ("loss", "critic_loss", "policy_loss", "entropy", "eval_return"):
        assert np.isfinite(final[name]).all(), name
    assert final["learning"].min() == 1.0
    assert final["entropy"].min() > 0.0  # a stochastic policy


@pytest.mark.parametrize("values, message", [
    ({"entropy_alpha_start": 0.0}, "entropy_alpha_start must be a finite number > 0"),
    ({"entropy_alpha_end": -0.1}, "entropy_alpha_end must be a finite number > 0"),
    ({"entropy_alpha_anneal_steps": -1}, "entropy_alpha_anneal_steps must be an integer >= 0"),
    ({"attention_heads": 0}, "attention_heads must be an integer >= 1"),
    ({"mixing_embed": 0}, "mixing_embed must be an integer >= 1"),
    ({"critic_hidden_sizes": (64, 64)}, "critic_hidden_sizes must hold exactly 1 width"),
    ({"agent_temperature": "per_agent"}, "agent_temperature must be one of shared, lambda"),
    ({"critic_gradient": "none"}, "critic_gradient must be one of factorised, additive"),
    ({"td_lambda": 1.5}, "td_lambda must be a finite number in"),
])
def test_bad_values_raise_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        fop.FOPConfig(**values)


def test_resolve_names_the_key_and_knows_the_authors_variant():
    with pytest.raises(ConfigError, match="entropy_alpha_start must be a finite number > 0"):
        resolve("fop", "climbing", ["entropy_alpha_start=-1"])
    config = resolve("fop", "climbing", ["variant=authors"]).config
    assert (config.critic_gradient, config.entropy_target, config.epsilon_start, config.epsilon_end) == \
        ("additive", "authors", 1.0, 0.05)
    paper = resolve("fop", "climbing", []).config
    assert (paper.critic_gradient, paper.entropy_target, paper.epsilon_start) == ("factorised", "soft_td", 0.0)
