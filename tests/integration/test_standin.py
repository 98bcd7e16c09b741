"""The stand-in FrankenPHP builder honours the static-builder contract.

Builds (once, cached: the stand-in image and its rootfs tarball are kept) the
stand-in image, runs ``EMBED=dist/app/ ./build-static.sh`` on the example app in
a throwaway container, and checks the produced binary on the host and in a
Debian minbase container without php, with a read-only root filesystem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cloudbuilder.standin import (
    DEFAULT_STANDIN_IMAGE,
    SOURCES_LABEL,
    ensure_minbase_image,
    ensure_standin_image,
    is_standin_image,
)

pytestmark = pytest.mark.integration

WORKDIR = "/go/src/app"
BINARY = f"{WORKDIR}/dist/frankenphp-linux-x86_64"
TEST_LABEL = {"org.orangescrum.cloudbuilder.test": "test_standin"}
SECRET = "s3cret-do-not-print"


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def standin_image(docker_client) -> str:
    """The stand-in builder image (slow the first time; cached, never deleted)."""
    ensure_standin_image(docker_client, DEFAULT_STANDIN_IMAGE)
    return DEFAULT_STANDIN_IMAGE


@pytest.fixture(scope="session")
def minbase_image(docker_client) -> str:
    """A plain Debian minbase image without php (cached, never deleted)."""
    return ensure_minbase_image(docker_client)


def _exec(container, command: str, *, env: dict[str, str] | None = None, workdir: str = WORKDIR):
    """Run a shell command in the container; returns (exit code, combined output)."""
    result = container.exec_run(["sh", "-c", command], environment=env or {}, workdir=workdir, demux=False)
    return result.exit_code, (result.output or b"").decode("utf-8", "replace")


def _tar_of(directory: Path, *, skip: tuple[str, ...]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if relative.parts[0] in skip:
                continue
            tar.add(path, arcname=f"app/{relative.as_posix()}", recursive=False)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def builder(docker_client, standin_image, example_app):
    """A throwaway stand-in container with the example app composer-installed in dist/app."""
    container = docker_client.containers.run(
        standin_image, ["sleep", "3600"], detach=True, labels=TEST_LABEL, network_disabled=True
    )
    try:
        # The composer stage: composer install in the stand-in, then copy to dist/app.
        container.put_archive("/tmp", _tar_of(example_app, skip=("vendor", "composer.lock")))
        code, out = _exec(container, "composer install --no-dev -a --no-progress 2>&1", workdir="/tmp/app")
        assert code == 0, out
        code, out = _exec(container, "mkdir -p dist/app && cp -R /tmp/app/. dist/app/ && rm -rf dist/app/tests")
        assert code == 0, out
        yield container
    finally:
        container.remove(force=True)


@pytest.fixture(scope="session")
def builds(builder) -> dict[str, str]:
    """The base build (no EMBED), then the embed build; their outputs."""
    env = {"PHP_EXTENSIONS": "pdo_pgsql,mbstring,intl,xml,curl,gd,zip,redis,opcache,json,ctype,tokenizer,openssl,pdo",
           "GITHUB_TOKEN": SECRET}
    code, base = _exec(builder, "./build-static.sh 2>&1", env=env)
    assert code == 0, base
    code, embed = _exec(builder, "EMBED=dist/app/ ./build-static.sh 2>&1", env=env)
    assert code == 0, embed
    code, sums = _exec(builder, f"sha256sum {BINARY} && EMBED=dist/app/ ./build-static.sh >/dev/null 2>&1 "
                                f"&& sha256sum {BINARY}", env=env)
    assert code == 0, sums
    return {"base": base, "embed": embed, "sums": sums}


@pytest.fixture(scope="session")
def binary(builder, builds, tmp_path_factory) -> Path:
    """The produced binary, copied to the host with the archive API."""
    stream, _ = builder.get_archive(BINARY)
    target = tmp_path_factory.mktemp("standin-binary")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        tar.extractall(target)
    path = target / "frankenphp-linux-x86_64"
    assert os.access(path, os.X_OK)
    return path


@pytest.fixture
def run_env(tmp_path) -> dict[str, str]:
    """Environment for the binary on the host: a private TMPDIR."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    return {**os.environ, "TMPDIR": str(tmpdir)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """GET url, retrying until the server answers; returns (status, content type, body)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --------------------------------------------------------------------------
