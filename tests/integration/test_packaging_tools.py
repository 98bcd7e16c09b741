"""Real packagers and linters: nfpm builds, dpkg-deb/rpm read back, lintian and rpmlint judge.

The binary is a small script here (the booted-system tests use the stand-in
FrankenPHP binary); everything else is the real dist/native of the example app.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.errors import BuildError
from cloudbuilder.packaging import build as pkgbuild
from cloudbuilder.packaging.build import build_packages
from cloudbuilder.packaging.nfpm import NfpmBackend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"
EPOCH = "1700000000"


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def need_fpm(*formats: str) -> None:
    """The real fpm (1.x, the packager) and what it needs for ``formats``: skip where it is not
    installed (it cannot be installed from a registry here), fail where CLOUDBUILDER_REQUIRE_FPM says it is."""
    from cloudbuilder.packaging.fpm import FpmBackend

    problems = sorted({why for fmt in formats if (why := FpmBackend().missing(fmt))})
    if problems:
        message = "; ".join(problems)
        if os.environ.get("CLOUDBUILDER_REQUIRE_FPM"):
            pytest.fail(message)
        pytest.skip(message)


def make_cfg(dist: Path, binary: Path, **values):
    """The config of a package test; the backend is pinned (nfpm unless given): ``auto``
    would pick by what is installed, and fpm when it is on PATH."""
    values.setdefault("package.backend", "nfpm")
    layer = Layer("flag", {"app": str(EXAMPLE_APP), "binary": str(binary), "dist_dir": str(dist),
                           "version": "4.1.0", "source_date_epoch": EPOCH, **values})
    return resolve([layer], cwd=dist.parent, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def package(cfg, formats=("deb", "rpm")):
    assemble_tree(cfg, "native", cfg.binary)
    return {r.fmt: r for r in build_packages(cfg, formats)}


def run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=600, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def fake_binary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bin") / "frankenphp"
    path.write_text("#!/bin/sh\n# stand-in for the FrankenPHP binary in packaging tests\necho \"FrankenPHP test $*\"\n")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, fake_binary):
    need("nfpm")
    dist = tmp_path_factory.mktemp("pkg") / "dist"
    cfg = make_cfg(dist, fake_binary)
    results = package(cfg)
    return cfg, {fmt: r.path for fmt, r in results.items()}


@pytest.fixture(scope="module")
def deb(built) -> Path:
    return built[1]["deb"]


@pytest.fixture(scope="module")
def rpm(built) -> Path:
    return built[1]["rpm"]


# --------------------------------------------------------------------------
# The .deb
# --------------------------------------------------------------------------


def test_deb_contents_modes_and_owners(deb):
    need("dpkg-deb")
    out = subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -tvf -", shell=True, capture_output=True,
                         text=True, check=True).stdout
    rows = {line.split()[-1]: (line.split()[0], line.split()[1]) for line in out.splitlines()}
    assert rows["./usr/bin/orangescrum"] == ("-rwxr-xr-x", "root/root")
    assert rows["./usr/libexec/orangescrum/validate-env"] == ("-rwxr-xr-x", "root/root")
    # the settings file is created by postinst (no conffile); its template is shipped
    assert "./etc/orangescrum/orangescrum.env" not in rows
    assert rows["./usr/share/orangescrum/orangescrum.env.example"] == ("-rw-r--r--", "root/root")
    # every path of a .deb is root's (DEB_OWNER); tmpfiles.d gives the service user its own
    assert rows["./etc/orangescrum/"] == ("drwxr-xr-x", "root/root")
    assert rows["./var/lib/orangescrum/"] == ("drwxr-x---", "root/root")
    assert rows["./var/cache/orangescrum/"] == ("drwxr-x---", "root/root")
    for unit in ("orangescrum.service", "orangescrum-queue.service", "orangescrum-recurring.service",
                 "orangescrum-recurring.timer"):
        assert rows[f"./usr/lib/systemd/system/{unit}"] == ("-rw-r--r--", "root/root")
    for path in ("./usr/lib/sysusers.d/orangescrum.conf", "./usr/lib/tmpfiles.d/orangescrum.conf",
                 "./usr/share/doc/orangescrum/copyright", "./usr/share/doc/orangescrum/changelog.Debian.gz",
                 "./usr/share/doc/orangescrum/README.md", "./usr/share/doc/orangescrum/docs/NATIVE_DEPLOYMENT.md",
                 "./usr/share/doc/orangescrum/examples/nginx-reverse-proxy.conf",
                 "./usr/share/man/man1/orangescrum.1.gz", "./usr/share/lintian/overrides/orangescrum"):
        assert path in rows, path
    # numeric ids are 0: dpkg maps the names, lintian checks the ids
    numeric = subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar --numeric-owner -tvf -", shell=True,
                             capture_output=True, text=True, check=True).stdout
    assert all(line.split()[1] == "0/0" for line in numeric.splitlines())


def test_deb_control(deb, tmp_path):
    need("dpkg-deb")
    info = run("dpkg-deb", "-f", str(deb)).stdout
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", info, re.M))
    assert fields["Package"] == "orangescrum" and fields["Version"] == "4.1.0-1"
    assert fields["Architecture"] == "amd64" and fields["Section"] == "web"
    assert fields["Depends"] == "systemd" and fields["Recommends"] == "ca-certificates"
    run("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    # no conffile: an unattended upgrade never stops at dpkg's conffile prompt
    assert not (tmp_path / "control" / "conffiles").exists()
    for script in ("preinst", "postinst", "prerm", "postrm"):
        path = tmp_path / "control" / script
        assert path.stat().st_mode & 0o111, script
        assert path.read_text().startswith("#!/bin/sh\n")
    assert "deb-systemd-invoke restart" in (tmp_path / "control" / "postinst").read_text()
    members = run("ar", "t", str(deb)).stdout.split()
    assert members == ["debian-binary", "control.tar.gz", "data.tar.zst"]


def assert_lintian_clean(deb: Path) -> str:
    """No error or warning; returns what lintian overrode (the overrides shipped in the package)."""
    need("lintian")
    done = run("lintian", "--tag-display-limit", "0", "--fail-on", "error,warning", str(deb), check=False)
    problems = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert problems == [] and done.returncode == 0, done.stdout + done.stderr
    return run("lintian", "--show-overrides", "--tag-display-limit", "0", str(deb), check=False).stdout


def test_lintian_clean(deb):
    # what was overridden is shipped, each with its reason
    assert "O: orangescrum: malformed-deb-archive" in assert_lintian_clean(deb)


# --------------------------------------------------------------------------
# The .rpm
# --------------------------------------------------------------------------


def rpm_query(rpm: Path, fmt: str) -> str:
    return run("rpm", "-qp", "--nosignature", "--qf", fmt, str(rpm)).stdout


def test_rpm_header_and_files(rpm):
    need("rpm")
    assert rpm_query(rpm, "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE} %{GROUP}") == \
        "orangescrum 4.1.0 1 x86_64 MIT Applications/Internet"
    assert rpm_query(rpm, "%{BUILDHOST} %{BUILDTIME} %{PAYLOADCOMPRESSOR}") == f"reproducible {EPOCH} zstd"
    rows = rpm_query(rpm, "[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEFLAGS:fflags}\n]")
    files = {r.split("\t")[0]: r.split("\t")[1:] for r in rows.splitlines()}
    assert files["/etc/orangescrum/orangescrum.env"] == ["-rw-r-----", "root", "orangescrum", "g"]  # %ghost
    assert files["/usr/share/orangescrum/orangescrum.env.example"] == ["-rw-r--r--", "root", "root", ""]
    assert files["/var/lib/orangescrum"] == ["drwxr-x---", "orangescrum", "orangescrum", ""]
    assert files["/usr/bin/orangescrum"][:3] == ["-rwxr-xr-x", "root", "root"]
    assert files["/usr/share/man/man1/orangescrum.1.gz"][3] == "d"  # %doc
    assert "/usr/share/doc/orangescrum/changelog.Debian.gz" not in files
    changelog = run("rpm", "-qp", "--changelog", str(rpm)).stdout
    assert changelog.startswith("* Tue Nov 14 2023 OrangeScrum Packaging <packaging@orangescrum.com> - 4.1.0-1\n")
    requires = run("rpm", "-qp", "--requires", str(rpm)).stdout.split("\n")
    assert "systemd" in requires
    assert run("rpm", "-qp", "--recommends", str(rpm)).stdout.split() == ["ca-certificates"]


def test_rpm_scripts_handle_both_protocols(rpm):
    need("rpm")
    scripts = run("rpm", "-qp", "--scripts", str(rpm)).stdout
    for header in ("preinstall scriptlet (using /bin/sh)", "postinstall scriptlet (using /bin/sh)",
                   "preuninstall scriptlet (using /bin/sh)", "postuninstall scriptlet (using /bin/sh)"):
        assert header in scripts
    # the counts rpm passes and the words dpkg passes, in the same function
    for pattern in ("pre:install | pre:1)", "post:1)", "post:configure)", "preun:remove | preun:deconfigure | preun:0)",
                    "postun:upgrade | postun:[1-9]*)", "pkg_post \"$@\""):
        assert pattern in scripts, pattern
    code = "\n".join(line for line in scripts.splitlines() if not line.lstrip().startswith("#"))
    assert "deb-systemd" not in code and "systemctl restart" in code


def test_rpmlint_clean(rpm, tmp_path):
    assert_rpmlint_clean(rpm, tmp_path)


def assert_rpmlint_clean(rpm: Path, tmp_path: Path) -> None:
    need("rpmlint", "rpm2cpio", "cpio")
    subprocess.run(f"rpm2cpio '{rpm}' | cpio -idm --quiet ./usr/share/doc/orangescrum/orangescrum.rpmlintrc",
                   shell=True, cwd=tmp_path, check=True)
    rc = tmp_path / "usr/share/doc/orangescrum/orangescrum.rpmlintrc"
    for line in rc.read_text().splitlines():
        if line.startswith("addFilter"):
            previous = rc.read_text().splitlines()[rc.read_text().splitlines().index(line) - 1]
            assert previous.startswith(("#", "addFilter")), line  # each group has its reason
    done = run("rpmlint", "--ignore-unused-rpmlintrc", "-r", str(rc), str(rpm), check=False)
    assert "0 errors, 0 warnings" in done.stdout, done.stdout + done.stderr


# --------------------------------------------------------------------------
# The build: reproducible, incremental, parallel, atomic
# --------------------------------------------------------------------------


def test_rebuilds_are_byte_identical(fake_binary, tmp_path):
    """Same inputs, another directory, a later time, another umask: the same bytes.

    The second build packages a copy of the first dist/native (fresh mtimes and
    inodes), so that edits to common/ made meanwhile cannot change the inputs.
    """
    need("nfpm")
    first = package(make_cfg(tmp_path / "a" / "dist", fake_binary))
    cfg_b = make_cfg(tmp_path / "b" / "dist", fake_binary)
    old = os.umask(0o077)
    try:
        shutil.copytree(tmp_path / "a" / "dist" / "native", cfg_b.dist_dir / "native", copy_function=shutil.copyfile)
        time.sleep(1.1)
        second = {r.fmt: r for r in build_packages(cfg_b)}
    finally:
        os.umask(old)
    for fmt, result in first.items():
        assert second[fmt].path.read_bytes() == result.path.read_bytes(), fmt
        assert second[fmt].path.stat().st_mode & 0o777 == 0o644


def test_source_date_epoch_defaults_to_the_app_commit(tmp_path, fake_binary):
    cfg = resolve([Layer("flag", {"app": str(EXAMPLE_APP), "binary": str(fake_binary),
                                  "dist_dir": str(tmp_path / "dist"), "version": "4.1.0"})],
                  cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", 1234567890))
    assert cfg.source_date_epoch == 1234567890
    assert cfg.source_of("source_date_epoch") == "the app's last git commit"


def test_no_change_rerun_builds_nothing_and_a_change_rebuilds(tmp_path, fake_binary, monkeypatch):
    need("nfpm")
    cfg = make_cfg(tmp_path / "dist", fake_binary)
    first = package(cfg)
    inodes = {fmt: r.path.stat().st_ino for fmt, r in first.items()}
    calls = []
    monkeypatch.setattr(pkgbuild, "run_invocation", lambda *a, **k: calls.append(a))
    again = package(cfg)
    assert all(r.up_to_date for r in again.values()) and calls == []
    assert {fmt: r.path.stat().st_ino for fmt, r in again.items()} == inodes
    monkeypatch.undo()
    bumped = package(make_cfg(tmp_path / "dist", fake_binary, **{"package.release": "2"}))
    assert not any(r.up_to_date for r in bumped.values())
    assert sorted(p.name for p in (tmp_path / "dist" / "packages").iterdir()) == [
        "orangescrum-4.1.0-2.x86_64.rpm", "orangescrum_4.1.0-2_amd64.deb"]  # the old files are replaced


def test_deleted_output_is_rebuilt(tmp_path, fake_binary):
    need("nfpm")
    cfg = make_cfg(tmp_path / "dist", fake_binary)
    package(cfg, ("deb",))
    result = package(cfg, ("deb",))["deb"]
    result.path.unlink()
    assert not package(cfg, ("deb",))["deb"].up_to_date


def test_deb_and_rpm_are_built_in_parallel(tmp_path, fake_binary, monkeypatch):
    need("nfpm")
    barrier = threading.Barrier(2, timeout=20)
    real = pkgbuild.run_invocation

    def meet_then_run(*args, **kwargs):
        barrier.wait()  # both builds must be running at once to get past this
        return real(*args, **kwargs)

    monkeypatch.setattr(pkgbuild, "run_invocation", meet_then_run)
    results = package(make_cfg(tmp_path / "dist", fake_binary))
    assert set(results) == {"deb", "rpm"}


def test_failed_packager_leaves_no_partial_output(tmp_path, fake_binary, monkeypatch):
    need("nfpm")
    cfg = make_cfg(tmp_path / "dist", fake_binary)
    assemble_tree(cfg, "native", fake_binary)
    monkeypatch.setattr(NfpmBackend, "program", "false")  # a packager that fails

    with pytest.raises(BuildError, match=r"package.deb \(nfpm\): false failed"):
        build_packages(cfg, ("deb",))
    out = tmp_path / "dist" / "packages"
    assert not out.exists() or list(out.iterdir()) == []


def test_task_cli_help_and_up_to_date(tmp_path, fake_binary):
    """`invoke package.*` through invoke's CLI, as a user runs it."""
    need("nfpm")
    env = {**os.environ, "OSCB_DIST_DIR": str(tmp_path / "dist"), "SOURCE_DATE_EPOCH": EPOCH}
    cli = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]
    for name in ("deb", "rpm", "all"):
        help_text = run(*cli, f"package.{name}", "--help", env=env, cwd=ROOT).stdout
        for flag in ("--app", "--binary", "--version", "--backend"):
            assert flag in help_text, (name, flag)
    args = ["package.all", "--app", str(EXAMPLE_APP), "--binary", str(fake_binary), "--backend", "nfpm"]
    first = run(*cli, *args, env=env, cwd=ROOT)
    assert "written by nfpm" in first.stderr
    second = run(*cli, *args, env=env, cwd=ROOT)
    assert second.stderr.count("is up to date") == 3, second.stderr  # dist/native and both packages
    bad = run(*cli, "package.rpm", "--app", str(EXAMPLE_APP), "--binary", str(fake_binary), "--backend", "fpm",
              env=env, cwd=ROOT, check=False)
    assert bad.returncode == 2 and "fpm cannot write a zstd-compressed .rpm" in bad.stderr


