"""The one executor of experiments: a preset's (or a sweep's) cells become run directories under `--out`.

    report, out = run_experiment("remix-predator-prey", "runs/pp", {"punishments": "-2"})
    report, out = run_experiment("remix-predator-prey", "runs/pp", {"punishments": "-2"})  # again: nothing runs
    report, out = run_experiment("remix-predator-prey", "runs/pp", {"punishments": "-2"}, report_only=True)

Every cell is checked first — its algorithm, env and settings resolve, no two cells share a run directory, and a
run directory already there was run with exactly the cell's settings — so a bad option or a changed setting is one
ConfigError before anything trains or is written. Then each cell is, by what its run directory holds:
  - finished (summary.json, not stopped) or diverged: skipped (a diverged cell is reported as such, never rerun);
  - interrupted, or killed with a checkpoint: resumed (`coopmarl.resume`);
  - absent, empty, or killed before its first checkpoint: trained (`coopmarl.train_run`).
A cell that diverges is recorded and the others go on. Ctrl-C stops the grid (the running cell saves its state);
the same command continues it. The report (table.md, plots) is always built from the run directories, so
`report_only=True` rebuilds the very same table.md without training.

Backends: "local" runs the cells one after another in this process; "ray" runs each cell as a Ray task with its
resource request (`cpus_per_cell`, `gpus_per_cell`), on a local Ray instance or, with `address`, on an existing
cluster (`ray start --head` / `ray start --address …` on each machine; the run directories must be on a
filesystem every machine sees). A cell's files do not depend on the backend.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from coopmarl.errors import ConfigError, Diverged, Interrupted

__all__ = ["BACKENDS", "CellRun", "Runs", "run_cells", "run_experiment", "plan_cells"]

BACKENDS = ("local", "ray")
PRESET_FILE = "preset.json"  # marks a folder as an experiment's --out (and records what ran into it)


# ---- reading finished cells --------------------------------------------------------------------------------


class CellRun:
    """A cell's run directory, read back: its curves (`result`, from metrics.csv), summary.json, and on demand
    its checkpointed train state (`state()`)."""

    def __init__(self, cell, run_dir: Path):
        from coopmarl.outputs import load_run

        self.cell, self.dir = cell, Path(run_dir)
        self.summary = json.loads((self.dir / "summary.json").read_text())
        self.result = load_run(self.dir)
        self._state = None

    @property
    def label(self) -> str:
        return self.cell.label

    @property
    def stopped(self) -> str | None:
        return self.summary.get("stopped")

    @property
    def wall_time(self) -> float:
        return float(self.summary.get("wall_time_s") or 0.0)

    def final(self, metric: str) -> np.ndarray:
        """Each seed's value at the last logged point (NaN where the run never logged `metric`)."""
        values = self.result.metrics.get(metric)
        return np.asarray(values[-1], dtype=float) if values is not None else np.full(len(self.result.seeds), np.nan)

    def state(self):
        """(Resolved, train state of every seed) from the run's newest checkpoint."""
        if self._state is None:
            from coopmarl.outputs import load_checkpoint

            self._state = load_checkpoint(self.dir)
        return self._state


class Runs:
    """The finished cells of one experiment, by cell path, in the order they were declared; with the
    statistics every table uses (`coopmarl.stats`, as `coopmarl aggregate` computes them)."""

    def __init__(self, out: Path, cells: list, runs: dict[str, CellRun]):
        self.out, self.cells, self._runs = Path(out), list(cells), runs

    def __getitem__(self, path: str) -> CellRun:
        return self._runs[path]

    def __iter__(self):
        return (self._runs[c.path] for c in self.cells)

    def __len__(self):
        return len(self.cells)

    def by_group(self) -> dict[str, list[CellRun]]:
        groups: dict[str, list[CellRun]] = {}
        for run in self:
            groups.setdefault(run.cell.group, []).append(run)
        return groups

    def estimate(self, run: CellRun, metric: str) -> dict | None:
        """IQM, mean, median with 95% stratified bootstrap intervals and the sample std over the seeds'
        final values (None when no seed has a finite value)."""
        from coopmarl.experiments.tables import estimate

        return estimate(run.final(metric), run.label, run.cell.env, metric)

    @property
    def wall_time(self) -> float:
        return sum(r.wall_time for r in self)


# ---- planning ----------------------------------------------------------------------------------------------


