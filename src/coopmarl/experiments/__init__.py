"""Paper presets for `coopmarl reproduce NAME`.

A preset is a function `(out_dir: Path, options: dict) -> Report` registered under a name. It trains
through the same runner as `coopmarl train`, writes each run's directory under `out_dir`, plus
`table.md` and PNG plots, and returns the markdown table (which the CLI prints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
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
class Experiment:
    name: str
    description: str
    run: Callable[[Path, dict], Report]
    options: dict  # option name -> (default, help)


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, description: str, options: dict | None = None):
    def deco(fn):
        _EXPERIMENTS[name] = Experiment(name, description, fn, options or {})
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


def run_experiment(name: str, out_dir: Path | None = None, options: dict | None = None) -> tuple[Report, Path]:
    from coopmarl.files import atomic_write

    exp = get_experiment(name)
    opts = resolve_options(exp, options or {})
    out_dir = Path(out_dir) if out_dir else Path("runs") / f"reproduce_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.time()
    report = exp.run(out_dir, opts)
    report.notes.append(f"wall time {time.time() - start:.1f} s; options {opts}")
    atomic_write(out_dir / "table.md", report.markdown())
    return report, out_dir


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


def mean_std(x, digits: int = 2) -> str:
    """'mean ± std' over seeds, ignoring NaN (a seed that finished no episode in the last logging
    interval); '—' when no seed has a value."""
    import numpy as np

    x = np.asarray(x, dtype=float).reshape(-1)
    x = x[np.isfinite(x)]
    if not x.size:
        return "—"
    return f"{x.mean():.{digits}f} ± {x.std():.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.3f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
