"""Training throughput of our QMIX beside EPyMARL's QMIX (PyTorch) on LBF 8x8-2p-2f-coop, at EPyMARL's settings.

EPyMARL is not shipped or copied here: fetch it and make a Python environment for it yourself, then pass both
paths. The setup this script was written against (EPyMARL commit cbc38c0, 2024-09-24; Python 3.11):

    git clone https://github.com/uoe-agents/epymarl /tmp/epymarl
    python3 -m venv /tmp/epymarl-venv
    /tmp/epymarl-venv/bin/pip install torch==2.13.0      # a CPU build of torch, installed first (not a CUDA one)
    grep -v -i '^torch' /tmp/epymarl/requirements.txt > /tmp/epymarl-req.txt
    /tmp/epymarl-venv/bin/pip install -r /tmp/epymarl-req.txt lbforaging "setuptools<81"

    nice -n 10 python benchmarks/qmix_vs_epymarl.py --epymarl /tmp/epymarl --epymarl-python /tmp/epymarl-venv/bin/python

(requirements.txt without its torch and torchvision lines, which would pull a default — CUDA — torch build; QMIX
needs neither torchvision nor a particular torch version. lbforaging is in env_requirements.txt: 2.0.0 registers the
`-v3` task ids of EPyMARL's README. sacred 0.8.7 imports `pkg_resources`, which setuptools 81 removed. EPyMARL's
other env packages are not needed.)

**EPyMARL's side** runs as a subprocess, exactly as its README runs LBF (`src/main.py --config=qmix
--env-config=gymma with env_args.time_limit=50 env_args.key=lbforaging:Foraging-8x8-2p-2f-coop-v3`), on CPU
(`use_cuda=False`), with sacred's `--unobserved` (no results written into the checkout), no model saving, no
TensorBoard, and `test_interval` beyond `t_max` (its one greedy test, which run.py always makes after the first
episode, is cut to `test_nepisode=1` episode; it precedes the timed part). `log_interval` is lowered to `--log-interval`
env steps, so that its "Recent Stats | t_env: … | Episode: …" line comes often; each line is stamped with this
process's clock as it arrives. Its steps/s is Δt_env / Δtime between the first such line at t_env >= batch_size x
time limit + log_interval (so >= 32 episodes are in its buffer: every timed episode is followed by a gradient step)
and the last. Its start-up is the time from launch to its "Beginning training" line (imports, env, networks). Its
`src/envs/__init__.py` imports `smaclite` unconditionally (a git-only package, SMAClite envs only): where the venv
lacks it, an empty stand-in package goes on the subprocess's PYTHONPATH, and the settings line says so.

**Our side**: `qmix` through the runner's compiled iteration (`coopmarl.runner.build_chunk`) with the same
settings (`OUR_OVERRIDES`): one env restarted every iteration (`replay=episodes`: a window is one episode of the
50-step horizon) then one gradient step on 32 episodes. The chunk is compiled ahead of time (its compile time is the
compile column), the replay is filled with >= 32 episodes first, then the chunk runs as many env steps as EPyMARL's
timed part `--repeats` times from that state (the median counts; every timed iteration learns: checked).
`--envs 1,8` adds rows on our side only (EPyMARL's episode runner runs one env): n envs restarted per iteration
and n gradient steps (still one per episode); their ratio is to EPyMARL's one-env rate (marked *).
A second figure, steps per CPU-second (EPyMARL's process from Linux's /proc at each progress line, ours this process's
CPU time over the timed calls, all threads), is printed below the table: on a busy shared machine it is disturbed less
than wall time, which counts the time each side waits for a core.

The settings, EPyMARL key (file) -> ours: runner episode, batch_size_run 1 (default.yaml, algs/qmix.yaml) -> n_envs=1,
replay=episodes; time_limit 50 (README, LBF) -> env.time_limit=50, rollout_length=0; one `learner.train` per
episode (run.py) -> updates_per_iteration=1; batch_size 32 (default.yaml) -> batch_size=32; buffer_size 5000
(algs/qmix.yaml) -> buffer_size=5000; Adam (learners/q_learner.py), lr 0.0005 -> lr=5e-4; gamma 0.99 -> gamma=0.99;
1-step targets (q_learner.py) -> td_lambda=0; grad_norm_clip 10 -> max_grad_norm=10; target_update_interval_or_tau
200 (>= 1: a hard copy every 200 episodes; algs/qmix.yaml) -> target_update_episodes=200, target_tau=0;
standardise_rewards True -> standardise_rewards=true; agent rnn with use_rnn False (fc-ReLU-fc-ReLU-fc;
modules/agents/rnn_agent.py) and hidden_dim 64 -> agent=mlp, hidden_sizes=64; basic_mac (one network) ->
share_parameters=true; obs_agent_id True, obs_last_action False -> agent_id=true, last_action=false; epsilon 1.0 ->
0.05 over 50000 steps -> epsilon_start=1, epsilon_end=0.05, epsilon_anneal_steps=50000; double_q True ->
double_q=true; mixing_embed_dim 32, hypernet_layers 2, hypernet_embed 64 -> mixing_embed=32, hypernet_embed=64 (our
QMixer's hypernetworks have 2 layers); a time limit is not a termination (episode_runner.py) ->
truncation_bootstrap=true. Remaining differences, none of which changes the work per step by much: EPyMARL's mixer
state is the agents' observations concatenated (gymma.py `get_state`: 24 numbers), ours LBF's global state (13);
EPyMARL's torch runs one thread (main.py `th.set_num_threads(1)`), XLA uses the cores it finds; an LBF episode that
ends early (all food eaten) counts its real length in EPyMARL's t_env, while ours steps the whole 50-step episode slot
(the steps after the end are masked out of the loss) — the mean EPyMARL episode length in the timed part is printed.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jax

from coopmarl.config import resolve
from coopmarl.results import iteration_size
from coopmarl.runner import build_chunk

ENV = "lbf:8x8-2p-2f-coop"
EPYMARL_ENV_KEY = "lbforaging:Foraging-8x8-2p-2f-coop-v3"  # EPyMARL README (LBF list); lbforaging 2.0.0's id
TIME_LIMIT = 50  # EPyMARL README: "LBF: all with env_args.time_limit=50"
BATCH_EPISODES = 32  # EPyMARL src/config/default.yaml batch_size

# EPyMARL's values this benchmark maps (merged as its main.py merges them: default.yaml <- envs/gymma.yaml <-
# algs/qmix.yaml); a checkout whose configs differ is reported, since the mapping below assumes these
EPYMARL_SETTINGS = {
    "runner": "episode", "batch_size_run": 1, "batch_size": BATCH_EPISODES, "buffer_size": 5000, "lr": 0.0005,
    "gamma": 0.99, "grad_norm_clip": 10, "target_update_interval_or_tau": 200, "standardise_rewards": True,
    "standardise_returns": False, "agent": "rnn", "use_rnn": False, "hidden_dim": 64, "mac": "basic_mac",
    "obs_agent_id": True, "obs_last_action": False, "epsilon_start": 1.0, "epsilon_finish": 0.05,
    "epsilon_anneal_time": 50000, "double_q": True, "mixer": "qmix", "mixing_embed_dim": 32, "hypernet_layers": 2,
    "hypernet_embed": 64, "learner": "q_learner", "common_reward": True,
}
OUR_OVERRIDES = [  # the same settings in our keys (see the docstring for each key's source)
    "replay=episodes", "rollout_length=0", f"env.time_limit={TIME_LIMIT}", f"batch_size={BATCH_EPISODES}",
    "buffer_size=5000", "lr=5e-4", "gamma=0.99", "td_lambda=0", "max_grad_norm=10", "target_update_episodes=200",
    "target_tau=0", "standardise_rewards=true", "agent=mlp", "hidden_sizes=64", "share_parameters=true",
    "agent_id=true", "last_action=false", "epsilon_start=1.0", "epsilon_end=0.05", "epsilon_anneal_steps=50000",
    "double_q=true", "mixing_embed=32", "hypernet_embed=64", "truncation_bootstrap=true",
]
STAND_INS = ("smaclite",)  # imported unconditionally by EPyMARL's src/envs/__init__.py, used only by SMAClite envs

PROGRESS = re.compile(r"Recent Stats \| t_env:\s*(\d+) \| Episode:\s*(\d+)")  # utils/logging.py print_recent_stats
BEGIN = re.compile(r"Beginning training for \d+ timesteps")  # run.py run_sequential


# ---- EPyMARL's side ------------------------------------------------------------------------------------------


def check_paths(epymarl: str, python: str) -> tuple[Path, Path]:
    """(checkout root, python), or SystemExit naming what to pass."""
    root, py = Path(epymarl).expanduser(), Path(python).expanduser()
    if not (root / "src" / "main.py").is_file():
        why = "no such directory" if not root.is_dir() else "no src/main.py under it"
        raise SystemExit(f"--epymarl {root}: {why}; pass the root of an EPyMARL checkout (see this script's "
                         "docstring for how to get one)")
    if not py.is_file() or not os.access(py, os.X_OK):
        raise SystemExit(f"--epymarl-python {py}: no such executable; pass the python of a venv with EPyMARL's "
                         "requirements and a CPU torch (see this script's docstring)")
    return root, py


def config_note(root: Path) -> str | None:
    """A line naming each EPYMARL_SETTINGS value that the checkout's configs set otherwise (None if all agree)."""
    import yaml

    merged: dict = {}
    for name in ("default.yaml", "envs/gymma.yaml", "algs/qmix.yaml"):  # main.py's merge order
        path = root / "src" / "config" / name
        if not path.is_file():
            return (f"Note: EPyMARL's src/config/{name} not found: its settings were not checked against those "
                    "mapped here")
        merged.update(yaml.safe_load(path.read_text()) or {})
    differences = [f"{k}: {merged[k]!r} (assumed {v!r})" for k, v in EPYMARL_SETTINGS.items()
                   if k in merged and merged[k] != v]
    if differences:
        return f"Note: this EPyMARL checkout's configs differ from the values mapped here: {'; '.join(differences)}"
    return None


