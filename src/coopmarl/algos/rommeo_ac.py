"""ROMMEO-AC — Regularized Opponent Model with Maximum Entropy Objective, actor-critic (ROMMEO paper §3.2,
eqs. 14–22, App. A Alg. 2), for continuous actions.

Agent i keeps four networks (its own; nothing is shared between agents), all on its observation o_i
(the paper's s; the same thing in the differential game):

    Q_ω(s, aⁱ, a⁻ⁱ)      joint-action soft Q-function (a scalar; actions enter on [−1, 1])
    π_θ(aⁱ | s, â⁻ⁱ)     conditional policy, a tanh-Gaussian on the action box (reparameterised: f_θ)
    ρ_φ(â⁻ⁱ | s)         opponent model, a tanh-Gaussian over the other agents' actions (g_φ)
    P_ψ(a⁻ⁱ | s)         prior of the opponents' behaviour, a tanh-Gaussian fitted by maximum likelihood
                         to the opponents' actions in the most recent transitions (Alg. 2; REFERENCE.md)

Losses on a replay batch (sums over agents, means over the batch; α = α_t):

    J_Q(ω)  = ½ (Q_ω(s, aⁱ, a⁻ⁱ) − r − γ V̄(s′))²                                               eq. (14), (20)
    V̄(s′)  = Q_ω̄(s′, a′ⁱ, â′⁻ⁱ) − α log π_θ(a′ⁱ|s′, â′⁻ⁱ) − log ρ_φ(â′⁻ⁱ|s′) + log P_ψ(â′⁻ⁱ|s′),
              â′⁻ⁱ ~ ρ_φ(·|s′), a′ⁱ ~ π_θ(·|s′, â′⁻ⁱ)  (one sample; no gradient)                    eq. (15)
    J_π(θ)  = α log π_θ(f_θ(εⁱ; s, â⁻ⁱ) | s, â⁻ⁱ) − Q_ω(s, f_θ(εⁱ; s, â⁻ⁱ), â⁻ⁱ),  â⁻ⁱ ~ ρ_φ     eq. (18), (21)
    J_ρ(φ)  = log ρ_φ(â⁻ⁱ|s) − log P_ψ(â⁻ⁱ|s) − Q_ω(s, aⁱ, â⁻ⁱ) + α log π_θ(aⁱ|s, â⁻ⁱ),
              â⁻ⁱ = g_φ(ε⁻ⁱ; s) reparameterised                                                 eq. (19), (22)
    J_P(ψ)  = −log P_ψ(a⁻ⁱ|s) on the opponents' real actions of the most recent transitions    (Alg. 2)

In J_ρ, aⁱ is agent i's replayed action a_tⁱ, as eq. (19) prints it ((s_t, a_t) ~ D; the default,
`opponent_model_own_action="replay"`). The option "policy" instead draws aⁱ ~ π_θ(·|s, â⁻ⁱ) (held fixed),
which makes J_ρ in expectation the KL to ρ ∝ P·exp(E_π[Q − α log π]); on the differential game it reaches
(5, 5) in fewer seeds (in our runs 7/10 against 10/10, 10 seeds, batch 128), so the paper's form is the
default. Either way, as eq. (22) says, the gradient reaches φ through â⁻ⁱ in log ρ, log P, Q and log π
(ω, θ, ψ held fixed); each loss trains only its own network (stop-gradients; one Adam with lr 1e-2 for
all, equivalent to the authors' per-network Adams).

α is annealed in env steps t: α_t = 0.1 + 500·exp(−0.1·max(t − 10, 0)) (the authors' code). Targets Q_ω̄
are soft (τ = 0.01 every step). Execution is decentralised (Alg. 2): agent i samples â⁻ⁱ ~ ρ_φ(·|o_i),
then aⁱ ~ π_θ(·|o_i, â⁻ⁱ); the greedy action uses the means (tanh of the Gaussian means) of both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, register_algo
from coopmarl.algos.offpolicy_continuous import (AnnealedEntropyConfig, RecentBatchFields, check_spec, entropy_weight,
                                                 split_batch, td_target)
from coopmarl.nets.continuous import GaussianMLP, ValueMLP, opponents, per_agent, to_unit
from coopmarl.nets.distributions import TanhGaussian


@dataclass(frozen=True)
class ROMMEOConfig(RecentBatchFields, AnnealedEntropyConfig):
    """Defaults: the authors' code (REFERENCE.md): 2x100 networks, batch 512, Adam 1e-2 for Q, π, ρ and P,
    γ 0.95, soft τ 0.01 every step, one gradient step per env step; α_t annealed; the prior P fitted on the
    most recent transitions."""

    opponent_model_own_action: Literal["replay", "policy"] = "replay"  # aⁱ in J_ρ: eq. (19) (see the module docstring)


# ---- networks -------------------------------------------------------------------------------------------


def _nets(spec, config):
    n, d, h = spec.n_agents, spec.action_dim, config.hidden_sizes
    return {"q": per_agent(ValueMLP(h), n), "pi": per_agent(GaussianMLP(h, d), n),
            "rho": per_agent(GaussianMLP(h, (n - 1) * d), n), "prior": per_agent(GaussianMLP(h, (n - 1) * d), n)}


def init(key, spec, config: ROMMEOConfig, model=None):
    check_spec(spec, "ROMMEO-AC", min_agents=2)
    n, d = spec.n_agents, spec.action_dim
    nets, keys = _nets(spec, config), jax.random.split(key, 4)
    in_dims = {"q": spec.obs_dim + n * d, "pi": spec.obs_dim + (n - 1) * d, "rho": spec.obs_dim,
               "prior": spec.obs_dim}
    params = {name: nets[name].init(k, in_dims[name]) for name, k in zip(("q", "pi", "rho", "prior"), keys)}
    return op.init_state(params, spec, config, ())


def _tanh_gaussian(spec, net, params, x) -> TanhGaussian:
    mean, log_std = net.apply(params, x)
    return TanhGaussian(mean, log_std, spec.low, spec.high)


def policy_dist(spec, config, params, obs, opp) -> TanhGaussian:
    """π_θ(·|o_i, â⁻ⁱ) for every agent: obs [..., N, obs_dim], opp [..., N, (N−1)D] (env units)."""
    x = jnp.concatenate([obs, to_unit(opp, spec.low, spec.high)], -1)
    return _tanh_gaussian(spec, _nets(spec, config)["pi"], params, x)


def opponent_dist(spec, config, params, obs) -> TanhGaussian:
    """ρ_φ(·|o_i) for every agent."""
    return _tanh_gaussian(spec, _nets(spec, config)["rho"], params, obs)


def prior_dist(spec, config, params, obs) -> TanhGaussian:
    """P_ψ(·|o_i) for every agent."""
    return _tanh_gaussian(spec, _nets(spec, config)["prior"], params, obs)


def q_value(spec, config, params, obs, own, opp) -> jax.Array:
    """Q_ω(o_i, aⁱ, a⁻ⁱ) [..., N]; actions in env units, fed to the network on [−1, 1]."""
    x = jnp.concatenate([obs, to_unit(own, spec.low, spec.high), to_unit(opp, spec.low, spec.high)], -1)
    return _nets(spec, config)["q"].apply(params, x)


def prior_loss(spec, config, prior_params, obs, opponent_actions) -> jax.Array:
    """J_P(ψ) = −E[log P_ψ(a⁻ⁱ|s)] summed over agents: maximum likelihood of the opponents' actions."""
    return -jnp.mean(jnp.sum(prior_dist(spec, config, prior_params, obs).log_prob(opponent_actions), -1))


