"""Env-only throughput of coopmarl's environments next to the reference packages, in one run, one table.

    .venv/bin/python benchmarks/env_throughput.py [--envs NAME,...] [--batches 1,64,1024] [--repeats 3]
                                                  [--quick] [--bare-step] [--no-references]

Ours: `n` envs vmapped (n = each of `--batches`), wrapped in `AutoReset` as the runner wraps them, random
legal actions drawn inside the program, a fixed number of steps in one jitted `lax.scan`
(`benchmarks/common.py`). The scan consumes each step's reward, observations, global state and action
masks, so XLA cannot drop the code that computes them (`info["final_obs"]` is not consumed: a learner
that bootstraps truncated episodes pays for one more observation). The first call compiles and is
timed apart ("compile s"); steps/s is the median over `--repeats` later calls, each with a new key, and
counts env steps over all envs. `--bare-step` adds rows for the bare `env.step` (never reset).

References, measured in the same run (`--no-references` skips them):
- `lbforaging` (Python): one `ForagingEnv` with the parameters of `lbf:8x8-2p-2f-coop`, numpy random
  actions, reset at episode end;
- `mpe2` (Python): one `simple_spread_v3.parallel_env(N=3)`, the same loop;
- JaxMARL: `MPE_simple_spread_v3` (N=3) through exactly our harness — vmapped, the same action sampler,
  one scan — with its own `step`, which auto-resets. It returns observations and rewards, no global state.

The ratio column is ours / the reference at 1 | 64 | 1024 envs. A Python reference runs one env, so
ours at every batch size is compared with its one-env rate (marked *).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import coopmarl  # noqa: E402
from common import measure_env, random_actions, time_compiled  # noqa: E402

# our envs, in table order: name -> (label, constructor parameters)
ENVS: dict[str, tuple[str, dict]] = {
    "lbf:8x8-2p-2f-coop": ("lbf:8x8-2p-2f-coop", {}),
    "predator-prey": ("predator-prey (10x10, 8 agents)", {}),
    "mpe:spread": ("mpe:spread (N=3)", {"n_agents": 3}),
    "mpe:line": ("mpe:line (N=5)", {}),
    "mpe:circle": ("mpe:circle (N=5)", {}),
    "differential": ("differential", {}),
    "climbing": ("climbing", {}),
    "smax:3m": ("smax:3m", {}),
}
# the references measured next to an env
REFERENCES = {"lbf:8x8-2p-2f-coop": ("lbforaging",), "mpe:spread": ("mpe2", "jaxmarl")}

FULL = dict(total_steps=500_000, single_env_steps=50_000, python_steps=(20_000, 5_000), repeats=3)
QUICK = dict(total_steps=20_000, single_env_steps=2_000, python_steps=(500, 200), repeats=1)


@dataclass
class Row:
    env: str
    impl: str
    rates: dict[int, float] = field(default_factory=dict)  # n_envs -> steps/s
    compile_s: float | None = None  # the largest compile time over the batch sizes
    python: bool = False  # a one-env Python reference
    note: str = ""


def scan_steps(n_envs: int, cfg: dict) -> int:
    """Steps per env in one timed call: about `total_steps` env steps (fewer for one env, whose scan is
    sequential), at least 20."""
    total = cfg["single_env_steps"] if n_envs == 1 else cfg["total_steps"]
    return max(20, total // n_envs)


# ---- ours ---------------------------------------------------------------------------------------------


def measure_ours(name: str, batches, cfg, auto_reset: bool = True) -> Row:
    label, params = ENVS.get(name, (name, {}))
    row = Row(label, "coopmarl" if auto_reset else "coopmarl, bare step")
    env = coopmarl.make(name, **params)
    for n in batches:
        r = measure_env(env, n, scan_steps(n, cfg), auto_reset, cfg["repeats"])
        row.rates[n] = r["steps_per_s"]
        row.compile_s = max(row.compile_s or 0.0, r["compile_s"])
    return row


# ---- references -----------------------------------------------------------------------------------------


def _python_loop(env_reset, env_step, sample, steps: int, repeats: int) -> float:
    """Median steps/s of `repeats` runs of `steps` steps of a Python env (reset at episode end)."""
    rates = []
    for i in range(repeats):
        env_reset(seed=i)
        t0 = time.perf_counter()
        for _ in range(steps):
            if env_step(sample()):
                env_reset()
        rates.append(steps / (time.perf_counter() - t0))
    return float(np.median(rates))


def measure_lbforaging(cfg) -> Row:
    from lbforaging.foraging import ForagingEnv

    env = coopmarl.make("lbf:8x8-2p-2f-coop")
    ref = ForagingEnv(
        players=env.n_agents, min_player_level=env.min_player_level, max_player_level=env.max_player_level,
        min_food_level=env.min_food_level, max_food_level=env.max_food_level,
        field_size=(env.grid_size, env.grid_size), max_num_food=env.n_foods, sight=env.sight,
        max_episode_steps=env.time_limit, force_coop=env.force_coop, penalty=env.penalty,
    )
    rng = np.random.default_rng(0)

    def step(actions):
        _, _, done, truncated, _ = ref.step(actions)
        return done or truncated

    rate = _python_loop(ref.reset, step,
                        lambda: rng.integers(6, size=env.n_agents).tolist(), cfg["python_steps"][0], cfg["repeats"])
    return Row(ENVS["lbf:8x8-2p-2f-coop"][0], "lbforaging (Python)", {1: rate}, python=True)


def measure_mpe2(cfg) -> Row:
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(N=3)
    rng = np.random.default_rng(0)

    def step(actions):
        _, _, term, trunc, _ = env.step(actions)
        return any(term.values()) or any(trunc.values())

    rate = _python_loop(env.reset, step,
                        lambda: {a: int(rng.integers(5)) for a in env.agents}, cfg["python_steps"][1], cfg["repeats"])
    return Row(ENVS["mpe:spread"][0], "mpe2 (Python)", {1: rate}, python=True)


def measure_jaxmarl_spread(batches, cfg) -> Row:
    """JaxMARL's `MPE_simple_spread_v3` (N=3) in our harness: the same vmap, action sampler and scan."""
    from jaxmarl import make

    env = make("MPE_simple_spread_v3", num_agents=3, num_landmarks=3)
    ours = coopmarl.make("mpe:spread", n_agents=3)  # for the action sampler: the same spec (5 moves)
    agents = env.agents
    row = Row(ENVS["mpe:spread"][0], "JaxMARL")
    for n in batches:
        steps = scan_steps(n, cfg)

        def run(key, n=n, steps=steps):
            k_reset, k_run = jax.random.split(key)
            _, state = jax.vmap(env.reset)(jax.random.split(k_reset, n))
            avail = jnp.ones((n, len(agents), ours.spec.n_actions), bool)

            def body(carry, k):
                state, acc = carry
                k_act, k_env = jax.random.split(k)
                acts = random_actions(k_act, ours.spec, avail)  # [n, N]
                obs, state, rew, _, _ = jax.vmap(env.step)(jax.random.split(k_env, n), state,
                                                           {a: acts[:, i] for i, a in enumerate(agents)})
                used = sum(o.sum() for o in obs.values()) + sum(r.sum() for r in rew.values())
                return (state, acc + used), None

            (_, acc), _ = jax.lax.scan(body, (state, jnp.float32(0.0)), jax.random.split(k_run, steps))
            return acc

        compile_s, run_s = time_compiled(run, cfg["repeats"])
        row.rates[n] = steps * n / run_s
        row.compile_s = max(row.compile_s or 0.0, compile_s)
    return row


