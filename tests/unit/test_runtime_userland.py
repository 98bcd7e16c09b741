"""Every command the image's scripts call exists in the runtime image.

The runtime image is FROM scratch with Debian's busybox-static: only the
applets docker/Dockerfile.j2 links in /bin (and /bin/printenv, docker/printenv.sh)
are there. A script that calls anything else (a coreutils-only command, an
applet busybox-static lacks, like printenv once did) works on the host and in
the unit tests and fails in the image with "not found". This test reads the
scripts the image runs, finds the words in command position, and names any
that is neither a shell builtin, a function of the script, nor in the image.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile.j2"
# The scripts the image runs: its entry point, the validator, the stand-in binary's stub, the state and server helpers.
SCRIPTS = [ROOT / "docker" / "entrypoint.sh", ROOT / "common" / "helpers" / "validate-env.sh",
           ROOT / "docker" / "printenv.sh", ROOT / "builder" / "standin" / "frankenphp-stub.sh",
           ROOT / "common" / "helpers" / "app-state.sh.j2", ROOT / "common" / "helpers" / "server-env.sh.j2"]
# busybox ash's builtins and the shell's reserved words.
BUILTINS = frozenset(
    ". : [ [[ alias bg break cd chdir command continue echo eval exec exit export false fg getopts hash "
    "help history jobs kill let local printf pwd read readonly return set shift source test times trap "
    "true type ulimit umask unalias unset wait "
    "if then else elif fi case esac for while until do done in { } !".split())
# Common commands that Debian's busybox-static 1.35 does not have (`busybox --list` in bookworm).
BUSYBOX_STATIC_LACKS = frozenset({"printenv", "getent", "flock", "install", "numfmt", "runuser"})


def image_commands() -> set[str]:
    m = re.search(r"applets='([^']+)'", DOCKERFILE.read_text())
    assert m, f"{DOCKERFILE}: no applets='...' list"
    return set(m.group(1).split()) | {"busybox", "printenv"}


def _after_closing(text: str, i: int, pair: str, level: int) -> int:
    """The index after the ``level``-th unmatched closing ``pair[1]`` from ``i``."""
    while level:
        level += {pair[0]: 1, pair[1]: -1}.get(text[i], 0)
        i += 1
    return i


def _code(text: str, i: int = 0, nested: bool = False) -> tuple[str, int]:
    """The text with the data taken out: quoted strings (but not the $(...) in double quotes),
    ${...} expansions, comments and heredoc bodies. Returns (code, index after it)."""
    out: list[str] = []
    heredocs: list[str] = []
    depth = 0
    while i < len(text):
        c, two = text[i], text[i:i + 2]
        if c == "\\":
            out.append(" " if text[i + 1] == "\n" else text[i:i + 2])  # a continued line goes on
            i += 2
        elif text.startswith("$((", i):  # arithmetic: no commands
            i = _after_closing(text, i + 3, "()", 2)
            out.append("0")
        elif c == "'":
            i = text.index("'", i + 1) + 1
            out.append("''")
        elif c == '"':
            i += 1
            out.append('""')
            while text[i] != '"':
                if text[i] == "\\":
                    i += 2
                elif text.startswith("$(", i):
                    inner, i = _code(text, i + 2, nested=True)
                    out.append(f";{inner};")
                else:
                    i += 1
            i += 1
        elif two == "${":
            i = _after_closing(text, i + 2, "{}", 1)
            out.append("x")
        elif two == "$(":
            inner, i = _code(text, i + 2, nested=True)
            out.append(f";{inner};")
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n;"):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif two == "<<":
            m = re.match(r"<<-?\s*['\"]?(\w+)['\"]?", text[i:])
            heredocs.append(m.group(1))
            out.append(" ")
            i += m.end()
        elif c == "\n" and heredocs:
            for word in heredocs:
                m = re.compile(rf"^\s*{word}$", re.M).search(text, i + 1)
                i = m.end()
            heredocs = []
            out.append("\n")
        elif nested and c == "(":
            depth += 1
            out.append(c)
            i += 1
        elif nested and c == ")":
            if depth == 0:
                return "".join(out), i + 1
            depth -= 1
            out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), i


def command_words(text: str) -> set[str]:
    """Words in command position: a heuristic for our own, simply written scripts."""
    code, _ = _code(text)
    # case patterns: "  pat | pat)" at the start of a line
    code = re.sub(r"(?m)^\s*\(?[^\s()=;]+(?:\s*\|\s*[^\s()=;]+)*\)", " ", code)
    words = set()
    for segment in re.split(r"[\n;&|()`]|\b(?:then|do|else|elif|if|while|until)\s|!\s", code):
        segment = segment.strip().lstrip("{").strip()
        segment = re.sub(r"^exec\s+", "", segment)  # exec CMD runs CMD
        # leading assignments, then the command
        while (m := re.match(r"[A-Za-z_][A-Za-z0-9_]*=\S*\s*", segment)):
            segment = segment[m.end():]
        m = re.match(r"[A-Za-z_\[.:][\w.\[-]*", segment)
        if m:
            words.add(m.group(0))
    return words


def script_text(path: Path) -> str:
    """The script as the shell sees it: a template's jinja2 expressions stand for one word."""
    text = path.read_text()
    if path.suffix == ".j2":
        text = re.sub(r"\{\{.*?\}\}", "VALUE", text)
        text = re.sub(r"\{%.*?%\}", "", text)
    return text


