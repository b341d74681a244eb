"""The DDPG family for continuous actions: IDDPG, MADDPG and DDPG-OM (the ROMMEO paper's baselines, §5.2).

One algorithm, three critics (`critic_inputs`, fixed by each algorithm's config class):

    "own"             IDDPG    Q^i(o_i, a_i)                      independent learners (Lillicrap et al. 2016)
    "joint"           MADDPG   Q^i(s, a_1, …, a_N)                centralised critic (Lowe et al. 2017)
    "opponent_model"  DDPG-OM  Q^i(o_i, a_i, â_{−i}) and an opponent model ρ^i(a_{−i}|o_i) trained by
                               supervised learning on the opponents' observed actions (ROMMEO §5.2)

Every agent i has a deterministic actor μ^i(o_i) = tanh(MLP(o_i)) on [−1, 1]^D, scaled to the env's
[low, high] (networks see actions in [−1, 1]). Losses on a replay batch, each agent its own networks:

    critic  L(ω_i) = ½ (Q^i(x_i, a) − y_i)²,  y_i = r_i + γ (1 − term) Q̄^i(x′_i, a′)
            a′: the target actors' actions μ̄(o′) for the agent (and, for MADDPG, for all agents);
            DDPG-OM: the opponents' part of a′ is the opponent model's prediction at o′_i
    actor   L(θ_i) = −Q^i(x_i, μ^i(o_i), others)   (deterministic policy gradient, Silver et al. 2014)
            others: MADDPG the other agents' replayed actions; DDPG-OM the opponent model's prediction
    model   L(φ_i) = −log N(a_{−i}; m_φ(o_i), σ_φ(o_i))   (Gaussian maximum likelihood on the most recent
            transitions: "trained online with supervision to capture the latest opponent behaviours")

Exploration: a = clip(μ(o) + σ_t ε, −1, 1), ε ~ N(0, I), σ_t stepping down 0.5 → 0.1 (env step 1000)
→ 0.05 (2000) → 0.01 (3000) (REFERENCE.md, the authors' code). Targets are soft (τ = 0.01 every step).
Everything else — replay of (length-1) windows, soft targets, one Adam over all networks (stop-gradients
route each loss to its own network) — is the off-policy core (`algos/offpolicy.py`); the continuous
learners' shared config field groups and helpers are in `algos/offpolicy_continuous.py`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, register_algo
from coopmarl.algos.offpolicy_continuous import (NoiseExplorationConfig, RecentBatchFields, check_spec, noise_level,
                                                 noisy_action, split_batch, td_target)
from coopmarl.nets.continuous import MLP, GaussianMLP, ValueMLP, from_unit, opponents, per_agent, to_unit
from coopmarl.nets.distributions import DiagGaussian

CriticInputs = Literal["own", "joint", "opponent_model"]


@dataclass(frozen=True)
class DDPGConfig(NoiseExplorationConfig):
    """The DDPG family's keys: the continuous off-policy core's and the exploration noise's; `critic_inputs`
    (see the module docstring) is fixed by each algorithm's class below."""

    critic_inputs: ClassVar[CriticInputs]


@dataclass(frozen=True)
class IDDPGConfig(DDPGConfig):
    """IDDPG (Lillicrap et al. 2016) as the ROMMEO paper's baseline: critics Q^i(o_i, a_i)."""

    critic_inputs: ClassVar[CriticInputs] = "own"


@dataclass(frozen=True)
class MADDPGConfig(DDPGConfig):
    """MADDPG (Lowe et al. 2017) as the ROMMEO paper's baseline: centralised critics Q^i(s, a_1, …, a_N)."""

    critic_inputs: ClassVar[CriticInputs] = "joint"


@dataclass(frozen=True)
class DDPGOMConfig(RecentBatchFields, DDPGConfig):
    """DDPG-OM (ROMMEO §5.2): critics Q^i(o_i, a_i, â_{−i}) with an opponent model fitted on the most recent
    transitions."""

    critic_inputs: ClassVar[CriticInputs] = "opponent_model"


