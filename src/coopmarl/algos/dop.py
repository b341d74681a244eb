"""DOP — off-policy multi-agent decomposed policy gradients, stochastic (discrete-action) DOP (Wang et al., ICLR 2021,
arXiv 2007.12322; the authors' code TonghanWang/DOP, `offpg_learner.py`, `critics/offpg.py`, `mixers/qmix.py`,
`offpg_smac.yaml`).

Networks:
- actors π^i(a^i|τ^i): EPyMARL-style recurrent agents (`nets.q.Agents`, fc-GRU-fc, shared with a one-hot id, the
  previous action as input) whose outputs are logits; the behaviour policy is their softmax over the available
  actions with an ε floor, π^i = (1 − ε)·softmax + ε/|available| (the authors' `basic_controller.forward`), ε
  annealed linearly (`epsilon_*`); greedy evaluation takes the argmax (their `test_greedy`). This ε-floored π is the
  π of every equation below, as in the authors' learner;
- local critics Q^i(τ, ·) = Q_φ(s, o^i, one-hot i) ∈ R^A: one ReLU MLP shared by the agents, output A advantages
  plus one value (the authors' `OffPGCritic`: inputs state, observation, agent id);
- the decomposed critic (DOP Sec. 4.1):  Q_tot(τ, a) = Σ_i k_i(s) Q^i(τ, a^i) + b(s),  k_i(s) ≥ 0,
  with k = |W1(s)|·|w2(s)| and b = b1(s)·|w2(s)| + V(s) from one-layer hypernetworks of the state (the linear part of
  the authors' QMixer, `k()` and `b()`). `decomposition="convex"` is their mixer's `forward`: k normalised to sum
  to 1 and no b(s).

Losses on each gradient step's two batches — B = `batch_size` windows replayed uniformly (the behaviour policies
β of many past iterations) and Br = `recent_batch_size` windows from the buffer of the newest windows (on-policy);
θ̄ = the target critic and mixer, hard-copied every `target_update_episodes` windows:
    δ_t = r_t + γ E_π[Q̄_tot(τ_{t+1}, ·)] − Q̄_tot(τ_t, a_t),
          E_π[Q̄_tot(τ, ·)] = Σ_i k̄_i(s) Σ_x π^i(x|τ^i) Q̄^i(τ, x) + b̄(s)              (O(N|A|), not O(|A|^N))
    y^TB_t = Q̄_tot(τ_t, a_t) + Σ_{j=0}^{n−1} (γλ_TB)^j (Π_{l=1}^{j} π(a_{t+l}|τ_{t+l})) δ_{t+j},
          π(a|τ) = Π_i π^i(a^i|τ^i)                                     (DOP-TB, Sec. 4.1: multi-agent tree backup)
    y^On_t = the TD(λ) return along the window from Q̄_tot(τ_{t+1}, a_{t+1})   (on-policy; authors' SARSA(λ) targets)
    L_critic = κ E_B[(Q_tot(τ_t, a_t) − y^TB_t)²] + (1 − κ) E_Br[(Q_tot(τ_t, a_t) − y^On_t)²]          (Sec. 4.1)
    L_actor  = −E_Br[Σ_i sg(k_i(s) A^i_t) log π^i(a^i_t|τ^i_t)],
          A^i_t = Q^i(τ_t, a^i_t) − Σ_x π^i(x|τ^i_t) Q^i(τ_t, x)       (stochastic DOP policy gradient theorem)
Letters ↔ names: κ `tree_backup_weight`, λ_TB `tree_backup_lambda`, n `tree_backup_steps`, λ of y^On `td_lambda`,
k, b `DecomposedMixer`, y^TB `tree_backup_targets`, A^i / L_actor `policy_gradient_loss`. Traces stop at episode
ends and at the window's end (a shorter backup); Q̄^i, k̄, b̄ and π are constants in every target (π is the current
actors', as in the authors' learner). Critic and mixer learn only from L_critic, actors only from L_actor.

Paper vs authors' code: `decomposition` (above). Measured on lbf:5x5-2p-1f-coop (2 seeds, 20k steps), the affine
k of the unnormalised state starts at 60-90 per agent and Q_tot at ~100 for returns below 1: the critic loss is
still ~300 at 20k steps, against 0.01 with "convex" (k sums to 1). Not switches (the core's way or a detail): the
authors' critic takes one optimiser step per time step of the batch (`critic_train_mode: seq`, so T − 1 steps per
iteration) and copies its target every 600 such steps; here one step covers all time steps and
`target_update_episodes` translates the copy interval into windows. They use RMSprop (α 0.99, ε 1e-5) where the core
uses Adam; their actor learns from the 16 newest episodes where this samples the recent buffer; their
offpg_smac.yaml (`mask_before_softmax: False`) spreads ε over all actions before masking, this over the available
ones (pymarl's default), which differs only where some actions are unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.algos import fields
from coopmarl.algos import offpolicy as op
from coopmarl.algos.base import Algorithm, register_algo, taken
from coopmarl.nets.dense import Dense

MASKED = -1e10  # the logit / log-probability of an unavailable action


@dataclass(frozen=True)
class DOPConfig(op.OffPolicyConfig):
    """Defaults: the authors' `offpg_smac.yaml` and their pymarl `default.yaml` (the paper's code)."""

    n_envs: int = 4  # authors' offpg_smac.yaml batch_size_run (parallel runner)
    buffer_size: int = 5000  # replayed windows for DOP-TB (authors' off_buffer_size)
    batch_size: int = 32  # replayed windows per step (authors' off_batch_size)
    lr: float = 5e-4  # the actors' step size (authors' lr)
    critic_lr: float = 1e-4  # the critic's and mixer's step size (authors' critic_lr)
    td_lambda: float = 0.8  # λ of the on-policy TD(λ) targets y^On (authors' td_lambda)
    tree_backup_lambda: float = 0.93  # λ_TB of the DOP-TB targets (authors' tb_lambda)
    tree_backup_steps: int = 5  # n, the tree backup's length (authors' `step`: "steps for tree back up diagram")
    # κ of L_critic. The authors' train_critic fits one mean-squared error over 32 replayed + 16 on-policy episodes
    # (run.py: off_batch_size, batch_size), so each replayed sample weighs 32/48 of it
    tree_backup_weight: float = 2 / 3
    recent_buffer_size: int = 32  # windows in the on-policy buffer (authors' buffer_size)
    recent_batch_size: int = 16  # on-policy windows per step, for y^On and L_actor (authors' batch_size)
    max_grad_norm: float = 20.0  # actors, and critic + mixer, each clipped by its own norm (authors' grad_norm_clip)
    # authors' target_update_interval: 600 critic steps, one per time step of a 4-episode batch, i.e. about 2400/(T−1)
    # episodes of length T: ≈ 40 on SMAC (T ≈ 60)
    target_update_episodes: int = 40
    standardise_rewards: bool = False  # the authors' learner uses raw rewards
    last_action: bool = True  # agents see their previous action (authors' default.yaml obs_last_action)
    epsilon_start: float = 0.5  # ε floor of the behaviour policy (authors' offpg_smac.yaml)
    epsilon_end: float = 0.05  # authors' offpg_smac.yaml epsilon_finish
    epsilon_anneal_steps: int = 500_000  # authors' offpg_smac.yaml epsilon_anneal_time
    critic_hidden_sizes: tuple[int, ...] = (256, 256)  # Q^i's ReLU layers (authors' critics/offpg.py fc1, fc2)
    mixing_embed: int = 32  # hypernetwork width m of k(s), b(s) (authors' mixing_embed_dim)
    # "affine": Q_tot = Σ k_i Q^i + b(s), k_i ≥ 0 (DOP Sec. 4.1); "convex": k normalised to Σ_i k_i = 1 and no b(s),
    # the authors' mixers/qmix.py forward (its b(s) is left out, "#b = ...")
    decomposition: Literal["affine", "convex"] = "affine"

    def __post_init__(self):
        super().__post_init__()
        fields.positive(self, "critic_lr")
        fields.in_unit_interval(self, "tree_backup_lambda", "tree_backup_weight")
        fields.at_least(self, 1, "tree_backup_steps", "recent_buffer_size", "recent_batch_size", "mixing_embed")
        fields.layer_widths(self, "critic_hidden_sizes")
        if self.recent_batch_size > self.recent_buffer_size:
            raise ValueError(f"recent_batch_size ({self.recent_batch_size}) cannot exceed recent_buffer_size "
                             f"({self.recent_buffer_size})")
        if self.recent_buffer_size < self.n_envs:
            raise ValueError(f"recent_buffer_size ({self.recent_buffer_size}) must be >= n_envs ({self.n_envs}): "
                             "each iteration adds n_envs windows to the on-policy buffer")

    @property
    def recent_buffer(self):
        """(size, batch) of the on-policy buffer (offpolicy's second buffer); its batch follows the main one."""
        return self.recent_buffer_size, self.recent_batch_size

    @property
    def clipped_params(self) -> tuple[str, ...]:
        """The authors clip the agents' gradient and the critic's + mixer's gradient each by its own norm."""
        return ("actor", "critic")

    @property
    def group_lrs(self) -> dict[str, float]:
        """The critic's and mixer's own Adam step size, `critic_lr` (`offpolicy.optimizer`); the actors' is `lr`."""
        return {"critic": self.critic_lr}


# ---- networks --------------------------------------------------------------------------------------------


class LocalCritic(nn.Module):
    """Q^i(τ, ·) [A] from [s, o^i, one-hot i]: ReLU layers, then A advantages + one value (authors' OffPGCritic)."""

    n_actions: int
    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_sizes:
            x = nn.relu(Dense(width)(x))
        return Dense(self.n_actions)(x) + Dense(1)(x)


class DecomposedMixer(nn.Module):
    """(k [..., N], b [...]) of Q_tot = Σ_i k_i(s) Q^i + b(s) at states [..., S]; k ≥ 0 (DOP Sec. 4.1)."""

    n_agents: int
    embed: int
    decomposition: str = "affine"

    @nn.compact
    def __call__(self, state):
        w1 = jnp.abs(Dense(self.n_agents * self.embed)(state)).reshape(state.shape[:-1] + (self.n_agents, -1))
        w2 = jnp.abs(Dense(self.embed)(state))
        k = jnp.einsum("...nm,...m->...n", w1, w2)
        if self.decomposition == "convex":  # authors' QMixer.forward: k / Σ k, no b(s)
            return k / jnp.maximum(jnp.sum(k, -1, keepdims=True), 1e-8), jnp.zeros(state.shape[:-1])
        b1 = Dense(self.embed)(state)
        value = nn.Sequential([Dense(self.embed), nn.relu, Dense(1)])(state)[..., 0]
        return k, jnp.sum(b1 * w2, -1) + value  # authors' QMixer.k() and .b()


def mix(k, b, agent_qs):
    """Q_tot = Σ_i k_i Q^i + b over the last (agent) axis."""
    return jnp.sum(k * agent_qs, -1) + b


def _agents(n_agents, obs_dim, n_actions, config):
    return op.agents_for(n_agents, obs_dim, n_actions, config)


def _nets(n_agents, n_actions, config):
    return (LocalCritic(n_actions, config.critic_hidden_sizes),
            DecomposedMixer(n_agents, config.mixing_embed, config.decomposition))


def critic_inputs(state, obs):
    """[s, o^i, one-hot i] for every agent: state [..., S], obs [..., N, D] -> [..., N, S + D + N]."""
    n = obs.shape[-2]
    return jnp.concatenate([jnp.broadcast_to(state[..., None, :], obs.shape[:-1] + state.shape[-1:]), obs,
                            jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-1] + (n,))], -1)


