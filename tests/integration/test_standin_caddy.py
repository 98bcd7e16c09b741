"""The stand-in's php-server runs real Caddy and PHP-FPM from the embedded Caddyfile and php.ini.

The example app gets the Caddyfile and php.ini that ``serverconf`` renders (as
``invoke build`` adds them before embedding), the stand-in builder embeds it,
and the binary runs on the host and as PID 1 of a Debian minbase container
without php or caddy.  Every check is an HTTP request against that running
server (tests/server_contract.py, shared with the Compose and native tests).
Also: every Caddyfile the settings can render is accepted by the host's
``caddy adapt`` once mapped as the stand-in maps it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import server_contract as sc
from services_support import free_port

from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.serverconf import server_config_files, size_bytes
from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE, ensure_minbase_image, ensure_standin_image

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "builder" / "standin" / "frankenphp-stub.sh"
WORKDIR = "/go/src/app"
BINARY = f"{WORKDIR}/dist/frankenphp-linux-x86_64"
LABEL = {"org.orangescrum.cloudbuilder.test": "caddy-test_standin_caddy"}
UPLOAD_LIMIT = "1M"
MAX_AGE = 3600
OPERATOR_HEADER = "X-Operator-Directive"


def _cfg(**values: str):
    layer = Layer("flag", {"app": "/app", **values})
    return resolve([layer], cwd=Path("/"), environ={}, probe=lambda _a: AppFacts(None, "default", None))


def _exec(container, command: str, workdir: str = WORKDIR) -> tuple[int, str]:
    result = container.exec_run(["sh", "-c", command], workdir=workdir)
    return result.exit_code, (result.output or b"").decode("utf-8", "replace")


def _tar(files: dict[str, bytes], directory: Path | None = None, skip: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if directory is not None:
            for path in sorted(directory.rglob("*")):
                rel = path.relative_to(directory)
                if rel.parts[0] not in skip:
                    tar.add(path, arcname=f"app/{rel.as_posix()}", recursive=False)
        for name, data in files.items():
            info = tarfile.TarInfo(f"app/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    """paths.config_dir of the test build: the Caddyfile imports <it>/caddy.d/*.caddy."""
    path = tmp_path_factory.mktemp("caddy-config")
    (path / "caddy.d").mkdir()
    return path


@pytest.fixture(scope="module")
def settings(config_dir):
    return _cfg(**{"server.upload_max_size": UPLOAD_LIMIT, "server.asset_max_age": str(MAX_AGE),
                   "server.grace_period": "15", "server.php_memory_limit": "200M",
                   "paths.config_dir": str(config_dir)})


@pytest.fixture(scope="module")
def binary(docker_client, example_app, settings, tmp_path_factory) -> Path:
    """The example app with its rendered Caddyfile and php.ini, embedded by the stand-in builder."""
    ensure_standin_image(docker_client, DEFAULT_STANDIN_IMAGE)
    container = docker_client.containers.run(DEFAULT_STANDIN_IMAGE, ["sleep", "3600"], detach=True,
                                             labels=LABEL, network_disabled=True)
    try:
        container.put_archive("/tmp", _tar(server_config_files(settings), example_app,
                                           skip=("vendor", "composer.lock", "tests")))
        code, out = _exec(container, "composer install --no-dev -a --no-progress 2>&1", workdir="/tmp/app")
        assert code == 0, out
        code, out = _exec(container, "mkdir -p dist/app && cp -R /tmp/app/. dist/app/ "
                                     "&& EMBED=dist/app/ ./build-static.sh 2>&1")
        assert code == 0, out
        assert "Caddy" in out and "PHP-FPM" in out, out
        stream, _ = container.get_archive(BINARY)
        target = tmp_path_factory.mktemp("caddy-binary")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            tar.extractall(target)
        return target / "frankenphp-linux-x86_64"
    finally:
        container.remove(force=True)


class Server:
    """The binary's php-server on a loopback port, its output in a file."""

    def __init__(self, binary: Path, tmp: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        tmpdir = tmp / "tmpdir"
        tmpdir.mkdir(exist_ok=True)
        env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmpdir), "LISTEN_HOST": "127.0.0.1",
               "LISTEN_PORT": str(self.port), **extra_env}
        self._log = self.log_path.open("wb")
        # --listen is what a binary without a Caddyfile would take: the Caddyfile wins
        self.proc = subprocess.Popen([str(binary), "php-server", "--listen", "127.0.0.1:1", "--root", "nowhere"],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT)
        sc.wait_until_up(self.base)
        # PHP-FPM answers too (it starts beside Caddy)
        deadline = time.monotonic() + 30
        while sc.request(self.base, "/").status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """pid -> command line of this server's child processes."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                found[int(entry.name)] = cmdline
        return found

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def server(binary, tmp_path):
    started = Server(binary, tmp_path)
    yield started
    started.stop()


def test_static_asset_is_cached_and_compressed(server):
    sc.check_static_asset(server.base, max_age=MAX_AGE)


def test_security_headers_and_no_server_header(server):
    sc.check_security_headers(server.base)


def test_healthz_is_answered_by_caddy_while_php_fpm_is_stopped(server):
    sc.check_healthz(server.base)
    fpm = [pid for pid, cmd in server.children().items() if "php-fpm" in cmd]
    assert len(fpm) == 1, server.children()
    os.kill(fpm[0], signal.SIGTERM)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{fpm[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    sc.check_php_down(server.base)


def test_body_over_the_limit_gets_413(server):
    sc.check_body_limit(server.base, size_bytes(UPLOAD_LIMIT))


def test_access_log_is_one_json_line_per_request(server):
    sc.check_access_log(server.base, server.log)


def test_php_ini_settings_are_visible_from_php(server, settings):
    data = sc.check_php_ini(server.base, {
        "memory_limit": "200M", "upload_max_filesize": UPLOAD_LIMIT, "post_max_size": UPLOAD_LIMIT,
        "max_execution_time": "60", "expose_php": "", "opcache.validate_timestamps": "0",
        "session.save_path": f"{settings.paths.state_dir}/php/sessions",
    })
    assert data["sapi"] == "fpm-fcgi"


def test_operator_directive_takes_effect_after_a_restart(binary, tmp_path, config_dir):
    first = Server(binary, tmp_path)
    try:
        assert sc.request(first.base, "/").header(OPERATOR_HEADER) is None
    finally:
        first.stop()
    extra = config_dir / "caddy.d" / "operator.caddy"
    extra.write_text(f"header {OPERATOR_HEADER} from-caddy.d\n")
    try:
        second = Server(binary, tmp_path)
        try:
            assert sc.request(second.base, "/").header(OPERATOR_HEADER) == "from-caddy.d"
            assert sc.request(second.base, sc.ASSET).header(OPERATOR_HEADER) == "from-caddy.d"
        finally:
            second.stop()
    finally:
        extra.unlink()


def test_hsts_only_behind_a_trusted_https_proxy(binary, tmp_path):
    # what server-env makes of APP_TRUSTED_PROXIES=127.0.0.1: this test is the proxy
    proxied = Server(binary, tmp_path, CADDY_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        hsts = sc.request(proxied.base, "/", headers={"X-Forwarded-Proto": "https"})
        assert hsts.status == 200 and hsts.header("Strict-Transport-Security") == "max-age=31536000"
        assert sc.request(proxied.base, "/").header("Strict-Transport-Security") is None
        assert sc.request(proxied.base, "/", headers={"X-Forwarded-Proto": "http"}).header(
            "Strict-Transport-Security") is None
    finally:
        proxied.stop()
    other = Server(binary, tmp_path, CADDY_TRUSTED_PROXIES="10.0.0.0/8")
    try:
        spoofed = sc.request(other.base, "/", headers={"X-Forwarded-Proto": "https"})
        assert spoofed.status == 200 and spoofed.header("Strict-Transport-Security") is None
    finally:
        other.stop()


def test_sigterm_drains_in_flight_requests(server):
    seconds = sc.check_drain(server.base, lambda: server.proc.send_signal(signal.SIGTERM))
    assert seconds >= 3
    assert server.proc.wait(timeout=30) == 0
    assert not server.children(), "Caddy or PHP-FPM outlived the server"


def test_pid1_in_a_minbase_container_drains_on_docker_stop(docker_client, binary):
    """As PID 1 (no --init), in a read-only Debian minbase without php or caddy."""
    minbase = ensure_minbase_image(docker_client)
    port = free_port()
    container = docker_client.containers.run(
        minbase, ["frankenphp", "php-server"], detach=True, read_only=True,
        tmpfs={"/tmp": "rw,exec,size=512m"}, environment={"TMPDIR": "/tmp", "LISTEN_HOST": "0.0.0.0",
                                                          "LISTEN_PORT": "8080"},
        labels=LABEL, ports={"8080/tcp": ("127.0.0.1", port)},
        volumes={str(binary): {"bind": "/usr/local/bin/frankenphp", "mode": "ro"}},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        sc.wait_until_up(base)
        deadline = time.monotonic() + 30
        while sc.request(base, "/").status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sc.request(base, "/").status == 200, container.logs()[-3000:]
        sc.check_security_headers(base)
        sc.check_drain(base, lambda: container.stop(timeout=30), ms=2000)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs()[-2000:]
        logs = container.logs().decode(errors="replace")
        assert sc.access_log_entries(logs), logs[-2000:]
    finally:
        container.remove(force=True)


# --------------------------------------------------------------------------
# caddy adapt accepts every rendered Caddyfile (as the stand-in maps it)
# --------------------------------------------------------------------------


def _mapped(caddyfile: bytes, tmp_path: Path) -> Path:
    """The stub's own map_caddyfile function, run by sh on ``caddyfile``."""
    source = tmp_path / "Caddyfile.rendered"
    source.write_bytes(caddyfile)
    text = STUB.read_text()
    function = text[text.index("map_caddyfile() {"):]
    function = function[:function.index("\n}\n") + 3]
    done = subprocess.run(["sh", "-c", function + 'map_caddyfile "$1" "$2"', "sh", str(tmp_path / "fpm.sock"),
                           str(source)], capture_output=True, check=True)
    mapped = tmp_path / "Caddyfile"
    mapped.write_bytes(done.stdout)
    return mapped


EDGE_SETTINGS = [
    {},
    {"server.upload_max_size": "1"},
    {"server.upload_max_size": "999G", "server.asset_max_age": "0", "server.grace_period": "1"},
    {"server.metrics_listen": "127.0.0.1:9180", "service.listen": "[::1]:8443"},
    {"server.metrics_listen": "[::1]:9180", "service.listen": ":80", "app_webroot": "public/web"},
    {"paths.config_dir": "/etc/orangescrum-2.0", "paths.state_dir": "/var/lib/os+data"},
]


@pytest.mark.parametrize("values", EDGE_SETTINGS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "defaults")
@pytest.mark.parametrize("env", [{}, {"CADDY_TRUSTED_PROXIES": "10.0.0.5 10.0.0.0/8 ::1", "LISTEN_HOST": "0.0.0.0",
                                      "LISTEN_PORT": "8080"}], ids=["no-env", "env"])
def test_caddy_adapt_accepts_every_rendered_caddyfile(tmp_path, values, env):
    caddy = subprocess.run(["sh", "-c", "command -v caddy"], capture_output=True, text=True).stdout.strip()
    if not caddy:
        pytest.skip("caddy is not installed (scripts/setup.sh installs it)")
    rendered = server_config_files(_cfg(**values))["Caddyfile"]
    mapped = _mapped(rendered, tmp_path)
    done = subprocess.run([caddy, "adapt", "--config", str(mapped), "--adapter", "caddyfile", "--validate"],
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + mapped.read_text()
    # the mapping changed only what it documents: php_server became php_fastcgi + file_server
    assert b"php_server\n" in rendered and "php_fastcgi unix/" in mapped.read_text()
    if values.get("server.metrics_listen"):
        assert "metrics /metrics" in mapped.read_text()
