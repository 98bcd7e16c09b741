"""apt and dnf repositories that work from any static host (an S3 bucket, a file:// path).

Layout (``release.repo_dir``, default ``dist/release/repo``)::

    apt/pool/main/o/orangescrum/orangescrum_4.1.0-1_amd64.deb   every version ever published
    apt/dists/stable/Release, InRelease, Release.gpg
    apt/dists/stable/main/binary-amd64/{Packages,Packages.gz,Release}
    rpm/orangescrum-4.1.0-1.x86_64.rpm                          every version ever published
    rpm/repodata/repomd.xml, repomd.xml.asc, *-primary.xml.gz, ...
    orangescrum-archive-keyring.gpg / .asc                      the public key (signed repos)
    orangescrum.sources, orangescrum.repo                       client snippets (with release.repo_url)

Publishing is "verify, add, then regenerate": the repository already there
must verify against its own (signed) index (``verify_repository``: a package no
release published is refused, since re-signing the indexes would vouch for it);
the packages of the new release join the verified older ones, and every index
is written afresh from them.  The apt indexes are generated here (a Packages
stanza is the package's control file plus its path, size and hashes); the dnf
metadata comes from ``createrepo_c``.  Both are deterministic: dates come from
SOURCE_DATE_EPOCH (never earlier than the repository's previous date, so apt
never sees a Release file go back in time), gzip has no timestamp, and
createrepo_c runs with a fixed revision.  Only the signatures differ between
two runs, because an OpenPGP signature carries its creation time.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from . import reproducible
from .errors import BuildError, UntrustedRepositoryError
from .fsutil import sha256_file, write_atomic
from .gpg import Gpg, run_tool

SUITE = "stable"
COMPONENT = "main"
ORIGIN = "OrangeScrum"
KEYRING = "orangescrum-archive-keyring"  # .gpg (binary, for apt's signed-by) and .asc (armored, for dnf)
REPO_ID = "orangescrum"
# Where the snippets tell clients to put the key.
KEYRING_INSTALL_PATH = f"/usr/share/keyrings/{KEYRING}.gpg"

_RPM_NS = {"repo": "http://linux.duke.edu/metadata/repo", "common": "http://linux.duke.edu/metadata/common"}


# --------------------------------------------------------------------------
# Reading packages
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DebInfo:
    path: Path
    package: str
    version: str  # full Debian version: [epoch:]upstream[-revision]
    arch: str
    source: str
    control: str  # the control file, as dpkg-deb prints it

    @property
    def upstream_version(self) -> str:
        return upstream_of(self.version)

    @property
    def pool_path(self) -> str:
        """``pool/main/o/orangescrum/orangescrum_4.1.0-1_amd64.deb`` (Debian's pool layout)."""
        src = self.source
        prefix = src[:4] if src.startswith("lib") and len(src) > 3 else src[:1]
        version = self.version.split(":", 1)[-1]
        return f"pool/{COMPONENT}/{prefix}/{src}/{self.package}_{version}_{self.arch}.deb"


@dataclass(frozen=True)
class RpmInfo:
    path: Path
    name: str
    version: str  # rpm Version (the upstream version)
    release: str
    arch: str

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


def upstream_of(deb_version: str) -> str:
    """``1:4.1.0-2`` -> ``4.1.0`` (no epoch, no Debian revision)."""
    version = deb_version.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def parse_control(text: str) -> dict[str, str]:
    """One deb822 stanza as a dict (continuation lines kept with their newline)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields


def parse_stanzas(text: str) -> list[dict[str, str]]:
    return [parse_control(s) for s in re.split(r"\n\s*\n", text.strip()) if s.strip()]


def read_deb(path: Path) -> DebInfo:
    done = run_tool(["dpkg-deb", "--field", str(path)], what=f"reading {path.name}")
    control = done.stdout.strip("\n")
    fields = parse_control(control)
    missing = [f for f in ("Package", "Version", "Architecture") if not fields.get(f)]
    if missing:
        raise BuildError(f"{path}: its control file lacks {', '.join(missing)}; rebuild the package")
    source = fields.get("Source", fields["Package"]).split()[0]
    return DebInfo(path, fields["Package"], fields["Version"], fields["Architecture"], source, control)


def read_rpm(path: Path) -> RpmInfo:
    done = run_tool(["rpm", "-qp", "--nosignature", "--nodigest", "--qf",
                     "%{NAME}\\n%{VERSION}\\n%{RELEASE}\\n%{ARCH}\\n", str(path)], what=f"reading {path.name}")
    lines = done.stdout.splitlines()
    if len(lines) < 4:
        raise BuildError(f"{path}: rpm could not read its header; rebuild the package")
    return RpmInfo(path, *lines[:4])


def rpm_is_signed(path: Path) -> bool:
    """Does the .rpm carry an OpenPGP signature (of any key, valid or not)?"""
    tags = "|".join(f"%{{{tag}:pgpsig}}" for tag in ("RSAHEADER", "DSAHEADER", "SIGPGP", "SIGGPG"))
    done = run_tool(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", tags, str(path)],
                    what=f"reading {path.name}", check=False)
    return done.returncode == 0 and any(v.strip() not in ("", "(none)") for v in done.stdout.split("|"))


# --------------------------------------------------------------------------
# apt indexes
# --------------------------------------------------------------------------


def _hashes(path: Path) -> tuple[str, str, str, int]:
    md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), size


def packages_stanza(deb: DebInfo, filename: str, hashes: tuple[str, str, str, int]) -> str:
    """The Packages entry of one .deb: its control file, then where it is and its hashes."""
    md5, sha1, sha256, size = hashes
    return (f"{deb.control}\nFilename: {filename}\nSize: {size}\nMD5sum: {md5}\nSHA1: {sha1}\n"
            f"SHA256: {sha256}\n")


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a timestamp or file name: the same input gives the same bytes."""
    return reproducible.gzip_bytes(data, level=9, os_code=reproducible.GZIP_OS_UNKNOWN)


def release_file(*, date: int, architectures: Sequence[str], files: Iterable[tuple[str, bytes]]) -> str:
    """The suite's Release file over the index ``files`` (path relative to dists/stable, content)."""
    rows = [(name, hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))
            for name, data in sorted(files)]
    out = [
        f"Origin: {ORIGIN}",
        f"Label: {ORIGIN}",
        f"Suite: {SUITE}",
        f"Codename: {SUITE}",
        f"Date: {formatdate(date, usegmt=True)}",
        f"Architectures: {' '.join(sorted(architectures))}",
        f"Components: {COMPONENT}",
        "Description: OrangeScrum packages",
        "MD5Sum:",
        *(f" {md5} {size:>16} {name}" for name, md5, _, size in rows),
        "SHA256:",
        *(f" {sha} {size:>16} {name}" for name, _, sha, size in rows),
    ]
    return "\n".join(out) + "\n"


