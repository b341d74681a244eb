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
from coopmarl.algos.base import get_algo
from coopmarl.config import config_fields
from coopmarl.envs.registry import make
from coopmarl.experiments import Cell, Report, choose, markdown_table, register_experiment
from coopmarl.experiments.tables import estimate, improvement, iqm_ci, mean_sd, plot_cells, win_rate

SCALE = {"scale": ("cpu", "cpu (default, ≤ 30 min on 2 cores) or paper (the papers' step counts; for a GPU)")}


def _greedy_metric(run) -> str:
    """The greedy policy's return: `greedy_return` where the runner evaluates a tabular policy exactly
    (policy-gradient learners), else `eval_return` (value-based learners' rollouts of their argmax policy)."""
    return "greedy_return" if "greedy_return" in run.result.metrics else "eval_return"


def _scores(run, metric: str | None = None, digits: int = 2) -> tuple[np.ndarray, list[str]]:
    """(final values per seed, [IQM [CI], mean ± sd]) of a cell's greedy return (or `metric`)."""
    metric = metric or _greedy_metric(run)
    final = run.final(metric)
    est = estimate(final, run.label, run.cell.env, metric)
    cols = [iqm_ci(est, digits), mean_sd(est, digits)]
    if run.stopped:
        cols[0] += f" ({run.stopped})"
    return final, cols


def _steps(opts, by_scale: dict[str, int]) -> int:
    """The run length: the `steps` option, or the scale's (`by_scale`: scale -> steps; another scale is refused)."""
    if opts["scale"] not in by_scale:
        from coopmarl.errors import ConfigError

        names = [repr(scale) for scale in by_scale]
        raise ConfigError(f"scale must be {', '.join(names[:-1])} or {names[-1]}, got {opts['scale']!r}")
    return opts["steps"] or by_scale[opts["scale"]]


# ---- maosql-didactic (MAOSQL Figs 1–3) ---------------------------------------------------------------

DIDACTIC = ("tensor", "ro-matrix", "three-state")
DIDACTIC_STEPS = {"cpu": 20_000, "paper": 200_000}  # env steps per run at each scale
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
    cells=lambda opts: [
        Cell(f"{game}/{algo}", algo, game, {**DIDACTIC_OVERRIDES.get(algo, {}), "total_steps": _steps(opts, DIDACTIC_STEPS),
                                            "log_points": 20}, opts["seeds"])
        for game in choose(opts["games"], DIDACTIC, "game") for algo in choose(opts["algos"], BASELINES, "algorithm")],
    metrics=("eval_return", "greedy_return"),
)
def maosql_didactic(runs, opts: dict) -> Report:
    rows, plots = [], []
    for game, group in runs.by_group().items():
        optimum = float(exact.solve(make(game)).optimal_return)
        for run in group:
            final, cols = _scores(run)
            at_opt = np.isclose(final, optimum, atol=1e-3)
            rows.append([game, run.label, *cols, f"{at_opt.sum()}/{len(final)}", optimum])
        plots.append(plot_cells(group, runs.out / f"{game}.png", ["eval_return", "greedy_return", "train_return"],
                                f"{game} (horizon 10)", {"eval_return": optimum, "greedy_return": optimum}))
    steps = _steps(opts, DIDACTIC_STEPS)
    notes = [
        f"{steps:,} env steps per run, {opts['seeds']} seeds; greedy (decentralised argmax) return over the 10-step "
        "episode; 'at optimum' = seeds whose greedy return equals the exact optimum (coopmarl.exact).",
        "MAOSQL reports curves only (Figs 1–3): MAOSDQN reaches the optimum in all three games, QMIX does not; "
        "the paper gives no step counts in its text.",
    ]
    return Report("MAOSQL didactic games: MAOSDQN vs baselines", markdown_table(
        ["game", "algorithm", "greedy return, IQM [95% CI]", "mean ± sd", "seeds at optimum", "optimum"], rows),
        notes, plots)


# ---- maosql-lbf (MAOSQL Table 6) ---------------------------------------------------------------------

LBF_TASKS = ("lbf:5x5-2p-1f-coop", "lbf:8x8-2p-2f-coop", "lbf:10x10-3p-5f", "lbf:10x10-3p-1f-pen",
             "lbf:12x12-6p-1f-pen")
