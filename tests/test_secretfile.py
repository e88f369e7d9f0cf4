"""Secret files a profile names: a FIFO, a device, a directory, a huge or binary file is a one-line
error naming the file and the key (never the content); a file others can read is a warning."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen.errors import UsageError
from imagegen.profile import HostState, load_profiles
from imagegen.profile.secretfile import SECRET_LIMIT, read_secret_file
from imagegen.render import render_overlay

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPO = Path(__file__).resolve().parents[1]
STATE = HostState(duid=bytes.fromhex("0004" + "11" * 16), dhcp6c_key="AAECAwQFBgcICQoLDA0ODw==")
KEY = "wireless.networks[0].psk_file"


def profile_naming(tmp_path: Path, name: str) -> Path:
    profile = tmp_path / "laptop.toml"
    text = (EXAMPLES / "laptop.toml").read_text()
    assert 'passphrase = "SuperSecret"' in text
    profile.write_text(text.replace('passphrase = "SuperSecret"', f'psk_file = "{name}"'))
    return profile


def render_bounded(profile: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """imagegen render in a process of its own, with 1 GiB of address space and a timeout: on a
    reader without bounds the test fails instead of hanging or taking the machine's memory."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    return subprocess.run([sys.executable, "-c", "from imagegen.cli import app; app()", "render", str(profile),
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=20,
                          preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_fifo_as_psk_file_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "psk.fifo")
    done = render_bounded(profile_naming(tmp_path, "psk.fifo"), tmp_path / "out")
    assert done.returncode == 2, done.stderr
    assert f"{KEY}: {tmp_path / 'psk.fifo'} is a FIFO, not a regular file" in done.stderr
    assert len(done.stderr.splitlines()) == 2  # the error and its hint
    assert not (tmp_path / "out").exists() and not (tmp_path / "laptop.state.toml").exists()


def test_dev_zero_as_psk_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    done = render_bounded(profile_naming(tmp_path, "/dev/zero"), tmp_path / "out")
    assert done.returncode == 2, done.stderr
    assert f"{KEY}: /dev/zero is a device, not a regular file" in done.stderr


def test_a_directory_as_psk_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    with pytest.raises(UsageError, match=r"psk_file: .*/secrets is a directory, not a regular file"):
        render_overlay(load_profiles([profile_naming(tmp_path, "secrets")]), tmp_path / "out", state=STATE)


def test_a_huge_secret_file_is_refused_by_size(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"a" * (SECRET_LIMIT + 1))
    with pytest.raises(UsageError, match=r"psk_file: .*/big is larger than 64 KiB"):
        render_overlay(load_profiles([profile_naming(tmp_path, "big")]), tmp_path / "out", state=STATE)


def test_a_binary_secret_file_is_refused_and_its_content_never_printed(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"Secret\xff\xfeRest")
    with pytest.raises(UsageError) as info:
        render_overlay(load_profiles([profile_naming(tmp_path, "bin")]), tmp_path / "out", state=STATE)
    assert "is not UTF-8 text" in str(info.value)
    assert "Secret" not in str(info.value) and "Rest" not in str(info.value)


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("SuperSecret\n")
    os.chmod(tmp_path / "real", 0o600)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    render_overlay(load_profiles([profile_naming(tmp_path, "link")]), tmp_path / "out", state=STATE)
    assert (tmp_path / "out/etc/wpa_supplicant/wpa_supplicant.conf").is_file()


def test_a_secret_file_others_can_read_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "psk").write_text("SuperSecret\n")
    os.chmod(tmp_path / "psk", 0o644)
    with caplog.at_level(logging.WARNING):
        render_overlay(load_profiles([profile_naming(tmp_path, "psk")]), tmp_path / "out", state=STATE)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"warning: {tmp_path / 'laptop.toml'}: {KEY}: {tmp_path / 'psk'} is readable by group "
                        "and others; chmod 600 it"]
    caplog.clear()
    os.chmod(tmp_path / "psk", 0o600)
    with caplog.at_level(logging.WARNING):
        render_overlay(load_profiles([profile_naming(tmp_path, "psk")]), tmp_path / "out", state=STATE)
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


