#!/bin/sh
# Entry point of the test Redis image: `redis-server ARGS...` runs in the
# foreground on every address with protected mode off (the container network
# is the boundary, as with the official image); later ARGS override these.
set -eu
if [ "${1:-redis-server}" = redis-server ]; then
	[ "$#" -eq 0 ] || shift
	exec redis-server --bind '* -::*' --protected-mode no --dir /data --daemonize no "$@"
fi
exec "$@"
