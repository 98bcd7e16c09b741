"""Assemble ``dist/kubernetes``: plain Kubernetes manifests from the same settings.

Plan, then act, like the other trees (``assemble``): ``kubernetes_context`` turns
the settings into what the templates of ``kubernetes/`` need (pure, and the
place where a setting no manifest can carry is refused); ``plan_kubernetes``
lists the files; ``assemble_kubernetes`` renders them into a temporary
directory and swaps it into place in one rename, stamps the inputs (a rerun with
nothing changed is a no-op) and records ``tree/kubernetes`` in the manifest.

The Secret is the exception: ``secret.yaml`` is an operator file, like
``dist/docker/.env``. It is written (mode 0600) from the secret keys of the env
file given to the build (``--env-file``), else kept from the last tree, else made
from the placeholders of ``.env.example``; it is in no stamp, no digest and no
manifest entry, so no secret value reaches an artifact or a log line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .assemble import AssembleResult, render_template
from .config import BuildConfig, parse_timespan, read_env_file, recorded_settings
from .errors import ConfigError
from .escape import docker_tag
from .fsutil import fresh_temp_dir, swap_into_place, write_atomic
from .log import logger
from .resources import source_root
from .workspace import Artifact, Stamp, Workspace, listing, tree_sha256

FLAVOR = "kubernetes"
SOURCE_DIR = "kubernetes"
TEMPLATE_SUFFIX = ".j2"
PARTIAL_PREFIX = "_"
# Written by the operator (or from --env-file), never stamped or recorded: see the module doc.
SECRET_FILE = "secret.yaml"
SECRET_TEMPLATE = "_secret.yaml.j2"
OPERATOR_FILES = (SECRET_FILE,)
# Rendered only when the setting that turns them on is set.
OPTIONAL_FILES = {"ingress.yaml": "ingress_host"}
KUSTOMIZATION = "kustomization.yaml"

# Fixed by the runtime image (docker/Dockerfile.j2): its TMPDIR and the port of `server`.
IMAGE_TMPDIR = "/var/cache/orangescrum"
IMAGE_PORT = 8080
# Set by the manifests themselves (container env wins over the ConfigMap): not taken from an env file.
FIXED_KEYS = frozenset({"PORT", "WEBROOT", "TMPDIR", "STATE_DIR", "OSCB_REPLICAS"})
# The app's secret settings (validate-env.sh checks them as secrets), and names that say "secret".
SECRET_KEYS = frozenset({"SECURITY_SALT", "DB_PASSWORD", "REDIS_PASSWORD", "QUEUE_URL", "STORAGE_ACCESS_KEY",
                         "STORAGE_SECRET_KEY", "SMTP_PASSWORD"})
SECRET_NAME = re.compile(r"PASSWORD|SECRET|SALT|TOKEN|PRIVATE|(?:^|_)KEY(?:_|$)")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A Kubernetes label value: at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
DNS_LABEL_MAX = 63
JOB_PREFIX = "orangescrum-migrate-"


# --------------------------------------------------------------------------
# Values in Kubernetes' own syntax (pure)
# --------------------------------------------------------------------------


def quantity(size: str) -> str:
    """A size setting (``1g``, ``512M``, ``10G``: Docker's and systemd's binary units) as a
    Kubernetes quantity (``1Gi``, ``512Mi``, ``10Gi``). Kubernetes reads ``512m`` as 0.512 bytes."""
    m = re.fullmatch(r"([0-9]+)([KMGTkmgt]?)", size)
    if not m:
        raise ConfigError(f"{size!r} is not a size; use a number with an optional K, M, G or T suffix")
    number, unit = m.groups()
    return number + (unit.upper() + "i" if unit else "")


# The intervals cron repeats exactly, in minutes: minutes dividing an hour, hours dividing a day, a day, a week.
CRON_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 10080)


def _cron_every(minutes: int) -> str:
    if minutes < 60:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes < 1440:
        return "0 * * * *" if minutes == 60 else f"0 */{minutes // 60} * * *"
    return "0 0 * * *" if minutes == 1440 else "0 0 * * 0"


def cron_schedule(interval: str) -> tuple[str, bool]:
    """(the cron schedule of ``interval``, a systemd time span; whether it is exact).

    Cron repeats only the intervals of ``CRON_MINUTES``; any other interval gets the
    longest of them that is not longer (every minute below one), so the task runs at
    least as often as asked, and ``False``: the caller says so.
    """
    seconds, rest = divmod(parse_timespan(interval), 10**6)
    exact = not rest and seconds % 60 == 0 and seconds // 60 in CRON_MINUTES
    minutes = max([m for m in CRON_MINUTES if m * 60 <= seconds] or [1])
    return _cron_every(minutes), exact


def label_value(text: str) -> str:
    """``text`` as a label value: a Docker tag (``~`` and ``+`` replaced), cut to 63, alphanumeric ends."""
    value = str(docker_tag(text))[:DNS_LABEL_MAX].strip("._-")
    if not LABEL_VALUE.fullmatch(value):  # cannot happen for a valid version; kept as the last check
        raise ConfigError(f"{text!r} cannot be a Kubernetes label value")
    return value


def migration_job_name(version: str) -> str:
    """``orangescrum-migrate-<version>``, a DNS label: one Job per version, so each release
    migrates once. ``.`` becomes ``-`` (a version has no ``-``: no two versions meet); a version
    with ``~``, ``+`` or capitals gets a hash of itself too, to stay apart from its neighbours."""
    slug = re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")
    if not re.fullmatch(r"[a-z0-9.]+", version) or len(JOB_PREFIX + slug) > DNS_LABEL_MAX:
        slug = f"{slug[:DNS_LABEL_MAX - len(JOB_PREFIX) - 9]}-{hashlib.sha256(version.encode()).hexdigest()[:8]}"
    return (JOB_PREFIX + slug)[:DNS_LABEL_MAX].rstrip("-")


# --------------------------------------------------------------------------
# Settings for the pods: the ConfigMap and the Secret
# --------------------------------------------------------------------------


def is_secret(key: str) -> bool:
    """A key whose value goes into the Secret (a *_FILE key names a mounted file: not itself a secret)."""
    return not key.endswith("_FILE") and (key in SECRET_KEYS or bool(SECRET_NAME.search(key)))


def split_env(values: Mapping[str, str], where: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(config, secret) pairs of an env file's keys, sorted; the build's own OSCB_* keys and the
    keys the manifests set are left out."""
    config: list[tuple[str, str]] = []
    secret: list[tuple[str, str]] = []
    for key in sorted(values):
        if key.startswith("OSCB_") or key in FIXED_KEYS:
            continue
        if not ENV_NAME.fullmatch(key):
            raise ConfigError(f"{where}: {key!r} is not an environment variable name; use letters, digits and "
                              "'_', not starting with a digit")
        (secret if is_secret(key) else config).append((key, values[key]))
    return config, secret


