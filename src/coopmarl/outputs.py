"""Run directories: config.yaml, metrics.csv (tidy), summary.json, marl_eval.json, TensorBoard events, curves.png,
checkpoints (see `coopmarl.checkpoints`) and, after `coopmarl eval`, eval.json.

Every file is written atomically (temp file + rename), so an interrupted run leaves valid files. Reading a
run back for plots (`load_run`) needs no JAX.

"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import yaml

from coopmarl.checkpoints import CheckpointStore, config_hash, list_checkpoints, require_checkpoint, restore, split_items
from coopmarl.errors import ConfigError
from coopmarl.files import atomic_write
from coopmarl.results import RunResult
from coopmarl.stats import marl_eval_json

__all__ = ["RunWriter", "write_run", "load_run", "read_rows", "new_run_dir", "prepare_run_dir", "summarise", "resolve_run",
           "load_checkpoint", "evaluate", "eval_path", "list_checkpoints", "atomic_write"]


def new_run_dir(algo: str, env: str, root: str | Path = "runs") -> Path:
    """A new, empty run directory `root/ALGO_ENV_YYYYmmdd-HHMMSS` (created here, so two runs started in the
    same second get `…-2`, `…-3`)."""
    safe_env = env.replace("/", "_").replace(":", "_")
    base = Path(root) / f"{algo}_{safe_env}_{time.strftime('%Y%m%d-%H%M%S')}"
    _check_parents(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"cannot create a new run directory beside {base}")


def _check_parents(path: Path):
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == path else f"is under {str(parent)!r}, which is a file"
            raise ConfigError(f"--out {str(path)!r} {what}: name a directory")


def check_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """`prepare_run_dir`'s checks, clearing nothing: a new or empty directory, or with `overwrite` a run
    directory (it holds config.yaml); a file, or a path under a file, is refused."""
    path = Path(path)
    _check_parents(path)
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError(f"run directory {str(path)!r} exists and is not empty: choose another --out, add "
                              f"--overwrite to replace it, or continue it with `coopmarl resume {path}`")
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"--overwrite: {str(path)!r} is not a coopmarl run directory (no config.yaml); "
                              "refusing to delete it")
    return path


def prepare_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Check `--out` before anything runs (`check_run_dir`) and, with `overwrite`, clear the previous run
    directory. Creates nothing (the writer does, once the run starts)."""
    import shutil

    path = check_run_dir(path, overwrite)
    if overwrite and path.is_dir() and any(path.iterdir()):
        shutil.rmtree(path)
    return path


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
        "final_step": int(result.steps[-1]) if len(result.steps) else 0,
        "metrics": metrics,
        "static": {k: (v.item() if hasattr(v, "item") else v) for k, v in result.static.items()},
        **({"wall_time_s": round(wall_time, 3)} if wall_time is not None else {}),
    }


