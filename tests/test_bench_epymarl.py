"""The QMIX-vs-EPyMARL benchmark (`benchmarks/qmix_vs_epymarl.py`), without EPyMARL: clear errors for bad paths,
our side's measurement, the parsing of EPyMARL's log, and the whole table with a fake EPyMARL standing in for its
`src/main.py`."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import re
import sys
import textwrap

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "qmix_vs_epymarl.py"

# the lines of EPyMARL's output the parser reads (run.py, utils/logging.py), among some it must skip
CANNED_LOG = """\
[INFO 11:05:31] pymarl Running command 'my_main'
[INFO 11:05:32] my_main Beginning training for 4000 timesteps
[INFO 11:05:32] my_main t_env: 50 / 4000
[INFO 11:05:33] my_main Recent Stats | t_env:       1000 | Episode:       20
ep_length_mean:           50.0000	epsilon:                   1.0000	return_mean:               0.0000
[INFO 11:05:34] my_main Recent Stats | t_env:       2000 | Episode:       40
[INFO 11:05:34] my_main Recent Stats | t_env:       3040 | Episode:       61
td_error_abs:             11.1280	test_ep_length_mean:      50.0000
[INFO 11:05:35] my_main Recent Stats | t_env:       4000 | Episode:       81
[INFO 11:05:35] my_main Finished Training
"""

# a stand-in for EPyMARL's src/main.py: records its arguments, then prints the lines the parser reads, one
# "Recent Stats" line every log_interval env steps of 50-step episodes, as run.py does
FAKE_MAIN = textwrap.dedent("""\
    import json, pathlib, sys, time
    pathlib.Path(__file__).with_name("argv.json").write_text(json.dumps(sys.argv[1:]))
    args = dict(a.split("=", 1) for a in sys.argv[sys.argv.index("with") + 1:])
    t_max, log_interval = int(args["t_max"]), int(args["log_interval"])
    print("[INFO 10:00:00] my_main Beginning training for %d timesteps" % t_max, file=sys.stderr, flush=True)
    t_env = episode = last_log = 0
    while t_env <= t_max:
        time.sleep(0.002)
        t_env, episode = t_env + 50, episode + 1
        if t_env - last_log >= log_interval:
            print("[INFO 10:00:01] my_main Recent Stats | t_env: %10d | Episode: %8d" % (t_env, episode),
                  file=sys.stderr, flush=True)
            last_log = t_env
    print("[INFO 10:00:02] my_main Finished Training", file=sys.stderr, flush=True)
