"""What `release --repo` and `release --check` trust (issue 9, findings 3 and 10).

Publishing re-signs every index of the repository, so it first verifies what the
repository holds against the repository's own signed index and refuses a file no
release published.  `release --check` refuses a once-signed release whose
signature is gone.  Real tools throughout: nfpm packages, gpg, rpmsign,
createrepo_c.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from release_support import EPOCH, build_tiny_packages, make_gpg_key, prepare_project, stop_gpg_agent

from cloudbuilder.errors import UntrustedRepositoryError, VerificationError
from cloudbuilder.fsutil import sha256_file
from cloudbuilder.release import SUMS, SUMS_SIG, ReleaseOptions, check_release, format_sums, make_release, parse_sums
from cloudbuilder.gpg import Gpg
from cloudbuilder.repo import Inventory, check_apt, publish

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("nfpm", "gpg", "dpkg-deb", "rpm", "rpmsign", "rpmkeys", "createrepo_c")
POOL = "apt/pool/main/o/orangescrum"


@pytest.fixture(autouse=True)
def _tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        message = f"missing tools: {', '.join(missing)} (scripts/setup.sh installs them)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


@pytest.fixture
def gnupg(tmp_path):
    home = tmp_path / "gnupg"
    fpr = make_gpg_key(home)
    yield home, fpr
    stop_gpg_agent(home)


class Published:
    """4.1.0 published (signed, unless told otherwise) into a repository outside dist/; 4.2.0 ready to release."""

    def __init__(self, tmp_path: Path, example_app: Path, home: Path, fpr: str, *, signed: bool = True) -> None:
        self.tmp, self.home, self.fpr = tmp_path, home, fpr
        self.repo = tmp_path / "bucket" / "repo"
        self.settings = {"release.gnupghome": str(home), "release.repo_dir": str(self.repo),
                         **({"release.sign_key": fpr} if signed else {})}
        cfg1 = prepare_project(tmp_path / "p", example_app, "4.1.0", **self.settings)
        make_release(cfg1, ReleaseOptions.from_config(cfg1, repo=True))
        shutil.rmtree(cfg1.dist_dir)  # invoke clean: the repository lives on
        self.cfg = prepare_project(tmp_path / "p", example_app, "4.2.0", epoch=EPOCH + 86400, **self.settings)

    def release(self, **kw):
        return make_release(self.cfg, ReleaseOptions.from_config(self.cfg, repo=True, **kw))

    def other_packages(self, version: str, *, name: str = "orangescrum") -> tuple[Path, Path]:
        """Real packages nobody released (another build: other bytes)."""
        return build_tiny_packages(self.tmp / f"attacker-{name}-{version}", version, name=name, epoch=EPOCH + 5)

    def packages_index(self) -> str:
        return (self.repo / "apt/dists/stable/main/binary-amd64/Packages").read_text()


@pytest.fixture
def published(tmp_path, example_app, gnupg) -> Published:
    return Published(tmp_path, example_app, *gnupg)


def refused(published: Published, match: str) -> str:
    """Releasing 4.2.0 into the repository fails, before any release file is written; returns the message."""
    before = published.packages_index()
    with pytest.raises(UntrustedRepositoryError, match=match) as err:
        published.release()
    assert not (published.cfg.dist_dir / "release").exists(), "refused before the release was written"
    assert published.packages_index() == before, "the signed index is untouched"
    assert "Version: 4.2.0" not in before
    assert not list(published.repo.parent.glob(".tmp-*"))
    return str(err.value)


# -- finding 3: the pool is verified against the repository's own signed index ------------------


def test_a_tampered_pool_deb_is_not_re_signed(published):
    pool_deb = published.repo / POOL / "orangescrum_4.1.0-1_amd64.deb"
    evil_deb, _ = published.other_packages("4.1.0")
    shutil.copyfile(evil_deb, pool_deb)  # a valid package, other bytes, same name

    message = refused(published, r"does not verify against its own signed index \(publishing re-signs")
    assert f"apt main/binary-amd64/Packages: {pool_deb}" in message
    assert "Remove the files named" in message and "--new-repo" in message
    # The repository check that `release --check` runs says so too.
    problems = check_apt(published.repo / "apt", gpg=Gpg(homedir=published.home), signed=True,
                         want_fpr=published.fpr).problems
    assert len(problems) == 1 and problems[0].startswith(f"apt main/binary-amd64/Packages: {pool_deb} "), problems


def test_a_deb_dropped_into_the_pool_is_refused(published):
    evil_deb, _ = published.other_packages("6.6.6", name="evil")
    dropped = published.repo / POOL / "evil.deb"
    shutil.copyfile(evil_deb, dropped)

    message = refused(published, r"evil\.deb is not listed in any Packages index")
    assert f"apt: {dropped} is not listed in any Packages index (no release published it): remove it" in message
    assert "(1 problems)" in message
    # Removing it, as the message says, is enough.
    dropped.unlink()
    result = published.release()
    assert result.repo is not None and len(result.repo.debs) == 2
    check_release(published.cfg, ReleaseOptions(sign_key=published.fpr, gnupghome=published.home))


def test_a_tampered_rpm_in_the_dnf_repository_is_not_re_signed(published):
    rpm = published.repo / "rpm" / "orangescrum-4.1.0-1.x86_64.rpm"
    _, evil_rpm = published.other_packages("4.1.0")
    shutil.copyfile(evil_rpm, rpm)
    _, dropped = published.other_packages("6.6.6", name="evil")
    shutil.copyfile(dropped, published.repo / "rpm" / "evil-6.6.6-1.x86_64.rpm")

    message = refused(published, r"\(2 problems\)")
    assert "dnf repodata/" in message and f"{rpm} has " in message
    assert "evil-6.6.6-1.x86_64.rpm is not listed in repodata/" in message


def test_an_index_rewritten_to_match_the_tampered_pool_does_not_verify(published):
    """An attacker who can write the bucket re-indexes it, but cannot sign: the signature check refuses."""
    pool_deb = published.repo / POOL / "orangescrum_4.1.0-1_amd64.deb"
    evil_deb, _ = published.other_packages("4.1.0")
    shutil.copyfile(evil_deb, pool_deb)
    dists = published.repo / "apt/dists/stable"
    forged = published.tmp / "forged"
    publish(forged, old=Inventory(published.repo, ("apt/pool/main/o/orangescrum/orangescrum_4.1.0-1_amd64.deb",),
                                  signed=False),
            debs=[], rpms=[], epoch=EPOCH, gpg=None, repo_url=None)
    for name in ("Release", "main/binary-amd64/Packages", "main/binary-amd64/Packages.gz"):
        shutil.copyfile(forged / "apt/dists/stable" / name, dists / name)

    message = refused(published, r"does not verify")
    assert f"apt: {dists / 'Release.gpg'}: BAD signature" in message
    # And stripping the signatures instead makes it an unsigned repository, which a signed release refuses.
    for sig in (dists / "InRelease", dists / "Release.gpg", published.repo / "rpm/repodata/repomd.xml.asc",
                published.repo / "orangescrum-archive-keyring.gpg", published.repo / "orangescrum-archive-keyring.asc"):
        sig.unlink()
    refused(published, r"holds packages but is not signed .*--new-repo")


def test_a_repository_signed_by_another_key_is_refused(tmp_path, published):
    other_home = tmp_path / "rotated"
    other = make_gpg_key(other_home, uid="New Release Key <new@example.invalid>")
    try:
        opts = ReleaseOptions(sign_key=other, gnupghome=other_home, repo=True)
        # The new home does not know the old key at all: no signature verifies.
        with pytest.raises(UntrustedRepositoryError, match=r"InRelease: signature by key .*no public key"):
            make_release(published.cfg, opts)
        # It knows it, but it is not the release key.
        shutil.copyfile(published.repo / "orangescrum-archive-keyring.asc", tmp_path / "old.asc")
        subprocess.run(["gpg", "--homedir", str(other_home), "--batch", "--import", str(tmp_path / "old.asc")],
                       check=True, capture_output=True)
        with pytest.raises(UntrustedRepositoryError, match=f"signed by {published.fpr}, not by {other}"):
            make_release(published.cfg, opts)
        # A deliberate new repository: only this release, signed by the new key.
        result = make_release(published.cfg, ReleaseOptions(sign_key=other, gnupghome=other_home, repo=True,
                                                            new_repo=True))
        assert result.repo is not None
        assert result.repo.debs == ("pool/main/o/orangescrum/orangescrum_4.2.0-1_amd64.deb",)
        assert result.repo.rpms == ("orangescrum-4.2.0-1.x86_64.rpm",)
        check_release(published.cfg, ReleaseOptions(sign_key=other, gnupghome=other_home))
    finally:
        stop_gpg_agent(other_home)


def test_an_unsigned_repository_is_checked_and_never_signed_implicitly(tmp_path, example_app, gnupg):
    home, fpr = gnupg
    published = Published(tmp_path, example_app, home, fpr, signed=False)
    assert not (published.repo / "apt/dists/stable/InRelease").exists()
    # Extending it unsigned: the checksums of its index must still hold.
    pool_deb = published.repo / POOL / "orangescrum_4.1.0-1_amd64.deb"
    original = pool_deb.read_bytes()
    shutil.copyfile(published.other_packages("4.1.0")[0], pool_deb)
    with pytest.raises(UntrustedRepositoryError, match=r"against its own index \(unsigned: checksums only\)"):
        published.release()
    pool_deb.write_bytes(original)
    # Signing it would vouch for packages nothing vouched for: refused, with the way out.
    with pytest.raises(UntrustedRepositoryError, match=r"holds packages but is not signed.*--new-repo"):
        make_release(published.cfg, ReleaseOptions(sign_key=fpr, gnupghome=home, repo=True))
    result = make_release(published.cfg, ReleaseOptions(sign_key=fpr, gnupghome=home, repo=True, new_repo=True))
    assert result.repo is not None and result.repo.debs == ("pool/main/o/orangescrum/orangescrum_4.2.0-1_amd64.deb",)
    check_release(published.cfg, ReleaseOptions(sign_key=fpr, gnupghome=home))


def test_an_unsigned_repository_consistent_with_its_index_is_extended(tmp_path, example_app, gnupg):
    home, fpr = gnupg
    published = Published(tmp_path, example_app, home, fpr, signed=False)
    result = published.release()
    assert result.repo is not None and len(result.repo.debs) == 2 and len(result.repo.rpms) == 2
    check_release(published.cfg, ReleaseOptions())


# -- finding 10: a once-signed release whose signature was removed ---------------------------------


def test_a_removed_signature_is_refused_by_check_without_sign(tmp_path, example_app, gnupg):
    home, fpr = gnupg
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0", **{"release.gnupghome": str(home)})
    make_release(cfg, ReleaseOptions(sign_key=fpr, gnupghome=home, repo=True))
    dest = cfg.dist_dir / "release"
    assert f"Signed with the OpenPGP key `{fpr}`" in (dest / "RELEASE_NOTES.md").read_text()
    (dest / SUMS_SIG).unlink()

    with pytest.raises(VerificationError) as err:
        check_release(cfg, ReleaseOptions(gnupghome=home))
    message = str(err.value)
    assert f"{SUMS_SIG} is missing, but the release was signed (RELEASE_NOTES.md says it was signed by {fpr}; " \
           "orangescrum-4.1.0-1.x86_64.rpm carries an rpm signature; the repository" in message
    assert "restore it from the published release" in message

    # Rewriting the notes and SHA256SUMS to look unsigned does not hide the signed .rpm and repository.
    notes = dest / "RELEASE_NOTES.md"
    notes.write_text(re.sub(r"(?m)^(gpg --verify|Signed with).*\n", "", notes.read_text()))
    sums, _ = parse_sums((dest / SUMS).read_text())
    (dest / SUMS).write_text(format_sums({**sums, "RELEASE_NOTES.md": sha256_file(notes)}))
    with pytest.raises(VerificationError, match=r"SHA256SUMS.asc is missing, but the release was signed "
                                                r"\(orangescrum-4.1.0-1.x86_64.rpm carries an rpm signature; "
                                                r"the repository .* is signed\)"):
        check_release(cfg, ReleaseOptions(gnupghome=home))


def test_an_unsigned_release_passes_check_as_integrity_only_and_sign_requires_signatures(tmp_path, example_app,
                                                                                          gnupg):
    home, fpr = gnupg
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0", **{"release.gnupghome": str(home)})
    make_release(cfg, ReleaseOptions(repo=True))
    report = check_release(cfg, ReleaseOptions(gnupghome=home))
    assert report.signed_by is None
    assert any("not signed" in w and "--sign KEY" in w for w in report.warnings)
    # Whoever can rewrite the whole directory can always make it look unsigned: the key, given
    # from outside the directory, is what makes signatures required.
    with pytest.raises(VerificationError, match=r"release: .*SHA256SUMS.asc is missing"):
        check_release(cfg, ReleaseOptions(sign_key=fpr, gnupghome=home))


def test_cli_refuses_a_dropped_in_deb_and_a_removed_signature(tmp_path, example_app, gnupg):
    """The commands of the findings, as a user types them (the default repository, dist/release/repo)."""
    home, fpr = gnupg
    project = tmp_path / "p"
    cfg = prepare_project(project, example_app, "4.1.0")
    (project / "invoke.yaml").write_text(
        f"cloudbuilder:\n  app: app\n  binary: frankenphp\n  source_date_epoch: {EPOCH}\n"
        f"  release:\n    gnupghome: {home}\n")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cloudbuilder", *args], cwd=project, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert cli("release", "--sign", fpr, "--repo", "--version", "4.1.0").returncode == 0
    prepare_project(project, example_app, "4.2.0")
    evil = build_tiny_packages(tmp_path / "evil", "6.6.6", name="evil")[0]
    dropped = cfg.dist_dir / "release/repo" / POOL / "evil.deb"
    shutil.copyfile(evil, dropped)
    done = cli("release", "--sign", fpr, "--repo", "--version", "4.2.0")
    assert done.returncode == 6, done.stderr
    assert f"{dropped} is not listed in any Packages index (no release published it): remove it" in done.stderr
    assert "--new-repo" in done.stderr
    dropped.unlink()
    done = cli("release", "--sign", fpr, "--repo", "--version", "4.2.0")
    assert done.returncode == 0, done.stderr
    assert "2 packages verify (signed by" in done.stderr

    (cfg.dist_dir / "release" / SUMS_SIG).unlink()
    done = cli("release", "--check")
    assert done.returncode == 6
    assert f"{SUMS_SIG} is missing, but the release was signed" in done.stderr
