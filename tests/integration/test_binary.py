"""The binary stage against a real Docker engine, with the stand-in builder.

Each test uses its own base-image repository (so the plan sees only its own
bases) and removes every base and embed image it made; the stand-in builder
and rootfs images are cached fixtures and stay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from cloudbuilder.binary import DEPS_STEP, EMBED_REPOSITORY, LABEL_ROLE, build_binary, deps_tag
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.engine import DockerEngine
from cloudbuilder.errors import BuildError, ConfigError
from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE


class CountingEngine(DockerEngine):
    """The real adapter, counting the docker builds it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.builds: list[str] = []

    def build(self, **kwargs):
        self.builds.append(kwargs["tag"])
        return super().build(**kwargs)


@pytest.fixture
def engine(docker_client):
    with CountingEngine() as e:
        yield e


@pytest.fixture
def base_repo(docker_client, tmp_path):
    repo = f"orangescrum-test-base-{uuid.uuid4().hex[:8]}"
    yield repo
    try:  # the dependency layer this test's dist dir pinned (other dist dirs' tags stay)
        docker_client.images.remove(deps_tag(tmp_path / "dist"))
    except Exception:
        pass
    for img in docker_client.images.list(filters={"label": f"{LABEL_ROLE}"}):
        if any(t.startswith(repo + ":") for t in img.tags) or any(t.startswith(EMBED_REPOSITORY) for t in img.tags):
            docker_client.images.remove(img.id, force=True)
    docker_client.images.prune(filters={"dangling": True})


@pytest.fixture
def app(tmp_path, example_app) -> Path:
    dest = tmp_path / "app"
    shutil.copytree(example_app, dest, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    return dest


def make_cfg(tmp_path: Path, app: Path, base_repo: str, **values):
    layer = Layer("test", {
        "app": str(app), "dist_dir": str(tmp_path / "dist"), "builder.image": DEFAULT_STANDIN_IMAGE,
        "builder.base_repository": base_repo, "builder.php_extensions": "ctype,mbstring,pdo,pdo_pgsql,json",
        "source_date_epoch": "1700000000", **values,
    })
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts("4.0.0", "test", None))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_healthz(binary: Path, tmp_path: Path) -> str:
    port = free_port()
    tmp = tmp_path / "run-tmp"
    tmp.mkdir(exist_ok=True)
    # LISTEN_*: the embedded Caddyfile's listen address (it replaces the --listen flag), as server-env sets it
    proc = subprocess.Popen([str(binary), "php-server", "--listen", f"127.0.0.1:{port}", "--root", "webroot"],
                            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp), "LISTEN_HOST": "127.0.0.1",
                                 "LISTEN_PORT": str(port)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                assert proc.poll() is None, "php-server exited"
                assert time.monotonic() < deadline, "php-server did not answer"
                time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def base_images(client, repo: str) -> set[str]:
    return {i.id for i in client.images.list(name=repo)}


