"""What each registered experiment preset costs: cells, seeds, steps, memory per seed and estimated CPU-hours.

    python benchmarks/preset_cost.py [--presets a,b] [--scale paper] [--iters 10] [--min-steps 10000]
                                     [--option KEY=VALUE ...] [--no-measure]

For every preset that trains (`coopmarl.experiments.registry.list_experiments()`, those with cells), at `--scale`
(default paper; a preset without a `scale` option runs at its defaults), its cells (`Experiment.cells(options)`,
the cells `coopmarl reproduce NAME scale=...` would run) are resolved as the executor resolves them
(`coopmarl.config.resolve` with the cell's algorithm, env and overrides; `experiments/executor.py` `plan_cells`).
One row per preset:

- cells x seeds, and env steps per cell (per seed: the run's `total_steps`; a planner, `uses_env=False`, counts
  iterations on the model as steps, as the runner does);
- memory per seed: the bytes of one seed's train state, from shapes alone (`jax.eval_shape` of the algorithm's
  `init`, nothing allocated). An off-policy learner's replay buffer is most of it; the env states of the
  `n_envs` vmapped envs and XLA's temporaries come on top. Where cells differ, the largest;
- measured steps/s (one seed): training env steps/s of each distinct (algorithm, env, config) of the preset's cells,
  one seed, through the runner's compiled chunk (`common.measure_training`: the replay filled first, then `--iters`
  iterations of collect + update timed on a second call, compile time excluded and listed in a second table). Where
  an iteration holds few steps, the iterations are raised to at least `--min-steps` env steps (no more than the
  run's), so that a call's launch does not dominate. For the measurement only, a replay buffer is capped at
  `--measure-buffer` entries (at least a batch): a write is one slice and a sample one gather of a batch, whatever
  the capacity, and paper-scale buffers (ReMIX Table 2's 10,000 predator-prey episodes: ~15 GB per seed) would not
  fit this machine. Planners (exact iterations on a tabular model) are timed the same way, the model passed;
- est. CPU-hours = the sum over cells of seeds x steps / (one seed's steps/s) / 3600. The executor vmaps a cell's
  seeds into one program, but on the 2-core CPU one seed already keeps both cores busy: docs/results.md's
  seed-scaling table (`benchmarks/seed_scaling.py`) has 8 or 32 vmapped seeds adding at most 1.3x throughput in
  all, so S seeds cost about S times one seed there. On a GPU the vmapped seeds run side by side and the figure is
  an upper bound. Compilation (seconds to minutes per distinct config), evaluation and checkpoints are not in it.

`--no-measure` lists cells, steps and memory only (seconds to minutes: some envs take seconds to build). `--option
KEY=VALUE` sets a preset option on every chosen preset that has it (e.g. `--presets maosql-lbf --option algos=qmix`);
an option none of them has is an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_training, time_compiled  # noqa: E402

HEADER = ["preset", "scale", "cells x seeds", "env steps per cell", "memory per seed (MB)",
          "measured steps/s (one seed)", "est. CPU-hours"]


@dataclass
class Planned:
    """One cell, resolved: its config key (algorithm, env, algorithm config; the run's length and keeping aside),
    seeds, steps and one seed's train-state bytes."""

    key: str
    path: str
    algo: str
    env: str
    overrides: list[str]
    seeds: int
    steps: int
    state_bytes: int
    resolved: object = field(repr=False)


def config_key(r) -> str:
    d = r.as_dict()
    return json.dumps({"algo": d["algo"], "env": d["env"], "algo_config": d["algo_config"]}, sort_keys=True,
                      default=str)


def _model(env):
    from coopmarl.envs.tabular import TabularGame

    return env if isinstance(env, TabularGame) else None


def state_bytes(r) -> int:
    """Bytes of one seed's train state (replay buffers included), from `jax.eval_shape` of the algorithm's init."""
    model = _model(r.env)
    shapes = jax.eval_shape(lambda k: r.algo.init(k, r.env.spec, r.config, model), jax.random.PRNGKey(0))
    total = 0
    for leaf in jax.tree.leaves(shapes):
        dtype = leaf.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.extended):  # a typed PRNG key: its raw uint32 data
            itemsize = 8
        else:
            itemsize = np.dtype(dtype).itemsize
        total += int(np.prod(leaf.shape, dtype=np.int64)) * itemsize
    return total


_ENVS: dict = {}  # (env name, params) -> env, for `shared_envs`


