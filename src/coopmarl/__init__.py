"""coopmarl: cooperative multi-agent RL in JAX."""

import os as _os

# XLA's CPU runtime can wedge for good (every thread parked, the result never ready) when its
# multithreaded Eigen pool runs large vmapped programs under load — we saw training runs hang in
# `device_get` with all threads idle (also reported upstream-adjacent, e.g. PyAutoFit#1528/#1530).
# Single-threaded Eigen avoids it; it must be set before JAX starts its CPU backend. A user who sets
# the flag themselves keeps their choice.
if "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

__version__ = "0.1.0"

from coopmarl.envs import EnvSpec, TabularGame, TimeStep, list_envs, make  # noqa: E402

__all__ = ["__version__", "make", "list_envs", "EnvSpec", "TimeStep", "TabularGame"]
