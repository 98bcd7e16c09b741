#!/bin/sh
# build-static.sh of the FrankenPHP STAND-IN builder.  NOT a real FrankenPHP build.
#
# Honours the contract of dunglas/frankenphp:static-builder-gnu's build-static.sh:
#   cd /go/src/app && EMBED=dist/app/ ./build-static.sh
#   -> dist/frankenphp-linux-$(uname -m)
# Without EMBED it builds a binary without an embedded app and, like the real
# one, leaves the "compiled PHP" in dist/ (here dist/standin-php/: Debian's php
# CLI, its shared libraries, the dynamic loader, the extensions and a php.ini),
# so a base image layer caches it and an embed run only adds the app.
#
# The produced executable is frankenphp-stub.sh followed by a tar payload; it is
# byte-identical for identical inputs.
#
# Knobs: EMBED, PHP_VERSION (only Debian's PHP is available: a warning when it
# differs), PHP_EXTENSIONS (validated against `php -m`), PHP_EXTENSION_LIBS,
# FRANKENPHP_VERSION, GITHUB_TOKEN, MIMALLOC, DEBUG_SYMBOLS (accepted, no effect),
# COMPRESS (gzip the payload instead of UPX).
set -eu

me=build-static.sh
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
cd "$here"

arch=$(uname -m)
dist=dist
runtime=$dist/standin-php
out=$dist/frankenphp-linux-$arch
stub=${FRANKENPHP_STANDIN_STUB:-$here/frankenphp-stub.sh}
frankenphp_version=${FRANKENPHP_VERSION:-1.12.7}
frankenphp_version=${frankenphp_version#v}

fail() {
    printf '%s: %s\n' "$me" "$*" >&2
    exit 1
}

step() {
    printf '==> %s\n' "$*"
}

is_true() {
    case ${1:-} in
        1 | [Yy] | [Yy][Ee][Ss] | [Tt][Rr][Uu][Ee] | [Oo][Nn]) return 0 ;;
        *) return 1 ;;
    esac
}

case $frankenphp_version in
    '' | *[!0-9A-Za-z.+~-]*) fail "FRANKENPHP_VERSION=$FRANKENPHP_VERSION is not a version" ;;
esac
command -v php >/dev/null 2>&1 || fail "php is not installed in this image: this is not the stand-in builder"
[ -f "$stub" ] || fail "the stub $stub is missing"

php_bin=$(readlink -f "$(command -v php)")
php_version=$(php -n -r 'echo PHP_VERSION;')
php_minor=$(php -n -r 'echo PHP_MAJOR_VERSION, ".", PHP_MINOR_VERSION;')

step "FrankenPHP stand-in builder: FrankenPHP v$frankenphp_version, Debian PHP $php_version CLI ($arch)"
echo "    This is a stand-in: php-server runs Debian's Caddy and PHP-FPM, not FrankenPHP."
if [ -n "${PHP_VERSION:-}" ]; then
    case $PHP_VERSION in
        "$php_minor" | "$php_minor".*) ;;
        *) echo "    WARNING: PHP_VERSION=$PHP_VERSION requested; this stand-in only has PHP $php_version, using that" >&2 ;;
    esac
fi
if [ -n "${GITHUB_TOKEN:-}" ]; then
    echo "    GITHUB_TOKEN is set (the stand-in downloads nothing)"
else
    echo "    GITHUB_TOKEN is not set"
fi
[ -z "${PHP_EXTENSION_LIBS:-}" ] || echo "    PHP_EXTENSION_LIBS=$PHP_EXTENSION_LIBS (libraries come from Debian: ignored)"
is_true "${MIMALLOC:-}" && echo "    MIMALLOC requested: ignored by the stand-in (glibc malloc)"
is_true "${DEBUG_SYMBOLS:-}" && echo "    DEBUG_SYMBOLS requested: ignored by the stand-in"
compression=none
if is_true "${COMPRESS:-}"; then
    compression=gzip
    echo "    COMPRESS: the payload is gzip-compressed (the stand-in has no UPX)"
fi

