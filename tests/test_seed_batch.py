"""Seed i of a vmapped batch of seeds is bit-identical to seed i trained alone — where XLA allows it.

The runner vmaps one program over seeds; nothing in it mixes seeds. For the tabular learners and planners
the batched program also rounds exactly as the single-seed one, so a seed's metrics and final state are
bit-identical however it was run (checked here for one tabular value-based learner, one tabular policy
learner and one policy-optimisation planner). For the neural-network algorithms they are not: XLA:CPU
compiles the differently shaped (batched) fused kernels differently (vectorisation, FMA contraction,
reduction order), which changes some roundings by ~1 ulp (already in the orthogonal initialisation)
and training amplifies that. What does hold for them — the seed's result does not depend on the other
seeds' data — is checked on IPPO. `benchmarks/seed_batch_identity.py` measures all algorithms.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from coopmarl.config import resolve
from coopmarl.runner import train

RUN = {"log_points": 4, "eval_episodes": 2}


def _train(algo: str, env: str, n_seeds: int, seed: int, **overrides):
    r = resolve(algo, env, {**RUN, **overrides}, n_seeds=n_seeds, seed=seed)
    return train(r.algo, r.env, r.config, r.run, progress=False)


def _leaf(x) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _assert_same_seed(a, i: int, b, j: int):
    """Seed at position i of run a and position j of run b: the same bits in every metric and state leaf."""
    assert sorted(a.metrics) == sorted(b.metrics)
    for name in a.metrics:
        x, y = a.metrics[name][:, i], b.metrics[name][:, j]
        assert x.tobytes() == y.tobytes(), f"metric {name!r}: {x} != {y}"
    leaves_a, leaves_b = jax.tree.leaves(a.train_state), jax.tree.leaves(b.train_state)
    assert len(leaves_a) == len(leaves_b)
    for k, (x, y) in enumerate(zip(leaves_a, leaves_b)):
        x, y = _leaf(x)[i], _leaf(y)[j]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), \
            f"train state leaf {k} differs (max |Δ| {np.max(np.abs(x.astype(np.float64) - y)) if x.size else 0})"


@pytest.mark.parametrize("algo, steps", [
    ("tabular-iql", 400),  # tabular value-based (independent Q-learning)
    ("wolf-phc", 400),  # tabular policy learner (WoLF policy hill climbing)
    ("dpo-exact", 20),  # policy optimisation on the model (a planner: iterations)
])
def test_a_seed_in_a_vmapped_batch_is_bit_identical_to_it_alone(algo, steps):
    batch = _train(algo, "climbing", n_seeds=3, seed=0, total_steps=steps)
    alone = _train(algo, "climbing", n_seeds=1, seed=1, total_steps=steps)
    _assert_same_seed(batch, 1, alone, 0)


def test_a_seed_does_not_depend_on_its_batch_mates():
    """IPPO: seed 1 among seeds 0..2 and among seeds 1..3 (same batch size, other mates, other position)
    is bit-identical — whereas alone it differs by XLA's rounding (not asserted: that is XLA's choice)."""
    small = dict(total_steps=160, hidden_sizes="16", n_epochs=2, rollout_length=5, n_envs=4)
    a = _train("ippo", "climbing", n_seeds=3, seed=0, **small)
    b = _train("ippo", "climbing", n_seeds=3, seed=1, **small)
    _assert_same_seed(a, 1, b, 0)
