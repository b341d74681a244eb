"""Particle physics of the multi-agent particle environments (MPE), as pure JAX functions.

The world is E = N + L disc-shaped entities, the N agents first and then the L landmarks; its state is
two arrays, `pos` and `vel` (float32 [E, 2]). The static properties of the entities (size, mass,
whether they move or collide, the agents' acceleration) live in a hashable `World`.

One step of `dt` follows MPE (mpe2 `_mpe_utils/core.py`, `World.step`) exactly:

    F_e      = u_e + Σ_{e' ≠ e} c(e, e')                        (action force + contact forces)
    pos_e'   = pos_e + vel_e · dt                                (with the *old* velocity)
    vel_e'   = vel_e · (1 − damping) + F_e / m_e · dt
    vel_e'   = vel_e' · max_speed / |vel_e'|   if |vel_e'| > max_speed (when a max speed is set)

for movable entities; immovable ones keep their state. The contact force between two colliding
entities at distance d, whose sizes sum to d_min, is MPE's softplus-margin spring

    c(a, b) = contact_force · (pos_a − pos_b) / d · k · log(1 + exp(−(d − d_min) / k)),   k = contact_margin

(it acts on a, and its opposite on b). It is never exactly zero, but vanishes (underflows) once the
discs are more than a few margins apart. An agent's action force is its move direction times
`agent_accel` (MPE's "sensitivity", 5): discrete actions are MPE's five moves (no-op, left, right,
down, up); continuous actions are MPE's five non-negative numbers (a₀ unused, u = (a₂ − a₁, a₄ − a₃)),
clipped to [0, 1] as pettingzoo's ClipOutOfBoundsWrapper does.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

# MPE's discrete moves, in its order: no-op, left (−x), right (+x), down (−y), up (+y).
MOVES = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], dtype=np.float32)
N_MOVES = len(MOVES)
CONTINUOUS_ACTION_DIM = 5  # MPE's continuous action: (unused, left, right, down, up), each in [0, 1]

AGENT_COLOR = (0.35, 0.35, 0.85)
LANDMARK_COLOR = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class World:
    """Static physical description of N agents and L landmarks (MPE's defaults)."""

    n_agents: int
    n_landmarks: int
    agent_size: float = 0.05
    landmark_size: float = 0.05
    agent_accel: float = 5.0  # MPE's sensitivity: force per unit action
    agent_max_speed: float | None = None
    agent_mass: float = 1.0
    agents_collide: bool = True
    landmarks_collide: bool = False
    landmarks_movable: bool = False
    dt: float = 0.1
    damping: float = 0.25
    contact_force: float = 1e2
    contact_margin: float = 1e-3

    @property
    def n_entities(self) -> int:
        return self.n_agents + self.n_landmarks

    def _per_entity(self, agent_value, landmark_value, dtype=np.float64) -> np.ndarray:
        return np.array([agent_value] * self.n_agents + [landmark_value] * self.n_landmarks, dtype=dtype)

    @property
    def sizes(self) -> np.ndarray:  # [E]
        return self._per_entity(self.agent_size, self.landmark_size)

    @property
    def collides(self) -> np.ndarray:  # bool [E]
        return self._per_entity(self.agents_collide, self.landmarks_collide, bool)

    @property
    def movable(self) -> np.ndarray:  # bool [E]
        return self._per_entity(True, self.landmarks_movable, bool)

    @property
    def masses(self) -> np.ndarray:  # [E]; landmarks have MPE's default mass 1
        return self._per_entity(self.agent_mass, 1.0)


def _float():
    """JAX's default float type: float32, or float64 under `jax.enable_x64` (used to cross-check
    against mpe2's float64 physics without float32 rounding)."""
    return jnp.result_type(float)


# ---- actions -------------------------------------------------------------------------------------------


def discrete_action_force(world: World, actions: jax.Array) -> jax.Array:
    """int [N] move indices -> action forces [N, 2]. An index outside 0..4 acts as the no-op.

    The rows of `MOVES` written as comparisons (elementwise, fused; a table lookup is a gather)."""
    a = actions.astype(jnp.int32)
    dtype = _float()
    x = (a == 2).astype(dtype) - (a == 1).astype(dtype)  # right − left
    y = (a == 4).astype(dtype) - (a == 3).astype(dtype)  # up − down
    return jnp.stack([x, y], axis=-1) * world.agent_accel


def continuous_action_force(world: World, actions: jax.Array) -> jax.Array:
    """float [N, 5] in [0, 1] (clipped) -> action forces [N, 2]: u = (a₂ − a₁, a₄ − a₃) · accel."""
    a = jnp.clip(actions.astype(jnp.float32), 0.0, 1.0)
    u = jnp.stack([a[:, 2] - a[:, 1], a[:, 4] - a[:, 3]], axis=-1)  # in float32, as mpe2 does
    return u.astype(_float()) * world.agent_accel


# ---- geometry and forces ----------------------------------------------------------------------------------


def fold(op, x: jax.Array, axis: int = -1) -> jax.Array:
    """Reduce `x` over a small static `axis` with an elementwise binary `op` (jnp.add, jnp.minimum, …)
    by halving: ⌈log₂ n⌉ elementwise ops, which XLA fuses with their neighbours. On the CPU a
    `reduce` over a tiny axis is a separate kernel costing ~20 µs per call at 1024 envs, more than all
    the arithmetic around it. For n ≤ 3 the order is the sequential one, (x₀ ∘ x₁) ∘ x₂."""
    axis = axis % x.ndim
    while x.shape[axis] > 1:
        n = x.shape[axis]
        h = n // 2
        y = op(jax.lax.slice_in_dim(x, 0, h, axis=axis), jax.lax.slice_in_dim(x, h, 2 * h, axis=axis))
        x = y if n % 2 == 0 else jnp.concatenate([y, jax.lax.slice_in_dim(x, 2 * h, n, axis=axis)], axis=axis)
    return jnp.squeeze(x, axis)


def squared_norm(v: jax.Array) -> jax.Array:
    """|v|² over the last axis (of size 2), [...], written as x² + y²: an elementwise op that XLA fuses
    with its neighbours, where `sum(square(v), -1)` becomes a separate reduction kernel on the CPU
    (XLA may contract it into one fused multiply-add: a difference in the last bit, not more)."""
    return jnp.square(v[..., 0]) + jnp.square(v[..., 1])


def pairwise(pos: jax.Array) -> tuple[jax.Array, jax.Array]:
    """delta [E, E, 2] = pos_a − pos_b, and dist [E, E] (the diagonal's dist is set to 1, not 0)."""
    delta = pos[:, None, :] - pos[None, :, :]
    eye = jnp.eye(pos.shape[0], dtype=bool)
    dist = jnp.sqrt(jnp.where(eye, 1.0, squared_norm(delta)))  # safe on the diagonal (also for gradients)
    return delta, dist


def _index(idx: np.ndarray):
    """A static index as a slice where it is a contiguous range (a cheap slice, not a gather)."""
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return jnp.asarray(idx)


def _pair_tables(c: int):
    """For c entities: the unordered pairs (a, b), a < b, as index arrays [P], and for every ordered
    pair (i, j) the index of {i, j} among them and the sign of the force on i ([c, c]; sign 0 on the
    diagonal)."""
    a, b = np.triu_indices(c, 1)
    index = np.zeros((c, c), np.int32)
    index[a, b] = index[b, a] = np.arange(len(a))
    sign = np.zeros((c, c), np.float32)
    sign[a, b], sign[b, a] = 1.0, -1.0
    return a, b, index, sign


def contact_forces(world: World, pos: jax.Array) -> jax.Array:
    """Sum of the contact forces on each entity, [E, 2] (zero for immovable ones).

    Only the entities that collide (by default the N agents) are paired, and each unordered pair once:
    the force on b from a is exactly the negated force on a from b (same distance, negated delta), so
    the softplus — the costly part — is evaluated C(C−1)/2 times instead of E² (C colliding entities)."""
    colliding = np.flatnonzero(world.collides)
    c = len(colliding)
    if c < 2:
        return jnp.zeros_like(pos)
    sel = _index(colliding)
    p = pos[sel]
    a, b, index, sign = _pair_tables(c)
    delta = p[a] - p[b]  # [P, 2], pos_a − pos_b
    dist = jnp.sqrt(squared_norm(delta))
    sizes = world.sizes[colliding]
    dist_min = jnp.asarray(sizes[a] + sizes[b], pos.dtype)
    k = world.contact_margin
    penetration = jax.nn.softplus(-(dist - dist_min) / k) * k  # = logaddexp(0, x) · k
    force = world.contact_force * delta / dist[:, None] * penetration[:, None]  # [P, 2], on a from b
    on_i = force[index] * jnp.asarray(sign, pos.dtype)[..., None]  # [c, c, 2], on i from j (0 for i = j)
    total = fold(jnp.add, on_i, axis=1)
    total = jnp.where(jnp.asarray(world.movable[colliding])[:, None], total, 0.0)
    if isinstance(sel, slice) and sel.start == 0:  # the usual case: the colliding entities come first
        return jnp.concatenate([total, jnp.zeros_like(pos[sel.stop:])])
    return jnp.zeros_like(pos).at[sel].set(total)


def integrate(world: World, pos: jax.Array, vel: jax.Array, force: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MPE's integration of one step (see the module docstring); force [E, 2]."""
    movable = jnp.asarray(world.movable)[:, None]
    masses = jnp.asarray(world.masses, pos.dtype)[:, None]
    new_pos = pos + vel * world.dt
    new_vel = vel * (1.0 - world.damping) + (force / masses) * world.dt
    if world.agent_max_speed is not None:
        speed = jnp.sqrt(squared_norm(new_vel))[:, None]
        is_agent = (jnp.arange(world.n_entities) < world.n_agents)[:, None]
        too_fast = is_agent & (speed > world.agent_max_speed)
        new_vel = jnp.where(too_fast, new_vel / jnp.where(too_fast, speed, 1.0) * world.agent_max_speed, new_vel)
    # (a select, not a concatenation of the moving and the fixed rows: XLA's CPU kernels vectorise
    # elementwise selects, not concatenations)
    return jnp.where(movable, new_pos, pos), jnp.where(movable, new_vel, vel)


def physics_step(world: World, pos: jax.Array, vel: jax.Array, agent_force: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Advance the world by one `dt`. agent_force: the agents' action forces [N, 2]."""
    action = jnp.zeros_like(pos).at[: world.n_agents].set(agent_force)
    return integrate(world, pos, vel, action + contact_forces(world, pos))


def agent_collisions(world: World, pos: jax.Array) -> jax.Array:
    """bool [N, N]: agents i ≠ j overlap (distance < the sum of their sizes), as MPE's `is_collision`."""
    n = world.n_agents
    _, dist = pairwise(pos[:n])
    return (dist < 2 * world.agent_size) & ~jnp.eye(n, dtype=bool)


# ---- drawing ------------------------------------------------------------------------------------------------


def draw_discs(centers: jax.Array, radii: jax.Array, colors: jax.Array, size: int = 256,
               cam_range: jax.Array | float = 1.0, outline: jax.Array | None = None) -> jax.Array:
    """Raster discs onto a white square image: uint8 [size, size, 3], +y up, drawn in order (last on top).

    centers [K, 2], radii [K] (world units; at least ~1.5 px), colors [K, 3] in [0, 1]; the view spans
    [−cam_range, cam_range]² in both axes. `outline` [K] bool draws a disc as a ring only.
    """
    k = centers.shape[0]
    scale = size / (2.0 * cam_range)  # pixels per world unit
    coords = (jnp.arange(size, dtype=jnp.float32) + 0.5) / scale - cam_range
    xs = coords[None, :]
    ys = -coords[:, None]  # row 0 is the top of the image
    px_r = jnp.maximum(radii * scale, 1.5)
    if outline is None:
        outline = jnp.zeros((k,), bool)

    def paint(img, i):
        d = jnp.sqrt(jnp.square(xs - centers[i, 0]) + jnp.square(ys - centers[i, 1])) * scale
        inside = d < px_r[i]
        border = inside & (d > px_r[i] - 1.2)
        fill = jnp.where(outline[i], border, inside)
        img = jnp.where(fill[..., None], colors[i], img)
        img = jnp.where((border & ~outline[i])[..., None], 0.0, img)  # black rim, as MPE draws it
        return img, None

    img = jnp.ones((size, size, 3), jnp.float32)
    img, _ = jax.lax.scan(paint, img, jnp.arange(k))
    return (jnp.clip(img, 0.0, 1.0) * 255).astype(jnp.uint8)
