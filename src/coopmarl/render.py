"""Episode GIFs: roll an env out and save its `render` frames — under a random (mask-respecting)
policy, or under a trained run's greedy policy (`render_run`).

Environments that can be drawn implement `render(state) -> uint8 [H, W, 3]`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.errors import ConfigError
from coopmarl.evaluation import greedy_policy
from coopmarl.files import atomic_write

__all__ = ["can_render", "renderable_envs", "random_policy", "greedy_policy", "rollout_frames", "save_gif",
           "run_frames", "render_run"]


def can_render(env) -> bool:
    return callable(getattr(env, "render", None))


def renderable_envs() -> list[str]:
    """Names of the registered environments that can be drawn (families and tabular games left out)."""
    from coopmarl.envs import list_envs

    names = []
    for e in list_envs():
        if e.prefix or "tabular" in e.tags:
            continue
        try:
            if can_render(e.constructor()):
                names.append(e.name)
        except Exception:  # an env whose optional extra is missing
            continue
    return names


def not_renderable_error(env_name: str):
    return ConfigError(f"environment {env_name!r} cannot be rendered (it has no render(state)). "
                       f"Renderable environments: {', '.join(renderable_envs()) or '(none)'}")


def random_policy(spec) -> Callable:
    """Uniform over available actions (discrete) or uniform in [low, high] (continuous)."""
    def act(key, obs, avail):
        if spec.discrete:
            logits = jnp.where(avail, 0.0, -jnp.inf)
            return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
        return jax.random.uniform(key, (spec.n_agents, spec.action_dim), minval=spec.low, maxval=spec.high)

    return act


def rollout_frames(env, key, policy: Callable | None = None, max_steps: int | None = None,
                   carry: Any = None) -> list[np.ndarray]:
    """Frames of one episode (the reset state plus one per step, until done or `max_steps`).

    `policy(key, obs, avail) -> actions` (default: random); with `carry` given (see `greedy_policy`),
    `policy(key, obs, avail, carry) -> (actions, carry)` starting from that carry."""
    policy = policy or random_policy(env.spec)
    max_steps = max_steps or env.spec.horizon or 100
    step = jax.jit(env.step)
    key, k_reset = jax.random.split(key)
    state, ts = jax.jit(env.reset)(k_reset)
    render, first = _renderer(env, state)
    frames = [first]
    for _ in range(max_steps):
        key, k_act, k_step = jax.random.split(key, 3)
        if carry is None:
            actions = policy(k_act, ts.obs, ts.avail_actions)
        else:
            actions, carry = policy(k_act, ts.obs, ts.avail_actions, carry)
        state, ts = step(k_step, state, actions)
        frames.append(np.asarray(render(state)))
        if bool(ts.terminated) or bool(ts.truncated):
            break
    return frames


def _renderer(env, state) -> tuple[Callable, np.ndarray]:
    """`env.render` compiled when it is written in JAX (particle envs: ~1000x faster per frame), else as
    is (grid envs draw with numpy); with the first frame."""
    fast = jax.jit(env.render)
    try:
        return fast, np.asarray(fast(state))
    except TypeError:  # a numpy renderer met a tracer
        return env.render, np.asarray(env.render(state))


def save_gif(frames: list[np.ndarray], path: str | Path, fps: int = 5) -> Path:
    from PIL import Image  # Pillow comes with matplotlib

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)


def run_frames(run_dir: str | Path, seed_index: int = 0, seed: int = 0, max_steps: int | None = None,
               step: int | None = None) -> list[np.ndarray]:
    """Frames of one episode of a trained run: seed `seed_index`'s greedy policy from the run's final
    checkpoint (or the one at `step` env steps); the env and algorithm come from the run's config.yaml."""
    from coopmarl.checkpoints import require_checkpoint, restore
    from coopmarl.outputs import resolve_run

    resolved = resolve_run(run_dir)  # a broken config.yaml is named before a missing checkpoint
    require_checkpoint(run_dir, step)
    if not can_render(resolved.env):
        raise not_renderable_error(resolved.env_name)
    n_seeds = resolved.run.n_seeds
    if not 0 <= seed_index < n_seeds:
        raise ConfigError(f"seed index {seed_index} is out of range: the run has {n_seeds} seed(s), "
                          f"indices 0..{n_seeds - 1}")
    state, _ = restore(run_dir, resolved, step)
    one = jax.tree.map(lambda x: x[seed_index], state)
    policy, carry = greedy_policy(resolved.algo, resolved.config, resolved.env.spec, one)
    return rollout_frames(resolved.env, jax.random.PRNGKey(seed), policy, max_steps, carry=carry)


def render_run(run_dir: str | Path, out: str | Path, seed_index: int = 0, seed: int = 0,
               max_steps: int | None = None, fps: int = 5, step: int | None = None) -> tuple[Path, int]:
    """A GIF of one episode of a trained run's greedy policy (see `run_frames`): (path, frame count)."""
    if not str(out).lower().endswith(".gif"):
        raise ConfigError(f"out must name a .gif file, got {str(out)!r}")
    frames = run_frames(run_dir, seed_index, seed, max_steps, step)
    return save_gif(frames, out, fps), len(frames)
