"""The lab around the image: which QEMU NIC and which hwsim radio play the profile's interfaces,
and the access point (hostapd + dnsmasq in network namespace `ap`) that the bond talks to.

Everything profile-specific here is derived from the profile, so the lab tests the profile's own names,
SSID and key; only the lab's hardware (MACs, the AP's own names) is fixed.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2

from imagegen.errors import UsageError
from imagegen.profile.load import LoadedProfile
from imagegen.profile.model import Addressing, Network, Profile, has_control
from imagegen.render.plan import WIRED_SUPPLICANT_CONF, cert_target, eap_password, psk_file_secret
from imagegen.vm.qemu import Nic

# The QEMU side. NIC ids are what QMP set_link/device_del name.
WIRED_NIC = Nic(id="nic-wired", mac="52:54:00:12:00:01", netdev="hub-wired", port="rp-wired", chassis=1)
UPLINK_NIC = Nic(id="nic-uplink", mac="52:54:00:12:00:02", netdev="hub-uplink", port="rp-uplink", chassis=2)
LAB_NICS = (WIRED_NIC, UPLINK_NIC)
# A second bond of two ethernet NICs (a profile with two masters) gets two NICs more, on the same hub.
SECOND_NICS = (Nic(id="nic-second-a", mac="52:54:00:12:00:03", netdev="hub-second-a", port="rp-second-a", chassis=3),
               Nic(id="nic-second-b", mac="52:54:00:12:00:04", netdev="hub-second-b", port="rp-second-b", chassis=4))

# mac80211_hwsim gives radio N the permanent address 02:00:00:00:NN:00.
STATION_RADIO_MAC = "02:00:00:00:00:00"
AP_RADIO_MAC = "02:00:00:00:01:00"
AP_IFNAME = "labap0"
UPLINK_IFNAME = "labuplink"
AP_NETNS = "ap"
AP_BRIDGE = "br0"

# Units of the lab (overlays/lab), as the scenarios refer to them.
AP_UNIT = "imagegen-lab-ap.service"
HOSTAPD_UNIT = "imagegen-lab-hostapd.service"
DNSMASQ_UNIT = "imagegen-lab-dnsmasq.service"
# Where the lab keeps its state in the guest: dnsmasq's leases, the outage probes' logs.
LAB_RUN = "/run/imagegen-lab"

# Used only when the bond has no static address of that family to put the AP's subnet next to.
DEFAULT_SUBNET4 = ipaddress.IPv4Network("192.168.77.0/24")
DEFAULT_SUBNET6 = ipaddress.IPv6Network("fd6c:6162:0:1::/64")

TEMPLATES = Path(__file__).parent / "templates" / "lab"
# The lab's files that only a plan with a wireless member has, and those only a plan with a second bond has.
NEEDS_WIRELESS = ("10-imagegen-lab-station.link", "hostapd.conf")
NEEDS_SECOND = ("10-imagegen-lab-second-a.link", "10-imagegen-lab-second-b.link")
NEEDS_WIRED_AUTH = ("hostapd-wired.conf", "hostapd-wired.eap_user")
# The lab's switch port: hostapd's wired driver with its own EAP server, on the uplink in netns ap.
AUTHENTICATOR_UNIT = "imagegen-lab-authenticator.service"
AUTHENTICATOR_CTRL = "/run/imagegen-lab/hostapd-wired"
# The inner methods hostapd's eap_user file names for wpa_supplicant's phase2 of PEAP and TTLS.
PHASE2_METHODS = {
    "PEAP": {"auth=MSCHAPV2": "MSCHAPV2", "auth=GTC": "GTC", "auth=MD5": "MD5"},
    "TTLS": {"auth=MSCHAPV2": "TTLS-MSCHAPV2", "auth=MSCHAP": "TTLS-MSCHAP", "auth=PAP": "TTLS-PAP",
             "auth=CHAP": "TTLS-CHAP", "autheap=MSCHAPV2": "MSCHAPV2", "autheap=GTC": "GTC",
             "autheap=MD5": "MD5"},
}


@dataclass(frozen=True)
class AccessPoint:
    ssid: str
    key_mgmt: str  # WPA-PSK, SAE or NONE
    wpa: int  # hostapd's wpa= bit mask: 1 WPA, 2 RSN
    pairwise: str
    passphrase: str | None
    psk: str | None
    country: str


@dataclass(frozen=True)
class WiredAuth:
    """The wired 802.1X port the lab plays: the member that runs a supplicant, and the credentials of the
    profile's network without an ssid (the one wpa_supplicant's wired driver authenticates with), which
    the lab's authenticator is given so that it accepts them and nothing else."""

    port: str
    method: str  # PEAP or TTLS
    identity: str
    password: str
    inner: str  # the inner method as hostapd's eap_user file names it (MSCHAPV2, TTLS-PAP, ...)
    # Where the image keeps the network's ca_cert: the lab mounts its own CA, made at boot, over it (it cannot
    # sign with the profile's). None: the profile trusts any server certificate.
    ca_cert: str | None
    # The port's own wpa_supplicant.conf in the image (it holds the networks without an ssid alone).
    conf: str = f"/{WIRED_SUPPLICANT_CONF}"


