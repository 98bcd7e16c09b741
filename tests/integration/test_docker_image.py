"""The runtime image, built with a real engine from a tree with a small fake binary.

Fast checks of the image itself (the compose stack with the stand-in binary is
in tests/system/test_compose.py): the SDK build and its no-op rebuild, OCI
labels, the non-root numeric user, the minimal and setuid-free root file system
(every file of the image listed against the allowed set, its size over the
binary), the CA bundle, the entrypoint under a read-only root, the validator
under the image's busybox against dash on the host, a glibc-linked binary
getting its C library, and `.dockerignore` on the `docker compose build` path
(BuildKit), proven by scanning `docker save`.

Everything made here is removed at the end: containers, the test's image tags,
and the untagged stage images its builds created. The local Debian runtime base
(localhost/orangescrum-standin/rootfs:runtime-*) is a cached fixture and stays.
"""

from __future__ import annotations

import hashlib
import os
import platform
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.dockerimage import LABEL_INPUTS, build_context, build_runtime_image, plan_runtime_image, rfc3339
from cloudbuilder.engine import DockerEngine
from docker_support import built_ids, image_files, image_ids, remove_new_untagged, scan_save

pytestmark = pytest.mark.integration

MARKER = "fake-frankenphp-" + secrets.token_hex(8)  # proves the scan sees the binary's layer
CANARY = "CANARY-" + secrets.token_hex(12)
# A new SOURCE_DATE_EPOCH per run: the tree's mtimes differ from any earlier run's,
# so BuildKit's context cache cannot serve an earlier run's same-size binary.
EPOCH = 1700000000 + secrets.randbelow(10**6)
FAKE_BINARY = f"""#!/bin/sh
# {MARKER}: prints how it was started; "extracts" an app when asked its version,
# as the real binary extracts in its start-up (helpers/app-state.sh relies on it)
if [ "$1" = version ]; then mkdir -p "$TMPDIR/frankenphp_fake/webroot"; exit 0; fi
echo "fake-binary pid=$$ uid=$(id -u) gid=$(id -g) tmpdir=$TMPDIR args=$*"
"""
VALID_ENV = {
    "FULL_BASE_URL": "https://os.example.org",
    "SECURITY_SALT": "0123456789abcdef0123456789abcdef0123",
    "DB_HOST": "db.internal",
    "DB_PORT": "5432",
    "DB_USERNAME": "orangescrum",
    "DB_PASSWORD": "Zq9-valid-Secret-value",
    "DB_NAME": "orangescrum",
}
# Per run: a concurrent run of this file (the engine is shared) removes only its own containers.
TEST_LABEL = {"org.orangescrum.cloudbuilder.test": f"test_docker_image-{secrets.token_hex(4)}"}


# --------------------------------------------------------------------------
# Helpers: scan_save, built_ids, remove_new_untagged live in tests/docker_support.py
# --------------------------------------------------------------------------




# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime_base(docker_client) -> str:
    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME
    from cloudbuilder.standin import ensure_rootfs_image

    return ensure_rootfs_image(docker_client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES)


def test_config(tmp: Path, binary: Path, repo: str, runtime_base: str):
    """The settings of a test image: its app dir, dist dir, binary, base and repository."""
    return resolve([Layer("test", {
        "app": str(tmp), "dist_dir": str(tmp / "dist"), "version": "4.0.0", "source_date_epoch": str(EPOCH),
        "docker.runtime_image": runtime_base, "docker.image_name": repo, "binary": str(binary)})],
        cwd=tmp, environ={}, probe=lambda _a: AppFacts(None, "default", None))


test_config.__test__ = False  # a helper, not a test