def test_the_warning_reaches_stderr_as_one_line(tmp_path: Path) -> None:
    (tmp_path / "psk").write_text("SuperSecret\n")
    os.chmod(tmp_path / "psk", 0o640)
    done = render_bounded(profile_naming(tmp_path, "psk"), tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"warning: {tmp_path / 'laptop.toml'}: {KEY}: {tmp_path / 'psk'} is readable by its "
                           "group; chmod 600 it\n")


def test_read_secret_file_returns_the_text(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("pässword\n")
    os.chmod(tmp_path / "s", 0o600)
    assert read_secret_file(tmp_path / "s", "p.toml: key") == "pässword\n"


def test_a_fifo_as_host_state_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state.toml")
    shutil.copy(EXAMPLES / "laptop.toml", tmp_path / "laptop.toml")
    done = render_bounded(tmp_path / "laptop.toml", tmp_path / "out", "--state", str(tmp_path / "state.toml"))
    assert done.returncode == 2, done.stderr
    assert f"host state file: {tmp_path / 'state.toml'} is a FIFO, not a regular file" in done.stderr


def test_an_eap_certificate_may_be_larger_than_a_password(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "laptop.toml", tmp_path / "laptop.toml")
    cert = "-----BEGIN CERTIFICATE-----\n" + "A" * (200 * 1024) + "\n-----END CERTIFICATE-----\n"
    (tmp_path / "ca.pem").write_text(cert)
    text = (tmp_path / "laptop.toml").read_text()
    start = text.index("[[wireless.networks]]")
    (tmp_path / "laptop.toml").write_text(text[:start] + (
        '[[wireless.networks]]\nssid = "Corp"\nkey_mgmt = "WPA-EAP"\n'
        '[wireless.networks.eap]\nmethod = "PEAP"\nidentity = "me"\npassword = "pw"\nca_cert = "ca.pem"\n'
        'phase2 = "auth=MSCHAPV2"\n'))
    render_overlay(load_profiles([tmp_path / "laptop.toml"]), tmp_path / "out", state=STATE)
    assert (tmp_path / "out/etc/wpa_supplicant/certs/0-ca_cert.pem").read_text() == cert


def test_a_binary_der_certificate_is_copied_byte_for_byte(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copy(EXAMPLES / "laptop.toml", tmp_path / "laptop.toml")
    der = bytes(range(256)) * 4  # not UTF-8, and with CR, LF and NUL bytes that a text read would change
    (tmp_path / "ca.der").write_bytes(der)
    os.chmod(tmp_path / "ca.der", 0o644)
    (tmp_path / "key.der").write_bytes(der[::-1])
    os.chmod(tmp_path / "key.der", 0o600)
    text = (tmp_path / "laptop.toml").read_text()
    start = text.index("[[wireless.networks]]")
    (tmp_path / "laptop.toml").write_text(text[:start] + (
        '[[wireless.networks]]\nssid = "Corp"\nkey_mgmt = "WPA-EAP"\n'
        '[wireless.networks.eap]\nmethod = "TLS"\nidentity = "me"\nca_cert = "ca.der"\nclient_cert = "ca.der"\n'
        'private_key = "key.der"\n'))
    with caplog.at_level(logging.WARNING):
        render_overlay(load_profiles([tmp_path / "laptop.toml"]), tmp_path / "out", state=STATE)
    certs = tmp_path / "out/etc/wpa_supplicant/certs"
    assert (certs / "0-ca_cert.der").read_bytes() == der
    assert (certs / "0-private_key.der").read_bytes() == der[::-1]
    assert (certs / "0-private_key.der").stat().st_mode & 0o077 == 0
    # A CA certificate is public: readable by others is no reason to warn.
    assert not [r for r in caplog.records if "readable" in r.getMessage()]