def test_cold_build_then_no_op_then_app_change_then_base_change(tmp_path, engine, app, base_repo, docker_client):
    cfg = make_cfg(tmp_path, app, base_repo)

    # cold: base and embed are built; the binary runs and serves the app
    cold = build_binary(cfg, engine)
    assert cold.base_built and cold.embed_built and cold.docker_steps > 0
    assert len(engine.builds) == 2
    assert "FrankenPHP v1.12.7" in cold.version_output
    done = subprocess.run([str(cold.path), "version"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert done.returncode == 0
    assert '"status":"ok"' in serve_healthz(cold.path, tmp_path).replace(" ", "")
    first_bases = base_images(docker_client, base_repo)
    assert len(first_bases) == 1
    # the embed image is not left behind
    assert docker_client.images.list(name=EMBED_REPOSITORY) == []

    # nothing changed: no docker build at all
    engine.builds.clear()
    again = build_binary(cfg, engine)
    assert engine.builds == [] and not again.rebuilt and again.docker_steps == 0
    assert again.path.read_bytes() == cold.path.read_bytes()

    # an app-only change: only the embed stage runs, on the same base image
    (app / "webroot" / "extra.txt").write_text("new static file\n")
    app_change = build_binary(cfg, engine)
    assert engine.builds == [f"{EMBED_REPOSITORY}:{engine.builds[0].split(':')[1]}"]
    assert app_change.embed_built and not app_change.base_built
    assert base_images(docker_client, base_repo) == first_bases

    # a change to the extension list rebuilds the base
    engine.builds.clear()
    cfg2 = make_cfg(tmp_path, app, base_repo, **{"builder.php_extensions": "ctype,mbstring,pdo,pdo_pgsql,json,intl"})
    ext_change = build_binary(cfg2, engine)
    assert ext_change.base_built and ext_change.embed_built
    assert engine.builds[0].startswith(base_repo + ":")
    assert base_images(docker_client, base_repo) - first_bases

    # --skip-base reuses the existing base even though the inputs changed again
    engine.builds.clear()
    cfg3 = make_cfg(tmp_path, app, base_repo, skip_base=True, **{"builder.php_extensions": "ctype,pdo"})
    skipped = build_binary(cfg3, engine)
    assert not skipped.base_built
    assert all(t.startswith(EMBED_REPOSITORY) for t in engine.builds)


def test_skip_base_without_a_base_fails_clearly(tmp_path, engine, app, base_repo):
    cfg = make_cfg(tmp_path, app, base_repo, skip_base=True)
    with pytest.raises(ConfigError, match="there is no base image yet; run once without --skip-base"):
        build_binary(cfg, engine)
    assert engine.builds == []


def test_failing_composer_step_reports_the_log_tail(tmp_path, engine, app, base_repo):
    (app / "composer.json").write_text('{"name": "x/y", "require": {"acme/does-not-exist": "^1.0"},'
                                       ' "repositories": [{"packagist.org": false}]}')
    cfg = make_cfg(tmp_path, app, base_repo)
    with pytest.raises(BuildError) as err:
        build_binary(cfg, engine)
    message = str(err.value)
    assert "docker build of orangescrum-cloud-embed" in message
    assert "last lines of the log:" in message and "acme/does-not-exist" in message
    log = Path(message.rsplit("full log: ", 1)[1].strip())
    assert log.is_file() and log.parent == tmp_path / "dist/logs"
    assert not (tmp_path / "dist/build/osv4-prod").exists()


def test_broken_base_dockerfile_reports_the_log_tail(tmp_path, engine, app, base_repo, monkeypatch):
    sources = tmp_path / "sources"
    shutil.copytree(Path(__file__).resolve().parents[2] / "builder", sources / "builder")
    df = sources / "builder/base-build.Dockerfile"
    df.write_text(df.read_text() + "RUN echo about to fail && exit 42\n")
    monkeypatch.setattr("cloudbuilder.binary.source_root", lambda: sources)
    cfg = make_cfg(tmp_path, app, base_repo)
    with pytest.raises(BuildError) as err:
        build_binary(cfg, engine)
    message = str(err.value)
    assert "docker build of " + base_repo in message and "returned a non-zero code: 42" in message
    assert "about to fail" in message and "full log: " in message


def test_env_files_and_tests_never_reach_the_binary(tmp_path, engine, app, base_repo):
    (app / ".env").write_text("DB_PASSWORD=CanaryEnvSecret_7f3a9\n")
    (app / ".env.local").write_text("X=CanaryEnvLocal_2b8c1\n")
    (app / "tests" / "Secret.php").write_text("<?php // CanaryTestsDir_9d0e4\n")
    (app / "config" / "shipped.php").write_text("<?php return 'CanaryShipped_5a6b7';\n")
    (app / "auth.json").write_text('{"github-oauth": {"github.com": "CanaryAuthJson_4e1d2"}}\n')
    (app / "config" / "app_local.php").write_text("<?php return ['salt' => 'CanaryAppLocal_8c3f0'];\n")
    cfg = make_cfg(tmp_path, app, base_repo)
    result = build_binary(cfg, engine)
    data = result.path.read_bytes()
    assert b"CanaryShipped_5a6b7" in data  # the scan can see app files at all
    for canary in (b"CanaryEnvSecret_7f3a9", b"CanaryEnvLocal_2b8c1", b"CanaryTestsDir_9d0e4",
                   b"CanaryAuthJson_4e1d2", b"CanaryAppLocal_8c3f0"):
        assert canary not in data


def test_github_token_is_a_secret_of_the_build_not_of_the_image(tmp_path, engine, app, base_repo, docker_client):
    layer = Layer("test", {"app": str(app), "dist_dir": str(tmp_path / "dist"), "builder.image": DEFAULT_STANDIN_IMAGE,
                           "builder.base_repository": base_repo, "builder.php_extensions": "ctype,pdo"})
    cfg = resolve([layer], cwd=tmp_path, environ={"GITHUB_TOKEN": "ghp_CanaryToken_c0ffee"},
                  probe=lambda _a: AppFacts("4.0.0", "test", None))
    result = build_binary(cfg, engine)
    logs = list((tmp_path / "dist/logs").glob("*.log"))
    text = "".join(p.read_text() for p in logs)
    assert "GITHUB_TOKEN" in text and "set" in text  # the builder saw a token...
    assert "ghp_CanaryToken_c0ffee" not in text  # ...which no log shows
    assert b"ghp_CanaryToken_c0ffee" not in result.path.read_bytes()
    for image in docker_client.images.list(name=base_repo):
        saved = b"".join(image.save())
        assert b"ghp_CanaryToken_c0ffee" not in saved
        history = str(image.history())
        assert "ghp_CanaryToken_c0ffee" not in history


def embed_log_steps(tmp_path: Path) -> list[str]:
    """The step lines of the newest embed build log, each followed by whether it came from the cache."""
    log = max((tmp_path / "dist/logs").glob("embed-*.log"), key=lambda p: p.stat().st_mtime_ns).read_text()
    out = []
    for block in log.split("\nStep ")[1:]:
        head = block.splitlines()[0].split(" : ", 1)[1]
        out.append(f"{head} | {'Using cache' if chr(10) + ' ---> Using cache' in chr(10) + block else 'ran'}")
    return out


def test_app_only_change_reuses_the_composer_layer_and_composer_json_change_reruns_it(
        tmp_path, engine, app, base_repo, docker_client):
    # a composer.json of its own: the engine's layer cache is shared with every other build
    meta = json.loads((app / "composer.json").read_text())
    meta["description"] = f"test {uuid.uuid4().hex}"
    (app / "composer.json").write_text(json.dumps(meta, indent=4))
    cfg = make_cfg(tmp_path, app, base_repo)
    cold = build_binary(cfg, engine)
    assert cold.deps_cached is False
    pinned = docker_client.images.get(deps_tag(cfg.dist_dir)).id

    # an app-only change: composer install comes from the cache, the autoloader is dumped again
    (app / "src" / "Extra.php").write_text("<?php\nnamespace App;\nclass Extra {}\n")
    app_change = build_binary(cfg, engine)
    assert app_change.embed_built and app_change.deps_cached is True
    steps = embed_log_steps(tmp_path)
    assert [s for s in steps if s.startswith(DEPS_STEP)][0].endswith("| Using cache")
    assert [s for s in steps if s.startswith("RUN composer dump-autoload")][0].endswith("| ran")
    assert docker_client.images.get(deps_tag(cfg.dist_dir)).id == pinned
    # the new class is in the authoritative classmap of the embedded app
    done = subprocess.run([str(app_change.path), "php-cli", "-r",
                           "require 'vendor/autoload.php'; echo class_exists('App\\\\Extra') ? 'yes' : 'no';"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert done.stdout.strip() == "yes", done.stderr

    # composer.json changed: composer install runs again; the old layer is not kept
    meta["autoload"]["psr-4"]["Extra\\"] = "extra/"
    (app / "composer.json").write_text(json.dumps(meta, indent=4))
    deps_change = build_binary(cfg, engine)
    assert deps_change.deps_cached is False
    assert [s for s in embed_log_steps(tmp_path) if s.startswith(DEPS_STEP)][0].endswith("| ran")
    assert docker_client.images.get(deps_tag(cfg.dist_dir)).id != pinned
    assert pinned not in {i.id for i in docker_client.images.list(all=True)}


def test_rebuild_base_builds_without_the_layer_cache(tmp_path, engine, app, base_repo, docker_client):
    cfg = make_cfg(tmp_path, app, base_repo)
    build_binary(cfg, engine)
    first = base_images(docker_client, base_repo)
    engine.builds.clear()
    rebuilt = build_binary(make_cfg(tmp_path, app, base_repo, rebuild_base=True), engine)
    assert rebuilt.base_built and rebuilt.embed_built
    log = max((tmp_path / "dist/logs").glob("base-*.log"), key=lambda p: p.stat().st_mtime_ns).read_text()
    assert "Using cache" not in log and "==> Compiling PHP" in log  # every step ran, PHP compiled again
    now = base_images(docker_client, base_repo)
    assert len(now) == 1 and now != first  # a new image; the one it replaced is gone
