"""What a run is, with no JAX in sight: its settings (`RunConfig`), how it is divided into iterations and
chunks, and what it produced (`RunResult`). The runner, the host runner, run directories and plots share
these; `coopmarl plot` reads them back without importing JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coopmarl.loggers import check_logger_settings
from coopmarl.ranges import INT32_MAX, is_integer, range_error


@dataclass(frozen=True)
class RunConfig:
    """Settings of a run that are not the algorithm's (CLI keys at the top level)."""

    total_steps: int = 20_000  # env steps per seed (per env copy summed), or iterations for planners
    seed: int = 0  # seeds used: seed, seed + 1, ..., seed + n_seeds - 1
    n_seeds: int = 1
    log_points: int = 50  # number of chunks = evaluation/logging points
    eval_episodes: int = 16  # rollout evaluation episodes (non-tabular envs; tabular games are exact)
    checkpoint_every: int | None = None  # chunks between checkpoints; None: a tenth of the run; 0: the final state only
    keep_checkpoints: int = 3  # newest checkpoints kept in the run directory (0: all)
    save_buffers: bool | None = None  # replay buffers in checkpoints; None: when all seeds' fit in SAVE_BUFFERS_MAX_MB
    logger: str = "none"  # trackers besides TensorBoard (`coopmarl.loggers`): none, wandb, mlflow or wandb,mlflow
    logger_project: str = "coopmarl"  # the W&B project / MLflow experiment
    logger_group: str = ""  # the W&B group / MLflow tag `group` (a preset's or sweep's name); "": the run's parent folder

    def __post_init__(self):
        for name in ("total_steps", "n_seeds", "log_points", "eval_episodes"):
            _at_least(name, getattr(self, name), 1)
        _at_least("seed", self.seed, 0)
        _at_least("seed + n_seeds - 1", self.seed + self.n_seeds - 1, 0)
        _at_least("keep_checkpoints", self.keep_checkpoints, 0, "(0 keeps all)")
        if self.checkpoint_every is not None:
            _at_least("checkpoint_every", self.checkpoint_every, 0, "(chunks between checkpoints; 0: the final state only)")
        check_logger_settings(self.logger, self.logger_project)


SAVE_BUFFERS_MAX_MB = 512  # save_buffers=None saves the replay buffers when all seeds' together are at most this


def _at_least(name: str, value, minimum: int, note: str = ""):
    if not is_integer(value) or not minimum <= value <= INT32_MAX:
        bound = f"<= {INT32_MAX} (int32)" if is_integer(value) and value > INT32_MAX else f">= {minimum}"
        raise ValueError(range_error(name, value, bound, f" {note}" if note else "", integer=True))


@dataclass
class RunResult:
    """Everything a run produced, on the host."""

    algo: str
    env: str
    steps: np.ndarray  # [n_points] env steps (or iterations) at each logging point
    metrics: dict[str, np.ndarray]  # name -> [n_points, n_seeds]
    train_state: Any  # final train state, leading axis = seeds
    seeds: list[int]
    static: dict = field(default_factory=dict)  # algorithm facts (e.g. Theorem 3's condition)
    loop: Any = None  # the runner's final loop state (`runner.LoopState`: train state, env states, keys, …)
    state_step: int | None = None  # env steps of `train_state`/`loop` (a stopped run's last finite point)
    stopped: str | None = None  # why the run stopped early ("diverged at step N", "interrupted at step N")

    def final(self) -> dict[str, np.ndarray]:
        return {k: v[-1] for k, v in self.metrics.items()}


def iteration_size(algo, config, spec) -> tuple[int, int]:
    """(rollout_length, n_envs) of one iteration; an algorithm's rollout_length 0 means the env's horizon.
    A planner (`uses_env=False`) does one update on the model per iteration: (1, 1)."""
    if not algo.uses_env:
        return 1, 1
    rollout_length = int(getattr(config, "rollout_length", 1)) or spec.horizon
    if rollout_length < 1:
        raise ValueError(f"env {spec.name!r} has no horizon: set rollout_length")
    return rollout_length, int(getattr(config, "n_envs", 1))


def plan_chunks(total_steps: int, log_points: int, steps_per_iter: int) -> tuple[int, int]:
    """(n_chunks, iterations per chunk) covering at least `total_steps`."""
    total_iters = max(1, math.ceil(total_steps / steps_per_iter))
    n_chunks = max(1, min(log_points, total_iters))
    return n_chunks, math.ceil(total_iters / n_chunks)


def divergence(metrics: dict, update_names: list[str], state_finite, seeds: list[int]) -> str | None:
    """What went non-finite in a chunk (an update metric, else the parameters), naming the seed; None if nothing."""
    for name in update_names:
        values = np.asarray(metrics[name], dtype=np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return f"{name} is {values[bad[0]]} for seed {seeds[bad[0]]}"
    bad = np.flatnonzero(~np.asarray(state_finite).reshape(-1))
    if bad.size:
        return f"a parameter of seed {seeds[bad[0]]}'s train state is nan or inf"
    return None
