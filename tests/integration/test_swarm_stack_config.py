"""The rendered Swarm stack files, checked by the docker CLI's own compose loader
(`docker stack config`, no engine needed) and Caddy's Caddyfile adapter."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cloudbuilder.assemble import plan_tree, render_template
from cloudbuilder.config import AppFacts, Layer, resolve

pytestmark = pytest.mark.integration


def render(tmp_path: Path, name: str, **values) -> str:
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "0", **values})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    plan = plan_tree(cfg, "docker", tmp_path)
    source = next(f.source for f in plan.files if f.dest == name)
    return render_template(source.read_text(), plan.context, name=name, search_path=plan.search_path)


def test_stack_files_validate_with_docker_stack_config(tmp_path):
    """`docker stack config` (the docker CLI's own loader) accepts both files, when the CLI has it."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "stack", "config", "--help"], capture_output=True).returncode:
        pytest.skip("the docker CLI with `stack config` is not installed")
    tree = tmp_path / "tree"
    (tree / "edge").mkdir(parents=True)
    (tree / ".env").write_text("DB_HOST=db\n")
    (tree / "secrets").mkdir()
    for key in ("SECURITY_SALT", "DB_PASSWORD", "REDIS_PASSWORD"):
        (tree / "secrets" / key).write_text("x")
    for name in ("stack.yaml", "stack.migrate.yaml", "edge/Caddyfile"):
        (tree / name).write_text(render(tmp_path, name))
    for name in ("stack.yaml", "stack.migrate.yaml"):
        done = subprocess.run([docker, "stack", "config", "-c", name], cwd=tree, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "OSCB_REPLICAS": "4"})
        assert done.returncode == 0, done.stderr
        model = yaml.safe_load(done.stdout)
        if name == "stack.yaml":
            assert model["services"]["app"]["deploy"]["replicas"] == 4


def test_edge_caddyfile_adapts_with_debians_caddy(tmp_path):
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy)")
    (tmp_path / "Caddyfile").write_text(render(tmp_path, "edge/Caddyfile"))
    done = subprocess.run([caddy, "adapt", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import json

    handler = json.loads(done.stdout)["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]
    assert handler["dynamic_upstreams"] == {"source": "a", "name": "app", "port": "8080", "refresh": 1000000000}
    assert handler["load_balancing"]["try_duration"] > 0
