"""What the app archive takes from the disk: ignore rules, credentials, symlinks (real files, real git)."""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
from pathlib import Path

import pytest

from cloudbuilder.archive import CREDENTIAL_FILES, archive_app, credential_rule, leaves_app
from cloudbuilder.errors import BuildError
from cloudbuilder.log import logger

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ncanary-key\n-----END OPENSSH PRIVATE KEY-----\n"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

# Every kind of credential file, at the place a developer (or the OrangeScrum installer) leaves it.
CREDENTIALS = {
    ".ENV": "DB_PASSWORD=canary",
    ".env.local": "DB_PASSWORD=canary",
    "config/.env": "DB_PASSWORD=canary",
    "auth.json": '{"github-oauth": {"github.com": "canary"}}',
    "id_rsa": PRIVATE_KEY,
    "deploy/id_ed25519": PRIVATE_KEY,
    ".npmrc": "//registry.npmjs.org/:_authToken=canary",
    ".git-credentials": "https://u:canary@example.org",
    "config/app_local.php": "<?php return ['Security' => ['salt' => 'canary']];",
    "config/install.ini": "installed=canary",
    "config/smtp.php": "<?php return ['password' => 'canary'];",
    "config/oauth-keys/private.key": PRIVATE_KEY,
    "keys/server.pem": PRIVATE_KEY,  # caught by its content, not its name
}
APP_FILES = {
    "composer.json": "{}",
    "webroot/index.php": "<?php echo 1;",
    "config/app.php": "<?php return [];",
    "config/app_local.example.php": "<?php // reference",
    "vendor/composer/ca-bundle/res/cacert.pem": CERTIFICATE,  # a certificate is not a secret
}


