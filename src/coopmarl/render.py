"""Episode GIFs: roll an env out with a random (mask-respecting) policy and save its `render` frames.

Environments that can be drawn implement `render(state) -> uint8 [H, W, 3]`. The trained-policy
variant will pass an algorithm's `act` as `policy`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.outputs import atomic_write


def can_render(env) -> bool:
    return callable(getattr(env, "render", None))


def random_policy(spec) -> Callable:
    """Uniform over available actions (discrete) or uniform in [low, high] (continuous)."""
    def act(key, obs, avail):
        if spec.discrete:
            logits = jnp.where(avail, 0.0, -jnp.inf)
            return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
        return jax.random.uniform(key, (spec.n_agents, spec.action_dim), minval=spec.low, maxval=spec.high)

    return act


def rollout_frames(env, key, policy: Callable | None = None, max_steps: int | None = None) -> list[np.ndarray]:
    """Frames of one episode (the reset state plus one per step, until done or `max_steps`)."""
    policy = policy or random_policy(env.spec)
    max_steps = max_steps or env.spec.horizon or 100
    step = jax.jit(env.step)
    key, k_reset = jax.random.split(key)
    state, ts = jax.jit(env.reset)(k_reset)
    frames = [np.asarray(env.render(state))]
    for _ in range(max_steps):
        key, k_act, k_step = jax.random.split(key, 3)
        state, ts = step(k_step, state, policy(k_act, ts.obs, ts.avail_actions))
        frames.append(np.asarray(env.render(state)))
        if bool(ts.terminated) or bool(ts.truncated):
            break
    return frames


def save_gif(frames: list[np.ndarray], path: str | Path, fps: int = 5) -> Path:
    from PIL import Image  # Pillow comes with matplotlib

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)
