"""The policy-gradient family on one page: IA2C, MAA2C, IPPO, IPPO-KL, MAPPO, VDAC, DPO and DPO's ablations.

Every algorithm here is the same three functions; its config class fixes its `loss` (a ClassVar, not a
key), has exactly the keys that loss reads (field groups: `PGConfig` + `ClipFields` / `AdaptiveCoefFields`,
`KLPenaltyFields`, `SqrtKLFields`) and sets the defaults its source gives:

    loss      "a2c"  −mean(log π(a|o) Â)                                        (Mnih et al. 2016)
              "clip" −mean(min(ρ Â, clip(ρ, 1 ± ε) Â))                          (PPO eq. 7)
              "kl"   −mean(ρ Â) + β_KL mean(KL)                                  (PPO eq. 8; IPPO-KL)
              "dpo"  −mean(ρ Â) + β√ mean(√KL) + β_KL mean(KL)                   (DPO eq. 20)
    critic    "local"   V^i(o_i), a decentralised critic (IA2C, IPPO, DPO; DPO eq. 8)
              "central" V(s) from the env's `global_state` (MAA2C, MAPPO)
              "sum"     V_tot(s) = Σ_i V^i(o_i), a decomposed team value (VDAC-sum, Su et al. 2021)
              "mix"     V_tot(s) = f_mix(s, V^1(o_1), …, V^N(o_N)), QMIX's monotonic mixer (VDAC-mix)
    share_parameters   one network for all agents + one-hot agent id (EPyMARL), or one per agent (DPO)

with ρ = π(a|o) / π_old(a|o) and KL = KL(π_old(·|o_i) ‖ π(·|o_i)) per sample (π_old = the policy that
collected the batch). The KL coefficients adapt once per update and per agent (DPO eq. 21):
β·=ω when the mean KL exceeds d_target·δ, β/=ω when it is below d_target/δ, clipped to [1e-3, 1e3].

A decomposed critic ("sum", "mix"; fixed by VDAC's classes) learns V_tot from the team reward, and every
agent's advantage is the team's Â = G^λ − V_tot(s): VDAC's actor gradient E[∇ log π^i(u^i|τ^i) (r + γV_tot(s′) −
V_tot(s))] with TD(λ) targets (both variants), which is GAE(γ, λ) here (the λ-return minus V is GAE's Â).

DPO's eq. (20) maximises (1/N) L^i − β√ √KL − β_KL KL; like REFERENCE.md's loss (the authors' code) we
drop the 1/N — with adaptive coefficients it only rescales β. A coefficient initialised at 0 stays 0:
that is how the ablations `dpo-no-sqrt` (β√ = 0, the same maths as IPPO-KL) and `dpo-no-kl` are made
(their classes fix that coefficient at 0). `clip_frac` is logged by the clip loss only.

One update (`update`): values and the old policy on the batch [T, E] → GAE(γ, λ) (a `terminated` step
does not bootstrap, a `truncated` one bootstraps from V(next_obs), and no advantage flows across an
episode end) → optionally normalised advantages, per agent → `n_epochs` passes over `n_minibatches`
shuffled minibatches of the T·E samples → adapt the coefficients on the KL of the final policy.
Gradient norms are clipped per network and, with per-agent parameters, per agent, so no agent's step
depends on another's gradients.

Two variants (`variant=paper|authors` among the settings; DPO, its ablations, IPPO and IPPO-KL):
`paper`, the defaults, is the paper's text; `authors` is what the authors' code does (`AUTHORS`, each key
citing the file it reproduces): actors trained on every agent's shuffled samples, the KL for eq. (21)
measured on the last minibatch, one β for all agents starting at 1, 2x128 LayerNorm networks, the clipped
value loss, advantages normalised over all agents, one env. Each is also a key of its own.

Continuous actions: `act` returns the *unclipped* Gaussian sample, which is what the runner stores and
what the log-probabilities are computed on; the runner clips what the env receives to [low, high]
(`runner.env_actions`). The greedy action (the mean) is clipped in `act`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from coopmarl.algos import fields
from coopmarl.algos.base import Algorithm, policy_table, register_algo
from coopmarl.algos.fields import AlgoConfig
from coopmarl.envs.core import EnvSpec
from coopmarl.envs.fast_random import permutation
from coopmarl.nets.distributions import Categorical, DiagGaussian, safe_sqrt
from coopmarl.nets.mixers import QMixer, VDNMixer
from coopmarl.nets.policy import Actor, AgentNets, Critic

Loss = Literal["a2c", "clip", "kl", "dpo"]
MAX_INIT_LOG_STD = 40.0  # e^80 ≈ 5.5e34: σ² and 1/σ² stay finite float32 (whose largest is ≈ e^88.7)


@dataclass(frozen=True)
class PGConfig(AlgoConfig):
    """The keys every policy-gradient algorithm here reads. Defaults = DPO (Su & Lu), App. B Table 2 and
    REFERENCE.md's DPO section unless marked otherwise; each algorithm's class below adds its loss's keys
    and changes only the defaults its source sets. `loss` is fixed by the algorithm (a ClassVar)."""

    loss: ClassVar[Loss]  # the algorithm's loss (see the module docstring); fixed by each class below
    critic: Literal["local", "central"] = "local"  # V^i(o_i), decentralised critics: DPO eq. (8)
    share_parameters: bool = False  # DPO §4: "agents do not use parameter-sharing"
    hidden_sizes: tuple[int, ...] = (128, 128, 128)  # DPO App. B: 3-layer MLPs, 128 units
    activation: Literal["relu", "tanh"] = "relu"  # DPO App. B
    init_log_std: float = 0.0  # Gaussian policies (continuous actions): σ = 1 at start (MAPPO code's DiagGaussian)
    actor_lr: float = 5e-4  # DPO Table 2
    critic_lr: float = 5e-4  # DPO Table 2
    adam_eps: float = 1e-5  # MAPPO code (`opti_eps`)
    max_grad_norm: float = 10.0  # REFERENCE.md (authors' code, MAPPO default)
    n_epochs: int = 15  # DPO Table 2
    n_minibatches: int = 1  # REFERENCE.md (authors' code)
    gamma: float = 0.99  # REFERENCE.md
    gae_lambda: float = 0.95  # REFERENCE.md
    normalize_advantages: bool = True  # REFERENCE.md
    entropy_coef: float = 0.01  # REFERENCE.md
    value_coef: float = 1.0  # MAPPO code (`value_loss_coef`); actor and critic are separate networks
    clip_value: bool = False  # MAPPO's clipped value loss (Yu et al. 2022); off in DPO/IPPO
    value_clip_eps: float = 0.2  # clip_value=True: MAPPO code (`clip_param`, the ratio clip reused)
    rollout_length: int = 25  # steps per env per update (MPE episode length, DPO §4.2)
    n_envs: int = 16  # parallel envs (a CPU-friendly choice)
    layer_norm: bool = False  # DPO App. B: plain MLPs (True: the authors' LayerNorm MLPs, see AUTHORS)
    advantage_norm: Literal["agent", "all"] = "agent"  # per agent, as each agent's own PPO would ("all": AUTHORS)
    agent_shuffle: bool = False  # DPO eq. (20): actor i learns from agent i's samples (True: AUTHORS)

    def __post_init__(self):
        super().__post_init__()
        if self.agent_shuffle and self.critic != "local":
            raise ValueError("agent_shuffle=True needs critic='local' (the authors' DPO and IPPO have per-agent critics "
                             f"on local observations); got critic={self.critic!r}")
        fields.layer_widths(self)
        fields.at_least(self, 1, "n_epochs", "n_minibatches", "rollout_length", "n_envs")
        if (self.rollout_length * self.n_envs) % self.n_minibatches:
            raise ValueError(f"n_minibatches={self.n_minibatches} must divide rollout_length * n_envs = "
                             f"{self.rollout_length * self.n_envs}")
        fields.in_unit_interval(self, "gamma", "gae_lambda")
        fields.positive(self, "actor_lr", "critic_lr", "adam_eps", "max_grad_norm", "value_clip_eps")
        fields.at_least(self, 0.0, "entropy_coef", "value_coef")
        fields.in_range(self, "init_log_std", -MAX_INIT_LOG_STD, MAX_INIT_LOG_STD,
                        " (σ² = exp(2·init_log_std) and 1/σ² must be finite in float32)")


@dataclass(frozen=True)
class ClipFields(AlgoConfig):
    """PPO's ratio clip (PPO eq. 7)."""

    clip_eps: float = 0.2  # ε: DPO Table 2 for IPPO (Schulman et al. 2017)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "clip_eps")


