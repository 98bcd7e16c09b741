#!/bin/sh
# FrankenPHP STAND-IN executable (head).  NOT a real FrankenPHP build.
#
# build-static.sh of the stand-in builder fills in the @@...@@ values below and
# appends a tar payload after the marker line at the end of this file.  The
# payload is a self-contained PHP: Debian's php CLI and PHP-FPM binaries,
# Debian's Caddy, every shared library they need (and the dynamic loader), the
# extensions and a php.ini, plus the embedded app under app/.  At start-up the payload is extracted once, atomically,
# to ${TMPDIR:-/tmp}/frankenphp_<checksum>, like the real binary does with its
# embedded app.  Needs only /bin/sh, coreutils and tar (gzip for COMPRESS=1).
#
# Supported subset of the FrankenPHP CLI: version, php-server (with the app's
# Caddyfile: Caddy in front of PHP-FPM; without one: PHP's built-in web
# server; no worker mode, no HTTPS), php-cli.
set -eu

FRANKENPHP_VERSION='@@FRANKENPHP_VERSION@@'
PHP_VERSION='@@PHP_VERSION@@'
PAYLOAD_SHA256='@@PAYLOAD_SHA256@@'
PAYLOAD_LINE='@@PAYLOAD_LINE@@'
PAYLOAD_COMPRESSION='@@PAYLOAD_COMPRESSION@@'
LOADER='@@LOADER@@'
HAS_APP='@@HAS_APP@@'

die() {
    printf 'frankenphp: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
FrankenPHP v$FRANKENPHP_VERSION stand-in (Debian PHP CLI $PHP_VERSION, not a real FrankenPHP build)

Usage:
  frankenphp version
  frankenphp php-server [--listen ADDR] [--root DIR]
        serve the embedded app: with the app's Caddyfile (which replaces the
        flags) by Caddy and PHP-FPM, else by PHP's built-in web server
        (ADDR like :8080 or 127.0.0.1:8080, default :80; DIR default public)
  frankenphp php-cli SCRIPT [ARGS...]
  frankenphp php-cli -r CODE [ARGS...]

This stand-in supports only the commands above: no worker mode, no HTTPS,
no Caddy commands (run, start, reload, ...).
EOF
}

self=$0
case $self in
    /*) ;;
    */*) self=$PWD/$self ;;
    *) self=$(command -v -- "$self") || die "cannot locate my own executable ($0)" ;;
esac

payload() {
    tail -n "+$PAYLOAD_LINE" "$self"
}

untar_payload() {
    if [ "$PAYLOAD_COMPRESSION" = gzip ]; then
        payload | gzip -dc | tar -xf - -C "$1"
    else
        payload | tar -xf - -C "$1"
    fi
}

# Extract the payload once; the directory appears complete or not at all.
extract() {
    base=${TMPDIR:-/tmp}
    [ -n "$base" ] || base=/tmp
    base=${base%/}
    dir=$base/frankenphp_$PAYLOAD_SHA256
    if is_whole "$dir"; then
        return 0
    fi
    # a real write: busybox's `test -w` reads the mode bits only (a read-only mount passes)
    if ! probe=$(mktemp -d "$base/.frankenphp-probe.XXXXXX" 2>/dev/null); then
        die "TMPDIR '$base' is not a writable directory: the embedded app is extracted there"
    fi
    rmdir "$probe"
    if command -v sha256sum >/dev/null 2>&1; then
        sum=$(payload | sha256sum) || die "cannot read my payload from $self"
        [ "${sum%% *}" = "$PAYLOAD_SHA256" ] \
            || die "payload checksum mismatch: $self is truncated or corrupted"
    fi
    tmp=$(mktemp -d "$base/.frankenphp_$PAYLOAD_SHA256.XXXXXX") \
        || die "cannot create a directory in TMPDIR '$base'"
    if ! untar_payload "$tmp"; then
        rm -rf "$tmp"
        die "cannot extract my payload to '$base' (is it full?)"
    fi
    # Like FrankenPHP's untar (embed.go), which skips the symlinks of the
    # embedded app: links cannot be baked into the app, only made at run time.
    if [ -d "$tmp/app" ]; then
        find "$tmp/app" -type l -exec rm -f {} +
    fi
    : >"$tmp/.complete"
    # A process started at the same time (web server and worker) may have
    # finished first: keep its copy, never delete a complete one in use.
    if is_whole "$dir"; then
        rm -rf "$tmp"
        return 0
    fi
    if [ -d "$dir" ]; then
        # Left over and incomplete (a tmp cleaner ate part of it): replace it.
        rm -rf "$dir"
    fi
    if ! mv "$tmp" "$dir" 2>/dev/null; then
        rm -rf "$tmp"
    fi
    # Another process won the race: mv put our copy inside theirs.
    rm -rf "${dir:?}/${tmp##*/}" "$tmp"
    is_whole "$dir" || die "extraction to '$dir' failed"
}

