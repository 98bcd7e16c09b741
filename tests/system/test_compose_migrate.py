"""Migrations before a version serves, with Docker Compose and a real PostgreSQL.

Two builds of the example app (tests/system/migrate_support.py): 4.0.0 with its two
migrations, 4.0.1 with one more. One stack (project ``oscb-migrate-<random>``) with
the `infra` profile's PostgreSQL and Redis, built here from Debian's packages
(tests/system/infra_images.py), lives through what an operator does:

1. deploy 4.0.0 (`docker compose up -d` in its dist/docker): the one-shot
   `migrate` ran, app and queue started only after it finished, the schema table
   holds 4.0.0's migrations once;
2. `docker compose restart`, and `up -d` of the unchanged stack: nothing applied twice;
3. deploy 4.0.1 with DEMO_MIGRATION_FAIL=1 (its new migration fails): `up -d`
   exits non-zero, `docker compose logs migrate` has the reason, app and queue
   are not running, the schema is exactly 4.0.0's;
4. deploy 4.0.1 fixed: its migration ran exactly once, before app and queue.

Steps depend on each other: they are one test, each step a named block, so that a
failure says which step broke.
"""

from __future__ import annotations

import secrets
import time
import urllib.request

import pytest
from compose_fixtures import VALID_SETTINGS, Compose, edit_env_example, free_port
from infra_images import ensure_infra_images
from migrate_support import (
    FAILURE_REASON,
    V1_MIGRATIONS,
    V2_MIGRATION,
    V2_TABLE,
    build_version,
    compose_schema,
    compose_sql,
    image_ids,
    make_app_versions,
    remove_images,
    remove_stage_images,
)

pytestmark = pytest.mark.system

# What `up` starts: the infra profile without MinIO (no image of it can be had here).
# Not `up --wait`: it fails on queue, whose health check is disabled.
SERVICES = ("postgres", "redis", "migrate", "app", "queue")


def stack_settings(token: str) -> dict[str, str]:
    """The operator's .env: the infra profile's PostgreSQL and Redis."""
    return {**VALID_SETTINGS, "DB_HOST": "postgres", "DB_PASSWORD": f"Db-{token}-Pw9", "REDIS_HOST": "redis",
            "REDIS_PASSWORD": f"Redis-{token}-Pw9", "QUEUE_URL": f"redis://:Redis-{token}-Pw9@redis:6379/1"}


@pytest.fixture(scope="module")
def builds(docker_client, tmp_path_factory, example_app):
    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME
    from cloudbuilder.standin import ensure_rootfs_image

    infra = ensure_infra_images(docker_client)
    work = tmp_path_factory.mktemp("compose-migrate")
    token = secrets.token_hex(4)
    repository = f"localhost/oscb-migrate-{token}/orangescrum"
    settings = {"OSCB_DOCKER_RUNTIME_IMAGE": ensure_rootfs_image(docker_client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES),
                "OSCB_DOCKER_IMAGE_NAME": repository, "OSCB_DOCKER_HOST_PORT": str(free_port()), **infra.settings}
    v1_app, v2_app = make_app_versions(example_app, work)
    made, before = [], image_ids(docker_client)
    try:
        for app, dist in ((v1_app, work / "dist-v1"), (v2_app, work / "dist-v2")):
            made.append(build_version(app, dist, settings, image=True))
        yield made, token
    finally:
        remove_images(docker_client, repository, made)
        remove_stage_images(docker_client, made, before)


schema = compose_schema


def table_exists(stack: Compose, name: str) -> bool:
    return compose_sql(stack, f"SELECT to_regclass('{name}') IS NOT NULL") == "t"


def state(stack: Compose, service: str) -> dict:
    [container] = stack.containers(service)
    container.reload()
    return container.attrs["State"]


def started_after_migrate(stack: Compose) -> None:
    """app and queue started after migrate exited 0 (engine timestamps, RFC 3339 with ns)."""
    migrate = state(stack, "migrate")
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0, migrate
    for service in ("app", "queue"):
        assert state(stack, service)["StartedAt"] > migrate["FinishedAt"], (service, migrate)


def app_version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=10) as resp:
        return resp.read().decode()


