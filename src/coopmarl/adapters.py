"""coopmarl's JAX environments in other libraries: PettingZoo, Gymnasium (vector) and JaxMARL.

    env = coopmarl.make("lbf:8x8-2p-2f-coop")
    par = to_pettingzoo(env, seed=0)             # a pettingzoo ParallelEnv: agents agent_0 … agent_{N-1}
    vec = to_gymnasium(env, num_envs=8, seed=0)  # a gymnasium VectorEnv: 8 vmapped copies, the team reward
    mae = to_jaxmarl(env)                        # a jaxmarl MultiAgentEnv: jittable, agent-keyed dicts

Each adapter takes a JAX env that follows `coopmarl.envs.core`'s contract (anything `coopmarl.make` builds,
except host envs such as `pettingzoo:…`, which are not jittable). Discrete actions are indices in
[0, n_actions); continuous actions are clipped into [spec.low, spec.high] before the env sees them
(`evaluation.env_actions`). An unavailable discrete action is passed on as it is: the env's rules decide
what it does (LBF and predator-prey treat it as a no-op).

The PettingZoo and Gymnasium adapters run jitted `reset`/`step` functions, keep the PRNG key themselves
and return numpy arrays. Their keys: `key = jax.random.PRNGKey(seed)` (re-made by `reset(seed=s)`), and
before every reset and step `key, k = jax.random.split(key)`; `k` is what the env's reset/step receives
(PettingZoo), or is split into one key per copy, `jax.random.split(k, num_envs)` (Gymnasium).
pettingzoo, gymnasium and jaxmarl are imported only when their adapter is built.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from coopmarl.envs.core import AutoReset, EnvSpec, TimeStep, team_reward
from coopmarl.evaluation import env_actions

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv
    from jaxmarl.environments.multi_agent_env import MultiAgentEnv
    from pettingzoo import ParallelEnv

__all__ = ["to_pettingzoo", "to_gymnasium", "to_jaxmarl"]

PETTINGZOO_HINT = "to_pettingzoo needs PettingZoo: pip install 'coopmarl[pettingzoo]' (or pip install pettingzoo)"
GYMNASIUM_HINT = "to_gymnasium needs Gymnasium >= 1.1 (vector envs with autoreset modes): pip install 'gymnasium>=1.1'"
JAXMARL_HINT = "to_jaxmarl needs JaxMARL: pip install 'coopmarl[jaxmarl]' (or pip install jaxmarl)"
RENDER_MODES = (None, "rgb_array")


# ---- shared checks and helpers ------------------------------------------------------------------------------


def _check_env(env: Any, adapter: str) -> EnvSpec:
    """`env.spec` when `env` is a JAX coopmarl environment; otherwise a TypeError/ValueError saying what is expected."""
    if isinstance(env, str):
        raise TypeError(f"{adapter} needs a coopmarl environment object, got the string {env!r}; "
                        f"build the env first: {adapter}(coopmarl.make({env!r}))")
    spec = getattr(env, "spec", None)
    if not (isinstance(spec, EnvSpec) and callable(getattr(env, "reset", None))
            and callable(getattr(env, "step", None))):
        raise TypeError(f"{adapter} needs a coopmarl environment (an object with an EnvSpec `spec`, reset(key) and "
                        f"step(key, state, actions), e.g. coopmarl.make('lbf:8x8-2p-2f-coop')), "
                        f"got {type(env).__name__}")
    if getattr(env, "host", False):
        raise ValueError(f"{adapter} needs a JAX environment; {spec.name!r} is a host env (numpy, not jittable). "
                         "A pettingzoo: env is a PettingZoo env already: use it directly")
    if isinstance(env, AutoReset):
        raise ValueError(f"{adapter} needs the env itself, not AutoReset(env): the adapter handles episode ends "
                         "the way its library expects")
    return spec


def _seed_key(seed: Any, what: str) -> jax.Array:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {seed!r}")
    return jax.random.PRNGKey(int(seed))


def _import_error(hint: str, error: ImportError) -> ImportError:
    return ImportError(f"{hint} ({error})")


def _frame_function(env: Any, state: Any) -> Callable[[Any], np.ndarray]:
    """`state -> uint8 frame`: `env.render` compiled where it is written in JAX, else called as it is
    (grid envs draw with numpy and cannot take a tracer)."""
    compiled = jax.jit(env.render)
    try:
        compiled(state)
    except TypeError:  # JAX's errors for a tracer reaching numpy are TypeErrors
        return lambda s: np.asarray(env.render(s))
    return lambda s: np.asarray(compiled(s))


def _joint_action(spec: EnvSpec) -> Callable[[jax.Array], jax.Array]:
    """Actions as the env receives them: int32 indices, or float32 rows clipped into [low, high]."""
    clip = env_actions(spec)
    if spec.discrete:
        return lambda actions: clip(jnp.asarray(actions, jnp.int32))
    return lambda actions: clip(jnp.asarray(actions, jnp.float32))


# ---- PettingZoo ------------------------------------------------------------------------------------------


def to_pettingzoo(env: Any, seed: int = 0, render_mode: str | None = None) -> ParallelEnv:
    """`env` as a PettingZoo `ParallelEnv`.

    Agents are `agent_0 … agent_{N-1}`. Spaces (gymnasium): observations `Box(-inf, inf, (obs_dim,), float32)`,
    actions `Discrete(n_actions)` or `Box(low, high, (action_dim,), float32)`; `state()` is the global state
    (`state_space`: `Box(-inf, inf, (state_dim,))`). Discrete envs put each agent's action mask (int8
    [n_actions]) in `infos[agent]["action_mask"]`. Every agent gets the env's `terminated` / `truncated`;
    when the episode ends, `agents` becomes empty until the next `reset()`. `render()` returns an RGB frame
    with `render_mode="rgb_array"` (envs with `render(state)` only). Keys: see the module docstring.
    """
    spec = _check_env(env, "to_pettingzoo")
    key = _seed_key(seed, "to_pettingzoo's seed")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {', '.join(map(repr, RENDER_MODES))}, got {render_mode!r}")
    if render_mode == "rgb_array" and not callable(getattr(env, "render", None)):
        raise ValueError(f"render_mode='rgb_array': environment {spec.name!r} cannot be rendered (it has no "
                         "render(state)); use render_mode=None")
    return _parallel_env_class()(env, key, render_mode)


@functools.cache
def _parallel_env_class() -> type:
    try:
        from gymnasium import logger, spaces
        from pettingzoo import ParallelEnv
    except ImportError as e:
        raise _import_error(PETTINGZOO_HINT, e) from None

    class CoopmarlParallelEnv(ParallelEnv):
        """A coopmarl JAX env as a PettingZoo ParallelEnv (see `coopmarl.adapters.to_pettingzoo`)."""

        def __init__(self, env: Any, key: jax.Array, render_mode: str | None):
            spec: EnvSpec = env.spec
            self.coopmarl_env = env
            self.render_mode = render_mode
            self.metadata = {"name": f"coopmarl:{spec.name}", "is_parallelizable": True,
                             "render_modes": ["rgb_array"] if callable(getattr(env, "render", None)) else []}
            self.possible_agents = [f"agent_{i}" for i in range(spec.n_agents)]
            self.agents: list[str] = []
            obs_space = spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
            self.observation_spaces = {a: obs_space for a in self.possible_agents}
            self.action_spaces = {a: self._action_space(spec) for a in self.possible_agents}
            self.state_space = spaces.Box(-np.inf, np.inf, (spec.state_dim,), np.float32)
            self._key = key
            self._state = None
            self._global_state = None
            self._frame: Callable | None = None
            act = _joint_action(spec)

            def reset(key):
                key, k = jax.random.split(key)
                return (key, *env.reset(k))

            def step(key, state, actions):
                key, k = jax.random.split(key)
                return (key, *env.step(k, state, act(actions)))

            self._reset, self._step = jax.jit(reset), jax.jit(step)

        @staticmethod
        def _action_space(spec: EnvSpec):
            if spec.discrete:
                return spaces.Discrete(spec.n_actions)
            return spaces.Box(spec.low, spec.high, (spec.action_dim,), np.float32)

        def observation_space(self, agent: str):
            return self.observation_spaces[agent]

        def action_space(self, agent: str):
            return self.action_spaces[agent]

        def reset(self, seed: int | None = None, options: dict | None = None):
            """(observations, infos); `seed` re-makes the key, None continues the adapter's key stream.
            `options` is accepted and ignored."""
            if seed is not None:
                self._key = _seed_key(seed, "reset's seed")
            self._key, self._state, ts = self._reset(self._key)
            self.agents = list(self.possible_agents)
            obs, _, _, _, infos = self._convert(ts)
            return obs, infos

        def step(self, actions: dict):
            """(observations, rewards, terminations, truncations, infos) for one action per live agent."""
            if not self.agents:
                raise RuntimeError("step() needs a running episode: call reset() first (after the episode ended, "
                                   "`agents` is empty)")
            missing = [a for a in self.agents if a not in actions]
            unknown = [a for a in actions if a not in self.agents]
            if missing or unknown:
                raise ValueError(f"step() needs exactly one action per agent in {self.agents}; "
                                 f"missing {missing}, unknown {unknown}")
            self._key, self._state, ts = self._step(self._key, self._state, self._stack(actions))
            obs, rewards, terminations, truncations, infos = self._convert(ts)
            if any(terminations.values()) or any(truncations.values()):
                self.agents = []  # every agent's episode ends at once
            return obs, rewards, terminations, truncations, infos

        def _stack(self, actions: dict) -> np.ndarray:
            rows = []
            for agent in self.possible_agents:
                space, action = self.action_spaces[agent], actions[agent]
                if isinstance(space, spaces.Discrete):
                    if not space.contains(action):
                        raise ValueError(f"action {action!r} for {agent} is not in {space} (an int in "
                                         f"[0, {space.n}))")
                    rows.append(int(action))
                else:
                    row = np.asarray(action, np.float32)
                    if row.size != space.shape[0]:
                        raise ValueError(f"action for {agent} has shape {row.shape}; {space} needs {space.shape}")
                    rows.append(row.reshape(space.shape))
            return np.stack(rows)

        def _convert(self, ts: TimeStep):
            obs, avail, reward, terminated, truncated, global_state = jax.device_get(
                (ts.obs, ts.avail_actions, ts.reward, ts.terminated, ts.truncated, ts.global_state))
            self._global_state = np.asarray(global_state, np.float32)
            agents = self.possible_agents
            discrete = self.coopmarl_env.spec.discrete
            return (
                {a: np.asarray(obs[i], np.float32) for i, a in enumerate(agents)},
                {a: float(reward[i]) for i, a in enumerate(agents)},
                {a: bool(terminated) for a in agents},
                {a: bool(truncated) for a in agents},
                {a: ({"action_mask": avail[i].astype(np.int8)} if discrete else {}) for i, a in enumerate(agents)},
            )

        def state(self) -> np.ndarray:
            """The env's global state [state_dim] (float32)."""
            if self._global_state is None:
                raise RuntimeError("state() needs reset() first")
            return self._global_state

        def render(self):
            """An RGB frame (uint8 [H, W, 3]) of the current state with render_mode='rgb_array', else None."""
            if self.render_mode is None:
                logger.warn("render() was called without a render_mode: pass render_mode='rgb_array' to "
                            "to_pettingzoo to get frames")
                return None
            if self._state is None:
                raise RuntimeError("render() needs reset() first")
            if self._frame is None:
                self._frame = _frame_function(self.coopmarl_env, self._state)
            return self._frame(self._state)

        def close(self):
            pass

    return CoopmarlParallelEnv


