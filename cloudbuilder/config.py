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
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .errors import ConfigError

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


# --------------------------------------------------------------------------
# The settings registry: one row per key.  It drives the defaults handed to
# invoke, the environment variable names, parsing, and docs/CONFIGURATION.md.
# --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Setting:
    key: str
    default: Any
    kind: str  # path, opt_path, bool, int, str, opt_str, list, choice, version, abs_path, size, epoch, url
    help: str
    choices: tuple[str, ...] = ()

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
                 "app's last git commit, else 0."),
    Setting(key="skip_deploy", default=False, kind="bool",
            help="`build` stops after the artifacts; does not start the Docker deployment."),
    Setting(key="skip_base", default=False, kind="bool",
            help="Reuse whatever base image exists, even if its inputs changed."),
    Setting(key="rebuild_base", default=False, kind="bool",
            help="Rebuild the base image even if it is up to date."),
    Setting(key="keep_package", default=False, kind="bool",
            help="Keep the intermediate Docker build context under dist/build/ for debugging."),
    # -- the FrankenPHP builder ---------------------------------------------
    Setting(key="builder.image", default=None, kind="opt_str",
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
    Setting(key="builder.composer_image", default=None, kind="opt_str",
            help="Image with composer for `composer install --no-dev -a`. Default: composer:2 "
                 "(the stand-in builder brings its own)."),
    Setting(key="builder.base_repository", default="orangescrum-cloud-base", kind="str",
            help="Local repository name of the cached base image (compiled PHP)."),
    Setting(key="builder.compress", default=False, kind="bool",
            help="Compress the binary with UPX (slower start-up, smaller file)."),
    # -- the Docker deployment ----------------------------------------------
    Setting(key="docker.runtime_image", default="debian:bookworm-20251229-slim", kind="str",
            help="Base image of the runtime container (pinned: a dated Debian snapshot). It must have "
                 "ca-certificates, or reach an apt mirror at build time to install them."),
    Setting(key="docker.image_name", default="orangescrum/orangescrum", kind="str",
            help="Repository the runtime image is tagged as (with the version and latest)."),
    Setting(key="docker.uid", default=1000, kind="int", help="UID of the non-root user in the image."),
    Setting(key="docker.gid", default=1000, kind="int", help="GID of the non-root user in the image."),
    Setting(key="docker.bind_address", default="127.0.0.1", kind="str",
            help="Host address the app port is published on (keep a reverse proxy in front)."),
    Setting(key="docker.host_port", default=8080, kind="port", help="Host port the app is published on."),
    Setting(key="docker.memory_limit", default="1g", kind="size", help="Memory limit of the app container."),
    Setting(key="docker.queue_memory_limit", default="512m", kind="size",
            help="Memory limit of the queue container."),
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
    Setting(key="service.recurring_interval", default="30min", kind="str",
            help="How often the recurring task runs (systemd time span)."),
    # -- installed layout ---------------------------------------------------
    Setting(key="paths.binary", default="/usr/bin/orangescrum", kind="abs_path",
            help="Installed path of the FrankenPHP binary."),
    Setting(key="paths.config_dir", default="/etc/orangescrum", kind="abs_path",
            help="Directory of orangescrum.env."),
    Setting(key="paths.libexec_dir", default="/usr/libexec/orangescrum", kind="abs_path",
            help="Helpers (validate-env) on installed hosts."),
    Setting(key="paths.state_dir", default="/var/lib/orangescrum", kind="abs_path",
            help="State directory (home of the service user)."),
    Setting(key="paths.cache_dir", default="/var/cache/orangescrum", kind="abs_path",
            help="TMPDIR of the services: where the embedded app is extracted."),
    Setting(key="app_webroot", default="webroot", kind="relpath",
            help="Document root inside the app (CakePHP: webroot)."),
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
    Setting(key="package.homepage", default="https://www.orangescrum.com", kind="str",
            help="Homepage/URL field of the packages."),
    Setting(key="package.license", default=None, kind="opt_str",
            help="License of the packaged application (SPDX). Default: the app's composer.json \"license\"."),
    Setting(key="package.deb_compression", default="zstd", kind="choice", choices=("zstd", "xz", "gzip", "none"),
            help="Compression of the .deb payload: zstd (dpkg >= 1.21.18: Debian 12, Ubuntu 21.10+) is fast; "
                 "xz for older targets."),
    Setting(key="package.rpm_compression", default="zstd", kind="choice", choices=("zstd", "xz", "gzip", "none"),
            help="Compression of the .rpm payload: zstd (rpm >= 4.14: EL8+, Fedora, SUSE 15) is fast; "
                 "xz for older targets."),
    Setting(key="package.deb_depends", default="systemd", kind="list",
            help="Depends of the .deb, comma-separated (the binary is static: only what the scripts use; "
                 "init-system-helpers is essential)."),
    Setting(key="package.rpm_depends", default="systemd", kind="list",
            help="Requires of the .rpm, comma-separated."),
    Setting(key="package.recommends", default="ca-certificates", kind="list",
            help="Recommends of both packages (the CA bundle that SSL_CERT_FILE points at)."),
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
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = s.default
    return tree


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in BY_KEY:
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
class BuildConfig:
    app: Path
    app_webroot: str
    binary: Path | None
    version: str
    dist_dir: Path
    env_file: Path | None
    source_date_epoch: int
    skip_deploy: bool
    skip_base: bool
    rebuild_base: bool
    keep_package: bool
    builder: BuilderConfig
    docker: DockerConfig
    service: ServiceConfig
    paths: PathsConfig
    package: PackageConfig
    release: ReleaseConfig
    # Where each value came from, for messages ("flag --app", "default", ...).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Never in a repr, a log line or a template context.
    github_token: str | None = field(default=None, compare=False, repr=False)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")

    def template_context(self) -> dict[str, Any]:
        """What the jinja2 templates see: plain data, no paths of this machine, no secrets."""
        return {
            "version": self.version,
            "app_webroot": self.app_webroot,
            "source_date_epoch": self.source_date_epoch,
            "builder": _public(self.builder),
            "docker": _public(self.docker),
            "service": _public(self.service),
            "paths": _public(self.paths),
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
    return str(value).strip()


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


def _parse(setting: Setting, value: Any) -> Any:
    kind = setting.kind
    if kind.startswith("opt_"):
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        kind = kind[4:]
    if value is None:
        raise _Bad("is empty", "give a value")
    if kind == "bool":
        return _parse_bool(value)
    if kind == "int":
        return _parse_int(value)
    if kind == "epoch":
        return _parse_int(value)
    if kind == "port":
        try:
            port = _parse_int(value)
        except _Bad:
            port = -1
        if not 1 <= port <= 65535:
            raise _Bad("is not a TCP port", "use a number from 1 to 65535")
        return port
    if kind in ("str", "path"):
        text = _as_str(value)
        if not text:
            raise _Bad("is empty", "give a value")
        return text
    if kind == "relpath":
        text = _as_str(value)
        if not text or PurePosixPath(text).is_absolute() or ".." in PurePosixPath(text).parts:
            raise _Bad("is not a relative path inside the app", "use a path such as webroot")
        return text
    if kind == "abs_path":
        text = _as_str(value)
        if not PurePosixPath(text).is_absolute() or ".." in PurePosixPath(text).parts:
            raise _Bad("is not an absolute path", "use an absolute path such as /usr/bin/orangescrum")
        return text
    if kind == "url":
        text = _as_str(value)
        if not re.fullmatch(r"(https?|file)://[^\s]+", text):
            raise _Bad("is not a URL", "use an https://, http:// or file:// URL")
        return text.rstrip("/")
    if kind == "choice":
        text = _as_str(value)
        if text not in setting.choices:
            raise _Bad("is not a known choice", "use one of: " + ", ".join(setting.choices))
        return text
    if kind == "list":
        return _parse_list(value)
    if kind == "extensions":
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
    if kind == "version":
        return _parse_version(value)
    if kind == "php_version":
        text = _as_str(value)
        if not re.fullmatch(r"8\.[1-9](\.[0-9]+)?", text):
            raise _Bad("is not a supported PHP version", "use 8.1, 8.2, 8.3 or 8.4")
        return text
    if kind == "size":
        text = _as_str(value)
        if not SIZE_RE.fullmatch(text):
            raise _Bad("is not a size", "use a number with an optional K, M, G or T suffix (e.g. 1G)")
        return text
    if kind == "name":
        text = _as_str(value)
        if not NAME_RE.fullmatch(text):
            raise _Bad("is not a valid user name", "use lowercase letters, digits, '_' and '-'")
        return text
    if kind == "listen":
        text = _as_str(value)
        m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):([0-9]+)", text)
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise _Bad("is not HOST:PORT", "use e.g. 127.0.0.1:8080 or :8080")
        return text
    if kind == "pkgname":
        text = _as_str(value)
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", text):
            raise _Bad("is not a valid package name", "use lowercase letters, digits, '+', '-' and '.' (e.g. orangescrum)")
        return text
    if kind == "pkgrelease":
        text = _as_str(value)
        if not re.fullmatch(r"[0-9][A-Za-z0-9.+~]*", text):
            raise _Bad("is not a valid package release", "use digits, letters, '.', '+' and '~', starting with a digit (e.g. 1)")
        return text
    if kind == "contact":
        text = _as_str(value)
        if not re.fullmatch(r"[^<>@\s][^<>@]*<[^<>@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+>", text):
            raise _Bad("is not 'Name <email>'", "use e.g. 'OrangeScrum Packaging <packaging@example.org>'")
        return text
    raise AssertionError(f"unknown setting kind {kind}")  # pragma: no cover


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

    Unknown ``OSCB_*`` names are errors: a typo must not be silently ignored.
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
        epoch = facts.last_commit_epoch or 0
        sources["source_date_epoch"] = "the app's last git commit" if facts.last_commit_epoch else "default"

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
        binary=path("binary"),
        version=version,
        dist_dir=path("dist_dir") or cwd / "dist",
        env_file=path("env_file"),
        source_date_epoch=epoch,
        skip_deploy=parsed["skip_deploy"],
        skip_base=parsed["skip_base"],
        rebuild_base=parsed["rebuild_base"],
        keep_package=parsed["keep_package"],
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
        package=PackageConfig(**{k: parsed[f"package.{k}"] for k in PackageConfig.__dataclass_fields__}),
        release=ReleaseConfig(
            sign_key=parsed["release.sign_key"],
            gnupghome=path("release.gnupghome"),
            repo_dir=path("release.repo_dir") or (path("dist_dir") or cwd / "dist") / "release" / "repo",
            repo_url=parsed["release.repo_url"],
            changelog=path("release.changelog"),
        ),
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


def probe_app(app: Path) -> AppFacts:
    """Version and last commit time of the app, when they can be known (never fails)."""
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
    return AppFacts(version, version_source, epoch)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


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
        section, _, leaf = s.key.rpartition(".")
        obj: Any = getattr(cfg, section) if section else cfg
        value = getattr(obj, leaf)
        shown = ",".join(value) if isinstance(value, tuple) else "" if value is None else str(value)
        rows.append((s.key, shown, cfg.source_of(s.key)))
    return rows


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
