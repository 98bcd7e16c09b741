"""`invoke deploy --swarm`: dist/docker as a Docker Swarm stack.

Swarm has no depends_on, so the order is kept here: the migration job
(stack.migrate.yaml, `mode: replicated-job`) is deployed first and must
complete; only then is stack.yaml deployed, whose web replicas roll over one
at a time (start-first, health-gated, rollback on failure). The old version
serves while the migration runs, so migrations must stay backwards compatible.

Secrets: the keys of ``swarm.secrets`` are taken out of the env file and handed
to the stack as Docker secrets (files in a private temporary directory while
`docker stack deploy` reads them; the services get KEY_FILE=/run/secrets/KEY).
Secrets are immutable in Swarm, so their names carry a digest of the values:
a changed value is a new secret, and the services roll over to it.

Planning (which files, which environment, what converged means) is pure and
tested without an engine; ``deploy_swarm``/``rollback_swarm`` run it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import reproducible, runner
from .config import BuildConfig, read_env_file
from .envcheck import require_valid_env
from .errors import BuildError, ConfigError, PrerequisiteError
from .log import logger, step
from .workspace import Workspace

STACK_FILE = "stack.yaml"
MIGRATE_FILE = "stack.migrate.yaml"
MIGRATE_SERVICE = "migrate"
# The long-running services of stack.yaml, and what `--rollback` returns.
SERVICES = ("edge", "app", "queue", "recurring")
ROLLBACK_SERVICES = ("app", "queue", "recurring")
WAIT_TIMEOUT = 300
LOG_TAIL = 30
_FAILED = ("failed", "rejected", "orphaned")
_UPDATE_FAILED = ("paused", "rollback_started", "rollback_paused", "rollback_completed")


@dataclass(frozen=True)
class StackEnv:
    """What `docker stack deploy` is given: the services' env file and the secret files."""

    env_file: Path
    secrets_dir: Path
    secrets_version: str

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, "ORANGESCRUM_ENV_FILE": str(self.env_file), "ORANGESCRUM_SECRETS_DIR": str(self.secrets_dir),
                "ORANGESCRUM_SECRETS_VERSION": self.secrets_version}


def split_secrets(values: Mapping[str, str], keys: Iterable[str],
                  source: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the env file without ``keys``, the values of ``keys``). A key that is not set is an error:
    Swarm refuses empty secrets, and the service would read an empty KEY_FILE."""
    keys = tuple(keys)
    missing = [k for k in keys if not values.get(k)]
    if missing:
        raise ConfigError(
            f"swarm.secrets names {', '.join(missing)}, which {source} does not set: set "
            f"{'them' if len(missing) > 1 else 'it'} there, or leave {'them' if len(missing) > 1 else 'it'} out of "
            "swarm.secrets (OSCB_SWARM_SECRETS, comma-separated)")
    plain = {k: v for k, v in values.items() if k not in keys}
    return plain, {k: values[k] for k in keys}


def secrets_version(secrets: Mapping[str, str]) -> str:
    """A digest of the secret values (names of immutable Swarm secrets); never a value."""
    digest = hashlib.sha256()
    for key in sorted(secrets):
        digest.update(f"{key}\0{secrets[key]}\0".encode())
    return digest.hexdigest()[:12]


def _env_line(key: str, value: str) -> str:
    # The docker CLI reads env files literally (no quotes, no escapes): one line per value.
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{key}: a value with a line break cannot travel in an env file to the stack; "
                          f"add {key} to swarm.secrets")
    return f"{key}={value}\n"


def write_stack_env(workdir: Path, values: Mapping[str, str], keys: Iterable[str], source: Path) -> StackEnv:
    """The filtered env file and one file per secret in ``workdir`` (mode 0600, a private directory)."""
    plain, secrets = split_secrets(values, keys, source)
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env_file = workdir / "stack.env"
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    old = os.umask(0o077)
    try:
        env_file.write_text("".join(_env_line(k, v) for k, v in plain.items()))
        for key, value in secrets.items():
            (secrets_dir / key).write_text(value)
    finally:
        os.umask(old)
    return StackEnv(env_file=env_file, secrets_dir=secrets_dir, secrets_version=secrets_version(secrets))


# --------------------------------------------------------------------------
# Convergence: pure functions of `docker service inspect` / `docker inspect TASK`
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    name: str
    spec: Mapping
    tasks: tuple[Mapping, ...]
    update: Mapping | None = None
    job_iteration: int | None = None
    has_previous: bool = False  # a previous spec to roll back to


def _task_state(task: Mapping) -> str:
    return (task.get("Status") or {}).get("State", "")


def job_result(state: ServiceState) -> tuple[str, str]:
    """("complete" | "failed" | "running", detail) of a job's current iteration."""
    # The engine's JSON leaves a zero Index out.
    mine = [t for t in state.tasks if (t.get("JobIteration") or {}).get("Index", 0) == (state.job_iteration or 0)]
    if any(_task_state(t) == "complete" for t in mine):
        return "complete", ""
    failed = [t for t in mine if _task_state(t) in _FAILED]
    if failed:
        status = failed[-1].get("Status") or {}
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        return "failed", f"{status.get('Err') or _task_state(failed[-1])} (exit code {exit_code})"
    states = sorted({_task_state(t) for t in mine}) or ["no task yet"]
    return "running", ", ".join(states)


