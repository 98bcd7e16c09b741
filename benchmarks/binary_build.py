#!/usr/bin/env python3
"""Cold vs warm vs app-only rebuild of the binary, with the stand-in builder.

    python benchmarks/binary_build.py

Uses a fresh base-image repository (so the cold run really builds the base),
a copy of examples/orangescrum-demo and a scratch dist dir; prints for each
run the wall time, the docker builds it ran and their Dockerfile steps, and
the ratios to the cold build. Removes the images it made (the stand-in
builder image stays cached; build it once beforehand so the cold figure is
the pipeline's, not debootstrap's).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudbuilder.binary import EMBED_REPOSITORY, build_binary  # noqa: E402
from cloudbuilder.config import AppFacts, Layer, resolve  # noqa: E402
from cloudbuilder.engine import DockerEngine  # noqa: E402
from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE, ensure_standin_image  # noqa: E402


class CountingEngine(DockerEngine):
    def __init__(self) -> None:
        super().__init__()
        self.builds = 0

    def build(self, **kwargs):
        self.builds += 1
        return super().build(**kwargs)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="binary-bench-"))
    repo = f"orangescrum-bench-base-{uuid.uuid4().hex[:8]}"
    app = work / "app"
    shutil.copytree(ROOT / "examples/orangescrum-demo", app, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    layer = Layer("bench", {"app": str(app), "dist_dir": str(work / "dist"), "builder.image": DEFAULT_STANDIN_IMAGE,
                            "builder.base_repository": repo})
    cfg = resolve([layer], cwd=work, environ={}, probe=lambda _a: AppFacts("4.0.0", "bench", None))
    rows = []
    with CountingEngine() as engine:
        ensure_standin_image(engine.client, DEFAULT_STANDIN_IMAGE)
        try:
            for name, change in (("cold", None), ("warm (no change)", None), ("app-only change", "app")):
                if change == "app":
                    (app / "webroot" / "bench.txt").write_text(str(time.time()))
                engine.builds = 0
                started = time.perf_counter()
                result = build_binary(cfg, engine)
                rows.append((name, time.perf_counter() - started, engine.builds, result.docker_steps))
        finally:
            for img in engine.client.images.list():
                if any(t.startswith((repo + ":", EMBED_REPOSITORY + ":")) for t in img.tags):
                    engine.client.images.remove(img.id, force=True)
            shutil.rmtree(work, ignore_errors=True)
    cold = rows[0][1]
    print(f"{'run':<18} {'wall s':>7} {'vs cold':>8} {'docker builds':>14} {'Dockerfile steps':>17}")
    for name, secs, builds, steps in rows:
        print(f"{name:<18} {secs:7.2f} {secs / cold:8.2f} {builds:14d} {steps:17d}")


if __name__ == "__main__":
    main()
