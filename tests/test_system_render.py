"""What the system sections become: overlay files, mkosi's command line, hashes, diffs, build errors."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from build_fixtures import make_overlay

from imagegen.errors import UsageError
from imagegen.image import cache
from imagegen.image.config import BuildRequest, ImageContent, MkosiInputs, image_content, mkosi_argv
from imagegen.image.mkosi import unknown_package_error, unknown_packages
from imagegen.profile import HostState, load_profiles
from imagegen.render import render_overlay
from imagegen.render.system import dropin_text, unit_value
from imagegen.stages.derivations import build_derivation, render_derivation
from imagegen.stages.systems import diff_settings
from imagegen.store import Entry, diff_trees

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")
HEAD = '[image]\nhostname = "h"\ndistribution = "debian"\n'
UNITS = "etc/systemd/system"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    d = tmp_path_factory.mktemp("key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "k")], check=True)
    return (d / "k.pub").read_text().strip()


def render(path: Path, out: Path) -> Path:
    render_overlay(load_profiles([path]), out, state=STATE)
    return out


def profile_text(key: str) -> str:
    return HEAD + f"""
[packages]
install = ["openssh-server"]

[groups.ops]
gid = 1500

[users.alice]
uid = 1000
description = "Alice A"
groups = ["ops", "audio"]
admin = true
ssh_authorized_keys = ["{key}"]
ssh_authorized_keys_files = ["keys.pub"]
password_hash = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
autologin = "tty1"

[services."ssh.service"]
enable = true
override.Service = {{ Restart = "always", Environment = ["GREETING=100%", "B=2"], ExecStart = ["", "/x --y"] }}

[services."getty@tty2.service"]
enable = true

[services."apt-daily.timer"]
mask = true

[services."cron.service"]
enable = false

[files."/etc/motd"]
content = "hello\\n"

[files."/srv/page"]
type = "directory"
owner = "alice"
group = "ops"
mode = "0750"

[files."/srv/page/index.html"]
source = "page.html"
owner = "alice"

[files."/etc/link"]
type = "symlink"
target = "../usr/share/zoneinfo/UTC"

