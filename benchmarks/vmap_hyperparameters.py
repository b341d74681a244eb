"""K values of a hyperparameter in one compiled program (`coopmarl.train_vmapped`) against K separate runs
(`coopmarl.train_run`, one after another), wall time with compilation included.

    .venv/bin/python benchmarks/vmap_hyperparameters.py [--algo ippo] [--env mpe:spread] [--key actor_lr]
        [--values 1e-4,3e-4,1e-3,3e-3] [--seeds 1] [key=value ...]

Each side runs in a fresh Python process with the persistent compilation cache off
(`COOPMARL_COMPILATION_CACHE=0`), so both pay their compilations: the vmapped side compiles one program for
all K values, the separate side one per value (a value is a constant of its program). Wall time is measured
inside the process around the training calls (imports excluded), and each side writes its run directories
(config.yaml, metrics.csv, checkpoints, curves.png …) into a temporary folder. The last column is the largest
difference between the two sides' `eval_return` (mean over seeds) of a value, at the first logging point and at
the end: 0 for the tabular learners (bit-identical); for networks a value of the vmapped program is bit-identical
to a separate run with as many seeds as the vmapped batch (K x seeds), and differs from a separate run with
fewer exactly as a seed of a batch differs from that seed alone — XLA rounds the differently batched program
differently by ~1 float32 ulp, and training amplifies it (README, "Seeds in a batch"; greedy evaluation returns
on MPE spread move by a few units within the first 2,000 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

DEFAULT_OVERRIDES = ["total_steps=20000", "log_points=10", "checkpoint_every=0"]


def child(args) -> None:
    """One side, in this (fresh) process: prints {"wall_s": …, "curves": [eval_return per point, per value]} as
    JSON."""
    import numpy as np

    from coopmarl.training import train_run, train_vmapped

    values = [float(v) for v in args.values.split(",")]
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.child == "vmapped":
        results = [r for r, _ in train_vmapped(args.algo, args.env, args.overrides, {args.key: values},
                                               seeds=args.seeds, out_root=out, progress=False)]
    else:
        results = [train_run(args.algo, args.env, args.overrides + [f"{args.key}={v}"], seeds=args.seeds,
                             out=out / f"{args.key}={v}", progress=False)[0] for v in values]
    wall = time.perf_counter() - t0
    curves = [np.mean(r.metrics["eval_return"], axis=1).tolist() for r in results]
    print(json.dumps({"wall_s": wall, "curves": curves, "steps": int(results[0].steps[-1])}))


def side(args, which: str, out: Path) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", which, "--out", str(out), "--algo", args.algo,
           "--env", args.env, "--key", args.key, "--values", args.values, "--seeds", str(args.seeds), *args.overrides]
    env = {**os.environ, "COOPMARL_COMPILATION_CACHE": "0"}
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="ippo")
    p.add_argument("--env", default="mpe:spread")
    p.add_argument("--key", default="actor_lr")
    p.add_argument("--values", default="1e-4,3e-4,1e-3,3e-3")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--child", choices=["vmapped", "separate"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", default=DEFAULT_OVERRIDES)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    k = len(args.values.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        separate = side(args, "separate", Path(tmp) / "separate")
        vmapped = side(args, "vmapped", Path(tmp) / "vmapped")
    import jax

    title = (f"{args.algo} on {args.env}, {args.key} in {{{args.values}}} ({k} values x {args.seeds} seed(s), "
             f"{vmapped['steps']} env steps each; {' '.join(args.overrides)}); compilation included, no cache "
             f"(jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} CPU cores, python "
             f"{platform.python_version()})")
    def diff(point):
        return max(abs(a[point] - b[point]) for a, b in zip(separate["curves"], vmapped["curves"]))

    rows = [[f"{k} separate runs (train_run)", f"{separate['wall_s']:.1f}", f"{separate['wall_s'] / k:.1f}", "1.00x",
             ""],
            ["one vmapped run (train_vmapped)", f"{vmapped['wall_s']:.1f}", f"{vmapped['wall_s'] / k:.1f}",
             f"{separate['wall_s'] / vmapped['wall_s']:.2f}x", f"{diff(0):.3g} | {diff(-1):.3g}"]]
    print_table(title, ["", "wall s", "s per value", "speed-up", "max |Δ eval_return| first | last point"], rows,
                left=(0,))
    for name, curves in (("separate", separate["curves"]), ("vmapped", vmapped["curves"])):
        print(f"eval_return (first, last point) per value, {name}: "
              + "; ".join(f"{c[0]:.6g}, {c[-1]:.6g}" for c in curves))
    return 0


if __name__ == "__main__":
    sys.exit(main())
