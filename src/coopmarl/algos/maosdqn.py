"""MAOSDQN — Multi-Agent Optimistic Soft Deep Q-learning (MAOSQL paper, Alg. 3, Sec. 3.3, App. C).

Two networks, as the paper writes them:
- a centralised critic Q̃_θ(s, a) that takes the global state and the *joint action* (one-hot per agent)
  as input and returns one value;
- decentralised actors Q̂_ψ^n(o_n, ·) (EPyMARL agents with a dueling head, parameters shared with a
  one-hot id unless switched off) whose softmax with temperature 1/α is agent n's policy
  π^n(a|o) ∝ exp(α Q̂^n(o, a)); a soft-updated copy ψ̄ is the target.

Losses on a replay batch (each a line below, citing the paper; Sec. 3.3 numbers no equations):
    L_Q̃(θ) = ½ (Q̃_θ(s, a) − r − γ (1/N) Σ_n (1/α) log Σ_{a^n} e^{α Q̂^n(s′, a^n)})²
    L_Q̂(ψ) = E_{a ~ ζ_ψ̄} (1/N) Σ_n (e^{βQ̂^n(s, a^n)} − e^{βQ̃(s, a)})² / (2β sg(e^{βQ̂^n(s, a^n)}))
             so ∇_ψ L_Q̂ = E_{a ~ ζ_ψ̄} (1/N) Σ_n (e^{βQ̂^n} − e^{βQ̃}) ∇_ψ Q̂^n
             (the optimistic, log-E-exp update of Alg. 2)
    L_extra(ψ) = [max(Q̂^n(s, a*^n) − Q̃_θ(s, a*), 0)]²,  a*^n = argmax Q̂^n(s, ·)
ζ_ψ̄ = ε/|A| + (1 − ε)·π_ψ̄ per agent (the ε-softmax; a product over agents, as the behaviour policy — the
paper's ζ̂ mixes over *joint* actions, which for N = 2 gives the same ζ^{-n} and for N = 3 differs at O(ε)).

`qhat_estimator` says how E_{a ~ ζ_ψ̄} in L_Q̂ is computed:
- "sample": one a ~ ζ_ψ̄ drawn afresh for every replayed state (not the stored action): the paper's estimator;
- "exact": the expectation itself, by enumerating the joint actions: Σ_{a^n} ζ^n(a^n) (e^{βQ̂^n(s, a^n)} −
  E_{a^{-n} ~ ζ^{-n}} e^{βQ̃(s, a^n, a^{-n})}) ∇Q̂^n — the same expected gradient without the sampling noise
  (a rare optimal joint action, 1 in ~3,600 samples on RO 3x3, enters every batch with its weight);
- "auto" (default): exact when the joint action space has at most `EXACT_MAX_JOINT_ACTIONS` (32) joint actions
  (the didactic games: 9, 27), else sample (LBF: ≥ 36). Exact costs |A|^N critic passes per replayed state,
  sample one.

App. C's tricks: reward standardisation (core), dueling actors, and double Q in the sense that the
critic's bootstrap uses the target actors ψ̄ while the online ψ picks a*. Behaviour: ε-softmax with
ε_b annealed 1.0 → 0.05 over 5,000 steps (App. C).

The update follows the paper's gradients (Alg. 3: θ ← θ − η_θ ∇L_Q̃, ψ ← ψ − η_ψ (∇L_Q̂ + ∇L_extra)):
- Float32: e^{βQ} overflows once βQ > 88. With `exp_shift` (default) every exponent of L_Q̂ is taken relative
  to a constant c (no gradient), and L_extra is multiplied by the same e^{−βc}, so ψ's gradient is exactly
  e^{−βc}·(∇L_Q̂ + ∇L_extra): the paper's direction, L_Q̂'s weight against L_extra and every sample's weight
  against the others unchanged. c must not depend on the batch's *sampled* actions: a c taken from them (the
  largest sampled Q, as this code once did) gives the batch holding a rare optimistic sample the same size of
  update as an ordinary batch — not the paper's gradient in expectation, and Adam does not undo it. c is the
  target actors' largest greedy value in the batch, max Q̂_ψ̄ (ψ̄ moves slowly, so e^{−βc} is a slowly varying
  positive factor that Adam's normalisation absorbs), raised only where a value to exponentiate exceeds it by
  more than `EXP_HEADROOM`/β (there float32 comes first).
- Clipping: `max_grad_norm` clips the critic's gradient by its own norm (EPyMARL's clip, on L_Q̃'s TD
  gradient); ψ's gradient is not clipped. One global-norm clip over θ and ψ together (as this code once did)
  let the size of ψ's exponential gradient — arbitrary up to the factor e^{−βc} — decide how much of either
  step survives, and a clip of ψ's own gradient would cut exactly the rare large optimistic terms that L_Q̂'s
  exponential weighting exists to keep (and would depend on c). The paper gives θ and ψ separate step sizes
  and no clipping (Alg. 3). One Adam over (θ, ψ) equals two Adams (Adam is per-parameter); stop-gradients
  route each loss to its own network.

Measured (8 seeds x 20k env steps, `coopmarl train maosdqn GAME total_steps=20000 --seeds 8`; seeds at the exact
optimum by final greedy return): RO 3x3 8/8 (seeds 8-15: 8/8; sample estimator 8/8), tensor 7/8 (seeds 8-15:
6/8; sample 5/8), three-state 0/8 (exact or sample, also at 100k steps or 8x the updates). Before (sampled
shift, one global clip): RO 3/8, tensor 4/8. Each fix alone leaves the sampled estimator at 3/8 on RO; with
the exact estimator the shift alone suffices. Three-state: the paper's ∇L_Q̂ weights each replayed state by
e^{βV(s)} (a state 2 standardised units below the best gets e^{−20}), so the shared actors fit the best state
and play its action everywhere (greedy return ~3.7); taking c per state instead (not the paper's gradient)
lifts 5/8 seeds to 6.6-7.0 at 100k steps (1/8 exactly 7) — near tabular MAOSQL's own fixed points at α = 50,
β = 10, which are not always optimal either (4 random starts: 7, 7, 6.8, 5.9).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, over_rows, register_algo, taken
from coopmarl.nets.dense import Dense

EXACT_MAX_JOINT_ACTIONS = 32  # qhat_estimator="auto": exact up to this many joint actions (see the module doc)
EXP_HEADROOM = 20.0  # the largest β(Q − c) exponentiated: e^20 ≈ 5e8, whose square (Adam's moment) fits float32


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
    qhat_estimator: Literal["auto", "exact", "sample"] = "auto"  # E_{a~ζ} of L_Q̂ sampled or enumerated; auto: exact to 32 joint actions
    exp_shift: bool = True  # float32: L_Q̂'s exponents relative to c = max Q̂_ψ̄, ψ's loss ×e^{−βc} (module doc)
    max_grad_norm: float = 10.0  # clips the critic's gradient by its own norm (EPyMARL 10); ψ's unclipped (Alg. 3)
    target_tau: float = 0.01  # soft target ψ̄ ← η̄ψ + (1 − η̄)ψ̄ (Alg. 3; η̄ not given in the paper)
    epsilon_anneal_steps: int = 5_000  # behaviour ε_b 1.0 → 0.05 over 5k steps (App. C)

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "entropy_alpha", "optimism_beta")
        fields.in_unit_interval(self, "zeta_epsilon")
        fields.layer_widths(self, "critic_hidden_sizes")

    @property
    def clipped_params(self) -> tuple[str, ...]:
        """`max_grad_norm` clips θ (the critic) by its own norm, not ψ (offpolicy.gradient_clip; module doc)."""
        return ("critic",)


class Critic(nn.Module):
    """Q̃_θ(s, a): the joint action enters as input, so the output is one value (not |A|^N)."""

    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, state, joint_onehot):
        h = jnp.concatenate([state, joint_onehot.reshape(-1)])
        for width in self.hidden_sizes:
            h = nn.relu(Dense(width)(h))
        return Dense(1)(h)[0]


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
        actions = op.masked_argmax(q, avail_actions)
    else:
        probs = zeta(q, avail_actions, config.entropy_alpha, op.epsilon(config, state.env_steps))
        keys = jax.random.split(key, obs.shape[0])
        actions = jax.vmap(lambda k, p: jax.random.categorical(k, jnp.log(p)))(keys, probs).astype(jnp.int32)
    return actions, agents.with_action(carry, actions)


def soft_value(q, avail, alpha):
    """(1/α) log Σ_a e^{α Q̂(·, a)} over available actions."""
    return jax.nn.logsumexp(jnp.where(avail, alpha * q, -jnp.inf), axis=-1) / alpha


def estimator(config, n_agents: int, n_actions: int) -> str:
    """"exact" or "sample": `qhat_estimator`, with "auto" resolved by the joint action space's size."""
    if config.qhat_estimator != "auto":
        return config.qhat_estimator
    return "exact" if n_actions**n_agents <= EXACT_MAX_JOINT_ACTIONS else "sample"


