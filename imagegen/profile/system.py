"""The sections of a host profile that describe the rest of the machine: packages, groups, users,
services, files and system settings.

Each field carries its description, its default and an example: docs/profile.md is generated from
them (imagegen/profile/reference.py). A description ends with the field's merge rule across layered
files; the rules themselves live in load.py (tables merge key by key, lists replace as a whole,
except the lists named in MERGED_LISTS, which are concatenated).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# The lists whose elements every layer adds to (key paths in the profile).
MERGED_LISTS: frozenset[tuple[str, ...]] = frozenset({("packages", "install"), ("packages", "remove"),
                                                    ("tests", "scripts")})

REPLACES = "Merge: a later layer's value replaces the earlier one."
LIST_REPLACES = "Merge: a later layer's list replaces the earlier one as a whole."
TABLE_MERGES = "Merge: tables merge key by key across layers; a later layer's value for a key wins."


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- packages -----------------------------------------------------------------------------------

# Debian Policy 5.6.1: at least two characters, lower case letters, digits, '+', '-', '.', starting
# with a letter or digit. Arch's names are a superset in practice only by '_' and '@', which no
# profile here needs.
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def check_package_name(name: str) -> str:
    if not _PACKAGE.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a Debian package name; names are lower case letters, digits, '+', '-' and '.', "
            "at least two characters, starting with a letter or digit (as `apt-cache policy NAME` takes it)"
        )
    return name


PackageName = Annotated[str, AfterValidator(check_package_name)]


class Packages(_Section):
    """Packages installed into the image beyond imagegen's own set (mkosi.conf.d/20-*.conf)."""

    install: list[PackageName] = Field(
        default=[],
        description="Packages to install (mkosi's `Packages=`). An unknown name fails the build with the "
        "package and the profile file that asked for it. With openssh-server (Debian) the image also gets "
        "imagegen-ssh-host-keys.service: no image holds SSH host keys, each machine makes its own at its "
        "first boot. Merge: every layer's list is appended to the "
        "lists of the layers below it; a name given twice is installed once.",
        examples=[["openssh-server", "htop"]],
    )
    remove: list[PackageName] = Field(
        default=[],
        description="Packages to leave out. A name that a layer's `install` names is not installed; "
        "any other name (a package of imagegen's own set, or one a dependency brought) is purged "
        "after installation (mkosi's `RemovePackages=`, apt's `purge`, which also removes what "
        "depends on it). `remove` wins over `install` whatever the order of the layers. Merge: "
        "every layer's list is appended to the lists of the layers below it.",
        examples=[["less"]],
    )

    def to_install(self) -> list[str]:
        removed = set(self.remove)
        return [p for p in dict.fromkeys(self.install) if p not in removed]

    def to_purge(self) -> list[str]:
        installed = set(self.install)
        return [p for p in dict.fromkeys(self.remove) if p not in installed]


# --- groups and users ---------------------------------------------------------------------------

# useradd's default NAME_REGEX on Debian (without the trailing '$' for machine accounts).
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,30}")


def check_account_name(name: str) -> str:
    if not _ACCOUNT.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid user or group name; use 1-31 lower case letters, digits, '_' "
            "and '-', starting with a letter or '_'"
        )
    return name


AccountName = Annotated[str, AfterValidator(check_account_name)]

# crypt(3)'s alphabet for salts and hashes, plus the separators of the modular format and yescrypt's
# and bcrypt's parameter fields.
_CRYPT = re.compile(r"\$(?P<id>[0-9a-z]{1,2})\$(?:[A-Za-z0-9./=,]+\$){0,2}[A-Za-z0-9./]+")
CRYPT_IDS = {"y": "yescrypt", "gy": "gost-yescrypt", "7": "scrypt", "2b": "bcrypt", "2y": "bcrypt",
             "2a": "bcrypt", "6": "sha512crypt", "5": "sha256crypt"}


def check_crypt_hash(value: str) -> str:
    """A crypt(3) hash in the modular format ($id$salt$hash), as `mkpasswd` prints it: the form of
    image.root_password_hash and of every user's password_hash. Nothing else can reach /etc/shadow or
    mkosi's RootPassword= (a ':' or a line break would add a field or a setting)."""
    match = _CRYPT.fullmatch(value)
    if not match or match["id"] not in CRYPT_IDS:
        raise ValueError(
            "is not a crypt(3) hash ($id$salt$hash with id one of "
            f"{', '.join(sorted(CRYPT_IDS))}); make one with `mkpasswd -m yescrypt` and paste its output, "
            "never the password"
        )
    return value


CryptHash = Annotated[str, AfterValidator(check_crypt_hash)]

