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
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from coopmarl.nets.dense import Dense, dense_product
from coopmarl.nets.init import orthogonal


class AgentQNet(nn.Module):
    """fc -> ReLU -> GRU (or a second fc -> ReLU) -> Q head; optionally a dueling head V + A - mean(A).

    This module defines the parameters (flax's layers and initialisers; named explicitly, so the parameter tree is
    stable) and is the reference for their meaning; `Agents` computes with them in three parts (`Agents.encode`,
    `Agents.step`, `Agents.head`), so that an unroll can take everything but the recurrence out of its loop.
    """

    n_actions: int
    hidden: int = 64
    recurrent: bool = True
    dueling: bool = False

    @nn.compact
    def __call__(self, carry, x):
        h = nn.relu(Dense(self.hidden, name="Dense_0")(x))
        if self.recurrent:
            carry, h = nn.GRUCell(self.hidden, recurrent_kernel_init=orthogonal(), name="GRUCell_0")(carry, h)
        else:
            h = nn.relu(Dense(self.hidden, name="Dense_1")(h))
        head = 1 if self.recurrent else 2
        if self.dueling:  # Wang et al. 2016, used by MAOSDQN (App. C)
            advantage = Dense(self.n_actions, name=f"Dense_{head}")(h)
            return carry, Dense(1, name=f"Dense_{head + 1}")(h) + advantage - advantage.mean(-1, keepdims=True)
        return carry, Dense(self.n_actions, name=f"Dense_{head}")(h)


class Weights(NamedTuple):
    """One agent network's parameters as the matrices `Agents` multiplies by (`Agents.weights`): the GRU's three
    input products as one [H, 3H] matrix and its three recurrent ones as one more (flax's GRUCell keeps six)."""

    fc: tuple  # (kernel, bias) of the first layer
    hidden: tuple  # recurrent: (W_i [H, 3H], b_i [3H]) of the gates r, z, n; MLP: (kernel, bias) of the second layer
    recurrent: tuple  # recurrent: (W_h [H, 3H], b_hn [H]); MLP: ()
    head: tuple  # ((kernel, bias) of Q) or, dueling, ((kernel, bias) of A, (kernel, bias) of V)


def gru_cell(w_h: jax.Array, b_hn: jax.Array, h: jax.Array, i_r: jax.Array, i_z: jax.Array, i_n: jax.Array):
    """One step of flax's GRUCell on rows, from its input gates (W_i·x + b_i, split in three [R, H]) and its recurrent
    weights as one matrix (W_hr | W_hz | W_hn [H, 3H], b_hn [H]): r = σ(i_r + W_hr h), z = σ(i_z + W_hz h),
    n = tanh(i_n + r ⊙ (W_hn h + b_hn)), h′ = (1 − z) ⊙ n + z ⊙ h. Returns h′ and the recurrent products W_h·h [R, 3H]
    (from which `_gru_loop_bwd` recomputes the gates)."""
    g = h @ w_h
    h_r, h_z, h_n = jnp.split(g, 3, -1)
    r, z = jax.nn.sigmoid(i_r + h_r), jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * (h_n + b_hn))
    return (1.0 - z) * n + z * h, g


@jax.custom_vjp
def gru_loop(w_h, b_hn, h0, keep, i_r, i_z, i_n):
    """The GRU's memory along T steps: hs [T, R, H], hs[t] = `gru_cell`(keep[t] ⊙ hs[t − 1], input gates [t]), from h0
    [R, H]; keep [T, R, 1] is 0 where the memory restarts (an episode's first step), else 1; the input gates i_r,
    i_z, i_n [T, R, H] are computed for all steps before the loop (`Agents.encode`).

    Its gradient is written out (`_gru_loop_bwd`): the backward loop computes only what is sequential (the
    memory's cotangent) and leaves the weights' gradient to one product over all steps after it, where autodiff of
    the loop would multiply and accumulate it at every step. The input gates come as three arrays, not as column
    blocks of one: inside a loop, XLA's CPU backend runs the gates' fusion several times slower when it slices them
    out of one array's step."""
    def body(h, xs):
        k, a, b, c = xs
        h, _ = gru_cell(w_h, b_hn, h * k, a, b, c)
        return h, h

    return jax.lax.scan(body, h0, (keep, i_r, i_z, i_n))[1]


