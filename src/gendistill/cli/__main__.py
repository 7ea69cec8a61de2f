"""`python -m gendistill.cli ...` (and `accelerate launch -m gendistill.cli ...`)."""

from gendistill.cli import app

app()