def _release_date(release: Path) -> int | None:
    try:
        fields = parse_control(release.read_text(encoding="utf-8"))
        return int(parsedate_to_datetime(fields["Date"]).timestamp())
    except (OSError, KeyError, ValueError, TypeError):
        return None


def write_apt_indexes(apt: Path, *, epoch: int, previous_date: int | None, gpg: Gpg | None,
                      default_arch: str = "amd64") -> list[DebInfo]:
    """(Re)write ``apt/dists/stable`` from every .deb under ``apt/pool``."""
    debs = [read_deb(p) for p in sorted((apt / "pool").rglob("*.deb"))]
    arches = sorted({d.arch for d in debs} - {"all"}) or [default_arch]
    dists = apt / "dists" / SUITE
    if dists.exists():
        shutil.rmtree(dists)
    files: list[tuple[str, bytes]] = []
    for arch in arches:
        stanzas = [packages_stanza(d, d.path.relative_to(apt).as_posix(), _hashes(d.path))
                   for d in debs if d.arch in (arch, "all")]
        packages = "\n".join(stanzas).encode()
        component_release = (f"Archive: {SUITE}\nOrigin: {ORIGIN}\nLabel: {ORIGIN}\nArchitecture: {arch}\n"
                             f"Component: {COMPONENT}\n").encode()
        base = f"{COMPONENT}/binary-{arch}"
        files += [(f"{base}/Packages", packages), (f"{base}/Packages.gz", gzip_bytes(packages)),
                  (f"{base}/Release", component_release)]
    for name, data in files:
        write_atomic(dists / name, data)
    date = max(epoch, previous_date or 0)
    release = dists / "Release"
    write_atomic(release, release_file(date=date, architectures=arches, files=files).encode())
    if gpg is not None:
        gpg.clearsign(release, dists / "InRelease")
        gpg.detach_sign(release, dists / "Release.gpg")
    return debs


