"""The environment contract: static `EnvSpec`, per-step `TimeStep`, and the one `AutoReset` wrapper.

Every environment is a pure, jittable pair of functions over an explicit state, with agents stacked
on the leading axis of every per-agent array (no per-agent dicts):

    state, ts = env.reset(key)
    state, ts = env.step(key, state, actions)      # actions: int32 [N] or float32 [N, action_dim]

`ts.terminated` means the episode really ended (bootstrap from zero); `ts.truncated` means a time
limit cut it (bootstrap from the next state's value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment; everything here is a Python value, never traced."""

    name: str
    n_agents: int
    obs_dim: int
    state_dim: int
    action_kind: str  # "discrete" | "continuous"
    n_actions: int = 0  # discrete
    action_dim: int = 0  # continuous
    low: float = -1.0  # continuous bounds
    high: float = 1.0
    horizon: int = 0  # episode time limit (0 = none)
    params: tuple[tuple[str, Any], ...] = field(default=())  # the resolved constructor parameters

    def __post_init__(self):
        if self.action_kind not in ("discrete", "continuous"):
            raise ValueError(f"action_kind must be 'discrete' or 'continuous', got {self.action_kind!r}")
        if self.action_kind == "discrete" and self.n_actions < 1:
            raise ValueError("a discrete EnvSpec needs n_actions >= 1")
        if self.action_kind == "continuous" and self.action_dim < 1:
            raise ValueError("a continuous EnvSpec needs action_dim >= 1")

    @property
    def discrete(self) -> bool:
        return self.action_kind == "discrete"


class TimeStep(NamedTuple):
    obs: jax.Array  # float32 [N, obs_dim]
    global_state: jax.Array  # float32 [state_dim]
    avail_actions: jax.Array  # bool [N, n_actions] (all true for continuous envs: shape [N, 1])
    reward: jax.Array  # float32 [N]; the team reward repeated in cooperative envs
    terminated: jax.Array  # bool []
    truncated: jax.Array  # bool []
    info: dict  # env-specific extras (fixed pytree structure across steps)

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


@runtime_checkable
class Env(Protocol):
    spec: EnvSpec

    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]: ...

    def step(self, key: jax.Array, state: Any, actions: jax.Array) -> tuple[Any, TimeStep]: ...


class AutoResetState(NamedTuple):
    env_state: Any
    episode_return: jax.Array  # float32 [], team return of the running episode
    episode_length: jax.Array  # int32 []


class AutoReset:
    """Resets an env when an episode ends, and reports finished episodes' return and length.

    After a step that ends an episode, the returned `ts` carries that step's `reward`, `terminated`
    and `truncated`, but the *first* observation of the new episode (`obs`, `global_state`,
    `avail_actions`); the last observation of the finished episode is in `ts.info["final_obs"]`
    (needed to bootstrap after a truncation). `ts.info["episode_return"]` / `["episode_length"]`
    hold the finished episode's statistics where `ts.info["episode_done"]` is true.

    Under `vmap` a reset is computed at every step and selected where an episode ended. An env can
    make that cheaper with two optional methods: `reset_state(key) -> state` (the state `reset(key)`
    starts in) and `observation(state) -> (obs, global_state, avail_actions)` (the fields `reset` and
    `step` put in their TimeStep for that state). Given both, the wrapper selects the state first and
    observes it once, instead of observing the reset state too and selecting the observations: the
    same TimeStep, with one observation less per step (two less when `final_obs` is not used).
    """

    def __init__(self, env: Env):
        self.env = env
        self.spec = env.spec
        self._observe_once = callable(getattr(env, "reset_state", None)) and callable(
            getattr(env, "observation", None))

    def reset(self, key):
        env_state, ts = self.env.reset(key)
        ts = ts._replace(info=self._info(ts, ts, jnp.float32(0.0), jnp.int32(0), jnp.bool_(False)))
        return AutoResetState(env_state, jnp.float32(0.0), jnp.int32(0)), ts

    def step(self, key, state: AutoResetState, actions):
        key_step, key_reset = split_key(key)
        env_state, ts = self.env.step(key_step, state.env_state, actions)
        ep_return = state.episode_return + ts.reward[0]
        ep_length = state.episode_length + 1
        done = ts.done
        if self._observe_once:
            reset_state = self.env.reset_state(key_reset)
            env_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, env_state)
            obs, global_state, avail_actions = self.env.observation(env_state)
            new_ts = ts._replace(obs=obs, global_state=global_state, avail_actions=avail_actions)
        else:
            reset_state, reset_ts = self.env.reset(key_reset)
            env_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, env_state)
            new_ts = ts._replace(
                obs=jnp.where(done, reset_ts.obs, ts.obs),
                global_state=jnp.where(done, reset_ts.global_state, ts.global_state),
                avail_actions=jnp.where(done, reset_ts.avail_actions, ts.avail_actions),
            )
        new_ts = new_ts._replace(info=self._info(ts, new_ts, ep_return, ep_length, done))
        new_state = AutoResetState(
            env_state,
            jnp.where(done, 0.0, ep_return).astype(jnp.float32),
            jnp.where(done, 0, ep_length).astype(jnp.int32),
        )
        return new_state, new_ts

    @staticmethod
    def _info(ts, new_ts, ep_return, ep_length, done):
        info = dict(ts.info)
        info.update(
            final_obs=ts.obs,
            final_state=ts.global_state,
            episode_return=ep_return.astype(jnp.float32),
            episode_length=ep_length.astype(jnp.int32),
            episode_done=jnp.asarray(done, bool),
        )
        return info


