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

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

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
    check_crypt_hash,
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


def _string_only(value: object) -> object:
    # Before the type check: pydantic's own error for a number or a table would quote the value.
    if not isinstance(value, str):
        raise ValueError("a secret must be a string; write it in double quotes (the value is not shown)")
    return value


def _check_secret_text(value: str) -> str:
    if has_control(value):
        raise ValueError(
            "contains a control character (a line break, tab, escape, ...), which no configuration file "
            "carries as text; remove it (the value is not shown)"
        )
    return value


# wpa_supplicant 2.10 reads a line into 2000 bytes and drops the rest of a longer one, which then
# fails to parse and takes the whole file (every network) with it. A string it holds may need hex,
# two characters a byte: this bound keeps the longest field line well inside the limit.
WPA_STRING_BYTES = 512


def _check_wpa_length(value: str) -> str:
    if len(value.encode()) > WPA_STRING_BYTES:
        raise ValueError(
            f"is {len(value.encode())} bytes (UTF-8); wpa_supplicant.conf carries at most {WPA_STRING_BYTES} "
            "here; shorten it"
        )
    return value


# A secret: every message about it names the key and the fix, never the value.
Secret = Annotated[str, BeforeValidator(_string_only)]
SecretText = Annotated[str, BeforeValidator(_string_only), AfterValidator(_check_secret_text)]


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

    to: Annotated[str, AfterValidator(_check_network)] = Field(
        description="The destination: \"default\" or a network in CIDR form with its host bits zero (`ip route`'s "
        "TO). An IPv6 link-local destination may name its interface after '%'.",
        examples=["default"],
    )
    via: Annotated[str, AfterValidator(_check_ip)] | None = Field(
        default=None,
        description="The gateway (`ip route`'s via). It must be reachable from an address declared on the same "
        "interface, unless it is IPv6 link-local (fe80::1%bond0). Its family decides whether \"default\" is "
        "IPv4 or IPv6. None: a route to a directly connected network.",
        examples=["192.168.0.1"],
    )
    metric: Annotated[int, Field(ge=0, le=4294967295)] | None = Field(
        default=None,
        description="The route's metric (`ip route`'s metric); lower wins. None: the kernel's default.",
        examples=[100],
    )

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

    addresses: list[InterfaceAddress] = Field(
        default=[],
        description="Static IPv4 and IPv6 addresses with their prefix length, added by static@IF.service: the "
        "article's ADDRS in network.conf (bond0ADDRS), its \"fail-safe\" address when DHCP fails. An IPv6 "
        "link-local address may name its interface after '%'.",
        examples=[["192.168.0.2/24", "fd00::2/64"]],
    )
    routes: list[Route] = Field(
        default=[],
        description="Static routes, each a table with to, via and metric, set by static@IF.service with "
        "`ip route replace`: the article's ROUTES in network.conf (bond0ROUTES).",
        examples=[[{"to": "default", "via": "192.168.0.1", "metric": 100}]],
    )
    dhcp4: bool = Field(
        default=False,
        description="Run ISC dhclient on this interface (dhclient@IF.service), as the article's DHCP section "
        "does for bond0.",
        examples=[True],
    )
    dhcp6: bool = Field(
        default=False,
        description="Run WIDE dhcp6c on this interface (dhcp6c@IF.service; dhclient6@IF.service with "
        "`dhclient -6` on Arch), as the article's DHCPv6 section does for bond0.",
        examples=[True],
    )


class Interface(Addressing):
    """A physical (or udev-named) network device: wired or wireless."""

    type: Literal["ethernet", "wireless"] = Field(
        description="What the device is. A wireless device runs wpa_supplicant (supplicant@IF.service) "
        "unless supplicant = false.",
        examples=["wireless"],
    )
    # None: a supplicant on wireless devices, none on wired; true on a wired one means 802.1X.
    supplicant: bool | None = Field(
        default=None,
        description="Run wpa_supplicant on this device (supplicant@IF.service). None: on wireless devices "
        "only. true on an ethernet device means wired 802.1X: wpa_supplicant's wired driver alone, on a file of "
        "its own (/etc/wpa_supplicant/wpa_supplicant-wired.conf) of the networks without an ssid, whose key_mgmt "
        "is IEEE8021X.",
        examples=[True],
    )

    def runs_supplicant(self) -> bool:
        return self.supplicant if self.supplicant is not None else self.type == "wireless"


