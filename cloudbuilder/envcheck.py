"""Run the one env checker, common/helpers/validate-env.sh, from Python.

The shell script is the single implementation (the Docker entrypoint, the
native units and the package postinst run it too); this module only calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import runner
from .errors import EnvInvalidError
from .resources import source_root


def validator_path() -> Path:
    return source_root() / "common" / "helpers" / "validate-env.sh"


@dataclass(frozen=True)
class EnvReport:
    path: Path
    exit_code: int  # 0 valid, 1 invalid, 2 unreadable/usage
    output: str  # the validator's lines: keys and rules, never values

    @property
    def valid(self) -> bool:
        return self.exit_code == 0


# On the build or deploying machine, KEY_FILE=/run/secrets/... names a path
# on the target (the container, the installed host): KEY counts as set and the
# file is not read here. The entrypoint and the units check the file there.
FILES_ELSEWHERE = ("--secret-files-elsewhere",)


def validate_env_file(path: Path, *, files_elsewhere: bool = False,
                      environ: Mapping[str, str] | None = None) -> EnvReport:
    """``environ``: the validator's environment (None: ours), e.g. with the OSCB_REPLICAS a deployment sets."""
    options = FILES_ELSEWHERE if files_elsewhere else ()
    done = runner.run(["sh", str(validator_path()), *options, str(path)], what="validate-env.sh", timeout=60,
                      env=environ)
    return EnvReport(path, done.returncode, (done.stdout + done.stderr).strip())


def require_valid_env(path: Path, *, files_elsewhere: bool = False,
                      environ: Mapping[str, str] | None = None) -> EnvReport:
    report = validate_env_file(path, files_elsewhere=files_elsewhere, environ=environ)
    if not report.valid:
        raise EnvInvalidError(
            f"{path} is not a valid deployment env file:\n{report.output}\n"
            f"Edit {path} (see docs/CONFIGURATION.md), then run the command again."
        )
    return report
