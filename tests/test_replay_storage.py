"""Replay keeps each observation once, in its smallest exact dtype (`offpolicy.StoredWindow`): what a loss reads
back is the runner's windows — exactly at every step whose target uses it — and a paper-scale predator-prey
buffer fits in a few GB."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coopmarl.algos import offpolicy as op
from coopmarl.algos import qmix
from coopmarl.algos.base import get_algo
from coopmarl.config import resolve
from coopmarl.runner import build_chunk


def _rollout(env_name: str, overrides: list[str], iters: int = 1, seed: int = 0):
    """The runner's [T, E] data of its `iters`-th iteration (the windows QMIX's `update` receives)."""
    r = resolve("qmix", env_name, overrides)
    seen = []

    def spy(state, data, key, *, config):
        jax.debug.callback(lambda d: seen.append(jax.tree.map(np.asarray, d)), data)
        return state, {}  # (no learning: the data is all this needs)

    init, chunk = build_chunk(dataclasses.replace(r.algo, update=spy), r.env, r.config, iters)
    jax.block_until_ready(jax.jit(lambda k: chunk(None, init(None, k))[1])(jax.random.PRNGKey(seed)))
    assert len(seen) == iters
    return r, jax.tree.map(jnp.asarray, seen[-1])


FORAGING = ["env.grid_size=4", "env.n_agents=1", "env.n_foods=1", "env.time_limit=10", "rollout_length=24", "n_envs=8",
            "agent=mlp"]

@pytest.mark.parametrize("env_name,overrides", [
    # windows of 24 steps over episodes of at most 10: several truncations and terminations inside a window (one
    # agent on a 4x4 grid eats its food within the time limit now and then)
    ("foraging", FORAGING),
    ("predator-prey:p-2", ["env.time_limit=7", "rollout_length=16", "n_envs=3", "agent=mlp"]),
])
def test_restored_windows_equal_the_runners_wherever_a_target_reads_them(env_name, overrides):
    r, data = _rollout(env_name, overrides, iters=2)
    spec, config = r.env.spec, r.config
    windows = op.to_windows(data)
    stored = jax.vmap(lambda w: op.store(w, spec, config))(windows)
    back = op.restore(stored, spec)
    for field in ("obs", "global_state", "avail_actions", "actions", "reward", "team_reward", "terminated",
                  "truncated"):
        np.testing.assert_array_equal(getattr(back, field), getattr(windows, field), err_msg=field)
    jax.tree.map(np.testing.assert_array_equal, back.agent_carry, windows.agent_carry)
    # the next observation: exact after every step but a termination (whose target does not bootstrap)
    keep = ~np.asarray(windows.terminated)  # [E, T]
    for field in ("next_obs", "next_global_state", "next_avail_actions"):
        np.testing.assert_array_equal(np.asarray(getattr(back, field))[keep],
                                      np.asarray(getattr(windows, field))[keep], err_msg=field)
    truncated_inside = np.asarray(windows.truncated)[:, :-1]
    assert truncated_inside.any(), "the test needs truncations inside windows"
    assert np.asarray(windows.terminated).any() or env_name.startswith("predator"), "and terminations"
    # each observation once: T + 1 per window, in the declared dtype (LBF's integers as int8, predator-prey's 0/1
    # grid as bits, eight to a byte); masks as bits, actions as int8
    t = op.window_length(config, spec)
    assert stored.obs.shape[1] == t + 1 and stored.actions.dtype == jnp.int8
    if spec.obs_dtype == "bool":
        assert stored.obs.dtype == jnp.uint8 and stored.obs.shape[-1] == -(-spec.obs_dim // 8)
    else:
        assert spec.obs_dtype == "int8" and stored.obs.dtype == jnp.int8 and stored.obs.shape[-1] == spec.obs_dim
    assert stored.avail_actions.dtype == jnp.uint8 and stored.avail_actions.shape[-1] == 1  # 6 actions: one byte


def test_the_loss_on_stored_windows_equals_the_loss_on_the_runners():
    """QMIX's loss and gradient on restored windows equal those on the runner's own, terminations inside included."""
    r, data = _rollout("foraging", FORAGING[:-1] + ["agent=gru", "td_lambda=0.6"], iters=2)
    spec, config = r.env.spec, r.config
    windows = op.to_windows(data)
    assert np.asarray(windows.terminated).any()
    restored = op.restore(jax.vmap(lambda w: op.store(w, spec, config))(windows), spec)
    params = r.algo.init(jax.random.PRNGKey(3), spec, config, None).params
    target = jax.tree.map(lambda p: p * 0.9, params)

    def loss(batch):
        return jax.value_and_grad(lambda p: qmix.loss_fn(p, target, batch, jax.random.PRNGKey(1), config,
                                                         jnp.int32(0))[0])(params)

    loss = jax.jit(loss)
    (l_raw, g_raw), (l_back, g_back) = loss(windows), loss(restored)
    np.testing.assert_allclose(float(l_back), float(l_raw), rtol=1e-6)
    # (the one-pass GRU unroll on stored windows sums the backward pass in another order: float rounding only)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_back, g_raw)


def test_episode_replay_needs_no_cut_slots_and_windows_get_one_per_horizon():
    spec = resolve("qmix", "lbf:5x5-2p-1f-coop").env.spec  # horizon 50
    assert op.cut_slots(spec, resolve("qmix", "lbf:5x5-2p-1f-coop", ["replay=episodes"]).config) == 0
    assert op.cut_slots(spec, resolve("qmix", "lbf:5x5-2p-1f-coop", ["replay=windows"]).config) == 1  # T = 50
    assert op.cut_slots(spec, resolve("qmix", "lbf:5x5-2p-1f-coop", ["rollout_length=101"]).config) == 2
    assert op.cut_slots(spec, resolve("qmix", "lbf:5x5-2p-1f-coop", ["rollout_length=1"]).config) == 0


def _buffer_bytes(algo_name: str, env_name: str, overrides: list[str]) -> int:
    """Bytes of one seed's replay buffers, from shapes alone (nothing is allocated)."""
    r = resolve(algo_name, env_name, overrides)
    state = jax.eval_shape(lambda k: r.algo.init(k, r.env.spec, r.config, None), jax.random.PRNGKey(0))
    leaves = jax.tree.leaves((state.buffer, state.recent))
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)


