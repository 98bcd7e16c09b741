"""Assembly of dist/docker and dist/native: rendering, determinism, no-op, atomicity."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cloudbuilder.assemble import (
    BINARY_PATH,
    FLAVORS,
    assemble_tree,
    plan_tree,
    render_template,
)
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.errors import BuildError

ROOT = Path(__file__).resolve().parents[2]


def make_cfg(tmp_path: Path, dist: str = "dist", **values):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / dist), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


@pytest.fixture
def binary(tmp_path) -> Path:
    b = tmp_path / "frankenphp"
    b.write_bytes(b"#!/bin/sh\necho fake frankenphp\n" + os.urandom(4096))
    b.chmod(0o755)
    return b


@pytest.fixture
def sources(tmp_path) -> Path:
    """A small source tree shaped like the real one."""
    src = tmp_path / "src"
    files = {
        "common/.env.example": "DB_HOST=CHANGE_ME\n",
        "common/README.md": "common readme\n",
        "common/helpers/tool.sh.j2": "#!/bin/sh\necho {{ flavor }} {{ version }}\n",
        "common/docs/GUIDE.md.j2": "Port {{ docker.host_port }}\n",
        "docker/README.md": "docker readme wins\n",
        "docker/compose.yaml.j2": "image: {{ docker.image_name }}:{{ version }}\n",
        "native/systemd/app.service.j2": "[Service]\nUser={{ service.user }}\n{% include 'systemd/_part.j2' %}",
        "native/systemd/_part.j2": "NoNewPrivileges=yes\n",
    }
    for rel, text in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (src / "common/helpers/tool.sh.j2").chmod(0o755)
    return src


def tree_snapshot(tree: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for p in sorted(tree.rglob("*")):
        st = p.lstat()
        out[p.relative_to(tree).as_posix()] = (p.read_bytes() if p.is_file() else b"", st.st_mode, int(st.st_mtime))
    return out


def test_render_is_strict():
    assert render_template("{{ a }}-{{ b.c }}", {"a": 1, "b": {"c": 2}}) == "1-2"
    with pytest.raises(BuildError, match=r"t.j2: 'nope' is undefined"):
        render_template("{{ nope }}", {}, name="t.j2")
    with pytest.raises(BuildError, match=r"t.j2:1: template syntax error"):
        render_template("{% if %}", {}, name="t.j2")


def test_plan_merges_common_and_flavor(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    plan = plan_tree(cfg, "docker", binary, sources=sources)
    dests = {f.dest: f for f in plan.files}
    assert set(dests) == {".env.example", "README.md", "helpers/tool.sh", "docs/GUIDE.md", "compose.yaml"}
    assert dests["README.md"].source == sources / "docker/README.md"  # the flavor overrides common
    assert dests["helpers/tool.sh"].mode == 0o755 and dests["README.md"].mode == 0o644
    native = plan_tree(cfg, "native", binary, sources=sources)
    assert "systemd/app.service" in {f.dest for f in native.files}
    assert not any("_part" in f.dest for f in native.files)  # partials are not outputs


def test_assembled_tree_contents(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    result = assemble_tree(cfg, "native", binary, sources=sources)
    tree = result.path
    assert not result.up_to_date
    assert (tree / "helpers/tool.sh").read_text() == "#!/bin/sh\necho native 4.1.0\n"
    assert (tree / "systemd/app.service").read_text() == "[Service]\nUser=orangescrum\nNoNewPrivileges=yes\n"
    assert (tree / BINARY_PATH["native"]).read_bytes() == binary.read_bytes()
    assert (tree / BINARY_PATH["native"]).stat().st_mode & 0o777 == 0o755
    assert (tree / "README.md").stat().st_mode & 0o777 == 0o644
    assert int((tree / "README.md").stat().st_mtime) == 1700000000


def test_two_runs_are_byte_identical_whatever_the_umask(tmp_path, sources, binary):
    old = os.umask(0o022)
    try:
        a = assemble_tree(make_cfg(tmp_path, "dist-a"), "docker", binary, sources=sources).path
        os.umask(0o077)
        b = assemble_tree(make_cfg(tmp_path, "dist-b"), "docker", binary, sources=sources).path
    finally:
        os.umask(old)
    assert tree_snapshot(a) == tree_snapshot(b)


def test_second_run_is_a_no_op_until_an_input_changes(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    assert not assemble_tree(cfg, "docker", binary, sources=sources).up_to_date
    assert assemble_tree(cfg, "docker", binary, sources=sources).up_to_date
    # a source edit
    (sources / "common/.env.example").write_text("changed\n")
    assert not assemble_tree(cfg, "docker", binary, sources=sources).up_to_date
    assert assemble_tree(cfg, "docker", binary, sources=sources).up_to_date
    # a config change
    cfg2 = make_cfg(tmp_path, **{"docker.host_port": "9090"})
    result = assemble_tree(cfg2, "docker", binary, sources=sources)
    assert not result.up_to_date
    assert (result.path / "docs/GUIDE.md").read_text() == "Port 9090\n"
    # a new binary with the same size
    data = bytearray(binary.read_bytes())
    data[-1] ^= 0xFF
    binary.write_bytes(bytes(data))
    assert not assemble_tree(cfg2, "docker", binary, sources=sources).up_to_date
    # a hand-edited or deleted output
    (result.path / "compose.yaml").write_text("edited\n")
    assert not assemble_tree(cfg2, "docker", binary, sources=sources).up_to_date
    assert (result.path / "compose.yaml").read_text().startswith("image: ")
    (result.path / "README.md").unlink()
    assert not assemble_tree(cfg2, "docker", binary, sources=sources).up_to_date
    assert (result.path / "README.md").exists()


def test_operator_env_file_survives_a_rebuild(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    tree = assemble_tree(cfg, "docker", binary, sources=sources).path
    (tree / ".env").write_text("DB_PASSWORD=kept\n")
    (tree / ".env").chmod(0o600)
    (tree / "docker-compose.override.yaml").write_text("services: {}\n")
    # an operator file does not make the tree stale...
    assert assemble_tree(cfg, "docker", binary, sources=sources).up_to_date
    (tree / "stray.txt").write_text("not ours\n")
    (sources / "common/.env.example").write_text("v2\n")
    result = assemble_tree(cfg, "docker", binary, sources=sources)
    # ...and is carried over when the tree is rebuilt; stray files are not
    assert set(result.kept) == {".env", "docker-compose.override.yaml"}
    assert (tree / ".env").read_text() == "DB_PASSWORD=kept\n"
    assert (tree / ".env").stat().st_mode & 0o777 == 0o600
    assert not (tree / "stray.txt").exists()


def test_symlinked_operator_files_survive_a_rebuild_as_symlinks(tmp_path, sources, binary, caplog):
    """Finding 12: a symlinked .env used to be deleted by the rebuild, without a word."""
    cfg = make_cfg(tmp_path)
    tree = assemble_tree(cfg, "docker", binary, sources=sources).path
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "orangescrum.env").write_text("DB_PASSWORD=kept\n")
    (tree / ".env").symlink_to("../../secrets/orangescrum.env")  # relative to dist/docker
    (tree / "docker-compose.override.yaml").symlink_to(tmp_path / "nowhere.yaml")  # dangling, absolute
    for version in ("v2\n", "v3\n"):  # two real rebuilds
        (sources / "common/.env.example").write_text(version)
        with caplog.at_level(logging.INFO, logger="cloudbuilder"):
            result = assemble_tree(cfg, "docker", binary, sources=sources)
        assert f"kept your {tree / '.env'} (a symlink to ../../secrets/orangescrum.env)" in caplog.text
        assert "nowhere.yaml, which does not exist)" in caplog.text
        assert not result.up_to_date
        assert set(result.kept) == {".env", "docker-compose.override.yaml"}
        assert (tree / ".env.example").read_text() == version
        assert os.readlink(tree / ".env") == "../../secrets/orangescrum.env"
        assert (tree / ".env").read_text() == "DB_PASSWORD=kept\n"
        assert os.readlink(tree / "docker-compose.override.yaml") == str(tmp_path / "nowhere.yaml")
    assert (secrets / "orangescrum.env").read_text() == "DB_PASSWORD=kept\n"  # the target is untouched


def test_an_operator_path_that_cannot_be_kept_is_refused_before_anything_changes(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    tree = assemble_tree(cfg, "docker", binary, sources=sources).path
    (tree / ".env").mkdir()
    (tree / ".env/inside").write_text("operator data\n")
    before = tree_snapshot(tree)
    (sources / "common/.env.example").write_text("v2\n")
    with pytest.raises(BuildError, match=r"\.env is neither a file nor a symlink.*nothing was changed: move it out"):
        assemble_tree(cfg, "docker", binary, sources=sources)
    assert tree_snapshot(tree) == before
    assert [p.name for p in cfg.dist_dir.iterdir() if p.name.startswith(".tmp")] == []


def test_a_template_error_leaves_the_previous_tree(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    tree = assemble_tree(cfg, "docker", binary, sources=sources).path
    before = tree_snapshot(tree)
    (sources / "docker/compose.yaml.j2").write_text("{{ undefined_thing }}\n")
    with pytest.raises(BuildError, match="undefined_thing"):
        assemble_tree(cfg, "docker", binary, sources=sources)
    assert tree_snapshot(tree) == before
    assert [p.name for p in cfg.dist_dir.iterdir() if p.name.startswith(".tmp")] == []


KILLER = textwrap.dedent(
    """
    import shutil, sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    import cloudbuilder.assemble as a
    from cloudbuilder.config import AppFacts, Layer, resolve

    real_copy = shutil.copyfile
    def slow_copy(src, dst, *args, **kw):
        out = real_copy(src, dst, *args, **kw)
        Path({ready!r}).touch()
        time.sleep(60)  # killed here, half-way through writing the new tree
        return out
    a.shutil.copyfile = slow_copy
    layer = Layer("flag", {{"app": {tmp!r}, "dist_dir": {dist!r}, "version": "9.9.9",
                            "source_date_epoch": "1700000000"}})
    cfg = resolve([layer], cwd=Path({tmp!r}), environ={{}}, probe=lambda _a: AppFacts(None, "default", None))
    a.assemble_tree(cfg, "docker", Path({binary!r}), sources=Path({sources!r}))
    """
)


def test_kill_during_assembly_leaves_previous_tree_intact(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    tree = assemble_tree(cfg, "docker", binary, sources=sources).path
    before = tree_snapshot(tree)
    (sources / "common/.env.example").write_text("a new version\n")
    ready = tmp_path / "ready"
    script = KILLER.format(root=str(ROOT), ready=str(ready), tmp=str(tmp_path), dist=str(cfg.dist_dir),
                           binary=str(binary), sources=str(sources))
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert child.poll() is None, "assembly exited before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert tree_snapshot(tree) == before, "the previous tree must be intact"
    # the next run cleans the dead run's temporary directory and builds the new tree
    result = assemble_tree(cfg, "docker", binary, sources=sources)
    assert not result.up_to_date
    assert (tree / ".env.example").read_text() == "a new version\n"
    assert [p.name for p in cfg.dist_dir.iterdir() if not p.name.startswith(".state")] == ["docker"]


def test_real_sources_render_for_both_flavors(tmp_path, binary):
    """Every real template renders with the default config (StrictUndefined)."""
    cfg = make_cfg(tmp_path)
    for flavor in FLAVORS:
        tree = assemble_tree(cfg, flavor, binary).path
        assert (tree / BINARY_PATH[flavor]).is_file()
        leftovers = [p for p in tree.rglob("*") if p.name.endswith(".j2") or p.name.startswith("_")]
        assert leftovers == []
        for planned in plan_tree(cfg, flavor, binary).files:
            if planned.render:  # no template syntax survives rendering
                text = (tree / planned.dest).read_text()
                assert "{{ " not in text and "{%" not in text, planned.dest
    stamp = json.loads((cfg.dist_dir / ".state/docker.json").read_text())
    assert len(stamp["inputs"]) == 64


# --------------------------------------------------------------------------
# One copy of the binary in dist/: hard links, never a changed shared inode


def built_binary(cfg, data: bytes = b"#!/bin/sh\necho built\n") -> Path:
    """A binary where the Docker build leaves it: mode 0755, mtime SOURCE_DATE_EPOCH, written by rename."""
    out = cfg.dist_dir / "build" / "osv4-prod"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".osv4-prod.tmp")
    tmp.write_bytes(data + os.urandom(4096))
    tmp.chmod(0o755)
    os.utime(tmp, (cfg.source_date_epoch, cfg.source_date_epoch))
    os.replace(tmp, out)
    return out


def test_dist_holds_the_binary_once_and_both_trees_stay_intact(tmp_path, sources, caplog, monkeypatch):
    from cloudbuilder.assemble import intact_digest

    cfg = make_cfg(tmp_path)
    built = built_binary(cfg)
    caplog.set_level(logging.INFO, logger="cloudbuilder")
    for flavor in FLAVORS:
        assert not assemble_tree(cfg, flavor, built, sources=sources).up_to_date
    placed = [cfg.dist_dir / f / BINARY_PATH[f] for f in FLAVORS]
    assert {p.stat().st_ino for p in placed} == {built.stat().st_ino}
    assert built.stat().st_nlink == 3
    assert "a hard link to" in caplog.text
    docker_digest, native_digest = intact_digest(cfg, "docker"), intact_digest(cfg, "native")
    assert docker_digest and native_digest
    # the shared inode keeps the trees' deterministic metadata
    assert all((p.stat().st_mode & 0o7777, p.stat().st_mtime) == (0o755, 1700000000) for p in placed)
    # nothing changed: both are no-ops, and the hash cache needs no re-read after the links
    with monkeypatch.context() as m:
        m.setattr("cloudbuilder.fsutil.sha256_file", lambda p: pytest.fail(f"{p} was read again"))
        for flavor in FLAVORS:
            assert assemble_tree(cfg, flavor, built, sources=sources).up_to_date

    # re-assembling one tree (a template change) leaves the other one intact
    (sources / "docker/README.md").write_text("changed\n")
    assert not assemble_tree(cfg, "docker", built, sources=sources).up_to_date
    assert intact_digest(cfg, "native") == native_digest
    assert assemble_tree(cfg, "native", built, sources=sources).up_to_date
    assert built.stat().st_nlink == 3

    # a new build replaces dist/build/osv4-prod (a new inode): the trees keep the old binary, intact
    old = placed[0].read_bytes()
    built_binary(cfg, b"#!/bin/sh\necho rebuilt\n")
    assert placed[0].read_bytes() == old == placed[1].read_bytes()
    assert intact_digest(cfg, "native") == native_digest and intact_digest(cfg, "docker") is not None
    for flavor in FLAVORS:
        assert not assemble_tree(cfg, flavor, built, sources=sources).up_to_date
    assert {p.stat().st_ino for p in placed} == {built.stat().st_ino} and built.stat().st_nlink == 3


def test_a_binary_outside_dist_is_copied_once_and_never_linked(tmp_path, sources, binary):
    cfg = make_cfg(tmp_path)
    for flavor in FLAVORS:
        assemble_tree(cfg, flavor, binary, sources=sources)
    docker, native = (cfg.dist_dir / f / BINARY_PATH[f] for f in FLAVORS)
    assert binary.stat().st_nlink == 1  # --binary's owner may rewrite it in place
    assert docker.stat().st_ino == native.stat().st_ino and docker.stat().st_nlink == 2
    assert docker.read_bytes() == binary.read_bytes()


def test_the_binary_is_copied_when_its_metadata_is_not_the_trees(tmp_path, sources, caplog):
    from cloudbuilder.assemble import intact_digest

    cfg = make_cfg(tmp_path)
    built = built_binary(cfg)
    os.utime(built, (1600000000, 1600000000))  # e.g. built with another SOURCE_DATE_EPOCH
    caplog.set_level(logging.INFO, logger="cloudbuilder")
    assemble_tree(cfg, "docker", built, sources=sources)
    assert built.stat().st_nlink == 1 and built.stat().st_mtime == 1600000000
    assert "copying the binary" in caplog.text
    assert intact_digest(cfg, "docker")


def test_hard_link_failure_falls_back_to_a_copy(tmp_path, sources, caplog, monkeypatch):
    import errno

    cfg = make_cfg(tmp_path)
    built = built_binary(cfg)

    def no_link(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr("cloudbuilder.assemble.os.link", no_link)
    caplog.set_level(logging.INFO, logger="cloudbuilder")
    result = assemble_tree(cfg, "native", built, sources=sources)
    placed = result.path / BINARY_PATH["native"]
    assert placed.read_bytes() == built.read_bytes() and placed.stat().st_ino != built.stat().st_ino
    assert "cannot hard-link" in caplog.text and "Invalid cross-device link" in caplog.text


@pytest.mark.parametrize(
    ("flavor", "values", "upstream"),
    [
        ("docker", {}, "127.0.0.1:8080"),
        ("docker", {"docker.bind_address": "::1"}, "[::1]:8080"),
        ("docker", {"docker.bind_address": "0.0.0.0"}, "127.0.0.1:8080"),
        ("docker", {"docker.bind_address": "::", "docker.host_port": "9000"}, "[::1]:9000"),
        ("native", {}, "127.0.0.1:8080"),
        ("native", {"service.listen": "[::1]:8081"}, "[::1]:8081"),
        ("native", {"service.listen": "[::]:8081"}, "[::1]:8081"),
        ("native", {"service.listen": ":8082"}, "127.0.0.1:8082"),
        ("native", {"service.listen": "0.0.0.0:8083"}, "127.0.0.1:8083"),
    ],
)
def test_nginx_upstream_is_an_address_nginx_accepts(tmp_path, binary, flavor, values, upstream):
    """nginx wants IPv6 upstreams in brackets, and a wildcard bind is reached on loopback."""
    cfg = make_cfg(tmp_path, **values)
    tree = assemble_tree(cfg, flavor, binary).path
    conf = (tree / "config" / "nginx-reverse-proxy.conf").read_text()
    servers = [line.split()[1] for line in conf.splitlines() if line.strip().startswith("server ") and "{" not in line]
    assert servers == [upstream + ";"]