def pod_settings(cfg: BuildConfig, sources: Path | None = None) -> tuple[Path, dict[str, str], bool]:
    """(the file, its KEY=VALUE pairs, whether it is the operator's): --env-file, else .env.example."""
    if cfg.env_file is not None:
        return cfg.env_file, read_env_file(cfg.env_file), True
    example = (sources or source_root()) / "common" / ".env.example"
    return example, read_env_file(example), False


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------


def kubernetes_context(cfg: BuildConfig, config_env: list[tuple[str, str]]) -> dict[str, Any]:
    """What the templates see: the trees' context plus ``scale``, ``kubernetes`` and ``k8s``
    (values already in Kubernetes' syntax). Refuses settings no cluster would run."""
    k = cfg.kubernetes
    if cfg.docker.uid == 0 or cfg.docker.gid == 0:
        raise ConfigError(f"docker.uid={cfg.docker.uid}, docker.gid={cfg.docker.gid} (from {cfg.source_of('docker.uid')}): "
                          "the pods run with runAsNonRoot, which refuses uid 0; use the image's non-root ids (1000)")
    max_replicas = k.max_replicas or cfg.scale.replicas
    if max_replicas < cfg.scale.replicas:
        raise ConfigError(
            f"kubernetes.max_replicas={max_replicas} (from {cfg.source_of('kubernetes.max_replicas')}) is below "
            f"scale.replicas={cfg.scale.replicas} (from {cfg.source_of('scale.replicas')}); the autoscaler's upper "
            "bound must be at least its lower bound: raise kubernetes.max_replicas or lower scale.replicas")
    schedule, exact = cron_schedule(cfg.service.recurring_interval)
    if k.recurring_schedule:
        schedule, exact = k.recurring_schedule, True
    tag = str(docker_tag(cfg.version))
    return {
        **cfg.template_context(),
        "kubernetes": {f: getattr(k, f) for f in k.__dataclass_fields__},
        "k8s": {
            "image": k.image or f"{cfg.docker.image_name}:{tag}",
            # The default name is one this build publishes nowhere: whatever a registry serves under it
            # would run with the secrets (compose says pull_policy: never for the same reason).
            "pull_policy": "IfNotPresent" if k.image else "Never",
            "version_label": label_value(cfg.version),
            "migration_job": migration_job_name(cfg.version),
            "max_replicas": max_replicas,
            # OSCB_REPLICAS: how many web pods may run at once (the validator asks for shared sessions above 1).
            "replicas_env": max_replicas,
            "schedule": schedule,
            "schedule_exact": exact,
            "web_memory": quantity(cfg.docker.memory_limit),
            "queue_memory": quantity(cfg.docker.queue_memory_limit),
            "state_size": quantity(k.state_size),
            "tmp_size": quantity(k.tmp_size),
            "tmpdir": IMAGE_TMPDIR,
            "port": IMAGE_PORT,
            "config": config_env,
            "config_sha256": hashlib.sha256(json.dumps(config_env).encode()).hexdigest(),
        },
    }


