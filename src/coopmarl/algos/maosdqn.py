"""MAOSDQN — Multi-Agent Optimistic Soft Deep Q-learning (MAOSQL paper, Alg. 3, Sec. 3.3, App. C).

Two networks, as the paper writes them:
- a centralised critic Q̃_θ(s, a) that takes the global state and the *joint action* (one-hot per agent)
  as input and returns one value;
- decentralised actors Q̂_ψ^n(o_n, ·) (EPyMARL agents with a dueling head, parameters shared with a
  one-hot id unless switched off) whose softmax with temperature 1/α is agent n's policy
  π^n(a|o) ∝ exp(α Q̂^n(o, a)); a soft-updated copy ψ̄ is the target.

Losses on a replay batch (each a line below, citing the paper):
    L_Q̃(θ) = ½ (Q̃_θ(s, a) − r − γ (1/N) Σ_n (1/α) log Σ_{a^n} e^{α Q̂^n(s′, a^n)})²
    L_Q̂(ψ) = E_{a ~ ζ_ψ̄} (1/N) Σ_n (e^{βQ̂^n(s, a^n)} − e^{βQ̃(s, a)})² / (2β sg(e^{βQ̂^n(s, a^n)}))
             (so ∇_ψ L_Q̂ = (1/N) Σ_n (e^{βQ̂^n} − e^{βQ̃}) ∇_ψ Q̂^n — the optimistic, log-E-exp update of Alg. 2)
    L_extra(ψ) = [max(Q̂^n(s, a*^n) − Q̃_θ(s, a*), 0)]²,  a*^n = argmax Q̂^n(s, ·)
ζ_ψ̄ = ε/|A| + (1 − ε)·π_ψ̄ (the ε-decentralised softmax); the actions of L_Q̂ are drawn from it afresh
for each replayed state — not the stored ones. One Adam over (θ, ψ) with the summed loss equals two
Adams (Adam is per-parameter); stop-gradients route each loss to its own network.

App. C's tricks: reward standardisation (core), dueling actors, and double Q in the sense that the
critic's bootstrap uses the target actors ψ̄ while the online ψ picks a*. Behaviour: ε-softmax with
ε_b annealed 1.0 → 0.05 over 5,000 steps (App. C).

Float32 safety: e^{βQ} overflows once βQ > 88. With `exp_shift` (default) ψ's two losses, L_Q̂ and
L_extra, are both multiplied by the constant e^{−βm}, m = the batch's largest sampled Q̂ or Q̃ (no
gradient): ψ's gradient keeps the paper's direction — including L_Q̂'s dominance over L_extra when
βQ is large — and only its length changes, which Adam's normalisation absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, register_algo


@dataclass(frozen=True)
class MAOSDQNConfig(op.OffPolicyConfig):
    """Defaults: MAOSQL paper App. C for the tensor and matrix games (α=50, β=10, ε=0.05); on LBF the
    paper uses α=20, β=1, ε=0.5. The rest is EPyMARL's (the paper's code base, same buffer/optimiser
    as its QMIX baseline)."""

    entropy_alpha: float = 50.0  # α: policy π^n ∝ exp(α Q̂^n) (temperature 1/α); App. C (games)
    optimism_beta: float = 10.0  # β: Q̂^n → (1/β) log E_{a^{-n} ~ ζ} e^{β Q̃}; App. C (games)
    zeta_epsilon: float = 0.05  # ε of ζ = ε/|A| + (1 − ε) π in L_Q̂; App. C (games)
    critic_hidden_sizes: tuple[int, ...] = (128, 128)  # Q̃_θ(s, a) on [state, one-hot joint action]; the paper gives no widths
    dueling: bool = True  # App. C: dueling actors
    exp_shift: bool = True  # rescale L_Q̂ by e^{−β max Q} against float32 overflow (see module doc)
    target_tau: float = 0.01  # soft target ψ̄ ← η̄ψ + (1 − η̄)ψ̄ (Alg. 3; η̄ not given in the paper)
    epsilon_anneal_steps: int = 5_000  # behaviour ε_b 1.0 → 0.05 over 5k steps (App. C)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "entropy_alpha", "optimism_beta")
        fields.in_unit_interval(self, "zeta_epsilon")
        fields.layer_widths(self, "critic_hidden_sizes")


class Critic(nn.Module):
    """Q̃_θ(s, a): the joint action enters as input, so the output is one value (not |A|^N)."""

    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, state, joint_onehot):
        h = jnp.concatenate([state, joint_onehot.reshape(-1)])
        for width in self.hidden_sizes:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(1)(h)[0]


def _agents(n, obs_dim, n_actions, config):
    return op.agents_for(n, obs_dim, n_actions, config, dueling=config.dueling)


def initial_carry(spec, config):
    return _agents(spec.n_agents, spec.obs_dim, spec.n_actions, config).initial_carry()


def init(key, spec, config, model=None):
    agents = _agents(spec.n_agents, spec.obs_dim, spec.n_actions, config)
    k_actor, k_critic = jax.random.split(key)
    params = {
        "actors": agents.init(k_actor),
        "critic": Critic(config.critic_hidden_sizes).init(
            k_critic, jnp.zeros(spec.state_dim), jnp.zeros((spec.n_agents, spec.n_actions))),
    }
    return op.init_state(params, spec, config, agents.initial_carry())


def softmax_policy(q, avail, alpha):
    """π^n(·|o) ∝ exp(α Q̂^n(o, ·)) over the available actions."""
    return jax.nn.softmax(jnp.where(avail, alpha * q, -jnp.inf), axis=-1)


def zeta(q, avail, alpha, eps):
    """ζ^n = ε/|A_avail| + (1 − ε) π^n — the ε-decentralised softmax (MAOSQL Sec. 3.3)."""
    n_avail = jnp.maximum(jnp.sum(avail, -1, keepdims=True), 1)
    return eps * avail / n_avail + (1.0 - eps) * softmax_policy(q, avail, alpha)


def act(state, obs, avail_actions, key, *, carry, explore, config):
    agents = _agents(*obs.shape, avail_actions.shape[-1], config)
    carry, q = agents.apply(state.params["actors"], carry, obs)
    if not explore:
        return op.masked_argmax(q, avail_actions), carry
    probs = zeta(q, avail_actions, config.entropy_alpha, op.epsilon(config, state.env_steps))
    keys = jax.random.split(key, obs.shape[0])
    actions = jax.vmap(lambda k, p: jax.random.categorical(k, jnp.log(p)))(keys, probs)
    return actions.astype(jnp.int32), carry


def soft_value(q, avail, alpha):
    """(1/α) log Σ_a e^{α Q̂(·, a)} over available actions."""
    return jax.nn.logsumexp(jnp.where(avail, alpha * q, -jnp.inf), axis=-1) / alpha


def optimistic_actor_loss(q_hat, q_tilde, beta, shift=0.0):
    """L_Q̂ per sample (MAOSQL Sec. 3.3), q_hat [..., N] = Q̂^n(s, a^n), q_tilde [...] = Q̃(s, a) (no grad).

    (e^{βQ̂} − e^{βQ̃})² / (2β sg(e^{βQ̂})), averaged over agents. Exponents are taken relative to
    `shift` = m, which makes the gradient exactly e^{−βm}·(e^{βQ̂} − e^{βQ̃})∇Q̂ / N."""
    q_tilde = jax.lax.stop_gradient(q_tilde)[..., None]
    e_hat, e_tilde = jnp.exp(beta * (q_hat - shift)), jnp.exp(beta * (q_tilde - shift))
    per_agent = (e_hat - e_tilde) ** 2 / (2.0 * beta * jax.lax.stop_gradient(e_hat))
    return jnp.mean(per_agent, -1)


def exp_shift(q_hat, q_tilde, config):
    """m: the batch's largest Q̂ or Q̃ when `exp_shift` is on (no gradient), else 0."""
    if not config.exp_shift:
        return 0.0
    return jax.lax.stop_gradient(jnp.maximum(jnp.max(q_hat), jnp.max(q_tilde)))