def test_migrations_run_once_per_version_before_app_and_queue(builds, docker_client):
    (v1, v2), token = builds
    port = int(v1.env["OSCB_DOCKER_HOST_PORT"])
    env_text = edit_env_example((v1.docker_tree / ".env.example").read_text(), stack_settings(token))
    stack = Compose(docker_client, v1.docker_tree, project=f"oscb-migrate-{token}",
                    env={"COMPOSE_PROFILES": "infra"})
    try:
        # 1. deploy 4.0.0
        (v1.docker_tree / ".env").write_text(env_text)
        stack("up", "-d", *SERVICES, timeout=600)
        stack.wait_healthy()
        assert schema(stack) == list(V1_MIGRATIONS)
        started_after_migrate(stack)
        logs = stack("logs", "--no-color", "migrate").stdout
        assert "migrations: 2 applied, the schema went from empty to 20250102000000" in logs
        assert stack_settings(token)["DB_PASSWORD"] not in logs
        assert '"app":"4.0.0"' in app_version(port).replace(" ", "")

        # 2. restart, and `up -d` of the unchanged stack: nothing applied twice
        migrate_id = stack.containers("migrate")[0].id
        stack("restart", timeout=300)
        stack.wait_healthy()
        stack("up", "-d", *SERVICES, timeout=300)
        stack.wait_healthy()
        assert stack.containers("migrate")[0].id == migrate_id  # not recreated: same version, same settings
        assert schema(stack) == list(V1_MIGRATIONS)
        assert "nothing to migrate" in stack("logs", "--no-color", "migrate").stdout  # it ran again, idempotent

        # 3. deploy 4.0.1 whose migration fails
        stack.cwd = v2.docker_tree
        (v2.docker_tree / ".env").write_text(env_text + "DEMO_MIGRATION_FAIL=1\n")
        failed = stack("up", "-d", *SERVICES, check=False, timeout=600)
        assert failed.returncode != 0
        assert "migrate" in failed.stderr and "didn't complete successfully" in failed.stderr, failed.stderr
        logs = stack("logs", "--no-color", "migrate").stdout
        assert f"migration {V2_MIGRATION}_AddNotes failed" in logs and FAILURE_REASON in logs, logs
        assert "rolled back, the schema stays at 20250102000000" in logs
        assert stack_settings(token)["DB_PASSWORD"] not in logs
        for service in ("app", "queue"):
            running = [c for c in stack.containers(service) if c.status == "running"]
            assert running == [], f"{service} runs after a failed migration"
        assert schema(stack) == list(V1_MIGRATIONS) and not table_exists(stack, V2_TABLE)

        # 4. deploy 4.0.1 fixed
        (v2.docker_tree / ".env").write_text(env_text)
        stack("up", "-d", *SERVICES, timeout=600)
        stack.wait_healthy()
        assert schema(stack) == [*V1_MIGRATIONS, V2_MIGRATION] and table_exists(stack, V2_TABLE)
        started_after_migrate(stack)
        assert '"app":"4.0.1"' in app_version(port).replace(" ", "")
        stack("restart", timeout=300)
        stack.wait_healthy()
        assert schema(stack) == [*V1_MIGRATIONS, V2_MIGRATION]
    except BaseException:
        print(stack("logs", "--no-color", "--tail", "60", check=False).stdout[-6000:])
        print("migrate:", stack("logs", "--no-color", "--tail", "30", "migrate", check=False).stdout[-3000:])
        raise
    finally:
        stack.purge()


def test_up_wait_of_a_failing_first_migration_reports_it_and_starts_nothing(builds, docker_client):
    """A fresh stack whose first migration fails: nothing half-started, the reason in the logs."""
    (_, v2), token = builds
    project = f"oscb-migrate-{token}-fresh"
    env_text = edit_env_example((v2.docker_tree / ".env.example").read_text(), stack_settings(token))
    stack = Compose(docker_client, v2.docker_tree, project=project,
                    env={"COMPOSE_PROFILES": "infra", "ORANGESCRUM_ENV_FILE": str(v2.dist / "fresh.env")})
    (v2.dist / "fresh.env").write_text(env_text + "DEMO_MIGRATION_FAIL=1\n")
    try:
        started = time.monotonic()
        failed = stack("up", "-d", "--wait", *SERVICES[:-1], check=False, timeout=600)
        assert failed.returncode != 0 and "migrate" in failed.stderr, failed.stderr
        assert time.monotonic() - started < 300
        assert FAILURE_REASON in stack("logs", "--no-color", "migrate").stdout
        assert stack.containers("app") == [] or all(c.status != "running" for c in stack.containers("app"))
        assert all(c.status != "running" for c in stack.containers("queue"))
        # Everything up to V2_MIGRATION was applied (each in its own transaction); it was not.
        assert schema(stack) == list(V1_MIGRATIONS) and not table_exists(stack, V2_TABLE)
    finally:
        stack.purge()
