"""Settings as text for each syntax a generated file is written in.

Every value that reaches a generated file goes through one function here (the
jinja2 helper of ``assemble`` registers them as filters of the same name):

==============  ===========================================================
``sh``          one POSIX shell word (always single-quoted)
``heredoc(D)``  the body of a quoted here-document ending at line ``D``
``systemd``     the value of a unit-file setting (``Description=``, ``OnUnitActiveSec=``)
``exec_arg``    one argument of an ``Exec*=`` command line
``path``        an installed absolute path, safe unquoted in every syntax here
``below(P)``    the part of such a path below ``P`` (``StateDirectory=``)
``yaml``        a YAML double-quoted scalar
``compose``     a YAML scalar in a Compose file (``$`` is Compose interpolation)
``dockerfile``  the value of a Dockerfile ``ARG``/``ENV``
``control``     a one-line deb822 / rpm header field value
``text``        prose: a Markdown line, a comment
``rpmlint_re``  a literal inside an rpmlintrc ``addFilter("...")`` regex
``caddy``       one Caddyfile token (inside a double-quoted token, too)
==============  ===========================================================

A filter either returns ``Escaped`` text (a ``str`` that says it was made for
its syntax) or raises ``EscapeError`` naming what cannot be carried.  The
config refuses such values when the settings are read (``config.py``); the
filters are the second line, and ``guard`` (jinja2 ``finalize``) the third:
an interpolation that went through no filter is accepted only when it matches
``SAFE``, a charset that means the same in every syntax above.

``nfpm_field`` is for the packager's YAML (not a template): nfpm expands
``$VAR`` from its environment in some fields.  ``rpm_spec_text`` is for what
fpm writes into an rpm spec file: rpmbuild expands ``%`` macros in it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from .errors import BuildError


class Escaped(str):
    """Text escaped for the syntax of the file it is written into."""

    __slots__ = ()


class EscapeError(BuildError):
    """A value that the target syntax cannot carry."""


class UnescapedValue(BuildError):
    """An interpolation that went through no escaping filter and is not plainly safe."""

    def __init__(self, value: str, template: str | None) -> None:
        super().__init__(f"unescaped value {value!r}")
        self.value = value
        self.template = template


# Plain words that mean themselves in a shell, a unit file, YAML, a Dockerfile,
# a control file and Markdown: no space, quote, `$`, `%`, `\`, `#`, `;`, `,`,
# `=`, `*`, brackets or braces; not starting with an option dash or a
# systemd/YAML prefix character (`-`, `+`, `@`, `!`).
SAFE = re.compile(r"[A-Za-z0-9_./:][A-Za-z0-9_./:@+~-]*")
# One component of an installed path: what every syntax here reads unquoted.
PATH_COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9._+-]*"
ABS_PATH = re.compile(rf"(?:/{PATH_COMPONENT})+")
REL_PATH = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*")


def control_chars(text: str, *, allow: str = "") -> list[str]:
    """The characters of ``text`` that no one-line setting may hold, as U+XXXX.

    Control characters (newline, CR, NUL, ESC, DEL, C1), line and paragraph
    separators, format characters (bidi overrides, zero-width) and surrogates
    (undecodable bytes of an environment variable).
    """
    bad = []
    for ch in text:
        if ch in allow:
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = f"U+{ord(ch):04X}"
            if code not in bad:
                bad.append(code)
    return bad


def _one_line(value: Any, what: str, *, allow: str = "") -> str:
    text = str(value)
    bad = control_chars(text, allow=allow)
    if bad:
        raise EscapeError(f"{what} cannot carry {', '.join(bad)} (a control character): {text!r}")
    return text


# -- shell ---------------------------------------------------------------------


def sh(value: Any) -> Escaped:
    """One POSIX shell word: single-quoted, a ``'`` written as ``'"'"'``."""
    text = str(value)
    if "\0" in text:
        raise EscapeError(f"a shell word cannot carry NUL: {text!r}")
    return Escaped("'" + text.replace("'", "'\"'\"'") + "'")


