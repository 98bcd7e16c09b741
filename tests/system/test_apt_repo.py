"""The generated apt repository, used the way a server uses it: inside a booted Debian 12.

A booted container (systemd-nspawn -b) adds the repository by its file:// URL with
the generated orangescrum.sources (signed-by the test's throwaway key), runs
`apt-get install orangescrum`, then upgrades to a second release published into
the same repository.  The packages are tiny nfpm packages named orangescrum: the
packaging tests install the real one; this test is about the repository.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from release_support import EPOCH, make_gpg_key, prepare_project, stop_gpg_agent

from cloudbuilder.release import ReleaseOptions, make_release

# Same name and packages as the packaging tests' booted rootfs: one cached tarball.
BOOTED_ROOTFS = ("systemd-booted", ("systemd", "systemd-sysv", "dbus", "apt", "ca-certificates", "curl", "rpm"))


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


class BootedDebian:
    """A Debian 12 rootfs booted with systemd-nspawn; commands run in it with nsenter."""

    def __init__(self, tarball: Path, workdir: Path, binds: dict[Path, str]) -> None:
        self.root = workdir / "rootfs"
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "--numeric-owner", "-xf", str(tarball), "-C", str(self.root)], check=True)
        # Only our repository: the container has no network (--private-network).
        for stale in (self.root / "etc/apt/sources.list", *(self.root / "etc/apt/sources.list.d").glob("*")):
            stale.unlink(missing_ok=True)
        self.name = f"oscb-apt-{uuid.uuid4().hex[:8]}"
        self.log = open(workdir / "nspawn.log", "wb")  # noqa: SIM115 - closed in stop()
        argv = ["systemd-nspawn", "-D", str(self.root), "-b", "--keep-unit", "--register=no",
                "--private-network", "-M", self.name, "--console=passive"]
        argv += [f"--bind-ro={src}:{dst}" for src, dst in binds.items()]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self._wait_for_init()
        self._wait_booted()

    def _wait_for_init(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}: {self._log_tail()}")
            for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
                children = (task / "children").read_text().split() if (task / "children").exists() else []
                for child in children:
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return int(child)
            time.sleep(0.2)
        raise AssertionError(f"the container's systemd did not start: {self._log_tail()}")

    def _wait_booted(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.run("systemctl", "is-system-running", check=False)
            if done.stdout.strip() in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise AssertionError(f"the container did not finish booting: {self._log_tail()}")

    def _log_tail(self) -> str:
        self.log.flush()
        return (Path(self.log.name).read_bytes()[-2000:]).decode(errors="replace")

    def run(self, *argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
               "HOME": "/root"}
        done = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                               "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn powers the container off cleanly
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def booted_tarball() -> Path:
    if os.geteuid() != 0:
        _unavailable("booting a container needs root")
    for tool in ("systemd-nspawn", "nsenter", "debootstrap"):
        if not shutil.which(tool):
            _unavailable(f"{tool} is not installed (apt-get install systemd-container util-linux debootstrap)")
    from cloudbuilder.rootfs import ensure_rootfs_tarball

    name, packages = BOOTED_ROOTFS
    return ensure_rootfs_tarball(name, packages)


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

    box = BootedDebian(booted_tarball, tmp_path / "box", {published: "/srv/published"})
    try:
        # What the docs tell an operator to do: the key to /usr/share/keyrings, the sources file.
        box.run("cp", "/srv/published/repo/orangescrum-archive-keyring.gpg", "/usr/share/keyrings/")
        box.run("cp", "/srv/published/repo/orangescrum.sources", "/etc/apt/sources.list.d/")
        box.run("apt-get", "update")
        box.run("apt-get", "install", "-y", "orangescrum")
        assert box.run("dpkg-query", "-W", "-f=${Version}", "orangescrum").stdout == "4.1.0-1"
        assert box.run("cat", "/usr/share/orangescrum/VERSION").stdout == "orangescrum 4.1.0\n"

        # The next release goes into the same repository; the older version stays.
        try:
            cfg2 = prepare_project(project, example_app, "4.2.0", epoch=EPOCH + 86400, **settings)
            make_release(cfg2, ReleaseOptions.from_config(cfg2, repo=True))
        finally:
            stop_gpg_agent(home)
        box.run("apt-get", "update")
        madison = box.run("apt-cache", "madison", "orangescrum").stdout
        assert "4.1.0-1" in madison and "4.2.0-1" in madison, madison
        box.run("apt-get", "install", "-y", "--only-upgrade", "orangescrum")
        assert box.run("dpkg-query", "-W", "-f=${Version}", "orangescrum").stdout == "4.2.0-1"
        assert box.run("cat", "/usr/share/orangescrum/VERSION").stdout == "orangescrum 4.2.0\n"

        # A repository signed by another key is refused (signed-by pins ours).
        other = tmp_path / "other-gnupg"
        make_gpg_key(other, uid="Someone Else <else@example.invalid>")
        try:
            subprocess.run(["gpg", "--homedir", str(other), "--batch", "--yes", "--local-user", "Someone Else",
                            "--clearsign", "--output", str(published / "repo/apt/dists/stable/InRelease"),
                            str(published / "repo/apt/dists/stable/Release")], check=True, capture_output=True)
        finally:
            stop_gpg_agent(other)
        refused = box.run("apt-get", "update", check=False)
        assert refused.returncode != 0 or "NO_PUBKEY" in refused.stderr + refused.stdout
        assert "NO_PUBKEY" in refused.stderr + refused.stdout or "not signed" in refused.stderr + refused.stdout
    finally:
        box.stop()