@contextlib.contextmanager
def shared_envs():
    """While planning, `coopmarl.config.resolve` builds each (env, params) once: envs are immutable, and some take
    seconds to build (a paper-scale random stochastic game draws its 100-state model, ~20 s here; a MABrax robot
    ~8 s), which a preset's cells would otherwise repeat for every cell."""
    import coopmarl.config as config

    make, built = config.make, _ENVS

    def cached(name, **params):
        try:
            key = (name, tuple(sorted(params.items())))
            hash(key)
        except TypeError:
            return make(name, **params)
        if key not in built:
            built[key] = make(name, **params)
        return built[key]

    config.make = cached
    try:
        yield
    finally:
        config.make = make


def plan_preset(exp, given: dict[str, str], cache: dict) -> tuple[dict, list[Planned]]:
    """(resolved options, the preset's cells resolved). `cache`: config key -> train-state bytes."""
    from coopmarl.config import resolve
    from coopmarl.errors import ConfigError
    from coopmarl.experiments.registry import resolve_options

    opts = resolve_options(exp, given)
    out = []
    for cell in exp.cells(opts):
        overrides = {k: str(v) for k, v in cell.overrides.items()}
        try:
            with shared_envs():
                r = resolve(cell.algo, cell.env, overrides, n_seeds=cell.seeds, seed=cell.seed)
        except ConfigError as e:
            raise ConfigError(f"cell {cell.path}: {e}") from None
        key = config_key(r)
        if key not in cache:
            cache[key] = state_bytes(r)
        out.append(Planned(key, cell.path, cell.algo, cell.env, [f"{k}={v}" for k, v in overrides.items()], cell.seeds,
                           int(r.run.total_steps), cache[key], r))
    return opts, out


def measure_cell(p: Planned, iters: int, min_steps: int, measure_buffer: int) -> dict:
    """One seed's training env steps/s of the cell's config (compile apart); see the module docstring."""
    from coopmarl.results import iteration_size

    r = p.resolved
    t, e = iteration_size(r.algo, r.config, r.env.spec)
    per_iter = t * e
    iters = max(iters, min(math.ceil(min_steps / per_iter), math.ceil(p.steps / per_iter)))
    overrides = list(p.overrides)
    if hasattr(r.config, "buffer_size") and hasattr(r.config, "batch_size"):
        cap = max(measure_buffer, int(r.config.batch_size))
        if int(r.config.buffer_size) > cap:
            overrides = [o for o in overrides if not o.startswith("buffer_size=")] + [f"buffer_size={cap}"]
    if r.algo.uses_env:
        with shared_envs():
            m = measure_training(p.algo, p.env, 1, iters, overrides)
    else:  # a planner updates on the tabular game's model, which `measure_training` does not pass
        m = _measure_with_model(r, iters)
    return dict(m, iters=iters)


def _measure_with_model(r, iters: int) -> dict:
    """`common.measure_training` for one seed of a planner, the tabular game's model passed to init and update (a
    planner has no replay to fill). Its small init runs eagerly: jitting it costs a compile per config."""
    import jax.numpy as jnp

    from coopmarl.results import iteration_size
    from coopmarl.runner import build_chunk

    t, e = iteration_size(r.algo, r.config, r.env.spec)
    model = _model(r.env)
    init_fn, chunk_fn = build_chunk(r.algo, r.env, r.config, iters)
    carry = jax.vmap(init_fn, in_axes=(None, 0))(model, jnp.stack([jax.random.PRNGKey(0)]))
    chunk = jax.vmap(chunk_fn, in_axes=(None, 0))
    compile_s, run_s = time_compiled(lambda key: jax.tree.leaves(chunk(model, carry)[1]))
    steps = iters * t * e
    return dict(seeds=1, steps=steps, compile_s=compile_s, run_s=run_s, steps_per_s=steps / run_s, n_envs=e, window=t)


def _span(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def _mb(n: int) -> str:
    mb = n / 1e6
    return f"{mb:,.0f}" if mb >= 100 else f"{mb:.2f}" if mb >= 1 else f"{mb:.2g}"


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.2f}" if h >= 0.01 else f"{h:.2g}"


