"""Declared state of the native packages on a booted Debian 12 with a real systemd.

Two releases of the example app (4.0.0, and 4.0.1 whose app changed: another version
number, so another embedded archive and another extraction directory), each built by
`invoke build` with the stand-in builder and packaged as a .deb with nfpm. On the
booted machine, in order: install 4.0.0, write an upload, a log line (every request
logs), a session and the installer's config/app_local.php; `systemctl restart`;
`apt-get install` of 4.0.1 (unattended: -y, stdin closed); 4.0.0 again (downgrade):
after each the app answers with the data, the queue worker's extracted app sees the
same files, and only the running version's extraction directories are left; then
remove keeps the state, purge removes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docker_support import removing_own_deps_tags
from nspawn import BootedDebian, booted_rootfs_tarball, unavailable
from test_packages import APT, ENV_FILE, GUEST_URL, VALID_ENV, make_cfg, wait_for

from cloudbuilder.packaging.build import build_packages
from cloudbuilder.pipeline import assemble_flavor

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"
STANDIN_IMAGE = "localhost/orangescrum-standin/static-builder:gnu-1.12.7"
STATE = "/var/lib/orangescrum"
CACHE = "/var/cache/orangescrum"
UNITS = "orangescrum.service orangescrum-queue.service orangescrum-recurring.timer"


@pytest.fixture(scope="module")
def debs(docker_client, tmp_path_factory):
    if os.geteuid() != 0:
        unavailable("needs root (systemd-nspawn boots a container)")
    missing = [p for p in ("systemd-nspawn", "nsenter", "debootstrap", "nfpm", "dpkg-deb") if not shutil.which(p)]
    if missing:
        unavailable(f"not installed: {', '.join(missing)}")
    work = tmp_path_factory.mktemp("native-state")
    out = {}
    try:
        for version in ("4.0.0", "4.0.1"):
            app = work / f"app-{version}"
            shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
            manifest = json.loads((app / "composer.json").read_text())
            manifest["version"] = version
            (app / "composer.json").write_text(json.dumps(manifest, indent=4) + "\n")
            build = work / f"build-{version}"
            env = {**os.environ, "OSCB_BUILDER_IMAGE": STANDIN_IMAGE, "OSCB_DIST_DIR": str(build)}
            with removing_own_deps_tags(build):  # the engine keeps no tag of this test's dist dir
                done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build",
                                       "--app", str(app), "--skip-deploy"], cwd=ROOT, env=env, capture_output=True,
                                      text=True, timeout=3600)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            cfg = make_cfg(work / f"pkg-{version}", build / "build" / "osv4-prod", version, "nfpm")
            assemble_flavor(cfg, "native")
            results = [r for r in build_packages(cfg) if r.fmt == "deb"]
            out[version] = results[0].path
            shutil.rmtree(build, ignore_errors=True)  # the trees and the binary: only the .deb is kept
        yield out
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def machine(debs, tmp_path_factory):
    root = tmp_path_factory.mktemp("nspawn-state") / "rootfs"
    guest = BootedDebian(booted_rootfs_tarball(), root, f"oscb-state-{os.getpid()}")
    try:
        guest.boot()
        for path in debs.values():
            guest.put(path, f"/var/tmp/{path.name}")
        yield guest
    finally:
        guest.close()


def curl(machine: BootedDebian, args: str) -> str:
    return machine.ok(f"curl -fsS {args}")


def serving(machine: BootedDebian, version: str) -> None:
    # The home page names the version (/version also asks the database, which this test has none of).
    wait_for(machine, f"curl -fsS {GUEST_URL}/ | grep -q '<span id=\"version\">{version}</span>'", timeout=90)
    # The worker of this start (its invocation), not a line an earlier one logged.
    wait_for(machine, "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID "
                      "--value orangescrum-queue.service) | grep -q 'queue worker: started'", timeout=90)


def observed(machine: BootedDebian, cookie: str) -> dict:
    listing = machine.run(f"ls -d {CACHE}/queue-worker/frankenphp_*")
    assert listing.returncode == 0, machine.run(f"ls -la {CACHE} {CACHE}/*; journalctl -u 'orangescrum*' "
                                                "--no-pager -n 60 -o cat").stdout
    queue_app = listing.stdout.split()
    return {
        "upload": curl(machine, f"{GUEST_URL}/uploads/kept.txt"),
        "user": json.loads(curl(machine, f"-H 'Cookie: {cookie}' {GUEST_URL}/session"))["user"],
        "installed": json.loads(curl(machine, f"{GUEST_URL}/install"))["installed"],
        "logged": "upload: stored webroot/files/kept.txt" in machine.ok(f"cat {STATE}/logs/*.log"),
        # The worker's extracted app: the same files, through its links.
        "queue": [machine.ok(f"cat {d}/app/webroot/files/kept.txt && test -f {d}/app/config/app_local.php && "
                             "echo +local") for d in queue_app],
    }


def extraction_sums(machine: BootedDebian) -> set[str]:
    listing = machine.ok(f"ls -d {CACHE}/*/frankenphp_* {CACHE}/shipped/* 2>/dev/null || true").split()
    return {re.sub(r"^.*/(frankenphp_)?", "", p) for p in listing}


def test_state_survives_restart_upgrade_downgrade_and_remove_but_not_purge(machine, debs):
    done = machine.run(f"cd /var/tmp && {APT} install ./{debs['4.0.0'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    machine.write(ENV_FILE, VALID_ENV)
    machine.ok(f"systemctl restart {UNITS}")
    serving(machine, "4.0.0")

    assert json.loads(curl(machine, f"-X POST --data-binary 'an uploaded file' "
                                    f"-H 'Content-Type: application/octet-stream' "
                                    f"'{GUEST_URL}/uploads?name=kept.txt'"))["name"] == "kept.txt"
    headers = curl(machine, f"-i -X POST -d user=alice {GUEST_URL}/login")
    cookie = re.search(r"^set-cookie: ([^;\r\n]+)", headers, re.I | re.M).group(1)
    assert json.loads(curl(machine, f"-X POST {GUEST_URL}/install"))["installed"] is True
    expected = {"upload": "an uploaded file", "user": "alice", "installed": True, "logged": True,
                "queue": ["an uploaded file+local\n"]}
    assert observed(machine, cookie) == expected
    assert machine.ok(f"stat -c '%U %F' {STATE}/config/app_local.php {STATE}/webroot/files/kept.txt").splitlines() \
        == ["orangescrum regular file"] * 2
    first = extraction_sums(machine)
    assert len(first) == 1

    machine.ok("systemctl restart orangescrum.service orangescrum-queue.service")
    serving(machine, "4.0.0")
    assert observed(machine, cookie) == expected

    done = machine.run(f"cd /var/tmp && {APT} install ./{debs['4.0.1'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    serving(machine, "4.0.1")
    assert observed(machine, cookie) == expected
    upgraded = extraction_sums(machine)
    assert len(upgraded) == 1 and upgraded != first  # the old version's directories are gone

    done = machine.run(f"cd /var/tmp && {APT} install --allow-downgrades ./{debs['4.0.0'].name} 2>&1")
    assert done.returncode == 0, done.stdout
    serving(machine, "4.0.0")
    assert observed(machine, cookie) == expected
    assert extraction_sums(machine) == first

    done = machine.run(f"{APT} remove orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    kept = machine.ok(f"cat {STATE}/webroot/files/kept.txt; ls {STATE}/config/app_local.php {STATE}/logs")
    assert "an uploaded file" in kept and "app_local.php" in kept

    done = machine.run(f"{APT} purge orangescrum 2>&1")
    assert done.returncode == 0, done.stdout
    assert machine.run(f"test -e {STATE}").returncode != 0
