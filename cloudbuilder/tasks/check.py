"""`invoke check`: prerequisites and config as a table."""

from __future__ import annotations

from invoke import Context, Exit, task

from ..errors import ConfigError
from ._common import HELP, load_config, user_errors


def run_check(c: Context, show_config: bool = False, **flags) -> None:
    from ..config import describe
    from ..prereq import format_table, run_checks

    with user_errors():
        try:
            cfg, error = load_config(c, **flags), None
        except ConfigError as exc:
            cfg, error = None, str(exc)
        rows = run_checks(cfg, error)
    print(format_table(rows))
    if show_config and cfg is not None:
        settings = describe(cfg)
        width = max(len(k) for k, _, _ in settings)
        print("\nSETTING".ljust(width + 3) + "VALUE  (SOURCE)")
        for key, value, source in settings:
            print(f"{key.ljust(width)}  {value}  ({source})")
    if any(r.failed for r in rows):
        raise Exit(code=3)


@task(help={**HELP, "skip_deploy": "do not require docker compose (as build --skip-deploy)",
            "show_config": "also print every setting with its value and where it came from"})
def check(c, app=None, binary=None, env_file=None, version=None, skip_deploy=False, show_config=False):
    """Check prerequisites and config; with --env-file, validate that file too."""
    run_check(c, show_config=show_config, app=app, binary=binary, env_file=env_file, version=version,
              skip_deploy=skip_deploy)
