"""Policy-gradient presets: DPO's experiments (Su & Lu, "A Fully Decentralized Surrogate for Multi-Agent
Policy Optimization") — the random cooperative stochastic game (Figs 1a, 8), d_target (Fig. 1b), δ and ω
(Fig. 9), MPE spread / line / circle (Figs 2, 5), SMAC (Fig. 4; SMAX stand-ins) and multi-agent MuJoCo
(Fig. 3; MABrax stand-ins).

Every preset has a `scale`: "cpu" (default; finishes in ≤ 30 min on the shared 2-core CPU, steps and seeds
stated in the table notes) or "paper" (the paper's environment sizes and long runs, for a GPU). The paper
states its training lengths only on its figures' x-axes, which our text copy of it does not carry; the
"paper" step counts below are ours (MAPPO-code-base budgets), said so in each table.

All policy-gradient learners use DPO App. B's settings (the `ppo.py` defaults: per-agent 3x128 ReLU actor
and critic, Adam 5e-4, 15 epochs, 1 minibatch, β√ = β_KL = 0.01 at start, δ = 1.5, ω = 2, IPPO clip 0.2)
with the paper's d_target per environment (`kl_target`). IQL is the paper's reference baseline: per-agent
(unshared) MLP Q-networks of 128 units, lr 5e-4 (the paper's IQL is PyMARL's RNN agent; we use the MLP).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from coopmarl.algos.base import get_algo
from coopmarl.config import config_fields
from coopmarl.errors import ConfigError
from coopmarl.evaluation import evaluate_states
from coopmarl.experiments import Report, choose, markdown_table, register_experiment
from coopmarl.experiments import mean_std as _ms
from coopmarl.experiments.tabular import train_run

SCALE = {"scale": ("cpu", "cpu (default, ≤ 30 min on 2 cores) or paper (the paper's sizes and long runs; for a GPU)")}
PAPER_STEPS_NOTE = ("The paper gives its training lengths only on its figures' x-axes (not in our text copy of it); "
                    "the `scale=paper` step counts are our choice.")

# d_target per environment: DPO §4 and App. B
KL_TARGET = {"stochastic-game": 0.1, "mpe": 0.01, "mabrax": 0.001, "smax": 0.02}

# IQL as the paper runs it beside DPO: individual (unshared) parameters, 128 hidden units, lr 5e-4 (App. B);
# an MLP agent instead of PyMARL's RNN; no agent id (nothing is shared)
IQL = {"agent": "mlp", "hidden_sizes": 128, "share_parameters": False, "agent_id": False, "lr": 5e-4}

ALGO_LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo-kl": "IPPO-KL", "dpo-no-kl": "DPO w/o kl",
               "dpo-no-sqrt": "DPO w/o sqrt", "iql": "IQL"}


def _check(opts: dict, algos: str | None = None, allowed: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The options every preset shares; returns the chosen algorithms (from `allowed`) when given."""
    if opts["scale"] not in ("cpu", "paper"):
        raise ConfigError(f"scale must be 'cpu' or 'paper', got {opts['scale']!r}")
    if opts.get("seeds", 1) < 1:
        raise ConfigError(f"seeds must be >= 1, got {opts['seeds']}")
    if opts.get("beta_init", 1.0) <= 0:
        raise ConfigError(f"beta_init must be > 0, got {opts['beta_init']}")
    if opts.get("steps", 0) < 0:
        raise ConfigError(f"steps must be >= 0 (0 = the scale's), got {opts['steps']}")
    return choose(algos, allowed, "algorithm") if algos is not None else ()


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _algo_overrides(algo: str, family: str, steps: int, n_envs: int) -> dict:
    """The per-algorithm settings of one environment family (`KL_TARGET`'s keys); d_target only for the
    algorithms with a KL term (IPPO has no `kl_target` key)."""
    if algo == "iql":
        # ε annealed over half the run at most (PyMARL anneals over 50k steps)
        return {**IQL, "epsilon_anneal_steps": max(1, min(50_000, steps // 2))}
    keys = config_fields(get_algo(algo).config_cls)
    return {"n_envs": n_envs, **({"kl_target": KL_TARGET[family]} if "kl_target" in keys else {})}


BETA_INIT = {"beta_init": (0.01, "initial β√ and β_KL of DPO and its variants (paper App. B: 0.01; the authors' "
                                "code: 1.0)")}


def _beta_overrides(algo: str, beta: float) -> dict:
    """The initial KL coefficients at `beta`; a coefficient an ablation switches off stays 0."""
    return {"dpo": {"kl_coef_init": beta, "sqrt_kl_coef_init": beta}, "dpo-no-kl": {"sqrt_kl_coef_init": beta},
            "dpo-no-sqrt": {"kl_coef_init": beta}, "ippo-kl": {"kl_coef_init": beta}}.get(algo, {})


def _final(result, metric: str) -> np.ndarray:
    return np.asarray(result.metrics[metric][-1], dtype=float) if metric in result.metrics else np.full(1, np.nan)


def _compare(a: np.ndarray, b: np.ndarray, name_a: str = "DPO", name_b: str = "IPPO") -> str:
    """'DPO ≥ IPPO' or not, with the difference of the means and its standard error over seeds."""
    diff = float(np.mean(a) - np.mean(b))
    se = float(np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))) if min(len(a), len(b)) > 1 else np.nan
    verdict = f"{name_a} ≥ {name_b}" if diff >= 0 else f"{name_a} < {name_b}"
    return f"{verdict} (difference {diff:+.2f}, s.e. {se:.2f})"


def _plot(results, labels, path: Path, metrics, title, hlines=None):
    from coopmarl.plots import plot_curves

    plot_curves(results, path, metrics=metrics, labels=labels, hlines=hlines, title=title)
    return path.name


# ---- the random cooperative stochastic game (DPO §4.1, App. C) ---------------------------------------------

# the game: the authors' shipped instance on CPU, the paper's §4.1 instance at paper scale
SG_SIZE = {"cpu": (30, 3, 5), "paper": (100, 6, 5)}
SG_STEPS = {"cpu": 100_000, "paper": 1_000_000}
SG_ENVS = {"cpu": 16, "paper": 16}
SG_ALGOS = ("dpo", "ippo", "ippo-kl", "dpo-no-kl", "iql")
SG_OPTIONS = {
    **SCALE,
    "seeds": (3, "seeds per run (vmapped); the paper uses 5"),
    "steps": (0, "env steps per seed (0 = the scale's: cpu 100k, paper 1M)"),
    "n_states": (0, "states (0 = the scale's: cpu 30, paper 100)"),
    "n_agents": (0, "agents (0 = the scale's: cpu 3, paper 6)"),
    "n_actions": (5, "actions per agent"),
    "game_seed": (0, "seed of the random game"),
    **BETA_INIT,
}


def _sg_setup(opts: dict) -> tuple[str, dict, int, object]:
    from coopmarl import exact
    from coopmarl.envs.registry import make

    s, n, a = SG_SIZE[opts["scale"]]
    s, n, a = opts["n_states"] or s, opts["n_agents"] or n, opts["n_actions"] or a
    env_params = {"n_states": s, "n_agents": n, "n_actions": a, "seed": opts["game_seed"]}
    game = make("random-stochastic-game", **env_params)
    optimum = float(exact.solve(game).optimal_return)
    steps = opts["steps"] or SG_STEPS[opts["scale"]]
    return f"{s} states, {n} agents, {a} actions ({a ** n:,} joint actions), game seed {opts['game_seed']}", \
        {f"env.{k}": v for k, v in env_params.items()}, steps, optimum


def _sg_runs(out_dir: Path, opts: dict, settings: list[tuple[str, str, dict]], title: str, plot_name: str):
    """Train each (label, algo, extra overrides) on the game; rows: exact final return of the learned
    (stochastic) policy and of its greedy version, regret, train return."""
    game_text, env_over, steps, optimum = _sg_setup(opts)
    s = env_over["env.n_states"]
    rows, results, finals = [], [], {}
    for label, algo, extra in settings:
        over = {**env_over, **_algo_overrides(algo, "stochastic-game", steps, SG_ENVS[opts["scale"]]),
                "total_steps": steps, "log_points": 20, **_beta_overrides(algo, opts["beta_init"]), **extra}
        if algo != "iql":
            over["rollout_length"] = s  # one whole episode per env per update (MAPPO's episode_length)
        result, _ = train_run(out_dir, algo, "random-stochastic-game", over, opts["seeds"],
                              label.replace(" ", "_").replace("/", "").replace(",", "_"), progress=False)
        results.append(result)
        final = _final(result, "eval_return")
        finals[label] = final
        rows.append([label, _ms(final), _ms(_final(result, "greedy_return")), _ms(_final(result, "regret")),
                     _ms(_final(result, "train_return")), f"{optimum:.2f}"])
    plot = _plot(results, [r[0] for r in settings], out_dir / plot_name, ["eval_return", "train_return", "regret"],
                 f"{title} ({game_text})", hlines={"eval_return": optimum, "regret": 0.0})
    header = ["run", "final return (exact, mean ± std)", "greedy policy's return (exact)", "regret",
              "train return", "optimum (DP)"]
    notes = [
        f"Game: random-stochastic-game, {game_text}; episode length = number of states = {s}; "
        f"{'the authors’ shipped instance size (paper §4.1: 100 states, 6 agents)' if opts['scale'] == 'cpu' and not (opts['n_states'] or opts['n_agents']) else 'the size given'}.",
        f"{steps:,} env steps per seed, {opts['seeds']} seeds (paper: 5 seeds); policy-gradient runs collect "
        f"{SG_ENVS[opts['scale']]} envs x {s} steps per update; initial β√ = β_KL = {opts['beta_init']:g}. "
        f"{PAPER_STEPS_NOTE}",
        "Final return = the exact expected episode return (coopmarl.exact) of the learned stochastic policies; "
        "IQL has no policy table, so its return is the mean of 16 greedy rollouts per seed and its greedy column "
        "is empty. The optimum is that of a centralised joint policy (dynamic programming), as in Figs 1a and 8.",
    ]
    return rows, header, notes, plot, finals, optimum


@register_experiment(
    "dpo-stochastic-game",
    "DPO Figs 1a and 8: DPO vs IPPO, IPPO-KL, DPO w/o kl and IQL on the random cooperative stochastic game, "
    "with the exact optimum (d_target 0.1)",
    {**SG_OPTIONS, "algos": (",".join(SG_ALGOS), f"comma-separated subset of {', '.join(SG_ALGOS)}")},
)
def dpo_stochastic_game(out_dir: Path, opts: dict) -> Report:
    algos = _check(opts, opts["algos"], SG_ALGOS)
    settings = [(ALGO_LABELS[a], a, {}) for a in algos]
    rows, header, notes, plot, finals, optimum = _sg_runs(out_dir, opts, settings, "DPO Figs 1a, 8", "curves.png")
    if "DPO" in finals and "IPPO" in finals:
        notes.insert(0, "DPO vs IPPO (final exact return): " + _compare(finals["DPO"], finals["IPPO"]) + ".")
    below = [label for label, f in finals.items() if np.nanmean(f) < optimum - 1e-3]
    notes.insert(1, f"Below the optimum {optimum:.2f}: {', '.join(below) if below else 'none'} "
                    "(the paper: every method, DPO included, stays well below it).")
    notes.append("The paper (Figs 1a, 8) reports DPO above IPPO, IPPO-KL and DPO w/o kl (which are close to each "
                 "other), IQL below IPPO, and all far from the optimum.")
    return Report("DPO Figs 1a, 8: random cooperative stochastic game", markdown_table(header, rows), notes, [plot])


@register_experiment(
    "dpo-dtarget",
    "DPO Fig. 1b: DPO with d_target ∈ {0.001, 0.01, 0.1, 1} on the random cooperative stochastic game",
    {**SG_OPTIONS, "targets": ("0.001,0.01,0.1,1", "comma-separated d_target values")},
)
def dpo_dtarget(out_dir: Path, opts: dict) -> Report:
    _check(opts)
    try:
        targets = [float(t) for t in _names(opts["targets"])]
    except ValueError:
        raise ConfigError(f"targets must be comma-separated numbers, got {opts['targets']!r}") from None
    if not targets or min(targets) <= 0:
        raise ConfigError(f"targets must be positive numbers, got {opts['targets']!r}")
    settings = [(f"DPO d_target={t:g}", "dpo", {"kl_target": t}) for t in targets]
    rows, header, notes, plot, finals, _ = _sg_runs(out_dir, opts, settings, "DPO Fig. 1b", "dtarget.png")
    best = max(finals, key=lambda k: np.nanmean(finals[k]))
    notes.insert(0, f"Highest final return: {best}. The paper: 0.001 and 0.01 learn slowly (the coefficients grow "
                    "and limit the step), 1 fluctuates (steps leave the trust region), 0.1 is its choice.")
    return Report("DPO Fig. 1b: d_target on the stochastic game", markdown_table(header, rows), notes, [plot])


DELTA_OMEGA = "1.5:2,1.5:4,1.5:6,1.1:2,3:2,3:6,1.1:6"  # the seven (δ, ω) of DPO Fig. 9


@register_experiment(
    "dpo-delta-omega",
    "DPO Fig. 9: DPO with several (δ, ω) of the adaptive rule (eq. 21) on the random cooperative stochastic game",
    {**SG_OPTIONS, "grid": ("1.5:2,1.1:2,3:2,1.5:6,3:6",
                            f"comma-separated δ:ω pairs (the paper's seven: {DELTA_OMEGA})")},
)
def dpo_delta_omega(out_dir: Path, opts: dict) -> Report:
    _check(opts)
    try:
        grid = [tuple(float(v) for v in pair.split(":")) for pair in _names(opts["grid"])]
        assert grid and all(len(p) == 2 for p in grid)
    except (ValueError, AssertionError):
        raise ConfigError(f"grid must be comma-separated δ:ω pairs such as 1.5:2, got {opts['grid']!r}") from None
    if any(d <= 1 or w <= 1 for d, w in grid):
        raise ConfigError(f"δ and ω must be > 1, got {opts['grid']!r}")
    settings = [(f"DPO δ={d:g} ω={w:g}", "dpo", {"adapt_delta": d, "adapt_omega": w}) for d, w in grid]
    rows, header, notes, plot, finals, _ = _sg_runs(out_dir, opts, settings, "DPO Fig. 9", "delta_omega.png")
    means = [np.nanmean(f) for f in finals.values()]
    notes.insert(0, f"Spread of the final returns over the grid: {min(means):.2f} … {max(means):.2f}. The paper: "
                    "the influence of δ and ω is limited (as in PPO).")
    if opts["grid"] != DELTA_OMEGA:
        notes.append(f"The default grid is five of the paper's seven pairs ({DELTA_OMEGA}) to fit the CPU budget; "
                     f"`grid={DELTA_OMEGA}` runs all seven.")
    return Report("DPO Fig. 9: δ and ω on the stochastic game", markdown_table(header, rows), notes, [plot])


# ---- deep environments: MPE, SMAX, MABrax ----------------------------------------------------------------


def _env_runs(out_dir: Path, opts: dict, envs: list[tuple[str, dict]], algos: tuple[str, ...], family: str,
              steps: int, n_envs: int, extra_eval=None, labels: dict | None = None):
    """Train every algorithm on every env; returns {env: [(label, result, resolved, extra metrics)]}."""
    groups = {}
    for env, env_over in envs:
        for algo in algos:
            over = {**env_over, **_algo_overrides(algo, family, steps, n_envs), "total_steps": steps, "log_points": 20,
                    **_beta_overrides(algo, opts.get("beta_init", 0.01))}
            tag = f"{env.replace(':', '_').replace('|', '-')}/{algo}"
            result, resolved = train_run(out_dir, algo, env, over, opts["seeds"], tag, progress=False)
            extra = extra_eval(resolved, result) if extra_eval else {}
            groups.setdefault(env, []).append(((labels or ALGO_LABELS).get(algo, algo), result, resolved, extra))
    return groups


def _env_table(out_dir: Path, groups: dict, metrics=("eval_return", "train_return"), extra_cols=()):
    rows, plots = [], []
    for env, runs in groups.items():
        for label, result, _, extra in runs:
            rows.append([env, label] + [_ms(_final(result, m)) for m in metrics] + [extra.get(c, "") for c in extra_cols])
        path = out_dir / f"{env.replace(':', '_').replace('|', '-')}.png"
        plots.append(_plot([r for _, r, _, _ in runs], [lbl for lbl, *_ in runs], path, list(metrics), env))
    return rows, plots


def _dpo_vs_ippo_notes(groups: dict, metric: str, what: str) -> list[str]:
    notes = []
    for env, runs in groups.items():
        by = {label: _final(result, metric) for label, result, _, _ in runs}
        if "DPO" in by and "IPPO" in by:
            notes.append(f"{env}: {_compare(by['DPO'], by['IPPO'])} in final {what}.")
    return notes


MPE_TASKS = ("mpe:spread", "mpe:line", "mpe:circle")
MPE_STEPS = {"cpu": 40_000, "paper": 10_000_000}
MPE_ENVS = {"cpu": 16, "paper": 128}


def _mpe_opts(default_algos: str, seeds: int) -> dict:
    return {**SCALE, "seeds": (seeds, "seeds per run (vmapped); the paper uses 5"),
            "steps": (0, f"env steps per seed (0 = the scale's: cpu {MPE_STEPS['cpu']:,}, paper {MPE_STEPS['paper']:,})"),
            "n_agents": (5, "agents in every task (the paper: 5)"),
            "tasks": (",".join(MPE_TASKS), "comma-separated MPE tasks"),
            "algos": (default_algos, "comma-separated algorithms"), **BETA_INIT}


def _mpe(out_dir: Path, opts: dict, allowed: tuple[str, ...], title: str) -> tuple[Report, dict]:
    algos = _check(opts, opts["algos"], allowed)
    tasks = choose(opts["tasks"], MPE_TASKS, "MPE task")
    steps = opts["steps"] or MPE_STEPS[opts["scale"]]
    n_envs = MPE_ENVS[opts["scale"]]
    groups = _env_runs(out_dir, opts, [(t, {"env.n_agents": opts["n_agents"]}) for t in tasks], algos, "mpe",
                       steps, n_envs)
    rows, plots = _env_table(out_dir, groups)
    notes = _dpo_vs_ippo_notes(groups, "eval_return", "greedy return") + _dpo_vs_ippo_notes(
        groups, "train_return", "train return")
    notes += [
        f"{opts['n_agents']} agents, discrete actions, episodes of 25 steps, d_target 0.01 (DPO App. B), initial "
        f"β√ = β_KL = {opts['beta_init']:g}; "
        f"{steps:,} env steps per seed, {opts['seeds']} seeds, policy-gradient updates on {n_envs} envs x 25 steps "
        f"({opts['scale']} scale). {PAPER_STEPS_NOTE}",
        "eval return = mean over 16 episodes of the greedy (mode) policy; train return = the sampled policy's "
        "episodes during the last logging interval. Returns are the team reward summed over the episode "
        "(higher is better; all negative).",
    ]
    return Report(title, markdown_table(["task", "algorithm", "eval return (greedy)", "train return"], rows),
                  notes, plots), groups


@register_experiment(
    "dpo-mpe",
    "DPO Fig. 2: DPO vs IPPO and IQL on MPE spread, line and circle control with 5 agents",
    _mpe_opts("dpo,ippo,iql", 3),
)
def dpo_mpe(out_dir: Path, opts: dict) -> Report:
    report, _ = _mpe(out_dir, opts, ("dpo", "ippo", "iql", "ippo-kl", "dpo-no-kl", "dpo-no-sqrt"),
                     "DPO Fig. 2: MPE, 5 agents")
    report.notes.append("The paper (Fig. 2): DPO ends above IPPO and IQL in all three tasks, though it may trail "
                        "them early; IQL learns fast but is unstable across seeds.")
    return report


@register_experiment(
    "dpo-ablation",
    "DPO Fig. 5: DPO vs DPO w/o sqrt (= IPPO-KL) and DPO w/o kl on MPE spread, line and circle with 5 agents",
    _mpe_opts("dpo,dpo-no-sqrt,dpo-no-kl", 2),
)
def dpo_ablation(out_dir: Path, opts: dict) -> Report:
    report, _ = _mpe(out_dir, opts, ("dpo", "dpo-no-sqrt", "dpo-no-kl", "ippo"), "DPO Fig. 5: ablation on MPE")
    report.notes.append("The paper (Fig. 5): removing either √KL or KL lowers DPO's performance in all three "
                        "tasks. Add `algos=dpo,dpo-no-sqrt,dpo-no-kl,ippo` for the IPPO line the figure also shows.")
    return report


# ---- SMAX (the SMAC stand-in; DPO Fig. 4) -------------------------------------------------------------------

# SMAC maps of Fig. 4 -> SMAX heuristic-enemy maps. SMAX has no medivacs or marauders, so MMM2 has no SMAX
# version; 3s5z_vs_3s6z (also SMAC "super hard", heterogeneous, outnumbered) stands in for it.
SMAX_MAPS = {"2s3z": "2s3z", "8m": "8m", "3s5z": "3s5z", "27m_vs_30m": "27m_vs_30m", "MMM2": "3s5z_vs_3s6z"}
SMAX_STEPS = {"cpu": 20_000, "paper": 10_000_000}
SMAX_ENVS = {"cpu": 8, "paper": 64}


def _win_rate(n_episodes: int = 32):
    """Greedy episodes of the final policies through the one evaluation module: `win_rate` is SMAX's
    `battle_won` at each episode's end (the bridge declares it in `eval_metrics`)."""

    def evaluate(resolved, result) -> dict:
        keys = [jax.random.PRNGKey(10_000 + s) for s in result.seeds]
        rate = evaluate_states(resolved.algo, resolved.env, resolved.config, result.train_state, keys,
                               n_episodes)["win_rate"]
        return {"win rate (greedy)": _ms(rate), "_win": rate}

    return evaluate


@register_experiment(
    "dpo-smax",
    "DPO Fig. 4: DPO vs IPPO on SMAX stand-ins of 2s3z, 8m, 3s5z, 27m_vs_30m and MMM2 (3s5z_vs_3s6z): win rate "
    "and return",
    {**SCALE, "seeds": (2, "seeds per run (vmapped); the paper uses 5"),
     "steps": (0, f"env steps per seed (0 = the scale's: cpu {SMAX_STEPS['cpu']:,}, paper {SMAX_STEPS['paper']:,})"),
     "maps": ("2s3z,8m", f"comma-separated SMAC map names of Fig. 4 ({', '.join(SMAX_MAPS)}) or all"),
     "algos": ("dpo,ippo", "comma-separated algorithms (dpo, ippo, iql, dpo-no-sqrt, dpo-no-kl)")},
)
def dpo_smax(out_dir: Path, opts: dict) -> Report:
    algos = _check(opts, opts["algos"], ("dpo", "ippo", "iql", "dpo-no-sqrt", "dpo-no-kl"))
    maps = choose(opts["maps"], SMAX_MAPS, "map")
    steps = opts["steps"] or SMAX_STEPS[opts["scale"]]
    n_envs = SMAX_ENVS[opts["scale"]]
    envs = [(f"smax:{SMAX_MAPS[m]}", {}) for m in maps]
    groups = _env_runs(out_dir, opts, envs, algos, "smax", steps, n_envs, extra_eval=_win_rate())
    rows, plots = _env_table(out_dir, groups, extra_cols=("win rate (greedy)",))
    notes = []
    for env, runs in groups.items():
        by = {label: extra["_win"] for label, _, _, extra in runs}
        if "DPO" in by and "IPPO" in by:
            notes.append(f"{env}: win rate {_compare(by['DPO'], by['IPPO'])}.")
    notes += _dpo_vs_ippo_notes(groups, "eval_return", "greedy return")
    notes += [
        "SMAX (JaxMARL's JAX SMAC with heuristic enemies) stands in for SMAC, which needs StarCraft II; SMAX has no "
        "MMM2 (no medivacs or marauders), so `MMM2` runs 3s5z_vs_3s6z. Rewards are SMAX's, not SMAC's.",
        f"{steps:,} env steps per seed, {opts['seeds']} seed(s), {n_envs} envs x 25 steps per update, d_target 0.02 "
        f"({opts['scale']} scale; the CPU scale is a smoke run, far too short to learn SMAC-like tasks). "
        f"{PAPER_STEPS_NOTE}",
        "win rate = fraction of 32 greedy episodes per seed that end with every enemy dead and an ally alive.",
    ]
    return Report("DPO Fig. 4: SMAX stand-ins for SMAC", markdown_table(
        ["map", "algorithm", "eval return (greedy)", "train return", "win rate (greedy)"], rows), notes, plots)


# ---- MABrax (the multi-agent MuJoCo stand-in; DPO Fig. 3) ------------------------------------------------

# multi-agent MuJoCo tasks of Fig. 3 -> JaxMARL's MABrax partitions (the closest it has)
MABRAX_TASKS = {"Hopper 3x1": "hopper_3x1", "HalfCheetah 3x2": "halfcheetah_6x1", "Walker2d 3x2": "walker2d_2x3",
                "Ant 4x2": "ant_4x2", "Humanoid 17x1": "humanoid_9|8"}
MABRAX_STEPS = {"cpu": 10_000, "paper": 10_000_000}
MABRAX_EPISODE = {"cpu": 100, "paper": 1000}


@register_experiment(
    "dpo-mabrax",
    "DPO Fig. 3: DPO vs IPPO (continuous actions) on MABrax stand-ins of multi-agent MuJoCo; a smoke run on CPU",
    {**SCALE, "seeds": (1, "seeds per run (vmapped); the paper uses 5"),
     "steps": (0, f"env steps per seed (0 = the scale's: cpu {MABRAX_STEPS['cpu']:,}, paper {MABRAX_STEPS['paper']:,})"),
     "tasks": ("", "comma-separated MABrax tasks (empty = the scale's: cpu halfcheetah_6x1; paper all five: "
                   f"{', '.join(MABRAX_TASKS.values())})"),
     "algos": ("dpo,ippo", "comma-separated algorithms (dpo, ippo, dpo-no-sqrt, dpo-no-kl)")},
)
def dpo_mabrax(out_dir: Path, opts: dict) -> Report:
    algos = _check(opts, opts["algos"], ("dpo", "ippo", "dpo-no-sqrt", "dpo-no-kl"))
    default = ("halfcheetah_6x1",) if opts["scale"] == "cpu" else tuple(MABRAX_TASKS.values())
    tasks = choose(opts["tasks"], MABRAX_TASKS.values(), "MABrax task") if opts["tasks"].strip() else default
    steps = opts["steps"] or MABRAX_STEPS[opts["scale"]]
    episode = MABRAX_EPISODE[opts["scale"]]
    n_envs = 8 if opts["scale"] == "cpu" else 64
    envs = [(f"mabrax:{t}", {"env.episode_length": episode}) for t in tasks]
    groups = _env_runs(out_dir, opts, envs, algos, "mabrax", steps, n_envs)
    rows, plots = _env_table(out_dir, groups)
    paper_names = {v: k for k, v in MABRAX_TASKS.items()}
    notes = _dpo_vs_ippo_notes(groups, "eval_return", "greedy (mean-action) return")
    notes += [
        "MABrax (JaxMARL's multi-agent Brax) stands in for multi-agent MuJoCo; its partitions differ from the "
        "paper's Table 1: " + ", ".join(f"{paper_names[t]} -> {t}" for t in tasks) + "; no agent_obsk setting "
        "(each agent sees its own observation slice).",
        f"{steps:,} env steps per seed, {opts['seeds']} seed(s), episodes of {episode} steps, {n_envs} envs x 25 "
        f"steps per update, Gaussian policies, d_target 0.001 ({opts['scale']} scale"
        + ("; a smoke run that checks the continuous pipeline end to end, not a result" if opts["scale"] == "cpu"
           else "; the paper's episodes of 1000 steps") + f"). {PAPER_STEPS_NOTE}",
    ]
    return Report("DPO Fig. 3: MABrax stand-ins for multi-agent MuJoCo", markdown_table(
        ["task", "algorithm", "eval return (mean action)", "train return"], rows), notes, plots)
