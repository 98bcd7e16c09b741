"""Two versions of the example app and their builds, for the migration tests and
benchmarks/upgrade_downtime.py.

Version 1 is examples/orangescrum-demo as it is (4.0.0, two migrations). Version 2
(4.0.1) is a copy with one more migration, ``V2_MIGRATION``, which creates a table
and, when the deployment sets DEMO_MIGRATION_FAIL=1, then fails: the whole
migration is rolled back, so a failed upgrade must leave the schema exactly at
version 1 (no table, no row in schema_migrations).

``build_version`` does what a release engineer does, through the CLI:
`invoke build --skip-deploy` (stand-in builder) and, for Compose,
`invoke docker.image`; for the OS packages, `invoke package.deb`.
"""

from __future__ import annotations

import json
import time
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

V1_MIGRATIONS = ("20250101000000", "20250102000000")
V2_MIGRATION = "20250201000000"
V2_TABLE = "demo_v2_notes"
V2_MIGRATION_PHP = f"""<?php
declare(strict_types=1);

// Version 2 of the app (written by tests/system/migrate_support.py): one table.
// With DEMO_MIGRATION_FAIL=1 it fails after creating it: the rollback must undo that.
return static function (PDO $db): void {{
    $db->exec('CREATE TABLE {V2_TABLE} (id bigserial PRIMARY KEY, note text NOT NULL)');
    if (in_array(strtolower((string)getenv('DEMO_MIGRATION_FAIL')), ['1', 'true', 'yes', 'on'], true)) {{
        $db->exec('SELECT no_such_column FROM {V2_TABLE}');
    }}
}};
"""
FAILURE_REASON = 'column "no_such_column" does not exist'


