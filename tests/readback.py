"""Rendered files read back the way the target reads them: wpa_supplicant itself, sh with `ip` recording
its argv, and a tokenizer of the ISC dhclient / WIDE dhcp6c statement syntax."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from imagegen.render.distro import Layout

UNITS = "etc/systemd/system"


# --- wpa_supplicant ---------------------------------------------------------------------------------

@dataclass
class WpaConfig:
    """What wpa_supplicant 2.10 parsed, from its -dd -K debug output."""

    globals: dict[str, str] = field(default_factory=dict)
    networks: list[dict[str, bytes | str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    loaded: bool = False


def have_wpa_supplicant() -> bool:
    return shutil.which("wpa_supplicant") is not None


_HEX_FIELD = re.compile(r"^(\S+(?: methods)?) - hexdump(_ascii)?\(len=(\d+)\):(.*)$")
_INT_FIELD = re.compile(r"^(\w+)=(-?\d+) \(0x[0-9a-f]+\)$")
_FLAG_FIELD = re.compile(r"^(\w+): (0x[0-9a-f]+)$")
_GLOBAL = re.compile(r"^(\w+)='(.*)'$|^(\w+)=(\d+)$")


# A driver no wpa_supplicant has: it reads and dumps the whole configuration, then stops at the driver,
# before it touches an interface or creates its control socket.
_NO_DRIVER = "imagegen-parse-only"


def read_wpa(conf: Path) -> WpaConfig:
    """Run wpa_supplicant on `conf` and collect what its configuration parser made of it."""
    proc = subprocess.run(
        ["wpa_supplicant", "-dd", "-K", "-D", _NO_DRIVER, "-i", "lo", "-c", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=30, check=False,
    )
    out = WpaConfig()
    current: dict[str, bytes | str] | None = None
    pending: tuple[str, int, bytearray] | None = None
    reading = False
    for line in proc.stdout.splitlines():
        if pending is not None:
            name, length, data = pending
            if line.startswith("     ") and len(data) < length:
                data += bytes.fromhex(line[5:53].replace(" ", ""))
                if len(data) >= length:
                    assert current is not None
                    current[name] = bytes(data)
                    pending = None
                continue
            pending = None
        if line.startswith("Reading configuration file"):
            reading = True
            continue
        if not reading:
            continue
        if line.startswith("Failed to read or parse configuration"):
            break
        if line.endswith(f"Unsupported driver '{_NO_DRIVER}'"):
            out.loaded = True
            break
        if line.startswith(("Priority group", "   id=")):
            continue
        if re.match(r"^Line: \d+ - start of a new network block$", line):
            current = {}
            out.networks.append(current)
            continue
        if line.startswith("Line "):
            out.errors.append(line)
            continue
        if current is None:
            m = _GLOBAL.match(line)
            if m:
                out.globals[m[1] or m[3]] = m[2] if m[1] else m[4]
            continue
        if m := _HEX_FIELD.match(line):
            name, ascii_, length, rest = m[1], m[2], int(m[3]), m[4].strip()
            if ascii_ and length:
                pending = (name, length, bytearray())
            else:
                current[name] = bytes.fromhex(rest.replace(" ", "")) if rest else b""
        elif m := _INT_FIELD.match(line) or _FLAG_FIELD.match(line):
            current[m[1]] = m[2]
    return out


# --- sh with a recording ip --------------------------------------------------------------------------

RECORD_SEP, ARG_SEP = "\x1e", "\x1f"


def recording_layout(layout: Layout, tmp: Path) -> tuple[Layout, Path]:
    """`layout` with ip replaced by a script that logs its argv and sleep by one that returns at once."""
    log = tmp / "ip.log"
    ip = tmp / "ip"
    ip.write_text(f"#!/bin/sh\nprintf '%s{ARG_SEP}' \"$@\" >> {shlex.quote(str(log))}\n"
                  f"printf '{RECORD_SEP}' >> {shlex.quote(str(log))}\n")
    ip.chmod(0o755)
    bins = dict(layout.bin)
    bins["ip"] = str(ip)
    bins["sleep"] = shutil.which("true") or "/bin/true"
    return dataclasses.replace(layout, bin=bins), log


def read_env_file(path: Path) -> dict[str, str]:
    """network.conf as sh reads it: every variable it sets."""
    out = subprocess.run(["sh", "-c", 'set -a; . "$1"; env -0', "sh", str(path)], env={},
                         capture_output=True, check=True).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def _unit_commands(unit: str, key: str) -> list[list[str]]:
    """The command lines of `key` (ExecStart, ...) in a unit, split into words as systemd does for the
    quoting these units use; leading '-' removed, ';' separating commands."""
    text = unit.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith(f"{key}="):
            continue
        words = shlex.split(line.split("=", 1)[1], posix=True)
        cmd: list[str] = []
        for w in [*words, ";"]:
            if w == ";":
                if cmd:
                    commands.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    for cmd in commands:
        cmd[0] = cmd[0].lstrip("-@:+!")
    return commands


def _systemd_expand(word: str, instance: str, env: dict[str, str]) -> list[str]:
    word = re.sub(r"%([%iI])", lambda m: "%" if m[1] == "%" else instance, word)
    whole = re.fullmatch(r"\$(\w+)", word)
    if whole:
        return env.get(whole[1], "").split()
    return [re.sub(r"\$\$|\$\{(\w+)\}", lambda m: "$" if m[0] == "$$" else env.get(m[1], ""), word)]


def replay_unit(overlay: Path, template: str, instance: str, ip_log: Path, key: str = "ExecStart") -> list[list[str]]:
    """Run a unit's `key` commands for `instance` with network.conf's environment; return ip's argvs."""
    env = read_env_file(overlay / "etc/conf.d/network.conf")
    unit = (overlay / UNITS / f"{template}@.service").read_text()
    ip_log.write_text("")
    for cmd in _unit_commands(unit, key):
        argv = [w for word in cmd for w in _systemd_expand(word, instance, env)]
        subprocess.run(argv, env={**env, "PATH": "/usr/bin:/bin"}, check=False, timeout=30)
    records = ip_log.read_text().split(RECORD_SEP)[:-1]
    return [r.split(ARG_SEP)[:-1] for r in records]