# The key types sshd accepts in authorized_keys (sshd(8), AUTHORIZED_KEYS FILE FORMAT).
SSH_KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})


def check_ssh_public_key(value: str) -> str:
    """An OpenSSH public key line: TYPE BASE64 [COMMENT], the blob starting with its own type name
    (RFC 4253 6.6: a uint32 length, then the name), so a truncated or pasted-wrong key is caught."""
    if "\n" in value or "\r" in value:
        raise ValueError("an SSH public key is one line; give each key as its own list element")
    words = value.split(None, 2)
    if len(words) < 2 or words[0] not in SSH_KEY_TYPES:
        raise ValueError(
            f"not an OpenSSH public key: it must start with one of {', '.join(sorted(SSH_KEY_TYPES))} "
            "and its base64 blob, as in ~/.ssh/id_ed25519.pub (options before the type are not accepted)"
        )
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {words[0]} key's base64 part does not decode; copy the whole .pub line") from None
    name = words[0].encode()
    if len(blob) < 4 + len(name) or int.from_bytes(blob[:4], "big") != len(name) or blob[4:4 + len(name)] != name:
        raise ValueError(
            f"the key's blob does not hold the type {words[0]!r} it claims; copy the whole .pub line"
        )
    return value


SshPublicKey = Annotated[str, AfterValidator(check_ssh_public_key)]


def _check_absolute_program(value: str) -> str:
    if not value.startswith("/") or posixpath.normpath(value) != value or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an absolute, normalised path without spaces, e.g. /bin/bash")
    return value


def _check_tty(value: str) -> str:
    if not re.fullmatch(r"tty[1-9][0-9]?|ttyS[0-9]{1,2}|hvc[0-9]", value):
        raise ValueError(f"{value!r} is not a console; use a virtual terminal such as tty1 or a serial one, ttyS0")
    return value


class Group(_Section):
    """A group the image gets (a sysusers.d `g` line)."""

    gid: Annotated[int, Field(ge=1, le=59999)] | None = Field(
        default=None,
        description="The group's number. None: systemd-sysusers picks a free one from the system range. "
        + REPLACES,
        examples=[1500],
    )


class User(_Section):
    """A login account (sysusers.d `u` and `m` lines, its home, keys and console login)."""

    uid: Annotated[int, Field(ge=1000, le=59999)] = Field(
        description="The user's number, in the range of regular users (1000-59999); it is also the user's "
        "own group's number. Two users may not share one. " + REPLACES,
        examples=[1000],
    )
    groups: list[AccountName] = Field(
        default=[],
        description="Supplementary groups. Each must be declared in `[groups]` or be one the image's "
        "packages create (e.g. audio, video, dialout, netdev). " + LIST_REPLACES,
        examples=[["audio", "video"]],
    )
    shell: Annotated[str, AfterValidator(_check_absolute_program)] = Field(
        default="/bin/bash",
        description="The login shell. /usr/sbin/nologin forbids logging in. " + REPLACES,
        examples=["/bin/bash"],
    )
    description: str = Field(
        default="",
        description="The GECOS field (full name). " + REPLACES,
        examples=["Alice Example"],
        pattern=r"^[^\x00-\x1f\x7f:\"\\]*$",
    )
    password_hash: CryptHash | None = Field(
        default=None,
        description="A crypt(3) hash of the password, as `mkpasswd -m yescrypt` prints it. None: the "
        "password is locked (key-based SSH and auto-login still work). " + REPLACES,
        examples=["$y$j9T$..."],
    )
    ssh_authorized_keys: list[SshPublicKey] = Field(
        default=[],
        description="OpenSSH public keys (whole `.pub` lines) allowed to log in as this user, written to "
        "~/.ssh/authorized_keys (mode 0600, owned by the user). " + LIST_REPLACES,
        examples=[["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... alice@laptop"]],
    )
    ssh_authorized_keys_files: list[str] = Field(
        default=[],
        description="Files of public keys (one key per line, '#' comments), relative to the profile file "
        "that names them; each key is checked like `ssh_authorized_keys`. " + LIST_REPLACES,
        examples=[["keys/alice.pub"]],
    )
    admin: bool = Field(
        default=False,
        description="Membership of the administrators' group (Debian: sudo, Arch: wheel). The group "
        "grants root only where sudo is installed (`packages.install = [\"sudo\"]`). " + REPLACES,
        examples=[True],
    )
    autologin: Annotated[str, AfterValidator(_check_tty)] | None = Field(
        default=None,
        description="A console on which this user is logged in automatically at boot (a getty@ drop-in "
        "with agetty --autologin). None: a login prompt. " + REPLACES,
        examples=["tty1"],
    )