def _git_commit(app: Path, message: str) -> None:
    git = ["git", "-C", str(app), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    if not (app / ".git").exists():
        subprocess.run(git + ["init", "-q"], check=True, capture_output=True)
    subprocess.run(git + ["add", "-A"], check=True, capture_output=True)
    subprocess.run(git + ["commit", "-q", "-m", message], check=True, capture_output=True)


def make_app_versions(example_app: Path, work: Path) -> tuple[Path, Path]:
    """(v1, v2) app checkouts under ``work``: the example app, and it plus one migration."""
    v1, v2 = work / "app-v1", work / "app-v2"
    shutil.copytree(example_app, v1, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    _git_commit(v1, "version 1")
    shutil.copytree(v1, v2, symlinks=True)
    composer = json.loads((v2 / "composer.json").read_text())
    composer["version"] = "4.0.1"
    (v2 / "composer.json").write_text(json.dumps(composer, indent=4) + "\n")
    (v2 / "config" / "Migrations" / f"{V2_MIGRATION}_AddNotes.php").write_text(V2_MIGRATION_PHP)
    _git_commit(v2, "version 2: a migration")
    return v1, v2


def invoke(*args: str, env: dict[str, str], timeout: int = 3600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done


@dataclass(frozen=True)
class Build:
    version: str
    app: Path
    dist: Path
    env: dict[str, str]  # the OSCB_* environment it was built with

    @property
    def docker_tree(self) -> Path:
        return self.dist / "docker"

    @property
    def deb(self) -> Path:
        [found] = sorted((self.dist / "packages").glob("*.deb"))
        return found


def build_version(app: Path, dist: Path, settings: dict[str, str], *, image: bool = False, deb: bool = False) -> Build:
    """`invoke build --skip-deploy` of ``app`` into ``dist`` (+ `docker.image`, + `package.deb`)."""
    from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE

    env = {**os.environ, "OSCB_APP": str(app), "OSCB_DIST_DIR": str(dist), "OSCB_BUILDER_IMAGE": DEFAULT_STANDIN_IMAGE,
           "SOURCE_DATE_EPOCH": "1700000000", **settings}
    from docker_support import removing_own_deps_tags

    with removing_own_deps_tags(dist):  # the engine keeps no tag of this test's dist dir
        invoke("build", "--skip-deploy", env=env)
        if image:
            invoke("docker.image", env=env)
        if deb:
            invoke("package.deb", env=env)
    version = json.loads((app / "composer.json").read_text())["version"]
    return Build(version=version, app=app, dist=dist, env=env)


# --------------------------------------------------------------------------
# The booted Debian with PostgreSQL (the guest has no network: preinstalled)
# --------------------------------------------------------------------------

POSTGRES_ROOTFS_NAME = "systemd-booted-postgresql"
DB_PASSWORD = "Mg7-Migrate-Db-Pw-4821"
GUEST_ENV = f"""\
FULL_BASE_URL=https://pm.example.org
DEBUG=false
SECURITY_SALT=9f3c2a7b1e6d4c8a0b5f2e7d9c1a3b6e8f0d2c4a6b8e1f3d5c7a9b2e4f6a8c0d
DB_HOST=127.0.0.1
DB_PORT=5432
DB_USERNAME=orangescrum
DB_PASSWORD={DB_PASSWORD}
DB_NAME=orangescrum
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
QUEUE_URL=redis://127.0.0.1:6379/1
QUEUE_WORKER_MAX_RUNTIME=3600
"""


def postgres_rootfs_tarball() -> Path:
    """tests/system/nspawn.py's bootable rootfs plus Debian's postgresql-15 (its cluster
    `main` starts at boot on 127.0.0.1:5432), made once and cached."""
    from nspawn import ROOTFS_PACKAGES, booted_rootfs_tarball

    booted_rootfs_tarball()  # skips (or fails in CI) where nothing can boot
    from cloudbuilder.rootfs import ensure_rootfs_tarball

    return ensure_rootfs_tarball(POSTGRES_ROOTFS_NAME, (*ROOTFS_PACKAGES, "postgresql-15"))


def guest_database(guest) -> None:
    """Wait for the guest's PostgreSQL, then create the app's role and database."""
    deadline = time.monotonic() + 60
    while guest.run("pg_isready -q -h 127.0.0.1 -p 5432").returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError("the guest's PostgreSQL did not start:\n"
                                 + guest.run("journalctl -u postgresql@15-main --no-pager -n 30").stdout)
        time.sleep(0.5)
    guest.ok("runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1", input=(
        f"CREATE ROLE orangescrum LOGIN PASSWORD '{DB_PASSWORD}';\n"
        "CREATE DATABASE orangescrum OWNER orangescrum;\n"))


def guest_sql(guest, sql: str) -> str:
    return guest.ok(f"runuser -u postgres -- psql -X -At -d orangescrum -c \"{sql}\"").strip()


def guest_schema(guest) -> list[str]:
    return guest_sql(guest, "SELECT version FROM schema_migrations ORDER BY version").split()


def guest_env_file(guest, text: str) -> None:
    """/etc/orangescrum/orangescrum.env as config management writes it (before or after
    the package): 0640 root:orangescrum."""
    guest.ok("getent group orangescrum >/dev/null || groupadd --system orangescrum; mkdir -p /etc/orangescrum")
    guest.ok("umask 027; cat > /etc/orangescrum/orangescrum.env.new && chgrp orangescrum "
             "/etc/orangescrum/orangescrum.env.new && mv /etc/orangescrum/orangescrum.env.new "
             "/etc/orangescrum/orangescrum.env", input=text)


# --------------------------------------------------------------------------
# Compose stacks of these builds
# --------------------------------------------------------------------------


def compose_sql(stack, sql: str) -> str:
    """``sql`` in the stack's `postgres` service (the infra profile), as the app's database owner."""
    return stack("exec", "-T", "postgres", "psql", "-X", "-At", "-h", "/tmp", "-U", "orangescrum", "-d", "orangescrum",
                 "-c", sql).stdout.strip()


def compose_schema(stack) -> list[str]:
    return compose_sql(stack, "SELECT version FROM schema_migrations ORDER BY version").split()


def remove_images(client, repository: str, builds) -> None:
    """The runtime images ``invoke docker.image`` tagged for ``builds`` (version and latest)."""
    for build in builds:
        for tag in (build.version, "latest"):
            try:
                client.images.remove(f"{repository}:{tag}")
            except Exception:  # noqa: BLE001 - already gone
                pass


def image_ids(client) -> set[str]:
    """Every image id now: what ``remove_stage_images`` keeps."""
    return {image.id for image in client.images.list(all=True)}


def remove_stage_images(client, builds, before: set[str]) -> None:
    """The untagged stage images the builds' docker builds left (as compose_fixtures does);
    cached slow fixtures (the base image, the rootfs images) stay."""
    from docker_support import built_ids, remove_new_untagged

    logs = [log for build in builds for log in sorted((build.dist / "logs").glob("*.log"))
            if not log.name.startswith("base-")]
    remove_new_untagged(client, built_ids(logs), before)
