"""The policy-gradient family (coopmarl.algos.ppo): DPO's loss and coefficient rule against hand
computations, the distributions against closed forms, GAE against a direct sum, per-agent parameters,
and short seeded runs through the runner (IPPO reaches a matrix game's optimum; DPO on continuous actions)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from coopmarl.algos import ppo
from coopmarl.algos.base import Transition
from coopmarl.envs.core import EnvSpec
from coopmarl.envs.registry import make
from coopmarl.nets.distributions import MASKED_LOGIT, Categorical, DiagGaussian, safe_sqrt
from coopmarl.runner import RunConfig, train

SMALL = dict(hidden_sizes=(16,), n_epochs=2, rollout_length=4, n_envs=2)  # cheap to compile


def _spec(n_agents=2, obs_dim=3, n_actions=3, continuous=False):
    if continuous:
        return EnvSpec(name="t", n_agents=n_agents, obs_dim=obs_dim, state_dim=4, action_kind="continuous",
                       action_dim=n_actions, low=-1.0, high=1.0, horizon=5)
    return EnvSpec(name="t", n_agents=n_agents, obs_dim=obs_dim, state_dim=4, action_kind="discrete",
                   n_actions=n_actions, horizon=5)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ---- DPO's loss (eq. 20) and coefficient rule (eq. 21) ----------------------------------------------------


def test_dpo_loss_equals_hand_computation():
    """Per agent i: −mean(ρÂ) + β√_i mean(√KL) + β_KL_i mean(KL) − 0.01 mean(H); √ per sample; masks."""
    spec, config = _spec(), ppo.DPOConfig(hidden_sizes=(8,))
    state = ppo.init(jax.random.PRNGKey(0), spec, config)
    rng = np.random.default_rng(0)
    B, N, A = 5, 2, 3
    obs = rng.normal(size=(B, N, 3)).astype(np.float32)
    avail = np.ones((B, N, A), bool)
    avail[0, 0, 2] = avail[3, 1, 0] = False
    old_logits = rng.normal(size=(B, N, A)).astype(np.float32)
    actions = np.array([[0, 1], [2, 2], [1, 0], [2, 1], [0, 2]])
    adv = rng.normal(size=(B, N)).astype(np.float32)
    returns = rng.normal(size=(B, N)).astype(np.float32)
    old_pi = Categorical.masked(jnp.asarray(old_logits), jnp.asarray(avail))
    mb = ppo.Samples(obs=jnp.asarray(obs), critic_in=(jnp.asarray(obs), jnp.zeros((B, 4))), avail=jnp.asarray(avail),
                     actions=jnp.asarray(actions), old_pi=old_pi, old_logp=old_pi.log_prob(jnp.asarray(actions)),
                     old_values=jnp.zeros((B, N)), advantages=jnp.asarray(adv), returns=jnp.asarray(returns))
    beta_kl, beta_sqrt = jnp.array([0.5, 2.0]), jnp.array([1.5, 0.3])
    actor_loss, value_loss, _ = ppo.agent_losses(spec, config, state.actor_params, state.critic_params,
                                                 beta_kl, beta_sqrt, mb)

    new_logits = np.asarray(ppo._nets(spec, config)[0].apply(state.actor_params, jnp.asarray(obs)), np.float64)
    values = np.asarray(ppo._nets(spec, config)[1].apply(state.critic_params, jnp.asarray(obs)), np.float64)
    expected_actor, expected_sqrt_of_mean = [], []
    for i in range(N):
        pg, kls, ents = [], [], []
        for b in range(B):
            ok = avail[b, i]
            lp_old = _log_softmax(old_logits[b, i][ok].astype(np.float64))
            lp_new = _log_softmax(new_logits[b, i][ok])
            a = int(np.flatnonzero(ok).tolist().index(actions[b, i]))
            pg.append(math.exp(lp_new[a] - lp_old[a]) * adv[b, i])
            kls.append(float(np.sum(np.exp(lp_old) * (lp_old - lp_new))))
            ents.append(float(-np.sum(np.exp(lp_new) * lp_new)))
        kls = np.array(kls)
        base = -np.mean(pg) + float(beta_kl[i]) * kls.mean() - 0.01 * np.mean(ents)
        expected_actor.append(base + float(beta_sqrt[i]) * np.mean(np.sqrt(kls)))
        expected_sqrt_of_mean.append(base + float(beta_sqrt[i]) * np.sqrt(kls.mean()))
    np.testing.assert_allclose(actor_loss, expected_actor, rtol=1e-5, atol=1e-6)
    # the √ is taken per sample: √(mean KL) would be a different (and here clearly distinguishable) loss
    assert np.min(np.abs(np.array(expected_actor) - np.array(expected_sqrt_of_mean))) > 1e-3
    np.testing.assert_allclose(value_loss, np.mean((values - returns) ** 2, axis=0), rtol=1e-5)


def test_adapt_coef_rule():
    config = ppo.DPOConfig()  # δ = 1.5, ω = 2, bounds [1e-3, 1e3]
    target = 0.01
    beta = jnp.array([0.1, 0.1, 0.1, 0.1, 0.1, 800.0, 0.0015, 0.0])
    kl = jnp.array([0.016, 0.006, 0.01, 0.0149, 0.0067, 1.0, 0.0, 1.0])
    got = ppo.adapt_coef(beta, kl, target, config)
    #     above d·δ  below d/δ  at d  just inside  just inside  clipped up  clipped down  switched off
    np.testing.assert_allclose(got, [0.2, 0.05, 0.1, 0.1, 0.1, 1e3, 1e-3, 0.0], rtol=1e-6)


def _random_batch(spec, key, T=4, E=2, continuous=False):
    ks = jax.random.split(key, 6)
    N = spec.n_agents
    obs = jax.random.normal(ks[0], (T, E, N, spec.obs_dim))
    gs = jax.random.normal(ks[1], (T, E, spec.state_dim))
    if continuous:
        actions = jax.random.normal(ks[2], (T, E, N, spec.action_dim))
        avail = jnp.ones((T, E, N, 1), bool)
    else:
        actions = jax.random.randint(ks[2], (T, E, N), 0, spec.n_actions)
        avail = jnp.ones((T, E, N, spec.n_actions), bool)
    done = jax.random.bernoulli(ks[3], 0.3, (T, E))
    return Transition(obs=obs, global_state=gs, avail_actions=avail, actions=actions,
                      reward=jax.random.normal(ks[4], (T, E, N)), terminated=done, truncated=jnp.zeros((T, E), bool),
                      next_obs=jax.random.normal(ks[5], obs.shape), next_global_state=gs, next_avail_actions=avail)


@pytest.mark.parametrize("lr,direction", [(1e-7, "down"), (0.3, "up")])
def test_update_adapts_betas_on_the_batch_kl(lr, direction):
    """Through `update`: a tiny step (KL ≈ 0) halves both β; a huge step doubles them (per agent)."""
    spec = _spec()
    config = ppo.DPOConfig(actor_lr=lr, **SMALL)
    state = ppo.init(jax.random.PRNGKey(1), spec, config)
    batch = _random_batch(spec, jax.random.PRNGKey(2))
    new, metrics = jax.jit(lambda s, b, k: ppo.update(s, b, k, config=config))(state, batch, jax.random.PRNGKey(3))
    factor = 0.5 if direction == "down" else 2.0
    np.testing.assert_allclose(new.beta_kl, 0.01 * factor, rtol=1e-6)
    np.testing.assert_allclose(new.beta_sqrt, 0.01 * factor, rtol=1e-6)
    assert (metrics["kl"] > 0.015) == (direction == "up")


def test_dpo_without_sqrt_is_ippo_kl():
    """DPO §4.5: DPO w/o sqrt "is the same as IPPO-KL" — identical updates from the same state and data."""
    spec = _spec()
    configs = [ppo.DPONoSqrtConfig(**SMALL), ppo.IPPOKLConfig(**SMALL)]
    state = ppo.init(jax.random.PRNGKey(4), spec, configs[0])
    batch = _random_batch(spec, jax.random.PRNGKey(5))
    (a, ma), (b, mb) = [jax.jit(lambda s, d, k, c=c: ppo.update(s, d, k, config=c))(state, batch, jax.random.PRNGKey(6))
                        for c in configs]
    for x, y in zip(jax.tree.leaves(a.actor_params), jax.tree.leaves(b.actor_params)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.beta_kl, b.beta_kl)
    assert float(ma["beta_sqrt"]) == 0.0


def test_safe_sqrt_has_finite_gradient_at_zero():
    assert float(jax.grad(safe_sqrt)(0.0)) == 0.0
    np.testing.assert_allclose(jax.grad(safe_sqrt)(0.25), 1.0, rtol=1e-6)
    # the first gradient step of every DPO update has π = π_old, so KL = 0 exactly
    logits = jnp.array([0.3, -0.2, 1.0])
    g = jax.grad(lambda z: safe_sqrt(Categorical(logits).kl(Categorical(z))))(logits)
    assert np.all(np.isfinite(g))


# ---- distributions ------------------------------------------------------------------------------------


def test_gaussian_log_prob_entropy_kl_match_closed_forms():
    mu_p, ls_p = np.array([0.3, -1.2]), np.array([-0.4, 0.5])
    mu_q, ls_q = np.array([-0.1, 0.7]), np.array([0.2, -0.3])
    p = DiagGaussian(jnp.asarray(mu_p, jnp.float32), jnp.asarray(ls_p, jnp.float32))
    q = DiagGaussian(jnp.asarray(mu_q, jnp.float32), jnp.asarray(ls_q, jnp.float32))
    x = np.array([0.8, -2.5])
    np.testing.assert_allclose(p.log_prob(jnp.asarray(x)), stats.norm.logpdf(x, mu_p, np.exp(ls_p)).sum(), rtol=1e-5)
    np.testing.assert_allclose(p.entropy(), stats.norm.entropy(mu_p, np.exp(ls_p)).sum(), rtol=1e-5)
    kl = 0.0
    for d in range(2):  # KL(p‖q) by numerical integration, dimension by dimension
        pd, qd = stats.norm(mu_p[d], np.exp(ls_p[d])), stats.norm(mu_q[d], np.exp(ls_q[d]))
        kl += integrate.quad(lambda z: pd.pdf(z) * (pd.logpdf(z) - qd.logpdf(z)), -30, 30)[0]
    np.testing.assert_allclose(p.kl(q), kl, rtol=1e-4)
    np.testing.assert_allclose(p.kl(p), 0.0, atol=1e-6)


def test_categorical_kl_entropy_and_sampling_respect_the_mask():
    logits = jnp.array([[2.0, 0.5, 9.0, -1.0], [0.0, 1.0, 0.0, 3.0]])
    other = jnp.array([[0.1, 1.5, -3.0, 0.4], [1.0, -1.0, 2.0, 0.0]])
    avail = jnp.array([[True, True, False, True], [True, False, True, True]])
    p, q = Categorical.masked(logits, avail), Categorical.masked(other, avail)
    for row in range(2):
        ok = np.asarray(avail[row])
        lp = _log_softmax(np.asarray(logits[row], np.float64)[ok])
        lq = _log_softmax(np.asarray(other[row], np.float64)[ok])
        np.testing.assert_allclose(p.kl(q)[row], np.sum(np.exp(lp) * (lp - lq)), rtol=1e-5)
        np.testing.assert_allclose(p.entropy()[row], -np.sum(np.exp(lp) * lp), rtol=1e-5)
    assert float(p.probs()[0, 2]) == 0.0 and float(p.log_probs()[0, 2]) <= MASKED_LOGIT / 2
    samples = jax.vmap(p.sample)(jax.random.split(jax.random.PRNGKey(0), 2000))  # [2000, 2]
    assert not np.any(np.asarray(samples)[:, 0] == 2) and not np.any(np.asarray(samples)[:, 1] == 1)
    np.testing.assert_array_equal(p.mode(), [0, 3])  # the masked logit 9.0 is never the greedy choice


def test_act_never_chooses_masked_actions():
    spec, config = _spec(n_agents=3, n_actions=4), ppo.IPPOConfig(hidden_sizes=(8,))
    state = ppo.init(jax.random.PRNGKey(0), spec, config)
    obs = jnp.ones((3, 3))
    avail = jnp.array([[False, True, False, False], [True, False, True, False], [False, False, False, True]])
    acts = jax.jit(jax.vmap(lambda k: ppo.act(state, obs, avail, k, explore=True, config=config)))(
        jax.random.split(jax.random.PRNGKey(1), 500))
    assert np.all(np.take_along_axis(np.asarray(avail)[None].repeat(500, 0), np.asarray(acts)[..., None], -1))
    greedy = ppo.act(state, obs, avail, jax.random.PRNGKey(2), explore=False, config=config)
    assert np.all(np.asarray(avail)[np.arange(3), np.asarray(greedy)])


def test_act_continuous_greedy_is_the_clipped_mean():
    spec, config = _spec(continuous=True, n_actions=2), ppo.DPOConfig(hidden_sizes=(8,))
    state = ppo.init(jax.random.PRNGKey(0), spec, config)
    state = state.replace(actor_params=jax.tree.map(lambda p: p + 3.0, state.actor_params))  # mean far above 1
    obs = jnp.ones((2, 3))
    greedy = ppo.act(state, obs, jnp.ones((2, 1), bool), jax.random.PRNGKey(0), explore=False, config=config)
    np.testing.assert_array_equal(greedy, np.ones((2, 2)))  # high = 1
    sample = ppo.act(state, obs, jnp.ones((2, 1), bool), jax.random.PRNGKey(0), explore=True, config=config)
    assert np.all(np.asarray(sample) > 1.0)  # the stored sample is unclipped (its log-prob is exact)


# ---- GAE ------------------------------------------------------------------------------------------------


def test_gae_matches_direct_sum_with_termination_and_truncation():
    """Â_t = Σ_l (γλ)^l δ_{t+l} up to the episode's end or the window's end, δ bootstrapping from V(o'_t)
    unless o'_t is terminal; one env has a terminated and a truncated step inside the window."""
    gamma, lam = 0.9, 0.8
    T, E, N = 7, 2, 2
    rng = np.random.default_rng(1)
    reward, values, next_values = (rng.normal(size=(T, E, N)).astype(np.float32) for _ in range(3))
    terminated = np.zeros((T, E), bool)
    truncated = np.zeros((T, E), bool)
    terminated[2, 0] = True
    truncated[4, 0] = True
    truncated[6, 1] = True
    adv, ret = ppo.gae(jnp.asarray(reward), jnp.asarray(values), jnp.asarray(next_values), jnp.asarray(terminated),
                       jnp.asarray(truncated), gamma, lam)
    delta = reward + gamma * (~terminated)[..., None] * next_values - values
    expected = np.zeros((T, E, N))
    for t in range(T):
        for e in range(E):
            for l in range(T - t):
                expected[t, e] += (gamma * lam) ** l * delta[t + l, e]
                if terminated[t + l, e] or truncated[t + l, e]:
                    break
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-6)
    # spot checks: a terminal step's advantage is r − V; a truncated one's is r + γV(o') − V
    np.testing.assert_allclose(adv[2, 0], reward[2, 0] - values[2, 0], rtol=1e-5)
    np.testing.assert_allclose(adv[4, 0], reward[4, 0] + gamma * next_values[4, 0] - values[4, 0], rtol=1e-5)


