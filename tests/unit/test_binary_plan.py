"""The binary stage's decisions, without Docker: which stages run for which changes."""

from __future__ import annotations

import io
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

from cloudbuilder.archive import archive_app, is_excluded
from cloudbuilder.binary import (
    DEPS_STEP,
    LABEL_BASE_HASH,
    LABEL_EMBED_KEY,
    LABEL_ROLE,
    base_hash,
    build_binary,
    deps_step,
    deps_tag,
    embed_context,
    embed_key,
    plan_base,
    plan_embed,
    token_server,
)
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.engine import BuildLog, ImageInfo
from cloudbuilder.errors import ConfigError

DF = b"FROM x\n"


def cfg(**values):
    layer = Layer("flag", {"app": "/app", **values})
    return resolve([layer], cwd=Path("/"), environ={}, probe=lambda _a: AppFacts(None, "default", None))


def base(hash_: str, created: str = "2026-01-01", id_: str = "sha256:b") -> ImageInfo:
    return ImageInfo(id=id_, tags=("orangescrum-cloud-base:x",), labels={LABEL_BASE_HASH: hash_}, created=created)


def test_base_hash_tracks_what_changes_the_base():
    h = base_hash(cfg(), DF, "sha256:builder")
    assert h == base_hash(cfg(), DF, "sha256:builder")
    assert h != base_hash(cfg(**{"builder.php_extensions": "pdo,pdo_pgsql"}), DF, "sha256:builder")
    assert h != base_hash(cfg(**{"builder.php_version": "8.2"}), DF, "sha256:builder")
    assert h != base_hash(cfg(**{"builder.php_extension_libs": "libavif"}), DF, "sha256:builder")
    assert h != base_hash(cfg(**{"builder.image": "mirror/frankenphp:x"}), DF, "sha256:builder")
    assert h != base_hash(cfg(), DF, "sha256:rebuilt-builder")
    assert h != base_hash(cfg(), b"FROM y\n", "sha256:builder")
    # the app and the version do not touch the base
    assert h == base_hash(cfg(app="/other", version="9.9"), DF, "sha256:builder")


def test_embed_key_tracks_app_and_base():
    c = cfg()
    k = embed_key("sha256:base", "app1", DF, c)
    assert k == embed_key("sha256:base", "app1", DF, c)
    assert k != embed_key("sha256:base", "app2", DF, c)
    assert k != embed_key("sha256:base2", "app1", DF, c)
    assert k != embed_key("sha256:base", "app1", b"FROM z\n", c)


def test_plan_base():
    assert plan_base("h", [], skip_base=False, rebuild_base=False).action == "build"
    assert plan_base("h", [], skip_base=False, rebuild_base=False).reason == "none exists yet"
    same = plan_base("h", [base("h")], skip_base=False, rebuild_base=False)
    assert same.action == "reuse" and same.image == base("h")
    changed = plan_base("h2", [base("h")], skip_base=False, rebuild_base=False)
    assert (changed.action, changed.reason) == ("build", "its inputs changed")
    assert plan_base("h", [base("h")], skip_base=False, rebuild_base=True).action == "build"
    newest = base("old2", created="2026-02-01", id_="sha256:new")
    skip = plan_base("h", [base("old1"), newest], skip_base=True, rebuild_base=False)
    assert skip.action == "reuse" and skip.image == newest
    with pytest.raises(ConfigError, match="--skip-base.*no base image yet; run once without --skip-base"):
        plan_base("h", [], skip_base=True, rebuild_base=False)


def test_plan_embed():
    assert plan_embed("k", None, None) == (True, "no binary yet")
    assert plan_embed("k", {"embed_key": "k", "sha256": "d"}, "d") == (False, "up to date")
    assert plan_embed("k2", {"embed_key": "k", "sha256": "d"}, "d") == (True, "the app or the base changed")
    assert plan_embed("k", {"embed_key": "k", "sha256": "d"}, None) == (True, "the binary is missing")
    assert plan_embed("k", {"embed_key": "k", "sha256": "d"}, "e") == (True, "the binary was modified")


@pytest.mark.parametrize("path,excluded", [
    (".git/config", True), ("src/.git", True), ("tests/TestCase/A.php", True), ("node_modules/x/y.js", True),
    ("webroot/node_modules/a", True), (".env", True), (".env.local", True), ("config/.env.prod", True),
    ("tmp/cache", True), ("logs/error.log", True),
    ("src/tests.php", False), ("vendor/a/tests/T.php", False), ("src/tmp/keep.php", False),
    ("webroot/index.php", False), ("config/app.php", False), ("environment.php", False),
])
def test_exclude_list(path, excluded):
    assert is_excluded(path) is excluded


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def make_app(root: Path) -> Path:
    for rel, text in {"composer.json": "{}", "webroot/index.php": "<?php echo 1;", ".env": "SECRET=canary",
                      "tests/T.php": "<?php", "node_modules/m.js": "x", "logs/a.log": "x", "bin/cake.php": "<?php"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "bin/cake.php").chmod(0o755)
    return root


