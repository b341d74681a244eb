"""Where a value-based gradient step's time goes, and how close it comes to the machine's matmul peak.

One QMIX update at pymarl2's predator-prey batch (ReMIX Table 2: 128 episodes of 200 steps, 8 agents, GRU 64,
QMIX mixer 32 / hypernet 64, λ-returns; the `remix-predator-prey scale=paper` cell), timed whole and in parts:

- `agents fwd`: one unroll of the online GRU agents over the batch (`offpolicy.unroll_batch`);
- `agents fwd+bwd`: its value and gradient (of the sum of the taken Q-values);
- `mixer fwd+bwd`: QMIX's mixer of the taken values (value and gradient), the agents' values given;
- `loss fwd`: the whole loss (online and target unrolls, mixers, λ-returns) without its gradient;
- `loss fwd+bwd`: the loss and its gradient;
- `update`: the gradient step as the runner takes it (sampling from a full replay, restoring the windows,
  loss and gradient, clipping, Adam) — `offpolicy.make_update`'s `gradient_step`.

Each part is jitted on its own and timed after compilation (the fastest of `--repeats` calls). FLOPs are those of the
program's matrix products (`matmul_flops`, from its jaxpr: XLA's `cost_analysis` counts a scan's body once); the peak is a float32 [n, n] @ [n, n] matmul measured
in the same run (2n³ FLOPs). Steps/s counts env steps whose update this is (batch x window): one update per
iteration at pymarl2's 8 envs means the update's share of an iteration's time.

    python benchmarks/value_update.py [--batch 128] [--window 200] [--agents 8] [--repeats 3] [--matmul 2048]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.algos import offpolicy as op
from coopmarl.algos import qmix
from coopmarl.algos.base import taken
from coopmarl.config import resolve
from coopmarl.experiments.value import PYMARL2, PYMARL2_PP


def fastest(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_flops(fn, args) -> float:
    """The FLOPs of every matrix product in `fn`'s program (2·M·N·K per dot_general, batch axes included), scan
    bodies counted once per step. (XLA's `cost_analysis` counts a loop's body once, whatever its trip count, so it
    undercounts a GRU unroll by the window's length; products are what a matmul peak measures anyway.)"""
    from math import prod

    def count(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name == "dot_general":
                (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
                lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
                k = prod(lhs[i] for i in lc)
                m = prod(d for i, d in enumerate(lhs) if i not in lc and i not in lb)
                n = prod(d for i, d in enumerate(rhs) if i not in rc and i not in eqn.params["dimension_numbers"][1][1])
                total += 2.0 * prod(lhs[i] for i in lb) * m * n * k
                continue
            inner = [v for v in eqn.params.values() if hasattr(v, "jaxpr") or hasattr(v, "eqns")]
            inner += [b for v in eqn.params.values() if isinstance(v, (tuple, list)) for b in v
                      if hasattr(b, "jaxpr") or hasattr(b, "eqns")]
            sub = [count(getattr(j, "jaxpr", j)) for j in inner]
            if name == "scan":
                total += eqn.params["length"] * sum(sub)
            elif name == "cond":
                total += max(sub, default=0.0)  # the branch taken (the update's, in `whole_update`)
            else:
                total += sum(sub)
        return total

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def matmul_rate(m: int, k: int, n: int, repeats: int) -> float:
    """GFLOP/s of one float32 [m, k] @ [k, n] on this machine's default device (20 products per call, so that the
    call's overhead does not count)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (20, m, k), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
    f = jax.jit(lambda a, b: jax.lax.map(lambda x: x @ b, a))
    return 20 * 2 * m * k * n / fastest(f, (a, b), repeats) / 1e9


def matmul_peak(n: int, repeats: int) -> float:
    """GFLOP/s of a float32 [n, n] @ [n, n] on this machine's default device."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return 2 * n**3 / fastest(f, (a,), repeats) / 1e9


def random_batch(spec, config, batch: int, key):
    """A replay batch of `batch` stored windows with random 0/1 grids, masks, actions and rewards (stored as replay
    stores them: `offpolicy.store`)."""
    agents = op.make_agents(spec, config)
    window = op.example_window(spec, config, agents.initial_carry())
    ks = iter(jax.random.split(key, 8))
    w = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape), window)
    bits = lambda k, shape: jax.random.randint(k, shape, 0, 2).astype(jnp.float32)  # noqa: E731
    w = w._replace(
        obs=bits(next(ks), w.obs.shape), next_obs=bits(next(ks), w.obs.shape),
        global_state=bits(next(ks), w.global_state.shape), next_global_state=bits(next(ks), w.global_state.shape),
        avail_actions=(jax.random.uniform(next(ks), w.avail_actions.shape) < 0.8).at[..., 4].set(True),
        actions=jax.random.randint(next(ks), w.actions.shape, 0, spec.n_actions),
        reward=jax.random.normal(next(ks), w.reward.shape),
    )
    w = w._replace(next_avail_actions=w.avail_actions, team_reward=w.reward[..., 0])
    return jax.vmap(lambda x: op.store(x, spec, config))(w)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="windows per gradient step (pymarl2: 128 episodes)")
    p.add_argument("--window", type=int, default=200, help="steps per window (predator-prey's time limit: 200)")
    p.add_argument("--agents", type=int, default=8, help="predators (ReMIX's predator-prey: 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per part (the fastest counts)")
    p.add_argument("--matmul", type=int, default=2048, help="n of the n x n matmul that measures the peak")
    args = p.parse_args(argv)

    overrides = [f"{k}={v}" for k, v in {**PYMARL2, **PYMARL2_PP}.items()
                 if k not in ("batch_size", "buffer_size")]
    overrides += [f"batch_size={args.batch}", f"env.time_limit={args.window}", f"env.n_agents={args.agents}",
                  f"buffer_size={max(args.batch, 8)}"]
    r = resolve("qmix", "predator-prey:p-2", overrides)
    spec, config = r.env.spec, r.config
    state = r.algo.init(jax.random.PRNGKey(0), spec, config, None)
    params = state.params
    stored = random_batch(spec, config, args.batch, jax.random.PRNGKey(1))
    batch = op.restore(stored, spec)
    agents = op.make_agents(spec, config)
    mixer = qmix.make_mixer(config, spec.n_agents)
    n_actions = spec.n_actions
    key, steps = jax.random.PRNGKey(2), jnp.int32(10**6)

    def agents_fwd(p, b):
        return op.unroll_batch(agents, p["agents"], b)[0]

    def agents_fwd_bwd(p, b):
        return jax.value_and_grad(lambda p: jnp.sum(taken(op.unroll_batch(agents, p["agents"], b)[0], b.actions)))(p)

    q_taken = taken(jax.jit(agents_fwd)(params, batch), batch.actions)

    def mixer_fwd_bwd(p, b, q):
        return jax.value_and_grad(lambda p: jnp.sum(qmix._mix(mixer, p["mixer"], q, b.global_state, b.actions,
                                                              n_actions, None)))(p)

    def loss_fwd(p, b):
        return qmix.loss_fn(p, p, b, key, config, steps)[0]

    def loss_fwd_bwd(p, b):
        return jax.value_and_grad(lambda p: qmix.loss_fn(p, p, b, key, config, steps)[0])(p)

    # the runner's gradient step: a full replay of the stored windows, one update (no new windows' cost counted:
    # `update` also adds the iteration's windows, a copy of batch x window steps)
    full = state.replace(buffer=state.buffer.replace(
        experience=jax.tree.map(lambda x: x[jnp.arange(config.buffer_size) % args.batch][None], stored),
        current_index=jnp.int32(0), is_full=jnp.bool_(True)))
    update = op.make_update(qmix.loss_fn)
    envs = jnp.arange(config.n_envs) % args.batch  # the iteration's new windows [T, E] (copies of replayed ones)
    new_windows = jax.tree.map(lambda x: jnp.swapaxes(x[envs], 0, 1), batch._replace(agent_carry=(), cut_at=None))
    new_windows = new_windows._replace(agent_carry=jnp.broadcast_to(
        batch.agent_carry[envs][None], (args.window,) + batch.agent_carry[envs].shape))

    def whole_update(s, d):  # (the new parameters are returned, or XLA would drop the backward pass and Adam)
        new, metrics = update(s, d, key, config=config, learn=True)
        return new.params, new.opt_state, metrics["loss"]

    peak = matmul_peak(args.matmul, args.repeats)
    rows = []
    parts = [("agents fwd", agents_fwd, (params, batch)), ("agents fwd+bwd", agents_fwd_bwd, (params, batch)),
             ("mixer fwd+bwd", mixer_fwd_bwd, (params, batch, q_taken)), ("loss fwd", loss_fwd, (params, batch)),
             ("loss fwd+bwd", loss_fwd_bwd, (params, batch)), ("update", whole_update, (full, new_windows))]
    for name, fn, fn_args in parts:
        jitted = jax.jit(fn)
        f = matmul_flops(fn, fn_args)
        s = fastest(jitted, fn_args, args.repeats)
        rows.append((name, s, f))

    env_steps = args.batch * args.window
    print(f"\nQMIX update at pymarl2's predator-prey batch: {args.batch} windows x {args.window} steps x "
          f"{args.agents} agents (GRU {config.hidden_sizes[0]}, mixer {config.mixing_embed}/"
          f"{config.hypernet_embed}), {jax.devices()[0].platform}; matmul peak ({args.matmul}² float32): "
          f"{peak:.1f} GFLOP/s")
    print("| part | ms | matmul GFLOP | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|")
    for name, s, f in rows:
        print(f"| {name} | {s * 1e3:,.0f} | {f / 1e9:.2f} | {f / 1e9 / s:.1f} | {100 * f / 1e9 / s / peak:.0f}% |")
    # what bounds it: the products the update is made of, each alone at its own shape
    rows_step = args.batch * args.agents  # the GRU's rows at one time step
    in_dim = agents.obs_dim + (spec.n_actions if config.last_action else 0) + (spec.n_agents if config.agent_id else 0)
    h = config.hidden_sizes[0]
    shapes = [(f"GRU step: input layer [{rows_step}, {in_dim}] @ [{in_dim}, {h}]", (rows_step, in_dim, h)),
              (f"GRU step: gates [{rows_step}, {h}] @ [{h}, {3 * h}]", (rows_step, h, 3 * h)),
              (f"mixer hypernet [{args.batch * args.window}, {spec.state_dim}] @ [{spec.state_dim}, "
               f"{config.hypernet_embed}]", (args.batch * args.window, spec.state_dim, config.hypernet_embed))]
    print("\nThe same machine on the update's own matrix shapes (each product alone, no loop):")
    print("| product | GFLOP/s | % of matmul peak |")
    print("|---|---|---|")
    for name, (m, k, n) in shapes:
        rate = matmul_rate(m, k, n, args.repeats)
        print(f"| {name} | {rate:.1f} | {100 * rate / peak:.0f}% |")
    t_update = rows[-1][1]
    print(f"\nOne update: {t_update:.2f} s for {env_steps:,} replayed env steps ({env_steps / t_update:,.0f} replayed "
          f"steps/s); at one update per 8 episodes of {args.window} steps, updates alone cap training at "
          f"{8 * args.window / t_update:,.0f} env steps/s.")
    return rows, peak


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