class RunWriter:
    """Writes a run directory as training goes: config.yaml at the start, metrics.csv and TensorBoard
    scalars after every chunk (so an interrupted run keeps valid, partial curves), a checkpoint of the whole
    loop state every `checkpoint_interval` chunks, then the final checkpoint, summary.json and curves.png
    at the end. Use `on_chunk` and `on_checkpoint` as the runner's callbacks.

    `rows` (the metrics.csv rows of the points already done) continues a resumed run: config.yaml is kept,
    the TensorBoard events are rewritten from those rows so that no point appears twice. The trackers of
    `config["run"]["logger"]` (`coopmarl.loggers`) get every point and the summary."""

    def __init__(self, run_dir: Path, config: dict, seeds: list[int], save_buffers: bool = False,
                 keep: int = 0, rows: list[tuple] | None = None):
        import shutil

        from tensorboardX import SummaryWriter

        from coopmarl.loggers import check_loggers, make_loggers

        check_loggers(config.get("run", {}))  # a missing tracker package is an error before anything is written
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.seeds = list(seeds)
        self.save_buffers, self.keep = save_buffers, keep
        self.config_hash = config_hash(config)
        self.provenance = config.get("provenance")
        self._store = None
        if rows is None:
            self.rows: list[tuple] = []
            atomic_write(self.run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        else:
            self.rows = list(rows)
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        self.tb = SummaryWriter(logdir=str(self.run_dir / "tb"))
        index = {seed: i for i, seed in enumerate(self.seeds)}
        points: dict[int, dict[str, np.ndarray]] = {}
        for seed, step, name, value in self.rows:
            points.setdefault(step, {}).setdefault(name, np.full(len(self.seeds), np.nan))[index[seed]] = value
        for step in sorted(points):
            self._tb_point(step, points[step])
        # W&B / MLflow (`logger=`): one tracker run per run directory; a resumed run continues it and logs
        # again nothing the tracker already has
        self.loggers = make_loggers(config.get("run", {}), self.run_dir, config, self.seeds, resume=rows is not None)

    @property
    def store(self) -> CheckpointStore:
        if self._store is None:
            self._store = CheckpointStore(self.run_dir, keep=self.keep)
        return self._store

    def _tb_point(self, step: int, metrics: dict):
        """TensorBoard scalars of one point: `name` (the mean over seeds) and `name/seed_S` (each seed's)."""
        for name in sorted(metrics):
            values = np.asarray(metrics[name], dtype=np.float64).reshape(-1)
            if np.isfinite(values).any():
                self.tb.add_scalar(name, float(np.nanmean(values)), int(step))
            for seed, v in zip(self.seeds, values):
                if np.isfinite(v):
                    self.tb.add_scalar(f"{name}/seed_{seed}", float(v), int(step))

    def on_chunk(self, chunk: int, step: int, metrics: dict):
        for name in sorted(metrics):
            values = np.asarray(metrics[name], dtype=np.float64).reshape(-1)
            self.rows += [(seed, int(step), name, float(v)) for seed, v in zip(self.seeds, values)]
        self._tb_point(step, metrics)
        self.tb.flush()
        self._write_metrics()
        self._log_point(step, metrics)

    def _log_point(self, step: int, metrics: dict):
        for logger in self.loggers:
            logger.log_point(int(step), metrics, self.seeds)

    def on_checkpoint(self, loop, step: int, kind: str = "periodic"):
        """Save the runner's loop state (`runner.LoopState`) as the checkpoint at `step` env steps."""
        self.save(loop.train_state, step, loop.chunk, loop.parts(), kind)

    def save(self, train_state, step: int, chunk: int, loop_parts: dict | None = None, kind: str = "final") -> Path:
        """A checkpoint of a train state (and the loop's other parts, if any) at `step` env steps."""
        meta = {"chunk": int(chunk), "seeds": self.seeds, "buffers": self.save_buffers, "kind": kind,
                "config_hash": self.config_hash}
        items = split_items(train_state, loop_parts, self.save_buffers)
        return self.store.save(step, items, meta)

    def _write_metrics(self):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["seed", "env_steps", "name", "value"])
        writer.writerows(sorted(self.rows, key=lambda r: (r[1], r[2], r[0])))
        atomic_write(self.run_dir / "metrics.csv", buf.getvalue())

    def finish(self, result: RunResult, wall_time: float | None = None, plot: bool = True) -> Path:
        """Write the final files. A stopped run (`result.stopped`) keeps its last finite, complete state as
        the newest checkpoint and says why it stopped in summary.json."""
        self.rows = list(metrics_rows(result))
        self._write_metrics()
        if result.train_state is not None:
            step = result.state_step if result.state_step is not None else int(result.steps[-1])
            if step not in self.store.steps():
                loop = result.loop
                chunk = loop.chunk if loop is not None else len(result.steps)
                kind = "final" if result.stopped is None else result.stopped.split(" at ")[0]
                self.save(result.train_state, step, chunk, loop.parts() if loop is not None else None, kind)
        summary = summarise(result, wall_time)
        if result.stopped is not None:
            summary["stopped"] = result.stopped
            summary["last_checkpoint_step"] = result.state_step
        if self.provenance is not None:
            summary["provenance"] = self.provenance
        atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        atomic_write(self.run_dir / "marl_eval.json", json.dumps(marl_eval_json(result), indent=1))  # marl-eval's layout
        self.tb.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        for logger in self.loggers:
            logger.finish(summary, result.stopped)
        if plot and len(result.steps):
            from coopmarl.plots import plot_curves

            plot_curves([result], self.run_dir / "curves.png")
        return self.run_dir


def write_run(run_dir: Path, config: dict, result: RunResult, wall_time: float | None = None,
              plot: bool = True, save_buffers: bool = False) -> Path:
    """Write a finished run's directory in one go."""
    writer = RunWriter(run_dir, config, result.seeds, save_buffers=save_buffers)
    for i, step in enumerate(result.steps):
        point = {name: values[i] for name, values in result.metrics.items()}
        writer._tb_point(int(step), point)
        writer._log_point(int(step), point)
    return writer.finish(result, wall_time, plot)


