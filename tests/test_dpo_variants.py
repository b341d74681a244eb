"""DPO's two variants (issue 14): `variant=paper` (the paper's text, the defaults) and `variant=authors` (what
the authors' code does, `coopmarl.algos.ppo.AUTHORS`), each behaviour a switch of its own: the cross-agent
sample shuffle, the never-reset stochastic game, the KL measured on the last minibatch, LayerNorm networks,
advantages normalised over all agents; and the authors' game file format."""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.algos import ppo
from coopmarl.config import ConfigError, resolve
from coopmarl.envs.core import AutoReset
from coopmarl.errors import GameValidationError
from coopmarl.experiments import run_experiment
from coopmarl.experiments.registry import get_experiment


def _train(algo, env, overrides, seeds=2):
    r = resolve(algo, env, overrides, n_seeds=seeds)
    return coopmarl.train(r.algo, r.env, r.config, r.run)


def _last(result, key):
    return np.asarray(result.metrics[key])[..., -1]


# ---- variant=paper is what it was --------------------------------------------------------------------------

SMALL_GAME = {"env.n_states": 6, "env.n_agents": 2, "env.n_actions": 3, "rollout_length": 6, "n_envs": 4,
              "total_steps": 480, "kl_target": 0.1, "log_points": 2}


def test_paper_variant_is_unchanged_by_the_authors_switches():
    """DPO's metrics on a small game for a fixed seed, as the code before the switches existed gave them (commit
    809ebef, measured on the development machine): the new keys' defaults change nothing. The tolerance covers
    float differences between CPUs, not a changed update."""
    result = _train("dpo", "random-stochastic-game", SMALL_GAME)
    before = {"kl": [0.04476495832204819, 0.06997804343700409],
              "value_loss": [31.589078903198242, 45.10405349731445],
              "train_return": [3.1242902278900146, 14.730056762695312],
              "beta_kl": [0.0016750000650063157, 0.0014000001829117537],
              "beta_sqrt": [0.0015750000020489097, 0.0010000000474974513]}
    for key, values in before.items():
        np.testing.assert_allclose(_last(result, key), values, rtol=1e-3, err_msg=key)


# ---- the variant setting -----------------------------------------------------------------------------------


def test_authors_variant_sets_the_authors_keys_and_given_keys_win():
    config = resolve("dpo", "climbing", ["variant=authors"]).config
    for key, value in ppo.AUTHORS.items():
        assert getattr(config, key) == value, key
    assert resolve("dpo", "climbing", ["variant=authors", "n_envs=4", "layer_norm=false"]).config.n_envs == 4
    assert resolve("dpo", "climbing", ["variant=authors", "layer_norm=false"]).config.layer_norm is False
    # a class takes the keys it has: IPPO has no β, DPO w/o kl keeps its β_KL fixed at 0
    ippo = resolve("ippo", "climbing", {"variant": "authors"}).config
    assert ippo.agent_shuffle and ippo.clip_value and not hasattr(ippo, "kl_coef_init")
    no_kl = resolve("dpo-no-kl", "climbing", {"variant": "authors"}).config
    assert no_kl.kl_coef_init == 0.0 and no_kl.sqrt_kl_coef_init == 1.0
    assert resolve("dpo", "climbing", ["variant=paper"]).config == resolve("dpo", "climbing", []).config


