"""A booted Debian 12 for system tests: systemd-nspawn -b, commands through nsenter.

One adapter owns every nspawn/nsenter call; the packaging and the apt-repository
tests share it and the cached rootfs tarball.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

# A minimal Debian 12 that boots, plus what the packages and the tests use.
ROOTFS_NAME = "systemd-booted"
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "dbus", "apt", "ca-certificates", "rpm", "curl")


def unavailable(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"booted-system tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _children(pid: int) -> list[int]:
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------
# The booted machine: one adapter owns every nspawn/nsenter call
# --------------------------------------------------------------------------


class BootedDebian:
    """A Debian rootfs booted with systemd-nspawn; ``run()`` executes inside with nsenter.

    ``--keep-unit --register=no`` because no systemd (and no machined) runs on
    the host; ``--private-network`` so that the guest's port 8080 clashes with
    nothing.  ``close()`` powers it off (SIGTERM to nspawn), kills it if it does
    not stop, unmounts anything left and removes the directory.
    """

    def __init__(self, tarball: Path, root: Path, name: str, binds: dict[Path, str] | None = None) -> None:
        self.tarball, self.root, self.name = tarball, root, name
        self.binds = dict(binds or {})  # host path -> guest path, read-only
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        self.log_path = root.with_suffix(".log")

    def boot(self, timeout: float = 90) -> None:
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "--numeric-owner", "-xf", str(self.tarball), "-C", str(self.root)], check=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the machine
        self._log = log
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "-D", str(self.root), "-b", "--keep-unit", "--register=no",
             "--private-network", "-M", self.name, "--console=pipe",
             *(f"--bind-ro={src}:{dst}" for src, dst in self.binds.items())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        # The guest's init: the child of nspawn once it has exec'd systemd.
        while self.leader is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.log()}")
            for kid in _children(self.proc.pid):
                if _comm(kid) == "systemd":
                    self.leader = kid
            if self.leader is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no init process after {timeout:.0f}s:\n{self.log()}")
                time.sleep(0.1)
        # Until systemd listens on its bus, systemctl cannot even ask.
        while True:
            state = self.run("systemctl is-system-running --wait", timeout=max(5.0, deadline - time.monotonic()))
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"boot did not finish: {state.stdout}{state.stderr}\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def run(self, command: str, *, timeout: float = 180, input: str | None = None) -> subprocess.CompletedProcess:
        assert self.leader is not None
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "sh", "-c", command],
            input=input, capture_output=True, text=True, timeout=timeout,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                 "HOME": "/root", "TERM": "dumb", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"})

    def ok(self, command: str, **kwargs) -> str:
        done = self.run(command, **kwargs)
        assert done.returncode == 0, f"$ {command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def put(self, src: Path, dest: str) -> None:
        """Copy a host file into the guest (under /var/tmp: /tmp is a tmpfs inside)."""
        shutil.copyfile(src, self.root / dest.lstrip("/"))

    def write(self, dest: str, text: str) -> None:
        """Write a file in place (keeps its owner and mode), as an editor would."""
        self.ok(f"cat > '{dest}'", input=text)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn powers the guest off
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if getattr(self, "_log", None):
            self._log.close()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.root))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


def booted_rootfs_tarball(extra_tools: tuple[str, ...] = ()) -> Path:
    """The cached rootfs tarball (debootstrapped once); skips, or fails in CI, when it cannot boot here."""
    if os.geteuid() != 0:
        unavailable("needs root (systemd-nspawn boots a container)")
    missing = [t for t in ("systemd-nspawn", "nsenter", "debootstrap", *extra_tools) if not shutil.which(t)]
    if missing:
        unavailable(f"missing tools: {', '.join(missing)} (./scripts/setup.sh installs them)")
    from cloudbuilder.rootfs import ensure_rootfs_tarball

    return ensure_rootfs_tarball(ROOTFS_NAME, ROOTFS_PACKAGES)