def read_rows(run_dir: str | Path) -> list[tuple]:
    """metrics.csv's rows as (seed, env_steps, name, value) tuples."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as f:
            return [(int(r["seed"]), int(r["env_steps"]), r["name"], float(r["value"])) for r in csv.DictReader(f)]
    except (KeyError, ValueError, TypeError, csv.Error) as e:
        raise ConfigError(f"{path} is not a coopmarl metrics file: {e}") from None


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


def resolve_run(run_dir: str | Path):
    """Rebuild a run's algorithm, env and configs (`config.Resolved`) from its config.yaml, checking that
    it resolves to the very same config (`as_dict()`); `env_params` holds the env parameters that differ
    from their defaults."""
    from coopmarl.config import resolve, upgrade_algo_config
    from coopmarl.envs.registry import UnknownNameError, env_entry

    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    try:
        saved = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    try:
        env_section = dict(saved["env"])
        env_name = env_section.pop("name")
        algo_name, algo_values, run_values = saved["algo"], dict(saved["algo_config"]), dict(saved["run"])
    except (KeyError, TypeError):
        raise ConfigError(f"{path} is not a coopmarl config (needs algo, env.name, algo_config, run)") from None
    # an older run's keys in today's names (e.g. grad_clip -> max_grad_norm; keys its algorithm never read dropped)
    algo_values = saved["algo_config"] = upgrade_algo_config(algo_name, algo_values)
    try:
        params = env_entry(env_name).params
    except UnknownNameError as e:
        raise ConfigError(str(e)) from None
    # the env section also holds values a preset's name fixes (lbf:5x5-…'s grid_size): pass only the
    # registered parameters that differ from their defaults
    overrides = {f"env.{p.name}": env_section[p.name] for p in params
                 if p.name in env_section and env_section[p.name] != p.default}
    overrides.update(algo_values)
    overrides.update(run_values)
    resolved = resolve(algo_name, env_name, overrides)
    again = yaml.safe_load(yaml.safe_dump(resolved.as_dict(), sort_keys=False))
    if "sha256" in env_section and again["env"].get("sha256") != env_section["sha256"]:
        raise ConfigError(f"the game file {env_section.get('path')!r} changed since the run that {path} describes "
                          f"(sha256 {env_section['sha256'][:12]}… then, {str(again['env'].get('sha256'))[:12]}… now): "
                          "restore the file the run was trained on, or train again")
    diff = [f"{section}.{k}" for section in ("env", "algo_config", "run")
            for k, v in saved[section].items() if k not in again[section] or again[section][k] != v]
    if diff:
        raise ConfigError(f"{path} does not rebuild the same run (differs: {', '.join(diff)})")
    return resolved


def load_checkpoint(run_dir: str | Path, step: int | None = None):
    """`(Resolved, train_state)` of a run directory: the algorithm, env and configs rebuilt from its
    config.yaml, and the latest checkpointed train state of every seed (leading axis = seeds) — or the
    one written at `step` env steps. Replay buffers come back empty unless they were saved."""
    resolved = resolve_run(run_dir)  # a broken config.yaml is named before a missing checkpoint
    require_checkpoint(run_dir, step)
    state, _ = restore(run_dir, resolved, step)
    return resolved, state


def evaluate(run_dir: str | Path, episodes: int = 100, seed: int = 0, step: int | None = None,
             write: bool = True) -> dict:
    """Evaluate every seed's latest checkpointed policy (or the one at `step`) as the runner does during training — exactly on a
    tabular game for a tabular algorithm, else `episodes` greedy (explore=False) episodes — and write
    `eval.json` (`eval_step_{step}.json` for an intermediate checkpoint) into the run directory.
    Returns {"metrics": {name: {"per_seed", "mean", "std"}}, "seeds", "exact", …}."""
    import jax

    from coopmarl.evaluation import evaluate_states, is_exact

    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    resolved = resolve_run(run_dir)  # a broken config.yaml is named before a missing checkpoint
    require_checkpoint(run_dir, step)
    state, meta = restore(run_dir, resolved, step)
    algo, env, config = resolved.algo, resolved.env, resolved.config
    seeds = meta["seeds"]
    keys = [jax.random.fold_in(jax.random.PRNGKey(seed), s) for s in seeds]
    exact = is_exact(algo, env)
    metrics = evaluate_states(algo, env, config, state, keys, episodes)
    out = {
        "algo": algo.name, "env": resolved.env_name, "checkpoint": meta["where"],
        "step": meta["step"], "seeds": seeds, "exact": exact, "episodes": None if exact else episodes,
        "eval_seed": seed, "metrics": {},
    }
    for name in sorted(metrics, key=lambda n: (n != "eval_return", n)):
        values = np.asarray(metrics[name], dtype=np.float64).reshape(-1)
        finite = np.isfinite(values).any()
        out["metrics"][name] = {"per_seed": [_num(v) for v in values],
                                "mean": _num(np.nanmean(values)) if finite else None,
                                "std": _num(np.nanstd(values)) if finite else None}
    if write:
        atomic_write(eval_path(run_dir, step), json.dumps(out, indent=2))
    return out


def eval_path(run_dir: str | Path, step: int | None = None) -> Path:
    """Where `evaluate` writes: eval.json (final checkpoint) or eval_step_{step}.json."""
    return Path(run_dir) / ("eval.json" if step is None else f"eval_step_{int(step)}.json")
