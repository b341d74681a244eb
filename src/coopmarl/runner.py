"""The one runner: composes an algorithm's init/act/update into one compiled `lax.scan`, vmapped
over seeds, and runs it in chunks; between chunks (on the host) it evaluates, logs and moves the
progress bar — without recompiling (every chunk has the same static length).

One *iteration* of the scan = `rollout_length` steps in each of `n_envs` auto-resetting envs, then one
`update` on that [rollout_length, n_envs] batch. For a planner (`uses_env=False`) an iteration is one
`update` on the model. Between chunks, `on_chunk` receives the metrics and, every `checkpoint_every`
chunks, `on_checkpoint` the train state (the run directory's writer saves both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl import exact
from coopmarl.algos.base import Algorithm, Transition, greedy_probs
from coopmarl.envs.core import AutoReset
from coopmarl.envs.tabular import TabularGame


@dataclass(frozen=True)
class RunConfig:
    """Settings of a run that are not the algorithm's (CLI keys at the top level)."""

    total_steps: int = 20_000  # env steps per seed (per env copy summed), or iterations for planners
    seed: int = 0  # seeds used: seed, seed + 1, ..., seed + n_seeds - 1
    n_seeds: int = 1
    log_points: int = 50  # number of chunks = evaluation/logging points
    eval_episodes: int = 16  # rollout evaluation episodes (non-tabular envs; tabular games are exact)
    checkpoint_every: int = 0  # also checkpoint every this many chunks (0: only the final state)

    def __post_init__(self):
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (chunks between checkpoints), got {self.checkpoint_every}")


@dataclass
class RunResult:
    """Everything a run produced, on the host."""

    algo: str
    env: str
    steps: np.ndarray  # [n_points] env steps (or iterations) at each logging point
    metrics: dict[str, np.ndarray]  # name -> [n_points, n_seeds]
    train_state: Any  # final train state, leading axis = seeds
    seeds: list[int]
    static: dict = field(default_factory=dict)  # algorithm facts (e.g. Theorem 3's condition)

    def final(self) -> dict[str, np.ndarray]:
        return {k: v[-1] for k, v in self.metrics.items()}


def _iteration_size(algo: Algorithm, config, spec) -> tuple[int, int]:
    """(rollout_length, n_envs) of one iteration; rollout_length 0 means the env's horizon."""
    if not algo.uses_env:
        return 1, 1
    rollout_length = int(getattr(config, "rollout_length", 1)) or spec.horizon
    if rollout_length < 1:
        raise ValueError(f"env {spec.name!r} has no horizon: set rollout_length")
    return rollout_length, int(getattr(config, "n_envs", 1))


def plan_chunks(total_steps: int, log_points: int, steps_per_iter: int) -> tuple[int, int]:
    """(n_chunks, iterations per chunk) covering at least `total_steps`."""
    total_iters = max(1, math.ceil(total_steps / steps_per_iter))
    n_chunks = max(1, min(log_points, total_iters))
    return n_chunks, math.ceil(total_iters / n_chunks)


def env_actions(spec) -> Callable:
    """What the env receives: continuous actions clipped to [low, high]. The transition keeps the
    algorithm's own (unclipped) sample, on which its log-probabilities are computed."""
    if spec.discrete:
        return lambda actions: actions
    return lambda actions: jnp.clip(actions, spec.low, spec.high)


def build_chunk(algo: Algorithm, env, config, iters: int) -> Callable:
    """A pure function (env, carry) -> (carry, chunk_metrics) running `iters` iterations for one seed."""
    rollout_length, n_envs = _iteration_size(algo, config, env.spec)
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


def _tabular_eval(algo: Algorithm, game: TabularGame, config):
    """Exact evaluation of the learned product policy and of its greedy (argmax) version."""
    mask = exact.optimal_joint_mask(game)
    optimal = exact.solve(game).optimal_return

    def evaluate(model, train_state):
        policies = algo.policy(train_state, config)
        greedy = greedy_probs(policies)
        value = exact.evaluate(model, policies).expected_return
        greedy_value = exact.evaluate(model, greedy).expected_return
        return {
            "eval_return": value,
            "optimal_return": optimal,
            "regret": optimal - value,
            "p_optimal": exact.p_optimal(model, policies, mask),
            "greedy_return": greedy_value,
            "greedy_regret": optimal - greedy_value,
            "greedy_optimal": exact.p_optimal(model, greedy, mask),
        }

    return evaluate


