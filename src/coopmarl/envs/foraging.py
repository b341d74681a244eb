"""Level-Based Foraging (LBF), following the rules of the `lbforaging` 2.0 package, in pure JAX.

A `grid_size x grid_size` grid holds `n_agents` agents and up to `n_foods` food items, each with a
level. An agent loads a food by choosing LOAD while 4-adjacent to it; the food is collected when the
levels of the adjacent agents that load it sum to at least the food's level.

Rules (those of `lbforaging.foraging.environment.ForagingEnv`; positions are (row, col)):

- Actions: 0 NONE, 1 NORTH (row - 1), 2 SOUTH (row + 1), 3 WEST (col - 1), 4 EAST (col + 1), 5 LOAD.
- Valid actions (`avail_actions`): NONE always; a move when the target cell is inside the grid and holds
  no food (other agents do not make a move invalid); LOAD when a food is 4-adjacent. An invalid action
  that is taken anyway is executed as NONE (no penalty), as lbforaging does.
- Movement is simultaneous. Every agent claims a cell: its target for a move, its own cell for
  NONE/LOAD. An agent moves iff no other agent claims the same cell; otherwise it stays where it is.
  So two agents moving into one cell both stay, an agent cannot move into the cell of an agent that
  stays, and two agents may swap cells. lbforaging quirk, kept on purpose: a *failed* mover does not
  claim its own cell, so in a chain (A moves onto B's cell while B's own move is blocked) A and B end
  up sharing a cell.
- Loading: for each food, the levels of the adjacent agents choosing LOAD are summed; if the sum is at
  least the food's level, the food is removed and each of those agents gets
  `level_i * food_level / (sum_of_their_levels * total_food_level_spawned_at_reset)`; otherwise each
  of them gets `-penalty` (not normalised). Spawning keeps foods at least two cells apart in a row or
  column and out of each other's 3x3 neighbourhood, so an agent is adjacent to at most one food and the
  result does not depend on lbforaging's (arbitrary, set-order) processing of loaders.
- Rewards: lbforaging's rewards are per agent and differ between agents. By default (`common_reward=True`,
  the library's contract for cooperative envs: the team reward repeated for every agent) `reward[i]` is
  the sum of the agents' rewards, the team reward EPyMARL trains on for LBF (`reward_scalarisation="sum"`);
  a fully collected episode then returns 1 (less penalties). `common_reward=False` gives lbforaging's
  per-agent rewards in `reward`, and `spec.reward_scalarisation = "sum"` makes the team's reward (every
  logged team return) their sum, as EPyMARL's. Either way `info["agent_reward"]` holds the per-agent rewards.
- The episode terminates when all food is collected and is truncated after `time_limit` steps (50).
- Observation of agent i (`3 * n_foods + 3 * n_agents` floats): (row, col, level) of every visible food
  in row-major order of position, padded with (-1, -1, 0), then (row, col, level) of every visible
  agent, agent i first, then the others by index, padded with (-1, -1, 0). With `sight = s`, coordinates
  are relative to the corner of agent i's window, `pos - max(own_pos - s, 0)`; a food is visible when
  its row and column are within s of agent i's, an agent when those relative coordinates lie in
  [0, 2s] (near the top/left border this window reaches further than the food's: lbforaging's rule).
  `sight=None` (or 0) is the full grid (lbforaging's `sight = grid size`): absolute coordinates.
- Reset: agent levels uniform in [min_player_level, max_player_level], agents on distinct uniformly
  random cells. Foods one after another, each uniform among the valid cells: not on the border, not on
  an agent, no food in its 3x3 neighbourhood, none two cells away in its row or column (a food with no
  valid cell left is not spawned). Food levels uniform in [min_food_level, cap], where cap =
  `max_food_level` or, when None, the sum of the three lowest agent levels; `force_coop` sets every
  food's level to cap.

Global state (`3 * n_foods + 3 * n_agents + 1` floats, full information, absolute coordinates):
(row, col, level) of each food slot in spawn order ((-1, -1, 0) once collected or never spawned), then
(row, col, level) of each agent by index, then the elapsed fraction of the time limit, `step / time_limit`.

Deviations from lbforaging, both in the reset distribution only: lbforaging's rejection sampling
stops after 1,000 attempts (we spawn while a valid cell exists), and it rejects agent cells that
other agents occupied *in the previous episode* (a stale-position bug); we sample distinct cells
uniformly. Step dynamics, observations and rewards are identical (tests/test_foraging.py checks them
against the package, step by step).
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from coopmarl.envs.core import EnvSpec, TimeStep, integer_dtype
from coopmarl.envs.registry import register_env
from coopmarl.errors import ParamError
from coopmarl.ranges import INT32_MAX, total_error

NONE, NORTH, SOUTH, WEST, EAST, LOAD = range(6)
MAX_GRID_SIZE = math.isqrt(INT32_MAX)  # 46340: cell indices row * grid_size + col are int32
ACTION_NAMES = ("none", "north", "south", "west", "east", "load")
# (d_row, d_col) of each action; NONE and LOAD stay
_DELTAS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], dtype=np.int32)


@struct.dataclass
class ForagingState:
    agent_pos: jax.Array  # int32 [N, 2] (row, col)
    agent_level: jax.Array  # int32 [N]
    food_pos: jax.Array  # int32 [F, 2] (row, col); meaningless where food_level == 0
    food_level: jax.Array  # int32 [F]; 0 = collected or never spawned
    food_spawned: jax.Array  # int32 []: total level of the food spawned at reset (reward normaliser)
    step: jax.Array  # int32 []: steps taken in this episode


@struct.dataclass
class Foraging:
    """Level-Based Foraging with lbforaging's rules (see the module docstring). All fields are static."""

    spec: EnvSpec = struct.field(pytree_node=False)
    grid_size: int = struct.field(pytree_node=False)
    n_foods: int = struct.field(pytree_node=False)
    min_player_level: int = struct.field(pytree_node=False)
    max_player_level: int = struct.field(pytree_node=False)
    min_food_level: int = struct.field(pytree_node=False)
    max_food_level: int | None = struct.field(pytree_node=False)
    force_coop: bool = struct.field(pytree_node=False)
    penalty: float = struct.field(pytree_node=False)
    sight: int = struct.field(pytree_node=False)  # effective sight; >= grid_size means the full grid
    time_limit: int = struct.field(pytree_node=False)
    common_reward: bool = struct.field(pytree_node=False)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, grid_size: int = 8, n_agents: int = 2, n_foods: int = 2, min_player_level: int = 1,
               max_player_level: int = 2, min_food_level: int = 1, max_food_level: int | None = None,
               force_coop: bool = False, penalty: float = 0.0, sight: int | None = None,
               time_limit: int = 50, common_reward: bool = True, name: str = "foraging",
               params: tuple = ()) -> "Foraging":
        check_sizes(grid_size, n_agents, n_foods)
        if not 1 <= min_player_level <= max_player_level:
            raise ParamError(f"foraging needs 1 <= min_player_level <= max_player_level, got "
                             f"{min_player_level}, {max_player_level}")
        if min_food_level < 1:
            raise ParamError(f"foraging min_food_level must be an integer >= 1, got {min_food_level}")
        if max_food_level is not None and max_food_level < min_food_level:
            raise ParamError(f"foraging needs min_food_level <= max_food_level, got {min_food_level}, {max_food_level}")
        if max_food_level is None and min_food_level > min_player_level * min(3, n_agents):
            raise ParamError(
                f"foraging min_food_level={min_food_level} exceeds the smallest possible default food cap "
                f"(sum of the three lowest agent levels, here >= {min_player_level * min(3, n_agents)}); "
                "lower it or set max_food_level")
        # the reward's integer arithmetic (int32): level x food level over loaders' levels x food spawned
        food_cap = max_player_level * min(3, n_agents) if max_food_level is None else max_food_level
        if n_agents * max_player_level * n_foods * food_cap > INT32_MAX:
            raise ParamError(
                f"foraging levels too large: the reward's normaliser (loading agents' levels x total food level) can "
                f"reach n_agents·max_player_level·n_foods·(largest food level) = {n_agents} x {max_player_level} x "
                f"{n_foods} x {food_cap}, beyond int32's range ({INT32_MAX}); use smaller levels")
        if sight is not None and sight < 0:
            raise ParamError(f"foraging sight must be None, 0 (full grid) or a positive integer, got {sight}")
        if time_limit < 1:
            raise ParamError(f"foraging time_limit must be an integer >= 1, got {time_limit}")
        if not (np.isfinite(penalty) and penalty >= 0):
            raise ParamError(f"foraging penalty must be a finite number >= 0 (subtracted from the reward of each agent "
                             f"in a failed load), got {penalty}")
        too_large = total_error("an episode's team return", n_agents * float(penalty) * time_limit,
                                "foraging penalty, n_agents and time_limit")
        if too_large:
            raise ParamError(too_large)
        full = sight is None or sight == 0 or sight >= grid_size
        spec = EnvSpec(
            name=name, n_agents=n_agents, obs_dim=3 * (n_foods + n_agents),
            state_dim=3 * (n_foods + n_agents) + 1, action_kind="discrete", n_actions=6,
            horizon=int(time_limit), params=tuple(params),
            reward_scalarisation="shared" if common_reward else "sum",  # the team's reward: the sum either way
            # observations are integers (positions in the grid or -1, levels); the state ends with step / time_limit
            obs_dtype=integer_dtype(-1, max(int(grid_size), int(max_player_level), int(food_cap))),
        )
        return cls(spec=spec, grid_size=int(grid_size), n_foods=int(n_foods),
                   min_player_level=int(min_player_level), max_player_level=int(max_player_level),
                   min_food_level=int(min_food_level),
                   max_food_level=None if max_food_level is None else int(max_food_level),
                   force_coop=bool(force_coop), penalty=float(penalty),
                   sight=int(grid_size) if full else int(sight), time_limit=int(time_limit),
                   common_reward=bool(common_reward))

    @property
    def n_agents(self) -> int:
        return self.spec.n_agents

    @property
    def full_sight(self) -> bool:
        return self.sight >= self.grid_size

    # --- the env contract ---------------------------------------------------------------------
    # (jitted with the env static, so that calls from plain Python are fast too; inside a caller's
    # jit/vmap they are simply inlined)
    @partial(jax.jit, static_argnums=0)
    def reset(self, key) -> tuple[ForagingState, TimeStep]:
        state = self.spawn(key)
        return state, self.timestep(state)

    @partial(jax.jit, static_argnums=0)
    def step(self, key, state: ForagingState, actions) -> tuple[ForagingState, TimeStep]:
        del key  # the dynamics are deterministic
        state, agent_reward = self.transition(state, actions)
        return state, self.timestep(state, agent_reward)

    # --- reset --------------------------------------------------------------------------------
    def spawn(self, key) -> ForagingState:
        """A fresh episode's state (lbforaging's spawn rules; see the module docstring)."""
        g, n, f = self.grid_size, self.n_agents, self.n_foods
        # one draw of 2n + 2f uniforms: agent levels, agent cells, food cells, food levels
        u = jax.random.uniform(key, (2 * n + 2 * f,))
        u_level, u_cell, u_food, u_food_level = u[:n], u[n:2 * n], u[2 * n:2 * n + f], u[2 * n + f:]
        agent_level = _uniform_int(u_level, self.min_player_level, self.max_player_level)
        rows = jnp.arange(g)[:, None]
        cols = jnp.arange(g)[None, :]

        def place_agent(free, u_i):  # agents on distinct uniformly random cells
            r, c, _ = _pick_free(free, u_i)
            return free & ~((rows == r) & (cols == c)), jnp.stack([r, c])

        free, agent_pos = jax.lax.scan(place_agent, jnp.ones((g, g), bool), u_cell)

        def place_food(free, u_i):  # each uniform among the cells still valid
            r, c, ok = _pick_free(free, u_i)
            dr, dc = jnp.abs(rows - r), jnp.abs(cols - c)
            blocked = ((dr <= 1) & (dc <= 1)) | ((dc == 0) & (dr <= 2)) | ((dr == 0) & (dc <= 2))
            return free & ~(blocked & ok), (jnp.stack([r, c]), ok)

        # food: off the border, not on an agent, one after another; a food blocks its 3x3 box and the
        # cells two away in its row and column
        free = free & (rows >= 1) & (rows <= g - 2) & (cols >= 1) & (cols <= g - 2)
        _, (food_pos, placed) = jax.lax.scan(place_food, free, u_food)

        if self.max_food_level is None:
            cap = jnp.sum(jnp.sort(agent_level)[: min(3, n)])
        else:
            cap = jnp.int32(self.max_food_level)
        low = cap if self.force_coop else jnp.int32(self.min_food_level)
        food_level = _uniform_int(u_food_level, low, cap)
        food_level = jnp.where(placed, food_level, 0).astype(jnp.int32)
        return ForagingState(agent_pos=agent_pos, agent_level=agent_level.astype(jnp.int32),
                             food_pos=food_pos, food_level=food_level,
                             food_spawned=jnp.sum(food_level).astype(jnp.int32), step=jnp.int32(0))

    def make_state(self, agent_pos, agent_level, food_pos, food_level, step: int = 0,
                   food_spawned=None) -> ForagingState:
        """A state from explicit positions and levels (tests, scripted scenarios).

        `food_spawned` (the reward normaliser) defaults to the sum of `food_level`. Foods should respect
        the spawn rule (no two foods adjacent to one cell), as every reset state does.
        """
        food_level = jnp.asarray(food_level, jnp.int32).reshape(-1)
        food_pos = jnp.asarray(food_pos, jnp.int32).reshape(-1, 2)
        pad = self.n_foods - food_level.shape[0]
        if pad < 0:
            raise ValueError(f"make_state got {food_level.shape[0]} foods; this env has {self.n_foods} slots")
        food_level = jnp.concatenate([food_level, jnp.zeros(pad, jnp.int32)])
        food_pos = jnp.concatenate([food_pos, jnp.zeros((pad, 2), jnp.int32)])
        spawned = jnp.sum(food_level) if food_spawned is None else food_spawned
        return ForagingState(agent_pos=jnp.asarray(agent_pos, jnp.int32).reshape(self.n_agents, 2),
                             agent_level=jnp.asarray(agent_level, jnp.int32).reshape(self.n_agents),
                             food_pos=food_pos, food_level=food_level,
                             food_spawned=jnp.asarray(spawned, jnp.int32), step=jnp.asarray(step, jnp.int32))

    # --- dynamics -----------------------------------------------------------------------------
    def avail_actions(self, state: ForagingState) -> jax.Array:
        """bool [N, 6]: lbforaging's valid actions (moves blocked by the border and by food only)."""
        g = self.grid_size
        alive = state.food_level > 0
        target = state.agent_pos[:, None, :] + jnp.asarray(_DELTAS[1:5])[None]  # [N, 4, 2]
        inside = jnp.all((target >= 0) & (target < g), -1)
        on_food = jnp.any(jnp.all(target[:, :, None, :] == state.food_pos[None, None], -1) & alive, -1)
        dist = jnp.sum(jnp.abs(state.agent_pos[:, None, :] - state.food_pos[None]), -1)  # [N, F]
        can_load = jnp.any((dist == 1) & alive, -1)
        n = self.n_agents
        return jnp.concatenate([jnp.ones((n, 1), bool), inside & ~on_food, can_load[:, None]], -1)

    def transition(self, state: ForagingState, actions) -> tuple[ForagingState, jax.Array]:
        """One lbforaging step: returns (next state, lbforaging's per-agent rewards [N])."""
        actions = jnp.asarray(actions, jnp.int32)
        avail = self.avail_actions(state)
        in_range = (actions >= 0) & (actions < 6)
        chosen = jnp.take_along_axis(avail, jnp.clip(actions, 0, 5)[:, None], -1)[:, 0]
        actions = jnp.where(in_range & chosen, actions, NONE)  # invalid -> NONE

        # movement: an agent moves iff no other agent claims its target cell
        target = state.agent_pos + jnp.asarray(_DELTAS)[actions]
        claims = jnp.sum(jnp.all(target[:, None, :] == target[None, :, :], -1), -1)
        agent_pos = jnp.where((claims == 1)[:, None], target, state.agent_pos)

        # loading: per food, the loaders adjacent to it (each agent is adjacent to at most one food)
        alive = state.food_level > 0
        loading = actions == LOAD
        dist = jnp.sum(jnp.abs(agent_pos[:, None, :] - state.food_pos[None]), -1)  # [N, F]
        loader = (dist == 1) & alive[None] & loading[:, None]  # [N, F]
        load_sum = jnp.sum(jnp.where(loader, state.agent_level[:, None], 0), 0)  # [F]
        success = alive & (load_sum > 0) & (load_sum >= state.food_level)
        failed = jnp.any(loader, 0) & ~success
        # an agent's reward comes from its (only) adjacent food; the division is done on [N] arrays of
        # equal shape (XLA turns x / broadcast(y) into x * (1 / y), which is not correctly rounded)
        took = loader & success[None]
        food_taken = jnp.sum(jnp.where(took, state.food_level[None], 0), -1)  # [N]
        took_sum = jnp.sum(jnp.where(took, load_sum[None], 0), -1)  # [N]
        num = (state.agent_level * food_taken).astype(jnp.float32)
        den = jnp.maximum(took_sum * state.food_spawned, 1).astype(jnp.float32)
        gain = num / den
        lost = jnp.any(loader & failed[None], -1)
        reward = (gain - jnp.where(lost, jnp.float32(self.penalty), 0.0)).astype(jnp.float32)

        food_level = jnp.where(success, 0, state.food_level)
        return state.replace(agent_pos=agent_pos, food_level=food_level, step=state.step + 1), reward

    # --- observations -------------------------------------------------------------------------
    def observe(self, state: ForagingState) -> jax.Array:
        """float32 [N, 3F + 3N]: every agent's lbforaging observation vector."""
        n, s, g = self.n_agents, self.sight, self.grid_size
        pos, fpos = state.agent_pos, state.food_pos
        alive = state.food_level > 0
        if self.full_sight:
            corner = jnp.zeros_like(pos)
            food_seen = jnp.broadcast_to(alive, (n, self.n_foods))
        else:
            corner = jnp.maximum(pos - s, 0)  # [N, 2]: top-left corner of each agent's window
            food_seen = alive[None] & jnp.all(jnp.abs(fpos[None] - pos[:, None]) <= s, -1)  # [N, F]

        # foods in row-major order of position: slot = number of seen foods before this one
        key = fpos[:, 0] * g + fpos[:, 1]
        before = food_seen[:, None, :] & (key[None, None, :] < key[None, :, None])  # [N, F(this), F(other)]
        food_rank = jnp.where(food_seen, jnp.sum(before, -1), -1)  # [N, F]
        food_vals = jnp.concatenate(
            [(fpos[None] - corner[:, None]), jnp.broadcast_to(state.food_level[None, :, None], food_rank.shape + (1,))],
            -1)  # [N, F, 3]
        food_obs = _fill_slots(food_rank, food_vals, self.n_foods)

        # agents: self first, then the other seen agents by index
        rel = pos[None] - corner[:, None]  # [N(observer), N(observed), 2]
        eye = jnp.eye(n, dtype=bool)
        if self.full_sight:
            seen = jnp.ones((n, n), bool)
        else:
            seen = jnp.all((rel >= 0) & (rel <= 2 * s), -1) | eye
        others = seen & ~eye
        agent_rank = jnp.where(eye, 0, jnp.where(others, jnp.cumsum(others, -1), -1))
        agent_vals = jnp.concatenate(
            [rel, jnp.broadcast_to(state.agent_level[None, :, None], (n, n, 1))], -1)
        agent_obs = _fill_slots(agent_rank, agent_vals, n)
        return jnp.concatenate([food_obs.reshape(n, -1), agent_obs.reshape(n, -1)], -1)

    def global_state(self, state: ForagingState) -> jax.Array:
        """float32 [3F + 3N + 1]: foods by slot ((-1, -1, 0) when gone), agents by index, step / time_limit."""
        alive = (state.food_level > 0)[:, None]
        food = jnp.where(alive, jnp.concatenate([state.food_pos, state.food_level[:, None]], -1), jnp.array([-1, -1, 0]))
        agents = jnp.concatenate([state.agent_pos, state.agent_level[:, None]], -1)
        frac = (state.step / self.time_limit)[None]
        return jnp.concatenate([food.reshape(-1), agents.reshape(-1), frac]).astype(jnp.float32)

    @partial(jax.jit, static_argnums=0)
    def timestep(self, state: ForagingState, agent_reward=None) -> TimeStep:
        """The TimeStep seen in `state`, given the per-agent rewards of the step into it (default zero)."""
        if agent_reward is None:
            agent_reward = jnp.zeros((self.n_agents,), jnp.float32)
        reward = jnp.full_like(agent_reward, jnp.sum(agent_reward)) if self.common_reward else agent_reward
        return TimeStep(
            obs=self.observe(state),
            global_state=self.global_state(state),
            avail_actions=self.avail_actions(state),
            reward=reward,
            terminated=jnp.all(state.food_level == 0),
            truncated=state.step >= self.time_limit,
            info={"food_left": jnp.sum(state.food_level > 0).astype(jnp.int32), "agent_reward": agent_reward},
        )

    # --- rendering ----------------------------------------------------------------------------
    def render(self, state: ForagingState, cell: int = 32) -> np.ndarray:
        """uint8 [H, W, 3] picture: grey grid, food as green squares, agents as coloured squares;
        the dark pips in a square are its level (up to 9 drawn)."""
        state = jax.device_get(state)
        g = self.grid_size
        img = np.full((g * cell + 1, g * cell + 1, 3), 255, np.uint8)
        img[::cell, :] = 160
        img[:, ::cell] = 160
        palette = np.array([[31, 119, 180], [255, 127, 14], [148, 103, 189], [214, 39, 40], [140, 86, 75],
                            [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.uint8)

        def square(r, c, colour, level, inset):
            y0, x0 = r * cell + 1 + inset, c * cell + 1 + inset
            size = cell - 1 - 2 * inset
            img[y0:y0 + size, x0:x0 + size] = colour
            pip = max(cell // 10, 2)
            for k in range(min(int(level), 9)):
                py = y0 + size // 4 * (1 + k // 3) - pip // 2
                px = x0 + size // 4 * (1 + k % 3) - pip // 2
                img[py:py + pip, px:px + pip] = 30

        for (r, c), lvl in zip(np.asarray(state.food_pos), np.asarray(state.food_level)):
            if lvl > 0:
                square(r, c, (44, 160, 44), lvl, cell // 8)
        for i, ((r, c), lvl) in enumerate(zip(np.asarray(state.agent_pos), np.asarray(state.agent_level))):
            square(r, c, palette[i % len(palette)], lvl, cell // 5 + (i % 2) * 2)  # overlapping agents stay visible
        return img


def check_sizes(grid_size: int, n_agents: int, n_foods: int) -> None:
    """ParamError unless the grid holds the agents and foods a reset spawns (see the module docstring): food
    spawns only on the (grid_size - 2)^2 inner cells (off the border) that no agent occupies, and never in a
    2x2 block with another food (no two foods may be adjacent to one cell)."""
    if not 3 <= grid_size <= MAX_GRID_SIZE:
        raise ParamError(f"foraging grid_size must be an integer in [3, {MAX_GRID_SIZE}] (food spawns off the border; "
                         f"cell indices grid_size^2 must fit int32), got {grid_size}")
    if n_agents < 1 or n_foods < 1:
        raise ParamError(f"foraging n_agents and n_foods must be integers >= 1, got {n_agents}, {n_foods}")
    inner = (grid_size - 2) ** 2
    if n_agents >= inner:
        raise ParamError(
            f"foraging: n_agents={n_agents} agents do not leave room for food on a {grid_size}x{grid_size} grid: food "
            f"spawns only on the {inner} inner cell(s) (off the border) that no agent occupies, so a reset could "
            f"spawn no food at all and the episode would be over before it starts; n_agents must be < "
            f"(grid_size - 2)^2 = {inner}: use fewer agents or a larger grid_size")
    most = math.ceil((grid_size - 2) / 2) ** 2
    if n_foods > most:
        raise ParamError(
            f"foraging: n_foods={n_foods} foods cannot fit on a {grid_size}x{grid_size} grid: food spawns only on "
            f"the {grid_size - 2}x{grid_size - 2} inner cells (off the border), at most one per 2x2 block of them "
            f"(no two foods may be adjacent to one cell), so at most {most} fit; use n_foods <= {most} or a larger "
            "grid_size")


def _uniform_int(u, low, high):
    """Integers uniform in [low, high] (inclusive) from uniforms u in [0, 1)."""
    return jnp.minimum(low + jnp.floor(u * (high - low + 1)).astype(jnp.int32), high).astype(jnp.int32)


def _pick_free(free, u):
    """A uniformly random true cell (row, col) of the bool grid `free` [g, g] given a uniform u, and whether
    there was one: the k-th free cell in row-major order, k = floor(u * count), found row first.
    (Running counts as small matmuls with a triangular matrix: faster vmapped on CPU than cumsum/gathers.)"""
    g = free.shape[0]
    idx = jnp.arange(g)
    tri = (idx[:, None] >= idx[None, :]).astype(jnp.float32)  # tri[i, j] = [j <= i]
    per_row = jnp.sum(free, 1).astype(jnp.float32)
    count = jnp.sum(per_row)
    k = jnp.minimum(jnp.floor(u * count), count - 1)
    row = jnp.sum(tri @ per_row <= k).astype(jnp.int32)  # rows whose running count is <= k come first
    in_row = k - jnp.sum(jnp.where(idx < row, per_row, 0.0))
    row_free = jnp.any(free & (idx[:, None] == row), 0).astype(jnp.float32)
    col = jnp.sum(tri @ row_free <= in_row).astype(jnp.int32)
    return row, col, count > 0


def _fill_slots(rank, vals, n_slots):
    """Place vals[i, j] into slot rank[i, j] (-1 = not placed); empty slots are (-1, -1, 0). [N, n_slots, 3]."""
    onehot = rank[:, None, :] == jnp.arange(n_slots)[None, :, None]  # [N, slot, j]
    filled = jnp.any(onehot, -1, keepdims=True)
    placed = jnp.einsum("nsj,njc->nsc", onehot.astype(jnp.float32), vals.astype(jnp.float32))
    return jnp.where(filled, placed, jnp.array([-1.0, -1.0, 0.0], jnp.float32))


# --- registration -----------------------------------------------------------------------------------

LBF_REWARD_SCALARISATION = "shared (common_reward=false: sum)"


@register_env(
    "foraging",
    "Level-Based Foraging (lbforaging 2.0 rules): agents and food with levels on a grid; team reward = sum of "
    "lbforaging's per-agent rewards (common_reward=False: per agent)",
    ("grid",), reward_scalarisation=LBF_REWARD_SCALARISATION,
)
def foraging(grid_size: int = 8, n_agents: int = 2, n_foods: int = 2, min_player_level: int = 1,
             max_player_level: int = 2, min_food_level: int = 1, max_food_level: int | None = None,
             force_coop: bool = False, penalty: float = 0.0, sight: int | None = None, time_limit: int = 50,
             common_reward: bool = True) -> Foraging:
    kw = dict(grid_size=grid_size, n_agents=n_agents, n_foods=n_foods, min_player_level=min_player_level,
              max_player_level=max_player_level, min_food_level=min_food_level, max_food_level=max_food_level,
              force_coop=force_coop, penalty=penalty, sight=sight, time_limit=time_limit,
              common_reward=common_reward)
    return Foraging.create(**kw, name="foraging", params=tuple(kw.items()))


_TASK_ID = re.compile(r"^(?:(?P<sight>\d+)s-)?(?P<size>\d+)x(?P=size)-(?P<agents>\d+)p-(?P<foods>\d+)f"
                      r"(?P<coop>-coop)?(?P<pen>-pen)?$")
DEFAULT_TASK_PENALTY = 0.1  # "-pen" tasks: MAOSQL does not state the value; lbforaging's "-pen" ids use 0.1


def task_params(task_id: str) -> dict[str, Any]:
    """The `foraging` parameters of an lbforaging-style task id, e.g. "2s-8x8-2p-2f-coop" or "10x10-3p-1f-pen"
    (lbforaging's "Foraging-2s-8x8-2p-2f-coop-v3" without the prefix and version)."""
    m = _TASK_ID.match(task_id)
    if m is None:
        raise ValueError(f"not an LBF task id: {task_id!r} (expected e.g. '8x8-2p-2f-coop', '2s-10x10-3p-3f', "
                         "'10x10-3p-1f-pen')")
    return dict(grid_size=int(m["size"]), n_agents=int(m["agents"]), n_foods=int(m["foods"]),
                force_coop=m["coop"] is not None, sight=int(m["sight"]) if m["sight"] else None,
                penalty=DEFAULT_TASK_PENALTY if m["pen"] else 0.0)


# MAOSQL Table 6 (paper 000) and the EPyMARL benchmark's LBF tasks (Papoudakis et al. 2021)
MAOSQL_TASKS = ("5x5-2p-1f-coop", "8x8-2p-2f-coop", "10x10-3p-5f", "10x10-3p-1f-pen", "12x12-6p-1f-pen")
EPYMARL_TASKS = ("8x8-2p-2f-coop", "2s-8x8-2p-2f-coop", "10x10-3p-3f", "2s-10x10-3p-3f", "15x15-3p-5f",
                 "15x15-4p-3f", "15x15-4p-5f")


def _task(task_id: str):
    base = task_params(task_id)
    name = f"lbf:{task_id}"

    def build(penalty: float = base["penalty"], time_limit: int = 50, common_reward: bool = True) -> Foraging:
        kw = dict(base, penalty=penalty, time_limit=time_limit, common_reward=common_reward)
        return Foraging.create(**kw, name=name, params=tuple(kw.items()))

    build.__name__ = "lbf_" + re.sub(r"\W", "_", task_id)
    return build


def _describe(task_id: str) -> str:
    p = task_params(task_id)
    size = p["grid_size"]
    parts = [f"LBF {size}x{size}, {p['n_agents']} agents, {p['n_foods']} food"]
    if p["force_coop"]:
        parts.append("coop (every food at the level cap)")
    parts.append(f"sight {p['sight']}" if p["sight"] else "full observability")
    if p["penalty"]:
        parts.append(f"failed loads penalised (penalty={DEFAULT_TASK_PENALTY} by default: MAOSQL does not "
                     "state the value)")
    parts.append("time limit 50")
    sources = [src for src, tasks in (("MAOSQL Table 6", MAOSQL_TASKS), ("EPyMARL benchmark", EPYMARL_TASKS))
               if task_id in tasks]
    return ", ".join(parts) + f" ({'; '.join(sources)})"


for _task_id in dict.fromkeys(MAOSQL_TASKS + EPYMARL_TASKS):
    register_env(f"lbf:{_task_id}", _describe(_task_id), ("grid", "lbf"),
                 reward_scalarisation=LBF_REWARD_SCALARISATION)(_task(_task_id))
