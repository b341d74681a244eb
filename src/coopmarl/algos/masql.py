"""MASQL — multi-agent soft Q-learning with amortised SVGD samplers (Wei et al. 2018, after Haarnoja et al.
2017's SQL; a baseline of ROMMEO §5.2).

Agent i keeps a joint-action soft Q-function Q^i(s, aⁱ, a⁻ⁱ) (its observation o_i stands for s) and a
sampler network aⁱ = f^i(o_i, ξ), ξ ~ N(0, I), whose outputs are trained to be distributed as the
Boltzmann policy π^i(aⁱ|s) ∝ exp(Q^i(s, aⁱ, a⁻ⁱ)/α) with the other agents' actions drawn from their samplers.

    soft value   V^i(s′) = α log E_{a′ ~ U}[exp(Q̄^i(s′, a′)/α) / U(a′)]
                 ≈ α (logsumexp_m Q̄^i(s′, a′_m)/α − log M + N·D·log 2),  M uniform joint actions on [−1, 1]^{N·D}
                 (SQL eq. 10 with a uniform proposal; `value_particles` M = 16)
    critic       ½ (Q^i(s, a) − r − γ (1 − term) V^i(s′))²                               (SQL eq. 11)
    sampler      amortised SVGD (SQL eq. 13): K = `kernel_particles` samples a_k = f(o, ξ_k) per state move
                 along Δa_j = (1/K) Σ_k [κ(a_k, a_j) ∇_{a_k} Q^i(s, a_k, â⁻ⁱ_k)/α + ∇_{a_k} κ(a_k, a_j)],
                 RBF kernel κ with bandwidth h = mean‖a_k − a_j‖²/log(K + 1) (SVGD's heuristic with the
                 mean for the median: on a CPU the median's sort cost as much as the rest of the update);
                 the surrogate −Σ_j sg(Δa_j)·f(o, ξ_j) has gradient −Σ_j Δa_j ∂f/∂θ, SQL's update.

Settings (REFERENCE.md, the authors' MASQL): Adam lr 3e-4, γ 0.99, 16 value particles, 32 kernel particles;
α annealed with ROMMEO-AC's schedule (the authors' code passes the same annealing to MASQL). The sampler is
updated on the first `sampler_batch` (32) states of each batch (0 = all, as SQL) — each state costs K critic
gradients, and this keeps a step about 4x a ROMMEO-AC step on a CPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, register_algo
from coopmarl.algos.offpolicy_continuous import AnnealedEntropyConfig, check_spec, entropy_weight, split_batch, td_target
from coopmarl.nets.continuous import MLP, ValueMLP, from_unit, per_agent, to_unit


@dataclass(frozen=True)
class MASQLConfig(AnnealedEntropyConfig):
    """α_t: ROMMEO-AC's schedule (the authors' code gives it to MASQL too)."""

    lr: float = 3e-4  # REFERENCE.md (the authors' MASQL)
    gamma: float = 0.99  # REFERENCE.md (the authors' MASQL)
    value_particles: int = 16  # M, uniform joint actions for the soft value (REFERENCE.md, the authors' MASQL)
    kernel_particles: int = 32  # K, sampler particles per state for SVGD (REFERENCE.md, the authors' MASQL)
    sampler_batch: int = 32  # states of each batch the sampler is updated on (0 or > batch: the whole batch); ours

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "value_particles")
        fields.at_least(self, 2, "kernel_particles")
        fields.at_least(self, 0, "sampler_batch")  # 0 = the whole batch


def _nets(spec, config):
    h = config.hidden_sizes
    return {"sampler": per_agent(MLP(h, spec.action_dim, out_scale=0.01), spec.n_agents),
            "q": per_agent(ValueMLP(h), spec.n_agents)}


def init(key, spec, config: MASQLConfig, model=None):
    check_spec(spec, "MASQL", min_agents=1)
    n, d = spec.n_agents, spec.action_dim
    nets, (k_s, k_q) = _nets(spec, config), jax.random.split(key)
    params = {"sampler": nets["sampler"].init(k_s, spec.obs_dim + d), "q": nets["q"].init(k_q, spec.obs_dim + n * d)}
    return op.init_state(params, spec, config, ())


def sample_unit(spec, config, params, obs, noise):
    """aⁱ = f^i(o_i, ξ) on [−1, 1]^D for every agent: obs [..., N, obs_dim], noise [..., N, D]."""
    return jnp.tanh(_nets(spec, config)["sampler"].apply(params, jnp.concatenate([obs, noise], -1)))


def q_unit(spec, config, params, obs, joint):
    """Q^i(o_i, a) with the joint action a [..., N·D] on [−1, 1] seen by every agent: [..., N]."""
    joint = jnp.broadcast_to(joint[..., None, :], obs.shape[:-1] + joint.shape[-1:])
    return _nets(spec, config)["q"].apply(params, jnp.concatenate([obs, joint], -1))


def act(state, obs, avail_actions, key, *, explore, config):
    """Decentralised: agent n samples f^n(o_n, ξ); greedy: ξ = 0."""
    spec = state.spec
    noise = jax.random.normal(key, (spec.n_agents, spec.action_dim)) if explore else jnp.zeros(
        (spec.n_agents, spec.action_dim))
    return from_unit(sample_unit(spec, config, state.params["sampler"], obs, noise), spec.low, spec.high)


def rbf_kernel(x, y):
    """κ(x_k, y_j) = exp(−‖x_k − y_j‖²/h), h = mean(‖x − y‖²)/log(K + 1) (SVGD's heuristic, mean for median),
    and its gradient in x_k: x [K, D], y [J, D] -> κ [K, J], ∇κ [K, J, D]."""
    diff = x[:, None, :] - y[None, :, :]
    sq = jnp.sum(diff ** 2, -1)
    h = jax.lax.stop_gradient(jnp.mean(sq) / math.log(x.shape[0] + 1) + 1e-8)
    kappa = jnp.exp(-sq / h)
    return kappa, -2.0 * diff / h * kappa[..., None]


def loss_fn(params, target_params, batch, key, config, env_steps, *, spec):
    main, _ = split_batch(batch, config)
    n, d = spec.n_agents, spec.action_dim
    sg = jax.lax.stop_gradient
    alpha = entropy_weight(config, env_steps)
    k_value, k_noise = jax.random.split(key)
    b = main.obs.shape[0]

    # critic: soft value by importance sampling with M uniform joint actions (SQL eq. 10-11)
    m = config.value_particles
    uniform = jax.random.uniform(k_value, (m, b, n * d), minval=-1.0, maxval=1.0)
    q_next = jax.vmap(lambda a: q_unit(spec, config, target_params["q"], main.next_obs, a))(uniform)  # [M, B, N]
    v_next = alpha * (jax.nn.logsumexp(q_next / alpha, axis=0) - math.log(m) + n * d * math.log(2.0))
    y = sg(td_target(main, v_next, config))
    joint = to_unit(main.actions, spec.low, spec.high).reshape(b, n * d)
    q = q_unit(spec, config, params["q"], main.obs, joint)
    critic_loss = 0.5 * jnp.mean(jnp.sum((q - y) ** 2, -1))

    # sampler: amortised SVGD towards exp(Q^i(s, ·, â⁻ⁱ)/α), â⁻ⁱ from the other agents' samplers (SQL eq. 13)
    sb = min(config.sampler_batch or b, b)
    obs = main.obs[:sb]
    k = config.kernel_particles
    noise = jax.random.normal(k_noise, (k, sb, n, d))
    particles = jax.vmap(lambda z: sample_unit(spec, config, params["sampler"], obs, z))(noise)  # [K, SB, N, D]
    fixed = sg(particles)
    q_fixed = sg(params["q"])

    # ∇_{aⁱ} Q^i(s, aⁱ, â⁻ⁱ)/α for every agent in one pass: each agent's critic gets its own copy of the joint
    # particle, so the gradient in copy i is agent i's critic's; its slot i is the own-action gradient
    joint_k = jnp.broadcast_to(fixed.reshape(k, sb, 1, n * d), (k, sb, n, n * d))

    def q_all(x):  # x [K, SB, N, N·D] -> Σ over particles, states and agents of Q^i/α
        return jnp.sum(_nets(spec, config)["q"].apply(q_fixed, jnp.concatenate(
            [jnp.broadcast_to(obs, (k,) + obs.shape), x], -1))) / alpha

    grads = jax.grad(q_all)(joint_k).reshape(k, sb, n, n, d)
    grads = jnp.einsum("ksiid->ksid", grads)  # [K, SB, N, D]: copy i, slot i

    def svgd(a, g):  # one state and agent: a, g [K, D] -> Δa [K, D]
        kappa, grad_kappa = rbf_kernel(a, a)
        return (kappa.T @ g + jnp.sum(grad_kappa, axis=0)) / a.shape[0]

    direction = jax.vmap(jax.vmap(svgd, in_axes=(1, 1), out_axes=1), in_axes=(1, 1), out_axes=1)(fixed, grads)
    sampler_loss = -jnp.mean(jnp.sum(sg(direction) * particles, axis=(-1, -2)))

    metrics = {"critic_loss": critic_loss, "sampler_loss": sampler_loss, "alpha": alpha, "q_mean": jnp.mean(q),
               "soft_value": jnp.mean(v_next)}
    greedy = sg(sample_unit(spec, config, params["sampler"], main.obs, jnp.zeros(main.obs.shape[:-1] + (d,))))
    mean_action = from_unit(jnp.mean(greedy, axis=(0, 2)), spec.low, spec.high)
    for i in range(n):
        metrics[f"policy_mean_{i}"] = mean_action[i]
    return critic_loss + sampler_loss, metrics


def update(state, data, key, *, config, learn=None):
    return op.make_update(functools.partial(loss_fn, spec=state.spec))(state, data, key, config=config, learn=learn)


register_algo(Algorithm(
    name="masql", description="MASQL: joint-action soft Q-learning, amortised SVGD samplers as policies",
    config_cls=MASQLConfig, init=init, act=act, update=update,
    warmup_iterations=op.warmup_iterations, requires=("continuous",),
    paper="Wei et al. 2018 (MASQL), a ROMMEO §5.2 baseline; REFERENCE.md", default_total_steps=5000,
))
