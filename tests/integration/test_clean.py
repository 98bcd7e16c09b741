"""`invoke clean` removes dist/ and that dist dir's deps tag, and nothing of anyone else's (real engine)."""

from __future__ import annotations

import io
import tarfile
import uuid

import pytest

from cloudbuilder.binary import deps_tag


@pytest.fixture
def tiny_image(docker_client):
    """A one-file image of this test's own (what the deps tags point at here)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in (("Dockerfile", b"FROM scratch\nCOPY f /f\n"), ("f", b"x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    data.seek(0)
    ref = f"oscb-test-clean:{uuid.uuid4().hex[:12]}"
    image, _ = docker_client.images.build(fileobj=data, custom_context=True, tag=ref, rm=True)
    yield image
    docker_client.images.remove(image.id, force=True)


def test_clean_removes_dist_and_only_its_own_deps_tag(run_invoke, docker_client, tiny_image, tmp_path):
    mine, other = tmp_path / "mine" / "dist", tmp_path / "other" / "dist"
    (mine / "build").mkdir(parents=True)
    (mine / "build" / "osv4-prod").write_text("binary\n")
    for dist in (mine, other):
        repository, tag = deps_tag(dist).split(":")
        tiny_image.tag(repository, tag)

    done = run_invoke("clean", env={"OSCB_DIST_DIR": str(mine)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not mine.exists()
    assert f"removed the image tag {deps_tag(mine)}" in done.stderr
    tags = docker_client.images.get(tiny_image.id).tags
    assert deps_tag(mine) not in tags and deps_tag(other) in tags  # another checkout's cache stays

    again = run_invoke("clean", env={"OSCB_DIST_DIR": str(mine)})
    assert again.returncode == 0 and "nothing to clean" in again.stderr and "removed the image tag" not in again.stderr
    docker_client.images.remove(deps_tag(other))


def test_clean_without_an_engine_still_removes_dist(run_invoke, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    done = run_invoke("clean", env={"OSCB_DIST_DIR": str(dist), "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not dist.exists() and "no Docker engine, so no image tag was removed" in done.stderr


def test_clean_help_says_what_it_removes(run_invoke):
    done = run_invoke("clean", "--help", check=True)
    assert "orangescrum-cloud-deps:<hash>" in done.stdout and "dist/" in done.stdout
