#!/usr/bin/env python3
"""Downtime of an upgrade that migrates the database: Compose and native.

    python benchmarks/upgrade_downtime.py [--flavor compose|native|both] [--requests 1500]
                                          [--interval 0.05] [--timeout 1.0] [--max-seconds 300]

Builds two versions of the example app (tests/system/migrate_support.py: 4.0.1
adds a migration) with the stand-in builder, then for each flavor:

* compose: deploys 4.0.0 with the `infra` profile's PostgreSQL and Redis (images
  built from Debian's packages, tests/system/infra_images.py) under its own
  project name, and upgrades it with `docker compose up -d` from 4.0.1's
  dist/docker (the one-shot `migrate` runs before app and queue are started);
* native: boots Debian 12 with PostgreSQL 15 in systemd-nspawn
  (tests/system/nspawn.py), installs the 4.0.0 .deb with valid settings and
  upgrades with `apt-get install ./orangescrum_4.0.1-1_amd64.deb` (the postinst
  stops orangescrum-migrate.service, which stops the services, and starts them
  again: the migration runs first). The loop runs inside the guest (curl), which
  has a network namespace of its own.

During the upgrade a bounded request loop (--requests GETs of /healthz on
loopback, one every --interval seconds, each with a --timeout, stopped after
--max-seconds at the latest) records which requests failed. Printed per flavor:
the requests sent, answered 200 and failed; the seconds during which requests
failed (from the first failure of each run of failures to the next success,
summed), the longest such run, and how long the upgrade command took. The schema
table is checked afterwards: the new migration applied exactly once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "system")]

from cloudbuilder.config import BY_KEY  # noqa: E402

COMPOSE_SERVICES = ("postgres", "redis", "migrate", "app", "queue")


@dataclass
class Loop:
    samples: list[tuple[float, bool]]  # (seconds since the loop started, answered 200)
    upgrade_start: float = 0.0
    upgrade_end: float = 0.0

    def report(self, flavor: str) -> list[str]:
        ok = sum(1 for _, good in self.samples if good)
        failed = len(self.samples) - ok
        windows: list[float] = []
        start = None
        for at, good in self.samples:
            if not good and start is None:
                start = at
            elif good and start is not None:
                windows.append(at - start)
                start = None
        if start is not None:  # still failing at the end
            windows.append(self.samples[-1][0] - start)
        first_fail = next((at for at, good in self.samples if not good), None)
        return [
            f"{flavor}: {len(self.samples)} requests over {self.samples[-1][0]:.1f}s: {ok} answered 200, {failed} failed",
            f"{flavor}: requests failed during {sum(windows):.2f}s in {len(windows)} run(s); longest {max(windows, default=0):.2f}s",
            f"{flavor}: the upgrade command took {self.upgrade_end - self.upgrade_start:.1f}s"
            + (f"; the first failure {first_fail - self.upgrade_start:+.1f}s after it started" if first_fail else ""),
        ]


def schema_line(flavor: str, schema: list[str]) -> str:
    from migrate_support import V1_MIGRATIONS, V2_MIGRATION

    expected = schema == [*V1_MIGRATIONS, V2_MIGRATION]
    return (f"{flavor}: schema after the upgrade: {' '.join(schema)} "
            f"({'the new migration applied once' if expected else 'UNEXPECTED'})")


def host_loop(url: str, count: int, interval: float, timeout: float, max_seconds: float, out: Loop) -> None:
    started = time.monotonic()
    for _ in range(count):
        at = time.monotonic() - started
        if at > max_seconds:
            break
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                good = resp.status == 200
        except Exception:  # noqa: BLE001 - any failure is a failed request
            good = False
        out.samples.append((at, good))
        time.sleep(max(0.0, interval - (time.monotonic() - started - at)))


# --------------------------------------------------------------------------
# Compose
# --------------------------------------------------------------------------


def compose_run(args, work: Path, v1_app: Path, v2_app: Path) -> list[str]:
    import docker
    from compose_fixtures import VALID_SETTINGS, Compose, edit_env_example, free_port
    from infra_images import ensure_infra_images
    from migrate_support import build_version, compose_schema, image_ids, remove_images, remove_stage_images

    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME
    from cloudbuilder.standin import ensure_rootfs_image

    client = docker.from_env()
    token = secrets.token_hex(4)
    repository = f"localhost/oscb-migrate-bench-{token}/orangescrum"
    port = free_port()
    infra = ensure_infra_images(client)
    settings = {"OSCB_DOCKER_RUNTIME_IMAGE": ensure_rootfs_image(client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES),
                "OSCB_DOCKER_IMAGE_NAME": repository, "OSCB_DOCKER_HOST_PORT": str(port), **infra.settings}
    before = image_ids(client)
    builds = [build_version(app, work / f"compose-{n}", settings, image=True) for app, n in ((v1_app, "v1"), (v2_app, "v2"))]
    env = {**VALID_SETTINGS, "DB_HOST": "postgres", "DB_PASSWORD": f"Bench-{token}-Db9", "REDIS_HOST": "redis",
           "REDIS_PASSWORD": f"Bench-{token}-Rd9", "QUEUE_URL": f"redis://:Bench-{token}-Rd9@redis:6379/1"}
    for build in builds:
        (build.docker_tree / ".env").write_text(edit_env_example((build.docker_tree / ".env.example").read_text(), env))
    stack = Compose(client, builds[0].docker_tree, project=f"oscb-migrate-bench-{token}",
                    env={"COMPOSE_PROFILES": "infra"})
    try:
        stack("up", "-d", *COMPOSE_SERVICES, timeout=600)
        stack.wait_healthy()
        loop = Loop([])
        thread = threading.Thread(target=host_loop, args=(f"http://127.0.0.1:{port}/healthz", args.requests,
                                                          args.interval, args.timeout, args.max_seconds, loop))
        thread.start()
        time.sleep(2)
        stack.cwd = builds[1].docker_tree
        loop.upgrade_start = loop.samples[-1][0] if loop.samples else 0.0
        began = time.monotonic()
        upgraded = stack("up", "-d", *COMPOSE_SERVICES, timeout=600, check=False)
        loop.upgrade_end = loop.upgrade_start + (time.monotonic() - began)
        thread.join()
        if upgraded.returncode != 0:
            raise RuntimeError(f"the upgrade failed: {upgraded.stderr[-500:]}\n"
                               + stack("logs", "--no-color", "--tail", "20", "migrate", check=False).stdout)
        return [*loop.report("compose"), schema_line("compose", compose_schema(stack))]
    finally:
        stack.purge()
        remove_images(client, repository, builds)
        remove_stage_images(client, builds, before)


# --------------------------------------------------------------------------
# Native
# --------------------------------------------------------------------------

GUEST_LOOP = """\
i=0; start=$(date +%s.%N)
while [ "$i" -lt {count} ]; do
  now=$(date +%s.%N)
  if awk -v a="$now" -v b="$start" 'BEGIN {{ exit !(a - b > {max_seconds}) }}'; then break; fi
  code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time {timeout} {url} || true)
  echo "$now $code"
  i=$((i + 1))
  sleep {interval}
