"""Training throughput of our IPPO on MPE simple spread (3 agents, discrete) beside JaxMARL's own IPPO
baseline script (`baselines/IPPO/ippo_ff_mpe.py`), at equal env count and network size.

JaxMARL's baselines are not in its pip package, and we do not ship or copy them: fetch the script
yourself and pass its path, e.g.

    curl -L -o /tmp/ippo_ff_mpe.py \\
        https://raw.githubusercontent.com/FLAIROx/JaxMARL/main/baselines/IPPO/ippo_ff_mpe.py
    python benchmarks/ippo_mpe.py --jaxmarl-ippo /tmp/ippo_ff_mpe.py [--envs 16,64,256] [--updates 8]

The script is loaded from that path at run time and only its `make_train(config)` is called, with
JaxMARL's `ippo_ff_mpe.yaml` settings (128 steps per env per update, 4 epochs x 4 minibatches, 2x64 tanh
actor and critic, parameters shared by the agents) and NUM_ENVS / TOTAL_TIMESTEPS set per row. Its
module-level imports of hydra, omegaconf and wandb (used only by its `main`, and `wandb.log` in a
per-update host callback) are replaced by no-op stand-ins when they are not installed; when distrax is not
installed, `distrax.Categorical` is replaced by an equivalent categorical (sample / log_prob / entropy of
the logits) — the measured program is otherwise the script's own.

Our side: `ippo` through the runner's compiled iteration (`build_chunk`), with the same sizes
(rollout_length 128, n_epochs 4, n_minibatches 4, hidden 64x64 tanh, shared parameters + agent id) on
our `mpe:spread` (3 agents). Both programs are jitted whole (init + rollouts + GAE + updates); the first
call compiles (its time is printed separately, not counted); then the two are called in turn `--repeats`
times and each one's fastest call counts (on a shared machine that is the least disturbed one). Steps/s
counts env steps (one step of one env, all agents) per second. Then our IPPO's wall time for 1, 8 and 32
vmapped seeds of the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp

from coopmarl.config import resolve
from coopmarl.runner import build_chunk

ROLLOUT, EPOCHS, MINIBATCHES = 128, 4, 4  # JaxMARL ippo_ff_mpe.yaml: NUM_STEPS, UPDATE_EPOCHS, NUM_MINIBATCHES
JAXMARL_CONFIG = {  # JaxMARL baselines/IPPO/config/ippo_ff_mpe.yaml (NUM_ENVS, TOTAL_TIMESTEPS set per row)
    "LR": 2.5e-4, "NUM_STEPS": ROLLOUT, "UPDATE_EPOCHS": EPOCHS, "NUM_MINIBATCHES": MINIBATCHES, "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh", "ENV_NAME": "MPE_simple_spread_v3", "ENV_KWARGS": {}, "ANNEAL_LR": True,
}
OUR_OVERRIDES = [f"rollout_length={ROLLOUT}", f"n_epochs={EPOCHS}", f"n_minibatches={MINIBATCHES}",
                 "hidden_sizes=64,64", "activation=tanh", "share_parameters=true", "actor_lr=2.5e-4",
                 "critic_lr=2.5e-4", "max_grad_norm=0.5"]


class _Categorical:
    """Stand-in for `distrax.Categorical(logits=…)` with the three methods the script calls."""

    def __init__(self, logits):
        self.logits = jax.nn.log_softmax(logits)

    def sample(self, seed):
        return jax.random.categorical(seed, self.logits)

    def log_prob(self, value):
        return jnp.take_along_axis(self.logits, value[..., None].astype(jnp.int32), -1)[..., 0]

    def entropy(self):
        return -jnp.sum(jnp.exp(self.logits) * self.logits, -1)


def _stand_ins() -> list[str]:
    """No-op modules for the script's imports that its `make_train` does not need (see the docstring)."""
    replaced = []

    def missing(name):
        return importlib.util.find_spec(name) is None

    if missing("hydra"):
        sys.modules["hydra"] = types.SimpleNamespace(main=lambda *a, **k: (lambda fn: fn))
        replaced.append("hydra")
    if missing("omegaconf"):
        sys.modules["omegaconf"] = types.SimpleNamespace(OmegaConf=types.SimpleNamespace(to_container=dict))
        replaced.append("omegaconf")
    if missing("wandb"):
        sys.modules["wandb"] = types.SimpleNamespace(log=lambda *a, **k: None, init=lambda *a, **k: None)
        replaced.append("wandb (log is a no-op)")
    else:  # installed (our `test` extra brings it): a disabled run, so that the script's wandb.log is a no-op
        import wandb

        if wandb.run is None:
            wandb.init(mode="disabled")
            replaced.append("wandb (a disabled run)")
    if missing("distrax"):
        sys.modules["distrax"] = types.SimpleNamespace(Categorical=_Categorical)
        replaced.append("distrax.Categorical")
    return replaced


