"""Experiment trackers beside the run directory: Weights & Biases and MLflow (`logger=wandb`, `logger=mlflow`,
or both: `logger=wandb,mlflow`). TensorBoard is not one of them: every run directory has its events.

One tracker run per run directory (a preset's or a sweep's cell is one run directory), named after it,
grouped by `logger_group` (default: the run directory's parent folder) and tagged with the algorithm and
the env; the config (config.yaml's content) is its config (W&B) or its params plus a config.yaml artifact
(MLflow). After every chunk each metric is logged at the env step as `name` (the mean over seeds) and
`name/seed_S` (each seed's value), as in TensorBoard — `name.seed_S` in MLflow, whose file store cannot hold
both `name` and `name/…`; a non-finite value (a seed with no finished episode yet) is skipped. At the end
the summary gets the final step, the wall time, the algorithm's facts and, for a run that stopped early,
why (`stopped`).

The tracker's run ids are kept in the run directory's `loggers.json`, so `coopmarl resume DIR` continues
the same W&B run (`resume="allow"`) and the same MLflow run. A resumed run repeats the chunks after its
last checkpoint; those points were logged before the interruption and are not logged again (the tracker
keeps the values logged first: the same values when the replay buffers were saved, otherwise metrics.csv
holds the repeated chunks' new values).

A tracker never costs the run its own files: a failure (no network, no login, a store that refuses) is a
warning, and that tracker logs nothing more for the run. Only a missing package is an error, before
anything is compiled. The trackers use their own settings: `WANDB_MODE=offline`, `WANDB_DIR`, `wandb
login`; `MLFLOW_TRACKING_URI` (mlflow-skinny has no SQLite store, MLflow 3's default: point it at a
tracking server, or at `file:PATH` with `MLFLOW_ALLOW_FILE_STORE=true`).
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from coopmarl.errors import ConfigError
from coopmarl.files import atomic_write

__all__ = ["LOGGERS", "Logger", "WandbLogger", "MlflowLogger", "logger_names", "check_logger_settings", "check_loggers",
           "make_loggers", "point_values"]

LOGGERS = ("wandb", "mlflow")  # logger=none, one of these, or a comma-separated combination
_MODULES = {"wandb": "wandb", "mlflow": "mlflow"}  # what each needs, importable, and its pip extra
STATE_FILE = "loggers.json"


class Logger(Protocol):
    """A tracker that follows one run directory."""

    name: str

    def log_point(self, step: int, metrics: Mapping[str, np.ndarray], seeds: list[int]) -> None:
        """One logging point: each metric's values over seeds (in `seeds`' order) at `step` env steps."""

    def finish(self, summary: dict, stopped: str | None) -> None:
        """Set the run's summary (summary.json's content; `stopped`: why it stopped early) and close it."""


def logger_names(value: str) -> tuple[str, ...]:
    """The trackers of a `logger` setting: "none" -> (), "wandb,mlflow" -> ("wandb", "mlflow")."""
    choices = f"none, {', '.join(LOGGERS)}, or a comma-separated combination (e.g. logger=wandb,mlflow)"
    if not isinstance(value, str):
        raise ConfigError(f"logger must be a string: {choices}; got {value!r}")
    if value.strip() == "none":
        return ()
    names = [n.strip() for n in value.split(",")]
    for n in names:
        if n not in LOGGERS:
            raise ConfigError(f"unknown logger {n!r} in logger={value!r}: choose {choices}")
    if len(set(names)) != len(names):
        raise ConfigError(f"logger={value!r} names a logger twice")
    return tuple(names)


def check_logger_settings(logger: str, project: str):
    """RunConfig's check of `logger` and `logger_project` (no package is imported here)."""
    names = logger_names(logger)
    if not isinstance(project, str) or not project.strip():
        raise ConfigError(f"logger_project must be a non-empty name, got {project!r}")
    if "wandb" in names and re.search(r"[/\\#?%:]", project):
        raise ConfigError(f"logger_project {project!r}: a W&B project name cannot contain / \\ # ? % :")


def _setting(run_config, key: str, default):
    if isinstance(run_config, Mapping):
        return run_config.get(key, default)
    return getattr(run_config, key, default)


def check_loggers(run_config) -> tuple[str, ...]:
    """The trackers `run_config` (a RunConfig or config.yaml's `run` section) asks for, each one's package
    imported: a missing package is a ConfigError naming the extra to install."""
    names = logger_names(_setting(run_config, "logger", "none"))
    for name in names:
        try:
            __import__(_MODULES[name])
        except ImportError as e:
            raise ConfigError(f"logger={name} needs the {_MODULES[name]} package ({e}): "
                              f"pip install 'coopmarl[{name}]'") from None
    return names


