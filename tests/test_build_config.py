import os
from pathlib import Path

import pytest
from build_fixtures import make_overlay

from imagegen.build.config import BuildRequest, MkosiInputs, mkosi_argv, repo_root
from imagegen.build.trees import overlay_unit_files, preset_text, write_policy_tree
from imagegen.errors import UsageError


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
    argv = mkosi_argv(request, inputs(tmp_path, overlay, lab=tmp_path / "lab"))
    assert argv[argv.index("--profile") + 1] == "lab"
    extra = [a.split("=", 1)[1] for a in argv if a.startswith("--extra-tree=")]
    assert extra[-2:] == [str(tmp_path / "lab"), str(overlay)]
    assert argv[argv.index("--root-password") + 1] == "hashed:$y$j9T$salt$hash"
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
