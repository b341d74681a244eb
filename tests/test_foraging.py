"""Level-Based Foraging: our JAX env against the `lbforaging` 2.0 package, plus rule and property tests.

- Differential test: lbforaging's state after its own reset is copied into ours; both then get the
  same actions (a mix of greedy food-seeking, random legal and random possibly-illegal actions) and
  must give identical observations, valid-action masks, rewards, dones, positions and food, step by
  step, for thousands of steps per task (coop, penalty, sight-limited and crowded variants).
- Spawn rules: reset is random in both packages (different generators), so they are checked as
  properties over many of our resets, plus a coarse comparison of spawn statistics with lbforaging's.
- Hand-built positions: loading with exact level sums, collisions, the chain-overlap quirk, penalties,
  invalid actions, sight windows — each checked against the numbers we expect and against lbforaging.
- Hypothesis fuzzing of random legal play: shapes, bounds, masks recomputed from the rules, done semantics.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coopmarl
from coopmarl.envs.core import AutoReset
from coopmarl.envs.foraging import EAST, LOAD, NONE, NORTH, SOUTH, WEST, Foraging, task_params

try:
    from lbforaging.foraging import environment as lbf_env
    from lbforaging.foraging.environment import ForagingEnv
except ImportError:  # the reference package (optional extra): only the tests that compare with it skip
    lbf_env = ForagingEnv = None
needs_lbforaging = pytest.mark.skipif(ForagingEnv is None, reason="needs the reference package lbforaging")

DELTAS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]])


# ---- bridging the two implementations ---------------------------------------------------------------


def make_reference(env: Foraging, seed: int = 0) -> "ForagingEnv":
    """lbforaging's env with the same rules as `env` (our effective sight: grid size = full)."""
    ref = ForagingEnv(
        players=env.n_agents, min_player_level=env.min_player_level, max_player_level=env.max_player_level,
        min_food_level=env.min_food_level, max_food_level=env.max_food_level,
        field_size=(env.grid_size, env.grid_size), max_num_food=env.n_foods, sight=env.sight,
        max_episode_steps=env.time_limit, force_coop=env.force_coop, penalty=env.penalty,
        normalize_reward=True, grid_observation=False,
    )
    ref.reset(seed=seed)
    return ref


def state_from_reference(env: Foraging, ref):
    rows, cols = np.nonzero(ref.field)
    return env.make_state(
        agent_pos=[p.position for p in ref.players], agent_level=[p.level for p in ref.players],
        food_pos=np.stack([rows, cols], -1), food_level=ref.field[rows, cols],
        step=ref.current_step, food_spawned=int(ref._food_spawned),
    )


def set_reference_state(ref, state):
    """Put lbforaging's env into our state (for hand-built positions)."""
    state = jax.device_get(state)
    ref.field = np.zeros_like(ref.field)
    for (r, c), lvl in zip(state.food_pos, state.food_level):
        if lvl > 0:
            ref.field[r, c] = lvl
    for p, (r, c), lvl in zip(ref.players, state.agent_pos, state.agent_level):
        p.position, p.level = (int(r), int(c)), int(lvl)
    ref._food_spawned = int(state.food_spawned)
    ref.current_step = int(state.step)
    ref._game_over = False
    ref._gen_valid_moves()


def reference_mask(ref) -> np.ndarray:
    return np.array([[lbf_env.Action(a) in ref._valid_actions[p] for a in range(6)] for p in ref.players])


def field_of(env: Foraging, state) -> np.ndarray:
    field = np.zeros((env.grid_size, env.grid_size), np.int64)
    for (r, c), lvl in zip(np.asarray(state.food_pos), np.asarray(state.food_level)):
        if lvl > 0:
            field[r, c] = lvl
    return field


def reference_step(ref, actions):
    obs, rewards, done, _, _ = ref.step([int(a) for a in actions])
    return np.stack(obs), np.asarray(rewards, np.float64), bool(done)


# ---- the differential test ------------------------------------------------------------------------------


