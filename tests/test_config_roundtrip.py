"""A run directory's config.yaml rebuilds exactly the run that wrote it: for every registered env (with
hypothesis-drawn valid parameters) and every algorithm, resolve -> write config.yaml -> rebuild gives the
same env spec, the same objective (horizon, discount) and the same algorithm and run configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coopmarl.algos.base import list_algos
from coopmarl.cli import main
from coopmarl.config import check_compatible, resolve
from coopmarl.envs.registry import env_entry, list_envs
from coopmarl.errors import ConfigError
from coopmarl.outputs import evaluate, resolve_run

# valid values for the parameters the envs share (anything not named keeps its default)
PARAMS = {
    "horizon": st.integers(1, 6),
    "discount": st.sampled_from([0.5, 0.9, 0.95, 1.0]),
    "k": st.sampled_from([-100.0, -50.0, -2.5, 0.0]),
    "variant": st.sampled_from(["paper", "code"]),
    "time_limit": st.integers(5, 60),
    "penalty": st.sampled_from([0.0, 0.1, 0.5]),
    "common_reward": st.booleans(),
    "max_steps": st.integers(5, 40),
    "continuous_actions": st.booleans(),
    "collision_penalty": st.sampled_from([0.0, 1.0]),
    "local_ratio": st.sampled_from([0.0, 0.5, 1.0]),
    "punishment": st.sampled_from([0.0, -0.5, -2.0]),
    "stag_reward": st.sampled_from([5.0, 10.0]),
    "seed": st.integers(0, 5),
    "force_coop": st.booleans(),
}
# parameters whose valid values depend on the env (env name prefix, parameter)
ENV_PARAMS = {
    ("foraging", "sight"): st.one_of(st.none(), st.integers(1, 3)),
    ("foraging", "max_food_level"): st.one_of(st.none(), st.just(2)),
    ("foraging", "grid_size"): st.integers(6, 9),
    ("predator-prey", "sight"): st.integers(1, 3),
    ("predator-prey", "n_agents"): st.integers(2, 8),
    ("predator-prey", "n_stags"): st.integers(1, 4),
    ("mpe:", "vision"): st.sampled_from([None, 0.5, 1.0]),
    ("mpe:spread", "n_agents"): st.integers(2, 4),
    ("mpe:line", "n_agents"): st.integers(3, 5),
    ("mpe:circle", "n_agents"): st.integers(3, 5),
}


def _strategy(env: str, param: str):
    for (prefix, name), strategy in ENV_PARAMS.items():
        if name == param and env.startswith(prefix):
            return strategy
    return PARAMS.get(param)


# envs whose defaults are heavy or need a name: small valid settings
FIXED = {
    "random-stochastic-game": {"n_states": 4, "n_agents": 2, "n_actions": 2},
    "tensor": {"n_agents": 3, "n_actions": 2},
    "mabrax": {"episode_length": 20},
}
PREFIX_ARGS = {"lbf": "5x5-2p-1f-coop", "smax": "3m", "mabrax": "hopper_3x1", "pettingzoo": "mpe2.simple_spread_v3"}
HEAVY = {"smax", "mabrax", "pettingzoo"}  # seconds to build: fewer examples


@pytest.fixture(scope="module")
def game_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("game") / "g.npz"
    rng = np.random.default_rng(0)
    transition = rng.dirichlet(np.ones(2), size=(2, 2, 2))
    np.savez(path, reward=rng.normal(size=(2, 2, 2)), transition=transition, horizon=np.array(4))
    return str(path)


def _env_name(entry, game_file) -> str:
    if not entry.prefix:
        return entry.name
    return f"tabular:{game_file}" if entry.name == "tabular" else f"{entry.name}:{PREFIX_ARGS[entry.name]}"


def _compatible(env_name: str, tags, spec) -> list[str]:
    names = []
    for algo in list_algos():
        try:
            check_compatible(algo, env_name, tags, spec)
        except ConfigError:
            continue
        if "host" in tags and not algo.uses_env:
            continue
        names.append(algo.name)
    return names


def _round_trip(tmp_path, algo: str, env_name: str, env_values: dict):
    overrides = {f"env.{k}": v for k, v in env_values.items()}
    first = resolve(algo, env_name, overrides, n_seeds=2, seed=3)
    written = first.as_dict()["env"]
    entry = env_entry(env_name)
    missing = [p.name for p in entry.params if p.name not in written]
    assert not missing, f"{env_name}: accepted parameters not written to config.yaml: {missing}"
    for k, v in env_values.items():  # the values given, as resolved
        assert written[k] == v, f"{env_name}: env.{k}={v!r} was written as {written[k]!r}"
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(first.as_dict(), sort_keys=False))
    again = resolve_run(run_dir)
    assert again.algo.name == first.algo.name and again.env_name == first.env_name
    assert again.env.spec == first.env.spec
    for attr in ("horizon", "discount"):  # the objective of a tabular game
        assert getattr(again.env, attr, None) == getattr(first.env, attr, None)
    assert again.config == first.config and type(again.config) is type(first.config)
    assert again.run == first.run
    assert again.as_dict() == first.as_dict()


@pytest.mark.parametrize("entry", list_envs(), ids=lambda e: e.name)
def test_config_yaml_rebuilds_the_same_run_for_every_env(entry, game_file, tmp_path):
    name = _env_name(entry, game_file)
    if entry.name in HEAVY:
        pytest.importorskip("jaxmarl" if entry.name in ("smax", "mabrax") else "mpe2")
    drawable = {p.name: _strategy(entry.name, p.name) for p in entry.params
                if _strategy(entry.name, p.name) is not None}
    fixed = FIXED.get(entry.name, {})

    @settings(max_examples=2 if entry.name in HEAVY else 6, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(values=st.fixed_dictionaries(drawable), pick=st.integers(0, 10_000))
    def check(values, pick):
        env_values = {**fixed, **values}
        probe = resolve(_first_compatible(name, entry), name, {f"env.{k}": v for k, v in env_values.items()})
        algos = _compatible(name, entry.tags, probe.env.spec)
        assert algos, f"no algorithm runs on {name}"
        _round_trip(tmp_path, algos[pick % len(algos)], name, env_values)

    check()


def _first_compatible(name, entry) -> str:
    """An algorithm that runs on the env, to build it (IPPO takes discrete and continuous actions)."""
    return "tabular-iql" if "tabular" in entry.tags else "ippo"


@pytest.mark.parametrize("algo", [a.name for a in list_algos()])
def test_config_yaml_rebuilds_the_same_config_for_every_algorithm(algo, tmp_path):
    a = next(x for x in list_algos() if x.name == algo)
    env = "climbing" if "tabular" in a.requires else ("differential" if "discrete" not in a.requires else "mpe:spread")
    _round_trip(tmp_path, algo, env, {})


def test_a_user_game_keeps_its_discount_through_eval(game_file, tmp_path):
    """The acceptance of the issue: train on tabular:G.npz with env.discount=0.95, then `coopmarl eval`
    reports the summary's optimal_return and eval_return (exact evaluation)."""
    out = tmp_path / "run"
    assert main(["train", "tabular-iql", f"tabular:{game_file}", "env.discount=0.95", "total_steps=60",
                 "log_points=2", "--seeds", "2", "--quiet", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())["env"]
    assert saved["discount"] == 0.95 and saved["horizon"] == 4 and len(saved["sha256"]) == 64
    summary = json.loads((out / "summary.json").read_text())["metrics"]
    report = evaluate(out, write=False)["metrics"]
    for metric in ("optimal_return", "eval_return", "regret"):
        np.testing.assert_allclose(report[metric]["per_seed"], summary[metric]["per_seed"], rtol=1e-6)
    undiscounted = resolve("tabular-iql", f"tabular:{game_file}").env
    assert undiscounted.discount == 1.0  # the file's own objective, which eval must not fall back to


def test_a_changed_game_file_is_refused_when_the_run_is_rebuilt(game_file, tmp_path):
    import shutil

    path = tmp_path / "g.npz"
    shutil.copy(game_file, path)
    first = resolve("tabular-iql", f"tabular:{path}")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(first.as_dict(), sort_keys=False))
    with np.load(path) as data:
        arrays = dict(data)
    arrays["reward"] = arrays["reward"] + 1.0
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match="game file .* changed since the run"):
        resolve_run(run_dir)
