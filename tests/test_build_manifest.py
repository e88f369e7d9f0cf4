import os
from pathlib import Path

from build_fixtures import make_overlay

from imagegen.image.manifest import BuildManifest, Package, packages_from_mkosi_manifest, tree_hash


def test_tree_hash_is_stable_and_sees_content_mode_and_hard_links(tmp_path: Path) -> None:
    a = make_overlay(tmp_path / "a")
    b = make_overlay(tmp_path / "b")
    assert tree_hash(a) == tree_hash(b)

    (b / "etc/hostname").write_text("other\n")
    assert tree_hash(a) != tree_hash(b)

    c = make_overlay(tmp_path / "c")
    (c / "etc/wpa_supplicant/wpa_supplicant.conf").chmod(0o644)
    assert tree_hash(a) != tree_hash(c)

    # Same bytes, but a copy instead of a hard link: the image would differ, so must the hash.
    d = make_overlay(tmp_path / "d")
    units = d / "etc/systemd/system"
    text = (units / "enp3s0@.service").read_bytes()
    os.unlink(units / "enp3s0@.service")
    (units / "enp3s0@.service").write_bytes(text)
    assert tree_hash(a) != tree_hash(d)


def test_packages_read_from_mkosi_json_manifest(tmp_path: Path) -> None:
    path = tmp_path / "image.manifest"
    path.write_text('{"manifest_version": 1, "packages": ['
                    '{"type": "deb", "name": "iw", "version": "6.9-1", "architecture": "amd64"},'
                    '{"type": "deb", "name": "bash", "version": "5.2", "architecture": "amd64"}]}')
    assert [p.name for p in packages_from_mkosi_manifest(path)] == ["bash", "iw"]
    assert packages_from_mkosi_manifest(tmp_path / "missing") == []


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    m = BuildManifest(
        distribution="debian", release="trixie", variant="lab", mkosi_version="25.3", profile_hash="p",
        overlay_hash="o", config_hash="c", cache_reused=True, cache_reason="unchanged",
        duration_seconds=12.5, outputs={"image": "/x/image.raw"}, kernel_command_line="root=PARTLABEL=r",
        packages=[Package("iw", "6.9-1", "amd64")],
    )
    path = tmp_path / "manifest.json"
    path.write_text(m.to_json())
    assert BuildManifest.load(path) == m