@pytest.mark.parametrize("algo, overrides, match", [
    ("dpo", ["variant=author"], r"unknown variant 'author' for algorithm 'dpo'\. Did you mean 'authors'\? "
                                r"Variants: paper, authors"),
    ("qmix", ["variant=authors"], r"algorithm 'qmix' has no variants \(variant=NAME is a setting of dpo, dpo-no-kl"),
    ("mappo", ["variant=authors"], "algorithm 'mappo' has no variants"),
    ("ippo", ["agent_shuffle=true", "critic=central"], "agent_shuffle=True needs critic='local'"),
    ("dpo", ["advantage_norm=agents"], "advantage_norm"),
    ("dpo", ["kl_measure=last"], "kl_measure"),
])
def test_bad_variant_settings_are_one_clear_error(algo, overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve(algo, "climbing", overrides)


# ---- the switches ------------------------------------------------------------------------------------------


def test_agent_shuffle_gives_each_actor_a_share_of_every_agents_samples():
    """The authors' minibatches: one permutation of all (sample, agent) pairs, column i to actor i. Every pair is
    used once per epoch, and each actor's column holds ~1/N of each agent's samples."""
    n_batch, n_agents = 3000, 3
    index = np.asarray(ppo.agent_shuffle_index(jax.random.PRNGKey(0), n_batch, n_agents, 2))
    assert index.shape == (2, n_batch // 2, n_agents)
    assert np.array_equal(np.sort(index.ravel()), np.arange(n_batch * n_agents))  # a permutation
    source_agent = index % n_agents  # pairs are flattened sample-major: pair = sample * N + agent
    for actor in range(n_agents):
        shares = np.bincount(source_agent[..., actor].ravel(), minlength=n_agents) / n_batch
        np.testing.assert_allclose(shares, 1.0 / n_agents, atol=0.03)


def test_never_reset_game_ends_every_step_after_the_horizon_and_gae_is_myopic():
    """The authors' matrix-game runner: reset once; from the horizon on every step is `done` (not bootstrapped)
    and the chain runs on from where it is. GAE then equals r − V(s) at every step after the first episode."""
    horizon = 4
    env = coopmarl.make("random-stochastic-game", n_states=horizon, n_agents=2, n_actions=2, reset="never")
    same = coopmarl.make("random-stochastic-game", n_states=horizon, n_agents=2, n_actions=2)
    wrapped = AutoReset(env)
    state, ts = wrapped.reset(jax.random.PRNGKey(0))
    s_plain = int(ts.info["state_index"])
    steps = 3 * horizon
    rewards, terminated, truncated, states = [], [], [], []
    actions = jnp.array([1, 0], jnp.int32)
    for t in range(steps):
        key = jax.random.PRNGKey(100 + t)
        state, ts = wrapped.step(key, state, actions)
        # the chain: the plain game's transition from the previous state with the same key (no reset to state 0)
        (s_next, _), plain = same.step(jax.random.split(key)[0], (jnp.int32(s_plain), jnp.int32(0)), actions)
        assert int(ts.info["state_index"]) == int(s_next) and float(ts.reward[0]) == float(plain.reward[0])
        s_plain = int(s_next)
        rewards.append(float(ts.reward[0])); terminated.append(bool(ts.terminated)); truncated.append(bool(ts.truncated))
        states.append(s_plain)
    assert terminated == [False] * (horizon - 1) + [True] * (steps - horizon + 1)
    assert not any(truncated)
    reward = jnp.asarray(rewards)[:, None, None] * jnp.ones((1, 1, 2))
    values = jax.random.normal(jax.random.PRNGKey(1), (steps, 1, 2))
    next_values = jax.random.normal(jax.random.PRNGKey(2), (steps, 1, 2))
    adv, _ = ppo.gae(reward, values, next_values, jnp.asarray(terminated)[:, None], jnp.asarray(truncated)[:, None],
                     0.99, 0.95)
    np.testing.assert_allclose(adv[horizon - 1:], (reward - values)[horizon - 1:], rtol=1e-6)
    assert not np.allclose(adv[:horizon - 1], (reward - values)[:horizon - 1])


@pytest.mark.parametrize("measure, factor", [("final", 2.0), ("last_minibatch", 0.5)])
def test_kl_measure_final_or_last_minibatch(measure, factor):
    """One update of one epoch, a large step and a tiny d_target: the KL after the update is far above target
    (β ×ω); the authors' last-minibatch KL is measured before that minibatch's step — 0 in the first epoch —
    so β ÷ω."""
    result = _train("ippo-kl", "climbing", {"n_epochs": 1, "actor_lr": 0.5, "kl_target": 1e-6, "kl_coef_init": 1.0,
                                            "kl_measure": measure, "n_envs": 8, "rollout_length": 1,
                                            "total_steps": 8, "log_points": 1}, seeds=1)
    np.testing.assert_allclose(_last(result, "beta_kl"), [factor])


def test_all_agent_advantage_normalisation_keeps_differences_between_agents():
    adv = jnp.stack([jnp.linspace(1.0, 3.0, 12), jnp.linspace(-1.0, 0.0, 12)], -1).reshape(6, 2, 2)
    per_agent = ppo.normalise_advantages(adv, "agent")
    together = ppo.normalise_advantages(adv, "all")
    np.testing.assert_allclose(per_agent.mean((0, 1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(per_agent.std((0, 1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(float(together.mean()), 0.0, atol=1e-6)
    assert float(together[..., 0].mean()) > 0.5 > -0.5 > float(together[..., 1].mean())


def test_layer_norm_networks_ignore_the_inputs_scale_and_offset():
    """The authors' MLP normalises its input (LayerNorm) and each hidden layer: an input scaled and shifted by
    constants gives the same policy, which the plain MLP does not."""
    spec = coopmarl.make("climbing").spec
    x = jax.random.normal(jax.random.PRNGKey(0), (5, spec.n_agents, spec.obs_dim + 3))
    spec = spec.__class__(**{**spec.__dict__, "obs_dim": spec.obs_dim + 3})
    for layer_norm in (True, False):
        config = resolve("dpo", "climbing", {"layer_norm": layer_norm, "hidden_sizes": "16,16"}).config
        actor, _ = ppo._nets(spec, config)
        params = actor.init(jax.random.PRNGKey(1), spec.obs_dim)
        same = np.allclose(actor.apply(params, x), actor.apply(params, 3.0 * x + 2.0), atol=1e-4)
        assert same == layer_norm
        norms = [k for k in jax.tree_util.tree_flatten_with_path(params)[0] if "LayerNorm" in jax.tree_util.keystr(k[0])]
        assert bool(norms) == layer_norm


def test_authors_variant_trains_on_the_never_reset_game():
    result = _train("dpo", "random-stochastic-game", {**SMALL_GAME, "variant": "authors", "env.reset": "never",
                                                      "total_steps": 1200})
    assert np.all(np.isfinite(_last(result, "eval_return")))
    assert np.all(np.isfinite(_last(result, "beta_kl")))


# ---- the authors' game file ------------------------------------------------------------------------------


def _authors_pickle(path, n_states=3, n_agents=2, n_actions=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n_states,) + (n_actions,) * n_agents
    trans = rng.random(shape + (n_states,))
    with open(path, "wb") as f:
        pickle.dump({"reward": rng.uniform(-5, 5, shape), "trans_mat": trans / trans.sum(-1, keepdims=True)}, f)


def test_the_authors_game_pickle_loads_as_their_code_reads_it(tmp_path):
    path = tmp_path / "random_matrix_game_x.pkl"
    _authors_pickle(path)
    game = coopmarl.make(f"tabular:{path}")
    with open(path, "rb") as f:
        data = pickle.load(f)
    np.testing.assert_allclose(np.asarray(game.reward), data["reward"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(game.transition), data["trans_mat"], rtol=1e-6)
    assert game.horizon == 3 and float(game.initial[0]) == 1.0  # episode length = states, start state 0
    assert coopmarl.make(f"tabular:{path}", reset="never").reset_mode == "never"


class _RunsCode:
    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_game_pickle_that_refers_to_code_is_refused_not_run(tmp_path):
    evil = _RunsCode()
    evil.target = str(tmp_path / "created")
    path = tmp_path / "game.pkl"
    path.write_bytes(pickle.dumps({"reward": evil, "trans_mat": np.ones(3)}))
    with pytest.raises(GameValidationError, match=r"may hold only numpy arrays.*refers to (posix|nt)\.mkdir"):
        coopmarl.make(f"tabular:{path}")
    assert not (tmp_path / "created").exists()
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(GameValidationError, match="must be a dict with 'reward' and 'trans_mat'"):
        coopmarl.make(f"tabular:{path}")


# ---- the presets -----------------------------------------------------------------------------------------


def _cells(name, opts):
    experiment = get_experiment(name)
    return experiment.cells({**{k: v[0] for k, v in experiment.options.items()}, **opts})


def test_stochastic_game_preset_cells_of_both_variants(tmp_path):
    cells = {c.label: c for c in _cells("dpo-stochastic-game", {"variant": "both"})}
    assert list(cells) == ["DPO (paper)", "IPPO (paper)", "IPPO-KL (paper)", "DPO w/o kl (paper)", "IQL",
                           "DPO (authors)", "IPPO (authors)", "IPPO-KL (authors)", "DPO w/o kl (authors)"]
    authors, paper = cells["DPO (authors)"], cells["DPO (paper)"]
    assert authors.path == "DPO-authors" and paper.path == "DPO"
    assert authors.overrides["variant"] == "authors" and authors.overrides["env.reset"] == "never"
    assert "n_envs" not in authors.overrides and paper.overrides["n_envs"] == 16
    assert "env.reset" not in cells["IQL"].overrides
    only = [c.label for c in _cells("dpo-stochastic-game", {"variant": "paper"})]
    assert only == ["DPO", "IPPO", "IPPO-KL", "DPO w/o kl", "IQL"]

    path = tmp_path / "g.pkl"
    _authors_pickle(path, n_states=4)
    with pytest.raises(ConfigError, match="do not apply to game=tabular"):
        run_experiment("dpo-stochastic-game", tmp_path / "y", {"game": f"tabular:{path}", "n_states": "5"})


def test_mpe_presets_run_the_authors_variant_on_their_env_settings():
    cells = {(c.env, c.label): c for c in _cells("dpo-ablation", {"variant": "authors"})}
    assert cells[("mpe:line", "DPO (authors)")].overrides["env.collision_penalty"] == 0.0
    assert cells[("mpe:circle", "DPO w/o kl (authors)")].overrides["env.collision_penalty"] == 0.0
    assert "env.collision_penalty" not in cells[("mpe:spread", "DPO (authors)")].overrides
    mpe = [c.label for c in _cells("dpo-mpe", {"variant": "both", "tasks": "mpe:spread"})]
    assert mpe == ["DPO (paper)", "IPPO (paper)", "IQL", "DPO (authors)", "IPPO (authors)"]
