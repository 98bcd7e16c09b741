"""The web server's own configuration, embedded with the app: ``Caddyfile`` and ``php.ini``.

FrankenPHP's ``php-server`` loads the embedded app's ``Caddyfile`` instead of
its flags, and adds the app directory to ``PHP_INI_SCAN_DIR`` when it has a
``php.ini`` (v1.12.7 ``caddy/php-server.go``).  ``server_config_files`` renders
both from the settings (pure, like every template); ``binary.build_binary``
adds them to the app before it is embedded and puts their digest into the
binary's cache key, so a changed setting rebuilds the binary.

Values the templates need in a form no setting has (the upload limit in bytes,
the 413 matcher, the listen default split into host and port) are computed here.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from .assemble import render_file
from .config import BuildConfig
from .resources import source_root

# Names at the app root (what php-server looks for).
CADDYFILE = "Caddyfile"
PHP_INI = "php.ini"
TEMPLATES = {CADDYFILE: "Caddyfile.j2", PHP_INI: "php.ini.j2"}

# Static assets that get Cache-Control (everything else under the webroot is served as is).
ASSET_EXTENSIONS = ("css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif",
                    "woff", "woff2", "ttf", "otf", "eot")
# trusted_proxies/remote_ip need at least one range: this one (the limited broadcast
# address) is never the source of a TCP connection, so it means "no proxy is trusted".
NO_PROXY = "255.255.255.255/32"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def size_bytes(size: str) -> int:
    """A size setting (``64M``: PHP's powers of 1024) in bytes."""
    m = re.fullmatch(r"([0-9]+)([KMGTkmgt]?)", size)
    if not m:
        raise ValueError(f"not a size: {size!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def greater_than_regexp(limit: int) -> str:
    """A regular expression matching exactly the decimal integers above ``limit``.

    Caddy 2.6 answers 502 instead of 413 when ``request_body`` trips behind
    ``php_fastcgi`` (caddyserver/caddy#4558), so the Caddyfile refuses a
    Content-Length above the limit with a header matcher.  No ``{n}``
    quantifiers: braces are placeholders in a Caddyfile.
    """
    digits = str(limit)
    n = len(digits)
    # leading zeros are allowed, as HTTP allows them
    alternatives = ["[1-9]" + "[0-9]" * n + "[0-9]*"]  # more digits
    for i, d in enumerate(digits):
        if d != "9":
            low = str(int(d) + 1)
            cls = low if low == "9" else f"[{low}-9]"
            alternatives.append(digits[:i] + cls + "[0-9]" * (n - i - 1))
    return "^0*(" + "|".join(alternatives) + ")$"


def split_listen(listen: str) -> tuple[str, str]:
    """``HOST:PORT`` as (bind host, port); an empty host is every interface."""
    host, port = listen.rsplit(":", 1)
    host = host.strip("[]") or "0.0.0.0"
    return host, port


def template_context(cfg: BuildConfig) -> dict[str, Any]:
    ctx = cfg.template_context()
    host, port = split_listen(cfg.service.listen)
    limit = size_bytes(cfg.server.upload_max_size)
    state = PurePosixPath(cfg.paths.state_dir)
    age = cfg.server.asset_max_age
    ctx.update(
        listen_host=host,
        listen_port=int(port),
        upload_max_bytes=limit,
        too_large_regexp=greater_than_regexp(limit),
        asset_extensions=ASSET_EXTENSIONS,
        asset_cache_control=f"public, max-age={age}" if age else "no-cache",
        no_proxy=NO_PROXY,
        caddy_import_dir=str(PurePosixPath(cfg.paths.config_dir) / "caddy.d"),
        php_ini_dir=str(PurePosixPath(cfg.paths.config_dir) / "php.d"),
        session_dir=str(state / "php" / "sessions"),
        upload_tmp_dir=str(state / "php" / "uploads"),
    )
    if cfg.server.metrics_listen:
        mhost, mport = split_listen(cfg.server.metrics_listen)
        ctx.update(metrics_host="127.0.0.1" if mhost == "localhost" else mhost, metrics_port=int(mport))
    return ctx


def server_config_files(cfg: BuildConfig) -> dict[str, bytes]:
    """``{"Caddyfile": ..., "php.ini": ...}``: the files added at the app's root (pure)."""
    ctx = template_context(cfg)
    base = source_root() / "builder" / "embed"
    return {name: render_file(base / template, ctx).encode() for name, template in TEMPLATES.items()}