def _image(spec: Mapping) -> str:
    return ((spec.get("ContainerSpec") or {}).get("Image") or "")


def service_problem(state: ServiceState, *, since: str = "", rolling_back: bool = False) -> str | None:
    """What keeps a long-running service from being converged; None when it is.

    Converged: no update in progress, as many running tasks of the current image
    (healthy, where the service has a check: Swarm only calls those running) as
    replicas. The recurring task is converged once a task of it started (it exits
    between runs). ``since`` (RFC 3339, UTC): an update status from before it is
    history, not this deploy's. ``rolling_back``: a completed rollback is the goal.
    """
    update = dict(state.update or {})
    if since and str(update.get("StartedAt", "")) < since:
        update = {}
    done_states = ("completed", "rollback_completed") if rolling_back else ("completed",)
    status = update.get("State")
    if status in ("updating", "rollback_started"):
        return f"{state.name}: {'rolling back' if status == 'rollback_started' else 'updating'}"
    if status and status not in done_states:
        return f"{state.name}: update {status}: {update.get('Message', '')}".rstrip(": ")
    wanted = ((state.spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1)
    image = _image(state.spec.get("TaskTemplate") or {})
    mine = [t for t in state.tasks if _image(t.get("Spec") or {}) == image]
    if state.name.endswith("_recurring"):
        # Between runs the finished task is shut down and the next one waits, `ready`, for its delay.
        if any(_task_state(t) in ("running", "complete") for t in mine):
            return None
        return f"{state.name}: no run started yet ({', '.join(sorted({_task_state(t) for t in mine})) or 'no task'})"
    current = [t for t in mine if t.get("DesiredState") == "running"]
    running = [t for t in current if _task_state(t) == "running"]
    if len(running) >= wanted:
        return None
    states = ", ".join(sorted(_task_state(t) for t in current)) or "no task"
    return f"{state.name}: {len(running)}/{wanted} running ({states})"


def _failed_update(problem: str) -> bool:
    return ": update " in problem


def crashed(state: ServiceState) -> str | None:
    """A task of the current spec that failed with an error: no point waiting longer."""
    image = _image(state.spec.get("TaskTemplate") or {})
    failures = [t for t in state.tasks if _task_state(t) in _FAILED and _image(t.get("Spec") or {}) == image]
    if len(failures) >= 3:  # the restart policy retried; the update will not converge by itself
        status = failures[-1].get("Status") or {}
        return f"{state.name}: tasks keep failing: {status.get('Err') or 'exited'}"
    return None


def wait_until(check: Callable[[], list[str]], timeout: float, *, what: str, poll: float = 2.0,
               stop: Callable[[list[str]], bool] = lambda _p: False,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Poll ``check`` until it returns [] or ``timeout`` passed (then the last problems) or ``stop``
    says the problems are final (returned at once); logs each change."""
    deadline = clock() + timeout
    last: list[str] | None = None
    while True:
        problems = check()
        if not problems:
            return []
        if stop(problems):
            return problems
        if problems != last:
            logger.info("    waiting for %s: %s", what, "; ".join(problems))
            last = problems
        if clock() >= deadline:
            return [*problems, f"(waited {timeout:.0f} s)"]
        sleep(poll)


# --------------------------------------------------------------------------
# The engine side: the docker CLI (stack deploy needs it; the SDK has no stacks)
# --------------------------------------------------------------------------


def _docker(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, check: bool = True,
            level: int = logging.DEBUG) -> runner.Completed:
    done = runner.run(["docker", *args], what=f"docker {args[0]}", env=env, cwd=cwd, timeout=600, level=level,
                      prefix="    + ")
    if check and done.returncode != 0:
        raise BuildError(f"`docker {' '.join(args[:3])}` failed:\n" + _indent(done.stderr or done.stdout, 15))
    return done


def require_swarm() -> None:
    if shutil.which("docker") is None:
        raise PrerequisiteError("the docker CLI is not on PATH; install docker.io")
    done = _docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}", check=False)
    state = done.stdout.strip().split()
    if done.returncode != 0 or not state:
        raise PrerequisiteError("cannot reach the Docker engine (`docker info` failed); start dockerd")
    if state[0] != "active":
        raise PrerequisiteError("this Docker engine is not part of a swarm: `docker swarm init` "
                                "(or join one), then run `invoke deploy --swarm` again")
    if state[1:] != ["true"]:
        raise PrerequisiteError("this node is a swarm worker: run `invoke deploy --swarm` on a manager")


def service_state(name: str) -> ServiceState | None:
    done = _docker("service", "inspect", name, check=False)
    if done.returncode != 0:
        return None
    (service,) = json.loads(done.stdout)
    ids = _docker("service", "ps", "-q", "--no-trunc", name, check=False).stdout.split()
    tasks = json.loads(_docker("inspect", "--type", "task", *ids, check=False).stdout or "[]") if ids else []
    job = (service.get("JobStatus") or {}).get("JobIteration") or {}
    return ServiceState(name=name, spec=service.get("Spec") or {}, tasks=tuple(tasks),
                        update=service.get("UpdateStatus"),
                        job_iteration=job.get("Index", 0) if "JobStatus" in service else None,
                        has_previous=bool(service.get("PreviousSpec")))


def _logs(service: str) -> str:
    done = _docker("service", "logs", "--raw", "--no-trunc", "--tail", str(LOG_TAIL), service, check=False)
    return _indent(done.stdout + done.stderr, LOG_TAIL)


def _stack_deploy(tree: Path, stack: str, compose_file: str, env: Mapping[str, str]) -> None:
    # --resolve-image never: the images are local (no registry is asked for digests).
    _docker("stack", "deploy", "--detach=true", "--resolve-image", "never", "-c", compose_file, stack,
            env=env, cwd=tree, level=logging.INFO)


def _utcnow() -> str:
    """Now, for `docker service logs --since` (RFC 3339, UTC; whole seconds, rounded down)."""
    return reproducible.rfc3339(int(time.time()))


def _wait_services(stack: str, services: Iterable[str], timeout: float, *, since: str = "",
                   rolling_back: bool = False) -> None:
    names = [f"{stack}_{s}" for s in services]

    def check() -> list[str]:
        problems = []
        for name in names:
            state = service_state(name)
            if state is None:
                problems.append(f"{name}: no such service")
                continue
            problem = service_problem(state, since=since, rolling_back=rolling_back)
            if problem:
                problems.append(crashed(state) or problem)
        return problems

    problems = wait_until(check, timeout, what="the services to converge",
                          stop=lambda found: any(_failed_update(p) for p in found))
    if problems:
        failing = [p.split(":", 1)[0] for p in problems if ":" in p]
        logs = "\n".join(f"  last log lines of {n}:\n{_logs(n)}" for n in failing[:2])
        raise BuildError("the stack did not converge:\n" + "\n".join(f"    {p}" for p in problems) + "\n" + logs
                         + f"\n`docker stack ps {stack}` and `docker service logs {stack}_app` show more; "
                           f"`invoke deploy --swarm --rollback` returns to the previous version.")


def deploy_swarm(cfg: BuildConfig, *, wait_timeout: float = WAIT_TIMEOUT) -> None:
    """Migrate (one job, must complete), then deploy stack.yaml and wait until it converged."""
    tree = Workspace(cfg.dist_dir).docker_tree
    for name in (STACK_FILE, MIGRATE_FILE):
        if not (tree / name).is_file():
            raise ConfigError(f"{tree / name} does not exist; run `invoke build` (or `invoke dist.docker`) first")
    from .deploy import deploy_env_file

    env_file = deploy_env_file(cfg)
    # With the replicas the services are told: above 1 the validator wants shared sessions.
    require_valid_env(env_file, files_elsewhere=True,
                      environ={**os.environ, "OSCB_REPLICAS": str(cfg.scale.replicas)})
    require_swarm()
    stack = cfg.swarm.stack_name
    with tempfile.TemporaryDirectory(prefix="oscb-stack-") as work:
        stack_env = write_stack_env(Path(work), read_env_file(env_file), cfg.swarm.secrets, env_file)
        # The resolved setting, not whatever the shell has: the stack file reads OSCB_REPLICAS.
        env = {**stack_env.environ(os.environ), "OSCB_REPLICAS": str(cfg.scale.replicas)}
        with step(f"Running the migration job {stack}_{MIGRATE_SERVICE}"):
            _stack_deploy(tree, stack, MIGRATE_FILE, env)
            job = f"{stack}_{MIGRATE_SERVICE}"
            result: list[tuple[str, str]] = []

            def migrated() -> list[str]:
                state = service_state(job)
                outcome = job_result(state) if state else ("running", "no such service yet")
                result[:] = [outcome]
                return [] if outcome[0] != "running" else [f"{job}: {outcome[1]}"]

            problems = wait_until(migrated, wait_timeout, what="the migration")
            if problems or result[0][0] != "complete":
                detail = "; ".join(problems) if problems else result[0][1]
                raise BuildError(f"the migration job {job} did not complete: {detail}\n  its last log lines:\n"
                                 + _logs(job) + "\nNothing else was changed: the running version keeps serving. "
                                 "Fix the migration, then run `invoke deploy --swarm` again.")
        with step(f"Deploying the stack {stack} ({STACK_FILE})"):
            since = _utcnow()
            _stack_deploy(tree, stack, STACK_FILE, env)
    with step(f"Waiting until {', '.join(SERVICES)} converged"):
        _wait_services(stack, SERVICES, wait_timeout, since=since)
    remove_gone_extractions(stack)
    logger.info("    %s: %s converged; the edge answers on port %d of the nodes it runs on",
                stack, ", ".join(SERVICES), cfg.docker.host_port)


def extraction_volume_prefix(stack: str) -> str:
    """The name of each task's extraction volume, before the task's ID (docker/_stack_common.j2)."""
    return f"{stack}_extract-"


def remove_gone_extractions(stack: str) -> list[str]:
    """Remove the extraction volumes no container uses any more (tasks that are gone); returns their names.

    A volume a container still holds (a running task, or a stopped one the swarm keeps
    in its task history) is left alone: `docker volume rm` refuses it.
    """
    prefix = extraction_volume_prefix(stack)
    listed = _docker("volume", "ls", "--quiet", "--filter", "dangling=true", "--filter", f"name={prefix}",
                     check=False)
    names = [n for n in listed.stdout.split() if n.startswith(prefix)]
    removed = [n for n in names if _docker("volume", "rm", n, check=False).returncode == 0]
    if removed:
        logger.info("    removed %d extraction volume(s) of tasks that are gone", len(removed))
    return removed


def rollback_targets(stack: str, states: Mapping[str, ServiceState | None]) -> list[str]:
    """The services of ROLLBACK_SERVICES that have a previous version (the others were never updated)."""
    missing = [f"{stack}_{s}" for s in ROLLBACK_SERVICES if states.get(s) is None]
    if missing:
        raise ConfigError(f"the stack {stack} has no service {', '.join(missing)}: nothing to roll back "
                          "(swarm.stack_name names the stack)")
    targets = [s for s in ROLLBACK_SERVICES if states[s].has_previous]  # type: ignore[union-attr]
    if not targets:
        raise ConfigError(f"no service of the stack {stack} has a previous version to return to "
                          "(each was deployed once)")
    return targets


def rollback_swarm(cfg: BuildConfig, *, wait_timeout: float = WAIT_TIMEOUT) -> None:
    """`docker service rollback` of app, queue and recurring (those with a previous spec), then wait."""
    require_swarm()
    stack = cfg.swarm.stack_name
    targets = rollback_targets(stack, {s: service_state(f"{stack}_{s}") for s in ROLLBACK_SERVICES})
    with step(f"Rolling {', '.join(targets)} of {stack} back to the previous version"):
        since = _utcnow()
        for service in ROLLBACK_SERVICES:
            if service not in targets:
                logger.info("    %s_%s has no previous version: left as it is", stack, service)
                continue
            name = f"{stack}_{service}"
            _docker("service", "rollback", "--detach", name, level=logging.INFO)
    with step(f"Waiting until {', '.join(targets)} converged"):
        _wait_services(stack, targets, wait_timeout, since=since, rolling_back=True)
    remove_gone_extractions(stack)
    logger.info("    %s: rolled back (the database schema stays migrated: migrations are forward-only)", stack)


def _indent(text: str, last: int) -> str:
    lines = text.strip().splitlines()[-last:]
    return "\n".join("    | " + line for line in lines)