def remove_built(client, tags, dist_dir: Path, before: set[str]) -> None:
    """The test's image tags and the stage images its builds left untagged."""
    for ref in tags:
        try:
            client.images.remove(ref)
        except Exception:  # noqa: BLE001 - already gone
            pass
    remove_new_untagged(client, built_ids(sorted((dist_dir / "logs").glob("runtime-image-*.log"))), before)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, runtime_base):
    tmp = tmp_path_factory.mktemp("docker-image")
    binary = tmp / "frankenphp"
    binary.write_text(FAKE_BINARY)
    binary.chmod(0o755)
    config = test_config(tmp, binary, f"localhost/oscb-test-{secrets.token_hex(4)}/orangescrum", runtime_base)
    tree = assemble_tree(config, "docker", binary).path
    # What an operator leaves in the directory must never reach an image.
    (tree / ".env").write_text(f"DB_PASSWORD={CANARY}\n")
    (tree / "docs" / "NOTES.md").write_text(f"token {CANARY}\n")
    (tree / "docker-compose.override.yaml").write_text(f"# {CANARY}\nservices: {{}}\n")
    return config


@pytest.fixture(scope="module")
def image(docker_client, cfg):
    """The image built by `build_runtime_image` (the code behind `invoke docker.image`)."""
    before = image_ids(docker_client)
    with DockerEngine() as engine:
        first = build_runtime_image(cfg, engine)
        second = build_runtime_image(cfg, engine)
    try:
        yield {"first": first, "second": second, "ref": first.tags[0]}
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": "org.orangescrum.cloudbuilder.test"}):
            if container.labels.get("org.orangescrum.cloudbuilder.test") == TEST_LABEL["org.orangescrum.cloudbuilder.test"]:
                container.remove(force=True)
        remove_built(docker_client, first.tags, cfg.dist_dir, before)


def run(client, ref: str, *command: str, env: dict | None = None, read_only=True, tmpfs=True, user=None,
        entrypoint=None, volumes=None, state=True) -> tuple[int, str]:
    mounts = {"/var/cache/orangescrum": "exec,mode=0700,uid=1000,gid=1000"} if tmpfs else {}
    if state:  # stands for the state volume compose mounts there
        mounts["/var/lib/orangescrum"] = "mode=0750,uid=1000,gid=1000"
    container = client.containers.run(
        ref, list(command) or None, detach=True, environment=env or {}, read_only=read_only, labels=TEST_LABEL,
        volumes=volumes or {}, tmpfs=mounts,
        cap_drop=["ALL"], security_opt=["no-new-privileges:true"], network_disabled=True,
        user=user, entrypoint=entrypoint,
    )
    try:
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


# --------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------


def test_build_tags_version_and_latest_and_a_rebuild_is_a_no_op(docker_client, image, cfg):
    first, second = image["first"], image["second"]
    assert first.rebuilt and not second.rebuilt and first.id == second.id
    img = docker_client.images.get(first.id)
    repo = cfg.docker.image_name
    assert set(img.tags) == {f"{repo}:4.0.0", f"{repo}:latest"}
    assert img.labels[LABEL_INPUTS]


def test_oci_labels(docker_client, image, runtime_base):
    labels = docker_client.images.get(image["ref"]).labels
    assert labels["org.opencontainers.image.version"] == "4.0.0"
    assert labels["org.opencontainers.image.created"] == rfc3339(EPOCH)  # from SOURCE_DATE_EPOCH
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.revision"]  # the app's commit, or "unknown" outside git
    assert labels["org.opencontainers.image.base.name"] == runtime_base