def _gru_loop_fwd(w_h, b_hn, h0, keep, i_r, i_z, i_n):
    def body(h, xs):
        k, a, b, c = xs
        h, g = gru_cell(w_h, b_hn, h * k, a, b, c)
        return h, (h, g)

    _, (hs, g) = jax.lax.scan(body, h0, (keep, i_r, i_z, i_n))
    return hs, (w_h, b_hn, h0, keep, hs, g, i_r, i_z, i_n)


def _gru_loop_bwd(residuals, d_hs):
    """`gru_loop`'s vector-Jacobian product: backwards through the steps, with the derivatives of `gru_cell`
    (σ′ = σ(1 − σ), tanh′ = 1 − tanh²). The forward loop keeps only the memory and the recurrent products W_h·h; the
    gates and every factor of the chain rule that does not depend on the memory's cotangent are computed for all
    steps at once here, so the backward loop is one product and one multiply-add per step, and the gates' and the
    recurrent weights' gradients (Σ_t h_{t−1}ᵀ·∂(W_h h_{t−1})) are computed after it."""
    w_h, b_hn, h0, keep, hs, g, i_r, i_z, i_n = residuals
    h_prev = keep * jnp.concatenate([h0[None], hs[:-1]], 0)  # the memory each step read
    g_r, g_z, g_n = jnp.split(g, 3, -1)
    r, z = jax.nn.sigmoid(i_r + g_r), jax.nn.sigmoid(i_z + g_z)
    hn = g_n + b_hn
    n = jnp.tanh(i_n + r * hn)
    # per unit of ∂h_t: ∂i_n = a, ∂i_z = (h_{t−1} − n) z (1 − z), ∂i_r = a · hn · r (1 − r), ∂(W_hn h + b_hn) = a · r
    a = (1.0 - z) * (1.0 - n * n)
    per_gate = jnp.concatenate([a * hn * r * (1.0 - r), (h_prev - n) * z * (1.0 - z), a * r], -1)  # [T, R, 3H]
    w_t = w_h.T

    def body(d_h_next, xs):  # ∂h_{t−1} = keep_t · (∂h_t ⊙ z + (∂h_t · per_gate) W_hᵀ)
        d_out, z_k, gate_k = xs
        d_h = d_h_next + d_out
        return d_h * z_k + (jnp.concatenate([d_h, d_h, d_h], -1) * gate_k) @ w_t, d_h

    d_h0, d_h = jax.lax.scan(body, jnp.zeros_like(h0), (d_hs, z * keep, per_gate * keep), reverse=True)
    d_gates = jnp.concatenate([d_h, d_h, d_h], -1) * per_gate  # (∂i_r, ∂i_z, ∂(W_hn h + b_hn))
    width = h0.shape[-1]
    d_ir, d_iz, d_hn = jnp.split(d_gates, 3, -1)
    d_w = h_prev.reshape(-1, width).T @ d_gates.reshape(-1, 3 * width)
    return d_w, d_hn.reshape(-1, width).sum(0), d_h0, jnp.zeros_like(keep), d_ir, d_iz, d_h * a


gru_loop.defvjp(_gru_loop_fwd, _gru_loop_bwd)


