"""What the store shows the world: no digest that tests a guessed secret, and hashes of what decides output."""

# ruff: noqa: F401, F811 (pytest fixtures are imported by name and named again as parameters)
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from store_fixtures import FakeMkosi, fake_mkosi, work
from typer.testing import CliRunner

from imagegen.cli import app
from imagegen.profile import HostState, load_profiles
from imagegen.profile.state import read_state
from imagegen.render import host_state_for, resolve_target
from imagegen.stages.derivations import profile_files, profile_json, render_derivation
from imagegen.stages.realise import realise_overlay
from imagegen.store import Store, canonical_json, diff_trees

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "laptop.toml"

TWO_BONDS = """
[image]
hostname = "twin"
distribution = "debian"

[interfaces.eth0]
type = "ethernet"
[interfaces.wlan0]
type = "wireless"
[interfaces.eth1]
type = "ethernet"
[interfaces.wlan1]
type = "wireless"

{first}
{second}

[wireless]
country = "US"

[[wireless.networks]]
ssid = "Lab"
passphrase = "SuperSecret"
"""
BOND_A = """[bonds.bonda]
members = ["eth0", "wlan0"]
primary = "eth0"
addresses = ["192.168.10.2/24"]
"""
BOND_B = """[bonds.bondb]
members = ["eth1", "wlan1"]
primary = "eth1"
addresses = ["192.168.20.2/24"]
"""


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "laptop.toml")
    return d


def readable_text(root: Path) -> str:
    """Everything in the store a reader other than its owner could get at, were the root open."""
    texts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != ".key" and path.stat().st_mode & 0o044:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_no_record_in_the_store_is_an_offline_oracle_for_the_passphrase(profile_dir: Path) -> None:
    profile = profile_dir / "laptop.toml"
    profile.write_text(profile.read_text().replace('passphrase = "SuperSecret"', 'psk_file = "wifi.key"'))
    (profile_dir / "wifi.key").write_text("SuperSecret\n")
    loaded = load_profiles([profile])
    store = Store(profile_dir.parent / "store")
    entry = realise_overlay(store, loaded)
    store.record_generation("laptop", entry, store.keyed_digest("profile"))
    text = readable_text(store.root)
    # What a guesser computes: one plain hash per guess, of the profile or of the psk_file's content.
    guesses = [hashlib.sha256(canonical_json(profile_json(loaded)).encode()).hexdigest(),
               hashlib.sha256(b"SuperSecret\n").hexdigest()]
    assert entry.path_name in text and not [g for g in guesses if g in text]
    inputs = entry.metadata()["derivation"]["inputs"]
    assert inputs["profile"].startswith("hmac-sha256:") and inputs["state"].startswith("hmac-sha256:")
    assert inputs["profile_files"]["wireless.networks.0.psk_file"].startswith("hmac-sha256:")


def test_the_hash_key_decides_the_names_so_they_are_no_oracle_to_whoever_lacks_it(profile_dir: Path) -> None:
    loaded = load_profiles([profile_dir / "laptop.toml"])
    state = HostState.generate()
    same_secrets_other_key = HostState(state.duid, state.dhcp6c_key, hash_key=b"k" * 32)
    assert render_derivation(loaded, state).hash != render_derivation(loaded, same_secrets_other_key).hash


def test_the_same_state_file_gives_the_same_names_in_every_store(profile_dir: Path, tmp_path: Path) -> None:
    loaded = load_profiles([profile_dir / "laptop.toml"])
    state = host_state_for(loaded)
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    a, b = realise_overlay(one, loaded, state=state), realise_overlay(two, loaded, state=state)
    assert a.path_name == b.path_name  # a binary cache substitutes entries by name
    # The stores' own records are keyed by each store's key.
    assert one.keyed_digest("p") != two.keyed_digest("p")