def mixed_policy(rng, ref) -> np.ndarray:
    """Per agent: 15% any action (often illegal), 25% a random legal one, else greedy toward the nearest
    food (load when adjacent). Greedy agents crowd the food: loads, failed loads and collisions."""
    foods = np.argwhere(ref.field > 0)
    actions = []
    for p in ref.players:
        valid = [a.value for a in ref._valid_actions[p]]
        u = rng.random()
        if u < 0.15 or len(foods) == 0:
            actions.append(int(rng.integers(6)))
        elif u < 0.40:
            actions.append(int(rng.choice(valid)))
        elif LOAD in valid:
            actions.append(LOAD)
        else:
            pos = np.asarray(p.position)
            target = foods[np.argmin(np.abs(foods - pos).sum(-1))]
            closer = [a for a in (NORTH, SOUTH, WEST, EAST)
                      if np.abs(target - pos - DELTAS[a]).sum() < np.abs(target - pos).sum()]
            good = [a for a in closer if a in valid]
            actions.append(int(rng.choice(good or closer)))
    return np.asarray(actions, np.int32)


def _episode_runner(env: Foraging):
    """jitted: (our start state, actions [T, N]) -> per-step outputs of our env for T = time_limit steps."""

    def run(state, actions):
        def body(s, a):
            s, ts = env.step(jax.random.PRNGKey(0), s, a)
            return s, (ts.obs, ts.info["agent_reward"], ts.reward, ts.terminated, ts.truncated, ts.avail_actions,
                       s.agent_pos, s.food_pos, s.food_level)

        return jax.lax.scan(body, state, actions)[1]

    return jax.jit(run)


def differential_run(env: Foraging, n_steps: int, seed: int) -> dict:
    """Play lbforaging for >= n_steps steps (whole episodes) and replay every episode in our env from
    the synchronised start. Returns counts of mismatches and of the situations covered."""
    ref = make_reference(env, seed)
    rng = np.random.default_rng(seed)
    run = _episode_runner(env)
    stats = dict(steps=0, episodes=0, mismatched_steps=0, first_mismatch=None, loads=0, failed_loads=0,
                 collisions=0, overlaps=0, illegal=0, hidden=0, terminated=0, truncated=0)

    def mismatch(what, t):
        stats["mismatched_steps"] += 1
        if stats["first_mismatch"] is None:
            stats["first_mismatch"] = f"episode {stats['episodes']}, step {t}: {what}"

    while stats["steps"] < n_steps:
        if stats["episodes"] > 0:
            ref.reset()
        state = state_from_reference(env, ref)
        ts0 = env.timestep(state)
        first_obs = np.stack(ref._make_gym_obs())
        if not np.array_equal(np.asarray(ts0.obs), first_obs) or not np.array_equal(
                np.asarray(ts0.avail_actions), reference_mask(ref)):
            mismatch("reset observation / mask", 0)
        actions, records = [], []
        done = False
        while not done:
            mask = reference_mask(ref)
            a = mixed_policy(rng, ref)
            pos = np.array([p.position for p in ref.players])
            legal = mask[np.arange(len(a)), a]
            executed = np.where(legal, a, NONE)
            targets = pos + DELTAS[executed]
            stats["illegal"] += int((~legal).sum())
            stats["collisions"] += int(len({tuple(t) for t in targets}) < len(targets))
            obs, rewards, done = reference_step(ref, a)
            new_pos = np.array([p.position for p in ref.players])
            stats["overlaps"] += int(len({tuple(q) for q in new_pos}) < len(new_pos))
            stats["loads"] += int((rewards > 0).sum())
            stats["failed_loads"] += int((rewards < 0).sum())
            stats["hidden"] += int((obs[:, 3 * env.n_foods:] == -1).any())
            actions.append(a)
            records.append((obs, rewards, done, reference_mask(ref), new_pos, ref.field.copy()))
        length = len(actions)
        padded = np.zeros((env.time_limit, env.n_agents), np.int32)
        padded[:length] = actions
        out = jax.device_get(run(state, jnp.asarray(padded)))
        for t, (obs, rewards, done, mask, new_pos, field) in enumerate(records):
            o_obs, o_rew, o_team, o_term, o_trunc, o_mask, o_pos, o_fpos, o_flvl = (x[t] for x in out)
            team = np.full_like(o_rew, o_rew.sum()) if env.common_reward else o_rew
            if not np.array_equal(o_obs, obs):
                mismatch(f"obs\nours {o_obs}\nref  {obs}", t + 1)
            elif not np.array_equal(o_rew, rewards.astype(np.float32)) or not np.array_equal(o_team, team):
                mismatch(f"reward ours {o_rew} (reward {o_team}) ref {rewards}", t + 1)
            elif bool(o_term or o_trunc) != done or bool(o_term) != (field.sum() == 0):
                mismatch(f"done ours term={o_term} trunc={o_trunc} ref {done}", t + 1)
            elif bool(o_trunc) != (t + 1 >= env.time_limit):
                mismatch("truncation", t + 1)
            elif not np.array_equal(o_mask, mask):
                mismatch(f"avail_actions ours {o_mask} ref {mask}", t + 1)
            elif not np.array_equal(o_pos, new_pos):
                mismatch(f"positions ours {o_pos} ref {new_pos}", t + 1)
            elif not np.array_equal(field_of(env, type(state)(o_pos, state.agent_level, o_fpos, o_flvl,
                                                                state.food_spawned, state.step)), field):
                mismatch("food", t + 1)
        stats["terminated"] += int(out[3][length - 1])
        stats["truncated"] += int(out[4][length - 1])
        stats["steps"] += length
        stats["episodes"] += 1
    return stats


