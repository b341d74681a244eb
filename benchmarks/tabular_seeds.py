"""Wall time of every registered tabular learner on a tabular game: 1 seed vs many vmapped seeds.

    .venv/bin/python benchmarks/tabular_seeds.py [--env climbing] [--steps 5000] [--seeds 100]

Each run goes through `coopmarl.runner.train` (one jitted `lax.scan` per chunk, seeds vmapped). The
runner compiles inside `train` (a second call re-traces and recompiles, so "run twice, time the second"
would still include compilation). Instead the compile is timed separately from the run with the
`on_chunk` callback: `compile` = start of the call to the end of the first chunk (tracing, XLA
compilation and that chunk), `run` = the remaining chunks, scaled to the whole run
(x n_chunks / (n_chunks - 1)); both include the runner's per-chunk host work (exact evaluation,
device_get). `ratio` = run(N seeds) / run(1 seed): 1.0 means the extra seeds are free. For env
learners `steps/s` counts env steps over all seeds; for planners (`uses_env=False`) it counts
iterations over all seeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

import jax

import coopmarl
from coopmarl.algos.base import list_algos
from coopmarl.runner import RunConfig, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402


def time_training(algo, env, config, steps: int, n_seeds: int, log_points: int) -> dict:
    stamps: list[float] = []
    t0 = time.perf_counter()
    result = train(algo, env, config, RunConfig(total_steps=steps, n_seeds=n_seeds, log_points=log_points),
                   on_chunk=lambda c, s, m: stamps.append(time.perf_counter()), progress=False)
    total = time.perf_counter() - t0
    n_chunks = len(stamps)
    done_steps = int(result.steps[-1])  # the runner may round the steps up to whole chunks
    if n_chunks > 1:
        run = (stamps[-1] - stamps[0]) * n_chunks / (n_chunks - 1)
        compile_s = stamps[0] - t0 - run / n_chunks
    else:  # a single chunk: compile and run cannot be told apart
        run, compile_s = total, float("nan")
    return dict(total=total, compile=compile_s, run=run, steps=done_steps, seeds=n_seeds,
                steps_per_s=done_steps * n_seeds / run if run > 0 else float("inf"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="climbing", help="a registered tabular env (default: climbing)")
    parser.add_argument("--steps", type=int, default=5000, help="env steps (planners: iterations) per seed")
    parser.add_argument("--seeds", type=int, default=100, help="number of vmapped seeds to compare with 1")
    parser.add_argument("--log-points", type=int, default=50, help="chunks per run (runner default: 50)")
    parser.add_argument("--algos", default="", help="comma-separated subset of algorithms (default: all tabular)")
    args = parser.parse_args(argv)

    env = coopmarl.make(args.env)
    wanted = {a.strip() for a in args.algos.split(",") if a.strip()}
    unknown = wanted - {a.name for a in list_algos()}
    if unknown:
        parser.error(f"unknown algorithm(s) {sorted(unknown)}; valid: {', '.join(a.name for a in list_algos())}")
    rows, skipped = [], []
    for algo in list_algos():
        if wanted and algo.name not in wanted:
            continue
        if "tabular" not in algo.requires:
            skipped.append((algo.name, f"requires {algo.requires}, not a tabular learner"))
            continue
        try:
            config = algo.default_config()
            one = time_training(algo, env, config, args.steps, 1, args.log_points)
            many = time_training(algo, env, config, args.steps, args.seeds, args.log_points)
        except Exception as e:  # report, keep benchmarking the others
            skipped.append((algo.name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            continue
        rows.append((algo, one, many))

    title = (f"{args.env}: {args.steps} steps per seed, 1 vs {args.seeds} vmapped seeds "
             f"(jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} CPU cores, "
             f"python {platform.python_version()})")
    headers = ["algorithm", "kind", "compile 1 (s)", "run 1 (s)", f"compile {args.seeds} (s)",
               f"run {args.seeds} (s)", "ratio", "steps/s 1", f"steps/s {args.seeds}"]
    table = []
    for algo, one, many in rows:
        kind = "env" if algo.uses_env else "planner"
        ratio = many["run"] / one["run"] if one["run"] > 0 else float("nan")
        table.append([algo.name, kind, f"{one['compile']:.2f}", f"{one['run']:.3f}", f"{many['compile']:.2f}",
                      f"{many['run']:.3f}", f"{ratio:.2f}", f"{one['steps_per_s']:,.0f}",
                      f"{many['steps_per_s']:,.0f}"])
    print_table(title, headers, table)
    if skipped:
        print("\nskipped:")
        for name, why in skipped:
            print(f"  {name}: {why}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
