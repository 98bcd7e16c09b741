"""HTTP checks of the web server contract the embedded Caddyfile and php.ini make (issue 13).

Shared by the tests of the running stand-in (tests/integration), Compose and the
booted native install (tests/system): each check takes the server's base URL
(``http://127.0.0.1:PORT``) and asserts what a client sees.  Requests go
through ``http.client`` so that no header is added or decoded behind the test's back.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

# The demo app's static asset (examples/orangescrum-demo/webroot/css/app.css, > 512 bytes:
# Caddy's encode leaves smaller bodies alone).
ASSET = "/css/app.css"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> object:
        return json.loads(self.body)


def request(base: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 30.0) -> Reply:
    """One request on a fresh connection; the body as sent (no decoding)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def wait_until_up(base: str, timeout: float = 60.0, path: str = "/healthz") -> Reply:
    """GET ``path`` until the server answers (any status); raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return request(base, path, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def check_static_asset(base: str, *, max_age: int) -> None:
    """Served by Caddy with Cache-Control; compressed when the client asks, plain when not."""
    plain = request(base, ASSET)
    assert plain.status == 200, plain
    assert plain.header("Content-Type", ).startswith("text/css"), plain.headers
    assert plain.header("Cache-Control") == f"public, max-age={max_age}", plain.headers
    assert plain.header("Content-Encoding") is None and len(plain.body) > 512
    for encoding in ("gzip", "zstd"):
        packed = request(base, ASSET, headers={"Accept-Encoding": encoding})
        assert packed.status == 200 and packed.header("Content-Encoding") == encoding, packed.headers
        assert packed.header("Cache-Control") == f"public, max-age={max_age}"
        assert len(packed.body) < len(plain.body)
    # PHP's answers are no assets: no long cache header on them
    page = request(base, "/")
    assert page.status == 200 and "max-age" not in (page.header("Cache-Control") or "")


def check_security_headers(base: str) -> None:
    """On PHP's answers, static files and Caddy's own: the security headers, no Server/X-Powered-By."""
    for path in ("/", ASSET, "/healthz", "/no-such-page"):
        reply = request(base, path)
        for name, value in SECURITY_HEADERS.items():
            assert reply.header(name) == value, (path, reply.headers)
        assert reply.header("Server") is None, (path, reply.headers)
        assert reply.header("X-Powered-By") is None, (path, reply.headers)
        # plain HTTP from a client that is no trusted proxy: no HSTS
        assert reply.header("Strict-Transport-Security") is None, (path, reply.headers)
    spoofed = request(base, "/", headers={"X-Forwarded-Proto": "https"})
    assert spoofed.header("Strict-Transport-Security") is None, "HSTS for an untrusted X-Forwarded-Proto"


def check_healthz(base: str) -> None:
    reply = request(base, "/healthz")
    assert (reply.status, reply.header("Content-Type"), reply.json()) == (200, "application/json", {"status": "ok"})


def check_body_limit(base: str, limit: int) -> None:
    """A Content-Length over the limit gets 413 at once; a small body reaches PHP."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("POST", "/uploads?name=too-large.bin")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(limit + 1))
        conn.endheaders()
        # the answer comes from the header alone: before any of the body is sent
        response = conn.getresponse()
        assert response.status == 413, (response.status, response.read()[:200])
    finally:
        conn.close()
    small = request(base, "/uploads?name=within-limit.bin", method="POST", body=b"x" * 1024,
                    headers={"Content-Type": "application/octet-stream"})
    assert small.status != 413, small


def check_php_ini(base: str, expected: dict[str, str]) -> dict[str, object]:
    """The php.ini settings as PHP (the web SAPI) sees them: the demo's /runtime."""
    reply = request(base, "/runtime")
    assert reply.status == 200, reply
    data = reply.json()
    assert isinstance(data, dict)
    ini = data["ini"]
    for name, value in expected.items():
        assert ini[name] == value, (name, ini)
    return data


def access_log_entries(text: str) -> list[dict]:
    """Caddy's access log lines (JSON objects of logger http.log.access*) in ``text``."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("logger", "")).startswith("http.log.access"):
            entries.append(entry)
    return entries


def check_access_log(base: str, read_log: Callable[[], str]) -> None:
    """One JSON line per request, with the request's path and status."""
    marker = f"/no-such-page-{time.monotonic_ns()}"
    assert request(base, marker).status == 404
    deadline = time.monotonic() + 10
    while True:
        hits = [e for e in access_log_entries(read_log()) if e.get("request", {}).get("uri") == marker]
        if hits or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(hits) == 1, f"expected one access log line for {marker}, got {hits}"
    assert hits[0]["status"] == 404


def check_drain(base: str, send_sigterm: Callable[[], None], *, ms: int = 3000) -> float:
    """A request in flight when SIGTERM arrives completes with 200; returns its duration."""
    result: dict[str, object] = {}

    def slow() -> None:
        started = time.monotonic()
        try:
            result["reply"] = request(base, f"/slow?ms={ms}", timeout=ms / 1000 + 30)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(min(1.0, ms / 3000))  # the request is in PHP now
    send_sigterm()
    thread.join(ms / 1000 + 40)
    assert "error" not in result, f"the in-flight request failed after SIGTERM: {result.get('error')!r}"
    reply = result["reply"]
    assert isinstance(reply, Reply) and reply.status == 200, reply
    assert reply.json()["slept_ms"] == ms
    return float(result["seconds"])  # type: ignore[arg-type]