[system]
timezone = "Europe/Berlin"
locale = "de_DE.UTF-8"
kernel_command_line = ["quiet", "loglevel=3"]
sysctl = {{ "net.ipv4.ip_forward" = 1, "kernel.sysrq" = 0 }}
"""


@pytest.fixture
def full(tmp_path: Path, key: str) -> Path:
    (tmp_path / "page.html").write_text("<p>hi</p>\n")
    (tmp_path / "keys.pub").write_text(f"# a comment\n\n{key.replace('AAAA', 'AAAA', 1)} second\n")
    path = tmp_path / "host.toml"
    path.write_text(profile_text(key))
    return path


def test_users_become_sysusers_lines_with_homes_owned_by_tmpfiles(full: Path, tmp_path: Path) -> None:
    out = render(full, tmp_path / "out")
    assert (out / "usr/lib/sysusers.d/imagegen.conf").read_text().splitlines()[1:] == [
        "g ops 1500",
        'u alice 1000 "Alice A" /home/alice /bin/bash',
        "m alice ops",
        "m alice audio",
        "m alice sudo",
    ]
    tmpfiles = (out / "usr/lib/tmpfiles.d/imagegen.conf").read_text().splitlines()[1:]
    assert tmpfiles == [
        "d /home/alice 0700 alice alice -",
        "Z /home/alice - alice alice -",
        "d /home/alice/.ssh 0700 alice alice -",
        "z /home/alice/.ssh/authorized_keys 0600 alice alice -",
        "d /srv/page 0750 alice ops -",
        "Z /srv/page - alice ops -",
        "z /srv/page/index.html 0644 alice root -",
    ]
    keys = out / "home/alice/.ssh/authorized_keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    # The inline key and the file's (the same key with another comment) once.
    assert len(keys.read_text().splitlines()) == 1


def test_passwords_are_private_and_set_by_a_unit_before_logins(full: Path, tmp_path: Path) -> None:
    out = render(full, tmp_path / "out")
    hashes = out / "etc/imagegen/password-hashes"
    assert stat.S_IMODE(hashes.stat().st_mode) == 0o600
    assert hashes.read_text().startswith("alice:$y$j9T$")
    unit = (out / UNITS / "imagegen-passwords.service").read_text()
    assert "ExecStart=/usr/sbin/chpasswd --encrypted" in unit and "Before=systemd-user-sessions.service" in unit
    assert os.readlink(out / UNITS / "sysinit.target.wants/imagegen-passwords.service") == (
        "/etc/systemd/system/imagegen-passwords.service")


def test_no_password_no_password_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_overlay(load_profiles([EXAMPLES / "base.toml", EXAMPLES / "kiosk.toml"]), out, state=STATE)
    assert not (out / "etc/imagegen").exists()


def test_an_ssh_server_makes_its_host_keys_at_first_boot(full: Path, tmp_path: Path) -> None:
    out = render(full, tmp_path / "out")
    unit = (out / UNITS / "imagegen-ssh-host-keys.service").read_text()
    assert "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key" in unit and "Before=ssh.service" in unit
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit
    for wanted_by in ("ssh.service", "ssh.socket"):
        assert os.readlink(out / UNITS / f"{wanted_by}.wants/imagegen-ssh-host-keys.service") == (
            "/etc/systemd/system/imagegen-ssh-host-keys.service")
    # The build removes the keys the package made as it was installed.
    assert "RemoveFiles=/etc/ssh/ssh_host_*" in (REPO / "mkosi.conf.d/10-image.conf").read_text().splitlines()


def test_no_ssh_server_no_host_key_unit(write_profile, tmp_path: Path) -> None:
    out = render(write_profile(HEAD + '[packages]\ninstall = ["htop"]\n'), tmp_path / "out")
    assert not list(out.rglob("imagegen-ssh-host-keys.service"))


def test_the_kiosk_runs_cage_on_tty1_with_a_logind_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_overlay(load_profiles([EXAMPLES / "base.toml", EXAMPLES / "kiosk.toml"]), out, state=STATE)
    unit = (out / UNITS / "cage@.service").read_text().splitlines()
    assert {"User=kiosk", "PAMName=cage", "TTYPath=/dev/%I", "Conflicts=getty@%i.service"} <= set(unit)
    assert "Environment=WLR_RENDERER=pixman WLR_LIBINPUT_NO_DEVICES=1 XDG_SESSION_TYPE=wayland" in unit
    assert "session  required  pam_systemd.so" in (out / "etc/pam.d/cage").read_text()
    assert "enable cage@.service tty1" in (out / "etc/systemd/system-preset/10-imagegen-services.preset").read_text()
    assert os.readlink(out / UNITS / "getty@tty1.service") == "/dev/null"
    assert "u kiosk 1001 \"Kiosk\" /home/kiosk /usr/sbin/nologin" in (
        out / "usr/lib/sysusers.d/imagegen.conf").read_text().splitlines()
    assert not list(out.rglob("*autologin*"))


def test_autologin_is_a_getty_drop_in(full: Path, tmp_path: Path) -> None:
    out = render(full, tmp_path / "out")
    text = (out / UNITS / "getty@tty1.service.d/imagegen-autologin.conf").read_text()
    assert "ExecStart=\nExecStart=-/usr/sbin/agetty" in text and "--autologin alice %I $TERM" in text


def test_services_become_presets_masks_and_escaped_drop_ins(full: Path, tmp_path: Path) -> None:
    out = render(full, tmp_path / "out")
    preset = (out / "etc/systemd/system-preset/10-imagegen-services.preset").read_text().splitlines()[1:]
    assert preset == ["disable cron.service", "enable ssh.service", "enable getty@.service tty2"]
    assert os.readlink(out / UNITS / "apt-daily.timer") == "/dev/null"
    dropin = (out / UNITS / "ssh.service.d/imagegen.conf").read_text()
    assert ("[Service]\nRestart=always\nEnvironment=GREETING=100%%\nEnvironment=B=2\n"
            "ExecStart=\nExecStart=/x --y\n") in dropin
    # The renderer's own preset still comes first and is unchanged.
    assert (out / "etc/systemd/system-preset/00-imagegen.preset").is_file()


def test_unit_values_are_literal_or_refused() -> None:
    assert unit_value("50%") == "50%%"
    assert unit_value("a\\b") == "a\\b"
    for bad in ("a\nb", "x\\", " lead", "tab\there", "bell\x07"):
        with pytest.raises(ValueError):
            unit_value(bad)
    with pytest.raises(ValueError, match="Service.Environment"):
        dropin_text({"Service": {"Environment": ["ok", "bad\nline"]}})
    assert dropin_text({"Unit": {"RefuseManualStop": True}}).endswith("[Unit]\nRefuseManualStop=yes\n")


def test_a_bad_override_value_is_exit_2_naming_the_key(write_profile, tmp_path: Path) -> None:
    path = write_profile(HEAD + '[services."x.service".override.Service]\nExecStart = "/bin/true \\\\"\n')
    with pytest.raises(UsageError) as info:
        render(path, tmp_path / "out")
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f'{path}: services."x.service".override: Service.ExecStart:')
    assert not (tmp_path / "out").exists()


def test_files_land_with_their_modes_and_links(full: Path, tmp_path: Path) -> None:
    out = render(full, tmp_path / "out")
    assert (out / "etc/motd").read_text() == "hello\n"
    assert (out / "srv/page/index.html").read_text() == "<p>hi</p>\n"
    assert os.readlink(out / "etc/link") == "../usr/share/zoneinfo/UTC"
    assert "net.ipv4.ip_forward = 1" in (out / "etc/sysctl.d/90-imagegen.conf").read_text()


@pytest.mark.parametrize("path, clash", [
    ("/etc/conf.d/network.conf", "/etc/conf.d/network.conf, which imagegen's renderer writes"),
    ("/etc/conf.d/network.conf/x", "/etc/conf.d/network.conf, which imagegen's renderer writes"),
    ("/etc/systemd/system/master@.service", "master@.service, which imagegen's renderer writes"),
    ("/usr/lib/sysusers.d/imagegen.conf", "which the profile's users, services or system settings writes"),
    ("/etc/wide-dhcpv6", "/etc/wide-dhcpv6/dhcp6c.conf, which imagegen's renderer writes"),
])
def test_a_file_over_a_rendered_one_names_both(tmp_path: Path, path: str, clash: str) -> None:
    profile = tmp_path / "laptop.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text() + f'\n[files."{path}"]\ncontent = "x"\n')
    with pytest.raises(UsageError) as info:
        render(profile, tmp_path / "out")
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f'{profile}: files."{path}": {path} is in the way of /')
    assert clash in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_directory_may_hold_rendered_files(tmp_path: Path) -> None:
    profile = tmp_path / "laptop.toml"
    profile.write_text((EXAMPLES / "laptop.toml").read_text() + '\n[files."/etc/systemd/system"]\ntype = "directory"\n')
    out = render(profile, tmp_path / "out")
    assert "d /etc/systemd/system 0755 root root -" in (out / "usr/lib/tmpfiles.d/imagegen.conf").read_text()


def test_a_missing_source_names_the_key(write_profile, tmp_path: Path) -> None:
    path = write_profile(HEAD + '[files."/etc/x"]\nsource = "nope.txt"\n')
    with pytest.raises(UsageError, match=r'files\."/etc/x"\.source: cannot read .*nope.txt'):
        render(path, tmp_path / "out")


def test_a_bad_key_in_a_key_file_names_file_and_line(write_profile, tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text("# keys\nssh-ed25519 AAAAnotakey x\n")
    path = write_profile(HEAD + '[users.a]\nuid = 1000\nssh_authorized_keys_files = ["k.pub"]\n')
    with pytest.raises(UsageError, match=r"users\.a\.ssh_authorized_keys_files\[0\]: .*k\.pub line 2: "):
        render(path, tmp_path / "out")


def test_the_network_of_the_laptop_is_rendered_as_before(tmp_path: Path) -> None:
    """The system sections add files and change none of the network's."""
    plain = tmp_path / "plain.toml"
    text = (EXAMPLES / "laptop.toml").read_text()
    plain.write_text(text[:text.index("# The rest of the machine")])
    diff = diff_trees(render(plain, tmp_path / "a"), render(EXAMPLES / "laptop.toml", tmp_path / "b"))
    assert {f.status for f in diff.files} == {"added"}
    assert {p for p in diff.paths if (tmp_path / "b" / p).is_file()} == {
        "etc/ssh/sshd_config.d/10-key-only.conf", "etc/systemd/system-preset/10-imagegen-services.preset",
        "home/alice/.ssh/authorized_keys", "usr/lib/sysusers.d/imagegen.conf", "usr/lib/tmpfiles.d/imagegen.conf",
        "etc/imagegen/password-hashes", "etc/systemd/system/imagegen-passwords.service",
        "etc/systemd/system/imagegen-ssh-host-keys.service",
    }