@dataclass(frozen=True)
class AdaptiveCoefFields(AlgoConfig):
    """The adaptation of the KL coefficients, once per update (DPO eq. 21, PPO's adaptive KL rule).

    d_target (`kl_target`) is per environment in the paper: stochastic game 0.1, MPE 0.01, MuJoCo 0.001,
    SMAC 0.02; the default is MPE's."""

    kl_target: float = 0.01  # d_target, DPO §4.2 (MPE); see the docstring
    adapt_delta: float = 1.5  # δ, DPO eq. (21) and Table 2
    adapt_omega: float = 2.0  # ω, DPO eq. (21) and Table 2
    coef_min: float = 1e-3  # REFERENCE.md (authors' code)
    coef_max: float = 1e3  # REFERENCE.md (authors' code)
    per_agent_coefs: bool = True  # β_j^i per agent i (DPO eq. 20-21); False: one β from the mean KL of all agents
    kl_measure: Literal["final", "last_minibatch"] = "final"  # eq. (21): KL(π_old‖π_new) after the update (AUTHORS)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "kl_target", "coef_min")
        fields.above(self, "adapt_delta", 1.0)
        fields.above(self, "adapt_omega", 1.0)
        if self.coef_max < self.coef_min:
            raise ValueError(f"coef_max must be a finite number >= coef_min ({self.coef_min}), got {self.coef_max}")


@dataclass(frozen=True)
class KLPenaltyFields(AlgoConfig):
    """The penalty β_KL·KL (PPO eq. 8; DPO eq. 20's β_2^i term)."""

    kl_coef_init: float = 0.01  # β_KL (β_2^i) at start: DPO Table 2 (authors' code: 1.0)

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 0.0, "kl_coef_init")


