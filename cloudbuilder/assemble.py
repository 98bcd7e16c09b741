"""Assemble ``dist/docker`` and ``dist/native`` from ``common/`` + a flavor's sources.

Plan, then act: ``plan_tree`` lists every output file (pure, no writes);
``assemble_tree`` renders the plan into a temporary directory next to the
destination and swaps it into place in one rename.  Files named ``*.j2`` are
jinja2 templates (StrictUndefined) rendered from the config; everything else is
copied.  Outputs are deterministic: modes are 0755/0644, mtimes are
SOURCE_DATE_EPOCH, and the same inputs give the same bytes.  A stamp of the
inputs makes a rerun with nothing changed a no-op.

The 100+ MB binary is kept once in ``dist/``: a tree hard-links it (to
``dist/build/osv4-prod`` or to the other tree's copy) when that file already
has the tree's mode and mtime, and copies it otherwise.  A hard link shares the
inode's metadata, so nothing here ever changes the mode or mtime of a linked
file (that would break the other tree's intact check), and nothing writes into
one in place: every writer of a binary writes a new file and renames it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import __version__, escape
from .config import BuildConfig, recorded_settings
from .errors import BuildError, ConfigError
from .fsutil import HashCache, fresh_temp_dir, swap_into_place
from .log import logger
from .resources import source_root
from .workspace import Artifact, Stamp, Workspace, listing, tree_sha256

Flavor = Literal["docker", "native"]
FLAVORS: tuple[Flavor, ...] = ("docker", "native")

# Where the FrankenPHP binary goes in each tree (the seed's names).
BINARY_PATH: dict[Flavor, str] = {"docker": "orangescrum-app/osv4-prod", "native": "bin/orangescrum"}

# Files an operator creates inside a tree (the seed's Quick Start does
# `cp .env.example .env` in dist-docker): carried over when the tree is rebuilt.
OPERATOR_FILES: dict[Flavor, tuple[str, ...]] = {
    "docker": (".env", "docker-compose.override.yaml"),
    "native": (".env",),
}

# The settings a tree is made from (what template_context offers), as the manifest records them.
TREE_SETTINGS = ("version", "app_webroot", "app.", "source_date_epoch", "builder.", "docker.", "service.", "paths.",
                 "scale.", "swarm.")

TEMPLATE_SUFFIX = ".j2"
# Files whose name starts with this are partials for `{% include %}`, not outputs.
PARTIAL_PREFIX = "_"


@dataclass(frozen=True)
class PlannedFile:
    dest: str  # path inside the tree, POSIX
    source: Path
    render: bool
    mode: int


@dataclass(frozen=True)
class TreePlan:
    flavor: Flavor
    dest: Path
    files: tuple[PlannedFile, ...]
    binary: Path
    context: Mapping[str, Any]
    search_path: tuple[Path, ...]  # template include path: the flavor first, then common
    partials: tuple[Path, ...]


@dataclass(frozen=True)
class AssembleResult:
    flavor: Flavor
    path: Path
    up_to_date: bool
    kept: tuple[str, ...] = ()


def _walk_sources(base: Path, partials: list[Path] | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not base.is_dir():
        return found
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            src = Path(root, name)
            if name.startswith(PARTIAL_PREFIX):
                if partials is not None:
                    partials.append(src)
                continue
            rel = src.relative_to(base).as_posix()
            if rel.endswith(TEMPLATE_SUFFIX):
                rel = rel[: -len(TEMPLATE_SUFFIX)]
            found[rel] = src
    return found


def plan_tree(
    cfg: BuildConfig, flavor: Flavor, binary: Path, *, sources: Path | None = None, binary_sha256: str = ""
) -> TreePlan:
    """Every file of the tree: ``common/`` first, the flavor's files override.

    ``binary_sha256`` is offered to the templates (the Dockerfile checks the
    binary it copies against it: BuildKit may reuse a stale same-size file).
    """
    root = sources or source_root()
    partials: list[Path] = []
    merged = _walk_sources(root / "common", partials)
    merged.update(_walk_sources(root / flavor, partials))
    binary_dest = BINARY_PATH[flavor]
    if binary_dest in merged:
        raise ConfigError(f"{merged[binary_dest]}: a source file may not be named {binary_dest} (the binary goes there)")
    files = tuple(
        PlannedFile(
            dest=rel,
            source=src,
            render=src.name.endswith(TEMPLATE_SUFFIX),
            mode=0o755 if os.stat(src).st_mode & 0o111 else 0o644,
        )
        for rel, src in sorted(merged.items())
    )
    context = {**cfg.template_context(), "flavor": flavor, "binary_path": binary_dest}
    if binary_sha256:
        context["binary_sha256"] = binary_sha256
    return TreePlan(flavor=flavor, dest=Workspace(cfg.dist_dir).tree(flavor), files=files, binary=binary, context=context,
                    search_path=(root / flavor, root / "common"), partials=tuple(partials))


@functools.cache
def _environment(search_path: tuple[Path, ...] = ()):
    """One jinja2 environment per include path, reused within a process.

    StrictUndefined; the escaping functions of ``escape`` as filters (``sh``,
    ``systemd``, ``exec_arg``, ``path``, ``yaml``, ``compose``, ...); and
    ``escape.guard`` as ``finalize``: an interpolation that went through no
    filter must be a plainly safe word, else rendering fails naming it.
    """
    import jinja2

    @jinja2.pass_context
    def finalize(context, value):
        return escape.guard(value, context.name)

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        loader=jinja2.FileSystemLoader([str(p) for p in search_path]),
        auto_reload=True,
        finalize=finalize,
    )
    env.filters.update(escape.FILTERS)
    return env


def _failing_line(exc: BaseException, name: str, text: str) -> tuple[str, int | None, str]:
    """(template, line number, source line) of the template frame an exception came from."""
    where, lineno = name, None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == name or filename.endswith(TEMPLATE_SUFFIX):
            where, lineno = filename, tb.tb_lineno
        tb = tb.tb_next
    source = text if where == name else Path(where).read_text(encoding="utf-8", errors="replace")
    lines = source.splitlines()
    line = lines[lineno - 1] if lineno and lineno <= len(lines) else ""
    return where, lineno, line


def _unescaped_message(exc: escape.UnescapedValue, name: str, text: str) -> str:
    where, lineno, line = _failing_line(exc, name, text)
    exprs = [e.strip() for e in re.findall(r"\{\{-?(.*?)-?\}\}", line)]
    unfiltered = [e for e in exprs if not any(re.search(rf"\|\s*{f}\b", e) for f in escape.FILTERS)]
    shown = ", ".join(f"{{{{ {e} }}}}" for e in (unfiltered or exprs)) or "an interpolation"
    return (f"{where}:{lineno or '?'}: {shown} renders {exc.value!r} without an escaping filter; pass it "
            f"through the filter of this file's syntax ({', '.join(escape.FILTERS)}; see cloudbuilder/escape.py)")


def render_template(
    text: str, context: Mapping[str, Any], *, name: str = "<template>", search_path: tuple[Path, ...] = ()
) -> str:
    """Render one template (pure); an unknown variable, or a value that went through no
    escaping filter and is not plainly safe, is an error naming the file."""
    import jinja2

    env = _environment(search_path)
    try:
        template = env.template_class.from_code(env, env.compile(text, name, name), env.make_globals(None), None)
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise BuildError(f"{name}: {exc.message}; fix the template or add the setting") from None
    except jinja2.TemplateSyntaxError as exc:
        raise BuildError(f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise BuildError(f"{name}: includes {exc.name}, which does not exist") from None
    except escape.UnescapedValue as exc:
        raise BuildError(_unescaped_message(exc, name, text)) from None
    except escape.EscapeError as exc:
        where, lineno, _ = _failing_line(exc, name, text)
        raise BuildError(f"{where}:{lineno or '?'}: {exc}") from None


def render_file(path: Path, context: Mapping[str, Any], *, search_path: tuple[Path, ...] = ()) -> str:
    """Render the template file ``path`` (its includes are found on ``search_path``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError(f"template {path} does not exist") from None
    return render_template(text, context, name=str(path), search_path=search_path)


def fingerprint(plan: TreePlan, hashes: HashCache) -> str:
    """A hash of everything the tree is made from."""
    h = hashlib.sha256()
    head = {"tool": __version__, "flavor": plan.flavor, "context": plan.context}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for f in plan.files:
        h.update(f"\0{f.dest}\0{f.render}\0{f.mode:o}\0".encode())
        h.update(f.source.read_bytes())
    for p in plan.partials:
        h.update(f"\0partial\0{p.name}\0".encode() + p.read_bytes())
    h.update(b"\0binary\0" + hashes.digest(plan.binary).encode())
    return h.hexdigest()


def tree_stamp(ws: Workspace, flavor: Flavor) -> Stamp | None:
    """What the last assembly of ``dist/<flavor>`` recorded: inputs digest and the files it wrote."""
    return ws.stamp(flavor)


def intact_digest(cfg: BuildConfig, flavor: Flavor, ws: Workspace | None = None) -> str | None:
    """The inputs digest of ``dist/<flavor>`` while the tree is exactly as assembly wrote it.

    Lets later stages (packages, releases) know a 100+ MB tree's content
    without reading it again; None when it was edited, removed or never made.
    """
    ws = ws or Workspace(cfg.dist_dir)
    stamp = tree_stamp(ws, flavor)
    if stamp is None or not stamp.intact(ws.tree(flavor), skip=OPERATOR_FILES[flavor]):
        return None
    return stamp.inputs


def is_current(cfg: BuildConfig, flavor: Flavor, ws: Workspace | None = None) -> bool:
    """Would assembling ``dist/<flavor>`` now, from its own binary, give what it holds (same
    sources, same settings)? What a later stage asks instead of recomputing digests itself."""
    ws = ws or Workspace(cfg.dist_dir)
    stamp = tree_stamp(ws, flavor)
    binary = ws.tree(flavor) / BINARY_PATH[flavor]
    if stamp is None or not binary.is_file():
        return False
    _plan, digest = tree_fingerprint(cfg, flavor, binary, ws.hashes)
    ws.hashes.save()
    return stamp.inputs == digest


def tree_fingerprint(cfg: BuildConfig, flavor: Flavor, binary: Path, hashes: HashCache,
                     *, sources: Path | None = None) -> tuple[TreePlan, str]:
    """The plan of ``dist/<flavor>`` for this config and binary, and the hash of its inputs."""
    plan = plan_tree(cfg, flavor, binary, sources=sources, binary_sha256=hashes.digest(binary))
    return plan, fingerprint(plan, hashes)


BINARY_MODE = 0o755


def _linkable(candidate: Path, epoch: int, dev: int) -> bool:
    """A file a tree may hard-link as its binary: regular, on the tree's filesystem and
    already with the tree's mode and mtime (so linking changes nothing another tree sees)."""
    try:
        st = candidate.lstat()
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == BINARY_MODE
            and st.st_mtime_ns == epoch * 1_000_000_000 and st.st_dev == dev)


