"""The systemd units, sysusers.d and tmpfiles.d entries the packages install, as rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orangescrum.service", "orangescrum-queue.service", "orangescrum-recurring.service")


def render(tmp_path: Path, **values) -> Path:
    layer = Layer("flag", {"app": str(ROOT / "examples" / "orangescrum-demo"), "dist_dir": str(tmp_path / "dist"),
                           "version": "4.1.0", "source_date_epoch": "1700000000", **values})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    binary = tmp_path / "bin"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return assemble_tree(cfg, "native", binary).path


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("units"), **{"service.memory_max": "2G", "service.tasks_max": "300",
                                                       "service.limit_nofile": "4096",
                                                       "service.queue_max_runtime": "900",
                                                       "service.recurring_interval": "30min"})


def unit(native: Path, name: str) -> dict[str, list[str]]:
    return directives((native / "systemd" / name).read_text())


def test_no_shell_expansion_in_unit_lines(native):
    for path in (native / "systemd").iterdir():
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                assert "${" not in line and "$(" not in line, (path.name, line)


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_validates_first_and_runs_sandboxed(native, name):
    d = unit(native, name)
    assert d["ExecStartPre"] == ["/usr/libexec/orangescrum/validate-env --quiet /etc/orangescrum/orangescrum.env"]
    assert d["EnvironmentFile"] == ["/etc/orangescrum/orangescrum.env"]
    assert d["User"] == d["Group"] == ["orangescrum"]
    # every PHP process reads the admin's php.ini additions (as in Compose's shared environment)
    assert d["Environment"] == ["TMPDIR=/var/cache/orangescrum", "PHP_INI_SCAN_DIR=/etc/orangescrum/php.d"]
    assert d["CacheDirectory"] == ["orangescrum"] and d["StateDirectory"] == ["orangescrum"]
    assert d["TasksMax"] == ["300"] and d["LimitNOFILE"] == ["4096"]
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "PrivateDevices", "PrivateUsers",
                "ProtectKernelTunables", "RestrictNamespaces", "SystemCallFilter", "RestrictAddressFamilies"):
        assert key in d, (name, key)
    # PHP's PCRE JIT needs W+X memory: documented, not set.
    assert "MemoryDenyWriteExecute" not in d
    assert "StandardOutput" not in d  # the journal (default)


def test_web_server(native):
    d = unit(native, "orangescrum.service")
    # SIGTERM to the server alone: it drains its requests and stops its helpers itself
    assert d["KillMode"] == ["mixed"] and d["KillSignal"] == ["SIGTERM"]
    # through server-env (the listen address and trusted proxies the embedded Caddyfile reads), then app-state
    assert d["ExecStart"] == ["/usr/libexec/orangescrum/server-env /usr/libexec/orangescrum/app-state server "
                              "/usr/bin/orangescrum php-server --listen 127.0.0.1:8080 --root webroot"]
    assert d["Restart"] == ["on-failure"] and d["KillSignal"] == ["SIGTERM"]
    assert d["MemoryMax"] == ["2G"]
    assert "SocketBindDeny" not in d


def test_queue_worker(native):
    d = unit(native, "orangescrum-queue.service")
    assert d["ExecStart"] == ["/usr/libexec/orangescrum/app-state queue-worker /usr/bin/orangescrum php-cli bin/cake.php queue worker --max-runtime 900"]
    assert d["Restart"] == ["always"] and d["SocketBindDeny"] == ["any"]


def test_recurring_timer(native):
    d = unit(native, "orangescrum-recurring.timer")
    assert d["OnUnitActiveSec"] == ["30min"] and d["Persistent"] == ["true"]
    assert unit(native, "orangescrum-recurring.service")["Type"] == ["oneshot"]


def test_sysusers_and_tmpfiles(native):
    sysusers = [line for line in (native / "systemd" / "sysusers.conf").read_text().splitlines()
                if line and not line.startswith("#")]
    assert sysusers == ['u orangescrum - "OrangeScrum" /var/lib/orangescrum']
    tmpfiles = [line.split() for line in (native / "systemd" / "tmpfiles.conf").read_text().splitlines()
                if line and not line.startswith("#")]
    assert tmpfiles == [
        ["d", "/var/lib/orangescrum", "0750", "orangescrum", "orangescrum", "-"],
        ["D", "/var/cache/orangescrum", "0750", "orangescrum", "orangescrum", "-"],
        ["z", "/etc/orangescrum/orangescrum.env", "0640", "root", "orangescrum", "-"],
    ]


def test_run_native_still_works_without_the_package(native):
    text = (native / "run-native.sh").read_text()
    assert re.search(r'exec "\$here/helpers/validate-env.sh" --quiet --exec', text)
    assert (native / "run-native.sh").stat().st_mode & 0o111
