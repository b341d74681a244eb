"""FOP — Factorizing Optimal Joint Policy of maximum-entropy MARL (Zhang, Li, Wang, Xie & Lu, ICML 2021).

Maximum-entropy MARL: maximise Σ_t E[r_t + α H(π(·|τ_t))]. Its optimal joint policy is the Boltzmann policy of the
joint soft Q, π*(a|τ) = exp((Q_tot(τ, a) − V_tot(τ))/α). FOP's IGO condition (Individual-Global-Optimal) asks that
it be the product of decentralised policies, π*(a|τ) = Π_i π^i(a^i|τ^i), each itself Boltzmann with its own
temperature α^i:

    π^i(a^i|τ^i) = exp((Q^i(τ^i, a^i) − V^i(τ^i)) / α^i),     V^i(τ^i) = α^i log Σ_{a^i} exp(Q^i(τ^i, a^i)/α^i).

Then the joint soft Q factorises (FOP's factorisation theorem, with λ^i = α/α^i > 0):

    Q_tot(τ, a) = Σ_i λ^i(τ, a) [Q^i(τ^i, a^i) − V^i(τ^i)] + V_tot(τ)

— indeed (Q_tot − V_tot)/α = Σ_i (Q^i − V^i)/α^i = Σ_i log π^i(a^i), which is normalised over joint actions, so
V_tot is Q_tot's soft value (`tests/test_fop.py` checks both by enumeration).

Networks (names in the code):
- `actor`: π^i(·|τ^i), EPyMARL's recurrent agents (`Agents`, fc-GRU-fc, shared with a one-hot id) read as logits over
  the available actions; the authors' `rnn_agent` with `agent_output_type: pi_logits`.
- `critic1`, `critic2` (`double_critic`): each a per-agent soft Q^i(o^i, ·) (`q`: the authors' FOPCritic, an MLP of
  the observation and agent id, `critic_hidden_sizes` wide) and a mixer (`mixer`, `FOPMixer`: the authors'
  mixers/fop.py) giving λ^i(s, a) = Σ_h |k_h(s)| σ(w_h(s))_i σ(u_h(s, a))_i > 0 (`attention_heads` heads over the
  state and the one-hot joint action) and V(s); V_tot(τ) = Σ_i V^i(τ^i) + V(s) (mixers/fop.py).

Losses on a replay batch of windows (α annealed in env steps: `entropy_alpha`; Q̄ the target critics):

    a′ ~ π(·|τ′) (the online actors at the next step),  log π(a′|τ′) = Σ_i log π^i(a′^i|τ′^i)
    y = r + γ (Q̄_tot(τ′, a′) − α log π(a′|τ′))      (soft TD target; TD(λ) over the window: `soft_td_targets`)
    L_critic = Σ_{k ∈ critics} (Q_tot^k(τ, a) − y)²,  with Q̄_tot(τ′, a′) = min_k Q̄_tot^k (clipped double Q)
    L_π = Σ_i Σ_{a^i} π^i(a^i|τ^i) [α^i log π^i(a^i|τ^i) − Q^i(τ^i, a^i)],  Q^i = min_k Q^{i,k}  (no gradient)
        = Σ_i α^i KL(π^i ‖ exp((Q^i − V^i)/α^i)) + const   (the factorised soft policy improvement, SAC-discrete)

Switches where the authors' code (github liyheng/FOP, src/learners/fop_learner.py) reads otherwise than the
equations above (`variant=authors` sets all of them):
- `critic_gradient="additive"`: mixers/fop.py computes the same value as Σ_i (λ^i − 1)·sg(Q^i − V^i) + Σ_i Q^i + V(s),
  so ∂Q_tot/∂Q^i(a^i) = 1 and V^i gets no gradient ("factorised": the factorisation as written, ∂Q_tot/∂Q^i = λ^i).
- `entropy_target="authors"`: y = G^λ(Q̄_tot(τ′, a′)) − α·(1/N) Σ_i log π^i(a′^i|τ′^i) — the entropy term outside
  γ and the TD(λ) recursion, averaged rather than summed over agents (`targets = target_v − alpha * log_pi.mean`).
- `epsilon_start=1.0, epsilon_end=0.05`: behaviour a ~ π, then with probability ε a random available action
  (the authors' `multinomial` selector, ε over 50k steps); the equations sample a ~ π (ε = 0).
Per-agent temperatures (`agent_temperature`): "shared" α^i = α for every agent (fop_learner.py: one α in V^i and in
every agent's policy loss); "lambda" ties them as the theorem does, α^i = α/λ^i(τ, a), with λ^i of the replayed
transition (so Q_tot − V_tot = α Σ_i log π^i_{α^i}(a^i) holds on every transition).
Not replicated from the authors' code: its optimiser (RMSprop; the core's Adam here, one lr as both of theirs are
5e-4), the actor being updated before the critics on each batch (here one joint step; stop-gradients route each
loss), the ε floor its controller also mixes into π inside the losses, and V^i's log-sum-exp over unavailable actions
too (here over the available ones, where π^i lives). Q^i sees the current observation (their FOPCritic), not τ^i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, linear_schedule, register_algo, taken
from coopmarl.nets.dense import Dense
from coopmarl.nets.distributions import MASKED_LOGIT
from coopmarl.nets.q import Agents


@dataclass(frozen=True)
class FOPConfig(op.OffPolicyConfig):
    """Defaults: the authors' code (liyheng/FOP: src/config/algs/fop.yaml, src/config/default.yaml,
    src/learners/fop_learner.py) where the paper gives no number; the module docstring lists the switches."""

    # entropy temperature α: linear from start to end over anneal_steps env steps; fop_learner.py:
    # α = max(0.05, 0.5 − t/200000), i.e. 0.5 → 0.05 reached at 90k steps
    entropy_alpha_start: float = 0.5  # fop_learner.py
    entropy_alpha_end: float = 0.05  # fop_learner.py
    entropy_alpha_anneal_steps: int = 90_000  # fop_learner.py (0.45 / (1/200000))
    agent_temperature: Literal["shared", "lambda"] = "shared"  # α^i = α (fop_learner.py) or α/λ^i (module doc)
    critic_gradient: Literal["factorised", "additive"] = "factorised"  # Q_tot's gradient as written; "additive": mixers/fop.py
    entropy_target: Literal["soft_td", "authors"] = "soft_td"  # y = r + γ(Q̄_tot − α log π); "authors": fop_learner.py
    double_critic: bool = True  # two critics + mixers, min in target and policy loss (fop_learner.py critic1/critic2)
    critic_hidden_sizes: tuple[int, ...] = (64,)  # Q^i: fc-ReLU-fc-ReLU-fc, width 64 (critics/fop.py)
    attention_heads: int = 4  # λ's heads (fop.yaml n_head)
    mixing_embed: int = 32  # V(s)'s hidden width (fop.yaml mixing_embed_dim)
    # the off-policy core's keys, as the authors set them
    buffer_size: int = 5000  # fop.yaml
    batch_size: int = 32  # default.yaml (episodes)
    lr: float = 5e-4  # fop.yaml lr (actor) = c_lr (critics)
    gamma: float = 0.99  # default.yaml
    td_lambda: float = 0.8  # fop.yaml
    max_grad_norm: float = 10.0  # default.yaml grad_norm_clip, actor and each critic clipped by their own norm
    target_update_episodes: int = 200  # fop.yaml target_update_interval (episodes), hard copy of critics + mixers
    standardise_rewards: bool = False  # pymarl (the authors' code base) has no reward standardisation
    last_action: bool = True  # default.yaml obs_last_action
    # behaviour ε (see the module doc): 0 = a ~ π; the authors' multinomial selector: 1.0 → 0.05 over 50k steps
    epsilon_start: float = 0.0  # a ~ π (SAC-style); authors 1.0 (fop.yaml)
    epsilon_end: float = 0.0  # authors 0.05 (fop.yaml epsilon_finish)
    epsilon_anneal_steps: int = 50_000  # fop.yaml epsilon_anneal_time

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "entropy_alpha_start", "entropy_alpha_end")
        fields.at_least(self, 0, "entropy_alpha_anneal_steps")
        fields.at_least(self, 1, "attention_heads", "mixing_embed")
        fields.layer_widths(self, "critic_hidden_sizes", exactly=1,
                            why=" (the critic is fc-ReLU-fc-ReLU-fc of one width, the authors' FOPCritic)")

    @property
    def critics(self) -> tuple[str, ...]:
        return ("critic1", "critic2") if self.double_critic else ("critic1",)

    @property
    def clipped_params(self) -> tuple[str, ...]:
        """The actor and each critic (+ its mixer) clipped by their own norm, as fop_learner.py's three optimisers."""
        return ("actor",) + self.critics

    @classmethod
    def variants(cls) -> dict[str, dict]:
        """`paper`: the equations as written (the defaults); `authors`: fop_learner.py / mixers/fop.py's forms."""
        return {"paper": {}, "authors": {"critic_gradient": "additive", "entropy_target": "authors",
                                         "epsilon_start": 1.0, "epsilon_end": 0.05}}