def make_loggers(run_config, run_dir: str | Path, config: dict, seeds: list[int], *,
                 resume: bool = False) -> list[Logger]:
    """The trackers of a run directory, started (or, when `resume`, continued from `loggers.json`).

    `run_config`: a RunConfig or config.yaml's `run` section (keys `logger`, `logger_project`,
    `logger_group`; an older run's config.yaml lacks them: no tracker); `config`: config.yaml's content;
    `seeds`: the run's seeds (each point's values come in their order). A missing package is a ConfigError;
    a tracker that fails to start is a warning and is left out."""
    names = check_loggers(run_config)
    if not names:
        return []
    run_dir = Path(run_dir)
    state = _State(run_dir / STATE_FILE)
    project = _setting(run_config, "logger_project", "coopmarl")
    group = _setting(run_config, "logger_group", "") or run_dir.resolve().parent.name
    cls = {"wandb": WandbLogger, "mlflow": MlflowLogger}
    out = []
    for name in names:
        saved = state.data.get(name) if resume else None
        try:
            out.append(_Guarded(cls[name](run_dir, config, project, group, state, saved)))
        except Exception as e:  # noqa: BLE001 - a tracker never stops the run
            _warn(name, f"could not {'continue' if saved else 'start'} a run", e)
    return out


class _State:
    """loggers.json: each tracker's run id and the last env step it logged."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            self.data = {}

    def update(self, name: str, **entry):
        self.data[name] = {**self.data.get(name, {}), **entry}
        atomic_write(self.path, json.dumps(self.data, indent=2))


_HINTS = {
    "wandb": "offline: WANDB_MODE=offline (then `wandb sync`); online: `wandb login`",
    "mlflow": "set MLFLOW_TRACKING_URI to a tracking server, or to file:PATH with MLFLOW_ALLOW_FILE_STORE=true "
              "(mlflow-skinny has no SQLite store)",
}


def _warn(name: str, what: str, error: BaseException):
    warnings.warn(f"logger {name}: {what} ({type(error).__name__}: {error}); it logs nothing more for this run, "
                  f"whose directory is unaffected. Hint: {_HINTS[name]}", RuntimeWarning, stacklevel=3)


class _Guarded:
    """A tracker whose failures are warnings: after the first, it is left out for the rest of the run."""

    def __init__(self, inner):
        self.inner, self.name, self.failed = inner, inner.name, False

    def log_point(self, step, metrics, seeds):
        self._call(f"logging step {step}", self.inner.log_point, step, metrics, seeds)

    def finish(self, summary, stopped):
        self._call("finishing the run", self.inner.finish, summary, stopped)

    def _call(self, what, fn, *args):
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            self.failed = True
            _warn(self.name, what, e)


def point_values(metrics: Mapping[str, np.ndarray], seeds: list[int], sep: str = "/") -> dict[str, float]:
    """{`name`: mean over seeds, `name{sep}seed_S`: seed S's value} of one point, non-finite values left out."""
    out = {}
    for name in sorted(metrics):
        values = np.asarray(metrics[name], dtype=np.float64).reshape(-1)
        finite = np.isfinite(values)
        if finite.any():
            out[name] = float(values[finite].mean())
        for seed, v in zip(seeds, values):
            if math.isfinite(v):
                out[f"{name}{sep}seed_{seed}"] = float(v)
    return out


def _tags(config: dict) -> tuple[str, str]:
    env = config.get("env", {})
    return str(config.get("algo", "")), str(env.get("name", "") if isinstance(env, Mapping) else env)


def _final(summary: dict) -> dict:
    """The summary entries a tracker gets besides the last logged values."""
    out = {k: summary[k] for k in ("final_step", "wall_time_s", "last_checkpoint_step") if k in summary}
    out.update({f"static/{k}": v for k, v in summary.get("static", {}).items()})
    return out


class WandbLogger:
    """A W&B run per run directory (`wandb.init(reinit="create_new")`: never another run of the process)."""

    name = "wandb"

    def __init__(self, run_dir: Path, config: dict, project: str, group: str, state: _State, saved: dict | None):
        import wandb

        algo, env = _tags(config)
        self.run = wandb.init(project=project, group=group[:128], name=run_dir.name, id=saved["id"] if saved else None,
                              tags=[t[:64] for t in (algo, env) if t], config=config, job_type="train",
                              resume="allow" if saved else None, reinit="create_new")
        self.state, self.resumed = state, saved is not None
        self.last_step = saved.get("last_step", -1) if saved else -1
        state.update(self.name, id=self.run.id, project=project, group=group, last_step=self.last_step)

    def log_point(self, step, metrics, seeds):
        if step <= self.last_step:  # a resumed run repeats the points after its last checkpoint
            return
        self.run.log(point_values(metrics, seeds), step=int(step))
        self.last_step = int(step)
        self.state.update(self.name, last_step=self.last_step)

    def finish(self, summary, stopped):
        final = _final(summary)
        if stopped is not None or self.resumed:
            final["stopped"] = stopped
        self.run.summary.update(final)
        self.run.finish(exit_code=0 if stopped is None else 1)


_MLFLOW_NAME = re.compile(r"[^\w./ -]")  # MLflow metric and param names: alphanumerics, _ - . / and spaces


class MlflowLogger:
    """An MLflow run per run directory, in the experiment `logger_project` of MLflow's tracking store
    (`MLFLOW_TRACKING_URI`; a resumed run uses the store it started in). A seed's series is `name.seed_S`,
    not `name/seed_S`: MLflow's file store keeps a metric as a file named after it, so `name` and
    `name/seed_S` cannot both be metrics there."""

    name = "mlflow"

    def __init__(self, run_dir: Path, config: dict, project: str, group: str, state: _State, saved: dict | None):
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = (saved or {}).get("tracking_uri") or mlflow.get_tracking_uri()
        self.client, self.state = MlflowClient(tracking_uri=uri), state
        if saved:
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            algo, env = _tags(config)
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = experiment.experiment_id if experiment else self._create_experiment(project)
            run = self.client.create_run(experiment_id, run_name=run_dir.name,
                                         tags={"group": group, "algo": algo, "env": env,
                                               "coopmarl.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
            self._log_params(config)
            self.client.log_dict(self.run_id, config, "config.yaml")
        self.last_step = (saved or {}).get("last_step", -1)
        state.update(self.name, run_id=self.run_id, tracking_uri=_stored_uri(uri), last_step=self.last_step)

    def _create_experiment(self, project: str) -> str:
        try:
            return self.client.create_experiment(project)
        except Exception:  # noqa: BLE001 - another cell created it meanwhile
            experiment = self.client.get_experiment_by_name(project)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _log_params(self, config: dict):
        """config.yaml's values as params `section.key` (values cut at MLflow's length limit; the whole file
        is the run's config.yaml artifact)."""
        from mlflow.entities import Param

        try:
            from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as limit
        except ImportError:  # pragma: no cover
            limit = 500
        params = [Param(_MLFLOW_NAME.sub("_", k)[:250], v if len(v) <= limit else v[:limit - 1] + "…")
                  for k, v in _flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_point(self, step, metrics, seeds):
        from mlflow.entities import Metric

        if step <= self.last_step:  # a resumed run repeats the points after its last checkpoint
            return
        now = int(time.time() * 1000)
        values = point_values(metrics, seeds, sep=".")
        batch = [Metric(_MLFLOW_NAME.sub("_", k), v, now, int(step)) for k, v in values.items()]
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])
        self.last_step = int(step)
        self.state.update(self.name, last_step=self.last_step)

    def finish(self, summary, stopped):
        if stopped is not None:
            self.client.set_tag(self.run_id, "stopped", stopped)
        elif self.client.get_run(self.run_id).data.tags.get("stopped"):
            self.client.delete_tag(self.run_id, "stopped")  # a resumed run that finished
        self.client.log_dict(self.run_id, summary, "summary.json")
        status = "FINISHED" if stopped is None else "KILLED" if stopped.startswith("interrupted") else "FAILED"
        self.client.set_terminated(self.run_id, status)


def _flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def _stored_uri(uri) -> str:
    """A tracking URI as kept in loggers.json: a local store's as an absolute file: URI (a resume from another
    folder finds it); a server's without a user:password@ part."""
    uri = str(uri)
    if uri.startswith("file:") or "://" not in uri and ":" not in uri.split("/")[0]:
        from urllib.parse import unquote, urlparse

        path = unquote(urlparse(uri).path) if uri.startswith("file:") else uri
        return Path(path).resolve().as_uri()
    return re.sub(r"^([a-z0-9+.-]+://)[^/@]*@", r"\1", uri)
