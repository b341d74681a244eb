"""What every experiment's table says about its numbers, computed one way (`coopmarl.stats`, as `coopmarl aggregate`
does): the IQM over seeds with its 95% stratified bootstrap interval, the mean ± the *sample* standard deviation,
and comparisons only as a probability of improvement with its interval — never a bare "A ≥ B".

    estimate(final_values, label, env, metric)  -> {"iqm", "iqm_ci", "mean", "mean_ci", "median", "sd", "n", …}
    iqm_ci(est)  -> "0.84 [0.80, 0.88]"          mean_sd(est) -> "0.84 ± 0.03"
    improvement(x_values, y_values, "DPO", "IPPO", names) -> "P(DPO > IPPO) = 0.75 [0.25, 1.00] (3 vs 3 seeds)"

Intervals come from generators seeded by the estimate's names (as in `coopmarl.aggregation`), so a table is the
same every time it is rebuilt, and equal to the preset's aggregate.json.
"""

from __future__ import annotations

import numpy as np

from coopmarl import stats

__all__ = ["STATS_NOTE", "estimate", "iqm_ci", "mean_sd", "improvement", "cell_score", "plot_cells", "write_outputs",
           "win_rate"]

STATS_NOTE = ("Statistics over seeds (each seed's value at the last logged point): IQM = interquartile mean with its "
              f"{stats.CONFIDENCE:.0%} stratified bootstrap interval [low, high] ({stats.DEFAULT_REPS:,} resamples; "
              "Agarwal et al. 2021, as `coopmarl aggregate` and rliable compute it); mean ± sample standard deviation "
              "(n − 1). With 2–3 seeds the intervals are wide: read them before any ranking.")


def estimate(values, label: str, env: str, metric: str) -> dict | None:
    """The statistics of one cell's final values over seeds (non-finite values left out and counted)."""
    from coopmarl.aggregation import estimate_rng

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = x[np.isfinite(x)]
    if not finite.size:
        return None
    est = stats.interval_estimates(finite, ("iqm", "mean", "run_median"), rng=estimate_rng(0, label, env, metric))
    return {"iqm": est["iqm"].value, "iqm_ci": list(est["iqm"].ci), "mean": est["mean"].value,
            "mean_ci": list(est["mean"].ci), "median": est["run_median"].value,
            "sd": float(np.std(finite, ddof=1)) if finite.size > 1 else None, "n": int(finite.size),
            "n_nonfinite": int(x.size - finite.size)}


def _f(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def iqm_ci(est: dict | None, digits: int = 2) -> str:
    """'IQM [low, high]', or '—' without a finite value."""
    if est is None:
        return "—"
    lo, hi = est["iqm_ci"]
    return f"{_f(est['iqm'], digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


def mean_sd(est: dict | None, digits: int = 2) -> str:
    """'mean ± sample sd' ('mean (1 seed)' for one seed), or '—'."""
    if est is None:
        return "—"
    if est["sd"] is None:
        return f"{_f(est['mean'], digits)} (1 seed)"
    return f"{_f(est['mean'], digits)} ± {_f(est['sd'], digits)}"


def improvement(x, y, name_x: str, name_y: str, *names: str) -> str:
    """'P(X > Y) = p [low, high] (n vs m seeds)': the probability that a seed of X ends above a seed of Y
    (ties count one half), with its stratified bootstrap interval; '—' when either has no finite value."""
    from coopmarl.aggregation import estimate_rng

    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not x.size or not y.size:
        return f"P({name_x} > {name_y}): —"
    est = stats.probability_of_improvement_interval(x, y, rng=estimate_rng(0, name_x, name_y, *names))
    return (f"P({name_x} > {name_y}) = {est.value:.2f} [{est.low:.2f}, {est.high:.2f}] "
            f"({x.size} vs {y.size} seeds)")


def cell_score(run, metric: str, digits: int = 2) -> list[str]:
    """[IQM [CI], mean ± sd] of one finished cell (`executor.CellRun`), marking a diverged cell."""
    est = estimate(run.final(metric), run.label, run.cell.env, metric)
    cols = [iqm_ci(est, digits), mean_sd(est, digits)]
    if run.stopped:
        cols[0] += f" ({run.stopped})"
    return cols


def plot_cells(runs, path, metrics, title: str = "", hlines: dict | None = None) -> str:
    """Learning curves of finished cells (`executor.CellRun`s), one line per cell (its label), one panel per metric
    that any of them logged; returns the file name."""
    from coopmarl.plots import plot_curves

    runs = list(runs)
    metrics = [m for m in metrics if any(m in r.result.metrics for r in runs)]
    plot_curves([r.result for r in runs], path, metrics=list(metrics), labels=[r.label for r in runs], hlines=hlines,
                title=title)
    return path.name


def write_outputs(report, runs, exp, opts: dict):
    """An experiment's own files beside its cells' run directories: table.md (with the notes every table carries),
    aggregate.json and marl_eval.json (`coopmarl aggregate` over the cells, grouped by their labels)."""
    from coopmarl.files import atomic_write

    cells = list(runs)
    if cells:
        diverged = [f"{r.cell.path} ({r.stopped})" for r in cells if r.stopped]
        if diverged:
            report.notes.append("Diverged (kept at their last finite point, not rerun): " + "; ".join(diverged) + ".")
        report.notes.append(STATS_NOTE)
        report.notes.append(f"Training time {runs.wall_time:.0f} s summed over the {len(cells)} runs (their "
                            "summary.json); every run's files are in its own directory under this folder.")
    if opts:
        report.notes.append("Options: " + ", ".join(f"{k}={v}" for k, v in opts.items()) + ".")
    atomic_write(runs.out / "table.md", report.markdown())
    if cells:
        from coopmarl.aggregation import aggregate

        logged = set().union(*(r.result.metrics for r in cells))
        metrics = [m for m in exp.metrics if m in logged] or ["eval_return"]
        if any(m in logged for m in metrics):
            aggregate([r.dir for r in cells], metrics, out=runs.out, plots=False)


def win_rate(run, n_episodes: int = 32) -> np.ndarray:
    """Each seed's win rate over `n_episodes` greedy episodes of its final policy (an SMAX run), through the one
    evaluation module: SMAX's `battle_won` at each episode's end (the bridge declares it in `eval_metrics`)."""
    import jax

    from coopmarl.evaluation import evaluate_states

    resolved, state = run.state()
    keys = [jax.random.PRNGKey(10_000 + s) for s in run.result.seeds]
    return np.asarray(evaluate_states(resolved.algo, resolved.env, resolved.config, state, keys,
                                      n_episodes)["win_rate"], dtype=float)
