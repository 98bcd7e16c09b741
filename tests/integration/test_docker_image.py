"""The runtime image, built with a real engine from a tree with a small fake binary.

Fast checks of the image itself (the compose stack with the stand-in binary is
in tests/system/test_compose.py): the SDK build and its no-op rebuild, OCI
labels, the non-root numeric user, the pruned and setuid-free root file system,
the CA bundle, the entrypoint under a read-only root, and `.dockerignore` on the
`docker compose build` path (BuildKit), proven by scanning `docker save`.

Everything made here is removed at the end: containers, the test's image tags,
and the untagged stage images its builds created. The local Debian runtime base
(localhost/orangescrum-standin/rootfs:runtime-*) is a cached fixture and stays.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.dockerimage import LABEL_INPUTS, build_context, build_runtime_image, plan_runtime_image, rfc3339
from cloudbuilder.engine import DockerEngine
from docker_support import built_ids, remove_new_untagged, scan_save

pytestmark = pytest.mark.integration

MARKER = "fake-frankenphp-" + secrets.token_hex(8)  # proves the scan sees the binary's layer
CANARY = "CANARY-" + secrets.token_hex(12)
# A new SOURCE_DATE_EPOCH per run: the tree's mtimes differ from any earlier run's,
# so BuildKit's context cache cannot serve an earlier run's same-size binary.
EPOCH = 1700000000 + secrets.randbelow(10**6)
FAKE_BINARY = f"""#!/bin/sh
# {MARKER}: prints how it was started
echo "fake-binary pid=$$ uid=$(id -u) gid=$(id -g) tmpdir=$TMPDIR args=$*"
"""
VALID_ENV = {
    "FULL_BASE_URL": "https://os.example.org",
    "SECURITY_SALT": "0123456789abcdef0123456789abcdef0123",
    "DB_HOST": "db.internal",
    "DB_PORT": "5432",
    "DB_USERNAME": "orangescrum",
    "DB_PASSWORD": "Zq9-valid-Secret-value",
    "DB_NAME": "orangescrum",
}
TEST_LABEL = {"org.orangescrum.cloudbuilder.test": "test_docker_image"}


# --------------------------------------------------------------------------
# Helpers: scan_save, built_ids, remove_new_untagged live in tests/docker_support.py
# --------------------------------------------------------------------------




# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime_base(docker_client) -> str:
    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME
    from cloudbuilder.standin import ensure_rootfs_image

    return ensure_rootfs_image(docker_client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, runtime_base):
    tmp = tmp_path_factory.mktemp("docker-image")
    binary = tmp / "frankenphp"
    binary.write_text(FAKE_BINARY)
    binary.chmod(0o755)
    repo = f"localhost/oscb-test-{secrets.token_hex(4)}/orangescrum"
    config = resolve([Layer("test", {
        "app": str(tmp), "dist_dir": str(tmp / "dist"), "version": "4.0.0", "source_date_epoch": str(EPOCH),
        "docker.runtime_image": runtime_base, "docker.image_name": repo, "binary": str(binary)})],
        cwd=tmp, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    tree = assemble_tree(config, "docker", binary).path
    # What an operator leaves in the directory must never reach an image.
    (tree / ".env").write_text(f"DB_PASSWORD={CANARY}\n")
    (tree / "docs" / "NOTES.md").write_text(f"token {CANARY}\n")
    (tree / "docker-compose.override.yaml").write_text(f"# {CANARY}\nservices: {{}}\n")
    return config


@pytest.fixture(scope="module")
def image(docker_client, cfg):
    """The image built by `build_runtime_image` (the code behind `invoke docker.image`)."""
    before = {i.id for i in docker_client.images.list(all=True)}
    with DockerEngine() as engine:
        first = build_runtime_image(cfg, engine)
        second = build_runtime_image(cfg, engine)
    try:
        yield {"first": first, "second": second, "ref": first.tags[0]}
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": "org.orangescrum.cloudbuilder.test"}):
            if container.labels.get("org.orangescrum.cloudbuilder.test") == TEST_LABEL["org.orangescrum.cloudbuilder.test"]:
                container.remove(force=True)
        for ref in first.tags:
            try:
                docker_client.images.remove(ref)
            except Exception:  # noqa: BLE001 - already gone
                pass
        remove_new_untagged(docker_client, built_ids(sorted((cfg.dist_dir / "logs").glob("runtime-image-*.log"))),
                            before)


def run(client, ref: str, *command: str, env: dict | None = None, read_only=True, tmpfs=True, user=None,
        entrypoint=None, volumes=None) -> tuple[int, str]:
    container = client.containers.run(
        ref, list(command) or None, detach=True, environment=env or {}, read_only=read_only, labels=TEST_LABEL,
        volumes=volumes or {},
        tmpfs={"/var/cache/orangescrum": "exec,mode=0700,uid=1000,gid=1000"} if tmpfs else {},
        cap_drop=["ALL"], security_opt=["no-new-privileges:true"], network_disabled=True,
        user=user, entrypoint=entrypoint,
    )
    try:
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


# --------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------


def test_build_tags_version_and_latest_and_a_rebuild_is_a_no_op(docker_client, image, cfg):
    first, second = image["first"], image["second"]
    assert first.rebuilt and not second.rebuilt and first.id == second.id
    img = docker_client.images.get(first.id)
    repo = cfg.docker.image_name
    assert set(img.tags) == {f"{repo}:4.0.0", f"{repo}:latest"}
    assert img.labels[LABEL_INPUTS]


def test_oci_labels(docker_client, image, runtime_base):
    labels = docker_client.images.get(image["ref"]).labels
    assert labels["org.opencontainers.image.version"] == "4.0.0"
    assert labels["org.opencontainers.image.created"] == rfc3339(EPOCH)  # from SOURCE_DATE_EPOCH
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.revision"]  # the app's commit, or "unknown" outside git
    assert labels["org.opencontainers.image.base.name"] == runtime_base


def test_image_config(docker_client, image):
    config = docker_client.images.get(image["ref"]).attrs["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["/opt/orangescrum/entrypoint.sh"] and config["Cmd"] == ["server"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/orangescrum/entrypoint.sh", "healthcheck"]
    assert config["StopSignal"] == "SIGTERM"
    assert "8080/tcp" in config["ExposedPorts"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["TMPDIR"] == "/var/cache/orangescrum" and env["PORT"] == "8080"
    assert not any(k in env for k in ("GITHUB_TOKEN", "DB_PASSWORD", "SECURITY_SALT"))


def test_root_filesystem_is_pruned_and_without_setuid(docker_client, image):
    script = (
        "set -eu; "
        "echo setuid: $(find / -xdev -type f -perm /6000 | wc -l); "
        "echo envfiles: $(find / -xdev -name '.env*' | wc -l); "
        "echo locales: $(ls /usr/share/locale | wc -l); "
        "echo aptlists: $(ls /var/lib/apt/lists | wc -l); "
        "test -s \"$SSL_CERT_FILE\" && echo cabundle: $(grep -c 'BEGIN CERTIFICATE' \"$SSL_CERT_FILE\"); "
        "echo user: $(getent passwd 1000 | cut -d: -f1,6,7); "
        "stat -c 'mode: %n %a %u:%g' /opt/orangescrum/bin/orangescrum /opt/orangescrum/entrypoint.sh "
        "/opt/orangescrum/helpers/validate-env.sh /var/cache/orangescrum"
    )
    code, out = run(docker_client, image["ref"], "-c", script, user="0", entrypoint=["/bin/sh"], tmpfs=False)
    assert code == 0, out
    facts = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("mode"))
    assert facts["setuid"] == "0" and facts["envfiles"] == "0"
    assert facts["locales"] == "0" and facts["aptlists"] == "0"
    assert int(facts["cabundle"]) > 50
    assert facts["user"] == "orangescrum:/var/lib/orangescrum:/usr/sbin/nologin"
    modes = [line.split()[1:] for line in out.splitlines() if line.startswith("mode:")]
    assert modes == [["/opt/orangescrum/bin/orangescrum", "755", "0:0"],
                     ["/opt/orangescrum/entrypoint.sh", "755", "0:0"],
                     ["/opt/orangescrum/helpers/validate-env.sh", "755", "0:0"],
                     ["/var/cache/orangescrum", "700", "1000:1000"]]


def test_overhead_over_the_binary_is_below_the_base(docker_client, image, runtime_base, cfg):
    size = docker_client.images.get(image["ref"]).attrs["Size"]
    base = docker_client.images.get(runtime_base).attrs["Size"]
    binary = Path(cfg.binary).stat().st_size
    # our layers add only the binary and ~20 KB of scripts; the base is pruned
    assert size - binary < base, (size, binary, base)


# --------------------------------------------------------------------------
# The entrypoint in the image
# --------------------------------------------------------------------------


def test_server_runs_as_pid_1_and_uid_1000_on_a_read_only_root(docker_client, image):
    code, out = run(docker_client, image["ref"], env=VALID_ENV)
    assert code == 0, out
    assert "fake-binary pid=1 uid=1000 gid=1000 tmpdir=/var/cache/orangescrum " in out
    assert out.rstrip().endswith("args=php-server --listen :8080 --root webroot")


def test_invalid_environment_exits_1_with_the_report(docker_client, image):
    env = {**VALID_ENV, "DB_PASSWORD": CANARY[:11], "SECURITY_SALT": "CHANGE_ME"}
    code, out = run(docker_client, image["ref"], env=env)
    assert code == 1
    assert "error: DB_PASSWORD: must be at least 12 characters long" in out
    assert "error: SECURITY_SALT: is still a placeholder" in out
    assert "entrypoint: refusing to start" in out and "fake-binary" not in out
    assert CANARY[:11] not in out


def test_validate_command(docker_client, image):
    code, out = run(docker_client, image["ref"], "validate", env=VALID_ENV)
    assert code == 0 and "validate-env: environment: OK" in out


def test_secret_file_mounted_like_a_docker_secret(docker_client, image, tmp_path):
    """DB_PASSWORD_FILE=/run/secrets/...: the server starts without DB_PASSWORD in its environment settings."""
    secret = tmp_path / "db_password"
    secret.write_text(VALID_ENV["DB_PASSWORD"] + "\n")
    os.chown(secret, 1000, 1000)
    secret.chmod(0o400)
    env = {k: v for k, v in VALID_ENV.items() if k != "DB_PASSWORD"}
    env["DB_PASSWORD_FILE"] = "/run/secrets/db_password"
    volumes = {str(secret): {"bind": "/run/secrets/db_password", "mode": "ro"}}
    code, out = run(docker_client, image["ref"], env=env, volumes=volumes)
    assert code == 0, out
    assert "fake-binary pid=1 uid=1000" in out and VALID_ENV["DB_PASSWORD"] not in out
    os.chown(secret, 0, 0)  # a secret the image's user cannot read: refused, named by its key
    code, out = run(docker_client, image["ref"], env=env, volumes=volumes)
    assert code == 1 and "fake-binary" not in out
    assert "error: DB_PASSWORD_FILE: cannot read the file it names" in out
    code, out = run(docker_client, image["ref"], env={**env, "DB_PASSWORD": VALID_ENV["DB_PASSWORD"]},
                    volumes=volumes)
    assert code == 1 and "error: DB_PASSWORD: is set and DB_PASSWORD_FILE too" in out


def test_read_only_root_without_the_tmpfs_is_explained(docker_client, image):
    code, out = run(docker_client, image["ref"], env=VALID_ENV, tmpfs=False)
    assert code == 1
    assert "TMPDIR /var/cache/orangescrum is not a writable directory" in out
    assert "--tmpfs /var/cache/orangescrum:exec,uid=1000,gid=1000" in out


# --------------------------------------------------------------------------
# No secret in any layer, on both build paths
# --------------------------------------------------------------------------


def test_sdk_build_carries_no_operator_file(docker_client, image):
    assert scan_save(docker_client, image["ref"], [CANARY, MARKER]) == {MARKER}


def test_compose_build_honours_dockerignore(docker_client, image, cfg, tmp_path):
    """`docker compose build` in the tree (BuildKit here) sends only what .dockerignore admits."""
    if not shutil.which("docker"):
        pytest.skip("no docker CLI")
    tree = cfg.dist_dir / "docker"
    ref = f"{cfg.docker.image_name}:compose-build"
    override = tmp_path / "tag.yaml"
    override.write_text(f"services:\n  app:\n    image: {ref}\n")
    env = {**os.environ, "ORANGESCRUM_ENV_FILE": str(tree / ".env")}
    sha256 = hashlib.sha256((tree / "orangescrum-app" / "osv4-prod").read_bytes()).hexdigest()
    try:
        done = subprocess.run(["docker", "compose", "-p", f"oscb-test-{secrets.token_hex(4)}",
                               "-f", "docker-compose.yaml", "-f", str(override), "build",
                               "--build-arg", f"BINARY_SHA256={sha256}", "app"],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert scan_save(docker_client, ref, [CANARY, MARKER]) == {MARKER}
        config = docker_client.images.get(ref).attrs["Config"]
        assert config["User"] == "1000:1000"
        labels = docker_client.images.get(ref).labels
        assert labels["org.opencontainers.image.created"] == rfc3339(EPOCH)
        assert labels["org.orangescrum.binary.sha256"] == sha256
    finally:
        try:
            docker_client.images.remove(ref)
        except Exception:  # noqa: BLE001 - the build failed before tagging
            pass


def test_a_binary_that_is_not_the_expected_one_fails_the_build(docker_client, image, cfg):
    """The Dockerfile's checksum check (against a stale build cache, or a damaged copy)."""
    from cloudbuilder.engine import BuildLog
    from cloudbuilder.errors import BuildError

    plan = plan_runtime_image(cfg, "test", "0" * 64)
    tag = f"{cfg.docker.image_name}:wrong-binary"
    log = BuildLog(cfg.dist_dir / "logs" / "runtime-image-wrong-binary.log", "image")
    with DockerEngine() as engine, pytest.raises(BuildError) as info:
        engine.build(context=build_context(cfg.dist_dir / "docker"), dockerfile="Dockerfile", tag=tag,
                     buildargs=plan.buildargs, labels={}, log=log)
    assert "a stale build cache?" in str(info.value)
    assert docker_client.images.list(name=tag) == []
