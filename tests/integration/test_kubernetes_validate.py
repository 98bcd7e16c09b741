"""Every manifest of dist/kubernetes validates against the newest Kubernetes that
kubernetes-validate ships (strict: an unknown or misspelt field fails), with the
default settings and with each edge setting; apply.sh passes shellcheck.

Validated, not run: no cluster here. What the schemas cannot say (security
context, probes, mounts) is held in tests/unit/test_kubernetes.py.
"""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate.utils as kubernetes_validate  # the dev extras (./scripts/setup.sh)
import pytest
import yaml

from tests.integration.test_lint import shellcheck
from tests.kubernetes_support import EDGE_SETTINGS, ODD_ENV, manifests, render

ALL_SETTINGS = {"defaults": {}, **EDGE_SETTINGS}
# Every kind the tree must hold (the Ingress only with kubernetes.ingress_host).
KINDS = {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Job", "Deployment", "CronJob", "Service",
         "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def newest_version() -> str:
    """The newest Kubernetes version whose schemas the installed kubernetes-validate ships."""
    return kubernetes_validate.latest_version()


def validate_tree(tree) -> dict[str, str]:
    """kind of every manifest validated, by file; a failure names the file and the field."""
    version = newest_version()
    checked = {}
    for name, doc in manifests(tree).items():
        if doc.get("kind") == "Kustomization":
            continue  # kustomize's own file, not a Kubernetes resource: tests/unit checks its resources
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} does not validate against Kubernetes {version}: {exc.message} at "
                        f"{'.'.join(map(str, exc.path))}")
        checked[name] = doc["kind"]
    return checked


@pytest.mark.parametrize("values", ALL_SETTINGS.values(), ids=ALL_SETTINGS.keys())
def test_every_manifest_validates_against_the_newest_kubernetes(tmp_path, values):
    checked = validate_tree(render(tmp_path, **values))
    expected = KINDS | ({"Ingress"} if values.get("kubernetes.ingress_host") else set())
    assert set(checked.values()) == expected


def test_the_manifests_made_from_an_env_file_validate(tmp_path):
    env = tmp_path / "prod.env"
    env.write_text(ODD_ENV, encoding="utf-8")
    checked = validate_tree(render(tmp_path, env_file=str(env), **EDGE_SETTINGS["autoscaling"]))
    assert checked["secret.yaml"] == "Secret" and checked["configmap.yaml"] == "ConfigMap"


def test_a_wrong_manifest_fails_validation(tmp_path):
    """The check can fail: a misspelt field and a wrong type are refused."""
    web = manifests(render(tmp_path))["web.yaml"]
    version = newest_version()
    kubernetes_validate.validate(web, version, strict=True)
    container = web["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = container["readinessProbe"]["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, version, strict=True)
    hpa = yaml.safe_load((tmp_path / "dist" / "kubernetes" / "hpa.yaml").read_text())
    hpa["spec"]["maxReplicas"] = "many"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, version, strict=True)


def test_the_command_line_validates_the_tree(tmp_path):
    """The same check as the operator runs it: `kubernetes-validate --strict` on the files."""
    program = shutil.which("kubernetes-validate")
    assert program, "kubernetes-validate is not installed (pip install kubernetes-validate; ./scripts/setup.sh)"
    tree = render(tmp_path, **EDGE_SETTINGS["ingress with tls and class"])
    files = sorted(str(p) for p in tree.glob("*.yaml") if p.name != "kustomization.yaml")
    done = subprocess.run([program, "--strict", "--quiet", "-k", newest_version(), *files],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", [{}, {"kubernetes.namespace": "a" * 63, "version": "4.1.0~rc1+git.3"}],
                         ids=["defaults", "edge"])
def test_apply_sh_is_shellcheck_clean_posix_sh(tmp_path, values):
    script = render(tmp_path, **values) / "apply.sh"
    assert shellcheck([script]) == ""
    syntax = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
