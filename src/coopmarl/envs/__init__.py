"""Environments: the contract (core), the registry, and every registered env family."""

from coopmarl.envs import bridges, differential, foraging, games, mpe, predator_prey  # noqa: F401  (registration)
from coopmarl.envs.core import AutoReset, Env, EnvSpec, TimeStep
from coopmarl.envs.registry import env_entry, list_envs, make
from coopmarl.envs.tabular import GameValidationError, TabularGame, load_game

__all__ = ["AutoReset", "Env", "EnvSpec", "TimeStep", "TabularGame", "GameValidationError", "load_game",
           "make", "list_envs", "env_entry"]
