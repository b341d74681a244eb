"""`coopmarl` command line: list, train, resume, eval, reproduce, sweep, solve, render, plot, aggregate, check-env."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE_EXAMPLES = """examples:
  coopmarl list
  coopmarl train maosql ro-matrix --seeds 8
  coopmarl train rommeo-q climbing total_steps=3000 entropy_alpha=1 --seeds 100
  coopmarl train iql penalty env.k=-50
  coopmarl train rommeo-q tabular:path/to/game.npz
  coopmarl reproduce rommeo-climbing
  coopmarl reproduce remix-predator-prey punishments=-2 --out runs/pp   # again: continues; --report-only
  coopmarl sweep tabular-iql climbing epsilon=0.05,0.2 total_steps=2000 --seeds 8 --backend ray
  coopmarl sweep ippo mpe:spread actor_lr=vmap:1e-4,3e-4,1e-3 --seeds 3
  coopmarl solve three-state
  coopmarl solve tabular:path/to/game.npz horizon=5
  coopmarl plot runs/RUN_A runs/RUN_B --metric eval_return
  coopmarl aggregate runs/sweep --metric eval_return --out runs/sweep/stats
  coopmarl train qmix lbf:5x5-2p-1f-coop checkpoint_every=10 --out runs/q
  coopmarl resume runs/q
  coopmarl eval runs/q --episodes 100
  coopmarl render --run runs/q --seed-index 0 --out q.gif
  coopmarl check-env my_package.my_env:make_env
"""


def _print_table(title: str, header: list[str], rows: list[list[str]]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*[escape(str(x)) for x in r])
    console().print(table)


def console():
    """A rich console as wide as the terminal; off a terminal (a pipe, a log file) as wide as $COLUMNS, else
    160 columns, so logged tables are not folded to 80."""
    import os
    import shutil

    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS") or 0) or max(shutil.get_terminal_size((160, 24)).columns, 160))


def cmd_list(args):
    from coopmarl.algos.base import list_algos
    from coopmarl.envs import list_envs
    from coopmarl.errors import ConfigError
    from coopmarl.experiments import list_experiments

    what = args.what
    if args.name is not None:
        if what != "algos":
            raise ConfigError(f"a name is only taken by `coopmarl list algos NAME` (got `list {what} {args.name}`)")
        return _list_algo_keys(args.name)
    if what in ("all", "envs"):
        rows = []
        for e in list_envs():
            name = e.name + (":PATH" if e.prefix else "")
            params = ", ".join(f"{p.name}={p.default}" for p in e.params)
            rows.append([name, params, e.reward_scalarisation, e.description])
        _print_table("environments", ["name", "parameters (env.<name>=…)", "team reward", "description"], rows)
    if what in ("all", "algos"):
        import dataclasses

        rows = []
        for a in list_algos():
            keys = ", ".join(f.name for f in dataclasses.fields(a.config_cls))
            rows.append([a.name, "/".join(a.requires), a.description, keys])
        _print_table("algorithms", ["name", "needs", "description", "config keys"], rows)
    if what in ("all", "experiments"):
        rows = [[x.name, x.description, ", ".join(f"{k}={v[0]}" for k, v in x.options.items())]
                for x in list_experiments()]
        _print_table("experiments (coopmarl reproduce NAME)", ["name", "description", "options"], rows)
    return 0


def _list_algo_keys(name: str) -> int:
    """`coopmarl list algos NAME`: every key of the algorithm with its type, default and the default's source."""
    from coopmarl.algos.base import get_algo
    from coopmarl.algos.fields import fixed_choices
    from coopmarl.config import describe_config

    algo = get_algo(name)
    cls = algo.config_cls
    rows = [[k.name, k.type, repr(k.default), k.source] for k in describe_config(cls)]
    _print_table(f"{algo.name}: {algo.description}", ["key", "type", "default", "source of the default"], rows)
    print(f"config class: {cls.__module__}.{cls.__qualname__}; paper: {algo.paper or '-'}")
    fixed = fixed_choices(cls)
    if fixed:
        print("fixed by the algorithm (not keys): " + ", ".join(f"{k}={v!r}" for k, v in fixed.items()))
    for variant, keys in (cls.variants() if hasattr(cls, "variants") else {}).items():
        print(f"variant={variant}: " + (", ".join(f"{k}={v!r}" for k, v in keys.items()) or "the defaults above"))
    return 0


