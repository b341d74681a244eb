"""`ParticleEnv`: a multi-agent particle task (spread, line, circle) on the shared MPE physics.

An env is the physics (`physics.World`), a task (what a start looks like, how it scores, what an
agent sees) and the episode settings. Its state is `ParticleState` (positions, velocities, step
count); reset and step are pure and jittable, and everything in the env itself is static.

    obs            float32 [N, obs_dim]    (layout: see each task)
    global_state   float32 [4N + 2L]       agent positions, agent velocities, landmark positions
    reward         float32 [N]             the team reward, repeated
    info           collisions (int32: overlapping agent pairs), distance (float32: the task's
                   distance term), agent_reward (float32 [N]: the per-agent rewards the team
                   reward averages; only spread's differ between agents)

Episodes never terminate; they are truncated after `max_steps` steps (MPE's max_cycles, 25).

Speed (the env is stepped as 1024 vmapped copies on a CPU as readily as one): besides the contract,
the env offers `reset_state(key)` and `observation(state)`, with which `AutoReset` selects the reset
state first and observes once per step; its resets draw with the inline Threefry of `envs/core.py`
(the same numbers as jax.random); and the step avoids small reductions, gathers and concatenations
where an elementwise form exists (see `physics.fold`, `_drop_diagonal`), which XLA's CPU kernels run
several times faster.

Precision: the env computes in float32; mpe2 in float64. One step agrees to ~1e-6, but MPE's contact
force is stiff (an error in an overlap roughly doubles each step), so free-running float32 and float64
trajectories can part by ~1e-4 after several steps of contact. Under `jax.enable_x64` the same code
runs in float64 and follows mpe2 to ~1e-14 (tests/test_mpe.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.envs.fast_random import split_key, uniform, uniform_concat
from coopmarl.envs.mpe import physics
from coopmarl.envs.mpe.matching import min_total_cost
from coopmarl.envs.mpe.physics import World
from coopmarl.errors import ParamError
from coopmarl.ranges import total_error

SLOT_COLOR = (0.6, 0.8, 0.6)


@struct.dataclass
class ParticleState:
    pos: jax.Array  # float32 [E, 2]: agents, then landmarks
    vel: jax.Array  # float32 [E, 2]
    step: jax.Array  # int32 []: steps taken in this episode

    @classmethod
    def create(cls, agent_pos, landmark_pos, agent_vel=None, step: int = 0) -> "ParticleState":
        """A state from explicit positions (e.g. copied from another simulator); landmarks are at rest.

        Arrays take JAX's default float type: float32, or float64 under `jax.enable_x64` (which the
        cross-check against mpe2's float64 physics uses)."""
        dtype = jnp.result_type(float)
        agent_pos = jnp.asarray(agent_pos, dtype)
        landmark_pos = jnp.asarray(landmark_pos, dtype)
        agent_vel = jnp.zeros_like(agent_pos) if agent_vel is None else jnp.asarray(agent_vel, dtype)
        pos = jnp.concatenate([agent_pos, landmark_pos], axis=0)
        vel = jnp.concatenate([agent_vel, jnp.zeros_like(landmark_pos)], axis=0)
        return cls(pos=pos, vel=vel, step=jnp.asarray(step, jnp.int32))


class Score(NamedTuple):
    team: jax.Array  # float32 []
    per_agent: jax.Array  # float32 [N]
    distance: jax.Array  # float32 []
    collisions: jax.Array  # int32 []


def _hide_unseen(rel: jax.Array, vision: float | None) -> jax.Array:
    if vision is None:
        return rel
    seen = jnp.sqrt(physics.squared_norm(rel))[..., None] < vision
    return jnp.where(seen, rel, 0.0)