def test_image_config(docker_client, image):
    config = docker_client.images.get(image["ref"]).attrs["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["/opt/orangescrum/entrypoint.sh"] and config["Cmd"] == ["server"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/orangescrum/entrypoint.sh", "healthcheck"]
    assert config["StopSignal"] == "SIGTERM"
    assert "8080/tcp" in config["ExposedPorts"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["TMPDIR"] == "/var/cache/orangescrum" and env["PORT"] == "8080"
    assert not any(k in env for k in ("GITHUB_TOKEN", "DB_PASSWORD", "SECURITY_SALT"))


def test_root_filesystem_is_pruned_and_without_setuid(docker_client, image):
    script = (
        "set -eu; "
        "echo setuid: $(find / -xdev -type f -perm /6000 | wc -l); "
        "echo envfiles: $(find / -xdev -name '.env*' | wc -l); "
        "echo locales: $(ls /usr/share/locale | wc -l); "
        "echo aptlists: $(ls /var/lib/apt/lists | wc -l); "
        "test -s \"$SSL_CERT_FILE\" && echo cabundle: $(grep -c 'BEGIN CERTIFICATE' \"$SSL_CERT_FILE\"); "
        "echo user: $(grep ':x:1000:' /etc/passwd | cut -d: -f1,6,7); "
        "stat -c 'mode: %n %a %u:%g' /opt/orangescrum/bin/orangescrum /opt/orangescrum/entrypoint.sh "
        "/opt/orangescrum/helpers/validate-env.sh /var/cache/orangescrum"
    )
    code, out = run(docker_client, image["ref"], "-c", script, user="0", entrypoint=["/bin/sh"], tmpfs=False)
    assert code == 0, out
    facts = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("mode"))
    assert facts["setuid"] == "0" and facts["envfiles"] == "0"
    assert facts["locales"] == "0" and facts["aptlists"] == "0"
    assert int(facts["cabundle"]) > 50
    assert facts["user"] == "orangescrum:/var/lib/orangescrum:/usr/sbin/nologin"
    modes = [line.split()[1:] for line in out.splitlines() if line.startswith("mode:")]
    assert modes == [["/opt/orangescrum/bin/orangescrum", "755", "0:0"],
                     ["/opt/orangescrum/entrypoint.sh", "755", "0:0"],
                     ["/opt/orangescrum/helpers/validate-env.sh", "755", "0:0"],
                     ["/var/cache/orangescrum", "700", "1000:1000"]]


def test_overhead_over_the_binary_is_below_the_base(docker_client, image, runtime_base, cfg):
    size = docker_client.images.get(image["ref"]).attrs["Size"]
    base = docker_client.images.get(runtime_base).attrs["Size"]
    binary = Path(cfg.binary).stat().st_size
    # FROM scratch: none of the base, only a few of its files
    assert size - binary < base, (size, binary, base)


# --------------------------------------------------------------------------
# The entrypoint in the image
# --------------------------------------------------------------------------


def test_server_runs_as_pid_1_and_uid_1000_on_a_read_only_root(docker_client, image):
    code, out = run(docker_client, image["ref"], env=VALID_ENV)
    assert code == 0, out
    # TMPDIR: the server's own directory in the tmpfs (helpers/app-state.sh)
    assert "fake-binary pid=1 uid=1000 gid=1000 tmpdir=/var/cache/orangescrum/server " in out
    assert "app-state: seeded webroot/files" in out
    assert out.rstrip().endswith("args=php-server --listen :8080 --root webroot")


def test_invalid_environment_exits_1_with_the_report(docker_client, image):
    env = {**VALID_ENV, "DB_PASSWORD": CANARY[:11], "SECURITY_SALT": "CHANGE_ME"}
    code, out = run(docker_client, image["ref"], env=env)
    assert code == 1
    assert "error: DB_PASSWORD: must be at least 12 characters long" in out
    assert "error: SECURITY_SALT: is still a placeholder" in out
    assert "entrypoint: refusing to start" in out and "fake-binary" not in out
    assert CANARY[:11] not in out


def test_validate_command(docker_client, image):
    code, out = run(docker_client, image["ref"], "validate", env=VALID_ENV)
    assert code == 0 and "validate-env: environment: OK" in out


def test_secret_file_mounted_like_a_docker_secret(docker_client, image, tmp_path):
    """DB_PASSWORD_FILE=/run/secrets/...: the server starts without DB_PASSWORD in its environment settings."""
    secret = tmp_path / "db_password"
    secret.write_text(VALID_ENV["DB_PASSWORD"] + "\n")
    os.chown(secret, 1000, 1000)
    secret.chmod(0o400)
    env = {k: v for k, v in VALID_ENV.items() if k != "DB_PASSWORD"}
    env["DB_PASSWORD_FILE"] = "/run/secrets/db_password"
    volumes = {str(secret): {"bind": "/run/secrets/db_password", "mode": "ro"}}
    code, out = run(docker_client, image["ref"], env=env, volumes=volumes)
    assert code == 0, out
    assert "fake-binary pid=1 uid=1000" in out and VALID_ENV["DB_PASSWORD"] not in out
    os.chown(secret, 0, 0)  # a secret the image's user cannot read: refused, named by its key
    code, out = run(docker_client, image["ref"], env=env, volumes=volumes)
    assert code == 1 and "fake-binary" not in out
    assert "error: DB_PASSWORD_FILE: cannot read the file it names" in out
    code, out = run(docker_client, image["ref"], env={**env, "DB_PASSWORD": VALID_ENV["DB_PASSWORD"]},
                    volumes=volumes)
    assert code == 1 and "error: DB_PASSWORD: is set and DB_PASSWORD_FILE too" in out


