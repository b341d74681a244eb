"""The named games of the papers: their tables, their hand-computed optima; user-defined games; errors.

Expected optima below are worked out by hand (comments give the reasoning), not by the solver.
Matrix indexing: R[i, j] = reward when agent 1 plays i and agent 2 plays j; action 0 is the first
row/column; a joint action's flat index is row-major (agent 1 most significant).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import coopmarl
from coopmarl import exact
from coopmarl.envs.registry import ParamError, UnknownNameError
from coopmarl.envs.tabular import GameValidationError, TabularGame

from conftest import TINY_DISCOUNT, TINY_HORIZON, TINY_INITIAL, TINY_REWARD, TINY_TRANSITION, write_tiny_npz


def geometric(discount: float, horizon: int, per_step: float = 1.0) -> float:
    """sum_{t < horizon} discount^t * per_step."""
    return per_step * sum(discount**t for t in range(horizon))


def optimal_set(game) -> dict[int, set[int]]:
    mask = np.asarray(exact.optimal_joint_mask(game))
    return {s: set(np.flatnonzero(mask[s]).tolist()) for s in range(mask.shape[0])}


# ---- the papers' tables ---------------------------------------------------------------------------------


def test_climbing_table_and_optimum():
    game = coopmarl.make("climbing")
    # Claus & Boutilier climbing game (ROMMEO §5.1; (C, C) = 5 as in the standard matrix)
    np.testing.assert_array_equal(game.reward[0], [[11, -30, 0], [-30, 7, 6], [0, 0, 5]])
    assert game.spec.n_agents == 2 and game.spec.n_actions == 3 and game.horizon == 1
    sol = exact.solve(game)
    assert float(sol.optimal_return) == pytest.approx(11.0)
    assert int(sol.greedy_joint[0]) == 0  # (A, A)
    assert optimal_set(game) == {0: {0}}
    # iterated: 11 per step
    game5 = coopmarl.make("climbing", horizon=5, discount=0.9)
    assert float(exact.solve(game5).optimal_return) == pytest.approx(geometric(0.9, 5, 11.0), rel=1e-5)


def test_climbing_env_rewards():
    game = coopmarl.make("climbing")
    state, ts = game.reset(jax.random.PRNGKey(0))
    for actions, expected in [((0, 0), 11.0), ((0, 1), -30.0), ((1, 2), 6.0), ((2, 2), 5.0), ((2, 0), 0.0)]:
        _, ts = game.step(jax.random.PRNGKey(1), state, jnp.array(actions, jnp.int32))
        np.testing.assert_array_equal(ts.reward, [expected, expected])
        assert bool(ts.truncated) and not bool(ts.terminated)  # one-step episodes end by the time limit


@pytest.mark.parametrize("k", [-100.0, -50.0, -10.0, 0.0])
def test_penalty_optimum(k):
    game = coopmarl.make("penalty", k=k)
    np.testing.assert_array_equal(game.reward[0], [[10, 0, k], [0, 2, 0], [k, 0, 10]])
    sol = exact.solve(game)
    assert float(sol.optimal_return) == pytest.approx(10.0)
    assert optimal_set(game) == {0: {0, 8}}  # (0, 0) and (2, 2): the two coordinated 10s
    assert int(sol.greedy_joint[0]) in (0, 8)


def test_default_objective_is_the_undiscounted_episode_return():
    assert float(exact.solve(coopmarl.make("ro-matrix")).optimal_return) == pytest.approx(30.0)  # 10 x 3
    assert float(exact.solve(coopmarl.make("tensor")).optimal_return) == pytest.approx(10.0)  # 10 x 1.0
    assert float(exact.solve(coopmarl.make("climbing")).optimal_return) == pytest.approx(11.0)
    assert float(exact.solve(coopmarl.make("three-state")).optimal_return) == pytest.approx(7.0)  # 5 x 1 + 5 x .4


def test_ro_matrix_optimum():
    game = coopmarl.make("ro-matrix", discount=0.99)
    # MAOSQL Table 2
    np.testing.assert_array_equal(game.reward[0], [[2, 2, 0], [2, 2, 0], [0, 0, 3]])
    assert game.horizon == 10 and game.discount == pytest.approx(0.99)
    sol = exact.solve(game)
    assert int(sol.greedy_joint[0]) == 8  # (3, 3) in the paper's 1-based labels
    assert optimal_set(game) == {0: {8}}
    # 3 at each of the 10 steps, discounted by 0.99
    expected = 3.0 * (1 - 0.99**10) / (1 - 0.99)
    assert float(sol.optimal_return) == pytest.approx(expected, rel=1e-5)


def test_ro_matrix_uniform_policy_gradient_claim():
    # MAOSQL §2.3.2: under a uniform partner, actions 1, 2 look better (4/3) than action 3 (1).
    r = coopmarl.make("ro-matrix").reward[0]
    np.testing.assert_allclose(np.asarray(r).mean(1), [4 / 3, 4 / 3, 1.0], rtol=1e-6)


def test_tensor_game_optimum():
    game = coopmarl.make("tensor", discount=0.99)
    assert game.spec.n_agents == 3 and game.spec.n_actions == 3 and game.horizon == 10
    # MAOSQL Table 3: reward by the number of agents on the target action 0: 0.6, 0.0, 1.0, 0.5
    r = np.asarray(game.reward[0])
    for a in np.ndindex(3, 3, 3):
        on_target = sum(x == 0 for x in a)
        assert r[a] == pytest.approx((0.6, 0.0, 1.0, 0.5)[on_target])
    sol = exact.solve(game)
    assert float(sol.optimal_return) == pytest.approx(geometric(0.99, 10, 1.0), rel=1e-5)
    # optimal: exactly two agents on the target. The paper's "3 symmetric optimal joint actions" are the 3
    # choices of the agent off target; with m = 3 actions that agent has 2 non-target actions, so 6 joint
    # actions in all.
    best = optimal_set(game)[0]
    joint = np.asarray(game.joint_actions())
    assert len(best) == 6
    assert all((joint[j] == 0).sum() == 2 for j in best)
    assert {tuple(joint[j] == 0) for j in best} == {(True, True, False), (True, False, True), (False, True, True)}


def test_tensor_game_custom_size():
    game = coopmarl.make("tensor", n_agents=2, n_actions=4, rewards=(0.0, 0.2, 1.0))
    assert game.reward.shape == (1, 4, 4)
    assert optimal_set(game) == {0: {0}}
    with pytest.raises(ValueError, match="rewards"):
        coopmarl.make("tensor", n_agents=2)  # the paper gives rewards only for 3 agents
    with pytest.raises(ValueError, match="n_agents \\+ 1"):
        coopmarl.make("tensor", rewards=(1.0, 2.0))
    # a CLI string is accepted for a tuple parameter
    game = coopmarl.make("tensor", rewards="0.6,0,1,0.5", discount=0.99)
    assert float(exact.solve(game).optimal_return) == pytest.approx(geometric(0.99, 10), rel=1e-5)


# MAOSQL Tables 4 and 5, transcribed with 0-based states and actions: [state][a1][a2]
THREE_STATE_R = [
    [[0.6, 0.0, 0.0], [0.0, 0.4, 0.4], [0.0, 0.4, 0.4]],
    [[0.6, 0.0, 0.6], [0.0, 1.0, 0.0], [0.6, 0.0, 0.6]],
    [[0.3, 0.3, 0.0], [0.3, 0.3, 0.0], [0.0, 0.0, 0.4]],
]
THREE_STATE_NEXT = [
    [[0, 0, 0], [0, 2, 1], [0, 1, 2]],
    [[0, 1, 0], [1, 2, 1], [0, 1, 0]],
    [[0, 0, 2], [0, 0, 2], [2, 2, 1]],
]


def test_three_state_tables():
    game = coopmarl.make("three-state")
    np.testing.assert_allclose(game.reward, THREE_STATE_R, atol=1e-7)
    np.testing.assert_allclose(game.transition, np.eye(3)[np.array(THREE_STATE_NEXT)], atol=1e-7)
    np.testing.assert_allclose(game.initial, [1 / 3] * 3, atol=1e-6)  # uniform start
    assert game.horizon == 10


def test_three_state_optimum():
    """By hand. The best cycle is s1 -(a=(1,1), r=1.0)-> s2 -(a=(2,2), r=0.4)-> s1: 0.7 per step, better than
    staying in s0 with (0,0) (0.6 per step) or s1 -(0,0)-> s0 -(1,2)-> s1 (0.5 per step). With 10 steps:
      from s1: 1, .4, 1, .4, ... (10 rewards)
      from s2: .4, 1, .4, 1, ...
      from s0: (1,2) or (2,1) give .4 and lead to s1, then 1, .4, ...: the same rewards as from s2.
    (Staying once in s0 for 0.6 shifts the cycle's phase: .6 + (.4, 1, ..., .4) loses ~0.4; and in the
    last steps the cycle's 1.4 per two steps beats any detour, so the cycle is optimal to the end.)"""
    g, horizon = 0.99, 10
    even = sum(g**t for t in range(0, horizon, 2))
    odd = sum(g**t for t in range(1, horizon, 2))
    v_s1 = even + 0.4 * odd
    v_s2 = 0.4 * even + odd
    v_s0 = v_s2
    game = coopmarl.make("three-state", discount=0.99)
    sol = exact.solve(game)
    np.testing.assert_allclose(sol.v, [v_s0, v_s1, v_s2], rtol=1e-5)
    assert float(sol.optimal_return) == pytest.approx((v_s0 + v_s1 + v_s2) / 3, rel=1e-5)
    # first-stage optimal joint actions: s0 -> (1,2) or (2,1) = flat 5 or 7; s1 -> (1,1) = 4; s2 -> (2,2) = 8
    assert optimal_set(game) == {0: {5, 7}, 1: {4}, 2: {8}}
    # this stationary deterministic policy is optimal: s0 is never revisited, so its regret is 0
    pol = np.zeros((2, 3, 3), np.float32)
    for s, (a1, a2) in enumerate([(1, 2), (1, 1), (2, 2)]):
        pol[0, s, a1] = pol[1, s, a2] = 1.0
    assert float(exact.regret(game, pol)) == pytest.approx(0.0, abs=1e-4)
    assert float(exact.p_optimal(game, pol)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "index, table, best, argbest",
    [
        (1, [[5, 7], [6, 4]], 7.0, 1),  # (a, b, c, d) = (5, 7, 6, 4): b at (0, 1)
        (2, [[1, 3], [5, 4]], 5.0, 2),  # c at (1, 0)
        (3, [[7, 1], [1, 3]], 7.0, 0),  # a at (0, 0)
        (4, [[20, 0], [0, 10]], 20.0, 0),
    ],
)
def test_dpo_2x2_optimum(index, table, best, argbest):
    game = coopmarl.make(f"dpo-2x2-{index}")
    np.testing.assert_array_equal(game.reward[0], table)
    sol = exact.solve(game)
    assert float(sol.optimal_return) == pytest.approx(best)
    assert int(sol.greedy_joint[0]) == argbest
    assert optimal_set(game) == {0: {argbest}}


# ---- user-defined games -----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_jax", [False, True], ids=["numpy", "jax"])
def test_user_game_from_arrays(as_jax):
    conv = jnp.asarray if as_jax else np.asarray
    game = TabularGame.create(conv(TINY_REWARD), conv(TINY_TRANSITION), conv(TINY_INITIAL),
                              horizon=TINY_HORIZON, discount=TINY_DISCOUNT, name="mine")
    spec = game.spec
    assert (spec.n_agents, spec.n_actions, spec.obs_dim, spec.state_dim, spec.horizon) == (2, 2, 2, 2, TINY_HORIZON)
    assert spec.name == "mine" and game.discount == pytest.approx(TINY_DISCOUNT)
    np.testing.assert_array_equal(game.reward, TINY_REWARD)
    np.testing.assert_allclose(game.transition, TINY_TRANSITION, atol=1e-7)
    np.testing.assert_allclose(game.initial, TINY_INITIAL)
    # flat joint order: agent 1 most significant
    np.testing.assert_array_equal(game.reward_flat[1], [0.5, -1.0, 3.0, 0.0])
    assert int(game.joint_index(jnp.array([1, 0]))) == 2
    np.testing.assert_array_equal(game.joint_actions(), [[0, 0], [0, 1], [1, 0], [1, 1]])
    # it is an env: step from state 1 with actions (1, 0) pays 3
    _, ts = game.step(jax.random.PRNGKey(0), (jnp.int32(1), jnp.int32(0)), jnp.array([1, 0], jnp.int32))
    np.testing.assert_array_equal(ts.reward, [3.0, 3.0])
    # and jit takes it as an argument (its arrays are pytree leaves)
    r = jax.jit(lambda g: g.reward_flat.sum())(game)
    assert float(r) == pytest.approx(float(TINY_REWARD.sum()))


def test_matrix_game_from_jax_array():
    game = TabularGame.matrix(jnp.array([[1.0, 0.0], [0.0, 2.0]]), horizon=3)
    assert game.n_states == 1 and game.horizon == 3
    assert float(exact.solve(game).optimal_return) == pytest.approx(6.0, rel=1e-6)  # default: undiscounted, 3 x 2


def test_user_game_from_npz(tiny_npz):
    game = coopmarl.make(f"tabular:{tiny_npz}")
    assert game.horizon == TINY_HORIZON and game.discount == pytest.approx(TINY_DISCOUNT)
    np.testing.assert_array_equal(game.reward, TINY_REWARD)
    np.testing.assert_allclose(game.transition, TINY_TRANSITION, atol=1e-7)
    np.testing.assert_allclose(game.initial, TINY_INITIAL)
    # parameters override the file's horizon and discount
    game = coopmarl.make(f"tabular:{tiny_npz}", horizon=2, discount=0.5)
    assert game.horizon == 2 and game.discount == pytest.approx(0.5)
    # CLI strings
    assert coopmarl.make(f"tabular:{tiny_npz}", horizon="7").horizon == 7


def test_npz_defaults_and_errors(tmp_path):
    # a one-state game needs only `reward`; horizon defaults to 1 and the start to state 0
    path = str(tmp_path / "matrix.npz")
    np.savez(path, reward=np.array([[[1.0, 2.0], [3.0, 4.0]]]))
    game = coopmarl.make(f"tabular:{path}")
    assert game.horizon == 1 and float(exact.solve(game).optimal_return) == pytest.approx(4.0)
    with pytest.raises(FileNotFoundError, match="no-such.npz"):
        coopmarl.make(f"tabular:{tmp_path / 'no-such.npz'}")
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, payoff=np.zeros((1, 2, 2)))
    with pytest.raises(GameValidationError, match="reward"):
        coopmarl.make(f"tabular:{bad}")
    t = TINY_TRANSITION.copy()
    t[1, 1, 0] = [0.7, 0.7]
    path = write_tiny_npz(tmp_path / "bad_t.npz", transition=t)
    with pytest.raises(GameValidationError, match=re.escape("transition[1, 1, 0, :]")):
        coopmarl.make(f"tabular:{path}")


