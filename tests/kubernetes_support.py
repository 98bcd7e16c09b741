"""dist/kubernetes for the tests: settings to render it with, and its manifests as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.kubernetes import assemble_kubernetes

# An env file with what the syntax allows: quotes, '$', '#', backslashes, non-ASCII, a *_FILE key.
ODD_ENV = """\
FULL_BASE_URL=https://os.example.com
DB_HOST=db.internal
DB_PORT=5432
DB_USERNAME=orangescrum
DB_NAME=orangescrum
DB_PASSWORD='pa$$ "w" #rd\\ zoë'
SECURITY_SALT=0123456789abcdef0123456789abcdef0123456789abcdef
REDIS_HOST=redis
REDIS_PASSWORD="it's: a [secret] {x}"
QUEUE_URL=redis://:secret-in-url@redis:6379/1
SMTP_USERNAME=mailer
SMTP_PASSWORD_FILE=/run/secrets/orangescrum/SMTP_PASSWORD
FROM_EMAIL="Zoë <no-reply@example.org>"
OSCB_SCALE_REPLICAS=2
"""
SECRET_VALUES = ('pa$$ "w" #rd\\ zoë', "0123456789abcdef0123456789abcdef0123456789abcdef",
                 "it's: a [secret] {x}", "redis://:secret-in-url@redis:6379/1")

# Valid but unusual settings: each must render manifests that validate.
EDGE_SETTINGS: dict[str, dict[str, str]] = {
    "ingress with tls and class": {"kubernetes.ingress_host": "os.example.com", "kubernetes.ingress_class": "nginx",
                                   "kubernetes.ingress_tls_secret": "os-example-tls"},
    "ingress without tls": {"kubernetes.ingress_host": "orangescrum.internal"},
    "autoscaling": {"scale.replicas": "3", "kubernetes.max_replicas": "12", "kubernetes.cpu_target": "150",
                    "kubernetes.cpu_request": "1.5"},
    "tmpfs and storage class": {"kubernetes.tmp_medium": "memory", "kubernetes.tmp_size": "768M",
                                "kubernetes.storage_class": "nfs.csi.k8s.io", "kubernetes.state_size": "2T"},
    "version with tilde and plus": {"version": "4.1.0~rc1+git.3"},
    "long version": {"version": "4." + "1" * 120},
    "other ids, paths and sizes": {"docker.uid": "65532", "docker.gid": "65533", "paths.state_dir": "/var/lib/o.s+4",
                                   "app_webroot": "public/web-root_1", "docker.memory_limit": "1536m",
                                   "docker.queue_memory_limit": "2048"},
    "registry image with digest": {"kubernetes.image": "registry.example.com:5000/team/orangescrum:4.1.0@sha256:"
                                                       + "ab" * 32, "kubernetes.namespace": "a" * 63},
    "interval cron cannot repeat": {"service.recurring_interval": "1h 30min"},
    "explicit schedule": {"kubernetes.recurring_schedule": "5,35 * * * 1-5"},
}


def make_cfg(tmp_path: Path, **values: Any):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def render(tmp_path: Path, **values: Any) -> Path:
    """dist/kubernetes assembled with ``values`` (dotted keys) over the defaults."""
    return assemble_kubernetes(make_cfg(tmp_path, **values)).path


def manifests(tree: Path) -> dict[str, dict[str, Any]]:
    """Every Kubernetes manifest of the tree (one document per file), by file name."""
    out = {}
    for path in sorted(tree.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        assert len(docs) == 1, f"{path.name}: one document per file"
        out[path.name] = docs[0]
    return out


def pod_specs(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod template of every workload (Deployment, Job, CronJob), by file name."""
    specs = {}
    for name, doc in docs.items():
        kind = doc["kind"]
        if kind in ("Deployment", "Job"):
            specs[name] = doc["spec"]["template"]
        elif kind == "CronJob":
            specs[name] = doc["spec"]["jobTemplate"]["spec"]["template"]
    return specs
