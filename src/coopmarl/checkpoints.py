"""Checkpoints of a run directory: `checkpoints/<env step>/`, written by orbax's `CheckpointManager`.

A checkpoint holds, for every seed (leading axis = seeds), up to three items:

- `train`: the train state without its replay buffers (parameters, targets, optimiser state, counters);
- `buffers`: the replay buffers (flashbax buffer states), when `save_buffers` is on;
- `loop`: the rest of the runner's carry — env states, the last time step, the agents' memory, the
  training and evaluation PRNG keys — so that `coopmarl resume` continues the run bit for bit;

plus a JSON `meta`: the format, env step, chunk index, seeds, the config's hash (`config_hash`) and, per
item, every leaf's name (`jax.tree_util.keystr` path), dtype and shape and a sha256 of the bytes. Orbax
writes a step into a temporary folder and renames it when complete, so a kill mid-write leaves no step
behind; temporary folders of an interrupted write are removed when the manager next opens the folder.
`keep` keeps the newest steps only (0: all). No step with a non-finite train state is ever written.

Replay buffers are ~99% of a value-based learner's state (QMIX on lbf:5x5-2p-1f-coop: 69 MB of buffer
against 0.55 MB of parameters, target and optimiser state, per seed); without them `restore` gives back
the freshly initialised (empty) buffers, and a resumed run cannot be bit-identical.

Runs written before format 2 (`checkpoint.msgpack`, `checkpoints/step_N.msgpack`) still load for
`eval` and `render` (`restore`), not for `resume`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from coopmarl.errors import ConfigError

CHECKPOINTS = "checkpoints"
FORMAT = 2
LEGACY_FINAL = "checkpoint.msgpack"  # format 1
ITEMS = ("train", "buffers", "loop")


def config_hash(config: dict) -> str:
    """sha256 of a run's settings (the algo, env, algo_config and run sections of config.yaml, as YAML reads
    them back): a checkpoint records it, and `eval`/`render`/`resume` refuse a config.yaml that differs."""
    import yaml

    plain = yaml.safe_load(yaml.safe_dump({k: config[k] for k in ("algo", "env", "algo_config", "run")}))
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


# ---- what a checkpoint holds ----------------------------------------------------------------------------


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


def buffer_leaves(state) -> dict:
    """{key path: leaf} of a train state's replay buffers only."""
    every, rest = state_leaves(state, True), state_leaves(state, False)
    return {k: v for k, v in every.items() if k not in rest}


def split_items(train_state, loop: dict | None = None, save_buffers: bool = False) -> dict[str, dict]:
    """{item: {name: leaf}}: a train state (and the runner's `loop` parts) as a checkpoint's items."""
    from jax.tree_util import keystr, tree_flatten_with_path

    items = {"train": state_leaves(train_state, False)}
    if save_buffers:
        items["buffers"] = buffer_leaves(train_state)
    if loop is not None:
        items["loop"] = {keystr(p): leaf for p, leaf in tree_flatten_with_path(loop)[0]}
    return items


def buffer_bytes(train_state) -> int:
    """Bytes of a train state's replay buffers (works on `jax.eval_shape` structures too)."""
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in buffer_leaves(train_state).values()))


def is_float(x) -> bool:
    return np.issubdtype(np.dtype(x.dtype), np.floating)


def first_nonfinite(leaves: dict) -> str | None:
    """The name of the first leaf holding a nan or inf (float leaves only), or None."""
    for name, leaf in leaves.items():
        if is_float(leaf) and not np.isfinite(np.asarray(leaf)).all():
            return name
    return None


