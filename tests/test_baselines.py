"""Tabular baselines of ROMMEO §5.1 (JAL, FMQ, WoLF-PHC): hand computations, invariants, learning on easy
games, decentralisation and determinism."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.algos.base import Transition, get_algo
from coopmarl.envs.core import EnvSpec
from coopmarl.exact import baselines as B
from coopmarl.runner import RunConfig, build_chunk, train

# (A, A) = 10 is the best joint action; (B, B) = 2 is a second, worse equilibrium.
EASY = [[10.0, 0.0], [0.0, 2.0]]
# Action A is dominant for each agent: (A, A) is the only equilibrium.
DOMINANT = [[10.0, 4.0], [4.0, 2.0]]


def _spec(n_agents, n_states, n_actions):
    return EnvSpec(name="t", n_agents=n_agents, obs_dim=n_states, state_dim=n_states, action_kind="discrete",
                   n_actions=n_actions, horizon=1)


def _batch(states, actions, reward, next_states, n_states, terminated=False):
    """One transition as the runner's [rollout_length=1, n_envs=1] batch; states per agent."""
    n = len(actions)
    obs = jax.nn.one_hot(jnp.asarray(states), n_states)
    next_obs = jax.nn.one_hot(jnp.asarray(next_states), n_states)
    tr = Transition(
        obs=obs, global_state=obs[0], avail_actions=jnp.ones((n, 1), bool), actions=jnp.asarray(actions, jnp.int32),
        reward=jnp.full((n,), reward, jnp.float32), terminated=jnp.asarray(terminated), truncated=jnp.asarray(True),
        next_obs=next_obs, next_global_state=next_obs[0], next_avail_actions=jnp.ones((n, 1), bool),
    )
    return jax.tree.map(lambda x: x[None, None], tr)


def _jit_update(update, config):
    return jax.jit(lambda state, batch: update(state, batch, None, config=config))


# ---- learning on easy games -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,payoff,config", [
    ("fmq", EASY, None),
    ("wolf-phc", EASY, None),
    # epsilon-greedy JAL (the ROMMEO authors' exploration) locks onto the first equilibrium it plays, so it
    # is only expected to find the optimum when that is the unique equilibrium ...
    ("jal", DOMINANT, None),
    # ... while Boltzmann JAL explores long enough to learn that A is the best reply to uniform beliefs.
    ("jal", EASY, B.JALConfig(exploration="boltzmann")),
])
def test_learner_reaches_optimum_of_easy_game(name, payoff, config):
    algo = get_algo(name)
    game = coopmarl.envs.TabularGame.matrix(payoff, discount=0.95)
    result = train(algo, game, config or algo.default_config(), RunConfig(total_steps=800, n_seeds=16, log_points=1),
                   progress=False)
    final = result.final()
    assert np.mean(final["p_optimal"] > 0.5) >= 0.8, final["p_optimal"]
    assert np.mean(final["eval_return"]) > 9.0
    if name == "wolf-phc":  # the evaluated policy π stays a distribution in every state
        pi = np.asarray(result.train_state.pi)
        assert pi.min() >= 0.0
        np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-5)


# ---- JAL ------------------------------------------------------------------------------------------------


def _numpy_jal_ev(q, counts):
    """EV^n(s, a^n) by enumerating the other agents' joint actions; q [N, S, A**N], counts [N, N, S, A]."""
    n_agents, n_states, _ = q.shape
    n_actions = counts.shape[-1]
    ev = np.zeros((n_agents, n_states, n_actions))
    for n, s in itertools.product(range(n_agents), range(n_states)):
        beliefs = []
        for m in range(n_agents):
            c = counts[n, m, s]
            beliefs.append(c / c.sum() if c.sum() > 0 else np.full(n_actions, 1.0 / n_actions))
        for joint in itertools.product(range(n_actions), repeat=n_agents):
            j = np.ravel_multi_index(joint, (n_actions,) * n_agents)
            w = np.prod([beliefs[m][joint[m]] for m in range(n_agents) if m != n])
            ev[n, s, joint[n]] += q[n, s, j] * w
    return ev