# ---- key splitting and uniform draws without the CPU's rolled Threefry loop ------------------------------
#
# On the CPU, JAX lowers its Threefry-2x32 hash as a 5-iteration while loop (to keep compile times short);
# at 1024 vmapped envs each loop costs ~50-70 µs per call, which made the per-step reset of `AutoReset`
# (a key split, and the env's own split and draws) the largest cost of a particle env's step. The
# functions below compute the same Threefry-2x32 (20 rounds; Salmon et al., "Parallel random numbers:
# as easy as 1, 2, 3", SC 2011) as straight-line uint32 arithmetic that XLA fuses into one kernel, and
# return exactly what `jax.random.split` / `jax.random.uniform` return for the same key (tests check it
# bit for bit). Where that equivalence is not guaranteed (typed keys, another PRNG implementation, JAX's
# non-partitionable Threefry mode, a float dtype other than float32) they call jax.random instead.
# One caveat: XLA fuses the inline hash into the consumers of its result, and a consumer that reads a
# drawn number many times (a broadcast) recomputes the hash for every read; draw such numbers with
# jax.random, whose loop keeps them in memory (see `Line.spawn` in mpe/env.py).

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA


def _threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 block cipher with 20 rounds: key (k0, k1), counter (x0, x1); uint32, broadcast."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_THREEFRY_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):  # 5 x 4 rounds, a key injection after each 4
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _inline_threefry(key) -> bool:
    """Whether `key` is a raw uint32[2] Threefry key that jax.random would hash in its partitionable mode."""
    return (isinstance(key, jax.Array | np.ndarray) and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            and key.dtype == jnp.uint32 and key.shape == (2,)
            and jax.config.jax_default_prng_impl == "threefry2x32" and jax.config.jax_threefry_partitionable)


def split_key(key: jax.Array, num: int = 2) -> jax.Array:
    """`jax.random.split(key, num)`, bit for bit, without the rolled loop on the CPU."""
    if not _inline_threefry(key):
        return jax.random.split(key, num)
    # one elementwise op over the [num, 2] output (word w of the hash of counter i); stacking the two
    # words instead would be a concatenation, which XLA's CPU kernels do not vectorise
    counter = jnp.asarray(np.repeat(np.arange(num, dtype=np.uint32)[:, None], 2, axis=1))
    x0, x1 = _threefry2x32(key[0], key[1], jnp.zeros_like(counter), counter)
    return jnp.where(jnp.asarray(np.arange(2) == 0), x0, x1)


def uniform(key: jax.Array, shape: tuple[int, ...], minval=0.0, maxval=1.0, dtype=None) -> jax.Array:
    """`jax.random.uniform(key, shape, dtype, minval, maxval)`, bit for bit (float32), without the rolled
    loop on the CPU."""
    return uniform_concat([(key, shape, minval, maxval)], dtype).reshape(shape)


def uniform_concat(draws, dtype=None) -> jax.Array:
    """The flattened draws `jax.random.uniform(key, shape, dtype, minval, maxval)` for each
    (key, shape, minval, maxval) in `draws`, concatenated: [Σ size]. Computed as one elementwise op
    (each element hashes with its own draw's key) rather than a concatenation of separate draws, which
    XLA's CPU kernels would not vectorise. minval and maxval are Python numbers."""
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    sizes = [int(np.prod(shape)) for _, shape, _, _ in draws]
    if (dtype != jnp.float32 or sum(sizes) >= 2**32
            or not all(_inline_threefry(key) for key, *_ in draws)):
        return jnp.concatenate([jax.random.uniform(key, shape, dtype, lo, hi).reshape(-1)
                                for key, shape, lo, hi in draws])
    block = np.repeat(np.arange(len(draws)), sizes)
    counter = np.concatenate([np.arange(n, dtype=np.uint32) for n in sizes])  # each draw counts from 0
    k0, k1 = draws[-1][0][0], draws[-1][0][1]
    for b in range(len(draws) - 1):
        mine = jnp.asarray(block == b)
        k0, k1 = jnp.where(mine, draws[b][0][0], k0), jnp.where(mine, draws[b][0][1], k1)
    x0, x1 = _threefry2x32(k0, k1, jnp.zeros(counter.shape, jnp.uint32), jnp.asarray(counter))
    bits = (x0 ^ x1) >> jnp.uint32(32 - 23)  # 23 random mantissa bits ...
    one_two = jax.lax.bitcast_convert_type(bits | jnp.uint32(0x3F800000), jnp.float32)  # ... of a float in [1, 2)
    lo = np.repeat(np.array([d[2] for d in draws], np.float32), sizes)
    hi = np.repeat(np.array([d[3] for d in draws], np.float32), sizes)
    lo_, span = jnp.asarray(lo), jnp.asarray(hi - lo)  # maxval − minval in float32, as jax.random does
    return jnp.maximum(lo_, (one_two - 1.0) * span + lo_)


def discrete_avail_all(n_agents: int, n_actions: int) -> jax.Array:
    return jnp.ones((n_agents, n_actions), dtype=bool)
