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

`variant=paper|authors|both` (stochastic-game and MPE presets): `paper` is the above; `authors` runs DPO, its
ablations, IPPO and IPPO-KL as the authors' code does (`ppo.AUTHORS`: cross-agent sample shuffling, one env,
one β from 1.0, LayerNorm 2x128 networks, clipped value loss, all-agent advantage normalisation) on the
environments as their code runs them: the stochastic game never reset after warm-up (`reset=never`), the MPE
control tasks without a collision penalty (`train_mpe.py` collision_penal 0). `both` runs the two side by
side. IQL is not part of the authors' code and runs once, as in the paper variant.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from coopmarl.algos.base import get_algo
from coopmarl.config import config_fields
from coopmarl.errors import ConfigError
from coopmarl.experiments import Cell, Report, choose, markdown_table, register_experiment
from coopmarl.experiments.tables import estimate, improvement, iqm_ci, mean_sd, plot_cells, win_rate

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
    if opts.get("beta_init", 0.0) < 0:
        raise ConfigError(f"beta_init must be > 0 (or 0: the variant's), got {opts['beta_init']}")
    if opts.get("steps", 0) < 0:
        raise ConfigError(f"steps must be >= 0 (0 = the scale's), got {opts['steps']}")
    return choose(algos, allowed, "algorithm") if algos is not None else ()


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _algo_overrides(algo: str, family: str, steps: int, n_envs: int, variant: str = "paper") -> dict:
    """The per-algorithm settings of one environment family (`KL_TARGET`'s keys); d_target only for the
    algorithms with a KL term (IPPO has no `kl_target` key). `variant=authors` leaves the env count to the
    variant (the authors' one rollout thread)."""
    if algo == "iql":
        # ε annealed over half the run at most (PyMARL anneals over 50k steps)
        return {**IQL, "epsilon_anneal_steps": max(1, min(50_000, steps // 2))}
    keys = config_fields(get_algo(algo).config_cls)
    over = {"kl_target": KL_TARGET[family]} if "kl_target" in keys else {}
    return {**over, "variant": "authors"} if variant == "authors" else {"n_envs": n_envs, **over}


BETA_INIT = {"beta_init": (0.0, "initial β√ and β_KL of DPO and its variants (0 = the variant's: paper App. B "
                               "0.01, the authors' code 1.0)")}
VARIANT = {"variant": ("paper", "paper (the paper's text), authors (the authors' code; see the preset's notes and "
                                "`coopmarl list algos dpo`) or both, side by side")}
VARIANTS = {"paper": ("paper",), "authors": ("authors",), "both": ("paper", "authors")}


def _variants(opts: dict) -> tuple[str, ...]:
    if opts["variant"] not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {opts['variant']!r}")
    return VARIANTS[opts["variant"]]


def _variant_cells(opts: dict, settings: list[tuple[str, str, dict]], path: str, env: str, env_over: dict,
                   authors_env: dict, family: str, steps: int, n_envs: int,
                   extra: Callable[[str], dict]) -> list[Cell]:
    """One cell per (label, algo, overrides) and variant: the paper variant's cells keep their label and path
    when it runs alone; an `authors` cell adds `authors_env` to the env's settings, '(authors)' to its label and
    '-authors' to its path. IQL (not in the authors' code) runs once, on the paper variant's env."""
    variants = _variants(opts)
    cells = []
    for variant in variants:
        for label, algo, over in settings:
            if algo == "iql" and variant != variants[0]:
                continue
            authors = variant == "authors" and algo != "iql"
            name = path.format(name=label.replace(" ", "_").replace("/", "").replace(",", "_"), algo=algo)
            overrides = {**env_over, **(authors_env if authors else {}),
                         **_algo_overrides(algo, family, steps, n_envs, "authors" if authors else "paper"),
                         "total_steps": steps, "log_points": 20, **extra(algo),
                         **(_beta_overrides(algo, opts["beta_init"]) if opts.get("beta_init") else {}), **over}
            shown = label if algo == "iql" or variants == ("paper",) else f"{label} ({variant})"
            cells.append(Cell(name + ("-authors" if authors else ""), algo, env, overrides, opts["seeds"],
                              label=shown))
    return cells


def _beta_overrides(algo: str, beta: float) -> dict:
    """The initial KL coefficients at `beta`; a coefficient an ablation switches off stays 0."""
    return {"dpo": {"kl_coef_init": beta, "sqrt_kl_coef_init": beta}, "dpo-no-kl": {"sqrt_kl_coef_init": beta},
            "dpo-no-sqrt": {"kl_coef_init": beta}, "ippo-kl": {"kl_coef_init": beta}}.get(algo, {})


def _per_variant(opts: dict, key: str, paper_value, unit: str = "") -> str:
    """'<paper's> (paper) / <authors'> (authors)' for the variants a preset runs: the paper's value given, the
    authors' read from `ppo.AUTHORS[key]` (one source for both the code and the tables)."""
    from coopmarl.algos.ppo import AUTHORS

    values = {"paper": paper_value, "authors": AUTHORS[key]}
    return " / ".join(f"{values[v]:g}{unit} ({v})" for v in _variants(opts))


def _beta_text(opts: dict) -> str:
    from coopmarl.algos.ppo import DPOConfig

    if opts.get("beta_init"):
        return f"initial β√ = β_KL = {opts['beta_init']:g}"
    return "initial β√ = β_KL = " + _per_variant(opts, "kl_coef_init", DPOConfig.kl_coef_init)


def _score(run, metric: str) -> str:
    """IQM [95% CI] of a cell's final `metric` over seeds ('—' if it never logged it), marking a diverged cell."""
    text = iqm_ci(estimate(run.final(metric), run.label, run.cell.env, metric))
    return text + (f" ({run.stopped})" if run.stopped else "")


def _compare(group: list, metric: str, a: str = "DPO", b: str = "IPPO") -> str | None:
    """P(a > b) on a metric's final values with its interval, for each variant where both ran in the group
    (labels `a` and `b`, or `a (variant)` and `b (variant)`); None if they never ran side by side."""
    by = {run.label: run for run in group}
    found = []
    for suffix in ("", " (paper)", " (authors)"):
        x, y = a + suffix, b + suffix
        if x in by and y in by:
            found.append(improvement(by[x].final(metric), by[y].final(metric), x, y, by[x].cell.env, metric))
    return "; ".join(found) or None


# ---- the random cooperative stochastic game (DPO §4.1, App. C) ---------------------------------------------

# the game's size: the size of the authors' shipped instance on CPU (our own draw of it unless `game=` gives
# theirs), the paper's §4.1 instance at paper scale
SG_SIZE = {"cpu": (30, 3, 5), "paper": (100, 6, 5)}
SG_STEPS = {"cpu": 100_000, "paper": 1_000_000}
SG_ENVS = {"cpu": 16, "paper": 16}
SG_ALGOS = ("dpo", "ippo", "ippo-kl", "dpo-no-kl", "iql")
SG_OPTIONS = {
    **SCALE, **VARIANT,
    "seeds": (3, "seeds per run (vmapped); the paper uses 5"),
    "steps": (0, "env steps per seed (0 = the scale's: cpu 100k, paper 1M)"),
    "game": ("", "empty: our random draw of the game (n_states, n_agents, n_actions, game_seed); or tabular:PATH, "
                 "an .npz game or the authors' shipped pickle (on-policy-main/a_mat_model/random_matrix_game_3.pkl "
                 "in PKU-RL/DPO; we do not ship it)"),
    "n_states": (0, "states of our draw (0 = the scale's: cpu 30, paper 100)"),
    "n_agents": (0, "agents of our draw (0 = the scale's: cpu 3, paper 6)"),
    "n_actions": (5, "actions per agent of our draw"),
    "game_seed": (0, "seed of our random draw of the game"),
    **BETA_INIT,
}


class Game(NamedTuple):
    text: str  # what the tables say the game is
    env: str  # the env name the cells run
    env_over: dict  # its env.* settings
    horizon: int
    steps: int
    optimum: float | None


def _sg_setup(opts: dict, solve: bool = True) -> Game:
    from coopmarl import exact
    from coopmarl.envs.registry import make

    _check(opts)
    _variants(opts)
    steps = opts["steps"] or SG_STEPS[opts["scale"]]
    game = opts["game"].strip()
    if game:
        if not game.startswith("tabular:"):
            raise ConfigError(f"game must be empty (our random draw) or tabular:PATH, got {game!r}")
        if opts["n_states"] or opts["n_agents"] or opts["n_actions"] != 5 or opts["game_seed"]:
            raise ConfigError("n_states, n_agents, n_actions and game_seed size our random draw; they do not apply to "
                              f"game={game}")
        try:
            env = make(game)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None
        spec = env.spec
        text = (f"{game} ({spec.obs_dim} states, {spec.n_agents} agents, {spec.n_actions} actions, "
                f"sha256 {dict(spec.params)['sha256'][:12]}…)")
        env_name, env_over, horizon = game, {}, spec.horizon
    else:
        s, n, a = SG_SIZE[opts["scale"]]
        s, n, a = opts["n_states"] or s, opts["n_agents"] or n, opts["n_actions"] or a
        params = {"n_states": s, "n_agents": n, "n_actions": a, "seed": opts["game_seed"]}
        text = (f"our random draw: {s} states, {n} agents, {a} actions ({a ** n:,} joint actions), game seed "
                f"{opts['game_seed']}")
        env_name, env_over, horizon = "random-stochastic-game", {f"env.{k}": v for k, v in params.items()}, s
        env = make(env_name, **params) if solve else None
    optimum = float(exact.solve(env).optimal_return) if solve else None
    return Game(text, env_name, env_over, horizon, steps, optimum)


def _sg_cells(opts: dict, settings: list[tuple[str, str, dict]]) -> list[Cell]:
    """One cell per (label, algo, extra overrides) and variant on the game; policy-gradient runs collect one
    whole episode per env per update (MAPPO's episode_length = the game's)."""
    game = _sg_setup(opts, solve=False)
    return _variant_cells(opts, settings, "{name}", game.env, game.env_over, {"env.reset": "never"},
                          "stochastic-game", game.steps, SG_ENVS[opts["scale"]],
                          lambda algo: {} if algo == "iql" else {"rollout_length": game.horizon})


def _sg_report(runs, opts: dict, title: str, plot_name: str):
    """Rows: exact final return of the learned (stochastic) policy and of its greedy version, regret, train
    return."""
    game = _sg_setup(opts)
    optimum = game.optimum
    rows = [[run.label, _score(run, "eval_return"), mean_sd(estimate(run.final("eval_return"), run.label,
                                                                     run.cell.env, "eval_return")),
             _score(run, "greedy_return"), _score(run, "regret"), _score(run, "train_return"), f"{optimum:.2f}"]
            for run in runs]
    plot = plot_cells(runs, runs.out / plot_name, ["eval_return", "train_return", "regret"], f"{title} ({game.text})",
                      {"eval_return": optimum, "regret": 0.0})
    header = ["run", "final return (exact), IQM [95% CI]", "mean ± sd", "greedy policy's return (exact)", "regret",
              "train return", "optimum (DP)"]
    variants = _variants(opts)
    notes = [
        f"Game: {game.text}; episode length {game.horizon}"
        + ("; the size of the authors' shipped instance (paper §4.1: 100 states, 6 agents), not the instance "
           "itself (pass game=tabular:PATH for theirs)" if not opts["game"].strip() and opts["scale"] == "cpu"
           and not (opts["n_states"] or opts["n_agents"]) else "") + ".",
        f"{game.steps:,} env steps per seed, {opts['seeds']} seeds (paper: 5 seeds); "
        + ("policy-gradient runs collect " + _per_variant(opts, "n_envs", SG_ENVS[opts["scale"]], " env(s)")
           + f" x {game.horizon} steps per update; {_beta_text(opts)}. {PAPER_STEPS_NOTE}"),
        "Final return = the exact expected episode return (coopmarl.exact) of the learned stochastic policies; "
        "IQL has no policy table, so its return is the mean of 16 greedy rollouts per seed and its greedy column "
        "is empty. The optimum is that of a centralised joint policy (dynamic programming), as in Figs 1a and 8. "
        "Columns after the first are IQMs [95% CI] too.",
    ]
    if "authors" in variants:
        notes.append("(authors) = the authors' code: each actor trains on a random 1/N of all agents' shuffled "
                     "samples, the game is never reset after warm-up (from step "
                     f"{game.horizon} on every step ends an episode unbootstrapped, so its train return is a one-step "
                     "reward), one env, one β from 1.0 adapted on the last minibatch's KL, 2x128 LayerNorm networks, "
                     "clipped value loss, advantages normalised over all agents (`ppo.AUTHORS`). The exact return "
                     "is measured the same way for both variants: episodes from state 0.")
    return rows, header, notes, plot, optimum


@register_experiment(
    "dpo-stochastic-game",
    "DPO Figs 1a and 8: DPO vs IPPO, IPPO-KL, DPO w/o kl and IQL on the random cooperative stochastic game, "
    "with the exact optimum (d_target 0.1)",
    {**SG_OPTIONS, "algos": (",".join(SG_ALGOS), f"comma-separated subset of {', '.join(SG_ALGOS)}")},
    cells=lambda opts: _sg_cells(opts, [(ALGO_LABELS[a], a, {}) for a in _check(opts, opts["algos"], SG_ALGOS)]),
    metrics=("eval_return", "regret"),
)
def dpo_stochastic_game(runs, opts: dict) -> Report:
    rows, header, notes, plot, optimum = _sg_report(runs, opts, "DPO Figs 1a, 8", "curves.png")
    compared = _compare(list(runs), "eval_return")
    if compared:
        notes.insert(0, f"DPO vs IPPO (final exact return): {compared}.")
    below = [run.label for run in runs if np.nanmean(run.final("eval_return")) < optimum - 1e-3]
    notes.insert(1, f"Below the optimum {optimum:.2f} (mean over seeds): {', '.join(below) if below else 'none'} "
                    "(the paper: every method, DPO included, stays well below it).")
    notes.append("The paper (Figs 1a, 8) reports DPO above IPPO, IPPO-KL and DPO w/o kl (which are close to each "
                 "other), IQL below IPPO, and all far from the optimum.")
    return Report("DPO Figs 1a, 8: random cooperative stochastic game", markdown_table(header, rows), notes, [plot])


def _targets(opts: dict) -> list[float]:
    try:
        targets = [float(t) for t in _names(opts["targets"])]
    except ValueError:
        raise ConfigError(f"targets must be comma-separated numbers, got {opts['targets']!r}") from None
    if not targets or min(targets) <= 0:
        raise ConfigError(f"targets must be positive numbers, got {opts['targets']!r}")
    return targets


@register_experiment(
    "dpo-dtarget",
    "DPO Fig. 1b: DPO with d_target ∈ {0.001, 0.01, 0.1, 1} on the random cooperative stochastic game",
    {**SG_OPTIONS, "targets": ("0.001,0.01,0.1,1", "comma-separated d_target values")},
    cells=lambda opts: _sg_cells(opts, [(f"DPO d_target={t:g}", "dpo", {"kl_target": t}) for t in _targets(opts)]),
    metrics=("eval_return", "regret"),
)
def dpo_dtarget(runs, opts: dict) -> Report:
    rows, header, notes, plot, _ = _sg_report(runs, opts, "DPO Fig. 1b", "dtarget.png")
    best = max(runs, key=lambda run: stats_iqm(run)).label
    notes.insert(0, f"Highest final return (IQM): {best}. The paper: 0.001 and 0.01 learn slowly (the coefficients "
                    "grow and limit the step), 1 fluctuates (steps leave the trust region), 0.1 is its choice.")
    return Report("DPO Fig. 1b: d_target on the stochastic game", markdown_table(header, rows), notes, [plot])


def stats_iqm(run, metric: str = "eval_return") -> float:
    est = estimate(run.final(metric), run.label, run.cell.env, metric)
    return est["iqm"] if est is not None else -np.inf


DELTA_OMEGA = "1.5:2,1.5:4,1.5:6,1.1:2,3:2,3:6,1.1:6"  # the seven (δ, ω) of DPO Fig. 9


@register_experiment(
    "dpo-delta-omega",
    "DPO Fig. 9: DPO with several (δ, ω) of the adaptive rule (eq. 21) on the random cooperative stochastic game",
    {**SG_OPTIONS, "grid": ("1.5:2,1.1:2,3:2,1.5:6,3:6",
                            f"comma-separated δ:ω pairs (the paper's seven: {DELTA_OMEGA})")},
    cells=lambda opts: _sg_cells(opts, [(f"DPO δ={d:g} ω={w:g}", "dpo", {"adapt_delta": d, "adapt_omega": w})
                                        for d, w in _grid(opts)]),
    metrics=("eval_return", "regret"),
)
def dpo_delta_omega(runs, opts: dict) -> Report:
    rows, header, notes, plot, _ = _sg_report(runs, opts, "DPO Fig. 9", "delta_omega.png")
    iqms = [stats_iqm(run) for run in runs]
    notes.insert(0, f"Spread of the final returns (IQM) over the grid: {min(iqms):.2f} … {max(iqms):.2f}. The paper: "
                    "the influence of δ and ω is limited (as in PPO).")
    if opts["grid"] != DELTA_OMEGA:
        notes.append(f"The default grid is five of the paper's seven pairs ({DELTA_OMEGA}) to fit the CPU budget; "
                     f"`grid={DELTA_OMEGA}` runs all seven.")
    return Report("DPO Fig. 9: δ and ω on the stochastic game", markdown_table(header, rows), notes, [plot])


def _grid(opts: dict) -> list[tuple[float, float]]:
    try:
        grid = [tuple(float(v) for v in pair.split(":")) for pair in _names(opts["grid"])]
        assert grid and all(len(p) == 2 for p in grid)
    except (ValueError, AssertionError):
        raise ConfigError(f"grid must be comma-separated δ:ω pairs such as 1.5:2, got {opts['grid']!r}") from None
    if any(d <= 1 or w <= 1 for d, w in grid):
        raise ConfigError(f"δ and ω must be > 1, got {opts['grid']!r}")
    return grid


# ---- deep environments: MPE, SMAX, MABrax ----------------------------------------------------------------


def _env_cells(opts: dict, envs: list[tuple[str, dict]], algos: tuple[str, ...], family: str, steps: int,
               n_envs: int, authors_env=lambda env: {}) -> list[Cell]:
    """Every algorithm on every env (env name, its env.* overrides), for each variant the preset runs (only the
    paper's where it has no `variant` option); `authors_env(env)`: the env settings of the authors' variant."""
    opts = {"variant": "paper", **opts}
    return [cell for env, env_over in envs for cell in _variant_cells(
        opts, [(ALGO_LABELS.get(algo, algo), algo, {}) for algo in algos],
        env.replace(":", "_").replace("|", "-") + "/{algo}", env, env_over, authors_env(env), family, steps, n_envs,
        lambda algo: {})]


def _env_table(runs, metrics=("eval_return", "train_return"), extra_cols=None):
    """Rows (env, label, IQM [CI] of each metric, then `extra_cols(run)`'s) and one plot per env."""
    rows, plots = [], []
    for env, group in runs.by_group().items():
        for run in group:
            rows.append([env, run.label] + [_score(run, m) for m in metrics] + (extra_cols(run) if extra_cols else []))
        plots.append(plot_cells(group, runs.out / f"{env.replace(':', '_').replace('|', '-')}.png", metrics, env))
    return rows, plots


def _dpo_vs_ippo_notes(runs, metric: str, what: str) -> list[str]:
    notes = []
    for env, group in runs.by_group().items():
        compared = _compare(group, metric)
        if compared:
            notes.append(f"{env}: {compared} in final {what}.")
    return notes


MPE_TASKS = ("mpe:spread", "mpe:line", "mpe:circle")
MPE_STEPS = {"cpu": 40_000, "paper": 10_000_000}
MPE_ENVS = {"cpu": 16, "paper": 128}


def _mpe_opts(default_algos: str, seeds: int) -> dict:
    return {**SCALE, **VARIANT, "seeds": (seeds, "seeds per run (vmapped); the paper uses 5"),
            "steps": (0, f"env steps per seed (0 = the scale's: cpu {MPE_STEPS['cpu']:,}, paper {MPE_STEPS['paper']:,})"),
            "n_agents": (5, "agents in every task (the paper: 5)"),
            "tasks": (",".join(MPE_TASKS), "comma-separated MPE tasks"),
            "algos": (default_algos, "comma-separated algorithms"), **BETA_INIT}


def _mpe_setup(opts: dict, allowed: tuple[str, ...]):
    algos = _check(opts, opts["algos"], allowed)
    _variants(opts)
    tasks = choose(opts["tasks"], MPE_TASKS, "MPE task")
    return algos, tasks, opts["steps"] or MPE_STEPS[opts["scale"]], MPE_ENVS[opts["scale"]]


def _mpe_cells(opts: dict, allowed: tuple[str, ...]) -> list[Cell]:
    algos, tasks, steps, n_envs = _mpe_setup(opts, allowed)
    return _env_cells(opts, [(t, {"env.n_agents": opts["n_agents"]}) for t in tasks], algos, "mpe", steps, n_envs,
                      authors_env=lambda env: {"env.collision_penalty": 0.0} if env in MPE_AUTHORS_NO_COLLISION else {})


# the authors' `train_mpe.py`: --collision_penal 0 in the line and circle control scenarios (spread is MPE's own
# simple_spread, with its -1 per collision)
MPE_AUTHORS_NO_COLLISION = ("mpe:line", "mpe:circle")


def _mpe(runs, opts: dict, allowed: tuple[str, ...], title: str) -> Report:
    _, _, steps, n_envs = _mpe_setup(opts, allowed)
    rows, plots = _env_table(runs)
    notes = _dpo_vs_ippo_notes(runs, "eval_return", "greedy return") + _dpo_vs_ippo_notes(
        runs, "train_return", "train return")
    envs = _per_variant(opts, "n_envs", n_envs, " env(s)")
    notes += [
        f"{opts['n_agents']} agents, discrete actions, episodes of 25 steps, d_target 0.01 (DPO App. B), "
        f"{_beta_text(opts)}; {steps:,} env steps per seed, {opts['seeds']} seeds, policy-gradient updates on "
        f"{envs} x 25 steps ({opts['scale']} scale). {PAPER_STEPS_NOTE}",
        "eval return = mean over 16 episodes of the greedy (mode) policy; train return = the sampled policy's "
        "episodes during the last logging interval. Returns are the team reward summed over the episode "
        "(higher is better; all negative).",
    ]
    if "authors" in _variants(opts):
        notes.append("(authors) = the authors' code (`ppo.AUTHORS`: cross-agent sample shuffling, one env, one β from "
                     "1.0 adapted on the last minibatch's KL, 2x128 LayerNorm networks, clipped value loss, advantages "
                     "normalised over all agents) on their env settings: no collision penalty in line and circle "
                     "(their `train_mpe.py`), so those rows' returns are not comparable with the paper rows'.")
    return Report(title, markdown_table(["task", "algorithm", "eval return (greedy), IQM [95% CI]",
                                         "train return, IQM [95% CI]"], rows), notes, plots)


MPE_ALGOS = ("dpo", "ippo", "iql", "ippo-kl", "dpo-no-kl", "dpo-no-sqrt")
ABLATION_ALGOS = ("dpo", "dpo-no-sqrt", "dpo-no-kl", "ippo")


@register_experiment(
    "dpo-mpe",
    "DPO Fig. 2: DPO vs IPPO and IQL on MPE spread, line and circle control with 5 agents",
    _mpe_opts("dpo,ippo,iql", 3),
    cells=lambda opts: _mpe_cells(opts, MPE_ALGOS),
)
def dpo_mpe(runs, opts: dict) -> Report:
    report = _mpe(runs, opts, MPE_ALGOS, "DPO Fig. 2: MPE, 5 agents")
    report.notes.append("The paper (Fig. 2): DPO ends above IPPO and IQL in all three tasks, though it may trail "
                        "them early; IQL learns fast but is unstable across seeds.")
    return report


@register_experiment(
    "dpo-ablation",
    "DPO Fig. 5: DPO vs DPO w/o sqrt (= IPPO-KL) and DPO w/o kl on MPE spread, line and circle with 5 agents",
    _mpe_opts("dpo,dpo-no-sqrt,dpo-no-kl", 2),
    cells=lambda opts: _mpe_cells(opts, ABLATION_ALGOS),
)
def dpo_ablation(runs, opts: dict) -> Report:
    report = _mpe(runs, opts, ABLATION_ALGOS, "DPO Fig. 5: ablation on MPE")
    report.notes.append("The paper (Fig. 5): removing either √KL or KL lowers DPO's performance in all three "
                        "tasks. Add `algos=dpo,dpo-no-sqrt,dpo-no-kl,ippo` for the IPPO line the figure also shows.")
    return report


# ---- SMAX (the SMAC stand-in; DPO Fig. 4) -------------------------------------------------------------------

# SMAC maps of Fig. 4 -> SMAX heuristic-enemy maps. SMAX has no medivacs or marauders, so MMM2 has no SMAX
# version; 3s5z_vs_3s6z (also SMAC "super hard", heterogeneous, outnumbered) stands in for it.
SMAX_MAPS = {"2s3z": "2s3z", "8m": "8m", "3s5z": "3s5z", "27m_vs_30m": "27m_vs_30m", "MMM2": "3s5z_vs_3s6z"}
SMAX_STEPS = {"cpu": 150_000, "paper": 10_000_000}  # cpu: the default 4 cells in ~15 min on 2 cores
SMAX_ENVS = {"cpu": 8, "paper": 64}


SMAX_ALGOS = ("dpo", "ippo", "iql", "dpo-no-sqrt", "dpo-no-kl")


def _smax_setup(opts: dict):
    algos = _check(opts, opts["algos"], SMAX_ALGOS)
    maps = choose(opts["maps"], SMAX_MAPS, "map")
    return algos, maps, opts["steps"] or SMAX_STEPS[opts["scale"]], SMAX_ENVS[opts["scale"]]


def _smax_cells(opts: dict) -> list[Cell]:
    algos, maps, steps, n_envs = _smax_setup(opts)
    return _env_cells(opts, [(f"smax:{SMAX_MAPS[m]}", {}) for m in maps], algos, "smax", steps, n_envs)


@register_experiment(
    "dpo-smax",
    "DPO Fig. 4: DPO vs IPPO on SMAX stand-ins of 2s3z, 8m, 3s5z, 27m_vs_30m and MMM2 (3s5z_vs_3s6z): win rate "
    "and return",
    {**SCALE, "seeds": (2, "seeds per run (vmapped); the paper uses 5"),
     "steps": (0, f"env steps per seed (0 = the scale's: cpu {SMAX_STEPS['cpu']:,}, paper {SMAX_STEPS['paper']:,})"),
     "maps": ("2s3z,8m", f"comma-separated SMAC map names of Fig. 4 ({', '.join(SMAX_MAPS)}) or all"),
     "algos": ("dpo,ippo", "comma-separated algorithms (dpo, ippo, iql, dpo-no-sqrt, dpo-no-kl)")},
    cells=_smax_cells,
)
def dpo_smax(runs, opts: dict) -> Report:
    _, _, steps, n_envs = _smax_setup(opts)
    wins = {run.cell.path: win_rate(run) for run in runs}
    rows, plots = _env_table(runs, extra_cols=lambda run: [iqm_ci(estimate(wins[run.cell.path], run.label,
                                                                           run.cell.env, "win_rate"))])
    notes = []
    for env, group in runs.by_group().items():
        by = {run.label: wins[run.cell.path] for run in group}
        # (with no win anywhere, P(win rate) is 0.5 and says nothing)
        if "DPO" in by and "IPPO" in by and any(np.any(w > 0) for w in by.values()):
            notes.append(f"{env}: win rate {improvement(by['DPO'], by['IPPO'], 'DPO', 'IPPO', env, 'win_rate')}.")
    notes += _dpo_vs_ippo_notes(runs, "eval_return", "greedy return")
    notes += [
        "SMAX (JaxMARL's JAX SMAC with heuristic enemies) stands in for SMAC, which needs StarCraft II; SMAX has no "
        "MMM2 (no medivacs or marauders), so `MMM2` runs 3s5z_vs_3s6z. Rewards are SMAX's, not SMAC's.",
        f"{steps:,} env steps per seed, {opts['seeds']} seed(s), {n_envs} envs x 25 steps per update, d_target 0.02 "
        f"({opts['scale']} scale; the CPU scale is a smoke run, far too short to learn SMAC-like tasks). "
        f"{PAPER_STEPS_NOTE}",
        "win rate = fraction of 32 greedy episodes per seed that end with every enemy dead and an ally alive.",
    ]
    return Report("DPO Fig. 4: SMAX stand-ins for SMAC", markdown_table(
        ["map", "algorithm", "eval return (greedy), IQM [95% CI]", "train return, IQM [95% CI]",
         "win rate (greedy), IQM [95% CI]"], rows), notes, plots)


# ---- MABrax (the multi-agent MuJoCo stand-in; DPO Fig. 3) ------------------------------------------------

# multi-agent MuJoCo tasks of Fig. 3 -> JaxMARL's MABrax partitions (the closest it has)
MABRAX_TASKS = {"Hopper 3x1": "hopper_3x1", "HalfCheetah 3x2": "halfcheetah_6x1", "Walker2d 3x2": "walker2d_2x3",
                "Ant 4x2": "ant_4x2", "Humanoid 17x1": "humanoid_9|8"}
MABRAX_STEPS = {"cpu": 10_000, "paper": 10_000_000}
MABRAX_EPISODE = {"cpu": 100, "paper": 1000}


def _mabrax_setup(opts: dict):
    algos = _check(opts, opts["algos"], ("dpo", "ippo", "dpo-no-sqrt", "dpo-no-kl"))
    default = ("halfcheetah_6x1",) if opts["scale"] == "cpu" else tuple(MABRAX_TASKS.values())
    tasks = choose(opts["tasks"], MABRAX_TASKS.values(), "MABrax task") if opts["tasks"].strip() else default
    n_envs = 8 if opts["scale"] == "cpu" else 64
    return algos, tasks, opts["steps"] or MABRAX_STEPS[opts["scale"]], MABRAX_EPISODE[opts["scale"]], n_envs


def _mabrax_cells(opts: dict) -> list[Cell]:
    algos, tasks, steps, episode, n_envs = _mabrax_setup(opts)
    return _env_cells(opts, [(f"mabrax:{t}", {"env.episode_length": episode}) for t in tasks], algos, "mabrax", steps,
                      n_envs)


@register_experiment(
    "dpo-mabrax",
    "DPO Fig. 3: DPO vs IPPO (continuous actions) on MABrax stand-ins of multi-agent MuJoCo; a smoke run on CPU",
    {**SCALE, "seeds": (1, "seeds per run (vmapped); the paper uses 5"),
     "steps": (0, f"env steps per seed (0 = the scale's: cpu {MABRAX_STEPS['cpu']:,}, paper {MABRAX_STEPS['paper']:,})"),
     "tasks": ("", "comma-separated MABrax tasks (empty = the scale's: cpu halfcheetah_6x1; paper all five: "
                   f"{', '.join(MABRAX_TASKS.values())})"),
     "algos": ("dpo,ippo", "comma-separated algorithms (dpo, ippo, dpo-no-sqrt, dpo-no-kl)")},
    cells=lambda opts: _mabrax_cells(opts),
)
def dpo_mabrax(runs, opts: dict) -> Report:
    _, tasks, steps, episode, n_envs = _mabrax_setup(opts)
    rows, plots = _env_table(runs)
    paper_names = {v: k for k, v in MABRAX_TASKS.items()}
    notes = _dpo_vs_ippo_notes(runs, "eval_return", "greedy (mean-action) return")
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
        ["task", "algorithm", "eval return (mean action), IQM [95% CI]", "train return, IQM [95% CI]"], rows),
        notes, plots)
