"""The Docker deployment's sources, rendered: Dockerfile, compose file, .dockerignore,
the runtime image plan and build context. Pure: no engine, no network."""

from __future__ import annotations

import datetime
import io
import tarfile
from pathlib import Path

import pytest

from cloudbuilder.assemble import BINARY_PATH, plan_tree, render_template, write_tree
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.dockerimage import (
    CONTEXT_FILES,
    LABEL_ROLE,
    build_context,
    check_tree,
    inputs_digest,
    plan_runtime_image,
    rfc3339,
)
from cloudbuilder.errors import ConfigError

import yaml  # noqa: E402 - pyyaml is in the dev extra

ROOT = Path(__file__).resolve().parents[2]


def make_cfg(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


@pytest.fixture
def tree(tmp_path) -> Path:
    """dist/docker rendered from the real sources with a small fake binary."""
    binary = tmp_path / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\necho fake\n")
    binary.chmod(0o755)
    cfg = make_cfg(tmp_path)
    out = tmp_path / "tree"
    write_tree(plan_tree(cfg, "docker", binary), out, cfg.source_date_epoch)
    return out


def render(tmp_path: Path, name: str, **values) -> str:
    cfg = make_cfg(tmp_path, **values)
    plan = plan_tree(cfg, "docker", tmp_path)
    source = next(f.source for f in plan.files if f.dest == name)
    return render_template(source.read_text(), plan.context, name=name, search_path=plan.search_path)


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


@pytest.mark.parametrize("epoch", [0, 59, 86399, 68169600, 951782400, 951868800, 1700000000, 1709210096,
                                   2147483647, 4102444799, 4107542400, 253402300799])
def test_created_label_is_rfc3339_of_the_epoch(tmp_path, epoch):
    text = render(tmp_path, "Dockerfile", source_date_epoch=str(epoch))
    want = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"ARG CREATED={want}\n" in text
    assert rfc3339(epoch) == want


def test_dockerfile_takes_base_user_and_version_from_the_config(tmp_path):
    text = render(tmp_path, "Dockerfile", **{"docker.runtime_image": "registry.example/debian:12-slim",
                                             "docker.uid": "2345", "docker.gid": "3456", "version": "4.2.0"})
    assert "ARG RUNTIME_IMAGE=registry.example/debian:12-slim\n" in text
    assert text.count("ARG APP_UID=2345\n") == 2 and text.count("ARG APP_GID=3456\n") == 2
    assert "ARG VERSION=4.2.0\n" in text
    # numeric user, so runAsNonRoot-style checks work
    assert "\nUSER ${APP_UID}:${APP_GID}\n" in text
    # bash's read-only UID must not be the build arg's name
    assert "ARG UID" not in text and "ARG GID" not in text


def test_dockerfile_copies_exactly_the_context_files(tmp_path):
    text = render(tmp_path, "Dockerfile")
    copies = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line]
    assert copies == list(CONTEXT_FILES[1:])
    assert "\nADD " not in text
    assert "COPY --from=rootfs /rootfs/ /" in text  # the minimal userland, nothing else of the base
    assert "\nFROM scratch\n" in text


def test_dockerfile_runtime_contract(tmp_path):
    text = render(tmp_path, "Dockerfile", app_webroot="public", **{"service.queue_max_runtime": "900"})
    for line in ("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "TMPDIR=/var/cache/orangescrum",
                 "PORT=8080", "WEBROOT=public", "QUEUE_WORKER_MAX_RUNTIME=900"):
        assert line in text
    assert 'CMD ["/opt/orangescrum/entrypoint.sh", "healthcheck"]' in text
    assert 'ENTRYPOINT ["/opt/orangescrum/entrypoint.sh"]' in text and 'CMD ["server"]' in text
    assert "STOPSIGNAL SIGTERM" in text
    for label in ("version", "revision", "created", "source", "base.name"):
        assert f"org.opencontainers.image.{label}=" in text
    # no secret-shaped build arg or env, no GITHUB_TOKEN
    assert "GITHUB_TOKEN" not in text and "PASSWORD" not in text and "SECRET" not in text


def test_binary_checksum_is_checked_when_known(tmp_path):
    cfg = make_cfg(tmp_path)
    plan = plan_tree(cfg, "docker", tmp_path)
    source = next(f.source for f in plan.files if f.dest == "Dockerfile").read_text()
    without = render_template(source, plan.context, search_path=plan.search_path)
    assert "\nARG BINARY_SHA256=\n" in without  # `invoke docker.image` passes it as a build arg
    with_sum = render_template(source, {**plan.context, "binary_sha256": "ab" * 32}, search_path=plan.search_path)
    assert f"\nARG BINARY_SHA256={'ab' * 32}\n" in with_sum
    assert "/opt/orangescrum/bin/orangescrum | sha256sum -c -s;" in with_sum  # busybox: -s, not --quiet
    assert 'org.orangescrum.binary.sha256="${BINARY_SHA256}"' in with_sum


