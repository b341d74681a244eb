"""Training throughput of our QMIX on MPE simple spread (3 agents, discrete) beside JaxMARL's own QMIX baseline
script (`baselines/QLearning/qmix_rnn.py`), at JaxMARL's settings for it (`baselines/QLearning/config/alg/
ql_rnn_mpe.yaml`) on both sides.

JaxMARL's baselines are not in its pip package, and we do not ship or copy them: fetch the script yourself and pass
its path. Measured with the revision that runs against the pip package jaxmarl 0.2.0 (FLAIROx/JaxMARL commit
c793d095618c6d3edfb5632802348f57b70a4b94, the head after the "jaxmarl-2.0" merge; there is no v0.2.0 tag):

    curl -L -o /tmp/qmix_rnn.py https://raw.githubusercontent.com/FLAIROx/JaxMARL/\\
c793d095618c6d3edfb5632802348f57b70a4b94/baselines/QLearning/qmix_rnn.py
    python benchmarks/qmix_vs_jaxmarl.py --jaxmarl-qmix /tmp/qmix_rnn.py [--envs 8,32,128] [--updates 64]

The script is loaded from that path at run time and only its `make_train(config, env)` is called (with the env of
its own `env_from_config`: `MPE_simple_spread_v3` in its `MPELogWrapper`), with the `ql_rnn_mpe.yaml` values
below and NUM_ENVS / TOTAL_TIMESTEPS set per call. Its imports of hydra and omegaconf (used only by its `main`) are
replaced by no-op stand-ins when they are not installed (`ippo_mpe._stand_ins`); WANDB_MODE is "disabled", so it
logs nothing. The measured program is otherwise the script's own.

What one update is, on both sides (ql_rnn_mpe.yaml): NUM_ENVS envs x NUM_STEPS 26 steps, each env's 26 steps one
replay item (BUFFER_SIZE 5000 items), then NUM_EPOCHS 1 gradient step on BUFFER_BATCH_SIZE 32 items; GRU agents of
width 64 (fc-GRU-fc, parameters shared, one-hot agent id appended, no last action); QMIX mixer of embedding 32 with
hypernetworks of hidden width 128 (its V(s) of width 32); double-Q one-step targets (no TD(λ)), GAMMA 0.9, the
time limit treated as terminal; LR 0.005, gradients clipped at norm 25; no reward scaling (REW_SCALE absent = 1);
ε 1.0 → 0.05 over EPS_DECAY 10% of the run; a hard target copy every TARGET_UPDATE_INTERVAL 200 updates (ours
counts windows: 200 x NUM_ENVS). Our keys: `OUR_OVERRIDES` and `our_overrides`.

Deviations, none of which we expect to move the timing by more than a few percent:
- JaxMARL's test-time greedy evaluation inside training (TEST_DURING_TRAINING: 512 envs x 30 steps every 5% of
  updates) is off: it is evaluation, not training, and our runner's chunk has none.
- Optimiser: RAdam with the learning rate decayed linearly to 0 (JaxMARL) vs our Adam at a constant rate (our QMIX
  has no other); both are one elementwise pass over the parameters per gradient step.
- JaxMARL resets every env at each update's start and replays each item from a zero GRU state; we continue each
  env where it stopped (`replay=windows`, rollout_length 26) and replay from the stored carry. Same env steps per
  update.
- The mixer's state input: JaxMARL's global state is the three agents' observations concatenated (54 numbers);
  ours is our env's own global state (18).
- Targets: JaxMARL's loss covers 25 of an item's 26 steps (step t + 1's values bootstrap step t; the last step has
  none); ours covers all 26, each bootstrapped from its stored next observation (so our agents are also evaluated
  at the next observations, as `offpolicy.unroll_batch` does).

Learning throughout the timed part. JaxMARL's buffer can be sampled only after BUFFER_BATCH_SIZE (32) updates (it
is a trajectory buffer of NUM_ENVS rows with one rollout per row per update) and its learning starts after
LEARNING_STARTS 10000 env steps; ours learns once its replay holds 32 windows. So each side is compiled twice: W
warm-up updates alone, and W + `--updates` updates, W = the updates JaxMARL takes before its first gradient step
at that env count (48 at 8 envs, 31 at 32 or more). Each side's steps/s = `--updates` x 26 x NUM_ENVS / (time of the
long program − time of the short one): init, warm-up and buffer filling cancel, and every counted update takes its
gradient step on both sides (checked from each program's gradient-step count). The four compiled programs are
called in turn `--repeats` times and each one's fastest call counts (`ippo_mpe.time_rounds`); a line under the
table gives the ratio of each round of calls alone (median [min–max]), how far one call's ratio strays. Compile time
(the first call of the long program) is printed apart. Steps/s counts env steps (one step of one env, all agents).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import math
import os
import re
import statistics
import sys
from pathlib import Path

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from coopmarl.config import resolve  # noqa: E402
from coopmarl.runner import build_chunk  # noqa: E402
from ippo_mpe import _stand_ins, compile_program, time_rounds  # noqa: E402

ROLLOUT, BATCH, BUFFER, LEARNING_STARTS = 26, 32, 5000, 10_000  # ql_rnn_mpe.yaml: NUM_STEPS, BUFFER_BATCH_SIZE, …
TARGET_INTERVAL, EPS_DECAY = 200, 0.1  # ql_rnn_mpe.yaml: TARGET_UPDATE_INTERVAL (updates), EPS_DECAY (share of run)
JAXMARL_CONFIG = {  # JaxMARL baselines/QLearning/config/alg/ql_rnn_mpe.yaml (+ config/config.yaml's WANDB_MODE)
    "NUM_STEPS": ROLLOUT, "BUFFER_SIZE": BUFFER, "BUFFER_BATCH_SIZE": BATCH, "HIDDEN_SIZE": 64,
    "MIXER_EMBEDDING_DIM": 32, "MIXER_HYPERNET_HIDDEN_DIM": 128, "MIXER_INIT_SCALE": 0.001,
    "EPS_START": 1.0, "EPS_FINISH": 0.05, "EPS_DECAY": EPS_DECAY, "MAX_GRAD_NORM": 25,
    "TARGET_UPDATE_INTERVAL": TARGET_INTERVAL, "TAU": 1.0, "NUM_EPOCHS": 1, "LR": 0.005,
    "LEARNING_STARTS": LEARNING_STARTS, "LR_LINEAR_DECAY": True, "GAMMA": 0.9,
    "ENV_NAME": "MPE_simple_spread_v3", "ENV_KWARGS": {},
    "TEST_DURING_TRAINING": False, "TEST_INTERVAL": 0.05, "TEST_NUM_STEPS": 30, "TEST_NUM_ENVS": 512,  # off: see above
    "WANDB_MODE": "disabled", "NUM_SEEDS": 1, "SEED": 0,
}
OUR_OVERRIDES = [  # the same values in our QMIX's keys (offpolicy.OffPolicyConfig, qmix.QMIXConfig)
    f"rollout_length={ROLLOUT}", f"buffer_size={BUFFER}", f"batch_size={BATCH}", "updates_per_iteration=1",
    "agent=gru", "hidden_sizes=64", "share_parameters=true", "agent_id=true", "last_action=false",
    "mixing_embed=32", "hypernet_embed=128", "double_q=true", "td_lambda=0", "gamma=0.9",
    "truncation_bootstrap=false", "lr=0.005", "max_grad_norm=25", "standardise_rewards=false",
    "epsilon_start=1.0", "epsilon_end=0.05", "target_tau=0", "replay=windows", "env.n_agents=3",
]
MAX_ENVS = BUFFER // BATCH  # JaxMARL's buffer keeps BUFFER_SIZE // NUM_ENVS rollouts per env and samples need 32


def our_overrides(n_envs: int, total_updates: int) -> list[str]:
    """OUR_OVERRIDES + the keys that depend on the row: env count, target interval (in windows), ε's anneal (in env
    steps: EPS_DECAY of the long run, as JaxMARL's share of its NUM_UPDATES)."""
    return OUR_OVERRIDES + [f"n_envs={n_envs}", f"target_update_episodes={TARGET_INTERVAL * n_envs}",
                            f"epsilon_anneal_steps={max(1, int(EPS_DECAY * total_updates * ROLLOUT * n_envs))}"]