def test_a_paper_scale_predator_prey_buffer_fits_in_a_few_gigabytes():
    """ReMIX Table 2 / pymarl2: 10,000 episodes of 200 steps, 8 agents on a 10x10 grid. Stored as the runner
    hands them over (float32, next observations beside observations) it was ~14.7 GB per seed."""
    from coopmarl.experiments.value import PYMARL2, PYMARL2_PP

    overrides = [f"{k}={v}" for k, v in {**PYMARL2, **PYMARL2_PP}.items()]
    got = _buffer_bytes("qmix", "predator-prey:p-2", overrides)
    spec = resolve("qmix", "predator-prey:p-2").env.spec
    assert (spec.obs_dtype, spec.state_dtype) == ("bool", "bool")
    episodes, t = 10_000, spec.horizon
    assert episodes == PYMARL2["buffer_size"] and t == 200
    features = spec.n_agents * spec.obs_dim + spec.state_dim  # 900 per step: one bit each, once
    old = episodes * t * 2 * 4 * features  # float32, next observations beside observations: 14.4 GB
    # the bits, plus per step the rewards (8 float32), the team reward, actions (int8), flags and masks (bytes)
    assert got < episodes * (t + 1) * (features / 8 + 8 * 4 + 4 + 8 + 2 + 8) + 1e8
    assert got < 0.6e9 and got < old / 25, f"{got / 1e9:.2f} GB"


def test_stored_actions_and_observations_use_the_smallest_exact_types():
    r = resolve("qmix", "mpe:spread")  # float observations stay float32
    window = op.store(op.example_window(r.env.spec, r.config, get_algo("qmix").init_carry(r.env.spec, r.config)),
                      r.env.spec, r.config)
    assert window.obs.dtype == jnp.float32 and window.actions.dtype == jnp.int8
    r = resolve("maddpg", "differential")  # continuous actions stay float32
    window = op.store(op.example_window(r.env.spec, r.config, ()), r.env.spec, r.config)
    assert window.actions.dtype == jnp.float32


def test_recurrent_agents_step_once_on_stored_windows_with_the_same_values(last_action=True):
    """On replay's windows a GRU agent steps once per time step (q_next[t] = q[t + 1], the network applied to the
    final observation only at the window's last step and its time-limit cuts): the values equal the two-pass
    unroll's wherever a target reads them (every step but a termination)."""
    r, data = _rollout("foraging", FORAGING[:-1] + ["agent=gru", f"last_action={last_action}"], iters=2)
    spec, config = r.env.spec, r.config
    windows = op.to_windows(data)
    restored = op.restore(jax.vmap(lambda w: op.store(w, spec, config))(windows), spec)
    assert np.asarray(restored.cut_at < restored.terminated.shape[-1]).any()  # some windows have cuts
    agents = op.make_agents(spec, config)
    params = agents.init(jax.random.PRNGKey(4))
    once = jax.jit(lambda b: op.unroll_batch(agents, params, b))(restored)
    twice = jax.jit(lambda b: op.unroll_batch(agents, params, b))(windows)  # the runner's data: two passes
    np.testing.assert_allclose(once[0], twice[0], rtol=1e-6, atol=1e-6)
    keep = ~np.asarray(windows.terminated)
    np.testing.assert_allclose(np.asarray(once[1])[keep], np.asarray(twice[1])[keep], rtol=1e-6, atol=1e-6)
    # online and target agents in one loop (`unroll_batches`): each set's own values, on both kinds of batch
    other = agents.init(jax.random.PRNGKey(5))
    for b in (restored, windows):
        pair = jax.jit(lambda b: op.unroll_batches(agents, (params, other), b))(b)
        alone = [jax.jit(lambda b, p=p: op.unroll_batch(agents, p, b))(b) for p in (params, other)]
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6), pair, tuple(alone))