def test_jal_expected_value_matches_numpy():
    rng = np.random.default_rng(0)
    n_agents, n_states, n_actions = 3, 2, 3
    q = rng.normal(size=(n_agents, n_states, n_actions**n_agents)).astype(np.float32)
    counts = rng.integers(0, 5, size=(n_agents, n_agents, n_states, n_actions)).astype(np.float32)
    counts[1, 2, 0] = 0.0  # never observed: uniform belief
    state = B.JALState(jnp.asarray(q), jnp.asarray(counts), jnp.int32(0))
    expected = _numpy_jal_ev(q, counts)
    s = jnp.array([1, 0, 1])
    ev, rows, policy = jax.jit(lambda st: (B.jal_expected_values(st), B._jal_ev_at(st, s),
                                           B.jal_policy(st, B.JALConfig())))(state)
    np.testing.assert_allclose(ev, expected, rtol=1e-5, atol=1e-5)
    # what an agent acts on at its own state equals the full table's row
    np.testing.assert_allclose(rows, expected[np.arange(3), np.array(s)], rtol=1e-5, atol=1e-5)
    # the evaluated policy is greedy on EV
    np.testing.assert_array_equal(np.argmax(policy, -1), np.argmax(expected, -1))


def test_jal_update_counts_and_bootstraps_on_expected_value():
    config = B.JALConfig(q_init=0.0, gamma=0.9)
    state = B.jal_init(jax.random.PRNGKey(0), _spec(2, 2, 2), config)
    q = state.q.at[0, 1].set(jnp.array([1.0, 3.0, 5.0, -1.0]))  # agent 0's Q(s'=1, ·)
    state = state._replace(q=q, counts=state.counts.at[0, 1, 1].set(jnp.array([1.0, 3.0])))
    new, _ = _jit_update(B.jal_update, config)(state, _batch([0, 0], [1, 0], 2.0, [1, 1], 2))
    # every agent counted every agent's action in state 0
    np.testing.assert_array_equal(new.counts[:, :, 0], np.broadcast_to([[0.0, 1.0], [1.0, 0.0]], (2, 2, 2)))
    # agent 0 at s' = 1: belief about agent 1 = (1/4, 3/4); EV(0) = 1/4 + 9/4, EV(1) = 5/4 - 3/4
    bootstrap0 = max(0.25 * 1.0 + 0.75 * 3.0, 0.25 * 5.0 - 0.75 * 1.0)
    joint = 1 * 2 + 0
    assert new.q[0, 0, joint] == pytest.approx(2.0 + 0.9 * bootstrap0)  # α_0 = 1
    assert new.q[1, 0, joint] == pytest.approx(2.0)  # agent 1's Q(s' = 1) is all zero
    assert int(new.step) == 1


# ---- FMQ ------------------------------------------------------------------------------------------------


def test_fmq_heuristic_matches_hand_computation():
    config = B.FMQConfig(q_init=0.0)
    state = B.fmq_init(jax.random.PRNGKey(0), _spec(2, 1, 3), config)
    # agent 0 always plays action 0; agent 1 varies, giving the climbing game's row A rewards
    partner = [0, 1, 0, 2, 1]
    rewards = [11.0, -30.0, 11.0, 0.0, -30.0]
    q_hand = 0.0
    update = _jit_update(B.fmq_update, config)
    for a1, r in zip(partner, rewards):
        state, _ = update(state, _batch([0, 0], [0, a1], r, [0, 0], 1))
        q_hand = q_hand + config.lr * (r + config.gamma * max(q_hand, 0.0) - q_hand)
    assert float(state.q[0, 0, 0]) == pytest.approx(q_hand, rel=1e-5)
    assert float(state.max_r[0, 0, 0]) == 11.0
    assert float(state.count[0, 0, 0]) == 5.0 and float(state.count_max[0, 0, 0]) == 2.0
    ev = B.fmq_values(state, config)
    assert float(ev[0, 0, 0]) == pytest.approx(q_hand + 10.0 * (2.0 / 5.0) * 11.0, rel=1e-5)
    assert float(ev[0, 0, 1]) == 0.0  # never played: Q = 0 and no heuristic term
    # a larger reward replaces maxR and restarts its count
    state, _ = update(state, _batch([0, 0], [0, 0], 12.0, [0, 0], 1))
    assert float(state.max_r[0, 0, 0]) == 12.0 and float(state.count_max[0, 0, 0]) == 1.0
    assert float(state.count[0, 0, 0]) == 6.0
    # evaluation is greedy on EV (not on Q)
    state = state._replace(q=state.q.at[0, 0, 2].set(float(state.q[0, 0, 0]) + 1.0))
    assert int(np.argmax(B.fmq_policy(state, config)[0, 0])) == 0
    assert int(np.argmax(B.fmq_policy(state, B.FMQConfig(c=0.0))[0, 0])) == 2


