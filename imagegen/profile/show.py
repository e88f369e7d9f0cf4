"""Print a merged profile as TOML, each value followed by the file that set it (like NixOS's
option definitions with their locations).

Secret values (passphrases, PSKs, passwords, the root password hash) are printed as <secret>, as
`imagegen diff` prints them, unless the caller asks for them explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w

from imagegen.profile.load import KeyPath, LoadedProfile
from imagegen.profile.system import MERGED_LISTS

# Profile keys whose value is a secret, wherever they appear (a network, its EAP table, the image).
SECRET_KEYS = frozenset({
    "passphrase", "psk", "password", "private_key_password", "root_password_hash", "password_hash",
})
MASK = "<secret>"


def mask_secrets(data: Any) -> Any:
    """A copy of profile data (merged TOML or model_dump) with every set secret value replaced by MASK."""
    if isinstance(data, Mapping):
        return {k: MASK if k in SECRET_KEYS and v is not None else mask_secrets(v) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v) for v in data]
    return data


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _value(key)


def show_profile(loaded: LoadedProfile, *, show_secrets: bool = False) -> str:
    lines: list[str] = []
    width = 48

    def leaf(key: str, value: Any, path: KeyPath) -> None:
        if path in MERGED_LISTS and isinstance(value, list) and value:
            # A list that layers add to: each element with the file that added it.
            lines.append(f"{_key(key)} = [")
            for i, item in enumerate(value):
                lines.append(f"{'    ' + _value(item) + ',':<{width}} # {loaded.origin(path + (i,))}")
            lines.append("]")
            return
        text = f"{_key(key)} = {_value(value)}"
        lines.append(f"{text:<{width}} # {loaded.origin(path)}")

    def table(data: dict[str, Any], path: KeyPath, header: str | None) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_list(v)}
        if header is not None and (scalars or not data):
            lines.append("")
            lines.append(header)
        for key, value in scalars.items():
            leaf(key, value, path + (key,))
        for key, value in data.items():
            here = path + (key,)
            name = ".".join(_key(str(p)) for p in here)
            if isinstance(value, dict):
                table(value, here, f"[{name}]")
            elif _is_table_list(value):
                for i, item in enumerate(value):
                    lines.append("")
                    lines.append(f"{'[[' + name + ']]':<{width}} # {loaded.origin(here)}")
                    sub = {k: v for k, v in item.items() if not isinstance(v, dict)}
                    for k, v in sub.items():
                        leaf(k, v, here)
                    for k, v in item.items():
                        if isinstance(v, dict):
                            table(v, here + (i, k), f"[{name}.{_key(k)}]")

    table(loaded.merged if show_secrets else mask_secrets(loaded.merged), (), None)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
