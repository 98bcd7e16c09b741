#!/usr/bin/env python3
"""Rewrite the config reference in README.md from the settings registry.

    python scripts/update-readme.py          # rewrite
    python scripts/update-readme.py --check  # exit 1 when README.md is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudbuilder.config import reference_table  # noqa: E402

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def updated(text: str) -> str:
    block = f"{START}\n{reference_table()}\n{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md's config reference is stale: run python scripts/update-readme.py")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
