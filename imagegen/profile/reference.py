"""The option reference, docs/profile.md, generated from the profile model.

Every option is listed with its type, default, example, description and merge rule across layered
files. `python -m imagegen.profile.reference docs/profile.md` rewrites the file; a test fails when
the file differs from what the model gives. `imagegen options KEY` prints the part of it that one
option or section is.
"""

from __future__ import annotations

import difflib
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import tomli_w
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from imagegen.errors import UsageError
from imagegen.profile.model import Profile
from imagegen.profile.system import MERGED_LISTS

HEADER = """\
# Host profile option reference

Generated from the profile model (imagegen/profile/model.py, imagegen/profile/system.py) by
`python -m imagegen.profile.reference docs/profile.md`; do not edit by hand.

Layering: `imagegen render base.toml host.toml` reads the files in order. Tables merge key by key,
a later file's value for a key wins, and a list replaces the earlier list as a whole, except where
an option says its lists merge. `imagegen show` prints the merged profile with the file of every value.
`NAME` in a key stands for a name the profile chooses (a user, a unit, a path). `imagegen options KEY`
prints one option or section of this page, e.g. `imagegen options bonds.bond0.miimon`.

## An example: the article's machine, annotated

```toml
[image]
hostname = "laptop"
distribution = "debian"        # or "arch"; default: the building machine's, as mkosi does
release = "trixie"
# mirror = "http://…/debian"   # default: this machine's own apt mirror
# root_password_hash = "$y$…"  # from `mkpasswd`; default: root is locked

[interfaces.enp3s0]
type = "ethernet"              # supplicant = true for wired 802.1X

[interfaces.wlp2s0]
type = "wireless"              # runs wpa_supplicant

[bonds.bond0]
members = ["enp3s0", "wlp2s0"]
primary = "enp3s0"
mode = "active-backup"         # any kernel bonding mode
miimon = 100
fail_over_mac = "active"       # none | active | follow
primary_reselect = "always"    # always | better | failure
updelay = 0                    # ms, a multiple of miimon
downdelay = 0
num_grat_arp = 3               # peer notifications (gratuitous ARP + unsolicited NA) after a switch
# peer_notif_delay = 100       # ms between them, a multiple of miimon; default: miimon
addresses = ["192.168.0.2/24"] # the static fail-safe address (IPv4 and IPv6)
routes = [{ to = "default", via = "192.168.0.1", metric = 100 }]
dhcp4 = true                   # dhclient@bond0
dhcp6 = true                   # dhcp6c@bond0

# [bridges.br0]  members = [...], stp = false, addresses/routes/dhcp4/dhcp6 as above

[dhcp4]                        # the host's dhclient.conf
initial_interval = 2
reboot = 5
timeout = 10
retry = 20
# host_name = "laptop"         # default: image.hostname; "" sends none
client_identifier = "duid"     # RFC 4361, from the host's DUID; or "mac"
wait_active_slave = 60         # s, upper bound (see below)

[dhcp6]                        # the host's dhcp6c.conf
ia_na = true
rapid_commit = true
request = ["domain-name-servers", "domain-name", "ntp-servers"]
# prefix_delegation = [{ interface = "lan0", sla_id = 1, sla_len = 8 }]
# script = "/etc/wide-dhcpv6/dhcp6c-script"

[wireless]
country = "US"

[[wireless.networks]]
ssid = "MyHome"
priority = 2
key_mgmt = "WPA-PSK"           # WPA-PSK | SAE | WPA-EAP | IEEE8021X | NONE
proto = "RSN"
group = "CCMP"
pairwise = "CCMP"
passphrase = "SuperSecret"     # or psk = "<64 hex>", or psk_file = "path" (holds either)
# [wireless.networks.eap]  method = "PEAP", identity = "…", password_file = "…", ca_cert = "…", phase2 = "…"
```

`examples/laptop.toml` is the article's machine exactly, with a user who logs in over SSH with a key
only; `examples/kiosk.toml`, layered on `examples/base.toml`, is a wired-primary kiosk with static
addresses and routes only, a WPA3 (SAE) network as backup, and cage showing the page it ships on tty1
(its `files` carry the cage@.service unit and its PAM file).
"""


def type_name(ann: Any) -> str:
    """A person's reading of a field's annotation: 'list of string', 'table of User', ..."""
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return "one of " + ", ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (types.UnionType, typing.Union):
        names = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(names)
        return f"{text} (optional)" if type(None) in args else text
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"table of {type_name(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "table"
    return {str: "string", int: "integer", bool: "boolean"}.get(ann, getattr(ann, "__name__", str(ann)))


# How a model sits in the profile: a table of its own, a table of them keyed by name, or an array of
# tables ([[wireless.networks]]).
Kind = Literal["table", "keyed", "array"]


def _model_in(ann: Any) -> tuple[type[BaseModel] | None, Kind]:
    """The model inside an annotation, and how it sits in the profile."""
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Annotated:
        return _model_in(args[0])
    if origin in (dict, list):
        model, _ = _model_in(args[-1])
        return model, "keyed" if origin is dict else "array"
    if origin in (types.UnionType, typing.Union):
        for arg in args:
            model, kind = _model_in(arg)
            if model is not None:
                return model, kind
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, "table"
    return None, "table"


def _toml(key: str, value: Any) -> str:
    try:
        return tomli_w.dumps({key: value}).strip()
    except TypeError:
        return f"{key} = {value!r}"


