"""What produced a run: coopmarl's version and git commit, the versions of the numerical stack, the backend
and the device. `config.yaml` and `summary.json` record it; the determinism guarantee (README) holds for
the same config, seed, these versions and the same device.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "flax", "optax", "flashbax", "orbax-checkpoint", "numpy")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the coopmarl source tree (with `+dirty` when it has uncommitted changes), if it is a
    git checkout; None for an installed wheel."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance() -> dict:
    """{coopmarl, git_commit, versions: {package: version}, backend, device}."""
    import jax

    import coopmarl

    device = jax.devices()[0]
    return {
        "coopmarl": coopmarl.__version__,
        "git_commit": git_commit(),
        "versions": {p: _version(p) for p in PACKAGES},
        "backend": jax.default_backend(),
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
    }
