"""What every task shares: resolving the config once, turning errors into exits."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from ..config import BuildConfig, Layer, layers_from, resolve
from ..errors import CloudBuilderError
from ..log import configure_cli_logging

SECTION = "cloudbuilder"

# --help text of the flags several tasks share.
HELP = {
    "app": "PHP application source (default ../apps/orangescrum-v4)",
    "binary": "prebuilt FrankenPHP binary to package (skips the Docker build)",
    "version": "release version, deb/rpm-valid (default: the app's composer.json version)",
    "env_file": "deployment env file: validated; its OSCB_* keys configure the build",
}


def invoke_values(c: Context) -> dict[str, Any]:
    section = c.config.get(SECTION) or {}

    def plain(node: Any) -> Any:
        if hasattr(node, "items"):
            return {k: plain(v) for k, v in node.items()}
        return node

    return plain(section)


def load_config(c: Context, base_layer: Layer | None = None, **flags: Any) -> BuildConfig:
    """Resolve the config once for this task run (flags that were not given are None/False).

    ``base_layer`` sits just above the defaults (``invoke demo`` uses it).
    """
    configure_cli_logging()
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    layers = layers_from(invoke_values(c), None, os.environ, given)
    if base_layer is not None:
        layers.insert(0, base_layer)
    return resolve(layers, cwd=Path.cwd(), environ=os.environ)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a CloudBuilderError as its message and exit with its code (no traceback)."""
    try:
        yield
    except CloudBuilderError as exc:
        raise Exit(f"error: {exc}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("interrupted; outputs in dist/ are unchanged or complete", code=130) from None