def plan_cells(cells: list, out: Path) -> list[tuple]:
    """[(cell, resolved, run_dir, status)], status one of "done", "diverged", "resume", "train", "restart";
    every cell checked before anything runs."""
    import yaml

    from coopmarl.loggers import check_loggers

    from coopmarl.checkpoints import list_checkpoints
    from coopmarl.config import resolve

    seen_paths, seen_labels, plan = {}, {}, []
    for cell in cells:
        if cell.path in seen_paths:
            raise ConfigError(f"two cells share the run directory {cell.path!r}")
        seen_paths[cell.path] = cell
        if (cell.label, cell.env) in seen_labels:
            raise ConfigError(f"two cells share the label {cell.label!r} on {cell.env}: give each its own label")
        seen_labels[(cell.label, cell.env)] = cell
        try:
            resolved = resolve(cell.algo, cell.env, {k: str(v) for k, v in cell.overrides.items()}, n_seeds=cell.seeds,
                               seed=cell.seed)
        except ConfigError as e:
            raise ConfigError(f"cell {cell.path}: {e}") from None
        check_loggers(resolved.run)
        run_dir = out / cell.path
        status = "train"
        if run_dir.is_file():
            raise ConfigError(f"{run_dir} is a file, where the cell {cell.path!r} writes its run directory")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            config_path = run_dir / "config.yaml"
            if not config_path.is_file():
                raise ConfigError(f"{run_dir} holds files but is not a run directory (no config.yaml): move it away "
                                  "or choose another --out")
            try:
                saved = yaml.safe_load(config_path.read_text())
                differs = _differences(saved, resolved.as_dict())
            except (yaml.YAMLError, KeyError, TypeError, AttributeError):
                differs = ["config.yaml is not a coopmarl config"]
            if differs:
                raise ConfigError(f"{run_dir} was run with other settings than the cell {cell.path!r} now has "
                                  f"({', '.join(differs[:5])}): choose another --out, or add --overwrite to start "
                                  "afresh")
            summary = _summary(run_dir)
            stopped = summary.get("stopped") if summary is not None else None
            if summary is not None and stopped is None:
                status = "done"
            elif stopped is not None and str(stopped).startswith("diverged"):
                status = "diverged"
            elif getattr(resolved.env, "host", False):
                status = "restart"  # a host env's run cannot be resumed
            else:
                status = "resume" if list_checkpoints(run_dir) else "restart"
        plan.append((cell, resolved, run_dir, status))
    return plan


# run keys that say how a run is kept and where it reports, not what it computes: a cell rerun with other values
# is the same cell, and `run_options` may set them for every cell of an experiment
RUN_OPTIONS = ("checkpoint_every", "keep_checkpoints", "save_buffers", "logger", "logger_project", "logger_group")


def _differences(saved: dict, wanted: dict) -> list[str]:
    """The settings in which a run directory's config.yaml differs from a cell's: every key the saved config has
    (a key added to coopmarl since keeps its default, as `coopmarl resume` reads it), the loggers left out."""
    import yaml

    wanted = yaml.safe_load(yaml.safe_dump(wanted, sort_keys=False))  # as config.yaml reads back
    out = [] if saved["algo"] == wanted["algo"] else [f"algo {saved['algo']!r}"]
    for section in ("env", "algo_config", "run"):
        for key, value in saved[section].items():
            if section == "run" and key in RUN_OPTIONS:
                continue
            if key not in wanted[section] or wanted[section][key] != value:
                out.append(f"{section}.{key}: {value!r} there, {wanted[section].get(key)!r} now")
    return out


def _summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # killed while writing it (writes are atomic, so only by hand): the run is not finished


# ---- running -----------------------------------------------------------------------------------------------


def _run_job(job: list[dict], progress: bool) -> list[str]:
    """Train, resume or restart one cell — or train a vmapped group of cells as one program — and return each
    cell's outcome ("trained", "resumed", "diverged (…)"). Runs in this process (local backend) or in a Ray worker;
    a job is plain data: [{"algo", "env", "overrides", "seeds", "seed", "dir", "status", "vmap": {key: value}}]."""
    from coopmarl.training import resume, train_run

    try:
        if len(job) > 1:  # one compiled program over the vmapped values (their product, in the cells' order)
            from coopmarl.training import train_vmapped

            first = job[0]
            keys = list(first["vmap"])
            values = {k: list(dict.fromkeys(c["vmap"][k] for c in job)) for k in keys}
            common = {k: str(v) for k, v in first["overrides"].items() if k not in keys}
            train_vmapped(first["algo"], first["env"], common, values, seeds=first["seeds"], seed=first["seed"],
                          outs=[c["dir"] for c in job], overwrite=any(c["status"] == "restart" for c in job),
                          progress=progress)
            return ["trained (vmapped)"] * len(job)
        (c,) = job
        if c["status"] == "resume":
            resume(c["dir"], progress=progress)
            return ["resumed"]
        train_run(c["algo"], c["env"], {k: str(v) for k, v in c["overrides"].items()}, seeds=c["seeds"],
                  seed=c["seed"], out=c["dir"], overwrite=c["status"] == "restart", progress=progress)
        return ["trained"]
    except Diverged as e:
        return [f"diverged ({e})"] * len(job)