# An extraction directory that is whole: written to the end, nothing eaten since.
is_whole() {
    [ -f "$1/.complete" ] && [ -f "$1/bin/php" ] && [ -f "$1/lib/$LOADER" ]
}

# Wait until the child $1 is gone; its exit status is left in $status.  A
# trapped signal interrupts wait (status > 128): wait again while the child
# runs, and once it is gone ask the shell for the status it recorded (127:
# none, the child itself died of that signal).
wait_child() {
    while :; do
        status=0
        wait "$1" || status=$?
        [ "$status" -gt 128 ] || return 0
        kill -0 "$1" 2>/dev/null && continue
        again=0
        wait "$1" 2>/dev/null || again=$?
        [ "$again" = 127 ] || status=$again
        return 0
    done
}

# Run the bundled php with the bundled loader and libraries.  Always exec, so
# signals reach PHP directly, except as PID 1 (a container's init), where the
# kernel would drop the SIGTERM PHP has no handler for: there this shell stays
# as a minimal init that forwards the signals and returns PHP's exit status.
run_php() {
    ld=$dir/lib/$LOADER
    [ -x "$ld" ] \
        || die "cannot execute files under '$base' (mounted noexec?): give TMPDIR an exec-able directory"
    set -- "$ld" --library-path "$dir/lib" "$dir/bin/php" \
        -n -c "$dir/etc/php.ini" -d "extension_dir=$dir/ext" \
        -d "opcache.lockfile_path=$base" -d "sys_temp_dir=$base" "$@"
    if [ "$$" != 1 ]; then
        exec "$@"
    fi
    exec 3<&0
    "$@" 0<&3 3<&- &
    child=$!
    exec 3<&-
    for sig in TERM INT HUP QUIT USR1 USR2; do
        # shellcheck disable=SC2064 # expand $sig now
        trap "kill -$sig $child 2>/dev/null" "$sig"
    done
    wait_child "$child"
    exit "$status"
}

# The embedded Caddyfile, for Debian's Caddy 2.6 in front of PHP-FPM (the
# mapping, documented in README.md): FrankenPHP's own global option
# (frankenphp) and the ones Caddy 2.6 lacks (persist_config,
# servers/trusted_proxies: php_fastcgi gets the same ranges) are dropped, brotli
# (a FrankenPHP module) is left out of encode, and a bare php_server line
# becomes php_fastcgi to the bundled PHP-FPM plus file_server.
map_caddyfile() {
    # shellcheck disable=SC2016 # {$CADDY_TRUSTED_PROXIES} is Caddy's, not the shell's
    trusted='{$CADDY_TRUSTED_PROXIES:255.255.255.255/32}'
    sed -e '/^[[:space:]]*frankenphp[[:space:]]*$/d' \
        -e '/^[[:space:]]*persist_config[[:space:]]/d' \
        -e '/^[[:space:]]*trusted_proxies[[:space:]]/d' \
        -e '/^[[:space:]]*encode[[:space:]]/s/[[:space:]]br\([[:space:]]\)/\1/' \
        -e '/^[[:space:]]*encode[[:space:]]/s/[[:space:]]br$//' \
        -e "s|^\([[:space:]]*\)php_server[[:space:]]*\$|\1php_fastcgi unix/$1 {\\
\1\1trusted_proxies $trusted\\
\1}\\
\1file_server|" "$2"
}

