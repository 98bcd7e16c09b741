"""tests/system/infra_images.py: the PostgreSQL 15 and Redis 7 images built from Debian's
packages keep the contract docker-compose.yaml's `infra` profile relies on."""

from __future__ import annotations

import secrets
import time

import pytest
from infra_images import ensure_infra_images


@pytest.fixture(scope="module")
def infra(docker_client):
    return ensure_infra_images(docker_client)


@pytest.fixture
def network(docker_client):
    net = docker_client.networks.create(f"oscb-migrate-infra-{secrets.token_hex(4)}")
    started: list = []
    yield net, started
    for container in started:
        container.remove(force=True, v=True)
    net.remove()


def _run(docker_client, image: str, command: list[str], network, env: dict[str, str] | None = None) -> tuple[int, str]:
    container = docker_client.containers.run(image, command, environment=env or {}, network=network.name, detach=True)
    try:
        status = container.wait(timeout=60)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True)


def _wait(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not ready in time")
        time.sleep(0.5)


def test_postgres_creates_the_user_and_database_with_a_password(docker_client, infra, network):
    net, started = network
    name = f"oscb-migrate-pg-{secrets.token_hex(3)}"
    password = f"Pw-{secrets.token_hex(8)}"
    server = docker_client.containers.run(infra.postgres, name=name, network=net.name, detach=True, environment={
        "POSTGRES_USER": "orangescrum", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "osdb"})
    started.append(server)
    _wait(lambda: server.exec_run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).exit_code == 0)
    status, out = _run(docker_client, infra.postgres, ["psql", "-h", name, "-U", "orangescrum", "-d", "osdb", "-Atc",
                                                       "SELECT current_user || '@' || current_database()"],
                       net, {"PGPASSWORD": password})
    assert (status, out.strip()) == (0, "orangescrum@osdb")
    status, out = _run(docker_client, infra.postgres, ["psql", "-h", name, "-U", "orangescrum", "-d", "osdb", "-c",
                                                       "SELECT 1"], net, {"PGPASSWORD": "wrong"})
    assert status != 0 and "password authentication failed" in out
    assert password not in server.logs().decode()


def test_postgres_refuses_to_initialise_without_a_password(docker_client, infra, network):
    net, _ = network
    status, out = _run(docker_client, infra.postgres, ["postgres"], net, {"POSTGRES_USER": "x"})
    assert status == 1 and "POSTGRES_PASSWORD is empty" in out


def test_redis_requires_the_password_from_its_command(docker_client, infra, network):
    net, started = network
    name = f"oscb-migrate-redis-{secrets.token_hex(3)}"
    server = docker_client.containers.run(infra.redis, ["redis-server", "--requirepass", "Redis-Pw-1"], name=name,
                                          network=net.name, detach=True)
    started.append(server)
    _wait(lambda: server.exec_run(["redis-cli", "ping"]).exit_code == 0)
    assert _run(docker_client, infra.redis, ["redis-cli", "-h", name, "ping"], net)[1].startswith("NOAUTH")
    status, out = _run(docker_client, infra.redis, ["redis-cli", "-h", name, "-a", "Redis-Pw-1", "--no-auth-warning",
                                                    "ping"], net)
    assert (status, out.strip()) == (0, "PONG")
