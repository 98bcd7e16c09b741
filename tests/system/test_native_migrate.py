"""orangescrum-migrate.service on a booted Debian 12 with Debian's PostgreSQL 15.

The .deb of two versions of the example app (tests/system/migrate_support.py:
4.0.1 adds a migration), installed with apt-get in a systemd-nspawn guest whose
rootfs has postgresql-15 (the guest has no network: nothing can be installed in
it later). The settings file is written first, as config management does, so
the package's postinst finds it valid:

1. install 4.0.0: the migrations ran, and finished before orangescrum.service
   and the queue worker started (systemd's timestamps);
2. upgrade to 4.0.1 with DEMO_MIGRATION_FAIL=1 (its migration fails): apt-get
   succeeds (an unattended upgrade is never failed by it), the services are
   stopped, the reason is in `journalctl -u orangescrum-migrate` and named in
   the postinst's output, the schema is exactly 4.0.0's;
3. fixed settings, `apt-get install --reinstall` of 4.0.1: its migration ran
   exactly once, before the services; `systemctl restart` does not run it again.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from migrate_support import (
    DB_PASSWORD,
    FAILURE_REASON,
    GUEST_ENV,
    V1_MIGRATIONS,
    V2_MIGRATION,
    V2_TABLE,
    build_version,
    guest_database,
    image_ids,
    remove_stage_images,
    guest_env_file,
    guest_schema,
    guest_sql,
    make_app_versions,
    postgres_rootfs_tarball,
)
from nspawn import BootedDebian

from cloudbuilder.config import BY_KEY

pytestmark = pytest.mark.system

APT = "</dev/null DEBIAN_FRONTEND=noninteractive apt-get -y -q "
SERVICES = ("orangescrum.service", "orangescrum-queue.service")
MIGRATE = "orangescrum-migrate.service"
GUEST_URL = f"http://{BY_KEY['service.listen'].default}"


@pytest.fixture(scope="module")
def debs(tmp_path_factory, example_app, docker_client):
    work = tmp_path_factory.mktemp("native-migrate")
    v1_app, v2_app = make_app_versions(example_app, work)
    made, before = [], image_ids(docker_client)
    try:
        for app, name in ((v1_app, "v1"), (v2_app, "v2")):
            made.append(build_version(app, work / f"dist-{name}", {}, deb=True))
    finally:
        remove_stage_images(docker_client, made, before)
    return [build.deb for build in made]


@pytest.fixture(scope="module")
def guest(debs, tmp_path_factory):
    tarball = postgres_rootfs_tarball()
    machine = BootedDebian(tarball, tmp_path_factory.mktemp("nspawn-migrate") / "rootfs",
                           f"oscb-migrate-{os.getpid()}")
    try:
        machine.boot()
        for deb in debs:
            machine.put(deb, f"/var/tmp/{deb.name}")
        guest_database(machine)
        yield machine
    finally:
        machine.close()


def monotonic(guest, unit: str, prop: str) -> int:
    return int(guest.ok(f"systemctl show -p {prop} --value {unit}").strip() or 0)


def services_started_after_migrate(guest) -> None:
    finished = monotonic(guest, MIGRATE, "ExecMainExitTimestampMonotonic")
    assert finished > 0 and guest.ok(f"systemctl show -p Result --value {MIGRATE}").strip() == "success"
    for unit in SERVICES:
        assert monotonic(guest, unit, "ExecMainStartTimestampMonotonic") > finished, unit


def healthz(guest, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done = guest.run(f"curl -fsS --max-time 2 {GUEST_URL}/healthz")
        if done.returncode == 0:
            return json.loads(done.stdout)
        if time.monotonic() > deadline:
            raise AssertionError(guest.run("journalctl -u orangescrum --no-pager -n 30").stdout)
        time.sleep(0.5)


def test_migrations_run_once_per_version_before_the_services(guest, debs):
    v1, v2 = debs
    try:
        # 1. install 4.0.0 with valid settings
        guest_env_file(guest, GUEST_ENV)
        done = guest.run(f"cd /var/tmp && {APT} install ./{v1.name} 2>&1")
        assert done.returncode == 0, done.stdout
        assert "orangescrum: started: orangescrum.service orangescrum-queue.service" in done.stdout, done.stdout
        assert healthz(guest) == {"status": "ok"}
        assert guest_schema(guest) == list(V1_MIGRATIONS)
        services_started_after_migrate(guest)
        journal = guest.ok(f"journalctl -u {MIGRATE} --no-pager -o cat")
        assert "migrations: 2 applied, the schema went from empty to 20250102000000" in journal
        assert DB_PASSWORD not in journal + guest.ok(f"systemctl show -p ExecStart {MIGRATE}")
        out = guest.ok(f"systemd-analyze security --no-pager {MIGRATE}")
        assert float(out.rsplit("Overall exposure level for ", 1)[1].split(":")[1].split()[0]) <= 2.0, out[-1500:]

        # 2. upgrade to 4.0.1, whose migration fails
        guest_env_file(guest, GUEST_ENV + "DEMO_MIGRATION_FAIL=1\n")
        done = guest.run(f"cd /var/tmp && {APT} install ./{v2.name} 2>&1")
        out = done.stdout
        assert done.returncode == 0, out  # never fails an unattended upgrade
        assert guest.ok("dpkg-query -W -f '${db:Status-Abbrev} ${Version}' orangescrum") == "ii  4.0.1-1"
        assert f"orangescrum: warning: the database migration failed ({MIGRATE})" in out, out
        assert f"journalctl -u {MIGRATE}" in out and DB_PASSWORD not in out
        journal = guest.ok(f"journalctl -u {MIGRATE} --no-pager -o cat")
        assert f"migration {V2_MIGRATION}_AddNotes failed" in journal and FAILURE_REASON in journal, journal[-2000:]
        assert "rolled back, the schema stays at 20250102000000" in journal
        assert DB_PASSWORD not in journal
        for unit in SERVICES:
            assert guest.run(f"systemctl is-active {unit}").stdout.strip() != "active", unit
        assert guest.run(f"curl -fsS --max-time 2 {GUEST_URL}/healthz").returncode != 0
        assert guest_schema(guest) == list(V1_MIGRATIONS)
        assert guest_sql(guest, f"SELECT to_regclass('{V2_TABLE}') IS NULL") == "t"

        # 3. fixed settings, the package configured again: 4.0.1's migration, once
        guest_env_file(guest, GUEST_ENV)
        done = guest.run(f"cd /var/tmp && {APT} install --reinstall ./{v2.name} 2>&1")
        assert done.returncode == 0 and "migration failed" not in done.stdout, done.stdout
        assert healthz(guest) == {"status": "ok"}
        assert guest_schema(guest) == [*V1_MIGRATIONS, V2_MIGRATION]
        services_started_after_migrate(guest)
        ran = monotonic(guest, MIGRATE, "ExecMainStartTimestampMonotonic")
        guest.ok("systemctl restart orangescrum.service orangescrum-queue.service")
        assert healthz(guest) == {"status": "ok"}
        assert monotonic(guest, MIGRATE, "ExecMainStartTimestampMonotonic") == ran  # not run again
        assert guest_schema(guest) == [*V1_MIGRATIONS, V2_MIGRATION]
        version = guest.ok(f"curl -fsS --max-time 5 {GUEST_URL}/version")
        assert '"app":"4.0.1"' in version.replace(" ", ""), version
    except BaseException:
        print(guest.run("journalctl --no-pager -n 80 -u 'orangescrum*'").stdout[-6000:])
        raise