def local_qs(critic, params, state, obs):
    """Q^i(τ, ·) [..., N, A], applied to 2-D rows (faster on XLA's CPU backend; see `Agents.apply`)."""
    x = critic_inputs(state, obs)
    return critic.apply(params, x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (-1,))


def init_params(key, spec, config):
    """{"actor": the agents', "critic": {"q": Q^i's, "mixer": k and b's}}."""
    n, a = spec.n_agents, spec.n_actions
    critic, mixer = _nets(n, a, config)
    k_actor, k_critic, k_mixer = jax.random.split(key, 3)
    return {"actor": _agents(n, spec.obs_dim, a, config).init(k_actor),
            "critic": {"q": critic.init(k_critic, jnp.zeros((1, spec.state_dim + spec.obs_dim + n))),
                       "mixer": mixer.init(k_mixer, jnp.zeros(spec.state_dim))}}


def init(key, spec, config, model=None):
    return op.init_state(init_params(key, spec, config), spec, config, initial_carry(spec, config))


def initial_carry(spec, config):
    return _agents(spec.n_agents, spec.obs_dim, spec.n_actions, config).initial_carry()


# ---- the policy -------------------------------------------------------------------------------------------


def log_policy(logits, avail, eps):
    """log π^i(·|τ^i) [..., A]: the softmax of the logits over the available actions mixed with ε of uniform over
    them, π = (1 − ε)·softmax + ε/|available| (authors' basic_controller ε floor); MASKED where unavailable."""
    log_soft = jax.nn.log_softmax(jnp.where(avail, logits, MASKED), axis=-1)
    n_avail = jnp.maximum(jnp.sum(avail, -1, keepdims=True), 1)
    mixed = jnp.logaddexp(jnp.log1p(-eps) + log_soft, jnp.log(eps) - jnp.log(n_avail))
    return jnp.where(avail, mixed, MASKED)