def optimistic_terms(q_hat, q_target, beta, shift=0.0):
    """L_Q̂'s summand for each pair (Q̂^n(s, a^n), target), in units of e^{βc}, c = `shift`:
    value (e^{β(Q̂−c)} − e^{β(Q̃−c)})² / (2β sg(e^{β(Q̂−c)})) and gradient exactly (e^{β(Q̂−c)} − e^{β(Q̃−c)})∇Q̂
    (MAOSQL Sec. 3.3, ∇_ψ L_Q̂). The target is e^{βQ̃(s, a)} for a sampled a, or E_{a^{-n}} e^{βQ̃} written as
    e^{βQ*} with Q* = (1/β) log E e^{βQ̃} (no gradient either way).

    The gradient is taken from the surrogate sg(e^{β(Q̂−c)} − e^{β(Q*−c)})·Q̂, which has the paper's gradient
    without its division by sg(e^{βQ̂}) (0/0 once e^{β(Q̂−c)} underflows); the value, for the logs, is the
    paper's, as (e^{u} − e^{v})²/(2β) with u = β(Q̂−c)/2, v = β(Q*−c) − u (v capped so it stays finite)."""
    q_target = jax.lax.stop_gradient(q_target)
    x, y = beta * (q_hat - shift), beta * (q_target - shift)
    weight = jax.lax.stop_gradient(jnp.exp(x) - jnp.exp(y))
    u = jax.lax.stop_gradient(x) / 2
    value = (jnp.exp(u) - jnp.exp(jnp.minimum(y - u, 40.0))) ** 2 / (2.0 * beta)
    return jax.lax.stop_gradient(value) + weight * (q_hat - jax.lax.stop_gradient(q_hat))