# ---- validation errors ---------------------------------------------------------------------------------------


def _create(**kw):
    args = dict(reward=TINY_REWARD, transition=TINY_TRANSITION, initial=TINY_INITIAL, horizon=3, discount=0.9)
    args.update(kw)
    return TabularGame.create(**args)


def test_valid_game_builds():
    _create()


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(reward=np.zeros(3)), r"reward must have shape \[S, A, \.\.\., A\]"),
        (dict(reward=np.zeros((2, 2, 3)), transition=None), r"same number of actions"),
        (dict(transition=np.full((2, 2, 2, 3), 1 / 3)), r"transition must have shape .*\(2, 2, 2, 2\)"),
        (dict(transition=None), r"transition is required"),
        (dict(initial=np.ones(3) / 3), r"initial must have shape"),
        (dict(horizon=0), r"horizon must be a positive integer, got 0"),
        (dict(horizon=-2), r"horizon must be a positive integer"),
        (dict(horizon=2.5), r"horizon must be a positive integer"),
        (dict(discount=1.5), r"discount must be in \[0, 1\]"),
        (dict(discount=-0.1), r"discount must be in \[0, 1\]"),
    ],
    ids=["reward-1d", "unequal-actions", "transition-shape", "transition-missing", "initial-shape",
         "horizon-0", "horizon-negative", "horizon-float", "discount-high", "discount-negative"],
)
def test_validation_errors(kw, pattern):
    with pytest.raises(GameValidationError, match=pattern):
        _create(**kw)