def warmup_updates(n_envs: int) -> int:
    """Updates JaxMARL's program takes before its first gradient step: its buffer needs BATCH updates, and it learns
    only once env steps (counted after the update's rollout) exceed LEARNING_STARTS."""
    return max(BATCH, LEARNING_STARTS // (ROLLOUT * n_envs) + 1) - 1


def load_jaxmarl_qmix(path: str):
    """(module, stand-ins used) of JaxMARL's qmix_rnn.py loaded from `path`; SystemExit for a missing path or a file
    that is not such a script."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--jaxmarl-qmix {path}: no such file (see this script's docstring for how to get it)")
    replaced = _stand_ins()
    source = path.read_text(errors="replace")
    # only the stand-ins the script itself imports (hydra, omegaconf; not distrax, which the IPPO script needs)
    replaced = [r for r in replaced if re.search(rf"^\s*(import|from)\s+{re.escape(r.split('.')[0].split()[0])}\b",
                                                 source, re.M)]
    spec = importlib.util.spec_from_file_location("jaxmarl_qmix_rnn", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 (any failure to import it is a wrong file or a wrong jaxmarl)
        raise SystemExit(f"--jaxmarl-qmix {path}: importing it failed ({type(e).__name__}: {e}); it must be JaxMARL's "
                         "baselines/QLearning/qmix_rnn.py of a revision matching the installed jaxmarl (see the "
                         "docstring)") from None
    if not callable(getattr(module, "make_train", None)):
        raise SystemExit(f"{path} has no make_train(config): is it JaxMARL's baselines/QLearning/qmix_rnn.py?")
    return module, replaced


def _make_train(module, config: dict):
    """The script's train(rng): `make_train(config, env)` with the env of its `env_from_config` (the revision we
    measured), or `make_train(config)` for a script that builds its own env."""
    if len(inspect.signature(module.make_train).parameters) < 2:
        return module.make_train(config)
    if not callable(getattr(module, "env_from_config", None)):
        raise SystemExit("the JaxMARL script's make_train takes (config, env) but it has no env_from_config(config) "
                         "to build the env: use the revision named in this script's docstring")
    env, _ = module.env_from_config(copy.deepcopy(config))
    return module.make_train(config, env)


def jaxmarl_program(module, n_envs: int, updates: int):
    """run(key) -> {parameters, gradient steps taken} of JaxMARL's whole training program of `updates` updates. The
    script's per-update metrics go only to wandb (its scan returns none), so its final train state is what we read
    (`train(key)["runner_state"][0]`); returning the parameters keeps all the learning in the compiled program."""
    config = dict(copy.deepcopy(JAXMARL_CONFIG), NUM_ENVS=n_envs, TOTAL_TIMESTEPS=updates * ROLLOUT * n_envs)
    train = _make_train(module, config)

    def run(key):
        train_state = train(key)["runner_state"][0]
        return {"params": train_state.params, "grad_steps": train_state.grad_steps}

    return run


def our_program(n_envs: int, updates: int, total_updates: int | None = None):
    """run(key) -> {parameters, mean loss, gradient steps taken} of our QMIX: init + `updates` runner iterations in one
    chunk (`build_chunk`). `total_updates` (default `updates`) sets ε's anneal, so the long and short programs of a
    row have one config."""
    r = resolve("qmix", "mpe:spread", our_overrides(n_envs, total_updates or updates))
    init_fn, chunk_fn = build_chunk(r.algo, r.env, r.config, updates)

    def run(key):
        carry, metrics, _ = chunk_fn(None, init_fn(None, key))
        return {"params": carry[0].params, "loss": metrics["loss"], "grad_steps": carry[0].updates}

    return run


def _grad_steps(fn) -> int:
    return int(fn(jax.random.PRNGKey(0))["grad_steps"])


def measure_row(module, n_envs: int, updates: int, repeats: int) -> dict:
    """Steps/s of both sides at `n_envs` (see the docstring: long minus short program) and their compile times."""
    warm = warmup_updates(n_envs)
    total = warm + updates
    ours_long, ours_compile = compile_program(our_program(n_envs, total, total))
    ours_short, _ = compile_program(our_program(n_envs, warm, total))
    try:
        theirs_long, theirs_compile = compile_program(jaxmarl_program(module, n_envs, total))
        theirs_short, _ = compile_program(jaxmarl_program(module, n_envs, warm))
    except (KeyError, AttributeError, TypeError, IndexError) as e:
        raise SystemExit(f"the JaxMARL script's train(rng) did not run or return as expected ({type(e).__name__}: "
                         f"{e}); use the revision named in this script's docstring") from None
    for name, long, short in (("ours", ours_long, ours_short), ("JaxMARL", theirs_long, theirs_short)):
        g_long, g_short = _grad_steps(long), _grad_steps(short)
        if g_long - g_short != updates:
            raise SystemExit(f"{name} at {n_envs} envs took {g_long - g_short} gradient steps in the {updates} timed "
                             f"updates (expected one each): the timed part would not be all learning")
    rounds = time_rounds([ours_long, ours_short, theirs_long, theirs_short], repeats)
    t_ours_long, t_ours_short, t_theirs_long, t_theirs_short = (min(t) for t in rounds)
    steps = updates * ROLLOUT * n_envs

    def rate(t_long, t_short):
        return steps / (t_long - t_short) if t_long > t_short else math.nan

    # each round's own ratio, from that round's four calls: how much the ratio moves from call to call
    per_round = [rate(a, b) / rate(c, d) for a, b, c, d in zip(*rounds)]
    return dict(n_envs=n_envs, warmup=warm, ours=rate(t_ours_long, t_ours_short),
                theirs=rate(t_theirs_long, t_theirs_short), ours_compile=ours_compile, theirs_compile=theirs_compile,
                round_ratios=[r for r in per_round if not math.isnan(r)])


def _fmt(x: float, digits: int = 0) -> str:
    """A rate (or ratio) for the table; n/a where noise left a side's long program no slower than its short one."""
    return "n/a" if math.isnan(x) else f"{x:,.{digits}f}"


