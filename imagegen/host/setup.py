"""Prepare the host: QEMU, OVMF, mkosi pinned to one version and the tools the checks call, without touching the
host's apt configuration.

mkosi is not on PyPI. On Debian and Ubuntu hosts its pure-Python package is taken from Debian trixie's
`mkosi` .deb, fetched with a private apt configuration (own sources list derived from the host's, own
lists and cache directories), unpacked under the user's data directory and made importable through a
.pth file in the running interpreter's site-packages: the project's .venv when `./bootstrap` runs it.
On Arch, pacman installs it.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagegen.errors import ImagegenError
from imagegen.image.aptsources import DEBIAN_KEYRING, DebianMirror, host_debian_mirror
from imagegen.osrelease import os_release
from imagegen.run import run

MKOSI_VERSION = "25.3"
MKOSI_SUITE = "trixie"
MKOSI_MIN_MAJOR = 25

# What the host itself needs. mkosi builds everything else inside its tools tree (ToolsTree=default),
# which it bootstraps with the host's apt, dpkg and Debian keyring.
DEBIAN_HOST_PACKAGES = (
    "qemu-system-x86",
    "qemu-utils",
    "ovmf",
    "apt",
    "dpkg",
    "debian-archive-keyring",
    "util-linux",  # losetup and mount, to inspect a built image without booting it
    "e2fsprogs",
)
# What `imagegen check` and the test suite run against the rendered files, so that every check runs:
# systemd-analyze verify and systemctl preset (systemd), wpa_passphrase and wpa_supplicant (wpasupplicant),
# a real WebDAV server for the binary cache's tests (nginx, started by the tests on 127.0.0.1 only), and
# OCR of the lab VM's screen for the test API's get_screen_text and wait_for_text (tesseract-ocr, which
# brings its English data). On CI a check skipped for want of one of them fails the run (tests/conftest.py).
DEBIAN_CHECK_PACKAGES = ("systemd", "wpasupplicant", "nginx", "tesseract-ocr")
# Debian's maintainer scripts start a package's services unless policy-rc.d says no (exit 101): setup
# installs programs, and no server of a package it installs may keep running after it.
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_POLICY_TEXT = "#!/bin/sh\n# Written by imagegen setup while it installs packages: start no service.\nexit 101\n"
ARCH_HOST_PACKAGES = ("qemu-base", "edk2-ovmf", "mkosi", "wpa_supplicant")

PTH_NAME = "imagegen-mkosi.pth"
UPSTREAM_INSTALL = "pipx install git+https://github.com/systemd/mkosi.git@v25.3"

Report = Callable[[str], None]


@dataclass(frozen=True)
class HostSetup:
    """Where the pinned mkosi lives and how the interpreter finds it."""

    data_dir: Path
    site_packages: Path

    @property
    def mkosi_root(self) -> Path:
        return self.data_dir / f"mkosi-{MKOSI_VERSION}"

    @property
    def mkosi_python_path(self) -> Path:
        return self.mkosi_root / "usr/lib/python3/dist-packages"

    @property
    def pth_file(self) -> Path:
        return self.site_packages / PTH_NAME


def default_host_setup() -> HostSetup:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    return HostSetup(data_dir=data_home / "imagegen", site_packages=Path(sysconfig.get_paths()["purelib"]))


def host_family(release: dict[str, str]) -> str:
    ids = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
    if ids & {"debian", "ubuntu"}:
        return "debian"
    if "arch" in ids:
        return "arch"
    return "other"


def unpacked_mkosi_version(setup: HostSetup) -> str | None:
    """The version of the mkosi tree unpacked by an earlier setup, read from its dist-info."""
    path = setup.mkosi_python_path
    if not (path / "mkosi/__main__.py").is_file():
        return None
    for info in sorted(path.glob("mkosi-*.dist-info")):
        return info.name.removeprefix("mkosi-").removesuffix(".dist-info")
    return None


def missing_debian_packages(packages: tuple[str, ...]) -> list[str]:
    missing = []
    for package in packages:
        proc = run(["dpkg-query", "-W", "-f", "${Status}", package], check=False)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(package)
    return missing


def apt_install(packages: list[str], report: Report, policy: Path = POLICY_RC_D) -> None:
    if not packages:
        return
    report(f"apt-get install {' '.join(packages)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], env=env)
    with services_not_started(policy):
        run(["apt-get", "install", "--yes", "--no-install-recommends", *packages], env=env)


@contextmanager
def services_not_started(policy: Path = POLICY_RC_D) -> Iterator[None]:
    """Within the block, Debian's maintainer scripts start no service. An existing policy-rc.d (the
    machine's own) is left as it is and decides; the one written here is removed afterwards."""
    try:
        fd = os.open(policy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    except FileExistsError:
        yield
        return
    with os.fdopen(fd, "w") as f:
        f.write(_POLICY_TEXT)
    try:
        yield
    finally:
        if policy.is_file() and not policy.is_symlink() and policy.read_text() == _POLICY_TEXT:
            policy.unlink()


def private_apt_options(root: Path) -> list[str]:
    """apt options that read and write only below `root`: the host's lists, cache and pins stay as they are."""
    for d in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={root / 'sources.list.d'}",
        "-o", f"Dir::Etc::PreferencesParts={root / 'preferences.d'}",
        "-o", f"Dir::State::Lists={root / 'lists'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def fetch_mkosi_deb(mirror: DebianMirror, workdir: Path) -> Path:
    """Download trixie's mkosi .deb with a throw-away apt configuration; return the .deb's path."""
    apt_root = workdir / "apt"
    options = private_apt_options(apt_root)
    (apt_root / "sources.list.d/imagegen-mkosi.sources").write_text(
        "\n".join(
            [
                "Types: deb",
                f"URIs: {mirror.archive}",
                f"Suites: {MKOSI_SUITE}",
                "Components: main",
                f"Signed-By: {DEBIAN_KEYRING}",
            ]
        )
        + "\n"
    )
    run(["apt-get", *options, "update"])
    proc = run(["apt-cache", *options, "show", "--no-all-versions", "mkosi"])
    version = next(
        (line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("Version:")),
        "",
    )
    if not version.startswith(MKOSI_VERSION):
        raise ImagegenError(
            f"Debian {MKOSI_SUITE} offers mkosi {version or '(none)'}, imagegen is pinned to {MKOSI_VERSION}",
            hint=f"install mkosi {MKOSI_VERSION} by hand: {UPSTREAM_INSTALL}",
        )
    downloads = workdir / "deb"
    downloads.mkdir()
    run(["apt-get", *options, "download", f"mkosi={version}"], cwd=downloads)
    debs = sorted(downloads.glob("mkosi_*.deb"))
    if not debs:
        raise ImagegenError("apt-get download mkosi produced no .deb", hint="run `imagegen setup` again")
    return debs[0]


def install_mkosi_from_deb(deb: Path, setup: HostSetup, workdir: Path) -> None:
    """Unpack the .deb beside the final place, then rename it there: a half-unpacked tree is never used."""
    staging = Path(tempfile.mkdtemp(prefix=".mkosi-", dir=setup.data_dir))
    try:
        run(["dpkg-deb", "-x", deb, staging])
        if not (staging / "usr/lib/python3/dist-packages/mkosi/__main__.py").is_file():
            raise ImagegenError(f"{deb.name} holds no mkosi Python package", hint="run `imagegen setup` again")
        if setup.mkosi_root.exists():
            shutil.rmtree(setup.mkosi_root)
        staging.rename(setup.mkosi_root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_pth(setup: HostSetup) -> bool:
    """Point the interpreter at the unpacked mkosi; True when the file changed."""
    line = f"{setup.mkosi_python_path}\n"
    if setup.pth_file.is_file() and setup.pth_file.read_text() == line:
        return False
    setup.site_packages.mkdir(parents=True, exist_ok=True)
    tmp = setup.pth_file.with_suffix(".tmp")
    tmp.write_text(line)
    tmp.rename(setup.pth_file)
    return True


def mkosi_importable_version(python: str = sys.executable) -> str | None:
    """Ask a fresh interpreter (which reads the .pth files) which mkosi it imports."""
    proc = run([python, "-m", "mkosi", "--version"], check=False)
    if proc.returncode != 0:
        return None
    # "mkosi 25.3"
    words = proc.stdout.split()
    return words[-1] if words else None


def setup_debian(setup: HostSetup, report: Report, mirror: DebianMirror | None = None) -> None:
    apt_install(missing_debian_packages(DEBIAN_HOST_PACKAGES + DEBIAN_CHECK_PACKAGES), report)

    if unpacked_mkosi_version(setup) == MKOSI_VERSION:
        report(f"mkosi {MKOSI_VERSION} already unpacked in {setup.mkosi_root}")
    else:
        report(f"fetching mkosi {MKOSI_VERSION} from Debian {MKOSI_SUITE} (private apt configuration)")
        setup.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="imagegen-apt-") as tmp:
            deb = fetch_mkosi_deb(mirror or host_debian_mirror(), Path(tmp))
            install_mkosi_from_deb(deb, setup, Path(tmp))
        report(f"unpacked {deb.name} into {setup.mkosi_root}")

    if write_pth(setup):
        report(f"wrote {setup.pth_file}")
    found = mkosi_importable_version()
    if found != MKOSI_VERSION:
        raise ImagegenError(
            f"`{sys.executable} -m mkosi` reports {found or 'no mkosi'}, expected {MKOSI_VERSION}",
            hint=f"another mkosi shadows {setup.mkosi_python_path}; remove it or its .pth file",
        )
    report(f"mkosi {found} importable by {sys.executable}")


def setup_arch(report: Report) -> None:
    report(f"pacman -S --needed {' '.join(ARCH_HOST_PACKAGES)}")
    run(["pacman", "-S", "--needed", "--noconfirm", *ARCH_HOST_PACKAGES])


def setup_host(report: Report, setup: HostSetup | None = None, mirror: DebianMirror | None = None) -> None:
    """Install what imagegen needs on this host; running it again changes nothing."""
    if os.geteuid() != 0:
        raise ImagegenError("imagegen setup installs packages and must run as root", hint="run it with sudo")
    family = host_family(os_release())
    if family == "debian":
        setup_debian(setup or default_host_setup(), report, mirror)
    elif family == "arch":
        setup_arch(report)
    else:
        raise ImagegenError(
            "imagegen setup knows Debian, Ubuntu and Arch hosts only",
            hint=f"install QEMU, OVMF and mkosi {MKOSI_VERSION} yourself: {UPSTREAM_INSTALL}",
        )