@pytest.fixture
def log_lines():
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect(logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def assert_no_credentials(archive, lines: list[str]) -> None:
    shipped = names(archive.data)
    for rel in CREDENTIALS:
        assert f"app/{rel}" not in shipped, rel
        assert any(f"left out {rel} (" in line for line in lines), f"no log line names {rel}"
    assert b"canary" not in archive.data
    assert set(archive.credentials) == set(CREDENTIALS)
    for rel in APP_FILES:
        assert f"app/{rel}" in shipped, rel


def test_untracked_app_in_a_work_tree_honours_ignore_rules_and_drops_credentials(tmp_path, log_lines):
    """Finding 9: an app not committed in the work tree it sits in used to be walked, ignore rules and all."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    write(work, {"README.md": "the enclosing repository\n", ".gitignore": "*.secret\n"})
    git(work, "add", "-A")
    git(work, "commit", "-qm", "init")
    app = work / "apps" / "myapp"
    write(app, {**APP_FILES, **CREDENTIALS, "notes.secret": "canary", "build/out.js": "canary",
                ".gitignore": "/build/\n"})
    a = archive_app(app, epoch=1700000000)
    assert a.method == "git ls-files"
    shipped = names(a.data)
    assert "app/notes.secret" not in shipped  # the enclosing repository's .gitignore
    assert "app/build/out.js" not in shipped  # the app's own .gitignore
    assert "app/.gitignore" in shipped
    assert_no_credentials(a, log_lines)
    # the log names the files, never their content
    assert not any("canary" in line for line in log_lines)


def test_app_ignored_by_the_enclosing_work_tree_is_walked_and_filtered(tmp_path, log_lines):
    """An app below a directory its enclosing repository ignores (apps/) is not that repository's."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    write(work, {".gitignore": "/apps/\n"})
    app = work / "apps" / "myapp"
    write(app, {**APP_FILES, **CREDENTIALS})
    a = archive_app(app, epoch=0)
    assert a.method.startswith("directory (ignored by the git work tree")
    assert_no_credentials(a, log_lines)


def test_committed_credentials_are_dropped_too(tmp_path, log_lines):
    app = tmp_path / "repo"
    write(app, {**APP_FILES, **CREDENTIALS})
    git(app, "init", "-q")
    git(app, "add", "-A", "-f")
    git(app, "commit", "-qm", "x")
    a = archive_app(app, epoch=0)
    assert a.method == "git archive"
    assert_no_credentials(a, log_lines)


def test_an_app_outside_git_drops_credentials(tmp_path, log_lines):
    app = tmp_path / "app"
    write(app, {**APP_FILES, **CREDENTIALS})
    a = archive_app(app, epoch=0)
    assert a.method == "directory"
    assert_no_credentials(a, log_lines)


@pytest.mark.parametrize("rel,rule", [
    (".env", ".env*"), (".ENV", ".env*"), ("config/.Env.prod", ".env*"), ("AUTH.JSON", "auth.json"),
    ("plugins/x/auth.json", "auth.json"), ("home/.ssh/id_rsa.pub", "id_rsa*"), ("Config/App_Local.php", "config/app_local.php"),
    ("config/oauth-keys/public.key", "config/oauth-keys/"), ("config/oauth-keys", "config/oauth-keys/"),
    ("cert.P12", "*.p12"),
    ("config/app.php", None), ("config/app_local.example.php", None), ("plugins/x/config/app_local.php", None),
    ("environment.php", None), ("src/Auth/JsonAuth.php", None), ("webroot/key.js", None),
])
def test_credential_rules(rel, rule):
    assert credential_rule(rel) == rule


def test_the_credential_list_is_documented():
    """Every rule of CREDENTIAL_FILES is in docs/APP_ARCHIVE.md."""
    doc = (Path(__file__).resolve().parents[2] / "docs/APP_ARCHIVE.md").read_text()
    for pattern in CREDENTIAL_FILES:
        assert f"`{pattern}`" in doc, pattern


def make_linked_app(root: Path) -> Path:
    write(root, APP_FILES)
    (root / "webroot/passwd").symlink_to("/etc/passwd")
    (root / "webroot/up").symlink_to("../../outside.txt")
    (root / "webroot/app.php").symlink_to("../config/app.php")  # inside: fine
    (root / "config/self").symlink_to(str(root / "config/app.php"))  # absolute, into the app on this machine only
    return root


def test_symlinks_out_of_the_app_are_refused_by_name(tmp_path):
    """Finding 13: a link to /etc/passwd used to be archived silently."""
    app = make_linked_app(tmp_path / "app")
    with pytest.raises(BuildError) as err:
        archive_app(app, epoch=0)
    message = str(err.value)
    for link in ("webroot/passwd -> /etc/passwd", "webroot/up -> ../../outside.txt",
                 f"config/self -> {app}/config/app.php"):
        assert link in message
    assert "webroot/app.php" not in message
    assert "relative link inside the app" in message and "OSCB_APP_EXTERNAL_SYMLINKS=true" in message


def test_symlinks_out_of_the_app_are_archived_when_allowed_with_a_warning(tmp_path, log_lines):
    app = make_linked_app(tmp_path / "app")
    a = archive_app(app, epoch=0, allow_external_symlinks=True)
    with tarfile.open(fileobj=io.BytesIO(a.data)) as tar:
        assert tar.getmember("app/webroot/passwd").linkname == "/etc/passwd"
        assert tar.getmember("app/webroot/app.php").linkname == "../config/app.php"
    assert any("symlink webroot/passwd -> /etc/passwd points outside the app" in line for line in log_lines)
    assert not any("webroot/app.php" in line for line in log_lines)


def test_links_inside_the_app_are_fine_in_git_too(tmp_path):
    app = tmp_path / "repo"
    write(app, APP_FILES)
    (app / "webroot/app.php").symlink_to("../config/app.php")
    (app / "webroot/cfg").symlink_to("../config")
    git(app, "init", "-q")
    git(app, "add", "-A")
    git(app, "commit", "-qm", "x")
    assert archive_app(app, epoch=0).method == "git archive"
    (app / "webroot/passwd").symlink_to("/etc/passwd")
    git(app, "add", "-A")
    git(app, "commit", "-qm", "y")
    with pytest.raises(BuildError, match="webroot/passwd -> /etc/passwd"):
        archive_app(app, epoch=0)


@pytest.mark.parametrize("links,rel,outside", [
    ({"a": "b"}, "a", False),
    ({"d/a": "../x"}, "d/a", False),
    ({"d/a": "../../x"}, "d/a", True),
    ({"a": "/etc/passwd"}, "a", True),
    ({"d/b": "..", "d/a": "b/../.."}, "d/a", True),  # only a chain of links shows it
    ({"d/b": "sub/deep", "d/a": "b/../x"}, "d/a", False),
    ({"a": "b", "b": "a"}, "a", False),  # a loop: broken, but not outside
    ({"a": "b/x", "b": "/srv"}, "a", True),
])
def test_leaves_app(links, rel, outside):
    assert leaves_app(rel, links) is outside


def test_the_setting_that_allows_them(tmp_path):
    from cloudbuilder.config import AppFacts, env_layer, resolve

    def cfg(environ):
        return resolve([env_layer(environ, "environment variable")], cwd=tmp_path, environ={},
                       probe=lambda _a: AppFacts(None, "default", None))

    assert cfg({}).app_external_symlinks is False
    assert cfg({"OSCB_APP_EXTERNAL_SYMLINKS": "true"}).app_external_symlinks is True


def test_an_app_outside_git_is_dated_by_its_newest_archived_file(tmp_path):
    """Finding 14: without a commit, SOURCE_DATE_EPOCH used to be 0 (every packaged file dated 1970)."""
    import os

    from cloudbuilder.config import Layer, probe_app, resolve

    app = tmp_path / "app"
    write(app, {**APP_FILES, "tests/T.php": "<?php", "node_modules/m.js": "x", ".env": "X=1",
                "keys/k.pem": PRIVATE_KEY})
    for i, p in enumerate(sorted(q for q in app.rglob("*") if q.is_file())):
        os.utime(p, (1600000000 + i, 1600000000 + i))
    os.utime(app / "webroot/index.php", (1650000000, 1650000000))  # the newest file that is archived
    for rel in ("tests/T.php", "node_modules/m.js", ".env", "keys/k.pem"):  # newer, but never archived
        os.utime(app / rel, (1700000000, 1700000000))
    facts = probe_app(app)
    assert (facts.last_commit_epoch, facts.newest_file_epoch) == (None, 1650000000)
    cfg = resolve([Layer("flag", {"app": str(app)})], cwd=tmp_path, environ={})
    assert cfg.source_date_epoch == 1650000000
    assert cfg.source_of("source_date_epoch") == "the newest file in the app"
    # the same tree gives the same epoch; the excluded files do not move it
    (app / ".env").touch()
    (app / "tests/T.php").touch()
    assert resolve([Layer("flag", {"app": str(app)})], cwd=tmp_path, environ={}).source_date_epoch == 1650000000
    # SOURCE_DATE_EPOCH still wins
    cfg = resolve([Layer("flag", {"app": str(app)})], cwd=tmp_path, environ={"SOURCE_DATE_EPOCH": "1234"})
    assert cfg.source_date_epoch == 1234


def test_an_untracked_app_in_a_work_tree_is_dated_by_its_newest_unignored_file(tmp_path):
    import os

    from cloudbuilder.config import probe_app

    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    write(work, {"README.md": "x", ".gitignore": "*.secret\n"})
    git(work, "add", "-A")
    git(work, "commit", "-qm", "init")
    app = work / "apps" / "myapp"
    write(app, {**APP_FILES, "notes.secret": "x"})
    for p in app.rglob("*"):
        os.utime(p, (1600000000, 1600000000))
    os.utime(app / "notes.secret", (1700000000, 1700000000))  # ignored by git: does not count
    assert probe_app(app).newest_file_epoch == 1600000000
    assert probe_app(app).last_commit_epoch is None