class FOPMixer(nn.Module):
    """λ^i(s, a) > 0 and V(s) (the authors' mixers/fop.py): per head h, |k_h(s)| + 1e-10 times σ(w_h(s))_i times
    σ(u_h([s, a]))_i, summed over heads; V(s) = fc-ReLU-fc. state [..., S], joint_onehot [..., N, A] ->
    (λ [..., N], V(s) [...])."""

    n_agents: int
    heads: int = 4
    embed: int = 32

    @nn.compact
    def __call__(self, state, joint_onehot):
        state_action = jnp.concatenate([state, joint_onehot.reshape(joint_onehot.shape[:-2] + (-1,))], -1)
        lam = jnp.zeros(state.shape[:-1] + (self.n_agents,))
        for _ in range(self.heads):
            key = jnp.abs(Dense(1)(state)) + 1e-10
            lam = lam + key * jax.nn.sigmoid(Dense(self.n_agents)(state)) * jax.nn.sigmoid(
                Dense(self.n_agents)(state_action))
        value = nn.Sequential([Dense(self.embed), nn.relu, Dense(1)])(state)[..., 0]
        return lam, value


# ---- the maths, as pure functions ------------------------------------------------------------------------


def entropy_alpha(config, env_steps) -> jax.Array:
    """α at `env_steps`: linear from entropy_alpha_start to entropy_alpha_end over entropy_alpha_anneal_steps."""
    return linear_schedule(config.entropy_alpha_start, config.entropy_alpha_end, config.entropy_alpha_anneal_steps,
                           env_steps)


