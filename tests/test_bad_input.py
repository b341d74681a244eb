"""Every bad input is one clear error before anything is compiled or written (issue 11).

A user's input reaches the library through three doors: `key=value` overrides (algorithm keys, run keys,
`env.<param>`), a game file (`tabular:PATH`) and an environment's parameters. For each, a property test throws
arbitrary input at the door and asserts that it either works or raises one of the library's own errors
(`ConfigError`, `ParamError`, `GameValidationError`) — never a TypeError, an OverflowError or a silently
broken env. The command-line test then checks that such an error is one line, `coopmarl: error: ...`, exit
status 2, with nothing written.

The properties run few examples (`max_examples` small, derandomised) and compile as little as they can: an
accepted env is reset and stepped only for the first accepted configuration of each env class.
"""

from __future__ import annotations

import collections
import io
import math
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from coopmarl import cli
from coopmarl.algos.base import get_algo, list_algos
from coopmarl.algos.fields import field_types
from coopmarl.config import parse_overrides, resolve, upgrade_algo_config
from coopmarl.envs.registry import list_envs, make
from coopmarl.envs.tabular import TabularGame, load_game
from coopmarl.errors import ConfigError, GameValidationError, ParamError
from coopmarl.ranges import FLOAT32_MAX
from coopmarl.runner import RunConfig

FEW = settings(max_examples=25, deadline=None, derandomize=True)
ENV_ERRORS = (ParamError, ConfigError, GameValidationError)

# values a user might type: ordinary ones, and the edges of every range
SPECIAL_NUMBERS = ("0", "-0", "1", "-1", "0.5", "1.5", "2.5", "-1e-300", "1e38", "1e39", "-1e39", "1e400", "nan",
                   "-inf", "inf", "2147483647", "2147483648", "-2147483649", "1e12", "999999999999999999999")
SPECIAL_TEXT = ("", " ", "true", "None", "null", "(", ")", "1,2", "1,,2", "[3]", "(64,64)", "game", "=", "é", "\x00")


def _plain_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# ---- algorithm keys -----------------------------------------------------------------------------------------


def _env_for(algo) -> str:
    return "climbing" if "discrete" in algo.requires else "differential"


