"""coopmarl: cooperative multi-agent RL in JAX.

Everything is imported on first use (PEP 562), so `import coopmarl` — and `coopmarl --help` — stays fast
and does not import JAX:

    import coopmarl
    env = coopmarl.make("climbing")              # environments
    coopmarl.check_env("my_pkg.my_env:make")     # your own env against the env contract (a report)
    coopmarl.list_envs(); coopmarl.list_algos()  # what is registered (built-in and plugins)
    resolved = coopmarl.resolve("qmix", "lbf:5x5-2p-1f-coop", ["total_steps=10000"])
    result = coopmarl.train(resolved.algo, resolved.env, resolved.config, resolved.run)
    report = coopmarl.aggregate(["runs/"])         # IQM, mean, … with bootstrap CIs over run directories
    report, out = coopmarl.run_experiment("remix-predator-prey", "runs/pp")   # a preset (again: continues)
    report, out = coopmarl.run_sweep("tabular-iql", "climbing", ["epsilon=0.05,0.2"], seeds=8)
"""

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "make": "coopmarl.envs.registry", "list_envs": "coopmarl.envs.registry", "EnvSpec": "coopmarl.envs.core",
    "TimeStep": "coopmarl.envs.core", "TabularGame": "coopmarl.envs.tabular", "check_env": "coopmarl.envs.check",
    "list_algos": "coopmarl.algos.base", "get_algo": "coopmarl.algos.base",
    "resolve": "coopmarl.config", "train": "coopmarl.runner", "RunConfig": "coopmarl.results",
    "RunResult": "coopmarl.results",
    "load_checkpoint": "coopmarl.outputs", "evaluate": "coopmarl.outputs", "load_run": "coopmarl.outputs",
    "render_run": "coopmarl.render", "train_run": "coopmarl.training", "train_vmapped": "coopmarl.training",
    "resume": "coopmarl.training", "check_vmappable": "coopmarl.hparams",
    "run_experiment": "coopmarl.experiments", "run_sweep": "coopmarl.experiments.sweep",
    "ConfigError": "coopmarl.errors", "enable_compilation_cache": "coopmarl.compilation_cache", "aggregate": "coopmarl.aggregation",
    "to_pettingzoo": "coopmarl.adapters", "to_gymnasium": "coopmarl.adapters", "to_jaxmarl": "coopmarl.adapters",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'coopmarl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
