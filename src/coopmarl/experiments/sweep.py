"""`coopmarl sweep ALGO ENV key=a,b,c other=x,y --seeds N`: a grid of runs as an experiment of its own.

Every `key=v1,v2,…` is an axis of the grid; the cells are the cartesian product, in the order given, each one run
directory `KEY=V_OTHER=W` under `--out`, labelled "key=v other=w" (so `coopmarl aggregate` keeps the settings
apart). A value without a comma is shared by every cell. A key whose value is itself a list (`hidden_sizes`) takes
its grid values separated by `;` (`hidden_sizes=64,64;128,128`). `key=vmap:a,b,c` makes the values one compiled
program, vmapped like seeds (`coopmarl.training.train_vmapped`), still one run directory per value; only
hyperparameters that enter the computation as values can be vmapped (the error names the reason and the keys that
can). The sweep runs on the one executor (`coopmarl.experiments.executor`): a rerun skips finished cells and
resumes interrupted ones; `--backend ray` fans the cells out over a Ray cluster; table.md ranks the cells by the
IQM of `metric` with 95% bootstrap intervals.
"""

from __future__ import annotations

import itertools
import typing

import numpy as np

from coopmarl.errors import ConfigError
from coopmarl.experiments import Cell, Experiment, Report, markdown_table
from coopmarl.experiments.tables import estimate, improvement, iqm_ci, mean_sd, plot_cells

__all__ = ["VMAP_PREFIX", "parse_grid", "sweep_experiment", "run_sweep"]

VMAP_PREFIX = "vmap:"


def _is_list_key(algo: str, env: str, key: str) -> bool:
    """Whether `key`'s value is itself a list (a tuple-typed algorithm key or env parameter)."""
    from coopmarl.algos.base import get_algo
    from coopmarl.config import config_fields
    from coopmarl.envs.registry import env_entry

    try:
        if key.startswith("env."):
            types = {p.name: p.type for p in env_entry(env).params}
            typ = types.get(key[4:])
        else:
            typ = config_fields(get_algo(algo).config_cls).get(key.removeprefix("algo."))
    except Exception:  # an unknown algorithm or env: resolve() names it
        return False
    if typ is None:
        return False
    origin = typing.get_origin(typ)
    return typ is tuple or origin is tuple or any(typing.get_origin(a) is tuple or a is tuple
                                                  for a in typing.get_args(typ))


def parse_grid(algo: str, env: str, overrides: list[str]) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """(fixed overrides, grid axes {key: [values]}, the vmapped keys) of a sweep's key=value arguments."""
    from coopmarl.config import parse_overrides

    fixed, axes, vmapped = {}, {}, []
    for key, value in parse_overrides(overrides).items():
        if value.startswith(VMAP_PREFIX):
            value = value[len(VMAP_PREFIX):]
            vmapped.append(key)
        sep = ";" if _is_list_key(algo, env, key) else ","
        values = [v.strip() for v in value.split(sep)]
        if any(not v for v in values):
            raise ConfigError(f"sweep value {key}={value!r} has an empty entry: give values as {key}=a{sep}b{sep}c")
        if len(set(values)) < len(values):
            raise ConfigError(f"sweep values of {key!r} repeat a value: {value!r}")
        if len(values) > 1 or key in vmapped:
            axes[key] = values
        else:
            fixed[key] = values[0]
    if not axes:
        raise ConfigError("a sweep needs at least one key with several values, e.g. lr=0.001,0.0003 (a single run is "
                          "`coopmarl train`)")
    return fixed, axes, vmapped


def _dirname(setting: dict[str, str]) -> str:
    return "_".join(f"{k.removeprefix('algo.')}={v}" for k, v in setting.items()).replace("/", "-").replace(" ", "")


def sweep_experiment(algo: str, env: str, overrides: list[str], seeds: int = 1, seed: int = 0,
                     metric: str = "eval_return") -> Experiment:
    """The sweep as an `Experiment` for the executor (its name, `sweep ALGO ENV`, marks its --out)."""
    fixed, axes, vmapped = parse_grid(algo, env, overrides)
    keys = list(axes)
    settings = [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]
    if vmapped:  # before anything is written: only values that enter the computation as values (traces only)
        from coopmarl.hparams import check_vmappable

        check_vmappable(algo, env, {**fixed, **settings[0]}, vmapped)
    group = "vmap " + " ".join(vmapped) if vmapped else ""

    def cells(opts):
        out = []
        for setting in settings:
            label = " ".join(f"{k}={v}" for k, v in setting.items())
            vmap_group = ""
            if vmapped:  # cells that differ only in vmapped keys share one compiled program
                vmap_group = group + ": " + " ".join(f"{k}={v}" for k, v in setting.items() if k not in vmapped)
            out.append(Cell(_dirname(setting), algo, env, {**fixed, **setting}, seeds, seed, label=label,
                            vmap_group=vmap_group))
        return out

    def report(runs, opts) -> Report:
        ranked = sorted(runs, key=lambda r: -_iqm(r, metric))
        rows = []
        for rank, run in enumerate(ranked, 1):
            est = estimate(run.final(metric), run.label, env, metric)
            stopped = f" ({run.stopped})" if run.stopped else ""
            rows.append([rank, *[run.cell.overrides[k] for k in keys], iqm_ci(est, 3) + stopped, mean_sd(est, 3),
                         run.cell.path])
        notes = [f"{algo} on {env}, {seeds} seed(s) per cell from seed {seed}; fixed settings: "
                 + (", ".join(f"{k}={v}" for k, v in fixed.items()) or "the defaults") + "."]
        if vmapped:
            notes.append(f"Vmapped in one compiled program per group: {', '.join(vmapped)}.")
        if len(ranked) > 1:
            a, b = ranked[0], ranked[1]
            notes.append(f"Best by IQM: {a.label}; "
                         + improvement(a.final(metric), b.final(metric), a.label, b.label, env, metric)
                         + f" against the runner-up ({b.label}).")
        plot = plot_cells(ranked, runs.out / "curves.png", [metric, "train_return"], f"{algo} on {env}: sweep")
        return Report(f"Sweep: {algo} on {env}", markdown_table(
            ["rank", *keys, f"{metric}, IQM [95% CI]", "mean ± sd", "run directory"], rows), notes, [plot])

    groups = {c.vmap_group: vmapped for c in cells({}) if c.vmap_group}
    return Experiment(f"sweep {algo} {env}", f"sweep of {algo} on {env} over {', '.join(keys)}", report, {}, cells,
                      (metric,), groups)


def _iqm(run, metric: str) -> float:
    est = estimate(run.final(metric), run.label, run.cell.env, metric)
    return est["iqm"] if est is not None else -np.inf


def run_sweep(algo: str, env: str, overrides: list[str], *, seeds: int = 1, seed: int = 0, out=None,
              metric: str = "eval_return", **kwargs):
    """Run a sweep into `out` (default runs/sweep_ALGO_ENV); returns (Report, out). `kwargs` go to the executor
    (backend, address, cpus_per_cell, gpus_per_cell, report_only, overwrite, progress)."""
    from pathlib import Path

    from coopmarl.experiments.executor import run_experiment

    exp = sweep_experiment(algo, env, overrides, seeds, seed, metric)
    if out is None:
        out = Path("runs") / f"sweep_{algo}_{env.replace(':', '_').replace('/', '_')}"
    return run_experiment(exp.name, out, {}, experiment=exp, **kwargs)
