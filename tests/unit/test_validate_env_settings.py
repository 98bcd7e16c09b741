"""validate-env.sh: the rules of the settings beyond the core ones, KEY_FILE, and shared sessions.

Like tests/unit/test_validate_env.py, every case runs the real script under
/bin/sh and checks the exit status, the key named in each line and that no
value ever shows in the output.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from test_validate_env import GOOD as CORE_GOOD

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "common" / "helpers" / "validate-env.sh"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

GOOD = {k: v for k, v in CORE_GOOD.items() if k != "DEBUG"}  # valid and warning-free


def run(*args: str, cwd: Path, env: dict[str, str] | None = None):
    done = subprocess.run(["/bin/sh", str(SCRIPT), *args], cwd=cwd, env={"PATH": PATH, **(env or {})},
                          capture_output=True, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def check(tmp_path: Path, values: dict[str, str], *args: str, env: dict[str, str] | None = None):
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return run(*args, str(path), cwd=tmp_path, env=env)


def lines(out: str, level: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"{level}: ")]


def keys_named(out: str, level: str = "error") -> list[str]:
    return [line.split(":")[1].strip() for line in lines(out, level)]


# --- rules of single keys: (key, good values, bad values) ----------------------------------

RULES = [
    ("CACHE_ENGINE", ["file", "redis", "memcached"], ["File", "apcu", "auto", "redis "]),
    ("SESSION_HANDLER", ["php", "cake", "database", "cache"], ["redis", "files", "PHP", "memcache"]),
    ("EMAIL_TRANSPORT", ["smtp", "sendgrid", "default"], ["mail", "SMTP", "ses"]),
    ("SESSION_COOKIE_SAMESITE", ["Lax", "Strict", "None", "lax"], ["none-ish", "Relaxed", "0"]),
    ("DB_LOG", ["true", "false", "1", "0", "TRUE"], ["yes", "on", "enabled", "ture", "2"]),
    ("REDIS_PERSISTENT", ["true", "0"], ["persistent", "yes"]),
    ("MEMCACHED_LOG", ["false", "1"], ["off", "no"]),
    ("CRITICAL_PATH_ENABLED", ["true", "False"], ["disabled"]),
    ("SMTP_TLS", ["true", "false"], ["starttls", "tls"]),
    ("SESSION_COOKIE_SECURE", ["true", "1"], ["always", "https"]),
    ("REDIS_TIMEOUT", ["1", "30"], ["1.5", "1s", "-1"]),
    ("MEMCACHED_PORT", ["11211"], ["0", "70000", "tcp://10.0.0.3:11211"]),
    ("DATABASE_URL", ["postgres://os:pw@db.internal:5432/orangescrum", "postgres://db/os?sslmode=require"],
     ["postgresql://os:pw@db/os", "mysql://os:pw@db/os", "db.internal:5432", "postgres:///os", "postgres://"]),
    ("QUEUE_URL", ["redis://:pw@redis:6379/1", "rediss://redis:6380", "file:///var/lib/orangescrum/queue"],
     ["amqp://rabbit", "redis:6379", "Redis://redis"]),
    ("CACHE_DEFAULT_URL", ["redis://redis:6379?database=2", "file:///tmp/cache/?prefix=x", "null://"],
     ["memcache://m:11211", "redis"]),
    ("CACHE_LANGUAGES_URL", ["memcached://m:11211"], ["apc://x"]),
    ("LOG_ERROR_URL", ["console:///?stream=php://stderr", "syslog:///", "file:///var/log/os/?file=error"],
     ["stderr", "php://stderr", "http://logs.acme.test"]),
    ("LOG_TASK_ERROR_URL", ["console:///"], ["journal://x"]),
    ("EMAIL_TRANSPORT_DEFAULT_URL", ["smtp://u:p@mail.acme.test:587?tls=true", "mail://localhost", "debug://"],
     ["smtps://mail.acme.test", "mail.acme.test:587"]),
    ("V2_BASE_URL", ["https://v2.acme.test"], ["v2.acme.test", "ftp://v2.acme.test"]),
    ("LOGOUT_CHAIN_URL", ["https://sso.acme.test/logout?x=1"], ["/logout", "javascript:alert(1)"]),
    ("EDITOR_DOCSERVER_ORIGIN", ["https://docs.acme.test"], ["docs.acme.test", "wss://docs.acme.test"]),
    ("CRITICAL_PATH_BASE_URL", ["http://localhost:9090"], ["localhost:9090"]),
    ("STORAGE_ENDPOINT", ["http://minio:9000", "https://s3.eu-central-1.wasabisys.com"], ["minio:9000"]),
    ("SESSION_COOKIE_NAME", ["PHPSESSID", "os_session-2"], ["my session", "12345", "a;b", "sess=x"]),
    ("CSRF_COOKIE_NAME", ["csrfToken"], ["csrf token"]),
    ("SESSION_COOKIE_DOMAIN", ["tasks.acme.test"], [".acme.test", "https://tasks.acme.test", "tasks.acme.test:443",
                                                   "tasks.acme.test/"]),
    ("APP_TRUSTED_PROXIES", ["*", "10.0.0.2", "10.0.0.2, 10.0.0.3", "::1,fd00::2"],
     ["10.0.0.0/8", "proxy.internal", "10.0.0.2, caddy"]),
    ("APP_DEFAULT_TIMEZONE", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+2"],
     ["Europe Berlin", "../../etc/passwd", "UTC;", "/UTC"]),
    ("APP_DEFAULT_LOCALE", ["en_US", "de_DE", "pt_BR", "fr", "zh_Hans_CN", "sr_RS@latin"],
     ["english", "e", "en US", "12_34"]),
    ("APP_ENCODING", ["UTF-8", "ISO-8859-1"], ["UTF 8", "utf8;"]),
    ("NOTIFY_EMAIL", ["admin@acme.test"], ["admin", "Admin <admin@acme.test>"]),
    ("OSCB_REPLICAS", ["1", "2"], ["0", "01", "two", "-1"]),
]


def _rule_cases():
    for key, good, bad in RULES:
        for value in good:
            yield pytest.param(key, value, 0, id=f"{key}-ok-{value}")
        for value in bad:
            yield pytest.param(key, value, 1, id=f"{key}-bad-{value}")


@pytest.mark.parametrize(("key", "value", "status"), list(_rule_cases()))
def test_rule(tmp_path, key, value, status):
    extra = {"OSCB_REPLICAS": {"SESSION_HANDLER": "database"},
             "EMAIL_TRANSPORT": {"EMAIL_API_KEY": "SG.abcdefghijkl"}}.get(key, {})
    quoted = f"'{value}'" if any(c in value for c in " ;$#") else value
    rc, out, err = check(tmp_path, {**GOOD, **extra, key: quoted})
    assert rc == status, out + err
    assert lines(out, "warning") == []
    if status:
        assert keys_named(out) == [key], out
        if value not in SCRIPT.read_text():  # else a message may hold it as text
            assert value not in out.replace(str(tmp_path), "")
    else:
        assert lines(out, "error") == []


@pytest.mark.parametrize("key", ["HTTPS", "HTTP_HOST", "HTTP_X_FORWARDED_PROTO", "SCRIPT_NAME"])
def test_server_variables_in_the_settings_warn(tmp_path, key):
    rc, out, _ = check(tmp_path, {**GOOD, key: "on"})
    assert rc == 0
    assert keys_named(out, "warning") == [key] and "web server sets" in out


@pytest.mark.parametrize("key", ["SESSION_COOKIE_SECURE", "APP_DEFAULT_TIMEZONE", "EMAIL_TRANSPORT", "REDIS_TIMEOUT"])
def test_an_empty_value_warns_where_the_application_would_not_use_its_default(tmp_path, key):
    rc, out, _ = check(tmp_path, {**GOOD, key: ""})
    assert rc == 0
    assert keys_named(out, "warning") == [key] and "not as its default" in out


def test_an_empty_value_of_other_optional_keys_is_silent(tmp_path):
    rc, out, _ = check(tmp_path, {**GOOD, "SESSION_HANDLER": "", "CACHE_ENGINE": "", "LOG_ERROR_URL": ""})
    assert (rc, lines(out, "warning")) == (0, [])


# --- rules between keys ----------------------------------------------------------------------

def test_sendgrid_needs_an_api_key(tmp_path):
    rc, out, _ = check(tmp_path, {**GOOD, "EMAIL_TRANSPORT": "sendgrid"})
    assert rc == 1 and keys_named(out) == ["EMAIL_API_KEY"]
    assert check(tmp_path, {**GOOD, "EMAIL_TRANSPORT": "sendgrid", "EMAIL_API_KEY": "SG.abcdefghijkl"})[0] == 0


def test_samesite_none_needs_secure_cookies(tmp_path):
    rc, out, _ = check(tmp_path, {**GOOD, "SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": "false"})
    assert rc == 1 and keys_named(out) == ["SESSION_COOKIE_SAMESITE"]
    assert keys_named(out, "warning") == ["SESSION_COOKIE_SECURE"]  # and https FULL_BASE_URL


def test_insecure_cookies_behind_https_warn(tmp_path):
    rc, out, _ = check(tmp_path, {**GOOD, "SESSION_COOKIE_SECURE": "0"})
    assert rc == 0 and keys_named(out, "warning") == ["SESSION_COOKIE_SECURE"]
    rc, out, _ = check(tmp_path, {**GOOD, "SESSION_COOKIE_SECURE": "false", "FULL_BASE_URL": "http://tasks.acme.test"})
    assert keys_named(out, "warning") == ["FULL_BASE_URL"]  # http:// warns, insecure cookies are then expected


@pytest.mark.parametrize(("domain", "status"), [("tasks.acme.test", 0), ("TASKS.acme.test", 0), ("acme.test", 1),
                                                ("other.test", 1)])
def test_cookie_domain_must_be_the_public_host(tmp_path, domain, status):
    rc, out, _ = check(tmp_path, {**GOOD, "SESSION_COOKIE_DOMAIN": domain})
    assert rc == status, out
    if status:
        assert keys_named(out) == ["SESSION_COOKIE_DOMAIN"] and "redirects every request" in out


# --- several replicas: sessions must be shared -----------------------------------------------

SHARED = [
    {"SESSION_HANDLER": "database"},
    {"SESSION_HANDLER": "cache", "CACHE_ENGINE": "redis"},
    {"SESSION_HANDLER": "cache", "CACHE_ENGINE": "memcached"},
    {"SESSION_HANDLER": "cache", "CACHE_ENGINE": "file", "CACHE_DEFAULT_URL": "redis://redis:6379?database=3"},
]
PER_REPLICA = [
    {},
    {"SESSION_HANDLER": "php"},
    {"SESSION_HANDLER": "cake"},
    {"SESSION_HANDLER": "cache"},
    {"SESSION_HANDLER": "cache", "CACHE_ENGINE": "file"},
    {"SESSION_HANDLER": "cache", "CACHE_ENGINE": "redis", "CACHE_DEFAULT_URL": "file:///tmp/c/"},
]


@pytest.mark.parametrize("sessions", SHARED, ids=lambda s: "-".join(s.values()))
def test_replicas_with_shared_sessions_pass(tmp_path, sessions):
    rc, out, _ = check(tmp_path, {**GOOD, **sessions, "OSCB_REPLICAS": "3"})
    assert (rc, lines(out, "error"), lines(out, "warning")) == (0, [], [])


@pytest.mark.parametrize("sessions", PER_REPLICA, ids=lambda s: "-".join(s.values()) or "default")
def test_replicas_with_per_replica_sessions_are_refused(tmp_path, sessions):
    rc, out, _ = check(tmp_path, {**GOOD, **sessions, "OSCB_REPLICAS": "2"})
    assert rc == 1
    assert keys_named(out) == ["SESSION_HANDLER"]
    assert "OSCB_REPLICAS" in out and "another replica" in out
    # the same settings on one replica are fine
    assert check(tmp_path, {**GOOD, **sessions})[0] == 0
    assert check(tmp_path, {**GOOD, **sessions, "OSCB_REPLICAS": "1"})[0] == 0


def test_replicas_come_from_the_callers_environment_when_the_file_does_not_say(tmp_path):
    rc, out, _ = check(tmp_path, GOOD, env={"OSCB_REPLICAS": "3"})
    assert rc == 1 and keys_named(out) == ["SESSION_HANDLER"]
    rc, _, _ = check(tmp_path, {**GOOD, "OSCB_REPLICAS": "1"}, env={"OSCB_REPLICAS": "3"})
    assert rc == 0  # the file wins
    rc, out, _ = check(tmp_path, GOOD, env={"OSCB_REPLICAS": "many"})
    assert rc == 1 and keys_named(out) == ["OSCB_REPLICAS"]


def test_replicas_in_environ_mode(tmp_path):
    rc, out, _ = run("--environ", cwd=tmp_path, env={**GOOD, "OSCB_REPLICAS": "4"})
    assert rc == 1 and keys_named(out) == ["SESSION_HANDLER"]
    rc, out, _ = run("--environ", cwd=tmp_path, env={**GOOD, "OSCB_REPLICAS": "4", "SESSION_HANDLER": "database"})
    assert (rc, out) == (0, "validate-env: environment: OK\n")


# --- secrets as files (KEY_FILE) -------------------------------------------------------------

def secret_keys() -> list[str]:
    done = subprocess.run(["/bin/sh", str(SCRIPT), "--secret-keys"], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_secret_keys_are_the_password_salt_key_and_credential_url_settings():
    assert secret_keys() == ["DB_PASSWORD", "SECURITY_SALT", "DATABASE_URL", "REDIS_PASSWORD", "QUEUE_URL",
                             "STORAGE_ACCESS_KEY", "STORAGE_SECRET_KEY", "SMTP_PASSWORD", "EMAIL_API_KEY",
                             "EMAIL_TRANSPORT_DEFAULT_URL"]


def without(values: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if k != key}


@pytest.mark.parametrize("ending", ["", "\n"], ids=["no-newline", "one-newline"])
@pytest.mark.parametrize("mode", ["file", "environ"])
def test_a_secret_file_stands_for_the_value(tmp_path, ending, mode):
    secret = tmp_path / "db_password"
    secret.write_text(GOOD["DB_PASSWORD"] + ending)
    values = {**without(GOOD, "DB_PASSWORD"), "DB_PASSWORD_FILE": str(secret)}
    if mode == "file":
        rc, out, _ = check(tmp_path, values)
    else:
        rc, out, _ = run("--environ", cwd=tmp_path, env=values)
    assert rc == 0, out
    assert lines(out, "error") == lines(out, "warning") == []


@pytest.mark.parametrize("key", secret_keys())
def test_every_secret_key_reads_its_file_and_applies_its_rules(tmp_path, key):
    secret = tmp_path / "secret"
    secret.write_text(f"CHANGE_ME_{key.lower()}\n")
    rc, out, _ = check(tmp_path, {**without(GOOD, key), f"{key}_FILE": str(secret)})
    assert rc == 1
    assert keys_named(out) == [key] and "placeholder" in out  # the content was checked as KEY's value
    assert f"CHANGE_ME_{key.lower()}" not in out


@pytest.mark.parametrize(("content", "needle"), [
    ("short1A!\n", "DB_PASSWORD: must be at least 12 characters long"),
    ("", "DB_PASSWORD: is required but empty"),
    ("Kx7#mQ2!vR9pLw4z\n\n", "DB_PASSWORD_FILE: the file has more than one line"),
    ("Kx7#mQ2!\nvR9pLw4z\n", "DB_PASSWORD_FILE: the file has more than one line"),
    ("Kx7#mQ2!vR9pLw4z\r\n", "DB_PASSWORD_FILE: the file ends with a carriage return"),
])
def test_bad_secret_files(tmp_path, content, needle):
    secret = tmp_path / "db_password"
    secret.write_text(content)
    rc, out, _ = check(tmp_path, {**without(GOOD, "DB_PASSWORD"), "DB_PASSWORD_FILE": str(secret)})
    assert rc == 1
    assert [line for line in lines(out, "error") if needle in line], out
    assert len(lines(out, "error")) == 1, out
    for part in filter(None, content.split()):
        assert part not in out


@pytest.mark.parametrize("target", ["missing", "directory"])
def test_an_unreadable_secret_file_is_named_by_its_key(tmp_path, target):
    path = tmp_path / "secrets" / "db_password"
    if target == "directory":
        path.mkdir(parents=True)
    rc, out, _ = check(tmp_path, {**without(GOOD, "DB_PASSWORD"), "DB_PASSWORD_FILE": str(path)})
    assert rc == 1
    assert lines(out, "error") == [
        "error: DB_PASSWORD_FILE: cannot read the file it names (missing, not a regular file, or no read "
        "permission for this user); fix the path or the file's owner and mode"]


def test_key_and_key_file_together_are_an_error(tmp_path):
    secret = tmp_path / "salt"
    secret.write_text(GOOD["SECURITY_SALT"])
    rc, out, _ = check(tmp_path, {**GOOD, "SECURITY_SALT_FILE": str(secret)})
    assert rc == 1
    assert lines(out, "error") == ["error: SECURITY_SALT: is set and SECURITY_SALT_FILE too; set only one of them "
                                   "(SECURITY_SALT_FILE=/path reads the value from that file)"]
    rc, out, _ = run("--environ", cwd=tmp_path, env={**GOOD, "SECURITY_SALT_FILE": str(secret)})
    assert rc == 1 and keys_named(out) == ["SECURITY_SALT"]


def test_an_empty_key_file_setting_counts_as_unset(tmp_path):
    assert check(tmp_path, {**GOOD, "DB_PASSWORD_FILE": ""})[0] == 0


def test_file_for_a_non_secret_key_is_just_another_variable(tmp_path):
    rc, out, _ = check(tmp_path, {**GOOD, "DB_HOST_FILE": "/nonexistent", "SSL_CERT_FILE": "/etc/ssl/x.pem"})
    assert (rc, lines(out, "error")) == (0, [])


def env_file_with_password_file(tmp_path: Path, value: str) -> Path:
    """A valid env file whose DB_PASSWORD comes from DB_PASSWORD_FILE (holding value and a newline)."""
    secret = tmp_path / "db_password"
    secret.write_text(value + "\n")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in without(GOOD, "DB_PASSWORD").items())
                        + f"DB_PASSWORD_FILE={secret}\n")
    return env_file


def test_exec_exports_the_files_content_as_the_key_and_not_the_file_variable(tmp_path):
    value = "Zq9!" + uuid.uuid4().hex
    env_file = env_file_with_password_file(tmp_path, value)
    dump = tmp_path / "dump"
    rc, out, err = run("-q", "--exec", str(env_file), "--", "/bin/sh", "-c", f'env > "{dump}"', cwd=tmp_path)
    assert rc == 0, out + err
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert seen["DB_PASSWORD"] == value
    assert "DB_PASSWORD_FILE" not in seen
    assert value not in out + err


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_exec_with_a_secret_file_puts_no_value_on_any_command_line(tmp_path):
    value = "Zq9!Secret-From-File-" + uuid.uuid4().hex[:8]
    env_file = env_file_with_password_file(tmp_path, value)
    trace = tmp_path / "trace"
    done = subprocess.run(["strace", "-f", "-s", "100000", "-e", "trace=execve", "-o", str(trace),
                           "/bin/sh", str(SCRIPT), "-q", "--exec", str(env_file), "--", "/bin/true"],
                          env={"PATH": PATH}, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [line for line in trace.read_text().splitlines() if "execve(" in line]
    assert any("/bin/true" in line for line in calls)
    assert not [line for line in calls if value in line]


@pytest.mark.parametrize("mode", ["file", "environ"])
def test_secret_files_elsewhere_count_as_set_without_being_read(tmp_path, mode):
    """invoke deploy checks Compose's environment on the host, where /run/secrets/... of the container is not."""
    values = {**without(GOOD, "DB_PASSWORD"), "DB_PASSWORD_FILE": "/run/secrets/db_password-absent-here",
              "EMAIL_TRANSPORT": "sendgrid", "EMAIL_API_KEY_FILE": "/run/secrets/sendgrid"}
    if mode == "file":
        rc, out, _ = check(tmp_path, values, "--secret-files-elsewhere")
        plain = check(tmp_path, values)
    else:
        rc, out, _ = run("--environ", "--secret-files-elsewhere", cwd=tmp_path, env=values)
        plain = run("--environ", cwd=tmp_path, env=values)
    assert (rc, lines(out, "error")) == (0, [])
    assert plain[0] == 1 and keys_named(plain[1]) == ["DB_PASSWORD_FILE", "EMAIL_API_KEY_FILE"]
    # still one or the other
    rc, out, _ = check(tmp_path, {**values, "DB_PASSWORD": GOOD["DB_PASSWORD"]}, "--secret-files-elsewhere")
    assert rc == 1 and keys_named(out) == ["DB_PASSWORD"]


def test_secret_files_elsewhere_and_exec_exclude_each_other(tmp_path):
    rc, _, err = run("--secret-files-elsewhere", "--exec", str(tmp_path / ".env"), "--", "/bin/true", cwd=tmp_path)
    assert rc == 2 and "exclude each other" in err


def test_other_programs_url_and_file_variables_are_not_checked(tmp_path):
    """Only OrangeScrum's keys have rules: SENTRY_URL, CACHE_OTHER_URL, DB_HOST_FILE belong to someone else."""
    rc, out, _ = check(tmp_path, {**GOOD, "SENTRY_URL": "not a url", "CACHE_OTHER_URL": "x", "LOG_MINE_URL": "y",
                                  "DB_HOST_FILE": "/nonexistent"})
    assert (rc, lines(out, "error"), lines(out, "warning")) == (0, [], [])