# The image and the build
# --------------------------------------------------------------------------


def test_image_is_a_labelled_standin(docker_client, standin_image):
    assert is_standin_image(standin_image)
    image = docker_client.images.get(standin_image)
    assert image.attrs["Config"]["WorkingDir"] == WORKDIR
    assert image.labels.get(SOURCES_LABEL)
    assert image.labels.get("org.orangescrum.cloudbuilder.standin") == "true"
    # Up to date: a second call neither rebuilds nor changes the image.
    assert ensure_standin_image(docker_client, standin_image) == image.id


def test_image_has_composer_and_php(builder):
    code, out = _exec(builder, "composer --version 2>&1 && php -m")
    assert code == 0, out
    for ext in ("pdo_pgsql", "mbstring", "intl", "xml", "curl", "gd", "zip", "redis"):
        assert ext in out


def test_base_build_compiles_php_and_embed_build_reuses_it(builds):
    assert "==> Compiling PHP" in builds["base"]
    assert "No EMBED" in builds["base"]
    assert "==> Embedding app from dist/app/" in builds["embed"]
    assert "Reusing compiled PHP" in builds["embed"]
    assert "==> Compiling PHP" not in builds["embed"]


def test_github_token_is_reported_never_printed(builds):
    assert "GITHUB_TOKEN is set" in builds["embed"]
    assert SECRET not in builds["base"] + builds["embed"]


def test_build_is_byte_deterministic(builds):
    sums = [line.split()[0] for line in builds["sums"].splitlines() if line.strip()]
    assert len(sums) == 2 and sums[0] == sums[1]


def test_unknown_extension_fails_clearly(builder):
    code, out = _exec(builder, "PHP_EXTENSIONS=pdo_pgsql,foo EMBED=dist/app/ ./build-static.sh 2>&1")
    assert code == 1
    assert "build-static.sh: PHP extension 'foo' is not available in this (stand-in) builder" in out


# --------------------------------------------------------------------------
# The binary on the host
# --------------------------------------------------------------------------


