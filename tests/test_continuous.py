"""Continuous-action off-policy learners (ROMMEO-AC, MADDPG, IDDPG, DDPG-OM, PR2-AC, MASQL): the tanh-Gaussian maths, the
prior's maximum-likelihood fit, the differential game's headline outcomes, the CLI path on the differential
game and continuous MPE, determinism, the rommeo-differential preset and its option errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from coopmarl import cli
from coopmarl.algos import rommeo_ac
from coopmarl.algos.base import list_algos
from coopmarl.config import ConfigError, resolve
from coopmarl.experiments import run_experiment
from coopmarl.experiments.continuous import greedy_joint_actions
from coopmarl.nets.distributions import TanhGaussian
from coopmarl.runner import RunConfig, build_chunk, plan_chunks, train

NEW_ALGOS = ("rommeo-ac", "maddpg", "iddpg", "ddpg-om", "pr2-ac", "masql")


# ---- the tanh-Gaussian ---------------------------------------------------------------------------------------


def test_tanh_gaussian_density_integrates_and_matches_the_gaussian_cdf():
    """Change of variables checked numerically: ∫ p = 1 on the box, and P(a ≤ x) = Φ((atanh(y) − m)/σ)."""
    mean, log_std, low, high = 0.7, -0.3, -10.0, 10.0
    dist = TanhGaussian(jnp.array([mean]), jnp.array([log_std]), low, high)
    grid = np.linspace(low + 1e-5, high - 1e-5, 400_001)
    density = np.exp(np.asarray(dist.log_prob(jnp.asarray(grid[:, None], jnp.float32)), np.float64))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    for x in (-6.0, 0.0, 3.0, 8.0):
        upto = grid <= x
        numeric = np.trapezoid(density[upto], grid[upto])
        z = (math.atanh(x / 10.0) - mean) / math.exp(log_std)
        assert numeric == pytest.approx(0.5 * (1.0 + math.erf(z / math.sqrt(2.0))), abs=2e-3)


def test_tanh_gaussian_sample_log_prob_matches_log_prob_and_sums_dimensions():
    mean, log_std = jnp.array([[0.3, -1.2], [2.0, 0.0]]), jnp.array([[-0.5, 0.2], [0.1, -1.0]])
    dist = TanhGaussian(mean, log_std, 0.0, 1.0)
    actions, log_p = dist.sample_and_log_prob(jax.random.PRNGKey(3))
    assert actions.shape == (2, 2) and log_p.shape == (2,)
    assert np.all((np.asarray(actions) > 0.0) & (np.asarray(actions) < 1.0))
    np.testing.assert_allclose(log_p, dist.log_prob(actions), rtol=1e-4, atol=1e-4)
    per_dim = [TanhGaussian(mean[:, d:d + 1], log_std[:, d:d + 1], 0.0, 1.0).log_prob(actions[:, d:d + 1])
               for d in range(2)]
    np.testing.assert_allclose(dist.log_prob(actions), per_dim[0] + per_dim[1], rtol=1e-5)
    np.testing.assert_allclose(dist.mode(), 0.5 + 0.5 * np.tanh(np.asarray(mean)), rtol=1e-6)
    # the reparameterised sample is differentiable in the parameters
    grad = jax.grad(lambda m: jnp.sum(TanhGaussian(m, log_std, 0.0, 1.0).sample_and_log_prob(
        jax.random.PRNGKey(3))[0]))(mean)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad) > 0)


# ---- ROMMEO-AC's prior: maximum likelihood -----------------------------------------------------------------


def test_prior_maximum_likelihood_recovers_mean_and_std():
    """P_ψ fitted by maximum likelihood (Adam, the authors' lr 1e-2) on tanh-Gaussian samples of the opponent's
    action recovers the generating pre-tanh mean and std, for each of the two agents' priors."""
    r = resolve("rommeo-ac", "differential", {})
    spec, config = r.env.spec, r.config
    params = rommeo_ac.init(jax.random.PRNGKey(0), spec, config).params["prior"]
    true_mean, true_std = jnp.array([0.8, -0.4]), jnp.array([0.5, 0.3])  # agent 0 models agent 1 and vice versa
    u = true_mean + true_std * jax.random.normal(jax.random.PRNGKey(1), (2048, 2))
    opp_actions = (10.0 * jnp.tanh(u))[..., None]  # [B, N, (N−1)·D]: agent i's row = the other's action
    obs = jnp.zeros((2048, 2, 1))
    opt = optax.adam(1e-2)

    @jax.jit
    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(lambda p: rommeo_ac.prior_loss(spec, config, p, obs, opp_actions))(p)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=400)
    prior = rommeo_ac.prior_dist(spec, config, params, obs[:1])
    np.testing.assert_allclose(prior.mean[0, :, 0], u.mean(0), atol=0.03)
    np.testing.assert_allclose(np.exp(prior.log_std[0, :, 0]), u.std(0), rtol=0.08)


