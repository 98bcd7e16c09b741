"""The stages of the pipeline, one module each (the order and the orchestrator: ``cloudbuilder.pipeline``).

    binary -> dist.docker, dist.native -> docker.image -> deploy -> package -> release

Each module holds one stage's object (``plan`` and ``run``, ``precheck``,
``needs_engine``); the work it runs lives in the module it names
(``cloudbuilder.binary``, ``assemble``, ``dockerimage``, ``deploy``,
``packaging.build``, ``release``).  ``base`` is what they share: the context,
the plan type, the protocol, and the manifest look-up of the binary.  A stage
imports ``base`` and its work module, never another stage: they hand off
through the workspace's manifest (tests/unit/test_architecture.py checks it).
"""
