"""Honest statistics: coopmarl.stats against rliable (Agarwal et al. 2021's library) and by hand, `coopmarl
aggregate` on real run directories against an independent computation from their metrics.csv, and
marl_eval.json in marl-eval's raw-data layout."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from rliable import library as rly
from rliable import metrics as rlm

import coopmarl
from coopmarl import stats
from coopmarl.aggregation import aggregate
from coopmarl.cli import main
from coopmarl.errors import ConfigError

STATS = ("iqm", "mean", "median", "optimality_gap")


def _scores(seed: int, shape: tuple[int, int], discrete: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if discrete:  # ties, as returns of a matrix game have
        return rng.integers(0, 4, size=shape).astype(float) / 3
    return rng.gamma(2.0, 0.4, size=shape)  # skewed, partly above the gap threshold 1


# ---- against rliable ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(10, 5), (5, 1), (7, 3), (1, 4)])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("discrete", [False, True])
def test_point_estimates_equal_rliables(shape, seed, discrete):
    x = _scores(seed, shape, discrete)
    y = _scores(seed + 100, (shape[0] + 2, shape[1]), discrete)
    assert stats.iqm(x) == pytest.approx(rlm.aggregate_iqm(x), rel=1e-12, abs=1e-12)
    assert stats.mean(x) == pytest.approx(rlm.aggregate_mean(x), rel=1e-12, abs=1e-12)
    assert stats.median(x) == pytest.approx(rlm.aggregate_median(x), rel=1e-12, abs=1e-12)
    for gamma in (1.0, 0.5):
        assert stats.optimality_gap(x, gamma) == pytest.approx(rlm.aggregate_optimality_gap(x, gamma), abs=1e-12)
    assert stats.probability_of_improvement(x, y) == pytest.approx(rlm.probability_of_improvement(x, y), abs=1e-12)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    taus = np.linspace(0, 2, 21)
    profiles, _ = rly.create_performance_profile({"x": x}, taus, reps=2)
    np.testing.assert_allclose(stats.performance_profile(x, taus), profiles["x"], atol=1e-12)


def _agree(ours: tuple[float, float], theirs: tuple[float, float], point: float, tol: float):
    """Two bootstrap intervals of one estimate: endpoints within `tol` of the interval's width (the resamples
    differ), and both contain the point estimate."""
    width = max(theirs[1] - theirs[0], 1e-12)
    assert abs(ours[0] - theirs[0]) <= tol * width and abs(ours[1] - theirs[1]) <= tol * width, (ours, theirs)
    assert ours[0] <= point <= ours[1] and theirs[0] <= point <= theirs[1]


def test_interval_estimates_agree_with_rliables():
    x = _scores(3, (30, 4))
    ours = stats.interval_estimates(x, STATS, reps=20_000, rng=0)
    np.random.seed(0)  # rliable draws from numpy's global generator
    points, cis = rly.get_interval_estimates(
        {"x": x}, lambda s: np.array([rlm.aggregate_iqm(s), rlm.aggregate_mean(s), rlm.aggregate_median(s),
                                      rlm.aggregate_optimality_gap(s)]), reps=5_000)
    for i, name in enumerate(STATS):
        assert ours[name].value == pytest.approx(points["x"][i], abs=1e-12)
        _agree(ours[name].ci, (cis["x"][0, i], cis["x"][1, i]), ours[name].value, 0.1)


def test_probability_of_improvement_interval_agrees_with_rliables():
    x, y = _scores(4, (12, 3)) + 0.1, _scores(5, (10, 3))
    ours = stats.probability_of_improvement_interval(x, y, reps=20_000, rng=0)
    np.random.seed(0)
    points, cis = rly.get_interval_estimates({"xy": (x, y)}, rlm.probability_of_improvement, reps=1_000)
    assert ours.value == pytest.approx(points["xy"], abs=1e-12)
    _agree(ours.ci, tuple(np.ravel(cis["xy"])), ours.value, 0.15)


def test_performance_profile_interval_agrees_with_rliables():
    x = _scores(6, (25, 3))
    taus = np.linspace(0, 2.5, 26)
    profile, low, high = stats.performance_profile_interval(x, taus, reps=2_000, rng=0)
    np.random.seed(0)
    profiles, cis = rly.create_performance_profile({"x": x}, taus, reps=2_000)
    np.testing.assert_allclose(profile, profiles["x"], atol=1e-12)
    # fractions of 75 runs: resampling noise moves an endpoint by a few runs at most
    np.testing.assert_allclose(low, cis["x"][0], atol=0.05)
    np.testing.assert_allclose(high, cis["x"][1], atol=0.05)
    assert (low <= profile + 1e-12).all() and (profile <= high + 1e-12).all()


# ---- by hand -----------------------------------------------------------------------------------------------


def test_iqm_by_hand():
    # 8 values: cut int(0.25 * 8) = 2 from each end -> mean of 3, 4, 5, 6
    assert stats.iqm(np.array([100.0, 1, 2, 3, 4, 5, 6, 7])) == 4.5
    # 5 values: cut 1 from each end -> mean of 1, 2, 3
    assert stats.iqm(np.array([10.0, 0, 3, 1, 2])) == 2.0
    assert stats.iqm(np.array([[1.0, 2.0], [3.0, 5.0]])) == 2.5  # 4 runs pooled over 2 tasks: mean of 2, 3
    # tasks with different numbers of runs: IQM pools the runs, mean and median average each task's mean
    ragged = [np.array([1.0, 2, 3, 4]), np.array([5.0, 6])]
    assert stats.iqm(ragged) == 3.5 and stats.mean(ragged) == 4.0 and stats.median(ragged) == 4.0
    assert stats.run_median(ragged) == 3.5
    assert stats.optimality_gap(np.array([0.5, 2.0]), 1.0) == 0.25
    assert stats.probability_of_improvement(np.array([[2.0], [1.0]]), np.array([[1.0], [0.0]])) == 0.875


def test_a_constant_sample_or_one_run_gives_a_point_interval():
    constant = np.full((6, 2), 3.0)
    for name, e in stats.interval_estimates(constant, STATS, reps=500, rng=1).items():
        assert e.low == e.value == e.high, name
    for name, e in stats.interval_estimates(np.array([[0.3, 0.7]]), STATS, reps=500, rng=1).items():
        assert e.low == e.value == e.high, name  # one run per task: nothing to resample
    poi = stats.probability_of_improvement_interval(constant, constant, reps=500, rng=1)
    assert (poi.value, poi.low, poi.high) == (0.5, 0.5, 0.5)
    profile, low, high = stats.performance_profile_interval(constant, [2.0, 3.0], reps=500, rng=1)
    assert profile.tolist() == low.tolist() == high.tolist() == [1.0, 0.0]


def test_a_seed_fixes_the_intervals():
    x = _scores(7, (8, 2))
    a = stats.interval_estimates(x, reps=3_000, rng=11)
    assert a == stats.interval_estimates(x, reps=3_000, rng=11)
    assert a == stats.interval_estimates(x, reps=3_000, rng=np.random.default_rng(11))
    assert a != stats.interval_estimates(x, reps=3_000, rng=12)
    assert a["iqm"].value == stats.interval_estimates(x, reps=3_000, rng=12)["iqm"].value


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        stats.iqm(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="no run"):
        stats.mean([np.array([1.0]), np.array([])])
    with pytest.raises(ValueError, match="reps"):
        stats.interval_estimates(np.ones(3), reps=0)
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement(np.ones((3, 2)), np.ones((3, 3)))


def test_marl_eval_names():
    assert stats.marl_eval_names("lbf:5x5-2p-1f-coop") == ("lbf", "5x5-2p-1f-coop")
    assert stats.marl_eval_names("tabular:games/g.npz") == ("tabular", "games/g.npz")
    assert stats.marl_eval_names("climbing") == ("coopmarl", "climbing")


# ---- real run directories ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for name, algo in (("a", "tabular-iql"), ("b", "jal")):
        coopmarl.train_run(algo, "climbing", ["total_steps=200", "log_points=2"], seeds=4, out=root / name,
                           progress=False)
    return root


def _final_from_csv(run_dir: Path, metric: str = "eval_return") -> np.ndarray:
    """Each seed's value at its last logged point, read straight from metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["name"] == metric]
    last = {}
    for r in rows:
        seed, step = int(r["seed"]), int(r["env_steps"])
        if seed not in last or step > last[seed][0]:
            last[seed] = (step, float(r["value"]))
    return np.array([last[s][1] for s in sorted(last)])


