"""The algorithm contract and the algorithm registry.

An algorithm is a typed, frozen config (defaults = the paper's values, cited) and three pure functions:

    init(key, spec, config, model) -> train_state
    act(train_state, obs [N, obs_dim], avail_actions [N, A], key, *, explore: bool, config) -> actions [N]
    update(train_state, data, key, *, config) -> (train_state, metrics: dict[str, scalar])

`act` is decentralised: agent n's action depends only on `obs[n]` (and n). `data` is a `Transition`
batch with leading axes [rollout_length, n_envs] collected by the runner — or, for a *planner*
(`uses_env=False`: an exact iteration such as MAOSVI or DPO's eq. 18), the game model itself.
`model` is the `TabularGame` when the env is one (None otherwise); algorithms that need it say so
with `requires=("tabular",)`. Tabular algorithms also give `policy(train_state, config) -> [N, S, A]`,
the product policy the runner evaluates exactly (and its greedy version).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from coopmarl.envs.fast_random import categorical, split_key
from coopmarl.errors import UnknownNameError, did_you_mean
from coopmarl.plugins import discover


class Transition(NamedTuple):
    obs: jax.Array  # [..., N, obs_dim]
    global_state: jax.Array  # [..., state_dim]
    avail_actions: jax.Array  # [..., N, A]
    actions: jax.Array  # [..., N] (int) or [..., N, action_dim]
    reward: jax.Array  # [..., N]
    terminated: jax.Array  # [...]
    truncated: jax.Array  # [...]
    next_obs: jax.Array  # [..., N, obs_dim]  (the true next observation, also after an episode end)
    next_global_state: jax.Array  # [..., state_dim]
    next_avail_actions: jax.Array  # [..., N, A]  (at an episode end: the final state's mask, for the bootstrap)
    agent_carry: Any = ()  # recurrent agents: their carry *before* acting at this step ([..., N, H]); () if none
    # the team's reward [...] as the env scalarises `reward` (`envs.core.team_reward`: LBF with individual
    # rewards sums them); the runners always fill it. None (hand-made batches): a shared reward, reward[..., 0]
    team_reward: Any = None
    # windows read back from replay (`offpolicy.restore`): [..., K] the steps inside a window whose episode was cut
    # by its time limit (K slots; T marks an empty one). There next_obs is the final observation; after the other
    # episode ends inside a window (terminations, whose targets do not bootstrap) it is the next episode's first,
    # obs[t + 1]. None: next_obs is the true next observation at every step (the runner's own data)
    cut_at: Any = None

    @property
    def done(self):
        return jnp.logical_or(self.terminated, self.truncated)

    @property
    def team(self) -> jax.Array:
        """The team reward [...]: `team_reward`, or reward[..., 0] when a hand-made batch has none."""
        return self.reward[..., 0] if self.team_reward is None else self.team_reward


@dataclass(frozen=True)
class Algorithm:
    name: str
    description: str
    config_cls: type
    init: Callable[..., Any]
    act: Callable[..., jax.Array]
    update: Callable[..., tuple[Any, dict]]
    policy: Callable[[Any, Any], jax.Array] | None = None  # tabular: (state, config) -> policy [N, S, A]
    requires: tuple[str, ...] = ("discrete",)  # subset of {"discrete", "continuous", "tabular"}
    uses_env: bool = True  # False: a planner iterating on the model
    paper: str = ""
    summary: Callable[[Any, Any], dict] | None = None  # (config, env) -> static facts for summary.json
    default_total_steps: int | None = None  # the run length used when the user gives none
    # Recurrent agents: (spec, config) -> the carry of one env's agents at an episode start ([N, ...]).
    # Their `act` then takes `carry=` and returns (actions, new_carry). None = stateless agents.
    initial_carry: Callable[[Any, Any], Any] | None = None
    # Off-policy learners: (spec, config) -> how many first iterations only collect (the replay cannot yet give a
    # batch). The runner then passes `update` a `learn=` flag, iteration >= that number, which is the same for every
    # vmapped seed, so the warm-up iterations run no gradient step (a per-seed `lax.cond` would run both branches).
    # Their `update` must take `learn=None` (None: decide from the state, as when called outside the runner).
    warmup_iterations: Callable[[Any, Any], int] | None = None

    def default_config(self):
        return self.config_cls()

    def init_carry(self, spec, config):
        """The agents' carry at an episode start (() for stateless agents)."""
        return () if self.initial_carry is None else self.initial_carry(spec, config)

    def policy_step(self, train_state, carry, obs, avail_actions, key, *, explore: bool, config):
        """One decentralised action for every agent: (actions [N], new carry). The runner's only way
        to act, so stateless and recurrent algorithms look the same to it."""
        if self.initial_carry is None:
            return self.act(train_state, obs, avail_actions, key, explore=explore, config=config), carry
        return self.act(train_state, obs, avail_actions, key, carry=carry, explore=explore, config=config)


