"""The bridge-unplug scenario on a bridge whose member's unit is not wanted by the member's device (the
`WantedBy=sys-subsystem-net-devices-%p.device` link removed, as an image that lacks it would be): the NIC
plugged back in is not made a port again, and the scenario must fail for that reason. The link is put
back afterwards, so that what runs after this file sees the image as built."""

from imagegen.scenarios.catalog import bridge_unplug

LINK = "/etc/systemd/system/sys-subsystem-net-devices-enp3s0.device.wants/enp3s0@br0.service"


def test_bridge_unplug_without_the_device_s_wants_fails(machine, lab, results):
    target = machine.succeed(f"readlink {LINK}").strip()
    machine.succeed(f"rm {LINK}", "systemctl daemon-reload")
    try:
        bridge_unplug(machine, lab, results)
    finally:
        machine.succeed(f"ln -s {target} {LINK}", "systemctl daemon-reload")
        # The scenario left the NIC out of the bridge: make it a port again, as the image would have.
        machine.succeed("systemctl start enp3s0@br0.service")
