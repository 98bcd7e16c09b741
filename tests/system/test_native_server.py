"""The embedded Caddyfile and php.ini on a booted Debian 12: the .deb's orangescrum.service.

The package is the real one (the example app, the stand-in binary that
`invoke build` made, dist/native, nfpm), installed with apt in a guest booted by
``systemd-nspawn -b`` and started by its systemd with the unit's sandbox.  Every
check of tests/server_contract.py runs as an HTTP request from inside the
guest (curl; the guest has a network of its own), and the ones that need the
machine (stop PHP-FPM, an admin's caddy.d file and a restart, SIGTERM from
``systemctl stop``) do what an admin would.  One scenario, in order.
"""

from __future__ import annotations

import base64
import os
import shlex
import threading

import pytest
import server_contract as sc
from nspawn import BootedDebian, booted_rootfs_tarball
from test_packages import APT, ENV_FILE, GUEST_URL, VALID_ENV, make_cfg, prerequisites, standin_binary, wait_for  # noqa: F401

from cloudbuilder.packaging.build import build_packages
from cloudbuilder.pipeline import assemble_flavor

pytestmark = pytest.mark.system

OPERATOR_FILE = "/etc/orangescrum/caddy.d/operator.caddy"
_lock = threading.Lock()


class GuestClient:
    """``server_contract``'s client, as curl inside the guest."""

    def __init__(self, machine: BootedDebian, base: str = GUEST_URL) -> None:
        self.machine = machine
        self.base = base
        self._n = 0

    def _tmp(self) -> str:
        with _lock:
            self._n += 1
            return f"/var/tmp/contract-{self._n}"

    def request(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None, timeout: float = 30.0) -> sc.Reply:
        tmp = self._tmp()
        args = ["curl", "-sS", "--max-time", str(int(timeout)), "-X", method, "-D", f"{tmp}.h", "-o", f"{tmp}.b"]
        for name, value in (headers or {}).items():
            args += ["-H", f"{name}: {value}"]
        script = ""
        if body is not None:
            script = f"printf %s {shlex.quote(base64.b64encode(body).decode())} | base64 -d > {tmp}.in && "
            args += ["--data-binary", f"@{tmp}.in"]
        args.append(self.base + path)
        script += (" ".join(shlex.quote(a) for a in args)
                   + f" && cat {tmp}.h && echo @@body@@ && base64 -w0 {tmp}.b; rc=$?; rm -f {tmp}.*; exit $rc")
        out = self.machine.ok(script, timeout=timeout + 30)
        head, _, encoded = out.partition("@@body@@\n")
        block = [b for b in head.replace("\r", "").split("\n\n") if b.strip()][-1].splitlines()
        status = int(block[0].split()[1])
        fields = dict(line.split(":", 1) for line in block[1:] if ":" in line)
        return sc.Reply(status, {k.strip().lower(): v.strip() for k, v in fields.items()},
                        base64.b64decode(encoded.strip()))

    def status_of_headers_only(self, method: str, path: str, headers: dict[str, str]) -> int:
        # curl sends the given Content-Length instead of its own, and no body (@/dev/null)
        args = ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                "--data-binary", "@/dev/null"]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        args.append(self.base + path)
        return int(self.machine.ok(" ".join(shlex.quote(a) for a in args)).strip())


@pytest.fixture(scope="module")
def deb(standin_binary, tmp_path_factory):
    cfg = make_cfg(tmp_path_factory.mktemp("caddy-native") / "dist", standin_binary, "4.0.0", "nfpm")
    assemble_flavor(cfg, "native")
    (result,) = [r for r in build_packages(cfg) if r.fmt == "deb"] or [None]
    assert result is not None
    return result.path


