"""Predator-prey "stag hunt" on a bounded grid, with the rules of DCG (Böhmer et al., 2020) as used by
ReMIX (§5.1, App. D.1) and WQMIX: the relative-overgeneralisation task.

    env = coopmarl.make("predator-prey", punishment=-2.0)       # or make("predator-prey:p-2")
    state, ts = env.reset(key)
    state, ts = env.step(key, state, actions)                    # actions: int32 [n_agents]

World. A `grid_size` x `grid_size` grid, not toroidal; row 0 is the top. `n_agents` predators,
`n_stags` stags and `n_hares` hares start on distinct uniformly random cells. No two *present*
entities ever share a cell. Caught prey and frozen agents are removed from the world: they block
nobody and nobody observes them (DCG `remove_frozen: True`).

Actions (per agent): 0 right, 1 down, 2 left, 3 up, 4 stay, 5 catch (values outside 0..5 are clipped;
an unavailable action is harmless: a move into a wall or a frozen agent's move does nothing, a catch
with no adjacent prey catches nothing). `avail_actions`:
- a move is available iff its target cell is inside the grid (moves into occupied cells stay
  available and are simply blocked, as in DCG's code; ReMIX App. D.1's wording "moving into an
  occupied target position ... unavailable" is not what the code does);
- stay is always available;
- catch is available iff a present prey (stag or hare) is 4-adjacent;
- a frozen agent can only stay.

One step, in DCG's order:
1. Agents move one at a time, in a fresh uniformly random order. A move succeeds iff its target is
   inside the grid and holds no present agent or prey (so A may step into the cell B left earlier in
   the same step, but not into the cell B has not left yet). Frozen agents, stay and catch do not move.
2. Prey are then processed one at a time, in a fresh uniformly random order. For prey j (if present):
   its catchers are the non-frozen agents 4-adjacent to it that chose catch. If there are at least
   `agents_to_catch_stag` (2) of them for a stag (`agents_to_catch_hare`, 1, for a hare) the prey is
   caught: reward `stag_reward` (10) / `hare_reward` (1), the prey is removed and its catchers are
   frozen (removed from the world) at once. If it has >= 1 catcher but too few, the team gets the
   miscapture `punishment` p (once per such prey) and the prey is not caught. A prey not caught then
   moves to a uniformly random 4-neighbour that is inside the grid and free of present entities
   (including cells freed earlier in this prey loop); with no such neighbour it stays
   (DCG `p_stags_rest = 0`: prey never rest voluntarily).
   Because agents freeze at once, an agent that catches next to two prey can help catch only the
   first of them in the random prey order; for the second it no longer counts (which may turn that
   prey's attempt into a miscapture). This matches DCG's sequential loop.
3. Reward = sum of the capture rewards and punishments of this step (the team reward, repeated for
   every agent; no time or collision reward). `terminated` iff no prey is left or every agent is
   frozen; `truncated` iff `time_limit` (200) steps have been taken (both may be true at once).

Observation (per agent): the (2·sight+1)² window centred on the agent (5x5 for sight 2) with 3
channels: present agents (self included), present stags, present hares; cells outside the grid are 0
(DCG `observe_walls: False`). Flattened row-major as [row, col, channel] (channel fastest), 75 floats.
A frozen agent's observation is all zeros. Global state: the whole grid with the same 3 channels,
[row, col, channel] flattened (300 floats for 10x10). Both float32.

`info` holds `prey_caught` (prey caught so far this episode) and `agents_frozen` (int32).

Sources: rules and defaults from DCG's `stag_hunt.py` with its `rel_overgen.yaml` (WQMIX's
`pred_prey_punish.yaml` sets the same values): `capture_action`, `capture_action_conditions: [2, 1]`,
`capture_freezes`, `remove_frozen`, `agent_move_block: [0, 1, 2]`, `reward_stag: 10`, `reward_hare: 1`,
`p_stags_rest: 0`, `reward_time: 0`, `observe_walls: False`, `episode_limit: 200`. ReMIX §5.1 speaks of
a capture reward of 1; its App. D.1 and DCG use 10, which we follow.

Hand-made positions (tests, debugging): `env.state_from(agents=[(r, c), ...], stags=[...],
hares=[...], frozen=[...], time=0)` builds a state; `env.observe(state)` its TimeStep.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.envs.registry import register_env
from coopmarl.errors import ParamError
from coopmarl.ranges import INT32_MAX, total_error

RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
MAX_GRID_SIZE = math.isqrt(INT32_MAX)  # 46340: cell indices row * grid_size + col are int32
ACTION_NAMES = ("right", "down", "left", "up", "stay", "catch")
# (d_row, d_col) per action; stay and catch do not move
_DROW = np.array([0, 1, 0, -1, 0, 0], np.int32)
_DCOL = np.array([1, 0, -1, 0, 0, 0], np.int32)

# the ReMIX punishment settings (App. D.1); each is registered as "predator-prey:p{p:g}"
REMIX_PUNISHMENTS = (0.0, -0.5, -1.5, -2.0)


@struct.dataclass
class PredatorPreyState:
    agent_pos: jax.Array  # int32 [N, 2] (row, col); a frozen agent keeps its last cell (it is off the board)
    frozen: jax.Array  # bool [N]
    prey_pos: jax.Array  # int32 [P, 2]; stags first, then hares; a caught prey keeps its last cell
    prey_alive: jax.Array  # bool [P]
    time: jax.Array  # int32 [], steps taken in this episode


@struct.dataclass
class PredatorPrey:
    """The stag hunt (see the module docstring for the rules). All fields are static."""

    spec: EnvSpec = struct.field(pytree_node=False)
    grid_size: int = struct.field(pytree_node=False)
    n_stags: int = struct.field(pytree_node=False)
    n_hares: int = struct.field(pytree_node=False)
    punishment: float = struct.field(pytree_node=False)
    stag_reward: float = struct.field(pytree_node=False)
    hare_reward: float = struct.field(pytree_node=False)
    agents_to_catch_stag: int = struct.field(pytree_node=False)
    agents_to_catch_hare: int = struct.field(pytree_node=False)
    time_limit: int = struct.field(pytree_node=False)
    sight: int = struct.field(pytree_node=False)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, grid_size: int = 10, n_agents: int = 8, n_stags: int = 8, n_hares: int = 0,
               punishment: float = 0.0, stag_reward: float = 10.0, hare_reward: float = 1.0,
               agents_to_catch_stag: int = 2, agents_to_catch_hare: int = 1, time_limit: int = 200,
               sight: int = 2, name: str = "predator-prey", params: tuple = ()) -> "PredatorPrey":
        if not 1 <= grid_size <= MAX_GRID_SIZE:
            raise ParamError(f"predator-prey grid_size must be an integer in [1, {MAX_GRID_SIZE}] (cell indices "
                             f"grid_size^2 must fit int32), got {grid_size}")
        if n_agents < 1:
            raise ParamError(f"predator-prey n_agents must be an integer >= 1, got {n_agents}")
        if n_stags < 0 or n_hares < 0 or n_stags + n_hares < 1:
            raise ParamError(f"predator-prey needs n_stags, n_hares >= 0 and at least one prey, got "
                             f"n_stags={n_stags}, n_hares={n_hares}")
        if n_agents + n_stags + n_hares > grid_size**2:
            raise ParamError(f"predator-prey: {n_agents} agents + {n_stags} stags + {n_hares} hares do not fit "
                             f"on a {grid_size}x{grid_size} grid ({grid_size**2} cells; every entity starts on a cell "
                             "of its own): use fewer of them or a larger grid_size")
        for prey, needed, count in (("stag", agents_to_catch_stag, n_stags), ("hare", agents_to_catch_hare, n_hares)):
            most = min(4, n_agents)  # a prey has 4 neighbouring cells
            if needed < 1 or (count > 0 and needed > most):
                raise ParamError(
                    f"predator-prey agents_to_catch_{prey} must be an integer in [1, {most}], got {needed}: catchers "
                    f"stand on the 4 cells next to a {prey} and there are n_agents={n_agents}, so no {prey} could "
                    "ever be caught")
        if time_limit < 1:
            raise ParamError(f"predator-prey time_limit must be an integer >= 1, got {time_limit}")
        if not 0 <= sight < grid_size:
            raise ParamError(f"predator-prey sight must be an integer in [0, grid_size - 1 = {grid_size - 1}], got "
                             f"{sight}: from any cell, sight grid_size - 1 already sees the whole grid, and a larger "
                             "window adds only cells outside it (always 0)")
        for what, v in (("punishment", punishment), ("stag_reward", stag_reward), ("hare_reward", hare_reward)):
            if not np.isfinite(v):
                raise ParamError(f"predator-prey {what} must be a finite number, got {v}")
        if punishment > 0:
            raise ParamError(f"predator-prey punishment must be a finite number <= 0 (added to the team reward for "
                             f"each miscapture), got {punishment}")
        episode = (n_stags * abs(stag_reward) + n_hares * abs(hare_reward)
                   + time_limit * (n_stags + n_hares) * abs(punishment))
        too_large = total_error("an episode's return", episode,
                                "predator-prey stag_reward, hare_reward or punishment (with the prey and time_limit)")
        if too_large:
            raise ParamError(too_large)
        window = 2 * sight + 1
        spec = EnvSpec(name=name, n_agents=n_agents, obs_dim=window * window * 3, state_dim=grid_size**2 * 3,
                       action_kind="discrete", n_actions=6, horizon=time_limit, params=tuple(params),
                       # a cell's channel is 1 where a present agent / stag / hare is, else 0 (moves into occupied
                       # cells are blocked; frozen agents and caught prey are not present): bits
                       obs_dtype="bool", state_dtype="bool")
        return cls(spec=spec, grid_size=grid_size, n_stags=n_stags, n_hares=n_hares, punishment=float(punishment),
                   stag_reward=float(stag_reward), hare_reward=float(hare_reward),
                   agents_to_catch_stag=agents_to_catch_stag, agents_to_catch_hare=agents_to_catch_hare,
                   time_limit=time_limit, sight=sight)

    @property
    def n_agents(self) -> int:
        return self.spec.n_agents

    @property
    def n_prey(self) -> int:
        return self.n_stags + self.n_hares

    def _prey_table(self, values_stag, values_hare, dtype):
        return jnp.asarray([values_stag] * self.n_stags + [values_hare] * self.n_hares, dtype)

    def state_from(self, agents: Sequence[Sequence[int]], stags: Sequence[Sequence[int]] = (),
                   hares: Sequence[Sequence[int]] = (), frozen: Sequence[bool] | None = None,
                   time: int = 0) -> PredatorPreyState:
        """A hand-made state: `agents` lists all n_agents (row, col) cells; `stags` / `hares` list up to
        n_stags / n_hares cells of present prey (the remaining prey slots are already caught)."""
        n, g = self.n_agents, self.grid_size
        if len(agents) != n:
            raise ValueError(f"state_from needs {n} agent cells, got {len(agents)}")
        if len(stags) > self.n_stags or len(hares) > self.n_hares:
            raise ValueError(f"state_from: at most {self.n_stags} stags and {self.n_hares} hares, "
                             f"got {len(stags)} and {len(hares)}")
        frozen = np.zeros(n, bool) if frozen is None else np.asarray(frozen, bool)
        agent_pos = np.asarray(agents, np.int32).reshape(n, 2)
        prey_pos = np.zeros((self.n_prey, 2), np.int32)
        alive = np.zeros(self.n_prey, bool)
        prey_pos[:len(stags)] = np.asarray(stags, np.int32).reshape(-1, 2)
        alive[:len(stags)] = True
        prey_pos[self.n_stags:self.n_stags + len(hares)] = np.asarray(hares, np.int32).reshape(-1, 2)
        alive[self.n_stags:self.n_stags + len(hares)] = True
        present = np.concatenate([agent_pos[~frozen], prey_pos[alive]])
        if ((present < 0) | (present >= g)).any() or ((agent_pos < 0) | (agent_pos >= g)).any():
            raise ValueError(f"state_from: a cell lies outside the {g}x{g} grid")
        if len({tuple(p) for p in present}) != len(present):
            raise ValueError("state_from: two present entities share a cell")
        return PredatorPreyState(agent_pos=jnp.asarray(agent_pos), frozen=jnp.asarray(frozen),
                                 prey_pos=jnp.asarray(prey_pos), prey_alive=jnp.asarray(alive),
                                 time=jnp.int32(time))

    # --- observations -------------------------------------------------------------------------
    def _padded_grid(self, state: PredatorPreyState) -> jax.Array:
        """[g + 2·sight, g + 2·sight, 3]: present agents, stags, hares on the grid, a zero border around it."""
        s, g = self.sight, self.grid_size
        pos = jnp.concatenate([state.agent_pos, state.prey_pos])
        channel = jnp.asarray(np.array([0] * self.n_agents + [1] * self.n_stags + [2] * self.n_hares))
        present = jnp.concatenate([~state.frozen, state.prey_alive]).astype(jnp.float32)
        return jnp.zeros((g + 2 * s, g + 2 * s, 3), jnp.float32).at[pos[:, 0] + s, pos[:, 1] + s, channel].add(present)

    def _observations(self, padded: jax.Array, state: PredatorPreyState) -> jax.Array:
        w = 2 * self.sight + 1  # the window centred on (r, c) starts at padded[r, c]
        windows = jax.vmap(lambda p: jax.lax.dynamic_slice(padded, (p[0], p[1], 0), (w, w, 3)))(state.agent_pos)
        return windows.reshape(self.n_agents, w * w * 3) * (~state.frozen)[:, None]

    def _global_state(self, padded: jax.Array) -> jax.Array:
        s, g = self.sight, self.grid_size
        return padded[s:s + g, s:s + g].reshape(g * g * 3)

    def _avail_actions(self, state: PredatorPreyState) -> jax.Array:
        g = self.grid_size
        r, c = state.agent_pos[:, 0:1], state.agent_pos[:, 1:2]
        nr, nc = r + _DROW[:4], c + _DCOL[:4]
        inside = (nr >= 0) & (nr < g) & (nc >= 0) & (nc < g)  # [N, 4]
        dist = jnp.abs(r - state.prey_pos[None, :, 0]) + jnp.abs(c - state.prey_pos[None, :, 1])  # [N, P]
        prey_adjacent = jnp.any((dist == 1) & state.prey_alive[None, :], axis=1)
        active = ~state.frozen
        return jnp.concatenate(
            [inside & active[:, None], jnp.ones((self.n_agents, 1), bool), (prey_adjacent & active)[:, None]], axis=1)

    def observe(self, state: PredatorPreyState, reward=0.0) -> TimeStep:
        """The TimeStep an agent sees in `state` (reward as given; done flags from the state)."""
        terminated = jnp.logical_or(~jnp.any(state.prey_alive), jnp.all(state.frozen))
        padded = self._padded_grid(state)
        return TimeStep(
            obs=self._observations(padded, state),
            global_state=self._global_state(padded),
            avail_actions=self._avail_actions(state),
            reward=jnp.full((self.n_agents,), reward, jnp.float32),
            terminated=terminated,
            truncated=state.time >= self.time_limit,
            info={"prey_caught": jnp.sum(~state.prey_alive).astype(jnp.int32),
                  "agents_frozen": jnp.sum(state.frozen).astype(jnp.int32)},
        )

    # --- the env contract ---------------------------------------------------------------------
    def reset(self, key) -> tuple[PredatorPreyState, TimeStep]:
        g, n = self.grid_size, self.n_agents
        # distinct uniformly random cells (the k largest of g² uniform draws; as DCG's one-by-one placement)
        _, cells = jax.lax.top_k(jax.random.uniform(key, (g * g,)), n + self.n_prey)
        pos = jnp.stack([cells // g, cells % g], axis=-1)
        state = PredatorPreyState(agent_pos=pos[:n], frozen=jnp.zeros(n, bool), prey_pos=pos[n:],
                                  prey_alive=jnp.ones(self.n_prey, bool), time=jnp.int32(0))
        return state, self.observe(state)

    def step(self, key, state: PredatorPreyState, actions) -> tuple[PredatorPreyState, TimeStep]:
        g = self.grid_size
        actions = jnp.clip(jnp.asarray(actions, jnp.int32), 0, CATCH)
        k_agent_order, k_prey_order, k_prey_moves = jax.random.split(key, 3)
        drow, dcol = jnp.asarray(_DROW), jnp.asarray(_DCOL)
        agent_cells = state.agent_pos[:, 0] * g + state.agent_pos[:, 1]
        prey_cells = state.prey_pos[:, 0] * g + state.prey_pos[:, 1]
        active = ~state.frozen

        # 1. agents move one at a time, in random order; blocked by walls, present agents and prey
        def move_agent(cells, i):
            r, c = cells[i] // g + drow[actions[i]], cells[i] % g + dcol[actions[i]]
            target = r * g + c
            occupied = jnp.any((cells == target) & active) | jnp.any((prey_cells == target) & state.prey_alive)
            ok = active[i] & (r >= 0) & (r < g) & (c >= 0) & (c < g) & ~occupied
            return cells.at[i].set(jnp.where(ok, target, cells[i])), None

        order = jax.random.permutation(k_agent_order, self.n_agents)
        agent_cells, _ = jax.lax.scan(move_agent, agent_cells, order)
        agent_row, agent_col = agent_cells // g, agent_cells % g
        wants_catch = actions == CATCH
        needed = self._prey_table(self.agents_to_catch_stag, self.agents_to_catch_hare, jnp.int32)
        prey_reward = self._prey_table(self.stag_reward, self.hare_reward, jnp.float32)

        # 2. prey, one at a time in random order: capture (or miscapture), else a random free step
        def process_prey(carry, x):
            cells, alive, frozen, reward = carry
            j, noise = x
            here = cells[j]
            r, c = here // g, here % g
            adjacent = jnp.abs(agent_row - r) + jnp.abs(agent_col - c) == 1
            catchers = adjacent & wants_catch & ~frozen
            n_catchers = jnp.sum(catchers)
            present = alive[j]
            caught = present & (n_catchers >= needed[j])
            missed = present & (n_catchers > 0) & ~caught
            reward = reward + jnp.where(caught, prey_reward[j], 0.0) + jnp.where(missed, self.punishment, 0.0)
            frozen = frozen | (catchers & caught)
            alive = alive.at[j].set(present & ~caught)
            nr, nc = r + drow[:4], c + dcol[:4]
            targets = nr * g + nc  # [4]
            blocked = (jnp.any((agent_cells[None, :] == targets[:, None]) & ~frozen[None, :], axis=1)
                       | jnp.any((cells[None, :] == targets[:, None]) & alive[None, :], axis=1))
            free = (nr >= 0) & (nr < g) & (nc >= 0) & (nc < g) & ~blocked
            choice = jnp.argmax(jnp.where(free, noise, -1.0))  # uniform among the free neighbours
            moves = present & ~caught & jnp.any(free)
            cells = cells.at[j].set(jnp.where(moves, targets[choice], here))
            return (cells, alive, frozen, reward), None

        prey_order = jax.random.permutation(k_prey_order, self.n_prey)
        noise = jax.random.uniform(k_prey_moves, (self.n_prey, 4))
        (prey_cells, prey_alive, frozen, reward), _ = jax.lax.scan(
            process_prey, (prey_cells, state.prey_alive, state.frozen, jnp.float32(0.0)),
            (prey_order, noise))

        new_state = PredatorPreyState(
            agent_pos=jnp.stack([agent_row, agent_col], axis=-1),
            frozen=frozen,
            prey_pos=jnp.stack([prey_cells // g, prey_cells % g], axis=-1),
            prey_alive=prey_alive,
            time=state.time + 1,
        )
        return new_state, self.observe(new_state, reward)

    # --- drawing ------------------------------------------------------------------------------
    def render(self, state: PredatorPreyState, cell_px: int = 24) -> np.ndarray:
        """uint8 RGB [grid_size·cell_px, grid_size·cell_px, 3] (host-side numpy). Agents blue discs,
        stags brown squares, hares green discs; frozen agents as small grey discs where nothing stands."""
        g, px = self.grid_size, cell_px
        agent_pos, frozen = np.asarray(state.agent_pos), np.asarray(state.frozen)
        prey_pos, alive = np.asarray(state.prey_pos), np.asarray(state.prey_alive)
        img = np.full((g * px, g * px, 3), 250, np.uint8)
        img[::px, :] = 200
        img[:, ::px] = 200
        img[-1, :] = 200
        img[:, -1] = 200
        yy, xx = np.mgrid[:px, :px] - (px - 1) / 2
        disc = yy**2 + xx**2 <= (0.38 * px) ** 2
        small = yy**2 + xx**2 <= (0.2 * px) ** 2
        square = (np.abs(yy) <= 0.36 * px) & (np.abs(xx) <= 0.36 * px)

        def paint(cell, mask, colour):
            r, c = int(cell[0]), int(cell[1])
            img[r * px:(r + 1) * px, c * px:(c + 1) * px][mask] = colour

        for p in agent_pos[frozen]:
            paint(p, small, (170, 170, 170))
        for k in np.flatnonzero(alive):
            if k < self.n_stags:
                paint(prey_pos[k], square, (150, 75, 0))
            else:
                paint(prey_pos[k], disc, (40, 160, 60))
        for p in agent_pos[~frozen]:
            paint(p, disc, (30, 90, 200))
        return img


# --- registration -------------------------------------------------------------------------------
def _params(**kw) -> tuple[tuple[str, Any], ...]:
    return tuple(kw.items())


@register_env(
    "predator-prey",
    "DCG stag hunt (ReMIX §5.1): 10x10 grid, 8 agents, 8 stags, 2 must catch a stag together (+10); a lone "
    "catch gives the miscapture punishment p",
    ("grid",),
)
def predator_prey(grid_size: int = 10, n_agents: int = 8, n_stags: int = 8, n_hares: int = 0,
                  punishment: float = 0.0, stag_reward: float = 10.0, hare_reward: float = 1.0,
                  agents_to_catch_stag: int = 2, agents_to_catch_hare: int = 1, time_limit: int = 200,
                  sight: int = 2) -> PredatorPrey:
    kw = dict(grid_size=grid_size, n_agents=n_agents, n_stags=n_stags, n_hares=n_hares, punishment=punishment,
              stag_reward=stag_reward, hare_reward=hare_reward, agents_to_catch_stag=agents_to_catch_stag,
              agents_to_catch_hare=agents_to_catch_hare, time_limit=time_limit, sight=sight)
    return PredatorPrey.create(**kw, name="predator-prey", params=_params(**kw))


def _with_punishment(p: float):
    name = f"predator-prey:p{p:g}"

    # same parameters as `predator_prey` except the punishment, which the name fixes
    def build(grid_size: int = 10, n_agents: int = 8, n_stags: int = 8, n_hares: int = 0,
              stag_reward: float = 10.0, hare_reward: float = 1.0, agents_to_catch_stag: int = 2,
              agents_to_catch_hare: int = 1, time_limit: int = 200, sight: int = 2) -> PredatorPrey:
        kw = dict(grid_size=grid_size, n_agents=n_agents, n_stags=n_stags, n_hares=n_hares,
                  stag_reward=stag_reward, hare_reward=hare_reward, agents_to_catch_stag=agents_to_catch_stag,
                  agents_to_catch_hare=agents_to_catch_hare, time_limit=time_limit, sight=sight)
        return PredatorPrey.create(**kw, punishment=p, name=name, params=_params(punishment=p, **kw))

    build.__name__ = f"predator_prey_p{p:g}".replace("-", "m").replace(".", "_")
    return name, build


for _p in REMIX_PUNISHMENTS:
    _name, _build = _with_punishment(_p)
    register_env(_name, f"predator-prey with the ReMIX miscapture punishment p = {_p:g}", ("grid",))(_build)
