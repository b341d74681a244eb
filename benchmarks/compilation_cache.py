"""What JAX's persistent compilation cache saves: the same `coopmarl train` command run three times in fresh
processes — without the cache, with an empty cache (cold: compiles and writes it) and again (warm: reads
the compiled programs) — measured side by side in one invocation.

    .venv/bin/python benchmarks/compilation_cache.py [--algo tabular-iql] [--env climbing] [key=value ...]

Wall time is the whole process (Python start, imports, compilation, training, writing the run directory).
The cache goes to a temporary folder (COOPMARL_CACHE_DIR), so your own cache is untouched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args, overrides, out: Path, env: dict) -> float:
    cmd = [sys.executable, "-m", "coopmarl", "train", args.algo, args.env, *overrides, "--seeds", str(args.seeds),
           "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="tabular-iql")
    p.add_argument("--env", default="climbing")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("overrides", nargs="*", default=["total_steps=2000", "log_points=10"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = {**os.environ, "COOPMARL_CACHE_DIR": str(tmp / "cache")}
        rows = [("no cache", run(args, args.overrides, tmp / "a", {**base, "COOPMARL_COMPILATION_CACHE": "0"})),
                ("cold cache", run(args, args.overrides, tmp / "b", base)),
                ("warm cache", run(args, args.overrides, tmp / "c", base))]
        size = sum(f.stat().st_size for f in (tmp / "cache").rglob("*") if f.is_file())
        same = (tmp / "a" / "metrics.csv").read_bytes() == (tmp / "c" / "metrics.csv").read_bytes()
    print(f"coopmarl train {args.algo} {args.env} {' '.join(args.overrides)} --seeds {args.seeds}")
    print(f"{'':12} {'wall s':>8} {'vs no cache':>12}")
    for name, wall in rows:
        print(f"{name:12} {wall:8.1f} {wall / rows[0][1]:12.2f}")
    print(f"cache size: {size / 2**20:.1f} MiB; metrics.csv with the warm cache identical to without: {same}")


if __name__ == "__main__":
    main()