# --- services -----------------------------------------------------------------------------------

UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer",
              "slice", "scope")
# systemd.unit(5): a prefix, an optional '@' and instance, a type suffix; at most 255 characters.
_UNIT = re.compile(r"(?P<prefix>[A-Za-z0-9:_.\\-]+)(?:@(?P<instance>[A-Za-z0-9:_.\\-]*))?\.(?P<type>[a-z]+)")


def check_unit_name(name: str) -> str:
    match = _UNIT.fullmatch(name)
    if not match or match["type"] not in UNIT_TYPES or len(name) > 255:
        raise ValueError(
            f"{name!r} is not a systemd unit name; write NAME.TYPE or NAME@INSTANCE.TYPE with TYPE one of "
            f"{', '.join(UNIT_TYPES)} (e.g. ssh.service, getty@tty1.service)"
        )
    return name


UnitName = Annotated[str, AfterValidator(check_unit_name)]
_SECTION = re.compile(r"[A-Z][A-Za-z0-9-]*")
_KEY = re.compile(r"[A-Z][A-Za-z0-9]*")


def _check_override(value: dict[str, dict[str, str | int | bool | list[str]]]) -> dict[
        str, dict[str, str | int | bool | list[str]]]:
    for section, keys in value.items():
        if not _SECTION.fullmatch(section):
            raise ValueError(f"{section!r} is not a unit file section name such as Service or Unit")
        for key in keys:
            if not _KEY.fullmatch(key):
                raise ValueError(f"{section}.{key}: {key!r} is not a unit file key such as Restart or Environment")
    return value


UnitValue = str | int | bool | list[str]


class Service(_Section):
    """What the image does with one unit: enable, disable or mask it, and a drop-in of settings."""

    enable: bool | None = Field(
        default=None,
        description="true: enabled (an `enable` preset line, applied by `systemctl preset-all` when the "
        "image is built; for an instance such as getty@tty2.service, on its template's line); false: "
        "disabled (an instance is then left out of its template's line). None: as the unit's package and "
        "imagegen's presets decide. imagegen's own network units follow the network sections, whose "
        "preset file is read first. " + REPLACES,
        examples=[True],
    )
    mask: bool = Field(
        default=False,
        description="Mask the unit (a link to /dev/null in /etc/systemd/system): it cannot be started at "
        "all. Cannot be combined with enable = true. " + REPLACES,
        examples=[True],
    )
    override: Annotated[dict[str, dict[str, UnitValue]], AfterValidator(_check_override)] = Field(
        default={},
        description="Settings rendered as the drop-in /etc/systemd/system/UNIT.d/imagegen.conf, by section "
        "and key. Values are literal text: '%' is written as '%%' so that systemd expands no specifier, "
        "line breaks and control characters are refused; a list gives the key once per element (an "
        "empty string first resets a list setting such as ExecStart). " + TABLE_MERGES,
        examples=[{"Service": {"Restart": "always", "Environment": ["LANG=C.UTF-8"]}}],
    )

    @model_validator(mode="after")
    def _enable_or_mask(self) -> Service:
        if self.mask and self.enable:
            raise ValueError("mask = true and enable = true contradict each other; keep one")
        return self


# --- files --------------------------------------------------------------------------------------


def check_image_path(path: str) -> str:
    """An absolute path in the image: normalised, without '..', not the root itself."""
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"{path!r} is not an absolute path; write it from the image's root, e.g. /etc/motd")
    if ".." in path.split("/"):
        raise ValueError(f"{path!r} contains '..', which could leave the image's root; write the path without it")
    if posixpath.normpath(path) != path or path == "/":
        raise ValueError(f"{path!r} is not normalised; write it as {posixpath.normpath(path)!r}")
    if any(ord(c) < 0x20 or c == "\x7f" or c.isspace() for c in path):
        raise ValueError(f"{path!r} contains white space or control characters, which tmpfiles.d cannot name")
    return path


ImagePath = Annotated[str, AfterValidator(check_image_path)]


def _check_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(f"{value!r} is not an octal mode such as \"0644\"; write it as a string of 3 or 4 digits")
    return value


