"""`invoke release`: tarballs, packages, checksums, signatures, notes and repositories.

Plan, then act.  ``plan_release`` reads the inputs and fails before any work
when one is missing or stale:

* ``dist/docker`` and ``dist/native``, exactly the files assembly wrote (the
  stamp ``dist/.state/<flavor>.json`` lists them): an operator's ``.env`` or
  ``docker-compose.override.yaml`` inside a tree, or anything else put there by
  hand, is never released; a tree that was edited after assembly, or assembled
  from other sources or settings (another version), is refused;
* the ``.deb`` and ``.rpm`` of this version in ``dist/packages``.

``make_release`` then writes ``dist/release/`` in a temporary directory and
swaps it into place (an interrupted release leaves the old one intact)::

    orangescrum-docker-<version>.tar.gz   orangescrum-native-<version>.tar.gz
    orangescrum_<version>-1_amd64.deb     orangescrum-<version>-1.x86_64.rpm
    RELEASE_NOTES.md   SHA256SUMS   SHA256SUMS.asc (signed releases)
    repo/              (--repo, with the default release.repo_dir)

Everything but the signatures is deterministic: tar entries are sorted, owned
by 0:0, dated SOURCE_DATE_EPOCH; gzip carries no timestamp or file name; the
repository metadata is dated from SOURCE_DATE_EPOCH too.  Two unsigned runs from
the same inputs give the same bytes.  Signatures are not made reproducible
(an OpenPGP signature records when it was made, and faking gpg's clock fails
for keys younger than SOURCE_DATE_EPOCH).

``check_release`` verifies an existing ``dist/release/`` (checksums, signatures,
repository metadata) and reports every mismatch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import repo as repo_mod
from .assemble import BINARY_PATH, FLAVORS, OPERATOR_FILES, Flavor, tree_fingerprint
from .config import BuildConfig
from .errors import BuildError, ConfigError, PrerequisiteError, VerificationError
from .fsutil import HashCache, fresh_temp_dir, sha256_file, swap_into_place, write_atomic
from .gpg import Gpg, run_tool
from .log import logger, step
from .reproducible import PAX_FORMAT, TarEntry, parent_dirs, write_tar_gz
from .repo import DebInfo, RpmInfo

SUMS = "SHA256SUMS"
SUMS_SIG = "SHA256SUMS.asc"
NOTES = "RELEASE_NOTES.md"
PRODUCT = "orangescrum"
# gzip -6: on a 100 MB FrankenPHP binary, -9 takes three times as long for under 1% smaller output.
TAR_GZIP_LEVEL = 6


def release_dir(cfg: BuildConfig) -> Path:
    return cfg.dist_dir / "release"


def packages_dir(cfg: BuildConfig) -> Path:
    return cfg.dist_dir / "packages"


def tarball_name(flavor: Flavor, version: str) -> str:
    return f"{PRODUCT}-{flavor}-{version}.tar.gz"


# --------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReleaseOptions:
    sign_key: str | None = None
    gnupghome: Path | None = None
    passphrase: str | None = field(default=None, repr=False)
    repo: bool = False
    replace: bool = False
    new_repo: bool = False  # start the repository afresh: keep none of the packages it holds

    @classmethod
    def from_config(cls, cfg: BuildConfig, *, passphrase: str | None = None, repo: bool = False,
                    replace: bool = False, new_repo: bool = False) -> "ReleaseOptions":
        return cls(sign_key=cfg.release.sign_key, gnupghome=cfg.release.gnupghome, passphrase=passphrase,
                   repo=repo, replace=replace, new_repo=new_repo)

    def gpg(self) -> Gpg:
        return Gpg(homedir=self.gnupghome, key=self.sign_key, passphrase=self.passphrase)


@dataclass(frozen=True)
class TreeInput:
    flavor: Flavor
    root: Path
    files: tuple[str, ...]  # what assembly wrote, POSIX paths inside the tree, sorted
    not_released: tuple[str, ...]  # other files found in the tree


@dataclass(frozen=True)
class ReleasePlan:
    version: str
    epoch: int
    dest: Path
    trees: tuple[TreeInput, ...]
    debs: tuple[DebInfo, ...]
    rpms: tuple[RpmInfo, ...]
    changelog: Path | None
    repo_dir: Path | None  # set with --repo
    repo_url: str | None
    default_arch: str


def _tree_files(tree: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        out += [Path(root, name).relative_to(tree).as_posix() for name in sorted(files)]
    return sorted(out)


def tree_input(cfg: BuildConfig, flavor: Flavor) -> TreeInput:
    """The files of ``dist/<flavor>`` that assembly wrote, checked against its stamp and the sources."""
    tree = cfg.dist_dir / flavor
    stamp_path = cfg.dist_dir / ".state" / f"{flavor}.json"
    rebuild = f"run `invoke dist.{flavor}` (or `invoke build`) with the settings of this release, then release again"
    try:
        stamp = json.loads(stamp_path.read_text())
        listing = stamp["listing"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PrerequisiteError(f"{tree} has not been assembled (no stamp {stamp_path}); {rebuild}") from None
    if not tree.is_dir():
        raise PrerequisiteError(f"{tree} does not exist; {rebuild}")
    files: list[str] = []
    for rel, size, mtime_ns, mode in listing:
        path = tree / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise PrerequisiteError(f"{path} is missing (assembly wrote it); {rebuild}") from None
        if not stat.S_ISREG(st.st_mode) or [st.st_size, st.st_mtime_ns, st.st_mode] != [size, mtime_ns, mode]:
            raise PrerequisiteError(f"{path} was changed after assembly; {rebuild}")
        files.append(rel)
    # Same sources, same settings (version included) and the same binary as at assembly?
    binary = tree / BINARY_PATH[flavor]
    if BINARY_PATH[flavor] not in files:
        raise PrerequisiteError(f"{binary} is not part of the assembled tree; {rebuild}")
    hashes = HashCache(cfg.dist_dir / ".state" / "hashes.json")
    _plan, current = tree_fingerprint(cfg, flavor, binary, hashes)
    hashes.save()
    if stamp.get("inputs") != current:
        raise PrerequisiteError(
            f"{tree} was assembled from other sources or settings than this release "
            f"(version {cfg.version} from {cfg.source_of('version')}); {rebuild}"
        )
    released = set(files)
    others = tuple(rel for rel in _tree_files(tree) if rel not in released)
    return TreeInput(flavor, tree, tuple(sorted(files)), others)


def _packages_of_version(cfg: BuildConfig) -> tuple[list[DebInfo], list[RpmInfo]]:
    where = packages_dir(cfg)
    hint = "run `invoke package.all` first (with the same --version)"
    debs = [repo_mod.read_deb(p) for p in sorted(where.glob("*.deb"))] if where.is_dir() else []
    rpms = [repo_mod.read_rpm(p) for p in sorted(where.glob("*.rpm"))] if where.is_dir() else []
    mine_debs = [d for d in debs if d.upstream_version == cfg.version]
    mine_rpms = [r for r in rpms if r.version == cfg.version]
    for kind, found, mine in (("deb", debs, mine_debs), ("rpm", rpms, mine_rpms)):
        if not mine:
            others = f" (it has: {', '.join(p.path.name for p in found)})" if found else ""
            raise PrerequisiteError(f"no .{kind} of version {cfg.version} in {where}{others}; {hint}")
    return mine_debs, mine_rpms


def _check_repo_dir(cfg: BuildConfig) -> None:
    dest, repo_dir = release_dir(cfg).resolve(), cfg.release.repo_dir.resolve()
    if repo_dir == dest or dest.is_relative_to(repo_dir):
        raise ConfigError(
            f"release.repo_dir={repo_dir} (from {cfg.source_of('release.repo_dir')}) contains the release "
            f"directory {dest}; use a directory inside it (the default, {dest / 'repo'}) or outside dist/"
        )


def plan_release(cfg: BuildConfig, opts: ReleaseOptions) -> ReleasePlan:
    """Every input of the release, checked; no writes (but the hash cache)."""
    _check_repo_dir(cfg)
    changelog = cfg.release.changelog
    if changelog is not None and not changelog.is_file():
        raise ConfigError(
            f"release.changelog={changelog} (from {cfg.source_of('release.changelog')}): no such file; "
            "point it at the Markdown changelog, or unset it to use the app's CHANGELOG.md"
        )
    if changelog is None and (cfg.app / "CHANGELOG.md").is_file():
        changelog = cfg.app / "CHANGELOG.md"
    trees = tuple(tree_input(cfg, flavor) for flavor in FLAVORS)
    debs, rpms = _packages_of_version(cfg)
    return ReleasePlan(
        version=cfg.version,
        epoch=cfg.source_date_epoch,
        dest=release_dir(cfg),
        trees=trees,
        debs=tuple(debs),
        rpms=tuple(rpms),
        changelog=changelog,
        repo_dir=cfg.release.repo_dir if opts.repo else None,
        repo_url=cfg.release.repo_url,
        default_arch={"linux/amd64": "amd64", "linux/arm64": "arm64"}[cfg.builder.platform],
    )


# --------------------------------------------------------------------------
# Pure pieces: tarball entries, checksums, notes
# --------------------------------------------------------------------------


def write_tarball(root: Path, files: Sequence[str], dest: Path, *, prefix: str, epoch: int) -> None:
    """A deterministic .tar.gz of ``files`` (inside ``root``) under the top-level directory ``prefix``.

    Entries are sorted, directories included; owner root:root (0:0); mtime
    ``epoch``; modes 0755 for directories and executables, else 0644; gzip
    without timestamp or file name.
    """
    dirs = {prefix} | {f"{prefix}/{d}" for d in parent_dirs(files)}
    rows = sorted([(d, None) for d in dirs] + [(f"{prefix}/{rel}", root / rel) for rel in files])

    def entries() -> Iterator[TarEntry]:
        for name, source in rows:
            if source is None:
                yield TarEntry.dir(name + "/")
                continue
            st = source.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise BuildError(f"{source} is not a regular file; the trees hold regular files only")
            yield TarEntry.from_path(name, source, 0o755 if st.st_mode & 0o111 else 0o644, size=st.st_size)

    write_tar_gz(dest, entries(), format=PAX_FORMAT, mtime=epoch, owner="root", level=TAR_GZIP_LEVEL)


def format_sums(digests: dict[str, str]) -> str:
    """``sha256sum -c``-compatible lines, sorted by file name."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))