done
"""


def native_run(args, work: Path, v1_app: Path, v2_app: Path) -> list[str]:
    from migrate_support import (
        GUEST_ENV,
        build_version,
        guest_database,
        guest_env_file,
        guest_schema,
        postgres_rootfs_tarball,
    )
    from nspawn import BootedDebian

    import docker
    from migrate_support import image_ids, remove_stage_images

    client = docker.from_env()
    before = image_ids(client)
    builds = [build_version(app, work / f"native-{n}", {}, deb=True) for app, n in ((v1_app, "v1"), (v2_app, "v2"))]
    remove_stage_images(client, builds, before)
    debs = [build.deb for build in builds]
    guest = BootedDebian(postgres_rootfs_tarball(), work / "nspawn" / "rootfs", f"oscb-migrate-bench-{os.getpid()}")
    apt = "</dev/null DEBIAN_FRONTEND=noninteractive apt-get -y -q "
    url = f"http://{BY_KEY['service.listen'].default}/healthz"
    try:
        guest.boot()
        for deb in debs:
            guest.put(deb, f"/var/tmp/{deb.name}")
        guest_database(guest)
        guest_env_file(guest, GUEST_ENV)
        guest.ok(f"cd /var/tmp && {apt} install ./{debs[0].name}", timeout=600)
        deadline = time.monotonic() + 60
        while guest.run(f"curl -fsS --max-time 2 {url}").returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("4.0.0 did not come up in the guest")
            time.sleep(0.5)
        script = GUEST_LOOP.format(count=args.requests, max_seconds=args.max_seconds, timeout=args.timeout, url=url,
                                   interval=args.interval)
        assert guest.leader is not None
        loop_proc = subprocess.Popen(
            ["nsenter", "-t", str(guest.leader), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "sh", "-c", script],
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        guest_now = float(guest.ok("date +%s.%N"))
        began = time.monotonic()
        guest.ok(f"cd /var/tmp && {apt} install ./{debs[1].name}", timeout=600)
        took = time.monotonic() - began
        out, _ = loop_proc.communicate(timeout=args.max_seconds + 60)
        rows = [line.split() for line in out.splitlines() if len(line.split()) == 2]
        t0 = float(rows[0][0])
        loop = Loop([(float(at) - t0, code == "200") for at, code in rows], upgrade_start=guest_now - t0)
        loop.upgrade_end = loop.upgrade_start + took
        return [*loop.report("native"), schema_line("native", guest_schema(guest))]
    finally:
        guest.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flavor", choices=("compose", "native", "both"), default="both")
    parser.add_argument("--requests", type=int, default=1500, help="requests in the loop (a fixed count)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between requests")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds a request may take")
    parser.add_argument("--max-seconds", type=float, default=300, help="the loop stops after this long at the latest")
    args = parser.parse_args()
    from migrate_support import make_app_versions

    work = Path(tempfile.mkdtemp(prefix="oscb-migrate-bench-"))
    lines: list[str] = []
    try:
        v1_app, v2_app = make_app_versions(ROOT / "examples" / "orangescrum-demo", work)
        if args.flavor in ("compose", "both"):
            lines += compose_run(args, work, v1_app, v2_app)
        if args.flavor in ("native", "both"):
            lines += native_run(args, work, v1_app, v2_app)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"upgrade 4.0.0 -> 4.0.1 with one migration; a GET /healthz every {args.interval}s "
          f"(timeout {args.timeout}s), at most {args.requests} requests / {args.max_seconds:.0f}s")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