def functions(text: str) -> set[str]:
    return set(re.findall(r"(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)", text))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_command_a_script_calls_is_in_the_image(script):
    text = script_text(script)
    words = command_words(text) - BUILTINS - functions(text)
    missing = sorted(words - image_commands())
    assert missing == [], (
        f"{script.relative_to(ROOT)} calls {missing}, which the runtime image does not have: add busybox "
        f"applets to applets='...' in docker/Dockerfile.j2 (Debian's busybox-static has no printenv, getent, "
        f"flock, install), or do it with the applets there")


def test_the_heuristic_finds_the_commands_it_should():
    text = ('x=$(id -u) y=1 tr a b <f | sort -n\nif grep -q x f; then exec "$BIN" run; fi\n'
            'case $1 in\n  a | b) wc -c ;;\n  *) here=. ;;\nesac\nf() { mktemp -d; }\n'
            "awk 'BEGIN { print ENVIRON[\"X\"] }'\ncat <<EOF\nnot a command\nEOF\n")
    assert command_words(text) - BUILTINS == {"id", "tr", "sort", "grep", "wc", "f", "mktemp", "awk", "cat"}
    assert functions(text) == {"f"}


def test_the_scripts_use_what_the_image_needs_and_nothing_it_lacks():
    used = set().union(*(command_words(script_text(p)) for p in SCRIPTS)) - BUILTINS
    # what the image must have for today's scripts (the stub's tar and gzip, the validator's tr/wc/sort)
    assert {"tar", "gzip", "tail", "sha256sum", "mktemp", "tr", "wc", "sort", "printenv", "awk", "id"} <= used
    assert not used & BUSYBOX_STATIC_LACKS - {"printenv"}


# `test -w DIR` / `test -r FILE` in busybox's shell read the mode bits only: a
# directory on a read-only mount "is writable", and the script fails later with
# a message that does not say why. Whether a directory takes a write is asked
# with a real write (mktemp -d; rmdir), as entrypoint.sh's writable() does.
WRITABLE_TEST = re.compile(r"(?:\[|\btest)\s+(?:!\s+)?-w\s")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_script_asks_the_mode_bits_whether_a_directory_is_writable(script):
    code, _ = _code(script_text(script))
    hits = [line.strip() for line in code.splitlines() if WRITABLE_TEST.search(line)]
    assert hits == [], (f"{script.relative_to(ROOT)} uses test -w, which busybox answers from the mode bits "
                        f"(a read-only mount passes): probe with a real write instead: {hits}")


def test_the_writable_check_finds_test_w():
    assert WRITABLE_TEST.search('[ -d "$d" ] && [ -w "$d" ]')
    assert WRITABLE_TEST.search('if test ! -w "$d"; then')
    assert not WRITABLE_TEST.search('[ -d "$d" ] && writable "$d"')
