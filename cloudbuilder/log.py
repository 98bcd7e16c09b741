"""One logger for the whole core; the CLI decides where it goes.

The core never prints.  It logs through ``logger`` and marks long work with
``step()``, which logs the start, the end and the elapsed time.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

logger = logging.getLogger("cloudbuilder")


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Log ``==> title`` now and ``    done in N.Ns`` (or ``failed``) at the end."""
    logger.info("==> %s", title)
    started = time.monotonic()
    try:
        yield
    except BaseException:
        logger.info("    %s: failed after %.1fs", title, time.monotonic() - started)
        raise
    logger.info("    done in %.1fs", time.monotonic() - started)


def configure_cli_logging(verbose: bool = False) -> None:
    """Send the core's log to stderr, once per process (idempotent)."""
    if getattr(logger, "_cli_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logger._cli_configured = True  # type: ignore[attr-defined]
