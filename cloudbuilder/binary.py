"""The FrankenPHP binary stage: app archive -> base image -> embed image -> binary.

Cached like make:
- the base image (compiled PHP) carries a label with the hash of everything
  that affects it; it is rebuilt only when that hash changes (``--rebuild-base``
  forces it, ``--skip-base`` takes whatever base exists);
- the embed stage runs only when the app archive's content hash or the base
  image changed; otherwise no docker build runs at all.

``plan_stages`` is the pure decision (tested without Docker); ``build_binary``
carries it out through ``DockerEngine``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import secrets
import subprocess
import tarfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import __version__
from .archive import archive_app
from .config import STANDIN_PREFIX, BuildConfig
from .engine import BuildLog, DockerEngine, ImageInfo, borrowed_engine
from .errors import BuildError, ConfigError
from .log import logger, step
from .resources import source_root
from .workspace import Artifact, Stamp, Workspace, output_of

LABEL_ROLE = "org.orangescrum.cloudbuilder.role"
LABEL_BASE_HASH = "org.orangescrum.cloudbuilder.base-hash"
LABEL_EMBED_KEY = "org.orangescrum.cloudbuilder.embed-key"
EMBED_REPOSITORY = "orangescrum-cloud-embed"
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


def embed_key(base_image_id: str, app_sha256: str, dockerfile: bytes, cfg: BuildConfig) -> str:
    """Everything that changes the binary once the base is fixed."""
    data = {
        "base": base_image_id, "app": app_sha256, "dockerfile": hashlib.sha256(dockerfile).hexdigest(),
        "composer": cfg.builder.composer_image, "platform": cfg.builder.platform, "tool": __version__,
    }
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


def _tar(files: dict[str, bytes], extra: bytes | None = None) -> bytes:
    """A build context: ``files`` plus the members of the tar ``extra``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            out.addfile(info, io.BytesIO(data))
        if extra is not None:
            with tarfile.open(fileobj=io.BytesIO(extra)) as src:
                for m in src.getmembers():
                    out.addfile(m, src.extractfile(m) if m.isfile() else None)
    return buf.getvalue()


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
            return ensure_standin_image(engine.client, ref)
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
        done = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)}, check=False)
    except OSError as exc:
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
                with token_server(cfg.github_token) as url:
                    base_id = engine.build(
                        context=_tar({BASE_DOCKERFILE: base_df}), dockerfile=BASE_DOCKERFILE, tag=tag,
                        buildargs=_base_args(cfg, url), log=log, network_mode="host" if url else None,
                        labels={LABEL_ROLE: "base", LABEL_BASE_HASH: want},
                        platform=_platform_arg(cfg),
                    )
                engine.tag(base_id, cfg.builder.base_repository, "latest")
                steps += log.steps
                base_built = True
                logger.info("    base image %s (log: %s)", tag, log.path)
        else:
            assert base_plan.image is not None
            base_id = base_plan.image.id
            logger.info("==> Base image: reusing %s (%s)", base_plan.image.tags[0] if base_plan.image.tags
                        else base_id[:19], base_plan.reason)

        key = embed_key(base_id, archive.sha256, embed_df, cfg)
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
            context = _tar({EMBED_DOCKERFILE: embed_df}, extra=archive.data)
            if cfg.run.keep_package:
                build_dir.mkdir(parents=True, exist_ok=True)
                (build_dir / "embed-context.tar").write_bytes(context)
                logger.info("    kept the build context: %s", build_dir / "embed-context.tar")
            log = BuildLog(_log_path(cfg, "embed"), "embed", redact=(cfg.github_token or "",))
            tag = f"{EMBED_REPOSITORY}:{key[:16]}"
            with token_server(cfg.github_token) as url:
                engine.build(
                    context=context, dockerfile=EMBED_DOCKERFILE, tag=tag,
                    buildargs={"BASE_IMAGE": base_id, "COMPOSER_IMAGE": cfg.builder.composer_image,
                               "SECRET_URL": url},
                    labels={LABEL_ROLE: "embed", LABEL_EMBED_KEY: key}, log=log,
                    network_mode="host" if url else None, platform=_platform_arg(cfg),
                )
            steps += log.steps
            try:
                data = engine.read_file(tag, f"/go/src/app/dist/frankenphp-linux-{cfg.builder.arch}")
            finally:
                if not cfg.run.keep_package:
                    engine.remove_image(tag)
        build_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o755)
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
                            version_output=version)


# The settings the binary is made from, as the manifest records them.
BINARY_SETTINGS = ("app", "source_date_epoch", "builder.")


def _record_binary(cfg: BuildConfig, ws: Workspace, out: Path, key: str, sha256: str) -> None:
    from .config import recorded_settings

    ws.record(Artifact(kind="binary", name=out.name, version=cfg.version, path=ws.relative(out), sha256=sha256,
                       inputs=key, settings=recorded_settings(cfg, BINARY_SETTINGS)))


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
