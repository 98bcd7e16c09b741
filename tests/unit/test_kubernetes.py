"""dist/kubernetes: what every pod runs with, the settings in Kubernetes' syntax, the Secret, the tree.

The schemas are checked in tests/integration/test_kubernetes_validate.py; here the
manifests are read as data and held to what the schemas cannot say.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from cloudbuilder.errors import BuildError, ConfigError
from cloudbuilder.kubernetes import (
    IMAGE_TMPDIR,
    assemble_kubernetes,
    cron_schedule,
    is_secret,
    label_value,
    migration_job_name,
    plan_kubernetes,
    quantity,
)
from cloudbuilder.workspace import Workspace
from tests.kubernetes_support import EDGE_SETTINGS, ODD_ENV, SECRET_VALUES, make_cfg, manifests, pod_specs, render

ALL_SETTINGS = {"defaults": {}, **EDGE_SETTINGS}
WORKLOADS = {"web.yaml": "server", "queue.yaml": "queue-worker", "migrate-job.yaml": "migrate",
             "recurring-cronjob.yaml": "recurring"}


# --------------------------------------------------------------------------
# Every pod spec
# --------------------------------------------------------------------------


@pytest.mark.parametrize("values", ALL_SETTINGS.values(), ids=ALL_SETTINGS.keys())
def test_every_pod_runs_restricted_with_its_volumes(tmp_path, values):
    cfg = make_cfg(tmp_path, **values)
    docs = manifests(assemble_kubernetes(cfg).path)
    pods = pod_specs(docs)
    assert {name: pod["spec"]["containers"][0]["args"] for name, pod in pods.items()} == \
        {name: [arg] for name, arg in WORKLOADS.items()}
    claim = docs["pvc.yaml"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == quantity(cfg.kubernetes.state_size)
    assert claim["spec"].get("storageClassName") == cfg.kubernetes.storage_class
    for name, pod in pods.items():
        spec = pod["spec"]
        assert spec["securityContext"] == {
            "runAsNonRoot": True, "runAsUser": cfg.docker.uid, "runAsGroup": cfg.docker.gid,
            "fsGroup": cfg.docker.gid, "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"}}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert len(spec["containers"]) == 1 and "initContainers" not in spec, name
        container = spec["containers"][0]
        assert container["securityContext"] == {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}, name
        assert container["image"] == (cfg.kubernetes.image or f"{cfg.docker.image_name}:"
                                      f"{cfg.version.replace('~', '-').replace('+', '_')}"), name
        # only an image the operator named is pulled (the default name is published nowhere)
        assert container["imagePullPolicy"] == ("IfNotPresent" if cfg.kubernetes.image else "Never"), name
        env = {e["name"]: e["value"] for e in container["env"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # the state on the claim, at paths.state_dir (the shared contract), which the image is told too
        assert mounts[cfg.paths.state_dir] == "state" and env["STATE_DIR"] == cfg.paths.state_dir, name
        assert volumes["state"]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}, name
        # TMPDIR on a sized emptyDir: the only other writable place
        assert env["TMPDIR"] == IMAGE_TMPDIR and mounts[IMAGE_TMPDIR] == "tmp", name
        empty = volumes["tmp"]["emptyDir"]
        assert empty["sizeLimit"] == quantity(cfg.kubernetes.tmp_size), name
        assert empty.get("medium") == ("Memory" if cfg.kubernetes.tmp_medium == "memory" else None), name
        assert set(mounts) == {cfg.paths.state_dir, IMAGE_TMPDIR} and set(volumes) == {"state", "tmp"}, name
        memory = quantity(cfg.docker.memory_limit if name == "web.yaml" else cfg.docker.queue_memory_limit)
        assert container["resources"] == {"requests": {"cpu": cfg.kubernetes.cpu_request, "memory": memory},
                                          "limits": {"memory": memory}}, name
        assert [r for r in container["envFrom"]] == [{"configMapRef": {"name": "orangescrum-config"}},
                                                     {"secretRef": {"name": "orangescrum-secret"}}], name
        assert env["OSCB_REPLICAS"] == str(cfg.kubernetes.max_replicas or cfg.scale.replicas), name
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "orangescrum" and labels["app.kubernetes.io/version"] == \
            label_value(cfg.version), name


@pytest.mark.parametrize("values", ALL_SETTINGS.values(), ids=ALL_SETTINGS.keys())
def test_the_web_pods_have_probes_on_healthz_and_the_others_none(tmp_path, values):
    pods = pod_specs(manifests(render(tmp_path, **values)))
    for name, pod in pods.items():
        container = pod["spec"]["containers"][0]
        probes = {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container}
        if name != "web.yaml":
            assert probes == {} and "ports" not in container, name  # no HTTP server to ask
            continue
        assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        for kind, probe in probes.items():
            assert probe["httpGet"] == {"path": "/healthz", "port": "http"}, kind
            assert probe["timeoutSeconds"] < probe["periodSeconds"], kind
        # the startup probe allows a slow first extraction; liveness only counts after it
        startup = probes["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_workloads_select_their_own_pods_and_the_service_the_web_ones(tmp_path):
    docs = manifests(render(tmp_path, **EDGE_SETTINGS["ingress with tls and class"]))
    for name in ("web.yaml", "queue.yaml"):
        selector = docs[name]["spec"]["selector"]["matchLabels"]
        labels = docs[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items() and "app.kubernetes.io/version" not in selector, name
    web = docs["web.yaml"]["spec"]["template"]["metadata"]["labels"]
    assert docs["service.yaml"]["spec"]["selector"].items() <= web.items()
    assert docs["pdb.yaml"]["spec"]["selector"]["matchLabels"] == docs["web.yaml"]["spec"]["selector"]["matchLabels"]
    assert docs["queue.yaml"]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "queue"
    backend = docs["ingress.yaml"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": docs["service.yaml"]["metadata"]["name"], "port": {"name": "http"}}
    assert docs["ingress.yaml"]["spec"]["tls"] == [{"hosts": ["os.example.com"], "secretName": "os-example-tls"}]
    assert docs["ingress.yaml"]["spec"]["ingressClassName"] == "nginx"
    namespaces = {d["metadata"].get("namespace", d["metadata"]["name"]) for d in docs.values() if "metadata" in d}
    assert namespaces == {"orangescrum"}


def test_autoscaler_and_replicas(tmp_path):
    docs = manifests(render(tmp_path, **EDGE_SETTINGS["autoscaling"]))
    hpa = docs["hpa.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orangescrum-web"}
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 150}
    # the autoscaler owns the web count (kubectl apply must not reset it); one queue worker
    assert "replicas" not in docs["web.yaml"]["spec"] and docs["queue.yaml"]["spec"]["replicas"] == 1
    web = docs["web.yaml"]["spec"]["strategy"]["rollingUpdate"]
    assert web == {"maxSurge": 1, "maxUnavailable": 0}
    defaults = manifests(render(tmp_path / "d"))["hpa.yaml"]["spec"]
    assert (defaults["minReplicas"], defaults["maxReplicas"]) == (1, 1)


def test_the_cronjob_and_the_migration_job(tmp_path):
    docs = manifests(render(tmp_path, **{"service.recurring_interval": "15min"}))
    cron = docs["recurring-cronjob.yaml"]["spec"]
    assert (cron["schedule"], cron["concurrencyPolicy"], cron["timeZone"]) == ("*/15 * * * *", "Forbid", "Etc/UTC")
    job = docs["migrate-job.yaml"]
    assert job["metadata"]["name"] == "orangescrum-migrate-4-1-0"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    explicit = manifests(render(tmp_path / "x", **EDGE_SETTINGS["explicit schedule"]))
    assert explicit["recurring-cronjob.yaml"]["spec"]["schedule"] == "5,35 * * * 1-5"


def test_kustomization_lists_every_manifest_of_the_tree(tmp_path):
    for values in ({}, EDGE_SETTINGS["ingress without tls"]):
        tree = render(tmp_path / str(len(values)), **values)
        docs = manifests(tree)
        kustomization = docs.pop("kustomization.yaml")
        assert kustomization["kind"] == "Kustomization"
        assert sorted(kustomization["resources"]) == sorted(docs)
        assert ("ingress.yaml" in docs) == bool(values)


def test_apply_sh_waits_for_this_versions_migration_before_the_rest(tmp_path):
    tree = render(tmp_path, version="4.2.0")
    text = (tree / "apply.sh").read_text()
    assert text.startswith("#!/bin/sh\n") and stat.S_IMODE((tree / "apply.sh").stat().st_mode) == 0o755
    assert "job='orangescrum-migrate-4-2-0'" in text and "namespace='orangescrum'" in text
    commands = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    order = [i for i, line in enumerate(commands) if "apply -f migrate-job.yaml" in line or
             line.startswith('*" Complete "*) break') or line.endswith("apply -k .")]
    assert len(order) == 3 and "apply -f migrate-job.yaml" in commands[order[0]]
    assert commands[order[1]].startswith('*" Complete "*') and commands[order[2]].endswith("apply -k .")


# --------------------------------------------------------------------------
# Settings and secrets of the pods
# --------------------------------------------------------------------------


def test_env_file_secrets_go_only_to_secret_yaml_with_mode_0600(tmp_path, caplog):
    env = tmp_path / "prod.env"
    env.write_text(ODD_ENV, encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    cfg = make_cfg(tmp_path, env_file=str(env))
    ws = Workspace(cfg.dist_dir)
    tree = assemble_kubernetes(cfg, ws=ws).path
    docs = manifests(tree)
    secret = docs["secret.yaml"]
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"DB_PASSWORD", "SECURITY_SALT", "REDIS_PASSWORD", "QUEUE_URL"}
    assert sorted(secret["stringData"].values()) == sorted(SECRET_VALUES)  # byte for byte through YAML
    assert stat.S_IMODE((tree / "secret.yaml").stat().st_mode) == 0o600
    config = docs["configmap.yaml"]["data"]
    assert config["FROM_EMAIL"] == "Zoë <no-reply@example.org>"
    assert config["SMTP_PASSWORD_FILE"] == "/run/secrets/orangescrum/SMTP_PASSWORD"  # a path, not a secret
    assert not any(k.startswith("OSCB_") for k in config)
    # no secret value anywhere but secret.yaml: not in another file, the stamp, the manifest or the log
    elsewhere = [p for p in tree.rglob("*") if p.name != "secret.yaml"] + [ws.manifest_path, ws.stamp_path("kubernetes")]
    for value in SECRET_VALUES:
        for path in elsewhere:
            assert value not in path.read_text(encoding="utf-8"), path
        assert value not in caplog.text
    recorded = json.loads(ws.manifest_path.read_text())
    tree_entry = next(a for a in recorded["artifacts"] if a.get("flavor") == "kubernetes")
    assert tree_entry["path"] == "kubernetes"
    assert "secret.yaml" not in json.dumps(ws.stamp("kubernetes").to_json())


def test_secret_yaml_is_the_operators_file(tmp_path):
    cfg = make_cfg(tmp_path)
    tree = assemble_kubernetes(cfg).path
    placeholder = manifests(tree)["secret.yaml"]["stringData"]
    assert placeholder["DB_PASSWORD"].startswith("CHANGE_ME") and placeholder["SECURITY_SALT"].startswith("CHANGE_ME")
    (tree / "secret.yaml").write_text("# mine\n" + (tree / "secret.yaml").read_text())
    again = assemble_kubernetes(make_cfg(tmp_path, **{"kubernetes.cpu_request": "500m"}))  # a rebuild keeps it
    assert not again.up_to_date and again.kept == ("secret.yaml",)
    assert (tree / "secret.yaml").read_text().startswith("# mine\n")
    # an env file given later writes it, also when nothing else changed
    env = tmp_path / "prod.env"
    env.write_text(ODD_ENV)
    first = assemble_kubernetes(make_cfg(tmp_path, env_file=str(env)))
    env.write_text(ODD_ENV.replace("secret-in-url", "rotated-secret"))
    second = assemble_kubernetes(make_cfg(tmp_path, env_file=str(env)))
    assert not first.up_to_date and second.up_to_date
    assert manifests(tree)["secret.yaml"]["stringData"]["QUEUE_URL"] == "redis://:rotated-secret@redis:6379/1"


@pytest.mark.parametrize("key, secret", [("DB_PASSWORD", True), ("SECURITY_SALT", True), ("QUEUE_URL", True),
                                         ("STORAGE_ACCESS_KEY", True), ("OAUTH_CLIENT_SECRET", True),
                                         ("API_TOKEN", True), ("DB_PASSWORD_FILE", False), ("DB_HOST", False),
                                         ("KEYBOARD_LAYOUT", False), ("SMTP_USERNAME", False)])
def test_which_keys_are_secret(key, secret):
    assert is_secret(key) is secret


def test_an_env_file_key_no_environment_can_carry_is_refused(tmp_path):
    env = tmp_path / "bad.env"
    env.write_text("DB-HOST=x\n")
    with pytest.raises(ConfigError, match=r"bad\.env: 'DB-HOST' is not an environment variable name"):
        plan_kubernetes(make_cfg(tmp_path, env_file=str(env)))


# --------------------------------------------------------------------------
# Values in Kubernetes' syntax, and settings no cluster would run
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size, expected", [("1g", "1Gi"), ("512m", "512Mi"), ("512M", "512Mi"), ("2T", "2Ti"),
                                            ("64k", "64Ki"), ("1048576", "1048576")])
def test_sizes_become_binary_quantities(size, expected):
    assert quantity(size) == expected  # "512m" would be 0.512 bytes to Kubernetes


@pytest.mark.parametrize("interval, expected", [
    ("30min", ("*/30 * * * *", True)), ("1min", ("* * * * *", True)), ("60s", ("* * * * *", True)),
    ("1h", ("0 * * * *", True)), ("6h", ("0 */6 * * *", True)), ("1d", ("0 0 * * *", True)),
    ("1w", ("0 0 * * 0", True)), ("45min", ("*/30 * * * *", False)), ("1h 30min", ("0 * * * *", False)),
    ("5h", ("0 */4 * * *", False)), ("90s", ("* * * * *", False)), ("3d", ("0 0 * * *", False)),
])
def test_cron_schedule_of_an_interval(interval, expected):
    assert cron_schedule(interval) == expected


def test_an_interval_cron_cannot_repeat_is_said_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    docs = manifests(render(tmp_path, **EDGE_SETTINGS["interval cron cannot repeat"]))
    assert docs["recurring-cronjob.yaml"]["spec"]["schedule"] == "0 * * * *"
    assert caplog.text.count("kubernetes.recurring_schedule") == 1 and "'1h 30min'" in caplog.text


@pytest.mark.parametrize("version", ["4.1.0", "4.1.0~rc1", "4.1.0+git.3", "4.1.0.RC1", "4." + "1" * 120])
def test_names_and_labels_from_a_version(version):
    name = migration_job_name(version)
    assert len(name) <= 63 and name[-1].isalnum() and name.startswith("orangescrum-migrate-4-1")
    assert all(c.islower() or c.isdigit() or c == "-" for c in name)
    label = label_value(version)
    assert len(label) <= 63 and label[0].isalnum() and label[-1].isalnum()
    assert migration_job_name("4.1.0~rc1") != migration_job_name("4.1.0+rc1") != migration_job_name("4.1.0.rc1")


def test_settings_no_pod_can_run_with_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"kubernetes\.max_replicas=2 .* below scale\.replicas=3"):
        plan_kubernetes(make_cfg(tmp_path, **{"scale.replicas": "3", "kubernetes.max_replicas": "2"}))
    with pytest.raises(ConfigError, match=r"docker\.uid=0.*runAsNonRoot"):
        plan_kubernetes(make_cfg(tmp_path, **{"docker.uid": "0"}))
    for key, value, problem in [("scale.replicas", "0", "is not a positive integer"),
                                ("kubernetes.namespace", "Orange_Scrum", "is not a DNS label"),
                                ("kubernetes.namespace", "a" * 64, "is not a DNS label"),
                                ("kubernetes.ingress_host", "https://os.example.com", "is not a host name"),
                                ("kubernetes.cpu_request", "250 m", "is not a CPU quantity"),
                                ("kubernetes.recurring_schedule", "*/5 * * *", "is not a five-field cron schedule"),
                                ("kubernetes.tmp_medium", "tmpfs", "is not a known choice")]:
        with pytest.raises(ConfigError, match=rf"{key}=.* {problem}"):
            make_cfg(tmp_path, **{key: value})


# --------------------------------------------------------------------------
# The tree: deterministic, a no-op when nothing changed, atomic
# --------------------------------------------------------------------------


def test_the_tree_is_deterministic_and_a_rerun_is_a_noop(tmp_path):
    a, b = render(tmp_path / "a"), render(tmp_path / "b")
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).stat().st_mtime == 1700000000, name
    cfg = make_cfg(tmp_path / "a")
    assert assemble_kubernetes(cfg).up_to_date
    (a / "web.yaml").write_text("edited\n")
    assert not assemble_kubernetes(cfg).up_to_date  # an edited tree is made again
    assert "edited" not in (a / "web.yaml").read_text()


def test_a_failed_render_leaves_the_last_tree(tmp_path):
    sources = tmp_path / "src"
    (sources / "common").mkdir(parents=True)
    (sources / "common" / ".env.example").write_text("DB_HOST=x\n")
    (sources / "kubernetes").mkdir()
    (sources / "kubernetes" / "_secret.yaml.j2").write_text("kind: Secret\n")
    (sources / "kubernetes" / "a.yaml.j2").write_text("a: {{ version | yaml }}\n")
    cfg = make_cfg(tmp_path)
    tree = assemble_kubernetes(cfg, sources=sources).path
    assert (tree / "a.yaml").read_text() == 'a: "4.1.0"\n'
    (sources / "kubernetes" / "b.yaml.j2").write_text("b: {{ version }} {{ no_such_setting }}\n")
    with pytest.raises(BuildError, match="no_such_setting"):
        assemble_kubernetes(cfg, sources=sources)
    assert sorted(p.name for p in tree.iterdir()) == ["a.yaml", "secret.yaml"]
    assert not [p for p in tree.parent.iterdir() if p.name.startswith(".tmp-")]
    assert os.listdir(tree.parent).count("kubernetes") == 1
