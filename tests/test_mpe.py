"""The particle envs: `mpe:spread` step for step against mpe2's `simple_spread_v3`, the formation
rewards of `mpe:line` / `mpe:circle` against numpy + scipy's Hungarian solver, vision, collisions,
the matching solver, the contact forces against MPE's pair loop, AutoReset's observe-once path and the
inline Threefry draws (against jax.random, bit for bit), and random-action fuzzing.

Cross-check protocol: mpe2 (parallel API) resets with a seed; its agents' and landmarks' positions and
velocities are copied into our `ParticleState`; both then take the same actions. mpe2 computes in
float64 and MPE's contact force is stiff (an overlap error grows about 2x per step), so float32 and
float64 trajectories part after a few steps of contact. The long check therefore runs our env under
`jax.enable_x64` (same code, float64 arrays) and must agree to ~1e-12; the float32 check re-copies
mpe2's state before every step and compares one step.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import coopmarl
from coopmarl.envs.core import AutoReset
from coopmarl.envs.fast_random import split_key, uniform, uniform_concat
from coopmarl.envs.mpe import ParticleState, physics
from coopmarl.envs.mpe.matching import min_cost_assignment, min_total_cost, permutations

scipy_optimize = pytest.importorskip("scipy.optimize")

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def simple_spread_v3():
    """mpe2's simple spread (the `pettingzoo`/`mpe2` extra); only the cross-checks need it."""
    return pytest.importorskip("mpe2.simple_spread_v3")


# ---- helpers ------------------------------------------------------------------------------------------------


def _mpe2_state(penv):
    world = penv.unwrapped.world
    return (np.array([a.state.p_pos for a in world.agents]), np.array([lm.state.p_pos for lm in world.landmarks]),
            np.array([a.state.p_vel for a in world.agents]))


def _mpe2_stack(d, penv):
    return np.stack([np.asarray(d[a]) for a in penv.possible_agents])


def _random_actions(rng, n, continuous):
    if continuous:
        # include values outside [0, 1]: both sides clip them (mpe2: ClipOutOfBoundsWrapper)
        return rng.uniform(-0.2, 1.2, (n, 5)).astype(np.float32)
    return rng.integers(0, 5, n)


def _to_mpe2(actions, penv):
    return {a: actions[i] for i, a in enumerate(penv.possible_agents)}


# ---- mpe:spread vs mpe2 simple_spread_v3 ------------------------------------------------------------------------


@pytest.mark.parametrize("n_agents,continuous,local_ratio", [
    (3, False, 0.5), (5, False, 0.5), (3, True, 0.5), (5, True, 0.5), (4, False, 0.2)])
def test_spread_matches_mpe2_step_for_step_float64(simple_spread_v3, n_agents, continuous, local_ratio):
    steps, seeds = 200, (0, 1, 2)
    worst = dict(obs=0.0, reward=0.0, team=0.0, pos=0.0, vel=0.0)
    collisions = 0
    with jax.enable_x64(True):
        env = coopmarl.make("mpe:spread", n_agents=n_agents, max_steps=steps, continuous_actions=continuous,
                            local_ratio=local_ratio)
        step = jax.jit(env.step)
        for seed in seeds:
            penv = simple_spread_v3.parallel_env(N=n_agents, max_cycles=steps, continuous_actions=continuous,
                                                 local_ratio=local_ratio)
            obs, _ = penv.reset(seed=seed)
            state = ParticleState.create(*_mpe2_state(penv))
            assert state.pos.dtype == jnp.float64
            np.testing.assert_array_equal(np.asarray(env.observe(state)), _mpe2_stack(obs, penv))
            rng = np.random.default_rng(seed)
            for t in range(steps):
                actions = _random_actions(rng, n_agents, continuous)
                obs, rew, term, trunc, _ = penv.step(_to_mpe2(actions, penv))
                state, ts = step(KEY, state, jnp.asarray(actions))
                ref_rew = _mpe2_stack(rew, penv)
                pos, _, vel = _mpe2_state(penv)
                worst["obs"] = max(worst["obs"], np.abs(np.asarray(ts.obs) - _mpe2_stack(obs, penv)).max())
                worst["reward"] = max(worst["reward"], np.abs(np.asarray(ts.info["agent_reward"]) - ref_rew).max())
                worst["team"] = max(worst["team"], np.abs(np.asarray(ts.reward) - ref_rew.mean()).max())
                worst["pos"] = max(worst["pos"], np.abs(np.asarray(state.pos[:n_agents]) - pos).max())
                worst["vel"] = max(worst["vel"], np.abs(np.asarray(state.vel[:n_agents]) - vel).max())
                assert bool(ts.truncated) == all(trunc.values()) == (t == steps - 1)
                assert not bool(ts.terminated) and not any(term.values())
                collisions += int(ts.info["collisions"])
    # observations are float32 casts of the same float64 numbers; rewards are float32-rounded
    assert worst["obs"] <= 1e-6 and worst["reward"] <= 2e-6 and worst["team"] <= 2e-6, worst
    assert worst["pos"] <= 1e-9 and worst["vel"] <= 1e-9, worst
    assert collisions > 0, "the random play never collided: the contact forces went unchecked"


