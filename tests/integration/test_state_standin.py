"""helpers/app-state.sh with a real stand-in binary: state survives restarts, a lost
extraction directory and a new version; first start seeds, later starts never overwrite;
concurrent starts on one state directory agree.

The binaries are made by the stand-in's own build-static.sh on this host (Debian's
php CLI, as in the stand-in builder image), embedding a small app whose console
script writes the way OrangeScrum does: uploads under webroot/files, a log line
under logs/, a session file under tmp/, and config/app_local.php written by
rename (tmp file + rename(2), like the example app's installer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""<?php
// A console command of the test app: what OrangeScrum writes at run time.
$root = dirname(__DIR__);
$cmd = $argv[1] ?? 'show';
$version = trim(file_get_contents($root . '/VERSION'));
if ($cmd === 'write') {
    file_put_contents($root . '/webroot/files/upload.txt', "uploaded by $version\n");
    file_put_contents($root . '/logs/app.log', "log line of $version\n", FILE_APPEND);
    @mkdir($root . '/tmp/sessions', 0770, true);
    file_put_contents($root . '/tmp/sessions/sess_1', "user=alice\n");
    $local = $root . '/config/app_local.php';
    $tmp = $local . '.tmp-' . getmypid();
    file_put_contents($tmp, "<?php return ['installed_by' => '$version'];\n");
    rename($tmp, $local);
    mkdir($root . '/config/oauth-keys/x', 0700, true);
}
$local = is_file($root . '/config/app_local.php') ? (include $root . '/config/app_local.php')['installed_by'] : '-';
$config = include $root . '/config/app.php';
echo json_encode([
    'version' => $version,
    'config' => $config['version'],
    'upload' => @file_get_contents($root . '/webroot/files/upload.txt') ?: '-',
    'shipped' => @file_get_contents($root . '/webroot/files/shipped.txt') ?: '-',
    'log' => @file_get_contents($root . '/logs/app.log') ?: '-',
    'session' => @file_get_contents($root . '/tmp/sessions/sess_1') ?: '-',
    'local' => $local,
]), "\n";
"""


def _app(path: Path, version: str) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "probe.php").write_text(PROBE)
    (path / "VERSION").write_text(version + "\n")
    (path / "webroot" / "files").mkdir(parents=True)
    (path / "webroot" / "files" / "shipped.txt").write_text(f"shipped with {version}\n")
    (path / "webroot" / "index.php").write_text("<?php echo 'ok';\n")
    (path / "config").mkdir()
    # dirname(__DIR__): the app root, as CakePHP's config/paths.php computes ROOT.
    (path / "config" / "app.php").write_text(
        "<?php return ['version' => trim((string)@file_get_contents(dirname(__DIR__) . '/VERSION')) ?: 'no root'];\n")
    # A symlink in the app: the real binary's extraction drops it, so does the stand-in's.
    os.symlink("app.php", path / "config" / "link.php")
    return path


