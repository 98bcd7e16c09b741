#!/bin/sh
# Run the test tiers: tests/unit (fast, Python only), tests/integration (docker,
# nfpm, dpkg, rpm), tests/system (compose stack, booted systemd).
#
#   ./scripts/test.sh            everything, what CI runs (.ci/run): the unit tier
#                                first, after a Python-only setup (scripts/setup-python.sh);
#                                it stops there when that fails; then the machine setup
#                                (scripts/setup.sh: apt packages, Docker) and the slow tiers
#   ./scripts/test.sh -m unit    the unit tier alone: no apt, no Docker (also for paths
#                                under tests/unit); any other arguments get the full setup
#                                and go to pytest as they are
set -eu
cd "$(dirname -- "$0")/.."
# the tools the tests run (nfpm, shellcheck, hadolint, actionlint, invoke) live in .venv/bin
PATH="$(pwd)/.venv/bin:$PATH"
export PATH

# True when the arguments select the unit tier only: `-m unit` (or -munit)
# and/or paths below tests/unit, and nothing else that names tests.
unit_only() {
  marker='' paths=0 other=0 takes_value=''
  for arg in "$@"; do
    if [ -n "$takes_value" ]; then
      [ "$takes_value" = marker ] && marker=$arg
      takes_value=
      continue
    fi
    case $arg in
      -m) takes_value=marker ;;
      -m*) marker=${arg#-m} ;;
      -k | -p | -o | -W | -c | --maxfail | --durations | --tb | --rootdir | --basetemp) takes_value=other ;;
      tests/unit | tests/unit/* | ./tests/unit | ./tests/unit/*) paths=$((paths + 1)) ;;
      -*) ;;
      *) other=1 ;;
    esac
  done
  [ "$other" -eq 0 ] && { [ "$marker" = unit ] || { [ -z "$marker" ] && [ "$paths" -gt 0 ]; }; }
}

# One tier: pytest's "no tests collected" (5) is no failure for a tier that is
# legitimately empty (e.g. none selected on this machine).
tier() {
  status=0
  .venv/bin/python -m pytest "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "==> no tests collected for: $*"
    return 0
  fi
  return "$status"
}

if [ $# -eq 0 ]; then
  ./scripts/setup-python.sh
  echo "==> unit tier"
  if ! tier -m unit; then
    echo "test.sh: the unit tier failed; the integration and system tiers did not run" >&2
    exit 1
  fi
  ./scripts/setup.sh
  echo "==> integration and system tiers"
  tier -m "integration or system"
elif unit_only "$@"; then
  ./scripts/setup-python.sh
  exec .venv/bin/python -m pytest "$@"
else
  ./scripts/setup.sh
  exec .venv/bin/python -m pytest "$@"
fi
