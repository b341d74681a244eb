"""coopmarl: cooperative multi-agent RL in JAX."""

__version__ = "0.1.0"

from coopmarl.envs import EnvSpec, TabularGame, TimeStep, list_envs, make  # noqa: E402

__all__ = ["__version__", "make", "list_envs", "EnvSpec", "TimeStep", "TabularGame", "load_checkpoint", "evaluate",
           "render_run"]

# run-directory functions, imported on first use (they pull in the runner and the algorithms)
_LAZY = {"load_checkpoint": "coopmarl.outputs", "evaluate": "coopmarl.outputs", "render_run": "coopmarl.render"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coopmarl' has no attribute {name!r}")
