"""Minimum-cost perfect matching (the linear assignment problem) in pure, jittable JAX.

`min_cost_assignment(cost)` returns, for a square cost [n, n], the column assigned to each row and
the matched costs — what `scipy.optimize.linear_sum_assignment` computes, usable inside `jit`/`vmap`.
Two exact methods:

- "permutations": the minimum over all n! permutations, precomputed as a constant int array. One
  gather and one reduction: the fastest for small n, but n! grows fast, so it is used for n ≤ 6
  (720 permutations) by default and refused above n = 8 (40,320).
- "hungarian": the O(n³) shortest-augmenting-path Hungarian algorithm (Kuhn–Munkres with potentials,
  Jonker–Volgenant style) written with `lax.fori_loop`/`while_loop` over fixed-size arrays; any n.

When several assignments tie, the two methods (and scipy) may return different ones; the total cost
is the same up to float rounding. `min_total_cost(cost)` returns only that minimal total (what the
formation rewards need), which for "permutations" is one matrix product and a minimum.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

PERMUTATION_LIMIT = 8  # the largest n for which "permutations" is allowed (8! = 40,320 rows)
AUTO_PERMUTATION_MAX = 6  # "auto" uses permutations up to this n, the Hungarian algorithm above


@lru_cache(maxsize=None)
def permutations(n: int) -> np.ndarray:
    """All permutations of range(n), int32 [n!, n] (lexicographic order)."""
    if n > PERMUTATION_LIMIT:
        raise ValueError(f"brute-force matching is limited to n <= {PERMUTATION_LIMIT} (n! rows); got n={n}")
    return np.array(list(itertools.permutations(range(n))), dtype=np.int32).reshape(-1, n)


def _by_permutations(cost: jax.Array) -> jax.Array:
    n = cost.shape[0]
    perms = jnp.asarray(permutations(n))  # [P, n]
    totals = jnp.sum(cost[jnp.arange(n)[None, :], perms], axis=-1)  # [P]
    return perms[jnp.argmin(totals)]


def _hungarian(cost: jax.Array) -> jax.Array:
    """Rows -> columns by shortest augmenting paths with dual potentials (1-based arrays, as in the
    classic formulation: column 0 is a virtual column that holds the row being inserted)."""
    n = cost.shape[0]
    dtype = cost.dtype
    inf = jnp.array(jnp.inf, dtype)
    a = jnp.zeros((n + 1, n + 1), dtype).at[1:, 1:].set(cost)
    cols = jnp.arange(n + 1)

    def insert_row(i, carry):
        u, v, p, way = carry  # p[j]: row matched to column j (0 = free); way[j]: previous column on the path
        p = p.at[0].set(i)
        minv = jnp.full((n + 1,), inf)
        used = jnp.zeros((n + 1,), bool)

        def not_done(c):
            _, _, _, _, _, _, j0 = c
            return c[2][j0] != 0  # p[j0] != 0: the path has not reached a free column

        def grow(c):
            u, v, p, way, minv, used, j0 = c
            used = used.at[j0].set(True)
            i0 = p[j0]
            cur = a[i0] - u[i0] - v
            better = ~used & (cur < minv)
            minv = jnp.where(better, cur, minv)
            way = jnp.where(better, j0, way)
            cand = jnp.where(used, inf, minv)
            cand = cand.at[0].set(inf)
            j1 = jnp.argmin(cand).astype(jnp.int32)
            delta = cand[j1]
            u = u.at[p].add(jnp.where(used, delta, 0.0))  # u[p[j]] += delta for used columns
            v = jnp.where(used, v - delta, v)
            minv = jnp.where(used, minv, minv - delta)
            return u, v, p, way, minv, used, j1

        # the first iteration always runs (j0 = 0 holds row i)
        first = grow((u, v, p, way, minv, used, jnp.int32(0)))
        u, v, p, way, minv, used, j0 = jax.lax.while_loop(not_done, grow, first)

        def unwind(c):
            p, j0 = c
            j1 = way[j0]
            return p.at[j0].set(p[j1]), j1

        p, _ = jax.lax.while_loop(lambda c: c[1] != 0, unwind, (p, j0))
        return u, v, p, way

    init = (jnp.zeros((n + 1,), dtype), jnp.zeros((n + 1,), dtype),
            jnp.zeros((n + 1,), jnp.int32), jnp.zeros((n + 1,), jnp.int32))
    _, _, p, _ = jax.lax.fori_loop(1, n + 1, insert_row, init)
    # invert: column j (1..n) holds row p[j]
    row_to_col = jnp.zeros((n + 1,), jnp.int32).at[p[1:]].set(cols[1:].astype(jnp.int32))
    return row_to_col[1:] - 1


@lru_cache(maxsize=None)
def _permutation_matrix(n: int) -> np.ndarray:
    """[n!, n·n] 0/1: row p selects the entries (i, perm_p[i]) of a flattened [n, n] cost matrix."""
    perms = permutations(n)
    onehot = np.zeros((len(perms), n * n), np.float32)
    onehot[np.arange(len(perms))[:, None], np.arange(n)[None, :] * n + perms] = 1.0
    return onehot


def _resolve(method: str, n: int) -> str:
    if method == "auto":
        return "permutations" if n <= AUTO_PERMUTATION_MAX else "hungarian"
    if method not in ("permutations", "hungarian"):
        raise ValueError(f"unknown matching method {method!r}; choose 'auto', 'permutations' or 'hungarian'")
    return method


def min_total_cost(cost: jax.Array, method: str = "auto") -> jax.Array:
    """The minimal total cost of a one-to-one assignment of rows to columns of a square cost [n, n], [].

    "permutations": the totals of all n! permutations as one matrix product (a 0/1 selection matrix
    times the flattened costs: each total is the sum of its n costs, exactly as added up one by one up
    to the order of the additions), then their minimum — no gather, no argmin. "hungarian": the sum of
    the costs `min_cost_assignment` matches."""
    n, m = cost.shape
    if n != m:
        raise ValueError(f"min_total_cost needs a square cost matrix, got shape {cost.shape}")
    if _resolve(method, n) == "hungarian":
        return jnp.sum(min_cost_assignment(cost, "hungarian")[1])
    # (the cost's own precision: the float64 cross-checks must not be rounded to float32 here)
    totals = jnp.dot(jnp.asarray(_permutation_matrix(n), cost.dtype), cost.reshape(-1),
                     precision=jax.lax.Precision.HIGHEST)  # [n!]
    return jnp.min(totals)


def min_cost_assignment(cost: jax.Array, method: str = "auto") -> tuple[jax.Array, jax.Array]:
    """Optimal one-to-one assignment of rows to columns of a square cost [n, n].

    Returns (col_of_row int32 [n], matched_cost [n] = cost[i, col_of_row[i]]). `method`: "auto"
    (permutations for n ≤ 6, else Hungarian), "permutations" (n ≤ 8) or "hungarian".
    """
    n, m = cost.shape
    if n != m:
        raise ValueError(f"min_cost_assignment needs a square cost matrix, got shape {cost.shape}")
    method = _resolve(method, n)
    col = _by_permutations(cost) if method == "permutations" else _hungarian(cost)
    return col, cost[jnp.arange(n), col]
