"""W&B and MLflow follow a run directory: one tracker run per run directory holding every seed's series and
their mean at the env step — the very values of metrics.csv —, continued (not restarted) by `coopmarl
resume`; a bad `logger` or a missing package is one clear error before anything runs. Offline only: W&B in
offline mode, MLflow's local file store, both under tmp_path."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from coopmarl.cli import main
from coopmarl.errors import ConfigError, Interrupted
from coopmarl.outputs import RunWriter, read_rows, resolve_run, write_run
from coopmarl.results import RunResult
from coopmarl.training import resume, train_run

pytest.importorskip("wandb")
pytest.importorskip("mlflow")

import wandb  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from wandb.proto import wandb_internal_pb2  # noqa: E402

TINY = ("tabular-iql", "climbing", ["total_steps=200", "log_points=4", "checkpoint_every=1"])
STEPS = [50, 100, 150, 200]


def _offline(mp: pytest.MonkeyPatch, root: Path):
    """W&B offline and MLflow's file store, both under `root`; nothing reaches the network."""
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(root))
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_CONSOLE", "off")
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.setenv("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri())
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch


@pytest.fixture
def offline(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    yield tmp_path
    wandb.teardown()  # W&B reads WANDB_DIR once per process setup




@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny two-seed run logged to both trackers."""
    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, root)
        algo, env, overrides = TINY
        _, run_dir = train_run(algo, env, [*overrides, "logger=wandb,mlflow", "logger_group=tiny"], seeds=2,
                               out=root / "runs" / "cell", progress=False)
        wandb.teardown()
    return root, run_dir


def _expected(run_dir: Path, sep: str) -> dict[str, dict[int, float]]:
    """metrics.csv as tracker series: {`name`: {step: mean over seeds}, `name{sep}seed_S`: {step: value}}."""
    table: dict[tuple[str, int], dict[int, float]] = {}
    for seed, step, name, value in read_rows(run_dir):
        table.setdefault((name, step), {})[seed] = value
    out: dict[str, dict[int, float]] = {}
    for (name, step), by_seed in table.items():
        finite = [v for v in by_seed.values() if np.isfinite(v)]
        if finite:
            out.setdefault(name, {})[step] = float(np.mean(finite))
        for seed, v in by_seed.items():
            if np.isfinite(v):
                out.setdefault(f"{name}{sep}seed_{seed}", {})[step] = v
    return out


def _assert_series(got: dict, expected: dict):
    """The same series, at the same steps, with the same values (float64, as metrics.csv holds them)."""
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert sorted(got[key]) == sorted(expected[key]), key
        for step, value in expected[key].items():
            assert got[key][step] == pytest.approx(value, rel=1e-12), (key, step)


def _mlflow_series(uri: str, run_id: str) -> dict[str, dict[int, float]]:
    client = MlflowClient(uri)
    out = {}
    for key in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, key)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"
        out[key] = {m.step: m.value for m in history}
    return out


def _wandb_records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte header (":W&B", magic, version), then LevelDB-log
    records (crc u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last) in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, part = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        part += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            yield record
            part = b""


def _wandb_runs(root: Path) -> list[dict]:
    """Every offline W&B run under `root` (oldest first): its id, group, name, tags, config, history
    {key: {step: value}} and summary updates."""
    runs = []
    for path in sorted(root.glob("wandb/offline-run-*/run-*.wandb")):
        run = {"history": {}, "summary": {}}
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                run.update(id=r.run_id, group=r.run_group, name=r.display_name, tags=list(r.tags),
                           start=(r.start_time.seconds, r.start_time.nanos),
                           config={u.key: json.loads(u.value_json) for u in r.config.update})
            elif kind == "history":
                step = record.history.step.num
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        assert step not in run["history"].get(key, {}), f"{key} logged twice at step {step}"
                        run["history"].setdefault(key, {})[step] = json.loads(item.value_json)
            elif kind == "summary":
                for item in record.summary.update:
                    run["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        runs.append(run)
    return sorted(runs, key=lambda r: r["start"])


def test_mlflow_holds_every_seed_and_the_mean_of_metrics_csv(tracked):
    root, run_dir = tracked
    state = json.loads((run_dir / "loggers.json").read_text())["mlflow"]
    client = MlflowClient(state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert run.info.run_name == "cell" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "coopmarl"
    assert {k: run.data.tags[k] for k in ("group", "algo", "env")} == {"group": "tiny", "algo": "tabular-iql",
                                                                       "env": "climbing"}
    assert run.data.params["run.total_steps"] == "200" and run.data.params["algo_config.epsilon"] == "0.1"
    series = _mlflow_series(state["tracking_uri"], state["run_id"])
    expected = _expected(run_dir, ".")
    assert "eval_return.seed_1" in series and sorted(series["eval_return"]) == STEPS
    _assert_series(series, expected)
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    for name, load in (("config.yaml", yaml.safe_load), ("summary.json", json.loads)):
        assert load((artifacts / name).read_text()) == load((run_dir / name).read_text()), name


def test_wandb_offline_holds_every_seed_and_the_mean_of_metrics_csv(tracked):
    root, run_dir = tracked
    (run,) = _wandb_runs(root)
    assert run["id"] == json.loads((run_dir / "loggers.json").read_text())["wandb"]["id"]
    assert (run["group"], run["name"], run["tags"]) == ("tiny", "cell", ["tabular-iql", "climbing"])
    assert run["config"]["run"]["logger"] == "wandb,mlflow" and run["config"]["algo"] == "tabular-iql"
    _assert_series(run["history"], _expected(run_dir, "/"))
    assert "eval_return/seed_0" in run["history"] and run["summary"]["final_step"] == 200


def test_resume_continues_the_same_tracker_runs_without_logging_a_point_twice(offline, monkeypatch):
    """Interrupted after its third point, whose checkpoint was lost (as a kill between the two leaves it),
    the run resumes from the second and repeats the third: the trackers get it once."""
    algo, env, overrides = TINY
    real = RunWriter.on_chunk
    calls = {"n": 0}

    def on_chunk(self, chunk, step, metrics):
        real(self, chunk, step, metrics)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "on_chunk", on_chunk)
    run_dir = offline / "runs" / "run"
    with pytest.raises(Interrupted):
        train_run(algo, env, [*overrides, "logger=mlflow,wandb"], seeds=2, out=run_dir, progress=False)
    monkeypatch.setattr(RunWriter, "on_chunk", real)
    first = json.loads((run_dir / "loggers.json").read_text())
    assert first["mlflow"]["last_step"] == first["wandb"]["last_step"] == 150
    client = MlflowClient(first["mlflow"]["tracking_uri"])
    stopped = client.get_run(first["mlflow"]["run_id"])
    assert stopped.info.status == "KILLED" and stopped.data.tags["stopped"] == "interrupted at step 150"
    shutil.rmtree(run_dir / "checkpoints" / "150")  # the third point's checkpoint never made it
    result, _ = resume(run_dir, progress=False)
    assert list(result.steps) == STEPS
    second = json.loads((run_dir / "loggers.json").read_text())
    assert second["mlflow"]["run_id"] == first["mlflow"]["run_id"] and second["wandb"]["id"] == first["wandb"]["id"]
    experiment = client.get_experiment_by_name("coopmarl")
    assert len(client.search_runs([experiment.experiment_id])) == 1  # one MLflow run for the run directory
    run = client.get_run(first["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and "stopped" not in run.data.tags
    # each step once (checked by _mlflow_series), with metrics.csv's values (bit-identical resume: no buffers)
    _assert_series(_mlflow_series(first["mlflow"]["tracking_uri"], run.info.run_id), _expected(run_dir, "."))
    runs = _wandb_runs(offline)  # offline, a resumed W&B run is a second file of the same run id
    assert [r["id"] for r in runs] == [first["wandb"]["id"]] * 2
    assert sorted(runs[0]["history"]["eval_return"]) == [50, 100, 150]
    assert sorted(runs[1]["history"]["eval_return"]) == [200]
    merged = {k: {**runs[0]["history"].get(k, {}), **runs[1]["history"].get(k, {})}
              for k in runs[0]["history"].keys() | runs[1]["history"].keys()}
    _assert_series(merged, _expected(run_dir, "/"))
    assert runs[0]["summary"]["stopped"] == "interrupted at step 150" and runs[1]["summary"]["stopped"] is None


def _hand_made(config: dict) -> tuple[dict, RunResult]:
    """A two-seed, three-point result (seed 1 has no finished episode at the first point) and its config."""
    metrics = {"eval_return": np.array([[1.0, np.nan], [2.0, 4.0], [3.0, 5.0]])}
    result = RunResult("tabular-iql", "climbing", np.array([10, 20, 30]), metrics, None, [3, 4])
    return {"algo": "tabular-iql", "env": {"name": "climbing"}, "algo_config": {}, **config}, result


def test_nan_values_are_skipped_not_logged(offline):
    config, result = _hand_made({"run": {"logger": "mlflow", "logger_project": "hand"}})
    run_dir = write_run(offline / "hand" / "run", config, result, plot=False)
    state = json.loads((run_dir / "loggers.json").read_text())["mlflow"]
    assert _mlflow_series(state["tracking_uri"], state["run_id"]) == {
        "eval_return": {10: 1.0, 20: 3.0, 30: 4.0},
        "eval_return.seed_3": {10: 1.0, 20: 2.0, 30: 3.0},
        "eval_return.seed_4": {20: 4.0, 30: 5.0}}


def test_a_failing_tracker_is_a_warning_and_the_run_directory_is_whole(offline, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # MLflow 3 now refuses its file store
    config, result = _hand_made({"run": {"logger": "mlflow"}})
    with pytest.warns(RuntimeWarning, match="logger mlflow: could not start a run.*MLFLOW_TRACKING_URI"):
        run_dir = write_run(offline / "failing", config, result, plot=False)
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "metrics.csv", "summary.json", "tb"}
    assert len(read_rows(run_dir)) == 6


def test_a_bad_logger_is_one_error_naming_the_choices(tmp_path, capsys):
    from coopmarl.config import resolve

    with pytest.raises(ConfigError, match="unknown logger 'bogus'.*none, wandb, mlflow, or a comma-separated"):
        resolve("tabular-iql", "climbing", ["logger=wandb,bogus"])
    with pytest.raises(ConfigError, match="names a logger twice"):
        resolve("tabular-iql", "climbing", ["logger=mlflow,mlflow"])
    with pytest.raises(ConfigError, match="W&B project name cannot contain"):
        resolve("tabular-iql", "climbing", ["logger=wandb", "logger_project=a/b"])
    assert main(["train", "tabular-iql", "climbing", "logger=bogus", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "unknown logger 'bogus'" in err and "wandb" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_missing_package_names_the_extra_before_anything_runs(name, tmp_path, monkeypatch):
    import coopmarl.runner

    monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    monkeypatch.setattr(coopmarl.runner, "train", lambda *a, **k: pytest.fail("the run started"))
    with pytest.raises(ConfigError, match=rf"logger={name} needs the {name} package.*pip install 'coopmarl\[{name}\]'"):
        train_run(*TINY[:2], [*TINY[2], f"logger={name}"], out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_run_directory_from_before_the_logger_keys_still_resolves(tracked, tmp_path):
    _, run_dir = tracked
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in ("logger", "logger_project", "logger_group"):
        del config["run"][key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert resolve_run(tmp_path).run.logger == "none"
