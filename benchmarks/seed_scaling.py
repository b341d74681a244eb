"""Training throughput as the vmapped seeds grow: QMIX, IPPO and DPO (or any algorithms), one table.

    python benchmarks/seed_scaling.py [--seeds 1,8,32,128] [--iters 20] [--runs qmix@lbf:8x8-2p-2f-coop,...]
                                      [--json FILE]

Each run `ALGO@ENV` trains its default config (plus `--set key=value` overrides for every run) through the
runner's compiled chunk (`common.measure_training`): `--iters` iterations of collect + update, vmapped over S
seeds, timed on a second call. Columns: env steps/s over all seeds, per seed, and the speed-up over one seed
(S seeds in one program vs one). Compile time is a column of its own, not in the rates. On a GPU this is the
figure that says how many seeds fill the device; on a CPU the rate per seed falls once the cores are busy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_training, print_table  # noqa: E402

RUNS = "qmix@lbf:8x8-2p-2f-coop,ippo@mpe:spread,dpo@mpe:spread"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=RUNS, help=f"comma-separated ALGO@ENV (default {RUNS})")
    p.add_argument("--seeds", default="1,8,32,128", help="comma-separated vmapped seed counts")
    p.add_argument("--iters", type=int, default=20, help="iterations timed (each: a rollout + an update)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every run")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    runs = [tuple(r.split("@", 1)) for r in args.runs.split(",") if r.strip()]
    if not runs or any(len(r) != 2 for r in runs):
        p.error(f"--runs must be comma-separated ALGO@ENV, got {args.runs!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, out = [], []
    for algo, env in runs:
        base = None
        for s in seeds:
            m = measure_training(algo, env, s, args.iters, args.set)
            base = base or m["steps_per_s"] / s
            out.append(dict(algo=algo, env=env, **m))
            rows.append([algo, env, str(s), f"{m['steps_per_s']:,.0f}", f"{m['steps_per_s'] / s:,.0f}",
                         f"{m['steps_per_s'] / base:.1f}x", f"{m['updates_per_s']:.1f}", f"{m['compile_s']:.1f}"])
    device = jax.devices()[0]
    print_table(f"training env steps/s by vmapped seeds ({device.platform}: {device.device_kind}; {args.iters} "
                "iterations timed)", ["algorithm", "env", "seeds", "steps/s (all seeds)", "per seed",
                                      "vs 1 seed", "updates/s", "compile s"], rows, left=(0, 1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
