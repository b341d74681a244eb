"""Runs that survive: a killed or interrupted run resumes to the very files of an uninterrupted one, a
diverging run stops with its last finite state, run directories are never mixed, and a run records what
produced it.
"""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import coopmarl
from coopmarl.checkpoints import CheckpointStore, state_leaves
from coopmarl.cli import main
from coopmarl.config import ConfigError
from coopmarl.errors import Diverged, Interrupted
from coopmarl.outputs import RunWriter, list_checkpoints, load_checkpoint, new_run_dir
from coopmarl.training import resume, train_run

SMALL = {  # a few seconds each; every chunk is a logging point and a checkpoint
    "qmix": ("lbf:5x5-2p-1f-coop", ["total_steps=600", "log_points=6", "batch_size=4", "buffer_size=16", "n_envs=2",
                                    "hidden_sizes=16", "eval_episodes=2", "checkpoint_every=1"]),
    "ippo": ("mpe:spread", ["total_steps=600", "log_points=6", "hidden_sizes=16,16", "n_epochs=2", "n_envs=2",
                            "env.n_agents=2", "eval_episodes=2", "checkpoint_every=1"]),
}


def _interrupt_after(monkeypatch, chunks: int):
    """Ctrl-C right after the `chunks`-th chunk has been logged."""
    real = RunWriter.on_chunk
    calls = {"n": 0}

    def on_chunk(self, chunk, step, metrics):
        real(self, chunk, step, metrics)
        calls["n"] += 1
        if calls["n"] == chunks:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "on_chunk", on_chunk)


def _assert_same_run(a: Path, b: Path):
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["metrics"] == sb["metrics"] and sa["final_step"] == sb["final_step"] and "stopped" not in sb
    _, x = load_checkpoint(a)
    _, y = load_checkpoint(b)
    la, lb = state_leaves(x, True), state_leaves(y, True)
    assert la.keys() == lb.keys()
    for k in la:
        np.testing.assert_array_equal(np.asarray(la[k]), np.asarray(lb[k]), err_msg=k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    for algo, (env, overrides) in SMALL.items():
        train_run(algo, env, overrides, seeds=2, out=root / algo, progress=False)
    return root


# IPPO's case is behind `slow` (~50 s); its resume from inside the first chunk runs by default
@pytest.mark.parametrize("algo", [pytest.param(a, marks=pytest.mark.slow) if a == "ippo" else a for a in sorted(SMALL)])
def test_ctrl_c_then_resume_equals_the_uninterrupted_run(algo, uninterrupted, tmp_path, monkeypatch):
    env, overrides = SMALL[algo]
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupted, match="interrupted at step 300"):
        train_run(algo, env, overrides, seeds=2, out=tmp_path / "run", progress=False)
    monkeypatch.undo()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped"] == "interrupted at step 300" and list_checkpoints(tmp_path / "run")[-1] == 300
    result, _ = resume(tmp_path / "run", progress=False)
    assert list(result.steps) == [100, 200, 300, 400, 500, 600]
    _assert_same_run(uninterrupted / algo, tmp_path / "run")
    resumed, whole = _tb_scalars(tmp_path / "run"), _tb_scalars(uninterrupted / algo)
    assert resumed == whole  # the events were rewritten, not appended to: no point twice
    assert all(n == 1 for n in resumed.values()) and ("eval_return/seed_1", 600) in resumed


