"""Throwaway PostgreSQL 15 and Redis 7 servers for tests, from Debian's packages.

Each server runs from its own temporary directory on a free loopback port,
independent of any cluster the packages' postinst may have started on the
default ports, and is stopped and removed afterwards:

    from services_support import postgres_server, redis_server, postgres_db, redis_db  # noqa: F401

    def test_x(postgres_db, redis_db):
        env = {**postgres_db.env, **redis_db.env}      # DB_* and REDIS_* settings
        postgres_db.psql("SELECT 1")                   # -> "1"
        redis_db.command("DBSIZE")                     # -> 0

Fixtures: ``postgres_server`` and ``redis_server`` (one per session),
``postgres_db`` (a fresh database per test, dropped afterwards) and
``redis_db`` (a flushed Redis database number per test).  The classes can also
be used directly: ``with start_postgres() as pg: ...``.

PostgreSQL refuses to run as root: as root, the cluster is created and run as
the ``postgres`` account (``nobody`` when there is none).  ``OSCB_TEST_PG_BIN``
overrides the server binaries (default ``/usr/lib/postgresql/15/bin``).
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("OSCB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
HOST = "127.0.0.1"
_ATTEMPTS = 3  # a free port can be taken between picking and binding it


class ServiceError(RuntimeError):
    """A test server could not be started or answered with an error."""


def free_port() -> int:
    """A TCP port on the loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _require(program: Path | str, package: str) -> str:
    found = shutil.which(str(program))
    if not found:
        pytest.skip(f"{program} is missing: apt-get install {package} (scripts/setup.sh does)")
    return found


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``user`` is its superuser, with a password."""

    port: int
    user: str
    password: str
    base_dir: Path
    run_as: str | None  # the account the server runs as when we are root
    host: str = HOST

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def env(self, database: str) -> dict[str, str]:
        """The OrangeScrum DB_* settings for ``database``."""
        return {"DB_HOST": self.host, "DB_PORT": str(self.port), "DB_USERNAME": self.user,
                "DB_PASSWORD": self.password, "DB_NAME": database}

    def psql(self, sql: str, *, database: str = "postgres", user: str | None = None,
             password: str | None = None) -> str:
        """Run SQL with psql; returns the unaligned, tuples-only output (rows by newline, columns by '|')."""
        done = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host,
             "-p", str(self.port), "-U", user or self.user, "-d", database, "-c", sql],
            env={**os.environ, "PGPASSWORD": password or self.password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, timeout=60,
        )
        if done.returncode != 0:
            raise ServiceError(f"psql failed ({done.returncode}): {sql}\n{done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (immediately: it holds nothing worth a checkpoint) and remove its files."""
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                           user=self.run_as, capture_output=True, timeout=60)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _postgres_account() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServiceError("running as root and neither a postgres nor a nobody account exists to run PostgreSQL")


