"""The task namespace: one module per collection, wired here."""

from __future__ import annotations

from invoke import Collection

from ..config import defaults_tree
from . import build_tasks, check, clean, demo_tasks, deploy_tasks, dist, docker_tasks, package, release_tasks

ns = Collection()
ns.add_task(build_tasks.build)
ns.add_task(check.check)
ns.add_task(clean.clean)
ns.add_task(deploy_tasks.deploy)
ns.add_task(demo_tasks.demo)
ns.add_task(release_tasks.release)
ns.add_collection(Collection.from_module(dist, name="dist"))
ns.add_collection(Collection.from_module(docker_tasks, name="docker"))
ns.add_collection(Collection.from_module(package, name="package"))
ns.configure({"cloudbuilder": defaults_tree()})