def _rollout_eval(algo: Algorithm, env, config, n_episodes: int):
    """Return of the greedy (explore=False) policy over `n_episodes` episodes run in parallel."""
    horizon = env.spec.horizon
    if horizon <= 0:
        raise ValueError(f"env {env.spec.name!r} has no horizon; rollout evaluation needs one")

    def evaluate(model, train_state, key):
        def one(k):
            k_reset, k_run = jax.random.split(k)
            state, ts = env.reset(k_reset)

            def step(c, k):
                state, ts, agent_carry, ret, alive = c
                k_act, k_env = jax.random.split(k)
                actions, agent_carry = algo.policy_step(
                    train_state, agent_carry, ts.obs, ts.avail_actions, k_act, explore=False, config=config
                )
                state, ts = env.step(k_env, state, env_actions(env.spec)(actions))
                ret = ret + alive * ts.reward[0]
                alive = alive * (1.0 - ts.done.astype(jnp.float32))
                return (state, ts, agent_carry, ret, alive), None

            start = (state, ts, algo.init_carry(env.spec, config), 0.0, 1.0)
            (_, _, _, ret, _), _ = jax.lax.scan(step, start, jax.random.split(k_run, horizon))
            return ret

        return {"eval_return": jnp.mean(jax.vmap(one)(jax.random.split(key, n_episodes)))}

    return evaluate


def _with_regret(eval_fn, optimal_return):
    def evaluate(model, train_state, key):
        out = eval_fn(model, train_state, key)
        return dict(out, optimal_return=optimal_return, regret=optimal_return - out["eval_return"])

    return evaluate


def make_evaluator(algo: Algorithm, env, config, n_episodes: int) -> Callable:
    """The runner's evaluation, jitted and vmapped over seeds: `(model, train_state, keys) -> metrics`,
    each metric an array over seeds (`model`: the `TabularGame`, or None). A tabular algorithm on a
    tabular game is evaluated exactly (`eval_return`, `regret`, the greedy policy's …; `keys` unused);
    anything else by `n_episodes` greedy (explore=False) episodes (`eval_return`, plus `regret` against
    the exact optimum on a tabular game)."""
    if isinstance(env, TabularGame) and algo.policy is not None:
        exact_fn = _tabular_eval(algo, env, config)
        return jax.jit(jax.vmap(lambda m, ts, k: exact_fn(m, ts), in_axes=(None, 0, 0)))
    eval_fn = _rollout_eval(algo, env, config, n_episodes)
    if isinstance(env, TabularGame):  # a deep learner on a tabular game: report its regret against the exact optimum
        eval_fn = _with_regret(eval_fn, exact.solve(env).optimal_return)
    return jax.jit(jax.vmap(eval_fn, in_axes=(None, 0, 0)))


def check_checkpointing(env, run: RunConfig):
    """Intermediate checkpoints come from the compiled runner's chunks: a host env cannot give them."""
    if run.checkpoint_every and getattr(env, "host", False):
        from coopmarl.config import ConfigError  # (config imports this module)

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
        from coopmarl.host_runner import train_host
        return train_host(algo, env, config, run, on_chunk, progress)
    rollout_length, n_envs = _iteration_size(algo, config, env.spec)
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

    bar = _progress(progress, n_chunks * iters * steps_per_iter, f"{algo.name} on {env.spec.name}")
    with bar as prog:
        task = prog.add_task("train", total=n_chunks * iters * steps_per_iter) if prog else None
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
            if prog:
                ret = np.nanmean(metrics["eval_return"]) if "eval_return" in metrics else float("nan")
                prog.update(task, advance=iters * steps_per_iter, description=f"eval_return {ret:8.3f}")

    static = algo.summary(config, env) if algo.summary is not None else {}
    return RunResult(
        algo=algo.name, env=env.spec.name, steps=np.asarray(steps_log),
        metrics={k: np.stack(v) for k, v in history.items()}, train_state=carry[0], seeds=seeds, static=static,
    )


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, total: int, title: str):
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{title}[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), transient=False,
    )
