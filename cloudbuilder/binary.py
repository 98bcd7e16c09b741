"""The FrankenPHP binary stage: app archive -> base image -> embed image -> binary.

Cached like make:
- the base image (compiled PHP) carries a label with the hash of everything
  that affects it; it is rebuilt only when that hash changes (``--rebuild-base``
  forces it, ``--skip-base`` takes whatever base exists);
- the embed stage runs only when the app archive's content hash or the base
  image changed; otherwise no docker build runs at all;
- inside the embed build, the vendor tree is installed from composer.json and
  composer.lock alone (``embed_context`` puts them in ``deps/``), so the
  engine's layer cache reuses it while they are unchanged; each dist dir pins
  that layer with a tag (``deps_tag``), or removing the build's intermediate
  images would drop it.

``plan_stages`` is the pure decision (tested without Docker); ``build_binary``
carries it out through ``DockerEngine``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.server
import json
import os
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from . import __version__, runner
from .archive import archive_app
from .config import STANDIN_PREFIX, BuildConfig
from .engine import BuildLog, BuildStep, DockerEngine, ImageInfo, borrowed_engine
from .errors import BuildError, ConfigError
from .log import logger, step
from .reproducible import GNU_FORMAT, PAX_FORMAT, TarEntry, tar_bytes, tar_members
from .resources import source_root
from .serverconf import server_config_files
from .workspace import Artifact, Stamp, Workspace, output_of

LABEL_ROLE = "org.orangescrum.cloudbuilder.role"
LABEL_BASE_HASH = "org.orangescrum.cloudbuilder.base-hash"
LABEL_EMBED_KEY = "org.orangescrum.cloudbuilder.embed-key"
EMBED_REPOSITORY = "orangescrum-cloud-embed"
# Tags that keep each dist dir's composer-install layer (the build cache of an app-only change).
DEPS_REPOSITORY = "orangescrum-cloud-deps"
# The embed Dockerfile step that installs the vendor tree from deps/ (its layer is the one pinned).
DEPS_STEP = "RUN composer install"
DEPS_DIR = "deps"
APP_PREFIX = "app/"
BASE_DOCKERFILE = "base-build.Dockerfile"
EMBED_DOCKERFILE = "app-embed.Dockerfile"


# --------------------------------------------------------------------------
# Inputs and the pure plan
# --------------------------------------------------------------------------


def base_hash(cfg: BuildConfig, dockerfile: bytes, builder_image_id: str) -> str:
    """Everything that changes the compiled base image (the builder image by id:
    a re-pushed tag on a mirror, or a rebuilt stand-in, rebuilds the base)."""
    b = cfg.builder
    data = {
        "image": b.image, "image_id": builder_image_id, "libc": b.libc, "php": b.php_version, "extensions": list(b.php_extensions),
        "libs": list(b.php_extension_libs), "xcaddy": list(b.xcaddy_modules),
        "frankenphp": b.frankenphp_version, "platform": b.platform, "compress": b.compress,
        "dockerfile": hashlib.sha256(dockerfile).hexdigest(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def embed_key(base_image_id: str, app_sha256: str, dockerfile: bytes, cfg: BuildConfig,
              server_files: Mapping[str, bytes] | None = None) -> str:
    """Everything that changes the binary once the base is fixed (``server_files``: the
    Caddyfile and php.ini added to the app, so a changed server.* setting rebuilds)."""
    data = {
        "base": base_image_id, "app": app_sha256, "dockerfile": hashlib.sha256(dockerfile).hexdigest(),
        "composer": cfg.builder.composer_image, "platform": cfg.builder.platform, "tool": __version__,
    }
    if server_files is not None:
        data["server"] = {name: hashlib.sha256(body).hexdigest() for name, body in sorted(server_files.items())}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


BaseAction = Literal["build", "reuse"]


@dataclass(frozen=True)
class BasePlan:
    action: BaseAction
    reason: str
    image: ImageInfo | None  # the base to reuse (None when it is built)


def plan_base(want_hash: str, existing: Sequence[ImageInfo], *, skip_base: bool, rebuild_base: bool) -> BasePlan:
    """Decide what to do with the base image. ``existing``: local images labelled as bases."""
    if rebuild_base:
        return BasePlan("build", "--rebuild-base", None)
    matching = [i for i in existing if i.labels.get(LABEL_BASE_HASH) == want_hash]
    if matching:
        return BasePlan("reuse", "up to date", matching[0])
    if skip_base:
        if not existing:
            raise ConfigError(
                "skip_base is set (from --skip-base) but there is no base image yet; "
                "run once without --skip-base to build it"
            )
        newest = max(existing, key=lambda i: i.created)
        return BasePlan("reuse", "--skip-base (inputs changed; reusing the newest base)", newest)
    return BasePlan("build", "its inputs changed" if existing else "none exists yet", None)


def plan_embed(key: str, stamp: dict | None, binary_digest: str | None) -> tuple[bool, str]:
    """(run the embed stage?, why). Skipped when the last binary came from the same key."""
    if not stamp or stamp.get("embed_key") != key:
        return True, "the app or the base changed" if stamp else "no binary yet"
    if binary_digest is None:
        return True, "the binary is missing"
    if stamp.get("sha256") != binary_digest:
        return True, "the binary was modified"
    return False, "up to date"


# --------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryResult:
    path: Path
    rebuilt: bool
    base_built: bool
    embed_built: bool
    docker_steps: int  # Dockerfile steps the engine ran (0 when nothing was built)
    version_output: str = ""
    deps_cached: bool | None = None  # the composer-install layer came from the cache (None: no embed build)


def _tar(files: dict[str, bytes], extra: bytes | None = None) -> bytes:
    """A build context: ``files`` plus the members of the tar ``extra``."""
    entries = [TarEntry.file(name, data) for name, data in sorted(files.items())]
    if extra is not None:
        entries += tar_members(extra)
    return tar_bytes(entries, format=PAX_FORMAT, mtime=0)


@dataclass(frozen=True)
class EmbedContext:
    data: bytes  # the tar the engine builds from
    deps: tuple[str, ...]  # what deps/ holds (relative to the app): composer.json, composer.lock, ...
    vendor_files: int  # files of the app's own vendor dir left out (composer installs it)


def _dependency_roots(composer_json: bytes | None) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """(vendor dir, path patterns of local repositories) from composer.json; defaults when unreadable."""
    try:
        meta = json.loads(composer_json or b"{}")
    except ValueError:
        return "vendor", ()  # composer itself will say what is wrong with it
    if not isinstance(meta, dict):
        return "vendor", ()
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    vendor = str(config.get("vendor-dir") or "vendor").strip("/").removeprefix("./") or "vendor"
    repos = meta.get("repositories")
    repos = repos.values() if isinstance(repos, dict) else repos if isinstance(repos, list) else []
    roots = []
    for repo in repos:
        # path and artifact repositories live in the app: composer install needs them too
        if isinstance(repo, dict) and repo.get("type") in ("path", "artifact") and isinstance(repo.get("url"), str):
            parts = PurePosixPath(repo["url"]).parts
            parts = tuple(p for p in parts if p != ".")
            if parts and not PurePosixPath(repo["url"]).is_absolute() and ".." not in parts:
                roots.append(parts)
    return vendor, tuple(roots)


def _is_dependency_input(rel: str, roots: tuple[tuple[str, ...], ...]) -> bool:
    if rel in ("composer.json", "composer.lock"):
        return True
    parts = PurePosixPath(rel).parts
    return any(len(parts) >= len(r) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, r)) for r in roots)


def embed_context(dockerfile: bytes, archive: bytes, server_files: Mapping[str, bytes] | None = None) -> EmbedContext:
    """The embed build's context: the Dockerfile, ``deps/`` and ``app/`` (pure).

    ``server_files`` (name -> content: the rendered Caddyfile and php.ini) are
    added at the app's root, replacing files of the app with those names.

    ``deps/`` holds what ``composer install`` reads (composer.json, composer.lock
    and the app's path/artifact repositories), so that step's layer depends on
    nothing else.  ``app/`` is the archive without the app's own vendor dir:
    the image's vendor tree is the one composer installed, as with
    ``composer install --no-dev`` over a clean checkout.
    """
    members = list(tar_members(archive))
    composer_json = next((e.data for e in members if e.name == APP_PREFIX + "composer.json" and e.kind == "file"),
                         None)
    vendor, roots = _dependency_roots(composer_json)
    deps: list[str] = []
    vendor_files = 0
    # COPY deps/ needs the directory even for an app without composer.json
    entries = [TarEntry.file(EMBED_DOCKERFILE, dockerfile), TarEntry.dir(DEPS_DIR)]
    server_files = dict(server_files or {})
    for e in members:
        rel = e.name.removeprefix(APP_PREFIX).rstrip("/")
        if not e.name.startswith(APP_PREFIX) or rel in server_files:
            continue
        if rel == vendor or rel.startswith(vendor + "/"):
            vendor_files += int(e.kind == "file")
            continue
        entries.append(e)
        if _is_dependency_input(rel, roots):
            entries.append(replace(e, name=f"{DEPS_DIR}/{rel}"))
            if e.kind == "file":
                deps.append(rel)
    entries += [TarEntry.file(APP_PREFIX + name, body) for name, body in sorted(server_files.items())]
    return EmbedContext(tar_bytes(entries, format=GNU_FORMAT, mtime=0), tuple(deps), vendor_files)


def deps_tag(dist_dir: Path) -> str:
    """The tag that pins this dist dir's composer-install layer (one per dist dir, so two
    checkouts on one engine never remove each other's cache)."""
    return f"{DEPS_REPOSITORY}:{hashlib.sha256(str(dist_dir.resolve()).encode()).hexdigest()[:16]}"


def remove_deps_tag(dist_dir: Path, engine: DockerEngine) -> str | None:
    """Untag ``deps_tag(dist_dir)`` (`invoke clean`); the tag removed, or None when there was none.

    Only this dist dir's tag: the other checkouts' and test runs' on the same engine stay.
    """
    tag = deps_tag(dist_dir)
    return tag if engine.untag(tag) else None


def deps_step(steps: Sequence[BuildStep]) -> BuildStep | None:
    """The embed build's composer-install step, from its step log."""
    return next((s for s in steps if s.instruction.startswith(DEPS_STEP)), None)


@contextmanager
def token_server(token: str | None) -> Iterator[str]:
    """Serve the GitHub token once-per-request on a random loopback URL during a build.

    The token reaches the build step's shell through ``curl``; it never is a
    build arg, an ENV or a file in a layer.  Yields "" when there is no token.
    """
    if not token:
        yield ""
        return
    path = "/" + secrets.token_urlsafe(24)
    body = token.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path != path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()


def _log_path(cfg: BuildConfig, stage: str) -> Path:
    return Workspace(cfg.dist_dir).log_path(stage)


def _host_arch() -> str:
    return os.uname().machine


def _ensure_builder_image(engine: DockerEngine, cfg: BuildConfig) -> str:
    """The builder image's id, after building (stand-in) or pulling it if needed."""
    ref = cfg.builder.image
    if ref.startswith(STANDIN_PREFIX):
        from .standin import ensure_standin_image

        with step(f"Stand-in builder image {ref}"):
            return ensure_standin_image(engine, ref)
    return engine.ensure_image(
        ref,
        f"set builder.image (OSCB_BUILDER_IMAGE) to a mirror that has it, or to the local stand-in "
        f"{STANDIN_PREFIX}static-builder:{cfg.builder.frankenphp_version} for an offline test build",
    ).id


def verify_binary(path: Path, workdir: Path) -> str:
    """Run ``binary version``; returns its first line or raises BuildError."""
    tmp = workdir / "verify-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        done = runner.run([str(path), "version"], what="the built binary", timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)})
    except (runner.ProgramNotFound, runner.NotStartable) as exc:
        raise BuildError(f"the built binary does not run ({exc}); see the build log under {workdir.parent / 'logs'}") from None
    if done.returncode != 0:
        raise BuildError(f"`{path.name} version` failed with exit code {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip()[:300]}")
    return (done.stdout.strip().splitlines() or [""])[0]


def build_binary(cfg: BuildConfig, engine: DockerEngine | None = None) -> BinaryResult:
    """Build (or reuse) the binary and place it at ``dist/build/osv4-prod`` (stamp and manifest: ``binary``)."""
    ws = Workspace(cfg.dist_dir)
    out = ws.built_binary
    build_dir = out.parent
    sources = source_root() / "builder"
    base_df = (sources / BASE_DOCKERFILE).read_bytes()
    embed_df = (sources / EMBED_DOCKERFILE).read_bytes()

    with step(f"Archiving the app {cfg.app}"):
        archive = archive_app(cfg.app, epoch=cfg.source_date_epoch,
                              allow_external_symlinks=cfg.app_external_symlinks)
        logger.info("    %s: %d files, %.1f MB, sha256 %s", archive.method, archive.files,
                    len(archive.data) / 1e6, archive.sha256[:12])

    with borrowed_engine(engine) as engine:
        repo = cfg.builder.base_repository
        bases = [i for i in engine.images_with_label(LABEL_ROLE, "base")
                 if any(t.rsplit(":", 1)[0] == repo for t in i.tags)]
        # --skip-base must not need the builder image (it may be gone, or slow to fetch)
        builder_id = "" if cfg.run.skip_base and bases else _ensure_builder_image(engine, cfg)
        want = base_hash(cfg, base_df, builder_id)
        base_plan = plan_base(want, bases, skip_base=cfg.run.skip_base, rebuild_base=cfg.run.rebuild_base)
        steps = 0
        base_built = False
        if base_plan.action == "build":
            slow = "" if cfg.builder.image.startswith(STANDIN_PREFIX) else "; a cold build takes 20-60 min"
            with step(f"Building the base image ({base_plan.reason}){slow}"):
                log = BuildLog(_log_path(cfg, "base"), "base", redact=(cfg.github_token or "",))
                tag = f"{cfg.builder.base_repository}:{want[:16]}"
                replaced = [i.id for i in bases if tag in i.tags or f"{repo}:latest" in i.tags]
                with token_server(cfg.github_token) as url:
                    # --rebuild-base means from scratch: no layer of the engine's cache is reused
                    base_id = engine.build(
                        context=_tar({BASE_DOCKERFILE: base_df}), dockerfile=BASE_DOCKERFILE, tag=tag,
                        buildargs=_base_args(cfg, url), log=log, network_mode="host" if url else None,
                        labels={LABEL_ROLE: "base", LABEL_BASE_HASH: want},
                        platform=_platform_arg(cfg), nocache=cfg.run.rebuild_base,
                    )
                engine.tag(base_id, cfg.builder.base_repository, "latest")
                for old_id in replaced:  # the base it replaced, once nothing refers to it any more
                    if old_id != base_id and engine.remove_if_unused(old_id):
                        logger.info("    removed the replaced base image %s", old_id[:19])
                steps += log.steps
                base_built = True
                logger.info("    base image %s (log: %s)", tag, log.path)
        else:
            assert base_plan.image is not None
            base_id = base_plan.image.id
            logger.info("==> Base image: reusing %s (%s)", base_plan.image.tags[0] if base_plan.image.tags
                        else base_id[:19], base_plan.reason)

        server_files = server_config_files(cfg)
        key = embed_key(base_id, archive.sha256, embed_df, cfg, server_files)
        stamp = ws.stamp("binary")
        hashes = ws.hashes
        digest = hashes.digest(out) if out.is_file() else None
        run_embed, why = plan_embed(key, stamp and {"embed_key": stamp.inputs, **stamp.facts}, digest)
        if not run_embed:
            hashes.save()
            if ws.manifest.get("binary", out.name) is None:  # built before the manifest
                _record_binary(cfg, ws, out, key, digest or "")
            logger.info("==> Binary: up to date (%s)", out)
            return BinaryResult(out, rebuilt=False, base_built=base_built, embed_built=False, docker_steps=steps)

        if cfg.builder.composer_image != cfg.builder.image:
            engine.ensure_image(cfg.builder.composer_image,
                                "set builder.composer_image (OSCB_BUILDER_COMPOSER_IMAGE) to an image with composer")
        with step(f"Embedding the app into the binary ({why})"):
            context = embed_context(embed_df, archive.data, server_files)
            if context.vendor_files:
                logger.info("    left out the app's vendor/ (%d files): composer installs it from %s",
                            context.vendor_files, ", ".join(context.deps) or "composer.json")
            if cfg.run.keep_package:
                build_dir.mkdir(parents=True, exist_ok=True)
                (build_dir / "embed-context.tar").write_bytes(context.data)
                logger.info("    kept the build context: %s", build_dir / "embed-context.tar")
            log = BuildLog(_log_path(cfg, "embed"), "embed", redact=(cfg.github_token or "",))
            tag = f"{EMBED_REPOSITORY}:{key[:16]}"
            with token_server(cfg.github_token) as url:
                # the Dockerfile labels the image (LABEL_ROLE=embed, LABEL_EMBED_KEY) in one step
                embed_id = engine.build(
                    context=context.data, dockerfile=EMBED_DOCKERFILE, tag=tag,
                    buildargs={"BASE_IMAGE": base_id, "COMPOSER_IMAGE": cfg.builder.composer_image,
                               "SECRET_URL": url, "EMBED_KEY": key},
                    labels={}, log=log, network_mode="host" if url else None, platform=_platform_arg(cfg),
                    remove_stages=False,
                )
            steps += log.steps
            deps = deps_step(log.step_records)
            deps_cached = bool(deps and deps.cached)
            if deps is not None and deps.layer:
                # before the composer stage's image goes, or its untagged parents go with it
                _pin_deps_layer(engine, deps_tag(cfg.dist_dir), deps.layer)
            engine.remove_stage_images(log.stage_images, keep=embed_id)
            if deps is not None:
                logger.info("    dependencies (%s): %s", ", ".join(context.deps) or "no composer.json",
                            "reused from the layer cache" if deps.cached else "installed")
            try:
                data = engine.read_file(tag, f"/go/src/app/dist/frankenphp-linux-{cfg.builder.arch}")
            finally:
                if not cfg.run.keep_package:
                    engine.remove_image(tag)
        build_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o755)
        # deterministic, and what the trees want: they hard-link this file when its mode
        # and mtime are already theirs (assemble never changes a linked file's metadata)
        os.utime(tmp, (cfg.source_date_epoch, cfg.source_date_epoch))
        version = ""
        if cfg.builder.arch == _host_arch():
            version = verify_binary(tmp, build_dir)
            logger.info("    verified: %s", version)
        else:
            logger.info("    not run: the binary is for %s, this host is %s", cfg.builder.arch, _host_arch())
        os.replace(tmp, out)
        ws.write_stamp("binary", Stamp(key, (output_of(build_dir, out.name),), {"sha256": hashes.digest(out)}))
        hashes.save()
        _record_binary(cfg, ws, out, key, hashes.digest(out))
        logger.info("    binary: %s (%.1f MB)", out, out.stat().st_size / 1e6)
        return BinaryResult(out, rebuilt=True, base_built=base_built, embed_built=True, docker_steps=steps,
                            version_output=version, deps_cached=deps_cached)