def test_negative_probability_names_array_and_index():
    t = TINY_TRANSITION.copy()
    t[1, 0, 1] = [1.5, -0.5]
    with pytest.raises(GameValidationError, match=r"transition.*negative.*\(1, 0, 1, 1\)"):
        _create(transition=t)
    with pytest.raises(GameValidationError, match=r"initial.*negative.*\(1,\)"):
        _create(initial=np.array([1.5, -0.5]))


def test_rows_not_summing_to_one_name_array_and_index():
    t = TINY_TRANSITION.copy()
    t[0, 1, 0] = [0.3, 0.3]
    with pytest.raises(GameValidationError, match=re.escape("transition[0, 1, 0, :] sums to 0.6")):
        _create(transition=t)
    with pytest.raises(GameValidationError, match=r"initial sums to 0\.8"):
        _create(initial=np.array([0.4, 0.4]))


def test_non_finite_entries():
    r = TINY_REWARD.copy()
    r[1, 0, 1] = np.nan
    with pytest.raises(GameValidationError, match=r"reward.*\(1, 0, 1\)"):
        _create(reward=r)
    t = TINY_TRANSITION.copy()
    t[0, 0, 0, 0] = np.inf
    with pytest.raises(GameValidationError, match=r"transition.*\(0, 0, 0, 0\)"):
        _create(transition=t)


