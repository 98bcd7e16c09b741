"""The one adapter to the Docker engine (docker SDK): builds, images, archives.

Nothing else in the package imports ``docker`` (tests/unit/test_architecture.py
checks it).  Foreign exceptions are turned into our errors here, with a message
that says what to do.  Code that is handed a raw SDK client (the tests' fixture)
wraps it with ``as_engine``.
"""

from __future__ import annotations

import contextlib
import io
import json
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
CACHED_RE = re.compile(r"^ ---> Using cache$")
TAIL_LINES = 25


@dataclass
class BuildStep:
    """One Dockerfile step as the classic builder reported it."""

    number: int
    instruction: str
    cached: bool = False  # "Using cache": no container ran for it
    layer: str | None = None  # the image id after the step (short)


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
        self.step_records: list[BuildStep] = []
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
            if self.step_records and self.step_records[-1].layer is None:
                self.step_records[-1].layer = layer.group(1)
        if CACHED_RE.match(text) and self.step_records:
            self.step_records[-1].cached = True
        m = STEP_RE.match(text)
        if m and m.group(3).upper().startswith("FROM ") and self._last_layer and self.steps > 0:
            self.stage_images.append(self._last_layer)
        if m:
            self.steps += 1
            self.step_records.append(BuildStep(int(m.group(1)), m.group(3)))
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

    @classmethod
    def from_client(cls, client: Any) -> DockerEngine:
        """Wrap an SDK client someone else opened (and closes): no ping, not to be used with ``with``."""
        import docker.errors

        engine = cls.__new__(cls)
        engine._errors = docker.errors
        engine.client = client
        return engine

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

    def find_image(self, ref: str, what: str) -> ImageInfo | None:
        """The image, or None when there is none; ``PrerequisiteError`` naming ``what`` if the engine fails."""
        try:
            return _info(self.client.images.get(ref))
        except self._errors.ImageNotFound:
            return None
        except self._errors.DockerException as exc:
            raise PrerequisiteError(f"{what}: cannot reach the docker engine: {exc}") from None

    def discard_image(self, image_id: str) -> None:
        """Remove an image nobody needs any more; keep it if a container or another image still uses it."""
        try:
            self.client.images.remove(image_id, noprune=False)
        except self._errors.DockerException:
            pass

    def import_image(self, tarball: Path, tag: str, changes: list[str]) -> None:
        """``docker import`` of a rootfs tarball as ``tag``; ``PrerequisiteError`` when the engine refuses it."""
        repository, _, version = tag.rpartition(":")
        if not repository or "/" in version:  # no tag part ("registry:5000/repo")
            repository, version = tag, "latest"
        try:
            result = self.client.api.import_image(src=str(tarball), repository=repository, tag=version,
                                                  changes=changes)
        except self._errors.DockerException as exc:
            raise PrerequisiteError(f"image {tag}: docker import of {tarball} failed: {exc}") from None
        # The daemon answers with JSON lines; an error arrives as {"error": ...}.
        for line in str(result).splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("error"):
                raise PrerequisiteError(f"image {tag}: docker import of {tarball} failed: {message['error']}")

    def build_directory(self, path: Path, *, dockerfile: str, tag: str, buildargs: Mapping[str, str],
                        labels: Mapping[str, str], what: str) -> str:
        """Build the context directory ``path`` (never pulling); the image id. Output goes to the debug log."""
        try:
            image, stream = self.client.images.build(
                path=str(path), dockerfile=dockerfile, buildargs=dict(buildargs), tag=tag, labels=dict(labels),
                rm=True, forcerm=True, pull=False,
            )
        except self._errors.BuildError as exc:
            tail = "".join(chunk.get("stream", "") or chunk.get("error", "") for chunk in exc.build_log)
            tail = "\n".join(tail.strip().splitlines()[-15:])
            raise BuildError(f"{what}: docker build of {tag} failed: {exc.msg}\n{tail}") from None
        except self._errors.DockerException as exc:
            raise BuildError(f"{what}: docker build of {tag} failed: {exc}") from None
        for chunk in stream:
            text = (chunk.get("stream") or "").rstrip()
            if text:
                logger.debug("    %s", text)
        return image.id

    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)
        except self._errors.ImageNotFound:
            pass

    def untag(self, ref: str) -> bool:
        """Remove the tag ``ref`` (the image too when it was its last tag and nothing uses it); False: no such tag."""
        try:
            self.client.images.remove(ref, noprune=False)
        except self._errors.ImageNotFound:
            return False
        except self._errors.APIError as exc:
            raise BuildError(f"cannot remove the image tag {ref}: {exc.explanation or exc}") from None
        return True

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self.client.images.get(image_id).tag(repository, tag)

    def remove_if_unused(self, image_id: str) -> bool:
        """Remove an image (and its untagged parents) unless it is tagged, has children or is in use."""
        try:
            if self.client.images.get(image_id).tags:
                return False
            self.client.images.remove(image_id, noprune=False)
        except (self._errors.ImageNotFound, self._errors.APIError):
            return False
        return True

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
        nocache: bool = False,
        remove_stages: bool = True,
    ) -> str:
        """Build from an in-memory tar context; returns the image id. Streams into ``log``.

        ``nocache``: run every step, reusing no layer (a real rebuild).  With
        ``remove_stages`` False the caller removes the earlier stages' images
        itself (``remove_stage_images``), after tagging a layer it wants kept.
        """
        image_id = None
        error = None
        try:
            stream = self.client.api.build(
                fileobj=io.BytesIO(context), custom_context=True, dockerfile=dockerfile, tag=tag,
                buildargs=dict(buildargs), labels=dict(labels), rm=True, forcerm=True, decode=True,
                network_mode=network_mode, platform=platform, nocache=nocache,
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
        if remove_stages:
            self.remove_stage_images(log.stage_images, keep=image_id)
        return image_id

    def remove_stage_images(self, ids: list[str], keep: str) -> None:
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


def as_engine(engine_or_client: DockerEngine | Any) -> DockerEngine:
    """``engine_or_client`` as an engine: a ``DockerEngine`` as it is, an SDK client wrapped."""
    if isinstance(engine_or_client, DockerEngine):
        return engine_or_client
    return DockerEngine.from_client(engine_or_client)


def engine_status(timeout: int = 5) -> str | None:
    """``engine <version>`` when the engine answers, else why not (for `invoke check`)."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
        version = client.version().get("Version", "?")
        client.close()
    except Exception as exc:  # the SDK raises many kinds; all mean "not reachable"
        return str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
    return f"engine {version}"


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
