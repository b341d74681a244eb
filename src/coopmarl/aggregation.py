"""`coopmarl aggregate` / `coopmarl.aggregate`: the field's aggregate statistics over run directories
(Agarwal et al. 2021; `coopmarl.stats`), written as aggregate.json, marl_eval.json and two PNGs per metric.

    report = coopmarl.aggregate(["runs/sweep"], metrics=["eval_return"], out="runs/sweep/aggregate")

Runs are grouped by (algorithm, env) — from config.yaml, else summary.json; a run an experiment wrote (a preset's
or a sweep's cell, with cell.json) by (its label, env), so `lr=0.001` and `lr=0.01` stay apart — and every seed of
every run in a group is one independent run; its score is the metric's value at the seed's last logged point (the final
value summary.json reports). Per group and metric: IQM, mean, median over the seeds and the optimality gap
(below `gap_threshold`), each with a stratified bootstrap percentile interval. Across groups: the probability
that one algorithm's run beats another's, averaged over the envs both ran, and, per env, performance profiles.

Nothing is pooled dishonestly: two runs of one group must share the env's and the algorithm's settings and
the training budget, and no seed may appear twice. Runs without summary.json (still running, or killed) and
interrupted runs are skipped and listed; a diverged run counts, with its last logged value. A seed whose final
value is not finite is left out of its group's statistics and counted in `n_nonfinite`. No JAX is imported.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from coopmarl import stats
from coopmarl.errors import ConfigError, did_you_mean
from coopmarl.files import atomic_write
from coopmarl.outputs import load_run, read_rows

__all__ = ["aggregate", "find_runs", "merge_marl_eval", "estimate_rng", "SECTIONS"]

# aggregate.json's top-level keys besides the algorithms' names
SECTIONS = ("probability_of_improvement", "performance_profile", "settings")
# the run settings two runs of one group must share (besides the env's and the algorithm's)
_SHARED_RUN_KEYS = ("total_steps", "eval_episodes")
PROFILE_POINTS = 101  # thresholds of a performance profile, evenly spaced over the env's scores


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "metrics.csv").is_file()


def find_runs(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The run directories named, or found (recursively; by their config.yaml or metrics.csv) under folders
    named. A path that does not exist, is a file, or holds no run directory is one ConfigError."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("aggregate needs at least one run directory or folder of run directories")
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{str(path)!r} does not exist: give run directories or folders holding them")
        if not path.is_dir():
            raise ConfigError(f"{str(path)!r} is a file: give run directories (holding config.yaml and metrics.csv) "
                              "or folders holding them")
        if _is_run_dir(path):
            found.append(path)
            continue
        inside = []
        for root, dirs, _ in os.walk(path):
            dirs.sort()
            if _is_run_dir(Path(root)):
                inside.append(Path(root))
                dirs[:] = []  # a run's own folders (checkpoints, tb) hold no runs
        if not inside:
            raise ConfigError(f"{str(path)!r} is not a run directory (no config.yaml or metrics.csv) and holds none")
        found += inside
    unique = []
    for p in found:
        if p.resolve() not in {q.resolve() for q in unique}:
            unique.append(p)
    return unique


def _read_yaml(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    return data if isinstance(data, dict) else None


def _read_run(path: Path) -> dict:
    """What aggregate needs of one run directory; "skip" says why it is left out, if it is."""
    config = _read_yaml(path / "config.yaml")
    summary_path = path / "summary.json"
    summary = None
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{summary_path} is not valid JSON: {e}") from None
    try:
        algo = config["algo"] if config else summary["algo"]
        env = config["env"]["name"] if config else summary["env"]
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: cannot tell its algorithm and env (config.yaml needs algo and env.name)") from None
    cell = _read_cell(path)
    if cell is not None:  # a preset's or a sweep's cell: grouped by its label (e.g. "remix w_min=0.5")
        algo = cell["label"]
    run = {"path": path, "algo": str(algo), "env": str(env), "config": config, "stopped": None, "skip": None}
    if summary is None:
        run["skip"] = "unfinished (no summary.json)"
        return run
    run["stopped"] = summary.get("stopped")
    if run["stopped"] and not str(run["stopped"]).startswith("diverged"):
        run["skip"] = f"{run['stopped']} (resume it first)"
        return run
    run["rows"] = read_rows(path)
    if not run["rows"]:
        run["skip"] = "no logged point"
    return run


def _read_cell(path: Path) -> dict | None:
    """cell.json of a run directory that an experiment wrote (`coopmarl.experiments.executor`), or None."""
    cell_path = path / "cell.json"
    if not cell_path.is_file():
        return None
    try:
        cell = json.loads(cell_path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cell_path} is not valid JSON: {e}") from None
    if not isinstance(cell, dict) or not isinstance(cell.get("label"), str) or not cell["label"]:
        raise ConfigError(f"{cell_path} is not a coopmarl cell file (needs a non-empty label)")
    return cell


def _final_values(rows: list[tuple], metric: str) -> dict[int, float]:
    """seed -> the metric's value at that seed's last logged point."""
    last: dict[int, tuple[int, float]] = {}
    for seed, step, name, value in rows:
        if name == metric and (seed not in last or step >= last[seed][0]):
            last[seed] = (step, value)
    return {seed: v for seed, (_, v) in last.items()}


def _check_group(algo: str, env: str, runs: list[dict]):
    """Runs pooled into one group share their settings and never repeat a seed."""
    first = runs[0]
    for other in runs[1:]:
        a, b = first["config"], other["config"]
        if a is None or b is None:
            continue
        pairs = [(f"env.{k}", a.get("env", {}), b.get("env", {}), k) for k in {*a.get("env", {}), *b.get("env", {})}]
        pairs += [(k, a.get("algo_config", {}), b.get("algo_config", {}), k)
                  for k in {*a.get("algo_config", {}), *b.get("algo_config", {})}]
        pairs += [(k, a.get("run", {}), b.get("run", {}), k) for k in _SHARED_RUN_KEYS]
        for label, x, y, k in sorted(pairs, key=lambda p: p[0]):
            if x.get(k) != y.get(k):
                raise ConfigError(f"runs of {algo} on {env} differ in {label} ({first['path']}: {x.get(k)!r}, "
                                  f"{other['path']}: {y.get(k)!r}): aggregate one configuration at a time "
                                  "(give the runs of each separately)")
    owner: dict[int, Path] = {}
    for run in runs:
        for seed in sorted({r[0] for r in run["rows"]}):
            if seed in owner:
                raise ConfigError(f"seed {seed} of {algo} on {env} appears in two runs ({owner[seed]} and "
                                  f"{run['path']}): it would count twice; give one of them")
            owner[seed] = run["path"]


def estimate_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator for one estimate, from `seed` and the estimate's names: adding or removing other runs does
    not change an estimate's interval."""
    return np.random.default_rng([seed, zlib.crc32("\0".join(names).encode())])