class FileSpec(_Section):
    """One file, directory or symbolic link put into the image."""

    type: Literal["file", "directory", "symlink"] = Field(
        default="file",
        description="What the path is. " + REPLACES,
        examples=["directory"],
    )
    content: str | None = Field(
        default=None,
        description="The file's text (type = \"file\"), written as given (UTF-8). " + REPLACES,
        examples=["Welcome.\n"],
    )
    source: str | None = Field(
        default=None,
        description="A file whose bytes become the file's content, relative to the profile file that "
        "names it. Exactly one of content and source for a file. " + REPLACES,
        examples=["files/index.html"],
    )
    target: str | None = Field(
        default=None,
        description="Where a symlink points (type = \"symlink\"), absolute or relative, as `ln -s` takes "
        "it. " + REPLACES,
        examples=["/usr/share/zoneinfo/UTC"],
    )
    mode: Annotated[str, AfterValidator(_check_mode)] | None = Field(
        default=None,
        description="The octal permission bits as a string. None: \"0644\" for a file, \"0755\" for a "
        "directory. " + REPLACES,
        examples=["0600"],
    )
    owner: AccountName = Field(
        default="root",
        description="The owner, by name (a user of the profile or of the image), set when the image is "
        "built and at every boot through a tmpfiles.d line. A directory owned by someone other than root "
        "passes its owner and group on to everything below it, except entries that name another owner or "
        "group. " + REPLACES,
        examples=["kiosk"],
    )
    group: AccountName = Field(
        default="root",
        description="The group, by name, set like owner. " + REPLACES,
        examples=["kiosk"],
    )

    @model_validator(mode="after")
    def _shape(self) -> FileSpec:
        if self.type == "file" and (self.content is None) == (self.source is None):
            raise ValueError("a file needs exactly one of content and source")
        if self.type != "file" and (self.content is not None or self.source is not None):
            raise ValueError(f"a {self.type} has no content or source; remove them or use type = \"file\"")
        if self.type == "symlink" and not self.target:
            raise ValueError("a symlink needs target = \"PATH\"")
        if self.type != "symlink" and self.target is not None:
            raise ValueError("target is only for type = \"symlink\"")
        if self.type == "symlink" and (self.mode is not None or (self.owner, self.group) != ("root", "root")):
            raise ValueError("a symlink has no mode, owner or group of its own; remove them")
        if self.target is not None and any(ord(c) < 0x20 for c in self.target):
            raise ValueError("target contains control characters")
        return self

    def file_mode(self) -> int:
        return int(self.mode, 8) if self.mode else (0o755 if self.type == "directory" else 0o644)


# --- system -------------------------------------------------------------------------------------


def _check_timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(
            f"{value!r} is not a time zone of the IANA database; use a name such as 'Europe/Berlin' or 'UTC' "
            "(list them with `timedatectl list-timezones`)"
        )
    return value


def _check_locale(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{1,8}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@[a-z]+)?", value):
        raise ValueError(f"{value!r} is not a locale name such as C.UTF-8 or de_DE.UTF-8")
    return value


