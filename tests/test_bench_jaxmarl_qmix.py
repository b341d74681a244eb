"""The QMIX-vs-JaxMARL benchmark (`benchmarks/qmix_vs_jaxmarl.py`) without JaxMARL's script: clear errors for a
wrong path, our side's program at a tiny size, and the whole `main()` with a small fake peer written to tmp_path
(our side is stood in for there by a cheap program: its real one is compiled in `test_our_program_learns`)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "qmix_vs_jaxmarl.py"
STAND_IN_NAMES = ("hydra", "omegaconf", "wandb", "distrax")  # what `ippo_mpe._stand_ins` may put in sys.modules

# A peer with the script's interface: make_train(config) -> train(rng) whose output holds its final train state
# (params, grad_steps) at ["runner_state"][0], the gradient steps counted as JaxMARL's qmix_rnn.py counts them.
FAKE_PEER = '''
from typing import NamedTuple

import jax
import jax.numpy as jnp


class TrainState(NamedTuple):
    params: jax.Array
    grad_steps: jax.Array


def make_train(config):
    n = config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"]
    per_update = config["NUM_STEPS"] * config["NUM_ENVS"]
    learning = sum(1 for k in range(1, n + 1)
                   if k >= config["BUFFER_BATCH_SIZE"] and k * per_update > config["LEARNING_STARTS"])

    def train(rng):
        w, _ = jax.lax.scan(lambda w, k: (jnp.tanh(w @ w.T * 0.01 + k), None), jax.random.normal(rng, (64, 64)),
                            jnp.arange(n, dtype=jnp.float32))
        return {"runner_state": (TrainState(w, jnp.int32(learning)), None, None, rng), "metrics": None}

    return train
'''


@pytest.fixture
def bench():
    before = {name: sys.modules.get(name) for name in STAND_IN_NAMES}
    spec = importlib.util.spec_from_file_location("qmix_vs_jaxmarl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name, mod in before.items():  # drop the stand-ins a test's load put in sys.modules
        if mod is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = mod


def test_missing_or_wrong_script_is_a_clear_exit(bench, tmp_path):
    with pytest.raises(SystemExit, match=r"--jaxmarl-qmix .*nope\.py: no such file"):
        bench.main(["--jaxmarl-qmix", str(tmp_path / "nope.py")])
    other = tmp_path / "other.py"
    other.write_text("x = 1\n")
    with pytest.raises(SystemExit, match=r"has no make_train\(config\).*qmix_rnn\.py"):
        bench.main(["--jaxmarl-qmix", str(other)])
    with pytest.raises(SystemExit, match=r"--envs: 500 is out of range"):
        bench.main(["--jaxmarl-qmix", str(other), "--envs", "8,500"])


def test_warmup_is_jaxmarl_updates_before_its_first_gradient_step(bench):
    # ql_rnn_mpe.yaml: LEARNING_STARTS 10000 env steps, 26 steps x envs per update, buffer sampled after 32 updates
    assert bench.warmup_updates(8) == 48  # update 49 is the first with 49 * 208 > 10000
    assert bench.warmup_updates(32) == bench.warmup_updates(128) == 31


def test_our_program_learns(bench):
    out = jax.jit(bench.our_program(8, 5))(jax.random.PRNGKey(0))
    assert 1 <= int(out["grad_steps"]) <= 5  # its replay holds 32 windows from the 4th iteration
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out))


def test_main_prints_one_row_per_env_count(bench, tmp_path, monkeypatch, capsys):
    peer = tmp_path / "fake_qmix_rnn.py"
    peer.write_text(FAKE_PEER)

    def cheap_ours(n_envs, updates, total_updates=None):  # every update learns, as ours does after the warm-up
        def run(key):
            w, _ = jax.lax.scan(lambda w, k: (jnp.tanh(w @ w.T * 0.01 + k), None), jax.random.normal(key, (64, 64)),
                                jnp.arange(updates, dtype=jnp.float32))
            return {"params": w, "grad_steps": jnp.int32(updates)}
        return run

    monkeypatch.setattr(bench, "our_program", cheap_ours)
    rows = bench.main(["--jaxmarl-qmix", str(peer), "--envs", "8,16", "--updates", "4", "--repeats", "2"])
    assert [r["n_envs"] for r in rows] == [8, 16]
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("| envs | ours steps/s | JaxMARL steps/s | ours / JaxMARL | compile s (ours / JaxMARL) |")
    rate, ratio = r"(?:[\d,]+|n/a)", r"(?:\d+\.\d\d|n/a)"  # a differential rate is n/a if noise made it negative
    table = lines[header + 2:header + 4]
    for n_envs, line in zip((8, 16), table):
        assert re.fullmatch(rf"\| {n_envs} \| {rate} \| {rate} \| {ratio} \| \d+\.\d / \d+\.\d \|", line), line
    assert lines[header + 4].startswith("Warm-up updates")
    spread = r"(?:\d+\.\d\d \[\d+\.\d\d–\d+\.\d\d\]|n/a)"
    assert re.fullmatch(rf"Ratio of each round of calls alone, median \[min–max\] \(.*\): 8 envs: {spread}, "
                        rf"16 envs: {spread}", lines[header + 5]), lines[header + 5]
    assert any(line.startswith("Settings (JaxMARL ql_rnn_mpe.yaml") for line in lines)
