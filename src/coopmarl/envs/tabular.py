"""`TabularGame`: a cooperative stochastic game given by its arrays, steppable and solvable.

A game with S states and N agents with A actions each is
    reward      [S, A, ..., A]        team reward r(s, a^1, ..., a^N)
    transition  [S, A, ..., A, S]     P(s' | s, a)
    initial     [S]                   start-state distribution (default: state 0)
    horizon     episode length (a time limit: the last step is *truncated*, not terminated)
    reset       "episode" (default): a new episode starts after each horizon; "never": the DPO authors' code
                (`train_matrix_game.py` MatrixGame.step, `matrix_runner.py` warmup): reset once, and from the
                horizon on every step ends an episode — *terminated*, as their runner masks it — while the
                chain runs on from where it is (`info["keep_running"]` tells `AutoReset` not to reset)
    discount    the discount of the objective the exact solvers (`coopmarl.exact`) optimise and the runner
                reports (default 1: the expected episode return); learners use their own γ

Joint actions are flattened row-major (agent 1 is the most significant digit), so `reward_flat`
is [S, A**N] and `transition_flat` is [S, A**N, S]. Matrix games are one-state games
(`TabularGame.matrix`). The game is a pytree: its arrays are leaves, so jitted code receives them
as arguments (no giant constants baked into compiled programs).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.errors import GameValidationError, ParamError
from coopmarl.ranges import FLOAT32_MAX, INT32_MAX

_ATOL = 1e-4
# The most entries a game's tables may have: the transition tensor [S, A**N, S] and the exact solver's
# Q table per stage [H, S, A**N] (1.6 GB each in float32).
MAX_TABLE_ENTRIES = 400_000_000
RESETS = ("episode", "never")


def _first_bad_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _real_array(name: str, value) -> np.ndarray:
    """`value` as a float64 array, refusing what is not real numbers (strings, complex, objects, ragged lists)."""
    try:
        array = np.asarray(value)
    except ValueError as e:  # e.g. a ragged nested list
        raise GameValidationError(f"{name} must be an array of real numbers ({e})") from None
    if array.dtype.kind not in "biuf":
        raise GameValidationError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
    return array.astype(np.float64)


def check_game_size(game: str, n_states: int, n_agents: int, n_actions: int, horizon: int = 1) -> None:
    """ParamError unless a game of this size keeps its tables within MAX_TABLE_ENTRIES: the transition
    tensor [S, A**N, S] and the exact solver's per-stage Q [H, S, A**N]. Judged on logarithms first, so an
    absurd n_agents is refused without computing A**N."""
    largest = max(n_states, horizon)
    log_entries = math.log(n_states) + math.log(largest) + n_agents * math.log(n_actions)
    if log_entries > math.log(MAX_TABLE_ENTRIES) + 1e-9 or n_states * largest * n_actions**n_agents > MAX_TABLE_ENTRIES:
        raise ParamError(
            f"{game} is too large with n_states={n_states}, n_agents={n_agents}, n_actions={n_actions} and horizon="
            f"{horizon}: its transition tensor (S x A^N x S) or the exact solver's Q tables (H x S x A^N) would hold "
            f"more than {MAX_TABLE_ENTRIES:,} values")


def validate_arrays(reward, transition, initial, horizon, discount):
    """Check dtypes, shapes, ranges and probabilities; return float32 numpy arrays. Raises GameValidationError."""
    reward = _real_array("reward", reward)
    if reward.ndim < 2:
        raise GameValidationError(
            f"reward must have shape [S, A, ..., A] (one axis per agent), got shape {reward.shape}; "
            "use TabularGame.matrix(payoff) for a one-state matrix game"
        )
    n_states, action_axes = reward.shape[0], reward.shape[1:]
    if reward.size == 0:
        raise GameValidationError(
            f"reward has shape {reward.shape}: a game needs at least one state and one action per agent")
    if len(set(action_axes)) != 1:
        raise GameValidationError(
            f"reward has action axes {action_axes}: every agent must have the same number of actions"
        )
    if not np.all(np.isfinite(reward)):
        raise GameValidationError(f"reward has a non-finite entry at index {_first_bad_index(~np.isfinite(reward))}")
    too_large = np.abs(reward) > FLOAT32_MAX
    if too_large.any():
        idx = _first_bad_index(too_large)
        raise GameValidationError(
            f"reward[{', '.join(map(str, idx))}] = {reward[idx]:g} is beyond float32's range "
            f"(|reward| <= {FLOAT32_MAX:.4g}); rewards are float32")
    if transition is None:
        if n_states != 1:
            raise GameValidationError("transition is required when the game has more than one state")
        transition = np.ones(reward.shape + (1,))
    transition = _real_array("transition", transition)
    if transition.shape != reward.shape + (n_states,):
        raise GameValidationError(
            f"transition must have shape reward.shape + (S,) = {reward.shape + (n_states,)}, got {transition.shape}"
        )
    bad = ~np.isfinite(transition) | (transition < 0)
    if bad.any():
        raise GameValidationError(
            f"transition has a negative or non-finite probability at index {_first_bad_index(bad)}"
        )
    sums = transition.sum(-1)
    bad = np.abs(sums - 1.0) > _ATOL
    if bad.any():
        idx = _first_bad_index(bad)
        raise GameValidationError(
            f"transition[{', '.join(map(str, idx))}, :] sums to {sums[idx]:.6g}, not 1 "
            f"(state {idx[0]}, joint action {idx[1:]})"
        )
    if initial is None:
        initial = np.eye(n_states)[0]
    initial = _real_array("initial", initial)
    if initial.shape != (n_states,):
        raise GameValidationError(f"initial must have shape (S,) = ({n_states},), got {initial.shape}")
    bad = ~np.isfinite(initial) | (initial < 0)
    if bad.any():
        raise GameValidationError(f"initial has a negative or non-finite probability at index {_first_bad_index(bad)}")
    if abs(initial.sum() - 1.0) > _ATOL:
        raise GameValidationError(f"initial sums to {initial.sum():.6g}, not 1")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise GameValidationError(f"horizon must be a positive integer, got {horizon!r}")
    if horizon > INT32_MAX:
        raise GameValidationError(f"horizon must be an integer <= {INT32_MAX} (steps are counted in int32), "
                                  f"got {horizon}")
    n_joint = reward[0].size
    if int(horizon) * n_states * n_joint > MAX_TABLE_ENTRIES:
        raise GameValidationError(
            f"horizon={horizon} is too long for this game: the exact solver keeps a Q table per stage, "
            f"{horizon} x {n_states} state(s) x {n_joint} joint actions = {int(horizon) * n_states * n_joint:,} "
            f"values, more than {MAX_TABLE_ENTRIES:,}")
    r_max = float(np.abs(reward).max())
    if r_max * int(horizon) > FLOAT32_MAX:
        raise GameValidationError(
            f"rewards up to {r_max:g} over a horizon of {horizon} steps give returns beyond float32's range "
            f"({FLOAT32_MAX:.4g}); use smaller rewards or a shorter horizon")
    if isinstance(discount, bool) or not isinstance(discount, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(discount) <= 1.0:
        raise GameValidationError(f"discount must be in [0, 1], got {discount!r}")
    transition = transition / transition.sum(-1, keepdims=True)
    initial = initial / initial.sum()
    return reward.astype(np.float32), transition.astype(np.float32), initial.astype(np.float32)


@struct.dataclass
class TabularGame:
    reward_flat: jax.Array  # [S, J]
    transition_flat: jax.Array  # [S, J, S]
    initial: jax.Array  # [S]
    spec: EnvSpec = struct.field(pytree_node=False)
    discount: float = struct.field(pytree_node=False)
    reset_mode: str = struct.field(pytree_node=False, default="episode")  # `reset` (module docstring)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, reward, transition=None, initial=None, horizon: int = 1, discount: float = 1.0,
               name: str = "tabular", params: tuple = (), reset: str = "episode") -> "TabularGame":
        if reset not in RESETS:
            raise ParamError(f"{name}: reset must be one of {', '.join(RESETS)}, got {reset!r}")
        reward, transition, initial = validate_arrays(reward, transition, initial, horizon, discount)
        n_states, n_agents, n_actions = reward.shape[0], reward.ndim - 1, reward.shape[1]
        n_joint = n_actions**n_agents
        spec = EnvSpec(
            name=name, n_agents=n_agents, obs_dim=n_states, state_dim=n_states, action_kind="discrete",
            n_actions=n_actions, horizon=int(horizon), params=tuple(params),
            obs_dtype="bool", state_dtype="bool",  # one-hot states
        )
        return cls(
            reward_flat=jnp.asarray(reward.reshape(n_states, n_joint)),
            transition_flat=jnp.asarray(transition.reshape(n_states, n_joint, n_states)),
            initial=jnp.asarray(initial),
            spec=spec,
            discount=float(discount),
            reset_mode=reset,
        )

    @classmethod
    def matrix(cls, payoff, horizon: int = 1, discount: float = 1.0, name: str = "matrix", params: tuple = ()):
        """A repeated (iterated) matrix game: one state, `horizon` plays per episode."""
        payoff = np.asarray(payoff, dtype=np.float64)
        return cls.create(payoff[None], None, None, horizon, discount, name, params)

    # --- the model ----------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return self.spec.state_dim

    @property
    def n_agents(self) -> int:
        return self.spec.n_agents

    @property
    def n_actions(self) -> int:
        return self.spec.n_actions

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def action_shape(self) -> tuple[int, ...]:
        return (self.n_actions,) * self.n_agents

    @property
    def reward(self) -> jax.Array:
        return self.reward_flat.reshape((self.n_states,) + self.action_shape)

    @property
    def transition(self) -> jax.Array:
        return self.transition_flat.reshape((self.n_states,) + self.action_shape + (self.n_states,))

    @property
    def r_max(self) -> float:
        return float(jnp.max(jnp.abs(self.reward_flat)))

    def joint_index(self, actions: jax.Array) -> jax.Array:
        """Flatten per-agent actions [..., N] to joint-action indices (agent 1 most significant)."""
        weights = self.n_actions ** jnp.arange(self.n_agents - 1, -1, -1)
        return jnp.sum(actions.astype(jnp.int32) * weights, axis=-1)

    def joint_actions(self) -> jax.Array:
        """All joint actions as an int32 array [J, N], in flat order."""
        grids = jnp.meshgrid(*[jnp.arange(self.n_actions)] * self.n_agents, indexing="ij")
        return jnp.stack([g.reshape(-1) for g in grids], axis=-1).astype(jnp.int32)

    # --- the env contract ---------------------------------------------------------------------
    def _timestep(self, s, reward, terminated, truncated) -> TimeStep:
        one_hot = jax.nn.one_hot(s, self.n_states, dtype=jnp.float32)
        return TimeStep(
            obs=jnp.broadcast_to(one_hot, (self.n_agents, self.n_states)),
            global_state=one_hot,
            avail_actions=jnp.ones((self.n_agents, self.n_actions), dtype=bool),
            reward=jnp.full((self.n_agents,), reward, dtype=jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.asarray(truncated, bool),
            info={"state_index": jnp.asarray(s, jnp.int32),
                  **({"keep_running": jnp.bool_(True)} if self.reset_mode == "never" else {})},
        )

    def reset(self, key) -> tuple[Any, TimeStep]:
        s = jax.random.categorical(key, jnp.log(self.initial)).astype(jnp.int32)
        return (s, jnp.int32(0)), self._timestep(s, 0.0, False, False)

    def step(self, key, state, actions) -> tuple[Any, TimeStep]:
        s, t = state
        a = self.joint_index(actions)
        reward = self.reward_flat[s, a]
        s_next = jax.random.categorical(key, jnp.log(self.transition_flat[s, a])).astype(jnp.int32)
        t_next = t + 1
        ended = t_next >= self.horizon
        if self.reset_mode == "never":  # the authors' never-reset runner: done from the horizon on, unbootstrapped
            return (s_next, t_next), self._timestep(s_next, reward, ended, False)
        return (s_next, t_next), self._timestep(s_next, reward, False, ended)


def load_game(path: str, horizon: int | None = None, discount: float | None = None,
              reset: str = "episode") -> TabularGame:
    """Load a game from an .npz holding `reward`, `transition` and optionally `initial`, `horizon`, `discount`,
    or from the DPO authors' pickle format (`_authors_pickle`; horizon = the number of states, as theirs).

    The game's parameters record the path, the resolved horizon and discount, and the SHA-256 of the file's
    content (`sha256`), so a run directory's config.yaml names exactly the game it was trained on and a
    changed file is refused when the run is rebuilt (`coopmarl eval`, `render --run`)."""
    import hashlib
    import io
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such game file: {path!r} (expected an .npz with arrays reward, transition[, initial])")
    if not os.path.isfile(path):
        raise GameValidationError(f"{path!r} is not a file (expected an .npz with arrays reward, transition[, initial])")
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:  # e.g. no permission to read it
        raise GameValidationError(f"{path}: cannot read the file ({e.strerror or e})") from None
    digest = hashlib.sha256(content).hexdigest()
    if content.startswith(b"\x93NUMPY"):
        raise GameValidationError(f"{path}: expected an .npz (several named arrays), got a single .npy array")
    if content.startswith(b"\x80"):  # a pickle: the DPO authors' game format
        reward, transition = _authors_pickle(content, path)
        horizon = reward.shape[0] if horizon is None else horizon  # their episode length: the number of states
        discount = 1.0 if discount is None else discount
        return _from_file(path, digest, reward, transition, None, horizon, discount, reset)
    if not content.startswith(b"PK"):
        raise GameValidationError(f"{path}: not an .npz file (an .npz is a zip archive of .npy arrays, as numpy.savez "
                                  "writes; this file does not start like one)")
    try:
        data = np.load(io.BytesIO(content), allow_pickle=False)  # the bytes hashed above, not a second read
    except Exception as e:  # a truncated or damaged archive: one clear error
        raise GameValidationError(f"{path}: cannot read it as an .npz of arrays ({type(e).__name__}: {e})") from None
    with data:
        keys = set(data.files)
        if "reward" not in keys:
            raise GameValidationError(f"{path}: the .npz must hold an array named 'reward' (it has {sorted(keys)})")
        try:
            reward = data["reward"]
            transition = data["transition"] if "transition" in keys else None
            initial = data["initial"] if "initial" in keys else None
            file_horizon = _scalar(data, "horizon", int, 1, path)
            file_discount = _scalar(data, "discount", float, 1.0, path)
        except GameValidationError:
            raise
        except Exception as e:  # a truncated member
            raise GameValidationError(f"{path}: cannot read its arrays ({type(e).__name__}: {e})") from None
    horizon = file_horizon if horizon is None else horizon
    discount = file_discount if discount is None else discount
    return _from_file(path, digest, reward, transition, initial, horizon, discount, reset)


def _from_file(path, digest, reward, transition, initial, horizon, discount, reset) -> TabularGame:
    try:
        return TabularGame.create(
            reward, transition, initial, horizon=horizon, discount=discount, name=f"tabular:{path}",
            params=(("path", path), ("horizon", int(horizon)), ("discount", float(discount)), ("reset", reset),
                    ("sha256", digest)), reset=reset,
        )
    except GameValidationError as e:  # name the file the bad array came from
        raise GameValidationError(f"{path}: {e}") from None


# the only globals a pickle of plain numpy arrays refers to (numpy 1 and 2 names)
_NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct")}


def _authors_pickle(content: bytes, path: str):
    """(reward, transition) from the DPO authors' game pickle (`on-policy-main/a_mat_model/*.pkl`: a dict with
    'reward' [S, A, ..., A] and 'trans_mat' [S, A, ..., A, S]; start state 0, as their
    `train_matrix_game.py` make_mat_game_from_file reads it). Unpickled with only numpy's array globals allowed,
    so a file that refers to anything else (code) is refused, not run."""
    import io
    import pickle

    class ArraysOnly(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in _NUMPY_GLOBALS:
                raise GameValidationError(f"{path}: a game pickle may hold only numpy arrays, but it refers to "
                                          f"{module}.{name}; refused (not loaded)")
            return super().find_class(module, name)

    try:
        data = ArraysOnly(io.BytesIO(content)).load()
    except GameValidationError:
        raise
    except Exception as e:  # truncated, or not a pickle after all
        raise GameValidationError(f"{path}: cannot read it as a game pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or "reward" not in data or "trans_mat" not in data:
        what = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise GameValidationError(f"{path}: a game pickle must be a dict with 'reward' and 'trans_mat' (the DPO "
                                  f"authors' format); it holds {what}")
    return data["reward"], data["trans_mat"]


def _scalar(data, key: str, kind, default, path: str):
    """An optional scalar member of a game file (`horizon`, `discount`), checked to be one finite number (a whole
    one for `kind` int); its range is checked with the game's."""
    if key not in data.files:
        return default
    value = np.asarray(data[key])
    if value.shape != () or value.dtype.kind not in "iuf":
        raise GameValidationError(f"{path}: {key!r} must be one number, got an array of dtype {value.dtype} and "
                                  f"shape {value.shape}")
    if not np.isfinite(value):
        raise GameValidationError(f"{path}: {key!r} must be a finite number, got {value.item()}")
    if kind is int and not float(value).is_integer():
        raise GameValidationError(f"{path}: {key!r} must be a whole number, got {value.item()}")
    return kind(value)
