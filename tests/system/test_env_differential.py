"""Differential test of the env-file format: the validator against the three real readers.

The same settings file is read by systemd (``EnvironmentFile=`` of the units), by
Docker Compose (``env_file:``) and by python-dotenv (``invoke --env-file``). The
validator (common/helpers/validate-env.sh) must accept a file only when all three
give every key the same value, and no secret of an accepted file may reach the
journal (systemd logs lines it ignores, value included).

Thousands of generated files (hypothesis strategies, deterministic) cover every
construct the readers disagree on: both quotes, backslashes, '#', '$' and ${X},
export, trailing backslashes, CR, tabs, blanks around '=', empty values, duplicate
keys, non-UTF-8 bytes, UTF-8 multibyte and Unicode spaces, a BOM, very long lines.
Each goes to:

(a) the validator, on the host;
(b) systemd 252 in a booted Debian 12: one instance of a template unit per file
    (EnvironmentFile=/var/tmp/cases/%i.env, ExecStart=env -0 into a file), all
    started by one systemctl call;
(c) ``docker compose config`` (config only: nothing runs), one compose file with
    one service per accepted file;
(d) python-dotenv as cloudbuilder.config.read_env_file calls it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nspawn import BootedDebian, booted_rootfs_tarball

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "common" / "helpers" / "validate-env.sh"
CASES = 2600  # generated; about 2,300 of them distinct
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

GOOD = [
    "DB_HOST=db.internal", "DB_PORT=5432", "DB_USERNAME=orangescrum", "DB_PASSWORD=Kx7#mQ2!vR9pLw4z",
    "DB_NAME=orangescrum", "SECURITY_SALT=3f1c9a0b7e2d4c6f8a1b3d5e7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f5a",
    "FULL_BASE_URL=https://tasks.acme.test",
]
TOKEN = "@TOKEN@"  # replaced by the case's secret: must never reach the journal

# Pieces of values. "\udce9" is a lone byte 0xE9 once encoded (Latin-1 'é').
CLEAN = ["a", "Z", "7", "-", "_", ".", "/", ":", "@", "%", "+", ",", "!", "*", "?", "=", "{", "}", "(", ")",
         "é", "€", "🍊", "ü", " ", TOKEN]
WILD = CLEAN + ["\t", "#", " #", "# ", "'", '"', "\\", "\\\\", '\\"', "\\'", "\\n", "\\$", "$", "$X", "${X}",
                "${X:-d}", "$$", "`", ";", "\u00a0", "\u3000", "\u2003", "\r", "\x0b", "\x1b", "\u0085",
                "\ufffe", "\udce9", "\u200b"]
KEYS = ["K_A", "K_B", "K_C", "k_low", "_U", "DB_NAME", "SMTP_USERNAME", "DB_PASSWORD"]
BAD_KEYS = ["export", "1X", "K-D", "K.E", "K D", "TMPDIR", "\ufeffK_F", "K_\u00e9"]


def values(pieces, max_size):
    return st.lists(st.sampled_from(pieces), max_size=max_size).map("".join)


@st.composite
def assignment(draw):
    key = draw(st.sampled_from(KEYS) if draw(st.integers(0, 9)) else st.sampled_from(BAD_KEYS))
    value = draw(values(CLEAN, 6) if draw(st.integers(0, 2)) else values(WILD, 6))
    style = draw(st.sampled_from(["plain", "plain", "single", "double"]))
    if style == "single":
        value = f"'{value}'"
    elif style == "double":
        value = f'"{value}"'
    pre = draw(st.sampled_from(["", "", "", " ", "\t", "export ", "export\t"]))
    around = draw(st.sampled_from([("", "")] * 6 + [(" ", ""), ("", " "), ("\t", "\t"), (" ", "  ")]))
    post = draw(st.sampled_from([""] * 8 + [" ", "\t", " # note", f"  # note {TOKEN}", "#x", " junk", "\\"]))
    return f"{pre}{key}{around[0]}={around[1]}{value}{post}"


line = st.one_of(
    assignment(), assignment(), assignment(), assignment(),
    st.sampled_from(["", "   ", "\t", "# comment", "  # indented", "# ends with \\", "; semicolon", "#\u00e9",
                     "K_A", "export", "DB_PORT: 5432"]),
    st.builds(lambda n, q: f"K_LONG={q}{'x' * n}{TOKEN}{q}", st.integers(8000, 8300), st.sampled_from(["", "'"])),
    st.builds(lambda v: f"# {v}", values(WILD, 5)),
)


@st.composite
def env_file(draw):
    """The text of a file: GOOD around a few generated lines."""
    lines = list(GOOD)
    for extra in draw(st.lists(line, min_size=1, max_size=5)):
        lines.insert(draw(st.integers(0, len(lines))), extra)
    eol = draw(st.sampled_from(["\n"] * 12 + ["\r\n"]))
    text = draw(st.sampled_from(["", "\ufeff"] if draw(st.integers(0, 30)) == 0 else [""]))
    return text + eol.join(lines) + draw(st.sampled_from([eol, ""]))


def generate_cases(count: int) -> list[tuple[bytes, str]]:
    """(file bytes, its secret token), at least 2,000 distinct files."""
    cases: list[str] = []

    @settings(max_examples=count, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(env_file())
    def collect(case):
        cases.append(case)

    collect()
    unique = list(dict.fromkeys(cases))
    assert len(unique) >= 2000, f"only {len(unique)} distinct cases"
    tokens = [f"Tk{i:04d}x{hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"
              for i, text in enumerate(unique)]
    return [(text.replace(TOKEN, token).encode("utf-8", "surrogateescape"), token)
            for text, token in zip(unique, tokens)]


# --- the readers ---------------------------------------------------------------


def validator_accepts(path: Path) -> tuple[bool, str]:
    done = subprocess.run(["/bin/sh", str(VALIDATOR), str(path)], capture_output=True, timeout=60,
                          env={"PATH": PATH})
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode == 0, done.stdout.decode("utf-8", "replace")


def dotenv_reads(path: Path) -> dict[str, str | None] | None:
    """None: python-dotenv cannot read the file (not UTF-8)."""
    from dotenv import dotenv_values  # as cloudbuilder.config.read_env_file calls it

    try:
        return dict(dotenv_values(path, interpolate=False))
    except UnicodeDecodeError:
        return None


def compose_reads(workdir: Path, names: list[str]) -> dict[str, dict[str, str]]:
    """`docker compose config` of one service per file; values as the container gets them."""
    lines = ["name: oscb-env-differential", "services:"]
    for name in names:
        lines += [f"  {name}:", "    image: oscb-never-pulled:none", f"    env_file: cases/{name}.env"]
    (workdir / "compose.yaml").write_text("\n".join(lines) + "\n")
    done = subprocess.run(["docker", "compose", "-f", str(workdir / "compose.yaml"), "config", "--format", "json"],
                          cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={"PATH": os.environ["PATH"], "HOME": str(workdir)})
    assert done.returncode == 0, f"docker compose refused an accepted file:\n{done.stderr[-3000:]}"
    services = json.loads(done.stdout)["services"]
    # `config` writes '$' as '$$' so that its output can be read again; the
    # container gets one '$'.
    return {name: {k: (v or "").replace("$$", "$") for k, v in (services[name].get("environment") or {}).items()}
            for name in names}


UNIT = """\
[Unit]
Description=env-file differential case %i
[Service]
Type=oneshot
EnvironmentFile=/var/tmp/cases/%i.env
ExecStart=/usr/bin/env -0
StandardOutput=file:/var/tmp/out/%i.env0
"""


def systemd_reads(box: BootedDebian, cases_dir: Path, names: list[str]) -> tuple[dict[str, dict[str, str] | None], str]:
    """Each file as the environment of a unit (None: systemd refused to start it), and the journal."""
    guest = box.root / "var" / "tmp"
    shutil.copytree(cases_dir, guest / "cases")
    (guest / "out").mkdir()
    (guest / "cases" / "empty.env").write_bytes(b"")
    (box.root / "etc/systemd/system/envcase@.service").write_text(UNIT)
    # Thousands of units in seconds: journald must keep every message.
    conf = box.root / "etc/systemd/journald.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "no-rate-limit.conf").write_text("[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\n")
    box.ok("systemctl restart systemd-journald && systemctl daemon-reload")
    units = " ".join(f"envcase@{name}.service" for name in ["empty", *names])
    box.ok(f"systemctl start --no-block {units}", timeout=300)
    deadline = time.monotonic() + 240
    while box.ok("systemctl list-jobs --no-legend | grep -c envcase@ || true").strip() != "0":
        assert time.monotonic() < deadline, "the case units did not finish"
        time.sleep(1)

    def env_of(name: str) -> dict[str, str] | None:
        # No output, or an empty one: systemd did not run env (the file was refused).
        out = guest / "out" / f"{name}.env0"
        if not out.exists() or not out.stat().st_size:
            return None
        text = out.read_bytes().decode("utf-8", "surrogateescape")
        return dict(item.split("=", 1) for item in text.split("\0") if item)

    base = env_of("empty")
    assert base is not None and "PATH" in base
    read = {}
    for name in names:
        env = env_of(name)
        # What systemd itself sets (PATH, INVOCATION_ID, ...) is not the file's.
        read[name] = None if env is None else {k: v for k, v in env.items() if k not in base}
    journal = box.ok("journalctl --no-pager -o cat", timeout=120)
    return read, journal


# --- the test --------------------------------------------------------------------


@pytest.fixture
def box(tmp_path):
    tarball = booted_rootfs_tarball()
    machine = BootedDebian(tarball, tmp_path / "box" / "rootfs", f"oscb-envdiff-{uuid.uuid4().hex[:8]}")
    try:
        machine.boot()
        yield machine
    finally:
        machine.close()


def test_accepted_files_read_the_same_everywhere(tmp_path, box):
    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
        pytest.skip("docker compose v2 is not installed")
    started = time.monotonic()
    cases = generate_cases(CASES)
    cases_dir = tmp_path / "cases"
    cases_dir.mkdir()
    names = [f"c{i:04d}" for i in range(len(cases))]
    for name, (content, _) in zip(names, cases):
        (cases_dir / f"{name}.env").write_bytes(content)
    tokens = {name: token for name, (_, token) in zip(names, cases)}
    # The shipped template (it fails validation only for its CHANGE_ME values)
    # must be read alike too.
    shutil.copyfile(ROOT / "common" / ".env.example", cases_dir / "example.env")

    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = dict(zip(names, pool.map(lambda n: validator_accepts(cases_dir / f"{n}.env"), names)))
    accepted = [n for n in names if verdicts[n][0]]
    for name in names:  # the validator never shows a value
        assert tokens[name] not in verdicts[name][1], name

    by_systemd, journal = systemd_reads(box, cases_dir, [*names, "example"])
    by_compose = compose_reads(tmp_path, [*accepted, "example"])
    example = dotenv_reads(cases_dir / "example.env")
    assert example and "CHANGE_ME" in example["DB_PASSWORD"]
    assert example == by_compose["example"] == by_systemd["example"]

    def show(value) -> str:
        text = repr(value)
        return text if len(text) < 400 else text[:200] + " ... " + text[-150:]

    problems = []
    for name in accepted:
        text = (cases_dir / f"{name}.env").read_bytes().decode("utf-8", "replace")
        dotenv = dotenv_reads(cases_dir / f"{name}.env")
        if by_systemd[name] is None:
            problems.append(f"{name}: systemd refused the file\n{show(text)}")
        elif not (dotenv == by_compose[name] == by_systemd[name]):
            problems.append(f"{name}: the readers disagree\n{show(text)}\n  python-dotenv: {show(dotenv)}\n"
                            f"  compose:       {show(by_compose[name])}\n  systemd:       {show(by_systemd[name])}")
        if tokens[name] in journal:
            problems.append(f"{name}: its secret reached the journal\n{show(text)}")
    assert not problems, f"{len(problems)} of {len(accepted)} accepted files:\n\n" + "\n\n".join(problems[:10])

    # The test can see what it guards against: refused files do disagree, and
    # systemd does log the secret of an `export` line.
    refused = [n for n in names if not verdicts[n][0]]
    leaked = [n for n in refused if tokens[n] in journal]
    assert leaked, "no refused file leaked into the journal: is the journal read at all?"
    assert any(b"export" in (cases_dir / f"{n}.env").read_bytes() for n in leaked)
    disagree = [n for n in refused if by_systemd[n] is None
                or by_systemd[n] != dotenv_reads(cases_dir / f"{n}.env")]
    assert disagree
    elapsed = time.monotonic() - started
    print(f"\n{len(names)} generated files: {len(accepted)} accepted (all read alike), {len(refused)} refused "
          f"({len(disagree)} of them read differently by systemd and python-dotenv), "
          f"{len(leaked)} refused files put their secret into the journal; {elapsed:.0f}s")