@dataclass(frozen=True)
class SecondBond:
    """A second master beside the one the lab plays: a bond of two ethernet NICs, with options of its own
    and a static address in a subnet of its own, which the AP is given an address in too."""

    name: str
    members: tuple[str, str]
    primary: str | None
    miimon: int
    fail_over_mac: str
    primary_reselect: str
    static4: ipaddress.IPv4Interface
    ap_addr4: ipaddress.IPv4Interface

    @property
    def nics(self) -> dict[str, Nic]:
        """Which QEMU NIC plays which member."""
        return dict(zip(self.members, SECOND_NICS, strict=True))


@dataclass(frozen=True)
class LabPlan:
    """The lab for one profile: who plays which interface, and what the AP serves.

    Two kinds of master: the seed's bond of one ethernet and one wireless member (kind "bond"), or a bridge
    over one ethernet NIC (kind "bridge": no wireless member, no access point to associate with; the AP's
    network namespace still serves DHCP on the wire). Beside a bond, a second bond of two ethernet NICs
    (`second`) gets two lab NICs of its own."""

    # The master's name, a bond's or a bridge's (the field keeps the seed's word the scenarios use).
    bond: str
    wired: str
    wireless: str | None
    primary: str | None
    fail_over_mac: str
    static4: tuple[ipaddress.IPv4Interface, ...]
    static6: tuple[ipaddress.IPv6Interface, ...]
    dhcp4: bool
    dhcp6: bool
    ap: AccessPoint | None
    subnet4: ipaddress.IPv4Network
    subnet6: ipaddress.IPv6Network
    ap_addr4: ipaddress.IPv4Interface
    ap_addr6: ipaddress.IPv6Interface
    # The peer notifications the bond is declared to send after a switch, and their spacing (ms).
    num_grat_arp: int = 1
    peer_notif_delay: int = 0
    kind: str = "bond"
    # The profile's other bond of two ethernet NICs, if it declares one (two masters, each failing over
    # on its own); None: one master.
    second: SecondBond | None = None
    miimon: int = 100
    # The wired member's 802.1X port, if it runs a supplicant (supplicant = true on an ethernet NIC).
    wired_auth: WiredAuth | None = None

    @property
    def nics(self) -> tuple[Nic, ...]:
        """The QEMU NICs of this lab: the wired NIC and the AP's uplink, and a second bond's two."""
        return LAB_NICS + (tuple(self.second.nics.values()) if self.second else ())

    @property
    def radio(self) -> str:
        """The wireless member, for what only a bond with a radio has (a bridge's lab has none)."""
        if self.wireless is None:
            raise UsageError(f"{self.kind} {self.bond} has no wireless member: the lab has no radio to drive",
                             "drive the radio only on a profile whose bond has a wireless member")
        return self.wireless

    @property
    def section(self) -> str:
        """The profile's table of the master: `bonds` or `bridges`."""
        return f"{self.kind}s"

    @property
    def wired_nic(self) -> Nic:
        return WIRED_NIC

    def probe_target(self) -> str:
        """The master's address the AP pings: the static fail-safe address, present whichever member
        carries the traffic."""
        if self.static4:
            return str(self.static4[0].ip)
        raise UsageError(f"{self.kind} {self.bond} has no static IPv4 address to probe",
                         f"add one to {self.section}.{self.bond}.addresses, e.g. \"192.168.0.2/24\"")