def parse_sums(text: str) -> tuple[dict[str, str], list[str]]:
    """(name -> digest, lines that are not ``<64 hex>  <name>``)."""
    sums: dict[str, str] = {}
    bad: list[str] = []
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](\S.*)", line)
        if m and "/" not in m.group(2):
            sums[m.group(2)] = m.group(1)
        elif line.strip():
            bad.append(line)
    return sums, bad


_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def changelog_section(text: str, version: str) -> str | None:
    """The body of the changelog section for ``version``, or None.

    Accepts the usual heading styles: ``## 4.1.0``, ``## [4.1.0] - 2026-01-02``,
    ``## v4.1.0 (2026-01-02)``.  The section ends at the next heading of the same
    or a higher level.
    """
    lines = text.splitlines()
    pattern = re.compile(r"^\[?v?" + re.escape(version) + r"\]?(?=$|[\s(:—–-])")
    start = level = None
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if not m:
            continue
        if start is None:
            if pattern.match(m.group(2).strip()):
                start, level = i + 1, len(m.group(1))
        elif len(m.group(1)) <= level:
            return "\n".join(lines[start:i]).strip("\n")
    return None if start is None else "\n".join(lines[start:]).strip("\n")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{max(1, round(n / 1024))} KiB"


def render_notes(*, version: str, section: str | None, changelog_name: str | None,
                 assets: Sequence[tuple[str, int]], signed: bool, repo_url: str | None,
                 signed_by: str | None = None) -> str:
    """RELEASE_NOTES.md: the changelog entry, the files, how to verify and install (pure).

    A signed release names its key (``signed_by``) in a line ``recorded_signer``
    reads back: the notes are listed in SHA256SUMS, so ``release --check`` knows
    a signature is expected even when SHA256SUMS.asc has gone.
    """
    out = [f"# OrangeScrum {version}", ""]
    if section and section.strip():
        out += [section.strip(), ""]
    elif changelog_name:
        out += [f"_No entry for {version} in {changelog_name}._", ""]
    out += ["## Files", "", "| file | size |", "|---|---|"]
    out += [f"| `{name}` | {_size(size)} |" for name, size in assets]
    out += ["", "## Verify", "", "```sh", f"sha256sum -c {SUMS}"]
    if signed:
        out += [f"gpg --verify {SUMS_SIG} {SUMS}   # with the OrangeScrum release key"]
    out += ["```", ""]
    if signed_by:
        out += [f"Signed with the OpenPGP key `{signed_by}` ({SUMS_SIG}, the .rpm and the package repository).", ""]
    if repo_url:
        key = repo_mod.KEYRING
        out += [
            "## Install from the package repository", "",
            "```sh",
            "# Debian / Ubuntu",
            f"curl -fsSLo {repo_mod.KEYRING_INSTALL_PATH} {repo_url}/{key}.gpg",
            f"curl -fsSLo /etc/apt/sources.list.d/{repo_mod.REPO_ID}.sources {repo_url}/{repo_mod.REPO_ID}.sources",
            "apt-get update && apt-get install orangescrum",
            "# Fedora / RHEL / Rocky / Alma",
            f"curl -fsSLo /etc/yum.repos.d/{repo_mod.REPO_ID}.repo {repo_url}/{repo_mod.REPO_ID}.repo",
            "dnf install orangescrum",
            "```", "",
        ]
    return "\n".join(out)


