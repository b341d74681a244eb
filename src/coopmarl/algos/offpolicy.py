"""The off-policy core shared by the value-based learners (IQL, VDN, QMIX, WQMIX, QPLEX, ReMIX, MAOSDQN).

What it owns, so that each algorithm file is only its networks and its loss:
- **Windows and replay.** The runner hands `update` a [T, E] batch (T = `rollout_length` steps of E
  auto-resetting envs). Each env's T steps become one replay item — a *window* — stored with the
  agents' recurrent carry at its first step, so recurrent agents resume from where acting left off
  and restart at every episode start inside the window (with `last_action`, that carry also holds each
  agent's previous action, so a window that starts mid-episode knows it; `Agents`). When T is the
  env's horizon (the default, `rollout_length=0`) and episodes run to their limit, a window is exactly
  an episode, as in EPyMARL's episode buffer. Replay is a flashbax item buffer of windows, sampled uniformly; an
  optional second, small buffer holds the most recent windows (ReMIX's on-policy term). A learner with the key
  `replay=episodes` replays whole episodes instead (pymarl2's episode buffer): the runner starts every env
  afresh each iteration, and `step_mask` masks the steps after a window's first episode ends.
- **Targets.** TD(λ) returns inside a window (`lambda_returns`), cut at every episode end and
  bootstrapped from the true next observation (zero after termination, V(final obs) after a time-limit
  truncation).
- **Tricks.** Reward standardisation with running statistics (EPyMARL's `standardise_rewards`),
  ε-greedy exploration annealed linearly in env steps, Adam with global-norm gradient clipping (or, for an
  algorithm that asks, each network clipped by its own norm: `gradient_clip`), hard (every
  `target_update_episodes` windows) or soft (τ) target updates.

An algorithm gives a `loss_fn(params, target_params, batch, key, config, env_steps) -> (loss, metrics)`
on a batch of windows [B, T, ...] (rewards already standardised when asked); `make_update(loss_fn)`
turns it into the contract's `update`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple

import flashbax as fbx
import jax
import jax.numpy as jnp
import optax
from flax import struct

from coopmarl.algos import fields
from coopmarl.algos.base import Transition, linear_schedule
from coopmarl.algos.fields import AlgoConfig
from coopmarl.envs.fast_random import categorical, split_key, uniform
from coopmarl.nets.q import Agents


@dataclass(frozen=True)
class OffPolicyConfig(AlgoConfig):
    """The keys every value-based learner reads. Defaults: EPyMARL's QMIX on LBF (REFERENCE.md)."""

    # collection: each iteration steps `n_envs` envs for `rollout_length` steps, then learns
    n_envs: int = 8  # parallel envs (pymarl2 runs 8)
    rollout_length: int = 0  # window length T; 0 = the env's horizon (one episode per window, as EPyMARL)
    # replay
    buffer_size: int = 5000  # windows kept (≈ episodes; EPyMARL 5000)
    batch_size: int = 32  # windows per gradient step (EPyMARL 32 episodes)
    updates_per_iteration: int = 1  # gradient steps per collected iteration (EPyMARL: one per episode batch)
    # learning
    lr: float = 5e-4  # Adam (EPyMARL)
    gamma: float = 0.99  # EPyMARL
    td_lambda: float = 0.0  # 0 = one-step targets (EPyMARL); pymarl2 / ReMIX use 0.6
    max_grad_norm: float = 10.0  # global-norm gradient clip, 0: none (EPyMARL `grad_norm_clip` 10)
    target_update_episodes: int = 200  # target_tau=0: hard target copy every this many windows (EPyMARL 200 episodes)
    target_tau: float = 0.0  # > 0: soft update θ̄ ← τθ + (1−τ)θ̄ every gradient step instead (EPyMARL: hard, 0)
    truncation_bootstrap: bool = True  # bootstrap at a time limit; False = the limit ends the game (finite horizon)
    standardise_rewards: bool = True  # EPyMARL's running mean/std reward standardisation
    # agents
    agent: Literal["gru", "mlp"] = "gru"  # EPyMARL's rnn agent (fc-GRU-fc) or its mlp agent (fc-fc-fc)
    hidden_sizes: tuple[int, ...] = (64,)  # the agents' one hidden width (EPyMARL `hidden_dim` 64)
    share_parameters: bool = True  # EPyMARL: one network for all agents
    agent_id: bool = True  # one-hot agent id appended to observations (EPyMARL `obs_agent_id`; pymarl2 stag hunt: False)
    # the agent's previous action (one-hot, zeros at an episode start) appended to its observation: pymarl /
    # pymarl2 `obs_last_action: True` (qmix_predator_prey.yaml); False = EPyMARL's algorithm configs (and ours before)
    last_action: bool = False
    # exploration: ε-greedy, ε annealed linearly in env steps
    epsilon_start: float = 1.0  # EPyMARL
    epsilon_end: float = 0.05  # EPyMARL
    epsilon_anneal_steps: int = 50_000  # EPyMARL 50k

    def __post_init__(self):
        super().__post_init__()
        fields.at_least(self, 1, "n_envs", "batch_size", "buffer_size", "updates_per_iteration",
                        "target_update_episodes")
        fields.at_least(self, 0, "rollout_length", "epsilon_anneal_steps")  # rollout_length 0 = the env's horizon
        fields.at_least(self, 0.0, "max_grad_norm")  # 0 = no clipping
        fields.layer_widths(self, exactly=1, why=" (the value-based agents, EPyMARL's fc-GRU-fc and fc-fc-fc, "
                                                  "have one hidden width: e.g. hidden_sizes=64)")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed buffer_size ({self.buffer_size})")
        if self.n_envs > self.buffer_size:
            raise ValueError(f"n_envs ({self.n_envs}) cannot exceed buffer_size ({self.buffer_size}): each iteration "
                             "adds n_envs windows to the replay buffer")
        fields.in_unit_interval(self, "gamma", "td_lambda", "target_tau", "epsilon_start", "epsilon_end")
        fields.positive(self, "lr")