def epymarl_command(root: Path, python: Path, t_max: int, seed: int, log_interval: int, results: str,
                    env_key: str = EPYMARL_ENV_KEY) -> list[str]:
    """EPyMARL's QMIX on LBF as its README runs it, plus the overrides that keep the timing clean."""
    return [str(python), str(root / "src" / "main.py"), "--config=qmix", "--env-config=gymma", "--unobserved",
            "with", f"env_args.key={env_key}", f"env_args.time_limit={TIME_LIMIT}", f"t_max={t_max}", f"seed={seed}",
            f"test_interval={10 * t_max + 1}", "test_nepisode=1", f"log_interval={log_interval}", "save_model=False",
            "use_tensorboard=False", "use_wandb=False", "use_cuda=False", f"local_results_path={results}"]


def missing_modules(python: Path, names) -> list[str]:
    """The modules among `names` that `python` cannot find (found by spec, not imported)."""
    code = "import importlib.util as u, sys; print(' '.join(n for n in sys.argv[1:] if u.find_spec(n) is None))"
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=120)
    return out.stdout.split() if out.returncode == 0 else list(names)


def run_epymarl(root: Path, python: Path, t_max: int, seed: int, log_interval: int, timeout: float,
                env_key: str = EPYMARL_ENV_KEY) -> tuple[list[tuple[float, float | None, str]], list[str]]:
    """Run EPyMARL once; ([(seconds since launch, its CPU seconds or None, line)] of its output, stand-ins used).
    SystemExit if it fails."""
    with tempfile.TemporaryDirectory(prefix="epymarl-bench-") as tmp:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        replaced = missing_modules(python, STAND_INS)
        if replaced:
            for name in replaced:
                (Path(tmp, "stand_ins", name)).mkdir(parents=True)
                Path(tmp, "stand_ins", name, "__init__.py").write_text('"""Empty stand-in (SMAClite envs only)."""\n')
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(tmp, "stand_ins")), env.get("PYTHONPATH")]))
        cmd = epymarl_command(root, python, t_max, seed, log_interval, str(Path(tmp, "results")), env_key)
        stamped: list[tuple[float, float | None, str]] = []
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                stamped.append((time.perf_counter() - t0, cpu_seconds(proc.pid), line.rstrip("\n")))
            rc = proc.wait()
        finally:
            timer.cancel()
    if rc != 0:
        tail = "\n".join(line for _, _, line in stamped[-25:])
        why = f"was stopped after --timeout {timeout:g} s" if time.perf_counter() - t0 >= timeout else f"exited {rc}"
        raise SystemExit(f"EPyMARL ({' '.join(cmd[:2])}) {why}; the end of its output:\n{tail}\n"
                         "Is --epymarl-python a venv with EPyMARL's requirements and a CPU torch (see the docstring)?")
    return stamped, replaced


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc; None elsewhere or once it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5))
    except (OSError, IndexError, ValueError):
        return None


