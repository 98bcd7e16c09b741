"""The pure parts of releases: tarballs, checksums, notes, apt indexes, snippets, release inputs."""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from pathlib import Path

import pytest
from release_support import EPOCH, fake_binary, release_config

from cloudbuilder import repo
from cloudbuilder.config import resolve
from cloudbuilder.errors import ConfigError, PrerequisiteError
from cloudbuilder.gpg import parse_verify_status
from cloudbuilder.release import (
    changelog_section,
    format_sums,
    parse_sums,
    recorded_signer,
    render_notes,
    tarball_name,
    tree_input,
    write_tarball,
)

# -- tarballs -----------------------------------------------------------------


@pytest.fixture
def small_tree(tmp_path) -> tuple[Path, list[str]]:
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "README.md").write_text("readme\n")
    (root / "bin" / "orangescrum").write_text("#!/bin/sh\n")
    (root / "bin" / "orangescrum").chmod(0o750)
    (root / "docs" / "A.md").write_text("a\n")
    (root / ".env").write_text("SECRET=1\n")  # not in the list: must not appear
    return root, ["README.md", "bin/orangescrum", "docs/A.md"]


def test_tarball_is_deterministic_sorted_and_owned_by_root(tmp_path, small_tree):
    root, files = small_tree
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    write_tarball(root, files, first, prefix="orangescrum-native-4.1.0", epoch=EPOCH)
    os.utime(root / "README.md", (EPOCH + 99, EPOCH + 99))  # file times must not matter
    write_tarball(root, list(reversed(files)), second, prefix="orangescrum-native-4.1.0", epoch=EPOCH)
    assert first.read_bytes() == second.read_bytes()

    raw = first.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # gzip, no FNAME/FEXTRA flags
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == ["orangescrum-native-4.1.0", "orangescrum-native-4.1.0/README.md",
                     "orangescrum-native-4.1.0/bin", "orangescrum-native-4.1.0/bin/orangescrum",
                     "orangescrum-native-4.1.0/docs", "orangescrum-native-4.1.0/docs/A.md"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "root", "root", EPOCH)}
    modes = {m.name.split("/", 1)[-1]: (m.type, m.mode) for m in members}
    assert modes["bin"] == (tarfile.DIRTYPE, 0o755)
    assert modes["bin/orangescrum"] == (tarfile.REGTYPE, 0o755)
    assert modes["README.md"] == (tarfile.REGTYPE, 0o644)


def test_tarball_names():
    assert tarball_name("docker", "4.1.0~rc1") == "orangescrum-docker-4.1.0~rc1.tar.gz"


# -- checksums ------------------------------------------------------------------


def test_sums_round_trip_and_sha256sum_format():
    digests = {"b.rpm": "b" * 64, "a.tar.gz": "a" * 64}
    text = format_sums(digests)
    assert text == f"{'a' * 64}  a.tar.gz\n{'b' * 64}  b.rpm\n"
    assert parse_sums(text) == (digests, [])
    assert parse_sums(f"{'c' * 64} *binary-mode.deb\n") == ({"binary-mode.deb": "c" * 64}, [])


def test_malformed_and_path_lines_are_reported():
    sums, bad = parse_sums(f"nonsense\n{'a' * 64}  ../etc/passwd\n{'a' * 63}  short\n")
    assert sums == {}
    assert len(bad) == 3


# -- release notes ----------------------------------------------------------------

CHANGELOG = """# Changelog

## [Unreleased]

- Not yet.

## [4.1.0] - 2026-01-02

### Added
- Gantt charts.

### Fixed
- Time zones.

## v4.0.0 (2025-06-01)

- First.
"""


@pytest.mark.parametrize("version, expected", [
    ("4.1.0", "### Added\n- Gantt charts.\n\n### Fixed\n- Time zones."),
    ("4.0.0", "- First."),
    ("4.0", None),  # a prefix of another version is not a match
    ("9.9.9", None),
])
def test_changelog_section(version, expected):
    assert changelog_section(CHANGELOG, version) == expected


def test_changelog_section_plain_heading():
    assert changelog_section("## 4.1.0\nA\n## 4.0.0\nB\n", "4.1.0") == "A"


def test_notes_name_files_checks_and_install_steps():
    notes = render_notes(version="4.1.0", section="- Gantt charts.", changelog_name="CHANGELOG.md",
                         assets=[("orangescrum-docker-4.1.0.tar.gz", 3 * 2**20), ("x.deb", 2048)],
                         signed=True, repo_url="https://pkg.example.com/os")
    assert notes.startswith("# OrangeScrum 4.1.0\n\n- Gantt charts.\n")
    assert "| `orangescrum-docker-4.1.0.tar.gz` | 3.0 MiB |" in notes
    assert "| `x.deb` | 2 KiB |" in notes
    assert "sha256sum -c SHA256SUMS" in notes and "gpg --verify SHA256SUMS.asc SHA256SUMS" in notes
    assert "https://pkg.example.com/os/orangescrum.sources" in notes
    assert "https://pkg.example.com/os/orangescrum.repo" in notes


