"""Multi-agent particle environments (MPE) in pure JAX: `mpe:spread`, `mpe:line`, `mpe:circle`.

- `physics.py`  the shared particle physics (MPE's integration, damping, softplus contact forces)
- `matching.py` jittable minimum-cost matching (the Hungarian step of the formation rewards)
- `env.py`      `ParticleEnv` and the three tasks

`mpe:spread` is mpe2's `simple_spread_v3` step for step (tests/test_mpe.py checks observations,
rewards and positions against it). `mpe:line` and `mpe:circle` are the control tasks of DPO (paper 003,
§4.2, from Agarwal et al. 2020). Actions: MPE's five discrete moves (no-op, left, right, down, up), or
with `continuous_actions=True` MPE's five numbers in [0, 1] (force = (a₂ − a₁, a₄ − a₃) · 5).
"""

from __future__ import annotations

from coopmarl.envs.mpe.env import Circle, Line, ParticleEnv, ParticleState, Spread
from coopmarl.envs.mpe.physics import World
from coopmarl.envs.registry import register_env
from coopmarl.errors import ParamError

__all__ = ["ParticleEnv", "ParticleState", "Spread", "Line", "Circle", "World"]


def _params(**kw) -> tuple:
    return tuple(kw.items())


@register_env(
    "mpe:spread",
    "MPE simple spread (mpe2 simple_spread_v3, step for step): N agents cover N landmarks, "
    "reward -sum of min distances, -1 per collision (local_ratio mix); DPO uses n_agents=5",
    ("particle",), reward_scalarisation="shared (their mean)",
)
def spread(n_agents: int = 3, max_steps: int = 25, continuous_actions: bool = False, local_ratio: float = 0.5,
           vision: float | None = None) -> ParticleEnv:
    if not 0.0 <= local_ratio <= 1.0:
        raise ParamError(f"mpe:spread: local_ratio must be a finite number in [0, 1], got {local_ratio}")
    return ParticleEnv.create(
        "mpe:spread", Spread(local_ratio=local_ratio, vision=vision), n_agents, max_steps, continuous_actions,
        _params(n_agents=n_agents, max_steps=max_steps, continuous_actions=continuous_actions,
                local_ratio=local_ratio, vision=vision))


@register_env(
    "mpe:line",
    "DPO line control: N agents spread evenly between two landmarks 1.25 apart; reward -mean matched "
    "(Hungarian) slot distance - collisions; vision 1",
    ("particle",),
)
def line(n_agents: int = 5, max_steps: int = 25, continuous_actions: bool = False, collision_penalty: float = 1.0,
         vision: float | None = 1.0) -> ParticleEnv:
    return ParticleEnv.create(
        "mpe:line", Line(collision_penalty=collision_penalty, vision=vision), n_agents, max_steps, continuous_actions,
        _params(n_agents=n_agents, max_steps=max_steps, continuous_actions=continuous_actions,
                collision_penalty=collision_penalty, vision=vision))


@register_env(
    "mpe:circle",
    "DPO circle control: N agents evenly on a circle of radius 0.5 around a landmark; reward -mean "
    "matched (Hungarian) slot distance - collisions; vision 1",
    ("particle",),
)
def circle(n_agents: int = 5, max_steps: int = 25, continuous_actions: bool = False, collision_penalty: float = 1.0,
           vision: float | None = 1.0) -> ParticleEnv:
    return ParticleEnv.create(
        "mpe:circle", Circle(collision_penalty=collision_penalty, vision=vision), n_agents, max_steps,
        continuous_actions,
        _params(n_agents=n_agents, max_steps=max_steps, continuous_actions=continuous_actions,
                collision_penalty=collision_penalty, vision=vision))