def _tb_scalars(run_dir: Path) -> dict:
    """{(tag, step): how many times it was logged} over a run's TensorBoard event files (TFRecord framing:
    length u64, crc u32, an Event protobuf, crc u32)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    counts: dict = {}
    for f in (run_dir / "tb").glob("events.out.tfevents.*"):
        data, i = f.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 16 + n
            for v in event.summary.value:
                counts[(v.tag, event.step)] = counts.get((v.tag, event.step), 0) + 1
    return counts


KILLER = textwrap.dedent("""
    import os, signal, sys
    from coopmarl.outputs import RunWriter
    real = RunWriter.on_checkpoint
    def on_checkpoint(self, loop, step, kind="periodic"):
        real(self, loop, step, kind)
        if loop.chunk == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies right after its second checkpoint
    RunWriter.on_checkpoint = on_checkpoint
    from coopmarl.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_then_resume_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    """The acceptance scenario at a small size: `coopmarl train` killed by SIGKILL, `coopmarl resume` finishes it."""
    env, overrides = SMALL["qmix"]
    run_dir = tmp_path / "killed"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run([sys.executable, str(script), "train", "qmix", env, *overrides, "--seeds", "2", "--out",
                           str(run_dir), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (run_dir / "summary.json").exists() and list_checkpoints(run_dir) == [100, 200]
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    _assert_same_run(uninterrupted / "qmix", run_dir)
    assert not list(run_dir.glob(".*.tmp"))


def test_resume_without_replay_buffers_says_it_cannot_be_exact(tmp_path, monkeypatch):
    env, overrides = SMALL["qmix"]
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        train_run("qmix", env, overrides + ["save_buffers=false"], out=tmp_path / "run", progress=False)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="cannot be bit-identical"):
        result, _ = resume(tmp_path / "run", progress=False)
    assert list(result.steps) == [100, 200, 300, 400, 500, 600] and np.isfinite(result.metrics["eval_return"]).all()


def test_ctrl_c_in_the_cli_saves_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    env, overrides = SMALL["ippo"]
    _interrupt_after(monkeypatch, 1)
    assert main(["train", "ippo", env, *overrides, "--out", str(tmp_path / "run"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "interrupted at step 100" in err and f"coopmarl resume {tmp_path / 'run'}" in err
    assert list_checkpoints(tmp_path / "run") == [100]


def test_a_diverging_run_stops_and_keeps_its_last_finite_state(tmp_path, capsys):
    run_dir = tmp_path / "div"
    code = main(["train", "ippo", "mpe:spread", "actor_lr=1000", "critic_lr=1000", "total_steps=2000",
                 "log_points=10", "env.n_agents=2", "eval_episodes=2", "--out", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert "diverged at step" in err and ("is nan" in err or "is inf" in err or "train state is nan" in err)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"].startswith("diverged at step")
    steps = list_checkpoints(run_dir)
    assert steps and steps[-1] == summary["last_checkpoint_step"] < summary["final_step"]
    _, state = load_checkpoint(run_dir)  # finite, or it would be refused
    assert all(np.isfinite(np.asarray(x)).all() for x in state_leaves(state, False).values()
               if np.issubdtype(np.asarray(x).dtype, np.floating))
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert np.isfinite(json.loads((run_dir / "eval.json").read_text())["metrics"]["eval_return"]["mean"])
    assert main(["resume", str(run_dir)]) == 2 and "would diverge again" in capsys.readouterr().err
    with pytest.raises(Diverged):
        train_run("ippo", "mpe:spread", ["actor_lr=1000", "critic_lr=1000", "total_steps=2000", "log_points=10",
                                         "env.n_agents=2", "eval_episodes=2"], out=tmp_path / "api", progress=False)


def _one_error(capsys, *args):
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("coopmarl: error:") and "Traceback" not in err
    return err


def test_run_directories_are_never_mixed(uninterrupted, tmp_path, capsys):
    tiny = ["maosql", "ro-matrix", "log_points=2", "--quiet"]
    old = tmp_path / "old"
    assert main(["train", *tiny, "total_steps=8", "--out", str(old)]) == 0
    (old / "checkpoints" / "999").mkdir()  # something of an older run that must not survive
    err = _one_error(capsys, "train", *tiny, "--out", str(old))
    assert "exists and is not empty" in err and "--overwrite" in err and "coopmarl resume" in err
    assert main(["train", *tiny, "total_steps=4", "--out", str(old), "--overwrite"]) == 0
    assert not (old / "checkpoints" / "999").exists() and list_checkpoints(old) == [2, 4]
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert "refusing to delete it" in _one_error(capsys, "train", *tiny, "--out", str(stranger), "--overwrite")
    assert (stranger / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file" in _one_error(capsys, "train", *tiny, "--out", str(a_file))
    assert "which is a file" in _one_error(capsys, "train", *tiny, "--out", str(a_file / "run"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "old", "stranger"]  # nothing else written
    first, second = new_run_dir("maosql", "ro-matrix", tmp_path / "runs"), new_run_dir("maosql", "ro-matrix", tmp_path / "runs")
    assert first != second and first.is_dir() and second.is_dir()
    assert "is finished: nothing to resume" in _one_error(capsys, "resume", str(uninterrupted / "qmix"))
    assert "is not a run directory" in _one_error(capsys, "resume", str(tmp_path))


def test_a_run_records_what_produced_it(uninterrupted):
    config = yaml.safe_load((uninterrupted / "qmix" / "config.yaml").read_text())
    summary = json.loads((uninterrupted / "qmix" / "summary.json").read_text())
    prov = config["provenance"]
    assert prov == summary["provenance"]
    assert prov["coopmarl"] == coopmarl.__version__ and prov["backend"] == "cpu" and prov["device"].startswith("cpu")
    for package in ("jax", "jaxlib", "flax", "optax"):
        assert prov["versions"][package]
    assert "git_commit" in prov  # None outside a git checkout
    assert config["run"]["keep_checkpoints"] == 3 and config["run"]["save_buffers"] is None


_DTYPES = st.sampled_from([np.float32, np.int32, np.uint32, np.bool_])
_ARRAYS = st.tuples(_DTYPES, st.lists(st.integers(0, 4), max_size=3)).map(
    lambda t: (np.arange(int(np.prod(t[1])), dtype=np.float64) * 1.37).reshape(t[1]).astype(t[0]))


@settings(max_examples=15, deadline=None)
@given(leaves=st.dictionaries(st.sampled_from(["['a']", "['b'].x", "[0]", "[1][2]"]), _ARRAYS, min_size=1),
       flip=st.integers(0, 10**6))
def test_checkpoint_items_round_trip_and_refuse_damage(tmp_path_factory, leaves, flip):
    run_dir = tmp_path_factory.mktemp("store")
    store = CheckpointStore(run_dir)
    store.save(5, {"train": leaves}, {"seeds": [0]})
    back = store.restore(5, {"train": leaves})["train"]
    assert back.keys() == leaves.keys()
    for k in leaves:
        assert back[k].dtype == leaves[k].dtype
        np.testing.assert_array_equal(back[k], leaves[k])
    data = [p for p in (run_dir / "checkpoints" / "5" / "train").rglob("*") if p.is_file() and p.stat().st_size]
    if data:  # (no folder when every array is empty: the meta describes them)
        target = data[flip % len(data)]
        raw = bytearray(target.read_bytes())
        raw[flip % len(raw)] ^= 0x5A
        target.write_bytes(bytes(raw))
    try:
        again = CheckpointStore(run_dir).restore(5, {"train": leaves})["train"]
    except ConfigError as e:
        assert "cannot read checkpoint" in str(e) or "is corrupted" in str(e)
    else:  # the damaged byte was not one the arrays are read from
        for k in leaves:
            np.testing.assert_array_equal(again[k], leaves[k])
    nan = {"['w']": np.array([1.0, np.nan], np.float32)}
    with pytest.raises(ValueError, match="non-finite"):
        store.save(6, {"train": nan}, {"seeds": [0]})
    assert store.steps() == [5]


def test_ctrl_c_inside_the_first_chunk_resumes_from_the_start(uninterrupted, tmp_path, monkeypatch):
    """Ctrl-C before any chunk is complete (e.g. during compilation): the initial state is the checkpoint."""
    import coopmarl.runner

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(coopmarl.runner, "divergence", interrupt)
    env, overrides = SMALL["ippo"]
    with pytest.raises(Interrupted, match="interrupted at step 0"):
        train_run("ippo", env, overrides, seeds=2, out=tmp_path / "run", progress=False)
    monkeypatch.undo()
    assert list_checkpoints(tmp_path / "run") == [0]
    assert (tmp_path / "run" / "metrics.csv").read_text() == "seed,env_steps,name,value\n"  # no point yet
    resume(tmp_path / "run", progress=False)
    _assert_same_run(uninterrupted / "ippo", tmp_path / "run")
