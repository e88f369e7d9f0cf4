"""The store's commands: `imagegen history`, `imagegen diff`, `imagegen gc`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagegen.cli.options import DryRun, JsonFlag, StoreOpt

if TYPE_CHECKING:
    from imagegen.store import Generation


def verdict_text(verdict: Any) -> str:
    """A generation's verdict in a few words: passed (7/7), FAILED: failover, or - when untested."""
    if not isinstance(verdict, dict):
        return "-"
    scenarios = verdict.get("scenarios") or {}
    failed = sorted(n for n, s in scenarios.items() if not s.get("passed") and not s.get("skipped"))
    ran = [n for n, s in scenarios.items() if not s.get("skipped")]
    if failed:
        return f"FAILED: {', '.join(failed)}"
    return f"passed ({len(ran)}/{len(scenarios)})" if verdict.get("passed") else "failed"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def history(
    host: Annotated[str, typer.Argument(help="host name (image.hostname of its profile)")],
    store: StoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """List a host's generations: when each build changed it, its store path, profile hash and test verdict."""
    import json
    import sys

    from rich.console import Console
    from rich.text import Text

    from imagegen.stages.realise import open_store

    st = open_store(store)
    generations = st.history(host)
    if as_json:
        json.dump([_generation_json(st.root, g) for g in generations], sys.stdout, indent=2)
        print()
        return
    if not generations:
        Console(stderr=True).print(Text(f"{host} has no generations in {st.root} (imagegen build makes them)"))
        return
    rows = [("generation", "time", "profile", "verdict", "store path")]
    for g in generations:
        mark = "" if st.is_complete(g.store_path) else " (collected)"
        rows.append((f"{host}@{g.number}", g.time, g.profile_hash.split(":")[-1][:12],
                     verdict_text(g.verdict), f"{st.root / g.store_path}{mark}"))
    # Plain columns, the store path last and whole: the output is for copying paths from.
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4])


def _generation_json(root: Path, g: Generation) -> dict[str, Any]:
    data = g.to_json()
    data["store_path"] = str(root / g.store_path)
    data["verdict_path"] = str(root / g.verdict_path) if g.verdict_path else None
    return data


def gc(
    keep: Annotated[int, typer.Option("--keep", help="keep the newest N generations of every host (and what "
                                      "they were built from and tested by)")] = 5,
    dry_run: DryRun = False,
    store: StoreOpt = None,
) -> None:
    """Delete store entries that no result link and none of the newest --keep generations hold."""
    from imagegen.stages.realise import open_store

    st = open_store(store)
    result = st.gc(keep, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    entries = [n for n in result.removed if not n.startswith(".") and "/" not in n]
    records = [n for n in result.removed if "/" in n]  # no-op builds' records of collected entries
    temporaries = len(result.removed) - len(entries) - len(records)
    typer.echo(f"{verb} {len(entries)} entries, {temporaries} temporaries and {len(records)} build records, "
               f"{'would free' if dry_run else 'freed'} {human_bytes(result.bytes_freed)}; "
               f"kept {len(result.kept)} in {st.root}")
    for name in entries:
        typer.echo(f"  {name}")


def diff(
    a: Annotated[str, typer.Argument(help="a profile (a.toml, or base.toml+kiosk.toml), a store path or result "
                                     "link, or a generation HOST@N", show_default=False)],
    b: Annotated[str, typer.Argument(help="the same kinds as A", show_default=False)],
    store: StoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """What changed between two systems: overlay files (unified diff, secrets masked), packages, test verdicts."""
    import json
    import sys

    from imagegen.stages.realise import open_store
    from imagegen.stages.systems import diff_systems, resolve

    st = open_store(store)
    result = diff_systems(resolve(st, a), resolve(st, b))
    if as_json:
        json.dump({"a": a, "b": b, **result.to_json()}, sys.stdout, indent=2)
        print()
        return
    for title, text in result.sections():
        typer.echo(f"== {title}: {a} -> {b}")
        typer.echo(text)
