"""dist/docker as a Docker Swarm stack on a single-node swarm, under load.

Once per module: a swarm (`docker swarm init --advertise-addr 127.0.0.1` when the
engine is in none; left again afterwards), two runtime images of the demo app
built through the CLI (v1, and v2 with another version and a new migration),
the edge proxy image (Debian's Caddy, a cached rootfs), PostgreSQL 15 and Redis 7
(tests/system/infra_images.py) as services of the same stack, and
`invoke deploy --swarm` of v1 with 3 web replicas.

Then, with benchmarks/rolling_update.py's bounded load (fixed number of requests,
time limit) through the edge: `docker service update` of app to v2 (after its
migration job), a killed replica, and /slow (~200 ms) so requests are in flight
when a replica stops; every run must have 0 failed requests. A login session
is served by different replicas (Redis sessions). Everything the tests created
is removed: the stack, its volumes, the images of the two builds.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_support import removing_own_deps_tags

try:
    from compose_fixtures import (ROOT, VALID_SETTINGS, built_ids, edit_env_example, free_port, invoke,
                                  remove_new_untagged)
    from infra_images import ensure_infra_images
except ImportError:  # tests/system became a package
    from .compose_fixtures import (ROOT, VALID_SETTINGS, built_ids, edit_env_example, free_port, invoke,
                                   remove_new_untagged)
    from .infra_images import ensure_infra_images

pytestmark = pytest.mark.system

REPLICAS = 3
V2 = "4.0.1"
V2_MIGRATION = "20250301000000_AddSwarmV2"


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


@dataclass
class Swarm:
    stack: str
    port: int
    v1: str
    v2: str
    env: dict[str, str]
    env_file: Path
    db_password: str
    redis_password: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def get(self, path: str, opener=None, timeout: float = 10) -> tuple[int, dict]:
        opener = opener or urllib.request.build_opener()
        with opener.open(self.url + path, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())

    def psql(self, sql: str) -> str:
        (task,) = running(self.service("postgres"))
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        return docker("exec", "-e", f"PGPASSWORD={self.db_password}", container, "psql", "-h", "127.0.0.1", "-U",
                      "orangescrum", "-d", "orangescrum", "-At", "-c", sql).stdout.strip()


def running(service: str) -> list[dict]:
    ids = docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", service).stdout.split()
    tasks = json.loads(docker("inspect", "--type", "task", *ids).stdout) if ids else []
    return [t for t in tasks if t["Status"]["State"] == "running"]


def wait_for(what: str, predicate, timeout: float = 180, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _app_version(app: Path, version: str, migration: str | None) -> None:
    composer = json.loads((app / "composer.json").read_text())
    composer["version"] = version
    (app / "composer.json").write_text(json.dumps(composer, indent=4) + "\n")
    if migration:
        (app / "config" / "Migrations" / f"{migration}.php").write_text(
            "<?php\ndeclare(strict_types=1);\n\n// v2 of the swarm test: a new table.\n"
            "return static function (PDO $db): void {\n"
            "    $db->exec('CREATE TABLE swarm_v2 (id serial PRIMARY KEY)');\n};\n")


def _build(work: Path, example_app: Path, name: str, version: str, migration: str | None, env: dict) -> str:
    app = work / f"app-{name}"
    shutil.copytree(example_app, app, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    _app_version(app, version, migration)
    env = {**env, "OSCB_APP": str(app), "OSCB_DIST_DIR": str(work / f"dist-{name}")}
    with removing_own_deps_tags(env["OSCB_DIST_DIR"]):  # the engine keeps no tag of this test's dist dirs
        for args in (("build", "--skip-deploy"), ("docker.image",)):
            done = invoke(*args, env=env)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return f"{env['OSCB_DOCKER_IMAGE_NAME']}:{version}"


def _infra_file(path: Path, infra, db_password: str, redis_password: str) -> None:
    path.write_text(f"""\
# PostgreSQL and Redis for the swarm test (services of the same stack: its network).
# dnsrr: a service VIP needs IPVS, which these kernels lack.
services:
  postgres:
    image: {infra.postgres}
    deploy: {{endpoint_mode: dnsrr}}
    environment:
      POSTGRES_DB: orangescrum
      POSTGRES_USER: orangescrum
      POSTGRES_PASSWORD: "{db_password}"
    networks: [backend]
  redis:
    image: {infra.redis}
    command: ["redis-server", "--requirepass", "{redis_password}"]
    deploy: {{endpoint_mode: dnsrr}}
    networks: [backend]