# ---- Gymnasium (vector) ----------------------------------------------------------------------------------


def to_gymnasium(env: Any, num_envs: int = 1, seed: int = 0) -> VectorEnv:
    """`env` as a Gymnasium `VectorEnv` of `num_envs` copies stepped together (one jitted, vmapped step).

    What single-agent-style tooling gets: the whole team as ONE agent (a centralised controller). Per copy,
    the observation is every agent's stacked, `Box(-inf, inf, (N, obs_dim), float32)`; the action is the
    joint action, `MultiDiscrete([n_actions] * N)` or `Box(low, high, (N, action_dim), float32)`; the reward
    is the team reward, `coopmarl.envs.core.team_reward(spec, reward)` (float32); `terminated` / `truncated`
    are the env's. The batched spaces are `observation_space` / `action_space` (leading axis `num_envs`).

    Autoreset: `metadata["autoreset_mode"]` is `AutoresetMode.SAME_STEP`. The step that ends a copy's episode
    returns that step's reward and flags with the first observation of the copy's next episode; the last
    observation is in `infos["final_obs"][i]` (an object array, None where no episode ended; mask
    `infos["_final_obs"]`) and `infos["final_info"]` holds its `global_state`, `action_mask` and the finished
    episode's `episode_return` (sum of team rewards) and `episode_length` (mask `infos["_final_info"]`).
    Every step's `infos` has `global_state` [num_envs, state_dim] and, for discrete envs, `action_mask`
    [num_envs, N, n_actions] (bool), each with its `_` mask (all true). `reset(options=…)` ignores options.
    """
    _check_env(env, "to_gymnasium")
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"to_gymnasium's num_envs must be an int >= 1, got {num_envs!r}")
    key = _seed_key(seed, "to_gymnasium's seed")
    return _vector_env_class()(env, int(num_envs), key)