@dataclass(frozen=True)
class SqrtKLFields(AlgoConfig):
    """The penalty β√·√KL (DPO eq. 20's β_1^i term). `sqrt_coef_rule`: "sqrt_target" adapts β√ on mean(√KL)
    against √d_target (REFERENCE.md, the authors' code); "paper" adapts it on mean(KL) against d_target, as
    eq. (21) prints it for both coefficients."""

    sqrt_kl_coef_init: float = 0.01  # β√ (β_1^i) at start: DPO Table 2 (authors' code: 1.0)
    sqrt_coef_rule: Literal["sqrt_target", "paper"] = "sqrt_target"  # REFERENCE.md (authors' code); see the docstring

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 0.0, "sqrt_kl_coef_init")


# ---- variant=authors: what the authors' code does that the paper does not say --------------------------

# The DPO authors' code (PKU-RL/DPO, `on-policy-main/onpolicy/`, on the MAPPO code base). `variant=authors`
# sets these keys for DPO, its ablations, IPPO and IPPO-KL (each class takes the ones it has); each is also
# a key of its own. REFERENCE.md ("DPO authors' code") and docs/results.md say what they change.
AUTHORS = {
    # `utils/shared_buffer.py` feed_forward_generator draws one permutation over the flattened [T, R, N]
    # samples and `algorithm/rMAPPOPolicy.py` evaluate_actions reshapes a minibatch to [-1, N], column i to
    # actor i: each actor trains on a random 1/N of *every* agent's samples (`agent_shuffle_index`)
    "agent_shuffle": True,
    # `r_mappo.py` ppo_update keeps the KL terms of each minibatch's forward pass; train() adapts β on the
    # last one's, i.e. before the last gradient step, on the shuffled columns
    "kl_measure": "last_minibatch",
    "per_agent_coefs": False,  # `config.py` idv_beta=False: one β from the KL's mean over all agents
    "kl_coef_init": 1.0,  # `config.py` beta_kl
    "sqrt_kl_coef_init": 1.0,  # `config.py` beta_sqrt_kl
    "hidden_sizes": (128, 128),  # `config.py` hidden_size 128, layer_N 1: fc1 + one fc_h (`utils/mlp.py`)
    "layer_norm": True,  # `config.py` use_feature_normalization; `utils/mlp.py` Linear → ReLU → LayerNorm
    "clip_value": True,  # `config.py` use_clipped_value_loss; `r_mappo.py` cal_value_loss (±clip_param 0.2)
    "advantage_norm": "all",  # `r_mappo.py` train: one nanmean/nanstd over the whole buffer, all agents
    "n_envs": 1,  # `config.py` n_rollout_threads (the README's command passes 1 too)
}
# Not switched, because they do not change an update: the code averages the agents' losses where we sum them
# (Adam's steps are scale-free), its discrete KL adds 1e-9 inside the logs, its √ adds 1e-12.


# ---- the registered algorithms: their loss's field groups, and the defaults their sources set ----------


class AuthorsVariant:
    """The algorithms of the DPO paper's experiments (DPO, its ablations, IPPO, IPPO-KL) have two variants."""

    @classmethod
    def variants(cls) -> dict[str, dict]:
        """{variant: the keys it sets}: `paper` (the defaults: the paper's text) and `authors` (the keys of
        AUTHORS this class has)."""
        keys = {f.name for f in dataclasses.fields(cls)}
        return {"paper": {}, "authors": {k: v for k, v in AUTHORS.items() if k in keys}}


@dataclass(frozen=True)
class DPOConfig(AuthorsVariant, SqrtKLFields, KLPenaltyFields, AdaptiveCoefFields, PGConfig):
    """DPO (Su & Lu): eq. (20) with adaptive β√, β_KL (eq. 21); per-agent actor and critic."""

    loss: ClassVar[Loss] = "dpo"


@dataclass(frozen=True)
class DPONoSqrtConfig(AuthorsVariant, KLPenaltyFields, AdaptiveCoefFields, PGConfig):
    """DPO w/o sqrt (DPO §4.5): β√ = 0 — "the same as IPPO-KL"."""

    loss: ClassVar[Loss] = "dpo"
    sqrt_kl_coef_init: ClassVar[float] = 0.0  # the ablation: no √KL term


@dataclass(frozen=True)
class DPONoKLConfig(AuthorsVariant, SqrtKLFields, AdaptiveCoefFields, PGConfig):
    """DPO w/o kl (DPO §4.5): β_KL = 0."""

    loss: ClassVar[Loss] = "dpo"
    kl_coef_init: ClassVar[float] = 0.0  # the ablation: no KL term


@dataclass(frozen=True)
class IPPOConfig(AuthorsVariant, ClipFields, PGConfig):
    """IPPO as DPO's baseline (de Witt et al. 2020; DPO App. B): ratio clip 0.2, otherwise DPO's settings."""

    loss: ClassVar[Loss] = "clip"