_ALGOS: dict[str, Algorithm] = {}


def register_algo(algo: Algorithm) -> Algorithm:
    """Add `algo` to the registry; a module under `coopmarl.algos` / `coopmarl.exact` (or a plugin's entry
    point module) calls this at import, and discovery (`coopmarl.plugins`) imports it."""
    if algo.name in _ALGOS:
        raise ValueError(f"algorithm {algo.name!r} registered twice")
    if not dataclasses.is_dataclass(algo.config_cls):
        raise TypeError(f"{algo.name}: config_cls must be a dataclass")
    _ALGOS[algo.name] = algo
    return algo


def get_algo(name: str) -> Algorithm:
    discover("algos")
    if name not in _ALGOS:
        raise UnknownNameError(
            f"unknown algorithm {name!r}.{did_you_mean(name, _ALGOS)} Valid algorithms: {', '.join(sorted(_ALGOS))}"
        )
    return _ALGOS[name]


def list_algos() -> list[Algorithm]:
    discover("algos")
    return [_ALGOS[k] for k in sorted(_ALGOS)]


# ---- small shared pieces for tabular learners ----------------------------------------------------


def state_index(obs: jax.Array) -> jax.Array:
    """The state index of a tabular game's one-hot observation [..., S]."""
    return jnp.argmax(obs, axis=-1).astype(jnp.int32)


def linear_schedule(start: float, end: float, steps: int, t: jax.Array) -> jax.Array:
    frac = jnp.clip(t / jnp.maximum(steps, 1), 0.0, 1.0)
    return start + frac * (end - start)


def epsilon_mix(probs: jax.Array, epsilon: jax.Array) -> jax.Array:
    """(1 - eps) * probs + eps * uniform, over the last axis."""
    return (1.0 - epsilon) * probs + epsilon / probs.shape[-1]


def greedy_probs(values: jax.Array) -> jax.Array:
    """A deterministic policy on the first maximiser of `values` over the last axis."""
    return jax.nn.one_hot(jnp.argmax(values, -1), values.shape[-1], dtype=jnp.float32)


def sample_actions(key: jax.Array, probs: jax.Array) -> jax.Array:
    """One action per row of `probs` [N, A] (each agent with its own key)."""
    keys = split_key(key, probs.shape[0])
    return jax.vmap(lambda k, p: categorical(k, jnp.log(p)))(keys, probs).astype(jnp.int32)


def last_transition(data: Transition) -> Transition:
    """The single newest transition of a [T, E] batch (tabular learners update on it alone)."""
    return jax.tree.map(lambda x: x[-1, 0], data)


def over_rows(f, *xs, lead: int):
    """f (a function of one row) applied to every row of `xs` (pytrees whose arrays share `lead` leading axes, None
    allowed) as one vmap over the flattened rows: XLA's CPU backend runs a network's [rows, in] @ [in, out] about
    twice as fast as the same product with several batch axes (what nested vmaps give)."""
    shape = jax.tree.leaves(xs)[0].shape[:lead]
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[lead:]), xs)
    return jax.tree.map(lambda y: y.reshape(shape + y.shape[1:]), jax.vmap(f)(*flat))


def taken(values: jax.Array, actions: jax.Array) -> jax.Array:
    """Each agent's value of its action: values [..., A] at actions [...] (int) -> [...]."""
    return jnp.take_along_axis(values, actions[..., None], -1)[..., 0]


def policy_table(spec, probs: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
    """The product policy [N, S, A] of decentralised policies on a tabular game (one-hot state observations), for
    the runner's exact evaluation: `probs(obs [S, N, S], avail [S, N, A]) -> [S, N, A]` evaluated at every state."""
    n_states = spec.obs_dim
    obs = jnp.broadcast_to(jnp.eye(n_states)[:, None, :], (n_states, spec.n_agents, n_states))
    return jnp.swapaxes(probs(obs, jnp.ones((n_states, spec.n_agents, spec.n_actions), bool)), 0, 1)
