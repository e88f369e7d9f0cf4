import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from build_fixtures import make_overlay

from imagegen.errors import UsageError
from imagegen.image.config import BuildRequest, MkosiInputs, mkosi_argv, repo_root, write_root_password_config
from imagegen.image.mkosi import summary
from imagegen.image.trees import overlay_unit_files, preset_text, write_policy_tree


def inputs(tmp_path: Path, overlay: Path, *, sandbox: bool = True, lab: Path | None = None) -> MkosiInputs:
    return MkosiInputs(
        output_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        overlay=overlay,
        policy_tree=tmp_path / "policy",
        sandbox_tree=tmp_path / "sandbox" if sandbox else None,
        tools_sandbox_tree=tmp_path / "tools-sandbox",
        lab_tree=lab,
    )


def test_argv_passes_overlay_last_as_one_tree_and_sandbox_for_image_and_tools(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", hostname="laptop")
    argv = mkosi_argv(request, inputs(tmp_path, overlay))
    assert argv[:2] == ["--directory", str(repo_root())]
    extra = [a for a in argv if a.startswith("--extra-tree=")]
    assert extra == [f"--extra-tree={tmp_path / 'policy'}", f"--extra-tree={overlay}"]
    assert f"--sandbox-tree={tmp_path / 'sandbox'}" in argv
    assert f"--tools-tree-sandbox-tree={tmp_path / 'tools-sandbox'}" in argv
    assert argv[argv.index("--release") + 1] == "trixie"
    assert "--profile" not in argv and "--root-password" not in argv
    assert argv[-2:] == ["--force", "build"]


def test_lab_variant_adds_profile_and_lab_tree_before_overlay(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", lab=True,
                           root_password_hash="$y$j9T$salt$hash")
    config = write_root_password_config(request, tmp_path)
    argv = mkosi_argv(request, dataclasses.replace(inputs(tmp_path, overlay, lab=tmp_path / "lab"),
                                                   root_password_config=config))
    assert argv[argv.index("--profile") + 1] == "lab"
    extra = [a.split("=", 1)[1] for a in argv if a.startswith("--extra-tree=")]
    assert extra[-2:] == [str(tmp_path / "lab"), str(overlay)]
    assert f"--include={config}" in argv
    assert request.cache_dir.name == "debian~trixie~lab"


def test_arch_takes_mirror_option_and_no_image_sandbox(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", distribution="arch",
                           mirror="http://arch.example/archlinux")
    argv = mkosi_argv(request, inputs(tmp_path, overlay, sandbox=False))
    assert argv[argv.index("--mirror") + 1] == "http://arch.example/archlinux"
    assert not any(a.startswith("--sandbox-tree=") for a in argv)
    assert argv[argv.index("--release") + 1] == "rolling"


def test_unknown_distribution_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        BuildRequest(overlay=make_overlay(tmp_path / "o"), out_dir=tmp_path, distribution="gentoo")
    assert "image.distribution" in str(e.value)


def test_preset_ignores_overlay_units_and_disables_package_services(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    units = overlay_unit_files(overlay)
    # Unit files only: the enablement links and .wants directories are the renderer's to keep.
    assert units == ["enp3s0@.service", "master@.service", "slave@.service", "wlp2s0@.service"]
    text = preset_text(units)
    assert "ignore enp3s0@.service\n" in text and "ignore slave@.service\n" in text
    assert "disable systemd-networkd.service\n" in text
    assert "disable wide-dhcpv6-client.service\n" in text
    assert "enable" not in text.split("\n", 1)[1]


def test_policy_tree_masks_debian_dhcp6c_init_script(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    root = write_policy_tree(tmp_path / "policy", [overlay], "debian")
    mask = root / "etc/systemd/system/wide-dhcpv6-client.service"
    assert os.readlink(mask) == "/dev/null"
    assert (root / "etc/systemd/system-preset/80-imagegen-packages.preset").is_file()
    arch = write_policy_tree(tmp_path / "policy-arch", [overlay], "arch")
    assert not (arch / "etc/systemd/system/wide-dhcpv6-client.service").exists()


HASH = "$y$j9T$saltsaltsalt$hashhashhashhashhashhashhashhashhashhashhas"


def test_root_password_hash_is_never_on_mkosis_command_line(tmp_path: Path) -> None:
    # /proc/PID/cmdline is readable by every local user, and the command line is logged (build.log, -v).
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", root_password_hash=HASH)
    config = write_root_password_config(request, tmp_path)
    assert config is not None
    argv = mkosi_argv(request, dataclasses.replace(inputs(tmp_path, overlay), root_password_config=config))
    assert not [a for a in argv if "hashhash" in a or a == "--root-password"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_text() == f"[Content]\nRootPassword=hashed:{HASH}\n"


def test_a_hash_without_its_config_file_is_refused_not_dropped(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", root_password_hash=HASH)
    with pytest.raises(ValueError):
        mkosi_argv(request, inputs(tmp_path, overlay))


@pytest.mark.skipif(
    subprocess.run([sys.executable, "-m", "mkosi", "--version"], capture_output=True).returncode != 0,
    reason="mkosi is not importable (run `imagegen setup`)",
)
def test_mkosi_reads_the_root_password_from_the_config_file_and_no_log_has_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    overlay = make_overlay(tmp_path / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", root_password_hash=HASH,
                           cache_root=tmp_path / "cache")
    with caplog.at_level("INFO", logger="imagegen.run"):  # what `imagegen -v` prints
        text = summary(request)
    assert "Root Password: (set)" in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "mkosi" in logged and "hashhash" not in logged


@pytest.mark.parametrize("store", ["st,ore", "st:ore"])
def test_a_path_mkosi_would_split_into_other_trees_is_refused(tmp_path: Path, store: str) -> None:
    # e.g. --store /srv/a,b: mkosi would read "--extra-tree=/srv/a,b/..." as two trees, /srv/a among them.
    root = tmp_path / store
    overlay = make_overlay(root / "overlay")
    request = BuildRequest(overlay=overlay, out_dir=tmp_path / "out", hostname="laptop")
    with pytest.raises(UsageError, match="mkosi reads as separators in --extra-tree"):
        mkosi_argv(request, inputs(tmp_path, overlay))