def window_length(config, spec) -> int:
    if config.rollout_length:
        return config.rollout_length
    if spec.horizon <= 0:
        raise ValueError(f"env {spec.name!r} has no horizon: set rollout_length")
    return spec.horizon


def make_agents(spec, config, *, dueling: bool = False) -> Agents:
    return agents_for(spec.n_agents, spec.obs_dim, spec.n_actions, config, dueling=dueling)


def agents_for(n_agents: int, obs_dim: int, n_actions: int, config, *, dueling: bool = False) -> Agents:
    """The agents' Q networks from the shapes alone (as `act` and losses see them)."""
    return Agents(
        n_agents=n_agents, obs_dim=obs_dim, n_actions=n_actions, hidden=config.hidden_sizes[0],
        recurrent=config.agent == "gru", dueling=dueling, share_parameters=config.share_parameters,
        agent_id=config.agent_id, last_action=config.last_action,
    )


# ---- exploration --------------------------------------------------------------------------------


def epsilon(config, env_steps) -> jax.Array:
    return linear_schedule(config.epsilon_start, config.epsilon_end, config.epsilon_anneal_steps, env_steps)


def masked_argmax(q: jax.Array, avail: jax.Array) -> jax.Array:
    return jnp.argmax(jnp.where(avail, q, -jnp.inf), axis=-1).astype(jnp.int32)


def masked_max(q: jax.Array, avail: jax.Array) -> jax.Array:
    return jnp.max(jnp.where(avail, q, -jnp.inf), axis=-1)


def epsilon_greedy(key, q: jax.Array, avail: jax.Array, eps) -> jax.Array:
    """Per agent: a uniformly random *available* action with probability ε, else the greedy one."""
    k_coin, k_rand = split_key(key)  # fast_random: jax.random's draws, bit for bit, without its CPU loop
    n = q.shape[0]
    random = categorical(k_rand, jnp.where(avail, 0.0, -jnp.inf), axis=-1)
    explore = uniform(k_coin, (n,)) < eps
    return jnp.where(explore, random, masked_argmax(q, avail)).astype(jnp.int32)


def epsilon_greedy_probs(q: jax.Array, avail: jax.Array, eps) -> jax.Array:
    """π^n(·) of ε-greedy over available actions: (1−ε)·1[greedy] + ε/|available|."""
    n_avail = jnp.sum(avail, -1, keepdims=True)
    greedy = jax.nn.one_hot(masked_argmax(q, avail), q.shape[-1])
    return (1.0 - eps) * greedy + eps * avail / jnp.maximum(n_avail, 1)