def place_binary(binary: Path, out: Path, epoch: int, link_from: Sequence[Path] = ()) -> Path | None:
    """Put the binary at ``out``: a hard link to the first linkable file of ``link_from``
    (files of the same content inside dist/), else a copy. Returns the file linked to."""
    dev = out.parent.stat().st_dev
    for candidate in link_from:
        if not _linkable(candidate, epoch, dev):
            continue
        try:
            os.link(candidate, out)
            return candidate
        except OSError as exc:  # EXDEV, EMLINK, a filesystem without hard links
            logger.info("    cannot hard-link %s (%s): copying the binary instead", candidate, exc.strerror)
    if link_from:
        logger.info("    copying the binary: no copy in %s has mode %o and mtime %d (SOURCE_DATE_EPOCH) on this "
                    "filesystem", out.parents[1] if len(out.parents) > 1 else out.parent, BINARY_MODE, epoch)
    shutil.copyfile(binary, out)
    os.chmod(out, BINARY_MODE)
    os.utime(out, (epoch, epoch))
    return None


def write_tree(plan: TreePlan, into: Path, epoch: int, link_from: Sequence[Path] = ()) -> Path | None:
    """Write the plan's files (and the binary) below ``into`` deterministically.

    The binary is hard-linked from ``link_from`` where possible (see ``place_binary``);
    returns the file it was linked to, None when it was copied.
    """
    written_dirs = {into}
    for f in plan.files:
        out = into / f.dest
        out.parent.mkdir(parents=True, exist_ok=True)
        written_dirs.update(p for p in out.parents if into in p.parents or p == into)
        if f.render:
            text = f.source.read_text(encoding="utf-8")
            out.write_text(render_template(text, plan.context, name=str(f.source), search_path=plan.search_path), encoding="utf-8")
        else:
            shutil.copyfile(f.source, out)
        os.chmod(out, f.mode)
        os.utime(out, (epoch, epoch))
    out = into / BINARY_PATH[plan.flavor]
    out.parent.mkdir(parents=True, exist_ok=True)
    written_dirs.update(p for p in out.parents if into in p.parents or p == into)
    linked = place_binary(plan.binary, out, epoch, link_from)
    for d in sorted(written_dirs, key=lambda p: len(p.parts), reverse=True):
        os.chmod(d, 0o755)
        os.utime(d, (epoch, epoch))
    return linked


