"""The host profile: what a machine is, declared once; every rendered file is derived from it.

Each model forbids unknown keys so a typo fails loudly instead of being ignored, and each field
validates its own value. Rules that relate several fields live in checks.py.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from imagegen.profile.system import (
    AccountName,
    FileSpec,
    Group,
    ImagePath,
    Packages,
    Service,
    SystemSettings,
    Tests,
    UnitName,
    User,
)

Distribution = Literal["debian", "arch"]
BondMode = Literal[
    "balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"
]
FailOverMac = Literal["none", "active", "follow"]
PrimaryReselect = Literal["always", "better", "failure"]
KeyMgmt = Literal["WPA-PSK", "SAE", "WPA-EAP", "IEEE8021X", "NONE"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")

# Names that end up as systemd instance names, /sys paths and, through the seed's network.conf
# scheme (bond0ADDRS=...), as environment variable names that sh expands: the kernel's rules
# alone would allow names such as "eth0.100" that the shell cannot expand.
_IFNAME_SHELL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The unit templates: a member's unit is a hard link named MEMBER@.service beside them, so a device
# with one of these names would replace a template.
TEMPLATE_NAMES = ("master", "slave", "supplicant", "dhclient", "dhclient6", "dhcp6c", "static")


def has_control(value: str) -> bool:
    """Control characters and the Unicode line and paragraph separators: what could end a line."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def check_text(value: str) -> str:
    """Free text that lands in a configuration file: any characters but those that end a line."""
    if has_control(value):
        raise ValueError(
            f"{value!r} contains a control character (a line break, tab, escape, ...), which no "
            "configuration file carries as text; remove it"
        )
    return value


Text = Annotated[str, AfterValidator(check_text)]


def check_ifname(name: str) -> str:
    raw = name.encode()
    if not 1 <= len(raw) <= 15:
        raise ValueError(f"interface name {name!r} is {len(raw)} bytes; the kernel allows 1 to 15 bytes")
    if name in (".", ".."):
        raise ValueError(f"interface name {name!r} is reserved by the kernel; choose another name")
    if "/" in name or ":" in name or any(c.isspace() for c in name):
        raise ValueError(
            f"interface name {name!r} contains '/', ':' or white space, which the kernel rejects; "
            "use letters, digits and '_'"
        )
    if not _IFNAME_SHELL.match(name):
        raise ValueError(
            f"interface name {name!r} cannot be used in network.conf variable names; "
            "use letters, digits and '_' and do not start with a digit"
        )
    return name


def _not_a_template(name: str) -> str:
    if name in TEMPLATE_NAMES:
        raise ValueError(
            f"interface name {name!r} is the name of a unit template ({name}@.service); "
            f"choose another name, e.g. {name + '0'!r}"
        )
    return name


def _check_zone(value: str) -> str:
    """An IPv6 zone id must be an interface name: ipaddress accepts any text after '%'."""
    address = value.split("/", 1)[0]
    if "%" in address:
        zone = address.split("%", 1)[1]
        try:
            check_ifname(zone)
        except ValueError:
            raise ValueError(
                f"{value!r} has the zone id {zone!r}, which is not an interface name; write the interface "
                "after '%' (letters, digits and '_'), e.g. fe80::1%bond0"
            ) from None
    return value


IfName = Annotated[str, AfterValidator(check_ifname)]
# A device declared by the profile: checked once, where it is declared, so a bad name is one finding.
DeviceName = Annotated[IfName, AfterValidator(_not_a_template)]