@dataclass(frozen=True)
class IPPOKLConfig(AuthorsVariant, KLPenaltyFields, AdaptiveCoefFields, PGConfig):
    """IPPO-KL (DPO App. C): every agent runs PPO's adaptive-KL version (PPO eq. 8) with DPO's settings."""

    loss: ClassVar[Loss] = "kl"


@dataclass(frozen=True)
class MAPPOConfig(ClipFields, PGConfig):
    """MAPPO, EPyMARL style (`mappo.yaml`: shared parameters + agent id, centralised V(s), 4 epochs, clip 0.2,
    lr 5e-4, entropy 0.01, hidden 64, grad clip 10) with Yu et al.'s clipped value loss; MLP, not GRU."""

    loss: ClassVar[Loss] = "clip"
    critic: Literal["local", "central"] = "central"  # EPyMARL mappo.yaml: centralised V(s)
    share_parameters: bool = True  # EPyMARL mappo.yaml: shared parameters + agent id
    hidden_sizes: tuple[int, ...] = (64, 64)  # EPyMARL mappo.yaml (hidden_dim 64)
    n_epochs: int = 4  # EPyMARL mappo.yaml (epochs 4)
    clip_value: bool = True  # Yu et al. 2022 (MAPPO's clipped value loss)


@dataclass(frozen=True)
class MAA2CConfig(PGConfig):
    """MAA2C, EPyMARL style (`maa2c.yaml`: shared parameters + agent id, centralised V(s), lr 5e-4, entropy
    0.01, hidden 64); GAE instead of EPyMARL's 5-step returns and target critic; MLP, not GRU."""

    loss: ClassVar[Loss] = "a2c"
    critic: Literal["local", "central"] = "central"  # EPyMARL maa2c.yaml: centralised V(s)
    share_parameters: bool = True  # EPyMARL maa2c.yaml: shared parameters + agent id
    hidden_sizes: tuple[int, ...] = (64, 64)  # EPyMARL maa2c.yaml (hidden_dim 64)
    n_epochs: int = 1  # A2C: one pass over each batch (EPyMARL maa2c)


@dataclass(frozen=True)
class IA2CConfig(MAA2CConfig):
    """IA2C, EPyMARL style (`ia2c.yaml`): MAA2C with a decentralised critic V(o_i)."""

    critic: Literal["local", "central"] = "local"  # EPyMARL ia2c.yaml: decentralised V(o_i)


@dataclass(frozen=True)
class VDACSumConfig(PGConfig):
    """VDAC-sum (Su, Adams & Beling 2021): A2C whose critic is V_tot(s) = Σ_i V^i(o_i), and every actor follows the
    team's advantage. Defaults: the authors' code (hahayonghuming/VDACs, `src/config/algs/vdn_a2c.yaml`, pymarl's
    parallel runner: 8 envs, one gradient step per batch, TD(λ) 0.8, lr 5e-4, shared parameters). Not theirs: an MLP
    (their agent is a GRU with a shared actor-critic torso; here actor and critic are separate MLPs) and an entropy
    bonus in place of their ε-mixed action sampling (ε 0.5 → 0.01 over 100k steps)."""

    loss: ClassVar[Loss] = "a2c"
    critic: ClassVar[str] = "sum"  # V_tot = Σ_i V^i(o_i) (VDAC-sum)
    share_parameters: bool = True  # VDACs code: pymarl's shared agent network + agent id
    hidden_sizes: tuple[int, ...] = (64, 64)  # VDACs code: rnn_hidden_dim 64 (an MLP here)
    n_epochs: int = 1  # A2C: one gradient step per batch (VDACs policy_gradient_v2.py)
    n_envs: int = 8  # VDACs code: batch_size_run 8
    gae_lambda: float = 0.8  # VDACs code: td_lambda 0.8 (TD(λ) target minus V_tot = GAE(γ, λ)'s Â)
    normalize_advantages: bool = False  # VDACs code: raw advantages
    entropy_coef: float = 0.01  # ours (EPyMARL's A2C value): stands in for their ε-mixed sampling (docstring)


@dataclass(frozen=True)
class ValueMixerFields(AlgoConfig):
    """VDAC-mix's mixer of the local values: QMIX's hypernetwork mixer (non-negative weights, so ∂V_tot/∂V^i ≥ 0)."""

    mixing_embed: int = 32  # VDACs code vmix_a2c.yaml: mixing_embed_dim 32
    hypernet_embed: int = 64  # VDACs code vmix_a2c.yaml: hypernet_embed 64 (hypernet_layers 2)

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "mixing_embed", "hypernet_embed")


@dataclass(frozen=True)
class VDACMixConfig(ValueMixerFields, VDACSumConfig):
    """VDAC-mix: VDAC-sum with V_tot(s) = f_mix(s, V^1(o_1), …, V^N(o_N)), QMIX's monotonic mixer (authors' code:
    `vmix_a2c.yaml`, otherwise the same settings as vdn_a2c.yaml)."""

    critic: ClassVar[str] = "mix"  # V_tot = f_mix(s, V^1, …, V^N) (VDAC-mix)


# ---- state and networks ---------------------------------------------------------------------------------


