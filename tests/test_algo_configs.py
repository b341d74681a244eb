"""Per-algorithm configs: every registered algorithm has exactly the keys it reads (traced, not trusted),
every choice is a `Literal`, and a key the algorithm would ignore, a renamed key or another value of a
choice the algorithm fixes is refused with one clear error naming the valid keys — before anything compiles."""

import dataclasses
import typing

import jax
import pytest
import yaml

from coopmarl import cli
from coopmarl.algos.base import get_algo, list_algos
from coopmarl.algos.fields import fixed_choices
from coopmarl.config import RENAMED_KEYS, ConfigError, describe_config, resolve, upgrade_algo_config
from coopmarl.envs.registry import make
from coopmarl.envs.tabular import TabularGame
from coopmarl.runner import build_chunk

DISCRETE, CONTINUOUS = "climbing", "differential"  # tiny envs: nothing runs, shapes are only traced
PG = ("ia2c", "maa2c", "ippo", "ippo-kl", "mappo", "dpo", "dpo-no-sqrt", "dpo-no-kl", "vdac-sum", "vdac-mix")

# Keys an algorithm reads only under a switch (or on an env kind): (algorithms, key, the overrides that make
# it read the key, the env to trace on or None for the algorithm's usual one). Every other key must be read
# with the algorithm's defaults.
CONDITIONAL = [
    (PG, "init_log_std", {}, CONTINUOUS),  # the Gaussian policy's initial log σ: continuous actions only
    (tuple(a for a in PG if a != "mappo"), "value_clip_eps", {"clip_value": True}, None),  # MAPPO: on by default
    (("vdac-sum", "vdac-mix"), "advantage_norm", {"normalize_advantages": True}, None),  # VDAC: raw advantages
    (("maosdqn",), "target_update_episodes", {"target_tau": 0.0}, None),  # hard copies only without soft τ
    (("jal",), "max_temp", {"exploration": "boltzmann"}, None),
    (("jal",), "temp_decay", {"exploration": "boltzmann"}, None),
    (("dpo-exact",), "init_concentration", {"init": "random"}, None),  # the Dirichlet of a random π_0
]


def _env_for(algo) -> str:
    return DISCRETE if "discrete" in algo.requires else CONTINUOUS


def recording(config):
    """A copy of `config` (same class behaviour) that records the names of the keys read from it."""
    cls = type(config)
    keys = {f.name for f in dataclasses.fields(cls)}
    read: set[str] = set()

    def __getattribute__(self, name):
        if name in keys:
            read.add(name)
        return object.__getattribute__(self, name)

    sub = type(f"Recording{cls.__name__}", (cls,), {"__getattribute__": __getattribute__})
    copy = sub(**{k: getattr(config, k) for k in keys})
    read.clear()  # construction (validation) reads every key
    return copy, read


def keys_read(algo, env_name: str, overrides: dict | None = None) -> set[str]:
    """The keys read by init, act (exploring and greedy), update, the policy table, the run summary and
    the runner's use of the config, traced with `jax.eval_shape` (nothing is compiled or run)."""
    config = dataclasses.replace(algo.default_config(), **(overrides or {}))
    config, read = recording(config)
    env = make(env_name)
    model = env if isinstance(env, TabularGame) else None
    key = jax.random.PRNGKey(0)
    init, chunk = build_chunk(algo, env, config, iters=1)  # the runner: rollout_length, n_envs, act(explore)
    carry = jax.eval_shape(init, model, key)
    jax.eval_shape(chunk, model, carry)
    state = carry[0]
    _, ts = jax.eval_shape(env.reset, key)
    jax.eval_shape(lambda s, o, a, k: algo.policy_step(s, algo.init_carry(env.spec, config), o, a, k,
                                                       explore=False, config=config),
                   state, ts.obs, ts.avail_actions, key)
    if algo.policy is not None and model is not None:  # the policy table of a tabular game
        jax.eval_shape(lambda s: algo.policy(s, config), state)
    if algo.summary is not None:
        algo.summary(config, env)
    return read


@pytest.mark.parametrize("name", [a.name for a in list_algos()])
def test_every_key_is_read_by_its_algorithm(name):
    algo = get_algo(name)
    keys = {f.name for f in dataclasses.fields(algo.config_cls)}
    conditional = [(key, over, env) for algos, key, over, env in CONDITIONAL if name in algos]
    assert {key for key, _, _ in conditional} <= keys, "CONDITIONAL names a key the algorithm does not have"
    read = keys_read(algo, _env_for(algo))
    unread = keys - read - {key for key, _, _ in conditional}
    assert not unread, f"{name}: keys its algorithm never reads (drop them, or list their switch in CONDITIONAL)"
    for key, over, env in conditional:
        assert key in keys_read(algo, env or _env_for(algo), over), f"{name}: {key} unread even with {over}, {env}"