def _check_interface_address(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"address {value!r} has no prefix length; write it as ADDRESS/PREFIX, e.g. 192.168.0.2/24")
    try:
        ipaddress.ip_interface(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a valid IPv4 or IPv6 address with prefix ({e})") from None
    return _check_zone(value)


def _check_network(value: str) -> str:
    if value == "default":
        return value
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise ValueError(
            f"route destination {value!r} is not 'default' or a network in CIDR form with host bits zero ({e})"
        ) from None
    return _check_zone(value)


def _check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    return _check_zone(value)


InterfaceAddress = Annotated[str, AfterValidator(_check_interface_address)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Route(Strict):
    """One ip-route specification, as in the seed's ROUTES variables."""

    to: Annotated[str, AfterValidator(_check_network)]
    via: Annotated[str, AfterValidator(_check_ip)] | None = None
    metric: Annotated[int, Field(ge=0, le=4294967295)] | None = None

    def family(self) -> int:
        if self.via is not None:
            return ipaddress.ip_address(self.via).version
        if self.to == "default":
            return 4
        return ipaddress.ip_network(self.to).version

    def ip_route_args(self) -> str:
        """The words `ip route replace ... dev IF` takes, e.g. 'to default via 192.168.0.1'."""
        return " ".join(self.ip_route_words())

    def ip_route_words(self) -> list[str]:
        to = self.to
        if to == "default" and self.family() == 6:
            to = "::/0"
        words = ["to", to]
        if self.via is not None:
            words += ["via", self.via]
        if self.metric is not None:
            words += ["metric", str(self.metric)]
        return words


class Addressing(Strict):
    """Static and dynamic IP configuration of an interface the host uses for IP."""

    addresses: list[InterfaceAddress] = []
    routes: list[Route] = []
    dhcp4: bool = False
    dhcp6: bool = False


class Interface(Addressing):
    """A physical (or udev-named) network device: wired or wireless."""

    type: Literal["ethernet", "wireless"]
    # None: a supplicant on wireless devices, none on wired; true on a wired one means 802.1X.
    supplicant: bool | None = None

    def runs_supplicant(self) -> bool:
        return self.supplicant if self.supplicant is not None else self.type == "wireless"


class Bond(Addressing):
    """A kernel bonding master (drivers/net/bonding), configured as Documentation/networking/bonding."""

    members: list[IfName] = Field(min_length=1)
    primary: IfName | None = None
    mode: BondMode = "active-backup"
    miimon: Annotated[int, Field(ge=0, le=2147483647)] = 100
    fail_over_mac: FailOverMac = "none"
    primary_reselect: PrimaryReselect = "always"
    updelay: Annotated[int, Field(ge=0, le=2147483647)] = 0
    downdelay: Annotated[int, Field(ge=0, le=2147483647)] = 0
    # Peer notifications after a switch: gratuitous ARPs and unsolicited IPv6 neighbour advertisements
    # (the kernel's num_unsol_na is the same counter). The kernel's default is 1, and that one is
    # skipped without a retry when the new active port's link event is still being processed, or
    # sent before a wlan's WPA handshake lets it through: the peer then keeps the old MAC until its
    # neighbour entry times out. See README, "Departures from the article".
    num_grat_arp: Annotated[int, Field(ge=0, le=255)] = 3
    # Milliseconds between them; None: miimon, the kernel's own default.
    peer_notif_delay: Annotated[int, Field(ge=0, le=300000)] | None = None

    def peer_notif_delay_ms(self) -> int:
        """The spacing of the peer notifications as the kernel will hold it."""
        return self.miimon if self.peer_notif_delay is None else self.peer_notif_delay

    def ip_link_options(self) -> str:
        """The words `ip link add NAME type bond ...` takes to create this bond fully configured."""
        return " ".join(self.ip_link_words())

    def ip_link_words(self) -> list[str]:
        words = ["mode", self.mode, "miimon", str(self.miimon)]
        if self.miimon:
            words += ["updelay", str(self.updelay), "downdelay", str(self.downdelay)]
            # iproute2 spells the kernel's peer_notif_delay this way.
            words += ["peer_notify_delay", str(self.peer_notif_delay_ms())]
        words += ["num_grat_arp", str(self.num_grat_arp)]
        if self.mode == "active-backup":
            words += ["fail_over_mac", self.fail_over_mac]
        if self.primary is not None:
            words += ["primary_reselect", self.primary_reselect]
        return words


class Bridge(Addressing):
    """A Linux bridge master. The seed made one when the name contained 'br'; here it is declared."""

    members: list[IfName] = Field(min_length=1)
    stp: bool = False


def _check_dhcp_host_name(value: str) -> str:
    if value and not _DNS_NAME.fullmatch(value):
        raise ValueError(
            f"host_name {value!r} is not a DNS name; use labels of letters, digits and inner '-' "
            "separated by '.', or \"\" to send none"
        )
    return value


class Dhcp4(Strict):
    """Host-wide ISC dhclient settings (the seed's dhclient.conf); timings in seconds."""

    initial_interval: Annotated[int, Field(ge=1)] = 2
    reboot: Annotated[int, Field(ge=0)] = 5
    timeout: Annotated[int, Field(ge=1)] = 10
    retry: Annotated[int, Field(ge=1)] = 20
    # None: the image's hostname. "" sends none.
    host_name: Annotated[str, AfterValidator(_check_dhcp_host_name)] | None = None
    # "duid": RFC 4361 identifier built from the host's DUID (the same one dhcp6c uses);
    # "mac": none sent, the server keys on the (changing, with fail_over_mac=active) MAC.
    client_identifier: Literal["duid", "mac"] = "duid"
    # Upper bound, in seconds, for waiting until a bond has an active slave before dhclient starts.
    wait_active_slave: Annotated[int, Field(ge=0, le=600)] = 60


class PrefixDelegation(Strict):
    """Delegate a prefix from the upstream router to a downstream interface (dhcp6c's id-assoc pd)."""

    interface: IfName
    sla_id: Annotated[int, Field(ge=0, le=4294967295)] = 1
    sla_len: Annotated[int, Field(ge=0, le=128)] = 8


DHCP6_OPTIONS = ("domain-name-servers", "domain-name", "ntp-servers", "sip-server-address", "sip-domain-name",
                 "nis-server-address", "nis-domain-name", "nisp-server-address", "nisp-domain-name",
                 "bcmcs-server-address", "bcmcs-domain-name", "refresh-time")


def _check_script_path(value: str) -> str:
    # dhcp6c's strings know no escapes; a path of these characters needs none anywhere.
    if not re.fullmatch(r"(/[A-Za-z0-9_.+-]+)+", value) or "/../" in value + "/":
        raise ValueError(
            f"script {value!r} is not an absolute path of letters, digits and _.+-; "
            "e.g. /etc/wide-dhcpv6/dhcp6c-script"
        )
    return value


class Dhcp6(Strict):
    """Host-wide WIDE dhcp6c settings (the seed's dhcp6c.conf 'profile default')."""

    ia_na: bool = True
    rapid_commit: bool = True
    request: list[Literal[DHCP6_OPTIONS]] = ["domain-name-servers", "domain-name", "ntp-servers"]  # type: ignore[valid-type]
    prefix_delegation: list[PrefixDelegation] = []
    # A dhcp6c-script to run on replies (Debian ships /etc/wide-dhcpv6/dhcp6c-script for resolv.conf).
    script: Annotated[str, AfterValidator(_check_script_path)] | None = None


def _check_country(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{2}|00", value):
        raise ValueError(f"country {value!r} is not an ISO 3166-1 alpha-2 code such as 'US' or 'DE' (or '00')")
    return value


def _check_ssid(value: str) -> str:
    n = len(value.encode())
    if not 1 <= n <= 32:
        raise ValueError(f"SSID {value!r} is {n} bytes (UTF-8); an SSID has 1 to 32 bytes")
    return check_text(value)


def _check_passphrase(value: str) -> str:
    if not 8 <= len(value) <= 63 or any(c not in string.printable or c in "\t\n\r\x0b\x0c" for c in value):
        raise ValueError(
            f"passphrase has {len(value)} characters or non-printable ones; WPA needs 8 to 63 printable "
            "ASCII characters (or give psk = 64 hex digits)"
        )
    return value


def _check_psk(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(
            "psk must be exactly 64 hex digits (as printed by wpa_passphrase); for a passphrase use passphrase ="
        )
    return value.lower()


class Eap(Strict):
    """802.1X credentials for key_mgmt WPA-EAP or IEEE8021X. Files are copied into the image."""

    method: Literal["PEAP", "TTLS", "TLS", "PWD"]
    identity: Annotated[Text, Field(min_length=1)]
    anonymous_identity: Annotated[Text, Field(min_length=1)] | None = None
    password: Annotated[Text, Field(min_length=1)] | None = None
    password_file: Text | None = None
    phase2: Annotated[Text, Field(min_length=1)] | None = None
    ca_cert: Text | None = None
    client_cert: Text | None = None
    private_key: Text | None = None
    private_key_password: Annotated[Text, Field(min_length=1)] | None = None


class Network(Strict):
    """One network block of wpa_supplicant.conf."""

    ssid: Annotated[str, AfterValidator(_check_ssid)] | None = None
    priority: int = 0
    key_mgmt: KeyMgmt = "WPA-PSK"
    proto: Literal["RSN", "WPA", "WPA RSN"] | None = None
    group: Literal["CCMP", "TKIP", "CCMP TKIP", "GCMP", "GCMP-256", "CCMP-256"] | None = None
    pairwise: Literal["CCMP", "TKIP", "CCMP TKIP", "GCMP", "GCMP-256", "CCMP-256"] | None = None
    passphrase: Annotated[str, AfterValidator(_check_passphrase)] | None = None
    psk: Annotated[str, AfterValidator(_check_psk)] | None = None
    # A file holding a passphrase or a 64-hex PSK, relative to the profile that names it.
    psk_file: Text | None = None
    eap: Eap | None = None
    hidden: bool = False


def _check_group(value: str) -> str:
    # Debian's adduser rule for group names; wpa_supplicant takes the global value unquoted.
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError(
            f"ctrl_interface_group {value!r} is not a group name; use up to 32 lower-case letters, digits, "
            "'_' and '-', starting with a letter or '_' (e.g. netdev)"
        )
    return value


class Wireless(Strict):
    country: Annotated[str, AfterValidator(_check_country)] = "00"
    # None: the distribution's group for network administration (Debian: netdev, Arch: wheel).
    ctrl_interface_group: Annotated[str, AfterValidator(_check_group)] | None = None
    # Disable the legacy 802.11b rates, as the seed's supplicant unit does.
    disable_legacy_rates: bool = True
    networks: list[Network] = []


def _check_hostname(value: str) -> str:
    if not re.fullmatch(r"(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?", value):
        raise ValueError(f"hostname {value!r} is not a valid host name; use 1-63 letters, digits and inner '-'")
    return value


def check_release(value: str) -> str:
    """A suite or code name: it lands in apt's Suites: field and in the name of the mkosi cache."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,63}", value) or ".." in value:
        raise ValueError(
            f"release {value!r} is not a suite or code name; use lower-case letters, digits and .+- "
            "(e.g. trixie), or remove the key for the default"
        )
    return value


# RFC 3986's characters: anything else (white space, quotes, '<>\\^`{|}') would be read by apt or
# mkosi as the end of the URL or be another syntax's metacharacter.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


def check_mirror_url(value: str) -> str:
    try:
        parts = urlsplit(value) if _URL_CHARS.fullmatch(value) else None
    except ValueError:  # e.g. an unclosed '[' of an IPv6 host
        parts = None
    ok = parts is not None and not parts.query and not parts.fragment and (
        (parts.scheme in ("http", "https") and bool(parts.hostname) and (not parts.path or parts.path[0] == "/"))
        or (parts.scheme == "file" and not parts.netloc and parts.path.startswith("/"))
    )
    if not ok:
        raise ValueError(
            f"mirror {value!r} is not an http://, https:// or file:/// URL without white space, query or "
            "fragment; e.g. http://HOST/debian"
        )
    return value


# crypt(3): $id$[params$]salt$hash over crypt's alphabet ./0-9A-Za-z; the parameters of yescrypt
# (j9T) and sha-crypt (rounds=5000) add '=' and ','.
_CRYPT = re.compile(r"\$[0-9a-z]{1,8}\$(?:[./0-9A-Za-z=,]+\$)?[./0-9A-Za-z]+\$[./0-9A-Za-z]+")


def check_crypt_hash(value: str) -> str:
    if not _CRYPT.fullmatch(value):
        raise ValueError(
            "root_password_hash is not a crypt(3) hash ($id$[params$]salt$hash of letters, digits, '.' and '/'); "
            "paste what 'mkpasswd -m yescrypt' prints, not a password"
        )
    return value


class Image(Strict):
    hostname: Annotated[str, AfterValidator(_check_hostname)]
    # None: the distribution of the machine that builds, as mkosi does.
    distribution: Distribution | None = None
    # None: the distribution's default (or the building machine's release).
    release: Annotated[str, AfterValidator(check_release)] | None = None
    mirror: Annotated[str, AfterValidator(check_mirror_url)] | None = None
    # A crypt(3) hash as `mkpasswd` prints it; None locks root (log in through the console is then impossible).
    root_password_hash: Annotated[str, AfterValidator(check_crypt_hash)] | None = None


class Profile(Strict):
    """The merged, validated host profile."""

    image: Image
    interfaces: dict[DeviceName, Interface] = {}
    bonds: dict[DeviceName, Bond] = {}
    bridges: dict[DeviceName, Bridge] = {}
    dhcp4: Dhcp4 = Dhcp4()
    dhcp6: Dhcp6 = Dhcp6()
    wireless: Wireless = Wireless()
    packages: Packages = Field(default=Packages(), description="Packages to install and to leave out.")
    groups: dict[AccountName, Group] = Field(
        default={}, description="Groups to create, by name. Merge: tables merge by name across layers.")
    users: dict[AccountName, User] = Field(
        default={}, description="Login accounts, by name; root stays locked unless image.root_password_hash "
        "is set. Merge: tables merge by name across layers, each user's keys as its own rules say.")
    services: dict[UnitName, Service] = Field(
        default={}, description="What the image does with systemd units, by unit name. Merge: tables merge "
        "by unit name across layers.")
    files: dict[ImagePath, FileSpec] = Field(
        default={}, description="Files, directories and symbolic links put into the image, by absolute "
        "path. Merge: tables merge by path across layers.")
    system: SystemSettings = Field(default=SystemSettings(), description="Time zone, locale, keymap, "
                                   "kernel command line and sysctl settings.")
    tests: Tests = Field(default=Tests(), description="The profile's own checks for `imagegen test`.")

    def masters(self) -> dict[str, Bond | Bridge]:
        return {**self.bonds, **self.bridges}

    def master_of(self, ifname: str) -> str | None:
        for name, master in self.masters().items():
            if ifname in master.members:
                return name
        return None

    def ip_interfaces(self) -> dict[str, Addressing]:
        """Every interface that carries IP configuration: masters and unenslaved devices."""
        result: dict[str, Addressing] = dict(self.masters())
        for name, iface in self.interfaces.items():
            if self.master_of(name) is None:
                result[name] = iface
        return dict(sorted(result.items()))

    def supplicant_interfaces(self) -> list[str]:
        return sorted(n for n, i in self.interfaces.items() if i.runs_supplicant())

    def members_of_type(self, master: str, type_: str) -> list[str]:
        return [m for m in self.masters()[master].members if self.interfaces[m].type == type_]