def test_directory_archive_is_filtered_and_deterministic(tmp_path):
    app = make_app(tmp_path / "app")
    a = archive_app(app, epoch=1700000000)
    assert a.method == "directory"
    assert _names(a.data) == ["app/bin", "app/bin/cake.php", "app/composer.json", "app/webroot", "app/webroot/index.php"]
    (app / "composer.json").touch()  # a new mtime does not change the archive
    assert archive_app(app, epoch=1700000000).data == a.data
    (app / "composer.json").write_text('{"x": 1}')
    assert archive_app(app, epoch=1700000000).sha256 != a.sha256
    with tarfile.open(fileobj=io.BytesIO(a.data)) as tar:
        m = tar.getmember("app/bin/cake.php")
        assert (m.mode, m.uid, m.mtime) == (0o755, 0, 1700000000)


def test_git_archive_ships_what_is_committed_but_never_env(tmp_path):
    app = make_app(tmp_path / "repo")
    git = ["git", "-C", str(app), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A", "-f"], check=True)  # even a committed .env must not ship
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (app / "uncommitted.php").write_text("<?php")
    a = archive_app(app, epoch=0)
    assert a.method == "git archive"
    names = _names(a.data)
    assert "app/webroot/index.php" in names and "app/bin/cake.php" in names
    assert not any(".env" in n or "tests" in n or "node_modules" in n or "logs" in n for n in names)
    assert "app/uncommitted.php" not in names


def test_token_server_serves_only_its_secret_path():
    with token_server(None) as url:
        assert url == ""
    with token_server("ghp_canary") as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.read() == b"ghp_canary"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url.rsplit("/", 1)[0] + "/guess", timeout=5)


# --------------------------------------------------------------------------
# The embed build: dependencies in their own cached layer, few steps

ROOT = Path(__file__).resolve().parents[2]
EMBED_DF = (ROOT / "builder/app-embed.Dockerfile").read_bytes()


def instructions(dockerfile: bytes) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = dockerfile.decode().replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def context_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_embed_dockerfile_installs_the_vendor_tree_before_it_copies_the_app():
    steps = instructions(EMBED_DF)
    copy_deps = steps.index("COPY deps/ /app/")
    install = next(i for i, s in enumerate(steps) if s.startswith(DEPS_STEP))
    copy_app = steps.index("COPY app/ /app/")
    dump = next(i for i, s in enumerate(steps) if s.startswith("RUN composer dump-autoload"))
    assert copy_deps < install < copy_app < dump
    assert sum(s.startswith(DEPS_STEP) for s in steps) == 1  # deps_step finds exactly this one
    # together the same as `composer install --no-dev -a --no-scripts --ignore-platform-reqs`
    for flag in ("--no-dev", "--no-autoloader", "--no-scripts", "--ignore-platform-reqs"):
        assert flag in steps[install]
    for flag in ("--no-dev", "--classmap-authoritative", "--no-scripts", "--ignore-platform-reqs"):
        assert flag in steps[dump]
    # few steps: the classic builder starts a container for each one after a cache miss
    assert not any(s.split()[0] in ("WORKDIR", "SHELL", "ENV") for s in steps)
    final = steps[[i for i, s in enumerate(steps) if s.startswith("FROM ")][-1]:]
    assert [s.split()[0] for s in final] == ["FROM", "COPY", "ARG", "RUN", "LABEL"]
    assert f"{LABEL_ROLE}=embed" in final[-1] and f"{LABEL_EMBED_KEY}=${{EMBED_KEY}}" in final[-1]


def test_embed_context_puts_what_composer_install_reads_apart(tmp_path):
    app = tmp_path / "app"
    files = {
        "composer.json": '{"require": {"acme/lib": "*"}, "repositories": [{"type": "path", "url": "./packages/*"},'
                         ' {"type": "vcs", "url": "https://example.test/x.git"}]}',
        "composer.lock": "{}",
        "packages/lib/composer.json": '{"name": "acme/lib"}',
        "packages/lib/src/Lib.php": "<?php",
        "src/App.php": "<?php",
        "vendor/old/leftover.php": "<?php // a developer's vendor dir",
        "vendor/autoload.php": "<?php",
    }
    for rel, text in files.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    archive = archive_app(app, epoch=1700000000)
    ctx = embed_context(EMBED_DF, archive.data)
    members = context_members(ctx.data)
    assert ctx.deps == ("composer.json", "composer.lock", "packages/lib/composer.json", "packages/lib/src/Lib.php")
    assert {n for n in members if n.startswith("deps/") and members[n].isfile()} == {f"deps/{d}" for d in ctx.deps}
    assert {"app/src/App.php", "app/composer.json", "app/packages/lib/src/Lib.php"} <= set(members)
    assert not any(n.startswith("app/vendor") for n in members) and ctx.vendor_files == 2
    assert members["app-embed.Dockerfile"].isfile() and members["deps"].isdir()
    # only what composer reads changes deps/: an app-only change leaves it byte for byte
    (app / "src/App.php").write_text("<?php // changed")
    changed = embed_context(EMBED_DF, archive_app(app, epoch=1700000000).data)
    deps_of = lambda c: {n: context_members(c.data)[n].size for n in context_members(c.data) if n.startswith("deps")}  # noqa: E731
    assert deps_of(changed) == deps_of(ctx)
    with tarfile.open(fileobj=io.BytesIO(changed.data)) as a, tarfile.open(fileobj=io.BytesIO(ctx.data)) as b:
        for name in ctx.deps:
            assert a.extractfile(f"deps/{name}").read() == b.extractfile(f"deps/{name}").read()