def _int(x) -> str:
    return f"{x:,.0f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main(argv=None) -> int:
    from coopmarl.config import parse_overrides
    from coopmarl.errors import ConfigError, did_you_mean
    from coopmarl.experiments.registry import list_experiments

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="", help="comma-separated preset names (default: every preset that trains)")
    p.add_argument("--scale", default="paper", help="the presets' scale option (default paper); presets without one "
                                                    "use their defaults")
    p.add_argument("--iters", type=int, default=10, help="iterations timed per distinct config (default 10)")
    p.add_argument("--min-steps", type=int, default=10_000,
                   help="raise the timed iterations to at least this many env steps (default 10,000; 0: off)")
    p.add_argument("--measure-buffer", type=int, default=1000,
                   help="replay capacity while measuring (default 1,000 entries; the memory column keeps the cell's)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a preset option for every chosen preset (repeatable)")
    p.add_argument("--no-measure", action="store_true", help="cells, steps and memory only; no training measured")
    args = p.parse_args(argv)
    if args.iters < 1 or args.min_steps < 0 or args.measure_buffer < 1:
        raise SystemExit("--iters and --measure-buffer must be >= 1 and --min-steps >= 0")

    every = {e.name: e for e in list_experiments()}
    training = {name: e for name, e in every.items() if e.cells is not None}
    names = [n.strip() for n in args.presets.split(",") if n.strip()] or list(training)
    for n in names:
        if n in every and n not in training:
            raise SystemExit(f"preset {n!r} trains nothing (an exact computation, no cells). Presets that train: "
                             f"{', '.join(training)}")
        if n not in training:
            raise SystemExit(f"unknown preset {n!r}.{did_you_mean(n, training)} Presets that train: "
                             f"{', '.join(training)}")
    try:
        options = parse_overrides(args.option)
    except ConfigError as e:
        raise SystemExit(f"--option: {e}") from None

    for key in options:
        if not any(key in training[n].options for n in names):
            raise SystemExit(f"--option {key}: none of the presets {', '.join(names)} has that option")

    cache: dict[str, int] = {}
    rates: dict[str, dict] = {}  # config key -> measurement
    rows, notes, measured = [], [], []
    for name in names:
        exp = training[name]
        given = {k: v for k, v in options.items() if k in exp.options}
        if "scale" in exp.options:
            given.setdefault("scale", args.scale)
        try:
            opts, planned = plan_preset(exp, given, cache)
        except ConfigError as e:
            notes.append(f"{name}: skipped: {e}")
            continue
        scale = str(opts["scale"]) if "scale" in opts else "(no scale option)"
        if not planned:
            notes.append(f"{name}: no cells with these options")
            continue
        seeds = {c.seeds for c in planned}
        row = [name, scale, f"{len(planned)} x {_span(seeds, str)}", _span([c.steps for c in planned], _int),
               _mb(max(c.state_bytes for c in planned))]
        if args.no_measure:
            row += ["—", "—"]
        else:
            for c in planned:
                if c.key not in rates:
                    if getattr(c.resolved.env, "host", False):
                        raise SystemExit(f"{name}: cell on the host env {c.env!r} cannot be measured here; pass "
                                         "--no-measure")
                    try:
                        m = measure_cell(c, args.iters, args.min_steps, args.measure_buffer)
                    except ConfigError as e:
                        notes.append(f"{name}/{c.path}: not measured: {e}")
                        rates[c.key] = None
                        continue
                    rates[c.key] = m
                    measured.append([c.algo, c.env, str(m["iters"]), _int(m["steps"]), _int(m["steps_per_s"]),
                                     f"{m['compile_s']:.1f}", f"{name}/{c.path}"])
            if any(rates[c.key] is None for c in planned):
                row += ["—", "— (a cell not measured)"]
            else:
                sps = [rates[c.key]["steps_per_s"] for c in planned]
                hours = sum(c.seeds * c.steps / rates[c.key]["steps_per_s"] for c in planned) / 3600
                row += [_span(sps, _int), _hours(hours)]
        rows.append(row)

    device = jax.devices()[0]
    print(f"## Preset cost at scale {args.scale} ({device.platform}: {device.device_kind})\n")
    print(markdown(HEADER, rows))
    print("\n- memory per seed: one seed's train state (replay included) from shapes, the largest over the cells; "
          "steps/s: the range over the preset's distinct configs; CPU-hours: seeds x steps / one seed's steps/s, "
          "summed over cells (vmapped seeds cost ~S x one seed on 2 CPU cores; compilation excluded)")
    for n in notes:
        print(f"- {n}")
    if measured:
        print("\n### Measurements (one seed; compile time apart)\n")
        print(markdown(["algorithm", "env", "iterations timed", "env steps timed", "steps/s", "compile s",
                        "first cell"], measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
