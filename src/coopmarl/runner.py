"""The one runner: composes an algorithm's init/act/update into one compiled `lax.scan`, vmapped
over seeds, and runs it in chunks; between chunks (on the host) it evaluates, logs and moves the
progress bar — without recompiling (every chunk has the same static length).

One *iteration* of the scan = `rollout_length` steps in each of `n_envs` auto-resetting envs, then one
`update` on that [rollout_length, n_envs] batch. For a planner (`uses_env=False`) an iteration is one
`update` on the model. Between chunks, `on_chunk` receives the metrics and, every `checkpoint_every`
chunks, `on_checkpoint` the train state (the run directory's writer saves both).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.algos.base import Algorithm, Transition
from coopmarl.envs.core import AutoReset
from coopmarl.envs.tabular import TabularGame
from coopmarl.errors import ConfigError
from coopmarl.evaluation import env_actions, make_evaluator
from coopmarl.host_runner import train_host
from coopmarl.progress import Progress
from coopmarl.results import RunConfig, RunResult, iteration_size, plan_chunks

__all__ = ["RunConfig", "RunResult", "build_chunk", "check_checkpointing", "plan_chunks", "train"]


def build_chunk(algo: Algorithm, env, config, iters: int) -> Callable:
    """A pure function (env, carry) -> (carry, chunk_metrics) running `iters` iterations for one seed."""
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    wrapped = AutoReset(env)
    fresh_carry = algo.init_carry(env.spec, config)
    to_env = env_actions(env.spec)

    def env_step(train_state, carry_env, key):
        env_state, ts, agent_carry = carry_env
        k_act, k_env = jax.random.split(key)
        act_keys = jax.random.split(k_act, n_envs)
        actions, next_carry = jax.vmap(
            lambda c, o, a, k: algo.policy_step(train_state, c, o, a, k, explore=True, config=config)
        )(agent_carry, ts.obs, ts.avail_actions, act_keys)
        env_state, next_ts = jax.vmap(wrapped.step)(jax.random.split(k_env, n_envs), env_state, to_env(actions))
        info = next_ts.info
        done = next_ts.done[..., None]
        transition = Transition(
            obs=ts.obs, global_state=ts.global_state, avail_actions=ts.avail_actions, actions=actions,
            reward=next_ts.reward, terminated=next_ts.terminated, truncated=next_ts.truncated,
            next_obs=jnp.where(done[..., None], info["final_obs"], next_ts.obs),
            next_global_state=jnp.where(done, info["final_state"], next_ts.global_state),
            next_avail_actions=next_ts.avail_actions, agent_carry=agent_carry,
        )
        # a new episode starts the agents' memory afresh
        next_carry = jax.tree.map(
            lambda c, c0: jnp.where(next_ts.done.reshape((-1,) + (1,) * (c.ndim - 1)), c0[None], c),
            next_carry, fresh_carry,
        )
        stats = (jnp.sum(info["episode_return"] * info["episode_done"]), jnp.sum(info["episode_done"]))
        return (env_state, next_ts, next_carry), transition, stats

    def iteration(model, carry, _):
        train_state, env_carry, key = carry
        key, k_roll, k_upd = jax.random.split(key, 3)
        if algo.uses_env:
            def roll(c, k):
                env_c, = c
                env_c, tr, st = env_step(train_state, env_c, k)
                return (env_c,), (tr, st)

            (env_carry,), (batch, (ret_sum, ep_count)) = jax.lax.scan(
                roll, (env_carry,), jax.random.split(k_roll, rollout_length)
            )
            train_state, metrics = algo.update(train_state, batch, k_upd, config=config)
            ep = (ret_sum.sum(), ep_count.sum())
        else:
            train_state, metrics = algo.update(train_state, model, k_upd, config=config)
            ep = (jnp.float32(0.0), jnp.int32(0))
        return (train_state, env_carry, key), (metrics, ep)

    def chunk(model, carry):
        carry, (metrics, (ret_sum, ep_count)) = jax.lax.scan(
            lambda c, x: iteration(model, c, x), carry, None, length=iters
        )
        out = {k: jnp.mean(v.astype(jnp.float32)) for k, v in metrics.items()}
        if algo.uses_env:
            n = ep_count.sum()
            out["train_return"] = jnp.where(n > 0, ret_sum.sum() / jnp.maximum(n, 1), jnp.nan)
        return carry, out

    def init(model, key):
        k_init, k_env, k_run = jax.random.split(key, 3)
        train_state = algo.init(k_init, env.spec, config, model)
        env_state, ts = jax.vmap(wrapped.reset)(jax.random.split(k_env, n_envs))
        agent_carry = jax.tree.map(lambda c: jnp.broadcast_to(c, (n_envs,) + c.shape), fresh_carry)
        return train_state, (env_state, ts, agent_carry), k_run

    return init, chunk


def check_checkpointing(env, run: RunConfig):
    """Intermediate checkpoints come from the compiled runner's chunks: a host env cannot give them."""
    if run.checkpoint_every and getattr(env, "host", False):
        raise ConfigError(f"checkpoint_every: intermediate checkpoints need a JAX env; {env.spec.name!r} is a "
                          "host env (set checkpoint_every=0: its final state is still saved)")