# php-server with the embedded Caddyfile: Caddy and PHP-FPM (on a unix socket
# in a private run directory under TMPDIR) as children of this shell.
# SIGTERM/SIGINT go to Caddy, which drains the in-flight requests
# (grace_period); then PHP-FPM is stopped and the shell exits with Caddy's status.
serve_caddyfile() {
    ld=$dir/lib/$LOADER
    [ -x "$ld" ] \
        || die "cannot execute files under '$base' (mounted noexec?): give TMPDIR an exec-able directory"
    run=$(mktemp -d "$base/.frankenphp-run.XXXXXX") || die "cannot create a run directory in TMPDIR '$base'"
    sock=$run/php-fpm.sock
    map_caddyfile "$sock" "$dir/app/Caddyfile" >"$run/Caddyfile"
    cat >"$run/php-fpm.conf" <<EOF
[global]
error_log = /dev/null
log_level = warning
daemonize = no
[www]
listen = $sock
listen.mode = 0600
pm = dynamic
pm.max_children = ${FPM_MAX_CHILDREN:-8}
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
clear_env = no
catch_workers_output = yes
decorate_workers_output = no
EOF
    # error_log is opened but unused: with -F -O PHP-FPM logs to its stderr as
    # it is (/proc/self/fd/2 fails with ENXIO when that is the journal's socket,
    # the default /var/log/php-fpm.log on a read-only root).
    # The app's php.ini is read after the operator's PHP_INI_SCAN_DIR, as
    # FrankenPHP appends the app directory; empty entries (PHP's compiled-in
    # directory: the host's) are left out.
    scan=
    old_ifs=$IFS
    IFS=:
    for d in ${PHP_INI_SCAN_DIR:-}; do
        [ -n "$d" ] && scan=$scan$d:
    done
    IFS=$old_ifs
    [ -f "$dir/app/php.ini" ] && scan=$scan$dir/app
    PHP_INI_SCAN_DIR=${scan%:}
    # Caddy keeps nothing: its autosave and data go to the run directory.
    XDG_CONFIG_HOME=$run
    XDG_DATA_HOME=$run
    export PHP_INI_SCAN_DIR XDG_CONFIG_HOME XDG_DATA_HOME
    "$ld" --library-path "$dir/lib" "$dir/bin/php-fpm" -c "$dir/etc/php.ini" -d "extension_dir=$dir/ext" \
        -d "opcache.lockfile_path=$base" -d "sys_temp_dir=$base" -y "$run/php-fpm.conf" -F -O -R </dev/null &
    fpm=$!
    "$ld" --library-path "$dir/lib" "$dir/bin/caddy" run --config "$run/Caddyfile" --adapter caddyfile </dev/null &
    caddy=$!
    for sig in TERM INT HUP QUIT; do
        # shellcheck disable=SC2064 # expand $caddy now
        trap "kill -TERM $caddy 2>/dev/null" "$sig"
    done
    wait_child "$caddy"
    kill -QUIT "$fpm" 2>/dev/null || true
    wait "$fpm" 2>/dev/null || true
    rm -rf "$run"
    exit "$status"
}

cmd_php_server() {
    listen=:80
    root=public
    while [ $# -gt 0 ]; do
        case $1 in
            -l | --listen)
                [ $# -ge 2 ] || die "php-server: $1 needs a value"
                listen=$2
                shift
                ;;
            --listen=* | -l=*) listen=${1#*=} ;;
            -r | --root)
                [ $# -ge 2 ] || die "php-server: $1 needs a value"
                root=$2
                shift
                ;;
            --root=* | -r=*) root=${1#*=} ;;
            -a | --access-log | -v | --debug | --no-compress) ;;
            *)
                printf 'frankenphp: php-server option %s is not supported by this stand-in\n\n' "$1" >&2
                usage >&2
                exit 2
                ;;
        esac
        shift
    done
    case $listen in
        :*) address=0.0.0.0$listen ;;
        *:*) address=$listen ;;
        *[!0-9]* | '') address=$listen:80 ;;
        *) address=0.0.0.0:$listen ;;
    esac
    extract
    case $root in
        /*) docroot=$root ;;
        *)
            if [ "$HAS_APP" = 1 ]; then
                docroot=$dir/app/$root
            else
                docroot=$PWD/$root
            fi
            ;;
    esac
    if [ "$HAS_APP" = 1 ] && [ -f "$dir/app/Caddyfile" ]; then
        # Like FrankenPHP: the embedded Caddyfile replaces the flags.
        cd "$dir/app"
        serve_caddyfile
    fi
    [ -d "$docroot" ] || die "php-server: root directory '$root' does not exist ($docroot)"
    if [ "$HAS_APP" = 1 ]; then
        cd "$dir/app"
    fi
    if [ -f "$docroot/index.php" ]; then
        run_php -S "$address" -t "$docroot" "$docroot/index.php"
    else
        run_php -S "$address" -t "$docroot"
    fi
}

cmd_php_cli() {
    [ $# -ge 1 ] || {
        usage >&2
        exit 2
    }
    extract
    if [ "$HAS_APP" = 1 ]; then
        cd "$dir/app"
    fi
    if [ "$1" = -r ]; then
        [ $# -ge 2 ] || die "php-cli: -r needs PHP code"
        code=$2
        shift 2
        run_php -r "$code" -- "$@"
    fi
    script=$1
    shift
    run_php -f "$script" -- "$@"
}

command=${1:-}
[ $# -eq 0 ] || shift
case $command in
    version | --version)
        # The real binary extracts its app in its Go init(), for every command.
        if [ "$HAS_APP" = 1 ]; then
            extract
        fi
        printf 'FrankenPHP v%s PHP %s (stand-in: Debian PHP CLI, not a real FrankenPHP build)\n' \
            "$FRANKENPHP_VERSION" "$PHP_VERSION"
        exit 0
        ;;
    help | --help | -h)
        usage
        exit 0
        ;;
    php-server) cmd_php_server "$@" ;;
    php-cli) cmd_php_cli "$@" ;;
    '')
        usage >&2
        exit 2
        ;;
    *)
        printf "frankenphp: command '%s' is not supported by this stand-in\n\n" "$command" >&2
        usage >&2
        exit 2
        ;;
esac
# shellcheck disable=SC2317 # a safety net: every command above exits or execs
exit 1
# __FRANKENPHP_STANDIN_PAYLOAD__ (the tar payload starts on the next line)