def _build(tmp: Path, version: str) -> Path:
    """A stand-in binary embedding the test app at ``version``."""
    work = tmp / f"build-{version}"
    work.mkdir()
    for name in ("build-static.sh", "frankenphp-stub.sh"):
        shutil.copy2(ROOT / "builder" / "standin" / name, work / name)
    _app(work / "dist" / "app", version)
    done = subprocess.run(["sh", "./build-static.sh"], cwd=work, env={**os.environ, "EMBED": "dist/app/"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    binaries = list((work / "dist").glob("frankenphp-linux-*"))
    assert len(binaries) == 1
    return binaries[0]


@pytest.fixture(scope="module")
def env_tools(tmp_path_factory):
    if not shutil.which("php"):
        pytest.skip("php is missing: apt-get install php8.2-cli (scripts/setup.sh does)")
    tmp = tmp_path_factory.mktemp("app-state")
    layer = Layer("flag", {"app": str(ROOT / "examples" / "orangescrum-demo"), "dist_dir": str(tmp / "dist"),
                           "version": "4.1.0", "source_date_epoch": "1700000000"})
    cfg = resolve([layer], cwd=tmp, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    stub = tmp / "stub-binary"
    stub.write_text("#!/bin/sh\n")
    native = assemble_tree(cfg, "native", stub).path
    return {"helper": native / "helpers" / "app-state.sh", "v1": _build(tmp, "1.0.0"), "v2": _build(tmp, "2.0.0")}


@pytest.fixture
def dirs(tmp_path):
    cache, state = tmp_path / "cache", tmp_path / "state"
    cache.mkdir()
    state.mkdir()
    return cache, state


def run(env_tools, binary: str, cache: Path, state: Path, *args: str, role: str = "cake", check: bool = True):
    done = subprocess.run(["sh", str(env_tools["helper"]), role, str(env_tools[binary]), "php-cli",
                           "bin/probe.php", *args],
                          env={**os.environ, "TMPDIR": str(cache), "STATE_DIR": str(state), "WEBROOT": "webroot"},
                          capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def show(env_tools, binary, cache, state, *args, role="cake") -> dict:
    import json

    return json.loads(run(env_tools, binary, cache, state, *args, role=role).stdout.strip().splitlines()[-1])


def extraction_dirs(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/frankenphp_*"))


def test_first_start_seeds_and_the_app_writes_into_the_state_dir(env_tools, dirs):
    cache, state = dirs
    first = run(env_tools, "v1", cache, state, "write")
    assert "app-state: seeded webroot/files" in first.stderr
    assert (state / "webroot" / "files" / "shipped.txt").read_text() == "shipped with 1.0.0\n"  # seeded
    assert (state / "webroot" / "files" / "upload.txt").read_text() == "uploaded by 1.0.0\n"
    assert (state / "logs" / "app.log").read_text() == "log line of 1.0.0\n"
    assert (state / "tmp" / "sessions" / "sess_1").is_file()
    # Written by rename: a regular file in the state dir, not in the extraction directory.
    local = state / "config" / "app_local.php"
    assert local.is_file() and not local.is_symlink()
    assert (state / "config" / "oauth-keys" / "x").is_dir()
    # The shipped configuration is linked to this version's copy, never copied into the state.
    assert (state / "config" / "app.php").is_symlink()
    app = extraction_dirs(cache)[0] / "app"
    assert os.readlink(app / "webroot" / "files") == str(state / "webroot" / "files")
    assert os.readlink(app / "config") == str(state / "config")
    # The symlink of the app's archive did not survive the extraction (as with FrankenPHP).
    assert not (state / "config" / "link.php").exists()


def test_restart_and_lost_extraction_keep_everything_and_never_reseed(env_tools, dirs):
    cache, state = dirs
    run(env_tools, "v1", cache, state, "write")
    (state / "webroot" / "files" / "shipped.txt").write_text("edited by the admin\n")
    again = run(env_tools, "v1", cache, state)
    assert "seeded" not in again.stderr
    # php-server removes its extraction directory on a graceful stop; a tmpfs loses it on restart.
    for d in extraction_dirs(cache):
        shutil.rmtree(d)
    seen = show(env_tools, "v1", cache, state)
    assert seen == {"version": "1.0.0", "config": "1.0.0", "upload": "uploaded by 1.0.0\n",
                    "shipped": "edited by the admin\n", "log": "log line of 1.0.0\n",
                    "session": "user=alice\n", "local": "1.0.0"}


def test_new_version_sees_the_data_and_its_own_config_and_old_dirs_go(env_tools, dirs):
    cache, state = dirs
    for role in ("server", "queue-worker"):
        run(env_tools, "v1", cache, state, "write" if role == "server" else "show", role=role)
    old = extraction_dirs(cache)
    assert len(old) == 2
    seen = show(env_tools, "v2", cache, state, role="server")
    assert seen["version"] == "2.0.0" and seen["config"] == "2.0.0"  # the new version's shipped config
    assert seen["upload"] == "uploaded by 1.0.0\n" and seen["local"] == "1.0.0"
    assert seen["log"] == "log line of 1.0.0\n" and seen["session"] == "user=alice\n"
    assert seen["shipped"] == "shipped with 1.0.0\n"  # seeded once, never overwritten
    now = extraction_dirs(cache)
    assert [d.name for d in now if d.parent.name == "server"] != [d.name for d in old if d.parent.name == "server"]
    assert len([d for d in now if d.parent.name == "server"]) == 1
    server = [d for d in now if d.parent.name == "server"][0]
    assert sorted(p.name for p in (cache / "shipped").iterdir()) == [server.name.removeprefix("frankenphp_")]
    # Downgrade: the previous version again, same data.
    back = show(env_tools, "v1", cache, state, role="server")
    assert back["config"] == "1.0.0" and back["upload"] == "uploaded by 1.0.0\n" and back["local"] == "1.0.0"


def test_concurrent_first_starts_agree(env_tools, dirs):
    cache, state = dirs
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: run(env_tools, "v1", cache, state, role=f"r{i}", check=False), range(6)))
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    seeded = sum(r.stderr.count("seeded webroot/files") for r in results)
    assert seeded >= 1
    assert sorted(p.name for p in (state / "webroot" / "files").iterdir()) == ["shipped.txt"]
    leftovers = [p for p in state.rglob(".app-state.*")]
    assert leftovers == []
    assert len(list((cache / "shipped").iterdir())) == 1


def test_a_declared_directory_the_app_ships_as_a_file_is_refused(env_tools, dirs, tmp_path):
    cache, state = dirs
    helper = tmp_path / "app-state.sh"
    text = env_tools["helper"].read_text()
    helper.write_text(text.replace("STATE_PATHS='", "STATE_PATHS='bin/probe.php/ ", 1))
    done = subprocess.run(["sh", str(helper), "cake", str(env_tools["v1"]), "version"],
                          env={**os.environ, "TMPDIR": str(cache), "STATE_DIR": str(state)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "declares bin/probe.php/ a directory, but the app ships a file there" in done.stderr


def test_a_missing_state_dir_is_named(env_tools, dirs):
    cache, state = dirs
    done = subprocess.run(["sh", str(env_tools["helper"]), "server", str(env_tools["v1"]), "version"],
                          env={**os.environ, "TMPDIR": str(cache), "STATE_DIR": str(state / "absent")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"STATE_DIR {state / 'absent'} is not a writable directory" in done.stderr