def optimistic_actor_loss(q_hat, q_tilde, beta, shift=0.0):
    """L_Q̂ per sampled joint action (MAOSQL Sec. 3.3), q_hat [..., N] = Q̂^n(s, a^n), q_tilde [...] = Q̃(s, a)
    (no grad): `optimistic_terms` averaged over agents, so the gradient is e^{−βc}·(e^{βQ̂} − e^{βQ̃})∇Q̂ / N."""
    return jnp.mean(optimistic_terms(q_hat, q_tilde[..., None], beta, shift), -1)


def exp_shift(q_hat, q_tilde, config, level=None):
    """c, the shift of L_Q̂'s exponents (no gradient); 0 when `exp_shift` is off. With a `level` (the target
    actors' largest greedy value in the batch, `loss_fn`), c = max(level, M − EXP_HEADROOM/β), M = the largest
    of the values exponentiated (`q_hat`, `q_tilde`): the level, unless float32 needs more. Without a level,
    c = M (the batch's largest value: a c that depends on the sampled actions; see the module doc)."""
    if not config.exp_shift:
        return 0.0
    top = jax.lax.stop_gradient(jnp.maximum(jnp.max(q_hat), jnp.max(q_tilde)))
    if level is None:
        return top
    return jnp.maximum(jax.lax.stop_gradient(level), top - EXP_HEADROOM / config.optimism_beta)


def joint_actions(n_agents: int, n_actions: int) -> jax.Array:
    """Every joint action [n_actions**n_agents, N], agent 0's action slowest (the row-major order of a table)."""
    return jnp.array(list(itertools.product(range(n_actions), repeat=n_agents)), jnp.int32)


def optimistic_targets(q_tilde_table, zeta_probs, beta):
    """Q*^n(s, a^n) = (1/β) log E_{a^{-n} ~ ζ^{-n}} e^{βQ̃(s, a^n, a^{-n})} for every agent and action (Alg. 2's
    update of Q̂, with ζ^{-n} = Π_{m≠n} ζ^m), by enumeration. q_tilde_table [..., A, ..., A] (one axis per agent),
    zeta_probs [..., N, A] -> [..., N, A]. Log-sum-exp keeps it finite in float32."""
    n = zeta_probs.shape[-2]
    lead = q_tilde_table.ndim - n
    log_zeta = jnp.log(zeta_probs)  # −inf on unavailable actions: they drop out of the sum
    out = []
    for agent in range(n):
        logits = beta * q_tilde_table
        for other in range(n):
            if other != agent:
                shape = [1] * n
                shape[other] = -1
                logits = logits + log_zeta[..., other, :].reshape(log_zeta.shape[:-2] + tuple(shape))
        others = tuple(lead + m for m in range(n) if m != agent)
        out.append(jax.nn.logsumexp(logits, axis=others) / beta)
    return jnp.stack(out, -2)


