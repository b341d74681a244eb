"""`Dense`: flax's `nn.Dense` (the same parameters, names, initialisers and values) with a faster weight gradient
on CPU for a layer that narrows (fewer outputs than inputs).

The gradient of y = x W (x [B, in], W [in, out]) with respect to W is xᵀ g, a product over the long batch axis B.
Autodiff emits it as an [in, out] array, and XLA's CPU matmul computes that 2-5x slower than the same numbers as
gᵀ x [out, in] when out < in: a Q-network's or an actor's output layer (64 -> 5), a hypernetwork's last layers
(128 -> 96, 128 -> 32). `Dense` writes such a layer's product as x (Wᵀ)ᵀ, with Wᵀ behind an `optimization_barrier`
(without it XLA folds the two transposes away), so that the gradient is computed for Wᵀ, as [out, in]; everything
else autodiff does is unchanged. A layer that does not narrow is flax's own product, whose orientation is already the
faster one. `benchmarks/cpu_kernels.py` times both side by side.

Values and gradients are the same sums of products (in another order: equal up to float rounding,
`tests/test_cpu_kernels.py`).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

__all__ = ["Dense", "dense_product"]


def dense_product(x: jax.Array, w: jax.Array, precision=None, preferred_element_type=None) -> jax.Array:
    """x W for x [..., in] and W [in, out] -> [..., out]; for out < in, as x (Wᵀ)ᵀ (see the module docstring)."""
    if w.shape[1] < w.shape[0]:
        return jax.lax.dot_general(x, jax.lax.optimization_barrier(w.T), (((x.ndim - 1,), (1,)), ((), ())),
                                   precision=precision, preferred_element_type=preferred_element_type)
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision,
                               preferred_element_type=preferred_element_type)


def _dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`lax.dot_general` as flax's Dense calls it (lhs [..., in] x kernel [in, out]), through `dense_product`."""
    (lhs_contract, rhs_contract), batch = dimension_numbers
    if batch == ((), ()) and rhs.ndim == 2 and tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,):
        return dense_product(lhs, rhs, precision, preferred_element_type)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)


Dense = functools.partial(nn.Dense, dot_general=_dot_general)