class Bond(Addressing):
    """A kernel bonding master (drivers/net/bonding), configured as Documentation/networking/bonding."""

    members: list[IfName] = Field(
        min_length=1,
        description="The devices enslaved to the bond, each declared under [interfaces] and in no other "
        "master. Each gets slave@ hard-linked as MEMBER@.service (the article's slave configuration).",
        examples=[["enp3s0", "wlp2s0"]],
    )
    primary: IfName | None = Field(
        default=None,
        description="The member the bond prefers while its link is up: the article's PRIMARY in network.conf "
        "(bond0PRIMARY). Only for the modes active-backup, balance-tlb and balance-alb.",
        examples=["enp3s0"],
    )
    mode: BondMode = Field(
        default="active-backup",
        description="The kernel bonding mode (bonding.conf's mode; the article uses active-backup).",
        examples=["active-backup"],
    )
    miimon: Annotated[int, Field(ge=0, le=2147483647)] = Field(
        default=100,
        description="How often, in milliseconds, the bond checks each member's link (bonding.conf's miimon). "
        "0 turns link monitoring off.",
        examples=[100],
    )
    fail_over_mac: FailOverMac = Field(
        default="none",
        description="Which MAC the bond uses after a switch, in active-backup mode (bonding.conf's "
        "fail_over_mac). The article needs \"active\": the bond takes the active member's own MAC, since "
        "most wireless devices pass no traffic with another MAC.",
        examples=["active"],
    )
    primary_reselect: PrimaryReselect = Field(
        default="always",
        description="When the primary becomes active again after it comes back: always, only when it is "
        "better (speed, duplex), or only on a failure of the active member.",
        examples=["always"],
    )
    updelay: Annotated[int, Field(ge=0, le=2147483647)] = Field(
        default=0,
        description="Milliseconds a member's link must be up before the bond uses it; a multiple of miimon "
        "(the kernel would round it down silently). Gives a radio time for its WPA handshake.",
        examples=[2000],
    )
    downdelay: Annotated[int, Field(ge=0, le=2147483647)] = Field(
        default=0,
        description="Milliseconds a member's link must be down before the bond stops using it; a multiple "
        "of miimon.",
        examples=[0],
    )
    # Peer notifications after a switch: gratuitous ARPs and unsolicited IPv6 neighbour advertisements
    # (the kernel's num_unsol_na is the same counter). The kernel's default is 1, and that one is
    # skipped without a retry when the new active port's link event is still being processed, or
    # sent before a wlan's WPA handshake lets it through: the peer then keeps the old MAC until its
    # neighbour entry times out. See docs/design.md, "Three peer notifications after a switch".
    num_grat_arp: Annotated[int, Field(ge=0, le=255)] = Field(
        default=3,
        description="Peer notifications (gratuitous ARPs and unsolicited IPv6 neighbour advertisements) "
        "sent after a switch; the kernel's num_unsol_na is the same counter. The kernel's default is 1, "
        "which a pending link event or a wlan still in its handshake can swallow: see docs/design.md.",
        examples=[3],
    )
    # Milliseconds between them; None: miimon, the kernel's own default.
    peer_notif_delay: Annotated[int, Field(ge=0, le=300000)] | None = Field(
        default=None,
        description="Milliseconds between the peer notifications, a multiple of miimon (iproute2's "
        "peer_notify_delay). None: miimon, the kernel's own default.",
        examples=[100],
    )

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

    members: list[IfName] = Field(
        min_length=1,
        description="The devices attached to the bridge, each declared under [interfaces] and in no other "
        "master. The article makes a bridge of a master whose name contains \"br\"; here it is declared.",
        examples=[["eth0", "eth1"]],
    )
    stp: bool = Field(
        default=False,
        description="Run the spanning tree protocol on the bridge (stp_state).",
        examples=[True],
    )