def test_aggregate_cli_matches_an_independent_computation(runs, tmp_path, capsys):
    out = tmp_path / "agg"
    assert main(["aggregate", str(runs), "--out", str(out), "--reps", "2000", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "aggregate.json").read_text())
    finals = {}
    for name, algo in (("a", "tabular-iql"), ("b", "jal")):
        x = finals[algo] = _final_from_csv(runs / name)
        cell = report[algo]["climbing"]["eval_return"]
        assert cell["n_seeds"] == 4 and cell["n_nonfinite"] == 0
        assert cell["iqm"] == pytest.approx(scipy.stats.trim_mean(x, 0.25))
        assert cell["mean"] == pytest.approx(x.mean()) and cell["median"] == pytest.approx(np.median(x))
        assert cell["optimality_gap"] == pytest.approx(1 - np.minimum(x, 1).mean())
        for k in ("iqm", "mean", "median", "optimality_gap"):
            lo, hi = cell[f"{k}_ci"]
            assert lo <= cell[k] <= hi
            if k != "optimality_gap":  # resampled seeds never leave the seeds' range
                assert x.min() <= lo and hi <= x.max()
        assert f"{cell['iqm']:.4g} [{cell['iqm_ci'][0]:.4g}, {cell['iqm_ci'][1]:.4g}]" in printed
    x, y = finals["jal"], finals["tabular-iql"]
    p = ((x[:, None] > y[None, :]).mean() + 0.5 * (x[:, None] == y[None, :]).mean())
    poi = report["probability_of_improvement"]["eval_return"]
    assert poi["jal"]["tabular-iql"]["p"] == pytest.approx(p)
    assert poi["tabular-iql"]["jal"]["p"] == pytest.approx(1 - p)
    assert poi["jal"]["tabular-iql"]["envs"] == ["climbing"]
    profile = report["performance_profile"]["eval_return"]["climbing"]
    assert set(profile["algos"]) == {"jal", "tabular-iql"}
    assert len(profile["tau"]) == len(profile["algos"]["jal"]["fraction"])
    assert sorted(report["settings"]["runs"]) == [str(runs / "a"), str(runs / "b")]
    for f in ("aggregate.json", "marl_eval.json", "performance_profile_eval_return.png",
              "aggregate_intervals_eval_return.png"):
        assert (out / f).is_file(), f
    merged = json.loads((out / "marl_eval.json").read_text())
    assert set(merged["coopmarl"]["climbing"]) == {"jal", "tabular-iql"}
    # the same seed gives the same file; the Python API is the CLI's
    again = coopmarl.aggregate([runs / "a", runs / "b"], "eval_return", reps=2000, seed=3, write=False)
    assert again["jal"] == report["jal"] and again["probability_of_improvement"] == report["probability_of_improvement"]