def act(state, obs, avail_actions, key, *, carry, explore, config):
    agents = _agents(*obs.shape, avail_actions.shape[-1], config)
    carry, logits = agents.apply(state.params["actor"], carry, obs)
    if not explore:  # authors' test_greedy: the most probable action
        actions = op.masked_argmax(logits, avail_actions)
    else:
        log_pi = log_policy(logits, avail_actions, op.epsilon(config, state.env_steps))
        actions = jax.random.categorical(key, log_pi, axis=-1).astype(jnp.int32)
    return actions, agents.with_action(carry, actions)


# ---- targets and losses -------------------------------------------------------------------------------------


def tree_backup_targets(q_taken, next_expected, reward, terminated, done, pi_taken, gamma, lam, steps: int):
    """y^TB [T] along one window (DOP-TB): y_t = Q̄_t + Σ_{j<n} (γλ)^j (Π_{l=1}^{j} c_{t+l}) δ_{t+j}, with
    δ_t = r_t + γ(1 − term_t) E_π Q̄_tot(τ_{t+1}) − Q̄_t and c_l = π(a_l|τ_l), the joint probability of the taken
    action. Inputs [T]: q_taken = Q̄_tot(τ_t, a_t), next_expected = E_π Q̄_tot(τ_{t+1}, ·), pi_taken = c_t. A term
    j counts only while no episode ended before step t + j and t + j is inside the window."""
    delta = reward + gamma * (1.0 - terminated) * next_expected - q_taken
    done = done.astype(jnp.float32)

    def ahead(x, j, fill):  # x[t + j], `fill` past the window's end
        return jnp.concatenate([x[j:], jnp.full((j,), fill, x.dtype)])

    correction, coef = delta, jnp.ones_like(delta)
    for j in range(1, min(steps, delta.shape[0])):
        coef = coef * gamma * lam * ahead(pi_taken, j, 0.0) * (1.0 - ahead(done, j - 1, 1.0))
        correction = correction + coef * ahead(delta, j, 0.0)
    return q_taken + correction


