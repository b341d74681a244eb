"""Per-agent Q networks (EPyMARL's `rnn` and `mlp` agents) and how they are applied to all agents and
along a stored window of steps.

An agent network maps (carry, input) -> (carry, Q-values [A]). Agents either share one set of
parameters and see a one-hot agent id appended to their observation (EPyMARL's default), or each has
its own parameters (stacked on a leading agent axis). Either way agent n's values depend only on its
own observation history — execution stays decentralised.

With `last_action`, each agent also sees its own previous action (one-hot; zeros at an episode start;
pymarl's `obs_last_action`). That action lives in the carry, after the recurrent state: carry [..., N, H + A]
= [hidden | previous action]. `apply` reads it; the caller writes the action it chose with `with_action`
(acting) or `unroll` does it from the stored actions (replay). So the carry stored at a window's first step
holds the action before the window, and a runner that restarts the carry at an episode start restarts both.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.nets.init import orthogonal


class AgentQNet(nn.Module):
    """fc -> ReLU -> GRU (or a second fc -> ReLU) -> Q head; optionally a dueling head V + A - mean(A)."""

    n_actions: int
    hidden: int = 64
    recurrent: bool = True
    dueling: bool = False

    @nn.compact
    def __call__(self, carry, x):
        h = nn.relu(nn.Dense(self.hidden)(x))
        if self.recurrent:
            carry, h = nn.GRUCell(self.hidden, recurrent_kernel_init=orthogonal())(carry, h)
        else:
            h = nn.relu(nn.Dense(self.hidden)(h))
        if self.dueling:  # Wang et al. 2016, used by MAOSDQN (App. C)
            advantage = nn.Dense(self.n_actions)(h)
            return carry, nn.Dense(1)(h) + advantage - advantage.mean(-1, keepdims=True)
        return carry, nn.Dense(self.n_actions)(h)


@dataclass(frozen=True)
class Agents:
    """All N agents' Q networks: `init(key) -> params`, `apply(params, carry [N, H], obs [N, D])`."""

    n_agents: int
    obs_dim: int
    n_actions: int
    hidden: int = 64
    recurrent: bool = True
    dueling: bool = False
    share_parameters: bool = True
    agent_id: bool = True  # append a one-hot agent id to each observation
    last_action: bool = False  # append the agent's previous action (one-hot, carried; see the module docstring)

    @property
    def net(self) -> AgentQNet:
        return AgentQNet(self.n_actions, self.hidden, self.recurrent, self.dueling)

    @property
    def carry_dim(self) -> int:
        """The network's own carry width (the GRU state; 1 unused column for an MLP)."""
        return self.hidden if self.recurrent else 1

    def initial_carry(self) -> jax.Array:
        width = self.carry_dim + (self.n_actions if self.last_action else 0)
        return jnp.zeros((self.n_agents, width), jnp.float32)

    def with_action(self, carry: jax.Array, actions: jax.Array) -> jax.Array:
        """The carry with each agent's previous action set to `actions` [..., N] (unchanged without last_action)."""
        if not self.last_action:
            return carry
        return jnp.concatenate([carry[..., :self.carry_dim], jax.nn.one_hot(actions, self.n_actions, dtype=carry.dtype)],
                               -1)

    def inputs(self, obs: jax.Array, carry: jax.Array | None = None) -> jax.Array:
        """The network's input: [obs | previous action (from the carry) | one-hot agent id]."""
        parts = [obs]
        if self.last_action:
            parts.append(carry[..., self.carry_dim:].astype(obs.dtype))
        if self.agent_id:
            parts.append(jnp.broadcast_to(jnp.eye(self.n_agents, dtype=obs.dtype), obs.shape[:-1] + (self.n_agents,)))
        return jnp.concatenate(parts, -1) if len(parts) > 1 else obs

    def init(self, key: jax.Array):
        in_dim = self.obs_dim + (self.n_agents if self.agent_id else 0) + (self.n_actions if self.last_action else 0)
        dummy_c, dummy_x = jnp.zeros((self.carry_dim,)), jnp.zeros((in_dim,))
        if self.share_parameters:
            return self.net.init(key, dummy_c, dummy_x)
        return jax.vmap(lambda k: self.net.init(k, dummy_c, dummy_x))(jax.random.split(key, self.n_agents))

    def apply(self, params, carry: jax.Array, obs: jax.Array):
        """One step for every agent: carry [..., N, H], obs [..., N, D] -> (carry [..., N, H], q [..., N, A]).

        The networks see 2-D inputs [rows, D] only: XLA's CPU backend multiplies a flattened
        [rows, D] @ [D, H] about twice as fast as the same product with extra batch axes."""
        x = self.inputs(obs, carry)
        full, carry = carry, carry[..., :self.carry_dim]  # the previous action (if any) stays as it is
        lead, n = x.shape[:-2], self.n_agents
        if self.share_parameters:
            c, q = self.net.apply(params, carry.reshape(-1, carry.shape[-1]), x.reshape(-1, x.shape[-1]))
            c, q = c.reshape(carry.shape), q.reshape(lead + (n, q.shape[-1]))
        else:
            rows = lambda a: jnp.moveaxis(a, -2, 0).reshape(n, -1, a.shape[-1])  # noqa: E731  [N, rows, ·]
            back = lambda a: jnp.moveaxis(a.reshape((n,) + lead + a.shape[-1:]), 0, -2)  # noqa: E731
            c, q = jax.vmap(self.net.apply)(params, rows(carry), rows(x))
            c, q = back(c), back(q)
        return jnp.concatenate([c, full[..., self.carry_dim:]], -1) if self.last_action else c, q

    def unroll(self, params, carry0: jax.Array, obs: jax.Array, next_obs: jax.Array, done: jax.Array,
               actions: jax.Array | None = None, cut_at: jax.Array | None = None):
        """Q-values along windows of T steps.

        carry0 [..., N, H] is the stored carry before step 0; obs / next_obs [..., T, N, D]; done [..., T]
        ends an episode after step t (so the carry restarts at t + 1). Returns q [..., T, N, A] at obs[t]
        and q_next [..., T, N, A] at next_obs[t] (the true next observation — also at an episode's last
        step). Leading axes (a batch of windows) are stepped together, as one batch of rows per step.
        With `last_action`, `actions` [..., T, N] are the stored actions: q_next[t] sees actions[t] as the
        previous action, and so does q[t + 1] unless an episode starts there.

        `cut_at` [..., K] (windows read back from replay, `offpolicy.restore`) says that next_obs[t] is obs[t + 1]
        except at the window's last step and at the steps in cut_at (time limits); at its other episode ends
        (terminations) q_next is then the next episode's first values, which no target reads. Recurrent agents then
        step once per step, not twice: q_next[t] = q[t + 1], and only the last and the cut steps apply the network
        to next_obs — the same values, at half the cost.
        """
        return self.unroll_each((params,), carry0, obs, next_obs, done, actions, cut_at)[0]

    def unroll_each(self, params_seq: tuple, carry0: jax.Array, obs: jax.Array, next_obs: jax.Array,
                    done: jax.Array, actions: jax.Array | None = None, cut_at: jax.Array | None = None) -> tuple:
        """`unroll` for several parameter sets at once (e.g. the online and the target agents), one (q, q_next)
        each: recurrent agents step all of them in one loop over the window, half the loop steps of two unrolls
        (on a CPU a small batch's GRU step costs mostly the loop's and the ops' overhead)."""
        if self.last_action and actions is None:
            raise ValueError("Agents.unroll needs the stored actions when the agents see their last action")
        if actions is None:
            actions = jnp.zeros(done.shape + (self.n_agents,), jnp.int32)  # unused
        if not self.recurrent:  # no memory to step: every step at once, as one matrix of rows
            return tuple(self._unroll_stateless(p, carry0, obs, next_obs, done, actions) for p in params_seq)
        if cut_at is not None:
            return self._unroll_once(params_seq, carry0, obs, next_obs, done, actions, cut_at)
        fresh = jnp.zeros_like(carry0)

        def step(carries, x):
            o, o_next, d, a = x
            new, out = [], []
            for params, carry in zip(params_seq, carries):
                carry, q = self.apply(params, carry, o)
                carry = self.with_action(carry, a)
                _, q_next = self.apply(params, carry, o_next)
                new.append(jnp.where(d[..., None, None], fresh, carry))
                out.append((q, q_next))
            return tuple(new), tuple(out)

        time_first = lambda a, axis: jnp.moveaxis(a, axis, 0)  # noqa: E731
        _, out = jax.lax.scan(step, (carry0,) * len(params_seq), (time_first(obs, -3), time_first(next_obs, -3),
                                                                  time_first(done, -1), time_first(actions, -2)))
        return tuple((jnp.moveaxis(q, 0, -3), jnp.moveaxis(q_next, 0, -3)) for q, q_next in out)

    def _unroll_stateless(self, params, carry0, obs, next_obs, done, actions):
        """`unroll` for MLP agents: their only carry is the previous action (with `last_action`), known from the
        stored actions without stepping — q[t] sees the action before t (carry0's before step 0, none after an
        episode end), q_next[t] sees actions[t]."""
        t = done.shape[-1]
        after = self.with_action(jnp.broadcast_to(carry0[..., None, :, :], obs.shape[:-1] + carry0.shape[-1:]),
                                 actions)  # [..., T, N, W]: the carry after step t
        fresh = jnp.zeros_like(after[..., :1, :, :])
        kept = jnp.where(done[..., :t - 1, None, None], fresh, after[..., :t - 1, :, :])
        before = jnp.concatenate([carry0[..., None, :, :], kept], -3)  # the carry before step t
        _, q = self.apply(params, before, obs)
        _, q_next = self.apply(params, after, next_obs)
        return q, q_next

    def _unroll_once(self, params_seq, carry0, obs, next_obs, done, actions, cut_at):
        """`unroll_each` of recurrent agents over replay's windows (`cut_at` given): one network step per time step
        and parameter set."""
        fresh = jnp.zeros_like(carry0)

        def step(carries, x):
            o, d, a = x
            new, out = [], []
            for params, carry in zip(params_seq, carries):
                carry, q = self.apply(params, carry, o)
                carry = self.with_action(carry, a)  # the carry q_next[t] sees
                new.append(jnp.where(d[..., None, None], fresh, carry))
                out.append((q, carry))
            return tuple(new), tuple(out)

        time_first = lambda a, axis: jnp.moveaxis(a, axis, 0)  # noqa: E731
        _, out = jax.lax.scan(step, (carry0,) * len(params_seq), (time_first(obs, -3), time_first(done, -1),
                                                                  time_first(actions, -2)))
        t = done.shape[-1]
        # the window's last step and its cut steps (an empty slot, T, reads the last step and is dropped below)
        at = jnp.concatenate([jnp.full(cut_at.shape[:-1] + (1,), t - 1, cut_at.dtype), cut_at], -1)  # [..., 1 + K]
        pick = lambda a: jnp.take_along_axis(  # noqa: E731
            a, jnp.minimum(at, t - 1).reshape(at.shape + (1, 1)), axis=-3)

        def put(qn, at_, q_at_):  # one window: write the cut steps' values (an empty slot's index T is dropped)
            return qn.at[at_[1:]].set(q_at_[1:], mode="drop")

        for _ in range(obs.ndim - 3):
            put = jax.vmap(put)
        results = []
        for params, (q, after) in zip(params_seq, out):
            q, after = jnp.moveaxis(q, 0, -3), jnp.moveaxis(after, 0, -3)  # [..., T, N, ·]
            _, q_at = self.apply(params, pick(after), pick(next_obs))  # [..., 1 + K, N, A]
            q_next = jnp.concatenate([q[..., 1:, :, :], q_at[..., :1, :, :]], -3)
            results.append((q, put(q_next, at, q_at)))
        return tuple(results)
