"""Evaluation: the one place where a trained policy is evaluated, for every caller — the runner between
chunks, `coopmarl eval`, `render --run` and the presets.

- **Exact** (a tabular algorithm on a tabular game): the learned product policy and its greedy (argmax)
  version are evaluated on the model (`eval_return`, `regret`, `p_optimal`, `greedy_*`).
- **Rollouts** (anything else): `n_episodes` episodes of the decentralised policy (greedy: `explore=False`,
  by default) on a JAX env, in parallel and compiled, or on a host env from a Python loop. They report
  `eval_return` (the team return: `team_reward(spec, reward)` — the env's declared scalarisation of its
  per-agent rewards — summed over the episode, as in training) and every
  end-of-episode metric the env declares in `eval_metrics` ({metric name: info key}, e.g. SMAX's
  `{"win_rate": "battle_won"}`): the info value at each episode's last step, averaged over episodes. On a
  tabular game, `regret` against the exact optimum is added.
- **Actions**: `greedy_actions` (what every agent does at an episode's start, e.g. the action records of
  the differential game) and `greedy_policy` (one seed acting, for GIFs).

Continuous actions are clipped to the env's [low, high] by `env_actions` wherever an env receives them.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl import exact
from coopmarl.algos.base import Algorithm, greedy_probs
from coopmarl.algos.fields import with_values
from coopmarl.envs.core import team_reward
from coopmarl.envs.tabular import TabularGame

MAX_HOST_EPISODE_STEPS = 100_000  # evaluation cap for a host env without a known horizon


def env_actions(spec) -> Callable:
    """What the env receives: continuous actions clipped to [low, high]. The transition keeps the
    algorithm's own (unclipped) sample, on which its log-probabilities are computed."""
    if spec.discrete:
        return lambda actions: actions
    return lambda actions: jnp.clip(actions, spec.low, spec.high)


def end_metrics(env) -> dict[str, str]:
    """{metric name: info key} the env reports at an episode's end (e.g. SMAX: win_rate <- battle_won)."""
    return dict(getattr(env, "eval_metrics", {}) or {})


def is_exact(algo: Algorithm, env) -> bool:
    """Whether `algo` on `env` is evaluated exactly (a tabular algorithm's policy on a tabular game)."""
    return isinstance(env, TabularGame) and algo.policy is not None


# ---- exact ------------------------------------------------------------------------------------------------


def tabular_evaluator(algo: Algorithm, game: TabularGame, config) -> Callable:
    """`(model, train_state) -> metrics`: exact evaluation of the learned product policy and of its greedy
    (argmax) version on the game's model."""
    mask = exact.optimal_joint_mask(game)
    optimal = exact.solve(game).optimal_return

    def evaluate(model, train_state, config=config):
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


# ---- rollouts on a JAX env ----------------------------------------------------------------------------------


def episode_fn(algo: Algorithm, env, config, *, explore: bool = False) -> Callable:
    """`(train_state, key) -> (return, {metric: value at the episode's end})` for one episode of one seed."""
    horizon = env.spec.horizon
    if horizon <= 0:
        raise ValueError(f"env {env.spec.name!r} has no horizon; rollout evaluation needs one")
    to_env = env_actions(env.spec)
    ends = end_metrics(env)

    def one(train_state, key, config=config):
        k_reset, k_run = jax.random.split(key)
        state, ts = env.reset(k_reset)

        def step(c, k):
            state, ts, agent_carry, ret, alive, end = c
            k_act, k_env = jax.random.split(k)
            actions, agent_carry = algo.policy_step(
                train_state, agent_carry, ts.obs, ts.avail_actions, k_act, explore=explore, config=config
            )
            state, ts = env.step(k_env, state, to_env(actions))
            ret = ret + alive * team_reward(env.spec, ts.reward)
            end = {m: jnp.where(alive > 0, jnp.asarray(ts.info[key], jnp.float32), v) for (m, key), v in
                   zip(ends.items(), end.values())}
            alive = alive * (1.0 - ts.done.astype(jnp.float32))
            return (state, ts, agent_carry, ret, alive, end), None

        end0 = {m: jnp.float32(0.0) for m in ends}
        start = (state, ts, algo.init_carry(env.spec, config), jnp.float32(0.0), jnp.float32(1.0), end0)
        (_, _, _, ret, _, end), _ = jax.lax.scan(step, start, jax.random.split(k_run, horizon))
        return ret, end

    return one