# ---- networks -------------------------------------------------------------------------------------------


def _actor(spec, config):
    return per_agent(MLP(config.hidden_sizes, spec.action_dim, out_scale=0.01), spec.n_agents)


def _critic(spec, config):
    return per_agent(ValueMLP(config.hidden_sizes), spec.n_agents)


def _model(spec, config):
    return per_agent(GaussianMLP(config.hidden_sizes, (spec.n_agents - 1) * spec.action_dim), spec.n_agents)


def _critic_in_dim(spec, config) -> int:
    n, d = spec.n_agents, spec.action_dim
    return {"own": spec.obs_dim + d, "joint": spec.state_dim + n * d, "opponent_model": spec.obs_dim + n * d}[
        config.critic_inputs]


def critic_inputs(spec, config, obs, state, own, others, joint) -> jax.Array:
    """The critic's input for every agent [B, N, in]: own [B, N, D] agent i's action, others [B, N, (N−1)D]
    the opponents' (replayed or modelled), joint [B, N·D] every agent's (MADDPG), all on [−1, 1]."""
    if config.critic_inputs == "own":
        return jnp.concatenate([obs, own], -1)
    if config.critic_inputs == "joint":
        x = jnp.concatenate([state, joint], -1)
        return jnp.broadcast_to(x[:, None, :], (x.shape[0], spec.n_agents, x.shape[-1]))
    return jnp.concatenate([obs, own, others], -1)


def init(key, spec, config: DDPGConfig, model=None):
    check_spec(spec, "DDPG-OM" if config.critic_inputs == "opponent_model" else "DDPG",
               2 if config.critic_inputs == "opponent_model" else 1)
    k_actor, k_critic, k_model = jax.random.split(key, 3)
    params = {"actor": _actor(spec, config).init(k_actor, spec.obs_dim),
              "critic": _critic(spec, config).init(k_critic, _critic_in_dim(spec, config))}
    if config.critic_inputs == "opponent_model":
        params["model"] = _model(spec, config).init(k_model, spec.obs_dim)
    return op.init_state(params, spec, config, ())


def policy_unit(spec, config, actor_params, obs) -> jax.Array:
    """μ^i(o_i) on [−1, 1]^D for every agent: obs [..., N, obs_dim] -> [..., N, D]."""
    return jnp.tanh(_actor(spec, config).apply(actor_params, obs))


def act(state, obs, avail_actions, key, *, explore, config):
    """Decentralised: agent n acts on obs[n] alone. explore: μ + σ_t·ε clipped to the box; else μ."""
    y = policy_unit(state.spec, config, state.params["actor"], obs)
    return noisy_action(state.spec, config, state.env_steps, y, key, explore)


def predicted_opponents(spec, config, model_params, obs) -> jax.Array:
    """DDPG-OM: the opponent model's prediction of a_{−i} (its Gaussian mean, clipped to [−1, 1])."""
    mean, _ = _model(spec, config).apply(model_params, obs)
    return jnp.clip(mean, -1.0, 1.0)