def test_entropy_weight_schedule():
    config = resolve("rommeo-ac", "differential", {}).config
    w = rommeo_ac.entropy_weight(config, jnp.array([0, 10, 20, 1000]))
    np.testing.assert_allclose(w, [500.1, 500.1, 0.1 + 500 * math.exp(-1.0), 0.1], rtol=1e-5)


# ---- the differential game's outcomes (ROMMEO Fig. 2) ------------------------------------------------------


def _lanes(algo, overrides, seeds, steps, env="differential"):
    """Train through the runner's compiled program (`build_chunk`, vmapped), one lane per PRNG seed in
    `seeds` — repeats allowed — for `steps` env steps: (resolved, initial and final train states, metrics)."""
    r = resolve(algo, env, {k: str(v) for k, v in overrides.items()})
    _, iters = plan_chunks(steps, 1, r.config.rollout_length * r.config.n_envs)
    init_fn, chunk_fn = build_chunk(r.algo, r.env, r.config, iters)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    start = jax.jit(jax.vmap(init_fn, in_axes=(None, 0)))(None, keys)
    carry, metrics, _ = jax.jit(jax.vmap(chunk_fn, in_axes=(None, 0)))(None, start)
    return r, start[0], carry[0], jax.device_get(metrics)


def test_rommeo_ac_reaches_the_global_optimum_in_most_seeds_and_same_seed_gives_same_numbers():
    # seeds 0..5, and seed 0 again in a seventh lane
    r, _, states, metrics = _lanes("rommeo-ac", {"batch_size": 128, "buffer_size": 800}, [0, 1, 2, 3, 4, 5, 0], 800)
    actions = greedy_joint_actions(r, states)
    at_global = np.all(np.abs(actions[:6] - 5.0) <= 1.0, axis=-1)
    assert at_global.sum() >= 4, actions
    assert np.all(np.isfinite(metrics["q_loss"]))
    # determinism: the repeated seed reproduces every number, while different seeds differ
    for k, v in metrics.items():
        np.testing.assert_array_equal(v[6], v[0], err_msg=k)
    for leaf_a, leaf_b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[0], states.params)),
                              jax.tree.leaves(jax.tree.map(lambda x: x[6], states.params))):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    assert metrics["q_loss"][0] != metrics["q_loss"][1]


def test_maddpg_from_the_origin_settles_in_the_local_optimum_in_most_seeds():
    r, start, states, _ = _lanes("maddpg", {"batch_size": 128, "buffer_size": 800}, range(8), 800)
    assert np.all(np.abs(greedy_joint_actions(r, start)) < 0.5)  # every seed starts at (0, 0)
    actions = greedy_joint_actions(r, states)
    at_local = np.all(np.abs(actions + 5.0) <= 1.0, axis=-1)
    assert at_local.sum() >= 5, actions