def _choose_network(profile: Profile) -> Network:
    usable = [n for n in profile.wireless.networks
              if n.ssid and n.key_mgmt in ("WPA-PSK", "SAE", "NONE") and not n.hidden]
    if not usable:
        raise UsageError("the lab needs a wireless network it can play: none in wireless.networks has an "
                         "ssid and key_mgmt WPA-PSK, SAE or NONE",
                         "add such a [[wireless.networks]] entry (802.1X networks cannot be emulated)")
    return max(usable, key=lambda n: n.priority)


def lab_profile(loaded: LoadedProfile) -> Profile:
    """The profile as the lab plays it: a network's psk_file read (relative to the profile that names
    it) into its passphrase or psk, and an EAP password_file into the password, since the AP and the
    authenticator need the key itself, as the image's supplicant does."""
    profile = loaded.profile
    networks = list(profile.wireless.networks)
    for i, net in enumerate(networks):
        if net.psk_file is not None and net.key_mgmt in ("WPA-PSK", "SAE"):
            kind, value = psk_file_secret(loaded, i)
            networks[i] = net.model_copy(update={kind: value, "psk_file": None})
        elif net.eap is not None and net.eap.password_file is not None:
            eap = net.eap.model_copy(update={"password": eap_password(loaded, i), "password_file": None})
            networks[i] = net.model_copy(update={"eap": eap})
    return profile.model_copy(update={"wireless": profile.wireless.model_copy(update={"networks": networks})})


def _access_point(profile: Profile, net: Network) -> AccessPoint:
    assert net.ssid is not None
    wpa = {"WPA": 1, "RSN": 2, "WPA RSN": 3, None: 2}[net.proto]
    pairwise = net.pairwise or "CCMP"
    if net.key_mgmt != "NONE" and net.passphrase is None and net.psk is None:
        raise UsageError(f"wireless network {net.ssid!r} gives its key as psk_file, which this lab plan has "
                         "not read", "plan the lab from lab_profile(loaded), which reads it")
    if net.key_mgmt == "SAE" and net.passphrase is None:
        raise UsageError(f"wireless network {net.ssid!r} uses SAE, which needs a passphrase",
                         "set passphrase for it")
    return AccessPoint(ssid=net.ssid, key_mgmt=net.key_mgmt, wpa=wpa, pairwise=pairwise,
                       passphrase=net.passphrase, psk=net.psk, country=profile.wireless.country)


def plan_lab(profile: Profile) -> LabPlan:
    """The lab for the first bond with one ethernet and one wireless member (the seed's shape), else for
    the first bridge over exactly one ethernet NIC."""
    for name in profile.bonds:
        wired = profile.members_of_type(name, "ethernet")
        wireless = profile.members_of_type(name, "wireless")
        if len(wired) == 1 and len(wireless) == 1:
            bond = profile.bonds[name]
            plan = _addressed(
                name, bond, wired=wired[0], wireless=wireless[0], primary=bond.primary,
                fail_over_mac=bond.fail_over_mac, ap=_access_point(profile, _choose_network(profile)),
                num_grat_arp=bond.num_grat_arp, peer_notif_delay=bond.peer_notif_delay_ms(), kind="bond",
                miimon=bond.miimon)
            return replace(plan, second=_second_bond(profile, plan), wired_auth=_wired_auth(profile, wired[0]))
    for name, bridge in profile.bridges.items():
        wired = profile.members_of_type(name, "ethernet")
        if len(wired) == 1 and len(bridge.members) == 1:
            plan = _addressed(name, bridge, wired=wired[0], wireless=None, primary=None, fail_over_mac="none",
                              ap=None, num_grat_arp=0, peer_notif_delay=0, kind="bridge")
            return replace(plan, wired_auth=_wired_auth(profile, wired[0]))
    raise UsageError("the lab needs a bond with exactly one ethernet and one wireless member, or a bridge "
                     "over exactly one ethernet NIC",
                     "declare one in [bonds.NAME] or [bridges.NAME] members (the lab has one NIC and one radio)")


