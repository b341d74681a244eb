"""Env-only throughput of our particle envs vs mpe2's Python simple spread, in the same run.

    .venv/bin/python benchmarks/env_throughput_mpe.py [--env mpe:spread] [--n-agents 3] [--steps 2000]
                                                      [--batches 1,64,1024] [--mpe2-steps 5000]

Ours: `n` envs vmapped, random discrete actions drawn inside the compiled program, auto-reset
(`AutoReset`), `--steps` steps in one jitted `lax.scan`; compile time is measured on a first call and
excluded (the timed call is the second, with a different key). steps/s counts env steps over all
envs. mpe2: one `simple_spread_v3.parallel_env`, random actions from numpy, reset at episode end.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import coopmarl
from common import measure_env, time_compiled  # benchmarks/common.py


def ours(env_name: str, n_agents: int, n_envs: int, steps: int) -> dict:
    return dict(impl="coopmarl (JAX)", **measure_env(coopmarl.make(env_name, n_agents=n_agents), n_envs, steps))


def mpe2_spread(n_agents: int, steps: int) -> dict:
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(N=n_agents)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        actions = {a: int(rng.integers(5)) for a in env.agents}
        _, _, term, trunc, _ = env.step(actions)
        if any(term.values()) or any(trunc.values()):
            env.reset()
    run_s = time.perf_counter() - t0
    return dict(impl="mpe2 (Python)", n_envs=1, steps=steps, compile_s=0.0, run_s=run_s, steps_per_s=steps / run_s)


def jaxmarl_spread(n_agents: int, n_envs: int, steps: int) -> dict:
    """JaxMARL's `MPE_simple_spread_v3` (its own `step`, which auto-resets), vmapped and scanned like ours."""
    import jax.numpy as jnp
    from jaxmarl import make

    env = make("MPE_simple_spread_v3", num_agents=n_agents, num_landmarks=n_agents)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, n_envs))

        def body(carry, k):
            state, acc = carry
            k_act, k_env = jax.random.split(k)
            acts = jax.random.randint(k_act, (len(env.agents), n_envs), 0, 5)
            actions = {a: acts[i] for i, a in enumerate(env.agents)}
            obs, state, rew, dones, _ = jax.vmap(env.step)(jax.random.split(k_env, n_envs), state, actions)
            used = sum(o.sum() for o in obs.values()) + sum(r.sum() for r in rew.values())
            return (state, acc + used), None

        (_, acc), _ = jax.lax.scan(body, (state, jnp.float32(0.0)), jax.random.split(k_run, steps))
        return acc

    compile_s, run_s = time_compiled(run)
    return dict(impl="JaxMARL (JAX)", n_envs=n_envs, steps=steps * n_envs, compile_s=compile_s, run_s=run_s,
                steps_per_s=steps * n_envs / run_s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="mpe:spread")
    p.add_argument("--n-agents", type=int, default=3)
    p.add_argument("--steps", type=int, default=2000, help="scan length (steps per env; at least 20000/envs)")
    p.add_argument("--batches", default="1,64,1024", help="numbers of vmapped envs")
    p.add_argument("--mpe2-steps", type=int, default=5000, help="0 skips mpe2")
    args = p.parse_args(argv)

    rows = []
    if args.mpe2_steps > 0 and args.env == "mpe:spread":
        try:
            rows.append(mpe2_spread(args.n_agents, args.mpe2_steps))
        except ImportError:
            print("(mpe2 not installed: skipped)")
    for n in (int(b) for b in args.batches.split(",")):
        steps = max(args.steps, 20_000 // n)  # enough steps for a stable timing at small batches
        rows.append(ours(args.env, args.n_agents, n, steps))
        if args.env == "mpe:spread":
            try:
                rows.append(jaxmarl_spread(args.n_agents, n, steps))
            except ImportError:
                print("(jaxmarl not installed: skipped)")
    ours_rows = {r["n_envs"]: r for r in rows if r["impl"].startswith("coopmarl")}
    for r in rows:
        base = ours_rows.get(r["n_envs"])
        r["ratio"] = base["steps_per_s"] / r["steps_per_s"] if base and not r["impl"].startswith("coopmarl") else None

    print(f"{args.env}, N={args.n_agents}, random discrete actions, env only | jax {jax.__version__} "
          f"on {jax.default_backend()} ({platform.processor() or platform.machine()})")
    print(f"{'implementation':<16} {'envs':>6} {'steps':>10} {'compile s':>10} {'run s':>8} {'steps/s':>12} "
          f"{'ours/this':>10}")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else ""
        print(f"{r['impl']:<16} {r['n_envs']:>6} {r['steps']:>10} {r['compile_s']:>10.2f} {r['run_s']:>8.2f} "
              f"{r['steps_per_s']:>12,.0f} {ratio:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