DIFF_CASES = {
    "lbf:5x5-2p-1f-coop": {},
    "lbf:8x8-2p-2f-coop": {},
    "lbf:2s-8x8-2p-2f-coop": {},
    "lbf:10x10-3p-5f": {},
    "lbf:10x10-3p-1f-pen": dict(common_reward=False),
    "lbf:12x12-6p-1f-pen": {},
    "lbf:2s-10x10-3p-3f": {},
    # crowded, sight 1, large penalty, higher agent levels, explicit food levels, short time limit
    "foraging": dict(grid_size=6, n_agents=5, n_foods=2, max_player_level=3, sight=1, penalty=0.5,
                     min_food_level=2, max_food_level=5, time_limit=30, common_reward=False),
}
DIFF_STEPS = int(os.environ.get("LBF_DIFF_STEPS", "1500"))
_TOTALS: dict[str, int] = {}


@needs_lbforaging
@pytest.mark.parametrize("name", list(DIFF_CASES))
def test_matches_lbforaging_step_for_step(name):
    env = coopmarl.make(name, **DIFF_CASES[name])
    stats = differential_run(env, DIFF_STEPS, seed=sum(map(ord, name)))
    for k in ("steps", "loads", "failed_loads", "collisions", "overlaps", "illegal", "hidden", "terminated",
              "mismatched_steps"):
        _TOTALS[k] = _TOTALS.get(k, 0) + stats[k]
    print(f"\n{name}: {stats}")
    assert stats["mismatched_steps"] == 0, stats["first_mismatch"]
    assert stats["illegal"] > 0 and stats["collisions"] > 0 and stats["loads"] > 0
    if env.penalty > 0:
        assert stats["failed_loads"] > 0
    if not env.full_sight:
        assert stats["hidden"] > 0


def test_differential_coverage():
    """Across the tasks above, every rule was exercised (runs after them; skipped when run alone)."""
    if _TOTALS.get("steps", 0) < len(DIFF_CASES) * DIFF_STEPS:
        pytest.skip("run with the differential tests")
    print(f"\nLBF differential totals: {_TOTALS}")
    for k in ("loads", "failed_loads", "collisions", "overlaps", "illegal", "hidden", "terminated"):
        assert _TOTALS[k] > 0, k
    assert _TOTALS["mismatched_steps"] == 0


@needs_lbforaging
@pytest.mark.slow
@pytest.mark.parametrize("name", list(DIFF_CASES))
def test_matches_lbforaging_long(name):
    env = coopmarl.make(name, **DIFF_CASES[name])
    stats = differential_run(env, 20_000, seed=1 + sum(map(ord, name)))
    print(f"\n{name}: {stats}")
    assert stats["mismatched_steps"] == 0, stats["first_mismatch"]


# ---- spawn rules (reset is random in both packages: properties, and coarse statistics) -----------------


def _resets(env, n, seed=0):
    states, ts = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(seed), n))
    return jax.device_get(states), jax.device_get(ts)


