"""Checkpoints in run directories, `coopmarl eval` and GIFs of trained policies (`coopmarl render --run`).

What a user relies on: a run's saved state reloads to the very same parameters and the very same greedy
returns; `eval` prints every seed's return and writes eval.json; `render --run` draws the trained
policy; a run without a checkpoint or an env without a renderer gives one clear error; an interrupted
write never leaves a partial checkpoint.
"""

import json
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from PIL import Image

import coopmarl
from coopmarl.cli import main
from coopmarl.config import ConfigError, resolve
from coopmarl.checkpoints import state_leaves
from coopmarl.evaluation import greedy_policy, make_evaluator
from coopmarl.outputs import RunWriter, list_checkpoints, load_checkpoint
from coopmarl.render import run_frames
from coopmarl.training import train_run

TINY = {  # seconds-long runs: a couple of iterations of small networks
    "qmix": ["agent=mlp", "total_steps=40", "log_points=2", "batch_size=2", "buffer_size=8", "n_envs=2",
             "eval_episodes=2", "checkpoint_every=1", "save_buffers=false"],
    "ippo": ["total_steps=100", "log_points=2", "hidden_sizes=16,16", "n_epochs=2", "n_envs=2", "eval_episodes=2",
             "env.n_agents=2", "checkpoint_every=1"],
}


def _train_into(run_dir, algo, env, overrides, n_seeds=2):
    """What `coopmarl train` does, keeping the result to compare against."""
    resolved = resolve(algo, env, overrides, n_seeds=n_seeds)
    result, _ = train_run(algo, env, out=run_dir, progress=False, resolved=resolved)
    return resolved, result


@pytest.fixture(scope="module")
def qmix_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "qmix"
    return (run_dir, *_train_into(run_dir, "qmix", "ro-matrix", TINY["qmix"]))


@pytest.fixture(scope="module")
def ippo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "ippo"
    return (run_dir, *_train_into(run_dir, "ippo", "mpe:spread", TINY["ippo"]))


@pytest.fixture(scope="module")
def maosql_run(tmp_path_factory):
    """A tabular run written by the CLI itself, with an intermediate checkpoint after every chunk."""
    run_dir = tmp_path_factory.mktemp("runs") / "maosql"
    assert main(["train", "maosql", "ro-matrix", "total_steps=40", "log_points=4", "checkpoint_every=1",
                 "--seeds", "3", "--out", str(run_dir), "--quiet"]) == 0
    return run_dir


def _greedy_returns(resolved, state, seed=0, episodes=4):
    """The runner's evaluation of a state, with `coopmarl.evaluate`'s keys."""
    model = resolved.env if isinstance(resolved.env, coopmarl.TabularGame) else None
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed), s) for s in range(resolved.run.n_seeds)])
    return jax.device_get(make_evaluator(resolved.algo, resolved.env, resolved.config, episodes)(model, state, keys))


def _assert_same_state(loaded, original, with_buffers=False):
    a, b = state_leaves(loaded, with_buffers), state_leaves(original, with_buffers)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("run", ["qmix_run", "ippo_run"])
def test_round_trip_gives_identical_params_and_greedy_returns(request, run):
    run_dir, resolved, result = request.getfixturevalue(run)
    loaded_resolved, state = load_checkpoint(run_dir)
    assert loaded_resolved.as_dict() == resolved.as_dict()  # env params, algorithm and run config, exactly
    assert loaded_resolved.config == resolved.config and loaded_resolved.env_params == resolved.env_params
    _assert_same_state(state, result.train_state)
    # greedy evaluation of the reloaded policies (the public API) = the runner's evaluation of the trained ones
    before = _greedy_returns(resolved, result.train_state)
    report = coopmarl.evaluate(run_dir, episodes=4, write=False)
    assert not report["exact"] and report["seeds"] == [0, 1] and report["metrics"].keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(np.float32(report["metrics"][k]["per_seed"]), before[k], err_msg=k)