# --------------------------------------------------------------------------
# dnf metadata
# --------------------------------------------------------------------------


def _repomd_revision(rpm_dir: Path) -> int | None:
    try:
        root = ET.parse(rpm_dir / "repodata" / "repomd.xml").getroot()
        rev = root.find("repo:revision", _RPM_NS)
        return int(rev.text) if rev is not None and rev.text else None
    except (OSError, ET.ParseError, ValueError):
        return None


def write_dnf_metadata(rpm_dir: Path, *, revision: int, gpg: Gpg | None) -> list[RpmInfo]:
    """(Re)write ``rpm/repodata`` from every .rpm in ``rpm/`` with createrepo_c."""
    rpms = [read_rpm(p) for p in sorted(rpm_dir.glob("*.rpm"))]
    repodata = rpm_dir / "repodata"
    if repodata.exists():
        shutil.rmtree(repodata)
    run_tool(["createrepo_c", "--quiet", "--no-database", "--general-compress-type=gz",
              f"--revision={revision}", "--set-timestamp-to-revision", "--workers=2", str(rpm_dir)],
             what="createrepo_c", timeout=1800)
    if gpg is not None:
        gpg.detach_sign(repodata / "repomd.xml", repodata / "repomd.xml.asc")
    return rpms


# --------------------------------------------------------------------------
# Client snippets
# --------------------------------------------------------------------------


def apt_sources(url: str) -> str:
    """deb822 sources file for /etc/apt/sources.list.d/orangescrum.sources."""
    return (f"Types: deb\nURIs: {url}/apt\nSuites: {SUITE}\nComponents: {COMPONENT}\n"
            f"Signed-By: {KEYRING_INSTALL_PATH}\n")


def apt_list_line(url: str) -> str:
    """The same as a one-line sources.list entry."""
    return f"deb [signed-by={KEYRING_INSTALL_PATH}] {url}/apt {SUITE} {COMPONENT}\n"


def dnf_repo_file(url: str, *, signed: bool = True) -> str:
    """/etc/yum.repos.d/orangescrum.repo."""
    check = "1" if signed else "0"
    lines = [f"[{REPO_ID}]", "name=OrangeScrum", f"baseurl={url}/rpm", "enabled=1",
             f"gpgcheck={check}", f"repo_gpgcheck={check}"]
    if signed:
        lines.append(f"gpgkey={url}/{KEYRING}.asc")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    root: Path
    added: tuple[str, ...]  # files new in the repository
    unchanged: tuple[str, ...]  # already there with the same bytes
    debs: tuple[str, ...]  # every .deb now in the pool (paths in apt/)
    rpms: tuple[str, ...]  # every .rpm now in rpm/


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


@dataclass(frozen=True)
class Inventory:
    """The packages of an existing repository that its own (signed) index vouches for."""

    root: Path
    packages: tuple[str, ...]  # paths inside root: apt/pool/..., rpm/...
    signed: bool


def carry_over(old: Inventory, new: Path) -> None:
    """Put the verified packages of the repository ``old`` into ``new`` (hard links where possible).

    Only the packages the previous index vouched for travel (``verify_repository``
    made the list); every index is regenerated.  Other files an older run wrote
    (snippets, keys) are written afresh too.
    """
    for rel in old.packages:
        _link_or_copy(old.root / rel, new / rel)


def was_signed(repo: Path) -> bool:
    """Does anything in ``repo`` say it was published signed (a signature, or the published key)?"""
    return any(p.is_file() for p in (
        repo / "apt" / "dists" / SUITE / "InRelease", repo / "apt" / "dists" / SUITE / "Release.gpg",
        repo / "rpm" / "repodata" / "repomd.xml.asc", repo / f"{KEYRING}.gpg", repo / f"{KEYRING}.asc"))


def _has_apt(repo: Path) -> bool:
    apt = repo / "apt"
    return (apt / "dists").is_dir() or any((apt / "pool").rglob("*.deb"))


def _has_dnf(repo: Path) -> bool:
    rpm_dir = repo / "rpm"
    return (rpm_dir / "repodata").is_dir() or any(rpm_dir.rglob("*.rpm"))


_START_NEW = ("to start a new repository that holds only this release, deliberately, pass --new-repo "
              "(the packages it holds now are not kept)")


