"""Checks of the laptop example (examples/laptop.toml) beyond the network scenarios: run by
`imagegen test examples/laptop.toml` after them, on the same booted lab VM."""


def test_bond_is_up_with_its_static_address(machine, lab):
    """The bond's master unit ran and the static fail-safe address is on the bond"""
    machine.wait_for_unit("master@bond0.service", timeout=300)
    out = machine.wait_until_succeeds("ip -br addr show bond0 | grep -F 192.168.0.2/24", timeout=120)
    assert "UP" in out, f"bond0 is not up: {out}"


def test_peer_reaches_the_laptop_over_the_bond(machine, lab):
    """The LAN side (the AP's namespace) pings the static address"""
    lab.peer.succeed("ping -n -c 3 -W 2 192.168.0.2")


def test_wireless_secrets_are_private(machine, lab):
    """wpa_supplicant.conf, which holds the PSK, is readable by root only"""
    mode = machine.succeed("stat -c '%a %U' /etc/wpa_supplicant/wpa_supplicant.conf").strip()
    assert mode == "600 root", f"mode and owner are {mode!r}"


def test_ssh_listens_and_refuses_passwords(machine, lab):
    """sshd runs, answers on port 22 and accepts keys only"""
    machine.wait_for_unit("ssh.service", timeout=300)
    machine.wait_for_open_port(22, timeout=120)
    config = machine.succeed("sshd -T")
    assert "passwordauthentication no" in config
    assert "permitrootlogin no" in config


def test_console_shows_a_login_prompt(machine, lab):
    """The serial console reached getty's login prompt"""
    machine.wait_for_console_text(r"laptop login:", timeout=300)


def test_evidence_can_be_kept(machine, lab):
    """A guest file is saved into the artifacts"""
    release = machine.copy_from_vm("/etc/os-release")
    assert "trixie" in release.read_text(), release.read_text()


def test_the_screen_shows_a_login_prompt(machine, lab):
    """getty on tty1 shows its login prompt on the VM's screen (virtio-gpu), read by OCR"""
    machine.wait_for_text(r"laptop login:", timeout=300)
    machine.screenshot("login-prompt")
    # A text console is light letters on black: the cheap check, without OCR.
    red, green, blue = machine.screen_color()
    assert max(red, green, blue) < 64, f"the screen is not a dark text console: rgb{(red, green, blue)}"