def test_a_state_file_gets_a_hash_key_and_an_older_one_a_stable_derived_key(tmp_path: Path) -> None:
    new = tmp_path / "new.state.toml"
    state = HostState.generate()
    new.write_text(state.to_toml())
    assert read_state(new).hash_key == state.hash_key and len(state.hash_key) == 32
    older = tmp_path / "older.state.toml"
    older.write_text("".join(line for line in state.to_toml().splitlines(True) if not line.startswith("hash_key")))
    first = read_state(older).hash_key
    assert first == read_state(older).hash_key and first != state.hash_key and len(first) == 32


def test_bond_declaration_order_moves_the_lab_overlay_hash(tmp_path: Path) -> None:
    # The lab plays the first suitable bond in declaration order; canonical JSON sorts the keys away.
    store = Store(tmp_path / "store")
    overlays = []
    for name, (first, second) in (("ab", (BOND_A, BOND_B)), ("ba", (BOND_B, BOND_A))):
        d = tmp_path / name
        d.mkdir()
        (d / "twin.toml").write_text(TWO_BONDS.format(first=first, second=second))
        (d / "twin.state.toml").write_text((tmp_path / "ab" / "twin.state.toml").read_text() if name == "ba"
                                           else HostState.generate().to_toml())
        overlays.append(realise_overlay(store, load_profiles([d / "twin.toml"]), lab=True))
    ab, ba = overlays
    assert ab.path_name != ba.path_name
    assert diff_trees(ab.path, ba.path), "the two orders render different lab files"


def test_the_resolved_distribution_enters_the_render_hash(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "laptop.toml").write_text(EXAMPLE.read_text().replace('distribution = "debian"\nrelease = "trixie"\n', ""))
    loaded = load_profiles([d / "laptop.toml"])
    assert loaded.profile.image.distribution is None
    state = host_state_for(loaded)
    hashes = set()
    for host in ('ID=debian\nVERSION_CODENAME=trixie\n', 'ID=debian\nVERSION_CODENAME=bookworm\n', 'ID=arch\n'):
        (tmp_path / "os-release").write_text(host)
        target = resolve_target(loaded.profile.image, tmp_path / "os-release")
        drv = render_derivation(loaded, state, target=target)
        hashes.add(drv.hash)
        assert json.loads(drv.to_json())["inputs"]["target"] == {"distribution": target.distribution,
                                                                 "release": target.release}
    assert len(hashes) == 3


def test_build_history_and_manifest_hold_only_keyed_profile_digests(work: Path, fake_mkosi: FakeMkosi) -> None:
    runner = CliRunner()
    built = runner.invoke(app, ["build", "laptop.toml", "--json"])
    assert built.exit_code == 0, built.output
    history = runner.invoke(app, ["history", "laptop", "--json"])
    loaded = load_profiles([work / "laptop.toml"])
    plain = hashlib.sha256(canonical_json(profile_json(loaded)).encode()).hexdigest()
    generation = json.loads(history.stdout)[0]
    manifest = json.loads(built.stdout)["manifest"]
    assert generation["profile_hash"].startswith("hmac-sha256:")
    assert generation["profile_hash"] == json.loads(built.stdout)["profile_hash"]
    assert manifest["profile_hash"].startswith("hmac-sha256:")
    assert plain not in history.stdout + built.stdout + readable_text(work / "store")


def test_hashing_the_inputs_never_blocks_on_a_fifo_named_as_a_secret_file(tmp_path: Path) -> None:
    fifo = tmp_path / "psk.fifo"
    os.mkfifo(fifo)
    path = tmp_path / "laptop.toml"
    path.write_text(EXAMPLE.read_text().replace('passphrase = "SuperSecret"', f'psk_file = "{fifo.name}"'))
    loaded = load_profiles([path])
    state = HostState.generate()
    found: dict[str, str] = {}
    worker = threading.Thread(target=lambda: found.update(profile_files(loaded, state)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # blocked in open(): let it go, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("profile_files blocked on the FIFO")
    assert found == {"wireless.networks.0.psk_file": "unreadable"}
