"""`invoke release` with the real tools: nfpm packages, gpg, rpmsign/rpmkeys, createrepo_c, sha256sum."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from release_support import EPOCH, build_tiny_packages, make_gpg_key, prepare_project, stop_gpg_agent

from cloudbuilder.errors import BuildError, PrerequisiteError, VerificationError
from cloudbuilder.release import ReleaseOptions, check_release, make_release

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("nfpm", "gpg", "dpkg-deb", "rpm", "rpmsign", "rpmkeys", "createrepo_c", "sha256sum")
CHANGELOG = "# Changelog\n\n## [4.2.0] - 2023-11-15\n\n- Faster boards.\n\n## [4.1.0] - 2023-11-14\n\n- Gantt charts.\n"


@pytest.fixture(autouse=True)
def _tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        message = f"missing tools: {', '.join(missing)} (scripts/setup.sh installs them)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


@pytest.fixture
def gnupg(tmp_path):
    home = tmp_path / "gnupg"
    fpr = make_gpg_key(home)
    yield home, fpr
    stop_gpg_agent(home)


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_release_writes_every_asset_and_checksums_verify(tmp_path, example_app):
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0", changelog=CHANGELOG)
    docker, native = cfg.dist_dir / "docker", cfg.dist_dir / "native"
    (docker / ".env").write_text("DB_PASSWORD=operator-secret\n")
    (docker / "docker-compose.override.yaml").write_text("services: {}\n")
    (native / ".env").write_text("DB_PASSWORD=operator-secret\n")

    result = make_release(cfg, ReleaseOptions())
    dest = cfg.dist_dir / "release"
    assert sorted(p.name for p in dest.iterdir()) == sorted(result.assets) == [
        "RELEASE_NOTES.md", "SHA256SUMS", "orangescrum-4.1.0-1.x86_64.rpm", "orangescrum-docker-4.1.0.tar.gz",
        "orangescrum-native-4.1.0.tar.gz", "orangescrum_4.1.0-1_amd64.deb"]
    # The checksums file is what `sha256sum -c` expects, over every other asset.
    done = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 5

    for flavor, tree in (("docker", docker), ("native", native)):
        with tarfile.open(dest / f"orangescrum-{flavor}-4.1.0.tar.gz") as tar:
            names = {m.name for m in tar.getmembers()}
            top = f"orangescrum-{flavor}-4.1.0"
            assert all(n == top or n.startswith(top + "/") for n in names)
            assert f"{top}/.env" not in names and f"{top}/docker-compose.override.yaml" not in names
            assert f"{top}/.env.example" in names
            released = {n[len(top) + 1:] for n in names if tar.getmember(n).isfile()}
        assert released == {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()} - {
            ".env", "docker-compose.override.yaml"}
    notes = (dest / "RELEASE_NOTES.md").read_text()
    assert "- Gantt charts." in notes and "Faster boards" not in notes
    assert (docker / ".env").read_text() == "DB_PASSWORD=operator-secret\n"  # untouched
    check_release(cfg, ReleaseOptions())


def test_two_runs_from_the_same_inputs_are_byte_identical(tmp_path, example_app):
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0", changelog=CHANGELOG)
    make_release(cfg, ReleaseOptions(repo=True))
    first = files_of(cfg.dist_dir / "release")
    # Again into the existing repository, and again from scratch.
    make_release(cfg, ReleaseOptions(repo=True))
    assert files_of(cfg.dist_dir / "release") == first
    shutil.rmtree(cfg.dist_dir / "release")
    make_release(cfg, ReleaseOptions(repo=True))
    again = files_of(cfg.dist_dir / "release")
    assert again == first
    assert len(first) > 10 and any(name.startswith("repo/rpm/repodata/") for name in first)


def test_a_corrupted_asset_is_reported_by_check(tmp_path, example_app):
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0")
    make_release(cfg, ReleaseOptions(repo=True))
    dest = cfg.dist_dir / "release"
    tarball = dest / "orangescrum-native-4.1.0.tar.gz"
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))
    (dest / "orangescrum_4.1.0-1_amd64.deb").unlink()
    (dest / "stray.txt").write_text("not part of the release\n")
    pool_deb = next((dest / "repo/apt/pool").rglob("*.deb"))
    pool_deb.write_bytes(pool_deb.read_bytes() + b"\0")
    with pytest.raises(VerificationError) as err:
        check_release(cfg, ReleaseOptions())
    message = str(err.value)
    assert "orangescrum-native-4.1.0.tar.gz: SHA256 does not match SHA256SUMS" in message
    assert "orangescrum_4.1.0-1_amd64.deb: listed in SHA256SUMS but missing" in message
    assert "stray.txt: not listed in SHA256SUMS" in message
    assert f"apt main/binary-amd64/Packages: {pool_deb} has" in message
    assert "orangescrum_4.1.0-1_amd64.deb: the repository's copy differs from the release's" in message
    assert "(5 problems)" in message


def test_signed_release_verifies_with_the_key_and_rejects_tampering(tmp_path, example_app, gnupg):
    home, fpr = gnupg
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0", **{"release.gnupghome": str(home)})
    opts = ReleaseOptions(sign_key="release@example.invalid", gnupghome=home, repo=True)
    result = make_release(cfg, opts)
    assert result.signed_by == fpr
    dest = cfg.dist_dir / "release"
    env = {**os.environ, "GNUPGHOME": str(home)}
    # Independent checks with the tools themselves.
    gpg = subprocess.run(["gpg", "--batch", "--verify", "SHA256SUMS.asc", "SHA256SUMS"], cwd=dest, env=env,
                         capture_output=True, text=True)
    assert gpg.returncode == 0 and "Good signature" in gpg.stderr
    assert (dest / "SHA256SUMS.asc").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    apt = dest / "repo/apt/dists/stable"
    for args in (["--verify", str(apt / "InRelease")], ["--verify", str(apt / "Release.gpg"), str(apt / "Release")],
                 ["--verify", str(dest / "repo/rpm/repodata/repomd.xml.asc"), str(dest / "repo/rpm/repodata/repomd.xml")]):
        assert subprocess.run(["gpg", "--batch", *args], env=env, capture_output=True).returncode == 0, args
    db = tmp_path / "rpmdb"
    db.mkdir()
    subprocess.run(["rpmkeys", "--dbpath", str(db), "--import", str(dest / "repo/orangescrum-archive-keyring.asc")],
                   check=True)
    sig = subprocess.run(["rpmkeys", "--dbpath", str(db), "--checksig", str(dest / "orangescrum-4.1.0-1.x86_64.rpm")],
                         capture_output=True, text=True)
    assert "signatures OK" in sig.stdout, sig.stdout + sig.stderr
    # The original package in dist/packages is left unsigned.
    assert (cfg.dist_dir / "packages/orangescrum-4.1.0-1.x86_64.rpm").read_bytes() != (
        dest / "orangescrum-4.1.0-1.x86_64.rpm").read_bytes()

    report = check_release(cfg, ReleaseOptions(sign_key=fpr, gnupghome=home))
    assert report.signed_by == fpr
    assert any("rpm signatures" in line for line in report.checked)

    # Another key is not the release key.
    other = make_gpg_key(tmp_path / "gnupg", uid="Someone Else <else@example.invalid>")
    with pytest.raises(VerificationError, match=f"signed by {fpr}, not by {other}"):
        check_release(cfg, ReleaseOptions(sign_key=other, gnupghome=home))
    # A changed SHA256SUMS no longer matches its signature (and an asset, its sum).
    sums = dest / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("RELEASE_NOTES.md", "RELEASE-NOTES.md"))
    with pytest.raises(VerificationError, match=r"SHA256SUMS.asc: BAD signature"):
        check_release(cfg, ReleaseOptions(gnupghome=home))


def test_missing_packages_name_the_task_to_run(tmp_path, example_app):
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0")
    for p in (cfg.dist_dir / "packages").glob("*.rpm"):
        p.unlink()
    with pytest.raises(PrerequisiteError, match=r"no .rpm of version 4.1.0 in .*run `invoke package.all` first"):
        make_release(cfg, ReleaseOptions())
    shutil.rmtree(cfg.dist_dir / "packages")
    build_tiny_packages(cfg.dist_dir / "packages", "4.0.0")
    with pytest.raises(PrerequisiteError, match=r"no .deb of version 4.1.0 .*\(it has: orangescrum_4.0.0-1_amd64.deb\)"):
        make_release(cfg, ReleaseOptions())
    assert not (cfg.dist_dir / "release").exists()


def test_repository_keeps_older_versions_and_refuses_a_changed_package(tmp_path, example_app, gnupg):
    home, fpr = gnupg
    repo_dir = tmp_path / "bucket" / "repo"  # outside dist/: survives `invoke clean`
    settings = {"release.gnupghome": str(home), "release.sign_key": fpr, "release.repo_dir": str(repo_dir)}
    cfg1 = prepare_project(tmp_path / "p", example_app, "4.1.0", **settings)
    make_release(cfg1, ReleaseOptions.from_config(cfg1, repo=True))
    shutil.rmtree(cfg1.dist_dir)  # invoke clean
    cfg2 = prepare_project(tmp_path / "p", example_app, "4.2.0", epoch=EPOCH + 86400, **settings)
    result = make_release(cfg2, ReleaseOptions.from_config(cfg2, repo=True))
    assert result.repo is not None
    assert result.repo.debs == ("pool/main/o/orangescrum/orangescrum_4.1.0-1_amd64.deb",
                                "pool/main/o/orangescrum/orangescrum_4.2.0-1_amd64.deb")
    assert result.repo.rpms == ("orangescrum-4.1.0-1.x86_64.rpm", "orangescrum-4.2.0-1.x86_64.rpm")
    packages = (repo_dir / "apt/dists/stable/main/binary-amd64/Packages").read_text()
    assert "Version: 4.1.0-1" in packages and "Version: 4.2.0-1" in packages
    assert "Date: Wed, 15 Nov 2023 22:13:20 GMT" in (repo_dir / "apt/dists/stable/Release").read_text()
    assert not list(repo_dir.parent.glob(".tmp-*"))
    check_release(cfg2, ReleaseOptions(sign_key=fpr, gnupghome=home))

    # An older version published later does not move the repository's date back.
    cfg3 = prepare_project(tmp_path / "p", example_app, "4.1.1", epoch=EPOCH + 3600, **settings)
    make_release(cfg3, ReleaseOptions.from_config(cfg3, repo=True))
    assert "Date: Wed, 15 Nov 2023 22:13:20 GMT" in (repo_dir / "apt/dists/stable/Release").read_text()

    # Same version, other bytes: refused unless --replace.
    shutil.rmtree(cfg3.dist_dir / "packages")
    build_tiny_packages(cfg3.dist_dir / "packages", "4.1.1", epoch=EPOCH + 7200)
    with pytest.raises(BuildError, match=r"already has apt/pool/main/o/orangescrum/orangescrum_4.1.1-1_amd64.deb "
                                         r"with other content.*--replace"):
        make_release(cfg3, ReleaseOptions.from_config(cfg3, repo=True))
    make_release(cfg3, ReleaseOptions.from_config(cfg3, repo=True, replace=True))
    check_release(cfg3, ReleaseOptions(sign_key=fpr, gnupghome=home))

    # A signed repository does not take an unsigned release.
    with pytest.raises(BuildError, match=r"is signed, but this release is not"):
        make_release(cfg3, ReleaseOptions(repo=True))


def test_default_repository_survives_a_release_without_repo(tmp_path, example_app):
    cfg = prepare_project(tmp_path / "p", example_app, "4.1.0")
    make_release(cfg, ReleaseOptions(repo=True))
    before = files_of(cfg.dist_dir / "release" / "repo")
    make_release(cfg, ReleaseOptions())
    assert files_of(cfg.dist_dir / "release" / "repo") == before


def test_cli_release_then_check(tmp_path, example_app, gnupg):
    home, fpr = gnupg
    project = tmp_path / "p"
    cfg = prepare_project(project, example_app, "4.1.0")
    # The console command reads ./invoke.yaml like invoke does next to tasks.py.
    (project / "invoke.yaml").write_text(
        f"cloudbuilder:\n  app: app\n  version: 4.1.0\n  binary: frankenphp\n  source_date_epoch: {EPOCH}\n"
        f"  release:\n    gnupghome: {home}\n    repo_url: https://pkg.example.com/os\n")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cloudbuilder", *args], cwd=project, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})

    done = cli("release", "--sign", fpr, "--repo")
    assert done.returncode == 0, done.stderr
    assert f"signed by {fpr}" in done.stderr
    assert (cfg.dist_dir / "release/repo/orangescrum.repo").read_text().startswith("[orangescrum]\n")
    done = cli("release", "--check", "--sign", fpr)
    assert done.returncode == 0, done.stderr
    assert "verifies" in done.stderr
    rpm = cfg.dist_dir / "release/orangescrum-4.1.0-1.x86_64.rpm"
    rpm.write_bytes(rpm.read_bytes()[:-10])
    done = cli("release", "--check")
    assert done.returncode == 6
    assert "orangescrum-4.1.0-1.x86_64.rpm: SHA256 does not match SHA256SUMS" in done.stderr
    assert "BEGIN PGP" not in done.stdout + done.stderr


def test_a_key_with_a_passphrase_signs_with_the_passphrase_only(tmp_path, example_app):
    home = tmp_path / "gnupg"
    fpr = make_gpg_key(home, passphrase="correct horse")
    try:
        cfg = prepare_project(tmp_path / "p", example_app, "4.1.0")
        with pytest.raises(BuildError, match=r"protected by a passphrase .*set the environment variable GPG_PASSPHRASE"):
            make_release(cfg, ReleaseOptions(sign_key=fpr, gnupghome=home))
        assert not (cfg.dist_dir / "release").exists()
        result = make_release(cfg, ReleaseOptions(sign_key=fpr, gnupghome=home, passphrase="correct horse"))
        assert result.signed_by == fpr
        check_release(cfg, ReleaseOptions(sign_key=fpr, gnupghome=home))
    finally:
        stop_gpg_agent(home)
    assert not list(Path("/tmp").glob("oscb-gpg-*")), "the passphrase file must be removed"