class PGState(struct.PyTreeNode):
    actor_params: Any
    critic_params: Any
    actor_opt: Any
    critic_opt: Any
    beta_kl: jax.Array  # [N] β_KL^i (β_2^i)
    beta_sqrt: jax.Array  # [N] β√^i (β_1^i)
    n_updates: jax.Array
    spec: EnvSpec = struct.field(pytree_node=False)


def _nets(spec: EnvSpec, config: PGConfig) -> tuple[AgentNets, AgentNets]:
    n_out = spec.n_actions if spec.discrete else spec.action_dim
    init_log_std = 0.0 if spec.discrete else config.init_log_std  # Gaussian policies only
    actor = Actor(n_out, not spec.discrete, config.hidden_sizes, config.activation, init_log_std, config.layer_norm)
    critic = Critic(config.hidden_sizes, config.activation, config.layer_norm)
    return (AgentNets(actor, spec.n_agents, config.share_parameters),
            AgentNets(critic, spec.n_agents, config.share_parameters))


def decomposed(config: PGConfig) -> bool:
    """True for a team value V_tot decomposed into the agents' local values (VDAC's "sum" and "mix" critics)."""
    return config.critic in ("sum", "mix")


def _value_mixer(spec: EnvSpec, config: PGConfig):
    """V_tot's mixer of the local values [N] and the state: Σ (VDAC-sum) or QMIX's monotonic mixer (VDAC-mix)."""
    return VDNMixer() if config.critic == "sum" else QMixer(spec.n_agents, config.mixing_embed, config.hypernet_embed)


def _optimisers(config: PGConfig):
    return (optax.adam(config.actor_lr, eps=config.adam_eps), optax.adam(config.critic_lr, eps=config.adam_eps))


def _policy(spec: EnvSpec, config: PGConfig, actor_params, obs, avail):
    """π(·|o_i) for every agent: obs [..., N, obs_dim] -> a distribution with batch shape [..., N]."""
    out = _nets(spec, config)[0].apply(actor_params, obs)
    return Categorical.masked(out, avail) if spec.discrete else DiagGaussian(*out)


def _values(spec: EnvSpec, config: PGConfig, critic_params, obs, global_state):
    """V^i(o_i) (local), V(s) seen by every agent (central), or the team's V_tot(s) seen by every agent (sum, mix):
    [..., N]."""
    if config.critic == "central":
        obs = jnp.broadcast_to(global_state[..., None, :], obs.shape[:-1] + global_state.shape[-1:])
    if not decomposed(config):
        return _nets(spec, config)[1].apply(critic_params, obs)
    local = _nets(spec, config)[1].apply(critic_params["agents"], obs)  # V^i(o_i) [..., N]
    mix = lambda v, s: _value_mixer(spec, config).apply(critic_params["mixer"], v, s)  # noqa: E731
    lead = local.shape[:-1]
    rows = local.size // spec.n_agents
    v_tot = jax.vmap(mix)(local.reshape(rows, spec.n_agents), global_state.reshape(rows, global_state.shape[-1]))
    return jnp.broadcast_to(v_tot.reshape(lead)[..., None], local.shape)


def init(key, spec: EnvSpec, config: PGConfig, model=None) -> PGState:
    actor_net, critic_net = _nets(spec, config)
    k_actor, k_critic = jax.random.split(key)
    critic_in = spec.state_dim if config.critic == "central" else spec.obs_dim
    actor_params = actor_net.init(k_actor, spec.obs_dim)
    if decomposed(config):  # the local values' networks and V_tot's mixer
        k_critic, k_mixer = jax.random.split(k_critic)
        critic_params = {"agents": critic_net.init(k_critic, critic_in), "mixer": _value_mixer(spec, config).init(
            k_mixer, jnp.zeros(spec.n_agents), jnp.zeros(spec.state_dim))}
    else:
        critic_params = critic_net.init(k_critic, critic_in)
    actor_tx, critic_tx = _optimisers(config)
    n = spec.n_agents
    return PGState(
        actor_params=actor_params, critic_params=critic_params,
        actor_opt=actor_tx.init(actor_params), critic_opt=critic_tx.init(critic_params),
        # a coefficient the loss has no term for stays 0 (the state has the same shape for every loss)
        beta_kl=jnp.full((n,), config.kl_coef_init if config.loss in ("kl", "dpo") else 0.0, jnp.float32),
        beta_sqrt=jnp.full((n,), config.sqrt_kl_coef_init if config.loss == "dpo" else 0.0, jnp.float32),
        n_updates=jnp.int32(0), spec=spec,
    )


def act(state: PGState, obs, avail_actions, key, *, explore: bool, config: PGConfig):
    """Decentralised: agent n's action depends on obs[n] (and n) only. explore: sample; else greedy / mean."""
    pi = _policy(state.spec, config, state.actor_params, obs, avail_actions)
    if explore:
        return pi.sample(key)  # continuous: unclipped (see the module docstring)
    actions = pi.mode()
    return actions if state.spec.discrete else jnp.clip(actions, state.spec.low, state.spec.high)


def policy(state: PGState, config: PGConfig):
    """Tabular games (one-hot state observations): the policy table [N, S, A] for exact evaluation."""
    return policy_table(state.spec, lambda obs, avail: _policy(state.spec, config, state.actor_params, obs,
                                                                avail).probs())


