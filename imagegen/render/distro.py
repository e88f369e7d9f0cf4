"""What differs between target distributions: where binaries live, groups, file locations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from imagegen.errors import UsageError
from imagegen.osrelease import OS_RELEASE
from imagegen.osrelease import os_release as read_os_release
from imagegen.profile.model import Image


@dataclass(frozen=True)
class Layout:
    name: str
    default_release: str
    # Every binary a rendered unit calls, by its absolute path in the image.
    bin: Mapping[str, str]
    netadmin_group: str
    dhclient_conf: str
    dhclient_leases: str
    # WIDE dhcp6c where the distribution packages it, ISC dhclient -6 elsewhere.
    dhcp6_unit: str
    dhcp6c_duid: str
    # Where dhclient-script sources imagegen's hook that keeps static@'s addresses when a lease goes
    # (templates/etc/dhcp/dhclient-enter-hooks.d/); "" where the script is not known to need it.
    dhclient_enter_hook: str = ""


_COMMON = {"sh": "/usr/bin/sh", "ip": "/usr/bin/ip", "sleep": "/usr/bin/sleep", "systemctl": "/usr/bin/systemctl"}

# Debian installs the network daemons and iw in /usr/sbin (measured on trixie).
DEBIAN = Layout(
    name="debian",
    default_release="trixie",
    bin=MappingProxyType({
        **_COMMON,
        **{tool: f"/usr/sbin/{tool}" for tool in ("iw", "wpa_supplicant", "wpa_cli", "dhclient", "dhcp6c", "dhcp6ctl")},
    }),
    netadmin_group="netdev",
    dhclient_conf="/etc/dhcp/dhclient.conf",
    dhclient_leases="/var/lib/dhcp",
    dhcp6_unit="dhcp6c",
    dhcp6c_duid="/var/lib/dhcpv6/dhcp6c_duid",
    dhclient_enter_hook="/etc/dhcp/dhclient-enter-hooks.d/imagegen-lease-only",
)

# Arch has one bin directory; wide-dhcpv6 is only in the AUR, so DHCPv6 runs through dhclient -6.
ARCH = Layout(
    name="arch",
    default_release="rolling",
    bin=MappingProxyType({
        **_COMMON,
        **{tool: f"/usr/bin/{tool}" for tool in ("iw", "wpa_supplicant", "wpa_cli", "dhclient")},
    }),
    netadmin_group="wheel",
    dhclient_conf="/etc/dhclient.conf",
    dhclient_leases="/var/lib/dhclient",
    dhcp6_unit="dhclient6",
    dhcp6c_duid="",
)

LAYOUTS = {layout.name: layout for layout in (DEBIAN, ARCH)}


@dataclass(frozen=True)
class Target:
    layout: Layout
    release: str

    @property
    def distribution(self) -> str:
        return self.layout.name


def host_distribution(os_release: Path = OS_RELEASE) -> tuple[str, str]:
    """(ID, VERSION_CODENAME) of the machine that builds, as mkosi defaults to it."""
    fields = read_os_release(os_release)
    return fields.get("ID", ""), fields.get("VERSION_CODENAME", "")


def resolve_target(image: Image, os_release: Path = OS_RELEASE) -> Target:
    distribution: str | None = image.distribution
    release = image.release
    if distribution is None:
        host_id, host_release = host_distribution(os_release)
        if host_id not in LAYOUTS:
            raise UsageError(
                f"image.distribution is not set and this machine runs {host_id or 'an unknown distribution'!r}",
                hint='set distribution = "debian" or "arch" in the [image] table',
            )
        distribution = host_id
        release = release or host_release or None
    layout = LAYOUTS[distribution]
    return Target(layout=layout, release=release or layout.default_release)
