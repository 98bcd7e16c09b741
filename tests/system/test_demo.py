"""`invoke demo` end to end, as the README's first command runs it.

Isolated from a user's own demo: its own dist dir, compose project, image name
and a free port; it stops the stack and removes the image it built.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
import uuid

import pytest

from docker_support import removing_deps_tags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def isolated(tmp_path, docker_client):
    name = f"osdemo{uuid.uuid4().hex[:8]}"
    env = {"OSCB_DIST_DIR": str(tmp_path / "dist"), "OSCB_DOCKER_HOST_PORT": str(free_port()),
           "OSCB_DOCKER_IMAGE_NAME": f"localhost/{name}", "OSCB_BUILDER_BASE_REPOSITORY": f"{name}-base",
           "COMPOSE_PROJECT_NAME": name}
    with removing_deps_tags(docker_client, tmp_path / "dist"):
        yield env
    tree = tmp_path / "dist" / "docker"
    if tree.is_dir():
        subprocess.run(["docker", "compose", "down", "-v", "-t", "10", "--remove-orphans"], cwd=tree,
                       env={**os.environ, **env, "ORANGESCRUM_ENV_FILE": str(tmp_path / "dist/demo/demo.env")},
                       capture_output=True, check=False)
    for img in docker_client.images.list():
        if any(t.startswith((f"localhost/{name}:", f"{name}-base:")) for t in img.tags):
            docker_client.images.remove(img.id, force=True)


def test_demo_runs_the_whole_pipeline_and_serves_the_app(run_invoke, isolated, tmp_path):
    done = run_invoke("demo", env=isolated)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for label in ("binary", "dist/docker", "dist/native", "build logs", "runtime image", "demo env file",
                  "running app", "stop it"):
        assert label in out, label
    assert (tmp_path / "dist/build/osv4-prod").is_file()
    assert (tmp_path / "dist/docker/docker-compose.yaml").is_file()
    assert (tmp_path / "dist/native/systemd/orangescrum.service").is_file()
    env_file = tmp_path / "dist/demo/demo.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    port = isolated["OSCB_DOCKER_HOST_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
        assert resp.status == 200
    # secrets of the demo env never reach the output
    secrets = [line.split("=", 1)[1] for line in env_file.read_text().splitlines()
               if line.startswith(("DB_PASSWORD=", "SECURITY_SALT="))]
    for secret in secrets:
        assert secret not in done.stdout and secret not in done.stderr