@pytest.mark.parametrize("algo, overrides, message", [
    ("qmix", ["max_grad_norm=-1"], "max_grad_norm must be a finite number >= 0, got -1.0"),
    ("maddpg", ["max_grad_norm=-1"], "max_grad_norm must be a finite number >= 0, got -1.0"),
    ("qmix", ["lr=-1"], "lr must be a finite number > 0, got -1.0"),
    ("qmix", ["lr=1e39"], "lr must be a finite number within float32's range"),
    ("qmix", ["n_envs=2147483648"], "n_envs must be an integer in int32's range"),
    ("qmix", ["hidden_sizes=1e12"], "hidden_sizes must be an integer in int32's range"),
    ("qmix", ["n_envs=16", "buffer_size=8", "batch_size=8"], r"n_envs \(16\) cannot exceed buffer_size \(8\)"),
    ("maddpg", ["n_envs=4", "buffer_size=2", "batch_size=2"], r"n_envs \(4\) cannot exceed buffer_size \(2\)"),
    ("remix", ["recent_batch_size=100"], r"recent_batch_size \(100\) cannot exceed recent_buffer_size \(64\)"),
    ("remix", ["n_envs=100", "recent_buffer_size=64"], r"recent_buffer_size \(64\) must be 0 \(none\) or >= n_envs"),
    ("rommeo-ac", ["n_envs=8", "recent_size=4"], r"recent_size \(4\) must be 0 \(= batch_size\) or >= n_envs"),
    ("ddpg-om", ["learning_starts=-1"], r"learning_starts must be an integer in \[0, 100000\] \(buffer_size\)"),
    ("masql", ["alpha_delay=-1"], "alpha_delay must be an integer >= 0, got -1"),
    ("maddpg", ["noise_boundaries=-5,1,2"], "noise_boundaries must be increasing integers >= 0"),
    ("ippo", ["init_log_std=100"], r"init_log_std must be a finite number in \[-40, 40\]"),
    ("dpo", ["adapt_delta=1"], "adapt_delta must be a finite number > 1, got 1.0"),
    ("dpo", ["coef_min=10", "coef_max=1"], r"coef_max must be a finite number >= coef_min \(10.0\), got 1.0"),
    ("fmq", ["c=-1"], "c must be a finite number >= 0, got -1.0"),
    ("dpo-exact", ["n_grid=2"], "n_grid must be an integer >= 3, got 2"),
    ("dpo-exact", ["grid_lo=5", "grid_hi=5"], r"grid_hi must be a finite number > grid_lo \(5.0\), got 5.0"),
    ("wolf-phc", ["delta_win=0"], "delta_win must be a finite number > 0, got 0.0"),
])
def test_out_of_range_keys_name_the_key_and_its_range(algo, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(algo, _env_for(get_algo(algo)), overrides)


def test_an_older_runs_negative_max_grad_norm_still_means_no_clipping():
    """A negative max_grad_norm used to mean no clipping; it is refused now, so an older run's becomes 0."""
    upgraded = upgrade_algo_config("qmix", {"grad_clip": -1.0, "lr": 0.1})
    assert upgraded == {"max_grad_norm": 0.0, "lr": 0.1}
    assert resolve("qmix", "climbing", upgraded).config.max_grad_norm == 0.0


def _numeric_keys(cls) -> dict[str, type]:
    """{key: int or float} of a config class's numeric keys (also tuples of them, and `X | None`)."""
    out = {}
    for name, typ in field_types(cls).items():
        args = typing.get_args(typ) or (typ,)
        for kind in (int, float):
            if kind in args or (typing.get_origin(typ) is tuple and args[0] is kind):
                out[name] = kind
                break
    return out


def _number_text(kind):
    values = st.integers(-5, 70) if kind is int else st.floats(-10.0, 10.0)
    return st.one_of(values.map(_plain_value), st.sampled_from(SPECIAL_NUMBERS))


@pytest.mark.parametrize("name", [a.name for a in list_algos()])
@settings(max_examples=12, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_value_of_any_numeric_key_builds_or_is_refused_naming_the_key(name, data):
    algo = get_algo(name)
    keys = _numeric_keys(algo.config_cls)
    key = data.draw(st.sampled_from(sorted(keys)), label="key")
    text = data.draw(st.one_of(_number_text(keys[key]),
                               st.lists(_number_text(keys[key]), min_size=1, max_size=4).map(",".join)), label="value")
    try:
        resolved = resolve(name, _env_for(algo), {key: text})
    except ConfigError as e:
        event("refused")
        assert key in str(e), str(e)
    else:
        event("accepted")
        for v in np.ravel(getattr(resolved.config, key)):
            assert v is None or (math.isfinite(v) and abs(v) <= FLOAT32_MAX), (key, v)


# ---- the override parser ------------------------------------------------------------------------------------

ALGO = "qmix"
KEYS = sorted(field_types(get_algo(ALGO).config_cls)) + sorted(field_types(RunConfig)) + [
    f"env.{p.name}" for p in next(e for e in list_envs() if e.name == "foraging").params] + [
    "algo.lr", "env.nope", "mixer", "loss", "grad_clip", "+lr", " lr ", "env.", "algo."]
VALUES = st.one_of(st.sampled_from(SPECIAL_NUMBERS + SPECIAL_TEXT), st.text(max_size=6),
                   st.integers(-10, 100).map(str), st.floats(allow_nan=True).map(repr))
# mostly known keys (to get past the parser and reach each key's checks), sometimes any text
ITEMS = st.one_of(st.lists(st.builds("{}={}".format, st.sampled_from(KEYS), VALUES), max_size=3),
                  st.lists(st.one_of(st.builds("{}={}".format, st.text(max_size=6), VALUES), st.text(max_size=8)),
                           max_size=3))


@FEW
@given(items=st.lists(st.text(max_size=10), max_size=5))
def test_parse_overrides_returns_a_dict_or_a_config_error(items):
    try:
        parsed = parse_overrides(items)
    except ConfigError:
        return
    assert len(parsed) == len(items)
    for item in items:
        key, value = item.split("=", 1)
        assert parsed[key.strip().lstrip("+")] == value.strip()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(items=ITEMS)
def test_any_overrides_resolve_or_raise_one_config_error(items):
    try:
        resolved = resolve(ALGO, "foraging", items)
    except ConfigError as e:
        event("refused")
        assert str(e)
    else:
        event("accepted")
        assert resolved.config.lr > 0 and resolved.env.spec.n_agents >= 1


# ---- game files ---------------------------------------------------------------------------------------------

DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.uint8, np.bool_, np.complex64, "U2"])