def _wired_auth(profile: Profile, port: str) -> WiredAuth | None:
    """The 802.1X port of the wired member, if it runs a supplicant: the credentials of the first network
    without an ssid, as the lab's authenticator must accept them."""
    if not profile.interfaces[port].runs_supplicant():
        return None
    found = [(i, n) for i, n in enumerate(profile.wireless.networks) if n.ssid is None and n.eap is not None]
    if not found:
        raise UsageError(f"{port} runs a supplicant, and no network without an ssid gives it 802.1X credentials",
                         "add a [[wireless.networks]] entry with key_mgmt = \"IEEE8021X\", no ssid and an [eap] table")
    index, net = found[0]
    eap = net.eap
    assert eap is not None
    where = f"wireless.networks[{index}].eap"
    inner = PHASE2_METHODS.get(eap.method, {}).get(eap.phase2 or ("auth=MSCHAPV2" if eap.method == "PEAP" else ""))
    if inner is None:
        raise UsageError(f"the lab's authenticator plays PEAP and TTLS with a password; {where} is "
                         f"{eap.method} with phase2 {eap.phase2 or 'unset'}",
                         f"test it with method PEAP or TTLS and phase2 one of "
                         f"{', '.join(sorted({k for m in PHASE2_METHODS.values() for k in m}))}")
    if eap.password is None:
        raise UsageError(f"{where} gives its password as password_file, which this lab plan has not read",
                         "plan the lab from lab_profile(loaded), which reads it")
    # hostapd's eap_user file takes identities and passwords between double quotes, with no escape.
    if '"' in eap.identity or '"' in eap.password:
        raise UsageError(f"{where}: the lab's authenticator cannot hold an identity or password with a double "
                         "quote (hostapd's eap_user file has no escape for it)",
                         "test with credentials without a double quote")
    ca = f"/{cert_target(index, 'ca_cert', eap.ca_cert)}" if eap.ca_cert is not None else None
    return WiredAuth(port=port, method=eap.method, identity=eap.identity, password=eap.password, inner=inner,
                     ca_cert=ca)


def _second_bond(profile: Profile, plan: LabPlan) -> SecondBond | None:
    """The profile's first other bond of exactly two ethernet members, if any, as the lab plays it."""
    for name, bond in profile.bonds.items():
        wired = profile.members_of_type(name, "ethernet")
        if name == plan.bond or len(wired) != 2 or len(bond.members) != 2:
            continue
        static4 = [i for i in map(ipaddress.ip_interface, bond.addresses) if isinstance(i, ipaddress.IPv4Interface)]
        if not static4 or static4[0].network.overlaps(plan.subnet4):
            raise UsageError(f"the lab plays bond {name} beside {plan.bond} and needs a static IPv4 address of its "
                             f"own, in another subnet than {plan.subnet4}",
                             f"add one to bonds.{name}.addresses, e.g. \"10.20.0.2/24\"")
        if bond.dhcp4 or bond.dhcp6:
            raise UsageError(f"the lab's DHCP server serves {plan.bond}'s subnet only, so bond {name} cannot "
                             "use DHCP in it", f"set bonds.{name}.dhcp4 and dhcp6 to false")
        ap4 = next(h for h in static4[0].network.hosts() if h != static4[0].ip)
        return SecondBond(name=name, members=(wired[0], wired[1]), primary=bond.primary, miimon=bond.miimon,
                          fail_over_mac=bond.fail_over_mac, primary_reselect=bond.primary_reselect,
                          static4=static4[0], ap_addr4=ipaddress.IPv4Interface(f"{ap4}/{static4[0].network.prefixlen}"))
    return None