def test_mkosi_gets_packages_and_settings_on_its_command_line(full: Path, tmp_path: Path) -> None:
    content = image_content(load_profiles([full]))
    assert content.packages == ("openssh-server",) and content.timezone == "Europe/Berlin"
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "o", content=content)
    argv = mkosi_argv(request, MkosiInputs(
        output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", overlay=overlay, policy_tree=tmp_path / "p",
        sandbox_tree=None, tools_sandbox_tree=tmp_path / "t", lab_tree=None))
    for arg in ("--package=openssh-server", "--locale=de_DE.UTF-8", "--keymap=us", "--timezone=Europe/Berlin",
                "--kernel-command-line=quiet", "--kernel-command-line=loglevel=3"):
        assert arg in argv
    plain = mkosi_argv(BuildRequest(overlay=overlay, out_dir=tmp_path / "o"), MkosiInputs(
        output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", overlay=overlay, policy_tree=tmp_path / "p",
        sandbox_tree=None, tools_sandbox_tree=tmp_path / "t", lab_tree=None))
    # The defaults are what mkosi.conf.d/10-image.conf had: the examples build the same.
    assert {"--locale=C.UTF-8", "--keymap=us", "--timezone=UTC"} <= set(plain)
    assert not [a for a in plain if a.startswith(("--package", "--remove-package", "--kernel-command-line"))]
    conf = (REPO / "mkosi.conf.d/10-image.conf").read_text()
    assert "\nLocale=" not in conf and "\nTimezone=" not in conf and "\nKeymap=" not in conf