def test_fmq_temperature_schedule():
    config = B.FMQConfig()
    assert float(B.boltzmann_temperature(config, 0)) == pytest.approx(500.0)
    assert float(B.boltzmann_temperature(config, 1000)) == pytest.approx(499.0 * np.exp(-6.0) + 1.0, rel=1e-5)


# ---- WoLF-PHC -------------------------------------------------------------------------------------------


def test_wolf_switches_delta_by_the_rule():
    q = jnp.array([1.0, 2.0, 0.0])  # greedy action 1
    visits = jnp.array(999.0)  # π̄ barely moves this step
    dw, dl = 0.01, 0.04
    # winning: π already favours the greedy action more than π̄ does
    pi, pi_avg = jnp.array([0.2, 0.6, 0.2]), jnp.array([0.4, 0.2, 0.4])
    new_pi, new_avg, new_c, win = B.wolf_policy_step(q, pi, pi_avg, visits, dw, dl)
    assert bool(win)
    np.testing.assert_allclose(new_pi, [0.2 - dw / 2, 0.6 + dw, 0.2 - dw / 2], atol=1e-7)
    np.testing.assert_allclose(new_avg, pi_avg + (pi - pi_avg) / 1000.0, atol=1e-7)
    assert float(new_c) == 1000.0
    # losing: the roles swapped
    new_pi, _, _, win = B.wolf_policy_step(q, pi_avg, pi, visits, dw, dl)
    assert not bool(win)
    np.testing.assert_allclose(new_pi, [0.4 - dl / 2, 0.2 + dl, 0.4 - dl / 2], atol=1e-7)
    # a probability smaller than δ / (|A| - 1) is only taken down to zero
    new_pi, _, _, win = B.wolf_policy_step(q, jnp.array([0.005, 0.2, 0.795]), pi, visits, dw, dl)
    assert not bool(win)
    np.testing.assert_allclose(new_pi, [0.0, 0.2 + 0.005 + dl / 2, 0.795 - dl / 2], atol=1e-7)


def test_wolf_update_on_a_constructed_state():
    config = B.WoLFPHCConfig(q_init=0.0, gamma=0.5)
    state = B.wolf_init(jax.random.PRNGKey(0), _spec(2, 1, 3), config)
    state = state._replace(pi=state.pi.at[:, 0].set(jnp.array([0.1, 0.1, 0.8])))
    # both agents play action 1 and get 4: Q(1) = 4 + 0.5 * 0 (α_0 = 1), so action 1 becomes greedy;
    # π̄ jumps to π (C = 1), Σ π Q = Σ π̄ Q, which is not winning -> δ_l (δ decays with α, = 1 at t = 0)
    update = _jit_update(B.wolf_update, config)
    new, metrics = update(state, _batch([0, 0], [1, 1], 4.0, [0, 0], 1))
    np.testing.assert_allclose(new.q[:, 0], [[0.0, 4.0, 0.0]] * 2)
    np.testing.assert_allclose(new.pi_avg[:, 0], [[0.1, 0.1, 0.8]] * 2, atol=1e-7)
    np.testing.assert_allclose(new.pi[:, 0], [[0.1 - 0.02, 0.1 + 0.04, 0.8 - 0.02]] * 2, atol=1e-6)
    assert float(metrics["winning"]) == 0.0
    # second step: π moved toward the greedy action, π̄ lags behind -> winning -> δ_w (decayed)
    new2, metrics = update(new, _batch([0, 0], [1, 1], 4.0, [0, 0], 1))
    decay = float(B.hyperbolic_decay(config.lr_decay_steps, 1))
    dw = config.delta_win * decay
    assert float(metrics["winning"]) == 1.0
    np.testing.assert_allclose(new2.pi[:, 0], new.pi[:, 0] + jnp.array([-dw / 2, dw, -dw / 2]), atol=1e-6)
    assert int(new2.visits[0, 0]) == 2