def test_version(binary, run_env):
    done = subprocess.run([binary, "version"], env=run_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FrankenPHP v1.12.7 PHP 8.2.")
    assert "stand-in" in done.stdout


def test_php_cli_runs_a_cake_command(binary, run_env):
    done = subprocess.run([binary, "php-cli", "bin/cake.php", "recurring_task"],
                          env=run_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "recurring_task: ran at" in done.stdout
    # Extracted once, under TMPDIR, named after the payload checksum.
    extracted = [p.name for p in Path(run_env["TMPDIR"]).iterdir()]
    assert len(extracted) == 1 and extracted[0].startswith("frankenphp_"), extracted


def test_php_cli_code_and_unknown_command(binary, run_env):
    done = subprocess.run([binary, "php-cli", "-r", 'echo getcwd(), "|", PHP_VERSION;'],
                          env=run_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cwd, version = done.stdout.split("|")
    assert cwd.endswith("/app") and version.startswith("8.2.")
    done = subprocess.run([binary, "run", "--config", "Caddyfile"], env=run_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not supported by this stand-in" in done.stderr


def test_php_server_serves_the_app_and_stops_on_sigterm(binary, run_env, tmp_path):
    port = _free_port()
    env = {**run_env, "DB_PASSWORD": SECRET, "DB_HOST": "db"}
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([binary, "php-server", "--listen", f"127.0.0.1:{port}", "--root", "webroot"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        status, ctype, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert (status, ctype, json.loads(body)) == (200, "application/json", {"status": "ok"})
        status, _, body = _get(f"http://127.0.0.1:{port}/settings")
        settings = json.loads(body)["settings"]
        assert status == 200 and settings["DB_PASSWORD"] is True and settings["SMTP_HOST"] is False
        assert SECRET not in body
        status, _, body = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "4.0.0" in body
        assert _get(f"http://127.0.0.1:{port}/robots.txt")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/no-such-page")[0] == 404
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()


# --------------------------------------------------------------------------
# Self-contained: a Debian minbase container without php, read-only root
# --------------------------------------------------------------------------


def test_binary_is_self_contained(docker_client, minbase_image, binary):
    script = (
        "if command -v php; then echo 'php is installed'; exit 9; fi; "
        "frankenphp version && frankenphp php-cli bin/cake.php recurring_task && "
        "frankenphp php-cli -r 'foreach ([\"pdo_pgsql\",\"redis\",\"intl\",\"gd\",\"zip\",\"curl\",\"mbstring\"] as $e) "
        "{ if (!extension_loaded($e)) { echo \"missing $e\"; exit(1); } } echo \"extensions ok\", PHP_EOL;'"
    )
    output = docker_client.containers.run(
        minbase_image, ["sh", "-c", script], remove=True, read_only=True, network_disabled=True,
        tmpfs={"/tmp": "rw,exec,size=512m"}, environment={"TMPDIR": "/tmp"}, labels=TEST_LABEL,
        volumes={str(binary): {"bind": "/usr/local/bin/frankenphp", "mode": "ro"}},
    ).decode()
    assert "stand-in" in output and "recurring_task: ran at" in output and "extensions ok" in output


def test_binary_serves_as_pid1_and_stops_on_sigterm(docker_client, minbase_image, binary):
    port = _free_port()
    container = docker_client.containers.run(
        minbase_image, ["frankenphp", "php-server", "--listen", ":8080", "--root", "webroot"],
        detach=True, read_only=True, tmpfs={"/tmp": "rw,exec,size=512m"}, environment={"TMPDIR": "/tmp"},
        labels=TEST_LABEL, ports={"8080/tcp": ("127.0.0.1", port)},
        volumes={str(binary): {"bind": "/usr/local/bin/frankenphp", "mode": "ro"}},
    )
    try:
        status, _, body = _get(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert status == 200 and json.loads(body) == {"status": "ok"}
        started = time.monotonic()
        container.stop(timeout=10)
        assert time.monotonic() - started < 5, "SIGTERM did not stop the server (PID 1)"
        container.reload()
        assert container.attrs["State"]["ExitCode"] != 137
    finally:
        container.remove(force=True)


def test_noexec_tmpdir_is_reported(docker_client, minbase_image, binary):
    container = docker_client.containers.run(
        minbase_image, ["frankenphp", "php-cli", "-r", "echo 1;"], detach=True, read_only=True,
        tmpfs={"/tmp": "rw,noexec,size=512m"}, environment={"TMPDIR": "/tmp"}, labels=TEST_LABEL,
        network_disabled=True, volumes={str(binary): {"bind": "/usr/local/bin/frankenphp", "mode": "ro"}},
    )
    try:
        assert container.wait(timeout=120)["StatusCode"] == 1
        assert b"noexec" in container.logs()
    finally:
        container.remove(force=True)


def test_checksum_names_the_extraction_dir(binary):
    """The stub carries the sha256 of its payload, and the payload has it."""
    data = binary.read_bytes()
    head_end = data.index(b"# __FRANKENPHP_STANDIN_PAYLOAD__")
    head_end = data.index(b"\n", head_end) + 1
    line = next(l for l in data[:head_end].decode().splitlines() if l.startswith("PAYLOAD_SHA256="))
    assert line.split("'")[1] == hashlib.sha256(data[head_end:]).hexdigest()
