"""The named tabular games of the four papers, built as `TabularGame`s.

Matrix games index rows by agent 1's action and columns by agent 2's (R[i, j]: agent 1 plays i,
agent 2 plays j), as the papers print them; action 0 is the first row/column.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from coopmarl.envs.registry import register_env
from coopmarl.envs.tabular import TabularGame, check_game_size, load_game
from coopmarl.errors import ParamError

# ROMMEO §5.1 / Claus & Boutilier (1998). The ROMMEO text prints (5, 3) for (C, C); the standard
# matrix and the authors' code use 5 (REFERENCE.md), which we follow.
CLIMBING = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])

# MAOSQL Table 2: the optimum is (3, 3) -> 3; a uniform policy makes actions 1, 2 look better.
RO_MATRIX = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 3.0]])

# MAOSQL Table 3 (n = m = 3): reward by the number of agents taking the target action.
TENSOR_REWARDS = (0.6, 0.0, 1.0, 0.5)

# MAOSQL Table 4 (rewards) and Table 5 (deterministic next state, 1-based in the paper).
THREE_STATE_REWARD = np.array(
    [
        [[0.6, 0.0, 0.0], [0.0, 0.4, 0.4], [0.0, 0.4, 0.4]],
        [[0.6, 0.0, 0.6], [0.0, 1.0, 0.0], [0.6, 0.0, 0.6]],
        [[0.3, 0.3, 0.0], [0.3, 0.3, 0.0], [0.0, 0.0, 0.4]],
    ]
)
THREE_STATE_NEXT = np.array(
    [
        [[1, 1, 1], [1, 3, 2], [1, 2, 3]],
        [[1, 2, 1], [2, 3, 2], [1, 2, 1]],
        [[1, 1, 3], [1, 1, 3], [3, 3, 2]],
    ]
) - 1

# DPO App. C, Table 3: [[a, b], [c, d]] with rows p / 1-p (agent 1), columns q / 1-q (agent 2).
DPO_2X2 = {1: (5, 7, 6, 4), 2: (1, 3, 5, 4), 3: (7, 1, 1, 3), 4: (20, 0, 0, 10)}


def _params(**kw):
    return tuple(kw.items())


@register_env("climbing", "Claus & Boutilier climbing game, iterated (ROMMEO Fig. 1); optimum (A,A) = 11", ("tabular",))
def climbing(horizon: int = 1, discount: float = 1.0) -> TabularGame:
    return TabularGame.matrix(CLIMBING, horizon, discount, "climbing", _params(horizon=horizon, discount=discount))


@register_env("penalty", "Claus & Boutilier penalty game [[10,0,k],[0,2,0],[k,0,10]], k <= 0", ("tabular",))
def penalty(k: float = -100.0, horizon: int = 1, discount: float = 1.0) -> TabularGame:
    if k > 0:
        raise ParamError(f"penalty: k must be a finite number <= 0 (the penalty for miscoordinating), got {k!r}")
    payoff = np.array([[10.0, 0.0, k], [0.0, 2.0, 0.0], [k, 0.0, 10.0]])
    return TabularGame.matrix(payoff, horizon, discount, "penalty", _params(k=k, horizon=horizon, discount=discount))


@register_env("ro-matrix", "MAOSQL Table 2: relative-overgeneralisation 3x3 game, horizon 10; optimum (3,3)", ("tabular",))
def ro_matrix(horizon: int = 10, discount: float = 1.0) -> TabularGame:
    return TabularGame.matrix(RO_MATRIX, horizon, discount, "ro-matrix", _params(horizon=horizon, discount=discount))


@register_env("tensor", "MAOSQL Table 3: reward by the number of agents on the target action (action 0)", ("tabular",))
def tensor(n_agents: int = 3, n_actions: int = 3, rewards: tuple[float, ...] | None = None,
           horizon: int = 10, discount: float = 1.0) -> TabularGame:
    if n_agents < 1:
        raise ParamError(f"tensor: n_agents must be an integer >= 1, got {n_agents}")
    if n_actions < 2:
        raise ParamError(f"tensor: n_actions must be an integer >= 2 (the target action and another), got {n_actions}")
    check_game_size("tensor", 1, n_agents, n_actions, horizon)
    if rewards is None:
        if n_agents != 3:
            raise ParamError(
                f"the paper gives the tensor game's rewards only for 3 agents; for n_agents={n_agents} pass "
                f"rewards=r0,r1,...,r{n_agents} (reward when 0..n agents take the target action)"
            )
        rewards = TENSOR_REWARDS
    if len(rewards) != n_agents + 1:
        raise ParamError(f"tensor: rewards must have n_agents + 1 = {n_agents + 1} entries, got {len(rewards)}")
    # the number of agents on the target action, one broadcast axis per agent
    target = np.arange(n_actions) == 0
    on_target = sum(target.reshape((-1,) + (1,) * (n_agents - 1 - i)).astype(np.int32) for i in range(n_agents))
    on_target = np.broadcast_to(on_target, (n_actions,) * n_agents)
    payoff = np.asarray(rewards, dtype=np.float64)[on_target]
    return TabularGame.matrix(
        payoff, horizon, discount, "tensor",
        _params(n_agents=n_agents, n_actions=n_actions, rewards=tuple(rewards), horizon=horizon, discount=discount),
    )


@register_env("three-state", "MAOSQL Tables 4-5: 3-state 2-agent game, uniform start, horizon 10", ("tabular",))
def three_state(horizon: int = 10, discount: float = 1.0) -> TabularGame:
    transition = np.eye(3)[THREE_STATE_NEXT]  # [S, A, A, S]
    initial = np.full(3, 1.0 / 3.0)
    return TabularGame.create(THREE_STATE_REWARD, transition, initial, horizon, discount, "three-state",
                              _params(horizon=horizon, discount=discount))


def _dpo_2x2(index: int):
    a, b, c, d = DPO_2X2[index]

    def build(horizon: int = 1, discount: float = 1.0) -> TabularGame:
        return TabularGame.matrix([[a, b], [c, d]], horizon, discount, f"dpo-2x2-{index}",
                                  _params(horizon=horizon, discount=discount))

    build.__name__ = f"dpo_2x2_{index}"
    return build


for _i, _abcd in DPO_2X2.items():
    register_env(f"dpo-2x2-{_i}", f"DPO App. C matrix game {_i}: (a,b,c,d) = {_abcd}", ("tabular",))(_dpo_2x2(_i))


def random_game_arrays(n_states: int, n_agents: int, n_actions: int, seed: int):
    """DPO's random cooperative stochastic game: r ~ U[-5, 5], dense random P(s'|s,a)."""
    rng = np.random.default_rng(seed)
    shape = (n_states,) + (n_actions,) * n_agents
    reward = rng.uniform(-5.0, 5.0, size=shape).astype(np.float32)
    transition = rng.random(size=shape + (n_states,), dtype=np.float32)
    transition /= transition.sum(-1, keepdims=True)
    return reward, transition


@register_env(
    "random-stochastic-game",
    "DPO §5.1: random cooperative stochastic game; r~U[-5,5], dense random transitions, start state 0, "
    "episode length = n_states, one-hot state observation; reset=never: the authors' never-reset runner",
    ("tabular",),
)
def random_stochastic_game(n_states: int = 100, n_agents: int = 6, n_actions: int = 5, seed: int = 0,
                           discount: float = 1.0, reset: Literal["episode", "never"] = "episode") -> TabularGame:
    for name, value in (("n_states", n_states), ("n_agents", n_agents), ("n_actions", n_actions)):
        if value < 1:
            raise ParamError(f"random-stochastic-game: {name} must be an integer >= 1, got {value}")
    if seed < 0:
        raise ParamError(f"random-stochastic-game: seed must be an integer >= 0, got {seed}")
    check_game_size("random-stochastic-game", n_states, n_agents, n_actions, horizon=n_states)
    reward, transition = random_game_arrays(n_states, n_agents, n_actions, seed)
    initial = np.eye(n_states, dtype=np.float32)[0]
    return TabularGame.create(
        reward, transition, initial, horizon=n_states, discount=discount, name="random-stochastic-game",
        params=_params(n_states=n_states, n_agents=n_agents, n_actions=n_actions, seed=seed, discount=discount,
                       reset=reset),
        reset=reset,
    )


@register_env("tabular", "a game from an .npz file holding reward, transition[, initial]: tabular:PATH",
              ("tabular",), prefix=True)
def tabular_file(path: str, horizon: int | None = None, discount: float | None = None,
                 reset: Literal["episode", "never"] = "episode") -> TabularGame:
    return load_game(path, horizon, discount, reset)
