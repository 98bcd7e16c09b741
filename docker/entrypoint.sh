#!/bin/sh
# Entry point of the OrangeScrum runtime image.
#   server (default)   web server (FrankenPHP php-server)
#   queue-worker       queue worker, exits after QUEUE_WORKER_MAX_RUNTIME seconds
#   recurring          the recurring task, once (schedule it from the host or a cron container)
#   cake ARGS...       a one-off console command, e.g. `cake migrations migrate`
#   validate           only validate the environment
# Every command first validates the environment it was given (the same
# validate-env.sh the native install uses) and refuses to start when it is
# invalid. The binary is started with `exec` so SIGTERM from `docker stop`
# reaches it and it shuts down gracefully.
set -eu

BIN=/opt/orangescrum/bin/orangescrum
VALIDATE=/opt/orangescrum/helpers/validate-env.sh
PORT=${PORT:-8080}
WEBROOT=${WEBROOT:-webroot}

usage() {
  echo "usage: entrypoint.sh [server|queue-worker|recurring|cake ARGS...|validate]" >&2
}

validate() {
  if ! "$VALIDATE" --environ --quiet; then
    echo "entrypoint: refusing to start: fix the settings above in your .env, then \`docker compose up -d\`" >&2
    exit 1
  fi
}

cmd=${1:-server}
[ "$#" -gt 0 ] && shift
case "$cmd" in
  server)
    validate
    exec "$BIN" php-server --listen ":$PORT" --root "$WEBROOT" ;;
  queue-worker)
    validate
    exec "$BIN" php-cli bin/cake.php queue worker --max-runtime "${QUEUE_WORKER_MAX_RUNTIME:-3600}" ;;
  recurring)
    validate
    exec "$BIN" php-cli bin/cake.php recurring_task ;;
  cake)
    validate
    exec "$BIN" php-cli bin/cake.php "$@" ;;
  validate)
    exec "$VALIDATE" --environ ;;
  -h|--help|help)
    usage; exit 0 ;;
  *)
    echo "entrypoint: unknown command '$cmd'" >&2
    usage; exit 2 ;;
esac
