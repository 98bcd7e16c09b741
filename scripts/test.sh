#!/bin/sh
# Set up the machine (scripts/setup.sh), then run every test tier:
# tests/unit, tests/integration (docker, nfpm, dpkg, rpm), tests/system
# (compose stack, booted systemd). Extra arguments go to pytest, e.g.
#   ./scripts/test.sh -m unit
set -eu
cd "$(dirname -- "$0")/.."
./scripts/setup.sh
# the tools the tests run (nfpm, shellcheck, hadolint, actionlint, invoke) live in .venv/bin
PATH="$(pwd)/.venv/bin:$PATH"
export PATH
exec .venv/bin/python -m pytest "$@"
