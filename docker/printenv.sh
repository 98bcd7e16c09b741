#!/bin/sh
# printenv for the runtime image, installed as /bin/printenv: Debian's
# busybox-static has no printenv applet, and validate-env.sh --environ reads
# each setting with `printenv NAME` (never eval). Same behaviour as coreutils'
# printenv: each NAME's value on a line of its own, exit status 1 when one of
# them is not set; without a NAME, the whole environment. awk reads the values
# from its own environment (ENVIRON): they never reach an argument list.
set -eu
[ "$#" -gt 0 ] || exec env
exec awk 'BEGIN {
	status = 0
	for (i = 1; i < ARGC; i++) {
		if (ARGV[i] in ENVIRON) print ENVIRON[ARGV[i]]
		else status = 1
	}
	exit status
}' "$@"