@pytest.mark.parametrize("n_agents,continuous", [(3, False), (5, False), (5, True)])
def test_spread_float32_steps_match_mpe2(simple_spread_v3, n_agents, continuous):
    """Our float32 env, started from mpe2's state before every step, matches mpe2's next step to 1e-5,
    over 12 default-length (25-step) episodes, truncation included."""
    env = coopmarl.make("mpe:spread", n_agents=n_agents, continuous_actions=continuous)
    step = jax.jit(env.step)
    penv = simple_spread_v3.parallel_env(N=n_agents, continuous_actions=continuous)
    rng = np.random.default_rng(n_agents)
    worst = 0.0
    for episode in range(12):
        penv.reset(seed=100 + episode)
        for t in range(25):
            agent_pos, landmark_pos, agent_vel = _mpe2_state(penv)
            state = ParticleState.create(agent_pos, landmark_pos, agent_vel, step=t)
            actions = _random_actions(rng, n_agents, continuous)
            obs, rew, _, trunc, _ = penv.step(_to_mpe2(actions, penv))
            state, ts = step(KEY, state, jnp.asarray(actions))
            pos, _, vel = _mpe2_state(penv)
            worst = max(worst, np.abs(np.asarray(ts.obs) - _mpe2_stack(obs, penv)).max(),
                        np.abs(np.asarray(ts.info["agent_reward"]) - _mpe2_stack(rew, penv)).max(),
                        np.abs(np.asarray(state.pos[:n_agents]) - pos).max(),
                        np.abs(np.asarray(state.vel[:n_agents]) - vel).max())
            assert bool(ts.truncated) == all(trunc.values()) == (t == 24)
    assert worst <= 1e-5, worst


def test_spread_spaces_match_mpe2(simple_spread_v3):
    for n in (1, 3, 5):
        env = coopmarl.make("mpe:spread", n_agents=n)
        penv = simple_spread_v3.parallel_env(N=n)
        assert env.spec.obs_dim == penv.observation_space("agent_0").shape[0]
        assert env.spec.n_actions == penv.action_space("agent_0").n == 5
        cont = coopmarl.make("mpe:spread", n_agents=n, continuous_actions=True)
        box = simple_spread_v3.parallel_env(N=n, continuous_actions=True).action_space("agent_0")
        assert (cont.spec.action_dim, cont.spec.low, cont.spec.high) == (box.shape[0], box.low[0], box.high[0])
    assert coopmarl.make("mpe:spread").spec.horizon == 25


def test_reset_distribution():
    keys = jax.random.split(KEY, 256)
    for name, lm_box in (("mpe:spread", 1.0), ("mpe:line", 1.0), ("mpe:circle", 0.25)):
        env = coopmarl.make(name)
        states, ts = jax.jit(jax.vmap(env.reset))(keys)
        n = env.n_agents
        agents, landmarks = np.asarray(states.pos[:, :n]), np.asarray(states.pos[:, n:])
        assert np.abs(agents).max() <= 1.0 and agents.std() > 0.4  # uniform in [-1, 1]^2
        assert np.abs(landmarks).max() <= lm_box
        assert (np.asarray(states.vel) == 0).all() and (np.asarray(states.step) == 0).all()
        assert (np.asarray(ts.reward) == 0).all()


