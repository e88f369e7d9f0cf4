"""`imagegen render`, `check`, `show`, `schema`, `options`: a host profile and the files it renders to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imagegen.cli.options import JsonFlag, Profiles, StateFile


def render(
    profiles: Profiles,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the overlay tree to: "
                                      "new, empty, or one imagegen wrote before (replaced atomically; "
                                      "anything else is refused).")] = Path("build/overlay"),
    state: StateFile = None,
) -> None:
    """Render the overlay tree of a host: units, configs, hard links and enablement links."""
    from rich.console import Console
    from rich.markup import escape

    from imagegen.profile import load_profiles
    from imagegen.render import render_overlay

    loaded = load_profiles(profiles)
    plan = render_overlay(loaded, out, state_file=state)
    Console().print(f"rendered {len(plan.entries)} entries for [bold]{escape(loaded.profile.image.hostname)}[/] "
                    f"into {escape(str(out))}")


def check(
    profiles: Profiles,
    state: StateFile = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip systemd-analyze verify.")] = False,
) -> None:
    """Validate profiles and verify the rendered units with systemd-analyze, writing nothing."""
    import tempfile

    from rich.console import Console
    from rich.markup import escape
    from rich.text import Text

    from imagegen.errors import ImagegenError
    from imagegen.profile import load_profiles
    from imagegen.render import host_state_for, render_overlay, resolve_target
    from imagegen.render.verify import verify_units

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


def show(
    profiles: Profiles,
    as_json: JsonFlag = False,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print passphrases, PSKs, passwords and the "
                                               "root password hash instead of <secret>.")] = False,
) -> None:
    """Print the merged profile, each value with the file that set it (secrets masked)."""
    import json
    import sys

    from imagegen.profile import load_profiles
    from imagegen.profile.show import mask_secrets, show_profile

    loaded = load_profiles(profiles)
    if as_json:
        data = loaded.profile.model_dump(mode="json")
        json.dump(data if show_secrets else mask_secrets(data), sys.stdout, indent=2)
        print()
        return
    sys.stdout.write(show_profile(loaded, show_secrets=show_secrets))


def schema() -> None:
    """Print the JSON Schema of a host profile (every option with its description, default and example)."""
    import json
    import sys

    from imagegen.profile import Profile

    json.dump(Profile.model_json_schema(), sys.stdout, indent=2)
    print()


def options(key: Annotated[str | None, typer.Argument(help="An option or a section, e.g. bonds.bond0.miimon or "
                                                      "users; without one, every option.")] = None) -> None:
    """Print a profile option's reference (type, default, example, merge rule), or a section's, like nixos-option."""
    import sys

    from imagegen.profile.reference import options as option_reference

    sys.stdout.write(option_reference(key))
