"""The one runner: composes an algorithm's init/act/update into one compiled `lax.scan`, vmapped
over seeds, and runs it in chunks; between chunks (on the host) it evaluates, logs and moves the
progress bar — without recompiling (every chunk has the same static length). After every chunk it checks
that the update's metrics and the parameters are finite: a diverging run stops (`Diverged`) with its last
finite state, never a NaN one; Ctrl-C stops it (`Interrupted`) with its last complete state.

One *iteration* of the scan = `rollout_length` steps in each of `n_envs` auto-resetting envs, then one
`update` on that [rollout_length, n_envs] batch (with an algorithm's `replay=episodes`, every env is reset at the
iteration's start, so that each env's steps begin an episode). For a planner (`uses_env=False`) an iteration is one
`update` on the model. Between chunks, `on_chunk` receives the metrics and, every `checkpoint_interval`
chunks, `on_checkpoint` the whole loop state (`LoopState`: train state, env states, agent carry, keys,
position); `train(..., start=…)` continues from one (the run directory's writer saves and resumes them).

Hyperparameters are vmapped like seeds (`train(..., hparams={key: values})`, used by
`training.train_vmapped`): the batch's leading axis then holds K values x `run.n_seeds` seeds (value-major),
and each element's config has those keys replaced by its own, traced value (`fields.with_values`) inside the
one compiled init, chunk and evaluation. Element (value k, seed s) starts from seed s's keys, exactly as seed s
of a separate run with that value does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.algos.base import Algorithm, Transition
from coopmarl.algos.fields import with_values
from coopmarl.checkpoints import state_leaves
from coopmarl.envs.core import AutoReset, team_reward
from coopmarl.envs.fast_random import split_key
from coopmarl.envs.tabular import TabularGame
from coopmarl.errors import ConfigError, Diverged, Interrupted
from coopmarl.evaluation import env_actions, make_evaluator
from coopmarl.host_runner import train_host
from coopmarl.progress import Progress
from coopmarl.results import RunConfig, RunResult, divergence, iteration_size, plan_chunks

__all__ = ["RunConfig", "RunResult", "LoopState", "Start", "batch_seeds", "build_chunk", "check_checkpointing",
           "checkpoint_interval", "element_fns", "initial_loop", "plan_chunks", "train"]


def build_chunk(algo: Algorithm, env, config, iters: int) -> Callable:
    """Pure functions (init(model, key) -> carry, chunk(model, carry, start=None) -> (carry, chunk_metrics,
    finite)) running `iters` iterations for one seed; `start`: the run's index of the chunk's first iteration."""
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    wrapped = AutoReset(env)
    fresh_carry = algo.init_carry(env.spec, config)
    # `replay=episodes` (pymarl2's episode runner): each iteration restarts every env, so that its window is one
    # whole episode from its first step (offpolicy.step_mask masks what follows an early end)
    episodic = algo.uses_env and getattr(config, "replay", "windows") == "episodes"
    to_env = env_actions(env.spec)
    # an off-policy learner's first iterations only fill its replay (`Algorithm.warmup_iterations`): with the
    # iteration's index known (`chunk`'s `start`), `update` is told so by a value that is the same for every seed,
    # so that under vmap its `lax.cond` stays a branch and the warm-up costs no gradient step
    warmup = algo.warmup_iterations(env.spec, config) if algo.warmup_iterations is not None else None

    def env_step(train_state, carry_env, key):
        env_state, ts, agent_carry = carry_env
        k_act, k_env = split_key(key)  # fast_random: jax.random.split's keys, bit for bit, without its CPU loop
        act_keys = split_key(k_act, n_envs)
        actions, next_carry = jax.vmap(
            lambda c, o, a, k: algo.policy_step(train_state, c, o, a, k, explore=True, config=config)
        )(agent_carry, ts.obs, ts.avail_actions, act_keys)
        env_state, next_ts = jax.vmap(wrapped.step)(split_key(k_env, n_envs), env_state, to_env(actions))
        info = next_ts.info
        done = next_ts.done[..., None]
        transition = Transition(
            obs=ts.obs, global_state=ts.global_state, avail_actions=ts.avail_actions, actions=actions,
            reward=next_ts.reward, terminated=next_ts.terminated, truncated=next_ts.truncated,
            next_obs=jnp.where(done[..., None], info["final_obs"], next_ts.obs),
            next_global_state=jnp.where(done, info["final_state"], next_ts.global_state),
            # at an episode end the bootstrap (a time limit) needs the final state's mask, not the next episode's
            next_avail_actions=jnp.where(done[..., None], info["final_avail_actions"], next_ts.avail_actions),
            agent_carry=agent_carry, team_reward=team_reward(env.spec, next_ts.reward),
        )
        # a new episode starts the agents' memory afresh
        next_carry = jax.tree.map(
            lambda c, c0: jnp.where(next_ts.done.reshape((-1,) + (1,) * (c.ndim - 1)), c0[None], c),
            next_carry, fresh_carry,
        )
        stats = (jnp.sum(info["episode_return"] * info["episode_done"]), jnp.sum(info["episode_done"]))
        return (env_state, next_ts, next_carry), transition, stats

    def iteration(model, carry, index):
        train_state, env_carry, key = carry
        told = {} if warmup is None or index is None else {"learn": index >= warmup}
        key, k_roll, k_upd = jax.random.split(key, 3)
        if episodic:  # every window starts an episode, with the agents' memory zero (`replay=episodes`)
            k_roll, k_reset = jax.random.split(k_roll)
            env_carry = fresh_envs(k_reset)
        if algo.uses_env:
            def roll(c, k):
                env_c, = c
                env_c, tr, st = env_step(train_state, env_c, k)
                return (env_c,), (tr, st)

            (env_carry,), (batch, (ret_sum, ep_count)) = jax.lax.scan(
                roll, (env_carry,), jax.random.split(k_roll, rollout_length)
            )
            train_state, metrics = algo.update(train_state, batch, k_upd, config=config, **told)
            ep = (ret_sum.sum(), ep_count.sum())
        else:
            train_state, metrics = algo.update(train_state, model, k_upd, config=config)
            ep = (jnp.float32(0.0), jnp.int32(0))
        return (train_state, env_carry, key), (metrics, ep)

    def chunk(model, carry, start=None):
        """`iters` iterations; `start` (optional, the same for every seed): the index of the first one in the run."""
        index = None if start is None else start + jnp.arange(iters, dtype=jnp.int32)
        carry, (metrics, (ret_sum, ep_count)) = jax.lax.scan(
            lambda c, x: iteration(model, c, x), carry, index, length=iters
        )
        out = {k: sequential_sum(v) / iters for k, v in metrics.items()}
        if algo.uses_env:
            n = sequential_sum(ep_count)
            out["train_return"] = jnp.where(n > 0, sequential_sum(ret_sum) / jnp.maximum(n, 1), jnp.nan)
        return carry, out, all_finite(carry[0])

    def fresh_envs(key):
        env_state, ts = jax.vmap(wrapped.reset)(jax.random.split(key, n_envs))
        agent_carry = jax.tree.map(lambda c: jnp.broadcast_to(c, (n_envs,) + c.shape), fresh_carry)
        return env_state, ts, agent_carry

    def init(model, key):
        k_init, k_env, k_run = jax.random.split(key, 3)
        train_state = algo.init(k_init, env.spec, config, model)
        return train_state, fresh_envs(k_env), k_run

    return init, chunk


def checkpoint_interval(run: RunConfig, n_chunks: int, host: bool = False) -> int:
    """Chunks between checkpoints: `run.checkpoint_every`, or by default (None) a tenth of the run (a killed
    run loses at most ~10% of its chunks); 0 = only the final state. Host envs: 0 (their env state is Python)."""
    if host:
        return 0
    if run.checkpoint_every is None:
        return max(1, math.ceil(n_chunks / 10))
    return run.checkpoint_every


def check_checkpointing(env, run: RunConfig):
    """Intermediate checkpoints come from the compiled runner's chunks: a host env cannot give them."""
    if run.checkpoint_every and getattr(env, "host", False):
        raise ConfigError(f"checkpoint_every: intermediate checkpoints need a JAX env; {env.spec.name!r} is a "
                          "host env (set checkpoint_every=0: its final state is still saved)")


