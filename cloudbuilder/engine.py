"""The one adapter to the Docker engine (docker SDK): builds, images, archives.

Nothing else in the package imports ``docker``.  Foreign exceptions are turned
into our errors here, with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BuildError, PrerequisiteError
from .log import logger

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
LAYER_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
TAIL_LINES = 25


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: str


class BuildLog:
    """Streams a build's output: step lines to the logger, everything to a file."""

    def __init__(self, path: Path, stage: str, redact: tuple[str, ...] = ()) -> None:
        self.path = path
        self.stage = stage
        self.redact = tuple(r for r in redact if r)
        self.tail: list[str] = []
        self.steps = 0
        # The last image of each finished build stage (the classic builder
        # leaves them behind untagged in multi-stage builds).
        self.stage_images: list[str] = []
        self._last_layer: str | None = None
        self.started = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def line(self, text: str) -> None:
        for secret in self.redact:
            text = text.replace(secret, "***")
        self._file.write(text + "\n")
        self.tail = (self.tail + [text])[-TAIL_LINES:]
        layer = LAYER_RE.match(text)
        if layer:
            self._last_layer = layer.group(1)
        m = STEP_RE.match(text)
        if m and m.group(3).upper().startswith("FROM ") and self._last_layer and self.steps > 0:
            self.stage_images.append(self._last_layer)
        if m:
            self.steps += 1
            logger.info("    [%s %5.1fs] step %s/%s: %s", self.stage, time.monotonic() - self.started,
                        m.group(1), m.group(2), m.group(3)[:100])
        elif text.startswith("==> "):  # the builder's own progress lines
            logger.info("    [%s %5.1fs] %s", self.stage, time.monotonic() - self.started, text[4:][:100])

    def close(self) -> None:
        self._file.close()

    def failure(self, what: str) -> BuildError:
        tail = "\n".join("    | " + t for t in self.tail)
        return BuildError(f"{what}; last lines of the log:\n{tail}\nfull log: {self.path}")


class DockerEngine:
    """A connection to the engine; use as a context manager."""

    def __init__(self, timeout: int = 3600) -> None:
        try:
            import docker
            import docker.errors

            self._errors = docker.errors
            self.client = docker.from_env(timeout=timeout)
            self.client.ping()
        except Exception as exc:  # DockerException, requests errors, FileNotFoundError...
            raise PrerequisiteError(
                f"cannot reach the Docker engine ({str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__}); "
                "install docker.io and start it (`systemctl start docker` or `dockerd &`), "
                "or pass --binary to package a prebuilt binary"
            ) from None

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.close()

    # -- images -------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        try:
            img = self.client.images.get(ref)
        except self._errors.ImageNotFound:
            return None
        except self._errors.APIError as exc:
            raise BuildError(f"inspecting image {ref} failed: {exc.explanation or exc}") from None
        return _info(img)

    def images_with_label(self, label: str, value: str | None = None) -> list[ImageInfo]:
        flt = f"{label}={value}" if value is not None else label
        return [_info(i) for i in self.client.images.list(filters={"label": flt})]

    def ensure_image(self, ref: str, hint: str) -> ImageInfo:
        """The image, pulled if it is not local; a clear error naming ``hint`` if it cannot be."""
        info = self.image(ref)
        if info is not None:
            return info
        logger.info("    pulling %s", ref)
        try:
            self.client.images.pull(ref)
        except Exception as exc:
            raise PrerequisiteError(
                f"image {ref} is not available locally and cannot be pulled "
                f"({str(exc).splitlines()[0][:160]}); {hint}"
            ) from None
        info = self.image(ref)
        assert info is not None
        return info

    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)
        except self._errors.ImageNotFound:
            pass

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self.client.images.get(image_id).tag(repository, tag)

    # -- builds -------------------------------------------------------------

    def build(
        self,
        *,
        context: bytes,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        log: BuildLog,
        network_mode: str | None = None,
        platform: str | None = None,
    ) -> str:
        """Build from an in-memory tar context; returns the image id. Streams into ``log``."""
        image_id = None
        error = None
        try:
            stream = self.client.api.build(
                fileobj=io.BytesIO(context), custom_context=True, dockerfile=dockerfile, tag=tag,
                buildargs=dict(buildargs), labels=dict(labels), rm=True, forcerm=True, decode=True,
                network_mode=network_mode, platform=platform,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for text in chunk["stream"].splitlines():
                        if text.strip():
                            log.line(text.rstrip())
                elif "error" in chunk:
                    error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    log.line(f"ERROR: {error}")
                elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                elif "status" in chunk:
                    log.line(chunk["status"] + (" " + chunk["progress"] if chunk.get("progress") else ""))
        except self._errors.APIError as exc:
            error = exc.explanation or str(exc)
            log.line(f"ERROR: {error}")
        finally:
            log.close()
        if error is not None:
            raise log.failure(f"docker build of {tag} failed: {error.splitlines()[0][:200]}")
        if image_id is None:
            info = self.image(tag)
            if info is None:
                raise log.failure(f"docker build of {tag} produced no image")
            image_id = info.id
        self._remove_stage_images(log.stage_images, keep=image_id)
        return image_id

    def _remove_stage_images(self, ids: list[str], keep: str) -> None:
        """Drop the untagged images of earlier stages (a composer stage is ~250 MB per app change)."""
        for short in ids:
            try:
                img = self.client.images.get(short)
                if img.tags or img.id == keep:
                    continue
                self.client.images.remove(img.id, noprune=False)
            except (self._errors.ImageNotFound, self._errors.APIError):
                pass  # in use by another image or container: leave it

    def read_file(self, image: str, path: str) -> bytes:
        """One file out of an image, via a created (never started) container and the archive API."""
        container = self.client.containers.create(image, command=["true"], entrypoint=[])
        try:
            stream, _stat = container.get_archive(path)
            raw = b"".join(stream)
        except self._errors.NotFound:
            raise BuildError(f"{path} is not in image {image}: the builder did not produce the binary") from None
        finally:
            container.remove(force=True)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None:
                raise BuildError(f"{path} in image {image} is not a regular file")
            f = tar.extractfile(member)
            assert f is not None
            return f.read()


def _info(img: Any) -> ImageInfo:
    attrs = img.attrs
    return ImageInfo(
        id=img.id,
        tags=tuple(img.tags),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        created=attrs.get("Created", ""),
    )


@contextlib.contextmanager
def borrowed_engine(engine: DockerEngine | None) -> Iterator[DockerEngine]:
    """The engine the orchestrator handed down, or (a stage called on its own) one opened and closed here."""
    if engine is not None:
        yield engine
        return
    with DockerEngine() as opened:
        yield opened
