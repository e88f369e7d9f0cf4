"""What each stage's output is a function of, and nothing more.

render: the merged profile in canonical form (with defaults, so spelling a default out changes nothing),
        the files the profile names (psk_file, EAP certificates), the template tree, the host state
        (DUID, dhcp6c key), the lab flag with the lab's templates, and imagegen's version.
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
Secrets (the profile's keys, the state file) enter the hash only as digests: the canonical inputs are
kept in the entry's metadata, which is readable by all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import imagegen
from imagegen.build.config import ImageContent, repo_root
from imagegen.profile import HostState, LoadedProfile
from imagegen.render.system import named_files
from imagegen.store import Derivation, Entry, FileTree, canonical_json

PACKAGE = Path(imagegen.__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"
LAB_TEMPLATES = PACKAGE / "vm" / "templates" / "lab"
_NO_CACHE = ("*__pycache__", "*.pyc")

# The packages whose code decides each stage's output (the stage's own and what it calls); command
# modules only parse options and print, so a changed help text does not rebuild an image.
RENDER_CODE = ("profile", "render")
LAB_RENDER_CODE = ("vm/lab.py",)
BUILD_CODE = ("build",)
TEST_CODE = ("scenarios", "vm", "report")
_NOT_CODE = ("*__pycache__", "*.pyc", "command.py", "doctor.py", "hostsetup.py", "show.py")


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON, for inputs that must not be readable in the metadata."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


def imagegen_version(parts: tuple[str, ...]) -> dict[str, Any]:
    return {
        "release": imagegen.__version__,
        "code": {part: FileTree(PACKAGE / part, _NOT_CODE) for part in parts},
    }


def profile_json(loaded: LoadedProfile) -> dict[str, Any]:
    data: dict[str, Any] = loaded.profile.model_dump(mode="json")
    return data


def profile_hash(loaded: LoadedProfile) -> str:
    """The host's profile hash, as generations and the build manifest record it."""
    return digest(profile_json(loaded))


def profile_files(loaded: LoadedProfile) -> dict[str, str]:
    """Digests of the files the profile names (resolved as the renderer resolves them)."""
    found: dict[str, str] = {}
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
            try:
                content = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                content = "unreadable"  # rendering reports it, naming the field
            found[".".join(map(str, key))] = content
    for key, path in named_files(loaded).items():
        try:
            found[".".join(map(str, key))] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            found[".".join(map(str, key))] = "unreadable"
    return found


def state_digest(state: HostState) -> str:
    return digest({"duid": state.duid.hex(), "dhcp6c_key": state.dhcp6c_key})


def render_derivation(
    loaded: LoadedProfile, state: HostState, *, lab: bool = False, templates: Path = TEMPLATES,
    lab_templates: Path = LAB_TEMPLATES,
) -> Derivation:
    host = loaded.profile.image.hostname
    inputs: dict[str, Any] = {
        "profile": profile_hash(loaded),
        "profile_files": profile_files(loaded),
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
    content: ImageContent | None = None,
) -> Derivation:
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
        "root_password_hash": digest(root_password_hash) if root_password_hash else None,
        "content": (content or ImageContent()).inputs(),
        "imagegen": imagegen_version(BUILD_CODE),
    }
    if lab:
        lab_tree = lab_tree or root / "overlays" / "lab"
        inputs["lab_tree"] = FileTree(lab_tree, _NO_CACHE) if lab_tree.is_dir() else None
    return Derivation(f"{hostname}{'-lab' if lab else ''}-image", "build", inputs)


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


def verdict_derivation(
    image: Entry, *, hostname: str, scenarios: tuple[str, ...], uefi: bool, lab_plan: Any, dhcp6_unit: str,
) -> Derivation:
    inputs = {
        "image": image,
        "scenarios": sorted(scenarios),
        "parameters": {
            "boot": "uefi" if uefi else "direct-kernel",
            # The plan holds the AP's key: a digest only.
            "lab_plan": digest(json.loads(json.dumps(_plain(lab_plan)))),
            "dhcp6_unit": dhcp6_unit,
        },
        "imagegen": imagegen_version(TEST_CODE),
    }
    return Derivation(f"{hostname}-verdict", "test", inputs)