def test_read_only_root_without_the_tmpfs_is_explained(docker_client, image):
    code, out = run(docker_client, image["ref"], env=VALID_ENV, tmpfs=False)
    assert code == 1
    assert "TMPDIR /var/cache/orangescrum is not a writable directory" in out
    assert "--tmpfs /var/cache/orangescrum:exec,uid=1000,gid=1000" in out


def test_read_only_root_without_the_state_volume_is_explained(docker_client, image):
    code, out = run(docker_client, image["ref"], env=VALID_ENV, state=False)
    assert code == 1 and "fake-binary" not in out
    assert "STATE_DIR /var/lib/orangescrum is not a writable directory" in out
    assert "mount the state volume there" in out


# --------------------------------------------------------------------------
# No secret in any layer, on both build paths
# --------------------------------------------------------------------------


def test_sdk_build_carries_no_operator_file(docker_client, image):
    assert scan_save(docker_client, image["ref"], [CANARY, MARKER]) == {MARKER}


def test_compose_build_honours_dockerignore(docker_client, image, cfg, tmp_path):
    """`docker compose build` in the tree (BuildKit here) sends only what .dockerignore admits."""
    if not shutil.which("docker"):
        pytest.skip("no docker CLI")
    tree = cfg.dist_dir / "docker"
    ref = f"{cfg.docker.image_name}:compose-build"
    override = tmp_path / "tag.yaml"
    override.write_text(f"services:\n  app:\n    image: {ref}\n")
    env = {**os.environ, "ORANGESCRUM_ENV_FILE": str(tree / ".env")}
    sha256 = hashlib.sha256((tree / "orangescrum-app" / "osv4-prod").read_bytes()).hexdigest()
    try:
        done = subprocess.run(["docker", "compose", "-p", f"oscb-test-{secrets.token_hex(4)}",
                               "-f", "docker-compose.yaml", "-f", str(override), "build",
                               "--build-arg", f"BINARY_SHA256={sha256}", "app"],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert scan_save(docker_client, ref, [CANARY, MARKER]) == {MARKER}
        config = docker_client.images.get(ref).attrs["Config"]
        assert config["User"] == "1000:1000"
        labels = docker_client.images.get(ref).labels
        assert labels["org.opencontainers.image.created"] == rfc3339(EPOCH)
        assert labels["org.orangescrum.binary.sha256"] == sha256
    finally:
        try:
            docker_client.images.remove(ref)
        except Exception:  # noqa: BLE001 - the build failed before tagging
            pass


def test_a_binary_that_is_not_the_expected_one_fails_the_build(docker_client, image, cfg):
    """The Dockerfile's checksum check (against a stale build cache, or a damaged copy)."""
    from cloudbuilder.engine import BuildLog
    from cloudbuilder.errors import BuildError

    plan = plan_runtime_image(cfg, "test", "0" * 64)
    tag = f"{cfg.docker.image_name}:wrong-binary"
    log = BuildLog(cfg.dist_dir / "logs" / "runtime-image-wrong-binary.log", "image")
    with DockerEngine() as engine, pytest.raises(BuildError) as info:
        engine.build(context=build_context(cfg.dist_dir / "docker"), dockerfile="Dockerfile", tag=tag,
                     buildargs=plan.buildargs, labels={}, log=log)
    assert "a stale build cache?" in str(info.value)
    assert docker_client.images.list(name=tag) == []


# --------------------------------------------------------------------------
# A minimal image: FROM scratch, nothing beyond the allowed set
# --------------------------------------------------------------------------

# busybox applets linked in /bin: what the scripts call and the usual POSIX file tools
APPLETS = frozenset(
    "[ awk basename cat chmod cp cut date dirname echo env expr false find grep gzip head id kill ln ls mkdir "
    "mktemp mv od printf pwd readlink realpath rm rmdir sed sh sha256sum sleep sort stat tail tar tee test "
    "touch tr true uname uniq wc xargs".split())
ALLOWED_DIRS = frozenset({
    "bin", "etc", "etc/ssl", "etc/ssl/certs", "opt", "opt/orangescrum", "opt/orangescrum/bin",
    "opt/orangescrum/helpers", "tmp", "usr", "usr/share", "usr/share/doc", "usr/share/doc/busybox-static",
    "usr/share/doc/ca-certificates", "usr/share/doc/tzdata", "var", "var/lib", "var/lib/orangescrum", "var/cache",
    "var/cache/orangescrum",
})
ZONEINFO = "usr/share/zoneinfo"  # tzdata's time zones, whatever they are: below it, only them
ALLOWED_FILES = frozenset({
    "bin/busybox", "bin/printenv", "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt",
    "opt/orangescrum/bin/orangescrum", "opt/orangescrum/entrypoint.sh", "opt/orangescrum/helpers/validate-env.sh",
    "opt/orangescrum/helpers/app-state.sh", "opt/orangescrum/helpers/server-env.sh",
    "usr/share/doc/busybox-static/copyright", "usr/share/doc/ca-certificates/copyright",
    "usr/share/doc/tzdata/copyright",
})
MAX_OVERHEAD = 5 * 10**6  # bytes over the binary (issue 13: 5 MB or less)


def test_image_holds_only_the_allowed_files(docker_client, image):
    files = image_files(docker_client, image["ref"])
    zones = {p: m for p, m in files.items() if p == ZONEINFO or p.startswith(ZONEINFO + "/")}
    files = {p: m for p, m in files.items() if p not in zones}
    # the time zones: regular files and links that resolve among them, no leap-second copies
    zone_files = {p for p, m in zones.items() if m.isfile()}
    assert {f"{ZONEINFO}/UTC", f"{ZONEINFO}/Europe/Berlin", f"{ZONEINFO}/America/New_York"} <= {
        p for p in zones if zones[p].isfile() or zones[p].issym()}
    assert len(zone_files) > 300 and not any(p.startswith((f"{ZONEINFO}/right", f"{ZONEINFO}/posix/"))
                                             for p in zones)
    assert all(m.isdir() or m.isfile() or m.issym() for m in zones.values())
    for path, m in zones.items():
        if m.issym():
            target = os.path.normpath(os.path.join(os.path.dirname(path), m.linkname))
            assert not m.linkname.startswith("/") and target in zones, (path, m.linkname)
    dirs = {p for p, m in files.items() if m.isdir()}
    regular = {p for p, m in files.items() if m.isfile()}
    links = {p: m.linkname for p, m in files.items() if m.issym()}
    other = {p for p, m in files.items() if not (m.isdir() or m.isfile() or m.issym())}
    assert dirs == ALLOWED_DIRS
    assert regular == ALLOWED_FILES
    assert links == {f"bin/{a}": "busybox" for a in APPLETS}
    assert other == set()
    assert all(m.mode & 0o6000 == 0 for m in files.values())  # no setuid/setgid
    owners = {p: (m.uid, m.gid, m.mode & 0o7777) for p, m in files.items()
              if p in ("var/lib/orangescrum", "var/cache/orangescrum", "tmp", "etc/passwd", "bin/busybox")}
    assert owners == {"var/lib/orangescrum": (1000, 1000, 0o750), "var/cache/orangescrum": (1000, 1000, 0o700),
                      "tmp": (0, 0, 0o1777), "etc/passwd": (0, 0, 0o644), "bin/busybox": (0, 0, 0o755)}


def test_no_layer_of_the_base_is_in_the_image(docker_client, image, runtime_base):
    base_layers = set(docker_client.images.get(runtime_base).attrs["RootFS"]["Layers"])
    assert not base_layers & set(docker_client.images.get(image["ref"]).attrs["RootFS"]["Layers"])


def test_overhead_over_the_binary_is_at_most_5_mb(docker_client, image, cfg):
    size = docker_client.images.get(image["ref"]).attrs["Size"]
    binary = Path(cfg.binary).stat().st_size
    assert 0 < size - binary <= MAX_OVERHEAD, (size, binary)


def test_passwd_and_group_name_the_app_user(docker_client, image):
    code, out = run(docker_client, image["ref"], "-c", "id; id -un; cat /etc/passwd /etc/group",
                    entrypoint=["/bin/sh"])
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "uid=1000(orangescrum) gid=1000(orangescrum) groups=1000(orangescrum)"
    assert lines[1] == "orangescrum"
    assert lines[2:] == ["root:x:0:0:root:/root:/usr/sbin/nologin",
                         "orangescrum:x:1000:1000:OrangeScrum:/var/lib/orangescrum:/usr/sbin/nologin",
                         "root:x:0:", "orangescrum:x:1000:"]


def test_time_zone_files_are_whole_tzif_files(docker_client, image):
    """The zone files are whole TZif files (the stand-in's Debian PHP reads them; so does Go)."""
    code, out = run(docker_client, image["ref"], "-c",
                    "od -An -c -N4 /usr/share/zoneinfo/Europe/Berlin; od -An -c -N4 /usr/share/zoneinfo/UTC",
                    entrypoint=["/bin/sh"])
    assert code == 0 and out.split() == ["T", "Z", "i", "f"] * 2, out


def test_printenv_behaves_like_coreutils(docker_client, image):
    """/bin/printenv (docker/printenv.sh on busybox awk): values with blanks, '=', newlines; unset names."""
    tricky = "a b=c\n\tq'\"$x\\ é 🍊"
    script = ("printenv T; echo rc=$?; printenv NOPE; echo rc=$?; printenv EMPTY T NOPE; echo rc=$?; "
              "printenv | grep -c '^T='")
    code, out = run(docker_client, image["ref"], "-c", script, env={"T": tricky, "EMPTY": ""},
                    entrypoint=["/bin/sh"])
    host = subprocess.run(["sh", "-c", script], env={"PATH": "/usr/bin:/bin", "T": tricky, "EMPTY": ""},
                          capture_output=True, text=True)
    assert code == 0 and out == host.stdout, (out, host.stdout)
    assert out.startswith(tricky + "\nrc=0\nrc=1\n\n" + tricky + "\nrc=1\n")


# --------------------------------------------------------------------------
# The validator under the image's busybox gives what it gives under dash
# --------------------------------------------------------------------------

def _validator_corpus() -> dict[str, bytes]:
    """Env files: every rule and parse case of the validator's unit tests, the shipped example,
    and the byte-level cases (encodings, CR, NUL, multibyte secrets at the length limits)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_validate_env_cases", Path(__file__).resolve().parents[1] / "unit" / "test_validate_env.py")
    unit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unit)
    corpus: dict[str, bytes] = {}
    for param in unit.RULE_CASES:
        set_, drop = param.values[0], param.values[1]
        values = {k: v for k, v in {**unit.GOOD, **set_}.items() if k not in drop}
        corpus[f"rule-{param.id}"] = unit.env_text(values).encode()
    for param in unit.PARSE_CASES:
        lines = param.values[0]
        defined = {m[1] for line in lines if (m := unit.KEY_OF_LINE.match(line))}
        body = "\n".join(lines) + "\n" + unit.env_text({k: v for k, v in unit.GOOD.items() if k not in defined})
        corpus[f"parse-{param.id}"] = body.encode()
    corpus["example"] = unit.EXAMPLE.read_bytes()
    corpus["filled-example"] = unit.filled_example().encode()
    corpus["empty"] = b""
    good = unit.env_text(unit.GOOD).encode()
    for name, raw in {
        "latin1": b"APP_TITLE=caf\xe9", "overlong": b"APP_TITLE=\xc0\xaf", "bom": b"\xef\xbb\xbfAPP_TITLE=x",
        "nonchar": b"APP_TITLE=\xef\xbf\xbe", "c1": b"APP_TITLE=\xc2\x9b", "esc": b"APP_TITLE=a\x1bb",
        "crlf": b"APP_TITLE=x\r", "nul": b"APP_TITLE=a\x00b",
        # 11 characters in 33 bytes (too short), 12 in 36 (long enough): counted in characters
        "pw-11-chars": "DB_PASSWORD=Zq9!€€€€€€€€".encode() + "€".encode(),
        "pw-12-chars": "DB_PASSWORD=Zq9!€€€€€€€€€".encode() + "€".encode(),
        "pw-emoji": "DB_PASSWORD=Zq9!🍊🍊🍊🍊🍊🍊🍊🍊🍊".encode(),
        "salt-multibyte": ("SECURITY_SALT=" + "é" * 31 + "a").encode(),
        "upper-lower": "DB_PASSWORD=ÄÖÜCHANGEME".encode(), "denied-case": b"DB_PASSWORD=PaSsW0Rd",
    }.items():
        corpus[f"bytes-{name}"] = raw + b"\n" + good
    return corpus


# Both shells run this: each case file checked as a file, and with --exec in --environ mode
# (the values exported by the validator itself), once in the C locale and once in C.UTF-8.
DRIVER = r"""
set -u
validator=$1 cases=$2 out=$3
for f in "$cases"/*.env; do
  name=${f##*/}
  for locale in unset C.UTF-8; do
    if [ "$locale" = unset ]; then unset LANG LC_ALL; else LANG=$locale LC_ALL=$locale; export LANG LC_ALL; fi
    "$validator" "$f" >"$out/$name.$locale.file" 2>&1
    echo "rc=$?" >>"$out/$name.$locale.file"
    "$validator" --quiet --exec "$f" -- "$validator" --environ >"$out/$name.$locale.environ" 2>&1
    echo "rc=$?" >>"$out/$name.$locale.environ"
  done