def _jobs(todo: list[tuple], vmapped: dict[str, list[str]]) -> list[list[tuple]]:
    """The unfinished cells as jobs: a vmapped group whose cells all start afresh and form the whole product of
    their vmapped values is one job; every other cell is a job of its own (a resumed cell continues alone)."""
    jobs, groups = [], {}
    for item in todo:
        cell, _, status = item
        if cell.vmap_group and status in ("train", "restart"):
            groups.setdefault(cell.vmap_group, []).append(item)
        else:
            jobs.append([item])
    for name, items in groups.items():
        keys = vmapped[name]
        combos = {tuple(str(c.overrides[k]) for k in keys) for c, _, _ in items}
        full = int(np.prod([len({str(c.overrides[k]) for c, _, _ in items}) for k in keys]))
        jobs += [items] if len(items) > 1 and len(combos) == full == len(items) else [[i] for i in items]
    return jobs


def _job_data(job: list[tuple], vmapped: dict[str, list[str]]) -> list[dict]:
    return [{"algo": c.algo, "env": c.env, "overrides": dict(c.overrides), "seeds": c.seeds, "seed": c.seed,
             "dir": str(Path(rd).resolve()), "status": st,
             "vmap": {k: str(c.overrides[k]) for k in vmapped.get(c.vmap_group, [])}} for c, rd, st in job]


def _write_cell_file(cell, run_dir: Path):
    from coopmarl.files import atomic_write

    atomic_write(run_dir / "cell.json", json.dumps(asdict(cell), indent=1, default=str))


def run_cells(plan: list[tuple], backend: str = "local", *, address: str | None = None, cpus_per_cell: float = 1,
              gpus_per_cell: float = 0, progress: bool = False, vmapped: dict[str, list[str]] | None = None,
              log: Callable[[str], None] = print) -> dict[str, str]:
    """Run the cells of `plan` (from `plan_cells`) that are not finished; returns {cell path: outcome}.
    `vmapped` names the vmapped keys of each `Cell.vmap_group`."""
    vmapped = vmapped or {}
    if not plan:  # an experiment that trains nothing (an exact computation)
        return {}
    todo = [(c, rd, st) for c, _, rd, st in plan if st not in ("done", "diverged")]
    counts = {s: sum(st == s for *_, st in plan) for s in ("done", "diverged", "resume", "train", "restart")}
    log(f"{len(plan)} cells: {counts['done']} finished, {counts['diverged']} diverged, {counts['resume']} to resume, "
        f"{counts['train'] + counts['restart']} to train ({backend} backend)")
    outcomes = {c.path: st for c, _, _, st in plan if st in ("done", "diverged")}
    if not todo:
        return outcomes
    jobs = _jobs(todo, vmapped)
    if backend == "ray":
        outcomes.update(_run_ray(jobs, vmapped, address, cpus_per_cell, gpus_per_cell, log))
        return outcomes
    for i, job in enumerate(jobs, 1):
        t0 = time.time()
        try:
            results = _run_job(_job_data(job, vmapped), progress)
        except Interrupted as e:
            where = ", ".join(c.path for c, _, _ in job)
            raise Interrupted(f"{e} in {where}; the finished cells are kept: run the same command again to "
                              "continue", e.result) from None
        for (cell, run_dir, _), outcome in zip(job, results):
            outcomes[cell.path] = outcome
            _write_cell_file(cell, run_dir)
        log(f"[{i}/{len(jobs)}] {', '.join(c.path for c, _, _ in job)}: {results[0]} in {time.time() - t0:.0f} s")
    return outcomes