def cmd_train(args):
    from coopmarl.training import train_run

    result, run_dir = train_run(args.algo, args.env, args.overrides, seeds=args.seeds, seed=args.seed,
                                out=args.out, overwrite=args.overwrite, progress=not args.quiet)
    _print_final(result, run_dir)
    return 0


def cmd_resume(args):
    from coopmarl.training import resume

    result, run_dir = resume(args.run, progress=not args.quiet)
    _print_final(result, run_dir)
    return 0


def _print_final(result, run_dir):
    from coopmarl.outputs import summarise

    summary = summarise(result)
    rows = [[k, f"{v['mean']:.4g}" if v["mean"] is not None else "nan",
             f"{v['std']:.3g}" if v["std"] is not None else "nan"] for k, v in summary["metrics"].items()]
    rows += [[k, str(v), ""] for k, v in summary["static"].items()]
    _print_table(f"{result.algo} on {result.env}: final metrics over {len(result.seeds)} seed(s)",
                 ["metric", "mean", "std"], rows)
    print(f"run directory: {run_dir}")


def cmd_reproduce(args):
    from coopmarl.config import parse_overrides
    from coopmarl.experiments import get_experiment, resolve_options, run_experiment

    options = parse_overrides(args.options)
    if args.seeds is not None:
        options["seeds"] = str(args.seeds)
    exp = get_experiment(args.experiment)
    resolve_options(exp, options)  # validate before anything runs or is written
    report, out_dir = run_experiment(args.experiment, Path(args.out) if args.out else None, options,
                                     **_executor_args(args))
    print(report.markdown())
    print(f"results: {out_dir}")
    return 0


def _executor_args(args) -> dict:
    from coopmarl.config import parse_overrides

    return {"backend": args.backend, "address": args.address, "cpus_per_cell": args.cpus_per_cell,
            "gpus_per_cell": args.gpus_per_cell, "report_only": args.report_only, "overwrite": args.overwrite,
            "progress": args.progress, "logger": args.logger, "run_options": parse_overrides(args.run_option or [])}


def cmd_sweep(args):
    from coopmarl.experiments.sweep import run_sweep

    report, out_dir = run_sweep(args.algo, args.env, args.overrides, seeds=args.seeds, seed=args.seed,
                                out=Path(args.out) if args.out else None, metric=args.metric, **_executor_args(args))
    print(report.markdown())
    print(f"results: {out_dir}")
    return 0


def _add_executor_options(p: argparse.ArgumentParser, what: str):
    p.add_argument("--out", default=None, help=f"folder of the {what}'s run directories, table.md, aggregate.json and "
                   f"plots (default runs/NAME); the same command again skips finished runs and resumes interrupted ones")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: one run after another in this process; ray: each run a Ray task (pip install "
                        "'coopmarl[ray]')")
    p.add_argument("--address", default=None, help="with --backend ray: join this Ray cluster (e.g. auto, or "
                   "HOST:6379, started with `ray start`); default: a local Ray instance")
    p.add_argument("--cpus-per-cell", type=float, default=1, help="with --backend ray: CPUs each run requests (default 1)")
    p.add_argument("--gpus-per-cell", type=float, default=0, help="with --backend ray: GPUs each run requests (default 0)")
    p.add_argument("--report-only", action="store_true", help="rebuild table.md and the plots from the run "
                   "directories, training nothing")
    p.add_argument("--overwrite", action="store_true", help=f"delete this {what}'s previous --out first")
    p.add_argument("--progress", action="store_true", help="a progress bar for each run (local backend)")
    p.add_argument("--logger", default=None, help="also log every run to wandb, mlflow or both (wandb,mlflow): one "
                   "tracker run per run directory, grouped under the experiment's name")
    p.add_argument("--run-option", action="append", metavar="KEY=VALUE",
                   help="how every run is kept or reported (repeatable): checkpoint_every, keep_checkpoints, "
                        "save_buffers, logger, logger_project, logger_group — e.g. save_buffers=true for resumes "
                        "that are bit-identical however large the replay buffers")


