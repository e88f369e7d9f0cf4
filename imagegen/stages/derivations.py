"""What each stage's output is a function of, and nothing more.

render: the merged profile with defaults (so spelling a default out changes nothing) and in declaration
        order (the lab plays the first suitable bond in declaration order), the files the
        profile names (psk_file, EAP certificates), the template tree, the host state (DUID, dhcp6c key),
        the distribution and release the files are rendered for (resolved: with `distribution` unset the
        building machine's /etc/os-release decides), the lab flag with the lab's templates, and
        imagegen's version.
build:  the overlay entry, mkosi.conf.d (and overlays/lab for the lab variant), the mkosi version,
        distribution and release, the lab flag, the host name and root password hash that mkosi is given,
        the profile's packages, locale, keymap, time zone and kernel command line words, and imagegen's
        version. Not the mirror: a mirror serves the same archive, and where the packages
        were fetched from does not change what is installed; the manifest records the exact versions,
        and `--refresh` resolves the packages anew when the archive has moved.
test:   the image entry, the scenario set, the scenario parameters (boot mode, the lab the profile
        implies: names, addresses, AP, what the bond must do) and imagegen's version. Not the
        accelerator: KVM or TCG changes how fast the verdict comes, not what it says.

imagegen's version is its release number and a digest of the source of the stage (and of what the
stage imports from below), so that a changed template filter or scenario in a checkout is a new version.
Secrets (the profile's keys, the files it names, the state file, the lab's AP key) enter the hash only
as HMAC-SHA256 digests keyed by the host's hash key (HostState.hash_key, kept in the 0600 state file):
the canonical inputs are kept in the entry's metadata and the hash names the entry, and neither may be
an offline oracle for a passphrase. The key is the host's, not the store's, so the same inputs give the
same entry name on every machine that builds this host (a binary cache substitutes by name).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import imagegen
from imagegen.image.config import ImageContent, repo_root
from imagegen.profile import HostState, LoadedProfile
from imagegen.render import Target, host_state_for, resolve_target
from imagegen.render.system import named_files
from imagegen.store import Derivation, Entry, FileTree
from imagegen.store.hashing import file_sha256, keyed_digest

PACKAGE = Path(imagegen.__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"
LAB_TEMPLATES = PACKAGE / "vm" / "templates" / "lab"
_NO_CACHE = ("*__pycache__", "*.pyc")

# The packages whose code decides each stage's output (the stage's own and what it calls); command
# modules only parse options and print, so a changed help text does not rebuild an image.
RENDER_CODE = ("profile", "render")
LAB_RENDER_CODE = ("vm/lab.py",)
BUILD_CODE = ("image",)
TEST_CODE = ("scenarios", "testing", "vm", "report")
_NOT_CODE = ("*__pycache__", "*.pyc", "show.py")


def digest(state: HostState, value: Any) -> str:
    """A digest of secret material (JSON data) keyed by the host's hash key; see the module's docstring."""
    return keyed_digest(state.hash_key, value)


def imagegen_version(parts: tuple[str, ...]) -> dict[str, Any]:
    return {
        "release": imagegen.__version__,
        "code": {part: FileTree(PACKAGE / part, _NOT_CODE) for part in parts},
    }


def profile_json(loaded: LoadedProfile) -> dict[str, Any]:
    # The profile's test scripts decide the verdict, not the overlay or the image (verdict_derivation).
    data: dict[str, Any] = loaded.profile.model_dump(mode="json", exclude={"tests"})
    return data


def profile_hash(loaded: LoadedProfile, state: HostState | None = None) -> str:
    """The host's profile hash, as the render stage, the build manifest and generations use it.

    Keyed by the host's hash key (state, else the state file beside the profile). Taken of the profile
    in declaration order, not sorted: the order of bonds, bridges and interfaces decides output.
    """
    state = state or host_state_for(loaded)
    ordered = json.dumps(profile_json(loaded), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return digest(state, {"profile": ordered})


def profile_named_paths(loaded: LoadedProfile) -> dict[str, Path]:
    """The files the profile names, resolved as the renderer resolves them, by dotted key: the Wi-Fi
    networks' psk_file and EAP files, `files` sources and users' key files."""
    found: dict[str, Path] = {}
    for index, net in enumerate(loaded.profile.wireless.networks):
        base: tuple[str | int, ...] = ("wireless", "networks", index)
        named = [(base + ("psk_file",), net.psk_file)]
        if net.eap is not None:
            named += [(base + ("eap", key), getattr(net.eap, key))
                      for key in ("password_file", "ca_cert", "client_cert", "private_key")]
        for key, name in named:
            if name is None:
                continue
            path = Path(name)
            if not path.is_absolute():
                path = loaded.origin(key).resolve().parent / path
            found[".".join(map(str, key))] = path
    # Files a `files` entry or a user's key file names may be secrets too (a private key shipped under
    # files): keyed like the rest.
    for key, path in named_files(loaded).items():
        found[".".join(map(str, key))] = path
    return found


def profile_files(loaded: LoadedProfile, state: HostState) -> dict[str, str]:
    """Keyed digests of the files the profile names (profile_named_paths)."""
    found: dict[str, str] = {}
    for key, path in profile_named_paths(loaded).items():
        try:
            content = digest(state, {"sha256": file_sha256(path)})
        except OSError:
            content = "unreadable"  # rendering reports it (a FIFO or a device too), naming the field
        found[key] = content
    return found


def state_digest(state: HostState) -> str:
    return digest(state, {"duid": state.duid.hex(), "dhcp6c_key": state.dhcp6c_key})


def render_derivation(
    loaded: LoadedProfile, state: HostState, *, lab: bool = False, templates: Path = TEMPLATES,
    lab_templates: Path = LAB_TEMPLATES, target: Target | None = None,
) -> Derivation:
    """The overlay of a profile; target is the distribution and release it is rendered for (default:
    resolve_target's answer, which with `distribution` unset is this machine's)."""
    host = loaded.profile.image.hostname
    target = target or resolve_target(loaded.profile.image)
    inputs: dict[str, Any] = {
        "profile": profile_hash(loaded, state),
        "profile_files": profile_files(loaded, state),
        "target": {"distribution": target.distribution, "release": target.release},
        "templates": FileTree(templates, _NO_CACHE),
        "state": state_digest(state),
        "lab": lab,
        "imagegen": imagegen_version(RENDER_CODE + (LAB_RENDER_CODE if lab else ())),
    }
    if lab:
        inputs["lab_templates"] = FileTree(lab_templates, _NO_CACHE)
    return Derivation(f"{host}{'-lab' if lab else ''}-overlay", "render", inputs)


def build_derivation(
    overlay: Entry, *, distribution: str, release: str, lab: bool, hostname: str,
    root_password_hash: str | None, mkosi: str, conf_dir: Path | None = None, lab_tree: Path | None = None,
    state: HostState | None = None, content: ImageContent | None = None,
) -> Derivation:
    """The image of an overlay; state (the host's, for its hash key) is needed with a root password hash."""
    root = repo_root()
    conf_dir = conf_dir or root / "mkosi.conf.d"
    inputs: dict[str, Any] = {
        "overlay": overlay,
        "mkosi_conf": FileTree(conf_dir, _NO_CACHE),
        "mkosi_version": mkosi,
        "distribution": distribution,
        "release": release,
        "lab": lab,
        "hostname": hostname,
        "root_password_hash": _root_password_digest(root_password_hash, state),
        "content": (content or ImageContent()).inputs(),
        "imagegen": imagegen_version(BUILD_CODE),
    }
    if lab:
        lab_tree = lab_tree or root / "overlays" / "lab"
        inputs["lab_tree"] = FileTree(lab_tree, _NO_CACHE) if lab_tree.is_dir() else None
    return Derivation(f"{hostname}{'-lab' if lab else ''}-image", "build", inputs)


def _root_password_digest(root_password_hash: str | None, state: HostState | None) -> str | None:
    if not root_password_hash:
        return None
    if state is None:
        raise ValueError("a root password hash enters the image's hash only keyed: pass the host state")
    return digest(state, {"root_password_hash": root_password_hash})


def _plain(value: Any) -> Any:
    """A LabPlan (dataclasses, ip addresses, tuples) as JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# What a lab plan holds that is a secret, by section: the AP's key, the switch port's EAP password.
LAB_PLAN_SECRETS = (("ap", ("passphrase", "psk")), ("wired_auth", ("password",)))


def verdict_derivation(
    image: Entry, *, hostname: str, scenarios: tuple[str, ...], uefi: bool, lab_plan: Any, dhcp6_unit: str,
    state: HostState | None = None, scripts: tuple[Path, ...] = (),
) -> Derivation:
    """The verdict of testing image with the lab lab_plan, then running the user test files scripts.

    The plan holds the AP's key and the switch port's EAP password. With state (the host's) they enter as
    digests keyed by the host's hash key; without, they are left out, and only the image (whose overlay's
    hash covers the profile the plan came from) stands for them. The scripts enter by name and content, in
    the order they run; a script may hold a password it logs in with, so its content is keyed like the
    other secrets.
    """
    plan = json.loads(json.dumps(_plain(lab_plan)))
    for section, keys in LAB_PLAN_SECRETS:
        part = plan.get(section) if isinstance(plan, dict) else None
        if isinstance(part, dict):
            secrets = {key: part.pop(key) for key in keys if key in part}
            if state is not None:
                part["key"] = digest(state, secrets)
    inputs = {
        "image": image,
        "scenarios": sorted(scenarios),
        "parameters": {
            "boot": "uefi" if uefi else "direct-kernel",
            "lab_plan": plan,
            "dhcp6_unit": dhcp6_unit,
        },
        "imagegen": imagegen_version(TEST_CODE),
    }
    if scripts:
        inputs["scripts"] = [{"name": path.name, "content": _script_digest(path, state)} for path in scripts]
    return Derivation(f"{hostname}-verdict", "test", inputs)


def _script_digest(path: Path, state: HostState | None) -> str:
    if state is None:
        raise ValueError("test scripts enter the verdict's hash only keyed: pass the host state")
    return digest(state, {"sha256": file_sha256(path)})