# ---- advantages ------------------------------------------------------------------------------------------


def gae(reward, values, next_values, terminated, truncated, gamma: float, lam: float):
    """GAE(γ, λ) over a window [T, E, N] (Schulman et al. 2016, eq. 16) -> (advantages, value targets).

    δ_t = r_t + γ (1 − terminated_t) V(o'_t) − V(o_t), with o'_t the true next observation (also after
    a truncation); Â_t = δ_t + γλ (1 − done_t) Â_{t+1}, so nothing flows across an episode end, and the
    window's last step keeps only its own δ (it bootstraps from V(o'_T))."""
    term = terminated[..., None].astype(jnp.float32)
    done = jnp.logical_or(terminated, truncated)[..., None].astype(jnp.float32)
    delta = reward + gamma * (1.0 - term) * next_values - values

    def backward(next_adv, x):
        delta_t, done_t = x
        adv = delta_t + gamma * lam * (1.0 - done_t) * next_adv
        return adv, adv

    _, adv = jax.lax.scan(backward, jnp.zeros_like(delta[0]), (delta, done), reverse=True)
    return adv, adv + values


def normalise_advantages(advantages, over: str):
    """Advantages [T, E, N] shifted and scaled to mean 0, std 1 over the whole batch: each agent's on its own
    (`over="agent"`), or all agents' together (`"all"`, the authors' code), which keeps the differences
    between agents."""
    axes = (0, 1) if over == "agent" else (0, 1, 2)
    mean, std = advantages.mean(axes), advantages.std(axes)
    return (advantages - mean) / (std + 1e-5)  # eps as in the MAPPO code


# ---- losses ----------------------------------------------------------------------------------------------


class Samples(NamedTuple):
    """The batch flattened to samples [B, N, ...] (B = T·E), what the minibatches are cut from."""

    obs: jax.Array
    critic_in: Any  # (obs, global_state) for `_values`
    avail: jax.Array
    actions: jax.Array
    old_pi: Any  # the distribution that collected the data
    old_logp: jax.Array
    old_values: jax.Array
    advantages: jax.Array
    returns: jax.Array


def agent_losses(spec: EnvSpec, config: PGConfig, actor_params, critic_params, beta_kl, beta_sqrt, mb: Samples):
    """Per-agent losses [N] on a minibatch (means over its samples), and their parts for logging."""
    pi = _policy(spec, config, actor_params, mb.obs, mb.avail)
    logp = pi.log_prob(mb.actions)
    ratio = jnp.exp(logp - mb.old_logp)
    adv = mb.advantages
    kl = mb.old_pi.kl(pi)  # KL(π_old(·|o) ‖ π(·|o)) per sample [B, N]
    if config.loss == "a2c":
        pg = -jnp.mean(logp * adv, 0)  # policy-gradient theorem, Â as the critic's advantage (A2C)
    elif config.loss == "clip":
        clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
        pg = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv), 0)  # PPO eq. (7)
    else:
        pg = -jnp.mean(ratio * adv, 0)  # the surrogate L^i_{π_old}(π^i): DPO eq. (7), (20)
    penalty = jnp.zeros_like(pg)
    if config.loss in ("kl", "dpo"):
        penalty += beta_kl * jnp.mean(kl, 0)  # β_2^i D_KL: DPO eq. (20); PPO eq. (8)
    if config.loss == "dpo":
        penalty += beta_sqrt * jnp.mean(safe_sqrt(kl), 0)  # β_1^i √D_KL, √ per sample: DPO eq. (20)
    entropy = jnp.mean(pi.entropy(), 0)
    actor_loss = pg + penalty - config.entropy_coef * entropy

    values = _values(spec, config, critic_params, *mb.critic_in)
    value_err = jnp.square(values - mb.returns)  # DPO eq. (8), y = the GAE return
    if config.clip_value:  # MAPPO (Yu et al. 2022): max of the plain and the clipped error
        clipped_v = mb.old_values + jnp.clip(values - mb.old_values, -config.value_clip_eps, config.value_clip_eps)
        value_err = jnp.maximum(value_err, jnp.square(clipped_v - mb.returns))
    value_loss = jnp.mean(value_err, 0)
    parts = {"policy_loss": pg, "value_loss": value_loss, "entropy": entropy, "minibatch_kl": jnp.mean(kl, 0),
             "minibatch_sqrt_kl": jnp.mean(safe_sqrt(kl), 0)}
    if config.loss == "clip":  # the share of samples whose ratio the clip cut
        parts["clip_frac"] = jnp.mean((jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32), 0)
    return actor_loss, config.value_coef * value_loss, parts