def _check_dhcp_host_name(value: str) -> str:
    if value and not _DNS_NAME.fullmatch(value):
        raise ValueError(
            f"host_name {value!r} is not a DNS name; use labels of letters, digits and inner '-' "
            "separated by '.', or \"\" to send none"
        )
    return value


class Dhcp4(Strict):
    """Host-wide ISC dhclient settings (the seed's dhclient.conf); timings in seconds."""

    # ISC dhclient parses these as 32-bit numbers and warns off a larger one (a parse error in its file);
    # 31 bits keep them clear of any signed time as well.
    initial_interval: Annotated[int, Field(ge=1, le=2147483647)] = Field(
        default=2,
        description="Seconds between the first attempts to reach a server (dhclient.conf's initial-interval, "
        "as the article sets it).",
        examples=[2],
    )
    reboot: Annotated[int, Field(ge=0, le=2147483647)] = Field(
        default=5,
        description="Seconds dhclient tries to reacquire its old lease before it asks for a new one "
        "(dhclient.conf's reboot).",
        examples=[5],
    )
    timeout: Annotated[int, Field(ge=1, le=2147483647)] = Field(
        default=10,
        description="Seconds without an answer before dhclient gives up for a while (dhclient.conf's timeout).",
        examples=[10],
    )
    retry: Annotated[int, Field(ge=1, le=2147483647)] = Field(
        default=20,
        description="Seconds dhclient waits after a timeout before it tries again (dhclient.conf's retry).",
        examples=[20],
    )
    # None: the image's hostname. "" sends none.
    host_name: Annotated[str, AfterValidator(_check_dhcp_host_name)] | None = Field(
        default=None,
        description="The name sent to the server (dhclient.conf's send host-name), a DNS name. None: "
        "image.hostname. \"\" sends none.",
        examples=["laptop"],
    )
    # "duid": RFC 4361 identifier built from the host's DUID (the same one dhcp6c uses);
    # "mac": none sent, the server keys on the (changing, with fail_over_mac=active) MAC.
    client_identifier: Literal["duid", "mac"] = Field(
        default="duid",
        description="\"duid\": send an RFC 4361 client identifier made from the host's DUID, the one dhcp6c "
        "uses (dhclient.conf's send dhcp-client-identifier; the article asks for the two to be equal). "
        "\"mac\": send none, and the server keys on the MAC, which changes with fail_over_mac = \"active\".",
        examples=["duid"],
    )
    # Upper bound, in seconds, for waiting until a bond has an active slave before dhclient starts.
    wait_active_slave: Annotated[int, Field(ge=0, le=600)] = Field(
        default=60,
        description="The most seconds dhclient@ waits for a bond to have an active slave before it starts, "
        "in place of the article's sleep 8: only then is the bond's MAC final. No wait on other interfaces.",
        examples=[60],
    )