def on_policy_next_values(q_taken, next_expected, done):
    """v_{t+1} [..., T] of the on-policy TD(λ) targets: Q̄_tot(τ_{t+1}, a_{t+1}) — the next taken action, as the
    authors' build_td_lambda_targets — where it is in the window; E_π Q̄_tot(τ_{t+1}, ·) at an episode's or the
    window's last step."""
    following = jnp.concatenate([q_taken[..., 1:], jnp.zeros_like(q_taken[..., :1])], -1)
    last = jnp.arange(q_taken.shape[-1]) == q_taken.shape[-1] - 1
    return jnp.where(done | last, next_expected, following)


def policy_gradient_loss(log_pi, q, k, actions):
    """L_actor = −mean_{b,t,i} sg(k_i A^i) log π^i(a^i), A^i = Q^i(a^i) − Σ_x π^i(x) Q^i(x) (stochastic DOP policy
    gradient theorem). log_pi, q [..., N, A]; k, actions [..., N]; Q and k are constants."""
    q, k = jax.lax.stop_gradient(q), jax.lax.stop_gradient(k)
    baseline = jnp.sum(jax.lax.stop_gradient(jnp.exp(log_pi)) * q, -1)
    advantage = taken(q, actions) - baseline
    return -jnp.mean(k * advantage * taken(log_pi, actions))



