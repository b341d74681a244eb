"""`coopmarl check-env` / `coopmarl.check_env`: the env contract checks on built-in envs, on deliberately
broken envs (each fails the check it should), on a user's `module:function`, and the CLI's exit codes."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

import coopmarl
from coopmarl.cli import main
from coopmarl.envs.check import EnvCheckReport, check_env

# A user's own env, as they would write it in their own module: N agents step a counter up or down;
# action 2 is unavailable at odd steps; the team reward is -|sum of the counters|; 5 steps per episode.
# The subclasses break one rule each.
USER_MODULE = '''
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.envs.core import EnvSpec, TimeStep


class Walk:
    def __init__(self, n_agents: int = 2, horizon: int = 5, reward_scalarisation: str = "shared"):
        self.spec = EnvSpec(name="walk", n_agents=n_agents, obs_dim=2, state_dim=n_agents + 1,
                            action_kind="discrete", n_actions=3, horizon=horizon,
                            reward_scalarisation=reward_scalarisation)

    def avail(self, t):
        return jnp.ones((self.spec.n_agents, 3), bool).at[:, 2].set(t % 2 == 0)

    def rewards(self, pos):
        return jnp.full((self.spec.n_agents,), -jnp.abs(pos.sum()), jnp.float32)

    def timestep(self, pos, t, reward, done):
        n = self.spec.n_agents
        return TimeStep(
            obs=jnp.stack([pos.astype(jnp.float32), jnp.full((n,), t, jnp.float32)], -1),
            global_state=jnp.concatenate([pos, t[None]]).astype(jnp.float32),
            avail_actions=self.avail(t), reward=reward, terminated=jnp.bool_(False), truncated=done,
            info={"t": t},
        )

    def reset(self, key):
        pos = jax.random.randint(key, (self.spec.n_agents,), -2, 3)
        t = jnp.int32(0)
        return (pos, t), self.timestep(pos, t, jnp.zeros(self.spec.n_agents, jnp.float32), jnp.bool_(False))

    def step(self, key, state, actions):
        pos, t = state
        pos, t = pos + (actions - 1), t + 1
        return (pos, t), self.timestep(pos, t, self.rewards(pos), t >= self.spec.horizon)

    def render(self, state):
        pos, _ = state
        frame = jnp.zeros((16, 16, 3), jnp.uint8).at[:, :, 1].set(40)
        return frame.at[0, jnp.clip(pos[0] + 8, 0, 15), 0].set(255)


def make_env(n_agents: int = 2):
    return Walk(n_agents)


class WrongObsShape(Walk):
    def __init__(self):
        super().__init__()
        self.spec = dataclasses.replace(self.spec, obs_dim=3)


class NaNReward(Walk):
    def rewards(self, pos):
        return super().rewards(pos) * jnp.nan


class NonDeterministic(Walk):  # randomness outside jax.random: a new draw whenever the step is traced
    def rewards(self, pos):
        return super().rewards(pos) + np.float32(np.random.default_rng().uniform())


class PerAgentReward(Walk):  # agents' rewards differ, but the spec says "shared" (the default)
    def rewards(self, pos):
        return -jnp.abs(pos).astype(jnp.float32)


class NoActionAvailable(Walk):
    def avail(self, t):
        return super().avail(t).at[0].set(t < 3)


class TerminatedAtTimeLimit(Walk):
    def timestep(self, pos, t, reward, done):
        ts = super().timestep(pos, t, reward, done)
        return ts._replace(terminated=done, truncated=jnp.bool_(False))


class NotJittable(Walk):
    def rewards(self, pos):
        if pos.sum() > 0:  # Python control flow on a traced value
            return super().rewards(pos)
        return super().rewards(pos) * 2


class FloatRender(Walk):
    def render(self, state):
        return jnp.ones((16, 16, 3), jnp.float32)


class HalvesAsInt8(Walk):  # declares int8 storage for obs that take half-integer values
    def __init__(self):
        super().__init__()
        self.spec = dataclasses.replace(self.spec, obs_dtype="int8")

    def timestep(self, pos, t, reward, done):
        ts = super().timestep(pos, t, reward, done)
        return ts._replace(obs=ts.obs * 0.5)


def make_broken():
    return NaNReward()


def make_raises():
    raise RuntimeError("cannot build")
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_envs")
    (folder / "my_envs.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("my_envs")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("my_envs", None)


def _statuses(report: EnvCheckReport) -> dict:
    return {r.check: r.passed for r in report.results}


# ---- built-in envs pass ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", [
    ("climbing", {}),                                                                    # tabular game
    ("differential", {}),                                                                # continuous actions
    ("foraging", dict(grid_size=5, n_foods=1, time_limit=8, common_reward=False)),       # grid, per-agent rewards
    ("mpe:line", dict(n_agents=2, max_steps=8)),                                         # particles
    ("predator-prey", dict(grid_size=5, n_agents=2, n_stags=1, time_limit=8)),           # grid, masks
])
def test_builtin_envs_pass_every_check(name, params):
    report = check_env(name, **params)
    assert report.ok, str(report)
    statuses = _statuses(report)
    for must in ("api", "reset", "step", "jit", "vmap", "rollout", "action masks", "finite", "storage dtypes",
                 "team reward",
                 "time limit", "auto-reset", "determinism"):
        assert statuses[must] is True, (must, str(report))
    if name == "foraging":  # common_reward=False: lbforaging's per-agent rewards, the team's = their sum
        assert "'sum'" in report["team reward"].detail


def test_a_host_env_is_checked_through_its_host_api():
    pytest.importorskip("mpe2.simple_spread_v3", reason="mpe2 is part of the test extra")
    report = check_env("pettingzoo:mpe2.simple_spread_v3", kwargs={"N": 2, "max_cycles": 5})
    assert report.ok, str(report)
    statuses = _statuses(report)
    assert statuses["determinism"] is True and statuses["time limit"] is True and statuses["shapes & dtypes"]
    assert statuses["jit"] is None and statuses["auto-reset"] is None  # not applicable to a host env


# ---- broken envs fail the right check ----------------------------------------------------------------------


def test_a_correct_user_env_passes(user_module):
    report = check_env(user_module.Walk())
    assert report.ok, str(report)
    assert report["render"].passed is True
    assert str(report).splitlines()[-1] == "walk: all 16 checks passed"


@pytest.mark.parametrize("broken,check,message", [
    ("WrongObsShape", "reset", "obs: expected float32 [2, 3], got float32 [2, 2]"),
    ("NaNReward", "finite", "reward has"),
    ("NonDeterministic", "determinism", "same key, different trajectory"),
    ("PerAgentReward", "team reward", "spec.reward_scalarisation is 'shared'"),
    ("NoActionAvailable", "action masks", "no available action"),
    ("TerminatedAtTimeLimit", "time limit", "without truncated=True"),
    ("NotJittable", "jit", "raised"),
    ("FloatRender", "render", "uint8 [H, W, 3]"),
    ("HalvesAsInt8", "storage dtypes", "that int8 (spec.obs_dtype: int8) does not hold exactly, e.g. -0.5"),
])
def test_a_broken_env_fails_the_right_check(user_module, broken, check, message):
    report = check_env(getattr(user_module, broken)(), steps=12)
    assert not report.ok
    result = report[check]
    assert result.passed is False, str(report)
    assert message in result.detail, result.detail
    assert check in report.summary()


def test_per_agent_rewards_pass_when_declared(user_module):
    class Declared(user_module.PerAgentReward):
        def __init__(self):
            super().__init__(reward_scalarisation="sum")

    report = check_env(Declared(), steps=12)
    assert report.ok, str(report)
    assert report["team reward"].detail == "'sum' of the per-agent rewards"


# ---- module:function and the command line -------------------------------------------------------------------


def test_module_function_builds_the_env(user_module):
    report = check_env("my_envs:make_env")
    assert report.ok and report.env == "walk"
    report = check_env("my_envs:make_env", n_agents="3")  # strings (as from the CLI) coerced to the annotation
    assert report.ok and "3 agents" in report["api"].detail


def test_cli_exit_codes(user_module, capsys):
    assert main(["check-env", "my_envs:make_env", "env.n_agents=3", "--steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "walk: all 16 checks passed" in out and "environment checks: walk" in out
    assert main(["check-env", "my_envs:make_broken", "--steps", "12"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "1 check(s) failed (finite)" in out
    assert main(["check-env", "my_envs:make_raises"]) == 1
    assert "building the env raised RuntimeError: cannot build" in capsys.readouterr().out


@pytest.mark.parametrize("target,message", [
    ("lbf:10x10-3p-3g", "unknown environment 'lbf:10x10-3p-3g'. Did you mean 'lbf:10x10-3p-3f'?"),
    ("no_such_module_xyz:make", "neither a registered environment nor an importable module:function"),
    ("my_envs:make_envv", "module 'my_envs' has no function 'make_envv'. Did you mean 'make_env'?"),
    ("climbing", "unknown parameter 'nope'"),
])
def test_a_bad_name_exits_2_with_one_line(user_module, capsys, target, message):
    argv = ["check-env", target] + (["env.nope=1"] if target == "climbing" else [])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coopmarl: error: ") and message in lines[0], captured.err


def test_check_env_is_exported_lazily():
    assert coopmarl.check_env is check_env
    assert np.all([r.passed for r in check_env("penalty", steps=5).results if r.passed is not None])