def test_replay_buffers_are_saved_when_asked(qmix_run, tmp_path):
    run_dir, resolved, result = qmix_run  # save_buffers=false
    _, state = load_checkpoint(run_dir)
    buffer = state.buffer  # comes back freshly initialised: empty
    assert not np.asarray(buffer.is_full).any() and not np.asarray(buffer.current_index).any()
    assert np.asarray(result.train_state.buffer.current_index).any()  # the trained one held windows
    overrides = [o for o in TINY["qmix"] if not o.startswith("save_buffers")]  # default: small buffers are saved
    _, full_result = _train_into(tmp_path / "full", "qmix", "ro-matrix", overrides)
    from coopmarl.checkpoints import CheckpointStore

    for path, saved in ((tmp_path / "full", True), (run_dir, False)):
        with CheckpointStore(path, read_only=True) as store:
            meta = store.meta(40)
        assert meta["buffers"] is saved and ("buffers" in meta["items"]) is saved
    _, full = load_checkpoint(tmp_path / "full")
    _assert_same_state(full, full_result.train_state, with_buffers=True)
    _assert_same_state(full, result.train_state)  # the buffers do not change training


def test_intermediate_checkpoints(ippo_run, maosql_run):
    run_dir, resolved, result = ippo_run
    steps = list_checkpoints(run_dir)
    assert steps == [int(result.steps[0]), int(result.steps[1])]  # log_points=2: one before the final state
    _, early = load_checkpoint(run_dir, step=steps[0])
    _, final = load_checkpoint(run_dir)
    _assert_same_state(final, result.train_state)
    leaf = lambda s: np.asarray(jax.tree.leaves(s.actor_params)[1])  # noqa: E731
    assert not np.array_equal(leaf(early), leaf(final))
    summary = json.loads((maosql_run / "summary.json").read_text())  # 4 points, keep_checkpoints=3: the newest 3
    assert list_checkpoints(maosql_run) == [20, 30, 40] and summary["final_step"] == 40


def test_eval_cli_prints_every_seed_and_writes_eval_json(ippo_run, capsys):
    run_dir, _, _ = ippo_run
    assert main(["eval", str(run_dir), "--episodes", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run_dir / "eval.json").read_text())
    per_seed = report["metrics"]["eval_return"]["per_seed"]
    assert report["episodes"] == 3 and report["eval_seed"] == 5 and report["seeds"] == [0, 1]
    assert len(per_seed) == 2 and report["metrics"]["eval_return"]["mean"] == pytest.approx(np.mean(per_seed))
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    for name, value in [("0", per_seed[0]), ("1", per_seed[1]), ("mean", np.mean(per_seed))]:
        assert f"{value:.4g}" in rows[name]
    assert "3 greedy episodes per seed" in out and "eval.json" in out


def test_exact_evaluation_of_a_tabular_run_matches_its_training_curve(maosql_run, capsys):
    assert main(["eval", str(maosql_run)]) == 0
    report = json.loads((maosql_run / "eval.json").read_text())
    summary = json.loads((maosql_run / "summary.json").read_text())
    assert report["exact"] and report["episodes"] is None and "exact evaluation" in capsys.readouterr().out
    for metric in ["eval_return", "regret", "greedy_return"]:
        np.testing.assert_allclose(report["metrics"][metric]["per_seed"], summary["metrics"][metric]["per_seed"],
                                   rtol=1e-6, atol=1e-6)
    step = list_checkpoints(maosql_run)[0]
    assert main(["eval", str(maosql_run), "--step", str(step)]) == 0
    assert json.loads((maosql_run / f"eval_step_{step}.json").read_text())["step"] == step


def test_render_run_draws_the_trained_policy(ippo_run, tmp_path, capsys):
    run_dir, resolved, _ = ippo_run
    gif = tmp_path / "ippo.gif"
    assert main(["render", "--run", str(run_dir), "--seed-index", "1", "--out", str(gif)]) == 0
    horizon = resolved.env.spec.horizon
    assert f"{horizon + 1} frames" in capsys.readouterr().out
    frames = run_frames(run_dir, seed_index=1)
    first = np.asarray(resolved.env.render(resolved.env.reset(jax.random.PRNGKey(0))[0]))
    assert len(frames) == horizon + 1 and all(f.shape == first.shape and f.dtype == np.uint8 for f in frames)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.size == (first.shape[1], first.shape[0]) and im.n_frames >= 2


