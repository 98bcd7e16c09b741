"""helpers/server-env.sh (rendered for each tree), run with sh: what the embedded Caddyfile gets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cloudbuilder.assemble import render_file
from cloudbuilder.config import AppFacts, Layer, resolve

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "common" / "helpers" / "server-env.sh.j2"
SHOW = ["sh", "-c", 'printf "%s|%s|%s|%s\\n" "$LISTEN_HOST" "$LISTEN_PORT" "${CADDY_TRUSTED_PROXIES-unset}" "$*"',
        "show", "php-server"]


@pytest.fixture(params=["docker", "native"])
def script(request, tmp_path) -> Path:
    cfg = resolve([Layer("flag", {"app": "/app", "service.listen": "127.0.0.1:8181"})], cwd=Path("/"), environ={},
                  probe=lambda _a: AppFacts(None, "default", None))
    path = tmp_path / f"server-env-{request.param}.sh"
    path.write_text(render_file(TEMPLATE, {**cfg.template_context(), "flavor": request.param}))
    return path


def run(script: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(script), *SHOW], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "STATE_DIR": str(tmp_path / "state"), **env})


def test_default_listen_and_no_proxy(script, tmp_path):
    (tmp_path / "state").mkdir()  # the state directory is there (the package / the volume makes it)
    done = run(script, tmp_path, PORT="9090")
    assert done.returncode == 0, done.stderr
    want = "0.0.0.0|9090" if "docker" in script.name else "127.0.0.1|8181"
    assert done.stdout == f"{want}|unset|php-server\n"
    # the directories php.ini names, private to the service user
    for sub in ("sessions", "uploads"):
        d = tmp_path / "state" / "php" / sub
        assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o700


def test_a_missing_state_directory_is_not_made(script, tmp_path):
    """Making it is app-state.sh's question (it refuses and names the mount), not the server's."""
    done = run(script, tmp_path, PORT="9090")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(("listen", "host", "port"), [
    ("10.1.2.3:80", "10.1.2.3", "80"), (":8080", "0.0.0.0", "8080"), ("[::1]:8443", "::1", "8443")])
def test_listen_is_split(script, tmp_path, listen, host, port):
    done = run(script, tmp_path, LISTEN=listen)
    assert done.stdout.startswith(f"{host}|{port}|"), done.stderr


@pytest.mark.parametrize(("proxies", "caddy"), [
    ("10.0.0.5,10.0.0.6", "10.0.0.5 10.0.0.6"), (" 10.0.0.0/8 , fd00::/8 ", "10.0.0.0/8 fd00::/8"),
    ("*", "0.0.0.0/0 ::/0"), ("", "unset"), (",", "unset")])
def test_app_trusted_proxies_become_caddy_ranges(script, tmp_path, proxies, caddy):
    done = run(script, tmp_path, APP_TRUSTED_PROXIES=proxies)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("|")[2] == caddy


@pytest.mark.parametrize("bad", ["proxy.example", "10.0.0.5;rm -rf /", "{$HOME}"])
def test_a_bad_proxy_is_refused_naming_the_key(script, tmp_path, bad):
    done = run(script, tmp_path, APP_TRUSTED_PROXIES=bad)
    assert done.returncode == 1 and done.stdout == ""
    assert "server-env: APP_TRUSTED_PROXIES:" in done.stderr and "comma-separated" in done.stderr


@pytest.mark.parametrize("bad", ["8080", "host:", "host:http"])
def test_a_bad_listen_is_refused(script, tmp_path, bad):
    done = run(script, tmp_path, LISTEN=bad)
    assert done.returncode == 1 and f"LISTEN={bad}" in done.stderr
