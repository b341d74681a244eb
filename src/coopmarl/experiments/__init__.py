"""Paper presets for `coopmarl reproduce NAME`, as declarations run by one executor.

A preset declares its options, its *cells* — `Cell(path, algo, env, overrides, seeds, label, group)`, one run
directory each under the preset's `--out` — and a *report* function that turns the finished cells (`Runs`, read
back from their run directories) into a `Report`: the markdown table, its notes and plots. The executor
(`coopmarl.experiments.executor`) checks every cell, skips finished ones, resumes interrupted ones, trains the
rest (locally or on Ray), then builds the report, table.md, aggregate.json and marl_eval.json; `--report-only`
rebuilds them from the run directories alone. A preset without cells (an exact computation) only reports.

    @register_experiment("my-preset", "what it reproduces", {"seeds": (3, "seeds per run")}, cells=my_cells)
    def my_preset(runs: Runs, opts: dict) -> Report: ...
"""

from coopmarl.experiments.registry import (Cell, Experiment, Report, choose, get_experiment, list_experiments,
                                           markdown_table, register_experiment, resolve_options)

__all__ = ["Cell", "Experiment", "Report", "choose", "get_experiment", "list_experiments", "markdown_table",
           "register_experiment", "resolve_options", "run_experiment"]


def run_experiment(name: str, out_dir=None, options: dict | None = None, **kwargs):
    """Run the experiment `name` into `out_dir` (default runs/NAME); see `executor.run_experiment`. Returns
    (Report, out_dir)."""
    from coopmarl.experiments.executor import run_experiment as execute

    return execute(name, out_dir, options, **kwargs)