done
"""


def test_validator_under_busybox_in_the_image_matches_dash(docker_client, image, tmp_path):
    corpus = _validator_corpus()
    assert len(corpus) > 150
    cases, got, want = tmp_path / "cases", tmp_path / "busybox", tmp_path / "dash"
    for d in (cases, got, want):
        d.mkdir()
    for name, data in corpus.items():
        (cases / f"{name}.env").write_bytes(data)
    (tmp_path / "driver.sh").write_text(DRIVER)
    got.chmod(0o777)
    tmp_path.chmod(0o755)
    container = docker_client.containers.run(
        image["ref"], ["/work/driver.sh", "/opt/orangescrum/helpers/validate-env.sh", str(cases), "/work/out"],
        entrypoint=["/bin/sh"], detach=True, read_only=True, labels=TEST_LABEL, network_disabled=True,
        cap_drop=["ALL"], security_opt=["no-new-privileges:true"], environment={},
        volumes={str(tmp_path / "driver.sh"): {"bind": "/work/driver.sh", "mode": "ro"},
                 str(cases): {"bind": str(cases), "mode": "ro"},  # the same path: reports name the file
                 str(got): {"bind": "/work/out", "mode": "rw"}})
    try:
        code = container.wait(timeout=900)["StatusCode"]
        assert code == 0, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    validator = Path(__file__).resolve().parents[2] / "common" / "helpers" / "validate-env.sh"
    subprocess.run(["dash", str(tmp_path / "driver.sh"), str(validator), str(cases), str(want)],
                   env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, check=True, timeout=900)
    outputs = sorted(p.name for p in want.iterdir())
    assert outputs == sorted(p.name for p in got.iterdir()) and len(outputs) == 4 * len(corpus)
    differ = [n for n in outputs if (got / n).read_bytes() != (want / n).read_bytes()]
    assert differ == [], {n: ((want / n).read_text(errors="replace"), (got / n).read_text(errors="replace"))
                          for n in differ[:3]}
    # the corpus exercises both verdicts in both modes
    verdicts = {(n.rsplit(".", 1)[1], (want / n).read_text(errors="replace").rsplit("rc=", 1)[1].strip())
                for n in outputs}
    assert {("file", "0"), ("file", "1"), ("environ", "0"), ("environ", "1")} <= verdicts


# --------------------------------------------------------------------------
# A dynamically linked binary (static-builder-gnu's glibc build) gets its C library
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glibc_image(docker_client, tmp_path_factory, runtime_base):
    """The image built around a glibc-linked program: the base image's own `echo`, which
    prints the arguments the entrypoint passes (as the fake binary does)."""
    tmp = tmp_path_factory.mktemp("docker-image-glibc")
    binary = tmp / "frankenphp"
    container = docker_client.containers.create(runtime_base, ["true"], labels=TEST_LABEL)
    try:
        import io
        import tarfile

        stream, _ = container.get_archive("/usr/bin/echo")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            binary.write_bytes(tar.extractfile(tar.getmembers()[0]).read())
    finally:
        container.remove(force=True)
    binary.chmod(0o755)
    config = test_config(tmp, binary, f"localhost/oscb-test-{secrets.token_hex(4)}/orangescrum-glibc", runtime_base)
    assemble_tree(config, "docker", binary)
    before = image_ids(docker_client)
    with DockerEngine() as engine:
        built = build_runtime_image(config, engine)
    try:
        yield {"ref": built.tags[0], "binary": binary, "log": built.log}
    finally:
        remove_built(docker_client, built.tags, config.dist_dir, before)


def test_a_glibc_binary_gets_the_loader_and_the_libraries_it_links(docker_client, glibc_image):
    if platform.machine() != "x86_64":
        pytest.skip("the expected paths are x86_64's")
    files = image_files(docker_client, glibc_image["ref"])
    libs = {p for p, m in files.items() if m.isfile() and p not in ALLOWED_FILES and not p.startswith(ZONEINFO)}
    assert libs == {"lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6"}, libs
    assert "rootfs: the binary links /lib/x86_64-linux-gnu/libc.so.6" in glibc_image["log"].read_text()
    # the program runs in the image with what it got (echo cannot extract an app, so not through
    # the entrypoint, whose state helper asks the binary to extract first)
    code, out = run(docker_client, glibc_image["ref"], "glibc-runs", env=VALID_ENV,
                    entrypoint=["/opt/orangescrum/bin/orangescrum"])
    assert code == 0, out
    assert out.strip() == "glibc-runs"
    size = docker_client.images.get(glibc_image["ref"]).attrs["Size"]
    lib_bytes = sum(files[p].size for p in libs)
    assert size - glibc_image["binary"].stat().st_size - lib_bytes <= MAX_OVERHEAD


def test_a_build_without_cache_makes_the_same_layers(docker_client, image, cfg):
    """Same inputs, same file system: every layer's digest (diff id) is the same when the engine
    builds it again from nothing (the image id is not: the classic builder dates its history)."""
    from cloudbuilder.engine import BuildLog

    ws_sha = hashlib.sha256((cfg.dist_dir / "docker" / "orangescrum-app" / "osv4-prod").read_bytes()).hexdigest()
    plan = plan_runtime_image(cfg, "test", ws_sha)
    tag = f"{cfg.docker.image_name}:nocache"
    log = BuildLog(cfg.dist_dir / "logs" / "runtime-image-nocache.log", "image")
    try:
        with DockerEngine() as engine:
            engine.build(context=build_context(cfg.dist_dir / "docker"), dockerfile="Dockerfile", tag=tag,
                         buildargs={**plan.buildargs, "REVISION": docker_client.images.get(image["ref"]).labels[
                             "org.opencontainers.image.revision"]}, labels={}, log=log, nocache=True)
        again = docker_client.images.get(tag).attrs["RootFS"]["Layers"]
        assert again == docker_client.images.get(image["ref"]).attrs["RootFS"]["Layers"]
    finally:
        try:
            docker_client.images.remove(tag)
        except Exception:  # noqa: BLE001 - the build failed before tagging
            pass
