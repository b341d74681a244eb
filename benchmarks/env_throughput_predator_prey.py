"""Env-only throughput of predator-prey: steps/s at 1, 64 and 1024 vmapped envs.

    .venv/bin/python benchmarks/env_throughput_predator_prey.py [--env predator-prey:p-2] [--steps 200]

Each measurement is one jitted `lax.scan` of `--steps` steps over `n` vmapped envs with uniformly random
available actions (sampling included), once raw (`env.step` only; an episode that ends keeps being stepped)
and once auto-resetting (`AutoReset`, as the runner uses it: it also evaluates `env.reset` every step).
The first call (compile + run) is timed separately as `compile`; `steps/s` = n·steps / the mean wall time of
the following `--repeats` calls. An "env step" is one step of one env (all its agents).
"""

from __future__ import annotations

import argparse
import platform

import jax

import coopmarl
from common import measure_env  # benchmarks/common.py


def measure(env, n_envs: int, n_steps: int, repeats: int, autoreset: bool) -> dict:
    row = measure_env(env, n_envs, n_steps, autoreset, repeats)
    return dict(n_envs=n_envs, compile=row["compile_s"], run=row["run_s"], steps_per_s=row["steps_per_s"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="predator-prey:p-2", help="a registered predator-prey env")
    parser.add_argument("--steps", type=int, default=200, help="steps per env per call (default: one episode)")
    parser.add_argument("--envs", default="1,64,1024", help="comma-separated numbers of vmapped envs")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up call")
    args = parser.parse_args(argv)

    env = coopmarl.make(args.env)
    print(f"{args.env}: {env.grid_size}x{env.grid_size}, {env.n_agents} agents, {env.n_stags} stags, "
          f"{env.n_hares} hares | jax {jax.__version__} on {jax.devices()[0].platform} "
          f"({platform.processor() or platform.machine()})")
    print(f"{'mode':>9} {'envs':>6} {'compile [s]':>12} {'call [ms]':>10} {'steps/s':>12}")
    for autoreset in (False, True):
        for n in (int(x) for x in args.envs.split(",")):
            r = measure(env, n, args.steps, args.repeats, autoreset)
            print(f"{'autoreset' if autoreset else 'raw':>9} {r['n_envs']:>6} {r['compile']:>12.2f} "
                  f"{1e3 * r['run']:>10.1f} {r['steps_per_s']:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
