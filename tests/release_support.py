"""Helpers for the release tests: throwaway GPG keys, tiny packages, an assembled dist/.

Not a test module: imported by tests/*/test_release*.py, test_wheel*.py and
tests/system/test_apt_repo*.py (tests/ is on sys.path because of conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

from cloudbuilder.config import BuildConfig, Layer, resolve

EPOCH = 1_700_000_000


def make_gpg_key(home: Path, uid: str = "OrangeScrum Test Release <release@example.invalid>",
                 passphrase: str = "") -> str:
    """A throwaway signing key (ed25519, no expiry) in ``home``; returns its fingerprint."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase,
                    "--quick-gen-key", uid, "ed25519", "sign", "never"],
                   env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys", uid],
                         env=env, check=True, capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def stop_gpg_agent(home: Path) -> None:
    """gpg starts an agent per home; end it so no process outlives the test."""
    if shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


def build_tiny_packages(out: Path, version: str, *, name: str = "orangescrum", epoch: int = EPOCH,
                        release: str = "1") -> tuple[Path, Path]:
    """A minimal .deb and .rpm of ``name`` ``version`` made with nfpm (one file, no scripts)."""
    out.mkdir(parents=True, exist_ok=True)
    work = out / f".nfpm-{name}-{version}"
    work.mkdir(exist_ok=True)
    (work / "VERSION").write_text(f"{name} {version}\n")
    (work / "nfpm.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        arch: amd64
        platform: linux
        version: {version}
        release: {release}
        maintainer: OrangeScrum Test <release@example.invalid>
        description: test package for the release tests
        license: MIT
        contents:
          - src: {work / 'VERSION'}
            dst: /usr/share/{name}/VERSION
        """))
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    for packager in ("deb", "rpm"):
        subprocess.run(["nfpm", "package", "-p", packager, "-f", str(work / "nfpm.yaml"), "-t", str(out)],
                       env=env, check=True, capture_output=True)
    shutil.rmtree(work)
    deb = out / f"{name}_{version}-{release}_amd64.deb"
    rpm = out / f"{name}-{version}-{release}.x86_64.rpm"
    assert deb.is_file() and rpm.is_file(), sorted(p.name for p in out.iterdir())
    return deb, rpm


def fake_binary(path: Path) -> Path:
    path.write_text("#!/bin/sh\necho 'FrankenPHP v0 (test double)'\n")
    path.chmod(0o755)
    return path


def release_config(project: Path, app: Path, version: str, *, epoch: int = EPOCH, **values) -> BuildConfig:
    """The config of a project in ``project`` (dist/ inside it), as a user's invoke.yaml would give."""
    layer = Layer("test", {"app": str(app), "version": version, "dist_dir": str(project / "dist"),
                           "source_date_epoch": epoch, **values})
    return resolve([layer], cwd=project, environ={})


def prepare_project(project: Path, example_app: Path, version: str, *, epoch: int = EPOCH,
                    changelog: str | None = None, **values) -> BuildConfig:
    """An app, assembled dist/docker and dist/native, and tiny packages in dist/packages."""
    from cloudbuilder.pipeline import assemble_flavor

    project.mkdir(parents=True, exist_ok=True)
    app = project / "app"
    if not app.exists():
        shutil.copytree(example_app, app)
    if changelog is not None:
        (app / "CHANGELOG.md").write_text(changelog)
    binary = fake_binary(project / "frankenphp")
    cfg = release_config(project, app, version, epoch=epoch, binary=str(binary), **values)
    for flavor in ("docker", "native"):
        assemble_flavor(cfg, flavor)
    build_tiny_packages(cfg.dist_dir / "packages", version, epoch=epoch)
    return cfg