def start_postgres(*, user: str = "oscb", password: str | None = None) -> PostgresServer:
    """initdb a cluster in a new temporary directory and start it on a free loopback port.

    Password (scram-sha-256) authentication for every connection; fsync off.
    """
    for program in ("initdb", "pg_ctl", "psql"):
        _require(PG_BIN / program, "postgresql (15)")
    password = password or secrets.token_hex(16)
    run_as = _postgres_account()
    # Not below pytest's tmp_path: that is private to root, and the server may run as another user.
    base = Path(tempfile.mkdtemp(prefix="oscb-pg-"))
    try:
        (base / "pwfile").write_text(password + "\n")
        if run_as:
            account = pwd.getpwnam(run_as)
            os.chown(base, account.pw_uid, account.pw_gid)
            os.chown(base / "pwfile", account.pw_uid, account.pw_gid)
        init = subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(base / "data"), "-U", user, f"--pwfile={base / 'pwfile'}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
            user=run_as, capture_output=True, text=True, timeout=300, cwd=base,
        )
        (base / "pwfile").unlink()
        if init.returncode != 0:
            raise ServiceError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        for _ in range(_ATTEMPTS):
            port = free_port()
            options = (f"-p {port} -c listen_addresses={HOST} -k {base} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            log = base / "server.log"
            start = subprocess.run(
                [str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-l", str(log), "-o", options, "-w", "-t", "60",
                 "start"],
                user=run_as, capture_output=True, text=True, timeout=120, cwd=base,
            )
            if start.returncode == 0:
                return PostgresServer(port=port, user=user, password=password, base_dir=base, run_as=run_as)
            if "already in use" not in _tail(log, 40):
                raise ServiceError(f"pg_ctl start failed ({start.returncode}):\n{start.stderr}\n{_tail(log)}")
        raise ServiceError(f"PostgreSQL found no free port in {_ATTEMPTS} attempts:\n{_tail(base / 'server.log')}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def resp_command(host: str, port: int, *commands: tuple[str, ...], timeout: float = 5.0) -> list[object]:
    """Send Redis commands over one connection (RESP); returns one reply per command.

    Error replies raise ServiceError.  Bulk strings come back as str.
    """
    payload = b"".join(
        f"*{len(cmd)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in cmd)
        for cmd in commands
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        reader = sock.makefile("rb")
        replies = [_read_reply(reader) for _ in commands]
    errors = [r for r in replies if isinstance(r, ServiceError)]
    if errors:
        raise errors[0]
    return replies


def _read_reply(reader) -> object:
    line = reader.readline()
    if not line:
        raise ServiceError("redis closed the connection")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        return ServiceError(f"redis: {rest}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = reader.read(int(rest) + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        return None if int(rest) < 0 else [_read_reply(reader) for _ in range(int(rest))]
    raise ServiceError(f"redis: unexpected reply {line!r}")


@dataclass
class RedisServer:
    """A running throwaway redis-server (no persistence), with a password."""

    port: int
    password: str
    base_dir: Path
    process: subprocess.Popen = field(repr=False)
    host: str = HOST

    def command(self, *args: str | int, database: int = 0) -> object:
        """Run one command on ``database``; returns its reply."""
        cmds = [("AUTH", self.password), ("SELECT", str(database)), tuple(str(a) for a in args)]
        return resp_command(self.host, self.port, *cmds)[-1]

    def env(self, database: int = 0) -> dict[str, str]:
        """The OrangeScrum REDIS_* settings for ``database``."""
        return {"REDIS_HOST": self.host, "REDIS_PORT": str(self.port), "REDIS_PASSWORD": self.password,
                "REDIS_DATABASE": str(database)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(*, password: str | None = None) -> RedisServer:
    """Start redis-server on a free loopback port: no RDB, no AOF, its own directory."""
    server = _require("redis-server", "redis-server")
    password = password or secrets.token_hex(16)
    base = Path(tempfile.mkdtemp(prefix="oscb-redis-"))
    try:
        for _ in range(_ATTEMPTS):
            port = free_port()
            log = base / "server.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [server, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                     "--dir", str(base), "--requirepass", password, "--daemonize", "no", "--databases", "16"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )
            redis = RedisServer(port=port, password=password, base_dir=base, process=process)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if redis.command("PING") == "PONG":
                        return redis
                except (OSError, ServiceError):
                    time.sleep(0.1)
            if process.poll() is None:
                process.kill()
                process.wait()
                raise ServiceError(f"redis-server did not answer within 30s:\n{_tail(log)}")
            if "already in use" not in _tail(log, 40):
                raise ServiceError(f"redis-server exited ({process.returncode}):\n{_tail(log)}")
        raise ServiceError(f"redis-server found no free port in {_ATTEMPTS} attempts:\n{_tail(base / 'server.log')}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """One PostgreSQL database of the session's server."""

    server: PostgresServer
    name: str

    @property
    def env(self) -> dict[str, str]:
        return self.server.env(self.name)

    @property
    def url(self) -> str:
        s = self.server
        return f"postgres://{s.user}:{s.password}@{s.host}:{s.port}/{self.name}"

    def psql(self, sql: str) -> str:
        return self.server.psql(sql, database=self.name)


@dataclass(frozen=True)
class RedisDatabase:
    """One numbered database of the session's Redis server, empty at the start of the test."""

    server: RedisServer
    number: int

    @property
    def env(self) -> dict[str, str]:
        return self.server.env(self.number)

    @property
    def url(self) -> str:
        s = self.server
        return f"redis://:{s.password}@{s.host}:{s.port}/{self.number}"

    def command(self, *args: str | int) -> object:
        return self.server.command(*args, database=self.number)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 for the test session."""
    with start_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway Redis 7 for the test session."""
    with start_redis() as server:
        yield server


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[Database]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"test_{next(_database_numbers)}_{secrets.token_hex(3)}"
    postgres_server.create_database(name)
    try:
        yield Database(postgres_server, name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisDatabase]:
    """A flushed Redis database number (1-15, in turn) for one test."""
    number = 1 + next(_database_numbers) % 15
    redis_server.command("FLUSHDB", database=number)
    yield RedisDatabase(redis_server, number)
    redis_server.command("FLUSHDB", database=number)
