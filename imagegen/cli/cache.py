"""The cache's commands: `imagegen push`, `imagegen key generate`, `imagegen cache gc`, and the
substituter that `imagegen build` and `imagegen test` ask."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imagegen.cli.options import DryRun, StoreOpt
from imagegen.cli.store import human_bytes

if TYPE_CHECKING:
    from rich.console import Console

    from imagegen.cache.substitute import CacheSubstituter


def substituter(urls: list[str] | None, only: bool, console: Console) -> CacheSubstituter | None:
    """The store's substituter for these options and the environment (None: no cache to ask)."""
    from imagegen.cache.config import load_config

    config = load_config(os.environ, substituters=urls or ())
    if not config.substituters and not only:
        return None
    from imagegen.cache.substitute import CacheSubstituter

    return CacheSubstituter(config.substituters, config.trusted_keys,
                            lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True), only)


def push(
    refs: Annotated[list[str], typer.Argument(help="store paths, result links, or profiles (a.toml, "
                                              "base.toml+kiosk.toml: its images and their verdicts)",
                                              show_default=False)],
    to: Annotated[str, typer.Option("--to", help="the cache: http(s)://HOST/PATH (PUT) or file:///DIR",
                                    show_default=False)],
    key: Annotated[Path | None, typer.Option("--key", help="secret key file to sign with (default: "
                                             "$IMAGEGEN_SECRET_KEY_FILE, else secret_key_file in cache.toml)")] = None,
    include_secrets: Annotated[bool, typer.Option("--include-secrets", help="also push overlays and images, "
                                                  "which hold the Wi-Fi PSK and the dhcp6c key (a private "
                                                  "cache only)")] = False,
    store: StoreOpt = None,
) -> None:
    """Upload store entries with what they were built from (overlay, image, verdict) to a binary cache,
    signed; entries already there are skipped."""
    from rich.console import Console

    from imagegen.cache.config import load_config, read_secret_key
    from imagegen.cache.push import push as push_entries
    from imagegen.cache.push import resolve_refs
    from imagegen.errors import UsageError
    from imagegen.stages.realise import open_store

    config = load_config(os.environ, key_file=key)
    if config.secret_key_file is None:
        raise UsageError("push: no key to sign with", "pass --key FILE (imagegen key generate NAME makes one)")
    secret = read_secret_key(config.secret_key_file)
    st = open_store(store)
    console = Console(highlight=False, soft_wrap=True)
    results = push_entries(st, resolve_refs(st, refs), to, secret, include_secrets=include_secrets,
                           say=lambda line: console.print(line, markup=False))
    counts = {o: sum(r.outcome == o for r in results) for o in ("pushed", "present", "refused")}
    console.print(f"{counts['pushed']} pushed, {counts['present']} already there, {counts['refused']} refused "
                  f"({human_bytes(sum(r.file_size for r in results))} uploaded)", markup=False)
    if counts["refused"]:
        raise typer.Exit(1)


def key_generate(
    name: Annotated[str, typer.Argument(help="the key's name, e.g. ci.example.org-1 (signatures carry it)",
                                        show_default=False)],
    out_dir: Annotated[Path, typer.Option("--dir", help="where NAME.secret (0600) and NAME.public go")] = Path("."),
) -> None:
    """Make an ed25519 key pair; prints the public key, for trusted_keys."""
    from rich.console import Console

    from imagegen.cache.signing import SecretKey, check_key_name
    from imagegen.errors import UsageError

    check_key_name(name)
    secret_path, public_path = out_dir / f"{name}.secret", out_dir / f"{name}.public"
    for path in (secret_path, public_path):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path} exists", "choose another NAME or --dir; an existing key is never replaced")
    key = SecretKey.generate(name)
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.to_text() + "\n")
    public_path.write_text(f"{key.public()}\n")
    Console(stderr=True, highlight=False).print(f"secret key: {secret_path} (mode 0600)\npublic key: {public_path}",
                                                markup=False)
    typer.echo(str(key.public()))


def cache_gc(
    url: Annotated[str, typer.Argument(help="a directory cache, file:///DIR", show_default=False)],
    keep_days: Annotated[float, typer.Option("--keep-days", help="keep entries pushed in the last N days")] = 30,
    dry_run: DryRun = False,
) -> None:
    """Delete entries older than --keep-days from a directory cache (an HTTP cache is cleaned by its server)."""
    from imagegen.cache.gc import collect_cache

    result = collect_cache(url, keep_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(result.removed)} files ({human_bytes(result.bytes_freed)}); kept {result.kept} "
               f"entries in {url}")
    for name in result.removed:
        typer.echo(f"  {name}")