def loss_fn(params, target_params, batch, key, config, env_steps, *, spec):
    main, recent = split_batch(batch, config)
    n = spec.n_agents
    sg = jax.lax.stop_gradient
    actions = to_unit(main.actions, spec.low, spec.high)  # [B, N, D]
    joint = actions.reshape(actions.shape[0], -1)
    critic = _critic(spec, config)

    # critic: y_i = r_i + γ (1 − term) Q̄^i(x′_i, a′) with the target actors (DDPG/MADDPG eq. for y)
    next_own = policy_unit(spec, config, target_params["actor"], main.next_obs)
    if config.critic_inputs == "opponent_model":
        next_others = predicted_opponents(spec, config, params["model"], main.next_obs)
    else:
        next_others = opponents(next_own, n)
    x_next = critic_inputs(spec, config, main.next_obs, main.next_global_state, next_own, next_others,
                           next_own.reshape(next_own.shape[0], -1))
    y = sg(td_target(main, critic.apply(target_params["critic"], x_next), config))  # [B, N]
    x = critic_inputs(spec, config, main.obs, main.global_state, actions, opponents(actions, n), joint)
    q = critic.apply(params["critic"], x)
    critic_loss = 0.5 * jnp.mean(jnp.sum((q - y) ** 2, -1))

    # actor: −Q^i(x_i, μ^i(o_i), others) (deterministic policy gradient); the critic is held fixed
    mu = policy_unit(spec, config, params["actor"], main.obs)  # [B, N, D]
    if config.critic_inputs == "opponent_model":
        others = sg(predicted_opponents(spec, config, params["model"], main.obs))
    else:
        others = opponents(actions, n)  # the other agents' replayed actions
    # MADDPG: agent i's critic sees μ^i in slot i and the replayed actions elsewhere
    eye = jnp.eye(n, dtype=bool)[None, :, :, None]  # [1, N(critic i), N(slot j), 1]
    joint_i = jnp.where(eye, mu[:, None, :, :], actions[:, None, :, :]).reshape(mu.shape[0], n, -1)
    if config.critic_inputs == "joint":
        x_pi = jnp.concatenate([jnp.broadcast_to(main.global_state[:, None, :], (mu.shape[0], n,
                                                                                 main.global_state.shape[-1])),
                                joint_i], -1)
    else:
        x_pi = critic_inputs(spec, config, main.obs, main.global_state, mu, others, None)
    actor_loss = -jnp.mean(jnp.sum(critic.apply(sg(params["critic"]), x_pi), -1))

    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": jnp.mean(q),
               "noise": noise_level(config, env_steps)}
    mean_action = from_unit(jnp.mean(sg(mu), axis=(0, 2)), spec.low, spec.high)  # [N]
    for i in range(n):
        metrics[f"policy_mean_{i}"] = mean_action[i]
    loss = critic_loss + actor_loss

    if config.critic_inputs == "opponent_model":
        # L(φ_i): Gaussian maximum likelihood of the opponents' actions on the most recent transitions
        mean, log_std = _model(spec, config).apply(params["model"], recent.obs)
        target = opponents(to_unit(recent.actions, spec.low, spec.high), n)
        model_loss = -jnp.mean(jnp.sum(DiagGaussian(mean, log_std).log_prob(target), -1))
        metrics["model_loss"] = model_loss
        metrics["model_error"] = jnp.mean(jnp.abs(jnp.clip(mean, -1, 1) - target)) * 0.5 * (spec.high - spec.low)
        loss = loss + model_loss
    return loss, metrics


def update(state, data, key, *, config, learn=None):
    """The core's update with this loss (the static env spec gives the action bounds)."""
    return op.make_update(functools.partial(loss_fn, spec=state.spec))(state, data, key, config=config, learn=learn)


_PAPER = "ROMMEO (paper 002) §5.2 baselines; REFERENCE.md (the authors' DDPG-family settings)"
for _name, _cls, _description in (
    ("iddpg", IDDPGConfig, "independent DDPG: per-agent critics Q^i(o_i, a_i), deterministic tanh actors"),
    ("maddpg", MADDPGConfig, "MADDPG: centralised critics Q^i(s, a_1..a_N), decentralised deterministic actors"),
    ("ddpg-om", DDPGOMConfig, "DDPG-OM: critic Q^i(o_i, a_i, â_-i) with a supervised Gaussian opponent model"),
):
    register_algo(Algorithm(name=_name, description=_description, config_cls=_cls, init=init, act=act,
                            update=update,
                            warmup_iterations=op.warmup_iterations, requires=("continuous",), paper=_PAPER,
                            default_total_steps=5000))
