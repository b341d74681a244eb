"""Env-only throughput of our Level-Based Foraging vs the `lbforaging` package, in the same run.

    .venv/bin/python benchmarks/env_throughput_lbf.py [--env lbf:8x8-2p-2f-coop] [--steps 2000]
                                                      [--batches 1,64,1024] [--lbf-steps 20000]

Ours (`benchmarks/common.py`): `n` envs vmapped, random available actions drawn inside the compiled program, `--steps` steps in one jitted `lax.scan`; compile time is
measured on a first call and excluded (the timed call is the second, with a different key). Two
variants: `step` (the bare env, never reset) and `auto-reset` (`AutoReset`, as the runner uses it: a
reset is computed every step and selected where an episode ended). The scan consumes reward, obs,
global state and masks of every step (otherwise XLA drops unused observation code). steps/s counts env steps over all
envs. lbforaging: one `ForagingEnv` with the same parameters, random actions from numpy, reset at
episode end (its usual gymnasium loop, without gymnasium's wrappers).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import coopmarl
from common import measure_env  # benchmarks/common.py


def ours(env_name: str, n_envs: int, steps: int, auto_reset: bool) -> dict:
    row = measure_env(coopmarl.make(env_name), n_envs, steps, auto_reset)
    return dict(impl="coopmarl (JAX)", mode="auto-reset" if auto_reset else "step", **row)


def lbforaging_reference(env_name: str, steps: int) -> dict:
    from lbforaging.foraging import ForagingEnv

    env = coopmarl.make(env_name)
    ref = ForagingEnv(
        players=env.n_agents, min_player_level=env.min_player_level, max_player_level=env.max_player_level,
        min_food_level=env.min_food_level, max_food_level=env.max_food_level,
        field_size=(env.grid_size, env.grid_size), max_num_food=env.n_foods, sight=env.sight,
        max_episode_steps=env.time_limit, force_coop=env.force_coop, penalty=env.penalty,
    )
    ref.reset(seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, done, _, _ = ref.step(rng.integers(6, size=env.n_agents).tolist())
        if done:
            ref.reset()
    run_s = time.perf_counter() - t0
    return dict(impl="lbforaging (Python)", mode="step+reset", n_envs=1, steps=steps, compile_s=0.0, run_s=run_s,
                steps_per_s=steps / run_s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="lbf:8x8-2p-2f-coop")
    p.add_argument("--steps", type=int, default=2000, help="scan length (steps per env; at least 200000/envs)")
    p.add_argument("--batches", default="1,64,1024", help="numbers of vmapped envs")
    p.add_argument("--lbf-steps", type=int, default=20000, help="0 skips lbforaging")
    args = p.parse_args(argv)

    rows = []
    if args.lbf_steps > 0:
        try:
            rows.append(lbforaging_reference(args.env, args.lbf_steps))
        except ImportError:
            print("(lbforaging not installed: skipped)")
    for auto_reset in (False, True):
        for n in (int(b) for b in args.batches.split(",")):
            steps = max(args.steps, 200_000 // n)  # enough steps for a stable timing at small batches
            rows.append(ours(args.env, n, steps, auto_reset))

    print(f"{args.env}, random actions, env only | jax {jax.__version__} on {jax.default_backend()} "
          f"({platform.processor() or platform.machine()})")
    print(f"{'implementation':<20} {'mode':<11} {'envs':>6} {'steps':>10} {'compile s':>10} {'run s':>8} "
          f"{'steps/s':>12}")
    for r in rows:
        print(f"{r['impl']:<20} {r['mode']:<11} {r['n_envs']:>6} {r['steps']:>10} {r['compile_s']:>10.2f} "
              f"{r['run_s']:>8.2f} {r['steps_per_s']:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
