"""What every task shares: resolving the config once, turning errors into exits."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from ..config import BuildConfig, Layer, layers_from, resolve
from ..errors import CloudBuilderError
from ..log import configure_cli_logging, logger

SECTION = "cloudbuilder"

# --help text of the flags several tasks share.
HELP = {
    "app": "PHP application source (default: the last build's, else ../apps/orangescrum-v4)",
    "binary": "prebuilt FrankenPHP binary to package (skips the Docker build)",
    "version": "release version, deb/rpm-valid (default: the last build's, else the app's composer.json version)",
    "env_file": "deployment env file: validated; its OSCB_* keys configure the build",
}


def invoke_values(c: Context) -> dict[str, Any]:
    section = c.config.get(SECTION) or {}

    def plain(node: Any) -> Any:
        if hasattr(node, "items"):
            return {k: plain(v) for k, v in node.items()}
        return node

    return plain(section)


def _dist_dir(layers: list[Layer]) -> Path:
    """The dist dir the layers select (the last one that names it wins), before resolving the rest."""
    value: Any = "dist"
    for layer in layers:
        if layer.values.get("dist_dir") not in (None, ""):
            value = layer.values["dist_dir"]
    return (Path.cwd() / Path(str(value)).expanduser()).resolve()


def load_config(c: Context, base_layer: Layer | None = None, *, replay: bool = False, **flags: Any) -> BuildConfig:
    """Resolve the config once for this task run (flags that were not given are None/False).

    ``base_layer`` sits just above the defaults (``invoke demo`` uses it). With
    ``replay`` (the tasks after a build: dist.*, package.*, docker.image, deploy,
    release), what the last build was told on its command line or in its env file (dist/manifest.json)
    sits just above the defaults too: invoke.yaml, the env file, the environment
    and flags still win, and a setting changed there rebuilds what depends on it.
    """
    configure_cli_logging()
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    layers = layers_from(invoke_values(c), None, os.environ, given)
    if base_layer is not None:
        layers.insert(0, base_layer)
    if replay:
        from ..pipeline import REPLAY_SOURCE, replay_values
        from ..workspace import Workspace

        values, labels = replay_values(Workspace(_dist_dir(layers)))
        if values:
            layers.insert(0, Layer(REPLAY_SOURCE, values, labels))
    cfg = resolve(layers, cwd=Path.cwd(), environ=os.environ)
    if replay:
        _say_replayed(cfg)
    return cfg


def _say_replayed(cfg: BuildConfig) -> None:
    from ..config import value_of
    from ..pipeline import REPLAY_SOURCE

    used = {k: value_of(cfg, k) for k, src in cfg.sources.items() if src.startswith(REPLAY_SOURCE)}
    if used:
        version = "" if "version" in used else f" (version {cfg.version} from {cfg.source_of('version')})"
        logger.info("==> using the settings of the last build (dist/manifest.json): %s%s", _shown(used), version)


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a CloudBuilderError as its message and exit with its code (no traceback)."""
    try:
        yield
    except CloudBuilderError as exc:
        raise Exit(f"error: {exc}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("interrupted; outputs in dist/ are unchanged or complete", code=130) from None
