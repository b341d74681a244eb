"""Discovery: an algorithm, an environment or a preset is found by being there.

Registration happens when a module is imported (its `register_algo(...)`, `@register_env(...)` or
`@register_experiment(...)` runs), so discovery only has to import, once, before the first look-up:

- every module of coopmarl's own packages (`coopmarl.algos` and `coopmarl.exact` for algorithms,
  `coopmarl.envs` for environments, `coopmarl.experiments` for presets), found by scanning the packages'
  folders — a new file there needs no import list;
- every entry point of the group `coopmarl.algos`, `coopmarl.envs` or `coopmarl.experiments` of the
  installed distributions, so a third-party package registers its own in its `pyproject.toml`:

      [project.entry-points."coopmarl.algos"]
      my-algo = "my_package.my_algo"      # a module whose import registers the algorithm

A third-party plugin that fails to import is skipped with a warning naming it; coopmarl's own modules
must import (their optional dependencies are imported lazily, where they are used).
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from importlib.metadata import entry_points

PACKAGES = {
    "algos": ("coopmarl.algos", "coopmarl.exact"),
    "envs": ("coopmarl.envs",),
    "experiments": ("coopmarl.experiments",),
}

_discovered: set[str] = set()


def package_modules(package: str) -> list[str]:
    """Import every module under `package` (recursively, in name order); returns their names."""
    pkg = importlib.import_module(package)
    names = []
    for info in sorted(pkgutil.walk_packages(pkg.__path__, prefix=package + "."), key=lambda m: m.name):
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def entry_point_modules(group: str) -> list[str]:
    """Load every entry point of `group` (importing its module registers it); returns their values."""
    loaded = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            ep.load()
        except Exception as e:  # a broken third-party plugin must not take coopmarl down with it
            warnings.warn(f"coopmarl: skipped plugin {ep.name!r} = {ep.value!r} (entry point group {group!r}): "
                          f"{type(e).__name__}: {e}", stacklevel=2)
            continue
        loaded.append(ep.value)
    return loaded


def discover(kind: str) -> None:
    """Import, once per process, everything that registers `kind` ("algos", "envs" or "experiments")."""
    if kind in _discovered:
        return
    _discovered.add(kind)  # first: a module being imported may itself look something up
    for package in PACKAGES[kind]:
        package_modules(package)
    entry_point_modules(f"coopmarl.{kind}")