LBF_STEPS = {"cpu": 100_000, "paper": 2_000_000}  # env steps per run at each scale
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
    cells=lambda opts: [
        Cell(f"{task.replace(':', '_')}/{algo}", algo, task, {**LBF_OVERRIDES.get(algo, {}), "log_points": 20,
                                                             "total_steps": _steps(opts, LBF_STEPS)},
             opts["seeds"])
        for task in choose(opts["tasks"], LBF_TASKS, "LBF task") for algo in choose(opts["algos"], BASELINES, "algorithm")],
)
def maosql_lbf(runs, opts: dict) -> Report:
    rows, plots = [], []
    for task, group in runs.by_group().items():
        for run in group:
            rows.append([task, run.label, *_scores(run, digits=3)[1], TABLE6.get(task, {}).get(run.label, "")])
        plots.append(plot_cells(group, runs.out / f"{task.replace(':', '_')}.png", ["eval_return", "train_return"],
                                task))
    steps = _steps(opts, LBF_STEPS)
    notes = [f"{steps:,} env steps per run (the paper trains EPyMARL's budget, millions of steps), {opts['seeds']} "
             "seeds; MAOSDQN with the paper's LBF setting α=20, β=1, ε=0.5; -pen tasks use penalty 0.1 (the paper "
             "does not state its value)."]
    return Report("MAOSQL Table 6: LBF", markdown_table(
        ["task", "algorithm", "greedy return (ours), IQM [95% CI]", "mean ± sd", "paper (Table 6, mean)"], rows),
        notes, plots)


# ---- ReMIX presets -----------------------------------------------------------------------------------

# pymarl2's tuned QMIX/WQMIX, as the ReMIX paper uses them (Table 2 for ReMIX itself), on pymarl2's core: whole
# episodes replayed from a zero GRU state (`replay=episodes`; pymarl2 `episode_runner`/`parallel_runner`), 8 envs
# and a gradient step per 8 episodes (pymarl2 `batch_size_run: 8`; the core's n_envs 8, one update per iteration),
# the target copied every 200 episodes (`target_update_interval: 200`), each agent's previous action in its input
# (`obs_last_action: True`), raw rewards (pymarl2 has no reward standardisation; REFERENCE.md "pymarl2 / WQMIX on
# predator-prey"); the central Q* has WQMIX's 3 layers and CW-QMIX values û with the target central network (the
# algorithms' defaults `central_layers`, `cw_greedy_value`); ReMIX uses Thm 1's Boltzmann π (`remix_policy`)
PYMARL2 = {"batch_size": 128, "buffer_size": 10_000, "td_lambda": 0.6, "lr": 1e-3, "epsilon_start": 0.995,
           "epsilon_anneal_steps": 100_000, "standardise_rewards": False, "last_action": True, "replay": "episodes",
           "n_envs": 8, "target_update_episodes": 200, "agent": "gru"}
# pymarl2 `qmix_predator_prey.yaml` (stag hunt): no agent id in the observation (`obs_agent_id: False`)
PYMARL2_PP = {"agent_id": False}
# the scales of the ReMIX presets: "cpu" trades the faithful core for speed (measured: ~80 s per 50k-step, 2-seed
# run on the 2-core CPU): MLP agents, windows of 25 steps in 16 envs, batch 16 windows, buffer 2,000 windows, ε over
# 30k steps. "long" keeps pymarl2's core with the WQMIX paper's batch of 32 episodes and a replay of 1,000 episodes
# (REFERENCE.md "pymarl2 / WQMIX on predator-prey": pymarl's batch 32; pymarl2's buffers 1,000–10,000 episodes); one
# predator-prey episode is ~37 KB as replay stores it (each observation once, the 0/1 grid as bits; ~1.5 MB as float32
# observation pairs), so Table 2's 10,000 take ~0.38 GB per seed. "paper" is Table 2.
REMIX_SCALES = {
    "cpu": {"rollout_length": 25, "batch_size": 16, "buffer_size": 2000, "n_envs": 16,
            "epsilon_anneal_steps": 30_000, "agent": "mlp", "replay": "windows"},
    "long": {"batch_size": 32, "buffer_size": 1000},
    "paper": {},
}
REMIX_STEPS = {"cpu": 50_000, "long": 500_000, "paper": 2_000_000}
REMIX_SCALE = {"scale": ("cpu", "cpu (default, ≤ 30 min on 2 cores: MLP agents on windows), long (pymarl2's core "
                         "with batches of 32 episodes, 500k steps: hours on a CPU) or paper (ReMIX Table 2, 2M steps; "
                         "for a GPU)")}