def rollout_evaluator(algo: Algorithm, env, config, n_episodes: int, *, explore: bool = False) -> Callable:
    """`(model, train_state, key) -> metrics` over `n_episodes` episodes run in parallel (one seed):
    `eval_return` and the env's end-of-episode metrics, each the mean over episodes."""
    if n_episodes < 1:
        raise ValueError(f"evaluation needs at least one episode, got {n_episodes}")
    one = episode_fn(algo, env, config, explore=explore)

    def evaluate(model, train_state, key, config=config):
        returns, ends = jax.vmap(lambda k: one(train_state, k, config))(jax.random.split(key, n_episodes))
        return {"eval_return": jnp.mean(returns), **{m: jnp.mean(v) for m, v in ends.items()}}

    return evaluate


def _with_regret(eval_fn, optimal_return):
    def evaluate(model, train_state, key, **kw):
        out = eval_fn(model, train_state, key, **kw)
        return dict(out, optimal_return=optimal_return, regret=optimal_return - out["eval_return"])

    return evaluate


def make_evaluator(algo: Algorithm, env, config, n_episodes: int, *, explore: bool = False,
                   hparams: bool = False) -> Callable:
    """The evaluation of a JAX env, jitted and vmapped over seeds: `(model, train_states, keys) -> metrics`,
    each metric an array over seeds (`model`: the `TabularGame`, or None). A tabular algorithm on a
    tabular game is evaluated exactly (`keys` unused); anything else by `n_episodes` rollouts, plus
    `regret` against the exact optimum on a tabular game. With `hparams`, `(model, train_states, keys, hparams)`:
    `hparams` ({key: array over the batch}) replaces those keys of `config` for each batch element (see
    `runner.train`)."""
    if is_exact(algo, env):
        exact_fn = tabular_evaluator(algo, env, config)
        eval_fn = lambda m, ts, k, **kw: exact_fn(m, ts, **kw)  # noqa: E731
    else:
        eval_fn = rollout_evaluator(algo, env, config, n_episodes, explore=explore)
        if isinstance(env, TabularGame):  # a deep learner on a tabular game: its regret against the exact optimum
            eval_fn = _with_regret(eval_fn, exact.solve(env).optimal_return)
    if hparams:
        return jax.jit(jax.vmap(lambda m, ts, k, hp: eval_fn(m, ts, k, config=with_values(config, hp)),
                                in_axes=(None, 0, 0, 0)))
    return jax.jit(jax.vmap(eval_fn, in_axes=(None, 0, 0)))


# ---- rollouts on a host env ---------------------------------------------------------------------------------


def clone_env(env):
    """An independent copy of a host env (its own `clone()` where it has one)."""
    return env.clone() if callable(getattr(env, "clone", None)) else copy.deepcopy(env)


def int_seeds(key, n: int) -> list[int]:
    """`n` integer seeds for host envs, drawn from `key`."""
    return [int(s) for s in np.asarray(jax.random.randint(key, (n,), 0, 2**31 - 1))]


def host_acting_fn(algo: Algorithm, config, spec, explore: bool):
    """Jitted (train_state, carry [E, ...], start [E], obs, avail, key) -> (actions, carry used, next carry)
    for E host env copies; `start` marks envs whose episode begins at this step: their carry restarts from
    the initial one. Returns (that function, the initial carry of one env's agents)."""
    fresh = algo.init_carry(spec, config)

    def act(train_state, carry, start, obs, avail, key):
        carry = jax.tree.map(
            lambda c, c0: jnp.where(start.reshape((-1,) + (1,) * (c.ndim - 1)), c0[None], c), carry, fresh
        )
        k_act, _ = jax.random.split(key)  # (the compiled runner splits an env key too; host envs seed themselves)
        keys = jax.random.split(k_act, obs.shape[0])
        actions, next_carry = jax.vmap(
            lambda c, o, a, k: algo.policy_step(train_state, c, o, a, k, explore=explore, config=config)
        )(carry, obs, avail, keys)
        return actions, carry, next_carry

    return jax.jit(act), fresh