def cmd_solve(args):
    import numpy as np

    from coopmarl import exact
    from coopmarl.config import parse_overrides
    from coopmarl.errors import ConfigError
    from coopmarl.envs import TabularGame, env_entry, make

    if args.max_states < 1:
        raise ConfigError(f"--max-states must be an integer >= 1, got {args.max_states}")
    params = {k.removeprefix("env."): v for k, v in parse_overrides(args.params).items()}
    entry = env_entry(args.env)
    if "tabular" not in entry.tags:
        raise ConfigError(f"{args.env!r} is not a tabular game; exact solutions exist only for tabular games")
    game = make(args.env, **params)
    assert isinstance(game, TabularGame)
    if args.infinite and game.discount >= 1.0:
        raise ConfigError(f"--infinite solves the infinite-horizon discounted objective, which needs a discount < 1; "
                          f"{args.env!r} has discount {game.discount:g} (give one, e.g. discount=0.95)")
    horizon = None if args.infinite else "game"
    solution = exact.solve(game, horizon=horizon)
    uniform = exact.evaluate(game, exact.uniform_policy(game), horizon=horizon)
    mask = np.asarray(exact.optimal_joint_mask(game, horizon=horizon))
    rows = []
    for s in range(min(game.n_states, args.max_states)):
        best = [tuple(int(a) + 1 for a in np.unravel_index(j, game.action_shape)) for j in np.flatnonzero(mask[s])]
        shown = ", ".join(str(b) for b in best[:6]) + (f" … ({len(best)} in all)" if len(best) > 6 else "")
        rows.append([str(s + 1), f"{float(solution.v[s]):.6g}", shown])
    objective = (f"infinite horizon, discount {game.discount}" if args.infinite
                 else f"horizon {game.horizon}, discount {game.discount}")
    print(f"{args.env}: objective = {objective}; actions are 1-based")
    _print_table("optimal values", ["state", "V*(s)", "optimal joint actions"], rows)
    print(f"optimal return: {float(solution.optimal_return):.6g}")
    print(f"uniform random product policy: {float(uniform.expected_return):.6g} "
          f"(regret {float(solution.optimal_return - uniform.expected_return):.6g})")
    return 0


def cmd_eval(args):
    from coopmarl.outputs import eval_path, evaluate

    report = evaluate(args.run, episodes=args.episodes, seed=args.seed, step=args.step)
    names = list(report["metrics"])
    how = "exact evaluation" if report["exact"] else f"{report['episodes']} greedy episodes per seed"
    print(f"{report['algo']} on {report['env']}: {report['checkpoint']} (step {report['step']}), {how}")
    if args.summary:  # one row per metric: the aggregate over seeds
        rows = [[n, str(len(report["seeds"]))] + [_fmt(report["metrics"][n][k]) for k in ("mean", "std")]
                + [_fmt(_reduce(report["metrics"][n]["per_seed"], f)) for f in (min, max)] for n in names]
        _print_table("evaluation over seeds", ["metric", "seeds", "mean", "std", "min", "max"], rows)
    else:
        rows = [[str(seed)] + [_fmt(report["metrics"][n]["per_seed"][i]) for n in names]
                for i, seed in enumerate(report["seeds"])]
        rows.append(["mean"] + [_fmt(report["metrics"][n]["mean"]) for n in names])
        rows.append(["std"] + [_fmt(report["metrics"][n]["std"]) for n in names])
        _print_table("evaluation", ["seed"] + names, rows)
    print(f"wrote {eval_path(args.run, args.step)}")
    return 0


def _reduce(values, fn):
    finite = [v for v in values if v is not None]
    return fn(finite) if finite else None


def _fmt(x) -> str:
    return "nan" if x is None else f"{x:.4g}"