# ReMIX's on-policy term (Alg. 1) draws extra windows from a small buffer of the most recent ones. Every
# algorithm trains on the same number of windows per gradient step: ReMIX's batch_size + recent_batch_size equals
# the baselines' batch_size (128 = 96 + 32; long 32 = 24 + 8; cpu 16 = 12 + 4), so the comparison is not one of
# batch sizes (and of compute per step); a quarter of ReMIX's batch is recent windows at every scale. Table 2's
# "batch 128" is read as the gradient step's whole batch (the paper does not say whether the recent samples come on
# top). The recent buffer holds the last 8 iterations' windows (2 at cpu scale: 32 of 16 envs' windows).
REMIX_RECENT = {"paper": {"recent_buffer_size": 64, "recent_batch_size": 32},
                "long": {"recent_buffer_size": 64, "recent_batch_size": 8},
                "cpu": {"recent_buffer_size": 32, "recent_batch_size": 4}}


REMIX_BASELINES = ("remix", "qmix", "ow-qmix", "cw-qmix", "qplex")  # ReMIX Figs. 1-2: the value-based ones
# ... and its actor-critic baselines (ReMIX §5, App. D.2), each with its authors' settings (`_remix_overrides`)
REMIX_ACTOR_CRITICS = ("vdac-mix", "fop", "dop")
REMIX_ALGOS = REMIX_BASELINES + REMIX_ACTOR_CRITICS
REMIX_TERMS = ("bellman_error", "underestimation", "mixer_gradient", "on_policy")  # Thm 1's four terms


def _remix_overrides(algo: str, scale: str, extra: dict | None = None, env: str = "") -> dict:
    """A cell's settings: pymarl2's core (`PYMARL2`) and the scale's for the value-based algorithms; an
    actor-critic baseline keeps its own authors' settings, taking only the scale's collection and replay sizes
    its config has (at cpu scale: the same envs, windows, batch and buffer as the others)."""
    extra = extra or {}
    if algo in REMIX_ACTOR_CRITICS:
        keys = config_fields(get_algo(algo).config_cls)
        return {**{k: v for k, v in REMIX_SCALES[scale].items() if k in keys}, **extra}
    o = dict(PYMARL2)
    if env.startswith("predator-prey"):
        o.update(PYMARL2_PP)
    o.update(REMIX_SCALES[scale])
    if algo == "remix" and extra.get("remix_on_policy", True):  # (without the on-policy term: the whole batch)
        recent = REMIX_RECENT[scale]
        o.update(recent, batch_size=o["batch_size"] - recent["recent_batch_size"])
    return {**o, **extra}


def _pp_cells(opts: dict, settings: list[tuple[str, str, dict, str]], steps_by_scale=REMIX_STEPS) -> list[Cell]:
    """The cells of a ReMIX preset: (env, algo, extra overrides, label) each."""
    steps, scale = _steps(opts, steps_by_scale), opts["scale"]
    return [Cell(f"{env.replace(':', '_')}/{label}", algo, env, {**_remix_overrides(algo, scale, extra, env),
                                                                 "total_steps": steps, "log_points": 20},
                 opts["seeds"], label=label) for env, algo, extra, label in settings]


SCALE_NOTES = {
    "cpu": "cpu scale: MLP agents on windows of 25 steps in 16 envs, batch 16 windows, buffer 2,000 windows, ε over "
           "30k steps — not pymarl2's core; the paper trains ~2M steps with GRU agents on whole episodes, batches of "
           "128 episodes",
    "long": "long scale: pymarl2's core (GRU agents replaying whole episodes from a zero state, 8 envs, a gradient "
            "step per 8 episodes, target every 200 episodes, ε over 100k steps) with the WQMIX paper's batch of 32 "
            "episodes and a replay of 1,000 episodes — the paper: 2M steps, batches of 128, replay 10,000",
    "paper": "paper scale: pymarl2's core with ReMIX Table 2's batch 128 and replay 10,000",
}


def _pp_report(runs, opts: dict, title: str) -> Report:
    rows, plots = [], []
    for env, group in runs.by_group().items():
        for run in group:
            rows.append([env, run.label, *_scores(run)[1], iqm_ci(estimate(run.final("train_return"), run.label, env,
                                                                            "train_return"))])
        plots.append(plot_cells(group, runs.out / f"{env.replace(':', '_')}.png", ["eval_return", "train_return"], env))
    steps, scale = _steps(opts, REMIX_STEPS), opts["scale"]
    notes = [f"{steps:,} env steps per run, {opts['seeds']} seeds ({SCALE_NOTES[scale]}). Every algorithm trains on "
             "the same number of windows per gradient step (ReMIX: a quarter of them from its recent-windows buffer), "
             "on raw rewards, with each agent's previous action in its input (pymarl2 `obs_last_action`) and, on "
             "predator-prey, no agent id."]
    if any(run.cell.algo in REMIX_ACTOR_CRITICS for run in runs):
        notes.append("VDAC-mix, FOP and DOP keep their authors' settings (`coopmarl list algos NAME`), with the scale's "
                     "envs, windows, batch and replay where they have those keys.")
    return Report(title, markdown_table(["env", "algorithm", "greedy return, IQM [95% CI]", "mean ± sd",
                                         "train return, IQM [95% CI]"], rows), notes, plots)