# ---- networks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("continuous", [False, True])
def test_per_agent_parameters_share_no_weights(continuous):
    spec = _spec(n_agents=3, continuous=continuous)
    config = ppo.DPOConfig(hidden_sizes=(8, 8))
    state = ppo.init(jax.random.PRNGKey(0), spec, config)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3, 3))
    actor, critic = ppo._nets(spec, config)
    bump0 = lambda params: jax.tree.map(lambda p: p.at[0].add(0.5), params)  # noqa: E731
    for net, params in ((actor, state.actor_params), (critic, state.critic_params)):
        before = jax.tree.leaves(net.apply(params, obs))
        after = jax.tree.leaves(net.apply(bump0(params), obs))
        for x, y in zip(before, after):
            np.testing.assert_array_equal(x[:, 1:], y[:, 1:])  # agents 1, 2 untouched
        assert any(not np.allclose(x[:, 0], y[:, 0]) for x, y in zip(before, after))
    # agent 1's output depends on agent 1's observation only
    moved = obs.at[:, 0].add(1.0)
    np.testing.assert_array_equal(jax.tree.leaves(actor.apply(state.actor_params, moved))[0][:, 1:],
                                  jax.tree.leaves(actor.apply(state.actor_params, obs))[0][:, 1:])


def test_shared_parameters_use_the_agent_id():
    spec, config = _spec(), ppo.MAPPOConfig(hidden_sizes=(8,))
    state = ppo.init(jax.random.PRNGKey(0), spec, config)
    assert jax.tree.leaves(state.actor_params)[0].ndim == 1  # one copy (a bias [8]), not stacked per agent
    logits = ppo._nets(spec, config)[0].apply(state.actor_params, jnp.ones((2, 3)))  # same obs for both agents
    assert not np.allclose(logits[0], logits[1])


