"""Where substituters, trusted keys and the signing key come from: options, environment, cache.toml.

    # ~/.config/imagegen/cache.toml ($XDG_CONFIG_HOME/imagegen/cache.toml, or $IMAGEGEN_CACHE_CONFIG)
    substituters = ["https://cache.example.org/imagegen", "file:///srv/imagegen-cache"]
    trusted_keys = ["ci.example.org-1:<base64>"]
    secret_key_file = "/etc/imagegen/ci.example.org-1.secret"   # for imagegen push

--substituter URL options come first, then $IMAGEGEN_SUBSTITUTERS (space separated), then the file;
$IMAGEGEN_TRUSTED_KEYS (space separated) adds to the file's keys; --key FILE, else
$IMAGEGEN_SECRET_KEY_FILE, else the file's secret_key_file signs pushes.
"""

from __future__ import annotations

import os
import pwd
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagegen.errors import UsageError

if TYPE_CHECKING:
    from imagegen.cache.signing import PublicKey, SecretKey

CONFIG_ENV = "IMAGEGEN_CACHE_CONFIG"
SUBSTITUTERS_ENV = "IMAGEGEN_SUBSTITUTERS"
TRUSTED_KEYS_ENV = "IMAGEGEN_TRUSTED_KEYS"
SECRET_KEY_ENV = "IMAGEGEN_SECRET_KEY_FILE"
_KEYS = ("substituters", "trusted_keys", "secret_key_file")


@dataclass(frozen=True)
class CacheConfig:
    substituters: tuple[str, ...] = ()
    trusted_keys: tuple[PublicKey, ...] = ()
    secret_key_file: Path | None = None


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    base = environ.get("XDG_CONFIG_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "imagegen" / "cache.toml"
    home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return Path(home) / ".config" / "imagegen" / "cache.toml"


def _strings(data: Mapping[str, object], key: str, path: Path) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{path}: {key} is not a list of strings", f'write {key} = ["…", "…"]')
    return list(value)


def load_config(
    environ: Mapping[str, str], *, substituters: Sequence[str] = (), key_file: Path | None = None
) -> CacheConfig:
    """The cache settings in force; every URL and key is checked, naming where it came from."""
    path = config_path(environ)
    data: dict[str, object] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{path}: {e}", "fix the TOML syntax") from None
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise UsageError(f"{path}: unknown key {unknown[0]}", f"use {', '.join(_KEYS)}")
    elif environ.get(CONFIG_ENV):
        raise UsageError(f"{CONFIG_ENV}={path}: no such file", f"create it or unset {CONFIG_ENV}")
    urls: list[str] = []
    for where, found in (("--substituter", list(substituters)),
                         (SUBSTITUTERS_ENV, environ.get(SUBSTITUTERS_ENV, "").split()),
                         (f"{path}: substituters", _strings(data, "substituters", path))):
        for url in found:
            # httpx and cryptography are imported only when a cache or key is named: every build and
            # test asks this function, most with no cache at all.
            from imagegen.cache.transport import transport_for

            try:
                transport_for(url)
            except UsageError as e:
                raise UsageError(f"{where}: {e.message}", e.hint) from None
            if url.rstrip("/") not in urls:
                urls.append(url.rstrip("/"))
    trusted = [(k, f"{path}: trusted_keys") for k in _strings(data, "trusted_keys", path)]
    trusted += [(k, TRUSTED_KEYS_ENV) for k in environ.get(TRUSTED_KEYS_ENV, "").split()]
    keys: list[PublicKey] = []
    if trusted:
        from imagegen.cache.signing import PublicKey

        keys = [PublicKey.parse(k, where) for k, where in trusted]
    secret = key_file
    if secret is None and environ.get(SECRET_KEY_ENV):
        secret = Path(environ[SECRET_KEY_ENV])
    if secret is None and "secret_key_file" in data:
        value = data["secret_key_file"]
        if not isinstance(value, str) or not value:
            raise UsageError(f"{path}: secret_key_file is not a path", 'write secret_key_file = "/path/NAME.secret"')
        secret = Path(value).expanduser()
    return CacheConfig(tuple(urls), tuple(keys), secret)


def read_secret_key(path: Path) -> SecretKey:
    from imagegen.cache.signing import SecretKey

    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the secret key ({e.strerror})",
                         "pass --key FILE written by `imagegen key generate NAME`") from None
    if os.stat(path).st_mode & 0o077:
        raise UsageError(f"{path}: the secret key is readable by others", f"chmod 600 {path}")
    return SecretKey.parse(text, str(path))
