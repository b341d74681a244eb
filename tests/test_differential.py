"""The differential Max of Two Quadratics game (ROMMEO §5.2): its optima, both variants, clipping,
one-step episodes. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl.envs.core import AutoReset
from coopmarl.envs.differential import max_of_two_quadratics

KEY = jax.random.PRNGKey(0)


def _reward(env, a1, a2):
    state, _ = env.reset(KEY)
    _, ts = env.step(KEY, state, jnp.array([[a1], [a2]], jnp.float32))
    return float(ts.reward[0])


def test_spec():
    env = coopmarl.make("differential")
    spec = env.spec
    assert (spec.n_agents, spec.action_kind, spec.action_dim, spec.low, spec.high) == (2, "continuous", 1, -10.0, 10.0)
    assert (spec.obs_dim, spec.state_dim, spec.horizon) == (1, 1, 1)
    assert dict(spec.params) == {"variant": "paper"}


def test_paper_variant_optima():
    env = coopmarl.make("differential")
    # (5, 5): f2 = 10, f1 = 0.8 * (-(10/3)^2 * 2) = -17.8  ->  10, the global maximum
    assert _reward(env, 5.0, 5.0) == pytest.approx(10.0)
    # (-5, -5): f1 = 0, f2 = -(100 + 100) + 10 = -190  ->  0, a local maximum
    assert _reward(env, -5.0, -5.0) == pytest.approx(0.0, abs=1e-6)
    # (0, 0): f1 = 0.8 * (-25/9 * 2) = -4.444, f2 = -50 + 10 = -40
    assert _reward(env, 0.0, 0.0) == pytest.approx(-40.0 / 9.0, rel=1e-5)
    # a fine grid over [-10, 10]^2: the maximum is 10 at (5, 5)
    grid = jnp.linspace(-10.0, 10.0, 401)  # step 0.05: contains ±5
    a1, a2 = jnp.meshgrid(grid, grid, indexing="ij")
    r = np.asarray(env.reward(jnp.stack([a1, a2], -1)))
    i, j = np.unravel_index(np.argmax(r), r.shape)
    assert (float(grid[i]), float(grid[j])) == pytest.approx((5.0, 5.0)) and r.max() == pytest.approx(10.0)
    # (-5, -5) is a strict local maximum: every grid neighbour within 1 is lower, the gradient is zero
    near = (jnp.abs(a1 + 5) <= 1.0) & (jnp.abs(a2 + 5) <= 1.0) & ((a1 != -5.0) | (a2 != -5.0))
    assert (r[np.asarray(near)] < 0).all()
    grad = jax.grad(lambda a: max_of_two_quadratics(a[0], a[1]))(jnp.array([-5.0, -5.0]))
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-6)
    # the local optimum's basin is the wide one: f1 is the larger quadratic on most of the square
    f1_wins = np.asarray(0.8 * (-((a1 + 5) / 3) ** 2 - ((a2 + 5) / 3) ** 2) > (-(a1 - 5) ** 2 - (a2 - 5) ** 2 + 10))
    assert f1_wins.mean() > 0.5


def test_code_variant_values():
    env = coopmarl.make("differential", variant="code")
    assert dict(env.spec.params) == {"variant": "code"}
    assert _reward(env, 5.0, 5.0) == pytest.approx(10.0)
    assert _reward(env, -5.0, -5.0) == pytest.approx(0.0, abs=1e-6)
    # (0, 0): f1 = 0.8 * (-25/3 - 25/3) = -13.333 (paper: -4.444); f2 = -40
    assert _reward(env, 0.0, 0.0) == pytest.approx(-40.0 / 3.0, rel=1e-5)
    # (-2, -5): f1 = 0.8 * (-9/3) = -2.4 (paper: 0.8 * (-1) = -0.8); f2 = -(49 + 100) + 10 = -139
    assert _reward(env, -2.0, -5.0) == pytest.approx(-2.4, rel=1e-5)
    assert _reward(coopmarl.make("differential"), -2.0, -5.0) == pytest.approx(-0.8, rel=1e-5)
    # (4, 6): f2 = -(1 + 1) + 10 = 8 in both variants
    assert _reward(env, 4.0, 6.0) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="variant"):
        coopmarl.make("differential", variant="typo")


def test_out_of_range_actions_are_clipped():
    env = coopmarl.make("differential")
    state, _ = env.reset(KEY)
    _, ts = env.step(KEY, state, jnp.array([[25.0], [-1e6]]))
    np.testing.assert_array_equal(np.asarray(ts.info["actions"]), [10.0, -10.0])
    assert float(ts.reward[0]) == pytest.approx(_reward(env, 10.0, -10.0))
    # a flat [2] action vector is accepted too
    _, ts2 = env.step(KEY, state, jnp.array([5.0, 5.0]))
    assert float(ts2.reward[0]) == pytest.approx(10.0)


def test_one_step_episodes():
    env = coopmarl.make("differential")
    state, ts0 = env.reset(KEY)
    assert not bool(ts0.terminated) and not bool(ts0.truncated)
    np.testing.assert_array_equal(np.asarray(ts0.obs), np.zeros((2, 1)))
    _, ts1 = env.step(KEY, state, jnp.array([[1.0], [2.0]]))
    assert bool(ts1.terminated) and bool(ts1.truncated)  # the game ends; also the 1-step time limit
    np.testing.assert_array_equal(np.asarray(ts1.obs), np.zeros((2, 1)))  # the constant observation
    np.testing.assert_array_equal(np.asarray(ts1.reward), np.full(2, ts1.reward[0]))
    # under AutoReset every step ends an episode whose return is that step's reward
    wrapped = AutoReset(env)
    state, ts = wrapped.reset(KEY)

    def body(state, a):
        state, ts = wrapped.step(KEY, state, a)
        return state, ts

    actions = jax.random.uniform(KEY, (20, 2, 1), minval=-10.0, maxval=10.0)
    _, seq = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(state, actions)
    assert np.asarray(seq.info["episode_done"]).all() and (np.asarray(seq.info["episode_length"]) == 1).all()
    np.testing.assert_allclose(np.asarray(seq.info["episode_return"]), np.asarray(seq.reward[:, 0]))
    expected = np.asarray(env.reward(actions[:, :, 0]))
    np.testing.assert_allclose(np.asarray(seq.reward[:, 0]), expected, rtol=1e-6)


def test_render_marks_the_action():
    env = coopmarl.make("differential")
    state, _ = env.reset(KEY)
    state, _ = env.step(KEY, state, jnp.array([[-5.0], [-5.0]]))
    frame = np.asarray(env.render(state))
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    red = (frame[..., 0] > 200) & (frame[..., 1] < 60)
    rows, cols = np.nonzero(red)
    # (-5, -5) is a quarter of the way from the left and three quarters down
    assert abs(cols.mean() - 127 * 0.25) < 2 and abs(rows.mean() - 127 * 0.75) < 2
