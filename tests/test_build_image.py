"""Build examples/laptop.toml with mkosi and look inside the image without booting it (slow: minutes)."""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from imagegen.cli.image import build_profile
from imagegen.image.config import repo_root
from imagegen.image.inspect import mounted_partition
from imagegen.image.mkosi import ROOT_PARTLABEL, BuildResult

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mkosi image builds and loop mounts need root"),
]

EXAMPLE = repo_root() / "examples/laptop.toml"
UNITS = "etc/systemd/system"
EXEC_KEYS = re.compile(r"^(ExecStart|ExecStartPre|ExecStartPost|ExecStop|ExecStopPost|ExecReload)\s*=\s*(.*)$")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The state file (DUID, dhcp6c key) is copied, so the test never writes beside the example.
    d = tmp_path_factory.mktemp("laptop")
    shutil.copy(EXAMPLE, d / "laptop.toml")
    state = EXAMPLE.with_name("laptop.state.toml")
    if state.exists():
        shutil.copy(state, d / "laptop.state.toml")
    return d


@pytest.fixture(scope="module")
def built(workdir: Path) -> BuildResult:
    return build_profile([workdir / "laptop.toml"], out=workdir / "image")


@pytest.fixture(scope="module")
def root(built: BuildResult) -> Iterator[Path]:
    with mounted_partition(built.image, ROOT_PARTLABEL) as mnt:
        yield mnt


def in_image(root: Path, path: str) -> Path:
    """Resolve a path as the image would, symlinks (merged /usr: /sbin -> usr/sbin) staying inside root."""
    parts = deque(p for p in path.split("/") if p)
    current = PurePosixPath("/")
    hops = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        host = root / (current / part).relative_to("/")
        if host.is_symlink():
            hops += 1
            assert hops < 40, f"symlink loop at {path}"
            target = os.readlink(host)
            if target.startswith("/"):
                current = PurePosixPath("/")
            parts.extendleft(reversed([p for p in target.split("/") if p]))
            continue
        current = current / part
    return root / current.relative_to("/")


def unit_commands(text: str) -> list[str]:
    """Every absolute program path an Exec line runs, including those inside `;` chains and `sh -c`."""
    joined = re.sub(r"\\\n", " ", text)
    programs = []
    for line in joined.splitlines():
        m = EXEC_KEYS.match(line.strip())
        if not m:
            continue
        for word in re.findall(r"(?:^|[\s;'\"`|(])[-@+!:]*(/(?:usr/)?s?bin/[\w.-]+)", " " + m.group(2)):
            programs.append(word)
    return sorted(set(programs))


def test_outputs_and_manifest(built: BuildResult) -> None:
    m = built.manifest
    for path in (built.image, built.kernel, built.initrd, built.out_dir / "manifest.json"):
        assert path.is_file() and path.stat().st_size > 0, path
    assert m.distribution == "debian" and m.release == "trixie" and m.mkosi_version == "25.3"
    names = {p.name for p in m.packages}
    assert {"linux-image-amd64", "wpasupplicant", "isc-dhcp-client", "wide-dhcpv6-client", "iw"} <= names
    assert "qemu-guest-agent" not in names, "the plain image must not carry lab packages"
    assert (built.out_dir / "build.log").is_file()


def test_bonding_options_from_profile(root: Path) -> None:
    text = (root / "etc/modprobe.d/bonding.conf").read_text()
    for option in ("mode=active-backup", "miimon=100", "fail_over_mac=active"):
        assert option in text


def test_slave_unit_names_are_one_inode(root: Path) -> None:
    inodes = {(root / UNITS / name).stat().st_ino for name in ("slave@.service", "enp3s0@.service",
                                                                "wlp2s0@.service")}
    assert len(inodes) == 1


def test_image_carries_exactly_the_rendered_enablement_links(root: Path, built: BuildResult,
                                                             workdir: Path) -> None:
    from imagegen.profile import load_profiles
    from imagegen.render import host_state_for, render_overlay

    loaded = load_profiles([workdir / "laptop.toml"])
    overlay = workdir / "overlay-check"
    render_overlay(loaded, overlay, state=host_state_for(loaded))
    ours = {p.name for p in (overlay / UNITS).iterdir() if p.is_file() and not p.is_symlink()}
    expected = {
        p.relative_to(overlay).as_posix(): os.readlink(p)
        for p in (overlay / UNITS).rglob("*") if p.is_symlink()
    }
    assert expected, "the renderer wrote no enablement links"
    found = {}
    for p in (root / UNITS).rglob("*"):
        if p.is_symlink() and Path(os.readlink(p)).name in ours:
            found[p.relative_to(root).as_posix()] = os.readlink(p)
    assert found == expected
    # mkosi's preset-all must not have enabled the bare templates (e.g. master@.service.wants/slave@.service).
    assert not (root / UNITS / "master@.service.wants").exists()


def test_secrets_are_private_and_hold_no_passphrase(root: Path) -> None:
    for rel in ("etc/wpa_supplicant/wpa_supplicant.conf", "etc/wide-dhcpv6/dhcp6cctlkey"):
        st = (root / rel).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, rel
        assert b"SuperSecret" not in (root / rel).read_bytes()