def train(algo: Algorithm, env, config, run: RunConfig = RunConfig(),
          on_chunk: Callable[[int, int, dict], None] | None = None, progress: bool = True,
          on_checkpoint: Callable[[int, int, Any], None] | None = None) -> RunResult:
    """Train `algo` on `env` for `run.n_seeds` seeds at once; returns curves and final states.

    `on_chunk(chunk_index, steps, metrics)` is called on the host after every chunk with the metrics of
    that point (each an array over seeds). `on_checkpoint(chunk_index, steps, train_state)` is called
    after every `run.checkpoint_every`-th chunk but the last (whose state is `RunResult.train_state`),
    with the train state (leading axis = seeds).
    """
    if getattr(env, "host", False):  # a non-JAX env (pettingzoo:…): the same algorithm, from a Python loop
        if on_checkpoint is not None:
            check_checkpointing(env, run)
        return train_host(algo, env, config, run, on_chunk, progress)
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    steps_per_iter = rollout_length * n_envs
    n_chunks, iters = plan_chunks(run.total_steps, run.log_points, steps_per_iter)
    seeds = list(range(run.seed, run.seed + run.n_seeds))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    model = env if isinstance(env, TabularGame) else None

    init_fn, chunk_fn = build_chunk(algo, env, config, iters)
    init_v = jax.jit(jax.vmap(init_fn, in_axes=(None, 0)))
    chunk_v = jax.jit(jax.vmap(chunk_fn, in_axes=(None, 0)))
    eval_v = make_evaluator(algo, env, config, run.eval_episodes)

    carry = init_v(model, keys)
    eval_keys = jnp.stack([jax.random.fold_in(k, 7919) for k in keys])
    history: dict[str, list] = {}
    steps_log = []

    def record(step, metrics):
        steps_log.append(step)
        for k, v in metrics.items():
            history.setdefault(k, []).append(np.asarray(v, dtype=np.float64))

    with Progress(n_chunks * iters * steps_per_iter, f"{algo.name} on {env.spec.name}", enabled=progress) as bar:
        for c in range(n_chunks):
            carry, metrics = chunk_v(model, carry)
            eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, c))(eval_keys)
            metrics = dict(metrics)
            metrics.update(eval_v(model, carry[0], eval_keys))
            metrics = jax.device_get(metrics)
            step = (c + 1) * iters * steps_per_iter
            record(step, metrics)
            if on_chunk is not None:
                on_chunk(c, step, metrics)
            if on_checkpoint is not None and run.checkpoint_every and (c + 1) % run.checkpoint_every == 0 \
                    and c + 1 < n_chunks:
                on_checkpoint(c, step, carry[0])
            bar.update(iters * steps_per_iter, eval_status(metrics))

    static = algo.summary(config, env) if algo.summary is not None else {}
    return RunResult(
        algo=algo.name, env=env.spec.name, steps=np.asarray(steps_log),
        metrics={k: np.stack(v) for k, v in history.items()}, train_state=carry[0], seeds=seeds, static=static,
    )


def eval_status(metrics: dict) -> str:
    """The progress bar's note: the latest evaluation return, mean over seeds."""
    values = np.asarray(metrics.get("eval_return", np.nan), dtype=np.float64)
    return f"eval_return {np.nanmean(values):.4g}" if np.isfinite(values).any() else ""
