"""The system sections of a profile: validation, layering, origins and the option reference."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.errors import ProfileError
from imagegen.profile import load_profiles
from imagegen.profile.reference import reference, split_description
from imagegen.profile.system import (
    FileSpec,
    Packages,
    Service,
    SystemSettings,
    User,
    check_crypt_hash,
    check_image_path,
    check_package_name,
    check_ssh_public_key,
    check_unit_name,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
runner = CliRunner()
HEAD = '[image]\nhostname = "h"\n'


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A throwaway public key made by the real ssh-keygen."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    d = tmp_path_factory.mktemp("key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t@test", "-f", str(d / "k")], check=True)
    return (d / "k.pub").read_text().strip()


def test_package_names_follow_debian_policy() -> None:
    for good in ("openssh-server", "libc6", "g++", "python3.13", "0ad"):
        assert check_package_name(good) == good
    for bad in ("OpenSSH", "a", "-x", "foo bar", "foo_bar", "foo;rm"):
        with pytest.raises(ValueError):
            check_package_name(bad)


def test_crypt_hashes_are_told_from_passwords() -> None:
    assert check_crypt_hash("$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7")
    assert check_crypt_hash("$6$rounds=5000$salt$" + "a" * 86)
    for bad in ("hunter2", "$1$salt$hash", "$y$j9T$a b$c", "$6$", "$zz$salt$x", "$y$j9T$salt$hash\n"):
        with pytest.raises(ValueError):
            check_crypt_hash(bad)


def test_ssh_keys_are_checked_down_to_the_blob(ssh_key: str) -> None:
    assert check_ssh_public_key(ssh_key) == ssh_key
    kind, blob, _ = ssh_key.split(" ", 2)
    with pytest.raises(ValueError, match="does not hold the type"):
        check_ssh_public_key(f"ssh-rsa {blob}")  # an ed25519 blob claimed as RSA
    with pytest.raises(ValueError, match="does not decode"):
        check_ssh_public_key(f"{kind} {blob[:-3]}")
    with pytest.raises(ValueError, match="does not hold the type"):
        check_ssh_public_key(f"{kind} {base64.b64encode(b'not a key').decode()}")
    with pytest.raises(ValueError, match="must start with"):
        check_ssh_public_key(f'command="x" {ssh_key}')
    with pytest.raises(ValueError, match="one line"):
        check_ssh_public_key(f"{ssh_key}\n{ssh_key}")


def test_unit_names_follow_the_systemd_grammar() -> None:
    for good in ("ssh.service", "getty@tty1.service", "getty@.service", "dev-sda1.swap", "a:b_c.d-e.timer"):
        assert check_unit_name(good) == good
    for bad in ("ssh", "ssh.servic", "a b.service", "x.service/..", "@.service", "x@y@z.service",
                "a" * 256 + ".service"):
        with pytest.raises(ValueError):
            check_unit_name(bad)


def test_image_paths_stay_inside_the_root() -> None:
    assert check_image_path("/etc/motd") == "/etc/motd"
    for bad, word in (("etc/motd", "absolute"), ("/etc/../../x", "'..'"), ("/etc//motd", "normalised"),
                      ("/etc/motd/", "normalised"), ("/", "normalised"), ("//etc", "absolute"),
                      ("/etc/a b", "white space")):
        with pytest.raises(ValueError, match=word):
            check_image_path(bad)


def test_timezone_sysctl_and_kernel_words_are_validated() -> None:
    assert SystemSettings(timezone="Europe/Berlin").timezone == "Europe/Berlin"
    for bad in ({"timezone": "Mars/Olympus"}, {"locale": "de DE"}, {"sysctl": {"not a key": 1}},
                {"sysctl": {"kernel.sysrq": "1\nx=y"}}, {"kernel_command_line": ["quiet loglevel=3"]},
                {"kernel_command_line": ['a="b"']}):
        with pytest.raises(ValidationError):
            SystemSettings.model_validate(bad)


def test_file_entries_have_one_shape() -> None:
    assert FileSpec(content="x").file_mode() == 0o644
    assert FileSpec(type="directory").file_mode() == 0o755
    assert FileSpec(content="x", mode="0600").file_mode() == 0o600
    for bad in ({}, {"content": "a", "source": "b"}, {"type": "symlink"}, {"type": "directory", "content": "x"},
                {"content": "x", "target": "/y"}, {"type": "symlink", "target": "/y", "mode": "0600"},
                {"content": "x", "mode": "644x"}):
        with pytest.raises(ValidationError):
            FileSpec.model_validate(bad)


def test_service_cannot_be_enabled_and_masked() -> None:
    with pytest.raises(ValidationError, match="contradict"):
        Service(enable=True, mask=True)
    with pytest.raises(ValidationError, match="section name"):
        Service.model_validate({"override": {"service": {"Restart": "always"}}})


def test_remove_takes_away_and_purges_the_rest() -> None:
    p = Packages(install=["htop", "less", "htop", "curl"], remove=["less", "nano"])
    assert p.to_install() == ["htop", "curl"]
    assert p.to_purge() == ["nano"]


def _bad(write_profile, text: str) -> str:
    path = write_profile(HEAD + text)
    with pytest.raises(ProfileError) as info:
        load_profiles([path])
    (line,) = info.value.problems
    assert line.startswith(f"{path}: "), line
    return line


def test_each_bad_input_names_file_key_and_fix(write_profile, ssh_key: str) -> None:
    assert "users.bob.uid: uid 1000 is already the uid of user 'alice'; give each user" in _bad(
        write_profile, "[users.alice]\nuid = 1000\n[users.bob]\nuid = 1000\n")
    assert "users.alice.groups: group 'wheelz' is neither declared nor one the image has; declare it" in _bad(
        write_profile, '[users.alice]\nuid = 1000\ngroups = ["wheelz"]\n')
    assert "users.alice.ssh_authorized_keys[0]: the key's blob" in _bad(
        write_profile, f'[users.alice]\nuid = 1000\nssh_authorized_keys = ["ssh-rsa {ssh_key.split()[1]}"]\n')
    assert 'services.ssh: \'ssh\' is not a systemd unit name; write NAME.TYPE' in _bad(
        write_profile, '[services.ssh]\nenable = true\n')
    assert "contains '..'" in _bad(write_profile, '[files."/etc/../../motd"]\ncontent = "x"\n')
    assert "is not an absolute path" in _bad(write_profile, '[files."etc/motd"]\ncontent = "x"\n')
    assert "system.timezone: 'Europe/Nowhere' is not a time zone" in _bad(
        write_profile, '[system]\ntimezone = "Europe/Nowhere"\n')
    assert "packages.install[1]: 'Bad_Name' is not a Debian package name" in _bad(
        write_profile, '[packages]\ninstall = ["ok", "Bad_Name"]\n')
    assert "users.alice.password_hash: is not a crypt(3) hash" in _bad(
        write_profile, '[users.alice]\nuid = 1000\npassword_hash = "secret"\n')


def test_a_declared_group_is_known_and_admin_is_not_a_typo(write_profile) -> None:
    path = write_profile(HEAD + '[groups.kiosk-ops]\n[users.alice]\nuid = 1000\ngroups = ["kiosk-ops", "video"]\n')
    assert load_profiles([path]).profile.users["alice"].groups == ["kiosk-ops", "video"]


def test_cli_exits_2_and_writes_nothing(write_profile, tmp_path: Path) -> None:
    path = write_profile(HEAD + "[users.alice]\nuid = 1000\n[users.bob]\nuid = 1000\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert "users.bob.uid" in result.output and str(path) in result.output
    assert not out.exists()


LOW = HEAD + '[packages]\ninstall = ["htop", "less"]\n[users.alice]\nuid = 1000\ngroups = ["audio"]\n'
HIGH = '[packages]\ninstall = ["openssh-server", "htop"]\nremove = ["less"]\n[users.alice]\ngroups = ["video"]\n'


def test_package_lists_merge_across_layers_and_other_lists_still_replace(write_profile) -> None:
    low, high = write_profile(LOW, "low.toml"), write_profile(HIGH, "high.toml")
    loaded = load_profiles([low, high])
    assert loaded.profile.packages.install == ["htop", "less", "openssh-server"]
    assert loaded.profile.packages.remove == ["less"]
    assert loaded.profile.packages.to_install() == ["htop", "openssh-server"]
    # A list outside the merged ones still replaces as a whole.
    assert loaded.profile.users["alice"].groups == ["video"]
    assert [loaded.origin(("packages", "install", i)) for i in range(3)] == [low, low, high]
    assert loaded.origin(("packages", "remove", 0)) == high


def test_show_gives_every_package_its_file(write_profile) -> None:
    low, high = write_profile(LOW, "low.toml"), write_profile(HIGH, "high.toml")
    result = runner.invoke(app, ["show", str(low), str(high)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("install = [")
    assert [line.split("#")[1].strip() for line in lines[start + 1:start + 4]] == [str(low), str(low), str(high)]
    assert '"openssh-server",' in lines[start + 3]
    assert any(line.startswith("groups = [\"video\"]") and line.endswith(str(high)) for line in lines)


def test_examples_load_with_their_system_sections() -> None:
    laptop = load_profiles([EXAMPLES / "laptop.toml"]).profile
    assert "openssh-server" in laptop.packages.install
    alice = laptop.users["alice"]
    assert alice.ssh_authorized_keys and alice.password_hash is not None and alice.password_hash.startswith("$6$")
    assert laptop.services["ssh.service"].enable is True
    kiosk = load_profiles([EXAMPLES / "base.toml", EXAMPLES / "kiosk.toml"]).profile
    # The kiosk's user has no shell and no getty: cage@tty1 logs it in (a logind session through PAM).
    assert kiosk.users["kiosk"].autologin is None and kiosk.users["kiosk"].shell == "/usr/sbin/nologin"
    assert kiosk.services["cage@tty1.service"].enable is True and kiosk.services["getty@tty1.service"].mask
    assert kiosk.system.timezone == "Europe/Berlin"  # from base.toml
    assert "/usr/local/share/kiosk/index.html" in kiosk.files


def test_the_option_reference_is_up_to_date() -> None:
    text = (REPO / "docs/profile.md").read_text()
    assert text == reference(), "docs/profile.md is stale: run python -m imagegen.profile.reference docs/profile.md"


@pytest.mark.parametrize("model", [Packages, User, Service, FileSpec, SystemSettings])
def test_every_system_option_is_described_with_example_and_merge_rule(model) -> None:
    text = reference()
    for name, info in model.model_fields.items():
        assert info.description and "Merge: " in info.description, f"{model.__name__}.{name}"
        assert info.examples, f"{model.__name__}.{name}"
        body, rule = split_description(info, (name,))
        assert body and rule and "Merge" not in body
        assert f".{name}`\n\n{body}\n" in text, f"{model.__name__}.{name} is not in the reference"


def test_schema_command_prints_a_schema_the_examples_satisfy() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert "users" in schema["properties"] and "User" in schema["$defs"]
    for files in (["laptop.toml"], ["base.toml", "kiosk.toml"]):
        merged = load_profiles([EXAMPLES / f for f in files]).merged
        jsonschema.validate(merged, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image": {"hostname": "h"}, "users": {"a": {"uid": 5}}}, schema)