def heredoc(value: Any, delimiter: str) -> Escaped:
    """The body of ``<<'DELIMITER'``: literal text that must not contain the delimiter line."""
    text = str(value)
    if "\0" in text or any(line == delimiter for line in text.splitlines()):
        raise EscapeError(f"a here-document ending at {delimiter} cannot carry {text!r}")
    return Escaped(text)


# -- systemd ---------------------------------------------------------------------


def systemd(value: Any) -> Escaped:
    """A unit-file setting's value: one line, ``%`` (specifiers) doubled.

    systemd strips the value's surrounding whitespace and joins a line ending
    in a backslash with the next: both are refused rather than changed.
    """
    text = _one_line(value, "a systemd setting")
    if text != text.strip() or text.endswith("\\"):
        raise EscapeError(f"a systemd setting cannot start or end with a space or end with a backslash: {text!r}")
    return Escaped(text.replace("%", "%%"))


def exec_arg(value: Any) -> Escaped:
    """One argument of an ``ExecStart=`` line (systemd.service(5), "Command lines").

    Plain words stay as they are.  Anything else is double-quoted with C
    escapes (``\\\\``, ``\\"``); ``%`` is a specifier (``%%``) and ``$`` an
    environment variable (``$$``), also inside quotes.
    """
    text = _one_line(value, "an ExecStart= argument")
    if SAFE.fullmatch(text):
        return Escaped(text)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return Escaped(f'"{quoted}"')


# -- paths -------------------------------------------------------------------------


def path(value: Any) -> Escaped:
    """An installed absolute path; only a conservative charset, so it reads the same unquoted everywhere."""
    text = str(value)
    if not ABS_PATH.fullmatch(text) or any(part in (".", "..") for part in text.split("/")):
        raise EscapeError(f"{text!r} is not a plain absolute path (letters, digits, '.', '_', '+', '-')")
    return Escaped(text)


def below(value: Any, prefix: str) -> Escaped:
    """The part of ``value`` below the directory ``prefix`` (``StateDirectory=`` takes it relative)."""
    text = path(value)
    base = prefix.rstrip("/") + "/"
    rest = text[len(base):] if text.startswith(base) else ""
    if not rest:
        raise EscapeError(f"{text!r} is not a subdirectory of {base}")
    return Escaped(rest)


# -- YAML and Compose ------------------------------------------------------------------


def yaml(value: Any) -> Escaped:
    """A YAML double-quoted scalar (YAML 1.1 and 1.2): ``\\``, ``"`` and every non-printable escaped."""
    out = []
    for ch in str(value):
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif unicodedata.category(ch)[0] in ("C", "Z") and ch != " " or ch == "\ufeff":
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return Escaped('"' + "".join(out) + '"')


def compose(value: Any) -> Escaped:
    """A scalar in a Compose file: Compose interpolates ``$VAR``, so ``$`` is written ``$$``."""
    return yaml(str(value).replace("$", "$$"))


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile(value: Any) -> Escaped:
    """The value of an ``ARG``/``ENV``: plain words as they are, else double-quoted
    with the default escape character (``\\``) before ``\\``, ``"`` and ``$``."""
    text = _one_line(value, "a Dockerfile value")
    if SAFE.fullmatch(text):
        return Escaped(text)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return Escaped(f'"{quoted}"')


# -- package metadata -----------------------------------------------------------------------


def control(value: Any) -> Escaped:
    """A one-line field of a deb822 file (control, copyright) or an rpm header."""
    text = _one_line(value, "a package control field")
    if text != text.strip() or not text:
        raise EscapeError(f"a package control field cannot be empty or start/end with a space: {text!r}")
    return Escaped(text)


def text(value: Any) -> Escaped:
    """Prose on one line (Markdown, a comment): anything printable, tabs included."""
    return Escaped(_one_line(value, "a line of text", allow="\t"))


def rpmlint_re(value: Any) -> Escaped:
    """A literal inside ``addFilter("...")``: regex metacharacters escaped, no quote."""
    raw = _one_line(value, "an rpmlint filter")
    if '"' in raw:
        raise EscapeError(f"an rpmlint filter cannot carry a double quote: {raw!r}")
    return Escaped(re.escape(raw))