# ---- targets ------------------------------------------------------------------------------------


def lambda_returns(reward, terminated, done, next_value, gamma: float, lam: float) -> jax.Array:
    """TD(λ) returns along one window (all inputs [T, ...], time first).

    G_t = r_t + γ(1 − term_t)·[(1 − λ)·V(s_{t+1}) + λ·G_{t+1}], where the recursion stops at an
    episode end (done_t: the next step belongs to a new episode) and at the window's last step, which
    both bootstrap from V(s_{t+1}) alone. λ = 0 gives one-step targets.
    """
    done = done.reshape(done.shape + (1,) * (reward.ndim - done.ndim))
    terminated = terminated.reshape(done.shape)

    def back(g_next, x):
        r, term, d, v = x
        boot = jnp.where(d, v, (1.0 - lam) * v + lam * g_next)
        g = r + gamma * (1.0 - term) * boot
        return g, g

    _, g = jax.lax.scan(back, next_value[-1], (reward, terminated.astype(jnp.float32), done, next_value),
                        reverse=True)
    return g


# ---- reward statistics --------------------------------------------------------------------------


class RunningStats(struct.PyTreeNode):
    count: jax.Array
    mean: jax.Array
    var: jax.Array

    @classmethod
    def create(cls):
        return cls(jnp.float32(1e-4), jnp.float32(0.0), jnp.float32(1.0))

    def update(self, x: jax.Array) -> "RunningStats":
        """Merge a batch of values (Chan et al.'s parallel mean/variance)."""
        n = jnp.float32(x.size)
        mean, var = jnp.mean(x), jnp.var(x)
        delta, total = mean - self.mean, self.count + n
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        return RunningStats(total, new_mean, m2 / total)

    def standardise(self, x: jax.Array) -> jax.Array:
        return (x - self.mean) / jnp.sqrt(self.var + 1e-8)


# ---- train state and the generic update ---------------------------------------------------------


class OffPolicyState(struct.PyTreeNode):
    params: Any
    target_params: Any
    opt_state: Any
    buffer: Any
    recent: Any  # the recent-windows buffer (ReMIX's on-policy term), or () when unused
    reward_stats: RunningStats
    env_steps: jax.Array  # int32, env steps collected (drives ε)
    windows: jax.Array  # int32, windows collected (drives hard target updates)
    updates: jax.Array  # int32, gradient steps taken
    spec: Any = struct.field(pytree_node=False, default=None)  # the env's EnvSpec (static; e.g. action bounds)


def gradient_clip(config) -> optax.GradientTransformation | None:
    """The clipping stage of `optimizer` (None: no clipping, `max_grad_norm` 0). By default one global-norm clip
    over all parameters (EPyMARL). A config with a `clipped_params` property naming top-level parameter groups
    (e.g. ("critic",)) clips each named group by its own norm and leaves the other groups unclipped — for an
    algorithm whose paper gives its networks separate step sizes (MAOSDQN: η_θ, η_ψ, Alg. 3)."""
    if config.max_grad_norm == 0:
        return None
    groups = getattr(config, "clipped_params", None)
    if groups is None:
        return optax.clip_by_global_norm(config.max_grad_norm)
    return clip_groups_by_norm(config.max_grad_norm, tuple(groups))