@pytest.mark.parametrize("name,params", [
    ("lbf:5x5-2p-1f-coop", {}), ("lbf:10x10-3p-5f", {}), ("lbf:12x12-6p-1f-pen", {}), ("lbf:15x15-4p-5f", {}),
    ("foraging", dict(grid_size=7, n_agents=4, n_foods=4, min_player_level=2, max_player_level=4,
                      min_food_level=3)),
    ("foraging", dict(grid_size=9, n_agents=3, n_foods=3, max_food_level=4, min_food_level=2, force_coop=True)),
])
def test_spawn_rules(name, params):
    env = coopmarl.make(name, **params)
    g = env.grid_size
    states, ts = _resets(env, 2000)
    pos, lvl = states.agent_pos, states.agent_level
    fpos, flvl = states.food_pos, states.food_level
    alive = flvl > 0
    assert ((lvl >= env.min_player_level) & (lvl <= env.max_player_level)).all()
    assert set(np.unique(lvl)) == set(range(env.min_player_level, env.max_player_level + 1))
    assert ((pos >= 0) & (pos < g)).all()
    cells = pos[..., 0] * g + pos[..., 1]
    assert all(len(set(c)) == env.n_agents for c in cells), "two agents spawned on one cell"
    # food: off the border, not on an agent, no other food in its 3x3 box or 2 cells away in line
    assert ((fpos[alive] >= 1) & (fpos[alive] <= g - 2)).all()
    on_agent = (fpos[:, None, :, :] == pos[:, :, None, :]).all(-1) & alive[:, None, :]
    assert not on_agent.any()
    for i in range(env.n_foods):
        for j in range(i + 1, env.n_foods):
            both = alive[:, i] & alive[:, j]
            d = np.abs(fpos[:, i] - fpos[:, j])
            too_close = (d.max(-1) <= 1) | ((d.min(-1) == 0) & (d.max(-1) <= 2))
            assert not (both & too_close).any()
    # levels: cap = max_food_level or the sum of the three lowest agent levels; coop: every food at the cap
    cap = (np.sort(lvl, -1)[:, :3].sum(-1) if env.max_food_level is None
           else np.full(len(lvl), env.max_food_level))[:, None]
    if env.force_coop:
        assert (flvl[alive] == np.broadcast_to(cap, flvl.shape)[alive]).all()
    else:
        assert ((flvl[alive] >= env.min_food_level) & (flvl <= cap)[alive]).all()
        assert len(np.unique(flvl[alive])) > 1
    np.testing.assert_array_equal(states.food_spawned, flvl.sum(-1))
    assert (states.step == 0).all()
    if g >= 10:  # room for every food
        assert alive.all()
    assert not ts.terminated.any() and not ts.truncated.any()


def _tv(a, b, bins):
    pa = np.bincount(a, minlength=bins) / len(a)
    pb = np.bincount(b, minlength=bins) / len(b)
    return 0.5 * np.abs(pa - pb).sum()


@needs_lbforaging
@pytest.mark.parametrize("name", ["lbf:8x8-2p-2f-coop", "lbf:10x10-3p-3f"])
def test_spawn_statistics_match_lbforaging(name):
    """Same spawn distribution up to sampling noise: food cells, food levels, agent cells, agent levels."""
    env = coopmarl.make(name)
    g, n = env.grid_size, 3000
    ref = make_reference(env, seed=5)
    ref_food_cells, ref_food_lvls, ref_agent_cells, ref_agent_lvls = [], [], [], []
    for _ in range(n):
        ref.reset()
        rows, cols = np.nonzero(ref.field)
        ref_food_cells += list(rows * g + cols)
        ref_food_lvls += list(ref.field[rows, cols])
        ref_agent_cells += [p.position[0] * g + p.position[1] for p in ref.players]
        ref_agent_lvls += [p.level for p in ref.players]
    states, _ = _resets(env, n, seed=5)
    alive = states.food_level > 0
    ours_food_cells = (states.food_pos[..., 0] * g + states.food_pos[..., 1])[alive]
    assert _tv(ours_food_cells, np.array(ref_food_cells), g * g) < 0.06
    assert _tv(states.food_level[alive], np.array(ref_food_lvls), 10) < 0.03
    assert _tv((states.agent_pos[..., 0] * g + states.agent_pos[..., 1]).ravel(), np.array(ref_agent_cells),
               g * g) < 0.08
    assert _tv(states.agent_level.ravel(), np.array(ref_agent_lvls), 10) < 0.03
    assert abs(alive.sum() / n - len(ref_food_lvls) / n) < 0.02


# ---- hand-built positions ------------------------------------------------------------------------------