def test_removed_packages_are_left_out_or_purged(write_profile) -> None:
    low = write_profile(HEAD + '[packages]\ninstall = ["htop", "curl"]\n', "low.toml")
    high = write_profile('[packages]\nremove = ["curl", "less"]\n', "high.toml")
    content = image_content(load_profiles([low, high]))
    assert content.packages == ("htop",) and content.remove_packages == ("less",)
    assert content.source_of("htop") == str(low) and content.source_of("less") == str(high)


@pytest.fixture(scope="module")
def apt_output() -> str:
    """apt's own words for a name it does not know (from this machine's apt-get, simulating)."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed")
    proc = subprocess.run(["apt-get", "install", "--simulate", "-y", "-o", "Debug::NoLocking=1",
                           "imagegen-no-such-package"], capture_output=True, text=True)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_an_unknown_package_fails_in_one_line_naming_the_profile(write_profile, apt_output: str,
                                                                 tmp_path: Path) -> None:
    assert unknown_packages(apt_output) == ["imagegen-no-such-package"]
    low = write_profile(HEAD + '[packages]\ninstall = ["htop"]\n', "low.toml")
    high = write_profile('[packages]\ninstall = ["imagegen-no-such-package"]\n', "high.toml")
    request = BuildRequest(overlay=make_overlay(tmp_path / "overlay"), out_dir=tmp_path / "o",
                           content=image_content(load_profiles([low, high])))
    log = "‣ Installing Debian\n" + apt_output + "‣ \"apt-get install\" returned non-zero exit code 100.\n"
    error = unknown_package_error(request, log, tmp_path / "failed.log")
    assert error is not None and error.exit_code == 2
    assert error.message.startswith(f"{high}: packages.install: package 'imagegen-no-such-package' does not exist")
    assert "\n" not in error.message
    # A failure that is not about the profile's packages is left to the usual report.
    assert unknown_package_error(request, "E: Unable to locate package libfoo\n", tmp_path / "l") is None


def test_hashes_follow_the_system_sections(full: Path, tmp_path: Path, key: str) -> None:
    loaded = load_profiles([full])
    before = render_derivation(loaded, STATE).hash
    (tmp_path / "page.html").write_text("<p>changed</p>\n")
    assert render_derivation(load_profiles([full]), STATE).hash != before, "a files source must be hashed"
    full.write_text(full.read_text().replace('"Alice A"', '"Alice B"'))
    assert render_derivation(load_profiles([full]), STATE).hash != before

    # The build derivation names its overlay entry by path name only.
    overlay = Entry(tmp_path / "store" / ("0" * 32 + "-h-overlay"))

    def build_hash(content: ImageContent) -> str:
        return build_derivation(overlay, distribution="debian", release="trixie", lab=False,
                                hostname="h", root_password_hash=None, mkosi="25.3", content=content).hash

    base = build_hash(image_content(loaded))
    assert build_hash(ImageContent(packages=("openssh-server", "htop"), timezone="Europe/Berlin")) != base
    assert build_hash(ImageContent(packages=("openssh-server",), timezone="UTC")) != base


def test_cache_key_changes_with_the_packages(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    common = dict(conf_dir=conf, distribution="debian", release="trixie", variant="plain", mkosi_version="25.3",
                  repositories="x")
    key = cache.config_key(**common, packages=("openssh-server",))  # type: ignore[arg-type]
    (tmp_path / "c/debian~trixie~x86-64.cache").mkdir(parents=True)
    cache.record_key(tmp_path / "c", key)
    assert cache.decide(tmp_path / "c", "debian", key).reuse
    other = cache.config_key(**common, packages=("openssh-server", "htop"))  # type: ignore[arg-type]
    decision = cache.decide(tmp_path / "c", "debian", other)
    assert not decision.reuse and "packages" in decision.reason


def test_diff_names_the_changed_image_settings() -> None:
    a = ImageContent(packages=("htop",), timezone="UTC").inputs()
    b = ImageContent(packages=("openssh-server",), timezone="Europe/Berlin").inputs()
    assert diff_settings(a, b) == ["packages: +openssh-server", "packages: -htop",
                                   "timezone: 'UTC' -> 'Europe/Berlin'"]
    assert diff_settings(a, a) == []


def test_diff_shows_user_service_and_file_changes(full: Path, tmp_path: Path) -> None:
    a = render(full, tmp_path / "a")
    full.write_text(full.read_text().replace("uid = 1000", "uid = 1005").replace('content = "hello\\n"',
                                                                                   'content = "bye\\n"'))
    diff = diff_trees(a, render(full, tmp_path / "b"))
    assert set(diff.paths) == {"usr/lib/sysusers.d/imagegen.conf", "etc/motd"}
    assert "+u alice 1005 " in str(diff)
    # The password hashes stay masked like every private file.
    assert "$y$" not in str(diff)


def test_systemd_makes_the_users_and_owners_from_the_rendered_files(tmp_path: Path) -> None:
    """The host's systemd-sysusers and systemd-tmpfiles, as mkosi runs them on the image (--root)."""
    if not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")):
        pytest.skip("systemd-sysusers or systemd-tmpfiles is not installed")
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    root = render(EXAMPLES / "laptop.toml", tmp_path / "root")
    # What base-passwd gives every Debian image before sysusers runs.
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nsudo:x:27:\n")
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\n")
    proc = subprocess.run(["systemd-sysusers", f"--root={root}"], capture_output=True, text=True)
    assert "Failed" not in proc.stderr, proc.stderr
    assert "alice:x:1000:1000:Alice:/home/alice:/bin/bash" in (root / "etc/passwd").read_text().splitlines()
    assert "sudo:x:27:alice" in (root / "etc/group").read_text().splitlines()
    # Only imagegen.conf is in this root's tmpfiles.d.
    proc = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for rel, mode in (("home/alice", 0o700), ("home/alice/.ssh", 0o700), ("home/alice/.ssh/authorized_keys", 0o600)):
        st = (root / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 1000, 1000), rel
    # Again at boot: the owners it set do not trip its own unsafe-transition check.
    proc = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "--boot"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_tmpfiles_owns_a_user_directory_and_what_is_below_it(write_profile, tmp_path: Path) -> None:
    if not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")) or os.geteuid() != 0:
        pytest.skip("needs systemd-sysusers, systemd-tmpfiles and root")
    (tmp_path / "page.html").write_text("<p>hi</p>\n")
    path = write_profile(HEAD + '[users.kiosk]\nuid = 1001\n[files."/srv/page"]\ntype = "directory"\n'
                         'owner = "kiosk"\nmode = "0750"\n[files."/srv/page/index.html"]\nsource = "page.html"\n'
                         'owner = "kiosk"\n[files."/srv/page/plain"]\ncontent = "x"\n')
    root = render(path, tmp_path / "root")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    subprocess.run(["systemd-sysusers", f"--root={root}"], check=True, capture_output=True)
    proc = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    owners = {rel: ((root / rel).stat().st_uid, stat.S_IMODE((root / rel).stat().st_mode))
              for rel in ("srv/page", "srv/page/index.html", "srv/page/plain")}
    # An entry below a user's directory that names no owner of its own is the directory owner's.
    assert owners == {"srv/page": (1001, 0o750), "srv/page/index.html": (1001, 0o644),
                      "srv/page/plain": (1001, 0o644)}
