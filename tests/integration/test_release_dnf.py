"""The generated dnf repository, read by dnf itself (Debian's dnf package).

dnf loads the repository with --repofrompath, checks repomd.xml's signature
(repo_gpgcheck) and the metadata checksums, lists both published versions, then
installs the older and upgrades to the newer into a throwaway --installroot,
which checks every package's checksum and rpm signature (gpgcheck).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from release_support import EPOCH, make_gpg_key, prepare_project, stop_gpg_agent

from cloudbuilder.release import ReleaseOptions, make_release


@pytest.fixture
def published(tmp_path, example_app) -> Path:
    """A signed repository with orangescrum 4.1.0 and 4.2.0 (two releases, one repository)."""
    for tool in ("dnf", "nfpm", "createrepo_c", "rpmsign", "gpg"):
        if shutil.which(tool) is None:
            message = f"{tool} is not installed (scripts/setup.sh installs it)"
            pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    home = tmp_path / "gnupg"
    fpr = make_gpg_key(home)
    settings = {"release.gnupghome": str(home), "release.sign_key": fpr,
                "release.repo_dir": str(tmp_path / "repo")}
    try:
        for version, epoch in (("4.1.0", EPOCH), ("4.2.0", EPOCH + 86400)):
            cfg = prepare_project(tmp_path / "p", example_app, version, epoch=epoch, **settings)
            make_release(cfg, ReleaseOptions.from_config(cfg, repo=True))
    finally:
        stop_gpg_agent(home)
    return tmp_path / "repo"


class Dnf:
    def __init__(self, repo: Path, work: Path) -> None:
        self.repo, self.work = repo, work
        self.root, self.cache = work / "installroot", work / "cache"
        self.root.mkdir(parents=True)
        self.cache.mkdir(parents=True)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["dnf", "-y", f"--installroot={self.root}", f"--setopt=cachedir={self.cache}",
                "--setopt=reposdir=/nonexistent", "--releasever=12", "--setopt=install_weak_deps=0",
                f"--repofrompath=orangescrum,file://{self.repo}/rpm", "--repo=orangescrum",
                "--setopt=orangescrum.gpgcheck=1", "--setopt=orangescrum.repo_gpgcheck=1",
                f"--setopt=orangescrum.gpgkey=file://{self.repo}/orangescrum-archive-keyring.asc", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def close(self) -> None:
        # dnf imports the repository key with a gpg agent of its own under the cache.
        for pubring in self.cache.glob("*/pubring"):
            stop_gpg_agent(pubring)


@pytest.fixture
def dnf(published, tmp_path):
    d = Dnf(published, tmp_path / "dnf")
    yield d
    d.close()


def test_dnf_lists_both_versions_and_installs_then_upgrades(dnf):
    listed = dnf("list", "--showduplicates", "orangescrum").stdout
    assert "4.1.0-1" in listed and "4.2.0-1" in listed, listed

    dnf("install", "orangescrum-4.1.0")
    assert (dnf.root / "usr/share/orangescrum/VERSION").read_text() == "orangescrum 4.1.0\n"
    dnf("upgrade", "orangescrum")
    assert (dnf.root / "usr/share/orangescrum/VERSION").read_text() == "orangescrum 4.2.0\n"


def test_dnf_rejects_a_package_that_does_not_match_the_metadata(dnf, published):
    rpm = published / "rpm" / "orangescrum-4.2.0-1.x86_64.rpm"
    rpm.write_bytes(rpm.read_bytes() + b"tampered")
    done = dnf("install", "orangescrum-4.2.0", check=False)
    assert done.returncode != 0
    assert "has incorrect checksum" in done.stderr, done.stderr
    assert not (dnf.root / "usr/share/orangescrum/VERSION").exists()


def test_dnf_rejects_metadata_whose_signature_does_not_match(dnf, published):
    repomd = published / "rpm" / "repodata" / "repomd.xml"
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>1"))
    done = dnf("list", "--showduplicates", "orangescrum", check=False)
    assert done.returncode != 0
    assert "repomd.xml GPG signature verification error" in done.stderr, done.stderr