# --------------------------------------------------------------------------
# Scripts and the fpm backend
# --------------------------------------------------------------------------


def test_rendered_scripts_are_shellcheck_clean(built, tmp_path):
    from cloudbuilder.packaging.spec import FORMATS, build_spec, read_app_license

    need("shellcheck")
    cfg = built[0]
    spec = build_spec(cfg, cfg.dist_dir / "native", read_app_license(cfg))
    paths = []
    for fmt in FORMATS:
        for name, gen in spec.scripts[fmt].items():
            path = tmp_path / gen.name
            path.write_bytes(gen.data)
            paths.append(str(path))
    done = run("shellcheck", "-s", "sh", "-f", "gcc", *paths, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_man_page_renders(built, tmp_path):
    need("man")
    cfg = built[0]
    from cloudbuilder.packaging.spec import build_spec, read_app_license

    spec = build_spec(cfg, cfg.dist_dir / "native", read_app_license(cfg))
    page = next(f.src.data for f in spec.files if f.dst.endswith(".1.gz"))
    path = tmp_path / "orangescrum.1"
    path.write_bytes(gzip.decompress(page))
    done = run("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path), check=False,
               env={**os.environ, "MANROFFSEQ": "", "MANWIDTH": "80"})
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


# --------------------------------------------------------------------------
# The real fpm: lint-clean, reproducible, and equivalent to nfpm's packages
# --------------------------------------------------------------------------

# What fpm's packages may show that nfpm's do not, each forced by fpm or rpmbuild
# (packaging/README.md, "fpm and nfpm"):
FPM_ONLY_DEB_PATHS = {"./", "./usr/share/doc/orangescrum/changelog.gz"}  # its tar root; the link that stops a rename
GZIP_REWRITTEN = {"./usr/share/doc/orangescrum/changelog.Debian.gz"}  # fpm gzips it itself: same text
RPM_BUILD_FACTS = {"SIZE", "RPMVERSION", "OPTFLAGS", "PLATFORM",  # rpmbuild's, not the package's
                   "PAYLOADFLAGS"}  # the xz level: fpm 3, multi-threaded ("3T"); nfpm's Go xz says "6"


def deb_facts(deb: Path, tmp_path: Path) -> dict:
    """What a .deb installs and declares, as data: paths, control fields, conffiles, scripts."""
    import io
    import tarfile

    from cloudbuilder.repo import parse_control

    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    paths = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            name = "./" + m.name.removeprefix("./").removeprefix(".").rstrip("/")
            name += "/" if m.isdir() and name != "./" else ""
            body = tar.extractfile(m).read() if m.isfile() else b""
            if name in GZIP_REWRITTEN:
                body = gzip.decompress(body)
            # dpkg takes the owner by name when the tar has one, else by id
            owner = (m.uname or {0: "root"}.get(m.uid, str(m.uid)), m.gname or {0: "root"}.get(m.gid, str(m.gid)))
            paths[name] = {"type": m.type, "mode": oct(m.mode), "ids": (m.uid, m.gid), "owner": owner,
                           "mtime": m.mtime, "link": m.linkname, "sha": hashlib.sha256(body).hexdigest()}
    control = tmp_path / f"control-{deb.stat().st_ino}"
    run("dpkg-deb", "-e", str(deb), str(control))
    scripts = {n: (control / n).read_text().rstrip("\n") for n in ("preinst", "postinst", "prerm", "postrm")}
    md5sums = dict(reversed(line.split(None, 1)) for line in (control / "md5sums").read_text().splitlines())
    return {
        "paths": paths,
        "fields": parse_control(run("dpkg-deb", "-f", str(deb)).stdout),
        "conffiles": (control / "conffiles").read_text().split() if (control / "conffiles").exists() else [],
        "scripts": scripts,
        "script_modes": {n: oct((control / n).stat().st_mode & 0o7777) for n in scripts},
        "md5sums": md5sums,
    }


RPM_TAGS = ("NAME", "VERSION", "RELEASE", "EPOCH", "ARCH", "OS", "LICENSE", "GROUP", "URL", "VENDOR", "PACKAGER",
            "SUMMARY", "DESCRIPTION", "BUILDHOST", "BUILDTIME", "PREFIXES", "PAYLOADCOMPRESSOR", "PAYLOADFLAGS",
            "FILEDIGESTALGO", "SIZE", "RPMVERSION", "OPTFLAGS", "PLATFORM")


def rpm_facts(rpm: Path) -> dict:
    """What an .rpm installs and declares, as data."""
    sep = "\x1f"
    header = dict(zip(RPM_TAGS, rpm_query(rpm, sep.join(f"%{{{t}}}" for t in RPM_TAGS)).split(sep)))
    files = {}
    rows = rpm_query(rpm, "[%{FILENAMES}\x1f%{FILEMODES:octal}\x1f%{FILEUSERNAME}\x1f%{FILEGROUPNAME}\x1f"
                          "%{FILEFLAGS:fflags}\x1f%{FILEDIGESTS}\x1f%{FILEMTIMES}\x1f%{FILELINKTOS}\x1e]")
    for row in filter(None, rows.split("\x1e")):
        name, *rest = row.split(sep)
        files[name] = rest
    deps = {kind: sorted(rpm_query(rpm, f"[%{{{kind}NAME}} %{{{kind}FLAGS:deptype}} %{{{kind}VERSION}}\n]")
                         .splitlines())
            for kind in ("REQUIRE", "PROVIDE", "RECOMMEND", "CONFLICT", "OBSOLETE")}
    # rpmbuild adds the scriptlets' interpreter (Requires(pre,post,...): /bin/sh); nfpm does not
    deps["REQUIRE"] = [d for d in deps["REQUIRE"] if ",interp" not in d]
    scripts = {t: rpm_query(rpm, f"%{{{t}PROG}}\n%{{{t}}}").rstrip("\n")
               for t in ("PREIN", "POSTIN", "PREUN", "POSTUN")}
    changelog = rpm_query(rpm, "[%{CHANGELOGTIME} %{CHANGELOGNAME}\n%{CHANGELOGTEXT}\n]")
    return {"header": header, "files": files, "deps": deps, "scripts": scripts, "changelog": changelog}


def fpm_cfg(dist: Path, binary: Path, backend: str = "fpm"):
    return make_cfg(dist, binary, **{"package.backend": backend, "package.rpm_compression": "xz"})


@pytest.fixture(scope="module")
def fpm_built(tmp_path_factory, fake_binary):
    """Both formats by the real fpm (deb: zstd, rpm: xz), and by nfpm from the same tree."""
    need_fpm("deb", "rpm")
    need("nfpm", "dpkg-deb", "rpm")
    base = tmp_path_factory.mktemp("fpm")
    old = os.umask(0o022)
    try:
        fpm = package(fpm_cfg(base / "fpm" / "dist", fake_binary))
    finally:
        os.umask(old)
    nfpm_cfg = fpm_cfg(base / "nfpm" / "dist", fake_binary, "nfpm")
    shutil.copytree(base / "fpm" / "dist" / "native", nfpm_cfg.dist_dir / "native", copy_function=shutil.copyfile)
    nfpm = {r.fmt: r for r in build_packages(nfpm_cfg)}
    assert {r.backend for r in fpm.values()} == {"fpm"} and {r.backend for r in nfpm.values()} == {"nfpm"}
    return {fmt: r.path for fmt, r in fpm.items()}, {fmt: r.path for fmt, r in nfpm.items()}


def test_fpm_packages_are_lint_clean(fpm_built, tmp_path):
    fpm, _ = fpm_built
    shown = assert_lintian_clean(fpm["deb"])
    assert "O: orangescrum: malformed-deb-archive second (official) member control.tar.zst" in shown
    assert "O: orangescrum: duplicate-changelog-files" not in shown
    assert_rpmlint_clean(fpm["rpm"], tmp_path)
    assert run("ar", "t", str(fpm["deb"])).stdout.split() == ["debian-binary", "control.tar.zst", "data.tar.zst"]


def test_fpm_deb_is_equivalent_to_nfpms(fpm_built, tmp_path):
    fpm, nfpm = (deb_facts(b["deb"], tmp_path) for b in fpm_built)
    assert set(fpm["paths"]) - set(nfpm["paths"]) == FPM_ONLY_DEB_PATHS
    assert set(nfpm["paths"]) - set(fpm["paths"]) == set()
    assert fpm["paths"]["./"]["mode"] == "0o755"
    assert fpm["paths"]["./usr/share/doc/orangescrum/changelog.gz"]["link"] == "changelog.Debian.gz"
    for path, facts in nfpm["paths"].items():
        assert fpm["paths"][path] == facts, path  # type, mode, owner, mtime, content
    assert {(f["ids"], f["owner"]) for f in fpm["paths"].values()} == {((0, 0), ("root", "root"))}
    for key in ("fields", "conffiles", "scripts", "script_modes"):
        assert fpm[key] == nfpm[key], key
    assert fpm["conffiles"] == []  # the settings file is created by postinst: no conffile prompt
    assert "./etc/orangescrum/orangescrum.env" not in fpm["paths"]
    assert "License" not in fpm["fields"] and "Vendor" not in fpm["fields"]
    rewritten = {p[2:] for p in GZIP_REWRITTEN}
    assert {k: v for k, v in fpm["md5sums"].items() if k not in rewritten} == \
        {k: v for k, v in nfpm["md5sums"].items() if k not in rewritten}


def test_fpm_rpm_is_equivalent_to_nfpms(fpm_built):
    fpm, nfpm = (rpm_facts(b["rpm"]) for b in fpm_built)
    for tag in RPM_TAGS:
        if tag not in RPM_BUILD_FACTS:
            assert fpm["header"][tag] == nfpm["header"][tag], tag
    assert fpm["header"]["PREFIXES"] == "(none)"  # not relocatable
    assert "\n\nThe settings live in" in fpm["header"]["DESCRIPTION"]  # paragraphs, not " ."
    assert fpm["header"]["PAYLOADCOMPRESSOR"] == "xz" and fpm["header"]["PAYLOADFLAGS"] == "3T"
    assert fpm["files"] == nfpm["files"]  # modes, owners, %config/%doc/%ghost flags, digests, mtimes
    # the settings file: owned as a %ghost (fpm's FPM_EDITOR sed adds it), not shipped; its template is
    assert fpm["files"]["/etc/orangescrum/orangescrum.env"][:4] == ["100640", "root", "orangescrum", "g"]
    assert fpm["files"]["/usr/share/orangescrum/orangescrum.env.example"][:4] == ["100644", "root", "root", ""]
    for key in ("deps", "scripts", "changelog"):
        assert fpm[key] == nfpm[key], key


def test_fpm_rebuilds_are_byte_identical_under_any_umask(fpm_built, fake_binary, tmp_path, caplog):
    """Another directory, a later time, umask 077: the same bytes as the first build (umask 022)."""
    first, _ = fpm_built
    cfg = fpm_cfg(tmp_path / "dist", fake_binary)
    old = os.umask(0o077)
    try:
        time.sleep(1.1)
        with caplog.at_level("DEBUG", logger="cloudbuilder"):
            again = package(cfg)
    finally:
        os.umask(old)
    for fmt, path in first.items():
        assert again[fmt].path.read_bytes() == path.read_bytes(), fmt
    assert "package.rpm (fpm): fpm said:" in caplog.text  # rpmbuild's output is logged
    assert "File listed twice" not in caplog.text  # --directories only on the outermost directories
