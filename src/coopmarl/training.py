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

__all__ = ["train_run", "train_vmapped", "resume", "decide_save_buffers"]


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

    from coopmarl.loggers import check_loggers

    if resolved is None:
        resolved = resolve(algo, env, overrides, n_seeds=seeds, seed=seed)
    check_checkpointing(resolved.env, resolved.run)
    check_loggers(resolved.run)
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



# ---- vmapped hyperparameters: one compiled program, one run directory per value -------------------------


def train_vmapped(algo: str, env: str, overrides: list[str] | dict | None = None,
                  vmap: dict[str, list] | None = None, *, seeds: int | None = None, seed: int | None = None,
                  outs: list[str | Path] | None = None, out_root: str | Path | None = None, overwrite: bool = False,
                  progress: bool = True) -> list:
    """Train `algo` on `env` for every combination of the `vmap` values ({key: [value, …]}; several keys: their
    cartesian product, in `itertools.product` order) in ONE compiled program — the values vmapped like seeds
    (`runner.train(..., hparams=…)`) — writing one run directory per combination. Returns [(RunResult, run_dir)],
    one per combination, in that order.

        coopmarl.train_vmapped("ippo", "mpe:spread", ["total_steps=100000"], {"actor_lr": [1e-4, 3e-4, 1e-3]},
                               seeds=4)

    Each directory is what `train_run` with that value writes (config.yaml with the value, metrics.csv,
    summary.json, marl_eval.json, tb, checkpoints, curves.png), so `eval`, `resume` (as an ordinary run),
    `render` and `aggregate` use it unchanged; its summary.json's wall time is the whole program's. Element
    (value, seed s) starts from seed s's keys, as seed s of a separate run: tabular learners give bit-identical
    files; networks are bit-identical to seed s of a separate run with as many seeds as the whole batch (K values
    x seeds) and differ from a run with fewer as a seed of a batch differs from it alone (XLA rounds the
    differently batched program differently by ~1 float32 ulp; training amplifies it).

    Only keys that enter the computation as values can be vmapped (`coopmarl.hparams`: float keys that trace;
    `check_vmappable`); every combination is resolved and validated like an ordinary run, and the key checked,
    before anything is written or compiled. Directories: `outs` (one per combination, new or empty, or
    `overwrite`), else `out_root/KEY=VALUE[_KEY=VALUE]`, else new `runs/ALGO_ENV_KEY=VALUE…_TIME` folders.

    A run that diverges stops the whole program: the diverged values' directories say "diverged", the others
    "stopped" at their last checkpoint (resumable one by one); Ctrl-C leaves every directory interrupted. The
    `RunStopped` raised carries `.run_dirs` and `.results` (one per combination).
    """
    import itertools

    from coopmarl.config import parse_overrides, resolve
    from coopmarl.hparams import check_vmappable
    from coopmarl.outputs import RunWriter, check_run_dir, new_run_dir, prepare_run_dir
    from coopmarl.provenance import provenance
    from coopmarl.runner import LoopState, train

    values = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    if not vmap:
        raise ConfigError("vmap needs at least one key with values (e.g. lr=vmap:1e-4,3e-4,1e-3)")
    keys = list(vmap)
    names = [k.strip().lstrip("+").removeprefix("algo.") for k in keys]
    if len(set(names)) != len(names):
        raise ConfigError(f"vmap: a key is given twice ({', '.join(keys)})")
    given = {k.strip().lstrip("+").removeprefix("algo.") for k in values}
    both = [n for n in names if n in given]
    if both:
        raise ConfigError(f"{both[0]!r} is given both as an override and as vmapped values: give it once")
    lists = []
    for key, name in zip(keys, names):
        vals = vmap[key]
        if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
            raise ConfigError(f"vmap {name!r}: give a list of values, got {vals!r}")
        vals = [v.item() if hasattr(v, "item") else v for v in vals]
        if not vals:
            raise ConfigError(f"vmap {name!r}: no values")
        lists.append(vals)
    combos = list(itertools.product(*lists))

    def _resolve(combo):
        try:
            return resolve(algo, env, {**values, **dict(zip(names, combo))}, n_seeds=seeds, seed=seed)
        except ConfigError as e:
            raise ConfigError(f"{e} (vmapped values {', '.join(f'{n}={v}' for n, v in zip(names, combo))})") from None

    resolved = [_resolve(c) for c in combos]  # every value validated like an ordinary run's
    base = resolved[0]
    check_vmappable(algo, env, values, names, resolved=base)  # traces; compiles nothing
    labels = ["_".join(f"{n}={getattr(r.config, n)!r}" for n in names) for r in resolved]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"vmap: a value is given twice (the combinations: {', '.join(labels)})")

    if outs is not None:
        outs = [Path(o) for o in outs]
        if len(outs) != len(combos):
            raise ConfigError(f"outs: {len(combos)} combinations need {len(combos)} run directories, got {len(outs)}")
        if len({o.resolve() for o in outs}) != len(outs):
            raise ConfigError("outs: a run directory is named twice")
    elif out_root is not None:
        outs = [Path(out_root) / label for label in labels]
    if outs is not None:
        for o in outs:  # every directory checked before any is cleared
            check_run_dir(o, overwrite)
        run_dirs = [prepare_run_dir(o, overwrite) for o in outs]
    else:
        run_dirs = [new_run_dir(base.algo.name, f"{base.env_name}_{label}") for label in labels]

    run = base.run
    n = run.n_seeds
    seed_list = list(range(run.seed, run.seed + n))
    save_buffers = decide_save_buffers(base)
    prov = provenance()
    writers = [RunWriter(d, {**r.as_dict(), "provenance": prov}, seed_list, save_buffers=save_buffers,
                         keep=run.keep_checkpoints) for d, r in zip(run_dirs, resolved)]
    hparams = {name: np.repeat(np.asarray([getattr(r.config, name) for r in resolved], np.float32), n)
               for name in names}
    part = lambda k: slice(k * n, (k + 1) * n)  # noqa: E731 - batch elements of combination k
    take = _slicer(n)

    def on_chunk(chunk, step, metrics):
        for k, w in enumerate(writers):
            w.on_chunk(chunk, step, {name: np.asarray(v)[part(k)] for name, v in metrics.items()})

    def on_checkpoint(loop, step):
        for k, w in enumerate(writers):
            w.on_checkpoint(LoopState(loop.chunk, take(loop.carry, k), take(loop.eval_keys, k)), step)

    def element(result, k, stopped=None, points=None):
        from coopmarl.results import RunResult

        loop = result.loop
        if loop is not None:
            loop = LoopState(loop.chunk, take(loop.carry, k), take(loop.eval_keys, k))
        r = resolved[k]
        static = r.algo.summary(r.config, r.env) if r.algo.summary is not None else {}
        keep = slice(None) if points is None else slice(0, points)
        return RunResult(algo=result.algo, env=result.env, steps=result.steps[keep],
                         metrics={m: v[keep, part(k)] for m, v in result.metrics.items() if len(v[keep])},
                         train_state=loop.train_state if loop is not None else take(result.train_state, k),
                         seeds=seed_list, static=static, loop=loop, state_step=result.state_step,
                         stopped=result.stopped if stopped is None else stopped)

    t0 = time.time()
    try:
        result = train(base.algo, base.env, base.config, run, on_chunk=on_chunk, progress=progress,
                       on_checkpoint=on_checkpoint, hparams=hparams)
    except RunStopped as stop:
        wall = time.time() - t0
        results = []
        bad = {i // n for i in getattr(stop, "elements", [])} if not isinstance(stop, KeyboardInterrupt) else None
        for k in range(len(combos)):
            if bad is None or k in bad:
                res = element(stop.result, k)
            else:  # a sibling diverged: this one stops at its last finite state, resumable
                culprits = ", ".join(labels[j] for j in sorted(bad))
                res = element(stop.result, k, f"stopped at step {stop.result.state_step}: {culprits} diverged in the "
                                              "same vmapped program", points=stop.result.loop.chunk)
            writers[k].finish(res, wall, plot=not isinstance(stop, KeyboardInterrupt))
            results.append(res)
        stop.run_dir, stop.run_dirs, stop.results = run_dirs[0], run_dirs, results
        raise
    wall = time.time() - t0
    out = []
    for k, w in enumerate(writers):
        res = element(result, k)
        w.finish(res, wall)
        out.append((res, run_dirs[k]))
    return out


def _slicer(n: int):
    """`take(tree, k)`: every leaf's rows k·n … (k+1)·n − 1 (combination k's seeds), compiled once for all k."""
    import jax

    sliced = jax.jit(lambda tree, k: jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, k * n, n), tree))
    return lambda tree, k: sliced(tree, np.int32(k))