# The settings the binary is made from, as the manifest records them.
BINARY_SETTINGS = ("app", "source_date_epoch", "builder.", "server.", "service.listen", "paths.state_dir",
                   "paths.config_dir", "app_webroot")


def _record_binary(cfg: BuildConfig, ws: Workspace, out: Path, key: str, sha256: str) -> None:
    from .config import recorded_settings

    ws.record(Artifact(kind="binary", name=out.name, version=cfg.version, path=ws.relative(out), sha256=sha256,
                       inputs=key, settings=recorded_settings(cfg, BINARY_SETTINGS)))


def _pin_deps_layer(engine: DockerEngine, tag: str, layer: str) -> None:
    """Point ``tag`` at the composer-install layer; drop the layer it pinned before if unused."""
    repository, name = tag.split(":", 1)
    before = engine.image(tag)
    now = engine.image(layer)
    if now is None or (before is not None and before.id == now.id):
        return
    engine.tag(now.id, repository, name)
    if before is not None:
        engine.remove_if_unused(before.id)


def _platform_arg(cfg: BuildConfig) -> str | None:
    """Only pass --platform for a cross build (the classic builder is picky about it)."""
    return None if cfg.builder.arch == _host_arch() else cfg.builder.platform


def _base_args(cfg: BuildConfig, secret_url: str) -> dict[str, str]:
    b = cfg.builder
    return {
        "BUILDER_IMAGE": b.image,
        "PHP_VERSION": b.php_version,
        "PHP_EXTENSIONS": ",".join(b.php_extensions),
        "PHP_EXTENSION_LIBS": ",".join(b.php_extension_libs),
        "FRANKENPHP_VERSION": b.frankenphp_version,
        "XCADDY_MODULES": ",".join(b.xcaddy_modules),
        # UPX is opt-in with COMPRESS since FrankenPHP 1.12.4, opt-out with NO_COMPRESS before.
        "COMPRESS": "1" if b.compress else "",
        "NO_COMPRESS": "" if b.compress else "1",
        "SECRET_URL": secret_url,
    }
