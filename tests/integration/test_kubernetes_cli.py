"""dist/kubernetes as a user makes it: part of `invoke build`, listed in dist/manifest.json,
and `invoke dist.kubernetes` on its own (no binary), with an env file."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from tests.kubernetes_support import ODD_ENV, SECRET_VALUES


@pytest.fixture
def app(tmp_path, example_app) -> Path:
    dest = tmp_path / "app"
    shutil.copytree(example_app, dest)
    return dest


def test_build_makes_dist_kubernetes_and_the_manifest_lists_it(run_invoke, tmp_path, app):
    binary = tmp_path / "frankenphp"
    binary.write_text("#!/bin/sh\necho 'FrankenPHP v0 (test double)'\n")
    binary.chmod(0o755)
    env = {"OSCB_DIST_DIR": str(tmp_path / "dist"), "OSCB_SCALE_REPLICAS": "2", "OSCB_KUBERNETES_MAX_REPLICAS": "5"}
    run_invoke("build", "--binary", str(binary), "--app", str(app), "--skip-deploy", env=env, check=True)
    tree = tmp_path / "dist" / "kubernetes"
    hpa = yaml.safe_load((tree / "hpa.yaml").read_text())
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["kind"] == "tree" and a.get("flavor") == "kubernetes")
    assert entry["path"] == "kubernetes" and entry["version"] == "4.0.0"
    assert entry["settings"]["scale.replicas"] == 2 and entry["extra"]["migration_job"] == "orangescrum-migrate-4-0-0"
    again = run_invoke("build", "--binary", str(binary), "--app", str(app), "--skip-deploy", env=env, check=True)
    assert "Everything is up to date" in again.stderr


def test_dist_kubernetes_needs_no_binary_and_takes_an_env_file(run_invoke, tmp_path, app):
    env_file = tmp_path / "prod.env"
    env_file.write_text(ODD_ENV)
    env = {"OSCB_DIST_DIR": str(tmp_path / "dist")}
    done = run_invoke("dist.kubernetes", "--version", "4.2.0", "--env-file", str(env_file), env=env, check=True)
    tree = tmp_path / "dist" / "kubernetes"
    secret = yaml.safe_load((tree / "secret.yaml").read_text())
    assert sorted(secret["stringData"].values()) == sorted(SECRET_VALUES)
    assert stat.S_IMODE((tree / "secret.yaml").stat().st_mode) == 0o600
    for value in SECRET_VALUES:
        assert value not in done.stdout + done.stderr
    web = yaml.safe_load((tree / "web.yaml").read_text())
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "orangescrum/orangescrum:4.2.0"


def test_a_setting_no_pod_can_run_with_fails_before_any_work(run_invoke, tmp_path, app):
    env = {"OSCB_DIST_DIR": str(tmp_path / "dist"), "OSCB_SCALE_REPLICAS": "4", "OSCB_KUBERNETES_MAX_REPLICAS": "2"}
    done = run_invoke("dist.kubernetes", "--version", "4.2.0", env=env)
    assert done.returncode != 0
    assert "kubernetes.max_replicas=2" in done.stderr and "raise kubernetes.max_replicas" in done.stderr
    assert not (tmp_path / "dist" / "kubernetes").exists()
