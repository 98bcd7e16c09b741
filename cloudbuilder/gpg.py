"""The one adapter for GnuPG (gpg itself, and rpmsign signing with it).

Signing always names the key (``--local-user <fingerprint>``) and may use its
own GnuPG home (setting ``release.gnupghome``).  Key material is never printed:
only fingerprints appear in messages.  A passphrase, when the key has one, is
handed to gpg through a private file (mode 0600) that is removed afterwards;
it never appears on a command line or in a log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import runner
from .errors import BuildError, PrerequisiteError


def run_tool(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
) -> runner.Completed:
    """The release tools' call of the runner: output captured as text, ``check`` by default.

    A missing program is a ``PrerequisiteError`` naming the package to install;
    a failure (with ``check``) is a ``BuildError`` with the last lines of output.
    """
    return runner.run(argv, what=what, env=env, cwd=cwd, timeout=timeout, check=check, tail_lines=12)


# What gpg says when the key is locked and nothing can ask for the passphrase.
_LOCKED = ("Inappropriate ioctl for device", "No pinentry", "Bad passphrase", "No passphrase given",
           "problem with the agent")


def explain_signing_failure(exc: BuildError) -> BuildError:
    """Add the fix to a signing failure caused by a locked key (gpg's own words are cryptic)."""
    if any(marker in str(exc) for marker in _LOCKED):
        return BuildError(f"{exc}\nThe signing key is protected by a passphrase that was not given (or is wrong): "
                          "set the environment variable GPG_PASSPHRASE")
    return exc


@dataclass(frozen=True)
class Signature:
    """What ``gpg --verify`` said about one signature."""

    valid: bool
    fingerprint: str | None  # of the primary key that made it (VALIDSIG's last field)
    detail: str  # one line for a report: why it is not valid


def _status_lines(text: str) -> list[list[str]]:
    return [line.split()[1:] for line in text.splitlines() if line.startswith("[GNUPG:] ")]


def parse_verify_status(status: str) -> Signature:
    """Interpret gpg's ``--status-fd`` output of a ``--verify`` (pure; tested on samples)."""
    rows = [row for row in _status_lines(status) if row]
    kinds = {row[0] for row in rows}
    for bad, why in (("REVKEYSIG", "made by a revoked key"), ("EXPKEYSIG", "made by an expired key"),
                     ("EXPSIG", "expired")):
        if bad in kinds:
            return Signature(False, None, f"signature {why}")
    for row in rows:
        if row[0] == "VALIDSIG" and len(row) >= 2:
            # VALIDSIG <fpr> <date> <ts> <expire> <ver> <reserved> <pk-algo> <hash-algo> <class> <primary-fpr>
            primary = row[10] if len(row) >= 11 else row[1]
            return Signature(True, primary.upper(), "good signature")
    for row in rows:
        if row[0] == "BADSIG":
            return Signature(False, None, "BAD signature (the file or the signature was changed)")
        if row[0] == "ERRSIG":
            # ERRSIG <keyid> <pk-algo> <hash-algo> <class> <time> <rc> [<fpr>]; rc 9: no public key
            key = row[1] if len(row) > 1 else "?"
            reason = "no public key for it in the keyring" if len(row) > 6 and row[6] == "9" else "cannot be checked"
            return Signature(False, None, f"signature by key {key}: {reason}")
        if row[0] == "NODATA":
            return Signature(False, None, "no signature found")
    return Signature(False, None, "not a valid signature")


@dataclass(frozen=True)
class Gpg:
    """GnuPG with one home directory; ``key`` is needed for signing only."""

    homedir: Path | None = None
    key: str | None = None
    passphrase: str | None = field(default=None, repr=False)

    # -- plumbing -----------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment gpg (and rpmsign, which calls gpg) runs with."""
        env = dict(os.environ)
        if self.homedir is not None:
            env["GNUPGHOME"] = str(self.homedir)
        env["LC_ALL"] = "C"
        return env

    def _base(self) -> list[str]:
        argv = ["gpg", "--batch", "--yes", "--no-tty", "--no-auto-key-retrieve"]
        if self.homedir is not None:
            argv += ["--homedir", str(self.homedir)]
        return argv

    def _run(self, args: Sequence[str], what: str, check: bool = True) -> runner.Completed:
        return run_tool([*self._base(), *args], what=what, env=self.env(), check=check, timeout=300)

    @contextlib.contextmanager
    def _passphrase_args(self) -> Iterator[list[str]]:
        if not self.passphrase:
            yield []
            return
        private = Path(tempfile.mkdtemp(prefix="oscb-gpg-"))
        try:
            file = private / "passphrase"
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.passphrase)
            yield ["--pinentry-mode", "loopback", "--passphrase-file", str(file)]
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def _where(self) -> str:
        return str(self.homedir) if self.homedir else "the default GnuPG home ($GNUPGHOME or ~/.gnupg)"

    # -- keys -----------------------------------------------------------------

    def signing_fingerprint(self) -> str:
        """The fingerprint of ``key``'s primary key; fails unless exactly one secret key matches."""
        if not self.key:
            raise PrerequisiteError("no signing key given; pass --sign KEY or set release.sign_key")
        done = self._run(["--with-colons", "--list-secret-keys", "--", self.key], "gpg --list-secret-keys",
                         check=False)
        fprs: list[str] = []
        expect_fpr = False
        for line in done.stdout.splitlines():
            fields = line.split(":")
            if fields[0] == "sec":
                expect_fpr = True
            elif fields[0] == "fpr" and expect_fpr:
                fprs.append(fields[9].upper())
                expect_fpr = False
        if not fprs:
            raise PrerequisiteError(
                f"release.sign_key={self.key!r}: no secret key matches it in {self._where()}; "
                "import the key (gpg --import) or set release.gnupghome to the home that has it"
            )
        if len(fprs) > 1:
            raise PrerequisiteError(
                f"release.sign_key={self.key!r} matches {len(fprs)} secret keys ({', '.join(fprs)}); "
                "give the full fingerprint of one of them"
            )
        return fprs[0]

    def public_fingerprint(self, key: str) -> str | None:
        done = self._run(["--with-colons", "--list-keys", "--", key], "gpg --list-keys", check=False)
        for line in done.stdout.splitlines():
            fields = line.split(":")
            if fields[0] == "fpr":
                return fields[9].upper()
        return None

    def export_public(self, dest: Path, *, armor: bool, fingerprint: str | None = None) -> None:
        """A public key (default: the signing key's) at ``dest``, minimal: no third-party signatures."""
        fpr = fingerprint or self.signing_fingerprint()
        args = ["--export-options", "export-minimal", "--output", str(dest), "--export", fpr]
        self._run(["--armor", *args] if armor else args, "gpg --export")
        if not dest.is_file() or dest.stat().st_size == 0:
            raise BuildError(f"gpg --export {fpr} wrote nothing to {dest}")

    # -- signing --------------------------------------------------------------

    def _sign(self, mode: str, src: Path, dest: Path) -> None:
        fpr = self.signing_fingerprint()
        with self._passphrase_args() as secret:
            try:
                self._run([*secret, "--local-user", fpr, "--digest-algo", "SHA512", "--armor",
                           "--output", str(dest), mode, str(src)], f"gpg {mode} {src.name}")
            except BuildError as exc:
                raise explain_signing_failure(exc) from None

    def detach_sign(self, src: Path, dest: Path) -> None:
        """An ASCII-armored detached signature of ``src`` at ``dest``."""
        self._sign("--detach-sign", src, dest)

    def clearsign(self, src: Path, dest: Path) -> None:
        """``src`` wrapped in a cleartext signature at ``dest`` (apt's InRelease)."""
        self._sign("--clearsign", src, dest)

    @contextlib.contextmanager
    def rpmsign_macros(self) -> Iterator[list[str]]:
        """``--define`` arguments that make rpmsign use this home, key and passphrase."""
        fpr = self.signing_fingerprint()
        with self._passphrase_args() as secret:
            extra = " ".join(["--batch", "--no-tty", *secret])
            defines = ["--define", f"_gpg_name {fpr}", "--define", f"_gpg_sign_cmd_extra_args {extra}"]
            if self.homedir is not None:
                defines += ["--define", f"_gpg_path {self.homedir}"]
            yield defines

    def sign_rpm(self, path: Path) -> None:
        """Add a signature header to ``path`` in place (rpmsign, with this home, key and passphrase)."""
        gpg_program = runner.which("gpg") or "gpg"
        with self.rpmsign_macros() as macros:
            try:
                run_tool(["rpmsign", "--addsign", "--define", f"__gpg {gpg_program}", *macros, str(path)],
                         what=f"rpmsign {path.name}", env=self.env())
            except BuildError as exc:
                raise explain_signing_failure(exc) from None

    # -- verifying -------------------------------------------------------------

    def verify(self, signature: Path, data: Path | None = None) -> Signature:
        """Check a detached (``data`` given) or clearsigned signature against this home's keyring."""
        argv = ["--status-fd", "1", "--verify", str(signature)]
        if data is not None:
            argv.append(str(data))
        done = self._run(argv, f"gpg --verify {signature.name}", check=False)
        return parse_verify_status(done.stdout)
