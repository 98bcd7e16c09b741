"""invoke entry point: the tasks live in the cloudbuilder package."""

from cloudbuilder.tasks import ns  # noqa: F401
