"""The experiment layer: a sweep or a preset is a grid of run directories run by one executor. A rerun skips
finished cells and resumes interrupted ones to the very files of an uninterrupted grid, a diverged cell is
recorded while the others go on, `--report-only` rebuilds the same table, Ray's run directories equal the local
backend's, and the tables' IQMs equal an independent computation from metrics.csv."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from coopmarl.cli import main
from coopmarl.errors import ConfigError, Interrupted
from coopmarl.experiments.sweep import parse_grid, run_sweep
from coopmarl.outputs import RunWriter

# acceptance: `coopmarl sweep tabular-iql climbing epsilon=0.05,0.2 total_steps=2000 --seeds 8`
SWEEP = ["tabular-iql", "climbing", "epsilon=0.05,0.2", "total_steps=2000", "log_points=10", "checkpoint_every=2"]
CELLS = ("epsilon=0.05", "epsilon=0.2")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    assert main(["sweep", *SWEEP, "--seeds", "8", "--out", str(out)]) == 0
    return out


def _final_values(run_dir: Path, metric: str) -> np.ndarray:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    last = max(int(r["env_steps"]) for r in rows)
    return np.array([float(r["value"]) for r in sorted(rows, key=lambda r: int(r["seed"]))
                     if r["name"] == metric and int(r["env_steps"]) == last])


def test_sweep_writes_a_run_directory_per_setting_and_honest_statistics(sweep_dir, capsys):
    for cell in CELLS:
        run = sweep_dir / cell
        for name in ("config.yaml", "metrics.csv", "summary.json", "marl_eval.json", "cell.json"):
            assert (run / name).is_file(), (cell, name)
        assert json.loads((run / "cell.json").read_text())["label"] == cell
    table = (sweep_dir / "table.md").read_text()
    assert "IQM [95% CI]" in table and "P(epsilon=" in table
    # `coopmarl aggregate` over the sweep: its IQMs equal scipy's 25%-trimmed mean of the seeds' final values
    assert main(["aggregate", str(sweep_dir), "--out", str(sweep_dir / "stats"), "--reps", "2000"]) == 0
    report = json.loads((sweep_dir / "stats" / "aggregate.json").read_text())
    for cell in CELLS:
        finals = _final_values(sweep_dir / cell, "eval_return")
        assert finals.size == 8
        entry = report[cell]["climbing"]["eval_return"]
        assert entry["n_seeds"] == 8
        assert entry["iqm"] == pytest.approx(scipy_stats.trim_mean(finals, 0.25), abs=1e-9)
        assert entry["mean"] == pytest.approx(finals.mean(), abs=1e-9)
        lo, hi = entry["iqm_ci"]
        assert lo <= entry["iqm"] <= hi
        # the table shows the same IQM (as the preset's own aggregate.json, which uses rliable's 50,000 resamples)
        own = json.loads((sweep_dir / "aggregate.json").read_text())[cell]["climbing"]["eval_return"]
        assert own["iqm"] == entry["iqm"]
        assert f"{own['iqm']:.3f} [{own['iqm_ci'][0]:.3f}, {own['iqm_ci'][1]:.3f}]" in (sweep_dir / "table.md").read_text()
    marl = json.loads((sweep_dir / "marl_eval.json").read_text())
    assert set(marl["coopmarl"]["climbing"]) == set(CELLS)


def test_rerun_skips_finished_cells_and_report_only_rebuilds_the_same_table(sweep_dir, capsys):
    mtimes = {c: (sweep_dir / c / "metrics.csv").stat().st_mtime_ns for c in CELLS}
    table = (sweep_dir / "table.md").read_text()
    capsys.readouterr()
    assert main(["sweep", *SWEEP, "--seeds", "8", "--out", str(sweep_dir)]) == 0
    assert "2 cells: 2 finished" in capsys.readouterr().out
    assert main(["sweep", *SWEEP, "--seeds", "8", "--out", str(sweep_dir), "--report-only"]) == 0
    assert {c: (sweep_dir / c / "metrics.csv").stat().st_mtime_ns for c in CELLS} == mtimes
    assert (sweep_dir / "table.md").read_text() == table


def test_interrupted_grid_continues_to_the_files_of_an_uninterrupted_one(sweep_dir, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    real, calls = RunWriter.on_chunk, {"n": 0}

    def on_chunk(self, chunk, step, metrics):  # Ctrl-C in the second cell, after its 5th point
        real(self, chunk, step, metrics)
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "on_chunk", on_chunk)
    with pytest.raises(Interrupted, match="epsilon=0.2.*run the same command again"):
        run_sweep(*SWEEP[:2], SWEEP[2:], seeds=8, out=out, log=lambda _: None)
    monkeypatch.setattr(RunWriter, "on_chunk", real)
    first = (out / CELLS[0] / "metrics.csv").stat().st_mtime_ns
    lines = []
    run_sweep(*SWEEP[:2], SWEEP[2:], seeds=8, out=out, log=lines.append)
    assert lines[0].startswith("2 cells: 1 finished, 0 diverged, 1 to resume")
    assert (out / CELLS[0] / "metrics.csv").stat().st_mtime_ns == first  # not rerun
    for cell in CELLS:
        assert (out / cell / "metrics.csv").read_bytes() == (sweep_dir / cell / "metrics.csv").read_bytes(), cell
    assert (out / "table.md").read_text().split("- Training time")[0] == \
        (sweep_dir / "table.md").read_text().split("- Training time")[0]


def test_a_diverged_cell_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    import coopmarl.runner

    real, calls = coopmarl.runner.divergence, {"n": 0}

    def diverge_third_chunk(*args):  # the first cell's third chunk
        calls["n"] += 1
        return "loss is nan (seed 0)" if calls["n"] == 3 else real(*args)

    monkeypatch.setattr(coopmarl.runner, "divergence", diverge_third_chunk)
    out = tmp_path / "div"
    args = ["tabular-iql", "climbing", ["epsilon=0.05,0.2", "total_steps=400", "log_points=4"]]
    report, _ = run_sweep(*args, seeds=2, out=out, log=lambda _: None)
    assert "stopped" in json.loads((out / CELLS[0] / "summary.json").read_text())
    assert "stopped" not in json.loads((out / CELLS[1] / "summary.json").read_text())
    assert "diverged at step" in report.table and any(n.startswith("Diverged") for n in report.notes)
    lines = []
    run_sweep(*args, seeds=2, out=out, log=lines.append)  # never rerun
    assert lines[0].startswith("2 cells: 1 finished, 1 diverged, 0 to resume, 0 to train")


def test_ray_backend_writes_the_same_run_directories(sweep_dir, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    # in its own process, as a user runs it: a local Ray instance's threads, signal handlers and worker processes
    # stay out of the test process
    done = subprocess.run([sys.executable, "-m", "coopmarl", "sweep", *SWEEP, "--seeds", "8", "--out", str(out),
                           "--backend", "ray", "--cpus-per-cell", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for cell in CELLS:
        assert (out / cell / "metrics.csv").read_bytes() == (sweep_dir / cell / "metrics.csv").read_bytes(), cell
        a, b = (json.loads((d / cell / "summary.json").read_text()) for d in (sweep_dir, out))
        assert a["metrics"] == b["metrics"]
        assert (out / cell / "marl_eval.json").read_text() == (sweep_dir / cell / "marl_eval.json").read_text()


def test_sweep_grid_parsing():
    fixed, axes, vmapped = parse_grid("ippo", "mpe:spread", ["hidden_sizes=64,64;32", "lr=0.1,0.2", "n_envs=4"])
    assert fixed == {"n_envs": "4"} and axes == {"hidden_sizes": ["64,64", "32"], "lr": ["0.1", "0.2"]}
    assert vmapped == []
    assert parse_grid("ippo", "mpe:spread", ["lr=vmap:0.1,0.2"])[1:] == ({"lr": ["0.1", "0.2"]}, ["lr"])


@pytest.mark.parametrize("argv, match", [
    (["sweep", "tabular-iql", "climbing", "epsilon=0.1"], "at least one key with several values"),
    (["sweep", "tabular-iql", "climbing", "epsilno=0.1,0.2"], "unknown key 'epsilno'.*Did you mean 'epsilon'"),
    (["sweep", "tabular-iql", "climbing", "epsilon=0.1,,0.2"], "empty entry"),
    (["sweep", "tabular-iql", "climbing", "epsilon=0.1,0.1"], "repeat"),
    (["sweep", "tabular-iql", "climbing", "epsilon=0.1,7"], "epsilon"),
    (["sweep", "tabular-iql", "climbing", "epsilon=0.1,0.2", "--backend", "slurm"], "invalid choice"),
    (["reproduce", "dpo-matrix", "--report-only", "--overwrite"], "exclude each other"),
])
def test_bad_sweeps_are_one_error_with_nothing_written(tmp_path, capsys, argv, match):
    out = tmp_path / "x"
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as e:  # argparse's own choices
        code = e.code
    assert code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()


def test_a_changed_setting_or_a_foreign_folder_is_refused(sweep_dir, tmp_path):
    with pytest.raises(ConfigError, match="other settings.*run.total_steps: 2000 there, 1000 now"):
        run_sweep("tabular-iql", "climbing", ["epsilon=0.05,0.2", "total_steps=1000", "log_points=10",
                                              "checkpoint_every=2"], seeds=8, out=sweep_dir)
    with pytest.raises(ConfigError, match="holds the experiment 'sweep tabular-iql climbing', not 'sweep iql climbing'"):
        run_sweep("iql", "climbing", ["lr=0.1,0.2"], out=sweep_dir)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="was not written by `coopmarl reproduce`"):
        run_sweep("tabular-iql", "climbing", ["epsilon=0.05,0.2"], out=foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    # --report-only names the cells that are not finished
    with pytest.raises(ConfigError, match="--report-only: 2 of 2 cells are not finished.*epsilon=0.3"):
        run_sweep("tabular-iql", "climbing", ["epsilon=0.3,0.4"], out=tmp_path / "new", report_only=True)


def test_a_vmapped_sweep_writes_the_same_run_directories(sweep_dir, tmp_path, capsys):
    """`epsilon=vmap:0.05,0.2`: one compiled program, the same directories (tabular learners: bit-identical)."""
    out = tmp_path / "vmapped"
    argv = ["sweep", "tabular-iql", "climbing", "epsilon=vmap:0.05,0.2", *SWEEP[3:], "--seeds", "8", "--out", str(out)]
    assert main(argv) == 0
    assert "epsilon=0.05, epsilon=0.2: trained (vmapped)" in capsys.readouterr().out
    for cell in CELLS:
        assert (out / cell / "metrics.csv").read_bytes() == (sweep_dir / cell / "metrics.csv").read_bytes(), cell
        assert json.loads((out / cell / "cell.json").read_text())["label"] == cell
    assert "Vmapped in one compiled program" in (out / "table.md").read_text()


def test_a_key_that_cannot_be_vmapped_is_refused_with_the_reason(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["sweep", "tabular-iql", "climbing", "q_init=vmap:0,1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    # why (q_init=0 selects code at trace time), where, and the keys that can be vmapped
    assert "`q_init` is used in Python control flow" in err and "epsilon" in err, err
    assert not out.exists()


def test_run_options_set_how_every_cell_is_kept_and_the_cell_stays_the_same(sweep_dir, tmp_path, capsys):
    import yaml

    # a finished grid rerun with other keeping options: the same cells, nothing retrained
    capsys.readouterr()
    assert main(["sweep", *SWEEP, "--seeds", "8", "--out", str(sweep_dir), "--run-option", "keep_checkpoints=1"]) == 0
    assert "2 cells: 2 finished" in capsys.readouterr().out
    out = tmp_path / "kept"
    assert main(["sweep", "tabular-iql", "climbing", "epsilon=0.05,0.2", "total_steps=200", "--out", str(out),
                 "--run-option", "save_buffers=true", "--run-option", "keep_checkpoints=1"]) == 0
    for cell in CELLS:
        run = yaml.safe_load((out / cell / "config.yaml").read_text())["run"]
        assert run["save_buffers"] is True and run["keep_checkpoints"] == 1
    # a key that would change what a cell computes is not a run option
    assert main(["sweep", "tabular-iql", "climbing", "epsilon=0.05,0.2", "--out", str(tmp_path / "no"),
                 "--run-option", "total_steps=100"]) == 2
    assert "run option 'total_steps' is not one" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
