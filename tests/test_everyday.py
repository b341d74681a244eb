"""Everyday use: readable progress off a terminal, `eval --summary`, plot labels, one evaluation path."""

from __future__ import annotations

import io
import json

import jax
import numpy as np

from coopmarl.cli import main
from coopmarl.config import resolve
from coopmarl.evaluation import evaluate_states, greedy_actions
from coopmarl.progress import Progress
from coopmarl.runner import train


class _Pipe(io.StringIO):
    def isatty(self):
        return False


def test_progress_off_a_terminal_prints_plain_lines_with_rate_and_time_left():
    stream = _Pipe()
    with Progress(1000, "qmix on climbing", stream=stream, min_interval=0.0) as bar:
        bar.update(250, "eval_return 1.5")
        bar.update(750, "eval_return 2")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("qmix on climbing: 250/1,000 steps (25%), ")
    assert "steps/s" in lines[0] and "elapsed 0:00:00" in lines[0] and "remaining" in lines[0]
    assert lines[0].endswith("eval_return 1.5")
    assert lines[1].startswith("qmix on climbing: 1,000/1,000 steps (100%)")
    # the rate and the time left follow from the counts
    line = Progress(1000, "x").__enter__()
    line.done = 250
    assert "250 steps/s" in line.line(1.0) and "remaining 0:00:03" in line.line(1.0)


def test_progress_lines_are_throttled_but_the_last_is_always_printed():
    stream = _Pipe()
    with Progress(100, "run", stream=stream, min_interval=3600.0) as bar:
        for _ in range(10):
            bar.update(10)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("run: 100/100 steps (100%)")


def test_eval_summary_prints_one_row_per_metric(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "tabular-iql", "climbing", "total_steps=40", "log_points=2", "--seeds", "3", "--quiet",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--summary"]) == 0
    text = capsys.readouterr().out
    assert "evaluation over seeds" in text and "min" in text and "max" in text
    report = json.loads((out / "eval.json").read_text())
    values = report["metrics"]["eval_return"]["per_seed"]
    row = next(line for line in text.splitlines() if "│ eval_return " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[1] == "3"
    assert float(cells[4]) == float(f"{min(values):.4g}") and float(cells[5]) == float(f"{max(values):.4g}")


def test_plot_labels_name_the_env_and_refuse_unknown_metrics(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        assert main(["train", "tabular-iql", "climbing", "total_steps=20", "log_points=2", "--quiet",
                     "--out", str(path)]) == 0
    assert main(["plot", str(a), str(b), "--out", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").is_file()
    capsys.readouterr()
    assert main(["plot", str(a), "--metric", "regert"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'regert'. Did you mean 'regret'?" in err and "eval_return" in err


def test_one_evaluation_path_for_runs_presets_and_action_records():
    """`evaluate_states` (eval, presets) gives the runner's own rollout evaluation for the same keys, and
    `greedy_actions` clips continuous actions to the env's bounds as the env receives them."""
    r = resolve("ippo", "differential", ["total_steps=40", "log_points=1", "eval_episodes=3", "n_envs=2",
                                         "rollout_length=4", "hidden_sizes=8", "n_epochs=1"], n_seeds=2)
    result = train(r.algo, r.env, r.config, r.run, progress=False)
    keys = [jax.random.PRNGKey(5), jax.random.PRNGKey(6)]
    metrics = evaluate_states(r.algo, r.env, r.config, result.train_state, keys, 3)
    assert set(metrics) >= {"eval_return"} and metrics["eval_return"].shape == (2,)
    again = evaluate_states(r.algo, r.env, r.config, result.train_state, keys, 3)
    np.testing.assert_array_equal(metrics["eval_return"], again["eval_return"])
    actions = greedy_actions(r.algo, r.env, r.config, result.train_state)
    assert actions.shape[:2] == (2, r.env.spec.n_agents)
    assert np.all(actions >= r.env.spec.low) and np.all(actions <= r.env.spec.high)


def test_the_compilation_cache_is_written_and_can_be_turned_off(tmp_path):
    """In fresh processes (JAX fixes its cache folder once it has used it)."""
    import os
    import subprocess
    import sys

    code = ("import jax, sys; from coopmarl.compilation_cache import enable_compilation_cache as e; "
            "print(e(min_compile_seconds=0)); jax.jit(lambda x: x * 3 + 1)(jax.numpy.arange(7.0)).block_until_ready()")
    for switch, expect_files in (("0", False), ("1", True)):
        env = {**os.environ, "COOPMARL_CACHE_DIR": str(tmp_path / switch), "COOPMARL_COMPILATION_CACHE": switch}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert out.strip() == (str(tmp_path / switch) if expect_files else "None")
        files = [f for f in (tmp_path / switch).rglob("*") if f.is_file()]
        assert bool(files) == expect_files
