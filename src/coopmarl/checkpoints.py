"""Checkpoints of a run directory: `checkpoint.msgpack` (the final train state of every seed) and
`checkpoints/step_N.msgpack` (every `checkpoint_every` chunks).

A checkpoint is a msgpack map (`flax.serialization`) {"meta": JSON text, "state": {key path: array}}:
the train state's leaves (leading axis = seeds) named by their `jax.tree_util.keystr` path. Replay
buffers (flashbax buffer states) are left out by default — they are ~99% of a value-based learner's
state (QMIX on lbf:5x5-2p-1f-coop: 69 MB of buffer against 0.55 MB of parameters, target and
optimiser state, per seed) and acting never reads them; `restore` gives them back as the freshly
initialised (empty) buffers. `save_checkpoint(..., save_buffers=True)` keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from coopmarl.errors import ConfigError
from coopmarl.files import atomic_write

CHECKPOINT = "checkpoint.msgpack"
CHECKPOINT_FORMAT = 1


def checkpoint_path(run_dir: str | Path, step: int | None = None) -> Path:
    """The final checkpoint (`step=None`) or the intermediate one written at `step` env steps."""
    run_dir = Path(run_dir)
    return run_dir / CHECKPOINT if step is None else run_dir / "checkpoints" / f"step_{int(step)}.msgpack"


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Env steps of the intermediate checkpoints in a run directory, in order."""
    steps = []
    for f in (Path(run_dir) / "checkpoints").glob("step_*.msgpack"):
        try:
            steps.append(int(f.stem.removeprefix("step_")))
        except ValueError:
            continue
    return sorted(steps)


def is_buffer(node) -> bool:
    """A flashbax replay-buffer state (trajectory / item / flat / prioritised)."""
    t = type(node)
    return t.__module__.startswith("flashbax.") and t.__name__.endswith("BufferState")


def state_leaves(state, with_buffers: bool) -> dict:
    """{key path: leaf} of a train state, replay buffers included or left out."""
    from jax.tree_util import keystr, tree_flatten_with_path

    out = {}
    for path, node in tree_flatten_with_path(state, is_leaf=is_buffer)[0]:
        if not is_buffer(node):
            out[keystr(path)] = node
        elif with_buffers:
            for sub, leaf in tree_flatten_with_path(node)[0]:
                out[keystr(path) + keystr(sub)] = leaf
    return out


def save_checkpoint(run_dir: str | Path, train_state, *, step: int, seeds: list[int], final: bool = True,
                    save_buffers: bool = False) -> Path:
    """Write a train state (leading axis = seeds) to `run_dir` atomically: `checkpoint.msgpack` when
    `final`, else `checkpoints/step_{step}.msgpack`. Replay buffers are left out unless `save_buffers`."""
    import jax
    from flax import serialization

    leaves = jax.device_get(state_leaves(train_state, save_buffers))
    meta = {"format": CHECKPOINT_FORMAT, "step": int(step), "seeds": [int(s) for s in seeds],
            "buffers": bool(save_buffers)}
    payload = {"meta": json.dumps(meta), "state": {k: np.asarray(v) for k, v in leaves.items()}}
    path = checkpoint_path(run_dir, None if final else step)
    atomic_write(path, serialization.to_bytes(payload))
    return path


def require_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    path = checkpoint_path(run_dir, step)
    if not path.is_file():
        steps = list_checkpoints(run_dir)
        others = (f"; intermediate checkpoints (--step): {', '.join(map(str, steps))}" if steps
                  else "; it has no intermediate checkpoints either")
        what = "final checkpoint" if step is None else f"checkpoint at step {step}"
        raise ConfigError(f"run directory {str(run_dir)!r} has no {what} ({path.relative_to(run_dir)}): "
                            f"the run was interrupted or written without checkpoints{others}")
    return path


def restore(run_dir: str | Path, resolved, step: int | None = None):
    """(train_state, meta) of a run directory's final checkpoint (or the one at `step` env steps), for the
    run `resolved` (`config.Resolved`, e.g. from `outputs.resolve_run`): the saved leaves are checked
    against the structure, shapes and dtypes of `resolved`'s freshly initialised train state."""
    import jax
    import jax.numpy as jnp
    from flax import serialization

    from coopmarl.envs.tabular import TabularGame

    path = require_checkpoint(run_dir, step)
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
        meta = json.loads(raw["meta"])
        saved = raw["state"]
    except Exception as e:  # a truncated or foreign file
        raise ConfigError(f"cannot read checkpoint {path}: {e}") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"checkpoint {path} has format {meta.get('format')!r}; "
                            f"this coopmarl reads format {CHECKPOINT_FORMAT}")
    algo, env, config = resolved.algo, resolved.env, resolved.config
    model = env if isinstance(env, TabularGame) else None
    keys = jnp.stack([jax.random.PRNGKey(s) for s in meta["seeds"]])
    init_v = jax.vmap(lambda m, k: algo.init(k, env.spec, config, m), in_axes=(None, 0))
    template = jax.eval_shape(init_v, model, keys)  # the freshly initialised state's structure, shapes, dtypes
    expected = state_leaves(template, meta["buffers"])
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or extra:
        raise ConfigError(f"checkpoint {path} does not fit {algo.name!r}'s train state "
                            f"(missing: {missing[:3] or 'none'}; unexpected: {extra[:3] or 'none'})")
    values = serialization.from_state_dict(expected, saved)
    values = {k: np.asarray(v) for k, v in values.items()}
    for k, leaf in expected.items():
        if values[k].shape != tuple(leaf.shape) or values[k].dtype != leaf.dtype:
            raise ConfigError(f"checkpoint {path}: {k} is {values[k].dtype}{list(values[k].shape)}, "
                                f"the train state needs {leaf.dtype}{list(leaf.shape)}")
    values = {k: jnp.asarray(v) for k, v in values.items()}
    buffers = set(state_leaves(template, True)) - set(expected)
    if buffers:  # left out: the freshly initialised (empty) buffers, computed alone (XLA prunes the rest of init)
        fresh = jax.jit(lambda m, k: {b: v for b, v in state_leaves(init_v(m, k), True).items() if b in buffers})
        values.update(fresh(model, keys))
    state = jax.tree_util.tree_map_with_path(lambda p, _: values[jax.tree_util.keystr(p)], template)
    return state, meta