def loss_fn(params, target_params, batch, key, config, env_steps):
    n, n_actions = batch.obs.shape[-2], batch.avail_actions.shape[-1]
    agents = _agents(n, batch.obs.shape[-1], n_actions, config)
    critic = Critic(config.critic_hidden_sizes)
    q_crit = lambda p, states, actions: over_rows(  # noqa: E731  [B, T]
        lambda s, u: critic.apply(p, s, jax.nn.one_hot(u, n_actions)), states, actions, lead=2)
    avail, next_avail = batch.avail_actions, batch.next_avail_actions
    (q_hat, _), (tq_hat, tq_hat_next) = op.unroll_batches(  # online ψ at o_t [B, T, N, A]; target ψ̄
        agents, (params["actors"], target_params["actors"]), batch)
    tq_hat, tq_hat_next = jax.lax.stop_gradient(tq_hat), jax.lax.stop_gradient(tq_hat_next)

    # L_Q̃(θ): soft TD target from the target actors' log-sum-exp, averaged over agents
    next_value = jnp.mean(soft_value(tq_hat_next, next_avail, config.entropy_alpha), -1)  # [B, T]
    target = jax.lax.stop_gradient(op.batch_lambda_returns(batch, next_value, config))
    q_tilde = q_crit(params["critic"], batch.global_state, batch.actions)
    critic_loss = 0.5 * jnp.mean((q_tilde - target) ** 2)

    critic_params = jax.lax.stop_gradient(params["critic"])
    beta = config.optimism_beta
    probs = zeta(tq_hat, avail, config.entropy_alpha, config.zeta_epsilon)  # ζ_ψ̄^n(·|s)  [B, T, N, A]
    level = jnp.max(op.masked_max(tq_hat, avail))  # c's level: the target actors' largest greedy value
    if estimator(config, n, n_actions) == "exact":
        # L_Q̂(ψ) with E_{a ~ ζ_ψ̄} enumerated: Σ_{a^n} ζ^n(a^n) [e^{βQ̂^n(a^n)} vs E_{a^{-n} ~ ζ^{-n}} e^{βQ̃(a)}]
        joint = joint_actions(n, n_actions)  # [|A|^N, N]
        table = over_rows(lambda s: jax.vmap(lambda u: critic.apply(
            critic_params, s, jax.nn.one_hot(u, n_actions)))(joint), batch.global_state, lead=2)  # [B, T, |A|^N]
        table = table.reshape(table.shape[:-1] + (n_actions,) * n)
        q_star = optimistic_targets(table, probs, beta)  # [B, T, N, A]
        c = exp_shift(jnp.where(avail, q_hat, -jnp.inf), jnp.where(avail, q_star, -jnp.inf), config, level)
        q_hat_used = jnp.where(avail, q_hat, jax.lax.stop_gradient(c))  # unavailable: weight 0, kept finite
        terms = optimistic_terms(q_hat_used, jnp.where(avail, q_star, c), beta, c)  # [B, T, N, A]
        actor_loss = jnp.mean(jnp.sum(jax.lax.stop_gradient(probs) * terms, -1))
    else:
        # L_Q̂(ψ): a ~ ζ_ψ̄(·|s), drawn afresh for every replayed state
        sampled = jax.random.categorical(key, jnp.log(probs), axis=-1).astype(jnp.int32)  # [B, T, N]
        q_hat_sampled = taken(q_hat, sampled)  # [B, T, N]
        q_tilde_sampled = q_crit(critic_params, batch.global_state, sampled)  # [B, T]
        c = exp_shift(q_hat_sampled, q_tilde_sampled, config, level)
        actor_loss = jnp.mean(optimistic_actor_loss(q_hat_sampled, q_tilde_sampled, beta, c))

    # L_extra(ψ): no agent's value of its greedy action above the critic's value of the greedy joint action
    greedy = op.masked_argmax(jax.lax.stop_gradient(q_hat), avail)
    q_hat_greedy = taken(q_hat, greedy)
    q_tilde_greedy = q_crit(critic_params, batch.global_state, greedy)
    extra_loss = jnp.mean(jnp.maximum(q_hat_greedy - q_tilde_greedy[..., None], 0.0) ** 2)
    extra_loss = extra_loss * jnp.exp(-beta * c)  # the same e^{−βc} as L_Q̂: ψ's step keeps the paper's direction

    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "extra_loss": extra_loss,
               "q_tilde": jnp.mean(q_tilde), "q_hat_greedy": jnp.mean(q_hat_greedy), "exp_shift": c * jnp.ones(())}
    return critic_loss + actor_loss + extra_loss, metrics


update = op.make_update(loss_fn)

register_algo(Algorithm(
    name="maosdqn",
    description="MAOSDQN: centralised joint-action critic + optimistic soft decentralised actors (Alg. 3)",
    config_cls=MAOSDQNConfig, init=init, act=act, update=update,
    warmup_iterations=op.warmup_iterations, requires=("discrete",),
    paper="MAOSQL (paper 000) Alg. 3, Sec. 3.3, App. C", initial_carry=initial_carry,
    summary=lambda config, env: {"entropy_alpha": config.entropy_alpha, "optimism_beta": config.optimism_beta},
    default_total_steps=200_000,
))
