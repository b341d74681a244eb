"""Bridges to other packages' environments, presented under coopmarl's env contract: `smax:MAP` and
`mabrax:TASK` (jaxmarl), `pettingzoo:MODULE` (host envs)."""