def _check_with_reference(env, state, actions):
    """One step in both packages from `state`; asserts they agree and returns our (state, ts)."""
    new_state, ts = env.step(jax.random.PRNGKey(0), state, jnp.asarray(actions, jnp.int32))
    ref = make_reference(env)
    set_reference_state(ref, state)
    np.testing.assert_array_equal(env.timestep(state).obs, np.stack(ref._make_gym_obs()))
    np.testing.assert_array_equal(env.avail_actions(state), reference_mask(ref))
    obs, rewards, done = reference_step(ref, actions)
    np.testing.assert_array_equal(ts.obs, obs)
    np.testing.assert_array_equal(ts.info["agent_reward"], rewards.astype(np.float32))
    np.testing.assert_array_equal(ts.reward, ts.info["agent_reward"])  # per agent (common_reward=False)
    assert bool(ts.done) == done
    np.testing.assert_array_equal(new_state.agent_pos, [p.position for p in ref.players])
    np.testing.assert_array_equal(field_of(env, new_state), ref.field)
    return new_state, ts


def _env(**kw):
    base = dict(grid_size=6, n_agents=2, n_foods=2, time_limit=50, common_reward=False)
    return coopmarl.make("foraging", **{**base, **kw})


@needs_lbforaging
def test_loading_with_exact_level_sum():
    env = _env()
    # food of level 3 at (2, 2); agents of levels 1 and 2 west and east of it; a second food (level 1) far away
    state = env.make_state([[2, 1], [2, 3]], [1, 2], [[2, 2], [4, 4]], [3, 1])
    assert state.food_spawned == 4
    new, ts = _check_with_reference(env, state, [LOAD, LOAD])
    # each loader gets level * food_level / (sum of loader levels * total food spawned)
    np.testing.assert_allclose(ts.reward, [1 * 3 / (3 * 4), 2 * 3 / (3 * 4)], rtol=1e-6)
    np.testing.assert_array_equal(new.food_level, [0, 1])
    assert not bool(ts.terminated)
    # one loader short of the level: nothing happens (no penalty by default)
    _, ts = _check_with_reference(env, state, [NONE, LOAD])
    np.testing.assert_array_equal(ts.reward, [0.0, 0.0])
    # the last food collected: terminated, and the normaliser stays the total spawned at reset
    state = env.make_state([[4, 3], [0, 0]], [1, 2], [[2, 2], [4, 4]], [0, 1], food_spawned=4)
    new, ts = _check_with_reference(env, state, [LOAD, NONE])
    np.testing.assert_allclose(ts.reward, [1 / 4, 0.0], rtol=1e-6)
    assert bool(ts.terminated) and not bool(ts.truncated)


@needs_lbforaging
def test_penalty_for_failed_load_only():
    env = _env(penalty=0.25)
    state = env.make_state([[2, 1], [0, 0]], [1, 1], [[2, 2], [4, 4]], [2, 1])
    _, ts = _check_with_reference(env, state, [LOAD, LOAD])  # agent 1's LOAD is invalid: no-op, no penalty
    np.testing.assert_allclose(ts.reward, [-0.25, 0.0])
    _, ts = _check_with_reference(env, state, [LOAD, NONE])
    np.testing.assert_allclose(ts.reward, [-0.25, 0.0])
    # penalty is not normalised and successful loaders are not penalised
    state = env.make_state([[2, 1], [3, 4]], [2, 1], [[2, 2], [4, 4]], [2, 1])
    _, ts = _check_with_reference(env, state, [LOAD, LOAD])
    np.testing.assert_allclose(ts.reward, [2 * 2 / (2 * 3), 1 * 1 / (1 * 3)], rtol=1e-6)


@needs_lbforaging
def test_collisions():
    env = _env(n_agents=3, n_foods=1)
    food = ([[4, 4]], [1])
    # two agents moving into one cell both stay; the third is unaffected
    state = env.make_state([[1, 0], [1, 2], [3, 0]], [1, 1, 1], *food)
    new, _ = _check_with_reference(env, state, [EAST, WEST, SOUTH])
    np.testing.assert_array_equal(new.agent_pos, [[1, 0], [1, 2], [4, 0]])
    # moving into the cell of an agent that stays (or loads) fails
    new, _ = _check_with_reference(env, state.replace(agent_pos=jnp.array([[1, 0], [1, 1], [3, 0]])),
                                   [EAST, NONE, NONE])
    np.testing.assert_array_equal(new.agent_pos, [[1, 0], [1, 1], [3, 0]])
    # swapping cells is allowed
    new, _ = _check_with_reference(env, state.replace(agent_pos=jnp.array([[1, 0], [1, 1], [3, 0]])),
                                   [EAST, WEST, NONE])
    np.testing.assert_array_equal(new.agent_pos, [[1, 1], [1, 0], [3, 0]])
    # following an agent that moves away is allowed
    new, _ = _check_with_reference(env, state.replace(agent_pos=jnp.array([[1, 0], [1, 1], [3, 0]])),
                                   [EAST, EAST, NONE])
    np.testing.assert_array_equal(new.agent_pos, [[1, 1], [1, 2], [3, 0]])


