#!/usr/bin/env python3
"""Runtime overhead of the Docker image over the binary it carries.

    python benchmarks/image_size.py [--image orangescrum/orangescrum:latest] [--json]

Reads the image's size from the engine and the binary's size from inside the
image (/opt/orangescrum/bin/orangescrum, via the archive API of a created,
never started container), then prints: binary size, image size, overhead
(image minus binary, in MB and as % of the binary), and, when the base image
named by the org.opencontainers.image.base.name label is local, its size for
comparison (the image prunes the base: docs, locales, apt lists). Sizes are
uncompressed, as `docker images` shows them; 1 MB = 10^6 bytes.

Build an image first: `invoke demo`, or `invoke build --skip-deploy && invoke docker.image`.
"""

from __future__ import annotations

import argparse
import json
import sys

BINARY = "/opt/orangescrum/bin/orangescrum"
BASE_LABEL = "org.opencontainers.image.base.name"


def binary_size(client, image: str) -> int:
    container = client.containers.create(image, command=["true"], entrypoint=[])
    try:
        stream, stat = container.get_archive(BINARY)
        stream.close() if hasattr(stream, "close") else None
        return int(stat["size"])
    finally:
        container.remove(force=True)


def measure(client, image: str) -> dict:
    img = client.images.get(image)
    size = int(img.attrs["Size"])
    binary = binary_size(client, image)
    result = {
        "image": image,
        "image_id": img.id,
        "image_bytes": size,
        "binary_bytes": binary,
        "overhead_bytes": size - binary,
        "overhead_percent": round(100.0 * (size - binary) / binary, 1),
        "layers": [
            {"bytes": int(h.get("Size", 0)), "created_by": (h.get("CreatedBy") or "")[:90]}
            for h in img.history() if int(h.get("Size", 0)) > 0
        ],
    }
    base = (img.labels or {}).get(BASE_LABEL)
    if base:
        try:
            result["base"] = {"image": base, "bytes": int(client.images.get(base).attrs["Size"])}
        except Exception:  # noqa: BLE001 - the base may not be local; that is fine
            result["base"] = {"image": base, "bytes": None}
    return result


def mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def report(r: dict) -> str:
    lines = [
        f"image      {r['image']} ({r['image_id'][7:19]})",
        f"binary     {mb(r['binary_bytes'])}   {BINARY}",
        f"image      {mb(r['image_bytes'])}",
        f"overhead   {mb(r['overhead_bytes'])}   ({r['overhead_percent']:.1f}% of the binary)",
    ]
    base = r.get("base")
    if base and base["bytes"]:
        lines.append(f"base       {mb(base['bytes'])}   {base['image']} (before pruning)")
    lines.append("layers with content:")
    lines += [f"  {mb(layer['bytes'])}  {layer['created_by']}" for layer in r["layers"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="orangescrum/orangescrum:latest", help="image to measure")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args(argv)
    import docker
    import docker.errors

    client = docker.from_env()
    try:
        r = measure(client, opts.image)
    except docker.errors.ImageNotFound:
        print(f"image_size: {opts.image} is not a local image; build one with `invoke docker.image`",
              file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2) if opts.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
