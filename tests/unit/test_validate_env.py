"""common/helpers/validate-env.sh: the one env checker of the product.

The script runs under /bin/sh (dash on Debian) exactly as the entrypoint, the
systemd units and the package scripts run it. Every test checks the exit code
and the key (or line number) named in the output; failing cases also check that
the value never shows, and the property tests throw random files at it.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "common" / "helpers" / "validate-env.sh"
EXAMPLE = ROOT / "common" / ".env.example"
APP_LOCAL = ROOT / "common" / "config" / "app_local.example.php"
SH = "/bin/sh"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

REQUIRED = ["DB_HOST", "DB_PORT", "DB_USERNAME", "DB_PASSWORD", "DB_NAME", "SECURITY_SALT", "FULL_BASE_URL"]
SECRETS = ["DB_PASSWORD", "STORAGE_SECRET_KEY", "REDIS_PASSWORD", "SMTP_PASSWORD"]

# A valid, warning-free configuration; cases change one thing in it.
GOOD = {
    "DB_HOST": "db.internal",
    "DB_PORT": "5432",
    "DB_USERNAME": "orangescrum",
    "DB_PASSWORD": "Kx7#mQ2!vR9pLw4z",
    "DB_NAME": "orangescrum",
    "SECURITY_SALT": "3f1c9a0b7e2d4c6f8a1b3d5e7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f5a",
    "FULL_BASE_URL": "https://tasks.acme.test",
    "DEBUG": "false",
}
STRONG = "Hv4$nT8@qW2#kP6z"  # a second valid secret for optional secret keys

SUMMARY = re.compile(r"^validate-env: (?P<name>.+): (?:OK(?:, (?P<okw>\d+) warnings?)?|(?P<e>\d+) errors?, (?P<w>\d+) warnings?)$")
LINE = re.compile(r"^(?:error|warning): \S.*$")


def clean_env(**extra: str) -> dict[str, str]:
    return {"PATH": PATH, **extra}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, shell: list[str] | None = None):
    done = subprocess.run(
        [*(shell or [SH]), str(SCRIPT), *args],
        cwd=cwd, env=clean_env() if env is None else env, capture_output=True, timeout=60,
    )
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    return done.returncode, out, err


def env_text(values: dict[str, str | None], before: list[str] = (), after: list[str] = ()) -> str:
    lines = list(before)
    lines += [f"{k}={v}" for k, v in values.items() if v is not None]
    lines += list(after)
    return "\n".join(lines) + "\n"


def check_file(tmp_path: Path, content: str | bytes, *args: str, name: str = ".env"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return run(*args, str(path), cwd=tmp_path)


def problems(out: str, level: str = "error") -> list[str]:
    return [line for line in out.splitlines() if line.startswith(level + ": ")]


def assert_well_formed(rc: int, out: str) -> None:
    """Every line is a problem, the summary or the hint; counts and exit code agree."""
    lines = out.splitlines()
    assert lines, "no output"
    hint = lines[-1].startswith("hint: ")
    body, summary = (lines[:-2], lines[-2]) if hint else (lines[:-1], lines[-1])
    m = SUMMARY.match(summary)
    assert m, f"bad summary line: {summary!r}"
    for line in body:
        assert LINE.match(line), f"unexpected output line: {line!r}"
    errors = sum(line.startswith("error: ") for line in body)
    warnings = sum(line.startswith("warning: ") for line in body)
    if m["e"] is not None:
        assert (int(m["e"]), int(m["w"])) == (errors, warnings)
        assert rc == 1 and hint and errors > 0
    else:
        assert (int(m["okw"] or 0), 0) == (warnings, errors)
        assert rc == 0 and not hint


def assert_secret_free(text: str, *secrets: str | None) -> None:
    for secret in secrets:
        if secret and len(secret) >= 5:
            assert secret not in text, f"value {secret!r} leaked into the output"


# --------------------------------------------------------------------------------
# The basics


def test_script_is_posix_sh_and_executable():
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
    assert os.access(SCRIPT, os.X_OK)
    assert "set -eu" in SCRIPT.read_text()


def test_script_never_evaluates_the_file():
    code = "\n".join(line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"(^|[\s;&|(])(eval|source)\s", code)
    assert not re.search(r"(^|[\s;&|(])\.\s+[\"$]", code)


def test_good_file_passes(tmp_path):
    rc, out, err = check_file(tmp_path, env_text(GOOD))
    assert (rc, err) == (0, "")
    assert out == f"validate-env: {tmp_path}/.env: OK\n"


def test_default_file_is_dot_env_in_cwd(tmp_path):
    (tmp_path / ".env").write_text(env_text(GOOD))
    rc, out, _ = run(cwd=tmp_path)
    assert rc == 0
    assert out == f"validate-env: {tmp_path}/.env: OK\n"


def test_relative_path_is_shown_absolute(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my.env").write_text(env_text({**GOOD, "DB_PORT": "x"}))
    rc, out, _ = run("./sub/my.env", cwd=tmp_path)
    assert rc == 1
    assert f"validate-env: {tmp_path}/sub/my.env: 1 error, 0 warnings" in out.splitlines()
    assert out.splitlines()[-1] == f"hint: edit {tmp_path}/sub/my.env to fix the lines above; see docs/CONFIGURATION.md"


def test_summary_and_hint_format(tmp_path):
    rc, out, _ = check_file(tmp_path, env_text({**GOOD, "DB_PORT": "x", "DB_NAME": "", "DEBUG": "true"}))
    assert rc == 1
    assert out.splitlines() == [
        "error: DB_PORT: must be a port number between 1 and 65535",
        "error: DB_NAME: is required but empty",
        "warning: DEBUG: is true; never run production with DEBUG enabled",
        f"validate-env: {tmp_path}/.env: 2 errors, 1 warning",
        f"hint: edit {tmp_path}/.env to fix the lines above; see docs/CONFIGURATION.md",
    ]


def test_warnings_only_is_valid(tmp_path):
    rc, out, _ = check_file(tmp_path, env_text({**GOOD, "DEBUG": "1", "FULL_BASE_URL": "http://tasks.acme.test"}))
    assert rc == 0
    assert out.splitlines()[-1] == f"validate-env: {tmp_path}/.env: OK, 2 warnings"
    assert_well_formed(rc, out)


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_quiet(tmp_path, flag):
    rc, out, _ = check_file(tmp_path, env_text(GOOD), flag)
    assert (rc, out) == (0, "")
    rc, out, _ = check_file(tmp_path, env_text({**GOOD, "DEBUG": "true"}), flag)
    assert rc == 0
    assert out == "warning: DEBUG: is true; never run production with DEBUG enabled\n"
    rc, out, _ = check_file(tmp_path, env_text({**GOOD, "DB_PORT": "0"}), flag)
    assert rc == 1
    assert "error: DB_PORT: must be a port number between 1 and 65535" in out
    assert_well_formed(rc, out)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(tmp_path, flag):
    rc, out, _ = run(flag, cwd=tmp_path)
    assert rc == 0
    assert "usage: validate-env.sh" in out and "--environ" in out


@pytest.mark.parametrize(
    "args",
    [["-x"], ["--bogus"], ["a.env", "b.env"], ["a.env", "--", "b.env"], ["--environ", "a.env"], [""]],
    ids=["short", "long", "two-files", "two-files-dashdash", "environ-and-file", "empty-name"],
)
def test_usage_errors_exit_2(tmp_path, args):
    for name in ("a.env", "b.env"):
        (tmp_path / name).write_text(env_text(GOOD))
    rc, out, err = run(*args, cwd=tmp_path)
    assert rc == 2
    assert "usage:" in err


def test_double_dash_allows_a_file_named_like_an_option(tmp_path):
    (tmp_path / "-q").write_text(env_text(GOOD))
    rc, out, _ = run("--", "-q", cwd=tmp_path)
    assert rc == 0 and out.endswith(": OK\n")


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_unreadable_file_exits_2(tmp_path, kind):
    target = tmp_path / "x.env"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    rc, out, _ = run(str(target), cwd=tmp_path)
    assert rc == 2
    assert out.splitlines()[0] == f"error: {target}: cannot read the file (missing, not a regular file, or no permission)"
    assert out.splitlines()[-1].startswith("hint: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_no_permission_exits_2(tmp_path):
    target = tmp_path / "x.env"
    target.write_text(env_text(GOOD))
    target.chmod(0)
    rc, _, _ = run(str(target), cwd=tmp_path)
    assert rc == 2


# --------------------------------------------------------------------------------
# Rules: one table, each row a change to GOOD


def case(id_, code, expect=(), set_=None, drop=(), warn=(), secret="auto"):
    """expect/warn: substrings of error/warning lines; secret: a value that must not show."""
    set_ = set_ or {}
    if secret == "auto":
        secret = list(set_.values())[-1] if set_ and (code or warn) else None  # the key under test is last
    return pytest.param(set_, drop, code, tuple(expect), tuple(warn), secret, id=id_)


def _required_cases():
    for key in REQUIRED:
        yield case(f"{key}-missing", 1, [f"error: {key}: is required but not set"], drop=[key])
        yield case(f"{key}-empty", 1, [f"error: {key}: is required but empty"], set_={key: ""})


def _secret_cases():
    for key in SECRETS:
        weak = "warning" if key == "SMTP_PASSWORD" else "error"  # provider-issued: reported, not fatal
        wcode = 0 if weak == "warning" else 1
        extra = {"SMTP_HOST": "smtp.acme.test", "SMTP_PORT": "587"} if key.startswith("SMTP") else {}

        def c(id_, code, expect, value, level="error", **kw):
            exp = [f"{level}: {key}: {expect}"] if expect else []
            if level == "warning":
                return case(f"{key}-{id_}", code, set_={**extra, key: value}, warn=exp, **kw)
            return case(f"{key}-{id_}", code, exp, set_={**extra, key: value}, **kw)

        yield c("ok-12-chars-3-classes", 0, None, "Zq9!abcdefgh")
        yield c("ok-3-classes-no-symbol", 0, None, "Zq9abcdefghX")
        yield c("ok-hex-32", 0, None, "3f1c9a0b7e2d4c6f8a1b3d5e7f9a0c2e")
        yield c("ok-base64", 0, None, "q8ZrV2mT9Lk3Xw7Pc4Hn6Bf1Yd5Js0Ga")
        yield c("too-short", wcode, "must be at least 12 characters long", "Zq9!abcdefg", level=weak)
        yield c("two-classes-short", wcode, "must mix at least 3 of", "zqwxabcdef12", level=weak)
        yield c("one-class-long", wcode, "must mix at least 2 of", "zqwxabcdefzqwxabcdefzqwxabcdef", level=weak)
        for denied in ["password", "PASSWORD", "Passw0rd", "secret", "orangescrum", "admin", "root",
                       "postgres", "MinioAdmin", "123456789012"]:
            # ("password" is also a word of the message itself)
            yield c(f"denied-{denied}", 1, "is a well-known default password", denied,
                    secret=None if denied.lower() == "password" else "auto")
        for ph in ["CHANGE_ME_db_password", "changeme", "change_me", "Zq9!ChangeMe-2024", "Zq9!x_change_me_x",
                   "your_password_Zq9!", "Zq9!Example-Passw0rd"]:
            yield c(f"placeholder-{ph}", 1, "is still a placeholder from .env.example", ph)
        if key != "DB_PASSWORD":
            yield c("optional-empty", 0, None, "")


def _port_cases():
    for key in ["DB_PORT", "REDIS_PORT", "SMTP_PORT", "CUSTOM_PORT"]:
        def c(id_, value, ok):
            exp = [] if ok else [f"error: {key}: must be a port number between 1 and 65535"]
            return case(f"{key}-{id_}", 0 if ok else 1, exp, set_={key: value})

        yield c("1", "1", True)
        yield c("443", "443", True)
        yield c("65535", "65535", True)
        yield c("leading-zero", "0080", True)
        yield c("0", "0", False)
        yield c("000", "000", False)
        yield c("65536", "65536", False)
        yield c("999999", "999999", False)
        yield c("plus", "+80", False)
        yield c("minus", "-1", False)
        yield c("letters", "80a", False)
        yield c("decimal", "80.0", False)
        yield c("inner-space", "'8 0'", False)
        yield c("quoted-space", '" 80"', False)
        yield c("tcp-link", "tcp://10.0.0.1:5432", False)
        yield c("huge", "9" * 40, False)


def _url_cases():
    k = "FULL_BASE_URL"
    bad = [f"error: {k}: must start with http:// or https:// and name a host"]
    for id_, v in [("https", "https://tasks.acme.test"), ("port", "https://tasks.acme.test:8443"),
                   ("path", "https://acme.test/orangescrum"), ("ipv6", "https://[::1]:8443"),
                   ("userinfo", "https://u@tasks.acme.test")]:
        yield case(f"url-ok-{id_}", 0, set_={k: v})
    yield case("url-http-warns", 0, set_={k: "http://tasks.acme.test"},
               warn=[f"warning: {k}: uses http://; serve OrangeScrum over https:// in production"], secret=None)
    yield case("url-trailing-slash-warns", 0, set_={k: "https://tasks.acme.test/"},
               warn=[f"warning: {k}: ends with '/'"])
    for id_, v in [("ftp", "ftp://files.acme.test"), ("no-scheme", "tasks.acme.test"), ("scheme-only", "https://"),
                   ("no-host-path", "https:///path"), ("port-only", "https://:8443"), ("user-only", "https://u@"),
                   ("upper-scheme", "HTTPS://tasks.acme.test"), ("space", "'https://tasks acme.test'"),
                   ("one-slash", "https:/tasks.acme.test")]:
        yield case(f"url-bad-{id_}", 1, bad, set_={k: v}, secret=None if v == "https://" else "auto")


def _bool_cases():
    warn = ["warning: DEBUG: is true; never run production with DEBUG enabled"]
    for v in ["true", "TRUE", "True", "1"]:
        yield case(f"debug-{v}-warns", 0, set_={"DEBUG": v}, warn=warn, secret=None)
    for v in ["false", "FALSE", "False", "0", ""]:
        yield case(f"debug-{v or 'empty'}-ok", 0, set_={"DEBUG": v})
    for v in ["yes", "on", "2", "enabled", "truee"]:
        yield case(f"debug-{v}-bad", 1, ["error: DEBUG: must be true, false, 1 or 0"], set_={"DEBUG": v})
    for v in ["true", "false", "TRUE", "False", ""]:
        yield case(f"pathstyle-{v or 'empty'}-ok", 0, set_={"STORAGE_PATH_STYLE": v})
    for v in ["1", "0", "yes", "path"]:
        yield case(f"pathstyle-{v}-bad", 1, ["error: STORAGE_PATH_STYLE: must be true or false"],
                   set_={"STORAGE_PATH_STYLE": v}, secret=None)


def _smtp_and_mail_cases():
    need = ["error: SMTP_PORT: must be set when SMTP_HOST is set"]
    yield case("smtp-host-and-port", 0, set_={"SMTP_HOST": "smtp.acme.test", "SMTP_PORT": "587"})
    yield case("smtp-host-without-port", 1, need, set_={"SMTP_HOST": "smtp.acme.test"}, secret=None)
    yield case("smtp-host-empty-port", 1, need, set_={"SMTP_HOST": "smtp.acme.test", "SMTP_PORT": ""}, secret=None)
    yield case("smtp-port-only", 0, set_={"SMTP_PORT": "25"})
    yield case("smtp-host-empty", 0, set_={"SMTP_HOST": ""})
    bad = ["error: FROM_EMAIL: must look like an e-mail address (local@domain)"]
    for v in ["noreply@acme.test", "no.reply+os@mail.acme.test", "root@localhost"]:
        yield case(f"from-ok-{v}", 0, set_={"FROM_EMAIL": v})
    for v in ["noreply", "@acme.test", "noreply@", "a@b@acme.test", "'no reply@acme.test'", "noreply@.acme.test",
              "noreply@acme.test.", "noreply@acme..test", "Name <noreply@acme.test>"]:
        yield case(f"from-bad-{v}", 1, bad, set_={"FROM_EMAIL": v}, secret=v.strip("'"))


def _misc_cases():
    yield case("salt-ok-32", 0, set_={"SECURITY_SALT": "a" * 16 + "B" * 16})
    yield case("salt-too-short", 1, ["error: SECURITY_SALT: must be at least 32 characters long"],
               set_={"SECURITY_SALT": "Zq9!abcdefghijklmnopqrstuvwxyz0"})
    for v in ["CHANGE_ME_generate_with_openssl_rand_hex_32", "__SALT__",
              "your_security_salt_here_0123456789abcdef", "0123456789abcdef0123456789abcdef_example",
              "changeme", "x" * 24 + "ChangeMe" + "y" * 8]:
        yield case(f"salt-placeholder-{v[:12]}", 1, ["error: SECURITY_SALT: is still a placeholder from .env.example"],
                   set_={"SECURITY_SALT": v})
    yield case("salt-denied-long", 1, ["error: SECURITY_SALT: is still a placeholder"],
               set_={"SECURITY_SALT": "123456789012"})
    for key in ["QUEUE_URL", "STORAGE_ACCESS_KEY", "SMTP_USERNAME", "UNKNOWN_SETTING", "DB_HOST", "FROM_EMAIL"]:
        yield case(f"placeholder-{key}", 1, [f"error: {key}: is still a placeholder from .env.example"],
                   set_={key: "CHANGE_ME_" + key.lower()})
    for key in ["REDIS_DATABASE", "QUEUE_WORKER_MAX_RUNTIME", "QUEUE_WORKER_SLEEP"]:
        yield case(f"{key}-ok", 0, set_={key: "3600"})
        yield case(f"{key}-bad", 1, [f"error: {key}: must be a whole number (0 or more)"], set_={key: "1h30m"})
        yield case(f"{key}-negative", 1, [f"error: {key}: must be a whole number"], set_={key: "-1"}, secret=None)
    yield case("unknown-keys-allowed", 0, set_={"SOMETHING_ELSE": "whatever you like", "lower_case": "x"})
    yield case("unknown-port-only-rule", 0, set_={"APP_PORTAL": "not a port"})


RULE_CASES = [*_required_cases(), *_secret_cases(), *_port_cases(), *_url_cases(), *_bool_cases(),
              *_smtp_and_mail_cases(), *_misc_cases()]


@pytest.mark.parametrize("set_, drop, code, expect, warn, secret", RULE_CASES)
def test_rule(tmp_path, set_, drop, code, expect, warn, secret):
    values = {k: v for k, v in {**GOOD, **set_}.items() if k not in drop}
    rc, out, err = check_file(tmp_path, env_text(values))
    assert rc == code, out
    errors, warnings = problems(out), problems(out, "warning")
    for text in expect:
        assert any(line.startswith(text) for line in errors), f"{text!r} not in:\n{out}"
    for text in warn:
        assert any(line.startswith(text) for line in warnings), f"{text!r} not in:\n{out}"
    if code == 0:
        assert errors == []
    if not warn:
        assert warnings == []
    # Exactly the expected keys are named: nothing else in GOOD is disturbed.
    assert len(errors) == len(expect), out
    assert_well_formed(rc, out)
    assert_secret_free((out + err).replace(str(tmp_path), "<tmp>"), secret.strip("'\"") if secret else None)


# --------------------------------------------------------------------------------
# Parsing: the case's lines go first (so line numbers are known), then GOOD minus
# the keys the case defines.

KEY_OF_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def pcase(id_, lines, code, expect=(), warn=(), secret=None, absent=()):
    return pytest.param(lines, code, tuple(expect), tuple(warn), secret, tuple(absent), id=id_)


NOEQ = "error: line {}: no '=' found (expected KEY=VALUE)"
BADKEY = "error: line {}: invalid key name"
PORT = "error: DB_PORT: must be a port number between 1 and 65535"


def refused(n: int, key: str, rule: str) -> str:
    return f"error: line {n}: {key}: {rule}"


EXPORT = "error: line {}: starts with 'export': systemd ignores the line and logs it, value included, to the journal"
INLINE = "inline comment (' #'): systemd would keep it in the value"
AFTER_COMMENT = "comment after the closing quote: systemd would append it to the value"
AFTER_TEXT = "text after the closing quote: systemd would append it to the value"
UNQ_BACKSLASH = "'\\' in an unquoted value: systemd drops it"
DQ_BACKSLASH = "'\\' in double quotes before a character other than"
SQ_BACKSLASH = "'\\' before '\\' or the closing quote in single quotes"
UNQ_DOLLAR = "'$' in an unquoted value: Docker Compose would substitute a variable"
DQ_DOLLAR = "'$' in double quotes: Docker Compose would substitute a variable"
UNTERM_D = "unterminated double quote"
UNTERM_S = "unterminated single quote"

PARSE_CASES = [
    pcase("blank-and-comments", ["", "   ", "\t", "# a comment", "   # indented", "\t# tab", "#DB_PORT=abc"], 0),
    # export: systemd ignores the line and logs it with the value (finding 2)
    pcase("export", ["export DB_PORT=5432"], 1, [EXPORT.format(1)], absent=["DB_PORT: is required"]),
    pcase("export-tab", ["export\tDB_NAME=orangescrum"], 1, [EXPORT.format(1)], absent=["DB_NAME: is required"]),
    pcase("export-secret-never-shown", ["export DB_PASSWORD=Zq9!abcdefghij"], 1, [EXPORT.format(1)],
          secret="Zq9!abcdefghij", absent=["DB_PASSWORD: is required"]),
    pcase("export-alone", ["export"], 1, [NOEQ.format(1)]),
    pcase("exportKEY-is-a-key", ["exportDB=1"], 0),
    pcase("double-quoted", ['DB_PORT="5432"'], 0),
    pcase("double-quoted-checked", ['DB_PORT="54 32"'], 1, [PORT]),
    pcase("double-quoted-escapes", [r'DB_PASSWORD="Zq9\"abc\\defg"'], 0),
    # 13 bytes as written, 11 once \\ is read as one backslash: too short.
    pcase("double-quoted-escape-counts-once", [r'DB_PASSWORD="Zq9!abcde\\\\"'], 1,
          ["error: DB_PASSWORD: must be at least 12 characters long"], secret="Zq9!abcde"),
    pcase("double-quoted-hash", ['DB_PASSWORD="Zq9!ab #cdefgh"'], 0),
    pcase("double-quoted-single-quote", ['SMTP_USERNAME="o\'brien"'], 0),
    pcase("double-quoted-trailing-ws", ['DB_PORT="5432"   \t'], 0),
    # \$ is "$" to systemd and Compose, "\$" to python-dotenv: 12 characters or 11 (finding 2)
    pcase("double-quoted-escaped-dollar", [r'DB_PASSWORD="Abcdefgh12\$"'], 1,
          [refused(1, "DB_PASSWORD", DQ_BACKSLASH)], secret="Abcdefgh12"),
    pcase("double-quoted-backslash-n", [r'DB_PASSWORD="Zq9!\nabcdefgh"'], 1, [refused(1, "DB_PASSWORD", DQ_BACKSLASH)],
          secret="abcdefgh"),
    pcase("double-quoted-dollar", ['QUEUE_URL="redis://:${REDIS_PASSWORD}@redis:6379/1"'], 1,
          [refused(1, "QUEUE_URL", DQ_DOLLAR)], secret="redis://"),
    pcase("double-quoted-lone-dollar", ['DB_PASSWORD="Zq9!abc$defgh"'], 1, [refused(1, "DB_PASSWORD", DQ_DOLLAR)],
          secret="Zq9!abc"),
    pcase("double-quoted-comment", ['DB_PORT="5432" # the port'], 1, [refused(1, "DB_PORT", AFTER_COMMENT)]),
    pcase("double-quoted-comment-tab", ['DB_NAME="orangescrum"\t#x'], 1, [refused(1, "DB_NAME", AFTER_COMMENT)]),
    pcase("single-quoted", ["DB_PORT='5432'", "DB_PASSWORD='Zq9!ab\"cd\\efgh'"], 0),
    pcase("single-quoted-dollar-is-literal", ["DB_PASSWORD='Zq9!abc$def${X}gh'"], 0),
    pcase("single-quoted-double-backslash", ["DB_PASSWORD='Zq9!abc\\\\defgh'"], 1,
          [refused(1, "DB_PASSWORD", SQ_BACKSLASH)], secret="Zq9!abc"),
    pcase("single-quoted-backslash-before-quote", ["DB_PASSWORD='Zq9!abcdefgh\\'"], 1,
          [refused(1, "DB_PASSWORD", SQ_BACKSLASH)], secret="Zq9!abcdefgh"),
    # DB_PASSWORD='x'  # note: systemd reads "x# note" (finding 2)
    pcase("single-quoted-comment", ["DB_PASSWORD='Zq9!abcdefghij'  # note"], 1,
          [refused(1, "DB_PASSWORD", AFTER_COMMENT)], secret="Zq9!abcdefghij"),
    pcase("single-quoted-checked", ["DB_PORT='x5432'"], 1, [PORT]),
    pcase("empty-quotes", ['DEBUG=""', "SMTP_HOST=''"], 0),
    pcase("empty-unquoted", ["DEBUG=", "SMTP_HOST=   "], 0),
    # DB_PORT=5432 # comment: systemd reads "5432 # comment" (finding 2)
    pcase("unquoted-inline-comment", ["DB_PORT=5432 # the port"], 1, [refused(1, "DB_PORT", INLINE)]),
    pcase("unquoted-inline-comment-tab", ["# c", "DB_NAME=orangescrum\t# tab comment"], 1,
          [refused(2, "DB_NAME", INLINE)]),
    pcase("comment-only-value", ["DEBUG= # nothing"], 1, [refused(1, "DEBUG", INLINE)]),
    pcase("unquoted-hash-without-space-is-value", ["DB_PORT=5432#x"], 1, [PORT]),
    pcase("unquoted-leading-hash-is-value", ["SMTP_USERNAME=#ops"], 0),
    pcase("unquoted-trailing-ws", ["DB_PORT=5432   ", "DB_NAME=orangescrum\t "], 0),
    pcase("spaces-around-equals", ["DB_PORT=  5432", 'DB_NAME= "orangescrum"', "DEBUG =false", "SMTP_TLS\t=\ttrue"], 0),
    pcase("value-with-equals", ["QUEUE_URL=redis://redis:6379/1?a=b=c"], 0),
    pcase("unquoted-value-with-quotes-inside", ["SMTP_USERNAME=o'brien\"x"], 0),
    pcase("unquoted-inner-spaces", ["SMTP_USERNAME=two words"], 0),
    # a trailing backslash joins the next line (FULL_BASE_URL) to this one in systemd (finding 2)
    pcase("unquoted-trailing-backslash", ["SMTP_USERNAME=ops\\", "FULL_BASE_URL=https://tasks.acme.test"], 1,
          [refused(1, "SMTP_USERNAME", UNQ_BACKSLASH)]),
    # \a\b\c\d\e\f1: 7 characters to systemd, 13 here (finding 2)
    pcase("unquoted-backslashes", ["DB_PASSWORD=\\a\\b\\c\\d\\e\\f1"], 1, [refused(1, "DB_PASSWORD", UNQ_BACKSLASH)],
          secret="\\a\\b\\c"),
    pcase("unquoted-dollar", ["QUEUE_URL=redis://:$REDIS_PASSWORD@redis:6379/1"], 1, [refused(1, "QUEUE_URL", UNQ_DOLLAR)],
          secret="redis://"),
    pcase("unquoted-dollar-braces", ["SMTP_USERNAME=${USER}"], 1, [refused(1, "SMTP_USERNAME", UNQ_DOLLAR)]),
    pcase("comment-trailing-backslash", ["# see the wiki \\", "DB_PORT=5432"], 1,
          ["error: line 1: comment ends with '\\': systemd (before 254) would take the next line as part of the comment"]),
    pcase("semicolon-comment", ["; a comment"], 1,
          ["error: line 1: starts with ';': systemd reads it as a comment, Docker Compose refuses the file"]),
    pcase("no-equals", ["Zq9!JustSomeSecretText"], 1, [NOEQ.format(1)], secret="Zq9!JustSomeSecretText"),
    pcase("no-equals-later-line", ["# c", "", "DB_HOSTdb"], 1, [NOEQ.format(3)], secret="DB_HOSTdb"),
    pcase("key-starts-with-digit", ["1ABC=x"], 1, [BADKEY.format(1)]),
    pcase("key-with-dash", ["Zq9-ABC=x"], 1, [BADKEY.format(1)], secret="Zq9-ABC"),
    pcase("key-with-dot", ["APP.NAME=x"], 1, [BADKEY.format(1)]),
    pcase("key-with-space", ["DB PORT=5432"], 1, [BADKEY.format(1)], secret="DB PORT"),
    pcase("key-yaml-style", ["DB_PORT: 5432"], 1, [NOEQ.format(1)], absent=["DB_PORT: is required"]),
    pcase("empty-key", ["=Zq9!abcdefgh"], 1, [BADKEY.format(1)], secret="Zq9!abcdefgh"),
    pcase("secret-pasted-as-key", ["Zq9!abc$def=x"], 1, [BADKEY.format(1)], secret="Zq9!abc$def"),
    pcase("reserved-tmpdir", ["TMPDIR=/tmp"], 1,
          [refused(1, "TMPDIR", "is reserved: the units set it to their private cache directory")]),
    pcase("reserved-bash-uid", ["UID=1000"], 1, [refused(1, "UID", "is reserved: the shell sets it (read-only in bash)")]),
    pcase("unterminated-double", ['DB_PASSWORD="Zq9!abcdefgh'], 1, [refused(1, "DB_PASSWORD", UNTERM_D)],
          secret="Zq9!abcdefgh", absent=["DB_PASSWORD: is required"]),
    pcase("unterminated-double-escaped-close", [r'DB_PASSWORD="Zq9!abcdefgh\"'], 1,
          [refused(1, "DB_PASSWORD", UNTERM_D)], secret="Zq9!abcdefgh"),
    pcase("unterminated-double-trailing-backslash", ['DB_PASSWORD="Zq9!abcdefgh\\'], 1,
          [refused(1, "DB_PASSWORD", UNTERM_D)], secret="Zq9!abcdefgh"),
    pcase("multi-line-double", ['DB_PASSWORD="Zq9!abc', 'defghij"'], 1,
          [refused(1, "DB_PASSWORD", UNTERM_D), NOEQ.format(2)], secret="Zq9!abc"),
    pcase("unterminated-single", ["DB_PASSWORD='Zq9!abcdefgh"], 1, [refused(1, "DB_PASSWORD", UNTERM_S)],
          secret="Zq9!abcdefgh"),
    pcase("text-after-double", ['DB_PASSWORD="Zq9!abcdefgh" Zq9!trailing'], 1,
          [refused(1, "DB_PASSWORD", AFTER_TEXT)], secret="Zq9!trailing"),
    pcase("text-after-single", ["DB_PASSWORD='Zq9!abcdefgh'Zq9!trailing"], 1,
          [refused(1, "DB_PASSWORD", AFTER_TEXT)], secret="Zq9!trailing"),
    pcase("hash-glued-to-quote", ['DB_PORT="5432"#c'], 1, [refused(1, "DB_PORT", AFTER_COMMENT)]),
    pcase("two-quoted-parts", ['DB_PASSWORD="Zq9!abc" "defgh"'], 1, [refused(1, "DB_PASSWORD", AFTER_TEXT)],
          secret="Zq9!abc"),
    pcase("cr-line", ["DB_PORT=5432\r"], 1, ["error: line 1: has a carriage return (Windows line ending)"]),
    pcase("cr-mid-line", ["# c", "DB_NAME=orange\rscrum"], 1, ["error: line 2: has a carriage return"],
          secret="orange"),
    pcase("control-character", ["DB_NAME=orange\x0bscrum"], 1,
          ["error: line 1: has a control character (only tab is allowed)"], secret="orange",
          absent=["DB_NAME: is required"]),
    pcase("duplicate-last-wins-good", ["DB_PORT=abc", "DB_PORT=5432"], 0,
          warn=["warning: DB_PORT: defined again on line 2; the last definition wins"], absent=["error:"]),
    pcase("duplicate-last-wins-bad", ["DB_PORT=5432", "DB_PORT=abc"], 1, [PORT],
          warn=["warning: DB_PORT: defined again on line 2"]),
    pcase("duplicate-secret", ["DB_PASSWORD=Zq9!weak", "DB_PASSWORD=Zq9!abcdefghij"], 0,
          warn=["warning: DB_PASSWORD: defined again on line 2"], secret="Zq9!weak"),
    pcase("duplicate-unknown", ["FOO=1", "FOO=2", "FOO=3"], 0,
          warn=["warning: FOO: defined again on line 2", "warning: FOO: defined again on line 3"]),
    pcase("duplicate-interleaved", ["FOO=1", "BAR=1", "DB_PORT=x", "FOO=2", "DB_PORT=5432", "BAR=2"], 0,
          warn=["warning: FOO: defined again on line 4", "warning: DB_PORT: defined again on line 5",
                "warning: BAR: defined again on line 6"]),
    pcase("long-line", ["X=Zq9!" + "a" * 9000], 1, ["error: line 1: is longer than 8192 bytes"],
          secret="Zq9!aaaa"),
    pcase("long-ok-line", ["X=Zq9!" + "a" * 8000], 0),
    pcase("unicode", ["APP_TITLE=Ørångé Scrüm ✓", "# коммент", "DB_NAME=orangescrum"], 0),
    pcase("unicode-password", ["DB_PASSWORD=pässwörd-ÜBER-9"], 0),
    pcase("unicode-4-byte", ["APP_TITLE='🍊 Scrum 𝄞'"], 0),
    # Aa1€€€€ is 13 bytes but 7 characters (finding 2)
    pcase("password-counts-characters", ["DB_PASSWORD=Aa1€€€€"], 1,
          ["error: DB_PASSWORD: must be at least 12 characters long"], secret="Aa1€€€€"),
    pcase("password-12-characters-multibyte", ["DB_PASSWORD=Aa1€€€€€€€€€"], 0),
    pcase("salt-counts-characters", ["SECURITY_SALT=" + "ä" * 31], 1,
          ["error: SECURITY_SALT: must be at least 32 characters long"], secret="ää"),
    pcase("unicode-space-unquoted", ["SMTP_USERNAME=ops\u00a0"], 1,
          [refused(1, "SMTP_USERNAME", "Unicode space (U+00A0, U+2000...) in an unquoted value")]),
    pcase("unicode-space-unquoted-ideographic", ["SMTP_USERNAME=\u3000ops"], 1,
          [refused(1, "SMTP_USERNAME", "Unicode space")]),
    pcase("unicode-space-quoted", ["SMTP_USERNAME='ops\u00a0'", 'APP_TITLE="a\u2003b"'], 0),
    pcase("c1-control", ["APP_TITLE=a\u0085b"], 1, ["error: line 1: has a control character (U+0080-U+009F)"]),
    pcase("noncharacter", ["APP_TITLE='a\ufffeb'"], 1, ["error: line 1: has a Unicode noncharacter"]),
    pcase("noncharacter-plane-16", ["# \U0010ffff"], 1, ["error: line 1: has a Unicode noncharacter"]),
]


@pytest.mark.parametrize("lines, code, expect, warn, secret, absent", PARSE_CASES)
def test_parse(tmp_path, lines, code, expect, warn, secret, absent):
    defined = {m[1] for line in lines if (m := KEY_OF_LINE.match(line))}
    body = "\n".join(lines) + "\n" + env_text({k: v for k, v in GOOD.items() if k not in defined})
    rc, out, err = check_file(tmp_path, body)
    assert rc == code, out
    for text in expect:
        assert any(line.startswith(text) for line in problems(out)), f"{text!r} not in:\n{out}"
    for text in warn:
        assert any(line.startswith(text) for line in problems(out, "warning")), f"{text!r} not in:\n{out}"
    assert len(problems(out)) == len(expect), out
    assert len(problems(out, "warning")) == len(warn), out
    for text in absent:
        assert text not in "\n".join(problems(out) + problems(out, "warning")), out
    assert_well_formed(rc, out)
    assert_secret_free((out + err).replace(str(tmp_path), "<tmp>"), secret)


def test_last_line_without_newline_is_read(tmp_path):
    text = env_text(GOOD).rstrip("\n") + "\nDB_PORT=abc"
    rc, out, _ = check_file(tmp_path, text)
    assert rc == 1 and PORT in out


def test_empty_file_names_every_required_key(tmp_path):
    rc, out, _ = check_file(tmp_path, "")
    assert rc == 1
    assert problems(out) == [f"error: {k}: is required but not set" for k in REQUIRED]


def test_crlf_file_reports_each_line_and_still_parses(tmp_path):
    text = env_text(GOOD).replace("\n", "\r\n")
    rc, out, _ = check_file(tmp_path, text)
    assert rc == 1
    errs = problems(out)
    assert len(errs) == len(GOOD)  # one per line, no "missing" noise: the values still parse
    assert all("carriage return" in e and f"dos2unix {tmp_path}/.env" in e for e in errs)


@pytest.mark.parametrize("where", ["start", "value", "end", "only"])
def test_nul_bytes(tmp_path, where):
    good = env_text(GOOD).encode()
    content = {
        "start": b"\0" + good,
        "value": good + b"DB_PASSWORD=Zq9!abc\0defghijk\n",
        "end": good + b"\0",
        "only": b"\0\0\0",
    }[where]
    rc, out, _ = check_file(tmp_path, content)
    assert rc == 1
    assert problems(out) == [f"error: {tmp_path}/.env: contains NUL bytes (not a text file; UTF-16? save it as UTF-8)"]
    assert_well_formed(rc, out)
    assert "Zq9!" not in out


def test_utf16_file_is_rejected(tmp_path):
    rc, out, _ = check_file(tmp_path, env_text(GOOD).encode("utf-16"))
    assert rc == 1 and "NUL bytes" in out


NOT_UTF8 = "is not valid UTF-8 (Latin-1?): systemd would refuse the whole file"


@pytest.mark.parametrize("raw, rule", [
    (b"APP_TITLE=caf\xe9", NOT_UTF8),  # Latin-1: systemd refuses the whole file (finding 2)
    (b"DB_PASSWORD='Zq9!abcdefgh\xe9'", NOT_UTF8),
    (b"# caf\xe9", NOT_UTF8),  # python-dotenv cannot even read a comment that is not UTF-8
    (b"APP_TITLE=\xc0\xaf", NOT_UTF8),  # overlong '/'
    (b"APP_TITLE=\xed\xa0\x80", NOT_UTF8),  # a UTF-16 surrogate
    (b"APP_TITLE=\xf4\x90\x80\x80", NOT_UTF8),  # beyond U+10FFFF
    (b"APP_TITLE=\xe2\x82", NOT_UTF8),  # truncated
    (b"APP_TITLE=\xef\xbf\xbe", "has a Unicode noncharacter"),
    (b"APP_TITLE=\xef\xb7\x90", "has a Unicode noncharacter"),
    (b"APP_TITLE=\xc2\x9b", "has a control character (U+0080-U+009F)"),
    (b"APP_TITLE=a\x1bb", "has a control character (only tab is allowed)"),
    (b"APP_TITLE=a\x7fb", "has a control character (only tab is allowed)"),
    (b"\xef\xbb\xbfAPP_TITLE=x", "starts with a byte order mark (BOM): systemd would read it as part of the key"),
], ids=["latin1", "latin1-quoted", "latin1-comment", "overlong", "surrogate", "too-big", "truncated",
        "nonchar-fffe", "nonchar-fdd0", "c1-csi", "esc", "del", "bom"])
def test_encoding(tmp_path, raw, rule):
    rc, out, _ = check_file(tmp_path, raw + b"\n" + env_text(GOOD).encode())
    assert rc == 1, out
    assert problems(out) == [f"error: line 1: {rule}" + problems(out)[0].split(rule, 1)[1]], out
    assert_well_formed(rc, out)


def test_redefinitions_scale_linearly(tmp_path):
    """Finding 11: 900 redefinitions took 28 s (cubic). Twice the lines may not take 3x the time."""
    import time

    def timed(n: int) -> float:
        lines = [f"DB_PORT={5000 + i % 100}\nFOO_{i % 7}=x{i}\nKEY_{i}=v{i}" for i in range(n // 3)]
        path = tmp_path / f"{n}.env"
        path.write_text(env_text(GOOD) + "\n".join(lines) + "\n")
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            rc, out, _ = run("-q", str(path), cwd=tmp_path)
            best = min(best, time.perf_counter() - start)
        assert rc == 0 and f"DB_PORT: defined again on line {len(GOOD) + n - 2}" in out
        return best

    small, large = timed(1500), timed(3000)
    assert large < 3 * small, f"1500 lines: {small:.3f}s, 3000 lines: {large:.3f}s"


# --------------------------------------------------------------------------------
# The shipped template


def example_pairs() -> list[tuple[str, str]]:
    pairs = []
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def test_example_is_plain_unquoted_key_value():
    text = EXAMPLE.read_text()
    assert "{{" not in text and "{%" not in text
    keys = [k for k, _ in example_pairs()]
    assert len(keys) == len(set(keys))
    for key, value in example_pairs():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key)
        assert not re.search(r"[\"'$`\s#]", value), f"{key}: value should be plain"


def test_example_lists_every_variable():
    keys = {k for k, _ in example_pairs()}
    expected = {*REQUIRED, "DEBUG", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DATABASE", "QUEUE_URL",
                "QUEUE_WORKER_MAX_RUNTIME", "QUEUE_WORKER_SLEEP", "STORAGE_ENDPOINT", "STORAGE_ACCESS_KEY",
                "STORAGE_SECRET_KEY", "STORAGE_BUCKET", "STORAGE_REGION", "STORAGE_PATH_STYLE", "SMTP_HOST",
                "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_TLS", "FROM_EMAIL", "SSL_CERT_FILE"}
    assert keys == expected
    assert dict(example_pairs())["QUEUE_WORKER_MAX_RUNTIME"] == "3600"
    if APP_LOCAL.exists():  # what the application reads must be in the template
        read = set(re.findall(r"(?:getenv|\$bool)\('([A-Z_]+)'", APP_LOCAL.read_text()))
        assert read and read <= keys, read - keys


def test_example_secrets_are_change_me_placeholders():
    values = dict(example_pairs())
    for key in [*SECRETS, "SECURITY_SALT", "FULL_BASE_URL"]:
        assert "CHANGE_ME" in values[key], key
    assert "openssl rand -hex 32" in EXAMPLE.read_text()
    assert "SSL_CERT_FILE" in values and "CA bundle" in EXAMPLE.read_text()


def test_shipped_example_fails_naming_every_placeholder(tmp_path):
    placeholders = [k for k, v in example_pairs() if "CHANGE_ME" in v]
    rc, out, _ = run(str(EXAMPLE), cwd=tmp_path)
    assert rc == 1
    errs = problems(out)
    assert len(errs) == len(placeholders)
    for key in placeholders:
        assert sum(e.startswith(f"error: {key}: ") for e in errs) == 1, key
        assert any(e.startswith(f"error: {key}: is still a placeholder from .env.example") for e in errs), key
    assert problems(out, "warning") == []
    assert_well_formed(rc, out)
    for _, value in example_pairs():
        if "CHANGE_ME" in value:
            assert value not in out


def filled_example() -> str:
    """The template with every CHANGE_ME replaced the way an operator would."""
    real = {
        "FULL_BASE_URL": "https://tasks.acme.test", "FROM_EMAIL": "noreply@acme.test",
        "SECURITY_SALT": GOOD["SECURITY_SALT"], "QUEUE_URL": "redis://:4e0c1a9b7d3f5e2a8c6b0d4f@redis:6379/1",
        "STORAGE_ENDPOINT": "http://minio:9000",
    }
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.startswith("#") and "CHANGE_ME" in value:
            value = real.get(key) or (f"'{STRONG}'" if key in SECRETS else key.lower().replace("_", "-"))
            line = f"{key}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_filled_in_example_passes_without_warnings(tmp_path):
    rc, out, _ = check_file(tmp_path, filled_example())
    assert rc == 0, out
    assert out == f"validate-env: {tmp_path}/.env: OK\n"


# --------------------------------------------------------------------------------
# --environ: the process environment (the Docker entrypoint)


def environ_run(tmp_path, *args, **values):
    return run("--environ", *args, cwd=tmp_path, env=clean_env(**values))


def test_environ_good(tmp_path):
    rc, out, _ = environ_run(tmp_path, **GOOD)
    assert (rc, out) == (0, "validate-env: environment: OK\n")
    rc, out, _ = environ_run(tmp_path, "-q", **GOOD)
    assert (rc, out) == (0, "")


def test_environ_empty_names_every_required_key(tmp_path):
    rc, out, _ = environ_run(tmp_path)
    assert rc == 1
    assert problems(out) == [f"error: {k}: is required but not set" for k in REQUIRED]
    assert out.splitlines()[-2] == "validate-env: environment: 7 errors, 0 warnings"
    assert out.splitlines()[-1].startswith("hint: ") and "docs/CONFIGURATION.md" in out.splitlines()[-1]


def test_environ_applies_the_same_rules(tmp_path):
    env = {**GOOD, "DB_PASSWORD": "Zq9!short", "DB_NAME": "", "DEBUG": "TRUE", "REDIS_PORT": "tcp://10.0.0.7:6379",
           "SMTP_HOST": "smtp.acme.test", "STORAGE_SECRET_KEY": "CHANGE_ME_storage_secret_key"}
    rc, out, err = environ_run(tmp_path, **env)
    assert rc == 1
    assert problems(out) == [
        "error: DB_PASSWORD: must be at least 12 characters long",
        "error: DB_NAME: is required but empty",
        "error: REDIS_PORT: must be a port number between 1 and 65535 (it holds a tcp:// address, "
        "as Kubernetes service links set; set REDIS_PORT explicitly)",
        "error: STORAGE_SECRET_KEY: is still a placeholder from .env.example; set a real secret",
        "error: SMTP_PORT: must be set when SMTP_HOST is set",
    ]
    assert problems(out, "warning") == ["warning: DEBUG: is true; never run production with DEBUG enabled"]
    assert_secret_free(out + err, "Zq9!short", "CHANGE_ME_storage_secret_key", "10.0.0.7")


def test_environ_values_are_not_trimmed_or_parsed(tmp_path):
    # The application sees the raw value: a quote or a space is part of it.
    rc, out, _ = environ_run(tmp_path, **{**GOOD, "DB_PORT": '"5432"', "DEBUG": " false"})
    assert rc == 1
    assert [e.split(":")[1].strip() for e in problems(out)] == ["DB_PORT", "DEBUG"]


def test_environ_ignores_unknown_variables(tmp_path):
    rc, out, _ = environ_run(tmp_path, **GOOD, OTHER_PORT="tcp://10.0.0.1:80", FOO="CHANGE_ME", HOME="/root")
    assert (rc, out) == (0, "validate-env: environment: OK\n")


def test_environ_checks_every_key_of_the_example(tmp_path):
    env = {**GOOD, **{k: f"CHANGE_ME_{k.lower()}" for k, _ in example_pairs()}}
    rc, out, _ = environ_run(tmp_path, **env)
    assert rc == 1
    named = {e.split(":")[1].strip() for e in problems(out)}
    assert named == {k for k, _ in example_pairs()}


def test_environ_multiline_value(tmp_path):
    rc, out, err = environ_run(tmp_path, **{**GOOD, "DB_PASSWORD": "Zq9!abc\ndefghij\n"})
    assert rc == 0, out
    rc, out, err = environ_run(tmp_path, **{**GOOD, "DB_PORT": "5432\nZq9!x"})
    assert rc == 1 and "Zq9!" not in out + err


# --------------------------------------------------------------------------------
# Injection: nothing in the file or the environment is ever executed

PAYLOADS = [
    "$(touch {c})", "`touch {c}`", "; touch {c}", "| touch {c}", "&& touch {c}", "$(touch {c})Zq9!abcdefgh",
    "x;touch {c};x", "$( touch {c} )", "${{x:=$(touch {c})}}", "'; touch {c}; '", '"; touch {c}; "',
    "\\`touch {c}\\`", "$((1+$(touch {c})))", "> {c}", "< /dev/null > {c}",
]


def _injection_files(canary: Path) -> list[str]:
    files = []
    for raw in PAYLOADS:
        p = raw.format(c=canary)
        files += [
            env_text({**GOOD, "DB_NAME": p}),
            env_text({**GOOD, "DB_PASSWORD": f'"{p}"'}),
            env_text({**GOOD, "SECURITY_SALT": f"'{p}'"}),
            env_text({**GOOD, "DB_PORT": p}),
            env_text(GOOD, before=[p]),  # a malformed line
            env_text(GOOD, before=[f"{p}=x"]),  # in the key position
            env_text(GOOD, before=[f"# {p}"]),
            env_text(GOOD, before=[f'X="{p}']),  # unterminated
            env_text(GOOD, before=[f"export {p}"]),
        ]
    return files


def test_injection_from_file(tmp_path):
    canary = tmp_path / "CANARY"
    work = tmp_path / "work"
    work.mkdir()
    for text in _injection_files(canary) + _injection_files(Path("CANARY_REL")):
        rc, out, err = check_file(work, text)
        assert rc in (0, 1), out
        assert not canary.exists(), text
        assert not (work / "CANARY_REL").exists(), text
        assert str(canary) not in out + err and "touch" not in out + err


def test_injection_from_environment(tmp_path):
    canary = tmp_path / "CANARY"
    for raw in PAYLOADS:
        p = raw.format(c=canary)
        for key in ["DB_NAME", "DB_PASSWORD", "DB_PORT", "FULL_BASE_URL", "QUEUE_URL", "SMTP_HOST"]:
            rc, out, err = environ_run(tmp_path, **{**GOOD, key: p})
            assert rc in (0, 1)
            assert not canary.exists(), (key, p)
            assert str(canary) not in out + err


def test_injection_in_file_name(tmp_path):
    canary = tmp_path / "CANARY"
    name = f"$(touch {canary.name})`touch {canary.name}`;x.env"
    (tmp_path / name).write_text(env_text(GOOD))
    rc, out, _ = run(name, cwd=tmp_path)
    assert rc == 0
    assert not canary.exists()


# --------------------------------------------------------------------------------
# The same results under other POSIX shells (dash is /bin/sh on Debian; busybox
# in small images; bash when /bin/sh is bash)

OTHER_SHELLS = [["bash", "--posix"], ["busybox", "sh"], ["dash"]]


@pytest.mark.parametrize("shell", OTHER_SHELLS, ids=lambda s: s[0])
def test_portable(tmp_path, shell):
    if not shutil.which(shell[0]):
        pytest.skip(f"{shell[0]} not installed")
    files = [
        env_text(GOOD),
        env_text({**GOOD, "DEBUG": "1", "DB_PORT": "0080", "FULL_BASE_URL": "http://x.test/"}),
        "\n".join(line for p in PARSE_CASES for line in p.values[0]) + "\n",
        EXAMPLE.read_text(),
        filled_example(),
        "",
    ]
    for i, text in enumerate(files):
        path = tmp_path / f"{i}.env"
        path.write_text(text)
        expected = run(str(path), cwd=tmp_path)
        assert run(str(path), cwd=tmp_path, shell=shell) == expected


# --------------------------------------------------------------------------------
# Property-based: random files from a line grammar

MARK = "Zq9!"  # every generated secret starts with it; no message ever contains it
CANARY_ABS = f"/tmp/validate-env-canary-{uuid.uuid4().hex}"  # absolute: whatever the cwd
KNOWN_KEYS = [k for k, _ in example_pairs()] if EXAMPLE.exists() else REQUIRED

tokens = st.text(alphabet=string.ascii_letters, min_size=8, max_size=24).map(lambda s: MARK + s)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), identifiers)
junk_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"), max_size=40)


def payload_values(canary: str):
    return st.sampled_from([p.format(c=canary) for p in PAYLOADS] + [p.format(c="CANARY") for p in PAYLOADS])


@st.composite
def env_files(draw):
    """(content bytes, secret tokens used, absolute canary path)"""
    canary = CANARY_ABS
    secrets = draw(st.lists(tokens, min_size=1, max_size=4))
    secret = st.sampled_from(secrets)
    payload = payload_values(canary)
    value = st.one_of(
        secret, payload, junk_text,
        st.tuples(junk_text, secret, payload).map("".join),
        st.sampled_from(["", "5432", "true", "0", "https://x.test", "a@b.test", "CHANGE_ME", GOOD["DB_PASSWORD"]]),
    )

    def quoted(v: str, style: str) -> str:
        if style == "dq":
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if style == "sq":
            return "'" + v.replace("'", "") + "'"
        return v

    pair = st.builds(
        lambda pre, k, v, style, post: f"{pre}{k}={quoted(v, style)}{post}",
        st.sampled_from(["", "export ", "  ", "\t"]), keys, value, st.sampled_from(["plain", "dq", "sq"]),
        st.sampled_from(["", "  ", " # comment", " # " + MARK + "incomment", "\r", " junk"]),
    )
    line = st.one_of(
        pair, pair, pair,
        st.just(""),
        st.builds(lambda t: "# " + t, st.one_of(junk_text, secret, payload)),
        junk_text,  # probably no '='
        st.tuples(secret, junk_text).map("".join),
        st.builds(lambda k, s: f'{k}="{s}', keys, secret),  # unterminated
        st.builds(lambda k, s, t: f"{k}='{s}'{t}", keys, secret, secret),  # text after quote
        st.builds(lambda s, n: s + "x" * n, secret, st.integers(0, 10000)),  # long line
        st.builds(lambda k, s, n: f"{k}={s}" + "\\" * n + '"', keys, secret, st.integers(0, 3000)),
        st.builds(lambda k, s, n: f'{k}="{s}' + '\\"' * n + '"', keys, secret, st.integers(0, 2000)),
        st.builds(lambda s: s + "\0", secret),  # NUL byte
    )
    lines = draw(st.lists(line, max_size=25))
    base = draw(st.sampled_from(["", env_text(GOOD)]))
    end = draw(st.sampled_from(["\n", ""]))
    content = base + "\n".join(lines) + (end if lines else "")
    return content.encode("utf-8"), secrets, canary


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(env_files())
def test_property_random_files(case_):
    content, secrets, canary = case_
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rc, out, err = check_file(tmp, content)
        assert rc in (0, 1), out + err  # 2 only for an unreadable file or bad usage
        assert not Path(canary).exists()
        assert not (tmp / "CANARY").exists()
        assert err == ""
        assert_well_formed(rc, out)
        assert MARK not in out
        for secret in secrets:
            assert secret not in out
        assert canary not in out and "touch" not in out
        if b"\0" in content:
            assert rc == 1 and "contains NUL bytes" in out


@st.composite
def formatted_good_files(draw):
    """GOOD (plus unknown keys) written with random but valid syntax: must pass."""
    def fmt(key: str, value: str) -> str:
        style = draw(st.sampled_from(["plain", "dq", "sq"]))
        if style == "dq":
            v = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif style == "sq":
            v = "'" + value + "'"
        else:
            v = value
        pre = draw(st.sampled_from(["", " ", "\t"]))
        eq_ws = draw(st.sampled_from(["", " "]))
        post = draw(st.sampled_from(["", " ", "\t"]))
        return f"{pre}{key}{eq_ws}={eq_ws}{v}{post}"

    extra_values = st.text(alphabet=string.ascii_letters + string.digits + "-_./:@%+,!", min_size=0, max_size=30)
    extras = draw(st.dictionaries(
        identifiers.filter(lambda k: k not in GOOD and not k.endswith("_PORT") and k not in KNOWN_KEYS),
        extra_values.filter(lambda v: "change" not in v.lower()), max_size=6))
    password = draw(st.text(alphabet=string.ascii_letters + string.digits + "!%^&*()-_=+[]{}:,.<>/?'\"\\ #$`",
                            min_size=4, max_size=20).map(lambda s: "Zq9!" + s + "Ab1x")
                    .filter(lambda s: not re.search(r"change_?me|your_|example", s, re.I))
                    .filter(lambda s: not ("$" in s and ("'" in s or "\\\\" in s))))
    values = {**GOOD, "DB_PASSWORD": password, **extras}
    lines = []
    for key, value in values.items():
        if key == "DB_PASSWORD":
            # Single quotes carry anything but a quote and '\' before '\' or the end;
            # double quotes anything but '$' (\\ and \" escaped).
            if "'" not in value and "\\\\" not in value and not value.endswith("\\"):
                lines.append(f"{key}='{value}'")
            else:
                lines.append(f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            lines.append(fmt(key, value))
        lines += draw(st.lists(st.sampled_from(["", "# comment", "   # indented", "\t"]), max_size=2))
    lines = draw(st.permutations(lines))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""])), password


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formatted_good_files())
def test_property_valid_syntax_variants_pass(case_):
    text, password = case_
    with tempfile.TemporaryDirectory() as tmp:
        rc, out, _ = check_file(Path(tmp), text)
        assert rc == 0, text + "\n---\n" + out
        assert out.endswith(": OK\n")
        assert password not in out and MARK not in out


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(KNOWN_KEYS),
                       st.one_of(tokens, junk_text, payload_values(CANARY_ABS),
                                 st.sampled_from(["", "1", "true", "5432"])), max_size=10),
       st.booleans())
def test_property_random_environment(values, start_good):
    env = {**(GOOD if start_good else {}), **values}
    with tempfile.TemporaryDirectory() as tmp:
        rc, out, err = environ_run(Path(tmp), **env)
        assert rc in (0, 1)
        assert err == ""
        assert_well_formed(rc, out)
        assert MARK not in out and "touch" not in out
        assert not Path(CANARY_ABS).exists()
        assert not (Path(tmp) / "CANARY").exists()


# --- --exec: validate, then run a command with the file's values -------------


def test_exec_runs_the_command_with_the_values_unevaluated(tmp_path):
    canary = tmp_path / "pwned"
    env = tmp_path / ".env"
    env.write_text(env_text({**GOOD, "SMTP_USERNAME": f"'$(touch {canary})'"},
                            after=['QUOTED="two words # not a comment"', "SINGLE='literal $HOME'",
                                   "pair=named like a loop variable", "FOO=first", "FOO=last"]))
    dump = tmp_path / "dump"
    code, out, err = run("--quiet", "--exec", str(env), "--", "/bin/sh", "-c", f'env > "{dump}"; echo ran "$1"', "sh",
                         "arg one", cwd=tmp_path)
    assert code == 0, out + err
    assert "ran arg one" in out
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert seen["DB_PASSWORD"] == GOOD["DB_PASSWORD"]
    assert seen["SMTP_USERNAME"] == f"$(touch {canary})"
    assert seen["QUOTED"] == "two words # not a comment"
    assert seen["SINGLE"] == "literal $HOME"
    assert seen["pair"] == "named like a loop variable"
    assert seen["FOO"] == "last"
    assert "LC_ALL" not in seen  # the checker's own LC_ALL=C stays with the checker
    assert not canary.exists()


def test_exec_keeps_the_callers_locale(tmp_path):
    env = tmp_path / ".env"
    env.write_text(env_text(GOOD))
    code, out, _ = run("-q", "--exec", str(env), "--", "/bin/sh", "-c", 'echo "LC_ALL=$LC_ALL"', cwd=tmp_path,
                       env=clean_env(LC_ALL="C.UTF-8"))
    assert (code, out) == (0, "LC_ALL=C.UTF-8\n")


def _exec_with_recorded_argv(tmp_path: Path) -> tuple[str, str]:
    """--exec under a PATH whose first `env` records its arguments and runs the real one."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    log = tmp_path / "argv.log"
    (fake / "env").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{log}"\nexec /usr/bin/env "$@"\n')
    (fake / "env").chmod(0o755)
    secret = "Zq9!Secret-On-Argv-" + uuid.uuid4().hex[:8]
    (tmp_path / ".env").write_text(env_text({**GOOD, "DB_PASSWORD": secret}))
    code, out, err = run("-q", "--exec", str(tmp_path / ".env"), "--", "env", cwd=tmp_path,
                         env=clean_env(PATH=f"{fake}:{PATH}"))
    assert code == 0, out + err
    assert f"DB_PASSWORD={secret}" in out  # the command got the value, in its environment
    return secret, log.read_text() if log.exists() else ""