def _carry_over(old: Path, new: Path) -> bool:
    """Put the operator's file ``old`` into the new tree as ``new``: a file as a copy, a symlink as a symlink.

    Anything else (a directory, a socket) is refused before the old tree is
    touched: the operator's file must never vanish in a rebuild.
    """
    if old.is_symlink():
        # the same link text: a relative target resolves the same from the new tree (a sibling, then renamed)
        os.symlink(os.readlink(old), new)
        return True
    if old.is_file():
        shutil.copy2(old, new)
        return True
    if os.path.lexists(old):
        raise BuildError(
            f"{old} is neither a file nor a symlink, so it cannot be kept when the tree is rebuilt; "
            f"nothing was changed: move it out of {old.parent} (or make it a file or a symlink) and run again"
        )
    return False


def _link_candidates(ws: Workspace, flavor: Flavor, binary: Path, digest: str) -> list[Path]:
    """Files in dist/ with the binary's content that the tree may hard-link: the binary
    itself when dist/ holds it (the build's output), then the other trees' copies.

    A file outside dist/ (--binary) is never linked: its owner may rewrite it in place.
    """
    found = []
    if binary.resolve().is_relative_to(ws.root.resolve()):
        found.append(binary)
    for other in FLAVORS:
        theirs = ws.tree(other) / BINARY_PATH[other]
        if other != flavor and theirs.is_file() and ws.hashes.digest(theirs) == digest:
            found.append(theirs)
    return found


