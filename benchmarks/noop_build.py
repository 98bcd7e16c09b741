#!/usr/bin/env python3
"""No-op rebuild vs full assembly, as a user runs it.

    python benchmarks/noop_build.py [--size-mb 120] [--runs 5]

Runs `invoke build --binary X --app examples/orangescrum-demo --skip-deploy`
in a scratch dist dir: once from nothing (full assembly of both trees with a
binary of --size-mb), then --runs times with nothing changed. Prints the
median wall times, the ratio no-op/full, and whether the no-op run said that
everything is up to date. Target: the no-op run finishes in under 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=120, help="size of the fake binary (the stand-in's is ~121 MB)")
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="noop-bench-"))
    try:
        binary = work / "frankenphp"
        with open(binary, "wb") as f:
            f.write(b"#!/bin/sh\necho bench\n")
            f.write(os.urandom(opts.size_mb * 1024 * 1024))
        binary.chmod(0o755)
        args = ["build", "--binary", str(binary), "--app", str(ROOT / "examples/orangescrum-demo"), "--skip-deploy"]
        fulls, noops = [], []
        said_up_to_date = True
        for _ in range(opts.runs):
            dist = work / "dist"
            shutil.rmtree(dist, ignore_errors=True)
            env = {**os.environ, "OSCB_DIST_DIR": str(dist)}
            t, _ = run(args, env)
            fulls.append(t)
            t, err = run(args, env)
            noops.append(t)
            said_up_to_date &= "Everything is up to date" in err
        full, noop = statistics.median(fulls), statistics.median(noops)
        print(f"binary size            {opts.size_mb} MB")
        print(f"full assembly (median) {full:.3f} s   (both trees; the binary hashed, copied once, hard-linked once)")
        print(f"no-op rebuild (median) {noop:.3f} s   (target < 1 s; says up to date: {said_up_to_date})")
        print(f"ratio no-op / full     {noop / full:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
