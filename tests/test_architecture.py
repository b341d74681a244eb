"""The package's shape: discovery (a file or an installed plugin is all it takes), an import graph without
cycles, a JAX-free command line front, `python -m coopmarl`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import coopmarl

SRC = Path(coopmarl.__file__).parent
PYTHON = sys.executable

# ---- a tiny algorithm and a tiny game, as a user (or a third-party package) would write them --------------

ALGO_FILE = '''
"""Uniformly random team: every agent picks an available action at random; nothing is learnt."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from coopmarl.algos.base import Algorithm, register_algo


@dataclass(frozen=True)
class UniformTeamConfig:
    rollout_length: int = 1  # steps per env per iteration
    n_envs: int = 2  # parallel envs


def init(key, spec, config, model=None):
    return {"updates": jnp.zeros((), jnp.int32)}


def act(state, obs, avail_actions, key, *, explore, config):
    return jax.random.categorical(key, jnp.where(avail_actions, 0.0, -jnp.inf)).astype(jnp.int32)


def update(state, data, key, *, config):
    return {"updates": state["updates"] + 1}, {"batch_reward": jnp.mean(data.reward)}


register_algo(Algorithm(name="NAME-team", description="uniformly random actions (a plugin test)",
                        config_cls=UniformTeamConfig, init=init, act=act, update=update))
'''

ENV_FILE = '''
"""A coordination game: both agents score 1 when they pick the same of two actions."""
import numpy as np

from coopmarl.envs.registry import register_env
from coopmarl.envs.tabular import TabularGame


@register_env("NAME-game", "two agents, two actions, 1 for matching (a plugin test)", ("tabular",))
def NAME_game(horizon: int = 3) -> TabularGame:
    return TabularGame.matrix(np.eye(2), horizon, 1.0, "NAME-game", (("horizon", horizon),))