# -- validate PHP_EXTENSIONS against what the bundled PHP has ---------------
ext_ini_dir=/etc/php/$php_minor/cli/conf.d
available=$(php -m | tr '[:upper:]' '[:lower:]' | sed -e 's/^zend opcache$/opcache/' -e '/^\[/d' -e '/^$/d' | sort -u)
if [ -n "${PHP_EXTENSIONS:-}" ]; then
    requested=$(printf '%s' "$PHP_EXTENSIONS" | tr '[:upper:]' '[:lower:]' | tr -d ' \t' | tr ',' '\n' | sed '/^$/d' | sort -u)
    set -f
    for ext in $requested; do
        printf '%s\n' "$available" | grep -Fqx -- "$ext" || {
            printf "%s: PHP extension '%s' is not available in this (stand-in) builder\n" "$me" "$ext" >&2
            printf '%s: available: %s\n' "$me" "$(printf '%s' "$available" | tr '\n' ',' | sed 's/,$//')" >&2
            exit 1
        }
    done
    set +f
    echo "    PHP_EXTENSIONS: $(printf '%s' "$requested" | tr '\n' ',' | sed 's/,$//')"
else
    echo "    PHP_EXTENSIONS not set: the binary gets every extension this builder has"
fi

embed=
if [ -n "${EMBED:-}" ]; then
    embed=${EMBED%/}
    [ -d "$embed" ] || fail "EMBED=$EMBED is not a directory (relative to $here)"
    [ -n "$(ls -A "$embed")" ] || fail "EMBED=$EMBED is empty"
fi

# -- the "compiled PHP": built once, cached in dist/ (the base image layer) --
fpm_bin=$(command -v php-fpm"$php_minor" || command -v php-fpm || true)
[ -n "$fpm_bin" ] || fail "php-fpm is not installed in this image (Debian package php$php_minor-fpm)"
caddy_bin=$(command -v caddy || true)
[ -n "$caddy_bin" ] || fail "caddy is not installed in this image (Debian package caddy)"
stamp="php $php_version $php_bin $arch stand-in 2 $(readlink -f "$fpm_bin") $("$caddy_bin" version)"
if [ -f "$runtime/.standin-complete" ] && [ "$(cat "$runtime/.standin-complete")" = "$stamp" ]; then
    step "Reusing compiled PHP $php_version from $runtime/ (cached)"
