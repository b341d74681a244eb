"""Learning-curve plots (matplotlib, Agg backend): mean over seeds with a standard-error band."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coopmarl.errors import ConfigError, did_you_mean  # noqa: E402
from coopmarl.files import atomic_write  # noqa: E402
from coopmarl.results import RunResult  # noqa: E402

DEFAULT_METRICS = ("eval_return", "train_return", "regret", "p_optimal")


def _band(ax, x, values, label):
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return
    mean = np.nanmean(np.where(finite, values, np.nan), axis=1)
    n = np.maximum(finite.sum(1), 1)
    sem = np.nanstd(np.where(finite, values, np.nan), axis=1) / np.sqrt(n)
    line, = ax.plot(x, mean, label=label)
    ax.fill_between(x, mean - sem, mean + sem, alpha=0.2, color=line.get_color())


def save_figure(fig, path: Path):
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def plot_curves(results: Sequence[RunResult], path: Path, metrics: Sequence[str] | None = None,
                labels: Sequence[str] | None = None, hlines: dict[str, float] | None = None, title: str = ""):
    """One panel per metric; one line per run (mean ± s.e.m. over seeds). A requested metric that none of
    the runs logged is a ConfigError naming the ones they did."""
    available = sorted({m for r in results for m in r.metrics})
    unknown = [m for m in (metrics or ()) if m not in available]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}.{did_you_mean(unknown[0], available)} "
                          f"The runs logged: {', '.join(available) or '(nothing)'}")
    metrics = [m for m in (metrics or DEFAULT_METRICS) if any(m in r.metrics for r in results)]
    if not metrics:
        metrics = sorted({m for r in results for m in r.metrics})[:4]
    labels = labels or [f"{r.algo} on {r.env}" if r.env else r.algo for r in results]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for r, label in zip(results, labels):
            if metric in r.metrics:
                _band(ax, r.steps, r.metrics[metric], label)
        if hlines and metric in hlines:
            ax.axhline(hlines[metric], color="k", ls="--", lw=1, label="optimum")
        ax.set_title(metric)
        ax.set_xlabel("env steps" if results and results[0].metrics.get("train_return") is not None else "iterations")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    return path
