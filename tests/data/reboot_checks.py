"""A reboot in the middle of a run (tests/test_vm_user_checks.py): the same VM comes back, its disk kept,
its serial console going on, its screen showing the new boot's login prompt."""


def test_a_reboot_brings_the_same_vm_back(machine, lab):
    """After machine.reboot() the agent answers, the disk kept what was written, the console goes on"""
    machine.wait_for_console_text(r"Linux version \S+", timeout=60)  # the first boot's banner
    before = machine.succeed("cat /proc/sys/kernel/random/boot_id").strip()
    machine.succeed("echo kept > /var/lib/imagegen-reboot-marker && sync")
    machine.reboot(timeout=900)
    assert machine.succeed("cat /proc/sys/kernel/random/boot_id").strip() != before, "no new boot"
    assert machine.succeed("cat /var/lib/imagegen-reboot-marker").strip() == "kept"
    # The same serial log: the second boot's banner and login prompt come after the first's.
    machine.wait_for_console_text(r"Linux version \S+", timeout=60)
    machine.wait_for_console_text(r"login:", timeout=300)
    machine.wait_for_unit("master@bond0.service", timeout=300)
    machine.wait_for_text(r"laptop login:", timeout=300)
