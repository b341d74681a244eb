"""Vmapped hyperparameters: K values of a key trained in one compiled program (`coopmarl.train_vmapped`), one run
directory per value, each what a separate `train_run` with that value writes — bit for bit for the tabular
learners, within float tolerance for networks (XLA rounds the differently batched program differently) — and
keys that change shapes or control flow refused, with the reason, before anything is written or compiled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

import coopmarl
from coopmarl.checkpoints import list_checkpoints
from coopmarl.config import resolve
from coopmarl.errors import ConfigError, Interrupted
from coopmarl.hparams import check_vmappable, split_vmap
from coopmarl.outputs import RunWriter, evaluate, load_checkpoint, resolve_run
from coopmarl.runner import train
from coopmarl.training import resume, train_run, train_vmapped

TABULAR = ["total_steps=300", "log_points=3", "checkpoint_every=1"]  # 3 points, each checkpointed
EPSILONS = [0.05, 0.1, 0.3]


def _same_files(a: Path, b: Path):
    for name in ("metrics.csv", "config.yaml", "marl_eval.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    sa.pop("wall_time_s"), sb.pop("wall_time_s")
    assert sa == sb
    assert list_checkpoints(a) == list_checkpoints(b)
    _, x = load_checkpoint(a)
    _, y = load_checkpoint(b)
    for p, q in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
        assert np.asarray(p).tobytes() == np.asarray(q).tobytes()


def _compiled(caplog) -> list[str]:
    """Names of the programs XLA compiled (jax_log_compiles records)."""
    return [r.getMessage().split("compilation of ")[1].split(" in ")[0] for r in caplog.records
            if "Finished XLA compilation of" in r.getMessage()]


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[float, Path]:
    """Separate runs (`train_run`, 2 seeds) of tabular-iql on climbing, one per epsilon."""
    root = tmp_path_factory.mktemp("alone")
    return {eps: train_run("tabular-iql", "climbing", TABULAR + [f"epsilon={eps}"], seeds=2, out=root / str(eps),
                           progress=False)[1] for eps in EPSILONS}


def test_a_tabular_sweep_writes_the_separate_runs_files_bit_for_bit_from_one_compilation(tmp_path, caplog, alone):
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING):
            swept = train_vmapped("tabular-iql", "climbing", TABULAR, {"epsilon": EPSILONS}, seeds=2,
                                  out_root=tmp_path / "sweep", progress=False)
    finally:
        jax.config.update("jax_log_compiles", False)
    assert _compiled(caplog).count("jit(element_chunk)") == 1  # K values, one chunk program
    assert [d.name for _, d in swept] == ["epsilon=0.05", "epsilon=0.1", "epsilon=0.3"]
    for (result, run_dir), eps in zip(swept, EPSILONS):
        assert result.seeds == [0, 1] and result.metrics["eval_return"].shape == (3, 2)
        _same_files(run_dir, alone[eps])
    assert swept[0][0].metrics["epsilon"][-1, 0] != swept[2][0].metrics["epsilon"][-1, 0]


def test_an_interrupted_sweep_resumes_and_evaluates_each_directory_as_an_ordinary_run(tmp_path, monkeypatch, alone):
    """Two keys (their product): the tabular learner's learning rate α_t = d / (d + t) at d = 10 and at the
    default 10,000 (= the separate run of epsilon=0.3). Ctrl-C after the second point leaves both directories
    resumable one by one; the two rates learn different tables."""
    real, calls = RunWriter.on_chunk, {"n": 0}

    def on_chunk(self, chunk, step, metrics):
        real(self, chunk, step, metrics)
        calls["n"] += 1
        if calls["n"] == 2 * 2:  # both directories have their second point
            raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "on_chunk", on_chunk)
    outs = [tmp_path / "slow", tmp_path / "fast"]
    with pytest.raises(Interrupted) as stop:
        train_vmapped("tabular-iql", "climbing", TABULAR, {"epsilon": [0.3], "lr_decay_steps": [10.0, 10_000.0]},
                      seeds=2, outs=outs, progress=False)
    assert stop.value.run_dirs == outs
    for d in outs:
        assert json.loads((d / "summary.json").read_text())["stopped"] == "interrupted at step 200"
    monkeypatch.setattr(RunWriter, "on_chunk", real)

    resume(outs[1], progress=False)  # continues as an ordinary run
    _same_files(outs[1], alone[0.3])

    assert yaml.safe_load((outs[0] / "config.yaml").read_text())["algo_config"]["lr_decay_steps"] == 10.0
    assert resolve_run(outs[0]).config.lr_decay_steps == 10.0
    report = evaluate(outs[0], write=False)  # the interrupted run's last checkpoint
    assert report["step"] == 200 and report["seeds"] == [0, 1]
    _, slow = load_checkpoint(outs[0])
    _, fast = load_checkpoint(outs[1])
    assert not np.array_equal(np.asarray(slow.q), np.asarray(fast.q))


DEEP = {"total_steps": 64, "log_points": 1, "eval_episodes": 1, "hidden_sizes": "8"}


@pytest.mark.parametrize("algo, key, values, extra", [
    ("ippo", "actor_lr", [1e-3, 3e-2], {"n_epochs": 1, "n_envs": 2, "rollout_length": 4}),  # PPO family
    ("iql", "lr", [5e-4, 3e-2], {"agent": "mlp", "n_envs": 2, "rollout_length": 4, "batch_size": 2,
                                 "buffer_size": 8}),  # off-policy value family
])
def test_a_learning_rate_varies_per_element_and_each_element_matches_its_separate_run(algo, key, values, extra):
    """Networks: element k (value k, seed 0) is bit-identical to seed 0 of a separate run whose batch has the
    same size (here 2 seeds): XLA compiles the batched program alike whether its rows differ in seed or in
    value. Against a separate 1-seed run it differs as a seed of any batch does from that seed alone (~1
    float32 ulp, then training amplifies it; README "Seeds in a batch"). Checked for the second value (the first
    is the config the program is built from; every element takes its value as a traced input alike); the tabular
    tests above check every value."""
    settings = {**DEEP, **extra}
    r = resolve(algo, "climbing", settings)
    swept = train(r.algo, r.env, r.config, r.run, progress=False, hparams={key: np.asarray(values, np.float32)})
    params = lambda state: state.actor_params if algo == "ippo" else state.params  # noqa: E731
    leaves = [np.asarray(x) for x in jax.tree.leaves(params(swept.train_state))]
    assert any(not np.allclose(x[0], x[1]) for x in leaves)  # the two rates learnt different parameters
    batch = resolve(algo, "climbing", {**settings, key: values[1]}, n_seeds=len(values))
    alone = train(batch.algo, batch.env, batch.config, batch.run, progress=False)
    for a, b in zip(jax.tree.leaves(params(alone.train_state)), leaves):
        assert np.asarray(a)[0].tobytes() == b[1].tobytes()
    for name, v in alone.metrics.items():
        assert v[:, 0].tobytes() == swept.metrics[name][:, 1].tobytes(), name


@pytest.mark.parametrize("algo, env, key, says", [
    ("tabular-iql", "climbing", "q_init", ["used in Python control flow in tabular-iql", "exact/baselines.py",
                                          "Keys that can be vmapped for tabular-iql on climbing: gamma, "
                                          "lr_decay_steps, epsilon"]),
    ("tabular-iql", "climbing", "total_steps", ["run setting"]),
    ("tabular-iql", "climbing", "env.discount", ["environment key"]),
    ("ippo", "climbing", "hidden_sizes", ["`hidden_sizes` is a tuple", "shapes", "actor_lr, critic_lr"]),
    ("ippo", "climbing", "n_epochs", ["`n_epochs` is an integer"]),
    ("ippo", "climbing", "normalize_advantages", ["switch (bool)"]),
])
def test_a_key_that_changes_shapes_or_control_flow_is_refused_with_the_reason(algo, env, key, says):
    with pytest.raises(ConfigError) as e:
        check_vmappable(algo, env, ["total_steps=64"], [key])
    for text in says:
        assert text in str(e.value)


def test_refusals_and_bad_values_come_before_anything_is_written_or_compiled(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("compiled and trained")

    monkeypatch.setattr("coopmarl.runner.train", no_training)
    out = tmp_path / "sweep"
    cases = [
        ({"q_init": [0.0, 1.0]}, "Python control flow"),
        ({"epsilon": [0.1, 1.5]}, "epsilon must be"),  # each value resolves like a run's (range checks)
        ({"epsilon": [0.1, 0.1]}, "given twice"),
        ({"epsilon": []}, "no values"),
        ({"lr": [0.1]}, "unknown key 'lr'"),
    ]
    for vmap, says in cases:
        with pytest.raises(ConfigError, match=says):
            train_vmapped("tabular-iql", "climbing", TABULAR, vmap, out_root=out, progress=False)
    with pytest.raises(ConfigError, match="both as an override and as vmapped"):
        train_vmapped("tabular-iql", "climbing", TABULAR + ["epsilon=0.2"], {"epsilon": [0.1]}, out_root=out)
    with pytest.raises(ConfigError, match="2 combinations need 2 run directories"):
        train_vmapped("tabular-iql", "climbing", TABULAR, {"epsilon": [0.1, 0.2]}, outs=[out / "a"])
    assert not out.exists()


def test_train_vmapped_is_exported_next_to_train_run_and_the_command_line_form_splits():
    assert coopmarl.train_vmapped is train_vmapped
    assert split_vmap(["lr=vmap:1e-4, 3e-4", "gamma=0.9", "env.k=-5"]) == (["gamma=0.9", "env.k=-5"],
                                                                            {"lr": ["1e-4", "3e-4"]})
    with pytest.raises(ConfigError, match="separated by commas"):
        split_vmap(["lr=vmap:"])