@functools.cache
def _vector_env_class() -> type:
    try:
        from gymnasium import spaces
        from gymnasium.vector import AutoresetMode, VectorEnv
        from gymnasium.vector.utils import batch_space
    except ImportError as e:
        raise _import_error(GYMNASIUM_HINT, e) from None

    class CoopmarlVectorEnv(VectorEnv):
        """`num_envs` vmapped copies of a coopmarl JAX env as a Gymnasium VectorEnv (see
        `coopmarl.adapters.to_gymnasium`)."""

        metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

        def __init__(self, env: Any, num_envs: int, key: jax.Array):
            spec: EnvSpec = env.spec
            self.coopmarl_env = env
            self.num_envs = num_envs
            n = spec.n_agents
            self.single_observation_space = spaces.Box(-np.inf, np.inf, (n, spec.obs_dim), np.float32)
            if spec.discrete:
                self.single_action_space = spaces.MultiDiscrete(np.full(n, spec.n_actions, np.int64))
            else:
                self.single_action_space = spaces.Box(spec.low, spec.high, (n, spec.action_dim), np.float32)
            self.observation_space = batch_space(self.single_observation_space, num_envs)
            self.action_space = batch_space(self.single_action_space, num_envs)
            self._key = key
            self._states = None
            auto = AutoReset(env)
            act = _joint_action(spec)

            def reset(key):
                key, k = jax.random.split(key)
                return (key, *jax.vmap(auto.reset)(jax.random.split(k, num_envs)))

            def step(key, states, actions):
                key, k = jax.random.split(key)
                return (key, *jax.vmap(auto.step)(jax.random.split(k, num_envs), states, act(actions)))

            self._reset, self._step = jax.jit(reset), jax.jit(step)

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            """(observations [num_envs, N, obs_dim], infos) of fresh episodes in every copy."""
            if seed is not None:
                self._key = _seed_key(seed, "reset's seed")
                super().reset(seed=int(seed))  # seeds `np_random`, as Gymnasium's vector envs do
            self._key, self._states, ts = self._reset(self._key)
            ts = jax.device_get(ts)
            return np.asarray(ts.obs, np.float32), self._infos(ts)

        def step(self, actions):
            """(observations, team rewards, terminations, truncations, infos); see to_gymnasium on autoreset."""
            if self._states is None:
                raise RuntimeError("step() needs reset() first")
            actions = np.asarray(actions)
            if actions.shape != self.action_space.shape:
                raise ValueError(f"actions must have shape {self.action_space.shape} (num_envs, n_agents"
                                 f"{'' if self.coopmarl_env.spec.discrete else ', action_dim'}), got {actions.shape}")
            if self.coopmarl_env.spec.discrete and not self.action_space.contains(actions.astype(np.int64)):
                raise ValueError(f"discrete actions must be ints in [0, {self.coopmarl_env.spec.n_actions}), "
                                 f"got {actions.tolist()}")
            self._key, self._states, ts = self._step(self._key, self._states, actions)
            ts = jax.device_get(ts)
            reward = np.asarray(team_reward(self.coopmarl_env.spec, ts.reward), np.float32)
            return (np.asarray(ts.obs, np.float32), reward, np.asarray(ts.terminated, bool),
                    np.asarray(ts.truncated, bool), self._infos(ts))

        def _infos(self, ts: TimeStep) -> dict:
            every = np.ones(self.num_envs, bool)
            infos = {"global_state": np.asarray(ts.global_state, np.float32), "_global_state": every}
            discrete = self.coopmarl_env.spec.discrete
            if discrete:
                infos.update(action_mask=np.asarray(ts.avail_actions, bool), _action_mask=every)
            done = np.asarray(ts.info["episode_done"], bool)
            if done.any():
                final_obs = np.full(self.num_envs, None, dtype=object)
                for i in np.flatnonzero(done):
                    final_obs[i] = np.asarray(ts.info["final_obs"][i], np.float32)

                def masked(x):  # zeros where no episode ended, as Gymnasium's vector infos do
                    x = np.asarray(x)
                    return np.where(done.reshape(-1, *[1] * (x.ndim - 1)), x, np.zeros_like(x))

                final_info = {"global_state": masked(ts.info["final_state"]).astype(np.float32),
                              "episode_return": masked(ts.info["episode_return"]),
                              "episode_length": masked(ts.info["episode_length"])}
                if discrete:
                    final_info["action_mask"] = masked(ts.info["final_avail_actions"]).astype(bool)
                final_info.update({f"_{k}": done.copy() for k in list(final_info)})
                infos.update(final_obs=final_obs, _final_obs=done, final_info=final_info, _final_info=done.copy())
            return infos

    return CoopmarlVectorEnv