def clip_groups_by_norm(max_norm: float, groups: tuple[str, ...]) -> optax.GradientTransformation:
    """Clip each named top-level group of a dict of gradients to norm `max_norm` by its own norm (as optax's
    clip_by_global_norm does for the whole tree); the other groups pass unchanged. Stateless, with the same
    (empty) state as optax.clip_by_global_norm."""

    def update(updates, state, params=None):
        del params
        out = dict(updates)
        for group in groups:
            norm = optax.tree.norm(updates[group])
            scale = jnp.where(norm < max_norm, 1.0, max_norm / jnp.maximum(norm, max_norm))
            out[group] = jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates[group])
        return out, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_groups(factors: dict[str, float]) -> optax.GradientTransformation:
    """Multiply the updates of each named top-level group of a dict of parameters by its factor (stateless)."""

    def update(updates, state, params=None):
        del params
        out = dict(updates)
        for group, factor in factors.items():
            out[group] = jax.tree.map(lambda u: (u * factor).astype(u.dtype), updates[group])
        return out, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def optimizer(config) -> optax.GradientTransformation:
    """Adam after the clipping stage (`gradient_clip`; `max_grad_norm` 0: no clipping). A config with a
    `group_lrs` property ({top-level parameter group: step size}) gives those groups their own Adam step size (Adam's
    step is linear in its step size, so scaling a group's updates by lr_group / lr is Adam at lr_group); the other
    groups use `lr`.

    Without per-group stages, the optimiser sees all parameters as one vector (`optax.flatten`): the same global norm
    and elementwise Adam, in a few operations per gradient step rather than a few per parameter array (a small
    network's update is bound by the number of operations on a CPU)."""
    stages = [stage for stage in (gradient_clip(config), optax.adam(config.lr)) if stage is not None]
    group_lrs = getattr(config, "group_lrs", None)
    if group_lrs:
        stages.append(scale_groups({group: lr / config.lr for group, lr in group_lrs.items()}))
    chain = stages[0] if len(stages) == 1 else optax.chain(*stages)
    if group_lrs or getattr(config, "clipped_params", None) is not None:
        return chain  # (these stages read the parameters' top-level groups)
    return optax.flatten(chain)


def _buffer(config):
    """The replay of windows. Learning starts once it holds `batch_size` windows, or — for a config with a
    `learning_starts` field > 0 — that many (batches are then drawn with replacement from what is there)."""
    min_length = getattr(config, "learning_starts", 0) or config.batch_size
    return fbx.make_item_buffer(max_length=config.buffer_size, min_length=min_length,
                                sample_batch_size=config.batch_size, add_batches=True)


