"""Config resolution: typed overrides, and algorithm/env mismatches caught before anything runs."""

import jax.numpy as jnp
import pytest

from coopmarl.config import ConfigError, resolve
from coopmarl.envs import registry
from coopmarl.envs.core import EnvSpec, TimeStep


class _Continuous:
    """A one-agent continuous-action env, only to exercise the compatibility checks."""

    def __init__(self):
        self.spec = EnvSpec("dummy-continuous", 1, 2, 2, "continuous", action_dim=1, horizon=5)

    def reset(self, key):
        z = jnp.zeros(2)
        return 0, TimeStep(z[None], z, jnp.ones((1, 1), bool), jnp.zeros(1), jnp.bool_(False), jnp.bool_(False), {})

    def step(self, key, state, actions):
        return self.reset(key)


@pytest.fixture
def continuous_env():
    registry.register_env("dummy-continuous", "test only")(lambda: _Continuous())
    yield "dummy-continuous"
    del registry._ENVS["dummy-continuous"]


def test_tabular_algorithm_on_a_non_tabular_env_is_refused(continuous_env):
    with pytest.raises(ConfigError, match="needs a tabular game.*Tabular games: .*climbing"):
        resolve("rommeo-q", continuous_env)


def test_action_kind_mismatch_is_refused(continuous_env, monkeypatch):
    from coopmarl.algos import base

    iql = base.get_algo("tabular-iql")
    monkeypatch.setitem(base._ALGOS, "iql-any", base.Algorithm(**{**iql.__dict__, "name": "iql-any",
                                                                   "requires": ("discrete",)}))
    with pytest.raises(ConfigError, match="handles discrete actions, but 'dummy-continuous' has continuous"):
        resolve("iql-any", continuous_env)


def test_overrides_are_typed_and_split_between_algo_run_and_env():
    r = resolve("maosql", "penalty", ["entropy_alpha=2", "total_steps=30", "env.k=-3", "algo.zeta_epsilon=0.5"],
                n_seeds=3)
    assert r.config.entropy_alpha == 2.0 and r.config.zeta_epsilon == 0.5
    assert r.run.total_steps == 30 and r.run.n_seeds == 3
    assert r.env_params == {"k": -3.0} and float(r.env.reward.min()) == -3.0


def test_algorithm_default_run_length_applies_unless_overridden():
    assert resolve("dpo-exact", "dpo-2x2-1").run.total_steps == 200
    assert resolve("dpo-exact", "dpo-2x2-1", ["total_steps=7"]).run.total_steps == 7


@pytest.mark.parametrize("override, message", [
    (["n_seeds=0"], "n_seeds must be an integer >= 1, got 0"),
    (["total_steps=x"], "must be of type int"),
    (["gamma=true"], "must be of type float"),
    (["env.k=1,2"], "must be of type float"),
])
def test_bad_values(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve("tabular-iql", "penalty", override)
