"""Predator-prey (DCG stag hunt): every rule from hand-made positions, plus property fuzzing.

Hand-made positions are built with `env.state_from(agents=[(row, col), ...], stags=[...], hares=[...],
frozen=[...])` (documented in `coopmarl.envs.predator_prey`): row 0 is the top, actions are
0 right, 1 down, 2 left, 3 up, 4 stay, 5 catch. Most tests use a 5x5 grid with 3 agents and 2 stags
(`SMALL`, punishment -2) so that each rule can be isolated; the property tests also run the paper's
10x10, 8 agents, 8 stags.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import coopmarl
from coopmarl.envs.predator_prey import CATCH, REMIX_PUNISHMENTS, STAY, PredatorPrey, PredatorPreyState
from coopmarl.envs.registry import ParamError

R, D, L, U, S, C = range(6)
DELTA = np.array([[0, 1], [1, 0], [0, -1], [-1, 0], [0, 0], [0, 0]])
ONLY_STAY = [False, False, False, False, True, False]

SMALL = coopmarl.make("predator-prey", grid_size=5, n_agents=3, n_stags=2, punishment=-2.0)
WITH_HARE = coopmarl.make("predator-prey", grid_size=5, n_agents=3, n_stags=1, n_hares=1, punishment=-2.0)

# one compiled program per env configuration (the env is a leafless pytree: its static fields key the cache)
_step = jax.jit(lambda env, key, state, actions: env.step(key, state, actions))
_step_keys = jax.jit(jax.vmap(lambda env, key, state, actions: env.step(key, state, actions),
                              in_axes=(None, 0, None, None)))
_observe = jax.jit(lambda env, state: env.observe(state))


def step(env, state, actions, seed=0):
    return _step(env, jax.random.PRNGKey(seed), state, jnp.asarray(actions, jnp.int32))


def step_seeds(env, state, actions, n=64):
    """The same step under n different keys (random agent order, prey order and prey moves)."""
    keys = jax.random.split(jax.random.PRNGKey(123), n)
    return jax.device_get(_step_keys(env, keys, state, jnp.asarray(actions, jnp.int32)))


def window(env, obs_row):
    w = 2 * env.sight + 1
    return np.asarray(obs_row).reshape(w, w, 3)


def grid(env, global_state):
    return np.asarray(global_state).reshape(env.grid_size, env.grid_size, 3)


# ---- registry and spec ---------------------------------------------------------------------------


def test_registered_names_and_default_spec():
    names = {e.name for e in coopmarl.list_envs()}
    assert {"predator-prey", "predator-prey:p0", "predator-prey:p-0.5", "predator-prey:p-1.5",
            "predator-prey:p-2"} <= names
    env = coopmarl.make("predator-prey")
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions, spec.horizon) == (8, 75, 300, 6, 200)
    assert (env.grid_size, env.n_stags, env.n_hares, env.punishment, env.stag_reward) == (10, 8, 0, 0.0, 10.0)
    assert (env.agents_to_catch_stag, env.time_limit, env.sight) == (2, 200, 2)
    for p in REMIX_PUNISHMENTS:
        variant = coopmarl.make(f"predator-prey:p{p:g}")
        assert variant.punishment == p and variant.spec.name == f"predator-prey:p{p:g}"
    with pytest.raises(ParamError, match="punishment"):
        coopmarl.make("predator-prey:p-2", punishment=-1.0)  # the name fixes the punishment
    assert coopmarl.make("predator-prey", punishment="-1.5").punishment == -1.5  # CLI strings coerce


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        coopmarl.make("predator-prey", grid_size=3, n_agents=5, n_stags=5)
    with pytest.raises(ValueError, match="at least one prey"):
        coopmarl.make("predator-prey", n_stags=0)
    with pytest.raises(ValueError, match="sight"):
        coopmarl.make("predator-prey", sight=-1)


def test_reset_places_everyone_on_distinct_free_cells():
    env = coopmarl.make("predator-prey")
    states, ts = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 50))
    cells = np.concatenate([np.asarray(states.agent_pos), np.asarray(states.prey_pos)], axis=1)  # [50, 16, 2]
    assert ((cells >= 0) & (cells < 10)).all()
    flat = cells[..., 0] * 10 + cells[..., 1]
    assert all(len(set(f)) == 16 for f in flat)
    assert len({tuple(f) for f in flat}) == 50  # random
    assert not np.asarray(states.frozen).any() and np.asarray(states.prey_alive).all()
    assert (np.asarray(states.time) == 0).all()
    assert not np.asarray(ts.terminated).any() and not np.asarray(ts.truncated).any()
    np.testing.assert_array_equal(np.asarray(ts.reward), 0.0)


# ---- capture -------------------------------------------------------------------------------------


def test_capture_by_two_rewards_removes_the_stag_and_freezes_the_catchers():
    # A (2,1) and B (2,3) flank the stag at (2,2); C stands in the corner; the other stag is far away
    state = SMALL.state_from(agents=[(2, 1), (2, 3), (0, 0)], stags=[(2, 2), (4, 4)])
    before = _observe(SMALL, state)
    assert before.avail_actions[0, CATCH] and before.avail_actions[1, CATCH] and not before.avail_actions[2, CATCH]
    for seed in range(4):  # whatever the agent and prey orders
        new, ts = step(SMALL, state, [C, C, S], seed)
        np.testing.assert_array_equal(ts.reward, [10.0, 10.0, 10.0])
        np.testing.assert_array_equal(new.prey_alive, [False, True])
        np.testing.assert_array_equal(new.frozen, [True, True, False])
        np.testing.assert_array_equal(new.agent_pos[:2], [(2, 1), (2, 3)])  # catchers do not move
        np.testing.assert_array_equal(new.prey_pos[0], (2, 2))  # a caught prey keeps its last cell
        assert not np.asarray(ts.obs[:2]).any(), "a frozen agent's observation is zero"
        np.testing.assert_array_equal(ts.avail_actions[:2], [ONLY_STAY, ONLY_STAY])
        # C sees only itself: the frozen agents (in its window) and the caught stag are gone from the world
        expected = np.zeros((5, 5, 3))
        expected[2, 2, 0] = 1
        np.testing.assert_array_equal(window(SMALL, ts.obs[2]), expected)
        assert grid(SMALL, ts.global_state)[..., 0].sum() == 1 and grid(SMALL, ts.global_state)[..., 1].sum() == 1
        assert not bool(ts.terminated) and not bool(ts.truncated)
        assert int(ts.info["prey_caught"]) == 1 and int(ts.info["agents_frozen"]) == 2


def test_capture_by_three_freezes_all_three_and_ends_the_episode():
    state = SMALL.state_from(agents=[(1, 2), (2, 1), (2, 3)], stags=[(2, 2), (4, 4)])
    new, ts = step(SMALL, state, [C, C, C])
    assert float(ts.reward[0]) == 10.0
    np.testing.assert_array_equal(new.frozen, [True, True, True])
    np.testing.assert_array_equal(new.prey_alive, [False, True])
    assert bool(ts.terminated), "all agents frozen ends the episode (a stag is still left)"
    assert not bool(ts.truncated)


def test_all_prey_caught_ends_the_episode():
    state = WITH_HARE.state_from(agents=[(0, 0), (2, 1), (2, 3)], stags=[(2, 2)])  # the hare is already caught
    new, ts = step(WITH_HARE, state, [S, C, C])
    assert float(ts.reward[0]) == 10.0 and not np.asarray(new.prey_alive).any()
    assert bool(ts.terminated) and not bool(new.frozen[0])


def test_hare_is_caught_by_one_agent():
    state = WITH_HARE.state_from(agents=[(0, 0), (2, 1), (4, 4)], stags=[(4, 0)], hares=[(2, 2)])
    assert _observe(WITH_HARE, state).avail_actions[1, CATCH]
    new, ts = step(WITH_HARE, state, [S, C, S])
    assert float(ts.reward[0]) == WITH_HARE.hare_reward == 1.0
    np.testing.assert_array_equal(new.prey_alive, [True, False])
    np.testing.assert_array_equal(new.frozen, [False, True, False])


@pytest.mark.parametrize("p", REMIX_PUNISHMENTS)
def test_miscapture_by_one_gives_the_punishment(p):
    env = coopmarl.make(f"predator-prey:p{p:g}", grid_size=5, n_agents=3, n_stags=2)
    state = env.state_from(agents=[(2, 1), (0, 4), (4, 4)], stags=[(2, 2), (0, 0)])
    for seed in range(3):
        new, ts = step(env, state, [C, S, S], seed)
        np.testing.assert_array_equal(ts.reward, [p] * 3)
        assert np.asarray(new.prey_alive).all() and not np.asarray(new.frozen).any()
        # the stag, not caught, steps to a free neighbour (agents stay put)
        assert tuple(np.asarray(new.prey_pos[0])) in {(1, 2), (3, 2), (2, 3)}


def test_miscapture_is_punished_per_prey():
    state = SMALL.state_from(agents=[(1, 1), (3, 3), (4, 0)], stags=[(1, 2), (3, 4)])
    _, ts = step(SMALL, state, [C, C, S])
    assert float(ts.reward[0]) == 2 * -2.0


def test_catcher_next_to_two_stags_counts_for_the_first_in_prey_order_only():
    # A (2,2) is adjacent to both stags; B helps with the left stag, C with the right one. Prey are
    # processed in random order: the first is caught by A and its partner (A freezes at once), the
    # second then has one catcher left -> one capture and one miscapture, whichever the order.
    state = SMALL.state_from(agents=[(2, 2), (1, 1), (1, 3)], stags=[(2, 1), (2, 3)])
    out_state, out_ts = step_seeds(SMALL, state, [C, C, C])
    np.testing.assert_array_equal(out_ts.reward[:, 0], 10.0 - 2.0)
    alive, frozen = out_state.prey_alive, out_state.frozen
    assert (alive.sum(1) == 1).all() and (frozen.sum(1) == 2).all() and frozen[:, 0].all()
    np.testing.assert_array_equal(frozen[:, 1], ~alive[:, 0])  # B froze iff the left stag was caught
    assert alive[:, 0].any() and alive[:, 1].any(), "both prey orders occur"


def test_frozen_agents_cannot_catch_and_are_removed_from_the_world():
    # A is frozen next to the stag; B alone catches -> miscapture. A's move is ignored.
    state = SMALL.state_from(agents=[(2, 1), (2, 3), (0, 0)], stags=[(2, 2), (4, 4)], frozen=[True, False, False])
    ts0 = _observe(SMALL, state)
    np.testing.assert_array_equal(ts0.avail_actions[0], ONLY_STAY)
    assert not np.asarray(ts0.obs[0]).any()
    new, ts = step(SMALL, state, [C, C, S])
    assert float(ts.reward[0]) == -2.0 and bool(new.prey_alive[0]) and not bool(new.frozen[1])
    new, _ = step(SMALL, state, [D, S, S])
    np.testing.assert_array_equal(new.agent_pos[0], (2, 1))
    # a frozen agent blocks nobody: C moves into A's old cell
    state = SMALL.state_from(agents=[(0, 1), (4, 4), (0, 0)], stags=[(4, 0), (3, 4)], frozen=[True, False, False])
    new, _ = step(SMALL, state, [S, S, R])
    np.testing.assert_array_equal(new.agent_pos[2], (0, 1))


# ---- action masks --------------------------------------------------------------------------------


def test_catch_needs_a_4_adjacent_prey():
    for stag, available in [((3, 3), False), ((2, 4), False), ((0, 0), False), ((3, 2), True), ((2, 1), True)]:
        state = SMALL.state_from(agents=[(2, 2), (4, 0), (0, 4)], stags=[stag])
        assert bool(_observe(SMALL, state).avail_actions[0, CATCH]) == available, stag
    # a hare counts as prey too; a caught prey does not
    state = WITH_HARE.state_from(agents=[(2, 2), (4, 0), (0, 4)], stags=[(0, 0)], hares=[(1, 2)])
    assert bool(_observe(WITH_HARE, state).avail_actions[0, CATCH])
    state = WITH_HARE.state_from(agents=[(2, 2), (4, 0), (0, 4)], stags=[(0, 0)])
    assert not bool(_observe(WITH_HARE, state).avail_actions[0, CATCH])


def test_moves_into_walls_are_unavailable_and_do_nothing():
    state = SMALL.state_from(agents=[(0, 0), (4, 4), (2, 0)], stags=[(2, 2)])
    avail = np.asarray(_observe(SMALL, state).avail_actions)
    np.testing.assert_array_equal(avail[0, :5], [True, True, False, False, True])  # right, down only
    np.testing.assert_array_equal(avail[1, :5], [False, False, True, True, True])  # left, up only
    np.testing.assert_array_equal(avail[2, :5], [True, True, False, True, True])
    new, _ = step(SMALL, state, [U, R, L])  # illegal moves are ignored, not wrapped
    np.testing.assert_array_equal(new.agent_pos, [(0, 0), (4, 4), (2, 0)])


def test_moves_into_occupied_cells_stay_available_but_are_blocked():
    # A pushes into the stag, B into C (who stays): both blocked. (DCG masks walls only.)
    state = SMALL.state_from(agents=[(2, 1), (0, 0), (0, 1)], stags=[(2, 2)])
    ts0 = _observe(SMALL, state)
    assert ts0.avail_actions[0, R] and ts0.avail_actions[1, R]
    out_state, _ = step_seeds(SMALL, state, [R, R, S])
    assert (out_state.agent_pos[:, 0] == (2, 1)).all() and (out_state.agent_pos[:, 1] == (0, 0)).all()


def test_agents_move_one_at_a_time_in_random_order():
    # A follows B to the right: it succeeds iff B moved first
    state = SMALL.state_from(agents=[(1, 0), (1, 1), (4, 4)], stags=[(3, 3)])
    out_state, _ = step_seeds(SMALL, state, [R, R, S])
    assert (out_state.agent_pos[:, 1] == (1, 2)).all()
    followed = (out_state.agent_pos[:, 0] == (1, 1)).all(1)
    stayed = (out_state.agent_pos[:, 0] == (1, 0)).all(1)
    assert (followed | stayed).all() and followed.any() and stayed.any()
    # A and C step into the same empty cell: exactly one gets it
    state = SMALL.state_from(agents=[(0, 0), (4, 4), (0, 2)], stags=[(3, 0)])
    out_state, _ = step_seeds(SMALL, state, [R, S, L])
    a_in = (out_state.agent_pos[:, 0] == (0, 1)).all(1)
    c_in = (out_state.agent_pos[:, 2] == (0, 1)).all(1)
    assert (a_in ^ c_in).all() and a_in.any() and c_in.any()
    assert ((out_state.agent_pos[:, 0] == (0, 0)).all(1) == c_in).all()


# ---- prey movement -------------------------------------------------------------------------------


def _prey_cells(out_state, k=0):
    return [tuple(p) for p in out_state.prey_pos[:, k]]


def test_prey_walk_uniformly_to_free_neighbours():
    state = SMALL.state_from(agents=[(0, 0), (4, 4), (4, 0)], stags=[(2, 2)])
    out_state, _ = step_seeds(SMALL, state, [S, S, S], n=400)
    counts = {c: _prey_cells(out_state).count(c) for c in [(2, 3), (3, 2), (2, 1), (1, 2)]}
    assert sum(counts.values()) == 400, "a prey with free neighbours always moves"
    assert all(60 <= n <= 140 for n in counts.values()), counts


def test_prey_never_step_onto_agents_prey_or_walls():
    # corner stag boxed in by two agents: it stays
    state = SMALL.state_from(agents=[(0, 1), (1, 0), (4, 4)], stags=[(0, 0)])
    assert set(_prey_cells(step_seeds(SMALL, state, [S, S, S])[0])) == {(0, 0)}
    # stag on the top edge with agents left and below: the only free cell is to the right
    state = SMALL.state_from(agents=[(0, 1), (1, 2), (4, 4)], stags=[(0, 2)])
    assert set(_prey_cells(step_seeds(SMALL, state, [S, S, S])[0])) == {(0, 3)}
    # two stags share their only free neighbour (0,1): one takes it, the other stays
    state = SMALL.state_from(agents=[(1, 0), (1, 1), (1, 2)], stags=[(0, 0), (0, 2)])
    out_state, _ = step_seeds(SMALL, state, [S, S, S])
    first, second = _prey_cells(out_state, 0), _prey_cells(out_state, 1)
    assert all(a != b for a, b in zip(first, second))
    assert set(first) == {(0, 0), (0, 1)} and set(second) <= {(0, 1), (0, 3)}
    # a frozen agent is off the board: the stag may step onto its cell
    state = SMALL.state_from(agents=[(0, 1), (1, 0), (4, 4)], stags=[(0, 0)], frozen=[True, False, False])
    assert set(_prey_cells(step_seeds(SMALL, state, [S, S, S])[0])) == {(0, 1)}


# ---- observations, state, time limit -------------------------------------------------------------


def test_observation_window_at_the_grid_edge():
    state = SMALL.state_from(agents=[(0, 0), (2, 1), (3, 0)], stags=[(1, 2), (4, 4)])
    ts = _observe(SMALL, state)
    assert ts.obs.shape == (3, 75) and ts.obs.dtype == jnp.float32
    a = np.zeros((5, 5, 3))  # A at (0,0): window rows/cols -2..2, the first two outside the grid
    a[2, 2, 0] = 1  # self
    a[4, 3, 0] = 1  # B at (2,1)
    a[3, 4, 1] = 1  # stag at (1,2); C at (3,0) and the stag at (4,4) are out of sight
    np.testing.assert_array_equal(window(SMALL, ts.obs[0]), a)
    b = np.zeros((5, 5, 3))  # B at (2,1): window rows 0..4, cols -1..3
    b[2, 2, 0] = b[0, 1, 0] = b[3, 1, 0] = 1  # self, A, C
    b[1, 3, 1] = 1  # stag (1,2)
    np.testing.assert_array_equal(window(SMALL, ts.obs[1]), b)
    # the flat layout is [row, col, channel]
    assert ts.obs[0, (2 * 5 + 2) * 3 + 0] == 1 and ts.obs[0, (3 * 5 + 4) * 3 + 1] == 1


def test_hares_are_observed_in_the_third_channel():
    state = WITH_HARE.state_from(agents=[(2, 2), (4, 4), (0, 4)], stags=[(0, 0)], hares=[(1, 2)])
    w = window(WITH_HARE, _observe(WITH_HARE, state).obs[0])
    assert w[1, 2, 2] == 1 and w[..., 2].sum() == 1 and w[0, 0, 1] == 1


def test_global_state_is_the_whole_grid():
    state = WITH_HARE.state_from(agents=[(2, 2), (4, 4), (0, 4)], stags=[(0, 0)], hares=[(1, 2)],
                                 frozen=[False, False, True])
    g = grid(WITH_HARE, _observe(WITH_HARE, state).global_state)
    expected = np.zeros((5, 5, 3))
    expected[2, 2, 0] = expected[4, 4, 0] = 1  # the frozen agent at (0,4) is not there
    expected[0, 0, 1] = 1
    expected[1, 2, 2] = 1
    np.testing.assert_array_equal(g, expected)


def test_truncation_at_the_time_limit():
    key = jax.random.PRNGKey(5)
    state = SMALL.state_from(agents=[(0, 0), (0, 4), (4, 0)], stags=[(2, 2), (4, 4)])

    def body(s, k):
        s, ts = SMALL.step(k, s, jnp.full((3,), STAY, jnp.int32))
        return s, (ts.terminated, ts.truncated, s.time)

    _, (terminated, truncated, time) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(key, 200)))(state)
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(truncated)), [199])  # the 200th step
    np.testing.assert_array_equal(time, np.arange(1, 201))


def test_render():
    state = SMALL.state_from(agents=[(0, 0), (2, 1), (3, 0)], stags=[(1, 2)], frozen=[False, False, True])
    img = SMALL.render(state, cell_px=10)
    assert img.shape == (50, 50, 3) and img.dtype == np.uint8
    assert tuple(img[5, 5]) == (30, 90, 200) and tuple(img[15, 25]) == (150, 75, 0)  # agent, stag
    assert tuple(img[35, 5]) == (170, 170, 170)  # frozen agent


# ---- property fuzzing ----------------------------------------------------------------------------

FUZZ_ENVS = [
    coopmarl.make("predator-prey", grid_size=4, n_agents=4, n_stags=3, punishment=-2.0),
    coopmarl.make("predator-prey", grid_size=5, n_agents=5, n_stags=2, n_hares=2, punishment=-0.5, time_limit=25),
    coopmarl.make("predator-prey", grid_size=3, n_agents=3, n_stags=1, n_hares=1, punishment=-1.0),
    coopmarl.make("predator-prey:p-1.5"),  # the paper's 10x10, 8 agents, 8 stags
]
FUZZ_STEPS = 40


def _random_play(env, key, catch_bias):
    """FUZZ_STEPS steps of random available actions; catch is taken with probability catch_bias when available."""
    k_reset, k_run = jax.random.split(key)
    state, ts = env.reset(k_reset)

    def body(carry, k):
        state, ts = carry
        k_act, k_bias, k_env = jax.random.split(k, 3)
        uniform = jax.random.categorical(k_act, jnp.where(ts.avail_actions, 0.0, -jnp.inf)).astype(jnp.int32)
        catch = ts.avail_actions[:, CATCH] & (jax.random.uniform(k_bias, (env.n_agents,)) < catch_bias)
        actions = jnp.where(catch, CATCH, uniform)
        new_state, new_ts = env.step(k_env, state, actions)
        return (new_state, new_ts), (state, ts, actions)

    (last_state, last_ts), (states, tss, actions) = jax.lax.scan(body, (state, ts), jax.random.split(k_run, FUZZ_STEPS))
    cat = lambda xs, x: jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), xs, x)  # noqa: E731
    return cat(states, last_state), cat(tss, last_ts), actions


_random_play_jit = jax.jit(_random_play, static_argnums=0)


def _expected_avail(env, s):
    g = env.grid_size
    avail = np.zeros((env.n_agents, 6), bool)
    for i, (r, c) in enumerate(s.agent_pos):
        if s.frozen[i]:
            avail[i, STAY] = True
            continue
        for a in range(4):
            avail[i, a] = 0 <= r + DELTA[a, 0] < g and 0 <= c + DELTA[a, 1] < g
        avail[i, STAY] = True
        avail[i, CATCH] = any(abs(r - pr) + abs(c - pc) == 1 for (pr, pc), al in zip(s.prey_pos, s.prey_alive) if al)
    return avail


def _expected_grid(env, s):
    g = np.zeros((env.grid_size, env.grid_size, 3))
    for (r, c), fz in zip(s.agent_pos, s.frozen):
        if not fz:
            g[r, c, 0] += 1
    for k, ((r, c), al) in enumerate(zip(s.prey_pos, s.prey_alive)):
        if al:
            g[r, c, 1 if k < env.n_stags else 2] += 1
    return g


def _expected_obs(env, s):
    sight = env.sight
    padded = np.pad(_expected_grid(env, s), ((sight, sight), (sight, sight), (0, 0)))
    obs = [np.zeros((2 * sight + 1,) * 2 + (3,)) if fz else padded[r:r + 2 * sight + 1, c:c + 2 * sight + 1]
           for (r, c), fz in zip(s.agent_pos, s.frozen)]
    return np.stack(obs).reshape(env.n_agents, -1)


def _check_transition(env, s, a, s2, ts2):
    """Every rule a single transition s --a--> s2 must satisfy (independently of the random orders)."""
    g, p = env.grid_size, env.punishment
    is_stag = np.arange(env.n_prey) < env.n_stags
    need = np.where(is_stag, env.agents_to_catch_stag, env.agents_to_catch_hare)
    value = np.where(is_stag, env.stag_reward, env.hare_reward)
    # bookkeeping
    assert s2.time == s.time + 1
    assert not (s.frozen & ~s2.frozen).any() and not (~s.prey_alive & s2.prey_alive).any()
    # everyone on the grid; no two present entities share a cell
    assert ((s2.agent_pos >= 0) & (s2.agent_pos < g)).all() and ((s2.prey_pos >= 0) & (s2.prey_pos < g)).all()
    present = np.concatenate([s2.agent_pos[~s2.frozen], s2.prey_pos[s2.prey_alive]])
    assert len({tuple(x) for x in present}) == len(present), "two entities in one cell"
    # agents: frozen, stay and catch do not move; a move goes one cell in the chosen direction or is blocked
    moved = (s2.agent_pos != s.agent_pos).any(1)
    assert not (moved & (s.frozen | (a >= STAY))).any()
    np.testing.assert_array_equal(s2.agent_pos[moved], s.agent_pos[moved] + DELTA[a[moved]])
    # prey: a step of at most one cell; caught prey stay where they were caught
    assert (np.abs(s2.prey_pos - s.prey_pos).sum(1)[s2.prey_alive] <= 1).all()
    assert (s2.prey_pos == s.prey_pos)[~s2.prey_alive].all()
    # captures: catchers are non-frozen agents choosing catch, 4-adjacent to the prey
    dist = np.abs(s.agent_pos[:, None] - s.prey_pos[None]).sum(-1)  # [N, P]; catchers do not move
    catching = (a == CATCH) & ~s.frozen
    newly_frozen = s2.frozen & ~s.frozen
    newly_caught = s.prey_alive & ~s2.prey_alive
    assert (catching[newly_frozen]).all()
    assert ((dist[newly_frozen][:, newly_caught] == 1).any(1)).all(), "a frozen agent must have caught a prey"
    assert ((dist[newly_frozen][:, newly_caught] == 1).sum(0) >= need[newly_caught]).all()
    # reward = captures + p per prey with too few catchers
    reward = np.asarray(ts2.reward)
    assert np.isfinite(reward).all() and (reward == reward[0]).all()
    rest = reward[0] - value[newly_caught].sum()
    missed_max = (s.prey_alive & ~newly_caught & ((dist == 1) & catching[:, None]).any(0)).sum()
    missed_min = (s.prey_alive & ~newly_caught & ((dist == 1) & (catching & ~s2.frozen)[:, None]).any(0)).sum()
    if p == 0:
        assert abs(rest) < 1e-4
    else:
        k = rest / p
        assert abs(k - round(k)) < 1e-4 and missed_min <= round(k) <= missed_max, (rest, missed_min, missed_max)
    lo = p * s.prey_alive.sum() if p < 0 else 0.0
    hi = env.stag_reward * (catching.sum() // env.agents_to_catch_stag) + env.hare_reward * env.n_hares
    assert lo - 1e-4 <= reward[0] <= hi + 1e-4
    # what the agents see next
    np.testing.assert_array_equal(ts2.avail_actions, _expected_avail(env, s2))
    np.testing.assert_array_equal(ts2.obs, _expected_obs(env, s2))
    np.testing.assert_array_equal(ts2.global_state, _expected_grid(env, s2).reshape(-1))
    assert bool(ts2.terminated) == (not s2.prey_alive.any() or s2.frozen.all())
    assert bool(ts2.truncated) == (s2.time >= env.time_limit)
    assert ts2.info["prey_caught"] == (~s2.prey_alive).sum() and ts2.info["agents_frozen"] == s2.frozen.sum()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(FUZZ_ENVS) - 1), seed=st.integers(0, 2**31 - 1), catch_bias=st.floats(0.0, 1.0))
def test_random_legal_play_respects_every_rule(which, seed, catch_bias):
    env = FUZZ_ENVS[which]
    states, tss, actions = jax.device_get(_random_play_jit(env, jax.random.PRNGKey(seed), catch_bias))
    at = lambda tree, t: jax.tree.map(lambda x: x[t], tree)  # noqa: E731
    ts0 = at(tss, 0)
    assert ts0.obs.shape == (env.n_agents, env.spec.obs_dim) and ts0.global_state.shape == (env.spec.state_dim,)
    assert ts0.avail_actions.shape == (env.n_agents, 6) and ts0.reward.shape == (env.n_agents,)
    np.testing.assert_array_equal(ts0.avail_actions, _expected_avail(env, at(states, 0)))
    for t in range(FUZZ_STEPS):
        s, s2, ts2 = at(states, t), at(states, t + 1), at(tss, t + 1)
        assert np.take_along_axis(at(tss, t).avail_actions, actions[t][:, None], 1).all()
        _check_transition(env, s, np.asarray(actions[t]), s2, ts2)
        if ts2.terminated or ts2.truncated:
            break


def test_fuzzing_reaches_captures_miscaptures_and_terminations():
    """The property test above is only as good as the situations random play reaches."""
    env = FUZZ_ENVS[0]
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    states, tss, _ = jax.device_get(jax.jit(jax.vmap(lambda k: _random_play(env, k, 0.7)))(keys))
    rewards = tss.reward[:, 1:, 0]
    assert (rewards >= 10).any() and (rewards < 0).any()
    assert tss.terminated.any() and states.frozen.any()
    assert isinstance(states, PredatorPreyState) and isinstance(env, PredatorPrey)