def test_signed_notes_record_the_key_and_check_reads_it_back():
    fpr = "6312D08BA5B389CB5DB9DB2835A88997A1A1DA6F"
    notes = render_notes(version="4.1.0", section=None, changelog_name=None, assets=[], signed=True,
                         repo_url=None, signed_by=fpr)
    assert f"Signed with the OpenPGP key `{fpr}`" in notes
    assert recorded_signer(notes) == (True, fpr)
    # Notes of a signed release written before the key was recorded still say it was signed.
    legacy = render_notes(version="4.1.0", section=None, changelog_name=None, assets=[], signed=True, repo_url=None)
    assert recorded_signer(legacy) == (True, None)
    unsigned = render_notes(version="4.1.0", section=None, changelog_name=None, assets=[], signed=False,
                            repo_url=None)
    assert recorded_signer(unsigned) == (False, None)


def test_notes_without_a_changelog_entry_say_so():
    notes = render_notes(version="4.1.0", section=None, changelog_name="CHANGELOG.md", assets=[],
                         signed=False, repo_url=None)
    assert "_No entry for 4.1.0 in CHANGELOG.md._" in notes
    assert "gpg --verify" not in notes and "Install from" not in notes


# -- apt indexes and client snippets ----------------------------------------------


def _deb(**kw) -> repo.DebInfo:
    fields = {"path": Path("/x.deb"), "package": "orangescrum", "version": "4.1.0-1", "arch": "amd64",
              "source": "orangescrum", "control": "Package: orangescrum\nVersion: 4.1.0-1\nArchitecture: amd64"}
    fields.update(kw)
    return repo.DebInfo(**fields)


def test_deb_pool_path_and_upstream_version():
    assert _deb().pool_path == "pool/main/o/orangescrum/orangescrum_4.1.0-1_amd64.deb"
    assert _deb(version="2:4.1.0-3", source="libfoo").pool_path == "pool/main/libf/libfoo/orangescrum_4.1.0-3_amd64.deb"
    assert repo.upstream_of("2:4.1.0~rc1-3") == "4.1.0~rc1"
    assert repo.upstream_of("4.1.0") == "4.1.0"


def test_packages_stanza_adds_location_and_hashes():
    stanza = repo.packages_stanza(_deb(), "pool/main/o/orangescrum/x.deb", ("m" * 32, "s" * 40, "h" * 64, 1234))
    fields = repo.parse_control(stanza)
    assert fields["Package"] == "orangescrum"
    assert fields["Filename"] == "pool/main/o/orangescrum/x.deb"
    assert (fields["Size"], fields["MD5sum"], fields["SHA1"], fields["SHA256"]) == ("1234", "m" * 32, "s" * 40, "h" * 64)


def test_release_file_lists_every_index_with_size_and_hashes():
    packages = b"Package: orangescrum\n"
    text = repo.release_file(date=EPOCH, architectures=["amd64"],
                             files=[("main/binary-amd64/Packages", packages)])
    fields = repo.parse_control(text)
    assert fields["Suite"] == fields["Codename"] == "stable"
    assert fields["Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert fields["Components"] == "main" and fields["Architectures"] == "amd64"
    sha_line = fields["SHA256"].strip().split()
    assert sha_line == [hashlib.sha256(packages).hexdigest(), str(len(packages)), "main/binary-amd64/Packages"]


def test_gzip_bytes_are_reproducible_and_valid():
    data = b"Package: x\n" * 100
    assert repo.gzip_bytes(data) == repo.gzip_bytes(data)
    assert gzip.decompress(repo.gzip_bytes(data)) == data
    assert repo.gzip_bytes(data)[4:8] == b"\0\0\0\0"


def test_client_snippets_pin_the_key():
    url = "https://pkg.example.com/os"
    assert repo.apt_sources(url) == (
        "Types: deb\nURIs: https://pkg.example.com/os/apt\nSuites: stable\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/orangescrum-archive-keyring.gpg\n")
    assert repo.apt_list_line(url) == ("deb [signed-by=/usr/share/keyrings/orangescrum-archive-keyring.gpg] "
                                       "https://pkg.example.com/os/apt stable main\n")
    dnf = repo.dnf_repo_file(url)
    assert "baseurl=https://pkg.example.com/os/rpm\n" in dnf
    assert "gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=https://pkg.example.com/os/orangescrum-archive-keyring.asc\n" in dnf
    assert "gpgkey" not in repo.dnf_repo_file(url, signed=False)


def test_clearsigned_text_undoes_dash_escaping():
    signed = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: x\n- -- dashes\n"
              "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n")
    assert repo._clearsigned_text(signed) == "Origin: x\n-- dashes"
    assert repo._clearsigned_text("Origin: x\n") is None


# -- gpg status parsing --------------------------------------------------------------

