"""The build configuration: one frozen, typed object, resolved once per run.

Precedence (later wins)::

    defaults (ns.configure) < invoke config (invoke.yaml) < build env file
    (--env-file, OSCB_* keys) < environment variables (OSCB_*) < task flags

Resolution is a pure function of its inputs (``resolve(layers, ...)``): it never
reads ``os.environ`` itself, so tests can drive every path.  Each bad value
fails with one line naming the key, where the value came from and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from . import git
from .errors import ConfigError
from .escape import ABS_PATH, REL_PATH, control_chars
from .packaging.formats import deb as deb_format
from .packaging.formats import rpm as rpm_format
from .workspace import Workspace

ENV_PREFIX = "OSCB_"
# Images under this prefix are the local stand-in builder (see builder/standin/).
STANDIN_PREFIX = "localhost/orangescrum-standin/"

# Extensions the FrankenPHP static builder (static-php-cli) can compile.  A typo
# in the list would otherwise surface 20 minutes into a cold build.
KNOWN_PHP_EXTENSIONS = frozenset(
    """
    amqp apcu bcmath bz2 calendar ctype curl dba dom enchant event exif ffi fileinfo filter
    ftp gd gettext gmp iconv igbinary imagick imap inotify intl ldap libxml mbregex mbstring
    memcache memcached mongodb msgpack mysqli mysqlnd opcache openssl parallel password-argon2
    pcntl pdo pdo_mysql pdo_pgsql pdo_sqlite pdo_sqlsrv pgsql phar posix protobuf rar readline
    redis session shmop simplexml snappy soap sockets sodium sqlite3 sqlsrv ssh2 swoole
    sysvmsg sysvsem sysvshm tidy tokenizer uuid uv xdebug xhprof xlswriter xml xmlreader
    xmlwriter xsl yac yaml zip zlib zstd json
    """.split()
)

# What OrangeScrum checks for at start-up (plus redis for cache and queue, and
# what CakePHP itself needs: session, fileinfo, simplexml, dom, opcache).
ORANGESCRUM_EXTENSIONS = (
    "ctype",
    "curl",
    "dom",
    "fileinfo",
    "gd",
    "intl",
    "json",
    "mbstring",
    "opcache",
    "openssl",
    "pdo",
    "pdo_pgsql",
    "redis",
    "session",
    "simplexml",
    "tokenizer",
    "xml",
    "zip",
)


# What OrangeScrum writes at run time (uploads, caches and sessions, logs, and
# what its installer writes): the default of app.state_paths.  A trailing '/'
# marks a directory; the others are files.
ORANGESCRUM_STATE_PATHS = (
    "webroot/files/",
    "webroot/temp/",
    "webroot/timesheetpdf/",
    "webroot/csv/",
    "webroot/invoice-logo/",
    "webroot/pdfreports/",
    "tmp/",
    "logs/",
    "config/app_local.php",
    "config/install.ini",
    "config/smtp.php",
    "config/oauth-keys/",
)


# --------------------------------------------------------------------------
# The settings registry: one row per key.  It drives the defaults handed to
# invoke, the environment variable names, parsing, and docs/CONFIGURATION.md.
# --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Setting:
    key: str
    default: Any
    kind: str  # path, bool, int, str, list, choice, version, abs_path, size, epoch, url, image, ... (opt_X: X or unset)
    help: str
    choices: tuple[str, ...] = ()
    under: str = ""  # abs_path: must be a subdirectory of this directory
    # "setting": persistent, recorded in dist/manifest.json and stage digests;
    # "run": per-run intent (RunOptions), never recorded or digested.
    scope: Literal["setting", "run"] = "setting"

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()

    @property
    def flag(self) -> str | None:
        return FLAGS.get(self.key)


SETTINGS: tuple[Setting, ...] = (
    # -- the build ----------------------------------------------------------
    Setting(key="app", default="../apps/orangescrum-v4", kind="path",
            help="The PHP application source (a directory with composer.json)."),
    Setting(key="binary", default=None, kind="opt_path",
            help="A prebuilt FrankenPHP binary to package; skips the Docker build."),
    Setting(key="version", default=None, kind="opt_version",
            help="Release version (deb/rpm-valid). Default: the app's composer.json "
                 "\"version\", else `git describe` of the app, else 0.0.0."),
    Setting(key="dist_dir", default="dist", kind="path",
            help="Where every output goes (git-ignored)."),
    Setting(key="env_file", default=None, kind="opt_path",
            help="Deployment env file: validated, used by `deploy`; its OSCB_* keys "
                 "also configure the build."),
    Setting(key="source_date_epoch", default=None, kind="opt_epoch",
            help="Timestamp for reproducible outputs. Default: SOURCE_DATE_EPOCH, else the "
                 "app's last git commit, else the mtime of the newest file in the app, else 0."),
    Setting(key="skip_deploy", default=False, kind="bool", scope="run",
            help="`build` stops after the artifacts; does not start the Docker deployment."),
    Setting(key="skip_base", default=False, kind="bool", scope="run",
            help="Reuse whatever base image exists, even if its inputs changed."),
    Setting(key="rebuild_base", default=False, kind="bool", scope="run",
            help="Rebuild the base image even if it is up to date."),
    Setting(key="keep_package", default=False, kind="bool", scope="run",
            help="Keep the intermediate Docker build context under dist/build/ for debugging."),
    # -- the FrankenPHP builder ---------------------------------------------
    Setting(key="builder.image", default=None, kind="opt_image",
            help="Static-builder image. Default: "
                 "dunglas/frankenphp:static-builder-<libc>-<frankenphp_version>. "
                 "Behind an air gap, point this at your mirror."),
    Setting(key="builder.libc", default="gnu", kind="choice", choices=("gnu", "musl"),
            help="C library of the static binary (gnu is recommended for production)."),
    Setting(key="builder.frankenphp_version", default="1.12.7", kind="version",
            help="FrankenPHP release to build (pinned)."),
    Setting(key="builder.php_version", default="8.3", kind="php_version",
            help="PHP minor version compiled into the binary."),
    Setting(key="builder.php_extensions", default=",".join(ORANGESCRUM_EXTENSIONS), kind="extensions",
            help="PHP extensions to compile in, comma-separated (always explicit)."),
    Setting(key="builder.php_extension_libs", default="", kind="list",
            help="Extra libraries for the extensions (PHP_EXTENSION_LIBS), comma-separated."),
    Setting(key="builder.xcaddy_modules", default="", kind="list",
            help="Extra Caddy modules (SPC_CMD_VAR_FRANKENPHP_XCADDY_MODULES), comma-separated."),
    Setting(key="builder.platform", default="linux/amd64", kind="choice",
            choices=("linux/amd64", "linux/arm64"), help="Target platform of the binary."),
    Setting(key="builder.composer_image", default=None, kind="opt_image",
            help="Image with composer for `composer install --no-dev -a`. Default: composer:2 "
                 "(the stand-in builder brings its own)."),
    Setting(key="builder.base_repository", default="orangescrum-cloud-base", kind="image_repo",
            help="Local repository name of the cached base image (compiled PHP)."),
    Setting(key="builder.compress", default=False, kind="bool",
            help="Compress the binary with UPX (slower start-up, smaller file)."),
    # -- the Docker deployment ----------------------------------------------
    Setting(key="docker.runtime_image", default="debian:bookworm-20251229-slim", kind="image",
            help="Debian or Ubuntu image the runtime image's few files are taken from at build time "
                 "(pinned: a dated Debian snapshot): busybox-static, the CA bundle, tzdata and, for a glibc "
                 "binary, the C library it links; the runtime image itself is FROM scratch. It must have "
                 "busybox-static, ca-certificates and tzdata, or reach an apt mirror at build time to install "
                 "them."),
    Setting(key="docker.image_name", default="orangescrum/orangescrum", kind="image_repo",
            help="Repository the runtime image is tagged as (with the version and latest); no tag."),
    Setting(key="docker.uid", default=1000, kind="int", help="UID of the non-root user in the image."),
    Setting(key="docker.gid", default=1000, kind="int", help="GID of the non-root user in the image."),
    Setting(key="docker.bind_address", default="127.0.0.1", kind="host",
            help="Host address the app port is published on: an IPv4 or IPv6 address "
                 "(keep a reverse proxy in front)."),
    Setting(key="docker.host_port", default=8080, kind="port", help="Host port the app is published on."),
    Setting(key="docker.memory_limit", default="1g", kind="size", help="Memory limit of the app container."),
    Setting(key="docker.queue_memory_limit", default="512m", kind="size",
            help="Memory limit of the queue container."),
    # The `infra` profile of docker-compose.yaml (development only): image references,
    # so that an air-gapped user points them at a mirror or at local builds.
    Setting(key="docker.postgres_image", default="postgres:15-alpine", kind="image",
            help="Image of the `infra` profile's PostgreSQL (development only). Any image that takes "
                 "POSTGRES_DB, POSTGRES_USER and POSTGRES_PASSWORD and keeps its data in "
                 "/var/lib/postgresql/data, like the official postgres image."),
    Setting(key="docker.redis_image", default="redis:7-alpine", kind="image",
            help="Image of the `infra` profile's Redis (development only): runs "
                 "`redis-server --requirepass PASSWORD` like the official redis image."),
    Setting(key="docker.minio_image", default="minio/minio:latest", kind="image",
            help="Image of the `infra` profile's S3 store (development only): runs `server /data` with "
                 "MINIO_ROOT_USER and MINIO_ROOT_PASSWORD like the official minio image."),
    # -- the native deployment (systemd) ------------------------------------
    Setting(key="service.user", default="orangescrum", kind="name", help="System user the services run as."),
    Setting(key="service.listen", default="127.0.0.1:8080", kind="listen",
            help="Address php-server listens on (HOST:PORT)."),
    Setting(key="service.memory_max", default="1G", kind="size", help="systemd MemoryMax= of the web service."),
    Setting(key="service.queue_memory_max", default="512M", kind="size",
            help="systemd MemoryMax= of the queue worker."),
    Setting(key="service.tasks_max", default=512, kind="int", help="systemd TasksMax= of each service."),
    Setting(key="service.limit_nofile", default=65536, kind="int", help="systemd LimitNOFILE= of each service."),
    Setting(key="service.queue_max_runtime", default=3600, kind="int",
            help="Seconds a queue worker runs before it exits and is restarted."),
    Setting(key="service.recurring_interval", default="30min", kind="timespan",
            help="How often the recurring task runs: a systemd time span such as 30min, 1h or 1h 30min."),
    # -- the web server embedded with the app (Caddyfile, php.ini) -----------
    Setting(key="server.upload_max_size", default="64M", kind="size",
            help="Largest request body and upload (PHP upload_max_filesize and post_max_size; Caddy answers "
                 "413 above it), K/M/G are powers of 1024."),
    Setting(key="server.php_memory_limit", default="256M", kind="size", help="PHP memory_limit of a request."),
    Setting(key="server.max_execution_time", default=60, kind="positive_int",
            help="PHP max_execution_time: seconds a request may run."),
    Setting(key="server.opcache_memory", default=128, kind="positive_int",
            help="OPcache memory in MB (opcache.memory_consumption); the app never changes on disk, so "
                 "timestamps are never checked."),
    Setting(key="server.asset_max_age", default=604800, kind="int",
            help="Cache-Control max-age in seconds of static assets (css, js, images, fonts); 0: no-cache."),
    Setting(key="server.grace_period", default=20, kind="positive_int",
            help="Seconds Caddy lets in-flight requests finish after SIGTERM (keep it below the stop timeouts: "
                 "Compose stop_grace_period, systemd TimeoutStopSec=)."),
    Setting(key="server.metrics_listen", default=None, kind="opt_loopback_listen",
            help="Loopback HOST:PORT that serves Caddy's Prometheus metrics at /metrics. Unset: no metrics."),
    # -- the Swarm stack (`invoke deploy --swarm`; scale.replicas below) ------
    Setting(key="swarm.stack_name", default="orangescrum", kind="stack_name",
            help="Name of the Swarm stack `invoke deploy --swarm` deploys (services are <name>_app, ...)."),
    Setting(key="swarm.edge_image", default="caddy:2.8.4", kind="image",
            help="Image of the stack's edge proxy: Caddy >= 2.6 (`dynamic a` upstreams) with `caddy` on PATH; "
                 "point it at your registry's copy."),
    Setting(key="swarm.secrets", default="SECURITY_SALT,DB_PASSWORD,REDIS_PASSWORD",
            kind="env_keys",
            help="Settings the Swarm stack hands over as Docker secrets (KEY_FILE=/run/secrets/KEY), "
                 "comma-separated (add STORAGE_SECRET_KEY, SMTP_PASSWORD when you set them); the others travel "
                 "in the env file. Empty: none."),
    # -- installed layout ---------------------------------------------------
    Setting(key="paths.binary", default="/usr/bin/orangescrum", kind="abs_path",
            help="Installed path of the FrankenPHP binary."),
    Setting(key="paths.config_dir", default="/etc/orangescrum", kind="abs_path",
            help="Directory of orangescrum.env."),
    Setting(key="paths.libexec_dir", default="/usr/libexec/orangescrum", kind="abs_path",
            help="Helpers (validate-env) on installed hosts."),
    Setting(key="paths.state_dir", default="/var/lib/orangescrum", kind="abs_path", under="/var/lib",
            help="State directory (home of the service user): a directory of its own below /var/lib "
                 "(the units' StateDirectory=)."),
    Setting(key="paths.cache_dir", default="/var/cache/orangescrum", kind="abs_path", under="/var/cache",
            help="TMPDIR of the services: where the embedded app is extracted; a directory of its own below "
                 "/var/cache (the units' CacheDirectory=; emptied on removal)."),
    Setting(key="app_webroot", default="webroot", kind="relpath",
            help="Document root inside the app (CakePHP: webroot)."),
    Setting(key="app.state_paths", default=",".join(ORANGESCRUM_STATE_PATHS), kind="state_paths",
            help="The app's persistent state: app-relative paths, comma-separated; a trailing '/' marks a "
                 "directory, anything else is a file (in a directory of the app). They live in paths.state_dir "
                 "(Docker: the state volume mounted there) and the app sees each at its usual place, "
                 "seeded from the app's shipped content on first start and never overwritten after."),
    Setting(key="app.migrate_command", default="bin/cake.php migrations migrate", kind="app_command",
            help="Console command (a PHP script of the app and its arguments, run with the binary's php-cli) "
                 "that migrates the database before a new version serves: the one-shot Compose service "
                 "`migrate` and orangescrum-migrate.service run it. Empty: no migration step."),
    Setting(key="app_external_symlinks", default=False, kind="bool",
            help="Archive symlinks of the app that point outside it (absolute, or out through ..): in the "
                 "binary they reach the server's own files. Default: refuse, naming each link."),
    # -- scaling and Kubernetes (`invoke dist.kubernetes`: dist/kubernetes) ------
    Setting(key="scale.replicas", default=1, kind="count",
            help="Web replicas of an orchestrated deployment (Kubernetes, Swarm); the pods get it as OSCB_REPLICAS. "
                 "More than 1 needs shared sessions (Redis)."),
    Setting(key="kubernetes.namespace", default="orangescrum", kind="dns_label",
            help="Namespace of every resource in dist/kubernetes."),
    Setting(key="kubernetes.image", default=None, kind="opt_image",
            help="Image the pods run. Default: <docker.image_name>:<version as a Docker tag> (what `docker.image` "
                 "tags), never pulled (imagePullPolicy: Never: no registry serves it); push it to a registry "
                 "the cluster pulls from and name it here (then pulled when missing)."),
    Setting(key="kubernetes.max_replicas", default=None, kind="opt_count",
            help="Upper bound of the web HorizontalPodAutoscaler (its lower bound is scale.replicas). "
                 "Default: scale.replicas (no autoscaling)."),
    Setting(key="kubernetes.cpu_request", default="250m", kind="cpu",
            help="CPU request of each pod (the autoscaler's utilisation is relative to it), e.g. 250m or 1."),
    Setting(key="kubernetes.cpu_target", default=70, kind="count",
            help="Average CPU utilisation (percent of the request) the web autoscaler aims at."),
    Setting(key="kubernetes.storage_class", default=None, kind="opt_dns_subdomain",
            help="StorageClass of the state PersistentVolumeClaim (ReadWriteMany: NFS, CephFS, EFS, Azure Files, ...). "
                 "Default: the cluster's default class."),
    Setting(key="kubernetes.state_size", default="10G", kind="size",
            help="Size requested for the state PersistentVolumeClaim (G means GiB)."),
    Setting(key="kubernetes.tmp_medium", default="disk", kind="choice", choices=("disk", "memory"),
            help="emptyDir medium of TMPDIR, where the binary extracts the app: disk, or memory (a tmpfs that "
                 "counts against the pod's memory limit)."),
    Setting(key="kubernetes.tmp_size", default="1G", kind="size",
            help="sizeLimit of the TMPDIR emptyDir (the extracted app and its caches)."),
    Setting(key="kubernetes.ingress_host", default=None, kind="opt_hostname",
            help="Host name of an Ingress in front of the web Service. Unset: no Ingress."),
    Setting(key="kubernetes.ingress_class", default=None, kind="opt_dns_subdomain",
            help="ingressClassName of the Ingress. Default: the cluster's default class."),
    Setting(key="kubernetes.ingress_tls_secret", default=None, kind="opt_dns_subdomain",
            help="Secret with the Ingress's TLS certificate (kubernetes.io/tls). Unset: no tls section."),
    Setting(key="kubernetes.recurring_schedule", default=None, kind="opt_cron",
            help="Cron schedule of the recurring task's CronJob. Default: service.recurring_interval as cron "
                 "(minutes dividing an hour, hours dividing a day, 1d, 1w; another interval gets the longest of "
                 "those not longer than it, with a warning)."),
    # -- OS packages (`invoke package.deb`, `package.rpm`) ---------------------
    Setting(key="package.backend", default="auto", kind="choice", choices=("auto", "fpm", "nfpm"),
            help="Packager: fpm (Ruby gem, 1.x) or nfpm. auto takes, per format, fpm for xz and nfpm "
                 "otherwise, when installed and able, else the other."),
    Setting(key="package.name", default="orangescrum", kind="pkgname",
            help="Package name (deb and rpm)."),
    Setting(key="package.release", default="1", kind="pkgrelease",
            help="Package revision (deb) / Release (rpm) of this version; bump it to re-package the same version."),
    Setting(key="package.maintainer", default="OrangeScrum Packaging <packaging@orangescrum.com>", kind="contact",
            help="Maintainer/Packager field (Name <email>): set your team's address."),
    Setting(key="package.vendor", default="OrangeScrum", kind="str", help="Vendor (rpm) and copyright holder."),
    Setting(key="package.homepage", default="https://www.orangescrum.com", kind="homepage",
            help="Homepage/URL field of the packages."),
    Setting(key="package.license", default=None, kind="opt_license",
            help="License of the packaged application (SPDX). Default: the app's composer.json \"license\"."),
    Setting(key="package.deb_compression", default="zstd", kind="choice", choices=("zstd", "xz", "gzip", "none"),
            help="Compression of the .deb payload: zstd (dpkg >= 1.21.18: Debian 12, Ubuntu 21.10+) is fast; "
                 "xz for older targets."),
    Setting(key="package.rpm_compression", default="zstd", kind="choice", choices=("zstd", "xz", "gzip", "none"),
            help="Compression of the .rpm payload: zstd (rpm >= 4.14: EL8+, Fedora, SUSE 15) is fast; "
                 "xz for older targets."),
    Setting(key="package.deb_depends", default="systemd", kind="deb_relations",
            help="Depends of the .deb, comma-separated Debian relations (a name, an optional version such as "
                 "`(>= 247)`, alternatives joined by a bar) (the binary is static: only what the scripts use; init-system-helpers is essential)."),
    Setting(key="package.rpm_depends", default="systemd", kind="rpm_relations",
            help="Requires of the .rpm, comma-separated, such as `systemd >= 247`."),
    Setting(key="package.recommends", default="ca-certificates", kind="pkg_names",
            help="Recommends of both packages, comma-separated package names (the CA bundle that "
                 "SSL_CERT_FILE points at)."),
    # -- releases (`invoke release`) ----------------------------------------
    Setting(key="release.sign_key", default=None, kind="opt_str",
            help="GPG key (fingerprint, key id or user id) that signs SHA256SUMS, the .rpm and the "
                 "repositories. Unset: an unsigned release."),
    Setting(key="release.gnupghome", default=None, kind="opt_path",
            help="GnuPG home holding the signing key. Default: $GNUPGHOME, else ~/.gnupg."),
    Setting(key="release.repo_dir", default=None, kind="opt_path",
            help="The persistent apt/dnf repository `release --repo` adds to (older versions are kept). "
                 "Default: <dist_dir>/release/repo."),
    Setting(key="release.repo_url", default=None, kind="opt_url",
            help="URL the repository directory is served from (e.g. an S3 bucket); written into the "
                 "generated orangescrum.repo and orangescrum.sources."),
    Setting(key="release.changelog", default=None, kind="opt_path",
            help="Markdown changelog the release notes come from (a `## <version>` section per release). "
                 "Default: CHANGELOG.md of the app."),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}

# Flags the tasks expose, by setting key.
FLAGS: dict[str, str] = {
    "app": "--app",
    "binary": "--binary",
    "version": "--version",
    "env_file": "--env-file",
    "skip_deploy": "--skip-deploy",
    "skip_base": "--skip-base",
    "rebuild_base": "--rebuild-base",
    "keep_package": "--keep-package",
    "package.backend": "--backend",
    "release.sign_key": "--sign",
}


def defaults_tree() -> dict[str, Any]:
    """The nested defaults handed to ``ns.configure({"cloudbuilder": ...})``."""
    tree: dict[str, Any] = {}
    for s in SETTINGS:
        node = tree
        *parents, leaf = s.key.split(".")
        if parents and parents[0] in BY_KEY:
            # Below a setting that is itself a value (app.migrate_command under app):
            # the dotted key, flat (invoke.yaml writes it so too).
            tree[s.key] = s.default
            continue
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = s.default
    return tree


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        # A mapping below a value setting (app: {migrate_command: ...}) holds the
        # settings named after it; `app.migrate_command:` as one dotted key works too.
        if isinstance(v, Mapping) and (key not in BY_KEY or any(f"{key}.{sub}" in BY_KEY for sub in v)):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# --------------------------------------------------------------------------
# The typed result
# --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BuilderConfig:
    image: str
    libc: Literal["gnu", "musl"]
    frankenphp_version: str
    php_version: str
    php_extensions: tuple[str, ...]
    php_extension_libs: tuple[str, ...]
    xcaddy_modules: tuple[str, ...]
    platform: Literal["linux/amd64", "linux/arm64"]
    composer_image: str
    base_repository: str
    compress: bool

    @property
    def arch(self) -> str:
        return {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[self.platform]


@dataclass(frozen=True, kw_only=True)
class DockerConfig:
    runtime_image: str
    image_name: str
    uid: int
    gid: int
    bind_address: str
    host_port: int
    memory_limit: str
    queue_memory_limit: str
    postgres_image: str
    redis_image: str
    minio_image: str


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    user: str
    listen: str
    memory_max: str
    queue_memory_max: str
    tasks_max: int
    limit_nofile: int
    queue_max_runtime: int
    recurring_interval: str


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """The embedded Caddyfile and php.ini (rendered into the app before it is embedded)."""

    upload_max_size: str
    php_memory_limit: str
    max_execution_time: int
    opcache_memory: int
    asset_max_age: int
    grace_period: int
    metrics_listen: str | None


@dataclass(frozen=True, kw_only=True)
class SwarmConfig:
    stack_name: str
    edge_image: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PathsConfig:
    binary: str
    config_dir: str
    libexec_dir: str
    state_dir: str
    cache_dir: str


@dataclass(frozen=True, kw_only=True)
class PackageConfig:
    backend: Literal["auto", "fpm", "nfpm"]
    name: str
    release: str
    maintainer: str
    vendor: str
    homepage: str
    license: str | None
    deb_compression: Literal["zstd", "xz", "gzip", "none"]
    rpm_compression: Literal["zstd", "xz", "gzip", "none"]
    deb_depends: tuple[str, ...]
    rpm_depends: tuple[str, ...]
    recommends: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ReleaseConfig:
    sign_key: str | None
    gnupghome: Path | None
    repo_dir: Path
    repo_url: str | None
    changelog: Path | None


@dataclass(frozen=True, kw_only=True)
class ScaleConfig:
    replicas: int


@dataclass(frozen=True, kw_only=True)
class KubernetesConfig:
    namespace: str
    image: str | None
    max_replicas: int | None
    cpu_request: str
    cpu_target: int
    storage_class: str | None
    state_size: str
    tmp_medium: Literal["disk", "memory"]
    tmp_size: str
    ingress_host: str | None
    ingress_class: str | None
    ingress_tls_secret: str | None
    recurring_schedule: str | None


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Per-run intent: what this invocation should do, not what the artifacts are.

    Resolved from the same sources as the settings (flags, OSCB_* variables,
    invoke.yaml), but kept apart from them: never in dist/manifest.json's
    settings, never in a stage's inputs digest.
    """

    skip_deploy: bool = False
    skip_base: bool = False
    rebuild_base: bool = False
    keep_package: bool = False


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    app: Path
    app_webroot: str
    app_external_symlinks: bool
    # app.state_paths: app-relative, a trailing '/' for a directory (see state_layout).
    app_state_paths: tuple[str, ...]
    # app.migrate_command as words (empty: no migration step).
    app_migrate_command: tuple[str, ...]
    binary: Path | None
    version: str
    dist_dir: Path
    env_file: Path | None
    source_date_epoch: int
    builder: BuilderConfig
    docker: DockerConfig
    service: ServiceConfig
    paths: PathsConfig
    server: ServerConfig
    package: PackageConfig
    release: ReleaseConfig
    scale: ScaleConfig
    kubernetes: KubernetesConfig
    swarm: SwarmConfig
    # Per-run intent, beside the settings (not one of them): see RunOptions.
    run: RunOptions = field(default_factory=RunOptions, compare=False)
    # Where each value came from, for messages ("flag --app", "default", ...).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Never in a repr, a log line or a template context.
    github_token: str | None = field(default=None, compare=False, repr=False)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")

    # Read-through views of the run options (the registry names them as keys of
    # this object); the data lives in ``run``, outside the settings.
    skip_deploy = property(lambda self: self.run.skip_deploy)
    skip_base = property(lambda self: self.run.skip_base)
    rebuild_base = property(lambda self: self.run.rebuild_base)
    keep_package = property(lambda self: self.run.keep_package)

    def template_context(self) -> dict[str, Any]:
        """What the jinja2 templates see: plain data, no paths of this machine, no secrets."""
        return {
            "version": self.version,
            "app_webroot": self.app_webroot,
            "app_state_paths": self.app_state_paths,
            "app_migrate_command": self.app_migrate_command,
            "source_date_epoch": self.source_date_epoch,
            "builder": _public(self.builder),
            "docker": _public(self.docker),
            "service": _public(self.service),
            "paths": _public(self.paths),
            "scale": _public(self.scale),
            "server": _public(self.server),
            # The recurring task's interval as a Go duration (a Swarm restart delay).
            "swarm": {**_public(self.swarm),
                      "recurring_delay": f"{parse_timespan(self.service.recurring_interval) // 10**6}s"},
        }


