"""HTTP checks of the web server contract the embedded Caddyfile and php.ini make (issue 13).

Shared by the tests of the running stand-in (tests/integration), Compose and the
booted native install (tests/system): each check takes a client of the server
(``HttpClient(base)`` from this host, or one that runs curl inside a booted
guest) and asserts what a client sees.  ``HttpClient`` speaks ``http.client``,
so that no header is added or decoded behind the test's back.
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


class HttpClient:
    """Requests from this host to ``base`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base: str) -> None:
        self.base = base
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port

    def request(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None, timeout: float = 30.0) -> Reply:
        """One request on a fresh connection; the body as sent (no decoding)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def status_of_headers_only(self, method: str, path: str, headers: dict[str, str]) -> int:
        """The status answered to a request whose headers (a Content-Length) came without a body."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, path)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            return conn.getresponse().status
        finally:
            conn.close()


def request(base: str, path: str, **kwargs) -> Reply:
    return HttpClient(base).request(path, **kwargs)


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


def _client(server: "str | HttpClient") -> "HttpClient":
    return HttpClient(server) if isinstance(server, str) else server


def check_static_asset(server, *, max_age: int) -> None:
    """Served by Caddy with Cache-Control; compressed when the client asks, plain when not."""
    client = _client(server)
    plain = client.request(ASSET)
    assert plain.status == 200, plain
    assert plain.header("Content-Type", ).startswith("text/css"), plain.headers
    assert plain.header("Cache-Control") == f"public, max-age={max_age}", plain.headers
    assert plain.header("Content-Encoding") is None and len(plain.body) > 512
    for encoding in ("gzip", "zstd"):
        packed = client.request(ASSET, headers={"Accept-Encoding": encoding})
        assert packed.status == 200 and packed.header("Content-Encoding") == encoding, packed.headers
        assert packed.header("Cache-Control") == f"public, max-age={max_age}"
        assert len(packed.body) < len(plain.body)
    # PHP's answers are no assets: no long cache header on them
    page = client.request("/")
    assert page.status == 200 and "max-age" not in (page.header("Cache-Control") or "")


def check_security_headers(server) -> None:
    """On PHP's answers, static files and Caddy's own: the security headers, no Server/X-Powered-By."""
    client = _client(server)
    for path in ("/", ASSET, "/healthz", "/no-such-page"):
        reply = client.request(path)
        for name, value in SECURITY_HEADERS.items():
            assert reply.header(name) == value, (path, reply.headers)
        assert reply.header("Server") is None, (path, reply.headers)
        assert reply.header("X-Powered-By") is None, (path, reply.headers)
        # plain HTTP from a client that is no trusted proxy: no HSTS
        assert reply.header("Strict-Transport-Security") is None, (path, reply.headers)
    spoofed = client.request("/", headers={"X-Forwarded-Proto": "https"})
    assert spoofed.header("Strict-Transport-Security") is None, "HSTS for an untrusted X-Forwarded-Proto"


def check_healthz(server) -> None:
    reply = _client(server).request("/healthz")
    assert (reply.status, reply.header("Content-Type"), reply.json()) == (200, "application/json", {"status": "ok"})


def check_php_down(server) -> None:
    """While PHP is stopped: Caddy answers PHP's routes with 502 (no Server header), /healthz with 200."""
    client = _client(server)
    page = client.request("/")
    assert page.status in (502, 503), page
    assert page.header("Server") is None, page.headers
    check_healthz(client)


def check_body_limit(server, limit: int) -> None:
    """A Content-Length over the limit gets 413 at once (from the header, before any body); a small
    body reaches PHP."""
    client = _client(server)
    status = client.status_of_headers_only("POST", "/uploads?name=too-large.bin", {
        "Content-Type": "application/octet-stream", "Content-Length": str(limit + 1)})
    assert status == 413, status
    small = client.request("/uploads?name=within-limit.bin", method="POST", body=b"x" * 1024,
                           headers={"Content-Type": "application/octet-stream"})
    assert small.status != 413, small


def check_php_ini(server, expected: dict[str, str]) -> dict[str, object]:
    """The php.ini settings as PHP (the web SAPI) sees them: the demo's /runtime."""
    reply = _client(server).request("/runtime")
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


def check_access_log(server, read_log: Callable[[], str]) -> None:
    """One JSON line per request, with the request's path and status."""
    marker = f"/no-such-page-{time.monotonic_ns()}"
    assert _client(server).request(marker).status == 404
    deadline = time.monotonic() + 10
    while True:
        hits = [e for e in access_log_entries(read_log()) if e.get("request", {}).get("uri") == marker]
        if hits or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(hits) == 1, f"expected one access log line for {marker}, got {hits}"
    assert hits[0]["status"] == 404


def check_drain(server, send_sigterm: Callable[[], None], *, ms: int = 3000) -> float:
    """A request in flight when SIGTERM arrives completes with 200; returns its duration."""
    result: dict[str, object] = {}

    def slow() -> None:
        started = time.monotonic()
        try:
            result["reply"] = _client(server).request(f"/slow?ms={ms}", timeout=ms / 1000 + 30)
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