class PrefixDelegation(Strict):
    """Delegate a prefix from the upstream router to a downstream interface (dhcp6c's id-assoc pd)."""

    interface: IfName = Field(
        description="The downstream interface that gets a prefix of the delegated one (dhcp6c.conf's "
        "prefix-interface).",
        examples=["lan0"],
    )
    sla_id: Annotated[int, Field(ge=0, le=4294967295)] = Field(
        default=1,
        description="The site-level aggregation id: which subnet of the delegated prefix the interface gets "
        "(dhcp6c.conf's sla-id).",
        examples=[1],
    )
    sla_len: Annotated[int, Field(ge=0, le=128)] = Field(
        default=8,
        description="The bits of the subnet id added to the delegated prefix (dhcp6c.conf's sla-len).",
        examples=[8],
    )


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

    ia_na: bool = Field(
        default=True,
        description="Ask for a non-temporary address (dhcp6c.conf's send ia-na 1 and id-assoc na 1, as in "
        "the article).",
        examples=[True],
    )
    rapid_commit: bool = Field(
        default=True,
        description="Use the two-message exchange (dhcp6c.conf's send rapid-commit).",
        examples=[True],
    )
    request: list[Literal[DHCP6_OPTIONS]] = Field(  # type: ignore[valid-type]
        default=["domain-name-servers", "domain-name", "ntp-servers"],
        description="Options to ask the server for (dhcp6c.conf's request; the default is the article's list).",
        examples=[["domain-name-servers", "domain-name"]],
    )
    prefix_delegation: list[PrefixDelegation] = Field(
        default=[],
        description="Prefixes to ask for and hand to downstream interfaces (dhcp6c.conf's send ia-pd and "
        "id-assoc pd, commented out in the article). Each: interface, sla_id, sla_len.",
        examples=[[{"interface": "lan0", "sla_id": 1, "sla_len": 8}]],
    )
    # A dhcp6c-script to run on replies (Debian ships /etc/wide-dhcpv6/dhcp6c-script for resolv.conf).
    script: Annotated[str, AfterValidator(_check_script_path)] | None = Field(
        default=None,
        description="A program dhcp6c runs as root on every reply (dhcp6c.conf's script, commented out in "
        "the article); an absolute path in the image. Debian's /etc/wide-dhcpv6/dhcp6c-script writes "
        "resolv.conf. None: no script.",
        examples=["/etc/wide-dhcpv6/dhcp6c-script"],
    )


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


WpaString = Annotated[Text, Field(min_length=1), AfterValidator(_check_wpa_length)]
WpaSecretString = Annotated[SecretText, Field(min_length=1), AfterValidator(_check_wpa_length)]


class Eap(Strict):
    """802.1X credentials for key_mgmt WPA-EAP or IEEE8021X. Files are copied into the image."""

    method: Literal["PEAP", "TTLS", "TLS", "PWD"] = Field(
        description="The EAP method (wpa_supplicant's eap).",
        examples=["PEAP"],
    )
    identity: WpaString = Field(
        description="The identity to authenticate as (wpa_supplicant's identity).",
        examples=["alice@example.org"],
    )
    anonymous_identity: WpaString | None = Field(
        default=None,
        description="The outer identity sent in clear by tunnelled methods (wpa_supplicant's "
        "anonymous_identity). None: the identity itself.",
        examples=["anonymous@example.org"],
    )
    password: WpaSecretString | None = Field(
        default=None,
        description="The password (wpa_supplicant's password), written into the 0600 wpa_supplicant.conf. "
        "Prefer password_file, which keeps it out of the profile.",
        examples=["correct horse"],
    )
    password_file: Text | None = Field(
        default=None,
        description="A file holding the password alone on one line, relative to the profile file that names "
        "it. Methods other than TLS need exactly one of password and password_file.",
        examples=["secrets/eap-password.txt"],
    )
    phase2: WpaString | None = Field(
        default=None,
        description="The inner authentication of a tunnelled method (wpa_supplicant's phase2).",
        examples=["auth=MSCHAPV2"],
    )
    ca_cert: Text | None = Field(
        default=None,
        description="A file with the CA certificate that signed the server's, relative to the profile; "
        "copied into the image under /etc/wpa_supplicant/certs/ (wpa_supplicant's ca_cert).",
        examples=["certs/ca.pem"],
    )
    client_cert: Text | None = Field(
        default=None,
        description="A file with the client's certificate, for TLS; copied like ca_cert (wpa_supplicant's "
        "client_cert).",
        examples=["certs/laptop.pem"],
    )
    private_key: Text | None = Field(
        default=None,
        description="A file with the client's private key, for TLS; copied into the image with mode 0600 "
        "(wpa_supplicant's private_key).",
        examples=["certs/laptop.key"],
    )
    private_key_password: WpaSecretString | None = Field(
        default=None,
        description="The password of private_key (wpa_supplicant's private_key_passwd).",
        examples=["key secret"],
    )


