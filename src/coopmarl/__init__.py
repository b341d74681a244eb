"""coopmarl: cooperative multi-agent RL in JAX."""

__version__ = "0.1.0"

from coopmarl.envs import EnvSpec, TabularGame, TimeStep, list_envs, make  # noqa: E402

__all__ = ["__version__", "make", "list_envs", "EnvSpec", "TimeStep", "TabularGame"]
