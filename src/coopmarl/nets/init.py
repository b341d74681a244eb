"""Weight initialisers that compile to plain arithmetic.

`orthogonal` draws the same distribution as `flax.linen.initializers.orthogonal` (the Q factor of a
Gaussian matrix, signs fixed so it is Haar-distributed) but orthonormalises with Gram–Schmidt in
matrix products instead of LAPACK's QR. Why: jaxlib's CPU QR kernel splits a *batch* of matrices —
which is what vmapping `init` over seeds or agents makes — across XLA's intra-op thread pool, and on
a 2-core machine we saw that deadlock intermittently (every thread parked, the run never returning).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _gram_schmidt(a: jax.Array) -> jax.Array:
    """Orthonormal columns spanning a's leading columns (a: [n, m], n ≥ m); classical Gram–Schmidt
    applied twice ("twice is enough"), so the result is orthonormal to float32 precision."""
    m = a.shape[1]

    def column(j, q):
        v = q[:, j]
        earlier = jnp.arange(m) < j
        for _ in range(2):
            v = v - q @ (jnp.where(earlier, q.T @ v, 0.0))
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, m, column, a)


def orthogonal(scale: float = 1.0):
    """An orthogonal initialiser for 2-D kernels [fan_in, fan_out] (rows or columns orthonormal)."""

    def init(key, shape, dtype=jnp.float32):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        n, m = max(rows, cols), min(rows, cols)
        q = _gram_schmidt(jax.random.normal(key, (n, m), jnp.float32))
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init