def test_exec_puts_no_value_on_a_command_line(tmp_path):
    """Finding 8: values on env(1)'s command line show in /proc/PID/cmdline to every local user."""
    secret, argv = _exec_with_recorded_argv(tmp_path)
    assert secret not in argv
    assert "DB_PASSWORD" not in argv


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_exec_no_value_in_any_execve_argv(tmp_path):
    secret = "Zq9!Secret-On-Argv-" + uuid.uuid4().hex[:8]
    (tmp_path / ".env").write_text(env_text({**GOOD, "DB_PASSWORD": secret, "REDIS_PASSWORD": f"'{secret}x'"}))
    trace = tmp_path / "trace"
    done = subprocess.run(["strace", "-f", "-s", "100000", "-e", "trace=execve", "-o", str(trace),
                           SH, str(SCRIPT), "-q", "--exec", str(tmp_path / ".env"), "--", "/bin/true"],
                          env=clean_env(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [line for line in trace.read_text().splitlines() if "execve(" in line]
    assert any("/bin/true" in line for line in calls)
    assert not [line for line in calls if secret in line]


def test_exec_refuses_an_invalid_file_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    env = tmp_path / ".env"
    env.write_text(env_text({**GOOD, "DB_PASSWORD": "short"}))
    code, out, _ = run("--exec", str(env), "--", "/bin/sh", "-c", f'touch "{marker}"', cwd=tmp_path)
    assert code == 1
    assert "DB_PASSWORD" in out and "short" not in out
    assert not marker.exists()


@pytest.mark.parametrize("args", [["--exec"], ["--exec", "f"], ["--exec", "f", "cmd"], ["--exec", "f", "--"]])
def test_exec_usage_errors(tmp_path, args):
    code, _, err = run(*args, cwd=tmp_path)
    assert code == 2 and "--exec" in err