# -- Caddyfile -----------------------------------------------------------------------------

# A Caddyfile token splits at white space, ends a quoted token at '"', escapes with
# '\\', and reads '{...}' as a placeholder ('{$NAME}' even inside quotes): none of
# these (but a space, which a quoted token holds) may appear.
_CADDY_BAD = re.compile(r'["\\{}#`]')


def caddy(value: Any) -> Escaped:
    """One Caddyfile token: a plain word as it is, a value with spaces double-quoted.
    Quotes, backslashes, braces (placeholders), ``#`` and backquotes are refused."""
    text = _one_line(value, "a Caddyfile token")
    if not text or text != text.strip() or _CADDY_BAD.search(text) or "\t" in text:
        raise EscapeError(f"a Caddyfile token cannot be empty, start or end with a space, or carry tabs, quotes, "
                          f"backslashes, braces, '#' or '`': {text!r}")
    return Escaped(f'"{text}"' if " " in text else text)


# nfpm runs os.Expand (Go) over some fields with its environment: "$NAME" and
# "${NAME}" are replaced, and no escape sequence yields a "$" before a name
# character ("$$" is the variable named "$"). So every "$" is written as a
# reference to a variable that the packager's environment sets to "$"
# (os.Expand does not expand what a variable yields).
NFPM_DOLLAR_VAR = "OSCB_LITERAL_DOLLAR"


def nfpm_field(value: Any) -> str:
    """A value for an nfpm.yaml field that nfpm expands (name, version, maintainer, vendor, ...)."""
    return str(value).replace("$", "${" + NFPM_DOLLAR_VAR + "}")


# fpm writes an rpm spec file from its arguments and rpmbuild expands macros in
# all of it: header fields (Vendor:, URL:, Packager:, ...), %description, the
# scriptlets and %changelog.  "%{name}" would be replaced, "%(cmd)" run by a
# shell at build time, "%{lua:...}" run by rpm.  "%%" is rpm's literal "%".


def rpm_spec_text(value: Any) -> str:
    """Text fpm puts into the rpm spec file: every ``%`` doubled, so rpmbuild writes it back as one."""
    return str(value).replace("%", "%%")


# Docker tags: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. deb/rpm versions may carry "~" and "+",
# which no tag can: "~" (sorts before) becomes "-", "+" (build metadata) "_", as Helm does.
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def docker_tag(value: Any) -> Escaped:
    """The Docker image tag of a version (``4.1.0~rc1`` -> ``4.1.0-rc1``, ``4.1.0+git.3`` -> ``4.1.0_git.3``)."""
    tag = _one_line(value, "a Docker tag").replace("~", "-").replace("+", "_")
    if not DOCKER_TAG.fullmatch(tag):
        raise EscapeError(f"{value!r} cannot be a Docker image tag: use letters, digits, '.', '_', '-', '~' and '+'")
    return Escaped(tag)


# -- the guard ---------------------------------------------------------------------------------

FILTERS = {
    "sh": sh,
    "heredoc": heredoc,
    "systemd": systemd,
    "exec_arg": exec_arg,
    "path": path,
    "below": below,
    "yaml": yaml,
    "compose": compose,
    "dockerfile": dockerfile,
    "control": control,
    "text": text,
    "rpmlint_re": rpmlint_re,
    "docker_tag": docker_tag,
    "caddy": caddy,
}


def guard(value: Any, template: str | None = None) -> Any:
    """jinja2 ``finalize``: let through escaped text, numbers and plainly safe words; refuse the rest."""
    if isinstance(value, Escaped):
        return value
    if isinstance(value, (int, float)):  # bool is an int: True/False are plain words
        return value
    if value is None:
        raise UnescapedValue("None", template)
    rendered = str(value)  # a StrictUndefined raises its UndefinedError here
    if SAFE.fullmatch(rendered):
        return value
    raise UnescapedValue(rendered, template)


__all__ = ["Escaped", "EscapeError", "FILTERS", "SAFE", "UnescapedValue", "control_chars", "guard",
           "nfpm_field", "rpm_spec_text", *FILTERS]