def act(state, obs, avail_actions, key, *, explore, config):
    """Alg. 2: â⁻ⁱ ~ ρ_φ(·|o_i), then aⁱ ~ π_θ(·|o_i, â⁻ⁱ) — each agent from its own observation."""
    spec, params = state.spec, state.params
    k_rho, k_pi = jax.random.split(key)
    rho = opponent_dist(spec, config, params["rho"], obs)
    opp = rho.sample(k_rho) if explore else rho.mode()
    pi = policy_dist(spec, config, params["pi"], obs, opp)
    return pi.sample(k_pi) if explore else pi.mode()


def loss_fn(params, target_params, batch, key, config, env_steps, *, spec):
    main, recent = split_batch(batch, config)
    n = spec.n_agents
    sg = jax.lax.stop_gradient
    alpha = entropy_weight(config, env_steps)
    keys = jax.random.split(key, 5)
    own, opp = main.actions, opponents(main.actions, n)  # the replayed aⁱ and a⁻ⁱ (env units)

    # eq. (14)-(15): the soft TD target with one sample of â′⁻ⁱ ~ ρ and a′ⁱ ~ π at s′
    rho_next = opponent_dist(spec, config, params["rho"], main.next_obs)
    opp_next, log_rho_next = rho_next.sample_and_log_prob(keys[0])
    own_next, log_pi_next = policy_dist(spec, config, params["pi"], main.next_obs, opp_next).sample_and_log_prob(
        keys[1])
    log_prior_next = prior_dist(spec, config, params["prior"], main.next_obs).log_prob(opp_next)
    v_next = (q_value(spec, config, target_params["q"], main.next_obs, own_next, opp_next)
              - alpha * log_pi_next - log_rho_next + log_prior_next)
    y = sg(td_target(main, v_next, config))  # [B, N]
    q = q_value(spec, config, params["q"], main.obs, own, opp)
    q_loss = 0.5 * jnp.mean(jnp.sum((q - y) ** 2, -1))

    q_fixed, pi_fixed, prior_fixed = sg(params["q"]), sg(params["pi"]), sg(params["prior"])
    rho = opponent_dist(spec, config, params["rho"], main.obs)

    # eq. (18), (21): J_π = α log π(f_θ(ε; s, â)|s, â) − Q(s, f_θ(ε; s, â), â), â ~ ρ (no gradient to φ)
    opp_pi = sg(rho.sample(keys[2]))
    own_pi, log_pi = policy_dist(spec, config, params["pi"], main.obs, opp_pi).sample_and_log_prob(keys[3])
    pi_loss = jnp.mean(jnp.sum(alpha * log_pi - q_value(spec, config, q_fixed, main.obs, own_pi, opp_pi), -1))

    # eq. (19), (22): J_ρ = log ρ(g_φ(ε; s)|s) − log P(â|s) − Q(s, aⁱ, â) + α log π(aⁱ|s, â), â = g_φ(ε; s)
    opp_rho, log_rho = rho.sample_and_log_prob(keys[4])
    pi_given = policy_dist(spec, config, pi_fixed, main.obs, opp_rho)
    if config.opponent_model_own_action == "policy":
        own_rho = sg(pi_given.sample(jax.random.fold_in(keys[4], 1)))
    else:
        own_rho = own
    log_prior = prior_dist(spec, config, prior_fixed, main.obs).log_prob(opp_rho)
    rho_loss = jnp.mean(jnp.sum(log_rho - log_prior - q_value(spec, config, q_fixed, main.obs, own_rho, opp_rho)
                                + alpha * pi_given.log_prob(own_rho), -1))

    # the prior P_ψ: maximum likelihood on the opponents' actions of the most recent transitions (Alg. 2)
    p_loss = prior_loss(spec, config, params["prior"], recent.obs, opponents(recent.actions, n))

    # the means of π (given ρ's mean) and of ρ on the batch's observations (ROMMEO Fig. 2c)
    opp_mean = sg(rho.mode())
    own_mean = sg(policy_dist(spec, config, params["pi"], main.obs, opp_mean).mode())
    metrics = {"q_loss": q_loss, "pi_loss": pi_loss, "rho_loss": rho_loss, "prior_loss": p_loss, "alpha": alpha,
               "q_mean": jnp.mean(q), "pi_entropy": -jnp.mean(sg(log_pi))}
    for i in range(n):
        metrics[f"policy_mean_{i}"] = jnp.mean(own_mean[:, i])
        metrics[f"opponent_mean_{i}"] = jnp.mean(opp_mean[:, i])
    return q_loss + pi_loss + rho_loss + p_loss, metrics


def update(state, data, key, *, config, learn=None):
    """The core's update with this loss (the static env spec gives the action bounds)."""
    return op.make_update(functools.partial(loss_fn, spec=state.spec))(state, data, key, config=config, learn=learn)


register_algo(Algorithm(
    name="rommeo-ac",
    description="ROMMEO-AC: soft joint-action Q, conditional policy π(a|s,â), regularised opponent model ρ(â|s)",
    config_cls=ROMMEOConfig, init=init, act=act, update=update,
    warmup_iterations=op.warmup_iterations, requires=("continuous",),
    paper="ROMMEO (paper 002) §3.2 eqs. (14)-(22), App. A Alg. 2; REFERENCE.md", default_total_steps=5000,
))