networks:
  backend:
    driver: overlay
""")


def _remove_stack(stack: str) -> None:
    """`docker stack rm`, then whatever is left of it by label: containers, networks, volumes."""
    docker("stack", "rm", stack, check=False)
    label = f"label=com.docker.stack.namespace={stack}"

    def gone() -> bool:
        return not (docker("service", "ls", "-q", "--filter", label, check=False).stdout.split()
                    or docker("network", "ls", "-q", "--filter", label, check=False).stdout.split())

    try:
        wait_for(f"the stack {stack} to be gone", gone, timeout=90)
    except AssertionError:
        pass  # removed by force below
    for container in docker("ps", "-aq", "--filter", label, check=False).stdout.split():
        docker("rm", "-f", "-v", container, check=False)
    for network in docker("network", "ls", "-q", "--filter", label, check=False).stdout.split():
        docker("network", "rm", network, check=False)
    for _ in range(10):  # a volume is released a moment after its last container
        volumes = set(docker("volume", "ls", "-q", "--filter", label, check=False).stdout.split())
        # each task's extraction volume (named by its task ID), whatever its labels
        volumes |= {v for v in docker("volume", "ls", "-q", "--filter", f"name={stack}_extract-",
                                      check=False).stdout.split() if v.startswith(f"{stack}_extract-")}
        volumes = sorted(volumes)
        if not volumes or docker("volume", "rm", "-f", *volumes, check=False).returncode == 0:
            break
        time.sleep(1)


@pytest.fixture(scope="module")
def swarm(docker_client, tmp_path_factory, example_app):
    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME
    from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE, ensure_rootfs_image

    if swarm_state() not in ("inactive", "active"):
        pytest.skip(f"the engine's swarm state is {swarm_state()}: not touching it")
    work = tmp_path_factory.mktemp("swarm")
    token = secrets.token_hex(4)
    stack = f"oscb-swarm-{token}"
    repository = f"localhost/oscb-swarm-{token}/orangescrum"
    edge = ensure_rootfs_image(docker_client, "swarm-caddy", ("caddy",))
    infra = ensure_infra_images(docker_client)
    runtime_base = ensure_rootfs_image(docker_client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES)
    port = free_port()
    env = {**os.environ, "OSCB_BUILDER_IMAGE": DEFAULT_STANDIN_IMAGE, "OSCB_DOCKER_RUNTIME_IMAGE": runtime_base,
           "OSCB_DOCKER_IMAGE_NAME": repository, "OSCB_DOCKER_HOST_PORT": str(port),
           "OSCB_SWARM_STACK_NAME": stack, "OSCB_SWARM_EDGE_IMAGE": edge, "OSCB_SCALE_REPLICAS": str(REPLICAS),
           # KEY_FILE (helper `settings`) is not in this branch yet: every setting travels in the env file.
           "OSCB_SWARM_SECRETS": "", "SOURCE_DATE_EPOCH": "1700000000"}
    started_swarm = False
    before = {i.id for i in docker_client.images.list(all=True)}
    try:
        if swarm_state() == "inactive":
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
            started_swarm = True
        v1 = _build(work, example_app, "v1", "4.0.0", None, env)
        v2 = _build(work, example_app, "v2", V2, V2_MIGRATION, env)
        db_password, redis_password = f"Db-{secrets.token_hex(12)}", f"Rd-{secrets.token_hex(12)}"
        settings = {**VALID_SETTINGS, "DB_HOST": "postgres", "DB_PASSWORD": db_password, "REDIS_HOST": "redis",
                    "REDIS_PASSWORD": redis_password, "QUEUE_URL": f"redis://:{redis_password}@redis:6379/1"}
        text = edit_env_example((ROOT / "common" / ".env.example").read_text(), settings)
        # Sessions shared by the replicas; plain http on the loopback; php -S (the stand-in) with workers.
        text += "SESSION_HANDLER=cache\nCACHE_ENGINE=redis\nSESSION_COOKIE_SECURE=false\nPHP_CLI_SERVER_WORKERS=4\n"
        env_file = work / "swarm.env"
        env_file.write_text(text)
        env_file.chmod(0o600)
        infra_file = work / "infra.yaml"
        _infra_file(infra_file, infra, db_password, redis_password)
        docker("stack", "deploy", "--detach=true", "--resolve-image", "never", "-c", str(infra_file), stack)
        s = Swarm(stack=stack, port=port, v1=v1, v2=v2, env=env, env_file=env_file, db_password=db_password,
                  redis_password=redis_password)
        wait_for("postgres to accept logins", lambda: running(s.service("postgres")) and _try(s.psql, "SELECT 1"))
        started = time.monotonic()
        done = invoke("deploy", "--swarm", "--no-image", "--env-file", str(env_file),
                      env={**env, "OSCB_DIST_DIR": str(work / "dist-v1"), "OSCB_APP": str(work / "app-v1")})
        print(f"\n`invoke deploy --swarm` took {time.monotonic() - started:.1f}s")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        s.deploy_log = done.stderr
        yield s
    finally:
        try:
            _remove_stack(stack)
        finally:
            for tag in ("4.0.0", V2, "latest"):
                docker("rmi", f"{repository}:{tag}", check=False)
            logs = sorted(work.glob("dist-v*/logs/*.log"))
            remove_new_untagged(docker_client, built_ids([p for p in logs if not p.name.startswith("base-")]), before)
            if started_swarm:
                docker("swarm", "leave", "--force")


def _try(fn, *args):
    try:
        return fn(*args) or True
    except AssertionError:
        return False


def bench(s: Swarm, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rolling_update.py"), "--url", s.url, "--json",
                           *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    print(f"\nbenchmarks/rolling_update.py {' '.join(args)}:\n{done.stderr}")
    return figures


def test_deploy_runs_the_migration_and_three_healthy_replicas_behind_the_edge(swarm):
    assert "Running the migration job" in swarm.deploy_log and "converged" in swarm.deploy_log
    assert len(running(swarm.service("app"))) == REPLICAS
    status, body = swarm.get("/version")
    assert status == 200 and body["app"] == "4.0.0" and body["schema"]["pending"] == []
    # the replicas are dnsrr (no VIP: no IPVS needed), the edge publishes in host mode
    (app,) = json.loads(docker("service", "inspect", swarm.service("app")).stdout)
    assert app["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"
    (edge,) = json.loads(docker("service", "inspect", swarm.service("edge")).stdout)
    assert edge["Spec"]["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
    assert running(swarm.service("queue")) and len(running(swarm.service("queue"))) == 1
    # each replica extracts into a tmpfs of its own (a shared one would lose files in a rolling update)
    sources = set()
    for task in running(swarm.service("app")):
        (container,) = json.loads(docker("inspect", task["Status"]["ContainerStatus"]["ContainerID"]).stdout)
        (mount,) = [m for m in container["Mounts"] if m["Destination"] == "/var/cache/orangescrum"]
        assert mount["Name"] == f"{swarm.stack}_extract-{task['ID']}"
        sources.add(mount["Name"])
    assert len(sources) == REPLICAS


def test_a_session_survives_being_served_by_different_replicas(swarm):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    user = f"alice-{secrets.token_hex(3)}"
    request = urllib.request.Request(swarm.url + "/login", data=urllib.parse.urlencode({"user": user}).encode())
    with opener.open(request, timeout=10) as resp:
        assert resp.status == 200
    answers = [swarm.get("/session", opener)[1] for _ in range(4 * REPLICAS)]
    assert all(a["user"] == user for a in answers), answers
    # Each replica on its own (inside its container, not through the edge) knows the session.
    (cookie,) = [c for c in jar if c.name == "PHPSESSID"]
    php = ('$c = stream_context_create(["http" => ["header" => "Cookie: PHPSESSID=' + cookie.value + '"]]);'
           ' echo file_get_contents("http://127.0.0.1:" . getenv("PORT") . "/session", false, $c);')  # the image's PORT
    replicas = running(swarm.service("app"))
    assert len(replicas) == REPLICAS
    seen = []
    for task in replicas:
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        out = docker("exec", container, "/opt/orangescrum/bin/orangescrum", "php-cli", "-r", php).stdout
        seen.append(json.loads(out)["user"])
    assert seen == [user] * REPLICAS


def test_rolling_update_under_load_has_no_failed_request(swarm):
    migrate = swarm.service("migrate")
    # The deployer's order: the migration job of v2 first (it must complete), then the web replicas.
    docker("service", "update", "--detach=false", "--quiet", "--image", swarm.v2, migrate, timeout=300)
    figures = bench(swarm, "--path", "/version", "--path", "/slow", "--service", swarm.service("app"),
                    "--action", "update", "--image", swarm.v2, "--requests", "4000", "--clients", "8",
                    "--time-limit", "150")
    assert figures["failures"] == 0, figures
    assert figures["update_state"] == "completed"
    assert figures["answers"].get(V2, 0) > 0 and figures["answers"].get("4.0.0", 0) > 0  # both served during it
    status, body = swarm.get("/version")
    assert status == 200 and body["app"] == V2 and body["schema"]["version"] == V2_MIGRATION.split("_")[0]
    assert swarm.psql(f"SELECT count(*) FROM schema_migrations WHERE version = '{V2_MIGRATION.split('_')[0]}'") == "1"
    (job,) = json.loads(docker("service", "inspect", migrate).stdout)
    iteration = job["JobStatus"]["JobIteration"].get("Index", 0)  # the engine leaves a zero out
    ids = docker("service", "ps", "-q", "--no-trunc", migrate).stdout.split()
    tasks = json.loads(docker("inspect", "--type", "task", *ids).stdout)
    this = [t for t in tasks if t["JobIteration"].get("Index", 0) == iteration]
    assert [t["Status"]["State"] for t in this] == ["complete"]  # ran once for v2
    versions = {t["Spec"]["ContainerSpec"]["Image"] for t in running(swarm.service("app"))}
    assert versions == {swarm.v2} and len(running(swarm.service("app"))) == REPLICAS


def test_a_killed_replica_is_healed_with_no_failed_request(swarm):
    figures = bench(swarm, "--path", "/version", "--path", "/slow", "--service", swarm.service("app"),
                    "--action", "kill", "--requests", "1500", "--clients", "8", "--time-limit", "90", "--warmup", "3")
    assert figures["healed"] is True
    assert figures["failures"] == 0, figures


def test_invoke_deploy_swarm_rollback_returns_to_the_previous_version(swarm):
    work = swarm.env_file.parent
    done = invoke("deploy", "--swarm", "--rollback",
                  env={**swarm.env, "OSCB_DIST_DIR": str(work / "dist-v1"), "OSCB_APP": str(work / "app-v1")})
    assert done.returncode == 0, done.stderr[-4000:]
    status, body = swarm.get("/version")
    assert status == 200 and body["app"] == "4.0.0"
    assert {t["Spec"]["ContainerSpec"]["Image"] for t in running(swarm.service("app"))} == {swarm.v1}


# The entrypoint turns KEY_FILE into KEY for the settings `validate-env.sh --secret-keys` lists.
KEY_FILE_READY = "--secret-keys" in (ROOT / "docker" / "entrypoint.sh").read_text()


@pytest.mark.skipif(not KEY_FILE_READY, reason="the entrypoint does not read KEY_FILE yet (helper settings)")
def test_secrets_travel_as_docker_secrets_not_in_the_service_spec(swarm):
    keys = ("DB_PASSWORD", "REDIS_PASSWORD", "SECURITY_SALT", "QUEUE_URL")  # QUEUE_URL holds the Redis password
    work = swarm.env_file.parent
    done = invoke("deploy", "--swarm", "--no-image", "--env-file", str(swarm.env_file),
                  env={**swarm.env, "OSCB_DIST_DIR": str(work / "dist-v1"), "OSCB_APP": str(work / "app-v1"),
                       "OSCB_SWARM_SECRETS": ",".join(keys)})
    assert done.returncode == 0, done.stderr[-8000:]
    (app,) = json.loads(docker("service", "inspect", swarm.service("app")).stdout)
    container_spec = app["Spec"]["TaskTemplate"]["ContainerSpec"]
    env = dict(e.split("=", 1) for e in container_spec["Env"])
    assert {f"{k}_FILE" for k in keys} <= set(env) and not set(keys) & set(env)
    spec = json.dumps(app["Spec"])  # (PreviousSpec is the version before, with the values in its env)
    assert swarm.db_password not in spec and swarm.redis_password not in spec
    assert sorted(s["File"]["Name"] for s in container_spec["Secrets"]) == sorted(keys)
    # the replicas read them: the database (DB_PASSWORD) and the sessions (REDIS_PASSWORD) work
    status, body = swarm.get("/version")
    assert status == 200 and body["schema"]["pending"] == []
    assert swarm.get("/session")[1]["store"] == "redis"
