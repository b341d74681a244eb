"""PR2-AC — Probabilistic Recursive Reasoning actor-critic, level 1 (Wen et al. 2019; a baseline of ROMMEO §5.2).

Agent i reasons about how the others respond to its own action: it keeps

    Q^i(s, aⁱ, a⁻ⁱ)        a joint-action critic (agent i's observation o_i stands for s)
    μ^i(s)                 a deterministic tanh actor (the authors' PR2-AC explores with DDPG-style noise)
    ρ^i(a⁻ⁱ | s, aⁱ)       the opponents' conditional policy, a tanh-Gaussian approximating
                           π⁻ⁱ(a⁻ⁱ|s, aⁱ) ∝ exp(Q^i(s, aⁱ, a⁻ⁱ)/α)   (PR2's soft opponent model)

Losses on a replay batch (sums over agents, means over the batch):

    critic  ½ (Q^i(s, aⁱ, a⁻ⁱ) − r − γ (1 − term) Q̄^i(s′, μ̄^i(s′), â′⁻ⁱ))²,  â′⁻ⁱ ~ ρ^i(·|s′, μ̄^i(s′))
    actor   −Q^i(s, μ^i(s), g(ε; s, μ^i(s)))  — the level-1 policy gradient: the gradient reaches θ through
            aⁱ = μ^i(s) both directly and through the opponents' reparameterised response g(ε; s, aⁱ)
    model   α log ρ(g(ε; s, aⁱ)|s, aⁱ) − Q^i(s, aⁱ, g(ε; s, aⁱ)) on replayed aⁱ, i.e. KL(ρ ‖ exp(Q/α)/Z)

The PR2 paper fits ρ with amortised SVGD; here ρ is a reparameterised tanh-Gaussian fitted to the same
target density by the variational (KL) objective — cheaper, the same fixed point within the family. α is
annealed with ROMMEO-AC's schedule and the exploration noise follows the DDPG family's, as the ROMMEO
authors' code passes both to its PR2-AC; everything else (Adam 1e-2, γ 0.95, soft τ 0.01, 2x100 networks)
is ROMMEO's setting (REFERENCE.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, register_algo
from coopmarl.algos.offpolicy_continuous import (AnnealedEntropyConfig, NoiseExplorationConfig, check_spec,
                                                 entropy_weight, noise_level, noisy_action, split_batch, td_target)
from coopmarl.nets.continuous import MLP, GaussianMLP, ValueMLP, from_unit, opponents, per_agent, to_unit
from coopmarl.nets.distributions import TanhGaussian


@dataclass(frozen=True)
class PR2Config(NoiseExplorationConfig, AnnealedEntropyConfig):
    """The DDPG family's exploration noise for the deterministic actor; α_t (ROMMEO-AC's schedule, as the
    authors' code) for the opponents' soft conditional policy."""


def _nets(spec, config):
    n, d, h = spec.n_agents, spec.action_dim, config.hidden_sizes
    return {"actor": per_agent(MLP(h, d, out_scale=0.01), n), "q": per_agent(ValueMLP(h), n),
            "rho": per_agent(GaussianMLP(h, (n - 1) * d), n)}


def init(key, spec, config: PR2Config, model=None):
    check_spec(spec, "PR2-AC", min_agents=2)
    n, d = spec.n_agents, spec.action_dim
    nets, keys = _nets(spec, config), jax.random.split(key, 3)
    in_dims = {"actor": spec.obs_dim, "q": spec.obs_dim + n * d, "rho": spec.obs_dim + d}
    params = {name: nets[name].init(k, in_dims[name]) for name, k in zip(("actor", "q", "rho"), keys)}
    return op.init_state(params, spec, config, ())


def actor_unit(spec, config, params, obs):
    return jnp.tanh(_nets(spec, config)["actor"].apply(params, obs))


def response_dist(spec, config, params, obs, own) -> TanhGaussian:
    """ρ^i(·|o_i, aⁱ): the opponents' response to agent i's action (env units)."""
    mean, log_std = _nets(spec, config)["rho"].apply(params, jnp.concatenate([obs, to_unit(own, spec.low, spec.high)],
                                                                             -1))
    return TanhGaussian(mean, log_std, spec.low, spec.high)


def q_value(spec, config, params, obs, own, opp):
    x = jnp.concatenate([obs, to_unit(own, spec.low, spec.high), to_unit(opp, spec.low, spec.high)], -1)
    return _nets(spec, config)["q"].apply(params, x)


def act(state, obs, avail_actions, key, *, explore, config):
    """Decentralised: μ^i(o_i), plus the exploration noise σ_t when exploring."""
    y = actor_unit(state.spec, config, state.params["actor"], obs)
    return noisy_action(state.spec, config, state.env_steps, y, key, explore)


def loss_fn(params, target_params, batch, key, config, env_steps, *, spec):
    main, _ = split_batch(batch, config)
    sg = jax.lax.stop_gradient
    alpha = entropy_weight(config, env_steps)
    k_next, k_actor, k_model = jax.random.split(key, 3)
    own, opp = main.actions, opponents(main.actions, spec.n_agents)

    # critic: level-1 target — the opponents respond to the target actor's action at s′
    own_next = from_unit(actor_unit(spec, config, target_params["actor"], main.next_obs), spec.low, spec.high)
    opp_next = response_dist(spec, config, params["rho"], main.next_obs, own_next).sample(k_next)
    y = sg(td_target(main, q_value(spec, config, target_params["q"], main.next_obs, own_next, opp_next), config))
    q = q_value(spec, config, params["q"], main.obs, own, opp)
    critic_loss = 0.5 * jnp.mean(jnp.sum((q - y) ** 2, -1))

    # actor: −Q(s, μ(s), g(ε; s, μ(s))), gradient through μ in Q and in the opponents' response
    q_fixed, rho_fixed = sg(params["q"]), sg(params["rho"])
    mu = from_unit(actor_unit(spec, config, params["actor"], main.obs), spec.low, spec.high)
    response = response_dist(spec, config, rho_fixed, main.obs, mu).sample(k_actor)
    actor_loss = -jnp.mean(jnp.sum(q_value(spec, config, q_fixed, main.obs, mu, response), -1))

    # opponents' conditional: KL(ρ(·|s, aⁱ) ‖ exp(Q(s, aⁱ, ·)/α)/Z) on replayed aⁱ
    opp_rho, log_rho = response_dist(spec, config, params["rho"], main.obs, own).sample_and_log_prob(k_model)
    model_loss = jnp.mean(jnp.sum(alpha * log_rho - q_value(spec, config, q_fixed, main.obs, own, opp_rho), -1))

    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "model_loss": model_loss, "alpha": alpha,
               "q_mean": jnp.mean(q), "noise": noise_level(config, env_steps)}
    mean_action = jnp.mean(sg(mu), axis=(0, 2))
    for i in range(spec.n_agents):
        metrics[f"policy_mean_{i}"] = mean_action[i]
    return critic_loss + actor_loss + model_loss, metrics


def update(state, data, key, *, config, learn=None):
    return op.make_update(functools.partial(loss_fn, spec=state.spec))(state, data, key, config=config, learn=learn)


register_algo(Algorithm(
    name="pr2-ac", description="PR2-AC (level 1): joint critic, deterministic actor, opponents' conditional "
                               "policy ρ(a⁻ⁱ|s, aⁱ) in the policy gradient",
    config_cls=PR2Config, init=init, act=act, update=update,
    warmup_iterations=op.warmup_iterations, requires=("continuous",),
    paper="Wen et al. 2019 (PR2), a ROMMEO §5.2 baseline; REFERENCE.md", default_total_steps=5000,
))
