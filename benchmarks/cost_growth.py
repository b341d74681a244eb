"""Training steps/s as the work grows — agents, vmapped envs, vmapped seeds — for IPPO and QMIX; one table per axis.

    python benchmarks/cost_growth.py [--axes agents,envs,seeds] [--algos ippo,qmix] [--iters 10]
                                     [--agents 2,3,6] [--pp-agents 8] [--envs 1,4,16,64,256,1024]
                                     [--seeds 1,2,8,32] [--env lbf:8x8-2p-2f-coop] [--set KEY=VALUE ...]

Every point trains the algorithm's default config (plus `--set` overrides) through the runner's compiled chunk
(`common.measure_training`): an off-policy learner's replay is filled first, then `--iters` iterations of
collect + update are timed on a second call. Compile time is excluded from the rates and printed in a column of
its own. The axes:

- agents: Level-Based Foraging (`foraging`: 8x8 grid, 2 foods; `env.n_agents` = each of `--agents`) and the
  predator-prey stag hunt (`predator-prey`, 10x10, 8 stags; `env.n_agents` = `--pp-agents`, empty to leave it out).
  The predator-prey row is another env (200-step episodes, a bigger observation), so its ratio is not agents alone;
- envs: `n_envs` = each of `--envs` on `--env` (default lbf:8x8-2p-2f-coop, MAOSQL Table 6's task). An iteration
  is one update whatever `n_envs` (IPPO: its epochs over the rollout; QMIX: `updates_per_iteration`, by default one
  gradient step on a batch of windows), so more envs also means more env steps per gradient step: the rate shows
  how collection amortises, and updates/s how the update's own cost grows with the rollout;
- seeds: `--seeds` seeds vmapped in one program on `--env`; steps/s counts every seed's steps (docs/results.md's
  seed-scaling table: on 2 CPU cores one seed already fills the cores).

"ratio to first row" is each row's steps/s over the first row of its algorithm in that table. Rows are single timed
calls (no repeats): on a shared machine, repeat the run before trusting a ratio within ~20%.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_training  # noqa: E402

AXES = ("agents", "envs", "seeds")
ALGOS = ("ippo", "qmix")


def _ints(text: str, flag: str, allow_empty: bool = False) -> list[int]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        values = [int(x) for x in items]
    except ValueError:
        raise SystemExit(f"{flag} must be comma-separated whole numbers (e.g. {flag} 1,16,256), got {text!r}") from None
    if any(v < 1 for v in values) or (not values and not allow_empty):
        raise SystemExit(f"{flag} must be comma-separated whole numbers >= 1, got {text!r}")
    return values


def points(axis: str, args) -> list[tuple[str, str, dict, int]]:
    """[(label of the axis value, env, overrides, seeds)] of one axis."""
    if axis == "agents":
        out = [(str(n), "foraging", {"env.n_agents": n}, 1) for n in args.agents]
        return out + [(str(n), "predator-prey", {"env.n_agents": n}, 1) for n in args.pp_agents]
    if axis == "envs":
        return [(str(n), args.env, {"n_envs": n}, 1) for n in args.envs]
    return [(str(s), args.env, {}, s) for s in args.seeds]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main(argv=None) -> int:
    from coopmarl.config import parse_overrides, resolve
    from coopmarl.errors import ConfigError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--axes", default=",".join(AXES), help=f"comma-separated subset of {', '.join(AXES)}")
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated algorithms (default ippo,qmix)")
    p.add_argument("--iters", type=int, default=10, help="iterations timed per point (default 10)")
    p.add_argument("--agents", default="2,3,6", help="LBF (`foraging`) agent counts (default 2,3,6)")
    p.add_argument("--pp-agents", default="8", help="predator-prey agent counts (default 8; empty: none)")
    p.add_argument("--envs", default="1,4,16,64,256,1024", help="n_envs values (default 1,4,16,64,256,1024)")
    p.add_argument("--seeds", default="1,2,8,32", help="vmapped seed counts (default 1,2,8,32)")
    p.add_argument("--env", default="lbf:8x8-2p-2f-coop", help="the env of the envs and seeds axes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every point")
    args = p.parse_args(argv)
    axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    if not axes or any(a not in AXES for a in axes):
        raise SystemExit(f"--axes must be a comma-separated subset of {', '.join(AXES)}, got {args.axes!r}")
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        raise SystemExit("--algos: name at least one algorithm (e.g. --algos ippo,qmix)")
    if args.iters < 1:
        raise SystemExit(f"--iters must be >= 1, got {args.iters}")
    args.agents = _ints(args.agents, "--agents", allow_empty=True)
    args.pp_agents = _ints(args.pp_agents, "--pp-agents", allow_empty=True)
    args.envs = _ints(args.envs, "--envs")
    args.seeds = _ints(args.seeds, "--seeds")
    try:
        common = parse_overrides(args.set)
        for algo in algos:  # every point's settings checked before anything compiles
            for axis in axes:
                for _, env, overrides, _ in points(axis, args):
                    resolve(algo, env, {**common, **{k: str(v) for k, v in overrides.items()}})
    except ConfigError as e:
        raise SystemExit(f"cost_growth: {e}") from None

    device = jax.devices()[0]
    print(f"## Training cost as the work grows ({device.platform}: {device.device_kind}; {args.iters} iteration(s) "
          "timed per point, compile time apart)")
    for axis in axes:
        rows = []
        for algo in algos:
            first = None
            for label, env, overrides, seeds in points(axis, args):
                items = [f"{k}={v}" for k, v in {**common, **overrides}.items()]
                m = measure_training(algo, env, seeds, args.iters, items)
                first = first or m["steps_per_s"]
                rows.append([algo, env, label, str(m["n_envs"]), str(m["window"]), f"{m['steps_per_s']:,.0f}",
                             f"{m['steps_per_s'] / first:.2f}x", f"{m['updates_per_s']:.1f}", f"{m['compile_s']:.1f}"])
        print(f"\n### {axis}\n")
        print(markdown(["algorithm", "env", axis, "n_envs", "steps per env per update", "steps/s", "ratio to first row",
                        "updates/s", "compile s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
