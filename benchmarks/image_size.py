#!/usr/bin/env python3
"""Runtime overhead of the Docker image over the binary it carries, and its time to healthy.

    python benchmarks/image_size.py [--runs 3] [--json]         build the demo image, then measure
    python benchmarks/image_size.py --image REF [--json]         sizes of an image you built

Without --image it does what a user does, in a scratch directory: `invoke build
--skip-deploy` of the example app with the local stand-in builder, then `invoke
docker.image` (the runtime base is the locally imported Debian rootfs of `invoke
demo`), then --runs times `docker compose up -d` in dist/docker (a demo .env
with random secrets, a free port) until the app container is healthy, and
`docker compose down -v`. Everything it made is removed at the end (project
`oscb-image-bench-*`, image `localhost/oscb-image-bench-*/orangescrum`).

Prints: the binary size (read inside the image, /opt/orangescrum/bin/orangescrum),
the image size, the overhead (image minus binary; goal: 5 MB or less, issue 13),
the files of the image other than the binary with their sizes, and the median
seconds from `up -d` to healthy. The health check runs every 15 s
(docker-compose.yaml), so that figure is bounded below by the interval. Sizes
are uncompressed, as `docker images` shows them; 1 MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BINARY = "/opt/orangescrum/bin/orangescrum"
GOAL_BYTES = 5 * 10**6
# What the engine adds to every container (mount points), not the image's files.
CONTAINER_FILES = frozenset({"/.dockerenv", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
ZONEINFO = "/usr/share/zoneinfo/"


def files_of(client, image: str) -> list[tuple[int, str]]:
    """(size, path) of every regular file in the image, found with its own busybox find/stat;
    the time zones as one row."""
    out = client.containers.run(image, ["-c", "find / -xdev -type f -exec stat -c '%s %n' {} +"],
                                entrypoint=["/bin/sh"], user="0", remove=True, network_disabled=True)
    rows, zones = [], []
    for line in out.decode().splitlines():
        size, _, path = line.partition(" ")
        if path.startswith(ZONEINFO):
            zones.append(int(size))
        elif path not in CONTAINER_FILES:
            rows.append((int(size), path))
    if zones:
        rows.append((sum(zones), f"{ZONEINFO} ({len(zones)} files)"))
    return sorted(rows, key=lambda r: (-r[0], r[1]))


def measure(client, image: str) -> dict:
    img = client.images.get(image)
    size = int(img.attrs["Size"])
    files = files_of(client, image)
    binary = next(s for s, p in files if p == BINARY)
    base = (img.labels or {}).get("org.opencontainers.image.base.name", "")
    return {
        "image": image,
        "image_id": img.id,
        "image_bytes": size,
        "binary_bytes": binary,
        "overhead_bytes": size - binary,
        "overhead_goal_bytes": GOAL_BYTES,
        "files": [{"bytes": s, "path": p} for s, p in files if p != BINARY],
        "base": {"image": base, "bytes": _local_size(client, base)},
    }


def _local_size(client, ref: str) -> int | None:
    """The size of the image the files were taken from, when it is local (for comparison)."""
    try:
        return int(client.images.get(ref).attrs["Size"])
    except Exception:  # noqa: BLE001 - not local (or no label): nothing to compare with
        return None


def invoke(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


def compose(tree: Path, project: str, *args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", "compose", "-p", project, *args], cwd=tree, capture_output=True, text=True,
                          timeout=300)
    if check and done.returncode != 0:
        raise SystemExit(f"docker compose {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def app_health(tree: Path, project: str) -> str:
    out = compose(tree, project, "ps", "-a", "--format", "json").strip()
    rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]
    return next((r.get("Health", "") for r in rows if r.get("Service") == "app"), "")


def up_to_healthy(tree: Path, project: str, timeout: float = 180) -> float:
    started = time.monotonic()
    compose(tree, project, "up", "-d")
    while time.monotonic() - started < timeout:
        if app_health(tree, project) == "healthy":
            return time.monotonic() - started
        time.sleep(0.25)
    raise SystemExit(f"app not healthy within {timeout:.0f}s:\n"
                     + compose(tree, project, "logs", "--no-color", "--tail", "30", check=False))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_and_time(client, runs: int) -> dict:
    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME, example_app_path, write_demo_env
    from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE, ensure_rootfs_image

    token = secrets.token_hex(4)
    repository = f"localhost/oscb-image-bench-{token}/orangescrum"
    project = f"oscb-image-bench-{token}"
    work = Path(tempfile.mkdtemp(prefix="oscb-image-bench-"))
    tree = work / "dist" / "docker"
    port = free_port()
    env = {**os.environ, "OSCB_APP": str(example_app_path()), "OSCB_DIST_DIR": str(work / "dist"),
           "OSCB_BUILDER_IMAGE": DEFAULT_STANDIN_IMAGE,
           "OSCB_DOCKER_RUNTIME_IMAGE": ensure_rootfs_image(client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES),
           "OSCB_DOCKER_IMAGE_NAME": repository, "OSCB_DOCKER_HOST_PORT": str(port)}
    try:
        started = time.monotonic()
        invoke("build", "--skip-deploy", env=env)
        invoke("docker.image", env=env)
        build_seconds = time.monotonic() - started
        image = next(t for t in client.images.get(f"{repository}:latest").tags if not t.endswith(":latest"))
        result = measure(client, image)
        write_demo_env(tree / ".env", port)
        seconds = []
        for _ in range(runs):
            try:
                seconds.append(up_to_healthy(tree, project))
            finally:
                compose(tree, project, "down", "-v", "--timeout", "30", check=False)
        result.update(build_seconds=round(build_seconds, 1), up_to_healthy_seconds=[round(s, 2) for s in seconds],
                      up_to_healthy_median_seconds=round(statistics.median(seconds), 2))
        return result
    finally:
        compose(tree, project, "down", "-v", "--timeout", "30", check=False) if tree.is_dir() else None
        for image in client.images.list(name=repository):
            for tag in image.tags:
                client.images.remove(tag)
        shutil.rmtree(work, ignore_errors=True)


def mb(n: int) -> str:
    return f"{n / 1e6:8.3f} MB"


def report(r: dict) -> str:
    verdict = "within" if r["overhead_bytes"] <= r["overhead_goal_bytes"] else "OVER"
    lines = [
        f"image      {r['image']} ({r['image_id'][7:19]}), files taken from {r['base']['image']}"
        + (f" ({r['base']['bytes'] / 1e6:.1f} MB)" if r["base"]["bytes"] else ""),
        f"binary     {mb(r['binary_bytes'])}   {BINARY}",
        f"image      {mb(r['image_bytes'])}",
        f"overhead   {mb(r['overhead_bytes'])}   ({verdict} the goal of {r['overhead_goal_bytes'] / 1e6:.0f} MB)",
        "the other files of the image:",
    ]
    lines += [f"  {mb(f['bytes'])}  {f['path']}" for f in r["files"]]
    if "up_to_healthy_seconds" in r:
        lines.append(f"up -d to healthy: median {r['up_to_healthy_median_seconds']:.2f} s of "
                     f"{len(r['up_to_healthy_seconds'])} runs {r['up_to_healthy_seconds']} "
                     f"(health check interval 15 s); build {r['build_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="only measure the sizes of this local image")
    parser.add_argument("--runs", type=int, default=3, help="`up -d` to healthy runs (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args(argv)
    import docker
    import docker.errors

    client = docker.from_env()
    try:
        r = measure(client, opts.image) if opts.image else build_and_time(client, max(1, opts.runs))
    except docker.errors.ImageNotFound:
        print(f"image_size: {opts.image} is not a local image; build one with `invoke docker.image`",
              file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2) if opts.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
