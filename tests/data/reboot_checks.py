"""A reboot in the middle of a run (tests/test_vm_user_checks.py): the same VM comes back, its disk kept,
its serial console going on, its units and its screen up again."""


def test_a_reboot_brings_the_same_vm_back(machine, lab):
    """After machine.reboot() the agent answers a new boot, the disk kept what was written, the console goes on"""
    before = machine.succeed("cat /proc/sys/kernel/random/boot_id").strip()
    machine.succeed("echo kept > /var/lib/imagegen-reboot-marker && sync")
    banners = machine.serial_log.read_text(errors="replace").count("Linux version ")
    machine.reboot(timeout=900)
    assert machine.succeed("cat /proc/sys/kernel/random/boot_id").strip() != before, "no new boot"
    assert machine.succeed("cat /var/lib/imagegen-reboot-marker").strip() == "kept"
    # The same serial log: the second boot's kernel banner follows the first boot's lines.
    assert machine.serial_log.read_text(errors="replace").count("Linux version ") > banners
    machine.wait_for_unit("master@bond0.service", timeout=300)
    machine.wait_for_text(r"laptop login:", timeout=300)