def soft_value(q, avail, temperature) -> jax.Array:
    """V^i = α^i log Σ_{available a} exp(Q^i(a)/α^i): q [..., A], temperature scalar or [...] -> [...]."""
    t = jnp.asarray(temperature)[..., None]
    return t[..., 0] * jax.nn.logsumexp(jnp.where(avail, q / t, -jnp.inf), axis=-1)


def agent_log_policy(q, avail, temperature) -> jax.Array:
    """log π^i(·) = (Q^i − V^i)/α^i over the available actions (MASKED_LOGIT elsewhere): [..., A]."""
    t = jnp.asarray(temperature)[..., None]
    return jnp.where(avail, (q - soft_value(q, avail, temperature)[..., None]) / t, MASKED_LOGIT)


def agent_temperatures(alpha, lam, config) -> jax.Array:
    """α^i [..., N]: α for every agent ("shared"), or α/λ^i(τ, a) (the theorem's λ^i = α/α^i; "lambda")."""
    if config.agent_temperature == "lambda":
        return alpha / lam
    return alpha * jnp.ones_like(lam)


def factorised_q_tot(q_taken, v, lam, v_state, gradient: str = "factorised") -> jax.Array:
    """Q_tot = Σ_i λ^i (Q^i(a^i) − V^i) + V_tot, V_tot = Σ_i V^i + V(s); q_taken, v, lam [..., N], v_state [...].
    "additive" (the authors' mixers/fop.py): the same value as Σ_i (λ^i − 1) sg(Q^i − V^i) + Σ_i Q^i + V(s)."""
    if gradient == "additive":
        return jnp.sum((lam - 1.0) * jax.lax.stop_gradient(q_taken - v), -1) + jnp.sum(q_taken, -1) + v_state
    return jnp.sum(lam * (q_taken - v), -1) + jnp.sum(v, -1) + v_state