_SIGNER_LINE = re.compile(r"^Signed with the OpenPGP key `([0-9A-F]{40,64})`", re.M)
_VERIFY_LINE = re.compile(r"^gpg --verify " + re.escape(SUMS_SIG) + " ", re.M)


def recorded_signer(notes: str) -> tuple[bool, str | None]:
    """(do the notes say the release was signed, by which fingerprint) -- the inverse of ``render_notes``."""
    m = _SIGNER_LINE.search(notes)
    return (m is not None or _VERIFY_LINE.search(notes) is not None), (m.group(1) if m else None)


# --------------------------------------------------------------------------
# Act
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseResult:
    dest: Path
    assets: tuple[str, ...]  # files in dest, SHA256SUMS(.asc) included
    signed_by: str | None
    repo: repo_mod.PublishResult | None
    repo_dir: Path | None


def _link_tree(src: Path, dest: Path) -> None:
    """Copy a directory tree with hard links (a copy where linking is impossible)."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link, symlinks=True)


def sign_rpm(gpg: Gpg, path: Path) -> None:
    """Add a signature header to ``path`` in place (rpmsign, with gpg's home and key)."""
    gpg.sign_rpm(path)


@contextlib.contextmanager
def _temp_dir_next_to(target: Path, prefix: str) -> Iterator[Path]:
    tmp = fresh_temp_dir(target.parent, prefix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _inside(path: Path, parent: Path) -> Path | None:
    """``path`` relative to ``parent`` when it lies inside it, else None."""
    path, parent = path.resolve(), parent.resolve()
    return path.relative_to(parent) if path.is_relative_to(parent) else None


def make_release(cfg: BuildConfig, opts: ReleaseOptions) -> ReleaseResult:
    """Write ``dist/release`` (and the repository with ``opts.repo``) from the planned inputs."""
    plan = plan_release(cfg, opts)
    gpg = opts.gpg() if opts.sign_key else None
    fpr = gpg.signing_fingerprint() if gpg else None  # fail before any work
    old_repo = _existing_repository(plan, opts, fpr) if plan.repo_dir is not None else None
    for tree in plan.trees:
        for rel in tree.not_released:
            why = "operator file" if rel in OPERATOR_FILES[tree.flavor] else "not written by assembly"
            logger.info("    not released: %s (%s)", tree.root / rel, why)

    outside_tmp: Path | None = None  # the new repository, when release.repo_dir is outside dist/release
    try:
        with _temp_dir_next_to(plan.dest, ".tmp-release-") as staging:
            with step(f"Writing the release {plan.version} in {plan.dest}"):
                assets = _write_assets(plan, staging, gpg, fpr)
            repo_result: repo_mod.PublishResult | None = None
            if plan.repo_dir is not None:
                with step(f"Publishing {plan.version} into the repository {plan.repo_dir}"):
                    inside = _inside(plan.repo_dir, plan.dest)
                    if inside is not None:
                        new = staging / inside
                    else:
                        new = outside_tmp = fresh_temp_dir(plan.repo_dir.parent, ".tmp-repo-")
                    repo_result = repo_mod.publish(
                        new, old=old_repo, epoch=plan.epoch, gpg=gpg, repo_url=plan.repo_url, replace=opts.replace,
                        debs=[dataclasses.replace(d, path=staging / d.path.name) for d in plan.debs],
                        rpms=[dataclasses.replace(r, path=staging / r.path.name) for r in plan.rpms],
                        default_arch=plan.default_arch)
                    repo_result = dataclasses.replace(repo_result, root=plan.repo_dir)
                    logger.info("    %d .deb and %d .rpm in the repository (%s)", len(repo_result.debs),
                                len(repo_result.rpms),
                                ", ".join(repo_result.added) + " added" if repo_result.added else "nothing new")
            else:
                # Keep a repository that lives inside dist/release (the default place).
                inside = _inside(cfg.release.repo_dir, plan.dest)
                if inside is not None and cfg.release.repo_dir.is_dir():
                    _link_tree(cfg.release.repo_dir, staging / inside)
            os.chmod(staging, 0o755)
            swap_into_place(staging, plan.dest)
        if outside_tmp is not None and plan.repo_dir is not None:
            swap_into_place(outside_tmp, plan.repo_dir)
            outside_tmp = None
    finally:
        if outside_tmp is not None:
            shutil.rmtree(outside_tmp, ignore_errors=True)
    for name in assets:
        logger.info("    %s", plan.dest / name)
    return ReleaseResult(plan.dest, tuple(assets), fpr, repo_result, plan.repo_dir)


def _existing_repository(plan: ReleasePlan, opts: ReleaseOptions, fpr: str | None) -> repo_mod.Inventory:
    """The packages of the repository that travel into the new one, verified against its own index.

    With --new-repo none do (only the old place's date is kept, so apt never
    sees the Release date go back).
    """
    assert plan.repo_dir is not None
    if opts.new_repo:
        held = sorted(p.name for pattern in ("apt/pool/**/*.deb", "rpm/**/*.rpm") for p in plan.repo_dir.glob(pattern))
        if held:
            logger.warning("    --new-repo: the repository %s starts afresh; not kept: %s", plan.repo_dir,
                           ", ".join(held))
        return repo_mod.Inventory(plan.repo_dir, (), signed=False)
    with step(f"Verifying the repository {plan.repo_dir} against its own index"):
        inventory = repo_mod.verify_repository(plan.repo_dir, gpg=opts.gpg(), want_fpr=fpr)
        if not inventory.packages:
            logger.info("    no packages yet: the first publication")
        else:
            logger.info("    %d packages verify%s", len(inventory.packages),
                        f" (signed by {fpr})" if inventory.signed else " (unsigned: checksums only)")
    return inventory


def _write_assets(plan: ReleasePlan, out: Path, gpg: Gpg | None, fpr: str | None) -> list[str]:
    """Tarballs, packages (the rpm signed), notes, SHA256SUMS(.asc) in ``out``; returns the file names."""
    names: list[str] = []
    for tree in plan.trees:
        name = tarball_name(tree.flavor, plan.version)
        write_tarball(tree.root, tree.files, out / name, prefix=name[: -len(".tar.gz")], epoch=plan.epoch)
        names.append(name)
    for pkg in (*plan.debs, *plan.rpms):
        shutil.copyfile(pkg.path, out / pkg.path.name)
        names.append(pkg.path.name)
    if gpg is not None:
        for rpm in plan.rpms:
            sign_rpm(gpg, out / rpm.path.name)
    section = None
    if plan.changelog is not None:
        section = changelog_section(plan.changelog.read_text(encoding="utf-8"), plan.version)
        if section is None:
            logger.warning("    %s has no section for %s; the release notes say so", plan.changelog, plan.version)
    notes = render_notes(version=plan.version, section=section,
                         changelog_name=plan.changelog.name if plan.changelog else None,
                         assets=[(n, (out / n).stat().st_size) for n in sorted(names)],
                         signed=gpg is not None, repo_url=plan.repo_url, signed_by=fpr)
    (out / NOTES).write_text(notes, encoding="utf-8")
    names.append(NOTES)
    sums = format_sums({n: sha256_file(out / n) for n in names})
    write_atomic(out / SUMS, sums.encode())
    names.append(SUMS)
    if gpg is not None:
        gpg.detach_sign(out / SUMS, out / SUMS_SIG)
        names.append(SUMS_SIG)
    for n in names:
        os.chmod(out / n, 0o644)
        os.utime(out / n, (plan.epoch, plan.epoch))
    return sorted(names)


# --------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    dest: Path
    checked: tuple[str, ...]  # one line per thing verified
    signed_by: str | None
    warnings: tuple[str, ...] = ()  # what the check could not prove


def signing_evidence(dest: Path, sums: dict[str, str], repo_dir: Path) -> tuple[list[str], str | None]:
    """What says the release in ``dest`` was signed, and the fingerprint its notes record.

    Any of these means a signature is expected, whatever ``--sign`` says:
    the notes (listed in SHA256SUMS) say so, an .rpm carries a signature, the
    repository is signed.  Whoever can edit the directory can remove all of
    them together; only ``--sign KEY`` (or release.sign_key), from outside the
    directory, makes a signature required then.
    """
    evidence: list[str] = []
    recorded = None
    notes = dest / NOTES
    if NOTES in sums and notes.is_file():
        said, recorded = recorded_signer(notes.read_text(encoding="utf-8", errors="replace"))
        if said:
            evidence.append(f"{NOTES} says it was signed" + (f" by {recorded}" if recorded else ""))
    evidence += [f"{name} carries an rpm signature" for name in sorted(sums)
                 if name.endswith(".rpm") and (dest / name).is_file() and repo_mod.rpm_is_signed(dest / name)]
    if repo_dir.is_dir() and repo_mod.was_signed(repo_dir):
        evidence.append(f"the repository {repo_dir} is signed")
    return evidence, recorded


def _rpm_signature_problems(gpg: Gpg, fpr: str, rpms: Sequence[Path]) -> list[str]:
    """``rpmkeys -K`` of each rpm against the signer's public key, in a throwaway rpm database."""
    if not rpms:
        return []
    problems = []
    with tempfile.TemporaryDirectory(prefix="oscb-rpmdb-") as tmp:
        key = Path(tmp) / "key.asc"
        gpg.export_public(key, armor=True, fingerprint=fpr)
        db = Path(tmp) / "db"
        db.mkdir()
        run_tool(["rpmkeys", "--dbpath", str(db), "--import", str(key)], what="rpmkeys --import")
        for rpm in rpms:
            out = run_tool(["rpmkeys", "--dbpath", str(db), "--checksig", str(rpm)], what="rpmkeys --checksig",
                           check=False)
            text = out.stdout.strip()
            if out.returncode != 0 or "signatures OK" not in text:
                detail = "not signed" if out.returncode == 0 else text.split(":", 1)[-1].strip()
                problems.append(f"{rpm.name}: rpm signature {detail or 'does not verify'}")
    return problems


def check_release(cfg: BuildConfig, opts: ReleaseOptions) -> CheckReport:
    """Verify ``dist/release`` (and the repository): raise ``VerificationError`` listing every mismatch."""
    dest = release_dir(cfg)
    if not (dest / SUMS).is_file():
        raise VerificationError(f"{dest / SUMS} does not exist; run `invoke release` first")
    gpg = opts.gpg()
    want = None
    if opts.sign_key:
        want = gpg.public_fingerprint(opts.sign_key)
        if want is None:
            raise PrerequisiteError(
                f"release.sign_key={opts.sign_key!r}: no public key matches it in "
                f"{opts.gnupghome or 'the default GnuPG home'}; import the release key (gpg --import)"
            )
    problems: list[str] = []
    checked: list[str] = []
    sums, bad = parse_sums((dest / SUMS).read_text(encoding="utf-8", errors="replace"))
    problems += [f"{SUMS}: malformed line {line!r}" for line in bad]
    for name, digest in sorted(sums.items()):
        path = dest / name
        if not path.is_file():
            problems.append(f"{name}: listed in {SUMS} but missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: SHA256 does not match {SUMS} (corrupted or replaced)")
    checked.append(f"{len(sums)} files against {SUMS}")
    unlisted = sorted(p.name for p in dest.iterdir() if p.is_file() and p.name not in (*sums, SUMS, SUMS_SIG))
    problems += [f"{name}: not listed in {SUMS}" for name in unlisted]
    for flavor in FLAVORS:
        if not any(n.startswith(f"{PRODUCT}-{flavor}-") and n.endswith(".tar.gz") for n in sums):
            problems.append(f"{SUMS} lists no {flavor} tarball")
    for ext in (".deb", ".rpm"):
        if not any(n.endswith(ext) for n in sums):
            problems.append(f"{SUMS} lists no {ext} package")

    signed_by = None
    warnings: list[str] = []
    repo_dir = cfg.release.repo_dir
    evidence, recorded = signing_evidence(dest, sums, repo_dir)
    if want is None and recorded is not None:
        want = recorded  # the key the notes name, not any key the keyring happens to hold
    has_sig = (dest / SUMS_SIG).is_file()
    signed = has_sig or want is not None or bool(evidence)
    if signed and not has_sig and evidence:
        problems.append(f"{SUMS_SIG} is missing, but the release was signed ({'; '.join(evidence)}): "
                        "the signature was removed or not copied; restore it from the published release")
    elif signed:
        signed_by = repo_mod.check_signature(gpg, dest / SUMS_SIG, dest / SUMS, "release", problems, want)
        if signed_by:
            checked.append(f"{SUMS_SIG}: good signature by {signed_by}")
            rpm_problems = _rpm_signature_problems(gpg, signed_by, sorted(dest.glob("*.rpm")))
            problems += rpm_problems
            if not rpm_problems:
                checked.append("rpm signatures")

    if not signed:
        warnings.append("not signed, and nothing in the release or the repository says it was: the checksums "
                        "show the files are intact, not who made them; pass --sign KEY (or set "
                        "release.sign_key) to require the release key's signatures")
    if repo_dir.is_dir():
        repo_signed = signed or repo_mod.was_signed(repo_dir)
        apt = repo_mod.check_apt(repo_dir / "apt", gpg=gpg, signed=repo_signed, want_fpr=want)
        dnf = repo_mod.check_dnf(repo_dir / "rpm", gpg=gpg, signed=repo_signed, want_fpr=want)
        problems += apt.problems + dnf.problems
        n_debs, n_rpms = apt.count, dnf.count
        for name, digest in sorted(sums.items()):
            if name.endswith(".deb"):
                found = [p for p in (repo_dir / "apt" / "pool").rglob(name)]
            elif name.endswith(".rpm"):
                found = [p for p in [repo_dir / "rpm" / name] if p.is_file()]
            else:
                continue
            if not found:
                problems.append(f"{name}: not in the repository {repo_dir}")
            elif sha256_file(found[0]) != digest:
                problems.append(f"{name}: the repository's copy differs from the release's")
        checked.append(f"repository {repo_dir}: {n_debs} apt entries, {n_rpms} dnf entries"
                       + (", signatures" if repo_signed else ""))
    if problems:
        raise VerificationError(f"{dest} does not verify ({len(problems)} problems):\n  " + "\n  ".join(problems))
    return CheckReport(dest, tuple(checked), signed_by, tuple(warnings))