def test_embed_context_of_an_app_without_composer_json(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app/index.php").write_text("<?php")
    ctx = embed_context(EMBED_DF, archive_app(tmp_path / "app", epoch=0).data)
    assert ctx.deps == () and context_members(ctx.data)["deps"].isdir()  # composer says what is missing


def test_the_build_log_records_which_steps_came_from_the_cache(tmp_path):
    log = BuildLog(tmp_path / "embed.log", "embed")
    for line in ["Step 1/5 : FROM composer", " ---> e292c7dab951", "Step 2/5 : COPY deps/ /app/", " ---> Using cache",
                 " ---> 2aa699c693a3", f"Step 3/5 : {DEPS_STEP} --working-dir=/app", " ---> Using cache",
                 " ---> 7119bb5bb4df", "Step 4/5 : COPY app/ /app/", " ---> e579e201ad4a",
                 "Step 5/5 : RUN composer dump-autoload", " ---> Running in 47e5b22fe58e", "Generating",
                 "Removing intermediate container 47e5b22fe58e", " ---> 6b7ea344ac07"]:
        log.line(line)
    log.close()
    step = deps_step(log.step_records)
    assert step is not None and step.cached and step.layer == "7119bb5bb4df" and step.number == 3
    assert [s.cached for s in log.step_records] == [False, True, True, False, False]
    assert log.step_records[-1].layer == "6b7ea344ac07"


def test_each_dist_dir_pins_its_own_dependency_layer(tmp_path):
    assert deps_tag(tmp_path / "a") != deps_tag(tmp_path / "b")
    assert deps_tag(tmp_path / "a") == deps_tag(tmp_path / "x" / ".." / "a")


class FakeEngine:
    """Just enough of DockerEngine for build_binary to plan and run (no daemon)."""

    def __init__(self, binary: bytes) -> None:
        self.builds: list[dict] = []
        self.binary = binary
        self.bases: list[ImageInfo] = []
        self.base_builds = 0

    def images_with_label(self, label, value=None):
        return list(self.bases)

    def ensure_image(self, ref, hint):
        return ImageInfo(id="sha256:builder", tags=(ref,), labels={}, created="")

    def image(self, ref):
        return None

    def build(self, **kw):
        self.builds.append(kw)
        kw["log"].line("Step 1/1 : RUN true")
        kw["log"].close()
        if kw["labels"].get(LABEL_BASE_HASH):  # every base build makes a new image
            self.base_builds += 1
            base_id = f"sha256:base{self.base_builds}"
            self.bases = [ImageInfo(id=base_id, tags=(kw["tag"],), labels=kw["labels"], created="1")]
            return base_id
        return "sha256:embed"

    def tag(self, *a):
        pass

    def remove_if_unused(self, image_id):
        return False

    def remove_stage_images(self, ids, keep):
        pass

    def read_file(self, image, path):
        return self.binary

    def remove_image(self, ref):
        pass


def test_rebuild_base_builds_without_the_layer_cache(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "composer.json").write_text("{}")
    fake = FakeEngine(b"#!/bin/sh\necho FrankenPHP v1.12.7 fake\n")
    values = {"app": str(app), "dist_dir": str(tmp_path / "dist"), "builder.image": "mirror.test/frankenphp:1",
              "source_date_epoch": "1700000000"}
    first = build_binary(cfg(**values), fake)
    assert first.base_built and [b.get("nocache", False) for b in fake.builds] == [False, False]
    assert (first.path.stat().st_mode & 0o777, first.path.stat().st_mtime) == (0o755, 1700000000)
    fake.builds.clear()
    again = build_binary(cfg(**values, rebuild_base=True), fake)
    assert again.base_built and fake.builds[0]["nocache"] is True
    assert not fake.builds[1].get("nocache")  # the embed stage on the new base may use the cache
