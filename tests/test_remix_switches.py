"""The pymarl2-faithful switches of the value-based family (issue 13): ReMIX's policy in the mixer-gradient term
and its weight mapping, WQMIX's central Q* depth and CW-QMIX's greedy value, the agents' last-action input, and
the ReMIX presets' settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coopmarl.algos import offpolicy as op
from coopmarl.algos import qmix
from coopmarl.algos.base import get_algo, taken
from coopmarl.config import ConfigError, resolve
from coopmarl.experiments import value
from coopmarl.nets.mixers import CentralMixer
from coopmarl.nets.q import Agents
from coopmarl.runner import RunConfig, train


def _config(algo, **kw):
    return get_algo(algo).config_cls(**kw)


# ---- ReMIX: the policy π in Σ_j (1 − π^j)/f′ − 1 --------------------------------------------------------------


def test_boltzmann_mixer_gradient_term_is_positive_where_epsilon_greedy_makes_it_negative():
    # two agents with nearly equal utilities over 6 actions, both taking their greedy action, f′ = 0.5 each:
    # Thm 1's Boltzmann π^j ≈ 1/6, so Σ (1 − π^j)/f′ − 1 ≈ 2·(5/6)/0.5 − 1 > 0; ε-greedy at ε = 0.05 gives the
    # greedy action π ≈ 0.96, so the term is 2·0.042/0.5 − 1 < 0 and the weight collapses to w_min
    q = jnp.array([[[0.01, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.02, 0.0, 0.0, 0.0, 0.0]],
                   [[0.0] * 6, [0.0] * 6]])  # [B=2, N=2, A=6]
    avail = jnp.ones_like(q, bool)
    actions = jnp.array([[0, 1], [3, 3]])  # transition 0 all-greedy
    grad = jnp.full((2, 2), 0.5)
    q_tot, target, q_star_prev = jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0]), jnp.array([0.5, 0.0])  # 1: over
    late = 10_000_000  # ε has annealed to epsilon_end = 0.05
    weights = {}
    for policy in ("boltzmann", "epsilon_greedy"):
        config = _config("remix", remix_policy=policy)
        pi = jnp.take_along_axis(qmix.remix_policy_probs(q, avail, config, late), actions[..., None], -1)[..., 0]
        term = np.asarray(jnp.sum((1.0 - pi) / grad, -1) - 1.0)
        if policy == "boltzmann":
            assert term[0] == pytest.approx(2 * (5 / 6) / 0.5 - 1, rel=0.01) and term[0] > 0
        else:
            assert term[0] == pytest.approx(2 * (0.05 * 5 / 6) / 0.5 - 1, rel=1e-4) and term[0] < 0
        weights[policy] = np.asarray(qmix.remix_weights(q_tot, target, q_star_prev, pi, grad, config))
    np.testing.assert_allclose(weights["boltzmann"], [1.0, 0.1])  # the underestimate is up-weighted
    np.testing.assert_allclose(weights["epsilon_greedy"], [0.1, 0.1])  # the clipped negative term: w_min


def test_boltzmann_policy_respects_availability_and_temperature():
    q = jnp.array([[1.0, 2.0, 3.0]])
    avail = jnp.array([[True, True, False]])
    pi = np.asarray(qmix.remix_policy_probs(q, avail, _config("remix", remix_temperature=2.0), 0))
    e = np.exp(np.array([1.0, 2.0]) / 2.0)
    np.testing.assert_allclose(pi[0], [*(e / e.sum()), 0.0], rtol=1e-6)
    with pytest.raises(ConfigError, match="remix_temperature"):
        resolve("remix", "ro-matrix", ["remix_temperature=0"])
    with pytest.raises(ConfigError, match="'boltzmann', 'epsilon_greedy'"):
        resolve("remix", "ro-matrix", ["remix_policy=softmax"])


# ---- ReMIX: scores -> weights in [w_min, 1] ---------------------------------------------------------------------


@pytest.mark.parametrize("mapping", ["rank", "minmax", "mean"])
def test_weight_mappings_land_in_range_and_are_monotone(mapping):
    key = jax.random.PRNGKey(0)
    # Thm 1's scores: zeros for overestimates, heavy-tailed (the exp term) for underestimates
    scores = jnp.exp(2.0 * jax.random.normal(key, (8, 25))) * (jax.random.uniform(jax.random.fold_in(key, 1),
                                                                                    (8, 25)) < 0.6)
    config = _config("remix", weight_mapping=mapping, weight_min=0.1)
    w = np.asarray(qmix.map_weights(scores, config))
    assert w.shape == scores.shape
    assert w.min() >= 0.1 - 1e-6 and w.max() <= 1.0 + 1e-6
    order = np.argsort(np.asarray(scores).reshape(-1), kind="stable")
    assert np.all(np.diff(w.reshape(-1)[order]) >= -1e-6)  # monotone in the score
    assert np.all(w[np.asarray(scores) == 0] == pytest.approx(0.1))  # overestimates (score 0): w_min
    if mapping != "mean":
        assert w.max() == pytest.approx(1.0)


def test_rank_weights_spread_over_the_range_where_minmax_crowds_at_w_min():
    scores = jnp.exp(2.0 * jax.random.normal(jax.random.PRNGKey(1), (4000,)))  # heavy-tailed, all distinct
    rank = np.asarray(qmix.map_weights(scores, _config("remix", weight_mapping="rank", weight_min=0.1)))
    minmax = np.asarray(qmix.map_weights(scores, _config("remix", weight_mapping="minmax", weight_min=0.1)))
    assert np.median(rank) == pytest.approx((1 + 0.1) / 2, abs=0.01)
    np.testing.assert_allclose(np.sort(rank), np.linspace(0.1, 1.0, 4000), atol=1e-3)  # uniform over [w_min, 1] (float ties)
    assert np.mean(minmax < 0.2) > 0.9  # min–max: almost all weights near w_min
    assert _config("remix").weight_mapping == "rank"  # the default


# ---- WQMIX: the central Q* -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 3])
def test_central_mixer_has_the_asked_depth(layers):
    mixer = CentralMixer(embed=8, layers=layers)
    params = mixer.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(5))["params"]
    hidden = [k for k in params if k.startswith("Dense_")]
    assert len(hidden) == layers + 3  # `layers` ReLU layers, the linear output, V(s)'s two layers
    assert all(params[f"Dense_{i}"]["kernel"].shape[1] == 8 for i in range(layers))


def test_central_layers_default_is_wqmix_three():
    for algo in ("ow-qmix", "cw-qmix", "remix"):
        assert _config(algo).central_layers == 3
    with pytest.raises(ConfigError, match="central_layers"):
        resolve("cw-qmix", "ro-matrix", ["central_layers=0"])
    with pytest.raises(ConfigError, match="cw_greedy_value"):
        resolve("ow-qmix", "ro-matrix", ["cw_greedy_value=online"])  # a CW-only key


def _window_batch(spec, config, carry, b=2, key=0):
    window = op.example_window(spec, config, carry)
    k = jax.random.PRNGKey(key)
    batch = jax.tree.map(lambda x: jnp.broadcast_to(x, (b,) + x.shape), window)
    return batch._replace(obs=jax.random.normal(k, batch.obs.shape),
                          global_state=jax.random.normal(jax.random.fold_in(k, 1), batch.global_state.shape),
                          avail_actions=jnp.ones(batch.avail_actions.shape, bool))


@pytest.mark.parametrize("which", ["target", "online"])
def test_cw_values_the_greedy_action_with_the_chosen_central_network(which):
    r = resolve("cw-qmix", "ro-matrix", ["agent=mlp", f"cw_greedy_value={which}", "central_embed=8"])
    spec, config = r.env.spec, r.config
    state = qmix.init(jax.random.PRNGKey(0), spec, config)
    online = state.params
    target = jax.tree.map(lambda p: p + 0.3, online)  # a target network that disagrees with the online one
    batch = _window_batch(spec, config, qmix.initial_carry(spec, config))
    agents, _, central = qmix._nets(spec, config)
    greedy = op.masked_argmax(op.unroll_batch(agents, online["agents"], batch)[0], batch.avail_actions)
    cq, _ = op.unroll_batch(agents, online["central_agents"], batch)
    got = qmix._cw_greedy_value(agents, central, online, target, batch, greedy, cq, config)
    expected = {}
    for name, params in (("target", target), ("online", online)):
        q, _ = op.unroll_batch(agents, params["central_agents"], batch)
        expected[name] = qmix._mix(central, params["central"], taken(q, greedy), batch.global_state, greedy,
                                   spec.n_actions, None)
    np.testing.assert_allclose(got, expected[which], rtol=1e-5)
    assert not np.allclose(expected["target"], expected["online"])
    assert _config("cw-qmix").cw_greedy_value == "target"  # WQMIX max_q_learner.py


def test_cw_weights_follow_max_q_learner():
    actions = jnp.array([[0, 1], [0, 1], [2, 1]])
    greedy = jnp.array([[0, 1], [1, 1], [1, 1]])
    target = jnp.array([0.0, 2.0, 0.0])
    q_star_greedy = jnp.array([1.0, 1.0, 1.0])
    w = qmix.cw_weights(actions, greedy, target, q_star_greedy, _config("cw-qmix", weight=0.1))
    np.testing.assert_allclose(w, [1.0, 1.0, 0.1])  # greedy; y > Q̂*(s, û); neither


# ---- the agents' last action --------------------------------------------------------------------------------------


@pytest.mark.parametrize("recurrent", [True, False])  # GRU agents step along the window; MLP agents take it at once
def test_last_action_is_fed_back_and_restarts_at_episode_starts(recurrent):
    agents = Agents(n_agents=2, obs_dim=3, n_actions=4, hidden=8, last_action=True, agent_id=False,
                    recurrent=recurrent)
    params = agents.init(jax.random.PRNGKey(0))
    t, h = 6, agents.carry_dim
    obs = jax.random.normal(jax.random.PRNGKey(1), (t, 2, 3))
    next_obs = jax.random.normal(jax.random.PRNGKey(3), (t, 2, 3))  # (an episode's final observation may differ)
    actions = jax.random.randint(jax.random.PRNGKey(2), (t, 2), 0, 4)
    done = jnp.array([False, False, True, False, False, False])  # an episode ends after step 2
    # acting: apply, then write the chosen action into the carry; a new episode starts from the initial carry
    carry, acted, acted_next, stored = agents.initial_carry(), [], [], []
    for i in range(t):
        stored.append(carry)
        carry, q = agents.apply(params, carry, obs[i])
        acted.append(q)
        carry = agents.with_action(carry, actions[i])
        acted_next.append(agents.apply(params, carry, next_obs[i])[1])
        if done[i]:
            carry = agents.initial_carry()
    q, q_next = agents.unroll(params, agents.initial_carry(), obs, next_obs, done, actions)
    np.testing.assert_allclose(q, jnp.stack(acted), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_next, jnp.stack(acted_next), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stored[3][:, h:], 0.0)  # zero previous action at the episode start
    np.testing.assert_array_equal(stored[2][:, h:], jax.nn.one_hot(actions[1], 4))
    # a window that starts mid-episode (step 4) resumes from the stored carry, previous action included
    q_mid, _ = agents.unroll(params, stored[4], obs[4:], next_obs[4:], done[4:], actions[4:])
    np.testing.assert_allclose(q_mid, q[4:], rtol=1e-5, atol=1e-6)
    # a batch of windows (leading axes) gives each window's own values
    q_b, q_next_b = agents.unroll(params, jnp.stack([agents.initial_carry(), stored[4]]),
                                  jnp.stack([obs, jnp.roll(obs, 2, 0)]), jnp.stack([next_obs, next_obs]),
                                  jnp.stack([done, done]), jnp.stack([actions, actions]))
    np.testing.assert_allclose(q_b[0], q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_next_b[0], q_next, rtol=1e-5, atol=1e-6)
    q_1, q_next_1 = agents.unroll(params, stored[4], jnp.roll(obs, 2, 0), next_obs, done, actions)
    np.testing.assert_allclose(q_b[1], q_1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_next_b[1], q_next_1, rtol=1e-5, atol=1e-6)
    # the previous action changes the values (it is an input)
    other = agents.with_action(stored[4], (actions[3] + 1) % 4)
    assert not np.allclose(agents.apply(params, other, obs[4])[1], q[4])
    with pytest.raises(ValueError, match="stored actions"):
        agents.unroll(params, agents.initial_carry(), obs, obs, done)


def test_last_action_and_agent_id_are_keys():
    r = resolve("qmix", "ro-matrix", ["last_action=true", "agent_id=false"])
    agents = op.make_agents(r.env.spec, r.config)
    assert agents.last_action and not agents.agent_id
    assert _config("qmix").last_action is False and _config("qmix").agent_id is True


# ---- the ReMIX presets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["cpu", "long", "paper"])
def test_remix_presets_train_everyone_on_equal_batches_of_raw_rewards(scale):
    env = "predator-prey:p-2"
    base = value._remix_overrides("qmix", scale, env=env)
    remix = value._remix_overrides("remix", scale, env=env)
    assert remix["batch_size"] + remix["recent_batch_size"] == base["batch_size"]
    assert value._remix_overrides("remix", scale, {"remix_on_policy": False}, env)["batch_size"] == base["batch_size"]
    for o in (base, remix):
        assert o["standardise_rewards"] is False and o["last_action"] is True and o["agent_id"] is False
    assert "agent_id" not in value._remix_overrides("qmix", scale, env="smax:3m")  # stag hunt only
    for algo in value.REMIX_BASELINES:  # every override is a key of the algorithm, and the env can run it
        r = resolve(algo, env, {k: str(v) for k, v in value._remix_overrides(algo, scale, env=env).items()})
        # pymarl2's core (whole episodes from a zero GRU state, 8 envs) beyond the cpu scale's fast windows
        faithful = (r.config.replay, r.config.agent, r.config.n_envs, r.config.target_update_episodes)
        assert faithful == (("windows", "mlp", 16, 200) if scale == "cpu" else ("episodes", "gru", 8, 200))
    assert (base["batch_size"], base["buffer_size"]) == {"cpu": (16, 2000), "long": (32, 1000),
                                                         "paper": (128, 10_000)}[scale]


def test_a_remix_preset_refuses_an_unknown_scale():
    from coopmarl.errors import ConfigError

    with pytest.raises(ConfigError, match="scale must be 'cpu', 'long' or 'paper', got 'huge'"):
        value._pp_cells({"scale": "huge", "steps": 0, "seeds": 1}, [])


# CW-QMIX exercises every new switch of the central network (3 layers, greedy value from the target network) in
# the default run; ReMIX's preset cells train in tests/test_experiments.py; the rest behind the slow marker
@pytest.mark.parametrize("algo", [pytest.param("qmix", marks=pytest.mark.slow),
                                  pytest.param("ow-qmix", marks=pytest.mark.slow), "cw-qmix",
                                  pytest.param("remix", marks=pytest.mark.slow)])
def test_algorithms_train_on_predator_prey_with_the_preset_settings(algo):
    o = value._remix_overrides(algo, "cpu", env="predator-prey:p-2")
    o.update(n_envs=4, rollout_length=10, buffer_size=16)  # small, the preset's switches kept
    if algo != "qmix":
        o["central_embed"] = 32
    o["batch_size"] = 8 - o.get("recent_batch_size", 0)
    if algo == "remix":
        o["recent_buffer_size"] = 8
    r = resolve(algo, "predator-prey:p-2", {k: str(v) for k, v in o.items()})
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=320, n_seeds=1, log_points=2, eval_episodes=1),
                   progress=False)
    final = result.final()
    assert np.isfinite(final["loss"]).all() and final["learning"].min() == 1.0
    if algo == "remix":
        assert 0.1 <= final["weight_mean"].min() <= 1.0


def test_an_older_runs_config_keeps_the_behaviour_it_ran_with():
    from coopmarl.config import upgrade_algo_config

    old = {k: v for k, v in resolve("remix", "ro-matrix").config.__dict__.items()
           if k not in ("central_layers", "remix_policy", "weight_mapping")}
    up = upgrade_algo_config("remix", old)
    assert (up["central_layers"], up["remix_policy"], up["weight_mapping"]) == (2, "epsilon_greedy", "minmax")
    assert upgrade_algo_config("cw-qmix", {"weight": 0.1})["cw_greedy_value"] == "online"
    assert "cw_greedy_value" not in upgrade_algo_config("ow-qmix", {})  # not its key
    assert upgrade_algo_config("cw-qmix", {"cw_greedy_value": "target"})["cw_greedy_value"] == "target"
