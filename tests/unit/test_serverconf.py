"""The embedded Caddyfile and php.ini: rendering from the server.* settings, their
validation, the values computed for them, and how they enter the binary's cache key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloudbuilder.archive import archive_app
from cloudbuilder.binary import APP_PREFIX, embed_context, embed_key
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.errors import BuildError, ConfigError
from cloudbuilder.escape import EscapeError, caddy
from cloudbuilder.reproducible import tar_members
from cloudbuilder.serverconf import NO_PROXY, greater_than_regexp, server_config_files, size_bytes, split_listen

ROOT = Path(__file__).resolve().parents[2]
EMBED_DF = (ROOT / "builder/app-embed.Dockerfile").read_bytes()


def cfg(**values):
    layer = Layer("flag", {"app": "/app", **values})
    return resolve([layer], cwd=Path("/"), environ={}, probe=lambda _a: AppFacts(None, "default", None))


def rendered(**values) -> tuple[str, str]:
    files = server_config_files(cfg(**values))
    return files["Caddyfile"].decode(), files["php.ini"].decode()


@pytest.mark.parametrize("limit", [0, 1, 9, 10, 99, 100, 1023, 1024, 65536, 67108864, 999999, 10**12 + 7])
def test_the_413_regexp_matches_exactly_the_numbers_above_the_limit(limit):
    pattern = re.compile(greater_than_regexp(limit))
    assert "{" not in pattern.pattern  # braces are Caddyfile placeholders
    probes = {0, 1, limit - 1, limit, limit + 1, limit + 9, limit * 10, limit * 10 + 9, 10 ** len(str(limit)),
              10 ** len(str(limit)) - 1, *range(max(0, limit - 120), limit + 120, 7)}
    for n in sorted(p for p in probes if p >= 0):
        assert bool(pattern.fullmatch(str(n))) == (n > limit), (limit, n)
        assert bool(pattern.fullmatch("00" + str(n))) == (n > limit), (limit, n)  # leading zeros
    assert not pattern.fullmatch("") and not pattern.fullmatch("12a") and not pattern.fullmatch("-5")


def test_sizes_are_powers_of_1024_like_php():
    assert [size_bytes(s) for s in ("1", "1K", "64M", "2g", "1T")] == [1, 1024, 64 << 20, 2 << 30, 1 << 40]


def test_listen_is_split_for_caddy_bind():
    assert split_listen("127.0.0.1:8080") == ("127.0.0.1", "8080")
    assert split_listen(":80") == ("0.0.0.0", "80")
    assert split_listen("[::1]:8443") == ("::1", "8443")


def test_defaults_render_the_contract():
    caddyfile, php_ini = rendered()
    assert "\tbind {$LISTEN_HOST:127.0.0.1}\n" in caddyfile and ":{$LISTEN_PORT:8080} {" in caddyfile
    assert "\troot * webroot\n" in caddyfile
    assert "encode zstd br gzip" in caddyfile and "\tphp_server\n" in caddyfile
    assert "\t\t-Server\n" in caddyfile and "\t\t-X-Powered-By\n" in caddyfile
    assert "max_size 67108864" in caddyfile and "respond \"request body too large\" 413" in caddyfile
    assert 'Cache-Control "public, max-age=604800"' in caddyfile
    assert f"trusted_proxies static {{$CADDY_TRUSTED_PROXIES:{NO_PROXY}}}" in caddyfile
    assert "grace_period 20s" in caddyfile and "admin off" in caddyfile and "auto_https off" in caddyfile
    assert "import /etc/orangescrum/caddy.d/*.caddy" in caddyfile
    assert "output stdout" in caddyfile and "format json" in caddyfile
    assert "metrics" not in caddyfile  # off by default
    for line in ("opcache.validate_timestamps = 0", "opcache.memory_consumption = 128", "memory_limit = 256M",
                 "upload_max_filesize = 64M", "post_max_size = 64M", "max_execution_time = 60", "expose_php = Off",
                 "display_errors = Off", "log_errors = On", "realpath_cache_size = 4096K",
                 'session.save_path = "/var/lib/orangescrum/php/sessions"',
                 'upload_tmp_dir = "/var/lib/orangescrum/php/uploads"'):
        assert f"\n{line}\n" in php_ini, line


def test_settings_reach_the_files():
    caddyfile, php_ini = rendered(**{
        "server.upload_max_size": "8M", "server.php_memory_limit": "1G", "server.max_execution_time": "300",
        "server.opcache_memory": "256", "server.asset_max_age": "0", "server.grace_period": "5",
        "server.metrics_listen": "[::1]:9180", "service.listen": "0.0.0.0:9000", "app_webroot": "public",
        "paths.state_dir": "/var/lib/os", "paths.config_dir": "/etc/os"})
    assert "max_size 8388608" in caddyfile and "Cache-Control no-cache" in caddyfile
    assert "grace_period 5s" in caddyfile and "{$LISTEN_PORT:9000}" in caddyfile and "root * public" in caddyfile
    assert ":9180 {\n\tbind ::1\n\tmetrics /metrics" in caddyfile
    assert "import /etc/os/caddy.d/*.caddy" in caddyfile
    assert "memory_limit = 1G" in php_ini and "post_max_size = 8M" in php_ini
    assert "max_execution_time = 300" in php_ini and "opcache.memory_consumption = 256" in php_ini
    assert 'session.save_path = "/var/lib/os/php/sessions"' in php_ini


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("server.metrics_listen", "0.0.0.0:9180", "is not a loopback address"),
    ("server.metrics_listen", ":9180", "is not a loopback address"),
    ("server.metrics_listen", "metrics.example:9180", "is not a loopback address"),
    ("server.upload_max_size", "64MB", "is not a size"),
    ("server.max_execution_time", "0", "is not a positive integer"),
    ("server.grace_period", "soon", "is not a non-negative integer"),
    ("server.opcache_memory", "-1", "is not a non-negative integer"),
])
def test_bad_server_settings_name_the_key(key, value, problem):
    with pytest.raises(ConfigError, match=re.escape(f"{key}={value!r}") + ".*" + problem):
        cfg(**{key: value})


def test_the_caddy_filter_refuses_what_a_token_cannot_carry():
    assert caddy("webroot") == "webroot" and caddy("public, max-age=1") == '"public, max-age=1"'
    for bad in ("{$HOME}", 'a"b', "a\\b", "# x", "", " x", "a\tb", "a\nb"):
        with pytest.raises(EscapeError):
            caddy(bad)


def test_an_app_webroot_no_caddyfile_can_carry_is_refused():
    # relpath settings are plain already; the filter is the second line
    with pytest.raises((ConfigError, BuildError)):
        rendered(app_webroot="web root")


def test_server_files_join_the_app_and_the_cache_key(tmp_path):
    app = tmp_path / "app"
    (app / "webroot").mkdir(parents=True)
    (app / "composer.json").write_text("{}\n")
    (app / "Caddyfile").write_text("# the app's own\n")
    archive = archive_app(app, epoch=0)
    files = server_config_files(cfg())
    ctx = embed_context(EMBED_DF, archive.data, files)
    members = {e.name: e for e in tar_members(ctx.data)}
    assert members[APP_PREFIX + "Caddyfile"].data == files["Caddyfile"]  # ours replace the app's
    assert members[APP_PREFIX + "php.ini"].data == files["php.ini"]
    assert sum(1 for name in members if name == APP_PREFIX + "Caddyfile") == 1
    base = embed_key("sha256:b", archive.sha256, EMBED_DF, cfg(), files)
    assert base == embed_key("sha256:b", archive.sha256, EMBED_DF, cfg(), server_config_files(cfg()))
    other = server_config_files(cfg(**{"server.upload_max_size": "1G"}))
    assert embed_key("sha256:b", archive.sha256, EMBED_DF, cfg(), other) != base
