#!/bin/sh
# Entry point of the OrangeScrum runtime image.
#   server (default)   web server (FrankenPHP php-server) on :$PORT
#   queue-worker       queue worker; exits after QUEUE_WORKER_MAX_RUNTIME seconds
#                      (Compose restarts it, which bounds PHP's memory growth)
#   recurring          the recurring task, once (schedule it from the host)
#   migrate [ARGS...]  the database migration, once, before a new version serves
#                      (Compose's one-shot service `migrate`): the build setting
#                      app.migrate_command, which the image exports as
#                      ORANGESCRUM_MIGRATE_COMMAND (ARGS replace it); the exit
#                      status is the migration's, 0 when there is none
#   cake ARGS...       a one-off console command, e.g. `cake migrations migrate`
#   validate           only validate the environment and print the report
#   healthcheck        GET http://127.0.0.1:$PORT/healthz (the image's HEALTHCHECK)
#
# Every command that runs the application first validates the environment the
# container was given (the same validate-env.sh the native install uses, in
# --environ mode: it reads the process environment, never a file) and refuses
# to start, with exit status 1, when it is invalid. The report names keys and
# rules, never values. Then the binary is started with `exec`, so it becomes
# PID 1 and the SIGTERM of `docker stop` reaches it directly.
#
# Secrets as files (Docker and Swarm secrets, Kubernetes secret volumes): for
# every secret setting (validate-env.sh --secret-keys), KEY_FILE=/path stands
# for KEY. Once the settings are valid, this script exports KEY with the file's
# content (one trailing newline stripped) and unsets KEY_FILE before it starts
# the binary; the value is never on a command line.
set -eu

# The binary and the validator sit next to this script (/opt/orangescrum).
case $0 in
  */*) here=${0%/*} ;;
  *) here=. ;;
esac
BIN=$here/bin/orangescrum
VALIDATE=$here/helpers/validate-env.sh
# Puts the state paths in place (STATE_DIR: the state volume), then execs.
STATE=$here/helpers/app-state.sh
PORT=${PORT:-8080}
WEBROOT=${WEBROOT:-webroot}

usage() {
  echo "usage: entrypoint.sh [server|queue-worker|recurring|migrate [ARGS...]|cake ARGS...|validate|healthcheck]"
}

die() {
  echo "entrypoint: $*" >&2
  exit 1
}

# KEY_FILE=/path -> KEY=<content of /path>, for each secret setting. Runs after
# the validator, which has checked the files (readable, one line, not both
# KEY and KEY_FILE) and their content. The shell's own `read` takes the line
# (no program gets the value, none is needed in the image), so one trailing
# newline is dropped, as the validator does; the value goes into the
# environment only.
load_secret_files() {
  case $(export -p) in
    *_FILE=*) ;;
    *) return 0 ;; # the usual case: no fork per secret setting
  esac
  for secret_key in $("$VALIDATE" --secret-keys); do
    secret_path=$(printenv "${secret_key}_FILE") || continue
    if [ -n "$secret_path" ]; then
      [ -f "$secret_path" ] && [ -r "$secret_path" ] || die "${secret_key}_FILE: cannot read the file it names"
      secret_value=
      IFS= read -r secret_value <"$secret_path" || : # 1 at a last line without newline: the value is read
      export "$secret_key=$secret_value"
    fi
    unset "${secret_key}_FILE"
  done
  unset secret_key secret_path secret_value
}

# Whether directory $1 takes a new entry: a real write, because busybox's
# `test -w` (the image's shell) reads the mode bits only and misses a
# read-only mount.
writable() {
  probe=$(mktemp -d "$1/.entrypoint-probe.XXXXXX" 2>/dev/null) || return 1
  rmdir "$probe"
}

# Checks before the application starts; each failure says what to change.
preflight() {
  # The report goes to stderr with the refusal, so `docker logs` keeps them in order.
  if ! "$VALIDATE" --environ --quiet >&2; then
    die "refusing to start: fix the settings above in your .env, then \`docker compose up -d\`"
  fi
  load_secret_files
  tmp=${TMPDIR:-/tmp}
  if [ ! -d "$tmp" ] || ! writable "$tmp"; then
    die "TMPDIR $tmp is not a writable directory: the binary extracts the application there; with a read-only root file system mount a tmpfs on it (compose: tmpfs; docker run: --tmpfs $tmp:exec,uid=$(id -u),gid=$(id -g))"
  fi
  if [ -n "${SSL_CERT_FILE:-}" ] && [ ! -r "$SSL_CERT_FILE" ]; then
    echo "entrypoint: warning: SSL_CERT_FILE names a file that is not readable in the container; TLS to S3 and SMTP will fail (remove SSL_CERT_FILE from .env to use the image's bundle)" >&2
  fi
}

# PHP for the health check: double quotes only (this is a single-quoted shell word).
# shellcheck disable=SC2016 # $ is PHP's, not the shell's
HEALTHZ='
$port = getenv("PORT") ?: "8080";
$context = stream_context_create(["http" => ["timeout" => 4, "ignore_errors" => true]]);
$body = @file_get_contents("http://127.0.0.1:" . $port . "/healthz", false, $context);
$headers = function_exists("http_get_last_response_headers") ? http_get_last_response_headers() : ($http_response_header ?? []);
$status = preg_match("#^HTTP/\S+ (\d{3})#", $headers[0] ?? "", $m) ? (int) $m[1] : 0;
echo "healthz: ", $status ?: "no answer", PHP_EOL;
exit($status === 200 ? 0 : 1);
'

cmd=${1:-server}
[ "$#" -eq 0 ] || shift
case $cmd in
  server)
    preflight
    # server-env.sh: the listen address and trusted proxies the embedded
    # Caddyfile reads (the flags count only for a binary without one).
    exec "$here/helpers/server-env.sh" "$STATE" server "$BIN" php-server --listen ":$PORT" --root "$WEBROOT" ;;
  queue-worker)
    preflight
    exec "$STATE" queue-worker "$BIN" php-cli bin/cake.php queue worker --max-runtime "${QUEUE_WORKER_MAX_RUNTIME:-3600}" ;;
  recurring)
    preflight
    exec "$STATE" recurring "$BIN" php-cli bin/cake.php recurring_task ;;
  migrate)
    preflight
    if [ "$#" -eq 0 ]; then
      # Words of app.migrate_command: checked at build time (plain words, no
      # quotes or glob characters), so splitting them is safe; no globbing.
      set -f
      # shellcheck disable=SC2086 # split on purpose
      set -- ${ORANGESCRUM_MIGRATE_COMMAND:-}
      set +f
    fi
    if [ "$#" -eq 0 ]; then
      echo "entrypoint: migrate: no migration command (the build setting app.migrate_command is empty): nothing to do" >&2
      exit 0
    fi
    echo "entrypoint: migrate: php-cli $*" >&2
    exec "$STATE" migrate "$BIN" php-cli "$@" ;;
  cake)
    preflight
    exec "$STATE" cake "$BIN" php-cli bin/cake.php "$@" ;;
  validate)
    exec "$VALIDATE" --environ ;;
  healthcheck)
    # The server's extraction directory (app-state.sh): no second copy of the app.
    TMPDIR=${TMPDIR:-/tmp}/server
    export TMPDIR
    mkdir -p "$TMPDIR"
    exec "$BIN" php-cli -r "$HEALTHZ" ;;
  -h | --help | help)
    usage
    exit 0 ;;
  *)
    echo "entrypoint: unknown command '$cmd'" >&2
    usage >&2
    exit 2 ;;
esac