def _punishments(opts: dict) -> list[float]:
    from coopmarl.errors import ConfigError

    try:
        return [float(x) for x in opts["punishments"].split(",")]
    except ValueError:
        raise ConfigError(f"punishments must be comma-separated numbers, got {opts['punishments']!r}") from None


def _weights(opts: dict) -> list[float]:
    from coopmarl.errors import ConfigError

    try:
        weights = [float(w) for w in opts["weights"].split(",")]
    except ValueError:
        weights = []
    if not weights or not all(0 < w <= 1 for w in weights):
        raise ConfigError(f"weights must be comma-separated numbers in (0, 1], got {opts['weights']!r}")
    return weights


def _ablation_settings(opts: dict) -> list[tuple]:
    env = opts["env"]
    return [(env, "remix", {}, "remix")] + [
        (env, "remix", {f"remix_{term}": False}, f"remix w/o {term.replace('_', ' ')}")
        for term in choose(opts["terms"], REMIX_TERMS, "term")]


@register_experiment(
    "remix-predator-prey",
    "ReMIX Fig. 1: ReMIX vs QMIX, OW-QMIX, CW-QMIX, QPLEX (and VDAC, FOP, DOP) on predator-prey with punishment "
    "p ∈ {0, −0.5, −1.5, −2}",
    {**REMIX_SCALE, "seeds": (2, "seeds per run"), "steps": (0, "env steps per run (0 = the scale's)"),
     "punishments": ("0,-0.5,-1.5,-2", "comma-separated punishments p"),
     "algos": (",".join(REMIX_BASELINES), f"comma-separated subset of {', '.join(REMIX_ALGOS)}, or all (Fig. 1's "
                                          "seven, with both WQMIX variants)")},
    cells=lambda opts: _pp_cells(opts, [(f"predator-prey:p{p:g}", algo, {}, algo) for p in _punishments(opts)
                                        for algo in choose(opts["algos"], REMIX_ALGOS, "algorithm")]),
)
def remix_predator_prey(runs, opts: dict) -> Report:
    return _pp_report(runs, opts, "ReMIX Fig. 1: predator-prey")


@register_experiment(
    "remix-ablation",
    "ReMIX Fig. 5: ReMIX with each term of Thm 1 switched off, on predator-prey p = −2, with the weight "
    "histogram over training (Fig. 3's heat map)",
    {**REMIX_SCALE, "seeds": (2, "seeds per run"), "steps": (0, "env steps per run (0 = the scale's)"),
     "env": ("predator-prey:p-2", "environment (e.g. an SMAX stand-in such as smax:3s5z_vs_3s6z)"),
     "terms": ("all", f"comma-separated terms to switch off one at a time ({', '.join(REMIX_TERMS)}), or all")},
    cells=lambda opts: _pp_cells(opts, _ablation_settings(opts)),
)
def remix_ablation(runs, opts: dict) -> Report:
    report = _pp_report(runs, opts, "ReMIX Fig. 5: ablation")
    report.plots.append(_weight_heatmap(next(iter(runs)).result, runs.out / "weight_heatmap.png"))
    return report


@register_experiment(
    "remix-weight-range",
    "ReMIX Fig. 4: the weight range w_min ∈ {0.1, 0.5, 0.8} on predator-prey p = −2",
    {**REMIX_SCALE, "seeds": (2, "seeds per run"), "steps": (0, "env steps per run (0 = the scale's)"),
     "env": ("predator-prey:p-2", "environment"),
     "weights": ("0.1,0.5,0.8", "comma-separated w_min values in (0, 1]")},
    cells=lambda opts: _pp_cells(opts, [(opts["env"], "remix", {"weight_min": w}, f"remix w_min={w:g}")
                                        for w in _weights(opts)]),
)
def remix_weight_range(runs, opts: dict) -> Report:
    return _pp_report(runs, opts, "ReMIX Fig. 4: weight range")


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


# ---- SMAX (the SMAC stand-in; ReMIX Fig. 2) ---------------------------------------------------------------

