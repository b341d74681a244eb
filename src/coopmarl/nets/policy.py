"""MLP actors and critics for the policy-gradient family, and how one network serves N agents.

`Actor` maps an input to categorical logits [A] or to a Gaussian (mean [D], log-std [D]; the log-std
is a free parameter, not a function of the input). `Critic` maps an input to a value []. `AgentNets`
applies a module to every agent's input [..., N, in_dim] in one of two ways:

- per-agent parameters (`shared=False`): each agent has its own copy, stacked on a leading agent axis,
  and `jax.vmap` applies copy n to input n — no weight is shared (the DPO paper's setting);
- shared parameters (`shared=True`): one copy, and a one-hot agent id is appended to every input
  (EPyMARL's default, `obs_agent_id: True`).

Either way agent n's output depends only on its own input (and n), so acting stays decentralised.

Initialisation follows the MAPPO code base the DPO authors built on: orthogonal weights with gain √2
in hidden layers, 0.01 on the policy head (near-uniform / near-zero-mean initial policies), 1 on the
value head; zero biases. `layer_norm=True` is that code base's MLP (DPO authors' code,
`onpolicy/algorithms/utils/mlp.py`): a LayerNorm on the input (`use_feature_normalization`) and one after
each hidden layer's activation (Linear → ReLU → LayerNorm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.nets.dense import Dense
from coopmarl.nets.init import orthogonal

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_gain: float = 1.0
    layer_norm: bool = False  # the MAPPO code base's MLP (see the module docstring)

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        if self.layer_norm:
            x = nn.LayerNorm(epsilon=1e-5)(x)  # torch.nn.LayerNorm's eps
        for width in self.hidden_sizes:
            x = act(Dense(width, kernel_init=orthogonal(np.sqrt(2.0)))(x))
            if self.layer_norm:
                x = nn.LayerNorm(epsilon=1e-5)(x)
        return Dense(self.out_dim, kernel_init=orthogonal(self.out_gain))(x)


class Actor(nn.Module):
    """Discrete: logits [..., n_out]. Continuous: (mean [..., n_out], log_std [..., n_out])."""

    n_out: int
    continuous: bool
    hidden_sizes: Sequence[int] = (128, 128, 128)
    activation: str = "relu"
    init_log_std: float = 0.0
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        out = MLP(self.hidden_sizes, self.n_out, self.activation, out_gain=0.01, layer_norm=self.layer_norm)(x)
        if not self.continuous:
            return out
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.n_out,))
        return out, jnp.broadcast_to(log_std, out.shape)


class Critic(nn.Module):
    hidden_sizes: Sequence[int] = (128, 128, 128)
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        return MLP(self.hidden_sizes, 1, self.activation, out_gain=1.0, layer_norm=self.layer_norm)(x)[..., 0]


@dataclass(frozen=True)
class AgentNets:
    """One `module` applied to all `n_agents` agents; inputs and outputs carry the agent axis at -2
    (inputs [..., N, in_dim]) and right after the batch axes (outputs [..., N, ...])."""

    module: nn.Module
    n_agents: int
    shared: bool

    def init(self, key: jax.Array, in_dim: int) -> Any:
        if self.shared:
            return self.module.init(key, jnp.zeros((in_dim + self.n_agents,)))
        keys = jax.random.split(key, self.n_agents)
        return jax.vmap(lambda k: self.module.init(k, jnp.zeros((in_dim,))))(keys)

    def apply(self, params: Any, x: jax.Array) -> Any:
        """The module sees 2-D inputs [rows, in_dim] only: XLA's CPU backend multiplies a flattened
        [rows, in] @ [in, out] ~2x faster than the same product with extra batch axes ([T, E, N, in])."""
        batch = x.shape[:-2]  # the axes before the agent axis
        if self.shared:
            ids = jnp.broadcast_to(jnp.eye(self.n_agents, dtype=x.dtype), x.shape[:-1] + (self.n_agents,))
            x = jnp.concatenate([x, ids], axis=-1)
            out = self.module.apply(params, x.reshape(-1, x.shape[-1]))  # [rows·N, ...]
            return jax.tree.map(lambda o: o.reshape(batch + (self.n_agents,) + o.shape[1:]), out)
        rows = jnp.moveaxis(x, -2, 0).reshape(self.n_agents, -1, x.shape[-1])  # [N, rows, in]
        out = jax.vmap(self.module.apply)(params, rows)  # [N, rows, ...]
        return jax.tree.map(lambda o: jnp.moveaxis(o.reshape((self.n_agents,) + batch + o.shape[2:]), 0, len(batch)),
                            out)