def cmd_render(args):
    import jax

    from coopmarl.config import parse_overrides
    from coopmarl.errors import ConfigError
    from coopmarl.envs import make
    from coopmarl.render import can_render, not_renderable_error, render_run, rollout_frames, save_gif

    if not args.out.lower().endswith(".gif"):
        raise ConfigError(f"--out must name a .gif file, got {args.out!r}")
    if args.run is not None:
        if args.env is not None or args.params:
            raise ConfigError("give either ENV [params] (random policy) or --run RUN_DIR (its trained policy), "
                              "not both: a run directory fixes its env")
        path, n = render_run(args.run, args.out, seed_index=args.seed_index, seed=args.seed,
                             max_steps=args.max_steps, fps=args.fps, step=args.step)
        print(f"wrote {path} ({n} frames, greedy policy of seed index {args.seed_index} from {args.run}, "
              f"episode seed {args.seed})")
        return 0
    if args.env is None:
        raise ConfigError("render needs an environment (coopmarl render ENV --out FILE.gif) "
                          "or a run directory (coopmarl render --run RUN_DIR --out FILE.gif)")
    params = {k.removeprefix("env."): v for k, v in parse_overrides(args.params).items()}
    env = make(args.env, **params)
    if not can_render(env):
        raise not_renderable_error(args.env)
    frames = rollout_frames(env, jax.random.PRNGKey(args.seed), max_steps=args.max_steps)
    save_gif(frames, args.out, fps=args.fps)
    print(f"wrote {args.out} ({len(frames)} frames, random policy, seed {args.seed})")
    return 0


def cmd_check_env(args):
    """`coopmarl check-env NAME|module:function`: the env contract checks (coopmarl.envs.check), as a table;
    exit status 1 when a check fails."""
    from coopmarl.config import parse_overrides
    from coopmarl.envs.check import check_env

    params = {k.removeprefix("env."): v for k, v in parse_overrides(args.params).items()}
    report = check_env(args.env, steps=args.steps, seed=args.seed, **params)
    mark = {True: "pass", False: "FAIL", None: "skip"}
    _print_table(f"environment checks: {report.env}", ["check", "result", "detail"],
                 [[r.check, mark[r.passed], r.detail] for r in report.results])
    print(report.summary())
    return 0 if report.ok else 1


def cmd_plot(args):
    from coopmarl.outputs import load_run
    from coopmarl.plots import plot_curves

    runs = [load_run(r) for r in args.runs]
    out = Path(args.out) if args.out else (Path(args.runs[0]) / "comparison.png" if len(args.runs) > 1
                                           else Path(args.runs[0]) / "curves.png")
    labels = [f"{r.algo} on {r.env}" for r in runs]
    if len(set(labels)) < len(labels):  # the same algorithm and env twice: tell the runs apart by folder
        labels = [f"{label} ({Path(p).name})" for label, p in zip(labels, args.runs)]
    plot_curves(runs, out, metrics=args.metric or None, labels=labels)
    print(f"wrote {out}")
    return 0