def soft_td_targets(batch, next_q_tot, next_log_pi, alpha, config) -> jax.Array:
    """y [B, T] from Q̄_tot(τ′, a′) [B, T] and log π^i(a′^i|τ′^i) [B, T, N] of the sampled next joint action:
    "soft_td": TD(λ) returns of the next soft value Q̄_tot − α Σ_i log π^i (λ = 0: y = r + γ(Q̄_tot − α log π));
    "authors": TD(λ) returns of Q̄_tot, minus α (1/N) Σ_i log π^i (fop_learner.py train_critic)."""
    if config.entropy_target == "authors":
        return op.batch_lambda_returns(batch, next_q_tot, config) - alpha * jnp.mean(next_log_pi, -1)
    return op.batch_lambda_returns(batch, next_q_tot - alpha * jnp.sum(next_log_pi, -1), config)


def policy_terms(logits, avail, q, temperature) -> jax.Array:
    """Σ_a π^i(a)[α^i log π^i(a) − Q^i(a)] for every agent [..., N] (q gets no gradient here: the caller's
    constant). logits, avail, q [..., N, A]; temperature scalar or [..., N]."""
    log_pi = jax.nn.log_softmax(jnp.where(avail, logits, MASKED_LOGIT), axis=-1)
    t = jnp.asarray(temperature)[..., None]
    return jnp.sum(jnp.where(avail, jnp.exp(log_pi) * (t * log_pi - q), 0.0), axis=-1)



# ---- networks, init, act ---------------------------------------------------------------------------------


def _critic(n_agents, obs_dim, n_actions, config) -> Agents:
    """Q^i(o^i, ·): the agents' fc-ReLU-fc-ReLU-fc network of (obs, agent id) (the authors' FOPCritic)."""
    return Agents(n_agents=n_agents, obs_dim=obs_dim, n_actions=n_actions, hidden=config.critic_hidden_sizes[0],
                  recurrent=False, share_parameters=config.share_parameters, agent_id=config.agent_id)


def _mixer(n_agents, config) -> FOPMixer:
    return FOPMixer(n_agents, config.attention_heads, config.mixing_embed)


def initial_carry(spec, config):
    return op.make_agents(spec, config).initial_carry()


def init(key, spec, config, model=None):
    n, a = spec.n_agents, spec.n_actions
    actor, critic, mixer = op.make_agents(spec, config), _critic(n, spec.obs_dim, a, config), _mixer(n, config)
    keys = jax.random.split(key, 1 + 2 * len(config.critics))
    params = {"actor": actor.init(keys[0])}
    for i, name in enumerate(config.critics):
        params[name] = {"q": critic.init(keys[1 + 2 * i]),
                        "mixer": mixer.init(keys[2 + 2 * i], jnp.zeros(spec.state_dim), jnp.zeros((n, a)))}
    return op.init_state(params, spec, config, actor.initial_carry())


def act(state, obs, avail_actions, key, *, carry, explore, config):
    """Greedy: argmax π^i. Exploring: a^i ~ π^i, replaced with probability ε by a random available action."""
    actor = op.agents_for(*obs.shape, avail_actions.shape[-1], config)
    carry, logits = actor.apply(state.params["actor"], carry, obs)
    logits = jnp.where(avail_actions, logits, MASKED_LOGIT)
    if not explore:
        actions = jnp.argmax(logits, -1).astype(jnp.int32)
    else:
        k_pi, k_eps = jax.random.split(key)
        sampled = jax.random.categorical(k_pi, logits, axis=-1)
        # ε-greedy around the one-hot of the sampled action: "greedy" is the sample (the multinomial selector)
        actions = op.epsilon_greedy(k_eps, jax.nn.one_hot(sampled, logits.shape[-1]), avail_actions,
                                    op.epsilon(config, state.env_steps))
    return actions, actor.with_action(carry, actions)


