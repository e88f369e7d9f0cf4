"""Values written in the syntax of the file they land in.

A template never receives a bare string: each value is built here by the function for its place (a
word of a systemd Exec= line, a word inside an `sh -c` script, a wpa_supplicant string, a dhclient or
dhcp6c quoted string, ...) and carries its syntax as its type. The renderer accepts only the type of
the template's file (see plan.py), so a template line that forgets to escape fails at once.

Where a syntax has no way to carry a character (a word that sh splits and globs, a WIDE dhcp6c
string, which has no escapes) the function refuses it with ValueError: validation of the profile
rejects such values first, with the file, key and fix, so these refusals are a second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from imagegen.profile.model import has_control


@dataclass(frozen=True)
class Escaped:
    """Text that is already in its file's syntax and means exactly the value it was made from."""

    text: str

    def __str__(self) -> str:
        return self.text


class UnitText(Escaped):
    """Text of a systemd unit file (systemd.syntax(7), systemd.service(5) command lines)."""


class EnvText(Escaped):
    """Text of network.conf: a systemd EnvironmentFile that POSIX sh reads the same way."""


class WpaText(Escaped):
    """Text of wpa_supplicant.conf (wpa_supplicant 2.10's config parser)."""


class DhclientText(Escaped):
    """Text of ISC dhclient.conf."""


class Dhcp6cText(Escaped):
    """Text of WIDE dhcp6c.conf."""


class ModprobeText(Escaped):
    """Text of a modprobe.d options line."""


class Deb822Text(Escaped):
    """A field value of a deb822 apt source list."""


class ShText(Escaped):
    """Text of a POSIX sh script (a dhclient-script hook)."""


def _refuse(value: str, target: str, why: str) -> ValueError:
    return ValueError(f"{value!r} cannot be written as {target}: {why}")


# --- POSIX sh -------------------------------------------------------------------------------------

_SH_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# Words that an unquoted expansion ($X) hands on unchanged: no IFS character, no glob, no quote.
_SH_SPLIT_SAFE = re.compile(r"[A-Za-z0-9_@%+:,./-]+")


def sh_word(value: str) -> str:
    """One POSIX sh word that expands to exactly `value`: bare when safe, else single-quoted."""
    if _SH_BARE.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def _split_safe(value: str, target: str) -> str:
    if not _SH_SPLIT_SAFE.fullmatch(value):
        raise _refuse(value, target, "sh splits and globs it; only letters, digits and _@%+:,./- survive")
    return value


# --- systemd unit files ---------------------------------------------------------------------------

def _unit_quoted(value: str) -> str:
    # Inside a quoted word of an Exec= line systemd resolves specifiers (%), then C escapes, then
    # $VAR: each has its own escape, and both quote characters may be escaped in either quote kind.
    out = []
    for c in value:
        if c == "%":
            out.append("%%")
        elif c == "$":
            out.append("$$")
        elif c in "\\'\"":
            out.append("\\" + c)
        elif has_control(c):
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


_EXEC_PATH = re.compile(r"/[A-Za-z0-9_@+=:,./-]*")


def unit_exec_path(value: str) -> UnitText:
    """The program of an Exec= line. systemd substitutes no variables there and refuses special
    characters in it, so an absolute path of plain characters is all it can be."""
    if not _EXEC_PATH.fullmatch(value):
        raise _refuse(value, "an Exec= program", "systemd takes an absolute path of plain characters only")
    return UnitText(value)


def unit_exec_word(value: str) -> UnitText:
    """One argument on a systemd Exec= command line, e.g. the path after -cf."""
    if _SH_BARE.fullmatch(value):
        return UnitText(value.replace("%", "%%"))
    return UnitText('"' + _unit_quoted(value) + '"')


def unit_exec_sh_word(value: str) -> UnitText:
    """A word inside the quoted script of `sh -c '...'` (or "...") on an Exec= line: sh-quoted, then
    escaped for the systemd quoting around the script."""
    return UnitText(_unit_quoted(sh_word(value)))


def unit_value(value: str) -> UnitText:
    """The value of a unit setting that is no command line (Before=, RequiredBy=, Description=)."""
    if has_control(value) or value.endswith("\\"):
        raise _refuse(value, "a unit setting", "a line break or a trailing backslash would end or join the line")
    return UnitText(value.replace("%", "%%"))


# --- network.conf: systemd EnvironmentFile, sourced by sh in tests -------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(value: str) -> EnvText:
    """The start of a variable name (bond0 in bond0ADDRS)."""
    if not _ENV_NAME.fullmatch(value):
        raise _refuse(value, "a variable name", "use letters, digits and _, not starting with a digit")
    return EnvText(value)


def env_value(value: str) -> EnvText:
    """A single-quoted value: systemd's EnvironmentFile parser and sh both take it literally."""
    if "'" in value or has_control(value):
        raise _refuse(value, "a network.conf value", "a quote or line break would end the value")
    return EnvText(f"'{value}'")


def env_words(words: Iterable[str]) -> EnvText:
    """A value that a unit script expands unquoted ($bond0ADDRS) into exactly these words."""
    return env_value(" ".join(_split_safe(w, "a network.conf word") for w in words))


