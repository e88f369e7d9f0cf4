"""The stages' derivations: which inputs move a hash and which do not, and the render stage's no-op."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import imagegen
from imagegen.profile import HostState, load_profiles
from imagegen.render import host_state_for
from imagegen.stages import derivations
from imagegen.stages.derivations import build_derivation, render_derivation, verdict_derivation
from imagegen.stages.realise import realise_overlay
from imagegen.store import Entry, Store
from imagegen.vm.lab import lab_profile, plan_lab

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "laptop.toml"
OVERLAY = Entry(Path("/nowhere") / ("0" * 32 + "-laptop-overlay"))
IMAGE = Entry(Path("/nowhere") / ("1" * 32 + "-laptop-lab-image"))
STATE = HostState.generate()


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "laptop.toml")
    (d / "laptop.state.toml").write_text(HostState.generate().to_toml())
    return d


def render_hash(profile: Path, **kwargs: object) -> str:
    loaded = load_profiles([profile])
    return render_derivation(loaded, host_state_for(loaded), **kwargs).hash  # type: ignore[arg-type]


def build_hash(**changes: object) -> str:
    args: dict[str, object] = dict(distribution="debian", release="trixie", lab=False, hostname="laptop",
                                   root_password_hash=None, mkosi="25.3", state=STATE)
    args.update(changes)
    overlay = args.pop("overlay", OVERLAY)
    return build_derivation(overlay, **args).hash  # type: ignore[arg-type]


def test_render_hash_is_independent_of_location_and_cwd(profile_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = render_hash(profile_dir / "laptop.toml")
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(profile_dir, moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert render_hash(Path("deeper/laptop.toml")) == first


def test_render_hash_ignores_how_a_default_is_spelled(profile_dir: Path) -> None:
    profile = profile_dir / "laptop.toml"
    first = render_hash(profile)
    (profile_dir / "extra.toml").write_text("[bonds.bond0]\nmiimon = 100\n")
    loaded = load_profiles([profile, profile_dir / "extra.toml"])
    assert render_derivation(loaded, host_state_for(loaded)).hash == first


def test_each_render_input_moves_the_hash(profile_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    profile = profile_dir / "laptop.toml"
    base = render_hash(profile)
    seen = {base}

    moved = profile_dir / "moved.toml"
    moved.write_text(profile.read_text().replace('"192.168.0.2/24"', '"192.168.0.3/24"'))
    seen.add(render_hash(moved))

    templates = tmp_path / "templates"
    shutil.copytree(derivations.TEMPLATES, templates)
    conf = templates / "etc/conf.d/network.conf.j2"
    conf.write_text(conf.read_text() + "# one more line\n")
    seen.add(render_hash(profile, templates=templates))

    seen.add(render_hash(profile, lab=True))

    state = profile_dir / "laptop.state.toml"
    original = state.read_text()
    state.write_text(HostState.generate().to_toml())
    seen.add(render_hash(profile))
    state.write_text(original)
    assert render_hash(profile) == base

    monkeypatch.setattr(imagegen, "__version__", "99.0")
    seen.add(render_hash(profile))
    assert len(seen) == 6


def test_a_psk_file_is_an_input_by_content(profile_dir: Path) -> None:
    profile = profile_dir / "laptop.toml"
    text = profile.read_text()
    assert 'passphrase = "SuperSecret"' in text
    profile.write_text(text.replace('passphrase = "SuperSecret"', 'psk_file = "wifi.key"'))
    (profile_dir / "wifi.key").write_text("FirstSecret\n")
    first = render_hash(profile)
    (profile_dir / "wifi.key").write_text("OtherSecret\n")
    assert render_hash(profile) != first


def test_secrets_reach_the_metadata_only_as_digests(profile_dir: Path) -> None:
    loaded = load_profiles([profile_dir / "laptop.toml"])
    state = host_state_for(loaded)
    text = render_derivation(loaded, state).to_json()
    assert "SuperSecret" not in text and state.dhcp6c_key not in text


def test_each_build_input_moves_the_hash_and_the_cwd_does_not(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base = build_hash()
    conf = tmp_path / "mkosi.conf.d"
    shutil.copytree(REPO / "mkosi.conf.d", conf)
    assert build_hash(conf_dir=conf) == base, "a copy of the configuration elsewhere is the same input"
    first = sorted(p for p in conf.rglob("*.conf"))[0]
    first.write_text(first.read_text() + "\n# changed\n")
    variants = [
        build_hash(overlay=Entry(Path("/x") / ("2" * 32 + "-laptop-overlay"))),
        build_hash(conf_dir=conf),
        build_hash(mkosi="26"),
        build_hash(distribution="arch", release="rolling"),
        build_hash(release="bookworm"),
        build_hash(lab=True),
        build_hash(hostname="kiosk"),
        build_hash(root_password_hash="$6$salt$hash"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    monkeypatch.chdir(tmp_path)
    assert build_hash() == base


def test_the_lab_tree_is_a_build_input_of_the_lab_variant_only(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    shutil.copytree(REPO / "overlays" / "lab", lab)
    before = build_hash(lab=True, lab_tree=lab)
    (lab / "etc" / "extra.conf").write_text("x\n")
    assert build_hash(lab=True, lab_tree=lab) != before
    assert build_hash(lab=False, lab_tree=lab) == build_hash()


def test_verdict_hash_follows_image_scenarios_and_parameters() -> None:
    plan = plan_lab(load_profiles([EXAMPLE]).profile)

    def h(**changes: object) -> str:
        args: dict[str, object] = dict(hostname="laptop", scenarios=("failover", "failback"), uefi=False,
                                       lab_plan=plan, dhcp6_unit="dhcp6c@.service")
        args.update(changes)
        image = args.pop("image", IMAGE)
        return verdict_derivation(image, **args).hash  # type: ignore[arg-type]

    base = h()
    assert h(scenarios=("failback", "failover")) == base, "the order the scenarios are named in is no input"
    other_plan = plan_lab(load_profiles([EXAMPLE]).profile.model_copy(
        update={"bonds": {"bond0": load_profiles([EXAMPLE]).profile.bonds["bond0"].model_copy(
            update={"fail_over_mac": "none"})}}))
    variants = [
        h(image=Entry(Path("/x") / ("3" * 32 + "-laptop-lab-image"))),
        h(scenarios=("failover",)),
        h(uefi=True),
        h(lab_plan=other_plan),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_render_stage_is_a_no_op_the_second_time(profile_dir: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    loaded = load_profiles([profile_dir / "laptop.toml"])
    first = realise_overlay(store, loaded)
    assert not first.reused
    assert "192.168.0.2/24" in (first.path / "etc/conf.d/network.conf").read_text()
    again = realise_overlay(store, load_profiles([profile_dir / "laptop.toml"]))
    assert again.reused and again.path == first.path
    assert realise_overlay(store, loaded, lab=True).path != first.path


def test_the_verdict_keeps_the_switch_port_s_eap_password_only_as_a_keyed_digest() -> None:
    plan = plan_lab(lab_profile(load_profiles([REPO / "examples" / "dock.toml"])))
    assert plan.wired_auth is not None
    password = plan.wired_auth.password
    drv = verdict_derivation(IMAGE, hostname="dock", scenarios=("wired-8021x",), uefi=False, lab_plan=plan,
                             dhcp6_unit="dhcp6c", state=STATE)
    text = str(drv.inputs)
    assert password not in text and "password" not in drv.inputs["parameters"]["lab_plan"]["wired_auth"]
    assert drv.inputs["parameters"]["lab_plan"]["wired_auth"]["key"].startswith("hmac-sha256:")
    other = replace(plan, wired_auth=replace(plan.wired_auth, password=password + "!"))
    changed = verdict_derivation(IMAGE, hostname="dock", scenarios=("wired-8021x",), uefi=False, lab_plan=other,
                                 dhcp6_unit="dhcp6c", state=STATE)
    assert changed.hash != drv.hash, "another password is another verdict"