def verify_repository(root: Path, *, gpg: Gpg, want_fpr: str | None) -> Inventory:
    """Check the repository ``root`` against its own index before publishing into it.

    ``want_fpr`` is the key the release signs with (None: an unsigned release).
    A signed repository must carry good signatures by that key, and the chain
    InRelease/Release.gpg -> Release -> Packages -> pool file (apt) and
    repomd.xml.asc -> repomd.xml -> primary -> rpm (dnf) must hold; every package
    file must be listed by that index.  An unsigned repository can only be
    checked for consistency (its indexes' checksums): it takes unsigned releases
    only, since signing it would vouch for packages nothing vouched for before.
    Raises ``UntrustedRepositoryError`` naming every file that does not verify.
    """
    if not root.is_dir() or not (_has_apt(root) or _has_dnf(root)):
        return Inventory(root, (), signed=False)  # the first publication: nothing to verify
    signed = was_signed(root)
    if want_fpr is None and signed:
        raise BuildError(
            f"the repository {root} is signed, but this release is not: clients would reject it; "
            "pass --sign KEY (or set release.sign_key)"
        )
    if want_fpr is not None and not signed:
        raise UntrustedRepositoryError(
            f"the repository {root} holds packages but is not signed (no InRelease, Release.gpg or "
            "repomd.xml.asc): nothing vouches for what it holds, and signing its index now would. "
            f"Restore the signatures from the published copy if it was signed; {_START_NEW}."
        )
    apt = check_apt(root / "apt", gpg=gpg, signed=signed, want_fpr=want_fpr)
    dnf = check_dnf(root / "rpm", gpg=gpg, signed=signed, want_fpr=want_fpr)
    problems = apt.problems + dnf.problems
    if problems:
        anchor = ("its own signed index (publishing re-signs every index, so it vouches for what the pool holds)"
                  if signed else "its own index (unsigned: checksums only)")
        raise UntrustedRepositoryError(
            f"the repository {root} does not verify against {anchor} ({len(problems)} problems):\n  "
            + "\n  ".join(problems)
            + "\nRemove the files named (a package no index lists), or restore them from the published "
            f"repository, then release again; {_START_NEW}."
        )
    packages = [f"apt/{rel}" for rel in apt.packages] + [f"rpm/{rel}" for rel in dnf.packages]
    return Inventory(root, tuple(sorted(set(packages))), signed)


def publish(
    new: Path,
    *,
    old: Inventory | None,
    debs: Sequence[DebInfo],
    rpms: Sequence[RpmInfo],
    epoch: int,
    gpg: Gpg | None,
    repo_url: str | None,
    replace: bool = False,
    default_arch: str = "amd64",
) -> PublishResult:
    """Write into the empty directory ``new`` the verified packages of ``old`` plus ``debs`` and ``rpms``.

    ``old`` comes from ``verify_repository`` (or is an empty inventory of the old
    place, for --new-repo: its date is kept, its packages are not).
    """
    if old is not None and old.signed and gpg is None:
        raise BuildError(
            f"the repository {old.root} is signed, but this release is not: clients would reject it; "
            "pass --sign KEY (or set release.sign_key)"
        )
    new.mkdir(parents=True, exist_ok=True)
    os.chmod(new, 0o755)
    if old is not None:
        carry_over(old, new)
    apt, rpm_dir = new / "apt", new / "rpm"
    apt.mkdir(exist_ok=True)
    rpm_dir.mkdir(exist_ok=True)
    added: list[str] = []
    unchanged: list[str] = []
    wanted = [(d.path, apt / d.pool_path) for d in debs] + [(r.path, rpm_dir / r.file_name) for r in rpms]
    for src, dest in wanted:
        rel = dest.relative_to(new).as_posix()
        if dest.exists():
            if sha256_file(dest) == sha256_file(src):
                unchanged.append(rel)
                continue
            if not replace:
                raise BuildError(
                    f"the repository already has {rel} with other content; a published package must not "
                    "change (clients cache its checksum): bump the version, or pass --replace to overwrite it"
                )
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        os.chmod(dest, 0o644)
        os.utime(dest, (epoch, epoch))  # createrepo_c records the file time
        added.append(rel)

    previous_date = _release_date(old.root / "apt" / "dists" / SUITE / "Release") if old else None
    all_debs = write_apt_indexes(apt, epoch=epoch, previous_date=previous_date, gpg=gpg, default_arch=default_arch)
    previous_rev = _repomd_revision(old.root / "rpm") if old else None
    all_rpms = write_dnf_metadata(rpm_dir, revision=max(epoch, previous_rev or 0), gpg=gpg)

    if gpg is not None:
        gpg.export_public(new / f"{KEYRING}.gpg", armor=False)
        gpg.export_public(new / f"{KEYRING}.asc", armor=True)
    if repo_url:
        write_atomic(new / f"{REPO_ID}.sources", apt_sources(repo_url).encode())
        write_atomic(new / f"{REPO_ID}.list", apt_list_line(repo_url).encode())
        write_atomic(new / f"{REPO_ID}.repo", dnf_repo_file(repo_url, signed=gpg is not None).encode())
    # World-readable (apt downloads as the unprivileged _apt user).  Index files keep
    # the time they were written: `aws s3 sync` uploads by size and mtime, and a
    # changed Release file can have the same size as the old one.
    for p in new.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return PublishResult(new, tuple(added), tuple(unchanged),
                         tuple(d.path.relative_to(apt).as_posix() for d in all_debs),
                         tuple(r.path.name for r in all_rpms))


