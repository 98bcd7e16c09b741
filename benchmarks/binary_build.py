#!/usr/bin/env python3
"""Cold vs warm vs app-only rebuild vs --rebuild-base of the binary, with the stand-in builder.

    python benchmarks/binary_build.py [--runs 3]

Each run uses a fresh base-image repository, a copy of examples/orangescrum-demo
with a composer.json of its own (so the cold run really installs the
dependencies) and a scratch dist dir. It builds: cold (as on a fresh engine: the
engine's layer cache is shared by every base repository, and an existing base
with the same inputs, e.g. the demo's, would make the "cold" base a cache hit,
so the cold base is built without the cache); again with nothing changed; after an app-only change (a new PHP
class: the composer-install layer should come from the cache, only the
autoloader is dumped again); with --rebuild-base (no layer cache: the time of a
cold base build). Prints, per case, the median wall time over the runs, its
ratio to the cold build, the docker builds and Dockerfile steps, and whether
the composer-install layer came from the cache. Removes the images it made
(the stand-in builder image stays cached; build it once beforehand so the cold
figure is the pipeline's, not debootstrap's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudbuilder.binary import EMBED_REPOSITORY, build_binary, deps_tag  # noqa: E402
from cloudbuilder.config import AppFacts, Layer, resolve  # noqa: E402
from cloudbuilder.engine import DockerEngine  # noqa: E402
from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE, ensure_standin_image  # noqa: E402

CASES = ("cold", "warm (no change)", "app-only change", "--rebuild-base")


class CountingEngine(DockerEngine):
    def __init__(self) -> None:
        super().__init__()
        self.builds = 0

    def build(self, **kwargs):
        self.builds += 1
        return super().build(**kwargs)


def one_run(engine: CountingEngine) -> dict[str, tuple[float, int, int, bool | None]]:
    work = Path(tempfile.mkdtemp(prefix="binary-bench-"))
    repo = f"orangescrum-bench-base-{uuid.uuid4().hex[:8]}"
    app = work / "app"
    shutil.copytree(ROOT / "examples/orangescrum-demo", app, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    meta = json.loads((app / "composer.json").read_text())
    meta["description"] = f"benchmark {uuid.uuid4().hex}"  # the engine's layer cache must not know it yet
    (app / "composer.json").write_text(json.dumps(meta, indent=4))

    def config(**extra: str):
        layer = Layer("bench", {"app": str(app), "dist_dir": str(work / "dist"), "builder.image": DEFAULT_STANDIN_IMAGE,
                                "builder.base_repository": repo, **extra})
        return resolve([layer], cwd=work, environ={}, probe=lambda _a: AppFacts("4.0.0", "bench", None))

    rows = {}
    try:
        for name in CASES:
            cfg = config(rebuild_base="true") if name in ("cold", "--rebuild-base") else config()
            if name == "app-only change":
                (app / "src" / "BenchExtra.php").write_text(f"<?php\nnamespace App;\n// {time.time()}\nclass BenchExtra {{}}\n")
            engine.builds = 0
            started = time.perf_counter()
            result = build_binary(cfg, engine)
            rows[name] = (time.perf_counter() - started, engine.builds, result.docker_steps, result.deps_cached)
    finally:
        for img in engine.client.images.list():
            if any(t.startswith((repo + ":", EMBED_REPOSITORY + ":")) for t in img.tags):
                engine.client.images.remove(img.id, force=True)
        try:
            engine.client.images.remove(deps_tag(work / "dist"))
        except Exception:  # noqa: BLE001 - never made (a failed run)
            pass
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole sequence; medians are printed")
    opts = parser.parse_args()
    runs = []
    with CountingEngine() as engine:
        ensure_standin_image(engine.client, DEFAULT_STANDIN_IMAGE)
        for _ in range(opts.runs):
            runs.append(one_run(engine))
    median = {name: statistics.median(r[name][0] for r in runs) for name in CASES}
    cold = median["cold"]
    print(f"{'run':<18} {'wall s':>7} {'vs cold':>8} {'docker builds':>14} {'Dockerfile steps':>17} {'composer layer':>15}")
    for name in CASES:
        _secs, builds, steps, cached = runs[-1][name]
        layer = "-" if cached is None else "from cache" if cached else "installed"
        print(f"{name:<18} {median[name]:7.2f} {median[name] / cold:8.2f} {builds:14d} {steps:17d} {layer:>15}")
    if opts.runs > 1:
        print(f"(medians of {opts.runs} runs; every run's wall s: "
              + "; ".join(f"{n}: " + " ".join(f"{r[n][0]:.2f}" for r in runs) for n in CASES) + ")")


if __name__ == "__main__":
    main()