@needs_lbforaging
def test_chain_collision_overlap_quirk():
    """lbforaging: A moves onto B's cell while B's own move is blocked by C -> A and B share a cell."""
    env = _env(n_agents=3, n_foods=1)
    state = env.make_state([[1, 0], [1, 1], [1, 3]], [1, 1, 1], [[4, 4]], [1])
    new, _ = _check_with_reference(env, state, [EAST, EAST, WEST])
    np.testing.assert_array_equal(new.agent_pos, [[1, 1], [1, 1], [1, 3]])
    # from a shared cell, both moving away in different directions works; both staying is fine
    new2, _ = _check_with_reference(env, new, [NORTH, SOUTH, NONE])
    np.testing.assert_array_equal(new2.agent_pos, [[0, 1], [2, 1], [1, 3]])
    new2, _ = _check_with_reference(env, new, [NONE, NONE, NONE])
    np.testing.assert_array_equal(new2.agent_pos, new.agent_pos)


@needs_lbforaging
def test_invalid_actions_are_noops():
    env = _env(n_agents=2, n_foods=1)
    state = env.make_state([[0, 0], [2, 1]], [1, 1], [[2, 2]], [2])
    ts0 = env.timestep(state)
    np.testing.assert_array_equal(ts0.avail_actions, [[1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 0, 1]])
    # off the grid (N, W at the corner) and into food (E of agent 1): nothing moves, no reward
    for a in ([NORTH, EAST], [WEST, NONE], [LOAD, EAST]):
        new, ts = _check_with_reference(env, state, a)
        np.testing.assert_array_equal(new.agent_pos, state.agent_pos)
        np.testing.assert_array_equal(ts.reward, [0.0, 0.0])
    # out-of-range action ids are no-ops as well (lbforaging would raise)
    new, _ = env.step(jax.random.PRNGKey(0), state, jnp.array([7, -1]))
    np.testing.assert_array_equal(new.agent_pos, state.agent_pos)


def test_coop_food_levels():
    env = coopmarl.make("lbf:10x10-3p-5f")
    coop = coopmarl.make("foraging", grid_size=10, n_agents=3, n_foods=5, force_coop=True)
    states, _ = _resets(coop, 500, seed=3)
    cap = np.sort(states.agent_level, -1)[:, :3].sum(-1)
    np.testing.assert_array_equal(states.food_level, np.broadcast_to(cap[:, None], states.food_level.shape))
    # coop: no single agent (level <= 2 < cap >= 3) can load alone
    assert (states.food_level >= 3).all()
    assert not env.force_coop and coopmarl.make("lbf:8x8-2p-2f-coop").force_coop


@needs_lbforaging
def test_sight_window():
    """sight 1 at the top-left border: coordinates relative to the clipped window; agents in [0, 2s]."""
    env = _env(n_agents=3, n_foods=2, sight=1)
    # agent 0 at (0, 0): food window rows/cols 0..1, but agents are seen up to row/col 2 (lbforaging's rule)
    state = env.make_state([[0, 0], [2, 2], [3, 3]], [1, 2, 1], [[1, 1], [4, 1]], [2, 3])
    obs = np.asarray(env.timestep(state).obs)
    np.testing.assert_array_equal(obs[0], [1, 1, 2, -1, -1, 0, 0, 0, 1, 2, 2, 2, -1, -1, 0])
    # agent 1 at (2, 2): corner (1, 1); it sees the food at (1, 1) -> (0, 0), agent 0 at (0, 0) is outside
    np.testing.assert_array_equal(obs[1], [0, 0, 2, -1, -1, 0, 1, 1, 2, 2, 2, 1, -1, -1, 0])
    _check_with_reference(env, state, [SOUTH, NONE, WEST])