def loss_fn(params, target_params, batch, key, config, env_steps):
    n, n_actions = batch.obs.shape[-2], batch.avail_actions.shape[-1]
    agents = _agents(n, batch.obs.shape[-1], n_actions, config)
    critic = Critic(config.critic_hidden_sizes)
    q_crit = jax.vmap(jax.vmap(lambda p, s, u: critic.apply(p, s, jax.nn.one_hot(u, n_actions)),
                               in_axes=(None, 0, 0)), in_axes=(None, 0, 0))
    avail, next_avail = batch.avail_actions, batch.next_avail_actions
    q_hat, _ = op.unroll_batch(agents, params["actors"], batch)  # online ψ at o_t   [B, T, N, A]
    tq_hat, tq_hat_next = op.unroll_batch(agents, target_params["actors"], batch)  # ψ̄
    tq_hat, tq_hat_next = jax.lax.stop_gradient(tq_hat), jax.lax.stop_gradient(tq_hat_next)

    # L_Q̃(θ): soft TD target from the target actors' log-sum-exp, averaged over agents
    next_value = jnp.mean(soft_value(tq_hat_next, next_avail, config.entropy_alpha), -1)  # [B, T]
    target = jax.lax.stop_gradient(op.batch_lambda_returns(batch, next_value, config))
    q_tilde = q_crit(params["critic"], batch.global_state, batch.actions)
    critic_loss = 0.5 * jnp.mean((q_tilde - target) ** 2)

    critic_params = jax.lax.stop_gradient(params["critic"])
    # L_Q̂(ψ): a ~ ζ_ψ̄(·|s), drawn afresh for every replayed state
    probs = zeta(tq_hat, avail, config.entropy_alpha, config.zeta_epsilon)
    sampled = jax.random.categorical(key, jnp.log(probs), axis=-1).astype(jnp.int32)  # [B, T, N]
    q_hat_sampled = jnp.take_along_axis(q_hat, sampled[..., None], -1)[..., 0]  # [B, T, N]
    q_tilde_sampled = q_crit(critic_params, batch.global_state, sampled)  # [B, T]
    m = exp_shift(q_hat_sampled, q_tilde_sampled, config)
    actor_loss = jnp.mean(optimistic_actor_loss(q_hat_sampled, q_tilde_sampled, config.optimism_beta, m))

    # L_extra(ψ): no agent's value of its greedy action above the critic's value of the greedy joint action
    greedy = op.masked_argmax(jax.lax.stop_gradient(q_hat), avail)
    q_hat_greedy = jnp.take_along_axis(q_hat, greedy[..., None], -1)[..., 0]
    q_tilde_greedy = q_crit(critic_params, batch.global_state, greedy)
    extra_loss = jnp.mean(jnp.maximum(q_hat_greedy - q_tilde_greedy[..., None], 0.0) ** 2)
    extra_loss = extra_loss * jnp.exp(-config.optimism_beta * m)  # the same e^{−βm} as L_Q̂: ψ's step keeps its direction

    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "extra_loss": extra_loss,
               "q_tilde": jnp.mean(q_tilde), "q_hat_greedy": jnp.mean(q_hat_greedy)}
    return critic_loss + actor_loss + extra_loss, metrics


update = op.make_update(loss_fn)

register_algo(Algorithm(
    name="maosdqn",
    description="MAOSDQN: centralised joint-action critic + optimistic soft decentralised actors (Alg. 3)",
    config_cls=MAOSDQNConfig, init=init, act=act, update=update, requires=("discrete",),
    paper="MAOSQL (paper 000) Alg. 3, Sec. 3.3, App. C", initial_carry=initial_carry,
    summary=lambda config, env: {"entropy_alpha": config.entropy_alpha, "optimism_beta": config.optimism_beta},
    default_total_steps=200_000,
))