FPR = "60D18E8AD0F34EAA7C16CBB094AC9F5E068DED36"


def test_good_signature_names_the_primary_key():
    status = (f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 94AC9F5E068DED36 Test\n"
              f"[GNUPG:] VALIDSIG {'A' * 40} 2026-11-26 1795731071 0 4 0 22 10 00 {FPR}\n")
    sig = parse_verify_status(status)
    assert sig.valid and sig.fingerprint == FPR


@pytest.mark.parametrize("status, detail", [
    ("[GNUPG:] BADSIG 94AC9F5E068DED36 Test\n", "BAD signature"),
    ("[GNUPG:] ERRSIG 94AC9F5E068DED36 22 10 00 1795731071 9 -\n[GNUPG:] NO_PUBKEY 94AC9F5E068DED36\n",
     "no public key"),
    ("[GNUPG:] NODATA 1\n", "no signature found"),
    (f"[GNUPG:] EXPKEYSIG 94AC9F5E068DED36 Test\n[GNUPG:] VALIDSIG {FPR} x x x x x x x x {FPR}\n", "expired key"),
    ("", "not a valid signature"),
])
def test_bad_signatures_are_explained(status, detail):
    sig = parse_verify_status(status)
    assert not sig.valid and detail in sig.detail


# -- settings ---------------------------------------------------------------------


def _cfg(tmp_path, values, environ=None):
    from cloudbuilder.config import AppFacts, layers_from

    layers = layers_from(None, None, environ or {}, values)
    return resolve(layers, cwd=tmp_path, probe=lambda _app: AppFacts(None, "default", None))


def test_release_settings_defaults_and_flag_label(tmp_path):
    cfg = _cfg(tmp_path, {"release.sign_key": "ABCD"})
    assert cfg.release.sign_key == "ABCD"
    assert cfg.source_of("release.sign_key") == "flag --sign"
    assert cfg.release.repo_dir == tmp_path / "dist" / "release" / "repo"
    assert cfg.release.gnupghome is None and cfg.release.repo_url is None


def test_release_settings_from_the_environment(tmp_path):
    cfg = _cfg(tmp_path, {}, {"OSCB_RELEASE_REPO_URL": "https://pkg.example.com/os/",
                              "OSCB_RELEASE_REPO_DIR": "repo", "OSCB_RELEASE_GNUPGHOME": "keys"})
    assert cfg.release.repo_url == "https://pkg.example.com/os"
    assert cfg.release.repo_dir == tmp_path / "repo"
    assert cfg.release.gnupghome == tmp_path / "keys"


def test_repo_url_must_be_a_url(tmp_path):
    with pytest.raises(ConfigError, match=r"release.repo_url='pkg.example.com' \(from environment variable "
                                          r"OSCB_RELEASE_REPO_URL\) is not a URL"):
        _cfg(tmp_path, {}, {"OSCB_RELEASE_REPO_URL": "pkg.example.com"})


# -- release inputs: the assembled trees --------------------------------------------------


@pytest.fixture
def assembled(tmp_path, example_app):
    from cloudbuilder.pipeline import assemble_flavor

    binary = fake_binary(tmp_path / "frankenphp")
    cfg = release_config(tmp_path, example_app, "4.1.0", binary=str(binary))
    assemble_flavor(cfg, "docker")
    return cfg


def test_tree_input_is_what_assembly_wrote_without_operator_files(assembled):
    tree = assembled.dist_dir / "docker"
    (tree / ".env").write_text("DB_PASSWORD=secret\n")
    (tree / "docker-compose.override.yaml").write_text("services: {}\n")
    (tree / "notes.txt").write_text("scratch\n")
    found = tree_input(assembled, "docker")
    assert "docker-compose.yaml" in found.files and "orangescrum-app/osv4-prod" in found.files
    assert not {".env", "docker-compose.override.yaml", "notes.txt"} & set(found.files)
    assert set(found.not_released) == {".env", "docker-compose.override.yaml", "notes.txt"}


def test_tree_edited_after_assembly_is_refused(assembled):
    (assembled.dist_dir / "docker" / "docker-compose.yaml").write_text("edited: true\n")
    with pytest.raises(PrerequisiteError, match=r"docker-compose.yaml was changed after assembly; run `invoke "
                                                r"dist.docker`"):
        tree_input(assembled, "docker")


def test_tree_of_another_version_is_refused(assembled, example_app, tmp_path):
    other = release_config(tmp_path, example_app, "4.2.0", binary=str(tmp_path / "frankenphp"))
    with pytest.raises(PrerequisiteError, match=r"assembled from other sources or settings than this release "
                                                r"\(version 4.2.0"):
        tree_input(other, "docker")


def test_unassembled_tree_is_refused(assembled):
    with pytest.raises(PrerequisiteError, match=r"dist/native has not been assembled .*run `invoke dist.native` "
                                                r"\(or `invoke build`\)"):
        tree_input(assembled, "native")