def _bare(ann: Any) -> Any:
    """The annotation without Annotated and without None."""
    if get_origin(ann) is Annotated:
        return _bare(get_args(ann)[0])
    if get_origin(ann) in (types.UnionType, typing.Union):
        rest = [a for a in get_args(ann) if a is not type(None)]
        return _bare(rest[0]) if len(rest) == 1 else ann
    return ann


def merge_rule(path: tuple[str, ...], ann: Any) -> str:
    bare = _bare(ann)
    if path in MERGED_LISTS:
        return "lists merge: each layer's elements are added to the earlier layers'"
    if get_origin(bare) is dict or (isinstance(bare, type) and issubclass(bare, BaseModel)):
        return "tables merge key by key"
    if get_origin(bare) is list:
        return "a later layer's list replaces the earlier one"
    return "a later layer's value replaces the earlier one"


def split_description(info: FieldInfo, path: tuple[str, ...]) -> tuple[str, str]:
    """The description without its merge sentence, and the merge rule (the description's own where it
    states one)."""
    body, _, rule = (info.description or "").partition("Merge: ")
    return body.strip() or "(not described yet)", rule.strip().rstrip(".") or merge_rule(path, info.annotation)


def _field(lines: list[str], key: str, path: tuple[str, ...], info: FieldInfo) -> None:
    lines.append(f"### `{key}`")
    lines.append("")
    description, rule = split_description(info, path)
    lines.append(description)
    lines.append("")
    lines.append(f"- Type: {type_name(info.annotation)}")
    if info.is_required():
        lines.append("- Default: none, required")
    else:
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            lines.append("- Default: the table's defaults")
        elif default is None:
            lines.append("- Default: not set")
        else:
            lines.append(f"- Default: `{_toml(path[-1], default).split(' = ', 1)[-1]}`")
    lines.append(f"- Merge: {rule}")
    if info.examples:
        lines.append("- Example:")
        lines.append("")
        lines.append("  ```toml")
        lines += [f"  {line}" for line in _toml(path[-1], info.examples[0]).splitlines()]
        lines.append("  ```")
    lines.append("")


@dataclass(frozen=True)
class Block:
    """One option (key "bonds.NAME.miimon") or the head of one section (key "bonds.NAME") of the reference."""

    key: str
    text: str


def _section(blocks: list[Block], model: type[BaseModel], prefix: str, path: tuple[str, ...]) -> None:
    # The section's own options first, then its subsections: an option never reads as part of the
    # subsection above it.
    items = sorted(model.model_fields.items(), key=lambda item: _model_in(item[1].annotation)[0] is not None)
    for name, info in items:
        key = f"{prefix}.{name}" if prefix else name
        sub, kind = _model_in(info.annotation)
        lines: list[str] = []
        if sub is not None:
            title = f"{key}.NAME" if kind == "keyed" else key
            lines.append(f"## `{'[[' + title + ']]' if kind == 'array' else '[' + title + ']'}`")
            lines.append("")
            description, rule = split_description(info, path + (name,))
            lines.append(description if info.description else (sub.__doc__ or "").strip() or description)
            if kind != "table" and sub.__doc__:
                lines.append("")
                lines.append(f"Each entry: {sub.__doc__.strip()}")
            lines.append("")
            lines.append(f"- Merge: {rule}")
            lines.append("")
            blocks.append(Block(title, "\n".join(lines)))
            _section(blocks, sub, title, path + (name,) + (("NAME",) if kind == "keyed" else ()))
        else:
            _field(lines, key, path + (name,), info)
            blocks.append(Block(key, "\n".join(lines)))


def blocks() -> list[Block]:
    found: list[Block] = []
    _section(found, Profile, "", ())
    return found


def reference() -> str:
    return (HEADER + "\n" + "\n".join(b.text for b in blocks())).rstrip("\n") + "\n"


def _segments(key: str) -> list[str]:
    """A key's parts: `files."/etc/a.conf".mode` is three; [bonds] and [[wireless.networks]] are headings."""
    return [s.strip('"') for s in re.findall(r'"[^"]*"|[^.]+', key.strip().strip("[]"))]


def _within(option: list[str], wanted: list[str]) -> bool:
    # NAME in the reference stands for any name the profile chooses.
    return len(wanted) <= len(option) and all(o in ("NAME", w) for o, w in zip(option[:len(wanted)], wanted,
                                                                                strict=True))


def _spelled(option: list[str], wanted: list[str]) -> str:
    """The option as the wanted key spells it: each NAME replaced by the name given at its place."""
    return ".".join(wanted[i] if o == "NAME" and i < len(wanted) else o for i, o in enumerate(option))


def options(key: str | None = None) -> str:
    """The reference of one option, or of a section with everything in it; of every option without a key."""
    if not key:
        return reference()
    wanted = _segments(key)
    found = [b for b in blocks() if _within(_segments(b.key), wanted)]
    if not found:
        spelled = {_spelled(_segments(b.key), wanted): b.key for b in blocks()}
        close = difflib.get_close_matches(".".join(wanted), spelled, n=1)
        raise UsageError(f"{key}: no such profile option",
                         f"did you mean {spelled[close[0]]}? `imagegen options` lists every option" if close
                         else "`imagegen options` lists every option")
    return "\n".join(b.text for b in found).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m imagegen.profile.reference docs/profile.md", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