def test_render_run_carries_a_recurrent_agents_memory(tmp_path):
    """A GRU agent's carry threads through the episode (`policy_step`); an untrained state is enough."""
    resolved = resolve("qmix", "mpe:spread", ["env.n_agents=2", "buffer_size=4", "batch_size=2", "hidden_sizes=8",
                                               "n_envs=2"])
    assert resolved.algo.initial_carry is not None
    writer = RunWriter(tmp_path, resolved.as_dict(), [0])
    state = jax.vmap(lambda k: resolved.algo.init(k, resolved.env.spec, resolved.config, None))(
        jax.random.PRNGKey(0)[None])
    writer.save(state, step=0, chunk=0)
    writer.tb.close()
    frames = run_frames(tmp_path, max_steps=5)
    assert len(frames) == 6
    one = jax.tree.map(lambda x: x[0], state)
    policy, carry0 = greedy_policy(resolved.algo, resolved.config, resolved.env.spec, one)
    _, ts = resolved.env.reset(jax.random.PRNGKey(0))
    _, carry1 = policy(jax.random.PRNGKey(1), ts.obs, ts.avail_actions, carry0)
    assert jax.tree.structure(carry1) == jax.tree.structure(carry0)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(carry1), jax.tree.leaves(carry0)))


def _one_error(capsys, *args):
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    return err