@st.composite
def game_files(draw) -> bytes:
    """An .npz's bytes: a game (sometimes a valid one), with arrays of any shape and dtype, and maybe cut short."""
    n_states, n_agents, n_actions = draw(st.integers(0, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 3))
    shape = (n_states,) + (n_actions,) * n_agents
    if draw(st.booleans()):
        shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3))
    members = {"reward": draw(arrays(draw(DTYPES), shape))}
    transition = draw(st.sampled_from(["none", "valid", "random"]))
    if transition == "valid" and n_states > 0:
        weights = draw(arrays(np.float64, shape + (n_states,), elements=st.floats(0.01, 1.0)))
        members["transition"] = weights / weights.sum(-1, keepdims=True)
    elif transition == "random":
        members["transition"] = draw(arrays(draw(DTYPES), draw(array_shapes(min_dims=0, max_dims=5, max_side=3))))
    if draw(st.booleans()):
        members["initial"] = draw(arrays(draw(DTYPES), draw(array_shapes(min_dims=0, max_dims=2, max_side=3))))
    for key in ("horizon", "discount"):
        if draw(st.booleans()):
            members[key] = draw(st.one_of(st.integers(-2, 5), st.floats(allow_nan=True), st.sampled_from(
                [2.5, 10**12, "3", np.array([2, 3]), np.float32(0.9), True])))
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    content = buffer.getvalue()
    if draw(st.booleans()):
        content = content[:draw(st.integers(0, len(content)))]
    return content


@settings(max_examples=60, deadline=None, derandomize=True)
@given(content=game_files())
def test_a_game_file_loads_as_a_valid_game_or_raises_one_game_validation_error(content, tmp_path_factory):
    path = tmp_path_factory.mktemp("games") / "game.npz"
    path.write_bytes(content)
    try:
        game = load_game(str(path))
    except GameValidationError as e:
        event("refused")
        assert str(e).startswith(str(path)), str(e)
        return
    event("accepted")
    assert isinstance(game, TabularGame) and 1 <= game.horizon and 0.0 <= game.discount <= 1.0
    reward, transition = np.asarray(game.reward_flat), np.asarray(game.transition_flat)
    assert reward.dtype == np.float32 and np.isfinite(reward).all()
    np.testing.assert_allclose(transition.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(game.initial).sum(), 1.0, rtol=1e-5)


# ---- environment parameters ---------------------------------------------------------------------------------

NAMED_ENVS = [e for e in list_envs() if not e.prefix]
# parameters every example of an env starts from: the default random game has 156M transition entries
SMALL = {"random-stochastic-game": dict(n_states=3, n_agents=2, n_actions=2)}
_stepped = collections.Counter()  # env class -> configurations reset and stepped so far (each compiles)
STEPPED_PER_CLASS = 1


def _param_value(typ):
    """A strategy for a value of an env parameter of type `typ` (small values and the edges of every range)."""
    args = typing.get_args(typ)
    none = [st.none()] if type(None) in args else []
    if int in (typ, *args) and bool not in (typ, *args):
        return st.one_of(st.integers(-1, 7), st.sampled_from([2**31, -(2**31) - 1, 10**12]), *none)
    if float in (typ, *args):
        return st.one_of(st.floats(-20.0, 20.0), st.sampled_from(
            [math.nan, math.inf, -math.inf, 1e39, -1e39, 3e38, -3e38, 1e-45]), *none)
    if typing.get_origin(typ) is tuple or tuple in (typing.get_origin(a) for a in args):
        return st.one_of(st.lists(_param_value(float), max_size=5).map(tuple), *none)
    return None  # bools, choices and strings: their type checks are the registry's (tests/test_config.py)


def _finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x, np.float64)).all() for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", [e.name for e in NAMED_ENVS])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_env_parameters_build_a_working_env_or_raise_a_param_error(name, data):
    entry = next(e for e in NAMED_ENVS if e.name == name)
    strategies = {p.name: s for p in entry.params if (s := _param_value(p.type)) is not None}
    chosen = data.draw(st.lists(st.sampled_from(sorted(strategies)), unique=True, max_size=3), label="params") \
        if strategies else []
    params = {k: data.draw(strategies[k], label=k) for k in chosen}
    try:
        env = make(name, **{**SMALL.get(name, {}), **params})
    except ENV_ERRORS as e:
        event("refused")
        assert any(k in str(e) for k in params), str(e)  # the error names a parameter it was given
        return
    event("accepted")
    spec = env.spec
    assert spec.n_agents >= 1 and spec.obs_dim >= 1 and 1 <= spec.horizon <= 2**31 - 1
    kind = type(env).__name__
    if _stepped[kind] >= STEPPED_PER_CLASS:
        return
    _stepped[kind] += 1
    key = jax.random.PRNGKey(0)
    state, ts = jax.jit(env.reset)(key)
    if spec.discrete:
        actions = jnp.argmax(ts.avail_actions, -1).astype(jnp.int32)  # the first available action
    else:
        actions = jnp.full((spec.n_agents, spec.action_dim), spec.high, jnp.float32)
    state, next_ts = jax.jit(env.step)(key, state, actions)
    for t in (ts, next_ts):
        assert _finite((t.obs, t.global_state, t.reward)), (name, params)


