"""Declared state in the Docker deployment: uploads, logs, sessions and the installer's
config/app_local.php survive `docker compose restart`, `down` + `up -d` (containers
recreated) and a new version (a rebuilt binary whose app changed), and the queue
container sees the same files as the web container.

One build per module (compose_fixtures.stack_build: stand-in builder, example app);
the new version is the same app with another version number, built and imaged again
through the CLI as a release engineer does. The stack runs under its own project name
on a free port and is purged (containers, network, the state volume) whatever happens.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import subprocess
import time

import pytest

try:  # tests/system is on sys.path (pytest's default rootdir-relative import)
    from compose_fixtures import Compose, invoke, stack_build  # noqa: F401
except ImportError:  # tests/system became a package
    from .compose_fixtures import Compose, invoke, stack_build  # noqa: F401

pytestmark = pytest.mark.system

STATE = "/var/lib/orangescrum"


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def wait_serving(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"nothing answers on port {port}")


def observe(stack, port: int, cookie: str) -> dict:
    """What the running deployment shows of the state written at the start."""
    compose: Compose = stack["compose"]
    upload = request(port, "GET", "/uploads/kept.txt")  # the app reads webroot/files/kept.txt
    session = json.loads(request(port, "GET", "/session", headers={"Cookie": cookie})[2])
    install = json.loads(request(port, "GET", "/install")[2])
    page = request(port, "GET", "/")[2].decode()
    version = re.search(r'<span id="version">([^<]*)</span>', page).group(1)  # /version needs the database
    logs = compose("exec", "-T", "app", "sh", "-c", f"cat {STATE}/logs/*.log").stdout
    # The queue worker's own view of the app: its extraction directory's links.
    queue = compose("exec", "-T", "queue", "sh", "-c",
                    "cd \"$TMPDIR\"/queue-worker/frankenphp_*/app && cat webroot/files/kept.txt "
                    "&& test -f config/app_local.php && echo queue-sees-app_local").stdout
    return {"upload": (upload[0], upload[2]), "user": session.get("user"), "installed": install["installed"],
            "installed_version": install["installed_version"], "version": version,
            "logged": "upload: stored webroot/files/kept.txt" in logs, "queue": queue.split()}


@pytest.fixture(scope="module")
def stack(stack_build, docker_client):
    tree = stack_build.tree
    (tree / ".env").write_text(stack_build.valid_env + "SESSION_HANDLER=php\nSESSION_COOKIE_SECURE=false\n")
    compose = Compose(docker_client, tree, project=f"oscb-test-state-{secrets.token_hex(4)}")
    new_tags = []
    try:
        compose("up", "-d")
        compose.wait_healthy()
        yield {"compose": compose, "tags": new_tags}
    finally:
        compose.purge()
        for tag in new_tags:
            try:
                docker_client.images.remove(tag)
            except Exception:  # noqa: BLE001 - not built
                pass


def test_state_survives_restart_recreate_and_a_new_version(stack, stack_build, docker_client):
    port = stack_build.port
    compose: Compose = stack["compose"]
    wait_serving(port)
    status, _, body = request(port, "POST", "/uploads?name=kept.txt", body=b"an uploaded file\n",
                              headers={"Content-Type": "application/octet-stream"})
    assert status == 201, body
    status, headers, body = request(port, "POST", "/login", body=b"user=alice",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    cookie = next(v for k, v in headers if k.lower() == "set-cookie").split(";", 1)[0]
    status, _, body = request(port, "POST", "/install")
    assert status == 201, body
    first = observe(stack, port, cookie)
    expected = {"upload": (200, b"an uploaded file\n"), "user": "alice", "installed": True,
                "installed_version": stack_build.version, "logged": True,
                "queue": ["an", "uploaded", "file", "queue-sees-app_local"]}
    assert {k: first[k] for k in expected} == expected
    # Everything is in the volume, nothing of it in the containers' tmpfs.
    listing = compose("exec", "-T", "app", "sh", "-c",
                      f"ls {STATE}/webroot/files {STATE}/config/app_local.php {STATE}/tmp/sessions").stdout
    assert "kept.txt" in listing and "app_local.php" in listing and "sess_" in listing

    compose("restart")
    compose.wait_healthy()
    wait_serving(port)
    assert {k: observe(stack, port, cookie)[k] for k in expected} == expected

    ids = {c.id for c in compose.containers()}
    compose("down")
    compose("up", "-d")
    compose.wait_healthy()
    wait_serving(port)
    assert not ids & {c.id for c in compose.containers()}  # recreated
    assert {k: observe(stack, port, cookie)[k] for k in expected} == expected

    # A new version: the app changed (its version), rebuilt and imaged through the CLI.
    app = stack_build.app
    manifest = json.loads((app / "composer.json").read_text())
    manifest["version"] = "4.0.1"
    (app / "composer.json").write_text(json.dumps(manifest, indent=4) + "\n")
    git = ["git", "-C", str(app), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(git + ["commit", "-qam", "4.0.1"], check=True, capture_output=True)
    stack["tags"].append(f"{stack_build.repository}:4.0.1")
    done = invoke("build", "--skip-deploy", env=stack_build.env)
    assert done.returncode == 0, done.stderr[-4000:]
    done = invoke("docker.image", env=stack_build.env)
    assert done.returncode == 0, done.stderr[-4000:]
    compose("up", "-d")
    compose.wait_healthy()
    wait_serving(port)
    (container,) = compose.containers("app")
    assert container.image.tags and f"{stack_build.repository}:4.0.1" in container.image.tags
    after = observe(stack, port, cookie)
    assert after["version"] == "4.0.1"
    assert {k: after[k] for k in expected} == expected  # installed_version: still the one that installed it