# ---- registry and configs -------------------------------------------------------------------------------


def test_presets_are_registered_with_their_defaults():
    names = {"ia2c", "maa2c", "ippo", "ippo-kl", "mappo", "dpo", "dpo-no-sqrt", "dpo-no-kl", "vdac-sum", "vdac-mix"}
    assert set(ppo.ALGOS) == names
    for algo in ppo.ALGOS.values():
        assert set(algo.requires) == {"discrete", "continuous"} and algo.update is ppo.update
    d = ppo.ALGOS["dpo"].default_config()
    assert (d.loss, d.critic, d.share_parameters, d.hidden_sizes, d.n_epochs) == ("dpo", "local", False, (128,) * 3, 15)
    assert (d.actor_lr, d.gamma, d.gae_lambda, d.entropy_coef, d.max_grad_norm) == (5e-4, 0.99, 0.95, 0.01, 10.0)
    m = ppo.ALGOS["mappo"].default_config()
    assert (m.loss, m.critic, m.share_parameters) == ("clip", "central", True)
    assert ppo.ALGOS["dpo-no-kl"].default_config().kl_coef_init == 0.0
    assert ppo.ALGOS["ia2c"].default_config().critic == "local"
    v = ppo.ALGOS["vdac-mix"].default_config()  # VDAC: A2C on a decomposed team value, the critic fixed by the name
    assert (v.loss, v.critic, v.n_epochs, v.gae_lambda, v.normalize_advantages) == ("a2c", "mix", 1, 0.8, False)
    assert ppo.ALGOS["vdac-sum"].default_config().critic == "sum"
    with pytest.raises(TypeError, match="critic"):
        ppo.VDACSumConfig(critic="local")