def _check_keymap(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise ValueError(f"{value!r} is not a console keymap name such as us or de-latin1")
    return value


def _check_kernel_word(value: str) -> str:
    if not value or not all(0x21 <= ord(c) <= 0x7e for c in value) or '"' in value:
        raise ValueError(
            f"{value!r} is not one kernel command line word; give each word as its own list element, "
            "printable ASCII without spaces or quotes"
        )
    return value


_SYSCTL_KEY = re.compile(r"[a-z0-9_][a-z0-9_-]*([./][A-Za-z0-9_*-]+)+")


def _check_sysctl(value: dict[str, str | int]) -> dict[str, str | int]:
    for key, setting in value.items():
        if not _SYSCTL_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a sysctl key such as net.ipv4.ip_forward")
        text = str(setting)
        if not text or any(ord(c) < 0x20 for c in text) or text != text.strip():
            raise ValueError(f"{key}: the value {text!r} must be one line without leading or trailing spaces")
    return value


class SystemSettings(_Section):
    """Machine-wide settings mkosi applies when it builds the image."""

    timezone: Annotated[str, AfterValidator(_check_timezone)] = Field(
        default="UTC",
        description="The time zone (mkosi's `Timezone=`), checked against the IANA database. " + REPLACES,
        examples=["Europe/Berlin"],
    )
    locale: Annotated[str, AfterValidator(_check_locale)] = Field(
        default="C.UTF-8",
        description="The system locale (mkosi's `Locale=`, LANG in /etc/locale.conf). A locale other than "
        "C.UTF-8 needs its data in the image, e.g. `packages.install = [\"locales-all\"]`. " + REPLACES,
        examples=["de_DE.UTF-8"],
    )
    keymap: Annotated[str, AfterValidator(_check_keymap)] = Field(
        default="us",
        description="The console keymap (mkosi's `Keymap=`, KEYMAP in /etc/vconsole.conf). " + REPLACES,
        examples=["de-latin1"],
    )
    kernel_command_line: list[Annotated[str, AfterValidator(_check_kernel_word)]] = Field(
        default=[],
        description="Words added to the kernel command line after imagegen's own (console=ttyS0 "
        "systemd.firstboot=no), in the image's unified kernel image. " + LIST_REPLACES,
        examples=[["quiet", "loglevel=3"]],
    )
    sysctl: Annotated[dict[str, str | int], AfterValidator(_check_sysctl)] = Field(
        default={},
        description="Kernel parameters, rendered as /etc/sysctl.d/90-imagegen.conf. " + TABLE_MERGES,
        examples=[{"net.ipv4.ip_forward": 1, "kernel.sysrq": 0}],
    )


# --- tests --------------------------------------------------------------------------------------

def _check_script_name(name: str) -> str:
    if not name.endswith(".py") or "\0" in name:
        raise ValueError(f"{name!r} is not a Python file name; name a file ending in .py")
    return name


class Tests(_Section):
    """The profile's own checks, run by `imagegen test` on the lab VM after the built-in scenarios."""

    scripts: list[Annotated[str, AfterValidator(_check_script_name)]] = Field(
        default=[],
        description="Python files whose functions `test_…(machine, lab)` `imagegen test` runs, each a "
        "result of its own (docs/testing-api.md). Paths are relative to the profile file that names "
        "them; each must be a regular file ending in .py. The files' contents are part of the test "
        "verdict's hash, not of the image's. Merge: every layer's list is appended to the lists of the "
        "layers below it.",
        examples=[["tests/kiosk_checks.py"]],
    )


# --- rules across sections ----------------------------------------------------------------------

# Groups every Debian image has (base-passwd's group.master, systemd's basic.conf) or that the
# packages of imagegen's own set create (netdev: wpasupplicant). Arch: filesystem's group file.
IMAGE_GROUPS = {
    "debian": frozenset({
        "root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news", "uucp", "man", "proxy",
        "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip", "www-data",
        "backup", "operator", "list", "irc", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff",
        "games", "users", "nogroup", "systemd-journal", "input", "kvm", "render", "sgx", "clock", "netdev",
    }),
    "arch": frozenset({
        "root", "sys", "mem", "ftp", "mail", "log", "smmsp", "proc", "games", "lock", "network", "floppy",
        "scanner", "power", "adm", "wheel", "utmp", "audio", "disk", "input", "kmem", "kvm", "lp", "optical",
        "render", "sgx", "storage", "tty", "uucp", "video", "users", "groups", "systemd-journal", "rfkill",
        "nobody",
    }),
}
ADMIN_GROUP = {"debian": "sudo", "arch": "wheel"}


KeyFinding = tuple[tuple[str | int, ...], str]


def check_accounts(users: dict[str, User], groups: dict[str, Group], distribution: str) -> list[KeyFinding]:
    """Duplicate numbers, and users in groups that neither the profile nor the image has: (key path,
    message) pairs, as checks.py's findings."""
    findings: list[KeyFinding] = []
    known = IMAGE_GROUPS.get(distribution, frozenset()) | set(groups) | set(users)
    owner_of: dict[int, str] = {}
    for name, user in sorted(users.items(), key=lambda item: item[1].uid):
        if user.uid in owner_of:
            findings.append((("users", name, "uid"),
                             f"uid {user.uid} is already the uid of user {owner_of[user.uid]!r}; "
                             "give each user its own uid"))
        owner_of.setdefault(user.uid, name)
        for member_of in user.groups:
            if member_of not in known:
                findings.append((("users", name, "groups"),
                                 f"group {member_of!r} is neither declared nor one the image has; "
                                 f"declare it (groups.{member_of} = {{}}) or fix the name"))
        if name in groups:
            findings.append((("groups", name), f"{name!r} is a user, whose own group is made with it; "
                             "remove its entry under groups"))
    consoles: dict[str, str] = {}
    for name, user in sorted(users.items()):
        if user.autologin is None:
            continue
        if user.autologin in consoles:
            findings.append((("users", name, "autologin"),
                             f"{user.autologin} already logs in {consoles[user.autologin]!r}; one user per console"))
        consoles.setdefault(user.autologin, name)
    gids: dict[int, str] = {}
    for group_name, group in groups.items():
        if group.gid is None:
            continue
        other = gids.get(group.gid) or next((u for u, user in users.items() if user.uid == group.gid), None)
        if other is not None:
            findings.append((("groups", group_name, "gid"),
                             f"gid {group.gid} is already the group of {other!r}; choose another"))
        gids.setdefault(group.gid, group_name)
    return findings
