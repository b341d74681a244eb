"""Training throughput of the value-based core: QMIX on LBF 8x8-2p-2f-coop.

Prints (1) training env steps/s of QMIX (collect + replay + one gradient step per iteration, the whole
iteration compiled) next to env-only steps/s with the same number of envs, and (2) wall time of the
same training for 1, 8 and 32 vmapped seeds. Compile time is excluded (measured separately).

    python benchmarks/value_training.py [--iters 20] [--algo qmix] [--env lbf:8x8-2p-2f-coop] [--agent gru]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_env, measure_training  # noqa: E402



def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="qmix")
    p.add_argument("--env", default="lbf:8x8-2p-2f-coop")
    p.add_argument("--iters", type=int, default=20, help="iterations timed (each: n_envs windows + 1 update)")
    p.add_argument("--agent", default="gru")
    p.add_argument("--seeds", default="1,8,32")
    args = p.parse_args(argv)
    overrides = [f"agent={args.agent}"]
    from coopmarl.config import resolve as _r

    r = _r(args.algo, args.env, overrides)
    env_only = measure_env(r.env, r.config.n_envs, 2000)
    rows = [measure_training(args.algo, args.env, int(s), args.iters, overrides) for s in args.seeds.split(",")]
    print(f"\n{args.algo} ({args.agent} agents) on {args.env}, {jax.devices()[0].platform}; n_envs {rows[0]['n_envs']}, "
          f"window {rows[0]['window']}, batch {r.config.batch_size} windows")
    print(f"env only, {r.config.n_envs} envs: {env_only['steps_per_s']:,.0f} steps/s")
    print("| seeds | train env steps/s (all seeds) | per seed | updates/s | wall s for the timed steps | vs env-only | compile s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['seeds']} | {row['steps_per_s']:,.0f} | {row['steps_per_s'] / row['seeds']:,.0f} | "
              f"{row['updates_per_s']:.1f} | {row['run_s']:.2f} | {row['steps_per_s'] / env_only['steps_per_s']:.3f} | "
              f"{row['compile_s']:.1f} |")
    return rows


if __name__ == "__main__":
    main()