# ---- every algorithm through the CLI, on the differential game and continuous MPE --------------------------

SMALL = ["batch_size=16", "buffer_size=64", "learning_starts=16", "total_steps=48", "log_points=2", "eval_episodes=2"]
MPE = ["mpe:spread", "env.continuous_actions=true", "env.n_agents=2"]


def test_cli_trains_rommeo_ac_on_continuous_mpe(tmp_path):
    out = tmp_path / "rommeo-ac"
    assert cli.main(["train", "rommeo-ac", *MPE, *SMALL, "--out", str(out), "--quiet"]) == 0
    assert (out / "metrics.csv").exists() and (out / "summary.json").exists()


@pytest.mark.parametrize("algo", [a for a in NEW_ALGOS if a != "rommeo-ac"])
def test_runner_trains_on_continuous_mpe(algo):
    r = resolve(algo, MPE[0], dict(a.split("=", 1) for a in MPE[1:] + SMALL[:3]))
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=48, log_points=2, eval_episodes=2), progress=False)
    assert result.metrics["learning"][-1][0] == 1.0
    assert all(np.isfinite(v[-1]).all() for k, v in result.metrics.items() if k != "train_return")


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ddpg-om", "pr2-ac"])
def test_runner_trains_on_the_differential_game(algo):
    """(IDDPG and MASQL run on the differential game in the preset test, ROMMEO-AC and MADDPG above.)"""
    r = resolve(algo, "differential", dict(a.split("=", 1) for a in SMALL[:3]))
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=48, log_points=2, eval_episodes=2), progress=False)
    assert all(np.isfinite(v[-1]).all() for v in result.metrics.values())


def test_new_algorithms_are_listed_and_reject_discrete_envs():
    names = {a.name for a in list_algos()}
    assert set(NEW_ALGOS) <= names
    for algo in NEW_ALGOS:
        with pytest.raises(ConfigError, match="continuous actions"):
            resolve(algo, "mpe:spread", {})  # discrete by default
    with pytest.raises(ConfigError, match="noise_levels"):
        resolve("maddpg", "differential", {"noise_levels": "[0.5, 0.1]"})


# ---- the preset ----------------------------------------------------------------------------------------------


def test_rommeo_differential_preset_writes_table_and_plots(tmp_path):
    # also the CLI-equivalent path (resolve + the runner) for IDDPG and MASQL on the differential game
    report, out = run_experiment("rommeo-differential", tmp_path / "p",
                                 {"seeds": "2", "steps": "40", "log_points": "2", "batch_size": "8",
                                  "algos": "iddpg,masql"})
    table = (out / "table.md").read_text()
    for label in ("IDDPG", "MASQL", "seeds at (5, 5)"):
        assert label in table
    for plot in ("learning_curves.png", "action_paths.png"):
        assert (out / plot).stat().st_size > 1000
    assert (out / "iddpg" / "metrics.csv").exists() and (out / "masql" / "summary.json").exists()


@pytest.mark.parametrize("options, message", [
    ({"variant": "bogus"}, "paper, authors"),
    ({"algos": "rommeo-ac,dqn"}, "Valid: rommeo-ac"),
    ({"seeds": "0"}, "seeds must be >= 1"),
])
def test_rommeo_differential_bad_options(options, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run_experiment("rommeo-differential", tmp_path / "bad", options)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rommeo-ac", "maddpg", "iddpg", "ddpg-om", "pr2-ac", "masql"])
def test_cli_trains_on_mabrax(algo, tmp_path):
    """Every continuous algorithm trains from the CLI on the third continuous env family (MABrax)."""
    pytest.importorskip("brax", reason="the jaxmarl extra (brax) is part of the test extra")
    out = tmp_path / algo
    assert cli.main(["train", algo, "mabrax:hopper_3x1", "env.episode_length=20", *SMALL, "--out", str(out),
                     "--quiet"]) == 0
    assert (out / "summary.json").exists()