def env_quoted_word_lists(lists: Iterable[Iterable[str]]) -> EnvText:
    """A value that systemd substitutes (${bond0ROUTES}) into an sh script as a list of double-quoted
    strings, each of which the script splits again into its words."""
    quoted = ['"' + " ".join(_split_safe(w, "a network.conf word") for w in words) + '"' for words in lists]
    return env_value(" ".join(quoted))


def env_comment(value: str) -> EnvText:
    if has_control(value):
        raise _refuse(value, "a comment", "a line break would start a new line")
    return EnvText(value)


# --- wpa_supplicant.conf --------------------------------------------------------------------------

_WPA_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.:/=-]*")
_WPA_NAME = re.compile(r"[a-z0-9_]+")


def wpa_string(value: str) -> WpaText:
    """A string field: "text" for printable ASCII without '"' (no escapes are needed inside), else
    the UTF-8 bytes in hex, which wpa_supplicant's string fields all accept."""
    if value and all(" " <= c <= "~" and c != '"' for c in value):
        return WpaText(f'"{value}"')
    if not value or "\0" in value:
        raise _refuse(value, "a wpa_supplicant string", "it is empty or holds a NUL, where its strings end")
    return WpaText(value.encode().hex())


def wpa_token(value: str) -> WpaText:
    """An unquoted value: an enumeration (key_mgmt, proto, eap), a number, a hex key, a group name."""
    if not _WPA_TOKEN.fullmatch(value):
        raise _refuse(value, "a wpa_supplicant value", "only letters, digits and ' _.:/=-' are kept unquoted")
    return WpaText(value)


# wpa_supplicant 2.10 reads a line into 2000 bytes (1998 characters and the line break) and drops the
# rest of a longer one, which then fails to parse and takes the whole file with it. The template
# indents a field line by 8.
WPA_FIELD_MAX = 1998 - 8


def wpa_field(name: str, value: WpaText) -> WpaText:
    """One `name=value` line of a network block."""
    if not _WPA_NAME.fullmatch(name):
        raise _refuse(name, "a wpa_supplicant field name", "use lower-case letters, digits and _")
    line = f"{name}={value.text}"
    if len(line.encode()) > WPA_FIELD_MAX:
        # The value may be a password: the message names the field only.
        raise ValueError(f"the {name} line would be {len(line.encode())} bytes; wpa_supplicant reads at most "
                         f"{WPA_FIELD_MAX} here")
    return WpaText(line)


# --- ISC dhclient.conf and WIDE dhcp6c.conf -------------------------------------------------------

_DHCP_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]*")


def dhclient_string(value: str) -> DhclientText:
    """A quoted string of dhclient.conf: ISC's lexer takes backslash escapes for '"' and '\\'."""
    if has_control(value):
        raise _refuse(value, "a dhclient string", "a line break inside a string is not carried")
    return DhclientText('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')


def dhclient_token(value: str) -> DhclientText:
    """A bare token such as a colon-separated hex string."""
    if not _DHCP_TOKEN.fullmatch(value):
        raise _refuse(value, "a dhclient token", "only letters, digits and :._- form a token")
    return DhclientText(value)


def dhclient_comment(value: str) -> DhclientText:
    if has_control(value):
        raise _refuse(value, "a comment", "a line break would start a statement")
    return DhclientText(value)


def dhcp6c_string(value: str) -> Dhcp6cText:
    """A quoted string of dhcp6c.conf. WIDE's lexer ends a string at the next '"' and knows no
    escapes, so a '"' cannot be carried at all."""
    if '"' in value or has_control(value):
        raise _refuse(value, "a dhcp6c string", "dhcp6c strings cannot hold '\"' or line breaks")
    return Dhcp6cText(f'"{value}"')


def dhcp6c_token(value: str) -> Dhcp6cText:
    if not _DHCP_TOKEN.fullmatch(value):
        raise _refuse(value, "a dhcp6c token", "only letters, digits and :._- form a token")
    return Dhcp6cText(value)


def dhcp6c_list(values: Iterable[str]) -> Dhcp6cText:
    """Tokens separated by ', ', as in `request domain-name-servers, ntp-servers;`."""
    return Dhcp6cText(", ".join(dhcp6c_token(v).text for v in values))


# --- modprobe.d -----------------------------------------------------------------------------------

_MODPROBE_WORD = re.compile(r"[A-Za-z0-9_]+=[A-Za-z0-9_.,:+-]+")


def modprobe_options(words: Iterable[str]) -> ModprobeText:
    """`key=value` module parameters separated by spaces."""
    checked = []
    for word in words:
        if not _MODPROBE_WORD.fullmatch(word):
            raise _refuse(word, "a module option", "write key=value with no space, quote or '#'")
        checked.append(word)
    return ModprobeText(" ".join(checked))


# --- deb822 ---------------------------------------------------------------------------------------

def deb822_word(value: str) -> Deb822Text:
    """One white-space separated word of a deb822 field (a URI, a suite, a path)."""
    if not value or any(c.isspace() for c in value) or has_control(value) or value.startswith("#"):
        raise _refuse(value, "a deb822 word", "white space or a line break would change the stanza")
    return Deb822Text(value)
