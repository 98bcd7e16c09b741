"""Issue 9: random settings either fail config resolution naming the key, or give files that
parse and carry no extra field; time spans agree with systemd; nfpm writes a `$` literally,
fpm a `$` and a `%` (rpmbuild expands %-macros), and no secret of the build environment
reaches a package.

Real tools: systemd-analyze, docker compose (config only: no engine needed), sh, nfpm,
dpkg-deb, rpm, rpm2cpio; the real fpm where installed (CLOUDBUILDER_REQUIRE_FPM=1: required).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import SETTINGS, AppFacts, Layer, parse_timespan, resolve
from cloudbuilder.errors import ConfigError
from cloudbuilder.escape import docker_tag
from cloudbuilder.packaging.build import build_packages
from cloudbuilder.packaging.nfpm import NfpmBackend
from cloudbuilder.packaging.spec import build_spec, read_app_license

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"
UNITS = ("orangescrum.service", "orangescrum-queue.service", "orangescrum-recurring.service",
         "orangescrum-recurring.timer", "orangescrum-migrate.service")


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, **kwargs)


def make_cfg(work: Path, binary: Path | None = None, **values):
    base = {"app": str(EXAMPLE_APP), "dist_dir": str(work / "dist"), "version": "4.1.0",
            "source_date_epoch": "1700000000"}
    if binary is not None:
        base["binary"] = str(binary)
    layer = Layer("flag", {**base, **values}, {k: f"flag {k}" for k in values})
    return resolve([layer], cwd=work, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def fake_binary(work: Path) -> Path:
    path = work / "frankenphp"
    path.write_text("#!/bin/sh\necho \"FrankenPHP test $*\"\n")
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------
# Strict readers of what the trees hold
# --------------------------------------------------------------------------


def unit_keys(text: str) -> list[tuple[str, str]]:
    """(section, key) of every assignment, read as strictly as systemd: no continuation lines."""
    keys, section = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), f"continuation line: {line!r}"
        if stripped.startswith("["):
            assert stripped.endswith("]"), line
            section = stripped[1:-1]
            continue
        key, sep, _value = stripped.partition("=")
        assert sep and section and re.fullmatch(r"[A-Za-z0-9]+", key.strip()), f"not an assignment: {line!r}"
        keys.append((section, key.strip()))
    return keys


def unit_value(text: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "="))


def verify_units(cfg, unit_dir: Path) -> None:
    """systemd-analyze verify: nothing but the absent installed programs may be reported."""
    done = run("systemd-analyze", "verify", *(f"./{u}" for u in UNITS), cwd=unit_dir)
    programs = {cfg.paths.binary, f"{cfg.paths.libexec_dir}/validate-env", f"{cfg.paths.libexec_dir}/app-state",
                f"{cfg.paths.libexec_dir}/server-env"}
    noise = re.compile(r"\S+: Command (\S+) is not executable: No such file or directory")
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and not ((m := noise.fullmatch(line.strip())) and m.group(1) in programs)]
    assert not problems, "\n".join(problems)


def key_paths(obj, prefix: str = "") -> set[str]:
    """Every mapping key of a parsed YAML/JSON document, as a path (list items: [])."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(f"{prefix}/{k}")
            out |= key_paths(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for item in obj:
            out |= key_paths(item, f"{prefix}[]")
    return out


def compose_config(tree: Path) -> dict:
    import json

    shutil.copyfile(tree / ".env.example", tree / ".env")
    done = run("docker", "compose", "--project-directory", str(tree), "-f", str(tree / "docker-compose.yaml"),
               "config", "--format", "json", env={**os.environ, "ORANGESCRUM_ENV_FILE": ".env"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dockerfile_instructions(text: str) -> list[str]:
    """The instruction keywords, with backslash continuations joined (the default escape)."""
    out, joined = [], ""
    for line in text.splitlines():
        if not joined and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if joined and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped by the parser
        joined += line
        if joined.endswith("\\"):
            joined = joined[:-1]
            continue
        out.append(joined.split(None, 1)[0].upper())
        joined = ""
    return out


def deb822_fields(text: str) -> list[str]:
    """Field names of the first paragraph of a deb822 file (copyright's header)."""
    fields = []
    for line in text.split("\n\n", 1)[0].splitlines():
        if line[:1] in (" ", "\t"):
            continue
        name, sep, _ = line.partition(":")
        assert sep and re.fullmatch(r"[A-Za-z0-9-]+", name), f"not a field: {line!r}"
        fields.append(name)
    return fields


def shell_scripts(cfg) -> dict[str, str]:
    """Every generated shell script: the trees' *.sh and the maintainer scripts of both formats."""
    scripts = {}
    for flavor in ("docker", "native"):
        for path in sorted((cfg.dist_dir / flavor).rglob("*.sh")):
            scripts[f"{flavor}/{path.relative_to(cfg.dist_dir / flavor)}"] = path.read_text()
    spec = build_spec(cfg, cfg.dist_dir / "native", read_app_license(cfg))
    for fmt, group in spec.scripts.items():
        for name, generated in group.items():
            scripts[f"{fmt}-{name}"] = generated.data.decode()
    return scripts


def observe(cfg) -> dict:
    """What must not change shape whatever the settings: the keys and fields of every generated file."""
    native, docker = cfg.dist_dir / "native", cfg.dist_dir / "docker"
    units = {u: (native / "systemd" / u).read_text() for u in UNITS}
    spec = build_spec(cfg, native, read_app_license(cfg))
    copyright_text = next(f.src.data.decode() for f in spec.files if f.dst.endswith("/copyright"))
    conf = NfpmBackend().config(spec, "deb", _layout(spec, "deb"))
    return {
        "units": {u: unit_keys(t) for u, t in units.items()},
        "compose": key_paths(compose_config(docker)),
        "dockerfile": dockerfile_instructions((docker / "Dockerfile").read_text()),
        "copyright": deb822_fields(copyright_text),
        "nfpm": sorted(conf),
    }


def _layout(spec, fmt):
    from cloudbuilder.packaging.backends import Layout

    return Layout(work=Path("/w"), sources={f.dst: Path("/s") for f in spec.files_for(fmt)},
                  scripts={k: Path(f"/s/{k}") for k in ("pre", "post", "preun", "postun")}, dirs={})


def check_tree(cfg, baseline: dict) -> None:
    native = cfg.dist_dir / "native"
    verify_units(cfg, native / "systemd")
    for name, text in shell_scripts(cfg).items():
        done = run("sh", "-n", "-c", text)
        assert done.returncode == 0, f"{name}: {done.stderr}"
    seen = observe(cfg)
    for part in baseline:
        expected = baseline[part]
        if part == "compose" and not cfg.app_migrate_command:  # no migration step: no service to wait for
            expected = {k for k in expected if not k.startswith(
                ("/services/migrate", "/services/app/depends_on", "/services/queue/depends_on"))}
        assert seen[part] == expected, f"{part} changed shape"
    # The values arrive as they were given.
    service = (native / "systemd/orangescrum.service").read_text()
    # server-env, then app-state, then the binary (each execs the next)
    assert unit_value(service, "ExecStart").split()[:4] == [
        f"{cfg.paths.libexec_dir}/server-env", f"{cfg.paths.libexec_dir}/app-state", "server", cfg.paths.binary]
    timer = (native / "systemd/orangescrum-recurring.timer").read_text()
    assert unit_value(timer, "OnUnitActiveSec") == cfg.service.recurring_interval.replace("%", "%%")
    model = compose_config(cfg.dist_dir / "docker")
    app = model["services"]["app"]
    assert app["ports"][0]["host_ip"] == cfg.docker.bind_address
    assert app["environment"]["WEBROOT"] == cfg.app_webroot
    assert app["image"] == f"{cfg.docker.image_name}:{docker_tag(cfg.version)}"
    one_shot = {"migrate"} if cfg.app_migrate_command else set()
    assert "privileged" not in app and set(model["services"]) == {"app", "queue"} | one_shot  # infra: a profile
    spec = build_spec(cfg, native, read_app_license(cfg))
    for field in ("maintainer", "vendor", "homepage", "license"):
        assert "\n" not in getattr(spec, field)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict:
    need("systemd-analyze", "docker")
    if run("docker", "compose", "version").returncode != 0:
        pytest.skip("no docker compose v2 plugin (scripts/setup.sh links it)")
    work = tmp_path_factory.mktemp("fuzz-baseline")
    cfg = make_cfg(work)
    binary = fake_binary(work)
    for flavor in ("docker", "native"):
        assemble_tree(cfg, flavor, binary)
    check = observe(cfg)
    check_tree(cfg, check)  # the default rendering passes its own checks
    return check


# --------------------------------------------------------------------------
# The config fuzz test
# --------------------------------------------------------------------------

# Local paths of the build machine (never written into a generated file) are left out.
FUZZED = [s for s in SETTINGS if s.kind not in ("path", "opt_path")]
PIECES = ["\n", "\r", "\t", "\x00", "'", '"', "$", "%", "`", " ", "{{", "}}", "{%", "\\", ";", "|", "&", "<", ">",
          "#", "*", "~", "!", "=", ",", ":", "@", "/", "(", ")", "[", "]", "${GITHUB_TOKEN}", "$(id)", "%n", "..",
          "é", "雪", "\U0001f600", "\u2028", "\ufeff", "\x1b", "\x7f", "a", "Z", "0", "9", ".", "-", "_",
          "\nPre-Depends: evil", "\n    privileged: true", "\nExecStartPost=/bin/evil"]
noise = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
# Characters some formats accept: values that pass the config more often, to exercise the renderers.
MILD = ["a", "z", "0", "7", ".", "-", "_", "+", ":", "/", "~", "@", " ", "é", "%", "$", "'", '"', "{{", "\\", "(", ")"]
mild = st.lists(st.sampled_from(MILD), min_size=1, max_size=4).map("".join)


@st.composite
def setting_and_value(draw):
    setting = draw(st.sampled_from(FUZZED))
    default = setting.default if isinstance(setting.default, str) else str(setting.default or "")
    how = draw(st.sampled_from(("noise", "insert", "append", "insert")))
    piece = draw(st.one_of(noise, mild))
    if how == "noise" or not default:
        return setting.key, piece
    if how == "append":
        return setting.key, default + piece
    at = draw(st.integers(0, len(default)))
    return setting.key, default[:at] + piece + default[at:]


@settings(max_examples=int(os.environ.get("CLOUDBUILDER_FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(setting_and_value())
def test_config_fuzz_fails_naming_the_key_or_renders_files_of_the_same_shape(baseline, example):
    key, value = example
    with tempfile.TemporaryDirectory(prefix="oscb-fuzz-") as tmp:
        work = Path(tmp)
        try:
            cfg = make_cfg(work, **{key: value})
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(f"{key}=") and f"(from flag {key})" in message, message
            assert "\n" not in message
            event("refused by config")
            return
        event("accepted: files checked")
        binary = fake_binary(work)
        for flavor in ("docker", "native"):
            assemble_tree(cfg, flavor, binary)
        check_tree(cfg, baseline)


@pytest.mark.parametrize("key,value", [
    ("paths.state_dir", "/var/lib/orangescrum'$(id>/root/PWNED)'"),
    ("paths.cache_dir", "/var/cache/orangescrum' '/srv/victim"),
    ("app_webroot", "webroot\nExecStartPost=/bin/sh -c id"),
    ("docker.bind_address", '127.0.0.1"\n    privileged: true\n    volumes: ["/:/host"]\n    x: "'),
    ("package.homepage", "https://www.orangescrum.com\nPre-Depends: evil"),
    ("package.maintainer", "Eve <eve@example.org>\nConflicts: libc6"),
    ("package.deb_depends", "systemd\nPre-Depends: evil"),
    ("service.recurring_interval", "every half hour"),
    ("paths.state_dir", "/opt/orangescrum"),
    ("paths.cache_dir", "/var/cache"),
    ("paths.binary", "/usr/bin/orange scrum"),
    ("paths.libexec_dir", "/usr/libexec/%n"),
])
def test_the_findings_values_are_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}="):
        make_cfg(tmp_path, **{key: value})


def test_accepted_edge_values_render_files_of_the_same_shape(baseline, tmp_path):
    cfg = make_cfg(tmp_path, **{
        "service.recurring_interval": "1h 30min", "docker.bind_address": "::1", "app_webroot": "web/root",
        "package.vendor": "Acme \"$X\" 100% {{ x }} `id` \\", "package.maintainer": "O'Brien $HOME <a@example.org>",
        "package.homepage": "https://example.org/a?b=c&d=e%20f", "package.license": "(MIT OR Apache-2.0)",
        "paths.state_dir": "/var/lib/os/state", "paths.cache_dir": "/var/cache/os-v4", "version": "4.1.0+git1",
        "docker.runtime_image": "registry.example.org:5000/debian@sha256:" + "a" * 64,
    })
    binary = fake_binary(tmp_path)
    for flavor in ("docker", "native"):
        assemble_tree(cfg, flavor, binary)
    check_tree(cfg, baseline)


# --------------------------------------------------------------------------
# Time spans: ours is a subset of systemd's, and counts the same
# --------------------------------------------------------------------------

SPAN_PIECES = ["0", "1", "5", "30", "90", "1.5", ".5", "2.25", " ", "s", "sec", "min", "m", "h", "hr", "d", "w", "M",
               "y", "ms", "us", "minutes", "hours", "days", "weeks", "months", "years", "mins", "x", "-", "infinity"]


def systemd_usec(text: str) -> int | None:
    done = run("systemd-analyze", "timespan", text)
    if done.returncode != 0:
        return None
    match = re.search(r"μs: (\d+)", done.stdout)
    assert match, done.stdout
    return int(match.group(1))


UNIT_NAMES = ["s", "sec", "second", "seconds", "min", "minute", "minutes", "m", "h", "hr", "hour", "hours", "d", "day",
              "days", "w", "week", "weeks", "M", "month", "months", "y", "year", "years", "ms", "msec", "us", "usec", "µs"]
component = st.tuples(st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,3})?", fullmatch=True), st.sampled_from(["", " "]),
                      st.sampled_from(UNIT_NAMES)).map("".join)
span = st.one_of(
    st.lists(st.sampled_from(SPAN_PIECES), min_size=1, max_size=5).map("".join),
    st.lists(st.tuples(component, st.sampled_from(["", " ", "  "])).map("".join), min_size=1, max_size=4).map(
        lambda parts: "".join(parts).rstrip()),
)


@settings(max_examples=int(os.environ.get("CLOUDBUILDER_FUZZ_EXAMPLES", "300")), deadline=None, database=None)
@given(span)
def test_accepted_time_spans_mean_the_same_to_systemd(text):
    need("systemd-analyze")
    try:
        ours = parse_timespan(text)
    except ValueError:
        event("refused by us")
        return
    event("accepted: compared with systemd")
    assert systemd_usec(text) == ours, text


@pytest.mark.parametrize("text", ["30min", "1h 30min", "1h30min", "1.5h", "2 weeks", "1M", "1y", "90", "250ms",
                                  "1d 2h 3min 4s"])
def test_the_usual_spans_agree_with_systemd(text):
    need("systemd-analyze")
    assert systemd_usec(text) == parse_timespan(text)


# --------------------------------------------------------------------------
# Packages: control fields of a handful of edge values; finding 7
# --------------------------------------------------------------------------


def deb_fields(path: Path) -> dict[str, str]:
    done = run("dpkg-deb", "-f", str(path))
    assert done.returncode == 0, done.stderr
    fields, last = {}, None
    for line in done.stdout.splitlines():
        if line[:1] in (" ", "\t") and last:
            fields[last] += "\n" + line
            continue
        last, _, value = line.partition(":")
        fields[last] = value.strip()
    return fields


@pytest.fixture(scope="module")
def default_deb_fields(tmp_path_factory) -> dict[str, str]:
    need("nfpm", "dpkg-deb")
    work = tmp_path_factory.mktemp("deb-default")
    cfg = make_cfg(work, fake_binary(work), **{"package.backend": "nfpm"})
    assemble_tree(cfg, "native", cfg.binary)
    return deb_fields(build_packages(cfg, ("deb",))[0].path)


@pytest.mark.parametrize("values", [
    {"package.vendor": "Acme \"$X\" 100% `id`", "package.maintainer": "O'Brien <ops@example.org>"},
    {"package.homepage": "https://example.org/a?b=c&d=e", "package.deb_depends": "systemd (>= 247), adduser | passwd"},
    {"package.license": "(MIT OR Apache-2.0)", "package.maintainer": "Zoë ${USER} <z@example.org>"},
])
def test_edge_values_give_the_same_control_fields(tmp_path, default_deb_fields, values):
    cfg = make_cfg(tmp_path, fake_binary(tmp_path), **{"package.backend": "nfpm", **values})
    assemble_tree(cfg, "native", cfg.binary)
    fields = deb_fields(build_packages(cfg, ("deb",))[0].path)
    assert set(fields) == set(default_deb_fields)
    assert fields["Maintainer"] == cfg.package.maintainer
    assert fields["Homepage"] == cfg.package.homepage
    assert fields["Depends"] == ", ".join(cfg.package.deb_depends)


def test_finding7_nfpm_writes_the_vendor_literally_and_no_secret_reaches_a_package(tmp_path, monkeypatch):
    need("nfpm", "rpm", "rpm2cpio", "dpkg-deb")
    monkeypatch.setenv("GITHUB_TOKEN", "secret-token")
    monkeypatch.setenv("NFPM_PASSPHRASE", "secret-passphrase")
    cfg = make_cfg(tmp_path, fake_binary(tmp_path), **{"package.backend": "nfpm",
                                                         "package.vendor": "Acme ${GITHUB_TOKEN}",
                                                         "package.maintainer": "Ops $GITHUB_TOKEN <ops@example.org>"})
    assemble_tree(cfg, "native", cfg.binary)
    results = {r.fmt: r.path for r in build_packages(cfg, ("deb", "rpm"))}
    rpm_file = results["rpm"]
    assert run("rpm", "-qp", "--qf", "%{VENDOR}", str(rpm_file)).stdout == "Acme ${GITHUB_TOKEN}"
    assert run("rpm", "-qp", "--qf", "%{PACKAGER}", str(rpm_file)).stdout == "Ops $GITHUB_TOKEN <ops@example.org>"
    payload = subprocess.run(["rpm2cpio", str(rpm_file)], capture_output=True, timeout=120, check=True).stdout
    info = run("rpm", "-qpi", "--scripts", "--changelog", str(rpm_file)).stdout
    deb = results["deb"]
    assert deb_fields(deb)["Maintainer"] == "Ops $GITHUB_TOKEN <ops@example.org>"
    deb_parts = [subprocess.run(["dpkg-deb", flag, str(deb)], capture_output=True, timeout=120, check=True).stdout
                 for flag in ("--ctrl-tarfile", "--fsys-tarfile")]
    for blob in (rpm_file.read_bytes(), payload, info.encode(), deb.read_bytes(), *deb_parts):
        assert b"secret-token" not in blob and b"secret-passphrase" not in blob


def test_finding7_fpm_writes_percent_and_dollar_literally_and_no_secret_reaches_a_package(tmp_path, monkeypatch):
    """fpm expands no $VAR, but rpmbuild expands %-macros (and runs %(...)) in the whole spec file
    fpm writes: every % fpm passes is doubled, so the .rpm says what nfpm's says."""
    from cloudbuilder.packaging.fpm import FpmBackend

    need("nfpm", "rpm", "rpm2cpio", "dpkg-deb")
    why = FpmBackend().missing("deb") or FpmBackend().missing("rpm")
    if why:
        if os.environ.get("CLOUDBUILDER_REQUIRE_FPM"):
            pytest.fail(why)
        pytest.skip(why)
    monkeypatch.setenv("GITHUB_TOKEN", "secret-token")
    marker = tmp_path / "ran"
    values = {"package.vendor": f"Acme ${{GITHUB_TOKEN}} 100% %{{_bindir}} %(touch {marker}) %%",
              "package.maintainer": "Ops $GITHUB_TOKEN %{?_vendor}% <ops@example.org>",
              "package.homepage": "https://example.org/a%20b", "package.rpm_compression": "xz"}
    built = {}
    for backend in ("fpm", "nfpm"):
        cfg = make_cfg(tmp_path / backend, fake_binary(tmp_path), **{"package.backend": backend, **values})
        assemble_tree(cfg, "native", cfg.binary)
        results = build_packages(cfg, ("deb", "rpm"))
        assert {r.backend for r in results} == {backend}
        built[backend] = {r.fmt: r.path for r in results}
    assert not marker.exists()  # %(...) was not run by rpmbuild
    rpm_file = built["fpm"]["rpm"]
    query = "%{VENDOR}\n%{PACKAGER}\n%{URL}\n[%{CHANGELOGNAME}\n]"
    expected = f"{values['package.vendor']}\n{values['package.maintainer']}\n{values['package.homepage']}\n"
    assert run("rpm", "-qp", "--qf", query, str(rpm_file)).stdout.startswith(expected)
    assert run("rpm", "-qp", "--qf", query, str(rpm_file)).stdout == \
        run("rpm", "-qp", "--qf", query, str(built["nfpm"]["rpm"])).stdout
    # the scriptlets (printf '%s', ${x%/*}) are the ones nfpm writes, up to rpmbuild's final newline
    for tag in ("PREIN", "POSTIN", "PREUN", "POSTUN"):
        fpm_script, nfpm_script = (run("rpm", "-qp", "--qf", f"%{{{tag}}}", str(b["rpm"])).stdout.rstrip("\n")
                                   for b in (built["fpm"], built["nfpm"]))
        assert "printf '%s" in fpm_script and fpm_script == nfpm_script, tag
    assert deb_fields(built["fpm"]["deb"])["Maintainer"] == values["package.maintainer"]
    payload = subprocess.run(["rpm2cpio", str(rpm_file)], capture_output=True, timeout=120, check=True).stdout
    info = run("rpm", "-qpi", "--scripts", "--changelog", str(rpm_file)).stdout
    deb = built["fpm"]["deb"]
    deb_parts = [subprocess.run(["dpkg-deb", flag, str(deb)], capture_output=True, timeout=120, check=True).stdout
                 for flag in ("--ctrl-tarfile", "--fsys-tarfile")]
    for blob in (rpm_file.read_bytes(), payload, info.encode(), deb.read_bytes(), *deb_parts):
        assert b"secret-token" not in blob
