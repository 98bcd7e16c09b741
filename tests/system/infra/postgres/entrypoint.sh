#!/bin/sh
# Entry point of the test PostgreSQL image: on an empty $PGDATA, initdb with
# superuser $POSTGRES_USER (password $POSTGRES_PASSWORD, scram-sha-256 over
# TCP) and create $POSTGRES_DB; then exec postgres on all addresses. The
# password goes through a private file, never argv.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
if [ "${1:-postgres}" != postgres ]; then
	exec "$@"
fi
[ "$#" -eq 0 ] || shift
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "postgres: POSTGRES_PASSWORD is empty: set DB_PASSWORD in .env" >&2
		exit 1
	fi
	umask 077
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	printf '%s\n' "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	if [ "$db" != postgres ]; then
		pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses= -c unix_socket_directories=/tmp" start
		# psql interpolates :"db" (a quoted identifier) in its input, not in -c.
		printf 'CREATE DATABASE :"db";\n' |
			psql -X -q -v ON_ERROR_STOP=1 -v db="$db" -h /tmp -U "$user" -d postgres
		pg_ctl -D "$PGDATA" -w -s stop
	fi
	echo "postgres: initialised $PGDATA (user $user, database $db)"
fi
exec postgres -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