def parse_epymarl_log(stamped: list[tuple[float, float | None, str]]) -> dict:
    """From EPyMARL's stamped output: `start_s` (when its "Beginning training" line came; None if none) and `points`
    [(seconds, t_env, episodes, CPU seconds or None)] of its "Recent Stats" lines."""
    start, points = None, []
    for t, cpu, line in stamped:
        if start is None and BEGIN.search(line):
            start = t
        m = PROGRESS.search(line)
        if m:
            points.append((t, int(m.group(1)), int(m.group(2)), cpu))
    return {"start_s": start, "points": points}


def epymarl_rate(parsed: dict, learn_from: int) -> dict:
    """Steps/s and episodes/s between the first progress point at t_env >= `learn_from` and the last one."""
    points = [p for p in parsed["points"] if p[1] >= learn_from]
    if len(points) < 2:
        raise SystemExit(f"EPyMARL logged {len(points)} progress line(s) at t_env >= {learn_from} (when learning is "
                         "surely on): raise --t-max or lower --log-interval")
    (t_a, s_a, e_a, c_a), (t_b, s_b, e_b, c_b) = points[0], points[-1]
    seconds, steps, episodes = t_b - t_a, s_b - s_a, e_b - e_a
    cpu = c_b - c_a if c_a is not None and c_b is not None else 0.0
    return dict(steps=steps, episodes=episodes, seconds=seconds, steps_per_s=steps / seconds,
                steps_per_cpu_s=steps / cpu if cpu > 0 else None,
                episodes_per_s=episodes / seconds, episode_length=steps / max(episodes, 1), from_t_env=s_a,
                to_t_env=s_b, startup_s=parsed["start_s"])