# ---- formations: line and circle -------------------------------------------------------------------------------


def _numpy_slots(task, agents, landmarks):
    n = len(agents)
    if task == "line":
        start, end = landmarks
        return np.array([start + i / max(n - 1, 1) * (end - start) for i in range(n)])
    center = landmarks[0]
    rel = agents - center
    theta_min = min(math.atan2(y, x) % (2 * math.pi) for x, y in rel)
    return np.array([center + 0.5 * np.array([math.cos(theta_min + 2 * math.pi * i / n),
                                              math.sin(theta_min + 2 * math.pi * i / n)]) for i in range(n)])


def _numpy_reward(task, agents, landmarks, size=0.03, penalty=1.0):
    slots = _numpy_slots(task, agents, landmarks)
    cost = np.linalg.norm(agents[:, None] - slots[None], axis=-1)
    rows, cols = scipy_optimize.linear_sum_assignment(cost)
    n = len(agents)
    d = np.linalg.norm(agents[:, None] - agents[None], axis=-1)
    pairs = sum(d[i, j] < 2 * size for i in range(n) for j in range(i + 1, n))
    return -cost[rows, cols].mean() - penalty * pairs / n, pairs


@pytest.mark.parametrize("task", ["line", "circle"])
@pytest.mark.parametrize("n_agents", [2, 5, 7])
def test_formation_reward_matches_scipy_hungarian(task, n_agents):
    env = coopmarl.make(f"mpe:{task}", n_agents=n_agents)
    rng = np.random.default_rng(n_agents)
    reset = jax.jit(jax.vmap(env.reset))
    step = jax.jit(jax.vmap(env.step))
    states, _ = reset(jax.random.split(jax.random.PRNGKey(n_agents), 64))
    # crowd half the batch into a small box so that some agents overlap
    crowded = states.pos.at[:32, :n_agents].set(jnp.asarray(rng.uniform(-0.08, 0.08, (32, n_agents, 2)), jnp.float32))
    states = states.replace(pos=crowded)
    actions = jnp.asarray(rng.integers(0, 5, (64, n_agents)))
    states, ts = step(jax.random.split(KEY, 64), states, actions)
    total_pairs = 0
    for b in range(64):
        pos = np.asarray(states.pos[b], np.float64)
        expected, pairs = _numpy_reward(task, pos[:n_agents], pos[n_agents:])
        total_pairs += pairs
        np.testing.assert_allclose(float(ts.reward[b, 0]), expected, rtol=1e-5, atol=1e-5)
        assert int(ts.info["collisions"][b]) == pairs
    assert total_pairs > 0


def test_line_geometry_and_perfect_formation():
    env = coopmarl.make("mpe:line", n_agents=5)
    states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(KEY, 200))
    start, end = np.asarray(states.pos[:, 5]), np.asarray(states.pos[:, 6])
    np.testing.assert_allclose(np.linalg.norm(end - start, axis=-1), 1.25, atol=1e-5)
    assert np.abs(start).max() <= 0.25 and np.abs(end).max() < 1.0
    # agents exactly on the slots (in any order): distance 0, no collisions (spacing 0.3125 > 0.06)
    state = jax.tree.map(lambda x: x[0], states)
    slots = np.asarray(env.slots(state))
    np.testing.assert_allclose(np.diff(slots, axis=0), np.broadcast_to((end[0] - start[0]) / 4, (4, 2)), atol=1e-6)
    state = state.replace(pos=state.pos.at[:5].set(jnp.asarray(slots[::-1].copy())))
    score = env.score(state)
    assert abs(float(score.team)) < 1e-5 and int(score.collisions) == 0