def test_wolf_policy_rows_stay_distributions():
    # many random steps with large δ: rows stay on the simplex
    def step(carry, key):
        pi, avg, c = carry
        q = jax.random.normal(key, pi.shape)
        pi, avg, c, _ = B.wolf_policy_step(q, pi, avg, c, 0.3, 0.9)
        return (pi, avg, c), pi

    init = jnp.full((5, 4), 0.25)
    _, pis = jax.lax.scan(step, (init, init, jnp.zeros(5)), jax.random.split(jax.random.PRNGKey(0), 500))
    assert float(pis.min()) >= 0.0
    np.testing.assert_allclose(pis.sum(-1), 1.0, atol=1e-5)


# ---- contract: configs, decentralised acting, determinism --------------------------------------------------


def test_config_validation():
    with pytest.raises(ValueError, match="exploration"):
        B.JALConfig(exploration="softmax")
    with pytest.raises(ValueError, match="delta_win < delta_lose"):
        B.WoLFPHCConfig(delta_win=0.05, delta_lose=0.01)
    with pytest.raises(TypeError, match="n_envs"):  # one transition per update: fixed, not a key
        B.FMQConfig(n_envs=4)
    assert B.FMQConfig().n_envs == 1 and B.FMQConfig().rollout_length == 1


@pytest.mark.parametrize("name", ["jal", "fmq", "wolf-phc"])
def test_act_is_decentralised(name):
    """Agent 0's action depends only on obs[0] and agent 0's own tables."""
    algo = get_algo(name)
    config = algo.default_config()
    state = algo.init(jax.random.PRNGKey(1), _spec(2, 3, 3), config)
    obs = jax.nn.one_hot(jnp.array([1, 1]), 3)
    other_obs = jax.nn.one_hot(jnp.array([1, 2]), 3)
    avail = jnp.ones((2, 3), bool)
    noisy = jax.tree.map(
        lambda x: x.at[1].set(jax.random.uniform(jax.random.PRNGKey(2), x.shape[1:], maxval=50.0))
        if x.ndim >= 2 else x, state)
    keys = jax.random.split(jax.random.PRNGKey(3), 32)

    def agent0(st, o, k):  # (exploring, greedy) action of agent 0
        return jnp.stack([algo.act(st, o, avail, k, explore=e, config=config)[0] for e in (True, False)])

    act = jax.jit(jax.vmap(agent0, in_axes=(None, None, 0)))
    base = act(state, obs, keys)
    np.testing.assert_array_equal(act(state, other_obs, keys), base)
    np.testing.assert_array_equal(act(noisy, other_obs, keys), base)


@pytest.mark.parametrize("name", ["jal", "fmq", "wolf-phc"])
def test_same_seed_same_numbers(name):
    """The runner's compiled chunk is a pure function of its carry (which holds the seed's key)."""
    algo = get_algo(name)
    game = coopmarl.make("climbing")
    config = algo.default_config()
    init, chunk = build_chunk(algo, game, config, iters=50)
    init, chunk = jax.jit(jax.vmap(init, in_axes=(None, 0))), jax.jit(jax.vmap(chunk, in_axes=(None, 0)))
    keys = jnp.stack([jax.random.PRNGKey(3), jax.random.PRNGKey(3), jax.random.PRNGKey(4)])
    a, metrics_a, _ = chunk(game, init(game, keys))
    b, metrics_b, _ = chunk(game, init(game, keys))
    for x, y in zip(jax.tree.leaves((a, metrics_a)), jax.tree.leaves((b, metrics_b))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    state = a[0]
    for x in jax.tree.leaves(state):
        np.testing.assert_array_equal(np.asarray(x[0]), np.asarray(x[1]))  # same seed, same learner
    assert not np.array_equal(np.asarray(state.q[0]), np.asarray(state.q[2]))  # another seed, another one