def merge_marl_eval(parts: Sequence[dict]) -> dict:
    """One marl-eval JSON from several (`stats.marl_eval_json`); a run (seed) given twice is a ConfigError."""
    merged: dict = {}
    for part in parts:
        for env, tasks in part.items():
            for task, algos in tasks.items():
                for algo, runs in algos.items():
                    into = merged.setdefault(env, {}).setdefault(task, {}).setdefault(algo, {})
                    for run, data in runs.items():
                        if run in into:
                            raise ConfigError(f"marl-eval data: {env}/{task}/{algo}/{run} given twice")
                        into[run] = data
    return merged


def _check_settings(metrics, reps, profile_reps, seed, gap_threshold, confidence) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(dict.fromkeys(metrics or ["eval_return"]))
    for name, value in (("reps", reps), ("profile_reps", profile_reps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} (bootstrap replicates) must be an integer >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if (isinstance(gap_threshold, bool) or not isinstance(gap_threshold, (int, float))
            or not math.isfinite(gap_threshold)):
        raise ConfigError(f"gap_threshold must be a finite number, got {gap_threshold!r}")
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    return metrics


def aggregate(runs: str | Path | Sequence[str | Path], metrics: str | Sequence[str] | None = None, *,
              out: str | Path | None = None, reps: int = stats.DEFAULT_REPS, profile_reps: int = stats.PROFILE_REPS,
              seed: int = 0, gap_threshold: float = 1.0, confidence: float = stats.CONFIDENCE,
              write: bool = True, plots: bool = True) -> dict:
    """Aggregate statistics of run directories (or folders of them) and, with `write`, the files in `out`
    (default: the one folder given, else ./aggregate): aggregate.json (the returned dict), marl_eval.json (every
    run merged), performance_profile_METRIC.png and aggregate_intervals_METRIC.png.

    The dict: `{algo: {env: {metric: {"iqm", "iqm_ci", "mean", "mean_ci", "median", "median_ci",
    "optimality_gap", "optimality_gap_ci", "n_seeds", "n_nonfinite"}}}}`, with
    "probability_of_improvement" `{metric: {x: {y: {"p", "ci", "envs"}}}}` (P(a run of x beats one of y),
    averaged over the envs both ran), "performance_profile" `{metric: {env: {"tau": [...], "algos":
    {algo: {"fraction", "low", "high"}}}}}` and "settings" (metrics, reps, seed, confidence, the gap
    threshold, the runs used and the runs skipped, and why). Intervals are stratified bootstrap percentile
    intervals (`reps` replicates; `profile_reps` for profiles) from generators seeded by `seed` and the
    estimate's names. Every input is checked before anything is written."""
    metrics = _check_settings(metrics, reps, profile_reps, seed, gap_threshold, confidence)
    paths = find_runs(runs)
    given = _given(runs)
    if out is None:  # one folder of runs: into it; else (a run directory, several paths) ./aggregate
        out = Path(given[0]) if len(given) == 1 and not _is_run_dir(Path(given[0])) else Path("aggregate")
    out = Path(out)
    if write:
        _check_out(out)
    loaded = [_read_run(p) for p in paths]
    used = [r for r in loaded if r["skip"] is None]
    skipped = {str(r["path"]): r["skip"] for r in loaded if r["skip"] is not None}
    if not used:
        why = "; ".join(f"{p}: {w}" for p, w in skipped.items())
        raise ConfigError(f"no finished run to aggregate among {len(loaded)} run "
                          f"director{'y' if len(loaded) == 1 else 'ies'}: {why}")
    logged = sorted({r[2] for run in used for r in run["rows"]})
    for m in metrics:
        if m not in logged:
            raise ConfigError(f"unknown metric {m!r}.{did_you_mean(m, logged)} The runs logged: {', '.join(logged)}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in used:
        groups.setdefault((run["algo"], run["env"]), []).append(run)
    for (algo, env), members in groups.items():
        if algo in SECTIONS:
            raise ConfigError(f"an algorithm named {algo!r} collides with aggregate.json's section {algo!r}")
        _check_group(algo, env, members)

    scores: dict[str, dict[tuple[str, str], np.ndarray]] = {m: {} for m in metrics}
    report: dict = {}
    not_logged: dict[str, list[str]] = {}  # metric -> the groups that never logged it
    for (algo, env) in sorted(groups):
        for m in metrics:
            values = {}
            for run in groups[(algo, env)]:
                values.update(_final_values(run["rows"], m))
            if not values:
                not_logged.setdefault(m, []).append(f"{algo} on {env}")
                continue
            x = np.array([values[s] for s in sorted(values)], dtype=np.float64)
            finite = x[np.isfinite(x)]
            cell = {"n_seeds": int(finite.size), "n_nonfinite": int(x.size - finite.size)}
            if finite.size:
                scores[m][(algo, env)] = finite
                est = stats.interval_estimates(finite, ("iqm", "mean", "run_median", "optimality_gap"), reps=reps,
                                               rng=estimate_rng(seed, algo, env, m), confidence=confidence,
                                               gap_threshold=float(gap_threshold))
                est["median"] = est.pop("run_median")  # one task: the median over its seeds
                for k in ("iqm", "mean", "median", "optimality_gap"):
                    cell[k], cell[f"{k}_ci"] = est[k].value, [est[k].low, est[k].high]
            else:
                for k in ("iqm", "mean", "median", "optimality_gap"):
                    cell[k], cell[f"{k}_ci"] = None, None
            report.setdefault(algo, {}).setdefault(env, {})[m] = {k: cell[k] for k in (
                "iqm", "iqm_ci", "mean", "mean_ci", "median", "median_ci", "optimality_gap", "optimality_gap_ci",
                "n_seeds", "n_nonfinite")}

    report["probability_of_improvement"] = {m: _improvement(scores[m], reps, seed, m, confidence) for m in metrics}
    report["performance_profile"] = {m: _profiles(scores[m], profile_reps, seed, m, confidence) for m in metrics}
    report["settings"] = {
        "metrics": metrics, "score": "each seed's value at its last logged point", "reps": int(reps),
        "profile_reps": int(profile_reps), "seed": int(seed), "confidence": float(confidence),
        "gap_threshold": float(gap_threshold), "interval": "stratified bootstrap, percentile (Agarwal et al. 2021)",
        "median": "median over the seeds of each (algo, env)", "out": str(out),
        "runs": [str(r["path"]) for r in used], "skipped": skipped,
        "diverged": [str(r["path"]) for r in used if r["stopped"]], "not_logged": not_logged,
    }
    if write:
        marl = merge_marl_eval([stats.marl_eval_json(_labelled(load_run(r["path"]), r["algo"])) for r in used])
        atomic_write(out / "aggregate.json", json.dumps(report, indent=2))
        atomic_write(out / "marl_eval.json", json.dumps(marl, indent=1))
        for m in metrics if plots else ():
            if scores[m]:
                _plot_profiles(report["performance_profile"][m], m, out / f"performance_profile_{m}.png")
                _plot_intervals(report, m, out / f"aggregate_intervals_{m}.png")
    return report


def _labelled(result, algo: str):
    result.algo = algo  # an experiment's cell is named by its label
    return result


def _given(runs) -> list:
    return [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)


def _check_out(out: Path):
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {str(out)!r}: {str(parent)!r} is a file: name a directory")


def _improvement(scores: dict[tuple[str, str], np.ndarray], reps: int, seed: int, metric: str,
                 confidence: float) -> dict:
    """{x: {y: {"p", "ci", "envs"}}} for every pair of algorithms that ran a common env."""
    algos = sorted({a for a, _ in scores})
    out: dict = {}
    for i, x in enumerate(algos):
        for y in algos[i + 1:]:
            envs = sorted({e for a, e in scores if a == x} & {e for a, e in scores if a == y})
            if not envs:
                continue
            est = stats.probability_of_improvement_interval(
                [scores[(x, e)] for e in envs], [scores[(y, e)] for e in envs], reps=reps,
                rng=estimate_rng(seed, "probability_of_improvement", x, y, metric), confidence=confidence)
            out.setdefault(x, {})[y] = {"p": est.value, "ci": [est.low, est.high], "envs": envs}
            # P(Y > X) = 1 - P(X > Y) on every resample (ties count one half both ways)
            out.setdefault(y, {})[x] = {"p": 1.0 - est.value, "ci": [1.0 - est.high, 1.0 - est.low], "envs": envs}
    return out


def _profiles(scores: dict[tuple[str, str], np.ndarray], reps: int, seed: int, metric: str, confidence: float) -> dict:
    """{env: {"tau": [...], "algos": {algo: {"fraction", "low", "high"}}}}; thresholds span the env's scores."""
    out = {}
    for env in sorted({e for _, e in scores}):
        cells = {a: s for (a, e), s in sorted(scores.items()) if e == env}
        everything = np.concatenate(list(cells.values()))
        lo, hi = float(everything.min()), float(everything.max())
        pad = 0.05 * (hi - lo) if hi > lo else max(0.5, 0.05 * abs(lo))
        taus = np.linspace(lo - pad, hi + pad, PROFILE_POINTS)
        algos = {}
        for algo, s in cells.items():
            rng = estimate_rng(seed, "performance_profile", algo, env, metric)
            frac, low, high = stats.performance_profile_interval(s, taus, reps=reps, confidence=confidence, rng=rng)
            algos[algo] = {"fraction": frac.tolist(), "low": low.tolist(), "high": high.tolist()}
        out[env] = {"tau": taus.tolist(), "algos": algos}
    return out


def _plot_profiles(profiles: dict, metric: str, path: Path):
    from coopmarl.plots import save_figure

    import matplotlib.pyplot as plt

    envs = list(profiles)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.3), squeeze=False)
    for ax, env in zip(axes[0], envs):
        taus = profiles[env]["tau"]
        for algo, p in profiles[env]["algos"].items():
            line, = ax.plot(taus, p["fraction"], label=algo)
            ax.fill_between(taus, p["low"], p["high"], alpha=0.2, color=line.get_color())
        ax.set_title(env, fontsize=9)
        ax.set_xlabel(f"{metric} threshold tau")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"fraction of runs with {metric} > tau")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("performance profiles (95% stratified bootstrap bands)", fontsize=10)
    save_figure(fig, path)