class Network(Strict):
    """One network block of wpa_supplicant.conf."""

    ssid: Annotated[str, AfterValidator(_check_ssid)] | None = Field(
        default=None,
        description="The network's name, 1 to 32 bytes (wpa_supplicant's ssid; written in hex when it is not "
        "printable ASCII). Required, except for key_mgmt IEEE8021X: a network without an ssid is a wired 802.1X "
        "port's, which a wired interface with supplicant = true authenticates with (the first such network).",
        examples=["MyHome"],
    )
    # wpa_supplicant keeps a C int: a larger number would wrap round to a low, even negative, priority.
    priority: Annotated[int, Field(ge=-2147483648, le=2147483647)] = Field(
        default=0,
        description="Higher is preferred when several networks are in range (wpa_supplicant's priority).",
        examples=[2],
    )
    key_mgmt: KeyMgmt = Field(
        default="WPA-PSK",
        description="The key management: WPA-PSK (passphrase or psk), SAE (WPA3: passphrase or psk_file), "
        "WPA-EAP or IEEE8021X (an [eap] table), NONE (open).",
        examples=["SAE"],
    )
    proto: Literal["RSN", "WPA", "WPA RSN"] | None = Field(
        default=None,
        description="The protocols allowed (wpa_supplicant's proto). None: wpa_supplicant's default. The "
        "article warns that a protocol the base station does not speak makes the link unstable.",
        examples=["RSN"],
    )
    group: Literal["CCMP", "TKIP", "CCMP TKIP", "GCMP", "GCMP-256", "CCMP-256"] | None = Field(
        default=None,
        description="The group (broadcast) ciphers allowed (wpa_supplicant's group). None: its default.",
        examples=["CCMP"],
    )
    pairwise: Literal["CCMP", "TKIP", "CCMP TKIP", "GCMP", "GCMP-256", "CCMP-256"] | None = Field(
        default=None,
        description="The pairwise (unicast) ciphers allowed (wpa_supplicant's pairwise). None: its default.",
        examples=["CCMP"],
    )
    passphrase: Annotated[Secret, AfterValidator(_check_passphrase)] | None = Field(
        default=None,
        description="The passphrase, 8 to 63 printable ASCII characters. For WPA-PSK only the PSK derived from "
        "it reaches the image (as wpa_passphrase derives it; the article's commented #psk line is not "
        "written); SAE needs the passphrase itself (sae_password, in the 0600 file). WPA-PSK needs exactly "
        "one of passphrase, psk and psk_file; SAE one of passphrase and psk_file.",
        examples=["SuperSecret"],
    )
    psk: Annotated[Secret, AfterValidator(_check_psk)] | None = Field(
        default=None,
        description="The pre-shared key as 64 hex digits, as wpa_passphrase prints it (wpa_supplicant's psk).",
        examples=["404fe69d94ef522ba8e7a0c456a67a583c8f39ba0b29a3ac22ebe9494cf9992b"],
    )
    # A file holding a passphrase or a 64-hex PSK, relative to the profile that names it.
    psk_file: Text | None = Field(
        default=None,
        description="A file holding a passphrase or a 64-hex PSK alone on one line, relative to the profile "
        "file that names it: keeps the secret out of the profile. A regular file of at most 64 KiB.",
        examples=["secrets/home-wifi.txt"],
    )
    eap: Eap | None = Field(
        default=None,
        description="802.1X credentials, for key_mgmt WPA-EAP or IEEE8021X.",
        examples=[{"method": "PEAP", "identity": "alice@example.org", "password_file": "secrets/eap.txt",
                   "phase2": "auth=MSCHAPV2"}],
    )
    hidden: bool = Field(
        default=False,
        description="The network does not broadcast its SSID: probe for it by name (wpa_supplicant's scan_ssid=1).",
        examples=[True],
    )


def _check_group(value: str) -> str:
    # Debian's adduser rule for group names; wpa_supplicant takes the global value unquoted.
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError(
            f"ctrl_interface_group {value!r} is not a group name; use up to 32 lower-case letters, digits, "
            "'_' and '-', starting with a letter or '_' (e.g. netdev)"
        )
    return value


