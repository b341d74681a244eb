"""The cost benchmarks run and print what they promise: `benchmarks/preset_cost.py` (one row per preset: cells x
seeds, steps, memory per seed from shapes, measured steps/s, CPU-hours) and `benchmarks/cost_growth.py` (one table
per axis with steps/s and the ratio to the first row). Tiny sizes only: tabular presets and games, one timed
iteration."""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def preset_cost():
    yield _load("preset_cost")
    sys.modules.pop("preset_cost", None)


@pytest.fixture(scope="module")
def cost_growth():
    yield _load("cost_growth")
    sys.modules.pop("cost_growth", None)


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """{first header cell: [row as {header: cell}]} of every markdown table in `text`."""
    out, lines = {}, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, (c.strip() for c in row.strip("|").split("|")))))
            out.setdefault(header[0], rows)
    return out


def number(text: str) -> float:
    """A printed figure ('1,234', '0.52x', the low end of a range '3–5') as a float."""
    return float(text.split("–")[0].rstrip("x").replace(",", ""))


def positive(text: str) -> bool:
    value = number(text)
    return math.isfinite(value) and value > 0


def test_preset_cost_memory_only(preset_cost, capsys):
    assert preset_cost.main(["--presets", "rommeo-climbing,maosql-tabular", "--no-measure"]) == 0
    rows = tables(capsys.readouterr().out)["preset"]
    assert [r["preset"] for r in rows] == ["rommeo-climbing", "maosql-tabular"]
    climbing, tabular = rows
    assert climbing["cells x seeds"] == "6 x 100" and climbing["env steps per cell"] == "10,000"
    assert tabular["cells x seeds"] == "36 x 8" and tabular["env steps per cell"] == "1,000"
    for row in rows:
        assert row["scale"] == "(no scale option)"
        assert positive(row["memory per seed (MB)"]), row
        assert row["measured steps/s (one seed)"] == row["est. CPU-hours"] == "—"


def test_preset_cost_measured(preset_cost, capsys):
    """Planners on a tabular model (the model passed to the compiled chunk): 12 distinct configs, each timed."""
    assert preset_cost.main(["--presets", "maosql-tabular", "--option", "games=ro-matrix", "--option",
                             "iterations=50", "--iters", "1", "--min-steps", "0"]) == 0
    out = tables(capsys.readouterr().out)
    (row,) = out["preset"]
    assert row["cells x seeds"] == "12 x 8" and row["env steps per cell"] == "50"
    assert positive(row["measured steps/s (one seed)"]) and positive(row["est. CPU-hours"])
    measured = out["algorithm"]
    assert len(measured) == 12 and {r["algorithm"] for r in measured} == {"maosvi", "maosql"}
    assert all(positive(r["steps/s"]) and r["iterations timed"] == "1" for r in measured)


def test_preset_cost_hours_and_measured_buffer(preset_cost, capsys, monkeypatch):
    """A paper-scale replay (10,000 predator-prey episodes, ~2 GB) is capped for the measurement only, and the
    hours are seeds x steps / one seed's steps/s (a stand-in measurement: 4,000 steps/s)."""
    calls = []

    def fake(algo, env, seeds, iters, overrides):
        calls.append((algo, env, seeds, iters, overrides))
        return dict(seeds=seeds, steps=1, compile_s=1.0, run_s=1.0, steps_per_s=4000.0, n_envs=8, window=200)

    monkeypatch.setattr(preset_cost, "measure_training", fake)
    assert preset_cost.main(["--presets", "remix-weight-range", "--option", "weights=0.5", "--iters", "3"]) == 0
    (row,) = tables(capsys.readouterr().out)["preset"]
    assert row["scale"] == "paper" and row["cells x seeds"] == "1 x 2" and row["env steps per cell"] == "2,000,000"
    assert row["measured steps/s (one seed)"] == "4,000"
    assert number(row["est. CPU-hours"]) == pytest.approx(2 * 2_000_000 / 4000 / 3600, abs=0.01)
    ((algo, env, seeds, iters, overrides),) = calls
    assert (algo, env, seeds) == ("remix", "predator-prey:p-2", 1)
    assert iters == 7  # raised to the default 10,000 env steps: 8 envs x 200-step episodes = 1,600 per iteration
    assert "buffer_size=1000" in overrides and "buffer_size=10000" not in overrides
    # the memory column keeps the cell's own 10,000 episodes: ~10x the measured config's train state
    from coopmarl.config import resolve

    capped = preset_cost.state_bytes(resolve(algo, env, overrides))
    assert number(row["memory per seed (MB)"]) * 1e6 > 5 * capped


def test_preset_cost_bad_names(preset_cost):
    with pytest.raises(SystemExit, match=r"unknown preset 'remix-predator'.*Presets that train: .*remix-predator-prey"):
        preset_cost.main(["--presets", "remix-predator", "--no-measure"])
    with pytest.raises(SystemExit, match="trains nothing"):
        preset_cost.main(["--presets", "dpo-matrix", "--no-measure"])  # an exact computation, no cells
    with pytest.raises(SystemExit, match="none of the presets rommeo-climbing has that option"):
        preset_cost.main(["--presets", "rommeo-climbing", "--option", "games=tensor", "--no-measure"])


def test_cost_growth_one_axis(cost_growth, capsys):
    assert cost_growth.main(["--axes", "seeds", "--algos", "jal", "--env", "climbing", "--seeds", "1,2",
                             "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert "### seeds" in out and "### envs" not in out and "### agents" not in out
    rows = tables(out)["algorithm"]
    assert [(r["algorithm"], r["env"], r["seeds"]) for r in rows] == [("jal", "climbing", "1"),
                                                                       ("jal", "climbing", "2")]
    assert rows[0]["ratio to first row"] == "1.00x"
    for r in rows:
        assert all(positive(r[k]) for k in ("steps/s", "ratio to first row", "updates/s", "compile s")), r


def test_cost_growth_bad_input(cost_growth):
    with pytest.raises(SystemExit, match="--axes must be a comma-separated subset of agents, envs, seeds"):
        cost_growth.main(["--axes", "gpus"])
    with pytest.raises(SystemExit, match="--envs must be comma-separated whole numbers"):
        cost_growth.main(["--axes", "envs", "--envs", "1,x"])
    with pytest.raises(SystemExit, match="unknown algorithm 'ipo'"):
        cost_growth.main(["--axes", "envs", "--algos", "ipo", "--envs", "1"])
