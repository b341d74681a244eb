"""COMA and VDAC (ReMIX's actor-critic baselines): the counterfactual baseline against a hand computation, the
critic's counterfactual representation, VDAC's decomposed team values (a sum; a monotonic mix), and each algorithm
reaching the optimum of a small additive game."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coopmarl.algos import coma, ppo
from coopmarl.config import ConfigError, resolve
from coopmarl.envs.registry import make
from coopmarl.envs.tabular import TabularGame
from coopmarl.runner import RunConfig, train

# an additive 2-agent game: agent 1's best action is 2 (+2), agent 2's is 0 (+1); optimum 3 per step
PAYOFF = np.add.outer(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, -1.0]))


def _train(algo, game, steps, seeds, **overrides):
    r = resolve(algo, "ro-matrix", {k: str(v) for k, v in overrides.items()})
    return train(r.algo, game, r.config, RunConfig(total_steps=steps, n_seeds=seeds, log_points=2, eval_episodes=2),
                 progress=False)


def test_coma_advantage_is_the_counterfactual_baseline_by_hand():
    # a constructed critic: Q(u1, u2) for 2 agents x 3 actions; agent a's row is Q(s, (u^{-a}, u')) over u'
    table = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, 4.0], [-1.0, 2.0, 1.0]])
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    for u1, u2 in itertools.product(range(3), range(3)):
        q = np.stack([table[:, u2], table[u1, :]])  # [N, A]: agent 1 varies u1 with u2 fixed; agent 2 the reverse
        got = coma.counterfactual_advantage(jnp.asarray(q), jnp.asarray(probs), jnp.array([u1, u2]))
        want = [table[u1, u2] - sum(probs[0, x] * table[x, u2] for x in range(3)),
                table[u1, u2] - sum(probs[1, x] * table[u1, x] for x in range(3))]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_coma_critic_row_does_not_depend_on_the_agents_own_action():
    env = make("lbf:5x5-2p-1f-coop")
    config = resolve("coma", "lbf:5x5-2p-1f-coop", []).config
    state = coma.init(jax.random.PRNGKey(0), env.spec, config)
    _, ts = env.reset(jax.random.PRNGKey(1))
    q = lambda u: coma.q_values(env.spec, config, state.critic_params, ts.global_state, ts.obs, jnp.array(u))  # noqa: E731
    np.testing.assert_array_equal(q([0, 3])[0], q([4, 3])[0])  # agent 0's row: its own action is counterfactual
    np.testing.assert_array_equal(q([0, 3])[1], q([0, 1])[1])
    assert not np.allclose(q([0, 3])[0], q([0, 1])[0])  # ... but it sees the others' actions


def test_coma_reaches_the_optimum_of_an_additive_one_shot_game():
    result = _train("coma", TabularGame.matrix(PAYOFF, horizon=1), 3000, 4, gamma=0, n_envs=16)
    np.testing.assert_allclose(result.final()["greedy_return"], 3.0)  # 4/4 seeds (8/8 when checked with 8)


def _vdac_state(algo, env_name="lbf:5x5-2p-1f-coop", seed=0):
    env = make(env_name)
    config = resolve(algo, env_name, []).config
    return env, config, ppo.init(jax.random.PRNGKey(seed), env.spec, config)


def test_vdac_sum_team_value_is_the_sum_of_the_local_values():
    env, config, state = _vdac_state("vdac-sum")
    _, ts = env.reset(jax.random.PRNGKey(1))
    v_tot = ppo._values(env.spec, config, state.critic_params, ts.obs, ts.global_state)
    local = ppo._nets(env.spec, config)[1].apply(state.critic_params["agents"], ts.obs)
    np.testing.assert_allclose(v_tot, np.full(2, local.sum()), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vdac_mix_team_value_is_monotonic_in_every_local_value(seed):
    env, config, state = _vdac_state("vdac-mix", seed=seed)
    mixer = ppo._value_mixer(env.spec, config)
    keys = jax.random.split(jax.random.PRNGKey(10 + seed), 2)
    local = 3.0 * jax.random.normal(keys[0], (64, env.spec.n_agents))
    states = jax.random.normal(keys[1], (64, env.spec.state_dim))
    grads = jax.vmap(jax.grad(lambda v, s: mixer.apply(state.critic_params["mixer"], v, s)))(local, states)
    assert (grads >= 0).all() and (grads > 0).any()  # ∂V_tot/∂V^i ≥ 0 (QMIX's non-negative weights)
    # and the state matters (a hypernetwork mixer, not a fixed sum)
    v = jax.vmap(lambda s: mixer.apply(state.critic_params["mixer"], local[0], s))(states)
    assert np.std(np.asarray(v)) > 0


@pytest.mark.parametrize("algo", ["vdac-sum", "vdac-mix"])
def test_vdac_reaches_the_optimum_of_an_additive_game(algo):
    result = _train(algo, TabularGame.matrix(PAYOFF, horizon=5), 8000, 4, rollout_length=5, actor_lr=0.005,
                    critic_lr=0.005)
    np.testing.assert_allclose(result.final()["greedy_return"], 15.0)  # 4/4 seeds


def test_vdac_team_critic_refuses_the_authors_agent_shuffle():
    with pytest.raises(ConfigError, match="agent_shuffle=True needs critic='local'.*'sum'"):
        resolve("vdac-sum", "lbf:5x5-2p-1f-coop", ["agent_shuffle=true"])


# VDAC trains in the default run on the additive game above; on LBF (and every other env family, below) behind the
# slow marker
@pytest.mark.parametrize("algo", ["coma", pytest.param("vdac-sum", marks=pytest.mark.slow),
                                  pytest.param("vdac-mix", marks=pytest.mark.slow)])
def test_trains_on_lbf(algo):
    r = resolve(algo, "lbf:5x5-2p-1f-coop", ["n_envs=2", "rollout_length=10"])
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=200, n_seeds=1, log_points=2, eval_episodes=2),
                   progress=False)
    final = result.final()
    loss = final["critic_loss"] if algo == "coma" else final["value_loss"]
    assert np.isfinite(loss).all() and np.isfinite(final["policy_loss"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("env", ["predator-prey:p-2", "mpe:spread", "smax:3m", "tensor", "three-state"])
@pytest.mark.parametrize("algo", ["coma", "vdac-sum", "vdac-mix", "dop", "fop"])
def test_actor_critics_train_on_every_discrete_env_family(algo, env):
    small = ["n_envs=2", "rollout_length=10"]
    if algo in ("dop", "fop"):
        small += ["batch_size=4", "buffer_size=8", "agent=mlp"]
    if algo == "dop":
        small += ["recent_buffer_size=4", "recent_batch_size=2"]
    r = resolve(algo, env, small)
    result = train(r.algo, r.env, r.config, RunConfig(total_steps=160, n_seeds=1, log_points=2, eval_episodes=1),
                   progress=False)
    final = result.final()
    loss = {"coma": "critic_loss", "dop": "critic_loss", "fop": "loss"}.get(algo, "value_loss")
    assert np.isfinite(final[loss]).all() and np.isfinite(final["eval_return"]).all()