# --- ISC dhclient.conf / WIDE dhcp6c.conf ---------------------------------------------------------------

@dataclass(frozen=True)
class Str:
    """A quoted string token."""

    value: str


@dataclass(frozen=True)
class Block:
    statements: tuple[tuple[object, ...], ...]


def _tokens(text: str, escapes: bool) -> list[object]:
    tokens: list[object] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c in ";{},":
            tokens.append(c)
            i += 1
        elif c == '"':
            value = []
            i += 1
            while True:
                if i >= len(text):
                    raise ValueError("unterminated string")
                if escapes and text[i] == "\\":
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == '"':
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
            tokens.append(Str("".join(value)))
        else:
            m = re.compile(r'[^\s;{},"#]+').match(text, i)
            assert m is not None
            tokens.append(m[0])
            i = m.end()
    return tokens


def statements(text: str, *, escapes: bool) -> tuple[tuple[object, ...], ...]:
    """Statements ending in ';', a block `head { ... };` as the head's tokens plus a Block.
    escapes: ISC dhclient reads backslash escapes in strings; WIDE dhcp6c does not."""
    tokens = _tokens(text, escapes)
    pos = 0

    def block(top: bool) -> tuple[tuple[object, ...], ...]:
        nonlocal pos
        out: list[tuple[object, ...]] = []
        cur: list[object] = []
        while pos < len(tokens):
            t = tokens[pos]
            pos += 1
            if t == ";":
                if cur:
                    out.append(tuple(cur))
                cur = []
            elif t == "{":
                cur.append(Block(block(top=False)))
            elif t == "}":
                if top:
                    raise ValueError("unbalanced '}'")
                if cur:
                    raise ValueError(f"statement without ';' before '}}': {cur}")
                return tuple(out)
            else:
                cur.append(t)
        if cur or not top:
            raise ValueError(f"unterminated statement or block: {cur}")
        return tuple(out)

    return block(top=True)
