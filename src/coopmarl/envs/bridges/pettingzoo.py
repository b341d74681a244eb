"""Any PettingZoo `ParallelEnv` as a *host* environment: `pettingzoo:MODULE`.

`pettingzoo:mpe2.simple_spread_v3` imports the module `mpe2.simple_spread_v3` and builds its
`parallel_env(**kwargs)`; the env's own parameters are passed through `kwargs`:

    coopmarl.make("pettingzoo:mpe2.simple_spread_v3", kwargs={"N": 4, "max_cycles": 50})
    coopmarl train ALGO pettingzoo:mpe2.simple_spread_v3 env.kwargs="N=4,max_cycles=50"

A host env runs in Python with numpy (it is not jittable); `host = True` tells the runner to drive
it from a Python loop (`coopmarl.host_runner.train_host`). Its API mirrors the JAX contract without
the explicit state and key:

    ts = env.reset(seed)          # seed: int or None (None continues the env's own random stream)
    ts = env.step(actions)        # actions: int [N] (discrete) or float [N, action_dim] (continuous)
    env.clone()                   # an independent copy (the runner steps several)

and returns `TimeStep`s with numpy arrays, agents stacked in `possible_agents` order:

- `obs [N, obs_dim]`: each agent's observation flattened (`gymnasium.spaces.flatten`) and zero-padded
  to the largest agent's size; an agent that has left the episode observes zeros.
- `global_state`: the env's `state()` if it has one, else the agents' (padded) observations concatenated.
- `avail_actions [N, n_actions]`: the env's action masks where it gives them (an `action_mask` in a dict
  observation or in the agent's info), else all true; actions beyond an agent's own `Discrete(n)` are
  unavailable. Continuous envs: all true, shape [N, 1].
- `reward [N]`: the TEAM reward, the mean of the rewards the agents received this step, repeated for
  every agent (cooperative learners optimise it; the raw per-agent rewards are `info["agent_rewards"]`).
  For MPE's simple_spread this averages out the agents' local collision penalties.
- `terminated` / `truncated` (scalars): the episode is over when every agent is terminated or truncated;
  `terminated` = every agent was terminated, `truncated` = at least one agent was cut by a time limit.
- `spec.horizon` = the env's `max_cycles` where it has one (MPE), else 0 (no known time limit).

Continuous actions use each agent's `Box` (flattened): `action_dim` = the largest agent's, extra
entries of a smaller agent's row are ignored, and each row is clipped into its agent's bounds;
`spec.low` / `spec.high` are the smallest low and largest high over all agents.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from typing import Any

import numpy as np

from coopmarl.envs.core import EnvSpec, TimeStep
from coopmarl.envs.registry import ParamError, coerce, did_you_mean, register_env

INSTALL_HINT = "the PettingZoo bridge needs PettingZoo: pip install 'coopmarl[pettingzoo]' (or pip install pettingzoo)"
EXAMPLE = "pettingzoo:mpe2.simple_spread_v3"


def _import_module(module: str):
    try:
        import gymnasium  # noqa: F401
        import pettingzoo  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    top = module.split(".")[0]
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ParamError(f"{module!r} is not a Python module name; the PettingZoo bridge needs one, e.g. {EXAMPLE}")
    if importlib.util.find_spec(top) is None:
        raise ImportError(f"cannot import {module!r}: no package named {top!r} is installed "
                          f"(MPE is in mpe2: pip install 'coopmarl[pettingzoo]')")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        parent = module.rsplit(".", 1)[0] if "." in module else None
        hint = ""
        if parent and e.name == module:
            try:
                package = importlib.import_module(parent)
                siblings = [f"{parent}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
                hint = did_you_mean(module, siblings)
            except (ImportError, AttributeError):
                pass
        raise ParamError(f"cannot import PettingZoo module {module!r} ({e}).{hint} The text after 'pettingzoo:' "
                         f"must name a module with a parallel_env() function, e.g. {EXAMPLE}") from None
    if not callable(getattr(mod, "parallel_env", None)):
        raise ParamError(f"module {module!r} has no parallel_env(); the text after 'pettingzoo:' must name a "
                         f"PettingZoo environment module, e.g. {EXAMPLE}")
    return mod


def _accepted_params(mod) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters `mod.parallel_env` accepts, or None when they cannot be known.
    PettingZoo's `parallel_wrapper_fn` hides them behind **kwargs; `raw_env` then has them."""
    for fn in (mod.parallel_env, getattr(mod, "raw_env", None)):
        if fn is None:
            continue
        try:
            sig = inspect.signature(fn, eval_str=True)
        except (TypeError, ValueError, NameError):
            try:
                sig = inspect.signature(fn)
            except (TypeError, ValueError):
                continue
        params = {n: p for n, p in sig.parameters.items() if n != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return None


def _parse_kwargs(kwargs) -> dict[str, Any]:
    """kwargs as a dict, a tuple of (name, value) pairs, or a CLI string "N=4,max_cycles=50" / "{N: 4}"."""
    if kwargs is None:
        return {}
    if isinstance(kwargs, dict):
        return dict(kwargs)
    if isinstance(kwargs, (tuple, list)):
        try:
            return {str(k): v for k, v in kwargs}
        except (TypeError, ValueError):
            raise ParamError(f"PettingZoo kwargs must be (name, value) pairs, got {kwargs!r}") from None
    if isinstance(kwargs, str):
        import yaml

        text = kwargs.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ParamError(f"PettingZoo kwargs {kwargs!r} is not a mapping: {e}") from None
            if not isinstance(loaded, dict):
                raise ParamError(f"PettingZoo kwargs {kwargs!r} is not a mapping")
            return {str(k): v for k, v in loaded.items()}
        out = {}
        for item in text.split(","):
            if "=" not in item:
                raise ParamError(f"PettingZoo kwargs {kwargs!r}: {item.strip()!r} is not name=value "
                                 "(write e.g. env.kwargs=\"N=4,max_cycles=50\")")
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()  # a string: converted to the parameter's type below
        return out
    raise ParamError(f"PettingZoo kwargs must be a dict of the env's parameters, got {kwargs!r}")


def _convert(module: str, given: dict[str, Any], accepted: dict[str, inspect.Parameter] | None) -> dict[str, Any]:
    out = {}
    for k, v in given.items():
        if accepted is not None and k not in accepted:
            lower = {a.lower(): a for a in accepted}
            close = did_you_mean(k, accepted)
            if not close and k.lower() in lower:  # e.g. n for N
                close = f" Did you mean {lower[k.lower()]!r}?"
            raise ParamError(f"unknown parameter {k!r} for PettingZoo env {module!r}.{close} "
                             f"Its parameters: {', '.join(accepted) or '(none)'}")
        if isinstance(v, str):
            p = accepted.get(k) if accepted else None
            typ = None
            if p is not None and p.annotation is not inspect.Parameter.empty and not isinstance(p.annotation, str):
                typ = p.annotation
            elif p is not None and p.default not in (inspect.Parameter.empty, None):
                typ = type(p.default)
            if typ is not None and typ is not str:
                try:
                    v = coerce(v, typ, f"PettingZoo env {module!r} parameter {k!r}")
                except TypeError:  # an annotation coerce does not understand
                    v = _yaml_value(v)
            elif typ is None:
                v = _yaml_value(v)
        out[k] = v
    return out


def _yaml_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _hashable(v):
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


class PettingZooEnv:
    """A PettingZoo ParallelEnv behind coopmarl's (host) env contract; see the module docstring."""

    host = True  # not jittable: the runner drives it from a Python loop

    def __init__(self, module: str, kwargs=None):
        from gymnasium import spaces

        self._spaces = spaces
        self.module = module
        mod = _import_module(module)
        accepted = _accepted_params(mod)
        self.kwargs = _convert(module, _parse_kwargs(kwargs), accepted)
        try:
            self.env = mod.parallel_env(**self.kwargs)
        except TypeError as e:
            if "argument" not in str(e):
                raise
            valid = f" Its parameters: {', '.join(accepted)}" if accepted else ""
            raise ParamError(f"invalid parameters {self.kwargs} for PettingZoo env {module!r}: {e}.{valid}") from None
        env = self.env
        self.agents = list(env.possible_agents)
        n = len(self.agents)

        self._obs_spaces = []
        for a in self.agents:
            space = env.observation_space(a)
            if isinstance(space, spaces.Dict) and "observation" in space.spaces:
                space = space["observation"]
            self._obs_spaces.append(space)
        obs_dim = max(int(spaces.flatdim(s)) for s in self._obs_spaces)

        act_spaces = [env.action_space(a) for a in self.agents]
        self._act_spaces = act_spaces
        if all(isinstance(s, spaces.Discrete) for s in act_spaces):
            kind = dict(action_kind="discrete", n_actions=max(int(s.n) for s in act_spaces))
        elif all(isinstance(s, spaces.Box) for s in act_spaces):
            kind = dict(action_kind="continuous", action_dim=max(int(np.prod(s.shape)) for s in act_spaces),
                        low=float(min(np.min(s.low) for s in act_spaces)),
                        high=float(max(np.max(s.high) for s in act_spaces)))
        else:
            names = sorted({type(s).__name__ for s in act_spaces})
            raise ParamError(f"PettingZoo env {module!r} has {'/'.join(names)} action spaces; the bridge handles "
                             "envs whose agents all have Discrete or all have Box actions")
        self._discrete = kind["action_kind"] == "discrete"
        self._n_avail = kind.get("n_actions", 1)
        self._obs_dim = obs_dim
        self._has_state = self._probe_state()
        ts = self.reset(0)  # a probe: reveals the state's size (reset(seed) re-seeds before any use)
        horizon = getattr(env.unwrapped, "max_cycles", 0)
        self.spec = EnvSpec(
            name=f"pettingzoo:{module}", n_agents=n, obs_dim=obs_dim, state_dim=int(ts.global_state.shape[0]),
            horizon=int(horizon) if isinstance(horizon, (int, np.integer)) else 0,
            params=(("kwargs", _hashable(self.kwargs)),), **kind,
        )

    def _probe_state(self) -> bool:
        try:
            self.env.reset(seed=0)
            self.env.state()
            return True
        except (NotImplementedError, AttributeError):
            return False

    def clone(self) -> "PettingZooEnv":
        return PettingZooEnv(self.module, dict(self.kwargs))

    # ---- conversion -------------------------------------------------------------------------------------

    def _timestep(self, obs: dict, infos: dict, rewards: dict | None) -> TimeStep:
        n, spaces = len(self.agents), self._spaces
        stacked = np.zeros((n, self._obs_dim), np.float32)
        avail = np.ones((n, self._n_avail), bool)
        for i, a in enumerate(self.agents):
            if self._discrete:
                avail[i, int(self._act_spaces[i].n):] = False
            if a not in obs:
                continue
            o, mask = obs[a], None
            if isinstance(o, dict) and "observation" in o:
                o, mask = o["observation"], o.get("action_mask")
            if mask is None and isinstance(infos.get(a), dict):
                mask = infos[a].get("action_mask")
            flat = np.asarray(spaces.flatten(self._obs_spaces[i], o), np.float32).ravel()
            stacked[i, : flat.shape[0]] = flat
            if mask is not None and self._discrete:
                mask = np.asarray(mask, bool).ravel()
                avail[i, : mask.shape[0]] = mask
        if self._has_state:
            state = np.asarray(self.env.state(), np.float32).ravel()
        else:
            state = stacked.reshape(-1)
        agent_rewards = np.zeros(n, np.float32)
        team = 0.0
        if rewards:
            for i, a in enumerate(self.agents):
                agent_rewards[i] = rewards.get(a, 0.0)
            team = float(np.mean([rewards[a] for a in self.agents if a in rewards]))
        ended = bool(np.all(self._term | self._trunc))
        return TimeStep(
            obs=stacked, global_state=state, avail_actions=avail,
            reward=np.full(n, team, np.float32),
            terminated=np.asarray(ended and bool(np.all(self._term))),
            truncated=np.asarray(ended and bool(np.any(self._trunc))),
            info={"agent_rewards": agent_rewards},
        )

    # ---- the host env API ---------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> TimeStep:
        obs, infos = self.env.reset(seed=None if seed is None else int(seed))
        self._term = np.zeros(len(self.agents), bool)
        self._trunc = np.zeros(len(self.agents), bool)
        return self._timestep(obs, infos or {}, None)

    def step(self, actions) -> TimeStep:
        actions = np.asarray(actions)
        live = set(self.env.agents)
        action_dict = {}
        for i, a in enumerate(self.agents):
            if a not in live:
                continue
            space = self._act_spaces[i]
            if self._discrete:
                action_dict[a] = int(actions[i]) + int(getattr(space, "start", 0))
            else:
                size = int(np.prod(space.shape))
                row = np.asarray(actions[i], space.dtype).ravel()[:size].reshape(space.shape)
                action_dict[a] = np.clip(row, space.low, space.high)
        obs, rewards, terms, truncs, infos = self.env.step(action_dict)
        for i, a in enumerate(self.agents):
            self._term[i] |= bool(terms.get(a, False))
            self._trunc[i] |= bool(truncs.get(a, False))
            if a not in self.env.agents and not (self._term[i] or self._trunc[i]):
                self._term[i] = True  # an agent removed without a flag has left the episode
        return self._timestep(obs, infos or {}, rewards)


@register_env(
    "pettingzoo",
    "any PettingZoo ParallelEnv as a host (non-JAX) env (pettingzoo:MODULE, e.g. pettingzoo:mpe2.simple_spread_v3; "
    "env parameters via kwargs, e.g. env.kwargs=\"N=4,max_cycles=50\"); team reward = mean of the agents' rewards; "
    "needs the pettingzoo extra",
    ("bridge", "host"), prefix=True, reward_scalarisation="shared (their mean)",
)
def pettingzoo(module: str, kwargs: dict | None = None) -> PettingZooEnv:
    return PettingZooEnv(module, kwargs)
