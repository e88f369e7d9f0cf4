"""The imagegen command line: parse, call a stage, print. No stage logic lives here."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from imagegen import __version__
from imagegen.build import command as build_command
from imagegen.cache import command as cache_command
from imagegen.errors import ImagegenError
from imagegen.interrupt import interrupted, signals_as_interrupt
from imagegen.pipeline import command as store_command
from imagegen.profile import Profile, load_profiles
from imagegen.profile.show import mask_secrets, show_profile
from imagegen.render import host_state_for, render_overlay, resolve_target
from imagegen.render.verify import verify_units
from imagegen.scenarios import command as scenarios_command

app = typer.Typer(
    name="imagegen",
    help="Describe a machine once in a TOML host profile; render its files, build its image with mkosi, "
    "boot it under QEMU and prove its network over QMP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

F = TypeVar("F", bound=Callable[..., Any])

Profiles = Annotated[
    list[Path],
    typer.Argument(help="Host profile TOML files; later files override earlier ones key by key, lists replace.",
                   show_default=False),
]
StateFile = Annotated[
    Path | None,
    typer.Option("--state", help="Host state file (DUID, dhcp6c key). Default: HOSTNAME.state.toml beside the "
                 "last profile; created on first use, mode 0600."),
]


def reports_errors(func: F) -> F:
    """Turn an ImagegenError into its message on stderr and its exit code, without a traceback; and
    Ctrl-C, SIGTERM or SIGHUP into one line and exit 128 + the signal's number (130, 143, 129)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        try:
            with signals_as_interrupt():
                return func(*args, **kwargs)
        except ImagegenError as e:
            # User text (keys, values, paths) is printed as it is: never read as rich markup.
            for line in e.message.splitlines():
                err.print(Text.assemble(("error:", "bold red"), " ", line))
            if e.hint:
                err.print(Text.assemble(("hint:", "bold"), " ", e.hint))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            stopped = interrupted(e)
            err.print(Text(stopped.line(f"imagegen {func.__name__}")))
            raise typer.Exit(stopped.exit_code) from None

    return wrapper  # type: ignore[return-value]


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


@app.command()
@reports_errors
def render(
    profiles: Profiles,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the overlay tree to: "
                                      "new, empty, or one imagegen wrote before (replaced atomically; "
                                      "anything else is refused).")] = Path("build/overlay"),
    state: StateFile = None,
) -> None:
    """Render the overlay tree of a host: units, configs, hard links and enablement links."""
    loaded = load_profiles(profiles)
    plan = render_overlay(loaded, out, state_file=state)
    Console().print(f"rendered {len(plan.entries)} entries for [bold]{escape(loaded.profile.image.hostname)}[/] "
                    f"into {escape(str(out))}")


@app.command()
@reports_errors
def check(
    profiles: Profiles,
    state: StateFile = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip systemd-analyze verify.")] = False,
) -> None:
    """Validate profiles and verify the rendered units with systemd-analyze, writing nothing."""
    loaded = load_profiles(profiles)
    console = Console()
    console.print(f"[green]ok[/] profile {escape(' + '.join(map(str, loaded.files)))}")
    with tempfile.TemporaryDirectory(prefix="imagegen-check-") as tmp:
        root = Path(tmp) / "root"
        render_overlay(loaded, root, state=host_state_for(loaded, state, create=False))
        if no_verify:
            return
        result = verify_units(root, resolve_target(loaded.profile.image))
        for line in result.findings:
            console.print(Text(f"  {line}"), highlight=False)
        if result.skipped:
            console.print(f"[yellow]skipped[/] unit verification: {escape(result.skipped)}")
        elif result.findings:
            raise ImagegenError(f"systemd-analyze verify found {len(result.findings)} problem(s) in the rendered units")
        else:
            console.print(f"[green]ok[/] systemd-analyze verify of {result.checked} unit(s)")


@app.command()
@reports_errors
def show(
    profiles: Profiles,
    as_json: Annotated[bool, typer.Option("--json", help="Print the merged profile as JSON, with defaults.")] = False,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print passphrases, PSKs, passwords and the "
                                               "root password hash instead of <secret>.")] = False,
) -> None:
    """Print the merged profile, each value with the file that set it (secrets masked)."""
    loaded = load_profiles(profiles)
    if as_json:
        data = loaded.profile.model_dump(mode="json")
        json.dump(data if show_secrets else mask_secrets(data), sys.stdout, indent=2)
        print()
        return
    sys.stdout.write(show_profile(loaded, show_secrets=show_secrets))


@app.command()
def schema() -> None:
    """Print the JSON Schema of a host profile (every option with its description, default and example)."""
    json.dump(Profile.model_json_schema(), sys.stdout, indent=2)
    print()


@app.command()
@reports_errors
def options(key: Annotated[str | None, typer.Argument(help="An option or a section, e.g. bonds.bond0.miimon or "
                                                      "users; without one, every option.")] = None) -> None:
    """Print a profile option's reference (type, default, example, merge rule), or a section's, like nixos-option."""
    from imagegen.profile.reference import options as option_reference

    sys.stdout.write(option_reference(key))


# The build stage's commands live in imagegen/build/command.py.
app.command("setup")(reports_errors(build_command.setup))
app.command("doctor")(reports_errors(build_command.doctor))
app.command("build")(reports_errors(build_command.build))
# The VM stage's commands live in imagegen/scenarios/command.py.
app.command("test")(reports_errors(scenarios_command.test))
app.command("vm")(reports_errors(scenarios_command.vm))
# The store's commands live in imagegen/pipeline/command.py.
app.command("history")(reports_errors(store_command.history))
app.command("gc")(reports_errors(store_command.gc))
app.command("diff")(reports_errors(store_command.diff))
# The binary cache's commands (push, key, cache) live in imagegen/cache/command.py.
cache_command.register(app, reports_errors)
