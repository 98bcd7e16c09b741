"""Every env key the OrangeScrum Community Edition reads is documented, shipped and checked.

tests/unit/data/ce_env_keys.txt is the list (how it was produced is in its
header). A key the application reads but the product does not document is a
setting nobody can find; these tests keep the three places that name the
settings (CONFIGURATION.md, .env.example, validate-env.sh) complete.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CE_KEYS_FILE = ROOT / "tests" / "unit" / "data" / "ce_env_keys.txt"
DOC = ROOT / "common" / "docs" / "CONFIGURATION.md"
EXAMPLE = ROOT / "common" / ".env.example"
VALIDATOR = ROOT / "common" / "helpers" / "validate-env.sh"
# Read through CakePHP's env() but set by the web server for each request.
SERVER_VARIABLES = {"HTTPS", "HTTP_HOST", "HTTP_X_FORWARDED_PROTO", "SCRIPT_NAME"}


def ce_keys() -> list[str]:
    return [line.strip() for line in CE_KEYS_FILE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_list_is_the_community_editions_size_sorted_and_unique():
    keys = ce_keys()
    assert 70 <= len(keys) <= 90, len(keys)  # issue 12: "about 70 env settings"
    assert keys == sorted(set(keys))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", k) for k in keys)


@pytest.mark.parametrize("key", ce_keys())
def test_every_key_is_documented_in_configuration_md(key):
    if key in SERVER_VARIABLES:
        assert f"`{key}`" in doc_section("Server variables (not settings)")
    else:
        rows = re.findall(rf"^\| `{key}` \|.*\|$", DOC.read_text(), re.M)
        assert len(rows) == 1, f"{key}: expected one table row in {DOC.name}, found {len(rows)}"
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert len(cells) == 5 and all(cells), f"{key}: every column (required, default, what, validation) filled"


@pytest.mark.parametrize("key", ce_keys())
def test_every_key_is_in_the_env_example(key):
    text = EXAMPLE.read_text()
    if key in SERVER_VARIABLES:
        assert re.search(rf"^#.*\b{key}\b", text, re.M), key  # named, never set
        assert not re.search(rf"^\s*#?\s*{key}=", text, re.M), key
    else:
        lines = re.findall(rf"^(?:# )?{key}=.*$", text, re.M)
        assert len(lines) == 1, f"{key}: expected one 'KEY=' or '# KEY=' line in .env.example, found {len(lines)}"


def test_every_key_is_checked_by_the_validator_in_environ_mode(tmp_path):
    """--environ looks only at the keys it knows: each CE key set to a placeholder is named."""
    env = {"PATH": "/usr/bin:/bin", **{k: f"CHANGE_ME_{k.lower()}" for k in ce_keys()}}
    done = subprocess.run(["/bin/sh", str(VALIDATOR), "--environ"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    named = {line.split(":")[1].strip() for line in done.stdout.splitlines() if line.startswith("error: ")}
    assert set(ce_keys()) <= named, sorted(set(ce_keys()) - named)
    leaked = [k for k in ce_keys() if env[k] in done.stdout]
    assert not leaked, leaked  # no value in the output


def test_every_secret_setting_is_documented_with_its_file_variant():
    keys = subprocess.run(["/bin/sh", str(VALIDATOR), "--secret-keys"], capture_output=True, text=True,
                          check=True, timeout=30).stdout.split()
    assert {"DB_PASSWORD", "SECURITY_SALT", "REDIS_PASSWORD", "STORAGE_SECRET_KEY", "SMTP_PASSWORD",
            "EMAIL_API_KEY", "DATABASE_URL"} <= set(keys)
    section = doc_section("Secrets as files (`KEY_FILE`)")
    for key in keys:
        assert f"`{key}`" in section, key