def load_jaxmarl_ippo(path: str):
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--jaxmarl-ippo {path}: no such file (see this script's docstring for how to get it)")
    replaced = _stand_ins()
    spec = importlib.util.spec_from_file_location("jaxmarl_ippo_ff_mpe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "make_train"):
        raise SystemExit(f"{path} has no make_train(config): is it JaxMARL's baselines/IPPO/ippo_ff_mpe.py?")
    return module, replaced


def jaxmarl_program(module, n_envs: int, updates: int):
    """(run(key), env steps per call) of JaxMARL's whole training program."""
    config = dict(JAXMARL_CONFIG, NUM_ENVS=n_envs, TOTAL_TIMESTEPS=updates * ROLLOUT * n_envs)
    train = module.make_train(config)
    return (lambda key: train(key)["metrics"]["total_loss"]), updates * ROLLOUT * n_envs


def our_program(n_envs: int, updates: int, seeds: int = 1):
    """(run(key), env steps per call) of our IPPO: init + `updates` runner iterations, `seeds` vmapped."""
    r = resolve("ippo", "mpe:spread", OUR_OVERRIDES + [f"n_envs={n_envs}", "env.n_agents=3"])
    init_fn, chunk_fn = build_chunk(r.algo, r.env, r.config, updates)

    def one(key):
        return chunk_fn(None, init_fn(None, key))[1]["policy_loss"]

    def run(key):
        return jax.vmap(one)(jax.random.split(key, seeds)) if seeds > 1 else one(key)

    return run, updates * ROLLOUT * n_envs * seeds


def compile_program(run) -> tuple:
    """(jitted fn, compile seconds: the first call)."""
    fn = jax.jit(run)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.PRNGKey(0)))
    return fn, time.perf_counter() - t0


def time_rounds(fns: list, repeats: int) -> list[list[float]]:
    """Seconds of each of `repeats` calls of each compiled fn ([fn][round]), the fns called in turn (A B A B …) so
    that load from other processes on a shared machine hits them alike."""
    times = [[] for _ in fns]
    for r in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(jax.random.PRNGKey(r + 1)))
            times[i].append(time.perf_counter() - t0)
    return times


def time_interleaved(fns: list, repeats: int) -> list[float]:
    """Fastest of `repeats` interleaved calls of each compiled fn (`time_rounds`): the least disturbed one."""
    return [min(t) for t in time_rounds(fns, repeats)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jaxmarl-ippo", required=True, metavar="PATH",
                   help="path of JaxMARL's baselines/IPPO/ippo_ff_mpe.py (fetched by you; see the docstring)")
    p.add_argument("--envs", default="16,64,256", help="comma-separated env counts")
    p.add_argument("--updates", type=int, default=8, help="updates timed per run (each: 128 steps x envs)")
    p.add_argument("--seeds", default="1,8,32", help="vmapped seeds for our wall-time table")
    p.add_argument("--seed-envs", type=int, default=16, help="env count of the seeds table")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (the fastest counts)")
    args = p.parse_args(argv)
    module, replaced = load_jaxmarl_ippo(args.jaxmarl_ippo)

    print(f"\nIPPO training on MPE simple spread (3 agents), {jax.devices()[0].platform}, {args.updates} updates "
          f"x {ROLLOUT} steps per env per run, {EPOCHS} epochs x {MINIBATCHES} minibatches, 2x64 tanh; "
          f"compile excluded")
    if replaced:
        print(f"JaxMARL script's imports replaced by stand-ins: {', '.join(replaced)}")
    print("| envs | ours steps/s | JaxMARL steps/s | ours / JaxMARL | compile s (ours / JaxMARL) |")
    print("|---|---|---|---|---|")
    rows = []
    for n_envs in (int(e) for e in args.envs.split(",")):
        (ours, steps), (theirs, _) = our_program(n_envs, args.updates), jaxmarl_program(module, n_envs, args.updates)
        ours, ours_compile = compile_program(ours)
        theirs, theirs_compile = compile_program(theirs)
        t_ours, t_theirs = time_interleaved([ours, theirs], args.repeats)
        rows.append((n_envs, steps / t_ours, steps / t_theirs))
        print(f"| {n_envs} | {steps / t_ours:,.0f} | {steps / t_theirs:,.0f} | {t_theirs / t_ours:.2f} | "
              f"{ours_compile:.1f} / {theirs_compile:.1f} |", flush=True)

    print(f"\nOur IPPO, {args.seed_envs} envs, {args.updates} updates ({args.updates * ROLLOUT * args.seed_envs:,} "
          f"env steps per seed), seeds vmapped:")
    print("| seeds | wall s | env steps/s (all seeds) | per seed | compile s |")
    print("|---|---|---|---|---|")
    seed_rows = []
    for seeds in (int(s) for s in args.seeds.split(",")):
        run, steps = our_program(args.seed_envs, args.updates, seeds)
        fn, compile_s = compile_program(run)
        wall, = time_interleaved([fn], args.repeats)
        seed_rows.append((seeds, wall))
        print(f"| {seeds} | {wall:.2f} | {steps / wall:,.0f} | {steps / wall / seeds:,.0f} | {compile_s:.1f} |",
              flush=True)
    return rows, seed_rows


if __name__ == "__main__":
    main()
