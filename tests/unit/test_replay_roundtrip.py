"""Every setting a build records (dist/manifest.json: `given` and the artifacts' settings) reads back
to the same value when a later task replays it: the recorded form (lists for tuples, strings for
paths) must be one the setting's parser accepts. `invoke package.all` after `invoke demo` once
failed on app.migrate_command=[] (the demo turns the step off)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudbuilder.config import SETTINGS, AppFacts, Layer, recorded_settings, resolve, value_of

ROOT = Path(__file__).resolve().parents[2]
BASE = {"app": str(ROOT / "examples" / "orangescrum-demo"), "version": "4.0.0", "source_date_epoch": "1700000000"}
# Values that parse to the empty or a several-item form of their kind.
EDGES = {"app.migrate_command": "", "swarm.secrets": "", "builder.xcaddy_modules": "",
         "builder.php_extension_libs": "", "app.state_paths": "webroot/files/,config/app_local.php"}


def _cfg(tmp_path: Path, values: dict):
    return resolve([Layer("flag", {**BASE, "dist_dir": str(tmp_path / "dist"), **values})], cwd=tmp_path,
                   environ={}, probe=lambda _a: AppFacts(None, "default", None))


@pytest.mark.unit
@pytest.mark.parametrize("values", [{}, EDGES], ids=["defaults", "edges"])
def test_every_recorded_setting_replays_to_the_same_value(tmp_path, values):
    first = _cfg(tmp_path, values)
    recorded = json.loads(json.dumps(recorded_settings(first)))  # through JSON, as the manifest keeps it
    replayed = _cfg(tmp_path, recorded)
    for s in SETTINGS:
        if s.scope == "setting":
            assert value_of(replayed, s.key) == value_of(first, s.key), s.key