def test_marl_eval_json_of_a_run_holds_metrics_csv(runs):
    data = json.loads((runs / "a" / "marl_eval.json").read_text())
    assert list(data) == ["coopmarl"] and list(data["coopmarl"]) == ["climbing"]
    seeds = data["coopmarl"]["climbing"]["tabular-iql"]
    assert list(seeds) == ["seed_0", "seed_1", "seed_2", "seed_3"]
    with open(runs / "a" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = sorted({int(r["env_steps"]) for r in rows})
    names = {r["name"] for r in rows}
    for run in seeds.values():
        assert list(run) == [f"step_{i}" for i in range(len(steps))] + ["absolute_metrics"]  # absolute last
        for i, step in enumerate(steps):
            assert run[f"step_{i}"]["step_count"] == step
            assert set(run[f"step_{i}"]) == names | {"step_count"}
        assert run["absolute_metrics"] == {n: run[f"step_{len(steps) - 1}"][n] for n in names}
    for r in rows:
        point = seeds[f"seed_{r['seed']}"][f"step_{steps.index(int(r['env_steps']))}"]
        assert point[r["name"]] == [pytest.approx(float(r["value"]))]


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.png")))


def test_bad_selections_are_one_error_and_write_nothing(runs, tmp_path):
    out = tmp_path / "agg"
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_runs").mkdir()
    (tmp_path / "not_runs" / "notes.txt").write_text("hello")
    cases = [
        (dict(runs=[runs], metrics="eval_retrun"), "unknown metric 'eval_retrun'. Did you mean 'eval_return'?"),
        (dict(runs=[tmp_path / "empty"]), "is not a run directory"),
        (dict(runs=[tmp_path / "not_runs"]), "is not a run directory"),
        (dict(runs=[tmp_path / "missing"]), "does not exist"),
        (dict(runs=[runs / "a" / "config.yaml"]), "is a file"),
        (dict(runs=[], metrics="eval_return"), "at least one run"),
        (dict(runs=[runs], reps=0), "reps"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
            aggregate(out=out, **kwargs)
        assert not out.exists()
    assert main(["aggregate", str(runs), "--metric", "nope", "--out", str(out)]) == 2 and not out.exists()
    # "The runs logged:" names the valid choices
    with pytest.raises(ConfigError, match="The runs logged: .*eval_return"):
        aggregate([runs], "nope", out=out)


def test_runs_are_pooled_only_when_they_are_the_same_experiment(runs, tmp_path):
    twin = _copy(runs / "a", tmp_path / "sel" / "twin")
    _copy(runs / "a", tmp_path / "sel" / "a")
    with pytest.raises(ConfigError, match="seed 0 of tabular-iql on climbing appears in two runs"):
        aggregate([tmp_path / "sel"], write=False)
    config = (twin / "config.yaml").read_text()
    (twin / "config.yaml").write_text(config.replace("epsilon: 0.1", "epsilon: 0.2"))
    with pytest.raises(ConfigError, match="differ in epsilon"):
        aggregate([tmp_path / "sel"], write=False)
    (twin / "summary.json").unlink()  # an unfinished run is skipped, and listed
    report = aggregate([tmp_path / "sel"], reps=200, profile_reps=50, write=False)
    assert report["settings"]["skipped"] == {str(twin): "unfinished (no summary.json)"}
    assert report["tabular-iql"]["climbing"]["eval_return"]["n_seeds"] == 4
    (tmp_path / "sel" / "a" / "summary.json").unlink()
    with pytest.raises(ConfigError, match="no finished run"):
        aggregate([tmp_path / "sel"], write=False)


def test_aggregate_does_not_import_jax(runs, tmp_path):
    import subprocess
    import sys

    code = (f"import sys; from coopmarl.cli import main; "
            f"assert main(['aggregate', {str(runs)!r}, '--reps', '100', '--profile-reps', '20', '--out', "
            f"{str(tmp_path / 'agg')!r}]) == 0; assert 'jax' not in sys.modules, 'aggregate imported jax'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert coopmarl.aggregate is aggregate  # the package root exposes it lazily
