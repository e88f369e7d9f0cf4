"""Text as QEMU key codes (QMP send-key qcodes), for a US keyboard layout as the lab's console has."""

from __future__ import annotations

import string

_PLAIN = {c: c for c in string.ascii_lowercase + string.digits} | {
    " ": "spc", "\n": "ret", "\t": "tab", "-": "minus", "=": "equal", "/": "slash", ".": "dot", ",": "comma",
    ";": "semicolon", "'": "apostrophe", "[": "bracket_left", "]": "bracket_right", "\\": "backslash",
    "`": "grave_accent",
}
_SHIFTED = {c.upper(): c for c in string.ascii_lowercase} | {
    "!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8", "(": "9", ")": "0",
    "_": "minus", "+": "equal", "?": "slash", ">": "dot", "<": "comma", ":": "semicolon", '"': "apostrophe",
    "{": "bracket_left", "}": "bracket_right", "|": "backslash", "~": "grave_accent",
}
# Names a person writes in send_key("ctrl-alt-delete") that QEMU spells differently.
_ALIASES = {"enter": "ret", "return": "ret", "space": "spc", "escape": "esc", "del": "delete",
            "backspace": "backspace", "ctrl": "ctrl", "control": "ctrl", "win": "meta_l", "super": "meta_l"}


def combo(keys: str) -> list[str]:
    """'ctrl-alt-delete' → ['ctrl', 'alt', 'delete']; a lone '-' is the minus key."""
    if keys == "-":
        return ["minus"]
    return [_ALIASES.get(k.lower(), k.lower()) for k in keys.split("-")]


def chord(char: str) -> list[str]:
    """The keys pressed together to type char."""
    if char in _PLAIN:
        return [_PLAIN[char]]
    if char in _SHIFTED:
        return ["shift", _SHIFTED[char]]
    raise ValueError(f"cannot type {char!r} with send_chars: no key of a US keyboard gives it")