def test_validation_error_is_a_value_error():
    assert issubclass(GameValidationError, ValueError)


def test_named_game_bad_horizon_and_discount():
    with pytest.raises(GameValidationError, match="horizon"):
        coopmarl.make("ro-matrix", horizon=0)
    with pytest.raises(GameValidationError, match="discount"):
        coopmarl.make("climbing", discount=1.5)


# ---- registry errors -------------------------------------------------------------------------------------------


def test_unknown_env_lists_names_and_suggests():
    with pytest.raises(UnknownNameError) as err:
        coopmarl.make("climbng")
    msg = str(err.value)
    assert "climbng" in msg and "Did you mean 'climbing'?" in msg
    for entry in coopmarl.list_envs():
        assert entry.name in msg
    assert isinstance(err.value, KeyError)  # catchable as a KeyError too
    assert not msg.startswith("'")  # printed plainly, not KeyError-quoted


def test_unknown_env_without_close_match():
    with pytest.raises(UnknownNameError, match="Valid environments: ") as err:
        coopmarl.make("zzzzzzzz")
    assert "Did you mean" not in str(err.value)


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ParamError) as err:
        coopmarl.make("penalty", kk=-50)
    msg = str(err.value)
    assert "'kk'" in msg and "penalty" in msg
    assert "Valid parameters: k, horizon, discount" in msg
    assert "Did you mean 'k'?" in msg


def test_wrong_parameter_type():
    with pytest.raises(ParamError, match=r"'k' must be of type float, got 'abc'"):
        coopmarl.make("penalty", k="abc")
    with pytest.raises(ParamError, match=r"'horizon' must be of type int, got 2\.5"):
        coopmarl.make("climbing", horizon=2.5)
    with pytest.raises(ParamError, match=r"'horizon' must be of type int"):
        coopmarl.make("climbing", horizon=True)
    # strings from the command line are converted
    assert coopmarl.make("penalty", k="-50").reward[0, 0, 2] == -50.0
    assert coopmarl.make("climbing", horizon="3").horizon == 3


def test_prefix_family_without_argument():
    with pytest.raises(ParamError, match="needs an argument"):
        coopmarl.make("tabular:")
    # a bare family name should say the same, not suggest itself ("Did you mean 'tabular'?")
    with pytest.raises((ParamError, UnknownNameError)) as err:
        coopmarl.make("tabular")
    assert "tabular:" in str(err.value) and "Did you mean 'tabular'" not in str(err.value), str(err.value)
