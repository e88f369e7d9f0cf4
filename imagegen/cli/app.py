"""The Typer app: its commands in help panels, the error wrapper every command runs in, --version."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from imagegen import __version__
from imagegen.cli import cache, image, profile, store, test
from imagegen.cli.options import CACHE_PANEL, HOST_PANEL, IMAGE_PANEL, PROFILE_PANEL, STORE_PANEL, TEST_PANEL
from imagegen.errors import ImagegenError
from imagegen.interrupt import interrupted, signals_as_interrupt

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="imagegen",
    help="Describe a machine once in a TOML host profile; render its files, build its image with mkosi, "
    "boot it under QEMU and prove its network over QMP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def reports_errors(func: F) -> F:
    """Turn an ImagegenError into its message on stderr and its exit code, without a traceback; and
    Ctrl-C, SIGTERM or SIGHUP into one line and exit 128 + the signal's number (130, 143, 129)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # rich only once there is something to say: a no-op build prints without it.
        try:
            with signals_as_interrupt():
                return func(*args, **kwargs)
        except ImagegenError as e:
            from rich.text import Text

            err = _stderr()
            # User text (keys, values, paths) is printed as it is: never read as rich markup.
            for line in e.message.splitlines():
                err.print(Text.assemble(("error:", "bold red"), " ", line))
            if e.hint:
                err.print(Text.assemble(("hint:", "bold"), " ", e.hint))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            stopped = interrupted(e)
            # Plain text, and nothing imported while a second signal may come.
            sys.stderr.write(stopped.line(f"imagegen {func.__name__}") + "\n")
            sys.stderr.flush()
            raise typer.Exit(stopped.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        print(f"imagegen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every external command.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def _add(target: typer.Typer, name: str, func: Callable[..., Any], panel: str | None) -> None:
    target.command(name, rich_help_panel=panel)(reports_errors(func))


for _name, _func, _panel in (
    ("render", profile.render, PROFILE_PANEL),
    ("check", profile.check, PROFILE_PANEL),
    ("show", profile.show, PROFILE_PANEL),
    ("schema", profile.schema, PROFILE_PANEL),
    ("options", profile.options, PROFILE_PANEL),
    ("build", image.build, IMAGE_PANEL),
    ("test", test.test, TEST_PANEL),
    ("vm", test.vm, TEST_PANEL),
    ("history", store.history, STORE_PANEL),
    ("diff", store.diff, STORE_PANEL),
    ("gc", store.gc, STORE_PANEL),
    ("push", cache.push, CACHE_PANEL),
    ("setup", image.setup, HOST_PANEL),
    ("doctor", image.doctor, HOST_PANEL),
):
    _add(app, _name, _func, _panel)

_keys = typer.Typer(help="Signing keys for binary caches.", no_args_is_help=True)
_add(_keys, "generate", cache.key_generate, None)
app.add_typer(_keys, name="key", rich_help_panel=CACHE_PANEL)
_caches = typer.Typer(help="Binary caches: maintenance.", no_args_is_help=True)
_add(_caches, "gc", cache.cache_gc, None)
app.add_typer(_caches, name="cache", rich_help_panel=CACHE_PANEL)