def test_circle_slots_and_perfect_formation():
    env = coopmarl.make("mpe:circle", n_agents=5)
    center = np.array([0.1, -0.2])
    angles = 0.3 + 2 * np.pi * np.arange(5) / 5
    agents = center + 0.5 * np.stack([np.cos(angles), np.sin(angles)], -1)
    state = ParticleState.create(agents[[2, 0, 4, 1, 3]], center[None])
    slots = np.asarray(env.slots(state))
    np.testing.assert_allclose(np.linalg.norm(slots - center, axis=-1), 0.5, atol=1e-6)
    np.testing.assert_allclose(slots[0], agents[0], atol=1e-6)  # slot 0 at the smallest polar angle
    assert abs(float(env.score(state).team)) < 1e-5
    # shrinking the ring to radius 0.25 costs 0.25 per agent; agents 0.29 apart do not collide
    half = ParticleState.create(center + 0.5 * (agents - center), center[None])
    np.testing.assert_allclose(float(env.score(half).team), -0.25, atol=1e-5)


def test_min_cost_assignment_matches_scipy():
    rng = np.random.default_rng(0)
    assert permutations(3).shape == (6, 3)
    with pytest.raises(ValueError, match="n <= 8"):
        permutations(9)
    for n in (1, 3, 6, 8, 10):
        costs = rng.random((20, n, n)).astype(np.float32)
        costs[:5] = np.round(costs[:5] * 2)  # many ties
        methods = ("permutations", "hungarian") if n <= 8 else ("hungarian", "auto")
        for method in methods:
            cols, matched = jax.jit(jax.vmap(lambda c: min_cost_assignment(c, method)))(jnp.asarray(costs))
            for b in range(20):
                r, c = scipy_optimize.linear_sum_assignment(costs[b])
                assert sorted(np.asarray(cols[b]).tolist()) == list(range(n))
                np.testing.assert_allclose(float(matched[b].sum()), costs[b][r, c].sum(), atol=1e-5)
    with pytest.raises(ValueError, match="square"):
        min_cost_assignment(jnp.zeros((2, 3)))
    with jax.enable_x64(True):  # the Hungarian loop keeps int32 indices under x64 too
        cols, _ = jax.jit(lambda c: min_cost_assignment(c, "hungarian"))(jnp.asarray(rng.random((7, 7))))
        assert sorted(np.asarray(cols).tolist()) == list(range(7))


def test_min_total_cost_matches_scipy():
    """The formation rewards use only the minimal total (a matrix product over the permutations for
    n <= 6, the Hungarian algorithm above), in float32 and float64."""
    rng = np.random.default_rng(1)
    for x64 in (False, True):
        with jax.enable_x64(x64):
            for n, method in ((1, "auto"), (3, "auto"), (5, "auto"), (6, "permutations"), (7, "auto"),
                              (8, "hungarian")):
                costs = rng.random((16, n, n))
                costs[:4] = np.round(costs[:4] * 2)  # ties
                dtype = jnp.float64 if x64 else jnp.float32
                totals = jax.jit(jax.vmap(lambda c: min_total_cost(c, method)))(jnp.asarray(costs, dtype))
                assert totals.dtype == dtype
                for b in range(16):
                    r, c = scipy_optimize.linear_sum_assignment(costs[b])
                    np.testing.assert_allclose(float(totals[b]), costs[b][r, c].sum(), rtol=1e-12 if x64 else 1e-6)
    with pytest.raises(ValueError, match="unknown matching method"):
        min_total_cost(jnp.zeros((2, 2)), "greedy")


# ---- vision, collisions, physics ---------------------------------------------------------------------------------


