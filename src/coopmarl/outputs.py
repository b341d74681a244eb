"""Run directories: config.yaml, metrics.csv (tidy), summary.json, TensorBoard events, curves.png.

Every file is written atomically (temp file + rename), so an interrupted run leaves valid files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from coopmarl.runner import RunResult


def atomic_write(path: Path, data: str | bytes):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def default_run_dir(algo: str, env: str, root: str = "runs") -> Path:
    safe_env = env.replace("/", "_").replace(":", "_")
    return Path(root) / f"{algo}_{safe_env}_{time.strftime('%Y%m%d-%H%M%S')}"


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x


def metrics_rows(result: RunResult):
    for i, step in enumerate(result.steps):
        for name in sorted(result.metrics):
            for j, seed in enumerate(result.seeds):
                yield seed, int(step), name, float(result.metrics[name][i, j])


def summarise(result: RunResult, wall_time: float | None = None) -> dict:
    metrics = {}
    for name, values in sorted(result.metrics.items()):
        final = values[-1]
        metrics[name] = {
            "per_seed": [_num(v) for v in final],
            "mean": _num(np.nanmean(final)) if np.isfinite(final).any() else None,
            "std": _num(np.nanstd(final)) if np.isfinite(final).any() else None,
        }
    return {
        "algo": result.algo,
        "env": result.env,
        "seeds": result.seeds,
        "final_step": int(result.steps[-1]),
        "metrics": metrics,
        "static": {k: (v.item() if hasattr(v, "item") else v) for k, v in result.static.items()},
        **({"wall_time_s": round(wall_time, 3)} if wall_time is not None else {}),
    }


class RunWriter:
    """Writes a run directory as training goes: config.yaml at the start, metrics.csv and TensorBoard
    scalars after every chunk (so an interrupted run keeps valid, partial curves), then summary.json
    and curves.png at the end. Use `on_chunk` as the runner's callback."""

    def __init__(self, run_dir: Path, config: dict, seeds: list[int]):
        from tensorboardX import SummaryWriter

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.seeds = list(seeds)
        self.rows: list[tuple] = []
        atomic_write(self.run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        self.tb = SummaryWriter(logdir=str(self.run_dir / "tb"))

    def on_chunk(self, chunk: int, step: int, metrics: dict):
        for name in sorted(metrics):
            values = np.asarray(metrics[name], dtype=np.float64).reshape(-1)
            self.rows += [(seed, int(step), name, float(v)) for seed, v in zip(self.seeds, values)]
            if np.isfinite(values).any():
                self.tb.add_scalar(name, float(np.nanmean(values)), int(step))
        self.tb.flush()
        self._write_metrics()

    def _write_metrics(self):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["seed", "env_steps", "name", "value"])
        writer.writerows(sorted(self.rows, key=lambda r: (r[1], r[2], r[0])))
        atomic_write(self.run_dir / "metrics.csv", buf.getvalue())

    def finish(self, result: RunResult, wall_time: float | None = None, plot: bool = True) -> Path:
        self.rows = list(metrics_rows(result))
        self._write_metrics()
        atomic_write(self.run_dir / "summary.json", json.dumps(summarise(result, wall_time), indent=2))
        self.tb.close()
        if plot:
            from coopmarl.plots import plot_curves

            plot_curves([result], self.run_dir / "curves.png")
        return self.run_dir


def write_run(run_dir: Path, config: dict, result: RunResult, wall_time: float | None = None,
              plot: bool = True) -> Path:
    """Write a finished run's directory in one go."""
    writer = RunWriter(run_dir, config, result.seeds)
    for i, step in enumerate(result.steps):
        for name, values in result.metrics.items():
            if np.isfinite(values[i]).any():
                writer.tb.add_scalar(name, float(np.nanmean(values[i])), int(step))
    return writer.finish(result, wall_time, plot)


def load_run(run_dir: str | Path) -> RunResult:
    """Read a run directory back (for `coopmarl plot`)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no metrics.csv)")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    seeds = sorted({int(r["seed"]) for r in rows})
    steps = sorted({int(r["env_steps"]) for r in rows})
    names = sorted({r["name"] for r in rows})
    si, ti = {s: i for i, s in enumerate(seeds)}, {s: i for i, s in enumerate(steps)}
    metrics = {n: np.full((len(steps), len(seeds)), np.nan) for n in names}
    for r in rows:
        metrics[r["name"]][ti[int(r["env_steps"])], si[int(r["seed"])]] = float(r["value"])
    return RunResult(
        algo=summary.get("algo", run_dir.name), env=summary.get("env", ""), steps=np.asarray(steps),
        metrics=metrics, train_state=None, seeds=seeds, static=summary.get("static", {}),
    )
