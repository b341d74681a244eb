"""The runner's host path: the same algorithm functions, driven from a Python loop over host envs.

A *host* env (`env.host is True`, e.g. `pettingzoo:MODULE`) runs in numpy and cannot be jitted:

    ts = env.reset(seed)     ts = env.step(actions)     env.clone()

so `runner.train` hands it to `train_host`, which keeps `runner.build_chunk`'s semantics with the
jitted parts split out: `algo.policy_step` (vmapped over env copies) and `algo.update` are jitted once
each; the env steps, auto-resets and episode statistics happen on the host. One iteration =
`rollout_length` steps in each of `n_envs` env copies, collected into a [rollout_length, n_envs]
`Transition` batch exactly as the compiled runner does (`next_obs` / `next_global_state` /
`next_avail_actions` = the final step's at an episode end (not the next episode's first), `agent_carry`
= the carry before acting, reset to the algorithm's initial carry when an episode starts), then one
`update`. Returns are team returns: `team_reward(spec, reward)` summed over an episode.
Chunks, logging, `on_chunk` and `RunResult` are as in `runner.train`; evaluation runs
`run.eval_episodes` greedy (`explore=False`) episodes on separate env copies ("eval_return"), and
"train_return" is the mean return of the training episodes finished in the chunk.

Seeds run one after another within each chunk (no vmap on the host); with the same seed a run is
reproducible: the keys follow `runner.train`'s splits, and each env copy is seeded once, from the key,
and then continues its own random stream through its resets.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.algos.base import Algorithm, Transition
from coopmarl.checkpoints import first_nonfinite, state_leaves
from coopmarl.envs.core import team_reward
from coopmarl.errors import Diverged, Interrupted
from coopmarl.evaluation import clone_env, end_metrics, host_acting_fn, host_episodes, int_seeds, stack_host_steps
from coopmarl.progress import Progress
from coopmarl.results import RunConfig, RunResult, divergence, iteration_size, plan_chunks


class _SeedRun:
    """One seed's training: its train state, key, env copies and their running episodes."""

    def __init__(self, algo: Algorithm, config, envs: list, seed: int, act, fresh_carry, update):
        self.algo, self.config, self.envs, self.act, self.update = algo, config, envs, act, update
        self.rollout_length, self.n_envs = iteration_size(algo, config, envs[0].spec)
        key = jax.random.PRNGKey(seed)
        k_init, k_env, self.key = jax.random.split(key, 3)
        self.train_state = algo.init(k_init, envs[0].spec, config, None)
        self.ts = [e.reset(s) for e, s in zip(envs, int_seeds(k_env, len(envs)))]
        self.carry = jax.tree.map(lambda c: jnp.broadcast_to(c, (self.n_envs,) + c.shape), fresh_carry)
        self.start = np.ones(self.n_envs, bool)
        self.ep_return = np.zeros(self.n_envs, np.float64)
        self.eval_key = jax.random.fold_in(key, 7919)

    def _rollout(self, key):
        """rollout_length steps in every env copy: a [T, E] Transition batch and finished-episode stats."""
        steps, ret_sum, ep_count = [], 0.0, 0
        for k in jax.random.split(key, self.rollout_length):
            obs, state, avail = stack_host_steps(self.ts)
            actions, carry_used, self.carry = self.act(self.train_state, self.carry, self.start, obs, avail, k)
            actions_np = np.asarray(actions)
            nexts, after = [], []
            for i, env in enumerate(self.envs):
                nts = env.step(actions_np[i])
                self.ep_return[i] += float(team_reward(env.spec, np.asarray(nts.reward)))
                done = bool(nts.terminated) or bool(nts.truncated)
                if done:
                    ret_sum += self.ep_return[i]
                    ep_count += 1
                    self.ep_return[i] = 0.0
                nexts.append(nts)
                after.append(env.reset(None) if done else nts)  # the env's own stream continues
            self.start = np.array([bool(t.terminated) or bool(t.truncated) for t in nexts])
            self.ts = after
            # at an episode end: the final step's obs, state and mask (the bootstrap after a time limit)
            next_obs, next_state, next_avail = stack_host_steps(nexts)
            steps.append(dict(
                obs=obs, global_state=state, avail_actions=avail, actions=actions_np,
                reward=np.stack([t.reward for t in nexts]).astype(np.float32),
                team_reward=team_reward(self.envs[0].spec, np.stack([t.reward for t in nexts]).astype(np.float32)),
                terminated=np.array([bool(t.terminated) for t in nexts]),
                truncated=np.array([bool(t.truncated) for t in nexts]),
                next_obs=next_obs, next_global_state=next_state,
                next_avail_actions=next_avail,
                agent_carry=carry_used,
            ))
        batch = Transition(**{f: (jax.tree.map(lambda *xs: jnp.stack(xs), *[s[f] for s in steps])
                                  if f == "agent_carry" else jnp.asarray(np.stack([s[f] for s in steps])))
                              for f in Transition._fields if f in steps[0]})
        return batch, ret_sum, ep_count

    def chunk(self, iters: int) -> dict[str, np.ndarray]:
        history, ret_sum, ep_count = [], 0.0, 0
        for _ in range(iters):
            self.key, k_roll, k_upd = jax.random.split(self.key, 3)
            batch, r, n = self._rollout(k_roll)
            self.train_state, metrics = self.update(self.train_state, batch, k_upd)
            history.append(metrics)
            ret_sum, ep_count = ret_sum + r, ep_count + n
        history = jax.device_get(history)
        out = {k: np.float64(np.mean(np.stack([np.asarray(h[k], np.float32) for h in history]))) for k in history[0]}
        out["train_return"] = np.float64(ret_sum / ep_count) if ep_count else np.float64(np.nan)
        return out