def _digest(names: list[str], arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, a in zip(names, arrays):
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---- the store ------------------------------------------------------------------------------------------


class CheckpointStore:
    """The `checkpoints/` folder of a run directory (an orbax `CheckpointManager`)."""

    def __init__(self, run_dir: str | Path, keep: int = 0, read_only: bool = False):
        import orbax.checkpoint as ocp

        logging.getLogger("absl").setLevel(logging.ERROR)
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / CHECKPOINTS
        self._ocp = ocp
        if read_only and not self.path.is_dir():
            self.manager = None
            return
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep or None, create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.path.absolute(), options=options)

    def close(self):
        """Release orbax's background resources (its threads and event loop)."""
        if self.manager is not None:
            self.manager.close()
            self.manager = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def steps(self) -> list[int]:
        """Env steps of the complete checkpoints, in order."""
        if self.manager is None:
            return []
        self.manager.reload()
        return sorted(int(s) for s in self.manager.all_steps())

    def save(self, step: int, items: dict[str, dict], meta: dict) -> Path:
        """Write the items ({item: {name: array}}, leading axis = seeds) and `meta` as the step `step`."""
        import jax

        ocp = self._ocp
        host = {item: {k: np.asarray(v) for k, v in jax.device_get(leaves).items()} for item, leaves in items.items()}
        bad = first_nonfinite(host["train"])
        if bad is not None:  # the runner stops a diverging run before this; never write such a state
            raise ValueError(f"refusing to checkpoint a non-finite train state ({bad} holds nan or inf)")
        meta = dict(meta, format=FORMAT, step=int(step), items={})
        args = {}
        for item, leaves in host.items():
            names, arrays = list(leaves), list(leaves.values())
            meta["items"][item] = {"names": names, "dtypes": [a.dtype.str for a in arrays],
                                   "shapes": [list(a.shape) for a in arrays], "sha256": _digest(names, arrays)}
            stored = [a for a in arrays if a.size]  # orbax cannot write empty arrays: meta describes them
            if stored:
                args[item] = ocp.args.StandardSave(stored)
        self.manager.save(int(step), args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args), force=True)
        self.manager.wait_until_finished()
        return self.path / str(int(step))

    def meta(self, step: int) -> dict:
        ocp = self._ocp
        try:
            return dict(self.manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        except Exception as e:  # noqa: BLE001 - a damaged or foreign folder
            raise ConfigError(f"cannot read checkpoint {self.path / str(step)}: {_reason(e)}") from None

    def restore(self, step: int, templates: dict[str, dict], meta: dict | None = None) -> dict[str, dict]:
        """{item: {name: array}} of the step, for the wanted items' templates ({item: {name: shape/dtype}}):
        names, dtypes and shapes must match the template exactly and the bytes their recorded sha256."""
        ocp = self._ocp
        meta = meta or self.meta(step)
        where = self.path / str(step)
        args = {}
        for item, template in templates.items():
            saved = meta["items"].get(item)
            if saved is None:
                raise ConfigError(f"checkpoint {where} holds no {item!r} item")
            check_fits(where, item, saved, template)
            stored = [n for n, shape in zip(saved["names"], saved["shapes"]) if np.prod(shape)]
            if stored:
                args[item] = ocp.args.StandardRestore([_abstract(template[n]) for n in stored])
        try:
            raw = self.manager.restore(int(step), args=ocp.args.Composite(**args)) if args else {}
        except Exception as e:  # noqa: BLE001 - missing or damaged files
            raise ConfigError(f"cannot read checkpoint {where}: {_reason(e)}") from None
        out = {}
        for item in templates:
            saved = meta["items"][item]
            names, stored = saved["names"], iter(raw[item] if item in args else [])
            arrays = [np.asarray(next(stored)) if np.prod(shape) else np.zeros(shape, np.dtype(dtype))
                      for shape, dtype in zip(saved["shapes"], saved["dtypes"])]
            if _digest(names, arrays) != meta["items"][item]["sha256"]:
                raise ConfigError(f"checkpoint {where} is corrupted: the {item!r} item does not match its checksum")
            out[item] = dict(zip(names, arrays))
        return out


def _abstract(leaf):
    import jax

    return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype)


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def check_fits(where, item: str, saved: dict, template: dict):
    """The saved item has exactly the template's leaves, dtypes and shapes; else one clear error."""
    names = saved["names"]
    missing, extra = sorted(set(template) - set(names)), sorted(set(names) - set(template))
    if missing or extra:
        raise ConfigError(f"checkpoint {where} does not fit this run's state "
                          f"(missing: {missing[:3] or 'none'}; unexpected: {extra[:3] or 'none'})")
    for name, dtype, shape in zip(names, saved["dtypes"], saved["shapes"]):
        leaf = template[name]
        if tuple(shape) != tuple(leaf.shape) or np.dtype(dtype) != np.dtype(leaf.dtype):
            raise ConfigError(f"checkpoint {where}: {name} is {np.dtype(dtype)}{list(shape)}, "
                              f"the train state needs {np.dtype(leaf.dtype)}{list(leaf.shape)}")


# ---- a run directory's checkpoints ----------------------------------------------------------------------


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Env steps of a run directory's complete checkpoints, in order (older runs: their step_N.msgpack)."""
    with CheckpointStore(run_dir, read_only=True) as store:
        steps = store.steps()
    return steps or _legacy_steps(run_dir)


def require_checkpoint(run_dir: str | Path, step: int | None = None) -> int | None:
    """The step to read (`step`, or the latest when None); one clear error if there is none."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    steps = list_checkpoints(run_dir)
    legacy_final = (run_dir / LEGACY_FINAL).is_file()
    if step is None:
        if steps or legacy_final:
            return None
        raise ConfigError(f"run directory {str(run_dir)!r} has no checkpoint: the run was interrupted before its "
                          "first checkpoint; train it again with --overwrite")
    if step not in steps:
        raise ConfigError(f"run directory {str(run_dir)!r} has no checkpoint at step {step}; "
                          f"its checkpoints (--step): {', '.join(map(str, steps)) or 'none'}")
    return step


def train_template(resolved, seeds: list[int]):
    """The structure, shapes and dtypes of `resolved`'s freshly initialised train state for `seeds`."""
    import jax
    import jax.numpy as jnp

    from coopmarl.envs.tabular import TabularGame

    algo, env, config = resolved.algo, resolved.env, resolved.config
    model = env if isinstance(env, TabularGame) else None
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    init_v = jax.vmap(lambda m, k: algo.init(k, env.spec, config, m), in_axes=(None, 0))
    return jax.eval_shape(init_v, model, keys), (init_v, model, keys)