def test_full_sight_food_order_is_row_major():
    env = _env(n_agents=2, n_foods=3)
    state = env.make_state([[0, 0], [5, 5]], [1, 2], [[4, 1], [1, 4], [1, 1]], [1, 2, 3])
    obs = np.asarray(env.timestep(state).obs)
    np.testing.assert_array_equal(obs[1], [1, 1, 3, 1, 4, 2, 4, 1, 1, 5, 5, 2, 0, 0, 1])
    gs = np.asarray(env.timestep(state).global_state)  # slot order, absolute positions
    np.testing.assert_array_equal(gs[:-1], [4, 1, 1, 1, 4, 2, 1, 1, 3, 0, 0, 1, 5, 5, 2])


def test_time_limit_is_truncation():
    env = _env(time_limit=3)
    state = env.make_state([[0, 0], [5, 5]], [1, 1], [[2, 2]], [1])
    for t in range(3):
        state, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([NONE, NONE]))
        assert bool(ts.truncated) == (t == 2) and not bool(ts.terminated)
    # collecting the last food on the last step: both flags
    state = env.make_state([[2, 1], [5, 5]], [1, 1], [[2, 2]], [1], step=2)
    _, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([LOAD, NONE]))
    assert bool(ts.terminated) and bool(ts.truncated)


def test_common_reward_sums_agents():
    """Default: the team reward (sum of lbforaging's per-agent rewards) for every agent; per agent in info."""
    assert coopmarl.make("lbf:8x8-2p-2f-coop").common_reward and coopmarl.make("foraging").common_reward
    env = _env(common_reward=True, penalty=0.1, n_agents=3)
    state = env.make_state([[2, 1], [2, 3], [3, 4]], [1, 2, 1], [[2, 2], [4, 4]], [3, 2])
    _, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([LOAD, LOAD, LOAD]))
    np.testing.assert_allclose(ts.info["agent_reward"], [0.2, 0.4, -0.1], rtol=1e-6)
    np.testing.assert_allclose(ts.reward, [0.5, 0.5, 0.5], rtol=1e-6)


def test_task_ids_and_penalty_parameter():
    assert task_params("2s-8x8-2p-2f-coop") == dict(grid_size=8, n_agents=2, n_foods=2, force_coop=True, sight=2,
                                                    penalty=0.0)
    assert coopmarl.make("lbf:12x12-6p-1f-pen").penalty == 0.1
    assert coopmarl.make("lbf:12x12-6p-1f-pen", penalty=0.5).penalty == 0.5
    assert coopmarl.make("lbf:10x10-3p-5f").spec.obs_dim == 3 * (5 + 3)
    entry = coopmarl.envs.env_entry("lbf:10x10-3p-1f-pen")
    assert "0.1" in entry.description and "not state" in entry.description
    with pytest.raises(ValueError, match="LBF task id"):
        task_params("8x9-2p-1f")


def test_render():
    env = coopmarl.make("lbf:8x8-2p-2f-coop")
    state, _ = env.reset(jax.random.PRNGKey(0))
    img = env.render(state)
    assert img.dtype == np.uint8 and img.shape == (8 * 32 + 1, 8 * 32 + 1, 3)
    r, c = np.asarray(state.agent_pos[0])
    assert not (img[r * 32 + 16, c * 32 + 16] == 255).all()  # the agent's cell is coloured


# ---- hypothesis: random legal play ----------------------------------------------------------------------

FUZZ_ENVS = {
    "lbf:5x5-2p-1f-coop": {},
    "lbf:2s-8x8-2p-2f-coop": {},
    "lbf:12x12-6p-1f-pen": {},
    "foraging": dict(grid_size=5, n_agents=6, n_foods=2, sight=1, max_player_level=3, penalty=0.3, time_limit=25),
}
_FUZZ = {name: coopmarl.make(name, **kw) for name, kw in FUZZ_ENVS.items()}


def _rule_mask(env, state) -> np.ndarray:
    g = env.grid_size
    pos = np.asarray(state.agent_pos)
    food = {tuple(p) for p, lv in zip(np.asarray(state.food_pos), np.asarray(state.food_level)) if lv > 0}
    mask = np.zeros((env.n_agents, 6), bool)
    for i, p in enumerate(pos):
        mask[i, NONE] = True
        for a in (NORTH, SOUTH, WEST, EAST):
            q = p + DELTAS[a]
            mask[i, a] = (0 <= q).all() and (q < g).all() and tuple(q) not in food
        mask[i, LOAD] = any(tuple(p + d) in food for d in DELTAS[1:5])
    return mask


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(FUZZ_ENVS)), seed=st.integers(0, 2**31 - 1),
       choices=st.lists(st.lists(st.integers(0, 5), min_size=6, max_size=6), min_size=1, max_size=60))