def parse_envs(text: str) -> list[int]:
    try:
        envs = [int(e) for e in text.split(",")]
    except ValueError:
        raise SystemExit(f"--envs {text!r}: give comma-separated env counts, e.g. 8,32,128") from None
    bad = [e for e in envs if not 1 <= e <= MAX_ENVS]
    if bad:
        raise SystemExit(f"--envs: {bad[0]} is out of range: JaxMARL's buffer keeps BUFFER_SIZE // NUM_ENVS "
                         f"({BUFFER} // envs) rollouts per env and samples need {BATCH}, so envs must be 1..{MAX_ENVS}")
    return envs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jaxmarl-qmix", required=True, metavar="PATH",
                   help="path of JaxMARL's baselines/QLearning/qmix_rnn.py (fetched by you; see the docstring)")
    p.add_argument("--envs", default="8", help="comma-separated env counts, e.g. 8,32,128")
    p.add_argument("--updates", type=int, default=64, help="updates timed per row (each: 26 steps x envs + 1 "
                                                           "gradient step), after the warm-up")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per program (the fastest counts)")
    args = p.parse_args(argv)
    if args.updates < 1 or args.repeats < 1:
        raise SystemExit("--updates and --repeats must be at least 1")
    envs = parse_envs(args.envs)
    module, replaced = load_jaxmarl_qmix(args.jaxmarl_qmix)

    print(f"\nQMIX training on MPE simple spread (3 agents), {jax.devices()[0].platform}: {args.updates} timed updates "
          f"per row after the warm-up, fastest of {args.repeats} interleaved calls; compile excluded")
    print(f"Settings (JaxMARL ql_rnn_mpe.yaml, both sides): {ROLLOUT} steps x envs per update, 1 gradient step per "
          f"update on {BATCH} items of {ROLLOUT} steps, buffer {BUFFER} items, GRU 64 + agent id, QMIX mixer 32 / "
          f"hypernet 128, double Q, one-step targets, gamma 0.9, lr 0.005, grad norm 25, target copy every "
          f"{TARGET_INTERVAL} updates, eps 1 -> 0.05 over {EPS_DECAY:.0%} of the run")
    print("Deviations: JaxMARL's in-training greedy test off; RAdam + linear lr decay (JaxMARL) vs Adam; JaxMARL "
          "resets envs each update, ours continues them (replay=windows); mixer state 54 (JaxMARL: obs concatenated) "
          "vs 18 (ours: env state); targets on 25 (JaxMARL) vs 26 steps of an item")
    if replaced:
        print(f"JaxMARL script's imports replaced by stand-ins: {', '.join(replaced)}")
    print("| envs | ours steps/s | JaxMARL steps/s | ours / JaxMARL | compile s (ours / JaxMARL) |")
    print("|---|---|---|---|---|")
    rows = []
    for n_envs in envs:
        row = measure_row(module, n_envs, args.updates, args.repeats)
        rows.append(row)
        print(f"| {n_envs} | {_fmt(row['ours'])} | {_fmt(row['theirs'])} | {_fmt(row['ours'] / row['theirs'], 2)} | "
              f"{row['ours_compile']:.1f} / {row['theirs_compile']:.1f} |", flush=True)
    print("Warm-up updates (untimed; JaxMARL's updates before its first gradient step): "
          + ", ".join(f"{r['n_envs']} envs: {r['warmup']}" for r in rows))
    print("Ratio of each round of calls alone, median [min–max] (the table's ratio is of each side's fastest calls): "
          + ", ".join(f"{r['n_envs']} envs: {_spread(r['round_ratios'])}" for r in rows))
    return rows


def _spread(ratios: list[float]) -> str:
    """'median [min–max]' of the per-round ratios; n/a where noise left none finite."""
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]"


if __name__ == "__main__":
    main()
