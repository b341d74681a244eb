"""COMA — counterfactual multi-agent policy gradients (Foerster, Farquhar, Afouras, Nardelli & Whiteson, AAAI 2018).

Decentralised actors π^a(u^a|τ^a) and one centralised critic Q(s, u) that, for agent a, takes the state, the
agent's observation, the *other* agents' actions u^{-a} (one-hot; agent a's own slot zeroed) and a's one-hot id,
and returns Q(s, (u^{-a}, u′)) for every action u′ of agent a in one forward pass (COMA §4, "critic
representation"). With it the counterfactual baseline costs one pass:

    A^a(s, u) = Q(s, u) − Σ_{u′} π^a(u′|τ^a) Q(s, (u^{-a}, u′))                             (COMA eq. 4)
    actor:  ∇_θ J = E[Σ_a ∇_θ log π^a(u^a|τ^a) A^a(s, u)]                                     (COMA §4)
            loss = −mean(A^a · log π^a(u^a|τ^a)) − entropy_coef · mean(H(π^a))            (EPyMARL's entropy term)
    critic: loss = mean((Q(s, u) − y^{(λ)})²), y^{(λ)} the TD(λ) return (COMA §4, Sutton & Barto) bootstrapped
            from the target critic Q̄(s_{t+1}, u_{t+1}), copied from Q every `target_update_interval` updates.

The batch is the runner's on-policy [T, E] rollout (`rollout_length` steps of `n_envs` envs). y^{(λ)} runs along
each env's T steps and is cut at every episode end (`offpolicy.lambda_returns`): a terminated step does not
bootstrap, a truncated one bootstraps from Q̄ at the true final state. Q̄(s_{t+1}, u_{t+1}) uses the stored next
joint action inside an episode; where none is stored (the window's last step, or after a truncation) the next
joint action is sampled from the current policies at o_{t+1} — an unbiased SARSA bootstrap. A and the actors'
loss use the critic *before* this update's step (as EPyMARL's `coma_learner.py` does); π is the policy that
collected the batch, so the gradient is on-policy.

Defaults: the paper's TD(λ) λ = 0.8 (§5, Experimental setup); the rest from EPyMARL's `coma.yaml` /
`coma_learner.py` / `modules/critics/coma.py` (the widely used implementation): 10 envs, lr 5e-4 for both
networks, entropy 0.01, target copy every 200 critic steps, grad-norm clip 10, feed-forward actors of width 64
sharing parameters with a one-hot id, a critic of two ReLU layers of 128. Not here: the paper's previous joint
action u_{t−1} among the critic's inputs, EPyMARL's standardised returns and its 5-step returns (their
`q_nstep: 5`; the paper's TD(λ) is the default here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, policy_table, register_algo, taken
from coopmarl.algos.fields import AlgoConfig
from coopmarl.algos.ppo import clip_grad_norm
from coopmarl.envs.core import EnvSpec
from coopmarl.nets.distributions import Categorical
from coopmarl.nets.policy import MLP, Actor, AgentNets


@dataclass(frozen=True)
class COMAConfig(AlgoConfig):
    """COMA. Defaults: the paper's λ (§5); the rest EPyMARL's coma.yaml (see the module docstring)."""

    n_envs: int = 10  # EPyMARL coma.yaml: batch_size_run 10
    rollout_length: int = 0  # steps per env per update; 0 = the env's horizon (EPyMARL: whole episodes)
    hidden_sizes: tuple[int, ...] = (64, 64)  # actors: EPyMARL hidden_dim 64, feed-forward (use_rnn: False)
    critic_hidden_sizes: tuple[int, ...] = (128, 128)  # EPyMARL modules/critics/coma.py: two ReLU layers of 128
    share_parameters: bool = True  # EPyMARL: one actor for all agents + one-hot id (the critic is always shared)
    actor_lr: float = 5e-4  # EPyMARL coma.yaml lr
    critic_lr: float = 5e-4  # EPyMARL coma.yaml lr (one lr for both)
    gamma: float = 0.99  # EPyMARL
    td_lambda: float = 0.8  # COMA §5: TD(λ) with λ = 0.8 (EPyMARL instead: 5-step returns)
    target_update_interval: int = 200  # critic updates between target copies (EPyMARL target_update_interval_or_tau)
    entropy_coef: float = 0.01  # EPyMARL coma.yaml
    max_grad_norm: float = 10.0  # each network's gradient clipped to this norm (EPyMARL grad_norm_clip)

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "n_envs", "target_update_interval")
        fields.at_least(self, 0, "rollout_length")  # 0 = the env's horizon
        fields.layer_widths(self)
        fields.layer_widths(self, "critic_hidden_sizes")
        fields.positive(self, "actor_lr", "critic_lr", "max_grad_norm")
        fields.in_unit_interval(self, "gamma", "td_lambda")
        fields.at_least(self, 0.0, "entropy_coef")


class COMAState(struct.PyTreeNode):
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    actor_opt: Any
    critic_opt: Any
    n_updates: jax.Array
    spec: EnvSpec = struct.field(pytree_node=False)


def _actors(spec: EnvSpec, config: COMAConfig) -> AgentNets:
    return AgentNets(Actor(spec.n_actions, False, config.hidden_sizes), spec.n_agents, config.share_parameters)


def _critic(spec: EnvSpec, config: COMAConfig) -> MLP:
    return MLP(config.critic_hidden_sizes, spec.n_actions)


def critic_inputs(global_state, obs, actions, n_actions: int):
    """Agent a's critic input [..., N, D]: [state | o^a | u^{-a} one-hot, a's own slot zeroed | one-hot a].
    global_state [..., S], obs [..., N, O], actions [..., N] (int)."""
    n = obs.shape[-2]
    joint = jax.nn.one_hot(actions, n_actions)  # [..., N, A]
    others = joint[..., None, :, :] * (1.0 - jnp.eye(n))[:, :, None]  # [..., N (for a), N, A]: u^{-a}
    lead = obs.shape[:-2]
    parts = [jnp.broadcast_to(global_state[..., None, :], lead + (n, global_state.shape[-1])), obs,
             others.reshape(lead + (n, n * n_actions)), jnp.broadcast_to(jnp.eye(n), lead + (n, n))]
    return jnp.concatenate(parts, -1)


def q_values(spec, config, critic_params, global_state, obs, actions):
    """Q(s, (u^{-a}, u′)) for every agent a and action u′: [..., N, A] (2-D rows for the matmuls)."""
    x = critic_inputs(global_state, obs, actions, spec.n_actions)
    q = _critic(spec, config).apply(critic_params, x.reshape(-1, x.shape[-1]))
    return q.reshape(x.shape[:-1] + (spec.n_actions,))


def counterfactual_advantage(q, probs, actions):
    """COMA eq. (4): A^a = Q(s, u) − Σ_{u′} π^a(u′|τ^a) Q(s, (u^{-a}, u′)). q, probs [..., N, A]; actions [..., N]."""
    return taken(q, actions) - jnp.sum(probs * q, -1)


def init(key, spec: EnvSpec, config: COMAConfig, model=None) -> COMAState:
    k_actor, k_critic = jax.random.split(key)
    actor_params = _actors(spec, config).init(k_actor, spec.obs_dim)
    in_dim = spec.state_dim + spec.obs_dim + spec.n_agents * spec.n_actions + spec.n_agents
    critic_params = _critic(spec, config).init(k_critic, jnp.zeros((in_dim,)))
    return COMAState(actor_params=actor_params, critic_params=critic_params, target_critic_params=critic_params,
                     actor_opt=optax.adam(config.actor_lr).init(actor_params),
                     critic_opt=optax.adam(config.critic_lr).init(critic_params), n_updates=jnp.int32(0), spec=spec)


def _policy(spec, config, actor_params, obs, avail):
    return Categorical.masked(_actors(spec, config).apply(actor_params, obs), avail)


def act(state: COMAState, obs, avail_actions, key, *, explore: bool, config: COMAConfig):
    """Decentralised: agent a's action depends on obs[a] (and a) only. explore: sample; else the most likely."""
    pi = _policy(state.spec, config, state.actor_params, obs, avail_actions)
    return pi.sample(key) if explore else pi.mode()


