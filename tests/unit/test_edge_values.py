"""Valid but unusual settings render every generated file.

The config refuses what no file can carry; what it accepts must then render
everywhere: the template guard (cloudbuilder/escape.py) turns an unfiltered
value outside the plain charset into an error, so a template that forgot a
filter breaks here for the first accepted value that needs one (an IPv6
listen address broke the native docs and the nginx example this way).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cloudbuilder.assemble import FLAVORS, assemble_tree
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.packaging.spec import build_spec, read_app_license

# One row per setting kind whose valid values go beyond [A-Za-z0-9._/:-].
EDGE_VALUES = {
    "ipv6 listen": {"service.listen": "[::1]:8081"},
    "ipv6 wildcard listen": {"service.listen": "[::]:8081"},
    "port-only listen": {"service.listen": ":8082"},
    "ipv6 bind address": {"docker.bind_address": "::1"},
    "ipv6 wildcard bind": {"docker.bind_address": "::"},
    "version with tilde": {"version": "4.1.0~rc1"},
    "version with plus": {"version": "4.1.0+git.3"},
    "release with tilde": {"package.release": "1~bpo12+1"},
    "timespan with spaces": {"service.recurring_interval": "1h 30min"},
    "vendor with dollar and percent": {"package.vendor": "Acme $HOME 100% & Co's"},
    "maintainer with accents": {"package.maintainer": "Zoë O'Brien <zoe@example.org>"},
    "deb relations": {"package.deb_depends": "systemd (>= 247), adduser | passwd"},
    "paths with plus": {"paths.state_dir": "/var/lib/orange-scrum_4", "paths.cache_dir": "/var/cache/o.s",
                        "paths.binary": "/opt/os/bin/osv4+x"},
    "nested webroot": {"app_webroot": "public/web-root_1"},
}


@pytest.mark.parametrize("values", EDGE_VALUES.values(), ids=EDGE_VALUES.keys())
def test_valid_edge_values_render_every_file(tmp_path, values):
    binary = tmp_path / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\necho fake frankenphp\n" + os.urandom(64))
    binary.chmod(0o755)
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    trees = {flavor: assemble_tree(cfg, flavor, binary).path for flavor in FLAVORS}
    spec = build_spec(cfg, trees["native"], read_app_license(cfg))
    scripts = [s for fmt in spec.scripts.values() for s in vars(fmt).values() if s is not None]
    assert scripts
    for script in scripts:
        text = script.data.decode() if hasattr(script, "data") else str(script)
        if text.startswith("#!/bin/sh"):
            done = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    shells = [p for tree in trees.values() for p in tree.rglob("*.sh")]
    for script in shells:
        done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"


@pytest.mark.parametrize(("version", "tag"), [("4.1.0", "4.1.0"), ("4.1.0~rc1", "4.1.0-rc1"),
                                              ("4.1.0+git.3", "4.1.0_git.3"), ("4.1.0~rc1+b2", "4.1.0-rc1_b2")])
def test_a_deb_rpm_version_becomes_a_valid_docker_tag(tmp_path, version, tag):
    """`~` and `+` are valid in deb/rpm versions, never in a Docker tag: image and compose file agree on the tag."""
    import re

    import yaml

    from cloudbuilder.dockerimage import plan_runtime_image

    binary = tmp_path / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\n")
    binary.chmod(0o755)
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": version,
                           "source_date_epoch": "1700000000"})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    compose = yaml.safe_load((assemble_tree(cfg, "docker", binary).path / "docker-compose.yaml").read_text())
    images = {svc["image"] for svc in compose["services"].values() if "image" in svc and "orangescrum/" in svc["image"]}
    assert images == {f"orangescrum/orangescrum:{tag}"}
    plan = plan_runtime_image(cfg, "rev")
    assert plan.tags == (tag, "latest")
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", plan.tags[0])
    assert plan.buildargs["VERSION"] == version  # the OCI label keeps the real version
