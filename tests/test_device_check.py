"""`benchmarks/device_check.sh`, the GPU check prepared for a session that is lent a GPU: its dry run (the same steps
at a tiny scale, here on CPU) writes every section's figures to one results file, and bad options are refused."""

import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def _run(*args, tmp_path, timeout=600):
    env = dict(os.environ)
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_writes_every_section_to_one_results_file(tmp_path):
    results = tmp_path / "device_check.md"
    proc = _run("--dry-run", "--results", str(results), "--runs", str(tmp_path / "runs"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = results.read_text()
    assert text.startswith("# Device check (dry run, tiny scale)")
    for section in ("## GPU smoke subset of the tests", "## Training env steps/s by vmapped seeds",
                    "## remix-predator-prey", "## dpo-stochastic-game"):
        assert section in text, section
    assert text.count("(exit 0 after") == 4 and "skipped" not in text
    assert "passed" in text  # the smoke tests ran
    rows = json.loads((tmp_path / "seed_scaling.json").read_text())
    assert [(r["algo"], r["seeds"]) for r in rows] == [("qmix", 1), ("qmix", 2), ("dpo", 1), ("dpo", 2)]
    assert all(r["steps_per_s"] > 0 and r["compile_s"] > 0 for r in rows)
    # each preset's table, and its run directory where a second run of the script continues it
    assert "| predator-prey:p-2 | qmix |" in text and "| DPO |" in text
    assert (tmp_path / "runs" / "remix-predator-prey" / "table.md").is_file()
    assert (tmp_path / "runs" / "dpo-stochastic-game" / "table.md").is_file()


def test_a_spent_budget_skips_the_steps_and_bad_options_are_refused(tmp_path):
    results = tmp_path / "r.md"
    proc = _run("--dry-run", "--budget", "0", "--results", str(results), "--runs", str(tmp_path / "runs"),
                tmp_path=tmp_path)
    assert proc.returncode == 0 and results.read_text().count("(skipped: the budget is spent)") == 4
    proc = _run("--gpus", "2", tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown option --gpus (valid: --dry-run" in proc.stderr
    proc = _run("--budget", "ten", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--budget must be a whole number of seconds, got ten" in proc.stderr