def cmd_aggregate(args):
    """`coopmarl aggregate RUN_OR_DIR…`: IQM, mean, median and optimality gap with stratified bootstrap CIs,
    probability of improvement and performance profiles (coopmarl.aggregation); prints the tables."""
    from coopmarl.aggregation import SECTIONS, aggregate

    report = aggregate(args.runs, args.metric, out=args.out, reps=args.reps, profile_reps=args.profile_reps,
                       seed=args.seed, gap_threshold=args.gap_threshold)
    settings = report["settings"]

    def estimate(cell, k):
        return "—" if cell[k] is None else f"{cell[k]:.4g} [{cell[k + '_ci'][0]:.4g}, {cell[k + '_ci'][1]:.4g}]"

    rows = [[algo, env, m, str(cell["n_seeds"]) + (f" (+{cell['n_nonfinite']} nan)" if cell["n_nonfinite"] else "")]
            + [estimate(cell, k) for k in ("iqm", "mean", "median", "optimality_gap")]
            for algo in sorted(a for a in report if a not in SECTIONS)
            for env, cells in sorted(report[algo].items()) for m, cell in cells.items()]
    pct = f"{settings['confidence']:.0%}"
    _print_table(f"final values over seeds: point [{pct} stratified bootstrap CI], {settings['reps']} resamples",
                 ["algo", "env", "metric", "seeds", "IQM", "mean", "median",
                  f"optimality gap (γ = {settings['gap_threshold']:g})"], rows)
    for m, table in report["probability_of_improvement"].items():
        rows = [[x, y, f"{v['p']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]", ", ".join(v["envs"])]
                for x in sorted(table) for y, v in sorted(table[x].items())]
        if rows:
            _print_table(f"probability of improvement P(X > Y) on {m}, averaged over envs [{pct} CI]",
                         ["X", "Y", "P(X > Y)", "envs"], rows)
    for path, why in settings["skipped"].items():
        print(f"skipped {path}: {why}")
    for m, groups in settings["not_logged"].items():
        print(f"{m} not logged by: {', '.join(groups)}")
    print(f"wrote {Path(settings['out']) / 'aggregate.json'}, marl_eval.json and PNGs ({len(settings['runs'])} runs)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coopmarl", description="Cooperative multi-agent RL in JAX.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_EXAMPLES)
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("list", help="list environments, algorithms and experiments")
    pl.add_argument("what", nargs="?", default="all", choices=["all", "envs", "algos", "experiments"])
    pl.add_argument("name", nargs="?", default=None,
                    help="with `algos`: one algorithm's keys, their types, defaults and the defaults' sources")
    pl.set_defaults(fn=cmd_list)

    pt = sub.add_parser("train", help="train ALGO on ENV (overrides: key=value, env.key=value)")
    pt.add_argument("algo")
    pt.add_argument("env")
    pt.add_argument("overrides", nargs="*", help="key=value (algorithm or run keys) and env.key=value")
    pt.add_argument("--seeds", type=int, default=None, help="number of seeds, vmapped in one program")
    pt.add_argument("--seed", type=int, default=None, help="first seed (default 0)")
    pt.add_argument("--out", default=None, help="run directory (default: a new runs/ALGO_ENV_TIME); must be new or empty")
    pt.add_argument("--overwrite", action="store_true", help="clear an existing run directory --out first")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.set_defaults(fn=cmd_train)

    pu = sub.add_parser("resume", help="continue an interrupted run from its newest checkpoint")
    pu.add_argument("run", help="run directory (written by coopmarl train)")
    pu.add_argument("--quiet", action="store_true", help="no progress bar")
    pu.set_defaults(fn=cmd_resume)

    pr = sub.add_parser("reproduce", help="run a paper preset (see `coopmarl list experiments`)")
    pr.add_argument("experiment")
    pr.add_argument("options", nargs="*", help="preset options key=value (e.g. seeds=10 scale=paper)")
    pr.add_argument("--seeds", type=int, default=None, help="the preset's seeds option")
    _add_executor_options(pr, "preset")
    pr.set_defaults(fn=cmd_reproduce)

    pw = sub.add_parser("sweep", help="a grid of runs: ALGO on ENV over key=a,b,c (key=vmap:a,b,c: one compiled "
                        "program), one run directory per setting, a ranked table with 95%% CIs")
    pw.add_argument("algo")
    pw.add_argument("env")
    pw.add_argument("overrides", nargs="*", help="key=a,b,c (an axis of the grid), key=vmap:a,b,c (vmapped), "
                    "key=value (shared); list-valued keys separate grid values with ';'")
    pw.add_argument("--seeds", type=int, default=1, help="seeds per setting (default 1)")
    pw.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    pw.add_argument("--metric", default="eval_return", help="the metric the table ranks by (default eval_return)")
    _add_executor_options(pw, "sweep")
    pw.set_defaults(fn=cmd_sweep)

    ps = sub.add_parser("solve", help="exact optimum of a tabular game (value iteration)")
    ps.add_argument("env")
    ps.add_argument("params", nargs="*", help="game parameters key=value (e.g. k=-50)")
    ps.add_argument("--infinite", action="store_true", help="infinite-horizon discounted objective")
    ps.add_argument("--max-states", type=int, default=20, help="states to list (default 20)")
    ps.set_defaults(fn=cmd_solve)

    pe = sub.add_parser("eval", help="greedy evaluation of every seed's checkpointed policy; writes RUN/eval.json")
    pe.add_argument("run", help="run directory (written by coopmarl train)")
    pe.add_argument("--episodes", type=int, default=100, help="episodes per seed (default 100; tabular games: exact)")
    pe.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    pe.add_argument("--step", type=int, default=None, help="an intermediate checkpoint's env step (default: final)")
    pe.add_argument("--summary", action="store_true",
                    help="print one row per metric (mean, std, min, max over seeds) instead of one row per seed")
    pe.set_defaults(fn=cmd_eval)

    pg = sub.add_parser("render", help="GIF of one episode of ENV (random policy) or of a run's trained policy")
    pg.add_argument("env", nargs="?", default=None, help="environment (omit with --run)")
    pg.add_argument("params", nargs="*", help="env parameters key=value")
    pg.add_argument("--run", default=None, help="run directory: roll out its trained greedy policy")
    pg.add_argument("--seed-index", type=int, default=0, help="with --run: which of the run's seeds (default 0)")
    pg.add_argument("--step", type=int, default=None, help="with --run: an intermediate checkpoint's env step")
    pg.add_argument("--out", required=True, help="output .gif")
    pg.add_argument("--seed", type=int, default=0, help="episode seed")
    pg.add_argument("--max-steps", type=int, default=None, help="default: the env's horizon")
    pg.add_argument("--fps", type=int, default=5)
    pg.set_defaults(fn=cmd_render)

    pc = sub.add_parser("check-env", help="check an environment against the env contract (shapes, masks, "
                        "determinism, auto-reset, jit, render); exit 1 when a check fails")
    pc.add_argument("env", help="a registered name, or module:function returning your env object")
    pc.add_argument("params", nargs="*", help="env parameters key=value (passed to the function for module:function)")
    pc.add_argument("--steps", type=int, default=None, help="rollout steps (default: 2 x horizon + 3, at least 30)")
    pc.add_argument("--seed", type=int, default=0, help="key of the checked rollouts (default 0)")
    pc.set_defaults(fn=cmd_check_env)

    pp = sub.add_parser("plot", help="plot the curves of one or more run directories")
    pp.add_argument("runs", nargs="+")
    pp.add_argument("--metric", action="append", help="metric to plot (repeatable; default: the main ones)")
    pp.add_argument("--out", default=None, help="PNG path (default RUN/curves.png or RUN/comparison.png)")
    pp.set_defaults(fn=cmd_plot)

    pa = sub.add_parser("aggregate", help="IQM, mean, median, optimality gap with stratified bootstrap 95%% CIs, "
                        "probability of improvement and performance profiles over run directories "
                        "(Agarwal et al. 2021)")
    pa.add_argument("runs", nargs="+", help="run directories, or folders holding them (searched recursively)")
    pa.add_argument("--metric", action="append", help="metric (repeatable; default eval_return): each seed's value at "
                    "its last logged point")
    pa.add_argument("--out", default=None, help="folder for aggregate.json, marl_eval.json and the PNGs (default: the "
                    "one folder of runs given, else ./aggregate)")
    pa.add_argument("--reps", type=int, default=50_000,
                    help="bootstrap resamples for intervals (default 50000, rliable's)")
    pa.add_argument("--profile-reps", type=int, default=2_000,
                    help="bootstrap resamples for performance profiles (default 2000, rliable's)")
    pa.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    pa.add_argument("--gap-threshold", type=float, default=1.0,
                    help="gamma of the optimality gap, gamma - mean(min(score, gamma)) (default 1: normalised scores)")
    pa.set_defaults(fn=cmd_aggregate)
    return p


# commands that compile JAX programs: they use the persistent compilation cache (COOPMARL_COMPILATION_CACHE=0: off)
COMPILING = ("train", "resume", "eval", "render", "reproduce", "sweep", "solve", "check-env")


def main(argv=None) -> int:
    from coopmarl.errors import CoopmarlError, Diverged, Interrupted

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after --options; argparse leaves those for us.
    target = next((t for t in ("overrides", "options", "params") if hasattr(args, t)), None)
    for token in extra:
        if target is None or token.startswith("-"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, target).append(token)
    try:
        if args.command in COMPILING:
            from coopmarl.compilation_cache import enable_compilation_cache

            enable_compilation_cache()
        return args.fn(args)
    except Diverged as e:
        where = f" in {e.run_dir}" if getattr(e, "run_dir", None) else ""
        print(f"coopmarl: stopped: {e}; kept the last finite state (step {e.result.state_step}) as the newest "
              f"checkpoint{where}", file=sys.stderr)
        return 3
    except Interrupted as e:
        run_dir = getattr(e, "run_dir", None)
        if run_dir is None:
            print(f"coopmarl: {e}", file=sys.stderr)
        else:
            print(f"coopmarl: {e}: saved a checkpoint; continue with `coopmarl resume {run_dir}`", file=sys.stderr)
        return 130
    except (CoopmarlError, FileNotFoundError) as e:
        print(f"coopmarl: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional extra is missing: our bridges say which one to install
        if "pip install" not in str(e):
            raise
        print(f"coopmarl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coopmarl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