class LoopState(NamedTuple):
    """Where a run is between chunks: everything `train` needs to continue it exactly."""

    chunk: int  # chunks done
    carry: Any  # (train_state, (env_states, time_steps, agent_carry), key), leading axis = seeds
    eval_keys: Any  # [n_seeds, 2]: the evaluation keys, folded with each chunk's index

    @property
    def train_state(self):
        return self.carry[0]

    def parts(self) -> dict:
        """The carry beyond the train state, as a checkpoint's `loop` item."""
        return {"env": self.carry[1], "key": self.carry[2], "eval_keys": self.eval_keys}

    @staticmethod
    def from_parts(chunk: int, train_state, parts: dict) -> "LoopState":
        return LoopState(chunk, (train_state, parts["env"], parts["key"]), parts["eval_keys"])


class Start(NamedTuple):
    """A run to continue (`coopmarl resume`): its loop state and the curves up to it."""

    loop: LoopState
    steps: list[int]  # env steps of the points logged so far (loop.chunk of them)
    metrics: dict[str, list]  # name -> one array over seeds per point


def batch_seeds(run: RunConfig, hparams: dict | None = None) -> list[int]:
    """The seed of every element of the runner's batch: `run.seed`, …, `run.seed + run.n_seeds - 1`, repeated for
    each vmapped hyperparameter value (`hparams`: {key: array over the batch}, value-major)."""
    seeds = list(range(run.seed, run.seed + run.n_seeds))
    if not hparams:
        return seeds
    sizes = {np.shape(v)[0] if np.ndim(v) == 1 else None for v in hparams.values()}
    if len(sizes) != 1 or None in sizes or next(iter(sizes)) % run.n_seeds:
        raise ValueError(f"hparams must be 1-d arrays of one length, a multiple of n_seeds={run.n_seeds} "
                         f"(values x seeds); got shapes {[np.shape(v) for v in hparams.values()]}")
    return seeds * (next(iter(sizes)) // run.n_seeds)


def _hparam_arrays(config, hparams: dict | None) -> dict:
    """{key: float32 array over the batch}; a key the config does not have is a ValueError."""
    if not hparams:
        return {}
    unknown = sorted(set(hparams) - {f.name for f in dataclasses.fields(config)})
    if unknown:
        raise ValueError(f"hparams: {type(config).__name__} has no key(s) {', '.join(unknown)}")
    return {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in hparams.items()}


def element_fns(algo: Algorithm, env, config, iters: int, hparams: dict):
    """`build_chunk`'s (init, chunk) taking each batch element's hyperparameters as a third argument:
    `(model, key, hp)` and `(model, carry, hp, start=None)`, hp = {key: scalar} (ignored when there are none)."""
    built = build_chunk(algo, env, config, iters) if not hparams else None

    def element_init(model, key, hp):
        return (built or build_chunk(algo, env, with_values(config, hp), iters))[0](model, key)

    def element_chunk(model, carry, hp, start=None):
        return (built or build_chunk(algo, env, with_values(config, hp), iters))[1](model, carry, start)

    return element_init, element_chunk


def initial_loop(algo: Algorithm, env, config, run: RunConfig, abstract: bool = False,
                 hparams: dict | None = None):
    """The loop state of a fresh run (chunk 0): seeds `run.seed`…, as `train` starts it (with `hparams`, those
    seeds for every value; see `train`). With `abstract`, only its structure, shapes and dtypes
    (`jax.eval_shape`: nothing is computed)."""
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    n_chunks, iters = plan_chunks(run.total_steps, run.log_points, rollout_length * n_envs)
    hp = _hparam_arrays(config, hparams)
    init_fn, _ = element_fns(algo, env, config, iters, hp)
    model = env if isinstance(env, TabularGame) else None
    keys = jnp.stack([jax.random.PRNGKey(s) for s in batch_seeds(run, hparams)])

    def make(model, keys, hp):
        carry = jax.vmap(init_fn, in_axes=(None, 0, 0))(model, keys, hp)
        return carry, jax.vmap(lambda k: jax.random.fold_in(k, 7919))(keys)

    carry, eval_keys = jax.eval_shape(make, model, keys, hp) if abstract else jax.jit(make)(model, keys, hp)
    return LoopState(0, carry, eval_keys)


def train(algo: Algorithm, env, config, run: RunConfig = RunConfig(),
          on_chunk: Callable[[int, int, dict], None] | None = None, progress: bool = True,
          on_checkpoint: Callable[[LoopState, int], None] | None = None, start: Start | None = None,
          hparams: dict[str, np.ndarray] | None = None) -> RunResult:
    """Train `algo` on `env` for `run.n_seeds` seeds at once; returns curves and final states.

    `on_chunk(chunk_index, steps, metrics)` is called on the host after every chunk with the metrics of
    that point (each an array over seeds). `on_checkpoint(loop_state, steps)` is called every
    `checkpoint_interval` chunks but the last (whose loop state is `RunResult.loop`). `start` continues a
    run from a saved loop state (bit for bit when its replay buffers were saved).

    `hparams` ({key: 1-d array}, each of the batch's size K·n_seeds, value-major) vmaps hyperparameters like
    seeds: batch element i trains with `config`'s keys replaced by `hparams[key][i]` (traced: one compiled
    program for all K values) from the keys of seed `run.seed + i % n_seeds`; every array over seeds above
    (metrics, states, `RunResult.seeds`) is then over the batch. Only keys that enter the computation as values
    may be given (`coopmarl.hparams.check_vmappable` checks them), each value already validated as an ordinary config.

    Stops: a non-finite update metric or parameter raises `Diverged` (its `.elements`: the batch positions
    that went non-finite), Ctrl-C raises `Interrupted`; both carry the curves so far and the last finite,
    complete loop state (`.result`).
    """
    if getattr(env, "host", False):  # a non-JAX env (pettingzoo:…): the same algorithm, from a Python loop
        if hparams:
            raise ConfigError(f"vmapped hyperparameters need a JAX env; {env.spec.name!r} is a host env")
        if on_checkpoint is not None:
            check_checkpointing(env, run)
        if start is not None:
            raise ConfigError(f"a run on the host env {env.spec.name!r} cannot be resumed: its env state lives in "
                              "Python objects that checkpoints do not hold; train it again")
        return train_host(algo, env, config, run, on_chunk, progress)
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    steps_per_iter = rollout_length * n_envs
    n_chunks, iters = plan_chunks(run.total_steps, run.log_points, steps_per_iter)
    interval = checkpoint_interval(run, n_chunks)
    seeds = batch_seeds(run, hparams)
    hp = _hparam_arrays(config, hparams)
    model = env if isinstance(env, TabularGame) else None

    _, chunk_fn = element_fns(algo, env, config, iters, hp)
    chunk_v = jax.jit(jax.vmap(chunk_fn, in_axes=(None, 0, 0, None)))
    if hp:
        eval_hp = make_evaluator(algo, env, config, run.eval_episodes, hparams=True)
        eval_v = lambda model, states, keys: eval_hp(model, states, keys, hp)  # noqa: E731
    else:
        eval_v = make_evaluator(algo, env, config, run.eval_episodes)
    fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
    # who a divergence names: the seed, and with vmapped hyperparameters its values too
    labels = seeds if not hp else [
        f"{s} ({', '.join(f'{k}={float(np.asarray(v)[i]):.6g}' for k, v in hparams.items())})"
        for i, s in enumerate(seeds)]

    loop = start.loop if start is not None else initial_loop(algo, env, config, run, hparams=hparams)
    steps_log = list(start.steps) if start is not None else []
    history: dict[str, list] = {k: list(v) for k, v in start.metrics.items()} if start is not None else {}
    static = algo.summary(config, env) if algo.summary is not None else {}
    step_of = lambda chunks: chunks * iters * steps_per_iter  # noqa: E731

    def result(stopped: str | None = None) -> RunResult:
        return RunResult(algo=algo.name, env=env.spec.name, steps=np.asarray(steps_log, dtype=np.int64),
                         metrics={k: np.stack(v) for k, v in history.items() if v}, train_state=loop.train_state,
                         seeds=seeds, static=static, loop=loop, state_step=step_of(loop.chunk), stopped=stopped)

    title = f"{algo.name} on {env.spec.name}"
    if hp:
        title += f" ({len(seeds) // run.n_seeds} vmapped values)"
    with Progress(n_chunks * iters * steps_per_iter, title, enabled=progress, done=step_of(loop.chunk)) as bar:
        try:
            for c in range(loop.chunk, n_chunks):
                carry, metrics, state_finite = chunk_v(model, loop.carry, hp, jnp.int32(c * iters))
                eval_keys = fold(loop.eval_keys, c)
                metrics = dict(metrics)
                update_names = sorted(k for k in metrics if k != "train_return")
                metrics.update(eval_v(model, carry[0], eval_keys))
                metrics, state_finite = jax.device_get((metrics, state_finite))
                step = step_of(c + 1)
                steps_log.append(step)
                for k, v in metrics.items():
                    history.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
                problem = divergence(metrics, update_names, state_finite, labels)
                if problem is not None:  # keep the previous, finite loop state
                    stop = Diverged(f"diverged at step {step}: {problem}", result(f"diverged at step {step}"))
                    stop.elements = nonfinite_elements(metrics, update_names, state_finite)
                    raise stop
                loop = LoopState(c + 1, carry, eval_keys)
                if on_chunk is not None:
                    on_chunk(c, step, metrics)
                if on_checkpoint is not None and interval and (c + 1) % interval == 0 and c + 1 < n_chunks:
                    on_checkpoint(loop, step)
                bar.update(iters * steps_per_iter, eval_status(metrics))
        except KeyboardInterrupt:  # between two chunks or inside one: the curves end with the loop state
            del steps_log[loop.chunk:]
            for v in history.values():
                del v[loop.chunk:]
            raise Interrupted(f"interrupted at step {step_of(loop.chunk)}",
                              result(f"interrupted at step {step_of(loop.chunk)}")) from None
    return result()


def nonfinite_elements(metrics: dict, update_names: list[str], state_finite) -> list[int]:
    """The batch positions whose update metrics or train state hold a nan or inf."""
    bad = ~np.asarray(state_finite, bool).reshape(-1)
    for name in update_names:
        bad |= ~np.isfinite(np.asarray(metrics[name], dtype=np.float64).reshape(-1))
    return np.flatnonzero(bad).tolist()


def sequential_sum(values: jax.Array) -> jax.Array:
    """The sum over the leading axis, added one by one: XLA vectorises a `jnp.sum` differently for a batch of
    seeds than for one, which can change its last bit; a scan's additions are the same for any batch."""
    values = values.astype(jnp.float32)
    return jax.lax.scan(lambda total, x: (total + x, None), jnp.zeros(values.shape[1:], jnp.float32), values)[0]


def all_finite(tree) -> jax.Array:
    """True when every float leaf of `tree` (replay buffers left out) is finite."""
    leaves = [x for x in state_leaves(tree, False).values() if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.bool_(True)


def eval_status(metrics: dict) -> str:
    """The progress bar's note: the latest evaluation return, mean over seeds."""
    values = np.asarray(metrics.get("eval_return", np.nan), dtype=np.float64)
    return f"eval_return {np.nanmean(values):.4g}" if np.isfinite(values).any() else ""
