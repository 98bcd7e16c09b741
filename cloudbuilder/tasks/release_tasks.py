"""`invoke release`: the release assets in dist/release/, the package repositories, `--check`."""

from __future__ import annotations

import os

from invoke import task

from ..log import logger
from ._common import HELP, load_config, user_errors

# A passphrase for the signing key comes from the environment only (a CI secret);
# it is never a flag, a setting or a log line.
PASSPHRASE_ENV = "GPG_PASSPHRASE"


@task(help={
    "version": HELP["version"],
    "app": HELP["app"] + "; its CHANGELOG.md gives the release notes",
    "sign": "GPG key (fingerprint, key id or user id) that signs SHA256SUMS, the .rpm and the repositories "
            "(release.sign_key; with --check: the key the signatures must be from)",
    "repo": "also publish into the apt and dnf repository (release.repo_dir, default dist/release/repo); "
            "the versions already there are kept",
    "replace": "with --repo: overwrite a package that is already published with other content",
    "new-repo": "with --repo: start the repository afresh with only this release, deliberately (the packages "
                "it holds are dropped); for a repository that does not verify against its own index, was "
                "unsigned, or was signed by another key",
    "check": "verify the existing dist/release/ (checksums, signatures, repository metadata) and report mismatches",
})
def release(c, version=None, app=None, sign=None, repo=False, replace=False, new_repo=False, check=False):
    """Write dist/release/: both trees as .tar.gz, the .deb and .rpm, SHA256SUMS, RELEASE_NOTES.md.

    Run it after `invoke build` and `invoke package.all`: it defaults to what they
    made (version and settings from dist/manifest.json).
    With --sign KEY: SHA256SUMS.asc and a signed .rpm (GnuPG home: release.gnupghome;
    a passphrase, if the key has one, from the environment variable GPG_PASSPHRASE).
    With --repo: apt and dnf repositories that work from any static host; the repository
    already there must verify against its own (signed) index first.
    """
    from ..pipeline import ReleaseStage, StageContext, record_given, run_stages
    from ..release import ReleaseOptions, check_release

    with user_errors():
        cfg = load_config(c, replay=True, version=version, app=app, **{"release.sign_key": sign})
        opts = ReleaseOptions.from_config(cfg, passphrase=os.environ.get(PASSPHRASE_ENV) or None,
                                          repo=repo, replace=replace, new_repo=new_repo)
        if check:
            report = check_release(cfg, opts)
            for line in report.checked:
                logger.info("    ok: %s", line)
            for line in report.warnings:
                logger.warning("    warning: %s", line)
            logger.info("%s verifies%s.", report.dest, "" if report.signed_by else " (integrity only: unsigned)")
            return
        ctx = StageContext.for_config(cfg)
        result = run_stages([ReleaseStage(opts)], ctx)[-1].result
        record_given(ctx.workspace, cfg)
    logger.info("Release %s is in %s%s.", cfg.version, result.dest,
                f", signed by {result.signed_by}" if result.signed_by else " (unsigned)")
    if result.repo is not None:
        logger.info("Repository %s: %d .deb, %d .rpm; sync it to your package host.",
                    result.repo_dir, len(result.repo.debs), len(result.repo.rpms))
