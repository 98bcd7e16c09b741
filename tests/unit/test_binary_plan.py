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
    LABEL_BASE_HASH,
    base_hash,
    embed_key,
    plan_base,
    plan_embed,
    token_server,
)
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.engine import ImageInfo
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
