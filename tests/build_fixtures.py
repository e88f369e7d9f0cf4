"""A small overlay tree shaped like the renderer's (units, one hard-linked slave, enablement links, secrets).

Build tests use it where they must not depend on the renderer: the tree hash, the preset, the driver.
"""

from __future__ import annotations

import os
from pathlib import Path

SLAVE_UNIT = """[Unit]
Description=%P@%I Slave
Requires=master@%i.service
After=master@%i.service
BindsTo=sys-subsystem-net-devices-%p.device

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ip link set %P down ; /usr/bin/ip link set %P master %I ; /usr/bin/ip link set %P up

[Install]
WantedBy=master@%i.service
WantedBy=sys-subsystem-net-devices-%p.device
"""

MASTER_UNIT = """[Unit]
Description=%I Interface Master

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ip link add name %I type bond ; /usr/bin/ip link set %I up

[Install]
RequiredBy=dhclient@%i.service
"""


def _link(target: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def make_overlay(root: Path) -> Path:
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "slave@.service").write_text(SLAVE_UNIT)
    os.link(units / "slave@.service", units / "enp3s0@.service")
    os.link(units / "slave@.service", units / "wlp2s0@.service")
    (units / "master@.service").write_text(MASTER_UNIT)
    _link("../enp3s0@.service", units / "master@bond0.service.wants/enp3s0@bond0.service")
    _link("../wlp2s0@.service", units / "master@bond0.service.wants/wlp2s0@bond0.service")
    _link("../master@.service", units / "multi-user.target.wants/master@bond0.service")
    (root / "etc/modprobe.d").mkdir(parents=True)
    (root / "etc/modprobe.d/bonding.conf").write_text(
        "options bonding max_bonds=0 miimon=100 mode=active-backup fail_over_mac=active\n"
    )
    secret = root / "etc/wpa_supplicant/wpa_supplicant.conf"
    secret.parent.mkdir(parents=True)
    secret.write_text("ctrl_interface=/run/wpa_supplicant\nctrl_interface_group=netdev\n")
    secret.chmod(0o600)
    (root / "etc/hostname").write_text("laptop\n")
    return root