def _drop_diagonal(x: jax.Array) -> jax.Array:
    """[N, N, ...] -> [N, N − 1, ...]: row i without its entry i (the others in index order), by
    slicing and reshaping (no gather): the N² entries, flattened, minus the first, fall into rows of
    N + 1 whose last entry is the next diagonal one."""
    n = x.shape[0]
    rest = x.shape[2:]
    flat = x.reshape((n * n,) + rest)[1:]
    return flat.reshape((n - 1, n + 1) + rest)[:, :n].reshape((n, n - 1) + rest)


def _relative_to_agents(pos: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """(landmarks − agent [N, L, 2], other agents − agent [N, N − 1, 2], the others in index order)."""
    agents = pos[:n]
    landmarks = pos[n:][None] - agents[:, None]
    others = _drop_diagonal(agents[None, :, :] - agents[:, None, :])  # [i, j] = agent j − agent i
    return landmarks, others


def _collision_pairs(world: World, pos) -> tuple[jax.Array, jax.Array]:
    """(overlapping agents per agent, int32 [N]; overlapping pairs, int32 [])."""
    overlap = physics.agent_collisions(world, pos).astype(jnp.int32)
    per_agent = physics.fold(jnp.add, overlap, axis=1)
    return per_agent, physics.fold(jnp.add, per_agent, axis=0) // 2


# ---- tasks ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """MPE simple spread (mpe2 `simple_spread_v3`): N agents must cover N landmarks without colliding.

    Start: agents and landmarks uniform in [−1, 1]², at rest. Agent size 0.15 (landmarks 0.05, which do
    not collide). Per-agent reward, as mpe2 with `local_ratio` ρ:
        r_i = (1 − ρ) · (−Σ_landmarks min_agents distance) + ρ · (−#{j ≠ i : agents i, j overlap});
    the team reward is their mean, (1 − ρ)·(−Σ min dist) − ρ·2·(overlapping pairs)/N.
    Observation (mpe2's layout): own velocity, own position, landmarks relative to self, other agents
    relative to self, and the others' (silent, all-zero) communication: 4 + 2N + 4(N − 1) features.
    """

    local_ratio: float = 0.5
    vision: float | None = None
    agent_size: float = 0.15
    landmark_size: float = 0.05

    def n_landmarks(self, n_agents: int) -> int:
        return n_agents

    def obs_dim(self, n_agents: int) -> int:
        return 4 + 2 * n_agents + 4 * (n_agents - 1)

    def spawn(self, key, world: World):
        """Positions [E, 2]: agents uniform in [−1, 1]² (first key of the split), then landmarks (second)."""
        k_a, k_l = split_key(key)
        draws = [(k_a, (world.n_agents, 2), -1.0, 1.0), (k_l, (world.n_landmarks, 2), -1.0, 1.0)]
        return uniform_concat(draws).reshape(world.n_entities, 2)

    def slots(self, world: World, pos):
        return jnp.zeros((0, 2), jnp.float32)

    def score(self, world: World, pos) -> Score:
        n = world.n_agents
        landmarks, _ = _relative_to_agents(pos, n)
        dist = jnp.sqrt(physics.squared_norm(landmarks))  # [N, L]
        covered = physics.fold(jnp.add, physics.fold(jnp.minimum, dist, axis=0))  # Σ_landmarks min_agents
        overlaps, pairs = _collision_pairs(world, pos)
        local = -overlaps.astype(jnp.float32)
        per_agent = (1.0 - self.local_ratio) * (-covered) + self.local_ratio * local
        return Score(physics.fold(jnp.add, per_agent) / n, per_agent, covered, pairs)

    def observe(self, world: World, pos, vel):
        n = world.n_agents
        landmarks, others = _relative_to_agents(pos, n)
        parts = [
            vel[:n], pos[:n],
            _hide_unseen(landmarks, self.vision).reshape(n, -1),
            _hide_unseen(others, self.vision).reshape(n, -1),
            jnp.zeros((n, 2 * (n - 1)), jnp.float32),  # communication of the (silent) others
        ]
        return jnp.concatenate(parts, axis=-1)


@dataclass(frozen=True)
class _Formation:
    """Shared parts of DPO's control tasks (paper 003 §4.2, App. A.1; from Agarwal et al. 2020).

    Reward (team, every step): −mean over agents of the optimally matched (Hungarian) agent-to-slot
    distance − collision_penalty · (overlapping agent pairs) / N. Agent size 0.03 (landmarks 0.02,
    which do not collide). Observation: own velocity, own position, landmarks relative to self, other
    agents relative to self, where anything at distance ≥ `vision` is zeroed: 4 + 2L + 2(N − 1) features.

    Source: the MAPPO-based line/circle scenarios with `collision_penal` and `vision` options (the
    variant REFERENCE.md describes), which differ from mpe2's `simple_line`/`simple_formation` (no
    collision term, no vision, distances clipped at 2, circle landmark in [−0.5, 0.5]²). Our choices
    where that code is odd: an agent does not collide with itself (it counts N self-overlaps, a constant
    −penalty/2 per step; the per-pair term, 2·penalty/(2N), is the same), the silent agents' all-zero
    communication features are left out of the observation, and the [−15, 15] reward clip (unreachable
    with these settings) is not applied. N ≤ 6 matches by brute force over permutations, larger N by
    the Hungarian algorithm (`matching.py`).
    """

    collision_penalty: float = 1.0
    vision: float | None = 1.0
    matching: str = "auto"
    agent_size: float = 0.03
    landmark_size: float = 0.02

    def obs_dim(self, n_agents: int) -> int:
        return 4 + 2 * self.n_landmarks(n_agents) + 2 * (n_agents - 1)

    def score(self, world: World, pos) -> Score:
        n = world.n_agents
        slots = self.slots(world, pos)
        cost = jnp.sqrt(physics.squared_norm(pos[:n, None, :] - slots[None, :, :]))  # [agent, slot]
        distance = min_total_cost(cost, self.matching) / n  # the mean matched distance
        _, pairs = _collision_pairs(world, pos)
        team = -distance - self.collision_penalty * pairs.astype(jnp.float32) / n
        return Score(team, jnp.full((n,), team), distance, pairs)

    def observe(self, world: World, pos, vel):
        n = world.n_agents
        landmarks, others = _relative_to_agents(pos, n)
        return jnp.concatenate([
            vel[:n], pos[:n],
            _hide_unseen(landmarks, self.vision).reshape(n, -1),
            _hide_unseen(others, self.vision).reshape(n, -1),
        ], axis=-1)


LINE_LENGTH = 1.25
CIRCLE_RADIUS = 0.5


@dataclass(frozen=True)
class Line(_Formation):
    """Line control: N agents spread evenly on the segment between two landmarks 1.25 apart.

    Start: agents uniform in [−1, 1]²; landmark 0 uniform in [−0.25, 0.25]²; landmark 1 at 1.25 from it
    in a uniformly random direction, turned by 5° steps until it lies inside (−1, 1)² (as the reference
    scenario). Slots: landmark 0 + i/(N − 1) · (landmark 1 − landmark 0), i = 0..N−1 (both ends included).
    """

    def n_landmarks(self, n_agents: int) -> int:
        return 2

    def spawn(self, key, world: World):
        k_a, k_l, k_t = split_key(key, 3)
        agents = uniform(k_a, (world.n_agents, 2), -1.0, 1.0)
        # start and angle from jax.random itself: on the CPU its loop keeps them in memory, where XLA
        # would recompute an inline hash for each of the 72 x 2 candidate coordinates that use them
        start = jax.random.uniform(k_l, (2,), minval=-0.25, maxval=0.25)
        thetas = jax.random.uniform(k_t, (), minval=0.0, maxval=2 * math.pi) + jnp.deg2rad(5.0) * jnp.arange(72)
        ends = start + LINE_LENGTH * jnp.stack([jnp.cos(thetas), jnp.sin(thetas)], axis=-1)  # [72, 2]
        inside = jnp.all(jnp.abs(ends) < 1.0, axis=-1)
        end = ends[jnp.argmax(inside)]  # the first direction that fits (72 steps cover the full turn)
        return jnp.concatenate([agents, start[None], end[None]])

    def slots(self, world: World, pos):
        n = world.n_agents
        start, end = pos[n], pos[n + 1]
        frac = jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1)
        return start + frac[:, None] * (end - start)


@dataclass(frozen=True)
class Circle(_Formation):
    """Circle control: N agents evenly spaced on a circle of radius 0.5 around one landmark.

    Start: agents uniform in [−1, 1]², the landmark uniform in [−0.25, 0.25]². Slots (recomputed every
    step, as the reference scenario): the landmark + 0.5·(cos θ_i, sin θ_i), θ_i = θ_min + 2πi/N, where
    θ_min ∈ [0, 2π) is the smallest polar angle of an agent around the landmark.
    """

    def n_landmarks(self, n_agents: int) -> int:
        return 1

    def spawn(self, key, world: World):
        k_a, k_l = split_key(key)
        draws = [(k_a, (world.n_agents, 2), -1.0, 1.0), (k_l, (1, 2), -0.25, 0.25)]
        return uniform_concat(draws).reshape(world.n_entities, 2)

    def slots(self, world: World, pos):
        n = world.n_agents
        center = pos[n]
        rel = pos[:n] - center
        angle = jnp.arctan2(rel[:, 1], rel[:, 0])
        angle = jnp.where(angle < 0, angle + 2 * math.pi, angle)
        thetas = jnp.min(angle) + (2 * math.pi / n) * jnp.arange(n, dtype=jnp.float32)
        return center + CIRCLE_RADIUS * jnp.stack([jnp.cos(thetas), jnp.sin(thetas)], axis=-1)


# ---- the env ---------------------------------------------------------------------------------------------------


@struct.dataclass
class ParticleEnv:
    spec: EnvSpec = struct.field(pytree_node=False)
    world: World = struct.field(pytree_node=False)
    task: Any = struct.field(pytree_node=False)  # Spread | Line | Circle
    continuous_actions: bool = struct.field(pytree_node=False, default=False)

    @classmethod
    def create(cls, name: str, task, n_agents: int, max_steps: int, continuous_actions: bool,
               params: tuple) -> "ParticleEnv":
        if n_agents < 1:
            raise ParamError(f"{name}: n_agents must be an integer >= 1, got {n_agents}")
        if max_steps < 1:
            raise ParamError(f"{name}: max_steps must be an integer >= 1, got {max_steps}")
        if task.vision is not None and not (math.isfinite(task.vision) and task.vision > 0):
            raise ParamError(f"{name}: vision must be a finite number > 0 (or None for full observation), got "
                             f"{task.vision}")
        penalty = getattr(task, "collision_penalty", 0.0)
        if not (math.isfinite(penalty) and penalty >= 0):
            raise ParamError(f"{name}: collision_penalty must be a finite number >= 0 (subtracted per overlapping "
                             f"pair), got {penalty}")
        too_large = total_error("an episode's collision penalty", penalty * n_agents * max_steps,
                                f"{name} collision_penalty, n_agents and max_steps")
        if too_large:
            raise ParamError(too_large)
        world = World(n_agents=n_agents, n_landmarks=task.n_landmarks(n_agents),
                      agent_size=task.agent_size, landmark_size=task.landmark_size)
        if continuous_actions:
            action = dict(action_kind="continuous", action_dim=physics.CONTINUOUS_ACTION_DIM, low=0.0, high=1.0)
        else:
            action = dict(action_kind="discrete", n_actions=physics.N_MOVES)
        spec = EnvSpec(name=name, n_agents=n_agents, obs_dim=task.obs_dim(n_agents),
                       state_dim=4 * n_agents + 2 * world.n_landmarks, horizon=max_steps,
                       params=tuple(params), **action)
        return cls(spec=spec, world=world, task=task, continuous_actions=continuous_actions)

    @property
    def n_agents(self) -> int:
        return self.spec.n_agents

    @property
    def max_steps(self) -> int:
        return self.spec.horizon

    # --- views of a state ---------------------------------------------------------------------------
    def observe(self, state: ParticleState) -> jax.Array:
        return self.task.observe(self.world, state.pos, state.vel).astype(jnp.float32)

    def global_state(self, state: ParticleState) -> jax.Array:
        n = self.n_agents
        return jnp.concatenate([state.pos[:n].reshape(-1), state.vel[:n].reshape(-1),
                                state.pos[n:].reshape(-1)]).astype(jnp.float32)

    def score(self, state: ParticleState) -> Score:
        return self.task.score(self.world, state.pos)

    def slots(self, state: ParticleState) -> jax.Array:
        """The target positions of a formation task ([N, 2]; empty for spread)."""
        return self.task.slots(self.world, state.pos)

    def observation(self, state: ParticleState) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(obs, global_state, avail_actions) of a state: the views a TimeStep carries (AutoReset
        observes the state it selected with this, instead of observing the reset state as well)."""
        n_avail = self.spec.n_actions if self.spec.discrete else 1
        return self.observe(state), self.global_state(state), jnp.ones((self.n_agents, n_avail), bool)

    def _timestep(self, state, score: Score, reward, per_agent, truncated) -> TimeStep:
        obs, global_state, avail_actions = self.observation(state)
        return TimeStep(
            obs=obs,
            global_state=global_state,
            avail_actions=avail_actions,
            reward=jnp.full((self.n_agents,), reward, jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.asarray(truncated, bool),
            info={"collisions": score.collisions, "distance": score.distance.astype(jnp.float32),
                  "agent_reward": per_agent.astype(jnp.float32)},
        )

    # --- the env contract ---------------------------------------------------------------------------
    def reset_state(self, key) -> ParticleState:
        """The state `reset(key)` starts in (without observing it): the task's positions, at rest."""
        pos = self.task.spawn(key, self.world).astype(jnp.result_type(float))
        return ParticleState(pos=pos, vel=jnp.zeros_like(pos), step=jnp.int32(0))

    def reset(self, key) -> tuple[ParticleState, TimeStep]:
        state = self.reset_state(key)
        score = self.score(state)
        return state, self._timestep(state, score, 0.0, jnp.zeros((self.n_agents,)), False)

    def step(self, key, state: ParticleState, actions) -> tuple[ParticleState, TimeStep]:
        if self.continuous_actions:
            force = physics.continuous_action_force(self.world, jnp.reshape(actions, (self.n_agents, -1)))
        else:
            force = physics.discrete_action_force(self.world, jnp.reshape(actions, (self.n_agents,)))
        pos, vel = physics.physics_step(self.world, state.pos, state.vel, force)
        state = ParticleState(pos=pos, vel=vel, step=state.step + 1)
        score = self.score(state)
        return state, self._timestep(state, score, score.team, score.per_agent, state.step >= self.max_steps)

    def render(self, state: ParticleState, size: int = 256) -> jax.Array:
        """uint8 [size, size, 3]: landmarks (grey), formation slots (green rings), agents (blue)."""
        w, n = self.world, self.n_agents
        slots = self.slots(state)
        k = slots.shape[0]
        centers = jnp.concatenate([state.pos[n:], slots, state.pos[:n]])
        radii = jnp.concatenate([jnp.full((w.n_landmarks,), w.landmark_size), jnp.full((k,), w.agent_size),
                                 jnp.full((n,), w.agent_size)])
        colors = jnp.asarray([physics.LANDMARK_COLOR] * w.n_landmarks + [SLOT_COLOR] * k
                             + [physics.AGENT_COLOR] * n, jnp.float32)
        outline = jnp.asarray([False] * w.n_landmarks + [True] * k + [False] * n)
        cam = jnp.maximum(1.2, jnp.max(jnp.abs(state.pos)) + 2 * w.agent_size)
        return physics.draw_discs(centers, radii, colors, size=size, cam_range=cam, outline=outline)