def file_mode(source: Path) -> int:
    """0755 for an executable source (apply.sh), else 0644: modes never depend on the umask."""
    return 0o755 if os.stat(source).st_mode & 0o111 else 0o644


@dataclass(frozen=True)
class KubernetesPlan:
    dest: Path
    files: tuple[tuple[str, Path], ...]  # (path in the tree, template or file)
    context: Mapping[str, Any]
    search_path: tuple[Path, ...]
    partials: tuple[Path, ...]
    settings_file: Path
    operator_settings: bool  # the settings come from --env-file (not .env.example)
    secret_env: tuple[tuple[str, str], ...]  # never in the context, the digest or a log line

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"tool": __version__, "flavor": FLAVOR, "context": self.context},
                            sort_keys=True, default=str).encode())
        for dest, src in self.files:
            h.update(f"\0{dest}\0{file_mode(src):o}\0".encode() + src.read_bytes())
        for p in self.partials:
            h.update(f"\0partial\0{p.name}\0".encode() + p.read_bytes())
        return h.hexdigest()


def plan_kubernetes(cfg: BuildConfig, *, sources: Path | None = None, ws: Workspace | None = None) -> KubernetesPlan:
    """Every file of dist/kubernetes and the context they are rendered with (pure: reads sources only)."""
    root = (sources or source_root()) / SOURCE_DIR
    settings_file, values, operator = pod_settings(cfg, sources)
    config_env, secret_env = split_env(values, str(settings_file))
    context = kubernetes_context(cfg, config_env)
    context["settings_source"] = settings_file.name
    files: list[tuple[str, Path]] = []
    partials: list[Path] = []
    for src in sorted(root.iterdir()):
        if not src.is_file():
            continue
        if src.name.startswith(PARTIAL_PREFIX):
            partials.append(src)
            continue
        dest = src.name.removesuffix(TEMPLATE_SUFFIX)
        if dest in OPERATOR_FILES:
            raise ConfigError(f"{src}: {dest} is the operator's file (made from _secret.yaml.j2); rename the source")
        wanted = OPTIONAL_FILES.get(dest)
        if wanted is None or context["kubernetes"][wanted]:
            files.append((dest, src))
    # What kustomization.yaml lists: every manifest, the operator's secret.yaml included.
    context["k8s"]["resources"] = sorted({d for d, _ in files if d.endswith(".yaml") and d != KUSTOMIZATION}
                                         | {SECRET_FILE})
    dest_dir = (ws or Workspace(cfg.dist_dir)).tree(FLAVOR)
    return KubernetesPlan(dest=dest_dir, files=tuple(files), context=context, search_path=(root,),
                          partials=tuple(partials), settings_file=settings_file, operator_settings=operator,
                          secret_env=tuple(secret_env))


def render_secret(plan: KubernetesPlan) -> str:
    template = next((p for p in plan.partials if p.name == SECRET_TEMPLATE), None)
    if template is None:
        raise ConfigError(f"{plan.search_path[0]}/{SECRET_TEMPLATE} is missing")
    context = {**plan.context, "secret_env": list(plan.secret_env), "secret_source": plan.settings_file.name}
    return render_template(template.read_text(encoding="utf-8"), context, name=str(template),
                           search_path=plan.search_path)


