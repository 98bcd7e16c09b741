"""Issue 9, findings 1, 5, 6, 7: every setting that reaches a generated file is escaped for
its syntax (cloudbuilder/escape.py), and what no syntax can carry is refused when the
settings are read (cloudbuilder/config.py). The exact values of the findings, each now
failing safely with a message naming the key; the filters; the template guard."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from cloudbuilder import escape
from cloudbuilder.assemble import assemble_tree, render_template
from cloudbuilder.config import AppFacts, Layer, parse_timespan, resolve
from cloudbuilder.errors import BuildError, ConfigError
from cloudbuilder.packaging.backends import Layout
from cloudbuilder.packaging.build import packager_environment
from cloudbuilder.packaging.nfpm import NfpmBackend
from cloudbuilder.packaging.spec import build_spec, read_app_license, render, template_context

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"


def resolve_with(tmp_path: Path, **values):
    layer = Layer("environment variable", {"app": str(EXAMPLE_APP), "dist_dir": str(tmp_path / "dist"),
                                           "version": "4.1.0", "source_date_epoch": "1700000000", **values},
                  {k: f"environment variable {k}" for k in values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def refused(tmp_path: Path, key: str, value: str, problem: str = "") -> str:
    with pytest.raises(ConfigError) as err:
        resolve_with(tmp_path, **{key: value})
    message = str(err.value)
    assert message.startswith(f"{key}="), message
    assert f"(from environment variable {key})" in message and ";" in message, "names the source and the fix"
    assert "\n" not in message
    assert problem in message
    return message


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> tuple[object, Path]:
    """The default config and its assembled dist/native (fake binary)."""
    work = tmp_path_factory.mktemp("escape")
    binary = work / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\necho fake\n")
    binary.chmod(0o755)
    cfg = resolve_with(work)
    return cfg, assemble_tree(cfg, "native", binary).path


# --------------------------------------------------------------------------
# Finding 1: path settings pasted into maintainer scripts run as root
# --------------------------------------------------------------------------


def test_finding1_state_dir_with_a_command_substitution_is_refused(tmp_path):
    refused(tmp_path, "paths.state_dir", "/var/lib/orangescrum'$(id>/root/PWNED)'", "is not a plain absolute path")


def test_finding1_cache_dir_with_a_second_word_is_refused(tmp_path):
    refused(tmp_path, "paths.cache_dir", "/var/cache/orangescrum' '/srv/victim", "is not a plain absolute path")


def test_finding1_scripts_quote_paths_even_when_config_is_bypassed(native, tmp_path):
    """The second line: the maintainer scripts get shell words from the sh filter, whatever the value."""
    cfg, tree = native
    evil_state, evil_cache = "/var/lib/o'$(id>PWNED)'", "/var/cache/o' '/srv/victim"
    bad = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, state_dir=evil_state, cache_dir=evil_cache))
    ctx = {**template_context(bad, read_app_license(bad), tree), "format": "deb"}
    postrm = render("deb/postrm.j2", ctx)
    script = tmp_path / "postrm"
    # The library's variables and the purge line's words, evaluated by a real shell.
    probe = postrm.replace('pkg_postun "$@"', 'printf "[%s]" "$state_dir"; exit 0')
    script.write_text(probe)
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout == f"[{evil_state}]"
    assert not (tmp_path / "PWNED").exists()
    assert "rm -rf \"$state_dir\" '/var/cache/o'\"'\"' '\"'\"'/srv/victim'\n" in postrm


# --------------------------------------------------------------------------
# Finding 5: newlines and quotes in other settings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [
    ("app_webroot", "webroot\nExecStartPost=/bin/sh -c 'id>/root/PWNED'"),
    ("app_webroot", "webroot; id>/tmp/PWNED"),
    ("app_webroot", "web root"),
    ("docker.bind_address", '127.0.0.1"\n    privileged: true\n    volumes: ["/:/host"]\n    x: "'),
    ("docker.bind_address", "127.0.0.1 privileged"),
    ("package.homepage", "https://www.orangescrum.com\nPre-Depends: evil"),
    ("package.maintainer", "Eve <eve@example.org>\nConflicts: libc6"),
    ("package.deb_depends", "systemd\nPre-Depends: evil"),
    ("package.deb_depends", "systemd, evil (>= 1)\nConflicts: libc6"),
    ("package.vendor", "Acme\nLicense: none"),
    ("package.vendor", "Acme\r\nX: y"),
    ("package.vendor", "Acme\x00"),
])
def test_finding5_injections_are_refused_naming_the_key(tmp_path, key, value):
    refused(tmp_path, key, value)


def test_finding5_every_string_setting_refuses_control_characters(tmp_path):
    from cloudbuilder.config import SETTINGS

    for s in SETTINGS:
        if s.kind in ("bool", "int", "port", "epoch", "opt_epoch", "choice"):
            continue
        base = s.default if isinstance(s.default, str) and s.default else "x"
        refused(tmp_path, s.key, base + "\nInjected: yes", "control character")


def test_finding5_recurring_interval_must_be_a_systemd_time_span(tmp_path):
    refused(tmp_path, "service.recurring_interval", "every half hour", "is not a systemd time span")
    refused(tmp_path, "service.recurring_interval", "0", "is out of range")
    for good in ("30min", "1h 30min", "1.5h", "90", "2 weeks"):
        assert resolve_with(tmp_path, **{"service.recurring_interval": good}).service.recurring_interval == good


def test_timespans_parse_as_systemd_counts_them():
    assert parse_timespan("30min") == 1_800_000_000
    assert parse_timespan("1h 30min") == parse_timespan("1h30min") == parse_timespan("90min")
    assert parse_timespan("1.5h") == 5_400_000_000
    assert parse_timespan("1M") == 2_629_800 * 10**6  # systemd's month: 30.44 days
    for bad in ("", "   ", "every half hour", "30mins", "min", "1.h", "1..5h", "-5min", "infinity", "5 5"):
        with pytest.raises(ValueError):
            parse_timespan(bad)


@pytest.mark.parametrize("key,good,bad", [
    # Compose's host_ip takes addresses only ("invalid ip address": found by the config fuzz test).
    ("docker.bind_address", ["127.0.0.1", "0.0.0.0", "::1", "fe80::1", "::"],
     ["[::1]", "fe80::1%eth0", "999.1.1.1", "localhost", "a", "-host", "a b", "host:80", ""]),
    ("docker.runtime_image", ["debian:bookworm-slim", "registry.example.org:5000/base/debian:12",
                              "debian@sha256:" + "a" * 64, "localhost/orangescrum-standin/base:1"],
     ["Debian", "debian:bookworm slim", "debian:$TAG", "debian;rm", ":tag",
      "debian:ébookworm-20251229-slim"]),
    ("docker.image_name", ["orangescrum/orangescrum", "registry.example.org/os/app"],
     ["orangescrum/orangescrum:4", "Orange/Scrum", "os app"]),
    ("builder.image", ["dunglas/frankenphp:static-builder-gnu-1.12.7"], ["dunglas/frankenphp:static builder"]),
    ("builder.composer_image", ["composer:2"], ["composer:2\nRUN id"]),
    ("package.homepage", ["https://www.orangescrum.com", "https://example.org/a/b?c=d&e=f%20g"],
     ["www.orangescrum.com", "javascript:alert(1)", "https://exa mple.org", "https://example.org/$(id)",
      "https://example.org/'x'", "ftp://example.org", "https://example.org/%zz"]),
    ("release.repo_url", ["https://pkgs.example.org/orangescrum", "file:///srv/repo"],
     ["https://pkgs.example.org/${X}", "file://host/srv/repo"]),
    ("package.deb_depends", ["systemd", "systemd (>= 247), adduser", "default-mta | mail-transport-agent",
                             "libc6:amd64 (>= 2.36-1)"],
     ["systemd (>= 247", "Systemd", "systemd (=> 247)", "systemd [amd64]"]),
    ("package.rpm_depends", ["systemd", "systemd >= 247", "/usr/bin/systemctl", "perl(Foo::Bar)"],
     ["systemd (>= 247)", "systemd >=247 | x", "systemd >= 247 evil"]),
    ("package.recommends", ["ca-certificates"], ["ca-certificates (>= 1)", "a | b"]),
    ("package.license", ["MIT", "AGPL-3.0-only", "(MIT OR Apache-2.0)", "LicenseRef-OrangeScrum"],
     ["MIT\nX", "MIT\"", "MIT;"]),
    ("paths.binary", ["/usr/bin/orangescrum", "/opt/os/bin/os_v4+1"],
     ["/usr/bin/orange scrum", "/usr/bin/os%n", "/usr/bin/$os", "/usr/bin/os\\x", "/usr/../bin/os", "/usr/./bin",
      "/usr/bin/'os'", "usr/bin/os", "/"]),
    ("app_webroot", ["webroot", "public", "web/root"], ["/webroot", "../webroot", "web root", "%n", "web$x", ""]),
])
def test_formats_of_values_that_reach_generated_files(tmp_path, key, good, bad):
    for value in good:
        resolve_with(tmp_path, **{key: value})
    for value in bad:
        refused(tmp_path, key, value)


# --------------------------------------------------------------------------
# Finding 6: state and cache directories of their own
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [
    ("paths.state_dir", "/opt/orangescrum"),  # StateDirectory= takes no absolute path
    ("paths.cache_dir", "/optx"),  # was CacheDirectory=/optx
    ("paths.cache_dir", "/var/cache"),  # removal would empty all of /var/cache
    ("paths.cache_dir", "/var/cache/"),
    ("paths.state_dir", "/var/lib"),
    ("paths.state_dir", "/var/library/x"),
])
def test_finding6_state_and_cache_need_a_directory_of_their_own(tmp_path, key, value):
    refused(tmp_path, key, value, "is not a directory of its own below")


def test_finding6_spaces_and_specifiers_in_paths_are_refused(tmp_path):
    refused(tmp_path, "paths.binary", "/usr/bin/orange scrum", "is not a plain absolute path")
    refused(tmp_path, "paths.libexec_dir", "/usr/libexec/%n", "is not a plain absolute path")


def test_finding6_units_take_the_part_below_var_lib_and_var_cache(tmp_path):
    binary = tmp_path / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\n")
    binary.chmod(0o755)
    cfg = resolve_with(tmp_path, **{"paths.state_dir": "/var/lib/os/state", "paths.cache_dir": "/var/cache/os-v4"})
    unit = (assemble_tree(cfg, "native", binary).path / "systemd/orangescrum.service").read_text()
    assert "\nStateDirectory=os/state\n" in unit and "\nCacheDirectory=os-v4\n" in unit
    assert "\nWorkingDirectory=/var/lib/os/state\n" in unit and "\nEnvironment=TMPDIR=/var/cache/os-v4\n" in unit


# --------------------------------------------------------------------------
# Finding 7: nfpm expands $VAR from the build environment
# --------------------------------------------------------------------------


def test_finding7_nfpm_fields_carry_a_literal_dollar(native, tmp_path):
    _cfg, tree = native
    cfg = resolve_with(tmp_path, **{"package.vendor": "Acme ${GITHUB_TOKEN}",
                                    "package.maintainer": "Pay $HOME <ops@example.org>"})
    spec = build_spec(cfg, tree, read_app_license(cfg))
    layout = Layout(work=Path("/w"), sources={f.dst: Path("/s") for f in spec.files},
                    scripts={k: Path(f"/s/{k}") for k in ("pre", "post", "preun", "postun")}, dirs={})
    inv = NfpmBackend().plan(spec, "rpm", layout, Path("/o.rpm"))
    conf = yaml.safe_load(inv.files["nfpm.yaml"])
    assert conf["vendor"] == "Acme ${OSCB_LITERAL_DOLLAR}{GITHUB_TOKEN}"
    assert conf["maintainer"] == conf["rpm"]["packager"] == "Pay ${OSCB_LITERAL_DOLLAR}HOME <ops@example.org>"
    assert inv.env["OSCB_LITERAL_DOLLAR"] == "$"
    assert conf["license"] == spec.license  # not expanded by nfpm: left alone


def test_finding7_packagers_get_a_minimal_environment():
    caller = {"PATH": "/usr/bin:/bin", "HOME": "/root", "GITHUB_TOKEN": "secret-token", "AWS_SECRET_ACCESS_KEY": "s",
              "NFPM_PASSPHRASE": "p", "LANG": "de_DE.UTF-8", "TZ": "Europe/Berlin", "SOURCE_DATE_EPOCH": "1"}
    env = packager_environment(caller, {"SOURCE_DATE_EPOCH": "1700000000"})
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "TZ": "UTC",
                   "SOURCE_DATE_EPOCH": "1700000000"}
    assert packager_environment({}, {})["PATH"] == os.defpath


# --------------------------------------------------------------------------
# The filters
# --------------------------------------------------------------------------

NASTY = ["plain", "", "it's", "a b", "$(id)", "`id`", '"q"', "back\\slash", "%n %%", "${X}", "$$", "-flag",
         "line\nbreak", "tab\there", "é ü 雪 \U0001f600", "{{ x }}", ";", "'", "\\", "a\\", "#x", "*"]


@pytest.mark.parametrize("value", NASTY)
def test_sh_words_are_read_back_literally(value):
    done = subprocess.run(["sh", "-c", f"printf %s {escape.sh(value)}"], capture_output=True, text=True, check=True)
    assert done.stdout == value


@pytest.mark.parametrize("value", NASTY + ["\x7f", "\x85", "\u2028", "\ufeff", "\x00", "\x1b[31m"])
def test_yaml_scalars_are_read_back_literally(value):
    assert yaml.safe_load(f"k: {escape.yaml(value)}\n") == {"k": value}
    assert "\n" not in escape.yaml(value)


def test_compose_doubles_dollars():
    assert escape.compose("a$b${C}") == '"a$$b$${C}"'


@pytest.mark.parametrize("value,expected", [
    ("webroot", "webroot"), ("127.0.0.1:8080", "127.0.0.1:8080"), ("a b", '"a b"'), ("%n", '"%%n"'),
    ("$HOME", '"$$HOME"'), ('say "hi"\\', '"say \\"hi\\"\\\\"'), (";", '";"'), ("-x", '"-x"'), ("", '""'),
])
def test_exec_args(value, expected):
    assert escape.exec_arg(value) == expected


def test_systemd_values():
    assert escape.systemd("every 5%") == "every 5%%"
    for bad in ("a\nb", " a", "a ", "a\\"):
        with pytest.raises(escape.EscapeError):
            escape.systemd(bad)


def test_dockerfile_values():
    assert escape.dockerfile("webroot") == "webroot"
    assert escape.dockerfile('a $B "c"\\') == '"a \\$B \\"c\\"\\\\"'
    with pytest.raises(escape.EscapeError):
        escape.dockerfile("a\nRUN id")


def test_paths_and_below():
    assert escape.path("/var/lib/orangescrum") == "/var/lib/orangescrum"
    assert escape.below("/var/lib/os/x", "/var/lib") == "os/x"
    for bad in ("/var/lib", "/var/libx/y", "/opt/x"):
        with pytest.raises(escape.EscapeError):
            escape.below(bad, "/var/lib")
    for bad in ("relative", "/a b", "/a/../b", "/a/%n", "/a/$x", "/a'", "/"):
        with pytest.raises(escape.EscapeError):
            escape.path(bad)


def test_control_text_heredoc_rpmlint():
    assert escape.control("Acme ${X}") == "Acme ${X}"
    for bad in ("a\nb: c", "", " lead"):
        with pytest.raises(escape.EscapeError):
            escape.control(bad)
    assert escape.text("every 1h 30min\t.") == "every 1h 30min\t."
    with pytest.raises(escape.EscapeError):
        escape.text("a\nb")
    with pytest.raises(escape.EscapeError):
        escape.heredoc("u x\nSYSUSERS\nrm -rf /", "SYSUSERS")
    assert escape.rpmlint_re("(MIT OR Apache-2.0)") == r"\(MIT\ OR\ Apache\-2\.0\)"


# --------------------------------------------------------------------------
# The guard: a template author who forgets a filter gets an error, not an injection
# --------------------------------------------------------------------------


def test_guard_refuses_an_unfiltered_value_naming_template_line_and_variable():
    with pytest.raises(BuildError) as err:
        render_template("[Service]\nExecStart=/bin/x --root {{ app_webroot }}\n",
                        {"app_webroot": "web\nExecStartPost=/bin/evil"}, name="native/systemd/x.service.j2")
    message = str(err.value)
    assert message.startswith("native/systemd/x.service.j2:2: {{ app_webroot }} renders ")
    assert "without an escaping filter" in message and "exec_arg" in message


def test_guard_names_the_included_template(tmp_path):
    (tmp_path / "_part.j2").write_text("ok\nUser={{ user }}\n")
    with pytest.raises(BuildError, match=r"_part\.j2:2: \{\{ user \}\} renders 'a b'"):
        render_template("{% include '_part.j2' %}", {"user": "a b"}, name="main.j2", search_path=(tmp_path,))


@pytest.mark.parametrize("value", ["a b", "$(id)", "x%n", "a'b", "-rf", "+/bin/sh", "", "a,b", "a#b", "{{ x }}",
                                   "x\\", "é", None])
def test_guard_refuses_what_is_not_plainly_safe(value):
    with pytest.raises(BuildError, match="without an escaping filter"):
        render_template("{{ v }}", {"v": value})


def test_guard_lets_through_filtered_plain_and_numeric_values():
    ctx = {"v": "a b", "w": "/usr/bin/orangescrum", "n": 8080, "t": True, "ver": "4.1.0+git~rc1",
           "ip6": "::1", "img": "debian@sha256:" + "a" * 64}
    out = render_template("{{ v | sh }} {{ w }} {{ n }} {{ t }} {{ ver }} {{ ip6 }} {{ img }} {{ v | text }}", ctx)
    assert out == "'a b' /usr/bin/orangescrum 8080 True 4.1.0+git~rc1 ::1 " + ctx["img"] + " a b"


def test_filter_errors_name_the_template_line(native):
    with pytest.raises(BuildError, match=r"^t\.j2:2: .*not a subdirectory of /var/lib/"):
        render_template("x\nStateDirectory={{ d | below('/var/lib') }}", {"d": "/var/lib"}, name="t.j2")


def test_every_template_interpolation_of_a_setting_is_escaped_or_plain(tmp_path):
    """The real sources render with values at the edge of what the config accepts."""
    binary = tmp_path / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\n")
    binary.chmod(0o755)
    cfg = resolve_with(tmp_path, **{
        "service.recurring_interval": "1h 30min", "docker.bind_address": "::1", "package.vendor": "Acme \"$X\" 100%",
        "package.homepage": "https://example.org/a?b=c&d=e", "package.license": "(MIT OR Apache-2.0)",
        "package.maintainer": "O'Brien & Söhne <ops@example.org>", "app_webroot": "web/root",
        "paths.state_dir": "/var/lib/os/state", "version": "4.1.0+git~rc1",
    })
    for flavor in ("docker", "native"):
        assemble_tree(cfg, flavor, binary)
    tree = cfg.dist_dir / "native"
    spec = build_spec(cfg, tree, read_app_license(cfg))
    timer = (tree / "systemd/orangescrum-recurring.timer").read_text()
    assert "\nOnUnitActiveSec=1h 30min\n" in timer
    copyright_text = next(f.src.data.decode() for f in spec.files if f.dst.endswith("/copyright"))
    assert "\nCopyright: 2023 Acme \"$X\" 100%\n" in copyright_text
    compose = yaml.safe_load((cfg.dist_dir / "docker/docker-compose.yaml").read_text())
    assert compose["services"]["app"]["ports"][0]["host_ip"] == "::1"
    assert compose["services"]["app"]["environment"]["WEBROOT"] == "web/root"