def _run_ray(jobs: list[list[tuple]], vmapped: dict, address: str | None, cpus: float, gpus: float,
             log) -> dict[str, str]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'coopmarl[ray]'") from None
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        except ConnectionError as e:
            raise ConfigError(f"--address {address}: cannot join the Ray cluster ({e})") from None
    try:
        task = ray.remote(_run_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        refs = {task.remote(_job_data(job, vmapped), False): job for job in jobs}
        outcomes, pending, done = {}, list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            job = refs[ready[0]]
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:  # the worker's own error, e.g. a ConfigError
                where = ", ".join(c.path for c, _, _ in job)
                raise ConfigError(f"{where} failed on Ray: {e.as_instanceof_cause()}") from None
            done += 1
            for (cell, run_dir, _), outcome in zip(job, results):
                outcomes[cell.path] = outcome
                _write_cell_file(cell, run_dir)
            log(f"[{done}/{len(jobs)}] {', '.join(c.path for c, _, _ in job)}: {results[0]}")
        return outcomes
    except KeyboardInterrupt:
        raise Interrupted("interrupted: the Ray tasks were cancelled; the finished cells are kept and the "
                          "interrupted ones resume from their checkpoints: run the same command again", None) from None
    finally:
        if started:
            ray.shutdown()


# ---- an experiment ---------------------------------------------------------------------------------------


def prepare_out(out: Path, name: str, overwrite: bool):
    """An experiment's --out: new, empty, or one this experiment wrote before (continued). Creates nothing."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file: name a directory")
    marker = out / PRESET_FILE
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise ConfigError(f"--out {str(out)!r} exists, is not empty and was not written by `coopmarl reproduce` or "
                              f"`coopmarl sweep` (no {PRESET_FILE}): choose another --out")
        try:
            before = json.loads(marker.read_text()).get("name")
        except json.JSONDecodeError:
            before = None
        if before != name:
            raise ConfigError(f"--out {str(out)!r} holds the experiment {before!r}, not {name!r}: choose another --out")
        if overwrite:
            shutil.rmtree(out)


def run_experiment(name: str, out_dir: str | Path | None = None, options: dict | None = None, *,
                   backend: str = "local", address: str | None = None, cpus_per_cell: float = 1,
                   gpus_per_cell: float = 0, report_only: bool = False, overwrite: bool = False,
                   progress: bool = False, logger: str | None = None, run_options: dict | None = None,
                   log: Callable[[str], None] = print, experiment=None):
    """Run a registered experiment (or `experiment`, e.g. a sweep) into `out_dir` (default runs/NAME): its cells
    as run directories, then table.md, the plots, aggregate.json and marl_eval.json. Returns (Report, out_dir).
    `logger` (e.g. "wandb") sends every cell to that tracker as well, one tracker run per cell, grouped under the
    experiment's name. `run_options` ({key: value} of `RUN_OPTIONS`, e.g. {"save_buffers": "true"}) set how every
    cell's run is kept and reported; they do not change what it computes."""
    from coopmarl.experiments.registry import get_experiment, resolve_options
    from coopmarl.experiments.tables import write_outputs
    from coopmarl.files import atomic_write

    exp = experiment if experiment is not None else get_experiment(name)
    opts = resolve_options(exp, {k: str(v) for k, v in (options or {}).items()})
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}. Valid backends: {', '.join(BACKENDS)}")
    if cpus_per_cell <= 0 or gpus_per_cell < 0:
        raise ConfigError(f"cpus per cell must be > 0 and gpus per cell >= 0, got {cpus_per_cell}, {gpus_per_cell}")
    if report_only and overwrite:
        raise ConfigError("--report-only and --overwrite exclude each other")
    out = Path(out_dir) if out_dir is not None else Path("runs") / exp.name
    cells = exp.cells(opts) if exp.cells is not None else []
    for key in run_options or {}:
        if key not in RUN_OPTIONS:
            raise ConfigError(f"run option {key!r} is not one an experiment's cells may share: they are "
                              f"{', '.join(RUN_OPTIONS)} (what a cell computes is the experiment's options)")
    if run_options:
        cells = [replace(c, overrides={**c.overrides, **{k: str(v) for k, v in run_options.items()}}) for c in cells]
    if logger is not None:
        cells = [replace(c, overrides={"logger": logger, "logger_group": exp.name.replace(" ", "_"), **c.overrides})
                 for c in cells]
    prepare_out(out, exp.name, overwrite)
    plan = plan_cells(cells, out)
    if report_only:
        missing = [f"{c.path} ({st})" for c, _, _, st in plan if st not in ("done", "diverged")]
        if missing:
            raise ConfigError(f"--report-only: {len(missing)} of {len(plan)} cells are not finished in {out}: "
                              f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}; run the command without "
                              "--report-only to finish them")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / PRESET_FILE, json.dumps({"name": exp.name, "options": opts,
                                                "cells": [asdict(c) for c in cells]}, indent=1, default=str))
    if not report_only:
        run_cells(plan, backend, address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell,
                  progress=progress, vmapped=exp.vmapped, log=log)
    for cell, _, run_dir, _ in plan:
        if not (run_dir / "cell.json").is_file():
            _write_cell_file(cell, run_dir)
    runs = Runs(out, cells, {c.path: CellRun(c, rd) for c, _, rd, _ in plan})
    report = exp.report(runs, opts)
    write_outputs(report, runs, exp, opts)
    return report, out
