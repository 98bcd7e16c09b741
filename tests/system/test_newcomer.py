"""The flows of a new user after the first command: later tasks take what the last build made.

1. `invoke demo`, then with no flags `invoke package.all`, `invoke docker.image`,
   `invoke release --repo`, `invoke release --check`: everything is 4.0.0 and the
   packages hold the demo's binary.
2. `invoke build --app A --version 4.1.0 --skip-deploy`, then `invoke package.deb`
   packages 4.1.0; a changed package.release re-packages without re-assembling; a
   changed template re-assembles (in a scratch copy of the project).

Isolated like test_demo.py: own dist dir, compose project, image names, port; it
stops the stack and removes the images it built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from docker_support import removing_deps_tags

from cloudbuilder.resources import RESOURCE_DIRS
from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deb_binary_sha256(deb: Path, work: Path) -> str:
    out = work / f"x-{deb.stem}"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True, capture_output=True)
    return sha256(out / "usr/bin/orangescrum")


def rpm_binary_sha256(rpm: Path, work: Path) -> str:
    out = work / f"x-{rpm.stem}"
    out.mkdir()
    cpio = subprocess.run(["rpm2cpio", str(rpm)], check=True, capture_output=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet", "./usr/bin/orangescrum"], input=cpio, cwd=out, check=True,
                   capture_output=True)
    return sha256(out / "usr/bin/orangescrum")


@pytest.fixture
def isolated(tmp_path, docker_client):
    name = f"osnew{uuid.uuid4().hex[:8]}"
    env = {"OSCB_DIST_DIR": str(tmp_path / "dist"), "OSCB_DOCKER_HOST_PORT": str(free_port()),
           "OSCB_DOCKER_IMAGE_NAME": f"localhost/{name}", "OSCB_BUILDER_BASE_REPOSITORY": f"{name}-base",
           "COMPOSE_PROJECT_NAME": name}
    with removing_deps_tags(docker_client, tmp_path / "dist"):
        yield env
    tree = tmp_path / "dist" / "docker"
    if tree.is_dir():
        subprocess.run(["docker", "compose", "down", "-v", "-t", "10", "--remove-orphans"], cwd=tree,
                       env={**os.environ, **env, "ORANGESCRUM_ENV_FILE": str(tmp_path / "dist/demo/demo.env")},
                       capture_output=True, check=False)
    remove_images(docker_client, name)


def remove_images(client, name: str) -> None:
    for img in client.images.list():
        if any(t.startswith((f"localhost/{name}:", f"{name}-base:")) for t in img.tags):
            client.images.remove(img.id, force=True)


def test_demo_then_package_image_release_with_no_flags(run_invoke, isolated, tmp_path):
    def invoke(*args: str) -> subprocess.CompletedProcess:
        done = run_invoke(*args, env=isolated)
        assert done.returncode == 0, f"invoke {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        return done

    dist = tmp_path / "dist"
    invoke("demo")
    binary = sha256(dist / "build/osv4-prod")

    done = invoke("package.all")
    assert "using dist/native 4.0.0 from the last build (manifest)" in done.stderr
    assert "dist.native: skipped (up to date)" in done.stderr  # not re-assembled
    deb, rpm = dist / "packages/orangescrum_4.0.0-1_amd64.deb", dist / "packages/orangescrum-4.0.0-1.x86_64.rpm"
    assert sorted(p.name for p in (dist / "packages").iterdir() if not p.name.startswith(".")) == sorted(
        [deb.name, rpm.name])
    assert deb_binary_sha256(deb, tmp_path) == binary
    assert rpm_binary_sha256(rpm, tmp_path) == binary

    done = invoke("docker.image")
    assert f"{isolated['OSCB_DOCKER_IMAGE_NAME']}:4.0.0: up to date" in done.stderr  # the demo's image

    done = invoke("release", "--repo")
    assert "Release 4.0.0 is in" in done.stderr
    names = sorted(p.name for p in (dist / "release").iterdir())
    for name in ("orangescrum-docker-4.0.0.tar.gz", "orangescrum-native-4.0.0.tar.gz", deb.name, rpm.name,
                 "SHA256SUMS", "RELEASE_NOTES.md", "repo"):
        assert name in names
    assert not any("0.0.0" in n for n in names)

    done = invoke("release", "--check")
    assert "verifies" in done.stderr

    manifest = json.loads((dist / "manifest.json").read_text())
    versions = {(a["kind"], a.get("flavor") or a.get("format") or a.get("name")): a["version"]
                for a in manifest["artifacts"]}
    assert set(versions.values()) == {"4.0.0"}, versions
    assert {("binary", "osv4-prod"), ("tree", "docker"), ("tree", "native"), ("image", "runtime"),
            ("package", "deb"), ("package", "rpm"), ("release", "release")} <= versions.keys()
    recorded = {a["kind"]: a for a in manifest["artifacts"]}
    assert recorded["binary"]["sha256"] == binary
    assert "skip_deploy" not in json.dumps(manifest)  # run options are never recorded


# --------------------------------------------------------------------------
# 2. build --app A --version 4.1.0, then package.deb; settings and templates change
# --------------------------------------------------------------------------

# The package, every resource directory it renders from (the wheel's list), and the tasks.
COPIED = ("cloudbuilder", *RESOURCE_DIRS, "tasks.py")


@pytest.fixture
def scratch(tmp_path, root, docker_client):
    """A scratch copy of the project (its templates can be edited) with its own dist/ and base image name."""
    project = tmp_path / "project"
    project.mkdir()
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__", "vendor", "_resources"))
        else:
            shutil.copy2(src, project / name)
    name = f"osnew{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "OSCB_BUILDER_IMAGE": DEFAULT_STANDIN_IMAGE, "OSCB_BUILDER_BASE_REPOSITORY": f"{name}-base",
           "OSCB_DOCKER_IMAGE_NAME": f"localhost/{name}", "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("OSCB_DIST_DIR", None)
    # the copy's own package, not the checkout's (an editable install would win over PYTHONPATH otherwise)
    env["PYTHONPATH"] = str(project)
    with removing_deps_tags(docker_client, project / "dist"):
        yield project, env
    remove_images(docker_client, name)


def invoke_in(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(project), *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"invoke {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def test_build_then_package_follows_the_build_and_rebuilds_what_changed(scratch, example_app, tmp_path):
    project, env = scratch
    app = tmp_path / "A"
    shutil.copytree(example_app, app, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    dist = project / "dist"

    done = invoke_in(project, env, "build", "--app", str(app), "--version", "4.1.0", "--skip-deploy")
    assert str(project / "cloudbuilder") in subprocess.run(
        [sys.executable, "-c", "import cloudbuilder, sys; print(cloudbuilder.__file__)"], cwd=project, env=env,
        capture_output=True, text=True).stdout, "the scratch copy's package runs"
    binary = sha256(dist / "build/osv4-prod")

    done = invoke_in(project, env, "package.deb")
    assert "using dist/native 4.1.0 from the last build (manifest)" in done.stderr
    deb = dist / "packages/orangescrum_4.1.0-1_amd64.deb"
    assert deb.is_file() and deb_binary_sha256(deb, tmp_path) == binary
    native_stamp = (dist / ".state/native.json").read_text()

    # package.release changed: re-packaged, not re-assembled
    done = invoke_in(project, {**env, "OSCB_PACKAGE_RELEASE": "2"}, "package.deb")
    assert "dist.native: skipped (up to date)" in done.stderr
    assert "Packaging orangescrum_4.1.0-2_amd64.deb" in done.stderr
    assert (dist / "packages/orangescrum_4.1.0-2_amd64.deb").is_file() and not deb.exists()
    assert (dist / ".state/native.json").read_text() == native_stamp

    # nothing changed: nothing runs
    done = invoke_in(project, {**env, "OSCB_PACKAGE_RELEASE": "2"}, "package.deb")
    assert "is up to date" in done.stderr and "Packaging" not in done.stderr

    # a template changed: re-assembled, and re-packaged
    unit = project / "native/systemd/orangescrum.service.j2"
    unit.write_text(unit.read_text() + "# a local change\n")
    done = invoke_in(project, {**env, "OSCB_PACKAGE_RELEASE": "2"}, "package.deb")
    assert "Assembling" in done.stderr and f"{dist / 'native'} written" in done.stderr
    assert "Packaging orangescrum_4.1.0-2_amd64.deb" in done.stderr
    assert (dist / ".state/native.json").read_text() != native_stamp
    assert "# a local change" in (dist / "native/systemd/orangescrum.service").read_text()
    manifest = json.loads((dist / "manifest.json").read_text())
    assert {a["version"] for a in manifest["artifacts"]} == {"4.1.0"}
