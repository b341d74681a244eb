"""Is seed i of a vmapped batch of seeds bit-identical to seed i trained alone? For every registered algorithm.

    .venv/bin/python benchmarks/seed_batch_identity.py [--algos ippo,qmix] [--seeds 3] [--index 1]

Each algorithm is trained twice through `coopmarl.runner.train` with a tiny budget (`log_points=4`,
`eval_episodes=2`): once with `n_seeds=--seeds, seed=0` (seeds 0..S-1 vmapped in one compiled scan) and
once with `n_seeds=1, seed=--index` (that seed alone). Seed `--index`'s logged metrics
(`RunResult.metrics[name][:, index]` vs `[:, 0]`) and final train-state leaves (`jax.tree.leaves`) are
compared bit for bit (NaN == NaN, and -0.0 != 0.0). With `--check-mates` a third run (`n_seeds=S,
seed=INDEX`: the same seed in a batch of the same size, with other batch-mates, at another position)
tells whether seed INDEX's result depends on the other seeds' data at all.

Columns: `identical metrics` = "yes", or "no: point k/4 (name)", the first logging point where a metric
differs and that metric; `identical final state` = every train-state leaf bit-identical; `leaves
differing` = how many are not; `max |Δ| state` / `max |Δ| metrics` = the largest absolute difference of
a leaf / a metric; `same with other mates` (--check-mates) = metrics and final state of the third run
bit-identical to the first's.

Each algorithm runs on a small env it supports: tabular learners and planners on `climbing`, discrete deep
learners on `lbf:5x5-2p-1f-coop`, continuous learners on `differential` (override with --tabular-env,
--discrete-env, --continuous-env). Everything but the budget is the algorithm's default config. The
runner compiles inside `train`, so an algorithm costs two compilations (three with --check-mates); all 31
take about 20 minutes on 2 CPU cores (30 with --check-mates).

A difference here is not seeds mixing (nothing in an update reads another seed's data): the vmapped
program has arrays with a seed axis of S instead of 1, and XLA:CPU generates different machine code for
the differently shaped fused kernels (vectorisation, FMA contraction, reduction partial sums), which
rounds some results differently by ~1 ulp; training then amplifies that (`--check-mates` shows seed
INDEX unchanged when its batch-mates change). See the README's determinism paragraph.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

import jax
import numpy as np

from coopmarl.algos.base import list_algos
from coopmarl.config import resolve
from coopmarl.runner import train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

LOG_POINTS = 4
EVAL_EPISODES = 2


def pick_env(algo, args) -> str:
    if "tabular" in algo.requires:
        return args.tabular_env
    if "discrete" in algo.requires:
        return args.discrete_env
    return args.continuous_env


def budget(algo, args) -> int:
    """Env steps per seed (iterations for a planner): a few updates per logging point."""
    if args.total_steps:
        return args.total_steps
    if not algo.uses_env:
        return 40  # planners: iterations on the model
    if "tabular" in algo.requires:
        return 2000
    if "discrete" not in algo.requires:
        return 400  # continuous off-policy learners: one env step and one 512-sample update per iteration
    return 4800  # discrete deep learners: 400 steps per iteration (PG 25x16, value-based 50x8)


def leaf_array(x) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit identity; NaNs count as equal to NaNs (their payloads aside)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        nan = np.isnan(a) & np.isnan(b)
        a, b = np.where(nan, 0, a), np.where(nan, 0, b)
    return a.tobytes() == b.tobytes()


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind not in "fiu" or a.size == 0:
        return 0.0 if same_bits(a, b) else float("nan")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d = d[~(np.isnan(a) & np.isnan(b))] if a.dtype.kind == "f" else d
    return float(np.nanmax(d)) if d.size else 0.0


def diff_runs(a, i: int, b, j: int) -> dict:
    """Seed at position i of run a vs position j of run b: the first differing logging point (None: all
    identical) and its metric, the largest metric difference, and the final states' agreement."""
    first, first_name, metric_diff = None, "", 0.0
    for name in sorted(set(a.metrics) | set(b.metrics)):
        if name not in a.metrics or name not in b.metrics:
            first, first_name, metric_diff = 0, f"{name} missing", float("nan")
            continue
        x, y = np.asarray(a.metrics[name][:, i]), np.asarray(b.metrics[name][:, j])
        same = np.array([same_bits(u, v) for u, v in zip(x, y)])
        if not same.all():
            point = int(np.argmin(same))
            if first is None or point < first:
                first, first_name = point, name
            metric_diff = max(metric_diff, max_abs_diff(x, y))
    state_same, state_diff, n_diff = True, 0.0, 0
    leaves_a, leaves_b = jax.tree.leaves(a.train_state), jax.tree.leaves(b.train_state)
    for x, y in zip(leaves_a, leaves_b):
        x, y = leaf_array(x)[i], leaf_array(y)[j]
        if not same_bits(x, y):
            state_same = False
            n_diff += 1
            state_diff = max(state_diff, max_abs_diff(x, y))
    return dict(first=first, first_name=first_name, metric_diff=metric_diff,
                state_same=state_same and len(leaves_a) == len(leaves_b), state_diff=state_diff,
                leaves=f"{n_diff}/{len(leaves_a)}")


