"""Bridges to other packages' environments, presented under coopmarl's env contract."""

from coopmarl.envs.bridges import jaxmarl  # noqa: F401  (registers smax:MAP)