def _plot_intervals(report: dict, metric: str, path: Path):
    from coopmarl.plots import save_figure

    import matplotlib.pyplot as plt

    algos = sorted(a for a in report if a not in SECTIONS)
    envs = sorted({e for a in algos for e in report[a] if metric in report[a][e]})
    columns = ("iqm", "mean", "median", "optimality_gap")
    fig, axes = plt.subplots(len(envs), len(columns), squeeze=False, constrained_layout=True,
                             figsize=(3.2 * len(columns), 0.6 + (0.6 + 0.35 * len(algos)) * len(envs)))
    for r, (row, env) in enumerate(zip(axes, envs)):
        for ax, stat in zip(row, columns):
            for i, algo in enumerate(algos):
                cell = report[algo].get(env, {}).get(metric)
                if not cell or cell[stat] is None:
                    continue
                lo, hi = cell[f"{stat}_ci"]
                color = f"C{i % 10}"
                ax.plot([lo, hi], [i, i], color=color, lw=6, alpha=0.5, solid_capstyle="butt")
                ax.plot([cell[stat]], [i], "|", color="k", ms=12)
            ax.set_yticks(range(len(algos)))
            ax.set_yticklabels(algos if stat == columns[0] else [""] * len(algos), fontsize=8)
            ax.set_ylim(-0.7, len(algos) - 0.3)
            ax.grid(alpha=0.3, axis="x")
            if r == 0:
                ax.set_title("IQM" if stat == "iqm" else stat.replace("_", " "), fontsize=9)
            if stat == columns[0]:
                ax.set_ylabel(env, fontsize=9)
    fig.suptitle(f"{metric}: point estimates and 95% stratified bootstrap intervals over seeds", fontsize=10)
    save_figure(fig, path)