def test_config_validation_names_the_choices():
    with pytest.raises(ValueError, match="critic must be one of local, central"):
        ppo.DPOConfig(critic="both")
    with pytest.raises(TypeError, match="loss"):  # the loss is the algorithm's (a ClassVar), not a key
        ppo.IPPOConfig(loss="dpo")
    with pytest.raises(ValueError, match="must divide"):
        ppo.DPOConfig(rollout_length=5, n_envs=3, n_minibatches=2)
    with pytest.raises(ValueError, match="kl_target must be a finite number"):
        ppo.DPOConfig(kl_target=float("nan"))


# ---- runs through the runner ------------------------------------------------------------------------------


def test_ippo_reaches_the_optimum_of_a_matrix_game():
    game = make("dpo-2x2-4")  # [[20, 0], [0, 10]]: a uniform start prefers the optimum (0, 0)
    config = ppo.IPPOConfig()
    result = train(ppo.ALGOS["ippo"], game, config, RunConfig(total_steps=4000, n_seeds=3, log_points=1),
                   progress=False)
    final = result.final()
    np.testing.assert_array_equal(final["greedy_return"], final["optimal_return"])
    assert np.all(final["eval_return"] > 0.95 * final["optimal_return"])


def test_dpo_trains_on_continuous_actions_without_nans():
    env = make("differential")
    config = ppo.DPOConfig(hidden_sizes=(32, 32), n_epochs=5)
    result = train(ppo.ALGOS["dpo"], env, config, RunConfig(total_steps=3200, n_seeds=2, log_points=2),
                   progress=False)
    for name, values in result.metrics.items():
        assert np.all(np.isfinite(values)), name
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(result.train_state.actor_params))
    assert np.all((result.train_state.beta_kl >= 1e-3) & (result.train_state.beta_kl <= 1e3))
    assert np.all(result.metrics["kl"] > 0)