def train_host(algo: Algorithm, env, config, run: RunConfig = RunConfig(),
               on_chunk: Callable[[int, int, dict], None] | None = None, progress: bool = True) -> RunResult:
    """Train `algo` on the host env `env` for `run.n_seeds` seeds (one after another); see the module docstring."""
    if not algo.uses_env:
        raise ValueError(f"algorithm {algo.name!r} iterates on a tabular model; host env {env.spec.name!r} has none")
    if run.eval_episodes < 1:
        raise ValueError("eval_episodes must be >= 1")
    rollout_length, n_envs = iteration_size(algo, config, env.spec)
    steps_per_iter = rollout_length * n_envs
    n_chunks, iters = plan_chunks(run.total_steps, run.log_points, steps_per_iter)
    seeds = list(range(run.seed, run.seed + run.n_seeds))

    act, fresh = host_acting_fn(algo, config, env.spec, explore=True)
    act_greedy, _ = host_acting_fn(algo, config, env.spec, explore=False)
    update = jax.jit(lambda ts, batch, k: algo.update(ts, batch, k, config=config))
    copies = iter([env] + [clone_env(env) for _ in range(len(seeds) * n_envs - 1)])
    runs = [_SeedRun(algo, config, [next(copies) for _ in range(n_envs)], s, act, fresh, update) for s in seeds]
    eval_envs = [clone_env(env) for _ in range(run.eval_episodes)]

    history: dict[str, list] = {}
    steps_log: list[int] = []
    states, done = [r.train_state for r in runs], 0  # the last complete, finite states and their chunk count
    static = algo.summary(config, env) if algo.summary is not None else {}

    def result(stopped: str | None = None) -> RunResult:
        return RunResult(
            algo=algo.name, env=env.spec.name, steps=np.asarray(steps_log, dtype=np.int64),
            metrics={k: np.stack(v) for k, v in history.items() if v},
            train_state=jax.tree.map(lambda *xs: jnp.stack(xs), *states), seeds=seeds, static=static,
            state_step=done * iters * steps_per_iter, stopped=stopped)

    with Progress(n_chunks * iters * steps_per_iter, f"{algo.name} on {env.spec.name}", enabled=progress) as bar:
        try:
            for c in range(n_chunks):
                per_seed = []
                for r in runs:
                    m = r.chunk(iters)
                    update_names = sorted(k for k in m if k != "train_return")
                    r.eval_key = jax.random.fold_in(r.eval_key, c)
                    evaluation = host_episodes(eval_envs, act_greedy, fresh, r.train_state, r.eval_key,
                                               end_metrics(env))
                    m.update({k: np.float64(v) for k, v in evaluation.items()})
                    per_seed.append(m)
                metrics = {k: np.asarray([m[k] for m in per_seed], np.float64) for k in per_seed[0]}
                step = (c + 1) * iters * steps_per_iter
                steps_log.append(step)
                for k, v in metrics.items():
                    history.setdefault(k, []).append(v)
                finite = [first_nonfinite(state_leaves(r.train_state, False)) is None for r in runs]
                problem = divergence(metrics, update_names, np.asarray(finite), seeds)
                if problem is not None:  # as the compiled runner: keep the previous, finite states
                    raise Diverged(f"diverged at step {step}: {problem}", result(f"diverged at step {step}"))
                states, done = [r.train_state for r in runs], c + 1
                if on_chunk is not None:
                    on_chunk(c, step, metrics)
                bar.update(iters * steps_per_iter, f"eval_return {np.nanmean(metrics['eval_return']):.4g}")
        except KeyboardInterrupt:  # the curves end with the last complete chunk
            del steps_log[done:]
            for v in history.values():
                del v[done:]
            stopped = f"interrupted at step {done * iters * steps_per_iter}"
            raise Interrupted(stopped, result(stopped)) from None
    return result()

