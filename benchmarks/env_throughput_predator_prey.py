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
import time

import jax
import jax.numpy as jnp

import coopmarl
from coopmarl.envs.core import AutoReset


def rollout_program(env, n_envs: int, n_steps: int, autoreset: bool):
    wrapped = AutoReset(env) if autoreset else env

    def one_env(key):
        k_reset, k_run = jax.random.split(key)
        state, ts = wrapped.reset(k_reset)

        def body(carry, k):
            state, ts = carry
            k_act, k_env = jax.random.split(k)
            logits = jnp.where(ts.avail_actions, 0.0, -jnp.inf)
            actions = jax.random.categorical(k_act, logits).astype(jnp.int32)
            state, ts = wrapped.step(k_env, state, actions)
            return (state, ts), ts.reward[0]

        _, rewards = jax.lax.scan(body, (state, ts), jax.random.split(k_run, n_steps))
        return rewards.sum()

    return jax.jit(lambda key: jax.vmap(one_env)(jax.random.split(key, n_envs)))


def measure(env, n_envs: int, n_steps: int, repeats: int, autoreset: bool) -> dict:
    program = rollout_program(env, n_envs, n_steps, autoreset)
    t0 = time.perf_counter()
    program(jax.random.PRNGKey(0)).block_until_ready()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(repeats):
        program(jax.random.PRNGKey(i + 1)).block_until_ready()
    run_s = (time.perf_counter() - t0) / repeats
    return dict(n_envs=n_envs, compile=compile_s, run=run_s, steps_per_s=n_envs * n_steps / run_s)


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
