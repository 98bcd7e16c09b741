"""Migrations before a version serves, and the `infra` profile's images: the rendered
compose file, entrypoint, units and maintainer scripts (pure: no engine, no systemd)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudbuilder.assemble import plan_tree, render_template
from cloudbuilder.config import AppFacts, Layer, resolve

ROOT = Path(__file__).resolve().parents[2]


def make_cfg(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def render(tmp_path: Path, flavor: str, name: str, **values) -> str:
    cfg = make_cfg(tmp_path, **values)
    plan = plan_tree(cfg, flavor, tmp_path)
    source = next(f.source for f in plan.files if f.dest == name)
    return render_template(source.read_text(), plan.context, name=name, search_path=plan.search_path)


def compose(tmp_path: Path, **values) -> dict:
    return yaml.safe_load(render(tmp_path, "docker", "docker-compose.yaml", **values))


# --------------------------------------------------------------------------
# The infra profile's images
# --------------------------------------------------------------------------


def test_infra_images_come_from_the_settings(tmp_path):
    doc = compose(tmp_path, **{"docker.postgres_image": "mirror.example.org:5000/pg:15",
                               "docker.redis_image": "localhost/orangescrum-infra/redis:7-abc",
                               "docker.minio_image": "mirror.example.org/minio/minio:RELEASE.2025-01-01"})
    services = doc["services"]
    assert services["postgres"]["image"] == "mirror.example.org:5000/pg:15"
    assert services["redis"]["image"] == "localhost/orangescrum-infra/redis:7-abc"
    assert services["minio"]["image"] == "mirror.example.org/minio/minio:RELEASE.2025-01-01"


def test_infra_defaults_are_the_official_images_with_health_checks(tmp_path):
    services = compose(tmp_path)["services"]
    assert (services["postgres"]["image"], services["redis"]["image"]) == ("postgres:15-alpine", "redis:7-alpine")
    for name in ("postgres", "redis"):
        assert services[name]["profiles"] == ["infra"]
        assert services[name]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