def agent_shuffle_index(key, n_batch: int, n_agents: int, n_minibatches: int) -> jax.Array:
    """The authors' minibatches (AUTHORS, `agent_shuffle`): indices into the B·N (sample, agent) pairs of a
    batch flattened sample-major, as [n_minibatches, B / n_minibatches, N]. One permutation of all B·N pairs,
    cut into minibatches and each reshaped to [-1, N]; column i is what actor (and critic) i trains on."""
    perm = permutation(key, n_batch * n_agents)
    return perm.reshape(n_minibatches, n_batch // n_minibatches, n_agents)


def adapt_coef(beta, measured, target, config: PGConfig):
    """DPO eq. (21) (PPO's adaptive KL rule): ×ω when measured > target·δ, ÷ω when < target/δ, then
    clipped to [coef_min, coef_max]; a coefficient at 0 is switched off and stays 0."""
    beta = jnp.where(measured > target * config.adapt_delta, beta * config.adapt_omega,
                     jnp.where(measured < target / config.adapt_delta, beta / config.adapt_omega, beta))
    return jnp.where(beta > 0.0, jnp.clip(beta, config.coef_min, config.coef_max), 0.0)


def clip_grad_norm(grads, max_norm: float, per_agent: bool):
    """Scale gradients to norm <= max_norm: over the whole tree, or for each agent's slice of stacked params."""
    leaves = jax.tree.leaves(grads)
    if per_agent:
        sq = sum(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1) for g in leaves)  # [N]
    else:
        sq = sum(jnp.sum(jnp.square(g)) for g in leaves)
    norm = jnp.sqrt(sq)
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    scaled = jax.tree.map(lambda g: g * jnp.reshape(scale, scale.shape + (1,) * (g.ndim - scale.ndim)), grads)
    return scaled, norm


# ---- update ----------------------------------------------------------------------------------------------


