"""Shared measurement for the benchmarks: one jitted `lax.scan` of random (mask-respecting) steps in
`n_envs` vmapped envs; compile time measured on a first call, steps/s on later calls."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from coopmarl.envs.core import AutoReset


def random_actions(key, spec, avail):
    """Uniform among the available actions (discrete) or in [low, high] (continuous); avail [E, N, A]."""
    if spec.discrete:
        return jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf)).astype(jnp.int32)
    shape = avail.shape[:2] + (spec.action_dim,)
    return jax.random.uniform(key, shape, minval=spec.low, maxval=spec.high)


def measure_env(env, n_envs: int, steps: int, auto_reset: bool = True, repeats: int = 1) -> dict:
    """Env-only throughput. Everything a learner reads (obs, state, masks, reward) is consumed, so XLA
    cannot drop the code that computes it. With `auto_reset` the env is wrapped as the runner wraps it."""
    wrapped = AutoReset(env) if auto_reset else env
    spec = env.spec

    def run(key):
        k_reset, k_run = jax.random.split(key)
        state, ts = jax.vmap(wrapped.reset)(jax.random.split(k_reset, n_envs))

        def body(carry, k):
            state, ts, acc = carry
            k_act, k_env = jax.random.split(k)
            actions = random_actions(k_act, spec, ts.avail_actions)
            state, ts = jax.vmap(wrapped.step)(jax.random.split(k_env, n_envs), state, actions)
            used = ts.reward.sum() + ts.obs.sum() + ts.global_state.sum() + ts.avail_actions.sum()
            return (state, ts, acc + used), None

        (_, _, acc), _ = jax.lax.scan(body, (state, ts, jnp.float32(0.0)), jax.random.split(k_run, steps))
        return acc

    compile_s, run_s = time_compiled(run, repeats)
    return dict(n_envs=n_envs, steps=steps * n_envs, compile_s=compile_s, run_s=run_s,
                steps_per_s=steps * n_envs / run_s)


def measure_training(algo_name: str, env_name: str, seeds: int, iters: int, overrides: list[str]) -> dict:
    """Training env steps/s of `seeds` vmapped seeds: `iters` iterations (collect + update) compiled as one chunk,
    timed on a second call (compile time apart). An off-policy learner's replay is filled first, so that every timed
    iteration takes its gradient steps."""
    from coopmarl.config import resolve
    from coopmarl.results import iteration_size
    from coopmarl.runner import build_chunk

    r = resolve(algo_name, env_name, overrides)
    t, e = iteration_size(r.algo, r.config, r.env.spec)
    init_fn, chunk_fn = build_chunk(r.algo, r.env, r.config, iters)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    carry = jax.jit(jax.vmap(init_fn, in_axes=(None, 0)))(None, keys)
    if hasattr(r.config, "batch_size"):  # fill the replay first
        warm = jax.jit(jax.vmap(build_chunk(r.algo, r.env, r.config, max(1, r.config.batch_size // e + 1))[1],
                                in_axes=(None, 0)))
        carry = jax.block_until_ready(warm(None, carry)[0])
    chunk = jax.vmap(chunk_fn, in_axes=(None, 0))
    compile_s, run_s = time_compiled(lambda key: jax.tree.leaves(chunk(None, carry)[1]))
    steps = iters * t * e * seeds
    return dict(seeds=seeds, steps=steps, compile_s=compile_s, run_s=run_s, steps_per_s=steps / run_s,
                updates_per_s=iters * seeds / run_s, n_envs=e, window=t)


def time_compiled(run, repeats: int = 1) -> tuple[float, float]:
    """(compile seconds: the first call, run seconds: the median of `repeats` later calls, each with
    its own key) of `jax.jit(run)(key)`."""
    fn = jax.jit(run)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jax.random.PRNGKey(i + 1)))
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times)


def print_table(title: str, headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0, 1)) -> None:
    """A rich table (columns in `left` left-aligned, the rest right-aligned), at least 160 columns wide so
    that a logged table is not folded."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i in left else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(160, len(title) + 4)).print(table)