def _addressed(name: str, master: Addressing, *, kind: str, wired: str, wireless: str | None, primary: str | None,
               fail_over_mac: str, ap: AccessPoint | None, num_grat_arp: int, peer_notif_delay: int,
               miimon: int = 100) -> LabPlan:
    """The plan of master `name`, with the AP's subnets put next to its static addresses."""
    ifaces = [ipaddress.ip_interface(a) for a in master.addresses]
    static4 = tuple(i for i in ifaces if isinstance(i, ipaddress.IPv4Interface))
    static6 = tuple(i for i in ifaces if isinstance(i, ipaddress.IPv6Interface))
    subnet4 = static4[0].network if static4 else DEFAULT_SUBNET4
    subnet6 = static6[0].network if static6 and static6[0].network.prefixlen == 64 else DEFAULT_SUBNET6
    taken = {i.ip for i in ifaces}
    ap4 = next(h for h in subnet4.hosts() if h not in taken)
    ap6 = next(h for h in subnet6.hosts() if h not in taken)
    if subnet4.num_addresses < 16:
        raise UsageError(f"{name}'s subnet {subnet4} is too small for the lab's DHCP range", "use a /28 or larger")
    return LabPlan(
        bond=name, static4=static4, static6=static6, dhcp4=master.dhcp4, dhcp6=master.dhcp6,
        subnet4=subnet4, subnet6=subnet6,
        ap_addr4=ipaddress.IPv4Interface(f"{ap4}/{subnet4.prefixlen}"),
        ap_addr6=ipaddress.IPv6Interface(f"{ap6}/{subnet6.prefixlen}"),
        kind=kind, wired=wired, wireless=wireless, primary=primary, fail_over_mac=fail_over_mac, ap=ap,
        num_grat_arp=num_grat_arp, peer_notif_delay=peer_notif_delay, miimon=miimon,
    )


def _dhcp_range4(plan: LabPlan) -> tuple[str, str]:
    hosts = list(plan.subnet4.hosts()) if plan.subnet4.num_addresses <= 65536 else []
    if not hosts:
        first = plan.subnet4.network_address + 256
        return str(first), str(first + 99)
    half = hosts[len(hosts) // 2:]
    taken = {i.ip for i in plan.static4} | {plan.ap_addr4.ip}
    free = [h for h in half if h not in taken][:100]
    return str(free[0]), str(free[-1])


def _one_line(value: object) -> object:
    """The lab's files (hostapd, dnsmasq, .link, an env file) are all `key=value` lines read to the end
    of the line: a printed value is safe as long as it cannot end its line. The profile's checks refuse
    such text long before; this makes a template that prints something unchecked fail, not ship."""
    text = str(value)
    if has_control(text):
        raise ValueError(f"a lab template printed a value with a line break or control character: {text!r}")
    return value


def render_lab_overlay(profile: Profile, out_dir: Path) -> list[Path]:
    """Write the profile-specific lab files into out_dir (an ExtraTrees source); returns what it wrote."""
    plan = plan_lab(profile)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, finalize=_one_line)
    env.filters["hex"] = lambda s: s.encode().hex()
    lo4, hi4 = _dhcp_range4(plan)
    context = {
        "plan": plan, "ap_ifname": AP_IFNAME, "uplink_ifname": UPLINK_IFNAME, "netns": AP_NETNS,
        "bridge": AP_BRIDGE, "authenticator_ctrl": AUTHENTICATOR_CTRL, "wired_mac": WIRED_NIC.mac,
        "uplink_mac": UPLINK_NIC.mac,
        "station_mac": STATION_RADIO_MAC, "ap_radio_mac": AP_RADIO_MAC, "second_nics": SECOND_NICS,
        "dhcp4_low": lo4, "dhcp4_high": hi4,
        "dhcp6_low": str(plan.subnet6.network_address + 0x100),
        "dhcp6_high": str(plan.subnet6.network_address + 0x1ff),
    }
    written: list[Path] = []
    for tpl in sorted(TEMPLATES.rglob("*.j2")):
        rel = tpl.relative_to(TEMPLATES).with_suffix("")
        # A bridge's lab has no station to name and no AP to run (its hostapd unit needs this file).
        if (plan.wireless is None and rel.name in NEEDS_WIRELESS or plan.second is None and rel.name in NEEDS_SECOND
                or plan.wired_auth is None and rel.name in NEEDS_WIRED_AUTH):
            continue
        text = env.get_template(tpl.relative_to(TEMPLATES).as_posix()).render(**context)
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(text)
        # The PSK and passphrase sit in hostapd.conf, the EAP password in hostapd-wired.eap_user: readable by
        # root only, as in production.
        os.chmod(tmp, 0o600 if "hostapd" in rel.name else 0o644)
        tmp.replace(dest)
        written.append(dest)
    return written