class Wireless(Strict):
    country: Annotated[str, AfterValidator(_check_country)] = Field(
        default="00",
        description="The regulatory domain, an ISO 3166-1 alpha-2 code (wpa_supplicant's country; the "
        "article's is US). \"00\": the world domain, the most restrictive.",
        examples=["US"],
    )
    # None: the distribution's group for network administration (Debian: netdev, Arch: wheel).
    ctrl_interface_group: Annotated[str, AfterValidator(_check_group)] | None = Field(
        default=None,
        description="The group allowed to control wpa_supplicant through its socket (wpa_supplicant's "
        "ctrl_interface_group). None: the distribution's network administration group, netdev on Debian "
        "and wheel on Arch (the article's wheel does not exist on Debian).",
        examples=["netdev"],
    )
    # Disable the legacy 802.11b rates, as the seed's supplicant unit does.
    disable_legacy_rates: bool = Field(
        default=True,
        description="Keep the radio off the legacy 802.11b bit rates while wpa_supplicant runs, as the "
        "article's supplicant@ does (`iw IF set bitrates legacy-2.4 6 9 12 18 24 36 48 54`; reset on stop).",
        examples=[False],
    )
    networks: list[Network] = Field(
        default=[],
        description="The networks the host may join, each a network block of wpa_supplicant.conf. Merge: a "
        "later layer's list replaces the earlier one as a whole: a layer that adds a network repeats the "
        "ones it keeps.",
        examples=[[{"ssid": "MyHome", "key_mgmt": "WPA-PSK", "psk_file": "secrets/home-wifi.txt"}]],
    )


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
    assert parts is not None
    if parts.username is not None or parts.password is not None:
        # The URL reaches mkosi's command line (/proc/PID/cmdline), build.log and the manifest, and so
        # would a password in it: the message does not repeat it either.
        raise ValueError(
            "mirror holds a user name or password (USER:PASSWORD@), which would be on mkosi's command line "
            "and in the build log and manifest; use a mirror or a local proxy that needs no login"
        )
    return value


# crypt(3): $id$[params$]salt$hash over crypt's alphabet ./0-9A-Za-z; the parameters of yescrypt
# (j9T) and sha-crypt (rounds=5000) add '=' and ','.
class Image(Strict):
    hostname: Annotated[str, AfterValidator(_check_hostname)] = Field(
        description="The host's name: 1-63 letters, digits and inner '-'. It names the image, its store "
        "entries (HOSTNAME-image), the result link (result-HOSTNAME), the host state file "
        "(HOSTNAME.state.toml) and, by default, the name dhclient sends (the article's host-name).",
        examples=["laptop"],
    )
    # None: the distribution of the machine that builds, as mkosi does.
    distribution: Distribution | None = Field(
        default=None,
        description="The target distribution: paths, groups and packages follow it. None: the distribution "
        "of the machine that builds, as mkosi does.",
        examples=["debian"],
    )
    # None: the distribution's default (or the building machine's release).
    release: Annotated[str, AfterValidator(check_release)] | None = Field(
        default=None,
        description="The release, a suite or code name (apt's Suites:). None: the distribution's default, or "
        "the building machine's release. Leave the key out for the default; \"\" is an error.",
        examples=["trixie"],
    )
    mirror: Annotated[str, AfterValidator(check_mirror_url)] | None = Field(
        default=None,
        description="The package mirror, an http://, https:// or file:/// URL (`imagegen build --mirror URL` "
        "overrides it). None: the building machine's own apt mirror. Not part of any store hash.",
        examples=["http://HOST/debian"],
    )
    # A crypt(3) hash as `mkpasswd` prints it; None locks root (log in through the console is then impossible).
    root_password_hash: Annotated[Secret, AfterValidator(check_crypt_hash)] | None = Field(
        default=None,
        description="root's password as a crypt(3) hash, as `mkpasswd -m yescrypt` prints it; never the "
        "password. None: root is locked.",
        examples=["$y$j9T$..."],
    )


