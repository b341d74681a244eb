"""Bridges to other packages' environments, presented under coopmarl's env contract."""

# registration: smax:MAP and mabrax:TASK (jaxmarl), pettingzoo:MODULE (host envs)
from coopmarl.envs.bridges import jaxmarl, pettingzoo  # noqa: F401
