"""The CPU kernels behind three of the library's speed choices, each timed beside what it replaces, side by side in
one run (each pair compiled once, then called in turn `--repeats` times; the fastest call of each counts):

1. `nets.dense.Dense`'s weight gradient against flax's `nn.Dense` (autodiff's), for the layer shapes our learners
   train (rows = minibatch or replay rows): the gradient of sum(tanh(x W + b)) with respect to x, W and b.
2. `envs.fast_random.categorical` (jax.random.categorical bit for bit, without the CPU's rolled Threefry loop) and
   `split_key` (jax.random.split, bit for bit), as the runner draws them each step: one key per env, N agents.
3. `envs.fast_random.permutation` (one sort of 64-bit keys) against `jax.random.permutation` (two sorts of 32-bit
   keys above 1,625 elements): the minibatch shuffle of the PPO family.

Each timed call runs the kernel `--inner` times in a `lax.scan`, as a training loop does; the table gives µs per
kernel call. `--quick` runs one small case of each (the test suite's smoke run).

    python benchmarks/cpu_kernels.py [--repeats 7] [--inner 50] [--quick]
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.envs.fast_random import categorical, permutation, split_key
from coopmarl.nets.dense import Dense

# (rows, in, out): IPPO's actor output and hidden layer at 16 envs (4 minibatches of 512 x 3 agents); QMIX's Q head
# on MPE spread (32 windows x 26 steps x 3 agents) and its GRU's input gates; the QMIX mixer's hypernetwork layers
# (32 x 26 rows); DPO's actor output on a 4-minibatch MPE batch
DENSE_SHAPES = ((1536, 64, 5), (1536, 64, 64), (2496, 64, 5), (2496, 64, 192), (832, 128, 96), (832, 128, 32),
                (6144, 64, 5))
SAMPLE_CASES = ((16, 3, 5), (256, 3, 5))  # (envs, agents, actions)
PERMUTATION_SIZES = (2048, 8192, 65536)


def time_pair(fns: list, args: tuple, repeats: int) -> list[float]:
    """Fastest of `repeats` interleaved calls of each jitted fn(*args), after one compiling call each: seconds."""
    for fn in fns:
        jax.block_until_ready(fn(*args))
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _scanned(kernel, inner: int):
    """jit(fn(x, key)): `inner` calls of kernel(x, key_i) in a lax.scan, each result folded into the carry (so that
    none is dropped or hoisted)."""
    def run(x, key):
        def body(acc, k):
            return acc + kernel(x + acc * 1e-9, k), None
        return jax.lax.scan(body, jnp.float32(0.0), jax.random.split(key, inner))[0]
    return jax.jit(run)


def dense_rows(shapes, inner: int, repeats: int) -> list[tuple]:
    """(rows, in, out, flax µs, ours µs) of a layer's forward and backward pass."""
    out = []
    for rows, d_in, d_out in shapes:
        x = jax.random.normal(jax.random.PRNGKey(0), (rows, d_in))
        params = nn.Dense(d_out).init(jax.random.PRNGKey(1), x)  # the same parameters for both layers

        def kernel_of(layer):
            def kernel(x_, key):
                g = jax.grad(lambda p, xx: jnp.sum(jnp.tanh(layer.apply(p, xx))), argnums=(0, 1))(params, x_)
                return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(g))
            return kernel

        fns = [_scanned(kernel_of(nn.Dense(d_out)), inner), _scanned(kernel_of(Dense(d_out)), inner)]
        t_flax, t_ours = time_pair(fns, (x, jax.random.PRNGKey(2)), repeats)
        out.append((rows, d_in, d_out, t_flax / inner * 1e6, t_ours / inner * 1e6))
    return out


def sample_rows(cases, inner: int, repeats: int) -> list[tuple]:
    """(envs, agents, actions, jax.random µs, fast_random µs) of one rollout step's draws: split the step key in two,
    one key per env, one action per agent."""
    out = []
    for n_envs, n_agents, n_actions in cases:
        logits = jax.random.normal(jax.random.PRNGKey(0), (n_envs, n_agents, n_actions))

        def kernel_of(split, sample):
            def kernel(lg, key):
                k_act, _ = split(key, 2)
                actions = jax.vmap(sample)(split(k_act, n_envs), lg)
                return jnp.sum(actions).astype(jnp.float32)
            return kernel

        fns = [_scanned(kernel_of(jax.random.split, lambda k, lg: jax.random.categorical(k, lg)), inner),
               _scanned(kernel_of(split_key, lambda k, lg: categorical(k, lg)), inner)]
        t_jax, t_ours = time_pair(fns, (logits, jax.random.PRNGKey(1)), repeats)
        out.append((n_envs, n_agents, n_actions, t_jax / inner * 1e6, t_ours / inner * 1e6))
    return out


def permutation_rows(sizes, inner: int, repeats: int) -> list[tuple]:
    """(n, jax.random.permutation µs, fast_random.permutation µs)."""
    out = []
    for n in sizes:
        weights = jnp.arange(n, dtype=jnp.float32) / n

        def kernel_of(perm):
            return lambda w, key: jnp.sum(w[perm(key, n)] * w)  # the whole permutation is read

        fns = [_scanned(kernel_of(lambda k, m: jax.random.permutation(k, m)), inner),
               _scanned(kernel_of(permutation), inner)]
        t_jax, t_ours = time_pair(fns, (weights, jax.random.PRNGKey(1)), repeats)
        out.append((n, t_jax / inner * 1e6, t_ours / inner * 1e6))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="timed calls of each program (the fastest counts)")
    p.add_argument("--inner", type=int, default=50, help="kernel calls per timed call (a lax.scan)")
    p.add_argument("--quick", action="store_true", help="one small case of each table, few calls (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        dense, samples, perms, inner, repeats = ((256, 64, 5),), ((4, 3, 5),), (512,), 2, 1
    else:
        dense, samples, perms, inner, repeats = DENSE_SHAPES, SAMPLE_CASES, PERMUTATION_SIZES, args.inner, args.repeats
    print(f"\nCPU kernels, {jax.devices()[0].platform}, {jax.device_count()} device(s); µs per kernel call, "
          f"fastest of {repeats} calls of {inner} kernel calls each")

    print("\nA dense layer's forward and backward pass (gradient of sum(tanh(x W + b)) for x, W, b):")
    print("| rows | in | out | flax nn.Dense µs | coopmarl Dense µs | flax / ours |")
    print("|---|---|---|---|---|---|")
    for rows, d_in, d_out, t_flax, t_ours in dense_rows(dense, inner, repeats):
        print(f"| {rows} | {d_in} | {d_out} | {t_flax:,.1f} | {t_ours:,.1f} | {t_flax / t_ours:.2f} |", flush=True)

    print("\nOne rollout step's draws (split the key, a key per env, a categorical action per agent):")
    print("| envs | agents | actions | jax.random µs | fast_random µs | jax / ours |")
    print("|---|---|---|---|---|---|")
    for n_envs, n_agents, n_actions, t_jax, t_ours in sample_rows(samples, inner, repeats):
        print(f"| {n_envs} | {n_agents} | {n_actions} | {t_jax:,.1f} | {t_ours:,.1f} | {t_jax / t_ours:.2f} |",
              flush=True)

    print("\nA random permutation (the PPO family's minibatch shuffle):")
    print("| n | jax.random.permutation µs | fast_random.permutation µs | jax / ours |")
    print("|---|---|---|---|")
    for n, t_jax, t_ours in permutation_rows(perms, inner, repeats):
        print(f"| {n:,} | {t_jax:,.1f} | {t_ours:,.1f} | {t_jax / t_ours:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