# ---- the command line: one line, exit status 2, nothing written ---------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_games")
    np.savez(d / "overflow.npz", reward=np.array([[[1e39, 0.0], [0.0, 1.0]]]))
    np.savez(d / "horizon_2_5.npz", reward=np.zeros((1, 2, 2)), horizon=2.5)
    np.savez(d / "horizon_vector.npz", reward=np.zeros((1, 2, 2)), horizon=np.array([2, 3]))
    np.savez(d / "good.npz", reward=np.zeros((1, 2, 2)), horizon=3)
    content = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(content[:len(content) // 2])
    np.save(d / "single.npy", np.zeros((1, 2, 2)))
    (d / "text.txt").write_text("reward = [[1, 2], [3, 4]]\n")
    (d / "a_directory").mkdir()
    return d


GAME_FILE_ERRORS = [
    ("overflow.npz", "reward[0, 0, 0] = 1e+39 is beyond float32's range"),
    ("horizon_2_5.npz", "'horizon' must be a whole number, got 2.5"),
    ("horizon_vector.npz", "'horizon' must be one number, got an array of dtype int64 and shape (2,)"),
    ("truncated.npz", "cannot read it as an .npz of arrays"),
    ("single.npy", "expected an .npz (several named arrays), got a single .npy array"),
    ("text.txt", "not an .npz file"),
    ("a_directory", "is not a file"),
]
TRAIN_ERRORS = [
    (["qmix", "lbf:5x5-2p-1f-coop", "max_grad_norm=-1"], "max_grad_norm must be a finite number >= 0, got -1.0"),
    (["qmix", "climbing", "n_envs=16", "buffer_size=8", "batch_size=8"], "n_envs (16) cannot exceed buffer_size (8)"),
    (["qmix", "foraging", "env.grid_size=5", "env.n_foods=20"], "n_foods=20 foods cannot fit on a 5x5 grid"),
    (["qmix", "foraging", "env.grid_size=3", "env.n_agents=9"], "n_agents=9 agents do not leave room for food"),
    (["qmix", "predator-prey", "env.grid_size=3", "env.n_agents=5", "env.n_stags=5"],
     "5 agents + 5 stags + 0 hares do not fit on a 3x3 grid"),
    (["qmix", "predator-prey", "env.stag_reward=1e39"], "parameter 'stag_reward' must be a finite number within float32"),
    (["qmix", "lbf:5x5-2p-1f-coop", "env.penalty=3e38"], "too large: an episode's team return can reach"),
    (["tabular-iql", "penalty", "env.k=1e39"], "parameter 'k' must be a finite number within float32's range"),
    (["tabular-iql", "climbing", "env.horizon=100000000"], "horizon=100000000 is too long for this game"),
]
SOLVE_ERRORS = [
    (["climbing", "--infinite"], "--infinite solves the infinite-horizon discounted objective, which needs a discount < 1"),
    (["penalty", "k=1e39"], "parameter 'k' must be a finite number within float32's range"),
    (["tensor", "n_agents=0"], "tensor: n_agents must be an integer >= 1, got 0"),
    (["climbing", "--max-states", "0"], "--max-states must be an integer >= 1, got 0"),
]


def _one_error_line(capsys, argv) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coopmarl: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("argv, message", TRAIN_ERRORS)
def test_train_with_a_bad_input_prints_one_error_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert message in _one_error_line(capsys, ["train", *argv, "--out", str(out), "--quiet"])
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("file, message", GAME_FILE_ERRORS)
@pytest.mark.parametrize("command", ["train", "solve"])
def test_a_bad_game_file_is_one_error_for_train_and_solve(command, file, message, bad_files, tmp_path, capsys):
    game = f"tabular:{bad_files / file}"
    out = tmp_path / "run"
    argv = ["train", "rommeo-q", game, "--out", str(out), "--quiet"] if command == "train" else ["solve", game]
    assert message in _one_error_line(capsys, argv)
    assert not out.exists()


@pytest.mark.parametrize("argv, message", SOLVE_ERRORS)
def test_solve_with_a_bad_input_prints_one_error(argv, message, capsys):
    assert message in _one_error_line(capsys, ["solve", *argv])


def test_the_good_game_file_solves(bad_files, capsys):
    """The fixture's files differ from a good one only where the error says (a test of the test)."""
    assert cli.main(["solve", f"tabular:{bad_files / 'good.npz'}"]) == 0
    assert "optimal return: 0" in capsys.readouterr().out