# ---- our side ------------------------------------------------------------------------------------------------


def our_config(n_envs: int):
    """Our QMIX at EPyMARL's settings with `n_envs` envs (one gradient step per episode)."""
    return resolve("qmix", ENV, OUR_OVERRIDES + [f"n_envs={n_envs}", f"updates_per_iteration={n_envs}"])


@functools.lru_cache(maxsize=8)
def _compiled(n_envs: int, iters: int):
    """(init, chunk, compile seconds) of `iters` iterations, compiled ahead of time (cached for a second call)."""
    r = our_config(n_envs)
    init_fn, chunk_fn = build_chunk(r.algo, r.env, r.config, iters)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    init = jax.jit(lambda k: init_fn(None, k)).lower(key).compile()
    carry = init(key)
    chunk = jax.jit(lambda c: chunk_fn(None, c)).lower(carry).compile()
    return init, chunk, time.perf_counter() - t0


def measure_ours(n_envs: int, steps: int, repeats: int = 3, seed: int = 1) -> dict:
    """Training env steps/s of our QMIX over >= `steps` env steps (whole iterations), the replay filled first,
    compile excluded: the median of `repeats` runs of the chunk from the same filled state."""
    r = our_config(n_envs)
    window, envs = iteration_size(r.algo, r.config, r.env.spec)
    iters = max(1, round(steps / (window * envs)))
    init, chunk, compile_s = _compiled(n_envs, iters)
    carry = init(jax.random.PRNGKey(seed))
    while int(carry[0].windows) < r.config.batch_size:  # fill the replay: every timed iteration then learns
        carry = jax.block_until_ready(chunk(carry)[0])
    times, cpu, learning = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(chunk(carry))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        learning.append(float(out[1]["learning"]))
    if min(learning) < 1.0 - 1e-4:  # (the chunk's mean of 1.0 flags, up to float32 rounding)
        raise RuntimeError(f"some timed iterations did not learn (share learning: {min(learning)})")
    run_s = statistics.median(times)
    done = iters * window * envs
    return dict(n_envs=n_envs, steps=done, iters=iters, run_s=run_s, steps_per_s=done / run_s,
                steps_per_cpu_s=done / max(statistics.median(cpu), 1e-9),
                episodes_per_s=iters * envs / run_s, updates_per_s=iters * r.config.updates_per_iteration / run_s,
                compile_s=compile_s)


# ---- the table -----------------------------------------------------------------------------------------------


