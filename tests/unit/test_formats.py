"""Packaging by format: what formats/deb.py and formats/rpm.py say, and that nothing else says it again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cloudbuilder.errors import BuildError
from cloudbuilder.packaging.fpm import FpmBackend
from cloudbuilder.packaging.formats import FORMATS, REGISTRY, deb, format_of, rpm
from cloudbuilder.packaging.nfpm import NfpmBackend
from cloudbuilder.reproducible import iso_date, rfc2822, rpm_changelog_date, utc_year

PACKAGE = Path(__file__).resolve().parents[2] / "cloudbuilder"
EPOCH = 1700000000  # Tue, 14 Nov 2023 22:13:20 UTC


def test_the_registry_holds_both_formats_by_name():
    assert tuple(REGISTRY) == FORMATS == ("deb", "rpm")
    assert all(format_of(fmt).name == fmt for fmt in FORMATS)


@pytest.mark.parametrize(("fmt", "arch", "name"), [
    ("deb", "amd64", "orangescrum_4.1.0-2_amd64.deb"), ("deb", "arm64", "orangescrum_4.1.0-2_arm64.deb"),
    ("rpm", "amd64", "orangescrum-4.1.0-2.x86_64.rpm"), ("rpm", "arm64", "orangescrum-4.1.0-2.aarch64.rpm"),
])
def test_file_and_architecture_names(fmt, arch, name):
    assert format_of(fmt).filename("orangescrum", "4.1.0-2", arch) == name


def test_the_description_paragraphs_in_each_syntax():
    text = "First paragraph.\n.\nSecond."
    assert format_of("deb").description("Synopsis", text) == "Synopsis\nFirst paragraph.\n.\nSecond."
    assert format_of("rpm").description("Synopsis", text) == "Synopsis\nFirst paragraph.\n\nSecond."


def test_owners_a_deb_carries_every_path_as_root():
    assert format_of("deb").owner("orangescrum", "orangescrum") == ("root", "root") == deb.OWNER
    assert format_of("rpm").owner("orangescrum", "orangescrum") == ("orangescrum", "orangescrum")


def test_dates_come_from_the_one_date_helper():
    assert rpm_changelog_date(EPOCH) == "Tue Nov 14 22:13:20 UTC 2023"
    assert rfc2822(EPOCH) == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert (iso_date(EPOCH), utc_year(EPOCH)) == ("2023-11-14", "2023")
    entry = rpm.changelog(version="4.1.0-2", epoch=EPOCH, author="Ops <ops@example.com>", changes=("a", "b"))
    assert entry == "* Tue Nov 14 22:13:20 UTC 2023 Ops <ops@example.com> - 4.1.0-2\n- a\n- b\n"


def test_no_module_formats_a_date_of_its_own():
    """time.gmtime/strftime of an epoch belong in reproducible.py (one helper per date syntax)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "reproducible.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "gmtime":
                offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders, f"{offenders} format UTC dates themselves; use a cloudbuilder.reproducible helper"


def test_rpm_attr_and_ghost_lines():
    assert rpm.attr(0o640, "root", "orangescrum") == "%attr(0640,root,orangescrum)"
    assert rpm.ghost("/etc/x.env", 0o640, "root", "os") == "%ghost %attr(0640,root,os) /etc/x.env"
    with pytest.raises(BuildError, match="no plain user name"):
        rpm.ghost("/etc/x.env", 0o640, "root", "os) /etc/shadow\n%attr(")


def test_the_deb_control_file_refuses_a_field_that_would_start_another():
    fields = dict(package="orangescrum", version="4.1.0-1", section=deb.SECTION, arch="arm64", maintainer="Ops <o@e.com>",
                  installed_size_kib=3, depends=("systemd (>= 247)", "adduser"), recommends=(),
                  homepage="https://example.com", summary="S", description="Line\n\nAfter")
    text = deb.control(**fields)
    assert "Architecture: arm64\n" in text and "Depends: systemd (>= 247), adduser\n" in text
    assert "Recommends" not in text and text.endswith("Description: S\n Line\n .\n After\n")
    with pytest.raises(BuildError, match="Maintainer field"):
        deb.control(**{**fields, "maintainer": "Ops\nDepends: evil"})


@pytest.mark.parametrize("relation", ["systemd (>= 247)", "default-mta | mail-transport-agent", "libc6:amd64"])
def test_debian_relations(relation):
    assert deb.RELATION_RE.fullmatch(relation) and not rpm.RELATION_RE.fullmatch(relation)


@pytest.mark.parametrize("relation", ["systemd >= 247", "perl(Foo::Bar)", "/usr/bin/sh"])
def test_rpm_relations(relation):
    assert rpm.RELATION_RE.fullmatch(relation) and not deb.RELATION_RE.fullmatch(relation)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compression", ["zstd", "xz", "gzip", "none"])
def test_the_backends_write_exactly_the_compressions_the_format_names_for_them(fmt, compression):
    spelled = format_of(fmt).compressors[compression]
    assert (FpmBackend().unsupported(fmt, compression) is None) == (spelled.fpm is not None)
    assert (NfpmBackend().unsupported(fmt, compression) is None) == (spelled.nfpm is not None)


def test_fpm_has_no_zstd_rpm_and_nfpm_no_uncompressed_rpm():
    assert "fpm cannot write a zstd-compressed .rpm" in FpmBackend().unsupported("rpm", "zstd")
    assert "nfpm cannot write a none-compressed .rpm" in NfpmBackend().unsupported("rpm", "none")