else
    step "Compiling PHP $php_version (stand-in: bundling Debian's PHP CLI, its libraries and extensions)"
    mkdir -p "$dist"
    rm -rf "$runtime" "$runtime.tmp"
    tmp=$runtime.tmp
    mkdir -p "$tmp/bin" "$tmp/lib" "$tmp/ext" "$tmp/etc"
    cp "$php_bin" "$tmp/bin/php"
    # php-server runs Debian's Caddy in front of PHP-FPM (see README.md).
    cp "$(readlink -f "$fpm_bin")" "$tmp/bin/php-fpm"
    cp "$(readlink -f "$caddy_bin")" "$tmp/bin/caddy"

    # Extensions Debian enables for the CLI, in its load order (NN-name.ini).
    ext_dir=$(php -n -r 'echo PHP_EXTENSION_DIR;')
    {
        echo "; php.ini of the FrankenPHP stand-in (generated by build-static.sh)"
        echo "; extension_dir is given on the command line (-d) by the stub."
        echo "date.timezone = UTC"
        echo "variables_order = \"EGPCS\""
        echo "expose_php = Off"
        for ini in "$ext_ini_dir"/*.ini; do
            [ -e "$ini" ] || continue
            sed -n -e 's/^[[:space:]]*\(zend_extension\|extension\)[[:space:]]*=[[:space:]]*"\{0,1\}\([^"; ]*\).*/\1 \2/p' "$ini"
        done | while read -r kind name; do
            name=${name##*/}
            name=${name%.so}
            [ -f "$ext_dir/$name.so" ] || fail "extension $name listed in $ext_ini_dir is missing from $ext_dir"
            cp "$ext_dir/$name.so" "$tmp/ext/$name.so"
            echo "$kind=$name"
        done
    } >"$tmp/etc/php.ini"
    names=
    for so in "$tmp"/ext/*.so; do
        so=${so##*/}
        names="$names ${so%.so}"
    done
    echo "    shared extensions:$names"

    # Every library the binary and the extensions link against, and the loader.
    loader=
    for elf in "$tmp/bin/php" "$tmp/bin/php-fpm" "$tmp/bin/caddy" "$tmp"/ext/*.so; do
        ldd "$elf"
    done | sed 's/ *(0x[0-9a-f]*)$//' | sort -u >"$tmp/ldd.txt"
    while read -r name arrow path; do
        case $name in
            */ld-*)
                loader=${name##*/}
                cp -L "$name" "$tmp/lib/$loader"
                continue
                ;;
        esac
        [ "$arrow" = "=>" ] || continue
        case $path in
            /*) cp -L "$path" "$tmp/lib/$name" ;;
            *) fail "library $name (needed by php or an extension) is not found: $path" ;;
        esac
    done <"$tmp/ldd.txt"
    rm -f "$tmp/ldd.txt"
    [ -n "$loader" ] || fail "could not find the dynamic loader in ldd's output"
    echo "$loader" >"$tmp/loader"
    echo "    $(find "$tmp/lib" -type f | wc -l) shared libraries, loader $loader"

    # Smoke test: the bundle runs on its own libraries.
    "$tmp/lib/$loader" --library-path "$tmp/lib" "$tmp/bin/php" -n -c "$tmp/etc/php.ini" \
        -d "extension_dir=$tmp/ext" -r 'exit(extension_loaded("standard") ? 0 : 1);' \
        || fail "the bundled PHP does not start"
    "$tmp/lib/$loader" --library-path "$tmp/lib" "$tmp/bin/php-fpm" -n -v >/dev/null \
        || fail "the bundled PHP-FPM does not start"
    echo "    $("$tmp/lib/$loader" --library-path "$tmp/lib" "$tmp/bin/caddy" version) (Caddy), PHP-FPM $php_version" \
        || fail "the bundled Caddy does not start"
    echo "$stamp" >"$tmp/.standin-complete"
    mv "$tmp" "$runtime"
fi
loader=$(cat "$runtime/loader")

# Check the requested extensions load in the bundle as configured.
if [ -n "${PHP_EXTENSIONS:-}" ]; then
    set -f
    for ext in $requested; do
        "$runtime/lib/$loader" --library-path "$runtime/lib" "$runtime/bin/php" -n -c "$runtime/etc/php.ini" \
            -d "extension_dir=$runtime/ext" -r "exit(extension_loaded('$ext') || ('$ext' === 'opcache' && extension_loaded('Zend OPcache')) ? 0 : 1);" \
            || fail "PHP extension '$ext' does not load in the bundled PHP"
    done
    set +f
fi

# -- the payload: the bundle, plus the app under app/ ------------------------
stage=$dist/.standin-stage
rm -rf "$stage"
mkdir -p "$stage"
for part in bin lib ext etc; do
    cp -R "$runtime/$part" "$stage/$part"
done
has_app=0
if [ -n "$embed" ]; then
    step "Embedding app from $EMBED"
    cp -R "$embed" "$stage/app"
    has_app=1
    echo "    $(find "$stage/app" -type f | wc -l) files"
else
    step "No EMBED: building a binary without an embedded app"
fi

step "Linking $out"
payload=$dist/.standin-payload.tar
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    --mode='u+rwX,go+rX,go-w' -C "$stage" -cf "$payload" .
rm -rf "$stage"
if [ "$compression" = gzip ]; then
    gzip -n -9 -c "$payload" >"$payload.gz"
    mv "$payload.gz" "$payload"
fi
sha=$(sha256sum "$payload")
sha=${sha%% *}
payload_line=$(($(wc -l <"$stub") + 1))
sed -e "s|@@FRANKENPHP_VERSION@@|$frankenphp_version|" \
    -e "s|@@PHP_VERSION@@|$php_version|" \
    -e "s|@@PAYLOAD_SHA256@@|$sha|" \
    -e "s|@@PAYLOAD_LINE@@|$payload_line|" \
    -e "s|@@PAYLOAD_COMPRESSION@@|$compression|" \
    -e "s|@@LOADER@@|$loader|" \
    -e "s|@@HAS_APP@@|$has_app|" \
    "$stub" >"$out.tmp"
[ "$(($(wc -l <"$out.tmp") + 1))" = "$payload_line" ] || fail "the stub changed length while filling it in"
cat "$payload" >>"$out.tmp"
rm -f "$payload"
chmod 0755 "$out.tmp"
mv "$out.tmp" "$out"
size=$(wc -c <"$out")
step "Built $out ($((size / 1048576)) MiB, app embedded: $([ "$has_app" = 1 ] && echo yes || echo no), sha256 of payload $sha)"