def test_dockerignore_admits_exactly_the_context(tree):
    lines = [line for line in (tree / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert [line[1:] for line in lines[1:]] == list(CONTEXT_FILES[1:])
    assert all(line.startswith("!") for line in lines[1:])


# --------------------------------------------------------------------------
# docker-compose.yaml
# --------------------------------------------------------------------------


def compose_model(tmp_path: Path, **values) -> dict:
    return yaml.safe_load(render(tmp_path, "docker-compose.yaml", **values))


def test_compose_app_and_queue_are_hardened(tmp_path):
    model = compose_model(tmp_path, **{"docker.uid": "1500", "docker.gid": "1600", "docker.memory_limit": "2g",
                                       "docker.queue_memory_limit": "256m", "service.tasks_max": "300"})
    services = model["services"]
    for name in ("app", "queue"):
        s = services[name]
        assert s["image"] == "orangescrum/orangescrum:4.1.0"
        assert s["pull_policy"] == "never"
        assert s["read_only"] is True
        assert s["cap_drop"] == ["ALL"]
        assert s["security_opt"] == ["no-new-privileges:true"]
        assert s["restart"] == "unless-stopped"
        assert s["env_file"] == "${ORANGESCRUM_ENV_FILE:-.env}"
        assert s["environment"] == {"PORT": "8080", "WEBROOT": "webroot", "TMPDIR": "/var/cache/orangescrum",
                                    "PHP_INI_SCAN_DIR": "/etc/orangescrum/php.d"}
        assert s["tmpfs"] == ["/var/cache/orangescrum:exec,mode=0700,uid=1500,gid=1600"]
        assert s["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}
        assert s["deploy"]["resources"]["limits"]["pids"] == 300
        assert "profiles" not in s
    # the state volume (app.state_paths) and the operator's additions to the embedded Caddyfile and php.ini, read-only
    assert services["app"]["volumes"] == ["state:/var/lib/orangescrum", "./caddy.d:/etc/orangescrum/caddy.d:ro",
                                          "./php.d:/etc/orangescrum/php.d:ro"]
    assert services["queue"]["volumes"] == ["state:/var/lib/orangescrum"]
    assert services["app"]["deploy"]["resources"]["limits"]["memory"] == "2g"
    assert services["queue"]["deploy"]["resources"]["limits"]["memory"] == "256m"
    assert services["app"]["stop_grace_period"] == "30s"
    assert services["queue"]["stop_grace_period"] == "60s"
    assert services["app"]["command"] == ["server"] and services["queue"]["command"] == ["queue-worker"]
    assert services["app"]["healthcheck"]["test"] == ["CMD", "/opt/orangescrum/entrypoint.sh", "healthcheck"]
    assert services["queue"]["healthcheck"] == {"disable": True}
    assert services["app"]["build"] == {"context": "."}


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "0.0.0.0"])
def test_compose_publishes_the_app_on_the_bind_address(tmp_path, address):
    model = compose_model(tmp_path, **{"docker.bind_address": address, "docker.host_port": "18123"})
    assert model["services"]["app"]["ports"] == [
        {"target": 8080, "host_ip": address, "published": "18123", "protocol": "tcp"}]
    assert "ports" not in model["services"]["queue"]


def test_compose_loopback_by_default(tmp_path):
    assert compose_model(tmp_path)["services"]["app"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_infra_services_only_under_the_infra_profile(tmp_path):
    services = compose_model(tmp_path)["services"]
    assert set(services) == {"migrate", "app", "queue", "postgres", "redis", "minio"}
    for name in ("postgres", "redis", "minio"):
        assert services[name]["profiles"] == ["infra"]


def test_override_example_is_valid_yaml_for_app(tree):
    model = yaml.safe_load((tree / "docker-compose.override.example.yaml").read_text().replace("!override", ""))
    assert set(model["services"]) == {"app"}


# --------------------------------------------------------------------------
# The runtime image plan and its build context
# --------------------------------------------------------------------------


def test_plan_tags_args_and_labels(tmp_path):
    cfg = make_cfg(tmp_path, **{"docker.image_name": "localhost/x/os", "docker.runtime_image": "base:1",
                                "docker.uid": "1001"})
    plan = plan_runtime_image(cfg, "abc123", "f" * 64)
    assert plan.refs == ("localhost/x/os:4.1.0", "localhost/x/os:latest")
    assert plan.buildargs == {"RUNTIME_IMAGE": "base:1", "APP_UID": "1001", "APP_GID": "1000", "VERSION": "4.1.0",
                              "REVISION": "abc123", "CREATED": "2023-11-14T22:13:20Z", "SOURCE_DATE_EPOCH": "1700000000",
                              "BINARY_SHA256": "f" * 64}
    assert plan.labels == {LABEL_ROLE: "runtime"}
    assert plan.tree == cfg.dist_dir / "docker"


def test_context_is_the_allowlist_deterministic_and_executable(tree):
    (tree / ".env").write_text("DB_PASSWORD=canary-should-never-travel\n")
    (tree / "docker-compose.override.yaml").write_text("services: {}\n")
    first, second = build_context(tree), build_context(tree)
    assert first == second
    assert b"canary-should-never-travel" not in first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == list(CONTEXT_FILES)
    modes = {m.name: m.mode for m in members}
    assert modes["Dockerfile"] == 0o644
    assert all(modes[name] == 0o755 for name in CONTEXT_FILES[1:])
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members)


def test_context_refuses_an_incomplete_tree(tree):
    (tree / BINARY_PATH["docker"]).unlink()
    with pytest.raises(ConfigError, match="run `invoke dist.docker`"):
        build_context(tree)
    with pytest.raises(ConfigError, match="osv4-prod is missing"):
        check_tree(tree, "4.1.0")


def test_tree_of_another_version_is_refused(tree):
    check_tree(tree, "4.1.0")
    with pytest.raises(ConfigError, match="assembled for version 4.1.0, but version is 5.0.0"):
        check_tree(tree, "5.0.0")


def test_inputs_digest_covers_context_args_and_base(tmp_path, tree):
    plan = plan_runtime_image(make_cfg(tmp_path), "r1")
    context = build_context(tree)
    base = inputs_digest(plan, context, "sha256:base1")
    assert base == inputs_digest(plan, context, "sha256:base1")
    assert base != inputs_digest(plan, context, "sha256:base2")
    assert base != inputs_digest(plan, context + b"x", "sha256:base1")
    assert base != inputs_digest(plan_runtime_image(make_cfg(tmp_path), "r2"), context, "sha256:base1")