def test_random_legal_play_properties(name, seed, choices):
    env = _FUZZ[name]
    n, g = env.n_agents, env.grid_size
    state, ts = env.reset(jax.random.PRNGKey(seed))
    positive_return = 0.0
    for t, choice in enumerate(choices):
        mask = np.asarray(ts.avail_actions)
        np.testing.assert_array_equal(mask, _rule_mask(env, state))
        legal = [np.flatnonzero(m) for m in mask]
        actions = np.array([lg[choice[i % 6] % len(lg)] for i, lg in enumerate(legal)], np.int32)
        prev = jax.device_get(state)
        state, ts = env.step(jax.random.PRNGKey(t), state, jnp.asarray(actions))
        s = jax.device_get(state)
        # shapes, dtypes, bounds
        assert ts.obs.shape == (n, env.spec.obs_dim) and ts.obs.dtype == jnp.float32
        assert ts.global_state.shape == (env.spec.state_dim,) and ts.reward.shape == (n,)
        reward = np.asarray(ts.info["agent_reward"])
        assert np.isfinite(reward).all() and (reward <= 1.0).all() and (reward >= -env.penalty - 1e-7).all()
        np.testing.assert_allclose(np.asarray(ts.reward), np.full(n, reward.sum()), rtol=1e-6)  # team reward
        positive_return += reward[reward > 0].sum()
        # positions: inside the grid, never on food; a shared cell only from lbforaging's chain quirk
        assert ((s.agent_pos >= 0) & (s.agent_pos < g)).all()
        assert ((np.abs(s.agent_pos - prev.agent_pos).sum(-1)) <= 1).all()
        alive = s.food_level > 0
        assert not ((s.agent_pos[:, None] == s.food_pos[None]).all(-1) & alive[None]).any()
        for i in range(n):
            for j in range(i + 1, n):
                if (s.agent_pos[i] == s.agent_pos[j]).all() and not (prev.agent_pos[i] == prev.agent_pos[j]).all():
                    stayed = [k for k in (i, j) if (prev.agent_pos[k] == s.agent_pos[k]).all()]
                    assert stayed and all(actions[k] in (NORTH, SOUTH, WEST, EAST) for k in stayed)
        # food only disappears, and only with a positive reward
        assert (s.food_level <= prev.food_level).all()
        assert (s.food_level < prev.food_level).any() == (reward > 0).any()
        # each agent's own entry in its observation is itself
        own = np.asarray(ts.obs)[:, 3 * env.n_foods:3 * env.n_foods + 3]
        np.testing.assert_array_equal(own[:, 2], s.agent_level)
        if env.full_sight:
            np.testing.assert_array_equal(own[:, :2], s.agent_pos)
        # done semantics
        assert bool(ts.terminated) == (not alive.any())
        assert bool(ts.truncated) == (t + 1 >= env.time_limit)
        if bool(ts.terminated):  # the normalised rewards of all the food add up to 1
            np.testing.assert_allclose(positive_return, 1.0, rtol=1e-5)
        if ts.done:
            break
        assert mask.any(-1).all()


def test_jit_vmap_autoreset_rollout():
    env = coopmarl.make("lbf:8x8-2p-2f-coop")
    wrapped = AutoReset(env)

    def rollout(key):
        state, ts = wrapped.reset(key)

        def body(carry, k):
            state, ts = carry
            k_a, k_s = jax.random.split(k)
            actions = jax.random.categorical(k_a, jnp.where(ts.avail_actions, 0.0, -jnp.inf)).astype(jnp.int32)
            state, ts = wrapped.step(k_s, state, actions)
            return (state, ts), (ts.reward, ts.info["episode_done"])

        return jax.lax.scan(body, (state, ts), jax.random.split(key, 200))[1]

    rewards, done = jax.jit(jax.vmap(rollout))(jax.random.split(jax.random.PRNGKey(0), 16))
    rewards = np.asarray(rewards)
    assert rewards.shape == (16, 200, 2) and np.isfinite(rewards).all() and (rewards > 0).any()
    np.testing.assert_array_equal(rewards[..., 0], rewards[..., 1])  # the team reward, repeated
    assert np.asarray(done).sum() >= 16 * 3  # episodes of at most 50 steps