'''


def _run(code: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ, **(env or {}))
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environ,
                          cwd=cwd, timeout=600)


def test_a_new_file_in_the_packages_is_listed_and_trains(tmp_path):
    """Dropping a module into coopmarl.algos / coopmarl.envs (here: a folder added to the packages' search
    path) is all it takes: no import list to edit."""
    (tmp_path / "algos").mkdir()
    (tmp_path / "envs").mkdir()
    (tmp_path / "algos" / "uniform_team.py").write_text(ALGO_FILE.replace("NAME", "dropin"))
    (tmp_path / "envs" / "matching_game.py").write_text(ENV_FILE.replace("NAME", "dropin"))
    out = tmp_path / "run"
    result = _run(f"""
        import coopmarl.algos, coopmarl.envs
        coopmarl.algos.__path__.append({str(tmp_path / "algos")!r})
        coopmarl.envs.__path__.append({str(tmp_path / "envs")!r})
        from coopmarl.cli import main
        assert main(["list"]) == 0
        assert main(["train", "dropin-team", "dropin-game", "total_steps=12", "log_points=2", "--quiet",
                     "--out", {str(out)!r}]) == 0
    """)
    assert result.returncode == 0, result.stderr
    assert "dropin-team" in result.stdout and "dropin-game" in result.stdout
    assert (out / "summary.json").is_file() and (out / "metrics.csv").is_file()
    assert "eval_return" in (out / "metrics.csv").read_text()


def _plugin_distribution(root: Path, name: str, broken: bool = False):
    """An installed distribution `coopmarl-NAME-plugin` (a package + its .dist-info) registering an algorithm
    and an env through coopmarl's entry point groups."""
    pkg = root / f"{name}_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "algo.py").write_text(("raise RuntimeError('boom')\n" if broken else "") + ALGO_FILE.replace("NAME", name))
    (pkg / "game.py").write_text(ENV_FILE.replace("NAME", name))
    info = root / f"coopmarl_{name}_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: coopmarl-{name}-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[coopmarl.algos]\n{name}-team = {name}_plugin.algo\n\n[coopmarl.envs]\n{name}-game = {name}_plugin.game\n")


def test_an_installed_distribution_registers_through_entry_points(tmp_path):
    _plugin_distribution(tmp_path, "thirdparty")
    env = {"PYTHONPATH": str(tmp_path)}
    listed = subprocess.run([PYTHON, "-m", "coopmarl", "list"], capture_output=True, text=True, env=dict(os.environ, **env),
                            timeout=600)
    assert listed.returncode == 0, listed.stderr
    assert "thirdparty-team" in listed.stdout and "thirdparty-game" in listed.stdout
    out = tmp_path / "run"
    trained = subprocess.run([PYTHON, "-m", "coopmarl", "train", "thirdparty-team", "thirdparty-game", "total_steps=12",
                              "log_points=2", "--quiet", "--out", str(out)], capture_output=True, text=True,
                             env=dict(os.environ, **env), timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert (out / "summary.json").is_file()


def test_a_broken_plugin_is_skipped_with_a_warning_naming_it(tmp_path):
    _plugin_distribution(tmp_path, "broken", broken=True)
    result = subprocess.run([PYTHON, "-m", "coopmarl", "list", "algos"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "broken-team" in result.stderr and "RuntimeError: boom" in result.stderr
    assert "qmix" in result.stdout and "broken-team" not in result.stdout


# ---- the import graph --------------------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[tuple[str, str | None]]:
    """(imported coopmarl module, imported attribute or None) of every import statement in the file, at any
    depth (a function-local import is still an edge)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {(a.name, None) for a in node.names if a.name.startswith("coopmarl")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("coopmarl"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add((sub, None) if sub in modules else (base, a.name))
    return found


def test_the_import_graph_has_no_cycles_and_no_private_imports():
    modules = _modules()
    graph = {}
    private = []
    for name, path in modules.items():
        edges = set()
        for target, attr in _imports(name, path, modules):
            assert target in modules, f"{name} imports {target}, which does not exist"
            if target != name:
                edges.add(target)
            if attr is not None and attr.startswith("_") and not attr.startswith("__"):
                private.append(f"{name} imports {target}.{attr}")
        graph[name] = edges
    assert not private, "imports of another module's private names: " + "; ".join(private)

    # Tarjan's strongly connected components: any component of more than one module is a cycle
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module is imported first thing in its own child process (forked before anything of coopmarl is
    loaded), so no module depends on another having been imported before it. The parent loads the heavy
    third-party packages first (JAX, flax, optax, flashbax: their import is most of each child's time), never
    initialising a JAX backend, so the children share them."""
    names = sorted(n for n in _modules() if n != "coopmarl.__main__")
    result = _run(f"""
        import importlib, os, sys, traceback
        import jax, jax.numpy, flax.linen, optax, flashbax, numpy  # noqa: F401
        assert not [m for m in sys.modules if m.startswith("coopmarl")]
        failed = []
        for name in {names!r}:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                    os._exit(0)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            if status:
                failed.append(name)
        print("FAILED", failed)
        sys.exit(1 if failed else 0)
    """)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


# ---- a light front door -------------------------------------------------------------------------------------


def test_help_and_plot_do_not_import_jax(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("seed,env_steps,name,value\n0,10,eval_return,1.0\n0,20,eval_return,2.0\n"
                                     "1,10,eval_return,0.5\n1,20,eval_return,1.5\n")
    (run / "summary.json").write_text('{"algo": "qmix", "env": "climbing"}')
    result = _run(f"""
        import sys
        import coopmarl
        from coopmarl.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        assert "jax" not in sys.modules, "--help imported jax"
        assert main(["plot", {str(run)!r}, "--metric", "eval_return"]) == 0
        assert "jax" not in sys.modules, "plot imported jax"
        assert main(["plot", {str(run)!r}, "--metric", "eval_retrun"]) == 2
        assert "jax" not in sys.modules
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / "curves.png").is_file()
    assert "unknown metric 'eval_retrun'. Did you mean 'eval_return'?" in result.stderr
    assert "The runs logged: eval_return" in result.stderr


def test_python_dash_m_coopmarl_lists():
    result = subprocess.run([PYTHON, "-m", "coopmarl", "list", "experiments"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert "rommeo-climbing" in result.stdout


def test_the_package_root_exposes_its_api_lazily():
    assert set(coopmarl.__all__) <= set(dir(coopmarl))
    assert callable(coopmarl.make) and callable(coopmarl.train) and callable(coopmarl.list_algos)
    with pytest.raises(AttributeError):
        coopmarl.no_such_thing  # noqa: B018
