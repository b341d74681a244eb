"""Environments: the contract (core), the registry, and the env families (found by `coopmarl.plugins`)."""

from coopmarl.envs.core import AutoReset, Env, EnvSpec, TimeStep
from coopmarl.envs.registry import env_entry, list_envs, make
from coopmarl.envs.tabular import GameValidationError, TabularGame, load_game

__all__ = ["AutoReset", "Env", "EnvSpec", "TimeStep", "TabularGame", "GameValidationError", "load_game",
           "make", "list_envs", "env_entry"]