def format_table(ours: list[dict], theirs: dict) -> list[str]:
    lines = ["| envs | ours steps/s | EPyMARL steps/s | ours / EPyMARL | compile s (ours / EPyMARL start-up) |",
             "|---|---|---|---|---|"]
    start = "?" if theirs["startup_s"] is None else f"{theirs['startup_s']:.1f}"
    for row in ours:
        one = row["n_envs"] == 1  # EPyMARL's episode runner runs one env: other rows compare with that
        epymarl = f"{theirs['steps_per_s']:,.0f}" if one else "—"
        ratio = f"{row['steps_per_s'] / theirs['steps_per_s']:.2f}" + ("" if one else "*")
        lines.append(f"| {row['n_envs']} | {row['steps_per_s']:,.0f} | {epymarl} | {ratio} | "
                     f"{row['compile_s']:.1f} / {start} |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epymarl", required=True, metavar="PATH", help="root of an EPyMARL checkout (see the docstring)")
    p.add_argument("--epymarl-python", required=True, metavar="PATH",
                   help="python of a venv with EPyMARL's requirements and a CPU torch (see the docstring)")
    p.add_argument("--t-max", type=int, default=25_000, help="EPyMARL's t_max: env steps of its run")
    p.add_argument("--log-interval", type=int, default=1000, help="env steps between EPyMARL's progress lines")
    p.add_argument("--envs", default="1", help="comma-separated env counts of our rows (EPyMARL: 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of our chunk (the median counts)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before EPyMARL's run is stopped")
    p.add_argument("--epymarl-env-key", default=EPYMARL_ENV_KEY, help="the gymnasium id EPyMARL makes")
    args = p.parse_args(argv)
    envs = [int(e) for e in args.envs.split(",")]
    if args.t_max < 1 or args.log_interval < 1 or args.repeats < 1 or min(envs) < 1:
        raise SystemExit("--t-max, --log-interval, --repeats and --envs must be positive")
    root, python = check_paths(args.epymarl, args.epymarl_python)
    note = config_note(root)
    for n in envs:  # our settings resolve (and are valid) before EPyMARL's run, not after it
        our_config(n)

    stamped, replaced = run_epymarl(root, python, args.t_max, args.seed, args.log_interval, args.timeout,
                                    args.epymarl_env_key)
    theirs = epymarl_rate(parse_epymarl_log(stamped), BATCH_EPISODES * TIME_LIMIT + args.log_interval)
    ours = [measure_ours(n, theirs["steps"], args.repeats, args.seed) for n in envs]

    command = epymarl_command(root, python, args.t_max, args.seed, args.log_interval, "TMP", args.epymarl_env_key)
    print(f"\nQMIX training on LBF 8x8-2p-2f-coop at EPyMARL's settings: ours on {jax.devices()[0].platform}, EPyMARL "
          f"on CPU; EPyMARL timed from t_env {theirs['from_t_env']:,} to {theirs['to_t_env']:,} "
          f"({theirs['steps']:,} steps, {theirs['seconds']:.1f} s, learning on), ours the same number of steps "
          f"(median of {args.repeats}); compile and start-up excluded")
    print("\n".join(format_table(ours, theirs)))
    if any(row["n_envs"] != 1 for row in ours):
        print("* against EPyMARL's one-env rate (its episode runner runs one env); our n envs take n gradient steps "
              "per iteration, one per episode")
    one = next((row for row in ours if row["n_envs"] == 1), None)
    print(f"Episodes (= gradient steps) per s: EPyMARL {theirs['episodes_per_s']:.1f}"
          + (f", ours {one['episodes_per_s']:.1f}" if one else "")
          + f"; EPyMARL's mean episode length in the timed part {theirs['episode_length']:.1f} steps "
            f"(ours: {TIME_LIMIT})")
    if one and theirs["steps_per_cpu_s"]:
        print(f"CPU time (all threads; less disturbed by a busy machine than wall time): ours "
              f"{one['steps_per_cpu_s']:,.0f} steps per CPU-s, EPyMARL {theirs['steps_per_cpu_s']:,.0f}, ours / "
              f"EPyMARL {one['steps_per_cpu_s'] / theirs['steps_per_cpu_s']:.2f}")
    print(f"Settings: 1 env (episode runner), time limit {TIME_LIMIT}, batch {BATCH_EPISODES} episodes, 1 gradient "
          "step per episode, buffer 5000, MLP agent 64 shared + agent id, QMIX mixer 32 / hypernet 64, Adam 5e-4, "
          "clip 10, gamma 0.99, double-Q 1-step targets, target copy every 200 episodes, epsilon 1 -> 0.05 over 50k, "
          f"standardised rewards (EPyMARL default.yaml, algs/qmix.yaml, envs/gymma.yaml). Ours: qmix {ENV} "
          f"{' '.join(OUR_OVERRIDES)} n_envs=N updates_per_iteration=N. EPyMARL: {' '.join(command[1:])}")
    if replaced:
        print(f"EPyMARL's imports replaced by empty stand-ins (not installed, unused by LBF): {', '.join(replaced)}")
    if note:
        print(note)
    return ours, theirs


if __name__ == "__main__":
    main()