def policy(state: COMAState, config: COMAConfig):
    """Tabular games (one-hot state observations): the policy table [N, S, A] for exact evaluation."""
    return policy_table(state.spec, lambda obs, avail: _policy(state.spec, config, state.actor_params, obs,
                                                                avail).probs())


def next_joint_actions(data, sampled):
    """u_{t+1} [T, E, N]: the stored next action inside an episode, `sampled` (from π at o_{t+1}) where none is
    stored — the window's last step and every episode end."""
    t = data.actions.shape[0]
    stored = jnp.concatenate([data.actions[1:], sampled[-1:]], 0)
    has_next = (jnp.arange(t) < t - 1)[:, None] & ~data.done  # [T, E]
    return jnp.where(has_next[..., None], stored, sampled)


def update(state: COMAState, data, key, *, config: COMAConfig):
    spec = state.spec
    pi = _policy(spec, config, state.actor_params, data.obs, data.avail_actions)  # the collecting policy [T, E, N]
    next_pi = _policy(spec, config, state.actor_params, data.next_obs, data.next_avail_actions)
    next_actions = next_joint_actions(data, next_pi.sample(key))

    # critic: TD(λ) targets from the target critic's Q̄(s_{t+1}, u_{t+1}), the team reward for every agent
    q_bar_next = q_values(spec, config, state.target_critic_params, data.next_global_state, data.next_obs,
                          next_actions)
    next_value = taken(q_bar_next, next_actions)  # [T, E, N]
    reward = jnp.broadcast_to(data.team[..., None], next_value.shape)
    targets = jax.lax.stop_gradient(op.lambda_returns(reward, data.terminated, data.done, next_value,
                                                      config.gamma, config.td_lambda))

    def critic_loss(params):
        q = q_values(spec, config, params, data.global_state, data.obs, data.actions)
        return jnp.mean((taken(q, data.actions) - targets) ** 2), q

    (c_loss, q), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic_params)
    advantages = jax.lax.stop_gradient(counterfactual_advantage(q, pi.probs(), data.actions))  # COMA eq. (4)

    def actor_loss(params):
        new_pi = _policy(spec, config, params, data.obs, data.avail_actions)
        entropy = jnp.mean(new_pi.entropy())
        return -jnp.mean(advantages * new_pi.log_prob(data.actions)) - config.entropy_coef * entropy, entropy

    (a_loss, entropy), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor_params)
    c_grads, c_norm = clip_grad_norm(c_grads, config.max_grad_norm, per_agent=False)
    a_grads, a_norm = clip_grad_norm(a_grads, config.max_grad_norm, per_agent=False)
    step, critic_opt = optax.adam(config.critic_lr).update(c_grads, state.critic_opt, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, step)
    step, actor_opt = optax.adam(config.actor_lr).update(a_grads, state.actor_opt, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, step)
    n_updates = state.n_updates + 1
    copy = n_updates % config.target_update_interval == 0
    target = jax.tree.map(lambda p, t: jnp.where(copy, p, t), critic_params, state.target_critic_params)
    new_state = state.replace(actor_params=actor_params, critic_params=critic_params, target_critic_params=target,
                              actor_opt=actor_opt, critic_opt=critic_opt, n_updates=n_updates)
    metrics = {"critic_loss": c_loss, "policy_loss": a_loss, "entropy": entropy,
               "advantage_mean": jnp.mean(advantages), "target_mean": jnp.mean(targets),
               "actor_grad_norm": jnp.mean(a_norm), "critic_grad_norm": jnp.mean(c_norm)}
    return new_state, metrics


register_algo(Algorithm(
    name="coma", description="COMA: centralised critic Q(s, u) with the counterfactual baseline, TD(λ) critic",
    config_cls=COMAConfig, init=init, act=act, update=update, policy=policy, requires=("discrete",),
    paper="Foerster et al. 2018 eq. (4), §4-5; EPyMARL coma.yaml",
))
