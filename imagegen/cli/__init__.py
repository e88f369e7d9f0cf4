"""The imagegen command line: parse, call a stage, print. No stage logic lives here.

app.py holds the Typer app and the error wrapper; options.py the options several commands share; one
module per group of commands (profile, image, test, store, cache). A command imports what it uses
when it runs, so that `imagegen --help` and a no-op build start in a fraction of a second.
"""

from imagegen.cli.app import app

__all__ = ["app"]
