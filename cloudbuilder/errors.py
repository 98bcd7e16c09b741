"""Errors written for the person running the build.

Every error the core raises is a ``CloudBuilderError`` whose message says what
failed, why, and what to do.  Only the task layer turns them into output (an
``invoke.Exit`` with the class's exit code).
"""

from __future__ import annotations


class CloudBuilderError(Exception):
    """Base class: the message is shown to the user as-is."""

    exit_code = 1


class ConfigError(CloudBuilderError):
    """A setting is missing or invalid (names the key, its source and the fix)."""

    exit_code = 2


class PrerequisiteError(CloudBuilderError):
    """A tool, daemon or input the step needs is not there."""

    exit_code = 3


class BuildError(CloudBuilderError):
    """An external build step (docker, a packager) failed."""

    exit_code = 4


class EnvInvalidError(CloudBuilderError):
    """A deployment env file did not pass validate-env.sh."""

    exit_code = 5


class VerificationError(CloudBuilderError):
    """`release --check` found a mismatch: a checksum, a signature or repository metadata."""

    exit_code = 6


class UntrustedRepositoryError(VerificationError):
    """`release --repo`: the existing repository does not verify against its own (signed) index.

    Publishing re-signs every index: refusing here keeps a file nobody released
    from being vouched for by the release key.
    """
