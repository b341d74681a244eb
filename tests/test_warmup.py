"""An off-policy learner's first iterations only fill its replay (`Algorithm.warmup_iterations`): the runner tells
`update` so by the iteration's index, the same for every vmapped seed, so the warm-up skips the gradient step
instead of computing it and throwing it away (a per-seed `lax.cond` under vmap runs both branches). The runner's
word must be exactly the replay's own `can_sample`, and a run must be the same bit for bit either way."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coopmarl.algos import offpolicy as op
from coopmarl.config import resolve
from coopmarl.results import iteration_size
from coopmarl.runner import RunConfig, build_chunk, train


def _learning_by_iteration(r, iters: int) -> list[bool]:
    """Whether each of the first `iters` iterations learned, as the replay itself decides (no `start`)."""
    init, chunk = build_chunk(r.algo, r.env, r.config, 1)
    step = jax.jit(lambda c: chunk(None, c)[:2])
    carry, out = jax.jit(lambda k: init(None, k))(jax.random.PRNGKey(0)), []
    for _ in range(iters):
        carry, metrics = step(carry)
        out.append(bool(metrics["learning"] > 0))
    return out


@pytest.mark.parametrize("algo,env,overrides", [
    ("qmix", "ro-matrix", ["agent=mlp", "n_envs=5", "batch_size=12"]),  # 12 windows of 5 a time: the 3rd iteration
    # ReMIX's recent-windows buffer must be able to give its batch too
    ("remix", "ro-matrix", ["agent=mlp", "n_envs=2", "batch_size=2", "recent_buffer_size=12",
                            "recent_batch_size=9"]),
    ("maddpg", "differential", ["n_envs=2", "learning_starts=7", "batch_size=4"]),  # learning_starts
])
def test_the_warmup_is_exactly_when_the_replay_cannot_sample(algo, env, overrides):
    """(Cheap cases by arithmetic: `test_warmup_counts`; these train, reading each iteration's own `can_sample`.)"""
    r = resolve(algo, env, overrides)
    warm = op.warmup_iterations(r.env.spec, r.config)
    assert _learning_by_iteration(r, warm + 3) == [False] * warm + [True] * 3


def test_warmup_counts():
    def count(**keys):
        r = resolve("qmix", "ro-matrix", [f"{k}={v}" for k, v in keys.items()])
        return op.warmup_iterations(r.env.spec, r.config)

    assert count(n_envs=8, batch_size=32) == 3  # 32 windows after the 4th iteration
    assert count(n_envs=4, batch_size=4, buffer_size=4) == 0  # the first iteration learns
    assert count(n_envs=8, batch_size=33, buffer_size=40) == 4  # 33 windows after the 5th
    assert count(n_envs=3, batch_size=2, buffer_size=3) == 0


def test_a_run_told_the_warmup_equals_one_deciding_per_seed():
    """`train` (which passes each chunk's first iteration) gives the same parameters, bit for bit, as chunks
    that let each seed's replay decide."""
    r = resolve("qmix", "ro-matrix", ["agent=mlp", "n_envs=4", "batch_size=16"])
    t, e = iteration_size(r.algo, r.config, r.env.spec)
    run = RunConfig(total_steps=t * e * 10, n_seeds=2, log_points=5, eval_episodes=1)  # 10 iterations, 2 per chunk
    told = train(r.algo, r.env, r.config, run, progress=False)
    init, chunk = build_chunk(r.algo, r.env, r.config, 2)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    carry = jax.jit(jax.vmap(lambda k: init(None, k)))(keys)
    step = jax.jit(jax.vmap(lambda c: chunk(None, c)[0]))
    for _ in range(5):
        carry = step(carry)
    jax.tree.map(np.testing.assert_array_equal, told.train_state.params, carry[0].params)
    assert op.warmup_iterations(r.env.spec, r.config) == 3 and int(told.train_state.updates[0]) == 7


def _conds(jaxpr) -> int:
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == "cond"
        for sub in jax.core.subjaxprs(eqn) if hasattr(jax.core, "subjaxprs") else ():
            n += _conds(sub)
        for v in eqn.params.values():
            for j in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(j, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    n += _conds(inner)
    return n


def test_vmapped_seeds_keep_the_warmup_a_branch():
    """Under vmap a per-seed predicate turns `lax.cond` into a select of both branches; the runner's index keeps it
    a cond, so a warm-up iteration costs no gradient step."""
    r = resolve("qmix", "ro-matrix", ["agent=mlp", "n_envs=4", "batch_size=16"])
    init, chunk = build_chunk(r.algo, r.env, r.config, 2)
    carry = jax.eval_shape(jax.vmap(lambda k: init(None, k)), jnp.zeros((2, 2), jnp.uint32))
    told = jax.make_jaxpr(jax.vmap(lambda c, s: chunk(None, c, s), in_axes=(0, None)))(carry, jnp.int32(0))
    per_seed = jax.make_jaxpr(jax.vmap(lambda c: chunk(None, c)))(carry)
    assert _conds(told.jaxpr) > _conds(per_seed.jaxpr)
