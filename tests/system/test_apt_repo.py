"""The generated apt repository, used the way a server uses it: inside a booted Debian 12.

A booted container (systemd-nspawn -b) adds the repository by its file:// URL with
the generated orangescrum.sources (signed-by the test's throwaway key), runs
`apt-get install orangescrum`, then upgrades to a second release published into
the same repository.  The packages are tiny nfpm packages named orangescrum: the
packaging tests install the real one; this test is about the repository.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from nspawn import BootedDebian, booted_rootfs_tarball
from release_support import EPOCH, make_gpg_key, prepare_project, stop_gpg_agent

from cloudbuilder.release import ReleaseOptions, make_release

APT = "DEBIAN_FRONTEND=noninteractive apt-get -q"


@pytest.fixture
def booted_tarball() -> Path:
    return booted_rootfs_tarball()


def test_apt_installs_from_the_repository_and_upgrades_to_the_next_release(tmp_path, example_app, booted_tarball):
    project = tmp_path / "project"
    published = tmp_path / "published"  # what a bucket would hold; bound into the container
    published.mkdir(mode=0o755)
    home = tmp_path / "gnupg"
    fpr = make_gpg_key(home)
    settings = {"release.gnupghome": str(home), "release.sign_key": fpr,
                "release.repo_dir": str(published / "repo"), "release.repo_url": "file:///srv/published/repo"}
    try:
        cfg = prepare_project(project, example_app, "4.1.0", **settings)
        make_release(cfg, ReleaseOptions.from_config(cfg, repo=True))
    finally:
        stop_gpg_agent(home)

    box = BootedDebian(booted_tarball, tmp_path / "box" / "rootfs", f"oscb-apt-{uuid.uuid4().hex[:8]}",
                       binds={published: "/srv/published"})
    try:
        box.boot()
        # Only our repository: the container has no network (--private-network).
        box.ok("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*")
        # What the docs tell an operator to do: the key to /usr/share/keyrings, the sources file.
        box.ok("cp /srv/published/repo/orangescrum-archive-keyring.gpg /usr/share/keyrings/")
        box.ok("cp /srv/published/repo/orangescrum.sources /etc/apt/sources.list.d/")
        box.ok(f"{APT} update")
        box.ok(f"{APT} install -y orangescrum")
        assert box.ok("dpkg-query -W -f='${Version}' orangescrum") == "4.1.0-1"
        assert box.ok("cat /usr/share/orangescrum/VERSION") == "orangescrum 4.1.0\n"

        # The next release goes into the same repository; the older version stays.
        try:
            cfg2 = prepare_project(project, example_app, "4.2.0", epoch=EPOCH + 86400, **settings)
            make_release(cfg2, ReleaseOptions.from_config(cfg2, repo=True))
        finally:
            stop_gpg_agent(home)
        box.ok(f"{APT} update")
        madison = box.ok("apt-cache madison orangescrum")
        assert "4.1.0-1" in madison and "4.2.0-1" in madison, madison
        box.ok(f"{APT} install -y --only-upgrade orangescrum")
        assert box.ok("dpkg-query -W -f='${Version}' orangescrum") == "4.2.0-1"
        assert box.ok("cat /usr/share/orangescrum/VERSION") == "orangescrum 4.2.0\n"

        # A repository signed by another key is refused (signed-by pins ours).
        other = tmp_path / "other-gnupg"
        make_gpg_key(other, uid="Someone Else <else@example.invalid>")
        try:
            subprocess.run(["gpg", "--homedir", str(other), "--batch", "--yes", "--local-user", "Someone Else",
                            "--clearsign", "--output", str(published / "repo/apt/dists/stable/InRelease"),
                            str(published / "repo/apt/dists/stable/Release")], check=True, capture_output=True)
        finally:
            stop_gpg_agent(other)
        refused = box.run(f"{APT} update")
        assert refused.returncode != 0 or "NO_PUBKEY" in refused.stderr + refused.stdout
        assert "NO_PUBKEY" in refused.stderr + refused.stdout or "not signed" in refused.stderr + refused.stdout
    finally:
        box.close()
