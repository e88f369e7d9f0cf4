"""The arguments and options more than one command takes, each defined once, with its one meaning."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:
    from imagegen.vm.accel import AccelRequest

PROFILE_PANEL = "Profiles"
IMAGE_PANEL = "Images"
TEST_PANEL = "Tests"
STORE_PANEL = "Store"
CACHE_PANEL = "Binary caches"
HOST_PANEL = "This host"

Profiles = Annotated[
    list[Path],
    typer.Argument(help="Host profile TOML files; later files override earlier ones key by key, lists replace.",
                   show_default=False),
]
StateFile = Annotated[
    Path | None,
    typer.Option("--state", help="Host state file (DUID, dhcp6c key). Default: HOSTNAME.state.toml beside the "
                 "last profile; created on first use, mode 0600.", show_default=False),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", envvar="IMAGEGEN_STORE", show_envvar=True, show_default=False,
                 help="Store directory. Default: $XDG_CACHE_HOME/imagegen/store, else ~/.cache/imagegen/store."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (messages go to stderr).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")]


class Accel(enum.StrEnum):
    auto = "auto"
    kvm = "kvm"
    tcg = "tcg"

    @property
    def request(self) -> AccelRequest:
        return cast("AccelRequest", self.value)


AccelOpt = Annotated[Accel, typer.Option("--accel", help="auto: KVM only if a short real boot works, else TCG.")]
ImageOpt = Annotated[
    Path | None,
    typer.Option("--image", show_default=False,
                 help="Directory (or result link) with image.raw, image.vmlinuz, image.initrd. Default: the "
                 "profile's lab image in the store, built when its inputs changed."),
]
UefiOpt = Annotated[bool, typer.Option("--uefi", help="Boot through OVMF and the image's ESP instead of direct "
                                       "kernel boot (slower).")]
SubstituterOpt = Annotated[
    list[str] | None,
    typer.Option("--substituter", show_default=False,
                 help="Binary cache to fetch entries from before building them (repeatable; also "
                 "$IMAGEGEN_SUBSTITUTERS and ~/.config/imagegen/cache.toml)."),
]
SubstituteOnlyOpt = Annotated[
    bool,
    typer.Option("--substitute-only", help="Fail instead of building an image or running the scenarios when no "
                 "substituter has a verified copy."),
]


class Scenario(enum.StrEnum):
    """The catalog's scenarios, in its order (imagegen.scenarios.catalog, which is slow to import for a
    command line's choices; a test keeps the two the same)."""

    boot_wired_primary = "boot-wired-primary"
    bridge_boot = "bridge-boot"
    bridge_unplug = "bridge-unplug"
    wired_8021x = "wired-8021x"
    failover = "failover"
    failback = "failback"
    wifi_only_boot = "wifi-only-boot"
    hotplug = "hotplug"
    ap_lost = "ap-lost"
    rfkill = "rfkill"
    dhclient_release = "dhclient-release"
    static_edit = "static-edit"
    supplicant_restart = "supplicant-restart"
    master_restart = "master-restart"
    card_insert = "card-insert"
    two_masters = "two-masters"
    clean_shutdown = "clean-shutdown"


ScenarioOpt = Annotated[
    list[Scenario] | None,
    typer.Option("--scenario", show_default=False, help="Run only this scenario (repeatable)."),
]