def loss_fn(params, target_params, batch, key, config, env_steps):
    n, obs_dim = batch.obs.shape[-2:]
    n_actions = batch.avail_actions.shape[-1]
    agents = _agents(n, obs_dim, n_actions, config)
    critic, mixer = _nets(n, n_actions, config)
    eps = op.epsilon(config, env_steps)
    used, target = params["critic"], jax.lax.stop_gradient(target_params["critic"])

    logits, logits_next = op.unroll_batch(agents, params["actor"], batch)  # [B + Br, T, N, A]
    log_pi = log_policy(logits, batch.avail_actions, eps)
    pi = jax.lax.stop_gradient(jnp.exp(log_pi))
    pi_next = jax.lax.stop_gradient(jnp.exp(log_policy(logits_next, batch.next_avail_actions, eps)))

    q = local_qs(critic, used["q"], batch.global_state, batch.obs)  # Q^i(τ_t, ·)
    k, b = mixer.apply(used["mixer"], batch.global_state)
    q_tot = mix(k, b, taken(q, batch.actions))  # [B + Br, T]

    # targets: the target critic and mixer, the current policy (all constants)
    tk, tb = mixer.apply(target["mixer"], batch.global_state)
    tk_next, tb_next = mixer.apply(target["mixer"], batch.next_global_state)
    target_taken = mix(tk, tb, taken(local_qs(critic, target["q"], batch.global_state, batch.obs), batch.actions))
    tq_next = local_qs(critic, target["q"], batch.next_global_state, batch.next_obs)
    next_expected = mix(tk_next, tb_next, jnp.sum(pi_next * tq_next, -1))  # E_π Q̄_tot(τ_{t+1}, ·), O(N|A|)
    pi_joint = jnp.prod(taken(pi, batch.actions), -1)

    done = jnp.logical_or(batch.terminated, batch.truncated)
    terminated = (batch.terminated if config.truncation_bootstrap else done).astype(jnp.float32)
    main, recent = slice(0, config.batch_size), slice(config.batch_size, None)  # main batch first (offpolicy)
    y_tb = jax.vmap(lambda *x: tree_backup_targets(*x, config.gamma, config.tree_backup_lambda,
                                                   config.tree_backup_steps))(
        target_taken[main], next_expected[main], batch.team[main], terminated[main], done[main], pi_joint[main])
    recent_batch = jax.tree.map(lambda x: x[recent], batch)
    y_on = op.batch_lambda_returns(recent_batch, on_policy_next_values(target_taken[recent], next_expected[recent],
                                                                       done[recent]), config)
    tb_loss = jnp.mean((q_tot[main] - jax.lax.stop_gradient(y_tb)) ** 2)
    on_loss = jnp.mean((q_tot[recent] - jax.lax.stop_gradient(y_on)) ** 2)
    kappa = config.tree_backup_weight
    critic_loss = kappa * tb_loss + (1.0 - kappa) * on_loss

    actor_loss = policy_gradient_loss(log_pi[recent], q[recent], k[recent], batch.actions[recent])
    metrics = {"critic_loss": critic_loss, "tree_backup_loss": tb_loss, "on_policy_loss": on_loss,
               "actor_loss": actor_loss, "q_tot": jnp.mean(q_tot), "k_mean": jnp.mean(k),
               "pi_max": jnp.mean(jnp.max(pi[recent], -1))}
    return critic_loss + actor_loss, metrics


update = op.make_update(loss_fn)

register_algo(Algorithm(
    name="dop", description="DOP: linearly decomposed critic (DOP-TB + on-policy TD(λ)) and stochastic decentralised "
                            "actors (stochastic DOP policy gradient)",
    config_cls=DOPConfig, init=init, act=act, update=update,
    warmup_iterations=op.warmup_iterations, requires=("discrete",),
    paper="DOP (Wang et al., ICLR 2021; authors' code TonghanWang/DOP offpg_smac.yaml)", initial_carry=initial_carry,
    summary=lambda config, env: {"decomposition": config.decomposition}, default_total_steps=200_000,
))