# ---- JaxMARL ---------------------------------------------------------------------------------------------


def to_jaxmarl(env: Any) -> MultiAgentEnv:
    """`env` as a JaxMARL `MultiAgentEnv` (pure and jittable, so JaxMARL's wrappers and baselines run on it).

    `reset(key) -> (obs, state)`; `step_env(key, state, actions) -> (obs, state, rewards, dones, infos)` with
    dicts keyed by `agents` (`agent_0 …`): `obs[a]` [obs_dim], `actions[a]` an int (discrete) or [action_dim],
    `rewards[a]` the env's reward for that agent, `dones[a]` and `dones["__all__"]` = terminated or truncated.
    JaxMARL's own `step` (inherited) auto-resets on `dones["__all__"]`, with `key, k_reset =
    jax.random.split(key)`: `step_env` receives `key`, `reset` receives `k_reset`. `get_avail_actions(state)`
    gives each agent's bool mask [n_actions] ([1], all true, for continuous envs). `infos` holds the env's
    `info` with scalar entries repeated per agent ([N], as JaxMARL's baselines reshape infos per agent) and
    `terminated` / `truncated` [N], for bootstrapping after a time limit. The state (`state.env_state`,
    `.obs`, `.global_state`, `.avail_actions`, `.done`, `.step`) also offers `world_state(state)`, the
    global state [state_dim]. Spaces are JaxMARL's: `Box(-inf, inf, (obs_dim,))`, `Discrete(n_actions)` or
    `Box(low, high, (action_dim,))`.
    """
    _check_env(env, "to_jaxmarl")
    return _multi_agent_env_class()(env)


