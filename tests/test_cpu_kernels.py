"""The CPU fast paths hold what they promise: `nets.dense.Dense` is flax's `nn.Dense` (parameters, values, gradients up
to float rounding), `fast_random.categorical` is `jax.random.categorical` bit for bit, `fast_random.permutation`
draws uniform permutations; and `benchmarks/cpu_kernels.py` prints its three tables."""

from __future__ import annotations

import importlib.util
import itertools
import math
import pathlib
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

from coopmarl.envs.fast_random import categorical, permutation
from coopmarl.nets.dense import Dense, dense_product
from coopmarl.nets.mixers import QMixer
from coopmarl.nets.policy import Actor, AgentNets

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_kernels.py"


class _Pair(nn.Module):
    """Two stacked layers, narrowing then widening, built from `layer`."""

    layer: type

    @nn.compact
    def __call__(self, x):
        return self.layer(4)(jnp.tanh(self.layer(7)(x)))


@pytest.mark.parametrize("lead", [(), (9,), (3, 5)])
def test_dense_is_flax_dense_in_params_values_and_gradients(lead):
    x = jax.random.normal(jax.random.PRNGKey(0), lead + (12,))
    ours, flax_ = _Pair(Dense), _Pair(nn.Dense)
    params = ours.init(jax.random.PRNGKey(1), x)
    assert jax.tree.structure(params) == jax.tree.structure(flax_.init(jax.random.PRNGKey(1), x))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params,
                                     flax_.init(jax.random.PRNGKey(1), x)))  # the same initial values

    def loss(module):
        return lambda p, xx: jnp.sum(jnp.sin(module.apply(p, xx)) ** 2)

    np.testing.assert_allclose(ours.apply(params, x), flax_.apply(params, x), rtol=1e-5, atol=1e-6)
    g_ours = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    g_flax = jax.grad(loss(flax_), argnums=(0, 1))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g_ours, g_flax)


def test_dense_product_under_vmap_and_second_order():
    """Per-row (the mixers' vmap over rows) and per-agent (stacked parameters) use, and a gradient of a gradient."""
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x, w = jax.random.normal(k[0], (6, 10)), jax.random.normal(k[1], (10, 3))
    plain = lambda xx, ww: jnp.sum(jnp.tanh(xx @ ww))  # noqa: E731
    ours = lambda xx, ww: jnp.sum(jnp.tanh(dense_product(xx, ww)))  # noqa: E731
    for f in (jax.grad, lambda g: jax.grad(lambda a, b: jnp.sum(jax.grad(g, 1)(a, b) ** 2), 1)):
        np.testing.assert_allclose(f(ours)(x, w), f(plain)(x, w), rtol=1e-5, atol=1e-6)
    rows = jax.grad(lambda ww: jnp.sum(jax.vmap(lambda r: jnp.tanh(dense_product(r, ww)))(x)))(w)
    np.testing.assert_allclose(rows, jax.grad(plain, 1)(x, w), rtol=1e-5, atol=1e-6)
    ws = jax.random.normal(k[2], (4, 10, 3))  # four agents' own weights, each on the same rows
    per_agent = jax.grad(lambda p: jnp.sum(jax.vmap(lambda ww: jnp.tanh(dense_product(x, ww)))(p)))(ws)
    np.testing.assert_allclose(per_agent, jax.vmap(lambda ww: jax.grad(plain, 1)(x, ww))(ws), rtol=1e-5, atol=1e-6)


def test_library_networks_keep_their_parameter_names():
    """Checkpoints and the authors' layouts address layers by flax's names: Dense_0, Dense_1, ..."""
    actor = AgentNets(Actor(5, False, (64, 64), "tanh", 0.0, False), 3, True).init(jax.random.PRNGKey(0), 21)
    assert sorted(actor["params"]["MLP_0"]) == ["Dense_0", "Dense_1", "Dense_2"]
    mixer = QMixer(3, 32, 64).init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(18))
    assert sorted(mixer["params"]) == ["hyper_b1", "hyper_w1", "hyper_w2", "value"]
    assert sorted(mixer["params"]["hyper_w1"]) == ["layers_0", "layers_2"]


@pytest.mark.parametrize("shape,axis", [((5,), -1), ((3, 5), -1), ((4, 3, 9), -1), ((6, 4), 0)])
def test_categorical_is_jax_random_categorical_bit_for_bit(shape, axis):
    keys = jax.random.split(jax.random.PRNGKey(3), 512)
    logits = jax.random.normal(jax.random.PRNGKey(1), shape) * 3.0
    masked = jax.random.uniform(jax.random.PRNGKey(2), shape) < 0.3
    for lg in (logits, jnp.where(masked, -jnp.inf, logits), jnp.where(masked, -1e9, logits)):
        lg = lg.at[(0,) * len(shape)].set(0.0)  # at least one finite logit along every axis position 0
        ours = jax.jit(jax.vmap(lambda k: categorical(k, lg, axis=axis)))(keys)
        theirs = jax.jit(jax.vmap(lambda k: jax.random.categorical(k, lg, axis=axis)))(keys)
        np.testing.assert_array_equal(ours, theirs)
    # a typed key takes jax.random's own path
    typed = jax.random.key(0)
    np.testing.assert_array_equal(categorical(typed, logits, axis), jax.random.categorical(typed, logits, axis))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 2048, 3001])
def test_permutation_is_a_permutation(n):
    p = np.asarray(jax.jit(lambda k: permutation(k, n))(jax.random.PRNGKey(n)))
    assert p.dtype == np.int32
    np.testing.assert_array_equal(np.sort(p), np.arange(n))
    np.testing.assert_array_equal(p, np.asarray(permutation(jax.random.PRNGKey(n), n)))  # deterministic


def test_permutation_is_uniform():
    """All 5! permutations are drawn, equally often (χ² over 12,000 draws), and every element lands in every
    position equally often."""
    draws = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 5)))(jax.random.split(jax.random.PRNGKey(0),
                                                                                          12_000)))
    index = {p: i for i, p in enumerate(itertools.permutations(range(5)))}
    counts = np.bincount([index[tuple(d)] for d in draws], minlength=math.factorial(5))
    assert counts.min() > 0
    assert chisquare(counts).pvalue > 1e-3
    positions = np.stack([np.bincount(draws[:, i], minlength=5) for i in range(5)])
    assert chisquare(positions.ravel()).pvalue > 1e-3


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("cpu_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_cpu_kernels_benchmark_prints_three_tables(bench, capsys):
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    number = r"[\d,]+\.\d"
    assert re.search(rf"^\| 256 \| 64 \| 5 \| {number} \| {number} \| \d+\.\d\d \|$", out, re.M), out
    assert re.search(rf"^\| 4 \| 3 \| 5 \| {number} \| {number} \| \d+\.\d\d \|$", out, re.M), out
    assert re.search(rf"^\| 512 \| {number} \| {number} \| \d+\.\d\d \|$", out, re.M), out