def update(state: PGState, data, key, *, config: PGConfig):
    spec = state.spec
    n_batch = data.reward.shape[0] * data.reward.shape[1]
    per_agent = not config.share_parameters
    old_pi = _policy(spec, config, state.actor_params, data.obs, data.avail_actions)
    values = _values(spec, config, state.critic_params, data.obs, data.global_state)
    next_values = _values(spec, config, state.critic_params, data.next_obs, data.next_global_state)
    # a team value learns from the team reward (the same as each agent's on a shared-reward env)
    reward = jnp.broadcast_to(data.team[..., None], data.reward.shape) if decomposed(config) else data.reward
    advantages, returns = gae(reward, values, next_values, data.terminated, data.truncated,
                              config.gamma, config.gae_lambda)
    if config.normalize_advantages:
        advantages = normalise_advantages(advantages, config.advantage_norm)
    flat = lambda x: jnp.reshape(x, (n_batch,) + x.shape[2:])  # noqa: E731
    samples = jax.tree.map(flat, Samples(
        obs=data.obs, avail=data.avail_actions, actions=data.actions,
        # the critic's input; a local critic needs no global state (not carried through the shuffles)
        critic_in=(data.obs, data.global_state if config.critic in ("central", "mix") else data.obs[..., :0]),
        old_pi=old_pi, old_logp=old_pi.log_prob(data.actions), old_values=values,
        advantages=advantages, returns=returns,
    ))
    actor_tx, critic_tx = _optimisers(config)
    reduce = jnp.sum if per_agent else jnp.mean  # per agent: agent i's gradient is that of its own loss
    # a team value's loss is one loss (its N copies, one per agent, are the same): never summed, never clipped per agent
    reduce_value, per_agent_critic = (jnp.mean, False) if decomposed(config) else (reduce, per_agent)

    def minibatch_step(carry, mb):
        actor_params, critic_params, actor_opt, critic_opt = carry

        def total(ap, cp):
            actor_loss, value_loss, parts = agent_losses(spec, config, ap, cp, state.beta_kl, state.beta_sqrt, mb)
            return reduce(actor_loss) + reduce_value(value_loss), parts

        (_, parts), (g_actor, g_critic) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
            actor_params, critic_params)
        g_actor, actor_norm = clip_grad_norm(g_actor, config.max_grad_norm, per_agent)
        g_critic, critic_norm = clip_grad_norm(g_critic, config.max_grad_norm, per_agent_critic)
        step, actor_opt = actor_tx.update(g_actor, actor_opt, actor_params)
        actor_params = optax.apply_updates(actor_params, step)
        step, critic_opt = critic_tx.update(g_critic, critic_opt, critic_params)
        critic_params = optax.apply_updates(critic_params, step)
        per_column = (parts["minibatch_kl"], parts.pop("minibatch_sqrt_kl"))  # [N] each: for kl_measure
        parts = {k: jnp.mean(v) for k, v in parts.items()}
        parts.update(actor_grad_norm=jnp.mean(actor_norm), critic_grad_norm=jnp.mean(critic_norm))
        return (actor_params, critic_params, actor_opt, critic_opt), (parts, per_column)

    def epoch(carry, k):
        if config.agent_shuffle:  # the authors' buffer: (sample, agent) pairs shuffled together (AUTHORS)
            index = agent_shuffle_index(k, n_batch, spec.n_agents, config.n_minibatches)  # [M, B/M, N]
            pairs = n_batch * spec.n_agents
            shuffled = jax.tree.map(lambda x: jnp.reshape(x, (pairs,) + x.shape[2:])[index], samples)
        else:
            perm = permutation(k, n_batch)  # fast_random: one sort of 64-bit keys (jax.random.permutation: two)
            shuffled = jax.tree.map(
                lambda x: jnp.reshape(x[perm], (config.n_minibatches, n_batch // config.n_minibatches) + x.shape[1:]),
                samples)
        return jax.lax.scan(minibatch_step, carry, shuffled)

    carry = (state.actor_params, state.critic_params, state.actor_opt, state.critic_opt)
    (actor_params, critic_params, actor_opt, critic_opt), (parts, per_column) = jax.lax.scan(
        epoch, carry, jax.random.split(key, config.n_epochs))

    # DPO eq. (21), once per update: the mean KL(π_old ‖ π_new) of each agent over the batch
    kl = old_pi.kl(_policy(spec, config, actor_params, data.obs, data.avail_actions))  # [T, E, N]
    if config.loss in ("kl", "dpo") and config.kl_measure == "last_minibatch":
        # the authors': each actor's column of the last minibatch, measured before its gradient step (AUTHORS)
        mean_kl, mean_sqrt_kl = per_column[0][-1, -1], per_column[1][-1, -1]
    else:
        mean_kl, mean_sqrt_kl = kl.mean((0, 1)), safe_sqrt(kl).mean((0, 1))
    beta_kl, beta_sqrt = state.beta_kl, state.beta_sqrt
    if config.loss in ("kl", "dpo"):
        if not config.per_agent_coefs:
            mean_kl, mean_sqrt_kl = (jnp.broadcast_to(x.mean(), x.shape) for x in (mean_kl, mean_sqrt_kl))
        beta_kl = adapt_coef(beta_kl, mean_kl, config.kl_target, config)
    if config.loss == "dpo" and config.sqrt_kl_coef_init != 0.0:  # a β√ started at 0 stays 0 (dpo-no-sqrt)
        if config.sqrt_coef_rule == "sqrt_target":
            beta_sqrt = adapt_coef(beta_sqrt, mean_sqrt_kl, jnp.sqrt(config.kl_target), config)
        else:
            beta_sqrt = adapt_coef(beta_sqrt, mean_kl, config.kl_target, config)

    new_state = state.replace(actor_params=actor_params, critic_params=critic_params, actor_opt=actor_opt,
                              critic_opt=critic_opt, beta_kl=beta_kl, beta_sqrt=beta_sqrt,
                              n_updates=state.n_updates + 1)
    metrics = {k: jnp.mean(v) for k, v in parts.items()}
    metrics.update(kl=jnp.mean(kl), sqrt_kl=jnp.mean(safe_sqrt(kl)), advantage_std=jnp.std(advantages))
    if config.loss in ("kl", "dpo"):  # the coefficients in use (means over agents)
        metrics["beta_kl"] = jnp.mean(beta_kl)
    if config.loss == "dpo":
        metrics["beta_sqrt"] = jnp.mean(beta_sqrt)
    return new_state, metrics


# ---- registration ----------------------------------------------------------------------------------------

_PRESETS = (
    ("ia2c", IA2CConfig, "independent A2C: decentralised critics V(o_i), EPyMARL defaults", "EPyMARL ia2c"),
    ("maa2c", MAA2CConfig, "multi-agent A2C: centralised critic V(s), EPyMARL defaults", "EPyMARL maa2c"),
    ("ippo", IPPOConfig, "independent PPO (ratio clip), per-agent networks, DPO paper's settings",
     "de Witt et al. 2020; DPO App. B"),
    ("ippo-kl", IPPOKLConfig, "independent PPO with the adaptive KL penalty (PPO eq. 8), DPO's settings",
     "Schulman et al. 2017 §4; DPO App. C"),
    ("vdac-sum", VDACSumConfig, "VDAC-sum: A2C with the team value V_tot = Σ_i V^i(o_i) as every actor's critic",
     "Su, Adams & Beling 2021; authors' code (VDACs vdn_a2c.yaml)"),
    ("vdac-mix", VDACMixConfig, "VDAC-mix: A2C with V_tot = QMIX-style monotonic mix of V^i(o_i) and the state",
     "Su, Adams & Beling 2021; authors' code (VDACs vmix_a2c.yaml)"),
    ("mappo", MAPPOConfig, "MAPPO: ratio clip, centralised critic V(s), shared parameters (EPyMARL defaults)",
     "Yu et al. 2022; EPyMARL mappo"),
    ("dpo", DPOConfig, "DPO: -ρÂ + β√·√KL + β_KL·KL with adaptive per-agent β (eq. 20-21), no sharing",
     "DPO (Su & Lu) eq. (20), (21), Alg. 1"),
    ("dpo-no-sqrt", DPONoSqrtConfig, "DPO ablation w/o sqrt (β√ = 0; = IPPO-KL)", "DPO §4.5"),
    ("dpo-no-kl", DPONoKLConfig, "DPO ablation w/o kl (β_KL = 0)", "DPO §4.5"),
)

ALGOS: dict[str, Algorithm] = {}
for _name, _cls, _description, _paper in _PRESETS:
    ALGOS[_name] = register_algo(Algorithm(
        name=_name, description=_description, config_cls=_cls, init=init, act=act, update=update, policy=policy,
        requires=("discrete", "continuous"), paper=_paper,
    ))
