"""Training into a run directory, and resuming one: what `coopmarl train` and `coopmarl resume` do.

    result, run_dir = coopmarl.train_run("qmix", "lbf:8x8-2p-2f-coop", ["total_steps=20000"], seeds=2)
    result, run_dir = coopmarl.resume(run_dir)      # after a kill, Ctrl-C, or a crash

A run directory is never mixed with another run: `out` must be new or empty (or `overwrite=True`, which
clears a previous run directory first). Checkpoints hold the runner's whole loop state, by default every
tenth of the run, so a killed run loses at most ~10% of its chunks; `resume` continues from the newest
complete checkpoint, truncates metrics.csv and the TensorBoard events to it and ends with the very files
(metrics.csv, summary.json's metrics, checkpoints) the uninterrupted run writes — bit for bit when the
replay buffers were saved (`save_buffers`); without them the run continues with empty buffers, and says so.

A diverging run stops (`Diverged`) keeping its last finite state as the newest checkpoint, marked in
summary.json; Ctrl-C (`Interrupted`) saves the last complete state first. Both are re-raised.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from coopmarl.errors import ConfigError, RunStopped

__all__ = ["train_run", "resume", "decide_save_buffers"]


def decide_save_buffers(resolved) -> bool:
    """`run.save_buffers`, or by default (None) whether all seeds' replay buffers together fit in
    `SAVE_BUFFERS_MAX_MB` (no buffers at all: True, nothing to save)."""
    from coopmarl.checkpoints import buffer_bytes, train_template
    from coopmarl.results import SAVE_BUFFERS_MAX_MB

    run = resolved.run
    if run.save_buffers is not None:
        return run.save_buffers
    template, _ = train_template(resolved, list(range(run.seed, run.seed + run.n_seeds)))
    return buffer_bytes(template) <= SAVE_BUFFERS_MAX_MB * 2**20


def train_run(algo: str, env: str, overrides: list[str] | dict | None = None, *, seeds: int | None = None,
              seed: int | None = None, out: str | Path | None = None, overwrite: bool = False,
              progress: bool = True, resolved=None):
    """Train `algo` on `env` (with `key=value` overrides) into a run directory: `out`, or a new
    `runs/ALGO_ENV_TIME`. Returns (RunResult, run_dir). Everything is validated before anything is written."""
    from coopmarl.config import resolve
    from coopmarl.outputs import RunWriter, new_run_dir, prepare_run_dir
    from coopmarl.provenance import provenance
    from coopmarl.runner import check_checkpointing

    if resolved is None:
        resolved = resolve(algo, env, overrides, n_seeds=seeds, seed=seed)
    check_checkpointing(resolved.env, resolved.run)
    run_dir = prepare_run_dir(out, overwrite) if out is not None else None
    save_buffers = decide_save_buffers(resolved)
    if run_dir is None:
        run_dir = new_run_dir(resolved.algo.name, resolved.env_name)
    config = {**resolved.as_dict(), "provenance": provenance()}
    run = resolved.run
    writer = RunWriter(run_dir, config, list(range(run.seed, run.seed + run.n_seeds)), save_buffers=save_buffers,
                       keep=run.keep_checkpoints)
    return _drive(resolved, writer, None, progress), run_dir


def resume(run_dir: str | Path, *, progress: bool = True):
    """Continue an interrupted run from its newest complete checkpoint; returns (RunResult, run_dir)."""
    import yaml

    from coopmarl.checkpoints import (CheckpointStore, assemble, buffer_leaves, check_meta, config_hash,
                                      first_nonfinite, fresh_buffers, split_items, state_leaves, train_template)
    from coopmarl.outputs import RunWriter, read_rows, resolve_run
    from coopmarl.runner import LoopState, Start, initial_loop

    run_dir = Path(run_dir)
    resolved = resolve_run(run_dir)  # config.yaml rebuilds the same run, or one clear error
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        stopped = json.loads(summary_path.read_text()).get("stopped")
        if stopped is None:
            raise ConfigError(f"run {str(run_dir)!r} is finished: nothing to resume")
        if stopped.startswith("diverged"):
            raise ConfigError(f"run {str(run_dir)!r} {stopped}: resuming it would diverge again; change its settings "
                              "(e.g. a smaller lr) and train a new run")
    for stray in run_dir.glob(".*.tmp"):  # an atomic write killed half-way
        stray.unlink()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run = resolved.run
    store = CheckpointStore(run_dir, keep=run.keep_checkpoints)  # removes the folders of killed checkpoint writes
    steps = store.steps()
    if not steps:
        raise ConfigError(f"run {str(run_dir)!r} has no checkpoint to resume from (it was stopped before its first "
                          "checkpoint, or written by an older coopmarl): train it again with --overwrite")
    step = steps[-1]
    meta = store.meta(step)
    check_meta(run_dir, meta, config_hash(config), step)
    if "loop" not in meta["items"]:
        raise ConfigError(f"checkpoint {store.path / str(step)} holds only a train state (a host-env run): it cannot "
                          "be resumed; train it again")
    loop0 = initial_loop(resolved.algo, resolved.env, resolved.config, run, abstract=True)
    wanted = split_items(loop0.train_state, loop0.parts(), meta["buffers"])
    values = store.restore(step, wanted, meta)
    train_values = {**values["train"], **values.get("buffers", {})}
    bad = first_nonfinite({**train_values, **values["loop"]})
    if bad is not None:
        raise ConfigError(f"checkpoint {store.path / str(step)} holds a non-finite state ({bad})")
    if not meta["buffers"]:
        names = buffer_leaves(loop0.train_state)
        if names:
            warnings.warn(f"{run_dir}: the replay buffers were not saved (save_buffers=false), so the resumed run "
                          "starts with empty buffers and cannot be bit-identical to an uninterrupted one",
                          stacklevel=2)
            _, init_parts = train_template(resolved, meta["seeds"])
            train_values.update(fresh_buffers(init_parts, names))
    assert set(train_values) == set(state_leaves(loop0.train_state, True))
    train_state = assemble(loop0.train_state, train_values)
    loop = LoopState.from_parts(meta["chunk"], train_state, assemble(loop0.parts(), values["loop"]))
    store.close()
    start, rows = _curves_until(run_dir, step, meta["chunk"], meta["seeds"], read_rows(run_dir))
    start = Start(loop, *start)
    writer = RunWriter(run_dir, config, meta["seeds"], save_buffers=meta["buffers"], keep=run.keep_checkpoints,
                       rows=rows)
    return _drive(resolved, writer, start, progress), run_dir


def _curves_until(run_dir: Path, step: int, points: int, seeds: list[int], rows: list[tuple]):
    """((steps, metrics history), rows) of the first `points` logged points, the last at `step` env steps."""
    rows = [r for r in rows if r[1] <= step]
    steps = sorted({r[1] for r in rows})
    if len(steps) != points or (steps and steps[-1] != step):
        raise ConfigError(f"{run_dir / 'metrics.csv'} does not hold the {points} points up to the checkpoint at step "
                          f"{step} (it has {len(steps)}): the run directory was edited; train it again")
    index = {s: i for i, s in enumerate(seeds)}
    names = sorted({r[2] for r in rows})
    table = {n: np.full((len(steps), len(seeds)), np.nan) for n in names}
    at = {s: i for i, s in enumerate(steps)}
    for seed, s, name, value in rows:
        table[name][at[s], index[seed]] = value
    return (steps, {n: list(table[n]) for n in names}), rows


def _drive(resolved, writer, start, progress: bool):
    """Run the runner with the writer's callbacks; a stopped run's files are finished before it re-raises."""
    from coopmarl.runner import train

    t0 = time.time()
    try:
        result = train(resolved.algo, resolved.env, resolved.config, resolved.run, on_chunk=writer.on_chunk,
                       progress=progress, on_checkpoint=writer.on_checkpoint, start=start)
    except RunStopped as stop:
        stop.run_dir = writer.run_dir
        writer.finish(stop.result, time.time() - t0, plot=not isinstance(stop, KeyboardInterrupt))
        raise
    writer.finish(result, time.time() - t0)
    return result