def test_clear_errors(qmix_run, maosql_run, tmp_path, capsys):
    run_dir, _, _ = qmix_run
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    shutil.rmtree(bare / "checkpoints")
    for cmd in (["eval", str(bare)], ["render", "--run", str(bare), "--out", str(tmp_path / "x.gif")]):
        assert "has no checkpoint: the run was interrupted before its first checkpoint" in _one_error(capsys, *cmd)
    with pytest.raises(ConfigError, match="has no checkpoint"):
        load_checkpoint(bare)
    err = _one_error(capsys, "render", "--run", str(run_dir), "--out", str(tmp_path / "x.gif"))
    assert "environment 'ro-matrix' cannot be rendered" in err and "mpe:spread" in err
    assert "is not a run directory" in _one_error(capsys, "eval", str(tmp_path))
    err = _one_error(capsys, "render", "--run", str(maosql_run), "--out", str(tmp_path / "x.gif"), "--seed-index", "3")
    assert "cannot be rendered" in err  # the env is checked first
    assert "not both" in _one_error(capsys, "render", "mpe:spread", "--run", str(run_dir), "--out", "x.gif")
    assert "--out must name a .gif" in _one_error(capsys, "render", "--run", str(run_dir), "--out", "x.png")
    err = _one_error(capsys, "eval", str(run_dir), "--step", "7")
    assert "has no checkpoint at step 7; its checkpoints (--step): 20, 40" in err
    assert "episodes must be >= 1" in _one_error(capsys, "eval", str(run_dir), "--episodes", "0")
    edited = tmp_path / "edited"  # config.yaml no longer describes the saved state
    shutil.copytree(run_dir, edited)
    config = yaml.safe_load((edited / "config.yaml").read_text())
    config["algo_config"]["hidden_sizes"][0] += 1
    (edited / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert "was written under another config" in _one_error(capsys, "eval", str(edited))
    never = tmp_path / "never"
    err = _one_error(capsys, "train", "maosql", "ro-matrix", "checkpoint_every=-1", "--out", str(never))
    assert "checkpoint_every must be an integer >= 0" in err and not never.exists()


def test_a_damaged_checkpoint_is_refused(qmix_run, tmp_path, capsys):
    """A flipped byte or a truncated file anywhere in a checkpoint's train state is one clear error or, where
    the byte is not read, the very same state — never a silently different policy."""
    run_dir, _, result = qmix_run
    files = sorted(p for p in (run_dir / "checkpoints" / "40" / "train").rglob("*") if p.is_file() and p.stat().st_size)
    refused = 0
    for i, f in enumerate(files):
        for how in ("flip", "truncate"):
            broken = tmp_path / f"{how}{i}"
            shutil.copytree(run_dir, broken)
            target = broken / f.relative_to(run_dir)
            data = bytearray(target.read_bytes())
            if how == "flip":
                data[len(data) // 2] ^= 0xFF
            else:
                data = data[: len(data) // 2]
            target.write_bytes(bytes(data))
            try:
                _, state = load_checkpoint(broken)
            except ConfigError as e:
                assert "cannot read checkpoint" in str(e) or "is corrupted" in str(e), str(e)
                refused += 1
            else:
                _assert_same_state(state, result.train_state)
            shutil.rmtree(broken)
    assert refused >= 2  # the array data itself is covered
    broken = tmp_path / "cli"
    shutil.copytree(run_dir, broken)
    for f in (broken / "checkpoints" / "40" / "train").rglob("*"):
        if f.is_file() and "ocdbt.process" in str(f) and "/d/" in str(f):
            f.write_bytes(f.read_bytes()[:10])
    err = _one_error(capsys, "eval", str(broken), "--episodes", "1")
    assert "cannot read checkpoint" in err or "is corrupted" in err


def test_seed_index_out_of_range(ippo_run, tmp_path, capsys):
    run_dir, _, _ = ippo_run
    err = _one_error(capsys, "render", "--run", str(run_dir), "--seed-index", "2", "--out", str(tmp_path / "x.gif"))
    assert "seed index 2 is out of range: the run has 2 seed(s)" in err


def test_an_unfinished_checkpoint_write_is_ignored_and_cleaned(maosql_run, tmp_path):
    """A kill during a write leaves orbax's temporary folder (no commit marker): it is not a checkpoint, and the
    next writer removes it."""
    run_dir = tmp_path / "run"
    shutil.copytree(maosql_run, run_dir)
    unfinished = run_dir / "checkpoints" / "50.orbax-checkpoint-tmp-1234567"
    shutil.copytree(run_dir / "checkpoints" / "40", unfinished)
    for marker in unfinished.rglob("commit_success.txt"):
        marker.unlink()
    assert list_checkpoints(run_dir) == [20, 30, 40]
    from coopmarl.checkpoints import CheckpointStore

    CheckpointStore(run_dir, keep=3)  # orbax removes it in the background (at the latest before its next save)
    for _ in range(100):
        if not unfinished.exists():
            break
        time.sleep(0.1)
    assert not unfinished.exists() and list_checkpoints(run_dir) == [20, 30, 40]


def test_config_yaml_records_checkpoint_every(maosql_run):
    config = yaml.safe_load((maosql_run / "config.yaml").read_text())
    assert config["run"]["checkpoint_every"] == 1


def test_a_run_written_by_coopmarl_0_1_still_loads(qmix_run, tmp_path):
    """Format 1: checkpoint.msgpack = {"meta": JSON, "state": {key path: array}} (flax msgpack), no buffers."""
    from flax import serialization

    run_dir, _, result = qmix_run
    old = tmp_path / "old"
    old.mkdir()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config.pop("provenance")
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    leaves = {k: np.asarray(v) for k, v in state_leaves(result.train_state, False).items()}
    meta = {"format": 1, "step": 40, "seeds": [0, 1], "buffers": False}
    (old / "checkpoint.msgpack").write_bytes(serialization.to_bytes({"meta": json.dumps(meta), "state": leaves}))
    _, state = load_checkpoint(old)
    _assert_same_state(state, result.train_state)
    report = coopmarl.evaluate(old, episodes=2, write=False)
    assert report["checkpoint"] == "checkpoint.msgpack" and report["step"] == 40


def test_a_broken_config_yaml_is_named(qmix_run, tmp_path, capsys):
    run_dir, _, _ = qmix_run
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "config.yaml").write_text("algo: [qmix\n")
    for cmd in (["eval", str(broken)], ["resume", str(broken)],
                ["render", "--run", str(broken), "--out", str(tmp_path / "x.gif")]):
        assert "config.yaml is not valid YAML" in _one_error(capsys, *cmd)
