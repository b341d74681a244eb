"""Smoke test of the env throughput benchmark (`benchmarks/env_throughput.py`): it runs, and its one table
has the rows and the ratio column it promises."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "env_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("env_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_quick_run_prints_one_row_per_env(bench, capsys):
    assert bench.main(["--quick", "--envs", "climbing", "--batches", "1,8", "--bare-step"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("env "))
    assert re.split(r"\s{2,}", lines[header])[:5] == ["env", "implementation", "1 env", "8 envs", "compile s"]
    rows = [line for line in lines[header + 2:] if line.strip()]
    number, rate = r"\d[\d.]*", r"[1-9][\d,]*"  # steps/s > 0
    assert len(rows) == 2, rows
    assert re.fullmatch(rf"climbing\s+coopmarl\s+{rate}\s+{rate}\s+{number}", rows[0]), rows[0]
    assert re.fullmatch(rf"\s+coopmarl, bare step\s+{rate}\s+{rate}\s+{number}", rows[1]), rows[1]


def test_ratio_column(bench):
    rows = [bench.Row("mpe:spread (N=3)", "coopmarl", {1: 200.0, 64: 800.0}, compile_s=1.0),
            bench.Row("mpe:spread (N=3)", "mpe2 (Python)", {1: 100.0}, python=True),
            bench.Row("mpe:spread (N=3)", "JaxMARL", {1: 400.0, 64: 400.0}, compile_s=2.0),
            bench.Row("smax:3m", "coopmarl", note="skipped: ImportError: no jaxmarl")]
    table = bench.format_table(rows, [1, 64]).splitlines()
    assert table[0].split()[-1] == "64)" and "ours / ref (1 | 64)" in table[0]
    assert table[3].endswith("2.00x | 8.00x*")  # a Python reference: ours at 64 envs / its one-env rate
    assert table[4].endswith("0.50x | 2.00x")
    assert "skipped: ImportError" in table[5]
