"""The value-based agents' networks (`coopmarl.nets.q`): `Agents` computes with flax's parameters in three parts
(encode, GRU step, head) and unrolls the GRU with its own backward pass (`gru_loop`); both must be the networks
flax defines, and the loop's gradient must be autodiff's."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coopmarl.nets.q import Agents, gru_cell, gru_loop

CASES = [dict(recurrent=r, dueling=d, share_parameters=s)
         for r, d, s in itertools.product([True, False], [False, True], [True, False])]


def _name(case):
    return "-".join(k for k, v in case.items() if v) or "mlp"


@pytest.mark.parametrize("case", CASES, ids=_name)
def test_apply_is_the_flax_module(case):
    """One step of every agent equals the flax module that defines the parameters (AgentQNet: fc, flax's GRUCell
    or a second fc, Q head or dueling head), agent by agent."""
    agents = Agents(n_agents=3, obs_dim=5, n_actions=4, hidden=8, agent_id=True, **case)
    params = agents.init(jax.random.PRNGKey(0))
    carry = jax.random.normal(jax.random.PRNGKey(1), (2, 3, agents.carry_dim))  # a batch of 2
    obs = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 5))
    new_carry, q = jax.jit(agents.apply)(params, carry, obs)
    x = agents.inputs(obs)
    for n in range(3):
        p = params if case["share_parameters"] else jax.tree.map(lambda a, n=n: a[n], params)
        ref_carry, ref_q = jax.jit(agents.net.apply)(p, carry[:, n], x[:, n])
        np.testing.assert_allclose(q[:, n], ref_q, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new_carry[:, n], ref_carry, rtol=1e-5, atol=1e-6)


def _plain_loop(w_h, b_hn, h0, keep, i_r, i_z, i_n):
    """The reference: `gru_cell` in a scan, differentiated by JAX."""
    def body(h, xs):
        k, a, b, c = xs
        h, _ = gru_cell(w_h, b_hn, h * k, a, b, c)
        return h, h

    return jax.lax.scan(body, h0, (keep, i_r, i_z, i_n))[1]


def test_gru_loop_gradient_is_autodiffs():
    """gru_loop's written-out backward pass (the weights' gradient after the loop) equals JAX's autodiff of the same
    loop, for every input, with memory restarts inside the window."""
    t, rows, h = 9, 5, 6
    k = jax.random.split(jax.random.PRNGKey(0), 7)
    w_h, b_hn = 0.5 * jax.random.normal(k[0], (h, 3 * h)), 0.3 * jax.random.normal(k[1], (h,))
    h0 = jax.random.normal(k[2], (rows, h))
    keep = (jax.random.uniform(k[3], (t, rows, 1)) > 0.25).astype(jnp.float32)
    assert 0 < float(keep.mean()) < 1  # some restarts, not all
    gates = [jax.random.normal(kk, (t, rows, h)) for kk in k[4:]]
    probe = jax.random.normal(jax.random.PRNGKey(9), (t, rows, h))  # a loss that weighs every step and unit

    def loss(loop):
        return lambda w, b, h0, *g: jnp.sum(probe * jnp.tanh(loop(w, b, h0, keep, *g)))

    argnums = tuple(range(6))  # w_h, b_hn, h0, i_r, i_z, i_n
    ours = jax.jit(jax.grad(loss(gru_loop), argnums))(w_h, b_hn, h0, *gates)
    ref = jax.jit(jax.grad(loss(_plain_loop), argnums))(w_h, b_hn, h0, *gates)
    for name, a, b in zip(["w_h", "b_hn", "h0", "i_r", "i_z", "i_n"], ours, ref):
        assert float(jnp.abs(b).max()) > 0, name  # (the reference gradient is not trivially zero)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(gru_loop(w_h, b_hn, h0, keep, *gates), _plain_loop(w_h, b_hn, h0, keep, *gates),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("share", [True, False], ids=["shared", "per-agent"])
def test_unroll_gradient_is_autodiff_of_acting_step_by_step(share):
    """The gradient of a loss on an unroll's values (its own backward pass; per-agent parameters under vmap) equals
    autodiff of the same values computed by acting step by step."""
    agents = Agents(n_agents=2, obs_dim=3, n_actions=4, hidden=8, share_parameters=share)
    params = agents.init(jax.random.PRNGKey(0))
    t = 7
    obs = jax.random.normal(jax.random.PRNGKey(1), (t, 2, 3))
    next_obs = jax.random.normal(jax.random.PRNGKey(2), (t, 2, 3))
    done = jnp.array([False, False, True, False, False, False, False])
    weights = jax.random.normal(jax.random.PRNGKey(3), (2, t, 2, 4))

    def by_unroll(p):
        q, q_next = agents.unroll(p, agents.initial_carry(), obs, next_obs, done)
        return jnp.sum(weights[0] * q) + jnp.sum(weights[1] * q_next)

    def by_acting(p):
        carry, qs, qs_next = agents.initial_carry(), [], []
        for i in range(t):
            carry, q = agents.apply(p, carry, obs[i])
            qs.append(q)
            qs_next.append(agents.apply(p, carry, next_obs[i])[1])
            carry = jnp.where(done[i], agents.initial_carry(), carry)
        return jnp.sum(weights[0] * jnp.stack(qs)) + jnp.sum(weights[1] * jnp.stack(qs_next))

    (v1, g1), (v2, g2) = (jax.jit(jax.value_and_grad(f))(params) for f in (by_unroll, by_acting))
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
