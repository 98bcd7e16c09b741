#!/usr/bin/env python3
"""Time validate-env.sh on files with many redefinitions or many keys (finding 11 of issue 9).

    python3 benchmarks/validate_env_scaling.py [SHELL]     (default: /bin/sh)

Before the fix, 900 redefinitions took 28 s (cubic). Measured after it, dash,
2 shared cores: redefinitions 900 lines 0.06 s, 1800 0.11 s, 3600 0.21 s,
7200 0.43 s, 14400 0.78 s; distinct keys 900 0.07 s ... 14400 0.92 s.
tests/unit/test_validate_env.py checks the ratio, not these numbers.
With the rules of every Community Edition setting and KEY_FILE (issues 12/14),
measured against the script before them, alternating, best of 9, on the same
loaded machine (load 10 on 2 cores, so only the ratio means something):
redefinitions 3600 lines 0.189 -> 0.165 s, 14400 0.880 -> 0.897 s; distinct
keys 3600 0.421 -> 0.295 s, 14400 1.663 -> 0.959 s: no slower (--environ also
lost a printenv fork per known key: 20 runs 0.97 s -> 0.58 s).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "common" / "helpers" / "validate-env.sh"
GOOD = """DB_HOST=db.internal
DB_PORT=5432
DB_USERNAME=orangescrum
DB_PASSWORD='Kx7#mQ2!vR9pLw4z'
DB_NAME=orangescrum
SECURITY_SALT=3f1c9a0b7e2d4c6f8a1b3d5e7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f5a
FULL_BASE_URL=https://tasks.acme.test
"""
KINDS = {
    "redefinitions": lambda n: "".join(f"DB_PORT={5000 + i % 100}\nFOO_{i % 7}=x{i}\n" for i in range(n // 2)),
    "distinct keys": lambda n: "".join(f"KEY_{i}=value-{i}\n" for i in range(n)),
}


def main() -> None:
    shell = sys.argv[1] if len(sys.argv) > 1 else "/bin/sh"
    with tempfile.TemporaryDirectory() as tmp:
        for kind, body in KINDS.items():
            for n in (900, 1800, 3600, 7200, 14400):
                path = Path(tmp) / "bench.env"
                path.write_text(GOOD + body(n))
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    subprocess.run([shell, str(SCRIPT), "-q", str(path)], capture_output=True, check=True)
                    best = min(best, time.perf_counter() - start)
                print(f"{kind:14} {n:6} lines  {best:6.3f} s")


if __name__ == "__main__":
    main()