@functools.cache
def _multi_agent_env_class() -> type:
    try:
        from flax import struct
        from jaxmarl.environments import spaces
        from jaxmarl.environments.multi_agent_env import MultiAgentEnv, State
    except ImportError as e:
        raise _import_error(JAXMARL_HINT, e) from None

    @struct.dataclass
    class CoopmarlJaxMARLState(State):
        """JaxMARL's State (`done`, `step`) plus the coopmarl env's state and its last observations."""

        env_state: Any
        obs: jax.Array  # [N, obs_dim]
        global_state: jax.Array  # [state_dim]
        avail_actions: jax.Array  # bool [N, n_actions]

    class CoopmarlMultiAgentEnv(MultiAgentEnv):
        """A coopmarl JAX env as a JaxMARL MultiAgentEnv (see `coopmarl.adapters.to_jaxmarl`)."""

        def __init__(self, env: Any):
            spec: EnvSpec = env.spec
            super().__init__(num_agents=spec.n_agents)
            self.coopmarl_env = env
            obs_space = spaces.Box(-jnp.inf, jnp.inf, (spec.obs_dim,))
            if spec.discrete:
                action_space = spaces.Discrete(spec.n_actions)
            else:
                action_space = spaces.Box(spec.low, spec.high, (spec.action_dim,))
            self.observation_spaces = {a: obs_space for a in self.agents}
            self.action_spaces = {a: action_space for a in self.agents}
            self._act = _joint_action(spec)

        @functools.partial(jax.jit, static_argnums=(0,))
        def reset(self, key: jax.Array):
            env_state, ts = self.coopmarl_env.reset(key)
            state = self._wrap(env_state, ts, jnp.int32(0))
            return self.get_obs(state), state

        def step_env(self, key: jax.Array, state: CoopmarlJaxMARLState, actions: dict):
            joint = jnp.stack([jnp.asarray(actions[a]) for a in self.agents])
            env_state, ts = self.coopmarl_env.step(key, state.env_state, self._act(joint))
            state = self._wrap(env_state, ts, state.step + 1)
            done = ts.done
            rewards = {a: ts.reward[i] for i, a in enumerate(self.agents)}
            dones = {a: done for a in self.agents}
            dones["__all__"] = done
            return self.get_obs(state), state, rewards, dones, self._infos(ts)

        @staticmethod
        def _wrap(env_state: Any, ts: TimeStep, step: jax.Array) -> CoopmarlJaxMARLState:
            return CoopmarlJaxMARLState(done=jnp.asarray(ts.done, bool), step=jnp.asarray(step, jnp.int32),
                                        env_state=env_state, obs=ts.obs, global_state=ts.global_state,
                                        avail_actions=jnp.asarray(ts.avail_actions, bool))

        def _infos(self, ts: TimeStep) -> dict:
            n = self.num_agents
            infos = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,)) if jnp.ndim(x) == 0 else x, dict(ts.info))
            infos["terminated"] = jnp.full((n,), ts.terminated, bool)
            infos["truncated"] = jnp.full((n,), ts.truncated, bool)
            return infos

        def get_obs(self, state: CoopmarlJaxMARLState) -> dict:
            return {a: state.obs[i] for i, a in enumerate(self.agents)}

        @functools.partial(jax.jit, static_argnums=(0,))
        def get_avail_actions(self, state: CoopmarlJaxMARLState) -> dict:
            return {a: state.avail_actions[i] for i, a in enumerate(self.agents)}

        def world_state(self, state: CoopmarlJaxMARLState) -> jax.Array:
            """The env's global state [state_dim] (for centralised critics)."""
            return state.global_state

        @property
        def name(self) -> str:
            return f"coopmarl:{self.coopmarl_env.spec.name}"

        @property
        def agent_classes(self) -> dict:
            return {"agent": list(self.agents)}

    return CoopmarlMultiAgentEnv