def assemble_tree(cfg: BuildConfig, flavor: Flavor, binary: Path, *, sources: Path | None = None,
                  ws: Workspace | None = None) -> AssembleResult:
    """Build ``dist/<flavor>`` atomically, or do nothing when its inputs are unchanged.

    Records the tree in the stamp ``<flavor>`` and in the manifest (``tree/<flavor>``).
    """
    ws = ws or Workspace(cfg.dist_dir)
    hashes = ws.hashes
    plan, digest = tree_fingerprint(cfg, flavor, binary, hashes, sources=sources)
    hashes.save()
    skip = OPERATOR_FILES[flavor]
    if intact_digest(cfg, flavor, ws) == digest:
        if ws.manifest.get("tree", flavor) is None:  # a tree from before the manifest
            _record_tree(cfg, ws, plan, digest, tree_stamp(ws, flavor))
        return AssembleResult(flavor, plan.dest, up_to_date=True)

    ws.root.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temp_dir(ws.root, f".tmp-{flavor}-")
    binary_digest = hashes.digest(binary)
    try:
        linked = write_tree(plan, tmp, cfg.source_date_epoch, _link_candidates(ws, flavor, binary, binary_digest))
        kept = [rel for rel in skip if _carry_over(plan.dest / rel, tmp / rel)]
        stamp = Stamp(digest, listing(tmp, skip))
        swap_into_place(tmp, plan.dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ws.write_stamp(flavor, stamp)
    placed = plan.dest / BINARY_PATH[flavor]
    if linked is not None:
        hashes.relinked(placed)  # the other paths of the inode: a new ctime, the same bytes
        logger.info("    %s: a hard link to %s (one copy of the binary in %s)", placed, linked, ws.root)
    hashes.record(placed, binary_digest)
    hashes.save()
    _record_tree(cfg, ws, plan, digest, stamp)
    for rel in kept:
        link = plan.dest / rel
        if link.is_symlink():
            target = os.readlink(link)
            missing = "" if link.exists() else ", which does not exist"
            logger.info("    kept your %s (a symlink to %s%s)", link, target, missing)
        else:
            logger.info("    kept your %s", link)
    return AssembleResult(flavor, plan.dest, up_to_date=False, kept=tuple(kept))


def _record_tree(cfg: BuildConfig, ws: Workspace, plan: TreePlan, digest: str, stamp: Stamp | None) -> None:
    files = stamp.files if stamp else ()
    known = {BINARY_PATH[plan.flavor]: ws.sha256(plan.binary)}
    ws.record(Artifact(kind="tree", name=plan.flavor, version=cfg.version, path=ws.relative(plan.dest),
                       sha256=tree_sha256(plan.dest, files, known), inputs=digest,
                       settings=recorded_settings(cfg, TREE_SETTINGS),
                       extra={"binary_sha256": known[BINARY_PATH[plan.flavor]]}))
    ws.hashes.save()
