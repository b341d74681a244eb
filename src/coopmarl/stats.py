"""Aggregate statistics over independent runs, as the field's standard has them: Agarwal et al. (2021),
"Deep Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS), and its library rliable
(github.com/google-research/rliable). numpy only; pure functions; every random draw comes from an explicit
`np.random.Generator` (or an int seed for one), so the same inputs and seed give the same intervals.

Scores are a (runs x tasks) matrix, as in rliable, or a sequence of 1-D arrays, one per task, when tasks have
different numbers of runs (seeds). With equal numbers of runs every estimate below equals rliable's:

- `iqm`: the interquartile mean, the mean of the middle 50% of all runs of all tasks pooled
  (`scipy.stats.trim_mean(scores, 0.25, axis=None)`, rliable's `aggregate_iqm`);
- `mean`: the mean over tasks of each task's mean over runs (`aggregate_mean`);
- `median`: the median over tasks of each task's mean over runs (`aggregate_median`; with one task it is
  the mean); `run_median` is the median of all runs pooled, the median "over seeds" of one task;
- `optimality_gap`: `threshold - mean(min(score, threshold))`, how far runs fall short of `threshold`
  (gamma; 1 for normalised scores; `aggregate_optimality_gap`), the mean taken over tasks of per-task means;
- `probability_of_improvement(x, y)`: P(X > Y), for each task the Mann-Whitney U statistic of x's runs against
  y's divided by n_x n_y (ties count one half), averaged over tasks;
- `performance_profile`: for each threshold tau, the fraction of runs scoring above tau (rliable's score
  distribution, `np.mean(scores > tau)`), averaged over tasks.

Confidence intervals are percentile intervals of the stratified bootstrap (Agarwal et al. §A.1;
rliable's `StratifiedBootstrap` and `get_interval_estimates(method='percentile')`): each replicate resamples
the runs of every task with replacement, within that task; for probability of improvement the runs of x and y
are resampled independently within each task (rliable's `StratifiedIndependentBootstrap`). The defaults
are rliable's: 95% intervals, 50,000 replicates for interval estimates (`DEFAULT_REPS`) and 2,000 for
performance profiles (`PROFILE_REPS`). A bootstrap of one run per task, or of a constant sample, gives a
point interval: it cannot show more variation than the runs do.

`marl_eval_json` writes a run in the raw-data layout of InstaDeep's marl-eval (Gorsane et al. 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["DEFAULT_REPS", "PROFILE_REPS", "CONFIDENCE", "Estimate", "as_tasks", "trimmed_mean", "iqm", "mean",
           "median", "run_median", "optimality_gap", "STATISTICS", "stratified_bootstrap", "percentile_interval",
           "interval_estimates", "probability_of_improvement", "probability_of_improvement_interval",
           "performance_profile", "performance_profile_interval", "marl_eval_names", "marl_eval_json"]

DEFAULT_REPS = 50_000  # rliable.library.get_interval_estimates(reps=50000)
PROFILE_REPS = 2_000  # rliable.library.create_performance_profile(reps=2000)
CONFIDENCE = 0.95  # rliable's confidence_interval_size
_CHUNK = 1 << 22  # numbers held at once by one chunk of bootstrap replicates


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval [low, high]."""

    value: float
    low: float
    high: float

    @property
    def ci(self) -> tuple[float, float]:
        return (self.low, self.high)


def as_tasks(scores) -> list[np.ndarray]:
    """Scores as one float64 1-D array of runs per task: a 1-D array is one task, a 2-D array is (runs x tasks),
    any other sequence holds one array of runs per task. Every task needs a run; every score must be finite."""
    if isinstance(scores, np.ndarray):
        if scores.ndim == 1:
            tasks = [scores]
        elif scores.ndim == 2:
            tasks = list(scores.T)
        else:
            raise ValueError(f"scores must be (runs x tasks), got an array of shape {scores.shape}")
    else:
        tasks = list(scores)
    tasks = [np.asarray(t, dtype=np.float64).reshape(-1) for t in tasks]
    if not tasks:
        raise ValueError("scores hold no task")
    for i, t in enumerate(tasks):
        if not t.size:
            raise ValueError(f"task {i} has no run")
        if not np.isfinite(t).all():
            raise ValueError(f"task {i} has a non-finite score: {t[~np.isfinite(t)][0]}")
    return tasks


