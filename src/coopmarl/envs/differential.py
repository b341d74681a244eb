"""The differential Max of Two Quadratics game (ROMMEO §5.2, after Wei et al. 2018): continuous actions.

Two agents each choose a¹, a² ∈ [−10, 10] once; both receive r = max(f₁, f₂) with

    paper (default):  f₁ = 0.8 · [−((a¹ + 5) / 3)² − ((a² + 5) / 3)²]
    variant="code":   f₁ = 0.8 · [−(a¹ + 5)² / 3 − (a² + 5)² / 3]          (the authors' code)
    both:             f₂ = 1.0 · [−(a¹ − 5)² − (a² − 5)²] + 10

The global maximum is r = 10 at (5, 5); a local maximum r = 0 sits at (−5, −5) with a much wider basin
(in the paper's variant), which is what traps gradient-following learners that start near (0, 0).

Episodes are one step: the step's timestep has `terminated=True` (the game is over: no bootstrap) and,
since `spec.horizon` is 1, `truncated=True` as well. The observation is a constant: one feature, 0, for
each agent (the game has a single state); `global_state` is the same single 0.

Actions are float [2, 1] (or [2]); values outside [−10, 10] are clipped to the interval (inside jit an
error cannot be raised, and clipping is what pettingzoo's ClipOutOfBoundsWrapper does); `info["actions"]`
holds the clipped actions that were scored.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.envs.registry import register_env

ACTION_LOW, ACTION_HIGH = -10.0, 10.0
VARIANTS = ("paper", "code")


def max_of_two_quadratics(a1, a2, variant: str = "paper"):
    """The shared reward r(a¹, a²) (broadcasts over arrays); see the module docstring."""
    if variant == "paper":
        f1 = 0.8 * (-jnp.square((a1 + 5.0) / 3.0) - jnp.square((a2 + 5.0) / 3.0))
    elif variant == "code":
        f1 = 0.8 * (-jnp.square(a1 + 5.0) / 3.0 - jnp.square(a2 + 5.0) / 3.0)
    else:
        raise ValueError(f"unknown differential-game variant {variant!r}; choose one of {VARIANTS}")
    f2 = 1.0 * (-jnp.square(a1 - 5.0) - jnp.square(a2 - 5.0)) + 10.0
    return jnp.maximum(f1, f2)


@struct.dataclass
class DifferentialGame:
    spec: EnvSpec = struct.field(pytree_node=False)
    variant: str = struct.field(pytree_node=False, default="paper")

    def reward(self, actions: jax.Array) -> jax.Array:
        """Team reward of joint actions [..., 2] (after clipping to [−10, 10])."""
        a = jnp.clip(jnp.asarray(actions, jnp.float32), ACTION_LOW, ACTION_HIGH)
        return max_of_two_quadratics(a[..., 0], a[..., 1], self.variant).astype(jnp.float32)

    def _timestep(self, reward, actions, done) -> TimeStep:
        n = self.spec.n_agents
        return TimeStep(
            obs=jnp.zeros((n, 1), jnp.float32),
            global_state=jnp.zeros((1,), jnp.float32),
            avail_actions=jnp.ones((n, 1), bool),
            reward=jnp.full((n,), reward, jnp.float32),
            terminated=jnp.asarray(done, bool),
            truncated=jnp.asarray(done, bool),
            info={"actions": actions},
        )

    def reset(self, key):
        """State: the last joint action (zeros before the step), kept for `render`."""
        actions = jnp.zeros((self.spec.n_agents,), jnp.float32)
        return actions, self._timestep(0.0, actions, False)

    def step(self, key, state, actions):
        a = jnp.clip(jnp.reshape(jnp.asarray(actions, jnp.float32), (self.spec.n_agents,)), ACTION_LOW, ACTION_HIGH)
        return a, self._timestep(self.reward(a), a, True)

    def render(self, state, size: int = 128) -> jax.Array:
        """uint8 [size, size, 3]: the reward surface (dark = low, light = high; a¹ right, a² up) with
        the last joint action as a red dot and the global optimum (5, 5) as a green one."""
        grid = jnp.linspace(ACTION_LOW, ACTION_HIGH, size)
        a1, a2 = jnp.meshgrid(grid, grid[::-1])  # row 0 is a² = +10
        r = max_of_two_quadratics(a1, a2, self.variant)
        shade = jnp.clip((r - (-60.0)) / 70.0, 0.0, 1.0)  # r in [-60, 10] spans the colour ramp
        img = jnp.stack([0.15 + 0.6 * shade, 0.2 + 0.75 * shade, 0.45 + 0.5 * shade], axis=-1)
        step = (ACTION_HIGH - ACTION_LOW) / (size - 1)
        for (x, y), color in (((5.0, 5.0), (0.1, 0.8, 0.1)), ((state[0], state[1]), (0.9, 0.1, 0.1))):
            dot = jnp.square(a1 - x) + jnp.square(a2 - y) < jnp.square(2.5 * step)
            img = jnp.where(dot[..., None], jnp.asarray(color), img)
        return (img * 255).astype(jnp.uint8)


@register_env(
    "differential",
    "ROMMEO §5.2 max of two quadratics: 2 agents, actions in [-10, 10], one step; global max 10 at (5,5), "
    "local max 0 at (-5,-5); variant=paper|code",
    ("continuous",),
)
def differential(variant: Literal["paper", "code"] = "paper") -> DifferentialGame:
    if variant not in VARIANTS:
        raise ValueError(f"unknown differential-game variant {variant!r}; choose one of {VARIANTS}")
    spec = EnvSpec(name="differential", n_agents=2, obs_dim=1, state_dim=1, action_kind="continuous",
                   action_dim=1, low=ACTION_LOW, high=ACTION_HIGH, horizon=1, params=(("variant", variant),))
    return DifferentialGame(spec=spec, variant=variant)