def test_the_trace_sees_an_unused_key():
    """The check above has teeth: a key no code reads is reported."""
    algo = get_algo("qmix")

    @dataclasses.dataclass(frozen=True)
    class WithUnused(algo.config_cls):
        unused_knob: float = 1.0

    read = keys_read(dataclasses.replace(algo, config_cls=WithUnused), DISCRETE)
    assert "unused_knob" not in read and {"lr", "mixing_embed", "double_q", "n_envs"} <= read


def _members(typ):
    return typing.get_args(typ) if typing.get_origin(typ) in (typing.Union, type(int | None)) else (typ,)


@pytest.mark.parametrize("name", [a.name for a in list_algos()])
def test_choices_are_literals(name):
    hints = typing.get_type_hints(get_algo(name).config_cls)
    for f in dataclasses.fields(get_algo(name).config_cls):
        for member in _members(hints[f.name]):
            assert member is not str and typing.get_args(member) != (str, ...), f"{name}.{f.name}: plain str"


@pytest.mark.parametrize("algo, override, other", [("qmix", "weight=0.9", "ow-qmix"),
                                                   ("ippo", "kl_target=0.5", "ippo-kl")])
def test_a_key_the_algorithm_ignores_is_refused_naming_the_valid_keys(algo, override, other, monkeypatch, capsys,
                                                                       tmp_path):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"unknown key '{key}' for algorithm '{algo}' \('{key}' is a key of "
                                          rf".*{other}.*\)\. .*Algorithm keys: .*max_grad_norm"):
        resolve(algo, DISCRETE, [override])
    import coopmarl.runner

    def never(*args, **kwargs):
        raise AssertionError("compiled / trained despite a bad key")

    monkeypatch.setattr(coopmarl.runner, "train", never)
    out = tmp_path / "run"
    assert cli.main(["train", algo, DISCRETE, override, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("coopmarl: error: unknown key") and "Algorithm keys" in err
    assert not out.exists()


@pytest.mark.parametrize("algo, old, value", [("qmix", "grad_clip", "1"), ("ippo", "hidden", "64"),
                                              ("maddpg", "hidden", "100"), ("maosdqn", "critic_hidden", "64"),
                                              ("rommeo-q", "lr_decay", "100")])
def test_renamed_keys_say_their_new_name(algo, old, value, capsys):
    env = CONTINUOUS if algo == "maddpg" else DISCRETE
    with pytest.raises(ConfigError, match=f"'{old}' is now called '{RENAMED_KEYS[old]}'"):
        resolve(algo, env, [f"{old}={value}"])
    assert cli.main(["train", algo, env, f"{old}={value}"]) == 2
    assert f"'{old}' is now called '{RENAMED_KEYS[old]}'" in capsys.readouterr().err


def test_one_vocabulary_across_families():
    for a in list_algos():
        keys = {f.name for f in dataclasses.fields(a.config_cls)}
        assert not keys & set(RENAMED_KEYS), a.name
    assert get_algo("qmix").default_config().hidden_sizes == (64,)
    assert get_algo("maddpg").default_config().hidden_sizes == (100, 100)
    assert get_algo("qmix").default_config().max_grad_norm == 10.0 == get_algo("ippo").default_config().max_grad_norm


def test_choices_that_define_the_algorithm_are_fixed():
    assert fixed_choices(get_algo("ippo").config_cls) == {"loss": "clip"}
    assert fixed_choices(get_algo("dpo-no-sqrt").config_cls) == {"loss": "dpo", "sqrt_kl_coef_init": 0.0}
    assert fixed_choices(get_algo("cw-qmix").config_cls) == {"mixer": "qmix", "weighting": "cw"}
    assert fixed_choices(get_algo("ddpg-om").config_cls) == {"critic_inputs": "opponent_model"}
    assert resolve("qmix", DISCRETE, ["mixer=qmix"]).config.mixer == "qmix"  # its own value: accepted, a no-op
    with pytest.raises(ConfigError, match=r"'loss' is fixed by algorithm 'ippo' \(loss='clip'\), not a key; "
                                          r"for loss=kl use ippo-kl"):
        resolve("ippo", DISCRETE, ["loss=kl"])
    with pytest.raises(ConfigError, match="'sqrt_kl_coef_init' is a key of dpo, dpo-no-kl"):
        resolve("dpo-no-sqrt", DISCRETE, ["sqrt_kl_coef_init=0.5"])


@pytest.mark.parametrize("algo, override, message", [
    ("dpo", "kl_target=nan", "kl_target must be a finite number"),
    ("ippo", "actor_lr=inf", "actor_lr must be a finite number"),
    ("maddpg", "noise_levels=0.5,nan,0.1,0.1", "noise_levels must be a finite number"),
    ("dpo-exact", "m_hat=-inf", "m_hat must be a finite number"),
    ("qmix", "gamma=1.5", r"gamma must be a finite number in \[0, 1\], got 1.5"),
    ("ippo", "n_epochs=0", "n_epochs must be an integer >= 1, got 0"),
    ("qmix", "hidden_sizes=64,64", "hidden_sizes must hold exactly 1 width"),
    ("ippo", "hidden_sizes=0", "hidden_sizes must be one or more positive layer widths"),
])
def test_bad_values_name_the_key(algo, override, message):
    env = CONTINUOUS if algo == "maddpg" else DISCRETE
    with pytest.raises(ConfigError, match=message):
        resolve(algo, env, [override])


@pytest.mark.parametrize("name", [a.name for a in list_algos()])
def test_describe_config_gives_every_key_a_type_default_and_source(name):
    cls = get_algo(name).config_cls
    infos = describe_config(cls)
    assert [k.name for k in infos] == [f.name for f in dataclasses.fields(cls)]
    defaults = dataclasses.asdict(cls())
    for k in infos:
        assert k.source.strip() and k.type, (name, k)
        assert k.default == defaults[k.name]


def test_describe_config_cites_the_class_that_sets_the_default():
    infos = {k.name: k for k in describe_config(get_algo("mappo").config_cls)}
    assert infos["hidden_sizes"].defined_in == "MAPPOConfig" and "mappo.yaml" in infos["hidden_sizes"].source
    assert infos["actor_lr"].defined_in == "PGConfig" and infos["actor_lr"].source == "DPO Table 2"
    assert infos["activation"].type == "'relu' | 'tanh'" and infos["hidden_sizes"].type == "tuple[int, ...]"
    assert {k.name: k for k in describe_config(get_algo("remix").config_cls)}["batch_size"].source == "ReMIX Table 2"


def test_cli_lists_one_algorithms_keys(capsys):
    assert cli.main(["list", "algos", "ippo"]) == 0
    out = capsys.readouterr().out
    for text in ("source of the default", "clip_eps", "DPO Table 2", "IPPOConfig", "loss='clip'"):
        assert text in out
    assert "kl_target" not in out
    assert cli.main(["list", "algos", "qmx"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Did you mean 'qmix'?" in err and "Valid algorithms" in err
    assert cli.main(["list", "algos"]) == 0 and "rommeo-q-emp" in capsys.readouterr().out


def test_an_older_runs_config_is_translated(tmp_path):
    """A run written when the families shared one config class (every key stored, old names) still resolves."""
    from coopmarl.outputs import resolve_run

    saved = resolve("qmix", DISCRETE, ["hidden_sizes=32", "max_grad_norm=5"]).as_dict()
    old = saved["algo_config"]
    old["grad_clip"], old["hidden"] = old.pop("max_grad_norm"), old.pop("hidden_sizes")[0]
    old.update(mixer="qmix", weighting="none", weight=0.1, central_embed=256, remix_gradient="lemma1")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    config = resolve_run(tmp_path).config
    assert (config.max_grad_norm, config.hidden_sizes, config.mixer) == (5.0, (32,), "qmix")
    up = upgrade_algo_config("maddpg", {"hidden": 64, "grad_clip": 0.0, "critic_inputs": "joint", "recent_size": 0})
    assert up == {"hidden_sizes": [64, 64], "max_grad_norm": 0.0}
    up = upgrade_algo_config("ippo", {"loss": "clip", "kl_target": 0.01, "clip_eps": 0.3, "sqrt_coef_rule": "paper"})
    assert up == {"clip_eps": 0.3}
    assert upgrade_algo_config("qmix", {"weighting": "ow"}) == {"weighting": "ow"}  # resolve names ow-qmix