def test_vision_masks_far_entities():
    env = coopmarl.make("mpe:line", n_agents=3)  # vision 1
    # agent 0 near landmark 0 and agent 1; agent 2 and landmark 1 farther than 1 from agent 0
    agents = np.array([[-0.9, 0.0], [-0.5, 0.0], [0.5, 0.0]])
    landmarks = np.array([[-0.8, 0.1], [0.35, 0.0]])
    obs = np.asarray(env.observe(ParticleState.create(agents, landmarks)))
    assert env.spec.obs_dim == 4 + 4 + 4 == obs.shape[1]
    lm_rel, other_rel = obs[0, 4:8].reshape(2, 2), obs[0, 8:12].reshape(2, 2)
    np.testing.assert_allclose(lm_rel[0], landmarks[0] - agents[0], atol=1e-6)
    np.testing.assert_array_equal(lm_rel[1], 0.0)  # 1.25 away
    np.testing.assert_allclose(other_rel[0], agents[1] - agents[0], atol=1e-6)
    np.testing.assert_array_equal(other_rel[1], 0.0)  # 1.4 away
    # agent 1 sees everything within 1 (agent 2 at exactly 1.0 is not "< 1": unseen)
    other_rel1 = obs[1, 8:12].reshape(2, 2)
    np.testing.assert_allclose(other_rel1[0], agents[0] - agents[1], atol=1e-6)
    np.testing.assert_array_equal(other_rel1[1], 0.0)
    full = np.asarray(coopmarl.make("mpe:line", n_agents=3, vision=None).observe(ParticleState.create(agents, landmarks)))
    np.testing.assert_allclose(full[0, 10:12], agents[2] - agents[0], atol=1e-6)
    # spread is fully observed by default, and can be limited the same way
    spread_obs = np.asarray(coopmarl.make("mpe:spread", n_agents=3, vision=0.5).observe(
        ParticleState.create(agents, np.array([[-0.8, 0.1], [0.35, 0.0], [0.9, 0.9]]))))
    np.testing.assert_allclose(spread_obs[0, 4:6], [0.1, 0.1], atol=1e-6)
    np.testing.assert_array_equal(spread_obs[0, 6:10], 0.0)


def test_spread_collision_penalty_and_contact_force():
    env = coopmarl.make("mpe:spread", n_agents=3)
    agents = np.array([[0.0, 0.0], [0.2, 0.0], [0.9, 0.9]])  # agents 0 and 1 overlap (0.2 < 0.3)
    landmarks = np.array([[0.0, 0.0], [0.2, 0.0], [0.9, 0.9]])  # every landmark covered: distance term 0
    state = ParticleState.create(agents, landmarks)
    score = env.score(state)
    np.testing.assert_allclose(np.asarray(score.per_agent), [-0.5, -0.5, 0.0], atol=1e-6)  # local_ratio 0.5
    assert int(score.collisions) == 1
    state, ts = env.step(KEY, state, jnp.zeros(3, jnp.int32))  # no-ops: only the contact force acts
    vel = np.asarray(state.vel)
    assert vel[0, 0] < 0 < vel[1, 0] and np.allclose(vel[2], 0) and np.allclose(vel[3:], 0)
    np.testing.assert_allclose(vel[0], -vel[1], atol=1e-6)  # equal and opposite (unit masses)
    # overlap 0.1: force 100 * 1e-3 * softplus(0.1 / 1e-3) = 10 along x, for dt = 0.1 on mass 1
    np.testing.assert_allclose(vel[1, 0], 10.0 * 0.1, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(state.pos), np.vstack([agents, landmarks]), atol=1e-7)  # old velocity
    state, _ = env.step(KEY, state, jnp.zeros(3, jnp.int32))
    assert np.linalg.norm(np.asarray(state.pos[0] - state.pos[1])) > 0.2


def test_line_collision_penalty():
    env = coopmarl.make("mpe:line", n_agents=4, collision_penalty=2.0)
    base = np.array([[-0.5, 0.0], [0.0, 0.0], [0.5, 0.0], [0.9, 0.0]])
    lms = np.array([[-0.6, 0.0], [0.65, 0.0]])
    apart = float(env.score(ParticleState.create(base, lms)).team)
    crowded = base.copy()
    crowded[1] = crowded[0] + [0.05, 0.0]  # 0.05 < 0.06: one pair overlaps
    expected, pairs = _numpy_reward("line", crowded, lms, penalty=2.0)
    score = env.score(ParticleState.create(crowded, lms))
    assert pairs == 1 and int(score.collisions) == 1
    np.testing.assert_allclose(float(score.team), expected, atol=1e-6)
    assert float(score.team) < apart