# ---- statistics of a batch of resamples: a list (one per task) of [B, n_task] arrays -> [B] -------------------


def trimmed_mean(x: np.ndarray, proportion: float = 0.25) -> np.ndarray:
    """Mean along the last axis after cutting int(proportion * n) of the lowest and of the highest values
    (scipy.stats.trim_mean's definition)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=-1)
    n = x.shape[-1]
    cut = int(proportion * n)
    if cut >= n - cut:
        raise ValueError(f"trimming {proportion} from each end of {n} values leaves none")
    return x[..., cut:n - cut].mean(axis=-1)


def _iqm(batch: list[np.ndarray]) -> np.ndarray:
    # Agarwal et al. §4.1: the 25% trimmed mean of all runs of all tasks pooled
    return trimmed_mean(np.concatenate(batch, axis=-1), 0.25)


def _task_means(batch: list[np.ndarray]) -> np.ndarray:
    return np.stack([t.mean(axis=-1) for t in batch], axis=-1)  # [B, tasks]


def _mean(batch):
    return _task_means(batch).mean(axis=-1)


def _median(batch):
    return np.median(_task_means(batch), axis=-1)


def _run_median(batch):
    return np.median(np.concatenate(batch, axis=-1), axis=-1)


def _gap(threshold: float) -> Callable:
    def gap(batch):
        # Agarwal et al. §4.1: gamma - mean(min(x, gamma)); per-task means, then their mean
        return threshold - np.stack([np.minimum(t, threshold).mean(axis=-1) for t in batch], axis=-1).mean(axis=-1)

    return gap


STATISTICS = ("iqm", "mean", "median", "run_median", "optimality_gap")


def _statistic(name: str, gap_threshold: float) -> Callable:
    table = {"iqm": _iqm, "mean": _mean, "median": _median, "run_median": _run_median,
             "optimality_gap": _gap(gap_threshold)}
    if name not in table:
        raise ValueError(f"unknown statistic {name!r}; valid: {', '.join(STATISTICS)}")
    return table[name]


def _point(fn: Callable, tasks: list[np.ndarray]) -> float:
    return float(fn([t[None, :] for t in tasks])[0])


def iqm(scores) -> float:
    """Interquartile mean of all runs of all tasks pooled (rliable's `aggregate_iqm`)."""
    return _point(_iqm, as_tasks(scores))


def mean(scores) -> float:
    """Mean over tasks of each task's mean over runs (rliable's `aggregate_mean`)."""
    return _point(_mean, as_tasks(scores))


def median(scores) -> float:
    """Median over tasks of each task's mean over runs (rliable's `aggregate_median`)."""
    return _point(_median, as_tasks(scores))


def run_median(scores) -> float:
    """Median of all runs pooled (for one task: the median over seeds)."""
    return _point(_run_median, as_tasks(scores))


def optimality_gap(scores, threshold: float = 1.0) -> float:
    """`threshold - mean(min(scores, threshold))` (rliable's `aggregate_optimality_gap`, gamma = threshold)."""
    return _point(_gap(float(threshold)), as_tasks(scores))


# ---- the stratified bootstrap ------------------------------------------------------------------------------


def _resample(tasks: list[np.ndarray], b: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`b` replicates of every task's runs, drawn with replacement within the task: [b, n_task] each."""
    return [t[rng.integers(0, t.size, size=(b, t.size))] for t in tasks]


def _chunks(reps: int, per_replicate: int):
    size = max(1, _CHUNK // max(1, per_replicate))
    for start in range(0, reps, size):
        yield min(size, reps - start)


def _check_reps(reps: int):
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be an integer >= 1, got {reps!r}")


def stratified_bootstrap(scores, statistic: Callable, reps: int = DEFAULT_REPS,
                         rng: np.random.Generator | int | None = 0, cost: int = 1) -> np.ndarray:
    """`reps` values of `statistic` on stratified bootstrap resamples of `scores` (runs resampled with
    replacement within each task; Agarwal et al. §A.1). `statistic` maps a list (one per task) of
    [B, n_task] resampled arrays to an array with leading axis B. `cost` (numbers per run the statistic
    holds at once) only sizes the chunks. Returns [reps, ...]."""
    _check_reps(reps)
    tasks = as_tasks(scores)
    rng = np.random.default_rng(rng)
    n = sum(t.size for t in tasks)
    return np.concatenate([np.asarray(statistic(_resample(tasks, b, rng))) for b in _chunks(reps, n * cost)])


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval: the (1 - c)/2 and (1 + c)/2 quantiles of the replicates along axis 0
    (linear interpolation, as numpy's and arch's percentile method)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    low, high = np.percentile(np.asarray(samples, dtype=np.float64), [50 * (1 - confidence), 50 * (1 + confidence)],
                              axis=0)
    return low, high


def interval_estimates(scores, statistics: Sequence[str] = ("iqm", "mean", "median", "optimality_gap"), *,
                       reps: int = DEFAULT_REPS, rng: np.random.Generator | int | None = 0,
                       confidence: float = CONFIDENCE, gap_threshold: float = 1.0) -> dict[str, Estimate]:
    """Point estimates of `statistics` (names in `STATISTICS`) with stratified bootstrap percentile intervals,
    all computed on the same `reps` resamples."""
    tasks = as_tasks(scores)
    if not math.isfinite(gap_threshold):
        raise ValueError(f"gap_threshold must be finite, got {gap_threshold!r}")
    fns = [_statistic(s, float(gap_threshold)) for s in statistics]
    samples = stratified_bootstrap(tasks, lambda batch: np.stack([f(batch) for f in fns], axis=-1), reps, rng,
                                   cost=2)
    low, high = percentile_interval(samples, confidence)
    return {s: Estimate(_point(f, tasks), float(lo), float(hi)) for s, f, lo, hi in zip(statistics, fns, low, high)}


# ---- probability of improvement ----------------------------------------------------------------------------


def _poi(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """[B] P(X > Y) averaged over tasks; per task the Mann-Whitney U of x over y divided by n_x n_y."""
    per_task = []
    for x, y in zip(xs, ys):
        a, b = x[:, :, None], y[:, None, :]
        per_task.append(((a > b).mean(axis=(1, 2)) + 0.5 * (a == b).mean(axis=(1, 2))))
    return np.stack(per_task, axis=-1).mean(axis=-1)


def _pair(x, y) -> tuple[list[np.ndarray], list[np.ndarray]]:
    xs, ys = as_tasks(x), as_tasks(y)
    if len(xs) != len(ys):
        raise ValueError(f"x and y must hold the same tasks, got {len(xs)} and {len(ys)}")
    return xs, ys


def probability_of_improvement(x, y) -> float:
    """P(X > Y): the probability that a run of algorithm X scores above a run of Y on a task, averaged over
    tasks (Agarwal et al. §4.3; rliable's `probability_of_improvement`, which uses scipy's
    `mannwhitneyu(x, y, alternative='greater')` statistic over n_x n_y). Ties count one half; x and y hold the
    same tasks in the same order, each with its own number of runs."""
    xs, ys = _pair(x, y)
    return float(_poi([t[None] for t in xs], [t[None] for t in ys])[0])


def probability_of_improvement_interval(x, y, *, reps: int = DEFAULT_REPS,
                                        rng: np.random.Generator | int | None = 0,
                                        confidence: float = CONFIDENCE) -> Estimate:
    """P(X > Y) with its percentile interval from the stratified bootstrap that resamples x's runs and y's runs
    independently within each task (rliable's `StratifiedIndependentBootstrap`)."""
    _check_reps(reps)
    xs, ys = _pair(x, y)
    rng = np.random.default_rng(rng)
    per_replicate = sum(a.size * b.size + a.size + b.size for a, b in zip(xs, ys))
    samples = np.concatenate([_poi(_resample(xs, b, rng), _resample(ys, b, rng))
                              for b in _chunks(reps, 3 * per_replicate)])
    low, high = percentile_interval(samples, confidence)
    return Estimate(probability_of_improvement(xs, ys), float(low), float(high))


# ---- performance profiles ----------------------------------------------------------------------------------


def _profile(taus: np.ndarray) -> Callable:
    def profile(batch):
        # rliable's score distribution: the fraction of runs above tau, here per task then averaged over tasks
        return np.stack([(t[:, :, None] > taus).mean(axis=1) for t in batch], axis=-1).mean(axis=-1)  # [B, T]

    return profile


def _taus(taus) -> np.ndarray:
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)
    if not taus.size or not np.isfinite(taus).all():
        raise ValueError("taus must be a non-empty list of finite thresholds")
    return taus


def performance_profile(scores, taus) -> np.ndarray:
    """For each threshold tau, the fraction of runs with a score above tau, averaged over tasks (Agarwal et al.
    §4.2; rliable's `create_performance_profile` with `use_score_distribution=True`)."""
    taus = _taus(taus)
    return _profile(taus)([t[None] for t in as_tasks(scores)])[0]


def performance_profile_interval(scores, taus, *, reps: int = PROFILE_REPS,
                                 rng: np.random.Generator | int | None = 0,
                                 confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile, low, high) at every tau: the performance profile and its pointwise stratified bootstrap
    percentile intervals."""
    taus = _taus(taus)
    tasks = as_tasks(scores)
    samples = stratified_bootstrap(tasks, _profile(taus), reps, rng, cost=taus.size + 1)
    low, high = percentile_interval(samples, confidence)
    return performance_profile(tasks, taus), low, high


# ---- marl-eval's raw-data JSON -----------------------------------------------------------------------------


def marl_eval_names(env: str) -> tuple[str, str]:
    """(environment_name, task_name) of a coopmarl env name for marl-eval: a family name is split at its first
    ':' (`lbf:5x5-2p-1f-coop` -> ("lbf", "5x5-2p-1f-coop"), `smax:3s5z`, `mpe:spread`, `tabular:PATH`); a name
    without ':' (`climbing`, `foraging`, `predator-prey`) is a task of the environment "coopmarl"."""
    family, sep, task = env.partition(":")
    return (family, task) if sep else ("coopmarl", env)


def marl_eval_json(result) -> dict:
    """A run (`RunResult`) as marl-eval's raw experiment data (Gorsane et al. 2022; instadeepai/marl-eval's
    README, "Data Structure for Raw Experiment data", and its `JsonLogger`):

        {env_name: {task_name: {algo: {"seed_S": {"step_0": {"step_count": env_steps, metric: [value], ...},
                                                  ..., "step_K": {...},
                                                  "absolute_metrics": {metric: [value], ...}}}}}}

    One "step_i" per logged point (i from 0), every logged metric as a one-element list (coopmarl logs each
    seed's value, already averaged over its evaluation episodes), and "absolute_metrics" last (marl-eval reads
    the last key of a run as the absolute metrics) holding the final point's values: coopmarl does not run
    the protocol's 10x-episode evaluation of the best policy. A missing value is NaN, as Python's json reads it."""
    env, task = marl_eval_names(result.env)
    names = sorted(result.metrics)
    steps = np.asarray(result.steps).reshape(-1)
    runs = {}
    for j, seed in enumerate(result.seeds):
        run = {}
        for i, step in enumerate(steps):
            run[f"step_{i}"] = {"step_count": int(step),
                                **{n: [float(np.asarray(result.metrics[n])[i, j])] for n in names}}
        run["absolute_metrics"] = ({n: [float(np.asarray(result.metrics[n])[-1, j])] for n in names}
                                   if steps.size else {})
        runs[f"seed_{seed}"] = run
    return {env: {task: {result.algo: runs}}}
