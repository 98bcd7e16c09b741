"""The workspace: everything below ``dist/``, owned by one object.

Every output path is a property or a method here (no stage joins ``dist_dir /
...`` itself); every stage records what it made in one stamp type (``Stamp``:
the digest of its inputs, the outputs it wrote, ``intact()``) and in the
artifact manifest ``dist/manifest.json`` (``Manifest``: kind, flavor or format,
version, path, sha256 and the settings that made it), written atomically.

Later stages read their inputs from the manifest instead of guessing paths, and
later tasks (``package.*``, ``docker.image``, ``release``) default to what the
last build was told on its command line or in its env file (``Manifest.given``, replayed as the
lowest settings layer: invoke.yaml, the environment and flags still win).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .fsutil import HashCache, write_atomic
from .reproducible import sha256_bytes, sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
STATE_DIR = ".state"
# Where the Docker build leaves the binary (the seed's osv4-prod).
BUILT_BINARY = "build/osv4-prod"

ArtifactKind = Literal["binary", "tree", "image", "package", "release"]


# --------------------------------------------------------------------------
# Stamps: what one stage wrote, from which inputs
# --------------------------------------------------------------------------

Output = tuple[str, int, int, int]  # path relative to the stamp's root, size, mtime_ns, mode


def listing(root: Path, skip: Iterable[str] = ()) -> tuple[Output, ...]:
    """Every file below ``root`` now (sorted), but ``skip``: to notice an edited, deleted or added output."""
    skipped = set(skip)
    rows: list[Output] = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            p = Path(base, name)
            rel = p.relative_to(root).as_posix()
            if rel in skipped:
                continue
            st = p.lstat()
            rows.append((rel, st.st_size, st.st_mtime_ns, st.st_mode))
    return tuple(rows)


def output_of(root: Path, rel: str) -> Output:
    st = (root / rel).lstat()
    return (rel, st.st_size, st.st_mtime_ns, st.st_mode)


@dataclass(frozen=True)
class Stamp:
    """The inputs digest of one stage's outputs, and those outputs as written.

    ``intact(root)`` says the outputs are still exactly as the stage wrote them
    (size, mtime, mode of each), so their content is known without reading
    them again; ``facts`` holds what the stage learned (a file's sha256).
    """

    inputs: str
    outputs: tuple[Output, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)

    def problems(self, root: Path) -> list[tuple[str, str]]:
        """(path, "missing" | "changed") for every output that is not as written."""
        found = []
        for rel, size, mtime_ns, mode in self.outputs:
            try:
                st = (root / rel).lstat()
            except FileNotFoundError:
                found.append((rel, "missing"))
                continue
            if [st.st_size, st.st_mtime_ns, st.st_mode] != [size, mtime_ns, mode]:
                found.append((rel, "changed"))
        return found

    def intact(self, root: Path, *, skip: Iterable[str] | None = None) -> bool:
        """Every output as written; with ``skip``, also nothing else below ``root`` but ``skip``."""
        if skip is not None:
            return root.is_dir() and listing(root, skip) == self.outputs
        return not self.problems(root)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(o[0] for o in self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outputs": [list(o) for o in self.outputs], "facts": dict(self.facts)}

    @classmethod
    def from_json(cls, data: Any) -> Stamp | None:
        try:
            outputs = tuple((str(r), int(s), int(m), int(mode)) for r, s, m, mode in data["outputs"])
            return cls(str(data["inputs"]), outputs, dict(data.get("facts") or {}))
        except (KeyError, TypeError, ValueError):
            return None


# --------------------------------------------------------------------------
# The artifact manifest
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One recorded output: a binary, a tree, an image, a package, a release."""

    kind: ArtifactKind
    name: str  # flavor (tree), format (package), "runtime" (image), "osv4-prod" (binary), "release"
    version: str
    path: str  # relative to dist/ (an image: its reference)
    sha256: str
    inputs: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        label = {"tree": "flavor", "package": "format"}.get(self.kind, "name")
        out = {"kind": self.kind, label: self.name, "version": self.version, "path": self.path,
               "sha256": self.sha256, "inputs": self.inputs, "settings": dict(self.settings)}
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        name = data.get("flavor") or data.get("format") or data.get("name") or ""
        return cls(kind=data["kind"], name=name, version=data.get("version", ""), path=data.get("path", ""),
                   sha256=data.get("sha256", ""), inputs=data.get("inputs", ""),
                   settings=dict(data.get("settings") or {}), extra=dict(data.get("extra") or {}))


@dataclass(frozen=True)
class Given:
    """A value the last build was told on its command line or in its env file (or by `invoke demo`)."""

    value: Any
    source: str


class Manifest:
    """``dist/manifest.json``: the artifacts of the last build, and what it was told.

    ``given`` holds the settings that came from flags, the env file's ``OSCB_*`` keys or
    `invoke demo` (not from invoke.yaml or the environment: those are read again each
    run), so a later task can default to them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.given: dict[str, Given] = {}
        self.artifacts: dict[str, Artifact] = {}
        self._loaded = ""
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return
        try:
            self.given = {k: Given(v["value"], v["source"]) for k, v in (data.get("given") or {}).items()}
            self.artifacts = {a.key: a for a in map(Artifact.from_json, data.get("artifacts") or [])}
        except (KeyError, TypeError):
            self.given, self.artifacts = {}, {}
            return
        self._loaded = self._render()

    def get(self, kind: ArtifactKind, name: str) -> Artifact | None:
        return self.artifacts.get(f"{kind}/{name}")

    def of_kind(self, kind: ArtifactKind) -> list[Artifact]:
        return [a for a in self.artifacts.values() if a.kind == kind]

    def record(self, artifact: Artifact) -> None:
        self.artifacts[artifact.key] = artifact

    def forget(self, kind: ArtifactKind, name: str) -> None:
        self.artifacts.pop(f"{kind}/{name}", None)

    def _render(self) -> str:
        data = {
            "format": MANIFEST_FORMAT,
            "tool": __version__,
            "given": {k: {"value": g.value, "source": g.source} for k, g in sorted(self.given.items())},
            "artifacts": [self.artifacts[k].to_json() for k in sorted(self.artifacts)],
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def save(self) -> None:
        """Write it atomically, and only when it changed (a no-op build writes nothing)."""
        text = self._render()
        if text != self._loaded:
            write_atomic(self.path, text.encode())
            self._loaded = text


# --------------------------------------------------------------------------
# The workspace
# --------------------------------------------------------------------------


class Workspace:
    """Every path below ``dist/``, the stamps, the hash cache and the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._hashes: HashCache | None = None
        self._manifest: Manifest | None = None

    # -- outputs users know ---------------------------------------------------

    def tree(self, flavor: str) -> Path:
        """dist/docker or dist/native."""
        return self.root / flavor

    @property
    def docker_tree(self) -> Path:
        return self.tree("docker")

    @property
    def native_tree(self) -> Path:
        return self.tree("native")

    @property
    def packages_dir(self) -> Path:
        return self.root / "packages"

    @property
    def release_dir(self) -> Path:
        return self.root / "release"

    @property
    def default_repo_dir(self) -> Path:
        return self.release_dir / "repo"

    @property
    def build_dir(self) -> Path:
        """dist/build: the built binary and, with --keep-package, the Docker build context."""
        return self.root / "build"

    @property
    def built_binary(self) -> Path:
        return self.root / BUILT_BINARY

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def log_path(self, stage: str) -> Path:
        return self.logs_dir / f"{stage}-{time.strftime('%Y%m%dT%H%M%S')}.log"

    @property
    def demo_env(self) -> Path:
        return self.root / "demo" / "demo.env"

    def relative(self, path: Path) -> str:
        """``path`` as the manifest records it: relative to dist/ when inside it."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, recorded: str) -> Path:
        """The inverse of ``relative``."""
        p = Path(recorded)
        return p if p.is_absolute() else self.root / p

    # -- state ------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def stamp_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def stamp(self, name: str) -> Stamp | None:
        """The stamp ``name`` (docker, native, binary, package-deb, ...), or None."""
        try:
            return Stamp.from_json(json.loads(self.stamp_path(name).read_text()))
        except (OSError, ValueError):
            return None

    def write_stamp(self, name: str, stamp: Stamp) -> None:
        write_atomic(self.stamp_path(name), json.dumps(stamp.to_json()).encode())

    @property
    def hashes(self) -> HashCache:
        """Content hashes of big files, cached by stat (saved with ``save``)."""
        if self._hashes is None:
            self._hashes = HashCache(self.state_dir / "hashes.json")
        return self._hashes

    def sha256(self, path: Path) -> str:
        return self.hashes.digest(path)

    # -- the manifest -----------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest(self.manifest_path)
        return self._manifest

    def record(self, artifact: Artifact) -> None:
        """Add or replace an artifact and save the manifest (atomically, only if changed)."""
        self.manifest.record(artifact)
        self.manifest.save()

    def save(self) -> None:
        if self._hashes is not None:
            self._hashes.save()
        if self._manifest is not None:
            self._manifest.save()


def tree_sha256(root: Path, files: Iterable[str], known: Mapping[str, str] | None = None) -> str:
    """One digest for a tree: the sha256 of its ``sha256sum``-style listing (``known``: digests already at hand)."""
    known = known or {}
    lines = "".join(f"{known.get(rel) or sha256_file(root / rel)}  {rel}\n" for rel in sorted(files))
    return sha256_bytes(lines.encode())