def _public(section: Any) -> dict[str, Any]:
    return {k: getattr(section, k) for k in section.__dataclass_fields__}


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

# deb upstream version and rpm Version at once: starts with a digit, no '-'
# (the release separator in both), no '_' or ':' (epoch) surprises.
VERSION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ENV_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
SIZE_RE = re.compile(r"^[0-9]+[KMGTkmgt]?$")


class _Bad(Exception):
    """A value failed to parse: (problem, fix)."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def _as_str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad("is not a string", "give a plain text value")
    text = str(value)
    bad = control_chars(text)
    if bad:
        # No generated file (a unit, a script, a control file, YAML) can carry these.
        raise _Bad(f"contains a control character ({', '.join(bad)})",
                   "give one line of printable text (no newline, carriage return, tab or NUL)")
    return text.strip()


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _as_str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise _Bad("is not a boolean", "use true or false")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad("is not an integer", "give a whole number")
    if isinstance(value, int):
        return value
    text = _as_str(value)
    if not re.fullmatch(r"[0-9]+", text):
        raise _Bad("is not a non-negative integer", "give a whole number such as 512")
    return int(text)


def _parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = [_as_str(v) for v in value]
    else:
        items = _as_str(value).split(",")
    return tuple(i.strip() for i in items if i.strip())


def _parse_version(value: Any) -> str:
    text = _as_str(value)
    if text.startswith("v") and text[1:2].isdigit():
        text = text[1:]
    if not VERSION_RE.fullmatch(text):
        raise _Bad(
            "is not a valid deb/rpm version",
            "use digits, letters, '.', '+' and '~', starting with a digit and without '-' (e.g. 4.1.0 or 4.1.0~rc1)",
        )
    return text


# -- formats of values that reach generated files ----------------------------

# Docker image references (github.com/distribution/reference, grammar.go).
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
IMAGE_REPO_RE = re.compile(_IMAGE_NAME)
# The tag's \w is Go's (ASCII), not Python's Unicode \w: "debian:ébookworm" is no reference.
IMAGE_REF_RE = re.compile(
    rf"{_IMAGE_NAME}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?")

# Debian relations (Policy 7.1) and rpm dependencies: each format's syntax, in its module.
DEB_RELATION_RE = deb_format.RELATION_RE
RPM_RELATION_RE = rpm_format.RELATION_RE
PKG_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# An SPDX license expression (or a LicenseRef-..., or a word such as "proprietary").
LICENSE_RE = re.compile(r"[A-Za-z0-9(][A-Za-z0-9.+:()-]*(?: [A-Za-z0-9.+:()-]+)*")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
# URL characters that mean the same to a shell, a unit file and YAML when quoted, and need no
# quoting in a control field: RFC 3986 without ' ( ) * $ [ ] (percent-encode those).
URL_RE = re.compile(r"(?:[A-Za-z0-9._~:/?#@!&+,;=-]|%[0-9A-Fa-f]{2})+")

# systemd time spans (systemd.time(7), parse_time() in time-util.c): the units in
# systemd's own matching order (the first prefix that matches wins), in microseconds.
_USEC = {"s": 10**6, "min": 60 * 10**6, "h": 3600 * 10**6, "d": 86400 * 10**6, "w": 7 * 86400 * 10**6,
         "M": 2629800 * 10**6, "y": 31557600 * 10**6, "ms": 1000, "us": 1}
TIME_UNITS: tuple[tuple[str, int], ...] = tuple((name, _USEC[unit]) for names, unit in (
    (("seconds", "second", "sec", "s"), "s"), (("minutes", "minute", "min"), "min"),
    (("months", "month", "M"), "M"), (("msec", "ms"), "ms"), (("m",), "min"),
    (("hours", "hour", "hr", "h"), "h"), (("days", "day", "d"), "d"), (("weeks", "week", "w"), "w"),
    (("years", "year", "y"), "y"), (("usec", "us", "\u00b5s", "\u03bcs"), "us")) for name in names)
_TIME_NUMBER = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,3}))?")


def parse_timespan(text: str) -> int:
    """Microseconds of a systemd time span, for a conservative subset of systemd's syntax.

    Accepted: one bare number of seconds, or components NUMBER[.FRACTION] UNIT
    separated by optional spaces ("30min", "1h 30min", "1.5h"). A ValueError
    otherwise. tests/integration checks every accepted value against systemd.
    """
    if re.fullmatch(r"[0-9]{1,9}", text):
        return int(text) * 10**6
    pos, total, n, components = 0, 0, len(text), 0
    while True:
        while pos < n and text[pos] == " ":
            pos += 1
        if pos == n:
            break
        m = _TIME_NUMBER.match(text, pos)
        if not m:
            raise ValueError(f"expected a number at {text[pos:]!r}")
        pos = m.end()
        while pos < n and text[pos] == " ":
            pos += 1
        unit = next(((name, usec) for name, usec in TIME_UNITS if text.startswith(name, pos)), None)
        if unit is None:
            raise ValueError(f"expected a unit at {text[pos:]!r}")
        pos += len(unit[0])
        if pos < n and not (text[pos] == " " or text[pos].isdigit()):
            raise ValueError(f"unknown unit before {text[pos:]!r}")
        whole, frac = m.group(1), m.group(2) or "0"
        total += int(whole) * unit[1] + int(frac) * unit[1] // 10 ** len(frac)
        components += 1
    if not components:
        raise ValueError("empty")
    return total


def _parse_timespan(value: Any) -> str:
    text = _as_str(value)
    try:
        usec = parse_timespan(text)
    except ValueError:
        raise _Bad("is not a systemd time span",
                   "use a number with a unit, e.g. 30min, 1h or 1h 30min (systemd.time(7))") from None
    if not 10**6 <= usec <= 100 * 31557600 * 10**6:
        raise _Bad("is out of range", "use a span from 1s to 100y, e.g. 30min")
    return text


def _parse_url(value: Any, schemes: tuple[str, ...]) -> str:
    from urllib.parse import urlsplit

    text = _as_str(value)
    fix = f"use a {' or '.join(s + '://' for s in schemes)} URL of plain characters (percent-encode others)"
    if not URL_RE.fullmatch(text):
        raise _Bad("is not a plain URL", fix)
    try:
        parts = urlsplit(text)
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise _Bad("is not a URL", fix) from None
    if parts.scheme not in schemes:
        raise _Bad("is not a URL", fix)
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise _Bad("is not a file:///ABSOLUTE/PATH URL", fix)
    elif not host or not HOSTNAME_RE.fullmatch(host):
        raise _Bad("is not a URL with a host name", fix)
    return text


def _parse_host(value: Any) -> str:
    """An IP address: Compose's ports[].host_ip takes no host name ("invalid ip address")."""
    import ipaddress

    text = _as_str(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise _Bad("is not an IP address", "use an IPv4 or IPv6 address without brackets, e.g. 127.0.0.1 or ::1 "
                   "(Compose publishes on addresses, not host names)") from None
    if "%" in text:
        raise _Bad("has an IPv6 zone", "use an address without %ZONE, e.g. ::1")
    return text


def _parse_relations(value: Any, pattern: re.Pattern[str], problem: str, fix: str) -> tuple[str, ...]:
    items = _parse_list(value)
    bad = [i for i in items if not pattern.fullmatch(i)]
    if bad:
        raise _Bad(f"{problem}: {bad[0]!r}", fix)
    return items


def parse_license(text: str) -> str | None:
    """``text`` when it can go into a License: field as it is (an SPDX expression), else None."""
    return text if LICENSE_RE.fullmatch(text) and not control_chars(text) else None


# Kubernetes object names (RFC 1123) and CronJob schedules (five fields of cron characters).
DNS_LABEL_RE = re.compile(r"(?=.{1,63}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
CRON_RE = re.compile(r"[0-9*/,A-Za-z?-]+(?: [0-9*/,A-Za-z?-]+){4}")


def _parse_count(value: Any) -> int:
    number = _parse_int(value)
    if number < 1:
        raise _Bad("is not a positive integer", "give a whole number of at least 1")
    return number


# -- the kinds: one parser object per kind ------------------------------------
#
# ``Setting.kind`` names one of ``KINDS``; ``opt_<kind>`` is the same kind that may
# also be unset (None, or an empty string).  Each parser turns a raw value (a
# string from the environment or an env file, or a YAML scalar) into the typed
# value, or raises ``_Bad(problem, fix)``, which ``resolve`` turns into one line
# naming the key, the value's source and the fix.


class Kind:
    """How one kind of setting is read."""

    def parse(self, value: Any, setting: Setting) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Optional_(Kind):
    """``opt_<kind>``: unset (None, or blank) is allowed and means None."""

    def __init__(self, inner: Kind) -> None:
        self.inner = inner

    def parse(self, value: Any, setting: Setting) -> Any:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return self.inner.parse(value, setting)


class _Required(Kind):
    """A kind whose value must be given; subclasses parse a non-None value."""

    def parse(self, value: Any, setting: Setting) -> Any:
        if value is None:
            raise _Bad("is empty", "give a value")
        return self.parse_given(value, setting)

    def parse_given(self, value: Any, setting: Setting) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Func(_Required):
    """A kind that is one function of the value."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def parse_given(self, value: Any, setting: Setting) -> Any:
        return self.fn(value)


class Text(_Required):
    """A line of text; ``nonempty`` refuses an empty one."""

    def __init__(self, *, nonempty: bool = True) -> None:
        self.nonempty = nonempty

    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _as_str(value)
        if self.nonempty and not text:
            raise _Bad("is empty", "give a value")
        return text


class Pattern(_Required):
    """Text that must match ``pattern`` entirely (optionally after ``nonempty`` and a length cap)."""

    def __init__(self, pattern: re.Pattern[str] | str, problem: str, fix: str, *, nonempty: bool = False,
                 max_len: int | None = None) -> None:
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.problem, self.fix, self.nonempty, self.max_len = problem, fix, nonempty, max_len

    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _as_str(value)
        if self.nonempty and not text:
            raise _Bad("is empty", "give a value")
        if not self.pattern.fullmatch(text) or (self.max_len is not None and len(text) > self.max_len):
            raise _Bad(self.problem, self.fix)
        return text


class Port(_Required):
    def parse_given(self, value: Any, setting: Setting) -> int:
        try:
            port = _parse_int(value)
        except _Bad:
            port = -1
        if not 1 <= port <= 65535:
            raise _Bad("is not a TCP port", "use a number from 1 to 65535")
        return port


class RelPath(_Required):
    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _as_str(value).rstrip("/")
        if not REL_PATH.fullmatch(text):
            raise _Bad("is not a relative path inside the app",
                       "use letters, digits, '.', '_', '+' and '-' in components separated by '/', such as webroot")
        return text


class AbsPath(_Required):
    """An absolute path of plain characters; ``Setting.under`` asks for a directory of its own below it."""

    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _as_str(value)
        text = text.rstrip("/") or text
        if not ABS_PATH.fullmatch(text):
            plain = text.startswith("/") and ".." not in text.split("/")
            raise _Bad("is not a plain absolute path" if plain else "is not an absolute path without '..'",
                       "use an absolute path of letters, digits, '.', '_', '+' and '-' (no spaces, quotes, "
                       "'%', '$', '\\' or '..'), such as " + str(setting.default))
        if setting.under and not text.startswith(setting.under + "/"):
            raise _Bad(f"is not a directory of its own below {setting.under}/",
                       f"use e.g. {setting.default} (the units' {setting.key.split('.')[-1].split('_')[0].title()}"
                       f"Directory= needs it, and removal empties it)")
        return text


class License(_Required):
    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _as_str(value)
        if not parse_license(text):
            raise _Bad("is not an SPDX license expression", "use e.g. AGPL-3.0-only, MIT or (MIT OR Apache-2.0)")
        return text


class Relations(_Required):
    """A comma-separated list whose every item matches ``pattern``."""

    def __init__(self, pattern: re.Pattern[str], problem: str, fix: str) -> None:
        self.pattern, self.problem, self.fix = pattern, problem, fix

    def parse_given(self, value: Any, setting: Setting) -> tuple[str, ...]:
        return _parse_relations(value, self.pattern, self.problem, self.fix)


class Url(_Required):
    def __init__(self, schemes: tuple[str, ...], *, strip_slash: bool = False) -> None:
        self.schemes, self.strip_slash = schemes, strip_slash

    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _parse_url(value, self.schemes)
        return text.rstrip("/") if self.strip_slash else text


class Choice(_Required):
    def parse_given(self, value: Any, setting: Setting) -> str:
        text = _as_str(value)
        if text not in setting.choices:
            raise _Bad("is not a known choice", "use one of: " + ", ".join(setting.choices))
        return text


class Extensions(_Required):
    def parse_given(self, value: Any, setting: Setting) -> tuple[str, ...]:
        exts = tuple(e.lower() for e in _parse_list(value))
        unknown = [e for e in exts if e not in KNOWN_PHP_EXTENSIONS]
        if unknown:
            raise _Bad(
                f"names unknown PHP extension(s) {', '.join(unknown)}",
                "check the spelling against static-php-cli's extension list (e.g. pdo_pgsql, mbstring)",
            )
        if not exts:
            raise _Bad("is empty", "list the extensions explicitly, e.g. " + ",".join(ORANGESCRUM_EXTENSIONS[:4]))
        return exts


# One word of an app console command: what a shell, an ExecStart= line, YAML and
# a Dockerfile ENV all read the same way unquoted (no quotes, '$', '%', '*', spaces).
COMMAND_WORD_RE = re.compile(r"[A-Za-z0-9_./:=@+,-]+")


def _parse_app_command(value: Any) -> tuple[str, ...]:
    """``SCRIPT ARG...`` (e.g. bin/cake.php migrations migrate) as words; empty: none.

    A list of words is taken too: that is how a build records it (manifest ``given``) for
    later tasks to replay."""
    if isinstance(value, (list, tuple)):
        words = tuple(w for v in value for w in _as_str(v).split())
    else:
        words = tuple(_as_str(value).split())
    if not words:
        return ()
    fix = ("give a PHP script of the app (a relative path such as bin/cake.php) and its arguments, separated "
           "by spaces, each of letters, digits and . _ / : = @ + , - (e.g. bin/cake.php migrations migrate), "
           "or nothing to disable the step")
    if not REL_PATH.fullmatch(words[0]) or ".." in words[0].split("/"):
        raise _Bad(f"does not start with a script path inside the app ({words[0]!r})", fix)
    bad = [w for w in words if not COMMAND_WORD_RE.fullmatch(w)]
    if bad:
        raise _Bad(f"has a word with a character no generated file carries unquoted ({bad[0]!r})", fix)
    return words


def _parse_listen(value: Any) -> str:
    text = _as_str(value)
    m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):([0-9]+)", text)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise _Bad("is not HOST:PORT", "use e.g. 127.0.0.1:8080 or :8080")
    return text


# One component of a state path: what a shell word, a systemd line and YAML carry unquoted.
STATE_COMPONENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class StateLayout:
    """How app.state_paths is put in place (common/helpers/app-state.sh does it).

    ``dirs``: declared directories, each linked from the app to the state dir;
    ``files``: declared files; ``merged``: the directories of those files, whose
    whole directory lives in the state dir (so that a write by rename lands
    there) with links to the shipped files; ``inner``: declared directories
    directly inside a merged directory (real directories there, not links).
    """

    dirs: tuple[str, ...]
    files: tuple[str, ...]
    merged: tuple[str, ...]
    inner: tuple[str, ...]


def state_layout(paths: Sequence[str]) -> StateLayout:
    """The layout of a parsed app.state_paths (entries with a trailing '/' are directories)."""
    dirs = tuple(p.rstrip("/") for p in paths if p.endswith("/"))
    files = tuple(p for p in paths if not p.endswith("/"))
    merged = tuple(dict.fromkeys(f.rpartition("/")[0] for f in files))
    inner = tuple(d for d in dirs if d.rpartition("/")[0] in merged)
    return StateLayout(dirs=tuple(d for d in dirs if d not in inner), files=files, merged=merged, inner=inner)


def _parse_state_paths(value: Any) -> tuple[str, ...]:
    """app.state_paths: comma- (or space-) separated app-relative paths; '/' at the end marks a directory."""
    if isinstance(value, (list, tuple)):
        items = [w for v in value for w in _as_str(v).replace(",", " ").split()]
    else:
        items = _as_str(value).replace(",", " ").split()
    fix_chars = ("give app-relative paths such as webroot/files/ or config/app_local.php: components of letters, "
                 "digits, '.', '_', '+' and '-' separated by '/', no '..', a trailing '/' for a directory")
    seen: dict[str, str] = {}
    for item in items:
        bare = item[:-1] if item.endswith("/") else item
        parts = bare.split("/")
        if item.startswith("/"):
            raise _Bad(f"has an absolute path ({item!r}); state paths are relative to the app", fix_chars)
        if any(p in (".", "..") for p in parts):
            raise _Bad(f"has a path with '.' or '..' ({item!r})", fix_chars)
        if not all(STATE_COMPONENT_RE.fullmatch(p) for p in parts):
            raise _Bad(f"has a path with a character or an empty component it may not hold ({item!r})", fix_chars)
        if bare in seen:
            raise _Bad(f"lists {bare!r} twice", "list each path once (a trailing '/' marks a directory)")
        seen[bare] = item
    paths = tuple(seen.values())
    bare = list(seen)
    for a in bare:
        for b in bare:
            if a != b and b.startswith(a + "/"):
                raise _Bad(f"has overlapping paths ({a!r} holds {b!r})",
                           f"keep only {a!r}: everything below it is state already")
    layout = state_layout(paths)
    for f in layout.files:
        if "/" not in f:
            raise _Bad(f"has a file at the top of the app ({f!r}); the app's own directory is no state",
                       "declare the directory the app writes it in instead, or move the file into a subdirectory")
    for m in layout.merged:
        for other in layout.merged:
            if m != other and other.startswith(m + "/"):
                raise _Bad(f"has state files in {m!r} and in {other!r} below it",
                           f"declare {other + '/'!r} as a directory, or keep the files in one directory")
        for d in layout.dirs:
            if d.startswith(m + "/"):
                raise _Bad(f"has the directory {d!r} deeper inside {m!r}, which holds state files",
                           f"declare {m + '/' + d[len(m) + 1:].split('/')[0] + '/'!r} instead (a directory "
                           f"directly inside {m!r})")
    return paths


def _parse_positive_int(value: Any) -> int:
    number = _parse_int(value)
    if number < 1:
        raise _Bad("is not a positive integer", "give a whole number of at least 1")
    return number


def _parse_loopback_listen(value: Any) -> str:
    import ipaddress

    text = _parse_listen(value)
    host = text.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise _Bad("is not a loopback address", "metrics are for a local scraper: use e.g. 127.0.0.1:9180 or [::1]:9180")
    return text


KINDS: dict[str, Kind] = {
    "bool": Func(_parse_bool),
    "int": Func(_parse_int),
    "stack_name": Pattern(r"[a-z0-9][a-z0-9_-]{0,39}", "is not a stack name",
                          "use lowercase letters, digits, '_' and '-' (e.g. orangescrum)"),
    "env_keys": Relations(ENV_KEY_RE, "is not a setting name",
                          "use comma-separated names such as DB_PASSWORD,SECURITY_SALT"),
    "epoch": Func(_parse_int),
    "port": Port(),
    "str": Text(),
    "path": Text(),
    "relpath": RelPath(),
    "abs_path": AbsPath(),
    "image": Pattern(IMAGE_REF_RE, "is not an image reference",
                     "use [REGISTRY/]NAME[:TAG][@sha256:DIGEST] in lowercase, e.g. debian:bookworm-slim",
                     nonempty=True, max_len=255),
    "image_repo": Pattern(IMAGE_REPO_RE, "is not an image repository name",
                          "use [REGISTRY/]NAME in lowercase, without a tag, e.g. orangescrum/orangescrum",
                          nonempty=True, max_len=255),
    "host": Func(_parse_host),
    "timespan": Func(_parse_timespan),
    "homepage": Url(("https", "http")),
    "url": Url(("https", "http", "file"), strip_slash=True),
    "license": License(),
    "deb_relations": Relations(DEB_RELATION_RE, "is not a Debian relation",
                               "use comma-separated names with an optional version and '|' alternatives, "
                               "e.g. systemd (>= 247), default-mta | mail-transport-agent"),
    "rpm_relations": Relations(RPM_RELATION_RE, "is not an rpm dependency",
                               "use comma-separated names with an optional version, e.g. systemd >= 247"),
    "pkg_names": Relations(PKG_NAME_RE, "is not a package name",
                           "use comma-separated package names (lowercase), the same in deb and rpm, "
                           "e.g. ca-certificates"),
    "choice": Choice(),
    "list": Func(_parse_list),
    "extensions": Extensions(),
    "version": Func(_parse_version),
    "php_version": Pattern(r"8\.[1-9](\.[0-9]+)?", "is not a supported PHP version", "use 8.1, 8.2, 8.3 or 8.4"),
    "size": Pattern(SIZE_RE, "is not a size", "use a number with an optional K, M, G or T suffix (e.g. 1G)"),
    "name": Pattern(NAME_RE, "is not a valid user name", "use lowercase letters, digits, '_' and '-'"),
    "listen": Func(_parse_listen),
    "app_command": Func(_parse_app_command),
    # -- scaling and Kubernetes ------------------------------------------------
    "count": Func(_parse_count),
    "dns_label": Pattern(DNS_LABEL_RE, "is not a DNS label (RFC 1123)",
                         "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"),
    "dns_subdomain": Pattern(DNS_SUBDOMAIN_RE, "is not a DNS subdomain name (RFC 1123)",
                             "use lowercase letters, digits, '-' and '.', e.g. nfs-client", max_len=253),
    "hostname": Pattern(DNS_SUBDOMAIN_RE, "is not a host name",
                        "use a lowercase DNS name such as orangescrum.example.com (no scheme, port or path)", max_len=253),
    "cpu": Pattern(r"[0-9]+m|[0-9]+(\.[0-9]{1,3})?", "is not a CPU quantity", "use millicores such as 250m, or cores such as 1"),
    "cron": Pattern(CRON_RE, "is not a five-field cron schedule", "use e.g. */30 * * * * (minute hour day month weekday)"),
    "state_paths": Func(_parse_state_paths),
    "loopback_listen": Func(_parse_loopback_listen),
    "positive_int": Func(_parse_positive_int),
    "pkgname": Pattern(r"[a-z0-9][a-z0-9+.-]+", "is not a valid package name",
                       "use lowercase letters, digits, '+', '-' and '.' (e.g. orangescrum)"),
    "pkgrelease": Pattern(r"[0-9][A-Za-z0-9.+~]*", "is not a valid package release",
                          "use digits, letters, '.', '+' and '~', starting with a digit (e.g. 1)"),
    "contact": Pattern(r"[^<>@\s][^<>@]*<[^<>@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+>", "is not 'Name <email>'",
                       "use e.g. 'OrangeScrum Packaging <packaging@example.org>'"),
}


def kind_parser(kind: str) -> Kind:
    """The parser of a kind name (``opt_<kind>``: the kind, or unset)."""
    if kind.startswith("opt_"):
        return Optional_(KINDS[kind[4:]])
    return KINDS[kind]


def _parse(setting: Setting, value: Any) -> Any:
    return kind_parser(setting.kind).parse(value, setting)


# --------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One source of values: flat dotted keys, and a label for messages.

    ``labels`` may name a more precise source per key (``flag --app``).
    """

    source: str
    values: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, key: str) -> str:
        return self.labels.get(key, self.source)


def env_layer(environ: Mapping[str, str], source: str) -> Layer:
    """The ``OSCB_*`` keys of an environment (or env file) as a layer.

    Unknown ``OSCB_*`` names are errors: a typo must not be silently ignored
    (the test suite's own switches are CLOUDBUILDER_*, outside this prefix).
    """
    by_var = {s.env_var: s.key for s in SETTINGS}
    values: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name not in by_var:
            raise ConfigError(
                f"{name} (from {source}) is not a known setting; "
                f"known names: {', '.join(sorted(by_var))}"
            )
        values[by_var[name]] = value
    return Layer(source, values, {k: f"{source} {BY_KEY[k].env_var}" for k in values})


def read_env_file(path: Path) -> dict[str, str]:
    """Read a KEY=VALUE file with python-dotenv (parsed, never executed or interpolated)."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(
            f"env_file={path} (from flag --env-file): no such file; "
            "copy .env.example to .env, fill it in, and pass its path"
        )
    try:
        raw = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"env_file={path}: cannot be read ({exc.__class__.__name__}); check its permissions and encoding") from None
    return {k: (v or "") for k, v in raw.items()}


def resolve(
    layers: Sequence[Layer],
    *,
    cwd: Path,
    environ: Mapping[str, str] | None = None,
    probe: Callable[[Path], "AppFacts"] | None = None,
) -> BuildConfig:
    """Merge ``layers`` (lowest precedence first) over the defaults into a ``BuildConfig``.

    ``environ`` supplies the few standard variables that are not ours
    (SOURCE_DATE_EPOCH, GITHUB_TOKEN).  ``probe`` reads facts from the app
    directory (version, last commit time); tests can replace it.
    """
    environ = environ or {}
    raw: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.values.items():
            if key not in BY_KEY:
                raise ConfigError(
                    f"{key} (from {layer.label(key)}) is not a known setting; "
                    "see docs/CONFIGURATION.md for the list"
                )
            raw[key] = value
            sources[key] = layer.label(key)

    parsed: dict[str, Any] = {}
    for s in SETTINGS:
        try:
            parsed[s.key] = _parse(s, raw[s.key])
        except _Bad as bad:
            where = sources.get(s.key, "default")
            shown = raw[s.key]
            raise ConfigError(
                f"{s.key}={shown!r} (from {where}) {bad.problem}; {bad.fix}"
                f" (set it with {s.flag + ' or ' if s.flag else ''}{s.env_var} or invoke.yaml)"
            ) from None

    if parsed["skip_base"] and parsed["rebuild_base"]:
        raise ConfigError(
            f"skip_base and rebuild_base are both set (from {sources.get('skip_base', 'default')} and "
            f"{sources.get('rebuild_base', 'default')}); choose one"
        )

    def path(key: str) -> Path | None:
        value = parsed[key]
        return None if value is None else (cwd / Path(value).expanduser()).resolve()

    app = path("app")
    assert app is not None
    facts = (probe or probe_app)(app)

    version = parsed["version"]
    if version is None:
        try:
            version = _parse_version(facts.version) if facts.version else "0.0.0"
        except _Bad as bad:
            raise ConfigError(
                f"version={facts.version!r} (from {facts.version_source}) {bad.problem}; "
                f"pass --version or set OSCB_VERSION; {bad.fix}"
            ) from None
        sources["version"] = facts.version_source if facts.version else "default"

    epoch = parsed["source_date_epoch"]
    if epoch is None and environ.get("SOURCE_DATE_EPOCH"):
        try:
            epoch = _parse_int(environ["SOURCE_DATE_EPOCH"])
        except _Bad as bad:
            raise ConfigError(
                f"SOURCE_DATE_EPOCH={environ['SOURCE_DATE_EPOCH']!r} (from environment variable "
                f"SOURCE_DATE_EPOCH) {bad.problem}; give seconds since 1970"
            ) from None
        sources["source_date_epoch"] = "environment variable SOURCE_DATE_EPOCH"
    if epoch is None:
        if facts.last_commit_epoch:
            epoch, sources["source_date_epoch"] = facts.last_commit_epoch, "the app's last git commit"
        elif facts.newest_file_epoch:
            epoch, sources["source_date_epoch"] = facts.newest_file_epoch, "the newest file in the app"
        else:
            epoch, sources["source_date_epoch"] = 0, "default"

    libc = parsed["builder.libc"]
    image = parsed["builder.image"] or (
        f"dunglas/frankenphp:static-builder-{libc}-{parsed['builder.frankenphp_version']}"
    )
    # The stand-in builder brings composer itself; the real one does not.
    composer_image = parsed["builder.composer_image"] or (
        image if image.startswith(STANDIN_PREFIX) else "composer:2"
    )

    return BuildConfig(
        app=app,
        app_webroot=parsed["app_webroot"],
        app_external_symlinks=parsed["app_external_symlinks"],
        app_state_paths=parsed["app.state_paths"],
        app_migrate_command=parsed["app.migrate_command"],
        binary=path("binary"),
        version=version,
        dist_dir=path("dist_dir") or cwd / "dist",
        env_file=path("env_file"),
        source_date_epoch=epoch,
        run=RunOptions(**{s.key: parsed[s.key] for s in SETTINGS if s.scope == "run"}),
        builder=BuilderConfig(
            image=image,
            libc=libc,
            frankenphp_version=parsed["builder.frankenphp_version"],
            php_version=parsed["builder.php_version"],
            php_extensions=parsed["builder.php_extensions"],
            php_extension_libs=parsed["builder.php_extension_libs"],
            xcaddy_modules=parsed["builder.xcaddy_modules"],
            platform=parsed["builder.platform"],
            composer_image=composer_image,
            base_repository=parsed["builder.base_repository"],
            compress=parsed["builder.compress"],
        ),
        docker=DockerConfig(**{k: parsed[f"docker.{k}"] for k in DockerConfig.__dataclass_fields__}),
        service=ServiceConfig(**{k: parsed[f"service.{k}"] for k in ServiceConfig.__dataclass_fields__}),
        paths=PathsConfig(**{k: parsed[f"paths.{k}"] for k in PathsConfig.__dataclass_fields__}),
        server=ServerConfig(**{k: parsed[f"server.{k}"] for k in ServerConfig.__dataclass_fields__}),
        swarm=SwarmConfig(**{k: parsed[f"swarm.{k}"] for k in SwarmConfig.__dataclass_fields__}),
        package=PackageConfig(**{k: parsed[f"package.{k}"] for k in PackageConfig.__dataclass_fields__}),
        release=ReleaseConfig(
            sign_key=parsed["release.sign_key"],
            gnupghome=path("release.gnupghome"),
            repo_dir=path("release.repo_dir") or Workspace(path("dist_dir") or cwd / "dist").default_repo_dir,
            repo_url=parsed["release.repo_url"],
            changelog=path("release.changelog"),
        ),
        scale=ScaleConfig(**{k: parsed[f"scale.{k}"] for k in ScaleConfig.__dataclass_fields__}),
        kubernetes=KubernetesConfig(**{k: parsed[f"kubernetes.{k}"] for k in KubernetesConfig.__dataclass_fields__}),
        sources=sources,
        github_token=environ.get("GITHUB_TOKEN") or None,
    )


# --------------------------------------------------------------------------
# Facts read from the app directory
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AppFacts:
    version: str | None
    version_source: str
    last_commit_epoch: int | None
    # Only probed without a commit: the mtime of the newest file the archive takes.
    newest_file_epoch: int | None = None


def probe_app(app: Path) -> AppFacts:
    """Version, last commit time (else newest file's mtime) of the app, when they can be known (never fails)."""
    version: str | None = None
    version_source = "default"
    composer = app / "composer.json"
    try:
        data = json.loads(composer.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("version"), str):
            version, version_source = data["version"], f"{composer} \"version\""
    except (OSError, ValueError):
        pass
    epoch: int | None = None
    if app.is_dir():
        out = _git(app, "log", "-1", "--format=%ct", "--", ".")
        epoch = int(out) if out and out.isdigit() else None
        if version is None:
            described = _git(app, "describe", "--tags", "--always", "--match", "v[0-9]*")
            if described and described[0] in "v0123456789" and "." in described:
                version = described.lstrip("v").replace("-", "+", 1).replace("-", ".")
                version_source = f"git describe in {app}"
    newest: int | None = None
    if epoch is None and app.is_dir():
        from .archive import newest_mtime

        try:
            newest = newest_mtime(app)
        except OSError:
            newest = None
    return AppFacts(version, version_source, epoch, newest)


def _git(cwd: Path, *args: str) -> str | None:
    return git.output(cwd, *args, timeout=10)


def require_app(cfg: BuildConfig) -> None:
    """Fail before any work when the app source is missing (one line, with the fix)."""
    where = cfg.source_of("app")
    if not cfg.app.is_dir():
        raise ConfigError(
            f"app={cfg.app} (from {where}): no such directory; "
            "pass --app PATH (or set OSCB_APP) to your OrangeScrum checkout"
        )
    if not (cfg.app / "composer.json").is_file():
        raise ConfigError(
            f"app={cfg.app} (from {where}): no composer.json there; "
            "point --app at the application root (the directory with composer.json)"
        )


def require_binary(cfg: BuildConfig) -> Path:
    if cfg.binary is None:
        raise ConfigError("binary is not set; pass --binary PATH or run `invoke build` to build one")
    where = cfg.source_of("binary")
    if not cfg.binary.is_file():
        raise ConfigError(f"binary={cfg.binary} (from {where}): no such file; pass --binary PATH to a FrankenPHP binary")
    import os

    if not os.access(cfg.binary, os.X_OK):
        raise ConfigError(f"binary={cfg.binary} (from {where}): not executable; run chmod +x on it")
    return cfg.binary


def layers_from(
    invoke_values: Mapping[str, Any] | None,
    env_file: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, Any],
) -> list[Layer]:
    """Build the layer list in precedence order from the raw sources a task has."""
    layers: list[Layer] = []
    if invoke_values:
        defaults = {s.key: s.default for s in SETTINGS}
        flat = flatten(invoke_values)
        changed = {k: v for k, v in flat.items() if k not in defaults or defaults[k] != v}
        layers.append(Layer("invoke config (invoke.yaml)", changed))
    from_environ = env_layer(environ, "environment variable")
    # The env file's path itself may come from a flag, the environment or invoke.yaml.
    path = flags.get("env_file") or from_environ.values.get("env_file")
    if path is None and invoke_values:
        path = flatten(invoke_values).get("env_file")
    env_file = env_file or (Path(path) if path else None)
    if env_file is not None:
        layers.append(env_layer(read_env_file(env_file), f"env file {env_file}"))
    layers.append(from_environ)
    given = {k: v for k, v in flags.items() if v is not None}
    layers.append(Layer("flag", given, {k: f"flag {FLAGS.get(k, k)}" for k in given}))
    return layers


def describe(cfg: BuildConfig, keys: Iterable[str] = ()) -> list[tuple[str, str, str]]:
    """(key, value, source) rows for `invoke check`: never the GitHub token."""
    rows = []
    for s in SETTINGS:
        if keys and s.key not in keys:
            continue
        value = value_of(cfg, s.key)
        joiner = " " if s.kind == "app_command" else ","
        shown = joiner.join(value) if isinstance(value, tuple) else "" if value is None else str(value)
        rows.append((s.key, shown, cfg.source_of(s.key)))
    return rows


def value_of(cfg: BuildConfig, key: str) -> Any:
    """The resolved value of a setting (or run option) ``key``, as the config holds it."""
    s = BY_KEY[key]
    section, _, leaf = key.rpartition(".")
    if section in BY_KEY:  # app.migrate_command: a flat field beside the value `app`
        return getattr(cfg, key.replace(".", "_"))
    obj: Any = cfg.run if s.scope == "run" else getattr(cfg, section) if section else cfg
    return getattr(obj, leaf)


def recorded_settings(cfg: BuildConfig, prefixes: Iterable[str] = ()) -> dict[str, Any]:
    """The persistent settings (never run options) whose key starts with one of
    ``prefixes`` (all of them without), as JSON-ready values: what the manifest
    records as "the settings that made it"."""
    wanted = tuple(prefixes)
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if s.scope != "setting" or (wanted and not s.key.startswith(wanted)):
            continue
        out[s.key] = json_value(value_of(cfg, s.key))
    return out


def json_value(value: Any) -> Any:
    """A resolved setting as the manifest records it (and later tasks give it back to its parser)."""
    return list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value


def reference_table() -> str:
    """The Markdown table of every setting (README's config reference is this, verbatim)."""
    rows = ["| key | env variable | flag | default | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "" if s.default in (None, "") else f"`{s.default}`"
        if s.kind == "bool":
            default = f"`{str(s.default).lower()}`"
        choices = f" One of: {', '.join(s.choices)}." if s.choices else ""
        rows.append(f"| `{s.key}` | `{s.env_var}` | {f'`{s.flag}`' if s.flag else ''} | {default} | "
                    f"{s.help.replace('|', '/')}{choices} |")
    return "\n".join(rows)
