"""`invoke demo`: the whole pipeline, offline, on the bundled example app.

It selects the local stand-in builder and a locally imported Debian runtime
image through the ordinary settings (``builder.image``,
``docker.runtime_image``), writes a demo env file with random secrets, and runs
`build` as a user would.  Flags, the environment and invoke.yaml still win.
"""

from __future__ import annotations

import os
import secrets
import string
import time
import urllib.request
from pathlib import Path

from .config import Layer
from .escape import docker_tag
from .fsutil import write_atomic
from .log import step
from .resources import source_root
from .workspace import Workspace

DEMO_APP = "examples/orangescrum-demo"
RUNTIME_ROOTFS_NAME = "runtime"
# The source of the runtime image's userland (docker/Dockerfile: busybox-static, the CA bundle;
# tzdata is in every Debian minbase).
RUNTIME_PACKAGES = ("busybox-static", "ca-certificates")


def example_app_path() -> Path:
    return source_root() / DEMO_APP


def demo_layer(client) -> Layer:
    """The demo's settings: lowest precedence above the defaults."""
    from .standin import DEFAULT_STANDIN_IMAGE, ensure_rootfs_image

    with step("Local Debian runtime image (debootstrap, cached)"):
        runtime = ensure_rootfs_image(client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES)
    return Layer("invoke demo", {
        "app": str(example_app_path()),
        "builder.image": DEFAULT_STANDIN_IMAGE,
        "docker.runtime_image": runtime,
        # The demo's database is fake (db.invalid): no migration step, or the
        # `migrate` service would fail and app and queue would never start.
        "app.migrate_command": "",
    })


def _secret(n: int = 24) -> str:
    # letters, digits and one of each class the validator wants
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n)) + "aZ9_"


def write_demo_env(path: Path, port: int) -> Path:
    """A valid deployment env for the demo (random secrets, mode 0600); kept if it exists."""
    if path.is_file():
        return path
    lines = [
        "# Written by `invoke demo`: random secrets, fake backing services. Not for production.",
        f"FULL_BASE_URL=https://demo.orangescrum.test:{port}",
        "DEBUG=false",
        f"SECURITY_SALT={secrets.token_hex(32)}",
        "DB_HOST=db.invalid",
        "DB_PORT=5432",
        "DB_USERNAME=orangescrum",
        f"DB_PASSWORD={_secret()}",
        "DB_NAME=orangescrum",
        "REDIS_HOST=redis.invalid",
        "REDIS_PORT=6379",
        "QUEUE_WORKER_MAX_RUNTIME=3600",
    ]
    write_atomic(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
    return path


def wait_healthy(url: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback URL
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def report(cfg, summary, deployed: bool, env_file: Path | None) -> list[str]:
    rel = lambda p: os.path.relpath(p)  # noqa: E731 - short paths read better
    lines = ["", "Demo artifacts:"]
    if summary.binary:
        lines.append(f"  binary            {rel(summary.binary)}")
    for tree in summary.trees:
        lines.append(f"  dist/{tree.flavor:<12} {rel(tree.path)}")
    ws = Workspace(cfg.dist_dir)
    lines.append(f"  build logs        {rel(ws.logs_dir)}")
    if deployed and env_file:
        lines.append(f"  runtime image     {cfg.docker.image_name}:{docker_tag(cfg.version)}")
        lines.append(f"  demo env file     {rel(env_file)} (random secrets)")
        lines.append(f"  running app       http://{cfg.docker.bind_address}:{cfg.docker.host_port}/  "
                     f"(/healthz, /settings)")
        lines.append(f"  stop it           cd {rel(ws.docker_tree)} && "
                     f"ORANGESCRUM_ENV_FILE={env_file.resolve()} docker compose down")
    return lines