def compare(algo_name: str, env_name: str, total_steps: int, n_seeds: int, index: int,
            check_mates: bool = False) -> dict:
    """Train seeds 0..n_seeds-1 vmapped and seed `index` alone; compare seed `index` of both."""
    common = {"total_steps": total_steps, "log_points": LOG_POINTS, "eval_episodes": EVAL_EPISODES}
    t0 = time.perf_counter()

    def run(n, seed):
        r = resolve(algo_name, env_name, dict(common), n_seeds=n, seed=seed)
        return train(r.algo, r.env, r.config, r.run, progress=False)

    batch = run(n_seeds, 0)
    row = dict(algo=algo_name, env=env_name, steps=int(batch.steps[-1]), **diff_runs(batch, index, run(1, index), 0))
    if check_mates:  # the same seed, another position, other batch-mates, the same batch size
        mates = diff_runs(batch, index, run(n_seeds, index), 0)
        row["mates_same"] = mates["first"] is None and mates["state_same"]
    row["seconds"] = time.perf_counter() - t0
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default="", help="comma-separated subset of algorithms (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds in the vmapped batch (seed 0..S-1)")
    parser.add_argument("--index", type=int, default=1, help="the seed compared (trained alone as seed=INDEX)")
    parser.add_argument("--total-steps", type=int, default=0, help="env steps per seed for every algorithm "
                        "(default: a small budget per kind, see `budget`)")
    parser.add_argument("--check-mates", action="store_true", help="also train seed INDEX in a batch of as many "
                        "seeds with other batch-mates (seed=INDEX..INDEX+S-1) and compare")
    parser.add_argument("--tabular-env", default="climbing")
    parser.add_argument("--discrete-env", default="lbf:5x5-2p-1f-coop")
    parser.add_argument("--continuous-env", default="differential")
    args = parser.parse_args(argv)
    if not 0 <= args.index < args.seeds:
        parser.error(f"--index must be in [0, {args.seeds})")

    names = [a.name for a in list_algos()]
    wanted = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = [a for a in wanted if a not in names]
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; valid: {', '.join(names)}")
    rows, failed = [], []
    for algo in list_algos():
        if wanted and algo.name not in wanted:
            continue
        env_name = pick_env(algo, args)
        try:
            row = compare(algo.name, env_name, budget(algo, args), args.seeds, args.index, args.check_mates)
        except Exception as e:  # report, keep comparing the others
            failed.append((algo.name, env_name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            continue
        rows.append(row)
        print(f"  {row['algo']}: {row['seconds']:.0f}s", file=sys.stderr, flush=True)

    title = (f"seed {args.index} of a vmapped batch of {args.seeds} vs seed {args.index} alone "
             f"(log_points={LOG_POINTS}; jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} CPU cores, "
             f"python {platform.python_version()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")
    headers = ["algorithm", "env", "steps", "identical metrics", "identical final state", "leaves differing",
               "max |Δ| state", "max |Δ| metrics"] + (["same with other mates"] if args.check_mates else [])
    table = []
    for r in rows:
        metrics = "yes" if r["first"] is None else f"no: point {r['first'] + 1}/{LOG_POINTS} ({r['first_name']})"
        table.append([r["algo"], r["env"], str(r["steps"]), metrics, "yes" if r["state_same"] else "no",
                      r["leaves"], f"{r['state_diff']:.3g}", f"{r['metric_diff']:.3g}"]
                     + (["yes" if r["mates_same"] else "no"] if args.check_mates else []))
    print_table(title, headers, table, left=(0, 1, 3))
    if failed:
        print("\nfailed:")
        for name, env_name, why in failed:
            print(f"  {name} on {env_name}: {why}")
    identical = [r["algo"] for r in rows if r["first"] is None and r["state_same"]]
    print(f"\nbit-identical ({len(identical)}/{len(rows)}): {', '.join(identical) or '(none)'}")
    return 0 if rows and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