""")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("qmix_vs_epymarl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    module._compiled.cache_clear()
    sys.modules.pop(spec.name, None)


def fake_epymarl(root: pathlib.Path, main: str = FAKE_MAIN) -> pathlib.Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text(main)
    return root


def test_missing_paths_exit_with_what_to_pass(bench, tmp_path):
    python = sys.executable
    with pytest.raises(SystemExit, match=r"--epymarl .*nope: no such directory; pass the root of an EPyMARL checkout"):
        bench.main(["--epymarl", str(tmp_path / "nope"), "--epymarl-python", python])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"--epymarl .*empty: no src/main.py under it"):
        bench.main(["--epymarl", str(tmp_path / "empty"), "--epymarl-python", python])
    root = fake_epymarl(tmp_path / "epymarl")
    with pytest.raises(SystemExit, match=r"--epymarl-python .*nopython: no such executable; pass the python of a venv"):
        bench.main(["--epymarl", str(root), "--epymarl-python", str(tmp_path / "nopython")])


def test_a_failing_epymarl_exits_with_its_output(bench, tmp_path):
    root = fake_epymarl(tmp_path / "broken", "raise ModuleNotFoundError(\"No module named 'torch'\")\n")
    with pytest.raises(SystemExit, match=r"(?s)exited 1.*No module named 'torch'.*CPU torch"):
        bench.main(["--epymarl", str(root), "--epymarl-python", sys.executable, "--t-max", "3000"])


def test_parses_epymarl_progress_lines(bench):
    stamped = [(0.5 * i, 0.25 * i, line) for i, line in enumerate(CANNED_LOG.splitlines())]  # (wall, CPU s, line)
    parsed = bench.parse_epymarl_log(stamped)
    assert parsed["start_s"] == 0.5
    assert parsed["points"] == [(1.5, 1000, 20, 0.75), (2.5, 2000, 40, 1.25), (3.0, 3040, 61, 1.5),
                                (4.0, 4000, 81, 2.0)]
    rate = bench.epymarl_rate(parsed, learn_from=2100)  # the first point at t_env >= 2100 to the last
    assert (rate["from_t_env"], rate["to_t_env"], rate["steps"], rate["episodes"]) == (3040, 4000, 960, 20)
    assert rate["seconds"] == pytest.approx(1.0) and rate["steps_per_s"] == pytest.approx(960.0)
    assert rate["episodes_per_s"] == pytest.approx(20.0) and rate["episode_length"] == pytest.approx(48.0)
    assert rate["steps_per_cpu_s"] == pytest.approx(1920.0)
    no_cpu = bench.parse_epymarl_log([(t, None, line) for t, _, line in stamped])  # (no /proc: no CPU figure)
    assert bench.epymarl_rate(no_cpu, learn_from=2100)["steps_per_cpu_s"] is None
    with pytest.raises(SystemExit, match="raise --t-max or lower --log-interval"):
        bench.epymarl_rate(parsed, learn_from=4000)


def test_our_measurement_is_finite_and_learns(bench):
    row = bench.measure_ours(1, 500, repeats=1)  # 10 iterations of one 50-step episode + one gradient step
    assert (row["n_envs"], row["steps"], row["iters"]) == (1, 500, 10)
    assert math.isfinite(row["steps_per_s"]) and row["steps_per_s"] > 0 and row["compile_s"] > 0
    assert math.isfinite(row["steps_per_cpu_s"]) and row["steps_per_cpu_s"] > 0
    assert row["episodes_per_s"] == pytest.approx(row["steps_per_s"] / 50)


def test_main_prints_the_table_with_a_fake_epymarl(bench, tmp_path, capsys):
    root = fake_epymarl(tmp_path / "epymarl")
    ours, theirs = bench.main(["--epymarl", str(root), "--epymarl-python", sys.executable, "--t-max", "3000",
                               "--log-interval", "500", "--repeats", "1"])
    # timed from the first line at t_env >= 32 episodes x 50 steps + 500 (2500) to the last (3000)
    assert (theirs["from_t_env"], theirs["to_t_env"], theirs["steps"]) == (2500, 3000, 500)
    assert ours[0]["steps"] == 500
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("| envs | ours steps/s | EPyMARL steps/s | ours / EPyMARL | "
                         "compile s (ours / EPyMARL start-up) |")
    assert lines[header + 1] == "|---|---|---|---|---|"
    assert re.fullmatch(r"\| 1 \| [1-9][\d,]* \| [1-9][\d,]* \| \d+\.\d\d \| \d+\.\d / \d+\.\d \|", lines[header + 2])
    assert any(line.startswith("Settings: 1 env (episode runner), time limit 50, batch 32 episodes") for line in lines)
    assert any("src/config/default.yaml not found" in line for line in lines)  # the fake has no src/config
    argv = json.loads((root / "src" / "argv.json").read_text())
    assert argv[:4] == ["--config=qmix", "--env-config=gymma", "--unobserved", "with"]
    for arg in ("env_args.key=lbforaging:Foraging-8x8-2p-2f-coop-v3", "env_args.time_limit=50", "t_max=3000",
                "save_model=False", "use_tensorboard=False", "use_cuda=False"):
        assert arg in argv
    test_interval = int(next(a for a in argv if a.startswith("test_interval=")).split("=")[1])
    assert test_interval > 3000  # no evaluation inside the run
