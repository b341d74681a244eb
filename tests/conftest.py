"""Shared fixtures: a small user-defined game written to an .npz (for `make("tabular:PATH")`)."""

from __future__ import annotations

import os

import numpy as np
import pytest

# The CLI turns on JAX's persistent compilation cache (coopmarl.compilation_cache) for its process; tests call
# `main([...])` in the test process, which would leave the cache on for every later test. Late in a full run (after
# ~1,200 tests' programs) writing one executable to it segfaulted inside jax (compilation_cache.
# put_executable_and_time, twice at the same test; the same program alone writes fine). The test process keeps
# the cache off; tests/test_everyday.py checks the cache in subprocesses of their own.
os.environ["COOPMARL_COMPILATION_CACHE"] = "0"
# Most of a test's time is XLA compiling tiny programs. The test process (and the CLI subprocesses it starts, which
# inherit the variable) compiles with LLVM's optimisations off: the same XLA programs (HLO, fusions, op order), less
# optimised machine code. Measured on tests/test_value_based.py: 197 s -> 135 s. Set XLA_FLAGS yourself to test with
# another level (e.g. XLA_FLAGS=--xla_backend_optimization_level=2 for XLA's default).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# pytest-xdist's workers (`make test` runs the suite in one per core) set COLUMNS=80, which would fold the CLI's
# tables that tests read; without it the CLI prints them 160 columns wide off a terminal (cli.console)
os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module: a test process otherwise keeps every program of
    ~600 tests alive (memory and JIT code grow for the whole run; late in a single-process run XLA's compiler
    segfaulted). A later module that needs a program compiles it again."""
    yield
    import jax

    jax.clear_caches()

# A 2-state, 2-agent, 2-action game with a stochastic start and stochastic transitions.
# Joint actions are indexed [agent 1's action, agent 2's action].
TINY_REWARD = np.array(
    [
        [[1.0, 0.0], [0.0, 2.0]],  # state 0
        [[0.5, -1.0], [3.0, 0.0]],  # state 1
    ],
    dtype=np.float32,
)
TINY_TRANSITION = np.array(
    [
        [[[0.9, 0.1], [0.5, 0.5]], [[0.2, 0.8], [0.0, 1.0]]],
        [[[1.0, 0.0], [0.3, 0.7]], [[0.6, 0.4], [0.25, 0.75]]],
    ],
    dtype=np.float32,
)
TINY_INITIAL = np.array([0.5, 0.5], dtype=np.float32)
TINY_HORIZON = 4
TINY_DISCOUNT = 0.9


def write_tiny_npz(path, **overrides):
    arrays = dict(reward=TINY_REWARD, transition=TINY_TRANSITION, initial=TINY_INITIAL,
                  horizon=np.int64(TINY_HORIZON), discount=np.float64(TINY_DISCOUNT))
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> str:
    """Path of an .npz holding the tiny game above (reward, transition, initial, horizon, discount)."""
    return write_tiny_npz(tmp_path_factory.mktemp("games") / "tiny.npz")