# ---- the loss --------------------------------------------------------------------------------------------


def loss_fn(params, target_params, batch, key, config, env_steps):
    n, obs_dim, n_actions = batch.obs.shape[-2], batch.obs.shape[-1], batch.avail_actions.shape[-1]
    actor, critic, mixer = op.agents_for(n, obs_dim, n_actions, config), _critic(n, obs_dim, n_actions, config), \
        _mixer(n, config)
    alpha = entropy_alpha(config, env_steps)
    avail, next_avail = batch.avail_actions, batch.next_avail_actions

    def q_tot(p, obs, state, actions, avail_):
        """Q_tot^k(τ, a) [B, T], Q^{i,k} [B, T, N, A] and λ^i [B, T, N] of one critic (+ mixer) p."""
        q = critic.apply(p["q"], jnp.zeros(obs.shape[:-1] + (1,)), obs)[1]
        lam, v_state = mixer.apply(p["mixer"], state, jax.nn.one_hot(actions, n_actions))
        v = soft_value(q, avail_, agent_temperatures(alpha, lam, config))
        return factorised_q_tot(taken(q, actions), v, lam, v_state, config.critic_gradient), q, lam

    logits, next_logits = op.unroll_batch(actor, params["actor"], batch)  # [B, T, N, A]
    next_log_pi = jax.lax.stop_gradient(jax.nn.log_softmax(jnp.where(next_avail, next_logits, MASKED_LOGIT), -1))
    next_actions = jax.random.categorical(key, next_log_pi, axis=-1).astype(jnp.int32)  # a′ ~ π(·|τ′)

    # soft TD target from the target critics, min over the two (clipped double Q)
    next_tot = jnp.min(jnp.stack([q_tot(target_params[c], batch.next_obs, batch.next_global_state, next_actions,
                                        next_avail)[0] for c in config.critics]), 0)
    target = jax.lax.stop_gradient(soft_td_targets(batch, next_tot, taken(next_log_pi, next_actions), alpha, config))

    critic_loss, per_agent_q, lams, tots = 0.0, [], [], []
    for c in config.critics:
        tot, q, lam = q_tot(params[c], batch.obs, batch.global_state, batch.actions, avail)
        critic_loss = critic_loss + jnp.mean((tot - target) ** 2)
        per_agent_q.append(q)
        lams.append(lam)
        tots.append(tot)

    # factorised soft policy improvement: each π^i towards exp((Q^i − V^i)/α^i), Q^i the min over critics
    q_min = jax.lax.stop_gradient(jnp.min(jnp.stack(per_agent_q), 0))
    temperatures = jax.lax.stop_gradient(agent_temperatures(alpha, lams[0], config))
    policy_loss = jnp.mean(policy_terms(logits, avail, q_min, temperatures))

    log_pi = jax.nn.log_softmax(jnp.where(avail, logits, MASKED_LOGIT), -1)
    entropy = -jnp.sum(jnp.where(avail, jnp.exp(log_pi) * log_pi, 0.0), -1)
    metrics = {"critic_loss": critic_loss, "policy_loss": policy_loss, "alpha": alpha, "q_tot": jnp.mean(tots[0]),
               "target": jnp.mean(target), "lambda_mean": jnp.mean(lams[0]), "entropy": jnp.mean(entropy)}
    return critic_loss + policy_loss, metrics


update = op.make_update(loss_fn)

register_algo(Algorithm(
    name="fop",
    description="FOP: factorised max-entropy actor-critic, Q_tot = Σ λ^i (Q^i − V^i) + V_tot under IGO",
    config_cls=FOPConfig, init=init, act=act, update=update,
    warmup_iterations=op.warmup_iterations, requires=("discrete",),
    paper="FOP (Zhang et al., ICML 2021); defaults from the authors' code (liyheng/FOP)",
    initial_carry=initial_carry, default_total_steps=200_000,
    summary=lambda config, env: {"agent_temperature": config.agent_temperature,
                                 "critic_gradient": config.critic_gradient, "entropy_target": config.entropy_target},
))