@pytest.fixture(scope="module")
def machine(prerequisites, deb, tmp_path_factory):  # noqa: F811 - the imported fixture
    root = tmp_path_factory.mktemp("caddy-nspawn") / "rootfs"
    guest = BootedDebian(booted_rootfs_tarball(), root, f"oscb-caddy-{os.getpid()}")
    try:
        guest.boot()
        guest.put(deb, f"/var/tmp/{deb.name}")
        guest.ok(f"cd /var/tmp && {APT} install ./{deb.name} 2>&1")
        guest.write(ENV_FILE, VALID_ENV)
        guest.ok("systemctl restart orangescrum.service")
        wait_for(guest, f"curl -fsS {GUEST_URL}/ >/dev/null")
        yield guest
    finally:
        guest.close()


@pytest.fixture(scope="module")
def client(machine):
    return GuestClient(machine)


def journal(machine: BootedDebian) -> str:
    return machine.ok("journalctl -u orangescrum.service --no-pager -o cat")


def test_static_asset_is_cached_and_compressed(client):
    sc.check_static_asset(client, max_age=604800)


def test_security_headers_and_no_server_header(client):
    sc.check_security_headers(client)


def test_body_over_the_limit_gets_413(client):
    sc.check_body_limit(client, 64 * 1024 * 1024)


def test_access_log_is_json_in_the_journal(client, machine):
    sc.check_access_log(client, lambda: journal(machine))


def test_php_ini_settings_are_visible_from_php_and_its_dirs_exist(client, machine):
    data = sc.check_php_ini(client, {
        "memory_limit": "256M", "upload_max_filesize": "64M", "post_max_size": "64M", "max_execution_time": "60",
        "expose_php": "", "opcache.validate_timestamps": "0",
        "session.save_path": "/var/lib/orangescrum/php/sessions", "upload_tmp_dir": "/var/lib/orangescrum/php/uploads",
    })
    assert data["sapi"] == "fpm-fcgi"
    # server-env created them in the state directory, for the service user only
    assert machine.ok("stat -c '%U %a' /var/lib/orangescrum/php/sessions /var/lib/orangescrum/php/uploads"
                      ).split("\n")[:2] == ["orangescrum 700", "orangescrum 700"]


def test_healthz_answers_while_php_fpm_is_stopped(client, machine):
    main = machine.ok("systemctl show -p MainPID --value orangescrum.service").strip()
    stopped = machine.ok(f'for d in /proc/[0-9]*; do read -r pid _ _ ppid _ < "$d/stat" 2>/dev/null || continue; '
                         f'[ "$ppid" = {main} ] && grep -q php-fpm "$d/cmdline" && kill -TERM "$pid" '
                         f'&& echo "stopped $pid"; done; true')
    assert "stopped" in stopped
    wait_for(machine, f"test \"$(curl -s -o /dev/null -w '%{{http_code}}' {GUEST_URL}/)\" = 502")
    sc.check_php_down(client)
    machine.ok("systemctl restart orangescrum.service")
    wait_for(machine, f"curl -fsS {GUEST_URL}/ >/dev/null")


def test_operator_directive_takes_effect_after_a_restart(client, machine):
    assert client.request("/").header("X-Operator-Directive") is None
    machine.ok(f"mkdir -p /etc/orangescrum/caddy.d && echo 'header X-Operator-Directive native' > {OPERATOR_FILE}")
    machine.ok("systemctl restart orangescrum.service")
    wait_for(machine, f"curl -fsS {GUEST_URL}/ >/dev/null")
    assert client.request("/").header("X-Operator-Directive") == "native"


def test_sigterm_drains_in_flight_requests(client, machine):
    seconds = sc.check_drain(client, lambda: machine.ok("systemctl stop orangescrum.service", timeout=60))
    assert seconds >= 3
    assert machine.run("systemctl is-active orangescrum.service").stdout.strip() == "inactive"
    result = machine.ok("systemctl show -p Result --value orangescrum.service").strip()
    assert result == "success"  # stopped by SIGTERM within TimeoutStopSec, not killed
