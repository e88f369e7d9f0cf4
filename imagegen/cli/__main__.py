"""`python -m imagegen.cli`: the same command line as `imagegen`."""

from imagegen.cli.app import app

app(prog_name="imagegen")