# ---- the table ------------------------------------------------------------------------------------------------


def _ratios(ours: Row, ref: Row, batches) -> str:
    parts = []
    for n in batches:
        base = ref.rates.get(n, ref.rates.get(1) if ref.python else None)
        if n not in ours.rates or not base:
            parts.append("-")
        else:
            parts.append(f"{ours.rates[n] / base:.2f}x" + ("*" if ref.python and n != 1 else ""))
    return " | ".join(parts)


def format_table(rows: list[Row], batches) -> str:
    ours_by_env = {r.env: r for r in rows if r.impl == "coopmarl"}
    heads = ["env", "implementation"] + [f"{n} env" + ("s" if n > 1 else "") for n in batches] + [
        "compile s", "ours / ref (" + " | ".join(map(str, batches)) + ")"]
    lines = []
    for r in rows:
        if r.note:
            lines.append([r.env, r.impl] + [""] * len(batches) + ["", r.note])
            continue
        rates = [f"{r.rates[n]:,.0f}" if n in r.rates else "-" for n in batches]
        compile_s = f"{r.compile_s:.1f}" if r.compile_s is not None else "-"
        ratio = _ratios(ours_by_env[r.env], r, batches) if r.impl != "coopmarl" and r.env in ours_by_env \
            and not r.impl.startswith("coopmarl") else ""
        lines.append([r.env, r.impl] + rates + [compile_s, ratio])
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *lines)]
    align = ["<", "<"] + [">"] * (len(batches) + 1) + ["<"]

    def fmt(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [fmt(heads), fmt(["-" * w for w in widths])]
    previous = None
    for cells in lines:
        shown = list(cells)
        if cells[0] == previous:
            shown[0] = ""
        previous = cells[0]
        out.append(fmt(shown))
    return "\n".join(out)


def run(args) -> list[Row]:
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = args.repeats
    batches = [int(b) for b in args.batches.split(",")]
    names = [e.strip() for e in args.envs.split(",") if e.strip()]
    rows: list[Row] = []

    def attempt(label, impl, fn):
        try:
            rows.append(fn())
        except Exception as e:  # an optional package missing, or an env that fails: say so, go on
            if not isinstance(e, ImportError):
                traceback.print_exc()
            rows.append(Row(label, impl, note=f"skipped: {type(e).__name__}: {str(e).splitlines()[0][:80]}"))

    for name in names:
        label = ENVS.get(name, (name, {}))[0]
        attempt(label, "coopmarl", lambda: measure_ours(name, batches, cfg))
        if args.bare_step:
            attempt(label, "coopmarl, bare step", lambda: measure_ours(name, batches, cfg, auto_reset=False))
        if args.no_references:
            continue
        for ref in REFERENCES.get(name, ()):
            if ref == "lbforaging":
                attempt(label, "lbforaging (Python)", lambda: measure_lbforaging(cfg))
            elif ref == "mpe2":
                attempt(label, "mpe2 (Python)", lambda: measure_mpe2(cfg))
            elif ref == "jaxmarl":
                attempt(label, "JaxMARL", lambda: measure_jaxmarl_spread(batches, cfg))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default=",".join(ENVS), help=f"comma-separated env names (default: {','.join(ENVS)})")
    p.add_argument("--batches", default="1,64,1024", help="numbers of vmapped envs")
    p.add_argument("--repeats", type=int, default=0,
                   help="timed calls per measurement, median (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="few steps, one timed call: a smoke test, not a measurement")
    p.add_argument("--bare-step", action="store_true", help="also measure our envs' bare step (no auto-reset)")
    p.add_argument("--no-references", action="store_true", help="skip lbforaging, mpe2 and JaxMARL")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    rows = run(args)
    batches = [int(b) for b in args.batches.split(",")]
    repeats = args.repeats or (QUICK if args.quick else FULL)["repeats"]
    print(f"Env-only steps/s: random legal actions, auto-reset, one jitted lax.scan; compile excluded; median of "
          f"{repeats} timed call(s){' (--quick: not a measurement)' if args.quick else ''}")
    print(f"jax {jax.__version__} on {jax.default_backend()} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores) | {datetime.date.today()} | {time.perf_counter() - t0:.0f} s")
    print(format_table(rows, batches))
    if any(r.python for r in rows):
        print("* a Python reference runs one env: ours at this batch size / its one-env rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
