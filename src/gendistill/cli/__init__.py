"""The `gendistill` command: a thin layer over the Python API. `app` is built in cli/app.py; each command module
below registers its commands on it when imported."""

from gendistill.cli import deploy, hub, predict, run  # noqa: F401 - registers the commands
from gendistill.cli.app import app

__all__ = ["app"]
