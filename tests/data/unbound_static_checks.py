"""The master-restart scenario on a bond whose static@ is not bound to master@ (its RequiredBy= link
removed, as an image that lacks it would be): the teardown-order check must fail, for that reason alone.
The link is put back afterwards, so that the checks after this file see the image as built."""

from imagegen.scenarios.catalog import master_restart

LINK = "/etc/systemd/system/static@bond0.service.requires/master@bond0.service"


def test_master_restart_without_static_s_requiredby_fails(machine, lab, results):
    target = machine.succeed(f"readlink {LINK}").strip()
    machine.succeed(f"rm {LINK}", "systemctl daemon-reload")
    try:
        master_restart(machine, lab, results)
    finally:
        machine.succeed(f"ln -s {target} {LINK}", "systemctl daemon-reload")