def fresh_buffers(init_parts, names) -> dict:
    """The freshly initialised (empty) replay buffers, computed alone (XLA prunes the rest of init)."""
    import jax

    init_v, model, keys = init_parts
    names = set(names)
    fresh = jax.jit(lambda m, k: {b: v for b, v in state_leaves(init_v(m, k), True).items() if b in names})
    return fresh(model, keys)


def assemble(template, values: dict):
    """A tree shaped like `template` with each leaf taken from `values` by its key path."""
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(values[jax.tree_util.keystr(p)]), template)


def restore(run_dir: str | Path, resolved, step: int | None = None):
    """(train_state, meta) of a run directory's latest checkpoint (or the one at `step` env steps), for the
    run `resolved` (`config.Resolved`, e.g. from `outputs.resolve_run`): the saved leaves are checked
    against the structure, shapes and dtypes of `resolved`'s freshly initialised train state, their
    checksum, the config's hash and finiteness. Left-out replay buffers come back empty."""
    run_dir = Path(run_dir)
    step = require_checkpoint(run_dir, step)
    with CheckpointStore(run_dir, read_only=True) as store:
        steps = store.steps()
        if not steps:
            return _restore_legacy(run_dir, resolved, step)
        return _restore(store, run_dir, resolved, steps[-1] if step is None else step)


def _restore(store: CheckpointStore, run_dir: Path, resolved, step: int):
    import yaml

    meta = store.meta(step)
    check_meta(run_dir, meta, config_hash(yaml.safe_load((run_dir / "config.yaml").read_text())), step)
    template, init_parts = train_template(resolved, meta["seeds"])
    wanted = {"train": state_leaves(template, False)}
    if meta["buffers"]:
        wanted["buffers"] = buffer_leaves(template)
    values = {}
    for leaves in store.restore(step, wanted, meta).values():
        values.update(leaves)
    bad = first_nonfinite(values)
    if bad is not None:
        raise ConfigError(f"checkpoint {store.path / str(step)} holds a non-finite state ({bad})")
    meta["where"] = f"{CHECKPOINTS}/{step}"
    missing = set(state_leaves(template, True)) - set(values)
    if missing:
        values.update(fresh_buffers(init_parts, missing))
    return assemble(template, values), meta


def check_meta(run_dir: Path, meta: dict, expected_hash: str, step: int):
    where = Path(run_dir) / CHECKPOINTS / str(step)
    if meta.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {where} has format {meta.get('format')!r}; this coopmarl reads format {FORMAT}")
    if meta.get("config_hash") != expected_hash:
        raise ConfigError(f"checkpoint {where} was written under another config than {Path(run_dir) / 'config.yaml'} "
                          "(their hashes differ): the config file was edited, or the folder mixes two runs")


# ---- format 1 (checkpoint.msgpack), read only -----------------------------------------------------------


def _legacy_steps(run_dir) -> list[int]:
    steps = []
    for f in (Path(run_dir) / CHECKPOINTS).glob("step_*.msgpack"):
        try:
            steps.append(int(f.stem.removeprefix("step_")))
        except ValueError:
            continue
    return sorted(steps)


def _restore_legacy(run_dir: Path, resolved, step: int | None) -> tuple[Any, dict]:
    from flax import serialization

    path = run_dir / (LEGACY_FINAL if step is None else f"{CHECKPOINTS}/step_{int(step)}.msgpack")
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
        meta = json.loads(raw["meta"])
        saved = {k: np.asarray(v) for k, v in raw["state"].items()}
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise ConfigError(f"cannot read checkpoint {path}: {_reason(e)}") from None
    if meta.get("format") != 1:
        raise ConfigError(f"checkpoint {path} has format {meta.get('format')!r}; this coopmarl reads formats 1, {FORMAT}")
    template, init_parts = train_template(resolved, meta["seeds"])
    expected = state_leaves(template, meta["buffers"])
    saved_meta = {"names": list(saved), "dtypes": [a.dtype.str for a in saved.values()],
                  "shapes": [list(a.shape) for a in saved.values()]}
    check_fits(path, "train", saved_meta, expected)
    bad = first_nonfinite(saved)
    if bad is not None:
        raise ConfigError(f"checkpoint {path} holds a non-finite state ({bad})")
    missing = set(state_leaves(template, True)) - set(saved)
    if missing:
        saved.update(fresh_buffers(init_parts, missing))
    meta["where"] = str(path.relative_to(run_dir))
    return assemble(template, saved), meta
