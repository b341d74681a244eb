"""JAX's persistent compilation cache, on by default for the `coopmarl` command.

Compilation dominates short runs: the second time a program with the same shapes is compiled — the same
algorithm, env and sizes in another run, a preset's next cell, a resumed run — XLA's executable is read
from disk instead (benchmarks/compilation_cache.py measures it). Cached executables are the very programs
a fresh compile produces, so results do not change.

The cache lives in `$COOPMARL_CACHE_DIR`, else `$XDG_CACHE_HOME/coopmarl/jax`, else
`~/.cache/coopmarl/jax`. `COOPMARL_COMPILATION_CACHE=0` turns it off; from Python,
`coopmarl.enable_compilation_cache()` turns it on (the library itself never changes JAX's settings
unless asked).
"""

from __future__ import annotations

import os
from pathlib import Path

OFF = ("0", "false", "no", "off")


def cache_dir() -> Path:
    if os.environ.get("COOPMARL_CACHE_DIR"):
        return Path(os.environ["COOPMARL_CACHE_DIR"]).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root).expanduser() / "coopmarl" / "jax"


def enable_compilation_cache(path: str | Path | None = None, min_compile_seconds: float = 0.5) -> Path | None:
    """Turn on JAX's persistent compilation cache in `path` (default `cache_dir()`) for programs that take at
    least `min_compile_seconds` to compile. Returns the folder, or None when `COOPMARL_COMPILATION_CACHE`
    is off or the folder cannot be created (the run then simply compiles)."""
    if os.environ.get("COOPMARL_COMPILATION_CACHE", "").strip().lower() in OFF:
        return None
    path = Path(path) if path is not None else cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