def test_programs_the_units_run_exist_at_those_paths(root: Path) -> None:
    programs: set[str] = set()
    # The network's templates and imagegen's own units (passwords, SSH host keys).
    for unit in (root / UNITS).glob("*.service"):
        if unit.is_file() and not unit.is_symlink():
            programs |= set(unit_commands(unit.read_text()))
    assert {"/usr/sbin/dhclient", "/usr/sbin/dhcp6c", "/usr/sbin/wpa_supplicant", "/usr/sbin/chpasswd",
            "/usr/bin/ssh-keygen"} <= programs
    for program in sorted(programs):
        target = in_image(root, program)
        assert target.is_file() and os.access(target, os.X_OK), f"{program} missing in the image"


def test_the_console_can_log_in(root: Path) -> None:
    # getty execs /bin/login; without it every getty exits and is restarted forever.
    target = in_image(root, "/bin/login")
    assert target.is_file() and os.access(target, os.X_OK)


def test_package_services_that_fight_the_profile_are_off(root: Path) -> None:
    assert os.readlink(root / UNITS / "wide-dhcpv6-client.service") == "/dev/null"
    for wants in (root / UNITS).glob("*.wants"):
        names = {p.name for p in wants.iterdir()}
        assert not names & {"systemd-networkd.service", "systemd-resolved.service"}, wants


def test_address_change_reuses_the_cache(built: BuildResult, workdir: Path) -> None:
    changed = workdir / "laptop-moved.toml"
    changed.write_text(
        (workdir / "laptop.toml").read_text().replace('"192.168.0.2/24"', '"192.168.0.3/24"')
    )
    # Same hostname, so the same state file (DUID, key) beside it: only the address differs.
    second = build_profile([changed], out=workdir / "image-moved")
    assert second.manifest.overlay_hash != built.manifest.overlay_hash
    assert second.manifest.cache_reused, second.manifest.cache_reason
    assert "Installing Debian" not in (second.out_dir / "build.log").read_text().split("Building default image")[-1]
    with mounted_partition(second.image, ROOT_PARTLABEL) as mnt:
        assert "192.168.0.3/24" in (mnt / "etc/conf.d/network.conf").read_text()


def test_unit_command_parser_sees_chains_and_shell_strings() -> None:
    text = (
        "ExecStart=\\\n /usr/bin/ip link set %P down ;\\\n -/usr/bin/ip link set %P up\n"
        "ExecStartPost=-/usr/bin/sh -c \"/usr/sbin/iw phy phy`iw dev %I info` set distance 10\"\n"
        "Description=/usr/bin/not-a-command\n"
    )
    assert unit_commands(text) == ["/usr/bin/ip", "/usr/bin/sh", "/usr/sbin/iw"]


def test_the_profile_s_packages_users_services_and_files_are_in_the_image(root: Path, built: BuildResult) -> None:
    names = {p.name for p in built.manifest.packages}
    assert {"openssh-server", "sudo"} <= names
    assert "alice:x:1000:1000:Alice:/home/alice:/bin/bash" in (root / "etc/passwd").read_text().splitlines()
    group_lines = (root / "etc/group").read_text().splitlines()
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in group_lines}
    assert "alice" in groups["sudo"] and groups["alice"] == [""]
    shadow = {line.split(":")[0]: line.split(":")[1] for line in (root / "etc/shadow").read_text().splitlines()}
    # alice's password_hash is set at boot (imagegen-passwords.service), from a file only root reads: the
    # image's shadow has it locked. Root too: the profile sets no root_password_hash.
    assert shadow["alice"].startswith("!") and not shadow["root"].startswith("$")
    hashes = root / "etc/imagegen/password-hashes"
    assert stat.S_IMODE(hashes.stat().st_mode) == 0o600 and hashes.read_text().startswith("alice:$6$")
    home, keys = root / "home/alice", root / "home/alice/.ssh/authorized_keys"
    assert (stat.S_IMODE(home.stat().st_mode), home.stat().st_uid, home.stat().st_gid) == (0o700, 1000, 1000)
    assert (stat.S_IMODE(keys.stat().st_mode), keys.stat().st_uid, keys.stat().st_gid) == (0o600, 1000, 1000)
    assert keys.read_text().startswith("ssh-ed25519 ")
    assert os.readlink(root / UNITS / "multi-user.target.wants/ssh.service").endswith("/ssh.service")
    assert not (root / UNITS / "sockets.target.wants/ssh.socket").exists()
    assert "PasswordAuthentication no" in (root / "etc/ssh/sshd_config.d/10-key-only.conf").read_text()
    # openssh-server made host keys as it was installed; the image keeps none, each machine makes its own.
    assert not sorted((root / "etc/ssh").glob("ssh_host_*")), sorted((root / "etc/ssh").glob("ssh_host_*"))
    assert os.readlink(root / UNITS / "ssh.service.wants/imagegen-ssh-host-keys.service").endswith(
        "/imagegen-ssh-host-keys.service")
    assert os.readlink(root / "etc/localtime").endswith("zoneinfo/Europe/Berlin")