PG_ALGOS = ["ia2c", "maa2c", "ippo", "ippo-kl", "mappo", "dpo", "dpo-no-sqrt", "dpo-no-kl"]
# one env of every family the policy-gradient learners apply to: discrete (masked) and continuous
PG_ENVS = ["lbf:5x5-2p-1f-coop", "predator-prey:p-2", "mpe:spread", "mpe:line?continuous_actions=true", "smax:3m",
           "differential", "tensor", "random-stochastic-game?n_states=4&n_agents=2&n_actions=2",
           "mabrax:hopper_3x1?episode_length=20"]


@pytest.mark.slow
@pytest.mark.parametrize("env", PG_ENVS)
@pytest.mark.parametrize("algo", PG_ALGOS)
def test_policy_gradient_algorithms_train_from_the_cli_on_every_env_family(algo, env, tmp_path):
    """Issue acceptance: every algorithm trains from the CLI on every env it applies to."""
    import json

    from coopmarl.cli import main

    name, _, query = env.partition("?")
    env_args = [f"env.{kv}" for kv in query.split("&") if kv]
    out = tmp_path / "run"
    assert main(["train", algo, name, "hidden_sizes=16", "n_epochs=2", "rollout_length=4", "n_envs=2",
                 *env_args, "total_steps=64", "log_points=1", "--seeds", "1", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("policy_loss", "value_loss", "eval_return"):
        assert np.isfinite(summary["metrics"][key]["per_seed"]).all(), key