def test_physics_integration_and_actions():
    world = physics.World(n_agents=2, n_landmarks=1, agent_max_speed=0.6)
    pos = jnp.array([[0.0, 0.0], [0.5, 0.5], [-0.5, -0.5]])
    vel = jnp.array([[0.2, 0.0], [0.0, 0.0], [0.0, 0.0]])
    force = physics.discrete_action_force(world, jnp.array([2, 4]))  # right, up
    np.testing.assert_allclose(np.asarray(force), [[5.0, 0.0], [0.0, 5.0]])
    new_pos, new_vel = physics.physics_step(world, pos, vel, force)
    np.testing.assert_allclose(np.asarray(new_pos[0]), [0.02, 0.0], atol=1e-7)  # pos += old vel * dt
    np.testing.assert_allclose(np.asarray(new_vel[0]), [0.6, 0.0], atol=1e-6)  # 0.2*0.75 + 0.5 = 0.65 -> capped
    np.testing.assert_allclose(np.asarray(new_vel[1]), [0.0, 0.5], atol=1e-7)
    np.testing.assert_array_equal(np.asarray(new_pos[2]), [-0.5, -0.5])  # landmarks never move
    # invalid discrete indices act as no-ops; continuous actions clip to [0, 1]
    np.testing.assert_array_equal(np.asarray(physics.discrete_action_force(world, jnp.array([-1, 7]))), 0.0)
    cont = physics.continuous_action_force(world, jnp.array([[0.0, 0.0, 2.0, 0.5, 0.0], [0, -1.0, 0, 0, 0.25]]))
    np.testing.assert_allclose(np.asarray(cont), [[5.0, -2.5], [0.0, 1.25]], atol=1e-6)


def _mpe_contact_forces(world, pos):
    """MPE's `apply_environment_force` in float64 numpy: for each pair a < b of colliding entities, the
    softplus spring on a and its opposite on b; immovable entities get no force."""
    pos = np.asarray(pos, np.float64)
    sizes, collides, movable = world.sizes, world.collides, world.movable
    force = np.zeros_like(pos)
    for a in range(world.n_entities):
        for b in range(a + 1, world.n_entities):
            if not (collides[a] and collides[b]):
                continue
            delta = pos[a] - pos[b]
            dist = np.sqrt(np.sum(np.square(delta)))
            k = world.contact_margin
            penetration = np.logaddexp(0, -(dist - sizes[a] - sizes[b]) / k) * k
            f = world.contact_force * delta / dist * penetration
            force[a] += f if movable[a] else 0.0
            force[b] -= f if movable[b] else 0.0
    return force


@pytest.mark.parametrize("overrides", [
    {}, {"landmarks_collide": True}, {"landmarks_collide": True, "landmarks_movable": True},
    {"agents_collide": False, "landmarks_collide": True, "landmarks_movable": True}, {"agents_collide": False}])
def test_contact_forces_match_mpe_pair_loop(overrides):
    """Pairing only the colliding entities, each unordered pair once, gives MPE's forces, also where
    landmarks collide or move (the paths the three tasks do not take)."""
    world = physics.World(n_agents=4, n_landmarks=3, agent_size=0.15, landmark_size=0.1, **overrides)
    rng = np.random.default_rng(len(overrides))
    pos = rng.uniform(-0.4, 0.4, (32, world.n_entities, 2))
    with jax.enable_x64(True):
        ours = np.asarray(jax.jit(jax.vmap(lambda p: physics.contact_forces(world, p)))(jnp.asarray(pos)))
    ref = np.stack([_mpe_contact_forces(world, p) for p in pos])
    if world.collides.sum() >= 2:
        assert np.abs(ref).max() > 1.0  # the crowded discs do push each other
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    ours32 = np.asarray(jax.jit(jax.vmap(lambda p: physics.contact_forces(world, p)))(jnp.asarray(pos, jnp.float32)))
    np.testing.assert_allclose(ours32, ref, rtol=1e-4, atol=1e-4)


def test_fold_reduces_like_jnp():
    x = jnp.asarray(np.random.default_rng(0).random((4, 7, 5)), jnp.float32)
    for axis in (0, 1, 2, -1):
        np.testing.assert_allclose(physics.fold(jnp.add, x, axis), jnp.sum(x, axis), rtol=1e-6)
        np.testing.assert_array_equal(physics.fold(jnp.minimum, x, axis), jnp.min(x, axis))
    np.testing.assert_array_equal(physics.fold(jnp.add, x[:, :1], 1), x[:, 0])


