"""OrangeScrum Cloud Builder: FrankenPHP binaries, Docker and native deployments, OS packages."""

__version__ = "0.1.0"
