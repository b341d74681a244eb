"""The `coopmarl` command line: listing, training into a run directory, plotting, and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from coopmarl.cli import main


def run_cli(*args):
    return main(list(args))


def test_list_shows_every_env_algorithm_and_experiment(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    for name in ["climbing", "penalty", "ro-matrix", "tensor", "three-state", "dpo-2x2-1", "dpo-2x2-4",
                 "random-stochastic-game", "tabular:PATH", "maosvi", "maosql", "rommeo-q", "rommeo-q-emp",
                 "dpo-exact", "jal", "tabular-iql", "fmq", "wolf-phc", "rommeo-climbing", "maosql-tabular", "dpo-matrix",
                 "stochastic-game-optimum"]:
        assert name in out, name


def test_train_writes_a_complete_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "maosql", "ro-matrix", "--seeds", "8", "--out", str(out), "total_steps=200",
                   "--quiet") == 0
    for f in ["config.yaml", "metrics.csv", "summary.json", "curves.png"]:
        assert (out / f).is_file(), f
    assert list((out / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == list(range(8))
    for metric in ["eval_return", "optimal_return", "regret", "p_optimal"]:
        m = summary["metrics"][metric]
        assert len(m["per_seed"]) == 8
        assert m["mean"] == pytest.approx(np.mean(m["per_seed"]))
        assert m["std"] == pytest.approx(np.std(m["per_seed"]))
    assert summary["metrics"]["optimal_return"]["mean"] == pytest.approx(30.0, rel=1e-6)  # 10 plays of (3,3)
    assert summary["static"]["theorem3_condition"] is False  # the paper's α=50, β=10 violate Thm. 3
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["algo"] == "maosql" and config["env"]["name"] == "ro-matrix"
    assert config["algo_config"]["entropy_alpha"] == 50.0 and config["run"]["total_steps"] == 200
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header == "seed,env_steps,name,value"


def test_overrides_reach_the_algorithm_and_the_env(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "tabular-iql", "penalty", "env.k=-7", "epsilon=0.5", "total_steps=100", "--out", str(out),
                   "--quiet") == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["env"]["k"] == -7.0 and config["algo_config"]["epsilon"] == 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "maosqll", "ro-matrix"], "unknown algorithm 'maosqll'. Did you mean 'maosql'?"),
        (["train", "maosql", "ro-matrx"], "unknown environment 'ro-matrx'. Did you mean 'ro-matrix'?"),
        (["train", "maosql", "ro-matrix", "entropy_alpa=3"], "unknown key 'entropy_alpa'"),
        (["train", "maosql", "ro-matrix", "entropy_alpha=abc"], "must be of type float"),
        (["train", "maosql", "ro-matrix", "total_steps=1.5"], "must be of type int"),
        (["train", "maosql", "ro-matrix", "env.horizn=3"], "unknown parameter 'horizn'"),
        (["train", "maosql", "ro-matrix", "zeta_epsilon=2"], "zeta_epsilon must be a finite number in (0, 1], got 2.0"),
        (["train", "maosql", "ro-matrix", "lr"], "is not of the form key=value"),
        (["train", "maosql", "tabular:/nonexistent/game.npz"], "no such game file"),
        (["reproduce", "rommeo-climbin"], "Did you mean 'rommeo-climbing'?"),
        (["reproduce", "rommeo-climbing", "sedes=3"], "unknown option 'sedes'"),
    ],
)
def test_bad_input_gives_one_clear_error_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert run_cli(*args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("error:") == 1
    assert not out.exists()


def test_error_lists_valid_choices(capsys):
    run_cli("train", "nope", "climbing")
    err = capsys.readouterr().err
    assert "Valid algorithms:" in err and "maosql" in err and "rommeo-q" in err
    run_cli("train", "tabular-iql", "climbing", "bogus=1")
    err = capsys.readouterr().err
    assert "Algorithm keys: gamma, lr_decay_steps" in err and "Run keys: total_steps" in err


def test_user_game_from_npz_trains_from_the_cli(tmp_path):
    reward = np.array([[[1.0, 0.0], [0.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]]])  # [S=2, A, A]
    transition = np.zeros((2, 2, 2, 2))
    transition[..., 1] = 1.0  # always go to state 1
    path = tmp_path / "game.npz"
    np.savez(path, reward=reward, transition=transition, initial=np.array([1.0, 0.0]))
    out = tmp_path / "run"
    assert run_cli("train", "maosvi", f"tabular:{path}", "env.horizon=2", "env.discount=1.0",
                   "total_steps=200", "--out", str(out), "--quiet") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["optimal_return"]["mean"] == pytest.approx(6.0)  # 4 then 2
    assert summary["metrics"]["greedy_regret"]["mean"] == pytest.approx(0.0, abs=1e-5)


def test_same_seed_same_numbers(tmp_path):
    for d in ("a", "b"):
        assert run_cli("train", "tabular-iql", "climbing", "total_steps=300", "--seeds", "3", "--out",
                       str(tmp_path / d), "--quiet") == 0
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()


def test_plot_compares_runs(tmp_path):
    for d in ("a", "b"):
        run_cli("train", "tabular-iql", "climbing", "total_steps=100", "--out", str(tmp_path / d), "--quiet",
                "--seed", "1" if d == "a" else "2")
    assert run_cli("plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp.png")) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 1000


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "coopmarl.cli", "list", "algos"], capture_output=True, text=True)
    assert proc.returncode == 0 and "maosql" in proc.stdout


def test_solve_prints_the_exact_optimum(capsys, tmp_path):
    assert run_cli("solve", "penalty", "k=-5") == 0
    out = capsys.readouterr().out
    assert "optimal return: 10" in out and "(1, 1), (3, 3)" in out
    reward = np.array([[[1.0, 0.0], [0.0, 4.0]]])
    path = tmp_path / "g.npz"
    np.savez(path, reward=reward, transition=np.ones((1, 2, 2, 1)))
    assert run_cli("solve", f"tabular:{path}", "horizon=3") == 0
    assert "optimal return: 12" in capsys.readouterr().out  # 3 plays of (2, 2)
    assert run_cli("solve", "three-state", "--infinite", "discount=0.9") == 0
    assert "infinite horizon, discount 0.9" in capsys.readouterr().out
    assert run_cli("solve", "climbing", "horizon=abc") == 2
    assert "must be of type int" in capsys.readouterr().err