# --------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------


def _clearsigned_text(text: str) -> str | None:
    """The message inside a cleartext signature (dash-escaping undone)."""
    m = re.match(r"-----BEGIN PGP SIGNED MESSAGE-----\n(?:[^\n]+\n)*\n(.*?)\n-----BEGIN PGP SIGNATURE-----",
                 text, re.S)
    if not m:
        return None
    return "\n".join(line[2:] if line.startswith("- ") else line for line in m.group(1).split("\n"))


def _check_file(path: Path, size: int | None, sha256: str, what: str, problems: list[str]) -> None:
    if not path.is_file():
        problems.append(f"{what}: {path} is missing")
        return
    if size is not None and path.stat().st_size != size:
        problems.append(f"{what}: {path} has {path.stat().st_size} bytes, the index says {size}")
        return
    if sha256_file(path) != sha256:
        problems.append(f"{what}: {path} does not match its SHA256 in the index")


def check_signature(gpg: Gpg, sig: Path, data: Path | None, what: str, problems: list[str],
                    want_fpr: str | None) -> str | None:
    if not sig.is_file():
        problems.append(f"{what}: {sig} is missing")
        return None
    result = gpg.verify(sig, data)
    if not result.valid:
        problems.append(f"{what}: {sig}: {result.detail}")
        return None
    if want_fpr and result.fingerprint != want_fpr:
        problems.append(f"{what}: {sig} is signed by {result.fingerprint}, not by {want_fpr}")
    return result.fingerprint


@dataclass(frozen=True)
class IndexCheck:
    """What checking one side of a repository (apt or dnf) found."""

    problems: list[str]
    packages: tuple[str, ...]  # package files its index lists (paths inside apt/ or rpm/), sorted

    @property
    def count(self) -> int:
        return len(self.packages)


def _clean_relative(rel: str) -> bool:
    """A path an index may name: relative, inside the repository, no ``..``, no empty parts."""
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(part not in ("", ".", "..") for part in parts)


def _unlisted(base: Path, files: Iterable[Path], listed: set[str], what: str, index: str) -> list[str]:
    """A problem for each package file under ``base`` that its index does not list (or that is a link)."""
    problems = []
    for path in sorted(files):
        rel = path.relative_to(base).as_posix()
        if path.is_symlink():
            problems.append(f"{what}: {path} is a symbolic link; a published package is a regular file: remove it")
        elif rel not in listed:
            problems.append(f"{what}: {path} is not listed in {index} (no release published it): remove it")
    return problems