def warmup_iterations(spec, config) -> int:
    """The leading iterations after which the replay cannot yet give a batch (`Algorithm.warmup_iterations`): each
    iteration adds `n_envs` windows, and a buffer can sample once it holds its `min_length` windows or is full — so
    this is exactly when `buffer.can_sample` (and the recent buffer's) first holds, known before the run."""
    del spec
    need = min(getattr(config, "learning_starts", 0) or config.batch_size, config.buffer_size)
    sizes = getattr(config, "recent_buffer", None)
    if sizes:
        size, batch = sizes
        need = max(need, min(batch, getattr(config, "learning_starts", 0) or batch, size))
    return max(0, -(-need // config.n_envs) - 1)


def _recent_buffer(config):
    """A second item buffer of the most recent windows, when the config asks for one via a
    `recent_buffer` property returning (size, batch) or None."""
    sizes = getattr(config, "recent_buffer", None)
    if not sizes:
        return None
    size, batch = sizes
    min_length = min(batch, getattr(config, "learning_starts", 0) or batch)  # (see `_buffer`)
    return fbx.make_item_buffer(max_length=size, min_length=min_length, sample_batch_size=batch, add_batches=True)


def example_window(spec, config, carry) -> Transition:
    """A zero window [T, ...] with the shapes a loss sees (carry: the agents' carry at the first step)."""
    t, n = window_length(config, spec), spec.n_agents
    # discrete: int actions [T, N], masks [T, N, A]; continuous: float actions [T, N, D], masks [T, N, 1]
    actions = jnp.zeros((t, n), jnp.int32) if spec.discrete else jnp.zeros((t, n, spec.action_dim), jnp.float32)
    n_avail = spec.n_actions if spec.discrete else 1
    return Transition(
        obs=jnp.zeros((t, n, spec.obs_dim)), global_state=jnp.zeros((t, spec.state_dim)),
        avail_actions=jnp.zeros((t, n, n_avail), bool), actions=actions,
        reward=jnp.zeros((t, n)), terminated=jnp.zeros((t,), bool), truncated=jnp.zeros((t,), bool),
        next_obs=jnp.zeros((t, n, spec.obs_dim)), next_global_state=jnp.zeros((t, spec.state_dim)),
        next_avail_actions=jnp.zeros((t, n, n_avail), bool), agent_carry=carry, team_reward=jnp.zeros((t,)),
    )


# ---- replay storage: each observation once, in its smallest exact dtype ------------------------------------


class StoredWindow(NamedTuple):
    """A window of T steps as replay keeps it (`store`; `restore` gives back the loss's `Transition`).

    A window's next observations are its observations shifted by one step, except after an episode end inside it:
    there the runner's `next_obs` is the ended episode's final observation while `obs[t + 1]` starts the next
    episode. So each observation is stored once, `obs[0..T]` (the last: the window's final next observation), and
    `restore` reads next_obs[t] = obs[t + 1]. That is exact wherever a loss's target uses the next observation:
    - after a *termination* the target does not bootstrap (its next value is multiplied by 1 − terminated = 0), so
      the next episode's first observation there changes no loss or gradient;
    - after a *truncation* (a time limit) it bootstraps from the final observation, which is kept in one of the
      window's K `cut` slots (`cut_slots`: the env contract puts truncations exactly `horizon` steps apart, so a
      window of T steps holds at most ⌈(T − 1) / horizon⌉ of them before its last step; none for `replay=episodes`,
      whose windows start an episode).
    The same holds for the global state and the action masks. obs and global_state are stored in the env's declared
    exact dtypes (`EnvSpec.obs_dtype` / `state_dtype`: int8 for LBF's positions, bits for predator-prey's 0/1 grid,
    eight to a byte — `pack`), action masks as bits, discrete actions in the smallest int.
    """

    obs: jax.Array  # [T + 1, N, D] (packed: `pack`)
    global_state: jax.Array  # [T + 1, S] (packed)
    avail_actions: jax.Array  # [T + 1, N, A] (bits: [T + 1, N, ⌈A / 8⌉])
    actions: jax.Array  # [T, N] (discrete) or [T, N, action_dim]
    reward: jax.Array  # [T, N]
    team_reward: jax.Array  # [T]
    terminated: jax.Array  # [T]
    truncated: jax.Array  # [T]
    agent_carry: Any  # the agents' carry before step 0
    cut_at: jax.Array  # [K] int32: the steps whose truncation's final observation a slot holds (T: an empty slot)
    cut_obs: jax.Array  # [K, N, D]
    cut_state: jax.Array  # [K, S]
    cut_avail: jax.Array  # [K, N, A]


def cut_slots(spec, config) -> int:
    """How many truncations a window can hold before its last step (see `StoredWindow`)."""
    t = window_length(config, spec)
    if getattr(config, "replay", "windows") == "episodes" or t <= 1:
        return 0
    return -(-(t - 1) // spec.horizon) if spec.horizon > 0 else t - 1


def action_dtype(spec):
    if not spec.discrete:
        return jnp.float32
    return jnp.int8 if spec.n_actions <= 127 else jnp.int16 if spec.n_actions <= 32767 else jnp.int32


def pack(x: jax.Array, dtype: str) -> jax.Array:
    """Values in a storage dtype (`EnvSpec.obs_dtype`): cast, or for "bool" eight 0/1 values to a byte (last axis)."""
    if dtype != "bool":
        return x.astype(dtype)
    if x.size == 0:  # (no cut slots: jnp.packbits cannot reshape an empty array)
        return jnp.zeros(x.shape[:-1] + (-(-x.shape[-1] // 8),), jnp.uint8)
    return jnp.packbits(x != 0, axis=-1)


def unpack(x: jax.Array, dtype: str, width: int, to=jnp.float32) -> jax.Array:
    """`pack`'s inverse, as `to` (float32 features; bool for action masks)."""
    if dtype != "bool":
        return x.astype(to)
    if x.size == 0:
        return jnp.zeros(x.shape[:-1] + (width,), to)
    return jnp.unpackbits(x, axis=-1, count=width).astype(to)


def store(window: Transition, spec, config) -> StoredWindow:
    """One window [T, ...] as replay keeps it (`StoredWindow`)."""
    t, k = window.terminated.shape[0], cut_slots(spec, config)
    cut_at = jnp.nonzero(window.truncated[:-1], size=k, fill_value=t)[0].astype(jnp.int32)
    at = jnp.minimum(cut_at, t - 1)
    o, s, m = (lambda x: pack(x, spec.obs_dtype)), (lambda x: pack(x, spec.state_dtype)), (lambda x: pack(x, "bool"))
    return StoredWindow(
        obs=o(jnp.concatenate([window.obs, window.next_obs[-1:]])),
        global_state=s(jnp.concatenate([window.global_state, window.next_global_state[-1:]])),
        avail_actions=m(jnp.concatenate([window.avail_actions, window.next_avail_actions[-1:]])),
        actions=window.actions.astype(action_dtype(spec)), reward=window.reward, team_reward=window.team_reward,
        terminated=window.terminated, truncated=window.truncated, agent_carry=window.agent_carry, cut_at=cut_at,
        cut_obs=o(window.next_obs[at]), cut_state=s(window.next_global_state[at]),
        cut_avail=m(window.next_avail_actions[at]),
    )


def restore(stored: StoredWindow, spec) -> Transition:
    """The `Transition` a loss reads from stored windows ([..., T + 1, ...] -> [..., T, ...], float32 obs)."""
    if stored.terminated.ndim > 1:  # a batch of windows
        return jax.vmap(lambda w: restore(w, spec))(stored)

    def with_cuts(seq, cut):  # seq[1:], with each slot's final observation at its step
        return seq[1:].at[stored.cut_at].set(cut, mode="drop")  # (an empty slot's index T is dropped)

    n_avail = spec.n_actions if spec.discrete else 1
    o = lambda x: unpack(x, spec.obs_dtype, spec.obs_dim)  # noqa: E731
    s = lambda x: unpack(x, spec.state_dtype, spec.state_dim)  # noqa: E731
    m = lambda x: unpack(x, "bool", n_avail, bool)  # noqa: E731
    obs, state, avail = o(stored.obs), s(stored.global_state), m(stored.avail_actions)
    actions = stored.actions.astype(jnp.int32) if jnp.issubdtype(stored.actions.dtype, jnp.integer) \
        else stored.actions
    return Transition(
        obs=obs[:-1], global_state=state[:-1], avail_actions=avail[:-1], actions=actions,
        reward=stored.reward, terminated=stored.terminated, truncated=stored.truncated,
        next_obs=with_cuts(obs, o(stored.cut_obs)), next_global_state=with_cuts(state, s(stored.cut_state)),
        next_avail_actions=with_cuts(avail, m(stored.cut_avail)),
        agent_carry=stored.agent_carry, team_reward=stored.team_reward, cut_at=stored.cut_at,
    )


def init_state(params, spec, config, carry) -> OffPolicyState:
    window = store(example_window(spec, config, carry), spec, config)
    recent = _recent_buffer(config)
    return OffPolicyState(
        params=params, target_params=params, opt_state=optimizer(config).init(params),
        buffer=_buffer(config).init(window), recent=recent.init(window) if recent else (),
        reward_stats=RunningStats.create(), env_steps=jnp.int32(0), windows=jnp.int32(0), updates=jnp.int32(0),
        spec=spec,
    )


def to_windows(data: Transition) -> Transition:
    """[T, E, ...] rollout -> E windows [E, T, ...], each keeping only its first step's carry."""
    carry0 = jax.tree.map(lambda c: c[0], data.agent_carry)
    windows = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), data._replace(agent_carry=()))
    return windows._replace(agent_carry=carry0)


LossFn = Callable[..., tuple[jax.Array, dict]]


def make_update(loss_fn: LossFn):
    """The contract's `update` for an off-policy learner with this loss."""

    def update(state: OffPolicyState, data: Transition, key, *, config, learn=None):
        """Store the windows, then take the gradient steps once the replay can give a batch (`learn`: the runner's
        word for it, the same for every seed; None: the buffers' own `can_sample`)."""
        t, e = data.terminated.shape
        windows = jax.vmap(lambda w: store(w, state.spec, config))(to_windows(data))
        buffer = _buffer(config)
        recent = _recent_buffer(config)
        state = state.replace(
            buffer=buffer.add(state.buffer, windows),
            recent=recent.add(state.recent, windows) if recent else (),
            reward_stats=state.reward_stats.update(data.team) if config.standardise_rewards
            else state.reward_stats,
            env_steps=state.env_steps + t * e,
        )
        opt = optimizer(config)

        def gradient_step(state, key):
            k_main, k_recent, k_loss = jax.random.split(key, 3)
            batch = buffer.sample(state.buffer, k_main).experience
            if recent:
                extra = recent.sample(state.recent, k_recent).experience
                batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), batch, extra)
            batch = restore(batch, state.spec)
            if config.standardise_rewards:
                batch = batch._replace(reward=state.reward_stats.standardise(batch.reward),
                                       team_reward=state.reward_stats.standardise(batch.team))
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params, state.target_params, batch, k_loss, config, state.env_steps
            )
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            target = state.target_params
            if config.target_tau > 0:
                target = optax.incremental_update(params, target, config.target_tau)
            metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
            return state.replace(params=params, target_params=target, opt_state=opt_state,
                                 updates=state.updates + 1), metrics

        def take_steps(state, key):
            state, metrics = jax.lax.scan(gradient_step, state, jax.random.split(key, config.updates_per_iteration))
            return state, jax.tree.map(jnp.mean, metrics)

        def skip(state, key):
            shapes = jax.eval_shape(take_steps, state, key)[1]
            return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        if learn is None:
            ready = buffer.can_sample(state.buffer)
            if recent:
                ready = ready & recent.can_sample(state.recent)
        else:
            ready = jnp.asarray(learn)
        state, metrics = jax.lax.cond(ready, take_steps, skip, state, key)
        windows_before, windows_after = state.windows, state.windows + e
        if config.target_tau == 0:
            copy = windows_after // config.target_update_episodes != windows_before // config.target_update_episodes
            state = state.replace(target_params=jax.tree.map(
                lambda p, q: jnp.where(copy, p, q), state.params, state.target_params))
        state = state.replace(windows=windows_after)
        if hasattr(config, "epsilon_start"):  # ε-greedy learners report their ε
            metrics = dict(metrics, epsilon=epsilon(config, state.env_steps))
        return state, dict(metrics, learning=ready.astype(jnp.float32))

    return update


def unroll_batch(agents: Agents, params, batch: Transition):
    """Q-values for a batch of windows: q, q_next [B, T, N, A] (see `Agents.unroll`; windows from replay give their
    cut steps, so that q_next costs no second pass)."""
    return unroll_batches(agents, (params,), batch)[0]


def unroll_batches(agents: Agents, params_seq: tuple, batch: Transition) -> tuple:
    """`unroll_batch` for several parameter sets (e.g. online and target), sharing their inputs: ((q, q_next), …)."""
    done = jnp.logical_or(batch.terminated, batch.truncated)
    return agents.unroll_each(tuple(params_seq), batch.agent_carry, batch.obs, batch.next_obs, done, batch.actions,
                              cut_at=batch.cut_at)


def step_mask(batch: Transition, config) -> jax.Array | None:
    """[B, T] 1.0 for the steps a loss counts, 0.0 for padding; None when every step counts.

    With `replay=episodes` (the value-decomposition learners) every window starts an episode, and a window's
    steps after its first episode ends belong to the next episode, begun by the auto-reset env and cut off at the
    window's end: pymarl2's episode buffer has no such steps (its batch is padded there and masked, `mask`), so
    they are masked here. Windows (`replay=windows`, and every learner without the key) count every step."""
    if getattr(config, "replay", "windows") != "episodes":
        return None
    done = jnp.logical_or(batch.terminated, batch.truncated).astype(jnp.int32)
    ended_before = jnp.cumsum(done, axis=-1) - done  # episodes that ended before step t
    return (ended_before == 0).astype(jnp.float32)


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """The mean of x [B, T, ...] over the steps of `mask` [B, T] (`step_mask`; None: the plain mean)."""
    if mask is None:
        return jnp.mean(x)
    m = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def batch_lambda_returns(batch: Transition, next_value, config) -> jax.Array:
    """TD(λ) targets [B, T] (or [B, T, N]) from the team reward and next values of a batch of windows."""
    done = jnp.logical_or(batch.terminated, batch.truncated)
    terminated = batch.terminated if config.truncation_bootstrap else done
    # a team value learns from the team reward; per-agent values (independent learners) from each agent's own
    # (the same as the team's on a shared-reward env; EPyMARL's individual rewards otherwise)
    reward = batch.reward if next_value.ndim == 3 else batch.team
    if isinstance(config.td_lambda, (int, float)) and config.td_lambda == 0:  # one-step targets: no backward loop
        term = terminated.reshape(terminated.shape + (1,) * (reward.ndim - terminated.ndim)).astype(jnp.float32)
        return reward + config.gamma * (1.0 - term) * next_value
    return jax.vmap(lambda r, term, d, v: lambda_returns(r, term, d, v, config.gamma, config.td_lambda))(
        reward, terminated, done, next_value
    )