def test_params_validated():
    with pytest.raises(ValueError, match="n_agents"):
        coopmarl.make("mpe:spread", n_agents=0)
    with pytest.raises(ValueError, match="local_ratio"):
        coopmarl.make("mpe:spread", local_ratio=1.5)
    with pytest.raises(ValueError, match="vision"):
        coopmarl.make("mpe:circle", vision=0.0)
    env = coopmarl.make("mpe:line", n_agents=6, max_steps=40, continuous_actions="true", vision="none")
    assert (env.spec.n_agents, env.spec.horizon, env.spec.action_kind, env.task.vision) == (6, 40, "continuous", None)
    assert {"mpe:spread", "mpe:line", "mpe:circle", "differential"} <= {e.name for e in coopmarl.list_envs()}


def test_render_draws_agents():
    for name in ("mpe:spread", "mpe:line", "mpe:circle"):
        env = coopmarl.make(name)
        state, _ = env.reset(KEY)
        frame = np.asarray(jax.jit(env.render)(state))
        assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
        blue = (frame[..., 2] > 180) & (frame[..., 0] < 110)
        assert blue.sum() > 10 * env.n_agents


# ---- auto-reset: observing the selected state once, and the inline Threefry ------------------------------------------


class _ResetAndStepOnly:
    """The env without `reset_state`/`observation`: AutoReset takes its generic path (observe both, select)."""

    def __init__(self, env):
        self.env, self.spec = env, env.spec

    def reset(self, key):
        return self.env.reset(key)

    def step(self, key, state, actions):
        return self.env.step(key, state, actions)


@pytest.mark.parametrize("name,kw", [("mpe:spread", {}), ("mpe:line", dict(continuous_actions=True)),
                                     ("mpe:circle", dict(n_agents=4))])
def test_autoreset_observe_once_equals_generic_path(name, kw):
    """AutoReset selects the particle state first and observes it once (the env offers `reset_state` and
    `observation`): the same TimeSteps as observing the reset too and selecting the observations."""
    env = coopmarl.make(name, max_steps=7, **kw)

    def rollout(wrapped, key):
        state, ts = jax.vmap(wrapped.reset)(jax.random.split(key, 8))

        def body(state, k):
            k_act, k_env = jax.random.split(k)
            if env.spec.discrete:
                actions = jax.random.randint(k_act, (8, env.n_agents), 0, 5)
            else:
                actions = jax.random.uniform(k_act, (8, env.n_agents, 5))
            state, ts = jax.vmap(wrapped.step)(jax.random.split(k_env, 8), state, actions)
            return state, (state, ts)

        return jax.lax.scan(body, state, jax.random.split(key, 30))[1]

    fast_wrapper, generic_wrapper = AutoReset(env), AutoReset(_ResetAndStepOnly(env))
    assert fast_wrapper._observe_once and not generic_wrapper._observe_once
    fast = jax.jit(partial(rollout, fast_wrapper))(KEY)
    generic = jax.jit(partial(rollout, generic_wrapper))(KEY)
    assert bool(jnp.any(fast[1].truncated)) and bool(jnp.any(~fast[1].truncated))  # resets happened
    for path, x in jax.tree_util.tree_flatten_with_path(fast)[0]:
        y = jax.tree_util.tree_map_with_path(lambda p, v: v if p == path else None, generic)
        y = [v for v in jax.tree.leaves(y) if v is not None][0]
        if jnp.issubdtype(x.dtype, jnp.floating):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6, err_msg=str(path))
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def test_inline_threefry_matches_jax_random_bit_for_bit():
    """`split_key` / `uniform` / `uniform_concat` (used by AutoReset and the particle resets) return what
    jax.random returns, bit for bit, under jit and vmap, and defer to jax.random where they cannot."""
    keys = jax.random.split(jax.random.PRNGKey(7), 257)
    for num in (1, 2, 3, 5):
        np.testing.assert_array_equal(jax.jit(jax.vmap(lambda k: split_key(k, num)))(keys),
                                      jax.jit(jax.vmap(lambda k: jax.random.split(k, num)))(keys))
    for shape, lo, hi in (((3, 2), -1.0, 1.0), ((1, 2), -0.25, 0.25), ((2,), -0.25, 0.25), ((), 0.0, 2 * math.pi),
                          ((4, 5, 3), 0.0, 1.0), ((7,), -3.3, 1.7)):
        ours = jax.jit(jax.vmap(lambda k: uniform(k, shape, lo, hi)))(keys)
        ref = jax.jit(jax.vmap(lambda k: jax.random.uniform(k, shape, minval=lo, maxval=hi)))(keys)
        assert ours.dtype == ref.dtype == jnp.float32
        np.testing.assert_array_equal(ours, ref, err_msg=str(shape))

    def both(k):
        k_a, k_l = split_key(k)
        return uniform_concat([(k_a, (5, 2), -1.0, 1.0), (k_l, (1, 2), -0.25, 0.25)])

    def separately(k):
        k_a, k_l = jax.random.split(k)
        return jnp.concatenate([jax.random.uniform(k_a, (10,), minval=-1.0, maxval=1.0),
                                jax.random.uniform(k_l, (2,), minval=-0.25, maxval=0.25)])

    np.testing.assert_array_equal(jax.jit(jax.vmap(both))(keys), jax.jit(jax.vmap(separately))(keys))
    # typed keys and float64 draws go to jax.random itself
    typed = jax.random.key(3)
    np.testing.assert_array_equal(jax.random.key_data(split_key(typed, 3)),
                                  jax.random.key_data(jax.random.split(typed, 3)))
    with jax.enable_x64(True):
        draw = uniform(KEY, (4,), -1.0, 1.0)
        assert draw.dtype == jnp.float64
        np.testing.assert_array_equal(draw, jax.random.uniform(KEY, (4,), minval=-1.0, maxval=1.0))