def render_files(plan: KubernetesPlan) -> dict[str, str]:
    """The text of every planned file (pure)."""
    out = {}
    for dest, src in plan.files:
        text = src.read_text(encoding="utf-8")
        out[dest] = render_template(text, plan.context, name=str(src), search_path=plan.search_path) \
            if src.name.endswith(TEMPLATE_SUFFIX) else text
    return out


# --------------------------------------------------------------------------
# Acting: the tree
# --------------------------------------------------------------------------


def _write_secret(plan: KubernetesPlan, into: Path, old: Path) -> str:
    """secret.yaml in the new tree: from --env-file, else the last tree's, else placeholders."""
    out = into / SECRET_FILE
    if plan.operator_settings:
        write_atomic(out, render_secret(plan).encode(), mode=0o600)
        return f"written from {plan.settings_file} (mode 0600)"
    if old.is_file() and not old.is_symlink():
        shutil.copy2(old, out)
        return "kept"
    write_atomic(out, render_secret(plan).encode(), mode=0o600)
    epoch = plan.context["source_date_epoch"]
    os.utime(out, (epoch, epoch))  # the placeholders are a function of the sources, like the rest of the tree
    return "placeholders from .env.example: fill it in, or give --env-file"


def assemble_kubernetes(cfg: BuildConfig, *, sources: Path | None = None,
                        ws: Workspace | None = None) -> AssembleResult:
    """Build dist/kubernetes atomically, or only refresh its secret.yaml when the inputs are unchanged."""
    ws = ws or Workspace(cfg.dist_dir)
    plan = plan_kubernetes(cfg, sources=sources, ws=ws)
    digest = plan.fingerprint()
    dest = plan.dest
    stamp = ws.stamp(FLAVOR)
    if stamp is not None and stamp.inputs == digest and stamp.intact(dest, skip=OPERATOR_FILES):
        if plan.operator_settings:
            write_atomic(dest / SECRET_FILE, render_secret(plan).encode(), mode=0o600)
            logger.info("    %s: written from %s (mode 0600)", dest / SECRET_FILE, plan.settings_file)
        if ws.manifest.get("tree", FLAVOR) is None:
            _record(cfg, ws, plan, digest, stamp)
        return AssembleResult(FLAVOR, dest, up_to_date=True)  # type: ignore[arg-type]

    epoch = cfg.source_date_epoch
    ws.root.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temp_dir(ws.root, f".tmp-{FLAVOR}-")
    plan_sources = dict(plan.files)
    try:
        for rel, text in render_files(plan).items():
            out = tmp / rel
            out.write_text(text, encoding="utf-8")
            os.chmod(out, file_mode(plan_sources[rel]))
            os.utime(out, (epoch, epoch))
        secret = _write_secret(plan, tmp, dest / SECRET_FILE)
        new_stamp = Stamp(digest, listing(tmp, OPERATOR_FILES))
        os.chmod(tmp, 0o755)
        os.utime(tmp, (epoch, epoch))
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ws.write_stamp(FLAVOR, new_stamp)
    _record(cfg, ws, plan, digest, new_stamp)
    if not plan.context["k8s"]["schedule_exact"]:
        logger.warning(
            "    service.recurring_interval=%r (from %s) has no cron schedule (cron repeats minutes dividing an hour, "
            "hours dividing a day, 1d or 1w): the CronJob runs the recurring task at %r instead; set "
            "kubernetes.recurring_schedule (OSCB_KUBERNETES_RECURRING_SCHEDULE) to choose", cfg.service.recurring_interval,
            cfg.source_of("service.recurring_interval"), plan.context["k8s"]["schedule"])
    logger.info("    %s: %s", dest / SECRET_FILE, secret)
    return AssembleResult(FLAVOR, dest, up_to_date=False, kept=(SECRET_FILE,) if secret == "kept" else ())  # type: ignore[arg-type]


# The settings dist/kubernetes is made from, as the manifest records them.
KUBERNETES_SETTINGS = ("version", "app_webroot", "source_date_epoch", "docker.", "service.", "paths.", "scale.",
                       "kubernetes.")


def _record(cfg: BuildConfig, ws: Workspace, plan: KubernetesPlan, digest: str, stamp: Stamp) -> None:
    ws.record(Artifact(kind="tree", name=FLAVOR, version=cfg.version, path=ws.relative(plan.dest),
                       sha256=tree_sha256(plan.dest, stamp.files), inputs=digest,
                       settings=recorded_settings(cfg, KUBERNETES_SETTINGS),
                       extra={"image": plan.context["k8s"]["image"], "migration_job": plan.context["k8s"]["migration_job"]}))