def check_apt(apt: Path, *, gpg: Gpg, signed: bool, want_fpr: str | None = None) -> IndexCheck:
    """Check an apt repository: Release hashes, Packages entries, pool files no index lists, signatures."""
    problems: list[str] = []
    dists = apt / "dists" / SUITE
    release = dists / "Release"
    if not release.is_file():
        return IndexCheck([f"apt: {release} is missing"], ())
    text = release.read_text(encoding="utf-8")
    fields = parse_control(text)
    listed: dict[str, tuple[int, str]] = {}
    for line in fields.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            listed[parts[2]] = (int(parts[1]), parts[0])
    if not listed:
        problems.append(f"apt: {release} lists no index files")
    for name, (size, sha) in sorted(listed.items()):
        _check_file(dists / name, size, sha, "apt Release", problems)
    packages: set[str] = set()
    for name in sorted(n for n in listed if n.endswith("/Packages")):
        path = dists / name
        if not path.is_file():
            continue
        for stanza in parse_stanzas(path.read_text(encoding="utf-8")):
            filename, sha = stanza.get("Filename"), stanza.get("SHA256")
            if not filename or not sha:
                problems.append(f"apt {name}: entry {stanza.get('Package', '?')} lacks Filename or SHA256")
                continue
            if not _clean_relative(filename) or not filename.startswith("pool/"):
                problems.append(f"apt {name}: entry {stanza.get('Package', '?')} names {filename!r}, not a file "
                                "in pool/")
                continue
            packages.add(filename)
            size = int(stanza["Size"]) if stanza.get("Size", "").isdigit() else None
            _check_file(apt / filename, size, sha, f"apt {name}", problems)
    problems += _unlisted(apt, (apt / "pool").rglob("*.deb"), packages, "apt", "any Packages index")
    if signed:
        check_signature(gpg, dists / "Release.gpg", release, "apt", problems, want_fpr)
        inrelease = dists / "InRelease"
        if check_signature(gpg, inrelease, None, "apt", problems, want_fpr):
            inner = _clearsigned_text(inrelease.read_text(encoding="utf-8"))
            if inner is None or inner.rstrip("\n") != text.rstrip("\n"):
                problems.append(f"apt: {inrelease} does not carry the same text as {release}")
    return IndexCheck(problems, tuple(sorted(packages)))


def check_dnf(rpm_dir: Path, *, gpg: Gpg, signed: bool, want_fpr: str | None = None) -> IndexCheck:
    """Check a dnf repository: repomd.xml checksums, primary's packages, rpm files it does not list, signature."""
    problems: list[str] = []
    repomd = rpm_dir / "repodata" / "repomd.xml"
    try:
        root = ET.parse(repomd).getroot()
    except (OSError, ET.ParseError) as exc:
        return IndexCheck([f"dnf: {repomd} cannot be read ({exc.__class__.__name__})"], ())
    primary_href = None
    for data in root.findall("repo:data", _RPM_NS):
        loc = data.find("repo:location", _RPM_NS)
        checksum = data.find("repo:checksum", _RPM_NS)
        size = data.find("repo:size", _RPM_NS)
        if loc is None or checksum is None:
            problems.append(f"dnf: {repomd}: a <data> entry lacks its location or checksum")
            continue
        href = loc.get("href", "")
        if checksum.get("type") != "sha256":
            problems.append(f"dnf: {href}: checksum type {checksum.get('type')} (expected sha256)")
            continue
        _check_file(rpm_dir / href, int(size.text) if size is not None and size.text else None,
                    (checksum.text or "").strip(), "dnf repomd.xml", problems)
        if data.get("type") == "primary":
            primary_href = href
    packages: set[str] = set()
    if primary_href is None:
        problems.append(f"dnf: {repomd} names no primary metadata")
    elif (rpm_dir / primary_href).is_file():
        try:
            primary = ET.fromstring(gzip.decompress((rpm_dir / primary_href).read_bytes()))
        except (OSError, EOFError, ET.ParseError) as exc:
            problems.append(f"dnf: {primary_href} cannot be read ({exc.__class__.__name__})")
            primary = None
        for pkg in primary.findall("common:package", _RPM_NS) if primary is not None else ():
            loc = pkg.find("common:location", _RPM_NS)
            checksum = pkg.find("common:checksum", _RPM_NS)
            size = pkg.find("common:size", _RPM_NS)
            if loc is None or checksum is None:
                problems.append(f"dnf {primary_href}: a package lacks its location or checksum")
                continue
            href = loc.get("href", "")
            if not _clean_relative(href) or href.startswith("repodata/") or checksum.get("type") != "sha256":
                problems.append(f"dnf {primary_href}: a package names {href!r} with a {checksum.get('type')} "
                                "checksum (expected a .rpm in the repository, sha256)")
                continue
            packages.add(href)
            _check_file(rpm_dir / href, int(size.get("package")) if size is not None else None,
                        (checksum.text or "").strip(), f"dnf {primary_href}", problems)
    rpms = (p for p in rpm_dir.rglob("*.rpm") if "repodata" not in p.relative_to(rpm_dir).parts)
    problems += _unlisted(rpm_dir, rpms, packages, "dnf", primary_href or "the primary metadata")
    if signed:
        check_signature(gpg, repomd.with_name("repomd.xml.asc"), repomd, "dnf", problems, want_fpr)
    return IndexCheck(problems, tuple(sorted(packages)))