# ReMIX Fig. 2's SMAC maps (§5.2 names five of its six: one easy, two hard, three super hard) -> SMAX heuristic-enemy
# maps. SMAX has no colossi, medivacs or marauders on these maps and no terrain: 1c3s5z runs 3s5z (its stalkers and
# zealots without the colossus), MMM2 runs 3s5z_vs_3s6z (super hard, heterogeneous, outnumbered; as dpo-smax does);
# 3s_vs_5z and 6h_vs_8z exist as such. corridor (6 zealots vs 24 zerglings in a corridor) has no SMAX counterpart,
# nor has the unnamed second hard map.
REMIX_SMAX_MAPS = {"1c3s5z": "3s5z", "3s_vs_5z": "3s_vs_5z", "6h_vs_8z": "6h_vs_8z", "MMM2": "3s5z_vs_3s6z"}
REMIX_SMAX_STEPS = {"cpu": 40_000, "long": 500_000, "paper": 2_000_000}


@register_experiment(
    "remix-smax",
    "ReMIX Fig. 2: ReMIX vs QMIX, OW/CW-QMIX, QPLEX, VDAC, FOP and DOP on SMAX stand-ins of 1c3s5z, 3s_vs_5z, "
    "6h_vs_8z and MMM2: win rate and return",
    {**REMIX_SCALE, "seeds": (2, "seeds per run; the paper uses 4"),
     "steps": (0, "env steps per run (0 = the scale's: " + ", ".join(f"{k} {v:,}" for k, v in REMIX_SMAX_STEPS.items())
               + ")"),
     "maps": ("3s_vs_5z", f"comma-separated SMAC map names of Fig. 2 ({', '.join(REMIX_SMAX_MAPS)}) or all"),
     "algos": ("all", f"comma-separated subset of {', '.join(REMIX_ALGOS)}, or all")},
    cells=lambda opts: _pp_cells(opts, [(f"smax:{REMIX_SMAX_MAPS[m]}", algo, {}, algo)
                                        for m in choose(opts["maps"], REMIX_SMAX_MAPS, "map")
                                        for algo in choose(opts["algos"], REMIX_ALGOS, "algorithm")],
                                 REMIX_SMAX_STEPS),
)
def remix_smax(runs, opts: dict) -> Report:
    rows, plots, notes = [], [], []
    for env, group in runs.by_group().items():
        wins = {run.label: win_rate(run) for run in group}
        for run in group:
            rows.append([env, run.label, iqm_ci(estimate(wins[run.label], run.label, env, "win_rate")),
                         _scores(run)[1][0], iqm_ci(estimate(run.final("train_return"), run.label, env,
                                                             "train_return"))])
        plots.append(plot_cells(group, runs.out / f"{env.replace(':', '_')}.png", ["eval_return", "train_return"], env))
        if "remix" not in wins:
            continue
        greedy = {run.label: _scores(run)[0] for run in group}
        any_win = any(np.any(w > 0) for w in wins.values())
        for other in (label for label in wins if label != "remix"):
            text = f"greedy return {improvement(greedy['remix'], greedy[other], 'ReMIX', other, env, 'eval_return')}"
            if any_win:  # (with no win anywhere, every P(win rate) is 0.5 and says nothing)
                text += f"; win rate {improvement(wins['remix'], wins[other], 'ReMIX', other, env, 'win_rate')}"
            notes.append(f"{env}: {text}.")
    steps, scale = _steps(opts, REMIX_SMAX_STEPS), opts["scale"]
    notes += [
        "SMAX (JaxMARL's JAX SMAC with heuristic enemies) stands in for SMAC (StarCraft II, difficulty 7 in the paper): "
        "1c3s5z runs 3s5z (no colossi in SMAX), MMM2 runs 3s5z_vs_3s6z (no medivacs or marauders); corridor has no SMAX "
        "counterpart. Rewards are SMAX's, not SMAC's.",
        f"{steps:,} env steps per run, {opts['seeds']} seeds ({SCALE_NOTES[scale]}). VDAC, FOP and DOP keep their "
        "authors' settings, with the scale's envs, windows, batch and buffer where they have those keys.",
        "win rate = fraction of 32 greedy episodes per seed that end with every enemy dead and an ally alive.",
        "The paper (Fig. 2, §5.2): ReMIX has the highest win rate on 3s_vs_5z, 6h_vs_8z and MMM2; the value-based "
        "methods (ReMIX, QMIX, WQMIX, QPLEX) beat VDAC, DOP and FOP on the super hard maps.",
    ]
    return Report("ReMIX Fig. 2: SMAX stand-ins for SMAC", markdown_table(
        ["map", "algorithm", "win rate (greedy), IQM [95% CI]", "greedy return, IQM [95% CI]",
         "train return, IQM [95% CI]"], rows), notes, plots)
