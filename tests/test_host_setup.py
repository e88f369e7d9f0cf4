import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen.host.setup import (
    DEBIAN_CHECK_PACKAGES,
    DEBIAN_HOST_PACKAGES,
    MKOSI_VERSION,
    HostSetup,
    default_host_setup,
    host_family,
    private_apt_options,
    setup_host,
    unpacked_mkosi_version,
    write_pth,
)


def test_private_apt_configuration_reads_and_writes_only_its_own_directory(tmp_path: Path) -> None:
    options = private_apt_options(tmp_path)
    values = dict(options[i + 1].split("=", 1) for i in range(0, len(options), 2))
    assert values["Dir::Etc::SourceList"] == "/dev/null"
    for key in ("Dir::Etc::SourceParts", "Dir::Etc::PreferencesParts", "Dir::State::Lists", "Dir::Cache"):
        assert Path(values[key]).is_relative_to(tmp_path), key
        assert Path(values[key]).is_dir()


def test_host_family_from_os_release() -> None:
    assert host_family({"ID": "debian"}) == "debian"
    assert host_family({"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}) == "debian"
    assert host_family({"ID": "endeavouros", "ID_LIKE": "arch"}) == "arch"
    assert host_family({"ID": "fedora"}) == "other"


def test_pth_file_is_written_once(tmp_path: Path) -> None:
    setup = HostSetup(data_dir=tmp_path / "data", site_packages=tmp_path / "site")
    assert write_pth(setup)
    assert setup.pth_file.read_text() == f"{setup.mkosi_python_path}\n"
    assert not write_pth(setup)


def test_unpacked_version_needs_the_package_and_its_dist_info(tmp_path: Path) -> None:
    setup = HostSetup(data_dir=tmp_path, site_packages=tmp_path / "site")
    assert unpacked_mkosi_version(setup) is None
    pkg = setup.mkosi_python_path / "mkosi"
    pkg.mkdir(parents=True)
    (pkg / "__main__.py").write_text("")
    (setup.mkosi_python_path / f"mkosi-{MKOSI_VERSION}.dist-info").mkdir()
    assert unpacked_mkosi_version(setup) == MKOSI_VERSION


def test_default_location_is_the_user_data_dir_and_this_interpreter() -> None:
    setup = default_host_setup()
    assert setup.data_dir.name == "imagegen"
    assert Path(sys.prefix) in setup.site_packages.parents


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="setup installs packages as root")
def test_setup_is_idempotent_and_leaves_host_apt_alone() -> None:
    apt = Path("/etc/apt")
    before = {p: p.stat().st_mtime_ns for p in apt.rglob("*") if p.is_file()}
    lines: list[str] = []
    setup_host(lines.append)
    lines.clear()
    setup_host(lines.append)
    assert any("already unpacked" in line for line in lines), lines
    assert not any(line.startswith("apt-get install") for line in lines), lines
    after = {p: p.stat().st_mtime_ns for p in apt.rglob("*") if p.is_file()}
    assert after == before


# Every program a test calls on the host to read what imagegen wrote (a missing one makes its test skip).
TOOLS_THE_TESTS_CALL = ("systemd-analyze", "systemctl", "wpa_passphrase", "wpa_supplicant", "nginx", "tesseract")


@pytest.mark.parametrize("tool", TOOLS_THE_TESTS_CALL)
def test_setup_installs_the_package_of_every_tool_the_tests_call(tool: str) -> None:
    path = shutil.which(tool)
    if path is None or shutil.which("dpkg-query") is None:
        pytest.skip(f"{tool} is not installed here (imagegen setup installs it on Debian)")
    # dpkg knows a file by the path its package ships it under: /bin/systemctl on a merged /usr too.
    real = os.path.realpath(path)
    candidates = dict.fromkeys([real, path, real.removeprefix("/usr"), path.removeprefix("/usr")])
    found = [subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True) for c in candidates]
    owners = next((f.stdout for f in found if f.returncode == 0), "")
    assert owners, f"no Debian package ships {path}"
    packages = {name.strip().split(":")[0] for name in owners.split(": ", 1)[0].split(",")}
    assert packages & set(DEBIAN_HOST_PACKAGES + DEBIAN_CHECK_PACKAGES), (tool, packages)


def test_packages_setup_installs_start_no_service_and_the_machines_policy_is_left_alone(tmp_path: Path) -> None:
    from imagegen.host.setup import services_not_started

    policy = tmp_path / "policy-rc.d"
    with services_not_started(policy):
        # What invoke-rc.d runs before it starts a service: 101 means "not allowed".
        assert subprocess.run([str(policy), "nginx", "start"]).returncode == 101
    assert not policy.exists()
    policy.write_text("#!/bin/sh\nexit 0\n")
    with services_not_started(policy):
        assert policy.read_text() == "#!/bin/sh\nexit 0\n"
    assert policy.read_text() == "#!/bin/sh\nexit 0\n", "a policy the machine had stays"