# ---- fuzzing ------------------------------------------------------------------------------------------------------

_FUZZ_ENVS = {
    "spread": coopmarl.make("mpe:spread", n_agents=3, max_steps=10),
    "line-continuous": coopmarl.make("mpe:line", n_agents=4, max_steps=10, continuous_actions=True),
    "circle": coopmarl.make("mpe:circle", n_agents=5, max_steps=10),
}


def _episode(env, key, actions):
    state, ts0 = env.reset(key)

    def body(state, a):
        state, ts = env.step(key, state, a)
        return state, ts

    _, seq = jax.lax.scan(body, state, actions)
    return ts0, seq


_ROLLOUTS = {name: jax.jit(lambda key, actions, env=env: _episode(env, key, actions)) for name, env in _FUZZ_ENVS.items()}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_FUZZ_ENVS)), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_fuzz_random_actions(name, seed, data):
    env = _FUZZ_ENVS[name]
    spec = env.spec
    n, horizon = spec.n_agents, spec.horizon
    rng = np.random.default_rng(seed)
    if spec.discrete:
        actions = rng.integers(-2, 8, (horizon, n)).astype(np.int32)  # out-of-range indices are no-ops
    else:
        scale = data.draw(st.sampled_from([1.0, 100.0]))
        actions = (rng.standard_normal((horizon, n, spec.action_dim)) * scale).astype(np.float32)
    ts0, seq = _ROLLOUTS[name](jax.random.PRNGKey(seed), jnp.asarray(actions))
    assert seq.obs.shape == (horizon, n, spec.obs_dim) and seq.global_state.shape == (horizon, spec.state_dim)
    assert seq.reward.shape == (horizon, n)
    for x in (seq.obs, seq.global_state, seq.reward, seq.info["distance"], seq.info["agent_reward"]):
        assert np.isfinite(np.asarray(x)).all()
    assert (np.asarray(seq.reward) <= 1e-6).all()  # all three tasks only penalise
    truncated = np.asarray(seq.truncated)
    assert not np.asarray(seq.terminated).any()
    assert truncated[-1] and not truncated[:-1].any()
    # speeds stay bounded (damping; action forces are at most 5√2; contact forces grow with overlap)
    speed = np.linalg.norm(np.asarray(seq.global_state)[:, 2 * n:4 * n].reshape(horizon, n, 2), axis=-1)
    assert speed.max() < 50.0