def stack_host_steps(tss) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(obs, global_state, avail_actions) of a list of host time steps, stacked over env copies."""
    return (np.stack([t.obs for t in tss]).astype(np.float32),
            np.stack([t.global_state for t in tss]).astype(np.float32),
            np.stack([t.avail_actions for t in tss]).astype(bool))


def host_episodes(envs: list, act, fresh_carry, train_state, key, ends: dict[str, str] | None = None) -> dict:
    """One episode in each of the host env copies `envs`, side by side, acting with `act` (see
    `host_acting_fn`): {"eval_return": mean return, metric: mean end-of-episode info value, …}."""
    ends = ends or {}
    n = len(envs)
    k_seed, k_run = jax.random.split(key)
    ts = [e.reset(s) for e, s in zip(envs, int_seeds(k_seed, n))]
    carry = jax.tree.map(lambda c: jnp.broadcast_to(c, (n,) + c.shape), fresh_carry)
    start = np.zeros(n, bool)
    alive = np.ones(n, bool)
    returns = np.zeros(n, np.float64)
    end_values = {m: np.zeros(n, np.float64) for m in ends}
    spec = envs[0].spec
    horizon = spec.horizon or MAX_HOST_EPISODE_STEPS
    for t in range(horizon):
        if not alive.any():
            break
        obs, _, avail = stack_host_steps(ts)
        actions, _, carry = act(train_state, carry, start, obs, avail, jax.random.fold_in(k_run, t))
        actions = np.asarray(actions)
        for i in np.flatnonzero(alive):
            ts[i] = envs[i].step(actions[i])
            returns[i] += float(team_reward(spec, np.asarray(ts[i].reward)))
            for m, info_key in ends.items():
                end_values[m][i] = float(ts[i].info[info_key])
            if bool(ts[i].terminated) or bool(ts[i].truncated):
                alive[i] = False  # its later (ignored) rows keep the final obs; it is not stepped again
    return {"eval_return": float(returns.mean()), **{m: float(v.mean()) for m, v in end_values.items()}}


# ---- every seed of a trained run --------------------------------------------------------------------------


def evaluate_states(algo: Algorithm, env, config, states, keys, n_episodes: int, *, explore: bool = False
                    ) -> dict[str, np.ndarray]:
    """Evaluate every seed's train state (`states`: leading axis = seeds; `keys`: one key per seed) as the
    runner does: exactly, by compiled rollouts on a JAX env, or by rollouts on a host env. Returns
    {metric: float64 array over seeds}."""
    if getattr(env, "host", False):
        act, fresh = host_acting_fn(algo, config, env.spec, explore=explore)
        envs = [clone_env(env) for _ in range(n_episodes)]
        per_seed = [host_episodes(envs, act, fresh, jax.tree.map(lambda x: x[i], states), k, end_metrics(env))
                    for i, k in enumerate(keys)]
        return {m: np.asarray([p[m] for p in per_seed], np.float64) for m in per_seed[0]}
    model = env if isinstance(env, TabularGame) else None
    metrics = jax.device_get(make_evaluator(algo, env, config, n_episodes, explore=explore)(
        model, states, jnp.stack(list(keys))))
    return {m: np.asarray(v, np.float64).reshape(-1) for m, v in metrics.items()}


def greedy_actions(algo: Algorithm, env, config, states, key=None) -> np.ndarray:
    """[seeds, N, ...]: every seed's greedy (explore=False) action at the state `env.reset(key)` gives, as the
    env receives it (continuous actions clipped). For one-state games this is the learned joint action."""
    _, ts = env.reset(jax.random.PRNGKey(0) if key is None else key)
    to_env = env_actions(env.spec)

    def one(train_state):
        actions, _ = algo.policy_step(train_state, algo.init_carry(env.spec, config), ts.obs, ts.avail_actions,
                                      jax.random.PRNGKey(0), explore=False, config=config)
        return to_env(actions)

    return np.asarray(jax.jit(jax.vmap(one))(states))


def greedy_policy(algo: Algorithm, config, spec, train_state) -> tuple[Callable, Any]:
    """One seed's trained agents acting greedily (explore=False), e.g. for `render.rollout_frames`:
    `(policy(key, obs, avail, carry) -> (env actions, carry), initial carry)`. Acting goes through
    `algo.policy_step`, so recurrent agents carry their memory through the episode."""
    import functools

    to_env = env_actions(spec)

    @jax.jit
    def act(state, key, obs, avail, carry):
        actions, carry = algo.policy_step(state, carry, obs, avail, key, explore=False, config=config)
        return to_env(actions), carry

    return functools.partial(act, train_state), algo.init_carry(spec, config)