class Profile(Strict):
    """The merged, validated host profile."""

    image: Image = Field(
        description="What image is built: host name, distribution, release, mirror, root password.",
        examples=[{"hostname": "laptop", "distribution": "debian", "release": "trixie"}],
    )
    interfaces: dict[DeviceName, Interface] = Field(
        default={},
        description="Network devices, by the name udev gives them: wired or wireless, enslaved to a bond or "
        "bridge or configured on their own. A name has 1-15 letters, digits and '_' (it becomes a "
        "network.conf variable name) and is not a unit template's. Merge: tables merge by name across layers.",
        examples=[{"enp3s0": {"type": "ethernet"}, "wlp2s0": {"type": "wireless"}}],
    )
    bonds: dict[DeviceName, Bond] = Field(
        default={},
        description="Kernel bonds, by name: created by master@NAME.service with their own options (the "
        "article's master configuration and bonding.conf). Merge: tables merge by name across layers.",
        examples=[{"bond0": {"members": ["enp3s0", "wlp2s0"], "primary": "enp3s0", "fail_over_mac": "active"}}],
    )
    bridges: dict[DeviceName, Bridge] = Field(
        default={},
        description="Linux bridges, by name: created by master@NAME.service, as the article does for a name "
        "containing \"br\". Merge: tables merge by name across layers.",
        examples=[{"br0": {"members": ["eth0", "eth1"], "dhcp4": True}}],
    )
    dhcp4: Dhcp4 = Field(
        default=Dhcp4(),
        description="Settings of ISC dhclient for every interface with dhcp4 = true: the article's "
        "/etc/dhclient.conf (Debian's /etc/dhcp/dhclient.conf).",
        examples=[{"timeout": 10, "client_identifier": "duid"}],
    )
    dhcp6: Dhcp6 = Field(
        default=Dhcp6(),
        description="Settings of WIDE dhcp6c for every interface with dhcp6 = true: the article's "
        "dhcp6c.conf, profile default.",
        examples=[{"ia_na": True, "rapid_commit": True}],
    )
    wireless: Wireless = Field(
        default=Wireless(),
        description="wpa_supplicant's settings and networks: the article's wpa_supplicant.conf, one file "
        "for every device that runs a supplicant (a wired 802.1X port reads a file of its own networks).",
        examples=[{"country": "US", "networks": [{"ssid": "MyHome", "passphrase": "SuperSecret"}]}],
    )
    packages: Packages = Field(default=Packages(), description="Packages to install and to leave out.",
                               examples=[{"install": ["openssh-server"], "remove": ["less"]}])
    groups: dict[AccountName, Group] = Field(
        default={}, description="Groups to create, by name. Merge: tables merge by name across layers.",
        examples=[{"kiosk": {"gid": 1500}}])
    users: dict[AccountName, User] = Field(
        default={}, description="Login accounts, by name; root stays locked unless image.root_password_hash "
        "is set. Merge: tables merge by name across layers, each user's keys as its own rules say.",
        examples=[{"alice": {"uid": 1000, "admin": True}}])
    services: dict[UnitName, Service] = Field(
        default={}, description="What the image does with systemd units, by unit name. Merge: tables merge "
        "by unit name across layers.", examples=[{"ssh.service": {"enable": True}}])
    files: dict[ImagePath, FileSpec] = Field(
        default={}, description="Files, directories and symbolic links put into the image, by absolute "
        "path. Merge: tables merge by path across layers.",
        examples=[{"/etc/motd": {"content": "Welcome.\n"}}])
    system: SystemSettings = Field(default=SystemSettings(), description="Time zone, locale, keymap, "
                                   "kernel command line and sysctl settings.",
                                   examples=[{"timezone": "Europe/Berlin"}])
    tests: Tests = Field(default=Tests(), description="The profile's own checks for `imagegen test`: test "
                         "files whose functions test_…(machine, lab) run after the built-in scenarios.",
                         examples=[{"scripts": ["tests/laptop_checks.py"]}])

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

    def wired_supplicant_interfaces(self) -> list[str]:
        """The ethernet interfaces that run a supplicant: wired 802.1X ports."""
        return [n for n in self.supplicant_interfaces() if self.interfaces[n].type == "ethernet"]

    def members_of_type(self, master: str, type_: str) -> list[str]:
        return [m for m in self.masters()[master].members if self.interfaces[m].type == type_]
