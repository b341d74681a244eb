"""The experiments' registry and declarations: `Report`, `Cell`, `Experiment`, `register_experiment`, option
parsing (see the package's docstring)."""


from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from coopmarl.errors import ConfigError, ParamError, UnknownNameError, did_you_mean
from coopmarl.plugins import discover


@dataclass
class Report:
    title: str
    table: str  # markdown
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"# {self.title}", "", self.table, ""]
        parts += [f"- {n}" for n in self.notes]
        parts += ["", *[f"![{p}]({p})" for p in self.plots]]
        return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class Cell:
    """One run of an experiment: `algo` on `env` with `overrides` (algorithm, run and env.* keys) for `seeds`
    seeds from `seed`, written to the run directory `path` under the experiment's --out. `label` names it in
    tables, plots and aggregate.json (default: the algorithm); `group` gathers cells into one plot (default: env).
    Cells with the same non-empty `vmap_group` differ only in vmappable hyperparameters and train as one compiled
    program (`coopmarl.training.train_vmapped`)."""

    path: str
    algo: str
    env: str
    overrides: dict = field(default_factory=dict)
    seeds: int = 1
    seed: int = 0
    label: str = ""
    group: str = ""
    vmap_group: str = ""

    def __post_init__(self):
        object.__setattr__(self, "label", self.label or self.algo)
        object.__setattr__(self, "group", self.group or self.env)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    report: Callable  # (Runs, options) -> Report
    options: dict  # option name -> (default, help)
    cells: Callable | None = None  # options -> [Cell]; None: the experiment trains nothing
    metrics: tuple[str, ...] = ("eval_return",)  # what aggregate.json summarises
    vmapped: dict = field(default_factory=dict)  # Cell.vmap_group -> the keys its cells vmap


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, description: str, options: dict | None = None, cells: Callable | None = None,
                        metrics: tuple[str, ...] = ("eval_return",)):
    """Register `fn(runs, options) -> Report` as the report of the experiment `name`, whose cells `cells(options)`
    declares."""
    def deco(fn):
        _EXPERIMENTS[name] = Experiment(name, description, fn, options or {}, cells, tuple(metrics))
        return fn

    return deco


def list_experiments() -> list[Experiment]:
    discover("experiments")
    return [_EXPERIMENTS[k] for k in sorted(_EXPERIMENTS)]


def get_experiment(name: str) -> Experiment:
    discover("experiments")
    if name not in _EXPERIMENTS:
        raise UnknownNameError(
            f"unknown experiment {name!r}.{did_you_mean(name, _EXPERIMENTS)} "
            f"Valid experiments: {', '.join(sorted(_EXPERIMENTS))}"
        )
    return _EXPERIMENTS[name]


def resolve_options(exp: Experiment, given: dict[str, str]) -> dict:
    from coopmarl.envs.registry import coerce

    out = {k: v[0] for k, v in exp.options.items()}
    for k, v in given.items():
        if k not in exp.options:
            raise ConfigError(
                f"unknown option {k!r} for experiment {exp.name!r}.{did_you_mean(k, exp.options)} "
                f"Valid options: {', '.join(exp.options) or '(none)'}"
            )
        default = exp.options[k][0]
        try:
            out[k] = coerce(v, type(default), f"experiment {exp.name!r} option {k!r}") if default is not None else v
        except ParamError as e:
            raise ConfigError(str(e)) from None
    return out


def choose(text: str, valid, what: str) -> tuple[str, ...]:
    """A preset's comma-separated selection option (e.g. `algos=qmix,remix`, or `all`), checked against
    `valid`; an unknown or empty choice is one ConfigError naming the valid ones."""
    valid = tuple(valid)
    picked = valid if text.strip() == "all" else tuple(x.strip() for x in text.split(",") if x.strip())
    for x in picked:
        if x not in valid:
            raise ConfigError(f"unknown {what} {x!r}.{did_you_mean(x, valid)} Valid: {', '.join(valid)} (or all)")
    if not picked:
        raise ConfigError(f"no {what} given. Valid: {', '.join(valid)} (or all)")
    return picked


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.3f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
