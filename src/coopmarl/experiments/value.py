"""Value-based presets: maosql-didactic, maosql-lbf (MAOSQL Figs 1–3, Table 6), remix-predator-prey,
remix-ablation and remix-weight-range (ReMIX Figs 1, 3, 4, 5).

Each preset has a `scale`: "cpu" (default; finishes in ≤ 30 min on a 2-core CPU, steps stated in the
table) or "paper" (the papers' step counts, for a GPU). Policy-gradient baselines (MAPPO, MAA2C) join
when they are registered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coopmarl import exact
from coopmarl.envs.registry import make
from coopmarl.experiments import Report, choose, markdown_table, mean_std, register_experiment
from coopmarl.experiments.tabular import train_run

SCALE = {"scale": ("cpu", "cpu (default, ≤ 30 min on 2 cores) or paper (the papers' step counts; for a GPU)")}


def _final(result, metric="greedy"):
    """Final value per seed. "greedy": the greedy policy's return — `greedy_return` where the runner
    evaluates a tabular policy exactly (policy-gradient learners), else `eval_return` (value-based
    learners' rollouts of their argmax policy)."""
    if metric == "greedy":
        metric = "greedy_return" if "greedy_return" in result.metrics else "eval_return"
    return np.asarray(result.metrics[metric][-1], dtype=float)


def _check_scale(opts):
    if opts["scale"] not in ("cpu", "paper"):
        from coopmarl.errors import ConfigError

        raise ConfigError(f"scale must be 'cpu' or 'paper', got {opts['scale']!r}")


# ---- maosql-didactic (MAOSQL Figs 1–3) ---------------------------------------------------------------

DIDACTIC = ("tensor", "ro-matrix", "three-state")
BASELINES = ("maosdqn", "qmix", "mappo", "maa2c")  # MAOSDQN and the baselines MAOSQL compares it with
# MAOSQL App. C: α=50, β=10, ε=0.05 on the tensor and matrix games (the MAOSDQN defaults)
DIDACTIC_OVERRIDES = {"maosdqn": {}, "qmix": {"epsilon_anneal_steps": 5000}, "mappo": {}, "maa2c": {}}


@register_experiment(
    "maosql-didactic",
    "MAOSQL Figs 1–3: MAOSDQN vs QMIX (+ MAPPO, MAA2C) on the tensor game, RO 3x3 and the 3-state game "
    "(horizon 10): greedy return vs the exact optimum",
    {**SCALE, "seeds": (8, "seeds per algorithm and game"), "steps": (0, "env steps per run (0 = the scale's)"),
     "games": ("all", f"comma-separated subset of {', '.join(DIDACTIC)}, or all"),
     "algos": ("all", f"comma-separated subset of {', '.join(BASELINES)}, or all")},
)
def maosql_didactic(out_dir: Path, opts: dict) -> Report:
    from coopmarl.plots import plot_curves

    _check_scale(opts)
    steps = opts["steps"] or (20_000 if opts["scale"] == "cpu" else 200_000)
    games, algos = choose(opts["games"], DIDACTIC, "game"), choose(opts["algos"], BASELINES, "algorithm")
    rows, plots = [], []
    for game in games:
        optimum = float(exact.solve(make(game)).optimal_return)
        results = []
        for algo in algos:
            result, _ = train_run(out_dir, algo, game, {**DIDACTIC_OVERRIDES.get(algo, {}), "total_steps": steps,
                                                         "log_points": 20}, opts["seeds"], f"{game}/{algo}",
                                  progress=False)
            results.append(result)
            final = _final(result)
            at_opt = np.isclose(final, optimum, atol=1e-3)
            rows.append([game, algo, mean_std(final), f"{at_opt.sum()}/{len(final)}",
                         optimum])
        path = f"{game}.png"
        plot_curves(results, out_dir / path, metrics=["eval_return", "greedy_return", "train_return"],
                    hlines={"eval_return": optimum, "greedy_return": optimum},
                    title=f"{game} (horizon 10)")
        plots.append(path)
    notes = [
        f"{steps:,} env steps per run, {opts['seeds']} seeds; greedy (decentralised argmax) return over the 10-step "
        "episode; 'at optimum' = seeds whose greedy return equals the exact optimum (coopmarl.exact).",
        "MAOSQL reports curves only (Figs 1–3): MAOSDQN reaches the optimum in all three games, QMIX does not; "
        "the paper gives no step counts in its text.",
    ]
    return Report("MAOSQL didactic games: MAOSDQN vs baselines", markdown_table(
        ["game", "algorithm", "greedy return (mean ± std)", "seeds at optimum", "optimum"], rows), notes, plots)


# ---- maosql-lbf (MAOSQL Table 6) ---------------------------------------------------------------------

LBF_TASKS = ("lbf:5x5-2p-1f-coop", "lbf:8x8-2p-2f-coop", "lbf:10x10-3p-5f", "lbf:10x10-3p-1f-pen",
             "lbf:12x12-6p-1f-pen")
TABLE6 = {  # MAOSQL Table 6: MAA2C, MAPPO, QMIX, MAOSDQN test return means
    "lbf:5x5-2p-1f-coop": {"maa2c": 0.738, "mappo": 0.840, "qmix": 1.000, "maosdqn": 1.000},
    "lbf:8x8-2p-2f-coop": {"maa2c": 0.919, "mappo": 0.837, "qmix": 1.000, "maosdqn": 1.000},
    "lbf:10x10-3p-5f": {"maa2c": 0.985, "mappo": 0.945, "qmix": 0.407, "maosdqn": 0.168},
    "lbf:10x10-3p-1f-pen": {"maa2c": 0.535, "mappo": 0.639, "qmix": 0.518, "maosdqn": 0.492},
    "lbf:12x12-6p-1f-pen": {"maa2c": 0.780, "mappo": 0.726, "qmix": 0.020, "maosdqn": 0.331},
}
LBF_OVERRIDES = {"maosdqn": {"entropy_alpha": 20.0, "optimism_beta": 1.0, "zeta_epsilon": 0.5}}  # App. C (LBF)


@register_experiment(
    "maosql-lbf",
    "MAOSQL Table 6: MAOSDQN vs QMIX (+ MAPPO, MAA2C) on five LBF tasks, beside the paper's numbers",
    {**SCALE, "seeds": (2, "seeds per algorithm and task"), "steps": (0, "env steps per run (0 = the scale's)"),
     "tasks": ("all", "comma-separated LBF task names, or all"),
     "algos": ("all", f"comma-separated subset of {', '.join(BASELINES)}, or all")},
)
def maosql_lbf(out_dir: Path, opts: dict) -> Report:
    from coopmarl.plots import plot_curves

    _check_scale(opts)
    steps = opts["steps"] or (100_000 if opts["scale"] == "cpu" else 2_000_000)
    tasks, algos = choose(opts["tasks"], LBF_TASKS, "LBF task"), choose(opts["algos"], BASELINES, "algorithm")
    rows, plots = [], []
    for task in tasks:
        results = []
        for algo in algos:
            result, _ = train_run(out_dir, algo, task, {**LBF_OVERRIDES.get(algo, {}), "total_steps": steps,
                                                         "log_points": 20}, opts["seeds"],
                                  f"{task.replace(':', '_')}/{algo}", progress=False)
            results.append(result)
            final = _final(result)
            rows.append([task, algo, mean_std(final, 3),
                         TABLE6.get(task, {}).get(algo, "")])
        path = f"{task.replace(':', '_')}.png"
        plot_curves(results, out_dir / path, metrics=["eval_return", "train_return"], title=task)
        plots.append(path)
    notes = [f"{steps:,} env steps per run (the paper trains EPyMARL's budget, millions of steps), {opts['seeds']} "
             "seeds; MAOSDQN with the paper's LBF setting α=20, β=1, ε=0.5; -pen tasks use penalty 0.1 (the paper "
             "does not state its value)."]
    return Report("MAOSQL Table 6: LBF", markdown_table(
        ["task", "algorithm", "greedy return (ours, mean ± std)", "paper (Table 6)"], rows), notes, plots)


# ---- ReMIX presets -----------------------------------------------------------------------------------

# pymarl2's tuned QMIX/WQMIX, as the ReMIX paper uses them (Table 2 for ReMIX itself)
PYMARL2 = {"batch_size": 128, "buffer_size": 10_000, "td_lambda": 0.6, "lr": 1e-3, "epsilon_start": 0.995,
           "epsilon_anneal_steps": 100_000}
# CPU scale (measured: ~80 s per 50k-step, 2-seed run on the 2-core CPU): MLP agents, windows of 25 steps,
# 16 envs, batch 16 windows, buffer 2,000 windows, ε over 30k steps
CPU_PP = {"rollout_length": 25, "batch_size": 16, "buffer_size": 2000, "n_envs": 16, "epsilon_anneal_steps": 30_000,
          "agent": "mlp"}


REMIX_BASELINES = ("remix", "qmix", "ow-qmix", "cw-qmix", "qplex")  # ReMIX Fig. 1
REMIX_TERMS = ("bellman_error", "underestimation", "mixer_gradient", "on_policy")  # Thm 1's four terms


def _remix_overrides(algo: str, scale: str, extra: dict | None = None) -> dict:
    o = dict(PYMARL2)
    if algo == "remix":
        o.update(recent_buffer_size=64, recent_batch_size=32)
    if scale == "cpu":
        o.update(CPU_PP)
        if algo == "remix":
            o.update(recent_buffer_size=32, recent_batch_size=8)
    return {**o, **(extra or {})}


def _pp_runs(out_dir, opts, settings, title, header_extra):
    from coopmarl.plots import plot_curves

    _check_scale(opts)
    steps = opts["steps"] or (50_000 if opts["scale"] == "cpu" else 2_000_000)
    rows, plots, groups = [], [], {}
    for env, algo, extra, label in settings:
        result, _ = train_run(out_dir, algo, env, {**_remix_overrides(algo, opts["scale"], extra),
                                                    "total_steps": steps, "log_points": 20}, opts["seeds"],
                              f"{env.replace(':', '_')}/{label}", progress=False)
        groups.setdefault(env, []).append((label, result))
        final = _final(result)
        rows.append([env, label, mean_std(final), mean_std(_final(result, "train_return"))])
    for env, runs in groups.items():
        path = f"{env.replace(':', '_')}.png"
        plot_curves([r for _, r in runs], out_dir / path, metrics=["eval_return", "train_return"],
                    labels=[lbl for lbl, _ in runs], title=env)
        plots.append(path)
    notes = [f"{steps:,} env steps per run, {opts['seeds']} seeds ({opts['scale']} scale"
             + (": MLP agents, windows of 25 steps in 16 envs, batch 16 windows, buffer 2,000 windows, ε over 30k "
                "steps — the paper trains ~2M steps with GRU agents and batches of 128 episodes" if opts["scale"] == "cpu"
                else ": ReMIX Table 2 / pymarl2") + ")."]
    return Report(title, markdown_table(["env", "algorithm", "greedy return (mean ± std)", "train return"] +
                                        header_extra, rows), notes, plots), groups


@register_experiment(
    "remix-predator-prey",
    "ReMIX Fig. 1: ReMIX vs QMIX, OW-QMIX, CW-QMIX, QPLEX on predator-prey with punishment p ∈ {0, −0.5, −1.5, −2}",
    {**SCALE, "seeds": (2, "seeds per run"), "steps": (0, "env steps per run (0 = the scale's)"),
     "punishments": ("0,-0.5,-1.5,-2", "comma-separated punishments p"),
     "algos": ("all", f"comma-separated subset of {', '.join(REMIX_BASELINES)}, or all")},
)
def remix_predator_prey(out_dir: Path, opts: dict) -> Report:
    from coopmarl.errors import ConfigError

    algos = choose(opts["algos"], REMIX_BASELINES, "algorithm")
    try:
        punishments = [float(x) for x in opts["punishments"].split(",")]
    except ValueError:
        raise ConfigError(f"punishments must be comma-separated numbers, got {opts['punishments']!r}") from None
    settings = []
    for p in punishments:
        env = f"predator-prey:p{p:g}"
        for algo in algos:
            settings.append((env, algo, {}, algo))
    return _pp_runs(out_dir, opts, settings, "ReMIX Fig. 1: predator-prey", [])[0]


@register_experiment(
    "remix-ablation",
    "ReMIX Fig. 5: ReMIX with each term of Thm 1 switched off, on predator-prey p = −2, with the weight "
    "histogram over training (Fig. 3's heat map)",
    {**SCALE, "seeds": (2, "seeds per run"), "steps": (0, "env steps per run (0 = the scale's)"),
     "env": ("predator-prey:p-2", "environment (e.g. an SMAX stand-in such as smax:3s5z_vs_3s6z)"),
     "terms": ("all", f"comma-separated terms to switch off one at a time ({', '.join(REMIX_TERMS)}), or all")},
)
def remix_ablation(out_dir: Path, opts: dict) -> Report:
    env = opts["env"]
    settings = [(env, "remix", {}, "remix")]
    for term in choose(opts["terms"], REMIX_TERMS, "term"):
        settings.append((env, "remix", {f"remix_{term}": False}, f"remix w/o {term.replace('_', ' ')}"))
    report, groups = _pp_runs(out_dir, opts, settings, "ReMIX Fig. 5: ablation", [])
    report.plots.append(_weight_heatmap(groups[env][0][1], out_dir / "weight_heatmap.png"))
    return report


@register_experiment(
    "remix-weight-range",
    "ReMIX Fig. 4: the weight range w_min ∈ {0.1, 0.5, 0.8} on predator-prey p = −2",
    {**SCALE, "seeds": (2, "seeds per run"), "steps": (0, "env steps per run (0 = the scale's)"),
     "env": ("predator-prey:p-2", "environment"),
     "weights": ("0.1,0.5,0.8", "comma-separated w_min values in (0, 1]")},
)
def remix_weight_range(out_dir: Path, opts: dict) -> Report:
    from coopmarl.errors import ConfigError

    env = opts["env"]
    try:
        weights = [float(w) for w in opts["weights"].split(",")]
    except ValueError:
        weights = []
    if not weights or not all(0 < w <= 1 for w in weights):
        raise ConfigError(f"weights must be comma-separated numbers in (0, 1], got {opts['weights']!r}")
    settings = [(env, "remix", {"weight_min": w}, f"remix w_min={w:g}") for w in weights]
    return _pp_runs(out_dir, opts, settings, "ReMIX Fig. 4: weight range", [])[0]


def _weight_heatmap(result, path: Path) -> str:
    """ReMIX Fig. 3-style heat map: the share of transitions in each weight bin over training."""
    import matplotlib.pyplot as plt

    from coopmarl.plots import save_figure

    hist = np.stack([np.nanmean(result.metrics[f"weight_hist_{i}"], 1) for i in range(10)])  # [bins, points]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    im = ax.imshow(hist, aspect="auto", origin="lower", extent=(result.steps[0], result.steps[-1], 0, 10))
    ax.set_yticks(np.arange(10) + 0.5, [f"{i / 10:.1f}" for i in range(10)])
    ax.set_ylabel("weight bin (fraction of [w_min, 1])")
    ax.set_xlabel("env steps")
    fig.colorbar(im, ax=ax, label="share of transitions")
    save_figure(fig, path)
    return path.name
