"""Key splitting, uniform and categorical draws without the CPU's rolled Threefry loop (identical bit for bit to
jax.random), and a faster random permutation (not jax.random's: `permutation`).

On the CPU, JAX lowers its Threefry-2x32 hash as a 5-iteration while loop (to keep compile times short);
at 1024 vmapped envs each loop costs ~50-70 µs per call, which made the per-step reset of `AutoReset`
(a key split, and the env's own split and draws) the largest cost of a particle env's step. The
functions below compute the same Threefry-2x32 (20 rounds; Salmon et al., "Parallel random numbers:
as easy as 1, 2, 3", SC 2011) as straight-line uint32 arithmetic that XLA fuses into one kernel, and
return exactly what `jax.random.split` / `jax.random.uniform` / `jax.random.categorical` return for the
same key (tests check it bit for bit). The runner's rollout, every policy's sampling and ε-greedy draw
through them. Where that equivalence is not guaranteed (typed keys, another PRNG implementation, JAX's
non-partitionable Threefry mode, a float dtype other than float32) they call jax.random instead.
One caveat: XLA fuses the inline hash into the consumers of its result, and a consumer that reads a
drawn number many times (a broadcast) recomputes the hash for every read; draw such numbers with
jax.random, whose loop keeps them in memory (see `Line.spawn` in mpe/env.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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


def categorical(key: jax.Array, logits: jax.Array, axis: int = -1) -> jax.Array:
    """`jax.random.categorical(key, logits, axis)`, bit for bit (float32 logits; JAX's default "low" Gumbel mode),
    without the rolled loop on the CPU: argmax(logits + Gumbel noise), the noise −log(−log u) of uniform draws."""
    logits = jnp.asarray(logits)
    if (logits.dtype != jnp.float32 or getattr(jax.config, "jax_high_dynamic_range_gumbel", True)
            or not _inline_threefry(key)):
        return jax.random.categorical(key, logits, axis=axis)
    u = uniform(key, logits.shape, minval=float(np.finfo(np.float32).tiny), maxval=1.0, dtype=jnp.float32)
    return jnp.argmax(-jnp.log(-jnp.log(u)) + logits, axis=axis)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n), int32 [n], in half the time of `jax.random.permutation` on the CPU
    (n = 2,048: ~290 µs against ~530 µs; `benchmarks/cpu_kernels.py`) — but not the permutation it draws.

    Both order random keys. jax.random.permutation sorts in several rounds of 32-bit keys (two for n > 1,625), so
    that ties between keys leave no measurable bias; this sorts once, on 64 random bits per element (two uint32 sort
    keys, compared in turn), whose ties are as rare (probability < n² / 2⁶⁵)."""
    bits = jax.random.bits(key, (2, n), jnp.uint32)
    return jax.lax.sort((bits[0], bits[1], jnp.arange(n, dtype=jnp.int32)), num_keys=2, is_stable=False)[2]
