"""Checks of the laptop example (examples/laptop.toml) beyond the network scenarios: run by
`imagegen test examples/laptop.toml` after them, on the same booted lab VM."""

import shlex
import tomllib
from pathlib import Path

HERE = Path(__file__).parent
# The lab's test key. Its private half is in the repository, so no image may authorise it: the checks
# add it to alice's second key file (sshd reads ~/.ssh/authorized_keys2 too) in the test VM only.
KEY = HERE / "keys" / "lab-test-key"
GUEST_KEY = "/run/lab-test-key"
TEST_KEYS = "/home/alice/.ssh/authorized_keys2"
# The peer has never seen this machine, whose host keys are new at every first boot.
SSH = ("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
       "-o ConnectTimeout=30 -o LogLevel=ERROR")


def _declared_keys():
    return tomllib.loads((HERE.parent / "laptop.toml").read_text())["users"]["alice"]["ssh_authorized_keys"]


def _login(machine, lab, command="id -un"):
    """Run command as alice over SSH from the peer's side, with the lab's key; its stdout."""
    if machine.execute(f"test -s {GUEST_KEY}")[0] != 0:
        # The peer is a network namespace of the lab VM: the key goes into the guest, readable by root only.
        machine.succeed(f"umask 077; cat > {GUEST_KEY} <<'EOF'\n{KEY.read_text()}EOF")
        public = (HERE / "keys" / "lab-test-key.pub").read_text()
        machine.succeed(f"umask 077; cat > {TEST_KEYS} <<'EOF'\n{public}EOF\n"
                        f"chown alice:alice {TEST_KEYS}")
    address = lab.plan.probe_target()
    return lab.peer.succeed(f"{SSH} -i {GUEST_KEY} alice@{address} {shlex.quote(command)}")


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


def test_host_keys_are_made_on_the_machine(machine, lab):
    """The image has no SSH host keys: this machine made its own at boot, before sshd started"""
    machine.wait_for_unit("imagegen-ssh-host-keys.service", timeout=300)
    # The unit runs only where no key exists: on a fresh copy of the image it ran, so the image had none.
    shown = machine.succeed("systemctl show -p ConditionResult -p Result imagegen-ssh-host-keys.service")
    assert "ConditionResult=yes" in shown and "Result=success" in shown, shown
    machine.succeed("ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub")
    mode = machine.succeed("stat -c '%a %U' /etc/ssh/ssh_host_ed25519_key").strip()
    assert mode == "600 root", f"the private host key's mode and owner are {mode!r}"


def test_alice_s_keys_are_the_profile_s(machine, lab):
    """~/.ssh/authorized_keys holds the keys the profile declares, alice's and private to her"""
    mode = machine.succeed("stat -c '%a %U' /home/alice/.ssh/authorized_keys").strip()
    assert mode == "600 alice", f"mode and owner are {mode!r}"
    shipped = machine.succeed("cat /home/alice/.ssh/authorized_keys").splitlines()
    assert shipped == _declared_keys(), shipped
    # The image authorises no key of the lab's (the checks below add it, and run after this one).
    assert machine.execute(f"test -e {TEST_KEYS}")[0] != 0, f"the image ships {TEST_KEYS}"


def test_alice_logs_in_from_the_peer_with_her_key(machine, lab):
    """The peer logs in as alice over the bond with a key sshd accepts for her (the real OpenSSH client and server)"""
    machine.wait_for_unit("ssh.service", timeout=300)
    assert _login(machine, lab).strip() == "alice"


def test_password_login_is_refused(machine, lab):
    """sshd offers no password or keyboard-interactive login, even though alice has a password"""
    address = lab.plan.probe_target()
    status, out = lab.peer.execute(
        f"{SSH} -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive "
        f"alice@{address} true 2>&1")
    assert status == 255 and "Permission denied (publickey)" in out, (status, out)


def test_alice_logs_in_over_the_wireless_member_during_a_failover(machine, lab):
    """With the wired link down the bond is on the wlan, and the peer still logs in"""
    plan = lab.plan
    active = "grep -q 'Currently Active Slave: {}' /proc/net/bonding/" + plan.bond
    lab.wired(False)
    try:
        machine.wait_until_succeeds(active.format(plan.wireless), timeout=120)
        # alice reads the bond's state over the session the wlan carries.
        bonding = _login(machine, lab, f"cat /proc/net/bonding/{plan.bond}")
        assert f"Currently Active Slave: {plan.wireless}" in bonding, bonding
    finally:
        lab.wired(True)
    machine.wait_until_succeeds(active.format(plan.wired), timeout=120)


def test_alice_s_password_hash_is_set_at_boot(machine, lab):
    """imagegen-passwords.service put the profile's password_hash into /etc/shadow"""
    declared = tomllib.loads((HERE.parent / "laptop.toml").read_text())["users"]["alice"]["password_hash"]
    machine.wait_for_unit("imagegen-passwords.service", timeout=300)
    assert machine.succeed("getent shadow alice | cut -d: -f2").strip() == declared


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