def _dense(p) -> tuple:
    return p["kernel"], p["bias"]


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

    # ---- the network in three parts, on 2-D rows (one agent network's `Weights`) ----------------------------------

    def weights(self, params) -> Weights:
        """`params` (as `init` gives them; stacked on a leading agent axis without shared parameters) as `Weights`."""
        p = params["params"]
        if self.recurrent:
            g = p["GRUCell_0"]
            cat = lambda names, part: jnp.concatenate([g[n][part] for n in names], -1)  # noqa: E731
            hidden = (cat(("ir", "iz", "in"), "kernel"), cat(("ir", "iz", "in"), "bias"))
            recurrent = (cat(("hr", "hz", "hn"), "kernel"), g["hn"]["bias"])
        else:
            hidden, recurrent = _dense(p["Dense_1"]), ()
        h = 1 if self.recurrent else 2
        head = (_dense(p[f"Dense_{h}"]), _dense(p[f"Dense_{h + 1}"])) if self.dueling else (_dense(p[f"Dense_{h}"]),)
        return Weights(_dense(p["Dense_0"]), hidden, recurrent, head)

    @staticmethod
    def encode(w: Weights, x: jax.Array) -> jax.Array:
        """Input rows [R, in] -> what does not depend on the memory: the GRU's input gates W_i·fc(x) + b_i [R, 3H]
        (recurrent), or the MLP's last hidden layer [R, H]."""
        h = jax.nn.relu(dense_product(x, w.fc[0]) + w.fc[1])
        hidden = dense_product(h, w.hidden[0]) + w.hidden[1]
        return hidden if w.recurrent else jax.nn.relu(hidden)

    @staticmethod
    def step(w: Weights, h: jax.Array, i_r: jax.Array, i_z: jax.Array, i_n: jax.Array) -> jax.Array:
        """One GRU step on rows: h [R, H] and the input gates [R, H] each (`encode`, split) -> the new h
        (`gru_cell`)."""
        return gru_cell(w.recurrent[0], w.recurrent[1], h, i_r, i_z, i_n)[0]

    def head(self, w: Weights, h: jax.Array) -> jax.Array:
        """Hidden rows [R, H] -> Q-values [R, A]."""
        if not self.dueling:
            return dense_product(h, w.head[0][0]) + w.head[0][1]
        advantage = dense_product(h, w.head[0][0]) + w.head[0][1]  # Wang et al. 2016, used by MAOSDQN (App. C)
        return dense_product(h, w.head[1][0]) + w.head[1][1] + advantage - advantage.mean(-1, keepdims=True)

    def rows(self, fn, w: Weights, *arrays: jax.Array) -> jax.Array:
        """fn(w, *rows) on arrays [..., N, ·] as 2-D rows [R, ·], back to [..., N, ·]: every agent's rows in one
        matrix with shared parameters, each agent's own rows with its own (vmapped over the agent axis) otherwise.

        XLA's CPU backend multiplies a flattened [rows, D] @ [D, H] about twice as fast as the same product with
        extra batch axes."""
        lead, n = arrays[0].shape[:-2], self.n_agents
        if self.share_parameters:
            out = fn(w, *(a.reshape(-1, a.shape[-1]) for a in arrays))
            return out.reshape(lead + (n, out.shape[-1]))
        per_agent = lambda a: jnp.moveaxis(a, -2, 0).reshape(n, -1, a.shape[-1])  # noqa: E731  [N, rows, ·]
        out = jax.vmap(fn)(w, *(per_agent(a) for a in arrays))
        return jnp.moveaxis(out.reshape((n,) + lead + out.shape[-1:]), 0, -2)

    def hidden_step(self, w: Weights, carry: jax.Array, x: jax.Array) -> jax.Array:
        """The last hidden layer of inputs x [..., N, in] after the network's carry [..., N, H]: the new GRU state, or
        the MLP's hidden layer."""
        if not self.recurrent:
            return self.rows(self.encode, w, x)
        return self.rows(lambda w_, c, x_: self.step(w_, c, *jnp.split(self.encode(w_, x_), 3, -1)), w, carry, x)

    def apply(self, params, carry: jax.Array, obs: jax.Array):
        """One step for every agent: carry [..., N, H], obs [..., N, D] -> (carry [..., N, H], q [..., N, A])."""
        w = self.weights(params)
        x = self.inputs(obs, carry)
        h = self.hidden_step(w, carry[..., :self.carry_dim], x)
        q = self.rows(self.head, w, h)
        if not self.recurrent:
            return carry, q
        return jnp.concatenate([h, carry[..., self.carry_dim:]], -1) if self.last_action else h, q

    def unroll(self, params, carry0: jax.Array, obs: jax.Array, next_obs: jax.Array, done: jax.Array,
               actions: jax.Array | None = None, cut_at: jax.Array | None = None):
        """Q-values along windows of T steps.

        carry0 [..., N, H] is the stored carry before step 0; obs / next_obs [..., T, N, D]; done [..., T]
        ends an episode after step t (so the carry restarts at t + 1). Returns q [..., T, N, A] at obs[t]
        and q_next [..., T, N, A] at next_obs[t] (the true next observation — also at an episode's last
        step). Leading axes (a batch of windows) are stepped together, as one batch of rows per step.
        With `last_action`, `actions` [..., T, N] are the stored actions: q_next[t] sees actions[t] as the
        previous action, and so does q[t + 1] unless an episode starts there.

        Only the recurrence is a loop: the layers before the GRU's state (and its input gates) are applied to all
        steps at once before it, the Q head to all of them after it.

        `cut_at` [..., K] (windows read back from replay, `offpolicy.restore`) says that next_obs[t] is obs[t + 1]
        except at the window's last step and at the steps in cut_at (time limits); at its other episode ends
        (terminations) q_next is then the next episode's first values, which no target reads. q_next[t] is then
        q[t + 1], and only the last and the cut steps apply the network to next_obs — the same values, at half the
        cost.
        """
        return self.unroll_each((params,), carry0, obs, next_obs, done, actions, cut_at)[0]

    def unroll_each(self, params_seq: tuple, carry0: jax.Array, obs: jax.Array, next_obs: jax.Array,
                    done: jax.Array, actions: jax.Array | None = None, cut_at: jax.Array | None = None) -> tuple:
        """`unroll` for several parameter sets (e.g. the online and the target agents), one (q, q_next) each, from
        the inputs they share (the observations with the previous actions)."""
        if self.last_action and actions is None:
            raise ValueError("Agents.unroll needs the stored actions when the agents see their last action")
        before, after = self._carries(carry0, done, actions)
        x, x_next = self.inputs(obs, before), self.inputs(next_obs, after)
        ws = [self.weights(p) for p in params_seq]
        if not self.recurrent:  # no memory to step: every step at once, as one matrix of rows
            return tuple((self.rows(self.head, w, self.hidden_step(w, None, x)),
                          self.rows(self.head, w, self.hidden_step(w, None, x_next))) for w in ws)
        t = done.shape[-1]
        restart = jnp.concatenate([jnp.zeros_like(done[..., :1]), done[..., :-1]], -1)  # the memory restarts at t
        time_first = lambda a, axis: jnp.moveaxis(a, axis, 0)  # noqa: E731
        keep = time_first(1.0 - restart.astype(jnp.float32), -1)[..., None, None]  # [T, ..., 1, 1]
        keep = jnp.broadcast_to(keep, keep.shape[:-2] + (self.n_agents, 1))
        h0, x_t = carry0[..., :self.carry_dim], time_first(x, -3)  # time first before the layers: narrow arrays move
        hs = [self._memory(w, h0, keep, self.rows(self.encode, w, x_t)) for w in ws]  # [T, ..., N, H]
        results = []
        for w, h in zip(ws, hs):  # h[t]: the memory after step t (before any restart)
            q = jnp.moveaxis(self.rows(self.head, w, h), 0, -3)  # [..., T, N, A]
            if cut_at is None:
                q_next = self.rows(self.head, w, self.hidden_step(w, jnp.moveaxis(h, 0, -3), x_next))
            else:
                q_next = self._cut_values(w, q, h, x_next, cut_at, t)
            results.append((q, q_next))
        return tuple(results)

    def _memory(self, w: Weights, h0: jax.Array, keep: jax.Array, gates: jax.Array) -> jax.Array:
        """`gru_loop` on arrays with agents: h0 [..., N, H], keep [T, ..., N, 1], gates [T, ..., N, 3H] -> the memory
        after each step [T, ..., N, H] (every agent's rows in one loop; vmapped over agents without shared
        parameters, as `rows`)."""
        t, lead, n = gates.shape[0], h0.shape[:-2], self.n_agents

        def loop(w_, h0_, keep_, gates_):  # [R, ·] and [T, R, ·]
            return gru_loop(w_.recurrent[0], w_.recurrent[1], h0_, keep_, *jnp.split(gates_, 3, -1))

        if self.share_parameters:
            flat = lambda a: a.reshape(t, -1, a.shape[-1])  # noqa: E731
            out = loop(w, h0.reshape(-1, h0.shape[-1]), flat(keep), flat(gates))
            return out.reshape((t,) + lead + (n, out.shape[-1]))
        per_agent = lambda a: jnp.moveaxis(a, -2, 0).reshape(n, -1, a.shape[-1])  # noqa: E731  [N, R, ·]
        per_agent_t = lambda a: jnp.moveaxis(a, -2, 0).reshape(n, t, -1, a.shape[-1])  # noqa: E731  [N, T, R, ·]
        out = jax.vmap(loop)(w, per_agent(h0), per_agent_t(keep), per_agent_t(gates))  # [N, T, R, H]
        return jnp.moveaxis(out.reshape((n, t) + lead + out.shape[-1:]), 0, -2)

    def _carries(self, carry0: jax.Array, done: jax.Array, actions: jax.Array | None):
        """The carries whose previous action q[t] and q_next[t] see (`last_action`), known from the stored actions
        without stepping: before step t (carry0's before step 0, none after an episode end) and after it (actions[t]).
        Their memory columns are carry0's and unused. (None, None) without `last_action`."""
        if not self.last_action:
            return None, None
        t = done.shape[-1]
        after = self.with_action(jnp.broadcast_to(carry0[..., None, :, :], actions.shape + carry0.shape[-1:]),
                                 actions)  # [..., T, N, W]: the carry after step t
        fresh = jnp.zeros_like(after[..., :1, :, :])
        kept = jnp.where(done[..., :t - 1, None, None], fresh, after[..., :t - 1, :, :])
        return jnp.concatenate([carry0[..., None, :, :], kept], -3), after

    def _cut_values(self, w: Weights, q, h, x_next, cut_at, t: int):
        """q_next of replay's windows (`cut_at` given): q[t + 1], and at the window's last step and its cut steps the
        network applied to next_obs after the memory h [T, ..., N, H] (time first)."""
        # the last step and the cut steps (an empty slot, T, reads the last step and is dropped below)
        at = jnp.concatenate([jnp.full(cut_at.shape[:-1] + (1,), t - 1, cut_at.dtype), cut_at], -1)  # [..., 1 + K]
        at_ = jnp.minimum(at, t - 1)
        x_at = jnp.take_along_axis(x_next, at_.reshape(at.shape + (1, 1)), axis=-3)  # [..., 1 + K, N, in]
        h_at = jnp.moveaxis(jnp.take_along_axis(h, jnp.moveaxis(at_, -1, 0)[..., None, None], axis=0), 0, -3)
        q_at = self.rows(self.head, w, self.hidden_step(w, h_at, x_at))  # [..., 1 + K, N, A]

        def put(qn, at_, q_at_):  # one window: write the cut steps' values (an empty slot's index T is dropped)
            return qn.at[at_[1:]].set(q_at_[1:], mode="drop")

        for _ in range(q.ndim - 3):
            put = jax.vmap(put)
        q_next = jnp.concatenate([q[..., 1:, :, :], q_at[..., :1, :, :]], -3)
        return put(q_next, at, q_at)
