"""The example app behaves like OrangeScrum against a real PostgreSQL 15 and Redis 7.

The app runs with the host's php-cli the way the stand-in binary runs it
(``php -S ADDR -t webroot webroot/index.php`` from the app root, settings in
the environment), from a composer-installed copy per test, so every test
starts with empty webroot/files, logs, tmp and config/app_local.php.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from services_support import free_port, postgres_db, postgres_server, redis_db, redis_server  # noqa: F401

pytestmark = pytest.mark.integration

MIGRATIONS = ["20250101000000", "20250102000000"]


def _php() -> str:
    php = shutil.which("php")
    if not php:
        pytest.skip("php is missing: apt-get install php8.2-cli php8.2-pgsql php-redis (scripts/setup.sh does)")
    done = subprocess.run([php, "-r", 'echo extension_loaded("pdo_pgsql") && extension_loaded("redis") ? "ok" : "no";'],
                          capture_output=True, text=True)
    if done.stdout != "ok":
        pytest.skip("php lacks pdo_pgsql or redis: apt-get install php8.2-pgsql php-redis")
    return php


@pytest.fixture(scope="session")
def installed_app(tmp_path_factory, example_app) -> Path:
    """The example app with `composer install --no-dev -a` done (offline: it has no dependencies)."""
    _php()
    composer = shutil.which("composer")
    if not composer:
        pytest.skip("composer is missing: apt-get install composer (scripts/setup.sh does)")
    tree = tmp_path_factory.mktemp("example") / "app"
    shutil.copytree(example_app, tree, ignore=shutil.ignore_patterns("vendor", "tmp", "logs", ".env"))
    done = subprocess.run([composer, "install", "--no-dev", "-a", "--no-interaction", "--no-progress"], cwd=tree,
                          env={**os.environ, "COMPOSER_ALLOW_SUPERUSER": "1",
                               "COMPOSER_HOME": str(tree.parent / "composer-home")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tree / "vendor" / "autoload.php").is_file()
    return tree


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class DemoApp:
    """One copy of the app and the settings it runs with."""

    root: Path
    env: dict[str, str]
    php: str
    base_url: str = ""
    _server: subprocess.Popen | None = field(default=None, repr=False)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        # Only the settings we give: no stray DB_HOST from the caller's environment.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **self.env, **(extra or {})}

    def cake(self, *args: str, env: dict[str, str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
        return subprocess.run([self.php, "bin/cake.php", *args], cwd=self.root, env=self._env(env),
                              capture_output=True, text=True, timeout=timeout)

    @contextlib.contextmanager
    def serve(self, env: dict[str, str] | None = None) -> Iterator[DemoApp]:
        """Run the app in PHP's built-in server on a free loopback port, like the stand-in's php-server."""
        log = (self.root.parent / "server.log").open("ab")
        for _ in range(3):
            port = free_port()
            self._server = subprocess.Popen(
                [self.php, "-S", f"127.0.0.1:{port}", "-t", "webroot", "webroot/index.php"],
                cwd=self.root, env=self._env(env), stdout=log, stderr=subprocess.STDOUT)
            self.base_url = f"127.0.0.1:{port}"
            if self._wait_up():
                break
            self._stop()
        else:
            raise AssertionError(f"php -S did not start:\n{(self.root.parent / 'server.log').read_text()}")
        try:
            yield self
        finally:
            self._stop()
            log.close()

    def _wait_up(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self._server.poll() is None:
            try:
                if self.request("GET", "/healthz").status == 200:
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _stop(self) -> None:
        if self._server and self._server.poll() is None:
            self._server.terminate()
            self._server.wait(timeout=10)

    def request(self, method: str, path: str, body: bytes | str | dict | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.base_url, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()


@pytest.fixture
def app(installed_app, tmp_path) -> DemoApp:
    """A fresh copy of the installed app, with no settings."""
    root = tmp_path / "app"
    shutil.copytree(installed_app, root, symlinks=True)
    return DemoApp(root=root, env={}, php=_php())


@pytest.fixture
def db_app(app, postgres_db, redis_db) -> DemoApp:
    """The app with the DB_* and REDIS_* settings of a fresh database and Redis database."""
    app.env.update({**postgres_db.env, **redis_db.env, "SECURITY_SALT": "a" * 64, "DEBUG": "false"})
    return app


def _migrate_ok(app: DemoApp) -> subprocess.CompletedProcess:
    done = app.cake("migrations", "migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _schema_rows(db) -> list[str]:
    out = db.psql("SELECT version || '|' || migration_name || '|' || applied_at FROM schema_migrations ORDER BY version")
    return out.splitlines() if out else []


def _multipart(field_name: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _cookie(reply: Reply, name: str = "PHPSESSID") -> tuple[str, str]:
    """The value and the attributes of the session cookie a reply sets."""
    for header in reply.headers.get_all("Set-Cookie") or []:
        if header.startswith(f"{name}="):
            value, _, attributes = header.partition(";")
            return value.split("=", 1)[1], attributes.lower()
    raise AssertionError(f"no {name} cookie in {reply.headers.get_all('Set-Cookie')}")


# --------------------------------------------------------------------------
# Without any service
# --------------------------------------------------------------------------


def test_routes_without_a_database_work_as_before(app):
    with app.serve():
        reply = app.request("GET", "/healthz")
        assert (reply.status, reply.headers["Content-Type"], reply.json()) == (200, "application/json", {"status": "ok"})
        assert app.request("POST", "/healthz").status == 200
        home = app.request("GET", "/")
        assert home.status == 200 and b'<span id="version">4.0.0</span>' in home.body
        settings = app.request("GET", "/settings").json()["settings"]
        assert settings["DB_HOST"] is False and settings["DATABASE_URL"] is False
        assert app.request("GET", "/version").json() == {"app": "4.0.0", "schema": None, "database": "not configured"}
        assert app.request("GET", "/robots.txt").status == 200
        assert app.request("GET", "/no-such-page").status == 404
        jobs = app.request("POST", "/jobs", {"kind": "x"})
        assert jobs.status == 503 and "queue: not configured" in jobs.json()["error"]
    done = app.cake("migrations", "migrate")
    assert done.returncode == 1 and "database: not configured" in done.stderr


def test_an_unreachable_database_fails_only_the_routes_that_need_it(app):
    app.env.update({"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_PASSWORD": "s3cret-canary"})
    with app.serve():
        assert app.request("GET", "/healthz").status == 200
        version = app.request("GET", "/version")
        assert version.status == 503 and "cannot connect to 127.0.0.1" in version.json()["error"]
        assert b"s3cret-canary" not in version.body
    done = app.cake("migrations", "migrate")
    assert done.returncode == 1 and "cannot connect" in done.stderr and "s3cret-canary" not in done.stderr


# --------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------


def test_migrate_twice_applies_each_migration_once(db_app, postgres_db):
    first = _migrate_ok(db_app)
    assert "applied 20250101000000_CreateJobTables" in first.stdout
    assert "2 applied, the schema went from empty to 20250102000000" in first.stdout
    rows = _schema_rows(postgres_db)
    assert [r.split("|")[0] for r in rows] == MIGRATIONS

    second = _migrate_ok(db_app)
    assert "nothing to migrate, the schema is at 20250102000000" in second.stdout
    assert _schema_rows(postgres_db) == rows  # same rows, same applied_at
    status = db_app.cake("migrations", "status")
    assert status.returncode == 0 and status.stdout.count("up ") == 2
    with db_app.serve():
        assert db_app.request("GET", "/version").json() == {
            "app": "4.0.0", "schema": {"version": "20250102000000", "applied": 2, "pending": []}}


def test_a_failing_migration_exits_non_zero_and_leaves_the_schema_unchanged(db_app, postgres_db):
    _migrate_ok(db_app)
    before = _schema_rows(postgres_db)
    done = db_app.cake("migrations", "migrate", env={"DEMO_MIGRATION_FAIL": "1"})
    assert done.returncode == 1
    assert "migration 99999999999999_DemoMigrationFail failed: " in done.stderr
    assert "DEMO_MIGRATION_FAIL is set: this migration fails on purpose" in done.stderr
    assert "rolled back, the schema stays at 20250102000000" in done.stderr
    assert _schema_rows(postgres_db) == before
    # its CREATE TABLE ran before the error and was rolled back with it
    assert postgres_db.psql("SELECT to_regclass('demo_failed_migration_probe') IS NULL") == "t"
    assert "migration 99999999999999_DemoMigrationFail failed" in (db_app.root / "logs" / "error.log").read_text()


def test_a_broken_migration_file_stops_the_run_at_it(db_app, postgres_db):
    (db_app.root / "config" / "Migrations" / "20990101000000_Broken.php").write_text(
        "<?php\nreturn static function (PDO $db): void {\n"
        "    $db->exec('CREATE TABLE broken_probe (id integer)');\n"
        "    $db->exec('SELECT * FROM no_such_table');\n};\n")
    done = db_app.cake("migrations", "migrate")
    assert done.returncode == 1
    assert 'migration 20990101000000_Broken failed: ERROR: relation "no_such_table" does not exist' in done.stderr
    assert "the schema stays at 20250102000000" in done.stderr
    assert [r.split("|")[0] for r in _schema_rows(postgres_db)] == MIGRATIONS  # the earlier ones stay applied
    assert postgres_db.psql("SELECT to_regclass('broken_probe') IS NULL") == "t"
    with db_app.serve():
        assert db_app.request("GET", "/version").json()["schema"]["pending"] == ["20990101000000"]


def test_database_url_wins_over_db_settings(db_app, postgres_db):
    password = "p@ss/w:rd%20x"  # needs percent-encoding in the URL
    postgres_db.psql(f"CREATE ROLE url_user LOGIN PASSWORD '{password}'; "
                     f'GRANT ALL ON DATABASE "{postgres_db.name}" TO url_user; '
                     "GRANT ALL ON SCHEMA public TO url_user")
    from urllib.parse import quote

    url = f"postgresql://url_user:{quote(password, safe='')}@127.0.0.1:{postgres_db.server.port}/{postgres_db.name}"
    done = db_app.cake("migrations", "migrate", env={"DATABASE_URL": url, "DB_HOST": "db.invalid"})
    assert done.returncode == 0, done.stderr
    assert postgres_db.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'schema_migrations'") == "url_user"
    bad = db_app.cake("migrations", "migrate", env={"DATABASE_URL": "mysql://u:hidden@h/d"})
    assert bad.returncode == 1 and "DATABASE_URL: expected postgres://" in bad.stderr and "hidden" not in bad.stderr


# --------------------------------------------------------------------------
# Files, logs, install
# --------------------------------------------------------------------------


def test_upload_then_read_back(app):
    content = os.urandom(5000) + b"\x00end"
    with app.serve():
        body, ctype = _multipart("file", "report.bin", content)
        reply = app.request("POST", "/uploads", body, {"Content-Type": ctype})
        assert reply.status == 201, reply.body
        assert reply.json()["name"] == "report.bin" and reply.json()["size"] == len(content)
        assert (app.root / "webroot" / "files" / "report.bin").read_bytes() == content
        back = app.request("GET", "/uploads/report.bin")
        assert back.status == 200 and back.body == content
        static = app.request("GET", "/files/report.bin")  # served by the web server itself
        assert static.status == 200 and static.body == content

        raw = app.request("POST", "/uploads?name=notes.txt", b"plain body", {"Content-Type": "text/plain"})
        assert raw.status == 201 and app.request("GET", "/uploads/notes.txt").body == b"plain body"
        assert app.request("POST", "/uploads?name=../escape", b"x").status == 400
        assert app.request("GET", "/uploads/missing.txt").status == 404
    assert not (app.root / "webroot" / "escape").exists()


def test_requests_and_events_are_logged_under_logs(app):
    with app.serve():
        app.request("GET", "/healthz")
        app.request("GET", "/version")
        app.request("POST", "/uploads?name=a.txt", b"a")
    debug = (app.root / "logs" / "debug.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Info: GET /version 200 \d+ ms$", debug, re.MULTILINE), debug
    assert "Info: upload: stored webroot/files/a.txt (1 bytes)" in debug
    assert "/healthz" not in debug


def test_install_writes_config_app_local(app):
    app.env["SECURITY_SALT"] = "salt-canary-" + "x" * 40
    with app.serve():
        assert app.request("GET", "/install").json()["installed"] is False
        reply = app.request("POST", "/install")
        assert reply.status == 201, reply.body
        local = app.root / "config" / "app_local.php"
        assert local.is_file() and (app.root / "config" / "install.ini").is_file()
        assert "salt-canary" not in local.read_text()  # the env's secret stays in the env
        state = app.request("GET", "/install").json()
        assert state["installed"] is True and state["installed_version"] == "4.0.0"
        assert app.request("POST", "/install").status == 409
        assert app.request("GET", "/healthz").status == 200  # app_local.php loads
    assert "install: wrote config/app_local.php" in (app.root / "logs" / "debug.log").read_text()


# --------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------


def _login_and_read_back(app: DemoApp) -> str:
    login = app.request("POST", "/login", {"user": "alice"})
    assert login.status == 200, login.body
    sid, attributes = _cookie(login)
    assert "httponly" in attributes and "samesite=lax" in attributes
    me = app.request("GET", "/session", headers={"Cookie": f"PHPSESSID={sid}"})
    assert me.json()["user"] == "alice"
    assert app.request("GET", "/session").json()["user"] is None  # no cookie, no user
    return sid


def test_file_sessions_survive_across_requests(app):
    with app.serve():
        sid = _login_and_read_back(app)
        assert "secure" in _cookie(app.request("POST", "/login", {"user": "bob"}))[1]  # the CE's default
    assert (app.root / "tmp" / "sessions" / f"sess_{sid}").is_file()
    with app.serve():  # a new server process reads the same file
        assert app.request("GET", "/session", headers={"Cookie": f"PHPSESSID={sid}"}).json()["user"] == "alice"
    assert "Info: login: alice (session store files)" in (app.root / "logs" / "auth.log").read_text()


def test_redis_sessions_survive_across_requests_and_restarts(db_app, redis_db):
    settings = {"SESSION_HANDLER": "cache", "CACHE_ENGINE": "redis", "SESSION_COOKIE_SECURE": "false"}
    with db_app.serve(settings):
        sid = _login_and_read_back(db_app)
    assert redis_db.command("EXISTS", f"cake_session_{sid}") == 1
    assert 0 < redis_db.command("TTL", f"cake_session_{sid}") <= 1440 * 60
    assert not (db_app.root / "tmp" / "sessions").exists()
    with db_app.serve(settings):
        me = db_app.request("GET", "/session", headers={"Cookie": f"PHPSESSID={sid}"}).json()
        assert me == {"user": "alice", "logged_in_at": me["logged_in_at"], "store": "redis"}


def test_database_sessions(db_app, postgres_db):
    _migrate_ok(db_app)
    with db_app.serve({"SESSION_HANDLER": "database"}):
        sid = _login_and_read_back(db_app)
    assert postgres_db.psql(f"SELECT count(*) FROM sessions WHERE id = '{sid}'") == "1"


def test_an_unknown_session_handler_is_named(app):
    with app.serve({"SESSION_HANDLER": "memcache"}):
        reply = app.request("POST", "/login", {"user": "alice"})
        assert reply.status == 503 and "unknown SESSION_HANDLER memcache" in reply.json()["error"]


# --------------------------------------------------------------------------
# Queue, recurring task, slow route
# --------------------------------------------------------------------------


def test_a_queued_job_is_processed_by_the_worker_and_recorded(db_app, postgres_db, redis_db):
    _migrate_ok(db_app)
    with db_app.serve():
        queued = db_app.request("POST", "/jobs", {"kind": "email.send", "note": "hello"})
        assert queued.status == 202, queued.body
        job_id = queued.json()["id"]
        assert redis_db.command("LLEN", "queue:default") == 1
        assert db_app.request("GET", f"/jobs/{job_id}").json() == {"id": job_id, "processed": False}

        worker = db_app.cake("queue", "worker", "--max-runtime", "3", timeout=30)
        assert worker.returncode == 0, worker.stderr
        assert f"queue worker: processed job {job_id} (email.send)" in worker.stdout
        assert "max runtime of 3s reached" in worker.stdout

        state = db_app.request("GET", f"/jobs/{job_id}").json()
        assert state["processed"] is True and state["kind"] == "email.send"
    assert postgres_db.psql(f"SELECT kind || '|' || (payload->>'note') FROM processed_jobs WHERE job_id = '{job_id}'") \
        == "email.send|hello"
    assert redis_db.command("LLEN", "queue:default") == 0
    assert redis_db.command("LLEN", "queue:default:processing") == 0
    assert f"processed job {job_id}" in (db_app.root / "logs" / "queue.log").read_text()


def test_queue_url_selects_the_queue_redis(db_app, postgres_db, redis_server, redis_db):
    _migrate_ok(db_app)
    settings = {"QUEUE_URL": redis_db.url, "REDIS_HOST": "", "REDIS_PORT": "", "REDIS_PASSWORD": ""}
    with db_app.serve(settings):
        job_id = db_app.request("POST", "/jobs", {"kind": "x"}).json()["id"]
    assert redis_db.command("LLEN", "queue:default") == 1
    worker = db_app.cake("queue", "worker", "--max-runtime", "2", env=settings, timeout=30)
    assert f"processed job {job_id}" in worker.stdout, worker.stdout + worker.stderr


def test_the_worker_waits_for_an_unreachable_redis(app):
    app.env.update({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port())})
    done = app.cake("queue", "worker", "--max-runtime", "2", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "queue worker: started" in done.stdout and "retrying in 5s" in done.stdout
    assert "max runtime of 2s reached" in done.stdout


def test_recurring_task_records_a_row(db_app, postgres_db):
    not_migrated = db_app.cake("recurring_task")
    assert not_migrated.returncode == 1 and "are the migrations applied?" in not_migrated.stderr
    _migrate_ok(db_app)
    for expected in ("1", "2"):
        done = db_app.cake("recurring_task")
        assert done.returncode == 0, done.stderr
        assert "recurring_task: ran at" in done.stdout and f"recurring_task: recorded run {expected}" in done.stdout
    assert postgres_db.psql("SELECT count(*) || '|' || min(app_version) FROM recurring_task_runs") == "2|4.0.0"
    assert "recorded run 2" in (db_app.root / "logs" / "cron.log").read_text()


def test_recurring_task_without_a_reachable_database_still_exits_0(app):
    done = app.cake("recurring_task")
    assert done.returncode == 0 and "no database configured" in done.stdout
    done = app.cake("recurring_task", env={"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port())})
    assert done.returncode == 0 and "the run is not recorded: database: cannot connect" in done.stderr


def test_the_slow_route_takes_about_200_ms(app):
    with app.serve():
        started = time.monotonic()
        reply = app.request("GET", "/slow")
        elapsed = time.monotonic() - started
    assert reply.status == 200 and reply.json()["slept_ms"] == 200
    assert 0.15 <= elapsed < 2, elapsed


def test_the_apps_own_php_tests_pass(app):
    done = subprocess.run([app.php, "tests/TestCase/ApplicationTest.php"], cwd=app.root, env=app._env(None),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "FAIL" not in done.stdout, done.stdout + done.stderr
